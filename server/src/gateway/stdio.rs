//! Runs a stdio MCP server for a `Link`: launch, supervise, restart with backoff, stop.
//!
//! - **Scrubbed environment**: the child starts from an empty environment plus `PATH`,
//!   `LANG`, and `HOME`/`TMPDIR` pointing at a private directory made for it: nothing the
//!   gateway holds (database URL, master key, tokens) is inherited.
//! - **stderr** is logged line by line under the server's name (servers log there by design).
//! - **Newline-delimited JSON-RPC** on stdin/stdout; a line over 16 MiB is a protocol violation
//!   and restarts the process.
//! - **Restart with backoff** (0.5 s doubling to 30 s; reset after a minute of uptime) while the
//!   link is wanted.
//! - **Stop**: close stdin, wait 2 s, SIGTERM to the process group, wait 2 s, SIGKILL.
//! - **Sandbox** (`sandbox: true`): bubblewrap with a read-only root, private `/tmp`, `/dev`
//!   and `/proc`, the gateway's data directory replaced by an empty tmpfs, the working directory
//!   (if set) visible read-only, a new session and PID namespace, dying with the gateway. Without a working `bwrap` the server does not start
//!   (fail closed) and the reason says so.

use super::link::Link;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const MAX_LINE: usize = 16 * 1024 * 1024;
const SAFE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Debug, Clone)]
pub struct Spec {
    pub command: String,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    pub sandbox: bool,
    pub data_dir: PathBuf,
    /// The server's credential from the vault, as one environment variable.
    pub env: Option<Arc<super::EnvSecret>>,
}

/// Whether bubblewrap can run a sandbox on this machine (cached after the first check).
pub fn sandbox_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::process::Command::new("bwrap")
            .args([
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "--unshare-pid",
                "--die-with-parent",
                "true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A private home for one run of a stdio server, removed when the run ends.
struct Home(PathBuf);

impl Home {
    fn create() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("portcullis-stdio-{}", uuid::Uuid::new_v4()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn command(spec: &Spec, home: &Home) -> Result<Command, String> {
    let mut cmd = if spec.sandbox {
        if !sandbox_available() {
            return Err(
                "the server asks for a sandbox and bubblewrap (bwrap) cannot run one here".into(),
            );
        }
        let mut c = Command::new("bwrap");
        c.args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
        c.args(["--tmpfs", "/tmp"]);
        c.args(["--unshare-pid", "--new-session", "--die-with-parent"]);
        c.args(["--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp"]);
        // The working directory stays visible (read-only), even under /tmp.
        let cwd = spec.cwd.as_deref().map(|d| {
            std::path::Path::new(d)
                .canonicalize()
                .unwrap_or_else(|_| PathBuf::from(d))
        });
        if let Some(dir) = &cwd {
            c.arg("--ro-bind").arg(dir).arg(dir);
        }
        // Last, so that no bind above can bring it back (a cwd of / or of the data dir's
        // parent would otherwise re-expose it): the data directory is an empty tmpfs.
        let data = spec
            .data_dir
            .canonicalize()
            .unwrap_or_else(|_| spec.data_dir.clone());
        c.arg("--tmpfs").arg(&data);
        match &cwd {
            Some(dir) => c.arg("--chdir").arg(dir),
            None => c.args(["--chdir", "/tmp"]),
        };
        c.arg("--").arg(&spec.command).args(&spec.args);
        c
    } else {
        let mut c = Command::new(&spec.command);
        c.args(&spec.args);
        c.current_dir(
            spec.cwd
                .as_deref()
                .map(PathBuf::from)
                .unwrap_or_else(|| home.0.clone()),
        );
        c
    };
    cmd.env_clear()
        .env("PATH", SAFE_PATH)
        .env("LANG", "C.UTF-8")
        .env("HOME", &home.0)
        .env("TMPDIR", &home.0);
    if let Some(e) = &spec.env {
        cmd.env(&e.name, e.value.as_str());
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    Ok(cmd)
}

/// Supervises the server until the link is shut down.
pub async fn run(link: Arc<Link>, spec: Spec) {
    let mut stop = link.stop_signal();
    let mut attempt = 0u64;
    let mut backoff = super::link::Backoff::default();
    while !link.stopping() {
        attempt += 1;
        let started = Instant::now();
        let reason = match Home::create().map_err(|e| e.to_string()).and_then(|home| {
            let child = command(&spec, &home)?
                .spawn()
                .map_err(|e| format!("cannot start `{}`: {e}", spec.command))?;
            Ok((home, child))
        }) {
            Ok((home, child)) => {
                tracing::info!(upstream = %link.label, pid = child.id().unwrap_or(0), "stdio server started");
                let reason = drive(&link, child, attempt).await;
                drop(home);
                reason
            }
            Err(e) => e,
        };
        link.went_down(attempt, &reason);
        if link.stopping() {
            break;
        }
        tracing::warn!(upstream = %link.label, reason = %reason, "stdio server stopped; restarting");
        backoff.wait(started, &mut stop).await;
    }
    tracing::info!(upstream = %link.label, "stdio server stopped for good");
}

/// Runs one process until it exits or the link stops it; returns why it ended.
async fn drive(link: &Arc<Link>, mut child: Child, attempt: u64) -> String {
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return "the process has no stdio pipes".into();
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdin = stdin;
        while let Some(line) = rx.recv().await {
            let mut bytes = line.into_bytes();
            bytes.push(b'\n');
            if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
        // Dropping stdin closes it: the first step of a polite stop.
    });
    let label = link.label.clone();
    // The last lines of stderr, to say why a process that dies at once died.
    let tail = Arc::new(std::sync::Mutex::new(
        std::collections::VecDeque::<String>::new(),
    ));
    let logger = tokio::spawn({
        let tail = tail.clone();
        async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line: String = line.chars().take(2000).collect();
                tracing::info!(upstream = %label, stream = "stderr", "{line}");
                // Stack frames and blank lines say little about why; keep the rest.
                if line.trim().is_empty() || line.trim_start().starts_with("at ") {
                    continue;
                }
                let mut t = super::lock(&tail);
                t.push_back(line.chars().take(300).collect());
                if t.len() > 6 {
                    t.pop_front();
                }
            }
        }
    });
    link.connected(tx, attempt);
    let handshake = tokio::spawn({
        let link = link.clone();
        async move { link.handshake().await }
    });
    let mut stop = link.stop_signal();
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    let reason = loop {
        buf.clear();
        let mut limited = (&mut reader).take(MAX_LINE as u64 + 1);
        tokio::select! {
            read = limited.read_until(b'\n', &mut buf) => {
                match read {
                    Ok(0) => break "the process closed its stdout".to_owned(),
                    Ok(_) if buf.len() > MAX_LINE => break "the process wrote a line over 16 MiB".to_owned(),
                    Ok(_) => {
                        let line = buf.trim_ascii();
                        if line.is_empty() { continue; }
                        match serde_json::from_slice::<serde_json::Value>(line) {
                            Ok(msg) => link.on_message(msg),
                            Err(_) => tracing::warn!(upstream = %link.label, "stdio server wrote a line that is not JSON; ignored"),
                        }
                    }
                    Err(e) => break format!("reading stdout failed: {e}"),
                }
            }
            _ = stop.changed() => break "stopped by the gateway".to_owned(),
            _ = link.restart.notified() => break "the initialize handshake failed".to_owned(),
        }
    };
    handshake.abort();
    // Polite stop: close stdin (the writer ends when the link drops its sender).
    link.went_down(attempt, &reason);
    writer.abort();
    let status = stop_child(&mut child).await;
    // Let the logger read what the process wrote before it died.
    let _ = tokio::time::timeout(Duration::from_millis(200), logger).await;
    let last: Vec<String> = super::lock(&tail).iter().cloned().collect();
    let reason = match status {
        Some(s) if reason == "the process closed its stdout" => format!("the process exited ({s})"),
        _ => reason,
    };
    if last.is_empty() {
        reason
    } else {
        format!("{reason}; its last words on stderr: {}", last.join(" | "))
    }
}

/// Close stdin (already done by the caller), then SIGTERM, then SIGKILL, to the process group.
async fn stop_child(child: &mut Child) -> Option<std::process::ExitStatus> {
    if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        return Some(s);
    }
    if let Some(pid) = child.id() {
        let pgid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
            return Some(s);
        }
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.start_kill();
    child.wait().await.ok()
}
