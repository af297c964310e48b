//! Field rules: a tool's structured results keep only the fields an admin allows (`keep`) and
//! lose the ones they name (`drop`), by JSON Pointer paths (RFC 6901) where a `*` segment
//! matches any key or array index. Applied to `structuredContent` and to text blocks whose text
//! is a JSON object or array (tools also give their structured result as serialised JSON text),
//! before the other filters; the listed `outputSchema` loses the same top-level properties, so
//! a client that validates results against it still can ([`schema`]).

use super::ToolRules;
use serde_json::{Map, Value};

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn matches(seg: &str, key: &str) -> bool {
    seg == "*" || seg == key
}

/// Applies the rules to one result; the number of values taken out.
pub fn apply(rules: &ToolRules, result: &mut Value) -> usize {
    if rules.keep.is_empty() && rules.drop.is_empty() {
        return 0;
    }
    let keep: Vec<Vec<String>> = rules.keep.iter().map(|p| segments(p)).collect();
    let drop: Vec<Vec<String>> = rules.drop.iter().map(|p| segments(p)).collect();
    let mut n = 0;
    let mut one = |v: &mut Value| {
        let before = count(v);
        if !keep.is_empty() {
            let refs: Vec<&[String]> = keep.iter().map(Vec::as_slice).collect();
            *v = kept(v, &refs).unwrap_or_else(|| empty_like(v));
        }
        for d in &drop {
            remove(v, d);
        }
        n += before.saturating_sub(count(v));
    };
    if let Some(sc) = result.get_mut("structuredContent") {
        one(sc);
    }
    if let Some(items) = result.get_mut("content").and_then(Value::as_array_mut) {
        for item in items {
            if item.get("type").and_then(Value::as_str) != Some("text") {
                continue;
            }
            let Some(text) = item.get("text").and_then(Value::as_str) else {
                continue;
            };
            let trimmed = text.trim_start();
            if !trimmed.starts_with(['{', '[']) {
                continue;
            }
            let Ok(mut v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            one(&mut v);
            if let Ok(out) = json_text_like(&v, text) {
                item["text"] = Value::String(out);
            }
        }
    }
    n
}

/// `v` as JSON text in the style of `original`: pretty when it spans lines, else compact.
pub(super) fn json_text_like(v: &Value, original: &str) -> serde_json::Result<String> {
    if original.contains('\n') {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    }
}

fn empty_like(v: &Value) -> Value {
    match v {
        Value::Array(_) => Value::Array(Vec::new()),
        _ => Value::Object(Map::new()),
    }
}

/// Leaf values (scalars) under `v`.
fn count(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(count).sum(),
        Value::Array(a) => a.iter().map(count).sum(),
        _ => 1,
    }
}

/// `v` with only what the paths reach (`None`: nothing).
fn kept(v: &Value, paths: &[&[String]]) -> Option<Value> {
    if paths.iter().any(|p| p.is_empty()) {
        return Some(v.clone());
    }
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let sub: Vec<&[String]> = paths
                    .iter()
                    .filter(|p| matches(&p[0], k))
                    .map(|p| &p[1..])
                    .collect();
                if sub.is_empty() {
                    continue;
                }
                if let Some(y) = kept(x, &sub) {
                    out.insert(k.clone(), y);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(a) => {
            let mut out = Vec::new();
            for (i, x) in a.iter().enumerate() {
                let idx = i.to_string();
                let sub: Vec<&[String]> = paths
                    .iter()
                    .filter(|p| matches(&p[0], &idx))
                    .map(|p| &p[1..])
                    .collect();
                if sub.is_empty() {
                    continue;
                }
                if let Some(y) = kept(x, &sub) {
                    out.push(y);
                }
            }
            Some(Value::Array(out))
        }
        _ => None,
    }
}

fn remove(v: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match v {
        Value::Object(m) => {
            if rest.is_empty() {
                if first == "*" {
                    m.clear();
                } else {
                    m.remove(first);
                }
                return;
            }
            for (k, x) in m.iter_mut() {
                if matches(first, k) {
                    remove(x, rest);
                }
            }
        }
        Value::Array(a) => {
            if rest.is_empty() {
                if first == "*" {
                    a.clear();
                } else if let Ok(i) = first.parse::<usize>() {
                    if i < a.len() {
                        a.remove(i);
                    }
                }
                return;
            }
            for (i, x) in a.iter_mut().enumerate() {
                if matches(first, &i.to_string()) {
                    remove(x, rest);
                }
            }
        }
        _ => {}
    }
}

/// A listed tool's `outputSchema` under the rules: top-level properties that `keep` does not
/// reach, or that `drop` names whole, leave `properties` and `required`.
pub fn schema(rules: &ToolRules, tool: &mut Value) {
    let Some(schema) = tool.get_mut("outputSchema").and_then(Value::as_object_mut) else {
        return;
    };
    let keep: Vec<Vec<String>> = rules.keep.iter().map(|p| segments(p)).collect();
    let gone = |name: &str| -> bool {
        let not_kept = !keep.is_empty()
            && !keep
                .iter()
                .any(|p| p.first().is_some_and(|s| matches(s, name)));
        let dropped = rules.drop.iter().any(|p| {
            let s = segments(p);
            s.len() == 1 && matches(&s[0], name)
        });
        not_kept || dropped
    };
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.retain(|k, _| !gone(k));
    }
    if let Some(req) = schema.get_mut("required").and_then(Value::as_array_mut) {
        req.retain(|r| r.as_str().is_none_or(|k| !gone(k)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keep_and_drop_shape_structured_results_and_json_text() {
        let rules = ToolRules {
            keep: vec![
                "/name".into(),
                "/company".into(),
                "/contacts/*/email".into(),
            ],
            drop: vec!["/contacts/1".into()],
            ..Default::default()
        };
        let full = json!({"name": "Jane", "company": "Contoso", "ssn": "123-45-6789",
            "salary": 1, "contacts": [{"email": "a@x.example", "phone": "1"}, {"email": "b@x.example"}]});
        let mut r = json!({
            "content": [{"type": "text", "text": full.to_string()}, {"type": "text", "text": "not json"}],
            "structuredContent": full,
        });
        let n = apply(&rules, &mut r);
        let want =
            json!({"name": "Jane", "company": "Contoso", "contacts": [{"email": "a@x.example"}]});
        assert_eq!(r["structuredContent"], want);
        let text: Value = serde_json::from_str(r["content"][0]["text"].as_str().unwrap_or(""))
            .unwrap_or_default();
        assert_eq!(text, want);
        assert_eq!(r["content"][1]["text"], "not json");
        assert_eq!(
            n,
            2 * 4,
            "ssn, salary, a phone and b's email, in both places"
        );
        let mut tool = json!({"name": "lookup", "outputSchema": {"type": "object",
            "properties": {"name": {}, "company": {}, "ssn": {}, "contacts": {}},
            "required": ["name", "ssn"]}});
        schema(&rules, &mut tool);
        assert_eq!(tool["outputSchema"]["required"], json!(["name"]));
        assert!(tool["outputSchema"]["properties"].get("ssn").is_none());
        assert!(tool["outputSchema"]["properties"].get("contacts").is_some());
    }
}
