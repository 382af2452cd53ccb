//! Where the agent loop ([`crate::agent`], [`crate::tools`], [`crate::llm`]) plugs into the
//! conversation actor. The actor calls:
//!
//! - [`system_prompt_event`] once when a conversation is created (first event of the log);
//! - [`drive_step`] once per agent step while a run is active. The actor spawns the returned
//!   future with `ctx.spawn` (so `Pause`, `SendMessage`, searches... are still handled while a
//!   step runs: the LLM call and the tools run inside this future, never in a handler), and
//!   applies the [`StepOutcome`] when it resolves. Events produced *during* a step are appended
//!   through the [`ConversationHandle`] (persisted, indexed and fanned out before the call
//!   returns), LLM usage with [`ConversationHandle::record_usage`];
//! - [`pending_actions`] for `respond_to_confirmation` with `accept: false`, and
//!   [`interrupted_observations`] when a conversation that was running is loaded again;
//! - [`generate_title`] and [`ask_agent`] for the two LLM-backed routes (they run in the
//!   route's task: the actor only hands out its state and history).
//!
//! The per-conversation [`AgentCore`] (the parsed agent and its [`ToolRuntime`]: the terminal
//! shell, the file editor's undo history, the task list) is built on the blocking pool by the
//! first step and kept by the actor until the conversation stops, which kills the shell.

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use serde_json::Value;

use crate::agent::driver::{self, StepEnd, StepHost, StepSettings};
use crate::agent::{self, Agent, side, stuck};
use crate::error::ApiError;
use crate::llm::{LlmClient, LlmConfig, LlmResponse};
use crate::model::events::ActionEvent;
use crate::model::secret::{SecretMode, with_secret_mode};
use crate::model::{self, ConversationState, Event, Llm};
use crate::tools::{self, RuntimeConfig, ToolRuntime};

use super::handle::ConversationHandle;

/// Tool names that may appear in `agent.tools` (GET /api/tools/). `finish` and `think` are
/// built in to every agent.
pub const REGISTERED_TOOLS: &[&str] = tools::REGISTERED_TOOLS;

/// `code` of the ConversationErrorEvent when the agent cannot be set up (its configuration).
const AGENT_SETUP_ERROR: &str = "ValueError";

/// What a tool call interrupted by a server restart gets as its (error) result.
pub const INTERRUPTED_TEXT: &str = "This action did not complete: the server stopped while it was running, so its \
result is unknown. Anything it had set up (running processes, shell variables, the working directory) may be gone; \
check the current state before trying again.";

/// Checks the agent's tools at start; the reference's error is a KeyError (500 with quotes).
pub fn check_tools(agent: &model::Agent) -> Result<(), String> {
    match agent
        .tools
        .iter()
        .find(|t| !REGISTERED_TOOLS.contains(&t.name.as_str()))
    {
        Some(t) => Err(format!("\"ToolDefinition '{}' is not registered\"", t.name)),
        None => Ok(()),
    }
}

/// The agent as JSON for the agent loop: secrets in plain text, and without the registered
/// tools this server cannot run (`browser_tool_set`, `glob`...; logged), so such an agent still
/// works with the rest.
pub fn agent_json(agent: &model::Agent) -> Value {
    let mut v =
        with_secret_mode(SecretMode::Plain, || serde_json::to_value(agent)).unwrap_or(Value::Null);
    if let Some(list) = v.get_mut("tools").and_then(Value::as_array_mut) {
        list.retain(|t| {
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            let runnable = tools::ToolKind::from_name(name).is_some();
            if !runnable {
                log::warn!(
                    "tool '{name}' is not available in this server; the agent runs without it"
                );
            }
            runnable
        });
    }
    v
}

/// The secret registry as the terminal reads it (plain values).
fn secrets_json(state: &ConversationState) -> Value {
    with_secret_mode(SecretMode::Plain, || {
        serde_json::to_value(&state.secret_registry.secret_sources)
    })
    .unwrap_or(Value::Null)
}

/// The first event of every conversation: the rendered system prompt and the tool definitions
/// (the file editor's description names `working_dir`).
pub fn system_prompt_event(agent: &model::Agent, working_dir: &str) -> Result<Event, String> {
    let agent = Agent::new(&agent_json(agent), working_dir)?;
    serde_json::from_value(agent.system_prompt_event()).map_err(|e| e.to_string())
}

/// One conversation's agent and tools, shared by its steps.
pub struct AgentCore {
    pub agent: Agent,
    pub runtime: ToolRuntime,
}

impl AgentCore {
    /// Parses the agent and creates the tools (reads `TASKS.json`: call off the actor thread).
    pub fn build(state: &ConversationState) -> Result<AgentCore, String> {
        let working_dir = &state.workspace.working_dir;
        let agent = Agent::new(&agent_json(&state.agent), working_dir)?;
        let runtime = ToolRuntime::new(
            &RuntimeConfig {
                working_dir: working_dir.into(),
                conversation_dir: Some(state.persistence_dir.clone().into()),
            },
            agent.tools(),
        );
        runtime.set_secrets(&secrets_json(state));
        Ok(AgentCore { agent, runtime })
    }

    /// Applies the conversation's current secrets to the terminal.
    pub fn update_secrets(&self, state: &ConversationState) {
        self.runtime.set_secrets(&secrets_json(state));
    }

    /// The configured model string of the LLM registered under `usage_id`.
    fn model_of(&self, usage_id: &str) -> String {
        let llm = self.agent.llm();
        match self.agent.condenser_llm() {
            Some(c) if c.config().usage_id == usage_id => c.config().model.clone(),
            _ => llm.config().model.clone(),
        }
    }
}

/// The log as parsed JSON, kept between steps: each step only fetches and parses the events
/// appended since the previous one.
#[derive(Default)]
pub struct EventCache {
    /// Shared with the step driver while a step reads it; appended in place between steps.
    events: Arc<Vec<Value>>,
}

/// Per-conversation state of the agent loop, owned by the actor, moved into each step and
/// handed back in [`StepOutput`].
#[derive(Default)]
pub struct AgentSession {
    /// Built by the first step.
    pub core: Option<Arc<AgentCore>>,
    cache: EventCache,
}

impl AgentSession {
    /// Drops the parsed log (at the end of a run: an idle conversation keeps only the actor's
    /// JSON; the next run parses it again once).
    pub fn forget_log(&mut self) {
        self.cache = EventCache::default();
    }
}

/// What one step gets.
pub struct StepInput {
    /// To append events and record usage while the step runs, and to read the history.
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

/// The [`StepHost`] of a conversation: the log through the actor (incrementally); what the step
/// emits is batched until the driver flushes (before tools run, after each observation, at the
/// end of the step), so an LLM reply's `stats` update and its events are persisted together.
struct Host {
    handle: ConversationHandle,
    core: Arc<AgentCore>,
    cache: EventCache,
    /// The cache holds every event the actor has (nothing appended since the last fetch).
    fresh: bool,
    usage: Option<(String, String, LlmResponse)>,
    pending: Vec<Value>,
}

impl Host {
    /// Fetches and parses the events appended since the last call.
    async fn refresh(&mut self) {
        if self.fresh {
            return;
        }
        match self
            .handle
            .history_json_since(self.cache.events.len())
            .await
        {
            Ok(new) => {
                let events = Arc::make_mut(&mut self.cache.events);
                for json in new {
                    // an event that does not parse still takes its place, so counts stay aligned
                    events.push(serde_json::from_str(&json).unwrap_or(Value::Null));
                }
                self.fresh = true;
            }
            Err(e) => log::warn!("conversation {}: history: {e}", self.handle.id()),
        }
    }
}

impl StepHost for Host {
    async fn events(&mut self) -> Arc<Vec<Value>> {
        self.refresh().await;
        self.cache.events.clone()
    }

    async fn emit(&mut self, event: Value) {
        self.pending.push(event);
    }

    async fn llm_usage(&mut self, usage_id: &str, response: &LlmResponse) {
        if self.usage.is_some() {
            self.flush().await;
        }
        let model = self.core.model_of(usage_id);
        self.usage = Some((usage_id.to_string(), model, response.clone()));
    }

    async fn flush(&mut self) {
        if self.usage.is_none() && self.pending.is_empty() {
            return;
        }
        let usage = self.usage.take();
        let events = std::mem::take(&mut self.pending);
        self.fresh = false;
        if let Err(e) = self.handle.append_step_events(usage, events).await {
            log::warn!("conversation {}: append: {e}", self.handle.id());
        }
    }
}

/// Runs one agent step (agent-behaviour §2.3–2.4): stuck check, then pending actions, a
/// condensation, or one LLM call and its actions.
pub fn drive_step(input: StepInput) -> LocalBoxFuture<'static, StepOutput> {
    Box::pin(async move {
        let StepInput {
            handle,
            state,
            iteration: _,
            mut session,
        } = input;
        let core = match session.core.clone() {
            Some(core) => core,
            None => {
                let snapshot = state.clone();
                match tokio::task::spawn_blocking(move || AgentCore::build(&snapshot)).await {
                    Ok(Ok(core)) => {
                        let core = Arc::new(core);
                        session.core = Some(core.clone());
                        // the shell starts while the first LLM call is made
                        let early = core.clone();
                        actix::spawn(async move {
                            if let Err(e) = early.runtime.terminal.start().await {
                                log::warn!("terminal did not start: {e}");
                            }
                        });
                        core
                    }
                    Ok(Err(detail)) => {
                        return StepOutput {
                            session,
                            outcome: StepOutcome::Error {
                                code: AGENT_SETUP_ERROR.into(),
                                detail,
                            },
                        };
                    }
                    Err(e) => {
                        return StepOutput {
                            session,
                            outcome: StepOutcome::Error {
                                code: AGENT_SETUP_ERROR.into(),
                                detail: e.to_string(),
                            },
                        };
                    }
                }
            }
        };
        core.update_secrets(&state);
        let mut host = Host {
            handle,
            core: core.clone(),
            cache: std::mem::take(&mut session.cache),
            fresh: false,
            usage: None,
            pending: Vec::new(),
        };
        host.refresh().await;
        if state.stuck_detection && stuck::is_stuck(&host.cache.events) {
            session.cache = host.cache;
            return StepOutput {
                session,
                outcome: StepOutcome::Stuck,
            };
        }
        let settings = StepSettings {
            confirmation_policy: serde_json::to_value(&state.confirmation_policy)
                .unwrap_or(Value::Null),
            security_analyzer: state
                .security_analyzer
                .as_ref()
                .and_then(|a| serde_json::to_value(a).ok()),
        };
        let end = driver::run_step(&core.agent, &core.runtime, &settings, &mut host).await;
        session.cache = host.cache;
        let outcome = match end {
            StepEnd::Continue => StepOutcome::Continue,
            StepEnd::Finished => StepOutcome::Finished,
            StepEnd::WaitingForConfirmation => StepOutcome::WaitingForConfirmation,
            StepEnd::Error { code, detail } => StepOutcome::Error { code, detail },
        };
        StepOutput { session, outcome }
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
            _ => {}
        }
    }
    pending
}

/// For a conversation loaded while it was running (the server stopped in the middle of a
/// step): one closing error ObservationEvent per action that has no result yet, so the log is
/// consistent, the LLM sees the call answered, and a new run does not silently replay it.
pub fn interrupted_observations(history: &[Event]) -> Vec<Event> {
    pending_actions(history)
        .into_iter()
        .filter_map(|a| {
            let action = a.action.clone().unwrap_or(Value::Null);
            let event = agent::events::observation_event(
                &serde_json::json!({"id": a.id, "tool_name": a.tool_name, "tool_call_id": a.tool_call_id}),
                tools::error_observation(&action, INTERRUPTED_TEXT),
            );
            serde_json::from_value(event).ok()
        })
        .collect()
}

/// An LLM client for a configuration given as the wire `LLM` object.
fn client_for(llm: &Llm) -> Result<LlmClient, String> {
    let v = with_secret_mode(SecretMode::Plain, || serde_json::to_value(llm))
        .map_err(|e| e.to_string())?;
    Ok(LlmClient::new(LlmConfig::from_json(&v)?))
}

/// The history as JSON values.
async fn history_values(h: &ConversationHandle) -> Result<Vec<Value>, ApiError> {
    Ok(h.history_json()
        .await?
        .iter()
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect())
}

/// POST /generate_title (agent-behaviour §8.2): a title for the first user message from
/// `llm` (or the agent's LLM, whose usage is recorded); the message itself when the LLM fails.
/// The conversation's title is not changed.
pub async fn generate_title(
    h: &ConversationHandle,
    max_length: usize,
    llm: Option<Llm>,
) -> Result<String, ApiError> {
    let events = history_values(h).await?;
    let Some(text) = side::first_user_text(&events) else {
        return Err(ApiError::internal(
            "No user messages found in conversation events",
        ));
    };
    let (llm, agent_llm) = match llm {
        Some(l) => (l, false),
        None => (h.state().await?.agent.llm, true),
    };
    let client = client_for(&llm).map_err(ApiError::internal)?;
    let reply = match client
        .complete(&side::title_request(&text, max_length))
        .await
    {
        Ok(r) => Some(r),
        Err(e) => {
            log::warn!(
                "conversation {}: title generation failed: {}",
                h.id(),
                e.code
            );
            None
        }
    };
    if agent_llm && let Some(r) = &reply {
        h.record_usage(llm.usage_id.clone(), llm.model.clone(), r.clone())
            .await?;
    }
    Ok(side::title_from_reply(reply.as_ref(), &text, max_length))
}

/// POST /ask_agent (agent-behaviour §8.1): one completion over the current view plus the
/// question, with the agent's LLM; no events, no stats. No text in the reply → 500.
pub async fn ask_agent(h: &ConversationHandle, question: &str) -> Result<String, ApiError> {
    let state = h.state().await?;
    let events = history_values(h).await?;
    let client = client_for(&state.agent.llm).map_err(ApiError::internal)?;
    let reply = client
        .complete(&side::ask_agent_request(&events, question))
        .await
        .map_err(|e| ApiError::internal(format!("{}: {}", e.code, e.detail)))?;
    side::ask_agent_answer(&reply)
        .ok_or_else(|| ApiError::internal("The LLM returned no text for the question"))
}

/// The `value` of an `execution_status` state update.
pub fn status_value(s: crate::model::ExecutionStatus) -> Value {
    Value::String(s.as_str().to_string())
}
