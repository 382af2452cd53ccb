//! Conversation events (EVENTS.md §1–3): one struct per `kind`, the [`Event`] enum with its
//! `kind` discriminator (written first), and the fully qualified class names used by the
//! `kind` search filter. Actions and observations stay free-form JSON objects so that unknown
//! kinds and extra fields round-trip; the built-in tools' `null` fields are restored on load.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::message::{Message, MessageToolCall, TextContent};
use super::wire::{self, omitting_none, skip_none, strip_nulls};

/// `source` of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Agent,
    User,
    Environment,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Agent => "agent",
            Source::User => "user",
            Source::Environment => "environment",
        }
    }
}

/// `security_risk` of an action.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum SecurityRisk {
    #[default]
    Unknown,
    Low,
    Medium,
    High,
}

fn skip_null_in_disk_form(v: &Value) -> bool {
    v.is_null() && omitting_none()
}

/// Actions and observations are models: their `null` fields are dropped in the disk form.
fn model_value<S: Serializer>(v: &Value, s: S) -> Result<S::Ok, S::Error> {
    if omitting_none() {
        strip_nulls(v).serialize(s)
    } else {
        v.serialize(s)
    }
}

fn opt_model_value<S: Serializer>(v: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => model_value(v, s),
        None => s.serialize_none(),
    }
}

fn restore_action<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.map(|mut v| {
        restore_nulls(&mut v);
        v
    }))
}

fn restore_observation<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let mut v = Value::deserialize(d)?;
    restore_nulls(&mut v);
    Ok(v)
}

/// The field order of the built-in tools' actions/observations, with the nullable fields that
/// the disk form drops. Used to give files written without `null`s back their API shape.
const SCHEMAS: &[(&str, &[&str], &[&str])] = &[
    (
        "TerminalAction",
        &["kind", "command", "is_input", "timeout", "reset"],
        &["timeout"],
    ),
    (
        "FileEditorAction",
        &[
            "kind",
            "command",
            "path",
            "file_text",
            "old_str",
            "new_str",
            "insert_line",
            "view_range",
        ],
        &[
            "file_text",
            "old_str",
            "new_str",
            "insert_line",
            "view_range",
        ],
    ),
    (
        "TerminalObservation",
        &[
            "kind",
            "content",
            "is_error",
            "command",
            "exit_code",
            "timeout",
            "metadata",
            "full_output_save_dir",
        ],
        &["command", "exit_code", "full_output_save_dir"],
    ),
    (
        "FileEditorObservation",
        &[
            "kind",
            "content",
            "is_error",
            "command",
            "path",
            "prev_exist",
            "old_content",
            "new_content",
        ],
        &["path", "old_content", "new_content"],
    ),
];

const TERMINAL_METADATA: (&[&str], &[&str]) = (
    &[
        "exit_code",
        "pid",
        "username",
        "hostname",
        "working_dir",
        "py_interpreter_path",
        "prefix",
        "suffix",
    ],
    &["username", "hostname", "working_dir", "py_interpreter_path"],
);

fn reorder_with_nulls(m: &mut Map<String, Value>, order: &[&str], nullable: &[&str]) {
    if nullable.iter().all(|k| m.contains_key(*k)) {
        return;
    }
    let mut out = Map::with_capacity(m.len() + nullable.len());
    for k in order {
        match m.remove(*k) {
            Some(v) => {
                out.insert((*k).to_string(), v);
            }
            None if nullable.contains(k) => {
                out.insert((*k).to_string(), Value::Null);
            }
            None => {}
        }
    }
    out.extend(std::mem::take(m));
    *m = out;
}

/// Puts back the `null` fields of known action/observation kinds (disk files omit them).
pub fn restore_nulls(v: &mut Value) {
    let Some(m) = v.as_object_mut() else { return };
    let kind = m
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some((_, order, nullable)) = SCHEMAS.iter().find(|(k, _, _)| *k == kind) {
        reorder_with_nulls(m, order, nullable);
    }
    if kind == "TerminalObservation"
        && let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut)
    {
        reorder_with_nulls(meta, TERMINAL_METADATA.0, TERMINAL_METADATA.1);
    }
}

/// First event of every conversation: the system prompt and the tool definitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SystemPromptEvent {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
    pub system_prompt: TextContent,
    /// OpenAI tool definitions `{"type":"function","function":{...}}`.
    #[schemars(with = "Vec<crate::openapi::schemas::ChatCompletionToolParam>")]
    #[serde(default)]
    pub tools: Vec<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageEvent {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
    pub llm_message: Message,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub llm_response_id: Option<String>,
    #[serde(default)]
    pub activated_skills: Vec<String>,
    #[serde(default)]
    pub extended_content: Vec<TextContent>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub sender: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionEvent {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
    #[serde(default)]
    pub thought: Vec<TextContent>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub reasoning_content: Option<String>,
    #[schemars(with = "Vec<crate::openapi::schemas::AnyThinkingBlock>")]
    #[serde(default)]
    pub thinking_blocks: Vec<Value>,
    #[schemars(with = "Option<crate::openapi::schemas::ReasoningItemModel>")]
    #[serde(default, skip_serializing_if = "skip_none")]
    pub responses_reasoning_item: Option<Value>,
    /// The action object (`{"kind":"TerminalAction",...}`), or null when the tool call was invalid.
    #[schemars(with = "Option<crate::openapi::schemas::Action>")]
    #[serde(
        default,
        serialize_with = "opt_model_value",
        deserialize_with = "restore_action",
        skip_serializing_if = "skip_none"
    )]
    pub action: Option<Value>,
    pub tool_name: String,
    pub tool_call_id: String,
    pub tool_call: MessageToolCall,
    pub llm_response_id: String,
    #[serde(default)]
    pub security_risk: SecurityRisk,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObservationEvent {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
    pub tool_name: String,
    pub tool_call_id: String,
    /// The observation object (`{"kind":"TerminalObservation","content":[...],"is_error":...}`).
    #[schemars(with = "crate::openapi::schemas::Observation")]
    #[serde(
        serialize_with = "model_value",
        deserialize_with = "restore_observation"
    )]
    pub observation: Value,
    pub action_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentErrorEvent {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
    pub tool_name: String,
    pub tool_call_id: String,
    pub error: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserRejectObservation {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
    pub tool_name: String,
    pub tool_call_id: String,
    #[serde(default = "default_rejection")]
    pub rejection_reason: String,
    pub action_id: String,
}

fn default_rejection() -> String {
    "User rejected the action".to_string()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PauseEvent {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConversationErrorEvent {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
    pub code: String,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Condensation {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
    #[serde(default)]
    pub forgotten_event_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub summary_offset: Option<i64>,
    pub llm_response_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CondensationRequest {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CondensationSummaryEvent {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
    pub summary: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LLMCompletionLogEvent {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
    pub filename: String,
    pub log_data: String,
    pub model_name: String,
    pub usage_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenEvent {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
    #[serde(default)]
    pub prompt_token_ids: Vec<i64>,
    #[serde(default)]
    pub response_token_ids: Vec<i64>,
}

/// `{"key": ..., "value": ...}`; a `value` missing on disk reads back as `null` (DEVIATIONS #15).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConversationStateUpdateEvent {
    pub id: String,
    pub timestamp: String,
    pub source: Source,
    pub key: String,
    #[serde(default, skip_serializing_if = "skip_null_in_disk_form")]
    pub value: Value,
}

/// Any conversation event.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    SystemPrompt(SystemPromptEvent),
    Message(MessageEvent),
    Action(ActionEvent),
    Observation(ObservationEvent),
    AgentError(AgentErrorEvent),
    UserReject(UserRejectObservation),
    Pause(PauseEvent),
    ConversationError(ConversationErrorEvent),
    Condensation(Condensation),
    CondensationRequest(CondensationRequest),
    CondensationSummary(CondensationSummaryEvent),
    LlmCompletionLog(LLMCompletionLogEvent),
    Token(TokenEvent),
    StateUpdate(ConversationStateUpdateEvent),
    /// A kind this server does not know (read from a directory written by another version):
    /// kept verbatim, `kind` included.
    Unknown(Map<String, Value>),
}

/// `kind` -> fully qualified class name (for the `kind` search filter, EVENTS.md §1.4).
pub const KIND_PATHS: &[(&str, &str)] = &[
    (
        "SystemPromptEvent",
        "openhands.sdk.event.llm_convertible.system.SystemPromptEvent",
    ),
    (
        "MessageEvent",
        "openhands.sdk.event.llm_convertible.message.MessageEvent",
    ),
    (
        "ActionEvent",
        "openhands.sdk.event.llm_convertible.action.ActionEvent",
    ),
    (
        "ObservationEvent",
        "openhands.sdk.event.llm_convertible.observation.ObservationEvent",
    ),
    (
        "AgentErrorEvent",
        "openhands.sdk.event.llm_convertible.observation.AgentErrorEvent",
    ),
    (
        "UserRejectObservation",
        "openhands.sdk.event.llm_convertible.observation.UserRejectObservation",
    ),
    (
        "ConversationStateUpdateEvent",
        "openhands.sdk.event.conversation_state.ConversationStateUpdateEvent",
    ),
    ("PauseEvent", "openhands.sdk.event.user_action.PauseEvent"),
    (
        "ConversationErrorEvent",
        "openhands.sdk.event.conversation_error.ConversationErrorEvent",
    ),
    ("Condensation", "openhands.sdk.event.condenser.Condensation"),
    (
        "CondensationRequest",
        "openhands.sdk.event.condenser.CondensationRequest",
    ),
    (
        "CondensationSummaryEvent",
        "openhands.sdk.event.condenser.CondensationSummaryEvent",
    ),
    (
        "LLMCompletionLogEvent",
        "openhands.sdk.event.llm_completion_log.LLMCompletionLogEvent",
    ),
    ("TokenEvent", "openhands.sdk.event.token.TokenEvent"),
];

/// The short `kind` for a `?kind=` filter value. Only the fully qualified name matches, as in
/// the reference (DEVIATIONS allows the short name too, but the conformance golden records
/// that `?kind=ActionEvent` matches nothing, and clients send the full name).
pub fn kind_from_filter(filter: &str) -> Option<&'static str> {
    KIND_PATHS
        .iter()
        .find(|(_, full)| *full == filter)
        .map(|(short, _)| *short)
}

#[derive(Serialize)]
struct Tagged<'a, T> {
    kind: &'a str,
    #[serde(flatten)]
    inner: &'a T,
}

impl Event {
    pub fn kind(&self) -> &str {
        match self {
            Event::SystemPrompt(_) => "SystemPromptEvent",
            Event::Message(_) => "MessageEvent",
            Event::Action(_) => "ActionEvent",
            Event::Observation(_) => "ObservationEvent",
            Event::AgentError(_) => "AgentErrorEvent",
            Event::UserReject(_) => "UserRejectObservation",
            Event::Pause(_) => "PauseEvent",
            Event::ConversationError(_) => "ConversationErrorEvent",
            Event::Condensation(_) => "Condensation",
            Event::CondensationRequest(_) => "CondensationRequest",
            Event::CondensationSummary(_) => "CondensationSummaryEvent",
            Event::LlmCompletionLog(_) => "LLMCompletionLogEvent",
            Event::Token(_) => "TokenEvent",
            Event::StateUpdate(_) => "ConversationStateUpdateEvent",
            Event::Unknown(m) => m.get("kind").and_then(Value::as_str).unwrap_or(""),
        }
    }

    fn common(&self) -> (&str, &str, Option<Source>) {
        match self {
            Event::SystemPrompt(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::Message(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::Action(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::Observation(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::AgentError(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::UserReject(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::Pause(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::ConversationError(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::Condensation(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::CondensationRequest(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::CondensationSummary(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::LlmCompletionLog(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::Token(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::StateUpdate(e) => (&e.id, &e.timestamp, Some(e.source)),
            Event::Unknown(m) => (
                m.get("id").and_then(Value::as_str).unwrap_or(""),
                m.get("timestamp").and_then(Value::as_str).unwrap_or(""),
                m.get("source")
                    .and_then(|s| serde_json::from_value(s.clone()).ok()),
            ),
        }
    }

    pub fn id(&self) -> &str {
        self.common().0
    }

    pub fn timestamp(&self) -> &str {
        self.common().1
    }

    pub fn source(&self) -> Option<Source> {
        self.common().2
    }

    /// Replaces the timestamp (the log keeps timestamps non-decreasing in append order).
    pub fn set_timestamp(&mut self, ts: String) {
        match self {
            Event::SystemPrompt(e) => e.timestamp = ts,
            Event::Message(e) => e.timestamp = ts,
            Event::Action(e) => e.timestamp = ts,
            Event::Observation(e) => e.timestamp = ts,
            Event::AgentError(e) => e.timestamp = ts,
            Event::UserReject(e) => e.timestamp = ts,
            Event::Pause(e) => e.timestamp = ts,
            Event::ConversationError(e) => e.timestamp = ts,
            Event::Condensation(e) => e.timestamp = ts,
            Event::CondensationRequest(e) => e.timestamp = ts,
            Event::CondensationSummary(e) => e.timestamp = ts,
            Event::LlmCompletionLog(e) => e.timestamp = ts,
            Event::Token(e) => e.timestamp = ts,
            Event::StateUpdate(e) => e.timestamp = ts,
            Event::Unknown(m) => {
                m.insert("timestamp".into(), Value::String(ts));
            }
        }
    }

    /// The text the `body` search filter looks at: for MessageEvents the content texts, the
    /// extended content and the reasoning content joined by spaces; `None` for other kinds.
    pub fn search_text(&self) -> Option<String> {
        match self {
            Event::Message(m) => {
                let mut parts: Vec<&str> = m
                    .llm_message
                    .content
                    .iter()
                    .filter_map(|c| c.text())
                    .collect();
                parts.extend(m.extended_content.iter().map(|t| t.text.as_str()));
                if let Some(r) = &m.llm_message.reasoning_content {
                    parts.push(r);
                }
                Some(parts.join(" "))
            }
            _ => None,
        }
    }

    /// Compact API JSON (nulls included), the form of REST, WebSocket and webhooks.
    pub fn to_api_json(&self) -> String {
        wire::to_api_string(self)
    }

    /// The reference's file form (nulls omitted, Python separators, ASCII).
    pub fn to_disk_json(&self) -> std::io::Result<Vec<u8>> {
        wire::to_python_json(self)
    }

    /// A state-update event (`source: environment`) stamped now.
    pub fn state_update(key: &str, value: Value) -> Event {
        Event::StateUpdate(ConversationStateUpdateEvent {
            id: wire::new_event_id(),
            timestamp: wire::event_timestamp_now(),
            source: Source::Environment,
            key: key.to_string(),
            value,
        })
    }

    /// A PauseEvent stamped now.
    pub fn pause() -> Event {
        Event::Pause(PauseEvent {
            id: wire::new_event_id(),
            timestamp: wire::event_timestamp_now(),
            source: Source::User,
        })
    }

    /// A user MessageEvent stamped now.
    pub fn user_message(message: Message) -> Event {
        Event::Message(MessageEvent {
            id: wire::new_event_id(),
            timestamp: wire::event_timestamp_now(),
            source: Source::User,
            llm_message: message,
            llm_response_id: None,
            activated_skills: Vec::new(),
            extended_content: Vec::new(),
            sender: None,
        })
    }

    /// A ConversationErrorEvent stamped now.
    pub fn conversation_error(code: &str, detail: &str) -> Event {
        Event::ConversationError(ConversationErrorEvent {
            id: wire::new_event_id(),
            timestamp: wire::event_timestamp_now(),
            source: Source::Environment,
            code: code.to_string(),
            detail: detail.to_string(),
        })
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kind = self.kind();
        match self {
            Event::SystemPrompt(e) => Tagged { kind, inner: e }.serialize(s),
            Event::Message(e) => Tagged { kind, inner: e }.serialize(s),
            Event::Action(e) => Tagged { kind, inner: e }.serialize(s),
            Event::Observation(e) => Tagged { kind, inner: e }.serialize(s),
            Event::AgentError(e) => Tagged { kind, inner: e }.serialize(s),
            Event::UserReject(e) => Tagged { kind, inner: e }.serialize(s),
            Event::Pause(e) => Tagged { kind, inner: e }.serialize(s),
            Event::ConversationError(e) => Tagged { kind, inner: e }.serialize(s),
            Event::Condensation(e) => Tagged { kind, inner: e }.serialize(s),
            Event::CondensationRequest(e) => Tagged { kind, inner: e }.serialize(s),
            Event::CondensationSummary(e) => Tagged { kind, inner: e }.serialize(s),
            Event::LlmCompletionLog(e) => Tagged { kind, inner: e }.serialize(s),
            Event::Token(e) => Tagged { kind, inner: e }.serialize(s),
            Event::StateUpdate(e) => Tagged { kind, inner: e }.serialize(s),
            Event::Unknown(m) => {
                if omitting_none() {
                    strip_nulls(&Value::Object(m.clone())).serialize(s)
                } else {
                    m.serialize(s)
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut m = Map::deserialize(d)?;
        let kind = match m.get("kind") {
            Some(Value::String(k)) => k.clone(),
            _ => return Err(D::Error::custom("event without a string `kind`")),
        };
        fn parse<T: serde::de::DeserializeOwned, E: Error>(m: Map<String, Value>) -> Result<T, E> {
            serde_json::from_value(Value::Object(m)).map_err(E::custom)
        }
        let known = KIND_PATHS.iter().any(|(k, _)| *k == kind);
        if known {
            m.remove("kind");
        }
        Ok(match kind.as_str() {
            "SystemPromptEvent" => Event::SystemPrompt(parse(m)?),
            "MessageEvent" => Event::Message(parse(m)?),
            "ActionEvent" => Event::Action(parse(m)?),
            "ObservationEvent" => Event::Observation(parse(m)?),
            "AgentErrorEvent" => Event::AgentError(parse(m)?),
            "UserRejectObservation" => Event::UserReject(parse(m)?),
            "PauseEvent" => Event::Pause(parse(m)?),
            "ConversationErrorEvent" => Event::ConversationError(parse(m)?),
            "Condensation" => Event::Condensation(parse(m)?),
            "CondensationRequest" => Event::CondensationRequest(parse(m)?),
            "CondensationSummaryEvent" => Event::CondensationSummary(parse(m)?),
            "LLMCompletionLogEvent" => Event::LlmCompletionLog(parse(m)?),
            "TokenEvent" => Event::Token(parse(m)?),
            "ConversationStateUpdateEvent" => Event::StateUpdate(parse(m)?),
            _ => Event::Unknown(m),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const EXAMPLES: &str = "/work/shared/reference/examples/events";

    fn has_null(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Array(a) => a.iter().any(has_null),
            Value::Object(m) => m.values().any(has_null),
            _ => false,
        }
    }

    /// Every captured event parses and serializes back to the same JSON (API form for API
    /// captures, disk form for the files read from disk).
    #[test]
    fn examples_round_trip() {
        let dir = Path::new(EXAMPLES);
        if !dir.exists() {
            eprintln!("skipping: {EXAMPLES} not present");
            return;
        }
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let original: Value = serde_json::from_str(&text).unwrap();
            let items = match &original {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            for item in items {
                let ev: Event = serde_json::from_value(item.clone())
                    .unwrap_or_else(|e| panic!("{path:?}: {e}"));
                assert!(
                    !matches!(ev, Event::Unknown(_)),
                    "{path:?} parsed as unknown"
                );
                let api: Value = serde_json::from_str(&ev.to_api_json()).unwrap();
                let disk: Value = serde_json::from_slice(&ev.to_disk_json().unwrap()).unwrap();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                if name.contains("as_stored_on_disk") {
                    assert_eq!(disk, item, "{name} (disk form)");
                    assert_eq!(
                        api["value"],
                        Value::Null,
                        "{name}: missing value reads back as null"
                    );
                } else if has_null(&item)
                    || !name.starts_with("PauseEvent") && !name.contains("confirmation_policy")
                {
                    assert_eq!(api, item, "{name} (API form)");
                    assert_eq!(api.to_string(), item.to_string(), "{name}: key order");
                } else {
                    assert_eq!(disk, item, "{name} (disk form)");
                }
                n += 1;
            }
        }
        assert!(n >= 30, "only {n} examples");
    }

    #[test]
    fn disk_form_restores_nulls_of_builtin_tools() {
        let dir = Path::new("/work/shared/reference/examples/events");
        if !dir.exists() {
            return;
        }
        for name in [
            "ObservationEvent_TerminalObservation.json",
            "ActionEvent_FileEditorAction_create.json",
        ] {
            let original: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap();
            let ev: Event = serde_json::from_value(original.clone()).unwrap();
            let disk = ev.to_disk_json().unwrap();
            let back: Event = serde_json::from_slice(&disk).unwrap();
            let api: Value = serde_json::from_str(&back.to_api_json()).unwrap();
            assert_eq!(api.to_string(), original.to_string(), "{name}");
        }
    }

    #[test]
    fn unknown_kinds_round_trip() {
        let raw = serde_json::json!({"kind":"FutureEvent","id":"x","timestamp":"2026-01-01T00:00:00","source":"agent","extra":{"a":null}});
        let ev: Event = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(ev.kind(), "FutureEvent");
        assert_eq!(
            serde_json::from_str::<Value>(&ev.to_api_json()).unwrap(),
            raw
        );
    }

    #[test]
    fn kind_filter_takes_the_full_name() {
        assert_eq!(
            kind_from_filter("openhands.sdk.event.llm_convertible.action.ActionEvent"),
            Some("ActionEvent")
        );
        assert_eq!(kind_from_filter("ActionEvent"), None);
        assert_eq!(kind_from_filter("Nope"), None);
    }
}
