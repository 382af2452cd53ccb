//! The wire model: serde types for everything the server sends, receives and stores, with the
//! reference's field names, key order, defaults, `kind` discriminators, id and timestamp
//! formats. Two renderings exist for every model (see [`wire`]): the API form (all keys,
//! `null`s included) and the disk form (`null` fields omitted). Secrets serialize according to
//! [`secret::SecretMode`].

pub mod agent;
pub mod api;
pub mod conversation;
pub mod events;
pub mod message;
#[cfg(test)]
mod proptests;
pub mod requests;
pub mod secret;
pub mod wire;

pub use agent::{Agent, Llm};
pub use conversation::{
    ConfirmationPolicy, ConversationInfo, ConversationState, ConversationStats, ExecutionStatus,
    Metrics, SecretSource, SecurityAnalyzer, SendMessageRequest, StartConversationRequest,
    StoredConversation, Workspace,
};
pub use events::{Event, Source};
pub use message::{Content, Message, Role, TextContent};
