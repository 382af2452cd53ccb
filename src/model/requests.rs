//! Request bodies validated the way FastAPI/pydantic does it: every problem collected into one
//! 422 list with the reference's `type` and `loc` (API.md §0.3), then turned into typed values.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::agent::{Agent, Llm};
use super::conversation::{
    ConfirmationPolicy, SecretMap, SecretSource, SecurityAnalyzer, SendMessageRequest,
    StartConversationRequest, Workspace, d_max_iterations,
};
use super::message::{Content, Role};
use crate::error::{ApiError, ValidationItem};
use crate::http::validate::Checker;
use crate::loc;

/// A `loc` prefix as an array (for the `&[Value]` parameters).
macro_rules! at {
    ($($part:expr),* $(,)?) => { [$(serde_json::Value::from($part)),*] };
}

/// The 422 of a checker that found problems.
fn failed(c: Checker) -> ApiError {
    c.finish()
        .err()
        .unwrap_or_else(|| ApiError::internal("validation failed"))
}

fn with(loc: &[Value], part: impl Into<Value>) -> Vec<Value> {
    let mut l = loc.to_vec();
    l.push(part.into());
    l
}

fn unexpected_kind(
    c: &mut Checker,
    v: &Value,
    loc: Vec<Value>,
    kind: &str,
    base: &str,
    kinds: &[&str],
) {
    c.push(
        ValidationItem::new(
            "value_error",
            loc,
            format!(
                "Value error, Unexpected kind '{kind}' for {base}. Expected one of: {}. If you receive this error when trying to wrap a DiscriminatedUnion instance inside another pydantic model, you may need to use OpenHandsModel instead of BaseModel to make sure that an invalid schema has not been cached.",
                kinds.join(", ")
            ),
            v.clone(),
        )
        .with_ctx(json!({"error": {}})),
    );
}

/// A KeyError on a missing `kind` of a multi-class base: the reference answers 500 `'kind'`.
fn missing_kind() -> ApiError {
    ApiError::internal("'kind'")
}

/// Python's name of a JSON value's type (for "Unexpected kind 'int'" messages).
fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Float,
    Bool,
    Dict,
    List,
    Any,
}

/// LLM fields with their types and nullability (unknown keys are `extra_forbidden`).
const LLM_FIELDS: &[(&str, Ty, bool)] = &[
    ("model", Ty::Str, false),
    ("api_key", Ty::Str, true),
    ("base_url", Ty::Str, true),
    ("api_version", Ty::Str, true),
    ("aws_access_key_id", Ty::Str, true),
    ("aws_secret_access_key", Ty::Str, true),
    ("aws_region_name", Ty::Str, true),
    ("openrouter_site_url", Ty::Str, false),
    ("openrouter_app_name", Ty::Str, false),
    ("num_retries", Ty::Int, false),
    ("retry_multiplier", Ty::Float, false),
    ("retry_min_wait", Ty::Int, false),
    ("retry_max_wait", Ty::Int, false),
    ("timeout", Ty::Int, true),
    ("max_message_chars", Ty::Int, false),
    ("temperature", Ty::Float, true),
    ("top_p", Ty::Float, true),
    ("top_k", Ty::Float, true),
    ("custom_llm_provider", Ty::Str, true),
    ("max_input_tokens", Ty::Int, true),
    ("max_output_tokens", Ty::Int, true),
    ("model_canonical_name", Ty::Str, true),
    ("extra_headers", Ty::Dict, true),
    ("input_cost_per_token", Ty::Float, true),
    ("output_cost_per_token", Ty::Float, true),
    ("ollama_base_url", Ty::Str, true),
    ("stream", Ty::Bool, false),
    ("drop_params", Ty::Bool, false),
    ("modify_params", Ty::Bool, false),
    ("disable_vision", Ty::Bool, true),
    ("disable_stop_word", Ty::Bool, true),
    ("caching_prompt", Ty::Bool, false),
    ("log_completions", Ty::Bool, false),
    ("log_completions_folder", Ty::Str, false),
    ("custom_tokenizer", Ty::Str, true),
    ("native_tool_calling", Ty::Bool, false),
    ("force_string_serializer", Ty::Bool, true),
    ("reasoning_effort", Ty::Str, true),
    ("reasoning_summary", Ty::Str, true),
    ("enable_encrypted_reasoning", Ty::Bool, false),
    ("prompt_cache_retention", Ty::Str, true),
    ("extended_thinking_budget", Ty::Int, true),
    ("seed", Ty::Int, true),
    ("safety_settings", Ty::Any, true),
    ("usage_id", Ty::Str, false),
    ("litellm_extra_body", Ty::Dict, false),
    ("OVERRIDE_ON_SERIALIZE", Ty::List, false),
];

/// The numeric bounds of LLM fields (`Field(ge=..., le=...)` in the reference; its OpenAPI
/// document shows them as `minimum`/`maximum`): name, lower bound, upper bound (inclusive).
const LLM_BOUNDS: &[(&str, f64, Option<f64>)] = &[
    ("num_retries", 0.0, None),
    ("retry_multiplier", 0.0, None),
    ("retry_min_wait", 0.0, None),
    ("retry_max_wait", 0.0, None),
    ("timeout", 0.0, None),
    ("max_message_chars", 1.0, None),
    ("temperature", 0.0, None),
    ("top_p", 0.0, Some(1.0)),
    ("top_k", 0.0, None),
    ("max_input_tokens", 1.0, None),
    ("max_output_tokens", 1.0, None),
    ("input_cost_per_token", 0.0, None),
    ("output_cost_per_token", 0.0, None),
];

/// A bound as pydantic prints it in `msg` and `ctx`: `0` for integer fields, `0.0` for floats.
fn bound_value(bound: f64, ty: Ty) -> Value {
    match ty {
        Ty::Int => Value::from(bound as i64),
        _ => Value::from(bound),
    }
}

/// Records `greater_than_equal` / `less_than_equal` for a coerced LLM number out of its bounds.
fn check_llm_bounds(
    c: &mut Checker,
    name: &str,
    ty: Ty,
    coerced: &Value,
    input: &Value,
    loc: Vec<Value>,
) {
    let Some((_, ge, le)) = LLM_BOUNDS.iter().find(|(n, _, _)| *n == name) else {
        return;
    };
    let Some(x) = coerced.as_f64() else {
        return;
    };
    if x < *ge {
        let b = bound_value(*ge, ty);
        c.push(
            ValidationItem::new(
                "greater_than_equal",
                loc,
                format!("Input should be greater than or equal to {b}"),
                input.clone(),
            )
            .with_ctx(json!({ "ge": b })),
        );
    } else if let Some(le) = le.filter(|le| x > *le) {
        let b = bound_value(le, ty);
        c.push(
            ValidationItem::new(
                "less_than_equal",
                loc,
                format!("Input should be less than or equal to {b}"),
                input.clone(),
            )
            .with_ctx(json!({ "le": b })),
        );
    }
}

/// Checks (and coerces, pydantic-lax) one value of a declared type; returns the coerced value.
fn check_typed(
    c: &mut Checker,
    v: &Value,
    loc: Vec<Value>,
    ty: Ty,
    nullable: bool,
) -> Option<Value> {
    if v.is_null() && nullable {
        return Some(Value::Null);
    }
    match ty {
        Ty::Str => c.string(v, loc).map(Value::String),
        Ty::Int => c.int(v, loc).map(Value::from),
        Ty::Float => c.float(v, loc).map(Value::from),
        Ty::Bool => c.bool(v, loc).map(Value::Bool),
        Ty::Dict => c.dict(v, loc).map(|m| Value::Object(m.clone())),
        Ty::List => c.list(v, loc).map(|a| Value::Array(a.clone())),
        Ty::Any => Some(v.clone()),
    }
}

/// Validates an LLM object; `None` when it had errors (already recorded).
pub fn check_llm(c: &mut Checker, v: &Value, loc: &[Value]) -> Option<Llm> {
    let obj = c.model(v, loc.to_vec())?;
    let before = c.errors.len();
    let mut out = Map::new();
    for (k, val) in obj {
        match LLM_FIELDS.iter().find(|(name, _, _)| name == k) {
            Some((_, ty, nullable)) => {
                if let Some(coerced) = check_typed(c, val, with(loc, k.as_str()), *ty, *nullable) {
                    check_llm_bounds(c, k, *ty, &coerced, val, with(loc, k.as_str()));
                    out.insert(k.clone(), coerced);
                }
            }
            None => c.push(ValidationItem::new(
                "extra_forbidden",
                with(loc, k.as_str()),
                "Extra inputs are not permitted",
                val.clone(),
            )),
        }
    }
    if c.errors.len() > before {
        return None;
    }
    let model_ok = out
        .get("model")
        .and_then(Value::as_str)
        .is_some_and(|m| !m.trim().is_empty());
    if !model_ok {
        c.push(
            ValidationItem::new(
                "value_error",
                loc.to_vec(),
                "Value error, model must be specified in LLM",
                v.clone(),
            )
            .with_ctx(json!({"error": {}})),
        );
        return None;
    }
    match serde_json::from_value::<Llm>(Value::Object(out)) {
        Ok(mut llm) => {
            llm.normalize();
            Some(llm)
        }
        Err(e) => {
            c.push(ValidationItem::new(
                "value_error",
                loc.to_vec(),
                format!("Value error, {e}"),
                v.clone(),
            ));
            None
        }
    }
}

const CONDENSER_KINDS: [&str; 3] = [
    "LLMSummarizingCondenser",
    "NoOpCondenser",
    "PipelineCondenser",
];

fn check_condenser(c: &mut Checker, v: &Value, loc: &[Value]) -> Result<Option<Value>, ApiError> {
    if v.is_null() {
        return Ok(Some(Value::Null));
    }
    let Some(obj) = c.model(v, loc.to_vec()) else {
        return Ok(None);
    };
    let Some(kind) = obj.get("kind") else {
        return Err(missing_kind());
    };
    let kind_s = kind.as_str().unwrap_or_default();
    if !CONDENSER_KINDS.contains(&kind_s) {
        unexpected_kind(
            c,
            v,
            loc.to_vec(),
            &kind.as_str().map(String::from).unwrap_or(kind.to_string()),
            "CondenserBase",
            &CONDENSER_KINDS,
        );
        return Ok(None);
    }
    let mut out = obj.clone();
    match kind_s {
        "LLMSummarizingCondenser" => {
            let llm = c
                .required(obj, loc, "llm")
                .and_then(|l| check_llm(c, l, &with(loc, "llm")));
            let max_size = match obj.get("max_size") {
                Some(m) => c.int(m, with(loc, "max_size")),
                None => Some(120),
            };
            let keep_first = match obj.get("keep_first") {
                Some(m) => c.int(m, with(loc, "keep_first")),
                None => Some(4),
            };
            if let (Some(llm), Some(ms), Some(kf)) = (llm, max_size, keep_first) {
                if ms <= 0 || kf < 0 || ms / 2 - kf - 1 <= 0 {
                    c.push(
                        ValidationItem::new(
                            "value_error",
                            loc.to_vec(),
                            "Value error, max_size // 2 - keep_first - 1 must be greater than 0",
                            v.clone(),
                        )
                        .with_ctx(json!({"error": {}})),
                    );
                    return Ok(None);
                }
                out.insert(
                    "llm".into(),
                    serde_json::to_value(&llm).unwrap_or(Value::Null),
                );
                out.insert("max_size".into(), ms.into());
                out.insert("keep_first".into(), kf.into());
                // keep the plain LLM: re-serializing masked it, so put the typed one back below
                return Ok(Some(Value::Object(out)));
            }
            Ok(None)
        }
        "PipelineCondenser" => {
            let mut items = Vec::new();
            if let Some(list) = obj
                .get("condensers")
                .and_then(|l| c.list(l, with(loc, "condensers")))
            {
                for (i, item) in list.iter().enumerate() {
                    if let Some(v) = check_condenser(c, item, &with(&with(loc, "condensers"), i))? {
                        items.push(v);
                    }
                }
            }
            out.insert("condensers".into(), Value::Array(items));
            Ok(Some(Value::Object(out)))
        }
        _ => Ok(Some(json!({"kind": kind_s}))),
    }
}

/// The parts of `agent_context.skills[]` that the typed parse would take as they come: each
/// skill's `inputs` (`InputMetadata`: `name` and `description` strings, both required) and
/// `trigger` (null, or a `KeywordTrigger`/`TaskTrigger` told apart by `type`). The rest of the
/// context is checked by the typed parse.
fn check_skills(c: &mut Checker, ctx: &Value, loc: &[Value]) {
    let Some(skills) = ctx
        .as_object()
        .and_then(|o| o.get("skills"))
        .and_then(Value::as_array)
    else {
        return;
    };
    for (i, skill) in skills.iter().enumerate() {
        let sloc = with(&with(loc, "skills"), i);
        let Some(sobj) = skill.as_object() else {
            continue;
        };
        if let Some(inputs) = sobj
            .get("inputs")
            .and_then(|x| c.list(x, with(&sloc, "inputs")))
        {
            for (j, input) in inputs.iter().enumerate() {
                let iloc = with(&with(&sloc, "inputs"), j);
                if let Some(iobj) = c.model(input, iloc.clone()) {
                    for field in ["name", "description"] {
                        if let Some(x) = c.required(iobj, &iloc, field) {
                            c.string(x, with(&iloc, field));
                        }
                    }
                }
            }
        }
        let Some(trigger) = sobj.get("trigger").filter(|t| !t.is_null()) else {
            continue;
        };
        let tloc = with(&sloc, "trigger");
        let Some(tobj) = c.model(trigger, tloc.clone()) else {
            continue;
        };
        let list = match tobj.get("type").and_then(Value::as_str) {
            Some("keyword") => "keywords",
            Some("task") => "triggers",
            Some(_) | None => {
                let (kind, msg) = match tobj.get("type") {
                    None => (
                        "union_tag_not_found",
                        "Unable to extract tag using discriminator 'type'".to_string(),
                    ),
                    Some(t) => (
                        "union_tag_invalid",
                        format!(
                            "Input tag '{}' found using 'type' does not match any of the expected tags: 'keyword', 'task'",
                            t.as_str().map(String::from).unwrap_or(t.to_string())
                        ),
                    ),
                };
                c.push(ValidationItem::new(kind, tloc, msg, trigger.clone()));
                continue;
            }
        };
        // a discriminated union: pydantic puts the tag in `loc`
        let kind = if list == "keywords" {
            "keyword"
        } else {
            "task"
        };
        let lloc = with(&with(&tloc, kind), list);
        if let Some(items) = c
            .required(tobj, &with(&tloc, kind), list)
            .and_then(|x| c.list(x, lloc.clone()))
        {
            for (k, item) in items.iter().enumerate() {
                c.string(item, with(&lloc, k));
            }
        }
    }
}

/// Validates the `agent` of a start request (unknown agent keys are ignored).
pub fn check_agent(c: &mut Checker, v: &Value, loc: &[Value]) -> Result<Option<Agent>, ApiError> {
    let Some(obj) = c.model(v, loc.to_vec()) else {
        return Ok(None);
    };
    let before = c.errors.len();
    if let Some(k) = obj.get("kind") {
        c.literal(k, with(loc, "kind"), &["Agent"]);
    }
    let llm = c
        .required(obj, loc, "llm")
        .and_then(|l| check_llm(c, l, &with(loc, "llm")));
    let mut tools = Vec::new();
    if let Some(list) = obj.get("tools").and_then(|t| c.list(t, with(loc, "tools"))) {
        for (i, t) in list.iter().enumerate() {
            let tloc = with(&with(loc, "tools"), i);
            let Some(tobj) = c.model(t, tloc.clone()) else {
                continue;
            };
            if let Some(name) = c
                .required(tobj, &tloc, "name")
                .and_then(|n| c.string(n, with(&tloc, "name")))
                && name.is_empty()
            {
                c.push(
                    ValidationItem::new(
                        "string_too_short",
                        with(&tloc, "name"),
                        "String should have at least 1 character",
                        Value::from(""),
                    )
                    .with_ctx(json!({"min_length": 1})),
                );
            }
            if let Some(p) = tobj.get("params") {
                c.dict(p, with(&tloc, "params"));
            }
            tools.push(t.clone());
        }
    }
    if let Some(ctx) = obj.get("agent_context").filter(|x| !x.is_null()) {
        check_skills(c, ctx, &with(loc, "agent_context"));
    }
    // condensers hold LLMs whose secrets must stay plain: validate, then parse the raw input
    let condenser_ok = match obj.get("condenser") {
        Some(cv) => check_condenser(c, cv, &with(loc, "condenser"))?.is_some(),
        None => true,
    };
    for (name, ty) in [("mcp_config", Ty::Dict), ("system_prompt_kwargs", Ty::Dict)] {
        if let Some(x) = obj.get(name) {
            check_typed(c, x, with(loc, name), ty, false);
        }
    }
    for name in ["filter_tools_regex", "system_prompt_filename"] {
        if let Some(x) = obj.get(name) {
            check_typed(c, x, with(loc, name), Ty::Str, name == "filter_tools_regex");
        }
    }
    if c.errors.len() > before || !condenser_ok {
        return Ok(None);
    }
    let Some(llm) = llm else { return Ok(None) };
    let mut known = Map::new();
    for k in [
        "mcp_config",
        "filter_tools_regex",
        "agent_context",
        "system_prompt_filename",
        "system_prompt_kwargs",
        "condenser",
    ] {
        if let Some(x) = obj.get(k)
            && !(x.is_null() && ["mcp_config", "system_prompt_kwargs"].contains(&k))
        {
            known.insert(k.into(), x.clone());
        }
    }
    known.insert("tools".into(), Value::Array(tools));
    known.insert("llm".into(), json!({"model": llm.model.clone()}));
    match serde_json::from_value::<Agent>(Value::Object(known)) {
        Ok(mut agent) => {
            agent.llm = llm;
            agent.normalize();
            Ok(Some(agent))
        }
        Err(e) => {
            c.push(
                ValidationItem::new(
                    "value_error",
                    loc.to_vec(),
                    format!("Value error, {e}"),
                    v.clone(),
                )
                .with_ctx(json!({"error": {}})),
            );
            Ok(None)
        }
    }
}

/// A confirmation policy object.
pub fn check_policy(
    c: &mut Checker,
    v: &Value,
    loc: &[Value],
) -> Result<Option<ConfirmationPolicy>, ApiError> {
    let Some(obj) = c.model(v, loc.to_vec()) else {
        return Ok(None);
    };
    let Some(kind) = obj.get("kind") else {
        return Err(missing_kind());
    };
    match kind.as_str() {
        Some("NeverConfirm") => Ok(Some(ConfirmationPolicy::NeverConfirm {})),
        Some("AlwaysConfirm") => Ok(Some(ConfirmationPolicy::AlwaysConfirm {})),
        Some("ConfirmRisky") => {
            let threshold = match obj.get("threshold") {
                None => Some(super::conversation::Threshold::High),
                Some(t) if t.as_str() == Some("UNKNOWN") => {
                    c.push(
                        ValidationItem::new(
                            "value_error",
                            with(loc, "threshold"),
                            "Value error, Threshold cannot be UNKNOWN",
                            t.clone(),
                        )
                        .with_ctx(json!({"error": {}})),
                    );
                    None
                }
                Some(t) => {
                    let s = t.as_str().unwrap_or_default();
                    c.enumeration(
                        s,
                        with(loc, "threshold"),
                        &["LOW", "MEDIUM", "HIGH", "UNKNOWN"],
                    );
                    serde_json::from_value(t.clone()).ok()
                }
            };
            let confirm_unknown = match obj.get("confirm_unknown") {
                None => Some(true),
                Some(b) => c.bool(b, with(loc, "confirm_unknown")),
            };
            Ok(match (threshold, confirm_unknown) {
                (Some(threshold), Some(confirm_unknown)) => {
                    Some(ConfirmationPolicy::ConfirmRisky {
                        threshold,
                        confirm_unknown,
                    })
                }
                _ => None,
            })
        }
        _ => {
            let k = kind
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| kind.to_string());
            unexpected_kind(
                c,
                v,
                loc.to_vec(),
                &k,
                "ConfirmationPolicyBase",
                &ConfirmationPolicy::KINDS,
            );
            Ok(None)
        }
    }
}

/// A security analyzer object or null (`{}` is the LLM analyzer).
pub fn check_analyzer(
    c: &mut Checker,
    v: &Value,
    loc: &[Value],
) -> Option<Option<SecurityAnalyzer>> {
    if v.is_null() {
        return Some(None);
    }
    let obj = c.model(v, loc.to_vec())?;
    if let Some(k) = obj.get("kind") {
        c.literal(k, with(loc, "kind"), &["LLMSecurityAnalyzer"])?;
    }
    Some(Some(SecurityAnalyzer::LLMSecurityAnalyzer {}))
}

/// One secret value. `plain_allowed`: POST /secrets accepts plain strings and `{"value":..}`
/// without `kind` (DEVIATIONS #20); the start request does not.
fn check_secret(
    c: &mut Checker,
    v: &Value,
    loc: Vec<Value>,
    plain_allowed: bool,
) -> Result<Option<SecretSource>, ApiError> {
    const KINDS: [&str; 2] = ["LookupSecret", "StaticSecret"];
    let input = |s: &str| {
        crate::model::secret::with_secret_read(Default::default(), || {
            serde_json::from_value::<SecretSource>(json!({"kind":"StaticSecret","value": s})).ok()
        })
    };
    match v {
        Value::String(s) if plain_allowed => Ok(input(s)),
        Value::Object(obj) => {
            let kind = match obj.get("kind") {
                Some(k) => k.as_str().unwrap_or_default().to_string(),
                None if plain_allowed && obj.contains_key("value") => "StaticSecret".to_string(),
                None => return Err(missing_kind()),
            };
            let before = c.errors.len();
            match kind.as_str() {
                "StaticSecret" => {
                    if let Some(val) = c.required(obj, &loc, "value") {
                        c.string(val, with(&loc, "value"));
                    }
                }
                "LookupSecret" => {
                    if let Some(u) = c.required(obj, &loc, "url") {
                        c.string(u, with(&loc, "url"));
                    }
                    if let Some(h) = obj.get("headers") {
                        c.dict(h, with(&loc, "headers"));
                    }
                }
                _ => {
                    unexpected_kind(c, v, loc, &kind, "SecretSource", &KINDS);
                    return Ok(None);
                }
            }
            if let Some(d) = obj.get("description")
                && !d.is_null()
            {
                c.string(d, with(&loc, "description"));
            }
            if c.errors.len() > before {
                return Ok(None);
            }
            let mut m = obj.clone();
            m.insert("kind".into(), Value::String(kind));
            Ok(serde_json::from_value::<SecretSource>(Value::Object(m)).ok())
        }
        other => {
            unexpected_kind(c, other, loc, py_type(other), "SecretSource", &KINDS);
            Ok(None)
        }
    }
}

/// A `{name: secret}` map.
pub fn check_secrets(
    c: &mut Checker,
    v: &Value,
    loc: &[Value],
    plain_allowed: bool,
) -> Result<Option<SecretMap>, ApiError> {
    let Some(obj) = c.dict(v, loc.to_vec()) else {
        return Ok(None);
    };
    let before = c.errors.len();
    let mut out = SecretMap::new();
    for (name, sv) in obj {
        if let Some(s) = check_secret(c, sv, with(loc, name.as_str()), plain_allowed)? {
            out.insert(name.clone(), s);
        }
    }
    Ok(if c.errors.len() > before {
        None
    } else {
        Some(out)
    })
}

/// TextContent | ImageContent, with pydantic's union error listing.
fn check_content_item(c: &mut Checker, v: &Value, loc: &[Value]) -> Option<Content> {
    let Some(obj) = v.as_object() else {
        for member in ["TextContent", "ImageContent"] {
            c.push(ValidationItem::new(
                "model_type",
                with(loc, member),
                "Input should be a valid dictionary or object",
                v.clone(),
            ));
        }
        return None;
    };
    let mut text_errs = Checker::new();
    let tloc = with(loc, "TextContent");
    if let Some(cp) = obj.get("cache_prompt") {
        text_errs.bool(cp, with(&tloc, "cache_prompt"));
    }
    if let Some(t) = obj.get("type") {
        text_errs.literal(t, with(&tloc, "type"), &["text"]);
    }
    if let Some(t) = text_errs.required(obj, &tloc, "text") {
        text_errs.string(t, with(&tloc, "text"));
    }
    for (k, x) in obj {
        if !["cache_prompt", "type", "text"].contains(&k.as_str()) {
            text_errs.push(ValidationItem::new(
                "extra_forbidden",
                with(&tloc, k.as_str()),
                "Extra inputs are not permitted",
                x.clone(),
            ));
        }
    }
    if text_errs.errors.is_empty() {
        return serde_json::from_value(v.clone()).ok();
    }
    let mut image_errs = Checker::new();
    let iloc = with(loc, "ImageContent");
    if let Some(cp) = obj.get("cache_prompt") {
        image_errs.bool(cp, with(&iloc, "cache_prompt"));
    }
    match obj.get("type") {
        Some(t) => {
            image_errs.literal(t, with(&iloc, "type"), &["image"]);
        }
        None => image_errs.push(ValidationItem::new(
            "missing",
            with(&iloc, "type"),
            "Field required",
            v.clone(),
        )),
    }
    if let Some(u) = image_errs.required(obj, &iloc, "image_urls")
        && let Some(list) = image_errs.list(u, with(&iloc, "image_urls"))
    {
        for (i, x) in list.iter().enumerate() {
            image_errs.string(x, with(&with(&iloc, "image_urls"), i));
        }
    }
    if image_errs.errors.is_empty() {
        let mut m = obj.clone();
        m.retain(|k, _| ["cache_prompt", "type", "image_urls"].contains(&k.as_str()));
        return serde_json::from_value(Value::Object(m)).ok();
    }
    c.errors.extend(text_errs.errors);
    c.errors.extend(image_errs.errors);
    None
}

/// SendMessageRequest; only the `user` role is accepted (DEVIATIONS #19: 422 on `role`).
pub fn check_message(c: &mut Checker, v: &Value, loc: &[Value]) -> Option<SendMessageRequest> {
    let obj = c.model(v, loc.to_vec())?;
    let before = c.errors.len();
    let role = match obj.get("role") {
        Some(r) => c
            .literal(r, with(loc, "role"), &["user"])
            .map(|_| Role::User),
        None => Some(Role::User),
    };
    let mut content = Vec::new();
    if let Some(list) = obj
        .get("content")
        .and_then(|x| c.list(x, with(loc, "content")))
    {
        for (i, item) in list.iter().enumerate() {
            if let Some(ci) = check_content_item(c, item, &with(&with(loc, "content"), i)) {
                content.push(ci);
            }
        }
    }
    let run = match obj.get("run") {
        Some(r) => c.bool(r, with(loc, "run")).unwrap_or(false),
        None => false,
    };
    if c.errors.len() > before {
        return None;
    }
    Some(SendMessageRequest {
        role: role.unwrap_or_default(),
        content,
        run,
    })
}

/// The start request body (API.md §2.1); errors in field order.
pub fn start_conversation(body: &Value) -> Result<StartConversationRequest, ApiError> {
    let mut c = Checker::new();
    let Some(obj) = c.model(body, loc!["body"]) else {
        return Err(failed(c));
    };
    let root = at!["body"];
    let agent = match c.required(obj, &root, "agent") {
        Some(a) => check_agent(&mut c, a, &at!["body", "agent"])?,
        None => None,
    };
    let workspace = c.required(obj, &root, "workspace").and_then(|w| {
        let wloc = loc!["body", "workspace"];
        let wobj = c.model(w, wloc.clone())?;
        if let Some(k) = wobj.get("kind") {
            c.literal(k, with(&wloc, "kind"), &["LocalWorkspace"]);
        }
        let dir = c
            .required(wobj, &wloc, "working_dir")
            .and_then(|d| c.string(d, with(&wloc, "working_dir")))?;
        Some(Workspace {
            kind: Default::default(),
            working_dir: dir,
        })
    });
    let conversation_id = match obj.get("conversation_id") {
        None | Some(Value::Null) => None,
        Some(v) => c.uuid(v, loc!["body", "conversation_id"]),
    };
    let policy = match obj.get("confirmation_policy") {
        None => Some(ConfirmationPolicy::default()),
        Some(p) => check_policy(&mut c, p, &at!["body", "confirmation_policy"])?,
    };
    let initial_message = match obj.get("initial_message") {
        None | Some(Value::Null) => None,
        Some(m) => check_message(&mut c, m, &at!["body", "initial_message"]),
    };
    let max_iterations = match obj.get("max_iterations") {
        None => d_max_iterations(),
        Some(m) => match c.int(m, loc!["body", "max_iterations"]) {
            Some(n) if n < 1 => {
                c.push(
                    ValidationItem::new(
                        "greater_than_equal",
                        loc!["body", "max_iterations"],
                        "Input should be greater than or equal to 1",
                        m.clone(),
                    )
                    .with_ctx(json!({"ge": 1})),
                );
                0
            }
            Some(n) => n,
            None => 0,
        },
    };
    let stuck_detection = match obj.get("stuck_detection") {
        None => true,
        Some(b) => c.bool(b, loc!["body", "stuck_detection"]).unwrap_or(true),
    };
    let secrets = match obj.get("secrets") {
        None | Some(Value::Null) => Some(SecretMap::new()),
        Some(s) => check_secrets(&mut c, s, &at!["body", "secrets"], false)?,
    };
    c.finish()?;
    match (agent, workspace, policy, secrets) {
        (Some(agent), Some(workspace), Some(confirmation_policy), Some(secrets)) => {
            Ok(StartConversationRequest {
                agent,
                workspace,
                conversation_id,
                confirmation_policy,
                initial_message,
                max_iterations,
                stuck_detection,
                secrets,
            })
        }
        _ => Err(ApiError::internal("invalid start request")),
    }
}

/// PATCH body `{"title": str}` (1..200 characters before stripping); returns the stripped title.
pub fn update_title(body: &Value) -> Result<String, ApiError> {
    let mut c = Checker::new();
    let Some(obj) = c.model(body, loc!["body"]) else {
        return Err(failed(c));
    };
    let title = c
        .required(obj, &at!["body"], "title")
        .and_then(|t| c.string(t, loc!["body", "title"]));
    if let Some(t) = &title {
        let n = t.chars().count();
        if n < 1 {
            c.push(
                ValidationItem::new(
                    "string_too_short",
                    loc!["body", "title"],
                    "String should have at least 1 character",
                    Value::from(t.as_str()),
                )
                .with_ctx(json!({"min_length": 1})),
            );
        } else if n > 200 {
            c.push(
                ValidationItem::new(
                    "string_too_long",
                    loc!["body", "title"],
                    "String should have at most 200 characters",
                    Value::from(t.as_str()),
                )
                .with_ctx(json!({"max_length": 200})),
            );
        }
    }
    c.finish()?;
    Ok(title.unwrap_or_default().trim().to_string())
}

/// `{"policy": {...}}`.
pub fn set_policy(body: &Value) -> Result<ConfirmationPolicy, ApiError> {
    let mut c = Checker::new();
    let Some(obj) = c.model(body, loc!["body"]) else {
        return Err(failed(c));
    };
    let p = match c.required(obj, &at!["body"], "policy") {
        Some(p) => check_policy(&mut c, p, &at!["body", "policy"])?,
        None => None,
    };
    c.finish()?;
    p.ok_or_else(|| ApiError::internal("invalid policy"))
}

/// `{"security_analyzer": {...} | null}` (the field is required).
pub fn set_analyzer(body: &Value) -> Result<Option<SecurityAnalyzer>, ApiError> {
    let mut c = Checker::new();
    let Some(obj) = c.model(body, loc!["body"]) else {
        return Err(failed(c));
    };
    let a = c
        .required(obj, &at!["body"], "security_analyzer")
        .and_then(|a| check_analyzer(&mut c, a, &at!["body", "security_analyzer"]));
    c.finish()?;
    a.ok_or_else(|| ApiError::internal("invalid analyzer"))
}

/// `{"secrets": {name: value}}` for POST /secrets.
pub fn update_secrets(body: &Value) -> Result<SecretMap, ApiError> {
    let mut c = Checker::new();
    let Some(obj) = c.model(body, loc!["body"]) else {
        return Err(failed(c));
    };
    let s = match c.required(obj, &at!["body"], "secrets") {
        Some(s) => check_secrets(&mut c, s, &at!["body", "secrets"], true)?,
        None => None,
    };
    c.finish()?;
    s.ok_or_else(|| ApiError::internal("invalid secrets"))
}

/// POST .../events body.
pub fn send_message(body: &Value) -> Result<SendMessageRequest, ApiError> {
    let mut c = Checker::new();
    let m = check_message(&mut c, body, &at!["body"]);
    c.finish()?;
    m.ok_or_else(|| ApiError::internal("invalid message"))
}

/// `{"accept": bool, "reason": str = "User rejected the action."}`.
pub fn respond_to_confirmation(body: &Value) -> Result<(bool, String), ApiError> {
    let mut c = Checker::new();
    let Some(obj) = c.model(body, loc!["body"]) else {
        return Err(failed(c));
    };
    let accept = c
        .required(obj, &at!["body"], "accept")
        .and_then(|a| c.bool(a, loc!["body", "accept"]));
    let reason = match obj.get("reason") {
        Some(r) => c.string(r, loc!["body", "reason"]),
        None => Some("User rejected the action.".to_string()),
    };
    c.finish()?;
    Ok((accept.unwrap_or(false), reason.unwrap_or_default()))
}

/// `{"max_length": int 1..200 = 50, "llm": LLM | null}` for generate_title.
pub fn generate_title(body: &Value) -> Result<(usize, Option<Llm>), ApiError> {
    let mut c = Checker::new();
    let Some(obj) = c.model(body, loc!["body"]) else {
        return Err(failed(c));
    };
    let max_length = match obj.get("max_length") {
        None => Some(50),
        Some(m) => match c.int(m, loc!["body", "max_length"]) {
            Some(n) if n < 1 => {
                c.push(
                    ValidationItem::new(
                        "greater_than_equal",
                        loc!["body", "max_length"],
                        "Input should be greater than or equal to 1",
                        m.clone(),
                    )
                    .with_ctx(json!({"ge": 1})),
                );
                None
            }
            Some(n) if n > 200 => {
                c.push(
                    ValidationItem::new(
                        "less_than_equal",
                        loc!["body", "max_length"],
                        "Input should be less than or equal to 200",
                        m.clone(),
                    )
                    .with_ctx(json!({"le": 200})),
                );
                None
            }
            other => other,
        },
    };
    let llm = match obj.get("llm") {
        None | Some(Value::Null) => None,
        Some(l) => check_llm(&mut c, l, &at!["body", "llm"]),
    };
    c.finish()?;
    Ok((max_length.unwrap_or(50) as usize, llm))
}

/// `{"question": str}` for ask_agent.
pub fn ask_agent(body: &Value) -> Result<String, ApiError> {
    let mut c = Checker::new();
    let Some(obj) = c.model(body, loc!["body"]) else {
        return Err(failed(c));
    };
    let q = c
        .required(obj, &at!["body"], "question")
        .and_then(|q| c.string(q, loc!["body", "question"]));
    c.finish()?;
    Ok(q.unwrap_or_default())
}

/// Parses a UUID list for batch routes.
pub fn uuid_list(c: &mut Checker, raw: &[&str], loc_root: &[Value]) -> Vec<Uuid> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, r)| c.uuid(&Value::from(*r), with(loc_root, i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(e: ApiError) -> Vec<(String, Vec<Value>)> {
        match e {
            ApiError::Validation(items) => items.into_iter().map(|i| (i.kind, i.loc)).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn llm_numbers_out_of_the_reference_bounds_are_422() {
        let body = |llm: Value| json!({"agent": {"llm": llm}, "workspace": {"working_dir": "/x"}});
        let e = start_conversation(&body(json!({"model": "m", "num_retries": -1, "top_p": 1.5,
            "max_output_tokens": 0, "temperature": -0.1, "extended_thinking_budget": -5})))
        .unwrap_err();
        let got = kinds(e);
        let at = |f: &str| vec![json!("body"), json!("agent"), json!("llm"), json!(f)];
        assert_eq!(
            got,
            vec![
                ("greater_than_equal".into(), at("num_retries")),
                ("less_than_equal".into(), at("top_p")),
                ("greater_than_equal".into(), at("max_output_tokens")),
                ("greater_than_equal".into(), at("temperature")),
            ]
        );
        // the bounds themselves are valid; the budget has none
        start_conversation(&body(json!({"model": "m", "num_retries": 0, "top_p": 1.0,
            "max_output_tokens": 1, "temperature": 0, "extended_thinking_budget": -5})))
        .unwrap();
    }

    #[test]
    fn skill_inputs_and_triggers_are_validated() {
        let body = |skill: Value| {
            json!({"agent": {"llm": {"model": "m"}, "agent_context": {"skills": [skill]}},
                "workspace": {"working_dir": "/x"}})
        };
        let at = |rest: &[Value]| {
            let mut l = vec![
                json!("body"),
                json!("agent"),
                json!("agent_context"),
                json!("skills"),
                json!(0),
            ];
            l.extend_from_slice(rest);
            l
        };
        let e = start_conversation(&body(json!({"name": "s", "content": "c",
            "inputs": [{"name": ""}], "trigger": {"keywords": ["a"]}})))
        .unwrap_err();
        assert_eq!(
            kinds(e),
            vec![
                (
                    "missing".into(),
                    at(&[json!("inputs"), json!(0), json!("description")])
                ),
                ("union_tag_not_found".into(), at(&[json!("trigger")])),
            ]
        );
        let e = start_conversation(&body(json!({"name": "s", "content": "c",
            "trigger": {"type": "task", "triggers": [1]}})))
        .unwrap_err();
        assert_eq!(
            kinds(e),
            vec![(
                "string_type".into(),
                at(&[json!("trigger"), json!("task"), json!("triggers"), json!(0)])
            )]
        );
        let ok = start_conversation(&body(json!({"name": "s", "content": "c",
            "inputs": [{"name": "n", "description": "d", "extra": 1}],
            "trigger": {"type": "keyword", "keywords": ["a"]}})))
        .unwrap();
        let ctx = serde_json::to_value(ok.agent.agent_context).unwrap();
        assert_eq!(
            ctx["skills"][0]["inputs"],
            json!([{"name": "n", "description": "d"}])
        );
    }

    #[test]
    fn start_errors_in_field_order() {
        assert_eq!(
            kinds(start_conversation(&json!({})).unwrap_err()),
            vec![
                ("missing".into(), loc!["body", "agent"]),
                ("missing".into(), loc!["body", "workspace"])
            ]
        );
        let e = start_conversation(
            &json!({"agent":{"llm":{"model":"m","bogus":1}},"workspace":{"working_dir":"/x"}}),
        )
        .unwrap_err();
        assert_eq!(
            kinds(e),
            vec![(
                "extra_forbidden".into(),
                loc!["body", "agent", "llm", "bogus"]
            )]
        );
        let e = start_conversation(&json!({"agent":{"llm":{"model":"m"}},"workspace":{"working_dir":"/x"},"max_iterations":0})).unwrap_err();
        assert_eq!(
            kinds(e),
            vec![("greater_than_equal".into(), loc!["body", "max_iterations"])]
        );
    }

    #[test]
    fn start_ok_applies_defaults() {
        let r = start_conversation(&json!({"agent":{"llm":{"model":"m","api_key":"k"},"tools":[{"name":"terminal"}]},"workspace":{"working_dir":"/x"}})).unwrap();
        assert_eq!(r.max_iterations, 500);
        assert_eq!(r.agent.llm.api_key.as_ref().map(|s| s.expose()), Some("k"));
        assert_eq!(
            r.agent.system_prompt_kwargs.get("llm_security_analyzer"),
            Some(&json!(true))
        );
    }

    #[test]
    fn content_union_errors() {
        let e = send_message(&json!({"content":[{"type":"video","url":"x"}]})).unwrap_err();
        let locs: Vec<_> = kinds(e)
            .into_iter()
            .map(|(k, l)| (k, l[3].clone(), l[4].clone()))
            .collect();
        assert_eq!(
            locs,
            vec![
                ("literal_error".into(), json!("TextContent"), json!("type")),
                ("missing".into(), json!("TextContent"), json!("text")),
                ("extra_forbidden".into(), json!("TextContent"), json!("url")),
                ("literal_error".into(), json!("ImageContent"), json!("type")),
                ("missing".into(), json!("ImageContent"), json!("image_urls")),
            ]
        );
        assert_eq!(
            kinds(send_message(&json!({"role":"assistant"})).unwrap_err())[0].1,
            loc!["body", "role"]
        );
    }

    #[test]
    fn secrets_forms() {
        let s = update_secrets(&json!({"secrets":{"A":"x","B":{"value":"y"},"C":{"kind":"LookupSecret","url":"http://u"}}})).unwrap();
        assert_eq!(s.len(), 3);
        assert!(matches!(
            update_secrets(&json!({"secrets":{"A":5}})),
            Err(ApiError::Validation(_))
        ));
        assert!(matches!(
            start_conversation(
                &json!({"agent":{"llm":{"model":"m"}},"workspace":{"working_dir":"/x"},"secrets":{"A":"x"}})
            ),
            Err(ApiError::Validation(_))
        ));
    }
}

/// A `timestamp__gte`/`timestamp__lt` query value rendered the way the reference compares it
/// with stored timestamps (API.md §3.1): naive values as given (`isoformat`), date-only as
/// midnight, values with an offset (or Unix seconds) converted to the server's local zone and
/// keeping the offset suffix. `None` if pydantic would reject it.
pub fn timestamp_bound(raw: &str) -> Option<String> {
    use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone};
    let s = raw.trim();
    let aware = |dt: DateTime<FixedOffset>| {
        let local = dt.with_timezone(&Local);
        format!(
            "{}{}",
            super::wire::python_isoformat(&local.naive_local()),
            local.format("%:z")
        )
    };
    if let Ok(secs) = s.parse::<f64>() {
        let whole = secs.floor();
        let nanos = ((secs - whole) * 1e9).round() as u32;
        let dt = chrono::Utc
            .timestamp_opt(whole as i64, nanos.min(999_999_999))
            .single()?;
        return Some(aware(dt.fixed_offset()));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(super::wire::python_isoformat(&d.and_hms_opt(0, 0, 0)?));
    }
    let normalized = s.replacen(' ', "T", 1);
    let with_z = if normalized.ends_with('Z') || normalized.ends_with('z') {
        format!("{}+00:00", &normalized[..normalized.len() - 1])
    } else {
        normalized.clone()
    };
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%:z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(&with_z, f) {
            return Some(aware(dt));
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(&normalized, f) {
            return Some(super::wire::python_isoformat(&dt));
        }
    }
    None
}

#[cfg(test)]
mod timestamp_tests {
    use super::timestamp_bound;

    #[test]
    fn renders_like_python() {
        assert_eq!(
            timestamp_bound("2026-11-28T13:06:46.5").as_deref(),
            Some("2026-11-28T13:06:46.500000")
        );
        assert_eq!(
            timestamp_bound("2026-11-28T13:06:46").as_deref(),
            Some("2026-11-28T13:06:46")
        );
        assert_eq!(
            timestamp_bound("2026-11-28").as_deref(),
            Some("2026-11-28T00:00:00")
        );
        assert!(
            timestamp_bound("2026-11-28T13:06:46Z")
                .unwrap()
                .starts_with("2026-11-28")
        );
        assert!(timestamp_bound("yesterday").is_none());
        assert!(timestamp_bound("soon").is_none());
    }
}
