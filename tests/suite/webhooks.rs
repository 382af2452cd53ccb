//! Outgoing webhooks (CONFIG.md §3) against a tiny HTTP receiver on 127.0.0.1:0: event
//! batches in log order, conversation-info posts on create/pause/title/delete, delivery after
//! the receiver was down, and the final flush on delete and shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_server::config::WebhookSpec;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::sockets::{create_conversation, log_events, post_message};
use crate::common::{KEY, TestServer, poll};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

#[derive(Default)]
struct ReceiverState {
    /// When false, connections are dropped unanswered (the receiver is "down").
    up: bool,
    hits: Vec<Hit>,
    /// Connections dropped while down.
    refused: usize,
}

/// A minimal HTTP/1.1 server that records POSTs and answers 200 (keep-alive).
struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    async fn start(up: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ReceiverState {
            up,
            ..ReceiverState::default()
        }));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                {
                    let mut s = st.lock().unwrap();
                    if !s.up {
                        s.refused += 1;
                        drop(conn);
                        continue;
                    }
                }
                let st = st.clone();
                tokio::spawn(async move {
                    let mut conn = BufReader::new(conn);
                    loop {
                        let mut line = String::new();
                        if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split(' ').nth(1).unwrap_or("").to_string();
                        let mut headers = HashMap::new();
                        loop {
                            let mut h = String::new();
                            if conn.read_line(&mut h).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':') {
                                headers.insert(k.trim().to_lowercase(), v.trim().to_string());
                            }
                        }
                        let len: usize = headers
                            .get("content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; len];
                        if conn.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let up = {
                            let mut s = st.lock().unwrap();
                            if s.up {
                                s.hits.push(Hit {
                                    path,
                                    headers,
                                    body,
                                });
                            }
                            s.up
                        };
                        if !up {
                            return;
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if conn.get_mut().write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { addr, state }
    }

    fn set_up(&self, up: bool) {
        self.state.lock().unwrap().up = up;
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.lock().unwrap().hits.clone()
    }

    fn spec(&self, buffer: u64, flush_delay: f64) -> WebhookSpec {
        WebhookSpec {
            base_url: format!("http://{}/hook/", self.addr),
            headers: HashMap::from([("X-Test".to_string(), "yes".to_string())]),
            event_buffer_size: buffer,
            flush_delay,
            num_retries: 1,
            retry_delay: 0,
        }
    }

    /// Every event posted for `hex`, batches concatenated in arrival order.
    fn events(&self, hex: &str) -> Vec<Value> {
        let path = format!("/hook/events/{hex}");
        self.hits()
            .into_iter()
            .filter(|h| h.path == path)
            .flat_map(|h| h.body.as_array().cloned().unwrap_or_default())
            .collect()
    }

    fn infos(&self) -> Vec<Value> {
        self.hits()
            .into_iter()
            .filter(|h| h.path == "/hook/conversations")
            .map(|h| h.body)
            .collect()
    }
}

fn hex(id: &str) -> String {
    id.replace('-', "")
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("").to_string())
        .collect()
}

fn is_full_state(e: &Value) -> bool {
    e["kind"] == "ConversationStateUpdateEvent" && e["key"] == "full_state"
}

/// Waits until the receiver got `n` events for the conversation.
async fn wait_events(rx: &Receiver, hex: &str, n: usize) -> Vec<Value> {
    poll(Duration::from_secs(20), "webhook events", || {
        let ev = rx.events(hex);
        async move { (ev.len() >= n).then_some(ev) }
    })
    .await
}

async fn wait_infos(rx: &Receiver, n: usize) -> Vec<Value> {
    poll(Duration::from_secs(20), "conversation infos", || {
        let infos = rx.infos();
        async move { (infos.len() >= n).then_some(infos) }
    })
    .await
}

#[tokio::test]
async fn event_batches_and_conversation_posts() {
    let rx = Receiver::start(true).await;
    let spec = rx.spec(3, 0.3);
    let s = TestServer::start_with(|c| c.webhooks = vec![spec]);
    let id = create_conversation(&s).await;
    let h = hex(&id);

    // created (201): one ConversationInfo, idle
    let infos = wait_infos(&rx, 1).await;
    assert_eq!(infos[0]["id"], json!(id));
    assert_eq!(infos[0]["execution_status"], "idle");

    // the first batch: full_state, the SystemPromptEvent, the message (buffer size 3 reached)
    post_message(&s, &id, "one").await;
    let first = wait_events(&rx, &h, 3).await;
    assert!(is_full_state(&first[0]), "{}", first[0]);
    assert_eq!(first[1]["kind"], "SystemPromptEvent");
    assert_eq!(first[2]["kind"], "MessageEvent");
    let event_hits: Vec<Hit> = rx
        .hits()
        .into_iter()
        .filter(|x| x.path.starts_with("/hook/events/"))
        .collect();
    assert_eq!(event_hits[0].body.as_array().unwrap().len(), 3);
    let headers = &event_hits[0].headers;
    assert_eq!(headers["x-test"], "yes");
    assert_eq!(headers["x-session-api-key"], KEY);
    assert_eq!(headers["content-type"], "application/json");

    // one more event goes out after flush_delay, alone
    post_message(&s, &id, "two").await;
    let events = wait_events(&rx, &h, 4).await;
    let log = log_events(&s, &id).await;
    assert_eq!(ids(&events[1..]), ids(&log));
    assert_eq!(events[1..], log[..]);

    // pause, title: one post each with the current info
    let (status, _) = s
        .post_json(&format!("/api/conversations/{id}/pause"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let infos = wait_infos(&rx, 2).await;
    assert_eq!(infos[1]["execution_status"], "paused");
    let r = s
        .client()
        .patch(s.url(&format!("/api/conversations/{id}")))
        .json(&json!({"title": " A title "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let infos = wait_infos(&rx, 3).await;
    assert_eq!(infos[2]["title"], "A title");

    // delete: the last info, and the events still queued are posted
    let log = log_events(&s, &id).await;
    let r = s
        .client()
        .delete(s.url(&format!("/api/conversations/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let infos = wait_infos(&rx, 4).await;
    assert_eq!(infos[3]["id"], json!(id));
    assert_eq!(infos[3]["title"], "A title");
    // pause published a full_state after its events
    let all = wait_events(&rx, &h, log.len() + 2).await;
    let persisted: Vec<Value> = all[1..]
        .iter()
        .filter(|e| !is_full_state(e))
        .cloned()
        .collect();
    assert_eq!(ids(&persisted), ids(&log));
    assert!(is_full_state(all.last().unwrap()));
    // nothing is posted twice (a stop drains the webhooks)
    tokio::task::spawn_blocking(move || drop(s.stop()))
        .await
        .unwrap();
    assert_eq!(rx.events(&h).len(), log.len() + 2);
    assert_eq!(rx.infos().len(), 4);
}

#[tokio::test]
async fn events_arrive_after_the_receiver_was_down() {
    let rx = Receiver::start(false).await;
    let spec = rx.spec(2, 0.2);
    let s = TestServer::start_with(|c| c.webhooks = vec![spec]);
    let id = create_conversation(&s).await;
    let h = hex(&id);
    for i in 0..5 {
        post_message(&s, &id, &format!("while down {i}")).await;
    }
    // let a few attempts fail
    poll(Duration::from_secs(20), "failed deliveries", || {
        let refused = rx.state.lock().unwrap().refused;
        async move { (refused >= 4).then_some(()) }
    })
    .await;
    assert!(rx.hits().is_empty());
    rx.set_up(true);
    for i in 0..3 {
        post_message(&s, &id, &format!("after {i}")).await;
    }
    let log = log_events(&s, &id).await;
    let events = wait_events(&rx, &h, 1 + log.len()).await;
    assert!(is_full_state(&events[0]));
    assert_eq!(ids(&events[1..]), ids(&log));
    // after a stop (which drains the webhooks) nothing more came: no duplicates
    tokio::task::spawn_blocking(move || drop(s.stop()))
        .await
        .unwrap();
    assert_eq!(rx.events(&h).len(), 1 + log.len(), "no duplicates");
}

#[tokio::test]
async fn shutdown_posts_the_rest_and_loaded_conversations_get_webhooks() {
    let rx = Receiver::start(true).await;
    // a long delay: only the shutdown flush can deliver the queued events
    let spec = rx.spec(100, 30.0);
    let s = TestServer::start_with(|c| c.webhooks = vec![spec.clone()]);
    let id = create_conversation(&s).await;
    let h = hex(&id);
    post_message(&s, &id, "queued").await;
    let log = log_events(&s, &id).await;
    let config = s.config.clone();
    // stop on a blocking thread: the receiver runs on this test's runtime
    let dir = tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    let events = wait_events(&rx, &h, 1 + log.len()).await;
    assert!(is_full_state(&events[0]));
    assert_eq!(ids(&events[1..]), ids(&log));

    // after a restart the loaded conversation has its webhook again: full_state first
    let s = TestServer::start_config(dir, config);
    post_message(&s, &id, "after restart").await;
    let n = events.len();
    let dir = tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    let events = wait_events(&rx, &h, n + 2).await;
    assert!(is_full_state(&events[n]));
    assert_eq!(events[n]["value"]["id"], json!(id));
    assert_eq!(events[n + 1]["kind"], "MessageEvent");
    // a load is not a creation: one ConversationInfo in all
    assert_eq!(rx.infos().len(), 1);
    drop(dir);
}
