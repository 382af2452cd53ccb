//! `ConversationWebhook`: one per webhook target. It owns the queue of ConversationInfo bodies
//! for `{base_url}/conversations` and posts them one at a time, in order, with the target's
//! retries; a body that still fails is dropped (no re-queue, as the reference). The queue is
//! bounded ([`MAX_QUEUED_INFOS`], oldest dropped) so a dead receiver cannot grow it.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use super::Target;

/// ConversationInfo bodies kept while the receiver is slow or down.
pub const MAX_QUEUED_INFOS: usize = 1000;

/// The actor. See the module documentation.
pub struct ConversationWebhook {
    target: Arc<Target>,
    client: reqwest::Client,
    queue: VecDeque<Arc<str>>,
    posting: bool,
    dropped: u64,
    closing: bool,
    /// `Close` callers, answered (by dropping) when the actor stops.
    close_waiters: Vec<oneshot::Sender<()>>,
}

impl ConversationWebhook {
    pub fn new(target: Arc<Target>, client: reqwest::Client) -> Self {
        ConversationWebhook {
            target,
            client,
            queue: VecDeque::new(),
            posting: false,
            dropped: 0,
            closing: false,
            close_waiters: Vec::new(),
        }
    }

    /// Posts the next body, or stops when closing and nothing is left.
    fn next(&mut self, ctx: &mut Context<Self>) {
        if self.posting {
            return;
        }
        let Some(info) = self.queue.pop_front() else {
            if self.closing {
                ctx.stop();
            }
            return;
        };
        self.posting = true;
        let (target, client) = (self.target.clone(), self.client.clone());
        let url = target.conversations_url();
        let send = async move {
            let body = Bytes::copy_from_slice(info.as_bytes());
            target.post(&client, &url, body).await
        };
        ctx.spawn(send.into_actor(self).map(|ok, act, ctx| {
            act.posting = false;
            if !ok {
                log::error!(
                    "webhook {}: a ConversationInfo could not be delivered; dropped",
                    act.target.spec.base_url
                );
            }
            act.next(ctx);
        }));
    }
}

impl Actor for ConversationWebhook {
    type Context = Context<Self>;

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.close_waiters.clear();
        Running::Stop
    }
}

/// Post this ConversationInfo JSON.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PostInfo(pub Arc<str>);

/// Server shutdown: post what is queued, then stop. The receiver resolves when stopped.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<()>")]
pub struct Close;

impl Handler<PostInfo> for ConversationWebhook {
    type Result = ();
    fn handle(&mut self, PostInfo(info): PostInfo, ctx: &mut Context<Self>) {
        self.queue.push_back(info);
        if self.queue.len() > MAX_QUEUED_INFOS {
            self.queue.pop_front();
            self.dropped += 1;
            log::warn!(
                "webhook {}: too many ConversationInfo posts waiting; oldest dropped ({} so far)",
                self.target.spec.base_url,
                self.dropped
            );
        }
        self.next(ctx);
    }
}

impl Handler<Close> for ConversationWebhook {
    type Result = MessageResult<Close>;
    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.close_waiters.push(tx);
        self.closing = true;
        self.next(ctx);
        MessageResult(rx)
    }
}
