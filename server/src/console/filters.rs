//! The console's Filters page: policies (`crate::filters`), the try-it box, the tool-change
//! review queue (`crate::pins`) and filtering activity from the audit log; its forms
//! (`filter_set`, `filter_clear`, `filter_try`, `tool_approve`, `tool_dismiss`) go through the
//! same services as the API.

use super::{internal, Backend};
use app::api::{
    BackendError, FilterPolicyView, FiltersView, IdentityForm, SimulationView, ToolChangeView,
};

const DAY_MICROS: i64 = 86_400_000_000;

impl Backend {
    pub(super) async fn filters_view(
        &self,
        tenant: &crate::tenancy::Tenant,
    ) -> Result<FiltersView, BackendError> {
        let st = &self.state;
        let tid = &tenant.tenant_id;
        let policies = st
            .store
            .filter_policies(tid)
            .await
            .map_err(internal)?
            .into_iter()
            .filter_map(|(scope, json)| {
                let p: crate::filters::Policy = serde_json::from_str(&json).ok()?;
                Some(FilterPolicyView {
                    scope,
                    pii: p.pii.as_str().into(),
                    secrets: p.secrets.as_str().into(),
                    injection: p.injection.as_str().into(),
                    entities: p
                        .entities
                        .iter()
                        .map(|(k, a)| format!("{k}: {}", a.as_str()))
                        .collect(),
                    tools: p.tools.iter().map(|(t, r)| tool_summary(t, r)).collect(),
                    arguments: p.arguments.as_str().into(),
                })
            })
            .collect();
        let servers: Vec<String> = st
            .store
            .list_servers(tid)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|s| s.slug)
            .collect();
        let changes = crate::pins::queue(st, tid, None)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|c| ToolChangeView {
                server: c.server,
                tool: c.tool,
                kind: c.kind,
                status: c.status,
                digest: c.digest,
                diff: c.diff,
                first_seen_at: c.first_seen_at,
                last_seen_at: c.last_seen_at,
            })
            .collect();
        let mut unpinned = Vec::new();
        for s in &servers {
            let tools = st.store.unpinned_tools(tid, s).await.map_err(internal)?;
            if !tools.is_empty() {
                unpinned.push((s.clone(), tools));
            }
        }
        // Activity per day, oldest first.
        let today = crate::store::now_micros() / DAY_MICROS;
        let since = (today - 13) * DAY_MICROS;
        let mut days: Vec<(String, u64, u64, u64)> = (0..14)
            .map(|i| {
                let t = crate::tenants::format_time((today - 13 + i) * DAY_MICROS);
                (t.get(..10).unwrap_or_default().to_owned(), 0, 0, 0)
            })
            .collect();
        for (at, outcome, detail) in st
            .store
            .filter_activity(tid, since)
            .await
            .map_err(internal)?
        {
            let Some(day) = days.get_mut(((at / DAY_MICROS) - (today - 13)) as usize) else {
                continue;
            };
            let d: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
            if outcome == "blocked" {
                day.2 += 1;
            } else if matches!(
                d["filters"]["action"].as_str(),
                Some("redact") | Some("mask")
            ) {
                day.1 += 1;
            } else {
                day.3 += 1;
            }
        }
        st.gateway.inventory.flush(&st.store).await;
        let inventory = crate::filters::inventory::entries(&st.store, tid, None)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|e| {
                (
                    e.server,
                    e.category,
                    e.class.to_owned(),
                    e.answers,
                    e.last_seen_at,
                )
            })
            .collect();
        let hooks = st
            .store
            .filter_hooks(tid)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|h| (h.hook_id, h.server_slug, h.url, h.timeout_ms, h.fail_mode))
            .collect();
        Ok(FiltersView {
            policies,
            servers,
            changes,
            unpinned,
            activity: days,
            inventory,
            hooks,
        })
    }

    /// The Filters page's forms: the flash message, or why nothing changed. `filter_try`
    /// answers through `reveal` (nothing stored or recorded) and returns `None`.
    pub(super) async fn filter_action(
        &self,
        tenant: &crate::tenancy::Tenant,
        admin: &crate::store::UserRow,
        form: &IdentityForm,
    ) -> Result<Result<String, String>, BackendError> {
        use crate::filters::{Action, InjectionAction};
        let st = &self.state;
        let tid = &tenant.tenant_id;
        let slug = if form.slug.trim().is_empty() {
            "*".to_owned()
        } else {
            form.slug.trim().to_owned()
        };
        Ok(match form.op.as_str() {
            "filter_set" => {
                let (Some(pii), Some(secrets), Some(injection)) = (
                    Action::parse(&form.pii),
                    Action::parse(&form.secrets),
                    InjectionAction::parse(&form.injection),
                ) else {
                    return Ok(Err("Not saved: pick an action for each kind.".into()));
                };
                // Per-type overrides set through the API or CLI stay.
                let mut policy = self.policy_of(tid, &slug).await?;
                policy.pii = pii;
                policy.secrets = secrets;
                policy.injection = injection;
                let what = format!(
                    "personal data {}, secrets {}, injection {}",
                    pii.as_str(),
                    secrets.as_str(),
                    injection.as_str()
                );
                self.save_policy(tid, &slug, &policy, what).await?
            }
            "filter_entity" => {
                let entity = form.entity.trim().to_ascii_uppercase();
                let mut policy = self.policy_of(tid, &slug).await?;
                let what = if form.action == "inherit" {
                    policy.entities.remove(&entity);
                    format!("{entity} follows the scope's action")
                } else {
                    let Some(a) = Action::parse(&form.action) else {
                        return Ok(Err("Not saved: pick an action.".into()));
                    };
                    policy.entities.insert(entity.clone(), a);
                    format!("{entity}: {}", a.as_str())
                };
                self.save_policy(tid, &slug, &policy, what).await?
            }
            "filter_tool" => {
                let tool = form.tool.trim();
                if tool.is_empty() {
                    return Ok(Err("Not saved: name the tool.".into()));
                }
                let pick = |v: &str| -> Result<Option<Action>, String> {
                    match v {
                        "" | "inherit" => Ok(None),
                        v => Action::parse(v)
                            .map(Some)
                            .ok_or_else(|| format!("Not saved: {v:?} is not an action.")),
                    }
                };
                let (pii, secrets) = match (pick(&form.pii), pick(&form.secrets)) {
                    (Ok(p), Ok(s)) => (p, s),
                    (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
                };
                let injection = match form.injection.as_str() {
                    "" | "inherit" => None,
                    v => match InjectionAction::parse(v) {
                        Some(a) => Some(a),
                        None => return Ok(Err(format!("Not saved: {v:?} is not an action."))),
                    },
                };
                let paths = |v: &str| -> Vec<String> {
                    v.split(['\n', ','])
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned)
                        .collect()
                };
                let mut policy = self.policy_of(tid, &slug).await?;
                let entities = policy
                    .tools
                    .get(tool)
                    .map(|r| r.entities.clone())
                    .unwrap_or_default();
                let rules = crate::filters::ToolRules {
                    pii,
                    secrets,
                    injection,
                    entities,
                    keep: paths(&form.keep),
                    drop: paths(&form.drop),
                };
                let what = if rules == crate::filters::ToolRules::default() {
                    policy.tools.remove(tool);
                    format!("{tool} follows the scope's policy")
                } else {
                    let line = tool_summary(tool, &rules);
                    policy.tools.insert(tool.to_owned(), rules);
                    line
                };
                self.save_policy(tid, &slug, &policy, what).await?
            }
            "filter_hook_remove" => {
                match crate::filters::hooks::remove(&st.store, &st.vault, tid, form.hook_id.trim())
                    .await
                {
                    Ok(true) => Ok(format!(
                        "Hook {} removed, with its secret.",
                        form.hook_id.trim()
                    )),
                    Ok(false) => Err("No such hook.".into()),
                    Err(crate::filters::hooks::HookError::Invalid(m)) => {
                        Err(format!("Nothing changed: {m}."))
                    }
                    Err(crate::filters::hooks::HookError::NotFound) => Err("No such hook.".into()),
                    Err(e) => return Err(internal(e)),
                }
            }
            "tool_approve" | "tool_dismiss" => {
                let decision = if form.op == "tool_approve" {
                    crate::pins::Decision::Approve
                } else {
                    crate::pins::Decision::Dismiss
                };
                match crate::pins::decide(
                    st,
                    tid,
                    (&admin.user_id, &admin.email),
                    &slug,
                    &form.tool,
                    Some(form.digest.as_str()).filter(|d| !d.is_empty()),
                    decision,
                )
                .await
                {
                    Ok(c) => Ok(match decision {
                        crate::pins::Decision::Approve => format!(
                            "{} on {} approved: its definition is pinned and it is available again.",
                            c.tool, c.server
                        ),
                        crate::pins::Decision::Dismiss => format!(
                            "{} on {}: the pinned definition stays; the tool stays hidden while the server serves the changed one.",
                            c.tool, c.server
                        ),
                    }),
                    Err(crate::pins::PinError::Store(e)) => return Err(internal(e)),
                    Err(e) => Err(format!("Nothing changed: {e}.")),
                }
            }
            other => Err(format!("Unknown form {other:?}.")),
        })
    }

    /// A scope's own policy as stored (the default policy when it has none).
    async fn policy_of(
        &self,
        tenant_id: &str,
        slug: &str,
    ) -> Result<crate::filters::Policy, BackendError> {
        Ok(self
            .state
            .store
            .filter_policies(tenant_id)
            .await
            .map_err(internal)?
            .into_iter()
            .find(|(k, _)| k == slug)
            .and_then(|(_, j)| serde_json::from_str(&j).ok())
            .unwrap_or_default())
    }

    /// Saves a scope's policy (validated as the API validates it); the flash names the change.
    async fn save_policy(
        &self,
        tenant_id: &str,
        slug: &str,
        policy: &crate::filters::Policy,
        what: String,
    ) -> Result<Result<String, String>, BackendError> {
        use crate::filters::SetError;
        let scope = if slug == "*" { "the default" } else { slug };
        Ok(
            match crate::filters::set(&self.state.store, tenant_id, slug, policy).await {
                Ok(()) => Ok(format!("Filters of {scope}: {what}.")),
                Err(SetError::Invalid(m)) => Err(format!("Not saved: {m}.")),
                Err(SetError::NotFound) => Err("No such server.".into()),
                Err(SetError::Store(e)) => return Err(internal(e)),
            },
        )
    }

    /// Adds a filter hook from the console; its signing secret is shown once.
    pub(super) async fn filter_hook_add(
        &self,
        tenant: &crate::tenancy::Tenant,
        form: &IdentityForm,
    ) -> Result<Result<(String, String), String>, BackendError> {
        use crate::filters::hooks::{add, HookError, NewHook};
        let new = NewHook {
            url: form.url.trim().to_owned(),
            server: Some(form.slug.trim().to_owned()).filter(|s| !s.is_empty()),
            timeout_ms: match form.timeout.trim() {
                "" => None,
                t => match t.parse() {
                    Ok(ms) => Some(ms),
                    Err(_) => return Ok(Err("Not added: the timeout is in milliseconds.".into())),
                },
            },
            fail: Some(form.fail.trim().to_owned()).filter(|f| !f.is_empty()),
        };
        let st = &self.state;
        Ok(
            match add(&st.store, &st.vault, &tenant.tenant_id, &new).await {
                Ok((hook, secret)) => Ok((
                    format!(
                    "Hook {} added for {}: requests are signed with the secret below (shown once).",
                    hook.id,
                    if hook.server == "*" { "every server" } else { &hook.server }
                ),
                    secret.to_string(),
                )),
                Err(HookError::Invalid(m)) => Err(format!("Not added: {m}.")),
                Err(HookError::NotFound) => Err("Not added: no such server.".into()),
                Err(e) => return Err(internal(e)),
            },
        )
    }

    /// The try-it box: the scope's policy in effect (or, with none, every filter at `log`)
    /// applied to a text as to a tool's answer.
    pub(super) fn filter_try(
        &self,
        tenant: &crate::tenancy::Tenant,
        form: &IdentityForm,
    ) -> SimulationView {
        use crate::filters::{Action, InjectionAction, Policy};
        let slug = if form.slug.trim().is_empty() {
            "*"
        } else {
            form.slug.trim()
        };
        let policy = self
            .state
            .gateway
            .filter_policy(&tenant.tenant_id, slug)
            .map(|p| (*p).clone())
            .unwrap_or(Policy {
                pii: Action::Log,
                secrets: Action::Log,
                injection: InjectionAction::Log,
                ..Default::default()
            });
        let mut result = serde_json::json!({"content": [{"type": "text", "text": form.text}]});
        let report = crate::filters::apply(&policy, None, &mut result);
        let mut chain = Vec::new();
        let decision = if report.blocked() {
            "blocked"
        } else if report
            .injection
            .as_ref()
            .is_some_and(|i| i.action == InjectionAction::Flag)
            || matches!(report.action, Some(Action::Redact) | Some(Action::Mask))
        {
            "changed"
        } else if report.action.is_some() || report.injection.is_some() {
            "logged"
        } else {
            "clean"
        };
        let reason = if report.found.is_empty() {
            "no personal data or secrets found".to_owned()
        } else {
            format!("found {}", report.summary())
        };
        if let Some(i) = &report.injection {
            chain.push(format!(
                "Prompt injection (score {:.2}, {}): {}",
                i.score,
                i.techniques.join(", "),
                i.reasons.join("; ")
            ));
        } else {
            chain.push("No prompt injection found.".into());
        }
        if !report.blocked() {
            chain.push(format!(
                "What the client gets:\n{}",
                result["content"][0]["text"].as_str().unwrap_or_default()
            ));
        }
        SimulationView {
            question: format!(
                "The policy of {} on this text",
                if slug == "*" { "the default" } else { slug }
            ),
            decision: decision.into(),
            reason,
            chain,
        }
    }
}

/// One line for a tool's rules: "lookup_contact: personal data redact; keep /name, /company".
fn tool_summary(tool: &str, r: &crate::filters::ToolRules) -> String {
    let mut parts = Vec::new();
    if let Some(a) = r.pii {
        parts.push(format!("personal data {}", a.as_str()));
    }
    if let Some(a) = r.secrets {
        parts.push(format!("secrets {}", a.as_str()));
    }
    if let Some(a) = r.injection {
        parts.push(format!("injection {}", a.as_str()));
    }
    for (k, a) in &r.entities {
        parts.push(format!("{k} {}", a.as_str()));
    }
    if !r.keep.is_empty() {
        parts.push(format!("keep {}", r.keep.join(", ")));
    }
    if !r.drop.is_empty() {
        parts.push(format!("drop {}", r.drop.join(", ")));
    }
    if parts.is_empty() {
        parts.push("as the scope".into());
    }
    format!("{tool}: {}", parts.join("; "))
}
