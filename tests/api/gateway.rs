//! The gateway endpoint `/mcp/{server}` with real peers: the fixture MCP server and the official
//! Python MCP client (both on the official SDK), in both protocol eras, on both engines.

use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::header::{HOST, ORIGIN, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

on_both_engines!(
    real_mcp_clients_reach_a_streamable_http_server_through_the_gateway,
    the_gateway_refuses_what_it_must,
    test_connection_reports_what_the_upstream_offers,
    servers_and_tokens_made_by_the_cli_reach_the_running_gateway,
);

pub(crate) fn python() -> String {
    std::env::var("PORTCULLIS_PYTHON").unwrap_or_else(|_| {
        panic!("PORTCULLIS_PYTHON is not set: run `make test` (scripts/setup.sh installs the MCP SDK venv)")
    })
}

pub(crate) fn fixture_path(name: &str) -> String {
    format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The fixture MCP server on a free port, killed when dropped.
pub(crate) struct Fixture {
    pub(crate) port: u16,
    _child: tokio::process::Child,
}

pub(crate) async fn start_fixture() -> Fixture {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(python())
        .arg(fixture_path("mcp_fixture.py"))
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the fixture MCP server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "fixture MCP server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Fixture {
        port,
        _child: child,
    }
}

/// Adds a server and grants it to everyone in the tenant (registry `all-{slug}`), as the
/// gateway tests need; the access tests use `add_server_ungranted` and grant for themselves.
pub(crate) async fn add_server(
    app: &TestApp,
    tenant: &str,
    admin: &str,
    slug: &str,
    upstream: serde_json::Value,
) {
    add_server_ungranted(app, tenant, admin, slug, upstream).await;
    let res = app
        .client
        .post(app.url("/api/v1/registries"))
        .header(HOST, app.host(Some(tenant)))
        .bearer_auth(admin)
        .json(&json!({"slug": format!("all-{slug}"), "servers": [slug],
            "grants": [{"subject": "everyone"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
}

pub(crate) async fn add_server_ungranted(
    app: &TestApp,
    tenant: &str,
    admin: &str,
    slug: &str,
    upstream: serde_json::Value,
) {
    let res = app
        .client
        .post(app.url("/api/v1/servers"))
        .header(HOST, app.host(Some(tenant)))
        .bearer_auth(admin)
        .json(&json!({"slug": slug, "upstream": upstream}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
}

pub(crate) async fn user_token(app: &TestApp, tenant: &str, admin: &str, email: &str) -> String {
    let res = app
        .client
        .post(app.url("/api/v1/tokens"))
        .header(HOST, app.host(Some(tenant)))
        .bearer_auth(admin)
        .json(&json!({"user_email": email}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) async fn run_client(
    app: &TestApp,
    tenant: &str,
    server: &str,
    mode: &str,
    token: &str,
) -> serde_json::Value {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python())
            .arg(fixture_path("mcp_client.py"))
            .arg(app.url(&format!("/mcp/{server}")))
            .arg(mode)
            .arg(token)
            .arg(app.host(Some(tenant)))
            .output(),
    )
    .await
    .expect("the MCP client finishes")
    .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client prints JSON")
}

async fn real_mcp_clients_reach_a_streamable_http_server_through_the_gateway(engine: Engine) {
    let fixture = start_fixture().await;
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    add_server(&app, "acme", &acme.admin_token, "fixture",
        json!({"transport": "streamable_http", "url": format!("http://127.0.0.1:{}/mcp", fixture.port)})).await;
    let token = user_token(&app, "acme", &acme.admin_token, "dev@acme.example").await;
    // The modern (stateless, 2026-07-28) era and the session-based 2025-11-25 era.
    for (mode, protocol) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
        let seen = run_client(&app, "acme", "fixture", mode, &token).await;
        assert_eq!(seen["protocol"], protocol, "{seen}");
        assert_eq!(seen["tools"], json!(["add", "test_simple_text", "whoami"]));
        assert_eq!(seen["add"], json!(["42"]));
        assert_eq!(
            seen["text"],
            json!(["This is a simple text response for testing."])
        );
        assert_eq!(
            seen["resource"],
            json!(["This is the content of the static text resource."])
        );
        assert_eq!(
            seen["prompt"],
            json!(["Prompt with arguments: arg1='x', arg2='y'"])
        );
    }
    app.stop().await;
}

async fn the_gateway_refuses_what_it_must(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    add_server(
        &app,
        "acme",
        &acme.admin_token,
        "local",
        json!({"transport": "stdio", "command": "some-mcp-server"}),
    )
    .await;
    add_server(
        &app,
        "acme",
        &acme.admin_token,
        "gone",
        json!({"transport": "streamable_http", "url": "http://127.0.0.1:9/mcp"}),
    )
    .await;
    let token = user_token(&app, "acme", &acme.admin_token, "dev@acme.example").await;
    let globex_token = user_token(&app, "globex", &globex.admin_token, "dev@globex.example").await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}});
    let post = |host: String, path: &'static str, auth: Option<String>| {
        let mut r = app
            .client
            .post(app.url(path))
            .header(HOST, host)
            .json(&init);
        if let Some(a) = auth {
            r = r.bearer_auth(a);
        }
        r
    };
    let acme_host = app.host(Some("acme"));
    for auth in [
        None,
        Some(globex_token.clone()),
        Some(acme.admin_token.clone()),
        Some(format!("{token}x")),
    ] {
        let res = post(acme_host.clone(), "/mcp/gone", auth.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(res.headers().get(WWW_AUTHENTICATE).is_some());
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
    }
    // A server of another tenant looks like no server at all.
    let res = post(app.host(Some("globex")), "/mcp/gone", Some(globex_token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = post(acme_host.clone(), "/mcp/nope", Some(token.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Cross-origin browser requests are refused (DNS rebinding).
    let res = post(acme_host.clone(), "/mcp/gone", Some(token.clone()))
        .header(ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Bad input is answered by the gateway and never reaches the upstream.
    for (body, version, code) in [
        ("{not json", None, -32700),
        (
            "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}",
            None,
            -32600,
        ),
        ("[]", None, -32600),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
            Some("1999-01-01"),
            -32022,
        ),
    ] {
        let mut r = app
            .client
            .post(app.url("/mcp/gone"))
            .header(HOST, acme_host.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .bearer_auth(&token)
            .body(body);
        if let Some(v) = version {
            r = r.header("mcp-protocol-version", v);
        }
        let res = r.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
    // An upstream the gateway cannot reach says so, as a JSON-RPC error.
    let res = post(acme_host.clone(), "/mcp/gone", Some(token.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let v: serde_json::Value = res.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().len() > 10, "{v}");
    // A stdio command that cannot start: initialize (with its version) gets an error that
    // says why, and no session.
    let res = app
        .client
        .post(app.url("/mcp/local"))
        .header(HOST, acme_host.clone())
        .bearer_auth(&token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}))
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("mcp-session-id").is_none());
    let v: serde_json::Value = res.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot start `some-mcp-server`"),
        "{v}"
    );
    // The platform host has no gateway.
    let res = post(app.host(None), "/mcp/gone", Some(token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn test_connection_reports_what_the_upstream_offers(engine: Engine) {
    let fixture = start_fixture().await;
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    add_server(&app, "acme", &acme.admin_token, "fixture",
        json!({"transport": "streamable_http", "url": format!("http://127.0.0.1:{}/mcp", fixture.port)})).await;
    add_server(
        &app,
        "acme",
        &acme.admin_token,
        "gone",
        json!({"transport": "streamable_http", "url": "http://127.0.0.1:9/mcp"}),
    )
    .await;
    let test = |slug: &'static str| {
        let req = app
            .client
            .post(app.url(&format!("/api/v1/servers/{slug}/test")))
            .header(HOST, app.host(Some("acme")))
            .bearer_auth(&acme.admin_token);
        async move { req.send().await.unwrap() }
    };
    // Like the SDKs' auto mode: the stateless 2026-07-28 era when the upstream speaks it, and
    // the session-based 2025-11-25 era on request (or as the fallback).
    for (query, protocol) in [("", "2026-07-28"), ("?era=legacy", "2025-11-25")] {
        let res = app
            .client
            .post(app.url(&format!("/api/v1/servers/fixture/test{query}")))
            .header(HOST, app.host(Some("acme")))
            .bearer_auth(&acme.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["ok"], true, "{v}");
        let d = &v["discovery"];
        assert_eq!(d["protocol_version"], protocol);
        assert_eq!(d["server_info"]["name"], "portcullis-fixture");
        let tools: Vec<_> = d["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(tools, ["test_simple_text", "add", "whoami"]);
        assert_eq!(d["tools"][1]["description"], "Adds two integers.");
        assert_eq!(d["resources"][0]["uri"], "test://static-text");
        assert_eq!(d["prompts"].as_array().unwrap().len(), 2);
    }

    let v: serde_json::Value = test("gone").await.json().await.unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("cannot reach"), "{v}");
    assert_eq!(test("nope").await.status(), StatusCode::NOT_FOUND);

    // The console's "Test connection" button shows the same, without JavaScript.
    let mut b = app.browser(Some("acme"));
    let page = b.sign_in(&acme.admin_token).await;
    let csrf = page.input_value("csrf").unwrap();
    let servers = b.get("/admin/servers").await;
    let action = servers.form_action("test-fixture").expect("a test button");
    b.post_form(
        &action,
        &[("csrf", &csrf), ("slug", "fixture")],
        "/admin/servers",
    )
    .await;
    let page = b.get("/admin/servers").await;
    assert!(page.body.contains("id=\"discovery-ok\""), "{}", page.body);
    assert!(page.body.contains("portcullis-fixture"));
    assert!(page.body.contains("Adds two integers."));
    assert!(page.body.contains("test://static-text"));
    b.post_form(
        &action,
        &[("csrf", &csrf), ("slug", "gone")],
        "/admin/servers",
    )
    .await;
    let page = b.get("/admin/servers").await;
    assert!(
        page.text_of("discovery-error")
            .is_some_and(|e| e.contains("cannot reach")),
        "{}",
        page.body
    );
    app.stop().await;
}

/// The CLI writes the database; the running server's gateway snapshot follows through the change
/// counters (the path other replicas use), with no restart.
async fn servers_and_tokens_made_by_the_cli_reach_the_running_gateway(engine: Engine) {
    let fixture = start_fixture().await;
    let app = spawn_app(engine).await;
    app.create_tenant("acme").await;
    let url = format!("http://127.0.0.1:{}/mcp", fixture.port);
    let out = app.cli(&[
        "server", "add", "--tenant", "acme", "--slug", "fixture", "--url", &url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = app.cli(&[
        "registry", "add", "--tenant", "acme", "--slug", "ops", "--server", "fixture", "--grant",
        "everyone",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = app.cli(&[
        "token",
        "create",
        "--tenant",
        "acme",
        "--user",
        "ops@acme.example",
        "--json",
    ]);
    let token = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app
            .client
            .post(app.url("/mcp/fixture"))
            .header(HOST, app.host(Some("acme")))
            .header("accept", "application/json, text/event-stream")
            .bearer_auth(&token)
            .json(&ping)
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::OK {
            assert!(
                res.headers().get("mcp-session-id").is_some(),
                "the upstream session id comes through"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the CLI's changes never reached the gateway: {}",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}
