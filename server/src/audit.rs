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

use crate::store::{AuditRow, Store};
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
        }
    }

    pub fn by(mut self, user_id: &str, email: &str) -> Self {
        self.actor_id = Some(user_id.to_owned());
        self.actor = Some(email.to_owned());
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
        match store.append_audit(&e.tenant_id, &[e], chain_hash).await {
            Ok(()) => return Ok(()),
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
            // Another replica may have appended to the same chain meanwhile: read the tail
            // again and retry.
            for _ in 0..5 {
                result = store
                    .append_audit(&tenant, &events, chain_hash)
                    .await
                    .map_err(|e| e.to_string());
                match &result {
                    Err(e) if e.contains("already exists") => continue,
                    _ => break,
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
    /// `modified`, `missing` (a deleted record before this one) or `inserted` (its link to the
    /// previous record does not hold).
    pub problem: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub records: usize,
    pub ok: bool,
    pub first_break: Option<Break>,
}

/// Walks a tenant's chain (rows in `seq` order).
pub fn verify(rows: &[AuditRow]) -> Verification {
    let mut prev = GENESIS.to_owned();
    for (expected_seq, r) in (1_i64..).zip(rows.iter()) {
        let problem = if r.seq != expected_seq {
            Some(if r.seq > expected_seq {
                "missing"
            } else {
                "inserted"
            })
        } else if r.prev_hash != prev {
            Some("inserted")
        } else if chain_hash(&prev, r) != r.hash {
            Some("modified")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Verification {
                records: rows.len(),
                ok: false,
                first_break: Some(Break {
                    seq: r.seq,
                    event_id: r.event_id.clone(),
                    problem: problem.into(),
                }),
            };
        }
        prev = r.hash.clone();
    }
    Verification {
        records: rows.len(),
        ok: true,
        first_break: None,
    }
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
                };
                r.hash = chain_hash(&prev, &r);
                prev = r.hash.clone();
                r
            })
            .collect()
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
