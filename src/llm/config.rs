//! The subset of the wire `LLM` object (EVENTS.md §6.10) that changes what is sent to a provider,
//! read leniently from JSON (unknown keys ignored, `null` = default) so the caller can hand over
//! the agent's `llm` value as stored.

use serde::Deserialize;
use serde_json::{Map, Value};

/// An LLM configuration as the agent loop needs it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct LlmConfig {
    pub model: String,
    pub api_key: Option<String>,
    pub base_url: Option<String>,
    pub api_version: Option<String>,
    /// Total attempts at the SDK layer (0 and 1 both mean one attempt).
    pub num_retries: u32,
    pub retry_multiplier: f64,
    pub retry_min_wait: f64,
    pub retry_max_wait: f64,
    /// Seconds per HTTP request; `None` = the provider client's default (600 s).
    pub timeout: Option<f64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<f64>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub extra_headers: Option<Map<String, Value>>,
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    pub custom_llm_provider: Option<String>,
    pub ollama_base_url: Option<String>,
    pub openrouter_site_url: Option<String>,
    pub openrouter_app_name: Option<String>,
    pub stream: bool,
    pub drop_params: bool,
    pub disable_vision: Option<bool>,
    pub disable_stop_word: Option<bool>,
    pub caching_prompt: bool,
    pub native_tool_calling: bool,
    pub force_string_serializer: Option<bool>,
    pub reasoning_effort: Option<String>,
    pub reasoning_summary: Option<String>,
    pub enable_encrypted_reasoning: bool,
    pub prompt_cache_retention: Option<String>,
    pub extended_thinking_budget: Option<u64>,
    pub seed: Option<i64>,
    pub safety_settings: Option<Value>,
    pub usage_id: String,
    pub litellm_extra_body: Map<String, Value>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            model: "claude-sonnet-4-20250514".into(),
            api_key: None,
            base_url: None,
            api_version: None,
            num_retries: 5,
            retry_multiplier: 8.0,
            retry_min_wait: 8.0,
            retry_max_wait: 64.0,
            timeout: None,
            temperature: None,
            top_p: Some(1.0),
            top_k: None,
            max_input_tokens: None,
            max_output_tokens: None,
            extra_headers: None,
            input_cost_per_token: None,
            output_cost_per_token: None,
            custom_llm_provider: None,
            ollama_base_url: None,
            openrouter_site_url: Some("https://docs.all-hands.dev/".into()),
            openrouter_app_name: Some("OpenHands".into()),
            stream: false,
            drop_params: true,
            disable_vision: None,
            disable_stop_word: Some(false),
            caching_prompt: true,
            native_tool_calling: true,
            force_string_serializer: None,
            reasoning_effort: Some("high".into()),
            reasoning_summary: None,
            enable_encrypted_reasoning: false,
            prompt_cache_retention: Some("24h".into()),
            extended_thinking_budget: Some(200_000),
            seed: None,
            safety_settings: None,
            usage_id: "default".into(),
            litellm_extra_body: Map::new(),
        }
    }
}

/// The unsigned integer fields and their largest value here.
const UNSIGNED: &[(&str, u64)] = &[
    ("num_retries", u32::MAX as u64),
    ("max_input_tokens", u64::MAX),
    ("max_output_tokens", u64::MAX),
    ("extended_thinking_budget", u64::MAX),
];

/// A valid wire LLM may hold any integer (Python's are unbounded, and `extended_thinking_budget`
/// has no lower bound) or an integral float: numbers of the unsigned fields are clamped into their
/// range instead of failing the whole configuration.
fn clamped(key: &str, v: &Value) -> Value {
    let Some((_, max)) = UNSIGNED.iter().find(|(k, _)| *k == key) else {
        return v.clone();
    };
    let Value::Number(n) = v else {
        return v.clone();
    };
    let x = match (n.as_u64(), n.as_i64(), n.as_f64()) {
        (Some(u), _, _) => u,
        (None, Some(_), _) => 0, // negative
        (None, None, Some(f)) if f.is_finite() => f.clamp(0.0, u64::MAX as f64) as u64,
        _ => return v.clone(),
    };
    Value::from(x.min(*max))
}

impl LlmConfig {
    /// Reads an `LLM` JSON object. `null` members take their defaults; members of the wrong type
    /// are an error (the wire model validated them already, so this only guards misuse).
    pub fn from_json(value: &Value) -> Result<LlmConfig, String> {
        let Value::Object(map) = value else {
            return Err("LLM configuration must be an object".into());
        };
        let cleaned: Map<String, Value> = map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), clamped(k, v)))
            .collect();
        serde_json::from_value(Value::Object(cleaned))
            .map_err(|e| format!("invalid LLM configuration: {e}"))
    }

    /// The API key, ignoring the redaction placeholder and blanks (a redacted key is no key).
    pub fn effective_api_key(&self) -> Option<&str> {
        self.api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty() && *k != "**********")
    }

    /// The model string after the `openhands/` rewrite (agent-behaviour §3.3).
    pub fn effective_model(&self) -> String {
        match self.model.strip_prefix("openhands/") {
            Some(rest) => format!("litellm_proxy/{rest}"),
            None => self.model.clone(),
        }
    }

    /// The base URL after the `openhands/` default.
    pub fn effective_base_url(&self) -> Option<String> {
        match (&self.base_url, self.model.starts_with("openhands/")) {
            (Some(b), _) if !b.trim().is_empty() => Some(b.trim().to_string()),
            (_, true) => Some("https://llm-proxy.app.all-hands.dev/".into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_defaults_and_nulls() {
        let c = LlmConfig::from_json(
            &json!({"model": "openai/x", "api_key": null, "temperature": null, "unknown": 1}),
        )
        .unwrap();
        assert_eq!(c.model, "openai/x");
        assert_eq!(c.num_retries, 5);
        assert_eq!(c.top_p, Some(1.0));
        assert_eq!(c.temperature, None);
        assert_eq!(c.reasoning_effort.as_deref(), Some("high"));
        assert!(LlmConfig::from_json(&json!({"model": 3})).is_err());
    }

    #[test]
    fn integers_out_of_the_unsigned_ranges_are_clamped() {
        let c = LlmConfig::from_json(&json!({"model": "m", "num_retries": 1_u64 << 40,
            "max_output_tokens": 3.0, "extended_thinking_budget": -2737732, "max_input_tokens": 1e30}))
        .unwrap();
        assert_eq!(c.num_retries, u32::MAX);
        assert_eq!(c.max_output_tokens, Some(3));
        assert_eq!(c.extended_thinking_budget, Some(0));
        assert_eq!(c.max_input_tokens, Some(u64::MAX));
    }

    #[test]
    fn openhands_prefix_is_rewritten() {
        let c = LlmConfig::from_json(&json!({"model": "openhands/claude-x"})).unwrap();
        assert_eq!(c.effective_model(), "litellm_proxy/claude-x");
        assert_eq!(
            c.effective_base_url().as_deref(),
            Some("https://llm-proxy.app.all-hands.dev/")
        );
        let c =
            LlmConfig::from_json(&json!({"model": "openai/x", "api_key": "**********"})).unwrap();
        assert_eq!(c.effective_api_key(), None);
    }
}
