//! The audit seam's second half: a request's record is completed by its answer (outcome,
//! JSON-RPC error code, latency split) and made durable before that answer reaches the client.
//!
//! The endpoint builds one [`Recorder`] per HTTP request holding the records of its JSON-RPC
//! requests (by id), and wraps whatever response it is about to send in [`recorded`]: a JSON
//! body is read, each answer's record written, then the body released; an SSE body is passed
//! event by event, and the event that answers a request waits for that request's record. A
//! record that cannot be written withholds the answer: the client gets a -32603 error instead
//! (fail closed). Records still pending when the response ends (the upstream never answered,
//! the client went away) are written with outcome `no_response` when the recorder is dropped.

use super::{lock, sse};
use crate::audit::{Audit, AuditError, Event};
use axum::body::Body;
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Largest JSON answer the gateway reads to record (a bigger one is refused, never passed
/// unrecorded).
pub const MAX_RECORDED_JSON: usize = 32 * 1024 * 1024;

struct Inner {
    audit: Audit,
    arrived: Instant,
    forwarded: Mutex<Option<Instant>>,
    pending: Mutex<Vec<(Value, Event)>>,
    /// Rate-limit concurrency slots, released with the recorder (when the answer is done).
    permits: Mutex<Vec<super::limits::Permit>>,
    /// The data filter answers pass through (personal data and secrets), if any.
    content: Mutex<Option<Arc<crate::filters::Policy>>>,
    /// Where filtered answers' findings are counted: (inventory, tenant, server).
    inventory: Mutex<Option<InventorySink>>,
    /// External filter hooks the answers go through (with the client and the tenant's slug
    /// and server they are told).
    hooks: Mutex<Option<HookSink>>,
}

type HookSink = (
    Vec<Arc<crate::filters::hooks::Hook>>,
    reqwest::Client,
    String,
    String,
);

type InventorySink = (Arc<crate::filters::inventory::Inventory>, String, String);

/// The pending records of one HTTP request's JSON-RPC requests. Cheap to clone.
#[derive(Clone)]
pub struct Recorder(Arc<Inner>);

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish()
    }
}

/// How a tenant's records keep tool arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Arguments {
    /// Not at all.
    None,
    /// A SHA-256 of the arguments' JSON: equal arguments can be matched, values stay unknown.
    #[default]
    Hashed,
    /// The arguments' shape: keys kept, strings and numbers replaced by their type (and the hash).
    Redacted,
    /// The values as sent (at most 16 KiB of JSON; longer is cut and marked).
    Full,
}

/// The most argument JSON a record keeps in full.
const MAX_FULL_ARGUMENTS: usize = 16 * 1024;

impl Arguments {
    pub const ALL: [&'static str; 4] = ["none", "hashed", "redacted", "full"];

    /// Unknown text reads as the default (hashed): never more than asked.
    pub fn parse(s: &str) -> Self {
        match s {
            "none" => Self::None,
            "redacted" => Self::Redacted,
            "full" => Self::Full,
            _ => Self::Hashed,
        }
    }

    /// Puts what the policy keeps of `args` into a record's detail.
    pub fn apply(self, args: &Value, detail: &mut Value) {
        use sha2::Digest;
        let hash = || hex::encode(sha2::Sha256::digest(args.to_string()));
        match self {
            Self::None => {}
            Self::Hashed => detail["arguments_sha256"] = json!(hash()),
            Self::Redacted => {
                detail["arguments_sha256"] = json!(hash());
                detail["arguments"] = shape(args);
            }
            Self::Full => {
                // Secrets never reach the log, whatever the recording setting.
                let mut args = args.clone();
                crate::filters::redact_secrets(&mut args);
                let text = args.to_string();
                if text.len() <= MAX_FULL_ARGUMENTS {
                    detail["arguments"] = args;
                } else {
                    let mut cut = MAX_FULL_ARGUMENTS;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    detail["arguments_truncated"] = json!(&text[..cut]);
                    detail["arguments_sha256"] = json!(hash());
                }
            }
        }
    }
}

/// A JSON value with its strings and numbers replaced by their type.
fn shape(v: &Value) -> Value {
    match v {
        Value::String(_) => json!("<string>"),
        Value::Number(_) => json!("<number>"),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        other => other.clone(),
    }
}

/// What an answer says happened: `ok`, `error` (with its JSON-RPC code), `tool_error` (a
/// tools/call result with `isError`) or `input_required`.
pub fn outcome_of(msg: &Value) -> (&'static str, Option<i64>) {
    if let Some(err) = msg.get("error") {
        return ("error", err.get("code").and_then(Value::as_i64));
    }
    let result = msg.get("result");
    if result
        .and_then(|r| r.get("isError"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return ("tool_error", None);
    }
    if result
        .and_then(|r| r.get("resultType"))
        .and_then(Value::as_str)
        == Some("input_required")
    {
        return ("input_required", None);
    }
    ("ok", None)
}

impl Recorder {
    pub fn new(audit: Audit, arrived: Instant, pending: Vec<(Value, Event)>) -> Self {
        Self(Arc::new(Inner {
            audit,
            arrived,
            forwarded: Mutex::new(None),
            pending: Mutex::new(pending),
            permits: Mutex::new(Vec::new()),
            content: Mutex::new(None),
            inventory: Mutex::new(None),
            hooks: Mutex::new(None),
        }))
    }

    fn filtering(&self) -> bool {
        lock(&self.0.content).is_some() || lock(&self.0.hooks).is_some()
    }

    /// Answers also go through these external hooks (none: nothing is set).
    pub fn hook_with(
        &self,
        hooks: Vec<Arc<crate::filters::hooks::Hook>>,
        client: reqwest::Client,
        tenant_slug: &str,
        server: &str,
    ) {
        if hooks.is_empty() {
            return;
        }
        *lock(&self.0.hooks) = Some((hooks, client, tenant_slug.to_owned(), server.to_owned()));
    }

    /// Answers to tools/call, resources/read and prompts/get pass through `policy`.
    pub fn filter_with(&self, policy: Option<Arc<crate::filters::Policy>>) {
        *lock(&self.0.content) = policy;
    }

    /// Findings in filtered answers are counted in the data inventory of `server`.
    pub fn count_into(
        &self,
        inventory: Arc<crate::filters::inventory::Inventory>,
        tenant_id: &str,
        server: &str,
    ) {
        *lock(&self.0.inventory) = Some((inventory, tenant_id.to_owned(), server.to_owned()));
    }

    /// Keeps rate-limit slots until the answer is done.
    pub fn hold(&self, permits: Vec<super::limits::Permit>) {
        lock(&self.0.permits).extend(permits);
    }

    /// The request goes upstream now: the upstream's share of the latency starts.
    pub fn forwarded(&self) {
        *lock(&self.0.forwarded) = Some(Instant::now());
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.0.pending).is_empty()
    }

    fn complete(&self, mut e: Event, outcome: &str, code: Option<i64>) -> Event {
        e.outcome = outcome.to_owned();
        if let Some(code) = code {
            e.detail["error_code"] = json!(code);
        }
        e.latency_us = Some(micros(self.0.arrived.elapsed()));
        e.upstream_us = lock(&self.0.forwarded).map(|f| micros(f.elapsed()));
        e
    }

    /// A message on its way to the client: if it answers a pending request, its content is
    /// filtered (the message may change), then that request's record is completed and made
    /// durable first.
    pub async fn answer(&self, msg: &mut Value) -> Result<(), AuditError> {
        if msg.get("result").is_none() && msg.get("error").is_none() {
            return Ok(()); // a request or notification of the server's
        }
        let Some(id) = msg.get("id") else {
            return Ok(());
        };
        let taken = {
            let mut pending = lock(&self.0.pending);
            pending
                .iter()
                .position(|(i, _)| i == id)
                .map(|at| pending.remove(at).1)
        };
        let Some(mut e) = taken else { return Ok(()) };
        let policy = lock(&self.0.content).clone();
        let mut blocked = false;
        if let Some(p) = policy.filter(|_| {
            matches!(
                e.action.as_str(),
                "tools/call" | "resources/read" | "prompts/get"
            )
        }) {
            if let Some(result) = msg.get_mut("result") {
                let tool = e.target.as_deref().filter(|_| e.action == "tools/call");
                let report = crate::filters::apply(&p, tool, result);
                if let Some((inv, tenant, server)) = &*lock(&self.0.inventory) {
                    inv.note(tenant, server, &report);
                }
                if report.fields_dropped > 0 {
                    e.detail["fields_dropped"] = json!(report.fields_dropped);
                }
                if let Some(action) = report.action {
                    e.detail["filters"] = json!({
                        "found": report.found,
                        "action": action.as_str(),
                    });
                }
                if let Some(i) = &report.injection {
                    e.detail["injection"] = json!(i);
                }
                if report.blocked() {
                    blocked = true;
                    let text = if report.action == Some(crate::filters::Action::Block) {
                        format!(
                            "The answer was blocked by the gateway's data policy: it carried {}.",
                            report.summary()
                        )
                    } else {
                        format!(
                            "The answer was blocked by the gateway: it reads as a prompt injection ({}).",
                            report
                                .injection
                                .as_ref()
                                .map(|i| i.reasons.join("; "))
                                .unwrap_or_default()
                        )
                    };
                    if e.action == "tools/call" {
                        *result =
                            json!({"content": [{"type": "text", "text": text}], "isError": true});
                    } else {
                        let id = msg.get("id").cloned().unwrap_or(Value::Null);
                        *msg = json!({"jsonrpc": "2.0", "id": id,
                            "error": {"code": -32000, "message": text}});
                    }
                }
            }
        }
        let hooks = lock(&self.0.hooks).clone();
        if let Some((hooks, client, tenant, server)) = hooks.filter(|_| {
            !blocked
                && matches!(
                    e.action.as_str(),
                    "tools/call" | "resources/read" | "prompts/get"
                )
        }) {
            if let Some(result) = msg.get_mut("result") {
                let target = e.target.clone().unwrap_or_default();
                let (verdict, calls) = crate::filters::hooks::run(
                    &client,
                    &hooks,
                    (&tenant, &server, &e.action, &target),
                    result,
                )
                .await;
                e.detail["hooks"] = json!(calls);
                if let crate::filters::hooks::Verdict::Block(text) = verdict {
                    blocked = true;
                    if e.action == "tools/call" {
                        *result =
                            json!({"content": [{"type": "text", "text": text}], "isError": true});
                    } else {
                        let id = msg.get("id").cloned().unwrap_or(Value::Null);
                        *msg = json!({"jsonrpc": "2.0", "id": id,
                            "error": {"code": -32000, "message": text}});
                    }
                }
            }
        }
        let (outcome, code) = outcome_of(msg);
        let mut e = self.complete(e, outcome, code);
        if blocked {
            e.outcome = "blocked".into();
        }
        self.0.audit.record(e).await
    }

    /// Everything still pending ends with `outcome`.
    pub async fn finish(&self, outcome: &str, code: Option<i64>) -> Result<(), AuditError> {
        let rest: Vec<Event> = std::mem::take(&mut *lock(&self.0.pending))
            .into_iter()
            .map(|(_, e)| self.complete(e, outcome, code))
            .collect();
        if rest.is_empty() {
            return Ok(());
        }
        self.0.audit.record_many(rest).await
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let rest = std::mem::take(&mut *lock(&self.pending));
        if rest.is_empty() {
            return;
        }
        let latency = micros(self.arrived.elapsed());
        let events: Vec<Event> = rest
            .into_iter()
            .map(|(_, mut e)| {
                e.outcome = "no_response".into();
                e.latency_us = Some(latency);
                e
            })
            .collect();
        let audit = self.audit.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = audit.record_many(events).await {
                        tracing::error!(error = %e, "records of unanswered requests were not written");
                    }
                });
            }
            Err(_) => {
                tracing::error!("records of unanswered requests were not written: no runtime")
            }
        }
    }
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The answer given instead of one whose record could not be written.
pub fn withheld(id: &Value) -> Response {
    tracing::error!("an answer was withheld: the audit log cannot be written");
    let body = json!({
        "jsonrpc": "2.0", "id": id,
        "error": { "code": -32603, "message": "the audit log cannot be written: the answer was withheld" },
    });
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// `res` with every answer in it recorded before it is released (see the module docs).
pub async fn recorded(res: Response, rec: Recorder) -> Response {
    if rec.is_empty() {
        return res;
    }
    let is_sse = res
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let (parts, body) = res.into_parts();
    if is_sse {
        return Response::from_parts(parts, sse_recorded(body, rec));
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_RECORDED_JSON).await else {
        let _ = rec.finish("too_large", None).await;
        return super::rpc_error(
            StatusCode::BAD_GATEWAY,
            -32603,
            "the upstream's answer is larger than the gateway records (32 MiB)",
        );
    };
    let mut parsed = serde_json::from_slice::<Value>(&bytes).ok();
    let before = rec.filtering().then(|| parsed.clone());
    let mut messages: Vec<&mut Value> = match &mut parsed {
        Some(Value::Array(items)) => items.iter_mut().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    for m in messages.iter_mut() {
        if rec.answer(m).await.is_err() {
            return withheld(m.get("id").unwrap_or(&Value::Null));
        }
    }
    let messages: Vec<&Value> = messages.into_iter().map(|m| &*m).collect();
    // What is left was answered by no message with its id: an error of the gateway's or the
    // upstream's about the whole request, or nothing.
    let (outcome, code) = match messages.first() {
        Some(m) if m.get("error").is_some() => outcome_of(m),
        _ if !parts.status.is_success() => ("error", None),
        _ => ("no_response", None),
    };
    if rec.finish(outcome, code).await.is_err() {
        return withheld(&Value::Null);
    }
    // A filter changed the answer: the new JSON goes out (with its own length).
    if let (Some(before), Some(after)) = (before, &parsed) {
        if before.as_ref() != Some(after) {
            let mut parts = parts;
            parts.headers.remove(http::header::CONTENT_LENGTH);
            return Response::from_parts(parts, Body::from(after.to_string()));
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// An SSE body whose answering events wait for their records.
fn sse_recorded(body: Body, rec: Recorder) -> Body {
    struct St {
        upstream: axum::body::BodyDataStream,
        parser: sse::SseParser,
        rec: Recorder,
        done: bool,
    }
    let st = St {
        upstream: body.into_data_stream(),
        parser: sse::SseParser::default(),
        rec,
        done: false,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let Some(chunk) = st.upstream.next().await else {
            st.done = true;
            let _ = st.rec.finish("no_response", None).await;
            return None;
        };
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                st.done = true;
                let _ = st.rec.finish("no_response", None).await;
                return Some((Err(std::io::Error::other(e)), st));
            }
        };
        let events = match st.parser.feed(&chunk) {
            Ok(ev) => ev,
            Err(e) => {
                st.done = true;
                return Some((Err(std::io::Error::other(e)), st));
            }
        };
        let mut out = String::new();
        for mut e in events {
            if let Ok(mut v) = serde_json::from_str::<Value>(&e.data) {
                let before = st.rec.filtering().then(|| v.clone());
                if st.rec.answer(&mut v).await.is_err() {
                    // The answer is withheld; the client learns why on the same stream.
                    let id = v.get("id").cloned().unwrap_or(Value::Null);
                    let err = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603,
                        "message": "the audit log cannot be written: the answer was withheld"}});
                    out.push_str(&format!("event: message\ndata: {err}\n\n"));
                    st.done = true;
                    break;
                }
                if before.is_some_and(|b| b != v) {
                    e.data = v.to_string();
                }
            }
            out.push_str(&e.encode());
        }
        Some((Ok(Bytes::from(out)), st))
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_argument_policy_keeps_only_what_it_says() {
        let args = json!({"account": "ACME-1", "amount": 120, "dry_run": true, "tags": ["a"]});
        let kept = |a: Arguments| {
            let mut d = json!({});
            a.apply(&args, &mut d);
            d
        };
        assert_eq!(kept(Arguments::None), json!({}));
        let hashed = kept(Arguments::Hashed);
        assert_eq!(hashed["arguments_sha256"].as_str().unwrap().len(), 64);
        assert!(!hashed.to_string().contains("ACME-1"));
        let redacted = kept(Arguments::Redacted);
        assert_eq!(
            redacted["arguments"],
            json!({"account": "<string>", "amount": "<number>", "dry_run": true, "tags": ["<string>"]})
        );
        assert!(!redacted.to_string().contains("ACME-1"));
        assert_eq!(kept(Arguments::Full)["arguments"], args);
        let big = json!({"blob": "é".repeat(MAX_FULL_ARGUMENTS)});
        let mut d = json!({});
        Arguments::Full.apply(&big, &mut d);
        assert!(d.get("arguments").is_none());
        assert!(d["arguments_truncated"].as_str().unwrap().len() <= MAX_FULL_ARGUMENTS);
        assert_eq!(
            Arguments::parse("bogus"),
            Arguments::Hashed,
            "unknown reads as the default"
        );
    }

    #[test]
    fn an_answer_names_its_outcome() {
        assert_eq!(outcome_of(&json!({"id": 1, "result": {}})), ("ok", None));
        assert_eq!(
            outcome_of(&json!({"id": 1, "error": {"code": -32602, "message": "x"}})),
            ("error", Some(-32602))
        );
        assert_eq!(
            outcome_of(&json!({"id": 1, "result": {"isError": true, "content": []}})),
            ("tool_error", None)
        );
        assert_eq!(
            outcome_of(&json!({"id": 1, "result": {"resultType": "input_required"}})),
            ("input_required", None)
        );
    }
}
