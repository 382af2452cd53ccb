//! The OpenAPI 3.1 document of this server, built once from the route table
//! ([`crate::http::ROUTES`]: paths and methods), the route documentation
//! ([`operations::OPERATIONS`]: summaries, parameters, bodies, responses) and the Rust types'
//! own schemas (`schemars` derives on the wire model, [`schemas`] for JSON assembled by hand).
//! Also the offline pages served at `/docs`, `/redoc` and `/docs/oauth2-redirect`.

pub mod conform;
pub mod operations;
pub mod schemas;

use std::sync::LazyLock;

use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

pub use schemas::KindTag;

use crate::http::ROUTES;
use operations::{Body, Content, Operation};

/// The interactive documentation page (inline CSS and JS; it fetches `openapi.json`).
pub const DOCS_HTML: &str = include_str!("docs.html");

/// The page an OAuth2 provider redirects back to.
pub const OAUTH2_REDIRECT_HTML: &str = include_str!("oauth2_redirect.html");

/// The document as served, built on first use.
pub static DOCUMENT: LazyLock<String> = LazyLock::new(|| document().to_string());

/// Component names that differ from the `kind` of the tagged variant they describe, as the
/// reference names them.
const VARIANT_NAMES: &[(&str, &str)] = &[("PipelineCondenser", "PipelineCondenser-Output")];

const DESCRIPTION: &str = "REST and WebSocket interface of the agent server: conversations \
with an AI agent, their events, background shell commands, files and git state of the \
workspace. Routes under `/api/` need the `X-Session-API-Key` header when session keys are \
configured.";

fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator()
}

/// Builds the document.
pub fn document() -> Value {
    let mut g = generator();
    let mut paths = Map::new();
    for (method, pattern) in ROUTES {
        // every route has an entry (unit test `every_route_is_documented`)
        let Some(op) = operations::find(method, pattern) else {
            continue;
        };
        let (template, path_names) = path_template(pattern);
        let item = paths
            .entry(template.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(
                method.to_ascii_lowercase(),
                operation(&mut g, op, &template, &path_names),
            );
        }
    }
    let mut components = g.take_definitions(true);
    let mut paths = Value::Object(paths);
    hoist_tagged_variants(&mut components, &mut paths);
    for schema in components.values_mut() {
        tidy_descriptions(schema);
    }
    tidy_descriptions(&mut paths);
    let mut names: Vec<String> = components.keys().cloned().collect();
    names.sort();
    let schemas: Map<String, Value> = names
        .into_iter()
        .filter_map(|n| components.remove(&n).map(|s| (n, s)))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "OpenHands Agent Server",
            "description": DESCRIPTION,
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "SessionApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Session-API-Key",
                    "description": "One of the configured session API keys (not checked when none is configured).",
                },
            },
        },
    })
}

/// Doc comments of the model become descriptions: drop the references to this project's own
/// notes (spec sections, upstream file names) that mean nothing to an API user, and unwrap lines.
fn tidy_descriptions(v: &mut Value) {
    static INTERNAL: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"\s*\([^()]*(\.md|\.py\b|DEVIATIONS|commit)[^()]*\)")
            .expect("valid pattern")
    });
    match v {
        Value::Object(obj) => {
            let mut drop = false;
            if let Some(Value::String(d)) = obj.get_mut("description") {
                let cleaned = INTERNAL.replace_all(d, "").replace('\n', " ");
                drop = cleaned.contains("golden") || cleaned.trim().is_empty();
                *d = cleaned;
            }
            if drop {
                obj.remove("description");
            }
            for (key, child) in obj.iter_mut() {
                // `properties` maps names to schemas: a property may be called `description`
                if key != "description" || !child.is_string() {
                    tidy_descriptions(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tidy_descriptions),
        _ => {}
    }
}

/// `/api/file/download/{path:.*}` -> (`/api/file/download/{path}`, `["path"]`).
pub fn path_template(pattern: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(pattern.len());
    let mut names = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 1..start + len];
        let name = inner.split(':').next().unwrap_or(inner);
        out.push('{');
        out.push_str(name);
        out.push('}');
        names.push(name.to_string());
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    (out, names)
}

/// FastAPI's `operationId`: the handler name (here: the summary in snake case), the path with
/// every non-word character replaced by `_`, and the method.
pub fn operation_id(summary: &str, template: &str, method: &str) -> String {
    let raw = format!("{}{}", summary.to_lowercase().replace(' ', "_"), template);
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{cleaned}_{}", method.to_ascii_lowercase())
}

/// The body of an error answer: `{"detail": str}`, and for 5xx the exception text too.
fn error_detail(status: u16) -> Value {
    if status >= 500 {
        json!({
            "type": "object",
            "properties": {
                "detail": {"const": "Internal Server Error"},
                "exception": {"type": "string"},
                "traceback": {"type": "string", "description": "Only when the server runs with `debug`."},
            },
            "required": ["detail", "exception"],
        })
    } else {
        json!({
            "type": "object",
            "properties": {"detail": {"type": "string"}},
            "required": ["detail"],
        })
    }
}

fn operation(g: &mut SchemaGenerator, op: &Operation, template: &str, path: &[String]) -> Value {
    let mut o = Map::new();
    o.insert("tags".into(), json!([op.tag]));
    o.insert("summary".into(), op.summary.into());
    if !op.description.is_empty() {
        o.insert("description".into(), op.description.into());
    }
    o.insert(
        "operationId".into(),
        operation_id(op.summary, template, op.method).into(),
    );
    let mut params = Vec::new();
    for name in path {
        let (schema, description) = operations::path_param(name, g);
        params.push(json!({
            "name": name, "in": "path", "required": true,
            "schema": schema, "description": description,
        }));
    }
    for p in op.query {
        params.push(json!({
            "name": p.name, "in": "query", "required": p.required,
            "schema": (p.schema)(g), "description": p.description,
        }));
    }
    if !params.is_empty() {
        o.insert("parameters".into(), params.into());
    }
    match &op.body {
        Body::None => {}
        Body::Json { schema, required } => {
            o.insert(
                "requestBody".into(),
                json!({"required": required, "content": {"application/json": {"schema": schema(g)}}}),
            );
        }
        Body::Multipart(schema) => {
            o.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"multipart/form-data": {"schema": schema(g)}}}),
            );
        }
    }
    let mut responses = Map::new();
    for r in op.responses {
        let mut resp = Map::new();
        resp.insert("description".into(), r.description.into());
        let content = match &r.content {
            Content::Detail => {
                Some(json!({"application/json": {"schema": error_detail(r.status)}}))
            }
            Content::Json(schema) => Some(json!({"application/json": {"schema": schema(g)}})),
            Content::Media(mime) => Some(json!({ *mime: {} })),
            Content::Empty => None,
        };
        if let Some(c) = content {
            resp.insert("content".into(), c);
        }
        responses.insert(r.status.to_string(), Value::Object(resp));
    }
    o.insert("responses".into(), Value::Object(responses));
    if op.pattern.starts_with("/api/") {
        o.insert("security".into(), json!([{"SessionApiKey": []}]));
    }
    Value::Object(o)
}

/// The `kind` of an inline `kind`-tagged object schema (a variant of a tagged enum).
fn variant_kind(schema: &Value) -> Option<&str> {
    if schema.get("$ref").is_some() {
        return None;
    }
    schema.pointer("/properties/kind/const")?.as_str()
}

/// Moves the inline variants of `kind`-tagged unions (schemars writes the variants of a
/// `#[serde(tag = "kind")]` enum in place) into components named after their kind, as the
/// reference names them, and adds the discriminator. New components are collected in `new`.
fn hoist_in(v: &mut Value, components: &Map<String, Value>, new: &mut Map<String, Value>) {
    match v {
        Value::Object(obj) => {
            if let Some(Value::Array(members)) = obj.get_mut("oneOf") {
                let mut mapping = Map::new();
                let mut all_tagged = !members.is_empty();
                for member in members.iter_mut() {
                    let Some(kind) = variant_kind(member).map(str::to_string) else {
                        let tagged = schemas::ref_name(member).and_then(|n| {
                            components
                                .get(n)
                                .or_else(|| new.get(n))
                                .and_then(|s| s.pointer("/properties/kind/const"))
                                .and_then(Value::as_str)
                                .map(|k| (k.to_string(), n.to_string()))
                        });
                        match tagged {
                            Some((k, n)) => {
                                mapping.insert(k, json!(format!("#/components/schemas/{n}")));
                            }
                            None => all_tagged = false,
                        }
                        continue;
                    };
                    let name = VARIANT_NAMES
                        .iter()
                        .find(|(k, _)| *k == kind)
                        .map(|(_, n)| n.to_string())
                        .unwrap_or_else(|| kind.clone());
                    let existing = components.get(&name).or_else(|| new.get(&name));
                    if existing.is_some_and(|e| e != member) {
                        all_tagged = false;
                        continue;
                    }
                    let mut body = std::mem::replace(member, schemas::reference(&name));
                    hoist_in(&mut body, components, new);
                    new.insert(name.clone(), body);
                    mapping.insert(kind, json!(format!("#/components/schemas/{name}")));
                }
                if all_tagged && !obj.contains_key("discriminator") {
                    obj.insert(
                        "discriminator".into(),
                        json!({"propertyName": "kind", "mapping": mapping}),
                    );
                }
            }
            for (_, child) in obj.iter_mut() {
                hoist_in(child, components, new);
            }
        }
        Value::Array(items) => {
            for item in items {
                hoist_in(item, components, new);
            }
        }
        _ => {}
    }
}

fn hoist_tagged_variants(components: &mut Map<String, Value>, paths: &mut Value) {
    let mut new = Map::new();
    hoist_in(paths, components, &mut new);
    let names: Vec<String> = components.keys().cloned().collect();
    for name in names {
        if let Some(mut schema) = components.remove(&name) {
            hoist_in(&mut schema, components, &mut new);
            components.insert(name, schema);
        }
    }
    for (name, schema) in new {
        components.entry(name).or_insert(schema);
    }
}

#[cfg(test)]
mod tests;
