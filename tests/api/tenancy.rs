//! Host routing and tenant isolation, and the platform/tenant JSON API.

use crate::helpers::{spawn_app, Engine};
use crate::on_both_engines;
use reqwest::header::{HOST, WWW_AUTHENTICATE};
use reqwest::StatusCode;

on_both_engines!(
    unknown_hosts_get_a_bare_404_that_reveals_nothing,
    platform_api_creates_a_tenant_whose_token_works_only_on_its_own_host,
    reserved_and_malformed_slugs_are_refused_and_nothing_is_created,
    a_duplicate_slug_is_a_conflict,
    tenant_api_needs_a_valid_admin_token,
    platform_endpoints_exist_only_on_the_platform_host,
    bad_json_gets_a_clear_error_and_changes_nothing,
    oversized_bodies_are_refused_before_any_handler,
    row_level_security_hides_tenant_rows_without_a_tenant_scope,
);

async fn unknown_hosts_get_a_bare_404_that_reveals_nothing(engine: Engine) {
    let app = spawn_app(engine).await;
    app.create_tenant("acme").await;
    let mut bodies = Vec::new();
    for host in [
        "initech.localhost".to_string(),
        format!("initech.localhost:{}", app.port),
        "127.0.0.1".to_string(),
        "example.com".to_string(),
        format!("a.acme.localhost:{}", app.port),
    ] {
        for path in ["/", "/admin", "/api/v1/tenant", "/pkg/portcullis.js"] {
            let res = app.get(&host, path).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{host}{path}");
            bodies.push(res.text().await.unwrap());
        }
    }
    // An existing tenant's unknown page and a missing tenant look alike to a prober.
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        1,
        "every unknown host answers the same: {bodies:?}"
    );
    let res = app.get(&app.host(Some("acme")), "/").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}

async fn platform_api_creates_a_tenant_whose_token_works_only_on_its_own_host(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    assert!(acme.admin_token.starts_with("pct_admin_"));

    let v = app.tenant_json("acme", &acme.admin_token).await;
    assert_eq!(v["slug"], "acme");
    assert_eq!(v["name"], "acme Inc");
    assert_eq!(
        v["console_url"],
        format!("http://acme.localhost:{}/admin", app.port)
    );

    // Tenant A's admin token on tenant B's host: refused, as if it did not exist.
    let res = app
        .get(&app.host(Some("globex")), "/api/v1/tenant")
        .bearer_auth(&acme.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get(WWW_AUTHENTICATE).is_some());

    let res = app
        .get(&app.host(Some("globex")), "/api/v1/me")
        .bearer_auth(&globex.admin_token)
        .send()
        .await
        .unwrap();
    let me: serde_json::Value = res.json().await.unwrap();
    assert_eq!(me["email"], "admin@globex.example.com");
    assert_eq!(me["tenant"], "globex");

    let res = app
        .get(&app.host(None), "/api/v1/tenants")
        .bearer_auth(&app.platform_token)
        .send()
        .await
        .unwrap();
    let list: serde_json::Value = res.json().await.unwrap();
    let slugs: Vec<_> = list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(slugs, ["acme", "globex"]);
    // The listing never shows a token.
    assert!(!list.to_string().contains("pct_admin_"));
    app.stop().await;
}

async fn reserved_and_malformed_slugs_are_refused_and_nothing_is_created(engine: Engine) {
    let app = spawn_app(engine).await;
    for (slug, expect) in [
        ("www", "reserved"),
        ("api", "reserved"),
        ("admin", "reserved"),
        ("Acme", "lowercase"),
        ("-acme", "start with a letter"),
        ("ac_me", "lowercase"),
        ("a", "2 to 63"),
    ] {
        let res = app
            .client
            .post(app.url("/api/v1/tenants"))
            .header(HOST, app.host(None))
            .bearer_auth(&app.platform_token)
            .json(&serde_json::json!({"slug": slug, "name": "X", "admin_email": "a@b.example"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{slug}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(expect), "{slug}: {msg}");
    }
    let res = app
        .client
        .post(app.url("/api/v1/tenants"))
        .header(HOST, app.host(None))
        .bearer_auth(&app.platform_token)
        .json(&serde_json::json!({"slug": "fine", "name": "X", "admin_email": "not-an-email"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let out = app.cli(&["tenant", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tenants"], serde_json::json!([]), "nothing was created");
    app.stop().await;
}

async fn a_duplicate_slug_is_a_conflict(engine: Engine) {
    let app = spawn_app(engine).await;
    let first = app.create_tenant("acme").await;
    let res = app
        .client
        .post(app.url("/api/v1/tenants"))
        .header(HOST, app.host(None))
        .bearer_auth(&app.platform_token)
        .json(&serde_json::json!({"slug": "acme", "name": "Other", "admin_email": "x@y.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let v: serde_json::Value = res.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    // The original tenant and its token are untouched.
    let t = app.tenant_json("acme", &first.admin_token).await;
    assert_eq!(t["name"], "acme Inc");
    app.stop().await;
}

async fn tenant_api_needs_a_valid_admin_token(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let host = app.host(Some("acme"));
    for auth in [
        None,
        Some("Bearer".to_string()),
        Some("Bearer pct_admin_forged".to_string()),
        Some(format!("Bearer {}x", acme.admin_token)),
        Some(format!("Basic {}", acme.admin_token)),
        Some(format!("Bearer {}", app.platform_token)),
    ] {
        let mut req = app.get(&host, "/api/v1/tenant");
        if let Some(a) = &auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    app.stop().await;
}

async fn platform_endpoints_exist_only_on_the_platform_host(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    // The platform token on a tenant host finds no platform API there.
    let res = app
        .get(&app.host(Some("acme")), "/api/v1/tenants")
        .bearer_auth(&app.platform_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // And a tenant endpoint on the platform host does not exist either.
    let res = app
        .get(&app.host(None), "/api/v1/tenant")
        .bearer_auth(&acme.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Nor does the tenant admin console.
    let res = app.get(&app.host(None), "/admin").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn bad_json_gets_a_clear_error_and_changes_nothing(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let host = app.host(Some("acme"));
    for (body, status) in [
        ("{not json", StatusCode::BAD_REQUEST),
        ("{\"name\": 42}", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "{\"name\": \"ok\", \"extra\": 1}",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("{\"name\": \"   \"}", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let res = app
            .client
            .patch(app.url("/api/v1/tenant"))
            .header(HOST, &host)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .bearer_auth(&acme.admin_token)
            .body(body)
            .send()
            .await
            .unwrap();
        // axum reports type errors as 422 and syntax errors as 400; both come in our envelope.
        assert!(
            res.status() == status || res.status() == StatusCode::BAD_REQUEST,
            "{body}: {}",
            res.status()
        );
        let v: serde_json::Value = res.json().await.unwrap();
        assert!(v["error"]["message"].as_str().is_some(), "{body}: {v}");
    }
    let res = app
        .client
        .patch(app.url("/api/v1/tenant"))
        .header(HOST, &host)
        .bearer_auth(&acme.admin_token)
        .json(&serde_json::json!({"name": "Acme Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["name"], "Acme Renamed");
    app.stop().await;
}

async fn oversized_bodies_are_refused_before_any_handler(engine: Engine) {
    let app = spawn_app(engine).await;
    // Just over the limit: small enough that the client finishes writing before the server,
    // which answers from Content-Length alone, closes the connection.
    let filler = "x".repeat(portcullis::startup::MAX_BODY_BYTES + 1024);
    let big = format!("{{\"slug\":\"big\",\"name\":\"{filler}\",\"admin_email\":\"a@b.example\"}}");
    let res = app
        .client
        .post(app.url("/api/v1/tenants"))
        .header(HOST, app.host(None))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .bearer_auth(&app.platform_token)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let out = app.cli(&["tenant", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tenants"], serde_json::json!([]));
    app.stop().await;
}

async fn row_level_security_hides_tenant_rows_without_a_tenant_scope(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let db = match engine {
        Engine::Postgres => Some(crate::helpers::TestDb::create().await),
        Engine::Sqlite => None,
    };
    let settings = crate::helpers::settings_for(engine, dir.path(), db.as_ref());
    let app = portcullis::startup::Application::build(settings)
        .await
        .unwrap();
    let store = app.store().clone();
    portcullis::tenants::create(&store, "acme", "Acme", "a@acme.example")
        .await
        .unwrap();
    let unscoped = store.count_users_unscoped().await.unwrap();
    match engine {
        // PostgreSQL: the policy filters every row when no tenant is set, even though the
        // login role is a superuser (the pool runs as portcullis_app).
        Engine::Postgres => assert_eq!(unscoped, 0),
        // SQLite has no RLS; isolation there rests on the tenant_id in every query.
        Engine::Sqlite => assert_eq!(unscoped, 1),
    }
    // Scoped reads still see the tenant's own rows.
    let t = store
        .tenant_by_slug(&portcullis::domain::TenantSlug::parse("acme").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.user_counts(&t.tenant_id).await.unwrap().users, 1);
    assert_eq!(store.user_counts("another-tenant").await.unwrap().users, 0);
    store.close().await;
}
