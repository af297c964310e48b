//! Health, readiness, metrics, request ids, the master key and first-start secrets.

use crate::helpers::{settings_for, spawn_app, Engine};
use crate::on_both_engines;
use portcullis::startup::{Application, StartupError};
use reqwest::StatusCode;

on_both_engines!(
    health_readiness_and_metrics_answer_on_any_host,
    every_response_carries_a_request_id,
    the_platform_token_is_made_once_per_database,
    openapi_document_lists_the_api,
);

async fn health_readiness_and_metrics_answer_on_any_host(engine: Engine) {
    let app = spawn_app(engine).await;
    for host in [
        "127.0.0.1".to_string(),
        app.host(None),
        "unknown.example".into(),
    ] {
        let res = app.get(&host, "/healthz").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let res = app.get(&host, "/readyz").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    app.create_tenant("acme").await;
    app.get(&app.host(Some("acme")), "/").send().await.unwrap();
    let res = app.get("127.0.0.1", "/metrics").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(text.contains("portcullis_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/api/v1/tenants\""), "{text}");
    assert!(text.contains("portcullis_tenants 1"), "{text}");
    // No tenant names in metrics.
    assert!(!text.contains("acme"));
    app.stop().await;
}

async fn every_response_carries_a_request_id(engine: Engine) {
    let app = spawn_app(engine).await;
    let res = app.get(&app.host(None), "/").send().await.unwrap();
    let id = res.headers().get("x-request-id").unwrap().to_str().unwrap();
    assert_eq!(id.len(), 36);
    let res = app
        .get(&app.host(None), "/healthz")
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers().get("x-request-id").unwrap(), "trace-me-123");
    app.stop().await;
}

async fn the_platform_token_is_made_once_per_database(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let db = match engine {
        Engine::Postgres => Some(crate::helpers::TestDb::create().await),
        Engine::Sqlite => None,
    };
    let first = Application::build(settings_for(engine, dir.path(), db.as_ref()))
        .await
        .unwrap();
    assert!(first.first_start.platform_token.is_some());
    first.store().close().await;
    drop(first);
    let second = Application::build(settings_for(engine, dir.path(), db.as_ref()))
        .await
        .unwrap();
    assert!(
        second.first_start.platform_token.is_none(),
        "printed only on the first start"
    );
    second.store().close().await;
}

async fn openapi_document_lists_the_api(engine: Engine) {
    let app = spawn_app(engine).await;
    let res = app
        .get(&app.host(None), "/api/v1/openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v: serde_json::Value = res.json().await.unwrap();
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/tenant",
        "/api/v1/me",
        "/api/v1/tenants",
        "/api/v1/servers",
        "/api/v1/servers/{slug}",
        "/api/v1/servers/{slug}/test",
        "/api/v1/tokens",
        "/api/v1/servers/{slug}/catalog",
        "/api/v1/registries",
        "/api/v1/registries/{slug}",
        "/api/v1/registries/{slug}/grants",
        "/api/v1/registries/{slug}/grants/{grant}",
        "/api/v1/users",
        "/api/v1/users/{id}",
        "/api/v1/agents",
        "/api/v1/agents/{slug}",
        "/api/v1/agents/{slug}/tokens",
        "/api/v1/agents/{slug}/blast-radius",
        "/api/v1/agents/{slug}/tokens/{id}",
        "/api/v1/servers/{slug}/credential",
        "/api/v1/servers/{slug}/connections",
        "/api/v1/servers/{slug}/connections/{user}",
        "/api/v1/servers/{slug}/filters",
        "/api/v1/tool-changes",
        "/api/v1/servers/{slug}/tool-changes",
        "/api/v1/servers/{slug}/tool-changes/{tool}/{decision}",
        "/api/v1/inventory",
        "/api/v1/servers/{slug}/inventory",
        "/api/v1/filter-hooks",
        "/api/v1/filter-hooks/{id}",
        "/api/v1/filters",
        "/api/v1/vault",
        "/api/v1/vault/rotate",
        "/api/v1/groups",
        "/api/v1/policy/explain",
        "/api/v1/policy/who-can",
        "/api/v1/policy/reach",
        "/api/v1/scim/token",
        "/api/v1/sso",
        "/api/v1/audit",
        "/api/v1/audit/events/{id}",
        "/api/v1/audit/stats",
        "/api/v1/audit/export",
        "/api/v1/audit/verify",
        "/api/v1/audit/checkpoint",
        "/api/v1/audit/settings",
        "/api/v1/audit/purge",
        "/api/v1/audit/siem",
        "/api/v1/audit/siem/{id}",
        "/api/v1/tokens/revoke",
        "/api/v1/oauth/grants",
        "/api/v1/approvals",
        "/api/v1/approvals/{id}/{decision}",
        "/api/v1/approvals/rules",
        "/api/v1/approvals/rules/{id}",
        "/api/v1/limits",
        "/api/v1/limits/{id}",
    ] {
        assert!(v["paths"][path].is_object(), "{path} documented");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_server_started_with_another_master_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let app = Application::build(settings_for(Engine::Sqlite, dir.path(), None))
        .await
        .unwrap();
    app.store().close().await;
    drop(app);
    let key_file = dir.path().join(portcullis::keys::KEY_FILE);
    let original = std::fs::read_to_string(&key_file).unwrap();
    std::fs::write(&key_file, "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=").unwrap();
    let err = Application::build(settings_for(Engine::Sqlite, dir.path(), None))
        .await
        .err()
        .expect("must refuse");
    assert!(
        matches!(err, StartupError::Key(portcullis::keys::KeyError::Mismatch)),
        "{err}"
    );
    std::fs::write(&key_file, original).unwrap();
    assert!(
        Application::build(settings_for(Engine::Sqlite, dir.path(), None))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn postgres_without_a_master_key_refuses_to_start() {
    let db = crate::helpers::TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_for(Engine::Postgres, dir.path(), Some(&db));
    settings.master_key = None;
    let err = Application::build(settings)
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("PORTCULLIS_MASTER_KEY"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_with_a_reason_when_the_database_is_gone() {
    let app = spawn_app(Engine::Postgres).await;
    let res = app.get("127.0.0.1", "/readyz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.kill_database().await;
    let res = app.get("127.0.0.1", "/readyz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.text().await.unwrap().contains("database"));
    // Liveness is about the process, not its dependencies.
    let res = app.get("127.0.0.1", "/healthz").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}

/// The real binary: JSON log lines with request ids, no secret in any log line, and a clean exit
/// on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_json_without_secrets_and_stops_cleanly_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--demo",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("PORTCULLIS_CONFIG")
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let port: u16 = loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), stdout.next_line())
            .await
            .expect("server prints its port")
            .unwrap()
            .expect("stdout open");
        banner.push_str(&line);
        banner.push('\n');
        if let Some(p) = line.strip_prefix("Portcullis is listening on port ") {
            break p.parse().unwrap();
        }
    };
    let demo_token = std::fs::read_to_string(dir.path().join("demo-admin-token")).unwrap();
    let demo_token = demo_token.trim();
    let platform_token = std::fs::read_to_string(dir.path().join("platform-admin-token")).unwrap();
    let platform_token = platform_token.trim();
    let client = reqwest::Client::new();
    let host = format!("demo.localhost:{port}");
    let res = client
        .get(format!("http://127.0.0.1:{port}/api/v1/tenant"))
        .header(reqwest::header::HOST, &host)
        .bearer_auth(demo_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = client
        .get(format!("http://127.0.0.1:{port}/api/v1/tenants"))
        .header(reqwest::header::HOST, format!("localhost:{port}"))
        .bearer_auth(platform_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait())
        .await
        .expect("stops after SIGTERM")
        .unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");

    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .await
        .unwrap();
    assert!(!logs.is_empty());
    for line in logs.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(
        logs.contains("request_id"),
        "request spans carry the request id"
    );
    assert!(logs.contains("shutdown signal received"));
    assert!(
        !logs.contains(demo_token),
        "the admin token never reaches the logs"
    );
    assert!(
        !logs.contains(platform_token),
        "the platform token never reaches the logs"
    );
    assert!(!logs.contains("pct_"), "no token of any kind in the logs");
    // The banner (stdout) is where first-start secrets are shown.
    while let Ok(Some(line)) = stdout.next_line().await {
        banner.push_str(&line);
        banner.push('\n');
    }
    assert!(banner.contains(demo_token), "{banner}");
}

#[tokio::test]
async fn pages_and_api_answers_carry_security_headers() {
    let app = spawn_app(Engine::Sqlite).await;
    let acme = app.create_tenant("acme").await;
    let host = app.host(Some("acme"));
    let page = app.get(&host, "/admin").send().await.unwrap();
    let api = app
        .get(&host, "/api/v1/tenant")
        .bearer_auth(&acme.admin_token)
        .send()
        .await
        .unwrap();
    let unknown = app.get("nope.localhost", "/").send().await.unwrap();
    for res in [&page, &api, &unknown] {
        let h = res.headers();
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["content-security-policy"], "frame-ancestors 'none'");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(h["cache-control"], "no-store");
    }
    app.stop().await;
}

/// A client that opens a connection and never sends a request must not keep a stopping server
/// alive: shutdown is graceful for requests in flight, but bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_even_with_an_idle_connection_open() {
    let app = spawn_app(Engine::Sqlite).await;
    let idle = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(
        started.elapsed()
            <= portcullis::startup::SHUTDOWN_GRACE + std::time::Duration::from_secs(5),
        "stopped after {:?}",
        started.elapsed()
    );
    drop(idle);
}
