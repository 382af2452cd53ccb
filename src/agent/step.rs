//! One agent step's pure parts (agent-behaviour §2.4, §3.6, §5): turning an LLM reply into
//! events, finding pending actions, and deciding whether a batch needs confirmation.

use serde_json::{Map, Value};

use super::events;
use crate::llm::{LlmResponse, pyjson};
use crate::tools::{ToolKind, ToolSet, spec};

/// The security risk values, lowest first.
pub const RISKS: [&str; 4] = ["UNKNOWN", "LOW", "MEDIUM", "HIGH"];

/// What the caller needs to know about the tools when handling a reply.
#[derive(Debug, Clone, Copy)]
pub struct ReplyContext<'a> {
    pub tools: &'a ToolSet,
    /// The conversation's `security_analyzer` is the LLMSecurityAnalyzer (then a missing
    /// `security_risk` is an error).
    pub llm_security_analyzer: bool,
}

/// The events made from one LLM reply, in emission order.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyOutcome {
    /// ActionEvents (each invalid one followed by its AgentErrorEvent), or one agent MessageEvent.
    pub events: Vec<Value>,
    /// The ActionEvents with a valid action, in call order (to confirm or execute).
    pub actions: Vec<Value>,
    /// A text reply with non-blank text: the conversation is finished.
    pub finished: bool,
}

/// Why a tool call could not become an action.
fn invalid_call(raw: &str, tool: &str, reason: &str) -> String {
    format!("Error validating args {raw} for tool '{tool}': {reason}")
}

/// Validates one tool call: the action JSON and its risk, or the AgentErrorEvent text.
fn validate_call(
    kind: ToolKind,
    name: &str,
    arguments: &str,
    ctx: &ReplyContext<'_>,
) -> Result<(Value, String), String> {
    let parsed: Value = match serde_json::from_str(arguments) {
        Ok(v) => v,
        Err(e) => {
            let reason = pyjson::json_error(arguments).unwrap_or_else(|| e.to_string());
            return Err(invalid_call(arguments, name, &reason));
        }
    };
    let mut args: Map<String, Value> = match parsed {
        Value::Object(m) => m,
        other => {
            let model = kind.action_kind();
            return Err(invalid_call(
                arguments,
                name,
                &format!(
                    "1 validation error for {model}\n  Input should be a valid dictionary or instance of {model} [type=model_type, input_value={}, input_type={}]",
                    pyjson::repr(&other),
                    pyjson::type_name(&other)
                ),
            ));
        }
    };
    let risk_value = args.remove("security_risk");
    let risk = if kind.is_read_only() {
        "UNKNOWN".to_string()
    } else {
        match risk_value {
            None if ctx.llm_security_analyzer => {
                return Err(invalid_call(
                    arguments,
                    name,
                    &format!("Failed to provide security_risk field in tool '{name}'"),
                ));
            }
            None => "UNKNOWN".to_string(),
            Some(Value::String(s)) if RISKS.contains(&s.as_str()) => s,
            Some(other) => {
                return Err(invalid_call(
                    arguments,
                    name,
                    &format!("{} is not a valid SecurityRisk", pyjson::repr(&other)),
                ));
            }
        }
    };
    let action =
        spec::parse_action(kind, &args).map_err(|reason| invalid_call(arguments, name, &reason))?;
    Ok((action, risk))
}

/// Turns a reply into events (§2.4 steps 4–5, §3.6).
pub fn handle_reply(resp: &LlmResponse, ctx: &ReplyContext<'_>) -> ReplyOutcome {
    if resp.tool_calls.is_empty() {
        let event = events::agent_message_event(resp);
        let finished = resp
            .content
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty());
        return ReplyOutcome {
            events: vec![event],
            actions: Vec::new(),
            finished,
        };
    }
    let mut out = ReplyOutcome {
        events: Vec::new(),
        actions: Vec::new(),
        finished: false,
    };
    for (i, call) in resp.tool_calls.iter().enumerate() {
        let first = i == 0;
        let Some(kind) = ctx.tools.get(&call.name) else {
            let available = ctx
                .tools
                .names()
                .iter()
                .map(|n| pyjson::repr_str(n))
                .collect::<Vec<_>>()
                .join(", ");
            out.events.push(events::action_event(
                resp,
                call,
                first,
                Value::Null,
                "UNKNOWN",
            ));
            out.events.push(events::agent_error_event(
                &call.name,
                &call.id,
                &format!("Tool '{}' not found. Available: [{available}]", call.name),
            ));
            continue;
        };
        match validate_call(kind, &call.name, &call.arguments, ctx) {
            Ok((action, risk)) => {
                let event = events::action_event(resp, call, first, action, &risk);
                out.actions.push(event.clone());
                out.events.push(event);
            }
            Err(error) => {
                out.events.push(events::action_event(
                    resp,
                    call,
                    first,
                    Value::Null,
                    "UNKNOWN",
                ));
                out.events
                    .push(events::agent_error_event(&call.name, &call.id, &error));
            }
        }
    }
    out
}

/// ActionEvents with an action and no ObservationEvent / UserRejectObservation yet, in log order.
pub fn pending_actions(events: &[Value]) -> Vec<Value> {
    let answered: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| {
            matches!(
                e.get("kind").and_then(Value::as_str),
                Some("ObservationEvent" | "UserRejectObservation")
            )
        })
        .filter_map(|e| e.get("action_id").and_then(Value::as_str))
        .collect();
    events
        .iter()
        .filter(|e| e.get("kind").and_then(Value::as_str) == Some("ActionEvent"))
        .filter(|e| e.get("action").is_some_and(|a| !a.is_null()))
        .filter(|e| {
            !e.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| answered.contains(id))
        })
        .cloned()
        .collect()
}

/// Whether an ActionEvent is a `finish` call (its observation finishes the conversation).
pub fn is_finish(action_event: &Value) -> bool {
    action_event.pointer("/action/kind").and_then(Value::as_str) == Some("FinishAction")
}

fn rank(risk: &str) -> usize {
    RISKS.iter().position(|r| *r == risk).unwrap_or(0)
}

/// Whether a batch of valid ActionEvents must wait for confirmation (§5.3), given the
/// `confirmation_policy` and `security_analyzer` JSON of the conversation.
pub fn requires_confirmation(
    policy: &Value,
    security_analyzer: Option<&Value>,
    actions: &[Value],
) -> bool {
    if actions.is_empty() {
        return false;
    }
    if actions.len() == 1
        && matches!(
            actions[0].pointer("/action/kind").and_then(Value::as_str),
            Some("FinishAction" | "ThinkAction")
        )
    {
        return false;
    }
    let analyzer = security_analyzer.is_some_and(|a| !a.is_null());
    let risks: Vec<&str> = actions
        .iter()
        .map(|a| {
            if analyzer {
                a.get("security_risk")
                    .and_then(Value::as_str)
                    .unwrap_or("UNKNOWN")
            } else {
                "UNKNOWN"
            }
        })
        .collect();
    match policy.get("kind").and_then(Value::as_str) {
        Some("AlwaysConfirm") => true,
        Some("ConfirmRisky") => {
            let threshold = policy
                .get("threshold")
                .and_then(Value::as_str)
                .unwrap_or("HIGH");
            let confirm_unknown = policy
                .get("confirm_unknown")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            risks.iter().any(|r| {
                if *r == "UNKNOWN" {
                    confirm_unknown
                } else {
                    rank(r) >= rank(threshold)
                }
            })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolCall;
    use serde_json::json;

    fn tools() -> ToolSet {
        ToolSet::from_agent(
            &json!([{"name": "terminal"}, {"name": "file_editor"}, {"name": "task_tracker"}]),
            None,
        )
        .unwrap()
    }

    fn reply(content: Option<&str>, calls: &[(&str, &str)]) -> LlmResponse {
        LlmResponse {
            id: "chatcmpl-1".into(),
            content: content.map(str::to_string),
            tool_calls: calls
                .iter()
                .enumerate()
                .map(|(i, (n, a))| ToolCall {
                    id: format!("call_{i}"),
                    name: n.to_string(),
                    arguments: a.to_string(),
                    origin: "completion",
                })
                .collect(),
            ..LlmResponse::default()
        }
    }

    fn run(content: Option<&str>, calls: &[(&str, &str)], analyzer: bool) -> ReplyOutcome {
        let t = tools();
        handle_reply(
            &reply(content, calls),
            &ReplyContext {
                tools: &t,
                llm_security_analyzer: analyzer,
            },
        )
    }

    fn strip(e: &Value) -> Value {
        let mut e = e.clone();
        let o = e.as_object_mut().unwrap();
        o.remove("id");
        o.remove("timestamp");
        e
    }

    #[test]
    fn tool_call_becomes_action_event() {
        let out = run(
            Some("Running a command."),
            &[(
                "terminal",
                "{\"command\": \"echo hello-from-agent\", \"security_risk\": \"LOW\"}",
            )],
            false,
        );
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.actions, out.events);
        assert!(!out.finished);
        assert_eq!(
            strip(&out.events[0]),
            json!({"kind": "ActionEvent", "source": "agent",
                "thought": [{"cache_prompt": false, "type": "text", "text": "Running a command."}],
                "reasoning_content": null, "thinking_blocks": [], "responses_reasoning_item": null,
                "action": {"kind": "TerminalAction", "command": "echo hello-from-agent", "is_input": false, "timeout": null, "reset": false},
                "tool_name": "terminal", "tool_call_id": "call_0",
                "tool_call": {"id": "call_0", "name": "terminal", "arguments": "{\"command\": \"echo hello-from-agent\", \"security_risk\": \"LOW\"}", "origin": "completion"},
                "llm_response_id": "chatcmpl-1", "security_risk": "LOW"})
        );
        let out = run(
            None,
            &[(
                "finish",
                "{\"message\": \"bye\", \"security_risk\": \"HIGH\"}",
            )],
            true,
        );
        assert_eq!(out.events[0]["security_risk"], "UNKNOWN");
        assert_eq!(out.events[0]["thought"], json!([]));
        assert_eq!(
            out.events[0]["action"],
            json!({"kind": "FinishAction", "message": "bye"})
        );
    }

    #[test]
    fn invalid_calls_become_agent_errors() {
        let out = run(
            Some("mixed"),
            &[
                (
                    "terminal",
                    "{\"command\": \"echo A\", \"security_risk\": \"LOW\"}",
                ),
                ("nonexistent_tool", "{}"),
                ("terminal", "{bad json"),
                (
                    "terminal",
                    "{\"command\": \"echo B\", \"security_risk\": \"LOW\"}",
                ),
            ],
            false,
        );
        let kinds: Vec<&str> = out
            .events
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "ActionEvent",
                "ActionEvent",
                "AgentErrorEvent",
                "ActionEvent",
                "AgentErrorEvent",
                "ActionEvent"
            ]
        );
        assert_eq!(out.actions.len(), 2);
        assert_eq!(out.events[1]["action"], Value::Null);
        assert_eq!(out.events[1]["thought"], json!([]));
        assert_eq!(
            strip(&out.events[2]),
            json!({"kind": "AgentErrorEvent", "source": "agent", "tool_name": "nonexistent_tool", "tool_call_id": "call_1",
                "error": "Tool 'nonexistent_tool' not found. Available: ['terminal', 'file_editor', 'task_tracker', 'finish', 'think']"})
        );
        assert_eq!(
            out.events[4]["error"],
            "Error validating args {bad json for tool 'terminal': Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
        );
        let out = run(
            None,
            &[(
                "terminal",
                "{\"command\": \"echo a\", \"security_risk\": \"EXTREME\"}",
            )],
            false,
        );
        assert_eq!(
            out.events[1]["error"],
            "Error validating args {\"command\": \"echo a\", \"security_risk\": \"EXTREME\"} for tool 'terminal': 'EXTREME' is not a valid SecurityRisk"
        );
        let out = run(
            None,
            &[("terminal", "{\"command\": \"echo no-risk\"}")],
            false,
        );
        assert_eq!(out.events[0]["security_risk"], "UNKNOWN");
        assert!(out.events[0]["action"].is_object());
        let out = run(
            None,
            &[("terminal", "{\"command\": \"echo no-risk\"}")],
            true,
        );
        assert_eq!(
            out.events[1]["error"],
            "Error validating args {\"command\": \"echo no-risk\"} for tool 'terminal': Failed to provide security_risk field in tool 'terminal'"
        );
        let out = run(None, &[("terminal", "{\"security_risk\": \"LOW\"}")], false);
        assert!(out.events[1]["error"].as_str().unwrap().starts_with(
            "Error validating args {\"security_risk\": \"LOW\"} for tool 'terminal': 1 validation error for TerminalAction\ncommand\n  Field required [type=missing, input_value={}, input_type=dict]"
        ));
    }

    #[test]
    fn text_replies() {
        let out = run(Some("All done."), &[], false);
        assert!(out.finished);
        assert_eq!(out.events[0]["kind"], "MessageEvent");
        assert_eq!(out.events[0]["source"], "agent");
        assert_eq!(out.events[0]["llm_response_id"], "chatcmpl-1");
        assert_eq!(
            out.events[0]["llm_message"]["content"],
            json!([{"cache_prompt": false, "type": "text", "text": "All done."}])
        );
        assert!(!run(Some("  "), &[], false).finished);
        let out = run(None, &[], false);
        assert!(!out.finished);
        assert_eq!(out.events[0]["llm_message"]["content"], json!([]));
    }

    #[test]
    fn pending_and_finish() {
        let out = run(
            None,
            &[
                ("terminal", "{\"command\": \"ls\"}"),
                ("finish", "{\"message\": \"m\"}"),
            ],
            false,
        );
        let mut log = out.events.clone();
        assert_eq!(pending_actions(&log).len(), 2);
        log.push(crate::agent::events::observation_event(
            &out.actions[0],
            json!({"kind": "TerminalObservation"}),
        ));
        let pending = pending_actions(&log);
        assert_eq!(pending.len(), 1);
        assert!(is_finish(&pending[0]));
        log.push(crate::agent::events::user_reject_event(&pending[0], "no"));
        assert!(pending_actions(&log).is_empty());
    }

    #[test]
    fn confirmation_policies() {
        let action = |kind: &str, risk: &str| json!({"kind": "ActionEvent", "action": {"kind": kind}, "security_risk": risk});
        let low = action("TerminalAction", "LOW");
        let high = action("TerminalAction", "HIGH");
        let medium = action("TerminalAction", "MEDIUM");
        let never = json!({"kind": "NeverConfirm"});
        let always = json!({"kind": "AlwaysConfirm"});
        let risky = json!({"kind": "ConfirmRisky", "threshold": "HIGH", "confirm_unknown": true});
        let analyzer = json!({"kind": "LLMSecurityAnalyzer"});
        assert!(!requires_confirmation(
            &never,
            None,
            std::slice::from_ref(&high)
        ));
        assert!(requires_confirmation(
            &always,
            None,
            std::slice::from_ref(&low)
        ));
        assert!(!requires_confirmation(&always, None, &[]));
        assert!(!requires_confirmation(
            &always,
            None,
            &[action("FinishAction", "UNKNOWN")]
        ));
        assert!(!requires_confirmation(
            &always,
            None,
            &[action("ThinkAction", "UNKNOWN")]
        ));
        assert!(
            requires_confirmation(&risky, None, std::slice::from_ref(&low)),
            "no analyzer: UNKNOWN → confirm"
        );
        assert!(!requires_confirmation(
            &risky,
            Some(&analyzer),
            std::slice::from_ref(&low)
        ));
        assert!(!requires_confirmation(
            &risky,
            Some(&analyzer),
            std::slice::from_ref(&medium)
        ));
        assert!(requires_confirmation(
            &risky,
            Some(&analyzer),
            std::slice::from_ref(&high)
        ));
        assert!(!requires_confirmation(&risky, Some(&Value::Null), &[]));
        let medium_no_unknown =
            json!({"kind": "ConfirmRisky", "threshold": "MEDIUM", "confirm_unknown": false});
        assert!(requires_confirmation(
            &medium_no_unknown,
            Some(&analyzer),
            std::slice::from_ref(&medium)
        ));
        assert!(!requires_confirmation(
            &medium_no_unknown,
            Some(&analyzer),
            &[action("TerminalAction", "UNKNOWN")]
        ));
        assert!(
            requires_confirmation(
                &risky,
                Some(&analyzer),
                &[action("ThinkAction", "UNKNOWN"), low]
            ),
            "think gets UNKNOWN in a batch"
        );
    }
}
