//! The console's Credentials page: the tenant's vault and the servers' upstream credentials,
//! and its forms (`credential_set`, `credential_delete`, `vault_rotate`), through the same
//! services as the API (`crate::servers`, `crate::vault`).

use super::{internal, Backend};
use crate::tenants::format_time;
use app::api::{BackendError, CredentialsView, IdentityForm, ServerCredentialView};

impl Backend {
    pub(super) async fn credentials_view(
        &self,
        tenant: &crate::tenancy::Tenant,
    ) -> Result<CredentialsView, BackendError> {
        let st = &self.state;
        let tid = &tenant.tenant_id;
        let keys = st
            .store
            .vault_keys(tid)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|k| {
                (
                    k.key_id,
                    format_time(k.created_at),
                    k.retired_at.map(format_time).unwrap_or_default(),
                    k.retired_at.is_none(),
                )
            })
            .collect();
        let secrets = st.store.vault_secrets(tid).await.map_err(internal)?.len();
        let mut servers = Vec::new();
        for row in st.store.list_servers(tid).await.map_err(internal)? {
            let view = crate::servers::credential_view(&st.store, tid, &row.slug, &st.vault)
                .await
                .map_err(internal)?;
            servers.push(ServerCredentialView {
                slug: row.slug,
                name: row.name,
                transport: row.transport,
                kind: view.as_ref().map(|v| v.kind.clone()).unwrap_or_default(),
                header: view.as_ref().map(|v| v.header.clone()).unwrap_or_default(),
                updated_at: view.map(|v| v.updated_at).unwrap_or_default(),
                connected: st
                    .store
                    .server_connections(&tenant.tenant_id, &row.server_id)
                    .await
                    .map_err(internal)?
                    .into_iter()
                    .map(|c| (c.user_id, c.email, c.kind, format_time(c.created_at)))
                    .collect(),
            });
        }
        Ok(CredentialsView {
            kek_fingerprint: st.keys.fingerprint(),
            keys,
            secrets,
            servers,
        })
    }

    /// The Credentials page's forms: the flash message, or why nothing changed.
    pub(super) async fn credential_action(
        &self,
        tenant: &crate::tenancy::Tenant,
        admin: &crate::store::UserRow,
        form: &IdentityForm,
    ) -> Result<Result<String, String>, BackendError> {
        use crate::servers::CredentialError;
        let st = &self.state;
        let tid = &tenant.tenant_id;
        Ok(match form.op.as_str() {
            "credential_set" => {
                let input = crate::servers::CredentialInput {
                    kind: form.kind.clone(),
                    header: Some(form.header.clone()).filter(|h| {
                        !h.trim().is_empty()
                            && matches!(form.kind.as_str(), "header" | "user_header")
                    }),
                    env: Some(form.header.clone())
                        .filter(|h| !h.trim().is_empty() && form.kind == "env"),
                    value: form.secret_value.clone(),
                    client_id: Some(form.client_id.clone())
                        .filter(|c| !c.trim().is_empty() && form.kind == "oauth"),
                    scopes: Some(form.scopes.clone())
                        .filter(|c| !c.trim().is_empty() && form.kind == "oauth"),
                    authorization_server: Some(form.issuer.clone())
                        .filter(|c| !c.trim().is_empty() && form.kind == "oauth"),
                };
                match crate::servers::set_credential(&st.vault, &st.store, tid, &form.slug, &input)
                    .await
                {
                    Ok(v) => Ok(format!(
                        "Credential of {} stored in the vault (sent in {}).",
                        form.slug, v.header
                    )),
                    Err(CredentialError::Invalid(m)) => Err(format!("Not stored: {m}.")),
                    Err(CredentialError::NotFound) => Err("No such server.".into()),
                    Err(e) => return Err(internal(e)),
                }
            }
            "credential_delete" => {
                match crate::servers::delete_credential(&st.vault, &st.store, tid, &form.slug).await
                {
                    Ok(true) => Ok(format!("Credential of {} removed.", form.slug)),
                    Ok(false) | Err(CredentialError::NotFound) => {
                        Err("No credential to remove.".into())
                    }
                    Err(e) => return Err(internal(e)),
                }
            }
            // An admin ends a user's own connection to a per-user server.
            "connection_end" => {
                let row = match crate::domain::ServerSlug::parse(&form.slug) {
                    Ok(s) => st.store.server_by_slug(tid, &s).await.map_err(internal)?,
                    Err(_) => None,
                };
                let user = st.store.user(tid, &form.user_id).await.map_err(internal)?;
                match (row, user) {
                    (Some(row), Some(user)) => match crate::connections::disconnect(
                        st,
                        tenant,
                        &row,
                        &user.user_id,
                        &user.email,
                        crate::connections::EndedBy::Admin(&admin.user_id, &admin.email),
                    )
                    .await
                    .map_err(internal)?
                    {
                        Some(e) => Ok(format!(
                            "{}'s connection to {} ended{}.",
                            user.email,
                            row.slug,
                            match e.upstream_revocation.as_str() {
                                "revoked" => " and revoked upstream",
                                "failed" => " (the upstream could not be reached to revoke it)",
                                _ => "",
                            }
                        )),
                        None => Err("No such connection.".into()),
                    },
                    _ => Err("No such connection.".into()),
                }
            }
            "vault_rotate" => match st.vault.rotate_data_key(&st.store, tid).await {
                Ok((key, n)) => Ok(format!(
                    "Data key {key} is active; {n} secret(s) re-encrypted under it."
                )),
                Err(e) => return Err(internal(e)),
            },
            other => Err(format!("Unknown form {other:?}.")),
        })
    }
}
