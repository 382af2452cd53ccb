//! OpenAI Responses API wire format, used for `gpt-5*` and `codex-mini-latest`
//! (`llm-captures/responses-gpt-5-mini-step1.json`).

use serde_json::{Map, Value, json};

use super::config::LlmConfig;
use super::error::LlmError;
use super::model::{ModelFeatures, Route};
use super::{LlmRequest, LlmResponse, ToolCall, Usage, chat::count};

/// Separator between system texts in `instructions`.
const INSTRUCTIONS_SEPARATOR: &str = "\n\n---\n\n";

/// Function-call ids carry the `fc` prefix on this API.
fn fc_id(id: &str) -> String {
    if id.starts_with("fc") {
        id.to_string()
    } else {
        format!("fc_{id}")
    }
}

fn texts(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) => vec![s.clone()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The Responses body for `req`.
pub fn build_body(cfg: &LlmConfig, route: &Route, req: &LlmRequest) -> Value {
    let features = ModelFeatures::of(cfg);
    let mut instructions: Vec<String> = Vec::new();
    let mut input: Vec<Value> = Vec::new();
    for m in &req.messages {
        let content = m.get("content").unwrap_or(&Value::Null);
        match m.get("role").and_then(Value::as_str).unwrap_or("user") {
            "system" => instructions.push(texts(content).join("\n")),
            "assistant" => {
                if let Some(item) = m.get("responses_reasoning_item").filter(|v| v.is_object()) {
                    let summary: Vec<Value> = item
                        .get("summary")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|s| json!({"type": "summary_text", "text": s}))
                        .collect();
                    let mut r = json!({"type": "reasoning", "id": item["id"], "summary": summary});
                    if let Some(enc) = item.get("encrypted_content").filter(|v| !v.is_null()) {
                        r["encrypted_content"] = enc.clone();
                    }
                    input.push(r);
                }
                let text: Vec<Value> = texts(content)
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .map(|t| json!({"type": "output_text", "text": t}))
                    .collect();
                if !text.is_empty() {
                    input.push(json!({"type": "message", "role": "assistant", "content": text}));
                }
                for tc in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let id = fc_id(tc.get("id").and_then(Value::as_str).unwrap_or_default());
                    input.push(json!({"type": "function_call", "id": id, "call_id": id,
                        "name": tc.pointer("/function/name").cloned().unwrap_or(json!("")),
                        "arguments": tc.pointer("/function/arguments").cloned().unwrap_or(json!("{}"))}));
                }
            }
            "tool" => {
                let call_id = fc_id(
                    m.get("tool_call_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                );
                for t in texts(content) {
                    input.push(
                        json!({"type": "function_call_output", "call_id": call_id, "output": t}),
                    );
                }
            }
            _ => {
                let mut parts: Vec<Value> = Vec::new();
                if let Value::Array(ps) = content {
                    for p in ps {
                        match p.get("type").and_then(Value::as_str) {
                            Some("text") => parts.push(json!({"type": "input_text", "text": p["text"]})),
                            Some("image_url") if features.vision => {
                                parts.push(json!({"type": "input_image", "image_url": p.pointer("/image_url/url").cloned().unwrap_or(Value::Null)}))
                            }
                            _ => {}
                        }
                    }
                } else if let Value::String(s) = content {
                    parts.push(json!({"type": "input_text", "text": s}));
                }
                input.push(json!({"type": "message", "role": "user", "content": parts}));
            }
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(route.wire_model));
    body.insert("input".into(), Value::Array(input));
    body.insert("include".into(), json!(["reasoning.encrypted_content"]));
    if !instructions.is_empty() {
        body.insert(
            "instructions".into(),
            json!(instructions.join(INSTRUCTIONS_SEPARATOR)),
        );
    }
    if let Some(max) = cfg.max_output_tokens.or(features.default_max_output) {
        body.insert("max_output_tokens".into(), json!(max));
    }
    let mut reasoning = Map::new();
    if let Some(e) = &cfg.reasoning_effort {
        reasoning.insert("effort".into(), json!(e));
    }
    if let Some(s) = &cfg.reasoning_summary {
        reasoning.insert("summary".into(), json!(s));
    }
    if !reasoning.is_empty() {
        body.insert("reasoning".into(), Value::Object(reasoning));
    }
    body.insert("store".into(), json!(false));
    body.insert("temperature".into(), json!(1.0));
    body.insert("tool_choice".into(), json!("auto"));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let f = t.get("function").unwrap_or(t);
                json!({"type": "function", "name": f["name"], "description": f["description"], "parameters": f["parameters"], "strict": false})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    for (k, v) in &cfg.litellm_extra_body {
        body.insert(k.clone(), v.clone());
    }
    Value::Object(body)
}

/// Parses a Responses reply.
pub fn parse_response(body: &Value) -> Result<LlmResponse, LlmError> {
    let Some(output) = body.get("output").and_then(Value::as_array) else {
        return Err(LlmError::no_response(format!(
            "Responses reply without output: {body}"
        )));
    };
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    let mut reasoning_item = None;
    for item in output {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for c in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = c.get("text").and_then(Value::as_str) {
                        text.get_or_insert_with(String::new).push_str(t);
                    }
                }
            }
            Some("function_call") => tool_calls.push(ToolCall {
                id: item
                    .get("call_id")
                    .or_else(|| item.get("id"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                name: item
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                arguments: item
                    .get("arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("{}")
                    .to_string(),
                origin: "responses",
            }),
            Some("reasoning") => {
                let summary: Vec<Value> = item
                    .get("summary")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.get("text").and_then(Value::as_str).map(|t| json!(t)))
                    .collect();
                let content = item.get("content").and_then(Value::as_array).map(|cs| {
                    Value::Array(
                        cs.iter()
                            .filter_map(|c| c.get("text").and_then(Value::as_str).map(|t| json!(t)))
                            .collect(),
                    )
                });
                reasoning_item = Some(json!({
                    "id": item.get("id").cloned().unwrap_or(Value::Null),
                    "summary": summary,
                    "content": content.unwrap_or(Value::Null),
                    "encrypted_content": item.get("encrypted_content").cloned().unwrap_or(Value::Null),
                    "status": item.get("status").cloned().unwrap_or(Value::Null),
                }));
            }
            _ => {}
        }
    }
    let usage = body.get("usage").cloned().unwrap_or(Value::Null);
    Ok(LlmResponse {
        id: body
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        content: text,
        tool_calls,
        reasoning_content: None,
        thinking_blocks: Vec::new(),
        responses_reasoning_item: reasoning_item,
        usage: Usage {
            prompt_tokens: count(&usage, "/input_tokens"),
            completion_tokens: count(&usage, "/output_tokens"),
            cache_read_tokens: count(&usage, "/input_tokens_details/cached_tokens"),
            cache_write_tokens: 0,
            reasoning_tokens: count(&usage, "/output_tokens_details/reasoning_tokens"),
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
    fn body_matches_capture() {
        let cfg =
            LlmConfig::from_json(&json!({"model": "openai/gpt-5-mini", "base_url": "http://x/v1"}))
                .unwrap();
        let messages = vec![
            json!({"role": "system", "content": [{"type": "text", "text": "SYS"}]}),
            json!({"role": "user", "content": [{"type": "text", "text": "hi"}]}),
            json!({"role": "assistant", "content": [{"type": "text", "text": "ok"}], "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "terminal", "arguments": "{}"}}]}),
            json!({"role": "tool", "content": [{"type": "text", "text": "out"}], "tool_call_id": "call_1", "name": "terminal"}),
        ];
        let tools = vec![
            json!({"type": "function", "function": {"name": "finish", "description": "d", "parameters": {"type": "object"}}}),
        ];
        let body = build_body(&cfg, &route(&cfg), &LlmRequest { messages, tools });
        assert_eq!(
            body,
            json!({
                "model": "gpt-5-mini",
                "input": [
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
                    {"type": "function_call", "id": "fc_call_1", "call_id": "fc_call_1", "name": "terminal", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "fc_call_1", "output": "out"}
                ],
                "include": ["reasoning.encrypted_content"],
                "instructions": "SYS",
                "max_output_tokens": 128000,
                "reasoning": {"effort": "high"},
                "store": false,
                "temperature": 1.0,
                "tool_choice": "auto",
                "tools": [{"type": "function", "name": "finish", "description": "d", "parameters": {"type": "object"}, "strict": false}]
            })
        );
    }

    #[test]
    fn parses_output_items() {
        let r = parse_response(&json!({"id": "resp_1", "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "s"}], "encrypted_content": "enc"},
            {"type": "message", "content": [{"type": "output_text", "text": "ok"}]},
            {"type": "function_call", "id": "fc_call_2", "call_id": "call_2", "name": "finish", "arguments": "{\"message\": \"done\"}"}],
            "usage": {"input_tokens": 100, "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3}}}))
        .unwrap();
        assert_eq!(r.content.as_deref(), Some("ok"));
        assert_eq!(r.tool_calls[0].id, "call_2");
        assert_eq!(r.tool_calls[0].origin, "responses");
        assert_eq!(
            r.responses_reasoning_item.as_ref().unwrap()["encrypted_content"],
            "enc"
        );
        assert_eq!(r.usage.reasoning_tokens, 3);
    }
}
