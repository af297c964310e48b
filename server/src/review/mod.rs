//! The Security Review Pack (`build`), the console dashboard (`dashboard`) and anomaly signals
//! (`signals`): the evidence a security review asks for, read from the tenant's live
//! configuration and audit trail. Nothing here keeps state of its own beyond the admin's
//! statement (a tenant setting), tool classes and raised signals; every pack is built afresh.
//!
//! One builder feeds every format: `model::Pack` is the JSON; `html` renders it for the console,
//! the single-file download and the PDF (`pdf`: headless Chromium prints the HTML); `risks`
//! reads the gathered facts and says what a reviewer would flag.

pub mod api;
pub mod html;
pub mod model;
pub mod pdf;
pub mod risks;
pub mod signals;

use crate::access;
use crate::agents::{blast_radius, Agent};
use crate::domain::ServerTransport;
use crate::policy::{Ask, Effect, Hints, Kind, TenantPolicy};
use crate::store::{Store, StoreError};
use crate::tenancy::Tenant;
use crate::tenants::format_time;
use model::*;
use std::collections::{BTreeMap, BTreeSet};

pub const DAY_US: i64 = 86_400_000_000;
/// The tenant setting holding the admin's statement (section 6) and regulation.
pub const STATEMENT_SETTING: &str = "review_statement";
/// The platform setting holding the tenants' public URL with `SLUG_PLACEHOLDER` for the slug
/// (written by every server at start, read by the CLI).
pub const URL_TEMPLATE_SETTING: &str = "public_tenant_url";
pub const SLUG_PLACEHOLDER: &str = "{tenant}";
/// Longest period a pack covers.
pub const MAX_DAYS: u32 = 366;
/// Days a pack covers unless asked otherwise.
pub const DEFAULT_DAYS: u32 = 30;
/// A data key older than this is flagged as unrotated.
pub const KEY_MAX_AGE_DAYS: i64 = 365;

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Access(#[from] access::AccessError),
    #[error("the vault could not be read: {0}")]
    Vault(String),
    #[error("{0}")]
    Pdf(String),
}

/// Where the builder reads from.
pub struct Sources<'a> {
    pub store: &'a Store,
    pub vault: &'a crate::vault::Vault,
    /// The tenant's portal and gateway base URLs, when the deployment's address is known.
    pub portal_url: Option<String>,
    pub gateway_base_url: Option<String>,
}

/// What a pack covers and who asked.
#[derive(Clone, Debug)]
pub struct Options {
    pub days: u32,
    /// The end of the period (µs since the epoch).
    pub now: i64,
    pub generated_by: String,
    /// Walk the whole audit chain (every pack does; the dashboard's risk count leaves this
    /// one check out, because the console home must not read the whole log on every visit).
    pub verify_chain: bool,
}

impl Options {
    /// Checks the period: 1 to 366 days.
    pub fn new(days: Option<u32>, now: i64, generated_by: &str) -> Result<Self, ReviewError> {
        let days = days.unwrap_or(DEFAULT_DAYS);
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(ReviewError::Invalid(format!(
                "days must be between 1 and {MAX_DAYS}"
            )));
        }
        Ok(Self {
            days,
            now,
            generated_by: generated_by.to_owned(),
            verify_chain: true,
        })
    }

    pub fn since(&self) -> i64 {
        self.now - i64::from(self.days) * DAY_US
    }
}

/// The admin's statement (section 6), or an empty one.
pub async fn statement(store: &Store, tenant_id: &str) -> Result<Statement, StoreError> {
    Ok(store
        .tenant_setting(tenant_id, STATEMENT_SETTING)
        .await?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default())
}

/// Days of retention a regulation asks for (the retention presets).
pub fn regulation_days(regulation: &str) -> Option<i64> {
    crate::audit::retention::PRESETS
        .iter()
        .find(|(name, _, _)| *name == regulation)
        .map(|(_, days, _)| *days)
}

/// Saves the admin's statement after checking it (bounded text, a known regulation).
pub async fn save_statement(
    store: &Store,
    tenant_id: &str,
    mut s: Statement,
    by: &str,
    now: i64,
) -> Result<Statement, ReviewError> {
    const MAX: usize = 20_000;
    s.llm_routing = s.llm_routing.trim().to_owned();
    s.data_processing = s.data_processing.trim().to_owned();
    s.regulation = s.regulation.trim().to_ascii_lowercase();
    if s.llm_routing.len() > MAX || s.data_processing.len() > MAX {
        return Err(ReviewError::Invalid(format!(
            "llm_routing and data_processing are at most {MAX} bytes each"
        )));
    }
    if !s.regulation.is_empty() && regulation_days(&s.regulation).is_none() {
        return Err(ReviewError::Invalid(
            "regulation must be hipaa, pci_dss, gdpr or empty".into(),
        ));
    }
    s.updated_by = Some(by.to_owned());
    s.updated_at = Some(format_time(now));
    let json = serde_json::to_string(&s).map_err(|e| ReviewError::Invalid(e.to_string()))?;
    store
        .set_tenant_setting(tenant_id, STATEMENT_SETTING, &json)
        .await?;
    Ok(s)
}

/// A tool's class with where it came from, given its declared hints and an admin's class.
fn classify(
    hints: Hints,
    declared: bool,
    class_override: Option<&str>,
) -> (&'static str, &'static str) {
    let mut h = hints;
    if let Some(c) = class_override {
        h.apply_class(c);
        return (h.class(), "override");
    }
    (h.class(), if declared { "annotations" } else { "default" })
}

/// The systems a server reaches: its URL's host, or its command's program name.
fn systems_of(t: &ServerTransport) -> (String, Vec<String>, bool, bool) {
    match t {
        ServerTransport::StreamableHttp { url } | ServerTransport::Sse { url } => {
            let s = url.as_str().to_owned();
            let host = url::Url::parse(&s)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| s.clone());
            (s, vec![host], false, false)
        }
        ServerTransport::Stdio {
            command,
            args,
            sandbox,
            ..
        } => {
            let mut line = command.clone();
            for a in args {
                line.push(' ');
                line.push_str(a);
            }
            // `npx -y @org/server-x` reaches what the package reaches: name the package.
            let program = std::path::Path::new(command)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| command.clone());
            let package = args
                .iter()
                .find(|a| !a.starts_with('-') && !a.ends_with(".js") && !a.ends_with(".py"))
                .filter(|_| matches!(program.as_str(), "npx" | "uvx" | "pipx" | "bunx"))
                .cloned();
            let system = match package {
                Some(p) => format!("local process: {p}"),
                None => format!("local process: {program}"),
            };
            (line, vec![system], true, *sandbox)
        }
    }
}

fn transport_name(t: &ServerTransport) -> &'static str {
    match t {
        ServerTransport::StreamableHttp { .. } => "streamable_http",
        ServerTransport::Sse { .. } => "sse",
        ServerTransport::Stdio { .. } => "stdio",
    }
}

fn count(kind: &str, n: i64) -> KindCount {
    KindCount {
        kind: kind.to_owned(),
        count: n,
    }
}

/// What a stored secret is, from its vault slot.
fn secret_kind(table: &str, name: &str) -> String {
    match (table, name) {
        ("mcp_server", "credential") => "upstream server credential".into(),
        ("mcp_server", "oauth_client") => "upstream OAuth client registration".into(),
        ("upstream_connection", _) => "user's upstream connection".into(),
        ("filter_hook", _) => "filter hook signing secret".into(),
        ("audit", _) | ("audit_checkpoint", _) => "audit checkpoint signing key".into(),
        _ => format!("{table}/{name}"),
    }
}

/// Revocation-type audit actions and what each is in the pack.
const REVOCATIONS: [(&str, &str); 9] = [
    ("token.revoke", "gateway tokens revoked"),
    ("access.revoke_user", "users' access revoked at once"),
    ("access.revoke_agent", "agents' tokens revoked"),
    ("oauth.revoke", "OAuth tokens revoked by clients"),
    ("oauth.grant_revoke", "OAuth grants revoked"),
    ("upstream.disconnect", "upstream connections ended"),
    ("user.deactivate", "users deactivated"),
    ("scim.user.deactivate", "users deactivated by SCIM"),
    ("server.credential.delete", "server credentials removed"),
];

/// Everything an MCP record holds (the audit section's "what is captured").
const CAPTURES: [&str; 14] = [
    "time (microseconds) and a per-tenant sequence number",
    "user (email and id) and the groups they were in",
    "agent, when an agent made the call",
    "MCP client (clientInfo name/version) and user agent",
    "client IP address and MCP session id",
    "server and method (tools/call, resources/read, prompts/get, lists, initialize…)",
    "tool, resource or prompt",
    "decision (allow/deny) and the rule that decided",
    "tool arguments as the tenant's argument setting says (none, hashed, redacted, full)",
    "filter actions: entity types and counts, injection verdicts and reasons (never the values)",
    "outcome (ok, denied, error) and upstream error class",
    "latency: total and upstream",
    "admin and security events: who changed what, before and after",
    "a SHA-256 hash chained to the previous record (tamper evidence)",
];

/// Builds the pack for one tenant.
pub async fn build(
    src: &Sources<'_>,
    tenant: &Tenant,
    opts: &Options,
) -> Result<Pack, ReviewError> {
    let store = src.store;
    let tid = tenant.tenant_id.as_str();
    let (since, until) = (opts.since(), opts.now);
    let policy = TenantPolicy::compile(store.policy_inputs(tid).await?);
    let statement = statement(store, tid).await?;

    // ---- servers --------------------------------------------------------------------------
    let server_rows = store.list_servers(tid).await?;
    let registries = access::list_registries(store, tid).await?;
    let catalog = store.catalog_rows(tid).await?;
    let overrides: BTreeMap<(String, String), String> = store
        .tool_class_overrides(tid)
        .await?
        .into_iter()
        .map(|(s, t, c)| ((s, t), c))
        .collect();
    let new_tools: BTreeMap<String, String> =
        store.new_tools_settings(tid).await?.into_iter().collect();
    let changes = store.tool_changes(tid, None).await?;
    let filter_records = store.filter_records(tid, since, until).await?;
    let seen = categories_by_server(&filter_records);
    let users = access::list_users(store, tid).await?;
    let active_users: Vec<(String, String)> = policy.active_users();

    let mut servers = Vec::new();
    for row in &server_rows {
        let transport = row
            .upstream()
            .map_err(|e| ReviewError::Invalid(format!("server {}: {e}", row.slug)))?;
        let (location, systems, local, sandboxed) = systems_of(&transport);
        let cred = crate::servers::credential_view(store, tid, &row.slug, src.vault)
            .await
            .map_err(|e| ReviewError::Vault(e.to_string()))?;
        let credential_mode = match &cred {
            None => "none",
            Some(c) if c.kind == "oauth" => "per_user_oauth",
            Some(c) if c.per_user => "per_user_secret",
            Some(_) => "shared",
        };
        let mut tools = Vec::new();
        let mut counts = ToolCounts::default();
        let mut pinning = Pinning::default();
        let mut reviewed_at: Option<i64> = None;
        for (_, name, annotations, at, digest) in catalog.iter().filter(|c| c.0 == row.slug) {
            reviewed_at = Some(reviewed_at.map_or(*at, |r: i64| r.max(*at)));
            let v: Option<serde_json::Value> = serde_json::from_str(annotations).ok();
            let declared = v.as_ref().and_then(|v| v.as_object()).is_some_and(|o| {
                o.contains_key("readOnlyHint") || o.contains_key("destructiveHint")
            });
            let hints = Hints::from_annotations(v.as_ref());
            let (class, class_source) = classify(
                hints,
                declared,
                overrides
                    .get(&(row.slug.clone(), name.clone()))
                    .map(String::as_str),
            );
            match class {
                "read_only" => counts.read_only += 1,
                "writing" => counts.writing += 1,
                _ => counts.destructive += 1,
            }
            let held = changes.iter().any(|c| {
                c.server == row.slug
                    && c.name == *name
                    && c.status == "pending"
                    && c.kind == "changed"
            });
            let pin_status = match (digest.is_some(), held) {
                (_, true) => "held",
                (true, false) => "ok",
                (false, false) => "unpinned",
            };
            match pin_status {
                "held" => pinning.held += 1,
                "ok" => pinning.pinned += 1,
                _ => pinning.unpinned += 1,
            }
            tools.push(ToolFacts {
                name: name.clone(),
                class,
                class_source,
                open_world: hints.is_open_world(),
                pinned: digest.is_some(),
                pin_status,
            });
        }
        let data_categories = seen.get(&row.slug).cloned().unwrap_or_default();
        servers.push(ServerFacts {
            slug: row.slug.clone(),
            name: row.name.clone(),
            description: row.description.clone(),
            transport: transport_name(&transport).to_owned(),
            location,
            local,
            sandboxed,
            systems,
            credential_mode: credential_mode.to_owned(),
            credential_kind: cred.map(|c| c.kind),
            registries: registries
                .iter()
                .filter(|r| r.servers.contains(&row.slug))
                .map(|r| r.slug.clone())
                .collect(),
            reviewed: reviewed_at.is_some(),
            reviewed_at: reviewed_at.map(format_time),
            new_tools: new_tools
                .get(&row.slug)
                .cloned()
                .unwrap_or_else(|| "allow".into()),
            tools,
            tool_counts: counts,
            data_categories,
            pinning,
        });
    }
    servers.sort_by(|a, b| a.slug.cmp(&b.slug));

    // ---- access ---------------------------------------------------------------------------
    let sso = store
        .tenant_setting(tid, crate::sso::SETTING)
        .await?
        .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok());
    let idp = sso.as_ref().map(|v| Idp {
        protocol: "OpenID Connect",
        issuer: v["issuer"].as_str().unwrap_or_default().to_owned(),
        groups_claim: v["groups_claim"].as_str().unwrap_or("groups").to_owned(),
        allowed_domains: v["allowed_domains"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    });
    let scim_enabled = crate::scim::token_configured(store, tid).await?;
    let scim_last = store
        .audit_last(tid, "scim.user.%")
        .await?
        .max(store.audit_last(tid, "scim.group.%").await?);
    let action_counts: BTreeMap<String, i64> = store
        .audit_action_counts(tid, since, until)
        .await?
        .into_iter()
        .collect();
    let scim_changes: i64 = action_counts
        .iter()
        .filter(|(a, _)| a.starts_with("scim.user.") || a.starts_with("scim.group."))
        .map(|(_, n)| n)
        .sum();
    let mut groups_arrive_by = Vec::new();
    if idp.is_some() {
        groups_arrive_by.push("oidc_claims");
    }
    if scim_enabled {
        groups_arrive_by.push("scim");
    }
    groups_arrive_by.push("manual");

    let mut columns: Vec<String> = vec!["everyone".into()];
    let mut subjects: BTreeSet<String> = BTreeSet::new();
    for r in &registries {
        for g in &r.grants {
            if g.subject != "everyone" {
                subjects.insert(g.subject.clone());
            }
        }
    }
    columns.extend(subjects);
    let matrix_servers: BTreeSet<String> = registries
        .iter()
        .flat_map(|r| r.servers.iter().cloned())
        .collect();
    let matrix = Matrix {
        rows: matrix_servers
            .into_iter()
            .map(|server| MatrixRow {
                cells: columns
                    .iter()
                    .map(|col| access::matrix_cell(&registries, &server, col))
                    .collect(),
                server,
            })
            .collect(),
        columns,
    };
    let mut deny_rules = Vec::new();
    for r in &registries {
        for g in &r.grants {
            for (rule, text) in g.rules.iter().zip(&g.rules_text) {
                if rule.effect == Effect::Deny {
                    deny_rules.push(DenyRule {
                        registry: r.slug.clone(),
                        subject: g.subject.clone(),
                        rule: text.clone(),
                    });
                }
            }
        }
    }
    let live_agent_tokens = store.list_live_agent_tokens(tid).await?;
    let mut agents = Vec::new();
    let names: Vec<(String, String)> = server_rows
        .iter()
        .map(|s| (s.slug.clone(), s.name.clone()))
        .collect();
    for row in store.list_agents(tid).await? {
        let agent = Agent::from_row(&row);
        let radius = blast_radius(&agent, &policy, &names, |_| Vec::new());
        let mut writes_on: Vec<String> = radius
            .systems
            .iter()
            .filter(|s| s.tools.iter().any(|t| !t.read_only))
            .map(|s| s.server.clone())
            .collect();
        writes_on.sort();
        agents.push(AgentFacts {
            slug: row.slug.clone(),
            name: row.name.clone(),
            owner: row.owner_email.clone(),
            systems: radius.totals.systems,
            tools: radius.totals.tools,
            writes: radius.totals.writes,
            destructive: radius.totals.destructive,
            writes_on,
            active_tokens: live_agent_tokens
                .iter()
                .filter(|t| t.slug == row.slug && t.expires_at.is_none_or(|e| e > until))
                .count(),
        });
    }
    agents.sort_by(|a, b| a.slug.cmp(&b.slug));
    let mut admins: Vec<AdminFacts> = users
        .iter()
        .filter(|u| u.admin)
        .map(|u| AdminFacts {
            email: u.email.clone(),
            source: u.source.clone(),
            active: u.active,
        })
        .collect();
    admins.sort_by(|a, b| a.email.cmp(&b.email));
    let access_facts = Access {
        idp,
        groups_arrive_by,
        scim: Scim {
            enabled: scim_enabled,
            last_sync: scim_last.map(format_time),
            changes_in_period: scim_changes,
        },
        registries: {
            let mut v: Vec<RegistryFacts> = registries
                .iter()
                .map(|r| RegistryFacts {
                    slug: r.slug.clone(),
                    name: r.name.clone(),
                    servers: {
                        let mut s = r.servers.clone();
                        s.sort();
                        s
                    },
                    grants: r
                        .grants
                        .iter()
                        .map(|g| GrantFacts {
                            subject: g.subject.clone(),
                            rules: g.rules_text.clone(),
                        })
                        .collect(),
                })
                .collect();
            v.sort_by(|a, b| a.slug.cmp(&b.slug));
            v
        },
        matrix,
        deny_rules,
        agents,
        admins,
        users: UserCounts {
            active: users.iter().filter(|u| u.active).count(),
            inactive: users.iter().filter(|u| !u.active).count(),
            active_in_period: store.mcp_users(tid, since, until).await?,
        },
    };

    // Destructive tools every active user may call through an `everyone` grant.
    let open_destructive = open_to_everyone(&policy, &access_facts, &servers, &active_users);

    // ---- audit ----------------------------------------------------------------------------
    let settings = store.audit_settings(tid).await?;
    let volume = store.audit_volume(tid).await?;
    let newest_seq = volume.newest_seq.unwrap_or(0);
    let destinations = store
        .list_siem(tid)
        .await?
        .into_iter()
        .map(|d| {
            let behind = (newest_seq - d.cursor_seq).max(0);
            let state = if !d.enabled {
                "disabled"
            } else if d.failures > 0 && d.last_error_at > d.last_ok_at {
                "failing"
            } else if d.delivered == 0 && d.last_ok_at.is_none() {
                "waiting"
            } else {
                "delivering"
            };
            Destination {
                name: d.name,
                kind: d.kind,
                enabled: d.enabled,
                state,
                delivered: d.delivered,
                behind,
                last_ok: d.last_ok_at.map(format_time),
                last_error: d.last_error,
                failures: d.failures,
            }
        })
        .collect();
    let verification = if opts.verify_chain {
        crate::audit::verify_stored(store, tid).await?.0
    } else {
        crate::audit::Verification {
            records: 0,
            ok: true,
            first_break: None,
        }
    };
    let mut months: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (day, records, mcp) in store.audit_days(tid).await? {
        let month = format_time(day * DAY_US)
            .chars()
            .take(7)
            .collect::<String>();
        let e = months.entry(month).or_default();
        e.0 += records;
        e.1 += mcp;
    }
    let regulation = (!statement.regulation.is_empty()).then(|| statement.regulation.clone());
    let audit = AuditFacts {
        captures: CAPTURES.to_vec(),
        arguments: settings.arguments.clone(),
        retention: Retention {
            days: settings.retention_days,
            preset: settings.retention_preset.clone(),
            legal_hold: settings.legal_hold,
            legal_hold_reason: settings.legal_hold_reason.clone(),
            last_purge: settings.last_purge_at.map(format_time),
            regulation_days: regulation.as_deref().and_then(regulation_days),
            regulation,
        },
        destinations,
        chain: Chain {
            verified: verification.ok,
            records_checked: i64::try_from(verification.records).unwrap_or(i64::MAX),
            error: verification
                .first_break
                .map(|b| format!("record {} is {}", b.seq, b.problem)),
        },
        volume_by_month: months
            .into_iter()
            .map(|(month, (records, mcp))| MonthVolume {
                month,
                records,
                mcp,
            })
            .collect(),
        records: volume.records,
        oldest: volume.oldest_at.map(format_time),
    };

    // ---- credentials ----------------------------------------------------------------------
    let keys = store.vault_keys(tid).await?;
    let postgres = store.engine_name() == "postgres";
    let mut stored: BTreeMap<String, i64> = BTreeMap::new();
    for s in store.vault_secrets(tid).await? {
        *stored
            .entry(secret_kind(&s.owner_table, &s.name))
            .or_default() += 1;
    }
    let siem_secrets = store
        .list_siem(tid)
        .await?
        .iter()
        .filter(|d| d.secret_sealed.is_some())
        .count();
    if siem_secrets > 0 {
        stored.insert(
            "SIEM destination secret (sealed)".into(),
            i64::try_from(siem_secrets).unwrap_or(i64::MAX),
        );
    }
    let live_pats = store
        .list_live_tokens(tid)
        .await?
        .iter()
        .filter(|t| t.expires_at.is_none_or(|e| e > until))
        .count();
    let live_oauth = store
        .list_live_access_tokens(tid)
        .await?
        .iter()
        .filter(|t| t.expires_at > until)
        .count();
    let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let credentials = Credentials {
        scheme: vec![
            "Every upstream secret (API keys, users' OAuth tokens, hook secrets) is encrypted at rest with AES-256-GCM under a per-tenant data key; the associated data binds each value to its tenant, table, row and name, so a value copied elsewhere does not decrypt.".into(),
            "Data keys are stored wrapped by the key-encryption key (KEK) and unwrapped only in the gateway's memory; the KEK never enters the database.".into(),
            "Clients hold only gateway tokens (personal, agent, OAuth), stored as SHA-256 hashes and bound to this tenant's gateway; upstream credentials are injected by the gateway and never reach a client.".into(),
        ],
        kek: Kek {
            source: if postgres {
                "PORTCULLIS_MASTER_KEY (environment of each replica)".into()
            } else {
                "master key file (mode 0600) in the data directory".into()
            },
            fingerprint: store.platform_setting("master_key_fingerprint").await?,
        },
        data_keys: keys
            .iter()
            .map(|k| DataKey {
                key_id: k.key_id.clone(),
                created_at: format_time(k.created_at),
                retired_at: k.retired_at.map(format_time),
                age_days: (until - k.created_at).max(0) / DAY_US,
            })
            .collect(),
        last_rotation: keys
            .iter()
            .filter_map(|k| k.retired_at)
            .max()
            .map(format_time),
        stored: stored.into_iter().map(|(k, n)| count(&k, n)).collect(),
        gateway_tokens: vec![
            count("personal access tokens", to_i64(live_pats)),
            count("agent tokens", to_i64(live_agent_tokens.iter().filter(|t| t.expires_at.is_none_or(|e| e > until)).count())),
            count("OAuth access tokens", to_i64(live_oauth)),
        ],
        revocations: REVOCATIONS
            .iter()
            .filter_map(|(action, label)| {
                action_counts
                    .get(*action)
                    .filter(|n| **n > 0)
                    .map(|n| count(label, *n))
            })
            .collect(),
        procedure: vec![
            "A person leaves: deactivate them in the IdP; SCIM deactivates them here (or an admin does: Users & groups → Deactivate). Their sessions, gateway tokens, OAuth grants, agents' tokens and upstream connections end on the next request, on every replica.".into(),
            "One credential: revoke a token (Users & groups, `portcullis token revoke`, or POST /api/v1/tokens/revoke), an OAuth grant, or an agent's token; effective on the next request.".into(),
            "An upstream credential: delete or replace it under Credentials; users' own connections are disconnected there or by the user in the portal (the upstream is told by RFC 7009 revocation).".into(),
            "A suspected key compromise: rotate the tenant's data key (Credentials → Rotate) and the master key (`portcullis keys rotate`); every secret is re-wrapped, nothing is re-entered.".into(),
            "Every revocation is an audit record (admin category) with who did it and what it ended.".into(),
        ],
    };

    // ---- clients --------------------------------------------------------------------------
    let flows_rows = store.client_flows(tid, since, until).await?;
    let mut client_names: BTreeSet<String> = BTreeSet::new();
    let flows = flows_rows
        .into_iter()
        .map(|f| {
            let client = f.client.unwrap_or_else(|| "unknown".into());
            client_names.insert(client.split('/').next().unwrap_or_default().to_owned());
            ClientFlow {
                client,
                server: f.server.unwrap_or_default(),
                calls: f.calls,
                users: f.users,
                last_seen: format_time(f.last_at),
            }
        })
        .collect();
    let mut agents_by_client: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (client, ua) in store.client_user_agents(tid, since, until).await? {
        agents_by_client
            .entry(client.unwrap_or_else(|| "unknown".into()))
            .or_default()
            .push(ua);
    }
    let clients = Clients {
        flows,
        user_agents: agents_by_client
            .into_iter()
            .map(|(client, user_agents)| ClientAgents {
                client,
                user_agents,
            })
            .collect(),
        statement: statement.clone(),
    };

    // ---- filters --------------------------------------------------------------------------
    let mut policies = Vec::new();
    for (scope, raw) in store.filter_policies(tid).await? {
        let p: crate::filters::Policy = match serde_json::from_str(&raw) {
            Ok(p) => p,
            Err(_) => {
                policies.push(FilterPolicyFacts {
                    scope,
                    pii: "block (unreadable policy: fails closed)".into(),
                    secrets: "block".into(),
                    injection: "block".into(),
                    arguments: "block".into(),
                    entities: Vec::new(),
                    tools: Vec::new(),
                });
                continue;
            }
        };
        policies.push(FilterPolicyFacts {
            scope,
            pii: p.pii.as_str().to_owned(),
            secrets: p.secrets.as_str().to_owned(),
            injection: p.injection.as_str().to_owned(),
            arguments: p.arguments.as_str().to_owned(),
            entities: p
                .entities
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str()))
                .collect(),
            tools: p.tools.keys().cloned().collect(),
        });
    }
    let hooks = store
        .filter_hooks(tid)
        .await?
        .into_iter()
        .map(|h| HookFacts {
            scope: h.server_slug,
            host: url::Url::parse(&h.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default(),
            fail: h.fail_mode,
            timeout_ms: h.timeout_ms,
        })
        .collect();
    let (stats, by_type) = filter_stats(&filter_records);
    let quarantined = changes
        .iter()
        .filter(|c| c.status == "pending")
        .map(|c| Quarantined {
            server: c.server.clone(),
            tool: c.name.clone(),
            kind: c.kind.clone(),
            since: format_time(c.first_seen_at),
        })
        .collect();
    let filters = FilterFacts {
        policies,
        hooks,
        stats,
        by_type,
        quarantined,
    };

    // ---- signals --------------------------------------------------------------------------
    let signals = store
        .signals(tid, since, 50)
        .await?
        .into_iter()
        .map(signals::facts)
        .collect();

    let architecture = architecture(&servers, &client_names, &access_facts, &audit, &filters);
    let mut pack = Pack {
        schema: SCHEMA,
        tenant: TenantFacts {
            slug: tenant.slug.clone(),
            name: tenant.name.clone(),
            created_at: format_time(tenant.created_at),
            portal_url: src.portal_url.clone(),
            gateway_base_url: src.gateway_base_url.clone(),
        },
        generated_at: format_time(opts.now),
        generated_by: opts.generated_by.clone(),
        period: Period {
            days: opts.days,
            from: format_time(since),
            to: format_time(until),
        },
        architecture,
        servers,
        access: access_facts,
        audit,
        credentials,
        clients,
        filters,
        risks: Vec::new(),
        signals,
    };
    pack.risks = risks::find(&pack, &open_destructive);
    Ok(pack)
}

/// `server/tool` of every destructive tool that every active user may call through a grant
/// to everyone (decided by the compiled policy, so rules that narrow the grant count).
fn open_to_everyone(
    policy: &TenantPolicy,
    access: &Access,
    servers: &[ServerFacts],
    active_users: &[(String, String)],
) -> Vec<String> {
    let everyone_servers: BTreeSet<&str> = access
        .registries
        .iter()
        .filter(|r| r.grants.iter().any(|g| g.subject == "everyone"))
        .flat_map(|r| r.servers.iter().map(String::as_str))
        .collect();
    let mut out = Vec::new();
    for s in servers
        .iter()
        .filter(|s| everyone_servers.contains(s.slug.as_str()))
    {
        for t in s.tools.iter().filter(|t| t.class == "destructive") {
            let ask = Ask {
                kind: Kind::Tool,
                name: &t.name,
                hints: policy.hints(&s.slug, &t.name, None),
                arguments: None,
            };
            let all = !active_users.is_empty()
                && active_users
                    .iter()
                    .all(|(id, _)| policy.decide(id, &s.slug, &ask).allowed);
            if all {
                out.push(format!("{}/{}", s.slug, t.name));
            }
        }
    }
    out
}

type FilterRecord = (Option<String>, i64, String, String);

/// Per server: the data categories its answers carried in the period (answers, findings, last
/// seen), from the records' filter reports; prompt injection counts as `INJECTION`.
fn categories_by_server(rows: &[FilterRecord]) -> BTreeMap<String, Vec<DataCategory>> {
    let mut acc: BTreeMap<String, BTreeMap<String, (i64, i64, i64)>> = BTreeMap::new();
    for (server, at, _, detail) in rows {
        let (Some(server), Ok(d)) = (server, serde_json::from_str::<serde_json::Value>(detail))
        else {
            continue;
        };
        let cats = acc.entry(server.clone()).or_default();
        let mut note = |cat: &str, n: i64| {
            let e = cats.entry(cat.to_owned()).or_insert((0, 0, 0));
            e.0 += 1;
            e.1 += n;
            e.2 = e.2.max(*at);
        };
        if let Some(found) = d["filters"]["found"].as_object() {
            for (k, v) in found {
                note(k, v.as_i64().unwrap_or(0));
            }
        }
        if d["injection"].is_object() {
            note("INJECTION", 1);
        }
    }
    acc.into_iter()
        .map(|(server, cats)| {
            (
                server,
                cats.into_iter()
                    .map(|(category, (answers, findings, last))| DataCategory {
                        category,
                        answers,
                        findings,
                        last_seen: format_time(last),
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Filter statistics from the records the filters acted on: totals and findings per type.
fn filter_stats(rows: &[FilterRecord]) -> (FilterStats, Vec<KindCount>) {
    let mut s = FilterStats::default();
    let mut types: BTreeMap<String, i64> = BTreeMap::new();
    for (_, _, _, detail) in rows {
        let Ok(d) = serde_json::from_str::<serde_json::Value>(detail) else {
            continue;
        };
        let (acted, t) = tally(&d);
        if acted {
            s.answers_filtered += 1;
        }
        s.redacted += t.redacted;
        s.masked += t.masked;
        s.blocked += t.blocked;
        s.logged += t.logged;
        s.injections_blocked += t.injections_blocked;
        s.injections_flagged += t.injections_flagged;
        s.injections_logged += t.injections_logged;
        s.arguments_blocked += t.arguments_blocked;
        if let Some(f) = d["filters"]["found"].as_object() {
            for (k, v) in f {
                *types.entry(k.clone()).or_default() += v.as_i64().unwrap_or(0);
            }
        }
    }
    let mut by_type: Vec<KindCount> = types.into_iter().map(|(k, n)| count(&k, n)).collect();
    by_type.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.kind.cmp(&b.kind)));
    (s, by_type)
}

/// What one record's filter report says: whether the filters acted, and per-action counts.
pub(crate) fn tally(d: &serde_json::Value) -> (bool, FilterStats) {
    let mut s = FilterStats::default();
    let f = &d["filters"];
    let action = f["action"].as_str().unwrap_or_default();
    let n = f["found"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(serde_json::Value::as_i64)
                .sum::<i64>()
        })
        .unwrap_or(0)
        .max(i64::from(!f.is_null()));
    match action {
        "redact" => s.redacted += n,
        "mask" => s.masked += n,
        "block" => s.blocked += 1,
        "log" => s.logged += n,
        _ => {}
    }
    let inj = &d["injection"];
    match inj["action"].as_str().unwrap_or_default() {
        "block" => s.injections_blocked += 1,
        "flag" => s.injections_flagged += 1,
        "log" => s.injections_logged += 1,
        _ => {}
    }
    if d["arguments_filters"]["action"].as_str() == Some("block") {
        s.arguments_blocked += 1;
    }
    let acted = s != FilterStats::default();
    (acted, s)
}

/// Section 1: the controls as this tenant has them, and the diagram's columns.
fn architecture(
    servers: &[ServerFacts],
    clients: &BTreeSet<String>,
    access: &Access,
    audit: &AuditFacts,
    filters: &FilterFacts,
) -> Architecture {
    let idp = access
        .idp
        .as_ref()
        .map(|i| format!("sign-in through {} ({})", i.issuer, i.protocol))
        .unwrap_or_else(|| "no identity provider yet: admin and personal tokens only".into());
    let retention = match audit.retention.days {
        Some(d) => format!("kept {d} days"),
        None => "kept until purged by policy (no retention set)".into(),
    };
    let filters_line = if filters.policies.is_empty() {
        "no filter policy: answers pass unscanned".to_owned()
    } else {
        format!(
            "{} polic{} in force ({} hook{})",
            filters.policies.len(),
            if filters.policies.len() == 1 {
                "y"
            } else {
                "ies"
            },
            filters.hooks.len(),
            if filters.hooks.len() == 1 { "" } else { "s" }
        )
    };
    Architecture {
        description: vec![
            "Portcullis sits between the tenant's MCP clients and the upstream MCP servers. Clients connect only to the tenant's gateway URL (one endpoint per server, or per agent); the gateway is the only party that reaches the upstream servers, and it holds their credentials.".into(),
            "Every request passes the controls in order: authentication (a gateway token bound to this tenant's gateway, never passed upstream), the access policy (registries, group grants, tool rules, agent tool sets), the filters on answers (personal data, secrets, prompt injection, pinned tool definitions), and the audit log, which records the request durably before its answer is released.".into(),
            "Upstream credentials live in the vault, encrypted per tenant; the gateway injects them per request. The control plane (console, API, SCIM) changes the same configuration the gateway enforces, and every change is itself audited.".into(),
        ],
        clients: clients.iter().cloned().collect(),
        controls: vec![
            Control {
                id: "authentication",
                title: "Authentication",
                summary: format!("gateway tokens and OAuth 2.1; {idp}"),
            },
            Control {
                id: "policy",
                title: "Access policy",
                summary: format!(
                    "{} registr{}, {} deny rule{}; nothing is reachable unless granted",
                    access.registries.len(),
                    if access.registries.len() == 1 { "y" } else { "ies" },
                    access.deny_rules.len(),
                    if access.deny_rules.len() == 1 { "" } else { "s" }
                ),
            },
            Control {
                id: "filters",
                title: "Filters and pinning",
                summary: filters_line,
            },
            Control {
                id: "audit",
                title: "Audit log",
                summary: format!(
                    "hash-chained, {retention}; {} export destination{}",
                    audit.destinations.len(),
                    if audit.destinations.len() == 1 { "" } else { "s" }
                ),
            },
            Control {
                id: "vault",
                title: "Credential vault",
                summary: "AES-256-GCM per-tenant data keys under the KEK".into(),
            },
        ],
        upstreams: servers
            .iter()
            .map(|s| Upstream {
                server: s.slug.clone(),
                transport: s.transport.clone(),
                systems: s.systems.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_classed_by_override_then_annotations_then_the_worst_case() {
        let ro = Hints {
            read_only: Some(true),
            ..Hints::default()
        };
        assert_eq!(classify(ro, true, None), ("read_only", "annotations"));
        assert_eq!(
            classify(ro, true, Some("destructive")),
            ("destructive", "override")
        );
        assert_eq!(
            classify(Hints::default(), false, None),
            ("destructive", "default")
        );
        let write = Hints {
            read_only: Some(false),
            destructive: Some(false),
            ..Hints::default()
        };
        assert_eq!(classify(write, true, None), ("writing", "annotations"));
    }

    #[test]
    fn a_stdio_server_is_named_by_its_package() {
        let t = ServerTransport::Stdio {
            command: "npx".into(),
            args: vec!["-y".into(), "@acme/crm-mcp".into()],
            cwd: None,
            instance: Default::default(),
            sandbox: true,
        };
        let (line, systems, local, sandboxed) = systems_of(&t);
        assert_eq!(line, "npx -y @acme/crm-mcp");
        assert_eq!(systems, vec!["local process: @acme/crm-mcp".to_owned()]);
        assert!(local && sandboxed);
    }

    #[test]
    fn filter_reports_are_tallied_by_action() {
        let rec = |server: &str, at: i64, detail: &str| {
            (
                Some(server.to_owned()),
                at,
                "ok".to_owned(),
                detail.to_owned(),
            )
        };
        let rows = vec![
            rec(
                "crm",
                1,
                r#"{"filters":{"action":"redact","found":{"EMAIL":2,"PHONE":1}}}"#,
            ),
            rec("crm", 2, r#"{"injection":{"action":"block","score":0.9}}"#),
            rec("crm", 3, r#"{"rule":"x"}"#),
            rec(
                "hr",
                4,
                r#"{"filters":{"action":"mask","found":{"IBAN":1}}}"#,
            ),
            rec(
                "hr",
                5,
                r#"{"arguments_filters":{"action":"block","found":{"EMAIL":1}}}"#,
            ),
        ];
        let (s, by_type) = filter_stats(&rows);
        assert_eq!(s.answers_filtered, 4);
        assert_eq!(s.redacted, 3);
        assert_eq!(s.masked, 1);
        assert_eq!(s.injections_blocked, 1);
        assert_eq!(s.arguments_blocked, 1);
        assert_eq!(
            by_type,
            vec![count("EMAIL", 2), count("IBAN", 1), count("PHONE", 1)]
        );
        let seen = categories_by_server(&rows);
        let crm: Vec<(&str, i64, i64)> = seen["crm"]
            .iter()
            .map(|c| (c.category.as_str(), c.answers, c.findings))
            .collect();
        assert_eq!(
            crm,
            vec![("EMAIL", 1, 2), ("INJECTION", 1, 1), ("PHONE", 1, 1)]
        );
    }

    #[test]
    fn periods_outside_one_to_366_days_are_refused() {
        assert!(Options::new(Some(0), 0, "x").is_err());
        assert!(Options::new(Some(367), 0, "x").is_err());
        assert_eq!(Options::new(None, 0, "x").map(|o| o.days).ok(), Some(30));
    }
}
