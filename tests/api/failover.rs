//! Losing a replica under load: three replicas of the real binary (separate `portcullis serve`
//! processes) on one PostgreSQL behind nginx configured from `deploy/`; twelve MCP clients call
//! a tool through it without pause; one replica is killed with SIGKILL mid-run.
//!
//! Asserted: at most the calls in flight on the killed replica fail (nginx never re-sends a
//! request a replica received, so a tool never runs twice); every client goes on with its
//! session on the other replicas without initializing again; every call that was answered has
//! its audit record (arguments recorded in full, so each answered call is found by its own
//! arguments). Printed: calls, errors and how long errors lasted after the kill.

use crate::deploy::{free_port, nginx, quiet, stop, wait_listening};
use crate::gateway::start_fixture;
use crate::helpers::{TestDb, TEST_MASTER_KEY};
use reqwest::header::HOST;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: i64 = 12;
const KILL_AFTER: Duration = Duration::from_secs(3);
const RUN_FOR: Duration = Duration::from_secs(8);

struct Replica {
    port: u16,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

/// `portcullis serve` on `db`, waited for until `/readyz` answers.
async fn replica(db: &str, client: &reqwest::Client) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--database-url", db])
        .env("PORTCULLIS_MASTER_KEY", TEST_MASTER_KEY)
        .env_remove("DATABASE_URL")
        .env_remove("PORTCULLIS_CONFIG");
    let mut child = quiet(&mut cmd).spawn().unwrap();
    for _ in 0..300 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if r.status() == StatusCode::OK {
                return Replica {
                    port,
                    child,
                    _dir: dir,
                };
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("a replica exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a replica did not get ready");
}

fn cli(db: &str, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--database-url", db])
        .env("PORTCULLIS_MASTER_KEY", TEST_MASTER_KEY)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn admin_call(
    client: &reqwest::Client,
    port: u16,
    admin: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let res = client
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .header(HOST, format!("acme.localhost:{port}"))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// The text of a tools/call answer (JSON or one SSE event), if it is one.
fn answer_text(body: &str) -> Option<String> {
    let json = body
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(body)
        .trim();
    let v: Value = serde_json::from_str(json).ok()?;
    v["result"]["content"][0]["text"]
        .as_str()
        .map(str::to_owned)
}

#[derive(Default)]
struct Tally {
    answered: Vec<(i64, i64)>,
    /// (when, what) of each failed call.
    errors: Vec<(Duration, String)>,
    /// Clients with an answered call after the kill.
    after_kill: HashSet<i64>,
}

/// One client: a session through the balancer, then `add(client, n)` for n = 0, 1, … until
/// `RUN_FOR` has passed. Never initializes again.
async fn client_loop(
    client: reqwest::Client,
    lb: u16,
    token: String,
    me: i64,
    start: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let url = format!("https://127.0.0.1:{lb}/mcp/crm");
    let host = format!("acme.localhost:{lb}");
    let init = client
        .post(&url)
        .header(HOST, &host)
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(&token)
        .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "failover", "version": "0"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), StatusCode::OK);
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.text().await;
    let mut n = 0;
    while start.elapsed() < RUN_FOR {
        n += 1;
        let res = client
            .post(&url)
            .header(HOST, &host)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &sid)
            .bearer_auth(&token)
            .json(&json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": me, "b": n}}}))
            .send()
            .await;
        let outcome = match res {
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                match answer_text(&body) {
                    Some(t) if status == StatusCode::OK && t == (me + n).to_string() => Ok(()),
                    _ => Err(format!(
                        "{status}: {}",
                        body.chars().take(120).collect::<String>()
                    )),
                }
            }
            Err(e) => Err(format!("transport: {e}")),
        };
        let mut t = tally.lock().unwrap();
        match outcome {
            Ok(()) => {
                t.answered.push((me, n));
                if start.elapsed() > KILL_AFTER {
                    t.after_kill.insert(me);
                }
            }
            Err(e) => t.errors.push((start.elapsed(), e)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_no_answered_call_and_no_session() {
    let py = start_fixture().await;
    let db = TestDb::create().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&db.url, &http).await);
    }
    let created = cli(
        &db.url,
        &[
            "tenant",
            "create",
            "acme",
            "--name",
            "Acme",
            "--admin-email",
            "admin@acme.example",
            "--json",
        ],
    );
    let admin = created["admin_token"].as_str().unwrap().to_owned();
    let first = replicas[0].port;
    // The replicas learn of the tenant from the database.
    for r in &replicas {
        for _ in 0..100 {
            let s = http
                .get(format!("http://127.0.0.1:{}/api/v1/tenant", r.port))
                .header(HOST, format!("acme.localhost:{}", r.port))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .status();
            if s == StatusCode::OK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    use reqwest::Method;
    admin_call(
        &http,
        first,
        &admin,
        Method::POST,
        "/api/v1/servers",
        json!({"slug": "crm", "upstream": {"transport": "streamable_http",
               "url": format!("http://127.0.0.1:{}/mcp", py.port)}}),
    )
    .await;
    admin_call(
        &http,
        first,
        &admin,
        Method::POST,
        "/api/v1/registries",
        json!({"slug": "all", "servers": ["crm"], "grants": [{"subject": "everyone"}]}),
    )
    .await;
    admin_call(
        &http,
        first,
        &admin,
        Method::PUT,
        "/api/v1/audit/settings",
        json!({"arguments": "full"}),
    )
    .await;
    let token = admin_call(
        &http,
        first,
        &admin,
        Method::POST,
        "/api/v1/tokens",
        json!({"user_email": "dev@acme.example"}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let certs = tempfile::tempdir().unwrap();
    crate::real_clients::make_certificates(certs.path());
    let lb_dir = tempfile::tempdir().unwrap();
    let lb = free_port();
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    let mut cmd = nginx(lb_dir.path(), certs.path(), lb, &ports);
    cmd.args(["-g", "daemon off;"]);
    let mut balancer = quiet(&mut cmd).spawn().unwrap();
    wait_listening(lb, &mut balancer, "nginx").await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.path().join("ca.pem")).unwrap())
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    // The token reaches every replica's snapshot.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for me in 1..=CLIENTS {
        tasks.push(tokio::spawn(client_loop(
            client.clone(),
            lb,
            token.clone(),
            me,
            start,
            tally.clone(),
        )));
    }
    tokio::time::sleep(KILL_AFTER).await;
    let killed_at = start.elapsed();
    let mut victim = replicas.pop().unwrap();
    victim.child.start_kill().unwrap();
    let _ = victim.child.wait().await;
    for t in tasks {
        t.await.unwrap();
    }
    stop(balancer).await;

    let t = std::mem::take(&mut *tally.lock().unwrap());
    let last_error = t.errors.iter().map(|(at, _)| *at).max();
    eprintln!(
        "failover: {} calls answered in {:?} by {CLIENTS} clients, {} failed ({:?}); killed at {killed_at:?}, last error at {last_error:?}",
        t.answered.len(),
        RUN_FOR,
        t.errors.len(),
        t.errors.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>()
    );
    assert!(t.answered.len() > 50, "{} answered", t.answered.len());
    assert!(
        t.errors.len() as i64 <= CLIENTS,
        "at most the calls in flight on the killed replica fail: {:?}",
        t.errors
    );
    assert!(
        t.errors.iter().all(|(at, _)| *at >= killed_at),
        "no error before the kill: {:?}",
        t.errors
    );
    assert_eq!(
        t.after_kill.len() as i64,
        CLIENTS,
        "every client went on with its session after the kill"
    );

    // Every answered call has its record, found by its arguments.
    let export = http
        .get(format!(
            "http://127.0.0.1:{first}/api/v1/audit/export?format=jsonl&method=tools/call"
        ))
        .header(HOST, format!("acme.localhost:{first}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let recorded: HashSet<(i64, i64)> = export
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["outcome"] == "ok")
        .filter_map(|r| {
            let a = &r["detail"]["arguments"];
            Some((a["a"].as_i64()?, a["b"].as_i64()?))
        })
        .collect();
    let missing: Vec<&(i64, i64)> = t
        .answered
        .iter()
        .filter(|k| !recorded.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "{} answered calls without a record: {:?}",
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    );
    for mut r in replicas {
        let _ = r.child.start_kill();
        let _ = r.child.wait().await;
    }
}
