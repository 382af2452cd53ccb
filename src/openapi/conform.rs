//! A strict structural check of a JSON value against a schema of the document, for the tests
//! that hold real responses against `/openapi.json`. Stricter than JSON Schema on purpose: an
//! object key that the schema does not list is reported unless the schema allows extra keys
//! explicitly (`additionalProperties` true or a schema), so an undocumented field is caught.
//! Only what the document uses is understood: `$ref`, `anyOf`/`oneOf`, `const`, `enum`, `type`,
//! `properties`/`required`/`additionalProperties`, `items`.

use serde_json::Value;

/// Every place where `value` departs from `schema` (resolved in `doc`), as `path: problem`.
pub fn violations(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(doc, schema, value, "$", &mut out, 0);
    out
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    let got = json_type(v);
    want == got || (want == "number" && got == "integer")
}

fn check(doc: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    let Some(s) = schema.as_object() else {
        if schema == &Value::Bool(false) {
            out.push(format!("{at}: no value allowed"));
        }
        return;
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix('#')
            .and_then(|p| doc.pointer(p))
            .cloned()
            .unwrap_or(Value::Null);
        if target.is_null() {
            out.push(format!("{at}: unresolved {r}"));
        } else {
            check(doc, &target, v, at, out, depth + 1);
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            let mut best: Option<Vec<String>> = None;
            for alt in alts {
                let mut e = Vec::new();
                check(doc, alt, v, at, &mut e, depth + 1);
                if e.is_empty() {
                    best = Some(e);
                    break;
                }
                if best.as_ref().is_none_or(|b| e.len() < b.len()) {
                    best = Some(e);
                }
            }
            if let Some(e) = best
                && !e.is_empty()
            {
                out.push(format!(
                    "{at}: matches no alternative of {key}; closest: {}",
                    e.join("; ")
                ));
            }
        }
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        out.push(format!("{at}: expected {c}, got {v}"));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        out.push(format!(
            "{at}: {v} is not one of {}",
            Value::Array(e.clone())
        ));
    }
    match s.get("type") {
        Some(Value::String(t)) if !type_matches(t, v) => {
            out.push(format!("{at}: expected {t}, got {}", json_type(v)));
            return;
        }
        Some(Value::Array(ts))
            if !ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, v)) =>
        {
            out.push(format!(
                "{at}: expected one of {}, got {}",
                Value::Array(ts.clone()),
                json_type(v)
            ));
            return;
        }
        _ => {}
    }
    if let Value::Object(obj) = v {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    out.push(format!("{at}: missing required `{r}`"));
                }
            }
        }
        let extra = s.get("additionalProperties");
        for (k, child) in obj {
            let here = format!("{at}.{k}");
            match (props.and_then(|p| p.get(k)), extra) {
                (Some(p), _) => check(doc, p, child, &here, out, depth + 1),
                (None, Some(Value::Bool(true))) => {}
                (None, Some(a @ Value::Object(_))) => check(doc, a, child, &here, out, depth + 1),
                (None, _) if props.is_some() => out.push(format!("{here}: not documented")),
                (None, _) => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (v, s.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(
                doc,
                item_schema,
                item,
                &format!("{at}[{i}]"),
                out,
                depth + 1,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_undocumented_missing_and_mistyped_fields() {
        let doc = json!({"components": {"schemas": {"A": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": ["string", "null"]}},
            "required": ["a"],
        }}}});
        let s = json!({"$ref": "#/components/schemas/A"});
        assert!(violations(&doc, &s, &json!({"a": 1, "b": null})).is_empty());
        let v = violations(&doc, &s, &json!({"b": 2, "c": true}));
        assert_eq!(v.len(), 3, "{v:?}");
        let any = json!({"anyOf": [{"type": "null"}, s]});
        assert!(violations(&doc, &any, &Value::Null).is_empty());
        assert_eq!(violations(&doc, &any, &json!({"a": "x"})).len(), 1);
    }
}
