//! Upstream servers and gateway tokens: API, CLI, isolation, bad input.

use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::header::HOST;
use reqwest::StatusCode;
use serde_json::json;

on_both_engines!(
    admins_add_list_and_delete_servers_of_every_transport,
    bad_server_definitions_are_refused_and_nothing_is_stored,
    a_tenant_never_sees_another_tenants_servers,
    the_cli_adds_and_lists_servers_with_the_documented_json,
    gateway_tokens_belong_to_one_user_of_one_tenant,
);

async fn post_server(
    app: &TestApp,
    tenant: &str,
    token: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/servers"))
        .header(HOST, app.host(Some(tenant)))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn list(app: &TestApp, tenant: &str, token: &str) -> Vec<serde_json::Value> {
    let res = app
        .get(&app.host(Some(tenant)), "/api/v1/servers")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let v: serde_json::Value = res.json().await.unwrap();
    v["servers"].as_array().unwrap().clone()
}

async fn admins_add_list_and_delete_servers_of_every_transport(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let t = &acme.admin_token;
    let res = post_server(
        &app,
        "acme",
        t,
        json!({
            "slug": "crm", "name": "CRM", "description": "Customer records",
            "upstream": {"transport": "streamable_http", "url": "https://crm.example.com/mcp"}
        }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let crm: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        crm["endpoint"],
        format!("http://acme.localhost:{}/mcp/crm", app.port)
    );
    assert_eq!(crm["upstream"]["url"], "https://crm.example.com/mcp");
    let res = post_server(
        &app,
        "acme",
        t,
        json!({
            "slug": "legacy", "upstream": {"transport": "sse", "url": "http://127.0.0.1:9/sse"}
        }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = post_server(&app, "acme", t, json!({
        "slug": "everything",
        "upstream": {"transport": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"], "instance": "per_user"}
    })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let everything: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        everything["name"], "everything",
        "the name defaults to the slug"
    );
    assert_eq!(everything["upstream"]["instance"], "per_user");

    let slugs: Vec<_> = list(&app, "acme", t)
        .await
        .iter()
        .map(|s| s["slug"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(slugs, ["crm", "everything", "legacy"]);
    let res = app
        .get(&app.host(Some("acme")), "/api/v1/servers/crm")
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    let got: serde_json::Value = res.json().await.unwrap();
    assert_eq!(got["description"], "Customer records");

    let res = app
        .client
        .delete(app.url("/api/v1/servers/crm"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .client
        .delete(app.url("/api/v1/servers/crm"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .get(&app.host(Some("acme")), "/api/v1/servers/crm")
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(list(&app, "acme", t).await.len(), 2);
    app.stop().await;
}

async fn bad_server_definitions_are_refused_and_nothing_is_stored(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let t = &acme.admin_token;
    for (body, expect) in [
        (
            json!({"slug": "Bad Slug", "upstream": {"transport": "sse", "url": "https://x.example/sse"}}),
            "server slug",
        ),
        (
            json!({"slug": "agents", "upstream": {"transport": "sse", "url": "https://x.example/sse"}}),
            "reserved",
        ),
        (
            json!({"slug": "x", "upstream": {"transport": "sse", "url": "ftp://x.example/sse"}}),
            "http or https",
        ),
        (
            json!({"slug": "x", "upstream": {"transport": "streamable_http", "url": "https://u:pw@x.example/mcp"}}),
            "credentials",
        ),
        (
            json!({"slug": "x", "upstream": {"transport": "carrier-pigeon"}}),
            "upstream",
        ),
        (
            json!({"slug": "x", "upstream": {"transport": "stdio", "command": "  "}}),
            "command",
        ),
        (
            json!({"slug": "x", "upstream": {"transport": "stdio", "command": "srv", "cwd": "relative/dir"}}),
            "absolute",
        ),
        (
            json!({"slug": "x", "upstream": {"transport": "sse", "url": "https://x.example/sse", "token": "s3cret"}}),
            "upstream",
        ),
    ] {
        let res = post_server(&app, "acme", t, body.clone()).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let v: serde_json::Value = res.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(expect), "{body}: {msg}");
    }
    // Unknown top-level fields are a read error of the request itself.
    let res = post_server(&app, "acme", t, json!({"slug": "x", "upstream": {"transport": "sse", "url": "https://x.example/sse"}, "secret": 1})).await;
    assert!(res.status().is_client_error());
    assert!(list(&app, "acme", t).await.is_empty(), "nothing stored");
    let ok =
        json!({"slug": "dup", "upstream": {"transport": "sse", "url": "https://x.example/sse"}});
    assert_eq!(
        post_server(&app, "acme", t, ok.clone()).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        post_server(&app, "acme", t, ok).await.status(),
        StatusCode::CONFLICT
    );
    app.stop().await;
}

async fn a_tenant_never_sees_another_tenants_servers(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let res = post_server(&app, "acme", &acme.admin_token, json!({
        "slug": "crm", "upstream": {"transport": "streamable_http", "url": "https://crm.example.com/mcp"}
    })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(list(&app, "globex", &globex.admin_token).await.is_empty());
    let res = app
        .get(&app.host(Some("globex")), "/api/v1/servers/crm")
        .bearer_auth(&globex.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .client
        .delete(app.url("/api/v1/servers/crm"))
        .header(HOST, app.host(Some("globex")))
        .bearer_auth(&globex.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // The same slug is free in another tenant.
    let res = post_server(
        &app,
        "globex",
        &globex.admin_token,
        json!({
            "slug": "crm", "upstream": {"transport": "sse", "url": "https://other.example/sse"}
        }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        list(&app, "acme", &acme.admin_token).await[0]["upstream"]["url"],
        "https://crm.example.com/mcp"
    );
    app.stop().await;
}

async fn the_cli_adds_and_lists_servers_with_the_documented_json(engine: Engine) {
    let app = spawn_app(engine).await;
    app.create_tenant("acme").await;
    let out = app.cli(&[
        "server",
        "add",
        "--tenant",
        "acme",
        "--slug",
        "everything",
        "--stdio",
        "npx -y '@modelcontextprotocol/server-everything'",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["server"]["slug"], "everything");
    assert_eq!(
        v["server"]["upstream"],
        json!({"transport": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"], "instance": "shared"})
    );
    let out = app.cli(&[
        "server",
        "add",
        "--tenant",
        "acme",
        "--slug",
        "legacy",
        "--url",
        "http://127.0.0.1:9/sse",
        "--transport",
        "sse",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["server"]["upstream"]["transport"], "sse");
    let out = app.cli(&["server", "list", "--tenant", "acme", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["servers"].as_array().unwrap().len(), 2);

    for (args, expect) in [
        (
            vec![
                "server",
                "add",
                "--tenant",
                "nope",
                "--slug",
                "x",
                "--url",
                "https://x.example/mcp",
            ],
            "no tenant",
        ),
        (
            vec![
                "server",
                "add",
                "--tenant",
                "acme",
                "--slug",
                "x",
                "--url",
                "https://x.example/mcp",
                "--stdio",
                "srv",
            ],
            "cannot be used",
        ),
        (
            vec!["server", "add", "--tenant", "acme", "--slug", "x"],
            "required",
        ),
        (
            vec![
                "server",
                "add",
                "--tenant",
                "acme",
                "--slug",
                "x",
                "--url",
                "gopher://x",
            ],
            "http or https",
        ),
        (
            vec![
                "server",
                "add",
                "--tenant",
                "acme",
                "--slug",
                "legacy",
                "--url",
                "https://x.example/mcp",
            ],
            "already exists",
        ),
    ] {
        let out = app.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let out = app.cli(&["server", "list", "--tenant", "acme", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["servers"].as_array().unwrap().len(),
        2,
        "failed commands stored nothing"
    );
    app.stop().await;
}

async fn gateway_tokens_belong_to_one_user_of_one_tenant(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let out = app.cli(&[
        "token",
        "create",
        "--tenant",
        "acme",
        "--user",
        "Dev@Acme.example",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cli_token = v["token"].as_str().unwrap().to_owned();
    assert!(cli_token.starts_with("pct_user_"));
    assert_eq!(v["user"], "dev@acme.example");

    let res = app
        .client
        .post(app.url("/api/v1/tokens"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(&acme.admin_token)
        .json(&json!({"user_email": "dev@acme.example", "label": "laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let v: serde_json::Value = res.json().await.unwrap();
    let api_token = v["token"].as_str().unwrap().to_owned();
    assert_ne!(api_token, cli_token);

    // The store resolves each token to the same user, in its own tenant only.
    let store = open_store(&app).await;
    let acme_id = tenant_id(&store, "acme").await;
    let globex_id = tenant_id(&store, "globex").await;
    for token in [&cli_token, &api_token] {
        let hash =
            portcullis::domain::TokenHash::of_presented(portcullis::domain::TokenKind::User, token)
                .unwrap();
        let user = store
            .user_by_api_token(&acme_id, &hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.email, "dev@acme.example");
        assert!(!user.is_admin);
        assert!(store
            .user_by_api_token(&globex_id, &hash)
            .await
            .unwrap()
            .is_none());
    }
    // A gateway token is not an admin token.
    let res = app
        .get(&app.host(Some("acme")), "/api/v1/tenant")
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    store.close().await;
    let out = app.cli(&[
        "token",
        "create",
        "--tenant",
        "acme",
        "--user",
        "not-an-email",
        "--json",
    ]);
    assert!(!out.status.success());
    app.stop().await;
}

async fn open_store(app: &TestApp) -> portcullis::store::Store {
    let mut global = portcullis::config::GlobalArgs::default();
    let mut args = app.db_args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data-dir" => global.data_dir = args.next().map(Into::into),
            "--database-url" => global.database_url = args.next().cloned(),
            _ => {}
        }
    }
    let cfg = portcullis::config::StoreConfig::resolve(&global).unwrap();
    portcullis::store::Store::open(&cfg.database).await.unwrap()
}

async fn tenant_id(store: &portcullis::store::Store, slug: &str) -> String {
    store
        .tenant_by_slug(&portcullis::domain::TenantSlug::parse(slug).unwrap())
        .await
        .unwrap()
        .unwrap()
        .tenant_id
}
