//! Filters on the gateway path (issue 8), first part: personal data and secrets in answers.
//!
//! - `detect`: the detector — patterns plus validators (checksums, number plans, decodable JWT
//!   headers, entropy near key words) — measured against the labelled corpus in
//!   `tests/data/pii/` by `tests/api/filters.rs`.
//! - [`Policy`]: what a tenant does with each kind of finding, per server (or for all of its
//!   servers): `off`, `log` (counted in the record only), `redact` (a typed placeholder),
//!   `mask` (all but the last four characters), or `block` (the answer is replaced by a tool
//!   error / JSON-RPC error naming what it carried).
//! - [`apply`]: walks an MCP result structurally — every string value of `content` (text),
//!   `structuredContent`, resource `contents`, prompt `messages` — and rewrites only string
//!   values in place, so the JSON and its shape stay what the tool promised (keys such as
//!   `type`, `mimeType`, `uri` are never touched). The [`Report`] goes into the audit record:
//!   kinds and counts and the action, never a value.

pub mod detect;

use detect::Kind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What happens to a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    #[default]
    Off,
    Log,
    Redact,
    Mask,
    Block,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => Action::Off,
            "log" => Action::Log,
            "redact" => Action::Redact,
            "mask" => Action::Mask,
            "block" => Action::Block,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Log => "log",
            Action::Redact => "redact",
            Action::Mask => "mask",
            Action::Block => "block",
        }
    }
}

/// A filter policy: the action for personal data and for secrets, with per-type overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Personal data (EMAIL, PHONE, CREDIT_CARD, IBAN, US_SSN, IP_ADDRESS).
    #[serde(default)]
    pub pii: Action,
    /// Secrets (cloud keys, tokens, JWTs, private keys, database URLs, generic secrets).
    #[serde(default)]
    pub secrets: Action,
    /// Per type, by its name (`CREDIT_CARD: block`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub entities: BTreeMap<String, Action>,
}

impl Policy {
    /// Checks an admin's policy: every named type exists.
    pub fn validate(&self) -> Result<(), String> {
        for k in self.entities.keys() {
            if !Kind::ALL.iter().any(|x| x.name() == k) {
                return Err(format!(
                    "entities: unknown type {k:?} (known: {})",
                    Kind::ALL.map(Kind::name).join(", ")
                ));
            }
        }
        Ok(())
    }

    pub fn action(&self, k: Kind) -> Action {
        self.entities
            .get(k.name())
            .copied()
            .unwrap_or(if k.is_secret() {
                self.secrets
            } else {
                self.pii
            })
    }

    /// Whether the policy does anything at all.
    pub fn active(&self) -> bool {
        Kind::ALL.iter().any(|k| self.action(*k) != Action::Off)
    }
}

/// A tenant's policy for `slug` (a server, or `*` for every server without its own) as the
/// API and CLI show it: its own, and the one in effect.
pub async fn view(
    store: &crate::store::Store,
    tenant_id: &str,
    slug: &str,
) -> crate::store::Result<serde_json::Value> {
    let all = store.filter_policies(tenant_id).await?;
    let parse = |s: &str| serde_json::from_str::<Policy>(s).ok();
    let own = all
        .iter()
        .find(|(k, _)| k == slug)
        .and_then(|(_, s)| parse(s));
    let default = all
        .iter()
        .find(|(k, _)| k == "*")
        .and_then(|(_, s)| parse(s));
    let effective = own.clone().or(default).unwrap_or_default();
    Ok(serde_json::json!({
        "server": slug,
        "policy": own,
        "effective": effective,
    }))
}

/// Stores a policy for `slug` (a server of the tenant, or `*`); bad input changes nothing.
pub async fn set(
    store: &crate::store::Store,
    tenant_id: &str,
    slug: &str,
    policy: &Policy,
) -> Result<(), SetError> {
    policy.validate().map_err(SetError::Invalid)?;
    if slug != "*" {
        let s = crate::domain::ServerSlug::parse(slug).map_err(|_| SetError::NotFound)?;
        store
            .server_by_slug(tenant_id, &s)
            .await?
            .ok_or(SetError::NotFound)?;
    }
    let json = serde_json::to_string(policy).unwrap_or_default();
    store.put_filter_policy(tenant_id, slug, &json).await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such server")]
    NotFound,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What filtering one answer found and did (for the audit record; never a value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Findings by type.
    pub found: BTreeMap<&'static str, usize>,
    /// The strongest action taken.
    pub action: Option<Action>,
}

impl Report {
    pub fn blocked(&self) -> bool {
        self.action == Some(Action::Block)
    }

    /// The types that made an answer blocked, for the message the client gets.
    pub fn summary(&self) -> String {
        self.found
            .iter()
            .map(|(k, n)| format!("{k} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Keys whose values are protocol, not content.
const STRUCTURAL: &[&str] = &[
    "type",
    "mimeType",
    "uri",
    "role",
    "annotations",
    "_meta",
    "name",
];

/// Filters every content string of an MCP `result` in place; the report says what was found
/// and done. With a `block` finding nothing is rewritten (the caller replaces the answer).
pub fn apply(policy: &Policy, result: &mut Value) -> Report {
    let mut report = Report::default();
    // First pass: find (so that a block leaves the value untouched); the findings of each
    // string, in visiting order, serve the rewriting pass.
    let mut all: Vec<Vec<detect::Finding>> = Vec::new();
    visit(result, &mut |s: &mut String| {
        let findings = detect::scan(s);
        for f in &findings {
            let a = policy.action(f.kind);
            if a == Action::Off {
                continue;
            }
            *report.found.entry(f.kind.name()).or_default() += 1;
            report.action = report.action.max(Some(a));
        }
        all.push(findings);
    });
    if report.blocked() || report.action.is_none_or(|a| a == Action::Log) {
        return report;
    }
    let mut each = all.into_iter();
    visit(result, &mut |s: &mut String| {
        if let Some(findings) = each.next() {
            rewrite(policy, s, findings);
        }
    });
    report
}

fn visit(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter_mut().for_each(|x| visit(x, f)),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if !STRUCTURAL.contains(&k.as_str()) {
                    visit(x, f);
                }
            }
        }
        _ => {}
    }
}

fn rewrite(policy: &Policy, s: &mut String, findings: Vec<detect::Finding>) {
    if findings.is_empty() {
        return;
    }
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for f in findings {
        let action = policy.action(f.kind);
        if !matches!(action, Action::Redact | Action::Mask) {
            continue;
        }
        out.push_str(&s[at..f.start]);
        let value = &s[f.start..f.end];
        match action {
            Action::Redact => {
                out.push_str("[REDACTED:");
                out.push_str(f.kind.name());
                out.push(']');
            }
            _ => {
                // The last four letters or digits; a short value keeps nothing.
                let alnum: Vec<char> = value.chars().filter(|c| c.is_alphanumeric()).collect();
                out.push_str("****");
                if alnum.len() > 8 {
                    out.extend(&alnum[alnum.len() - 4..]);
                }
            }
        }
        at = f.end;
    }
    out.push_str(&s[at..]);
    *s = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_rewrites_content_strings_and_keeps_the_shape() {
        let policy = Policy {
            pii: Action::Redact,
            secrets: Action::Redact,
            entities: [("CREDIT_CARD".to_owned(), Action::Mask)].into(),
        };
        let mut r = json!({
            "content": [{"type": "text", "text": "Jane <jane@acme.example>, card 4111 1111 1111 1111"}],
            "structuredContent": {"email": "jane@acme.example", "count": 3, "tags": ["ok"]},
        });
        let report = apply(&policy, &mut r);
        assert_eq!(report.found.get("EMAIL"), Some(&2));
        assert_eq!(report.found.get("CREDIT_CARD"), Some(&1));
        assert_eq!(report.action, Some(Action::Mask));
        assert_eq!(
            r["content"][0]["text"],
            "Jane <[REDACTED:EMAIL]>, card ****1111"
        );
        assert_eq!(r["content"][0]["type"], "text");
        assert_eq!(r["structuredContent"]["email"], "[REDACTED:EMAIL]");
        assert_eq!(r["structuredContent"]["count"], 3);
    }

    #[test]
    fn block_and_log_leave_the_answer_as_it_was() {
        let original = json!({"content": [{"type": "text", "text": "ssn 123-45-6789"}]});
        for action in [Action::Block, Action::Log] {
            let mut r = original.clone();
            let report = apply(
                &Policy {
                    pii: action,
                    ..Default::default()
                },
                &mut r,
            );
            assert_eq!(report.action, Some(action));
            assert_eq!(report.found.get("US_SSN"), Some(&1));
            assert_eq!(r, original);
        }
        assert!(Policy {
            entities: [("NOPE".to_owned(), Action::Block)].into(),
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
