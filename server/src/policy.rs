//! The access policy: who may use which server, tool, resource and prompt.
//!
//! Model (stored by `store::identity`, edited through the API, CLI and console):
//! - a **registry** holds servers; a **grant** maps a registry to everyone, a group or a user;
//! - a grant carries **rules** ([`GrantRules`]): allow/deny by glob on tool names, resource URIs
//!   and prompt names, narrowed by tool annotations and by argument conditions;
//! - each server has a default for tools outside its reviewed catalog (`new_tools`).
//!
//! Semantics, in order (the first that applies decides):
//! 1. an unknown or deactivated user reaches nothing;
//! 2. a server no grant of the user's reaches is invisible (as if it did not exist);
//! 3. a tool outside the server's reviewed catalog is denied when the server says `new_tools:
//!    deny`;
//! 4. **deny wins**: any matching deny rule of any of the user's grants refuses;
//! 5. a grant with no allow rule of a kind (tool, resource, prompt) allows all of that kind on
//!    its servers; a grant with allow rules allows only what one of them matches;
//! 6. otherwise: denied.
//!
//! Everything is compiled per tenant into a [`TenantPolicy`] held in the gateway snapshot, so a
//! decision reads memory only: exact names by hash lookup, globs through one `GlobSet` per
//! server and kind. A decision returns a small [`Verdict`] naming the rule that made it;
//! [`TenantPolicy::explain`] turns it into the chain a person reads (user → group → registry →
//! rule).

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

/// What a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    Tool,
    Resource,
    Prompt,
}

impl Kind {
    fn index(self) -> usize {
        match self {
            Self::Tool => 0,
            Self::Resource => 1,
            Self::Prompt => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Resource => "resource",
            Self::Prompt => "prompt",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
}

/// Conditions on a tool's annotations (MCP `ToolAnnotations`); each one given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotationCond {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world: Option<bool>,
}

/// A condition on one argument of a tool call (or prompt), addressed by JSON pointer into the
/// `arguments` object. Exactly one test is given. A missing argument fails the test.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgCond {
    pub pointer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// A regular expression the whole (string) value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Numeric bounds (inclusive); the value must be a JSON number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
}

fn star() -> String {
    "*".into()
}

/// One rule of a grant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub effect: Effect,
    #[serde(default)]
    pub kind: Kind,
    /// A glob on the tool or prompt name, or the resource URI (`*` matches any characters).
    #[serde(rename = "match", default = "star")]
    pub pattern: String,
    /// Only on this server of the registry (its slug); every server of the registry when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<AnnotationCond>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<ArgCond>,
}

/// The rules of one grant, as stored (JSON) and as the API takes them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRules {
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// Longest glob or pattern, and most rules in one grant: bounds on what an admin can make the
/// policy compiler do.
const MAX_PATTERN: usize = 512;
const MAX_RULES_PER_GRANT: usize = 10_000;

impl GrantRules {
    /// Checks every rule; the message says which rule is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.len() > MAX_RULES_PER_GRANT {
            return Err(format!("at most {MAX_RULES_PER_GRANT} rules per grant"));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let n = i + 1;
            if r.pattern.is_empty() || r.pattern.len() > MAX_PATTERN {
                return Err(format!(
                    "rule {n}: match must be 1 to {MAX_PATTERN} characters"
                ));
            }
            Glob::new(&r.pattern).map_err(|e| format!("rule {n}: match: {e}"))?;
            if r.annotations.is_some() && r.kind != Kind::Tool {
                return Err(format!("rule {n}: annotations apply to tools only"));
            }
            if !r.arguments.is_empty() && r.kind == Kind::Resource {
                return Err(format!("rule {n}: resources have no arguments"));
            }
            for a in &r.arguments {
                CArg::compile(a).map_err(|e| format!("rule {n}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// A tool's declared behaviour. Absent hints take the MCP defaults, which assume the worst: not
/// read-only, destructive, not idempotent, open-world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hints {
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

impl Hints {
    /// From a tool's `annotations` object (`readOnlyHint`, …); anything else is ignored.
    pub fn from_annotations(v: Option<&Value>) -> Self {
        let get = |k: &str| v.and_then(|v| v.get(k)).and_then(Value::as_bool);
        Self {
            read_only: get("readOnlyHint"),
            destructive: get("destructiveHint"),
            idempotent: get("idempotentHint"),
            open_world: get("openWorldHint"),
        }
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only.unwrap_or(false)
    }

    /// The class a tool falls in: `read_only`, `writing` or `destructive`.
    pub fn class(&self) -> &'static str {
        if self.is_read_only() {
            "read_only"
        } else if self.is_destructive() {
            "destructive"
        } else {
            "writing"
        }
    }

    /// An admin's class (`read_only`, `writing`, `destructive`) replaces the declared
    /// read-only and destructive hints; anything else changes nothing.
    pub fn apply_class(&mut self, class: &str) {
        let (read_only, destructive) = match class {
            "read_only" => (true, false),
            "writing" => (false, false),
            "destructive" => (false, true),
            _ => return,
        };
        self.read_only = Some(read_only);
        self.destructive = Some(destructive);
    }

    /// `destructiveHint` only means something for a tool that is not read-only.
    pub fn is_destructive(&self) -> bool {
        !self.is_read_only() && self.destructive.unwrap_or(true)
    }

    pub fn is_idempotent(&self) -> bool {
        self.idempotent.unwrap_or(false)
    }

    pub fn is_open_world(&self) -> bool {
        self.open_world.unwrap_or(true)
    }

    fn satisfy(&self, c: &AnnotationCond) -> bool {
        c.read_only.is_none_or(|w| w == self.is_read_only())
            && c.destructive.is_none_or(|w| w == self.is_destructive())
            && c.idempotent.is_none_or(|w| w == self.is_idempotent())
            && c.open_world.is_none_or(|w| w == self.is_open_world())
    }
}

#[derive(Debug)]
enum Test {
    Equals(Value),
    OneOf(Vec<Value>),
    Pattern(regex::Regex),
    Bounds(Option<f64>, Option<f64>),
}

#[derive(Debug)]
struct CArg {
    pointer: String,
    test: Test,
}

impl CArg {
    fn compile(a: &ArgCond) -> Result<Self, String> {
        if !(a.pointer.is_empty() || a.pointer.starts_with('/')) {
            return Err(format!(
                "argument pointer {:?} must be a JSON pointer (\"/region\")",
                a.pointer
            ));
        }
        let given = [
            a.equals.is_some(),
            a.one_of.is_some(),
            a.pattern.is_some(),
            a.max.is_some() || a.min.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            return Err(format!(
                "argument {}: give exactly one of equals, one_of, pattern, or max/min",
                a.pointer
            ));
        }
        let test = if let Some(v) = &a.equals {
            Test::Equals(v.clone())
        } else if let Some(v) = &a.one_of {
            Test::OneOf(v.clone())
        } else if let Some(p) = &a.pattern {
            if p.len() > MAX_PATTERN {
                return Err(format!("argument {}: pattern too long", a.pointer));
            }
            let re = regex::RegexBuilder::new(&format!("^(?:{p})$"))
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("argument {}: pattern: {e}", a.pointer))?;
            Test::Pattern(re)
        } else {
            Test::Bounds(a.min, a.max)
        };
        Ok(Self {
            pointer: a.pointer.clone(),
            test,
        })
    }

    fn holds(&self, arguments: &Value) -> bool {
        let Some(v) = arguments.pointer(&self.pointer) else {
            return false;
        };
        match &self.test {
            Test::Equals(w) => v == w,
            Test::OneOf(ws) => ws.iter().any(|w| w == v),
            Test::Pattern(re) => v.as_str().is_some_and(|s| re.is_match(s)),
            Test::Bounds(min, max) => v
                .as_f64()
                .is_some_and(|x| min.is_none_or(|m| x >= m) && max.is_none_or(|m| x <= m)),
        }
    }
}

/// Who a grant maps its registry to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Everyone,
    Group { group_id: String },
    User { user_id: String },
}

impl Subject {
    /// The stored form: `everyone`, `group:<id>`, `user:<id>`.
    pub fn key(&self) -> String {
        match self {
            Self::Everyone => "everyone".into(),
            Self::Group { group_id } => format!("group:{group_id}"),
            Self::User { user_id } => format!("user:{user_id}"),
        }
    }

    pub fn parse_key(s: &str) -> Option<Self> {
        if s == "everyone" {
            return Some(Self::Everyone);
        }
        if let Some(id) = s.strip_prefix("group:") {
            return Some(Self::Group {
                group_id: id.into(),
            });
        }
        s.strip_prefix("user:")
            .map(|id| Self::User { user_id: id.into() })
    }
}

// ---- inputs, as the store loads them ----------------------------------------------------------

#[derive(Clone, Debug)]
pub struct UserInput {
    pub user_id: String,
    pub email: String,
    pub active: bool,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct GroupInput {
    pub group_id: String,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct GrantInput {
    pub grant_id: String,
    pub registry_slug: String,
    pub registry_name: String,
    /// Slugs of the registry's servers.
    pub servers: Vec<String>,
    pub subject: Subject,
    pub rules: GrantRules,
}

#[derive(Clone, Debug, Default)]
pub struct ServerInput {
    pub slug: String,
    pub new_tools_deny: bool,
    /// The reviewed tool catalog: name → declared hints.
    pub catalog: HashMap<String, Hints>,
    /// Pinned definitions of catalog tools: name → digest (`crate::pins`).
    pub pins: HashMap<String, String>,
    /// Tools held because their definition changed upstream since review.
    pub held: HashSet<String>,
}

#[derive(Clone, Debug, Default)]
pub struct PolicyInputs {
    pub users: Vec<UserInput>,
    pub groups: Vec<GroupInput>,
    pub servers: Vec<ServerInput>,
    pub grants: Vec<GrantInput>,
}

// ---- the compiled form --------------------------------------------------------------------

#[derive(Debug)]
struct UserEntry {
    email: String,
    active: bool,
    /// Indexes into `groups`, sorted.
    groups: Vec<u32>,
}

#[derive(Debug)]
enum CSubject {
    Everyone,
    Group(u32),
    User(String),
}

#[derive(Debug)]
struct GrantEntry {
    input: GrantInput,
    subject: CSubject,
}

#[derive(Debug)]
struct CRule {
    grant: u32,
    /// Index of the rule in its grant's list.
    rule: u32,
    deny: bool,
    hints: Option<AnnotationCond>,
    args: Vec<CArg>,
}

#[derive(Debug, Default)]
struct RuleIndex {
    rules: Vec<CRule>,
    exact: HashMap<String, Vec<u32>>,
    globs: Option<GlobSet>,
    glob_rules: Vec<u32>,
    /// Grants with no allow rule of this kind for this server: they allow everything of it.
    open: Vec<u32>,
}

#[derive(Debug, Default)]
struct ServerPolicy {
    new_tools_deny: bool,
    catalog: HashMap<String, Hints>,
    pins: HashMap<String, String>,
    held: HashSet<String>,
    grants: Vec<u32>,
    kinds: [RuleIndex; 3],
}

/// One tenant's policy, compiled.
#[derive(Debug, Default)]
pub struct TenantPolicy {
    users: HashMap<String, UserEntry>,
    by_email: HashMap<String, String>,
    groups: Vec<GroupInput>,
    grants: Vec<GrantEntry>,
    servers: HashMap<String, ServerPolicy>,
}

/// Why a decision went the way it did (cheap to copy; [`TenantPolicy::explain`] spells it out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    UnknownUser,
    Inactive,
    UnknownServer,
    NotGranted,
    /// The tool is outside the server's reviewed catalog and the server denies new tools.
    NewTool,
    /// The tool's definition changed upstream since it was reviewed (held until an admin
    /// approves the change).
    ToolChanged,
    /// Rule `rule` of grant `grant` (indexes) matched.
    Rule {
        grant: u32,
        rule: u32,
    },
    /// Grant `grant` has no allow rule of this kind: it allows all of it.
    OpenGrant {
        grant: u32,
    },
    /// The user's grants reach the server but no allow rule matches.
    NoAllowRule,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub why: Why,
}

impl Verdict {
    fn deny(why: Why) -> Self {
        Self {
            allowed: false,
            why,
        }
    }
}

/// What is asked about: a tool/prompt name or resource URI, its hints (tools), its arguments.
/// `arguments: None` asks "could this be used at all?" (for listings): allow rules' argument
/// conditions count as satisfiable and deny rules with argument conditions do not hide it.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub hints: Hints,
    pub arguments: Option<&'a Value>,
}

thread_local! {
    static MATCHES: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn compile_glob(pattern: &str) -> Option<Glob> {
    Glob::new(pattern).ok()
}

fn is_literal(pattern: &str) -> bool {
    !pattern.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

impl TenantPolicy {
    /// Compiles the inputs. Rules that do not compile (they were validated when stored, so this
    /// is a bug or a hand-edited database) are logged and left out; an allow rule left out
    /// allows nothing, a deny rule left out is replaced by a deny of everything its grant covers
    /// on that kind, so a broken rule never widens access.
    pub fn compile(inputs: PolicyInputs) -> Self {
        let mut p = Self::default();
        let group_index: HashMap<String, u32> = inputs
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.group_id.clone(), i as u32))
            .collect();
        p.groups = inputs.groups;
        for u in inputs.users {
            let mut groups: Vec<u32> = u
                .groups
                .iter()
                .filter_map(|g| group_index.get(g).copied())
                .collect();
            groups.sort_unstable();
            groups.dedup();
            p.by_email.insert(u.email.to_lowercase(), u.user_id.clone());
            p.users.insert(
                u.user_id,
                UserEntry {
                    email: u.email,
                    active: u.active,
                    groups,
                },
            );
        }
        for s in inputs.servers {
            p.servers.insert(
                s.slug,
                ServerPolicy {
                    new_tools_deny: s.new_tools_deny,
                    catalog: s.catalog,
                    pins: s.pins,
                    held: s.held,
                    ..Default::default()
                },
            );
        }
        let mut builders: HashMap<(String, usize), GlobSetBuilder> = HashMap::new();
        for g in inputs.grants {
            let subject = match &g.subject {
                Subject::Everyone => CSubject::Everyone,
                Subject::Group { group_id } => match group_index.get(group_id) {
                    Some(i) => CSubject::Group(*i),
                    None => continue,
                },
                Subject::User { user_id } => CSubject::User(user_id.clone()),
            };
            let gi = p.grants.len() as u32;
            for server in &g.servers {
                let Some(sp) = p.servers.get_mut(server) else {
                    continue;
                };
                sp.grants.push(gi);
                for kind in [Kind::Tool, Kind::Resource, Kind::Prompt] {
                    let idx = &mut sp.kinds[kind.index()];
                    let mut has_allow = false;
                    for (ri, r) in g.rules.rules.iter().enumerate() {
                        if r.kind != kind || r.server.as_ref().is_some_and(|s| s != server) {
                            continue;
                        }
                        let args: Result<Vec<CArg>, String> =
                            r.arguments.iter().map(CArg::compile).collect();
                        let glob = compile_glob(&r.pattern);
                        let deny = r.effect == Effect::Deny;
                        has_allow |= !deny;
                        let (args, pattern) = match (args, glob) {
                            (Ok(a), Some(_)) => (a, r.pattern.clone()),
                            _ => {
                                tracing::error!(grant.id = %g.grant_id, rule = ri + 1,
                                    "a stored rule does not compile; it is left out (fail closed)");
                                if !deny {
                                    continue;
                                }
                                (Vec::new(), "*".to_owned())
                            }
                        };
                        let id = idx.rules.len() as u32;
                        idx.rules.push(CRule {
                            grant: gi,
                            rule: ri as u32,
                            deny,
                            hints: r.annotations.clone(),
                            args,
                        });
                        if is_literal(&pattern) {
                            idx.exact.entry(pattern).or_default().push(id);
                        } else if let Some(glob) = compile_glob(&pattern) {
                            builders
                                .entry((server.clone(), kind.index()))
                                .or_insert_with(GlobSetBuilder::new)
                                .add(glob);
                            idx.glob_rules.push(id);
                        }
                    }
                    if !has_allow {
                        idx.open.push(gi);
                    }
                }
            }
            p.grants.push(GrantEntry { input: g, subject });
        }
        for ((server, kind), b) in builders {
            if let Some(sp) = p.servers.get_mut(&server) {
                match b.build() {
                    Ok(set) => sp.kinds[kind].globs = Some(set),
                    Err(e) => {
                        tracing::error!(server.slug = %server, error = %e,
                            "glob rules do not compile; the server's glob rules deny everything");
                        // Fail closed: nothing of this kind is allowed on the server.
                        sp.kinds[kind].open.clear();
                        for r in &mut sp.kinds[kind].rules {
                            r.deny = true;
                            r.args.clear();
                            r.hints = None;
                        }
                        sp.kinds[kind].exact.clear();
                        sp.kinds[kind].glob_rules.clear();
                    }
                }
            }
        }
        p
    }

    fn applies(&self, grant: u32, user_id: &str, user: &UserEntry) -> bool {
        match &self.grants[grant as usize].subject {
            CSubject::Everyone => true,
            CSubject::Group(g) => user.groups.binary_search(g).is_ok(),
            CSubject::User(id) => id == user_id,
        }
    }

    /// A grant's id and its registry's slug, by the index a `Why` names.
    pub fn grant_ref(&self, grant: u32) -> Option<(&str, &str)> {
        self.grants
            .get(grant as usize)
            .map(|g| (g.input.grant_id.as_str(), g.input.registry_slug.as_str()))
    }

    /// The names of the groups a user is in (the audit record's snapshot).
    pub fn group_names(&self, user_id: &str) -> Vec<String> {
        self.users
            .get(user_id)
            .map(|u| {
                u.groups
                    .iter()
                    .filter_map(|g| self.groups.get(*g as usize))
                    .map(|g| g.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The user id of an email address (case-insensitive).
    pub fn user_by_email(&self, email: &str) -> Option<&str> {
        self.by_email.get(&email.to_lowercase()).map(String::as_str)
    }

    /// Whether any of the user's grants reaches the server.
    pub fn reaches(&self, user_id: &str, server: &str) -> bool {
        self.server_verdict(user_id, server).is_none()
    }

    /// `None` when the user reaches the server; else why not.
    fn server_verdict(&self, user_id: &str, server: &str) -> Option<Verdict> {
        let Some(u) = self.users.get(user_id) else {
            return Some(Verdict::deny(Why::UnknownUser));
        };
        if !u.active {
            return Some(Verdict::deny(Why::Inactive));
        }
        let Some(sp) = self.servers.get(server) else {
            return Some(Verdict::deny(Why::UnknownServer));
        };
        if !sp.grants.iter().any(|g| self.applies(*g, user_id, u)) {
            return Some(Verdict::deny(Why::NotGranted));
        }
        None
    }

    /// Whether a tool is held back because it is outside the server's reviewed catalog and
    /// the server denies new tools (for principals without a user's grants: tenant agents).
    pub fn quarantined(&self, server: &str, tool: &str) -> bool {
        self.servers.get(server).is_some_and(|sp| {
            (sp.new_tools_deny && !sp.catalog.contains_key(tool)) || sp.held.contains(tool)
        })
    }

    /// The pinned digest of a reviewed tool (`None`: not reviewed, or reviewed before pins).
    pub fn pin(&self, server: &str, tool: &str) -> Option<&str> {
        self.servers
            .get(server)
            .and_then(|sp| sp.pins.get(tool))
            .map(String::as_str)
    }

    /// Whether a tool is held because its definition changed upstream since review.
    pub fn held(&self, server: &str, tool: &str) -> bool {
        self.servers
            .get(server)
            .is_some_and(|sp| sp.held.contains(tool))
    }

    /// Whether `tool` is outside the catalog of a server that denies new tools.
    pub fn denies_new_tool(&self, server: &str, tool: &str) -> bool {
        self.servers
            .get(server)
            .is_some_and(|sp| sp.new_tools_deny && !sp.catalog.contains_key(tool))
    }

    /// The hints the policy uses for a tool: the reviewed catalog's, else `observed`.
    pub fn hints(&self, server: &str, tool: &str, observed: Option<Hints>) -> Hints {
        self.servers
            .get(server)
            .and_then(|s| s.catalog.get(tool).copied())
            .or(observed)
            .unwrap_or_default()
    }

    /// The decision for one ask, from memory.
    pub fn decide(&self, user_id: &str, server: &str, ask: &Ask<'_>) -> Verdict {
        if let Some(v) = self.server_verdict(user_id, server) {
            return v;
        }
        let (Some(u), Some(sp)) = (self.users.get(user_id), self.servers.get(server)) else {
            return Verdict::deny(Why::UnknownServer);
        };
        if ask.kind == Kind::Tool && sp.new_tools_deny && !sp.catalog.contains_key(ask.name) {
            return Verdict::deny(Why::NewTool);
        }
        if ask.kind == Kind::Tool && sp.held.contains(ask.name) {
            return Verdict::deny(Why::ToolChanged);
        }
        let idx = &sp.kinds[ask.kind.index()];
        let mut allowed_by: Option<Why> = None;
        // Returns Some(verdict) when a deny rule matched.
        let mut consider = |id: u32| -> Option<Verdict> {
            let r = &idx.rules[id as usize];
            if !self.applies(r.grant, user_id, u) {
                return None;
            }
            if let Some(c) = &r.hints {
                if !ask.hints.satisfy(c) {
                    return None;
                }
            }
            let args_hold = match ask.arguments {
                Some(a) => r.args.iter().all(|c| c.holds(a)),
                // A listing: a conditional allow may apply; a conditional deny does not hide.
                None => !r.deny || r.args.is_empty(),
            };
            if !args_hold {
                return None;
            }
            let why = Why::Rule {
                grant: r.grant,
                rule: r.rule,
            };
            if r.deny {
                return Some(Verdict::deny(why));
            }
            allowed_by.get_or_insert(why);
            None
        };
        if let Some(ids) = idx.exact.get(ask.name) {
            for id in ids {
                if let Some(v) = consider(*id) {
                    return v;
                }
            }
        }
        if let Some(set) = &idx.globs {
            let denied = MATCHES.with(|m| {
                let mut m = m.borrow_mut();
                set.matches_into(ask.name, &mut m);
                for i in m.iter() {
                    if let Some(v) = consider(idx.glob_rules[*i]) {
                        return Some(v);
                    }
                }
                None
            });
            if let Some(v) = denied {
                return v;
            }
        }
        if allowed_by.is_none() {
            allowed_by = idx
                .open
                .iter()
                .find(|g| self.applies(**g, user_id, u))
                .map(|g| Why::OpenGrant { grant: *g });
        }
        match allowed_by {
            Some(why) => Verdict { allowed: true, why },
            None => Verdict::deny(Why::NoAllowRule),
        }
    }

    /// The servers a user reaches, sorted.
    pub fn servers_of(&self, user_id: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .servers
            .keys()
            .filter(|s| self.reaches(user_id, s))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// The reviewed catalog of a server: (tool, hints), sorted by name.
    pub fn catalog(&self, server: &str) -> Vec<(String, Hints)> {
        let mut v: Vec<(String, Hints)> = self
            .servers
            .get(server)
            .map(|s| s.catalog.iter().map(|(k, h)| (k.clone(), *h)).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Active users as (user id, email), sorted by email.
    pub fn active_users(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .users
            .iter()
            .filter(|(_, u)| u.active)
            .map(|(id, u)| (id.clone(), u.email.clone()))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    }

    /// Spells a verdict out: the rule that decided, and the chain user → group → registry → rule.
    pub fn explain(&self, user_id: &str, server: &str, ask: &Ask<'_>, v: Verdict) -> Explanation {
        let user = self.users.get(user_id);
        let email = user.map(|u| u.email.clone()).unwrap_or_else(|| "?".into());
        let what = format!("{} {:?} on server {server}", ask.kind.as_str(), ask.name);
        let mut chain = Vec::new();
        let via = |g: u32| -> (String, String) {
            let e = &self.grants[g as usize];
            let who = match &e.subject {
                CSubject::Everyone => "everyone".to_owned(),
                CSubject::Group(i) => format!("group {}", self.groups[*i as usize].name),
                CSubject::User(_) => format!("user {email}"),
            };
            (who, e.input.registry_slug.clone())
        };
        let mut rule_view = None;
        let (decision, reason) = match v.why {
            Why::UnknownUser => ("deny", "no such user in this tenant".to_owned()),
            Why::Inactive => ("deny", format!("{email} is deactivated")),
            Why::UnknownServer => ("deny", format!("no server {server} in this tenant")),
            Why::NotGranted => {
                if let Some(u) = user {
                    let groups: Vec<&str> = u
                        .groups
                        .iter()
                        .map(|g| self.groups[*g as usize].name.as_str())
                        .collect();
                    chain.push(format!(
                        "{email} is in groups: {}",
                        if groups.is_empty() {
                            "(none)".to_owned()
                        } else {
                            groups.join(", ")
                        }
                    ));
                }
                (
                    "deny",
                    format!(
                        "no registry holding server {server} is mapped to {email}, their groups or everyone"
                    ),
                )
            }
            Why::NewTool => (
                "deny",
                format!(
                    "tool {:?} is not in the reviewed catalog of {server}, which denies new tools",
                    ask.name
                ),
            ),
            Why::ToolChanged => (
                "deny",
                format!(
                    "the definition of tool {:?} on {server} changed upstream since it was reviewed; it is held until an admin approves the change",
                    ask.name
                ),
            ),
            Why::NoAllowRule => {
                for g in self
                    .servers
                    .get(server)
                    .map(|s| &s.grants[..])
                    .unwrap_or(&[])
                {
                    if user.is_some_and(|u| self.applies(*g, user_id, u)) {
                        let (who, reg) = via(*g);
                        chain.push(format!(
                            "{email} → {who} → registry {reg}: its allow rules do not match {what}"
                        ));
                    }
                }
                (
                    "deny",
                    format!("no allow rule of {email}'s grants matches {what}"),
                )
            }
            Why::OpenGrant { grant } => {
                let (who, reg) = via(grant);
                chain.push(format!("{email} → {who} → registry {reg} (holds {server})"));
                chain.push(format!(
                    "the grant has no allow rule for {}s: all are allowed",
                    ask.kind.as_str()
                ));
                (
                    "allow",
                    format!(
                        "registry {reg} grants all {}s of {server} to {who}",
                        ask.kind.as_str()
                    ),
                )
            }
            Why::Rule { grant, rule } => {
                let (who, reg) = via(grant);
                let e = &self.grants[grant as usize];
                let r = e.input.rules.rules.get(rule as usize).cloned();
                chain.push(format!("{email} → {who} → registry {reg} (holds {server})"));
                let text = r.as_ref().map(describe_rule).unwrap_or_default();
                chain.push(format!("rule {} of that grant: {text}", rule + 1));
                rule_view = r.map(|r| RuleRef {
                    grant_id: e.input.grant_id.clone(),
                    registry: reg.clone(),
                    subject: who.clone(),
                    number: rule + 1,
                    rule: r,
                });
                (
                    if v.allowed { "allow" } else { "deny" },
                    format!(
                        "rule {} of registry {reg}'s grant to {who}: {text}",
                        rule + 1
                    ),
                )
            }
        };
        Explanation {
            decision: decision.to_owned(),
            reason,
            rule: rule_view,
            chain,
        }
    }
}

/// A decision as people read it.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// `allow` or `deny`.
    pub decision: String,
    pub reason: String,
    pub rule: Option<RuleRef>,
    pub chain: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleRef {
    pub grant_id: String,
    pub registry: String,
    pub subject: String,
    /// 1-based position in the grant's rules.
    pub number: u32,
    pub rule: Rule,
}

/// One line for a rule: `deny tool "*delete*" where destructive`.
pub fn describe_rule(r: &Rule) -> String {
    let effect = match r.effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    };
    let mut s = format!("{effect} {} {:?}", r.kind.as_str(), r.pattern);
    if let Some(server) = &r.server {
        s.push_str(&format!(" on {server}"));
    }
    if let Some(a) = &r.annotations {
        let mut conds = Vec::new();
        for (name, v) in [
            ("read-only", a.read_only),
            ("destructive", a.destructive),
            ("idempotent", a.idempotent),
            ("open-world", a.open_world),
        ] {
            if let Some(v) = v {
                conds.push(if v {
                    name.to_owned()
                } else {
                    format!("not {name}")
                });
            }
        }
        s.push_str(&format!(" where {}", conds.join(" and ")));
    }
    for a in &r.arguments {
        let test = if let Some(v) = &a.equals {
            format!("= {v}")
        } else if let Some(v) = &a.one_of {
            format!("in {}", Value::Array(v.clone()))
        } else if let Some(p) = &a.pattern {
            format!("matches /{p}/")
        } else {
            match (a.min, a.max) {
                (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
                (Some(lo), None) => format!(">= {lo}"),
                (None, Some(hi)) => format!("<= {hi}"),
                (None, None) => String::new(),
            }
        };
        s.push_str(&format!(" if argument {} {test}", a.pointer));
    }
    s
}

/// Tool names (or resource URIs, prompt names) a list may show, for the gateway's filtering of
/// `tools/list` and friends. Returns whether `item` (one element of the list) stays.
pub fn list_item_visible(
    policy: &TenantPolicy,
    user_id: &str,
    server: &str,
    kind: Kind,
    item: &Value,
) -> bool {
    let name = match kind {
        Kind::Tool | Kind::Prompt => item.get("name").and_then(Value::as_str),
        Kind::Resource => item
            .get("uri")
            .or_else(|| item.get("uriTemplate"))
            .and_then(Value::as_str),
    };
    let Some(name) = name else {
        return false;
    };
    // A reviewed tool listed with another definition than the pinned one is not what was
    // reviewed: hidden (the gateway's pin watch queues it for review).
    if kind == Kind::Tool {
        if let Some(pin) = policy.pin(server, name) {
            if crate::pins::tool_digest(item) != pin {
                return false;
            }
        }
    }
    let hints = if kind == Kind::Tool {
        policy.hints(
            server,
            name,
            Some(Hints::from_annotations(item.get("annotations"))),
        )
    } else {
        Hints::default()
    };
    policy
        .decide(
            user_id,
            server,
            &Ask {
                kind,
                name,
                hints,
                arguments: None,
            },
        )
        .allowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;

    /// The names in a list that the policy hides.
    fn hidden_names(
        policy: &TenantPolicy,
        user_id: &str,
        server: &str,
        kind: Kind,
        items: &[Value],
    ) -> HashSet<String> {
        items
            .iter()
            .filter(|i| !list_item_visible(policy, user_id, server, kind, i))
            .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    fn rules(v: Value) -> GrantRules {
        serde_json::from_value(json!({ "rules": v })).unwrap()
    }

    fn grant(id: &str, servers: &[&str], subject: Subject, r: GrantRules) -> GrantInput {
        GrantInput {
            grant_id: id.into(),
            registry_slug: format!("reg-{id}"),
            registry_name: format!("Registry {id}"),
            servers: servers.iter().map(|s| (*s).to_owned()).collect(),
            subject,
            rules: r,
        }
    }

    fn group(id: &str) -> Subject {
        Subject::Group {
            group_id: id.into(),
        }
    }

    fn world(
        grants: Vec<GrantInput>,
        catalog: &[(&str, Value)],
        new_tools_deny: bool,
    ) -> TenantPolicy {
        let catalog = catalog
            .iter()
            .map(|(n, a)| ((*n).to_owned(), Hints::from_annotations(Some(a))))
            .collect();
        TenantPolicy::compile(PolicyInputs {
            users: vec![
                UserInput {
                    user_id: "alice".into(),
                    email: "alice@acme.test".into(),
                    active: true,
                    groups: vec!["g-eng".into()],
                },
                UserInput {
                    user_id: "bob".into(),
                    email: "Bob@acme.test".into(),
                    active: true,
                    groups: vec!["g-sales".into()],
                },
                UserInput {
                    user_id: "carol".into(),
                    email: "carol@acme.test".into(),
                    active: false,
                    groups: vec!["g-sales".into()],
                },
            ],
            groups: vec![
                GroupInput {
                    group_id: "g-eng".into(),
                    name: "engineering".into(),
                },
                GroupInput {
                    group_id: "g-sales".into(),
                    name: "sales".into(),
                },
            ],
            servers: vec![
                ServerInput {
                    slug: "crm".into(),
                    new_tools_deny,
                    catalog,
                    ..Default::default()
                },
                ServerInput {
                    slug: "hr".into(),
                    new_tools_deny: false,
                    catalog: HashMap::new(),
                    ..Default::default()
                },
            ],
            grants,
        })
    }

    fn tool<'a>(name: &'a str, args: Option<&'a Value>) -> Ask<'a> {
        Ask {
            kind: Kind::Tool,
            name,
            hints: Hints::default(),
            arguments: args,
        }
    }

    fn allowed(p: &TenantPolicy, user: &str, server: &str, name: &str) -> bool {
        let hints = p.hints(server, name, None);
        p.decide(
            user,
            server,
            &Ask {
                hints,
                ..tool(name, Some(&json!({})))
            },
        )
        .allowed
    }

    #[test]
    fn nothing_is_granted_until_a_registry_maps_it() {
        let p = world(vec![], &[], false);
        assert!(!p.reaches("alice", "crm"));
        assert_eq!(
            p.decide("alice", "crm", &tool("x", None)).why,
            Why::NotGranted
        );
    }

    #[test]
    fn grants_reach_their_subjects_only_and_deactivated_users_reach_nothing() {
        let p = world(
            vec![grant(
                "1",
                &["crm"],
                group("g-sales"),
                GrantRules::default(),
            )],
            &[],
            false,
        );
        assert!(p.reaches("bob", "crm"));
        assert!(!p.reaches("bob", "hr"));
        assert!(!p.reaches("alice", "crm"));
        assert!(!p.reaches("carol", "crm"), "carol is deactivated");
        assert_eq!(
            p.decide("carol", "crm", &tool("x", None)).why,
            Why::Inactive
        );
        assert_eq!(p.user_by_email("bob@ACME.test"), Some("bob"));
        let everyone = world(
            vec![grant(
                "1",
                &["hr"],
                Subject::Everyone,
                GrantRules::default(),
            )],
            &[],
            false,
        );
        assert!(everyone.reaches("alice", "hr") && everyone.reaches("bob", "hr"));
        let direct = world(
            vec![grant(
                "1",
                &["hr"],
                Subject::User {
                    user_id: "alice".into(),
                },
                GrantRules::default(),
            )],
            &[],
            false,
        );
        assert!(direct.reaches("alice", "hr") && !direct.reaches("bob", "hr"));
    }

    #[test]
    fn deny_wins_over_any_allow_of_any_grant() {
        let p = world(
            vec![
                grant("1", &["crm"], Subject::Everyone, GrantRules::default()),
                grant(
                    "2",
                    &["crm"],
                    group("g-sales"),
                    rules(json!([{"effect": "deny", "match": "*delete*"}])),
                ),
            ],
            &[],
            false,
        );
        assert!(allowed(&p, "alice", "crm", "delete_contact"));
        let v = p.decide("bob", "crm", &tool("delete_contact", Some(&json!({}))));
        assert_eq!(v, Verdict::deny(Why::Rule { grant: 1, rule: 0 }));
        assert!(allowed(&p, "bob", "crm", "search_contacts"));
        let e = p.explain("bob", "crm", &tool("delete_contact", None), v);
        assert_eq!(e.decision, "deny");
        assert!(e.chain[0].contains("group sales"), "{:?}", e.chain);
        assert!(
            e.chain[1].contains("deny tool \"*delete*\""),
            "{:?}",
            e.chain
        );
    }

    #[test]
    fn allow_rules_narrow_a_grant_to_what_they_match() {
        let p = world(
            vec![grant(
                "1",
                &["crm", "hr"],
                Subject::Everyone,
                rules(json!([
                    {"effect": "allow", "match": "search_*"},
                    {"effect": "allow", "match": "get_contact", "server": "crm"}
                ])),
            )],
            &[],
            false,
        );
        assert!(allowed(&p, "alice", "crm", "search_contacts"));
        assert!(allowed(&p, "alice", "crm", "get_contact"));
        assert!(
            !allowed(&p, "alice", "hr", "get_contact"),
            "rule is crm-only"
        );
        assert!(allowed(&p, "alice", "hr", "search_people"));
        assert_eq!(
            p.decide("alice", "crm", &tool("update_contact", None)).why,
            Why::NoAllowRule
        );
        // Tool rules say nothing about prompts and resources: those stay open.
        let prompt = Ask {
            kind: Kind::Prompt,
            ..tool("summarise", None)
        };
        assert!(p.decide("alice", "crm", &prompt).allowed);
    }

    #[test]
    fn annotations_decide_with_worst_case_defaults() {
        let catalog = [
            ("read", json!({"readOnlyHint": true})),
            ("wipe", json!({"destructiveHint": true})),
            ("append", json!({"destructiveHint": false})),
            ("mystery", json!({})),
        ];
        let only_read = world(
            vec![grant(
                "1",
                &["crm"],
                Subject::Everyone,
                rules(json!([{"effect": "allow", "annotations": {"read_only": true}}])),
            )],
            &catalog,
            false,
        );
        assert!(allowed(&only_read, "alice", "crm", "read"));
        for t in ["wipe", "append", "mystery", "not-in-catalog"] {
            assert!(!allowed(&only_read, "alice", "crm", t), "{t}");
        }
        let no_destructive = world(
            vec![grant(
                "1",
                &["crm"],
                Subject::Everyone,
                rules(json!([{"effect": "deny", "annotations": {"destructive": true}}])),
            )],
            &catalog,
            false,
        );
        assert!(allowed(&no_destructive, "alice", "crm", "read"));
        assert!(allowed(&no_destructive, "alice", "crm", "append"));
        assert!(!allowed(&no_destructive, "alice", "crm", "wipe"));
        assert!(
            !allowed(&no_destructive, "alice", "crm", "mystery"),
            "no hints: destructive by default"
        );
        // Observed hints count when the catalog has none for the tool.
        let observed = Hints::from_annotations(Some(&json!({"readOnlyHint": true})));
        let hints = no_destructive.hints("crm", "seen", Some(observed));
        assert!(
            no_destructive
                .decide(
                    "alice",
                    "crm",
                    &Ask {
                        hints,
                        ..tool("seen", Some(&json!({})))
                    }
                )
                .allowed
        );
    }

    #[test]
    fn tools_outside_the_catalog_follow_the_server_default() {
        let catalog = [("search", json!({"readOnlyHint": true}))];
        let g = || {
            vec![grant(
                "1",
                &["crm"],
                Subject::Everyone,
                GrantRules::default(),
            )]
        };
        let deny_new = world(g(), &catalog, true);
        assert!(allowed(&deny_new, "alice", "crm", "search"));
        assert_eq!(
            deny_new
                .decide("alice", "crm", &tool("brand_new", None))
                .why,
            Why::NewTool
        );
        let allow_new = world(g(), &catalog, false);
        assert!(allowed(&allow_new, "alice", "crm", "brand_new"));
    }

    #[test]
    fn argument_conditions_narrow_calls_but_not_listings() {
        let p = world(
            vec![grant(
                "1",
                &["crm"],
                Subject::Everyone,
                rules(json!([
                    {"effect": "allow", "match": "search_contacts",
                     "arguments": [{"pointer": "/region", "equals": "EU"}]},
                    {"effect": "allow", "match": "refund",
                     "arguments": [{"pointer": "/amount", "max": 100}]},
                    {"effect": "allow", "match": "tag",
                     "arguments": [{"pointer": "/label", "pattern": "[a-z]+"},
                                   {"pointer": "/colour", "one_of": ["red", "blue"]}]},
                    {"effect": "allow", "match": "export"},
                    {"effect": "deny", "match": "export",
                     "arguments": [{"pointer": "/format", "equals": "csv"}]}
                ])),
            )],
            &[],
            false,
        );
        let call =
            |name: &str, args: Value| p.decide("alice", "crm", &tool(name, Some(&args))).allowed;
        assert!(call("search_contacts", json!({"region": "EU"})));
        assert!(!call("search_contacts", json!({"region": "US"})));
        assert!(
            !call("search_contacts", json!({})),
            "missing argument fails"
        );
        assert!(call("refund", json!({"amount": 100})));
        assert!(!call("refund", json!({"amount": 100.5})));
        assert!(!call("refund", json!({"amount": "50"})), "numbers only");
        assert!(call("tag", json!({"label": "vip", "colour": "red"})));
        assert!(!call("tag", json!({"label": "VIP", "colour": "red"})));
        assert!(!call("tag", json!({"label": "vip", "colour": "green"})));
        assert!(call("export", json!({"format": "json"})));
        assert!(!call("export", json!({"format": "csv"})));
        // Listings: all of them are visible (some call could be allowed).
        for name in ["search_contacts", "refund", "tag", "export"] {
            assert!(
                p.decide("alice", "crm", &tool(name, None)).allowed,
                "{name}"
            );
        }
    }

    #[test]
    fn resources_and_prompts_have_rules_of_their_own() {
        let p = world(
            vec![grant(
                "1",
                &["crm"],
                Subject::Everyone,
                rules(json!([
                    {"effect": "allow", "kind": "resource", "match": "crm://accounts/*"},
                    {"effect": "deny", "kind": "prompt", "match": "admin_*"}
                ])),
            )],
            &[],
            false,
        );
        let ask = |kind, name| Ask {
            kind,
            ..tool(name, None)
        };
        assert!(
            p.decide(
                "alice",
                "crm",
                &ask(Kind::Resource, "crm://accounts/42/notes")
            )
            .allowed
        );
        assert!(
            !p.decide("alice", "crm", &ask(Kind::Resource, "crm://leads/1"))
                .allowed
        );
        assert!(
            !p.decide("alice", "crm", &ask(Kind::Prompt, "admin_reset"))
                .allowed
        );
        assert!(
            p.decide("alice", "crm", &ask(Kind::Prompt, "summarise"))
                .allowed
        );
        assert!(
            p.decide("alice", "crm", &ask(Kind::Tool, "anything"))
                .allowed
        );
    }

    #[test]
    fn listings_hide_what_calls_would_refuse() {
        let p = world(
            vec![grant(
                "1",
                &["crm"],
                Subject::Everyone,
                rules(json!([{"effect": "deny", "annotations": {"destructive": true}}])),
            )],
            &[],
            false,
        );
        let items = vec![
            json!({"name": "read", "annotations": {"readOnlyHint": true}}),
            json!({"name": "wipe"}),
        ];
        let hidden = hidden_names(&p, "alice", "crm", Kind::Tool, &items);
        assert_eq!(hidden, HashSet::from(["wipe".to_owned()]));
        assert_eq!(
            hidden_names(&p, "nobody", "crm", Kind::Tool, &items).len(),
            2
        );
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let bad = [
            (
                json!([{"effect": "allow", "match": "a[b"}]),
                "rule 1: match",
            ),
            (
                json!([{"effect": "allow", "kind": "prompt", "annotations": {"read_only": true}}]),
                "tools only",
            ),
            (
                json!([{"effect": "allow", "arguments": [{"pointer": "region", "equals": 1}]}]),
                "JSON pointer",
            ),
            (
                json!([{"effect": "allow", "arguments": [{"pointer": "/a", "equals": 1, "max": 2}]}]),
                "exactly one",
            ),
            (
                json!([{"effect": "allow", "arguments": [{"pointer": "/a", "pattern": "("}]}]),
                "pattern",
            ),
        ];
        for (r, want) in bad {
            let err = rules(r).validate().unwrap_err();
            assert!(err.contains(want), "{err} (wanted {want})");
        }
        assert!(
            serde_json::from_value::<GrantRules>(json!({"rules": [{"effect": "maybe"}]})).is_err()
        );
        assert!(rules(json!([{"effect": "deny", "match": "*delete*"}]))
            .validate()
            .is_ok());
    }

    #[test]
    fn a_rule_describes_itself() {
        let r: Rule = serde_json::from_value(json!({
            "effect": "allow", "match": "refund", "server": "payments",
            "annotations": {"read_only": false},
            "arguments": [{"pointer": "/amount", "max": 100}]
        }))
        .unwrap();
        assert_eq!(
            describe_rule(&r),
            "allow tool \"refund\" on payments where not read-only if argument /amount <= 100"
        );
    }
}
