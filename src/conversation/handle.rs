//! Typed handles around the conversation actors' addresses: async methods returning
//! `Result<T, ApiError>`, so routes and other modules never build messages or see
//! `MailboxError`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use uuid::Uuid;

use super::actor::{self, Conversation};
use super::arbiters::ArbiterPool;
use super::registry::{self, ConversationRegistry, SortOrder};
use super::{
    ConversationObserver, Disconnect, EventBatch, InfoCache, Limits, Shared, SubscriptionId,
};
use crate::error::ApiError;
use crate::model::conversation::{ConversationStats, SecretMap};
use crate::model::{
    ConfirmationPolicy, ConversationState, Event, ExecutionStatus, SecurityAnalyzer,
    SendMessageRequest, StartConversationRequest,
};
use crate::state::Activity;
use crate::store::cipher::Fernet;
use crate::store::event_log::EventFilter;

fn gone() -> ApiError {
    ApiError::internal("Conversation is no longer available")
}

async fn acked(
    rx: Result<tokio::sync::oneshot::Receiver<()>, MailboxError>,
) -> Result<(), ApiError> {
    rx?.await.map_err(|_| gone())
}

/// Counts the bytes written to it (sizes of JSON without building it).
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Refuses a user message whose content's JSON is larger than `limit` bytes (413).
pub fn check_message_size(msg: &SendMessageRequest, limit: usize) -> Result<(), ApiError> {
    let mut counter = ByteCounter(0);
    let size = match serde_json::to_writer(&mut counter, &msg.content) {
        Ok(()) => counter.0,
        Err(e) => return Err(ApiError::internal(format!("message not serializable: {e}"))),
    };
    if size > limit {
        return Err(ApiError::client(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("Message too large: {size} bytes (limit {limit})"),
        ));
    }
    Ok(())
}

/// A handle to one conversation actor.
#[derive(Clone, Debug)]
pub struct ConversationHandle {
    id: Uuid,
    addr: Addr<Conversation>,
    /// Cap on the user messages sent through this handle (see [`check_message_size`]).
    max_event_bytes: usize,
    /// The actor's cached info (client handles); `None`: always ask the actor.
    info_cache: Option<Arc<InfoCache>>,
}

impl ConversationHandle {
    /// A handle without a message size cap (the agent loop's own handle).
    pub fn new(id: Uuid, addr: Addr<Conversation>) -> Self {
        ConversationHandle {
            id,
            addr,
            max_event_bytes: usize::MAX,
            info_cache: None,
        }
    }

    /// The same handle, reading the info from the actor's cache when it is filled.
    pub fn with_info_cache(mut self, cache: Arc<InfoCache>) -> Self {
        self.info_cache = Some(cache);
        self
    }

    /// The same handle, refusing user messages larger than `max_event_bytes` (client handles).
    pub fn with_max_event_bytes(mut self, max_event_bytes: usize) -> Self {
        self.max_event_bytes = max_event_bytes;
        self
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn addr(&self) -> &Addr<Conversation> {
        &self.addr
    }

    /// ConversationInfo as JSON (API form); from the actor's cache when it is filled.
    pub async fn info(&self) -> Result<String, ApiError> {
        if let Some(info) = self.info_cache.as_ref().and_then(|c| c.get()) {
            return Ok(info.to_string());
        }
        Ok(self.addr.send(actor::GetInfo).await?)
    }

    /// A copy of the state, secrets in plain text (agent loop).
    pub async fn state(&self) -> Result<ConversationState, ApiError> {
        Ok(self.addr.send(actor::GetState).await?)
    }

    /// Every event in append order, parsed (agent loop).
    pub async fn history(&self) -> Result<Vec<Event>, ApiError> {
        Ok(self.addr.send(actor::GetHistory).await?)
    }

    /// Every event's API JSON in append order (agent loops working on JSON values).
    pub async fn history_json(&self) -> Result<Vec<Arc<str>>, ApiError> {
        Ok(self.addr.send(actor::GetHistoryJson).await?)
    }

    /// The API JSON of the events appended after the first `from` ones (append order): an
    /// agent loop keeping the log parsed fetches only what is new.
    pub async fn history_json_since(&self, from: usize) -> Result<Vec<Arc<str>>, ApiError> {
        Ok(self.addr.send(actor::GetHistoryJsonSince(from)).await?)
    }

    /// Accounts one successful LLM response of the LLM registered under `usage_id` (`model`:
    /// its configured model string) and appends the `stats` state update; resolves once
    /// persisted.
    pub async fn record_usage(
        &self,
        usage_id: String,
        model: String,
        response: crate::llm::LlmResponse,
    ) -> Result<(), ApiError> {
        acked(
            self.addr
                .send(actor::RecordUsage {
                    usage_id,
                    model,
                    response,
                })
                .await,
        )
        .await
    }

    /// One batch of an agent step: the usage of an LLM response (`(usage_id, model, response)`,
    /// its `stats` update first) and events given as JSON objects; persisted together.
    pub async fn append_step_events(
        &self,
        usage: Option<(String, String, crate::llm::LlmResponse)>,
        events: Vec<serde_json::Value>,
    ) -> Result<(), ApiError> {
        let events = events
            .into_iter()
            .map(serde_json::from_value::<Event>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::internal(format!("invalid event: {e}")))?;
        let usage = usage.map(|(usage_id, model, response)| actor::RecordUsage {
            usage_id,
            model,
            response,
        });
        acked(
            self.addr
                .send(actor::AppendStepEvents { usage, events })
                .await,
        )
        .await
    }

    /// Appends events given as JSON objects (API form, `kind` first); a value that is not an
    /// event is an error and nothing is appended.
    pub async fn append_json(&self, events: Vec<serde_json::Value>) -> Result<(), ApiError> {
        let parsed = events
            .into_iter()
            .map(serde_json::from_value::<Event>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::internal(format!("invalid event: {e}")))?;
        self.append(parsed).await
    }

    /// POST /run: resolves when the run ends; 409 while another run is active.
    pub async fn run(&self) -> Result<(), ApiError> {
        let rx = self.addr.send(actor::Run { wait: true }).await??;
        rx.await.map_err(|_| gone())?
    }

    /// Starts a run in the background unless one is active.
    pub async fn start_run(&self) -> Result<(), ApiError> {
        self.addr.send(actor::Run { wait: false }).await??;
        Ok(())
    }

    /// POST /pause: waits for a running step to end.
    pub async fn pause(&self) -> Result<(), ApiError> {
        acked(
            self.addr
                .send(actor::Pause)
                .await
                .map(Ok)
                .unwrap_or_else(Err),
        )
        .await
    }

    /// Appends a user message; `msg.run` starts the loop in the background. A message larger
    /// than the handle's cap is refused with 413 and nothing is appended.
    pub async fn send_message(&self, msg: SendMessageRequest) -> Result<(), ApiError> {
        check_message_size(&msg, self.max_event_bytes)?;
        acked(self.addr.send(actor::SendMessage(msg)).await).await
    }

    /// The queue of the conversation's event files acknowledged and not written yet.
    pub async fn backlog(&self) -> Result<Arc<crate::store::backlog::Backlog>, ApiError> {
        Ok(self.addr.send(actor::GetBacklog).await?)
    }

    /// Returns once every event acknowledged so far is written as a file in the directory
    /// (they are written shortly after their acknowledgement; see `store::backlog`).
    pub async fn settle_files(&self) -> Result<(), ApiError> {
        let backlog = self.backlog().await?;
        tokio::task::spawn_blocking(move || backlog.wait_idle())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// respond_to_confirmation: accept runs (like POST /run), reject rejects the pending actions.
    pub async fn respond_to_confirmation(
        &self,
        accept: bool,
        reason: String,
    ) -> Result<(), ApiError> {
        if accept {
            self.run().await
        } else {
            acked(self.addr.send(actor::RejectPending { reason }).await).await
        }
    }

    pub async fn set_confirmation_policy(&self, p: ConfirmationPolicy) -> Result<(), ApiError> {
        acked(self.addr.send(actor::SetConfirmationPolicy(p)).await).await
    }

    pub async fn set_security_analyzer(&self, a: Option<SecurityAnalyzer>) -> Result<(), ApiError> {
        acked(self.addr.send(actor::SetSecurityAnalyzer(a)).await).await
    }

    pub async fn update_secrets(&self, s: SecretMap) -> Result<(), ApiError> {
        acked(self.addr.send(actor::UpdateSecrets(s)).await).await
    }

    pub async fn set_title(&self, title: String) -> Result<(), ApiError> {
        acked(self.addr.send(actor::SetTitle(title)).await).await
    }

    /// Appends events (agent loop); resolves once they are persisted and sent to subscribers.
    pub async fn append(&self, events: Vec<Event>) -> Result<(), ApiError> {
        acked(self.addr.send(actor::AppendEvents(events)).await).await
    }

    /// Replaces the stats and appends a `stats` state update (agent loop).
    pub async fn update_stats(&self, stats: ConversationStats) -> Result<(), ApiError> {
        acked(self.addr.send(actor::UpdateStats(stats)).await).await
    }

    pub async fn search_events(
        &self,
        filter: EventFilter,
        desc: bool,
        page_id: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Arc<str>>, Option<String>), ApiError> {
        Ok(self
            .addr
            .send(actor::SearchEvents {
                filter,
                desc,
                page_id,
                limit,
            })
            .await?)
    }

    pub async fn count_events(&self, filter: EventFilter) -> Result<usize, ApiError> {
        Ok(self.addr.send(actor::CountEvents(filter)).await?)
    }

    /// Events by id (`None` for unknown ids).
    pub async fn get_events(&self, ids: Vec<String>) -> Result<Vec<Option<Arc<str>>>, ApiError> {
        Ok(self.addr.send(actor::GetEvents(ids)).await?)
    }

    /// Subscribes `frames` (and `disconnect`) to this conversation: first batch = `full_state`
    /// (+ backlog with `resend_all`), then one batch per live event. See actors.md. With
    /// `max_subscribers` live subscribers already, nothing is registered and the answer is a 429
    /// (a socket then closes with [`super::TOO_MANY_SUBSCRIBERS_CODE`] and the error's detail).
    pub async fn subscribe(
        &self,
        frames: Recipient<EventBatch>,
        disconnect: Option<Recipient<Disconnect>>,
        resend_all: bool,
    ) -> Result<SubscriptionId, ApiError> {
        self.addr
            .send(actor::SubscribeClient(actor::Subscribe {
                frames,
                disconnect,
                resend_all,
            }))
            .await?
    }

    /// Fire-and-forget unsubscribe (for `stopping()` of a subscriber).
    pub fn unsubscribe(&self, id: SubscriptionId) {
        self.addr.do_send(actor::Unsubscribe(id));
    }
}

/// The registry's arbiter and the conversations' arbiter pool.
type Threads = (Arbiter, Arc<ArbiterPool>);

/// A handle to the registry (app data of the HTTP server).
#[derive(Clone)]
pub struct RegistryHandle {
    addr: Addr<ConversationRegistry>,
    /// Id -> handle of every loaded conversation, written by the registry only.
    index: registry::SharedIndex,
    /// The registry's own arbiter and the conversations' pool, stopped at shutdown.
    threads: Arc<Mutex<Option<Threads>>>,
    limits: Limits,
}

impl RegistryHandle {
    /// Restores the conversations of `root` and starts the registry and its arbiters. The
    /// `observer` (the webhooks) is told of every conversation actor started, before its handle
    /// is published, so it also sees the start-up publishes.
    pub async fn start(
        root: PathBuf,
        secret_key: Option<&str>,
        activity: Arc<Activity>,
        observer: Option<Arc<dyn ConversationObserver>>,
    ) -> RegistryHandle {
        Self::start_limited(root, secret_key, activity, observer, Limits::UNLIMITED).await
    }

    /// As [`Self::start`], with resource caps (conversations, subscribers, message size).
    pub async fn start_limited(
        root: PathBuf,
        secret_key: Option<&str>,
        activity: Arc<Activity>,
        observer: Option<Arc<dyn ConversationObserver>>,
        limits: Limits,
    ) -> RegistryHandle {
        let cipher = secret_key.map(|k| Arc::new(Fernet::from_secret_key(k)));
        let shared = Arc::new(Shared {
            cipher,
            activity,
            limits,
        });
        let pool = Arc::new(ArbiterPool::new(ArbiterPool::default_size()));
        let (addr, arbiter, index) =
            ConversationRegistry::start(root, shared, pool.clone(), observer).await;
        RegistryHandle {
            addr,
            index,
            threads: Arc::new(Mutex::new(Some((arbiter, pool)))),
            limits,
        }
    }

    /// Starts (201, `true`) or finds (200, `false`) a conversation; returns its info JSON. With an
    /// `initial_message` the message is appended and a run starts in the background whatever its
    /// `run` says; the info is taken before, as the reference answers (normally `idle`).
    pub async fn start_conversation(
        &self,
        req: StartConversationRequest,
    ) -> Result<(String, bool, ConversationHandle), ApiError> {
        if let Some(m) = &req.initial_message {
            check_message_size(m, self.limits.max_event_bytes)?;
        }
        let initial = req.initial_message.clone();
        let (handle, created) = self.addr.send(registry::Create(req)).await??;
        let info = handle.info().await?;
        if created && let Some(mut m) = initial {
            m.run = true;
            handle.send_message(m).await?;
        }
        Ok((info, created, handle))
    }

    /// The handle of a loaded conversation, read from the registry's shared index (no message:
    /// every conversation-scoped request starts here).
    pub async fn get(&self, id: Uuid) -> Result<Option<ConversationHandle>, ApiError> {
        Ok(self.index.get(&id))
    }

    /// A page of ConversationInfo JSON strings and the next page id.
    pub async fn search(
        &self,
        status: Option<ExecutionStatus>,
        sort: SortOrder,
        page_id: Option<String>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), ApiError> {
        let (handles, next) = self
            .addr
            .send(registry::Search {
                status,
                sort,
                page_id,
                limit,
            })
            .await?;
        let infos = futures_util::future::join_all(handles.iter().map(|h| h.info())).await;
        Ok((infos.into_iter().collect::<Result<Vec<_>, _>>()?, next))
    }

    pub async fn count(&self, status: Option<ExecutionStatus>) -> Result<usize, ApiError> {
        Ok(self.addr.send(registry::Count(status)).await?)
    }

    /// Deletes a conversation (memory first, then its directory). `false` if unknown.
    pub async fn delete(&self, id: Uuid) -> Result<bool, ApiError> {
        match self.addr.send(registry::Remove(id)).await? {
            Some(h) => {
                h.addr().send(actor::Shutdown { delete: true }).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Graceful shutdown: every conversation writes its state and stops, then the arbiters stop.
    pub async fn shutdown(&self) {
        registry::shutdown_all(&self.addr).await;
        let threads = self.threads.lock().ok().and_then(|mut t| t.take());
        if let Some((arbiter, pool)) = threads {
            let _ = tokio::task::spawn_blocking(move || {
                arbiter.stop();
                let _ = arbiter.join();
                if let Ok(pool) = Arc::try_unwrap(pool) {
                    pool.stop();
                }
            })
            .await;
        }
    }
}
