//! The two seams every gateway request passes, in this order: `check` (may this caller send
//! this message to this server?) and `audit` (record what was asked and what was decided), plus
//! the filters that take what a caller may not use out of list responses.
//!
//! Both run on the hot path from memory only: the tenant's compiled [`TenantPolicy`] is part of
//! the gateway snapshot, rebuilt when the tenant's identity data changes. A refused call gets
//! the answer an upstream gives for something that does not exist ("Unknown tool", "Resource
//! not found"), so a caller cannot tell a hidden tool from a missing one.

use crate::policy::{Ask, Hints, Kind, TenantPolicy, Verdict, Why};
use http::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Rewrites the response message of one request (a list, filtered by policy).
pub type ResponseFilter = Arc<dyn Fn(&mut Value) + Send + Sync>;

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

/// The outcome of the policy seam for one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Allowed; the verdict names the rule (`None`: a message policy does not look into, such
    /// as `initialize` or a list, on a server the caller reaches).
    Allow(Option<Verdict>),
    /// Refused: the verdict, and the JSON-RPC error object to answer with.
    Deny(Verdict, Value),
}

/// Tool annotations seen in `tools/list` responses, for decisions on tools outside a server's
/// reviewed catalog (per replica, in memory; bounded).
#[derive(Debug, Default)]
pub struct Observed(Mutex<HashMap<(String, String, String), Hints>>);

const OBSERVED_CAP: usize = 100_000;

impl Observed {
    pub fn get(&self, tenant: &str, server: &str, tool: &str) -> Option<Hints> {
        let map = super::lock(&self.0);
        map.get(&(tenant.to_owned(), server.to_owned(), tool.to_owned()))
            .copied()
    }

    /// Tool names seen for a server.
    pub fn tools(&self, tenant: &str, server: &str) -> Vec<String> {
        let map = super::lock(&self.0);
        map.keys()
            .filter(|(t, s, _)| t == tenant && s == server)
            .map(|(_, _, n)| n.clone())
            .collect()
    }

    pub(crate) fn record(&self, tenant: &str, server: &str, tools: &[Value]) {
        let mut map = super::lock(&self.0);
        if map.len() + tools.len() > OBSERVED_CAP {
            map.clear();
        }
        for t in tools {
            if let Some(name) = t.get("name").and_then(Value::as_str) {
                map.insert(
                    (tenant.to_owned(), server.to_owned(), name.to_owned()),
                    Hints::from_annotations(t.get("annotations")),
                );
            }
        }
    }
}

/// What a message asks the policy about: (kind, name, arguments).
fn subject_of(rpc_method: &str, msg: &Value) -> Option<(Kind, String, Option<Value>)> {
    let params = msg.get("params");
    let s = |p: &str| {
        params
            .and_then(|v| v.pointer(p))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let args = || {
        Some(
            params
                .and_then(|p| p.get("arguments"))
                .cloned()
                .unwrap_or_else(|| json!({})),
        )
    };
    match rpc_method {
        // A call without a name is malformed; the upstream answers it. Policy still refuses
        // it below when the name is missing (fail closed): "" matches no grant's rules but "*".
        "tools/call" => Some((Kind::Tool, s("/name").unwrap_or_default(), args())),
        "prompts/get" => Some((Kind::Prompt, s("/name").unwrap_or_default(), args())),
        "resources/read" | "resources/subscribe" => {
            Some((Kind::Resource, s("/uri").unwrap_or_default(), None))
        }
        "completion/complete" => match s("/ref/type").as_deref() {
            Some("ref/prompt") => Some((Kind::Prompt, s("/ref/name").unwrap_or_default(), None)),
            Some("ref/resource") => Some((Kind::Resource, s("/ref/uri").unwrap_or_default(), None)),
            _ => None,
        },
        _ => None,
    }
}

/// The error an upstream gives for what does not exist.
fn not_found(kind: Kind, name: &str) -> Value {
    match kind {
        Kind::Tool => json!({"code": -32602, "message": format!("Unknown tool: {name}")}),
        Kind::Prompt => json!({"code": -32602, "message": format!("Unknown prompt: {name}")}),
        Kind::Resource => {
            json!({"code": -32002, "message": "Resource not found", "data": {"uri": name}})
        }
    }
}

/// The policy seam for one message (the caller already reaches the server: the endpoint
/// checked that before reading the body).
pub fn check(
    policy: &TenantPolicy,
    observed: &Observed,
    pins: Option<&crate::pins::Watch>,
    a: &Attempt<'_>,
    msg: Option<&Value>,
) -> Decision {
    let (Some(rpc_method), Some(msg)) = (a.rpc_method, msg) else {
        return Decision::Allow(None);
    };
    let Some((kind, name, arguments)) = subject_of(rpc_method, msg) else {
        return Decision::Allow(None);
    };
    let hints = match kind {
        Kind::Tool => policy.hints(a.server, &name, observed.get(a.tenant_id, a.server, &name)),
        _ => Hints::default(),
    };
    let verdict = policy.decide(
        a.user_id,
        a.server,
        &Ask {
            kind,
            name: &name,
            hints,
            arguments: arguments.as_ref(),
        },
    );
    if verdict.allowed
        && kind == Kind::Tool
        && pins.is_some_and(|p| p.just_changed(a.tenant_id, a.server, &name))
    {
        let held = Verdict {
            allowed: false,
            why: Why::ToolChanged,
        };
        return Decision::Deny(held, not_found(kind, &name));
    }
    if verdict.allowed {
        Decision::Allow(Some(verdict))
    } else {
        Decision::Deny(verdict, not_found(kind, &name))
    }
}

/// A filter for the response to a list request, or `None` when `rpc_method` lists nothing
/// policy governs.
// Each argument is one independent input of the filter (the snapshot's policy, this replica's
// watches, the tenant's injection action, who and where); a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn list_filter(
    policy: Arc<TenantPolicy>,
    observed: Arc<Observed>,
    pins: Arc<crate::pins::Watch>,
    filters: Option<Arc<crate::filters::Policy>>,
    tenant_id: &str,
    user_id: &str,
    server: &str,
    rpc_method: &str,
) -> Option<ResponseFilter> {
    let (kind, field) = match rpc_method {
        "tools/list" => (Kind::Tool, "tools"),
        "prompts/list" => (Kind::Prompt, "prompts"),
        "resources/list" => (Kind::Resource, "resources"),
        "resources/templates/list" => (Kind::Resource, "resourceTemplates"),
        _ => return None,
    };
    let (tenant_id, user_id, server) =
        (tenant_id.to_owned(), user_id.to_owned(), server.to_owned());
    Some(Arc::new(move |msg: &mut Value| {
        let Some(items) = msg
            .get_mut("result")
            .and_then(|r| r.get_mut(field))
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        if kind == Kind::Tool {
            observed.record(&tenant_id, &server, items);
            pins.observe(&policy, &tenant_id, &server, items);
        }
        screen_listed(&pins, filters.as_deref(), &tenant_id, &server, items);
        items.retain(|item| {
            crate::policy::list_item_visible(&policy, &user_id, &server, kind, item)
        });
    }))
}

/// Scans listed tools, prompts and resources for prompt injection in their descriptions:
/// hidden (block) or their description prefixed with a warning (flag); reported either way.
pub fn screen_listed(
    pins: &crate::pins::Watch,
    filters: Option<&crate::filters::Policy>,
    tenant_id: &str,
    server: &str,
    items: &mut Vec<Value>,
) {
    use crate::filters::InjectionAction;
    let Some(filters) = filters else {
        return;
    };
    // Tools with field rules: their output schema loses what the rules take out.
    if !filters.tools.is_empty() {
        for item in items.iter_mut() {
            let rules = item
                .get("name")
                .and_then(Value::as_str)
                .and_then(|n| filters.tools.get(n));
            if let Some(r) = rules.cloned() {
                crate::filters::fields::schema(&r, item);
            }
        }
    }
    let action = filters.injection;
    if action == InjectionAction::Off {
        return;
    }
    items.retain_mut(|item| {
        let v = crate::filters::scan_listed(item);
        if !v.is_injection() {
            return true;
        }
        let name = item
            .get("name")
            .or_else(|| item.get("uri"))
            .or_else(|| item.get("uriTemplate"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        pins.injection(tenant_id, server, &name, &v, action);
        match action {
            InjectionAction::Block => false,
            InjectionAction::Flag => {
                let d = item
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                item["description"] = json!(format!("{} {d}", crate::filters::INJECTION_WARNING));
                true
            }
            _ => true,
        }
    });
}

/// One filter for the responses of a batch: each response goes through its request's filter,
/// matched by JSON-RPC id; responses to other requests pass untouched.
pub fn by_id(filters: Vec<(Value, ResponseFilter)>) -> ResponseFilter {
    Arc::new(move |msg: &mut Value| {
        let id = msg.get("id").cloned();
        if let Some((_, f)) = filters.iter().find(|(i, _)| Some(i) == id.as_ref()) {
            f(msg);
        }
    })
}

/// A short label of the verdict's reason, for the audit line.
fn why_label(policy_decision: &Decision) -> String {
    let v = match policy_decision {
        Decision::Allow(None) => return "server granted".into(),
        Decision::Allow(Some(v)) | Decision::Deny(v, _) => v,
    };
    match v.why {
        Why::UnknownUser => "unknown user".into(),
        Why::Inactive => "user deactivated".into(),
        Why::UnknownServer => "unknown server".into(),
        Why::NotGranted => "server not granted".into(),
        Why::NewTool => "tool outside the reviewed catalog".into(),
        Why::ToolChanged => "tool definition changed since review".into(),
        Why::Rule { grant, rule } => format!("grant #{grant} rule {}", rule + 1),
        Why::OpenGrant { grant } => format!("grant #{grant} (all)"),
        Why::NoAllowRule => "no allow rule".into(),
    }
}

/// The durable audit event of an attempt and its decision: who, which server, method and
/// target, the decision and the grant and rule that made it, and the arguments as the tenant's
/// argument policy says. Its outcome is `denied` for a refusal, else completed by the answer
/// (record.rs).
pub fn audit_event(
    a: &Attempt<'_>,
    decision: &Decision,
    caller_email: &str,
    policy: &TenantPolicy,
    msg: Option<&Value>,
    arguments: super::record::Arguments,
) -> crate::audit::Event {
    let (outcome, verdict) = match decision {
        Decision::Allow(_) => ("forwarded", "allow"),
        Decision::Deny(..) => ("denied", "deny"),
    };
    let action = match a.rpc_method {
        Some(m) => m.to_owned(),
        None => format!("http {}", a.http_method),
    };
    let mut detail = json!({ "rule": why_label(decision) });
    if let Decision::Allow(Some(v)) | Decision::Deny(v, _) = decision {
        if let Why::Rule { grant, .. } | Why::OpenGrant { grant } = v.why {
            if let Some((grant_id, registry)) = policy.grant_ref(grant) {
                detail["grant"] = json!(grant_id);
                detail["registry"] = json!(registry);
            }
        }
    }
    if let Some(args) = msg.and_then(|m| m.pointer("/params/arguments")) {
        arguments.apply(args, &mut detail);
    }
    if let Some(id) = msg.and_then(|m| m.get("id")) {
        detail["jsonrpc_id"] = id.clone();
    }
    let mut e =
        crate::audit::Event::new(a.tenant_id, crate::audit::Category::Mcp, &action, outcome)
            .by(a.user_id, caller_email)
            .detail(detail);
    e.decision = Some(verdict.to_owned());
    e.groups = policy.group_names(a.user_id);
    e.server = Some(a.server.to_owned());
    e.target = a.target.map(str::to_owned);
    e
}

/// Records the attempt and the decision as one structured log line (field `audit = true`),
/// beside the durable record.
pub fn audit(a: &Attempt<'_>, decision: &Decision) {
    let outcome = match decision {
        Decision::Allow(_) => "allowed",
        Decision::Deny(..) => "denied",
    };
    let (rpc_method, target) = (a.rpc_method.unwrap_or("-"), a.target.unwrap_or("-"));
    let why = why_label(decision);
    tracing::info!(audit = true, tenant.id = %a.tenant_id, user.id = %a.user_id,
        server.slug = %a.server, http.method = %a.http_method, mcp.method = rpc_method,
        mcp.target = target, outcome = outcome, policy.reason = %why, "mcp request");
}

/// The tool or prompt name, or resource URI, a JSON-RPC message is about.
pub fn target_of(message: &Value) -> Option<&str> {
    let params = message.get("params")?;
    params
        .get("name")
        .or_else(|| params.get("uri"))
        .or_else(|| {
            params
                .get("ref")
                .and_then(|r| r.get("name").or_else(|| r.get("uri")))
        })
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{GrantInput, GrantRules, PolicyInputs, ServerInput, Subject, UserInput};

    fn policy(rules: Value) -> TenantPolicy {
        TenantPolicy::compile(PolicyInputs {
            users: vec![UserInput {
                user_id: "u".into(),
                email: "u@x.test".into(),
                active: true,
                groups: vec![],
            }],
            groups: vec![],
            servers: vec![ServerInput {
                slug: "crm".into(),
                new_tools_deny: false,
                catalog: HashMap::new(),
                ..Default::default()
            }],
            grants: vec![GrantInput {
                grant_id: "g".into(),
                registry_slug: "r".into(),
                registry_name: "R".into(),
                servers: vec!["crm".into()],
                subject: Subject::Everyone,
                rules: serde_json::from_value::<GrantRules>(json!({ "rules": rules })).unwrap(),
            }],
        })
    }

    fn attempt<'a>(method: &'a str) -> Attempt<'a> {
        Attempt {
            tenant_id: "t",
            user_id: "u",
            server: "crm",
            http_method: &Method::POST,
            rpc_method: Some(method),
            target: None,
        }
    }

    #[test]
    fn refusals_look_like_missing_things() {
        let p = policy(json!([
            {"effect": "deny", "match": "delete_*"},
            {"effect": "deny", "kind": "resource", "match": "secret://*"},
            {"effect": "deny", "kind": "prompt", "match": "admin"}
        ]));
        let o = Observed::default();
        let call =
            json!({"method": "tools/call", "params": {"name": "delete_all", "arguments": {}}});
        match check(&p, &o, None, &attempt("tools/call"), Some(&call)) {
            Decision::Deny(_, e) => {
                assert_eq!(
                    e,
                    json!({"code": -32602, "message": "Unknown tool: delete_all"})
                )
            }
            d => panic!("{d:?}"),
        }
        let read = json!({"method": "resources/read", "params": {"uri": "secret://k"}});
        assert!(matches!(
            check(&p, &o, None, &attempt("resources/read"), Some(&read)),
            Decision::Deny(_, e) if e["code"] == -32002
        ));
        let complete = json!({"method": "completion/complete",
            "params": {"ref": {"type": "ref/prompt", "name": "admin"}, "argument": {"name": "a", "value": ""}}});
        assert!(matches!(
            check(
                &p,
                &o,
                None,
                &attempt("completion/complete"),
                Some(&complete)
            ),
            Decision::Deny(..)
        ));
        let ok = json!({"method": "tools/call", "params": {"name": "search"}});
        assert!(matches!(
            check(&p, &o, None, &attempt("tools/call"), Some(&ok)),
            Decision::Allow(Some(_))
        ));
        let list = json!({"method": "tools/list"});
        assert_eq!(
            check(&p, &o, None, &attempt("tools/list"), Some(&list)),
            Decision::Allow(None)
        );
    }

    #[test]
    fn list_responses_lose_what_the_caller_may_not_use_and_teach_the_hints() {
        let p = Arc::new(policy(json!([
            {"effect": "deny", "annotations": {"destructive": true}}
        ])));
        let o = Arc::new(Observed::default());
        let f = list_filter(
            p.clone(),
            o.clone(),
            Arc::default(),
            None,
            "t",
            "u",
            "crm",
            "tools/list",
        )
        .unwrap();
        let mut msg = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
            {"name": "read", "annotations": {"readOnlyHint": true}},
            {"name": "wipe"}
        ], "nextCursor": "c"}});
        f(&mut msg);
        assert_eq!(
            msg["result"]["tools"],
            json!([{"name": "read", "annotations": {"readOnlyHint": true}}])
        );
        assert_eq!(msg["result"]["nextCursor"], "c");
        // The hints seen in the list now decide calls to those tools.
        let call = json!({"method": "tools/call", "params": {"name": "read"}});
        assert!(matches!(
            check(&p, &o, None, &attempt("tools/call"), Some(&call)),
            Decision::Allow(_)
        ));
        assert!(list_filter(p, o, Arc::default(), None, "t", "u", "crm", "ping").is_none());
        // Errors pass untouched.
        let mut err = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "x"}});
        let before = err.clone();
        let f = list_filter(
            Arc::new(policy(json!([]))),
            Arc::default(),
            Arc::default(),
            None,
            "t",
            "u",
            "crm",
            "prompts/list",
        )
        .unwrap();
        f(&mut err);
        assert_eq!(err, before);
    }

    #[test]
    fn a_batch_filters_each_list_response_by_its_request_id() {
        let p = Arc::new(policy(json!([{"effect": "deny", "match": "secret*"}])));
        let o = Arc::new(Observed::default());
        let tools = list_filter(
            p.clone(),
            o.clone(),
            Arc::default(),
            None,
            "t",
            "u",
            "crm",
            "tools/list",
        )
        .unwrap();
        let prompts =
            list_filter(p, o, Arc::default(), None, "t", "u", "crm", "prompts/list").unwrap();
        let f = by_id(vec![(json!(1), tools), (json!("b"), prompts)]);
        let mut batch = json!([
            {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "secret_x"}, {"name": "ok"}]}},
            {"jsonrpc": "2.0", "id": "b", "result": {"prompts": [{"name": "p"}]}},
            {"jsonrpc": "2.0", "id": 3, "result": {"tools": [{"name": "secret_y"}]}}
        ]);
        for m in batch.as_array_mut().unwrap() {
            f(m);
        }
        assert_eq!(batch[0]["result"]["tools"], json!([{"name": "ok"}]));
        assert_eq!(batch[1]["result"]["prompts"], json!([{"name": "p"}]));
        // Not a list request of this batch: untouched.
        assert_eq!(batch[2]["result"]["tools"], json!([{"name": "secret_y"}]));
    }

    #[test]
    fn the_target_is_the_name_or_the_uri() {
        let call = json!({"params": {"name": "add", "arguments": {}}});
        assert_eq!(target_of(&call), Some("add"));
        let read = json!({"params": {"uri": "test://x"}});
        assert_eq!(target_of(&read), Some("test://x"));
        assert_eq!(target_of(&json!({"method": "tools/list"})), None);
    }
}
