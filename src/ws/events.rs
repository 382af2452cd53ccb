//! `EventSession`: one `/sockets/events/{conversation_id}` WebSocket (API.md §9). It owns the
//! socket and its outbound queue, subscribes to its conversation (snapshot then live events,
//! see actors.md "Subscriber protocol"), writes one text frame per event in log order, turns
//! client text frames into user messages, pings the client, and closes slow or silent clients.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::Codec;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws::{self, CloseCode, CloseReason};
use serde_json::Value;

use super::outbound::{OutboundQueue, SharedQueue, Transport};
use crate::conversation::{
    ConversationHandle, Disconnect, EventBatch, SHUTDOWN_CODE, SLOW_SUBSCRIBER_CODE,
    SubscriptionId, TOO_MANY_SUBSCRIBERS_CODE,
};
use crate::error::ApiError;
use crate::model::requests;

/// How often the server pings the client.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// A client not heard from (any frame, pongs included) for this long is dropped.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(45);
/// Batches the conversation may queue in the session's mailbox before it drops the session
/// (`Disconnect` 1013). This is what bounds a client whose TCP window is closed: the session is
/// then not polled at all, so nothing else can grow.
pub const MAILBOX_CAPACITY: usize = 256;
/// Live event bytes a session may owe its client; past it the client is closed with 1013.
pub const OUTBOUND_BUDGET_BYTES: usize = 4 * 1024 * 1024;
/// Close code for an unknown conversation (API.md §9).
pub const NOT_FOUND_CODE: u16 = 4004;

/// The session actor. See the module documentation.
pub struct EventSession {
    /// `None`: the conversation does not exist; the session closes with 4004 at once.
    conversation: Option<ConversationHandle>,
    resend_all: bool,
    /// Set once the conversation has registered us; cleared when it drops us.
    subscription: Option<SubscriptionId>,
    /// The first batch is the subscription snapshot (exempt from the byte budget).
    snapshot_seen: bool,
    last_heard: Instant,
    /// Frames not yet handed to the transport; shared with [`Transport`].
    queue: SharedQueue,
    /// A close frame is written: ignore everything else.
    closing: bool,
}

/// Upgrades the request and starts a session. `conversation` is `None` for an unknown id.
/// `max_frame` bounds incoming frames (a user message with images can be large).
pub fn start(
    req: &HttpRequest,
    payload: web::Payload,
    conversation: Option<ConversationHandle>,
    resend_all: bool,
    max_frame: usize,
) -> Result<HttpResponse, actix_web::Error> {
    let mut res = ws::handshake(req)?;
    let queue = Rc::new(RefCell::new(OutboundQueue::new(OUTBOUND_BUDGET_BYTES)));
    let session = EventSession {
        conversation,
        resend_all,
        subscription: None,
        snapshot_seen: false,
        last_heard: Instant::now(),
        queue: queue.clone(),
        closing: false,
    };
    let stream =
        ws::WebsocketContext::with_codec(session, payload, Codec::new().max_size(max_frame));
    Ok(res.streaming(Transport::new(stream, queue)))
}

impl EventSession {
    /// Writes a close frame and stops. `deliver_pending`: queued events go out first (a normal
    /// close); otherwise they are dropped (slow client, error).
    fn close(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        code: u16,
        reason: &str,
        deliver_pending: bool,
    ) {
        if self.closing {
            return;
        }
        self.closing = true;
        let pending = self.queue.borrow_mut().take_all();
        if deliver_pending {
            for frame in pending {
                ctx.text(&*frame);
            }
        }
        ctx.close(Some(CloseReason {
            code: CloseCode::from(code),
            description: Some(reason.to_string()),
        }));
        ctx.stop();
    }

    /// Pings the client, drops it when silent for too long, and closes when the conversation
    /// actor is gone without having told us (a subscribe that raced a delete).
    fn heartbeat(&self, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.run_interval(HEARTBEAT_INTERVAL, |act, ctx| {
            if act
                .conversation
                .as_ref()
                .is_some_and(|c| !c.addr().connected())
            {
                act.subscription = None;
                act.close(ctx, SHUTDOWN_CODE, "Conversation closed", true);
                return;
            }
            if act.last_heard.elapsed() > CLIENT_TIMEOUT {
                log::info!("event socket: client silent for {CLIENT_TIMEOUT:?}; closing");
                act.close(ctx, SHUTDOWN_CODE, "Client timed out", false);
                return;
            }
            ctx.ping(b"");
        });
    }

    /// A client text frame: a `Message` handled like POST .../events with `run: true`.
    /// Anything invalid is logged and ignored; nothing is sent back.
    fn client_message(&self, text: &str) {
        let Some(conversation) = &self.conversation else {
            return;
        };
        let mut value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                log::info!("event socket: ignoring a frame that is not JSON: {e}");
                return;
            }
        };
        let Some(obj) = value.as_object_mut() else {
            log::info!("event socket: ignoring a frame that is not a JSON object");
            return;
        };
        // a Message has no `run` field (the socket always runs) and requires `role`
        obj.remove("run");
        if !obj.contains_key("role") {
            log::info!("event socket: ignoring a message without a role");
            return;
        }
        let mut msg = match requests::send_message(&value) {
            Ok(m) => m,
            Err(e) => {
                log::info!("event socket: ignoring an invalid message: {e}");
                return;
            }
        };
        msg.run = true;
        let conversation = conversation.clone();
        // detached: the message is delivered even if the socket closes right after sending it;
        // tasks start in spawn order, so messages keep the order they were sent in
        actix::spawn(async move {
            if let Err(e) = conversation.send_message(msg).await {
                log::warn!("event socket: message not delivered: {e}");
            }
        });
    }
}

impl Actor for EventSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        let Some(conversation) = self.conversation.clone() else {
            self.close(ctx, NOT_FOUND_CODE, "Conversation not found", false);
            return;
        };
        self.heartbeat(ctx);
        let me = ctx.address();
        let resend_all = self.resend_all;
        let subscribe = async move {
            conversation
                .subscribe(me.clone().recipient(), Some(me.recipient()), resend_all)
                .await
        };
        ctx.spawn(subscribe.into_actor(self).map(|res, act, ctx| match res {
            Ok(id) => act.subscription = Some(id),
            // the conversation has `max_subscribers` already
            Err(ApiError::Client { status, detail })
                if status == actix_web::http::StatusCode::TOO_MANY_REQUESTS =>
            {
                act.close(ctx, TOO_MANY_SUBSCRIBERS_CODE, &detail, false)
            }
            // deleted between the lookup and the subscription
            Err(_) => act.close(ctx, NOT_FOUND_CODE, "Conversation not found", false),
        }));
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if let (Some(c), Some(id)) = (&self.conversation, self.subscription.take()) {
            c.unsubscribe(id);
        }
        self.queue.borrow_mut().clear();
        Running::Stop
    }
}

impl Handler<EventBatch> for EventSession {
    type Result = ();

    fn handle(&mut self, EventBatch(frames): EventBatch, ctx: &mut Self::Context) {
        if self.closing {
            return;
        }
        if !self.snapshot_seen {
            self.snapshot_seen = true;
            self.queue.borrow_mut().push_snapshot(&frames);
            return;
        }
        let pushed = self.queue.borrow_mut().push_live(&frames);
        if let Err(o) = pushed {
            log::warn!(
                "event socket: client is {} bytes behind (budget {OUTBOUND_BUDGET_BYTES}); closing",
                o.queued
            );
            self.close(
                ctx,
                SLOW_SUBSCRIBER_CODE,
                "Client too slow: outbound queue full",
                false,
            );
        }
    }
}

impl Handler<Disconnect> for EventSession {
    type Result = ();

    /// The conversation dropped us: slow (1013, queued events dropped), deleted (1000) or
    /// shutting down (1001), queued events delivered first.
    fn handle(&mut self, d: Disconnect, ctx: &mut Self::Context) {
        self.subscription = None;
        let deliver = d.code != SLOW_SUBSCRIBER_CODE;
        self.close(ctx, d.code, &d.reason, deliver);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for EventSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                log::info!("event socket: protocol error: {e}");
                // a frame over the size limit is 1009 (message too big), anything else 1002
                let code = match e {
                    ws::ProtocolError::Overflow => 1009,
                    _ => 1002,
                };
                self.close(ctx, code, &e.to_string(), false);
                return;
            }
        };
        self.last_heard = Instant::now();
        match msg {
            ws::Message::Text(text) => {
                if !self.closing {
                    self.client_message(&text);
                }
            }
            ws::Message::Ping(payload) => ctx.pong(&payload),
            ws::Message::Close(reason) => {
                if !self.closing {
                    self.closing = true;
                    self.queue.borrow_mut().clear();
                    ctx.close(reason);
                }
                ctx.stop();
            }
            // binary frames are ignored; fragmented messages are not supported by clients
            ws::Message::Pong(_)
            | ws::Message::Binary(_)
            | ws::Message::Continuation(_)
            | ws::Message::Nop => {}
        }
    }
}
