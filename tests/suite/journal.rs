//! Group commit and the write-ahead journal over HTTP: concurrent appends to one conversation
//! share syncs but each is persisted, numbered and acknowledged; files an OS crash would lose
//! (written after the journal sync, not synced themselves) come back from the journal at start.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::common::TestServer;

fn start_body(s: &TestServer) -> Value {
    json!({
        "agent": {
            "kind": "Agent",
            "llm": {"model": "openai/fake-model", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-x", "usage_id": "agent"},
            "tools": [{"name": "terminal"}]
        },
        "workspace": {"working_dir": s.dir.path().join("ws").to_string_lossy()}
    })
}

async fn create(s: &TestServer) -> String {
    let (st, info) = s.post_json("/api/conversations", &start_body(s)).await;
    assert_eq!(st, 201, "{info}");
    info["id"].as_str().unwrap().to_string()
}

async fn texts(s: &TestServer, id: &str) -> Vec<String> {
    let (st, v) = s
        .get_json(&format!(
            "/api/conversations/{id}/events/search?kind=openhands.sdk.event.llm_convertible.message.MessageEvent&limit=100"
        ))
        .await;
    assert_eq!(st, 200, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["llm_message"]["content"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn event_files(s_dir: &std::path::Path, id: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(
        s_dir
            .join("conversations")
            .join(id.replace('-', ""))
            .join("events"),
    )
    .unwrap()
    .map(|e| e.unwrap().path())
    .collect();
    v.sort();
    v
}

#[tokio::test]
async fn concurrent_appends_are_each_persisted_and_survive_lost_files() {
    let s = TestServer::start();
    let id = create(&s).await;
    // 40 messages, 20 in flight at once: several share a batch, each is answered once persisted
    let futs: Vec<_> = (0..40)
        .map(|i| {
            let s = &s;
            let id = id.clone();
            async move {
                let (st, v) = s
                    .post_json(
                        &format!("/api/conversations/{id}/events"),
                        &json!({"role": "user", "content": [{"type": "text", "text": format!("m{i}")}], "run": false}),
                    )
                    .await;
                assert_eq!(st, 200, "{v}");
            }
        })
        .collect();
    let stream = futures_util::stream::iter(futs);
    use futures_util::StreamExt;
    stream.buffer_unordered(20).collect::<Vec<()>>().await;
    let before = texts(&s, &id).await;
    assert_eq!(before.len(), 40);
    assert_eq!(
        before.iter().collect::<HashSet<_>>().len(),
        40,
        "each message once"
    );
    let config = s.config.clone();
    let dir = tokio::task::spawn_blocking(move || s.stop()).await.unwrap();

    // what an OS crash could do to files that were written but never synced: gone, empty
    let files = event_files(dir.path(), &id);
    assert_eq!(files.len(), 41, "system prompt + 40 messages: {files:?}");
    std::fs::remove_file(&files[10]).unwrap();
    std::fs::write(&files[20], b"").unwrap();
    let conv = dir.path().join("conversations").join(id.replace('-', ""));
    std::fs::write(conv.join("meta.json"), b"").unwrap();

    let s = TestServer::start_config(dir, config);
    assert_eq!(
        texts(&s, &id).await,
        before,
        "every message is back, in order"
    );
    let (st, info) = s.get_json(&format!("/api/conversations/{id}")).await;
    assert_eq!(st, 200, "{info}");
    assert_eq!(event_files(s.dir.path(), &id).len(), 41);
    let _ = tokio::task::spawn_blocking(move || s.stop()).await;
}

#[tokio::test]
async fn edits_made_while_stopped_are_kept() {
    let s = TestServer::start();
    let id = create(&s).await;
    let config = s.config.clone();
    let dir = tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    // an operator changes the title while the server is stopped (newer than the journal)
    let meta_path = dir
        .path()
        .join("conversations")
        .join(id.replace('-', ""))
        .join("meta.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["title"] = json!("edited by hand");
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let future = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(&meta_path)
        .unwrap()
        .set_modified(future)
        .unwrap();
    let s = TestServer::start_config(dir, config);
    let (st, info) = s.get_json(&format!("/api/conversations/{id}")).await;
    assert_eq!(st, 200, "{info}");
    assert_eq!(info["title"], json!("edited by hand"));
    let _ = tokio::task::spawn_blocking(move || s.stop()).await;
}
