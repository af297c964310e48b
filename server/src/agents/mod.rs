//! Agents: principals with an explicit tool set chosen across servers, served together at
//! `/mcp/agents/{slug}` (`gateway/agent.rs`), with tokens of their own.
//!
//! An agent is owned by a user or by the tenant. Its effective rights are its tool set
//! intersected with its owner's rights *now* (the owner's grants and rules, decided per call),
//! so deactivating or deprovisioning the owner stops the agent at once. A tenant-owned agent
//! has exactly its tool set (an admin chose each tool), minus tools outside a server's
//! reviewed catalog where the server denies new tools. The blast-radius view answers "what
//! could this agent do if it went wrong": which systems, which tools, which of them write,
//! destroy or reach outside.

pub mod api;

use crate::access::AccessError;
use crate::domain::{DisplayName, Email, NewToken, ServerSlug, TokenKind};
use crate::policy::{Ask, Hints, Kind, TenantPolicy};
use crate::store::{AgentRow, AgentWrite, Store};
use globset::{Glob, GlobSet, GlobSetBuilder};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Separates the server from the tool (or prompt) in an agent endpoint's names: `crm__search`.
/// Server slugs never contain `_`, so the first `__` splits unambiguously, and the result is a
/// valid tool name for every client (`[A-Za-z0-9_-]`, which some LLM APIs require).
pub const NAME_SEPARATOR: &str = "__";
/// Resource URIs at an agent endpoint: `portcullis://{server}/{the server's own URI}`.
pub const RESOURCE_PREFIX: &str = "portcullis://";

const MAX_SERVERS: usize = 100;
const MAX_PATTERNS: usize = 1_000;

/// One server of a tool set and the tools of it the agent may use (names or globs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSetEntry {
    pub server: String,
    pub tools: Vec<String>,
}

/// A parsed, compiled tool set.
#[derive(Clone, Debug, Default)]
pub struct ToolSet {
    entries: Vec<ToolSetEntry>,
    matchers: Vec<GlobSet>,
}

impl ToolSet {
    /// Checks and compiles entries: known server slugs (`known`, when given), at least one tool
    /// per server, valid names or globs; entries for the same server are merged.
    pub fn parse(entries: Vec<ToolSetEntry>, known: Option<&[String]>) -> Result<Self, String> {
        let mut merged: Vec<ToolSetEntry> = Vec::new();
        let mut patterns = 0;
        for e in entries {
            let server = ServerSlug::parse(e.server.trim())
                .map_err(|err| format!("tool_set: server {:?}: {}", e.server, err.0))?;
            if let Some(known) = known {
                if !known.iter().any(|k| k == server.as_str()) {
                    return Err(format!(
                        "tool_set: no server {:?} in this tenant",
                        server.as_str()
                    ));
                }
            }
            let mut tools = Vec::new();
            for t in e.tools {
                let t = t.trim().to_owned();
                if t.is_empty() || t.chars().count() > 128 || t.chars().any(char::is_control) {
                    return Err(format!(
                        "tool_set: {:?} on {}: a tool name or glob of 1 to 128 plain characters",
                        t,
                        server.as_str()
                    ));
                }
                Glob::new(&t).map_err(|err| {
                    format!("tool_set: {t:?} on {}: {}", server.as_str(), err.kind())
                })?;
                tools.push(t);
            }
            if tools.is_empty() {
                return Err(format!(
                    "tool_set: server {} lists no tools (name them, or \"*\" for all)",
                    server.as_str()
                ));
            }
            patterns += tools.len();
            match merged.iter_mut().find(|m| m.server == server.as_str()) {
                Some(m) => {
                    for t in tools {
                        if !m.tools.contains(&t) {
                            m.tools.push(t);
                        }
                    }
                }
                None => {
                    let mut unique: Vec<String> = Vec::new();
                    for t in tools {
                        if !unique.contains(&t) {
                            unique.push(t);
                        }
                    }
                    merged.push(ToolSetEntry {
                        server: server.as_str().to_owned(),
                        tools: unique,
                    });
                }
            }
        }
        if merged.len() > MAX_SERVERS || patterns > MAX_PATTERNS {
            return Err(format!(
                "tool_set: at most {MAX_SERVERS} servers and {MAX_PATTERNS} tool names"
            ));
        }
        let mut matchers = Vec::with_capacity(merged.len());
        for e in &merged {
            let mut b = GlobSetBuilder::new();
            for t in &e.tools {
                b.add(Glob::new(t).map_err(|err| err.to_string())?);
            }
            matchers.push(b.build().map_err(|err| err.to_string())?);
        }
        Ok(Self {
            entries: merged,
            matchers,
        })
    }

    /// The stored form (validated when written; a row that no longer parses is an empty set:
    /// it grants nothing).
    pub fn from_stored(json: &str) -> Self {
        serde_json::from_str::<Vec<ToolSetEntry>>(json)
            .map_err(|e| e.to_string())
            .and_then(|entries| Self::parse(entries, None))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "a stored agent tool set does not parse: it grants nothing");
                Self::default()
            })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.entries).unwrap_or_else(|_| "[]".into())
    }

    pub fn entries(&self) -> &[ToolSetEntry] {
        &self.entries
    }

    /// The servers of the set, in order.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.server.as_str())
    }

    pub fn has_server(&self, server: &str) -> bool {
        self.entries.iter().any(|e| e.server == server)
    }

    /// Whether the set names `tool` on `server`.
    pub fn allows(&self, server: &str, tool: &str) -> bool {
        self.entries
            .iter()
            .zip(&self.matchers)
            .any(|(e, m)| e.server == server && m.is_match(tool))
    }
}

/// An agent as the gateway snapshot holds it.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub slug: String,
    pub name: String,
    /// (user id, email) of the owner; `None`: the tenant.
    pub owner: Option<(String, String)>,
    /// Not disabled, and its owner (if any) is active.
    pub enabled: bool,
    pub tools: ToolSet,
}

impl Agent {
    pub fn from_row(row: &AgentRow) -> Self {
        Self {
            id: row.agent_id.clone(),
            slug: row.slug.clone(),
            name: row.name.clone(),
            owner: row
                .owner_user_id
                .clone()
                .map(|id| (id, row.owner_email.clone().unwrap_or_default())),
            enabled: row.disabled_at.is_none() && row.owner_active,
            tools: ToolSet::from_stored(&row.tool_set),
        }
    }

    /// Who the agent acts as, for records and approvals: its owner, or the agent itself.
    pub fn actor(&self) -> (String, String) {
        match &self.owner {
            Some((id, email)) => (id.clone(), email.clone()),
            None => (self.id.clone(), format!("agent:{}", self.slug)),
        }
    }

    /// Whether the agent may reach `server` at all: it is in the set and (for a user's agent)
    /// the owner reaches it.
    pub fn reaches(&self, policy: &TenantPolicy, server: &str) -> bool {
        self.enabled
            && self.tools.has_server(server)
            && self
                .owner
                .as_ref()
                .is_none_or(|(uid, _)| policy.reaches(uid, server))
    }

    /// Whether the agent may use tool `tool` of `server` with `arguments` (`None`: at all, for
    /// listings) — its set intersected with its owner's rights.
    pub fn may_call(
        &self,
        policy: &TenantPolicy,
        server: &str,
        tool: &str,
        hints: Hints,
        arguments: Option<&serde_json::Value>,
    ) -> bool {
        if !self.reaches(policy, server) || !self.tools.allows(server, tool) {
            return false;
        }
        match &self.owner {
            Some((uid, _)) => {
                policy
                    .decide(
                        uid,
                        server,
                        &Ask {
                            kind: Kind::Tool,
                            name: tool,
                            hints,
                            arguments,
                        },
                    )
                    .allowed
            }
            None => !policy.quarantined(server, tool),
        }
    }

    /// Whether the agent may use a prompt or resource of `server` (the servers of its set, as
    /// far as its owner may).
    pub fn may_use(&self, policy: &TenantPolicy, server: &str, kind: Kind, name: &str) -> bool {
        if !self.reaches(policy, server) {
            return false;
        }
        match &self.owner {
            Some((uid, _)) => {
                policy
                    .decide(
                        uid,
                        server,
                        &Ask {
                            kind,
                            name,
                            hints: Hints::default(),
                            arguments: None,
                        },
                    )
                    .allowed
            }
            None => true,
        }
    }
}

/// A tool at an agent endpoint: `crm__search` → ("crm", "search").
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    let (server, tool) = name.split_once(NAME_SEPARATOR)?;
    (!server.is_empty() && !tool.is_empty()).then_some((server, tool))
}

pub fn join_name(server: &str, name: &str) -> String {
    format!("{server}{NAME_SEPARATOR}{name}")
}

/// `portcullis://crm/file:///a` → ("crm", "file:///a").
pub fn split_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix(RESOURCE_PREFIX)?;
    let (server, inner) = rest.split_once('/')?;
    (!server.is_empty() && !inner.is_empty()).then_some((server, inner))
}

pub fn join_uri(server: &str, uri: &str) -> String {
    format!("{RESOURCE_PREFIX}{server}/{uri}")
}

// ---- blast radius ---------------------------------------------------------------------------

/// What an agent could do if it went wrong.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BlastRadius {
    pub agent: String,
    pub owner: Option<String>,
    pub enabled: bool,
    pub systems: Vec<SystemReach>,
    pub totals: Totals,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub systems: usize,
    pub tools: usize,
    /// Tools not marked read-only (unannotated tools count: MCP's defaults are the worst case).
    pub writes: usize,
    pub destructive: usize,
    pub open_world: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SystemReach {
    pub server: String,
    pub name: String,
    /// Whether the agent reaches the server now (it exists and the owner may use it).
    pub reachable: bool,
    pub tools: Vec<ToolReach>,
    /// Names or globs of the set that match no tool known for the server (the reviewed
    /// catalog, or tools seen in its lists): a tool appearing later under such a name is
    /// in reach.
    pub unmatched: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ToolReach {
    pub name: String,
    /// The name at the agent endpoint.
    pub exposed_as: String,
    pub read_only: bool,
    pub destructive: bool,
    pub open_world: bool,
    /// Whether the hints come from the reviewed catalog (else from lists seen, or the MCP
    /// worst-case defaults).
    pub reviewed: bool,
}

/// Computes an agent's reach from the policy and the tools known for each server: the
/// reviewed catalog and `observed` (name, hints seen in lists).
pub fn blast_radius(
    agent: &Agent,
    policy: &TenantPolicy,
    servers: &[(String, String)],
    observed: impl Fn(&str) -> Vec<(String, Option<Hints>)>,
) -> BlastRadius {
    let mut systems = Vec::new();
    let mut totals = Totals::default();
    for entry in agent.tools.entries() {
        let name = servers
            .iter()
            .find(|(slug, _)| *slug == entry.server)
            .map(|(_, n)| n.clone());
        let reachable = name.is_some() && agent.reaches(policy, &entry.server);
        let catalog = policy.catalog(&entry.server);
        let mut known: Vec<(String, Hints, bool)> =
            catalog.iter().map(|(n, h)| (n.clone(), *h, true)).collect();
        for (n, h) in observed(&entry.server) {
            if !known.iter().any(|(k, _, _)| *k == n) {
                known.push((n, h.unwrap_or_default(), false));
            }
        }
        known.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tools = Vec::new();
        for (tool, hints, reviewed) in &known {
            if !reachable || !agent.may_call(policy, &entry.server, tool, *hints, None) {
                continue;
            }
            tools.push(ToolReach {
                name: tool.clone(),
                exposed_as: join_name(&entry.server, tool),
                read_only: hints.is_read_only(),
                destructive: hints.is_destructive(),
                open_world: hints.is_open_world(),
                reviewed: *reviewed,
            });
        }
        let unmatched = entry
            .tools
            .iter()
            .filter(|p| {
                let m = Glob::new(p).map(|g| g.compile_matcher()).ok();
                !known
                    .iter()
                    .any(|(k, _, _)| m.as_ref().is_some_and(|m| m.is_match(k)))
            })
            .cloned()
            .collect();
        if reachable {
            totals.systems += 1;
        }
        totals.tools += tools.len();
        totals.writes += tools.iter().filter(|t| !t.read_only).count();
        totals.destructive += tools.iter().filter(|t| t.destructive).count();
        totals.open_world += tools.iter().filter(|t| t.open_world).count();
        systems.push(SystemReach {
            server: entry.server.clone(),
            name: name.unwrap_or_else(|| "(no such server)".into()),
            reachable,
            tools,
            unmatched,
        });
    }
    BlastRadius {
        agent: agent.slug.clone(),
        owner: agent.owner.as_ref().map(|(_, e)| e.clone()),
        enabled: agent.enabled,
        systems,
        totals,
    }
}

// ---- service --------------------------------------------------------------------------------

/// What an admin sends to create or replace an agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    pub slug: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    /// The owning user's email; absent or null: owned by the tenant.
    #[serde(default)]
    pub owner: Option<String>,
    pub tool_set: Vec<ToolSetEntry>,
    #[serde(default)]
    pub disabled: bool,
}

/// Checks an agent's settings; returns (slug, name, owner user id, tool set json).
async fn validate(
    store: &Store,
    tenant_id: &str,
    input: &AgentInput,
    slug: &str,
) -> Result<(String, String, Option<String>, String), AccessError> {
    let slug = ServerSlug::parse(slug)
        .map_err(|e| AccessError::Invalid(format!("slug: {}", e.0)))?
        .as_str()
        .to_owned();
    let name = DisplayName::parse(input.name.as_deref().unwrap_or(&slug))
        .map_err(|e| AccessError::Invalid(e.0))?
        .as_str()
        .to_owned();
    if input.description.chars().count() > 2_000 {
        return Err(AccessError::Invalid(
            "description must be at most 2000 characters".into(),
        ));
    }
    let owner = match input
        .owner
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(email) => {
            let email =
                Email::parse(email).map_err(|e| AccessError::Invalid(format!("owner: {}", e.0)))?;
            let user = store
                .user_by_email(tenant_id, &email)
                .await?
                .ok_or_else(|| {
                    AccessError::Invalid(format!(
                        "owner: no user {} in this tenant",
                        email.as_str()
                    ))
                })?;
            Some(user.user_id)
        }
    };
    let known: Vec<String> = store
        .list_servers(tenant_id)
        .await?
        .into_iter()
        .map(|s| s.slug)
        .collect();
    let set = ToolSet::parse(input.tool_set.clone(), Some(&known)).map_err(AccessError::Invalid)?;
    Ok((slug, name, owner, set.to_json()))
}

pub async fn create(
    store: &Store,
    tenant_id: &str,
    input: &AgentInput,
) -> Result<AgentRow, AccessError> {
    let slug = input
        .slug
        .clone()
        .ok_or_else(|| AccessError::Invalid("slug is required".into()))?;
    let (slug, name, owner, tool_set) = validate(store, tenant_id, input, &slug).await?;
    match store
        .create_agent(
            tenant_id,
            &AgentWrite {
                slug: &slug,
                name: &name,
                description: input.description.trim(),
                owner_user_id: owner.as_deref(),
                tool_set: &tool_set,
                disabled: input.disabled,
            },
        )
        .await
    {
        Err(crate::store::StoreError::Conflict(_)) => {
            return Err(AccessError::Exists(format!("agent {slug:?}")))
        }
        other => other?,
    };
    store
        .agent_by_slug(tenant_id, &slug)
        .await?
        .ok_or(AccessError::NotFound)
}

/// Replaces an agent's settings (the slug cannot change: tokens and records name it).
pub async fn update(
    store: &Store,
    tenant_id: &str,
    slug: &str,
    input: &AgentInput,
) -> Result<AgentRow, AccessError> {
    let row = store
        .agent_by_slug(tenant_id, slug)
        .await?
        .ok_or(AccessError::NotFound)?;
    if input.slug.as_deref().is_some_and(|s| s != row.slug) {
        return Err(AccessError::Invalid(
            "slug cannot change (create a new agent)".into(),
        ));
    }
    let (_, name, owner, tool_set) = validate(store, tenant_id, input, &row.slug).await?;
    store
        .update_agent(
            tenant_id,
            &row.agent_id,
            &AgentWrite {
                slug: &row.slug,
                name: &name,
                description: input.description.trim(),
                owner_user_id: owner.as_deref(),
                tool_set: &tool_set,
                disabled: input.disabled,
            },
        )
        .await?;
    store
        .agent_by_slug(tenant_id, slug)
        .await?
        .ok_or(AccessError::NotFound)
}

/// Issues a token for an agent (shown once; stored hashed).
pub async fn issue_token(
    store: &Store,
    tenant_id: &str,
    slug: &str,
    label: &str,
    expires_in_days: Option<i64>,
) -> Result<(AgentRow, SecretString), AccessError> {
    let row = store
        .agent_by_slug(tenant_id, slug)
        .await?
        .ok_or(AccessError::NotFound)?;
    let label = label.trim();
    if label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(AccessError::Invalid(
            "label must be at most 100 plain characters".into(),
        ));
    }
    if let Some(d) = expires_in_days {
        if !(1..=crate::servers::MAX_TOKEN_DAYS).contains(&d) {
            return Err(AccessError::Invalid(format!(
                "expires_in_days must be 1 to {}",
                crate::servers::MAX_TOKEN_DAYS
            )));
        }
    }
    let token = NewToken::generate(TokenKind::Agent);
    let expires_at = expires_in_days.map(|d| crate::store::now_micros() + d * 86_400_000_000);
    let label = if label.is_empty() {
        "agent token"
    } else {
        label
    };
    store
        .create_agent_token(tenant_id, &row.agent_id, &token.hash, label, expires_at)
        .await?;
    Ok((row, token.plaintext))
}

/// The agent's view for the API and console.
pub fn view(
    state: &crate::state::AppState,
    tenant_slug: &str,
    row: &AgentRow,
) -> serde_json::Value {
    let set = ToolSet::from_stored(&row.tool_set);
    serde_json::json!({
        "slug": row.slug,
        "name": row.name,
        "description": row.description,
        "owner": row.owner_email,
        "disabled": row.disabled_at.is_some(),
        "enabled": row.disabled_at.is_none() && row.owner_active,
        "owner_active": row.owner_active,
        "tool_set": set.entries(),
        "endpoint": format!("{}agents/{}", state.urls.tenant_gateway(tenant_slug), row.slug),
        "created_at": crate::tenants::format_time(row.created_at),
        "updated_at": crate::tenants::format_time(row.updated_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(server: &str, tools: &[&str]) -> ToolSetEntry {
        ToolSetEntry {
            server: server.into(),
            tools: tools.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn tool_sets_match_names_and_globs_per_server() {
        let set = ToolSet::parse(
            vec![
                entry("crm", &["search_*", "get_contact"]),
                entry("hr", &["lookup"]),
            ],
            None,
        )
        .expect("valid");
        assert!(set.allows("crm", "search_contacts"));
        assert!(set.allows("crm", "get_contact"));
        assert!(!set.allows("crm", "delete_contact"));
        assert!(set.allows("hr", "lookup"));
        assert!(!set.allows("hr", "search_people"), "globs are per server");
        assert!(!set.allows("fin", "lookup"));
    }

    #[test]
    fn tool_sets_refuse_bad_input_and_merge_duplicates() {
        let known = vec!["crm".to_owned()];
        assert!(ToolSet::parse(vec![entry("hr", &["x"])], Some(&known))
            .unwrap_err()
            .contains("no server"));
        assert!(ToolSet::parse(vec![entry("crm", &[])], None)
            .unwrap_err()
            .contains("lists no tools"));
        assert!(ToolSet::parse(vec![entry("crm", &["[unclosed"])], None).is_err());
        assert!(ToolSet::parse(vec![entry("Bad Slug", &["x"])], None).is_err());
        let set = ToolSet::parse(
            vec![entry("crm", &["a", "b"]), entry("crm", &["b", "c"])],
            None,
        )
        .expect("valid");
        assert_eq!(set.entries().len(), 1);
        assert_eq!(set.entries()[0].tools, vec!["a", "b", "c"]);
        assert_eq!(ToolSet::from_stored("not json").entries().len(), 0);
    }

    #[test]
    fn names_and_uris_are_namespaced_by_server() {
        assert_eq!(join_name("crm", "search"), "crm__search");
        assert_eq!(split_name("crm__search"), Some(("crm", "search")));
        assert_eq!(split_name("crm__a__b"), Some(("crm", "a__b")));
        assert_eq!(split_name("search"), None);
        assert_eq!(split_name("__x"), None);
        let uri = join_uri("crm", "file:///notes/a.txt");
        assert_eq!(uri, "portcullis://crm/file:///notes/a.txt");
        assert_eq!(split_uri(&uri), Some(("crm", "file:///notes/a.txt")));
        assert_eq!(split_uri("file:///x"), None);
    }

    #[test]
    fn a_tenant_agent_has_its_set_and_a_disabled_agent_nothing() {
        let policy = TenantPolicy::default();
        let mut agent = Agent {
            id: "a1".into(),
            slug: "bot".into(),
            name: "Bot".into(),
            owner: None,
            enabled: true,
            tools: ToolSet::parse(vec![entry("crm", &["search"])], None).expect("valid"),
        };
        assert!(agent.may_call(&policy, "crm", "search", Hints::default(), None));
        assert!(!agent.may_call(&policy, "crm", "delete", Hints::default(), None));
        agent.owner = Some(("u-gone".into(), "gone@example.com".into()));
        assert!(
            !agent.may_call(&policy, "crm", "search", Hints::default(), None),
            "an owner the policy does not know (deprovisioned) reaches nothing"
        );
        agent.owner = None;
        agent.enabled = false;
        assert!(!agent.may_call(&policy, "crm", "search", Hints::default(), None));
    }
}
