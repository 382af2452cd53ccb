//! Conversations as actors. [`registry::ConversationRegistry`] owns the set of conversations
//! (create, restore at start-up, list/search/count, delete); one [`actor::Conversation`] per
//! conversation owns its event log, its state and its subscribers, and drives the agent loop
//! through [`seam`]. Conversations live on a small pool of their own arbiters
//! ([`arbiters::ArbiterPool`]), never on HTTP workers. Routes and other modules use the typed
//! handles of [`handle`]. The messages fanned out to subscribers (WebSocket sessions,
//! webhooks) are defined here; `actors.md` describes the protocol.

pub mod actor;
pub mod arbiters;
pub mod handle;
pub mod registry;
pub mod seam;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use actix::prelude::*;

pub use handle::{ConversationHandle, RegistryHandle};
pub use seam::system_prompt_event;

/// One or more serialized events (compact API JSON, exactly as REST returns them), in emission
/// order. A subscriber writes one WebSocket text frame (or webhook item) per element. Each
/// event is serialized once and the same `Arc` is shared by every subscriber: live events come
/// one per batch, the `Subscribe` snapshot (`full_state` then the backlog) as one batch.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct EventBatch(pub Arc<[Arc<str>]>);

/// Sent to a subscriber the conversation drops while it is still alive (its mailbox was full:
/// code 1013 "try again later"). A WebSocket session closes with this code and reason.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub code: u16,
    pub reason: String,
}

/// The latest ConversationInfo JSON of one conversation, shared by its actor and its handles:
/// the actor fills it when it answers `GetInfo` and empties it whenever something the info shows
/// may change (every flush, every event). `GET /api/conversations/{id}` and conversation search
/// read it without a message to the actor.
#[derive(Debug, Default)]
pub struct InfoCache(std::sync::Mutex<Option<Arc<str>>>);

impl InfoCache {
    pub fn get(&self) -> Option<Arc<str>> {
        self.0.lock().ok().and_then(|c| c.clone())
    }
    pub fn set(&self, info: Arc<str>) {
        if let Ok(mut c) = self.0.lock() {
            *c = Some(info);
        }
    }
    pub fn clear(&self) {
        if let Ok(mut c) = self.0.lock() {
            *c = None;
        }
    }
}

/// Things every conversation shares: the cipher for `meta.json`, the idle-time tracker and the
/// resource caps.
pub struct Shared {
    pub cipher: Option<Arc<crate::store::cipher::Fernet>>,
    pub activity: Arc<crate::state::Activity>,
    pub limits: Limits,
}

/// Resource caps of the conversation service (from the configuration). Past a cap a request
/// gets a clear 4xx error; nothing already running is affected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Conversations loaded at once; one more start is refused with 429 (restores are not capped).
    pub max_conversations: usize,
    /// Live subscribers of one conversation; one more `Subscribe` is refused with 429.
    pub max_subscribers: usize,
    /// Largest user message accepted, in bytes of its content's JSON; larger is 413.
    pub max_event_bytes: usize,
}

impl Limits {
    /// No caps (tests and embedders that do not configure any).
    pub const UNLIMITED: Limits = Limits {
        max_conversations: usize::MAX,
        max_subscribers: usize::MAX,
        max_event_bytes: usize::MAX,
    };

    /// The caps of a configuration.
    pub fn from_config(c: &crate::config::Config) -> Limits {
        Limits {
            max_conversations: c.max_conversations,
            max_subscribers: c.max_subscribers_per_conversation,
            max_event_bytes: c.max_event_bytes,
        }
    }
}

/// Identifies a subscription for [`actor::Unsubscribe`].
pub type SubscriptionId = u64;

/// Close code for a subscriber that cannot keep up.
pub const SLOW_SUBSCRIBER_CODE: u16 = 1013;

/// Close code for a socket refused because its conversation has `max_subscribers` already
/// (1013 "try again later", with a reason naming the cap). [`ConversationHandle::subscribe`]
/// answers such a refusal with a 429 [`crate::error::ApiError`].
pub const TOO_MANY_SUBSCRIBERS_CODE: u16 = 1013;

/// Close code sent to live subscribers when their conversation is deleted (normal closure).
pub const DELETED_CODE: u16 = 1000;

/// Close code sent to live subscribers when the server shuts down (going away).
pub const SHUTDOWN_CODE: u16 = 1001;

/// Told about every conversation actor the registry starts: `created` for POST
/// /api/conversations (201), not for a load at start-up. Called on the registry's thread before
/// the handle is published, so messages it sends to `handle.addr()` are queued ahead of any
/// request (the webhooks subscribe here). Must not block.
pub trait ConversationObserver: Send + Sync {
    fn attached(&self, handle: &ConversationHandle, created: bool);
}
