//! Agent configuration (EVENTS.md §6.5, §6.10): `Agent`, `LLM` with every default the reference
//! echoes, `AgentContext`/skills, condensers and tool specs. Secret fields are [`Secret`]s.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::secret::{self, Secret};
use super::wire::skip_none;

/// The `"kind": "Agent"` tag (the only agent class).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub enum AgentKind {
    #[default]
    Agent,
}

/// The LLM settings (`llm/llm.py`), keys in the reference's order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "LLM")]
#[serde(deny_unknown_fields)]
pub struct Llm {
    #[serde(default = "d_model")]
    pub model: String,
    #[serde(
        default,
        deserialize_with = "secret::opt",
        skip_serializing_if = "skip_none"
    )]
    pub api_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub api_version: Option<String>,
    #[serde(
        default,
        deserialize_with = "secret::opt",
        skip_serializing_if = "skip_none"
    )]
    pub aws_access_key_id: Option<Secret>,
    #[serde(
        default,
        deserialize_with = "secret::opt",
        skip_serializing_if = "skip_none"
    )]
    pub aws_secret_access_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub aws_region_name: Option<String>,
    #[serde(default = "d_openrouter_site_url")]
    pub openrouter_site_url: String,
    #[serde(default = "d_openrouter_app_name")]
    pub openrouter_app_name: String,
    #[serde(default = "d_num_retries")]
    #[schemars(range(min = 0))]
    pub num_retries: i64,
    #[serde(default = "d_retry_multiplier")]
    #[schemars(range(min = 0.0))]
    pub retry_multiplier: f64,
    #[serde(default = "d_retry_min_wait")]
    #[schemars(range(min = 0))]
    pub retry_min_wait: i64,
    #[serde(default = "d_retry_max_wait")]
    #[schemars(range(min = 0))]
    pub retry_max_wait: i64,
    #[serde(default, skip_serializing_if = "skip_none")]
    #[schemars(range(min = 0))]
    pub timeout: Option<i64>,
    #[serde(default = "d_max_message_chars")]
    #[schemars(range(min = 1))]
    pub max_message_chars: i64,
    #[serde(default, skip_serializing_if = "skip_none")]
    #[schemars(range(min = 0.0))]
    pub temperature: Option<f64>,
    #[serde(default = "d_top_p", skip_serializing_if = "skip_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "skip_none")]
    #[schemars(range(min = 0.0))]
    pub top_k: Option<f64>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub custom_llm_provider: Option<String>,
    #[serde(default, skip_serializing_if = "skip_none")]
    #[schemars(range(min = 1))]
    pub max_input_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "skip_none")]
    #[schemars(range(min = 1))]
    pub max_output_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub model_canonical_name: Option<String>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub extra_headers: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "skip_none")]
    #[schemars(range(min = 0.0))]
    pub input_cost_per_token: Option<f64>,
    #[serde(default, skip_serializing_if = "skip_none")]
    #[schemars(range(min = 0.0))]
    pub output_cost_per_token: Option<f64>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub ollama_base_url: Option<String>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default = "d_true")]
    pub drop_params: bool,
    #[serde(default = "d_true")]
    pub modify_params: bool,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub disable_vision: Option<bool>,
    #[serde(default = "d_some_false", skip_serializing_if = "skip_none")]
    pub disable_stop_word: Option<bool>,
    #[serde(default = "d_true")]
    pub caching_prompt: bool,
    #[serde(default)]
    pub log_completions: bool,
    #[serde(default = "d_log_folder")]
    pub log_completions_folder: String,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub custom_tokenizer: Option<String>,
    #[serde(default = "d_true")]
    pub native_tool_calling: bool,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub force_string_serializer: Option<bool>,
    #[serde(default = "d_reasoning_effort", skip_serializing_if = "skip_none")]
    pub reasoning_effort: Option<String>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub reasoning_summary: Option<String>,
    /// `false` as in the 1.4.1 wheel the conformance goldens were recorded with (the commit
    /// 93d405c9 captures in `examples/` show `true`; CONFIG.md §9).
    #[serde(default)]
    pub enable_encrypted_reasoning: bool,
    #[serde(default = "d_cache_retention", skip_serializing_if = "skip_none")]
    pub prompt_cache_retention: Option<String>,
    #[serde(default = "d_thinking_budget", skip_serializing_if = "skip_none")]
    pub extended_thinking_budget: Option<i64>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub safety_settings: Option<Value>,
    #[serde(default = "d_usage_id")]
    pub usage_id: String,
    #[serde(default)]
    pub litellm_extra_body: Map<String, Value>,
    #[serde(rename = "OVERRIDE_ON_SERIALIZE", default = "d_override")]
    pub override_on_serialize: Vec<String>,
}

fn d_model() -> String {
    "claude-sonnet-4-20250514".into()
}
fn d_openrouter_site_url() -> String {
    "https://docs.all-hands.dev/".into()
}
fn d_openrouter_app_name() -> String {
    "OpenHands".into()
}
fn d_num_retries() -> i64 {
    5
}
fn d_retry_multiplier() -> f64 {
    8.0
}
fn d_retry_min_wait() -> i64 {
    8
}
fn d_retry_max_wait() -> i64 {
    64
}
fn d_max_message_chars() -> i64 {
    30000
}
fn d_top_p() -> Option<f64> {
    Some(1.0)
}
fn d_true() -> bool {
    true
}
fn d_some_false() -> Option<bool> {
    Some(false)
}
fn d_log_folder() -> String {
    "logs/completions".into()
}
fn d_reasoning_effort() -> Option<String> {
    Some("high".into())
}
fn d_cache_retention() -> Option<String> {
    Some("24h".into())
}
fn d_thinking_budget() -> Option<i64> {
    Some(200000)
}
fn d_usage_id() -> String {
    "default".into()
}
fn d_override() -> Vec<String> {
    [
        "api_key",
        "aws_access_key_id",
        "aws_secret_access_key",
        "litellm_extra_body",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for Llm {
    fn default() -> Self {
        serde_json::from_value(Value::Object(Map::new())).expect("every LLM field has a default")
    }
}

impl Llm {
    /// The reference's model validators: computed temperature, `openhands/` proxy rewrite,
    /// Azure API version, Hugging Face top_p.
    pub fn normalize(&mut self) {
        if let Some(rest) = self.model.strip_prefix("openhands/") {
            self.model = format!("litellm_proxy/{rest}");
            if self.base_url.is_none() {
                self.base_url = Some("https://llm-proxy.app.all-hands.dev/".into());
            }
        }
        if self.model.starts_with("azure") && self.api_version.is_none() {
            self.api_version = Some("2024-12-01-preview".into());
        }
        if self.model.starts_with("huggingface") && self.top_p == Some(1.0) {
            self.top_p = Some(0.9);
        }
        if self.temperature.is_none() {
            self.temperature = Some(if self.model.contains("kimi-k2-thinking") {
                1.0
            } else {
                0.0
            });
        }
    }
}

/// `{"name": str, "params": {}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Tool")]
pub struct ToolSpec {
    pub name: String,
    #[serde(default)]
    pub params: Map<String, Value>,
}

/// A skill of the agent context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Skill {
    pub name: String,
    pub content: String,
    /// `null`, `{"type":"keyword","keywords":[...]}` or `{"type":"task","triggers":[...]}`.
    #[schemars(with = "Option<crate::openapi::schemas::SkillTrigger>")]
    #[serde(default, skip_serializing_if = "skip_none")]
    pub trigger: Option<Value>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub mcp_tools: Option<Value>,
    #[serde(default)]
    pub inputs: Vec<InputMetadata>,
}

/// An input a task skill asks for.
// unknown keys are dropped, as pydantic does
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InputMetadata {
    pub name: String,
    pub description: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "AgentContext-Output")]
pub struct AgentContext {
    #[serde(default)]
    pub skills: Vec<Skill>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub system_message_suffix: Option<String>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub user_message_suffix: Option<String>,
    #[serde(default)]
    pub load_user_skills: bool,
    #[serde(default)]
    pub load_public_skills: bool,
}

/// Context condensers (`kind`-tagged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "CondenserBase")]
#[serde(tag = "kind")]
pub enum Condenser {
    LLMSummarizingCondenser {
        llm: Box<Llm>,
        #[serde(default = "d_max_size")]
        max_size: i64,
        #[serde(default = "d_keep_first")]
        keep_first: i64,
    },
    NoOpCondenser {},
    PipelineCondenser {
        #[serde(default)]
        condensers: Vec<Condenser>,
    },
}

fn d_max_size() -> i64 {
    120
}
fn d_keep_first() -> i64 {
    4
}

impl Condenser {
    /// Every LLM inside (for stats registration and normalization).
    pub fn llms_mut(&mut self) -> Vec<&mut Llm> {
        match self {
            Condenser::LLMSummarizingCondenser { llm, .. } => vec![&mut **llm],
            Condenser::NoOpCondenser {} => Vec::new(),
            Condenser::PipelineCondenser { condensers } => {
                condensers.iter_mut().flat_map(|c| c.llms_mut()).collect()
            }
        }
    }
    pub fn llms(&self) -> Vec<&Llm> {
        match self {
            Condenser::LLMSummarizingCondenser { llm, .. } => vec![&**llm],
            Condenser::NoOpCondenser {} => Vec::new(),
            Condenser::PipelineCondenser { condensers } => {
                condensers.iter().flat_map(|c| c.llms()).collect()
            }
        }
    }
}

/// The agent (`kind: "Agent"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Agent-Output")]
pub struct Agent {
    #[serde(default)]
    pub kind: AgentKind,
    pub llm: Llm,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    #[serde(default)]
    pub mcp_config: Map<String, Value>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub filter_tools_regex: Option<String>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub agent_context: Option<AgentContext>,
    #[serde(default = "d_prompt_file")]
    pub system_prompt_filename: String,
    #[serde(default)]
    pub system_prompt_kwargs: Map<String, Value>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub condenser: Option<Condenser>,
}

fn d_prompt_file() -> String {
    "system_prompt.j2".into()
}

impl Agent {
    /// Applies the reference's "before" validators: `llm_security_analyzer: true` in the prompt
    /// kwargs unless given, and the LLM validators of every LLM.
    pub fn normalize(&mut self) {
        if !self
            .system_prompt_kwargs
            .contains_key("llm_security_analyzer")
        {
            self.system_prompt_kwargs
                .insert("llm_security_analyzer".into(), Value::Bool(true));
        }
        self.llm.normalize();
        if let Some(c) = &mut self.condenser {
            for l in c.llms_mut() {
                l.normalize();
            }
        }
    }

    /// The agent LLM then the condenser LLMs (the order stats are registered in).
    pub fn llms(&self) -> Vec<&Llm> {
        let mut v = vec![&self.llm];
        if let Some(c) = &self.condenser {
            v.extend(c.llms());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn llm_defaults_match_the_reference_echo() {
        let mut llm: Llm = serde_json::from_value(
            json!({"model":"openai/fake-model","api_key":"sk","usage_id":"agent"}),
        )
        .unwrap();
        llm.normalize();
        let v = serde_json::to_value(&llm).unwrap();
        assert_eq!(v["api_key"], json!("**********"));
        assert_eq!(v["temperature"], json!(0.0));
        assert_eq!(v["reasoning_effort"], json!("high"));
        assert_eq!(v["disable_stop_word"], json!(false));
        assert_eq!(v["enable_encrypted_reasoning"], json!(false));
        assert_eq!(v.as_object().unwrap().len(), 47);
        assert!(v.to_string().contains("\"retry_multiplier\":8.0"));
    }

    #[test]
    fn masked_input_means_no_key() {
        let llm: Llm = serde_json::from_value(json!({"model":"m","api_key":"**********"})).unwrap();
        assert!(llm.api_key.is_none());
    }
}
