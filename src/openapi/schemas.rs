//! Schemas for what the server handles as plain JSON (request bodies validated by hand in
//! `model::requests`, pages assembled from stored JSON, actions and observations) and
//! `JsonSchema` impls for types whose serde form is hand-written. Component names follow the
//! reference document where it has one.

use std::borrow::Cow;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

use crate::bash::model::{BashCommand, BashEvent, BashOutput};
use crate::conversation::registry::SortOrder as ConversationSortOrder;
use crate::model::ConversationInfo;
use crate::model::agent::Llm;
use crate::model::conversation::{ConfirmationPolicy, SecretSource, SecurityAnalyzer, TokenUsage};
use crate::model::events::{self, Event};
use crate::model::message::Content;
use crate::model::secret::{Headers, Secret};
use crate::tools::{REGISTERED_TOOLS, ToolKind};

/// `$ref` to the component `name`.
pub fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// `$ref` to the component `name`, as a [`Schema`].
pub fn ref_schema(name: &str) -> Schema {
    Schema::new_ref(format!("#/components/schemas/{name}"))
}

/// The component name a `$ref` schema points at.
pub fn ref_name(schema: &Value) -> Option<&str> {
    schema
        .get("$ref")?
        .as_str()?
        .strip_prefix("#/components/schemas/")
}

/// `loc` of a validation error: field names and list indexes.
pub fn error_location(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    })
}

// ------------------------------------------------------------------------------------------
// Types with hand-written serde impls
// ------------------------------------------------------------------------------------------

impl JsonSchema for Secret {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // as the reference words it: a plain string (what responses carry, masked) or a
        // write-only password; a bare write-only string would forbid the field in responses
        json_schema!({
            "anyOf": [
                {"type": "string"},
                {"type": "string", "format": "password", "writeOnly": true},
            ],
            "description": "Sent in clear; always answered masked as `**********`.",
        })
    }
}

impl JsonSchema for Headers {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Headers".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Values of secret-looking header names are answered masked.",
        })
    }
}

/// `(kind, schema)` of every conversation event, from the event structs' own schemas.
fn event_variants(g: &mut SchemaGenerator) -> Vec<(&'static str, Schema)> {
    fn one<T: JsonSchema>(g: &mut SchemaGenerator) -> (&'static str, Schema) {
        let schema = g.subschema_for::<T>();
        let name = ref_name(schema.as_value())
            .map(str::to_string)
            .unwrap_or_default();
        let kind = events::KIND_PATHS
            .iter()
            .find(|(short, _)| *short == name)
            .map(|(short, _)| *short)
            .unwrap_or("");
        add_kind_tag(g, &name, kind);
        (kind, schema)
    }
    vec![
        one::<events::Condensation>(g),
        one::<events::CondensationRequest>(g),
        one::<events::CondensationSummaryEvent>(g),
        one::<events::ConversationErrorEvent>(g),
        one::<events::ConversationStateUpdateEvent>(g),
        one::<events::LLMCompletionLogEvent>(g),
        one::<events::ActionEvent>(g),
        one::<events::MessageEvent>(g),
        one::<events::AgentErrorEvent>(g),
        one::<events::ObservationEvent>(g),
        one::<events::UserRejectObservation>(g),
        one::<events::SystemPromptEvent>(g),
        one::<events::TokenEvent>(g),
        one::<events::PauseEvent>(g),
    ]
}

/// The event structs carry no `kind` field (the `Event` enum writes it): add it to the component.
fn add_kind_tag(g: &mut SchemaGenerator, component: &str, kind: &'static str) {
    if let Some(schema) = g.definitions_mut().get_mut(component)
        && let Ok(schema) = <&mut Schema>::try_from(schema)
    {
        KindTag(kind).apply(schema);
    }
}

/// A `oneOf` over `kind`-tagged members, with the discriminator OpenAPI tools understand.
fn tagged_union(members: Vec<(&str, Schema)>) -> Schema {
    let mut mapping = serde_json::Map::new();
    let mut one_of = Vec::new();
    for (kind, schema) in members {
        if let Some(r) = schema.get("$ref") {
            mapping.insert(kind.to_string(), r.clone());
        }
        one_of.push(schema.to_value());
    }
    json_schema!({
        "oneOf": one_of,
        "discriminator": {"propertyName": "kind", "mapping": mapping},
    })
}

impl JsonSchema for Event {
    fn schema_name() -> Cow<'static, str> {
        "Event".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let mut s = tagged_union(event_variants(g));
        s.insert(
            "description".into(),
            "Any conversation event, told apart by `kind`.".into(),
        );
        s
    }
}

impl JsonSchema for BashEvent {
    fn schema_name() -> Cow<'static, str> {
        "BashEventBase".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        tagged_union(vec![
            ("BashCommand", g.subschema_for::<BashCommand>()),
            ("BashOutput", g.subschema_for::<BashOutput>()),
        ])
    }
}

impl JsonSchema for ConversationSortOrder {
    fn schema_name() -> Cow<'static, str> {
        "ConversationSortOrder".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "enum": ConversationSortOrder::NAMES})
    }
}

/// Adds a constant `kind` property (required on output) to an object schema: for models whose
/// serializer writes the tag itself (`#[schemars(transform = KindTag("..."))]`).
#[derive(Debug, Clone, Copy)]
pub struct KindTag(pub &'static str);

impl KindTag {
    fn apply(&self, schema: &mut Schema) {
        let obj = schema.ensure_object();
        let props = obj
            .entry("properties")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Value::Object(props) = props {
            let mut out = serde_json::Map::new();
            out.insert(
                "kind".into(),
                json!({"type": "string", "const": self.0, "default": self.0}),
            );
            out.extend(
                std::mem::take(props)
                    .into_iter()
                    .filter(|(k, _)| k != "kind"),
            );
            *props = out;
        }
    }
}

impl schemars::transform::Transform for KindTag {
    fn transform(&mut self, schema: &mut Schema) {
        self.apply(schema);
    }
}

// ------------------------------------------------------------------------------------------
// Actions and observations: free-form JSON in the events, described per built-in tool
// ------------------------------------------------------------------------------------------

/// The tools this server runs, in a stable order.
pub fn tool_kinds() -> Vec<ToolKind> {
    REGISTERED_TOOLS
        .iter()
        .copied()
        .chain(["finish", "think"])
        .filter_map(ToolKind::from_name)
        .collect()
}

/// `TerminalAction` -> `TerminalObservation`.
fn observation_kind(tool: ToolKind) -> String {
    let action = tool.action_kind();
    format!(
        "{}Observation",
        action.strip_suffix("Action").unwrap_or(action)
    )
}

/// An action object: the tool call's arguments as the tool's LLM schema declares them (without
/// the `security_risk` argument, which goes to the ActionEvent), tagged with `kind`.
pub struct Action;

impl JsonSchema for Action {
    fn schema_name() -> Cow<'static, str> {
        "Action".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let mut members = Vec::new();
        for tool in tool_kinds() {
            let kind = tool.action_kind();
            let definition = crate::tools::spec::definition(tool, "<working_dir>", true);
            let mut params = definition
                .pointer("/function/parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"}));
            if let Some(props) = params.get_mut("properties").and_then(Value::as_object_mut) {
                props.remove("security_risk");
            }
            if let Some(req) = params.get_mut("required").and_then(Value::as_array_mut) {
                req.retain(|r| r != "security_risk");
            }
            // arguments the LLM may leave out are written as null in the action
            let required: Vec<Value> = params
                .get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(props) = params.get_mut("properties").and_then(Value::as_object_mut) {
                for (name, prop) in props.iter_mut() {
                    if !required.contains(&Value::from(name.as_str())) {
                        let inner = std::mem::take(prop);
                        *prop = json!({"anyOf": [inner, {"type": "null"}]});
                    }
                }
            }
            if let Some(obj) = params.as_object_mut() {
                obj.insert(
                    "description".into(),
                    format!("Arguments of a `{}` tool call.", tool.name()).into(),
                );
            }
            let mut schema = Schema::try_from(params).unwrap_or_else(|_| json_schema!({}));
            KindTag(kind).apply(&mut schema);
            g.definitions_mut()
                .insert(kind.to_string(), schema.to_value());
            members.push((kind, ref_schema(kind)));
        }
        let mut s = tagged_union(members);
        s.insert(
            "description".into(),
            "What the agent asked a tool to do; other kinds may be read from data written by other servers.".into(),
        );
        s
    }
}

/// An observation object: a tool's result, tagged with `kind`.
pub struct Observation;

impl JsonSchema for Observation {
    fn schema_name() -> Cow<'static, str> {
        "Observation".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let mut members = Vec::new();
        for tool in tool_kinds() {
            let kind = observation_kind(tool);
            let schema = match tool {
                ToolKind::Terminal => g.subschema_for::<TerminalObservation>(),
                ToolKind::FileEditor => g.subschema_for::<FileEditorObservation>(),
                ToolKind::TaskTracker => g.subschema_for::<TaskTrackerObservation>(),
                ToolKind::Finish => g.subschema_for::<FinishObservation>(),
                ToolKind::Think => g.subschema_for::<ThinkObservation>(),
            };
            members.push((kind, schema));
        }
        let members = members
            .iter()
            .map(|(k, s)| (k.as_str(), s.clone()))
            .collect();
        let mut s = tagged_union(members);
        s.insert(
            "description".into(),
            "A tool's result for an action.".into(),
        );
        s
    }
}

/// Fields every observation has.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct ObservationBase {
    /// What the LLM is shown.
    content: Vec<Content>,
    #[schemars(default)]
    is_error: bool,
}

/// The terminal's result.
#[derive(JsonSchema)]
#[schemars(transform = KindTag("TerminalObservation"))]
#[allow(dead_code)]
struct TerminalObservation {
    #[serde(flatten)]
    base: ObservationBase,
    /// The command as run; null when nothing was run.
    command: Option<String>,
    /// Null while the command is still running.
    exit_code: Option<i64>,
    /// True when the call returned before the command finished.
    #[schemars(default)]
    timeout: bool,
    metadata: CmdOutputMetadata,
    /// Where the full output was saved when it was too long to show.
    full_output_save_dir: Option<String>,
}

/// What the shell prompt reported after a command.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct CmdOutputMetadata {
    #[schemars(default = "minus_one")]
    exit_code: i64,
    #[schemars(default = "minus_one")]
    pid: i64,
    username: Option<String>,
    hostname: Option<String>,
    working_dir: Option<String>,
    py_interpreter_path: Option<String>,
    #[schemars(default)]
    prefix: String,
    #[schemars(default)]
    suffix: String,
}

fn minus_one() -> i64 {
    -1
}

/// The file editor's result.
#[derive(JsonSchema)]
#[schemars(transform = KindTag("FileEditorObservation"))]
#[allow(dead_code)]
struct FileEditorObservation {
    #[serde(flatten)]
    base: ObservationBase,
    #[schemars(schema_with = "file_editor_command")]
    command: String,
    path: Option<String>,
    /// False when `create` made a new file.
    #[schemars(default = "yes")]
    prev_exist: bool,
    old_content: Option<String>,
    new_content: Option<String>,
}

fn yes() -> bool {
    true
}

fn file_editor_command(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": ["view", "create", "str_replace", "insert", "undo_edit"]})
}

/// The task tracker's result.
#[derive(JsonSchema)]
#[schemars(transform = KindTag("TaskTrackerObservation"))]
#[allow(dead_code)]
struct TaskTrackerObservation {
    #[serde(flatten)]
    base: ObservationBase,
    #[schemars(schema_with = "task_tracker_command")]
    command: String,
    #[schemars(default)]
    task_list: Vec<TaskItem>,
}

fn task_tracker_command(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": ["view", "plan"]})
}

/// One task of the task tracker.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct TaskItem {
    title: String,
    #[schemars(default)]
    notes: String,
    #[schemars(schema_with = "task_status")]
    status: String,
}

fn task_status(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": ["todo", "in_progress", "done"], "default": "todo"})
}

/// The finish tool's result.
#[derive(JsonSchema)]
#[schemars(transform = KindTag("FinishObservation"))]
#[allow(dead_code)]
struct FinishObservation {
    #[serde(flatten)]
    base: ObservationBase,
}

/// The think tool's result.
#[derive(JsonSchema)]
#[schemars(transform = KindTag("ThinkObservation"))]
#[allow(dead_code)]
struct ThinkObservation {
    #[serde(flatten)]
    base: ObservationBase,
}

// ------------------------------------------------------------------------------------------
// Pieces of LLM data kept as JSON in the model
// ------------------------------------------------------------------------------------------

/// Anthropic extended thinking, kept as the provider sent it.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct ThinkingBlock {
    #[schemars(schema_with = "thinking_tag")]
    r#type: String,
    thinking: String,
    signature: String,
}

fn thinking_tag(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "const": "thinking", "default": "thinking"})
}

/// Anthropic thinking the provider withheld; only its encrypted data.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct RedactedThinkingBlock {
    #[schemars(schema_with = "redacted_tag")]
    r#type: String,
    data: String,
}

fn redacted_tag(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "const": "redacted_thinking", "default": "redacted_thinking"})
}

/// One of the two thinking block kinds.
#[derive(JsonSchema)]
#[schemars(inline)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum AnyThinkingBlock {
    Thinking(ThinkingBlock),
    Redacted(RedactedThinkingBlock),
}

/// An OpenAI Responses reasoning item, kept as the provider sent it.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct ReasoningItemModel {
    id: Option<String>,
    #[schemars(default)]
    summary: Vec<String>,
    content: Option<Vec<String>>,
    encrypted_content: Option<String>,
    status: Option<String>,
}

/// A tool definition as given to the LLM.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct ChatCompletionToolParam {
    /// Always `function` here.
    r#type: String,
    function: ChatCompletionToolParamFunctionChunk,
    cache_control: Option<ChatCompletionCachedContent>,
}

/// The function part of a tool definition.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct ChatCompletionToolParamFunctionChunk {
    name: String,
    description: Option<String>,
    /// A JSON Schema of the arguments.
    parameters: Option<serde_json::Map<String, Value>>,
    strict: Option<bool>,
}

/// A prompt-caching marker.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct ChatCompletionCachedContent {
    #[schemars(schema_with = "ephemeral")]
    r#type: String,
}

fn ephemeral(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "const": "ephemeral"})
}

/// When a skill applies: on keywords in a message, or for a task.
#[derive(JsonSchema)]
#[schemars(inline)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SkillTrigger {
    Keyword(KeywordTrigger),
    Task(TaskTrigger),
}

/// A skill that applies when a message contains one of the keywords.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct KeywordTrigger {
    #[schemars(schema_with = "keyword_tag")]
    r#type: String,
    keywords: Vec<String>,
}

fn keyword_tag(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "const": "keyword", "default": "keyword"})
}

/// A skill run as a task, asking for its inputs.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct TaskTrigger {
    #[schemars(schema_with = "task_tag")]
    r#type: String,
    triggers: Vec<String>,
}

fn task_tag(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "const": "task", "default": "task"})
}

// ------------------------------------------------------------------------------------------
// Bodies the routes validate by hand or assemble from stored JSON
// ------------------------------------------------------------------------------------------

/// Body of `PATCH /api/conversations/{conversation_id}`.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct UpdateConversationRequest {
    /// The new title; surrounding whitespace is removed.
    #[schemars(length(min = 1, max = 200))]
    title: String,
}

/// Body of `POST .../confirmation_policy`.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct SetConfirmationPolicyRequest {
    policy: ConfirmationPolicy,
}

/// Body of `POST .../security_analyzer`; null removes the analyzer.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct SetSecurityAnalyzerRequest {
    #[schemars(schema_with = "nullable_analyzer")]
    security_analyzer: Option<SecurityAnalyzer>,
}

fn nullable_analyzer(g: &mut SchemaGenerator) -> Schema {
    json_schema!({"anyOf": [g.subschema_for::<SecurityAnalyzer>(), {"type": "null"}]})
}

/// A secret given to `POST .../secrets`: a plain string and `{"value": ...}` without `kind`
/// both mean a StaticSecret.
struct SecretInput;

impl JsonSchema for SecretInput {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "SecretInput".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let source = g.subschema_for::<SecretSource>();
        let secret = g.subschema_for::<Secret>();
        json_schema!({
            "anyOf": [
                source,
                secret,
                {"type": "object", "properties": {"value": secret, "description": {"type": "string"}}, "required": ["value"]},
            ]
        })
    }
}

/// Body of `POST .../secrets`: merged into the conversation's secrets by name.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct UpdateSecretsRequest {
    secrets: IndexMap<String, SecretInput>,
}

/// Body of `POST .../events/respond_to_confirmation`.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct ConfirmationResponseRequest {
    /// True runs the pending actions; false rejects them.
    accept: bool,
    /// Recorded in the rejection observations.
    #[schemars(default = "default_reason")]
    reason: String,
}

fn default_reason() -> String {
    "User rejected the action.".into()
}

/// Body of `POST .../generate_title` (optional as a whole).
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct GenerateTitleRequest {
    #[schemars(default = "default_max_length", range(min = 1, max = 200))]
    max_length: i64,
    /// The LLM to ask; the agent's LLM when null.
    #[schemars(default)]
    llm: Option<Llm>,
}

fn default_max_length() -> i64 {
    50
}

/// Body of `POST .../ask_agent`.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct AskAgentRequest {
    /// Answered from the conversation's context without adding events.
    question: String,
}

/// Multipart body of `POST /api/file/upload/{path}`.
#[derive(JsonSchema)]
#[schemars(rename = "Body_upload_file_api_file_upload__path__post")]
#[allow(dead_code)]
pub struct UploadFileBody {
    #[schemars(schema_with = "binary")]
    file: Vec<u8>,
}

fn binary(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "binary"})
}

/// The FastAPI-style 422 body.
#[derive(JsonSchema)]
#[schemars(rename = "HTTPValidationError")]
#[allow(dead_code)]
pub struct HttpValidationError {
    detail: Vec<crate::error::ValidationItem>,
}

/// A page of conversations.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct ConversationPage {
    items: Vec<ConversationInfo<'static>>,
    /// Pass as `page_id` for the next page; null on the last one.
    next_page_id: Option<String>,
}

/// A page of events.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct EventPage {
    #[schemars(schema_with = "inline_events")]
    items: Vec<Event>,
    /// Pass as `page_id` for the next page; null on the last one.
    next_page_id: Option<String>,
}

fn inline_events(g: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "items": Event::json_schema(g)})
}

/// A page of bash events.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct BashEventPage {
    #[schemars(schema_with = "inline_bash_events")]
    items: Vec<BashEvent>,
    /// Pass as `page_id` for the next page (a file name); null on the last one.
    next_page_id: Option<String>,
}

fn inline_bash_events(g: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "items": BashEvent::json_schema(g)})
}

/// The `metrics` of a ConversationInfo: totals without the per-call lists.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct MetricsSnapshot {
    model_name: String,
    accumulated_cost: f64,
    max_budget_per_task: Option<f64>,
    accumulated_token_usage: Option<TokenUsage>,
}

/// `sort_order` of an event search.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub enum EventSortOrder {
    #[serde(rename = "TIMESTAMP")]
    Timestamp,
    #[serde(rename = "TIMESTAMP_DESC")]
    TimestampDesc,
}

/// `sort_order` of a bash event search.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub enum BashEventSortOrder {
    #[serde(rename = "TIMESTAMP")]
    Timestamp,
    #[serde(rename = "TIMESTAMP_DESC")]
    TimestampDesc,
}
