//! The operator CLI's one-shot commands (`migrate`, `tenant create|list`). They work on the same
//! database as running servers; their changes reach those servers through the change counters
//! (`tenancy::watch_changes`), within a second.
//!
//! `--json` output is a contract that operators and checks script against:
//! - `tenant create --json`: `{"tenant": {slug, name, created_at, console_url}, "admin_email", "admin_token"}`
//! - `tenant list --json`: `{"tenants": [{slug, name, created_at}]}`
//! - `server add --json`: `{"server": {slug, name, description, upstream, created_at}}`
//! - `server list --json`: `{"servers": [ … ]}`
//! - `token create --json`: `{"token": "pct_user_…", "user": EMAIL}`
//! - `platform rotate-token --json`: `{"platform_token": "pct_platform_…"}`

use crate::config::{
    PlatformCommand, RemoteTransport, ServerCommand, StoreConfig, TenantCommand, TokenCommand,
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
            json,
        } => {
            let tid = tenant_id(&store, &tenant).await?;
            let (user, token) = servers::create_user_token(&store, &tid, &user, &label).await?;
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
