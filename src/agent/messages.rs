//! From the event log to LLM messages (agent-behaviour §3.1): the view (condensations applied,
//! non-LLM events dropped, unmatched actions/observations hidden) and the conversion of each
//! event to Chat Completions messages, in log order, byte-compatible with `llm-captures/`.

use std::borrow::{Borrow, Cow};
use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::tools::{terminal, truncate_middle};

/// Text part prepended to the result of a failed tool.
pub const ERROR_HEADER: &str = "[An error occurred during execution.]\n";
/// Longest single text part sent to the LLM.
const MAX_PART_CHARS: usize = 50_000;
const PART_CLIP_NOTICE: &str = "<response clipped><NOTE>Due to the max output limit, only part of this content has been shown to you.</NOTE>";

/// Kinds the LLM sees.
const LLM_KINDS: &[&str] = &[
    "SystemPromptEvent",
    "MessageEvent",
    "ActionEvent",
    "ObservationEvent",
    "AgentErrorEvent",
    "UserRejectObservation",
];
/// Kinds that answer a tool call.
const OBSERVATION_KINDS: &[&str] = &[
    "ObservationEvent",
    "AgentErrorEvent",
    "UserRejectObservation",
];

fn kind(e: &Value) -> &str {
    e.get("kind").and_then(Value::as_str).unwrap_or_default()
}

fn str_field<'a>(e: &'a Value, k: &str) -> &'a str {
    e.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// The LLM view of a log (§3.1.1). The synthetic summary appears as a
/// `{"kind":"CondensationSummaryEvent","source":"environment","summary":…}` object.
pub fn view(events: &[Value]) -> Vec<Value> {
    view_refs(events).into_iter().map(Cow::into_owned).collect()
}

/// [`view`] borrowing the log's events instead of copying them (the agent loop builds a view
/// every step; copying the whole log, system prompt and tools included, was most of a step's
/// CPU).
fn view_refs(events: &[Value]) -> Vec<Cow<'_, Value>> {
    let mut forgotten: HashSet<&str> = HashSet::new();
    let mut latest_summary: Option<(String, usize)> = None;
    for e in events.iter().filter(|e| kind(e) == "Condensation") {
        for id in e
            .get("forgotten_event_ids")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            forgotten.insert(id);
        }
        latest_summary = match (
            e.get("summary").and_then(Value::as_str),
            e.get("summary_offset").and_then(Value::as_u64),
        ) {
            (Some(s), Some(o)) => Some((s.to_string(), o as usize)),
            _ => None,
        };
    }
    // A forgotten action forgets its whole batch.
    let forgotten_batches: HashSet<&str> = events
        .iter()
        .filter(|e| kind(e) == "ActionEvent" && forgotten.contains(str_field(e, "id")))
        .filter_map(|e| e.get("llm_response_id").and_then(Value::as_str))
        .collect();
    let mut kept: Vec<Cow<'_, Value>> = events
        .iter()
        .filter(|e| LLM_KINDS.contains(&kind(e)))
        .filter(|e| !forgotten.contains(str_field(e, "id")))
        .filter(|e| {
            !(kind(e) == "ActionEvent"
                && e.get("llm_response_id")
                    .and_then(Value::as_str)
                    .is_some_and(|r| forgotten_batches.contains(r)))
        })
        .map(Cow::Borrowed)
        .collect();
    if let Some((summary, offset)) = latest_summary {
        let at = offset.min(kept.len());
        kept.insert(
            at,
            Cow::Owned(json!({"kind": "CondensationSummaryEvent", "source": "environment", "summary": summary})),
        );
    }
    let action_calls: HashSet<String> = kept
        .iter()
        .filter(|e| kind(e) == "ActionEvent")
        .map(|e| str_field(e, "tool_call_id").to_string())
        .collect();
    let answered: HashSet<String> = kept
        .iter()
        .filter(|e| OBSERVATION_KINDS.contains(&kind(e)))
        .map(|e| str_field(e, "tool_call_id").to_string())
        .collect();
    kept.retain(|e| match kind(e) {
        "ActionEvent" => answered.contains(str_field(e, "tool_call_id")),
        k if OBSERVATION_KINDS.contains(&k) => action_calls.contains(str_field(e, "tool_call_id")),
        _ => true,
    });
    kept
}

/// Event content parts → Chat Completions parts (`cache_prompt` dropped, images as `image_url`).
fn parts(content: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in content.as_array().into_iter().flatten() {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = p.get("text").and_then(Value::as_str).unwrap_or_default();
                let text = match truncate_middle(text, MAX_PART_CHARS, PART_CLIP_NOTICE) {
                    Some((h, t)) => format!("{h}{PART_CLIP_NOTICE}{t}"),
                    None => text.to_string(),
                };
                out.push(json!({"type": "text", "text": text}));
            }
            Some("image") => {
                for url in p
                    .get("image_urls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    out.push(json!({"type": "image_url", "image_url": {"url": url}}));
                }
            }
            _ => {}
        }
    }
    out
}

fn text(t: &str) -> Value {
    json!({"type": "text", "text": t})
}

/// The LLM content of an observation (tool-specific rendering, error header when `is_error`).
pub fn observation_content(observation: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    if observation
        .get("is_error")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        out.push(text(ERROR_HEADER));
    }
    match kind(observation) {
        "TerminalObservation" => out.push(text(&terminal::llm_text(observation))),
        _ => out.extend(parts(observation.get("content").unwrap_or(&Value::Null))),
    }
    out
}

fn tool_message(content: Vec<Value>, tool_call_id: &str, name: &str) -> Value {
    json!({"content": content, "role": "tool", "tool_call_id": tool_call_id, "name": name})
}

/// Adds the reasoning fields the providers may want back (stripped per provider).
fn add_reasoning(msg: &mut Map<String, Value>, source: &Value) {
    if let Some(r) = source.get("reasoning_content").filter(|v| v.is_string()) {
        msg.insert("reasoning_content".into(), r.clone());
    }
    if let Some(tb) = source
        .get("thinking_blocks")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        msg.insert("thinking_blocks".into(), Value::Array(tb.clone()));
    }
    if let Some(item) = source
        .get("responses_reasoning_item")
        .filter(|v| v.is_object())
    {
        msg.insert("responses_reasoning_item".into(), item.clone());
    }
}

/// Converts a view into Chat Completions messages (§3.1.2).
pub fn to_messages(view: &[Value]) -> Vec<Value> {
    convert(view)
}

fn convert<V: Borrow<Value>>(view: &[V]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < view.len() {
        let e: &Value = view[i].borrow();
        match kind(e) {
            "SystemPromptEvent" => {
                let prompt = e
                    .pointer("/system_prompt/text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.push(json!({"content": [text(prompt)], "role": "system"}));
            }
            "MessageEvent" => {
                let m = e.get("llm_message").cloned().unwrap_or(Value::Null);
                let mut content = parts(m.get("content").unwrap_or(&Value::Null));
                content.extend(parts(e.get("extended_content").unwrap_or(&Value::Null)));
                let mut msg = Map::new();
                msg.insert("content".into(), Value::Array(content));
                msg.insert(
                    "role".into(),
                    m.get("role").cloned().unwrap_or(json!("user")),
                );
                add_reasoning(&mut msg, &m);
                out.push(Value::Object(msg));
            }
            "ActionEvent" => {
                let response_id = e.get("llm_response_id").cloned().unwrap_or(Value::Null);
                let mut calls = Vec::new();
                let mut j = i;
                while j < view.len()
                    && kind(view[j].borrow()) == "ActionEvent"
                    && view[j]
                        .borrow()
                        .get("llm_response_id")
                        .cloned()
                        .unwrap_or(Value::Null)
                        == response_id
                {
                    let tc = &view[j].borrow()["tool_call"];
                    calls.push(json!({"id": tc["id"], "type": "function", "function": {"name": tc["name"], "arguments": tc["arguments"]}}));
                    j += 1;
                }
                let thought: Vec<Value> = parts(e.get("thought").unwrap_or(&Value::Null))
                    .into_iter()
                    .filter(|p| {
                        p.get("type").and_then(Value::as_str) != Some("text")
                            || !str_field(p, "text").trim().is_empty()
                    })
                    .collect();
                let mut msg = Map::new();
                if !thought.is_empty() {
                    msg.insert("content".into(), Value::Array(thought));
                }
                msg.insert("role".into(), json!("assistant"));
                msg.insert("tool_calls".into(), Value::Array(calls));
                add_reasoning(&mut msg, e);
                out.push(Value::Object(msg));
                i = j;
                continue;
            }
            "ObservationEvent" => {
                out.push(tool_message(
                    observation_content(e.get("observation").unwrap_or(&Value::Null)),
                    str_field(e, "tool_call_id"),
                    str_field(e, "tool_name"),
                ));
            }
            "AgentErrorEvent" => {
                out.push(tool_message(
                    vec![text(str_field(e, "error"))],
                    str_field(e, "tool_call_id"),
                    str_field(e, "tool_name"),
                ));
            }
            "UserRejectObservation" => {
                let reason = format!("Action rejected: {}", str_field(e, "rejection_reason"));
                out.push(tool_message(
                    vec![text(&reason)],
                    str_field(e, "tool_call_id"),
                    str_field(e, "tool_name"),
                ));
            }
            "CondensationSummaryEvent" => {
                out.push(json!({"content": [text(str_field(e, "summary"))], "role": "user"}))
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// `to_messages(view(events))`.
pub fn build_messages(events: &[Value]) -> Vec<Value> {
    convert(&view_refs(events))
}

/// The `tools` array recorded in the log's SystemPromptEvent.
pub fn tools_from_log(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .find(|e| kind(e) == "SystemPromptEvent")
        .and_then(|e| e.get("tools"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::events;
    use crate::llm::{LlmResponse, ToolCall};
    use crate::tools::text_part;

    fn resp(id: &str, content: Option<&str>, calls: &[(&str, &str, &str)]) -> LlmResponse {
        LlmResponse {
            id: id.into(),
            content: content.map(str::to_string),
            tool_calls: calls
                .iter()
                .map(|(i, n, a)| ToolCall {
                    id: i.to_string(),
                    name: n.to_string(),
                    arguments: a.to_string(),
                    origin: "completion",
                })
                .collect(),
            ..LlmResponse::default()
        }
    }

    fn terminal_obs(out: &str, wd: &str) -> Value {
        json!({"kind": "TerminalObservation", "content": [text_part(out)], "is_error": false, "command": "x", "exit_code": null,
            "timeout": false, "metadata": {"exit_code": 0, "pid": -1, "username": "u", "hostname": "h", "working_dir": wd,
            "py_interpreter_path": "/py", "prefix": "", "suffix": "\n[The command completed with exit code 0.]"}, "full_output_save_dir": null})
    }

    #[test]
    fn basic_step1_matches_capture() {
        let sp = events::system_prompt_event("SYS", &[json!({"type": "function"})]);
        let user =
            events::user_message_event(vec![text_part("please do the task")], vec![], vec![]);
        let r = resp(
            "chatcmpl-1",
            Some("ok"),
            &[(
                "call_2_0",
                "terminal",
                "{\"command\": \"echo hello-from-agent\", \"security_risk\": \"LOW\"}",
            )],
        );
        let action = events::action_event(
            &r,
            &r.tool_calls[0],
            true,
            json!({"kind": "TerminalAction"}),
            "LOW",
        );
        let obs = events::observation_event(&action, terminal_obs("hello-from-agent", "/ws"));
        let log = vec![
            sp,
            user,
            json!({"kind": "ConversationStateUpdateEvent", "key": "stats"}),
            action,
            obs,
        ];
        assert_eq!(
            build_messages(&log),
            vec![
                json!({"content": [{"type": "text", "text": "SYS"}], "role": "system"}),
                json!({"content": [{"type": "text", "text": "please do the task"}], "role": "user"}),
                json!({"content": [{"type": "text", "text": "ok"}], "role": "assistant", "tool_calls": [{"id": "call_2_0", "type": "function",
                    "function": {"name": "terminal", "arguments": "{\"command\": \"echo hello-from-agent\", \"security_risk\": \"LOW\"}"}}]}),
                json!({"content": [{"type": "text", "text": "hello-from-agent\n[The command completed with exit code 0.]\n[Current working directory: /ws]\n[Python interpreter: /py]\n[Command finished with exit code 0]"}],
                    "role": "tool", "tool_call_id": "call_2_0", "name": "terminal"}),
            ]
        );
        // key order as captured
        let msgs = build_messages(&log);
        assert_eq!(
            msgs[3].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["content", "role", "tool_call_id", "name"]
        );
        assert_eq!(
            msgs[2].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["content", "role", "tool_calls"]
        );
    }

    #[test]
    fn parallel_calls_and_interleaved_errors() {
        let r = resp(
            "r1",
            Some("mixed"),
            &[
                ("c0", "terminal", "{}"),
                ("c1", "nonexistent_tool", "{}"),
                ("c2", "terminal", "{bad json"),
                ("c3", "terminal", "{}"),
            ],
        );
        let a0 = events::action_event(
            &r,
            &r.tool_calls[0],
            true,
            json!({"kind": "TerminalAction"}),
            "LOW",
        );
        let a1 = events::action_event(&r, &r.tool_calls[1], false, Value::Null, "UNKNOWN");
        let e1 = events::agent_error_event(
            "nonexistent_tool",
            "c1",
            "Tool 'nonexistent_tool' not found.",
        );
        let a2 = events::action_event(&r, &r.tool_calls[2], false, Value::Null, "UNKNOWN");
        let e2 = events::agent_error_event("terminal", "c2", "Error validating args");
        let a3 = events::action_event(
            &r,
            &r.tool_calls[3],
            false,
            json!({"kind": "TerminalAction"}),
            "LOW",
        );
        let o0 = events::observation_event(&a0, terminal_obs("A", "/w"));
        let o3 = events::observation_event(&a3, terminal_obs("B", "/w"));
        let msgs = build_messages(&[a0, a1, e1, a2, e2, a3, o0, o3]);
        let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(
            roles,
            [
                "assistant",
                "tool",
                "assistant",
                "tool",
                "assistant",
                "tool",
                "tool"
            ]
        );
        assert_eq!(msgs[0]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(
            msgs[0]["content"],
            json!([{"type": "text", "text": "mixed"}])
        );
        assert!(msgs[2].get("content").is_none());
        assert_eq!(
            msgs[2]["tool_calls"][0]["function"]["arguments"],
            "{bad json"
        );
        assert_eq!(
            msgs[1],
            json!({"content": [{"type": "text", "text": "Tool 'nonexistent_tool' not found."}], "role": "tool", "tool_call_id": "c1", "name": "nonexistent_tool"})
        );
    }

    #[test]
    fn pending_actions_are_hidden_and_rejections_shown() {
        let r = resp("r1", Some("doing risky"), &[("c0", "terminal", "{}")]);
        let a0 = events::action_event(
            &r,
            &r.tool_calls[0],
            true,
            json!({"kind": "TerminalAction"}),
            "HIGH",
        );
        let user = events::user_message_event(vec![text_part("hi")], vec![], vec![]);
        assert_eq!(build_messages(&[user.clone(), a0.clone()]).len(), 1);
        let rej = events::user_reject_event(&a0, "not allowed here");
        let msgs = build_messages(&[user, a0, rej]);
        assert_eq!(
            msgs[2]["content"],
            json!([{"type": "text", "text": "Action rejected: not allowed here"}])
        );
    }

    #[test]
    fn message_replies_errors_images_and_context() {
        let empty = events::agent_message_event(&resp("r", Some(""), &[]));
        let reasoning = events::agent_message_event(&LlmResponse {
            id: "r2".into(),
            reasoning_content: Some("hmm".into()),
            ..LlmResponse::default()
        });
        let msgs = to_messages(&[empty, reasoning]);
        assert_eq!(
            msgs[0],
            json!({"content": [{"type": "text", "text": ""}], "role": "assistant"})
        );
        assert_eq!(
            msgs[1],
            json!({"content": [], "role": "assistant", "reasoning_content": "hmm"})
        );

        let user = events::user_message_event(
            vec![
                text_part("look"),
                json!({"cache_prompt": false, "type": "image", "image_urls": ["data:image/png;base64,AA"]}),
            ],
            vec![text_part("<EXTRA_INFO>x</EXTRA_INFO>")],
            vec![],
        );
        assert_eq!(
            to_messages(&[user])[0],
            json!({"content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                {"type": "text", "text": "<EXTRA_INFO>x</EXTRA_INFO>"}], "role": "user"})
        );
        let err = json!({"kind": "FileEditorObservation", "content": [text_part("No edit history found for /a.")], "is_error": true});
        assert_eq!(
            observation_content(&err),
            vec![text(ERROR_HEADER), text("No edit history found for /a.")]
        );
    }

    #[test]
    fn condensation_forgets_and_inserts_summary() {
        let sp = events::system_prompt_event("SYS", &[]);
        let user = events::user_message_event(vec![text_part("task")], vec![], vec![]);
        let mut log = vec![sp, user];
        let mut ids = Vec::new();
        for n in 0..3 {
            let r = resp(
                &format!("r{n}"),
                None,
                &[(&format!("c{n}"), "terminal", "{}")],
            );
            let a = events::action_event(
                &r,
                &r.tool_calls[0],
                true,
                json!({"kind": "TerminalAction"}),
                "LOW",
            );
            let o = events::observation_event(&a, terminal_obs(&format!("out{n}"), "/w"));
            ids.push(a["id"].as_str().unwrap().to_string());
            if n == 1 {
                ids.push(o["id"].as_str().unwrap().to_string());
            }
            log.push(a);
            log.push(o);
        }
        // forget action 0 (its observation becomes orphaned) and the pair 1
        let forgotten = vec![ids[0].clone(), ids[1].clone(), ids[2].clone()];
        log.push(json!({"kind": "Condensation", "id": "cd", "forgotten_event_ids": forgotten, "summary": "SUMMARY", "summary_offset": 2}));
        let msgs = build_messages(&log);
        let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "user", "assistant", "tool"]);
        assert_eq!(msgs[2]["content"][0]["text"], "SUMMARY");
        assert_eq!(msgs[3]["tool_calls"][0]["id"], "c2");
    }
}
