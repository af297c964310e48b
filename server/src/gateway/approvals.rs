//! Human approval for tool calls: a `tools/call` that an approval rule covers (a tool marked —
//! or, without annotations, presumed — destructive, or any tool the rule names) waits, before
//! it goes upstream, until an approver decides in the console or the API; no decision within
//! the rule's timeout is a denial. Requests and decisions live in the database, so an approver
//! on any replica releases a call waiting on another.

use crate::audit::{Category, Event};
use crate::policy::TenantPolicy;
use crate::state::AppState;
use crate::store::{now_micros, ApprovalRule, Store};
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
        let Some(tool) = e.target.clone().filter(|_| e.action == "tools/call") else {
            continue;
        };
        let observed = state
            .gateway
            .observed_hints(who.tenant_id, who.server, &tool);
        let Some(rule) = rule_for(rules, policy, observed, who.server, &tool) else {
            continue;
        };
        let approval_id = uuid::Uuid::now_v7().to_string();
        let expires_at = now_micros() + rule.timeout_secs * 1_000_000;
        let shown = e
            .detail
            .get("arguments")
            .or_else(|| e.detail.get("arguments_sha256"))
            .map(ToString::to_string)
            .unwrap_or_default();
        let event = |action: &str, outcome: &str, by: Option<&str>| {
            Event::new(who.tenant_id, Category::Security, action, outcome)
                .by(who.user_id, who.email)
                .target(tool.clone())
                .detail(json!({"approval_id": approval_id, "server": who.server,
                    "rule": rule.rule_id, "decided_by": by}))
        };
        let decision = match state
            .store
            .create_approval_request(
                who.tenant_id,
                &approval_id,
                who.user_id,
                who.email,
                who.server,
                &tool,
                &shown,
                expires_at,
            )
            .await
        {
            Ok(()) => {
                state
                    .audit
                    .note(event("approval.request", "pending", None))
                    .await;
                wait(&state.store, who.tenant_id, &approval_id, expires_at).await
            }
            Err(err) => {
                tracing::error!(error = %err, "an approval request could not be stored: the call is denied");
                Decision::Denied("(the request could not be stored)".into())
            }
        };
        match decision {
            Decision::Approved(by) => {
                state
                    .audit
                    .note(event("approval.approve", "ok", Some(&by)))
                    .await;
                e.detail["approved_by"] = json!(by);
            }
            Decision::Denied(by) => {
                state
                    .audit
                    .note(event("approval.deny", "ok", Some(&by)))
                    .await;
                return Some((
                    i,
                    "approval_denied",
                    format!("the call was not approved (denied by {by})"),
                ));
            }
            Decision::Expired => {
                state.audit.note(event("approval.expire", "ok", None)).await;
                return Some((
                    i,
                    "approval_timeout",
                    format!(
                        "the call was not approved within {} s: denied",
                        rule.timeout_secs
                    ),
                ));
            }
        }
    }
    None
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
