//! The MCP gateway endpoint `/mcp/{server}` on tenant hosts (first slice: Streamable HTTP
//! upstreams over plain http, proxied faithfully; see README.md in this directory for what the
//! full gateway adds).
//!
//! The hot path touches memory only: servers and gateway tokens are compiled per tenant into a
//! snapshot (`Directory`) that the change watcher rebuilds when the `servers`, `api_tokens` or
//! `tenants` counters move. A missing snapshot, tenant, server or token means no access.
//! No client credential is ever sent upstream.

pub mod agent;
pub mod approvals;
pub mod discovery;
pub mod limits;
pub mod link;
pub mod modern;
pub mod policy;
pub mod record;
pub mod session;
pub mod sse;
pub mod stdio;
pub mod upstream;

/// Locks a mutex; a panic elsewhere while holding it does not make the data unusable here.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

use crate::domain::{ServerTransport, TokenHash, TokenKind};
use crate::state::AppState;
use crate::store::{now_micros, Store};
use crate::tenancy::{Host, Tenancy};
use arc_swap::ArcSwap;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long an upstream may take to start answering (a stream may then run as long as it
/// likes).
const UPSTREAM_HEADERS_TIMEOUT: Duration = Duration::from_secs(60);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/mcp/{server}", any(endpoint))
        .route("/mcp/agents/{agent}", any(agent::endpoint))
}

/// The client the gateway reaches upstreams with (one connection pool): rustls with the
/// system's CA store, plus the certificates of `ca_file` (PEM) for a private CA; redirects are
/// not followed (an upstream cannot send the gateway elsewhere).
pub fn upstream_client(ca_file: Option<&std::path::Path>) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no PEM certificate in it", path.display()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| e.to_string())
}

/// Who is calling, from a gateway token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub email: String,
    expires_at: Option<i64>,
    /// The credential's name (the audit record's agent).
    pub agent: String,
    /// The servers a personal access token is limited to (`None`: all the user reaches); an
    /// OAuth access token's one audience.
    pub servers: Option<Arc<[String]>>,
    /// An OAuth access token (the agent is its client's name).
    pub oauth: bool,
}

#[derive(Debug, Default)]
struct TenantGateway {
    servers: HashMap<String, Arc<ServerTransport>>,
    tokens: HashMap<String, Caller>,
    /// Who may use which server, tool, resource and prompt (compiled from registries, grants
    /// and groups).
    policy: Arc<crate::policy::TenantPolicy>,
    /// How tool arguments are recorded (the tenant's audit settings).
    arguments: record::Arguments,
    /// Rate limits and quotas.
    limits: Arc<[crate::store::LimitRow]>,
    /// Which tool calls wait for an approver.
    approvals: Arc<[crate::store::ApprovalRule]>,
    /// The credential injected into requests to a server (from the vault), by slug.
    credentials: HashMap<String, Arc<Credential>>,
    /// The credential given to a stdio server's process, by slug.
    env_secrets: HashMap<String, Arc<EnvSecret>>,
    /// Servers that take each user's own credential, by slug.
    per_user: HashMap<String, Arc<crate::connections::PerUser>>,
    /// Data filter policies, by server slug ('*': the tenant's default); active ones only.
    filters: HashMap<String, Arc<crate::filters::Policy>>,
    /// External filter hooks, by server slug ('*': every server), in order.
    hooks: HashMap<String, Vec<Arc<crate::filters::hooks::Hook>>>,
    /// Agents by slug, and their tokens by hash.
    agents: HashMap<String, Arc<crate::agents::Agent>>,
    agent_tokens: HashMap<String, agent::AgentCredential>,
}

/// An upstream credential as the gateway injects it: one request header (marked sensitive, so
/// it is never printed in debug output).
#[derive(Debug, Clone)]
pub struct Credential {
    pub header: HeaderName,
    pub value: HeaderValue,
    /// Derived from the header and value (the same on every replica): a changed credential
    /// means a new upstream connection for link transports (SSE), and sessions on the old one
    /// end.
    pub version: i64,
}

impl Credential {
    pub fn new(header: HeaderName, value: HeaderValue) -> Self {
        let version = secret_version(header.as_str(), value.as_bytes());
        Self {
            header,
            value,
            version,
        }
    }
}

/// A version number for a secret: a hash of its name and value, never 0 (0: none).
fn secret_version(name: &str, value: &[u8]) -> i64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(value);
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b) | 1
}

/// The version of what a link (a stdio process, an SSE connection) is started with: its
/// environment credential or its header credential.
pub(crate) fn link_secret_version(env: Option<&EnvSecret>, header: Option<&Credential>) -> i64 {
    env.map(|e| e.version)
        .or(header.map(|c| c.version))
        .unwrap_or(0)
}

/// An upstream credential given to a stdio server as an environment variable.
pub struct EnvSecret {
    pub name: String,
    pub value: zeroize::Zeroizing<String>,
    /// Derived from the name and value (the same on every replica): a changed credential
    /// means a new process, and sessions on the old one end.
    pub version: i64,
}

impl std::fmt::Debug for EnvSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvSecret")
            .field("name", &self.name)
            .finish()
    }
}

impl EnvSecret {
    pub fn new(name: String, value: zeroize::Zeroizing<String>) -> Self {
        let version = secret_version(&name, value.as_bytes());
        Self {
            name,
            value,
            version,
        }
    }
}

/// The change counters a snapshot was built at (servers, tokens, tenants, identity, audit,
/// limits, approvals, agents).
type ChangeVersions = (i64, i64, i64, i64, i64, i64, i64, i64);

/// The gateway's snapshot of every tenant's servers and tokens.
#[derive(Debug)]
pub struct Gateway {
    tenants: ArcSwap<HashMap<String, TenantGateway>>,
    version: std::sync::Mutex<Option<ChangeVersions>>,
    /// Tool annotations seen in list responses (for tools outside a reviewed catalog).
    observed: Arc<policy::Observed>,
    /// Compares listed tools with their pins and queues what changed (`crate::pins`).
    pub pins: Arc<crate::pins::Watch>,
    /// Categories of data the filters found in answers, per server (`filters::inventory`).
    pub inventory: Arc<crate::filters::inventory::Inventory>,
    /// Who used the gateway since the last flush: (tenant, user) → when (µs).
    seen: std::sync::Mutex<HashMap<(String, String), i64>>,
    /// Which tokens were used since the last flush: (tenant, token hash) → when (µs).
    tokens_seen: std::sync::Mutex<HashMap<(String, String), i64>>,
    client: reqwest::Client,
    /// Sessions and upstream links of stdio and SSE servers.
    pub hub: session::Hub,
    /// Who opened each session of a Streamable HTTP upstream.
    http_sessions: HttpSessions,
    /// The MCP client (clientInfo) each session was opened with, by session id.
    clients: std::sync::Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// Rate-limit counters (this replica's).
    limiter: limits::Limiter,
    /// Upstream sessions the gateway holds for agents.
    upstreams: upstream::Upstreams,
    /// Decrypts upstream credentials for the snapshot.
    vault: Arc<crate::vault::Vault>,
    /// Sessions (id, user) whose client declared elicitation: approvals ask them.
    elicitors: std::sync::Mutex<HashMap<(String, String), std::time::Instant>>,
    /// Sessions (id, user) whose client declared URL-mode elicitation: told where to connect
    /// an account that way.
    url_elicitors: std::sync::Mutex<HashMap<(String, String), std::time::Instant>>,
}

/// The user an upstream (Streamable HTTP) session was opened by, through which server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionOwner {
    tenant_id: String,
    user_id: String,
    server: String,
}

/// Owners of the Streamable HTTP upstreams' sessions, by session id (in memory, per replica).
#[derive(Debug, Default)]
struct HttpSessions(std::sync::Mutex<HashMap<String, (SessionOwner, std::time::Instant)>>);

impl HttpSessions {
    /// Whether `owner` may use session `sid` (and marks it used).
    fn check(&self, sid: &str, owner: &SessionOwner) -> bool {
        match lock(&self.0).get_mut(sid) {
            Some((o, used)) if o == owner => {
                *used = std::time::Instant::now();
                true
            }
            _ => false,
        }
    }

    /// A session id the upstream just gave `owner`; true when it is new here. A user holds at
    /// most `MAX_SESSIONS_PER_USER` per server: beyond it, their least recently used one is
    /// forgotten.
    fn record(&self, sid: &str, owner: SessionOwner) -> bool {
        let mut map = lock(&self.0);
        if map.contains_key(sid) {
            return false;
        }
        let theirs: Vec<(String, std::time::Instant)> = map
            .iter()
            .filter(|(_, (o, _))| *o == owner)
            .map(|(k, (_, t))| (k.clone(), *t))
            .collect();
        if theirs.len() >= session::MAX_SESSIONS_PER_USER {
            if let Some((oldest, _)) = theirs.iter().min_by_key(|(_, t)| *t) {
                map.remove(oldest);
            }
        }
        map.insert(sid.to_owned(), (owner, std::time::Instant::now()));
        true
    }

    fn forget(&self, sid: &str) {
        lock(&self.0).remove(sid);
    }

    /// Forgets sessions unused for an hour, and those whose owner no longer may use them.
    fn sweep(&self, allowed: impl Fn(&SessionOwner) -> bool) {
        lock(&self.0).retain(|_, (owner, used)| {
            used.elapsed() < Duration::from_secs(3600) && allowed(owner)
        });
    }
}

/// How a session id is stored: its SHA-256 (hex).
fn session_hash(sid: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(sid.as_bytes()))
}

/// Whether the database says `user_id` opened session `sid` through `server` (and less than
/// a day ago): `Some` with the protocol version stored for a session of the gateway's own
/// (`None` inside for a Streamable HTTP upstream's). A database failure is a no (fail closed:
/// the client initializes again).
async fn stored_session(
    state: &AppState,
    tenant_id: &str,
    user_id: &str,
    server: &str,
    sid: &str,
) -> Option<Option<String>> {
    match state
        .store
        .gateway_session_owner(tenant_id, &session_hash(sid))
        .await
    {
        Ok(Some((u, s, version))) if u == user_id && s == server => Some(version),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "a session's owner could not be read");
            None
        }
    }
}

/// Takes on a session this replica does not know when the database says `owner` opened it
/// (through the same server).
async fn adopt_session(state: &AppState, sid: &str, owner: &SessionOwner) -> bool {
    let known = stored_session(state, &owner.tenant_id, &owner.user_id, &owner.server, sid)
        .await
        .is_some();
    if known {
        state.gateway.http_sessions.record(sid, owner.clone());
    }
    known
}

/// Carries on a session of a link-backed server (stdio, legacy SSE) that another replica
/// opened, when the database says this request's user opened it through this server. A
/// database or upstream failure leaves it unknown here (the client gets 404 and initializes
/// again).
async fn adopt_hub_session(state: &AppState, t: &session::Target<'_>, sid: &str) {
    let Some(Some(version)) = stored_session(state, t.tenant_id, t.user_id, t.server, sid).await
    else {
        return;
    };
    let gw = &state.gateway;
    match gw.hub.adopt(t, &gw.client, sid, &version).await {
        Ok(()) => {
            tracing::info!(server.slug = %t.server, "carried on a session another replica opened")
        }
        Err(e) => {
            tracing::warn!(server.slug = %t.server, error = %e, "a session another replica opened could not be carried on")
        }
    }
}

impl Gateway {
    pub async fn load(
        store: &Store,
        tenancy: &Tenancy,
        client: reqwest::Client,
        options: session::HubOptions,
        vault: Arc<crate::vault::Vault>,
    ) -> crate::store::Result<Self> {
        let g = Self {
            hub: session::Hub::new(options),
            http_sessions: HttpSessions::default(),
            tenants: ArcSwap::from_pointee(HashMap::new()),
            version: std::sync::Mutex::new(None),
            observed: Arc::default(),
            pins: Arc::default(),
            inventory: Arc::default(),
            seen: std::sync::Mutex::default(),
            tokens_seen: std::sync::Mutex::default(),
            clients: std::sync::Mutex::default(),
            limiter: limits::Limiter::default(),
            upstreams: upstream::Upstreams::default(),
            elicitors: std::sync::Mutex::default(),
            url_elicitors: std::sync::Mutex::default(),
            vault,
            client,
        };
        g.refresh(store, tenancy).await?;
        Ok(g)
    }

    /// Makes the next `refresh` rebuild the snapshot whatever the counters say.
    pub fn invalidate(&self) {
        if let Ok(mut v) = self.version.lock() {
            *v = None;
        }
    }

    /// Rebuilds the snapshot when servers, tokens, tenants or identity data (users, groups,
    /// registries, grants) changed since the last build, then ends the sessions of users who
    /// lost access.
    pub async fn refresh(&self, store: &Store, tenancy: &Tenancy) -> crate::store::Result<bool> {
        let version = (
            store.change_version("servers").await?,
            store.change_version("api_tokens").await?,
            store.change_version("tenants").await?,
            store.change_version("identity").await?,
            store.change_version("audit").await?,
            store.change_version("limits").await?,
            store.change_version("approvals").await?,
            store.change_version("agents").await?,
        );
        if self
            .version
            .lock()
            .map(|v| *v == Some(version))
            .unwrap_or(false)
        {
            return Ok(false);
        }
        let mut tenants = HashMap::new();
        for tenant_id in tenancy.tenant_ids() {
            let mut tg = TenantGateway::default();
            for row in store.list_servers(&tenant_id).await? {
                match row.upstream() {
                    Ok(t) => {
                        match crate::servers::credential(&self.vault, store, &tenant_id, &row).await
                        {
                            Ok(Some(crate::servers::Injected::Header(c))) => {
                                tg.credentials.insert(row.slug.clone(), Arc::new(c));
                            }
                            Ok(Some(crate::servers::Injected::Env(e))) => {
                                tg.env_secrets.insert(row.slug.clone(), Arc::new(e));
                            }
                            Ok(Some(crate::servers::Injected::PerUser(mode))) => {
                                let ServerTransport::StreamableHttp { url } = &t else {
                                    tracing::error!(tenant.id = %tenant_id, server.slug = %row.slug,
                                        "per-user credentials need a Streamable HTTP server; the server is unreachable");
                                    continue;
                                };
                                tg.per_user.insert(
                                    row.slug.clone(),
                                    Arc::new(crate::connections::PerUser {
                                        server_id: row.server_id.clone(),
                                        slug: row.slug.clone(),
                                        url: url.as_str().to_owned(),
                                        mode,
                                    }),
                                );
                            }
                            Ok(None) => {}
                            // Fail closed: a server whose credential cannot be read is
                            // unreachable, not reached without it.
                            Err(e) => {
                                tracing::error!(tenant.id = %tenant_id, server.slug = %row.slug, error = %e,
                                    "the server's credential cannot be read from the vault; the server is unreachable");
                                continue;
                            }
                        }
                        tg.servers.insert(row.slug.clone(), Arc::new(t));
                    }
                    Err(e) => {
                        tracing::error!(tenant.id = %tenant_id, server.slug = %row.slug, error = %e,
                        "stored server settings do not parse; the server is unreachable")
                    }
                }
            }
            for (slug, settings) in store.filter_policies(&tenant_id).await? {
                match serde_json::from_str::<crate::filters::Policy>(&settings) {
                    Ok(p) => {
                        tg.filters.insert(slug, Arc::new(p));
                    }
                    // Fail closed: a policy that does not parse blocks everything it covers.
                    Err(e) => {
                        tracing::error!(tenant.id = %tenant_id, server.slug = %slug, error = %e,
                            "a stored filter policy does not parse; answers it covers are blocked");
                        tg.filters.insert(
                            slug,
                            Arc::new(crate::filters::Policy {
                                pii: crate::filters::Action::Block,
                                secrets: crate::filters::Action::Block,
                                ..Default::default()
                            }),
                        );
                    }
                }
            }
            for h in store.filter_hooks(&tenant_id).await? {
                let secret = match self
                    .vault
                    .get(
                        store,
                        &tenant_id,
                        crate::filters::hooks::secret_slot(&h.hook_id),
                    )
                    .await
                {
                    Ok(Some(s)) => s,
                    // The hook stays: without its secret its requests are unsigned, the
                    // receiver refuses them, and a closed hook blocks (fail closed).
                    Ok(None) | Err(_) => {
                        tracing::error!(tenant.id = %tenant_id, hook.id = %h.hook_id,
                            "a filter hook's secret cannot be read from the vault");
                        zeroize::Zeroizing::new(String::new())
                    }
                };
                let Ok(url) = url::Url::parse(&h.url) else {
                    tracing::error!(tenant.id = %tenant_id, hook.id = %h.hook_id, "a stored hook URL does not parse");
                    continue;
                };
                tg.hooks
                    .entry(h.server_slug.clone())
                    .or_default()
                    .push(Arc::new(crate::filters::hooks::Hook {
                        id: h.hook_id,
                        scope: h.server_slug,
                        url,
                        timeout: Duration::from_millis(h.timeout_ms.clamp(100, 10_000) as u64),
                        fail_closed: h.fail_mode != "open",
                        secret,
                    }));
            }
            for t in store.list_live_tokens(&tenant_id).await? {
                tg.tokens.insert(
                    t.token_hash,
                    Caller {
                        user_id: t.user_id,
                        email: t.email,
                        expires_at: t.expires_at,
                        agent: t.label,
                        servers: t
                            .servers
                            .as_deref()
                            .and_then(|j| serde_json::from_str::<Vec<String>>(j).ok())
                            .map(Arc::from),
                        oauth: false,
                    },
                );
            }
            for t in store.list_live_access_tokens(&tenant_id).await? {
                tg.tokens.insert(
                    t.token_hash,
                    Caller {
                        user_id: t.user_id,
                        email: t.email,
                        expires_at: Some(t.expires_at),
                        agent: t.client_name,
                        servers: Some(Arc::from(vec![t.server])),
                        oauth: true,
                    },
                );
            }
            tg.policy = Arc::new(crate::policy::TenantPolicy::compile(
                store.policy_inputs(&tenant_id).await?,
            ));
            tg.arguments =
                record::Arguments::parse(&store.audit_settings(&tenant_id).await?.arguments);
            tg.limits = Arc::from(store.list_limits(&tenant_id).await?);
            tg.approvals = Arc::from(store.list_approval_rules(&tenant_id).await?);
            for row in store.list_agents(&tenant_id).await? {
                tg.agents.insert(
                    row.slug.clone(),
                    Arc::new(crate::agents::Agent::from_row(&row)),
                );
            }
            for t in store.list_live_agent_tokens(&tenant_id).await? {
                tg.agent_tokens.insert(
                    t.token_hash,
                    agent::AgentCredential {
                        slug: t.slug,
                        label: t.label,
                        expires_at: t.expires_at,
                    },
                );
            }
            tenants.insert(tenant_id, tg);
        }
        self.tenants.store(Arc::new(tenants));
        if let Ok(mut v) = self.version.lock() {
            *v = Some(version);
        }
        self.sweep();
        Ok(true)
    }

    /// Shares this replica's rate-limit counts with the others (once a second, from the
    /// janitor).
    pub async fn sync_limits(&self, store: &Store) {
        let tenants: Vec<String> = self
            .tenants
            .load()
            .iter()
            .filter(|(_, t)| {
                t.limits
                    .iter()
                    .any(|l| l.requests_per_minute.is_some() || l.per_day.is_some())
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !tenants.is_empty() {
            self.limiter.sync(store, &tenants, now_micros()).await;
        }
    }

    /// The upstream HTTP client (shared connection pool).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The credential the gateway injects into requests to server `slug`, if it has one.
    pub fn credential(&self, tenant_id: &str, slug: &str) -> Option<Arc<Credential>> {
        self.tenants
            .load()
            .get(tenant_id)?
            .credentials
            .get(slug)
            .cloned()
    }

    /// Server `slug`'s per-user credential setting, if it takes each user's own.
    pub fn per_user(
        &self,
        tenant_id: &str,
        slug: &str,
    ) -> Option<Arc<crate::connections::PerUser>> {
        self.tenants
            .load()
            .get(tenant_id)?
            .per_user
            .get(slug)
            .cloned()
    }

    /// The data filter for answers of server `slug`: its own policy, else the tenant's
    /// default; `None` when nothing is filtered.
    pub fn filter_policy(
        &self,
        tenant_id: &str,
        slug: &str,
    ) -> Option<Arc<crate::filters::Policy>> {
        let tenants = self.tenants.load();
        let tg = tenants.get(tenant_id)?;
        tg.filters
            .get(slug)
            .or_else(|| tg.filters.get("*"))
            .filter(|p| p.active())
            .cloned()
    }

    /// The filter hooks that see a server's answers: its own, then the tenant's ('*').
    pub fn filter_hooks(
        &self,
        tenant_id: &str,
        slug: &str,
    ) -> Vec<Arc<crate::filters::hooks::Hook>> {
        let tenants = self.tenants.load();
        let Some(tg) = tenants.get(tenant_id) else {
            return Vec::new();
        };
        tg.hooks
            .get(slug)
            .into_iter()
            .chain(tg.hooks.get("*"))
            .flatten()
            .cloned()
            .collect()
    }

    /// Whether a session's client declared URL-mode elicitation.
    pub(crate) fn url_elicits(&self, session_id: &str, user_id: &str) -> bool {
        lock(&self.url_elicitors).contains_key(&(session_id.to_owned(), user_id.to_owned()))
    }

    /// The environment credential of stdio server `slug`, if it has one.
    pub fn env_secret(&self, tenant_id: &str, slug: &str) -> Option<Arc<EnvSecret>> {
        self.tenants
            .load()
            .get(tenant_id)?
            .env_secrets
            .get(slug)
            .cloned()
    }

    /// The server `slug` of a tenant as the snapshot has it now.
    pub fn server(&self, tenant_id: &str, slug: &str) -> Option<Arc<ServerTransport>> {
        self.tenants
            .load()
            .get(tenant_id)?
            .servers
            .get(slug)
            .cloned()
    }

    /// The server `slug` of a tenant if `user_id` (active) reaches it now.
    fn server_for(
        &self,
        tenant_id: &str,
        user_id: &str,
        slug: &str,
    ) -> Option<Arc<ServerTransport>> {
        let snapshot = self.tenants.load();
        let tg = snapshot.get(tenant_id)?;
        if !tg.policy.reaches(user_id, slug) {
            return None;
        }
        tg.servers.get(slug).cloned()
    }

    /// Hints this replica saw for a tool in `tools/list` answers (for the simulator).
    pub fn observed_hints(
        &self,
        tenant_id: &str,
        server: &str,
        tool: &str,
    ) -> Option<crate::policy::Hints> {
        self.observed.get(tenant_id, server, tool)
    }

    /// The users seen since the last call, by tenant: (user id, when).
    pub fn take_seen(&self) -> HashMap<String, Vec<(String, i64)>> {
        let seen = std::mem::take(&mut *lock(&self.seen));
        let mut out: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for ((tenant, user), at) in seen {
            out.entry(tenant).or_default().push((user, at));
        }
        out
    }

    /// The tokens used since the last call, by tenant: (token hash, when).
    pub fn take_tokens_seen(&self) -> HashMap<String, Vec<(String, i64)>> {
        let seen = std::mem::take(&mut *lock(&self.tokens_seen));
        let mut out: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for ((tenant, hash), at) in seen {
            out.entry(tenant).or_default().push((hash, at));
        }
        out
    }

    /// Tool names this replica saw in a server's `tools/list` answers (for the portal).
    pub fn observed_tools(&self, tenant_id: &str, server: &str) -> Vec<String> {
        self.observed.tools(tenant_id, server)
    }

    /// The tenant's compiled policy as the snapshot has it now (for the simulator and portal).
    pub fn tenant_policy(&self, tenant_id: &str) -> Arc<crate::policy::TenantPolicy> {
        self.policy(tenant_id)
    }

    /// Housekeeping, once a second: idle sessions, removed servers, overdue requests, unused
    /// upstream processes.
    pub fn sweep(&self) {
        self.hub.sweep(|tenant, user, slug| {
            self.server_for(tenant, user, slug).map(|t| {
                let v = link_secret_version(
                    self.env_secret(tenant, slug).as_deref(),
                    self.credential(tenant, slug).as_deref(),
                );
                (t, v)
            })
        });
        lock(&self.clients).retain(|_, (_, at)| at.elapsed() < Duration::from_secs(24 * 3600));
        self.upstreams.sweep();
        lock(&self.elicitors).retain(|_, at| at.elapsed() < Duration::from_secs(24 * 3600));
        lock(&self.url_elicitors).retain(|_, at| at.elapsed() < Duration::from_secs(24 * 3600));
        self.http_sessions.sweep(|o| {
            self.server_for(&o.tenant_id, &o.user_id, &o.server)
                .is_some()
        });
    }

    /// The tenant's approval rules.
    fn approval_rules(&self, tenant_id: &str) -> Arc<[crate::store::ApprovalRule]> {
        self.tenants
            .load()
            .get(tenant_id)
            .map(|t| t.approvals.clone())
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    /// The tenant's rate limits.
    fn limits(&self, tenant_id: &str) -> Arc<[crate::store::LimitRow]> {
        self.tenants
            .load()
            .get(tenant_id)
            .map(|t| t.limits.clone())
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    /// How the tenant's tool arguments are recorded.
    fn arguments(&self, tenant_id: &str) -> record::Arguments {
        self.tenants
            .load()
            .get(tenant_id)
            .map(|t| t.arguments)
            .unwrap_or_default()
    }

    /// The tenant's policy (empty, granting nothing, when the tenant is unknown).
    fn policy(&self, tenant_id: &str) -> Arc<crate::policy::TenantPolicy> {
        self.tenants
            .load()
            .get(tenant_id)
            .map(|t| t.policy.clone())
            .unwrap_or_default()
    }

    fn lookup(&self, tenant_id: &str, hash: &TokenHash, server: &str) -> Lookup {
        let snapshot = self.tenants.load();
        let Some(tg) = snapshot.get(tenant_id) else {
            return Lookup::Unauthorized;
        };
        let caller = match tg.tokens.get(hash.as_str()) {
            Some(c) if c.expires_at.is_none_or(|e| e > now_micros()) => c.clone(),
            _ => return Lookup::Unauthorized,
        };
        // A server the caller's grants do not reach looks exactly like one that does not exist.
        match tg.servers.get(server) {
            Some(s) if tg.policy.reaches(&caller.user_id, server) => {
                if caller
                    .servers
                    .as_ref()
                    .is_some_and(|scope| !scope.iter().any(|x| x == server))
                {
                    return if caller.oauth {
                        Lookup::WrongAudience
                    } else {
                        Lookup::OutOfScope
                    };
                }
                Lookup::Found(caller, s.clone(), tg.policy.clone())
            }
            _ => Lookup::NoServer,
        }
    }
}

enum Lookup {
    Unauthorized,
    NoServer,
    OutOfScope,
    WrongAudience,
    Found(
        Caller,
        Arc<ServerTransport>,
        Arc<crate::policy::TenantPolicy>,
    ),
}

/// A JSON-RPC error response (id null: the gateway answers before reading the request).
pub(crate) fn rpc_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message }
    });
    (status, axum::Json(body)).into_response()
}

/// 401 with the challenge MCP clients discover authorization from (RFC 9728): where the
/// endpoint's protected-resource metadata is, the scope, and `invalid_token` when a token was
/// presented but is not (or no longer) good here.
fn unauthorized(
    state: &AppState,
    tenant: &crate::tenancy::Tenant,
    server: &str,
    presented: bool,
) -> Response {
    let mut res = rpc_error(
        StatusCode::UNAUTHORIZED,
        -32001,
        "a valid gateway token is required",
    );
    let mut challenge = format!(
        "Bearer realm=\"portcullis\", resource_metadata=\"{}\", scope=\"{}\"",
        crate::oauth::resource_metadata_url(state, tenant, server),
        crate::oauth::SCOPE
    );
    if presented {
        challenge.push_str(", error=\"invalid_token\"");
    }
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    res
}

/// Protocol revisions a client may name in `MCP-Protocol-Version`.
pub(crate) const KNOWN_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// Checks a POSTed body before anything reaches the upstream: JSON (else -32700), a JSON-RPC 2.0
/// message or batch of them (else -32600), and, where the client sent the 2026-07-28 routing
/// headers, that they agree with the body (else -32600). Returns the method, for the audit line.
fn check_message(body: &[u8], headers: &HeaderMap) -> Result<Option<String>, (i64, String)> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| (-32700, "parse error: the body is not JSON".to_owned()))?;
    let invalid = |why: &str| (-32600, format!("invalid request: {why}"));
    let messages: Vec<&serde_json::Value> = match &value {
        serde_json::Value::Array(items) if !items.is_empty() => items.iter().collect(),
        serde_json::Value::Array(_) => return Err(invalid("empty batch")),
        single => vec![single],
    };
    for m in &messages {
        let Some(obj) = m.as_object() else {
            return Err(invalid("a message must be a JSON object"));
        };
        if obj.get("jsonrpc").and_then(|v| v.as_str()) != Some("2.0") {
            return Err(invalid("\"jsonrpc\" must be \"2.0\""));
        }
        let has_method = obj.get("method").is_some_and(|v| v.is_string());
        let is_response = obj.contains_key("result") || obj.contains_key("error");
        if !has_method && !is_response {
            return Err(invalid("a message needs a method (or a result or error)"));
        }
        if let Some(id) = obj.get("id") {
            if !(id.is_string() || id.is_i64() || id.is_u64() || id.is_null()) {
                return Err(invalid("\"id\" must be a string or an integer"));
            }
        }
    }
    let first = messages[0];
    let method = first
        .get("method")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // 2026-07-28: a header that disagrees with the body is a HeaderMismatch (-32020).
    let mismatch = |what: &str| {
        (
            -32020,
            format!("header mismatch: {what} does not match the body"),
        )
    };
    if let Some(h) = header("mcp-method") {
        if method.as_deref() != Some(h) {
            return Err(mismatch("Mcp-Method"));
        }
    }
    if let Some(h) = header("mcp-name") {
        let params = first.get("params");
        let name = params
            .and_then(|p| p.get("name").or_else(|| p.get("uri")))
            .and_then(|v| v.as_str());
        if name.is_none() || name != decode_header_value(h).as_deref() {
            return Err(mismatch("Mcp-Name"));
        }
    }
    Ok(method)
}

/// A 2026-07-28 header value: plain, or `=?base64?…?=` for values that are not safe in a
/// header. `None` for a sentinel that does not decode to UTF-8.
pub(crate) fn decode_header_value(v: &str) -> Option<String> {
    use base64::Engine;
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(v.to_owned()),
    }
}

/// Request headers passed upstream. Never `Authorization` or cookies: no token passthrough.
const FORWARD_REQUEST: &[&str] = &[
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
];
/// Response headers passed back to the client.
const FORWARD_RESPONSE: &[&str] = &[
    "content-type",
    "mcp-session-id",
    "mcp-protocol-version",
    "cache-control",
];

/// The request headers that go upstream: the allowlist, plus the 2026-07-28 `Mcp-Param-*`
/// mirrors of tool arguments (intermediaries must forward those).
fn request_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = copy_headers(from, FORWARD_REQUEST);
    for (name, value) in from {
        if name.as_str().starts_with("mcp-param-") {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

fn copy_headers(from: &HeaderMap, names: &[&str]) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in names {
        for v in from.get_all(*name) {
            if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                out.append(n, v.clone());
            }
        }
    }
    out
}

/// Origin check against DNS rebinding: a browser request from another origin is refused.
fn origin_ok(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return true; // not a browser, or a same-origin navigation
    };
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://").map(|(_, h)| h));
    origin_host.is_some() && origin_host == host
}

async fn endpoint(
    State(state): State<AppState>,
    Path(server): Path<String>,
    req: Request,
) -> Response {
    let arrived = std::time::Instant::now();
    let Some(Host::Tenant(tenant)) = req.extensions().get::<Host>().cloned() else {
        return crate::tenancy::not_found();
    };
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let user_agent = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect::<String>());
    if !origin_ok(req.headers()) {
        return rpc_error(
            StatusCode::FORBIDDEN,
            -32600,
            "cross-origin request refused",
        );
    }
    let hash = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let presented = hash.is_some();
    // A gateway token (personal) or an OAuth access token; nothing else is accepted here.
    let hash = hash.and_then(|t| {
        TokenHash::of_presented(TokenKind::User, t)
            .or_else(|| TokenHash::of_presented(TokenKind::OAuthAccess, t))
    });
    let Some(hash) = hash else {
        return unauthorized(&state, &tenant, &server, presented);
    };
    let (caller, upstream, tenant_policy) =
        match state.gateway.lookup(&tenant.tenant_id, &hash, &server) {
            Lookup::Unauthorized => return unauthorized(&state, &tenant, &server, true),
            // An OAuth token for another endpoint: not valid here (RFC 8707 audience).
            Lookup::WrongAudience => return unauthorized(&state, &tenant, &server, true),
            // The same answer whether the server exists in another tenant, nowhere, or is not
            // granted to the caller.
            Lookup::NoServer => {
                return rpc_error(StatusCode::NOT_FOUND, -32601, "no such MCP server")
            }
            // The user may reach it, this token may not (a personal access token's scope).
            Lookup::OutOfScope => {
                return rpc_error(
                    StatusCode::FORBIDDEN,
                    -32001,
                    "this token is not valid for this server (its scope does not include it)",
                )
            }
            Lookup::Found(c, s, p) => (c, s, p),
        };
    let now = now_micros();
    lock(&state.gateway.seen).insert((tenant.tenant_id.clone(), caller.user_id.clone()), now);
    lock(&state.gateway.tokens_seen)
        .insert((tenant.tenant_id.clone(), hash.as_str().to_owned()), now);
    let url = match upstream.as_ref() {
        ServerTransport::StreamableHttp { url } => Some(url.as_str().to_owned()),
        // stdio and legacy SSE: the gateway's own session layer (session.rs).
        ServerTransport::Sse { .. } | ServerTransport::Stdio { .. } => None,
    };
    let method = req.method().clone();
    if !matches!(method, Method::GET | Method::POST | Method::DELETE) {
        return rpc_error(
            StatusCode::METHOD_NOT_ALLOWED,
            -32600,
            "use POST, GET or DELETE",
        );
    }
    let headers = request_headers(req.headers());
    let body = match axum::body::to_bytes(req.into_body(), state.gateway.hub.options.max_body).await
    {
        Ok(b) => b,
        Err(_) => {
            return rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                "request body too large",
            )
        }
    };
    // Errors about a request name its id, where the body has one.
    let request_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .filter(|id| id.is_string() || id.is_number())
        .unwrap_or(serde_json::Value::Null);
    if let Some(v) = headers.get("mcp-protocol-version") {
        if !v.to_str().is_ok_and(|v| KNOWN_VERSIONS.contains(&v)) {
            // UnsupportedProtocolVersionError (-32022): what is supported, what was asked.
            let body = serde_json::json!({
                "jsonrpc": "2.0", "id": request_id,
                "error": {
                    "code": -32022,
                    "message": "unsupported MCP-Protocol-Version",
                    "data": {
                        "supported": KNOWN_VERSIONS,
                        "requested": String::from_utf8_lossy(v.as_bytes()),
                    },
                }
            });
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    }
    if method == Method::POST {
        if let Err((code, message)) = check_message(&body, &headers) {
            let body = serde_json::json!({
                "jsonrpc": "2.0", "id": request_id,
                "error": { "code": code, "message": message },
            });
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    }
    // The policy seam, then the audit seam, for every message (each one of a batch).
    let parsed = serde_json::from_slice::<serde_json::Value>(&body).ok();
    // A client's answer to the gateway's own approval question: taken here, never forwarded
    // (the question's record and the decision's are the approval's).
    if let Some(m) = parsed.as_ref().filter(|m| {
        m.get("method").is_none()
            && m.get("id")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|id| id.starts_with(approvals::ELICIT_PREFIX))
    }) {
        return approvals::elicitation_answer(&state, &tenant.tenant_id, &caller.email, m).await;
    }
    let messages: Vec<&serde_json::Value> = match &parsed {
        Some(serde_json::Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    let mut denial = None;
    let attempts: Vec<(policy::Attempt<'_>, Option<&serde_json::Value>)> = if messages.is_empty() {
        vec![(
            policy::Attempt {
                tenant_id: &tenant.tenant_id,
                user_id: &caller.user_id,
                server: &server,
                http_method: &method,
                rpc_method: None,
                target: None,
            },
            None,
        )]
    } else {
        messages
            .iter()
            .map(|m| {
                (
                    policy::Attempt {
                        tenant_id: &tenant.tenant_id,
                        user_id: &caller.user_id,
                        server: &server,
                        http_method: &method,
                        rpc_method: m.get("method").and_then(serde_json::Value::as_str),
                        target: policy::target_of(m),
                    },
                    Some(*m),
                )
            })
            .collect()
    };
    // The records: who, which client and agent, from where, in which session.
    let arguments = state.gateway.arguments(&tenant.tenant_id);
    let session_id = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let client = client_label(messages.first().copied()).or_else(|| {
        session_id.as_ref().and_then(|sid| {
            lock(&state.gateway.clients)
                .get(sid)
                .map(|(c, _)| c.clone())
        })
    });
    let mut events = Vec::with_capacity(attempts.len());
    let data_policy = state.gateway.filter_policy(&tenant.tenant_id, &server);
    for (attempt, msg) in &attempts {
        let decision = policy::check(
            &tenant_policy,
            &state.gateway.observed,
            Some(&state.gateway.pins),
            attempt,
            *msg,
        );
        policy::audit(attempt, &decision);
        let mut e = policy::audit_event(
            attempt,
            &decision,
            &caller.email,
            &tenant_policy,
            *msg,
            arguments,
        );
        e.client = client.clone();
        e.agent = Some(caller.agent.clone());
        e.ip = ip.clone();
        e.session_id = session_id.clone();
        if let Some(ua) = &user_agent {
            e.detail["user_agent"] = serde_json::json!(ua);
        }
        let is_request = msg.is_some_and(|m| m.get("method").is_some() && m.get("id").is_some());
        let id = msg.and_then(|m| m.get("id")).cloned();
        if let policy::Decision::Deny(_, error) = decision {
            denial.get_or_insert(error);
        } else if attempt.rpc_method == Some("tools/call") {
            // Personal data and secrets in what the client sends upstream.
            let screened = data_policy
                .as_ref()
                .zip(msg.and_then(|m| m.pointer("/params/arguments")));
            if let Some((found, block)) = screened
                .and_then(|(p, args)| crate::filters::screen_arguments(p, attempt.target, args))
            {
                let summary = found
                    .iter()
                    .map(|(k, n)| format!("{k} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                e.detail["arguments_filters"] = serde_json::json!({
                    "found": found,
                    "action": if block { "block" } else { "log" },
                });
                if block {
                    e.outcome = "blocked".into();
                    denial.get_or_insert(serde_json::json!({
                        "code": -32602,
                        "message": format!("The call was blocked by the gateway's data policy: its arguments carried {summary}."),
                    }));
                }
            }
        }
        events.push((is_request.then_some(id).flatten(), e));
    }
    // What is decided now is recorded now: refusals, notifications and client answers (which
    // get no answer of their own), and everything while the audit log is failing. Nothing goes
    // upstream, and no refusal is sent, before its record is durable (fail closed).
    // Rate limits and quotas (allowed requests only; a refusal counts nowhere).
    let mut permits = Vec::new();
    let mut throttle = None;
    let limits = state.gateway.limits(&tenant.tenant_id);
    if denial.is_none() && !limits.is_empty() {
        for (id, e) in events.iter_mut() {
            if id.is_none() {
                continue;
            }
            let subject = limits::Subject {
                user: &caller.email,
                agent: &caller.agent,
                client: client.as_deref().unwrap_or_default(),
                server: &server,
                tool: (e.action == "tools/call")
                    .then_some(e.target.as_deref())
                    .flatten(),
            };
            match state
                .gateway
                .limiter
                .admit(&tenant.tenant_id, &limits, &subject, now_micros())
            {
                Ok(Some(p)) => permits.push(p),
                Ok(None) => {}
                Err(t) => {
                    e.outcome = "throttled".into();
                    e.detail["limit"] = serde_json::json!(t.limit_id);
                    e.detail["retry_after_s"] = serde_json::json!(t.retry_after_secs);
                    throttle = Some(t);
                    break;
                }
            }
        }
        if throttle.is_some() {
            permits.clear();
        }
    }
    // A server that takes each user's own credential: this user's, from the vault (refreshed
    // first when it is about to expire). Without one, nothing goes upstream and the caller
    // is told where to connect.
    let per_user = state.gateway.per_user(&tenant.tenant_id, &server);
    let mut own_credential = None;
    let mut unavailable = None;
    if denial.is_none() && throttle.is_none() {
        if let Some(pu) = &per_user {
            match crate::connections::credential(
                &state,
                &tenant.tenant_id,
                pu,
                &caller.user_id,
                &caller.email,
            )
            .await
            {
                Ok(c) => own_credential = Some(Arc::new(c)),
                Err(u) => {
                    for (id, e) in events.iter_mut() {
                        if id.is_some() {
                            e.outcome = u.outcome().into();
                        }
                    }
                    unavailable = Some(u);
                }
            }
        }
    }
    let refuse_all =
        denial.is_some() || throttle.is_some() || unavailable.is_some() || !state.audit.healthy();
    let mut now = Vec::new();
    let mut pending = Vec::new();
    for (id, mut e) in events {
        match id {
            Some(id) if !refuse_all => pending.push((id, e)),
            _ => {
                if e.outcome == "forwarded" && refuse_all {
                    e.outcome =
                        if denial.is_some() || throttle.is_some() || unavailable.is_some() {
                            "not_sent"
                        } else {
                            "refused"
                        }
                        .into();
                }
                e.latency_us =
                    Some(i64::try_from(arrived.elapsed().as_micros()).unwrap_or(i64::MAX));
                now.push(e);
            }
        }
    }
    let audit_down = |request_id: &serde_json::Value| {
        tracing::error!("a gateway request was refused: the audit log cannot be written");
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": request_id,
            "error": { "code": -32603, "message": "the audit log cannot be written: the request was not carried out" },
        });
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    };
    if !now.is_empty() && state.audit.record_many(now).await.is_err() {
        return audit_down(&request_id);
    }
    if let Some(error) = denial {
        // What an upstream answers for a tool, prompt or resource that does not exist.
        let body = serde_json::json!({ "jsonrpc": "2.0", "id": request_id, "error": error });
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    if let Some(t) = throttle {
        // Over a limit: 429 with when to retry, and the same as a JSON-RPC error.
        let body = serde_json::json!({ "jsonrpc": "2.0", "id": request_id, "error": {
            "code": -32000,
            "message": format!("{}: retry in {} s", t.message, t.retry_after_secs),
            "data": { "retry_after": t.retry_after_secs },
        }});
        let mut res = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&t.retry_after_secs.to_string()) {
            res.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        return res;
    }
    if let Some(u) = unavailable {
        let url_mode = Elicits::of(messages.first().copied()).url
            || session_id
                .as_deref()
                .is_some_and(|sid| state.gateway.url_elicits(sid, &caller.user_id));
        let connect = crate::connections::connect_url(&state, &tenant.slug, &server);
        return not_connected(&u, &server, &connect, &request_id, &method, url_mode);
    }
    if refuse_all {
        // The refusals' records were written: the log works again for the next request.
        return audit_down(&request_id);
    }
    let initialize_client = messages
        .first()
        .filter(|m| m.get("method").and_then(serde_json::Value::as_str) == Some("initialize"))
        .and_then(|m| client_label(Some(m)));
    let elicits = Elicits::of(messages.first().copied());
    // List requests: their responses lose what the caller may not use. In a batch (the
    // 2025-03-26 era, proxied as sent) each response is matched to its request by id.
    let mut filters: Vec<(serde_json::Value, policy::ResponseFilter)> = Vec::new();
    for m in &messages {
        let (Some(id), Some(method)) = (
            m.get("id"),
            m.get("method").and_then(serde_json::Value::as_str),
        ) else {
            continue;
        };
        if let Some(f) = policy::list_filter(
            tenant_policy.clone(),
            state.gateway.observed.clone(),
            state.gateway.pins.clone(),
            state.gateway.filter_policy(&tenant.tenant_id, &server),
            &tenant.tenant_id,
            &caller.user_id,
            &server,
            method,
        ) {
            filters.push((id.clone(), f));
        }
    }
    let filter: Option<policy::ResponseFilter> = match filters.len() {
        0 => None,
        1 if messages.len() == 1 => filters.pop().map(|(_, f)| f),
        _ => Some(policy::by_id(filters)),
    };
    drop(attempts);
    let forward = Forward {
        state: state.clone(),
        tenant_id: tenant.tenant_id.clone(),
        tenant_slug: tenant.slug.clone(),
        user_id: caller.user_id.clone(),
        server: server.clone(),
        upstream: upstream.clone(),
        url,
        method,
        headers,
        body,
        session_id,
        request_id: request_id.clone(),
        filter,
        credential: own_credential.or_else(|| state.gateway.credential(&tenant.tenant_id, &server)),
        per_user: per_user.is_some(),
        initialize_client,
        elicits,
    };
    // Human approval: a covered tools/call waits here, before anything goes upstream.
    let approval_rules = state.gateway.approval_rules(&tenant.tenant_id);
    if !approval_rules.is_empty() {
        // A client that can be asked (it declared elicitation in its session) is asked
        // itself; an approver in the console may decide as well.
        let who = approvals::Asker {
            tenant_id: &tenant.tenant_id,
            user_id: &caller.user_id,
            email: &caller.email,
            server: &server,
        };
        if let Some(covered) = forward
            .elicitable(&pending)
            .then(|| approvals::covering(&state, who, &approval_rules, &tenant_policy, &pending))
            .flatten()
        {
            return approvals::by_elicitation(forward, covered, pending, permits, arrived).await;
        }
        let refusal = approvals::gate(
            &state,
            approvals::Asker {
                tenant_id: &tenant.tenant_id,
                user_id: &caller.user_id,
                email: &caller.email,
                server: &server,
            },
            &approval_rules,
            &tenant_policy,
            &mut pending,
        )
        .await;
        if let Some((i, outcome, message)) = refusal {
            let failing_id = pending[i].0.clone();
            let events: Vec<crate::audit::Event> = pending
                .into_iter()
                .enumerate()
                .map(|(j, (_, mut e))| {
                    e.outcome = if j == i { outcome } else { "not_sent" }.into();
                    e.latency_us =
                        Some(i64::try_from(arrived.elapsed().as_micros()).unwrap_or(i64::MAX));
                    e
                })
                .collect();
            if state.audit.record_many(events).await.is_err() {
                return audit_down(&request_id);
            }
            let body = serde_json::json!({ "jsonrpc": "2.0", "id": failing_id,
                "error": { "code": -32000, "message": message } });
            return (StatusCode::OK, axum::Json(body)).into_response();
        }
    }
    forward.run(pending, permits, arrived).await
}

/// Everything the endpoint needs to send a request upstream once it is allowed (and approved).
pub(crate) struct Forward {
    state: AppState,
    tenant_id: String,
    tenant_slug: String,
    user_id: String,
    server: String,
    upstream: Arc<ServerTransport>,
    url: Option<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    session_id: Option<String>,
    pub(crate) request_id: serde_json::Value,
    filter: Option<policy::ResponseFilter>,
    credential: Option<Arc<Credential>>,
    /// The credential is the user's own: an upstream 401 means their connection no longer
    /// works (told as such, never passed on as the gateway's own 401).
    per_user: bool,
    initialize_client: Option<String>,
    /// The request is an `initialize` whose client declares elicitation (form, URL mode).
    elicits: Elicits,
}

impl Forward {
    pub(crate) fn state(&self) -> &AppState {
        &self.state
    }

    /// Whether the client of this request can be asked through MCP elicitation: one message,
    /// in a session whose `initialize` declared the capability (session era only: the
    /// 2026-07-28 era asks through input-required results instead).
    fn elicitable(&self, pending: &[(serde_json::Value, crate::audit::Event)]) -> bool {
        pending.len() == 1
            && self.method == Method::POST
            && !modern::is_modern(&self.headers)
            && self.session_id.as_ref().is_some_and(|sid| {
                lock(&self.state.gateway.elicitors)
                    .contains_key(&(sid.clone(), self.user_id.clone()))
            })
    }

    /// Sends the request upstream by its transport and returns the answer, released only once
    /// its records are durable.
    pub(crate) async fn run(
        self,
        pending: Vec<(serde_json::Value, crate::audit::Event)>,
        permits: Vec<limits::Permit>,
        arrived: std::time::Instant,
    ) -> Response {
        let Forward {
            state,
            tenant_id,
            tenant_slug,
            user_id,
            server,
            upstream,
            url,
            method,
            headers,
            body,
            session_id,
            request_id,
            filter,
            credential,
            per_user,
            initialize_client,
            elicits,
        } = self;
        let rec = record::Recorder::new(state.audit.clone(), arrived, pending);
        // Concurrency slots are held until the answer is done (the recorder lives that long).
        rec.hold(permits);
        rec.filter_with(state.gateway.filter_policy(&tenant_id, &server));
        rec.count_into(state.gateway.inventory.clone(), &tenant_id, &server);
        rec.hook_with(
            state.gateway.filter_hooks(&tenant_id, &server),
            state.gateway.client().clone(),
            &tenant_slug,
            &server,
        );
        let Some(url) = url else {
            let target = session::Target {
                tenant_id: &tenant_id,
                user_id: &user_id,
                server: &server,
                transport: &upstream,
                filter,
                env: state.gateway.env_secret(&tenant_id, &server),
                header: credential.clone(),
            };
            let gw = &state.gateway;
            let session = session_id
                .as_deref()
                .filter(|_| !modern::is_modern(&headers));
            if let Some(sid) = session {
                if gw.hub.session_version(sid).is_none() {
                    // Opened on another replica (or before this one started): carried on here
                    // once the database names its owner; else the hub's 404 stands.
                    adopt_hub_session(&state, &target, sid).await;
                }
            }
            rec.forwarded();
            let is_delete = method == Method::DELETE;
            let res = gw
                .hub
                .handle(target, &gw.client, &method, &headers, body)
                .await;
            let new_session = res
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if let Some(sid) = new_session {
                // Durable before the client has the id: any replica can carry it on.
                if let Some(version) = gw.hub.session_version(&sid) {
                    if let Err(e) = state
                        .store
                        .put_gateway_session(
                            &tenant_id,
                            &session_hash(&sid),
                            &user_id,
                            &server,
                            Some(&version),
                        )
                        .await
                    {
                        tracing::warn!(error = %e, "a session's owner was not stored: only this replica knows it");
                    }
                }
            }
            if let (true, true, Some(sid)) = (is_delete, res.status().is_success(), session) {
                if let Err(e) = state
                    .store
                    .delete_gateway_session(&tenant_id, &session_hash(sid))
                    .await
                {
                    tracing::warn!(error = %e, "an ended session's owner was not removed");
                }
            }
            remember_client(gw, &res, initialize_client, elicits, &user_id);
            return record::recorded(res, rec).await;
        };
        // An upstream's session belongs to the user who opened it through the gateway (the
        // upstream cannot tell users apart): anyone else, or an id the gateway never saw, gets 404.
        let owner = SessionOwner {
            tenant_id: tenant_id.clone(),
            user_id: user_id.clone(),
            server: server.clone(),
        };
        if let Some(sid) = &session_id {
            // This replica's memory first; a session another replica opened (or one opened
            // before this replica started) is carried on once the database names its owner.
            if !state.gateway.http_sessions.check(sid, &owner)
                && !adopt_session(&state, sid, &owner).await
            {
                return rpc_error(
                    StatusCode::NOT_FOUND,
                    -32001,
                    "session not found (it ended or never existed): initialize again",
                );
            }
        }
        let is_delete = method == Method::DELETE;
        let mut upstream_req = state
            .gateway
            .client
            .request(method, &url)
            .headers(headers)
            .body(body);
        // The server's own credential from the vault (never the client's).
        if let Some(c) = &credential {
            upstream_req = upstream_req.header(c.header.clone(), c.value.clone());
        }
        rec.forwarded();
        let sent = tokio::time::timeout(UPSTREAM_HEADERS_TIMEOUT, upstream_req.send()).await;
        let Ok(sent) = sent else {
            tracing::warn!(server.slug = %server, "upstream did not answer in time");
            if rec.finish("timeout", None).await.is_err() {
                return record::withheld(&request_id);
            }
            return rpc_error(
                StatusCode::GATEWAY_TIMEOUT,
                -32603,
                "the upstream MCP server did not answer in time",
            );
        };
        match sent {
            Ok(res) if per_user && res.status() == StatusCode::UNAUTHORIZED => {
                // The upstream refused the user's own credential (revoked or expired there):
                // the user must connect again. Never passed on as a 401, which a client would
                // take for its gateway token's.
                tracing::info!(server.slug = %server, "the upstream refused a user's own credential");
                if rec.finish("not_connected", None).await.is_err() {
                    return record::withheld(&request_id);
                }
                let url_mode = session_id
                    .as_deref()
                    .is_some_and(|sid| state.gateway.url_elicits(sid, &user_id));
                let connect = crate::connections::connect_url(&state, &tenant_slug, &server);
                not_connected(
                    &crate::connections::Unavailable::Expired,
                    &server,
                    &connect,
                    &request_id,
                    &Method::POST,
                    url_mode,
                )
            }
            Ok(res) => {
                let status = res.status();
                if let Some(sid) = res
                    .headers()
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
                {
                    if state.gateway.http_sessions.record(sid, owner.clone()) {
                        // Durable before the client has the id: any replica can carry it on.
                        if let Err(e) = state
                            .store
                            .put_gateway_session(
                                &owner.tenant_id,
                                &session_hash(sid),
                                &owner.user_id,
                                &owner.server,
                                None,
                            )
                            .await
                        {
                            tracing::warn!(error = %e, "a session's owner was not stored: only this replica knows it");
                        }
                    }
                }
                if let (true, true, Some(sid)) = (is_delete, status.is_success(), &session_id) {
                    state.gateway.http_sessions.forget(sid);
                    if let Err(e) = state
                        .store
                        .delete_gateway_session(&owner.tenant_id, &session_hash(sid))
                        .await
                    {
                        tracing::warn!(error = %e, "an ended session's owner was not removed");
                    }
                }
                let headers = copy_headers(res.headers(), FORWARD_RESPONSE);
                let body = match filter {
                    Some(f) => filtered_body(res, f).await,
                    None => Body::from_stream(res.bytes_stream().map_err(std::io::Error::other)),
                };
                let mut out = Response::new(body);
                *out.status_mut() = status;
                *out.headers_mut() = headers;
                remember_client(&state.gateway, &out, initialize_client, elicits, &user_id);
                record::recorded(out, rec).await
            }
            Err(e) => {
                tracing::warn!(server.slug = %server, error = %e, "upstream unreachable");
                if rec.finish("unreachable", None).await.is_err() {
                    return record::withheld(&request_id);
                }
                rpc_error(
                    StatusCode::BAD_GATEWAY,
                    -32603,
                    "the upstream MCP server is unreachable",
                )
            }
        }
    }
}

/// `name/version` from an `initialize` message's clientInfo, or a 2026-07-28 request's
/// `_meta` client info.
fn client_label(msg: Option<&serde_json::Value>) -> Option<String> {
    let m = msg?;
    let info = m
        .pointer("/params/clientInfo")
        .or_else(|| m.pointer("/params/_meta/io.modelcontextprotocol~1clientInfo"))?;
    let name = info.get("name").and_then(serde_json::Value::as_str)?;
    let label = match info.get("version").and_then(serde_json::Value::as_str) {
        Some(v) => format!("{name}/{v}"),
        None => name.to_owned(),
    };
    Some(label.chars().take(120).collect())
}

/// After an `initialize`: the session the answer opened is this client's (and, when the client
/// declared elicitation, the gateway may ask its user for approvals through it).
/// The answer to a request for a per-user server this user has no working credential for:
/// a JSON-RPC error with the URL to connect at — as a URL-mode elicitation (-32042,
/// `URLElicitationRequiredError`) for a client that declared URL mode, else in the message.
fn not_connected(
    u: &crate::connections::Unavailable,
    server: &str,
    connect: &str,
    request_id: &serde_json::Value,
    method: &Method,
    url_mode: bool,
) -> Response {
    let message = u.message(server, connect);
    let error = if url_mode && !matches!(u, crate::connections::Unavailable::Unreachable) {
        serde_json::json!({
            "code": -32042,
            "message": message,
            "data": { "elicitations": [{
                "mode": "url",
                "elicitationId": uuid::Uuid::new_v4().to_string(),
                "url": connect,
                "message": format!("Connect your account for {server}"),
            }]},
        })
    } else {
        serde_json::json!({
            "code": -32001,
            "message": message,
            "data": { "connect_url": connect },
        })
    };
    let body = serde_json::json!({ "jsonrpc": "2.0", "id": request_id, "error": error });
    // A GET (the SSE stream) or DELETE has no JSON-RPC answer to carry it.
    let status = if *method == Method::POST {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    (status, axum::Json(body)).into_response()
}

/// What an `initialize` request's client declares it can be asked (MCP elicitation).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Elicits {
    /// Form mode (or elicitation without modes: form, by the spec's compatibility rule).
    pub form: bool,
    /// URL mode (2025-11-25).
    pub url: bool,
}

impl Elicits {
    pub(crate) fn of(m: Option<&serde_json::Value>) -> Self {
        let Some(e) = m
            .filter(|m| m.get("method").and_then(serde_json::Value::as_str) == Some("initialize"))
            .and_then(|m| m.pointer("/params/capabilities/elicitation"))
        else {
            return Self::default();
        };
        let url = e.get("url").is_some();
        Self {
            form: !url || e.get("form").is_some(),
            url,
        }
    }
}

fn remember_client(
    gw: &Gateway,
    res: &Response,
    client: Option<String>,
    elicits: Elicits,
    user_id: &str,
) {
    let Some(sid) = res
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    if elicits.form {
        let mut e = lock(&gw.elicitors);
        if e.len() < 100_000 {
            e.insert(
                (sid.to_owned(), user_id.to_owned()),
                std::time::Instant::now(),
            );
        }
    }
    if elicits.url {
        let mut e = lock(&gw.url_elicitors);
        if e.len() < 100_000 {
            e.insert(
                (sid.to_owned(), user_id.to_owned()),
                std::time::Instant::now(),
            );
        }
    }
    let Some(client) = client else {
        return;
    };
    let mut clients = lock(&gw.clients);
    if clients.len() < 100_000 {
        clients.insert(sid.to_owned(), (client, std::time::Instant::now()));
    }
}

/// Largest JSON list response the gateway filters (a bigger one is refused, never passed
/// unfiltered).
const MAX_FILTERED_JSON: usize = 32 * 1024 * 1024;

/// The body of an upstream's answer to a list request, passed through `filter`: a JSON body is
/// read whole, filtered and re-encoded; an SSE body is filtered event by event as it streams.
async fn filtered_body(res: reqwest::Response, filter: policy::ResponseFilter) -> Body {
    let is_sse = res
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let apply = move |v: &mut serde_json::Value| match v {
        serde_json::Value::Array(items) => items.iter_mut().for_each(|m| filter(m)),
        one => filter(one),
    };
    if !is_sse {
        let mut bytes = Vec::new();
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                return Body::empty();
            };
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_FILTERED_JSON {
                tracing::warn!("an upstream list response over 32 MiB was dropped");
                return Body::empty();
            }
        }
        return match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(mut v) => {
                apply(&mut v);
                Body::from(v.to_string())
            }
            // Not JSON (an error page): nothing in it to filter.
            Err(_) => Body::from(bytes),
        };
    }
    let mut parser = sse::SseParser::default();
    let stream = res.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        let events = parser.feed(&chunk).map_err(std::io::Error::other)?;
        let mut out = String::new();
        for mut e in events {
            if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&e.data) {
                apply(&mut v);
                e.data = v.to_string();
            }
            out.push_str(&e.encode());
        }
        Ok::<_, std::io::Error>(Bytes::from(out))
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_credentials_never_travel_upstream() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer pct_user_secret"),
        );
        h.insert("cookie", HeaderValue::from_static("portcullis_session=abc"));
        h.insert("mcp-session-id", HeaderValue::from_static("s1"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("mcp-param-region", HeaderValue::from_static("eu"));
        let out = request_headers(&h);
        assert_eq!(
            out["mcp-param-region"], "eu",
            "mirrored tool arguments go along"
        );
        assert!(out.get("authorization").is_none());
        assert!(out.get("cookie").is_none());
        assert_eq!(out["mcp-session-id"], "s1");
        assert_eq!(out["content-type"], "application/json");
    }

    fn code_of(res: Result<Option<String>, (i64, String)>) -> Option<i64> {
        res.err().map(|(code, _)| code)
    }

    #[test]
    fn messages_are_checked_before_they_go_upstream() {
        let h = HeaderMap::new();
        let ok = |b: &str| check_message(b.as_bytes(), &h);
        assert_eq!(
            ok(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
                .ok()
                .flatten()
                .as_deref(),
            Some("tools/list")
        );
        assert!(ok(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_ok());
        assert!(
            ok(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).is_ok(),
            "a response to a server request"
        );
        assert!(ok(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).is_ok());
        for bad in [
            "{not json",
            "",
            "[]",
            "42",
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
        ] {
            let expected = if serde_json::from_str::<serde_json::Value>(bad).is_ok() {
                -32600
            } else {
                -32700
            };
            assert_eq!(code_of(ok(bad)), Some(expected), "{bad}");
        }
    }

    #[test]
    fn routing_headers_must_agree_with_the_body() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#;
        let mut h = HeaderMap::new();
        h.insert("mcp-method", HeaderValue::from_static("tools/call"));
        h.insert("mcp-name", HeaderValue::from_static("add"));
        assert!(check_message(body, &h).is_ok());
        // The base64 sentinel for values unsafe in headers: "add" is YWRk.
        h.insert("mcp-name", HeaderValue::from_static("=?base64?YWRk?="));
        assert!(check_message(body, &h).is_ok());
        h.insert("mcp-name", HeaderValue::from_static("delete_everything"));
        assert_eq!(code_of(check_message(body, &h)), Some(-32020));
        h.insert(
            "mcp-name",
            HeaderValue::from_static("=?base64?not base64?="),
        );
        assert_eq!(code_of(check_message(body, &h)), Some(-32020));
        h.remove("mcp-name");
        h.insert("mcp-method", HeaderValue::from_static("tools/list"));
        assert_eq!(code_of(check_message(body, &h)), Some(-32020));
    }

    #[test]
    fn a_bad_upstream_ca_file_stops_the_start_with_a_reason() {
        let missing = upstream_client(Some(std::path::Path::new("/nonexistent/ca.pem")));
        assert!(missing
            .unwrap_err()
            .contains("cannot read /nonexistent/ca.pem"));
        let dir = std::env::temp_dir().join(format!("pc-ca-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, "not a certificate").unwrap();
        let empty = upstream_client(Some(&dir));
        let _ = std::fs::remove_file(&dir);
        assert!(empty.unwrap_err().contains("no PEM certificate"));
        assert!(upstream_client(None).is_ok());
    }

    #[test]
    fn only_same_origin_browser_requests_pass() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("acme.localhost:8080"));
        assert!(origin_ok(&h), "no Origin: not a browser");
        h.insert(
            "origin",
            HeaderValue::from_static("http://acme.localhost:8080"),
        );
        assert!(origin_ok(&h));
        h.insert("origin", HeaderValue::from_static("http://evil.example"));
        assert!(!origin_ok(&h));
        h.insert("origin", HeaderValue::from_static("null"));
        assert!(!origin_ok(&h));
    }
}
