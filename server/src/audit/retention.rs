//! Each tenant's audit settings (how arguments are recorded, how long records are kept, legal
//! hold) and the purge that applies them.
//!
//! A purge removes a prefix of the tenant's chain: every record through the last one older
//! than the retention window. In order: the purge is itself recorded (an `audit.purge` event in
//! the chain, naming the last removed seq and its hash); the chain's anchor moves to that
//! record; on PostgreSQL, monthly partitions wholly covered by every tenant's purge are
//! dropped; what remains is deleted row by row. A tenant under legal hold, or without a
//! retention period, loses nothing.

use super::{Audit, Category, Event};
use crate::store::{now_micros, AuditSettingsRow, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const DAY_US: i64 = 86_400_000_000;

/// Retention presets and the requirement each comes from (shown in the console).
pub const PRESETS: [(&str, i64, &str); 3] = [
    (
        "hipaa",
        2190,
        "HIPAA: 6 years. 45 CFR §164.316(b)(2)(i) requires documentation of security measures and activity to be kept six years.",
    ),
    (
        "pci_dss",
        365,
        "PCI DSS v4.0: 1 year. Requirement 10.5.1 keeps audit log history at least 12 months, the last three immediately available.",
    ),
    (
        "gdpr",
        180,
        "GDPR: 180 days. Article 5(1)(e) (storage limitation) sets no number: keep personal data no longer than needed; 180 days is a common security-log choice.",
    ),
];

/// What a person may change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsInput {
    /// none, hashed, redacted or full.
    pub arguments: Option<String>,
    /// Days (1–3650); `null` keeps records forever.
    #[serde(default, with = "double_option")]
    pub retention_days: Option<Option<i64>>,
    /// hipaa, pci_dss or gdpr: sets the days from the preset.
    pub preset: Option<String>,
    pub legal_hold: Option<bool>,
    pub legal_hold_reason: Option<String>,
}

/// `field: null` (clear) told apart from a missing field (keep).
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        Ok(Some(Option::deserialize(d)?))
    }
}

fn settings_json(s: &AuditSettingsRow) -> Value {
    json!({
        "arguments": s.arguments, "retention_days": s.retention_days,
        "retention_preset": s.retention_preset, "legal_hold": s.legal_hold,
        "legal_hold_reason": s.legal_hold_reason,
    })
}

/// Validates and saves; returns the settings before and after (for the change's record).
pub async fn save(
    store: &Store,
    tenant_id: &str,
    input: SettingsInput,
) -> Result<(Value, Value), String> {
    let before = store
        .audit_settings(tenant_id)
        .await
        .map_err(|e| e.to_string())?;
    let mut s = before.clone();
    if let Some(a) = input.arguments {
        if !crate::gateway::record::Arguments::ALL.contains(&a.as_str()) {
            return Err("arguments must be none, hashed, redacted or full".into());
        }
        s.arguments = a;
    }
    if let Some(p) = input.preset.filter(|p| !p.is_empty()) {
        match PRESETS.iter().find(|(name, ..)| *name == p) {
            Some((name, days, _)) => {
                s.retention_days = Some(*days);
                s.retention_preset = Some((*name).to_owned());
            }
            None if p == "custom" => s.retention_preset = Some("custom".into()),
            None if p == "forever" => {
                s.retention_days = None;
                s.retention_preset = None;
            }
            None => return Err("preset must be hipaa, pci_dss, gdpr, custom or forever".into()),
        }
    }
    if let Some(days) = input.retention_days {
        if let Some(d) = days {
            if !(1..=3650).contains(&d) {
                return Err("retention_days must be 1 to 3650 (or null: keep forever)".into());
            }
        }
        if days != s.retention_days {
            s.retention_days = days;
            s.retention_preset = days.map(|_| "custom".into());
        }
    }
    if let Some(h) = input.legal_hold {
        s.legal_hold = h;
        if !h {
            s.legal_hold_reason = None;
        }
    }
    if let Some(r) = input.legal_hold_reason {
        let r = r.trim();
        if r.chars().count() > 500 {
            return Err("legal_hold_reason is at most 500 characters".into());
        }
        s.legal_hold_reason = (!r.is_empty()).then(|| r.to_owned());
    }
    store
        .save_audit_settings(tenant_id, &s)
        .await
        .map_err(|e| e.to_string())?;
    Ok((settings_json(&before), settings_json(&s)))
}

/// The settings with the log's volume and the presets (API and console).
pub async fn settings_view(store: &Store, tenant_id: &str) -> crate::store::Result<Value> {
    let s = store.audit_settings(tenant_id).await?;
    let v = store.audit_volume(tenant_id).await?;
    let mut out = settings_json(&s);
    out["records"] = json!(v.records);
    out["oldest"] = json!(v.oldest_at.map(super::export::time_micros));
    out["last_purge_at"] = json!(s.last_purge_at.map(super::export::time_micros));
    out["last_purged"] = json!(s.last_purged);
    out["presets"] = PRESETS
        .iter()
        .map(|(name, days, why)| json!({"name": name, "days": days, "requirement": why}))
        .collect();
    Ok(out)
}

/// What a purge did.
#[derive(Debug, Default, Serialize)]
pub struct PurgeReport {
    pub purged: i64,
    pub through_seq: Option<i64>,
    /// Why nothing was purged, when nothing was.
    pub skipped: Option<String>,
}

/// Plans one tenant's purge and records it; returns the seq it goes through and the rows.
async fn plan(
    store: &Store,
    audit: &Audit,
    tenant_id: &str,
    actor: Option<(String, String)>,
) -> Result<Result<(i64, i64), String>, super::AuditError> {
    let err = |e: crate::store::StoreError| super::AuditError(e.to_string());
    let s = store.audit_settings(tenant_id).await.map_err(err)?;
    if s.legal_hold {
        return Ok(Err("legal hold".into()));
    }
    let Some(days) = s.retention_days else {
        return Ok(Err("no retention period: records are kept".into()));
    };
    let cutoff = now_micros() - days * DAY_US;
    let Some((seq, hash, n)) = store
        .audit_purge_point(tenant_id, cutoff)
        .await
        .map_err(err)?
    else {
        return Ok(Err("nothing is older than the retention period".into()));
    };
    let mut e = Event::new(tenant_id, Category::Security, "audit.purge", "ok")
        .target("audit")
        .detail(
            json!({"through_seq": seq, "through_hash": hash, "records": n,
            "retention_days": days, "cutoff": super::export::time_micros(cutoff)}),
        );
    e = match actor {
        Some((id, email)) => e.by(&id, &email),
        None => {
            e.actor = Some("retention (scheduled)".into());
            e
        }
    };
    // Recorded before anything goes.
    audit.record(e).await?;
    store
        .set_audit_anchor(tenant_id, seq, &hash)
        .await
        .map_err(err)?;
    Ok(Ok((seq, n)))
}

/// Purges one tenant now (the API's and console's "purge now").
pub async fn purge_tenant(
    store: &Store,
    audit: &Audit,
    tenant_id: &str,
    actor: Option<(String, String)>,
) -> Result<PurgeReport, super::AuditError> {
    let err = |e: crate::store::StoreError| super::AuditError(e.to_string());
    match plan(store, audit, tenant_id, actor).await? {
        Err(why) => Ok(PurgeReport {
            skipped: Some(why),
            ..Default::default()
        }),
        Ok((seq, n)) => {
            store
                .drop_covered_partitions(&[(tenant_id.to_owned(), seq)], now_micros())
                .await
                .map_err(err)?;
            store
                .purge_audit_through(tenant_id, seq, n)
                .await
                .map_err(err)?;
            Ok(PurgeReport {
                purged: n,
                through_seq: Some(seq),
                skipped: None,
            })
        }
    }
}

/// The scheduled purge of every tenant, with partition drops across tenants.
pub async fn purge_all(store: &Store, audit: &Audit) -> Result<i64, super::AuditError> {
    let err = |e: crate::store::StoreError| super::AuditError(e.to_string());
    let mut planned = Vec::new();
    for t in store.list_tenants().await.map_err(err)? {
        if let Ok((seq, n)) = plan(store, audit, &t.tenant_id, None).await? {
            planned.push((t.tenant_id, seq, n));
        }
    }
    if planned.is_empty() {
        return Ok(0);
    }
    let covered: Vec<(String, i64)> = planned.iter().map(|(t, s, _)| (t.clone(), *s)).collect();
    let dropped = store
        .drop_covered_partitions(&covered, now_micros())
        .await
        .map_err(err)?;
    let mut total = 0;
    for (tenant, seq, n) in planned {
        store
            .purge_audit_through(&tenant, seq, n)
            .await
            .map_err(err)?;
        total += n;
    }
    tracing::info!(
        records = total,
        from_partitions = dropped,
        "audit retention purge"
    );
    Ok(total)
}

/// Housekeeping: partitions for this month and the next, then the purge; hourly.
pub fn spawn(store: Store, audit: Audit) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = now_micros();
            if let Err(e) = store
                .ensure_audit_partitions(&[now, now + 32 * DAY_US])
                .await
            {
                tracing::error!(error = %e, "audit partitions could not be created");
            }
            if let Err(e) = purge_all(&store, &audit).await {
                tracing::error!(error = %e, "the audit retention purge failed");
            }
        }
    })
}
