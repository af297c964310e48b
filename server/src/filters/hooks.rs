//! External filter hooks: a company plugs its own DLP into the gateway. Each answer of
//! tools/call, resources/read and prompts/get (after the built-in filters, so a hook never
//! receives what the tenant's own policy redacts) is POSTed to every hook that covers the
//! server, in order:
//!
//! ```text
//! POST <url>
//! content-type: application/json
//! x-portcullis-hook: <hook id>
//! x-portcullis-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//!
//! {"hook": "<id>", "tenant": "<slug>", "server": "<slug>", "method": "tools/call",
//!  "tool": "<name or uri>", "result": { …the MCP result… }}
//! ```
//!
//! It answers `{"decision": "allow"}`, `{"decision": "deny", "reason": "…"}` or
//! `{"decision": "modify", "result": {…}}` (the result the client gets instead; it must be a
//! JSON object). A hook that does not answer within its timeout, answers with a non-2xx status
//! or with anything else fails: a `closed` hook (the default) then blocks the answer, an
//! `open` one lets it pass. Every call is in the audit record (`detail.hooks`: id, decision,
//! milliseconds, the failure), never the answer itself.

use hmac::Mac;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// One hook as the gateway holds it (the secret from the vault).
pub struct Hook {
    pub id: String,
    /// A server's slug or `*`.
    pub scope: String,
    pub url: url::Url,
    pub timeout: Duration,
    pub fail_closed: bool,
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("id", &self.id)
            .field("scope", &self.scope)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// Largest answer a hook may return (a modified result).
const MAX_REPLY: usize = 8 * 1024 * 1024;

/// What one hook decided (for the record).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HookCall {
    pub hook: String,
    /// allow, deny, modify, or failed.
    pub decision: &'static str,
    pub ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a failure: whether the answer passed (fail-open) or was blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_open: Option<bool>,
}

#[derive(Deserialize)]
struct Reply {
    decision: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    result: Option<Value>,
}

/// The signature header's value for `body` at `t` (unix seconds).
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Where the hook's decision leaves the answer.
pub enum Verdict {
    Pass,
    /// Blocked: the message for the client.
    Block(String),
}

/// Runs the hooks over one answer's result, in order; a modification is what the next hook
/// (and the client) sees. The calls made, for the record.
pub async fn run(
    client: &reqwest::Client,
    hooks: &[std::sync::Arc<Hook>],
    context: (&str, &str, &str, &str),
    result: &mut Value,
) -> (Verdict, Vec<HookCall>) {
    let (tenant, server, method, tool) = context;
    let mut calls = Vec::new();
    for h in hooks {
        let started = Instant::now();
        let outcome = call(client, h, tenant, server, method, tool, result).await;
        let ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok(reply) => match reply.decision.as_str() {
                "allow" => calls.push(HookCall {
                    hook: h.id.clone(),
                    decision: "allow",
                    ms,
                    reason: None,
                    error: None,
                    failed_open: None,
                }),
                "deny" => {
                    let reason: String = reply
                        .reason
                        .unwrap_or_else(|| "denied by policy".into())
                        .chars()
                        .take(200)
                        .collect();
                    calls.push(HookCall {
                        hook: h.id.clone(),
                        decision: "deny",
                        ms,
                        reason: Some(reason.clone()),
                        error: None,
                        failed_open: None,
                    });
                    return (
                        Verdict::Block(format!(
                            "The answer was blocked by the company's filter: {reason}"
                        )),
                        calls,
                    );
                }
                "modify" => match reply.result {
                    Some(v @ Value::Object(_)) => {
                        *result = v;
                        calls.push(HookCall {
                            hook: h.id.clone(),
                            decision: "modify",
                            ms,
                            reason: None,
                            error: None,
                            failed_open: None,
                        });
                    }
                    _ => {
                        if let Some(v) = failed(
                            h,
                            ms,
                            "a modify decision without a result object",
                            &mut calls,
                        ) {
                            return (v, calls);
                        }
                    }
                },
                other => {
                    let why = format!(
                        "an unknown decision {:?}",
                        other.chars().take(40).collect::<String>()
                    );
                    if let Some(v) = failed(h, ms, &why, &mut calls) {
                        return (v, calls);
                    }
                }
            },
            Err(why) => {
                if let Some(v) = failed(h, ms, &why, &mut calls) {
                    return (v, calls);
                }
            }
        }
    }
    (Verdict::Pass, calls)
}

fn failed(h: &Hook, ms: u64, why: &str, calls: &mut Vec<HookCall>) -> Option<Verdict> {
    tracing::warn!(hook.id = %h.id, error = %why, fail_closed = h.fail_closed, "a filter hook failed");
    calls.push(HookCall {
        hook: h.id.clone(),
        decision: "failed",
        ms,
        reason: None,
        error: Some(why.to_owned()),
        failed_open: Some(!h.fail_closed),
    });
    h.fail_closed.then(|| {
        Verdict::Block(
            "The answer was blocked: the company's filter could not check it (it fails closed)."
                .into(),
        )
    })
}

async fn call(
    client: &reqwest::Client,
    h: &Hook,
    tenant: &str,
    server: &str,
    method: &str,
    tool: &str,
    result: &Value,
) -> Result<Reply, String> {
    let body = serde_json::to_vec(&json!({
        "hook": h.id, "tenant": tenant, "server": server, "method": method, "tool": tool,
        "result": result,
    }))
    .map_err(|e| e.to_string())?;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let send = client
        .post(h.url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-portcullis-hook", &h.id)
        .header("x-portcullis-signature", signature(&h.secret, t, &body))
        .body(body)
        .timeout(h.timeout)
        .send();
    let res = tokio::time::timeout(h.timeout, send)
        .await
        .map_err(|_| format!("no answer within {} ms", h.timeout.as_millis()))?
        .map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {} ms", h.timeout.as_millis())
            } else {
                format!("unreachable ({})", e.without_url())
            }
        })?;
    let status = res.status();
    if !status.is_success() {
        return Err(format!("answered HTTP {}", status.as_u16()));
    }
    if res.content_length().is_some_and(|n| n as usize > MAX_REPLY) {
        return Err("answered with more than 8 MiB".into());
    }
    let bytes = tokio::time::timeout(h.timeout, res.bytes())
        .await
        .map_err(|_| format!("no answer within {} ms", h.timeout.as_millis()))?
        .map_err(|e| format!("the answer broke off ({})", e.without_url()))?;
    if bytes.len() > MAX_REPLY {
        return Err("answered with more than 8 MiB".into());
    }
    serde_json::from_slice::<Reply>(&bytes)
        .map_err(|_| "answered with something other than a decision".into())
}

// ---- administration ----------------------------------------------------------------------

/// A new hook as the API takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHook {
    pub url: String,
    /// A server's slug; absent: every server.
    #[serde(default)]
    pub server: Option<String>,
    /// 100 to 10,000; default 2,000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `closed` (default) or `open`.
    #[serde(default)]
    pub fail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HookView {
    pub id: String,
    pub server: String,
    pub url: String,
    pub timeout_ms: i64,
    pub fail: String,
    pub created_at: String,
}

pub fn view(r: &crate::store::FilterHookRow) -> HookView {
    HookView {
        id: r.hook_id.clone(),
        server: r.server_slug.clone(),
        url: r.url.clone(),
        timeout_ms: r.timeout_ms,
        fail: r.fail_mode.clone(),
        created_at: crate::tenants::format_time(r.created_at),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such server")]
    NotFound,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
}

/// The vault slot of a hook's signing secret.
pub fn secret_slot(hook_id: &str) -> crate::vault::Slot<'_> {
    crate::vault::Slot {
        table: "filter_hook",
        row: hook_id,
        name: "secret",
    }
}

/// Adds a hook; its signing secret (returned once) goes to the vault.
pub async fn add(
    store: &crate::store::Store,
    vault: &crate::vault::Vault,
    tenant_id: &str,
    new: &NewHook,
) -> Result<(HookView, Zeroizing<String>), HookError> {
    let url =
        url::Url::parse(new.url.trim()).map_err(|_| HookError::Invalid("url: not a URL".into()))?;
    let loopback = matches!(
        url.host_str(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(HookError::Invalid(
                "url: must be https (http only to this machine)".into(),
            ))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(HookError::Invalid(
            "url: no credentials in the URL (requests are signed)".into(),
        ));
    }
    let timeout_ms = new.timeout_ms.unwrap_or(2000);
    if !(100..=10_000).contains(&timeout_ms) {
        return Err(HookError::Invalid(
            "timeout_ms: between 100 and 10000".into(),
        ));
    }
    let fail = match new.fail.as_deref().unwrap_or("closed") {
        f @ ("closed" | "open") => f.to_owned(),
        other => {
            return Err(HookError::Invalid(format!(
                "fail: closed or open, not {other:?}"
            )))
        }
    };
    let scope = match new.server.as_deref().map(str::trim) {
        None | Some("") | Some("*") => "*".to_owned(),
        Some(s) => {
            let slug = crate::domain::ServerSlug::parse(s).map_err(|_| HookError::NotFound)?;
            store
                .server_by_slug(tenant_id, &slug)
                .await?
                .ok_or(HookError::NotFound)?
                .slug
        }
    };
    let row = crate::store::FilterHookRow {
        hook_id: format!("hook_{}", uuid::Uuid::now_v7().simple()),
        server_slug: scope,
        url: url.to_string(),
        timeout_ms: timeout_ms as i64,
        fail_mode: fail,
        created_at: crate::store::now_micros(),
    };
    let mut raw = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut raw[..]);
    let secret = Zeroizing::new(format!("whsec_{}", hex::encode(raw)));
    // The secret first: a hook row without its secret would fail every call.
    vault
        .put(
            store,
            tenant_id,
            secret_slot(&row.hook_id),
            &secret,
            "servers",
        )
        .await?;
    store.insert_filter_hook(tenant_id, &row).await?;
    Ok((view(&row), secret))
}

/// Removes a hook and its secret; whether there was one.
pub async fn remove(
    store: &crate::store::Store,
    vault: &crate::vault::Vault,
    tenant_id: &str,
    hook_id: &str,
) -> Result<bool, HookError> {
    let existed = store.delete_filter_hook(tenant_id, hook_id).await?;
    if existed {
        vault
            .delete(store, tenant_id, secret_slot(hook_id), "servers")
            .await?;
    }
    Ok(existed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_covers_time_and_body() {
        let a = super::signature("whsec_x", 1_700_000_000, b"{}");
        assert!(a.starts_with("t=1700000000,v1=") && a.len() == "t=1700000000,v1=".len() + 64);
        assert_ne!(a, super::signature("whsec_x", 1_700_000_001, b"{}"));
        assert_ne!(a, super::signature("whsec_x", 1_700_000_000, b"{ }"));
        assert_ne!(a, super::signature("whsec_y", 1_700_000_000, b"{}"));
    }
}
