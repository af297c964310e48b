//! `kill -9` under load: the real binary serves MCP calls from several clients at once; it is
//! killed without warning; restarted on the same database, every answer a client received has
//! its record (matched by session and JSON-RPC id, outcome `ok`), and the chain verifies.

use crate::gateway_sessions::stdio_fixture;
use crate::helpers::{Engine, TestDb, TEST_MASTER_KEY};
use crate::on_both_engines;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::BufRead;
use std::sync::{Arc, Mutex};

on_both_engines!(no_answered_request_loses_its_record_to_kill_9);

struct Server {
    child: std::process::Child,
    port: u16,
}

fn start(dir: &std::path::Path, db: Option<&TestDb>) -> Server {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--demo", "--data-dir"])
        .arg(dir)
        .env_remove("DATABASE_URL")
        .env_remove("PORTCULLIS_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if let Some(db) = db {
        cmd.args(["--database-url", &db.url])
            .env("PORTCULLIS_MASTER_KEY", TEST_MASTER_KEY);
    }
    let mut child = cmd.spawn().expect("the portcullis binary starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("the server prints its port")
            .expect("stdout");
        if let Some(p) = line.strip_prefix("Portcullis is listening on port ") {
            break p.trim().parse().unwrap();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, port }
}

struct Client {
    http: reqwest::Client,
    base: String,
    host: String,
}

impl Client {
    fn new(port: u16) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .unwrap(),
            base: format!("http://127.0.0.1:{port}"),
            host: format!("demo.localhost:{port}"),
        }
    }

    async fn api(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("host", &self.host)
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }
}

async fn no_answered_request_loses_its_record_to_kill_9(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let db = match engine {
        Engine::Sqlite => None,
        Engine::Postgres => Some(TestDb::create().await),
    };
    let mut server = start(dir.path(), db.as_ref());
    let admin = std::fs::read_to_string(dir.path().join("demo-admin-token")).unwrap();
    let admin = admin.trim();
    let c = Client::new(server.port);
    let tag = uuid::Uuid::new_v4().to_string();
    c.api(
        admin,
        reqwest::Method::POST,
        "/api/v1/servers",
        Some(json!({"slug": "fx", "upstream": stdio_fixture(&tag)})),
    )
    .await;
    c.api(
        admin,
        reqwest::Method::POST,
        "/api/v1/registries",
        Some(json!({"slug": "all", "servers": ["fx"], "grants": [{"subject": "everyone"}]})),
    )
    .await;
    let token = c
        .api(
            admin,
            reqwest::Method::POST,
            "/api/v1/tokens",
            Some(json!({"user_email": "load@demo.example"})),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Clients: each opens a session and calls echo in a loop; every answer is noted.
    let answered: Arc<Mutex<BTreeSet<(String, i64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for n in 0..6 {
        let (base, host, token, answered) = (
            c.base.clone(),
            c.host.clone(),
            token.clone(),
            answered.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let post = |body: Value, sid: Option<&str>| {
                let mut r = http
                    .post(format!("{base}/mcp/fx"))
                    .header("host", &host)
                    .bearer_auth(&token)
                    .header("accept", "application/json, text/event-stream")
                    .json(&body);
                if let Some(s) = sid {
                    r = r
                        .header("mcp-session-id", s)
                        .header("mcp-protocol-version", "2025-11-25");
                }
                r.send()
            };
            let Ok(init) = post(
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": format!("load-{n}"), "version": "1"}}}),
                None,
            )
            .await
            else {
                return;
            };
            let Some(sid) = init
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
            else {
                return;
            };
            let _ = post(
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                Some(&sid),
            )
            .await;
            for id in 1..100_000_i64 {
                let Ok(res) = post(
                    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"message": format!("{n}-{id}")}}}),
                    Some(&sid),
                )
                .await
                else {
                    return; // the server is gone
                };
                let Ok(text) = res.text().await else { return };
                if text.contains(&format!("Echo: {n}-{id}")) {
                    answered.lock().unwrap().insert((sid.clone(), id));
                }
            }
        }));
    }
    // Let the load run, then kill -9 (SIGKILL: no shutdown, no flush).
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if answered.lock().unwrap().len() >= 150 {
            break;
        }
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= 50,
        "the load ran: {} answers",
        answered.len()
    );

    // Restarted on the same database: every answer has its record.
    let mut server = start(dir.path(), db.as_ref());
    let c = Client::new(server.port);
    let mut recorded: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut before: Option<i64> = None;
    loop {
        let path = match before {
            Some(b) => format!("/api/v1/audit?method=tools/call&outcome=ok&limit=1000&before={b}"),
            None => "/api/v1/audit?method=tools/call&outcome=ok&limit=1000".to_owned(),
        };
        let page = c.api(admin, reqwest::Method::GET, &path, None).await;
        for e in page["events"].as_array().unwrap() {
            recorded.insert((
                e["session_id"].as_str().unwrap().to_owned(),
                e["detail"]["jsonrpc_id"].as_i64().unwrap(),
            ));
        }
        match page["next"].as_i64() {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    let missing: Vec<_> = answered.difference(&recorded).collect();
    assert!(
        missing.is_empty(),
        "{} of {} answers have no record: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
    let v = c
        .api(admin, reqwest::Method::GET, "/api/v1/audit/verify", None)
        .await;
    assert_eq!(v["ok"], true, "{v}");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
