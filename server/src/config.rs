//! The command line and typed configuration, read once at start-up.
//!
//! Precedence for every setting: command-line flag, then environment variable, then the TOML
//! file (`--config` / `PORTCULLIS_CONFIG`), then the default. A bad value stops start-up with a
//! message naming the setting. Nothing reads the environment after this module has run.

use crate::domain::BaseDomain;
use crate::store::DatabaseLocation;
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "MCP security control plane and gateway"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings every subcommand needs to find the database.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded database and the generated master key.
    #[arg(long, global = true, env = "PORTCULLIS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// postgres://… for PostgreSQL; default: a SQLite file in the data directory.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Log format.
    #[arg(long, global = true, env = "PORTCULLIS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: consoles, API and gateway on every tenant host.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage a tenant's upstream MCP servers.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Issue gateway tokens for MCP clients.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The platform operator's own credentials.
    #[command(subcommand)]
    Platform(PlatformCommand),
    /// Registries: collections of servers mapped to everyone, groups or users.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// The access policy: explain a decision.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// SCIM provisioning.
    #[command(subcommand)]
    Scim(ScimCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The master key (the vault's key-encryption key).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The deployment's SMTP relay for notifications, kept sealed in the database.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Data filters: what the gateway does with personal data and secrets in answers.
    #[command(subcommand)]
    Filter(FilterCommand),
    /// Writes a tenant's Security Review Pack (JSON, single-file HTML or PDF) from its live
    /// configuration and audit trail.
    ReviewPack(ReviewPackArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReviewPackArgs {
    #[arg(long)]
    pub tenant: String,
    /// json, html or pdf (PDF is printed by headless Chromium).
    #[arg(long, default_value = "json")]
    pub format: String,
    /// The file to write (`-`: standard output).
    #[arg(long)]
    pub out: PathBuf,
    /// Days of activity the pack covers (1 to 366; default 30).
    #[arg(long)]
    pub days: Option<u32>,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FilterCommand {
    /// Sets a server's filter policy (without --server: the tenant's default). Actions: off,
    /// log, redact, mask, block. Unset flags keep the stored value.
    Set {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        server: Option<String>,
        /// Personal data: EMAIL, PHONE, CREDIT_CARD, IBAN, US_SSN, IP_ADDRESS.
        #[arg(long, value_parser = ["off", "log", "redact", "mask", "block"])]
        pii: Option<String>,
        /// Secrets: cloud keys, tokens, JWTs, private keys, database URLs, generic secrets.
        #[arg(long, value_parser = ["off", "log", "redact", "mask", "block"])]
        secrets: Option<String>,
        /// Prompt injection in answers and in tool, prompt and resource descriptions: block
        /// (answers replaced, listed items hidden), flag (wrapped in a warning to the model),
        /// log, off.
        #[arg(long, value_parser = ["off", "log", "flag", "block"])]
        injection: Option<String>,
        /// Personal data and secrets in tool-call arguments: block (the call is refused), log,
        /// off.
        #[arg(long, value_parser = ["off", "log", "block"])]
        arguments: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The data inventory: which categories of data each server's answers carried (where a
    /// filter policy is active), with counts and first/last seen.
    Inventory {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Shows a server's policy and the one in effect (without --server: the default).
    Show {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Stores the SMTP URL read from standard input (one line; it may carry the relay's
    /// password, so it is never taken as an argument), sealed under the master key. Servers use
    /// it from their next start unless PORTCULLIS_SMTP_URL is set.
    Set {
        #[arg(long)]
        json: bool,
    },
    /// Removes the stored SMTP URL.
    Clear {
        #[arg(long)]
        json: bool,
    },
    /// Whether an SMTP URL is stored, and its host (never the password).
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Installs a new master key and re-wraps every tenant's data keys under it, while servers
    /// run. Embedded SQLite: generates the key; `master.key` becomes `master.key.previous`.
    /// PostgreSQL: takes the new key from PORTCULLIS_NEW_MASTER_KEY (the current one from
    /// PORTCULLIS_MASTER_KEY); then restart replicas with PORTCULLIS_MASTER_KEY=<new> and
    /// PORTCULLIS_MASTER_KEY_PREVIOUS=<old>.
    Rotate {
        #[arg(long)]
        json: bool,
    },
}

// Parsed once per CLI run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Checks the tenant's audit hash chain; exits 0 only when it holds, else names the first
    /// broken link (a modified, deleted or inserted record).
    Verify {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Streams the tenant's audit records (oldest first) to stdout, or to --output, as CSV,
    /// JSON Lines or OCSF API Activity (JSON Lines); the export is itself recorded.
    Export {
        #[arg(long)]
        tenant: String,
        #[arg(long, value_parser = ["csv", "jsonl", "ocsf"])]
        format: String,
        /// The actor's email.
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        group: Option<String>,
        /// The MCP method or event name (`tools/call`; `tools/*` for a prefix).
        #[arg(long)]
        method: Option<String>,
        /// allow or deny.
        #[arg(long)]
        decision: Option<String>,
        /// RFC 3339 time or date (YYYY-MM-DD), inclusive.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 time or date (YYYY-MM-DD), exclusive.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Applies the tenant's retention now (nothing under legal hold goes); prints what it did.
    Purge {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScimCommand {
    /// Generate or rotate the tenant's SCIM bearer token (for the IdP); prints it once. The old
    /// token stops working.
    Token {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Create a registry holding servers, granted to subjects.
    Add {
        #[arg(long)]
        tenant: String,
        /// The registry's slug.
        #[arg(long)]
        slug: String,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
        /// Server slugs the registry holds (repeat, or give several).
        #[arg(long = "server", num_args = 1..)]
        servers: Vec<String>,
        /// Who gets it: everyone, group:NAME or user:EMAIL (repeat, or give several).
        #[arg(long = "grant", num_args = 1..)]
        grants: Vec<String>,
        /// Rules for every grant given here, as JSON: `[{"effect": "deny", "match": "*delete*"}]`.
        #[arg(long)]
        rules: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the tenant's registries with their servers and grants.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Whether a user may call a tool on a server, the rule that decides, and why.
    Explain {
        #[arg(long)]
        tenant: String,
        /// The user's email.
        #[arg(long)]
        user: String,
        #[arg(long)]
        server: String,
        #[arg(long)]
        tool: String,
        /// The call's arguments as a JSON object (without them: could any call be allowed?).
        #[arg(long)]
        arguments: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlatformCommand {
    /// Replace the platform admin token (when it is lost or exposed): prints the new one once;
    /// the old token and every platform console session signed in with it stop working.
    RotateToken {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Add an upstream MCP server to a tenant.
    #[command(group(clap::ArgGroup::new("upstream").required(true).args(["stdio", "url"])))]
    Add {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        /// The server's slug: its gateway endpoint is /mcp/{slug}.
        #[arg(long)]
        slug: String,
        /// A local command line to launch and supervise, e.g. "npx -y @modelcontextprotocol/server-everything".
        #[arg(long)]
        stdio: Option<String>,
        /// A remote server's URL.
        #[arg(long)]
        url: Option<String>,
        /// The remote transport: streamable-http (default) or sse (legacy HTTP+SSE).
        #[arg(long, value_enum, default_value_t = RemoteTransport::StreamableHttp, requires = "url")]
        transport: RemoteTransport,
        /// Working directory of a stdio server (absolute).
        #[arg(long, requires = "stdio")]
        cwd: Option<String>,
        /// One stdio process per user instead of one shared by all.
        #[arg(long, requires = "stdio")]
        per_user: bool,
        /// Run the stdio server in a bubblewrap sandbox (read-only system, private /tmp, no
        /// access to the data directory).
        #[arg(long, requires = "stdio")]
        sandbox: bool,
        /// Display name (default: the slug).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's servers.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RemoteTransport {
    StreamableHttp,
    Sse,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a gateway token to a user (created if missing); prints it once.
    Create {
        #[arg(long)]
        tenant: String,
        /// The user's email.
        #[arg(long)]
        user: String,
        /// What the token is for (shown in listings).
        #[arg(long, default_value = "cli")]
        label: String,
        /// Limit the token to this server (repeat for several): a personal access token.
        /// Without it the token reaches every server the user may reach.
        #[arg(long = "server")]
        servers: Vec<String>,
        /// Days until the token expires (1-365); without it the token does not expire.
        #[arg(long)]
        expires_days: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Revokes one gateway token, everything a user holds (every gateway token, their agents'
    /// tokens and their console and portal sessions), or every token of an agent; reports
    /// what it revoked. Running servers stop accepting
    /// them within a second (at once on PostgreSQL, through the change notification).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["token", "user", "agent"])))]
    Revoke {
        #[arg(long)]
        tenant: String,
        /// The gateway token itself (pct_user_… or pct_agent_…).
        #[arg(long)]
        token: Option<String>,
        /// The user's email: everything they hold (their agents' tokens included).
        #[arg(long)]
        user: Option<String>,
        /// An agent's slug: every token of the agent.
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "PORTCULLIS_BIND")]
    pub bind: Option<String>,
    /// Tenants are served on {tenant}.{base-domain}; the bare domain serves the platform console.
    #[arg(long, env = "PORTCULLIS_BASE_DOMAIN")]
    pub base_domain: Option<String>,
    /// The scheme users reach Portcullis with (https behind a TLS proxy); https also marks
    /// session cookies Secure.
    #[arg(long, env = "PORTCULLIS_PUBLIC_SCHEME", value_enum)]
    pub public_scheme: Option<Scheme>,
    /// The port users reach Portcullis on, when a proxy listens on another port than --bind.
    #[arg(long, env = "PORTCULLIS_PUBLIC_PORT")]
    pub public_port: Option<u16>,
    /// Directory with the built front end (pkg/portcullis.{js,wasm,css}).
    #[arg(long, env = "PORTCULLIS_SITE_ROOT")]
    pub site_root: Option<PathBuf>,
    /// Create a `demo` tenant on first start and keep its admin token in the data directory
    /// (for `make run`; never in production).
    #[arg(long, env = "PORTCULLIS_DEMO")]
    pub demo: bool,
    /// Serve requests to 127.0.0.1 / [::1] (any port) as this tenant: for local MCP clients
    /// that cannot resolve *.localhost. Never set it where others reach the listener by IP.
    #[arg(long, env = "PORTCULLIS_LOOPBACK_TENANT")]
    pub loopback_tenant: Option<String>,
    /// Seconds a request to a stdio or SSE upstream may wait for its answer (default 300).
    #[arg(long, env = "PORTCULLIS_UPSTREAM_TIMEOUT")]
    pub upstream_timeout: Option<u64>,
    /// The largest MCP message (request body) the gateway accepts, in bytes (default 4 MiB).
    #[arg(long, env = "PORTCULLIS_GATEWAY_MAX_BODY")]
    pub gateway_max_body: Option<usize>,
    /// A PEM file of CA certificates to trust for https upstreams, besides the system's.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_CA_FILE")]
    pub upstream_ca_file: Option<PathBuf>,
    /// Milliseconds between SIEM deliveries (default 2000); a failing receiver is retried after
    /// this, doubling up to 5 minutes.
    #[arg(long, env = "PORTCULLIS_SIEM_INTERVAL_MS")]
    pub siem_interval_ms: Option<u64>,
    /// Seconds between anomaly scans of the audit trail (default 300); each scan reads every
    /// tenant's last hour against its baseline.
    #[arg(long, env = "PORTCULLIS_SIGNAL_INTERVAL_SECONDS")]
    pub signal_interval_seconds: Option<u64>,
    /// Let OAuth client metadata documents be fetched from loopback and private addresses
    /// (development and tests only: in production that is an SSRF hole).
    #[arg(long, env = "PORTCULLIS_CIMD_ALLOW_PRIVATE")]
    pub cimd_allow_private: bool,
    /// Where notifications are mailed through: `smtps://user:pass@host:465`,
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS), or plain `smtp://host:port` (only
    /// to localhost). Unset: no mail is sent.
    #[arg(long, env = "PORTCULLIS_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// The sender of notifications (default `Portcullis <portcullis@{base domain}>`).
    #[arg(long, env = "PORTCULLIS_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// How often admins get the digest of security events (seconds, 1 to 86400; default 300).
    #[arg(long, env = "PORTCULLIS_MAIL_DIGEST_SECONDS")]
    pub mail_digest_seconds: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and its first admin; prints the admin token once.
    Create {
        /// The tenant's subdomain label.
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Email of the first administrator.
        #[arg(long)]
        admin_email: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Break-glass recovery: make EMAIL an active admin of the tenant (created if missing,
    /// reactivated if deactivated) and issue a new admin token; prints it once.
    AdminToken {
        /// The tenant's slug.
        slug: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The optional TOML file; every key is optional and unknown keys are an error (a typo must
/// not silently fall back to a default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<String>,
    data_dir: Option<PathBuf>,
    base_domain: Option<String>,
    database_url: Option<String>,
    log_format: Option<LogFormat>,
    public_scheme: Option<Scheme>,
    public_port: Option<u16>,
    site_root: Option<PathBuf>,
    loopback_tenant: Option<String>,
    upstream_timeout: Option<u64>,
    upstream_ca_file: Option<PathBuf>,
    gateway_max_body: Option<usize>,
    siem_interval_ms: Option<u64>,
    signal_interval_seconds: Option<u64>,
}

/// A setting that could not be used; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub message: String,
}

fn bad(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        message: message.into(),
    }
}

/// Where to find the database, resolved.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub database: DatabaseLocation,
    pub log_format: LogFormat,
}

/// Everything `serve` needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub store: StoreConfig,
    pub bind: SocketAddr,
    pub base_domain: BaseDomain,
    pub public_scheme: Scheme,
    pub public_port: Option<u16>,
    pub site_root: PathBuf,
    pub demo: bool,
    /// `PORTCULLIS_MASTER_KEY` (base64 of 32 bytes), when set.
    pub master_key: Option<SecretString>,
    /// `PORTCULLIS_MASTER_KEY_PREVIOUS`: the key a rotation replaced (unwraps data keys not yet
    /// re-wrapped); set by `main` like `master_key`.
    pub master_key_previous: Option<SecretString>,
    /// See `ServeArgs::loopback_tenant`.
    pub loopback_tenant: Option<String>,
    pub upstream_timeout: std::time::Duration,
    pub upstream_ca_file: Option<PathBuf>,
    /// See `ServeArgs::gateway_max_body`.
    pub gateway_max_body: usize,
    /// See `ServeArgs::siem_interval_ms`.
    pub siem_interval: std::time::Duration,
    /// See `ServeArgs::signal_interval_seconds`.
    pub signal_interval: std::time::Duration,
    /// See `ServeArgs::smtp_url` (it may carry a password).
    pub smtp_url: Option<SecretString>,
    pub mail_from: Option<String>,
    /// See `ServeArgs::mail_digest_seconds`.
    pub mail_digest: std::time::Duration,
    /// See `ServeArgs::cimd_allow_private`.
    pub cimd_allow_private: bool,
}

fn read_file_config(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(
            "PORTCULLIS_CONFIG",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    toml::from_str(&text).map_err(|e| bad("PORTCULLIS_CONFIG", format!("{}: {e}", path.display())))
}

impl StoreConfig {
    pub fn resolve(global: &GlobalArgs) -> Result<Self, ConfigError> {
        let file = read_file_config(global.config.as_deref())?;
        Self::resolve_with(global, &file)
    }

    fn resolve_with(global: &GlobalArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let data_dir = global
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./data"));
        let database = match global
            .database_url
            .clone()
            .or_else(|| file.database_url.clone())
        {
            Some(url) if !url.trim().is_empty() => {
                DatabaseLocation::parse(url.trim()).map_err(|m| bad("DATABASE_URL", m))?
            }
            _ => DatabaseLocation::Sqlite(data_dir.join("portcullis.db")),
        };
        Ok(Self {
            data_dir,
            database,
            log_format: global.log_format.or(file.log_format).unwrap_or_default(),
        })
    }
}

impl Settings {
    /// Resolves `serve`'s settings. `master_key` is passed in (read from the environment by
    /// `main`) so that this stays a pure function of its inputs.
    pub fn resolve(
        global: &GlobalArgs,
        serve: &ServeArgs,
        master_key: Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = read_file_config(global.config.as_deref())?;
        let store = StoreConfig::resolve_with(global, &file)?;
        let bind_raw = serve
            .bind
            .clone()
            .or_else(|| file.bind.clone())
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let bind: SocketAddr = bind_raw.trim().parse().map_err(|_| {
            bad(
                "PORTCULLIS_BIND",
                format!("{bind_raw:?} is not an address such as 127.0.0.1:8080"),
            )
        })?;
        let base_raw = serve
            .base_domain
            .clone()
            .or_else(|| file.base_domain.clone())
            .unwrap_or_else(|| "localhost".into());
        let base_domain =
            BaseDomain::parse(&base_raw).map_err(|e| bad("PORTCULLIS_BASE_DOMAIN", e.0))?;
        let site_root = serve
            .site_root
            .clone()
            .or_else(|| file.site_root.clone())
            .unwrap_or_else(default_site_root);
        let master_key = match master_key {
            Some(k) if !k.trim().is_empty() => Some(SecretString::from(k.trim().to_owned())),
            _ => None,
        };
        Ok(Self {
            store,
            bind,
            base_domain,
            public_scheme: serve
                .public_scheme
                .or(file.public_scheme)
                .unwrap_or_default(),
            public_port: serve.public_port.or(file.public_port),
            site_root,
            demo: serve.demo,
            master_key,
            master_key_previous: None,
            loopback_tenant: serve
                .loopback_tenant
                .as_deref()
                .or(file.loopback_tenant.as_deref())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            upstream_timeout: match serve.upstream_timeout.or(file.upstream_timeout) {
                Some(0) => {
                    return Err(bad(
                        "PORTCULLIS_UPSTREAM_TIMEOUT",
                        "must be at least 1 second",
                    ))
                }
                Some(s) => std::time::Duration::from_secs(s),
                None => std::time::Duration::from_secs(300),
            },
            upstream_ca_file: serve
                .upstream_ca_file
                .clone()
                .or_else(|| file.upstream_ca_file.clone()),
            gateway_max_body: match serve.gateway_max_body.or(file.gateway_max_body) {
                Some(n) if n < 1024 => {
                    return Err(bad(
                        "PORTCULLIS_GATEWAY_MAX_BODY",
                        "must be at least 1024 bytes",
                    ))
                }
                Some(n) => n,
                None => 4 * 1024 * 1024,
            },
            siem_interval: match serve.siem_interval_ms.or(file.siem_interval_ms) {
                Some(n) if !(50..=600_000).contains(&n) => {
                    return Err(bad(
                        "PORTCULLIS_SIEM_INTERVAL_MS",
                        "must be 50 to 600000 milliseconds",
                    ))
                }
                Some(n) => std::time::Duration::from_millis(n),
                None => std::time::Duration::from_secs(2),
            },
            signal_interval: match serve
                .signal_interval_seconds
                .or(file.signal_interval_seconds)
            {
                Some(n) if !(1..=86_400).contains(&n) => {
                    return Err(bad(
                        "PORTCULLIS_SIGNAL_INTERVAL_SECONDS",
                        "must be 1 to 86400 seconds",
                    ))
                }
                Some(n) => std::time::Duration::from_secs(n),
                None => std::time::Duration::from_secs(300),
            },
            cimd_allow_private: serve.cimd_allow_private,
            smtp_url: serve
                .smtp_url
                .clone()
                .filter(|u| !u.trim().is_empty())
                .map(|u| SecretString::from(u.trim().to_owned())),
            mail_from: serve.mail_from.clone().filter(|m| !m.trim().is_empty()),
            mail_digest: match serve.mail_digest_seconds {
                None => std::time::Duration::from_secs(300),
                Some(s @ 1..=86_400) => std::time::Duration::from_secs(s),
                Some(_) => {
                    return Err(bad(
                        "PORTCULLIS_MAIL_DIGEST_SECONDS",
                        "must be 1 to 86400 seconds",
                    ))
                }
            },
        })
    }
}

/// The built front end sits next to the binary (`scripts/build.sh` puts it there), so the
/// binary finds it wherever it is started from.
fn default_site_root() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("site")))
        .unwrap_or_else(|| PathBuf::from("site"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(bind: &str) -> ServeArgs {
        ServeArgs {
            bind: Some(bind.into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let s = Settings::resolve(&GlobalArgs::default(), &ServeArgs::default(), None).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.base_domain.as_str(), "localhost");
        assert_eq!(
            s.store.database,
            DatabaseLocation::Sqlite(PathBuf::from("./data/portcullis.db"))
        );
        assert!(s.master_key.is_none());
    }

    #[test]
    fn a_bad_value_names_its_setting() {
        let e = Settings::resolve(&GlobalArgs::default(), &serve("nonsense"), None).unwrap_err();
        assert_eq!(e.setting, "PORTCULLIS_BIND");
        let g = GlobalArgs {
            database_url: Some("mysql://x".into()),
            ..Default::default()
        };
        let e = Settings::resolve(&g, &ServeArgs::default(), None).unwrap_err();
        assert_eq!(e.setting, "DATABASE_URL");
        let s = ServeArgs {
            base_domain: Some("bad domain".into()),
            ..Default::default()
        };
        let e = Settings::resolve(&GlobalArgs::default(), &s, None).unwrap_err();
        assert_eq!(e.setting, "PORTCULLIS_BASE_DOMAIN");
    }

    #[test]
    fn the_toml_file_fills_in_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "bind = \"127.0.0.1:9999\"\nbase_domain = \"mcp.example.com\"\n",
        )
        .unwrap();
        let g = GlobalArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let s = Settings::resolve(&g, &ServeArgs::default(), None).unwrap();
        assert_eq!(s.bind.port(), 9999);
        assert_eq!(s.base_domain.as_str(), "mcp.example.com");
        let s = Settings::resolve(&g, &serve("127.0.0.1:7000"), None).unwrap();
        assert_eq!(s.bind.port(), 7000);
    }

    #[test]
    fn gateway_settings_come_from_the_file_or_flags_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "loopback_tenant = \"demo\"\nupstream_timeout = 30\ngateway_max_body = 65536\n",
        )
        .unwrap();
        let g = GlobalArgs {
            config: Some(path),
            ..Default::default()
        };
        let s = Settings::resolve(&g, &ServeArgs::default(), None).unwrap();
        assert_eq!(s.loopback_tenant.as_deref(), Some("demo"));
        assert_eq!(s.upstream_timeout, std::time::Duration::from_secs(30));
        assert_eq!(s.gateway_max_body, 65536);
        let d = Settings::resolve(&GlobalArgs::default(), &ServeArgs::default(), None).unwrap();
        assert_eq!(d.loopback_tenant, None);
        assert_eq!(d.upstream_timeout, std::time::Duration::from_secs(300));
        assert_eq!(d.gateway_max_body, 4 * 1024 * 1024);
        let zero = ServeArgs {
            upstream_timeout: Some(0),
            ..Default::default()
        };
        let e = Settings::resolve(&GlobalArgs::default(), &zero, None).unwrap_err();
        assert_eq!(e.setting, "PORTCULLIS_UPSTREAM_TIMEOUT");
        let tiny = ServeArgs {
            gateway_max_body: Some(10),
            ..Default::default()
        };
        let e = Settings::resolve(&GlobalArgs::default(), &tiny, None).unwrap_err();
        assert_eq!(e.setting, "PORTCULLIS_GATEWAY_MAX_BODY");
    }

    #[test]
    fn unknown_keys_in_the_toml_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "bnid = \"127.0.0.1:1\"\n").unwrap();
        let g = GlobalArgs {
            config: Some(path),
            ..Default::default()
        };
        let e = Settings::resolve(&g, &ServeArgs::default(), None).unwrap_err();
        assert_eq!(e.setting, "PORTCULLIS_CONFIG");
        assert!(e.message.contains("bnid"), "{}", e.message);
    }
}
