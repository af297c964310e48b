//! The Security Review Pack from a fixture tenant with known configuration and traffic: its
//! JSON holds exactly the expected facts (`tests/data/review_pack_fixture.json`, the same file
//! for both engines, volatile values normalized), its open risks are the planted ones and
//! nothing else, the HTML and PDF carry every section, the CLI writes the same pack, and
//! anomaly signals raised over the traffic reach the pack and the audit trail once.
//!
//! `PORTCULLIS_UPDATE_SNAPSHOTS=1` rewrites the snapshot (then read the diff before committing).

use crate::access::api;
use crate::gateway::{add_server_ungranted, start_fixture, user_token};
use crate::gateway_sessions::Mcp;
use crate::helpers::{spawn_app, Engine, TestApp, TEST_MASTER_KEY};
use crate::on_both_engines;
use reqwest::header::HOST;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_engines!(
    a_fixture_tenant_gets_a_pack_of_exactly_its_facts_and_planted_risks,
    an_admins_tool_class_drives_the_policy,
);

async fn whoami(m: &Mcp<'_>, id: i64) -> String {
    m.call_text(id, "whoami", json!({"note": "x"})).await
}

const SNAPSHOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/review_pack_fixture.json"
);

/// The risks the fixture plants; the pack must flag these and nothing else.
const PLANTED: [&str; 6] = [
    "destructive_open_to_everyone",
    "retention_below_regulation",
    "no_identity_provider",
    "no_scim",
    "agent_broad_write",
    "no_audit_export",
];

/// Replaces what differs from run to run: times, ports, ids, key fingerprints, and the audit
/// totals (they include the admin events of the set-up, whose count is not the point here; the
/// MCP counts stay exact).
fn normalize(v: &mut Value, key: &str) {
    match v {
        Value::String(s) => {
            let time =
                regex::Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}(:|%3A)\d{2}(:|%3A)\d{2}Z").unwrap();
            let port = regex::Regex::new(r":\d{2,5}(/|$)").unwrap();
            let month = regex::Regex::new(r"^\d{4}-\d{2}$").unwrap();
            let mut out = time.replace_all(s, "<time>").into_owned();
            out = port.replace_all(&out, ":<port>$1").into_owned();
            if month.is_match(&out) {
                out = "<month>".into();
            }
            if matches!(
                key,
                "key_id" | "fingerprint" | "generated_by" | "user_agents"
            ) {
                out = format!("<{key}>");
            }
            *s = out;
        }
        Value::Number(_) if matches!(key, "records" | "records_checked" | "age_days") => {
            *v = json!(format!("<{key}>"));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| normalize(x, key)),
        Value::Object(o) => o.iter_mut().for_each(|(k, x)| normalize(x, k)),
        _ => {}
    }
}

/// The KEK's place differs by engine (a file beside SQLite, the environment with PostgreSQL):
/// checked here, then normalized so that one snapshot serves both.
fn kek_source(pack: &mut Value, engine: Engine) {
    let source = &mut pack["credentials"]["kek"]["source"];
    let want = match engine {
        Engine::Sqlite => "master key file",
        Engine::Postgres => "PORTCULLIS_MASTER_KEY",
    };
    assert!(source.as_str().unwrap().starts_with(want), "{source}");
    *source = json!("<kek source>");
}

async fn put(app: &TestApp, admin: &str, path: &str, body: Value) -> Value {
    let (s, v) = api(app, admin, Method::PUT, path, Some(body)).await;
    assert!(s.is_success(), "{path}: {s} {v}");
    v
}

async fn post(app: &TestApp, admin: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = api(app, admin, Method::POST, path, body).await;
    assert!(s.is_success(), "{path}: {s} {v}");
    v
}

/// The fixture: three servers (CRM, HR, code) on the Python SDK's fixture server; CRM granted
/// to everyone with its destructive tool, HR and code to dev without `add`; an agent of dev
/// writing on all three; GDPR retention under a PCI DSS statement; a filter policy; no IdP,
/// no SCIM, no export destination. Traffic: dev's calls, one redacted, one refused.
async fn fixture(app: &TestApp, py_port: u16) -> (String, String) {
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.clone();
    let url = format!("http://127.0.0.1:{py_port}/mcp");
    for slug in ["crm", "hr", "code"] {
        add_server_ungranted(
            app,
            "acme",
            &admin,
            slug,
            json!({"transport": "streamable_http", "url": url}),
        )
        .await;
        post(
            app,
            &admin,
            &format!("/api/v1/servers/{slug}/catalog"),
            None,
        )
        .await;
    }
    let dev = user_token(app, "acme", &admin, "dev@acme.example").await;
    post(
        app,
        &admin,
        "/api/v1/registries",
        Some(
            json!({"slug": "crm-for-all", "name": "CRM for everyone", "servers": ["crm"],
            "grants": [{"subject": "everyone"}]}),
        ),
    )
    .await;
    post(
        app,
        &admin,
        "/api/v1/registries",
        Some(
            json!({"slug": "staff", "name": "Staff tools", "servers": ["hr", "code"],
            "grants": [{"subject": "user:dev@acme.example",
                        "rules": [{"effect": "deny", "match": "add"}]}]}),
        ),
    )
    .await;
    // The fixture declares no annotations: every tool is a destructive write (MCP's worst
    // case) until an admin says otherwise.
    for (slug, tool, class) in [
        ("crm", "whoami", "writing"),
        ("hr", "whoami", "writing"),
        ("code", "whoami", "writing"),
        ("crm", "test_simple_text", "read_only"),
    ] {
        let (s, v) = api(
            app,
            &admin,
            Method::PUT,
            &format!("/api/v1/servers/{slug}/tool-classes/{tool}"),
            Some(json!({ "class": class })),
        )
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    }
    post(
        app,
        &admin,
        "/api/v1/agents",
        Some(
            json!({"slug": "ops-bot", "name": "Ops bot", "owner": "dev@acme.example",
            "tool_set": [{"server": "crm", "tools": ["whoami", "test_simple_text"]},
                         {"server": "hr", "tools": ["whoami"]},
                         {"server": "code", "tools": ["whoami"]}]}),
        ),
    )
    .await;
    post(
        app,
        &admin,
        "/api/v1/agents/ops-bot/tokens",
        Some(json!({"label": "nightly", "expires_in_days": 7})),
    )
    .await;
    put(
        app,
        &admin,
        "/api/v1/audit/settings",
        json!({"preset": "gdpr"}),
    )
    .await;
    put(
        app,
        &admin,
        "/api/v1/review-pack/statement",
        json!({"llm_routing": "Claude Desktop → Anthropic API (enterprise account)",
               "data_processing": "Anthropic DPA signed 2026-03-01", "regulation": "pci_dss"}),
    )
    .await;
    put(
        app,
        &admin,
        "/api/v1/filters",
        json!({"pii": "redact", "secrets": "redact", "injection": "flag"}),
    )
    .await;

    // Traffic: a lookup whose answer carries an e-mail address (redacted), a destructive call
    // everyone may make, and a call the deny rule refuses.
    let mut crm = Mcp::new(app, "acme", "crm", &dev);
    crm.initialize().await;
    assert_eq!(
        crm.call_text(1, "whoami", json!({"note": "call jane.doe@example.com"}))
            .await,
        "note=call [REDACTED:EMAIL]"
    );
    assert_eq!(crm.call_text(2, "add", json!({"a": 1, "b": 2})).await, "3");
    let mut hr = Mcp::new(app, "acme", "hr", &dev);
    hr.initialize().await;
    assert!(hr
        .call_text(3, "add", json!({"a": 1, "b": 2}))
        .await
        .starts_with("error: Unknown tool"));
    (admin, dev)
}

async fn fetch(app: &TestApp, admin: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/v1/review-pack{query}")))
        .header(HOST, app.host(Some("acme")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
}

async fn a_fixture_tenant_gets_a_pack_of_exactly_its_facts_and_planted_risks(engine: Engine) {
    let py = start_fixture().await;
    let app = spawn_app(engine).await;
    let (admin, _dev) = fixture(&app, py.port).await;
    let admin = admin.as_str();

    // Anomaly signals over that traffic: dev's first destructive call, raised once, recorded
    // as a security event (the SIEM stream's path).
    let raised = post(&app, admin, "/api/v1/signals/scan", None).await;
    let kinds: Vec<(&str, &str)> = raised["raised"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![("first_destructive", "user:dev@acme.example")],
        "{raised}"
    );
    assert!(raised["raised"][0]["records_href"]
        .as_str()
        .unwrap()
        .starts_with("/admin/audit?user=dev%40acme.example&server=crm&q=add"));
    let again = post(&app, admin, "/api/v1/signals/scan", None).await;
    assert_eq!(again["raised"], json!([]), "a signal is raised once");
    let recorded =
        crate::filters::acme_records_until(&app, admin, "anomaly.first_destructive", |r| {
            !r.is_empty()
        })
        .await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["category"], "security");

    // Bad input is refused and records nothing.
    for (q, says) in [
        ("?format=xml", "format"),
        ("?days=0", "days"),
        ("?days=400", "days"),
        ("?days=x", "days"),
        ("?colour=red", "colour"),
    ] {
        let res = fetch(&app, admin, q).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{q}");
        assert!(res.text().await.unwrap().contains(says), "{q}");
    }
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/review-pack/statement",
        Some(json!({"regulation": "sox"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (_, st) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/review-pack/statement",
        None,
    )
    .await;
    assert_eq!(st["regulation"], "pci_dss", "unchanged: {st}");

    // The JSON pack.
    let res = fetch(&app, admin, "?format=json&days=30").await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut pack: Value = res.json().await.unwrap();
    let risks: Vec<&str> = pack["risks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let mut want = PLANTED.to_vec();
    want.sort();
    let mut got = risks.clone();
    got.sort();
    assert_eq!(got, want, "the planted risks and nothing else");
    assert_eq!(
        pack["audit"]["chain"]["records_checked"], pack["audit"]["records"],
        "the whole chain was verified"
    );
    assert_eq!(pack["generated_by"], "admin@acme.example.com");
    normalize(&mut pack, "");
    kek_source(&mut pack, engine);
    if std::env::var_os("PORTCULLIS_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(
            SNAPSHOT,
            serde_json::to_string_pretty(&pack).unwrap() + "\n",
        )
        .unwrap();
    }
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(SNAPSHOT).unwrap()).unwrap();
    assert_eq!(
        pack,
        expected,
        "the pack differs from {SNAPSHOT}:\n{}",
        serde_json::to_string_pretty(&pack).unwrap()
    );

    // Each generation is recorded with its format and period.
    let generated =
        crate::filters::acme_records_until(&app, admin, "review_pack.generate", |r| !r.is_empty())
            .await;
    assert_eq!(generated[0]["detail"]["format"], "json", "{generated:?}");
    assert_eq!(generated[0]["detail"]["days"], 30);

    // HTML: a single file with every section; PDF: printed by Chromium.
    let res = fetch(&app, admin, "?format=html").await;
    assert_eq!(res.status(), StatusCode::OK);
    let disposition = res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"portcullis-review-pack-acme-"),
        "{disposition}"
    );
    let html = res.text().await.unwrap();
    for id in [
        "pack-architecture",
        "pack-diagram",
        "pack-servers",
        "pack-server-crm",
        "pack-access",
        "pack-audit",
        "pack-credentials",
        "pack-clients",
        "pack-filters",
        "pack-risks",
        "risk-no_scim",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(html.contains("Anthropic DPA signed 2026-03-01"));
    assert!(!html.contains("<script"), "no scripts in the pack");
    let res = fetch(&app, admin, "?format=pdf").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/pdf");
    let pdf = res.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF"), "a PDF");
    assert!(pdf.len() > 10_000, "with content: {} bytes", pdf.len());

    // The CLI writes the same pack from the database alone.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pack.json");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args([
        "review-pack",
        "--tenant",
        "acme",
        "--format",
        "json",
        "--days",
        "30",
    ])
    .arg("--out")
    .arg(&out)
    .arg("--json")
    .args(&app.db_args)
    .env_remove("DATABASE_URL")
    .env_remove("PORTCULLIS_CONFIG");
    if engine == Engine::Postgres {
        cmd.env("PORTCULLIS_MASTER_KEY", TEST_MASTER_KEY);
    }
    let done = cmd.output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let summary: Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(summary["format"], "json");
    assert_eq!(summary["risks"].as_array().unwrap().len(), PLANTED.len());
    let mut from_cli: Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(from_cli["generated_by"], "cli");
    normalize(&mut from_cli, "");
    kek_source(&mut from_cli, engine);
    assert_eq!(from_cli, expected, "the CLI's pack is the API's");
    // Bad CLI input: a clear message, non-zero, nothing written.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "review-pack",
            "--tenant",
            "nope",
            "--format",
            "json",
            "--out",
        ])
        .arg(dir.path().join("never.json"))
        .args(&app.db_args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no tenant"));
    assert!(!dir.path().join("never.json").exists());

    // The dashboard shows the same facts at a glance.
    let (s, d) = api(&app, admin, Method::GET, "/api/v1/dashboard?days=7", None).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["open_risks"], PLANTED.len(), "{d}");
    let series = d["series"].as_array().unwrap();
    assert_eq!(series.len(), 7, "{d}");
    let today = series.last().unwrap();
    // Two sessions (initialize, notifications/initialized) and three calls.
    assert_eq!(today["calls"], 7, "{today}");
    assert_eq!(today["denials"], 1, "{today}");
    // The address was redacted once: the text block repeats the structured result
    // (`{"result": "…"}`) and is written again from it.
    assert_eq!(today["redactions"], 1, "{today}");
    assert_eq!(today["active_users"], 1, "{today}");
    assert_eq!(d["signals"][0]["kind"], "first_destructive", "{d}");
    assert_eq!(d["top_servers"][0]["kind"], "crm", "{d}");
}

/// An admin's class replaces a tool's declared annotations in the access policy: a grant that
/// denies destructive tools refuses an unannotated tool (MCP's worst case) until the admin
/// classes it read-only, and again once the class is cleared; reviewing the catalog again
/// keeps the class; bad classes and unknown tools are refused and change nothing.
async fn an_admins_tool_class_drives_the_policy(engine: Engine) {
    let py = start_fixture().await;
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    add_server_ungranted(
        &app,
        "acme",
        admin,
        "crm",
        json!({"transport": "streamable_http", "url": format!("http://127.0.0.1:{}/mcp", py.port)}),
    )
    .await;
    let class_path = "/api/v1/servers/crm/tool-classes/whoami";
    // Before the review the tool is not in the catalog: nothing to class.
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        class_path,
        Some(json!({"class": "read_only"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    post(&app, admin, "/api/v1/servers/crm/catalog", None).await;
    post(
        &app,
        admin,
        "/api/v1/registries",
        Some(
            json!({"slug": "all", "servers": ["crm"], "grants": [{"subject": "everyone",
            "rules": [{"effect": "deny", "annotations": {"destructive": true}}]}]}),
        ),
    )
    .await;
    let dev = user_token(&app, "acme", admin, "dev@acme.example").await;
    let mut m = Mcp::new(&app, "acme", "crm", &dev);
    m.initialize().await;
    assert!(whoami(&m, 1).await.starts_with("error: Unknown tool"));

    for (body, status) in [
        (
            json!({"class": "harmless"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"klass": "read_only"}), StatusCode::BAD_REQUEST),
    ] {
        let (s, v) = api(&app, admin, Method::PUT, class_path, Some(body)).await;
        assert_eq!(s, status, "{v}");
    }
    let (s, _) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/nope/tool-classes/whoami",
        Some(json!({"class": "read_only"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        whoami(&m, 2).await.starts_with("error: Unknown tool"),
        "refused input changed nothing"
    );

    let (s, _) = api(
        &app,
        admin,
        Method::PUT,
        class_path,
        Some(json!({"class": "read_only"})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(whoami(&m, 3).await, "note=x", "classed read-only: allowed");
    // Reviewing the catalog again keeps the admin's class.
    post(&app, admin, "/api/v1/servers/crm/catalog", None).await;
    assert_eq!(whoami(&m, 4).await, "note=x");
    let (_, pack) = api(&app, admin, Method::GET, "/api/v1/review-pack", None).await;
    let tool = pack["servers"][0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "whoami")
        .cloned()
        .unwrap();
    assert_eq!(tool["class"], "read_only", "{tool}");
    assert_eq!(tool["class_source"], "override", "{tool}");
    let recorded =
        crate::filters::acme_records_until(&app, admin, "tool.class", |r| !r.is_empty()).await;
    assert_eq!(recorded[0]["detail"]["class"], "read_only", "{recorded:?}");

    let (s, _) = api(&app, admin, Method::DELETE, class_path, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        whoami(&m, 5).await.starts_with("error: Unknown tool"),
        "cleared: the worst case again"
    );
}

/// Signals found by the background scan (every second here) go to the admins' mail digest,
/// until mail is turned off; they are recorded either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomaly_signals_reach_the_admins_by_mail_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mail.jsonl");
    let mut cmd = tokio::process::Command::new(crate::gateway::python());
    cmd.arg(crate::gateway::fixture_path("smtp_sink.py"))
        .arg(&out);
    let sink = crate::conformance::start_listening(cmd).await;
    let py = start_fixture().await;
    let app = crate::helpers::spawn_app_with(
        Engine::Sqlite,
        portcullis::config::ServeArgs {
            smtp_url: Some(sink.url.clone()),
            mail_digest_seconds: Some(1),
            signal_interval_seconds: Some(1),
            ..Default::default()
        },
    )
    .await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    add_server_ungranted(
        &app,
        "acme",
        admin,
        "crm",
        json!({"transport": "streamable_http", "url": format!("http://127.0.0.1:{}/mcp", py.port)}),
    )
    .await;
    post(&app, admin, "/api/v1/servers/crm/catalog", None).await;
    post(
        &app,
        admin,
        "/api/v1/registries",
        Some(
            json!({"slug": "all", "servers": ["crm"], "grants": [{"subject": "everyone",
            "rules": [{"effect": "deny", "match": "add"}]}]}),
        ),
    )
    .await;
    let dev = user_token(&app, "acme", admin, "dev@acme.example").await;
    let mut m = Mcp::new(&app, "acme", "crm", &dev);
    m.initialize().await;
    // Five refusals within a minute: a burst.
    for i in 0..5 {
        assert!(m
            .call_text(10 + i, "add", json!({"a": 1, "b": 1}))
            .await
            .starts_with("error: Unknown tool"));
    }
    let (_, me) = api(&app, admin, Method::GET, "/api/v1/me", None).await;
    let email = me["email"].as_str().unwrap().to_owned();
    let mail = crate::mail::wait_for(&out, &email, "Security digest").await;
    let body = mail["body"].as_str().unwrap();
    assert!(
        body.contains(
            "Anomaly (medium): user:dev@acme.example — 5 calls refused within 10 minutes"
        ),
        "{body}"
    );
    assert!(
        body.contains("/admin/audit?user=dev%40acme.example&decision=deny"),
        "{body}"
    );

    // Mail off: the next signal (dev's first destructive call) is raised and recorded, not mailed.
    put(
        &app,
        admin,
        "/api/v1/signals/settings",
        json!({"mail": false}),
    )
    .await;
    assert_eq!(
        m.call_text(20, "whoami", json!({"note": "x"})).await,
        "note=x"
    );
    let mut listed = Value::Null;
    for _ in 0..100 {
        let (_, v) = api(&app, admin, Method::GET, "/api/v1/signals", None).await;
        if v["signals"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["kind"] == "first_destructive"))
        {
            listed = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(listed.is_object(), "the background scan raised the signal");
    crate::filters::acme_records_until(&app, admin, "anomaly.first_destructive", |r| !r.is_empty())
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mails = crate::mail::received(&out);
    assert!(
        mails.iter().all(|m| !m["body"]
            .as_str()
            .unwrap_or("")
            .contains("first call of the destructive")),
        "{mails:?}"
    );
}
