//! The operator CLI's one-shot commands (`migrate`, `tenant create|list`). They work on the same
//! database as running servers; their changes reach those servers through the change counters
//! (`tenancy::watch_changes`), within a second.
//!
//! `--json` output is a contract that operators and checks script against:
//! - `tenant create --json`: `{"tenant": {slug, name, created_at, console_url}, "admin_email", "admin_token"}`
//! - `tenant list --json`: `{"tenants": [{slug, name, created_at}]}`
//! - `tenant admin-token --json`: `{"admin_email", "admin_token": "pct_admin_…"}`
//! - `server add --json`: `{"server": {slug, name, description, upstream, created_at}}`
//! - `server list --json`: `{"servers": [ … ]}`
//! - `token create --json`: `{"token": "pct_user_…", "user": EMAIL}`
//! - `platform rotate-token --json`: `{"platform_token": "pct_platform_…"}`
//! - `registry add --json`: `{"registry": {slug, name, description, servers, grants: [{id, subject, rules, rules_text}], created_at}}`
//! - `registry list --json`: `{"registries": [ … ]}`
//! - `scim token --json`: `{"token": "pct_scim_…"}`
//! - `audit verify --json`: `{"tenant", "records", "ok", "first_break": {seq, event_id, problem}|null}` (exit 1 when broken)
//! - `policy explain --json`: `{"user", "server", "kind", "name", "decision": "allow"|"deny", "reason", "rule": {grant_id, registry, subject, number, rule}|null, "chain": [ … ]}`

use crate::access;
use crate::config::{AuditCommand, ScimCommand};
use crate::config::{
    PlatformCommand, PolicyCommand, RegistryCommand, RemoteTransport, ServerCommand, StoreConfig,
    TenantCommand, TokenCommand,
};
use crate::domain::TenantSlug;
use crate::servers;
use crate::store::Store;
use crate::tenants::{self, format_time};
use secrecy::ExposeSecret;
use std::process::ExitCode;

/// A command's failure: printed to stderr, exit code 1.
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

pub async fn migrate(store_cfg: &StoreConfig) -> Result<ExitCode, CliError> {
    let store = Store::open(&store_cfg.database).await?;
    store.migrate().await?;
    println!("migrations applied ({})", store_cfg.database.redacted());
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn tenant(store_cfg: &StoreConfig, cmd: TenantCommand) -> Result<ExitCode, CliError> {
    let store = Store::open(&store_cfg.database).await?;
    let out = match cmd {
        TenantCommand::Create {
            slug,
            name,
            admin_email,
            json,
        } => {
            let created = tenants::create(&store, &slug, &name, &admin_email).await?;
            let t = &created.tenant;
            if json {
                let v = serde_json::json!({
                    "tenant": {
                        "slug": t.slug,
                        "name": t.name,
                        "created_at": format_time(t.created_at),
                    },
                    "admin_email": created.admin_email,
                    "admin_token": created.admin_token.expose_secret(),
                });
                println!("{v}");
            } else {
                println!("Created tenant {} ({}).", t.slug, t.name);
                println!("First admin: {}", created.admin_email);
                println!("Admin token (shown once, store it now):");
                println!("  {}", created.admin_token.expose_secret());
                println!(
                    "Sign in at http://{}.<base-domain>/admin with this token.",
                    t.slug
                );
            }
            ExitCode::SUCCESS
        }
        TenantCommand::List { json } => {
            let rows = store.list_tenants().await?;
            if json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "slug": r.slug,
                            "name": r.name,
                            "created_at": format_time(r.created_at),
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "tenants": list }));
            } else if rows.is_empty() {
                println!("No tenants yet. Create one with: portcullis tenant create SLUG --name NAME --admin-email EMAIL");
            } else {
                println!("{:<24} {:<32} CREATED", "SLUG", "NAME");
                for r in &rows {
                    println!(
                        "{:<24} {:<32} {}",
                        r.slug,
                        r.name,
                        format_time(r.created_at)
                    );
                }
            }
            ExitCode::SUCCESS
        }
        TenantCommand::AdminToken { slug, email, json } => {
            let tid = tenant_id(&store, &slug).await?;
            let email = crate::domain::Email::parse(&email).map_err(|e| CliError(e.0))?;
            let token = crate::domain::NewToken::generate(crate::domain::TokenKind::TenantAdmin);
            store
                .recover_admin(&tid, &email, &token.hash, "break-glass (CLI)")
                .await?;
            tracing::info!(audit = true, tenant.id = %tid, "break-glass admin token issued by the operator CLI");
            audited(&store, &tid, "admin_token.break_glass", email.as_str()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "admin_email": email.as_str(), "admin_token": token.plaintext.expose_secret() })
                );
            } else {
                println!(
                    "Admin token for {} on {slug} (shown once, store it now):",
                    email.as_str()
                );
                println!("  {}", token.plaintext.expose_secret());
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(out)
}

/// The tenant a command names, or a clear error.
async fn tenant_id(store: &Store, slug: &str) -> Result<String, CliError> {
    let parsed = TenantSlug::parse(slug)?;
    match store.tenant_by_slug(&parsed).await? {
        Some(t) => Ok(t.tenant_id),
        None => Err(CliError(format!("no tenant {slug:?}"))),
    }
}

pub async fn server(store_cfg: &StoreConfig, cmd: ServerCommand) -> Result<ExitCode, CliError> {
    let store = Store::open(&store_cfg.database).await?;
    match cmd {
        ServerCommand::Add {
            tenant,
            slug,
            stdio,
            url,
            transport,
            cwd,
            per_user,
            sandbox,
            name,
            description,
            json,
        } => {
            let tid = tenant_id(&store, &tenant).await?;
            let upstream = match (stdio, url) {
                (Some(line), None) => {
                    let mut words = shlex::split(&line)
                        .ok_or_else(|| CliError("--stdio: unbalanced quotes".into()))?
                        .into_iter();
                    let command = words
                        .next()
                        .ok_or_else(|| CliError("--stdio needs a command".into()))?;
                    serde_json::json!({
                        "transport": "stdio",
                        "command": command,
                        "args": words.collect::<Vec<_>>(),
                        "cwd": cwd,
                        "instance": if per_user { "per_user" } else { "shared" },
                        "sandbox": sandbox,
                    })
                }
                (None, Some(url)) => serde_json::json!({
                    "transport": match transport {
                        RemoteTransport::StreamableHttp => "streamable_http",
                        RemoteTransport::Sse => "sse",
                    },
                    "url": url,
                }),
                _ => return Err(CliError("give exactly one of --stdio and --url".into())),
            };
            let row = servers::add(
                &store,
                &tid,
                servers::NewServer {
                    slug,
                    name,
                    description,
                    upstream,
                },
            )
            .await?;
            let v = servers::view(None, &tenant, &row);
            if json {
                println!("{}", serde_json::json!({ "server": v }));
            } else {
                println!(
                    "Added server {} to tenant {tenant}: /mcp/{}",
                    v.slug, v.slug
                );
            }
        }
        ServerCommand::List { tenant, json } => {
            let tid = tenant_id(&store, &tenant).await?;
            let rows = store.list_servers(&tid).await?;
            let views: Vec<_> = rows
                .iter()
                .map(|r| servers::view(None, &tenant, r))
                .collect();
            if json {
                println!("{}", serde_json::json!({ "servers": views }));
            } else if views.is_empty() {
                println!("No servers in tenant {tenant}.");
            } else {
                println!("{:<24} {:<16} NAME", "SLUG", "TRANSPORT");
                for v in &views {
                    let kind = v.upstream["transport"].as_str().unwrap_or("?");
                    println!("{:<24} {:<16} {}", v.slug, kind, v.name);
                }
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn token(store_cfg: &StoreConfig, cmd: TokenCommand) -> Result<ExitCode, CliError> {
    let store = Store::open(&store_cfg.database).await?;
    match cmd {
        TokenCommand::Create {
            tenant,
            user,
            label,
            servers: scope,
            expires_days,
            json,
        } => {
            let tid = tenant_id(&store, &tenant).await?;
            let (user, token) =
                servers::create_scoped_token(&store, &tid, &user, &label, &scope, expires_days)
                    .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "token": token.expose_secret(), "user": user.email })
                );
            } else {
                println!(
                    "Gateway token for {} (shown once, store it now):",
                    user.email
                );
                println!("  {}", token.expose_secret());
            }
        }
        TokenCommand::Revoke {
            tenant,
            token,
            user,
            agent,
            json,
        } => {
            let tid = tenant_id(&store, &tenant).await?;
            let revoked = match (&token, &user, &agent) {
                (Some(t), _, _) => servers::revoke_token(&store, &tid, t).await,
                (None, Some(u), _) => servers::revoke_user(&store, &tid, u).await,
                (None, None, Some(a)) => servers::revoke_agent(&store, &tid, a).await,
                (None, None, None) => {
                    return Err(CliError("give one of --token, --user or --agent".into()))
                }
            };
            let revoked = match revoked {
                Ok(r) => r,
                Err(servers::ServerError::NotFound) => {
                    return Err(CliError(match (&user, &agent) {
                        (Some(u), _) => format!("no user {u} in tenant {tenant}"),
                        (None, Some(a)) => format!("no agent {a} in tenant {tenant}"),
                        _ => format!("no live gateway token like that in tenant {tenant}"),
                    }))
                }
                Err(e) => return Err(e.into()),
            };
            let mut e = crate::audit::Event::new(
                &tid,
                crate::audit::Category::Security,
                if user.is_some() {
                    "access.revoke_user"
                } else if agent.is_some() {
                    "access.revoke_agent"
                } else {
                    "token.revoke"
                },
                "ok",
            )
            .detail(serde_json::to_value(&revoked).unwrap_or_default());
            e.target = revoked
                .tokens
                .first()
                .map(|t| t.user.clone())
                .or(user.clone())
                .or(agent.as_ref().map(|a| format!("agent:{a}")));
            e.actor = Some("operator (CLI)".into());
            crate::audit::record_direct(&store, &e).await?;
            if json {
                let mut v = serde_json::to_value(&revoked).unwrap_or_default();
                v["tenant"] = serde_json::json!(tenant);
                println!("{v}");
            } else {
                println!("Revoked {} gateway token(s):", revoked.tokens.len());
                for t in &revoked.tokens {
                    println!("  {} ({})", t.label, t.user);
                }
                if revoked.sessions_ended {
                    println!("Their console and portal sessions are over.");
                }
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn platform(store_cfg: &StoreConfig, cmd: PlatformCommand) -> Result<ExitCode, CliError> {
    let store = Store::open(&store_cfg.database).await?;
    match cmd {
        PlatformCommand::RotateToken { json } => {
            let token = crate::auth::rotate_platform_token(&store).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "platform_token": token.expose_secret() })
                );
            } else {
                println!("New platform admin token (shown once, store it now):");
                println!("  {}", token.expose_secret());
                println!("The old token and its console sessions no longer work.");
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn registry(store_cfg: &StoreConfig, cmd: RegistryCommand) -> Result<ExitCode, CliError> {
    let store = Store::open(&store_cfg.database).await?;
    match cmd {
        RegistryCommand::Add {
            tenant,
            slug,
            name,
            servers,
            grants,
            rules,
            json,
        } => {
            let tid = tenant_id(&store, &tenant).await?;
            let rules: Vec<crate::policy::Rule> = match rules {
                Some(r) => serde_json::from_str(&r)
                    .map_err(|e| CliError(format!("--rules is not a JSON list of rules: {e}")))?,
                None => Vec::new(),
            };
            let new = access::NewRegistry {
                slug,
                name,
                description: None,
                servers,
                grants: grants
                    .into_iter()
                    .map(|subject| access::NewGrant {
                        subject,
                        rules: rules.clone(),
                    })
                    .collect(),
            };
            let view = access::create_registry(&store, &tid, new).await?;
            audited(&store, &tid, "registry.create", &view.slug).await?;
            if json {
                println!("{}", serde_json::json!({ "registry": view }));
            } else {
                println!(
                    "Registry {} holds {} and is granted to {}.",
                    view.slug,
                    if view.servers.is_empty() {
                        "no servers".to_owned()
                    } else {
                        view.servers.join(", ")
                    },
                    if view.grants.is_empty() {
                        "nobody yet".to_owned()
                    } else {
                        view.grants
                            .iter()
                            .map(|g| g.subject.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                );
            }
        }
        RegistryCommand::List { tenant, json } => {
            let tid = tenant_id(&store, &tenant).await?;
            let list = access::list_registries(&store, &tid).await?;
            if json {
                println!("{}", serde_json::json!({ "registries": list }));
            } else if list.is_empty() {
                println!("No registries: this tenant grants nothing to anyone yet.");
            } else {
                for r in list {
                    println!("{}  servers: {}", r.slug, r.servers.join(", "));
                    for g in r.grants {
                        println!("  → {}", g.subject);
                        for t in g.rules_text {
                            println!("      {t}");
                        }
                    }
                }
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn policy(store_cfg: &StoreConfig, cmd: PolicyCommand) -> Result<ExitCode, CliError> {
    let store = Store::open(&store_cfg.database).await?;
    match cmd {
        PolicyCommand::Explain {
            tenant,
            user,
            server,
            tool,
            arguments,
            json,
        } => {
            let tid = tenant_id(&store, &tenant).await?;
            let arguments = match arguments {
                Some(a) => Some(
                    serde_json::from_str(&a)
                        .map_err(|e| CliError(format!("--arguments is not JSON: {e}")))?,
                ),
                None => None,
            };
            let policy = crate::policy::TenantPolicy::compile(store.policy_inputs(&tid).await?);
            let view = access::explain(
                &policy,
                &access::ExplainQuery {
                    user,
                    server,
                    tool: Some(tool),
                    prompt: None,
                    resource: None,
                    arguments,
                },
                &|_: &str, _: &str| None,
            )?;
            if json {
                println!("{}", serde_json::json!(view));
            } else {
                println!("{}: {}", view.explanation.decision, view.explanation.reason);
                for step in &view.explanation.chain {
                    println!("  {step}");
                }
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn scim(store_cfg: &StoreConfig, cmd: ScimCommand) -> Result<ExitCode, CliError> {
    let store = Store::open(&store_cfg.database).await?;
    match cmd {
        ScimCommand::Token { tenant, json } => {
            let tid = tenant_id(&store, &tenant).await?;
            let token = crate::scim::rotate_token(&store, &tid).await?;
            audited(&store, &tid, "scim.token_rotate", "scim").await?;
            if json {
                println!("{}", serde_json::json!({ "token": token.expose_secret() }));
            } else {
                println!(
                    "SCIM token for tenant {tenant} (shown once; the old one no longer works):"
                );
                println!("  {}", token.expose_secret());
                println!("Give it to your identity provider with the tenant's /scim/v2 URL.");
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn audit(store_cfg: &StoreConfig, cmd: AuditCommand) -> Result<ExitCode, CliError> {
    let store = Store::open(&store_cfg.database).await?;
    let code = match cmd {
        AuditCommand::Verify { tenant, json } => {
            let tid = tenant_id(&store, &tenant).await?;
            let (v, _, _) = crate::audit::verify_stored(&store, &tid).await?;
            if json {
                let mut out = serde_json::to_value(&v).unwrap_or_default();
                out["tenant"] = serde_json::json!(tenant);
                println!("{out}");
            } else if let Some(b) = &v.first_break {
                println!(
                    "BROKEN: {} records; the chain first breaks at seq {} (event {}): {}",
                    v.records, b.seq, b.event_id, b.problem
                );
            } else {
                println!("OK: {} records, the chain holds", v.records);
            }
            if v.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        AuditCommand::Export {
            tenant,
            format,
            user,
            server,
            group,
            method,
            decision,
            since,
            until,
            output,
        } => {
            let tid = tenant_id(&store, &tenant).await?;
            let format = crate::audit::export::Format::parse(&format)
                .ok_or_else(|| CliError("--format must be csv, jsonl or ocsf".into()))?;
            let filters = crate::audit::api::Filters {
                actor: user,
                server,
                group,
                method,
                decision,
                since,
                until,
                ..Default::default()
            };
            let query = filters
                .query(crate::audit::export::PAGE)
                .map_err(|e| CliError(e.to_string()))?;
            let mut e = crate::audit::Event::new(
                &tid,
                crate::audit::Category::Security,
                "audit.export",
                "ok",
            )
            .target(format.extension())
            .detail(
                serde_json::json!({"format": format.extension(), "via": "cli",
                "filter": crate::audit::describe(&query)}),
            );
            e.actor = Some("operator (CLI)".into());
            crate::audit::record_direct(&store, &e).await?;
            let mut out: Box<dyn std::io::Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .map_err(|e| CliError(format!("cannot write {}: {e}", path.display())))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut stream = Box::pin(crate::audit::export::stream(
                store.clone(),
                tid,
                query,
                format,
            ));
            use futures_util::StreamExt;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| CliError(e.to_string()))?;
                if let Err(e) = out.write_all(&chunk) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        break; // `| head`
                    }
                    return Err(CliError(format!("cannot write the export: {e}")));
                }
            }
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        AuditCommand::Purge { tenant, json } => {
            let tid = tenant_id(&store, &tenant).await?;
            let (audit, writer) = crate::audit::Audit::start(store.clone());
            let report = crate::audit::retention::purge_tenant(&store, &audit, &tid, None).await?;
            drop(audit);
            let _ = writer.await;
            if json {
                println!("{}", serde_json::to_value(&report).unwrap_or_default());
            } else if let Some(why) = &report.skipped {
                println!("Nothing purged: {why}");
            } else {
                println!(
                    "Purged {} records (through seq {:?})",
                    report.purged, report.through_seq
                );
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

/// Records an operator's change made from the CLI.
async fn audited(
    store: &Store,
    tenant_id: &str,
    action: &str,
    target: &str,
) -> Result<(), CliError> {
    let mut e = crate::audit::Event::new(tenant_id, crate::audit::Category::Admin, action, "ok")
        .target(target);
    e.actor = Some("operator (CLI)".into());
    crate::audit::record_direct(store, &e).await?;
    Ok(())
}

/// `filter set|show`: a server's (or the tenant's default) data filter policy.
pub async fn filter(
    store_cfg: &StoreConfig,
    cmd: crate::config::FilterCommand,
) -> Result<ExitCode, CliError> {
    use crate::config::FilterCommand;
    use crate::filters::{Action, Policy};
    let store = Store::open(&store_cfg.database).await?;
    if let FilterCommand::Inventory {
        tenant,
        server,
        json,
    } = &cmd
    {
        let tid = tenant_id(&store, tenant).await?;
        let entries = crate::filters::inventory::entries(&store, &tid, server.as_deref()).await?;
        if *json {
            println!(
                "{}",
                serde_json::json!({ "tenant": tenant, "inventory": entries })
            );
        } else if entries.is_empty() {
            println!(
                "no data categories recorded (servers are scanned where a filter policy is active)"
            );
        } else {
            for e in &entries {
                println!(
                    "{:<20} {:<16} {:<9} {:>8} answers {:>8} values  {} .. {}",
                    e.server,
                    e.category,
                    e.class,
                    e.answers,
                    e.findings,
                    e.first_seen_at,
                    e.last_seen_at
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (tenant, server, json) = match &cmd {
        FilterCommand::Set {
            tenant,
            server,
            json,
            ..
        }
        | FilterCommand::Show {
            tenant,
            server,
            json,
        }
        | FilterCommand::Inventory {
            tenant,
            server,
            json,
        } => (tenant.clone(), server.clone(), *json),
    };
    let tid = tenant_id(&store, &tenant).await?;
    let slug = server.unwrap_or_else(|| "*".into());
    if let FilterCommand::Set {
        pii,
        secrets,
        injection,
        arguments,
        ..
    } = cmd
    {
        let current = crate::filters::view(&store, &tid, &slug).await?;
        let mut policy: Policy =
            serde_json::from_value(current["policy"].clone()).unwrap_or_default();
        if let Some(a) = pii.as_deref().and_then(Action::parse) {
            policy.pii = a;
        }
        if let Some(a) = secrets.as_deref().and_then(Action::parse) {
            policy.secrets = a;
        }
        if let Some(a) = injection
            .as_deref()
            .and_then(crate::filters::InjectionAction::parse)
        {
            policy.injection = a;
        }
        if let Some(a) = arguments
            .as_deref()
            .and_then(crate::filters::ArgumentsAction::parse)
        {
            policy.arguments = a;
        }
        crate::filters::set(&store, &tid, &slug, &policy)
            .await
            .map_err(|e| CliError(e.to_string()))?;
        let mut e =
            crate::audit::Event::new(&tid, crate::audit::Category::Admin, "filters.set", "ok")
                .target(slug.clone())
                .detail(serde_json::to_value(&policy).unwrap_or_default());
        e.actor = Some("operator (CLI)".into());
        crate::audit::record_direct(&store, &e).await?;
    }
    let view = crate::filters::view(&store, &tid, &slug).await?;
    if json {
        println!("{view}");
    } else {
        let e = &view["effective"];
        println!(
            "{}: personal data {}, secrets {}, injection {}{}",
            if slug == "*" {
                "default"
            } else {
                slug.as_str()
            },
            e["pii"].as_str().unwrap_or("off"),
            e["secrets"].as_str().unwrap_or("off"),
            e["injection"].as_str().unwrap_or("off"),
            if view["policy"].is_null() {
                " (the tenant's default)"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The database's master key for a CLI command: the key file (SQLite) or
/// PORTCULLIS_MASTER_KEY (PostgreSQL), checked against the database's fingerprint.
async fn current_master_key(
    store_cfg: &StoreConfig,
    store: &Store,
    current: Option<String>,
) -> Result<crate::keys::MasterKey, CliError> {
    use crate::store::DatabaseLocation;
    let key = if matches!(store_cfg.database, DatabaseLocation::Postgres(_)) {
        let text = current
            .ok_or_else(|| CliError("PORTCULLIS_MASTER_KEY is required with PostgreSQL".into()))?;
        crate::keys::decode_key(&text)
            .ok_or_else(|| CliError("PORTCULLIS_MASTER_KEY is not base64 of 32 bytes".into()))?
    } else {
        crate::keys::read_key_file(&store_cfg.data_dir)
            .map_err(|e| CliError(e.to_string()))?
            .0
    };
    let stored = store.platform_setting("master_key_fingerprint").await?;
    if stored.as_deref() != Some(key.fingerprint().as_str()) {
        return Err(CliError(
            "the master key does not match the database's: nothing was changed".into(),
        ));
    }
    Ok(key)
}

/// `mail set|clear|status`: the deployment's SMTP URL, sealed under the master key in the
/// database (never printed; a server's PORTCULLIS_SMTP_URL takes precedence).
pub async fn mail(
    store_cfg: &StoreConfig,
    cmd: crate::config::MailCommand,
    current: Option<String>,
) -> Result<ExitCode, CliError> {
    use crate::config::MailCommand;
    let store = Store::open(&store_cfg.database).await?;
    let key = current_master_key(store_cfg, &store, current).await?;
    let (json, out) = match cmd {
        MailCommand::Set { json } => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| CliError(format!("reading the SMTP URL from standard input: {e}")))?;
            let url = zeroize::Zeroizing::new(line.trim().to_owned());
            if url.is_empty() {
                return Err(CliError(
                    "give the SMTP URL on standard input (one line), e.g. `printf %s \"$URL\" | portcullis mail set`".into(),
                ));
            }
            let host = crate::mail::check_smtp_url(&url).map_err(CliError)?;
            let sealed = key.seal(crate::mail::SMTP_CONTEXT, url.as_bytes());
            store
                .set_platform_setting(crate::mail::SMTP_SETTING, &sealed)
                .await?;
            (
                json,
                serde_json::json!({"configured": true, "host": host, "source": "database"}),
            )
        }
        MailCommand::Clear { json } => {
            store
                .set_platform_setting(crate::mail::SMTP_SETTING, "")
                .await?;
            (json, serde_json::json!({"configured": false}))
        }
        MailCommand::Status { json } => {
            let url = crate::mail::stored_smtp_url(&store, &key)
                .await
                .map_err(CliError)?;
            let host = url
                .as_ref()
                .and_then(|u| crate::mail::check_smtp_url(u.expose_secret()).ok());
            (
                json,
                serde_json::json!({"configured": url.is_some(), "host": host,
                    "source": if url.is_some() { Some("database") } else { None }}),
            )
        }
    };
    if json {
        println!("{out}");
    } else if out["configured"] == true {
        println!(
            "SMTP relay {} is stored (sealed); servers use it from their next start unless PORTCULLIS_SMTP_URL is set.",
            out["host"].as_str().unwrap_or("?")
        );
    } else {
        println!("No SMTP relay is stored.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `keys rotate`: a new master key; every tenant's data keys re-wrapped under it (servers keep
/// running: they hold their unwrapped data keys, and unwrap with the previous key until they
/// restart with the new one).
pub async fn keys(
    store_cfg: &StoreConfig,
    cmd: crate::config::KeysCommand,
    current: Option<String>,
    new: Option<String>,
) -> Result<ExitCode, CliError> {
    use crate::config::KeysCommand;
    use crate::store::DatabaseLocation;
    let KeysCommand::Rotate { json } = cmd;
    let store = Store::open(&store_cfg.database).await?;
    let postgres = matches!(store_cfg.database, DatabaseLocation::Postgres(_));
    let key_err = |e: crate::keys::KeyError| CliError(e.to_string());
    let (old, old_text) = if postgres {
        let text = current.ok_or_else(|| {
            CliError("PORTCULLIS_MASTER_KEY (the current key) is required with PostgreSQL".into())
        })?;
        let key = crate::keys::decode_key(&text)
            .ok_or_else(|| CliError("PORTCULLIS_MASTER_KEY is not base64 of 32 bytes".into()))?;
        (key, text)
    } else {
        crate::keys::read_key_file(&store_cfg.data_dir).map_err(key_err)?
    };
    // The database must be this key's (the same check a server makes at start).
    let stored = store.platform_setting("master_key_fingerprint").await?;
    if stored.as_deref() != Some(old.fingerprint().as_str()) {
        return Err(CliError(
            "the current master key does not match the database's: nothing was changed".into(),
        ));
    }
    let (new_key, new_text) = if postgres {
        let text = new.ok_or_else(|| {
            CliError(
                "PORTCULLIS_NEW_MASTER_KEY is required with PostgreSQL \
                 (generate one with: head -c 32 /dev/urandom | base64)"
                    .into(),
            )
        })?;
        let key = crate::keys::decode_key(&text).ok_or_else(|| {
            CliError("PORTCULLIS_NEW_MASTER_KEY is not base64 of 32 bytes".into())
        })?;
        (key, text)
    } else {
        crate::keys::generate_key()
    };
    let old_fp = old.fingerprint();
    let previous = crate::keys::load_previous(None, &store_cfg.data_dir)
        .ok()
        .flatten()
        .map(std::sync::Arc::new);
    let vault = crate::vault::Vault::with_previous(std::sync::Arc::new(old), previous);
    // Servers make no new data key from here on (one made under the old key now would be
    // lost with it); the mark goes once the database names the new key.
    store
        .set_platform_setting(crate::keys::ROTATING_SETTING, &new_key.fingerprint())
        .await?;
    let rewrap_failed = |e: crate::vault::VaultError| {
        CliError(format!("re-wrapping failed (nothing is lost: every key still unwraps with the current master key; run the rotation again): {e}"))
    };
    let (tenants, mut rewrapped) = crate::vault::rewrap_all(&store, &vault, &new_key)
        .await
        .map_err(rewrap_failed)?;
    if !postgres {
        crate::keys::install_rotated_files(&store_cfg.data_dir, &old_text, &new_text)
            .map_err(key_err)?;
    }
    // The deployment's SMTP URL (sealed under the master key itself) follows the key.
    if let Some(url) = crate::mail::stored_smtp_url(&store, vault.master())
        .await
        .map_err(CliError)?
    {
        let sealed = new_key.seal(crate::mail::SMTP_CONTEXT, url.expose_secret().as_bytes());
        store
            .set_platform_setting(crate::mail::SMTP_SETTING, &sealed)
            .await?;
    }
    crate::keys::record_fingerprint(&store, &new_key)
        .await
        .map_err(key_err)?;
    // A data key a server was making as the mark went up: re-wrapped too.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    rewrapped += crate::vault::rewrap_all(&store, &vault, &new_key)
        .await
        .map_err(rewrap_failed)?
        .1;
    store
        .set_platform_setting(crate::keys::ROTATING_SETTING, "")
        .await?;
    for t in store.list_tenants().await? {
        let mut e = crate::audit::Event::new(
            &t.tenant_id,
            crate::audit::Category::Security,
            "keys.rotate",
            "ok",
        )
        .detail(serde_json::json!({"previous_fingerprint": old_fp,
            "kek_fingerprint": new_key.fingerprint()}));
        e.actor = Some("operator (CLI)".into());
        crate::audit::record_direct(&store, &e).await?;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"kek_fingerprint": new_key.fingerprint(),
                "previous_fingerprint": old_fp, "tenants": tenants,
                "data_keys_rewrapped": rewrapped})
        );
    } else {
        println!(
            "Master key rotated: {old_fp} → {} ({rewrapped} data key(s) of {tenants} tenant(s) re-wrapped).",
            new_key.fingerprint()
        );
        if postgres {
            println!("Restart every replica with PORTCULLIS_MASTER_KEY=<the new key> and PORTCULLIS_MASTER_KEY_PREVIOUS=<the old key>.");
        } else {
            println!("The old key is kept in master.key.previous until you delete it (after restarting servers).");
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// The vault as a one-shot command reads it: the master key from the file (SQLite) or
/// `PORTCULLIS_MASTER_KEY` (PostgreSQL), checked against the database's fingerprint.
async fn open_vault(
    store_cfg: &StoreConfig,
    store: &Store,
    current: Option<String>,
) -> Result<crate::vault::Vault, CliError> {
    let postgres = matches!(
        store_cfg.database,
        crate::store::DatabaseLocation::Postgres(_)
    );
    let key = if postgres {
        let text = current
            .ok_or_else(|| CliError("PORTCULLIS_MASTER_KEY is required with PostgreSQL".into()))?;
        crate::keys::decode_key(&text)
            .ok_or_else(|| CliError("PORTCULLIS_MASTER_KEY is not base64 of 32 bytes".into()))?
    } else {
        crate::keys::read_key_file(&store_cfg.data_dir)
            .map_err(|e| CliError(e.to_string()))?
            .0
    };
    let stored = store.platform_setting("master_key_fingerprint").await?;
    if stored.as_deref() != Some(key.fingerprint().as_str()) {
        return Err(CliError(
            "the master key does not match the database's".into(),
        ));
    }
    let previous = crate::keys::load_previous(None, &store_cfg.data_dir)
        .ok()
        .flatten()
        .map(std::sync::Arc::new);
    Ok(crate::vault::Vault::with_previous(
        std::sync::Arc::new(key),
        previous,
    ))
}

pub async fn review_pack(
    store_cfg: &StoreConfig,
    cmd: crate::config::ReviewPackArgs,
    current: Option<String>,
) -> Result<ExitCode, CliError> {
    use crate::review::api::{file_name, render, Format};
    let format = Format::parse(&cmd.format)
        .ok_or_else(|| CliError("--format must be json, html or pdf".into()))?;
    let opts = crate::review::Options::new(cmd.days, crate::store::now_micros(), "cli")
        .map_err(|e| CliError(format!("--{e}")))?;
    let store = Store::open(&store_cfg.database).await?;
    let parsed = TenantSlug::parse(&cmd.tenant)?;
    let tenant: crate::tenancy::Tenant = store
        .tenant_by_slug(&parsed)
        .await?
        .ok_or_else(|| CliError(format!("no tenant {:?}", cmd.tenant)))?
        .into();
    let vault = open_vault(store_cfg, &store, current).await?;
    let portal = store
        .platform_setting(crate::review::URL_TEMPLATE_SETTING)
        .await?
        .map(|t| t.replace(crate::review::SLUG_PLACEHOLDER, &tenant.slug));
    let sources = crate::review::Sources {
        store: &store,
        vault: &vault,
        gateway_base_url: portal.as_ref().map(|p| format!("{p}/mcp")),
        portal_url: portal,
    };
    let pack = crate::review::build(&sources, &tenant, &opts)
        .await
        .map_err(|e| CliError(e.to_string()))?;
    let body = render(&pack, format)
        .await
        .map_err(|e| CliError(e.to_string()))?;
    let to_stdout = cmd.out.as_os_str() == "-";
    if to_stdout {
        use std::io::Write as _;
        std::io::stdout()
            .write_all(&body)
            .map_err(|e| CliError(format!("writing to standard output: {e}")))?;
    } else {
        // Written beside the target and renamed: a reader never sees half a pack.
        let tmp = cmd.out.with_extension("partial");
        std::fs::write(&tmp, &body)
            .and_then(|_| std::fs::rename(&tmp, &cmd.out))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                CliError(format!("writing {}: {e}", cmd.out.display()))
            })?;
    }
    let mut e = crate::audit::Event::new(
        &tenant.tenant_id,
        crate::audit::Category::Admin,
        "review_pack.generate",
        "ok",
    );
    e.actor = Some("cli".into());
    e.detail = serde_json::json!({
        "format": format.as_str(), "days": pack.period.days, "from": pack.period.from,
        "to": pack.period.to, "risks": pack.risks.iter().map(|r| r.id).collect::<Vec<_>>(),
        "via": "cli",
    });
    crate::audit::record_direct(&store, &e)
        .await
        .map_err(|e| CliError(format!("the pack was written but not recorded: {e}")))?;
    let summary = serde_json::json!({
        "tenant": tenant.slug,
        "format": format.as_str(),
        "file": if to_stdout { "-".to_owned() } else { cmd.out.display().to_string() },
        "bytes": body.len(),
        "generated_at": pack.generated_at,
        "period": {"days": pack.period.days, "from": pack.period.from, "to": pack.period.to},
        "risks": pack.risks.iter().map(|r| serde_json::json!({"id": r.id, "severity": r.severity})).collect::<Vec<_>>(),
        "suggested_name": file_name(&pack, format),
    });
    if cmd.json && to_stdout {
        // Standard output carries the pack itself.
        eprintln!("{summary}");
    } else if cmd.json {
        println!("{summary}");
    } else if !to_stdout {
        println!(
            "wrote {} ({} bytes, {}): {} open risk{}",
            cmd.out.display(),
            body.len(),
            format.as_str(),
            pack.risks.len(),
            if pack.risks.len() == 1 { "" } else { "s" }
        );
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
