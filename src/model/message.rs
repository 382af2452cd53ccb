//! LLM messages and their content (EVENTS.md §4.1–4.2): `TextContent`, `ImageContent`,
//! `Message`, `MessageToolCall`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wire::skip_none;

/// The `"type": "text"` tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub enum TextTag {
    #[default]
    #[serde(rename = "text")]
    Text,
}

/// The `"type": "image"` tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub enum ImageTag {
    #[default]
    #[serde(rename = "image")]
    Image,
}

/// `{"cache_prompt": false, "type": "text", "text": str}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextContent {
    #[serde(default)]
    pub cache_prompt: bool,
    #[serde(rename = "type", default)]
    pub kind: TextTag,
    pub text: String,
}

impl TextContent {
    pub fn new(text: impl Into<String>) -> Self {
        TextContent {
            cache_prompt: false,
            kind: TextTag::Text,
            text: text.into(),
        }
    }
}

/// `{"cache_prompt": false, "type": "image", "image_urls": [str]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageContent {
    #[serde(default)]
    pub cache_prompt: bool,
    #[serde(rename = "type")]
    pub kind: ImageTag,
    pub image_urls: Vec<String>,
}

/// One content item of a message or observation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
#[serde(untagged)]
pub enum Content {
    Text(TextContent),
    Image(ImageContent),
}

impl Content {
    pub fn text(&self) -> Option<&str> {
        match self {
            Content::Text(t) => Some(&t.text),
            Content::Image(_) => None,
        }
    }
}

/// `role` of a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    User,
    System,
    Assistant,
    Tool,
}

/// A tool call requested by the LLM: `{"id","name","arguments","origin"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageToolCall {
    pub id: String,
    pub name: String,
    /// The JSON arguments string exactly as the LLM sent it.
    pub arguments: String,
    /// `"completion"` or `"responses"`.
    #[serde(default = "default_origin")]
    pub origin: String,
}

fn default_origin() -> String {
    "completion".to_string()
}

/// An LLM message (`llm/message.py`); every key is present in the API form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: Vec<Content>,
    #[serde(default)]
    pub cache_enabled: bool,
    #[serde(default)]
    pub vision_enabled: bool,
    #[serde(default)]
    pub function_calling_enabled: bool,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub tool_calls: Option<Vec<MessageToolCall>>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub force_string_serializer: bool,
    #[serde(default)]
    pub send_reasoning_content: bool,
    #[serde(default, skip_serializing_if = "skip_none")]
    pub reasoning_content: Option<String>,
    /// ThinkingBlock / RedactedThinkingBlock objects, kept as sent.
    #[schemars(with = "Vec<crate::openapi::schemas::AnyThinkingBlock>")]
    #[serde(default)]
    pub thinking_blocks: Vec<Value>,
    /// ReasoningItemModel, kept as sent.
    #[schemars(with = "Option<crate::openapi::schemas::ReasoningItemModel>")]
    #[serde(default, skip_serializing_if = "skip_none")]
    pub responses_reasoning_item: Option<Value>,
}

impl Message {
    /// A message with `role` and content and every other field at its default.
    pub fn new(role: Role, content: Vec<Content>) -> Self {
        Message {
            role,
            content,
            cache_enabled: false,
            vision_enabled: false,
            function_calling_enabled: false,
            tool_calls: None,
            tool_call_id: None,
            name: None,
            force_string_serializer: false,
            send_reasoning_content: false,
            reasoning_content: None,
            thinking_blocks: Vec::new(),
            responses_reasoning_item: None,
        }
    }

    /// A user message with one text item.
    pub fn user_text(text: impl Into<String>) -> Self {
        Message::new(Role::User, vec![Content::Text(TextContent::new(text))])
    }
}
