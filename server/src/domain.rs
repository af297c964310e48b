//! Domain types parsed once at the edge: tenant slugs, display names, emails, base domains and
//! bearer tokens. Inside the server, functions take these types, never raw strings.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// Why a value from outside was refused. The message names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err(msg: impl Into<String>) -> ParseError {
    ParseError(msg.into())
}

/// Subdomains that would be confusing or dangerous as tenant names: they look like platform
/// infrastructure (phishing bait) or collide with names operators commonly point elsewhere.
pub const RESERVED_SLUGS: &[&str] = &[
    "www",
    "api",
    "admin",
    "app",
    "auth",
    "login",
    "sso",
    "oauth",
    "mcp",
    "scim",
    "static",
    "assets",
    "pkg",
    "cdn",
    "mail",
    "smtp",
    "status",
    "metrics",
    "health",
    "platform",
    "console",
    "portal",
    "root",
    "system",
    "internal",
    "localhost",
    "portcullis",
    "support",
    "help",
    "docs",
];

/// A tenant's subdomain label: 2–63 characters of `a-z`, `0-9` and `-`, starting with a letter
/// and not ending with `-` (DNS label rules, lowercase only), and not a reserved name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantSlug(String);

impl TenantSlug {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        if s.len() < 2 || s.len() > 63 {
            return Err(err(format!(
                "tenant slug {s:?} must be 2 to 63 characters long"
            )));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err(format!(
                "tenant slug {s:?} may contain only lowercase letters a-z, digits and '-'"
            )));
        }
        if !s.as_bytes()[0].is_ascii_lowercase() {
            return Err(err(format!("tenant slug {s:?} must start with a letter")));
        }
        if s.ends_with('-') {
            return Err(err(format!("tenant slug {s:?} must not end with '-'")));
        }
        if s.contains("--") {
            // Blocks IDNA-looking labels such as "xn--…" and keeps slugs readable.
            return Err(err(format!("tenant slug {s:?} must not contain '--'")));
        }
        if RESERVED_SLUGS.contains(&s) {
            return Err(err(format!("tenant slug {s:?} is reserved")));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A human-facing name (tenant display name): 1–100 characters after trimming, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(err("name must not be empty"));
        }
        if s.chars().count() > 100 {
            return Err(err("name must be at most 100 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(err("name must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, lowercased. Deliberately simple: one `@`, a non-empty local part, a domain
/// with a dot; the identity provider remains the authority on real addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim().to_lowercase();
        let bad = || err(format!("{s:?} is not an email address"));
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(bad());
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The domain under which tenants get their subdomains (`localhost` by default): one or more
/// DNS labels, lowercase, no port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseDomain(String);

impl BaseDomain {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim().trim_end_matches('.').to_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if s.is_empty() || s.len() > 200 || !s.split('.').all(label_ok) {
            return Err(err(format!(
                "{raw:?} is not a domain name (for example: localhost, mcp.example.com)"
            )));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A server's path segment in the gateway (`/mcp/{slug}`): 1–63 characters of `a-z`, `0-9`
/// and `-`, starting with a letter or digit, not ending with `-`; `agents` is taken by the agent
/// endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerSlug(String);

impl ServerSlug {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        if s.is_empty() || s.len() > 63 {
            return Err(err(format!(
                "server slug {s:?} must be 1 to 63 characters long"
            )));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err(format!(
                "server slug {s:?} may contain only lowercase letters a-z, digits and '-'"
            )));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(err(format!(
                "server slug {s:?} must not start or end with '-'"
            )));
        }
        if s == "agents" {
            return Err(err(
                "server slug \"agents\" is reserved for agent endpoints",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A registry's slug: the same rules as a server slug (lowercase letters, digits, '-').
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistrySlug(String);

impl RegistrySlug {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim();
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(err(format!(
                "registry slug {s:?} must be 1 to 63 lowercase letters a-z, digits and '-', not starting or ending with '-'"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An upstream server's URL: absolute http(s), with a host, no credentials in it (they belong in
/// the vault, not in a URL that is shown and logged).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UpstreamUrl(url::Url);

impl UpstreamUrl {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let u =
            url::Url::parse(raw.trim()).map_err(|e| err(format!("{raw:?} is not a URL ({e})")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(err(format!(
                "upstream URL must be http or https, not {}",
                u.scheme()
            )));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(err("upstream URL needs a host"));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(err(
                "upstream URL must not carry credentials; configure them as the server's credential",
            ));
        }
        Ok(Self(u))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl TryFrom<String> for UpstreamUrl {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<UpstreamUrl> for String {
    fn from(u: UpstreamUrl) -> String {
        u.0.into()
    }
}

/// Whether one stdio process serves every user of a server, or each user gets their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdioInstance {
    #[default]
    Shared,
    PerUser,
}

/// How the gateway reaches an upstream MCP server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "transport", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerTransport {
    /// Remote Streamable HTTP (either protocol era).
    StreamableHttp { url: UpstreamUrl },
    /// Legacy HTTP+SSE (2024-11-05).
    Sse { url: UpstreamUrl },
    /// A local command the gateway launches and supervises.
    Stdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        #[serde(default)]
        instance: StdioInstance,
        /// Run inside a bubblewrap sandbox: read-only system, private /tmp, no data dir.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        sandbox: bool,
    },
}

impl ServerTransport {
    /// Checks what serde cannot: a stdio command must be present and free of NUL bytes.
    pub fn validate(self) -> Result<Self, ParseError> {
        if let ServerTransport::Stdio {
            command, args, cwd, ..
        } = &self
        {
            if command.trim().is_empty() {
                return Err(err("a stdio server needs a command"));
            }
            let nul = |s: &str| s.contains('\0');
            if nul(command) || args.iter().any(|a| nul(a)) || cwd.as_deref().is_some_and(nul) {
                return Err(err(
                    "command, arguments and working directory must not contain NUL",
                ));
            }
            if let Some(dir) = cwd {
                if !dir.starts_with('/') {
                    return Err(err("the working directory must be an absolute path"));
                }
            }
        }
        Ok(self)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ServerTransport::StreamableHttp { .. } => "streamable_http",
            ServerTransport::Sse { .. } => "sse",
            ServerTransport::Stdio { .. } => "stdio",
        }
    }
}

/// What kind of bearer token a string claims to be, by its prefix. Prefixes make leaked tokens
/// recognisable to secret scanners and let us reject a token of the wrong kind before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A tenant admin token: `pct_admin_…`.
    TenantAdmin,
    /// The platform operator token: `pct_platform_…`.
    Platform,
    /// A user's token for MCP clients at the gateway: `pct_user_…`.
    User,
    /// The tenant's SCIM provisioning token (the IdP's bearer for `/scim/v2`): `pct_scim_…`.
    Scim,
    /// An OAuth access token for one gateway endpoint: `pct_oat_…` (short-lived).
    OAuthAccess,
    /// An OAuth refresh token: `pct_ort_…` (rotated on use).
    OAuthRefresh,
    /// An OAuth authorization code: `pct_oac_…` (one use, a minute).
    OAuthCode,
    /// An agent's token for its endpoint `/mcp/agents/{slug}`: `pct_agent_…`.
    Agent,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::TenantAdmin => "pct_admin_",
            TokenKind::Platform => "pct_platform_",
            TokenKind::User => "pct_user_",
            TokenKind::Scim => "pct_scim_",
            TokenKind::OAuthAccess => "pct_oat_",
            TokenKind::OAuthRefresh => "pct_ort_",
            TokenKind::OAuthCode => "pct_oac_",
            TokenKind::Agent => "pct_agent_",
        }
    }
}

/// A freshly generated secret token: shown to its owner once, stored only as its hash.
pub struct NewToken {
    pub plaintext: secrecy::SecretString,
    pub hash: TokenHash,
}

impl NewToken {
    /// 256 bits from the OS generator, base64url, behind the kind's prefix.
    pub fn generate(kind: TokenKind) -> Self {
        use base64::Engine;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let plaintext = format!("{}{}", kind.prefix(), body);
        let hash = TokenHash::of(&plaintext);
        Self {
            plaintext: plaintext.into(),
            hash,
        }
    }
}

/// SHA-256 of a token, hex. Tokens carry 256 random bits, so a fast hash is enough (no
/// dictionary to attack), and lookups by hash take constant time in the token's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(hex::encode(Sha256::digest(token.as_bytes())))
    }

    /// Hashes a presented token after checking it has the expected shape, so that garbage
    /// never reaches the database.
    pub fn of_presented(kind: TokenKind, token: &str) -> Option<Self> {
        let token = token.trim();
        let body = token.strip_prefix(kind.prefix())?;
        if body.len() != 43
            || !body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        Some(Self::of(token))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn slugs_follow_dns_label_rules() {
        for ok in ["acme", "a1", "acme-corp", "x9-y"] {
            assert_eq!(TenantSlug::parse(ok).map(|s| s.0), Ok(ok.to_string()));
        }
        for bad in [
            "",
            "a",
            "Acme",
            "acme_corp",
            "-acme",
            "acme-",
            "1acme",
            "ac--me",
            "xn--abc",
            "acme.io",
            "ac me",
            "é",
        ] {
            assert!(TenantSlug::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(TenantSlug::parse(&"a".repeat(63)).is_ok());
        assert!(TenantSlug::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn reserved_slugs_are_refused_with_a_reason() {
        for r in ["www", "api", "admin"] {
            let e = TenantSlug::parse(r).unwrap_err();
            assert!(e.0.contains("reserved"), "{e}");
        }
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            Email::parse(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@example",
            "a b@example.com",
            "a@b@c.d",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Acme  ").unwrap().as_str(), "Acme");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("a\u{7}b").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
    }

    #[test]
    fn base_domains_are_dns_names() {
        assert_eq!(
            BaseDomain::parse("Example.COM.").unwrap().as_str(),
            "example.com"
        );
        assert!(BaseDomain::parse("localhost").is_ok());
        for bad in ["", "exa mple.com", "-a.com", "a..b", "host:8080"] {
            assert!(BaseDomain::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn server_slugs_are_path_segments() {
        for ok in ["crm", "hr-2", "9lives"] {
            assert!(ServerSlug::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "CRM",
            "a/b",
            "-x",
            "x-",
            "agents",
            "a b",
            "..",
            &"a".repeat(64),
        ] {
            assert!(ServerSlug::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn upstream_urls_are_http_without_credentials() {
        assert!(UpstreamUrl::parse("https://mcp.example.com/mcp").is_ok());
        assert!(UpstreamUrl::parse("http://127.0.0.1:3000/mcp").is_ok());
        for bad in [
            "ftp://x/y",
            "not a url",
            "https://user:pw@x.example/mcp",
            "file:///etc/passwd",
        ] {
            assert!(UpstreamUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn transports_round_trip_and_reject_unknown_fields() {
        let t: ServerTransport = serde_json::from_str(
            r#"{"transport":"stdio","command":"npx","args":["-y","srv"],"instance":"per_user"}"#,
        )
        .unwrap();
        assert_eq!(t.kind(), "stdio");
        let back = serde_json::to_value(&t).unwrap();
        assert_eq!(back["instance"], "per_user");
        assert!(serde_json::from_str::<ServerTransport>(
            r#"{"transport":"sse","url":"https://x.example/sse","extra":1}"#
        )
        .is_err());
        assert!(serde_json::from_str::<ServerTransport>(
            r#"{"transport":"streamable_http","url":"gopher://x"}"#
        )
        .is_err());
        let empty = ServerTransport::Stdio {
            command: " ".into(),
            args: vec![],
            cwd: None,
            instance: StdioInstance::Shared,
            sandbox: false,
        };
        assert!(empty.validate().is_err());
    }

    #[test]
    fn generated_tokens_verify_only_with_their_own_kind() {
        let t = NewToken::generate(TokenKind::TenantAdmin);
        let plain = t.plaintext.expose_secret();
        assert_eq!(
            TokenHash::of_presented(TokenKind::TenantAdmin, plain),
            Some(t.hash.clone())
        );
        assert_eq!(TokenHash::of_presented(TokenKind::Platform, plain), None);
        assert_eq!(
            TokenHash::of_presented(TokenKind::TenantAdmin, "pct_admin_short"),
            None
        );
        assert_ne!(t.hash, NewToken::generate(TokenKind::TenantAdmin).hash);
    }
}
