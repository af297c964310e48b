//! Attribute projection for SCIM responses: the `attributes` and `excludedAttributes`
//! query parameters (RFC 7644 §3.4.2.5, §3.9).
//!
//! Names are comma-separated and case-insensitive, may be qualified by a schema URN
//! (`urn:ietf:params:scim:schemas:core:2.0:User:userName`, or an extension
//! attribute such as `urn:…:enterprise:2.0:User:department`), may name a whole
//! extension (`urn:…:enterprise:2.0:User`), and may name a sub-attribute
//! (`name.givenName`, `emails.value`). Names that do not parse as attribute paths
//! are ignored, as are names the resource does not have.
//!
//! `id`, `schemas` and `meta.resourceType` have `returned: always` and are kept
//! either way. When both parameters are given, `attributes` wins.

use super::filter::{self, get_ci};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One name from the list: an attribute (with optional sub-attribute), located in
/// the top level (`container: None`) or in the extension object under `container`.
struct Selector {
    container: Option<String>,
    name: String,
    sub: Option<String>,
}

/// Projects a resource per the `attributes` / `excludedAttributes` query parameters (comma-separated, case-insensitive, may be URN-prefixed, may name sub-attributes like "name.givenName" or "emails.value"). `id`, `schemas` and `meta.resourceType` (returned "always") are kept. With neither param, the resource is returned unchanged.
pub fn project(resource: &Value, attributes: Option<&str>, excluded: Option<&str>) -> Value {
    let Value::Object(src) = resource else {
        return resource.clone();
    };
    if let Some(list) = nonempty(attributes) {
        return Value::Object(include(src, &selectors(resource, list)));
    }
    if let Some(list) = nonempty(excluded) {
        return Value::Object(exclude(src, &selectors(resource, list)));
    }
    resource.clone()
}

/// The parameter's value unless it is absent or blank.
fn nonempty(param: Option<&str>) -> Option<&str> {
    param.map(str::trim).filter(|s| !s.is_empty())
}

/// Parses a comma-separated list of attribute names, skipping ones that are not
/// attribute paths (value filters are not allowed here).
fn selectors(resource: &Value, list: &str) -> Vec<Selector> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .filter_map(|item| {
            if let Some(key) = filter::whole_schema_key(resource, item) {
                return Some(Selector {
                    container: None,
                    name: key,
                    sub: None,
                });
            }
            let path = filter::parse_path(item).ok()?;
            if path.filter.is_some() {
                return None;
            }
            Some(Selector {
                container: path.attr.schema,
                name: path.attr.name,
                sub: path.attr.sub_attr,
            })
        })
        .collect()
}

/// (container key, attribute key) as spelled in the resource → `None` for the
/// whole attribute, or the requested sub-attribute names.
type Selection = BTreeMap<(Option<String>, String), Option<Vec<String>>>;

/// Resolves selectors against the resource's actual keys, merging duplicates.
fn resolve(src: &Map<String, Value>, selectors: &[Selector]) -> Selection {
    let mut selection = Selection::new();
    for sel in selectors {
        let (container_key, container) = match &sel.container {
            None => (None, src),
            Some(urn) => match find_key(src, urn) {
                Some(key) => match src.get(&key) {
                    Some(Value::Object(ext)) => (Some(key), ext),
                    _ => continue,
                },
                None => continue,
            },
        };
        let Some(attr_key) = find_key(container, &sel.name) else {
            continue;
        };
        let entry = selection
            .entry((container_key, attr_key))
            .or_insert_with(|| Some(Vec::new()));
        match (&sel.sub, entry) {
            (None, entry) => *entry = None,
            (Some(sub), Some(subs)) => subs.push(sub.clone()),
            (Some(_), None) => {} // whole attribute already selected
        }
    }
    selection
}

/// The `attributes=` case: only the selected attributes, plus the always-returned ones.
fn include(src: &Map<String, Value>, selectors: &[Selector]) -> Map<String, Value> {
    let mut out = Map::new();
    for name in ["id", "schemas"] {
        if let Some(key) = find_key(src, name) {
            if let Some(v) = src.get(&key) {
                out.insert(key, v.clone());
            }
        }
    }
    if let Some((key, meta)) = always_meta(src) {
        out.insert(key, meta);
    }

    for ((container_key, attr_key), subs) in resolve(src, selectors) {
        let container = match &container_key {
            None => Some(src),
            Some(key) => src.get(key).and_then(Value::as_object),
        };
        let Some(value) = container.and_then(|c| c.get(&attr_key)) else {
            continue;
        };
        let projected = match &subs {
            None => Some(value.clone()),
            Some(subs) => pick(value, subs),
        };
        let Some(projected) = projected else {
            continue;
        };
        let dst = match container_key {
            None => &mut out,
            Some(key) => match out
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
            {
                Some(ext) => ext,
                None => continue,
            },
        };
        // A partial `meta` joins the always-returned `meta.resourceType`.
        match (dst.get_mut(&attr_key), projected) {
            (Some(Value::Object(existing)), Value::Object(new)) if subs.is_some() => {
                existing.extend(new)
            }
            (_, projected) => {
                dst.insert(attr_key, projected);
            }
        }
    }
    out
}

/// The `excludedAttributes=` case: everything but the named attributes.
fn exclude(src: &Map<String, Value>, selectors: &[Selector]) -> Map<String, Value> {
    let mut out = src.clone();
    let always_meta = always_meta(src);
    for sel in selectors {
        let top_level = sel.container.is_none();
        let container = match &sel.container {
            None => Some(&mut out),
            Some(urn) => find_key(&out, urn)
                .and_then(|key| out.get_mut(&key))
                .and_then(Value::as_object_mut),
        };
        let Some(container) = container else {
            continue;
        };
        let Some(key) = find_key(container, &sel.name) else {
            continue;
        };
        let is = |name: &str| top_level && key.eq_ignore_ascii_case(name);
        if is("id") || is("schemas") {
            continue; // returned: always
        }
        match &sel.sub {
            None if is("meta") => {
                container.remove(&key);
                if let Some((meta_key, meta)) = &always_meta {
                    container.insert(meta_key.clone(), meta.clone());
                }
            }
            None => {
                container.remove(&key);
            }
            Some(sub) if is("meta") && sub.eq_ignore_ascii_case("resourceType") => {}
            Some(sub) => match container.get_mut(&key) {
                Some(Value::Object(obj)) => remove_ci(obj, sub),
                Some(Value::Array(items)) => items
                    .iter_mut()
                    .filter_map(Value::as_object_mut)
                    .for_each(|obj| remove_ci(obj, sub)),
                _ => {}
            },
        }
    }
    out
}

/// `meta` reduced to its always-returned `resourceType`, with the key as spelled.
fn always_meta(src: &Map<String, Value>) -> Option<(String, Value)> {
    let key = find_key(src, "meta")?;
    let meta = src.get(&key)?;
    let resource_type = get_ci(meta, "resourceType")?;
    let rt_key = meta.as_object().and_then(|m| find_key(m, "resourceType"))?;
    let mut reduced = Map::new();
    reduced.insert(rt_key, resource_type.clone());
    Some((key, Value::Object(reduced)))
}

/// The named sub-attributes of a complex value, or of each element of a
/// multi-valued one (elements left empty are dropped); `None` if nothing remains.
fn pick(value: &Value, subs: &[String]) -> Option<Value> {
    match value {
        Value::Object(obj) => {
            let kept: Map<String, Value> = obj
                .iter()
                .filter(|(k, _)| subs.iter().any(|s| k.eq_ignore_ascii_case(s)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .iter()
                .filter(|item| item.is_object())
                .filter_map(|item| pick(item, subs))
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        _ => None,
    }
}

/// The existing key equal to `name` (exact match first, then case-insensitive).
fn find_key(obj: &Map<String, Value>, name: &str) -> Option<String> {
    if obj.contains_key(name) {
        return Some(name.to_string());
    }
    obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

fn remove_ci(obj: &mut Map<String, Value>, name: &str) {
    if let Some(key) = find_key(obj, name) {
        obj.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn user() -> Value {
        json!({
            "schemas": [USER, ENT],
            "id": "u1",
            "externalId": "e1",
            "userName": "bjensen",
            "name": {"familyName": "Jensen", "givenName": "Barbara", "formatted": "Barbara Jensen"},
            "displayName": "Babs",
            "active": true,
            "emails": [
                {"value": "b@work.com", "type": "work", "primary": true},
                {"value": "b@home.org", "type": "home"},
                {"type": "other"}
            ],
            "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z", "location": "/scim/v2/Users/u1"},
            ENT: {"department": "Ops", "employeeNumber": "7", "manager": {"value": "m1", "displayName": "Boss"}}
        })
    }

    fn always() -> Value {
        json!({"schemas": [USER, ENT], "id": "u1", "meta": {"resourceType": "User"}})
    }

    fn with(mut base: Value, extra: Value) -> Value {
        if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
            b.extend(e);
        }
        base
    }

    #[test]
    fn no_params_returns_resource_unchanged() {
        assert_eq!(project(&user(), None, None), user());
        assert_eq!(project(&user(), Some(""), Some("  ")), user());
    }

    #[test]
    fn attributes_keeps_only_requested_plus_always_returned() {
        assert_eq!(
            project(&user(), Some("userName"), None),
            with(always(), json!({"userName": "bjensen"}))
        );
        assert_eq!(
            project(&user(), Some("USERNAME, DisplayName,active"), None),
            with(
                always(),
                json!({"userName": "bjensen", "displayName": "Babs", "active": true})
            )
        );
    }

    #[test]
    fn attributes_with_urn_prefixes() {
        assert_eq!(
            project(
                &user(),
                Some("urn:ietf:params:scim:schemas:core:2.0:User:userName"),
                None
            ),
            with(always(), json!({"userName": "bjensen"}))
        );
        assert_eq!(
            project(&user(), Some(&format!("{ENT}:department")), None),
            with(always(), json!({ENT: {"department": "Ops"}}))
        );
        assert_eq!(
            project(
                &user(),
                Some(&format!("{ENT}:manager.value,{ENT}:employeeNumber")),
                None
            ),
            with(
                always(),
                json!({ENT: {"manager": {"value": "m1"}, "employeeNumber": "7"}})
            )
        );
        assert_eq!(
            project(&user(), Some(&ENT.to_lowercase()), None),
            with(always(), json!({ENT: user()[ENT].clone()}))
        );
    }

    #[test]
    fn attributes_with_sub_attributes() {
        assert_eq!(
            project(&user(), Some("name.givenName"), None),
            with(always(), json!({"name": {"givenName": "Barbara"}}))
        );
        assert_eq!(
            project(&user(), Some("name.givenName,name.familyName"), None),
            with(
                always(),
                json!({"name": {"givenName": "Barbara", "familyName": "Jensen"}})
            )
        );
        assert_eq!(
            project(&user(), Some("emails.value"), None),
            with(
                always(),
                json!({"emails": [{"value": "b@work.com"}, {"value": "b@home.org"}]})
            )
        );
        assert_eq!(
            project(&user(), Some("emails.value,emails.TYPE"), None),
            with(
                always(),
                json!({"emails": [
                    {"value": "b@work.com", "type": "work"},
                    {"value": "b@home.org", "type": "home"},
                    {"type": "other"}
                ]})
            )
        );
        // whole attribute wins over a sub-attribute, in either order
        for list in ["name,name.givenName", "name.givenName,name"] {
            assert_eq!(
                project(&user(), Some(list), None),
                with(always(), json!({"name": user()["name"].clone()}))
            );
        }
    }

    #[test]
    fn attributes_meta_handling() {
        assert_eq!(
            project(&user(), Some("meta"), None),
            with(always(), json!({"meta": user()["meta"].clone()}))
        );
        assert_eq!(
            project(&user(), Some("meta.created"), None),
            with(
                always(),
                json!({"meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z"}})
            )
        );
    }

    #[test]
    fn attributes_unknown_or_invalid_names_are_ignored() {
        assert_eq!(project(&user(), Some("nickName"), None), always());
        assert_eq!(
            project(&user(), Some("emails[type eq \"work\"]"), None),
            always()
        );
        assert_eq!(project(&user(), Some("a b,,#,userName.x"), None), always());
        assert_eq!(project(&user(), Some("name.middleName"), None), always());
        assert_eq!(
            project(&user(), Some("urn:acme:ext:1.0:User:x"), None),
            always()
        );
    }

    #[test]
    fn attributes_wins_over_excluded() {
        assert_eq!(
            project(&user(), Some("userName"), Some("userName")),
            with(always(), json!({"userName": "bjensen"}))
        );
    }

    #[test]
    fn excluded_removes_named_attributes() {
        let r = project(&user(), None, Some("emails, NAME ,externalId"));
        let mut expected = user();
        if let Some(o) = expected.as_object_mut() {
            o.remove("emails");
            o.remove("name");
            o.remove("externalId");
        }
        assert_eq!(r, expected);
    }

    #[test]
    fn excluded_sub_attributes_and_extensions() {
        let r = project(&user(), None, Some("name.formatted,emails.primary"));
        assert_eq!(
            r["name"],
            json!({"familyName": "Jensen", "givenName": "Barbara"})
        );
        assert_eq!(
            r["emails"][0],
            json!({"value": "b@work.com", "type": "work"})
        );
        let r = project(&user(), None, Some(&format!("{ENT}:manager")));
        assert_eq!(r[ENT], json!({"department": "Ops", "employeeNumber": "7"}));
        let r = project(&user(), None, Some(&format!("{ENT}:manager.displayName")));
        assert_eq!(r[ENT]["manager"], json!({"value": "m1"}));
        let r = project(&user(), None, Some(ENT));
        assert!(r.get(ENT).is_none());
        assert_eq!(r["userName"], "bjensen");
    }

    #[test]
    fn excluded_cannot_remove_always_returned() {
        let r = project(&user(), None, Some("id,schemas,meta"));
        assert_eq!(r["id"], "u1");
        assert_eq!(r["schemas"], json!([USER, ENT]));
        assert_eq!(r["meta"], json!({"resourceType": "User"}));
        let r = project(&user(), None, Some("meta.resourceType,meta.location"));
        assert_eq!(
            r["meta"],
            json!({"resourceType": "User", "created": "2024-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn excluded_unknown_names_are_ignored() {
        assert_eq!(
            project(
                &user(),
                None,
                Some("nickName,x.y,[,emails[type eq \"work\"]")
            ),
            user()
        );
    }

    #[test]
    fn group_members_projection() {
        let g = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g1",
            "displayName": "Admins",
            "members": [{"value": "u1", "display": "A"}],
            "meta": {"resourceType": "Group"}
        });
        let r = project(&g, None, Some("members"));
        assert!(r.get("members").is_none());
        assert_eq!(r["displayName"], "Admins");
        let r = project(&g, Some("displayName"), None);
        assert_eq!(
            r,
            json!({"schemas": g["schemas"].clone(), "id": "g1", "displayName": "Admins", "meta": {"resourceType": "Group"}})
        );
    }

    #[test]
    fn non_object_resources_pass_through() {
        assert_eq!(project(&json!([1]), Some("a"), None), json!([1]));
        assert_eq!(project(&json!(null), None, Some("a")), json!(null));
    }
}
