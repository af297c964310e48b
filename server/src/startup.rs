//! Builds the application: opens the store, checks the master key, makes first-start secrets,
//! loads the tenant directory, binds the listener and assembles the router with its layers.
//! `Application::build` binds (port 0 in tests) and exposes `port()` and `run_until_stopped()`.

use crate::auth::PLATFORM_TOKEN_SETTING;
use crate::config::{Scheme, Settings};
use crate::console::Backend;
use crate::domain::{NewToken, TokenKind};
use crate::error::ApiError;
use crate::ops::{self, Metrics};
use crate::state::{AppState, Reveals, Urls};
use crate::store::{DatabaseLocation, Store, StoreError};
use crate::tenancy::{self, Tenancy};
use crate::{api, keys, tenants};
use app::api::SharedBackend;
use axum::extract::{Request, State};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{HeaderValue, Method, StatusCode};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use secrecy::{ExposeSecret, SecretString};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

/// Largest request body the server reads; larger ones get 413 before any handler runs.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEMO_SLUG: &str = "demo";
/// How long in-flight requests may run on after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEMO_TOKEN_FILE: &str = "demo-admin-token";
pub const PLATFORM_TOKEN_FILE: &str = "platform-admin-token";

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("demo set-up: {0}")]
    Demo(String),
    #[error("upstream HTTP client: {0}")]
    UpstreamClient(String),
    #[error("{0}")]
    Mail(String),
}

/// What a start printed for the operator: secrets made on this start, shown once.
#[derive(Default)]
pub struct FirstStart {
    /// The platform admin token, when this start created it.
    pub platform_token: Option<SecretString>,
    /// The demo tenant's admin token (demo mode), and whether this start created the tenant.
    pub demo_token: Option<SecretString>,
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    port: u16,
    state: AppState,
    shutdown: watch::Sender<bool>,
    pub first_start: FirstStart,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store = Store::open(&settings.store.database).await?;
        let postgres = matches!(settings.store.database, DatabaseLocation::Postgres(_));
        let master_key = Arc::new(
            keys::load_or_create(
                settings.master_key.as_ref(),
                &settings.store.data_dir,
                postgres,
                &store,
            )
            .await?,
        );
        let mut first_start = FirstStart {
            platform_token: ensure_platform_token(&store).await?,
            demo_token: None,
        };
        if settings.demo {
            first_start.demo_token = Some(ensure_demo(&store, &settings.store.data_dir).await?);
            if let Some(t) = &first_start.platform_token {
                write_secret_file(
                    &settings.store.data_dir.join(PLATFORM_TOKEN_FILE),
                    t.expose_secret(),
                )
                .map_err(StartupError::Demo)?;
            }
        }
        let tenancy = Arc::new(
            Tenancy::load(settings.base_domain.clone(), &store)
                .await?
                .with_loopback_tenant(settings.loopback_tenant.clone()),
        );
        let hub_options = crate::gateway::session::HubOptions {
            data_dir: settings.store.data_dir.clone(),
            upstream_timeout: settings.upstream_timeout,
            max_body: settings.gateway_max_body,
        };
        let client = crate::gateway::upstream_client(settings.upstream_ca_file.as_deref())
            .map_err(StartupError::UpstreamClient)?;
        let previous_key = keys::load_previous(
            settings.master_key_previous.as_ref(),
            &settings.store.data_dir,
        )?
        .map(Arc::new);
        let vault = Arc::new(crate::vault::Vault::with_previous(
            master_key.clone(),
            previous_key,
        ));
        // Secrets sealed by earlier releases move into the vault (once; idempotent).
        match crate::vault::migrate_legacy(&store, &vault).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                secrets = n,
                "moved secrets sealed by an earlier release into the vault"
            ),
            Err(e) => {
                tracing::error!(error = %e, "moving earlier secrets into the vault failed; they stay readable")
            }
        }
        let gateway = Arc::new(
            crate::gateway::Gateway::load(&store, &tenancy, client, hub_options, vault.clone())
                .await?,
        );

        let listener =
            TcpListener::bind(settings.bind)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.bind,
                    source,
                })?;
        let local = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.bind,
            source,
        })?;
        let urls = Urls::new(
            settings.public_scheme,
            settings.base_domain.as_str().to_owned(),
            settings.public_port.unwrap_or(local.port()),
        );
        // Secure cookies need a secure context: https, or a *.localhost origin, which browsers
        // treat as secure over plain http. Only plain http on a real domain goes without.
        let base = settings.base_domain.as_str();
        let localhost = base == "localhost" || base.ends_with(".localhost");
        let secure_cookies = settings.public_scheme == Scheme::Https || localhost;
        if !secure_cookies {
            tracing::warn!(
                "serving plain http on {base}: session cookies are not marked Secure; \
                 put TLS in front and set --public-scheme https"
            );
        }
        let leptos_options = LeptosOptions::builder()
            .output_name("portcullis")
            .site_root(settings.site_root.display().to_string())
            .site_pkg_dir("pkg")
            .site_addr(local)
            .build();
        let (audit, _audit_writer) = crate::audit::Audit::start(store.clone());
        let mail_from = settings.mail_from.clone().unwrap_or_else(|| {
            format!("Portcullis <portcullis@{}>", settings.base_domain.as_str())
        });
        // The environment's SMTP URL, else the one `portcullis mail set` sealed in the database.
        let smtp_url = match &settings.smtp_url {
            Some(u) => Some(u.clone()),
            None => match crate::mail::stored_smtp_url(&store, &master_key).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::error!(error = %e, "no mail is sent: the stored SMTP relay cannot be used (set it again with `portcullis mail set`)");
                    None
                }
            },
        };
        let mailer = crate::mail::start(
            smtp_url.as_ref(),
            &mail_from,
            audit.clone(),
            settings.mail_digest,
        )
        .map_err(StartupError::Mail)?;
        let state = AppState {
            store,
            tenancy,
            gateway,
            urls,
            leptos_options,
            metrics: Arc::new(Metrics::default()),
            reveals: Arc::new(Reveals::default()),
            secure_cookies,
            keys: master_key,
            vault,
            sso: Arc::default(),
            audit,
            siem_interval: settings.siem_interval,
            signal_interval: settings.signal_interval,
            cimd_allow_private: settings.cimd_allow_private,
            mailer,
        };
        // Where tenants are served, for commands that run without a server (the review pack
        // names the portal and gateway URLs).
        if let Err(e) = state
            .store
            .set_platform_setting(
                crate::review::URL_TEMPLATE_SETTING,
                &state.urls.tenant(crate::review::SLUG_PLACEHOLDER),
            )
            .await
        {
            tracing::warn!(error = %e, "the public URL could not be recorded");
        }
        let router = build_router(state.clone(), &settings.site_root);
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            listener,
            router,
            port: local.port(),
            state,
            shutdown,
            first_start,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn urls(&self) -> &Urls {
        &self.state.urls
    }

    /// The tenant loopback IP hosts are served as (`PORTCULLIS_LOOPBACK_TENANT`), if any.
    pub fn loopback_tenant(&self) -> Option<&str> {
        self.state.tenancy.loopback_tenant()
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Serves until `signal` resolves, then stops accepting, finishes in-flight requests and
    /// stops the background tasks.
    pub async fn run_until_stopped(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application {
            listener,
            router,
            state,
            shutdown,
            ..
        } = self;
        let watcher = tokio::spawn(tenancy::watch_changes(
            state.tenancy.clone(),
            state.gateway.clone(),
            state.store.clone(),
            shutdown.subscribe(),
        ));
        let sweeper = tokio::spawn(sweep_sessions(state.store.clone(), shutdown.subscribe()));
        // The audit log's housekeeping (partitions, retention purge) and SIEM delivery.
        let retention = crate::audit::retention::spawn(state.store.clone(), state.audit.clone());
        let siem = crate::audit::siem::spawn(
            state.store.clone(),
            state.vault.clone(),
            state.gateway.client().clone(),
            state.siem_interval,
            shutdown.subscribe(),
        );
        let digests = tokio::spawn(crate::mail::run_digests(
            state.clone(),
            shutdown.subscribe(),
        ));
        let pins = tokio::spawn(crate::pins::run(state.clone(), shutdown.subscribe()));
        let signals = tokio::spawn(crate::review::signals::run(
            state.clone(),
            shutdown.subscribe(),
        ));
        let janitor = tokio::spawn(gateway_janitor(
            state.gateway.clone(),
            state.store.clone(),
            shutdown.subscribe(),
        ));
        // Graceful, but bounded: after the signal, in-flight requests get SHUTDOWN_GRACE to
        // finish; a client that holds a connection open beyond that does not keep us alive.
        let signalled = Arc::new(tokio::sync::Notify::new());
        let notify = signalled.clone();
        let gateway = state.gateway.clone();
        let signal = async move {
            signal.await;
            // Open MCP streams end now, so that they do not hold the shutdown up.
            gateway.hub.begin_shutdown();
            notify.notify_one();
        };
        // TCP_NODELAY: responses go out in several writes (headers, then streamed body chunks);
        // with Nagle on, a client's delayed ACK adds about 40 ms to every answer.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(signal);
        let res = tokio::select! {
            res = serve => res,
            _ = async {
                signalled.notified().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::warn!("connections still open {}s after shutdown began; closing them", SHUTDOWN_GRACE.as_secs());
                Ok(())
            }
        };
        let _ = shutdown.send(true);
        let _ = watcher.await;
        let _ = sweeper.await;
        let _ = janitor.await;
        let _ = siem.await;
        let _ = digests.await;
        let _ = pins.await;
        let _ = signals.await;
        retention.abort();
        // Stop every upstream the gateway runs (stdio processes: stdin, SIGTERM, SIGKILL).
        state.gateway.hub.shutdown().await;
        state.store.close().await;
        res
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

async fn gateway_janitor(
    gateway: Arc<crate::gateway::Gateway>,
    store: Store,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                gateway.sweep();
                gateway.sync_limits(&store).await;
                n += 1;
                if n.is_multiple_of(5) {
                    gateway.inventory.flush(&store).await;
                }
                // Users' "last seen" (gateway use), written every 30 s, not per request.
                if n.is_multiple_of(30) {
                    for (tenant, users) in gateway.take_seen() {
                        if let Err(e) = store.touch_users_seen(&tenant, &users).await {
                            tracing::warn!(error = %e, "recording users' last use failed");
                        }
                    }
                    for (tenant, tokens) in gateway.take_tokens_seen() {
                        if let Err(e) = store.touch_tokens_used(&tenant, &tokens).await {
                            tracing::warn!(error = %e, "recording tokens' last use failed");
                        }
                    }
                }
            }
            _ = shutdown.changed() => {
                gateway.inventory.flush(&store).await;
                return;
            }
        }
    }
}

async fn sweep_sessions(store: Store, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = store.delete_expired_sessions().await {
                    tracing::warn!(error = %e, "deleting expired sessions failed");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Creates the platform admin token on the first start of a database; returns it then (to be
/// printed once), `None` on later starts.
async fn ensure_platform_token(store: &Store) -> Result<Option<SecretString>, StoreError> {
    if store
        .platform_setting(PLATFORM_TOKEN_SETTING)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let token = NewToken::generate(TokenKind::Platform);
    let stored = store
        .set_platform_setting_if_absent(PLATFORM_TOKEN_SETTING, token.hash.as_str())
        .await?;
    Ok(stored.then_some(token.plaintext))
}

/// Demo mode: creates the `demo` tenant once and keeps its admin token in the data directory
/// (mode 0600) so that every `make run` can print how to sign in.
async fn ensure_demo(store: &Store, data_dir: &Path) -> Result<SecretString, StartupError> {
    let path = data_dir.join(DEMO_TOKEN_FILE);
    let slug = crate::domain::TenantSlug::parse(DEMO_SLUG).map_err(|e| StartupError::Demo(e.0))?;
    if store.tenant_by_slug(&slug).await?.is_some() {
        return std::fs::read_to_string(&path)
            .map(|t| SecretString::from(t.trim().to_owned()))
            .map_err(|e| {
                StartupError::Demo(format!(
                    "the demo tenant exists but its token file {} is unreadable ({e}); \
                     remove the data directory to start over",
                    path.display()
                ))
            });
    }
    let created = tenants::create(store, DEMO_SLUG, "Demo Corp", "admin@demo.example.com")
        .await
        .map_err(|e| StartupError::Demo(e.to_string()))?;
    write_secret_file(&path, created.admin_token.expose_secret()).map_err(StartupError::Demo)?;
    Ok(created.admin_token)
}

fn write_secret_file(path: &Path, secret: &str) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .and_then(|mut f| f.write_all(format!("{secret}\n").as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn build_router(state: AppState, site_root: &Path) -> Router {
    let session_layer =
        SessionManagerLayer::new(crate::store::SessionStoreAdapter(state.store.clone()))
            .with_name("portcullis_session")
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(state.secure_cookies)
            .with_path("/")
            .with_expiry(Expiry::OnInactivity(time::Duration::hours(8)));

    let backend: SharedBackend = Arc::new(Backend {
        state: state.clone(),
    });
    let routes = generate_route_list(app::App);
    let console = Router::new()
        .leptos_routes_with_context(&state, routes, move || provide_context(backend.clone()), {
            let options = state.leptos_options.clone();
            move || app::shell(options.clone())
        })
        .merge(crate::sso::router())
        .merge(crate::console::audit::router())
        .merge(crate::review::api::router())
        .merge(crate::oauth::router())
        .merge(crate::connections::routes::router())
        .layer(session_layer)
        .layer(from_fn_with_state(RENDER_DEADLINE, render_watchdog));

    // Bodies: the JSON API and the console take up to MAX_BODY_BYTES; the gateway its own
    // configurable limit (it answers 413 itself, as a JSON-RPC error).
    let gateway_limit = state.gateway.hub.options.max_body.max(MAX_BODY_BYTES);
    Router::new()
        .merge(
            api::router().layer(tower_http::limit::RequestBodyLimitLayer::new(
                MAX_BODY_BYTES,
            )),
        )
        .merge(
            crate::scim::router().layer(tower_http::limit::RequestBodyLimitLayer::new(
                MAX_BODY_BYTES,
            )),
        )
        .merge(crate::gateway::router())
        .merge(console.layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        )))
        .nest_service("/pkg", ServeDir::new(site_root.join("pkg")))
        .fallback(fallback)
        .route_layer(from_fn_with_state(
            state.metrics.clone(),
            ops::record_metrics,
        ))
        .layer(from_fn(same_origin_writes))
        .layer(from_fn_with_state(
            state.tenancy.clone(),
            tenancy::resolve_host,
        ))
        .merge(ops::router())
        .layer(from_fn(ops::log_errors))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            // The path only: query strings may carry codes or tokens.
            tracing::info_span!(
                "request",
                method = %req.method(),
                path = %req.uri().path(),
                request_id = %request_id,
            )
        }))
        .layer(from_fn(security_headers))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(gateway_limit))
        .with_state(state)
}

/// How long a page render may take before the watchdog starts it again.
pub const RENDER_DEADLINE: Duration = Duration::from_secs(10);

/// Leptos 0.8 can, rarely and under load, leave an async server render waiting forever for a
/// resource that has already resolved (a lost wake-up; see leptos-rs/leptos#4851 and
/// neighbours). A page GET is safe to render again, and in `SsrMode::Async` nothing has been
/// sent before the render completes, so a stalled render is dropped and started afresh; the
/// session changes of a dropped attempt were never saved (this sits outside the session layer).
/// After three stalls the client gets 503 with Retry-After instead of a hung connection.
async fn render_watchdog(State(deadline): State<Duration>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let (parts, _body) = req.into_parts();
    for attempt in 1..=3 {
        let mut retry = http::Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.clone())
            .version(parts.version)
            .body(axum::body::Body::empty())
            .unwrap_or_default();
        *retry.headers_mut() = parts.headers.clone();
        *retry.extensions_mut() = parts.extensions.clone();
        match tokio::time::timeout(deadline, next.clone().run(retry)).await {
            Ok(res) => return res,
            Err(_) => tracing::warn!(attempt, "page render stalled; rendering it again"),
        }
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(http::header::RETRY_AFTER, "1")],
        "the page could not be rendered; try again\n",
    )
        .into_response()
}

/// Headers every response carries unless a handler set them: no framing (clickjacking), no MIME
/// sniffing, no referrer to other origins, no caching of pages that hold session data or tokens.
async fn security_headers(req: Request, next: Next) -> Response {
    use http::header;
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    res
}

async fn fallback(req: Request) -> Response {
    if req.uri().path().starts_with("/api/") {
        ApiError::NotFound.into_response()
    } else {
        tenancy::not_found()
    }
}

/// Defence in depth against cross-site form posts (besides the per-form CSRF token and
/// SameSite cookies): a state-changing browser request whose `Origin` is not this host is
/// refused. The JSON API is exempt: it authenticates with bearer tokens, never cookies.
async fn same_origin_writes(req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    if let Some(origin) = req.headers().get(http::header::ORIGIN) {
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://").map(|(_, h)| h));
        if origin_host.is_none() || origin_host != host {
            tracing::warn!("cross-origin form post refused");
            return (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    /// A page handler that stalls forever on its first `stalls` calls, then answers.
    fn stalling_app(stalls: usize) -> (Router, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let handler = move || {
            let c = c.clone();
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < stalls {
                    std::future::pending::<()>().await;
                }
                "page"
            }
        };
        let app = Router::new()
            .route("/page", axum::routing::get(handler.clone()).post(handler))
            .layer(from_fn_with_state(
                Duration::from_millis(50),
                render_watchdog,
            ));
        (app, calls)
    }

    fn req(method: &str) -> Request {
        http::Request::builder()
            .method(method)
            .uri("/page")
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_stalled_page_render_is_rendered_again() {
        let (app, calls) = stalling_app(1);
        let res = app.oneshot(req("GET")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_page_that_keeps_stalling_gets_503_with_retry_after() {
        let (app, calls) = stalling_app(usize::MAX);
        let res = app.oneshot(req("GET")).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[http::header::RETRY_AFTER], "1");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn form_posts_are_never_repeated() {
        let (app, calls) = stalling_app(0);
        let res = app.oneshot(req("POST")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
