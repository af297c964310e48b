//! Mail: notifications over SMTP (lettre). People are told when their access changes —
//! their gateway tokens or all their access revoked, their agents' tokens revoked, their
//! account deactivated — and a tenant's admins when a user is deprovisioned.
//!
//! Sending never holds up the change that caused it: messages are queued to one background
//! sender (bounded; a full queue drops the message with a log line), and a failure is logged
//! (never the SMTP URL, which may carry a password) and recorded as a `mail.failed` security
//! event. Without `PORTCULLIS_SMTP_URL` nothing is sent.

use crate::audit::{Audit, Category, Event};
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;

/// How many messages may wait to be sent.
const QUEUE: usize = 1000;

/// One notification.
#[derive(Debug, Clone)]
pub struct Mail {
    pub tenant_id: String,
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// The sender: a queue in front of one SMTP transport, and the security events waiting for the
/// next digest.
#[derive(Debug, Clone)]
pub struct Mailer {
    queue: mpsc::Sender<Mail>,
    digest: std::sync::Arc<Digest>,
}

/// Security events for tenants' admins, batched: one message per admin per interval.
#[derive(Debug)]
struct Digest {
    every: std::time::Duration,
    /// Tenant id → (lines, how many more were left out).
    pending: std::sync::Mutex<std::collections::BTreeMap<String, (Vec<String>, usize)>>,
}

/// The most lines a digest lists per tenant (the rest are counted).
const DIGEST_LINES: usize = 200;

/// Where the SMTP URL is kept when it is set with `portcullis mail set` (sealed under the
/// master key; re-sealed by `keys rotate`).
pub const SMTP_SETTING: &str = "smtp_url_sealed";
pub const SMTP_CONTEXT: &str = "platform/smtp-url";

/// The SMTP URL stored in the database, opened with the master key.
pub async fn stored_smtp_url(
    store: &crate::store::Store,
    key: &crate::keys::MasterKey,
) -> Result<Option<SecretString>, String> {
    let sealed = store
        .platform_setting(SMTP_SETTING)
        .await
        .map_err(|e| e.to_string())?
        .filter(|s| !s.is_empty());
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let plain = key
        .open(SMTP_CONTEXT, &sealed)
        .ok_or("the stored SMTP URL does not open with the master key")?;
    String::from_utf8(plain)
        .map(|s| Some(SecretString::from(s)))
        .map_err(|_| "the stored SMTP URL is not text".to_owned())
}

/// Checks an SMTP URL the way the sender will use it; the message never repeats the URL.
pub fn check_smtp_url(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url)
        .map_err(|_| "the SMTP URL is not a URL (smtp://… or smtps://…)".to_owned())?;
    let plain = parsed.scheme() == "smtp" && !parsed.query().unwrap_or_default().contains("tls=");
    let host = parsed.host_str().unwrap_or_default().to_owned();
    if !matches!(parsed.scheme(), "smtp" | "smtps") {
        return Err("the SMTP URL must start with smtp:// or smtps://".into());
    }
    if plain && !matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1" | "[::1]") {
        return Err("plain SMTP only to localhost; use smtps:// or ?tls=required".into());
    }
    AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|_| "the SMTP URL could not be used (check its form)".to_owned())?;
    Ok(match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// Checks the settings and starts the background sender; `Ok(None)` without an SMTP URL.
pub fn start(
    smtp_url: Option<&SecretString>,
    from: &str,
    audit: Audit,
    digest_every: std::time::Duration,
) -> Result<Option<Mailer>, String> {
    let Some(url) = smtp_url else {
        return Ok(None);
    };
    check_smtp_url(url.expose_secret()).map_err(|e| format!("PORTCULLIS_SMTP_URL: {e}"))?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
        .map_err(|_| "PORTCULLIS_SMTP_URL could not be used (check its form)".to_owned())?
        .build();
    let from: Mailbox = from
        .parse()
        .map_err(|_| format!("PORTCULLIS_MAIL_FROM {from:?} is not a mail address"))?;
    let (tx, mut rx) = mpsc::channel::<Mail>(QUEUE);
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let outcome = match build(&from, &m) {
                Ok(msg) => transport.send(msg).await.map(|_| ()).map_err(|e| {
                    // lettre's errors name the server's reply, never the URL's password.
                    e.to_string()
                }),
                Err(e) => Err(e),
            };
            let mut e = Event::new(
                &m.tenant_id,
                Category::Security,
                if outcome.is_ok() {
                    "mail.sent"
                } else {
                    "mail.failed"
                },
                if outcome.is_ok() { "ok" } else { "error" },
            )
            .target(m.to.clone())
            .detail(serde_json::json!({"subject": m.subject}));
            if let Err(why) = &outcome {
                tracing::warn!(tenant.id = %m.tenant_id, error = %why, "a notification could not be mailed");
                e.detail["error"] = serde_json::json!(why);
            }
            e.actor = Some("portcullis".into());
            audit.note(e).await;
        }
    });
    Ok(Some(Mailer {
        queue: tx,
        digest: std::sync::Arc::new(Digest {
            every: digest_every,
            pending: std::sync::Mutex::default(),
        }),
    }))
}

fn build(from: &Mailbox, m: &Mail) -> Result<Message, String> {
    let to: Mailbox =
        m.to.parse()
            .map_err(|_| format!("{:?} is not a mail address", m.to))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&m.subject)
        .header(ContentType::TEXT_PLAIN)
        .body(m.body.clone())
        .map_err(|e| e.to_string())
}

impl Mailer {
    /// Queues a message; never waits for the SMTP server.
    pub fn send(&self, mail: Mail) {
        if self.queue.try_send(mail).is_err() {
            tracing::warn!("the mail queue is full: a notification was dropped");
        }
    }
}

/// A security event for the tenant's admins, mailed in the next digest (events that can come
/// in bursts: a broken audit chain seen at each verification, connections the upstream no
/// longer accepts, revocations that did not reach an upstream, blocked injections).
pub fn security(mailer: Option<&Mailer>, tenant_id: &str, line: String) {
    let Some(m) = mailer else {
        return;
    };
    let mut p = crate::gateway::lock(&m.digest.pending);
    let (lines, more) = p.entry(tenant_id.to_owned()).or_default();
    if lines.len() < DIGEST_LINES {
        let at = crate::tenants::format_time(crate::store::now_micros());
        lines.push(format!("{at}  {line}"));
    } else {
        *more += 1;
    }
}

/// A verification found the tenant's audit chain broken: its admins hear of it in the digest.
pub fn chain_broken(mailer: Option<&Mailer>, tenant_id: &str, v: &crate::audit::Verification) {
    if let Some(b) = &v.first_break {
        security(
            mailer,
            tenant_id,
            format!(
                "audit chain verification FAILED: broken at record #{} ({}): {}",
                b.seq, b.event_id, b.problem
            ),
        );
    }
}

/// A checkpoint (`audit::checkpoint`'s answer) found the chain broken: the same digest line.
pub fn checkpoint_broken(mailer: Option<&Mailer>, tenant_id: &str, checkpoint: &serde_json::Value) {
    if checkpoint["chain_ok"] == false {
        security(
            mailer,
            tenant_id,
            format!(
                "audit chain verification FAILED at a checkpoint: {}",
                checkpoint["first_break"]
            ),
        );
    }
}

/// Mails the waiting security events, one digest per admin of each tenant that has some,
/// every interval and once more at shutdown.
pub async fn run_digests(
    state: crate::state::AppState,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Some(mailer) = state.mailer.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(mailer.digest.every);
    tick.tick().await;
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.changed() => true,
        };
        let batch = std::mem::take(&mut *crate::gateway::lock(&mailer.digest.pending));
        for (tenant_id, (lines, more)) in batch {
            let admins = match state.store.admin_emails(&tenant_id).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "the admins to send a security digest to could not be read");
                    continue;
                }
            };
            let name = state
                .tenancy
                .tenant_by_id(&tenant_id)
                .map(|t| (t.name.clone(), state.urls.tenant(&t.slug)))
                .unwrap_or_else(|| (tenant_id.clone(), String::new()));
            let n = lines.len() + more;
            let mut body = format!(
                "{n} security event(s) in {} since the last digest:\n\n",
                name.0
            );
            for l in &lines {
                body.push_str(&format!("  - {l}\n"));
            }
            if more > 0 {
                body.push_str(&format!("  … and {more} more\n"));
            }
            body.push_str(&format!(
                "\nThe audit log has the details: {}/admin/audit\n",
                name.1
            ));
            for a in admins {
                mailer.send(Mail {
                    tenant_id: tenant_id.clone(),
                    to: a,
                    subject: format!("Security digest: {n} event(s) in {}", name.0),
                    body: body.clone(),
                });
            }
        }
        if last {
            return;
        }
    }
}

/// Queues a message if mail is configured.
pub fn notify(mailer: Option<&Mailer>, tenant_id: &str, to: &str, subject: &str, body: String) {
    if let Some(m) = mailer {
        m.send(Mail {
            tenant_id: tenant_id.to_owned(),
            to: to.to_owned(),
            subject: subject.to_owned(),
            body,
        });
    }
}

/// Tells each person whose tokens a revocation took (by email) what went.
pub fn revoked(
    state: &crate::state::AppState,
    tenant: &crate::tenancy::Tenant,
    r: &crate::servers::Revoked,
) {
    let mut by_user: std::collections::BTreeMap<&str, Vec<&str>> =
        std::collections::BTreeMap::new();
    for t in &r.tokens {
        if t.user.contains('@') {
            by_user
                .entry(t.user.as_str())
                .or_default()
                .push(t.label.as_str());
        }
    }
    for (user, labels) in by_user {
        let mut body = format!(
            "Access of yours to {} through Portcullis was revoked by an administrator. \
             These no longer work:\n\n",
            tenant.name
        );
        for l in labels {
            body.push_str(&format!("  - {l}\n"));
        }
        if r.sessions_ended {
            body.push_str("\nYour console and portal sessions were ended too.\n");
        }
        body.push_str(&format!(
            "\nIf you did not expect this, contact your administrator. {}\n",
            state.urls.tenant(&tenant.slug)
        ));
        notify(
            state.mailer.as_ref(),
            &tenant.tenant_id,
            user,
            "Your Portcullis access was revoked",
            body,
        );
    }
}

/// A user lost all access (deactivated or deleted, by SCIM or an admin): they are told, and so
/// are the tenant's admins (a security event).
pub async fn access_removed(
    state: &crate::state::AppState,
    tenant: &crate::tenancy::Tenant,
    email: &str,
    how: &str,
) {
    if state.mailer.is_none() {
        return;
    }
    notify(
        state.mailer.as_ref(),
        &tenant.tenant_id,
        email,
        "Your Portcullis access was removed",
        format!(
            "Your access to {} through Portcullis was removed ({how}). Your gateway tokens, \
             your agents' tokens and your sessions no longer work.\n",
            tenant.name
        ),
    );
    match state.store.admin_emails(&tenant.tenant_id).await {
        Ok(admins) => {
            for a in admins.iter().filter(|a| !a.eq_ignore_ascii_case(email)) {
                notify(
                    state.mailer.as_ref(),
                    &tenant.tenant_id,
                    a,
                    &format!("Security: {email} was deprovisioned"),
                    format!(
                        "{email} lost all access to {} ({how}): gateway tokens, agents' tokens \
                         and sessions no longer work. The audit log has the details: {}/admin/audit\n",
                        tenant.name,
                        state.urls.tenant(&tenant.slug)
                    ),
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "the admins to notify could not be read"),
    }
}
