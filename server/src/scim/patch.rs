//! SCIM PATCH (RFC 7644 §3.5.2) applied to a resource held as `serde_json::Value`.
//!
//! Besides the RFC forms, this accepts what Okta and Microsoft Entra ID really send:
//! capitalised ops (`"Replace"`), path-less `add`/`replace` whose value object has
//! dotted (`name.givenName`) or URN-qualified keys, booleans sent as strings
//! (`"active": "False"`), `remove` of `members` with a `value` list, a bare string as
//! the enterprise `manager`, and `add`/`replace` on `emails[type eq "work"].value` for
//! a user who has no work email yet (the element is created from the filter).
//!
//! The request is applied to a copy and committed only if every operation succeeds,
//! so a failed PATCH leaves the resource untouched. Attribute names are matched
//! case-insensitively; new keys get their RFC 7643 spelling when they are known.
//! This module checks PATCH semantics only: the caller still validates the result
//! against the resource schema (required attributes, types, uniqueness).

use super::filter::{self, get_ci, AttrPath, CompareOp, Filter, PatchPath, ENTERPRISE_USER_SCHEMA};
use serde_json::{Map, Value};
use std::fmt;

/// Schema URN a PatchOp request body must declare (when it declares any).
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A failed PATCH, ready to render as a SCIM error (RFC 7644 §3.12).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchError {
    pub status: u16,
    /// `invalidPath`, `invalidValue`, `noTarget`, `invalidSyntax` or `mutability`.
    pub scim_type: &'static str,
    pub detail: String,
}

impl PatchError {
    fn new(scim_type: &'static str, detail: impl Into<String>) -> Self {
        PatchError {
            status: 400,
            scim_type,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.scim_type, self.detail)
    }
}

impl std::error::Error for PatchError {}

type PatchResult = Result<(), PatchError>;

/// Top-level attributes a PATCH may not change: server-assigned ones, plus the
/// User's `groups`, which is readOnly (RFC 7643 §4.1.2) and must be derived from
/// Group membership rather than set by a client.
const READ_ONLY: &[&str] = &["id", "meta", "schemas", "groups"];

/// Attributes whose string values `"true"`/`"false"` (any case) become booleans.
const BOOLEAN_ATTRS: &[&str] = &["active", "primary"];

/// Multi-valued attributes of the core User/Group schemas (RFC 7643 §4).
const MULTI_VALUED: &[&str] = &[
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509Certificates",
    "members",
];

/// RFC 7643 spellings used when a PATCH creates a key the resource lacks.
const KNOWN_NAMES: &[&str] = &[
    "userName",
    "name",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
    "password",
    "externalId",
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509Certificates",
    "members",
    "formatted",
    "familyName",
    "givenName",
    "middleName",
    "honorificPrefix",
    "honorificSuffix",
    "value",
    "display",
    "type",
    "primary",
    "$ref",
    "streetAddress",
    "locality",
    "region",
    "postalCode",
    "country",
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
    "manager",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Applies a SCIM PatchOp request body ({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[…]}) to `resource` in place. All-or-nothing: on error `resource` is unchanged.
pub fn apply(resource: &mut Value, body: &Value) -> Result<(), PatchError> {
    if !body.is_object() {
        return Err(PatchError::new(
            "invalidSyntax",
            "PATCH body must be a JSON object",
        ));
    }
    if let Some(schemas) = get_ci(body, "schemas") {
        let declared = schemas.as_array().is_some_and(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .any(|s| s.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
        });
        if !declared {
            return Err(PatchError::new(
                "invalidSyntax",
                format!("\"schemas\" must contain \"{PATCH_OP_SCHEMA}\""),
            ));
        }
    }
    let operations = match get_ci(body, "Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => ops,
        Some(Value::Array(_)) => {
            return Err(PatchError::new("invalidSyntax", "\"Operations\" is empty"))
        }
        _ => {
            return Err(PatchError::new(
                "invalidSyntax",
                "missing \"Operations\" array",
            ))
        }
    };
    if !resource.is_object() {
        return Err(PatchError::new(
            "invalidSyntax",
            "target resource is not a JSON object",
        ));
    }

    let mut work = resource.clone();
    for (i, operation) in operations.iter().enumerate() {
        apply_operation(&mut work, operation).map_err(|mut e| {
            e.detail = format!("Operations[{i}]: {}", e.detail);
            e
        })?;
    }
    *resource = work;
    Ok(())
}

/// Applies one entry of `Operations`.
fn apply_operation(resource: &mut Value, operation: &Value) -> PatchResult {
    if !operation.is_object() {
        return Err(PatchError::new(
            "invalidSyntax",
            "operation must be a JSON object",
        ));
    }
    let op = match get_ci(operation, "op").and_then(Value::as_str) {
        Some(name) if name.eq_ignore_ascii_case("add") => Op::Add,
        Some(name) if name.eq_ignore_ascii_case("replace") => Op::Replace,
        Some(name) if name.eq_ignore_ascii_case("remove") => Op::Remove,
        Some(other) => {
            return Err(PatchError::new(
                "invalidSyntax",
                format!("unknown op \"{other}\" (expected add, replace or remove)"),
            ))
        }
        None => return Err(PatchError::new("invalidSyntax", "missing \"op\"")),
    };
    let path = match get_ci(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(PatchError::new("invalidPath", "\"path\" must be a string")),
    };
    let value = get_ci(operation, "value");

    match (path, op) {
        (Some(path), _) => apply_target(resource, op, path, value),
        (None, Op::Remove) => Err(PatchError::new("noTarget", "remove requires a \"path\"")),
        (None, _) => match value {
            Some(Value::Object(attrs)) => apply_object(resource, op, attrs),
            _ => Err(PatchError::new(
                "invalidValue",
                "add/replace without a \"path\" needs an object \"value\"",
            )),
        },
    }
}

/// Path-less add/replace: each key of the value object is a path of its own.
/// A key that is a core schema URN wraps core attributes and is unwrapped.
fn apply_object(resource: &mut Value, op: Op, attrs: &Map<String, Value>) -> PatchResult {
    for (key, value) in attrs {
        if filter::is_core_schema(key.trim()) {
            match value {
                Value::Object(inner) => apply_object(resource, op, inner)?,
                _ => {
                    return Err(PatchError::new(
                        "invalidValue",
                        format!("\"{key}\" must map to an object of attributes"),
                    ))
                }
            }
        } else {
            apply_target(resource, op, key, Some(value))?;
        }
    }
    Ok(())
}

/// Applies `op` at `path` (a PATCH path or a path-less value key).
fn apply_target(resource: &mut Value, op: Op, path: &str, value: Option<&Value>) -> PatchResult {
    let path = path.trim();
    if filter::is_core_schema(path) {
        return Err(PatchError::new(
            "invalidPath",
            format!("path \"{path}\" names a schema, not an attribute"),
        ));
    }
    let whole_schema = filter::whole_schema_key(resource, path);
    let parsed = match &whole_schema {
        Some(key) => PatchPath {
            attr: AttrPath {
                schema: None,
                name: key.clone(),
                sub_attr: None,
            },
            filter: None,
        },
        None => filter::parse_path(path)
            .map_err(|e| PatchError::new("invalidPath", format!("invalid path \"{path}\": {e}")))?,
    };
    let attr = &parsed.attr;

    if attr.schema.is_none() {
        if let Some(name) = READ_ONLY.iter().find(|n| attr.name.eq_ignore_ascii_case(n)) {
            // Okta sends the current `id` along with a path-less group rename; an
            // unchanged value is not a modification, so let it through.
            let unchanged = op != Op::Remove
                && parsed.filter.is_none()
                && attr.sub_attr.is_none()
                && value.is_some()
                && get_ci(resource, name) == value;
            if unchanged {
                return Ok(());
            }
            return Err(PatchError::new(
                "mutability",
                format!("attribute \"{name}\" is read-only"),
            ));
        }
    }

    let value = match (op, value) {
        (Op::Remove, v) => v.cloned(),
        (_, Some(v)) => Some(normalize_value(attr, v.clone())),
        (_, None) => return Err(PatchError::new("invalidValue", "missing \"value\"")),
    };

    let Some(container) = container_mut(resource, attr.schema.as_deref(), op != Op::Remove)? else {
        return Ok(()); // removing from an extension the resource does not have
    };
    match (&parsed.filter, &attr.sub_attr) {
        (None, None) => plain(container, op, &attr.name, value)?,
        (None, Some(sub)) => sub_attribute(container, op, &attr.name, sub, value)?,
        (Some(filter), sub) => filtered(container, op, &attr.name, filter, sub.as_deref(), value)?,
    }

    // Keep `schemas` in step when a whole extension object is added or removed.
    if let (Some(urn), Some(root)) = (&whole_schema, resource.as_object_mut()) {
        if find_key(root, urn).is_some() {
            add_schema(root, urn);
        } else {
            remove_schema(root, urn);
        }
    }
    Ok(())
}

/// Coerces client quirks: `"True"`/`"False"` strings for boolean attributes, and a
/// bare string for the enterprise `manager` (Entra sends the manager's id alone).
fn normalize_value(attr: &AttrPath, value: Value) -> Value {
    let leaf = attr.sub_attr.as_deref().unwrap_or(&attr.name);
    let value = coerce_bools(leaf, value);
    match value {
        Value::String(id) if attr.sub_attr.is_none() && leaf.eq_ignore_ascii_case("manager") => {
            let mut manager = Map::new();
            manager.insert("value".to_string(), Value::String(id));
            Value::Object(manager)
        }
        other => other,
    }
}

/// Turns `"true"`/`"false"` (any case) into booleans for attributes named in
/// [`BOOLEAN_ATTRS`], looking inside objects and arrays (e.g. `emails[].primary`).
fn coerce_bools(name: &str, value: Value) -> Value {
    match value {
        Value::String(s) if BOOLEAN_ATTRS.iter().any(|b| name.eq_ignore_ascii_case(b)) => {
            if s.eq_ignore_ascii_case("true") {
                Value::Bool(true)
            } else if s.eq_ignore_ascii_case("false") {
                Value::Bool(false)
            } else {
                Value::String(s)
            }
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = coerce_bools(&k, v);
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| coerce_bools(name, v)).collect())
        }
        other => other,
    }
}

/// The object a path's attribute lives in: the resource itself, or the extension
/// object named by `schema` (created, and listed in `schemas`, when `create`).
/// `Ok(None)` when the extension is absent and `create` is false.
fn container_mut<'a>(
    resource: &'a mut Value,
    schema: Option<&str>,
    create: bool,
) -> Result<Option<&'a mut Map<String, Value>>, PatchError> {
    let Some(root) = resource.as_object_mut() else {
        return Err(PatchError::new(
            "invalidSyntax",
            "target resource is not a JSON object",
        ));
    };
    let Some(urn) = schema else {
        return Ok(Some(root));
    };
    let key = match find_key(root, urn) {
        Some(key) => key,
        None if create => {
            let key = if urn.eq_ignore_ascii_case(ENTERPRISE_USER_SCHEMA) {
                ENTERPRISE_USER_SCHEMA.to_string()
            } else {
                urn.to_string()
            };
            root.insert(key.clone(), Value::Object(Map::new()));
            add_schema(root, &key);
            key
        }
        None => return Ok(None),
    };
    match root.get_mut(&key) {
        Some(slot @ Value::Null) if create => {
            *slot = Value::Object(Map::new());
            Ok(slot.as_object_mut())
        }
        Some(Value::Object(ext)) => Ok(Some(ext)),
        Some(Value::Null) | None => Ok(None),
        Some(_) => Err(PatchError::new(
            "invalidPath",
            format!("\"{key}\" is not an extension object"),
        )),
    }
}

/// `path` = plain attribute (`displayName`, `members`, an extension URN key).
fn plain(map: &mut Map<String, Value>, op: Op, name: &str, value: Option<Value>) -> PatchResult {
    let key = find_key(map, name);
    if op == Op::Remove {
        let Some(key) = key else {
            return Ok(());
        };
        // Entra style: remove the listed values from a multi-valued attribute.
        let remove_whole = match (map.get_mut(&key), &value) {
            (Some(Value::Array(items)), Some(targets)) if !targets.is_null() => {
                let targets: Vec<&Value> = match targets {
                    Value::Array(list) => list.iter().collect(),
                    single => vec![single],
                };
                items.retain(|item| !targets.iter().any(|t| same_element(item, t)));
                items.is_empty()
            }
            _ => true,
        };
        if remove_whole {
            map.remove(&key);
        }
        return Ok(());
    }

    let Some(value) = value else {
        return Err(PatchError::new("invalidValue", "missing \"value\""));
    };
    if value.is_null() {
        // Assigning null unassigns the attribute (RFC 7643 §2.5).
        if let Some(key) = key {
            map.remove(&key);
        }
        return Ok(());
    }
    let value = wrap_multi_valued(name, value);
    let Some(slot) = key.and_then(|k| map.get_mut(&k)) else {
        map.insert(canonical(name), value);
        return Ok(());
    };
    match (op, slot, value) {
        (Op::Add, Value::Array(items), value) => append_unique(items, value),
        (_, Value::Object(existing), Value::Object(new)) => merge(existing, new),
        (_, slot, value) => *slot = value,
    }
    Ok(())
}

/// `path` = `attr.sub` without a value filter (`name.familyName`, `emails.type`).
fn sub_attribute(
    map: &mut Map<String, Value>,
    op: Op,
    name: &str,
    sub: &str,
    value: Option<Value>,
) -> PatchResult {
    let key = find_key(map, name);
    if op == Op::Remove {
        match key.and_then(|k| map.get_mut(&k)) {
            Some(Value::Object(obj)) => remove_ci(obj, sub),
            Some(Value::Array(items)) => items
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(|obj| remove_ci(obj, sub)),
            _ => {}
        }
        return Ok(());
    }

    let Some(value) = value else {
        return Err(PatchError::new("invalidValue", "missing \"value\""));
    };
    let slot = map
        .entry(key.unwrap_or_else(|| canonical(name)))
        .or_insert(Value::Null);
    if slot.is_null() {
        *slot = if is_multi_valued(name) {
            Value::Array(vec![Value::Object(Map::new())])
        } else {
            Value::Object(Map::new())
        };
    }
    match slot {
        Value::Object(obj) => set_ci(obj, sub, value),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            for obj in items.iter_mut().filter_map(Value::as_object_mut) {
                set_ci(obj, sub, value.clone());
            }
        }
        Value::Array(_) => {
            return Err(PatchError::new(
                "noTarget",
                format!("\"{name}\" has no complex values to set \"{sub}\" on"),
            ))
        }
        _ => {
            return Err(PatchError::new(
                "invalidPath",
                format!("\"{name}\" has no sub-attributes"),
            ))
        }
    }
    Ok(())
}

/// `path` = `attr[filter]` or `attr[filter].sub` on a multi-valued attribute.
fn filtered(
    map: &mut Map<String, Value>,
    op: Op,
    name: &str,
    filter: &Filter,
    sub: Option<&str>,
    value: Option<Value>,
) -> PatchResult {
    let key = find_key(map, name);
    let matched: Vec<usize> = match key.as_ref().and_then(|k| map.get(k)) {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter(|(_, item)| filter.matches_element(name, item))
            .map(|(i, _)| i)
            .collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            return Err(PatchError::new(
                "invalidPath",
                format!("a value filter needs a multi-valued attribute, \"{name}\" is not one"),
            ))
        }
    };

    if op == Op::Remove {
        let Some(key) = key else {
            return Ok(());
        };
        let Some(Value::Array(items)) = map.get_mut(&key) else {
            return Ok(());
        };
        match sub {
            None => {
                let mut index = 0;
                items.retain(|_| {
                    let keep = matched.binary_search(&index).is_err();
                    index += 1;
                    keep
                });
                if items.is_empty() {
                    map.remove(&key);
                }
            }
            Some(sub) => {
                for &i in &matched {
                    if let Some(Value::Object(obj)) = items.get_mut(i) {
                        remove_ci(obj, sub);
                    }
                }
            }
        }
        return Ok(());
    }

    let Some(value) = value else {
        return Err(PatchError::new("invalidValue", "missing \"value\""));
    };
    if sub.is_none() && !value.is_object() {
        return Err(PatchError::new(
            "invalidValue",
            format!("\"value\" must be an object of sub-attributes of \"{name}\""),
        ));
    }
    let sets_primary = match sub {
        Some(s) => s.eq_ignore_ascii_case("primary") && value == Value::Bool(true),
        None => is_primary(&value),
    };

    if matched.is_empty() {
        // Nothing matched: create the element when the filter spells it out
        // (`emails[type eq "work"].value`, as Entra sends), else noTarget (RFC 7644 §3.5.2.3).
        let Some(mut element) = eq_template(filter) else {
            return Err(PatchError::new(
                "noTarget",
                format!("no value of \"{name}\" matches the filter"),
            ));
        };
        match (sub, value) {
            (Some(sub), value) => set_ci(&mut element, sub, value),
            (None, Value::Object(fields)) => merge(&mut element, fields),
            (None, _) => {} // rejected above
        }
        let slot = map
            .entry(key.unwrap_or_else(|| canonical(name)))
            .or_insert(Value::Null);
        if !slot.is_array() {
            *slot = Value::Array(Vec::new());
        }
        if let Value::Array(items) = slot {
            append_unique(items, Value::Object(element));
        }
        return Ok(());
    }

    let Some(Value::Array(items)) = key.and_then(|k| map.get_mut(&k)) else {
        return Ok(()); // unreachable: matches came from this array
    };
    if sets_primary {
        clear_primary(items);
    }
    for &i in &matched {
        let Some(Value::Object(obj)) = items.get_mut(i) else {
            return Err(PatchError::new(
                "invalidPath",
                format!("values of \"{name}\" have no sub-attributes"),
            ));
        };
        match (sub, &value) {
            (Some(sub), value) => set_ci(obj, sub, value.clone()),
            (None, Value::Object(fields)) => merge(obj, fields.clone()),
            (None, _) => {} // rejected above
        }
    }
    Ok(())
}

/// The element a filter of `eq` tests describes, e.g. `type eq "work"` gives
/// `{"type":"work"}`; `None` for any other filter shape.
fn eq_template(filter: &Filter) -> Option<Map<String, Value>> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.schema.is_none() && path.sub_attr.is_none() && !value.is_null() => {
            let mut element = Map::new();
            element.insert(canonical(&path.name), value.clone());
            Some(element)
        }
        Filter::And(terms) => {
            let mut element = Map::new();
            for term in terms {
                element.extend(eq_template(term)?);
            }
            Some(element)
        }
        _ => None,
    }
}

/// Appends `value` (one element or an array of them) to a multi-valued attribute,
/// skipping elements already present (same `value` sub-attribute, or identical),
/// dropping null sub-attributes, and keeping at most one `primary`.
fn append_unique(items: &mut Vec<Value>, value: Value) {
    let new = match value {
        Value::Array(list) => list,
        single => vec![single],
    };
    for mut element in new {
        if let Value::Object(obj) = &mut element {
            obj.retain(|_, v| !v.is_null());
        }
        if element.is_null()
            || items
                .iter()
                .any(|existing| same_element(existing, &element))
        {
            continue;
        }
        if is_primary(&element) {
            clear_primary(items);
        }
        items.push(element);
    }
}

/// Whether two elements of a multi-valued attribute are the same value: equal
/// `value` sub-attributes when both have one, otherwise equal JSON.
fn same_element(a: &Value, b: &Value) -> bool {
    match (get_ci(a, "value"), get_ci(b, "value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn is_primary(element: &Value) -> bool {
    get_ci(element, "primary") == Some(&Value::Bool(true))
}

/// Drops `primary: true` from every element (RFC 7643 §2.4: at most one primary).
fn clear_primary(items: &mut [Value]) {
    for obj in items.iter_mut().filter_map(Value::as_object_mut) {
        if let Some(key) = find_key(obj, "primary") {
            obj.remove(&key);
        }
    }
}

/// Sets each field of `new` on `existing` (sub-attributes not mentioned are kept;
/// null unassigns), as RFC 7644 §3.5.2.3 prescribes for complex attributes.
fn merge(existing: &mut Map<String, Value>, new: Map<String, Value>) {
    for (key, value) in new {
        set_ci(existing, &key, value);
    }
}

/// Sets `key` (matched case-insensitively) to `value`; null removes it.
fn set_ci(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if value.is_null() {
        remove_ci(obj, key);
        return;
    }
    let key = find_key(obj, key).unwrap_or_else(|| canonical(key));
    obj.insert(key, value);
}

fn remove_ci(obj: &mut Map<String, Value>, key: &str) {
    if let Some(key) = find_key(obj, key) {
        obj.remove(&key);
    }
}

/// The existing key equal to `name` (exact match first, then case-insensitive).
fn find_key(obj: &Map<String, Value>, name: &str) -> Option<String> {
    if obj.contains_key(name) {
        return Some(name.to_string());
    }
    obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// RFC 7643 spelling of a known attribute name, else the name as given.
fn canonical(name: &str) -> String {
    KNOWN_NAMES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_string(), |known| (*known).to_string())
}

fn is_multi_valued(name: &str) -> bool {
    MULTI_VALUED.iter().any(|m| m.eq_ignore_ascii_case(name))
}

/// A single value given for a multi-valued attribute becomes a one-element array.
fn wrap_multi_valued(name: &str, value: Value) -> Value {
    if is_multi_valued(name) && !value.is_array() {
        Value::Array(vec![value])
    } else {
        value
    }
}

fn add_schema(root: &mut Map<String, Value>, urn: &str) {
    if let Some(Value::Array(schemas)) = find_key(root, "schemas").and_then(|k| root.get_mut(&k)) {
        let listed = schemas
            .iter()
            .filter_map(Value::as_str)
            .any(|s| s.eq_ignore_ascii_case(urn));
        if !listed {
            schemas.push(Value::String(urn.to_string()));
        }
    }
}

fn remove_schema(root: &mut Map<String, Value>, urn: &str) {
    if let Some(Value::Array(schemas)) = find_key(root, "schemas").and_then(|k| root.get_mut(&k)) {
        schemas.retain(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
    const ENT: &str = ENTERPRISE_USER_SCHEMA;

    fn user() -> Value {
        json!({
            "schemas": [USER],
            "id": "u1",
            "externalId": "ext-1",
            "userName": "bjensen@example.com",
            "active": true,
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "displayName": "Babs",
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@home.org", "type": "home"}
            ],
            "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z"}
        })
    }

    fn group() -> Value {
        json!({
            "schemas": [GROUP],
            "id": "g1",
            "displayName": "Admins",
            "members": [
                {"value": "id1", "display": "Alice"},
                {"value": "id2", "display": "Bob"}
            ],
            "meta": {"resourceType": "Group"}
        })
    }

    fn body(ops: Value) -> Value {
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops})
    }

    fn patched(mut resource: Value, ops: Value) -> Value {
        apply(&mut resource, &body(ops)).unwrap_or_else(|e| panic!("{e}"));
        resource
    }

    fn failed(resource: Value, ops: Value) -> PatchError {
        let before = resource.clone();
        let mut after = resource;
        let err = apply(&mut after, &body(ops)).expect_err("patch should fail");
        assert_eq!(
            after, before,
            "a failed PATCH must leave the resource unchanged"
        );
        err
    }

    fn member_ids(group: &Value) -> Vec<&str> {
        group["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|e| e["value"].as_str()).collect())
            .unwrap_or_default()
    }

    // ---- request envelope ----

    #[test]
    fn rejects_malformed_bodies() {
        let mut r = user();
        let e = apply(&mut r, &json!({"schemas": [PATCH_OP_SCHEMA]})).unwrap_err();
        assert_eq!((e.status, e.scim_type), (400, "invalidSyntax"));
        assert!(e.detail.contains("Operations"));
        let e = apply(&mut r, &json!({"Operations": "x"})).unwrap_err();
        assert_eq!(e.scim_type, "invalidSyntax");
        let e = apply(&mut r, &body(json!([]))).unwrap_err();
        assert_eq!(e.scim_type, "invalidSyntax");
        let e = apply(&mut r, &json!([])).unwrap_err();
        assert_eq!(e.scim_type, "invalidSyntax");
        let e = apply(
            &mut r,
            &json!({"schemas": ["urn:wrong"], "Operations": [{"op": "remove", "path": "title"}]}),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, "invalidSyntax");
        assert_eq!(r, user());
        // schemas may be omitted
        apply(
            &mut r,
            &json!({"Operations": [{"op": "replace", "path": "title", "value": "x"}]}),
        )
        .unwrap();
        assert_eq!(r["title"], "x");
    }

    #[test]
    fn rejects_bad_operations() {
        let e = failed(
            user(),
            json!([{"op": "merge", "path": "title", "value": "x"}]),
        );
        assert_eq!(e.scim_type, "invalidSyntax");
        assert!(e.detail.contains("Operations[0]: unknown op \"merge\""));
        assert_eq!(
            failed(user(), json!([{"path": "title", "value": "x"}])).scim_type,
            "invalidSyntax"
        );
        assert_eq!(
            failed(user(), json!([{"op": 1, "path": "title"}])).scim_type,
            "invalidSyntax"
        );
        assert_eq!(failed(user(), json!(["add"])).scim_type, "invalidSyntax");
        assert_eq!(
            failed(user(), json!([{"op": "add", "path": 3, "value": 1}])).scim_type,
            "invalidPath"
        );
        assert_eq!(
            failed(user(), json!([{"op": "add", "path": "title"}])).scim_type,
            "invalidValue"
        );
        assert_eq!(
            failed(user(), json!([{"op": "replace", "value": "x"}])).scim_type,
            "invalidValue"
        );
        assert_eq!(
            failed(user(), json!([{"op": "remove"}])).scim_type,
            "noTarget"
        );
        for bad in [
            "emails[type eq",
            "emails[type zz \"x\"]",
            "name..x",
            "a b",
            "user:Name",
            USER,
        ] {
            let e = failed(
                user(),
                json!([{"op": "replace", "path": bad, "value": "x"}]),
            );
            assert_eq!(e.scim_type, "invalidPath", "{bad}");
        }
    }

    #[test]
    fn op_names_are_case_insensitive() {
        let r = patched(
            user(),
            json!([
                {"op": "Replace", "path": "displayName", "value": "A"},
                {"op": "ADD", "path": "title", "value": "T"},
                {"op": "Remove", "path": "nickName"}
            ]),
        );
        assert_eq!(r["displayName"], "A");
        assert_eq!(r["title"], "T");
    }

    #[test]
    fn atomic_on_error() {
        let e = failed(
            user(),
            json!([
                {"op": "replace", "path": "displayName", "value": "Changed"},
                {"op": "add", "path": "members", "value": [{"value": "x"}]},
                {"op": "replace", "path": "id", "value": "other"}
            ]),
        );
        assert_eq!((e.status, e.scim_type), (400, "mutability"));
        assert!(e.detail.starts_with("Operations[2]:"));
    }

    // ---- read-only attributes ----

    #[test]
    fn read_only_attributes() {
        for path in [
            "id",
            "ID",
            "meta",
            "meta.created",
            "schemas",
            "groups",
            "urn:ietf:params:scim:schemas:core:2.0:User:id",
        ] {
            let e = failed(
                user(),
                json!([{"op": "replace", "path": path, "value": "x"}]),
            );
            assert_eq!((e.status, e.scim_type), (400, "mutability"), "{path}");
            let e = failed(user(), json!([{"op": "remove", "path": path}]));
            assert_eq!(e.scim_type, "mutability", "{path}");
        }
        let e = failed(
            user(),
            json!([{"op": "replace", "value": {"id": "other", "displayName": "x"}}]),
        );
        assert_eq!(e.scim_type, "mutability");
        let e = failed(
            user(),
            json!([{"op": "add", "value": {"meta": {"created": "x"}}}]),
        );
        assert_eq!(e.scim_type, "mutability");
    }

    #[test]
    fn okta_group_rename_with_unchanged_id() {
        let g = group();
        let mut g = g;
        g["id"] = json!("abf4dd94-a4c0-4f67-89c9-76b03340cb9b");
        let r = patched(
            g,
            json!([{"op": "replace", "value": {"id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b", "displayName": "Test SCIMv2"}}]),
        );
        assert_eq!(r["displayName"], "Test SCIMv2");
        assert_eq!(r["id"], "abf4dd94-a4c0-4f67-89c9-76b03340cb9b");
        assert_eq!(member_ids(&r), ["id1", "id2"]);
    }

    // ---- path-less add/replace ----

    #[test]
    fn okta_deactivate_user() {
        let r = patched(
            user(),
            json!([{"op": "replace", "value": {"active": false}}]),
        );
        assert_eq!(r["active"], false);
        assert_eq!(r["userName"], "bjensen@example.com");
    }

    #[test]
    fn entra_active_as_string() {
        let r = patched(
            user(),
            json!([{"op": "Replace", "value": {"active": "False"}}]),
        );
        assert_eq!(r["active"], false);
        let r = patched(
            r,
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        );
        assert_eq!(r["active"], true);
        let r = patched(
            r,
            json!([{"op": "Replace", "path": "active", "value": "FALSE"}]),
        );
        assert_eq!(r["active"], false);
        let r = patched(
            r,
            json!([{"op": "replace", "path": "ACTIVE", "value": true}]),
        );
        assert_eq!(r["active"], true);
        // other strings are left alone (schema validation rejects them later)
        let r = patched(
            r,
            json!([{"op": "replace", "path": "active", "value": "maybe"}]),
        );
        assert_eq!(r["active"], "maybe");
        // non-boolean attributes keep their strings
        let r = patched(
            r,
            json!([{"op": "replace", "path": "title", "value": "False"}]),
        );
        assert_eq!(r["title"], "False");
    }

    #[test]
    fn pathless_dotted_and_urn_keys() {
        let r = patched(
            user(),
            json!([{"op": "Replace", "value": {
                "name.givenName": "Babs",
                "urn:ietf:params:scim:schemas:core:2.0:User:displayName": "BJ",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value": "m1"
            }}]),
        );
        assert_eq!(
            r["name"],
            json!({"familyName": "Jensen", "givenName": "Babs"})
        );
        assert_eq!(r["displayName"], "BJ");
        assert_eq!(
            r[ENT],
            json!({"department": "Sales", "manager": {"value": "m1"}})
        );
        assert_eq!(
            r["schemas"],
            json!([USER, ENT]),
            "extension added to schemas"
        );
        assert!(r
            .get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department")
            .is_none());
    }

    #[test]
    fn pathless_whole_extension_and_core_wrapper() {
        let r = patched(
            user(),
            json!([{"op": "add", "value": {
                ENT: {"employeeNumber": "42", "costCenter": "CC"},
                USER: {"nickName": "B"}
            }}]),
        );
        assert_eq!(r[ENT], json!({"employeeNumber": "42", "costCenter": "CC"}));
        assert_eq!(r["nickName"], "B");
        assert_eq!(r["schemas"], json!([USER, ENT]));
        // replace merges into the extension, keeping unspecified attributes
        let r = patched(
            r,
            json!([{"op": "replace", "value": {ENT: {"costCenter": "CC2"}}}]),
        );
        assert_eq!(r[ENT], json!({"employeeNumber": "42", "costCenter": "CC2"}));
        // and removing the whole extension drops it from schemas too
        let r = patched(r, json!([{"op": "remove", "path": ENT}]));
        assert!(r.get(ENT).is_none());
        assert_eq!(r["schemas"], json!([USER]));
    }

    #[test]
    fn pathless_replace_merges_complex_and_replaces_multi_valued() {
        let r = patched(
            user(),
            json!([{"op": "replace", "value": {
                "name": {"givenName": "B"},
                "emails": [{"value": "new@example.com", "type": "work"}]
            }}]),
        );
        assert_eq!(r["name"], json!({"familyName": "Jensen", "givenName": "B"}));
        assert_eq!(
            r["emails"],
            json!([{"value": "new@example.com", "type": "work"}])
        );
    }

    #[test]
    fn pathless_add_appends_to_multi_valued() {
        let r = patched(
            user(),
            json!([{"op": "add", "value": {"emails": [{"value": "x@y.z", "type": "other"}]}}]),
        );
        assert_eq!(r["emails"].as_array().map(Vec::len), Some(3));
    }

    // ---- simple paths ----

    #[test]
    fn replace_simple_and_sub_attributes() {
        let r = patched(
            user(),
            json!([
                {"op": "replace", "path": "userName", "value": "new@example.com"},
                {"op": "replace", "path": "name.familyName", "value": "Smith"},
                {"op": "replace", "path": "NAME.GIVENNAME", "value": "Jo"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:displayName", "value": "JS"}
            ]),
        );
        assert_eq!(r["userName"], "new@example.com");
        assert_eq!(r["name"], json!({"familyName": "Smith", "givenName": "Jo"}));
        assert_eq!(r["displayName"], "JS");
    }

    #[test]
    fn new_keys_get_canonical_spelling() {
        let r = patched(
            json!({"schemas": [USER], "id": "u1"}),
            json!([
                {"op": "add", "path": "NICKNAME", "value": "B"},
                {"op": "add", "path": "name.FAMILYNAME", "value": "J"},
                {"op": "add", "path": "customThing", "value": 1}
            ]),
        );
        assert_eq!(r["nickName"], "B");
        assert_eq!(r["name"], json!({"familyName": "J"}));
        assert_eq!(r["customThing"], 1);
    }

    #[test]
    fn existing_key_spelling_is_kept() {
        let r = patched(
            json!({"id": "u1", "DisplayName": "a"}),
            json!([{"op": "replace", "path": "displayName", "value": "b"}]),
        );
        assert_eq!(r, json!({"id": "u1", "DisplayName": "b"}));
    }

    #[test]
    fn add_sub_attribute_creates_parent() {
        let mut u = user();
        u.as_object_mut().map(|o| o.remove("name"));
        let r = patched(
            u,
            json!([{"op": "add", "path": "name.givenName", "value": "X"}]),
        );
        assert_eq!(r["name"], json!({"givenName": "X"}));
    }

    #[test]
    fn replace_with_null_unassigns() {
        let r = patched(
            user(),
            json!([{"op": "replace", "path": "displayName", "value": null}, {"op": "replace", "path": "name.givenName", "value": null}]),
        );
        assert!(r.get("displayName").is_none());
        assert_eq!(r["name"], json!({"familyName": "Jensen"}));
    }

    #[test]
    fn remove_simple_and_sub_attributes() {
        let r = patched(
            user(),
            json!([
                {"op": "remove", "path": "displayName"},
                {"op": "remove", "path": "name.givenName"},
                {"op": "remove", "path": "emails.type"},
                {"op": "remove", "path": "doesNotExist"},
                {"op": "remove", "path": "nothere.either"},
                {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}
            ]),
        );
        assert!(r.get("displayName").is_none());
        assert_eq!(r["name"], json!({"familyName": "Jensen"}));
        assert_eq!(
            r["emails"],
            json!([{"value": "bjensen@example.com", "primary": true}, {"value": "babs@home.org"}])
        );
        assert!(
            r.get(ENT).is_none(),
            "removing from a missing extension creates nothing"
        );
    }

    #[test]
    fn sub_attribute_of_scalar_is_invalid_path() {
        let e = failed(
            user(),
            json!([{"op": "replace", "path": "userName.x", "value": "y"}]),
        );
        assert_eq!(e.scim_type, "invalidPath");
    }

    #[test]
    fn extension_paths() {
        let r = patched(
            user(),
            json!([
                {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops"},
                {"op": "add", "path": "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:employeeNumber", "value": "7"}
            ]),
        );
        assert_eq!(r[ENT], json!({"department": "Ops", "employeeNumber": "7"}));
        assert_eq!(r["schemas"], json!([USER, ENT]));
    }

    #[test]
    fn entra_manager_as_bare_string() {
        let r = patched(
            user(),
            json!([{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "2819c223-7f76-453a-919d-413861904646"}]),
        );
        assert_eq!(
            r[ENT]["manager"],
            json!({"value": "2819c223-7f76-453a-919d-413861904646"})
        );
        let r = patched(
            r,
            json!([{"op": "Remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}]),
        );
        assert_eq!(r[ENT], json!({}));
    }

    // ---- multi-valued: members ----

    #[test]
    fn okta_add_members() {
        let r = patched(
            group(),
            json!([{"op": "add", "path": "members", "value": [
                {"value": "23a35c27-23d3-4c03-b4c5-6443c09e7173", "display": "test.user@okta.local"}
            ]}]),
        );
        assert_eq!(
            member_ids(&r),
            ["id1", "id2", "23a35c27-23d3-4c03-b4c5-6443c09e7173"]
        );
    }

    #[test]
    fn add_members_skips_duplicates_and_nulls() {
        let r = patched(
            group(),
            json!([{"op": "Add", "path": "members", "value": [
                {"$ref": null, "value": "id2"},
                {"$ref": null, "value": "id3"},
                {"value": "id3"}
            ]}]),
        );
        assert_eq!(member_ids(&r), ["id1", "id2", "id3"]);
        assert_eq!(
            r["members"][2],
            json!({"value": "id3"}),
            "null $ref dropped"
        );
        assert_eq!(r["members"][1]["display"], "Bob", "existing element kept");
    }

    #[test]
    fn add_members_to_group_without_members() {
        let mut g = group();
        g.as_object_mut().map(|o| o.remove("members"));
        let r = patched(
            g.clone(),
            json!([{"op": "add", "path": "members", "value": [{"value": "a"}]}]),
        );
        assert_eq!(member_ids(&r), ["a"]);
        // a single object is wrapped into an array
        let r = patched(
            g,
            json!([{"op": "add", "path": "members", "value": {"value": "a"}}]),
        );
        assert_eq!(r["members"], json!([{"value": "a"}]));
    }

    #[test]
    fn okta_remove_member_by_filter() {
        let r = patched(
            group(),
            json!([{"op": "remove", "path": "members[value eq \"id1\"]"}]),
        );
        assert_eq!(member_ids(&r), ["id2"]);
        // member ids are caseExact
        let r = patched(
            group(),
            json!([{"op": "remove", "path": "members[value eq \"ID1\"]"}]),
        );
        assert_eq!(member_ids(&r), ["id1", "id2"]);
        // no match is not an error
        let r = patched(
            group(),
            json!([{"op": "remove", "path": "members[value eq \"nobody\"]"}]),
        );
        assert_eq!(member_ids(&r), ["id1", "id2"]);
    }

    #[test]
    fn entra_remove_members_with_value_list() {
        let r = patched(
            group(),
            json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "id1"}]}]),
        );
        assert_eq!(member_ids(&r), ["id2"]);
        let r = patched(
            r,
            json!([{"op": "Remove", "path": "members", "value": [{"value": "id2"}]}]),
        );
        assert!(r.get("members").is_none(), "no values left: unassigned");
    }

    #[test]
    fn remove_all_members() {
        let r = patched(group(), json!([{"op": "remove", "path": "members"}]));
        assert!(r.get("members").is_none());
        let r = patched(
            group(),
            json!([{"op": "remove", "path": "members", "value": null}]),
        );
        assert!(r.get("members").is_none());
    }

    #[test]
    fn replace_members() {
        let r = patched(
            group(),
            json!([{"op": "replace", "path": "members", "value": [{"value": "x"}, {"value": "y"}]}]),
        );
        assert_eq!(member_ids(&r), ["x", "y"]);
        let r = patched(
            group(),
            json!([{"op": "replace", "path": "members", "value": []}]),
        );
        assert_eq!(r["members"], json!([]));
    }

    #[test]
    fn entra_group_updates_verbatim() {
        let mut g = group();
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"},
                {"op": "Add", "path": "members", "value": [{"$ref": null, "value": "f648f8d5ea4e4cd38e9c"}]},
                {"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "id1"}]}
            ]
        });
        apply(&mut g, &body).unwrap();
        assert_eq!(
            g["displayName"],
            "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
        );
        assert_eq!(member_ids(&g), ["id2", "f648f8d5ea4e4cd38e9c"]);
    }

    // ---- multi-valued: filtered paths ----

    #[test]
    fn entra_user_update_verbatim() {
        let mut u = user();
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
            ]
        });
        apply(&mut u, &body).unwrap();
        assert_eq!(
            u["emails"][0],
            json!({"value": "updatedEmail@microsoft.com", "type": "work", "primary": true})
        );
        assert_eq!(u["emails"][1]["value"], "babs@home.org");
        assert_eq!(u["name"]["familyName"], "updatedFamilyName");
    }

    #[test]
    fn entra_add_work_email_creates_element() {
        let mut u = user();
        u.as_object_mut().map(|o| o.remove("emails"));
        let r = patched(
            u,
            json!([
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "joe@example.com"},
                {"op": "Add", "path": "emails[type eq \"work\"].primary", "value": "True"},
                {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St"},
                {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Springfield"}
            ]),
        );
        assert_eq!(
            r["emails"],
            json!([{"type": "work", "value": "joe@example.com", "primary": true}])
        );
        assert_eq!(
            r["addresses"],
            json!([{"type": "work", "streetAddress": "1 Main St", "locality": "Springfield"}])
        );
    }

    #[test]
    fn replace_filtered_without_match() {
        // Simple eq filter with a sub-attribute: the element is created (Entra).
        let r = patched(
            user(),
            json!([{"op": "replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"}]),
        );
        assert_eq!(
            r["phoneNumbers"],
            json!([{"type": "mobile", "value": "+1 555"}])
        );
        // Anything else is noTarget (RFC 7644 §3.5.2.3).
        let e = failed(
            user(),
            json!([{"op": "replace", "path": "emails[value co \"nobody\"].type", "value": "x"}]),
        );
        assert_eq!((e.status, e.scim_type), (400, "noTarget"));
        let e = failed(
            user(),
            json!([{"op": "replace", "path": "emails[type eq \"x\" or type eq \"y\"].value", "value": "v"}]),
        );
        assert_eq!(e.scim_type, "noTarget");
    }

    #[test]
    fn replace_filtered_element_merges() {
        let r = patched(
            user(),
            json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "new@home.org"}}]),
        );
        assert_eq!(
            r["emails"][1],
            json!({"value": "new@home.org", "type": "home"})
        );
        let e = failed(
            user(),
            json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": "str"}]),
        );
        assert_eq!(e.scim_type, "invalidValue");
    }

    #[test]
    fn filtered_paths_are_case_insensitive() {
        let r = patched(
            user(),
            json!([{"op": "replace", "path": "EMAILS[TYPE EQ \"WORK\"].VALUE", "value": "w@x.y"}]),
        );
        assert_eq!(r["emails"][0]["value"], "w@x.y");
        assert_eq!(r["emails"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn primary_stays_unique() {
        let r = patched(
            user(),
            json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
        );
        assert_eq!(r["emails"][0].get("primary"), None);
        assert_eq!(r["emails"][1]["primary"], true);
        let r = patched(
            user(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "n@x.y", "primary": "true"}]}]),
        );
        assert_eq!(r["emails"][0].get("primary"), None);
        assert_eq!(r["emails"][2], json!({"value": "n@x.y", "primary": true}));
    }

    #[test]
    fn remove_filtered() {
        let r = patched(
            user(),
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        );
        assert_eq!(r["emails"].as_array().map(Vec::len), Some(1));
        let r = patched(
            user(),
            json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
        );
        assert_eq!(
            r["emails"][0],
            json!({"value": "bjensen@example.com", "type": "work"})
        );
        let r = patched(
            user(),
            json!([{"op": "remove", "path": "emails[value pr]"}]),
        );
        assert!(r.get("emails").is_none());
        let r = patched(
            user(),
            json!([{"op": "remove", "path": "phoneNumbers[type eq \"work\"]"}]),
        );
        assert_eq!(r, user());
    }

    #[test]
    fn value_filter_on_single_valued_attribute_is_invalid_path() {
        let e = failed(
            user(),
            json!([{"op": "replace", "path": "userName[value eq \"x\"]", "value": {"a": 1}}]),
        );
        assert_eq!(e.scim_type, "invalidPath");
        let e = failed(
            user(),
            json!([{"op": "replace", "path": "name[givenName eq \"Barbara\"].familyName", "value": "x"}]),
        );
        assert_eq!(e.scim_type, "invalidPath");
    }

    #[test]
    fn add_replace_sub_attribute_of_multi_valued_without_filter() {
        let r = patched(
            user(),
            json!([{"op": "replace", "path": "emails.type", "value": "other"}]),
        );
        assert_eq!(r["emails"][0]["type"], "other");
        assert_eq!(r["emails"][1]["type"], "other");
        let r = patched(
            json!({"id": "u"}),
            json!([{"op": "add", "path": "emails.value", "value": "a@b.c"}]),
        );
        assert_eq!(r["emails"], json!([{"value": "a@b.c"}]));
        let e = failed(
            json!({"id": "u", "emails": []}),
            json!([{"op": "add", "path": "emails.value", "value": "a@b.c"}]),
        );
        assert_eq!(e.scim_type, "noTarget");
    }

    #[test]
    fn hostile_paths_do_not_panic() {
        let deep = format!("emails[{}type pr{}]", "(".repeat(200), ")".repeat(200));
        let e = failed(user(), json!([{"op": "remove", "path": deep}]));
        assert_eq!(e.scim_type, "invalidPath");
        let long = "a".repeat(10_000);
        assert_eq!(
            failed(user(), json!([{"op": "add", "path": long, "value": 1}])).scim_type,
            "invalidPath"
        );
        for path in [
            "[",
            "]",
            ".",
            "emails[].value",
            "emails[type eq \"w\"].",
            "\"x\"",
        ] {
            let _ = apply(
                &mut user(),
                &body(json!([{"op": "add", "path": path, "value": 1}])),
            );
        }
    }

    /// Deterministic soup of paths, ops and values: apply never panics, and a
    /// failed request never changes the resource.
    #[test]
    fn fuzz_never_panics() {
        const PATHS: &[&str] = &[
            "members",
            "members[value eq \"id1\"]",
            "emails[type eq \"work\"].value",
            "emails.type",
            "name.givenName",
            "active",
            "id",
            "groups",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "emails[value pr]",
            "name",
            "emails[",
            "",
            "displayName",
            "emails[type eq \"x\" and primary eq true].display",
        ];
        let values = [
            json!(null),
            json!("True"),
            json!(1),
            json!([]),
            json!([{"value": "id1"}, {"value": "n"}]),
            json!({"value": "v", "primary": true}),
            json!({"active": "false", "name.familyName": "f"}),
            json!([1, "a"]),
        ];
        let ops = ["add", "Replace", "REMOVE", "merge"];
        let mut seed: u64 = 42;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % n
        };
        for round in 0..3_000 {
            let mut resource = if round % 2 == 0 { user() } else { group() };
            let before = resource.clone();
            let mut list = Vec::new();
            for _ in 0..=next(3) {
                let mut op = json!({"op": ops[next(ops.len())], "value": values[next(values.len())].clone()});
                if next(4) != 0 {
                    op["path"] = json!(PATHS[next(PATHS.len())]);
                }
                list.push(op);
            }
            if apply(&mut resource, &body(Value::Array(list))).is_err() {
                assert_eq!(resource, before);
            }
        }
    }

    #[test]
    fn non_object_resource_is_rejected() {
        let mut r = json!([1]);
        let e = apply(
            &mut r,
            &body(json!([{"op": "add", "path": "a", "value": 1}])),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, "invalidSyntax");
        assert_eq!(r, json!([1]));
    }
}
