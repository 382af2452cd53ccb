//! Conversation-level models (EVENTS.md §3, §6): execution status, confirmation policies,
//! security analyzers, secret sources, workspace, metrics/stats, `ConversationState`,
//! `ConversationInfo`, `StoredConversation` (`meta.json`) and the request bodies.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::agent::Agent;
use super::message::{Content, Role};
use super::secret::{self, Headers, Secret};
use super::wire::skip_none;

/// `execution_status` (EVENTS.md §3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "ConversationExecutionStatus")]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    #[default]
    Idle,
    Running,
    Paused,
    WaitingForConfirmation,
    Finished,
    Error,
    Stuck,
}

impl ExecutionStatus {
    pub const ALL: [&'static str; 7] = [
        "idle",
        "running",
        "paused",
        "waiting_for_confirmation",
        "finished",
        "error",
        "stuck",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Idle => "idle",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Paused => "paused",
            ExecutionStatus::WaitingForConfirmation => "waiting_for_confirmation",
            ExecutionStatus::Finished => "finished",
            ExecutionStatus::Error => "error",
            ExecutionStatus::Stuck => "stuck",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }
}

/// A risk threshold of `ConfirmRisky` (`UNKNOWN` is rejected on input).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
#[serde(rename_all = "UPPERCASE")]
pub enum Threshold {
    Low,
    Medium,
    #[default]
    High,
}

/// Confirmation policies (EVENTS.md §6.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "ConfirmationPolicyBase")]
#[serde(tag = "kind")]
pub enum ConfirmationPolicy {
    AlwaysConfirm {},
    NeverConfirm {},
    ConfirmRisky {
        #[serde(default)]
        threshold: Threshold,
        #[serde(default = "d_true")]
        confirm_unknown: bool,
    },
}

fn d_true() -> bool {
    true
}

impl Default for ConfirmationPolicy {
    fn default() -> Self {
        ConfirmationPolicy::NeverConfirm {}
    }
}

impl ConfirmationPolicy {
    pub const KINDS: [&'static str; 3] = ["AlwaysConfirm", "ConfirmRisky", "NeverConfirm"];
}

/// Security analyzers (EVENTS.md §6.7): only the LLM one exists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
#[serde(tag = "kind")]
pub enum SecurityAnalyzer {
    LLMSecurityAnalyzer {},
}

/// A secret source (EVENTS.md §6.8).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
#[serde(tag = "kind")]
pub enum SecretSource {
    StaticSecret {
        #[serde(default, skip_serializing_if = "skip_none")]
        description: Option<String>,
        #[serde(default, deserialize_with = "secret::opt")]
        value: Option<Secret>,
    },
    LookupSecret {
        #[serde(default, skip_serializing_if = "skip_none")]
        description: Option<String>,
        url: String,
        #[serde(default)]
        headers: Headers,
    },
}

impl SecretSource {
    pub fn static_value(value: impl Into<String>) -> Self {
        SecretSource::StaticSecret {
            description: None,
            value: Some(Secret::new(value)),
        }
    }

    /// False for a static secret whose value was lost (e.g. restored without a key).
    pub fn is_usable(&self) -> bool {
        match self {
            SecretSource::StaticSecret { value, .. } => value.is_some(),
            SecretSource::LookupSecret { .. } => true,
        }
    }
}

pub type SecretMap = IndexMap<String, SecretSource>;

/// `{"secret_sources": {...}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "SecretRegistry-Output")]
pub struct SecretRegistry {
    #[serde(default)]
    pub secret_sources: SecretMap,
}

/// The `"kind": "LocalWorkspace"` tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub enum WorkspaceKind {
    #[default]
    LocalWorkspace,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "LocalWorkspace")]
pub struct Workspace {
    #[serde(default)]
    pub kind: WorkspaceKind,
    pub working_dir: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenUsage {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub prompt_tokens: i64,
    #[serde(default)]
    pub completion_tokens: i64,
    #[serde(default)]
    pub cache_read_tokens: i64,
    #[serde(default)]
    pub cache_write_tokens: i64,
    #[serde(default)]
    pub reasoning_tokens: i64,
    #[serde(default)]
    pub context_window: i64,
    #[serde(default)]
    pub per_turn_token: i64,
    #[serde(default)]
    pub response_id: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cost {
    pub model: String,
    pub cost: f64,
    /// Unix seconds.
    pub timestamp: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResponseLatency {
    pub model: String,
    pub latency: f64,
    pub response_id: String,
}

/// Metrics of one LLM (full form with lists: ConversationInfo, `full_state`, `base_state.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Metrics {
    #[serde(default)]
    pub model_name: String,
    #[serde(default)]
    pub accumulated_cost: f64,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub max_budget_per_task: Option<f64>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub accumulated_token_usage: Option<TokenUsage>,
    #[serde(default)]
    pub costs: Vec<Cost>,
    #[serde(default)]
    pub response_latencies: Vec<ResponseLatency>,
    #[serde(default)]
    pub token_usages: Vec<TokenUsage>,
}

impl Metrics {
    /// Zeroed metrics for a newly registered LLM.
    pub fn new(model: &str) -> Self {
        Metrics {
            model_name: model.to_string(),
            accumulated_token_usage: Some(TokenUsage {
                model: model.to_string(),
                ..TokenUsage::default()
            }),
            ..Metrics::default()
        }
    }

    /// The snapshot form used by `stats` state updates (no lists, `max_budget_per_task` kept).
    pub fn snapshot(&self) -> Value {
        serde_json::json!({
            "model_name": self.model_name,
            "accumulated_cost": self.accumulated_cost,
            "max_budget_per_task": self.max_budget_per_task,
            "accumulated_token_usage": self.accumulated_token_usage,
        })
    }
}

/// `{"usage_to_metrics": {usage_id: Metrics}}`, in registration order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "ConversationStats-Output")]
pub struct ConversationStats {
    #[serde(default)]
    pub usage_to_metrics: IndexMap<String, Metrics>,
}

impl ConversationStats {
    /// Registers the agent's LLMs with zeroed metrics (agent LLM first, then condenser LLMs).
    pub fn for_agent(agent: &Agent) -> Self {
        let mut s = ConversationStats::default();
        for llm in agent.llms() {
            s.usage_to_metrics
                .entry(llm.usage_id.clone())
                .or_insert_with(|| Metrics::new(&llm.model));
        }
        s
    }

    /// The value of a `stats` ConversationStateUpdateEvent.
    pub fn snapshot(&self) -> Value {
        let m: serde_json::Map<String, Value> = self
            .usage_to_metrics
            .iter()
            .map(|(k, v)| (k.clone(), v.snapshot()))
            .collect();
        serde_json::json!({ "usage_to_metrics": m })
    }
}

/// The conversation state (`base_state.json`, `full_state`, first part of ConversationInfo).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub struct ConversationState {
    /// Dashed in every JSON form.
    pub id: Uuid,
    pub agent: Agent,
    pub workspace: Workspace,
    #[serde(default = "d_persistence_dir")]
    pub persistence_dir: String,
    #[serde(default = "d_max_iterations")]
    pub max_iterations: i64,
    #[serde(default = "d_true")]
    pub stuck_detection: bool,
    #[serde(default)]
    pub execution_status: ExecutionStatus,
    #[serde(default)]
    pub confirmation_policy: ConfirmationPolicy,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub security_analyzer: Option<SecurityAnalyzer>,
    #[serde(default)]
    pub activated_knowledge_skills: Vec<String>,
    #[serde(default)]
    pub stats: ConversationStats,
    #[serde(default, alias = "secrets_manager")]
    pub secret_registry: SecretRegistry,
}

fn d_persistence_dir() -> String {
    "workspace/conversations".into()
}
pub fn d_max_iterations() -> i64 {
    500
}

/// ConversationInfo: the state, then `title`, `metrics`, `created_at`, `updated_at`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConversationInfo<'a> {
    #[serde(flatten)]
    pub state: &'a ConversationState,
    pub title: Option<&'a str>,
    #[schemars(with = "Option<crate::openapi::schemas::MetricsSnapshot>")]
    pub metrics: Option<&'a Value>,
    pub created_at: &'a str,
    pub updated_at: &'a str,
}

/// SendMessageRequest (POST .../events, `initial_message`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SendMessageRequest {
    #[serde(default)]
    pub role: Role,
    #[serde(default)]
    pub content: Vec<Content>,
    #[serde(default)]
    pub run: bool,
}

/// A validated start request (API.md §2.1).
#[derive(Clone, Debug, PartialEq, JsonSchema)]
pub struct StartConversationRequest {
    pub agent: Agent,
    pub workspace: Workspace,
    /// Reuse this id; a loaded conversation with it is returned unchanged.
    #[schemars(default)]
    pub conversation_id: Option<Uuid>,
    #[schemars(default)]
    pub confirmation_policy: ConfirmationPolicy,
    /// Sent as the first user message; it starts a run.
    #[schemars(default)]
    pub initial_message: Option<SendMessageRequest>,
    #[schemars(default = "d_max_iterations", range(min = 1))]
    pub max_iterations: i64,
    #[schemars(default = "d_true")]
    pub stuck_detection: bool,
    #[schemars(default)]
    pub secrets: SecretMap,
}

/// `meta.json` (StoredConversation, EVENTS.md §6.3): compact JSON, nulls kept, secrets
/// encrypted with the server key (or masked without one). This server rewrites it on every
/// state change with the *current* policy and secrets (DEVIATIONS #5, #6), so both servers
/// restore the same state from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredConversation {
    pub agent: Agent,
    pub workspace: Workspace,
    #[serde(default)]
    pub conversation_id: Option<Uuid>,
    #[serde(default)]
    pub confirmation_policy: ConfirmationPolicy,
    #[serde(default)]
    pub initial_message: Option<SendMessageRequest>,
    #[serde(default = "d_max_iterations")]
    pub max_iterations: i64,
    #[serde(default = "d_true")]
    pub stuck_detection: bool,
    #[serde(default)]
    pub secrets: SecretMap,
    /// 32-hex.
    #[serde(with = "uuid::serde::simple")]
    pub id: Uuid,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub metrics: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// `{"items": [...], "next_page_id": ...}`.
#[derive(Debug, Serialize)]
pub struct Page<T: Serialize> {
    pub items: Vec<T>,
    pub next_page_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_and_statuses() {
        assert_eq!(
            serde_json::to_value(ConfirmationPolicy::default()).unwrap(),
            json!({"kind":"NeverConfirm"})
        );
        let p: ConfirmationPolicy = serde_json::from_value(json!({"kind":"ConfirmRisky"})).unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"kind":"ConfirmRisky","threshold":"HIGH","confirm_unknown":true})
        );
        assert_eq!(
            ExecutionStatus::parse("waiting_for_confirmation"),
            Some(ExecutionStatus::WaitingForConfirmation)
        );
        assert_eq!(ExecutionStatus::parse("RUNNING"), None);
        let a: SecurityAnalyzer =
            serde_json::from_value(json!({"kind":"LLMSecurityAnalyzer"})).unwrap();
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            json!({"kind":"LLMSecurityAnalyzer"})
        );
    }

    #[test]
    fn secrets_are_masked_in_the_api_form() {
        let s: SecretSource = serde_json::from_value(json!({"kind":"LookupSecret","url":"http://x","headers":{"X-Api-Key":"k","Accept":"a"}})).unwrap();
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"kind":"LookupSecret","description":null,"url":"http://x","headers":{"X-Api-Key":"**********","Accept":"a"}})
        );
        let s = SecretSource::static_value("v");
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"kind":"StaticSecret","description":null,"value":"**********"})
        );
    }
}
