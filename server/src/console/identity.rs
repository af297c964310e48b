//! The console's and portal's identity and access forms (`identity_action`), and the data the
//! identity pages and the portal show. Every change goes through the same services as the API
//! (`access`, `sso`, `scim`) and refreshes this replica's snapshots before the page reloads.

use super::{flash, internal, session, take_flash, tenant_of, Backend};
use crate::access;
use crate::auth;
use crate::tenants::format_time;
use app::api::{
    BackendError, FlashKind, GrantSummary, GroupSummary, IdentityForm, IdentityView, Matrix,
    PortalServer, PortalState, PortalUser, RegistrySummary, Reveal, SimulationView, SsoView,
    TokenSummary, UserSummary,
};
use http::request::Parts;
use secrecy::ExposeSecret;
use std::collections::BTreeSet;

fn list(raw: &str) -> Vec<String> {
    raw.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The rules field of a form: empty means none; else a JSON list of rules.
fn rules_of(raw: &str) -> Result<Vec<crate::policy::Rule>, String> {
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(raw).map_err(|e| format!("the rules are not a JSON list of rules ({e})"))
}

/// Configuration snippets for the clients people use, for one gateway endpoint.
fn snippets(slug: &str, endpoint: &str) -> Vec<(String, String, String)> {
    let claude = serde_json::json!({
        "mcpServers": { slug: {
            "command": "npx",
            "args": ["-y", "mcp-remote", endpoint, "--header", "Authorization: Bearer ${PORTCULLIS_TOKEN}"],
            "env": { "PORTCULLIS_TOKEN": "<your gateway token>" }
        }}
    });
    let cursor = serde_json::json!({
        "mcpServers": { slug: {
            "url": endpoint,
            "headers": { "Authorization": "Bearer <your gateway token>" }
        }}
    });
    let vscode = serde_json::json!({
        "servers": { slug: {
            "type": "http",
            "url": endpoint,
            "headers": { "Authorization": "Bearer ${input:portcullis-token}" }
        }},
        "inputs": [{
            "type": "promptString", "id": "portcullis-token",
            "description": "Portcullis gateway token", "password": true
        }]
    });
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    vec![
        (
            "Claude Desktop".into(),
            "claude_desktop_config.json (Settings → Developer → Edit Config)".into(),
            pretty(&claude),
        ),
        (
            "Cursor".into(),
            "~/.cursor/mcp.json (or .cursor/mcp.json in a project)".into(),
            pretty(&cursor),
        ),
        (
            "VS Code".into(),
            ".vscode/mcp.json in your workspace".into(),
            pretty(&vscode),
        ),
    ]
}

impl Backend {
    /// Identity and access for the console's pages.
    pub(super) async fn identity_view(
        &self,
        tenant: &crate::tenancy::Tenant,
    ) -> Result<IdentityView, BackendError> {
        let st = &self.state;
        let tid = &tenant.tenant_id;
        let sso = crate::sso::settings(st, tenant).await.map_err(internal)?;
        let users = access::list_users(&st.store, tid).await.map_err(internal)?;
        let groups = access::list_groups(&st.store, tid)
            .await
            .map_err(internal)?;
        let registries = access::list_registries(&st.store, tid)
            .await
            .map_err(internal)?;
        // The matrix: for each server, what each group (and everyone) may call there.
        let mut columns: Vec<String> = vec!["everyone".into()];
        columns.extend(groups.iter().map(|g| format!("group:{}", g.name)));
        let servers: BTreeSet<String> = registries
            .iter()
            .flat_map(|r| r.servers.iter().cloned())
            .collect();
        let rows = servers
            .into_iter()
            .map(|server| {
                let cells = columns
                    .iter()
                    .map(|col| access::matrix_cell(&registries, &server, col))
                    .collect();
                (server, cells)
            })
            .collect();
        Ok(IdentityView {
            redirect_uri: crate::sso::redirect_uri(st, &tenant.slug),
            sso: sso.map(|s| SsoView {
                issuer: s.issuer,
                client_id: s.client_id,
                client_secret_set: s.client_secret_set,
                scopes: s.scopes.join(" "),
                groups_claim: s.groups_claim,
                allowed_domains: s.allowed_domains.join(", "),
            }),
            scim_enabled: crate::scim::token_configured(&st.store, tid)
                .await
                .map_err(internal)?,
            scim_base_url: format!("{}/scim/v2", st.urls.tenant(&tenant.slug)),
            users: users
                .into_iter()
                .map(|u| UserSummary {
                    id: u.id,
                    email: u.email,
                    source: u.source,
                    groups: u.groups,
                    active: u.active,
                    admin: u.admin,
                    last_seen: u.last_seen_at.unwrap_or_default(),
                })
                .collect(),
            groups: groups
                .into_iter()
                .map(|g| GroupSummary {
                    name: g.name,
                    source: g.source,
                    members: g.members,
                })
                .collect(),
            registries: registries
                .into_iter()
                .map(|r| RegistrySummary {
                    slug: r.slug,
                    name: r.name,
                    servers: r.servers,
                    grants: r
                        .grants
                        .into_iter()
                        .map(|g| GrantSummary {
                            id: g.id,
                            subject: g.subject,
                            rules: g.rules_text,
                        })
                        .collect(),
                })
                .collect(),
            matrix: Matrix {
                groups: columns,
                rows,
            },
            limits: st
                .store
                .list_limits(tid)
                .await
                .map_err(internal)?
                .into_iter()
                .map(|l| app::api::LimitView {
                    limits: [
                        l.requests_per_minute.map(|n| format!("{n}/min")),
                        l.concurrent.map(|n| format!("{n} at once")),
                        l.per_day.map(|n| format!("{n}/day")),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", "),
                    id: l.limit_id,
                    subject: l.subject,
                    value: l.value,
                })
                .collect(),
            approval_rules: st
                .store
                .list_approval_rules(tid)
                .await
                .map_err(internal)?
                .into_iter()
                .map(|r| app::api::ApprovalRuleView {
                    summary: format!(
                        "{} tools matching {} on {}, {} s to decide",
                        if r.applies == "always" {
                            "all"
                        } else {
                            "destructive"
                        },
                        r.tool,
                        if r.server == "*" {
                            "any server".to_owned()
                        } else {
                            r.server.clone()
                        },
                        r.timeout_secs
                    ),
                    id: r.rule_id,
                })
                .collect(),
            approvals: st
                .store
                .list_approval_requests(tid)
                .await
                .map_err(internal)?
                .into_iter()
                .map(|a| app::api::ApprovalView {
                    id: a.approval_id,
                    user: a.email,
                    server: a.server,
                    tool: a.tool,
                    arguments: a.arguments,
                    status: a.status,
                    decided_by: a.decided_by.unwrap_or_default(),
                    created_at: format_time(a.created_at),
                })
                .collect(),
            agents: self.agents_view(tenant).await?,
            credentials: self.credentials_view(tenant).await?,
            filters: self.filters_view(tenant).await?,
        })
    }

    /// The portal: who is signed in (any active user of the tenant), what they may use.
    pub(super) async fn portal(&self, parts: &Parts) -> Result<PortalState, BackendError> {
        let tenant = tenant_of(parts)?;
        let session = session(parts)?;
        let csrf = auth::csrf_token(&session).await.map_err(internal)?;
        let flash = take_flash(&session).await?;
        let st = &self.state;
        let sso_enabled = crate::sso::enabled(&st.store, &tenant.tenant_id).await;
        let user = match self.signed_in_user(&session, &tenant).await? {
            None => None,
            Some(u) => {
                let policy = st.gateway.tenant_policy(&tenant.tenant_id);
                let rows = st
                    .store
                    .list_servers(&tenant.tenant_id)
                    .await
                    .map_err(internal)?;
                let connections = st
                    .store
                    .user_connections(&tenant.tenant_id, &u.user_id)
                    .await
                    .map_err(internal)?;
                let mut servers = Vec::new();
                for row in rows {
                    if !policy.reaches(&u.user_id, &row.slug) {
                        continue;
                    }
                    // The tools the gateway knows of for this server (reviewed catalog and
                    // tool lists it has seen), as policy lets this user use them.
                    let mut names: BTreeSet<String> = policy
                        .catalog(&row.slug)
                        .into_iter()
                        .map(|(n, _)| n)
                        .collect();
                    names.extend(st.gateway.observed_tools(&tenant.tenant_id, &row.slug));
                    let known = names.into_iter().map(|name| {
                        let seen = st
                            .gateway
                            .observed_hints(&tenant.tenant_id, &row.slug, &name);
                        let hints = policy.hints(&row.slug, &name, seen);
                        (name, hints)
                    });
                    let (tools, _) = access::split_tools(&policy, &u.user_id, &row.slug, known);
                    let endpoint = format!("{}{}", st.urls.tenant_gateway(&tenant.slug), row.slug);
                    let account = st
                        .gateway
                        .per_user(&tenant.tenant_id, &row.slug)
                        .map(|p| p.mode.kind().to_owned())
                        .unwrap_or_default();
                    let connected_since = connections
                        .iter()
                        .find(|c| c.server_id == row.server_id && c.kind == account)
                        .map(|c| format_time(c.created_at))
                        .unwrap_or_default();
                    servers.push(PortalServer {
                        account,
                        connected_since,
                        snippets: snippets(&row.slug, &endpoint),
                        slug: row.slug,
                        name: row.name,
                        description: row.description,
                        endpoint,
                        tools,
                    });
                }
                let tokens = st
                    .store
                    .list_user_tokens(&tenant.tenant_id, &u.user_id)
                    .await
                    .map_err(internal)?
                    .into_iter()
                    .map(|t| TokenSummary {
                        id: t.api_token_id,
                        label: t.label,
                        created_at: format_time(t.created_at),
                        last_used_at: t
                            .last_used_at
                            .map(format_time)
                            .unwrap_or_else(|| "never".into()),
                        expires_at: t
                            .expires_at
                            .map(format_time)
                            .unwrap_or_else(|| "never".into()),
                    })
                    .collect();
                let new_token = match session.id().and_then(|id| st.reveals.take(&id.to_string())) {
                    Some(Reveal::Secret(t)) => Some(t),
                    _ => None,
                };
                let apps = st
                    .store
                    .list_user_grants(&tenant.tenant_id, &u.user_id)
                    .await
                    .map_err(internal)?
                    .into_iter()
                    .map(|(id, client, server, since)| app::api::AppGrant {
                        id,
                        client,
                        server,
                        since: format_time(since),
                    })
                    .collect();
                Some(PortalUser {
                    email: u.email,
                    is_admin: u.is_admin,
                    servers,
                    tokens,
                    new_token,
                    apps,
                })
            }
        };
        Ok(PortalState {
            tenant_name: tenant.name.clone(),
            csrf,
            flash,
            sso_enabled,
            user,
        })
    }

    pub(super) fn reveal(
        &self,
        session: &tower_sessions::Session,
        r: Reveal,
    ) -> Result<(), BackendError> {
        let id = session.id().ok_or_else(|| internal("session without id"))?;
        self.state.reveals.put(id.to_string(), r);
        Ok(())
    }

    pub(super) async fn identity(
        &self,
        parts: &Parts,
        csrf: &str,
        form: IdentityForm,
    ) -> Result<bool, BackendError> {
        // The portal's one form: any signed-in user makes a gateway token for themselves.
        if form.op == "portal_token" {
            let (tenant, session, user) = self.portal_form(parts, csrf).await?;
            let label = form.label.trim();
            let label = if label.is_empty() { "portal" } else { label };
            let (_, token) = crate::servers::create_user_token(
                &self.state.store,
                &tenant.tenant_id,
                &user.email,
                label,
            )
            .await
            .map_err(internal)?;
            self.state.refresh_snapshots().await.map_err(internal)?;
            self.reveal(&session, Reveal::Secret(token.expose_secret().to_owned()))?;
            return Ok(true);
        }
        // A user sets, or ends, their own account for a per-user server.
        if form.op == "portal_set_secret" || form.op == "portal_disconnect" {
            let (tenant, session, user) = self.portal_form(parts, csrf).await?;
            let st = &self.state;
            let row = match crate::domain::ServerSlug::parse(&form.slug) {
                Ok(s) => st
                    .store
                    .server_by_slug(&tenant.tenant_id, &s)
                    .await
                    .map_err(internal)?,
                Err(_) => None,
            };
            let Some(row) = row.filter(|r| {
                st.gateway
                    .tenant_policy(&tenant.tenant_id)
                    .reaches(&user.user_id, &r.slug)
            }) else {
                flash(&session, FlashKind::Error, "No such server.").await?;
                return Ok(false);
            };
            if form.op == "portal_set_secret" {
                return match crate::connections::set_static(
                    st,
                    &tenant,
                    &row,
                    &user,
                    &form.secret_value,
                )
                .await
                {
                    Ok(()) => {
                        flash(
                            &session,
                            FlashKind::Info,
                            format!("Your secret for {} is stored.", row.name),
                        )
                        .await?;
                        Ok(true)
                    }
                    Err(crate::connections::ConnectionError::Invalid(m)) => {
                        flash(&session, FlashKind::Error, format!("Not stored: {m}.")).await?;
                        Ok(false)
                    }
                    Err(e) => Err(internal(e)),
                };
            }
            return match crate::connections::disconnect(
                st,
                &tenant,
                &row,
                &user.user_id,
                &user.email,
                crate::connections::EndedBy::User,
            )
            .await
            .map_err(internal)?
            {
                Some(ended) => {
                    let upstream = match ended.upstream_revocation.as_str() {
                        "revoked" => " and revoked upstream",
                        "failed" => " (the upstream could not be reached to revoke it)",
                        _ => "",
                    };
                    flash(
                        &session,
                        FlashKind::Info,
                        format!("Your account for {} is disconnected{upstream}.", row.name),
                    )
                    .await?;
                    Ok(true)
                }
                None => {
                    flash(&session, FlashKind::Error, "Nothing was connected.").await?;
                    Ok(false)
                }
            };
        }
        // A user revokes one of their own gateway tokens.
        if form.op == "portal_revoke_token" {
            let (tenant, session, user) = self.portal_form(parts, csrf).await?;
            let st = &self.state;
            let label = st
                .store
                .revoke_user_token_by_id(&tenant.tenant_id, &user.user_id, &form.grant_id)
                .await
                .map_err(internal)?;
            return match label {
                Some(label) => {
                    st.refresh_snapshots().await.map_err(internal)?;
                    st.audit
                        .note(
                            crate::audit::Event::new(
                                &tenant.tenant_id,
                                crate::audit::Category::Security,
                                "token.revoke",
                                "ok",
                            )
                            .by(&user.user_id, &user.email)
                            .target(user.email.clone())
                            .detail(serde_json::json!({"label": label, "via": "portal"})),
                        )
                        .await;
                    flash(&session, FlashKind::Info, format!("Token {label} revoked.")).await?;
                    Ok(true)
                }
                None => {
                    flash(&session, FlashKind::Error, "No such token.").await?;
                    Ok(false)
                }
            };
        }
        // The portal's other form: a user takes back an app's access (an OAuth grant of theirs).
        if form.op == "portal_revoke_app" {
            let (tenant, session, user) = self.portal_form(parts, csrf).await?;
            let st = &self.state;
            let mine = st
                .store
                .list_user_grants(&tenant.tenant_id, &user.user_id)
                .await
                .map_err(internal)?
                .into_iter()
                .any(|(id, ..)| id == form.grant_id);
            let found = if mine {
                st.store
                    .revoke_grant_by_id(&tenant.tenant_id, &form.grant_id)
                    .await
                    .map_err(internal)?
            } else {
                None
            };
            match found {
                Some((client, ..)) => {
                    st.refresh_snapshots().await.map_err(internal)?;
                    st.audit
                        .note(
                            crate::audit::Event::new(
                                &tenant.tenant_id,
                                crate::audit::Category::Security,
                                "oauth.grant_revoke",
                                "ok",
                            )
                            .by(&user.user_id, &user.email)
                            .target(client.clone())
                            .detail(
                                serde_json::json!({"grant_id": form.grant_id, "via": "portal"}),
                            ),
                        )
                        .await;
                    flash(
                        &session,
                        FlashKind::Info,
                        format!("{client} no longer has access."),
                    )
                    .await?;
                    return Ok(true);
                }
                None => {
                    flash(&session, FlashKind::Error, "No such app access.").await?;
                    return Ok(false);
                }
            }
        }
        let (tenant, session, admin) = self.admin_form(parts, csrf).await?;
        let st = &self.state;
        let tid = tenant.tenant_id.clone();
        let result: Result<String, String> = match form.op.as_str() {
            "save_sso" => {
                let settings = crate::sso::IdpSettings {
                    issuer: form.issuer.clone(),
                    client_id: form.client_id.clone(),
                    client_secret: Some(form.client_secret.clone()),
                    scopes: form.scopes.split_whitespace().map(str::to_owned).collect(),
                    groups_claim: if form.groups_claim.trim().is_empty() {
                        "groups".into()
                    } else {
                        form.groups_claim.clone()
                    },
                    allowed_domains: list(&form.allowed_domains),
                };
                match crate::sso::save(st, &tenant, settings).await {
                    Ok(_) => Ok(
                        "Single sign-on saved: the identity provider answered discovery.".into(),
                    ),
                    Err(crate::sso::SsoError::Invalid(m)) => Err(format!("Not saved: {m}.")),
                    Err(e) => return Err(internal(e)),
                }
            }
            "disable_sso" => match crate::sso::disable(st, &tenant).await {
                Ok(()) => Ok("Single sign-on is off.".into()),
                Err(e) => return Err(internal(e)),
            },
            "rotate_scim" => {
                let token = crate::scim::rotate_token(&st.store, &tid)
                    .await
                    .map_err(internal)?;
                self.reveal(&session, Reveal::Secret(token.expose_secret().to_owned()))?;
                Ok("New SCIM token generated; the old one no longer works.".into())
            }
            "set_active" => {
                let active = form.active == "true";
                if form.user_id == admin.user_id && !active {
                    Err("You cannot deactivate yourself.".into())
                } else {
                    match st.store.set_user_active(&tid, &form.user_id, active).await {
                        Ok(()) => {
                            tracing::info!(audit = true, tenant.id = %tid, user.id = %admin.user_id,
                                target.user.id = %form.user_id, active, "user status changed in the console");
                            if !active {
                                if let Some(u) =
                                    st.store.user(&tid, &form.user_id).await.map_err(internal)?
                                {
                                    crate::mail::access_removed(
                                        st,
                                        &tenant,
                                        &u.email,
                                        "deactivated by an administrator",
                                    )
                                    .await;
                                    crate::connections::deprovisioned(
                                        st,
                                        &tenant,
                                        &u.user_id,
                                        &u.email,
                                        "deactivated by an administrator",
                                    )
                                    .await;
                                }
                            }
                            Ok(if active {
                                "User activated."
                            } else {
                                "User deactivated: their tokens and sessions ended."
                            }
                            .into())
                        }
                        Err(crate::store::StoreError::NotFound) => Err("No such user.".into()),
                        Err(e) => return Err(internal(e)),
                    }
                }
            }
            "add_limit" => {
                let num = |s: &str| -> Result<Option<i64>, String> {
                    let s = s.trim();
                    if s.is_empty() {
                        return Ok(None);
                    }
                    s.parse::<i64>()
                        .ok()
                        .filter(|n| (1..=1_000_000).contains(n))
                        .map(Some)
                        .ok_or_else(|| format!("{s:?} is not a number from 1 to 1000000"))
                };
                let parsed = (
                    num(&form.per_minute),
                    num(&form.concurrent),
                    num(&form.per_day),
                );
                match parsed {
                    (Ok(rpm), Ok(conc), Ok(day)) => {
                        let value = form.value.trim();
                        if !crate::gateway::limits::SUBJECTS.contains(&form.subject.as_str()) {
                            Err("Not added: unknown subject.".into())
                        } else if value.is_empty() || value.chars().count() > 200 {
                            Err("Not added: the value must be 1 to 200 characters (or *).".into())
                        } else if rpm.is_none() && conc.is_none() && day.is_none() {
                            Err("Not added: give at least one limit.".into())
                        } else {
                            let row = crate::store::LimitRow {
                                limit_id: uuid::Uuid::now_v7().to_string(),
                                subject: form.subject.clone(),
                                value: value.to_owned(),
                                requests_per_minute: rpm,
                                concurrent: conc,
                                per_day: day,
                            };
                            st.store.create_limit(&tid, &row).await.map_err(internal)?;
                            Ok(format!("Limit added for {} {}.", row.subject, row.value))
                        }
                    }
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                        Err(format!("Not added: {e}."))
                    }
                }
            }
            "approve" | "deny" => {
                let status = if form.op == "approve" {
                    "approved"
                } else {
                    "denied"
                };
                match st
                    .store
                    .decide_approval(&tid, &form.approval_id, status, Some(&admin.email))
                    .await
                    .map_err(internal)?
                {
                    true => Ok(format!("Call {status}.")),
                    false => Err("That request is no longer waiting.".into()),
                }
            }
            "add_approval_rule" => {
                let timeout = form
                    .timeout
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|t| (1..=3600).contains(t));
                let (server, tool) = (form.server.trim(), form.tool.trim());
                if timeout.is_none() {
                    Err("Not added: seconds to wait must be 1 to 3600.".into())
                } else if server.is_empty() || tool.is_empty() || globset::Glob::new(tool).is_err()
                {
                    Err("Not added: give a server (or *) and a tool name or glob.".into())
                } else if form.applies != "destructive" && form.applies != "always" {
                    Err("Not added: unknown choice of calls.".into())
                } else {
                    let row = crate::store::ApprovalRule {
                        rule_id: uuid::Uuid::now_v7().to_string(),
                        server: server.to_owned(),
                        tool: tool.to_owned(),
                        applies: form.applies.clone(),
                        timeout_secs: timeout.unwrap_or(300),
                    };
                    st.store
                        .create_approval_rule(&tid, &row)
                        .await
                        .map_err(internal)?;
                    Ok("Approval rule added.".into())
                }
            }
            "delete_approval_rule" => {
                match st.store.delete_approval_rule(&tid, &form.rule_id).await {
                    Ok(()) => Ok("Approval rule removed.".into()),
                    Err(crate::store::StoreError::NotFound) => Err("No such rule.".into()),
                    Err(e) => return Err(internal(e)),
                }
            }
            "delete_limit" => match st.store.delete_limit(&tid, &form.limit_id).await {
                Ok(()) => Ok("Limit removed.".into()),
                Err(crate::store::StoreError::NotFound) => Err("No such limit.".into()),
                Err(e) => return Err(internal(e)),
            },
            "revoke_user" => match st.store.user(&tid, &form.user_id).await.map_err(internal)? {
                None => Err("No such user.".into()),
                Some(u) => {
                    let mut revoked = crate::servers::revoke_user(&st.store, &tid, &u.email)
                        .await
                        .map_err(internal)?;
                    revoked.upstream = crate::connections::deprovisioned(
                        st,
                        &tenant,
                        &u.user_id,
                        &u.email,
                        "all access revoked by an administrator",
                    )
                    .await;
                    st.audit
                        .note(
                            crate::audit::Event::new(
                                &tid,
                                crate::audit::Category::Security,
                                "access.revoke_user",
                                "ok",
                            )
                            .by(&admin.user_id, &admin.email)
                            .target(u.email.clone())
                            .detail(serde_json::to_value(&revoked).unwrap_or_default()),
                        )
                        .await;
                    crate::mail::revoked(st, &tenant, &revoked);
                    Ok(format!(
                        "Revoked {} gateway token(s) of {} and ended their console sessions.",
                        revoked.tokens.len(),
                        u.email
                    ))
                }
            },
            "create_registry" => {
                let rules = rules_of(&form.rules);
                match rules {
                    Err(m) => Err(format!("Not created: {m}.")),
                    Ok(rules) => {
                        let new = access::NewRegistry {
                            slug: form.slug.clone(),
                            name: (!form.name.trim().is_empty()).then(|| form.name.clone()),
                            description: None,
                            servers: list(&form.servers),
                            grants: list(&form.grants)
                                .into_iter()
                                .map(|subject| access::NewGrant {
                                    subject,
                                    rules: rules.clone(),
                                })
                                .collect(),
                        };
                        match access::create_registry(&st.store, &tid, new).await {
                            Ok(v) => Ok(format!("Registry {} created.", v.slug)),
                            Err(access::AccessError::Store(e)) => return Err(internal(e)),
                            Err(e) => Err(format!("Not created: {e}.")),
                        }
                    }
                }
            }
            "record_catalog" => {
                let row = match crate::domain::ServerSlug::parse(&form.slug) {
                    Ok(slug) => st
                        .store
                        .server_by_slug(&tid, &slug)
                        .await
                        .map_err(internal)?,
                    Err(_) => None,
                };
                match row.map(|r| (r.upstream(), r.slug)) {
                    None => Err("No such server.".into()),
                    Some((Err(e), _)) => return Err(internal(e)),
                    Some((Ok(upstream), slug)) => {
                        let credential =
                            crate::connections::for_discovery(st, &tenant, &slug, &admin).await;
                        let found = match &credential {
                            Ok(c) => crate::gateway::discovery::discover(
                                &st.gateway,
                                &upstream,
                                Default::default(),
                                c.as_deref(),
                                st.gateway.env_secret(&tid, &slug),
                            )
                            .await
                            .map_err(|e| e.to_string()),
                            Err(e) => Err(e.clone()),
                        };
                        match found {
                            Err(e) => Err(format!(
                                "Not recorded: the server could not be reached ({e})."
                            )),
                            Ok(d) => {
                                let tools: Vec<serde_json::Value> =
                                    d.tools.iter().map(access::tool_value).collect();
                                match access::record_catalog(&st.store, &tid, &slug, &tools).await {
                                    Ok(n) => Ok(format!(
                                        "Recorded {n} tools as the reviewed catalog of {slug}."
                                    )),
                                    Err(e) => return Err(internal(e)),
                                }
                            }
                        }
                    }
                }
            }
            "update_registry" => {
                let change = access::RegistryChange {
                    servers: Some(list(&form.servers)),
                    ..Default::default()
                };
                match access::update_registry(&st.store, &tid, &form.slug, change).await {
                    Ok(v) => Ok(format!(
                        "Registry {} now holds {}.",
                        v.slug,
                        if v.servers.is_empty() {
                            "no servers".to_owned()
                        } else {
                            v.servers.join(", ")
                        }
                    )),
                    Err(access::AccessError::Store(e)) => return Err(internal(e)),
                    Err(e) => Err(format!("Not changed: {e}.")),
                }
            }
            "add_grant" => {
                let rules = rules_of(&form.rules);
                match rules {
                    Err(m) => Err(format!("Not granted: {m}.")),
                    Ok(rules) => {
                        let g = access::NewGrant {
                            subject: form.grants.trim().to_owned(),
                            rules,
                        };
                        match access::add_grant(&st.store, &tid, &form.slug, g).await {
                            Ok(v) => {
                                Ok(format!("Registry {} granted to {}.", form.slug, v.subject))
                            }
                            Err(access::AccessError::Store(e)) => return Err(internal(e)),
                            Err(e) => Err(format!("Not granted: {e}.")),
                        }
                    }
                }
            }
            "delete_grant" => {
                match access::delete_grant(&st.store, &tid, &form.slug, &form.grant_id).await {
                    Ok(()) => Ok("Grant removed.".into()),
                    Err(access::AccessError::Store(e)) => return Err(internal(e)),
                    Err(e) => Err(format!("Not removed: {e}.")),
                }
            }
            "delete_registry" => match access::delete_registry(&st.store, &tid, &form.slug).await {
                Ok(()) => Ok(format!("Registry {} deleted.", form.slug)),
                Err(access::AccessError::Store(e)) => return Err(internal(e)),
                Err(e) => Err(format!("Not deleted: {e}.")),
            },
            "simulate" => {
                let arguments = if form.arguments.trim().is_empty() {
                    Ok(None)
                } else {
                    serde_json::from_str(&form.arguments).map(Some)
                };
                match arguments {
                    Err(e) => Err(format!("The arguments are not JSON ({e}).")),
                    Ok(arguments) => {
                        let policy = st.gateway.tenant_policy(&tid);
                        let observed = |server: &str, tool: &str| {
                            st.gateway.observed_hints(&tid, server, tool)
                        };
                        let q = access::ExplainQuery {
                            user: form.user.trim().to_owned(),
                            server: form.server.trim().to_owned(),
                            tool: Some(form.tool.trim().to_owned()),
                            prompt: None,
                            resource: None,
                            arguments,
                        };
                        match access::explain(&policy, &q, &observed) {
                            Ok(v) => {
                                self.reveal(
                                    &session,
                                    Reveal::Simulation(SimulationView {
                                        question: format!(
                                            "Can {} call {} on {}?",
                                            v.user, v.name, v.server
                                        ),
                                        decision: v.explanation.decision,
                                        reason: v.explanation.reason,
                                        chain: v.explanation.chain,
                                    }),
                                )?;
                                return Ok(true);
                            }
                            Err(e) => Err(format!("{e}.")),
                        }
                    }
                }
            }
            "who_can" => {
                let policy = st.gateway.tenant_policy(&tid);
                let observed =
                    |server: &str, tool: &str| st.gateway.observed_hints(&tid, server, tool);
                let (server, tool) = (form.server.trim(), form.tool.trim());
                let users =
                    access::who_can(&policy, server, crate::policy::Kind::Tool, tool, &observed);
                let allowed: Vec<String> = users
                    .iter()
                    .filter(|u| u.allowed)
                    .map(|u| u.email.clone())
                    .collect();
                self.reveal(
                    &session,
                    Reveal::Simulation(SimulationView {
                        question: format!("Who can call {tool} on {server}?"),
                        decision: format!("{} of {} users", allowed.len(), users.len()),
                        reason: if allowed.is_empty() {
                            "nobody".into()
                        } else {
                            allowed.join(", ")
                        },
                        chain: users
                            .into_iter()
                            .map(|u| format!("{}: {}", u.email, u.reason))
                            .collect(),
                    }),
                )?;
                return Ok(true);
            }
            "reach" => {
                let policy = st.gateway.tenant_policy(&tid);
                let user = form.user.trim();
                let reach = access::reach(&policy, user);
                self.reveal(
                    &session,
                    Reveal::Simulation(SimulationView {
                        question: format!("What can {user} reach?"),
                        decision: format!("{} servers", reach.len()),
                        reason: reach
                            .iter()
                            .map(|r| r.server.clone())
                            .collect::<Vec<_>>()
                            .join(", "),
                        chain: reach
                            .into_iter()
                            .map(|r| {
                                format!(
                                    "{}: may call {}{}",
                                    r.server,
                                    if r.tools.is_empty() {
                                        "no reviewed tool".to_owned()
                                    } else {
                                        r.tools.join(", ")
                                    },
                                    if r.denied_tools.is_empty() {
                                        String::new()
                                    } else {
                                        format!("; not {}", r.denied_tools.join(", "))
                                    }
                                )
                            })
                            .collect(),
                    }),
                )?;
                return Ok(true);
            }
            op if op.starts_with("agent_") => self.agent_action(&tenant, &session, &form).await?,
            "credential_set" | "credential_delete" | "vault_rotate" | "connection_end" => {
                self.credential_action(&tenant, &admin, &form).await?
            }
            // Nothing is stored or recorded: the answer is shown once.
            "filter_try" => {
                let view = self.filter_try(&tenant, &form);
                self.reveal(&session, Reveal::Simulation(view))?;
                return Ok(true);
            }
            "filter_set" | "filter_entity" | "filter_tool" | "filter_hook_remove"
            | "tool_approve" | "tool_dismiss" => self.filter_action(&tenant, &admin, &form).await?,
            // The hook's signing secret is shown once (kept in memory until the page shows it).
            "filter_hook_add" => match self.filter_hook_add(&tenant, &form).await? {
                Ok((message, secret)) => {
                    self.reveal(&session, Reveal::Secret(secret))?;
                    Ok(message)
                }
                Err(e) => Err(e),
            },
            other => Err(format!("Unknown form {other:?}.")),
        };
        st.refresh_snapshots().await.map_err(internal)?;
        match result {
            Ok(m) => {
                let e = crate::audit::Event::new(
                    &tid,
                    crate::audit::Category::Admin,
                    &format!("console.{}", form.op),
                    "ok",
                )
                .by(&admin.user_id, &admin.email)
                .target(if form.slug.is_empty() {
                    form.user_id.clone()
                } else {
                    form.slug.clone()
                })
                .detail(serde_json::json!({ "message": m }));
                st.audit.note(e).await;
                flash(&session, FlashKind::Info, m).await?;
                Ok(true)
            }
            Err(m) => {
                flash(&session, FlashKind::Error, m).await?;
                Ok(false)
            }
        }
    }
}
