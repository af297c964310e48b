//! Streaming the audit log to SIEMs: syslog (RFC 5424, octet-counted framing per RFC 6587,
//! over TCP or TLS), an HTTP webhook (JSON batches signed with HMAC-SHA256) and Splunk HEC.
//!
//! Delivery is at least once: each destination keeps a cursor (the last seq its receiver
//! took) in the database; a worker reads the records after it in batches, sends them, and
//! moves the cursor only after the send succeeded. A receiver that is down is retried with
//! exponential backoff (the delivery interval, doubling to 5 min); nothing is skipped, and a restart resumes from
//! the stored cursor. A batch that was sent but whose cursor update was lost is sent again.
//!
//! The RFC 5424 line is formatted here (30 lines, tested against a real rsyslog): the syslog
//! crates couple formatting to their own transports (and native-tls); the TLS is the same
//! rustls the HTTP client uses.

use super::export;
use crate::error::ApiError;
use crate::store::{now_micros, AuditQuery, AuditRow, SiemRow, Store};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Records per delivery.
const BATCH: i64 = 500;
/// How long a receiver may take to connect and take a batch.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The SD-ID of Portcullis's structured data (32473: the IANA example enterprise number, until
/// Portcullis has its own).
const SD_ID: &str = "portcullis@32473";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDestination {
    pub name: String,
    /// syslog, webhook or splunk_hec.
    pub kind: String,
    /// syslog: the receiver's host and port.
    pub host: Option<String>,
    pub port: Option<u16>,
    /// syslog: TLS (RFC 5425) instead of plain TCP.
    #[serde(default)]
    pub tls: bool,
    /// syslog over TLS: the PEM of the CA that signed the receiver's certificate (else the
    /// system's roots).
    pub ca_pem: Option<String>,
    /// webhook and splunk_hec: where batches are POSTed.
    pub url: Option<String>,
    /// webhook: the HMAC key; splunk_hec: the HEC token. Stored sealed, never shown again.
    pub secret: Option<String>,
    /// `now` (default: records from now on) or `beginning` (everything retained).
    pub start: Option<String>,
}

fn invalid(m: &str) -> ApiError {
    ApiError::Invalid(m.to_owned())
}

/// How earlier releases sealed a destination's secret (read once by `vault::migrate_legacy`).
pub(crate) fn seal_context(tenant_id: &str, name: &str) -> String {
    format!("siem {tenant_id} {name}")
}

/// Where a destination's secret lives in the vault.
pub(crate) fn secret_slot(destination_id: &str) -> crate::vault::Slot<'_> {
    crate::vault::Slot {
        table: "siem_destination",
        row: destination_id,
        name: "secret",
    }
}

/// A destination's secret: from the vault, or (not yet migrated) sealed with the master key.
async fn open_secret(
    store: &Store,
    vault: &crate::vault::Vault,
    d: &SiemRow,
) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, String> {
    match d.secret_sealed.as_deref() {
        None => Ok(None),
        Some(crate::sso::IN_VAULT) => vault
            .get(store, &d.tenant_id, secret_slot(&d.destination_id))
            .await
            .map_err(|e| e.to_string())?
            .map(|s| Some(zeroize::Zeroizing::new(s.as_bytes().to_vec())))
            .ok_or_else(|| "the secret is missing from the vault".to_owned()),
        Some(sealed) => vault
            .master()
            .open(&seal_context(&d.tenant_id, &d.name), sealed)
            .map(|b| Some(zeroize::Zeroizing::new(b)))
            .ok_or_else(|| "the stored secret cannot be opened with this master key".to_owned()),
    }
}

/// An http URL is allowed only to this machine (tests, a local forwarder); anything else is
/// https.
fn check_url(url: &str) -> Result<(), ApiError> {
    let u = url::Url::parse(url).map_err(|_| invalid("url must be an absolute http(s) URL"))?;
    let loopback = matches!(
        u.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    );
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid(
            "url must be https (http only to localhost): audit records are sensitive",
        )),
    }
}

pub async fn create(
    store: &Store,
    vault: &crate::vault::Vault,
    tenant_id: &str,
    d: NewDestination,
) -> Result<SiemRow, ApiError> {
    let name = d.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(invalid("name must be 1 to 64 characters"));
    }
    let (settings, secret) = match d.kind.as_str() {
        "syslog" => {
            let host = d.host.as_deref().map(str::trim).unwrap_or_default();
            if host.is_empty() {
                return Err(invalid("host is required for syslog"));
            }
            let port = d
                .port
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid("port is required for syslog"))?;
            if d.url.is_some() || d.secret.is_some() {
                return Err(invalid(
                    "syslog takes host, port, tls and ca_pem (no url or secret)",
                ));
            }
            if let Some(pem) = &d.ca_pem {
                if !d.tls {
                    return Err(invalid("ca_pem is for TLS: set tls"));
                }
                roots(Some(pem)).map_err(|e| ApiError::Invalid(format!("ca_pem: {e}")))?;
            }
            // Plain TCP: only to this machine (a local relay), as for http URLs.
            if !d.tls && !matches!(host, "localhost" | "127.0.0.1" | "::1") {
                return Err(invalid(
                    "plain TCP syslog is allowed only to localhost: use tls",
                ));
            }
            (
                json!({"host": host, "port": port, "tls": d.tls, "ca_pem": d.ca_pem}),
                None,
            )
        }
        "webhook" | "splunk_hec" => {
            let url = d.url.as_deref().ok_or_else(|| invalid("url is required"))?;
            check_url(url)?;
            let secret = d.secret.filter(|s| s.len() >= 16).ok_or_else(|| {
                invalid(if d.kind == "webhook" {
                    "secret (the HMAC key, at least 16 characters) is required"
                } else {
                    "secret (the HEC token) is required"
                })
            })?;
            (json!({"url": url}), Some(secret))
        }
        _ => return Err(invalid("kind must be syslog, webhook or splunk_hec")),
    };
    let start_seq = match d.start.as_deref() {
        None | Some("now") => store.audit_volume(tenant_id).await?.newest_seq.unwrap_or(0),
        Some("beginning") => 0,
        Some(_) => return Err(invalid("start must be now or beginning")),
    };
    let sealed = secret.as_ref().map(|_| crate::sso::IN_VAULT);
    let id = store
        .create_siem(
            tenant_id,
            &name,
            &d.kind,
            &settings.to_string(),
            sealed,
            start_seq,
        )
        .await?;
    if let Some(secret) = &secret {
        if let Err(e) = vault
            .put(store, tenant_id, secret_slot(&id), secret, "audit")
            .await
        {
            // Nothing half-made stays: the destination goes with its secret.
            let _ = store.delete_siem(tenant_id, &id).await;
            return Err(ApiError::internal(e));
        }
    }
    let row = store
        .list_siem(tenant_id)
        .await?
        .into_iter()
        .find(|r| r.destination_id == id)
        .ok_or(ApiError::NotFound)?;
    Ok(row)
}

/// A destination as the API and console show it (never its secret).
pub fn view(r: &SiemRow, head_seq: i64) -> Value {
    let mut settings: Value = serde_json::from_str(&r.settings).unwrap_or_default();
    if settings.get("ca_pem").is_some_and(|v| !v.is_null()) {
        settings["ca_pem"] = json!("(set)");
    }
    json!({
        "id": r.destination_id, "name": r.name, "kind": r.kind, "settings": settings,
        "secret_set": r.secret_sealed.is_some(), "enabled": r.enabled,
        "cursor_seq": r.cursor_seq, "behind": (head_seq - r.cursor_seq).max(0),
        "delivered": r.delivered,
        "last_ok_at": r.last_ok_at.map(export::time_micros),
        "last_error": r.last_error, "last_error_at": r.last_error_at.map(export::time_micros),
        "failures": r.failures,
    })
}

/// Escapes an RFC 5424 PARAM-VALUE (`"`, `\` and `]`).
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One record as an RFC 5424 message, octet-counted (`LEN SP MSG`).
pub fn syslog_frame(tenant_slug: &str, r: &AuditRow) -> Vec<u8> {
    // Facility 13 (log audit); severity 4 (warning) for denials and failures, 6 (info) otherwise.
    let severity = if r.decision.as_deref() == Some("deny") || r.outcome == "failed" {
        4
    } else {
        6
    };
    let mut sd = format!("[{SD_ID}");
    let mut param = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            sd.push_str(&format!(" {k}=\"{}\"", sd_escape(v)));
        }
    };
    let seq = r.seq.to_string();
    param("tenant", Some(tenant_slug));
    param("seq", Some(&seq));
    param("id", Some(&r.event_id));
    param("category", Some(&r.category));
    param("action", Some(&r.action));
    param("actor", r.actor.as_deref());
    param("server", r.server.as_deref());
    param("target", r.target.as_deref());
    param("decision", r.decision.as_deref());
    param("outcome", Some(&r.outcome));
    sd.push(']');
    // MSGID is at most 32 printable characters.
    let msgid: String = r
        .action
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    let msg = format!(
        "<{}>1 {} portcullis portcullis - {} {} {}",
        13 * 8 + severity,
        export::time_micros(r.at),
        if msgid.is_empty() { "-" } else { &msgid },
        sd,
        export::view(r)
    );
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend(msg.into_bytes());
    out
}

fn roots(ca_pem: Option<&str>) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
                store.add(cert).map_err(|e| e.to_string())?;
            }
            if store.is_empty() {
                return Err("no PEM certificate in it".into());
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(cert);
            }
        }
    }
    Ok(store)
}

/// Sends `rows` to the destination; Ok once the receiver took them.
async fn send(
    client: &reqwest::Client,
    stored_secret: Option<zeroize::Zeroizing<Vec<u8>>>,
    tenant_slug: &str,
    d: &SiemRow,
    rows: &[AuditRow],
) -> Result<(), String> {
    let settings: Value = serde_json::from_str(&d.settings).map_err(|e| e.to_string())?;
    let secret = || -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
        stored_secret
            .clone()
            .ok_or_else(|| "no secret is stored".to_owned())
    };
    match d.kind.as_str() {
        "syslog" => {
            let host = settings["host"].as_str().unwrap_or_default();
            let port = u16::try_from(settings["port"].as_u64().unwrap_or(0)).unwrap_or(0);
            let mut payload = Vec::new();
            for r in rows {
                payload.extend(syslog_frame(tenant_slug, r));
            }
            let tcp = tokio::net::TcpStream::connect((host, port))
                .await
                .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
            if settings["tls"].as_bool() == Some(true) {
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots(settings["ca_pem"].as_str())?)
                .with_no_client_auth();
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| e.to_string())?;
                let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {host}:{port} failed: {e}"))?;
                tls.write_all(&payload).await.map_err(|e| e.to_string())?;
                tls.flush().await.map_err(|e| e.to_string())?;
                tls.shutdown().await.map_err(|e| e.to_string())?;
            } else {
                let mut tcp = tcp;
                tcp.write_all(&payload).await.map_err(|e| e.to_string())?;
                tcp.flush().await.map_err(|e| e.to_string())?;
                tcp.shutdown().await.map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        "webhook" => {
            use hmac::Mac;
            let body = json!({
                "tenant": tenant_slug,
                "events": rows.iter().map(export::view).collect::<Vec<_>>(),
            })
            .to_string();
            let ts = (now_micros() / 1_000_000).to_string();
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret()?)
                .map_err(|e| e.to_string())?;
            mac.update(ts.as_bytes());
            mac.update(b".");
            mac.update(body.as_bytes());
            let sig = hex::encode(mac.finalize().into_bytes());
            let res = client
                .post(settings["url"].as_str().unwrap_or_default())
                .header("content-type", "application/json")
                .header("x-portcullis-timestamp", &ts)
                .header("x-portcullis-signature", format!("sha256={sig}"))
                .body(body)
                .send()
                .await
                .map_err(|e| format!("the webhook is unreachable: {e}"))?;
            if res.status().is_success() {
                Ok(())
            } else {
                Err(format!("the webhook answered {}", res.status()))
            }
        }
        "splunk_hec" => {
            let token = zeroize::Zeroizing::new(
                String::from_utf8(secret()?.to_vec()).map_err(|e| e.to_string())?,
            );
            let mut body = String::new();
            for r in rows {
                let seconds = format!("{}.{:06}", r.at / 1_000_000, r.at % 1_000_000);
                body.push_str(
                    &json!({"time": seconds, "host": "portcullis", "source": tenant_slug,
                        "sourcetype": "portcullis:audit", "event": export::view(r)})
                    .to_string(),
                );
                body.push('\n');
            }
            let res = client
                .post(settings["url"].as_str().unwrap_or_default())
                .header("authorization", format!("Splunk {}", token.as_str()))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| format!("the HEC endpoint is unreachable: {e}"))?;
            if res.status().is_success() {
                Ok(())
            } else {
                Err(format!("the HEC endpoint answered {}", res.status()))
            }
        }
        other => Err(format!("unknown destination kind {other}")),
    }
}

/// One destination's next batch: sent, then the cursor moved. Returns the new cursor, `None`
/// when there was nothing to send.
async fn deliver_once(
    store: &Store,
    client: &reqwest::Client,
    vault: &crate::vault::Vault,
    tenant_slug: &str,
    d: &SiemRow,
) -> Result<Option<i64>, String> {
    let q = AuditQuery {
        after_seq: Some(d.cursor_seq),
        ascending: true,
        limit: BATCH,
        ..Default::default()
    };
    let rows = store
        .search_audit(&d.tenant_id, &q)
        .await
        .map_err(|e| e.to_string())?;
    let Some(last) = rows.last() else {
        return Ok(None);
    };
    let secret = open_secret(store, vault, d).await?;
    tokio::time::timeout(SEND_TIMEOUT, send(client, secret, tenant_slug, d, &rows))
        .await
        .map_err(|_| "the receiver did not take the batch in time".to_owned())??;
    store
        .siem_delivered(&d.tenant_id, &d.destination_id, last.seq, rows.len() as i64)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(last.seq))
}

/// Most batches one destination gets per round (others' turns come between).
const BATCHES_PER_ROUND: usize = 20;

/// The delivery worker: every `every`, each enabled destination of each tenant gets what it
/// has not taken, batch after batch; failing ones wait out their backoff.
pub fn spawn(
    store: Store,
    vault: Arc<crate::vault::Vault>,
    client: reqwest::Client,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff: HashMap<String, (Instant, Duration)> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let Ok(tenants) = store.list_tenants().await else {
                continue;
            };
            for t in tenants {
                let Ok(dests) = store.list_siem(&t.tenant_id).await else {
                    continue;
                };
                for d in dests.into_iter().filter(|d| d.enabled) {
                    if backoff
                        .get(&d.destination_id)
                        .is_some_and(|(until, _)| Instant::now() < *until)
                    {
                        continue;
                    }
                    let mut current = d.clone();
                    for _ in 0..BATCHES_PER_ROUND {
                        if *shutdown.borrow() {
                            return;
                        }
                        match deliver_once(&store, &client, &vault, &t.slug, &current).await {
                            Ok(None) => {
                                backoff.remove(&d.destination_id);
                                break;
                            }
                            Ok(Some(cursor)) => {
                                backoff.remove(&d.destination_id);
                                current.cursor_seq = cursor;
                                // Deleted or paused meanwhile: stop here.
                                let still = store.list_siem(&t.tenant_id).await.is_ok_and(|l| {
                                    l.iter()
                                        .any(|x| x.destination_id == d.destination_id && x.enabled)
                                });
                                if !still {
                                    break;
                                }
                            }
                            Err(e) => {
                                let wait = backoff
                                    .get(&d.destination_id)
                                    .map_or(every, |(_, w)| (*w * 2).min(Duration::from_secs(300)));
                                backoff.insert(
                                    d.destination_id.clone(),
                                    (Instant::now() + wait, wait),
                                );
                                tracing::warn!(destination = %d.name, error = %e, retry_in_s = wait.as_secs(), "audit delivery failed");
                                let _ =
                                    store.siem_failed(&t.tenant_id, &d.destination_id, &e).await;
                                break;
                            }
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syslog_frame_is_octet_counted_rfc5424_with_escaped_structured_data() {
        let mut r = super::export::tests::row();
        r.target = Some(r#"a "quoted" ] \ name"#.into());
        let frame = String::from_utf8(syslog_frame("acme", &r)).unwrap();
        let (len, msg) = frame.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert!(msg.starts_with("<110>1 2026-11-18T"), "{msg}");
        assert!(msg.contains(
            " portcullis portcullis - tools/call [portcullis@32473 tenant=\"acme\" seq=\"7\""
        ));
        assert!(msg.contains(r#"target="a \"quoted\" \] \\ name""#), "{msg}");
    }
}
