//! Open risks: what a security reviewer would flag in a tenant, read from the pack's facts
//! (never from anywhere else, so that what is flagged is what the pack shows). Each risk has a
//! stable id, a severity, the things it concerns and how to fix it.

use super::model::{Pack, Risk};
use super::KEY_MAX_AGE_DAYS;

/// How many servers an agent may write to before it is a reviewer's concern.
pub const AGENT_WRITE_SYSTEMS: usize = 3;

fn risk(
    id: &'static str,
    severity: &'static str,
    title: &str,
    detail: String,
    fix: &str,
    subjects: Vec<String>,
) -> Risk {
    Risk {
        id,
        severity,
        title: title.to_owned(),
        detail,
        fix: fix.to_owned(),
        subjects,
    }
}

/// The risks in a pack, most severe first. `open_destructive` lists the `server/tool`
/// destructive tools every active user may call through a grant to everyone (decided by the
/// compiled policy while the pack was built).
pub fn find(p: &Pack, open_destructive: &[String]) -> Vec<Risk> {
    let mut out = Vec::new();
    if !open_destructive.is_empty() {
        out.push(risk(
            "destructive_open_to_everyone",
            "high",
            "Destructive tools are open to everyone",
            format!(
                "{} destructive tool{} can be called by every user of the tenant through a registry granted to everyone.",
                open_destructive.len(),
                if open_destructive.len() == 1 { "" } else { "s" }
            ),
            "Grant these servers to the groups that need them, or add a rule to the grant to everyone that denies destructive tools (`{\"effect\": \"deny\", \"annotations\": {\"destructive\": true}}`); or class a tool that is not destructive as what it is.",
            open_destructive.to_vec(),
        ));
    }
    if !p.audit.chain.verified {
        out.push(risk(
            "audit_chain_broken",
            "high",
            "The audit trail does not verify",
            format!(
                "The hash chain breaks: {}.",
                p.audit.chain.error.as_deref().unwrap_or("unknown")
            ),
            "Investigate the break (`portcullis audit verify --tenant …` names the record) and restore the database from a backup taken before it.",
            Vec::new(),
        ));
    }
    if let (Some(need), Some(name)) = (
        p.audit.retention.regulation_days,
        &p.audit.retention.regulation,
    ) {
        if let Some(days) = p.audit.retention.days.filter(|d| *d < need) {
            out.push(risk(
                "retention_below_regulation",
                "high",
                "Audit retention is shorter than the selected regulation asks",
                format!("Records are kept {days} days; {name} asks for {need}."),
                "Set the retention to the regulation's preset (Audit log → Retention, or PUT /api/v1/audit/settings with the preset).",
                vec![name.clone()],
            ));
        }
    }
    let failing: Vec<String> = p
        .audit
        .destinations
        .iter()
        .filter(|d| d.state == "failing")
        .map(|d| d.name.clone())
        .collect();
    if !failing.is_empty() {
        out.push(risk(
            "siem_failing",
            "high",
            "Audit export is failing",
            "Records are not reaching an export destination; they wait and are delivered when it recovers.".into(),
            "Check the destination's last error under Audit log → SIEM and fix the receiver or its settings.",
            failing,
        ));
    }
    if p.access.idp.is_none() {
        out.push(risk(
            "no_identity_provider",
            "high",
            "No identity provider",
            "Users are not signed in through the company's IdP: access does not follow its accounts and groups, and multi-factor sign-in is not enforced.".into(),
            "Configure single sign-on (Identity provider → OpenID Connect).",
            Vec::new(),
        ));
    }
    if !p.access.scim.enabled {
        out.push(risk(
            "no_scim",
            "medium",
            "No SCIM provisioning",
            "Nobody is deprovisioned automatically: a person who leaves keeps their gateway tokens and grants until an admin deactivates them here.".into(),
            "Issue a SCIM token (Identity provider → SCIM, or `portcullis scim token`) and connect the IdP's provisioning to /scim/v2.",
            Vec::new(),
        ));
    }
    let broad: Vec<String> = p
        .access
        .agents
        .iter()
        .filter(|a| a.writes_on.len() >= AGENT_WRITE_SYSTEMS)
        .map(|a| format!("{} ({})", a.slug, a.writes_on.join(", ")))
        .collect();
    if !broad.is_empty() {
        out.push(risk(
            "agent_broad_write",
            "medium",
            "Agents can write to many systems",
            format!(
                "{} agent{} can call writing tools on {AGENT_WRITE_SYSTEMS} or more servers: a manipulated agent reaches all of them.",
                broad.len(),
                if broad.len() == 1 { "" } else { "s" }
            ),
            "Narrow each agent's tool set to the tools its job needs, read-only where it can be (Agents → edit).",
            broad,
        ));
    }
    let old_keys: Vec<String> = p
        .credentials
        .data_keys
        .iter()
        .filter(|k| k.retired_at.is_none() && k.age_days > KEY_MAX_AGE_DAYS)
        .map(|k| format!("{} ({} days)", k.key_id, k.age_days))
        .collect();
    if !old_keys.is_empty() {
        out.push(risk(
            "unrotated_keys",
            "medium",
            "Encryption keys have not been rotated in a year",
            format!("The tenant's data key is older than {KEY_MAX_AGE_DAYS} days."),
            "Rotate the data key (Credentials → Rotate, or POST /api/v1/vault/rotate) and the master key (`portcullis keys rotate`).",
            old_keys,
        ));
    }
    let unreviewed: Vec<String> = p
        .servers
        .iter()
        .filter(|s| !s.reviewed)
        .map(|s| s.slug.clone())
        .collect();
    if !unreviewed.is_empty() {
        out.push(risk(
            "server_not_reviewed",
            "medium",
            "Servers whose tools were never reviewed",
            "Their tools are not classed or pinned: a changed or poisoned tool definition is not caught.".into(),
            "Review each server's catalog (Servers → Review tools, or POST /api/v1/servers/{slug}/catalog).",
            unreviewed,
        ));
    }
    let has_default = p.filters.policies.iter().any(|f| f.scope == "*");
    let unfiltered: Vec<String> = p
        .servers
        .iter()
        .filter(|s| {
            // A policy scans for data when personal data, secrets or one type is not off.
            let scans = |f: &super::model::FilterPolicyFacts| {
                f.pii != "off"
                    || f.secrets != "off"
                    || f.entities.iter().any(|e| !e.ends_with(": off"))
            };
            let own = p.filters.policies.iter().find(|f| f.scope == s.slug);
            match own {
                Some(f) => !scans(f),
                None => {
                    !has_default
                        || p.filters
                            .policies
                            .iter()
                            .any(|f| f.scope == "*" && !scans(f))
                }
            }
        })
        .map(|s| s.slug.clone())
        .collect();
    if !unfiltered.is_empty() {
        out.push(risk(
            "no_data_filter",
            "medium",
            "Answers reach clients unscanned",
            "No personal-data or secret filter is in force for these servers: whatever their answers carry reaches the client and its LLM provider.".into(),
            "Set a filter policy (Filters, or `portcullis filter set --tenant … --pii redact`), at least `log` to see what flows.",
            unfiltered,
        ));
    }
    if p.audit.destinations.iter().all(|d| !d.enabled) {
        out.push(risk(
            "no_audit_export",
            "low",
            "Audit records are not exported",
            "The audit trail lives only in the control plane's database: no SIEM or archive receives a copy.".into(),
            "Add an export destination (Audit log → SIEM: syslog over TLS, a webhook or Splunk HEC).",
            Vec::new(),
        ));
    }
    let held: Vec<String> = p
        .filters
        .quarantined
        .iter()
        .map(|q| format!("{}/{}", q.server, q.tool))
        .collect();
    if !held.is_empty() {
        out.push(risk(
            "tools_held",
            "low",
            "Tools wait for review",
            "Changed or new tools are hidden from clients until an admin reviews them.".into(),
            "Review each change under Filters → Tool changes: approve what was intended, keep the old definition otherwise.",
            held,
        ));
    }
    let open_hooks: Vec<String> = p
        .filters
        .hooks
        .iter()
        .filter(|h| h.fail == "open")
        .map(|h| format!("{} ({})", h.host, h.scope))
        .collect();
    if !open_hooks.is_empty() {
        out.push(risk(
            "hook_fails_open",
            "low",
            "Filter hooks fail open",
            "When these hooks are down or slow, answers pass without their check.".into(),
            "Set the hooks to fail closed unless availability matters more than the check.",
            open_hooks,
        ));
    }
    let unsandboxed: Vec<String> = p
        .servers
        .iter()
        .filter(|s| s.local && !s.sandboxed)
        .map(|s| s.slug.clone())
        .collect();
    if !unsandboxed.is_empty() {
        out.push(risk(
            "stdio_not_sandboxed",
            "low",
            "Local servers run without the sandbox",
            "These stdio servers run on the gateway's host with the gateway user's file access.".into(),
            "Run each in the sandbox (`\"sandbox\": true` in its stdio settings, or `portcullis server add … --sandbox`): bubblewrap with a read-only system, a private /tmp and no data directory.",
            unsandboxed,
        ));
    }
    if p.audit.arguments == "full" {
        out.push(risk(
            "arguments_recorded_in_full",
            "low",
            "Tool arguments are recorded in full",
            "Audit records keep the arguments clients send (secrets redacted): personal data in arguments is kept as long as the records.".into(),
            "Record arguments hashed or redacted unless investigations need them (Audit log → Retention).",
            Vec::new(),
        ));
    }
    let rank = |s: &str| match s {
        "high" => 0,
        "medium" => 1,
        _ => 2,
    };
    out.sort_by_key(|r| rank(r.severity));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::html::tests::sample;

    fn ids(p: &Pack, open: &[String]) -> Vec<&'static str> {
        find(p, open).iter().map(|r| r.id).collect()
    }

    #[test]
    fn each_rule_fires_on_its_fact_and_only_then() {
        let base = sample();
        let got = ids(&base, &[]);
        // The sample's own facts: a failing destination, a held tool, an unreviewed server,
        // HIPAA asked but a year kept.
        for id in [
            "siem_failing",
            "tools_held",
            "server_not_reviewed",
            "retention_below_regulation",
        ] {
            assert!(got.contains(&id), "{id}: {got:?}");
        }
        for id in [
            "audit_chain_broken",
            "unrotated_keys",
            "hook_fails_open",
            "stdio_not_sandboxed",
            "arguments_recorded_in_full",
            "no_data_filter",
            "destructive_open_to_everyone",
        ] {
            assert!(!got.contains(&id), "{id}: {got:?}");
        }

        let mut p = base.clone();
        p.audit.chain.verified = false;
        p.audit.chain.error = Some("record 7 is modified".into());
        assert!(ids(&p, &[]).contains(&"audit_chain_broken"));

        let mut p = base.clone();
        p.credentials.data_keys[0].age_days = KEY_MAX_AGE_DAYS + 1;
        assert!(ids(&p, &[]).contains(&"unrotated_keys"));
        p.credentials.data_keys[0].retired_at = Some("2026-01-01T00:00:00Z".into());
        assert!(
            !ids(&p, &[]).contains(&"unrotated_keys"),
            "a retired key is not in use"
        );

        let mut p = base.clone();
        p.filters.hooks[0].fail = "open".into();
        assert!(ids(&p, &[]).contains(&"hook_fails_open"));

        let mut p = base.clone();
        for s in p.servers.iter_mut().filter(|s| s.local) {
            s.sandboxed = false;
        }
        assert!(ids(&p, &[]).contains(&"stdio_not_sandboxed"));

        let mut p = base.clone();
        p.audit.arguments = "full".into();
        assert!(ids(&p, &[]).contains(&"arguments_recorded_in_full"));

        let mut p = base.clone();
        p.audit.retention.days = None;
        assert!(
            !ids(&p, &[]).contains(&"retention_below_regulation"),
            "kept forever meets any regulation"
        );

        assert!(ids(&base, &["crm/delete".into()]).contains(&"destructive_open_to_everyone"));
    }

    #[test]
    fn a_policy_scans_when_any_data_type_is_on() {
        let mut p = sample();
        p.filters.policies[0].pii = "off".into();
        p.filters.policies[0].secrets = "off".into();
        assert!(
            !ids(&p, &[]).contains(&"no_data_filter"),
            "one type on (PERSON_NAME) still scans"
        );
        p.filters.policies[0].entities.clear();
        let risks = find(&p, &[]);
        let unscanned = risks.iter().find(|r| r.id == "no_data_filter").unwrap();
        assert_eq!(unscanned.subjects.len(), p.servers.len());
        p.filters.policies.clear();
        assert!(ids(&p, &[]).contains(&"no_data_filter"), "no policy at all");
    }

    #[test]
    fn agents_are_flagged_from_three_servers_they_write_to() {
        let mut p = sample();
        let mut agent = AgentFactsBuilder::writes_on(&["crm", "hr"]);
        p.access.agents = vec![agent.clone()];
        assert!(!ids(&p, &[]).contains(&"agent_broad_write"));
        agent.writes_on.push("code".into());
        p.access.agents = vec![agent];
        let risks = find(&p, &[]);
        let r = risks.iter().find(|r| r.id == "agent_broad_write").unwrap();
        assert_eq!(r.subjects, vec!["bot (crm, hr, code)".to_owned()]);
    }

    #[test]
    fn risks_come_most_severe_first() {
        let mut p = sample();
        p.audit.chain.verified = false;
        p.audit.arguments = "full".into();
        let risks = find(&p, &[]);
        let rank = |s: &str| ["high", "medium", "low"].iter().position(|x| *x == s);
        let order: Vec<_> = risks.iter().map(|r| rank(r.severity)).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
        assert_eq!(risks.first().map(|r| r.severity), Some("high"));
        assert_eq!(risks.last().map(|r| r.severity), Some("low"));
    }

    struct AgentFactsBuilder;

    impl AgentFactsBuilder {
        fn writes_on(servers: &[&str]) -> crate::review::model::AgentFacts {
            crate::review::model::AgentFacts {
                slug: "bot".into(),
                name: "Bot".into(),
                owner: Some("dev@acme.example".into()),
                systems: servers.len(),
                tools: servers.len(),
                writes: servers.len(),
                destructive: 0,
                writes_on: servers.iter().map(|s| (*s).to_owned()).collect(),
                active_tokens: 1,
            }
        }
    }
}
