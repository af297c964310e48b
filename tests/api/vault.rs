//! The vault and token brokering, first slice: a server's credential (an API key header or a
//! bearer token) is sealed in the vault and injected by the gateway into requests to an
//! upstream that refuses calls without it (our fixture with `--require-header`); a unique
//! canary value is found nowhere a client, an admin or the audit log can read, nor in the raw
//! database (the SQLite file, a `pg_dump`); data-key rotation re-encrypts it.

use crate::access::api;
use crate::gateway::{add_server, fixture_path, user_token};
use crate::gateway_sessions::Mcp;
use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_engines!(upstream_credentials_live_in_the_vault_and_never_reach_clients);

/// Every byte of the database as text: the SQLite file (and its WAL), or a `pg_dump`.
pub(crate) fn database_bytes(app: &TestApp, engine: Engine) -> String {
    match engine {
        Engine::Sqlite => {
            let mut all = Vec::new();
            for name in ["portcullis.db", "portcullis.db-wal"] {
                if let Ok(b) = std::fs::read(app.data_dir.join(name)) {
                    all.extend(b);
                }
            }
            assert!(!all.is_empty(), "the SQLite file was read");
            String::from_utf8_lossy(&all).into_owned()
        }
        Engine::Postgres => {
            let url = app
                .db_args
                .iter()
                .skip_while(|a| *a != "--database-url")
                .nth(1)
                .expect("a PostgreSQL URL")
                .clone();
            let out = std::process::Command::new("pg_dump")
                .arg("--no-owner")
                .arg(&url)
                .output()
                .expect("pg_dump runs");
            assert!(
                out.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let dump = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(dump.contains("vault_secret"), "the dump holds the vault");
            dump
        }
    }
}

async fn upstream_credentials_live_in_the_vault_and_never_reach_clients(engine: Engine) {
    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(fixture_path("everything_fixture.mjs"))
        .arg("http")
        .args(["--port", "0", "--require-header"])
        .arg(format!("x-api-key={canary}"));
    let upstream = crate::conformance::start_listening(cmd).await;
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    add_server(
        &app,
        "acme",
        admin,
        "crm",
        json!({"transport": "streamable_http", "url": upstream.url}),
    )
    .await;
    let dev = user_token(&app, "acme", admin, "dev@acme.example").await;
    let mut seen_by_clients = String::new();

    // Without its credential the upstream refuses the gateway.
    let res = Mcp::new(&app, "acme", "crm", &dev)
        .post(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Bad input is refused and stores nothing.
    for (bad, status) in [
        (
            json!({"kind": "magic", "value": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"kind": "header", "header": "Host", "value": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"kind": "header", "header": "bad header", "value": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"kind": "bearer", "value": "line\nbreak"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"kind": "bearer", "value": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"kind": "bearer"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"kind": "bearer", "value": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (s, v) = api(
            &app,
            admin,
            Method::PUT,
            "/api/v1/servers/crm/credential",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, status, "{bad}: {v}");
    }
    let (s, _) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/crm/credential",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing was stored");
    let (s, _) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/nope/credential",
        Some(json!({"kind": "bearer", "value": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Set: the answer and the listing say what is set, never the value.
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/crm/credential",
        Some(json!({"kind": "header", "header": "X-Api-Key", "value": canary})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["header"], "x-api-key");
    assert_eq!(v["key_id"], "k1");
    let (_, listed) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/crm/credential",
        None,
    )
    .await;
    let (_, servers) = api(&app, admin, Method::GET, "/api/v1/servers", None).await;
    let (_, vault) = api(&app, admin, Method::GET, "/api/v1/vault", None).await;
    assert_eq!(vault["secrets"], 1, "{vault}");
    assert_eq!(vault["algorithm"], "AES-256-GCM");
    for admin_view in [&v, &listed, &servers, &vault] {
        assert!(!admin_view.to_string().contains(&canary), "{admin_view}");
    }

    // The gateway injects it: a client's calls go through (the proxy and an agent endpoint).
    let mut m = Mcp::new(&app, "acme", "crm", &dev);
    let init = m.initialize().await;
    seen_by_clients.push_str(&init.to_string());
    for (id, method, params) in [
        (1, "tools/list", json!({})),
        (
            2,
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "brokered"}}),
        ),
        (
            3,
            "tools/call",
            json!({"name": "test_error_handling", "arguments": {}}),
        ),
    ] {
        let msgs = m.request(json!(id), method, params).await;
        seen_by_clients.push_str(&serde_json::to_string(&msgs).unwrap());
    }
    assert!(
        seen_by_clients.contains("Echo: brokered"),
        "{seen_by_clients}"
    );
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/agents",
        Some(json!({"slug": "bot", "owner": "dev@acme.example",
            "tool_set": [{"server": "crm", "tools": ["echo"]}]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, t) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/agents/bot/tokens",
        Some(json!({})),
    )
    .await;
    let mut bot = Mcp::new(&app, "acme", "agents/bot", t["token"].as_str().unwrap());
    bot.initialize().await;
    let text = bot
        .call_text(1, "crm__echo", json!({"message": "agent"}))
        .await;
    assert_eq!(text, "Echo: agent");
    seen_by_clients.push_str(&text);
    // "Test connection" reaches the protected upstream too.
    let (s, v) = api(&app, admin, Method::POST, "/api/v1/servers/crm/test", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["ok"], true, "{v}");
    seen_by_clients.push_str(&v.to_string());

    // The canary is nowhere: not in what clients got, the audit log, or the raw database.
    assert!(!seen_by_clients.contains(&canary));
    let audit = app
        .client
        .get(app.url("/api/v1/audit/export?format=jsonl"))
        .header(reqwest::header::HOST, app.host(Some("acme")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        audit.contains("server.credential.set"),
        "the change is recorded"
    );
    assert!(!audit.contains(&canary));
    assert!(
        !database_bytes(&app, engine).contains(&canary),
        "no plaintext at rest"
    );

    // Data-key rotation re-encrypts it; calls go on working.
    let (s, v) = api(&app, admin, Method::POST, "/api/v1/vault/rotate", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["key_id"], "k2");
    assert_eq!(v["secrets_reencrypted"], 1);
    let (_, vault) = api(&app, admin, Method::GET, "/api/v1/vault", None).await;
    let keys: Vec<(String, bool)> = vault["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key_id"].as_str().unwrap().to_owned(),
                k["active"] == true,
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![("k2".into(), true), ("k1".into(), false)],
        "{vault}"
    );
    let (_, listed) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/crm/credential",
        None,
    )
    .await;
    assert_eq!(listed["key_id"], "k2");
    assert_eq!(
        m.call_text(4, "echo", json!({"message": "after"})).await,
        "Echo: after"
    );

    // Deleted: the next request goes without it (and the upstream refuses).
    let (s, _) = api(
        &app,
        admin,
        Method::DELETE,
        "/api/v1/servers/crm/credential",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let res = m
        .post(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "x"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let v: Value = res.json().await.unwrap_or(Value::Null);
    assert!(!v.to_string().contains(&canary));
    app.stop().await;
}

/// Secrets sealed with the master key by earlier releases (an IdP client secret, a SIEM
/// webhook key) move into the vault, once; the settings then say where they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_of_earlier_releases_move_into_the_vault() {
    let app = spawn_app(Engine::Sqlite).await;
    let acme = app.create_tenant("acme").await;
    let store = portcullis::store::Store::open(&portcullis::store::DatabaseLocation::Sqlite(
        app.data_dir.join("portcullis.db"),
    ))
    .await
    .unwrap();
    let key = std::sync::Arc::new(
        portcullis::keys::load_or_create(None, &app.data_dir, false, &store)
            .await
            .unwrap(),
    );
    let tenant = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.slug == "acme")
        .unwrap();
    let tid = tenant.tenant_id.as_str();
    let idp_secret = format!("idp-{}", uuid::Uuid::new_v4().simple());
    let hook_secret = format!("hook-{}", uuid::Uuid::new_v4().simple());
    // As earlier releases stored them.
    let legacy = json!({"issuer": "https://idp.example", "client_id": "portcullis",
        "client_secret_sealed": key.seal(&format!("tenant/{tid}/oidc-client-secret"), idp_secret.as_bytes()),
        "scopes": ["openid"], "groups_claim": "groups", "allowed_domains": []});
    store
        .set_tenant_setting(tid, "oidc", &legacy.to_string())
        .await
        .unwrap();
    let hook = key.seal(&format!("siem {tid} soc"), hook_secret.as_bytes());
    store
        .create_siem(
            tid,
            "soc",
            "webhook",
            r#"{"url": "http://127.0.0.1:9/hook"}"#,
            Some(&hook),
            0,
        )
        .await
        .unwrap();

    let vault = portcullis::vault::Vault::new(key.clone());
    assert_eq!(
        portcullis::vault::migrate_legacy(&store, &vault)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        portcullis::vault::migrate_legacy(&store, &vault)
            .await
            .unwrap(),
        0,
        "idempotent"
    );
    let setting: Value =
        serde_json::from_str(&store.tenant_setting(tid, "oidc").await.unwrap().unwrap()).unwrap();
    assert_eq!(setting["client_secret_sealed"], "vault");
    let idp = vault
        .get(
            &store,
            tid,
            portcullis::vault::Slot {
                table: "tenant_setting",
                row: tid,
                name: "idp_client_secret",
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(idp.as_str(), idp_secret);
    let siem = store.list_siem(tid).await.unwrap();
    assert_eq!(siem[0].secret_sealed.as_deref(), Some("vault"));
    // The running server sees both in its vault, and shows neither.
    let (_, v) = api(&app, &acme.admin_token, Method::GET, "/api/v1/vault", None).await;
    assert_eq!(v["secrets"], 2, "{v}");
    let (_, sso) = api(&app, &acme.admin_token, Method::GET, "/api/v1/sso", None).await;
    assert_eq!(sso["settings"]["client_secret_set"], true, "{sso}");
    assert!(!sso.to_string().contains(&idp_secret));
    assert!(!database_bytes(&app, Engine::Sqlite).contains(&hook_secret));
    store.close().await;
    app.stop().await;
}

/// `portcullis keys rotate` while the server runs: every data key is re-wrapped under the new
/// master key; the running server goes on; a server started with only the new key (the
/// previous one removed) reads every secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_rotates_while_the_server_runs() {
    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(fixture_path("everything_fixture.mjs"))
        .arg("http")
        .args(["--port", "0", "--require-header"])
        .arg(format!("authorization=Bearer {canary}"));
    let upstream = crate::conformance::start_listening(cmd).await;
    let app = spawn_app(Engine::Sqlite).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    add_server(
        &app,
        "acme",
        admin,
        "crm",
        json!({"transport": "streamable_http", "url": upstream.url}),
    )
    .await;
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/crm/credential",
        Some(json!({"kind": "bearer", "value": canary})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let dev = user_token(&app, "acme", admin, "dev@acme.example").await;
    let mut m = Mcp::new(&app, "acme", "crm", &dev);
    m.initialize().await;
    assert_eq!(
        m.call_text(1, "echo", json!({"message": "before"})).await,
        "Echo: before"
    );
    let (_, before) = api(&app, admin, Method::GET, "/api/v1/vault", None).await;

    let out = app.cli(&["keys", "rotate", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated["previous_fingerprint"], before["kek_fingerprint"]);
    assert_ne!(rotated["kek_fingerprint"], before["kek_fingerprint"]);
    assert!(
        rotated["data_keys_rewrapped"].as_u64().unwrap() >= 1,
        "{rotated}"
    );
    assert!(app.data_dir.join("master.key.previous").exists());

    // The running server goes on (it holds its data keys).
    assert_eq!(
        m.call_text(2, "echo", json!({"message": "during"})).await,
        "Echo: during"
    );
    // Only the new key: every data key unwraps under it.
    std::fs::remove_file(app.data_dir.join("master.key.previous")).unwrap();
    let fresh = app.replica().await;
    let (_, after) = api(&fresh, admin, Method::GET, "/api/v1/vault", None).await;
    assert_eq!(after["kek_fingerprint"], rotated["kek_fingerprint"]);
    assert!(
        after["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kek_fingerprint"] == rotated["kek_fingerprint"]),
        "{after}"
    );
    let mut f = Mcp::new(&fresh, "acme", "crm", &dev);
    f.initialize().await;
    assert_eq!(
        f.call_text(3, "echo", json!({"message": "after"})).await,
        "Echo: after"
    );
    let (s, v) = api(&fresh, admin, Method::GET, "/api/v1/audit/checkpoint", None).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the checkpoint key survives the rotation: {v}"
    );
    // A rotation with a key that is not the database's changes nothing.
    std::fs::write(
        app.data_dir.join("master.key"),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )
    .unwrap();
    let out = app.cli(&["keys", "rotate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"));
    fresh.stop().await;
    app.stop().await;
}

/// A stdio server gets its credential from the vault as an environment variable of its
/// process (our fixture refuses to start without it); a replaced credential means a new
/// process; the value never reaches a client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_gets_its_credential_as_an_environment_variable() {
    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app(Engine::Sqlite).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    add_server(
        &app,
        "acme",
        admin,
        "fx",
        json!({"transport": "stdio", "command": "node",
               "args": [fixture_path("everything_fixture.mjs"), "stdio",
                        "--require-env", format!("FX_TOKEN={canary}")]}),
    )
    .await;
    let dev = user_token(&app, "acme", admin, "dev@acme.example").await;
    let initialize = |m: &Mcp<'_>| {
        m.post(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}}),
        )
        .send()
    };
    // Without it the process does not start: no session.
    let res = initialize(&Mcp::new(&app, "acme", "fx", &dev))
        .await
        .unwrap();
    let ok = res.status() == StatusCode::OK && res.headers().get("mcp-session-id").is_some();
    assert!(!ok, "no session without the credential");

    for (bad, says) in [
        (
            json!({"kind": "bearer", "value": "x"}),
            "environment variable",
        ),
        (
            json!({"kind": "env", "env": "PATH", "value": "x"}),
            "cannot be set",
        ),
        (
            json!({"kind": "env", "env": "lower_case", "value": "x"}),
            "variable name",
        ),
        (
            json!({"kind": "env", "env": "LD_PRELOAD", "value": "x"}),
            "cannot be set",
        ),
    ] {
        let (s, v) = api(
            &app,
            admin,
            Method::PUT,
            "/api/v1/servers/fx/credential",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert!(v.to_string().contains(says), "{bad}: {v}");
    }
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/fx/credential",
        Some(json!({"kind": "env", "env": "FX_TOKEN", "value": canary})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["header"], "FX_TOKEN");
    assert!(!v.to_string().contains(&canary));

    let mut m = Mcp::new(&app, "acme", "fx", &dev);
    let init = m.initialize().await;
    let echoed = m.call_text(1, "echo", json!({"message": "env"})).await;
    assert_eq!(echoed, "Echo: env");
    let (s, tested) = api(&app, admin, Method::POST, "/api/v1/servers/fx/test", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(tested["ok"], true, "{tested}");
    for seen in [init.to_string(), echoed, tested.to_string()] {
        assert!(!seen.contains(&canary));
    }

    // Replaced (by a wrong one here): the next session runs a new process with it.
    let (s, _) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/fx/credential",
        Some(json!({"kind": "env", "env": "FX_TOKEN", "value": "wrong"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let res = initialize(&Mcp::new(&app, "acme", "fx", &dev))
        .await
        .unwrap();
    let ok = res.status() == StatusCode::OK && res.headers().get("mcp-session-id").is_some();
    assert!(!ok, "the new process got the new (wrong) value");
    app.stop().await;
}

/// `keys rotate` while clients call through the gateway and admins keep writing secrets in
/// three tenants: every call is answered, every write lands, and afterwards the new key alone
/// (the previous one deleted) opens every secret — the last value written of each included.
/// While the rotation runs no server makes a data key under the key being retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_master_key_rotates_under_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(fixture_path("everything_fixture.mjs"))
        .arg("http")
        .args(["--port", "0", "--require-header"])
        .arg(format!("authorization=Bearer {canary}"));
    let upstream = crate::conformance::start_listening(cmd).await;
    let app = Arc::new(spawn_app(Engine::Sqlite).await);
    let mut tenants = Vec::new();
    for slug in ["t-one", "t-two", "t-three"] {
        let admin = app.create_tenant(slug).await.admin_token;
        add_server(
            &app,
            slug,
            &admin,
            "crm",
            json!({"transport": "streamable_http", "url": upstream.url}),
        )
        .await;
        add_server(
            &app,
            slug,
            &admin,
            "notes",
            json!({"transport": "streamable_http", "url": "http://127.0.0.1:9/mcp"}),
        )
        .await;
        let (s, v) = api_on(
            &app,
            slug,
            &admin,
            Method::PUT,
            "/api/v1/servers/crm/credential",
            json!({"kind": "bearer", "value": canary}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let dev = user_token(&app, slug, &admin, "dev@x.example").await;
        tenants.push((slug.to_owned(), admin, dev));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for (slug, admin, dev) in tenants.clone() {
        let (app, stop) = (app.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut m = Mcp::new(&app, &slug, "crm", &dev);
            m.initialize().await;
            let (mut calls, mut last) = (0u64, String::new());
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) || n < 5 {
                n += 1;
                let text = m
                    .call_text(n as i64, "echo", json!({"message": format!("m{n}")}))
                    .await;
                assert_eq!(
                    text,
                    format!("Echo: m{n}"),
                    "{slug}: a call during the rotation"
                );
                calls += 1;
                let value = format!("note-{slug}-{n}");
                let (s, v) = api_on(
                    &app,
                    &slug,
                    &admin,
                    Method::PUT,
                    "/api/v1/servers/notes/credential",
                    json!({"kind": "bearer", "value": value}),
                )
                .await;
                assert_eq!(
                    s,
                    StatusCode::OK,
                    "{slug}: a write during the rotation: {v}"
                );
                last = value;
            }
            (slug, calls, last)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let cli_app = app.clone();
    let out = tokio::task::spawn_blocking(move || cli_app.cli(&["keys", "rotate", "--json"]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated["tenants"], 3, "{rotated}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut last = std::collections::HashMap::new();
    for l in load {
        let (slug, calls, value) = l.await.expect("the load ran without a failure");
        assert!(calls >= 5, "{slug}: {calls} calls");
        last.insert(slug, value);
    }

    // Only the new key from now on: it opens every secret, the last writes included.
    std::fs::remove_file(app.data_dir.join("master.key.previous")).unwrap();
    let store = portcullis::store::Store::open(&portcullis::store::DatabaseLocation::Sqlite(
        app.data_dir.join("portcullis.db"),
    ))
    .await
    .unwrap();
    let key = portcullis::keys::load_or_create(None, &app.data_dir, false, &store)
        .await
        .expect("the new key is the database's");
    assert_eq!(
        key.fingerprint(),
        rotated["kek_fingerprint"].as_str().unwrap()
    );
    let vault = portcullis::vault::Vault::new(Arc::new(key));
    for t in store.list_tenants().await.unwrap() {
        let Some(value) = last.get(&t.slug) else {
            continue;
        };
        let servers = store.list_servers(&t.tenant_id).await.unwrap();
        for s in servers {
            let plain = vault
                .get(
                    &store,
                    &t.tenant_id,
                    portcullis::vault::Slot {
                        table: "mcp_server",
                        row: &s.server_id,
                        name: "credential",
                    },
                )
                .await
                .expect("opens under the new key alone")
                .expect("stored");
            let want = if s.slug == "crm" {
                canary.as_str()
            } else {
                value.as_str()
            };
            assert!(
                plain.contains(want),
                "{} {}: the last value written",
                t.slug,
                s.slug
            );
        }
    }
    store.close().await;
    // And a server started with the new key alone serves them.
    let fresh = app.replica().await;
    for (slug, _, dev) in &tenants {
        let mut m = Mcp::new(&fresh, slug, "crm", dev);
        m.initialize().await;
        assert_eq!(
            m.call_text(1, "echo", json!({"message": "after"})).await,
            "Echo: after"
        );
    }
    fresh.stop().await;
}

async fn api_on(
    app: &TestApp,
    tenant: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let res = app
        .client
        .request(method, app.url(path))
        .header(reqwest::header::HOST, app.host(Some(tenant)))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The vault reaches its key-encryption key only through `vault::Kek`: data keys re-wrapped
/// under a KEK of another kind (standing in for a cloud KMS) open through it, and only
/// through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_encryption_key_is_pluggable() {
    use portcullis::vault::{Kek, Vault, VaultError};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    /// A "KMS": its own key, its own fingerprint, and a count of the calls it served.
    struct Kms {
        key: portcullis::keys::MasterKey,
        calls: AtomicUsize,
    }
    impl Kek for Kms {
        fn fingerprint(&self) -> String {
            "kms:test-key-1".into()
        }
        fn wrap(&self, aad: &[u8], k: &[u8; 32]) -> Result<String, VaultError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Kek::wrap(&self.key, aad, k).map(|w| format!("kms:{w}"))
        }
        fn unwrap(&self, aad: &[u8], w: &str) -> Result<zeroize::Zeroizing<[u8; 32]>, VaultError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Kek::unwrap(
                &self.key,
                aad,
                w.strip_prefix("kms:").ok_or(VaultError::Corrupt)?,
            )
        }
    }
    let app = spawn_app(Engine::Sqlite).await;
    let acme = app.create_tenant("acme").await;
    add_server(
        &app,
        "acme",
        &acme.admin_token,
        "crm",
        json!({"transport": "streamable_http", "url": "http://127.0.0.1:9/mcp"}),
    )
    .await;
    let (s, _) = api(
        &app,
        &acme.admin_token,
        Method::PUT,
        "/api/v1/servers/crm/credential",
        Some(json!({"kind": "bearer", "value": "kms-canary"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let store = portcullis::store::Store::open(&portcullis::store::DatabaseLocation::Sqlite(
        app.data_dir.join("portcullis.db"),
    ))
    .await
    .unwrap();
    let master = Arc::new(
        portcullis::keys::load_or_create(None, &app.data_dir, false, &store)
            .await
            .unwrap(),
    );
    let kms = Arc::new(Kms {
        key: portcullis::keys::generate_key().0,
        calls: AtomicUsize::new(0),
    });
    let (_, rewrapped) =
        portcullis::vault::rewrap_all(&store, &Vault::new(master.clone()), kms.as_ref())
            .await
            .unwrap();
    assert_eq!(rewrapped, 1);
    let tenant = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.slug == "acme")
        .unwrap();
    let server = store
        .list_servers(&tenant.tenant_id)
        .await
        .unwrap()
        .remove(0);
    let slot = portcullis::vault::Slot {
        table: "mcp_server",
        row: &server.server_id,
        name: "credential",
    };
    let with_kms = Vault::with_kek(master.clone(), kms.clone(), None);
    let plain = with_kms
        .get(&store, &tenant.tenant_id, slot)
        .await
        .unwrap()
        .unwrap();
    assert!(plain.contains("kms-canary"));
    assert!(
        kms.calls.load(Ordering::SeqCst) >= 2,
        "wrapped and unwrapped by the KMS"
    );
    // Without it, the master key alone opens nothing any more.
    let without = Vault::new(master);
    assert!(matches!(
        without.get(&store, &tenant.tenant_id, slot).await,
        Err(VaultError::Unwrap(_))
    ));
    store.close().await;
    app.stop().await;
}

/// A legacy SSE server gets its credential from the vault on its stream and on every message
/// (our fixture refuses both without it); a replaced credential means a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_sse_server_gets_its_credential_in_a_header() {
    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(fixture_path("everything_fixture.mjs"))
        .args(["sse", "--port", "0", "--require-header"])
        .arg(format!("x-api-key={canary}"));
    let upstream = crate::conformance::start_listening(cmd).await;
    let app = spawn_app(Engine::Sqlite).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    add_server(
        &app,
        "acme",
        admin,
        "old",
        json!({"transport": "sse", "url": upstream.url}),
    )
    .await;
    let dev = user_token(&app, "acme", admin, "dev@acme.example").await;
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/old/credential",
        Some(json!({"kind": "env", "env": "X", "value": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/old/credential",
        Some(json!({"kind": "header", "header": "X-Api-Key", "value": canary})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut m = Mcp::new(&app, "acme", "old", &dev);
    let init = m.initialize().await;
    assert!(!init.to_string().contains(&canary));
    assert_eq!(
        m.call_text(1, "echo", json!({"message": "legacy"})).await,
        "Echo: legacy"
    );
    let (_, t) = api(&app, admin, Method::POST, "/api/v1/servers/old/test", None).await;
    assert_eq!(t["ok"], true, "test connection carries it too: {t}");
    assert!(!t.to_string().contains(&canary));
    app.stop().await;
}
