//! The durable audit log (first slice: admin and security events): events land in the tenant's
//! hash chain, are searchable by keyset pages, and `portcullis audit verify` (and the API) find
//! a modified, inserted or deleted row.

use crate::gateway::{add_server_ungranted, user_token};
use crate::gateway_sessions::{stdio_fixture, Mcp};
use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::header::HOST;
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_engines!(
    admin_and_security_events_form_a_chain_that_finds_tampering,
    mcp_requests_are_recorded_before_they_are_carried_out,
);

async fn get(app: &TestApp, admin: &str, path: &str) -> Value {
    let res = app
        .get(&app.host(Some("acme")), path)
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    res.json().await.unwrap()
}

/// Runs one SQL statement directly against the app's database (as an attacker with database
/// access would).
pub(crate) async fn tamper(app: &TestApp, engine: Engine, sql: &str) {
    match engine {
        Engine::Sqlite => {
            let url = format!("sqlite://{}", app.data_dir.join("portcullis.db").display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        Engine::Postgres => {
            let url = app.db_args.last().unwrap();
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

fn verify_cli(app: &TestApp) -> (bool, Value) {
    let out = app.cli(&["audit", "verify", "--tenant", "acme", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

async fn admin_and_security_events_form_a_chain_that_finds_tampering(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    add_server_ungranted(
        &app,
        "acme",
        admin,
        "crm",
        json!({"transport": "streamable_http", "url": "http://127.0.0.1:9/mcp"}),
    )
    .await;
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
    let out = app.cli(&["scim", "token", "--tenant", "acme"]);
    assert!(out.status.success());

    // Every change is on the record, with who did it; the admin token's uses too.
    let v = get(&app, admin, "/api/v1/audit?limit=1000").await;
    let events = v["events"].as_array().unwrap();
    let find = |action: &str| {
        events
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {v}"))
    };
    let reg = find("registry.create");
    assert_eq!(reg["actor"], "admin@acme.example.com");
    assert_eq!(reg["target"], "sales");
    assert_eq!(reg["category"], "admin");
    assert_eq!(reg["detail"]["grants"], json!(["group:sales"]));
    assert_eq!(find("server.add")["target"], "crm");
    assert_eq!(find("scim.token_rotate")["actor"], "operator (CLI)");
    let used = events
        .iter()
        .find(|e| e["action"] == "admin_token.use" && e["detail"]["path"] == "/api/v1/registries")
        .unwrap_or_else(|| panic!("the admin token's use for /api/v1/registries: {v}"));
    assert_eq!(used["category"], "security");
    assert_eq!(used["detail"]["method"], "POST");
    assert!(!v.to_string().contains("pct_"), "no token in the log: {v}");
    // Newest first, in keyset pages.
    let page1 = get(&app, admin, "/api/v1/audit?limit=2").await;
    let seqs: Vec<i64> = page1["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] > seqs[1]);
    let next = page1["next"].as_i64().unwrap();
    let page2 = get(&app, admin, &format!("/api/v1/audit?limit=2&before={next}")).await;
    assert!(page2["events"][0]["seq"].as_i64().unwrap() < seqs[1]);
    let only = get(&app, admin, "/api/v1/audit?category=security&limit=1000").await;
    assert!(only["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["category"] == "security"));
    let res = app
        .get(&app.host(Some("acme")), "/api/v1/audit?since=yesterday")
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The chain holds, by the CLI and the API.
    let (ok, v) = verify_cli(&app);
    assert!(ok, "{v}");
    assert!(v["records"].as_u64().unwrap() >= 5, "{v}");
    assert_eq!(get(&app, admin, "/api/v1/audit/verify").await["ok"], true);

    // A modified row is found, by position.
    let target = "UPDATE audit_event SET target = 'forged' WHERE seq = 2";
    tamper(&app, engine, target).await;
    let (ok, v) = verify_cli(&app);
    assert!(!ok, "a broken chain exits non-zero");
    assert_eq!(v["first_break"]["seq"], 2, "{v}");
    assert_eq!(v["first_break"]["problem"], "modified", "{v}");
    let api = get(&app, admin, "/api/v1/audit/verify").await;
    assert_eq!(api["first_break"]["seq"], 2, "{api}");
    tamper(&app, engine, "DELETE FROM audit_event WHERE seq = 2").await;
    let (ok, v) = verify_cli(&app);
    assert!(!ok);
    assert_eq!(v["first_break"]["seq"], 3, "{v}");
    assert_eq!(v["first_break"]["problem"], "missing", "{v}");
    // An inserted row where the deleted one was, with made-up links.
    tamper(
        &app,
        engine,
        "INSERT INTO audit_event (event_id, tenant_id, seq, at, category, action, outcome, detail, prev_hash, hash) \
         SELECT 'fake', tenant_id, 2, at, 'admin', 'nothing.happened', 'ok', '{}', prev_hash, hash \
         FROM audit_event WHERE seq = 3",
    )
    .await;
    let (ok, v) = verify_cli(&app);
    assert!(!ok);
    assert_eq!(v["first_break"]["seq"], 2, "{v}");
    assert_eq!(v["first_break"]["event_id"], "fake", "{v}");
    app.stop().await;
}

async fn mcp_requests_are_recorded_before_they_are_carried_out(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    let tag = uuid::Uuid::new_v4().to_string();
    add_server_ungranted(&app, "acme", admin, "fx", stdio_fixture(&tag)).await;
    let res = app
        .client
        .post(app.url("/api/v1/registries"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(admin)
        .json(
            &json!({"slug": "fx", "servers": ["fx"], "grants": [{"subject": "everyone",
            "rules": [{"effect": "deny", "match": "crash"}]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let token = user_token(&app, "acme", admin, "dev@acme.example").await;
    let mut mcp = Mcp::new(&app, "acme", "fx", &token);
    mcp.initialize().await;
    mcp.request(json!(1), "tools/list", json!({})).await;
    assert_eq!(
        mcp.call_text(2, "echo", json!({"message": "hi"})).await,
        "Echo: hi"
    );
    assert_eq!(
        mcp.call_text(3, "crash", json!({})).await,
        "error: Unknown tool: crash"
    );

    let v = get(&app, admin, "/api/v1/audit?category=mcp&limit=1000").await;
    let events = v["events"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "initialize",
        "notifications/initialized",
        "tools/list",
        "tools/call",
    ] {
        assert!(actions.contains(&a), "{a} recorded: {actions:?}");
    }
    let call = |target: &str| {
        events
            .iter()
            .find(|e| e["action"] == "tools/call" && e["target"] == target)
            .unwrap_or_else(|| panic!("no tools/call {target}: {v}"))
    };
    let echo = call("echo");
    assert_eq!(echo["outcome"], "ok");
    assert_eq!(echo["decision"], "allow");
    assert!(
        echo["agent"].as_str().is_some_and(|a| !a.is_empty()),
        "{echo}"
    );
    assert!(
        echo["client"].as_str().is_some_and(|c| !c.is_empty()),
        "clientInfo kept from initialize: {echo}"
    );
    assert_eq!(echo["ip"], "127.0.0.1");
    assert!(echo["session_id"].as_str().is_some(), "{echo}");
    let (total, upstream) = (
        echo["latency_us"].as_i64().unwrap(),
        echo["upstream_us"].as_i64().unwrap(),
    );
    assert!(total >= upstream && upstream > 0, "{echo}");
    assert_eq!(echo["actor"], "dev@acme.example");
    assert_eq!(echo["server"], "fx");
    assert_eq!(echo["detail"]["registry"], "fx");
    assert_eq!(echo["detail"]["jsonrpc_id"], 2);
    assert_eq!(
        echo["detail"]["arguments_sha256"].as_str().unwrap().len(),
        64
    );
    assert!(
        !v.to_string().contains("\"hi\""),
        "argument values are not recorded"
    );
    let crash = call("crash");
    assert_eq!(crash["outcome"], "denied");
    assert_eq!(crash["decision"], "deny");
    assert!(
        crash["detail"]["rule"].as_str().unwrap().contains("rule 1"),
        "{crash}"
    );
    let (ok, report) = verify_cli(&app);
    assert!(ok, "{report}");

    // Without a durable record, nothing is carried out: the database goes away, calls are refused.
    if let Engine::Postgres = engine {
        app.kill_database().await;
        let res = mcp
            .post(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                          "params": {"name": "echo", "arguments": {"message": "lost"}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = res.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("audit log"),
            "{body}"
        );
    }
    app.stop().await;
}
