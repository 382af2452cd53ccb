//! The machine's limit for the REST measures of `docs/performance.md`: a bare actix-web server
//! that answers constant JSON on the route shapes `ohbench --measures coldstart,rest` uses, with
//! bodies of the same sizes as this server's (a 2.4 KB ConversationInfo, a 59 KB page of 100
//! events). No state, no middleware, no logging, no disk: whatever the real server costs beyond
//! these figures is its own work.
//!
//! ```sh
//! cargo build --release --example bare_server
//! ohbench --start-cmd "exec $CARGO_TARGET_DIR/release/examples/bare_server --host 127.0.0.1 --port {port}" \
//!     --measures coldstart,rest
//! ```

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// `--host H --port P [--workers N]`, like the real server (workers: actix's default, one per
/// core, unless given).
fn args() -> (String, u16, Option<usize>) {
    let mut host = "127.0.0.1".to_string();
    let mut port = 8000;
    let mut workers = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--host" => host = it.next().unwrap_or(host),
            "--port" => port = it.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--workers" => workers = it.next().and_then(|w| w.parse().ok()),
            _ => {}
        }
    }
    (host, port, workers)
}

/// A user MessageEvent shaped like the real one.
fn message_event(i: usize) -> Value {
    json!({
        "kind": "MessageEvent",
        "id": format!("00000000-0000-4000-8000-{i:012}"),
        "timestamp": "2026-11-29T19:22:20.322624",
        "source": "user",
        "llm_message": {
            "role": "user",
            "content": [{"cache_prompt": false, "type": "text", "text": format!("bench filler message {i}")}],
            "cache_enabled": false, "vision_enabled": false, "function_calling_enabled": false,
            "tool_calls": null, "tool_call_id": null, "name": null, "force_string_serializer": false,
            "send_reasoning_content": false, "reasoning_content": null, "thinking_blocks": [],
            "responses_reasoning_item": null
        },
        "llm_response_id": null, "activated_skills": [], "extended_content": [], "sender": null
    })
}

/// Pads `v` with a `padding` string so its compact JSON is about `size` bytes.
fn padded(mut v: Value, size: usize) -> Value {
    let len = v.to_string().len();
    if len + 16 < size {
        v["padding"] = Value::String("x".repeat(size - len - 16));
    }
    v
}

struct Bodies {
    server_info: String,
    info: String,
    page: String,
}

fn bodies() -> Bodies {
    let mut items = vec![padded(message_event(0), 20_000)];
    items.extend((1..100).map(message_event));
    let page = json!({"items": items, "next_page_id": "00000000-0000-4000-8000-000000000100"});
    let info = padded(
        json!({"id": "f3f321e1-8091-4f75-9e8c-37005547ed86", "execution_status": "idle",
               "title": null, "created_at": "2026-11-29T19:22:20.322624Z"}),
        2470,
    );
    let server_info = json!({"uptime": 1.0, "idle_time": 1.0, "title": "OpenHands Agent Server",
        "version": "1.4.1", "docs": "/docs", "redoc": "/redoc"});
    Bodies {
        server_info: server_info.to_string(),
        info: info.to_string(),
        page: page.to_string(),
    }
}

fn json_body(s: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(s.to_owned())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let (host, port, workers) = args();
    let b = web::Data::new(bodies());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(b.clone())
            .route("/health", web::get().to(|| async { json_body("\"OK\"") }))
            .route(
                "/alive",
                web::get().to(|| async { json_body("{\"status\":\"ok\"}") }),
            )
            .route(
                "/server_info",
                web::get().to(|b: web::Data<Bodies>| async move { json_body(&b.server_info) }),
            )
            .route(
                "/api/conversations",
                web::post().to(|_body: web::Bytes| async {
                    HttpResponse::Created()
                        .content_type("application/json")
                        .body(format!("{{\"id\":\"{}\"}}", uuid::Uuid::new_v4()))
                }),
            )
            .route(
                "/api/conversations/{conversation_id}",
                web::get().to(|b: web::Data<Bodies>| async move { json_body(&b.info) }),
            )
            .route(
                "/api/conversations/{conversation_id}/events/count",
                web::get().to(|| async { json_body("1000000") }),
            )
            .route(
                "/api/conversations/{conversation_id}/events/search",
                web::get().to(|b: web::Data<Bodies>| async move { json_body(&b.page) }),
            )
            .route(
                "/api/conversations/{conversation_id}/events",
                web::post().to(|_body: web::Bytes| async { json_body("{\"success\":true}") }),
            )
    });
    let server = match workers {
        Some(n) => server.workers(n),
        None => server,
    };
    server.bind((host.as_str(), port))?.run().await
}
