//! Human approval for tool calls: a `tools/call` that an approval rule covers (a tool marked —
//! or, without annotations, presumed — destructive, or any tool the rule names) waits, before
//! it goes upstream, until an approver decides in the console or the API; no decision within
//! the rule's timeout is a denial. Requests and decisions live in the database, so an approver
//! on any replica releases a call waiting on another.

use crate::policy::TenantPolicy;
use crate::store::{now_micros, ApprovalRule, Store};
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
