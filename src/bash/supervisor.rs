//! `BashSupervisor`: owns the bash event log (the in-memory [`BashIndex`] and the event files),
//! starts one [`BashCommandActor`] per command, records the events its commands report, and fans
//! every new event out to the bash-socket sessions as shared, once-serialized JSON.
//!
//! Writes run on the blocking pool; the index changes only when a write completed, so the index
//! never names a file that was not written. A clear bumps `generation`, and a write that raced
//! with it is undone rather than indexed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::dev::SendError;
use actix::prelude::*;
use actix_web::http::StatusCode;
use bytestring::ByteString;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::command::{BashCommandActor, KillCommand};
use super::model::{BashCommand, BashEvent, BashOutput, ExecuteBashRequest};
use super::store::{self, BashIndex, BashQuery, Entry, Page};
use crate::error::ApiError;

/// Events whose text (output, or command and cwd) is at most this long are indexed at once and
/// written behind; their JSON stays well under `store::CACHED_BODY_MAX`.
const SMALL_EVENT_TEXT: usize = 8 * 1024;
/// How long `Shutdown` waits for killed commands to be reaped and report their last event.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often `Shutdown` checks whether the commands are gone.
const SHUTDOWN_POLL: Duration = Duration::from_millis(10);

/// The supervisor: the log, the running commands and the subscribers.
pub struct BashSupervisor {
    dir: Arc<PathBuf>,
    index: BashIndex,
    /// Bumped by every clear; a write started under an older generation is undone.
    generation: Arc<AtomicU64>,
    /// Event files being written behind (small events); `Shutdown` waits for them.
    pending_writes: Arc<AtomicUsize>,
    /// `max_concurrent_bash_commands`.
    max_running: usize,
    running: HashMap<Uuid, Addr<BashCommandActor>>,
    /// Commands accepted whose `BashCommand` is still being written (they count as running).
    starting: usize,
    subscribers: HashMap<u64, Recipient<BashFeed>>,
    next_subscriber: u64,
    /// Set by `Shutdown`: no new commands.
    stopping: bool,
}

impl BashSupervisor {
    pub fn new(dir: PathBuf, restored: Vec<Entry>, max_running: usize) -> BashSupervisor {
        let mut index = BashIndex::new();
        for e in restored {
            index.insert(e);
        }
        BashSupervisor {
            dir: Arc::new(dir),
            index,
            generation: Arc::new(AtomicU64::new(0)),
            pending_writes: Arc::new(AtomicUsize::new(0)),
            max_running,
            running: HashMap::new(),
            starting: 0,
            subscribers: HashMap::new(),
            next_subscriber: 0,
            stopping: false,
        }
    }

    /// Records an event: its file, the index, the subscribers. Small events (commands, most final
    /// outputs) are indexed and published at once, their body cached, and written behind; the
    /// reply does not wait for the disk. Large chunks are serialized and written on the blocking
    /// pool first and indexed after, so their body can be read back from the file, and the
    /// command, which awaits the reply, cannot outrun the disk.
    fn record(&mut self, event: BashEvent) -> ResponseActFuture<Self, ()> {
        let dir = self.dir.clone();
        let generation = self.generation.clone();
        let current = generation.load(Ordering::SeqCst);
        let text_len = match &event {
            BashEvent::Command(c) => c.command.len() + c.cwd.as_ref().map_or(0, String::len),
            BashEvent::Output(o) => {
                o.stdout.as_ref().map_or(0, String::len) + o.stderr.as_ref().map_or(0, String::len)
            }
        };
        if text_len <= SMALL_EVENT_TEXT {
            let compact = ByteString::from(serde_json::to_string(&event).unwrap_or_default());
            let mut entry = Entry::of_event(&event, &compact);
            entry.body = Some(compact.clone());
            self.index.insert(entry);
            self.publish(&compact);
            let pending = self.pending_writes.clone();
            pending.fetch_add(1, Ordering::SeqCst);
            tokio::task::spawn_blocking(move || {
                write_unless_cleared(&dir, &event, &generation, current);
                pending.fetch_sub(1, Ordering::SeqCst);
            });
            return Box::pin(fut::ready(()));
        }
        let write = tokio::task::spawn_blocking(move || {
            let compact = ByteString::from(serde_json::to_string(&event).unwrap_or_default());
            let written = write_unless_cleared(&dir, &event, &generation, current);
            (event, compact, written)
        });
        Box::pin(write.into_actor(self).map(move |res, act, _ctx| {
            let (event, compact, written) = match res {
                Ok(r) => r,
                Err(e) => {
                    log::error!("bash events: writer task failed: {e}");
                    return;
                }
            };
            if act.generation.load(Ordering::SeqCst) != current {
                return;
            }
            let mut entry = Entry::of_event(&event, &compact);
            if !written {
                // Keep it served from memory for this run.
                entry.body = Some(compact.clone());
            }
            act.index.insert(entry);
            act.publish(&compact);
        }))
    }

    /// Sends a frame to every subscriber without waiting; full queues lose their subscriber.
    fn publish(&mut self, frame: &ByteString) {
        let mut dropped = Vec::new();
        for (id, s) in &self.subscribers {
            match s.try_send(BashFeed::Event(frame.clone())) {
                Ok(()) => {}
                Err(SendError::Full(_)) => dropped.push((*id, true)),
                Err(SendError::Closed(_)) => dropped.push((*id, false)),
            }
        }
        for (id, lagged) in dropped {
            if let (Some(s), true) = (self.subscribers.remove(&id), lagged) {
                log::warn!("bash events: dropping slow socket subscriber {id}");
                s.do_send(BashFeed::Lagged);
            }
        }
    }
}

/// Writes one event file (pretty JSON) on the blocking pool. When a clear happened meanwhile
/// (`generation` moved past `started_in`) the file is removed again, as if it came before the
/// clear. Returns whether the file is on disk.
fn write_unless_cleared(
    dir: &Path,
    event: &BashEvent,
    generation: &AtomicU64,
    started_in: u64,
) -> bool {
    let name = event.file_name();
    let written = serde_json::to_vec_pretty(event)
        .map_err(std::io::Error::other)
        .and_then(|pretty| store::write_event(dir, &name, &pretty));
    if let Err(e) = &written {
        log::error!("bash events: cannot write {name}: {e}");
    }
    if generation.load(Ordering::SeqCst) != started_in {
        let _ = store::remove_event(dir, &name);
        return false;
    }
    written.is_ok()
}

impl Actor for BashSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Commands report through `send`, which waits on this mailbox: room for all of them.
        ctx.set_mailbox_capacity(self.max_running.saturating_mul(2).max(64));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        for addr in self.running.values() {
            addr.do_send(KillCommand);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

/// Starts a command: records its `BashCommand`, then runs it in a new command actor. With a
/// `waiter`, the final output (with the whole collected output) is sent there.
#[derive(Message)]
#[rtype(result = "Result<BashCommand, ApiError>")]
pub struct StartCommand {
    pub request: ExecuteBashRequest,
    pub waiter: Option<oneshot::Sender<BashOutput>>,
}

/// An output event of a running command; the reply comes once it is written, indexed and
/// published, so a command's events are recorded in order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordOutput(pub BashOutput);

/// A command actor stopped (its process group is gone or killed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CommandStopped(pub Uuid);

/// One page of a search.
#[derive(Message)]
#[rtype(result = "Page")]
pub struct SearchEvents(pub BashQuery);

/// The entries of the given ids (`None` for unknown ids), in the given order.
#[derive(Message)]
#[rtype(result = "Vec<Option<Arc<Entry>>>")]
pub struct GetEvents(pub Vec<String>);

/// Deletes every bash event (index and files); replies with the number of files removed.
#[derive(Message)]
#[rtype(result = "Result<usize, ApiError>")]
pub struct ClearEvents;

/// Registers a bash-socket subscriber; with `resend_all` the reply carries every event recorded
/// so far (taken in the same handler, so nothing falls between the backlog and the live feed).
#[derive(Message)]
#[rtype(result = "Subscription")]
pub struct Subscribe {
    pub subscriber: Recipient<BashFeed>,
    pub resend_all: bool,
}

/// The reply to [`Subscribe`].
#[derive(Debug)]
pub struct Subscription {
    pub id: u64,
    pub backlog: Vec<Arc<Entry>>,
}

/// Removes a subscriber (sent from the session's `stopping()`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub u64);

/// Kills every command, waits (bounded) until they are reaped, then stops the supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// What a subscriber receives: an event's compact JSON, or notice that it was dropped for
/// falling behind (the session then closes with 1013) or because the service is shutting down
/// (after the commands' last events; the session then closes with 1001).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub enum BashFeed {
    Event(ByteString),
    Lagged,
    ShuttingDown,
}

// ---------------------------------------------------------------------------------------------
// Handlers

impl Handler<StartCommand> for BashSupervisor {
    type Result = ResponseActFuture<Self, Result<BashCommand, ApiError>>;

    fn handle(&mut self, msg: StartCommand, _ctx: &mut Context<Self>) -> Self::Result {
        if self.stopping {
            return Box::pin(fut::ready(Err(ApiError::http_5xx(
                StatusCode::SERVICE_UNAVAILABLE,
                "Server is shutting down",
            ))));
        }
        if self.running.len() + self.starting >= self.max_running {
            let detail = format!(
                "Too many concurrent bash commands (limit {})",
                self.max_running
            );
            return Box::pin(fut::ready(Err(ApiError::client(
                StatusCode::TOO_MANY_REQUESTS,
                detail,
            ))));
        }
        self.starting += 1;
        let command = BashCommand::new(msg.request);
        let waiter = msg.waiter;
        Box::pin(
            self.record(BashEvent::Command(command.clone()))
                .map(move |(), act, ctx| {
                    act.starting -= 1;
                    if act.stopping {
                        return Err(ApiError::http_5xx(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "Server is shutting down",
                        ));
                    }
                    let addr =
                        BashCommandActor::new(command.clone(), ctx.address(), waiter).start();
                    act.running.insert(command.id, addr);
                    Ok(command)
                }),
        )
    }
}

impl Handler<RecordOutput> for BashSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: RecordOutput, _ctx: &mut Context<Self>) -> Self::Result {
        self.record(BashEvent::Output(msg.0))
    }
}

impl Handler<CommandStopped> for BashSupervisor {
    type Result = ();

    fn handle(&mut self, msg: CommandStopped, _ctx: &mut Context<Self>) {
        self.running.remove(&msg.0);
    }
}

impl Handler<SearchEvents> for BashSupervisor {
    type Result = MessageResult<SearchEvents>;

    fn handle(&mut self, msg: SearchEvents, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.index.search(&msg.0))
    }
}

impl Handler<GetEvents> for BashSupervisor {
    type Result = MessageResult<GetEvents>;

    fn handle(&mut self, msg: GetEvents, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(msg.0.iter().map(|id| self.index.get(id)).collect())
    }
}

impl Handler<ClearEvents> for BashSupervisor {
    type Result = AtomicResponse<Self, Result<usize, ApiError>>;

    fn handle(&mut self, _msg: ClearEvents, _ctx: &mut Context<Self>) -> Self::Result {
        self.index.clear();
        self.generation.fetch_add(1, Ordering::SeqCst);
        let dir = self.dir.clone();
        let clear = tokio::task::spawn_blocking(move || store::clear_dir(&dir));
        AtomicResponse::new(Box::pin(clear.into_actor(self).map(
            |res, _act, _ctx| match res {
                Ok(Ok(n)) => Ok(n),
                Ok(Err(e)) => Err(ApiError::internal(e.to_string())),
                Err(e) => Err(ApiError::internal(e.to_string())),
            },
        )))
    }
}

impl Handler<Subscribe> for BashSupervisor {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) -> Self::Result {
        let id = self.next_subscriber;
        self.next_subscriber += 1;
        self.subscribers.insert(id, msg.subscriber);
        let backlog = if msg.resend_all {
            self.index.all()
        } else {
            Vec::new()
        };
        MessageResult(Subscription { id, backlog })
    }
}

impl Handler<Unsubscribe> for BashSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Context<Self>) {
        self.subscribers.remove(&msg.0);
    }
}

impl Handler<Shutdown> for BashSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let commands: Vec<Addr<BashCommandActor>> = self.running.values().cloned().collect();
        for addr in &commands {
            addr.do_send(KillCommand);
        }
        // Not atomic: the commands' last `RecordOutput`s must still be handled meanwhile.
        let pending = self.pending_writes.clone();
        let wait = async move {
            let deadline = Instant::now() + SHUTDOWN_GRACE;
            while (commands.iter().any(Addr::connected) || pending.load(Ordering::SeqCst) > 0)
                && Instant::now() < deadline
            {
                tokio::time::sleep(SHUTDOWN_POLL).await;
            }
        };
        Box::pin(wait.into_actor(self).map(|(), act, ctx| {
            for (_, s) in act.subscribers.drain() {
                s.do_send(BashFeed::ShuttingDown);
            }
            ctx.stop();
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A subscriber whose mailbox is not read until `release` fires (a stalled socket).
    struct Stalled {
        got: Arc<Mutex<Vec<BashFeed>>>,
        release: Option<oneshot::Receiver<()>>,
    }

    impl Actor for Stalled {
        type Context = Context<Self>;

        fn started(&mut self, ctx: &mut Context<Self>) {
            ctx.set_mailbox_capacity(4);
            if let Some(rx) = self.release.take() {
                ctx.wait(
                    async move {
                        let _ = rx.await;
                    }
                    .into_actor(self),
                );
            }
        }
    }

    impl Handler<BashFeed> for Stalled {
        type Result = ();

        fn handle(&mut self, msg: BashFeed, _ctx: &mut Context<Self>) {
            if let Ok(mut g) = self.got.lock() {
                g.push(msg);
            }
        }
    }

    #[actix_rt::test]
    async fn a_stalled_subscriber_is_dropped_and_never_blocks_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let sup = BashSupervisor::new(dir.path().to_path_buf(), Vec::new(), 4).start();
        let got = Arc::new(Mutex::new(Vec::new()));
        let (release, rx) = oneshot::channel();
        let stalled = Stalled {
            got: got.clone(),
            release: Some(rx),
        }
        .start();
        sup.send(Subscribe {
            subscriber: stalled.recipient(),
            resend_all: false,
        })
        .await
        .unwrap();
        let command = Uuid::new_v4();
        let mut frames = Vec::new();
        for order in 0..20 {
            let out = BashOutput::new(command, order, None, Some(format!("{order}")), None);
            frames.push(serde_json::to_string(&out).unwrap());
            sup.send(RecordOutput(out)).await.unwrap();
        }
        // All 20 were recorded although the subscriber read nothing.
        let page = sup.send(SearchEvents(BashQuery::default())).await.unwrap();
        assert_eq!(page.items.len(), 20);
        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if got
                .lock()
                .unwrap()
                .last()
                .is_some_and(|m| matches!(m, BashFeed::Lagged))
            {
                break;
            }
            assert!(Instant::now() < deadline, "no Lagged notice");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let got = got.lock().unwrap();
        let events: Vec<String> = got
            .iter()
            .filter_map(|m| match m {
                BashFeed::Event(b) => Some(b.to_string()),
                BashFeed::Lagged | BashFeed::ShuttingDown => None,
            })
            .collect();
        // The frames it did get are the first ones, in order; then the notice, nothing after.
        assert!(!events.is_empty() && events.len() < 20, "{}", events.len());
        assert_eq!(events, frames[..events.len()].to_vec());
        assert_eq!(got.len(), events.len() + 1);
    }
}
