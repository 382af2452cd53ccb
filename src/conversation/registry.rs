//! The `ConversationRegistry` actor: owns the set of loaded conversations (handles and shared
//! summaries, in creation/load order), creates new ones, restores every directory with a
//! `meta.json` at start-up, answers list/search/count, and removes conversations on delete.
//! It runs on its own arbiter; the conversations run on the [`ArbiterPool`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::actor::{self, Conversation, SharedSummary, Shutdown};
use super::arbiters::ArbiterPool;
use super::seam;
use super::{ConversationHandle, ConversationObserver, Shared};
use crate::error::ApiError;
use crate::model::{ExecutionStatus, StartConversationRequest, wire};
use crate::store::cipher::Fernet;
use crate::store::dir::{self, ConversationRecord};

/// At most this many directories are read in parallel at start-up.
const RESTORE_PARALLELISM: usize = 4;

struct Entry {
    id: Uuid,
    handle: ConversationHandle,
    summary: SharedSummary,
}

pub struct ConversationRegistry {
    /// The configured conversations path (as given: `persistence_dir` shows it verbatim).
    root: PathBuf,
    shared: Arc<Shared>,
    pool: Arc<ArbiterPool>,
    /// Creation/load order (search ties keep it).
    entries: Vec<Entry>,
    index: HashMap<Uuid, usize>,
    /// Ids whose directory is being created, with the start requests waiting for them.
    creating: HashMap<Uuid, Vec<CreateWaiter>>,
    /// Told about each conversation started (webhooks); `None` when nobody listens.
    observer: Option<Arc<dyn ConversationObserver>>,
}

impl Actor for ConversationRegistry {
    type Context = Context<Self>;
}

impl ConversationRegistry {
    fn reindex(&mut self) {
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id, i))
            .collect();
    }

    fn insert(&mut self, handle: ConversationHandle, summary: SharedSummary) {
        let id = handle.id();
        self.index.insert(id, self.entries.len());
        self.entries.push(Entry {
            id,
            handle,
            summary,
        });
    }
}

/// Starts a conversation actor on one of the pool's arbiters.
fn spawn_conversation(
    pool: &ArbiterPool,
    record: ConversationRecord,
    root: &std::path::Path,
    shared: Arc<Shared>,
    created: bool,
) -> (ConversationHandle, SharedSummary) {
    let id = record.state.id;
    let dir = dir::conversation_dir(root, &id);
    let max_event_bytes = shared.limits.max_event_bytes;
    let conv = Conversation::new(record, dir, shared, created);
    let summary = conv.summary();
    let addr = Conversation::start_in_arbiter(&pool.pick(), move |_| conv);
    (
        ConversationHandle::new(id, addr).with_max_event_bytes(max_event_bytes),
        summary,
    )
}

/// Reads every conversation directory under `root` (blocking I/O on the blocking pool, a few
/// in parallel); corrupt ones are logged and skipped.
async fn restore_all(root: PathBuf, cipher: Option<Arc<Fernet>>) -> Vec<ConversationRecord> {
    let listed = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || dir::list_conversation_dirs(&root)).await
    };
    let dirs = match listed {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            log::error!("cannot list {}: {e}", root.display());
            return Vec::new();
        }
        Err(e) => {
            log::error!("cannot list {}: {e}", root.display());
            return Vec::new();
        }
    };
    let groups: Vec<Vec<(usize, PathBuf)>> = (0..RESTORE_PARALLELISM)
        .map(|g| {
            dirs.iter()
                .enumerate()
                .filter(|(i, _)| i % RESTORE_PARALLELISM == g)
                .map(|(i, p)| (i, p.clone()))
                .collect()
        })
        .collect();
    let tasks: Vec<_> = groups
        .into_iter()
        .map(|paths| {
            let root = root.clone();
            let cipher = cipher.clone();
            tokio::task::spawn_blocking(move || {
                paths
                    .into_iter()
                    .filter_map(|(i, p)| load_one(&root, &p, cipher.as_ref()).map(|r| (i, r)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut out = Vec::with_capacity(dirs.len());
    for t in futures_util::future::join_all(tasks).await {
        match t {
            Ok(recs) => out.extend(recs),
            Err(e) => log::error!("restore task failed: {e}"),
        }
    }
    // directory order, like the reference
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

fn load_one(
    root: &std::path::Path,
    p: &std::path::Path,
    cipher: Option<&Arc<Fernet>>,
) -> Option<ConversationRecord> {
    match dir::load(root, p, cipher) {
        Ok((rec, warnings)) => {
            for w in warnings {
                log::warn!("{}: {w}", p.display());
            }
            let name = p.file_name().map(|n| n.to_string_lossy().to_string());
            if name.as_deref() != Some(wire::hex(&rec.state.id).as_str()) {
                log::error!(
                    "{}: meta.json id {} does not match the directory; skipped",
                    p.display(),
                    rec.state.id
                );
                return None;
            }
            Some(rec)
        }
        Err(e) => {
            log::error!("skipping conversation directory {}: {e}", p.display());
            None
        }
    }
}

impl ConversationRegistry {
    /// Restores every conversation and starts the registry on its own arbiter.
    pub async fn start(
        root: PathBuf,
        shared: Arc<Shared>,
        pool: Arc<ArbiterPool>,
        observer: Option<Arc<dyn ConversationObserver>>,
    ) -> (Addr<ConversationRegistry>, Arbiter) {
        let records = restore_all(root.clone(), shared.cipher.clone()).await;
        let n = records.len();
        let mut reg = ConversationRegistry {
            root: root.clone(),
            shared: shared.clone(),
            pool: pool.clone(),
            entries: Vec::new(),
            index: HashMap::new(),
            creating: HashMap::new(),
            observer,
        };
        for rec in records {
            if reg.index.contains_key(&rec.state.id) {
                continue;
            }
            let (handle, summary) = spawn_conversation(&pool, rec, &root, shared.clone(), false);
            if let Some(o) = &reg.observer {
                o.attached(&handle, false);
            }
            reg.insert(handle, summary);
        }
        if n > 0 {
            log::info!("restored {n} conversation(s) from {}", root.display());
        }
        let arbiter = Arbiter::new();
        let addr = ConversationRegistry::start_in_arbiter(&arbiter.handle(), move |_| reg);
        (addr, arbiter)
    }
}

// --------------------------------------------------------------------- messages

/// Starts (or finds) a conversation. Replies with its handle and whether it was created.
#[derive(Message)]
#[rtype(result = "Result<(ConversationHandle, bool), ApiError>")]
pub struct Create(pub StartConversationRequest);

#[derive(Message)]
#[rtype(result = "Option<ConversationHandle>")]
pub struct Get(pub Uuid);

/// Sort orders of conversation search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    CreatedAt,
    UpdatedAt,
    CreatedAtDesc,
    UpdatedAtDesc,
}

impl SortOrder {
    pub const NAMES: [&'static str; 4] = [
        "CREATED_AT",
        "UPDATED_AT",
        "CREATED_AT_DESC",
        "UPDATED_AT_DESC",
    ];
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CREATED_AT" => Some(SortOrder::CreatedAt),
            "UPDATED_AT" => Some(SortOrder::UpdatedAt),
            "CREATED_AT_DESC" => Some(SortOrder::CreatedAtDesc),
            "UPDATED_AT_DESC" => Some(SortOrder::UpdatedAtDesc),
            _ => None,
        }
    }
}

/// One page of conversation search: the handles of the page and the next page id (32-hex).
#[derive(Message)]
#[rtype(result = "(Vec<ConversationHandle>, Option<String>)")]
pub struct Search {
    pub status: Option<ExecutionStatus>,
    pub sort: SortOrder,
    pub page_id: Option<String>,
    pub limit: usize,
}

#[derive(Message)]
#[rtype(result = "usize")]
pub struct Count(pub Option<ExecutionStatus>);

/// Removes a conversation from the registry; the caller then shuts it down with `delete`.
#[derive(Message)]
#[rtype(result = "Option<ConversationHandle>")]
pub struct Remove(pub Uuid);

/// Every loaded conversation (for shutdown).
#[derive(Message)]
#[rtype(result = "Vec<ConversationHandle>")]
pub struct All;

// --------------------------------------------------------------------- handlers

/// Answer to a start request that arrived while the same id was being created.
type CreateWaiter = oneshot::Sender<Result<ConversationHandle, ApiError>>;

impl Handler<Create> for ConversationRegistry {
    type Result = ResponseActFuture<Self, Result<(ConversationHandle, bool), ApiError>>;
    fn handle(&mut self, Create(req): Create, _: &mut Context<Self>) -> Self::Result {
        let id = req.conversation_id.unwrap_or_else(Uuid::new_v4);
        if let Some(&i) = self.index.get(&id) {
            let h = self.entries[i].handle.clone();
            return Box::pin(actix::fut::ready(Ok((h, false))));
        }
        if let Some(waiters) = self.creating.get_mut(&id) {
            // the same id is being created right now: answer like a second start (200)
            let (tx, rx) = oneshot::channel();
            waiters.push(tx);
            return Box::pin(actix::fut::wrap_future::<_, Self>(async move {
                match rx.await {
                    Ok(Ok(h)) => Ok((h, false)),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(ApiError::internal("conversation creation was abandoned")),
                }
            }));
        }
        let max = self.shared.limits.max_conversations;
        if self.entries.len() + self.creating.len() >= max {
            return Box::pin(actix::fut::ready(Err(ApiError::client(
                actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                format!("Too many conversations (limit {max}); delete one first"),
            ))));
        }
        if let Err(e) = seam::check_tools(&req.agent) {
            return Box::pin(actix::fut::ready(Err(ApiError::internal(e))));
        }
        // the directory I/O runs on the blocking pool; the registry keeps serving meanwhile
        self.creating.insert(id, Vec::new());
        let root = self.root.clone();
        let cipher = self.shared.cipher.clone();
        let work = tokio::task::spawn_blocking(move || {
            actor::create_record(&root, id, &req, cipher.as_ref())
        });
        Box::pin(
            actix::fut::wrap_future::<_, Self>(work).map(move |res, act, _ctx| {
                let waiters = act.creating.remove(&id).unwrap_or_default();
                let result = match res {
                    Ok(Ok(record)) => {
                        let (handle, summary) = spawn_conversation(
                            &act.pool,
                            record,
                            &act.root,
                            act.shared.clone(),
                            true,
                        );
                        if let Some(o) = &act.observer {
                            o.attached(&handle, true);
                        }
                        act.insert(handle.clone(), summary);
                        Ok(handle)
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                for w in waiters {
                    let _ = w.send(result.clone().map_err(ApiError::internal));
                }
                result.map(|h| (h, true)).map_err(ApiError::internal)
            }),
        )
    }
}

impl Handler<Get> for ConversationRegistry {
    type Result = Option<ConversationHandle>;
    fn handle(&mut self, Get(id): Get, _: &mut Context<Self>) -> Self::Result {
        self.index.get(&id).map(|&i| self.entries[i].handle.clone())
    }
}

impl Handler<Search> for ConversationRegistry {
    type Result = MessageResult<Search>;
    fn handle(&mut self, m: Search, _: &mut Context<Self>) -> Self::Result {
        // (position, created_at, updated_at) of the matching conversations
        let mut rows: Vec<(usize, String, String)> = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let s = e.summary.lock().ok()?;
                if m.status.is_some_and(|st| st != s.status) {
                    return None;
                }
                Some((i, s.created_at.clone(), s.updated_at.clone()))
            })
            .collect();
        match m.sort {
            SortOrder::CreatedAt => rows.sort_by(|a, b| a.1.cmp(&b.1)),
            SortOrder::UpdatedAt => rows.sort_by(|a, b| a.2.cmp(&b.2)),
            // Python's sort(reverse=True) keeps ties in their original order
            SortOrder::CreatedAtDesc => rows.sort_by(|a, b| b.1.cmp(&a.1)),
            SortOrder::UpdatedAtDesc => rows.sort_by(|a, b| b.2.cmp(&a.2)),
        }
        let start = m
            .page_id
            .as_deref()
            .and_then(|p| {
                rows.iter()
                    .position(|r| wire::hex(&self.entries[r.0].id) == p)
            })
            .unwrap_or(0);
        let page: Vec<ConversationHandle> = rows[start..]
            .iter()
            .take(m.limit)
            .map(|r| self.entries[r.0].handle.clone())
            .collect();
        let next = rows
            .get(start + m.limit)
            .map(|r| wire::hex(&self.entries[r.0].id));
        MessageResult((page, next))
    }
}

impl Handler<Count> for ConversationRegistry {
    type Result = usize;
    fn handle(&mut self, Count(status): Count, _: &mut Context<Self>) -> usize {
        match status {
            None => self.entries.len(),
            Some(st) => self
                .entries
                .iter()
                .filter(|e| e.summary.lock().map(|s| s.status == st).unwrap_or(false))
                .count(),
        }
    }
}

impl Handler<Remove> for ConversationRegistry {
    type Result = Option<ConversationHandle>;
    fn handle(&mut self, Remove(id): Remove, _: &mut Context<Self>) -> Self::Result {
        let i = self.index.remove(&id)?;
        let e = self.entries.remove(i);
        self.reindex();
        Some(e.handle)
    }
}

impl Handler<All> for ConversationRegistry {
    type Result = MessageResult<All>;
    fn handle(&mut self, _: All, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.entries.iter().map(|e| e.handle.clone()).collect())
    }
}

/// Stops every conversation (writing its state), e.g. at graceful shutdown.
pub async fn shutdown_all(addr: &Addr<ConversationRegistry>) {
    let Ok(all) = addr.send(All).await else {
        return;
    };
    let futs = all
        .iter()
        .map(|h| h.addr().send(Shutdown { delete: false }));
    futures_util::future::join_all(futs).await;
}
