//! Human approval for tool calls: a `tools/call` that an approval rule covers (a tool marked —
//! or, without annotations, presumed — destructive, or any tool the rule names) waits, before
//! it goes upstream, until an approver decides in the console or the API; no decision within
//! the rule's timeout is a denial. Requests and decisions live in the database, so an approver
//! on any replica releases a call waiting on another.

use crate::audit::{Category, Event};
use crate::policy::TenantPolicy;
use crate::state::AppState;
use crate::store::{now_micros, ApprovalRule, Store};
use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// How often a waiting call looks for the decision.
const POLL: Duration = Duration::from_millis(250);

/// The rule that makes this call wait, if any (the first that matches).
pub fn rule_for<'a>(
    rules: &'a [ApprovalRule],
    policy: &TenantPolicy,
    observed: Option<crate::policy::Hints>,
    server: &str,
    tool: &str,
) -> Option<&'a ApprovalRule> {
    rules.iter().find(|r| {
        let server_ok = r.server == "*" || r.server == server;
        let tool_ok = globset::Glob::new(&r.tool)
            .map(|g| g.compile_matcher().is_match(tool))
            .unwrap_or(false);
        let applies = match r.applies.as_str() {
            "always" => true,
            // Unannotated tools are presumed destructive (the MCP defaults).
            _ => policy.hints(server, tool, observed).is_destructive(),
        };
        server_ok && tool_ok && applies
    })
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approved(String),
    Denied(String),
    Expired,
}

/// Waits for the request's decision until it expires (then marks it expired). A database
/// failure counts as a denial (fail closed).
pub async fn wait(store: &Store, tenant_id: &str, approval_id: &str, expires_at: i64) -> Decision {
    loop {
        match store.approval_request(tenant_id, approval_id).await {
            Ok(Some(r)) => match r.status.as_str() {
                "approved" => return Decision::Approved(r.decided_by.unwrap_or_default()),
                "denied" => return Decision::Denied(r.decided_by.unwrap_or_default()),
                "expired" => return Decision::Expired,
                _ => {}
            },
            Ok(None) => return Decision::Denied("(the request is gone)".into()),
            Err(e) => {
                tracing::error!(error = %e, "an approval could not be read: the call is denied");
                return Decision::Denied("(the approval could not be read)".into());
            }
        }
        if now_micros() >= expires_at {
            // Only if nobody decided in the meantime.
            match store
                .decide_approval(tenant_id, approval_id, "expired", None)
                .await
            {
                Ok(true) | Err(_) => return Decision::Expired,
                Ok(false) => continue, // decided just now: read it
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Who asks, for the requests and their records.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub email: &'a str,
    pub server: &'a str,
}

/// A call that waits for approval, and why.
#[derive(Debug, Clone)]
pub struct Covered {
    /// Which of the pending requests.
    pub index: usize,
    pub rule: ApprovalRule,
    pub tool: String,
    /// What the approver sees of the arguments.
    pub shown: String,
}

/// The rule covering pending request `e`, if any.
fn covers(
    state: &AppState,
    who: Asker<'_>,
    rules: &[ApprovalRule],
    policy: &TenantPolicy,
    e: &Event,
) -> Option<(ApprovalRule, String, String)> {
    let tool = e.target.clone().filter(|_| e.action == "tools/call")?;
    let observed = state
        .gateway
        .observed_hints(who.tenant_id, who.server, &tool);
    let rule = rule_for(rules, policy, observed, who.server, &tool)?;
    let shown = e
        .detail
        .get("arguments")
        .or_else(|| e.detail.get("arguments_sha256"))
        .map(ToString::to_string)
        .unwrap_or_default();
    Some((rule.clone(), tool, shown))
}

/// The first pending call a rule covers.
pub fn covering(
    state: &AppState,
    who: Asker<'_>,
    rules: &[ApprovalRule],
    policy: &TenantPolicy,
    pending: &[(Value, Event)],
) -> Option<Covered> {
    pending.iter().enumerate().find_map(|(index, (_, e))| {
        covers(state, who, rules, policy, e).map(|(rule, tool, shown)| Covered {
            index,
            rule,
            tool,
            shown,
        })
    })
}

/// The record of an approval step.
fn step(
    who: Asker<'_>,
    c: &Covered,
    approval_id: &str,
    action: &str,
    outcome: &str,
    by: Option<&str>,
) -> Event {
    Event::new(who.tenant_id, Category::Security, action, outcome)
        .by(who.user_id, who.email)
        .target(c.tool.clone())
        .detail(json!({"approval_id": approval_id, "server": who.server,
            "rule": c.rule.rule_id, "decided_by": by}))
}

/// Stores the request (recorded as `approval.request`); `None` when it cannot be stored.
async fn open(state: &AppState, who: Asker<'_>, c: &Covered) -> Option<(String, i64)> {
    let approval_id = uuid::Uuid::now_v7().to_string();
    let expires_at = now_micros() + c.rule.timeout_secs * 1_000_000;
    match state
        .store
        .create_approval_request(
            who.tenant_id,
            &approval_id,
            who.user_id,
            who.email,
            who.server,
            &c.tool,
            &c.shown,
            expires_at,
        )
        .await
    {
        Ok(()) => {
            state
                .audit
                .note(step(
                    who,
                    c,
                    &approval_id,
                    "approval.request",
                    "pending",
                    None,
                ))
                .await;
            Some((approval_id, expires_at))
        }
        Err(err) => {
            tracing::error!(error = %err, "an approval request could not be stored: the call is denied");
            None
        }
    }
}

/// Records how the wait ended; `None`: approved (the call's record names the approver), else
/// the refusal's outcome and message.
async fn settle(
    state: &AppState,
    who: Asker<'_>,
    c: &Covered,
    approval_id: &str,
    decision: Decision,
    e: &mut Event,
) -> Option<(&'static str, String)> {
    match decision {
        Decision::Approved(by) => {
            state
                .audit
                .note(step(
                    who,
                    c,
                    approval_id,
                    "approval.approve",
                    "ok",
                    Some(&by),
                ))
                .await;
            e.detail["approved_by"] = json!(by);
            None
        }
        Decision::Denied(by) => {
            state
                .audit
                .note(step(who, c, approval_id, "approval.deny", "ok", Some(&by)))
                .await;
            Some((
                "approval_denied",
                format!("the call was not approved (denied by {by})"),
            ))
        }
        Decision::Expired => {
            state
                .audit
                .note(step(who, c, approval_id, "approval.expire", "ok", None))
                .await;
            Some((
                "approval_timeout",
                format!(
                    "the call was not approved within {} s: denied",
                    c.rule.timeout_secs
                ),
            ))
        }
    }
}

/// Holds each covered `tools/call` of `pending` until it is decided. `None`: every call may
/// go on (an approved one's record names its approver); else the index of the first refused
/// call, its outcome and the message for the client.
pub async fn gate(
    state: &AppState,
    who: Asker<'_>,
    rules: &[ApprovalRule],
    policy: &TenantPolicy,
    pending: &mut [(Value, Event)],
) -> Option<(usize, &'static str, String)> {
    for (i, (_, e)) in pending.iter_mut().enumerate() {
        let Some((rule, tool, shown)) = covers(state, who, rules, policy, e) else {
            continue;
        };
        let c = Covered {
            index: i,
            rule,
            tool,
            shown,
        };
        let decision = match open(state, who, &c).await {
            Some((approval_id, expires_at)) => {
                let d = wait(&state.store, who.tenant_id, &approval_id, expires_at).await;
                (approval_id, d)
            }
            None => (
                String::new(),
                Decision::Denied("(the request could not be stored)".into()),
            ),
        };
        if let Some((outcome, message)) = settle(state, who, &c, &decision.0, decision.1, e).await {
            return Some((i, outcome, message));
        }
    }
    None
}

/// The id prefix of the gateway's own `elicitation/create` requests for approvals.
pub const ELICIT_PREFIX: &str = "portcullis-approval-";

fn sse_event(msg: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {msg}\n\n"))
}

/// Approval asked of the caller through MCP elicitation (their client declared it): the POST
/// is answered with an SSE stream carrying an `elicitation/create` request at once; the
/// client's answer (a POST the endpoint hands to `elicitation_answer`), or an approver in the
/// console, decides; then the call goes upstream and its answer follows on the same stream.
/// No decision in time denies the call (and the client is told to drop the question).
pub(crate) async fn by_elicitation(
    forward: super::Forward,
    c: Covered,
    mut pending: Vec<(Value, Event)>,
    permits: Vec<super::limits::Permit>,
    arrived: std::time::Instant,
) -> Response {
    let state = forward.state().clone();
    let (tenant_id, user_id, email, server) = {
        let e = &pending[c.index].1;
        (
            e.tenant_id.clone(),
            e.actor_id.clone().unwrap_or_default(),
            e.actor.clone().unwrap_or_default(),
            e.server.clone().unwrap_or_default(),
        )
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let who = Asker {
            tenant_id: &tenant_id,
            user_id: &user_id,
            email: &email,
            server: &server,
        };
        let opened = open(&state, who, &c).await;
        let (approval_id, decision) = match opened {
            Some((approval_id, expires_at)) => {
                let question = json!({"jsonrpc": "2.0", "id": format!("{ELICIT_PREFIX}{approval_id}"),
                "method": "elicitation/create", "params": {
                    "mode": "form",
                    "message": format!(
                        "Portcullis asks before this call runs: {} on {}, arguments {}. \
                         Approve it? (No answer within {} s denies it; an approver may decide in the console.)",
                        c.tool, server, if c.shown.is_empty() { "(none)" } else { &c.shown },
                        c.rule.timeout_secs),
                    "requestedSchema": {"type": "object", "properties": {
                        "approve": {"type": "boolean", "title": "Approve this call", "default": false}},
                        "required": ["approve"]},
                }});
                let _ = tx.send(Ok(sse_event(&question))).await;
                let d = wait(&state.store, &tenant_id, &approval_id, expires_at).await;
                if d == Decision::Expired {
                    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": format!("{ELICIT_PREFIX}{approval_id}"),
                                   "reason": "no decision in time"}});
                    let _ = tx.send(Ok(sse_event(&cancel))).await;
                }
                (approval_id, d)
            }
            None => (
                String::new(),
                Decision::Denied("(the request could not be stored)".into()),
            ),
        };
        let refusal = settle(
            &state,
            who,
            &c,
            &approval_id,
            decision,
            &mut pending[c.index].1,
        )
        .await;
        if let Some((outcome, message)) = refusal {
            let failing_id = pending[c.index].0.clone();
            let latency = i64::try_from(arrived.elapsed().as_micros()).unwrap_or(i64::MAX);
            let events: Vec<Event> = pending
                .into_iter()
                .map(|(_, mut e)| {
                    e.outcome = outcome.into();
                    e.latency_us = Some(latency);
                    e
                })
                .collect();
            let answer = if state.audit.record_many(events).await.is_ok() {
                json!({"jsonrpc": "2.0", "id": failing_id, "error": {"code": -32000, "message": message}})
            } else {
                json!({"jsonrpc": "2.0", "id": failing_id, "error": {"code": -32603,
                    "message": "the audit log cannot be written: the request was not carried out"}})
            };
            let _ = tx.send(Ok(sse_event(&answer))).await;
            return;
        }
        let res = forward.run(pending, permits, arrived).await;
        let is_sse = res
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut body = res.into_body().into_data_stream();
        if is_sse {
            while let Some(chunk) = body.next().await {
                if tx.send(chunk.map_err(std::io::Error::other)).await.is_err() {
                    return;
                }
            }
        } else {
            let mut all = Vec::new();
            while let Some(Ok(chunk)) = body.next().await {
                all.extend_from_slice(&chunk);
            }
            if let Ok(msg) = serde_json::from_slice::<Value>(&all) {
                let _ = tx.send(Ok(sse_event(&msg))).await;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut res = Response::new(Body::from_stream(stream));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    res.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    res
}

/// A client's answer to an approval question (`elicitation/create` with an id of ours):
/// accepted with `approve: true` approves, anything else denies. Only the user who was asked
/// can answer. 202 when taken (or already decided), 404 when there is no such question.
pub async fn elicitation_answer(
    state: &AppState,
    tenant_id: &str,
    email: &str,
    msg: &Value,
) -> Response {
    let Some(approval_id) = msg
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| id.strip_prefix(ELICIT_PREFIX))
    else {
        return super::rpc_error(StatusCode::BAD_REQUEST, -32600, "not an approval answer");
    };
    let row = match state.store.approval_request(tenant_id, approval_id).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "an approval answer could not be read");
            return super::rpc_error(StatusCode::SERVICE_UNAVAILABLE, -32603, "try again");
        }
    };
    let Some(row) = row.filter(|r| r.email.eq_ignore_ascii_case(email)) else {
        return super::rpc_error(StatusCode::NOT_FOUND, -32001, "no such approval question");
    };
    let approved = msg.pointer("/result/action").and_then(Value::as_str) == Some("accept")
        && msg
            .pointer("/result/content/approve")
            .and_then(Value::as_bool)
            == Some(true);
    if row.status == "pending" {
        let by = format!("{email} (in their MCP client)");
        let status = if approved { "approved" } else { "denied" };
        if let Err(e) = state
            .store
            .decide_approval(tenant_id, approval_id, status, Some(&by))
            .await
        {
            tracing::error!(error = %e, "an approval answer could not be stored");
            return super::rpc_error(StatusCode::SERVICE_UNAVAILABLE, -32603, "try again");
        }
    }
    StatusCode::ACCEPTED.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(server: &str, tool: &str, applies: &str) -> ApprovalRule {
        ApprovalRule {
            rule_id: "r".into(),
            server: server.into(),
            tool: tool.into(),
            applies: applies.into(),
            timeout_secs: 60,
        }
    }

    #[test]
    fn rules_match_by_server_tool_glob_and_destructiveness() {
        let p = TenantPolicy::default();
        let read_only = Some(crate::policy::Hints::from_annotations(Some(
            &serde_json::json!({"readOnlyHint": true, "destructiveHint": false}),
        )));
        let rules = [
            rule("crm", "delete_*", "always"),
            rule("*", "*", "destructive"),
        ];
        assert!(rule_for(&rules[..1], &p, read_only, "crm", "delete_contact").is_some());
        assert!(rule_for(&rules[..1], &p, read_only, "hr", "delete_contact").is_none());
        assert!(
            rule_for(&rules[1..], &p, read_only, "crm", "search").is_none(),
            "read-only"
        );
        assert!(
            rule_for(&rules[1..], &p, None, "crm", "search").is_some(),
            "no annotations: presumed destructive"
        );
    }
}
