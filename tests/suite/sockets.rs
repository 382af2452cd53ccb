//! The conversation event WebSocket `/sockets/events/{id}` (API.md §9): handshake and auth,
//! fan-out to many clients in log order (DEVIATIONS #8), slow clients, resend_all, client
//! messages, close on delete.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{KEY, TestServer};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Starts a conversation (no tools) and returns its dashed id.
pub async fn create_conversation(s: &TestServer) -> String {
    let ws = s.dir.path().join("workspace");
    let (status, body) = s
        .post_json(
            "/api/conversations",
            &json!({
                "agent": {"llm": {"model": "openai/fake-model", "api_key": "sk-test",
                    "base_url": crate::common::fake_llm::shared_text_llm(), "num_retries": 0}, "tools": []},
                "workspace": {"working_dir": ws},
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// POST .../events with `run: false`: appends one user MessageEvent.
pub async fn post_message(s: &TestServer, id: &str, text: &str) {
    let (status, body) = s
        .post_json(
            &format!("/api/conversations/{id}/events"),
            &json!({"role": "user", "content": [{"type": "text", "text": text}], "run": false}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"success": true})));
}

/// Every event of the log, in events/search order.
pub async fn log_events(s: &TestServer, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut path = format!("/api/conversations/{id}/events/search?limit=100");
        if let Some(p) = &page {
            path.push_str(&format!("&page_id={p}"));
        }
        let (status, body) = s.get_json(&path).await;
        assert_eq!(status, 200, "{body}");
        out.extend(body["items"].as_array().unwrap().iter().cloned());
        match body["next_page_id"].as_str() {
            Some(p) => page = Some(p.to_string()),
            None => return out,
        }
    }
}

pub fn ws_url(s: &TestServer, path: &str) -> String {
    format!("ws://{}{}", s.addr, path)
}

pub fn events_path(id: &str, query: &str) -> String {
    format!("/sockets/events/{id}?session_api_key={KEY}{query}")
}

pub async fn connect(s: &TestServer, path: &str) -> Ws {
    let (ws, resp) = tokio_tungstenite::connect_async(ws_url(s, path))
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// The HTTP status of a refused handshake, and its body.
async fn refused(s: &TestServer, path: &str, header_key: bool) -> (u16, Vec<u8>) {
    let mut req = ws_url(s, path).into_client_request().unwrap();
    if header_key {
        req.headers_mut()
            .insert("X-Session-API-Key", KEY.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(resp)) => (
            resp.status().as_u16(),
            resp.body().clone().unwrap_or_default(),
        ),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("handshake of {path} accepted"),
    }
}

/// What a socket delivered: text frames parsed as JSON, then how it ended.
#[derive(Debug, Default)]
pub struct Received {
    pub events: Vec<Value>,
    /// `(code, reason)` of the close frame, when one arrived.
    pub close: Option<(u16, String)>,
}

/// Reads the next frame within `timeout`: `Some(Ok(json))` for a text frame, `Some(Err(close))`
/// for a close frame (or the end), `None` on timeout.
pub async fn next_frame(ws: &mut Ws, timeout: Duration) -> Option<Result<Value, (u16, String)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, ws.next()).await.ok()?;
        match frame {
            Some(Ok(Message::Text(t))) => return Some(Ok(serde_json::from_str(&t).unwrap())),
            Some(Ok(Message::Close(f))) => {
                return Some(Err(f
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()))));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Some(Err((1006, String::new()))),
        }
    }
}

/// Reads until `n` events arrived, the socket closed, or nothing came for `quiet`.
pub async fn read_events(ws: &mut Ws, n: usize, quiet: Duration) -> Received {
    let mut r = Received::default();
    while r.events.len() < n {
        match next_frame(ws, quiet).await {
            Some(Ok(v)) => r.events.push(v),
            Some(Err(close)) => {
                r.close = Some(close);
                break;
            }
            None => break,
        }
    }
    r
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn is_full_state(e: &Value) -> bool {
    e["kind"] == "ConversationStateUpdateEvent" && e["key"] == "full_state"
}

#[tokio::test]
async fn handshake_auth_and_errors() {
    let s = TestServer::start();
    let id = create_conversation(&s).await;

    // refusals are HTTP 403 with an empty body, before anything else
    let empty = Vec::<u8>::new();
    let no_key = format!("/sockets/events/{id}");
    assert_eq!(refused(&s, &no_key, false).await, (403, empty.clone()));
    let wrong = format!("/sockets/events/{id}?session_api_key=wrong");
    assert_eq!(refused(&s, &wrong, false).await, (403, empty.clone()));
    // the header is not accepted on the upgrade (golden auth_websocket)
    assert_eq!(refused(&s, &no_key, true).await, (403, empty.clone()));
    let malformed = events_path("not-a-uuid", "");
    assert_eq!(refused(&s, &malformed, false).await, (403, empty.clone()));
    let bad_flag = events_path(&id, "&resend_all=maybe");
    assert_eq!(refused(&s, &bad_flag, false).await, (403, empty.clone()));

    // the right key: the full_state snapshot first, and it is not a log event
    let mut ws = connect(&s, &events_path(&id, "")).await;
    let first = next_frame(&mut ws, Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert!(is_full_state(&first), "{first}");
    assert_eq!(first["source"], "environment");
    assert_eq!(first["value"]["id"], json!(id));
    assert_eq!(first["value"]["execution_status"], "idle");
    assert!(!ids(&log_events(&s, &id).await).contains(&first["id"].as_str().unwrap().to_string()));
    // nothing else without activity
    assert!(
        next_frame(&mut ws, Duration::from_millis(300))
            .await
            .is_none()
    );

    // all accepted spellings of true
    for flag in ["true", "1", "yes", "True"] {
        let mut ws = connect(&s, &events_path(&id, &format!("&resend_all={flag}"))).await;
        let r = read_events(&mut ws, 2, Duration::from_secs(10)).await;
        assert_eq!(
            r.events[1]["kind"], "SystemPromptEvent",
            "resend_all={flag}"
        );
    }

    // unknown conversation: accepted, then closed with 4004 and no frames
    let unknown = events_path("00000000-0000-0000-0000-000000000000", "");
    let mut ws = connect(&s, &unknown).await;
    let r = read_events(&mut ws, 1, Duration::from_secs(10)).await;
    assert!(r.events.is_empty());
    assert_eq!(r.close, Some((4004, "Conversation not found".to_string())));
}

#[tokio::test]
async fn without_session_keys_sockets_are_open() {
    let s = TestServer::start_with(|c| c.session_api_keys.clear());
    let id = create_conversation(&s).await;
    let mut ws = connect(&s, &format!("/sockets/events/{id}")).await;
    let first = next_frame(&mut ws, Duration::from_secs(10)).await;
    assert!(is_full_state(&first.unwrap().unwrap()));
}

/// `clients` sockets on one conversation each receive every event exactly once, in log order.
async fn fan_out(clients: usize, messages: usize) {
    let s = TestServer::start();
    let id = create_conversation(&s).await;
    let mut sockets = Vec::new();
    for _ in 0..clients {
        let mut ws = connect(&s, &events_path(&id, "")).await;
        let first = next_frame(&mut ws, Duration::from_secs(30)).await;
        assert!(is_full_state(&first.unwrap().unwrap()));
        sockets.push(ws);
    }
    let before = log_events(&s, &id).await.len();
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(
                async move { read_events(&mut ws, messages, Duration::from_secs(30)).await },
            )
        })
        .collect();
    for i in 0..messages {
        post_message(&s, &id, &format!("message {i}")).await;
    }
    let log = log_events(&s, &id).await;
    let expected = ids(&log[before..]);
    assert_eq!(expected.len(), messages);
    for (n, r) in readers.into_iter().enumerate() {
        let r = r.await.unwrap();
        assert_eq!(r.close, None, "client {n}");
        assert_eq!(ids(&r.events), expected, "client {n}");
        // same payloads as REST
        assert_eq!(r.events, log[before..].to_vec(), "client {n}");
    }
}

#[tokio::test]
async fn two_clients_receive_every_event_once_in_order() {
    fan_out(2, 25).await;
}

#[tokio::test]
async fn a_hundred_clients_receive_every_event_once_in_order() {
    fan_out(100, 20).await;
}

/// Connects without letting the kernel buffer much: a client that stops reading then stalls
/// the server side quickly.
async fn connect_small_window(s: &TestServer, path: &str) -> Ws {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(s.addr).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(ws_url(s, path), MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_1013() {
    let s = TestServer::start();
    let id = create_conversation(&s).await;
    let mut slow = connect_small_window(&s, &events_path(&id, "")).await;
    let mut fast = connect(&s, &events_path(&id, "")).await;
    assert!(is_full_state(
        &next_frame(&mut fast, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap()
    ));
    let messages = 500;
    let fast_reader =
        tokio::spawn(
            async move { read_events(&mut fast, messages, Duration::from_secs(60)).await },
        );
    // 16 KB per event: megabytes in total, far more than socket buffers and the mailbox hold
    let filler = "x".repeat(16 * 1024);
    for i in 0..messages {
        post_message(&s, &id, &format!("{i} {filler}")).await;
    }
    let log = log_events(&s, &id).await;
    let expected = ids(&log[log.len() - messages..]);

    let fast = fast_reader.await.unwrap();
    assert_eq!(fast.close, None);
    assert_eq!(ids(&fast.events), expected);

    // the slow client now reads: a prefix of the stream, in order, then 1013
    let slow = read_events(&mut slow, usize::MAX, Duration::from_secs(30)).await;
    let close = slow.close.clone().expect("slow client closed");
    assert_eq!(close.0, 1013, "{close:?}");
    assert!(is_full_state(&slow.events[0]));
    let got = ids(&slow.events[1..]);
    assert!(got.len() < messages, "slow client got everything");
    assert_eq!(got, expected[..got.len()].to_vec());

    // the conversation is unaffected: a new socket still works
    let mut again = connect(&s, &events_path(&id, "")).await;
    assert!(is_full_state(
        &next_frame(&mut again, Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap()
    ));
}

#[tokio::test]
async fn resend_all_during_activity_is_gapless_and_without_duplicates() {
    let s = std::sync::Arc::new(TestServer::start());
    let id = create_conversation(&s).await;
    let messages = 60;
    // the writer reports every tenth message; a new client joins each time, mid-activity
    let (progress_tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let writer = {
        let (s, id) = (s.clone(), id.clone());
        tokio::spawn(async move {
            for i in 0..messages {
                if i % 10 == 0 {
                    let _ = progress_tx.send(i);
                }
                post_message(&s, &id, &format!("m{i}")).await;
            }
        })
    };
    let mut readers = Vec::new();
    while progress.recv().await.is_some() {
        readers.push(connect(&s, &events_path(&id, "&resend_all=true")).await);
    }
    assert_eq!(readers.len(), 6);
    writer.await.unwrap();
    let log = log_events(&s, &id).await;
    assert_eq!(log.len(), 1 + messages);
    for (n, mut ws) in readers.into_iter().enumerate() {
        let r = read_events(&mut ws, 1 + log.len(), Duration::from_secs(30)).await;
        assert!(is_full_state(&r.events[0]), "client {n}");
        assert_eq!(ids(&r.events[1..]), ids(&log), "client {n}");
    }
}

#[tokio::test]
async fn socket_order_is_log_order_with_concurrent_writers() {
    let s = std::sync::Arc::new(TestServer::start());
    let id = create_conversation(&s).await;
    let mut ws = connect(&s, &events_path(&id, "")).await;
    next_frame(&mut ws, Duration::from_secs(10)).await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (s, id) = (s.clone(), id.clone());
            tokio::spawn(async move {
                for i in 0..15 {
                    post_message(&s, &id, &format!("w{w} m{i}")).await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let log = log_events(&s, &id).await;
    let r = read_events(&mut ws, log.len() - 1, Duration::from_secs(30)).await;
    assert_eq!(ids(&r.events), ids(&log[1..]));
}

#[tokio::test]
async fn client_text_frames_are_user_messages() {
    let s = TestServer::start();
    let id = create_conversation(&s).await;
    let mut ws = connect(&s, &events_path(&id, "")).await;
    next_frame(&mut ws, Duration::from_secs(10)).await;

    // ignored: not JSON, not an object, no role, another role, bad content, binary
    for bad in [
        "not json",
        "[1,2]",
        r#"{"content":[{"type":"text","text":"no role"}]}"#,
        r#"{"role":"assistant","content":[{"type":"text","text":"nope"}]}"#,
        r#"{"role":"user","content":"a string"}"#,
    ] {
        ws.send(Message::Text(bad.into())).await.unwrap();
    }
    ws.send(Message::Binary(b"{}".to_vec())).await.unwrap();
    assert!(
        next_frame(&mut ws, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing is sent back for ignored frames"
    );

    // a valid message is appended and starts a run
    ws.send(Message::Text(
        r#"{"role":"user","content":[{"type":"text","text":"over the socket"}]}"#.into(),
    ))
    .await
    .unwrap();
    let msg = next_frame(&mut ws, Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg["kind"], "MessageEvent");
    assert_eq!(msg["source"], "user");
    assert_eq!(
        msg["llm_message"]["content"][0]["text"],
        json!("over the socket")
    );
    let running = next_frame(&mut ws, Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running["key"], "execution_status");
    assert_eq!(running["value"], "running");
    let log = log_events(&s, &id).await;
    let messages: Vec<&Value> = log
        .iter()
        .filter(|e| e["kind"] == "MessageEvent" && e["source"] == "user")
        .collect();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["id"], msg["id"]);
}

#[tokio::test]
async fn deleting_a_conversation_closes_its_sockets_normally() {
    let s = TestServer::start();
    let id = create_conversation(&s).await;
    let mut ws = connect(&s, &events_path(&id, "")).await;
    next_frame(&mut ws, Duration::from_secs(10)).await;
    post_message(&s, &id, "before delete").await;
    let r = s
        .client()
        .delete(s.url(&format!("/api/conversations/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = read_events(&mut ws, usize::MAX, Duration::from_secs(10)).await;
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0]["kind"], "MessageEvent");
    assert_eq!(r.close, Some((1000, "Conversation deleted".to_string())));
}
