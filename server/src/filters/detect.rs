//! Detection of personal data and secrets in text: patterns find candidates, validators cut
//! the false positives (checksums — Luhn, ISO 13616 mod 97 —, number plans, SSN rules, JWT
//! headers that decode, entropy near key words), and overlapping findings resolve to the most
//! specific one. Pure and in memory; `scan` returns spans, never copies of the values.

use regex::Regex;
use std::sync::OnceLock;

/// What a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    Email,
    Phone,
    CreditCard,
    Iban,
    UsSsn,
    IpAddress,
    AwsAccessKey,
    AwsSecretKey,
    GcpApiKey,
    GithubToken,
    GitlabToken,
    SlackToken,
    StripeKey,
    Jwt,
    PrivateKey,
    DatabaseUrl,
    GenericSecret,
    NationalId,
    DateOfBirth,
    PostalAddress,
    PersonName,
}

impl Kind {
    pub const ALL: [Kind; 21] = [
        Kind::Email,
        Kind::Phone,
        Kind::CreditCard,
        Kind::Iban,
        Kind::UsSsn,
        Kind::IpAddress,
        Kind::AwsAccessKey,
        Kind::AwsSecretKey,
        Kind::GcpApiKey,
        Kind::GithubToken,
        Kind::GitlabToken,
        Kind::SlackToken,
        Kind::StripeKey,
        Kind::Jwt,
        Kind::PrivateKey,
        Kind::DatabaseUrl,
        Kind::GenericSecret,
        Kind::NationalId,
        Kind::DateOfBirth,
        Kind::PostalAddress,
        Kind::PersonName,
    ];

    /// The name used in corpora, audit records and placeholders.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Phone => "PHONE",
            Kind::CreditCard => "CREDIT_CARD",
            Kind::Iban => "IBAN",
            Kind::UsSsn => "US_SSN",
            Kind::IpAddress => "IP_ADDRESS",
            Kind::AwsAccessKey => "AWS_ACCESS_KEY",
            Kind::AwsSecretKey => "AWS_SECRET_KEY",
            Kind::GcpApiKey => "GCP_API_KEY",
            Kind::GithubToken => "GITHUB_TOKEN",
            Kind::GitlabToken => "GITLAB_TOKEN",
            Kind::SlackToken => "SLACK_TOKEN",
            Kind::StripeKey => "STRIPE_KEY",
            Kind::Jwt => "JWT",
            Kind::PrivateKey => "PRIVATE_KEY",
            Kind::DatabaseUrl => "DATABASE_URL",
            Kind::GenericSecret => "GENERIC_SECRET",
            Kind::NationalId => "NATIONAL_ID",
            Kind::DateOfBirth => "DATE_OF_BIRTH",
            Kind::PostalAddress => "POSTAL_ADDRESS",
            Kind::PersonName => "PERSON_NAME",
        }
    }

    /// Whether it is a secret (credentials) rather than personal data.
    pub fn is_secret(self) -> bool {
        !matches!(
            self,
            Kind::Email
                | Kind::Phone
                | Kind::CreditCard
                | Kind::Iban
                | Kind::UsSsn
                | Kind::IpAddress
                | Kind::NationalId
                | Kind::DateOfBirth
                | Kind::PostalAddress
                | Kind::PersonName
        )
    }

    /// Found from context alone and everywhere in business data (names, addresses): the
    /// blanket personal-data action only records them; a policy acts on them by naming them.
    pub fn opt_in(self) -> bool {
        matches!(self, Kind::PersonName | Kind::PostalAddress)
    }

    /// Which of two overlapping findings wins: the higher rank.
    fn rank(self) -> u8 {
        match self {
            Kind::PrivateKey => 100,
            Kind::DatabaseUrl => 90,
            Kind::Jwt => 85,
            Kind::AwsAccessKey
            | Kind::AwsSecretKey
            | Kind::GcpApiKey
            | Kind::GithubToken
            | Kind::GitlabToken
            | Kind::SlackToken
            | Kind::StripeKey => 80,
            Kind::Iban => 60,
            Kind::CreditCard => 55,
            Kind::NationalId => 52,
            Kind::UsSsn => 50,
            Kind::Email => 45,
            Kind::IpAddress => 40,
            Kind::Phone => 30,
            Kind::DateOfBirth => 35,
            Kind::PostalAddress => 25,
            Kind::GenericSecret => 20,
            Kind::PersonName => 10,
        }
    }
}

/// One finding: a byte span of the scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

struct Pattern {
    kind: Kind,
    /// The pattern runs only where one of these occurs (a cheap substring search first).
    needles: &'static [&'static str],
    re: Regex,
    /// Which capture group is the value (0: the whole match).
    group: usize,
    valid: fn(&str) -> bool,
}

impl Pattern {
    /// Whether the pattern can match `text` at all: one of its literals occurs, and the text's
    /// digits, colons and key words allow its kind.
    fn may_match(&self, text: &str, facts: &Facts) -> bool {
        (self.needles.is_empty() || self.needles.iter().any(|n| text.contains(n)))
            && facts.may_hold(self.kind)
    }
}

fn always(_: &str) -> bool {
    true
}

fn patterns() -> &'static [Pattern] {
    static P: OnceLock<Vec<Pattern>> = OnceLock::new();
    P.get_or_init(|| {
        // Every built-in pattern compiles (a unit test counts them).
        let p = |kind, re: &str, group, valid: fn(&str) -> bool| {
            Regex::new(re).ok().map(|re| Pattern {
                kind,
                needles: needles(kind),
                re,
                group,
                valid,
            })
        };
        vec![
            p(
                Kind::PrivateKey,
                r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----",
                0,
                always,
            ),
            p(
                Kind::DatabaseUrl,
                r"(?i)(?-u:\b)(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|clickhouse)://[^\s:/@'\x22<>]*:[^\s@'\x22<>]+@[^\s'\x22<>;)\]}]+",
                0,
                db_url,
            ),
            p(
                Kind::Jwt,
                r"(?-u:\b)eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}",
                0,
                jwt,
            ),
            p(Kind::AwsAccessKey, r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?-u:\b)", 0, always),
            p(
                Kind::AwsSecretKey,
                r#"(?i)(?:aws_?secret_?(?:access_?)?key|secretaccesskey|(?-u:\b)secret_key)["']?(?:\s*[:=]\s*|\s+)["']?([A-Za-z0-9/+=]{40})(?:[^A-Za-z0-9/+=]|$)"#,
                1,
                aws_secret,
            ),
            p(Kind::GcpApiKey, r"(?-u:\b)(AIza[0-9A-Za-z_-]{35})(?:[^0-9A-Za-z_-]|$)", 1, always),
            p(
                Kind::GithubToken,
                r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})(?-u:\b)",
                0,
                always,
            ),
            p(Kind::GitlabToken, r"(?-u:\b)(glpat-[A-Za-z0-9_-]{20})(?:[^A-Za-z0-9_-]|$)", 1, always),
            p(
                Kind::SlackToken,
                r"(?-u:\b)xox[abprs]-[0-9A-Za-z-]{10,}[0-9A-Za-z](?-u:\b)|https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{16,}",
                0,
                not_placeholder,
            ),
            p(Kind::StripeKey, r"(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{24,}(?-u:\b)", 0, not_placeholder),
            p(
                Kind::Iban,
                r"(?-u:\b)[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?-u:\b)",
                0,
                iban,
            ),
            p(Kind::CreditCard, r"(?-u:\b)\d(?:[ -]?\d){12,18}(?-u:\b)", 0, card),
            p(Kind::UsSsn, r"(?-u:\b)\d{3}[- ]\d{2}[- ]\d{4}(?-u:\b)", 0, ssn),
            p(
                Kind::Email,
                r"(?i)(?-u:\b)[a-z0-9][a-z0-9._%+-]{0,63}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.[a-z]{2,24}(?-u:\b)",
                0,
                email,
            ),
            p(
                Kind::IpAddress,
                r"(?-u:\b)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?-u:\b)",
                0,
                always,
            ),
            p(
                Kind::IpAddress,
                r"(?i)(?:^|[^0-9a-z:.])([0-9a-f]{0,4}:[0-9a-f:]*:[0-9a-f]{1,4})(?:$|[^0-9a-z:.])",
                1,
                ipv6,
            ),
            p(
                Kind::Phone,
                r"(?:\+|(?-u:\b)00)[1-9]\d{0,2}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}(?-u:\b)|\(\d{3}\) ?\d{3}[ .-]\d{4}(?-u:\b)|(?-u:\b)\d{3}[.-]\d{3}[.-]\d{4}(?-u:\b)|(?-u:\b)0[1-9]\d{1,3} \d{3,4} \d{3,4}(?-u:\b)",
                0,
                phone,
            ),
            p(
                Kind::GenericSecret,
                r#"(?i)[a-z_.-]*(?:password|passwd|pwd|secret|api[_-]?key|apikey|token|private[_-]?key|credentials?)[a-z0-9_-]*["']?\s*[:=]\s*["']?([^\s"',;`<>]{12,})"#,
                1,
                generic_secret,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    })
}

/// Every finding in `text`, in order, overlaps resolved (the more specific kind, then the
/// longer span, wins).
pub fn scan(text: &str) -> Vec<Finding> {
    resolve(candidates(text))
}

/// Scans the strings of a structured value at once: each with the name of the field that holds
/// it (`"dob": "1984-03-12"` is a date of birth, `"password": "…"` a secret; a name found in one
/// field is found again in the others). One scan of them all also pays the fixed cost of a scan
/// once instead of once per short string. The findings of each string, in its own offsets.
pub fn scan_fields(fields: &[(Option<&str>, &str)]) -> Vec<Vec<Finding>> {
    let mut joined = String::new();
    let mut ranges = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        if let Some(k) = key.filter(|k| k.len() <= 64 && !k.contains('\n')) {
            joined.push_str(k);
            joined.push_str(": ");
        }
        let start = joined.len();
        joined.push_str(value);
        ranges.push((start, joined.len()));
        joined.push_str("\n\n");
    }
    let all = candidates(&joined);
    // A candidate that spans two strings is none (a key and its value are not one secret).
    let mut per: Vec<Vec<Finding>> = vec![Vec::new(); fields.len()];
    for f in all {
        let i = ranges.partition_point(|&(_, end)| end < f.end);
        if let Some(&(start, end)) = ranges.get(i) {
            if start <= f.start && f.end <= end && f.start < f.end {
                per[i].push(Finding {
                    kind: f.kind,
                    start: f.start - start,
                    end: f.end - start,
                });
            }
        }
    }
    per.into_iter().map(resolve).collect()
}

/// Every candidate in `text`, overlapping.
fn candidates(text: &str) -> Vec<Finding> {
    let mut found: Vec<Finding> = Vec::new();
    let facts = Facts::of(text);
    for p in patterns() {
        if !p.may_match(text, &facts) {
            continue;
        }
        for c in p.re.captures_iter(text) {
            let Some(m) = c.get(p.group) else { continue };
            let mut end = m.end();
            // Trailing sentence punctuation is not part of a URL-like value.
            if p.kind == Kind::DatabaseUrl {
                end = m.start() + m.as_str().trim_end_matches(['.', ':', '!', '?']).len();
            }
            let value = &text[m.start()..end];
            if (p.valid)(value) && standalone(p.kind, text, m.start(), end) {
                found.push(Finding {
                    kind: p.kind,
                    start: m.start(),
                    end,
                });
            }
        }
    }
    let gates = super::gate::open(text);
    if facts.digits >= 8 || facts.upper_alnum {
        super::national::find(text, &facts.lower, gates, &mut found);
    }
    super::context::find(text, gates, &mut found);
    // The cells of a table, each read with its column's name as its label.
    if facts.lines >= 2 {
        for (column, start, end) in super::context::table_cells(text) {
            let cell = format!("{column}: {}", &text[start..end]);
            let offset = column.len() + 2;
            let mut inner = Vec::new();
            let lower = cell.to_ascii_lowercase();
            let gates = super::gate::open(&cell);
            super::national::find(&cell, &lower, gates, &mut inner);
            super::context::find(&cell, gates, &mut inner);
            found.extend(
                inner
                    .into_iter()
                    .filter(|f| f.start >= offset)
                    .map(|f| Finding {
                        kind: f.kind,
                        start: start + f.start - offset,
                        end: start + f.end - offset,
                    }),
            );
        }
    }
    found
}

/// Where the time of `scan` goes on `text`: each stage run `runs` times (for the benchmark).
#[doc(hidden)]
pub fn stage_times(text: &str, runs: u32) -> Vec<(String, std::time::Duration)> {
    use std::hint::black_box;
    use std::time::Instant;
    let mut out = Vec::new();
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..runs {
            f();
        }
        t.elapsed() / runs
    };
    out.push((
        "facts".to_owned(),
        time(&mut || {
            black_box(Facts::of(black_box(text)));
        }),
    ));
    let facts = Facts::of(text);
    for p in patterns() {
        let d = time(&mut || {
            if p.may_match(text, &facts) {
                black_box(p.re.captures_iter(text).count());
            }
        });
        out.push((format!("pattern {}", p.kind.name()), d));
    }
    out.push((
        "gate (one pass)".to_owned(),
        time(&mut || {
            black_box(super::gate::open(black_box(text)));
        }),
    ));
    out.push((
        "national ids".to_owned(),
        time(&mut || {
            let mut v = Vec::new();
            super::national::find(text, &facts.lower, super::gate::open(text), &mut v);
            black_box(v);
        }),
    ));
    for (name, f) in super::context::stages() {
        out.push((
            name.to_owned(),
            time(&mut || {
                let mut v = Vec::new();
                f(text, &mut v);
                black_box(v);
            }),
        ));
    }
    out.push((
        "table cells".to_owned(),
        time(&mut || {
            black_box(super::context::table_cells(text));
        }),
    ));
    out.push((
        "scan, all of it".to_owned(),
        time(&mut || {
            black_box(scan(text));
        }),
    ));
    out
}

/// Overlapping findings resolve to the more specific kind, then the longer span.
fn resolve(mut found: Vec<Finding>) -> Vec<Finding> {
    found.sort_by(|a, b| {
        b.kind
            .rank()
            .cmp(&a.kind.rank())
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Finding> = Vec::with_capacity(found.len());
    for f in found {
        if !kept.iter().any(|k| f.start < k.end && k.start < f.end) {
            kept.push(f);
        }
    }
    kept.sort_by_key(|f| f.start);
    kept
}

/// Numbers are not part of a longer run of digit groups (`3704 0044 0532` is no phone number
/// starting at `0044`), nor glued to letters.
fn standalone(kind: Kind, text: &str, start: usize, end: usize) -> bool {
    if !matches!(
        kind,
        Kind::Phone | Kind::CreditCard | Kind::UsSsn | Kind::IpAddress
    ) {
        return true;
    }
    let before = &text.as_bytes()[..start];
    let after = &text.as_bytes()[end..];
    let glued = |b: Option<&u8>, sep: Option<&u8>| match (b, sep) {
        (Some(c), _) if c.is_ascii_alphanumeric() => true,
        (Some(b' ' | b'-' | b'.'), Some(c)) => c.is_ascii_digit(),
        _ => false,
    };
    let n = before.len();
    let prev = before.last();
    let prev2 = n.checked_sub(2).and_then(|i| before.get(i));
    // A phone number's own `+` or `(` is part of it, not glue.
    if glued(prev, prev2) && !(kind == Kind::Phone && matches!(prev, Some(b'+'))) {
        return false;
    }
    let next = after.first();
    let next2 = after.get(1);
    // A sentence's full stop after a number is fine; a version's dot followed by a digit is not.
    !glued(next, next2)
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

/// The Luhn check of a digit string.
pub fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if !i.is_multiple_of(2) {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !d.is_empty() && sum.is_multiple_of(10)
}

fn card(s: &str) -> bool {
    // One separator style throughout (or none).
    let seps: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if seps.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    let d = digits(s);
    if !(13..=19).contains(&d.len()) || !luhn(&d) {
        return false;
    }
    if d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let n = |k: usize| d[..k].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let len = d.len();
    match d[0] {
        4 => matches!(len, 13 | 16 | 19),
        5 => (51..=55).contains(&n(2)) && len == 16,
        2 => (2221..=2720).contains(&n(4)) && len == 16,
        3 => {
            (matches!(n(2), 34 | 37) && len == 15)
                || (n(2) == 35 && (16..=19).contains(&len))
                || (matches!(n(2), 30 | 36 | 38 | 39) && (14..=19).contains(&len))
        }
        6 => {
            (n(4) == 6011 || n(2) == 65 || (644..=649).contains(&n(3)) || n(2) == 62)
                && (16..=19).contains(&len)
        }
        _ => false,
    }
}

/// IBAN lengths by country (ISO 13616 registry, the common ones).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "AD" => 24,
        "AT" => 20,
        "BE" => 16,
        "BG" => 22,
        "CH" => 21,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "EE" => 20,
        "ES" => 24,
        "FI" => 18,
        "FR" => 27,
        "GB" => 22,
        "GR" => 27,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IS" => 26,
        "IT" => 27,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "MT" => 31,
        "NL" => 18,
        "NO" => 15,
        "PL" => 28,
        "PT" => 25,
        "RO" => 24,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "TR" => 26,
        "AE" => 23,
        "SA" => 24,
        "IL" => 23,
        "BR" => 29,
        _ => return None,
    })
}

fn iban(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| *c != ' ').collect();
    let Some(len) = iban_length(&compact[..2]) else {
        return false;
    };
    if compact.len() != len {
        return false;
    }
    // Printed in groups: spaces only every four characters.
    if s.contains(' ') {
        let groups: Vec<&str> = s.split(' ').collect();
        if groups[..groups.len() - 1].iter().any(|g| g.len() != 4) {
            return false;
        }
    }
    let rearranged = format!("{}{}", &compact[4..], &compact[..4]);
    let mut rem = 0u32;
    for c in rearranged.chars() {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn ssn(s: &str) -> bool {
    let seps: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if seps.len() != 2 || seps[0] != seps[1] {
        return false;
    }
    let d = digits(s);
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    let serial = d[5..].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && domain.contains('.')
}

fn ipv6(s: &str) -> bool {
    s.matches(':').count() >= 2 && s.parse::<std::net::Ipv6Addr>().is_ok() && s.len() >= 3
}

fn phone(s: &str) -> bool {
    let d = digits(s);
    if !(8..=15).contains(&d.len()) {
        return false;
    }
    // `00` + country code: a full international number follows.
    if s.starts_with("00") && d.len() < 12 {
        return false;
    }
    // Not a run of one digit, and not a date-like or version-like string.
    !d.iter().all(|&x| x == d[0])
}

fn jwt(s: &str) -> bool {
    use base64::Engine;
    let mut parts = s.split('.');
    let (Some(h), Some(p)) = (parts.next(), parts.next()) else {
        return false;
    };
    let dec = |x: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(x.trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    };
    dec(h).is_some_and(|v| v.get("alg").is_some() || v.get("typ").is_some())
        && dec(p).is_some_and(|v| v.is_object())
}

/// What one pass over a text tells about which patterns can match at all (most strings of an
/// answer are short names and labels: they skip every numeric and key-word pattern).
struct Facts {
    digits: usize,
    colons: usize,
    dot: bool,
    key_word: bool,
    /// An upper-case letter next to a digit (a DNI, NIE or codice fiscale may follow).
    upper_alnum: bool,
    lines: usize,
    lower: String,
}

impl Facts {
    fn of(text: &str) -> Self {
        let (mut digits, mut colons, mut dot, mut upper_alnum) = (0, 0, false, false);
        let mut lines = 0;
        let mut prev = 0u8;
        for b in text.bytes() {
            match b {
                b'0'..=b'9' => {
                    digits += 1;
                    upper_alnum |= prev.is_ascii_uppercase();
                }
                b'A'..=b'Z' => upper_alnum |= prev.is_ascii_digit(),
                b':' => colons += 1,
                b'.' => dot = true,
                b'\n' => lines += 1,
                _ => {}
            }
            prev = b;
        }
        let lower = text.to_ascii_lowercase();
        let key_word = ["pass", "pwd", "secret", "key", "token", "credential"]
            .iter()
            .any(|w| lower.contains(w));
        Self {
            digits,
            colons,
            dot,
            key_word,
            upper_alnum,
            lines,
            lower,
        }
    }

    fn may_hold(&self, kind: Kind) -> bool {
        match kind {
            Kind::Phone | Kind::CreditCard | Kind::UsSsn | Kind::Iban => self.digits >= 8,
            // IPv4 needs digits and dots; IPv6 at least two colons.
            Kind::IpAddress => (self.digits >= 4 && self.dot) || self.colons >= 2,
            Kind::GenericSecret | Kind::AwsSecretKey => self.key_word,
            _ => true,
        }
    }
}

/// AWS secret keys are base64: both cases of letters (a 40-digit hex string is something else).
fn aws_secret(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_uppercase()) && s.bytes().any(|b| b.is_ascii_lowercase())
}

/// Literals one of which a match must contain (empty: the pattern always runs).
fn needles(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Email => &["@"],
        Kind::PrivateKey => &["PRIVATE KEY-----"],
        Kind::DatabaseUrl => &["://"],
        Kind::Jwt => &["eyJ"],
        Kind::AwsAccessKey => &["AKIA", "ASIA", "ABIA", "ACCA"],
        Kind::GcpApiKey => &["AIza"],
        Kind::GithubToken => &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        Kind::GitlabToken => &["glpat-"],
        Kind::SlackToken => &["xox", "hooks.slack.com"],
        Kind::StripeKey => &["sk_live_", "sk_test_", "rk_live_", "rk_test_"],
        _ => &[],
    }
}

fn db_url(s: &str) -> bool {
    // A password that is a placeholder is not a secret.
    let Some(rest) = s.split("://").nth(1) else {
        return false;
    };
    let Some(userinfo) = rest.rsplit_once('@').map(|(u, _)| u) else {
        return false;
    };
    let password = userinfo.split_once(':').map_or("", |(_, p)| p);
    !password.is_empty() && not_placeholder(password)
}

/// Placeholders and masks are not secrets.
fn not_placeholder(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    let body = l.rsplit('_').next().unwrap_or(&l);
    !(l.contains("xxxx")
        || l.contains("****")
        || l.contains("...")
        || l.starts_with('<')
        || l.starts_with("${")
        || l.starts_with("{{")
        || body.chars().all(|c| c == 'x' || c == '*' || c == '0')
        || [
            "password",
            "changeme",
            "example",
            "placeholder",
            "redacted",
            "your",
        ]
        .iter()
        .any(|w| l.contains(w)))
}

/// Shannon entropy in bits per character.
fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn generic_secret(s: &str) -> bool {
    let classes = [
        s.bytes().any(|b| b.is_ascii_lowercase()),
        s.bytes().any(|b| b.is_ascii_uppercase()),
        s.bytes().any(|b| b.is_ascii_digit()),
        s.bytes().any(|b| !b.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    // Short values need more kinds of characters (`portcullis-db` is a name, not a secret).
    let enough = if s.len() < 20 {
        classes >= 3
    } else {
        classes >= 2
    };
    s.len() >= 12 && enough && entropy(s) >= 3.2 && not_placeholder(s) && !s.contains("://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, &str)> {
        scan(text)
            .into_iter()
            .map(|f| (f.kind, &text[f.start..f.end]))
            .collect()
    }

    #[test]
    fn every_built_in_pattern_compiles() {
        assert_eq!(patterns().len(), 18);
        assert_eq!(super::super::national::PATTERNS, 9);
    }

    #[test]
    fn checksums_separate_cards_and_ibans_from_lookalikes() {
        assert_eq!(
            kinds("card 4111 1111 1111 1111 ok"),
            vec![(Kind::CreditCard, "4111 1111 1111 1111")]
        );
        assert!(kinds("order 4111111111111112").is_empty(), "fails Luhn");
        assert_eq!(
            kinds("pay to DE89 3704 0044 0532 0130 00."),
            vec![(Kind::Iban, "DE89 3704 0044 0532 0130 00")]
        );
        assert!(
            kinds("DE89 3704 0044 0532 0130 01").is_empty(),
            "fails mod 97"
        );
        assert!(kinds("ssn 000-12-3456 or 666-12-3456").is_empty());
        assert_eq!(kinds("ssn 123-45-6789"), vec![(Kind::UsSsn, "123-45-6789")]);
    }

    #[test]
    fn secrets_win_over_what_they_contain() {
        let t = "DATABASE_URL=postgres://app:S3cr3t-pa55@db.internal:5432/crm";
        assert_eq!(
            kinds(t),
            vec![(
                Kind::DatabaseUrl,
                "postgres://app:S3cr3t-pa55@db.internal:5432/crm"
            )]
        );
        let t = "key AKIAIOSFODNN7EXAMPLE and ghp_0123456789abcdefghijABCDEFGHIJklmnop";
        assert_eq!(
            kinds(t),
            vec![
                (Kind::AwsAccessKey, "AKIAIOSFODNN7EXAMPLE"),
                (
                    Kind::GithubToken,
                    "ghp_0123456789abcdefghijABCDEFGHIJklmnop"
                )
            ]
        );
        assert!(kinds("token: sk_test_xxxxxxxxxxxxxxxxxxxxxxxx").is_empty());
    }
}
