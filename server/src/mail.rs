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

/// The sender: a queue in front of one SMTP transport.
#[derive(Debug, Clone)]
pub struct Mailer {
    queue: mpsc::Sender<Mail>,
}

/// Checks the settings and starts the background sender; `Ok(None)` without an SMTP URL.
pub fn start(
    smtp_url: Option<&SecretString>,
    from: &str,
    audit: Audit,
) -> Result<Option<Mailer>, String> {
    let Some(url) = smtp_url else {
        return Ok(None);
    };
    let parsed = url::Url::parse(url.expose_secret())
        .map_err(|_| "PORTCULLIS_SMTP_URL is not a URL (smtp://… or smtps://…)".to_owned())?;
    let plain = parsed.scheme() == "smtp" && !parsed.query().unwrap_or_default().contains("tls=");
    let host = parsed.host_str().unwrap_or_default();
    if !matches!(parsed.scheme(), "smtp" | "smtps") {
        return Err("PORTCULLIS_SMTP_URL must start with smtp:// or smtps://".into());
    }
    if plain && !matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]") {
        return Err(
            "PORTCULLIS_SMTP_URL: plain SMTP only to localhost; use smtps:// or ?tls=required"
                .into(),
        );
    }
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
    Ok(Some(Mailer { queue: tx }))
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
