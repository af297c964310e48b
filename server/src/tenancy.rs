//! Tenancy by host: `{tenant}.{base_domain}` serves that tenant, the bare base domain serves the
//! platform console, anything else gets a bare 404 that says nothing about which tenants exist.
//!
//! Requests resolve their host against an in-memory directory of tenants (no database round
//! trip). The directory is rebuilt whenever the `tenants` change counter moves: PostgreSQL
//! announces it with NOTIFY, and every engine is also polled, so a tenant created by the CLI or
//! another replica is served within a second.

use crate::domain::{BaseDomain, TenantSlug};
use crate::store::{Store, TenantRow, CHANGE_CHANNEL};
use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A tenant as the request path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub tenant_id: String,
    pub slug: String,
    pub name: String,
    pub created_at: i64,
}

impl From<TenantRow> for Tenant {
    fn from(r: TenantRow) -> Self {
        Self {
            tenant_id: r.tenant_id,
            slug: r.slug,
            name: r.name,
            created_at: r.created_at,
        }
    }
}

/// What a request's host resolved to; inserted into the request's extensions.
#[derive(Debug, Clone)]
pub enum Host {
    Platform,
    Tenant(Arc<Tenant>),
}

#[derive(Debug, Default)]
struct Directory {
    by_slug: HashMap<String, Arc<Tenant>>,
}

/// The tenant directory snapshot and the rules for reading hosts.
#[derive(Debug)]
pub struct Tenancy {
    base_domain: BaseDomain,
    directory: ArcSwap<Directory>,
    version: std::sync::atomic::AtomicI64,
    /// The tenant that loopback IP hosts (`127.0.0.1`, `[::1]`, any port) are served as, for
    /// local MCP clients that cannot resolve `*.localhost` (`PORTCULLIS_LOOPBACK_TENANT`).
    loopback_tenant: Option<String>,
}

impl Tenancy {
    /// Loads the directory; a server does not start without one (no snapshot, no service).
    pub async fn load(base_domain: BaseDomain, store: &Store) -> crate::store::Result<Self> {
        let t = Self {
            base_domain,
            directory: ArcSwap::from_pointee(Directory::default()),
            version: std::sync::atomic::AtomicI64::new(-1),
            loopback_tenant: None,
        };
        t.refresh(store).await?;
        Ok(t)
    }

    /// A directory built from a list, without a database (benchmarks and tests).
    pub fn from_tenants(base_domain: BaseDomain, tenants: Vec<Tenant>) -> Self {
        let by_slug = tenants
            .into_iter()
            .map(|t| (t.slug.clone(), Arc::new(t)))
            .collect();
        Self {
            base_domain,
            directory: ArcSwap::from_pointee(Directory { by_slug }),
            version: std::sync::atomic::AtomicI64::new(0),
            loopback_tenant: None,
        }
    }

    pub fn loopback_tenant(&self) -> Option<&str> {
        self.loopback_tenant.as_deref()
    }

    /// Serves loopback IP hosts as the tenant `slug` (see `loopback_tenant`).
    pub fn with_loopback_tenant(mut self, slug: Option<String>) -> Self {
        self.loopback_tenant = slug;
        self
    }

    pub fn base_domain(&self) -> &BaseDomain {
        &self.base_domain
    }

    /// Makes the next `refresh` rebuild whatever the counter says.
    pub fn invalidate(&self) {
        self.version
            .store(i64::MIN, std::sync::atomic::Ordering::Release);
    }

    /// Rebuilds the directory if the change counter moved since the last build.
    pub async fn refresh(&self, store: &Store) -> crate::store::Result<bool> {
        use std::sync::atomic::Ordering;
        let version = store.change_version("tenants").await?;
        if version == self.version.load(Ordering::Acquire) {
            return Ok(false);
        }
        let rows = store.list_tenants().await?;
        let by_slug = rows
            .into_iter()
            .map(|r| (r.slug.clone(), Arc::new(Tenant::from(r))))
            .collect();
        self.directory.store(Arc::new(Directory { by_slug }));
        self.version.store(version, Ordering::Release);
        tracing::debug!(tenants.version = version, "tenant directory refreshed");
        Ok(true)
    }

    pub fn tenant_ids(&self) -> Vec<String> {
        self.directory
            .load()
            .by_slug
            .values()
            .map(|t| t.tenant_id.clone())
            .collect()
    }

    /// The tenant with this id, if it is known.
    pub fn tenant_by_id(&self, tenant_id: &str) -> Option<Arc<Tenant>> {
        self.directory
            .load()
            .by_slug
            .values()
            .find(|t| t.tenant_id == tenant_id)
            .cloned()
    }

    pub fn tenant_count(&self) -> usize {
        self.directory.load().by_slug.len()
    }

    pub fn tenant(&self, slug: &str) -> Option<Arc<Tenant>> {
        self.directory.load().by_slug.get(slug).cloned()
    }

    /// Classifies a Host header value (`acme.localhost:8080`). `None` means unknown: 404.
    pub fn classify(&self, host: &str) -> Option<Host> {
        if let Some(slug) = &self.loopback_tenant {
            if is_loopback_ip_host(host) {
                return self.tenant(slug).map(Host::Tenant);
            }
        }
        let name = host_name(host)?;
        let base = self.base_domain.as_str();
        if name == base {
            return Some(Host::Platform);
        }
        let label = name.strip_suffix(base)?.strip_suffix('.')?;
        // Only one label: a.b.base is not a tenant host.
        let slug = TenantSlug::parse(label).ok()?;
        self.tenant(slug.as_str()).map(Host::Tenant)
    }
}

/// The host name of a Host header, lowercased, without port or trailing dot. IP literals and
/// malformed values give `None`.
/// `127.0.0.1` or `[::1]`, with or without a port.
fn is_loopback_ip_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port))
                if port.is_empty()
                    || port
                        .strip_prefix(':')
                        .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())) =>
            {
                ip
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name == "127.0.0.1" || name == "::1"
}

fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    if host.starts_with('[') {
        return None; // IPv6 literal: never a tenant or platform host.
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return None;
    }
    Some(name)
}

/// Paths every host answers (load balancers probe by IP): they reveal nothing about tenants.
pub fn is_host_independent(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

fn request_host(req: &Request) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok())
}

/// Middleware: resolves the host and inserts [`Host`] into the request, or answers 404.
pub async fn resolve_host(
    State(tenancy): State<Arc<Tenancy>>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_host_independent(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(host) = request_host(&req).and_then(|h| tenancy.classify(h)) else {
        return not_found();
    };
    // The admin console and tenant surfaces exist only on tenant hosts.
    if matches!(host, Host::Platform) {
        let p = req.uri().path();
        if p == "/admin" || p.starts_with("/admin/") {
            return not_found();
        }
    }
    req.extensions_mut().insert(host);
    next.run(req).await
}

/// The same bare 404 for every unknown host and path, so probing learns nothing.
pub fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Not Found\n",
    )
        .into_response()
}

/// How often every replica rebuilds its snapshots even though no change counter moved.
pub const FULL_REFRESH: Duration = Duration::from_secs(60);

/// Keeps the directory fresh until `shutdown` flips: LISTEN/NOTIFY on PostgreSQL for speed, a
/// poll of the change counters on every engine as the safety net (every 250 ms on SQLite, every
/// second on PostgreSQL where NOTIFY normally arrives first), and a full rebuild every
/// `FULL_REFRESH` behind both.
pub async fn watch_changes(
    tenancy: Arc<Tenancy>,
    gateway: Arc<crate::gateway::Gateway>,
    store: Store,
    mut shutdown: watch::Receiver<bool>,
) {
    let (poke_tx, mut poke_rx) = tokio::sync::mpsc::channel::<()>(16);
    let poll_every = if let Some(pool) = store.postgres_pool().cloned() {
        let mut sd = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let listener = async {
                    let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    l.listen(CHANGE_CHANNEL).await?;
                    loop {
                        l.recv().await?;
                        let _ = poke_tx.try_send(());
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), sqlx::Error>(())
                };
                tokio::select! {
                    res = listener => {
                        if let Err(e) = res {
                            tracing::warn!(error = %e, "change listener lost its connection; reconnecting");
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    _ = sd.changed() => return,
                }
            }
        });
        Duration::from_secs(1)
    } else {
        Duration::from_millis(250)
    };
    let mut tick = tokio::time::interval(poll_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_full = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(()) = poke_rx.recv() => {}
            _ = shutdown.changed() => return,
        }
        // The last safety net: now and then rebuild everything whether or not a counter moved,
        // so that a write that forgot to bump its counter (or an edit made in the database by
        // hand) is picked up within FULL_REFRESH on every replica.
        if last_full.elapsed() >= FULL_REFRESH {
            last_full = tokio::time::Instant::now();
            tenancy.invalidate();
            gateway.invalidate();
        }
        if let Err(e) = tenancy.refresh(&store).await {
            tracing::warn!(error = %e, "tenant directory refresh failed; serving the last snapshot");
        }
        if let Err(e) = gateway.refresh(&store, &tenancy).await {
            tracing::warn!(error = %e, "gateway snapshot refresh failed; serving the last snapshot");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenancy(base: &str, slugs: &[&str]) -> Tenancy {
        let by_slug = slugs
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    Arc::new(Tenant {
                        tenant_id: format!("id-{s}"),
                        slug: s.to_string(),
                        name: s.to_uppercase(),
                        created_at: 0,
                    }),
                )
            })
            .collect();
        Tenancy {
            base_domain: BaseDomain::parse(base).unwrap(),
            directory: ArcSwap::from_pointee(Directory { by_slug }),
            version: 0.into(),
            loopback_tenant: None,
        }
    }

    #[test]
    fn loopback_ip_hosts_serve_the_loopback_tenant_only_when_configured() {
        let t = tenancy("localhost", &["acme"]);
        assert_eq!(slug_of(t.classify("127.0.0.1:8080")), None);
        let t = t.with_loopback_tenant(Some("acme".into()));
        for h in ["127.0.0.1:8080", "127.0.0.1", "[::1]:9", "[::1]"] {
            assert_eq!(slug_of(t.classify(h)).as_deref(), Some("acme"), "{h}");
        }
        // Names, other IPs and malformed literals are not loopback IP hosts.
        assert_eq!(
            slug_of(t.classify("localhost:8080")).as_deref(),
            Some("<platform>")
        );
        for h in [
            "127.0.0.2:80",
            "[::1]x",
            "127.0.0.1:http",
            "evil.example.com",
        ] {
            assert_eq!(slug_of(t.classify(h)), None, "{h}");
        }
    }

    fn slug_of(h: Option<Host>) -> Option<String> {
        match h {
            Some(Host::Tenant(t)) => Some(t.slug.clone()),
            Some(Host::Platform) => Some("<platform>".into()),
            None => None,
        }
    }

    #[test]
    fn hosts_resolve_to_tenant_platform_or_nothing() {
        let t = tenancy("localhost", &["acme", "globex"]);
        assert_eq!(
            slug_of(t.classify("acme.localhost:8080")),
            Some("acme".into())
        );
        assert_eq!(slug_of(t.classify("ACME.LOCALHOST.")), Some("acme".into()));
        assert_eq!(
            slug_of(t.classify("localhost:8080")),
            Some("<platform>".into())
        );
        for unknown in [
            "initech.localhost",
            "a.acme.localhost",
            "acme.localhost.evil.com",
            "acmelocalhost",
            "127.0.0.1:8080",
            "[::1]:8080",
            "acme.localhost:80x",
            "",
            "www.localhost",
        ] {
            assert!(
                t.classify(unknown).is_none(),
                "{unknown:?} should be unknown"
            );
        }
    }

    #[test]
    fn a_multi_label_base_domain_works() {
        let t = tenancy("mcp.example.com", &["acme"]);
        assert_eq!(
            slug_of(t.classify("acme.mcp.example.com")),
            Some("acme".into())
        );
        assert_eq!(
            slug_of(t.classify("mcp.example.com")),
            Some("<platform>".into())
        );
        assert!(t.classify("acme.example.com").is_none());
    }
}
