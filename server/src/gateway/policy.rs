//! The two seams every gateway request passes, in this order: `authorize` (may this caller send
//! this message to this server?) and `audit` (record what was asked and what was decided).
//!
//! Both run on the hot path from memory only: the tenant's `Policy` is part of the gateway
//! snapshot, rebuilt when the tenant's data changes. Today every tenant's policy is empty
//! (allow-all: any holder of a valid gateway token may use every server of the tenant); the
//! identity work fills it from registries and group mappings, and the audit work turns the
//! audit line into a durable, exportable record.

use http::Method;

/// What a caller is attempting, as the seams see it.
#[derive(Debug)]
pub struct Attempt<'a> {
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub server: &'a str,
    pub http_method: &'a Method,
    /// The JSON-RPC method of a POSTed message (`None` for GET and DELETE).
    pub rpc_method: Option<&'a str>,
    /// The tool or prompt name, or the resource URI, the message is about.
    pub target: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused, with the reason the caller is told.
    Deny(String),
}

/// A rule that refuses: on a server (any when `None`), for a tool/prompt/resource (any when
/// `None`).
#[derive(Debug, Clone, Default)]
pub struct DenyRule {
    pub server: Option<String>,
    pub target: Option<String>,
    pub reason: String,
}

/// One tenant's gateway policy. No rules: allow everything.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub deny: Vec<DenyRule>,
}

impl Policy {
    pub fn authorize(&self, a: &Attempt<'_>) -> Decision {
        for rule in &self.deny {
            let server_matches = rule.server.as_deref().is_none_or(|s| s == a.server);
            let target_matches = match (&rule.target, a.target) {
                (None, _) => true,
                (Some(t), Some(asked)) => t == asked,
                (Some(_), None) => false,
            };
            if server_matches && target_matches {
                return Decision::Deny(rule.reason.clone());
            }
        }
        Decision::Allow
    }
}

/// Records the attempt and the decision: one structured line (field `audit = true`) until the
/// audit work makes it a durable record.
pub fn audit(a: &Attempt<'_>, decision: &Decision) {
    let outcome = match decision {
        Decision::Allow => "allowed",
        Decision::Deny(_) => "denied",
    };
    let (rpc_method, target) = (a.rpc_method.unwrap_or("-"), a.target.unwrap_or("-"));
    tracing::info!(audit = true, tenant.id = %a.tenant_id, user.id = %a.user_id,
        server.slug = %a.server, http.method = %a.http_method, mcp.method = rpc_method,
        mcp.target = target, outcome = outcome, "mcp request");
}

/// The tool or prompt name, or resource URI, a JSON-RPC message is about.
pub fn target_of(message: &serde_json::Value) -> Option<&str> {
    let params = message.get("params")?;
    params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(serde_json::Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt<'a>(server: &'a str, target: Option<&'a str>) -> Attempt<'a> {
        Attempt {
            tenant_id: "t",
            user_id: "u",
            server,
            http_method: &Method::POST,
            rpc_method: Some("tools/call"),
            target,
        }
    }

    #[test]
    fn an_empty_policy_allows_and_deny_rules_match_server_and_target() {
        assert_eq!(
            Policy::default().authorize(&attempt("crm", Some("x"))),
            Decision::Allow
        );
        let p = Policy {
            deny: vec![DenyRule {
                server: Some("crm".into()),
                target: Some("delete_account".into()),
                reason: "destructive".into(),
            }],
        };
        assert_eq!(
            p.authorize(&attempt("crm", Some("delete_account"))),
            Decision::Deny("destructive".into())
        );
        assert_eq!(
            p.authorize(&attempt("crm", Some("read_account"))),
            Decision::Allow
        );
        assert_eq!(
            p.authorize(&attempt("hr", Some("delete_account"))),
            Decision::Allow
        );
        assert_eq!(p.authorize(&attempt("crm", None)), Decision::Allow);
    }

    #[test]
    fn the_target_is_the_name_or_the_uri() {
        let call = serde_json::json!({"params": {"name": "add", "arguments": {}}});
        assert_eq!(target_of(&call), Some("add"));
        let read = serde_json::json!({"params": {"uri": "test://x"}});
        assert_eq!(target_of(&read), Some("test://x"));
        assert_eq!(
            target_of(&serde_json::json!({"method": "tools/list"})),
            None
        );
    }
}
