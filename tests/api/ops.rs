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
    for path in ["/api/v1/tenant", "/api/v1/me", "/api/v1/tenants"] {
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
