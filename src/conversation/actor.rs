//! The `Conversation` actor: owns one conversation's event log, its state (execution status,
//! stats, confirmation policy, security analyzer, secrets, title, dates) and its subscribers,
//! and drives the agent loop one step at a time through [`super::seam`].
//!
//! Every change follows one path: the handler mutates the state and *stages* events
//! ([`Conversation::append`], [`Conversation::publish`]) and asks for a flush
//! ([`Conversation::flush`]). The flush runs once the mailbox holds no more messages ready
//! (group commit: every message handled in the meantime adds to the same batch): it writes the
//! staged event files and the state files through the conversation's journal (one sync for the
//! whole batch, `store::journal`) on a blocking thread. The actor goes on handling messages
//! during the write; what they stage is the next batch, written as soon as this one completes
//! (one write in flight at a time). When a write completes its events are indexed and fanned
//! out to subscribers in order, and its acknowledgements resolve. So every event is persisted,
//! then indexed, then sent; readers that come later see it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use actix_web::http::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::seam::{self, AgentCore, AgentSession, StepInput, StepOutcome, StepOutput};
use super::{
    ConversationHandle, DELETED_CODE, Disconnect, EventBatch, InfoCache, SHUTDOWN_CODE,
    SLOW_SUBSCRIBER_CODE, Shared, SubscriptionId,
};
use crate::error::ApiError;
use crate::model::conversation::{ConversationStats, SecretMap, StoredConversation};
use crate::model::events::UserRejectObservation;
use crate::model::{
    ConfirmationPolicy, ConversationInfo, ConversationState, Event, ExecutionStatus,
    SecurityAnalyzer, SendMessageRequest, Source, wire,
};
use crate::store::backlog::Backlog;
use crate::store::cipher::Fernet;
use crate::store::dir::{self, ConversationRecord};
use crate::store::event_log::{EventFilter, EventLog, Prepared};
use crate::store::journal::Journal;

/// What the registry reads without a message round trip (filters and sorts of conversation search).
#[derive(Debug, Clone)]
pub struct Summary {
    pub status: ExecutionStatus,
    pub created_at: String,
    pub updated_at: String,
}

pub type SharedSummary = Arc<Mutex<Summary>>;

/// While a run is active, stats-only changes rewrite `base_state.json` at most this often (the
/// `stats` events themselves are always persisted at once).
const STATS_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the journal must stay unwritten before the event files it holds are created
/// (`store::backlog`): long enough to span the gaps inside a burst of appends, short enough
/// that the directory is complete moments after.
const BACKLOG_QUIET: std::time::Duration = std::time::Duration::from_millis(50);
/// How long a stopping conversation waits for its queued event files (the server's shutdown
/// must end within seconds whatever the disk does).
const SHUTDOWN_FILES_WAIT: std::time::Duration = std::time::Duration::from_secs(4);

/// Text of the 409 for a second run (DEVIATIONS #1).
pub const ALREADY_RUNNING: &str =
    "Conversation already running. Wait for completion or pause first.";

struct Subscriber {
    id: SubscriptionId,
    frames: Recipient<EventBatch>,
    disconnect: Option<Recipient<Disconnect>>,
}

/// A subscription that waits for the staged items to be committed (see the `Subscribe`
/// handler).
struct PendingSubscriber {
    subscriber: Subscriber,
    resend_all: bool,
}

/// An item staged by a handler, handled in order by the next flush.
enum Staged {
    /// A persisted event (already numbered and serialized).
    Event(Prepared),
    /// A non-persisted event for subscribers only (`full_state`); `touch`: bump `updated_at`.
    Publish { json: Arc<str>, touch: bool },
    /// Resolved once everything staged before it is persisted and sent.
    Ack(oneshot::Sender<()>),
}

/// A journal write not completed yet (see [`Conversation::write_staged`]).
struct InFlight {
    /// Its items, committed (indexed, sent, acknowledged) once it completes.
    staged: Vec<Staged>,
    /// Resolved (or dropped) when its blocking task is over: `Shutdown` waits for it.
    finished: oneshot::Receiver<()>,
}

/// Which state files a flush rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateFiles {
    None,
    /// `base_state.json` alone (only the stats changed).
    BaseOnly,
    /// `meta.json` and `base_state.json`.
    Both,
}

/// A run in progress.
struct ActiveRun {
    /// POST /run (and respond_to_confirmation accept) callers waiting for the end.
    waiters: Vec<oneshot::Sender<Result<(), ApiError>>>,
    /// Runs started by POST /run publish a `full_state` when they end (API.md §2.8).
    publish_full_state: bool,
    /// A step future is running (spawned with `ctx.spawn`).
    step: Option<SpawnHandle>,
    /// Steps done in this run (for `max_iterations`).
    iterations: i64,
    /// Pause requests waiting for the current step to end.
    pause_waiters: Vec<oneshot::Sender<()>>,
    /// A user message arrived while the current step ran: a `Finished` outcome of that step
    /// does not end the run, the loop picks the message up (as the reference's queued
    /// `send_message` does by moving `finished` back to `idle` before the next iteration).
    message_during_step: bool,
}

/// The actor. See the module documentation.
pub struct Conversation {
    state: ConversationState,
    /// `meta.json` (title, dates, start request fields); kept in sync with `state` on write.
    meta: StoredConversation,
    /// `<conversations_path>/<hex id>`.
    dir: PathBuf,
    log: EventLog,
    /// Every write of the directory goes through it (shared with the blocking writer task).
    journal: Arc<Mutex<Journal>>,
    /// The journal's event files not written yet: written once the conversation is quiet
    /// ([`BACKLOG_QUIET`]), waited for before the directory is read as files (trajectory,
    /// shutdown) and discarded before it is deleted.
    backlog: Arc<Backlog>,
    /// When the journal was last written, and whether a quiet check is scheduled.
    last_journal_write: std::time::Instant,
    quiet_check_scheduled: bool,
    /// A flush is spawned and has not run yet (see [`Conversation::flush`]).
    flush_scheduled: bool,
    /// The journal write in flight, if any: what is staged meanwhile is written when it
    /// completes (one write at a time, in order).
    in_flight: Option<InFlight>,
    /// `Shutdown` has started: nothing more is written (its own write is the last).
    closing: bool,
    subscribers: Vec<Subscriber>,
    /// Subscriptions that arrived while items were staged: completed right after their commit.
    pending_subscribers: Vec<PendingSubscriber>,
    next_subscription: SubscriptionId,
    run: Option<ActiveRun>,
    /// The agent loop's per-conversation state; `None` while a step holds it.
    session: Option<AgentSession>,
    /// The agent and its tools once the first step built them (also while a step holds the
    /// session): secrets updates reach the terminal through it, and stopping kills the shell.
    core: Option<Arc<AgentCore>>,
    staged: Vec<Staged>,
    /// `meta.json`/`base_state.json` must be rewritten at the next flush.
    state_dirty: bool,
    /// `updated_at` moved since `meta.json` was last written (written at shutdown, not per
    /// event).
    meta_stale: bool,
    /// Only the stats changed (LLM usage): `base_state.json` alone is rewritten, at most every
    /// [`STATS_WRITE_INTERVAL`] while a run is active and at once otherwise (the run's end
    /// always writes it), which keeps file creations off most agent steps.
    stats_dirty: bool,
    /// When `base_state.json` was last written.
    last_state_write: std::time::Instant,
    shared: Arc<Shared>,
    summary: SharedSummary,
    /// The info JSON last computed, emptied on every change (see [`InfoCache`]).
    info_cache: Arc<InfoCache>,
    /// Created by this start request (not loaded from disk): its start-up `full_state`
    /// counts as activity, and it has no interrupted run to close.
    is_new: bool,
}

impl Conversation {
    pub fn new(
        record: ConversationRecord,
        dir: PathBuf,
        shared: Arc<Shared>,
        is_new: bool,
    ) -> Self {
        let summary = Arc::new(Mutex::new(Summary {
            status: record.state.execution_status,
            created_at: record.meta.created_at.clone(),
            updated_at: record.meta.updated_at.clone(),
        }));
        Conversation {
            state: record.state,
            meta: record.meta,
            dir,
            log: record.log,
            backlog: record.journal.backlog(),
            last_journal_write: std::time::Instant::now(),
            quiet_check_scheduled: false,
            journal: Arc::new(Mutex::new(record.journal)),
            flush_scheduled: false,
            in_flight: None,
            closing: false,
            subscribers: Vec::new(),
            pending_subscribers: Vec::new(),
            next_subscription: 1,
            run: None,
            session: Some(AgentSession::default()),
            core: None,
            staged: Vec::new(),
            state_dirty: false,
            meta_stale: false,
            stats_dirty: false,
            last_state_write: std::time::Instant::now(),
            shared,
            summary,
            info_cache: Arc::new(InfoCache::default()),
            is_new,
        }
    }

    pub fn summary(&self) -> SharedSummary {
        self.summary.clone()
    }

    /// The cache client handles read the info from.
    pub fn info_cache(&self) -> Arc<InfoCache> {
        self.info_cache.clone()
    }

    // ----------------------------------------------------------------- staging and flushing

    /// Stages a persisted event. State updates of persisted keys also rewrite the state files.
    fn append(&mut self, mut event: Event) {
        if let Event::StateUpdate(u) = &event {
            match u.key.as_str() {
                "full_state" => {}
                "stats" => self.stats_dirty = true,
                _ => self.state_dirty = true,
            }
        }
        match self.log.prepare(&mut event) {
            Ok(p) => self.staged.push(Staged::Event(p)),
            Err(e) => log::error!(
                "conversation {}: cannot serialize event: {e}",
                self.state.id
            ),
        }
    }

    /// Changes the execution status, with its state-update event when it differs.
    fn set_status(&mut self, status: ExecutionStatus) {
        if self.state.execution_status == status {
            return;
        }
        self.state.execution_status = status;
        if let Ok(mut s) = self.summary.lock() {
            s.status = status;
        }
        self.append(Event::state_update(
            "execution_status",
            seam::status_value(status),
        ));
    }

    /// The `full_state` state update (EVENTS.md §3): the whole state, nulls omitted, not persisted.
    fn full_state_json(&self) -> Arc<str> {
        let event = Event::state_update("full_state", wire::to_value_omit_none(&self.state));
        Arc::from(event.to_api_json())
    }

    /// Stages a `full_state` publish (to subscribers only).
    fn publish_full_state(&mut self) {
        let json = self.full_state_json();
        self.staged.push(Staged::Publish { json, touch: true });
    }

    /// Nothing staged and no write in flight: the log holds every change handled so far.
    fn nothing_pending(&self) -> bool {
        self.staged.is_empty() && self.in_flight.is_none()
    }

    /// Answers with `read` once everything staged so far, and the write in flight, is
    /// committed: every read of the log sees the changes handled before it (a step that starts
    /// with a user message staged must find it in its history; a search right after a load
    /// finds the calls the load closed). Without anything pending it answers at once.
    fn after_commit<R: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        read: impl FnOnce(&mut Self) -> R + 'static,
    ) -> ResponseActFuture<Self, R> {
        if self.nothing_pending() {
            let r = read(self);
            return Box::pin(actix::fut::ready(r));
        }
        let committed = self.ack();
        self.flush(ctx);
        Box::pin(actix::fut::wrap_future::<_, Self>(committed).map(move |_, act, _| read(act)))
    }

    /// A receiver resolved when everything staged so far is persisted and sent.
    fn ack(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.staged.push(Staged::Ack(tx));
        rx
    }

    /// Asks for the staged items to be written, indexed and sent. The write itself runs as a
    /// spawned item of the context, which actix polls only after the mailbox has no message
    /// ready: every message handled before it adds to the same batch (one journal sync for
    /// all); while a write is in flight, the batch waits for it. Replies (acks) resolve only
    /// after their own write, so nothing is acknowledged early.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        // every handler that changes something flushes: the cached info may be stale now
        self.info_cache.clear();
        if self.flush_scheduled {
            return;
        }
        self.flush_scheduled = true;
        ctx.spawn(actix::fut::ready(()).map(|(), act: &mut Self, ctx| {
            act.flush_scheduled = false;
            act.write_staged(ctx);
        }));
    }

    /// The files a batch of staged items writes, paths relative to the conversation directory:
    /// the event files (their bytes moved out of `staged`) and, when `state_files`, `meta.json`
    /// and `base_state.json`.
    fn batch_files(
        &mut self,
        staged: &mut [Staged],
        state_files: StateFiles,
    ) -> Vec<(String, Vec<u8>)> {
        let mut batch: Vec<(String, Vec<u8>)> = staged
            .iter_mut()
            .filter_map(|s| match s {
                Staged::Event(p) => Some((
                    format!("{}/{}", dir::EVENTS, p.file_name),
                    std::mem::take(&mut p.bytes),
                )),
                Staged::Publish { .. } | Staged::Ack(_) => None,
            })
            .collect();
        match state_files {
            StateFiles::Both => {
                if let Some((meta, base)) = self.state_file_bytes() {
                    batch.push((dir::BASE_STATE.to_string(), base));
                    batch.push((dir::META.to_string(), meta));
                    self.meta_stale = false;
                    self.stats_dirty = false;
                    self.last_state_write = std::time::Instant::now();
                }
            }
            StateFiles::BaseOnly => match dir::base_state_bytes(&self.state) {
                Ok(base) => {
                    batch.push((dir::BASE_STATE.to_string(), base));
                    self.stats_dirty = false;
                    self.last_state_write = std::time::Instant::now();
                }
                Err(e) => log::error!(
                    "conversation {}: cannot serialize state: {e}",
                    self.state.id
                ),
            },
            StateFiles::None => {}
        }
        batch
    }

    /// Writes the staged events (and the state files when dirty) through the journal on a
    /// blocking thread, then indexes and fans them out in order. The actor keeps handling
    /// messages meanwhile: what they stage is the next batch, written as soon as this one
    /// completes, so the next batch's work overlaps this one's sync. Nothing staged is
    /// indexed, sent or acknowledged before its own write has completed.
    fn write_staged(&mut self, ctx: &mut Context<Self>) {
        let stats_due = self.stats_dirty
            && (self.run.is_none() || self.last_state_write.elapsed() >= STATS_WRITE_INTERVAL);
        if self.closing
            || self.in_flight.is_some()
            || (self.staged.is_empty() && !self.state_dirty && !stats_due)
        {
            return;
        }
        let mut staged = std::mem::take(&mut self.staged);
        let state_files = if std::mem::take(&mut self.state_dirty) {
            StateFiles::Both
        } else if stats_due {
            StateFiles::BaseOnly
        } else {
            StateFiles::None
        };
        let batch = self.batch_files(&mut staged, state_files);
        if batch.is_empty() {
            // publishes and acks only: nothing to wait for
            self.commit(staged);
            return;
        }
        let journal = self.journal.clone();
        let id = self.state.id;
        let (finished_tx, finished) = oneshot::channel();
        let write = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let written = journal
                .lock()
                .map_err(|_| std::io::Error::other("journal lock poisoned"))
                .and_then(|mut j| j.write(batch));
            let _ = finished_tx.send(());
            written
        });
        self.in_flight = Some(InFlight { staged, finished });
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(write).map(move |res, act, ctx| {
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => log::error!("conversation {id}: writing to disk failed: {e}"),
                    Err(e) => log::error!("conversation {id}: disk writer failed: {e}"),
                }
                // `None` once `Shutdown` has taken it over
                if let Some(done) = act.in_flight.take() {
                    act.commit(done.staged);
                }
                act.last_journal_write = std::time::Instant::now();
                act.schedule_quiet_check(ctx);
                act.write_staged(ctx);
            }),
        );
    }

    /// Starts the backlog's writer once no journal write happened for [`BACKLOG_QUIET`]: the
    /// event files are created after a burst, not during it (see `store::backlog`).
    fn schedule_quiet_check(&mut self, ctx: &mut Context<Self>) {
        if self.quiet_check_scheduled {
            return;
        }
        self.quiet_check_scheduled = true;
        let wait = BACKLOG_QUIET.saturating_sub(self.last_journal_write.elapsed());
        ctx.run_later(wait, |act, ctx| {
            act.quiet_check_scheduled = false;
            if act.last_journal_write.elapsed() >= BACKLOG_QUIET {
                act.backlog.kick();
                // and the journal's full segments can go once their files are written
                let journal = act.journal.clone();
                tokio::task::spawn_blocking(move || {
                    if let Ok(mut j) = journal.lock() {
                        j.start_checkpoint();
                    }
                });
            } else {
                act.schedule_quiet_check(ctx);
            }
        });
    }

    fn state_file_bytes(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        self.sync_meta();
        let meta = dir::meta_bytes(&self.meta, self.shared.cipher.as_ref());
        let base = dir::base_state_bytes(&self.state);
        match (meta, base) {
            (Ok(m), Ok(b)) => Some((m, b)),
            (Err(e), _) | (_, Err(e)) => {
                log::error!(
                    "conversation {}: cannot serialize state: {e}",
                    self.state.id
                );
                None
            }
        }
    }

    /// `meta.json` carries the *current* policy and secrets (DEVIATIONS #6).
    fn sync_meta(&mut self) {
        self.meta.agent = self.state.agent.clone();
        self.meta.workspace = self.state.workspace.clone();
        self.meta.confirmation_policy = self.state.confirmation_policy.clone();
        self.meta.max_iterations = self.state.max_iterations;
        self.meta.stuck_detection = self.state.stuck_detection;
        self.meta.secrets = self.state.secret_registry.secret_sources.clone();
    }

    /// Indexes and fans out staged items in order. The frames of one flush go to each
    /// subscriber as one batch (one mailbox message and, usually, one socket write per
    /// subscriber); an acknowledgement waits until the frames staged before it are sent.
    fn commit(&mut self, staged: Vec<Staged>) {
        let mut frames: Vec<Arc<str>> = Vec::new();
        let mut touch = false;
        for item in staged {
            match item {
                Staged::Event(p) => {
                    frames.push(p.entry.json.clone());
                    self.log.commit(p.entry);
                    touch = true;
                }
                Staged::Publish { json, touch: t } => {
                    frames.push(json);
                    touch |= t;
                }
                Staged::Ack(tx) => {
                    self.fan_out(std::mem::take(&mut frames), std::mem::take(&mut touch));
                    let _ = tx.send(());
                }
            }
        }
        self.fan_out(frames, touch);
        for p in std::mem::take(&mut self.pending_subscribers) {
            self.complete_subscription(p);
        }
    }

    /// Sends a new subscriber its snapshot (`full_state`, and with `resend_all` every stored
    /// event in search order, one [`EventBatch`]) and adds it to the fan-out list.
    fn complete_subscription(&mut self, p: PendingSubscriber) {
        let mut frames = vec![self.full_state_json()];
        if p.resend_all {
            frames.extend(self.log.all_sorted());
        }
        // one batch, sent ignoring the mailbox capacity: the backlog is bounded by the log
        p.subscriber.frames.do_send(EventBatch(Arc::from(frames)));
        self.subscribers.push(p.subscriber);
    }

    /// Sends frames to every subscriber with `try_send`; a full or closed mailbox drops the
    /// subscriber (a live one is told with `Disconnect 1013`).
    /// `touch`: bump `updated_at` and the server's idle time (every event except the
    /// `full_state` of a start-up restore, so a restart keeps `updated_at` and the sort order).
    fn fan_out(&mut self, frames: Vec<Arc<str>>, touch: bool) {
        if frames.is_empty() {
            return;
        }
        if touch {
            self.info_cache.clear();
            self.meta_stale = true;
            let now = wire::utc_now();
            self.meta.updated_at = now.clone();
            if let Ok(mut s) = self.summary.lock() {
                s.updated_at = now;
            }
            self.shared.activity.touch_event();
        }
        let batch = EventBatch(Arc::from(frames));
        let id = self.state.id;
        self.subscribers
            .retain(|s| match s.frames.try_send(batch.clone()) {
                Ok(()) => true,
                Err(SendError::Full(_)) => {
                    log::warn!(
                        "conversation {id}: subscriber {} cannot keep up; dropping it",
                        s.id
                    );
                    if let Some(d) = &s.disconnect {
                        d.do_send(Disconnect {
                            code: SLOW_SUBSCRIBER_CODE,
                            reason: "Subscriber too slow".into(),
                        });
                    }
                    false
                }
                Err(SendError::Closed(_)) => false,
            });
    }

    // ----------------------------------------------------------------- runs

    /// Starts a run (status -> running) and its first step. `waiter` is a POST /run caller.
    fn start_run(
        &mut self,
        ctx: &mut Context<Self>,
        publish_full_state: bool,
        waiter: Option<oneshot::Sender<Result<(), ApiError>>>,
    ) {
        match self.state.execution_status {
            ExecutionStatus::Finished => {
                // the loop exits at once (API.md §2.8)
                if publish_full_state {
                    self.publish_full_state();
                }
                if let Some(w) = waiter {
                    let ack = self.ack();
                    actix::spawn(async move {
                        let _ = ack.await;
                        let _ = w.send(Ok(()));
                    });
                }
                return;
            }
            ExecutionStatus::Idle
            | ExecutionStatus::Paused
            | ExecutionStatus::Error
            | ExecutionStatus::Stuck
            | ExecutionStatus::WaitingForConfirmation
            | ExecutionStatus::Running => {}
        }
        self.set_status(ExecutionStatus::Running);
        self.run = Some(ActiveRun {
            waiters: waiter.into_iter().collect(),
            publish_full_state,
            step: None,
            iterations: 0,
            pause_waiters: Vec::new(),
            message_during_step: false,
        });
        self.spawn_step(ctx);
    }

    /// THE place the agent loop plugs in: one [`seam::drive_step`] future per step, spawned so
    /// the actor keeps handling messages; its output comes back to [`Self::step_done`].
    fn spawn_step(&mut self, ctx: &mut Context<Self>) {
        let Some(run) = self.run.as_mut() else { return };
        run.iterations += 1;
        run.message_during_step = false;
        let input = StepInput {
            handle: ConversationHandle::new(self.state.id, ctx.address()),
            state: self.state.clone(),
            iteration: run.iterations,
            session: self.session.take().unwrap_or_default(),
        };
        let fut = actix::fut::wrap_future::<_, Self>(seam::drive_step(input))
            .map(|out, act, ctx| act.step_done(out, ctx));
        let h = ctx.spawn(fut);
        if let Some(run) = self.run.as_mut() {
            run.step = Some(h);
        }
    }

    fn step_done(&mut self, out: StepOutput, ctx: &mut Context<Self>) {
        if out.session.core.is_some() {
            self.core = out.session.core.clone();
        }
        self.session = Some(out.session);
        let pause_requested = self
            .run
            .as_ref()
            .is_some_and(|r| !r.pause_waiters.is_empty());
        let message_during_step = self.run.as_ref().is_some_and(|r| r.message_during_step);
        if let Some(run) = self.run.as_mut() {
            run.step = None;
        }
        let outcome = match out.outcome {
            StepOutcome::Finished if message_during_step => StepOutcome::Continue,
            other => other,
        };
        let result = match outcome {
            StepOutcome::Continue if pause_requested => {
                self.apply_pause();
                Ok(())
            }
            StepOutcome::Continue => {
                let (iterations, active) = self
                    .run
                    .as_ref()
                    .map(|r| (r.iterations, true))
                    .unwrap_or((0, false));
                if active && self.state.execution_status == ExecutionStatus::Running {
                    if iterations >= self.state.max_iterations {
                        // DEVIATIONS #3
                        self.set_status(ExecutionStatus::Error);
                        self.append(Event::conversation_error(
                            "MaxIterationsReached",
                            &format!(
                                "Agent reached maximum iterations limit ({}).",
                                self.state.max_iterations
                            ),
                        ));
                        Ok(())
                    } else {
                        self.spawn_step(ctx);
                        self.flush(ctx);
                        return;
                    }
                } else {
                    Ok(())
                }
            }
            StepOutcome::Finished => {
                self.set_status(ExecutionStatus::Finished);
                Ok(())
            }
            StepOutcome::WaitingForConfirmation => {
                self.set_status(ExecutionStatus::WaitingForConfirmation);
                Ok(())
            }
            StepOutcome::Stuck => {
                self.set_status(ExecutionStatus::Stuck);
                Ok(())
            }
            StepOutcome::Error { code, detail } => {
                self.set_status(ExecutionStatus::Error);
                self.append(Event::conversation_error(&code, &detail));
                Err(ApiError::internal(format!(
                    "Conversation run failed for id={}: {detail}",
                    wire::dashed(&self.state.id)
                )))
            }
        };
        self.end_run(result);
        self.flush(ctx);
    }

    /// Ends the active run: `full_state` for POST /run, answers to run and pause waiters.
    fn end_run(&mut self, result: Result<(), ApiError>) {
        let Some(run) = self.run.take() else { return };
        if let Some(session) = self.session.as_mut() {
            session.forget_log();
        }
        if run.publish_full_state {
            self.publish_full_state();
        }
        let ack = self.ack();
        let waiters = run.waiters;
        let pause_waiters = run.pause_waiters;
        // answer after the final events are persisted and sent
        actix::spawn(async move {
            let _ = ack.await;
            for w in waiters {
                let _ = w.send(result.as_ref().map(|_| ()).map_err(clone_error));
            }
            for p in pause_waiters {
                let _ = p.send(());
            }
        });
    }

    /// Pause from `idle`/`running`: status `paused` then a PauseEvent (API.md §2.9), and the
    /// active run (if any) ends. Always followed by a `full_state` publish.
    fn apply_pause(&mut self) {
        match self.state.execution_status {
            ExecutionStatus::Idle | ExecutionStatus::Running => {
                self.set_status(ExecutionStatus::Paused);
                self.append(Event::pause());
            }
            ExecutionStatus::Paused
            | ExecutionStatus::WaitingForConfirmation
            | ExecutionStatus::Finished
            | ExecutionStatus::Error
            | ExecutionStatus::Stuck => {}
        }
        self.end_run(Ok(()));
        self.publish_full_state();
    }

    fn info_json(&self) -> String {
        wire::to_api_string(&ConversationInfo {
            state: &self.state,
            title: self.meta.title.as_deref(),
            metrics: self.meta.metrics.as_ref(),
            created_at: &self.meta.created_at,
            updated_at: &self.meta.updated_at,
        })
    }

    /// Accounts one LLM response in the stats and stages the `stats` state update.
    fn record_usage(&mut self, m: RecordUsage) {
        let entry = self
            .state
            .stats
            .usage_to_metrics
            .entry(m.usage_id)
            .or_insert_with(|| crate::model::conversation::Metrics::new(&m.model));
        let mut metrics = serde_json::to_value(&*entry)
            .ok()
            .and_then(|v| crate::llm::Metrics::from_json(&v))
            .unwrap_or_else(|| crate::llm::Metrics::new(&m.model));
        metrics.record(&m.response);
        if let Ok(updated) = serde_json::from_value(metrics.full_json()) {
            *entry = updated;
        }
        let value = self.state.stats.snapshot();
        self.append(Event::state_update("stats", value));
    }

    /// Adds the agent context's knowledge (triggered skills, user message suffix) to a user
    /// message (agent-behaviour §3.1.4) and records the newly activated skills.
    fn extend_user_message(&mut self, event: &mut Event) {
        let Event::Message(m) = event else { return };
        let text = m
            .llm_message
            .content
            .iter()
            .filter_map(|c| c.text())
            .collect::<Vec<_>>()
            .join("\n");
        let agent = serde_json::to_value(&self.state.agent).unwrap_or(Value::Null);
        let (extended, activated) = crate::agent::prompt::user_message_extension(
            &agent,
            &text,
            &self.state.activated_knowledge_skills,
        );
        m.extended_content = extended
            .iter()
            .filter_map(|p| serde_json::from_value(p.clone()).ok())
            .collect();
        if !activated.is_empty() {
            m.activated_skills = activated.clone();
            self.state.activated_knowledge_skills.extend(activated);
            self.state_dirty = true;
        }
    }

    fn history(&self) -> Vec<Event> {
        self.log
            .all_appended()
            .filter_map(|e| serde_json::from_str::<Event>(&e.json).ok())
            .collect()
    }
}

fn clone_error(e: &ApiError) -> ApiError {
    match e {
        ApiError::Client { status, detail } => ApiError::client(*status, detail.clone()),
        ApiError::Server { status, exception } => ApiError::Server {
            status: *status,
            exception: exception.clone(),
        },
        other => ApiError::internal(other.to_string()),
    }
}

impl Actor for Conversation {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // commands are awaited with `send`; fan-in from the agent loop is bounded by it too
        ctx.set_mailbox_capacity(256);
        // a full_state is published when a conversation starts or loads (webhooks only)
        let json = self.full_state_json();
        self.staged.push(Staged::Publish {
            json,
            touch: self.is_new,
        });
        if !self.is_new && self.state.execution_status == ExecutionStatus::Running {
            // loaded after the server stopped in the middle of a run: close the interrupted
            // tool calls so the log is consistent and the conversation can run again
            for e in seam::interrupted_observations(&self.history()) {
                self.append(e);
            }
        }
        self.flush(ctx);
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        if let Some(run) = self.run.take() {
            for w in run.waiters {
                let _ = w.send(Err(ApiError::internal("Conversation stopped")));
            }
        }
        Running::Stop
    }
}

// --------------------------------------------------------------------- messages

/// The ConversationInfo JSON (API form, secrets masked).
#[derive(Message)]
#[rtype(result = "String")]
pub struct GetInfo;

/// A snapshot of the state (plain secrets: for the agent loop and tests).
#[derive(Message)]
#[rtype(result = "ConversationState")]
pub struct GetState;

/// Every event in append order, parsed (for the agent loop).
#[derive(Message)]
#[rtype(result = "Vec<Event>")]
pub struct GetHistory;

/// Every event's API JSON in append order (cheap: shared strings, no parsing).
#[derive(Message)]
#[rtype(result = "Vec<Arc<str>>")]
pub struct GetHistoryJson;

/// The API JSON of the events after the first `n` (append order; for the agent loop's
/// incremental history).
#[derive(Message)]
#[rtype(result = "Vec<Arc<str>>")]
pub struct GetHistoryJsonSince(pub usize);

/// Accounts one successful LLM response in the stats of `usage_id` (registered with `model` if
/// new) and appends the `stats` state update (snapshot form). Replies once persisted.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct RecordUsage {
    pub usage_id: String,
    pub model: String,
    pub response: crate::llm::LlmResponse,
}

/// What one agent step produced since its last flush, persisted in one batch: the usage of an
/// LLM response (its `stats` update goes first) and the events derived from it.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct AppendStepEvents {
    pub usage: Option<RecordUsage>,
    pub events: Vec<Event>,
}

/// Starts a run. `wait`: POST /run (409 if a run is active; the reply resolves when the run
/// ends and a `full_state` is published). Otherwise a background start that is a no-op while
/// a run is active, replying at once.
#[derive(Message)]
#[rtype(result = "Result<oneshot::Receiver<Result<(), ApiError>>, ApiError>")]
pub struct Run {
    pub wait: bool,
}

/// Pause (API.md §2.9); the reply waits for a running step to end.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct Pause;

/// Appends a user message (POST .../events, initial_message, WebSocket); `run` starts the
/// loop in the background. Replies once the message is persisted.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct SendMessage(pub SendMessageRequest);

/// `respond_to_confirmation` with `accept: false` (DEVIATIONS #2): reject the pending actions.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct RejectPending {
    pub reason: String,
}

#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct SetConfirmationPolicy(pub ConfirmationPolicy);

#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct SetSecurityAnalyzer(pub Option<SecurityAnalyzer>);

/// Merges secrets into the registry (same name replaces); persisted, no event.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct UpdateSecrets(pub SecretMap);

/// Sets the (already stripped) title; persisted, no event.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct SetTitle(pub String);

/// Appends events produced by the agent loop; replies once they are persisted and sent.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct AppendEvents(pub Vec<Event>);

/// Replaces the stats and appends a `stats` state update (snapshot form).
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct UpdateStats(pub ConversationStats);

/// One page of `events/search`.
#[derive(Message)]
#[rtype(result = "(Vec<Arc<str>>, Option<String>)")]
pub struct SearchEvents {
    pub filter: EventFilter,
    pub desc: bool,
    pub page_id: Option<String>,
    pub limit: usize,
}

#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountEvents(pub EventFilter);

/// The queue of event files acknowledged and not written yet (see [`Backlog`]).
#[derive(Message)]
#[rtype(result = "Arc<Backlog>")]
pub struct GetBacklog;

/// Events by id, `None` for unknown ids.
#[derive(Message)]
#[rtype(result = "Vec<Option<Arc<str>>>")]
pub struct GetEvents(pub Vec<String>);

/// Registers a subscriber: sends it the `full_state` snapshot then, with `resend_all`, every
/// stored event in search order (one [`EventBatch`]), then adds it to the fan-out list, all in
/// this one handler so no event is missed or duplicated. Not capped (webhooks); clients use
/// [`SubscribeClient`].
#[derive(Message)]
#[rtype(result = "SubscriptionId")]
pub struct Subscribe {
    pub frames: Recipient<EventBatch>,
    pub disconnect: Option<Recipient<Disconnect>>,
    pub resend_all: bool,
}

/// [`Subscribe`] for a client (a socket): refused with 429, nothing sent, when the conversation
/// has `max_subscribers` subscribers already (webhooks included).
#[derive(Message)]
#[rtype(result = "Result<SubscriptionId, ApiError>")]
pub struct SubscribeClient(pub Subscribe);

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub SubscriptionId);

/// Stops the conversation: pending writes done, state files written; with `delete` the
/// directory is removed. Live subscribers get `Disconnect` 1000 (delete) or 1001 (shutdown)
/// and are dropped (the reference leaves sockets open; we close them cleanly).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub delete: bool,
}

// --------------------------------------------------------------------- handlers

impl Handler<GetInfo> for Conversation {
    type Result = String;
    fn handle(&mut self, _: GetInfo, _: &mut Context<Self>) -> String {
        let info = self.info_json();
        self.info_cache.set(Arc::from(info.as_str()));
        info
    }
}

impl Handler<GetState> for Conversation {
    type Result = MessageResult<GetState>;
    fn handle(&mut self, _: GetState, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.clone())
    }
}

impl Handler<GetHistory> for Conversation {
    type Result = ResponseActFuture<Self, Vec<Event>>;
    fn handle(&mut self, _: GetHistory, ctx: &mut Context<Self>) -> Self::Result {
        self.after_commit(ctx, |act| act.history())
    }
}

impl Handler<GetHistoryJson> for Conversation {
    type Result = ResponseActFuture<Self, Vec<Arc<str>>>;
    fn handle(&mut self, _: GetHistoryJson, ctx: &mut Context<Self>) -> Self::Result {
        self.after_commit(ctx, |act| {
            act.log.all_appended().map(|e| e.json.clone()).collect()
        })
    }
}

impl Handler<GetHistoryJsonSince> for Conversation {
    type Result = ResponseActFuture<Self, Vec<Arc<str>>>;
    fn handle(&mut self, m: GetHistoryJsonSince, ctx: &mut Context<Self>) -> Self::Result {
        self.after_commit(ctx, move |act| {
            act.log
                .all_appended()
                .skip(m.0)
                .map(|e| e.json.clone())
                .collect()
        })
    }
}

impl Handler<RecordUsage> for Conversation {
    type Result = MessageResult<RecordUsage>;
    fn handle(&mut self, m: RecordUsage, ctx: &mut Context<Self>) -> Self::Result {
        self.record_usage(m);
        let rx = self.ack();
        self.flush(ctx);
        MessageResult(rx)
    }
}

impl Handler<AppendStepEvents> for Conversation {
    type Result = MessageResult<AppendStepEvents>;
    fn handle(&mut self, m: AppendStepEvents, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(u) = m.usage {
            self.record_usage(u);
        }
        for e in m.events {
            self.append(e);
        }
        let rx = self.ack();
        self.flush(ctx);
        MessageResult(rx)
    }
}

impl Handler<Run> for Conversation {
    type Result = Result<oneshot::Receiver<Result<(), ApiError>>, ApiError>;
    fn handle(&mut self, msg: Run, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if self.run.is_some() {
            if msg.wait {
                return Err(ApiError::client(StatusCode::CONFLICT, ALREADY_RUNNING));
            }
            let _ = tx.send(Ok(()));
            return Ok(rx);
        }
        if msg.wait {
            self.start_run(ctx, true, Some(tx));
        } else {
            self.start_run(ctx, false, None);
            let _ = tx.send(Ok(()));
        }
        self.flush(ctx);
        Ok(rx)
    }
}

impl Handler<Pause> for Conversation {
    type Result = MessageResult<Pause>;
    fn handle(&mut self, _: Pause, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(run) = self.run.as_mut()
            && run.step.is_some()
        {
            // wait for the step boundary; `step_done` applies the pause
            let (tx, rx) = oneshot::channel();
            run.pause_waiters.push(tx);
            return MessageResult(rx);
        }
        self.apply_pause();
        let rx = self.ack();
        self.flush(ctx);
        MessageResult(rx)
    }
}

impl Handler<SendMessage> for Conversation {
    type Result = MessageResult<SendMessage>;
    fn handle(&mut self, SendMessage(msg): SendMessage, ctx: &mut Context<Self>) -> Self::Result {
        // DEVIATIONS #4: a new message moves `finished` or `stuck` back to `idle`
        if matches!(
            self.state.execution_status,
            ExecutionStatus::Finished | ExecutionStatus::Stuck
        ) {
            self.set_status(ExecutionStatus::Idle);
        }
        let run = msg.run;
        let mut event = Event::user_message(crate::model::Message::new(msg.role, msg.content));
        if self.state.agent.agent_context.is_some() {
            self.extend_user_message(&mut event);
        }
        self.append(event);
        if let Some(r) = self.run.as_mut()
            && r.step.is_some()
        {
            r.message_during_step = true;
        }
        if run && self.run.is_none() {
            self.start_run(ctx, false, None);
        }
        let rx = self.ack();
        self.flush(ctx);
        MessageResult(rx)
    }
}

impl Handler<RejectPending> for Conversation {
    type Result = MessageResult<RejectPending>;
    fn handle(&mut self, msg: RejectPending, ctx: &mut Context<Self>) -> Self::Result {
        if self.state.execution_status == ExecutionStatus::WaitingForConfirmation
            && self.run.is_none()
        {
            let pending = seam::pending_actions(&self.history());
            self.set_status(ExecutionStatus::Idle);
            for a in pending {
                self.append(Event::UserReject(UserRejectObservation {
                    id: wire::new_event_id(),
                    timestamp: wire::event_timestamp_now(),
                    source: Source::Environment,
                    tool_name: a.tool_name,
                    tool_call_id: a.tool_call_id,
                    rejection_reason: msg.reason.clone(),
                    action_id: a.id,
                }));
            }
        } else if self.run.as_ref().is_some_and(|r| r.step.is_some()) {
            // nothing is pending while a step runs: behave as pause (the reference's mapping)
            let (tx, rx) = oneshot::channel();
            if let Some(run) = self.run.as_mut() {
                run.pause_waiters.push(tx);
            }
            return MessageResult(rx);
        } else {
            self.apply_pause();
        }
        let rx = self.ack();
        self.flush(ctx);
        MessageResult(rx)
    }
}

impl Handler<SetConfirmationPolicy> for Conversation {
    type Result = MessageResult<SetConfirmationPolicy>;
    fn handle(
        &mut self,
        SetConfirmationPolicy(p): SetConfirmationPolicy,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        if self.state.confirmation_policy != p {
            let value = serde_json::to_value(&p).unwrap_or(Value::Null);
            self.state.confirmation_policy = p;
            self.append(Event::state_update("confirmation_policy", value));
        }
        let rx = self.ack();
        self.flush(ctx);
        MessageResult(rx)
    }
}

impl Handler<SetSecurityAnalyzer> for Conversation {
    type Result = MessageResult<SetSecurityAnalyzer>;
    fn handle(
        &mut self,
        SetSecurityAnalyzer(a): SetSecurityAnalyzer,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        if self.state.security_analyzer != a {
            let value = serde_json::to_value(&a).unwrap_or(Value::Null);
            self.state.security_analyzer = a;
            self.append(Event::state_update("security_analyzer", value));
        }
        let rx = self.ack();
        self.flush(ctx);
        MessageResult(rx)
    }
}

impl Handler<UpdateSecrets> for Conversation {
    type Result = MessageResult<UpdateSecrets>;
    fn handle(
        &mut self,
        UpdateSecrets(secrets): UpdateSecrets,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        for (name, s) in secrets {
            self.state.secret_registry.secret_sources.insert(name, s);
        }
        if let Some(core) = &self.core {
            core.update_secrets(&self.state);
        }
        self.state_dirty = true;
        let rx = self.ack();
        self.flush(ctx);
        MessageResult(rx)
    }
}

impl Handler<SetTitle> for Conversation {
    type Result = MessageResult<SetTitle>;
    fn handle(&mut self, SetTitle(title): SetTitle, ctx: &mut Context<Self>) -> Self::Result {
        self.meta.title = Some(title);
        let now = wire::utc_now();
        self.meta.updated_at = now.clone();
        if let Ok(mut s) = self.summary.lock() {
            s.updated_at = now;
        }
        self.state_dirty = true;
        let rx = self.ack();
        self.flush(ctx);
        MessageResult(rx)
    }
}

impl Handler<AppendEvents> for Conversation {
    type Result = MessageResult<AppendEvents>;
    fn handle(
        &mut self,
        AppendEvents(events): AppendEvents,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        for e in events {
            self.append(e);
        }
        let rx = self.ack();
        self.flush(ctx);
        MessageResult(rx)
    }
}

impl Handler<UpdateStats> for Conversation {
    type Result = MessageResult<UpdateStats>;
    fn handle(&mut self, UpdateStats(stats): UpdateStats, ctx: &mut Context<Self>) -> Self::Result {
        let value = stats.snapshot();
        self.state.stats = stats;
        self.append(Event::state_update("stats", value));
        let rx = self.ack();
        self.flush(ctx);
        MessageResult(rx)
    }
}

// The readers below answer once everything staged before them (and the write in flight) is
// committed, as the history reads do: a read that follows a change sees it, e.g. the calls a
// load closes in `started` are in the first search after a restart.

impl Handler<SearchEvents> for Conversation {
    type Result = ResponseActFuture<Self, (Vec<Arc<str>>, Option<String>)>;
    fn handle(&mut self, m: SearchEvents, ctx: &mut Context<Self>) -> Self::Result {
        self.after_commit(ctx, move |act| {
            act.log
                .search(&m.filter, m.desc, m.page_id.as_deref(), m.limit)
        })
    }
}

impl Handler<CountEvents> for Conversation {
    type Result = ResponseActFuture<Self, usize>;
    fn handle(&mut self, CountEvents(f): CountEvents, ctx: &mut Context<Self>) -> Self::Result {
        self.after_commit(ctx, move |act| act.log.count(&f))
    }
}

impl Handler<GetBacklog> for Conversation {
    type Result = ResponseActFuture<Self, Arc<Backlog>>;
    fn handle(&mut self, _: GetBacklog, ctx: &mut Context<Self>) -> Self::Result {
        self.after_commit(ctx, |act| act.backlog.clone())
    }
}

impl Handler<GetEvents> for Conversation {
    type Result = ResponseActFuture<Self, Vec<Option<Arc<str>>>>;
    fn handle(&mut self, GetEvents(ids): GetEvents, ctx: &mut Context<Self>) -> Self::Result {
        self.after_commit(ctx, move |act| {
            ids.iter().map(|id| act.log.get(id)).collect()
        })
    }
}

impl Handler<Subscribe> for Conversation {
    type Result = SubscriptionId;
    fn handle(&mut self, m: Subscribe, _: &mut Context<Self>) -> SubscriptionId {
        let id = self.next_subscription;
        self.next_subscription += 1;
        let pending = PendingSubscriber {
            subscriber: Subscriber {
                id,
                frames: m.frames,
                disconnect: m.disconnect,
            },
            resend_all: m.resend_all,
        };
        // staged items (and a write in flight) are not in the log yet: the snapshot is taken
        // once they are, so the subscriber gets each of them exactly once, and a `full_state`
        // that matches the events before it
        if self.nothing_pending() {
            self.complete_subscription(pending);
        } else {
            self.pending_subscribers.push(pending);
        }
        id
    }
}

impl Handler<SubscribeClient> for Conversation {
    type Result = Result<SubscriptionId, ApiError>;
    fn handle(
        &mut self,
        SubscribeClient(m): SubscribeClient,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        let max = self.shared.limits.max_subscribers;
        if self.subscribers.len() + self.pending_subscribers.len() >= max {
            return Err(ApiError::client(
                actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                format!("Too many subscribers to this conversation (limit {max})"),
            ));
        }
        Ok(<Self as Handler<Subscribe>>::handle(self, m, ctx))
    }
}

impl Handler<Unsubscribe> for Conversation {
    type Result = ();
    fn handle(&mut self, Unsubscribe(id): Unsubscribe, _: &mut Context<Self>) {
        self.subscribers.retain(|s| s.id != id);
        self.pending_subscribers.retain(|p| p.subscriber.id != id);
    }
}

impl Handler<Shutdown> for Conversation {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, m: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(h) = self.run.as_mut().and_then(|r| r.step.take()) {
            ctx.cancel_future(h);
        }
        if let Some(run) = self.run.take() {
            for w in run.waiters {
                let _ = w.send(Err(ApiError::internal("Conversation stopped")));
            }
            for p in run.pause_waiters {
                let _ = p.send(());
            }
        }
        self.closing = true;
        // a write in flight completes first (its batch is committed before this one)
        let (prior_staged, prior_finished) = match self.in_flight.take() {
            Some(f) => (f.staged, Some(f.finished)),
            None => (Vec::new(), None),
        };
        // what is staged is written (through the journal, with the state files) or, on delete,
        // dropped with the directory; either way it is sent before the subscribers go
        let mut staged = std::mem::take(&mut self.staged);
        // the state files only when something changed since they were written
        let batch = if m.delete {
            Vec::new()
        } else {
            let state_files = if self.state_dirty || self.meta_stale || self.stats_dirty {
                StateFiles::Both
            } else {
                StateFiles::None
            };
            self.batch_files(&mut staged, state_files)
        };
        let journal = self.journal.clone();
        let backlog = self.backlog.clone();
        let dir = self.dir.clone();
        let delete = m.delete;
        let id = self.state.id;
        // the shell (and its jobs) dies with the conversation
        let core = self.core.take();
        self.session = None;
        let work = async move {
            if let Some(finished) = prior_finished {
                // sent, or dropped by a writer that failed: either way it is over
                let _ = finished.await;
            }
            if let Some(core) = core {
                core.runtime.close().await;
            }
            tokio::task::spawn_blocking(move || {
                if delete {
                    // no event file may be written once the directory is gone
                    backlog.discard();
                    remove_dir_best_effort(&dir);
                    return;
                }
                if let Err(e) = journal
                    .lock()
                    .map_err(|_| std::io::Error::other("journal lock poisoned"))
                    .and_then(|mut j| j.write(batch))
                {
                    log::error!("conversation {id}: cannot write its state at shutdown: {e}");
                }
                // the directory is complete in the reference's layout once stopped, unless the
                // disk is too slow for the shutdown's time: the journal keeps the rest for the
                // next load
                if !backlog.wait_idle_until(std::time::Instant::now() + SHUTDOWN_FILES_WAIT) {
                    log::info!(
                        "conversation {id}: event files not all written at shutdown; the journal has them"
                    );
                }
            })
            .await
        };
        let (done_tx, done_rx) = oneshot::channel::<()>();
        // `wait`: no other message is handled until the conversation has stopped
        ctx.wait(
            actix::fut::wrap_future::<_, Self>(work).map(move |_, act, _ctx| {
                act.commit(prior_staged);
                act.commit(staged);
                // live subscribers are told why they are dropped: sockets close, webhooks flush
                let (code, reason) = if delete {
                    (DELETED_CODE, "Conversation deleted")
                } else {
                    (SHUTDOWN_CODE, "Server shutting down")
                };
                for s in act.subscribers.drain(..) {
                    if let Some(d) = s.disconnect {
                        d.do_send(Disconnect {
                            code,
                            reason: reason.into(),
                        });
                    }
                }
                let _ = done_tx.send(());
            }),
        );
        // the reply goes out as the actor stops
        Box::pin(actix::fut::wrap_future::<_, Self>(done_rx).map(|_, _act, ctx| ctx.stop()))
    }
}

/// Deletes a directory tree, making read-only entries writable and retrying (PERSISTENCE.md §9).
fn remove_dir_best_effort(dir: &std::path::Path) {
    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return;
    }
    fn make_writable(p: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(md) = std::fs::symlink_metadata(p) {
            if md.is_dir() {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten() {
                        make_writable(&e.path());
                    }
                }
            } else if !md.file_type().is_symlink() {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644));
            }
        }
    }
    make_writable(dir);
    if let Err(e) = std::fs::remove_dir_all(dir) {
        log::warn!("cannot delete {}: {e}", dir.display());
    }
}

/// Creates a conversation record for a start request (blocking: directory creation, files).
/// Resumes the state and events when the directory already exists (API.md §2.1).
pub fn create_record(
    root: &std::path::Path,
    id: Uuid,
    req: &crate::model::StartConversationRequest,
    cipher: Option<&Arc<Fernet>>,
) -> std::io::Result<ConversationRecord> {
    std::fs::create_dir_all(&req.workspace.working_dir)?;
    let conv_dir = dir::conversation_dir(root, &id);
    let now = wire::utc_now();
    let existed = conv_dir.exists();
    let dir::Resumed { found, mut journal } =
        dir::load_for_resume(&conv_dir).map_err(std::io::Error::other)?;
    let (state, mut log) = match found {
        Some((mut base, log)) => {
            base.id = id;
            base.agent = req.agent.clone();
            base.persistence_dir = dir::persistence_dir_string(root, &id);
            for (name, s) in &req.secrets {
                base.secret_registry
                    .secret_sources
                    .insert(name.clone(), s.clone());
            }
            base.secret_registry
                .secret_sources
                .retain(|_, s| s.is_usable());
            (base, log)
        }
        None => {
            let state = ConversationState {
                id,
                agent: req.agent.clone(),
                workspace: req.workspace.clone(),
                persistence_dir: dir::persistence_dir_string(root, &id),
                max_iterations: req.max_iterations,
                stuck_detection: req.stuck_detection,
                execution_status: ExecutionStatus::Idle,
                confirmation_policy: req.confirmation_policy.clone(),
                security_analyzer: None,
                activated_knowledge_skills: Vec::new(),
                stats: ConversationStats::for_agent(&req.agent),
                secret_registry: crate::model::conversation::SecretRegistry {
                    secret_sources: req.secrets.clone(),
                },
            };
            (state, EventLog::new(conv_dir.join(dir::EVENTS)))
        }
    };
    let meta = StoredConversation {
        agent: state.agent.clone(),
        workspace: state.workspace.clone(),
        conversation_id: req.conversation_id,
        confirmation_policy: state.confirmation_policy.clone(),
        initial_message: req.initial_message.clone(),
        max_iterations: state.max_iterations,
        stuck_detection: state.stuck_detection,
        secrets: state.secret_registry.secret_sources.clone(),
        id,
        title: None,
        metrics: None,
        created_at: now.clone(),
        updated_at: now,
    };
    // the directory (and its entry in the root) first, then one journal write for the state
    // files and the system prompt: three syncs in all
    std::fs::create_dir_all(conv_dir.join(dir::EVENTS))?;
    if !existed {
        crate::store::files::sync_dir(root)?;
    }
    let mut batch = vec![
        (dir::BASE_STATE.to_string(), dir::base_state_bytes(&state)?),
        (dir::META.to_string(), dir::meta_bytes(&meta, cipher)?),
    ];
    let mut first = None;
    if log.is_empty() {
        let mut event = seam::system_prompt_event(&state.agent, &state.workspace.working_dir)
            .map_err(std::io::Error::other)?;
        let p = log.prepare(&mut event)?;
        batch.push((format!("{}/{}", dir::EVENTS, p.file_name), p.bytes));
        first = Some(p.entry);
    }
    journal.write(batch)?;
    if let Some(entry) = first {
        log.commit(entry);
    }
    Ok(ConversationRecord {
        state,
        meta,
        log,
        journal,
    })
}
