//! Single sign-on against a real OpenID Provider process (panva's oidc-provider, scripted in
//! tests/fixtures/idp.mjs): the full authorization-code + PKCE sign-in over HTTP, the portal it
//! leads to, groups from the claim driving access, and every way a sign-in must fail.

use crate::conformance::{node22, start_listening, Listening};
use crate::gateway::add_server_ungranted;
use crate::gateway::fixture_path;
use crate::gateway_sessions::stdio_fixture;
use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::header::{HOST, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;

on_both_engines!(
    users_sign_in_with_sso_and_see_what_policy_grants_them,
    bad_sign_ins_are_refused_and_change_nothing,
);

/// The IdP fixture for an app: its redirect URI is the app's acme callback.
async fn idp(app: &TestApp, extra: &[(&str, &str)]) -> Listening {
    let mut cmd = tokio::process::Command::new(node22());
    cmd.arg(fixture_path("idp.mjs"))
        .env(
            "IDP_REDIRECT_URIS",
            format!("http://acme.localhost:{}/auth/callback", app.port),
        )
        .env("IDP_WATCH_STDIN", "0")
        .stdin(std::process::Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    start_listening(cmd).await
}

/// A browser: one cookie jar per host:port, redirects followed by hand (so each hop is seen),
/// `acme.localhost` resolved to the app.
pub(crate) struct Agent {
    pub(crate) client: reqwest::Client,
    jar: HashMap<String, HashMap<String, String>>,
}

impl Agent {
    pub(crate) fn new(app: &TestApp) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(
                "acme.localhost",
                std::net::SocketAddr::from(([127, 0, 0, 1], app.port)),
            )
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap();
        Self {
            client,
            jar: HashMap::new(),
        }
    }

    fn key(url: &reqwest::Url) -> String {
        format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        )
    }

    pub(crate) async fn send(&mut self, req: reqwest::RequestBuilder) -> reqwest::Response {
        let req = req.build().unwrap();
        let key = Self::key(req.url());
        let cookies = self
            .jar
            .get(&key)
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let mut req = req;
        if !cookies.is_empty() {
            req.headers_mut()
                .insert(reqwest::header::COOKIE, cookies.parse().unwrap());
        }
        let res = self.client.execute(req).await.unwrap();
        for c in res.headers().get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            let pair = c.split(';').next().unwrap();
            if let Some((k, v)) = pair.split_once('=') {
                let jar = self.jar.entry(key.clone()).or_default();
                if v.is_empty() || c.to_ascii_lowercase().contains("max-age=0") {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_owned(), v.to_owned());
                }
            }
        }
        res
    }

    pub(crate) async fn get(&mut self, url: &str) -> reqwest::Response {
        let req = self.client.get(url);
        self.send(req).await
    }

    /// Follows redirects from `url` until a response that is not a redirect or leaves for
    /// `stop_at` (a URL prefix); returns the last response and its URL.
    pub(crate) async fn follow(
        &mut self,
        mut url: String,
        stop_at: Option<&str>,
    ) -> (String, reqwest::Response) {
        for _ in 0..10 {
            let res = self.get(&url).await;
            if !res.status().is_redirection() {
                return (url, res);
            }
            let loc = res.headers()[LOCATION].to_str().unwrap().to_owned();
            let next = reqwest::Url::parse(&url)
                .unwrap()
                .join(&loc)
                .unwrap()
                .to_string();
            if stop_at.is_some_and(|p| next.starts_with(p)) {
                return (next, res);
            }
            url = next;
        }
        panic!("too many redirects from {url}");
    }
}

fn app_url(app: &TestApp, path: &str) -> String {
    format!("http://acme.localhost:{}{path}", app.port)
}

/// Signs `login` in at the IdP for a sign-in the app started; returns the callback URL the IdP
/// sends the browser to (not yet visited).
async fn idp_login(agent: &mut Agent, app: &TestApp, login: &str) -> String {
    let res = agent.get(&app_url(app, "/auth/login")).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    let auth_url = res.headers()[LOCATION].to_str().unwrap().to_owned();
    login_at(agent, app, &auth_url, login).await
}

async fn login_at(agent: &mut Agent, app: &TestApp, auth_url: &str, login: &str) -> String {
    assert!(
        auth_url.contains("code_challenge_method=S256"),
        "PKCE: {auth_url}"
    );
    assert!(auth_url.contains("nonce="), "nonce: {auth_url}");
    let callback = app_url(app, "/auth/callback");
    let (form_url, res) = agent.follow(auth_url.to_owned(), Some(&callback)).await;
    assert_eq!(res.status(), StatusCode::OK, "the login form");
    let html = res.text().await.unwrap();
    let action = html
        .split("action=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the form's action");
    let post_url = reqwest::Url::parse(&form_url)
        .unwrap()
        .join(action)
        .unwrap();
    let req = agent
        .client
        .post(post_url.clone())
        .form(&[("login", login)]);
    let res = agent.send(req).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "login accepted");
    let next = post_url
        .join(res.headers()[LOCATION].to_str().unwrap())
        .unwrap()
        .to_string();
    let (cb, _) = agent.follow(next, Some(&callback)).await;
    assert!(cb.starts_with(&callback), "{cb}");
    cb
}

async fn configure_sso(
    app: &TestApp,
    admin: &str,
    issuer: &str,
    extra: Value,
) -> reqwest::Response {
    let mut body = json!({
        "issuer": issuer, "client_id": "portcullis", "client_secret": "secret-for-tests",
        "scopes": ["openid", "email", "profile", "groups"], "groups_claim": "groups",
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    app.client
        .put(app.url("/api/v1/sso"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn users(app: &TestApp, admin: &str) -> Vec<Value> {
    let v: Value = app
        .get(&app.host(Some("acme")), "/api/v1/users")
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["users"].as_array().unwrap().clone()
}

async fn users_sign_in_with_sso_and_see_what_policy_grants_them(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    let provider = idp(&app, &[]).await;
    let res = configure_sso(&app, admin, &provider.url, json!({})).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    // The secret is write-only: never returned, never stored in plaintext.
    let v: Value = app
        .get(&app.host(Some("acme")), "/api/v1/sso")
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["settings"]["client_secret_set"], true, "{v}");
    assert!(!v.to_string().contains("secret-for-tests"), "{v}");
    if let Engine::Sqlite = engine {
        for f in ["portcullis.db", "portcullis.db-wal"] {
            let bytes = std::fs::read(app.data_dir.join(f)).unwrap_or_default();
            let needle = b"secret-for-tests";
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{f}");
        }
    }
    // The sales group (from the IdP's claim) may use the crm server.
    let tag = uuid::Uuid::new_v4().to_string();
    add_server_ungranted(&app, "acme", admin, "crm", stdio_fixture(&tag)).await;
    let res = app
        .client
        .post(app.url("/api/v1/registries"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(admin)
        .json(&json!({"slug": "sales", "servers": ["crm"], "grants": [{"subject": "group:sales"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    // The portal offers SSO.
    let mut bob = Agent::new(&app);
    let page = bob.get(&app_url(&app, "/")).await.text().await.unwrap();
    assert!(page.contains("id=\"sso-sign-in\""), "{page}");
    // Bob signs in: code + PKCE + nonce + state, all the way through the IdP.
    let cb = idp_login(&mut bob, &app, "bob").await;
    let res = bob.get(&cb).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    assert_eq!(res.headers()[LOCATION], "/");
    let page = bob.get(&app_url(&app, "/")).await.text().await.unwrap();
    assert!(page.contains("bob@acme.test"), "{page}");
    assert!(
        page.contains("id=\"portal-server-crm\""),
        "bob sees crm: {page}"
    );
    assert!(page.contains(&format!("http://acme.localhost:{}/mcp/crm", app.port)));
    for client in ["Claude Desktop", "Cursor", "VS Code"] {
        assert!(page.contains(client), "{client} snippet");
    }
    // Created on first sign-in, with the IdP's groups; not an admin.
    let all = users(&app, admin).await;
    let b = all
        .iter()
        .find(|u| u["email"] == "bob@acme.test")
        .expect("bob was created");
    assert_eq!(b["groups"], json!(["sales"]), "{b}");
    assert_eq!(b["source"], "sso");
    let res = bob
        .get(&app_url(&app, "/admin"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        res.contains("Administrator sign-in"),
        "SSO users are not admins by default"
    );
    let page = bob.get(&app_url(&app, "/")).await.text().await.unwrap();
    assert!(
        page.contains("bob@acme.test"),
        "visiting /admin keeps his portal session"
    );

    // Carol has no groups: signed in, but nothing is granted to her.
    let mut carol = Agent::new(&app);
    let cb = idp_login(&mut carol, &app, "carol").await;
    assert_eq!(carol.get(&cb).await.status(), StatusCode::SEE_OTHER);
    let page = carol.get(&app_url(&app, "/")).await.text().await.unwrap();
    assert!(page.contains("id=\"portal-no-servers\""), "{page}");

    // Groups are replaced at every sign-in: the IdP now says bob is only in "support".
    drop(provider);
    let provider = idp(
        &app,
        &[(
            "IDP_USERS",
            r#"[{"sub": "bob", "email": "bob@acme.test", "name": "Bob", "groups": ["support"]}]"#,
        )],
    )
    .await;
    let res = configure_sso(&app, admin, &provider.url, json!({"client_secret": ""})).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "an empty secret keeps the stored one"
    );
    let mut bob2 = Agent::new(&app);
    let cb = idp_login(&mut bob2, &app, "bob").await;
    assert_eq!(bob2.get(&cb).await.status(), StatusCode::SEE_OTHER);
    let all = users(&app, admin).await;
    let b = all.iter().find(|u| u["email"] == "bob@acme.test").unwrap();
    assert_eq!(b["groups"], json!(["support"]), "{b}");
    let page = bob2.get(&app_url(&app, "/")).await.text().await.unwrap();
    assert!(
        page.contains("id=\"portal-no-servers\""),
        "sales access went with the group"
    );
    // Signing out ends the portal session.
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let req = bob2
        .client
        .post(app_url(&app, "/auth/logout"))
        .header("origin", format!("http://acme.localhost:{}", app.port))
        .form(&[("csrf", csrf)]);
    assert_eq!(bob2.send(req).await.status(), StatusCode::SEE_OTHER);
    let page = bob2.get(&app_url(&app, "/")).await.text().await.unwrap();
    assert!(page.contains("id=\"sso-sign-in\""));
    app.stop().await;
}

async fn bad_sign_ins_are_refused_and_change_nothing(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    // Settings that cannot work are refused, and nothing is stored.
    let res = configure_sso(&app, admin, "http://idp.example.com", json!({})).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = configure_sso(&app, admin, "http://127.0.0.1:9", json!({})).await;
    assert_eq!(
        res.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "discovery must answer"
    );
    let mut agent = Agent::new(&app);
    let res = agent.get(&app_url(&app, "/auth/login")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "no SSO configured");

    let provider = idp(&app, &[]).await;
    let res = configure_sso(
        &app,
        admin,
        &provider.url,
        json!({"allowed_domains": ["acme.test"]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let count = users(&app, admin).await.len();

    // Wrong state: the callback is not for this browser's sign-in.
    let cb = idp_login(&mut agent, &app, "alice").await;
    let forged = regex_replace(&cb, "state=", "state=x");
    let res = agent.get(&forged).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("state"));
    // The real callback no longer works either: a sign-in is used once.
    let res = agent.get(&cb).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // Wrong nonce: the IdP is asked (by an attacker's link) for a token with another nonce.
    let mut agent = Agent::new(&app);
    let res = agent.get(&app_url(&app, "/auth/login")).await;
    let auth_url = res.headers()[LOCATION].to_str().unwrap().to_owned();
    let tampered = regex_replace(&auth_url, "nonce=", "nonce=attacker");
    let cb = login_at(&mut agent, &app, &tampered, "alice").await;
    let res = agent.get(&cb).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("nonce"));

    // Not an allowed domain.
    let mut agent = Agent::new(&app);
    let cb = idp_login(&mut agent, &app, "carol").await;
    let res = agent.get(&cb).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("other.test"));

    // An expired code.
    drop(provider);
    let provider = idp(&app, &[("IDP_CODE_TTL", "1")]).await;
    configure_sso(&app, admin, &provider.url, json!({})).await;
    let mut agent = Agent::new(&app);
    let cb = idp_login(&mut agent, &app, "alice").await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let res = agent.get(&cb).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("expired or already used"));

    // A tampered ID token (payload changed, signature kept).
    drop(provider);
    let provider = idp(&app, &[("IDP_TAMPER", "1")]).await;
    configure_sso(&app, admin, &provider.url, json!({})).await;
    let mut agent = Agent::new(&app);
    let cb = idp_login(&mut agent, &app, "alice").await;
    let res = agent.get(&cb).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("not valid"));

    // None of it signed anyone in or created anyone.
    assert_eq!(users(&app, admin).await.len(), count);
    let page = agent.get(&app_url(&app, "/")).await.text().await.unwrap();
    assert!(!page.contains("alice@acme.test") && !page.contains("mallory"));

    // A deactivated user cannot sign in.
    drop(provider);
    let provider = idp(&app, &[]).await;
    configure_sso(&app, admin, &provider.url, json!({})).await;
    let mut agent = Agent::new(&app);
    let cb = idp_login(&mut agent, &app, "alice").await;
    assert_eq!(agent.get(&cb).await.status(), StatusCode::SEE_OTHER);
    let alice = users(&app, admin)
        .await
        .into_iter()
        .find(|u| u["email"] == "alice@acme.test")
        .unwrap();
    let res = app
        .client
        .patch(app.url(&format!("/api/v1/users/{}", alice["id"].as_str().unwrap())))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(admin)
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let page = agent.get(&app_url(&app, "/")).await.text().await.unwrap();
    assert!(
        !page.contains("alice@acme.test"),
        "her portal session ended"
    );
    let mut agent = Agent::new(&app);
    let cb = idp_login(&mut agent, &app, "alice").await;
    let res = agent.get(&cb).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("deactivated"));
    app.stop().await;
}

/// Replaces the value of a query parameter (`name=` prefix) with `with` + the old value's start.
fn regex_replace(url: &str, param: &str, with: &str) -> String {
    let mut u = reqwest::Url::parse(url).unwrap();
    let name = param.trim_end_matches('=');
    let replacement = with.trim_start_matches(param).to_owned();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            if k == name {
                (
                    k.into_owned(),
                    format!("{replacement}{}", &v[..4.min(v.len())]),
                )
            } else {
                (k.into_owned(), v.into_owned())
            }
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}
