//! The agent loop's pure cores: system prompt ([`prompt`]), event constructors ([`events`]),
//! events → LLM messages ([`messages`]), LLM reply → events and the confirmation decision
//! ([`step`]), stuck detection ([`stuck`]), conversation condensation ([`condenser`]), and the
//! title / ask-agent side calls ([`side`]). No actix types: the Conversation actor wires them to
//! the LLM client ([`crate::llm`]) and the tools ([`crate::tools`]). Events are wire JSON
//! (`serde_json::Value`, EVENTS.md shapes) at every boundary.
//!
//! # The step API the Conversation actor calls
//!
//! At creation ([`Agent::new`] once per conversation, again after a restart):
//! `agent = Agent::new(&agent_json, working_dir)?`; `runtime = ToolRuntime::new(&cfg, agent.tools())`;
//! if the log has no LLM-convertible event yet, append `agent.system_prompt_event()`.
//!
//! `send_message`: `(event, activated) = agent.user_message_event(content, &state.activated_knowledge_skills)`.
//!
//! One run iteration (agent-behaviour §2.3–2.4), the log being `events`:
//!
//! 1. `stuck::is_stuck(&events)` (if `stuck_detection`) → status `stuck`, stop.
//! 2. `pending = step::pending_actions(&events)`; if not empty: for each `a`,
//!    `obs = runtime.execute(&a["action"]).await` (never fails: errors are error observations),
//!    append `events::observation_event(&a, obs)`; if `step::is_finish(&a)` → status `finished`.
//!    The step ends here.
//! 3. `agent.condensation(&events)`: `Some(Condense::Summarize(req))` → call the condenser LLM
//!    ([`Agent::condenser_llm`]) with `req.request`, append `req.into_event(&reply)`, step ends.
//! 4. `req = agent.next_request(&events)`; `reply = agent.llm().complete(&req).await`:
//!    - `Err(e)` with `e.is_context_window()` and `agent.handles_condensation_requests()` →
//!      append a `CondensationRequest` event, step ends;
//!    - `Err(e)` → status `error`, append ConversationErrorEvent `{code: e.code, detail: e.detail}`;
//!    - `Ok(reply)`: `metrics.record(&reply)`, append the `stats` state update
//!      (`llm::metrics::stats_json`), then `out = agent.handle_reply(&reply, analyzer_is_llm)`;
//!      append `out.events` in order; if `out.finished` → status `finished`; if
//!      `step::requires_confirmation(&policy, analyzer, &out.actions)` → status
//!      `waiting_for_confirmation`; else execute `out.actions` as in 2.
//!
//! [`driver::run_step`] implements this iteration (steps 2–4) against a small [`driver::StepHost`]
//! trait (`events()`, `emit(event)`, `llm_usage(usage_id, &reply)`) and returns a
//! [`driver::StepEnd`] (`Continue`, `Finished`, `WaitingForConfirmation`, `Error{code, detail}`)
//! from which the caller sets the status.
//!
//! Reject (DEVIATIONS #2): status `idle`, then `events::user_reject_event(&a, reason)` for each
//! pending action. Title: [`side::first_user_text`], [`side::title_request`],
//! [`side::title_from_reply`]. ask_agent: [`side::ask_agent_request`], [`side::ask_agent_answer`].

pub mod condenser;
pub mod driver;
pub mod events;
pub mod messages;
pub mod nonnative;
pub mod prompt;
pub mod side;
pub mod step;
pub mod stuck;

use serde_json::Value;

use crate::llm::{LlmClient, LlmConfig, LlmRequest, LlmResponse};
use crate::tools::ToolSet;

pub use condenser::Condense;
pub use step::ReplyOutcome;

/// One conversation's agent: its tools, LLM client and configuration.
#[derive(Debug, Clone)]
pub struct Agent {
    agent: Value,
    tools: ToolSet,
    llm: LlmClient,
    condenser: Option<condenser::CondenserConfig>,
    working_dir: String,
}

impl Agent {
    /// Reads the `Agent` JSON (EVENTS.md §6.5). Fails on unknown tools or an unusable LLM config.
    pub fn new(agent: &Value, working_dir: &str) -> Result<Agent, String> {
        let tools = ToolSet::from_agent(
            agent.get("tools").unwrap_or(&Value::Null),
            agent.get("filter_tools_regex").and_then(Value::as_str),
        )?;
        let llm = LlmClient::new(LlmConfig::from_json(
            agent.get("llm").unwrap_or(&Value::Null),
        )?);
        let condenser = condenser::CondenserConfig::from_agent(agent)?;
        Ok(Agent {
            agent: agent.clone(),
            tools,
            llm,
            condenser,
            working_dir: working_dir.to_string(),
        })
    }

    pub fn tools(&self) -> &ToolSet {
        &self.tools
    }

    /// The agent LLM (usage id = its `usage_id`, normally `agent`).
    pub fn llm(&self) -> &LlmClient {
        &self.llm
    }

    /// The condenser's LLM, if the agent has an LLMSummarizingCondenser.
    pub fn condenser_llm(&self) -> Option<&LlmClient> {
        self.condenser.as_ref().map(|c| &c.llm)
    }

    /// Whether a context-window error becomes a CondensationRequest instead of an error.
    pub fn handles_condensation_requests(&self) -> bool {
        self.condenser.is_some()
    }

    /// The tool definitions for the LLM (also stored in the SystemPromptEvent).
    pub fn tool_definitions(&self) -> Vec<Value> {
        self.tools.definitions(&self.working_dir, self.llm.vision())
    }

    /// The SystemPromptEvent emitted once at creation.
    pub fn system_prompt_event(&self) -> Value {
        events::system_prompt_event(
            &prompt::agent_system_prompt(&self.agent),
            &self.tool_definitions(),
        )
    }

    /// A user MessageEvent with the agent context's additions, and the skills it newly activated
    /// (to add to the state's `activated_knowledge_skills`).
    pub fn user_message_event(
        &self,
        content: Vec<Value>,
        already_activated: &[String],
    ) -> (Value, Vec<String>) {
        let text: String = content
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n");
        let (extended, activated) =
            prompt::user_message_extension(&self.agent, &text, already_activated);
        (
            events::user_message_event(content, extended, activated.clone()),
            activated,
        )
    }

    /// The next LLM request for the log: its view as messages, and the tools recorded in its
    /// SystemPromptEvent (or the current definitions when the log has none).
    pub fn next_request(&self, events: &[Value]) -> LlmRequest {
        let mut tools = messages::tools_from_log(events);
        if tools.is_empty()
            && !events
                .iter()
                .any(|e| e.get("kind").and_then(Value::as_str) == Some("SystemPromptEvent"))
        {
            tools = self.tool_definitions();
        }
        let messages = messages::build_messages(events);
        if self.llm.config().native_tool_calling {
            LlmRequest { messages, tools }
        } else {
            LlmRequest {
                messages: nonnative::convert_messages(&messages, &tools),
                tools: Vec::new(),
            }
        }
    }

    /// Events for an LLM reply. `llm_security_analyzer`: the conversation's analyzer is set.
    /// Without native tool calling the reply's text is parsed for a call first; a malformed call
    /// becomes a user MessageEvent with the error text (§3.6).
    pub fn handle_reply(&self, reply: &LlmResponse, llm_security_analyzer: bool) -> ReplyOutcome {
        let ctx = step::ReplyContext {
            tools: &self.tools,
            llm_security_analyzer,
        };
        if self.llm.config().native_tool_calling {
            return step::handle_reply(reply, &ctx);
        }
        match nonnative::parse_reply(reply, &self.tool_definitions()) {
            Ok(Some(parsed)) => step::handle_reply(&parsed, &ctx),
            Ok(None) => step::handle_reply(reply, &ctx),
            Err(error) => ReplyOutcome {
                events: vec![events::user_message_event(
                    vec![crate::tools::text_part(&error)],
                    Vec::new(),
                    Vec::new(),
                )],
                actions: Vec::new(),
                finished: false,
            },
        }
    }

    /// Whether this step must condense instead of calling the agent LLM.
    pub fn condensation(&self, events: &[Value]) -> Option<Condense> {
        self.condenser.as_ref().and_then(|c| c.plan(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent_json() -> Value {
        json!({"kind": "Agent", "llm": {"model": "openai/fake-model", "base_url": "http://127.0.0.1:9/v1", "api_key": "k", "usage_id": "agent"},
            "tools": [{"name": "terminal"}, {"name": "file_editor"}, {"name": "task_tracker"}],
            "system_prompt_kwargs": {"llm_security_analyzer": true}})
    }

    #[test]
    fn system_prompt_event_and_first_request() {
        let agent = Agent::new(&agent_json(), "/ws").unwrap();
        let sp = agent.system_prompt_event();
        assert_eq!(sp["kind"], "SystemPromptEvent");
        let names: Vec<&str> = sp["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["terminal", "file_editor", "task_tracker", "finish", "think"]
        );
        let (user, activated) =
            agent.user_message_event(vec![crate::tools::text_part("contract check")], &[]);
        assert!(activated.is_empty());
        let req = agent.next_request(&[sp.clone(), user]);
        assert_eq!(req.tools, sp["tools"].as_array().unwrap().clone());
        assert_eq!(
            req.messages[0]["content"][0]["text"],
            sp["system_prompt"]["text"]
        );
        assert_eq!(
            req.messages[1],
            json!({"content": [{"type": "text", "text": "contract check"}], "role": "user"})
        );
        assert!(
            Agent::new(
                &json!({"llm": {"model": "x"}, "tools": [{"name": "nope"}]}),
                "/ws"
            )
            .is_err()
        );
    }

    #[test]
    fn non_native_tool_calling() {
        let mut a = agent_json();
        a["llm"]["native_tool_calling"] = json!(false);
        let agent = Agent::new(&a, "/ws").unwrap();
        let (user, _) = agent.user_message_event(vec![crate::tools::text_part("task")], &[]);
        let req = agent.next_request(&[agent.system_prompt_event(), user]);
        assert!(req.tools.is_empty());
        assert!(
            req.messages[0]["content"]
                .as_str()
                .unwrap()
                .contains("<function=FUNCTION_NAME>")
        );
        let reply = LlmResponse {
            id: "r".into(),
            content: Some("<function=finish>\n<parameter=bogus>x</parameter>\n</function>".into()),
            ..LlmResponse::default()
        };
        let out = agent.handle_reply(&reply, false);
        assert_eq!(out.events[0]["source"], "user");
        assert_eq!(
            out.events[0]["llm_message"]["content"][0]["text"],
            "Parameter 'bogus' is not allowed for function 'finish'. Allowed parameters: {'message'}"
        );
        let reply = LlmResponse {
            id: "r".into(),
            content: Some(
                "done\n<function=finish>\n<parameter=message>bye</parameter>\n</function>".into(),
            ),
            ..LlmResponse::default()
        };
        let out = agent.handle_reply(&reply, false);
        assert_eq!(
            out.actions[0]["action"],
            json!({"kind": "FinishAction", "message": "bye"})
        );
        assert_eq!(out.actions[0]["thought"][0]["text"], "done");
    }
}
