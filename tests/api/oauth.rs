//! Portcullis as the OAuth 2.1 authorization server of its gateway: discovery from the 401,
//! dynamic registration, the consent page, PKCE, audience-bound tokens, refresh rotation with
//! reuse detection, code replay, RFC 7009 revocation — and each refusal.

use crate::access::api;
use crate::helpers::{spawn_app, Browser, Engine, TestApp};
use crate::on_both_engines;
use base64::Engine as _;
use reqwest::header::{HOST, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;

on_both_engines!(
    an_mcp_client_gets_audience_bound_tokens_through_consent,
    the_typescript_sdk_oauth_client_connects_unmodified,
    the_python_sdk_oauth_client_connects_unmodified,
);

const REDIRECT: &str = "http://127.0.0.1:9/callback";

struct Flow<'a> {
    app: &'a TestApp,
    client_id: String,
    gateway: String,
}

fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The consent page at `path` (an authorization request) as a signed-in browser: checks what
/// it shows, answers `decision`, returns where it redirects.
async fn approve_at(browser: &mut Browser<'_>, path: &str, decision: &str, client: &str) -> String {
    let page = browser.get(path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.headers["x-frame-options"], "DENY", "never framed");
    assert!(page.body.contains(client), "{}", page.body);
    let mut fields: Vec<(String, String)> = [
        "response_type",
        "client_id",
        "redirect_uri",
        "code_challenge",
        "code_challenge_method",
        "resource",
        "state",
        "scope",
        "csrf",
    ]
    .iter()
    .map(|k| {
        (
            (*k).to_owned(),
            page.input_value(k)
                .unwrap_or_default()
                .replace("&amp;", "&"),
        )
    })
    .collect();
    fields.push(("decision".into(), decision.into()));
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let res = browser.post_form("/oauth/authorize", &refs, path).await;
    assert!(res.status.is_redirection(), "{} {}", res.status, res.body);
    res.headers[LOCATION].to_str().unwrap().to_owned()
}

impl Flow<'_> {
    fn authorize_path(&self, challenge: &str, server: &str) -> String {
        let mut u = url::Url::parse("http://x/oauth/authorize").unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "st-123")
            .append_pair("scope", "mcp")
            .append_pair("resource", &format!("{}{server}", self.gateway));
        format!("{}?{}", u.path(), u.query().unwrap())
    }

    /// Through the consent page as the signed-in browser: the redirect's query.
    async fn consent(
        &self,
        browser: &mut Browser<'_>,
        challenge: &str,
        server: &str,
        decision: &str,
    ) -> std::collections::HashMap<String, String> {
        let path = self.authorize_path(challenge, server);
        let location = approve_at(browser, &path, decision, "Test Agent").await;
        assert!(location.starts_with(REDIRECT), "{location}");
        query_of(&location)
    }

    async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let res = self
            .app
            .client
            .post(self.app.url("/oauth/token"))
            .header(HOST, self.app.host(Some("acme")))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn code_for_tokens(
        &self,
        code: &str,
        verifier: &str,
        server: &str,
    ) -> (StatusCode, Value) {
        let resource = format!("{}{server}", self.gateway);
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", &self.client_id),
            ("code_verifier", verifier),
            ("resource", &resource),
        ])
        .await
    }
}

/// `initialize` at a gateway endpoint with a bearer token: the status and the challenge.
async fn init(app: &TestApp, server: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = app
        .client
        .post(app.url(&format!("/mcp/{server}")))
        .header(HOST, app.host(Some("acme")))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "oauth-test", "version": "0"}}}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let challenge = res
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (res.status(), challenge)
}

async fn an_mcp_client_gets_audience_bound_tokens_through_consent(engine: Engine) {
    let app = spawn_app(engine).await;
    let admin = crate::gateway_sessions::acme_with_fixtures(&app, &["fx", "fy"]).await;
    let admin = admin.as_str();
    let base = format!("http://{}", app.host(Some("acme")));
    let get_json = |path: String| {
        let app = &app;
        async move {
            let res = app
                .get(&app.host(Some("acme")), &path)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            res.json::<Value>().await.unwrap()
        }
    };

    // Discovery, as an MCP client does it: the 401 names the resource metadata.
    let (status, challenge) = init(&app, "fx", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let prm_url = format!("{base}/.well-known/oauth-protected-resource/mcp/fx");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{prm_url}\"")),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"mcp\""), "{challenge}");
    let prm = get_json("/.well-known/oauth-protected-resource/mcp/fx".into()).await;
    assert_eq!(prm["resource"], format!("{base}/mcp/fx"));
    assert_eq!(prm["authorization_servers"][0], base);
    let md = get_json("/.well-known/oauth-authorization-server".into()).await;
    assert_eq!(md["issuer"], base);
    assert_eq!(md["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(md["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        get_json("/.well-known/openid-configuration".into()).await["issuer"],
        base
    );

    // Dynamic registration (RFC 7591): loopback or https redirect URIs only.
    let register = |body: Value| {
        let app = &app;
        async move {
            let res = app
                .client
                .post(app.url("/oauth/register"))
                .header(HOST, app.host(Some("acme")))
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    };
    let (s, v) =
        register(json!({"redirect_uris": ["http://evil.example/cb"], "client_name": "x"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "invalid_redirect_uri");
    let (s, v) = register(
        json!({"redirect_uris": [REDIRECT], "client_name": "Test Agent",
        "token_endpoint_auth_method": "none"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let flow = Flow {
        app: &app,
        client_id: v["client_id"].as_str().unwrap().to_owned(),
        gateway: format!("{base}/mcp/"),
    };

    // Not signed in: the authorization request goes to the tenant's sign-in first.
    let mut stranger = app.browser(Some("acme"));
    let (_, challenge0) = pkce();
    let res = stranger.get(&flow.authorize_path(&challenge0, "fx")).await;
    assert!(res.status.is_redirection());
    assert!(res.headers[LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/auth/login?return_to=%2Foauth%2Fauthorize"));
    // A redirect URI the client did not register is refused on our page, never redirected to.
    let page = stranger
        .get(
            &flow
                .authorize_path(&challenge0, "fx")
                .replace("callback", "elsewhere"),
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("redirect_uri"));

    let mut browser = app.browser(Some("acme"));
    browser.sign_in(admin).await;
    let (verifier, challenge) = pkce();
    let q = flow
        .consent(&mut browser, &challenge, "fx", "approve")
        .await;
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], base, "RFC 9207");
    let code = q["code"].clone();
    // Wrong verifier: refused (and that code is spent).
    let (s, v) = flow
        .code_for_tokens(&code, &format!("{verifier}x"), "fx")
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (s, _) = flow.code_for_tokens(&code, &verifier, "fx").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a spent code is spent");

    // The happy path: tokens for fx only.
    let (verifier, challenge) = pkce();
    let code = flow
        .consent(&mut browser, &challenge, "fx", "approve")
        .await["code"]
        .clone();
    let (s, tokens) = flow.code_for_tokens(&code, &verifier, "fx").await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("pct_oat_") && tokens["expires_in"].as_i64().unwrap() <= 600);
    assert_eq!(init(&app, "fx", Some(&access)).await.0, StatusCode::OK);
    let (s, challenge) = init(&app, "fy", Some(&access)).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "audience: a token for /mcp/fx is refused at /mcp/fy"
    );
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let (s, _) = flow.code_for_tokens(&code, &verifier, "fx").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a replayed code is refused");
    assert_eq!(
        init(&app, "fx", Some(&access)).await.0,
        StatusCode::UNAUTHORIZED,
        "…and revokes what it issued"
    );

    // Refresh rotation; a reused refresh token revokes the grant.
    let (verifier, challenge) = pkce();
    let code = flow
        .consent(&mut browser, &challenge, "fx", "approve")
        .await["code"]
        .clone();
    let (_, t1) = flow.code_for_tokens(&code, &verifier, "fx").await;
    let r1 = t1["refresh_token"].as_str().unwrap().to_owned();
    let (s, t2) = flow
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r1),
            ("client_id", &flow.client_id),
        ])
        .await;
    assert_eq!(s, StatusCode::OK, "{t2}");
    let a2 = t2["access_token"].as_str().unwrap().to_owned();
    assert_ne!(t2["refresh_token"], t1["refresh_token"], "rotated");
    assert_eq!(init(&app, "fx", Some(&a2)).await.0, StatusCode::OK);
    let (s, v) = flow
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &r1)])
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(
        init(&app, "fx", Some(&a2)).await.0,
        StatusCode::UNAUTHORIZED,
        "reuse revoked the grant"
    );
    let _ = refresh;

    // RFC 7009 revocation bites on the next request.
    let (verifier, challenge) = pkce();
    let code = flow
        .consent(&mut browser, &challenge, "fy", "approve")
        .await["code"]
        .clone();
    let (_, t) = flow.code_for_tokens(&code, &verifier, "fy").await;
    let a = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(init(&app, "fy", Some(&a)).await.0, StatusCode::OK);
    let res = app
        .client
        .post(app.url("/oauth/revoke"))
        .header(HOST, app.host(Some("acme")))
        .form(&[("token", a.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(init(&app, "fy", Some(&a)).await.0, StatusCode::UNAUTHORIZED);

    // Denied consent goes back with access_denied; bad requests are refused.
    let (_, challenge) = pkce();
    let q = flow.consent(&mut browser, &challenge, "fx", "deny").await;
    assert_eq!(q["error"], "access_denied");
    let res = browser.get(&flow.authorize_path("short", "fx")).await;
    assert!(
        res.headers[LOCATION]
            .to_str()
            .unwrap()
            .contains("error=invalid_request"),
        "PKCE S256 required"
    );
    let res = browser.get(&flow.authorize_path(&challenge, "nope")).await;
    assert!(res.headers[LOCATION]
        .to_str()
        .unwrap()
        .contains("error=invalid_target"));
    let (s, v) = flow.token(&[("grant_type", "password")]).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    // A token in the query string is not a token.
    let res = app
        .client
        .post(app.url(&format!("/mcp/fx?access_token={a2}")))
        .header(HOST, app.host(Some("acme")))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The user's connected apps: listed for the admin (API) and the user (portal); revoking one
    // grant ends its tokens at once.
    let (verifier, challenge) = pkce();
    let code = flow
        .consent(&mut browser, &challenge, "fx", "approve")
        .await["code"]
        .clone();
    let (_, t) = flow.code_for_tokens(&code, &verifier, "fx").await;
    let a5 = t["access_token"].as_str().unwrap().to_owned();
    let (verifier, challenge) = pkce();
    let code = flow
        .consent(&mut browser, &challenge, "fy", "approve")
        .await["code"]
        .clone();
    let (_, t) = flow.code_for_tokens(&code, &verifier, "fy").await;
    let a6 = t["access_token"].as_str().unwrap().to_owned();
    let (_, me) = api(&app, admin, Method::GET, "/api/v1/me", None).await;
    let email = me["email"]
        .as_str()
        .or(me["user"]["email"].as_str())
        .unwrap_or_default()
        .to_owned();
    let (s, v) = api(
        &app,
        admin,
        Method::GET,
        &format!("/api/v1/oauth/grants?user={email}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let grants = v["grants"].as_array().unwrap().clone();
    assert!(
        !grants.is_empty() && grants.iter().all(|g| g["client"] == "Test Agent"),
        "{v}"
    );
    let portal = browser.get("/").await;
    assert!(
        portal.body.contains("portal-apps") && portal.body.contains("Test Agent"),
        "{}",
        portal.body
    );
    // The user takes one back in the portal (a plain form post, as without JavaScript).
    let first = grants[0]["id"].as_str().unwrap();
    let action = portal
        .form_action(&format!("revoke-app-{first}"))
        .expect("the revoke form");
    let csrf = portal.input_value("csrf").unwrap();
    browser
        .post_form(
            &action,
            &[
                ("csrf", &csrf),
                ("form[op]", "portal_revoke_app"),
                ("form[grant_id]", first),
            ],
            "/",
        )
        .await;
    let (_, v) = api(
        &app,
        admin,
        Method::GET,
        &format!("/api/v1/oauth/grants?user={email}"),
        None,
    )
    .await;
    assert!(!v.to_string().contains(first), "revoked in the portal: {v}");
    for g in &grants[1..] {
        let (s, v) = api(
            &app,
            admin,
            Method::POST,
            "/api/v1/tokens/revoke",
            Some(json!({"grant_id": g["id"]})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert_eq!(
        init(&app, "fy", Some(&a6)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        init(&app, "fx", Some(&a5)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, v) = api(
        &app,
        admin,
        Method::GET,
        &format!("/api/v1/oauth/grants?user={email}"),
        None,
    )
    .await;
    assert_eq!(v["grants"], json!([]));

    // On the record: consents, token issues, and the agent (the client's name) on MCP records.
    let (_, v) = api(&app, admin, Method::GET, "/api/v1/audit?limit=1000", None).await;
    let events = v["events"].as_array().unwrap();
    let count = |a: &str| events.iter().filter(|e| e["action"] == a).count();
    assert!(
        count("oauth.consent") >= 5 && count("oauth.token") >= 4,
        "{v}"
    );
    assert!(
        count("oauth.refresh_reused") == 1 && count("oauth.code_replayed") == 2,
        "{v}"
    );
    assert!(events
        .iter()
        .any(|e| e["action"] == "initialize" && e["agent"] == "Test Agent"));
    app.stop().await;
}

async fn the_typescript_sdk_oauth_client_connects_unmodified(engine: Engine) {
    let mut cmd = std::process::Command::new("node");
    cmd.arg(crate::gateway::fixture_path("oauth_client.mjs"));
    sdk_client_does_the_dance(engine, cmd, "SDK Agent", "Echo: via oauth").await;
}

async fn the_python_sdk_oauth_client_connects_unmodified(engine: Engine) {
    let python = std::env::var("PORTCULLIS_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = std::process::Command::new(python);
    // -B: no bytecode written beside the fixture (parallel tests would race on it).
    cmd.arg("-B")
        .arg(crate::gateway::fixture_path("oauth_client.py"));
    sdk_client_does_the_dance(engine, cmd, "Python Agent", "Echo: via python oauth").await;
}

/// Runs an SDK's OAuth client (`cmd` + the endpoint URL): it prints `AUTHORIZE <url>`; the test
/// is the user's browser (signed in, approves `client` on the consent page) and hands it the
/// redirect; it prints `RESULT <answer>`.
async fn sdk_client_does_the_dance(
    engine: Engine,
    mut cmd: std::process::Command,
    client: &str,
    expected: &str,
) {
    use std::io::{BufRead, Write};
    let app = spawn_app(engine).await;
    let admin = crate::gateway_sessions::acme_with_fixtures(&app, &["fx"]).await;
    let admin = admin.as_str();
    let endpoint = format!("http://{}/mcp/fx", app.host(Some("acme")));
    let mut child = cmd
        .arg(&endpoint)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("the SDK's OAuth client runs");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let next = |prefix: &str| {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the SDK client printed no {prefix} line"));
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix}, got {line}"))
            .to_owned()
    };
    // The SDK discovered the metadata from the 401, registered itself and built the request.
    let authorize = url::Url::parse(&next("AUTHORIZE ")).unwrap();
    assert_eq!(authorize.path(), "/oauth/authorize");
    let q: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(
        q["resource"].trim_end_matches('/'),
        endpoint,
        "RFC 8707: the endpoint itself"
    );
    let mut browser = app.browser(Some("acme"));
    browser.sign_in(admin).await;
    let path = format!("{}?{}", authorize.path(), authorize.query().unwrap());
    let location = approve_at(&mut browser, &path, "approve", client).await;
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "CALLBACK {location}").unwrap();
    assert_eq!(next("RESULT "), expected);
    assert!(child.wait().unwrap().success());
    app.stop().await;
}

/// The newer conformance release's `authorization` command against Portcullis's authorization
/// server: metadata, then the authorization-code grant through our consent page (the suite's
/// callback server receives the redirect, exchanges the code and checks the tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suites_authorization_scenarios_pass() {
    use tokio::io::AsyncBufReadExt;
    let app = spawn_app(Engine::Sqlite).await;
    let admin = crate::gateway_sessions::acme_with_fixtures(&app, &["fx"]).await;
    let admin = admin.as_str();
    let callback_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://{}", app.host(Some("acme")));
    let res = app
        .client
        .post(app.url("/oauth/register"))
        .header(HOST, app.host(Some("acme")))
        .json(
            &json!({"redirect_uris": [format!("http://127.0.0.1:{callback_port}/callback")],
                      "client_name": "Conformance suite"}),
        )
        .send()
        .await
        .unwrap();
    let client_id = res.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tools = crate::conformance::tools_dir();
    let mut suite = tokio::process::Command::new(crate::conformance::node22())
        .current_dir(crate::gateway::fixture_path(""))
        .arg("--import")
        .arg("./localhost_dns.mjs")
        .arg(tools.join("node_modules/conformance-next/dist/index.js"))
        .args([
            "authorization",
            "--url",
            &issuer,
            "--client-id",
            &client_id,
            "--resource",
        ])
        .arg(format!("{issuer}/mcp/fx"))
        .args(["-p", &callback_port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node 22 runs the conformance suite");
    let mut lines = tokio::io::BufReader::new(suite.stdout.take().unwrap()).lines();
    let mut output = String::new();
    let authorize = loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the suite prints an authorization URL")
            .unwrap()
            .unwrap_or_else(|| panic!("the suite ended early:\n{output}"));
        output.push_str(&line);
        output.push('\n');
        if line.starts_with(&format!("{issuer}/oauth/authorize?")) {
            break url::Url::parse(&line).unwrap();
        }
    };
    let mut browser = app.browser(Some("acme"));
    browser.sign_in(admin).await;
    let path = format!("{}?{}", authorize.path(), authorize.query().unwrap());
    let location = approve_at(&mut browser, &path, "approve", "Conformance suite").await;
    // The browser follows the redirect to the suite's callback server.
    reqwest::get(&location)
        .await
        .expect("the suite's callback answers");
    let rest = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            output.push_str(&line);
            output.push('\n');
        }
        suite.wait().await.unwrap()
    })
    .await
    .expect("the suite finishes");
    let mut err = String::new();
    if let Some(mut e) = suite.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut err).await;
    }
    assert!(rest.success(), "the suite failed:\n{output}\n{err}");
    assert!(!output.contains('✗'), "{output}");
    let total = output
        .lines()
        .find(|l| l.starts_with("Total:"))
        .unwrap_or_default();
    assert!(
        total.ends_with(" passed, 0 failed") && !total.starts_with("Total: 0 "),
        "{output}"
    );
    app.stop().await;
}

/// A client known by its metadata document (its client_id is an https URL): fetched, checked
/// (it must name itself), shown on the consent page, and used through to a working token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_known_by_its_metadata_document_gets_through() {
    let certs = tempfile::tempdir().unwrap();
    crate::real_clients::make_certificates(certs.path());
    // The documents, served over http behind an https front (the test CA's certificate).
    let base: std::sync::Arc<std::sync::Mutex<String>> = std::sync::Arc::default();
    let docs = axum::Router::new()
        .route(
            "/clients/agent.json",
            axum::routing::get({
                let base = base.clone();
                move || {
                    let base = base.lock().unwrap().clone();
                    async move {
                        axum::Json(json!({"client_id": format!("{base}/clients/agent.json"),
                            "client_name": "CIMD Agent", "redirect_uris": [REDIRECT]}))
                    }
                }
            }),
        )
        .route(
            "/clients/liar.json",
            axum::routing::get(|| async {
                axum::Json(json!({"client_id": "https://elsewhere.example/x", "redirect_uris": [REDIRECT]}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, docs).await.unwrap() });
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(crate::gateway::fixture_path("tls_proxy.mjs"))
        .arg(certs.path().join("leaf.pem"))
        .arg(certs.path().join("leaf.key"))
        .arg(&origin);
    let tls = crate::conformance::start_listening(cmd).await;
    *base.lock().unwrap() = tls.url.trim_end_matches('/').to_owned();
    let client_id = format!("{}/clients/agent.json", tls.url.trim_end_matches('/'));

    let app = crate::helpers::spawn_app_with(
        Engine::Sqlite,
        portcullis::config::ServeArgs {
            upstream_ca_file: Some(certs.path().join("ca.pem")),
            cimd_allow_private: true,
            ..Default::default()
        },
    )
    .await;
    let admin = crate::gateway_sessions::acme_with_fixtures(&app, &["fx"]).await;
    let admin = admin.as_str();
    let md: Value = app
        .get(
            &app.host(Some("acme")),
            "/.well-known/oauth-authorization-server",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(md["client_id_metadata_document_supported"], true);
    let base_url = format!("http://{}", app.host(Some("acme")));
    let flow = Flow {
        app: &app,
        client_id: client_id.clone(),
        gateway: format!("{base_url}/mcp/"),
    };
    let mut browser = app.browser(Some("acme"));
    browser.sign_in(admin).await;

    // A document that does not name itself is refused on our page.
    let liar = Flow {
        app: &app,
        client_id: format!("{}/clients/liar.json", tls.url.trim_end_matches('/')),
        gateway: flow.gateway.clone(),
    };
    let (_, challenge) = pkce();
    let page = browser.get(&liar.authorize_path(&challenge, "fx")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("does not name itself"), "{}", page.body);

    let (verifier, challenge) = pkce();
    let path = flow.authorize_path(&challenge, "fx");
    let location = approve_at(&mut browser, &path, "approve", "CIMD Agent (127.0.0.1)").await;
    let code = query_of(&location)["code"].clone();
    let (s, t) = flow.code_for_tokens(&code, &verifier, "fx").await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(
        init(&app, "fx", Some(t["access_token"].as_str().unwrap()))
            .await
            .0,
        StatusCode::OK
    );
    app.stop().await;
}
