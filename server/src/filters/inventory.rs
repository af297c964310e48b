//! The data inventory: which categories of data each server's answers carried — the detector's
//! types and `INJECTION` — counted by the gateway as its filters scan answers (a server with no
//! active filter policy is not scanned, so it has no inventory: set `log` to take stock without
//! changing answers). Counts gather in memory per replica and are added to `data_inventory` in
//! batches (every few seconds, before a read, at shutdown), so the hot path never waits on the
//! database.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub answers: u64,
    pub findings: u64,
    pub first: i64,
    pub last: i64,
}

/// (tenant, server, category) → tally, since the last flush.
#[derive(Debug, Default)]
pub struct Inventory(Mutex<HashMap<(String, String, String), Tally>>);

/// Bounds the pending map (a flush that keeps failing must not grow it without end).
const CAP: usize = 100_000;

impl Inventory {
    /// Counts one answer's report.
    pub fn note(&self, tenant_id: &str, server: &str, report: &super::Report) {
        if report.found.is_empty() && report.injection.is_none() {
            return;
        }
        let now = crate::store::now_micros();
        let mut map = crate::gateway::lock(&self.0);
        if map.len() >= CAP {
            return;
        }
        let mut add = |category: &str, n: u64| {
            let t = map
                .entry((tenant_id.to_owned(), server.to_owned(), category.to_owned()))
                .or_insert(Tally {
                    first: now,
                    ..Default::default()
                });
            t.answers += 1;
            t.findings += n;
            t.last = now;
        };
        for (k, n) in &report.found {
            add(k, *n as u64);
        }
        if report.injection.is_some() {
            add("INJECTION", 1);
        }
    }

    /// Takes what gathered, by tenant.
    pub fn take(&self) -> HashMap<String, Vec<(String, String, Tally)>> {
        let map = std::mem::take(&mut *crate::gateway::lock(&self.0));
        let mut out: HashMap<String, Vec<(String, String, Tally)>> = HashMap::new();
        for ((t, s, c), tally) in map {
            out.entry(t).or_default().push((s, c, tally));
        }
        out
    }

    /// Writes what gathered; what fails to be written is kept for the next flush.
    pub async fn flush(&self, store: &crate::store::Store) {
        for (tenant, rows) in self.take() {
            if let Err(e) = store.add_inventory(&tenant, &rows).await {
                tracing::warn!(error = %e, tenant.id = %tenant, "the data inventory could not be written; kept for the next flush");
                let mut map = crate::gateway::lock(&self.0);
                for (s, c, t) in rows {
                    let e = map.entry((tenant.clone(), s, c)).or_insert(Tally {
                        first: t.first,
                        ..Default::default()
                    });
                    e.answers += t.answers;
                    e.findings += t.findings;
                    e.first = e.first.min(t.first);
                    e.last = e.last.max(t.last);
                }
            }
        }
    }
}

/// One row of a tenant's inventory, as the API, CLI and console show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Entry {
    pub server: String,
    pub category: String,
    /// `pii`, `secret` or `injection`.
    pub class: &'static str,
    pub answers: u64,
    pub findings: u64,
    pub first_seen_at: String,
    pub last_seen_at: String,
}

/// The tenant's inventory (optionally one server's), by server then category.
pub async fn entries(
    store: &crate::store::Store,
    tenant_id: &str,
    server: Option<&str>,
) -> crate::store::Result<Vec<Entry>> {
    Ok(store
        .inventory(tenant_id, server)
        .await?
        .into_iter()
        .map(|(server, category, answers, findings, first, last)| Entry {
            class: if category == "INJECTION" {
                "injection"
            } else if super::detect::Kind::ALL
                .iter()
                .any(|k| k.name() == category && k.is_secret())
            {
                "secret"
            } else {
                "pii"
            },
            server,
            category,
            answers: answers.max(0) as u64,
            findings: findings.max(0) as u64,
            first_seen_at: crate::tenants::format_time(first),
            last_seen_at: crate::tenants::format_time(last),
        })
        .collect())
}
