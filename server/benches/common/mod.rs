//! What the benches that run the real `portcullis serve` process share (`soak`, `peers`):
//! included by each with `#[path = "common/mod.rs"] mod common;` (a bench cannot use the test
//! crate's helpers).
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the operator CLI on the server's data dir; its `--json` output.
pub fn cli(data: &Path, args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
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

/// A running release server on its embedded SQLite in `data`, with the tenant `acme` and its
/// admin's token: what the benches configure through the API.
pub struct Server {
    pub child: tokio::process::Child,
    pub port: u16,
    pub base: String,
    pub host: String,
    admin: String,
    http: reqwest::Client,
}

impl Server {
    /// Starts the server (its own process group), waits until it is ready, creates `acme` with
    /// the CLI and waits until the server knows it (a poll on SQLite).
    pub async fn start(data: &Path) -> Self {
        let port = free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..300 {
            if http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let created = cli(
            data,
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
        let server = Server {
            child,
            port,
            host: format!("acme.localhost:{port}"),
            admin: created["admin_token"].as_str().unwrap().to_owned(),
            base,
            http,
        };
        for _ in 0..100 {
            if server
                .api(reqwest::Method::GET, "/api/v1/tenant", Value::Null)
                .await
                .status()
                .is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// One admin API request on the tenant's host.
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Value) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("host", &self.host)
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Admin API requests that must each succeed.
    pub async fn configure(&self, steps: Vec<(reqwest::Method, &str, Value)>) {
        for (m, p, b) in steps {
            let r = self.api(m, p, b).await;
            assert!(r.status().is_success(), "{p}: {}", r.status());
        }
    }

    /// A gateway token for a user of the tenant.
    pub async fn user_token(&self, email: &str) -> String {
        self.api(
            reqwest::Method::POST,
            "/api/v1/tokens",
            json!({"user_email": email}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}
