//! Outgoing webhooks (CONFIG.md §3). Per configured [`WebhookSpec`]: one
//! [`event_webhook::EventWebhook`] per conversation, subscribed like any other subscriber,
//! batching events to `{base_url}/events/{hex id}`, and one
//! [`conversation_webhook::ConversationWebhook`] posting ConversationInfo to
//! `{base_url}/conversations` on create (201), pause, title change and delete. All of them run
//! on one arbiter of their own and post with `reqwest` without ever blocking it.
//!
//! [`WebhookHub`] is app data: it starts the actors (as the registry's
//! [`ConversationObserver`]), offers the routes' info posts and drains everything at shutdown.

pub mod conversation_webhook;
pub mod event_webhook;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use uuid::Uuid;

use crate::config::{Config, WebhookSpec};
use crate::conversation::actor::{GetInfo, Subscribe};
use crate::conversation::{ConversationHandle, ConversationObserver, RegistryHandle};
use crate::model::wire;
use conversation_webhook::{ConversationWebhook, PostInfo};
use event_webhook::{EventWebhook, Subscribed};

/// Timeout of one webhook HTTP request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for the last batches (retries included) before giving up on them.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// One configured target with its request headers ready.
#[derive(Debug)]
pub struct Target {
    pub spec: WebhookSpec,
    /// `base_url` without trailing slashes.
    base: String,
    /// Spec headers, then `X-Session-API-Key` (first key), then the JSON content type.
    headers: HeaderMap,
}

impl Target {
    pub fn new(spec: WebhookSpec, session_key: Option<&str>) -> Target {
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(v)) => {
                    headers.insert(n, v);
                }
                _ => log::warn!("webhook {}: invalid header {name:?} skipped", spec.base_url),
            }
        }
        if let Some(v) = session_key.and_then(|k| HeaderValue::from_str(k).ok()) {
            headers.insert("x-session-api-key", v);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Target {
            base: spec.base_url.trim_end_matches('/').to_string(),
            spec,
            headers,
        }
    }

    pub fn events_url(&self, conversation: &Uuid) -> String {
        format!("{}/events/{}", self.base, wire::hex(conversation))
    }

    pub fn conversations_url(&self) -> String {
        format!("{}/conversations", self.base)
    }

    /// Posts `body`, retrying `num_retries` times `retry_delay` apart on a transport error
    /// or a non-2xx answer. True when one attempt got a 2xx.
    pub async fn post(&self, client: &reqwest::Client, url: &str, body: Bytes) -> bool {
        let attempts = self.spec.num_retries.saturating_add(1);
        for attempt in 1..=attempts {
            let sent = client
                .post(url)
                .headers(self.headers.clone())
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return true,
                Ok(r) => log::warn!(
                    "webhook POST {url}: HTTP {} (attempt {attempt}/{attempts})",
                    r.status().as_u16()
                ),
                Err(e) => log::warn!("webhook POST {url}: {e} (attempt {attempt}/{attempts})"),
            }
            if attempt < attempts {
                tokio::time::sleep(Duration::from_secs(self.spec.retry_delay)).await;
            }
        }
        false
    }
}

/// A JSON array of already serialized events.
pub fn json_array(events: &[Arc<str>]) -> Bytes {
    let mut out = String::with_capacity(2 + events.iter().map(|e| e.len() + 1).sum::<usize>());
    out.push('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push(']');
    Bytes::from(out)
}

/// The live event webhooks, by a key of their own (drained at shutdown).
pub type LiveWebhooks = Arc<Mutex<HashMap<u64, Addr<EventWebhook>>>>;

struct Hub {
    targets: Vec<Arc<Target>>,
    client: reqwest::Client,
    /// Where every webhook actor runs.
    arbiter: ArbiterHandle,
    conversation_webhooks: Vec<Addr<ConversationWebhook>>,
    live: LiveWebhooks,
    next_key: AtomicU64,
}

/// Handle to the webhooks (app data). Does nothing when no webhook is configured.
#[derive(Clone)]
pub struct WebhookHub {
    hub: Option<Arc<Hub>>,
    /// The webhooks' arbiter, stopped at shutdown.
    arbiter: Arc<Mutex<Option<Arbiter>>>,
}

impl WebhookHub {
    /// Starts the conversation webhooks of `config.webhooks` on a new arbiter.
    pub fn start(config: &Config) -> WebhookHub {
        if config.webhooks.is_empty() {
            return WebhookHub {
                hub: None,
                arbiter: Arc::new(Mutex::new(None)),
            };
        }
        let key = config.session_api_keys.first().map(String::as_str);
        let targets: Vec<Arc<Target>> = config
            .webhooks
            .iter()
            .map(|s| Arc::new(Target::new(s.clone(), key)))
            .collect();
        let client = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .unwrap_or_else(|e| {
                log::error!("webhook HTTP client: {e}; using defaults");
                reqwest::Client::new()
            });
        let arbiter = Arbiter::new();
        let handle = arbiter.handle();
        let conversation_webhooks = targets
            .iter()
            .map(|t| {
                let (t, c) = (t.clone(), client.clone());
                ConversationWebhook::start_in_arbiter(&handle, move |_| {
                    ConversationWebhook::new(t, c)
                })
            })
            .collect();
        WebhookHub {
            hub: Some(Arc::new(Hub {
                targets,
                client,
                arbiter: handle,
                conversation_webhooks,
                live: Arc::new(Mutex::new(HashMap::new())),
                next_key: AtomicU64::new(1),
            })),
            arbiter: Arc::new(Mutex::new(Some(arbiter))),
        }
    }

    pub fn enabled(&self) -> bool {
        self.hub.is_some()
    }

    /// What the registry tells about new and loaded conversations (`None` without webhooks).
    pub fn observer(&self) -> Option<Arc<dyn ConversationObserver>> {
        self.hub.clone().map(|h| h as Arc<dyn ConversationObserver>)
    }

    /// Posts the conversation's current ConversationInfo (after pause and title change).
    pub async fn conversation_changed(&self, conversation: &ConversationHandle) {
        if !self.enabled() {
            return;
        }
        match conversation.info().await {
            Ok(info) => self.post_info(Some(info)),
            Err(e) => log::warn!("webhook: no ConversationInfo to post: {e}"),
        }
    }

    /// The ConversationInfo of `id` when webhooks are configured (taken before a delete).
    pub async fn info_before_delete(&self, reg: &RegistryHandle, id: Uuid) -> Option<String> {
        if !self.enabled() {
            return None;
        }
        match reg.get(id).await {
            Ok(Some(h)) => h.info().await.ok(),
            Ok(None) | Err(_) => None,
        }
    }

    /// Queues a ConversationInfo post on every target.
    pub fn post_info(&self, info: Option<String>) {
        if let (Some(hub), Some(info)) = (&self.hub, info) {
            hub.post_info(Arc::from(info));
        }
    }

    /// Drains every webhook: remaining events and infos are posted (within
    /// [`SHUTDOWN_DEADLINE`]), then the arbiter stops. Call after the conversations stopped.
    pub async fn shutdown(&self) {
        let Some(hub) = &self.hub else { return };
        let live: Vec<Addr<EventWebhook>> = hub
            .live
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        let events = futures_util::future::join_all(live.iter().map(|a| {
            let req = a.send(event_webhook::Close);
            async move {
                if let Ok(rx) = req.await {
                    let _ = rx.await;
                }
            }
        }));
        let infos = futures_util::future::join_all(hub.conversation_webhooks.iter().map(|a| {
            let req = a.send(conversation_webhook::Close);
            async move {
                if let Ok(rx) = req.await {
                    let _ = rx.await;
                }
            }
        }));
        let all = futures_util::future::join(events, infos);
        if tokio::time::timeout(SHUTDOWN_DEADLINE, all).await.is_err() {
            log::warn!("webhooks: shutdown deadline reached; undelivered events are lost");
        }
        let arbiter = self.arbiter.lock().ok().and_then(|mut a| a.take());
        if let Some(arbiter) = arbiter {
            let _ = tokio::task::spawn_blocking(move || {
                arbiter.stop();
                let _ = arbiter.join();
            })
            .await;
        }
    }
}

impl Hub {
    fn post_info(&self, info: Arc<str>) {
        for w in &self.conversation_webhooks {
            w.do_send(PostInfo(info.clone()));
        }
    }
}

impl ConversationObserver for Hub {
    /// One event webhook per target, subscribed now (ahead of any request to the conversation):
    /// a created conversation replays its log (the SystemPromptEvent) after the `full_state`,
    /// a loaded one starts with the `full_state`. A created one also gets its info posted,
    /// read now so it shows the state before any initial message.
    fn attached(&self, conversation: &ConversationHandle, created: bool) {
        for target in &self.targets {
            let key = self.next_key.fetch_add(1, Ordering::Relaxed);
            let webhook = EventWebhook::new(
                key,
                conversation.clone(),
                target.clone(),
                self.client.clone(),
                self.live.clone(),
            );
            let addr = EventWebhook::start_in_arbiter(&self.arbiter, move |ctx| {
                ctx.set_mailbox_capacity(event_webhook::MAILBOX_CAPACITY);
                webhook
            });
            if let Ok(mut live) = self.live.lock() {
                live.insert(key, addr.clone());
            }
            let subscribed = conversation.addr().send(Subscribe {
                frames: addr.clone().recipient(),
                disconnect: Some(addr.clone().recipient()),
                resend_all: created,
            });
            self.arbiter.spawn(async move {
                if let Ok(id) = subscribed.await {
                    addr.do_send(Subscribed(id));
                }
            });
        }
        if created {
            let info = conversation.addr().send(GetInfo);
            let posts = self.conversation_webhooks.clone();
            self.arbiter.spawn(async move {
                if let Ok(info) = info.await {
                    let info: Arc<str> = Arc::from(info);
                    for w in posts {
                        w.do_send(PostInfo(info.clone()));
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(base: &str) -> WebhookSpec {
        WebhookSpec {
            base_url: base.into(),
            headers: HashMap::from([("X-Custom".to_string(), "yes".to_string())]),
            event_buffer_size: 5,
            flush_delay: 30.0,
            num_retries: 3,
            retry_delay: 5,
        }
    }

    #[test]
    fn urls_and_headers() {
        let id = Uuid::parse_str("065eb45c-a9af-40c1-930d-72a2612c6064").expect("uuid");
        let t = Target::new(spec("http://h:1/hooks/"), Some("k1"));
        assert_eq!(
            t.events_url(&id),
            "http://h:1/hooks/events/065eb45ca9af40c1930d72a2612c6064"
        );
        assert_eq!(t.conversations_url(), "http://h:1/hooks/conversations");
        let h: Vec<(String, String)> = t
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect();
        assert_eq!(
            h,
            vec![
                ("x-custom".to_string(), "yes".to_string()),
                ("x-session-api-key".to_string(), "k1".to_string()),
                ("content-type".to_string(), "application/json".to_string()),
            ]
        );
        let t = Target::new(spec("http://h"), None);
        assert!(!t.headers.contains_key("x-session-api-key"));
    }

    #[test]
    fn json_array_joins_events() {
        assert_eq!(&json_array(&[])[..], b"[]");
        let e: Vec<Arc<str>> = vec![Arc::from(r#"{"a":1}"#), Arc::from(r#"{"b":2}"#)];
        assert_eq!(&json_array(&e)[..], br#"[{"a":1},{"b":2}]"#);
    }
}
