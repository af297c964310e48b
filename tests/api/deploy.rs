//! The deployment guide's files (`deploy/`) work as written: the Kubernetes manifests pass the
//! schema check of the Kubernetes version they target (and a broken manifest does not); nginx
//! and HAProxy, configured from `deploy/` with only addresses, names and certificates swapped,
//! pass their own configuration checks and carry MCP traffic over TLS to two replicas on one
//! PostgreSQL — both replicas serve, and when one stops the other takes every new request.

use crate::gateway::{add_server, start_fixture, user_token};
use crate::helpers::{spawn_app, Engine, TestApp};
use reqwest::header::HOST;
use reqwest::StatusCode;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel)
}

fn venv_bin(name: &str) -> PathBuf {
    let python = PathBuf::from(crate::gateway::python());
    python.with_file_name(name)
}

#[test]
fn the_kubernetes_manifests_pass_the_schema_check() {
    let dir = deploy("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    let check = |files: &[PathBuf]| {
        std::process::Command::new(venv_bin("kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", "1.30.0"])
            .args(files)
            .output()
            .expect("kubernetes-validate (scripts/setup.sh installs it)")
    };
    let out = check(&files);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for kind in [
        "namespace/portcullis",
        "secret/portcullis",
        "deployment/portcullis",
        "poddisruptionbudget/portcullis",
        "service/portcullis",
        "ingress/portcullis",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind}: {text}"
        );
    }
    // The check can fail: a typo'd field and a wrong type are caught.
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("deployment.yaml");
    let original = std::fs::read_to_string(dir.join("deployment.yaml")).unwrap();
    for (from, to) in [
        ("replicas: 3", "replicas: three"),
        ("readinessProbe:", "readinesProbe:"),
    ] {
        assert!(original.contains(from));
        std::fs::write(&broken, original.replacen(from, to, 1)).unwrap();
        let out = check(std::slice::from_ref(&broken));
        assert!(!out.status.success(), "{from} → {to} passed the check");
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The POST answers to `/mcp/…` a replica has counted (its Prometheus metrics).
async fn mcp_answers(app: &TestApp) -> u64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("portcullis_http_requests_total{")
                && l.contains("/mcp/")
                && l.contains("status=\"200\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// An MCP `initialize` through the load balancer (over TLS, the tenant by its host).
async fn initialize(client: &reqwest::Client, lb: u16, token: &str) -> StatusCode {
    client
        .post(format!("https://127.0.0.1:{lb}/mcp/crm"))
        .header(HOST, format!("acme.localhost:{lb}"))
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "lb-test", "version": "0"}}}))
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::BAD_GATEWAY)
}

/// A load balancer's process: no output into the test's, killed if the test fails.
pub(crate) fn quiet(cmd: &mut tokio::process::Command) -> &mut tokio::process::Command {
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
}

/// Stops a load balancer the way its service manager does (SIGTERM: the master stops its
/// workers) and waits for it.
pub(crate) async fn stop(mut child: tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
}

/// Waits until the load balancer answers on its port.
pub(crate) async fn wait_listening(port: u16, child: &mut tokio::process::Child, what: &str) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited: {status}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not listen on {port}");
}

/// nginx from `deploy/nginx/portcullis.conf`, as a site included by a minimal main config.
pub(crate) fn nginx(
    dir: &Path,
    certs: &Path,
    lb: u16,
    replicas: &[u16],
) -> tokio::process::Command {
    let site = std::fs::read_to_string(deploy("nginx/portcullis.conf")).unwrap();
    let upstreams: String = replicas
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p} max_fails=2 fail_timeout=5s;\n"))
        .collect();
    let mut out = String::new();
    let mut placed = false;
    for line in site.lines() {
        if line.trim_start().starts_with("server 10.0.0.") {
            if !placed {
                out.push_str(&upstreams);
                placed = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(placed, "the guide's upstream block");
    let site = out
        .replace(
            "listen 443 ssl http2;",
            &format!("listen 127.0.0.1:{lb} ssl http2;"),
        )
        .replace("listen 80;", &format!("listen 127.0.0.1:{};", free_port()))
        .replace("mcp.example.com", "localhost")
        .replace(
            "/etc/nginx/tls/localhost.pem",
            &certs.join("leaf.pem").display().to_string(),
        )
        .replace(
            "/etc/nginx/tls/localhost.key",
            &certs.join("leaf.key").display().to_string(),
        );
    std::fs::write(dir.join("portcullis.conf"), site).unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
             scgi_temp_path {d}/scgi;\n  include {d}/portcullis.conf;\n}}\n"
        ),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new("/usr/sbin/nginx");
    cmd.arg("-p").arg(dir).arg("-c").arg(dir.join("nginx.conf"));
    cmd
}

/// HAProxy from `deploy/haproxy/haproxy.cfg`.
fn haproxy(dir: &Path, certs: &Path, lb: u16, replicas: &[u16]) -> PathBuf {
    let cfg = std::fs::read_to_string(deploy("haproxy/haproxy.cfg")).unwrap();
    let pem = dir.join("lb.pem");
    let both = std::fs::read_to_string(certs.join("leaf.pem")).unwrap()
        + &std::fs::read_to_string(certs.join("leaf.key")).unwrap();
    std::fs::write(&pem, both).unwrap();
    let servers: String = replicas
        .iter()
        .enumerate()
        .map(|(i, p)| format!("    server replica{} 127.0.0.1:{p} check\n", i + 1))
        .collect();
    let mut out = String::new();
    let mut placed = false;
    for line in cfg.lines() {
        if line.trim_start().starts_with("server replica") {
            if !placed {
                out.push_str(&servers);
                placed = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(placed, "the guide's backend servers");
    let cfg = out
        .replace(
            "bind :443 ssl crt /etc/haproxy/tls/mcp.example.com.pem",
            &format!("bind 127.0.0.1:{lb} ssl crt {}", pem.display()),
        )
        .replace("bind :80", &format!("bind 127.0.0.1:{}", free_port()))
        .replace(
            "log stdout format raw local0",
            "log stderr format raw local0 err",
        );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_load_balancers_carry_traffic_to_replicas_and_around_a_stopped_one() {
    let certs = tempfile::tempdir().unwrap();
    crate::real_clients::make_certificates(certs.path());
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.path().join("ca.pem")).unwrap())
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let py = start_fixture().await;

    for lb_kind in ["nginx", "haproxy"] {
        let a = spawn_app(Engine::Postgres).await;
        let acme = a.create_tenant("acme").await;
        let admin = acme.admin_token.as_str();
        add_server(
            &a,
            "acme",
            admin,
            "crm",
            json!({"transport": "streamable_http", "url": format!("http://127.0.0.1:{}/mcp", py.port)}),
        )
        .await;
        let dev = user_token(&a, "acme", admin, "dev@acme.example").await;
        let b = a.replica().await;
        let dir = tempfile::tempdir().unwrap();
        let lb = free_port();
        let mut child = match lb_kind {
            "nginx" => {
                let mut cmd = nginx(dir.path(), certs.path(), lb, &[a.port, b.port]);
                let check = std::process::Command::new("/usr/sbin/nginx")
                    .arg("-t")
                    .args(["-p", &dir.path().display().to_string()])
                    .args(["-c", &dir.path().join("nginx.conf").display().to_string()])
                    .output()
                    .unwrap();
                assert!(
                    check.status.success(),
                    "nginx -t: {}",
                    String::from_utf8_lossy(&check.stderr)
                );
                cmd.args(["-g", "daemon off;"]);
                quiet(&mut cmd).spawn().unwrap()
            }
            _ => {
                let cfg = haproxy(dir.path(), certs.path(), lb, &[a.port, b.port]);
                let check = std::process::Command::new("/usr/sbin/haproxy")
                    .arg("-c")
                    .arg("-f")
                    .arg(&cfg)
                    .output()
                    .unwrap();
                assert!(
                    check.status.success(),
                    "haproxy -c: {}{}",
                    String::from_utf8_lossy(&check.stdout),
                    String::from_utf8_lossy(&check.stderr)
                );
                let mut cmd = tokio::process::Command::new("/usr/sbin/haproxy");
                cmd.arg("-db").arg("-f").arg(&cfg);
                quiet(&mut cmd).spawn().unwrap()
            }
        };
        wait_listening(lb, &mut child, lb_kind).await;
        // HAProxy marks servers up after its first health checks.
        let mut ok = 0;
        for _ in 0..100 {
            if initialize(&client, lb, &dev).await == StatusCode::OK {
                ok += 1;
                if ok == 10 {
                    break;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert_eq!(ok, 10, "{lb_kind}: requests through the load balancer");
        let (on_a, on_b) = (mcp_answers(&a).await, mcp_answers(&b).await);
        assert!(
            on_a > 0 && on_b > 0,
            "{lb_kind}: both replicas served ({on_a}, {on_b})"
        );

        // One replica goes away: every new request is answered by the other.
        b.stop().await;
        let before = mcp_answers(&a).await;
        for i in 0..10 {
            let mut status = StatusCode::BAD_GATEWAY;
            // HAProxy may send one request to the stopped replica before its health check
            // marks it down; `retries` + `redispatch` move it. nginx moves it at once.
            for _ in 0..20 {
                status = initialize(&client, lb, &dev).await;
                if status == StatusCode::OK {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(
                status,
                StatusCode::OK,
                "{lb_kind}: request {i} after the stop"
            );
        }
        assert_eq!(
            mcp_answers(&a).await - before,
            10,
            "{lb_kind}: the remaining replica answered every one"
        );
        stop(child).await;
        a.stop().await;
    }
}
