//! Resource caps over HTTP and WebSocket: conversations (`OH_MAX_CONVERSATIONS`), message size
//! (`OH_MAX_EVENT_BYTES`), subscribers per conversation (`OH_MAX_SUBSCRIBERS_PER_CONVERSATION`),
//! concurrent bash commands (`OH_MAX_CONCURRENT_BASH_COMMANDS`). Past a cap: a clear 4xx (or a
//! close code on a socket), nothing half-done, and the server keeps serving.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::routes::failing_agent;
use crate::common::{KEY, TestServer, poll};

fn start_body(s: &TestServer, extra: Value) -> Value {
    let mut b = json!({
        "agent": failing_agent("sk-limits"),
        "workspace": {"working_dir": s.dir.path().join("ws").to_string_lossy()},
    });
    if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    b
}

async fn count(s: &TestServer) -> Value {
    s.get_json("/api/conversations/count").await.1
}

#[tokio::test]
async fn conversations_past_the_cap_get_a_429_until_one_is_deleted() {
    let s = TestServer::start_with(|c| c.max_conversations = 3);
    let too_many = json!({"detail": "Too many conversations (limit 3); delete one first"});
    // eight starts at once: three are created, five refused, none half-made
    let body = start_body(&s, json!({}));
    let starts = (0..8).map(|_| s.post_json("/api/conversations", &body));
    let answers = futures_util::future::join_all(starts).await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(st, _)| *st == 201)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(created.len(), 3, "{answers:?}");
    for (st, v) in answers.iter().filter(|(st, _)| *st != 201) {
        assert_eq!((*st, v), (429, &too_many));
    }
    assert_eq!(count(&s).await, json!(3));
    let dirs = std::fs::read_dir(&s.config.conversations_path)
        .unwrap()
        .count();
    assert_eq!(dirs, 3, "a refused start left a directory");
    // an existing id is found, not created: still 200 at the cap
    let id = created[0]["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .post_json(
            "/api/conversations",
            &start_body(&s, json!({"conversation_id": id})),
        )
        .await;
    assert_eq!(st, 200);
    // a slot frees on delete
    let r = s
        .client()
        .delete(s.url(&format!("/api/conversations/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, _) = s
        .post_json("/api/conversations", &start_body(&s, json!({})))
        .await;
    assert_eq!(st, 201);
    // a restart with a lower cap loads everything on disk, and refuses new ones
    let mut config = s.config.clone();
    config.max_conversations = 2;
    let s = TestServer::start_config(s.stop(), config);
    assert_eq!(count(&s).await, json!(3));
    let (st, v) = s
        .post_json("/api/conversations", &start_body(&s, json!({})))
        .await;
    assert_eq!(st, 429, "{v}");
}

#[tokio::test]
async fn messages_past_the_size_cap_get_a_413_and_append_nothing() {
    let s = TestServer::start_with(|c| c.max_event_bytes = 1000);
    let message = |text: String| json!({"content": [{"type": "text", "text": text}]});
    // an initial message over the cap: no conversation is created
    let (st, v) = s
        .post_json(
            "/api/conversations",
            &start_body(&s, json!({"initial_message": message("x".repeat(2000))})),
        )
        .await;
    assert_eq!(st, 413, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .starts_with("Message too large: "),
        "{v}"
    );
    assert_eq!(count(&s).await, json!(0));
    let (st, info) = s
        .post_json("/api/conversations", &start_body(&s, json!({})))
        .await;
    assert_eq!(st, 201);
    let id = info["id"].as_str().unwrap().to_string();
    let events = format!("/api/conversations/{id}/events");
    let (_, before) = s.get_json(&format!("{events}/count")).await;
    for text in ["x".repeat(2000), "é".repeat(600), "\u{1}".repeat(200)] {
        let (st, v) = s.post_json(&events, &message(text)).await;
        assert_eq!(st, 413, "{v}");
    }
    // images count too
    let (st, _) = s
        .post_json(
            &events,
            &json!({"content": [{"type": "image", "image_urls": [format!("data:image/png;base64,{}", "A".repeat(1500))]}]}),
        )
        .await;
    assert_eq!(st, 413);
    assert_eq!(s.get_json(&format!("{events}/count")).await.1, before);
    let (st, _) = s.post_json(&events, &message("fits".into())).await;
    assert_eq!(st, 200);

    // over the event socket: the message is not appended, the socket stays
    let url = format!("ws://{}/sockets/events/{id}?session_api_key={KEY}", s.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("socket");
    let (_, before) = s.get_json(&format!("{events}/count")).await;
    let big = json!({"role": "user", "content": [{"type": "text", "text": "y".repeat(2000)}]});
    ws.send(Message::Text(big.to_string())).await.unwrap();
    let small = json!({"role": "user", "content": [{"type": "text", "text": "small"}]});
    ws.send(Message::Text(small.to_string())).await.unwrap();
    let after = poll(Duration::from_secs(10), "the small message", || async {
        let (_, n) = s.get_json(&format!("{events}/count")).await;
        (n != before).then_some(n)
    })
    .await;
    let (_, page) = s
        .get_json(&format!(
            "{events}/search?limit=100&kind=openhands.sdk.event.llm_convertible.message.MessageEvent"
        ))
        .await;
    let texts: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["llm_message"]["content"][0]["text"].as_str())
        .collect();
    assert!(
        texts.contains(&"small") && !texts.iter().any(|t| t.starts_with("yyy")),
        "{after}"
    );
}

#[tokio::test]
async fn subscribers_past_the_cap_are_refused_with_a_clear_code() {
    let s = TestServer::start_with(|c| c.max_subscribers_per_conversation = 2);
    let (_, info) = s
        .post_json("/api/conversations", &start_body(&s, json!({})))
        .await;
    let url = format!(
        "ws://{}/sockets/events/{}?session_api_key={KEY}",
        s.addr,
        info["id"].as_str().unwrap()
    );
    let connect = || async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.ok()?;
        // subscribed once the snapshot arrives
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => Some(Ok(ws)),
            Ok(Some(Ok(Message::Close(frame)))) => Some(Err(frame)),
            other => panic!("unexpected first frame {other:?}"),
        }
    };
    let mut first = connect()
        .await
        .expect("a handshake")
        .expect("first subscriber");
    let _second = connect().await.unwrap().expect("second subscriber");
    match connect().await {
        Some(Err(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::Again, "{frame:?}");
            assert!(frame.reason.contains("Too many subscribers"), "{frame:?}");
        }
        other => panic!("the third subscriber was not refused: {other:?}"),
    }
    // a slot frees when a socket goes away
    first.close(None).await.unwrap();
    poll(Duration::from_secs(10), "a free slot", || async {
        connect().await.and_then(Result::ok)
    })
    .await;
    let (st, _) = s.get_json("/api/conversations/count").await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn bash_commands_past_the_cap_are_refused_until_one_ends() {
    let s = TestServer::start_with(|c| c.max_concurrent_bash_commands = 2);
    let flag = s.dir.path().join("flag");
    let wait = format!("while [ ! -f {} ]; do sleep 0.02; done", flag.display());
    for _ in 0..2 {
        let (st, _) = s
            .post_json("/api/bash/start_bash_command", &json!({"command": wait}))
            .await;
        assert_eq!(st, 200);
    }
    let refused = json!({"detail": "Too many concurrent bash commands (limit 2)"});
    for path in [
        "/api/bash/start_bash_command",
        "/api/bash/execute_bash_command",
    ] {
        assert_eq!(
            s.post_json(path, &json!({"command": "echo no"})).await,
            (429, refused.clone()),
            "{path}"
        );
    }
    // over the socket a refused command is dropped (logged); the socket stays usable
    let url = format!("ws://{}/sockets/bash-events?session_api_key={KEY}", s.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text(json!({"command": "echo maybe"}).to_string()))
        .await
        .unwrap();
    std::fs::write(&flag, b"").unwrap();
    let (st, out) = poll(Duration::from_secs(10), "a free slot", || async {
        let (st, out) = s
            .post_json(
                "/api/bash/execute_bash_command",
                &json!({"command": "echo yes"}),
            )
            .await;
        (st != 429).then_some((st, out))
    })
    .await;
    assert_eq!((st, out["stdout"].as_str()), (200, Some("yes\n")));
    ws.send(Message::Text(
        json!({"command": "echo via-socket"}).to_string(),
    ))
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the socket command's output");
        if let Some(Ok(Message::Text(t))) = frame {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["stdout"] == "via-socket\n" {
                break;
            }
        }
    }
    let (_, page) = s
        .get_json("/api/bash/bash_events/search?kind__eq=BashCommand&limit=100")
        .await;
    let commands: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["command"].as_str())
        .collect();
    assert!(!commands.contains(&"echo no"), "{commands:?}");
}
