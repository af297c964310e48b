//! The server side of the console's server functions (`app::api::ConsoleBackend`): sessions,
//! CSRF checks, sign-in with admin or platform tokens, and the few changes the console makes.
//!
//! Every state-changing call checks the session's anti-CSRF token first. Results and errors the
//! user should see are put in the session as a one-time "flash", so that a form posted without
//! JavaScript (which the server answers with a redirect back) shows them too.

use crate::auth::{self, SessionAuth, SESSION_AUTH, SESSION_FLASH};
use crate::domain::{DisplayName, TokenHash, TokenKind};
use crate::servers::{self, NewServer, ServerError};
use crate::state::AppState;
use crate::tenancy::{Host, Tenant};
use crate::tenants::{self, format_time, TenantError};
use app::api::{
    AddServerForm, BackendError, ConsoleBackend, ConsoleState, CreatedTenant, DiscoveryView, Flash,
    FlashKind, HostKind, IssuedToken, PlatformState, Reveal, ServerSummary, TenantConsole,
    TenantSummary, ToolView,
};
use async_trait::async_trait;
use http::request::Parts;
use secrecy::ExposeSecret;
use std::sync::Arc;
use tower_sessions::Session;

mod agents;
pub mod audit;
mod credentials;
mod filters;
mod identity;

pub struct Backend {
    pub state: AppState,
}

/// Two string fields of a JSON object (empty where missing), for listing resources and prompts.
fn pair(v: &serde_json::Value, a: &str, b: &str) -> (String, String) {
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    (s(a), s(b))
}

fn internal(e: impl std::fmt::Display) -> BackendError {
    tracing::error!(error = %e, "console operation failed");
    BackendError::Internal
}

fn session(parts: &Parts) -> Result<Session, BackendError> {
    parts
        .extensions
        .get::<Session>()
        .cloned()
        .ok_or_else(|| internal("session layer missing"))
}

fn tenant_of(parts: &Parts) -> Result<Arc<Tenant>, BackendError> {
    auth::tenant_host(parts).ok_or(BackendError::WrongHost)
}

fn platform_only(parts: &Parts) -> Result<(), BackendError> {
    match auth::host(parts) {
        Some(Host::Platform) => Ok(()),
        _ => Err(BackendError::WrongHost),
    }
}

async fn flash(
    session: &Session,
    kind: FlashKind,
    message: impl Into<String>,
) -> Result<(), BackendError> {
    session
        .insert(
            SESSION_FLASH,
            Flash {
                kind,
                message: message.into(),
            },
        )
        .await
        .map_err(internal)
}

async fn take_flash(session: &Session) -> Result<Option<Flash>, BackendError> {
    session
        .remove::<Flash>(SESSION_FLASH)
        .await
        .map_err(internal)
}

async fn require_csrf(session: &Session, csrf: &str) -> Result<(), BackendError> {
    if auth::csrf_ok(session, csrf).await {
        Ok(())
    } else {
        tracing::warn!("form refused: anti-CSRF token missing or wrong");
        Err(BackendError::Csrf)
    }
}

impl Backend {
    /// The signed-in admin of this host's tenant, if the session has one who is still an
    /// active admin (checked on every request, so deactivation takes effect at once).
    async fn signed_in_admin(
        &self,
        session: &Session,
        tenant: &Tenant,
    ) -> Result<Option<crate::store::UserRow>, BackendError> {
        // A signed-in user who is not an admin stays signed in (to the portal).
        Ok(self
            .signed_in_user(session, tenant)
            .await?
            .filter(|u| u.is_admin))
    }

    /// The session's signed-in user of this tenant (admin or not), if still active; a session
    /// whose user was deactivated or deleted is signed out here, on its next request.
    async fn signed_in_user(
        &self,
        session: &Session,
        tenant: &Tenant,
    ) -> Result<Option<crate::store::UserRow>, BackendError> {
        let Some(SessionAuth::Tenant {
            tenant_id,
            user_id,
            signed_in_at,
        }) = session
            .get::<SessionAuth>(SESSION_AUTH)
            .await
            .map_err(internal)?
        else {
            return Ok(None);
        };
        if tenant_id != tenant.tenant_id {
            return Ok(None);
        }
        match self
            .state
            .store
            .user(&tenant.tenant_id, &user_id)
            .await
            .map_err(internal)?
        {
            // Revoked ("revoke all access"): sessions signed in before that are over.
            Some(u)
                if u.active
                    && self
                        .state
                        .store
                        .sessions_revoked_at(&tenant.tenant_id, &u.user_id)
                        .await
                        .map_err(internal)?
                        .is_none_or(|at| signed_in_at > at) =>
            {
                Ok(Some(u))
            }
            _ => {
                session.remove_value(SESSION_AUTH).await.map_err(internal)?;
                Ok(None)
            }
        }
    }

    /// For a state-changing console form: the host's tenant, the session, and its signed-in
    /// admin, after the CSRF check.
    async fn admin_form(
        &self,
        parts: &Parts,
        csrf: &str,
    ) -> Result<(Arc<Tenant>, Session, crate::store::UserRow), BackendError> {
        let tenant = tenant_of(parts)?;
        let session = session(parts)?;
        require_csrf(&session, csrf).await?;
        let user = self
            .signed_in_admin(&session, &tenant)
            .await?
            .ok_or(BackendError::SignedOut)?;
        Ok((tenant, session, user))
    }

    /// A portal form's checks: this host's tenant, the session's anti-CSRF token, a signed-in
    /// active user (admin or not).
    async fn portal_form(
        &self,
        parts: &Parts,
        csrf: &str,
    ) -> Result<(Arc<Tenant>, Session, crate::store::UserRow), BackendError> {
        let tenant = tenant_of(parts)?;
        let session = session(parts)?;
        require_csrf(&session, csrf).await?;
        let user = self
            .signed_in_user(&session, &tenant)
            .await?
            .ok_or(BackendError::SignedOut)?;
        Ok((tenant, session, user))
    }

    fn server_summary(&self, tenant_slug: &str, row: &crate::store::ServerRow) -> ServerSummary {
        let view = servers::view(Some(&self.state.urls), tenant_slug, row);
        let target = match row.upstream() {
            Ok(crate::domain::ServerTransport::Stdio {
                command,
                args,
                instance,
                sandbox,
                ..
            }) => {
                let line = shlex::try_join(
                    std::iter::once(command.as_str()).chain(args.iter().map(String::as_str)),
                )
                .unwrap_or(command);
                let mut notes = Vec::new();
                if instance == crate::domain::StdioInstance::PerUser {
                    notes.push("one process per user");
                }
                if sandbox {
                    notes.push("sandboxed");
                }
                if notes.is_empty() {
                    line
                } else {
                    format!("{line} ({})", notes.join(", "))
                }
            }
            Ok(crate::domain::ServerTransport::StreamableHttp { url })
            | Ok(crate::domain::ServerTransport::Sse { url }) => url.as_str().to_owned(),
            Err(_) => String::from("(unreadable settings)"),
        };
        ServerSummary {
            slug: view.slug,
            name: view.name,
            description: view.description,
            transport: row.transport.clone(),
            target,
            endpoint: view.endpoint.unwrap_or_default(),
        }
    }

    /// Whether the session is signed in with the current platform token (a rotated token ends
    /// its sessions).
    async fn platform_signed_in(&self, session: &Session) -> Result<bool, BackendError> {
        let Some(SessionAuth::Platform { token_id }) = session
            .get::<SessionAuth>(SESSION_AUTH)
            .await
            .map_err(internal)?
        else {
            return Ok(false);
        };
        let current = auth::current_platform_token_id(&self.state.store)
            .await
            .map_err(internal)?;
        if current.as_deref() == Some(token_id.as_str()) {
            Ok(true)
        } else {
            session.remove_value(SESSION_AUTH).await.map_err(internal)?;
            Ok(false)
        }
    }
}

#[async_trait]
impl ConsoleBackend for Backend {
    async fn host_kind(&self, parts: &Parts) -> Result<HostKind, BackendError> {
        match auth::host(parts) {
            Some(Host::Platform) => Ok(HostKind::Platform),
            Some(Host::Tenant(t)) => Ok(HostKind::Tenant {
                slug: t.slug.clone(),
                name: t.name.clone(),
            }),
            None => Err(BackendError::WrongHost),
        }
    }

    async fn console_state(&self, parts: &Parts) -> Result<ConsoleState, BackendError> {
        let tenant = tenant_of(parts)?;
        let session = session(parts)?;
        let csrf = auth::csrf_token(&session).await.map_err(internal)?;
        let flash = take_flash(&session).await?;
        let mut servers = Vec::new();
        let mut issued_token = None;
        let mut discovery = None;
        let mut identity = None;
        let mut secret = None;
        let mut simulation = None;
        let console = match self.signed_in_admin(&session, &tenant).await? {
            None => None,
            Some(user) => {
                let rows = self
                    .state
                    .store
                    .list_servers(&tenant.tenant_id)
                    .await
                    .map_err(internal)?;
                let server_count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
                servers = rows
                    .iter()
                    .map(|r| self.server_summary(&tenant.slug, r))
                    .collect();
                match session
                    .id()
                    .and_then(|id| self.state.reveals.take(&id.to_string()))
                {
                    Some(Reveal::Token(t)) => issued_token = Some(t),
                    Some(Reveal::Discovery(d)) => discovery = Some(d),
                    Some(Reveal::Secret(t)) => secret = Some(t),
                    Some(Reveal::Simulation(v)) => simulation = Some(v),
                    _ => {}
                }
                identity = Some(self.identity_view(&tenant).await?);
                let counts = self
                    .state
                    .store
                    .user_counts(&tenant.tenant_id)
                    .await
                    .map_err(internal)?;
                let urls = &self.state.urls;
                Some(TenantConsole {
                    tenant_slug: tenant.slug.clone(),
                    tenant_name: tenant.name.clone(),
                    tenant_created_at: format_time(tenant.created_at),
                    user_email: user.email,
                    gateway_base_url: urls.tenant_gateway(&tenant.slug),
                    portal_url: format!("{}/", urls.tenant(&tenant.slug)),
                    user_count: counts.users,
                    admin_count: counts.admins,
                    server_count,
                })
            }
        };
        Ok(ConsoleState {
            csrf,
            flash,
            console,
            servers,
            issued_token,
            discovery,
            identity,
            secret,
            simulation,
        })
    }

    async fn portal_state(&self, parts: &Parts) -> Result<app::api::PortalState, BackendError> {
        self.portal(parts).await
    }

    async fn identity_action(
        &self,
        parts: &Parts,
        csrf: &str,
        form: app::api::IdentityForm,
    ) -> Result<bool, BackendError> {
        self.identity(parts, csrf, form).await
    }

    async fn audit_page(
        &self,
        parts: &Parts,
        query: app::api::AuditPageQuery,
    ) -> Result<app::api::AuditPage, BackendError> {
        self.audit_page_for(parts, query).await
    }

    async fn audit_action(
        &self,
        parts: &Parts,
        csrf: &str,
        form: app::api::AuditForm,
    ) -> Result<bool, BackendError> {
        self.audit_form(parts, csrf, form).await
    }

    async fn review_page(
        &self,
        parts: &Parts,
        days: u32,
    ) -> Result<app::api::ReviewPage, BackendError> {
        self.review_page_for(parts, days).await
    }

    async fn dashboard(&self, parts: &Parts) -> Result<String, BackendError> {
        self.dashboard_for(parts).await
    }

    async fn add_server(
        &self,
        parts: &Parts,
        csrf: &str,
        form: AddServerForm,
    ) -> Result<bool, BackendError> {
        let (tenant, session, user) = self.admin_form(parts, csrf).await?;
        let upstream = match form.transport.as_str() {
            "stdio" => {
                let Some(words) = shlex::split(&form.command_line) else {
                    flash(
                        &session,
                        FlashKind::Error,
                        "Not added: the command line has unbalanced quotes.",
                    )
                    .await?;
                    return Ok(false);
                };
                let mut words = words.into_iter();
                serde_json::json!({
                    "transport": "stdio",
                    "command": words.next().unwrap_or_default(),
                    "args": words.collect::<Vec<_>>(),
                    "instance": if form.instance == "per_user" { "per_user" } else { "shared" },
                    "sandbox": !form.sandbox.is_empty(),
                })
            }
            other => serde_json::json!({ "transport": other, "url": form.url.trim() }),
        };
        let input = NewServer {
            slug: form.slug,
            name: Some(form.name).filter(|n| !n.trim().is_empty()),
            description: Some(form.description),
            upstream,
        };
        match servers::add(&self.state.store, &tenant.tenant_id, input).await {
            Ok(row) => {
                self.state.refresh_snapshots().await.map_err(internal)?;
                tracing::info!(tenant.id = %tenant.tenant_id, user.id = %user.user_id, server.slug = %row.slug, "server added");
                flash(
                    &session,
                    FlashKind::Info,
                    format!("Server {} added.", row.slug),
                )
                .await?;
                Ok(true)
            }
            Err(ServerError::Store(e)) => Err(internal(e)),
            Err(e) => {
                flash(&session, FlashKind::Error, format!("Not added: {e}.")).await?;
                Ok(false)
            }
        }
    }

    async fn delete_server(
        &self,
        parts: &Parts,
        csrf: &str,
        slug: &str,
    ) -> Result<(), BackendError> {
        let (tenant, session, user) = self.admin_form(parts, csrf).await?;
        match servers::remove(&self.state.store, &tenant.tenant_id, slug).await {
            Ok(()) => {
                self.state.refresh_snapshots().await.map_err(internal)?;
                tracing::info!(tenant.id = %tenant.tenant_id, user.id = %user.user_id, server.slug = %slug, "server deleted");
                flash(&session, FlashKind::Info, format!("Server {slug} removed.")).await
            }
            Err(ServerError::Store(e)) => Err(internal(e)),
            Err(e) => flash(&session, FlashKind::Error, format!("Not removed: {e}.")).await,
        }
    }

    async fn test_server(&self, parts: &Parts, csrf: &str, slug: &str) -> Result<(), BackendError> {
        let (tenant, session, admin) = self.admin_form(parts, csrf).await?;
        let row = match crate::domain::ServerSlug::parse(slug) {
            Ok(s) => self
                .state
                .store
                .server_by_slug(&tenant.tenant_id, &s)
                .await
                .map_err(internal)?,
            Err(_) => None,
        };
        let Some(row) = row else {
            return flash(&session, FlashKind::Error, "No such server.").await;
        };
        let upstream = row.upstream().map_err(internal)?;
        let credential = match crate::connections::for_discovery(
            &self.state,
            &tenant,
            &row.slug,
            &admin,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => return flash(&session, FlashKind::Error, e).await,
        };
        let result = crate::gateway::discovery::discover(
            &self.state.gateway,
            &upstream,
            crate::gateway::discovery::Era::Auto,
            credential.as_deref(),
            self.state.gateway.env_secret(&tenant.tenant_id, &row.slug),
        )
        .await;
        let view = match result {
            Ok(d) => DiscoveryView {
                slug: row.slug.clone(),
                error: None,
                protocol_version: d.protocol_version,
                server: format!(
                    "{} {}",
                    d.server_info
                        .get("name")
                        .and_then(|v| v.as_str())
                        .unwrap_or("?"),
                    d.server_info
                        .get("version")
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                )
                .trim()
                .to_owned(),
                capabilities: serde_json::to_string_pretty(&d.capabilities).unwrap_or_default(),
                tools: d
                    .tools
                    .into_iter()
                    .map(|t| ToolView {
                        name: t.name,
                        description: t.description,
                        read_only: t.read_only,
                        destructive: t.destructive,
                        idempotent: t.idempotent,
                        open_world: t.open_world,
                    })
                    .collect(),
                resources: d.resources.iter().map(|r| pair(r, "uri", "name")).collect(),
                prompts: d
                    .prompts
                    .iter()
                    .map(|p| pair(p, "name", "description"))
                    .collect(),
            },
            Err(e) => DiscoveryView {
                slug: row.slug.clone(),
                error: Some(e),
                protocol_version: String::new(),
                server: String::new(),
                capabilities: String::new(),
                tools: Vec::new(),
                resources: Vec::new(),
                prompts: Vec::new(),
            },
        };
        let id = session.id().ok_or_else(|| internal("session without id"))?;
        self.state
            .reveals
            .put(id.to_string(), Reveal::Discovery(view));
        Ok(())
    }

    async fn issue_token(
        &self,
        parts: &Parts,
        csrf: &str,
        user_email: &str,
        label: &str,
    ) -> Result<bool, BackendError> {
        let (tenant, session, _admin) = self.admin_form(parts, csrf).await?;
        match servers::create_user_token(&self.state.store, &tenant.tenant_id, user_email, label)
            .await
        {
            Ok((user, token)) => {
                self.state.refresh_snapshots().await.map_err(internal)?;
                let id = session.id().ok_or_else(|| internal("session without id"))?;
                self.state.reveals.put(
                    id.to_string(),
                    Reveal::Token(IssuedToken {
                        user_email: user.email,
                        token: token.expose_secret().to_owned(),
                    }),
                );
                Ok(true)
            }
            Err(ServerError::Store(e)) => Err(internal(e)),
            Err(e) => {
                flash(&session, FlashKind::Error, format!("No token issued: {e}.")).await?;
                Ok(false)
            }
        }
    }

    async fn sign_in(&self, parts: &Parts, csrf: &str, token: &str) -> Result<(), BackendError> {
        let tenant = tenant_of(parts)?;
        let session = session(parts)?;
        require_csrf(&session, csrf).await?;
        let user = match TokenHash::of_presented(TokenKind::TenantAdmin, token) {
            Some(hash) => self
                .state
                .store
                .admin_by_token(&tenant.tenant_id, &hash)
                .await
                .map_err(internal)?,
            None => None,
        };
        match user {
            Some(user) => {
                auth::begin_session(
                    &session,
                    &SessionAuth::Tenant {
                        tenant_id: tenant.tenant_id.clone(),
                        user_id: user.user_id.clone(),
                        signed_in_at: crate::store::now_micros(),
                    },
                )
                .await
                .map_err(internal)?;
                tracing::info!(audit = true, tenant.id = %tenant.tenant_id, user.id = %user.user_id, "admin signed in with an admin token");
                let e = crate::audit::Event::new(
                    &tenant.tenant_id,
                    crate::audit::Category::Security,
                    "console.sign_in",
                    "ok",
                )
                .by(&user.user_id, &user.email)
                .detail(serde_json::json!({ "with": "admin token" }));
                self.state.audit.note(e).await;
            }
            None => {
                tracing::warn!(tenant.id = %tenant.tenant_id, "admin sign-in refused: invalid token");
                flash(
                    &session,
                    FlashKind::Error,
                    "That admin token is not valid for this tenant.",
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn sign_out(&self, parts: &Parts, csrf: &str) -> Result<(), BackendError> {
        let session = session(parts)?;
        require_csrf(&session, csrf).await?;
        session.flush().await.map_err(internal)?;
        Ok(())
    }

    async fn rename_tenant(
        &self,
        parts: &Parts,
        csrf: &str,
        name: &str,
    ) -> Result<(), BackendError> {
        let (tenant, session, user) = self.admin_form(parts, csrf).await?;
        match DisplayName::parse(name) {
            Err(e) => {
                flash(
                    &session,
                    FlashKind::Error,
                    format!("Not saved: the {}.", e.0),
                )
                .await?
            }
            Ok(name) => {
                self.state
                    .store
                    .rename_tenant(&tenant.tenant_id, &name)
                    .await
                    .map_err(internal)?;
                // Rebuild the directory now so that the page rendered next shows the new name.
                self.state.refresh_snapshots().await.map_err(internal)?;
                tracing::info!(tenant.id = %tenant.tenant_id, user.id = %user.user_id, "tenant renamed");
                flash(&session, FlashKind::Info, "Saved.").await?;
            }
        }
        Ok(())
    }

    async fn platform_state(&self, parts: &Parts) -> Result<PlatformState, BackendError> {
        platform_only(parts)?;
        let session = session(parts)?;
        let csrf = auth::csrf_token(&session).await.map_err(internal)?;
        let flash = take_flash(&session).await?;
        let signed_in = self.platform_signed_in(&session).await?;
        let (tenants, created) = if signed_in {
            let rows = self.state.store.list_tenants().await.map_err(internal)?;
            let tenants = rows
                .into_iter()
                .map(|r| TenantSummary {
                    console_url: self.state.urls.tenant_console(&r.slug),
                    created_at: format_time(r.created_at),
                    slug: r.slug,
                    name: r.name,
                })
                .collect();
            let created = match session
                .id()
                .and_then(|id| self.state.reveals.take(&id.to_string()))
            {
                Some(Reveal::Tenant(c)) => Some(c),
                _ => None,
            };
            (tenants, created)
        } else {
            (Vec::new(), None)
        };
        Ok(PlatformState {
            csrf,
            flash,
            signed_in,
            tenants,
            created,
        })
    }

    async fn platform_sign_in(
        &self,
        parts: &Parts,
        csrf: &str,
        token: &str,
    ) -> Result<(), BackendError> {
        platform_only(parts)?;
        let session = session(parts)?;
        require_csrf(&session, csrf).await?;
        if auth::platform_token_valid(&self.state.store, token)
            .await
            .map_err(internal)?
        {
            let token_id = auth::current_platform_token_id(&self.state.store)
                .await
                .map_err(internal)?
                .ok_or_else(|| internal("platform token vanished during sign-in"))?;
            auth::begin_session(&session, &SessionAuth::Platform { token_id })
                .await
                .map_err(internal)?;
            tracing::info!("platform operator signed in");
        } else {
            tracing::warn!("platform sign-in refused: invalid token");
            flash(
                &session,
                FlashKind::Error,
                "That platform token is not valid.",
            )
            .await?;
        }
        Ok(())
    }

    async fn platform_create_tenant(
        &self,
        parts: &Parts,
        csrf: &str,
        slug: &str,
        name: &str,
        admin_email: &str,
    ) -> Result<bool, BackendError> {
        platform_only(parts)?;
        let session = session(parts)?;
        require_csrf(&session, csrf).await?;
        if !self.platform_signed_in(&session).await? {
            return Err(BackendError::SignedOut);
        }
        match tenants::create(&self.state.store, slug, name, admin_email).await {
            Ok(created) => {
                self.state.refresh_snapshots().await.map_err(internal)?;
                // The session has an id: it was saved when it signed in.
                let id = session.id().ok_or_else(|| internal("session without id"))?;
                let slug = created.tenant.slug.clone();
                self.state.reveals.put(
                    id.to_string(),
                    Reveal::Tenant(CreatedTenant {
                        console_url: self.state.urls.tenant_console(&slug),
                        slug,
                        admin_email: created.admin_email,
                        admin_token: created.admin_token.expose_secret().to_owned(),
                    }),
                );
                Ok(true)
            }
            Err(TenantError::Store(e)) => Err(internal(e)),
            Err(e) => {
                flash(&session, FlashKind::Error, format!("Not created: {e}.")).await?;
                Ok(false)
            }
        }
    }
}
