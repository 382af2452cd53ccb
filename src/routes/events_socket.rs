//! `GET /sockets/events/{conversation_id}` (API.md §9): the conversation event WebSocket.
//! Every refusal before the upgrade is an empty HTTP 403, as the reference's handshake
//! rejection; an unknown conversation is accepted and closed with 4004 by the session.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use crate::config::Config;
use crate::conversation::RegistryHandle;
use crate::http::validate::{Checker, QueryPairs, parse_uuid};
use crate::http::websocket_key_ok;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/sockets/events/{conversation_id}",
        web::get().to(events_socket),
    );
}

async fn events_socket(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    cfg: web::Data<Config>,
    reg: web::Data<RegistryHandle>,
) -> Result<HttpResponse, actix_web::Error> {
    let forbidden = || Ok(HttpResponse::Forbidden().finish());
    if !websocket_key_ok(&cfg, &req) {
        return forbidden();
    }
    let Ok(id) = parse_uuid(&path) else {
        return forbidden();
    };
    let resend_all = match QueryPairs::parse(req.query_string()).get("resend_all") {
        None => false,
        Some(raw) => match Checker::new().bool(&Value::from(raw), Vec::new()) {
            Some(b) => b,
            None => return forbidden(),
        },
    };
    let conversation = reg.get(id).await?;
    crate::ws::events::start(&req, payload, conversation, resend_all, cfg.max_body_bytes)
}
