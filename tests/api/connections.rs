//! Users' own upstream accounts, against a real OAuth-protected upstream: panva's oidc-provider
//! as its authorization server (tests/fixtures/oauth_as.mjs: dynamic registration, PKCE,
//! resource indicators, JWT access tokens with the MCP server as audience, rotating refresh
//! tokens, RFC 7009 revocation) and the project's MCP fixture validating those tokens
//! (`--oauth-issuer`). A user connects in the portal, calls through the gateway, the token
//! expires and is refreshed, the user disconnects and the upstream revokes; deprovisioning ends
//! every connection; a per-user static secret works the same way. The upstream's tokens and
//! the user's secret are found nowhere a client, an admin, the audit log, the log or the raw
//! database could show them.

use crate::access::api;
use crate::conformance::{node22, start_listening, Listening};
use crate::gateway::{add_server, fixture_path, user_token};
use crate::gateway_sessions::{messages, Mcp};
use crate::helpers::{spawn_app, Browser, Engine, TestApp};
use crate::on_both_engines;
use crate::sso::Agent;
use reqwest::header::{HOST, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

on_both_engines!(users_connect_their_own_oauth_accounts_and_only_the_gateway_holds_the_tokens);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_static_secrets_and_deprovisioning() {
    static_secrets(Engine::Sqlite).await
}

/// Every log line of this test process from the moment the first test asks (one process-wide
/// subscriber: `cargo test` runs every test in one process, nextest each in its own). Tests
/// look for values unique to themselves, so other tests' lines do no harm.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> Self {
        static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let w = logs.clone();
            // Everything of ours and of the HTTP client that carries upstream tokens.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "info,portcullis=trace,reqwest=trace,oauth2=trace",
                ))
                .with_ansi(false)
                .with_writer(move || w.clone())
                .try_init();
            logs
        })
        .clone()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The upstream: its authorization server and the MCP server that trusts it.
struct Upstream {
    issuer: Listening,
    mcp: Listening,
}

async fn oauth_upstream(access_ttl: u32) -> Upstream {
    let mut cmd = tokio::process::Command::new(node22());
    cmd.arg(fixture_path("oauth_as.mjs"))
        .env("OAS_ACCESS_TTL", access_ttl.to_string())
        .env("OAS_WATCH_STDIN", "0")
        .stdin(std::process::Stdio::null());
    let issuer = start_listening(cmd).await;
    let mut cmd = tokio::process::Command::new(node22());
    cmd.arg(fixture_path("everything_fixture.mjs"))
        .args(["http", "--port", "0", "--oauth-issuer"])
        .arg(&issuer.url);
    let mcp = start_listening(cmd).await;
    Upstream { issuer, mcp }
}

async fn test_json(client: &reqwest::Client, issuer: &str, what: &str) -> Value {
    client
        .get(format!("{issuer}/_test/{what}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn acme(app: &TestApp, path: &str) -> String {
    format!("http://acme.localhost:{}{path}", app.port)
}

/// Connects the signed-in browser's user at the upstream as `login`: /connect/{server}, the
/// authorization server's login form, back to /connected. Returns the page the browser lands
/// on after the callback (its Location).
async fn connect(app: &TestApp, browser: &mut Browser<'_>, server: &str, login: &str) -> String {
    let page = browser.get(&format!("/connect/{server}")).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let auth_url = page.headers[LOCATION].to_str().unwrap().to_owned();
    assert!(
        auth_url.contains("code_challenge_method=S256"),
        "PKCE: {auth_url}"
    );
    assert!(
        auth_url.contains("resource="),
        "a resource indicator: {auth_url}"
    );
    let callback = acme(app, "/connected");
    let mut at = Agent::new(app);
    let (form_url, res) = at.follow(auth_url, Some(&callback)).await;
    assert_eq!(res.status(), StatusCode::OK, "the upstream's login form");
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
    let req = at.client.post(post_url.clone()).form(&[("login", login)]);
    let res = at.send(req).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "login accepted");
    let next = post_url
        .join(res.headers()[LOCATION].to_str().unwrap())
        .unwrap()
        .to_string();
    let (cb, _) = at.follow(next, Some(&callback)).await;
    assert!(cb.starts_with(&callback), "{cb}");
    assert!(cb.contains("iss="), "RFC 9207 iss in the answer: {cb}");
    let back = browser.get(&cb[acme(app, "").len()..]).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    back.headers[LOCATION].to_str().unwrap().to_owned()
}

/// A second admin of acme (the user who connects their own accounts in these tests), made
/// with the operator CLI; the first admin stays the operator. Returns (email, admin token).
fn second_admin(app: &TestApp) -> (String, String) {
    let out = app.cli(&[
        "tenant",
        "admin-token",
        "acme",
        "--email",
        "second@acme.example",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        "second@acme.example".into(),
        v["admin_token"].as_str().unwrap().to_owned(),
    )
}

async fn audit_export(app: &TestApp, admin: &str) -> String {
    app.client
        .get(app.url("/api/v1/audit/export?format=jsonl"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A POST to the gateway as `token`; the raw answer (status, body).
async fn raw_initialize(
    app: &TestApp,
    token: &str,
    server: &str,
    capabilities: Value,
) -> (StatusCode, String) {
    let res = Mcp::new(app, "acme", server, token)
        .post(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": capabilities,
            "clientInfo": {"name": "t", "version": "0"}}}),
        )
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.text().await.unwrap())
}

async fn users_connect_their_own_oauth_accounts_and_only_the_gateway_holds_the_tokens(
    engine: Engine,
) {
    let logs = Logs::capture();
    let up = oauth_upstream(4).await;
    let app = spawn_app(engine).await;
    let acme_t = app.create_tenant("acme").await;
    let admin = acme_t.admin_token.as_str();
    add_server(
        &app,
        "acme",
        admin,
        "crm",
        json!({"transport": "streamable_http", "url": up.mcp.url}),
    )
    .await;
    let mut seen = String::new();
    let http = reqwest::Client::new();

    // Bad settings are refused and change nothing.
    for bad in [
        json!({"kind": "oauth", "value": "a-secret-without-a-client"}),
        json!({"kind": "oauth", "authorization_server": "ftp://as.example"}),
        json!({"kind": "user_header", "header": "Host"}),
    ] {
        let (s, v) = api(
            &app,
            admin,
            Method::PUT,
            "/api/v1/servers/crm/credential",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    // Each user's own OAuth account; the gateway discovers and registers itself on first use.
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/crm/credential",
        Some(json!({"kind": "oauth"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["per_user"], true, "{v}");
    seen.push_str(&v.to_string());

    let (email, second) = second_admin(&app);
    let token = user_token(&app, "acme", admin, &email).await;

    // Not connected yet: refused with where to connect — as a URL-mode elicitation for a
    // client that declared it, in the message otherwise. Nothing reached the upstream.
    let connect_url = acme(&app, "/connect/crm");
    let (s, body) = raw_initialize(&app, &token, "crm", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert_eq!(
        v["error"]["data"]["connect_url"],
        connect_url.as_str(),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&connect_url),
        "{v}"
    );
    let (_, body) = raw_initialize(
        &app,
        &token,
        "crm",
        json!({"elicitation": {"form": {}, "url": {}}}),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["error"]["code"], -32042,
        "URLElicitationRequiredError: {v}"
    );
    assert_eq!(v["error"]["data"]["elicitations"][0]["mode"], "url", "{v}");
    assert_eq!(
        v["error"]["data"]["elicitations"][0]["url"],
        connect_url.as_str(),
        "{v}"
    );
    assert_eq!(
        test_json(&http, &up.issuer.url, "registrations").await,
        json!(0)
    );

    // The user connects in the portal: discovery (RFC 9728 → RFC 8414), dynamic registration,
    // code + PKCE + resource at the upstream's authorization server.
    let mut browser = app.browser(Some("acme"));
    browser.sign_in(&second).await;
    let portal = browser.get("/").await;
    assert!(
        portal.body.contains("id=\"connect-crm\""),
        "a Connect button: {}",
        portal.body
    );
    // Someone not signed in is sent to sign in first.
    let anon = app
        .get(&app.host(Some("acme")), "/connect/crm")
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::SEE_OTHER);
    assert!(anon.headers()[LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/auth/login?return_to="));
    let landed = connect(&app, &mut browser, "crm", "alice").await;
    assert_eq!(landed, "/#portal-server-crm");
    assert_eq!(
        test_json(&http, &up.issuer.url, "registrations").await,
        json!(1)
    );
    let portal = browser.get("/").await;
    assert!(
        portal.body.contains("Your account for crm is connected."),
        "{}",
        portal.body
    );
    assert!(portal.body.contains("Connected since"), "{}", portal.body);
    assert!(portal.body.contains("id=\"disconnect-crm\""));
    seen.push_str(&portal.body);

    // Calls go through with the user's own upstream identity.
    let mut mcp = Mcp::new(&app, "acme", "crm", &token);
    seen.push_str(&mcp.initialize().await.to_string());
    let who = mcp.call_text(1, "whoami", json!({})).await;
    assert_eq!(who, format!("sub=alice aud={}", up.mcp.url));
    seen.push_str(&who);
    let (_, conns) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/crm/connections",
        None,
    )
    .await;
    assert_eq!(conns["mode"], "oauth", "{conns}");
    assert_eq!(conns["connections"][0]["user"], email.as_str(), "{conns}");
    assert_eq!(conns["connections"][0]["kind"], "oauth", "{conns}");
    seen.push_str(&conns.to_string());
    let grants = test_json(&http, &up.issuer.url, "grants").await;
    assert_eq!(grants["authorization_code"], 1, "{grants}");
    assert_eq!(grants["refresh_token"], 0, "{grants}");

    // The access token expires; the gateway refreshes it (with the same resource) before use.
    tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
    let who = mcp.call_text(2, "whoami", json!({})).await;
    assert_eq!(who, format!("sub=alice aud={}", up.mcp.url));
    let grants = test_json(&http, &up.issuer.url, "grants").await;
    assert_eq!(grants["refresh_token"], 1, "refreshed once: {grants}");
    let requests = test_json(&http, &up.issuer.url, "token-requests").await;
    let refresh = requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["grant_type"] == "refresh_token")
        .unwrap();
    assert_eq!(refresh["resource"], up.mcp.url.as_str(), "{requests}");
    // An agent of this user uses the user's connection, and only through the gateway.
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/agents",
        Some(json!({
        "slug": "helper", "owner": email, "tool_set": [{"server": "crm", "tools": ["whoami"]}]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, t) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/agents/helper/tokens",
        Some(json!({})),
    )
    .await;
    let mut bot = Mcp::new(&app, "acme", "agents/helper", t["token"].as_str().unwrap());
    bot.initialize().await;
    let who = bot.call_text(1, "crm__whoami", json!({})).await;
    assert_eq!(who, format!("sub=alice aud={}", up.mcp.url));

    // The user disconnects: the secret goes, and the upstream's revocation endpoint is called.
    let portal = browser.get("/").await;
    let action = portal
        .form_action("disconnect-crm")
        .expect("a Disconnect form");
    let csrf = portal.input_value("csrf").unwrap();
    browser
        .post_form(
            &action,
            &[
                ("csrf", &csrf),
                ("form[op]", "portal_disconnect"),
                ("form[slug]", "crm"),
            ],
            "/",
        )
        .await;
    let portal = browser.get("/").await;
    assert!(
        portal
            .body
            .contains("Your account for crm is disconnected and revoked upstream."),
        "{}",
        portal.body
    );
    let revocations = test_json(&http, &up.issuer.url, "revocations").await;
    let r = &revocations[0];
    assert_eq!(r["token_type"], "refresh_token", "{revocations}");
    assert_eq!(r["found"], true, "{revocations}");
    assert_eq!(r["revoked"], true, "{revocations}");
    // The next call is refused at the gateway, and so is the agent's.
    let res = mcp
        .post(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}}}))
        .send()
        .await
        .unwrap();
    let body = res.text().await.unwrap();
    let v = &messages("application/json", &body)[0];
    assert_eq!(v["error"]["code"], -32001, "{v}");
    seen.push_str(&body);
    let (_, conns) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/crm/connections",
        None,
    )
    .await;
    assert_eq!(conns["connections"], json!([]), "{conns}");

    // Connected again, then deprovisioned: the connection ends and is revoked upstream.
    connect(&app, &mut browser, "crm", "alice").await;
    let mut mcp = Mcp::new(&app, "acme", "crm", &token);
    mcp.initialize().await;
    assert_eq!(
        mcp.call_text(1, "whoami", json!({})).await,
        format!("sub=alice aud={}", up.mcp.url)
    );
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/tokens/revoke",
        Some(json!({"user_email": email})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["upstream"][0]["server"], "crm", "{v}");
    assert_eq!(v["upstream"][0]["upstream_revocation"], "revoked", "{v}");
    seen.push_str(&v.to_string());
    let revocations = test_json(&http, &up.issuer.url, "revocations").await;
    assert!(
        revocations
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["token_type"] == "refresh_token" && r["revoked"] == true)
            .count()
            >= 2,
        "{revocations}"
    );
    let (_, conns) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/crm/connections",
        None,
    )
    .await;
    assert_eq!(conns["connections"], json!([]), "{conns}");

    // All of it is recorded.
    let audit = audit_export(&app, admin).await;
    for action in [
        "upstream.oauth_client",
        "upstream.connect",
        "upstream.token_refresh",
        "upstream.disconnect",
    ] {
        assert!(audit.contains(action), "{action} recorded");
    }
    assert!(audit.contains("not_connected"), "refusals recorded");

    // Token brokering: no token the upstream issued is anywhere but upstream.
    let issued = test_json(&http, &up.issuer.url, "issued").await;
    let issued: Vec<String> = issued
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert!(issued.len() >= 4, "{issued:?}");
    let dump = crate::vault::database_bytes(&app, engine);
    let log = logs.text();
    let (_, users) = api(&app, admin, Method::GET, "/api/v1/users", None).await;
    let user_id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == email.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        log.contains(&user_id),
        "this test's log lines were captured"
    );
    for t in &issued {
        assert!(
            !seen.contains(t.as_str()),
            "a client or admin saw an upstream token"
        );
        assert!(
            !audit.contains(t.as_str()),
            "the audit log holds an upstream token"
        );
        assert!(
            !dump.contains(t.as_str()),
            "an upstream token in plaintext at rest"
        );
        assert!(!log.contains(t.as_str()), "an upstream token in the log");
    }
}

async fn static_secrets(engine: Engine) {
    let logs = Logs::capture();
    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(fixture_path("everything_fixture.mjs"))
        .arg("http")
        .args(["--port", "0", "--require-header"])
        .arg(format!("x-api-key={canary}"));
    let upstream = start_listening(cmd).await;
    let app = spawn_app(engine).await;
    let acme_t = app.create_tenant("acme").await;
    let admin = acme_t.admin_token.as_str();
    add_server(
        &app,
        "acme",
        admin,
        "kb",
        json!({"transport": "streamable_http", "url": upstream.url}),
    )
    .await;
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/kb/credential",
        Some(json!({"kind": "user_header", "header": "X-Api-Key"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (email, second) = second_admin(&app);
    let mine = user_token(&app, "acme", admin, &email).await;
    let other = user_token(&app, "acme", admin, "dev@acme.example").await;
    let mut seen = String::new();

    // The user sets their own secret in the portal; bad input changes nothing.
    let mut browser = app.browser(Some("acme"));
    browser.sign_in(&second).await;
    let portal = browser.get("/").await;
    let action = portal.form_action("save-secret-kb").expect("a secret form");
    let csrf = portal.input_value("csrf").unwrap();
    browser
        .post_form(
            &action,
            &[
                ("csrf", &csrf),
                ("form[op]", "portal_set_secret"),
                ("form[slug]", "kb"),
                ("form[secret_value]", "bad\u{7}value"),
            ],
            "/",
        )
        .await;
    let portal = browser.get("/").await;
    assert!(portal.body.contains("Not stored"), "{}", portal.body);
    assert!(portal.body.contains("Not connected"), "{}", portal.body);
    browser
        .post_form(
            &action,
            &[
                ("csrf", &csrf),
                ("form[op]", "portal_set_secret"),
                ("form[slug]", "kb"),
                ("form[secret_value]", &canary),
            ],
            "/",
        )
        .await;
    let portal = browser.get("/").await;
    assert!(
        portal.body.contains("Your secret for kb is stored."),
        "{}",
        portal.body
    );
    seen.push_str(&portal.body);

    // The user's calls carry it; another user's are refused with where to set theirs.
    let mut mcp = Mcp::new(&app, "acme", "kb", &mine);
    seen.push_str(&mcp.initialize().await.to_string());
    let text = mcp.call_text(1, "echo", json!({"message": "mine"})).await;
    assert_eq!(text, "Echo: mine");
    let (s, body) = raw_initialize(&app, &other, "kb", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("/connect/kb"), "{body}");
    seen.push_str(&body);
    let (_, conns) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/kb/connections",
        None,
    )
    .await;
    assert_eq!(conns["mode"], "static", "{conns}");
    assert_eq!(conns["connections"][0]["kind"], "static", "{conns}");
    seen.push_str(&conns.to_string());

    // An admin ends it (the user is told by the audit trail; nothing to revoke upstream).
    let (s, v) = api(
        &app,
        admin,
        Method::DELETE,
        &format!("/api/v1/servers/kb/connections/{email}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["upstream_revocation"], "none", "{v}");
    let (s, _) = api(
        &app,
        admin,
        Method::DELETE,
        &format!("/api/v1/servers/kb/connections/{email}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "already ended");
    let res = mcp
        .post(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "x"}}}))
        .send()
        .await
        .unwrap();
    let body = res.text().await.unwrap();
    assert!(body.contains("-32001"), "{body}");

    // Set again, then the user is deactivated: their secret is deleted.
    browser
        .post_form(
            &action,
            &[
                ("csrf", &csrf),
                ("form[op]", "portal_set_secret"),
                ("form[slug]", "kb"),
                ("form[secret_value]", &canary),
            ],
            "/",
        )
        .await;
    let (_, conns) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/kb/connections",
        None,
    )
    .await;
    assert_eq!(conns["connections"].as_array().unwrap().len(), 1, "{conns}");
    // An admin sees it on the console's Credentials page and ends it there.
    let mut console = app.browser(Some("acme"));
    console.sign_in(admin).await;
    let page = console.get("/admin/credentials").await;
    assert!(page.body.contains("1 user(s) connected"), "{}", page.body);
    let end = page
        .form_action("end-kb-second-acme-example")
        .expect("an End button for the connection");
    let user_id = page
        .body
        .split("name=\"form[user_id]\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let admin_csrf = page.input_value("csrf").unwrap();
    console
        .post_form(
            &end,
            &[
                ("csrf", &admin_csrf),
                ("form[op]", "connection_end"),
                ("form[slug]", "kb"),
                ("form[user_id]", &user_id),
            ],
            "/admin/credentials",
        )
        .await;
    let page = console.get("/admin/credentials").await;
    assert!(
        page.body.contains("connection to kb ended"),
        "{}",
        page.body
    );
    let (_, conns) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/kb/connections",
        None,
    )
    .await;
    assert_eq!(conns["connections"], json!([]), "{conns}");
    // Set once more, then the user is deactivated.
    browser
        .post_form(
            &action,
            &[
                ("csrf", &csrf),
                ("form[op]", "portal_set_secret"),
                ("form[slug]", "kb"),
                ("form[secret_value]", &canary),
            ],
            "/",
        )
        .await;
    let dev_id = {
        let (_, users) = api(&app, admin, Method::GET, "/api/v1/users", None).await;
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["email"] == email.as_str())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let dump_before = crate::vault::database_bytes(&app, engine);
    assert!(!dump_before.contains(&canary), "no plaintext at rest");
    let res = app
        .client
        .patch(app.url(&format!("/api/v1/users/{dev_id}")))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(admin)
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    let (_, conns) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/kb/connections",
        None,
    )
    .await;
    assert_eq!(
        conns["connections"],
        json!([]),
        "deprovisioning ended it: {conns}"
    );
    let audit = audit_export(&app, admin).await;
    assert!(audit.contains("upstream.disconnect"));
    assert!(!audit.contains(&canary));
    assert!(!seen.contains(&canary));
    assert!(!logs.text().contains(&canary), "not in the log");
}
