//! Tenant lifecycle, shared by the CLI, the JSON API and the platform console so that all three
//! apply the same rules.

use crate::domain::{DisplayName, Email, NewToken, TenantSlug, TokenKind};
use crate::store::{Store, StoreError, TenantRow};
use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// A field failed to parse; the message names the field and the rule.
    #[error("{0}")]
    Invalid(String),
    #[error("a tenant with slug {0:?} already exists")]
    Exists(String),
    #[error(transparent)]
    Store(StoreError),
}

/// A new tenant and its first admin's token, which exists only here: the store keeps its hash.
pub struct CreatedTenant {
    pub tenant: TenantRow,
    pub admin_email: String,
    pub admin_token: SecretString,
}

/// Parses the input, then creates the tenant, its first admin and a bootstrap admin token.
/// Bad input changes nothing.
pub async fn create(
    store: &Store,
    slug: &str,
    name: &str,
    admin_email: &str,
) -> Result<CreatedTenant, TenantError> {
    let slug = TenantSlug::parse(slug).map_err(|e| TenantError::Invalid(e.0))?;
    let name =
        DisplayName::parse(name).map_err(|e| TenantError::Invalid(format!("tenant {}", e.0)))?;
    let email = Email::parse(admin_email)
        .map_err(|e| TenantError::Invalid(format!("admin email: {}", e.0)))?;
    let token = NewToken::generate(TokenKind::TenantAdmin);
    let tenant = store
        .create_tenant(&slug, &name, &email, &token.hash)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => TenantError::Exists(slug.to_string()),
            other => TenantError::Store(other),
        })?;
    tracing::info!(tenant.id = %tenant.tenant_id, tenant.slug = %tenant.slug, "tenant created");
    Ok(CreatedTenant {
        tenant,
        admin_email: email.as_str().to_owned(),
        admin_token: token.plaintext,
    })
}

/// RFC 3339 UTC (seconds) for display and JSON.
pub fn format_time(micros: i64) -> String {
    let nanos = i128::from(micros) * 1000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.replace_nanosecond(0)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_format_as_rfc3339_utc() {
        assert_eq!(super::format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            super::format_time(1_700_000_000_123_456),
            "2023-11-14T22:13:20Z"
        );
    }
}
