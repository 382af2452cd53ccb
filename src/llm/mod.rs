//! LLM clients: one provider-neutral request/response shape, with wire formats for OpenAI Chat
//! Completions ([`chat`]), the Anthropic Messages API ([`anthropic`]) and the OpenAI Responses API
//! ([`responses`]); routing by model prefix ([`model`]); HTTP with the reference's two retry layers
//! ([`client`]); error mapping to `ConversationErrorEvent` codes ([`error`]); usage accounting in
//! the `stats` shape of EVENTS.md §6.9 ([`metrics`]).
//!
//! The neutral request uses the Chat Completions message format (what the reference's message
//! builder produces, agent-behaviour §3.1.2): `{"role", "content": [parts], "tool_calls"?,
//! "tool_call_id"?, "name"?}` with text parts `{"type":"text","text"}` and image parts
//! `{"type":"image_url","image_url":{"url"}}`, and tools in the Chat Completions form
//! `{"type":"function","function":{"name","description","parameters"}}`. Each wire format adapts
//! them (vision stripping, prompt caching, string serialisation, Anthropic blocks, Responses items).

pub mod anthropic;
pub mod chat;
pub mod client;
pub mod config;
pub mod error;
#[cfg(test)]
pub mod fake;
pub mod metrics;
pub mod model;
pub mod pyjson;
pub mod responses;

use serde_json::Value;

pub use client::LlmClient;
pub use config::LlmConfig;
pub use error::LlmError;
pub use metrics::Metrics;

/// What the agent asks for: messages and tool definitions in Chat Completions form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmRequest {
    pub messages: Vec<Value>,
    /// Tool definitions; empty = no `tools` key at all.
    pub tools: Vec<Value>,
}

/// One tool call of a reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The raw arguments string as the provider sent it.
    pub arguments: String,
    /// `"completion"` (chat / Anthropic) or `"responses"`.
    pub origin: &'static str,
}

impl ToolCall {
    /// The `MessageToolCall` JSON stored in `ActionEvent.tool_call`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"id": self.id, "name": self.name, "arguments": self.arguments, "origin": self.origin})
    }
}

/// Token counts of one response (agent-behaviour §3.7).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

/// The assistant's reply, provider-neutral.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmResponse {
    /// Response id (`llm_response_id` of the events made from it).
    pub id: String,
    /// The text the provider returned, `None` when it sent no text at all.
    pub content: Option<String>,
    /// Tool calls of `type: "function"`, in order.
    pub tool_calls: Vec<ToolCall>,
    pub reasoning_content: Option<String>,
    /// Anthropic thinking blocks (`{"type":"thinking",…}` / `{"type":"redacted_thinking",…}`).
    pub thinking_blocks: Vec<Value>,
    /// OpenAI Responses reasoning item (`ReasoningItemModel` JSON).
    pub responses_reasoning_item: Option<Value>,
    pub usage: Usage,
    /// Seconds from the start of the successful HTTP attempt to its response.
    pub latency: f64,
    /// Cost of this call: the `x-litellm-response-cost` header, else per-token prices if both are
    /// configured; `None` when unknown.
    pub cost: Option<f64>,
    /// Model input window for the metrics' `context_window` (0 when unknown).
    pub context_window: u64,
}
