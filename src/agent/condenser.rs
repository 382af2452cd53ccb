//! The LLMSummarizingCondenser (agent-behaviour §3.9): when the view grows past `max_size` (or a
//! CondensationRequest is pending), the middle of the view is summarised by the condenser LLM and
//! a `Condensation` event forgets it; the summary is then shown at index `keep_first`.

use serde_json::{Value, json};

use super::{events, messages};
use crate::llm::{LlmClient, LlmConfig, LlmRequest, LlmResponse};

const DEFAULT_MAX_SIZE: usize = 120;
const DEFAULT_KEEP_FIRST: usize = 4;

const SUMMARY_INSTRUCTIONS: &str = "You keep a running summary of an AI agent's work so that it can continue after older \
events are removed from its context. Below are the events to be removed, and the previous summary if there is one.
If the events contain any task tracking, include a TASK_TRACKING section and keep task ids and statuses exactly.

Cover:
USER_CONTEXT: the user's requirements, goals and clarifications, briefly
TASK_TRACKING: active tasks with their ids and statuses
COMPLETED: what has been done, with short results
PENDING: what is still to do
CURRENT_STATE: variables, data or state that matter now

For coding work also cover:
CODE_STATE: files, function signatures, data structures
TESTS: failing cases, error messages, outputs
CHANGES: edits made so far
DEPS: dependencies and external calls
VERSION_CONTROL_STATUS: repository state, branch, pull request, commits

Adapt the sections to the kind of task, keep every section short, separate what is done from what is pending, and \
leave out details that do not matter for the task.";

/// The condenser part of an agent.
#[derive(Debug, Clone)]
pub struct CondenserConfig {
    pub llm: LlmClient,
    pub max_size: usize,
    pub keep_first: usize,
}

/// What a step must do instead of calling the agent LLM.
#[derive(Debug, Clone, PartialEq)]
pub enum Condense {
    /// Ask the condenser LLM for a summary, then append the Condensation event.
    Summarize(SummaryRequest),
}

/// A summary call and the Condensation it leads to.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRequest {
    pub request: LlmRequest,
    pub forgotten_event_ids: Vec<String>,
    pub summary_offset: usize,
}

impl SummaryRequest {
    /// The `Condensation` event for the condenser's reply.
    pub fn into_event(&self, reply: &LlmResponse) -> Value {
        let mut e = events::condensation_request_event();
        let obj = e.as_object_mut().expect("event object");
        obj.insert("kind".into(), json!("Condensation"));
        obj.insert(
            "forgotten_event_ids".into(),
            json!(self.forgotten_event_ids),
        );
        obj.insert(
            "summary".into(),
            json!(reply.content.clone().unwrap_or_default()),
        );
        obj.insert("summary_offset".into(), json!(self.summary_offset));
        obj.insert("llm_response_id".into(), json!(reply.id));
        e
    }
}

fn kind(e: &Value) -> &str {
    e.get("kind").and_then(Value::as_str).unwrap_or_default()
}

/// A one-paragraph rendering of an event for the summary prompt.
fn describe(e: &Value) -> String {
    let source = e.get("source").and_then(Value::as_str).unwrap_or_default();
    let text_of = |content: Option<&Value>| -> String {
        content
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let body = match kind(e) {
        "MessageEvent" => format!(
            "  {}: {}",
            e.pointer("/llm_message/role")
                .and_then(Value::as_str)
                .unwrap_or("user"),
            text_of(e.pointer("/llm_message/content"))
        ),
        "ActionEvent" => format!(
            "  Thought: {}\n  Action: {}\n  Arguments: {}",
            text_of(e.get("thought")),
            e.pointer("/action/kind")
                .and_then(Value::as_str)
                .unwrap_or("none"),
            e.pointer("/tool_call/arguments")
                .and_then(Value::as_str)
                .unwrap_or_default()
        ),
        "ObservationEvent" => format!(
            "  Tool: {}\n  Result: {}",
            e.get("tool_name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            messages::observation_content(e.get("observation").unwrap_or(&Value::Null))
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<String>()
        ),
        "AgentErrorEvent" => format!(
            "  Error: {}",
            e.get("error").and_then(Value::as_str).unwrap_or_default()
        ),
        "UserRejectObservation" => format!(
            "  Rejected: {}",
            e.get("rejection_reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
        ),
        "CondensationSummaryEvent" => format!(
            "  user: {}",
            e.get("summary").and_then(Value::as_str).unwrap_or_default()
        ),
        _ => String::new(),
    };
    format!("{} ({source})\n{body}", kind(e))
}

impl CondenserConfig {
    /// Reads `agent.condenser` (`LLMSummarizingCondenser`, possibly inside a
    /// `PipelineCondenser`); `NoOpCondenser` and `null` mean none.
    pub fn from_agent(agent: &Value) -> Result<Option<CondenserConfig>, String> {
        let Some(c) = agent.get("condenser").filter(|c| c.is_object()) else {
            return Ok(None);
        };
        let summarizing = match kind(c) {
            "LLMSummarizingCondenser" => Some(c),
            "PipelineCondenser" => c
                .get("condensers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|x| kind(x) == "LLMSummarizingCondenser"),
            _ => None,
        };
        let Some(c) = summarizing else {
            return Ok(None);
        };
        let max_size = c
            .get("max_size")
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .unwrap_or(DEFAULT_MAX_SIZE);
        let keep_first = c
            .get("keep_first")
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .unwrap_or(DEFAULT_KEEP_FIRST);
        if (max_size / 2) as i64 - keep_first as i64 - 1 <= 0 {
            return Err("max_size // 2 - keep_first - 1 must be greater than 0".into());
        }
        let llm = LlmClient::new(LlmConfig::from_json(c.get("llm").unwrap_or(&Value::Null))?);
        Ok(Some(CondenserConfig {
            llm,
            max_size,
            keep_first,
        }))
    }

    /// Whether (and what) to condense at the start of a step.
    pub fn plan(&self, log: &[Value]) -> Option<Condense> {
        let last_condensation = log.iter().rposition(|e| kind(e) == "Condensation");
        let requested = log.iter().enumerate().any(|(i, e)| {
            kind(e) == "CondensationRequest" && last_condensation.is_none_or(|c| i > c)
        });
        let view = messages::view(log);
        if !requested && view.len() <= self.max_size {
            return None;
        }
        let target = if requested {
            view.len() / 2
        } else {
            self.max_size / 2
        };
        let keep_first = self.keep_first.min(view.len());
        let tail = target as i64 - keep_first as i64 - 1;
        let forgotten: &[Value] = if tail <= 0 {
            &[]
        } else {
            &view[keep_first..view.len().saturating_sub(tail as usize).max(keep_first)]
        };
        let mut prompt =
            format!("{SUMMARY_INSTRUCTIONS}\n\n<PREVIOUS SUMMARY>\n\n</PREVIOUS SUMMARY>\n");
        for e in forgotten {
            prompt.push_str(&format!("\n<EVENT>\n{}\n</EVENT>\n", describe(e)));
        }
        prompt.push_str("\nNow write the updated summary.");
        Some(Condense::Summarize(SummaryRequest {
            request: LlmRequest {
                messages: vec![
                    json!({"content": [{"type": "text", "text": prompt}], "role": "user"}),
                ],
                tools: Vec::new(),
            },
            forgotten_event_ids: forgotten
                .iter()
                .filter_map(|e| e.get("id").and_then(Value::as_str).map(str::to_string))
                .collect(),
            summary_offset: self.keep_first,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolCall;
    use crate::tools::text_part;

    fn agent(max_size: usize, keep_first: usize) -> Value {
        json!({"condenser": {"kind": "LLMSummarizingCondenser", "llm": {"model": "openai/fake-model", "usage_id": "condenser"},
            "max_size": max_size, "keep_first": keep_first}})
    }

    fn log_with_pairs(n: usize) -> Vec<Value> {
        let mut log = vec![
            events::system_prompt_event("S", &[]),
            events::user_message_event(vec![text_part("task")], vec![], vec![]),
        ];
        for i in 0..n {
            let r = LlmResponse {
                id: format!("r{i}"),
                tool_calls: vec![ToolCall {
                    id: format!("c{i}"),
                    name: "terminal".into(),
                    arguments: "{}".into(),
                    origin: "completion",
                }],
                ..LlmResponse::default()
            };
            let a = events::action_event(
                &r,
                &r.tool_calls[0],
                true,
                json!({"kind": "TerminalAction"}),
                "LOW",
            );
            let o = events::observation_event(
                &a,
                json!({"kind": "ThinkObservation", "content": [text_part(&format!("out{i}"))], "is_error": false}),
            );
            log.push(a);
            log.push(o);
        }
        log
    }

    #[test]
    fn config_validation() {
        assert!(
            CondenserConfig::from_agent(&json!({"condenser": null}))
                .unwrap()
                .is_none()
        );
        assert!(
            CondenserConfig::from_agent(&json!({"condenser": {"kind": "NoOpCondenser"}}))
                .unwrap()
                .is_none()
        );
        assert!(CondenserConfig::from_agent(&agent(8, 3)).is_err());
        assert!(CondenserConfig::from_agent(&agent(8, 2)).unwrap().is_some());
    }

    #[test]
    fn condenses_when_the_view_is_too_long() {
        let c = CondenserConfig::from_agent(&agent(8, 2)).unwrap().unwrap();
        assert!(
            c.plan(&log_with_pairs(3)).is_none(),
            "view of 8 is not over max_size"
        );
        let log = log_with_pairs(4);
        let Some(Condense::Summarize(req)) = c.plan(&log) else {
            panic!("expected a summary")
        };
        // view 10, target 4, keep 2, tail 1: forget view[2..9] = 7 events
        assert_eq!(req.forgotten_event_ids.len(), 7);
        assert_eq!(req.summary_offset, 2);
        assert!(req.request.tools.is_empty());
        let text = req.request.messages[0]["content"][0]["text"]
            .as_str()
            .unwrap();
        assert!(
            text.contains("<PREVIOUS SUMMARY>\n\n</PREVIOUS SUMMARY>")
                && text.matches("<EVENT>").count() == 7
        );
        let reply = LlmResponse {
            id: "sum-1".into(),
            content: Some("SUMMARY".into()),
            ..LlmResponse::default()
        };
        let cond = req.into_event(&reply);
        assert_eq!(cond["kind"], "Condensation");
        assert_eq!(cond["summary_offset"], json!(2));
        let mut log2 = log.clone();
        log2.push(cond);
        let view = messages::view(&log2);
        assert_eq!(view[2]["kind"], "CondensationSummaryEvent");
        assert!(c.plan(&log2).is_none());
    }

    #[test]
    fn requests_condense_half_the_view() {
        let c = CondenserConfig::from_agent(&agent(120, 2))
            .unwrap()
            .unwrap();
        let mut log = log_with_pairs(2);
        log.push(events::condensation_request_event());
        let Some(Condense::Summarize(req)) = c.plan(&log) else {
            panic!("expected a summary")
        };
        assert!(
            req.forgotten_event_ids.is_empty(),
            "view 6 → tail 0 → nothing forgotten (reference quirk)"
        );
        let mut log = log_with_pairs(5);
        log.push(events::condensation_request_event());
        let Some(Condense::Summarize(req)) = c.plan(&log) else {
            panic!("expected a summary")
        };
        assert_eq!(req.forgotten_event_ids.len(), 12 - 2 - 3);
    }
}
