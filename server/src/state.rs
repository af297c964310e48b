//! The one application state every handler and server function reaches, and the public URLs
//! the server tells people about.

use crate::config::Scheme;
use crate::ops::Metrics;
use crate::store::Store;
use crate::tenancy::Tenancy;
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, FromRef)]
pub struct AppState {
    pub store: Store,
    pub tenancy: Arc<Tenancy>,
    pub gateway: Arc<crate::gateway::Gateway>,
    pub urls: Urls,
    pub leptos_options: LeptosOptions,
    pub metrics: Arc<Metrics>,
    pub reveals: Arc<Reveals>,
    /// Whether session cookies are marked Secure (https, or a *.localhost base domain).
    pub secure_cookies: bool,
    /// The master key: seals secrets kept at rest (IdP client secrets).
    pub keys: Arc<crate::keys::MasterKey>,
    /// The vault: secrets under per-tenant data keys (upstream credentials).
    pub vault: Arc<crate::vault::Vault>,
    /// Notifications by mail (`None`: no SMTP configured).
    #[from_ref(skip)]
    pub mailer: Option<crate::mail::Mailer>,
    /// IdP discovery documents and keys, per tenant.
    pub sso: Arc<crate::sso::SsoCache>,
    /// The durable audit log's writer.
    pub audit: crate::audit::Audit,
    /// Between SIEM deliveries (and the first retry of a failing receiver).
    pub siem_interval: std::time::Duration,
    /// Between anomaly scans.
    #[from_ref(skip)]
    pub signal_interval: std::time::Duration,
    /// OAuth client metadata documents may come from private addresses (tests only).
    #[from_ref(skip)]
    pub cimd_allow_private: bool,
}

/// Builds the URLs users and MCP clients reach: `{scheme}://{tenant}.{base}{:port}`.
#[derive(Clone, Debug)]
pub struct Urls {
    pub scheme: Scheme,
    pub base_domain: String,
    /// `None` when it is the scheme's default port.
    pub port: Option<u16>,
}

impl AppState {
    /// Rebuilds this replica's snapshots at once after a change it made itself (other replicas
    /// follow through the change counters).
    pub async fn refresh_snapshots(&self) -> crate::store::Result<()> {
        self.tenancy.refresh(&self.store).await?;
        self.gateway.refresh(&self.store, &self.tenancy).await?;
        Ok(())
    }
}

impl Urls {
    pub fn new(scheme: Scheme, base_domain: String, port: u16) -> Self {
        let default = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        Self {
            scheme,
            base_domain,
            port: (port != default).then_some(port),
        }
    }

    fn origin(&self, host: &str) -> String {
        match self.port {
            Some(p) => format!("{}://{host}:{p}", self.scheme.as_str()),
            None => format!("{}://{host}", self.scheme.as_str()),
        }
    }

    pub fn platform(&self) -> String {
        format!("{}/", self.origin(&self.base_domain))
    }

    pub fn tenant(&self, slug: &str) -> String {
        self.origin(&format!("{slug}.{}", self.base_domain))
    }

    pub fn tenant_console(&self, slug: &str) -> String {
        format!("{}/admin", self.tenant(slug))
    }

    pub fn tenant_gateway(&self, slug: &str) -> String {
        format!("{}/mcp/", self.tenant(slug))
    }
}

/// One-time reveals: a secret created by a form (a new tenant's admin token) is held here, in
/// memory only, until the page that shows it is rendered once, at most five minutes. It never
/// goes into the session record, which the database stores.
#[derive(Default, Debug)]
pub struct Reveals {
    inner: Mutex<HashMap<String, (app::api::Reveal, Instant)>>,
}

const REVEAL_TTL: Duration = Duration::from_secs(300);

impl Reveals {
    pub fn put(&self, session_id: String, reveal: app::api::Reveal) {
        if let Ok(mut m) = self.inner.lock() {
            m.retain(|_, (_, at)| at.elapsed() < REVEAL_TTL);
            m.insert(session_id, (reveal, Instant::now()));
        }
    }

    /// Takes the session's pending reveal if it is still fresh.
    pub fn take(&self, session_id: &str) -> Option<app::api::Reveal> {
        let mut m = self.inner.lock().ok()?;
        let (reveal, at) = m.remove(session_id)?;
        (at.elapsed() < REVEAL_TTL).then_some(reveal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_omit_default_ports() {
        let u = Urls::new(Scheme::Http, "localhost".into(), 8080);
        assert_eq!(u.tenant_console("acme"), "http://acme.localhost:8080/admin");
        assert_eq!(u.platform(), "http://localhost:8080/");
        let u = Urls::new(Scheme::Https, "mcp.example.com".into(), 443);
        assert_eq!(
            u.tenant_gateway("acme"),
            "https://acme.mcp.example.com/mcp/"
        );
    }
}
