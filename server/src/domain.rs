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

/// What kind of bearer token a string claims to be, by its prefix. Prefixes make leaked tokens
/// recognisable to secret scanners and let us reject a token of the wrong kind before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A tenant admin token: `pct_admin_…`.
    TenantAdmin,
    /// The platform operator token: `pct_platform_…`.
    Platform,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::TenantAdmin => "pct_admin_",
            TokenKind::Platform => "pct_platform_",
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
