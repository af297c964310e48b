//! The `portcullis` binary: parse the command line, set up logging, run one command.

use clap::Parser;
use portcullis::config::{Cli, Command, Settings, StoreConfig};
use portcullis::startup::{shutdown_signal, Application, DEMO_SLUG};
use portcullis::{cli, telemetry};
use secrecy::ExposeSecret;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Cli::parse();
    match run(args).await {
        Ok(code) => code,
        Err(cli::CliError(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Cli) -> Result<ExitCode, cli::CliError> {
    match args.command {
        Command::Serve(serve) => {
            let master_key = std::env::var("PORTCULLIS_MASTER_KEY").ok();
            let mut settings = Settings::resolve(&args.global, &serve, master_key)?;
            settings.master_key_previous = std::env::var("PORTCULLIS_MASTER_KEY_PREVIOUS")
                .ok()
                .filter(|k| !k.trim().is_empty())
                .map(|k| secrecy::SecretString::from(k.trim().to_owned()));
            telemetry::init(settings.store.log_format);
            tracing::info!(database = %settings.store.database.redacted(), "starting");
            let demo = settings.demo;
            let app = Application::build(settings).await?;
            print_banner(&app, demo);
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let store = StoreConfig::resolve(&args.global)?;
            telemetry::init(store.log_format);
            cli::migrate(&store).await
        }
        Command::Tenant(cmd) => {
            let store = StoreConfig::resolve(&args.global)?;
            cli::tenant(&store, cmd).await
        }
        Command::Server(cmd) => {
            let store = StoreConfig::resolve(&args.global)?;
            cli::server(&store, cmd).await
        }
        Command::Token(cmd) => {
            let store = StoreConfig::resolve(&args.global)?;
            cli::token(&store, cmd).await
        }
        Command::Platform(cmd) => {
            let store = StoreConfig::resolve(&args.global)?;
            cli::platform(&store, cmd).await
        }
        Command::Registry(cmd) => {
            let store = StoreConfig::resolve(&args.global)?;
            cli::registry(&store, cmd).await
        }
        Command::Policy(cmd) => {
            let store = StoreConfig::resolve(&args.global)?;
            cli::policy(&store, cmd).await
        }
        Command::Scim(cmd) => {
            let store = StoreConfig::resolve(&args.global)?;
            cli::scim(&store, cmd).await
        }
        Command::Filter(cmd) => {
            let store = StoreConfig::resolve(&args.global)?;
            cli::filter(&store, cmd).await
        }
        Command::Mail(cmd) => {
            let store = StoreConfig::resolve(&args.global)?;
            let current = std::env::var("PORTCULLIS_MASTER_KEY").ok();
            cli::mail(&store, cmd, current).await
        }
        Command::Keys(cmd) => {
            let store = StoreConfig::resolve(&args.global)?;
            let current = std::env::var("PORTCULLIS_MASTER_KEY").ok();
            let new = std::env::var("PORTCULLIS_NEW_MASTER_KEY").ok();
            cli::keys(&store, cmd, current, new).await
        }
        Command::Audit(cmd) => {
            let store = StoreConfig::resolve(&args.global)?;
            cli::audit(&store, cmd).await
        }
        Command::ReviewPack(cmd) => {
            let store = StoreConfig::resolve(&args.global)?;
            let current = std::env::var("PORTCULLIS_MASTER_KEY").ok();
            cli::review_pack(&store, cmd, current).await
        }
    }
}

/// What an operator needs after start: where to go and, once, the secrets made on this start.
/// Printed to stdout, not through the logger, so that secrets never reach log pipelines.
fn print_banner(app: &Application, demo: bool) {
    let urls = app.urls();
    println!("Portcullis is listening on port {}", app.port());
    println!("  platform console: {}", urls.platform());
    if let Some(t) = &app.first_start.platform_token {
        println!(
            "  platform admin token (shown once, store it now): {}",
            t.expose_secret()
        );
    }
    if demo {
        println!("  demo tenant console: {}", urls.tenant_console(DEMO_SLUG));
        if let Some(t) = &app.first_start.demo_token {
            println!("  sign in with the demo admin token: {}", t.expose_secret());
            println!("  (kept in the data directory as demo-admin-token and platform-admin-token)");
        }
        println!(
            "  MCP clients: {}<server> (bearer: `portcullis token create --tenant {DEMO_SLUG} --user EMAIL`)",
            urls.tenant_gateway(DEMO_SLUG)
        );
        println!(
            "  a new tenant grants nothing: map servers to users with `portcullis registry add --tenant {DEMO_SLUG} --slug all --server S --grant everyone`"
        );
    }
    if let Some(slug) = app.loopback_tenant() {
        println!(
            "  tenant {slug} also answers on http://127.0.0.1:{}/ (for local MCP clients)",
            app.port()
        );
    }
}
