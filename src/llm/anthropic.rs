//! Anthropic Messages wire format (`llm-captures/anthropic-messages-claude-sonnet-4-5-step1.json`):
//! system blocks, `tool_use`/`tool_result` blocks, tools with `input_schema`, and the reply parser.

use serde_json::{Map, Value, json};

use super::chat::{INTERLEAVED_THINKING_BETA, count, default_temperature, strip_images};
use super::config::LlmConfig;
use super::error::LlmError;
use super::model::{ModelFeatures, Route};
use super::{LlmRequest, LlmResponse, ToolCall, Usage, pyjson};

/// Beta flag for prompt caching.
const PROMPT_CACHING_BETA: &str = "prompt-caching-2024-07-31";
/// `max_tokens` is mandatory on this API; used when neither config nor model table gives one.
const FALLBACK_MAX_TOKENS: u64 = 4096;

/// Converts a Chat Completions content list (or string) into Anthropic blocks.
fn blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let mut b = json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))});
                    if let Some(cc) = p.get("cache_control") {
                        b["cache_control"] = cc.clone();
                    }
                    Some(b)
                }
                Some("image_url") => {
                    let url = p.pointer("/image_url/url").and_then(Value::as_str).unwrap_or_default();
                    Some(image_block(url))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// An image block from a data URL (base64 source) or a plain URL (url source).
fn image_block(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
    {
        let media_type = meta.split(';').next().unwrap_or("image/png");
        return json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}});
    }
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

/// Appends `msg` (role user/assistant) merging with the previous message of the same role,
/// since the API wants alternating roles.
fn push(out: &mut Vec<Value>, role: &str, content: Vec<Value>) {
    if content.is_empty() {
        return;
    }
    if let Some(last) = out.last_mut()
        && last["role"] == role
        && let Some(Value::Array(existing)) = last.get_mut("content")
    {
        existing.extend(content);
        return;
    }
    out.push(json!({"role": role, "content": content}));
}

/// The Messages body and extra headers for `req`.
pub fn build_body(
    cfg: &LlmConfig,
    route: &Route,
    req: &LlmRequest,
) -> (Value, Vec<(String, String)>) {
    let features = ModelFeatures::of(cfg);
    let messages = strip_images(&req.messages, features.vision);
    let mut system: Vec<Value> = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for m in &messages {
        match m.get("role").and_then(Value::as_str).unwrap_or("user") {
            "system" => system.extend(blocks(&m["content"])),
            "assistant" => {
                let mut content: Vec<Value> = Vec::new();
                for tb in m
                    .get("thinking_blocks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    content.push(tb.clone());
                }
                content.extend(
                    blocks(m.get("content").unwrap_or(&Value::Null))
                        .into_iter()
                        .filter(|b| b["type"] != "text" || b["text"] != ""),
                );
                for tc in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let args = tc
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("{}");
                    let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                    content.push(json!({"type": "tool_use", "id": tc["id"], "name": tc.pointer("/function/name").cloned().unwrap_or(json!("")), "input": input}));
                }
                push(&mut out, "assistant", content);
            }
            "tool" => {
                // like the reference (litellm), text parts of a tool result carry an explicit
                // `cache_control: null` (the marker, if any, sits on the tool_result itself)
                let inner: Vec<Value> = blocks(m.get("content").unwrap_or(&Value::Null))
                    .into_iter()
                    .map(|mut b| {
                        if b.get("type").and_then(Value::as_str) == Some("text")
                            && let Some(o) = b.as_object_mut()
                        {
                            o.entry("cache_control").or_insert(Value::Null);
                        }
                        b
                    })
                    .collect();
                let mut result = json!({"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": inner});
                if features.prompt_cache && m.get("cache_control").is_some() {
                    result["cache_control"] = m["cache_control"].clone();
                }
                push(&mut out, "user", vec![result]);
            }
            _ => push(
                &mut out,
                "user",
                blocks(m.get("content").unwrap_or(&Value::Null)),
            ),
        }
    }
    if features.prompt_cache {
        if let Some(Value::Object(last)) = system.last_mut() {
            last.insert("cache_control".into(), json!({"type": "ephemeral"}));
        }
        if let Some(last_user) = out.iter_mut().rev().find(|m| m["role"] == "user")
            && let Some(Value::Array(content)) = last_user.get_mut("content")
            && let Some(Value::Object(b)) = content.last_mut()
        {
            b.insert("cache_control".into(), json!({"type": "ephemeral"}));
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(route.wire_model));
    body.insert("messages".into(), Value::Array(out));
    let max_tokens = cfg
        .max_output_tokens
        .or(features.default_max_output)
        .unwrap_or(FALLBACK_MAX_TOKENS);
    body.insert("max_tokens".into(), json!(max_tokens));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let f = t.get("function").unwrap_or(t);
                // the input schema keeps only these keys (the reference drops e.g. the
                // top-level description of `think`)
                let mut schema = f["parameters"].clone();
                if let Some(o) = schema.as_object_mut() {
                    o.retain(|k, _| matches!(k.as_str(), "type" | "properties" | "required"));
                }
                json!({"name": f["name"], "input_schema": schema, "description": f["description"]})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    let mut betas = Vec::new();
    if features.extended_thinking {
        body.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": cfg.extended_thinking_budget.unwrap_or(200_000)}));
        betas.push(INTERLEAVED_THINKING_BETA);
    } else if !features.reasoning_effort {
        body.insert("temperature".into(), json!(default_temperature(cfg)));
        body.insert("top_p".into(), json!(cfg.top_p.unwrap_or(1.0)));
    }
    if let Some(k) = cfg.top_k {
        body.insert("top_k".into(), json!(k));
    }
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    for (k, v) in &cfg.litellm_extra_body {
        body.insert(k.clone(), v.clone());
    }
    if features.prompt_cache {
        betas.push(PROMPT_CACHING_BETA);
    }
    let mut headers = Vec::new();
    if !betas.is_empty() {
        headers.push(("anthropic-beta".to_string(), betas.join(",")));
    }
    if let Some(extra) = &cfg.extra_headers {
        for (k, v) in extra {
            headers.push((
                k.to_ascii_lowercase(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            ));
        }
    }
    (Value::Object(body), headers)
}

/// Parses a Messages reply.
pub fn parse_response(body: &Value) -> Result<LlmResponse, LlmError> {
    let Some(content) = body.get("content").and_then(Value::as_array) else {
        return Err(LlmError::no_response(format!(
            "Anthropic reply without content: {body}"
        )));
    };
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    let mut thinking_blocks = Vec::new();
    for block in content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                text.get_or_insert_with(String::new).push_str(t);
            }
            Some("tool_use") => tool_calls.push(ToolCall {
                id: block
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                name: block
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                arguments: pyjson::dumps(block.get("input").unwrap_or(&json!({}))),
                origin: "completion",
            }),
            Some("thinking") | Some("redacted_thinking") => thinking_blocks.push(block.clone()),
            _ => {}
        }
    }
    let usage = body.get("usage").cloned().unwrap_or(Value::Null);
    let reasoning_content = thinking_blocks
        .iter()
        .filter_map(|b| b.get("thinking").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(LlmResponse {
        id: body
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        content: text,
        tool_calls,
        reasoning_content: if reasoning_content.is_empty() {
            None
        } else {
            Some(reasoning_content)
        },
        thinking_blocks,
        responses_reasoning_item: None,
        usage: Usage {
            prompt_tokens: count(&usage, "/input_tokens"),
            completion_tokens: count(&usage, "/output_tokens"),
            cache_read_tokens: count(&usage, "/cache_read_input_tokens"),
            cache_write_tokens: count(&usage, "/cache_creation_input_tokens"),
            reasoning_tokens: 0,
        },
        latency: 0.0,
        cost: None,
        context_window: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::model::route;

    #[test]
    fn body_matches_capture_structure() {
        let cfg = LlmConfig::from_json(
            &json!({"model": "anthropic/claude-sonnet-4-5-20250929", "base_url": "http://x"}),
        )
        .unwrap();
        let messages = vec![
            json!({"role": "system", "content": [{"type": "text", "text": "SYS"}]}),
            json!({"role": "user", "content": [{"type": "text", "text": "hi"}]}),
            json!({"role": "assistant", "content": [{"type": "text", "text": "ok"}], "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "terminal", "arguments": "{\"command\": \"echo\", \"security_risk\": \"LOW\"}"}}]}),
            json!({"role": "tool", "content": [{"type": "text", "text": "out"}], "tool_call_id": "toolu_1", "name": "terminal"}),
        ];
        let tools = vec![
            json!({"type": "function", "function": {"name": "terminal", "description": "d", "parameters": {"type": "object"}}}),
        ];
        let (body, headers) = build_body(&cfg, &route(&cfg), &LlmRequest { messages, tools });
        assert_eq!(
            body,
            json!({
                "model": "claude-sonnet-4-5-20250929",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "ok"},
                        {"type": "tool_use", "id": "toolu_1", "name": "terminal", "input": {"command": "echo", "security_risk": "LOW"}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "out", "cache_control": null}], "cache_control": {"type": "ephemeral"}}]}
                ],
                "max_tokens": 64000,
                "tools": [{"name": "terminal", "input_schema": {"type": "object"}, "description": "d"}],
                "thinking": {"type": "enabled", "budget_tokens": 200000},
                "system": [{"type": "text", "text": "SYS", "cache_control": {"type": "ephemeral"}}]
            })
        );
        assert_eq!(
            headers,
            vec![(
                "anthropic-beta".to_string(),
                "interleaved-thinking-2025-05-14,prompt-caching-2024-07-31".to_string()
            )]
        );
    }

    #[test]
    fn parses_blocks_and_usage() {
        let r = parse_response(&json!({"id": "msg_1", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "ok"},
            {"type": "tool_use", "id": "toolu_2", "name": "finish", "input": {"message": "done"}}],
            "usage": {"input_tokens": 100, "output_tokens": 7, "cache_creation_input_tokens": 50, "cache_read_input_tokens": 20}}))
        .unwrap();
        assert_eq!(r.content.as_deref(), Some("ok"));
        assert_eq!(r.tool_calls[0].arguments, "{\"message\": \"done\"}");
        assert_eq!(r.thinking_blocks.len(), 1);
        assert_eq!(r.reasoning_content.as_deref(), Some("hmm"));
        assert_eq!(
            r.usage,
            Usage {
                prompt_tokens: 100,
                completion_tokens: 7,
                cache_read_tokens: 20,
                cache_write_tokens: 50,
                reasoning_tokens: 0
            }
        );
    }
}
