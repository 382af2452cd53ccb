//! SIGTERM on the real binary while commands run and clients are connected: every process of
//! every command group is killed, the last events are on disk, the process exits within 10 s, and
//! the next start on the same directory serves everything that was acknowledged before.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::common::poll;
use crate::common::proc::{Spawned, group_members, process_alive};

const KEY: &str = "shutdown-test-key";
/// What the issue allows between SIGTERM and exit.
const EXIT_BUDGET: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    crate::common::keyed_client(KEY)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn post(s: &Spawned, path: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(format!("{}{path}", s.base()))
        .json(body)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn get(s: &Spawned, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{}{path}", s.base()))
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Every bash event of `command_id`, in order.
async fn outputs(s: &Spawned, command_id: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut path = format!(
            "/api/bash/bash_events/search?kind__eq=BashOutput&command_id__eq={command_id}&limit=100"
        );
        if let Some(p) = &page {
            path.push_str(&format!("&page_id={p}"));
        }
        let (st, v) = get(s, &path).await;
        assert_eq!(st, 200, "{v}");
        items.extend(v["items"].as_array().cloned().unwrap_or_default());
        match v["next_page_id"].as_str() {
            Some(p) => page = Some(p.to_string()),
            None => return items,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_kills_command_groups_flushes_and_restarts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("OH_SESSION_API_KEYS_0", KEY), ("OH_SECRET_KEY", "k")];
    let mut server = Spawned::start(dir.path(), &env);

    // a conversation with a message
    let (st, conv) = post(
        &server,
        "/api/conversations",
        &json!({
            "agent": {"llm": {"model": "openai/m", "api_key": "sk-x", "base_url": "http://127.0.0.1:9/v1"}, "tools": []},
            "workspace": {"working_dir": dir.path().join("ws").to_string_lossy()},
        }),
    )
    .await;
    assert_eq!(st, 201, "{conv}");
    let conv_id = conv["id"].as_str().unwrap().to_string();
    let (st, _) = post(
        &server,
        &format!("/api/conversations/{conv_id}/events"),
        &json!({"content": [{"type": "text", "text": "acknowledged before SIGTERM"}]}),
    )
    .await;
    assert_eq!(st, 200);

    // commands: background children, one that ignores SIGTERM, one that writes all the time
    let scripts = [
        "sleep 300 & sleep 300 & echo $$ > {pg}; echo $! > {pid}; wait".to_string(),
        "trap '' TERM HUP INT; echo $$ > {pg}; (trap '' TERM; sleep 300) & echo $! > {pid}; wait"
            .to_string(),
        "echo $$ > {pg}; echo $$ > {pid}; i=0; while true; do i=$((i+1)); echo line $i; done"
            .to_string(),
    ];
    let mut commands = Vec::new();
    for (i, script) in scripts.iter().enumerate() {
        let pg = dir.path().join(format!("pg{i}"));
        let pid = dir.path().join(format!("pid{i}"));
        let command = script
            .replace("{pg}", &pg.to_string_lossy())
            .replace("{pid}", &pid.to_string_lossy());
        let (st, cmd) = post(
            &server,
            "/api/bash/start_bash_command",
            &json!({"command": command}),
        )
        .await;
        assert_eq!(st, 200, "{cmd}");
        commands.push((cmd["id"].as_str().unwrap().to_string(), pg, pid));
    }
    let groups: Vec<(i32, i32)> = poll(Duration::from_secs(10), "pid files", || async {
        commands
            .iter()
            .map(|(_, pg, pid)| {
                let read = |p: &std::path::Path| {
                    std::fs::read_to_string(p).ok()?.trim().parse::<i32>().ok()
                };
                Some((read(pg)?, read(pid)?))
            })
            .collect::<Option<Vec<_>>>()
    })
    .await;
    for (pg, _) in &groups {
        assert!(!group_members(*pg).is_empty(), "group {pg} not running");
    }
    // the chatty command has produced output
    let chatty = commands[2].0.clone();
    poll(Duration::from_secs(10), "chatty output", || async {
        (!outputs(&server, &chatty).await.is_empty()).then_some(())
    })
    .await;

    // clients that stay connected: a bash socket and an idle keep-alive connection
    let ws_url = format!(
        "ws://127.0.0.1:{}/sockets/bash-events?session_api_key={KEY}",
        server.port
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let idle = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();

    let (status, took) = tokio::task::block_in_place(|| server.terminate(EXIT_BUDGET));
    assert!(status.success(), "{status:?}; log:\n{}", server.log());
    assert!(took < EXIT_BUDGET, "exit took {took:?}");
    drop(idle);
    // the socket was closed by the server, not left hanging
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    assert!(closed.is_ok(), "bash socket still open after exit");

    for (pg, pid) in &groups {
        let left = group_members(*pg);
        assert!(left.is_empty(), "group {pg} survived: {left:?}");
        assert!(!process_alive(*pid), "process {pid} survived");
    }

    // the next start on the same directory resumes everything
    let server = Spawned::start(dir.path(), &env);
    let (st, info) = get(&server, &format!("/api/conversations/{conv_id}")).await;
    assert_eq!(st, 200, "{info}");
    let (_, page) = get(
        &server,
        &format!("/api/conversations/{conv_id}/events/search?limit=100"),
    )
    .await;
    let texts: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["llm_message"]["content"][0]["text"].as_str())
        .collect();
    assert_eq!(texts, vec!["acknowledged before SIGTERM"]);
    for (id, _, _) in &commands {
        let items = outputs(&server, id).await;
        let orders: Vec<i64> = items.iter().map(|e| e["order"].as_i64().unwrap()).collect();
        assert_eq!(
            orders,
            (0..items.len() as i64).collect::<Vec<_>>(),
            "command {id}: orders are not contiguous"
        );
        let last = items.last().expect("a final output");
        assert!(
            last["exit_code"].is_i64(),
            "command {id}: no final event: {last}"
        );
    }
    // and works as before
    let (st, out) = post(
        &server,
        "/api/bash/execute_bash_command",
        &json!({"command": "echo again"}),
    )
    .await;
    assert_eq!((st, out["stdout"].as_str()), (200, Some("again\n")));
    let mut server = server;
    let (status, took) = tokio::task::block_in_place(|| server.terminate(EXIT_BUDGET));
    assert!(
        status.success() && took < EXIT_BUDGET,
        "{status:?} {took:?}"
    );
}
