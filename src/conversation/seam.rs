//! The seam where the agent loop (issue 4) plugs into the conversation actor. Everything here
//! is a placeholder with the final signature: the loop developer replaces the bodies, not the
//! actor. The actor calls:
//!
//! - [`system_prompt_event`] once when a conversation is created (first event of the log);
//! - [`drive_step`] once per agent step while a run is active. The actor spawns the returned
//!   future with `ctx.spawn` (so `Pause`, `SendMessage`, searches... are still handled while a
//!   step runs), and applies the [`StepOutcome`] when it resolves: `Continue` spawns the next
//!   step (unless a pause was requested or `max_iterations` is reached), anything else ends the
//!   run. Events produced *during* a step are appended with [`ConversationHandle::append`]
//!   (persisted, indexed and fanned out before the call returns; `append_json` for JSON
//!   values), statistics with [`ConversationHandle::update_stats`]; the history is
//!   [`ConversationHandle::history`] (typed) or `history_json` (shared API JSON strings);
//! - [`pending_actions`] for `respond_to_confirmation` with `accept: false`;
//! - [`generate_title_with_llm`] and [`ask_agent`] for the two LLM-backed routes.

use futures_util::future::LocalBoxFuture;
use serde_json::{Value, json};

use crate::model::events::{ActionEvent, SystemPromptEvent};
use crate::model::{Agent, ConversationState, Event, Llm, Source, TextContent, wire};

use super::handle::ConversationHandle;

/// Tool names that may appear in `agent.tools` (GET /api/tools/). `finish` and `think` are
/// built in to every agent.
pub const REGISTERED_TOOLS: [&str; 7] = [
    "file_editor",
    "task_tracker",
    "terminal",
    "browser_tool_set",
    "glob",
    "grep",
    "planning_file_editor",
];

/// Checks the agent's tools at start; the reference's error is a KeyError (500 with quotes).
pub fn check_tools(agent: &Agent) -> Result<(), String> {
    match agent
        .tools
        .iter()
        .find(|t| !REGISTERED_TOOLS.contains(&t.name.as_str()))
    {
        Some(t) => Err(format!("\"ToolDefinition '{}' is not registered\"", t.name)),
        None => Ok(()),
    }
}

/// The first event of every conversation: the rendered system prompt and the tool definitions.
/// PLACEHOLDER: the agent module provides the real prompt text and the tools' JSON schemas.
pub fn system_prompt_event(agent: &Agent) -> Event {
    let mut names: Vec<&str> = agent.tools.iter().map(|t| t.name.as_str()).collect();
    names.extend(["finish", "think"]);
    let tools = names
        .into_iter()
        .map(|name| json!({"type": "function", "function": {"name": name, "description": "", "parameters": {"type": "object", "properties": {}}}}))
        .collect();
    Event::SystemPrompt(SystemPromptEvent {
        id: wire::new_event_id(),
        timestamp: wire::event_timestamp_now(),
        source: Source::Agent,
        system_prompt: TextContent::new("You are a helpful software engineering agent."),
        tools,
    })
}

/// Per-conversation state of the agent loop that lives as long as the conversation actor
/// (terminal sessions, tool executors, a parsed history cache...). Owned by the actor, moved
/// into each step and handed back in [`StepOutput`]. Dropped when the conversation is deleted
/// or the server stops (close tools in `Drop`).
#[derive(Default)]
pub struct AgentSession {}

/// What one step gets.
pub struct StepInput {
    /// To append events and update stats while the step runs, and to read the history.
    pub handle: ConversationHandle,
    /// A snapshot of the state when the step started (agent with its plain secrets, workspace,
    /// policy, analyzer, secret registry, stats...).
    pub state: ConversationState,
    /// 1 for the first step of this run.
    pub iteration: i64,
    pub session: AgentSession,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// Keep going: the actor spawns the next step.
    Continue,
    /// Finish tool or a text reply: status `finished`.
    Finished,
    /// An action needs confirmation: status `waiting_for_confirmation`.
    WaitingForConfirmation,
    /// Stuck detector fired: status `stuck`.
    Stuck,
    /// The step failed: status `error`, a ConversationErrorEvent with `code`/`detail`, and
    /// POST /run answers 500 "Conversation run failed for id=<id>: <detail>".
    Error { code: String, detail: String },
}

pub struct StepOutput {
    pub session: AgentSession,
    pub outcome: StepOutcome,
}

/// Runs one agent step. PLACEHOLDER until the agent loop exists: finishes at once without
/// calling an LLM, so a run moves the status `running` -> `finished`.
pub fn drive_step(input: StepInput) -> LocalBoxFuture<'static, StepOutput> {
    Box::pin(async move {
        StepOutput {
            session: input.session,
            outcome: StepOutcome::Finished,
        }
    })
}

/// The ActionEvents still waiting for an observation (for rejecting them).
pub fn pending_actions(history: &[Event]) -> Vec<ActionEvent> {
    let mut pending: Vec<ActionEvent> = Vec::new();
    for e in history {
        match e {
            Event::Action(a) if a.action.is_some() => pending.push(a.clone()),
            Event::Observation(o) => pending.retain(|a| a.id != o.action_id),
            Event::UserReject(o) => pending.retain(|a| a.id != o.action_id),
            Event::AgentError(o) => pending.retain(|a| a.tool_call_id != o.tool_call_id),
            _ => {}
        }
    }
    pending
}

/// Asks an LLM for a title of `first_message`. PLACEHOLDER: `None` (the route then falls back
/// to the truncated message, as the reference does when the LLM call fails).
pub async fn generate_title_with_llm(
    _llm: &Llm,
    _first_message: &str,
    _max_length: usize,
) -> Option<String> {
    None
}

/// One extra completion over the conversation history plus `question`. PLACEHOLDER.
pub async fn ask_agent(
    _state: &ConversationState,
    _history: &[Event],
    _question: &str,
) -> Result<String, String> {
    Err("ask_agent is not available: the agent loop is not implemented yet".to_string())
}

/// The `value` of an `execution_status` state update.
pub fn status_value(s: crate::model::ExecutionStatus) -> Value {
    Value::String(s.as_str().to_string())
}
