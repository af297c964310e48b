//! Mail notifications through a real SMTP server (aiosmtpd, `tests/fixtures/smtp_sink.py`):
//! a user is told when their access is revoked and when they are deactivated; the tenant's
//! admins are told about the deprovisioning; each message sent is on the record; a plain-text
//! SMTP URL to a remote host is refused at start.

use crate::access::api;
use crate::gateway::{fixture_path, python, user_token};
use crate::helpers::{spawn_app_with, Engine};
use portcullis::config::ServeArgs;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The messages the sink took so far.
pub(crate) fn received(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (bounded) for a message to `to` whose subject contains `subject`.
pub(crate) async fn wait_for(path: &std::path::Path, to: &str, subject: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(m) = received(path)
            .into_iter()
            .find(|m| m["to"][0] == to && m["subject"].as_str().unwrap_or("").contains(subject))
        {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "no mail to {to} about {subject:?}: {:?}",
            received(path)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_are_told_by_mail_when_their_access_goes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mail.jsonl");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(fixture_path("smtp_sink.py")).arg(&out);
    let sink = crate::conformance::start_listening(cmd).await;
    let app = spawn_app_with(
        Engine::Sqlite,
        ServeArgs {
            smtp_url: Some(sink.url.clone()),
            mail_from: Some("Portcullis <noreply@acme.example.com>".into()),
            ..Default::default()
        },
    )
    .await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    let dev_token = user_token(&app, "acme", admin, "dev@acme.example.com").await;
    user_token(&app, "acme", admin, "ops@acme.example.com").await;

    // Everything dev holds is revoked: dev is told what went.
    let (s, v) = api(
        &app,
        admin,
        Method::POST,
        "/api/v1/tokens/revoke",
        Some(json!({"user_email": "dev@acme.example.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let m = wait_for(&out, "dev@acme.example.com", "access was revoked").await;
    assert_eq!(m["from"], "noreply@acme.example.com");
    let body = m["body"].as_str().unwrap();
    assert!(body.contains("acme Inc"), "{body}");
    assert!(body.contains("sessions were ended"), "{body}");
    assert!(!body.contains(&dev_token), "never a token in a mail");

    // ops is deactivated: ops is told, and so is the admin.
    let (_, users) = api(&app, admin, Method::GET, "/api/v1/users", None).await;
    let ops = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "ops@acme.example.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = api(
        &app,
        admin,
        Method::PATCH,
        &format!("/api/v1/users/{ops}"),
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let m = wait_for(&out, "ops@acme.example.com", "access was removed").await;
    assert!(m["body"]
        .as_str()
        .unwrap()
        .contains("deactivated by an administrator"));
    let m = wait_for(
        &out,
        "admin@acme.example.com",
        "ops@acme.example.com was deprovisioned",
    )
    .await;
    assert!(m["body"].as_str().unwrap().contains("/admin/audit"));

    // Each message sent is on the record.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = api(
            &app,
            admin,
            Method::GET,
            "/api/v1/audit?action=mail.sent",
            None,
        )
        .await;
        if v["events"].as_array().map_or(0, Vec::len) >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "mail.sent records: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;

    // Plain SMTP to a remote host is refused at start, with the setting named.
    let bad = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--smtp-url",
            "smtp://mail.example.com:25",
        ])
        .arg("--data-dir")
        .arg(bad.path())
        .env_remove("DATABASE_URL")
        .env_remove("PORTCULLIS_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PORTCULLIS_SMTP_URL"), "{err}");
}

/// Users hear when their own upstream account is connected and disconnected; admins get
/// noisy security events (here: a broken audit chain, seen at every verification) batched into
/// one digest per interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_announced_and_security_events_come_in_digests() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mail.jsonl");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(fixture_path("smtp_sink.py")).arg(&out);
    let sink = crate::conformance::start_listening(cmd).await;
    let app = spawn_app_with(
        Engine::Sqlite,
        ServeArgs {
            smtp_url: Some(sink.url.clone()),
            mail_digest_seconds: Some(1),
            ..Default::default()
        },
    )
    .await;
    let acme = app.create_tenant("acme").await;
    let admin = acme.admin_token.as_str();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(fixture_path("everything_fixture.mjs")).args([
        "http",
        "--port",
        "0",
        "--require-header",
        "x-api-key=k-1",
    ]);
    let upstream = crate::conformance::start_listening(cmd).await;
    crate::gateway::add_server(
        &app,
        "acme",
        admin,
        "kb",
        json!({"transport": "streamable_http", "url": upstream.url}),
    )
    .await;
    let (s, v) = api(
        &app,
        admin,
        Method::PUT,
        "/api/v1/servers/kb/credential",
        Some(json!({"kind": "user_header", "header": "X-Api-Key"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, me) = api(&app, admin, Method::GET, "/api/v1/me", None).await;
    let email = me["email"].as_str().unwrap().to_owned();

    // The admin sets their own secret in the portal, then an admin ends it: told both times.
    let mut browser = app.browser(Some("acme"));
    browser.sign_in(admin).await;
    // The portal lists what the snapshot holds, which follows the credential a moment later.
    let mut portal = browser.get("/").await;
    for _ in 0..50 {
        if portal.form_action("save-secret-kb").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        portal = browser.get("/").await;
    }
    let action = portal.form_action("save-secret-kb").expect("a secret form");
    let csrf = portal.input_value("csrf").unwrap();
    browser
        .post_form(
            &action,
            &[
                ("csrf", &csrf),
                ("form[op]", "portal_set_secret"),
                ("form[slug]", "kb"),
                ("form[secret_value]", "k-1"),
            ],
            "/",
        )
        .await;
    let m = wait_for(&out, &email, "Account connected: kb").await;
    assert!(
        !m["body"].as_str().unwrap().contains("k-1"),
        "never the secret"
    );
    let (s, _) = api(
        &app,
        admin,
        Method::DELETE,
        &format!("/api/v1/servers/kb/connections/{email}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    wait_for(&out, &email, "Account disconnected: kb").await;

    // The audit chain is tampered with; two verifications find it: one digest for both.
    crate::audit::tamper(
        &app,
        Engine::Sqlite,
        "UPDATE audit_event SET target = 'forged' WHERE seq = 2",
    )
    .await;
    for _ in 0..2 {
        let (s, v) = api(&app, admin, Method::GET, "/api/v1/audit/verify", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["ok"], false, "{v}");
    }
    let m = wait_for(&out, &email, "Security digest").await;
    let body = m["body"].as_str().unwrap();
    assert_eq!(
        body.matches("audit chain verification FAILED").count(),
        2,
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let digests = received(&out)
        .into_iter()
        .filter(|m| {
            m["subject"]
                .as_str()
                .unwrap_or("")
                .contains("Security digest")
        })
        .count();
    assert_eq!(digests, 1, "one digest for the burst");
}

/// The SMTP relay may be kept in the database instead of the environment: `portcullis mail set`
/// reads it from standard input and seals it under the master key; a server started without
/// PORTCULLIS_SMTP_URL mails through it; `keys rotate` re-seals it; `mail clear` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smtp_relay_can_be_kept_sealed_in_the_database() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mail.jsonl");
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(fixture_path("smtp_sink.py")).arg(&out);
    let sink = crate::conformance::start_listening(cmd).await;
    let app = crate::helpers::spawn_app(Engine::Sqlite).await;
    let acme = app.create_tenant("acme").await;
    let cli = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .args(&app.db_args)
            .env_remove("PORTCULLIS_SMTP_URL")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    // Bad input changes nothing.
    let o = cli(&["mail", "set", "--json"], "smtp://relay.example.com:25\n");
    assert!(
        !o.status.success(),
        "plain SMTP to a remote host is refused"
    );
    assert!(!String::from_utf8_lossy(&o.stderr).contains("relay.example.com"));
    let o = cli(&["mail", "status", "--json"], "");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["configured"], false, "{v}");
    // Stored, sealed: the database holds no trace of the URL.
    let o = cli(&["mail", "set", "--json"], &format!("{}\n", sink.url));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["configured"], true, "{v}");
    let host = sink.url.trim_start_matches("smtp://").to_owned();
    assert_eq!(v["host"], host.as_str(), "{v}");
    let db = std::fs::read(app.data_dir.join("portcullis.db")).unwrap_or_default();
    let wal = std::fs::read(app.data_dir.join("portcullis.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(host.len()).any(|w| w == host.as_bytes()),
            "sealed at rest"
        );
    }
    // The master key rotates: the relay follows it. A server started now mails through it.
    let o = app.cli(&["keys", "rotate", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(&["mail", "status", "--json"], "");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["configured"], true, "re-sealed under the new key: {v}");
    let fresh = app.replica().await;
    user_token(&fresh, "acme", &acme.admin_token, "dev@acme.example.com").await;
    let (s, _) = api(
        &fresh,
        &acme.admin_token,
        Method::POST,
        "/api/v1/tokens/revoke",
        Some(json!({"user_email": "dev@acme.example.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    wait_for(&out, "dev@acme.example.com", "access was revoked").await;
    let o = cli(&["mail", "clear", "--json"], "");
    assert!(o.status.success());
    let o = cli(&["mail", "status", "--json"], "");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["configured"], false, "{v}");
    fresh.stop().await;
    app.stop().await;
}
