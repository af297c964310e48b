//! What the console shows and the server functions that fetch and change it.
//!
//! The UI never touches the database: every server function here asks a [`ConsoleBackend`]
//! (implemented in the `server` crate and provided through Leptos context) to do the work.
//! That keeps authentication, CSRF checks and storage in one place, owned by the server.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Which console a request's host serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostKind {
    /// The bare base domain: the platform operator's console.
    Platform,
    /// `{tenant}.{base_domain}`: that tenant's portal and admin console.
    Tenant { slug: String, name: String },
}

/// One message to show once (success or failure of the last form), kept in the session so that
/// it survives the redirect of a form posted without JavaScript.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    pub kind: FlashKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlashKind {
    Info,
    Error,
}

/// The tenant admin console as the signed-in admin sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantConsole {
    pub tenant_slug: String,
    pub tenant_name: String,
    pub tenant_created_at: String,
    pub user_email: String,
    pub gateway_base_url: String,
    pub portal_url: String,
    pub user_count: i64,
    pub admin_count: i64,
    pub server_count: i64,
}

/// An upstream MCP server as the console lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSummary {
    pub slug: String,
    pub name: String,
    pub description: String,
    /// `streamable_http`, `sse` or `stdio`.
    pub transport: String,
    /// The URL, or the command line of a stdio server.
    pub target: String,
    /// The gateway URL MCP clients connect to.
    pub endpoint: String,
}

/// A gateway token just issued from the console (shown once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub user_email: String,
    pub token: String,
}

/// A tool as "test connection" found it, with its declared annotations (hints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolView {
    pub name: String,
    pub description: String,
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

/// The result of "test connection" on one server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryView {
    pub slug: String,
    /// Why the test failed; `None` when it succeeded.
    pub error: Option<String>,
    pub protocol_version: String,
    pub server: String,
    /// The server's capabilities, as pretty JSON.
    pub capabilities: String,
    pub tools: Vec<ToolView>,
    /// (uri, name)
    pub resources: Vec<(String, String)>,
    /// (name, description)
    pub prompts: Vec<(String, String)>,
}

/// A result made by a form, held by the server until the next page render shows it once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reveal {
    Tenant(CreatedTenant),
    Token(IssuedToken),
    Discovery(DiscoveryView),
    /// A new SCIM token (admin console) or gateway token (portal), shown once.
    Secret(String),
    Simulation(SimulationView),
}

/// Identity and access as the admin console shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityView {
    pub sso: Option<SsoView>,
    /// The redirect URI to register at the IdP.
    pub redirect_uri: String,
    pub scim_enabled: bool,
    pub scim_base_url: String,
    pub users: Vec<UserSummary>,
    pub groups: Vec<GroupSummary>,
    pub registries: Vec<RegistrySummary>,
    /// Servers × groups: what each group may call on each server.
    pub matrix: Matrix,
    /// Rate limits and quotas.
    #[serde(default)]
    pub limits: Vec<LimitView>,
    /// Approval rules and requests (pending first).
    #[serde(default)]
    pub approval_rules: Vec<ApprovalRuleView>,
    #[serde(default)]
    pub approvals: Vec<ApprovalView>,
    /// Agents, with their tokens and blast radius.
    #[serde(default)]
    pub agents: Vec<AgentView>,
    /// The vault and the servers' credentials.
    #[serde(default)]
    pub credentials: CredentialsView,
    /// Filter policies and the tool-change review queue.
    #[serde(default)]
    pub filters: FiltersView,
}

/// The Filters page: policies per server (and the tenant's default), the tool-change review
/// queue with diffs, and which reviewed tools are not pinned yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiltersView {
    pub policies: Vec<FilterPolicyView>,
    /// The tenant's server slugs.
    pub servers: Vec<String>,
    pub changes: Vec<ToolChangeView>,
    /// (server, tools reviewed before pinning existed).
    pub unpinned: Vec<(String, Vec<String>)>,
    /// Answers filtered per day, last 14 days: (day, redacted or masked, blocked, flagged or
    /// logged).
    #[serde(default)]
    pub activity: Vec<(String, u64, u64, u64)>,
    /// The data inventory: (server, category, class, answers, last seen).
    #[serde(default)]
    pub inventory: Vec<(String, String, String, u64, String)>,
    /// External hooks: (id, server or "*", url, timeout ms, fail mode).
    #[serde(default)]
    pub hooks: Vec<(String, String, String, i64, String)>,
}

impl FiltersView {
    pub fn changes_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterPolicyView {
    /// A server's slug, or "*" for the tenant's default.
    pub scope: String,
    pub pii: String,
    pub secrets: String,
    pub injection: String,
    /// Per-type overrides: "CREDIT_CARD: block".
    pub entities: Vec<String>,
    /// Per-tool rules, one line each: "lookup_contact: personal data redact; keep /name".
    #[serde(default)]
    pub tools: Vec<String>,
    /// What tool-call arguments get: off, log or block.
    #[serde(default)]
    pub arguments: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolChangeView {
    pub server: String,
    pub tool: String,
    /// changed or new.
    pub kind: String,
    /// pending or dismissed.
    pub status: String,
    pub digest: String,
    /// Line diff: lines starting with '-', '+' or ' '.
    pub diff: Vec<String>,
    pub first_seen_at: String,
    pub last_seen_at: String,
}

/// The Credentials page: the vault's keys and each server's credential (never a value).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsView {
    pub kek_fingerprint: String,
    /// (key id, created, retired or "", active).
    pub keys: Vec<(String, String, String, bool)>,
    pub secrets: usize,
    pub servers: Vec<ServerCredentialView>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCredentialView {
    pub slug: String,
    pub name: String,
    pub transport: String,
    /// "" when none is set.
    pub kind: String,
    pub header: String,
    pub updated_at: String,
    /// Users connected with their own account (per-user kinds): (user id, email, kind, since).
    #[serde(default)]
    pub connected: Vec<(String, String, String, String)>,
}

/// One agent as the console shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub slug: String,
    pub name: String,
    /// The owner's email, or "the tenant".
    pub owner: String,
    pub enabled: bool,
    pub disabled: bool,
    pub endpoint: String,
    /// One line per server: `server: tool, tool`.
    pub tool_set: String,
    pub tokens: Vec<AgentTokenView>,
    /// "2 systems, 4 tools: 3 write, 2 destructive, 0 reach outside".
    pub radius: String,
    pub systems: Vec<AgentSystemView>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTokenView {
    pub label: String,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSystemView {
    pub server: String,
    pub name: String,
    pub reachable: bool,
    /// (tool, "read-only" / "writes" / "destructive", reaches outside).
    pub tools: Vec<(String, String, bool)>,
    /// Names of the set matching no known tool.
    pub unmatched: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRuleView {
    pub id: String,
    /// "destructive tools matching delete_* on crm, 300 s".
    pub summary: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    pub id: String,
    pub user: String,
    pub server: String,
    pub tool: String,
    pub arguments: String,
    pub status: String,
    pub decided_by: String,
    pub created_at: String,
}

/// One rate-limit rule as the console lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitView {
    pub id: String,
    pub subject: String,
    pub value: String,
    /// "10/min, 2 at once, 1000/day".
    pub limits: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoView {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_set: bool,
    pub scopes: String,
    pub groups_claim: String,
    pub allowed_domains: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub id: String,
    pub email: String,
    pub source: String,
    pub groups: Vec<String>,
    pub active: bool,
    pub admin: bool,
    pub last_seen: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub name: String,
    pub source: String,
    pub members: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySummary {
    pub slug: String,
    pub name: String,
    pub servers: Vec<String>,
    pub grants: Vec<GrantSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantSummary {
    pub id: String,
    /// `everyone`, `group:NAME` or `user:EMAIL`.
    pub subject: String,
    /// Its rules in words (empty: everything on the registry's servers).
    pub rules: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matrix {
    pub groups: Vec<String>,
    /// (server, one cell per group: what the group may call there, "—" for nothing).
    pub rows: Vec<(String, Vec<String>)>,
}

/// The simulator's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulationView {
    pub question: String,
    pub decision: String,
    pub reason: String,
    pub chain: Vec<String>,
}

/// Every identity/access form of the console and portal: `op` says which, the other fields
/// are that form's (absent ones are empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityForm {
    /// save_sso, disable_sso, rotate_scim, set_active, create_registry, delete_registry,
    /// update_registry, add_grant, delete_grant, record_catalog, simulate, who_can, reach,
    /// portal_token.
    pub op: String,
    #[serde(default)]
    pub issuer: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    #[serde(default)]
    pub scopes: String,
    #[serde(default)]
    pub groups_claim: String,
    #[serde(default)]
    pub allowed_domains: String,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub active: String,
    #[serde(default)]
    pub slug: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub servers: String,
    #[serde(default)]
    pub grants: String,
    #[serde(default)]
    pub rules: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub tool: String,
    #[serde(default)]
    pub arguments: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub grant_id: String,
    /// Rate limits: subject, value, per-minute, concurrent, per-day; `limit_id` to delete.
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub per_minute: String,
    #[serde(default)]
    pub concurrent: String,
    #[serde(default)]
    pub per_day: String,
    #[serde(default)]
    pub limit_id: String,
    /// Approvals: the request to decide (approve/deny), or a rule (server, tool, applies,
    /// timeout; `rule_id` to delete).
    #[serde(default)]
    pub approval_id: String,
    #[serde(default)]
    pub applies: String,
    #[serde(default)]
    pub timeout: String,
    #[serde(default)]
    pub rule_id: String,
    /// Agents: the owner's email (empty: the tenant) and the tool set, one `server: tools`
    /// line per server (with `slug`, `name`, `label`, `active`).
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub tool_set: String,
    /// Server credentials: kind (bearer or header), header name, the secret (with `slug`).
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub header: String,
    #[serde(default)]
    pub secret_value: String,
    /// Filters: actions (with `slug`, "*" for the default), the try-it text, and a queued
    /// tool's digest (with `slug`, `tool`).
    #[serde(default)]
    pub pii: String,
    #[serde(default)]
    pub secrets: String,
    #[serde(default)]
    pub injection: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub digest: String,
    /// Filters: a per-type rule (`entity`, `action`; `inherit` removes it), a per-tool rule
    /// (`tool`, `pii`, `secrets`, `injection` — `inherit` leaves them to the server —, field
    /// paths to `keep` and `drop`, one per line), and hooks (`url`, `timeout`, `fail`;
    /// `hook_id` to remove one).
    #[serde(default)]
    pub entity: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub keep: String,
    #[serde(default)]
    pub drop: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub fail: String,
    #[serde(default)]
    pub hook_id: String,
}

/// The user portal at `/` on a tenant host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalState {
    pub tenant_name: String,
    pub csrf: String,
    pub flash: Option<Flash>,
    pub sso_enabled: bool,
    /// `None` until the user signs in.
    pub user: Option<PortalUser>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalUser {
    pub email: String,
    pub is_admin: bool,
    pub servers: Vec<PortalServer>,
    pub tokens: Vec<TokenSummary>,
    /// A token just issued, shown once.
    pub new_token: Option<String>,
    /// Apps (OAuth clients) the user allowed, per server.
    #[serde(default)]
    pub apps: Vec<AppGrant>,
}

/// An OAuth client a user allowed to use one server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppGrant {
    pub id: String,
    pub client: String,
    pub server: String,
    pub since: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalServer {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub endpoint: String,
    /// The tools policy lets this user call (those the gateway knows of).
    pub tools: Vec<String>,
    /// (client, where the configuration goes, the configuration).
    pub snippets: Vec<(String, String, String)>,
    /// The server takes the user's own account: "" (no), "static" (a secret of theirs) or
    /// "oauth" (an account they connect).
    #[serde(default)]
    pub account: String,
    /// When the user's own account was connected or set ("" if it is not).
    #[serde(default)]
    pub connected_since: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSummary {
    #[serde(default)]
    pub id: String,
    pub label: String,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
}

/// The audit page's filters, from its URL's query (every field optional text).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPageQuery {
    pub user: String,
    pub group: String,
    pub agent: String,
    pub client: String,
    pub server: String,
    pub method: String,
    pub decision: String,
    pub category: String,
    pub q: String,
    pub since: String,
    pub until: String,
    /// Keyset: records older than this seq.
    pub before: String,
    /// One record shown in detail.
    pub event: String,
    /// The charts' span in days.
    pub days: String,
}

impl AuditPageQuery {
    pub const FILTERS: [&'static str; 11] = [
        "user", "group", "agent", "client", "server", "method", "decision", "category", "q",
        "since", "until",
    ];

    pub fn get(&self, name: &str) -> &str {
        match name {
            "user" => &self.user,
            "group" => &self.group,
            "agent" => &self.agent,
            "client" => &self.client,
            "server" => &self.server,
            "method" => &self.method,
            "decision" => &self.decision,
            "category" => &self.category,
            "q" => &self.q,
            "since" => &self.since,
            "until" => &self.until,
            "before" => &self.before,
            "event" => &self.event,
            "days" => &self.days,
            _ => "",
        }
    }

    pub fn set(&mut self, name: &str, v: String) {
        match name {
            "user" => self.user = v,
            "group" => self.group = v,
            "agent" => self.agent = v,
            "client" => self.client = v,
            "server" => self.server = v,
            "method" => self.method = v,
            "decision" => self.decision = v,
            "category" => self.category = v,
            "q" => self.q = v,
            "since" => self.since = v,
            "until" => self.until = v,
            "before" => self.before = v,
            "event" => self.event = v,
            "days" => self.days = v,
            _ => {}
        }
    }

    /// The filters as a URL query (`a=b&c=d`, encoded), without paging or detail.
    pub fn filter_query(&self) -> String {
        Self::FILTERS
            .iter()
            .filter(|k| !self.get(k).is_empty())
            .map(|k| format!("{k}={}", urlencode(self.get(k))))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encoding for a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One audit record as the console lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecordView {
    pub id: String,
    pub seq: i64,
    pub at: String,
    pub category: String,
    pub action: String,
    pub actor: String,
    pub groups: String,
    pub agent: String,
    pub client: String,
    pub ip: String,
    pub session: String,
    pub server: String,
    pub target: String,
    pub decision: String,
    pub outcome: String,
    pub latency: String,
    /// Pretty JSON of the particulars (detail view).
    pub detail: String,
    pub hash: String,
    pub prev_hash: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBar {
    pub label: String,
    pub calls: i64,
    pub denied: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSettingsView {
    pub arguments: String,
    pub retention_days: Option<i64>,
    pub retention_preset: String,
    pub legal_hold: bool,
    pub legal_hold_reason: String,
    pub records: i64,
    pub oldest: String,
    pub last_purge: String,
    /// (name, days, the requirement it comes from).
    pub presets: Vec<(String, i64, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiemView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub enabled: bool,
    pub behind: i64,
    pub delivered: i64,
    pub last_ok: String,
    pub last_error: String,
    pub failures: i64,
}

/// Everything the audit page shows for one set of filters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub records: Vec<AuditRecordView>,
    /// The seq to pass as `before` for the next (older) page.
    pub next: Option<i64>,
    /// How many records match the filters (what an export would hold).
    pub matching: i64,
    pub detail: Option<AuditRecordView>,
    pub buckets: Vec<AuditBar>,
    pub bucket_unit: String,
    pub top_tools: Vec<(String, i64)>,
    pub top_users: Vec<(String, i64)>,
    pub settings: AuditSettingsView,
    pub destinations: Vec<SiemView>,
    /// A message about the filters themselves (a bad date).
    pub problem: Option<String>,
}

/// The audit page's forms: settings, purge_now, verify, add_siem, delete_siem, toggle_siem.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditForm {
    pub op: String,
    #[serde(default)]
    pub arguments: String,
    #[serde(default)]
    pub preset: String,
    #[serde(default)]
    pub retention_days: String,
    #[serde(default)]
    pub legal_hold: String,
    #[serde(default)]
    pub legal_hold_reason: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: String,
    #[serde(default)]
    pub tls: String,
    #[serde(default)]
    pub ca_pem: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub start: String,
    /// The review pack's statement (`review_statement`) and tool classes (`tool_class`).
    #[serde(default)]
    pub llm_routing: String,
    #[serde(default)]
    pub data_processing: String,
    #[serde(default)]
    pub regulation: String,
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub tool: String,
    #[serde(default)]
    pub class: String,
}

/// The review pack page: the pack rendered by the server (escaped HTML, the same renderer as
/// the download), the period, and the admin's statement for the form.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewPage {
    pub html: String,
    pub days: u32,
    pub risks: usize,
    pub generated_at: String,
    pub llm_routing: String,
    pub data_processing: String,
    pub regulation: String,
    /// (server, tool, class, where the class comes from), for the classification form.
    pub tools: Vec<(String, String, String, String)>,
}

/// The state of the tenant console for this browser session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleState {
    /// Anti-CSRF token bound to this session; every state-changing form carries it.
    pub csrf: String,
    pub flash: Option<Flash>,
    /// `None` until the admin signs in.
    pub console: Option<TenantConsole>,
    /// The tenant's servers (empty until signed in).
    pub servers: Vec<ServerSummary>,
    /// A token issued by the last form, shown once.
    pub issued_token: Option<IssuedToken>,
    /// The result of the last "test connection".
    pub discovery: Option<DiscoveryView>,
    /// Identity and access (when signed in).
    pub identity: Option<IdentityView>,
    /// A secret made by the last form (the SCIM token), shown once.
    pub secret: Option<String>,
    pub simulation: Option<SimulationView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSummary {
    pub slug: String,
    pub name: String,
    pub created_at: String,
    pub console_url: String,
}

/// A tenant just created from the platform console, with its first admin token (shown once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTenant {
    pub slug: String,
    pub admin_email: String,
    pub admin_token: String,
    pub console_url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformState {
    pub csrf: String,
    pub flash: Option<Flash>,
    pub signed_in: bool,
    pub tenants: Vec<TenantSummary>,
    pub created: Option<CreatedTenant>,
}

#[cfg(feature = "ssr")]
pub use backend::*;

#[cfg(feature = "ssr")]
mod backend {
    use super::*;
    use http::request::Parts;
    use std::sync::Arc;

    /// Why a console operation was refused. The message is safe to show to the user.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum BackendError {
        /// The session is not signed in (or has expired).
        SignedOut,
        /// The form's anti-CSRF token does not match the session's.
        Csrf,
        /// This host does not serve that operation (a tenant call on the platform host).
        WrongHost,
        /// Something went wrong inside; details are logged by the server, never shown.
        Internal,
    }

    impl std::fmt::Display for BackendError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                BackendError::SignedOut => "You are signed out. Sign in again.",
                BackendError::Csrf => "The form expired. Reload the page and try again.",
                BackendError::WrongHost => "This operation is not available on this host.",
                BackendError::Internal => "Something went wrong on our side; it has been logged.",
            })
        }
    }

    /// Everything the console's server functions need from the server. Implemented by
    /// `portcullis::console::Backend`; every method receives the request's parts, from which the
    /// implementation reads the resolved host and the session.
    #[async_trait::async_trait]
    pub trait ConsoleBackend: Send + Sync + 'static {
        async fn host_kind(&self, parts: &Parts) -> Result<HostKind, BackendError>;
        async fn console_state(&self, parts: &Parts) -> Result<ConsoleState, BackendError>;
        async fn add_server(
            &self,
            parts: &Parts,
            csrf: &str,
            form: AddServerForm,
        ) -> Result<bool, BackendError>;
        async fn delete_server(
            &self,
            parts: &Parts,
            csrf: &str,
            slug: &str,
        ) -> Result<(), BackendError>;
        async fn test_server(
            &self,
            parts: &Parts,
            csrf: &str,
            slug: &str,
        ) -> Result<(), BackendError>;
        async fn issue_token(
            &self,
            parts: &Parts,
            csrf: &str,
            user_email: &str,
            label: &str,
        ) -> Result<bool, BackendError>;
        async fn sign_in(&self, parts: &Parts, csrf: &str, token: &str)
            -> Result<(), BackendError>;
        async fn sign_out(&self, parts: &Parts, csrf: &str) -> Result<(), BackendError>;
        async fn rename_tenant(
            &self,
            parts: &Parts,
            csrf: &str,
            name: &str,
        ) -> Result<(), BackendError>;
        async fn platform_state(&self, parts: &Parts) -> Result<PlatformState, BackendError>;
        async fn portal_state(&self, parts: &Parts) -> Result<PortalState, BackendError>;
        /// Any identity/access form; `Ok(false)` when the input was refused (flash says why).
        async fn identity_action(
            &self,
            parts: &Parts,
            csrf: &str,
            form: IdentityForm,
        ) -> Result<bool, BackendError>;
        async fn platform_sign_in(
            &self,
            parts: &Parts,
            csrf: &str,
            token: &str,
        ) -> Result<(), BackendError>;
        /// The audit page for one set of filters (signed-in admins only).
        async fn audit_page(
            &self,
            parts: &Parts,
            query: AuditPageQuery,
        ) -> Result<AuditPage, BackendError>;
        /// The audit page's forms; `Ok(false)` when the input was refused (flash says why).
        async fn audit_action(
            &self,
            parts: &Parts,
            csrf: &str,
            form: AuditForm,
        ) -> Result<bool, BackendError>;
        /// The review pack page for a period (signed-in admins only; recorded as a generation).
        async fn review_page(&self, parts: &Parts, days: u32) -> Result<ReviewPage, BackendError>;
        /// The console home's dashboard, rendered by the server (signed-in admins only).
        async fn dashboard(&self, parts: &Parts) -> Result<String, BackendError>;
        async fn platform_create_tenant(
            &self,
            parts: &Parts,
            csrf: &str,
            slug: &str,
            name: &str,
            admin_email: &str,
        ) -> Result<bool, BackendError>;
    }

    /// How the server hands its backend to the UI (through Leptos context).
    pub type SharedBackend = Arc<dyn ConsoleBackend>;

    pub(crate) fn backend_and_parts() -> Result<(SharedBackend, Parts), ServerFnError> {
        let backend = use_context::<SharedBackend>()
            .ok_or_else(|| ServerFnError::new("console backend missing"))?;
        let parts = use_context::<Parts>().ok_or_else(|| ServerFnError::new("request missing"))?;
        Ok((backend, parts))
    }

    pub(crate) fn to_sfn(err: BackendError) -> ServerFnError {
        ServerFnError::new(err.to_string())
    }
}

/// What `/` shows: the platform console on the bare domain, the portal on a tenant host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HomeState {
    Platform(PlatformState),
    Portal(PortalState),
}

/// Everything `/` needs in one round trip (one resource, fetched once per render).
#[server(prefix = "/_console")]
pub async fn load_home() -> Result<HomeState, ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    match backend.host_kind(&parts).await.map_err(to_sfn)? {
        HostKind::Platform => backend
            .platform_state(&parts)
            .await
            .map(HomeState::Platform)
            .map_err(to_sfn),
        HostKind::Tenant { .. } => backend
            .portal_state(&parts)
            .await
            .map(HomeState::Portal)
            .map_err(to_sfn),
    }
}

/// The console's state (every section's data: it is small, and a page whose data depended on
/// the route would refetch while the server renders it).
#[server(prefix = "/_console")]
pub async fn load_console() -> Result<ConsoleState, ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend.console_state(&parts).await.map_err(to_sfn)
}

/// The fields of the "add a server" form; which ones matter depends on `transport`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddServerForm {
    pub slug: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `streamable_http`, `sse` or `stdio`.
    pub transport: String,
    #[serde(default)]
    pub url: String,
    /// A stdio server's command line (split like a shell would, without running one).
    #[serde(default)]
    pub command_line: String,
    /// `shared` or `per_user`.
    #[serde(default)]
    pub instance: String,
    /// A checkbox: non-empty when ticked (stdio servers in a bubblewrap sandbox).
    #[serde(default)]
    pub sandbox: String,
}

/// `Ok(true)` when the server was added; `Ok(false)` when the input was refused (the reason is
/// in the flash message).
#[server(prefix = "/_console")]
pub async fn add_server(csrf: String, form: AddServerForm) -> Result<bool, ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend
        .add_server(&parts, &csrf, form)
        .await
        .map_err(to_sfn)
}

#[server(prefix = "/_console")]
pub async fn delete_server(csrf: String, slug: String) -> Result<(), ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend
        .delete_server(&parts, &csrf, &slug)
        .await
        .map_err(to_sfn)
}

/// Runs "test connection" on a server; the result shows on the servers page.
#[server(prefix = "/_console")]
pub async fn test_server(csrf: String, slug: String) -> Result<(), ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend
        .test_server(&parts, &csrf, &slug)
        .await
        .map_err(to_sfn)
}

#[server(prefix = "/_console")]
pub async fn issue_token(
    csrf: String,
    user_email: String,
    label: String,
) -> Result<bool, ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend
        .issue_token(&parts, &csrf, &user_email, &label)
        .await
        .map_err(to_sfn)
}

/// Signs the admin in with a tenant admin token (the bootstrap sign-in until SSO).
#[server(prefix = "/_console")]
pub async fn sign_in(csrf: String, token: String) -> Result<(), ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend.sign_in(&parts, &csrf, &token).await.map_err(to_sfn)
}

#[server(prefix = "/_console")]
pub async fn sign_out(csrf: String) -> Result<(), ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend.sign_out(&parts, &csrf).await.map_err(to_sfn)
}

#[server(prefix = "/_console")]
pub async fn rename_tenant(csrf: String, name: String) -> Result<(), ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend
        .rename_tenant(&parts, &csrf, &name)
        .await
        .map_err(to_sfn)
}

#[server(prefix = "/_console")]
pub async fn platform_sign_in(csrf: String, token: String) -> Result<(), ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend
        .platform_sign_in(&parts, &csrf, &token)
        .await
        .map_err(to_sfn)
}

#[server(prefix = "/_console")]
pub async fn platform_create_tenant(
    csrf: String,
    slug: String,
    name: String,
    admin_email: String,
) -> Result<bool, ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend
        .platform_create_tenant(&parts, &csrf, &slug, &name, &admin_email)
        .await
        .map_err(to_sfn)
}

/// Identity and access forms (console and portal).
#[server(prefix = "/_console")]
pub async fn identity_action(csrf: String, form: IdentityForm) -> Result<bool, ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend
        .identity_action(&parts, &csrf, form)
        .await
        .map_err(to_sfn)
}

/// The audit page's data for its filters.
#[server(prefix = "/_console")]
pub async fn load_audit(query: AuditPageQuery) -> Result<AuditPage, ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend.audit_page(&parts, query).await.map_err(to_sfn)
}

/// The audit page's forms (settings, purge, verification, SIEM destinations).
#[server(prefix = "/_console")]
pub async fn audit_action(csrf: String, form: AuditForm) -> Result<bool, ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend
        .audit_action(&parts, &csrf, form)
        .await
        .map_err(to_sfn)
}

/// The review pack page's data for a period (days).
#[server(prefix = "/_console")]
pub async fn load_review(days: u32) -> Result<ReviewPage, ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend.review_page(&parts, days).await.map_err(to_sfn)
}

/// The console home's dashboard (server-rendered HTML).
#[server(prefix = "/_console")]
pub async fn load_dashboard() -> Result<String, ServerFnError> {
    let (backend, parts) = backend_and_parts()?;
    backend.dashboard(&parts).await.map_err(to_sfn)
}
