//! Constructors for the LLM-convertible events the agent emits, as wire JSON with the
//! reference's key order (EVENTS.md §2): fresh dashed UUID4 `id`, naive local `timestamp`.

use serde_json::{Value, json};

use crate::llm::{LlmResponse, ToolCall};
use crate::tools::text_part;

/// A fresh event id (dashed UUID4).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Naive local time, microseconds, fraction omitted when zero (`datetime.now().isoformat()`).
pub fn timestamp() -> String {
    let now = chrono::Local::now().naive_local();
    let micros = now.and_utc().timestamp_subsec_micros();
    if micros == 0 {
        now.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        format!("{}.{micros:06}", now.format("%Y-%m-%dT%H:%M:%S"))
    }
}

fn header(kind: &str, source: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("kind".into(), json!(kind));
    m.insert("id".into(), json!(new_id()));
    m.insert("timestamp".into(), json!(timestamp()));
    m.insert("source".into(), json!(source));
    m
}

fn with(mut m: serde_json::Map<String, Value>, fields: Value) -> Value {
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Value::Object(m)
}

/// The `Message` object (EVENTS.md §4.1) with defaults for the fields the agent never sets.
pub fn llm_message(
    role: &str,
    content: Vec<Value>,
    reasoning_content: Option<&str>,
    thinking_blocks: &[Value],
    responses_reasoning_item: Option<&Value>,
) -> Value {
    json!({"role": role, "content": content, "cache_enabled": false, "vision_enabled": false, "function_calling_enabled": false,
        "tool_calls": null, "tool_call_id": null, "name": null, "force_string_serializer": false, "send_reasoning_content": false,
        "reasoning_content": reasoning_content, "thinking_blocks": thinking_blocks, "responses_reasoning_item": responses_reasoning_item})
}

/// `SystemPromptEvent`.
pub fn system_prompt_event(prompt: &str, tools: &[Value]) -> Value {
    with(
        header("SystemPromptEvent", "agent"),
        json!({"system_prompt": text_part(prompt), "tools": tools}),
    )
}

/// A user `MessageEvent` (`content` in event form, `extended_content` text parts from the agent
/// context, names of skills it activated).
pub fn user_message_event(
    content: Vec<Value>,
    extended_content: Vec<Value>,
    activated_skills: Vec<String>,
) -> Value {
    with(
        header("MessageEvent", "user"),
        json!({"llm_message": llm_message("user", content, None, &[], None), "llm_response_id": null,
            "activated_skills": activated_skills, "extended_content": extended_content, "sender": null}),
    )
}

/// The agent `MessageEvent` for a reply without tool calls: one text part if the provider sent
/// text (even empty), else none.
pub fn agent_message_event(resp: &LlmResponse) -> Value {
    let content: Vec<Value> = resp
        .content
        .as_deref()
        .map(|t| vec![text_part(t)])
        .unwrap_or_default();
    with(
        header("MessageEvent", "agent"),
        json!({"llm_message": llm_message("assistant", content, resp.reasoning_content.as_deref(), &resp.thinking_blocks,
                resp.responses_reasoning_item.as_ref()),
            "llm_response_id": resp.id, "activated_skills": [], "extended_content": [], "sender": null}),
    )
}

/// An `ActionEvent`. `first` carries the reply's text and reasoning.
pub fn action_event(
    resp: &LlmResponse,
    call: &ToolCall,
    first: bool,
    action: Value,
    security_risk: &str,
) -> Value {
    let thought: Vec<Value> = match (&resp.content, first) {
        (Some(t), true) if !t.is_empty() => vec![text_part(t)],
        _ => Vec::new(),
    };
    let (reasoning, thinking, item) = if first {
        (
            json!(resp.reasoning_content),
            json!(resp.thinking_blocks),
            json!(resp.responses_reasoning_item),
        )
    } else {
        (Value::Null, json!([]), Value::Null)
    };
    with(
        header("ActionEvent", "agent"),
        json!({"thought": thought, "reasoning_content": reasoning, "thinking_blocks": thinking, "responses_reasoning_item": item,
            "action": action, "tool_name": call.name, "tool_call_id": call.id, "tool_call": call.to_json(),
            "llm_response_id": resp.id, "security_risk": security_risk}),
    )
}

/// An `AgentErrorEvent` for a tool call that could not become an action.
pub fn agent_error_event(tool_name: &str, tool_call_id: &str, error: &str) -> Value {
    with(
        header("AgentErrorEvent", "agent"),
        json!({"tool_name": tool_name, "tool_call_id": tool_call_id, "error": error}),
    )
}

/// The `ObservationEvent` for an executed ActionEvent.
pub fn observation_event(action_event: &Value, observation: Value) -> Value {
    with(
        header("ObservationEvent", "environment"),
        json!({"tool_name": action_event["tool_name"], "tool_call_id": action_event["tool_call_id"], "observation": observation,
            "action_id": action_event["id"]}),
    )
}

/// A `UserRejectObservation` for a rejected pending ActionEvent.
pub fn user_reject_event(action_event: &Value, reason: &str) -> Value {
    with(
        header("UserRejectObservation", "environment"),
        json!({"tool_name": action_event["tool_name"], "tool_call_id": action_event["tool_call_id"], "rejection_reason": reason,
            "action_id": action_event["id"]}),
    )
}

/// A `CondensationRequest` (context window exceeded, the condenser will run next step).
pub fn condensation_request_event() -> Value {
    Value::Object(header("CondensationRequest", "environment"))
}

/// A `ConversationErrorEvent` for an exception that ended a run.
pub fn conversation_error_event(code: &str, detail: &str) -> Value {
    with(
        header("ConversationErrorEvent", "environment"),
        json!({"code": code, "detail": detail}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_formats() {
        let ts = timestamp();
        assert!(
            regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$")
                .unwrap()
                .is_match(&ts),
            "{ts}"
        );
        let id = new_id();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        let e = user_message_event(vec![text_part("hi")], vec![], vec![]);
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "kind",
                "id",
                "timestamp",
                "source",
                "llm_message",
                "llm_response_id",
                "activated_skills",
                "extended_content",
                "sender"
            ]
        );
        let action = json!({"id": "a1", "tool_name": "terminal", "tool_call_id": "c1"});
        let o = observation_event(&action, json!({"kind": "ThinkObservation"}));
        assert_eq!(o["action_id"], "a1");
        assert_eq!(o["source"], "environment");
        let r = user_reject_event(&action, "no");
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "kind",
                "id",
                "timestamp",
                "source",
                "tool_name",
                "tool_call_id",
                "rejection_reason",
                "action_id"
            ]
        );
    }
}
