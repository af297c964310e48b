//! The durable audit log: every recorded event is a row of `audit_event` in its tenant's hash
//! chain, written by one background writer that commits events in groups (group commit) and
//! tells each caller when its event is durable.
//!
//! - `Audit::record` returns once the event's transaction has committed, or an error: a caller
//!   that must not go on without a record (fail closed) stops there.
//! - The chain: an event's `hash` is SHA-256 over a domain separator, the previous event's
//!   hash and the event's fields in a fixed order; `seq` counts 1, 2, … per tenant. `verify`
//!   walks a tenant's chain and reports the first broken link: a modified row (its hash does not
//!   match its fields), a deleted one (a gap in `seq`), an inserted or reordered one (its
//!   `prev_hash` is not its predecessor's hash).
//! - Nothing secret goes into an event: callers put names, ids, decisions and before/after
//!   values of settings, never tokens or client secrets.

pub mod api;
pub mod export;
pub mod retention;
pub mod siem;

use crate::store::{AuditQuery, AuditRow, Store};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tokio::sync::{mpsc, oneshot};

/// The hash before a tenant's first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Most events committed in one transaction.
const GROUP: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Mcp,
    Admin,
    Security,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mcp => "mcp",
            Self::Admin => "admin",
            Self::Security => "security",
        }
    }
}

/// One event to record.
#[derive(Clone, Debug)]
pub struct Event {
    pub tenant_id: String,
    pub category: Category,
    pub action: String,
    pub actor_id: Option<String>,
    pub actor: Option<String>,
    pub server: Option<String>,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: serde_json::Value,
    /// MCP records: `allow` or `deny`.
    pub decision: Option<String>,
    /// The MCP client: clientInfo `name/version`.
    pub client: Option<String>,
    /// The agent: the name of the credential the client presented.
    pub agent: Option<String>,
    /// The actor's groups when it happened.
    pub groups: Vec<String>,
    pub ip: Option<String>,
    pub session_id: Option<String>,
    /// From the request's arrival to its answer, µs.
    pub latency_us: Option<i64>,
    /// Of which waiting for the upstream, µs.
    pub upstream_us: Option<i64>,
}

impl Event {
    pub fn new(tenant_id: &str, category: Category, action: &str, outcome: &str) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            category,
            action: action.to_owned(),
            actor_id: None,
            actor: None,
            server: None,
            target: None,
            outcome: outcome.to_owned(),
            detail: serde_json::Value::Object(Default::default()),
            decision: None,
            client: None,
            agent: None,
            groups: Vec::new(),
            ip: None,
            session_id: None,
            latency_us: None,
            upstream_us: None,
        }
    }

    pub fn by(mut self, user_id: &str, email: &str) -> Self {
        self.actor_id = Some(user_id.to_owned());
        self.actor = Some(email.to_owned());
        self
    }

    pub fn server(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the audit log cannot be written: {0}")]
pub struct AuditError(pub String);

type Pending = (Event, oneshot::Sender<Result<(), String>>);

/// The writer's handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Audit {
    tx: mpsc::Sender<Pending>,
    /// Set while writes fail, cleared by the next success.
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The fields an event's hash covers, in this order.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: i64,
    at: i64,
    category: &'a str,
    action: &'a str,
    actor_id: Option<&'a str>,
    actor: Option<&'a str>,
    server: Option<&'a str>,
    target: Option<&'a str>,
    outcome: &'a str,
    detail: &'a str,
    // The second slice's fields: absent from the hashed form when empty, so that records
    // written before them still verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_us: Option<i64>,
}

/// The chain hash of a stored row given its predecessor's hash.
pub fn chain_hash(prev_hash: &str, r: &AuditRow) -> String {
    let fields = Hashed {
        seq: r.seq,
        at: r.at,
        category: &r.category,
        action: &r.action,
        actor_id: r.actor_id.as_deref(),
        actor: r.actor.as_deref(),
        server: r.server.as_deref(),
        target: r.target.as_deref(),
        outcome: &r.outcome,
        detail: &r.detail,
        decision: r.decision.as_deref(),
        client: r.client.as_deref(),
        agent: r.agent.as_deref(),
        groups: r.groups.as_deref(),
        ip: r.ip.as_deref(),
        session_id: r.session_id.as_deref(),
        latency_us: r.latency_us,
        upstream_us: r.upstream_us,
    };
    let mut h = Sha256::new();
    h.update(b"portcullis audit v1\0");
    h.update(prev_hash.as_bytes());
    h.update(b"\0");
    h.update(serde_json::to_vec(&fields).unwrap_or_default());
    hex::encode(h.finalize())
}

impl Audit {
    /// Starts the writer on `store`; it ends when every handle is dropped.
    pub fn start(store: Store) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Pending>(4096);
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // While writes fail, a probe write every two seconds finds when the database is back,
        // so that `/readyz` recovers even when no request arrives to try (a load balancer
        // sends none to a replica that is not ready).
        let probe = (store.clone(), failing.clone(), tx.downgrade());
        tokio::spawn(async move {
            let (store, failing, tx) = probe;
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                if tx.upgrade().is_none() {
                    return; // every handle is gone
                }
                if failing.load(std::sync::atomic::Ordering::Relaxed)
                    && store.audit_write_probe().await.is_ok()
                {
                    tracing::info!("the audit log can be written again");
                    failing.store(false, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        (
            Self {
                tx,
                failing: failing.clone(),
            },
            tokio::spawn(writer(store, rx, failing)),
        )
    }

    /// Records an event; returns once it is durable.
    pub async fn record(&self, e: Event) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((e, ack))
            .await
            .map_err(|_| AuditError("the writer has stopped".into()))?;
        done.await
            .map_err(|_| AuditError("the writer has stopped".into()))?
            .map_err(AuditError)
    }

    /// Records several events (one request's messages); returns once all are durable.
    pub async fn record_many(&self, events: Vec<Event>) -> Result<(), AuditError> {
        let mut waiting = Vec::with_capacity(events.len());
        for e in events {
            let (ack, done) = oneshot::channel();
            self.tx
                .send((e, ack))
                .await
                .map_err(|_| AuditError("the writer has stopped".into()))?;
            waiting.push(done);
        }
        for done in waiting {
            done.await
                .map_err(|_| AuditError("the writer has stopped".into()))?
                .map_err(AuditError)?;
        }
        Ok(())
    }

    /// Whether the last write succeeded (for `/readyz`).
    pub fn healthy(&self) -> bool {
        !self.failing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records an event that follows a change already made: a failure is logged (the change
    /// stands), never silent.
    pub async fn note(&self, e: Event) {
        let action = e.action.clone();
        if let Err(err) = self.record(e).await {
            tracing::error!(action = %action, error = %err, "an audit event was not recorded");
        }
    }
}

/// Appends one event without a running writer (the operator CLI), retrying when a server
/// appended to the same chain at the same moment.
pub async fn record_direct(store: &Store, e: &Event) -> Result<(), AuditError> {
    let mut last = String::new();
    for _ in 0..5 {
        match store
            .append_audit(&e.tenant_id, &[e], chain_hash, None)
            .await
        {
            Ok(_) => return Ok(()),
            Err(err) => last = err.to_string(),
        }
    }
    Err(AuditError(last))
}

async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<Pending>,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    // Each tenant's chain tail as this writer left it: on SQLite the next append skips reading
    // it (a tail another process moved is a conflict, retried after a fresh read).
    let mut tails: std::collections::HashMap<String, (i64, String)> =
        std::collections::HashMap::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < GROUP {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        // One transaction per tenant, events in arrival order.
        let mut by_tenant: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
        for p in batch {
            by_tenant.entry(p.0.tenant_id.clone()).or_default().push(p);
        }
        for (tenant, pending) in by_tenant {
            let events: Vec<&Event> = pending.iter().map(|(e, _)| e).collect();
            let mut result = Err(String::new());
            // Another replica may have appended to the same chain meanwhile (a conflict), or,
            // on SQLite, another connection wrote between this transaction's read of the tail
            // and its first insert (SQLITE_BUSY_SNAPSHOT, "database is locked"): read the tail
            // again and retry.
            for attempt in 0..8 {
                let known = tails.remove(&tenant);
                let stale = known.is_some();
                match store
                    .append_audit(&tenant, &events, chain_hash, known)
                    .await
                {
                    Ok(tail) => {
                        tails.insert(tenant.clone(), tail);
                        result = Ok(());
                        break;
                    }
                    Err(e) => {
                        let e = e.to_string();
                        let retry =
                            e.contains("already exists") || e.contains("database is locked");
                        result = Err(e);
                        if !retry {
                            break;
                        }
                        // A stale tail of ours: read it at once; a racing writer: back off.
                        if !stale {
                            tokio::time::sleep(std::time::Duration::from_millis(5 << attempt))
                                .await;
                        }
                    }
                }
            }
            if let Err(e) = &result {
                tracing::error!(tenant.id = %tenant, error = %e, events = pending.len(), "audit events could not be written");
            }
            failing.store(result.is_err(), std::sync::atomic::Ordering::Relaxed);
            for (_, ack) in pending {
                let _ = ack.send(result.clone());
            }
        }
    }
}

/// Where a tenant's chain first breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Break {
    pub seq: i64,
    pub event_id: String,
    /// `modified`, `missing` (a deleted record before this one), `inserted` (its link to the
    /// previous record does not hold) or `anchor` (the chain starts after a purge the chain
    /// never recorded).
    pub problem: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub records: usize,
    pub ok: bool,
    pub first_break: Option<Break>,
}

/// Walks a chain row by row (in `seq` order), from the anchor the retained chain starts after
/// (seq 0 and the genesis hash unless a purge removed older records).
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    prev: String,
    records: usize,
    first_break: Option<Break>,
}

impl Verifier {
    pub fn new(anchor_seq: i64, anchor_hash: &str) -> Self {
        Self {
            expected_seq: anchor_seq + 1,
            prev: anchor_hash.to_owned(),
            records: 0,
            first_break: None,
        }
    }

    /// Takes the next row; false once a break is found (later rows are not looked at).
    pub fn feed(&mut self, r: &AuditRow) -> bool {
        if self.first_break.is_some() {
            return false;
        }
        self.records += 1;
        let problem = if r.seq != self.expected_seq {
            Some(if r.seq > self.expected_seq {
                "missing"
            } else {
                "inserted"
            })
        } else if r.prev_hash != self.prev {
            Some("inserted")
        } else if chain_hash(&self.prev, r) != r.hash {
            Some("modified")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.first_break = Some(Break {
                seq: r.seq,
                event_id: r.event_id.clone(),
                problem: problem.into(),
            });
            return false;
        }
        self.expected_seq += 1;
        self.prev = r.hash.clone();
        true
    }

    /// The seq and hash of the last row that verified.
    pub fn head(&self) -> (i64, &str) {
        (self.expected_seq - 1, &self.prev)
    }

    pub fn finish(self) -> Verification {
        Verification {
            records: self.records,
            ok: self.first_break.is_none(),
            first_break: self.first_break,
        }
    }
}

/// Walks a tenant's whole chain (rows in `seq` order, nothing purged).
pub fn verify(rows: &[AuditRow]) -> Verification {
    let mut v = Verifier::new(0, GENESIS);
    for r in rows {
        if !v.feed(r) {
            break;
        }
    }
    let mut out = v.finish();
    out.records = rows.len();
    out
}

/// Verifies a tenant's retained chain from the database, a page at a time (constant memory).
/// Also returns the head: the last verified seq and hash (what a checkpoint signs).
pub async fn verify_stored(
    store: &Store,
    tenant_id: &str,
) -> crate::store::Result<(Verification, i64, String)> {
    let (anchor_seq, anchor_hash) = store.audit_anchor(tenant_id).await?;
    let mut v = Verifier::new(anchor_seq, &anchor_hash);
    let mut after = anchor_seq;
    let mut total = 0;
    // A purged chain starts at its anchor only if the chain itself recorded that purge (an
    // `audit.purge` record naming the anchor's seq and hash): the anchor table alone proves
    // nothing.
    let mut anchor_recorded = anchor_seq == 0;
    loop {
        // Pages follow the seq actually read, so rows around a break are all counted.
        let page = store.audit_chain_page(tenant_id, after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        total += page.len();
        for r in &page {
            v.feed(r);
            if !anchor_recorded && r.action == "audit.purge" {
                let d: serde_json::Value = serde_json::from_str(&r.detail).unwrap_or_default();
                anchor_recorded =
                    d["through_seq"] == anchor_seq && d["through_hash"] == anchor_hash;
            }
        }
    }
    if !anchor_recorded && v.first_break.is_none() {
        v.first_break = Some(Break {
            seq: anchor_seq + 1,
            event_id: String::new(),
            problem: "anchor".into(),
        });
    }
    let (seq, hash) = {
        let (s, h) = v.head();
        (s, h.to_owned())
    };
    let mut out = v.finish();
    out.records = total;
    Ok((out, seq, hash))
}

/// The chain's head signed with the tenant's checkpoint key (Ed25519 over
/// `portcullis-audit-checkpoint v1\n{tenant}\n{seq}\n{hash}\n{at}`), after verifying the chain.
pub async fn checkpoint(
    store: &Store,
    vault: &crate::vault::Vault,
    tenant_id: &str,
) -> crate::store::Result<serde_json::Value> {
    use base64::Engine as _;
    use ed25519_dalek::Signer;
    let (v, seq, hash) = verify_stored(store, tenant_id).await?;
    let at = export::time_micros(crate::store::now_micros());
    let message = format!("portcullis-audit-checkpoint v1\n{tenant_id}\n{seq}\n{hash}\n{at}");
    let key = vault
        .checkpoint_key(store, tenant_id)
        .await
        .map_err(|e| match e {
            crate::vault::VaultError::Store(s) => s,
            other => crate::store::StoreError::Database(sqlx::Error::Protocol(other.to_string())),
        })?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(serde_json::json!({
        "tenant_id": tenant_id, "seq": seq, "hash": hash, "at": at,
        "chain_ok": v.ok, "first_break": v.first_break,
        "message": message,
        "signature": b64.encode(key.sign(message.as_bytes()).to_bytes()),
        "public_key": b64.encode(key.verifying_key().to_bytes()),
        "algorithm": "Ed25519",
    }))
}

/// A query's filters in words (what an export record says was exported).
pub fn describe(q: &AuditQuery) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            m.insert(k.into(), serde_json::json!(v));
        }
    };
    put("category", &q.category);
    put("action", &q.action);
    put("actor", &q.actor);
    put("group", &q.group);
    put("agent", &q.agent);
    put("client", &q.client);
    put("server", &q.server);
    put("decision", &q.decision);
    put("outcome", &q.outcome);
    put("q", &q.q);
    put("since", &q.since.map(export::time_micros));
    put("until", &q.until.map(export::time_micros));
    serde_json::Value::Object(m)
}

/// The audit page's numbers: calls and denials per bucket (hours up to 2 days, else days), top
/// tools and users, and the log's volume.
pub async fn stats(
    store: &Store,
    tenant_id: &str,
    days: i64,
) -> crate::store::Result<serde_json::Value> {
    const HOUR: i64 = 3_600_000_000;
    let bucket = if days <= 2 { HOUR } else { 24 * HOUR };
    let now = crate::store::now_micros();
    let since = (now - days * 24 * HOUR) / bucket * bucket;
    // Every bucket of the span, empty ones included (the chart's x axis is time).
    let found = store.audit_buckets(tenant_id, since, bucket).await?;
    let buckets: Vec<crate::store::Bucket> = (0..)
        .map(|i| since + i * bucket)
        .take_while(|start| *start <= now)
        .map(|start| {
            found
                .iter()
                .find(|b| b.start == start)
                .cloned()
                .unwrap_or(crate::store::Bucket {
                    start,
                    calls: 0,
                    denied: 0,
                })
        })
        .collect();
    let (tools, users) = store.audit_top(tenant_id, since, 10).await?;
    let volume = store.audit_volume(tenant_id).await?;
    Ok(serde_json::json!({
        "since": export::time_micros(since), "bucket_seconds": bucket / 1_000_000,
        "buckets": buckets.iter().map(|b| serde_json::json!({
            "start": export::time_micros(b.start), "calls": b.calls, "denied": b.denied})).collect::<Vec<_>>(),
        "top_tools": tools, "top_users": users,
        "records": volume.records,
        "oldest": volume.oldest_at.map(export::time_micros),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRow> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut r = AuditRow {
                    event_id: format!("e{seq}"),
                    tenant_id: "t".into(),
                    seq,
                    at: seq * 10,
                    category: "admin".into(),
                    action: "registry.create".into(),
                    actor_id: Some("u".into()),
                    actor: Some("a@x.test".into()),
                    server: None,
                    target: Some(format!("r{seq}")),
                    outcome: "ok".into(),
                    detail: "{}".into(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                    decision: None,
                    client: None,
                    agent: None,
                    groups: None,
                    ip: None,
                    session_id: None,
                    latency_us: None,
                    upstream_us: None,
                };
                r.hash = chain_hash(&prev, &r);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    /// The writer keeps the chain's tail on SQLite; another process appending meanwhile (the
    /// operator CLI) makes its next append a conflict, read again and retried: nothing lost,
    /// the chain intact, groups of several events included.
    #[tokio::test]
    async fn the_writer_goes_on_after_another_process_appended_to_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let location = crate::store::DatabaseLocation::Sqlite(dir.path().join("audit.db"));
        let store = Store::open(&location).await.unwrap();
        let other = Store::open(&location).await.unwrap();
        let t = crate::tenants::create(&store, "acme", "Acme", "a@acme.example")
            .await
            .unwrap();
        let tid = t.tenant.tenant_id.clone();
        let (before, seq0, _) = verify_stored(&store, &tid).await.unwrap();
        let (audit, _writer) = Audit::start(store.clone());
        let ev = |a: &str| Event::new(&tid, Category::Admin, a, "ok");
        audit.record(ev("test.one")).await.unwrap();
        record_direct(&other, &ev("test.two")).await.unwrap();
        audit.record(ev("test.three")).await.unwrap();
        record_direct(&other, &ev("test.four")).await.unwrap();
        audit
            .record_many((0..7).map(|i| ev(&format!("test.group{i}"))).collect())
            .await
            .unwrap();
        let (v, seq, _) = verify_stored(&store, &tid).await.unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(seq, seq0 + 11);
        assert_eq!(v.records, before.records + 11);
    }

    #[test]
    fn an_intact_chain_verifies_and_each_kind_of_tampering_is_located() {
        let rows = chain(5);
        assert!(verify(&rows).ok);
        let mut modified = rows.clone();
        modified[2].target = Some("forged".into());
        assert_eq!(
            verify(&modified).first_break.map(|b| (b.seq, b.problem)),
            Some((3, "modified".into()))
        );
        let mut deleted = rows.clone();
        deleted.remove(1);
        assert_eq!(
            verify(&deleted).first_break.map(|b| (b.seq, b.problem)),
            Some((3, "missing".into()))
        );
        // An inserted row renumbered to fit still cannot link to its neighbours.
        let mut inserted = rows.clone();
        let mut fake = rows[1].clone();
        fake.target = Some("inserted".into());
        fake.hash = chain_hash(&fake.prev_hash, &fake);
        inserted[1] = fake;
        assert_eq!(
            verify(&inserted).first_break.map(|b| (b.seq, b.problem)),
            Some((3, "inserted".into()))
        );
    }
}
