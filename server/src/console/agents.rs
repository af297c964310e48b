//! The console's Agents page: the agents with their tool sets, tokens and blast radius, and
//! its forms (`agent_*` ops of the identity action), through the same services as the API
//! (`crate::agents`, `crate::servers::revoke_agent`).

use super::{internal, Backend};
use crate::agents::{self, AgentInput, ToolSetEntry};
use crate::tenants::format_time;
use app::api::{AgentSystemView, AgentTokenView, AgentView, BackendError, IdentityForm, Reveal};
use secrecy::ExposeSecret;

/// `crm: search_*, get_contact` lines → tool set entries.
fn parse_tool_set(raw: &str) -> Result<Vec<ToolSetEntry>, String> {
    let mut out = Vec::new();
    for (n, line) in raw.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((server, tools)) = line.split_once(':') else {
            return Err(format!(
                "line {}: write it as server: tool, tool (got {line:?})",
                n + 1
            ));
        };
        out.push(ToolSetEntry {
            server: server.trim().to_owned(),
            tools: tools
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        });
    }
    Ok(out)
}

fn tool_set_text(entries: &[ToolSetEntry]) -> String {
    entries
        .iter()
        .map(|e| format!("{}: {}", e.server, e.tools.join(", ")))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Backend {
    /// The agents of a tenant for the console.
    pub(super) async fn agents_view(
        &self,
        tenant: &crate::tenancy::Tenant,
    ) -> Result<Vec<AgentView>, BackendError> {
        let st = &self.state;
        let tid = &tenant.tenant_id;
        let rows = st.store.list_agents(tid).await.map_err(internal)?;
        let servers: Vec<(String, String)> = st
            .store
            .list_servers(tid)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|s| (s.slug, s.name))
            .collect();
        let policy = st.gateway.tenant_policy(tid);
        let gw = &st.gateway;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let agent = agents::Agent::from_row(&row);
            let radius = agents::blast_radius(&agent, &policy, &servers, |server| {
                gw.observed_tools(tid, server)
                    .into_iter()
                    .map(|t| {
                        let h = gw.observed_hints(tid, server, &t);
                        (t, h)
                    })
                    .collect()
            });
            let tokens = st
                .store
                .list_agent_tokens(tid, &row.agent_id)
                .await
                .map_err(internal)?
                .into_iter()
                .map(|t| AgentTokenView {
                    label: t.label,
                    created_at: format_time(t.created_at),
                    last_used_at: t.last_used_at.map(format_time).unwrap_or_default(),
                    expires_at: t.expires_at.map(format_time).unwrap_or_default(),
                })
                .collect();
            let t = &radius.totals;
            out.push(AgentView {
                endpoint: agents::view(st, &tenant.slug, &row)["endpoint"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                slug: row.slug.clone(),
                name: row.name.clone(),
                owner: row
                    .owner_email
                    .clone()
                    .unwrap_or_else(|| "the tenant".into()),
                enabled: agent.enabled,
                disabled: row.disabled_at.is_some(),
                tool_set: tool_set_text(agent.tools.entries()),
                tokens,
                radius: format!(
                    "{} system(s), {} tool(s): {} write, {} destructive, {} reach outside",
                    t.systems, t.tools, t.writes, t.destructive, t.open_world
                ),
                systems: radius
                    .systems
                    .into_iter()
                    .map(|s| AgentSystemView {
                        server: s.server,
                        name: s.name,
                        reachable: s.reachable,
                        tools: s
                            .tools
                            .into_iter()
                            .map(|t| {
                                let kind = if t.destructive {
                                    "destructive"
                                } else if t.read_only {
                                    "read-only"
                                } else {
                                    "writes"
                                };
                                (t.name, kind.to_owned(), t.open_world)
                            })
                            .collect(),
                        unmatched: s.unmatched.join(", "),
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    /// The `agent_*` forms: the flash message, or why nothing changed.
    pub(super) async fn agent_action(
        &self,
        tenant: &crate::tenancy::Tenant,
        session: &tower_sessions::Session,
        form: &IdentityForm,
    ) -> Result<Result<String, String>, BackendError> {
        let st = &self.state;
        let tenant_id = tenant.tenant_id.as_str();
        let input = |slug: Option<String>| -> Result<AgentInput, String> {
            Ok(AgentInput {
                slug,
                name: (!form.name.trim().is_empty()).then(|| form.name.clone()),
                description: String::new(),
                owner: (!form.owner.trim().is_empty()).then(|| form.owner.clone()),
                tool_set: parse_tool_set(&form.tool_set)?,
                disabled: form.active == "false",
            })
        };
        let out = match form.op.as_str() {
            "agent_create" => match input(Some(form.slug.trim().to_owned())) {
                Err(m) => Err(format!("Not created: {m}.")),
                Ok(i) => match agents::create(&st.store, tenant_id, &i).await {
                    Ok(row) => Ok(format!("Agent {} created.", row.slug)),
                    Err(crate::access::AccessError::Store(e)) => return Err(internal(e)),
                    Err(e) => Err(format!("Not created: {e}.")),
                },
            },
            "agent_update" => {
                let current = st
                    .store
                    .agent_by_slug(tenant_id, &form.slug)
                    .await
                    .map_err(internal)?;
                match (current, input(None)) {
                    (None, _) => Err("No such agent.".into()),
                    (_, Err(m)) => Err(format!("Not saved: {m}.")),
                    (Some(row), Ok(mut i)) => {
                        // The form edits the tool set and the state; the rest stays.
                        i.name = Some(row.name.clone());
                        i.owner = row.owner_email.clone();
                        i.description = row.description.clone();
                        match agents::update(&st.store, tenant_id, &row.slug, &i).await {
                            Ok(row) => Ok(format!(
                                "Agent {} saved{}.",
                                row.slug,
                                if row.disabled_at.is_some() {
                                    " (disabled)"
                                } else {
                                    ""
                                }
                            )),
                            Err(crate::access::AccessError::Store(e)) => return Err(internal(e)),
                            Err(e) => Err(format!("Not saved: {e}.")),
                        }
                    }
                }
            }
            "agent_token" => {
                let label = if form.label.trim().is_empty() {
                    "console"
                } else {
                    form.label.trim()
                };
                match agents::issue_token(&st.store, tenant_id, &form.slug, label, None).await {
                    Ok((row, token)) => {
                        self.reveal(session, Reveal::Secret(token.expose_secret().to_owned()))?;
                        Ok(format!(
                            "Token {label} issued for agent {}: copy it now.",
                            row.slug
                        ))
                    }
                    Err(crate::access::AccessError::Store(e)) => return Err(internal(e)),
                    Err(e) => Err(format!("Not issued: {e}.")),
                }
            }
            "agent_revoke" => {
                match crate::servers::revoke_agent(&st.store, tenant_id, &form.slug).await {
                    Ok(r) => {
                        crate::mail::revoked(st, tenant, &r);
                        Ok(format!(
                            "Revoked {} token(s) of agent {}.",
                            r.tokens.len(),
                            form.slug
                        ))
                    }
                    Err(crate::servers::ServerError::NotFound) => Err("No such agent.".into()),
                    Err(e) => return Err(internal(e)),
                }
            }
            "agent_delete" => {
                match st
                    .store
                    .agent_by_slug(tenant_id, &form.slug)
                    .await
                    .map_err(internal)?
                {
                    None => Err("No such agent.".into()),
                    Some(row) => {
                        st.store
                            .delete_agent(tenant_id, &row.agent_id)
                            .await
                            .map_err(internal)?;
                        Ok(format!("Agent {} deleted with its tokens.", row.slug))
                    }
                }
            }
            other => Err(format!("Unknown form {other:?}.")),
        };
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_set_lines_round_trip() {
        let parsed = parse_tool_set("crm: search_*, get_contact\n\n hr : lookup ").unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].tools, vec!["search_*", "get_contact"]);
        assert_eq!(parsed[1].server, "hr");
        assert_eq!(
            tool_set_text(&parsed),
            "crm: search_*, get_contact\nhr: lookup"
        );
        assert!(parse_tool_set("no colon here").is_err());
    }
}
