//! The HTTP side of an LLM call, with the reference's two retry layers (agent-behaviour §3.4):
//!
//! 1. provider client (OpenAI-compatible paths only): up to 2 quick extra tries per attempt on
//!    408/409/429/5xx and connection errors, [`CLIENT_RETRY_DELAYS`] apart (or `Retry-After`);
//! 2. SDK: up to `num_retries` attempts in total on connection errors, timeouts, 429, 5xx and
//!    replies without choices, waiting `max(min_wait, min(multiplier·2^(k−1), max_wait))` s
//!    (at least `Retry-After` when the provider sent one); none on other 4xx.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::config::LlmConfig;
use super::error::{LlmError, LlmErrorKind};
use super::model::{ModelFeatures, Protocol, Provider, Route, route};
use super::{LlmRequest, LlmResponse, anthropic, chat, responses};

/// Delays of the provider client's own quick retries (seconds).
pub const CLIENT_RETRY_DELAYS: [f64; 2] = [0.5, 1.0];
/// Request timeout when the configuration sets none (the OpenAI client's default).
const DEFAULT_TIMEOUT_SECS: f64 = 600.0;
/// Longest `Retry-After` the client layer honours.
const MAX_RETRY_AFTER_SECS: f64 = 60.0;
/// Response header carrying the call's cost (LiteLLM proxies).
const COST_HEADER: &str = "x-litellm-response-cost";

/// An LLM ready to be called. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LlmClient {
    cfg: LlmConfig,
    route: Route,
    features: ModelFeatures,
    http: reqwest::Client,
}

/// Reads `Retry-After` (seconds or `retry-after-ms`).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<f64> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Some(ms / 1000.0);
    }
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
}

impl LlmClient {
    pub fn new(cfg: LlmConfig) -> LlmClient {
        let route = route(&cfg);
        let features = ModelFeatures::of(&cfg);
        let timeout = Duration::from_secs_f64(
            cfg.timeout
                .filter(|t| *t > 0.0)
                .unwrap_or(DEFAULT_TIMEOUT_SECS),
        );
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        LlmClient {
            cfg,
            route,
            features,
            http,
        }
    }

    pub fn config(&self) -> &LlmConfig {
        &self.cfg
    }

    pub fn route(&self) -> &Route {
        &self.route
    }

    /// Whether image parts reach the model (tool descriptions mention images then).
    pub fn vision(&self) -> bool {
        self.features.vision
    }

    /// The API key to send: the configured one, else the provider's usual environment variable.
    fn api_key(&self) -> Option<String> {
        if let Some(k) = self.cfg.effective_api_key() {
            return Some(k.to_string());
        }
        let var = match self.route.provider {
            Provider::OpenAi => "OPENAI_API_KEY",
            Provider::Anthropic => "ANTHROPIC_API_KEY",
            Provider::OpenRouter => "OPENROUTER_API_KEY",
            Provider::Azure => "AZURE_API_KEY",
            Provider::LitellmProxy => "LITELLM_PROXY_API_KEY",
            Provider::Ollama | Provider::OpenAiCompatible => return None,
        };
        std::env::var(var).ok().filter(|k| !k.trim().is_empty())
    }

    /// One logical completion with both retry layers.
    pub async fn complete(&self, req: &LlmRequest) -> Result<LlmResponse, LlmError> {
        if self.cfg.stream {
            return Err(LlmError::other(
                "ValueError",
                "Streaming requires an on_token callback",
            ));
        }
        let key = self.api_key();
        if key.is_none() {
            match self.route.provider {
                Provider::OpenAi => {
                    return Err(LlmError {
                        kind: LlmErrorKind::Authentication,
                        code: "AuthenticationError".into(),
                        detail: "litellm.AuthenticationError: AuthenticationError: OpenAIException - The api_key client option must be set either by passing api_key to the client or by setting the OPENAI_API_KEY environment variable".into(),
                        status: None,
                        retry_after: None,
                    });
                }
                Provider::Anthropic => {
                    return Err(LlmError {
                        kind: LlmErrorKind::Authentication,
                        code: "AuthenticationError".into(),
                        detail: "litellm.AuthenticationError: AnthropicException - Missing Anthropic API Key - A call is being made to anthropic but no key is set either in the environment variables or via params.".into(),
                        status: None,
                        retry_after: None,
                    });
                }
                Provider::LitellmProxy
                | Provider::OpenRouter
                | Provider::Ollama
                | Provider::Azure
                | Provider::OpenAiCompatible => {}
            }
        }
        let attempts = self.cfg.num_retries.max(1);
        let mut temperature_override = None;
        let mut attempt = 1;
        loop {
            match self
                .attempt(req, key.as_deref(), temperature_override)
                .await
            {
                Ok(resp) => return Ok(resp),
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let k = f64::from(attempt - 1);
                    let mut wait = self.cfg.retry_min_wait.max(
                        (self.cfg.retry_multiplier * 2f64.powf(k)).min(self.cfg.retry_max_wait),
                    );
                    if let Some(ra) = e.retry_after {
                        wait = wait.max(ra.min(MAX_RETRY_AFTER_SECS));
                    }
                    if e.kind == LlmErrorKind::NoResponse
                        && chat::default_temperature(&self.cfg) == 0.0
                    {
                        temperature_override = Some(1.0);
                    }
                    log::warn!(
                        "LLM call failed ({}), attempt {attempt}/{attempts}; retrying in {wait:.1}s",
                        e.code
                    );
                    tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One SDK-level attempt: the provider client's request plus its own quick retries.
    async fn attempt(
        &self,
        req: &LlmRequest,
        key: Option<&str>,
        temperature_override: Option<f64>,
    ) -> Result<LlmResponse, LlmError> {
        let (body, extra_headers) = match self.route.protocol {
            Protocol::ChatCompletions => {
                chat::build_body(&self.cfg, &self.route, req, temperature_override)
            }
            Protocol::AnthropicMessages => anthropic::build_body(&self.cfg, &self.route, req),
            Protocol::Responses => (
                responses::build_body(&self.cfg, &self.route, req),
                Vec::new(),
            ),
        };
        let tries = if self.route.provider.has_client_retries() {
            CLIENT_RETRY_DELAYS.len() + 1
        } else {
            1
        };
        let mut last_err = None;
        for i in 0..tries {
            if i > 0 {
                let default = CLIENT_RETRY_DELAYS[i - 1];
                let delay = last_err
                    .as_ref()
                    .and_then(|e: &LlmError| e.retry_after)
                    .filter(|ra| *ra > 0.0 && *ra <= MAX_RETRY_AFTER_SECS)
                    .unwrap_or(default);
                tokio::time::sleep(Duration::from_secs_f64(delay)).await;
            }
            match self.send_once(&body, &extra_headers, key, i).await {
                Ok(resp) => return Ok(resp),
                Err(e) if e.is_client_retryable() => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| LlmError::other("LLMError", "no attempt was made")))
    }

    /// One HTTP request.
    async fn send_once(
        &self,
        body: &Value,
        extra_headers: &[(String, String)],
        key: Option<&str>,
        retry_count: usize,
    ) -> Result<LlmResponse, LlmError> {
        let mut rb = self
            .http
            .post(&self.route.url)
            .header("content-type", "application/json");
        for (k, v) in &self.route.headers {
            let auth = k == "authorization" || k == "x-api-key" || k == "api-key";
            if !auth {
                rb = rb.header(k.as_str(), v.as_str());
            }
        }
        if let Some(key) = key {
            rb = match self.route.provider {
                Provider::Anthropic => rb.header("x-api-key", key),
                Provider::Azure => rb.header("api-key", key),
                Provider::OpenAi
                | Provider::LitellmProxy
                | Provider::OpenRouter
                | Provider::Ollama
                | Provider::OpenAiCompatible => rb.header("authorization", format!("Bearer {key}")),
            };
        }
        if self.route.provider.has_client_retries() {
            rb = rb.header("x-stainless-retry-count", retry_count.to_string());
        }
        for (k, v) in extra_headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        let started = Instant::now();
        let resp = rb
            .json(body)
            .send()
            .await
            .map_err(|e| LlmError::connection(self.route.provider, &e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp
            .text()
            .await
            .map_err(|e| LlmError::connection(self.route.provider, &e))?;
        let latency = started.elapsed().as_secs_f64();
        if !(200..300).contains(&status) {
            return Err(LlmError::from_status(
                self.route.provider,
                status,
                &text,
                retry_after(&headers),
            ));
        }
        let json: Value = serde_json::from_str(&text).map_err(|e| {
            LlmError::other(
                "LLMError",
                format!(
                    "{} - invalid JSON in LLM reply: {e}",
                    self.route.provider.exception_name()
                ),
            )
        })?;
        let mut parsed = match self.route.protocol {
            Protocol::ChatCompletions => chat::parse_response(&json)?,
            Protocol::AnthropicMessages => anthropic::parse_response(&json)?,
            Protocol::Responses => responses::parse_response(&json)?,
        };
        parsed.latency = latency;
        parsed.context_window = self.features.context_window;
        let header_cost = headers
            .get(COST_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let priced = match (
            self.cfg.input_cost_per_token,
            self.cfg.output_cost_per_token,
        ) {
            (Some(i), Some(o)) => Some(
                i * parsed.usage.prompt_tokens as f64 + o * parsed.usage.completion_tokens as f64,
            ),
            _ => None,
        };
        parsed.cost = header_cost.or(priced);
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolCall;
    use crate::llm::fake::{FakeServer, Reply};
    use serde_json::json;

    fn ok_reply(id: &str) -> Reply {
        Reply::json(
            200,
            &json!({"id": id, "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": "ok", "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "terminal", "arguments": "{\"command\": \"ls\"}"}}]}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
        )
    }

    fn client(base: &str, extra: Value) -> LlmClient {
        let mut cfg = json!({"model": "openai/fake-model", "base_url": format!("{base}/v1"), "api_key": "sk-test",
            "retry_min_wait": 0, "retry_max_wait": 0, "retry_multiplier": 0});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            cfg[k] = v;
        }
        LlmClient::new(LlmConfig::from_json(&cfg).unwrap())
    }

    fn req() -> LlmRequest {
        LlmRequest {
            messages: vec![json!({"role": "user", "content": [{"type": "text", "text": "hi"}]})],
            tools: vec![],
        }
    }

    #[tokio::test]
    async fn openai_tool_call_and_usage() {
        let fake = FakeServer::start(vec![
            ok_reply("chatcmpl-1").with_header(COST_HEADER, "0.0125"),
        ])
        .await;
        let resp = client(&fake.base, json!({}))
            .complete(&req())
            .await
            .unwrap();
        assert_eq!(resp.id, "chatcmpl-1");
        assert_eq!(
            resp.tool_calls,
            vec![ToolCall {
                id: "call_1".into(),
                name: "terminal".into(),
                arguments: "{\"command\": \"ls\"}".into(),
                origin: "completion"
            }]
        );
        assert_eq!(resp.usage.prompt_tokens, 10);
        assert_eq!(resp.cost, Some(0.0125));
        assert!(resp.latency >= 0.0);
        let got = fake.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "/v1/chat/completions");
        assert_eq!(got[0].header("authorization"), Some("Bearer sk-test"));
        assert_eq!(
            got[0].body,
            json!({"model": "fake-model", "messages": req().messages, "temperature": 0.0, "top_p": 1.0})
        );
    }

    #[tokio::test]
    async fn per_token_prices_give_the_cost() {
        let fake = FakeServer::start(vec![ok_reply("c")]).await;
        let resp = client(
            &fake.base,
            json!({"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}),
        )
        .complete(&req())
        .await
        .unwrap();
        assert_eq!(resp.cost, Some(10.0 * 0.001 + 5.0 * 0.002));
    }

    #[tokio::test]
    async fn rate_limit_then_success_is_absorbed_by_the_client_layer() {
        let err = json!({"error": {"message": "slow down", "type": "rate_limit"}});
        let fake = FakeServer::start(vec![
            Reply::json(429, &err).with_header("retry-after", "0"),
            ok_reply("c2"),
        ])
        .await;
        let resp = client(&fake.base, json!({"num_retries": 1}))
            .complete(&req())
            .await
            .unwrap();
        assert_eq!(resp.id, "c2");
        let got = fake.received();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].header("x-stainless-retry-count"), Some("1"));
    }

    #[tokio::test]
    async fn server_errors_are_retried_by_both_layers_then_mapped() {
        let err = json!({"error": {"message": "boom internal"}});
        let fake = FakeServer::start(vec![Reply::json(500, &err)]).await;
        let e = client(&fake.base, json!({"num_retries": 2}))
            .complete(&req())
            .await
            .unwrap_err();
        assert_eq!(e.code, "LLMServiceUnavailableError");
        assert_eq!(
            e.detail,
            "litellm.InternalServerError: InternalServerError: OpenAIException - boom internal"
        );
        assert_eq!(fake.received().len(), 6, "2 attempts x 3 HTTP tries");
    }

    #[tokio::test]
    async fn server_error_then_success() {
        let fake = FakeServer::start(vec![
            Reply::json(500, &json!({"error": {"message": "x"}})),
            ok_reply("c3"),
        ])
        .await;
        let resp = client(&fake.base, json!({"num_retries": 0}))
            .complete(&req())
            .await
            .unwrap();
        assert_eq!(resp.id, "c3");
        assert_eq!(fake.received().len(), 2);
    }

    #[tokio::test]
    async fn bad_request_is_not_retried() {
        let fake = FakeServer::start(vec![Reply::json(
            400,
            &json!({"error": {"message": "bad request from fake llm"}}),
        )])
        .await;
        let e = client(&fake.base, json!({}))
            .complete(&req())
            .await
            .unwrap_err();
        assert_eq!(e.code, "LLMBadRequestError");
        assert_eq!(
            e.detail,
            "litellm.BadRequestError: OpenAIException - bad request from fake llm"
        );
        assert_eq!(fake.received().len(), 1);
    }

    #[tokio::test]
    async fn empty_choices_are_retried_with_temperature_one() {
        let fake = FakeServer::start(vec![
            Reply::json(200, &json!({"id": "x", "choices": []})),
            ok_reply("c4"),
        ])
        .await;
        let resp = client(&fake.base, json!({"num_retries": 2}))
            .complete(&req())
            .await
            .unwrap();
        assert_eq!(resp.id, "c4");
        let got = fake.received();
        assert_eq!(got[0].body["temperature"], json!(0.0));
        assert_eq!(got[1].body["temperature"], json!(1.0));
    }

    #[tokio::test]
    async fn connection_errors_map_after_retries() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let e = client(&base, json!({"num_retries": 1}))
            .complete(&req())
            .await
            .unwrap_err();
        assert_eq!(e.code, "LLMServiceUnavailableError");
        assert!(e.detail.starts_with("litellm.APIConnectionError"));
    }

    #[tokio::test]
    async fn missing_openai_key_fails_clearly() {
        let cfg = LlmConfig::from_json(
            &json!({"model": "openai/fake-model", "base_url": "http://127.0.0.1:9/v1"}),
        )
        .unwrap();
        if std::env::var("OPENAI_API_KEY").is_err() {
            let e = LlmClient::new(cfg).complete(&req()).await.unwrap_err();
            assert_eq!(e.code, "AuthenticationError");
        }
    }

    #[tokio::test]
    async fn anthropic_messages_round_trip() {
        let reply = json!({"id": "msg_1", "type": "message", "role": "assistant", "content": [
            {"type": "text", "text": "ok"}, {"type": "tool_use", "id": "toolu_1", "name": "finish", "input": {"message": "done"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 100, "output_tokens": 7}});
        let fake = FakeServer::start(vec![
            Reply::json(
                529,
                &json!({"type": "error", "error": {"message": "overloaded"}}),
            ),
            Reply::json(200, &reply),
        ])
        .await;
        let cfg = LlmConfig::from_json(&json!({"model": "anthropic/claude-sonnet-4-5-20250929", "base_url": fake.base, "api_key": "ak",
            "retry_min_wait": 0, "retry_max_wait": 0, "retry_multiplier": 0}))
        .unwrap();
        let mut r = req();
        r.messages.insert(
            0,
            json!({"role": "system", "content": [{"type": "text", "text": "SYS"}]}),
        );
        let resp = LlmClient::new(cfg).complete(&r).await.unwrap();
        assert_eq!(resp.content.as_deref(), Some("ok"));
        assert_eq!(resp.tool_calls[0].arguments, "{\"message\": \"done\"}");
        assert_eq!(resp.usage.prompt_tokens, 100);
        let got = fake.received();
        assert_eq!(got.len(), 2, "the 529 is retried at the SDK layer");
        assert_eq!(got[1].path, "/v1/messages");
        assert_eq!(got[1].header("x-api-key"), Some("ak"));
        assert_eq!(got[1].header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(
            got[1].header("anthropic-beta"),
            Some("interleaved-thinking-2025-05-14,prompt-caching-2024-07-31")
        );
        assert_eq!(
            got[1].body["system"],
            json!([{"type": "text", "text": "SYS", "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(got[1].body["max_tokens"], json!(64000));
    }

    #[tokio::test]
    async fn streaming_is_refused() {
        let e = client("http://127.0.0.1:9", json!({"stream": true}))
            .complete(&req())
            .await
            .unwrap_err();
        assert_eq!(e.code, "ValueError");
    }
}
