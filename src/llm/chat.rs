//! OpenAI Chat Completions wire format: the request body (parameters exactly as the reference
//! sends them, agent-behaviour §3.3 and `llm-captures/chat-*.json`) and the reply parser.

use serde_json::{Map, Value, json};

use super::config::LlmConfig;
use super::error::LlmError;
use super::model::{ModelFeatures, Provider, Route};
use super::{LlmRequest, LlmResponse, ToolCall, Usage};

/// Header that turns on interleaved thinking for Claude 4.5 models.
pub const INTERLEAVED_THINKING_BETA: &str = "interleaved-thinking-2025-05-14";

/// Request parameters shared by the Chat Completions and Anthropic paths.
pub(crate) fn default_temperature(cfg: &LlmConfig) -> f64 {
    match cfg.temperature {
        Some(t) => t,
        None if cfg
            .effective_model()
            .to_ascii_lowercase()
            .contains("kimi-k2-thinking") =>
        {
            1.0
        }
        None => 0.0,
    }
}

/// Removes image parts when the model has no vision; returns the adapted messages.
pub(crate) fn strip_images(messages: &[Value], vision: bool) -> Vec<Value> {
    if vision {
        return messages.to_vec();
    }
    messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if let Some(Value::Array(parts)) = m.get_mut("content") {
                parts.retain(|p| p.get("type").and_then(Value::as_str) != Some("image_url"));
            }
            m
        })
        .collect()
}

/// Puts `cache_control: ephemeral` on the last part of the system message and of the last
/// user-or-tool message (at message level for tool messages), as the reference does for Claude.
fn add_cache_markers(messages: &mut [Value]) {
    let marker = json!({"type": "ephemeral"});
    if let Some(sys) = messages.iter_mut().find(|m| m["role"] == "system")
        && let Some(Value::Array(parts)) = sys.get_mut("content")
        && let Some(Value::Object(last)) = parts.last_mut()
    {
        last.insert("cache_control".into(), marker.clone());
    }
    if let Some(last) = messages
        .iter_mut()
        .rev()
        .find(|m| m["role"] == "user" || m["role"] == "tool")
    {
        if last["role"] == "tool" {
            if let Value::Object(obj) = last {
                // Keep the reference's key order: content, role, cache_control, tool_call_id, name.
                let mut out = Map::new();
                for (k, v) in obj.iter() {
                    if k == "tool_call_id" {
                        out.insert("cache_control".into(), marker.clone());
                    }
                    out.insert(k.clone(), v.clone());
                }
                if !out.contains_key("cache_control") {
                    out.insert("cache_control".into(), marker.clone());
                }
                *obj = out;
            }
        } else if let Some(Value::Array(parts)) = last.get_mut("content")
            && let Some(Value::Object(p)) = parts.last_mut()
        {
            p.insert("cache_control".into(), marker);
        }
    }
}

/// Joins text parts into one string (string serialiser models, non-native tool calling).
pub(crate) fn stringify_content(messages: &mut [Value]) {
    for m in messages.iter_mut() {
        if let Some(Value::Array(parts)) = m.get("content") {
            let text = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n");
            m["content"] = Value::String(text);
        }
    }
}

/// The Chat Completions body and the extra headers for `req`.
pub fn build_body(
    cfg: &LlmConfig,
    route: &Route,
    req: &LlmRequest,
    temperature_override: Option<f64>,
) -> (Value, Vec<(String, String)>) {
    let features = ModelFeatures::of(cfg);
    let mut headers = Vec::new();
    let mut messages = strip_images(&req.messages, features.vision);
    let keep_reasoning = cfg
        .effective_model()
        .to_ascii_lowercase()
        .contains("kimi-k2-thinking");
    for m in messages.iter_mut() {
        if let Value::Object(obj) = m {
            obj.remove("responses_reasoning_item");
            if !keep_reasoning {
                obj.remove("reasoning_content");
            }
        }
    }
    let wire = route.wire_model.to_ascii_lowercase();
    if wire.starts_with("o1") || wire.starts_with("o3") {
        for m in messages.iter_mut() {
            if m["role"] == "system" {
                m["role"] = json!("user");
            }
        }
    }
    if features.prompt_cache {
        add_cache_markers(&mut messages);
    }
    if features.string_serializer || !cfg.native_tool_calling {
        stringify_content(&mut messages);
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(route.wire_model));
    body.insert("messages".into(), Value::Array(messages));
    if !req.tools.is_empty() && cfg.native_tool_calling {
        body.insert("tools".into(), Value::Array(req.tools.clone()));
    }
    let max_output = cfg.max_output_tokens.or(features.default_max_output);
    if let Some(max) = max_output {
        let key = if route.provider == Provider::Azure {
            "max_tokens"
        } else {
            "max_completion_tokens"
        };
        body.insert(key.into(), json!(max));
    }
    if features.extended_thinking {
        body.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": cfg.extended_thinking_budget.unwrap_or(200_000)}));
        if let Some(max) = max_output {
            body.insert("max_tokens".into(), json!(max));
        }
        headers.push((
            "anthropic-beta".to_string(),
            INTERLEAVED_THINKING_BETA.to_string(),
        ));
    } else if features.reasoning_effort {
        let model = cfg.effective_model().to_ascii_lowercase();
        let effort = match cfg.reasoning_effort.as_deref() {
            None | Some("none") if model.contains("gemini-2.5-pro") => Some("low".to_string()),
            other => other.map(str::to_string),
        };
        if let Some(e) = effort {
            body.insert("reasoning_effort".into(), json!(e));
        }
    } else {
        body.insert(
            "temperature".into(),
            json!(temperature_override.unwrap_or_else(|| default_temperature(cfg))),
        );
        body.insert("top_p".into(), json!(cfg.top_p.unwrap_or(1.0)));
    }
    if let Some(k) = cfg.top_k {
        body.insert("top_k".into(), json!(k));
    }
    if let Some(seed) = cfg.seed {
        body.insert("seed".into(), json!(seed));
    }
    let model = cfg.effective_model().to_ascii_lowercase();
    if let Some(s) = &cfg.safety_settings
        && (model.contains("mistral") || model.contains("gemini"))
    {
        body.insert("safety_settings".into(), s.clone());
    }
    if features.cache_retention
        && let Some(r) = &cfg.prompt_cache_retention
    {
        body.insert("prompt_cache_retention".into(), json!(r));
    }
    if !cfg.native_tool_calling && !cfg.disable_stop_word.unwrap_or(false) {
        body.insert("stop".into(), json!(["</function"]));
    }
    for (k, v) in &cfg.litellm_extra_body {
        body.insert(k.clone(), v.clone());
    }
    if let Some(extra) = &cfg.extra_headers {
        for (k, v) in extra {
            let v = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            headers.push((k.to_ascii_lowercase(), v));
        }
    }
    (Value::Object(body), headers)
}

/// Reads a numeric usage field that may be absent or null.
pub(crate) fn count(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
}

/// Parses a Chat Completions reply.
pub fn parse_response(body: &Value) -> Result<LlmResponse, LlmError> {
    let choices = body
        .get("choices")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    let Some(choice) = choices.and_then(|c| c.first()) else {
        return Err(LlmError::no_response(
            "Response choices is less than 1. Response: ".to_string() + &body.to_string(),
        ));
    };
    let msg = choice.get("message").cloned().unwrap_or(Value::Null);
    let content = match msg.get("content") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(parts)) => {
            let t: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            if t.is_empty() { None } else { Some(t.join("")) }
        }
        _ => None,
    };
    let mut tool_calls = Vec::new();
    for tc in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if tc
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "function")
        {
            continue;
        }
        let f = tc.get("function").cloned().unwrap_or(Value::Null);
        let arguments = match f.get("arguments") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => super::pyjson::dumps(other),
        };
        tool_calls.push(ToolCall {
            id: tc
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            name: f
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            arguments,
            origin: "completion",
        });
    }
    let usage = body.get("usage").cloned().unwrap_or(Value::Null);
    Ok(LlmResponse {
        id: body
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        content,
        tool_calls,
        reasoning_content: msg
            .get("reasoning_content")
            .and_then(Value::as_str)
            .map(str::to_string),
        thinking_blocks: msg
            .get("thinking_blocks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        responses_reasoning_item: None,
        usage: Usage {
            prompt_tokens: count(&usage, "/prompt_tokens"),
            completion_tokens: count(&usage, "/completion_tokens"),
            cache_read_tokens: count(&usage, "/prompt_tokens_details/cached_tokens"),
            cache_write_tokens: count(&usage, "/cache_creation_input_tokens"),
            reasoning_tokens: count(&usage, "/completion_tokens_details/reasoning_tokens"),
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

    fn cfg(v: Value) -> LlmConfig {
        LlmConfig::from_json(&v).unwrap()
    }

    fn msgs() -> Vec<Value> {
        vec![
            json!({"role": "system", "content": [{"type": "text", "text": "SYS"}]}),
            json!({"role": "user", "content": [{"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}),
        ]
    }

    #[test]
    fn default_model_parameters_match_capture() {
        let c = cfg(json!({"model": "openai/fake-model", "base_url": "http://x/v1"}));
        let tools = vec![json!({"type": "function", "function": {"name": "finish"}})];
        let (body, headers) = build_body(
            &c,
            &route(&c),
            &LlmRequest {
                messages: msgs(),
                tools: tools.clone(),
            },
            None,
        );
        assert_eq!(
            body,
            json!({"model": "fake-model", "messages": [
                {"role": "system", "content": [{"type": "text", "text": "SYS"}]},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                "tools": tools, "temperature": 0.0, "top_p": 1.0})
        );
        assert!(headers.is_empty());
        let (body, _) = build_body(
            &c,
            &route(&c),
            &LlmRequest {
                messages: msgs(),
                tools: vec![],
            },
            Some(1.0),
        );
        assert!(body.get("tools").is_none());
        assert_eq!(body["temperature"], json!(1.0));
    }

    #[test]
    fn vision_model_keeps_images_and_gets_max_tokens() {
        let c = cfg(json!({"model": "openai/gpt-4o"}));
        let (body, _) = build_body(
            &c,
            &route(&c),
            &LlmRequest {
                messages: msgs(),
                tools: vec![],
            },
            None,
        );
        assert_eq!(body["max_completion_tokens"], json!(16384));
        assert_eq!(body["messages"][1]["content"][1]["type"], "image_url");
    }

    #[test]
    fn o3_mini_gets_reasoning_effort_and_user_system_message() {
        let c = cfg(json!({"model": "openai/o3-mini"}));
        let (body, _) = build_body(
            &c,
            &route(&c),
            &LlmRequest {
                messages: msgs(),
                tools: vec![],
            },
            None,
        );
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "model",
                "messages",
                "max_completion_tokens",
                "reasoning_effort"
            ]
        );
        assert_eq!(body["max_completion_tokens"], json!(100000));
        assert_eq!(body["reasoning_effort"], "high");
        assert_eq!(body["messages"][0]["role"], "user");
    }

    #[test]
    fn claude_45_via_proxy_gets_thinking_and_cache_markers() {
        let c = cfg(
            json!({"model": "litellm_proxy/anthropic/claude-sonnet-4-5-20250929", "base_url": "http://x"}),
        );
        let messages = vec![
            json!({"role": "system", "content": [{"type": "text", "text": "SYS"}]}),
            json!({"role": "user", "content": [{"type": "text", "text": "hi"}]}),
            json!({"role": "assistant", "content": [{"type": "text", "text": "ok"}], "tool_calls": []}),
            json!({"content": [{"type": "text", "text": "out"}], "role": "tool", "tool_call_id": "c1", "name": "terminal"}),
        ];
        let (body, headers) = build_body(
            &c,
            &route(&c),
            &LlmRequest {
                messages,
                tools: vec![],
            },
            None,
        );
        assert_eq!(body["max_completion_tokens"], json!(64000));
        assert_eq!(body["max_tokens"], json!(64000));
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": 200000})
        );
        assert!(body.get("temperature").is_none() && body.get("top_p").is_none());
        assert_eq!(
            headers,
            vec![(
                "anthropic-beta".to_string(),
                INTERLEAVED_THINKING_BETA.to_string()
            )]
        );
        assert_eq!(
            body["messages"][0]["content"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert!(
            body["messages"][1]["content"][0]
                .get("cache_control")
                .is_none()
        );
        let tool = body["messages"][3].as_object().unwrap();
        assert_eq!(
            tool.keys().collect::<Vec<_>>(),
            ["content", "role", "cache_control", "tool_call_id", "name"]
        );
        assert!(tool["content"][0].get("cache_control").is_none());
    }

    #[test]
    fn optional_parameters_only_when_set() {
        let c = cfg(
            json!({"model": "openai/fake-model", "top_k": 5, "seed": 7, "max_output_tokens": 100, "temperature": 0.3,
            "top_p": 0.9, "litellm_extra_body": {"return_token_ids": true}, "extra_headers": {"X-A": "b"}}),
        );
        let (body, headers) = build_body(
            &c,
            &route(&c),
            &LlmRequest {
                messages: msgs(),
                tools: vec![],
            },
            None,
        );
        assert_eq!(body["top_k"], json!(5.0));
        assert_eq!(body["seed"], json!(7));
        assert_eq!(body["max_completion_tokens"], json!(100));
        assert_eq!(body["temperature"], json!(0.3));
        assert_eq!(body["top_p"], json!(0.9));
        assert_eq!(body["return_token_ids"], json!(true));
        assert_eq!(headers, vec![("x-a".to_string(), "b".to_string())]);
        let c = cfg(json!({"model": "deepseek/deepseek-chat"}));
        let (body, _) = build_body(
            &c,
            &route(&c),
            &LlmRequest {
                messages: msgs(),
                tools: vec![],
            },
            None,
        );
        assert_eq!(body["messages"][1]["content"], json!("hi"));
    }

    #[test]
    fn parses_tool_calls_and_usage() {
        let r = parse_response(&json!({"id": "chatcmpl-1", "choices": [{"message": {"role": "assistant", "content": "ok",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "terminal", "arguments": "{\"command\": \"ls\"}"}},
                           {"id": "c2", "type": "custom", "function": {"name": "x", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 3},
                      "completion_tokens_details": {"reasoning_tokens": 2}}}))
        .unwrap();
        assert_eq!(r.id, "chatcmpl-1");
        assert_eq!(r.content.as_deref(), Some("ok"));
        assert_eq!(
            r.tool_calls,
            vec![ToolCall {
                id: "c1".into(),
                name: "terminal".into(),
                arguments: "{\"command\": \"ls\"}".into(),
                origin: "completion"
            }]
        );
        assert_eq!(
            r.usage,
            Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                cache_read_tokens: 3,
                cache_write_tokens: 0,
                reasoning_tokens: 2
            }
        );
        let r = parse_response(&json!({"id": "x", "choices": [{"message": {"content": null, "reasoning_content": "hmm"}}]})).unwrap();
        assert_eq!(r.content, None);
        assert_eq!(r.reasoning_content.as_deref(), Some("hmm"));
        assert_eq!(
            parse_response(&json!({"id": "x", "choices": []}))
                .unwrap_err()
                .code,
            "LLMNoResponseError"
        );
    }
}
