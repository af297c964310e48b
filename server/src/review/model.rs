//! The Security Review Pack as data: what `review::build` gathers from the live tenant and what
//! every format (JSON, the console page, HTML, PDF) shows. Field order is the order a reviewer
//! reads; every list is sorted so that the same tenant gives the same pack.
//!
//! Times are RFC 3339 strings (UTC, whole seconds); `None` is "never" or "not set".

use serde::{Deserialize, Serialize};

/// The schema name and version in every pack's JSON (`schema`).
pub const SCHEMA: &str = "portcullis.review-pack/1";

#[derive(Clone, Debug, Serialize)]
pub struct Pack {
    pub schema: &'static str,
    pub tenant: TenantFacts,
    pub generated_at: String,
    /// Who asked for it (an admin's email, or `cli`).
    pub generated_by: String,
    pub period: Period,
    /// 1. Where the control plane sits.
    pub architecture: Architecture,
    /// 2. Per server: what it reaches and what data it carried.
    pub servers: Vec<ServerFacts>,
    /// 3. Who may do what, and how groups arrive.
    pub access: Access,
    /// 4. What is recorded, for how long, where it goes, whether it is intact.
    pub audit: AuditFacts,
    /// 5. Where secrets live and how access ends.
    pub credentials: Credentials,
    /// 6. Which clients received which servers' data, and the admin's statement on LLM routing.
    pub clients: Clients,
    /// 7. Filters in force and what they did.
    pub filters: FilterFacts,
    /// 8. What a reviewer would flag, each with its fix.
    pub risks: Vec<Risk>,
    /// Anomaly signals raised in the period (newest first, at most 50).
    pub signals: Vec<SignalFacts>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TenantFacts {
    pub slug: String,
    pub name: String,
    pub created_at: String,
    /// The console and portal (`https://acme.example.com`); `None` when the CLI does not know
    /// the deployment's public address (no server has started against this database).
    pub portal_url: Option<String>,
    /// Clients connect to `{gateway_base_url}/{server}`.
    pub gateway_base_url: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Period {
    pub days: u32,
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Architecture {
    /// A few paragraphs: what sits where and what each control does.
    pub description: Vec<String>,
    /// MCP clients seen in the period (client name, as they announce themselves).
    pub clients: Vec<String>,
    /// The controls on the gateway path, in the order a request meets them.
    pub controls: Vec<Control>,
    /// The upstream servers with the systems each reaches (the diagram's right-hand side).
    pub upstreams: Vec<Upstream>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Control {
    /// `authentication`, `policy`, `filters`, `audit`, `vault`.
    pub id: &'static str,
    pub title: &'static str,
    /// One line on what it does in this tenant (reflecting its configuration).
    pub summary: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Upstream {
    pub server: String,
    pub transport: String,
    pub systems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerFacts {
    pub slug: String,
    pub name: String,
    pub description: String,
    /// `streamable_http`, `sse` or `stdio`.
    pub transport: String,
    /// The URL, or the command line of a stdio server (arguments included: they name no
    /// secret — credentials are injected from the vault, never configured in arguments).
    pub location: String,
    /// Runs on the gateway's host (stdio), and whether in the bubblewrap sandbox.
    pub local: bool,
    pub sandboxed: bool,
    /// The systems it reaches: the URL's host, or the stdio command's program name.
    pub systems: Vec<String>,
    /// `none`, `shared` (one credential for everyone), `per_user_oauth`, `per_user_secret`.
    pub credential_mode: String,
    /// The credential's kind as set (`bearer`, `header`, `env`, `oauth`…), if any.
    pub credential_kind: Option<String>,
    /// The registries that list it.
    pub registries: Vec<String>,
    /// Whether an admin has reviewed its catalog (tools known, classed and pinned).
    pub reviewed: bool,
    pub reviewed_at: Option<String>,
    /// `allow` or `deny`: what happens to tools that appear after the review.
    pub new_tools: String,
    pub tools: Vec<ToolFacts>,
    pub tool_counts: ToolCounts,
    /// Data categories the filters saw in its answers within the period.
    pub data_categories: Vec<DataCategory>,
    pub pinning: Pinning,
}

#[derive(Clone, Debug, Serialize, Default, PartialEq, Eq)]
pub struct ToolCounts {
    pub read_only: usize,
    pub writing: usize,
    pub destructive: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ToolFacts {
    pub name: String,
    /// `read_only`, `writing` or `destructive`.
    pub class: &'static str,
    /// `annotations` (as the server declared them), `default` (no annotations: MCP's worst
    /// case, a destructive write) or `override` (set by an admin).
    pub class_source: &'static str,
    pub open_world: bool,
    pub pinned: bool,
    /// `ok`, `held` (changed upstream, awaiting review) or `unpinned`.
    pub pin_status: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct DataCategory {
    /// A detector type (`EMAIL`, `AWS_ACCESS_KEY`…) or `INJECTION`.
    pub category: String,
    pub answers: i64,
    pub findings: i64,
    pub last_seen: String,
}

#[derive(Clone, Debug, Serialize, Default)]
pub struct Pinning {
    pub pinned: usize,
    pub held: usize,
    pub unpinned: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Access {
    pub idp: Option<Idp>,
    /// How group memberships arrive: `oidc_claims`, `scim`, `manual`.
    pub groups_arrive_by: Vec<&'static str>,
    pub scim: Scim,
    pub registries: Vec<RegistryFacts>,
    /// The server × group tool matrix: `columns` are `everyone`, `group:…`, `user:…`.
    pub matrix: Matrix,
    pub deny_rules: Vec<DenyRule>,
    pub agents: Vec<AgentFacts>,
    pub admins: Vec<AdminFacts>,
    pub users: UserCounts,
}

#[derive(Clone, Debug, Serialize)]
pub struct Idp {
    pub protocol: &'static str,
    pub issuer: String,
    pub groups_claim: String,
    pub allowed_domains: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Scim {
    pub enabled: bool,
    pub last_sync: Option<String>,
    /// SCIM writes in the period.
    pub changes_in_period: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RegistryFacts {
    pub slug: String,
    pub name: String,
    pub servers: Vec<String>,
    pub grants: Vec<GrantFacts>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GrantFacts {
    /// `everyone`, `group:…` or `user:…`.
    pub subject: String,
    /// The rules in words; empty means every tool of the registry's servers.
    pub rules: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Default)]
pub struct Matrix {
    pub columns: Vec<String>,
    pub rows: Vec<MatrixRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MatrixRow {
    pub server: String,
    /// One per column: what that subject may call there (`all`, the rules, or `—`).
    pub cells: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DenyRule {
    pub registry: String,
    pub subject: String,
    pub rule: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct AgentFacts {
    pub slug: String,
    pub name: String,
    /// The owner's email, `None` for a tenant-owned agent.
    pub owner: Option<String>,
    pub systems: usize,
    pub tools: usize,
    pub writes: usize,
    pub destructive: usize,
    /// The servers where it may write.
    pub writes_on: Vec<String>,
    pub active_tokens: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdminFacts {
    pub email: String,
    /// `local`, `sso`, `scim`.
    pub source: String,
    pub active: bool,
}

#[derive(Clone, Debug, Serialize, Default)]
pub struct UserCounts {
    pub active: usize,
    pub inactive: usize,
    /// Active users seen calling a server in the period.
    pub active_in_period: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuditFacts {
    /// What each MCP record holds (fixed: the fields every record carries).
    pub captures: Vec<&'static str>,
    /// How tool arguments are recorded: `none`, `hashed`, `redacted`, `full`.
    pub arguments: String,
    pub retention: Retention,
    pub destinations: Vec<Destination>,
    pub chain: Chain,
    /// Records per month (`2026-11`), oldest first, over the whole log.
    pub volume_by_month: Vec<MonthVolume>,
    pub records: i64,
    pub oldest: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Retention {
    /// `None`: kept forever.
    pub days: Option<i64>,
    pub preset: Option<String>,
    pub legal_hold: bool,
    pub legal_hold_reason: Option<String>,
    pub last_purge: Option<String>,
    /// The regulation the admin selected for this tenant (review notes), and the days it asks.
    pub regulation: Option<String>,
    pub regulation_days: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Destination {
    pub name: String,
    /// `syslog`, `webhook`, `splunk_hec`.
    pub kind: String,
    pub enabled: bool,
    /// `delivering`, `failing`, `disabled` or `waiting` (nothing delivered yet).
    pub state: &'static str,
    pub delivered: i64,
    /// Records not yet delivered.
    pub behind: i64,
    pub last_ok: Option<String>,
    pub last_error: Option<String>,
    pub failures: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Chain {
    pub verified: bool,
    pub records_checked: i64,
    /// What broke the chain, if it is broken.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MonthVolume {
    pub month: String,
    pub records: i64,
    pub mcp: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Credentials {
    /// The encryption scheme in words.
    pub scheme: Vec<String>,
    /// The key-encryption key: where it lives and its fingerprint (never the key).
    pub kek: Kek,
    /// The tenant's data keys, newest first.
    pub data_keys: Vec<DataKey>,
    pub last_rotation: Option<String>,
    /// Secrets in the vault by kind (`upstream credential`, `user connection`…).
    pub stored: Vec<KindCount>,
    /// Gateway credentials clients hold (hashes only are stored).
    pub gateway_tokens: Vec<KindCount>,
    /// Revocations in the period, by kind.
    pub revocations: Vec<KindCount>,
    /// The revocation procedure, step by step.
    pub procedure: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Kek {
    /// `master key file`, `environment`, or a KMS.
    pub source: String,
    pub fingerprint: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DataKey {
    pub key_id: String,
    pub created_at: String,
    pub retired_at: Option<String>,
    pub age_days: i64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct KindCount {
    pub kind: String,
    pub count: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Clients {
    /// Per MCP client and server: who received data in the period.
    pub flows: Vec<ClientFlow>,
    /// User agents seen per client (a client that does not name itself is known by these).
    pub user_agents: Vec<ClientAgents>,
    /// What the tenant admin wrote about LLM routing and data processing agreements.
    pub statement: Statement,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClientFlow {
    /// The client's `clientInfo` (`name/version`), or `unknown`.
    pub client: String,
    pub server: String,
    pub calls: i64,
    pub users: i64,
    pub last_seen: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClientAgents {
    pub client: String,
    pub user_agents: Vec<String>,
}

/// The admin-written part of section 6, kept with the tenant and shown in every pack.
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct Statement {
    /// Which LLM providers the tenant's clients send tool output to, and how.
    #[serde(default)]
    pub llm_routing: String,
    /// Data processing agreements in place (provider, reference, date).
    #[serde(default)]
    pub data_processing: String,
    /// The regulation the tenant's audit retention must meet: `hipaa`, `pci_dss`, `gdpr`,
    /// or empty.
    #[serde(default)]
    pub regulation: String,
    #[serde(default)]
    pub updated_by: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FilterFacts {
    pub policies: Vec<FilterPolicyFacts>,
    pub hooks: Vec<HookFacts>,
    pub stats: FilterStats,
    /// Findings per type in the period, most first.
    pub by_type: Vec<KindCount>,
    /// Tools held for review (changed upstream, or new on servers that deny new tools).
    pub quarantined: Vec<Quarantined>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FilterPolicyFacts {
    /// `*` (the tenant's default) or a server.
    pub scope: String,
    pub pii: String,
    pub secrets: String,
    pub injection: String,
    pub arguments: String,
    /// Per-type overrides (`PERSON_NAME: redact`).
    pub entities: Vec<String>,
    /// Tools with their own rules.
    pub tools: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HookFacts {
    pub scope: String,
    /// The receiver's host (the full URL may carry a path an admin considers private).
    pub host: String,
    pub fail: String,
    pub timeout_ms: i64,
}

#[derive(Clone, Debug, Serialize, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// MCP answers the filters acted on in the period.
    pub answers_filtered: i64,
    pub redacted: i64,
    pub masked: i64,
    pub blocked: i64,
    pub logged: i64,
    pub injections_blocked: i64,
    pub injections_flagged: i64,
    pub injections_logged: i64,
    pub arguments_blocked: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Quarantined {
    pub server: String,
    pub tool: String,
    /// `changed` or `new`.
    pub kind: String,
    pub since: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Risk {
    /// Stable: `destructive_open_to_everyone`, `no_scim`…
    pub id: &'static str,
    /// `high`, `medium` or `low`.
    pub severity: &'static str,
    pub title: String,
    pub detail: String,
    pub fix: String,
    /// What it concerns (servers, agents, keys…).
    pub subjects: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SignalFacts {
    /// `denial_burst`, `first_destructive`, `volume_spike`, `unusual_hour`, `filter_spike`.
    pub kind: String,
    /// `user:alice@acme.example` or `agent:research`.
    pub subject: String,
    /// `high`, `medium` or `low`.
    pub severity: String,
    pub at: String,
    pub summary: String,
    /// The console's audit search for the records behind it (a path: `/admin/audit?…`).
    pub records_href: String,
}

/// The console home's dashboard: the same facts as the pack, at a glance.
#[derive(Clone, Debug, Serialize)]
pub struct Dashboard {
    pub days: u32,
    /// One point per UTC day, oldest first, every day of the period present.
    pub series: Vec<DayPoint>,
    pub top_servers: Vec<KindCount>,
    pub top_tools: Vec<KindCount>,
    pub open_risks: usize,
    pub high_risks: usize,
    /// Recent anomaly signals, newest first.
    pub signals: Vec<SignalFacts>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DayPoint {
    /// `2026-11-24`.
    pub date: String,
    pub calls: i64,
    pub denials: i64,
    pub redactions: i64,
    pub injection_blocks: i64,
    pub active_users: i64,
}
