//! The browser side of connecting an account (tenant host):
//!
//! - `GET /connect/{server}` — signed-in users only (else SSO first, then back here). For an
//!   OAuth server: a fresh state and PKCE verifier go into the browser's session (the verifier
//!   sealed) and the browser goes to the upstream's authorization server. For a per-user static
//!   secret: the portal's form for it.
//! - `GET /connected` — the redirect URI: checks the state (and that the same user is still
//!   signed in, within ten minutes), exchanges the code, seals the tokens in the vault, records
//!   and announces the connection, and returns to the portal.

use super::{oauth, Mode, PerUser};
use crate::auth::SESSION_FLASH;
use crate::domain::{ServerSlug, ServerTransport};
use crate::state::AppState;
use crate::tenancy::Host;
use app::api::{Flash, FlashKind};
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

const SESSION_CONNECT: &str = "connect_pending";
/// How long a connection may take at the upstream.
const MAX_AGE_S: i64 = 600;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/connect/{server}", get(connect))
        .route("/connected", get(connected))
}

#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    /// Sealed under the master key.
    verifier: String,
    server: String,
    user_id: String,
    started: i64,
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <link rel=\"stylesheet\" href=\"/pkg/portcullis.css\"></head><body><main>\
         <h1>{t}</h1><p id=\"connect-error\">{m}</p><p><a href=\"/\">Back to the portal</a></p>\
         </main></body></html>",
        t = esc(title),
        m = esc(message)
    );
    (status, Html(body)).into_response()
}

async fn flash_and_back(
    session: &Session,
    kind: FlashKind,
    message: String,
    slug: &str,
) -> Response {
    if let Err(e) = session.insert(SESSION_FLASH, Flash { kind, message }).await {
        tracing::warn!(error = %e, "a flash message could not be kept");
    }
    Redirect::to(&format!("/#portal-server-{slug}")).into_response()
}

/// The per-user setting of a server, with what the gateway needs to use it.
pub(crate) async fn per_user(
    state: &AppState,
    tenant_id: &str,
    row: &crate::store::ServerRow,
) -> Option<PerUser> {
    let mode = super::mode_of(state, tenant_id, row).await.ok().flatten()?;
    let url = match row.upstream() {
        Ok(ServerTransport::StreamableHttp { url }) => url.as_str().to_owned(),
        _ => return None,
    };
    Some(PerUser {
        server_id: row.server_id.clone(),
        slug: row.slug.clone(),
        url,
        mode,
    })
}

async fn connect(
    State(state): State<AppState>,
    host: Option<Extension<Host>>,
    session: Session,
    Path(slug): Path<String>,
) -> Response {
    let Some(t) = crate::oauth::tenant_of(host) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(parsed) = ServerSlug::parse(&slug) else {
        return page(
            StatusCode::NOT_FOUND,
            "No such server",
            "There is no such server.",
        );
    };
    let Some(user) = crate::oauth::signed_in(&state, &session, &t).await else {
        let back: String =
            url::form_urlencoded::byte_serialize(format!("/connect/{slug}").as_bytes()).collect();
        return Redirect::to(&format!("/auth/login?return_to={back}")).into_response();
    };
    let row = match state.store.server_by_slug(&t.tenant_id, &parsed).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such server",
                "There is no such server.",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "reading a server failed");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "Try again shortly.",
            );
        }
    };
    if !state
        .gateway
        .tenant_policy(&t.tenant_id)
        .reaches(&user.user_id, &row.slug)
    {
        return page(
            StatusCode::FORBIDDEN,
            "No access",
            "You have no access to this server: ask your administrator.",
        );
    }
    let Some(pu) = per_user(&state, &t.tenant_id, &row).await else {
        return page(
            StatusCode::BAD_REQUEST,
            "Nothing to connect",
            "This server needs no account of your own.",
        );
    };
    let settings = match &pu.mode {
        Mode::Static { .. } => {
            return Redirect::to(&format!("/#portal-server-{}", row.slug)).into_response()
        }
        Mode::OAuth(s) => s.clone(),
    };
    let started = match oauth::start(&state, &t, &pu, &settings).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(tenant.id = %t.tenant_id, server.slug = %row.slug, error = %e,
                "starting an upstream connection failed");
            state
                .audit
                .note(
                    crate::audit::Event::new(
                        &t.tenant_id,
                        crate::audit::Category::Security,
                        "upstream.connect",
                        "failed",
                    )
                    .by(&user.user_id, &user.email)
                    .target(row.slug.clone())
                    .detail(serde_json::json!({"reason": e.to_string()})),
                )
                .await;
            return page(
                StatusCode::BAD_GATEWAY,
                "Cannot connect now",
                &format!("{} cannot be connected right now: {e}", row.name),
            );
        }
    };
    let pending = Pending {
        state: started.state.clone(),
        verifier: state.keys.seal(
            &format!("connect-pkce/{}", t.tenant_id),
            started.verifier.as_bytes(),
        ),
        server: row.slug.clone(),
        user_id: user.user_id.clone(),
        started: super::now_unix(),
    };
    if let Err(e) = session.insert(SESSION_CONNECT, &pending).await {
        tracing::error!(error = %e, "storing the pending connection failed");
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "Try again shortly.",
        );
    }
    Redirect::to(&started.url).into_response()
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

async fn connected(
    State(state): State<AppState>,
    host: Option<Extension<Host>>,
    session: Session,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(t) = crate::oauth::tenant_of(host) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let pending = session
        .remove::<Pending>(SESSION_CONNECT)
        .await
        .ok()
        .flatten();
    let Some(pending) = pending else {
        return page(
            StatusCode::BAD_REQUEST,
            "No connection under way",
            "No connection was started in this browser (or it was finished already): start again from the portal.",
        );
    };
    let state_ok = q.state.as_deref().is_some_and(|s| {
        use subtle::ConstantTimeEq;
        s.as_bytes().ct_eq(pending.state.as_bytes()).into()
    });
    if !state_ok {
        return page(
            StatusCode::BAD_REQUEST,
            "Connection refused",
            "The answer does not belong to the connection this browser started: start again from the portal.",
        );
    }
    let Some(user) = crate::oauth::signed_in(&state, &session, &t).await else {
        return page(
            StatusCode::FORBIDDEN,
            "Signed out",
            "Sign in again and start again.",
        );
    };
    if user.user_id != pending.user_id {
        return page(
            StatusCode::FORBIDDEN,
            "Connection refused",
            "The connection was started by someone else: start again from the portal.",
        );
    }
    let slug = pending.server.clone();
    let refused = |why: String| {
        let state = state.clone();
        let t = t.clone();
        let user = user.clone();
        let slug = slug.clone();
        async move {
            state
                .audit
                .note(
                    crate::audit::Event::new(
                        &t.tenant_id,
                        crate::audit::Category::Security,
                        "upstream.connect",
                        "refused",
                    )
                    .by(&user.user_id, &user.email)
                    .target(slug.clone())
                    .detail(serde_json::json!({"reason": why})),
                )
                .await;
        }
    };
    if super::now_unix() - pending.started > MAX_AGE_S {
        refused("took too long".into()).await;
        return flash_and_back(
            &session,
            FlashKind::Error,
            "The connection took too long: start again.".into(),
            &slug,
        )
        .await;
    }
    if let Some(err) = &q.error {
        let err: String = err.chars().filter(|c| !c.is_control()).take(100).collect();
        refused(format!("the upstream answered {err}")).await;
        return flash_and_back(
            &session,
            FlashKind::Error,
            format!("The connection was not made: the upstream answered {err}."),
            &slug,
        )
        .await;
    }
    let (Some(code), Some(verifier)) = (
        q.code.as_deref(),
        state
            .keys
            .open(&format!("connect-pkce/{}", t.tenant_id), &pending.verifier),
    ) else {
        refused("no code".into()).await;
        return page(
            StatusCode::BAD_REQUEST,
            "Connection refused",
            "The answer carries no code.",
        );
    };
    let verifier = zeroize::Zeroizing::new(String::from_utf8(verifier).unwrap_or_default());
    let Ok(parsed) = ServerSlug::parse(&slug) else {
        return page(
            StatusCode::NOT_FOUND,
            "No such server",
            "There is no such server.",
        );
    };
    let Ok(Some(row)) = state.store.server_by_slug(&t.tenant_id, &parsed).await else {
        return page(
            StatusCode::NOT_FOUND,
            "No such server",
            "The server was removed.",
        );
    };
    let stored = match oauth::finish(
        &state,
        &t.tenant_id,
        &row.server_id,
        code,
        &verifier,
        q.iss.as_deref(),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            refused(e.to_string()).await;
            return flash_and_back(
                &session,
                FlashKind::Error,
                format!("The connection was not made: {e}."),
                &slug,
            )
            .await;
        }
    };
    if let Err(e) = super::write(&state, &t.tenant_id, &row.server_id, &user.user_id, &stored).await
    {
        tracing::error!(error = %e, "a new upstream connection could not be stored");
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The connection could not be stored: try again.",
        );
    }
    super::connected(&state, &t, &row, &user, "oauth").await;
    flash_and_back(
        &session,
        FlashKind::Info,
        format!("Your account for {} is connected.", row.name),
        &slug,
    )
    .await
}
