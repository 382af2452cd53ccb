//! `EventWebhook`: one (conversation, webhook target) pair. It owns the queue of events not yet
//! delivered to `{base_url}/events/{hex id}` and posts them in batches: at once when the queue
//! reaches `event_buffer_size`, else `flush_delay` after the first queued event. One post is in
//! flight at a time, so batches arrive in log order. A failed post (after its retries) puts its
//! events back at the front of the queue (bounded: the oldest are dropped past
//! [`MAX_QUEUED_EVENTS`]) and the next attempt waits for the timer. When the conversation closes
//! (`Disconnect`) or the server stops (`Close`) the rest is posted, then the actor stops.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{LiveWebhooks, Target, json_array};
use crate::conversation::{ConversationHandle, Disconnect, EventBatch, SubscriptionId};

/// Batches the conversation may queue before it drops the webhook. Queuing is cheap (shared
/// `Arc`s), so this is large: a webhook must not lose events to a burst.
pub const MAILBOX_CAPACITY: usize = 4096;
/// Undelivered events kept per webhook while the receiver is down; older ones are dropped.
pub const MAX_QUEUED_EVENTS: usize = 10_000;

/// Events waiting for delivery, in log order, with a cap that drops the oldest.
#[derive(Debug)]
pub struct EventQueue {
    events: VecDeque<Arc<str>>,
    cap: usize,
    /// Events dropped over the queue's life (logged as they go).
    dropped: u64,
}

impl EventQueue {
    pub fn new(cap: usize) -> Self {
        EventQueue {
            events: VecDeque::new(),
            cap,
            dropped: 0,
        }
    }

    /// Appends newer events; returns how many old ones had to go.
    pub fn push(&mut self, events: &[Arc<str>]) -> usize {
        self.events.extend(events.iter().cloned());
        self.trim()
    }

    /// Puts a batch that could not be delivered back in front of the newer events; returns how
    /// many (oldest first) had to go.
    pub fn requeue(&mut self, batch: Vec<Arc<str>>) -> usize {
        for e in batch.into_iter().rev() {
            self.events.push_front(e);
        }
        self.trim()
    }

    pub fn take_all(&mut self) -> Vec<Arc<str>> {
        self.events.drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn trim(&mut self) -> usize {
        let over = self.events.len().saturating_sub(self.cap);
        self.events.drain(..over);
        self.dropped += over as u64;
        over
    }
}

/// The actor. See the module documentation.
pub struct EventWebhook {
    /// Its key in the hub's list of live webhooks.
    key: u64,
    conversation: ConversationHandle,
    target: Arc<Target>,
    client: reqwest::Client,
    live: LiveWebhooks,
    subscription: Option<SubscriptionId>,
    queue: EventQueue,
    /// The `flush_delay` timer, started by the first event queued.
    timer: Option<SpawnHandle>,
    /// A post (with its retries) is in flight.
    posting: bool,
    /// The last post failed: wait for the timer instead of posting on size.
    backing_off: bool,
    /// The conversation is gone or the server stops: post the rest, then stop.
    closing: bool,
    /// `Close` callers, answered (by dropping) when the actor stops.
    close_waiters: Vec<oneshot::Sender<()>>,
}

impl EventWebhook {
    pub fn new(
        key: u64,
        conversation: ConversationHandle,
        target: Arc<Target>,
        client: reqwest::Client,
        live: LiveWebhooks,
    ) -> Self {
        EventWebhook {
            key,
            conversation,
            target,
            client,
            live,
            subscription: None,
            queue: EventQueue::new(MAX_QUEUED_EVENTS),
            timer: None,
            posting: false,
            backing_off: false,
            closing: false,
            close_waiters: Vec::new(),
        }
    }

    fn log_dropped(&self, n: usize) {
        if n > 0 {
            log::warn!(
                "webhook {} for conversation {}: queue full, {n} oldest event(s) dropped ({} so far)",
                self.target.spec.base_url,
                self.conversation.id(),
                self.queue.dropped()
            );
        }
    }

    /// Posts when the buffer is full, or starts the flush timer; when closing, posts the rest
    /// or stops.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.posting {
            return;
        }
        if self.closing {
            if self.queue.is_empty() {
                ctx.stop();
            } else {
                self.post(ctx);
            }
            return;
        }
        if self.queue.is_empty() {
            return;
        }
        let size = usize::try_from(self.target.spec.event_buffer_size).unwrap_or(usize::MAX);
        if self.queue.len() >= size && !self.backing_off {
            self.post(ctx);
        } else if self.timer.is_none() {
            let delay = Duration::from_secs_f64(self.target.spec.flush_delay.max(0.0));
            self.timer = Some(ctx.run_later(delay, |act, ctx| {
                act.timer = None;
                act.backing_off = false;
                if !act.posting && !act.queue.is_empty() {
                    act.post(ctx);
                }
            }));
        }
    }

    /// Posts the whole queue as one batch (in the background: the actor keeps queuing).
    fn post(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let batch = self.queue.take_all();
        let body = json_array(&batch);
        let url = self.target.events_url(&self.conversation.id());
        let (target, client) = (self.target.clone(), self.client.clone());
        self.posting = true;
        let send = async move { target.post(&client, &url, body).await };
        ctx.spawn(send.into_actor(self).map(move |ok, act, ctx| {
            act.posting = false;
            if ok {
                act.backing_off = false;
            } else if act.closing {
                log::error!(
                    "webhook {} for conversation {}: {} event(s) not delivered before closing",
                    act.target.spec.base_url,
                    act.conversation.id(),
                    batch.len()
                );
                ctx.stop();
                return;
            } else {
                act.backing_off = true;
                let dropped = act.queue.requeue(batch);
                act.log_dropped(dropped);
            }
            act.schedule(ctx);
        }));
    }
}

impl Actor for EventWebhook {
    type Context = Context<Self>;

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if let Some(id) = self.subscription.take() {
            self.conversation.unsubscribe(id);
        }
        if let Ok(mut live) = self.live.lock() {
            live.remove(&self.key);
        }
        // dropping the senders answers the `Close` callers
        self.close_waiters.clear();
        Running::Stop
    }
}

/// The conversation registered the subscription (its id, for unsubscribing).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribed(pub SubscriptionId);

/// Server shutdown: post what is queued, then stop. The receiver resolves when stopped.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct Close;

impl Handler<Subscribed> for EventWebhook {
    type Result = ();
    fn handle(&mut self, Subscribed(id): Subscribed, _: &mut Context<Self>) {
        if self.closing {
            self.conversation.unsubscribe(id);
        } else {
            self.subscription = Some(id);
        }
    }
}

impl Handler<EventBatch> for EventWebhook {
    type Result = ();
    fn handle(&mut self, EventBatch(events): EventBatch, ctx: &mut Context<Self>) {
        let dropped = self.queue.push(&events);
        self.log_dropped(dropped);
        self.schedule(ctx);
    }
}

impl Handler<Disconnect> for EventWebhook {
    type Result = ();
    fn handle(&mut self, d: Disconnect, ctx: &mut Context<Self>) {
        self.subscription = None;
        if d.code == crate::conversation::SLOW_SUBSCRIBER_CODE {
            log::error!(
                "webhook {} for conversation {}: dropped by the conversation ({}); later events are not delivered",
                self.target.spec.base_url,
                self.conversation.id(),
                d.reason
            );
        }
        self.closing = true;
        self.schedule(ctx);
    }
}

impl Handler<Close> for EventWebhook {
    type Result = MessageResult<Close>;
    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.close_waiters.push(tx);
        if let Some(id) = self.subscription.take() {
            self.conversation.unsubscribe(id);
        }
        self.closing = true;
        self.schedule(ctx);
        MessageResult(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    fn names(q: &mut EventQueue) -> Vec<String> {
        q.take_all().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn requeued_events_go_first() {
        let mut q = EventQueue::new(10);
        q.push(&ev(&["a", "b"]));
        let batch = q.take_all();
        q.push(&ev(&["c"]));
        assert_eq!(q.requeue(batch), 0);
        assert_eq!(names(&mut q), vec!["a", "b", "c"]);
    }

    #[test]
    fn the_oldest_are_dropped_past_the_cap() {
        let mut q = EventQueue::new(3);
        assert_eq!(q.push(&ev(&["a", "b"])), 0);
        assert_eq!(q.push(&ev(&["c", "d"])), 1);
        let batch = q.take_all();
        q.push(&ev(&["e", "f"]));
        assert_eq!(q.requeue(batch), 2);
        assert_eq!(q.dropped(), 3);
        assert_eq!(names(&mut q), vec!["d", "e", "f"]);
    }
}
