//! The detector of personal data and secrets (`portcullis::filters::detect`) against the
//! labelled corpus in `tests/data/pii/` (realistic tool responses with positives and hard
//! negatives): precision and recall per entity type, with thresholds that fail the test.

use portcullis::filters::detect::{scan, Kind};
use std::collections::{BTreeMap, HashSet};

#[derive(serde::Deserialize)]
struct Record {
    id: String,
    text: String,
    entities: Vec<Entity>,
}

#[derive(serde::Deserialize)]
struct Entity {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

/// (true positives, false positives, false negatives) per type over the corpus, counted by
/// distinct value per record.
pub(crate) fn evaluate() -> BTreeMap<&'static str, (usize, usize, usize)> {
    evaluate_file("corpus.jsonl")
}

pub(crate) fn evaluate_file(file: &str) -> BTreeMap<&'static str, (usize, usize, usize)> {
    let path = format!("{}/../tests/data/pii/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the corpus is in the repository");
    let mut counts: BTreeMap<&'static str, (usize, usize, usize)> =
        Kind::ALL.iter().map(|k| (k.name(), (0, 0, 0))).collect();
    let mut misses = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Record = serde_json::from_str(line).expect("a corpus line parses");
        let expected: HashSet<(String, String)> = r
            .entities
            .iter()
            .map(|e| (e.kind.clone(), e.value.clone()))
            .collect();
        let found: HashSet<(String, String)> = scan(&r.text)
            .into_iter()
            .map(|f| (f.kind.name().to_owned(), r.text[f.start..f.end].to_owned()))
            .collect();
        for (k, v) in &found {
            let c = counts.get_mut(k.as_str()).expect("a known type");
            if expected.contains(&(k.clone(), v.clone())) {
                c.0 += 1;
            } else {
                c.1 += 1;
                misses.push(format!("{} FP {k} {v:?}", r.id));
            }
        }
        for (k, v) in &expected {
            if !found.contains(&(k.clone(), v.clone())) {
                if let Some(c) = counts.get_mut(k.as_str()) {
                    c.2 += 1;
                }
                misses.push(format!("{} FN {k} {v:?}", r.id));
            }
        }
    }
    if std::env::var_os("PORTCULLIS_SHOW_MISSES").is_some() {
        for m in &misses {
            eprintln!("{m}");
        }
    }
    counts
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// The held-out corpus was written independently after the detector was tuned on
/// `corpus.jsonl` and was not used to tune it: its numbers are the honest ones.
#[test]
fn detection_holds_up_on_the_held_out_corpus() {
    let counts = evaluate_file("heldout.jsonl");
    let (mut tp, mut fp, mut fn_) = (0, 0, 0);
    let mut failures = Vec::new();
    eprintln!("held-out        TP   FP   FN  precision  recall   F1");
    for (kind, (t, f, n)) in &counts {
        let p = ratio(*t, t + f);
        let r = ratio(*t, t + n);
        let f1 = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        eprintln!("{kind:<15} {t:>4} {f:>4} {n:>4}  {p:>9.3}  {r:>6.3}  {f1:.3}");
        if CONTEXT_KINDS.contains(kind) {
            if p < HELDOUT_CONTEXT.0 || r < HELDOUT_CONTEXT.1 {
                failures.push(format!("{kind}: precision {p:.3}, recall {r:.3}"));
            }
        } else {
            tp += t;
            fp += f;
            fn_ += n;
        }
    }
    let (p, r) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
    eprintln!("structured      {tp:>4} {fp:>4} {fn_:>4}  {p:>9.3}  {r:>6.3}");
    if p < HELDOUT_MIN || r < HELDOUT_MIN {
        failures.push(format!(
            "structured types: micro precision {p:.3}, recall {r:.3} (min {HELDOUT_MIN})"
        ));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// Measured on the structured types 0.984 precision, 0.996 recall (BENCHMARKS.md); the bound
// leaves a little room.
const HELDOUT_MIN: f64 = 0.95;
/// The types found from context. Measured (BENCHMARKS.md): names 0.949 / 0.728, addresses
/// 0.917 / 0.825, dates of birth 1.000 / 0.929, national ids 1.000 / 0.977.
const CONTEXT_KINDS: [&str; 4] = [
    "PERSON_NAME",
    "POSTAL_ADDRESS",
    "DATE_OF_BIRTH",
    "NATIONAL_ID",
];
const HELDOUT_CONTEXT: (f64, f64) = (0.90, 0.70);

#[test]
fn detection_meets_its_precision_and_recall_on_the_labelled_corpus() {
    let counts = evaluate();
    let mut failures = Vec::new();
    eprintln!("type            TP   FP   FN  precision  recall   F1");
    for (kind, (tp, fp, fn_)) in &counts {
        let p = ratio(*tp, tp + fp);
        let r = ratio(*tp, tp + fn_);
        let f1 = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        eprintln!("{kind:<15} {tp:>4} {fp:>4} {fn_:>4}  {p:>9.3}  {r:>6.3}  {f1:.3}");
        // Checksummed and well-formed types must be near perfect; phone numbers and IP
        // addresses are looser by nature; generic secrets depend on context; names, addresses,
        // dates of birth and national ids (several schemes are bare digits that need a label
        // nearby) are found from context, which a text does not always give.
        let (min_p, min_r) = match *kind {
            "PHONE" | "IP_ADDRESS" => (0.90, 0.90),
            "PERSON_NAME" | "POSTAL_ADDRESS" | "DATE_OF_BIRTH" | "NATIONAL_ID" => (0.90, 0.85),
            "GENERIC_SECRET" => (0.85, 0.80),
            _ => (0.95, 0.95),
        };
        assert!(tp + fn_ > 0, "the corpus has no {kind}");
        if p < min_p || r < min_r {
            failures.push(format!(
                "{kind}: precision {p:.3} (min {min_p}), recall {r:.3} (min {min_r})"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

use crate::access::api;
use crate::gateway::{add_server, fixture_path, user_token};
use crate::gateway_sessions::Mcp;
use crate::helpers::{spawn_app, Engine, TestApp};
use crate::on_both_engines;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

on_both_engines!(answers_carrying_personal_data_are_redacted_masked_or_blocked_and_recorded);

/// The fixture MCP server over Streamable HTTP, a gateway with tenant `acme` serving it as
/// `slug`: (the fixture, the app, the admin token, a user's gateway token).
pub(crate) async fn acme_with_http_fixture(
    engine: Engine,
    slug: &str,
) -> (crate::conformance::Listening, TestApp, String, String) {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(fixture_path("everything_fixture.mjs"))
        .args(["http", "--port", "0"]);
    let upstream = crate::conformance::start_listening(cmd).await;
    let app = spawn_app(engine).await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.clone();
    add_server(
        &app,
        "acme",
        &admin,
        slug,
        json!({"transport": "streamable_http", "url": upstream.url}),
    )
    .await;
    let dev = user_token(&app, "acme", &admin, "dev@acme.example").await;
    (upstream, app, admin, dev)
}

/// The JSON Lines export of `acme`'s records whose action is `action`, as text.
pub(crate) async fn acme_export(app: &TestApp, admin: &str, action: &str) -> String {
    app.client
        .get(app.url(&format!(
            "/api/v1/audit/export?format=jsonl&method={action}"
        )))
        .header(reqwest::header::HOST, app.host(Some("acme")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The records of `acme` whose action is `action`, from the JSON Lines export.
pub(crate) async fn acme_records(app: &TestApp, admin: &str, action: &str) -> Vec<Value> {
    acme_export(app, admin, action)
        .await
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The records of `action`, polled until `ok` holds of them (the audit writer writes after the
/// answer, so a record may land a moment after the call that caused it); the last read.
pub(crate) async fn acme_records_until(
    app: &TestApp,
    admin: &str,
    action: &str,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..100 {
        last = acme_records(app, admin, action).await;
        if ok(&last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    last
}

/// Calls `echo` until its text satisfies `ok` (a policy set by the CLI reaches the gateway's
/// snapshot within a second or two); the last text.
async fn echo_until(m: &Mcp<'_>, message: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for i in 0..40 {
        last = m
            .call_text(100 + i, "echo", json!({ "message": message }))
            .await;
        if ok(&last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    last
}

async fn answers_carrying_personal_data_are_redacted_masked_or_blocked_and_recorded(
    engine: Engine,
) {
    let (_upstream, app, admin, dev) = acme_with_http_fixture(engine, "crm").await;
    let admin = admin.as_str();
    let mut m = Mcp::new(&app, "acme", "crm", &dev);
    m.initialize().await;
    let card = "4111 1111 1111 1111";
    let message =
        format!("Jane Roe <jane.roe@contoso.example>, card {card}, order 4111111111111112");
    // No policy: the answer passes as it is.
    let text = m.call_text(1, "echo", json!({ "message": message })).await;
    assert_eq!(text, format!("Echo: {message}"));

    // Bad input changes nothing.
    for (bad, status) in [
        (json!({"pii": "shred"}), None),
        (
            json!({"pii": "redact", "entities": {"NAME": "block"}}),
            Some(StatusCode::UNPROCESSABLE_ENTITY),
        ),
        (json!({"pii": "redact", "extra": 1}), None),
    ] {
        let (s, v) = api(
            &app,
            admin,
            Method::PUT,
            "/api/v1/servers/crm/filters",
            Some(bad.clone()),
        )
        .await;
        assert!(s.is_client_error(), "{bad}: {s} {v}");
        if let Some(want) = status {
            assert_eq!(s, want, "{bad}: {v}");
        }
    }
    let (_, v) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/crm/filters",
        None,
    )
    .await;
    assert_eq!(v["policy"], Value::Null, "{v}");

    // The operator CLI: redact personal data on crm.
    let out = app.cli(&[
        "filter", "set", "--tenant", "acme", "--server", "crm", "--pii", "redact", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["effective"]["pii"], "redact", "{v}");
    let text = echo_until(&m, &message, |t| t.contains("[REDACTED:")).await;
    assert_eq!(
        text,
        "Echo: Jane Roe <[REDACTED:EMAIL]>, card [REDACTED:CREDIT_CARD], order 4111111111111112",
        "the order number fails Luhn and stays"
    );

    // The tenant's default (mask) applies to servers without their own policy.
    let (s, _) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/filters",
        Some(json!({"pii": "mask"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api(
        &app,
        admin,
        Method::DELETE,
        "/api/v1/servers/crm/filters",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let text = m.call_text(2, "echo", json!({ "message": message })).await;
    assert!(text.contains("card ****1111"), "{text}");
    assert!(!text.contains(card));

    // Block answers carrying a card; log e-mail addresses only.
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/crm/filters",
        Some(json!({"pii": "log", "entities": {"CREDIT_CARD": "block"}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let res = m
        .post(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": message}}}))
        .send()
        .await
        .unwrap();
    let ct = res.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body = res.text().await.unwrap();
    let msg = &crate::gateway_sessions::messages(&ct, &body)[0];
    assert_eq!(msg["result"]["isError"], true, "{msg}");
    let said = msg["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        said.contains("blocked") && said.contains("CREDIT_CARD (1)"),
        "{said}"
    );
    assert!(!body.contains(card) && !body.contains("jane.roe"), "{body}");
    let text = m
        .call_text(
            4,
            "echo",
            json!({"message": "write to jane.roe@contoso.example"}),
        )
        .await;
    assert_eq!(
        text, "Echo: write to jane.roe@contoso.example",
        "logged, not changed"
    );

    // Every decision is in the audit record: kinds, counts, action — never a value.
    let audit = acme_export(&app, admin, "tools/call").await;
    let records: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let blocked = records
        .iter()
        .find(|r| r["outcome"] == "blocked")
        .unwrap_or_else(|| panic!("a blocked record: {audit}"));
    let filters = &blocked["detail"]["filters"];
    assert_eq!(filters["action"], "block", "{blocked}");
    assert_eq!(filters["found"]["CREDIT_CARD"], 1, "{blocked}");
    assert_eq!(filters["found"]["EMAIL"], 1, "{blocked}");
    assert!(
        records
            .iter()
            .any(|r| r["detail"]["filters"]["action"] == "log"),
        "the logged finding is recorded: {audit}"
    );
    assert!(
        !audit.contains("4111 1111") && !audit.contains("jane.roe@"),
        "no values"
    );
    let admin_log = acme_export(&app, admin, "filters.set").await;
    assert!(
        admin_log.lines().count() >= 2,
        "policy changes are recorded: {admin_log}"
    );

    // The data inventory: what crm's answers carried, without a value.
    let (s, v) = api(
        &app,
        admin,
        Method::GET,
        "/api/v1/servers/crm/inventory",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let inv = v["inventory"].as_array().unwrap();
    let card = inv
        .iter()
        .find(|e| e["category"] == "CREDIT_CARD")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(card["class"], "pii");
    assert!(card["answers"].as_u64().unwrap() >= 3, "{v}");
    assert!(inv.iter().any(|e| e["category"] == "EMAIL"), "{v}");
    assert!(!v.to_string().contains("4111"), "{v}");
    let out = app.cli(&["filter", "inventory", "--tenant", "acme", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["tenant"], "acme");
    assert_eq!(
        cli["inventory"], v["inventory"],
        "the CLI reads the same inventory"
    );
}

on_both_engines!(field_rules_keep_what_a_tool_may_return_and_the_listed_schema_follows);

async fn field_rules_keep_what_a_tool_may_return_and_the_listed_schema_follows(engine: Engine) {
    let (_upstream, app, admin, dev) = acme_with_http_fixture(engine, "crm").await;
    let admin = admin.as_str();
    let mut m = Mcp::new(&app, "acme", "crm", &dev);
    m.initialize().await;

    // A path that is not a JSON Pointer is refused; nothing changes.
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/crm/filters",
        Some(json!({"tools": {"lookup_contact": {"keep": ["name"]}}})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("JSON Pointer"), "{v}");

    // "The contact lookup returns the full profile; the agent needs name, company and email"
    // (and the email masked for this tool only).
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/crm/filters",
        Some(json!({"pii": "redact", "tools": {"lookup_contact": {
            "keep": ["/name", "/company", "/email"], "pii": "mask"}}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["policy"]["tools"]["lookup_contact"]["keep"],
        json!(["/name", "/company", "/email"])
    );
    let want = json!({"name": "Jane Roe", "company": "Contoso", "email": "****mple"});
    let mut last = Value::Null;
    for i in 0..40 {
        let msgs = m
            .request(
                json!(10 + i),
                "tools/call",
                json!({"name": "lookup_contact", "arguments": {"id": "c-1"}}),
            )
            .await;
        last = msgs.last().unwrap()["result"].clone();
        if last["structuredContent"] == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    assert_eq!(last["structuredContent"], want, "{last}");
    let text: Value = serde_json::from_str(last["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text, want, "the JSON text block is shaped the same way");
    // Other tools keep the server's policy (redact).
    let echoed = m
        .call_text(
            60,
            "echo",
            json!({"message": "mail jane.roe@contoso.example"}),
        )
        .await;
    assert_eq!(echoed, "Echo: mail [REDACTED:EMAIL]");

    // The listed output schema no longer promises what the rules take out.
    let msgs = m.request(json!(61), "tools/list", json!({})).await;
    let tool = msgs.last().unwrap()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "lookup_contact")
        .cloned()
        .unwrap();
    assert_eq!(
        tool["outputSchema"]["required"],
        json!(["name", "company", "email"]),
        "{tool}"
    );
    assert!(
        tool["outputSchema"]["properties"].get("ssn").is_none(),
        "{tool}"
    );

    // The record says how many values the rules took out; never which.
    let audit = acme_export(&app, admin, "tools/call").await;
    assert!(
        audit.lines().any(|l| l.contains("\"fields_dropped\":8")),
        "{audit}"
    );
    assert!(!audit.contains("123-45-6789"));
}

on_both_engines!(external_filter_hooks_allow_deny_or_modify_answers_and_fail_as_configured);

/// A company's DLP service: checks the gateway's signature, then decides by the answer's text.
async fn dlp_receiver(
    secret: std::sync::Arc<std::sync::Mutex<String>>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
) -> String {
    use axum::{body::Bytes, http::HeaderMap, routing::post, Json, Router};
    let app = Router::new().route(
        "/dlp",
        post(move |headers: HeaderMap, body: Bytes| {
            let secret = secret.lock().unwrap().clone();
            let seen = seen.clone();
            async move {
                let sig = headers
                    .get("x-portcullis-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let t: u64 = sig
                    .strip_prefix("t=")
                    .and_then(|r| r.split(',').next())
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                if sig != portcullis::filters::hooks::signature(&secret, t, &body) {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad signature"})));
                }
                let v: Value = serde_json::from_slice(&body).unwrap();
                seen.lock().unwrap().push(v.clone());
                let text = v["result"]["content"][0]["text"].as_str().unwrap_or("").to_owned();
                let decision = if text.contains("DENYME") {
                    json!({"decision": "deny", "reason": "it names project Bluebird"})
                } else if text.contains("MODIFYME") {
                    json!({"decision": "modify", "result": {"content": [{"type": "text", "text": "modified by DLP"}]}})
                } else if text.contains("SLOW") {
                    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                    json!({"decision": "allow"})
                } else {
                    json!({"decision": "allow"})
                };
                (StatusCode::OK, Json(decision))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/dlp")
}

async fn external_filter_hooks_allow_deny_or_modify_answers_and_fail_as_configured(engine: Engine) {
    let secret = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let dlp = dlp_receiver(secret.clone(), seen.clone()).await;
    let (_upstream, app, admin, dev) = acme_with_http_fixture(engine, "crm").await;
    let admin = admin.as_str();
    let mut m = Mcp::new(&app, "acme", "crm", &dev);
    m.initialize().await;

    // Bad input changes nothing.
    for bad in [
        json!({"url": "ftp://dlp.example/x"}),
        json!({"url": "http://dlp.example/x"}),
        json!({"url": dlp, "timeout_ms": 5}),
        json!({"url": dlp, "fail": "sometimes"}),
        json!({"url": dlp, "server": "nope"}),
    ] {
        let (s, v) = api(
            &app,
            admin,
            Method::POST,
            "/api/v1/filter-hooks",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    let (_, v) = api(&app, admin, Method::GET, "/api/v1/filter-hooks", None).await;
    assert_eq!(v["hooks"], json!([]));

    // A hook that fails closed, with a short timeout.
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/filter-hooks",
        Some(json!({"url": dlp, "server": "crm", "timeout_ms": 500})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let hook_id = v["hook"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["hook"]["fail"], "closed");
    *secret.lock().unwrap() = v["secret"].as_str().unwrap().to_owned();
    let (_, list) = api(&app, admin, Method::GET, "/api/v1/filter-hooks", None).await;
    assert_eq!(list["hooks"][0]["id"], hook_id.as_str());
    assert!(
        !list.to_string().contains("whsec_"),
        "the secret is shown once"
    );

    let mut text = String::new();
    for i in 0..40 {
        text = m
            .call_text(10 + i, "echo", json!({"message": "hello"}))
            .await;
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    assert_eq!(text, "Echo: hello");
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(first["tenant"], "acme", "{first}");
    assert_eq!(first["server"], "crm");
    assert_eq!(first["tool"], "echo");
    assert_eq!(first["method"], "tools/call");

    let denied = m.call_text(60, "echo", json!({"message": "DENYME"})).await;
    assert_eq!(
        denied,
        "The answer was blocked by the company's filter: it names project Bluebird"
    );
    let modified = m
        .call_text(61, "echo", json!({"message": "MODIFYME"}))
        .await;
    assert_eq!(modified, "modified by DLP");
    let slow = m.call_text(62, "echo", json!({"message": "SLOW"})).await;
    assert!(slow.contains("could not check it"), "closed: {slow}");

    // The same hook failing open lets the answer pass; every call is recorded.
    let (s, _) = api(
        &app,
        admin,
        Method::DELETE,
        &format!("/api/v1/filter-hooks/{hook_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/filter-hooks",
        Some(json!({"url": dlp, "timeout_ms": 300, "fail": "open"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    *secret.lock().unwrap() = v["secret"].as_str().unwrap().to_owned();
    let passed = m.call_text(63, "echo", json!({"message": "SLOW"})).await;
    assert_eq!(passed, "Echo: SLOW");

    // The last call's record is written by the audit writer after its answer: wait for it.
    let mut records: Vec<Value> = Vec::new();
    for _ in 0..50 {
        records = acme_records(&app, admin, "tools/call").await;
        if records.iter().any(|r| r["detail"]["jsonrpc_id"] == 63) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let hooks_of = |id: i64| {
        records
            .iter()
            .find(|r| r["detail"]["jsonrpc_id"] == id)
            .map(|r| (r["outcome"].clone(), r["detail"]["hooks"][0].clone()))
            .unwrap_or_default()
    };
    let (o, h) = hooks_of(60);
    assert_eq!(
        (o.as_str(), h["decision"].as_str()),
        (Some("blocked"), Some("deny")),
        "{h}"
    );
    assert_eq!(hooks_of(61).1["decision"], "modify");
    let (o, h) = hooks_of(62);
    assert_eq!(o, "blocked");
    assert_eq!(h["decision"], "failed");
    assert_eq!(h["failed_open"], false);
    let (o, h) = hooks_of(63);
    assert_ne!(o, "blocked");
    assert_eq!(h["failed_open"], true, "{h}");
    assert_eq!(hooks_of(60).1["reason"], "it names project Bluebird");
}

on_both_engines!(tool_call_arguments_carrying_secrets_are_refused_or_logged);

async fn tool_call_arguments_carrying_secrets_are_refused_or_logged(engine: Engine) {
    let (_upstream, app, admin, dev) = acme_with_http_fixture(engine, "crm").await;
    let admin = admin.as_str();
    let mut m = Mcp::new(&app, "acme", "crm", &dev);
    m.initialize().await;
    // Arguments recorded in full: secrets still never reach the log.
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/audit/settings",
        Some(json!({"arguments": "full"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let out = app.cli(&[
        "filter",
        "set",
        "--tenant",
        "acme",
        "--server",
        "crm",
        "--secrets",
        "redact",
        "--arguments",
        "block",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["effective"]["arguments"], "block", "{v}");
    let secret = "deploy with ghp_R8q7P6o5N4m3L2k1J0i9H8g7F6e5D4c3B2a1";
    let mut refused = String::new();
    for i in 0..40 {
        refused = m
            .call_text(10 + i, "echo", json!({ "message": secret }))
            .await;
        if refused.starts_with("error:") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    assert_eq!(
        refused,
        "error: The call was blocked by the gateway's data policy: its arguments carried GITHUB_TOKEN (1)."
    );
    // Personal data is off in this policy: it passes.
    let ok = m
        .call_text(60, "echo", json!({"message": "mail jane@contoso.example"}))
        .await;
    assert_eq!(ok, "Echo: mail jane@contoso.example");
    let audit = acme_export(&app, admin, "tools/call").await;
    let blocked: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["outcome"] == "blocked")
        .collect();
    assert!(!blocked.is_empty(), "{audit}");
    assert_eq!(
        blocked[0]["detail"]["arguments_filters"]["found"]["GITHUB_TOKEN"], 1,
        "{audit}"
    );
    assert_eq!(
        blocked[0]["detail"]["arguments"]["message"], "deploy with [REDACTED:GITHUB_TOKEN]",
        "{audit}"
    );
    assert!(!audit.contains("ghp_R8q7"), "no secret in the log");
    assert!(
        audit.contains("mail jane@contoso.example"),
        "full means full for the rest"
    );
}
