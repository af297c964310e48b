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
            "Review each server's catalog (Servers → Review, or POST /api/v1/servers/{slug}/catalog).",
            unreviewed,
        ));
    }
    let has_default = p.filters.policies.iter().any(|f| f.scope == "*");
    let unfiltered: Vec<String> = p
        .servers
        .iter()
        .filter(|s| {
            let own = p.filters.policies.iter().find(|f| f.scope == s.slug);
            match own {
                Some(f) => f.pii == "off" && f.secrets == "off",
                None => {
                    !has_default
                        || p.filters
                            .policies
                            .iter()
                            .any(|f| f.scope == "*" && f.pii == "off" && f.secrets == "off")
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
            "Turn on the sandbox for each (Servers → edit → sandbox), which runs it under bubblewrap with a read-only system and no data directory.",
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
