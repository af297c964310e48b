//! The audit log as a reviewer uses it: search by user, group, method, decision and text;
//! exports (CSV, JSON Lines, OCSF) from the API and the CLI; the argument policy; signed
//! checkpoints; retention with legal hold; SIEM delivery to a webhook that goes down and up.

use crate::access::api as call;
use crate::gateway::{add_server_ungranted, user_token};
use crate::gateway_sessions::{stdio_fixture, Mcp};
use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::header::HOST;
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_engines!(
    a_reviewer_finds_exports_and_verifies_calls,
    retention_purges_what_is_out_of_policy_and_nothing_under_hold,
    a_webhook_gets_every_record_across_an_outage,
    a_real_rsyslog_gets_rfc5424_over_tcp_and_tls_across_an_outage,
    every_mcp_method_gets_exactly_one_record,
);

async fn get(app: &TestApp, admin: &str, path: &str) -> Value {
    let (s, v) = call(app, admin, reqwest::Method::GET, path, None).await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    v
}

/// An app whose SIEM worker runs every 100 ms (and retries a failing receiver from 100 ms).
async fn fast_siem_app(engine: Engine) -> TestApp {
    crate::helpers::spawn_app_with(
        engine,
        portcullis::config::ServeArgs {
            siem_interval_ms: Some(100),
            ..Default::default()
        },
    )
    .await
}

/// Five recorded admin changes (retention days from `base`), made while a receiver is down.
async fn changes(app: &TestApp, admin: &str, base: i64) {
    for i in 0..5 {
        let (s, v) = call(
            app,
            admin,
            reqwest::Method::PUT,
            "/api/v1/audit/settings",
            Some(json!({"retention_days": base + i})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

/// A tenant with the stdio fixture granted to everyone, and tokens of two users.
async fn setup(app: &TestApp) -> (String, String, String) {
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.clone();
    let tag = uuid::Uuid::new_v4().to_string();
    add_server_ungranted(app, "acme", &admin, "fx", stdio_fixture(&tag)).await;
    let (s, v) = call(
        app,
        &admin,
        reqwest::Method::POST,
        "/api/v1/registries",
        Some(
            json!({"slug": "fx", "servers": ["fx"], "grants": [{"subject": "everyone",
            "rules": [{"effect": "deny", "match": "crash"}]}]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let dev = user_token(app, "acme", &admin, "dev@acme.example").await;
    let ops = user_token(app, "acme", &admin, "ops@acme.example").await;
    (admin, dev, ops)
}

/// Puts ops@ in group `oncall` through SCIM, as an IdP would.
async fn ops_in_group(app: &TestApp, admin: &str) {
    let (_, t) = call(
        app,
        admin,
        reqwest::Method::POST,
        "/api/v1/scim/token",
        None,
    )
    .await;
    let scim = t["token"].as_str().unwrap().to_owned();
    let users = get(app, admin, "/api/v1/users").await;
    let ops_id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "ops@acme.example")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .client
        .post(app.url("/scim/v2/Groups"))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(&scim)
        .json(
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "oncall", "members": [{"value": ops_id}]}),
        )
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

async fn a_reviewer_finds_exports_and_verifies_calls(engine: Engine) {
    let app = spawn_app(engine).await;
    let (admin, dev, ops) = setup(&app).await;
    let admin = admin.as_str();
    ops_in_group(&app, admin).await;
    // The argument policy: full for this part (the default, hashed, is proven in audit.rs).
    let (s, v) = call(
        &app,
        admin,
        reqwest::Method::PUT,
        "/api/v1/audit/settings",
        Some(json!({"arguments": "full"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Bad settings are refused and change nothing.
    for bad in [
        json!({"arguments": "everything"}),
        json!({"retention_days": 0}),
        json!({"preset": "sox"}),
        json!({"unknown": 1}),
    ] {
        let (s, v) = call(
            &app,
            admin,
            reqwest::Method::PUT,
            "/api/v1/audit/settings",
            Some(bad.clone()),
        )
        .await;
        assert!(
            s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::BAD_REQUEST,
            "{bad}: {s} {v}"
        );
    }
    assert_eq!(
        get(&app, admin, "/api/v1/audit/settings").await["arguments"],
        "full"
    );
    // The gateway picks the policy up from its snapshot (refreshed on change).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let mut d = Mcp::new(&app, "acme", "fx", &dev);
    d.initialize().await;
    assert_eq!(
        d.call_text(2, "echo", json!({"message": "quarterly"}))
            .await,
        "Echo: quarterly"
    );
    assert_eq!(
        d.call_text(3, "crash", json!({})).await,
        "error: Unknown tool: crash"
    );
    let mut o = Mcp::new(&app, "acme", "fx", &ops);
    o.initialize().await;
    o.request(json!(1), "tools/list", json!({})).await;
    assert_eq!(
        o.call_text(2, "echo", json!({"message": "pager"})).await,
        "Echo: pager"
    );

    // Search: by user, group, method, decision, text; keyset pages.
    let by = |q: &str| {
        let path = format!("/api/v1/audit?{q}");
        let app = &app;
        async move { get(app, admin, &path).await }
    };
    let dev_calls = by("user=dev@acme.example&method=tools/call").await;
    let list = dev_calls["events"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{dev_calls}");
    let echo = list.iter().find(|e| e["target"] == "echo").unwrap();
    assert_eq!(
        echo["detail"]["arguments"],
        json!({"message": "quarterly"}),
        "full arguments"
    );
    assert_eq!(echo["outcome"], "ok");
    let denied = by("decision=deny").await;
    assert_eq!(denied["events"].as_array().unwrap().len(), 1, "{denied}");
    assert_eq!(denied["events"][0]["target"], "crash");
    let oncall = by("group=oncall&category=mcp").await;
    let oncall = oncall["events"].as_array().unwrap();
    assert!(!oncall.is_empty());
    assert!(oncall
        .iter()
        .all(|e| e["actor"] == "ops@acme.example" && e["groups"] == json!(["oncall"])));
    assert_eq!(
        by("q=ECH&user=ops@acme.example").await["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        by("method=tools/*&server=fx").await["events"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let page1 = by("category=mcp&limit=2").await;
    let next = page1["next"].as_i64().expect("a next page");
    let page2 = by(&format!("category=mcp&limit=2&before={next}")).await;
    assert!(
        page2["events"][0]["seq"].as_i64().unwrap() < page1["events"][1]["seq"].as_i64().unwrap()
    );
    let future = by("since=2999-01-01").await;
    assert_eq!(future["events"], json!([]));
    let (s, _) = call(
        &app,
        admin,
        reqwest::Method::GET,
        "/api/v1/audit?since=yesterday",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // One record in detail.
    let one = get(
        &app,
        admin,
        &format!("/api/v1/audit/events/{}", echo["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(one["hash"], echo["hash"]);
    assert!(one["prev_hash"].as_str().is_some());
    // Charts.
    let stats = get(&app, admin, "/api/v1/audit/stats?days=1").await;
    assert!(
        stats["top_tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "fx/echo" && t["count"] == 2),
        "{stats}"
    );
    let calls: i64 = stats["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["calls"].as_i64().unwrap())
        .sum();
    let denied: i64 = stats["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["denied"].as_i64().unwrap())
        .sum();
    assert!(calls >= 6 && denied == 1, "{stats}");

    // Exports: each format, the filter honoured, the count announced, the export recorded.
    let export = |q: String| {
        let app = &app;
        async move {
            let res = app
                .get(
                    &app.host(Some("acme")),
                    &format!("/api/v1/audit/export?{q}"),
                )
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{q}");
            let n: i64 = res.headers()["x-portcullis-records"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            (n, res.text().await.unwrap())
        }
    };
    let (n, csv_text) = export("format=csv&user=dev@acme.example".into()).await;
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len() as i64, n);
    assert!(n >= 4, "initialize, initialized, two calls: {csv_text}");
    let actor_col = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "actor")
        .unwrap();
    assert!(rows.iter().all(|r| &r[actor_col] == "dev@acme.example"));
    let (n, jsonl) = export("format=jsonl&decision=deny".into()).await;
    assert_eq!(n, 1);
    let line: Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(line["target"], "crash");
    let (_, ocsf) = export("format=ocsf&method=tools/call".into()).await;
    let events: Vec<Value> = ocsf
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    assert!(events
        .iter()
        .all(|e| e["class_uid"] == 6003 && e["api"]["operation"] == "tools/call"));
    assert!(events.iter().any(|e| e["disposition"] == "Blocked"));
    let (s, _) = call(
        &app,
        admin,
        reqwest::Method::GET,
        "/api/v1/audit/export?format=pdf",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let exports = by("action=audit.export").await;
    assert_eq!(
        exports["events"].as_array().unwrap().len(),
        3,
        "each export recorded: {exports}"
    );

    // The CLI export is the same data.
    let out = app.cli(&[
        "audit",
        "export",
        "--tenant",
        "acme",
        "--format",
        "jsonl",
        "--user",
        "ops@acme.example",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(cli_lines.len() >= 4);
    assert!(cli_lines.iter().all(|e| e["actor"] == "ops@acme.example"));
    assert!(
        cli_lines
            .windows(2)
            .all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()),
        "oldest first"
    );
    let bad = app.cli(&[
        "audit", "export", "--tenant", "acme", "--format", "jsonl", "--since", "soon",
    ]);
    assert!(!bad.status.success());

    // A signed checkpoint of the verified head.
    let cp = get(&app, admin, "/api/v1/audit/checkpoint").await;
    assert_eq!(cp["chain_ok"], true);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key: [u8; 32] = b64
        .decode(cp["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let sig: [u8; 64] = b64
        .decode(cp["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    let msg = cp["message"].as_str().unwrap();
    assert!(msg.contains(cp["hash"].as_str().unwrap()));
    vk.verify_strict(msg.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig))
        .expect("the signature holds");
    assert!(vk
        .verify_strict(b"another head", &ed25519_dalek::Signature::from_bytes(&sig))
        .is_err());
    let out = app.cli(&["audit", "verify", "--tenant", "acme", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    app.stop().await;
}

/// Rewrites the tenant's chain as history: `old` records at each of the given ages (days),
/// then the existing records, all re-linked with the product's own chain hash (a valid log
/// whose early part is old, as a long-running tenant's would be).
async fn backdate(app: &TestApp, engine: Engine, ages: &[(i64, usize)]) {
    use portcullis::store::AuditRow;
    let now = portcullis::store::now_micros();
    let day = 86_400_000_000_i64;
    let mut rows: Vec<AuditRow> = Vec::new();
    for (age, n) in ages {
        for i in 0..*n {
            rows.push(AuditRow {
                event_id: uuid::Uuid::now_v7().to_string(),
                tenant_id: String::new(),
                seq: 0,
                at: now - age * day + i as i64,
                category: "mcp".into(),
                action: "tools/call".into(),
                actor_id: None,
                actor: Some(format!("old{age}@acme.example")),
                server: Some("fx".into()),
                target: Some("echo".into()),
                outcome: "ok".into(),
                detail: "{}".into(),
                prev_hash: String::new(),
                hash: String::new(),
                decision: Some("allow".into()),
                client: None,
                agent: None,
                groups: None,
                ip: None,
                session_id: None,
                latency_us: None,
                upstream_us: None,
            });
        }
    }
    let sql = |q: &str| q.to_owned();
    macro_rules! with_db {
        (|$c:ident| $body:expr) => {
            match engine {
                Engine::Sqlite => {
                    let url = format!("sqlite://{}", app.data_dir.join("portcullis.db").display());
                    let $c = sqlx::SqlitePool::connect(&url).await.unwrap();
                    $body;
                    $c.close().await;
                }
                Engine::Postgres => {
                    let $c = sqlx::PgPool::connect(app.db_args.last().unwrap())
                        .await
                        .unwrap();
                    $body;
                    $c.close().await;
                }
            }
        };
    }
    with_db!(|c| {
        let tenant: (String,) = sqlx::query_as("SELECT tenant_id FROM tenant WHERE slug = 'acme'")
            .fetch_one(&c)
            .await
            .unwrap();
        let existing: Vec<AuditRow> = sqlx::query_as(
            "SELECT event_id, tenant_id, seq, at, category, action, actor_id, actor, server, target, outcome, detail, prev_hash, hash, decision, client, agent, groups, ip, session_id, latency_us, upstream_us FROM audit_event WHERE tenant_id = $1 ORDER BY seq")
            .bind(&tenant.0).fetch_all(&c).await.unwrap();
        sqlx::query("DELETE FROM audit_event WHERE tenant_id = $1")
            .bind(&tenant.0)
            .execute(&c)
            .await
            .unwrap();
        rows.extend(existing);
        let mut prev = portcullis::audit::GENESIS.to_owned();
        for (seq, r) in (1_i64..).zip(rows.iter_mut()) {
            if engine == Engine::Postgres {
                sqlx::query("SELECT portcullis_audit_partition($1)")
                    .bind(r.at)
                    .execute(&c)
                    .await
                    .unwrap();
            }
            r.tenant_id = tenant.0.clone();
            r.seq = seq;
            r.prev_hash = prev.clone();
            r.hash = portcullis::audit::chain_hash(&prev, r);
            prev = r.hash.clone();
            sqlx::query(sqlx::AssertSqlSafe(sql(
                "INSERT INTO audit_event (event_id, tenant_id, seq, at, category, action, actor_id, actor, server, target, outcome, detail, prev_hash, hash, decision, client, agent, groups, ip, session_id, latency_us, upstream_us) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)")))
                .bind(&r.event_id).bind(&r.tenant_id).bind(r.seq).bind(r.at).bind(&r.category).bind(&r.action)
                .bind(&r.actor_id).bind(&r.actor).bind(&r.server).bind(&r.target).bind(&r.outcome).bind(&r.detail)
                .bind(&r.prev_hash).bind(&r.hash).bind(&r.decision).bind(&r.client).bind(&r.agent).bind(&r.groups)
                .bind(&r.ip).bind(&r.session_id).bind(r.latency_us).bind(r.upstream_us)
                .execute(&c).await.unwrap();
        }
    });
}

async fn partition_exists(app: &TestApp, name: &str) -> bool {
    let c = sqlx::PgPool::connect(app.db_args.last().unwrap())
        .await
        .unwrap();
    let (e,): (bool,) = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(&c)
        .await
        .unwrap();
    c.close().await;
    e
}

async fn retention_purges_what_is_out_of_policy_and_nothing_under_hold(engine: Engine) {
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    backdate(&app, engine, &[(500, 5), (100, 3)]).await;
    let verify = || {
        let out = app.cli(&["audit", "verify", "--tenant", "acme", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(out.status.success(), "{v}");
        v
    };
    let before = verify()["records"].as_i64().unwrap();
    let old_month = {
        let at = portcullis::store::now_micros() - 500 * 86_400_000_000;
        portcullis::audit::export::time_micros(at)[..7].replace('-', "_")
    };
    if engine == Engine::Postgres {
        assert!(partition_exists(&app, &format!("audit_event_{old_month}")).await);
    }
    let purge = || async {
        call(
            &app,
            admin,
            reqwest::Method::POST,
            "/api/v1/audit/purge",
            None,
        )
        .await
        .1
    };
    // No retention period: nothing goes.
    assert!(purge().await["skipped"]
        .as_str()
        .unwrap()
        .contains("no retention"));

    // PCI DSS keeps a year: the 500-day-old records go, nothing else.
    let (s, v) = call(
        &app,
        admin,
        reqwest::Method::PUT,
        "/api/v1/audit/settings",
        Some(json!({"preset": "pci_dss"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["retention_days"], 365);
    assert!(
        v["presets"].to_string().contains("10.5.1"),
        "the requirement is cited: {v}"
    );
    let r = purge().await;
    assert_eq!(r["purged"], 5, "{r}");
    assert_eq!(r["through_seq"], 5);
    // The chain still verifies from its anchor, and holds every other record.
    let after = verify()["records"].as_i64().unwrap();
    let rows = get(&app, admin, "/api/v1/audit?limit=1000").await;
    // (The search's own admin_token.use record may come after the verification.)
    assert!(rows["events"].as_array().unwrap().len() as i64 >= after);
    assert!(
        after > before - 5,
        "only the 5 old records went: {before} {after}"
    );
    assert_eq!(rows["events"].as_array().unwrap().last().unwrap()["seq"], 6);
    let left = get(&app, admin, "/api/v1/audit?limit=1000").await;
    let left = left["events"].as_array().unwrap();
    assert!(!left.iter().any(|e| e["actor"] == "old500@acme.example"));
    assert_eq!(
        left.iter()
            .filter(|e| e["actor"] == "old100@acme.example")
            .count(),
        3
    );
    let rec = left
        .iter()
        .find(|e| e["action"] == "audit.purge")
        .expect("the purge is recorded");
    assert_eq!(rec["detail"]["records"], 5);
    if engine == Engine::Postgres {
        assert!(
            !partition_exists(&app, &format!("audit_event_{old_month}")).await,
            "the whole month was dropped"
        );
    }

    // Legal hold: a 30-day rule would take the 100-day-old records, but nothing goes.
    let (s, v) = call(&app, admin, reqwest::Method::PUT, "/api/v1/audit/settings",
        Some(json!({"retention_days": 30, "legal_hold": true, "legal_hold_reason": "matter 2026-14"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["retention_preset"], "custom");
    let r = purge().await;
    assert_eq!(r["skipped"], "legal hold", "{r}");
    let cli = app.cli(&["audit", "purge", "--tenant", "acme", "--json"]);
    assert!(String::from_utf8_lossy(&cli.stdout).contains("legal hold"));
    assert_eq!(
        get(&app, admin, "/api/v1/audit?user=old100@acme.example").await["events"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Released: the CLI purge takes exactly the 100-day-old records.
    call(
        &app,
        admin,
        reqwest::Method::PUT,
        "/api/v1/audit/settings",
        Some(json!({"legal_hold": false})),
    )
    .await;
    let cli = app.cli(&["audit", "purge", "--tenant", "acme", "--json"]);
    let r: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(r["purged"], 3, "{r}");
    assert_eq!(
        get(&app, admin, "/api/v1/audit?user=old100@acme.example").await["events"],
        json!([])
    );
    verify();
    let settings = get(&app, admin, "/api/v1/audit/settings").await;
    assert_eq!(settings["last_purged"], 3);
    assert!(settings["oldest"].as_str().is_some());
    // Deleting the oldest retained record and moving the anchor over it (so that the links
    // still hold) is found: no purge in the chain names that anchor.
    let c = |sql: &'static str| crate::audit::tamper(&app, engine, sql);
    c("UPDATE audit_anchor SET anchor_seq = anchor_seq + 1, anchor_hash = (SELECT e.hash FROM audit_event e \
       WHERE e.tenant_id = audit_anchor.tenant_id AND e.seq = audit_anchor.anchor_seq + 1)").await;
    c("DELETE FROM audit_event WHERE (tenant_id, seq) IN (SELECT tenant_id, anchor_seq FROM audit_anchor)").await;
    let out = app.cli(&["audit", "verify", "--tenant", "acme", "--json"]);
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["first_break"]["problem"], "anchor", "{v}");
    app.stop().await;
}

/// A webhook receiver that checks each batch's signature and can be taken down.
#[derive(Clone, Default)]
struct Receiver {
    seqs: std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    bad_signatures: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const WEBHOOK_KEY: &str = "a-webhook-key-of-32-characters!!";

async fn receive(
    axum::extract::State(r): axum::extract::State<Receiver>,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    use hmac::Mac;
    if r.down.load(std::sync::atomic::Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let ts = headers["x-portcullis-timestamp"].to_str().unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_KEY.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    if headers["x-portcullis-signature"].to_str().unwrap() != want {
        r.bad_signatures
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    let mut seqs = r.seqs.lock().unwrap();
    for e in v["events"].as_array().unwrap() {
        seqs.push(e["seq"].as_i64().unwrap());
    }
    StatusCode::NO_CONTENT
}

async fn until(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if ok().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn a_webhook_gets_every_record_across_an_outage(engine: Engine) {
    let app = fast_siem_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // Refused: plain http to another host, a missing secret, an unknown kind.
    for bad in [
        json!({"name": "x", "kind": "webhook", "url": "http://siem.example/hook", "secret": WEBHOOK_KEY}),
        json!({"name": "x", "kind": "webhook", "url": format!("http://127.0.0.1:{port}/hook")}),
        json!({"name": "x", "kind": "kafka"}),
        json!({"name": "x", "kind": "syslog", "host": "siem.example", "port": 514}),
        json!({"name": "x", "kind": "syslog", "host": "siem.example", "port": 514, "ca_pem": "x"}),
    ] {
        let (s, v) = call(
            &app,
            admin,
            reqwest::Method::POST,
            "/api/v1/audit/siem",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    let (s, d) = call(
        &app,
        admin,
        reqwest::Method::POST,
        "/api/v1/audit/siem",
        Some(
            json!({"name": "soc", "kind": "webhook", "url": format!("http://127.0.0.1:{port}/hook"),
                    "secret": WEBHOOK_KEY, "start": "beginning"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    assert_eq!(d["secret_set"], true);
    assert!(
        !d.to_string().contains(WEBHOOK_KEY),
        "the secret is never shown"
    );

    let head = || async {
        get(&app, admin, "/api/v1/audit?limit=1").await["events"][0]["seq"]
            .as_i64()
            .unwrap()
    };
    // Everything up to a head read once (each API call adds a record of its own, so a head
    // re-read on every poll would keep moving).
    let delivered_upto = |r: &Receiver, upto: i64| {
        let got: std::collections::BTreeSet<i64> = r.seqs.lock().unwrap().iter().copied().collect();
        (1..=upto).all(|s| got.contains(&s))
    };
    let upto = head().await;
    until("first delivery", async || delivered_upto(&receiver, upto)).await;

    // Down: changes go on being recorded; deliveries fail and say so.
    receiver
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    changes(&app, admin, 100).await;
    until("a failure to show", async || {
        let l = get(&app, admin, "/api/v1/audit/siem").await;
        l["destinations"][0]["failures"].as_i64().unwrap() > 0
    })
    .await;
    let l = get(&app, admin, "/api/v1/audit/siem").await;
    assert!(
        l["destinations"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{l}"
    );
    assert!(l["destinations"][0]["behind"].as_i64().unwrap() >= 5, "{l}");
    // Up again: everything arrives, nothing skipped.
    receiver
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let upto = head().await;
    until("delivery after the outage", async || {
        delivered_upto(&receiver, upto)
    })
    .await;
    assert_eq!(
        receiver
            .bad_signatures
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let l = get(&app, admin, "/api/v1/audit/siem").await;
    assert_eq!(l["destinations"][0]["failures"], 0, "{l}");
    // Disabled: nothing more is sent.
    let id = d["id"].as_str().unwrap();
    let (s, _) = call(
        &app,
        admin,
        reqwest::Method::PATCH,
        &format!("/api/v1/audit/siem/{id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let paused_at = receiver.seqs.lock().unwrap().len();
    call(
        &app,
        admin,
        reqwest::Method::PUT,
        "/api/v1/audit/settings",
        Some(json!({"retention_days": 99})),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(
        receiver.seqs.lock().unwrap().len(),
        paused_at,
        "a paused destination gets nothing"
    );
    let (s, _) = call(
        &app,
        admin,
        reqwest::Method::DELETE,
        &format!("/api/v1/audit/siem/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&app, admin, "/api/v1/audit?action=siem.*").await["events"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    app.stop().await;
}

/// The real rsyslogd (tests/fixtures/rsyslog.py), stopped when dropped (its stdin closes).
struct Rsyslog {
    child: std::process::Child,
    info: Value,
}

impl Rsyslog {
    fn start(dir: &std::path::Path, ports: Option<(u64, u64)>) -> Self {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(crate::gateway::fixture_path("rsyslog.py")).arg(dir);
        if let Some((tcp, tls)) = ports {
            cmd.args([
                "--tcp-port",
                &tcp.to_string(),
                "--tls-port",
                &tls.to_string(),
            ]);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("python3 runs the rsyslog fixture (scripts/setup.sh installs rsyslog)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("the rsyslog fixture did not start: {line:?}"));
        Self { child, info }
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }

    /// The seqs of tenant acme's records in a log file.
    fn seqs(&self, which: &str) -> std::collections::BTreeSet<i64> {
        let text = std::fs::read_to_string(self.info[which].as_str().unwrap()).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("tenant=\"acme\""))
            .filter_map(|l| l.split(" seq=\"").nth(1)?.split('"').next()?.parse().ok())
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

async fn a_real_rsyslog_gets_rfc5424_over_tcp_and_tls_across_an_outage(engine: Engine) {
    let app = fast_siem_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(dir.path(), None);
    let (tcp, tls) = (
        rsyslog.info["tcp"].as_u64().unwrap(),
        rsyslog.info["tls"].as_u64().unwrap(),
    );
    let ca = std::fs::read_to_string(rsyslog.info["ca"].as_str().unwrap()).unwrap();
    // A CA that is not one is refused.
    let (s, _) = call(&app, admin, reqwest::Method::POST, "/api/v1/audit/siem",
        Some(json!({"name": "bad", "kind": "syslog", "host": "localhost", "port": tls, "tls": true, "ca_pem": "nope"}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    for (name, port, tls_on) in [("relay", tcp, false), ("soc-tls", tls, true)] {
        let mut d = json!({"name": name, "kind": "syslog", "host": if tls_on { "localhost" } else { "127.0.0.1" },
            "port": port, "tls": tls_on, "start": "beginning"});
        if tls_on {
            d["ca_pem"] = json!(ca);
        }
        let (s, v) = call(
            &app,
            admin,
            reqwest::Method::POST,
            "/api/v1/audit/siem",
            Some(d),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let head = || async {
        get(&app, admin, "/api/v1/audit?limit=1").await["events"][0]["seq"]
            .as_i64()
            .unwrap()
    };
    let complete = |r: &Rsyslog, upto: i64| {
        ["tcp_log", "tls_log"].iter().all(|f| {
            let got = r.seqs(f);
            (1..=upto).all(|s| got.contains(&s))
        })
    };
    let upto = head().await;
    until("rsyslog to receive the log", async || {
        complete(&rsyslog, upto)
    })
    .await;
    // The lines are RFC 5424 with our structured data, as rsyslog parsed them.
    let tls_text = std::fs::read_to_string(rsyslog.info["tls_log"].as_str().unwrap()).unwrap();
    let line = tls_text
        .lines()
        .find(|l| l.contains("action=\"siem.create\""))
        .expect("the destination's own creation is delivered");
    assert!(
        line.starts_with("<110>1 "),
        "facility log audit, severity info: {line}"
    );
    assert!(line.contains("[portcullis@32473 tenant=\"acme\""), "{line}");
    assert!(
        line.contains(" portcullis portcullis - siem.create "),
        "{line}"
    );

    // The receiver goes down; records go on; it comes back on the same ports: nothing lost.
    rsyslog.stop();
    changes(&app, admin, 200).await;
    until("the failure to show", async || {
        let l = get(&app, admin, "/api/v1/audit/siem").await;
        l["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["failures"].as_i64().unwrap() > 0)
    })
    .await;
    let rsyslog = Rsyslog::start(dir.path(), Some((tcp, tls)));
    let upto = head().await;
    until("delivery after the outage", async || {
        complete(&rsyslog, upto)
    })
    .await;
    rsyslog.stop();
    app.stop().await;
}

async fn every_mcp_method_gets_exactly_one_record(engine: Engine) {
    let app = spawn_app(engine).await;
    let (admin, dev, _) = setup(&app).await;
    let admin = admin.as_str();
    let mut m = Mcp::new(&app, "acme", "fx", &dev);
    m.initialize().await;
    // (method, params, the target the record names, the outcome)
    let table: Vec<(&str, Value, Option<&str>, &str)> = vec![
        ("ping", json!({}), None, "ok"),
        ("tools/list", json!({}), None, "ok"),
        (
            "tools/call",
            json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
            Some("add"),
            "ok",
        ),
        (
            "tools/call",
            json!({"name": "crash", "arguments": {}}),
            Some("crash"),
            "denied",
        ),
        (
            "tools/call",
            json!({"name": "test_error_handling", "arguments": {}}),
            Some("test_error_handling"),
            "tool_error",
        ),
        ("resources/list", json!({}), None, "ok"),
        ("resources/templates/list", json!({}), None, "ok"),
        (
            "resources/read",
            json!({"uri": "test://static-text"}),
            Some("test://static-text"),
            "ok",
        ),
        (
            "resources/subscribe",
            json!({"uri": "test://watched-resource"}),
            Some("test://watched-resource"),
            "ok",
        ),
        (
            "resources/unsubscribe",
            json!({"uri": "test://watched-resource"}),
            Some("test://watched-resource"),
            "ok",
        ),
        ("prompts/list", json!({}), None, "ok"),
        (
            "prompts/get",
            json!({"name": "test_simple_prompt"}),
            Some("test_simple_prompt"),
            "ok",
        ),
        (
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
            "argument": {"name": "arg1", "value": "a"}}),
            Some("test_prompt_with_arguments"),
            "ok",
        ),
        ("logging/setLevel", json!({"level": "info"}), None, "ok"),
        ("no/such_method", json!({}), None, "error"),
    ];
    for (i, (method, params, _, _)) in table.iter().enumerate() {
        m.request(json!(100 + i), method, params.clone()).await;
    }
    let all = get(&app, admin, "/api/v1/audit?category=mcp&limit=1000").await;
    let events = all["events"].as_array().unwrap().clone();
    for (i, (method, _, target, outcome)) in table.iter().enumerate() {
        let id = 100 + i as i64;
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["detail"]["jsonrpc_id"] == id)
            .collect();
        assert_eq!(mine.len(), 1, "{method}: exactly one record: {mine:?}");
        let e = mine[0];
        assert_eq!(e["action"], *method);
        assert_eq!(e["target"].as_str(), *target, "{method}");
        assert_eq!(e["outcome"], *outcome, "{method}: {e}");
        assert_eq!(e["actor"], "dev@acme.example");
        assert_eq!(e["server"], "fx");
        assert!(e["session_id"].as_str().is_some(), "{method}");
        assert_eq!(e["client"], "rust-test/0", "{method}");
        assert!(e["latency_us"].as_i64().is_some(), "{method}");
        assert_eq!(
            e["decision"],
            if *outcome == "denied" {
                "deny"
            } else {
                "allow"
            }
        );
        if *outcome == "error" {
            assert_eq!(e["detail"]["error_code"], -32601, "{e}");
        }
    }
    // initialize and its notification: one each.
    for action in ["initialize", "notifications/initialized"] {
        assert_eq!(
            events.iter().filter(|e| e["action"] == action).count(),
            1,
            "{action}"
        );
    }
    app.stop().await;
}
