//! SCIM filter expressions (RFC 7644 §3.4.2.2) and PATCH paths (RFC 7644 §3.5.2),
//! parsed into a small AST and evaluated directly against resources held as
//! `serde_json::Value`.
//!
//! # Why a hand-written parser
//!
//! The `scim_v2` crate (0.4.2) was evaluated first. Its `filter` module does parse
//! to an AST we could evaluate (and/or/not, parentheses, value paths, sub-attributes,
//! `pr`, every comparison operator), but it was rejected because:
//! - weight: it adds ~21 crates (`lalrpop-util` + `regex-automata`/`regex-syntax`,
//!   `fluent-uri`, `ref-cast` with its proc-macro, `thiserror`) plus SCIM model types
//!   and a 13.7k-line generated parser that we do not need;
//! - cost: the lalrpop lexer rebuilds its regex matcher on every parse (~220 µs for
//!   `userName eq "x"`, measured, release build), paid on every list request;
//! - behaviour: it rejects `not(title pr)` (the RFC ABNF allows no space before
//!   the `(`), allows nesting 64 deep where we want 32, and its error messages
//!   report byte ranges such as `found at 3:4` rather than a message we control.
//!
//! The grammar is small, so the recursive-descent parser below (about 300 lines)
//! avoids all of that and enforces our own input bounds.
//!
//! # Grammar (RFC 7644 §3.4.2.2, with `and` binding tighter than `or`)
//!
//! ```text
//! filter    = and-expr *("or" and-expr)
//! and-expr  = unary *("and" unary)
//! unary     = "not" "(" filter ")" / "(" filter ")" / attr-expr
//! attr-expr = attrPath "pr" / attrPath compareOp compValue / attrPath "[" filter "]"
//! attrPath  = [URN ":"] ATTRNAME ["." subAttr]
//! ```
//!
//! Keywords and operators are case-insensitive. Inputs longer than [`MAX_FILTER_LEN`]
//! bytes or nested deeper than [`MAX_DEPTH`] (parentheses, `not`, value paths) are
//! rejected, so hostile input cannot overflow the stack: `and`/`or` chains are parsed
//! iteratively into n-ary nodes, and recursion only follows nesting.

use serde_json::{Number, Value};
use std::borrow::Cow;
use std::cmp::Ordering;

/// Longest filter (or PATCH path) accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;

/// Deepest nesting of parentheses, `not ( … )` and value paths accepted.
pub const MAX_DEPTH: usize = 32;

/// Core User schema URN; a path prefixed with it names a top-level attribute.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// Core Group schema URN; a path prefixed with it names a top-level attribute.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// Enterprise User extension URN; its attributes live in an object under this key.
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Whether `urn` is one of the core schemas whose attributes sit at the top level.
pub fn is_core_schema(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(USER_SCHEMA) || urn.eq_ignore_ascii_case(GROUP_SCHEMA)
}

/// If `s` names a whole extension schema rather than an attribute, returns the key
/// its object lives under in `resource`: the existing key's spelling if present,
/// otherwise `s` (or the canonical enterprise URN). Recognised: the enterprise User
/// URN, any URN already present as a top-level key, and any `urn:…:User` /
/// `urn:…:Group`. Core User/Group URNs (not extensions) give `None`.
pub fn whole_schema_key(resource: &Value, s: &str) -> Option<String> {
    let s = s.trim();
    let is_urn = s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
    let urn_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ":.-_".contains(c));
    if !is_urn || !urn_chars || is_core_schema(s) {
        return None;
    }
    if let Some(key) = resource
        .as_object()
        .and_then(|m| m.keys().find(|k| k.eq_ignore_ascii_case(s)))
    {
        return Some(key.clone());
    }
    if s.eq_ignore_ascii_case(ENTERPRISE_USER_SCHEMA) {
        return Some(ENTERPRISE_USER_SCHEMA.to_string());
    }
    let last = s.rsplit(':').next().unwrap_or_default();
    if last.eq_ignore_ascii_case("User") || last.eq_ignore_ascii_case("Group") {
        return Some(s.to_string());
    }
    None
}

/// An attribute reference: `name`, `name.subAttr`, optionally qualified by a schema URN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// Extension schema URN (as written) when the path was qualified by a non-core
    /// schema; the attribute then lives inside the resource's object under that key.
    /// Core User/Group URNs are stripped and leave this `None`.
    pub schema: Option<String>,
    /// Attribute name as written (matched case-insensitively).
    pub name: String,
    /// Sub-attribute name as written, e.g. `familyName` in `name.familyName`.
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// Whether this path names the core attribute `name` (case-insensitive), with no
    /// schema qualifier and no sub-attribute.
    pub fn is_core(&self, name: &str) -> bool {
        self.schema.is_none() && self.sub_attr.is_none() && self.name.eq_ignore_ascii_case(name)
    }
}

/// Comparison operators of RFC 7644 §3.4.2.2 (`pr` is [`Filter::Present`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn from_keyword(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }

    fn keyword(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
}

/// A parsed SCIM filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// All of the terms (two or more) match.
    And(Vec<Filter>),
    /// Any of the terms (two or more) matches.
    Or(Vec<Filter>),
    /// `not ( … )`.
    Not(Box<Filter>),
    /// `attr pr`: the attribute has a value that is not null, `""`, `[]` or `{}`.
    Present(AttrPath),
    /// `attr op value`; `value` is a JSON string, number, boolean or null.
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: Value,
    },
    /// `attr[filter]`: some element of the (multi-valued) attribute matches `filter`,
    /// whose paths are relative to the element.
    ValuePath { attr: AttrPath, filter: Box<Filter> },
}

/// A PATCH operation path (RFC 7644 §3.5.2): `attrPath` or `valuePath ["." subAttr]`.
///
/// `name.familyName` gives `attr = {name, sub_attr: familyName}` and no filter;
/// `emails[type eq "work"].value` gives `attr = {emails, sub_attr: value}` with the
/// filter `type eq "work"`, to be applied to each element of `emails`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
}

/// Parses a SCIM filter (RFC 7644 §3.4.2.2). Err carries a human message for a SCIM 400 invalidFilter.
pub fn parse(input: &str) -> Result<Filter, String> {
    let mut parser = Parser::new(input)?;
    if parser.toks.is_empty() {
        return Err("empty filter".to_string());
    }
    let filter = parser.parse_or(false)?;
    if let Some(tok) = parser.peek() {
        return Err(parser.unexpected(Some(tok), "'and', 'or' or end of filter"));
    }
    Ok(filter)
}

/// Parses a PATCH `path` (RFC 7644 §3.5.2), e.g. `displayName`, `name.familyName`,
/// `members[value eq "id"]`, `emails[type eq "work"].value`, optionally URN-prefixed.
/// Err carries a human message for a SCIM 400 invalidPath.
pub fn parse_path(input: &str) -> Result<PatchPath, String> {
    let mut parser = Parser::new(input)?;
    let mut attr = match parser.next() {
        Some(Token {
            kind: TokKind::Word(word),
            pos,
            ..
        }) => parse_attr_word(&word, pos)?,
        other => return Err(parser.unexpected(other.as_ref(), "an attribute name")),
    };
    let mut filter = None;
    if let Some(open) = parser.eat(&TokKind::LBracket) {
        if attr.sub_attr.is_some() {
            return Err(format!(
                "a value filter cannot follow a sub-attribute (position {open})"
            ));
        }
        parser.enter()?;
        let inner = parser.parse_or(true)?;
        parser.expect_close(&TokKind::RBracket, "']'", open)?;
        parser.leave();
        filter = Some(inner);
        if parser.eat(&TokKind::Dot).is_some() {
            match parser.next() {
                Some(Token {
                    kind: TokKind::Word(word),
                    ..
                }) if valid_name(&word) => attr.sub_attr = Some(word),
                Some(Token { pos, .. }) => {
                    return Err(format!("invalid sub-attribute name at position {pos}"))
                }
                None => return Err("missing sub-attribute name after '.'".to_string()),
            }
        }
    }
    if let Some(tok) = parser.peek() {
        return Err(parser.unexpected(Some(tok), "end of path"));
    }
    Ok(PatchPath { attr, filter })
}

impl Filter {
    /// Whether the SCIM resource (full JSON representation, e.g. {"userName":…, "emails":[{"value":…,"type":"work","primary":true}], "name":{"familyName":…}, "members":[{"value":"id","display":…}], "meta":{…}}) matches.
    pub fn matches(&self, resource: &Value) -> bool {
        self.eval(resource, None)
    }

    /// Whether one element of the multi-valued attribute `parent` (e.g. one entry of
    /// `members`) matches this filter, read as the inside of `parent[…]`. Used by PATCH
    /// to select the elements a value-path targets.
    pub fn matches_element(&self, parent: &str, element: &Value) -> bool {
        self.eval(element, Some(parent))
    }

    /// Evaluates against `node`; `parent` names the multi-valued attribute when `node`
    /// is one of its elements (it decides case-exactness of `value`).
    fn eval(&self, node: &Value, parent: Option<&str>) -> bool {
        match self {
            Filter::And(terms) => terms.iter().all(|t| t.eval(node, parent)),
            Filter::Or(terms) => terms.iter().any(|t| t.eval(node, parent)),
            Filter::Not(inner) => !inner.eval(node, parent),
            Filter::Present(path) => raw_values(node, path).into_iter().any(is_present),
            Filter::Compare { path, op, value } => compare(node, parent, path, *op, value),
            Filter::ValuePath { attr, filter } => match attr_value(node, attr) {
                Some(Value::Array(items)) => items.iter().any(|e| filter.eval(e, Some(&attr.name))),
                Some(obj @ Value::Object(_)) => filter.eval(obj, Some(&attr.name)),
                _ => false,
            },
        }
    }
}

/// Case-insensitive lookup of `key` in a JSON object (an exact match wins).
pub fn get_ci<'a>(node: &'a Value, key: &str) -> Option<&'a Value> {
    let map = node.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The attribute `path.name` of `node`, looked up inside the extension object when
/// the path carries a schema URN. The sub-attribute is not applied.
fn attr_value<'a>(node: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    let container = match &path.schema {
        Some(urn) => get_ci(node, urn)?,
        None => node,
    };
    get_ci(container, &path.name)
}

/// The values `path` designates: the attribute itself, or its sub-attribute taken
/// from the attribute (if complex) or from every element (if multi-valued).
fn raw_values<'a>(node: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let Some(value) = attr_value(node, path) else {
        return Vec::new();
    };
    match (&path.sub_attr, value) {
        (None, v) => vec![v],
        (Some(sub), Value::Array(items)) => items.iter().filter_map(|e| get_ci(e, sub)).collect(),
        (Some(sub), v) => get_ci(v, sub).into_iter().collect(),
    }
}

/// The scalar values a comparison is made against: arrays contribute each element,
/// and complex values (objects) contribute their `value` sub-attribute.
fn comparable_values<'a>(node: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    fn push<'a>(out: &mut Vec<&'a Value>, v: &'a Value) {
        match v {
            Value::Object(_) => out.extend(get_ci(v, "value")),
            Value::Null => {}
            other => out.push(other),
        }
    }
    let mut out = Vec::new();
    for v in raw_values(node, path) {
        match v {
            Value::Array(items) => items.iter().for_each(|e| push(&mut out, e)),
            other => push(&mut out, other),
        }
    }
    out
}

/// SCIM "present": not null, not an empty string, array or object.
fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Attributes compared case-sensitively (caseExact in RFC 7643): `id`, `externalId`,
/// `members` / `members.value`, and `value` inside a `members[…]` value filter.
fn is_case_exact(parent: Option<&str>, path: &AttrPath) -> bool {
    if path.schema.is_some() {
        return false;
    }
    let name = path.name.as_str();
    let sub_is_value = path
        .sub_attr
        .as_deref()
        .is_none_or(|s| s.eq_ignore_ascii_case("value"));
    match parent {
        None => {
            path.is_core("id")
                || path.is_core("externalId")
                || (name.eq_ignore_ascii_case("members") && sub_is_value)
        }
        Some(p) => p.eq_ignore_ascii_case("members") && path.is_core("value"),
    }
}

/// Evaluates `path op literal` with "any value matches" semantics, except `ne`, which
/// holds when no value equals the literal (so it also holds for an absent attribute).
fn compare(
    node: &Value,
    parent: Option<&str>,
    path: &AttrPath,
    op: CompareOp,
    lit: &Value,
) -> bool {
    if lit.is_null() {
        // `eq null` means unassigned, `ne null` means present (RFC 7643 §2.5).
        let present = raw_values(node, path).into_iter().any(is_present);
        return match op {
            CompareOp::Eq => !present,
            CompareOp::Ne => present,
            _ => false,
        };
    }
    let exact = is_case_exact(parent, path);
    let values = comparable_values(node, path);
    match op {
        CompareOp::Ne => !values
            .iter()
            .any(|v| compare_one(v, CompareOp::Eq, lit, exact)),
        _ => values.iter().any(|v| compare_one(v, op, lit, exact)),
    }
}

/// Compares one attribute value with a literal; mismatched types never match.
fn compare_one(value: &Value, op: CompareOp, lit: &Value, exact: bool) -> bool {
    match (value, lit) {
        (Value::String(a), Value::String(b)) => {
            let (a, b): (Cow<str>, Cow<str>) = if exact {
                (Cow::Borrowed(a), Cow::Borrowed(b))
            } else {
                (Cow::Owned(a.to_lowercase()), Cow::Owned(b.to_lowercase()))
            };
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Co => a.contains(b.as_ref()),
                CompareOp::Sw => a.starts_with(b.as_ref()),
                CompareOp::Ew => a.ends_with(b.as_ref()),
                CompareOp::Gt => a > b,
                CompareOp::Ge => a >= b,
                CompareOp::Lt => a < b,
                CompareOp::Le => a <= b,
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            let Some(ord) = cmp_numbers(a, b) else {
                return false;
            };
            match op {
                CompareOp::Eq => ord == Ordering::Equal,
                CompareOp::Ne => ord != Ordering::Equal,
                CompareOp::Gt => ord == Ordering::Greater,
                CompareOp::Ge => ord != Ordering::Less,
                CompareOp::Lt => ord == Ordering::Less,
                CompareOp::Le => ord != Ordering::Greater,
                CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
            }
        }
        (Value::Bool(a), Value::Bool(b)) => match op {
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
            _ => false,
        },
        _ => false,
    }
}

/// Numeric ordering: exact for integers, via f64 otherwise.
fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// ATTRNAME = ALPHA *(nameChar); `$ref` is also allowed (RFC 7643 uses it).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = match chars.next() {
        Some(c) => c.is_ascii_alphabetic() || (c == '$' && name.len() > 1),
        None => false,
    };
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Splits an attribute word (`[URN ":"] name ["." sub]`) into an [`AttrPath`].
/// The URN is everything before the last `:` (it may itself contain dots, as in
/// `…:core:2.0:User`); core User/Group URNs are dropped.
pub fn parse_attr_word(word: &str, pos: usize) -> Result<AttrPath, String> {
    let is_urn = word
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
    let (schema, rest) = match word.rfind(':') {
        Some(idx) if is_urn => (Some(&word[..idx]), &word[idx + 1..]),
        _ => (None, word),
    };
    let (name, sub_attr) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    if !valid_name(name) || !sub_attr.is_none_or(valid_name) {
        return Err(format!(
            "invalid attribute path '{}' at position {pos}",
            clip(word)
        ));
    }
    Ok(AttrPath {
        schema: schema.filter(|s| !is_core_schema(s)).map(str::to_string),
        name: name.to_string(),
        sub_attr: sub_attr.map(str::to_string),
    })
}

/// Shortens user input quoted in error messages.
fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
enum TokKind {
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// A `.` that starts a token, i.e. the one in `…].subAttr`.
    Dot,
    /// Attribute path, keyword, operator or `true`/`false`/`null`.
    Word(String),
    /// Decoded string literal.
    Str(String),
    Num(Number),
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokKind,
    /// Byte offset of the token in the input.
    pos: usize,
    /// Byte length of the token in the input.
    len: usize,
}

/// Splits the input into tokens; string and number literals are decoded as JSON.
fn lex(input: &str) -> Result<Vec<Token>, String> {
    let bytes = input.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let single = match b {
            b'(' => Some(TokKind::LParen),
            b')' => Some(TokKind::RParen),
            b'[' => Some(TokKind::LBracket),
            b']' => Some(TokKind::RBracket),
            b'.' => Some(TokKind::Dot),
            _ => None,
        };
        if let Some(kind) = single {
            toks.push(Token {
                kind,
                pos: start,
                len: 1,
            });
            i += 1;
        } else if b.is_ascii_whitespace() {
            i += 1;
        } else if b == b'"' {
            // Scan to the closing quote; UTF-8 continuation bytes never equal '"' or '\\'.
            i += 1;
            loop {
                match bytes.get(i) {
                    None => {
                        return Err(format!("unterminated string starting at position {start}"))
                    }
                    Some(b'\\') => i += 2,
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            i += 1;
            let text = input.get(start..i).unwrap_or_default();
            let s: String = serde_json::from_str(text)
                .map_err(|_| format!("invalid string literal at position {start}"))?;
            toks.push(Token {
                kind: TokKind::Str(s),
                pos: start,
                len: i - start,
            });
        } else if b.is_ascii_digit() || b == b'-' {
            while i < bytes.len()
                && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            {
                i += 1;
            }
            let text = input.get(start..i).unwrap_or_default();
            let n: Number = serde_json::from_str(text)
                .map_err(|_| format!("invalid number '{}' at position {start}", clip(text)))?;
            toks.push(Token {
                kind: TokKind::Num(n),
                pos: start,
                len: i - start,
            });
        } else if b.is_ascii_alphabetic() || b == b'$' || b == b'_' {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric()
                    || matches!(bytes[i], b'_' | b'-' | b':' | b'.' | b'$'))
            {
                i += 1;
            }
            let text = input.get(start..i).unwrap_or_default();
            toks.push(Token {
                kind: TokKind::Word(text.to_string()),
                pos: start,
                len: i - start,
            });
        } else {
            let c = input
                .get(start..)
                .and_then(|s| s.chars().next())
                .unwrap_or('?');
            return Err(format!("unexpected character '{c}' at position {start}"));
        }
    }
    Ok(toks)
}

/// Recursive-descent parser over the token list; `depth` bounds the recursion.
struct Parser<'a> {
    input: &'a str,
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Self, String> {
        if input.len() > MAX_FILTER_LEN {
            return Err(format!("filter is longer than {MAX_FILTER_LEN} bytes"));
        }
        Ok(Parser {
            input,
            toks: lex(input)?,
            i: 0,
            depth: 0,
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn peek_at(&self, offset: usize) -> Option<&Token> {
        self.toks.get(self.i + offset)
    }

    fn next(&mut self) -> Option<Token> {
        let tok = self.toks.get(self.i).cloned();
        if tok.is_some() {
            self.i += 1;
        }
        tok
    }

    /// Consumes the next token if it is `kind`, returning its position.
    fn eat(&mut self, kind: &TokKind) -> Option<usize> {
        match self.peek() {
            Some(tok) if &tok.kind == kind => {
                let pos = tok.pos;
                self.i += 1;
                Some(pos)
            }
            _ => None,
        }
    }

    /// Whether the next token is the (case-insensitive) keyword `kw`.
    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token { kind: TokKind::Word(w), .. }) if w.eq_ignore_ascii_case(kw))
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("filter is nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn unexpected(&self, tok: Option<&Token>, expected: &str) -> String {
        match tok {
            Some(t) => {
                let text = self.input.get(t.pos..t.pos + t.len).unwrap_or("?");
                format!(
                    "unexpected token '{}' at position {}, expected {expected}",
                    clip(text),
                    t.pos
                )
            }
            None => format!("unexpected end of input, expected {expected}"),
        }
    }

    /// Consumes the closing `kind` of a group opened at `open`.
    fn expect_close(&mut self, kind: &TokKind, shown: &str, open: usize) -> Result<(), String> {
        if self.eat(kind).is_some() {
            return Ok(());
        }
        let found = self.peek().cloned();
        Err(match found {
            None => {
                format!("unbalanced brackets: missing {shown} to close the one at position {open}")
            }
            Some(_) => self.unexpected(found.as_ref(), shown),
        })
    }

    fn parse_or(&mut self, in_value_filter: bool) -> Result<Filter, String> {
        let mut terms = vec![self.parse_and(in_value_filter)?];
        while self.peek_keyword("or") {
            self.i += 1;
            terms.push(self.parse_and(in_value_filter)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Filter::Or(terms)
        })
    }

    fn parse_and(&mut self, in_value_filter: bool) -> Result<Filter, String> {
        let mut terms = vec![self.parse_unary(in_value_filter)?];
        while self.peek_keyword("and") {
            self.i += 1;
            terms.push(self.parse_unary(in_value_filter)?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Filter::And(terms)
        })
    }

    fn parse_unary(&mut self, in_value_filter: bool) -> Result<Filter, String> {
        if let Some(open) = self.eat(&TokKind::LParen) {
            self.enter()?;
            let inner = self.parse_or(in_value_filter)?;
            self.expect_close(&TokKind::RParen, "')'", open)?;
            self.leave();
            return Ok(inner);
        }
        if self.peek_keyword("not") {
            let next_is_paren = matches!(
                self.peek_at(1),
                Some(Token {
                    kind: TokKind::LParen,
                    ..
                })
            );
            let next_is_operator = matches!(
                self.peek_at(1),
                Some(Token { kind: TokKind::Word(w), .. })
                    if CompareOp::from_keyword(w).is_some() || w.eq_ignore_ascii_case("pr")
            ) || matches!(
                self.peek_at(1),
                Some(Token {
                    kind: TokKind::LBracket,
                    ..
                })
            );
            if next_is_paren {
                self.i += 1;
                let open = self.eat(&TokKind::LParen).unwrap_or_default();
                self.enter()?;
                let inner = self.parse_or(in_value_filter)?;
                self.expect_close(&TokKind::RParen, "')'", open)?;
                self.leave();
                return Ok(Filter::Not(Box::new(inner)));
            }
            if !next_is_operator {
                let after = self.peek_at(1).cloned();
                return Err(self.unexpected(after.as_ref(), "'(' after 'not'"));
            }
            // Otherwise `not` is an attribute name, e.g. `not pr`.
        }
        self.parse_attr_expr(in_value_filter)
    }

    fn parse_attr_expr(&mut self, in_value_filter: bool) -> Result<Filter, String> {
        let (word, pos) = match self.peek().cloned() {
            Some(Token {
                kind: TokKind::Word(w),
                pos,
                ..
            }) => (w, pos),
            other => return Err(self.unexpected(other.as_ref(), "an attribute name, '(' or 'not'")),
        };
        self.i += 1;
        let path = parse_attr_word(&word, pos)?;

        if let Some(open) = self.eat(&TokKind::LBracket) {
            if in_value_filter {
                return Err(format!("value filters cannot be nested (position {open})"));
            }
            if path.sub_attr.is_some() {
                return Err(format!(
                    "a value filter cannot follow a sub-attribute (position {open})"
                ));
            }
            self.enter()?;
            let inner = self.parse_or(true)?;
            self.expect_close(&TokKind::RBracket, "']'", open)?;
            self.leave();
            return Ok(Filter::ValuePath {
                attr: path,
                filter: Box::new(inner),
            });
        }

        let (op_word, op_pos) = match self.peek().cloned() {
            Some(Token {
                kind: TokKind::Word(w),
                pos,
                ..
            }) => (w, pos),
            other => {
                return Err(self.unexpected(
                    other.as_ref(),
                    "an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) or '['",
                ))
            }
        };
        self.i += 1;
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::from_keyword(&op_word) else {
            return Err(format!(
                "unknown operator '{}' at position {op_pos}",
                clip(&op_word)
            ));
        };

        let value = match self.peek().cloned() {
            Some(Token {
                kind: TokKind::Str(s),
                ..
            }) => Value::String(s),
            Some(Token {
                kind: TokKind::Num(n),
                ..
            }) => Value::Number(n),
            Some(Token {
                kind: TokKind::Word(w),
                ..
            }) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Token {
                kind: TokKind::Word(w),
                ..
            }) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            Some(Token {
                kind: TokKind::Word(w),
                ..
            }) if w.eq_ignore_ascii_case("null") => Value::Null,
            other => {
                return Err(self.unexpected(
                    other.as_ref(),
                    "a comparison value (a \"string\", number, true, false or null)",
                ))
            }
        };
        self.i += 1;

        let kw = op.keyword();
        match op {
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew if !value.is_string() => {
                return Err(format!(
                    "operator '{kw}' at position {op_pos} needs a string value"
                ));
            }
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
                if !(value.is_string() || value.is_number()) =>
            {
                return Err(format!(
                    "operator '{kw}' at position {op_pos} needs a string or number value"
                ));
            }
            _ => {}
        }
        Ok(Filter::Compare { path, op, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "AbC-123",
            "userName": "bjensen@Example.com",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "displayName": "Babs Jensen",
            "active": true,
            "loginCount": 42,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "roles": [],
            "title": "",
            "meta": {"resourceType": "User", "lastModified": "2024-05-13T04:42:34Z"},
            ENTERPRISE_USER_SCHEMA: {"department": "Tour Operations", "manager": {"value": "mgr-1"}}
        })
    }

    fn group() -> Value {
        json!({
            "schemas": [GROUP_SCHEMA],
            "id": "g1",
            "displayName": "Admins",
            "members": [
                {"value": "User-A", "display": "Alice"},
                {"value": "user-b", "display": "Bob"}
            ],
            "meta": {"resourceType": "Group"}
        })
    }

    fn m(filter: &str, resource: &Value) -> bool {
        parse(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .matches(resource)
    }

    fn err(filter: &str) -> String {
        parse(filter).expect_err(filter)
    }

    #[test]
    fn eq_is_case_insensitive_on_names_and_values() {
        let u = user();
        assert!(m(r#"userName eq "bjensen@example.com""#, &u));
        assert!(m(r#"USERNAME EQ "BJENSEN@EXAMPLE.COM""#, &u));
        assert!(!m(r#"userName eq "bjensen""#, &u));
    }

    #[test]
    fn case_exact_attributes() {
        let u = user();
        assert!(m(r#"externalId eq "AbC-123""#, &u));
        assert!(!m(r#"externalId eq "abc-123""#, &u));
        assert!(m(r#"id eq "2819c223-7f76-453a-919d-413861904646""#, &u));
        assert!(!m(r#"id eq "2819C223-7F76-453A-919D-413861904646""#, &u));
        let g = group();
        assert!(m(r#"members eq "User-A""#, &g));
        assert!(!m(r#"members eq "user-a""#, &g));
        assert!(m(r#"members.value eq "user-b""#, &g));
        assert!(!m(r#"members.value eq "USER-B""#, &g));
        assert!(m(r#"members[value eq "User-A"]"#, &g));
        assert!(!m(r#"members[value eq "user-a"]"#, &g));
        // display is not caseExact
        assert!(m(r#"members[display eq "ALICE"]"#, &g));
        assert!(m(r#"members.display eq "bob""#, &g));
    }

    #[test]
    fn ne_co_sw_ew() {
        let u = user();
        assert!(m(r#"displayName ne "Someone""#, &u));
        assert!(!m(r#"displayName ne "babs jensen""#, &u));
        assert!(
            m(r#"nickName ne "x""#, &u),
            "ne holds for an absent attribute"
        );
        assert!(m(r#"displayName co "S JEN""#, &u));
        assert!(!m(r#"displayName co "xyz""#, &u));
        assert!(m(r#"displayName sw "babs""#, &u));
        assert!(!m(r#"displayName sw "jensen""#, &u));
        assert!(m(r#"displayName ew "JENSEN""#, &u));
        assert!(!m(r#"displayName ew "babs""#, &u));
    }

    #[test]
    fn ordering_on_strings_and_numbers() {
        let u = user();
        assert!(m(r#"meta.lastModified gt "2024-01-01T00:00:00Z""#, &u));
        assert!(!m(r#"meta.lastModified gt "2024-05-13T04:42:34Z""#, &u));
        assert!(m(r#"meta.lastModified ge "2024-05-13T04:42:34Z""#, &u));
        assert!(m(r#"meta.lastModified lt "2025-01-01T00:00:00Z""#, &u));
        assert!(m(r#"meta.lastModified le "2024-05-13T04:42:34Z""#, &u));
        assert!(!m(r#"meta.lastModified lt "2024-05-13T04:42:34Z""#, &u));
        assert!(m("loginCount gt 41", &u));
        assert!(!m("loginCount gt 42", &u));
        assert!(m("loginCount ge 42", &u));
        assert!(m("loginCount lt 42.5", &u));
        assert!(m("loginCount le 42", &u));
        assert!(m("loginCount eq 42", &u));
        assert!(m("loginCount eq 4.2e1", &u));
        assert!(!m("loginCount lt -1", &u));
        // type mismatch never matches
        assert!(!m(r#"loginCount eq "42""#, &u));
        assert!(!m(r#"userName gt 3"#, &u));
    }

    #[test]
    fn booleans_and_null() {
        let u = user();
        assert!(m("active eq true", &u));
        assert!(!m("active eq false", &u));
        assert!(m("active ne false", &u));
        assert!(m("active eq TRUE", &u));
        assert!(m("nickName eq null", &u));
        assert!(m("title eq null", &u), "empty string is unassigned");
        assert!(!m("userName eq null", &u));
        assert!(m("userName ne null", &u));
        assert!(err("active gt true").contains("needs a string or number"));
        assert!(err("title lt null").contains("needs a string or number"));
        assert!(err("active co true").contains("needs a string"));
        assert!(err("loginCount sw 4").contains("needs a string"));
    }

    #[test]
    fn present() {
        let u = user();
        assert!(m("userName pr", &u));
        assert!(m("name.familyName pr", &u));
        assert!(m("emails pr", &u));
        assert!(m("emails.type pr", &u));
        assert!(!m("title pr", &u), "empty string");
        assert!(!m("roles pr", &u), "empty array");
        assert!(!m("nickName pr", &u), "absent");
        assert!(!m("name.middleName pr", &u));
        assert!(m("USERNAME PR", &u));
        assert!(m("not (title pr)", &u));
    }

    #[test]
    fn logical_operators_and_precedence() {
        let u = user();
        assert!(m(r#"userName sw "bjensen" and active eq true"#, &u));
        assert!(!m(r#"userName sw "bjensen" and active eq false"#, &u));
        assert!(m(r#"userName sw "nobody" or active eq true"#, &u));
        // and binds tighter: true or (false and false) = true
        assert!(m(r#"active eq true or title pr and nickName pr"#, &u));
        // (true or false) and false = false
        assert!(!m(r#"(active eq true or title pr) and nickName pr"#, &u));
        assert_eq!(
            parse("a pr or b pr and c pr").unwrap(),
            Filter::Or(vec![
                Filter::Present(AttrPath {
                    schema: None,
                    name: "a".into(),
                    sub_attr: None
                }),
                Filter::And(vec![
                    Filter::Present(AttrPath {
                        schema: None,
                        name: "b".into(),
                        sub_attr: None
                    }),
                    Filter::Present(AttrPath {
                        schema: None,
                        name: "c".into(),
                        sub_attr: None
                    }),
                ]),
            ])
        );
        assert!(m(r#"not (userName eq "x")"#, &u));
        assert!(m(r#"not(userName eq "x")"#, &u));
        assert!(!m(r#"NOT (userName pr)"#, &u));
        assert!(m(r#"((userName pr) and ((active eq true)))"#, &u));
        assert!(m(r#"(userName pr)and(active eq true)"#, &u));
        assert!(m(r#"not (not (userName pr))"#, &u));
    }

    #[test]
    fn value_paths() {
        let u = user();
        assert!(m(r#"emails[type eq "work"]"#, &u));
        assert!(m(
            r#"emails[type eq "work" and value co "@example.com"]"#,
            &u
        ));
        assert!(!m(
            r#"emails[type eq "home" and value co "@example.com"]"#,
            &u
        ));
        assert!(m(r#"emails[type eq "home" or primary eq true]"#, &u));
        assert!(m(r#"emails[not (type eq "work")]"#, &u));
        assert!(m(r#"EMAILS[TYPE EQ "WORK"] and userName pr"#, &u));
        assert!(!m(r#"phoneNumbers[type eq "work"]"#, &u));
        // value filter on a singular complex attribute
        assert!(m(r#"name[givenName eq "barbara"]"#, &u));
        assert!(err(r#"emails[type eq "work" and x[y pr]]"#).contains("nested"));
        assert!(err(r#"emails.value[type eq "work"]"#).contains("sub-attribute"));
    }

    #[test]
    fn multi_valued_without_filter_matches_any_element() {
        let u = user();
        assert!(m(r#"emails co "@jensen.org""#, &u));
        assert!(m(r#"emails eq "BJENSEN@example.com""#, &u));
        assert!(m(r#"emails.value eq "babs@jensen.org""#, &u));
        assert!(m(r#"emails.type eq "home""#, &u));
        assert!(!m(r#"emails.value eq "x@y""#, &u));
        assert!(m(r#"emails.type ne "other""#, &u));
        assert!(!m(r#"emails.type ne "home""#, &u), "ne: no element equals");
        let g = group();
        assert!(m(r#"members eq "user-b""#, &g));
        assert!(m(r#"members.value eq "User-A""#, &g));
        assert!(!m(r#"members eq "user-c""#, &g));
    }

    #[test]
    fn schema_urn_prefixes() {
        let u = user();
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bjensen@example.com""#,
            &u
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName eq "jensen""#,
            &u
        ));
        assert!(m(
            r#"URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER:USERNAME pr"#,
            &u
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "admins""#,
            &group()
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour operations""#,
            &u
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "mgr-1""#,
            &u
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "mgr-1""#,
            &u
        ));
        assert!(
            !m(r#"department eq "Tour Operations""#, &u),
            "extension attributes need their URN"
        );
        let f = parse(r#"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName pr"#).unwrap();
        assert_eq!(
            f,
            Filter::Present(AttrPath {
                schema: None,
                name: "name".into(),
                sub_attr: Some("familyName".into())
            })
        );
    }

    #[test]
    fn string_literals_and_escapes() {
        let r = json!({"displayName": "Quote \" and \\ back / é"});
        assert!(m(r#"displayName eq "Quote \" and \\ back \/ \u00e9""#, &r));
        assert!(m(r#"displayName co "é""#, &r));
        assert!(err(r#"displayName eq "abc"#).contains("unterminated string"));
        assert!(err(r#"displayName eq "bad \q escape""#).contains("invalid string literal"));
        assert!(err("displayName eq 'single'").contains("unexpected character '''"));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            err(r#"userName eq "x" garbage"#),
            "unexpected token 'garbage' at position 16, expected 'and', 'or' or end of filter"
        );
        assert_eq!(
            err(r#"userName zz "x""#),
            "unknown operator 'zz' at position 9"
        );
        assert!(err(r#"(userName eq "x""#).contains("missing ')' to close the one at position 0"));
        assert!(err(r#"userName eq "x")"#).contains("unexpected token ')' at position 15"));
        assert!(err(r#"emails[type eq "work""#).contains("missing ']'"));
        assert!(err("").contains("empty"));
        assert!(err("   ").contains("empty"));
        assert!(err("userName").contains("unexpected end of input, expected an operator"));
        assert!(err("userName eq").contains("expected a comparison value"));
        assert!(err(r#"userName eq "x" and"#).contains("unexpected end of input"));
        assert!(err(r#"and userName pr"#).contains("unknown operator 'userName'"));
        assert!(err(r#"not userName pr"#).contains("expected '(' after 'not'"));
        assert!(err(r#"eq eq"#).contains("comparison value"));
        assert!(err(r#"userName eq 01"#).contains("invalid number"));
        assert!(err(r#"1abc eq 1"#).contains("unexpected token '1' at position 0"));
        assert!(err(r#"user:Name eq "x""#).contains("invalid attribute path"));
        assert!(err(r#"name.given.family eq "x""#).contains("invalid attribute path"));
        assert!(err(r#"urn:foo: eq "x""#).contains("invalid attribute path"));
        assert!(err(r#"userName eq "x" # 1"#).contains("unexpected character '#' at position 16"));
        assert!(err(r#"userName eq ["x"]"#).contains("comparison value"));
        assert!(err(r#"() "#).contains("unexpected token ')'"));
    }

    #[test]
    fn hostile_input_is_bounded() {
        // Too long.
        let long = format!(r#"userName eq "{}""#, "a".repeat(MAX_FILTER_LEN));
        assert!(err(&long).contains("longer than"));
        // Deep parentheses (well within the length limit) are refused, not overflowed.
        let deep = format!("{}userName pr{}", "(".repeat(1000), ")".repeat(1000));
        assert!(err(&deep).contains("nested deeper than 32"));
        let deep_not = format!("{}userName pr{}", "not (".repeat(600), ")".repeat(600));
        assert!(err(&deep_not).contains("nested deeper"));
        // Unclosed openers only.
        assert!(err(&"(".repeat(4000)).contains("nested deeper"));
        // 32 levels are fine.
        let ok = format!(
            "{}userName pr{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert!(m(&ok, &user()));
        // A long flat chain stays flat and evaluates fine.
        let chain = vec!["id pr"; 400].join(" and ");
        assert!(chain.len() < MAX_FILTER_LEN);
        match parse(&chain).unwrap() {
            Filter::And(terms) => assert_eq!(terms.len(), 400),
            other => panic!("{other:?}"),
        }
        assert!(m(&chain, &user()));
        // Random bytes never panic.
        for s in [
            "\u{0}",
            "\"\\",
            "\"\\u12",
            "-",
            "--1",
            "[",
            "]",
            ".",
            "$",
            "a[",
            "a[b",
            "a[b pr",
            "a[b pr]]",
            "é eq 1",
            "a eq \"\u{1F600}",
        ] {
            let _ = parse(s);
            let _ = parse_path(s);
        }
    }

    /// Deterministic token soup: parsing and evaluating arbitrary input never panics.
    #[test]
    fn fuzz_never_panics() {
        const PIECES: &[&str] = &[
            "(",
            ")",
            "[",
            "]",
            ".",
            "\"",
            "\\",
            " ",
            "and",
            "or",
            "not",
            "eq",
            "ne",
            "co",
            "gt",
            "pr",
            "emails",
            "type",
            "value",
            "name.familyName",
            "1",
            "-",
            "1e5",
            "urn:x:",
            USER_SCHEMA,
            ":",
            "é",
            "\"w\"",
            "true",
            "null",
            "$ref",
            "\\u00",
            "\t",
        ];
        let resource = user();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut parsed = 0;
        for _ in 0..20_000 {
            let mut input = String::new();
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = (seed >> 59) as usize + 1;
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                input.push_str(PIECES[(seed >> 33) as usize % PIECES.len()]);
                if seed & 1 == 0 {
                    input.push(' ');
                }
            }
            if let Ok(f) = parse(&input) {
                parsed += 1;
                let _ = f.matches(&resource);
            }
            if let Ok(p) = parse_path(&input) {
                if let Some(f) = p.filter {
                    let _ = f.matches_element("emails", &resource["emails"][0]);
                }
            }
        }
        assert!(
            parsed > 0,
            "the generator should produce some valid filters"
        );
    }

    #[test]
    fn non_object_resources_never_match() {
        for r in [json!(null), json!([1, 2]), json!("str"), json!(3)] {
            assert!(!m("userName pr", &r));
            assert!(!m(r#"userName eq "x""#, &r));
            assert!(!m(r#"emails[type eq "work"]"#, &r));
            assert!(m(r#"userName ne "x""#, &r));
        }
    }

    #[test]
    fn matches_element_uses_parent_context() {
        let f = parse(r#"value eq "User-A""#).unwrap();
        assert!(f.matches_element("members", &json!({"value": "User-A"})));
        assert!(!f.matches_element("members", &json!({"value": "user-a"})));
        assert!(f.matches_element("emails", &json!({"value": "user-a"})));
    }

    #[test]
    fn whole_schema_keys() {
        let u = user();
        let ent = ENTERPRISE_USER_SCHEMA;
        assert_eq!(
            whole_schema_key(&u, &ent.to_uppercase()).as_deref(),
            Some(ent)
        );
        assert_eq!(whole_schema_key(&json!({}), ent).as_deref(), Some(ent));
        assert_eq!(
            whole_schema_key(&json!({}), "urn:acme:ext:1.0:User").as_deref(),
            Some("urn:acme:ext:1.0:User")
        );
        assert_eq!(
            whole_schema_key(&json!({"urn:acme:x": {}}), "URN:ACME:X").as_deref(),
            Some("urn:acme:x")
        );
        assert_eq!(whole_schema_key(&u, USER_SCHEMA), None);
        assert_eq!(whole_schema_key(&u, &format!("{ent}:department")), None);
        assert_eq!(whole_schema_key(&u, "userName"), None);
        assert_eq!(
            whole_schema_key(&u, r#"urn:x:emails[value eq "a:User"]"#),
            None
        );
    }

    #[test]
    fn patch_paths() {
        let p = parse_path("name.familyName").unwrap();
        assert_eq!(
            p.attr,
            AttrPath {
                schema: None,
                name: "name".into(),
                sub_attr: Some("familyName".into())
            }
        );
        assert!(p.filter.is_none());

        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(
            p.attr,
            AttrPath {
                schema: None,
                name: "emails".into(),
                sub_attr: Some("value".into())
            }
        );
        assert!(p.filter.is_some());

        let p = parse_path(r#"members[value eq "id1"]"#).unwrap();
        assert_eq!(p.attr.sub_attr, None);
        assert!(p
            .filter
            .unwrap()
            .matches_element("members", &json!({"value": "id1"})));

        let p = parse_path("urn:ietf:params:scim:schemas:core:2.0:User:displayName").unwrap();
        assert_eq!(
            p.attr,
            AttrPath {
                schema: None,
                name: "displayName".into(),
                sub_attr: None
            }
        );

        let p =
            parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
                .unwrap();
        assert_eq!(p.attr.schema.as_deref(), Some(ENTERPRISE_USER_SCHEMA));
        assert_eq!(p.attr.name, "manager");
        assert_eq!(p.attr.sub_attr.as_deref(), Some("value"));

        assert!(parse_path("").is_err());
        assert!(parse_path("emails[").is_err());
        assert!(parse_path(r#"emails[type eq "work"]."#).is_err());
        assert!(parse_path(r#"emails[type eq "work"].value.x"#).is_err());
        assert!(parse_path(r#"emails[type eq "work"]value"#).is_err());
        assert!(parse_path(r#"name.givenName[type eq "x"]"#).is_err());
        assert!(parse_path("displayName extra").is_err());
        assert!(parse_path(r#"emails[type eq "work"] and x"#).is_err());
        assert!(parse_path("a b")
            .unwrap_err()
            .contains("expected end of path"));
    }
}
