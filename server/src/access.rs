//! Access administration shared by the CLI, the JSON API and the console: registries and their
//! grants, groups, users' status, servers' tool catalogs, and the policy simulator ("can alice
//! call crm.delete_contact?", "who can call X?", "what can Y reach?").
//!
//! Every write validates first and changes nothing on a bad request; the store bumps the
//! `identity` counter so every replica recompiles the tenant's policy.

use crate::domain::{Email, RegistrySlug, ServerSlug};
use crate::policy::{self, Ask, GrantRules, Hints, Kind, Subject, TenantPolicy};
use crate::store::{CatalogTool, Store, StoreError};
use crate::tenants::format_time;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AccessError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AccessError::NotFound,
            StoreError::Conflict(what) => AccessError::Exists(what.to_owned()),
            other => AccessError::Store(other),
        }
    }
}

type Result<T> = std::result::Result<T, AccessError>;

/// A grant as callers write it: `subject` is `everyone`, `group:NAME` or `user:EMAIL`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    pub subject: String,
    #[serde(default)]
    pub rules: Vec<policy::Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRegistry {
    pub slug: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default)]
    pub grants: Vec<NewGrant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GrantView {
    pub id: String,
    /// `everyone`, `group:NAME` or `user:EMAIL`.
    pub subject: String,
    pub rules: Vec<policy::Rule>,
    /// Each rule in words.
    pub rules_text: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegistryView {
    pub slug: String,
    pub name: String,
    pub description: String,
    pub servers: Vec<String>,
    pub grants: Vec<GrantView>,
    pub created_at: String,
}

/// Parses a subject, creating a named group or a user by email if missing (so access can be
/// set up before anyone signs in; SSO and SCIM fill them in later).
pub async fn resolve_subject(store: &Store, tenant_id: &str, raw: &str) -> Result<Subject> {
    let raw = raw.trim();
    if raw == "everyone" {
        return Ok(Subject::Everyone);
    }
    if let Some(name) = raw.strip_prefix("group:") {
        let name = name.trim();
        if name.is_empty() || name.len() > 256 {
            return Err(AccessError::Invalid(
                "group:NAME needs a name of 1 to 256 characters".into(),
            ));
        }
        let group_id = store.ensure_group(tenant_id, name, "console").await?;
        return Ok(Subject::Group { group_id });
    }
    if let Some(email) = raw.strip_prefix("user:") {
        let email = Email::parse(email).map_err(|e| AccessError::Invalid(e.0))?;
        let user = store.ensure_user(tenant_id, &email).await?;
        return Ok(Subject::User {
            user_id: user.user_id,
        });
    }
    Err(AccessError::Invalid(format!(
        "grant subject {raw:?} must be everyone, group:NAME or user:EMAIL"
    )))
}

fn checked_rules(rules: Vec<policy::Rule>) -> Result<GrantRules> {
    let r = GrantRules { rules };
    r.validate().map_err(AccessError::Invalid)?;
    Ok(r)
}

/// Server slugs → ids, refusing unknown ones by name.
async fn server_ids(store: &Store, tenant_id: &str, slugs: &[String]) -> Result<Vec<String>> {
    let all = store.list_servers(tenant_id).await?;
    let mut ids = Vec::new();
    for s in slugs {
        let slug = ServerSlug::parse(s).map_err(|e| AccessError::Invalid(e.0))?;
        match all.iter().find(|r| r.slug == slug.as_str()) {
            Some(r) => ids.push(r.server_id.clone()),
            None => {
                return Err(AccessError::Invalid(format!(
                    "no server {s:?} in this tenant"
                )))
            }
        }
    }
    Ok(ids)
}

pub async fn create_registry(
    store: &Store,
    tenant_id: &str,
    new: NewRegistry,
) -> Result<RegistryView> {
    let slug = RegistrySlug::parse(&new.slug).map_err(|e| AccessError::Invalid(e.0))?;
    let name = new.name.unwrap_or_else(|| slug.as_str().to_owned());
    if name.trim().is_empty() || name.len() > 200 {
        return Err(AccessError::Invalid(
            "name must be 1 to 200 characters".into(),
        ));
    }
    let description = new.description.unwrap_or_default();
    if description.len() > 2000 {
        return Err(AccessError::Invalid(
            "description is limited to 2000 characters".into(),
        ));
    }
    let ids = server_ids(store, tenant_id, &new.servers).await?;
    // Validate every grant's rules before any subject is created.
    let mut rules = Vec::new();
    for g in &new.grants {
        rules.push(checked_rules(g.rules.clone())?);
        if !(g.subject.trim() == "everyone"
            || g.subject.trim().starts_with("group:")
            || g.subject.trim().starts_with("user:"))
        {
            return Err(AccessError::Invalid(format!(
                "grant subject {:?} must be everyone, group:NAME or user:EMAIL",
                g.subject
            )));
        }
    }
    if store
        .list_registries(tenant_id)
        .await?
        .iter()
        .any(|r| r.slug == slug.as_str())
    {
        return Err(AccessError::Exists(format!("registry {:?}", slug.as_str())));
    }
    let mut grants = Vec::new();
    for (g, r) in new.grants.iter().zip(rules) {
        let subject = resolve_subject(store, tenant_id, &g.subject).await?;
        if grants.iter().any(|(s, _)| *s == subject) {
            return Err(AccessError::Invalid(format!(
                "subject {:?} is granted twice",
                g.subject
            )));
        }
        grants.push((subject, r));
    }
    store
        .create_registry(
            tenant_id,
            slug.as_str(),
            name.trim(),
            &description,
            &ids,
            &grants,
        )
        .await?;
    registry(store, tenant_id, slug.as_str()).await
}

/// One cell of the server × subject matrix (console and review pack): what `subject`
/// (`everyone`, `group:…`, `user:…`) may call on `server`, by registry: `all (crm-tools)`, the
/// rules in words, or `—`.
pub fn matrix_cell(registries: &[RegistryView], server: &str, subject: &str) -> String {
    let mut parts = Vec::new();
    for r in registries
        .iter()
        .filter(|r| r.servers.iter().any(|s| s == server))
    {
        for g in r.grants.iter().filter(|g| g.subject == subject) {
            if g.rules_text.is_empty() {
                parts.push(format!("all ({})", r.slug));
            } else {
                parts.push(format!("{} ({})", g.rules_text.join("; "), r.slug));
            }
        }
    }
    if parts.is_empty() {
        "—".to_owned()
    } else {
        parts.join(" · ")
    }
}

pub async fn list_registries(store: &Store, tenant_id: &str) -> Result<Vec<RegistryView>> {
    let rows = store.list_registries(tenant_id).await?;
    let servers = store.registry_servers(tenant_id).await?;
    let grants = store.list_grants(tenant_id).await?;
    Ok(rows
        .into_iter()
        .map(|r| RegistryView {
            servers: servers
                .iter()
                .filter(|(rid, _)| *rid == r.registry_id)
                .map(|(_, s)| s.clone())
                .collect(),
            grants: grants
                .iter()
                .filter(|g| g.registry_id == r.registry_id)
                .map(|g| {
                    let rules: GrantRules = serde_json::from_str(&g.rules).unwrap_or_default();
                    let subject = match Subject::parse_key(&g.subject) {
                        Some(Subject::Everyone) | None => "everyone".to_owned(),
                        Some(Subject::Group { .. }) => {
                            format!("group:{}", g.subject_name.clone().unwrap_or_default())
                        }
                        Some(Subject::User { .. }) => {
                            format!("user:{}", g.subject_name.clone().unwrap_or_default())
                        }
                    };
                    GrantView {
                        id: g.grant_id.clone(),
                        subject,
                        rules_text: rules.rules.iter().map(policy::describe_rule).collect(),
                        rules: rules.rules,
                    }
                })
                .collect(),
            slug: r.slug,
            name: r.name,
            description: r.description,
            created_at: format_time(r.created_at),
        })
        .collect())
}

pub async fn registry(store: &Store, tenant_id: &str, slug: &str) -> Result<RegistryView> {
    list_registries(store, tenant_id)
        .await?
        .into_iter()
        .find(|r| r.slug == slug)
        .ok_or(AccessError::NotFound)
}

/// A change to a registry: any field left out stays as it is; `servers` replaces the list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryChange {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub servers: Option<Vec<String>>,
}

pub async fn update_registry(
    store: &Store,
    tenant_id: &str,
    slug: &str,
    change: RegistryChange,
) -> Result<RegistryView> {
    registry(store, tenant_id, slug).await?;
    let name = change.name.as_deref().map(str::trim);
    if name.is_some_and(|n| n.is_empty() || n.len() > 200) {
        return Err(AccessError::Invalid(
            "name must be 1 to 200 characters".into(),
        ));
    }
    if change.description.as_ref().is_some_and(|d| d.len() > 2000) {
        return Err(AccessError::Invalid(
            "description is limited to 2000 characters".into(),
        ));
    }
    let ids = match &change.servers {
        Some(slugs) => Some(server_ids(store, tenant_id, slugs).await?),
        None => None,
    };
    store
        .update_registry(
            tenant_id,
            slug,
            name,
            change.description.as_deref(),
            ids.as_deref(),
        )
        .await?;
    registry(store, tenant_id, slug).await
}

pub async fn delete_registry(store: &Store, tenant_id: &str, slug: &str) -> Result<()> {
    store.delete_registry(tenant_id, slug).await?;
    Ok(())
}

pub async fn add_grant(
    store: &Store,
    tenant_id: &str,
    registry_slug: &str,
    g: NewGrant,
) -> Result<GrantView> {
    let rules = checked_rules(g.rules)?;
    registry(store, tenant_id, registry_slug).await?;
    let subject = resolve_subject(store, tenant_id, &g.subject).await?;
    let id = store
        .add_grant(tenant_id, registry_slug, &subject, &rules)
        .await?;
    grant(store, tenant_id, registry_slug, &id).await
}

async fn grant(store: &Store, tenant_id: &str, registry_slug: &str, id: &str) -> Result<GrantView> {
    registry(store, tenant_id, registry_slug)
        .await?
        .grants
        .into_iter()
        .find(|g| g.id == id)
        .ok_or(AccessError::NotFound)
}

pub async fn set_grant_rules(
    store: &Store,
    tenant_id: &str,
    registry_slug: &str,
    grant_id: &str,
    rules: Vec<policy::Rule>,
) -> Result<GrantView> {
    let rules = checked_rules(rules)?;
    grant(store, tenant_id, registry_slug, grant_id).await?;
    store.set_grant_rules(tenant_id, grant_id, &rules).await?;
    grant(store, tenant_id, registry_slug, grant_id).await
}

pub async fn delete_grant(
    store: &Store,
    tenant_id: &str,
    registry_slug: &str,
    grant_id: &str,
) -> Result<()> {
    grant(store, tenant_id, registry_slug, grant_id).await?;
    store.delete_grant(tenant_id, grant_id).await?;
    Ok(())
}

// ---- users and groups -----------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub display_name: Option<String>,
    pub admin: bool,
    pub active: bool,
    /// Where the user came from: local, scim or sso.
    pub source: String,
    pub groups: Vec<String>,
    pub last_seen_at: Option<String>,
}

pub async fn list_users(store: &Store, tenant_id: &str) -> Result<Vec<UserView>> {
    let users = store.list_users(tenant_id).await?;
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for (u, g) in store.memberships(tenant_id).await? {
        groups.entry(u).or_default().push(g);
    }
    Ok(users
        .into_iter()
        .map(|u| UserView {
            groups: groups.remove(&u.user_id).unwrap_or_default(),
            id: u.user_id,
            email: u.email,
            display_name: u.display_name,
            admin: u.is_admin,
            active: u.active,
            source: u.source,
            last_seen_at: u.last_seen_at.map(format_time),
        })
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub id: String,
    pub name: String,
    pub source: String,
    pub members: i64,
}

pub async fn list_groups(store: &Store, tenant_id: &str) -> Result<Vec<GroupView>> {
    Ok(store
        .list_groups(tenant_id)
        .await?
        .into_iter()
        .map(|g| GroupView {
            id: g.group_id,
            name: g.name,
            source: g.source,
            members: g.members,
        })
        .collect())
}

/// Records a server's current tools (from a test connection) as its reviewed catalog.
pub async fn record_catalog(
    store: &Store,
    tenant_id: &str,
    slug: &str,
    tools: &[serde_json::Value],
) -> Result<usize> {
    let slug = ServerSlug::parse(slug).map_err(|_| AccessError::NotFound)?;
    let row = store
        .server_by_slug(tenant_id, &slug)
        .await?
        .ok_or(AccessError::NotFound)?;
    let tools: Vec<CatalogTool> = tools
        .iter()
        .filter_map(|t| {
            Some(CatalogTool {
                name: t.get("name")?.as_str()?.to_owned(),
                description: t
                    .get("description")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .chars()
                    .take(2000)
                    .collect(),
                annotations: t
                    .get("annotations")
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({}))
                    .to_string(),
                definition: Some(crate::pins::canonical_text(&crate::pins::definition(t))),
                digest: Some(crate::pins::tool_digest(t)),
            })
        })
        .collect();
    store
        .record_catalog(tenant_id, &row.server_id, &tools)
        .await?;
    Ok(tools.len())
}

/// A discovered tool in the shape `tools/list` gives it: its pinned definition (name, title,
/// description, schemas, annotations).
pub fn tool_value(t: &crate::gateway::discovery::DiscoveredTool) -> serde_json::Value {
    t.definition.clone()
}

// ---- the simulator ------------------------------------------------------------------------

/// A question for the simulator: can `user` use `name` (a tool, prompt or resource) on `server`?
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    pub user: String,
    pub server: String,
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    /// The call's arguments; without them, the question is "could any call be allowed?".
    #[serde(default)]
    pub arguments: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExplainView {
    pub user: String,
    pub server: String,
    pub kind: Kind,
    pub name: String,
    #[serde(flatten)]
    pub explanation: policy::Explanation,
}

fn kind_and_name(q: &ExplainQuery) -> Result<(Kind, String)> {
    match (&q.tool, &q.prompt, &q.resource) {
        (Some(t), None, None) => Ok((Kind::Tool, t.clone())),
        (None, Some(p), None) => Ok((Kind::Prompt, p.clone())),
        (None, None, Some(r)) => Ok((Kind::Resource, r.clone())),
        _ => Err(AccessError::Invalid(
            "ask about exactly one of tool, prompt or resource".into(),
        )),
    }
}

/// Tool hints the gateway saw in `tools/list` answers (server, tool) → hints; the CLI has none
/// and decides with the reviewed catalog alone.
pub type ObservedHints<'a> = &'a dyn Fn(&str, &str) -> Option<Hints>;

pub fn explain(
    p: &TenantPolicy,
    q: &ExplainQuery,
    observed: ObservedHints<'_>,
) -> Result<ExplainView> {
    let (kind, name) = kind_and_name(q)?;
    if q.arguments.as_ref().is_some_and(|a| !a.is_object()) {
        return Err(AccessError::Invalid(
            "arguments must be a JSON object".into(),
        ));
    }
    let user_id = p.user_by_email(&q.user).unwrap_or("").to_owned();
    let hints = if kind == Kind::Tool {
        p.hints(&q.server, &name, observed(&q.server, &name))
    } else {
        Hints::default()
    };
    let ask = Ask {
        kind,
        name: &name,
        hints,
        arguments: q.arguments.as_ref(),
    };
    let v = p.decide(&user_id, &q.server, &ask);
    let mut explanation = p.explain(&user_id, &q.server, &ask, v);
    if user_id.is_empty() {
        explanation.reason = format!("no user {} in this tenant", q.user);
    }
    Ok(ExplainView {
        user: q.user.clone(),
        server: q.server.clone(),
        kind,
        name,
        explanation,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct WhoCan {
    pub email: String,
    pub allowed: bool,
    pub reason: String,
}

/// Every active user and whether they could use `name` on `server` (some call of it).
pub fn who_can(
    p: &TenantPolicy,
    server: &str,
    kind: Kind,
    name: &str,
    observed: ObservedHints<'_>,
) -> Vec<WhoCan> {
    let hints = if kind == Kind::Tool {
        p.hints(server, name, observed(server, name))
    } else {
        Hints::default()
    };
    let ask = Ask {
        kind,
        name,
        hints,
        arguments: None,
    };
    p.active_users()
        .into_iter()
        .map(|(id, email)| {
            let v = p.decide(&id, server, &ask);
            WhoCan {
                email,
                allowed: v.allowed,
                reason: p.explain(&id, server, &ask, v).reason,
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Reach {
    pub server: String,
    /// Catalog tools the user may call (some call of).
    pub tools: Vec<String>,
    /// Catalog tools the user may not call.
    pub denied_tools: Vec<String>,
}

/// Splits tools (name, hints) into those `user_id` may use on `server` (some call of them) and
/// those they may not.
pub fn split_tools(
    p: &TenantPolicy,
    user_id: &str,
    server: &str,
    tools: impl IntoIterator<Item = (String, Hints)>,
) -> (Vec<String>, Vec<String>) {
    let (mut allowed, mut denied) = (Vec::new(), Vec::new());
    for (name, hints) in tools {
        let ask = Ask {
            kind: Kind::Tool,
            name: &name,
            hints,
            arguments: None,
        };
        if p.decide(user_id, server, &ask).allowed {
            allowed.push(name);
        } else {
            denied.push(name);
        }
    }
    (allowed, denied)
}

/// The servers a user reaches and, for each, which of its catalog tools they may use.
pub fn reach(p: &TenantPolicy, user_email: &str) -> Vec<Reach> {
    let Some(user_id) = p.user_by_email(user_email) else {
        return Vec::new();
    };
    p.servers_of(user_id)
        .into_iter()
        .map(|server| {
            let (tools, denied_tools) = split_tools(p, user_id, &server, p.catalog(&server));
            Reach {
                server,
                tools,
                denied_tools,
            }
        })
        .collect()
}
