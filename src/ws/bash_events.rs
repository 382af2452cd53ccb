//! `/sockets/bash-events` (API.md §10): one `BashEventsSession` actor per socket. It subscribes
//! to the `BashSupervisor` and writes every `BashCommand` / `BashOutput` as one text frame, the
//! same compact JSON the REST routes return (DEVIATIONS #9); with `resend_all` the recorded events
//! come first. Text frames from the client are `ExecuteBashRequest`s and start commands; invalid
//! ones are ignored.
//!
//! Backpressure: the session's mailbox is its bounded queue ([`SESSION_QUEUE`] frames). The
//! supervisor never waits for a session; a session whose queue is full is dropped and closes
//! with 1013 (try again later). Frames are shared bytes, serialized once by the supervisor.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws::{self, CloseCode, CloseReason};
use serde_json::Value;

use crate::bash::BashHandle;
use crate::bash::model::ExecuteBashRequest;
use crate::bash::store::Entry;
use crate::bash::supervisor::BashFeed;
use crate::config::Config;
use crate::http::validate::{Checker, QueryPairs};
use crate::http::websocket_key_ok;
use crate::loc;

/// Frames queued for one socket before it counts as too slow and is dropped.
pub const SESSION_QUEUE: usize = 64;
/// Recorded events loaded per step of a `resend_all` replay.
const REPLAY_BATCH: usize = 8;
/// How often the server pings the client.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// A client silent for this long (no frame, no pong) is disconnected.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The upgrade route: key check (403 before the upgrade), `resend_all`, then the session.
pub async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    cfg: web::Data<Config>,
    bash: web::Data<BashHandle>,
) -> Result<HttpResponse, actix_web::Error> {
    if !websocket_key_ok(&cfg, &req) {
        return Ok(HttpResponse::Forbidden().finish());
    }
    let resend_all = match QueryPairs::parse(req.query_string()).get("resend_all") {
        None => false,
        Some(raw) => match Checker::new().bool(&Value::from(raw), loc!["query", "resend_all"]) {
            Some(b) => b,
            // The reference rejects the handshake when the flag does not parse.
            None => return Ok(HttpResponse::Forbidden().finish()),
        },
    };
    // Frames are bounded like request bodies; a larger one closes the socket with 1009.
    ws::WsResponseBuilder::new(
        BashEventsSession::new(bash.get_ref().clone(), resend_all),
        &req,
        stream,
    )
    .frame_size(cfg.max_body_bytes)
    .start()
}

/// One bash-events socket.
pub struct BashEventsSession {
    bash: BashHandle,
    resend_all: bool,
    /// Set once subscribed; removed from the supervisor in `stopping()`.
    subscription: Option<u64>,
    last_heard: Instant,
}

impl BashEventsSession {
    pub fn new(bash: BashHandle, resend_all: bool) -> Self {
        BashEventsSession {
            bash,
            resend_all,
            subscription: None,
            last_heard: Instant::now(),
        }
    }

    /// Sends the recorded events batch by batch. Each batch is a `wait`, so live events stay in
    /// the mailbox until the replay is done: the client sees the backlog first, then the rest.
    fn replay(&mut self, mut backlog: VecDeque<Arc<Entry>>, ctx: &mut ws::WebsocketContext<Self>) {
        let batch: Vec<Arc<Entry>> = backlog.drain(..backlog.len().min(REPLAY_BATCH)).collect();
        let bash = self.bash.clone();
        let load = async move { bash.bodies(batch).await };
        ctx.wait(load.into_actor(self).map(move |bodies, act, ctx| {
            match bodies {
                Ok(bodies) => bodies.into_iter().flatten().for_each(|b| ctx.text(b)),
                Err(e) => log::warn!("bash socket: replay failed: {e}"),
            }
            if !backlog.is_empty() {
                act.replay(backlog, ctx);
            }
        }));
    }

    fn heartbeat(&self, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.run_interval(HEARTBEAT_INTERVAL, |act, ctx| {
            if act.last_heard.elapsed() > CLIENT_TIMEOUT {
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
    }
}

impl Actor for BashEventsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SESSION_QUEUE);
        self.heartbeat(ctx);
        let bash = self.bash.clone();
        let me = ctx.address().recipient();
        let resend_all = self.resend_all;
        let subscribe = async move { bash.subscribe(me, resend_all).await };
        ctx.wait(subscribe.into_actor(self).map(|res, act, ctx| match res {
            Ok(sub) => {
                act.subscription = Some(sub.id);
                if !sub.backlog.is_empty() {
                    act.replay(sub.backlog.into(), ctx);
                }
            }
            Err(e) => {
                log::error!("bash socket: cannot subscribe: {e}");
                ctx.close(Some(CloseReason {
                    code: CloseCode::Error,
                    description: None,
                }));
                ctx.stop();
            }
        }));
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        if let Some(id) = self.subscription.take() {
            self.bash.unsubscribe(id);
        }
        Running::Stop
    }
}

impl Handler<BashFeed> for BashEventsSession {
    type Result = ();

    fn handle(&mut self, msg: BashFeed, ctx: &mut Self::Context) {
        match msg {
            BashFeed::Event(frame) => ctx.text(frame),
            BashFeed::Lagged => {
                // The supervisor already forgot this subscriber.
                self.subscription = None;
                let description =
                    Some("too slow: events were dropped, reconnect with resend_all".to_string());
                ctx.close(Some(CloseReason {
                    code: CloseCode::Again,
                    description,
                }));
                ctx.stop();
            }
            BashFeed::ShuttingDown => {
                self.subscription = None;
                ctx.close(Some(CloseReason {
                    code: CloseCode::Away,
                    description: Some("Server shutting down".to_string()),
                }));
                ctx.stop();
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for BashEventsSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                log::debug!("bash socket: protocol error: {e}");
                let code = match e {
                    ws::ProtocolError::Overflow => CloseCode::Size,
                    _ => CloseCode::Protocol,
                };
                ctx.close(Some(CloseReason {
                    code,
                    description: Some(e.to_string()),
                }));
                ctx.stop();
                return;
            }
        };
        match msg {
            ws::Message::Text(text) => {
                let request = serde_json::from_str::<Value>(&text)
                    .map_err(|e| e.to_string())
                    .and_then(|v| ExecuteBashRequest::from_json(&v).map_err(|e| e.to_string()));
                match request {
                    Ok(request) => {
                        let bash = self.bash.clone();
                        let start = async move {
                            if let Err(e) = bash.start_command(request).await {
                                log::warn!("bash socket: command not started: {e}");
                            }
                        };
                        ctx.spawn(start.into_actor(self));
                    }
                    Err(e) => log::info!("bash socket: ignoring an invalid frame: {e}"),
                }
            }
            ws::Message::Ping(p) => ctx.pong(&p),
            ws::Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
            ws::Message::Binary(_)
            | ws::Message::Pong(_)
            | ws::Message::Continuation(_)
            | ws::Message::Nop => {}
        }
    }
}
