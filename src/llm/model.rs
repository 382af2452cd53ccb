//! What the reference derives from a model name: which wire protocol and endpoint, and which
//! request parameters apply (agent-behaviour §3.3). Model matching is a case-insensitive
//! substring test on the configured model string, as in the reference.

use super::config::LlmConfig;

/// Models that take `reasoning_effort` and lose `temperature`/`top_p`.
const REASONING_EFFORT_MODELS: &[&str] = &[
    "o1",
    "o3",
    "o4-mini",
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gpt-5",
    "claude-opus-4-5",
];
/// Models that get Anthropic extended thinking on the chat path.
const EXTENDED_THINKING_MODELS: &[&str] = &["claude-sonnet-4-5", "claude-haiku-4-5"];
/// Models with Anthropic prompt caching (`cache_control` markers).
const PROMPT_CACHE_MODELS: &[&str] = &[
    "claude-3-7-sonnet",
    "claude-sonnet-3-7-latest",
    "claude-3-5-sonnet",
    "claude-3-5-haiku",
    "claude-3-haiku-20240307",
    "claude-3-opus-20240229",
    "claude-sonnet-4",
    "claude-opus-4",
    "claude-haiku-4-5",
    "claude-opus-4-5",
];
/// Models served through the OpenAI Responses API.
const RESPONSES_API_MODELS: &[&str] = &["gpt-5", "codex-mini-latest"];
/// Models whose messages are sent as one string instead of content parts.
const STRING_SERIALIZER_MODELS: &[&str] = &["deepseek", "glm", "groq/kimi-k2-instruct"];
/// Models whose `max_completion_tokens` default is fixed by the SDK.
const MAX_TOKENS_64K_MODELS: &[&str] =
    &["claude-3-7-sonnet", "claude-sonnet-4", "kimi-k2-thinking"];
/// Models that use `prompt_cache_retention`.
const CACHE_RETENTION_MODELS: &[&str] = &["gpt-5", "gpt-4.1"];

/// A small stand-in for litellm's model table: (name substring, max input, max output, vision).
/// First match wins, so more specific names come first. Unknown models get no defaults.
const MODEL_INFO: &[(&str, u64, u64, bool)] = &[
    ("gpt-4o-mini", 128_000, 16_384, true),
    ("gpt-4o", 128_000, 16_384, true),
    ("gpt-4.1", 1_047_576, 32_768, true),
    ("gpt-5", 272_000, 128_000, true),
    ("o1-mini", 128_000, 65_536, false),
    ("o3-mini", 200_000, 100_000, false),
    ("o4-mini", 200_000, 100_000, true),
    ("o1", 200_000, 100_000, true),
    ("o3", 200_000, 100_000, true),
    ("claude-opus-4-5", 200_000, 64_000, true),
    ("claude-haiku-4-5", 200_000, 64_000, true),
    ("claude-sonnet-4", 200_000, 64_000, true),
    ("claude-opus-4", 200_000, 32_000, true),
    ("claude-3-7-sonnet", 200_000, 64_000, true),
    ("claude-3-5-sonnet", 200_000, 8_192, true),
    ("claude-3-5-haiku", 200_000, 8_192, true),
    ("claude-3", 200_000, 4_096, true),
    ("gemini-2.5", 1_048_576, 65_535, true),
    ("gemini", 1_048_576, 8_192, true),
    ("deepseek", 128_000, 8_192, false),
];

/// The wire protocol used for a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OpenAI-compatible `POST …/chat/completions`.
    ChatCompletions,
    /// Anthropic `POST …/v1/messages`.
    AnthropicMessages,
    /// OpenAI `POST …/responses`.
    Responses,
}

/// Where and how to send a request for one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub protocol: Protocol,
    /// Full endpoint URL.
    pub url: String,
    /// The `model` value on the wire (provider prefix removed).
    pub wire_model: String,
    /// The provider name used in error texts (`OpenAIException`, `AnthropicException`, …).
    pub provider: Provider,
    /// Extra HTTP headers the provider needs (auth included).
    pub headers: Vec<(String, String)>,
}

/// The provider a model resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Anthropic,
    LitellmProxy,
    OpenRouter,
    Ollama,
    Azure,
    /// Another OpenAI-compatible provider (deepseek, groq, mistral, gemini, …).
    OpenAiCompatible,
}

impl Provider {
    /// The exception prefix litellm puts in error texts.
    pub fn exception_name(self) -> &'static str {
        match self {
            Provider::Anthropic => "AnthropicException",
            Provider::Azure => "AzureException",
            Provider::Ollama => "OllamaException",
            Provider::OpenRouter => "OpenrouterException",
            Provider::OpenAi | Provider::LitellmProxy | Provider::OpenAiCompatible => {
                "OpenAIException"
            }
        }
    }

    /// Whether the OpenAI Python client (with its own 2 quick retries) sits under this provider.
    pub fn has_client_retries(self) -> bool {
        match self {
            Provider::OpenAi
            | Provider::LitellmProxy
            | Provider::OpenRouter
            | Provider::Azure
            | Provider::OpenAiCompatible => true,
            Provider::Anthropic | Provider::Ollama => false,
        }
    }
}

/// Features derived from the model name.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFeatures {
    pub reasoning_effort: bool,
    pub extended_thinking: bool,
    pub prompt_cache: bool,
    pub responses_api: bool,
    pub string_serializer: bool,
    pub vision: bool,
    pub cache_retention: bool,
    /// `max_completion_tokens` when the config sets none.
    pub default_max_output: Option<u64>,
    /// Model input window for metrics (`context_window`), 0 when unknown.
    pub context_window: u64,
}

fn matches_any(model: &str, list: &[&str]) -> bool {
    let m = model.to_ascii_lowercase();
    list.iter().any(|p| m.contains(p))
}

fn info(model: &str) -> Option<(u64, u64, bool)> {
    let m = model.to_ascii_lowercase();
    MODEL_INFO
        .iter()
        .find(|(p, ..)| m.contains(p))
        .map(|&(_, i, o, v)| (i, o, v))
}

impl ModelFeatures {
    pub fn of(cfg: &LlmConfig) -> ModelFeatures {
        let model = cfg.effective_model();
        let info = info(&model);
        let mut default_max_output = if matches_any(&model, MAX_TOKENS_64K_MODELS) {
            Some(64_000)
        } else {
            info.map(|i| i.1)
        };
        if model.to_ascii_lowercase().contains("o3") {
            default_max_output = default_max_output.map(|m| m.min(100_000));
        }
        ModelFeatures {
            reasoning_effort: matches_any(&model, REASONING_EFFORT_MODELS),
            extended_thinking: matches_any(&model, EXTENDED_THINKING_MODELS),
            prompt_cache: cfg.caching_prompt && matches_any(&model, PROMPT_CACHE_MODELS),
            responses_api: matches_any(&model, RESPONSES_API_MODELS),
            string_serializer: cfg.force_string_serializer.unwrap_or(false)
                || matches_any(&model, STRING_SERIALIZER_MODELS),
            vision: !cfg.disable_vision.unwrap_or(false) && info.map(|i| i.2).unwrap_or(false),
            cache_retention: matches_any(&model, CACHE_RETENTION_MODELS),
            default_max_output,
            context_window: cfg.max_input_tokens.or(info.map(|i| i.0)).unwrap_or(0),
        }
    }
}

/// Joins a base URL and a path with exactly one slash.
fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Resolves provider, endpoint, wire model and headers for a configuration.
pub fn route(cfg: &LlmConfig) -> Route {
    let model = cfg.effective_model();
    let base = cfg.effective_base_url();
    const KNOWN: &[&str] = &[
        "openai",
        "anthropic",
        "azure",
        "ollama",
        "ollama_chat",
        "openrouter",
        "litellm_proxy",
        "deepseek",
        "groq",
        "mistral",
        "gemini",
        "together_ai",
        "xai",
        "fireworks_ai",
        "hosted_vllm",
        "vllm",
    ];
    let split = model
        .split_once('/')
        .map(|(p, r)| (p.to_ascii_lowercase(), r.to_string()));
    let custom = cfg
        .custom_llm_provider
        .as_deref()
        .map(str::to_ascii_lowercase)
        .filter(|p| !p.is_empty());
    // (provider name, model on the wire)
    let (provider_name, wire_model) = match (custom, split) {
        (Some(c), Some((p, r))) if c == p => (c, r),
        (Some(c), _) => (c, model.clone()),
        (None, Some((p, r))) if KNOWN.contains(&p.as_str()) => (p, r),
        (None, _) if model.to_ascii_lowercase().starts_with("claude") => {
            ("anthropic".to_string(), model.clone())
        }
        (None, _) => ("openai".to_string(), model.clone()),
    };
    let features = ModelFeatures::of(cfg);
    let key = cfg.effective_api_key().map(str::to_string);
    let bearer = |h: &mut Vec<(String, String)>| {
        if let Some(k) = &key {
            h.push(("authorization".into(), format!("Bearer {k}")));
        }
    };
    let mut headers = Vec::new();
    let (provider, protocol, url) = match provider_name.as_str() {
        "anthropic" => {
            if let Some(k) = &key {
                headers.push(("x-api-key".into(), k.clone()));
            }
            headers.push(("anthropic-version".into(), "2023-06-01".into()));
            let base = base.unwrap_or_else(|| "https://api.anthropic.com".into());
            let url = if base.trim_end_matches('/').ends_with("/v1/messages") {
                base
            } else {
                join(&base, "v1/messages")
            };
            (Provider::Anthropic, Protocol::AnthropicMessages, url)
        }
        "azure" => {
            if let Some(k) = &key {
                headers.push(("api-key".into(), k.clone()));
            }
            let version = cfg
                .api_version
                .clone()
                .unwrap_or_else(|| "2024-12-01-preview".into());
            let base = base.unwrap_or_default();
            let url = join(
                &base,
                &format!("openai/deployments/{wire_model}/chat/completions?api-version={version}"),
            );
            (Provider::Azure, Protocol::ChatCompletions, url)
        }
        "ollama" | "ollama_chat" => {
            let base = base
                .or_else(|| cfg.ollama_base_url.clone())
                .unwrap_or_else(|| "http://localhost:11434".into());
            bearer(&mut headers);
            (
                Provider::Ollama,
                Protocol::ChatCompletions,
                join(&base, "v1/chat/completions"),
            )
        }
        "openrouter" => {
            bearer(&mut headers);
            if let Some(site) = &cfg.openrouter_site_url {
                headers.push(("http-referer".into(), site.clone()));
            }
            if let Some(app) = &cfg.openrouter_app_name {
                headers.push(("x-title".into(), app.clone()));
            }
            let base = base.unwrap_or_else(|| "https://openrouter.ai/api/v1".into());
            (
                Provider::OpenRouter,
                Protocol::ChatCompletions,
                join(&base, "chat/completions"),
            )
        }
        "litellm_proxy" => {
            bearer(&mut headers);
            let base = base.unwrap_or_else(|| "http://0.0.0.0:4000".into());
            (
                Provider::LitellmProxy,
                Protocol::ChatCompletions,
                join(&base, "chat/completions"),
            )
        }
        other => {
            bearer(&mut headers);
            let (provider, default_base) = match other {
                "openai" => (Provider::OpenAi, "https://api.openai.com/v1"),
                "deepseek" => (Provider::OpenAiCompatible, "https://api.deepseek.com/v1"),
                "groq" => (Provider::OpenAiCompatible, "https://api.groq.com/openai/v1"),
                "mistral" => (Provider::OpenAiCompatible, "https://api.mistral.ai/v1"),
                "gemini" => (
                    Provider::OpenAiCompatible,
                    "https://generativelanguage.googleapis.com/v1beta/openai",
                ),
                "together_ai" => (Provider::OpenAiCompatible, "https://api.together.xyz/v1"),
                "xai" => (Provider::OpenAiCompatible, "https://api.x.ai/v1"),
                "fireworks_ai" => (
                    Provider::OpenAiCompatible,
                    "https://api.fireworks.ai/inference/v1",
                ),
                "hosted_vllm" | "vllm" => (Provider::OpenAiCompatible, "http://localhost:8000/v1"),
                _ => (Provider::OpenAiCompatible, "https://api.openai.com/v1"),
            };
            let base = base.unwrap_or_else(|| default_base.to_string());
            if features.responses_api && matches!(provider, Provider::OpenAi) {
                (provider, Protocol::Responses, join(&base, "responses"))
            } else {
                (
                    provider,
                    Protocol::ChatCompletions,
                    join(&base, "chat/completions"),
                )
            }
        }
    };
    Route {
        protocol,
        url,
        wire_model,
        provider,
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> LlmConfig {
        LlmConfig::from_json(&v).unwrap()
    }

    #[test]
    fn openai_prefix_uses_base_url_as_given() {
        let r = route(&cfg(
            json!({"model": "openai/fake-model", "base_url": "http://h:1/v1", "api_key": "k"}),
        ));
        assert_eq!(r.protocol, Protocol::ChatCompletions);
        assert_eq!(r.url, "http://h:1/v1/chat/completions");
        assert_eq!(r.wire_model, "fake-model");
        assert_eq!(
            r.headers,
            vec![("authorization".to_string(), "Bearer k".to_string())]
        );
    }

    #[test]
    fn litellm_proxy_strips_only_the_first_prefix() {
        let r = route(&cfg(
            json!({"model": "litellm_proxy/anthropic/claude-sonnet-4-5-20250929", "base_url": "http://h:1"}),
        ));
        assert_eq!(r.url, "http://h:1/chat/completions");
        assert_eq!(r.wire_model, "anthropic/claude-sonnet-4-5-20250929");
        assert_eq!(r.provider, Provider::LitellmProxy);
    }

    #[test]
    fn anthropic_prefix_uses_messages_api() {
        let r = route(&cfg(
            json!({"model": "anthropic/claude-sonnet-4-5-20250929", "base_url": "http://h:1", "api_key": "k"}),
        ));
        assert_eq!(r.protocol, Protocol::AnthropicMessages);
        assert_eq!(r.url, "http://h:1/v1/messages");
        assert_eq!(r.wire_model, "claude-sonnet-4-5-20250929");
        assert!(
            r.headers
                .contains(&("x-api-key".to_string(), "k".to_string()))
        );
        let bare = route(&cfg(json!({"model": "claude-sonnet-4-20250514"})));
        assert_eq!(bare.protocol, Protocol::AnthropicMessages);
        assert_eq!(bare.url, "https://api.anthropic.com/v1/messages");
        assert_eq!(bare.wire_model, "claude-sonnet-4-20250514");
    }

    #[test]
    fn gpt5_goes_to_responses_and_others_keep_chat() {
        let r = route(&cfg(
            json!({"model": "openai/gpt-5-mini", "base_url": "http://h/v1"}),
        ));
        assert_eq!(r.protocol, Protocol::Responses);
        assert_eq!(r.url, "http://h/v1/responses");
        let r = route(&cfg(json!({"model": "gpt-4o"})));
        assert_eq!(r.url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(r.wire_model, "gpt-4o");
        let r = route(&cfg(json!({"model": "openrouter/meta/llama"})));
        assert_eq!(r.url, "https://openrouter.ai/api/v1/chat/completions");
        assert_eq!(r.wire_model, "meta/llama");
        let r = route(&cfg(
            json!({"model": "ollama/llama3", "ollama_base_url": "http://o:11434"}),
        ));
        assert_eq!(r.url, "http://o:11434/v1/chat/completions");
        assert_eq!(r.wire_model, "llama3");
        let r = route(&cfg(
            json!({"model": "azure/dep", "base_url": "https://x.openai.azure.com", "api_key": "k"}),
        ));
        assert_eq!(
            r.url,
            "https://x.openai.azure.com/openai/deployments/dep/chat/completions?api-version=2024-12-01-preview"
        );
    }

    #[test]
    fn features_follow_the_model_name() {
        let f = ModelFeatures::of(&cfg(json!({"model": "openai/o3-mini"})));
        assert!(f.reasoning_effort && !f.vision);
        assert_eq!(f.default_max_output, Some(100_000));
        let f = ModelFeatures::of(&cfg(json!({"model": "openai/gpt-4o"})));
        assert!(f.vision && !f.reasoning_effort);
        assert_eq!(f.default_max_output, Some(16_384));
        let f = ModelFeatures::of(&cfg(json!({"model": "openai/fake-model"})));
        assert_eq!(f.default_max_output, None);
        assert_eq!(f.context_window, 0);
        assert!(!f.vision);
        let f = ModelFeatures::of(&cfg(
            json!({"model": "litellm_proxy/anthropic/claude-sonnet-4-5-20250929"}),
        ));
        assert!(f.extended_thinking && f.prompt_cache);
        assert_eq!(f.default_max_output, Some(64_000));
        let f = ModelFeatures::of(&cfg(
            json!({"model": "openai/gpt-4o", "disable_vision": true}),
        ));
        assert!(!f.vision);
    }
}
