//! The operator CLI's one-shot commands (`migrate`, `tenant create|list`). They work on the same
//! database as running servers; their changes reach those servers through the change counters
//! (`tenancy::watch_changes`), within a second.
//!
//! `--json` output is a contract that operators and checks script against:
//! - `tenant create --json`: `{"tenant": {slug, name, created_at, console_url}, "admin_email", "admin_token"}`
//! - `tenant list --json`: `{"tenants": [{slug, name, created_at}]}`

use crate::config::{StoreConfig, TenantCommand};
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
