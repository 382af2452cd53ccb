//! Bash service: commands on PTYs, the bash event log, the bash-events socket
//! (DEVIATIONS #9, #10, #11), timeouts, process groups, limits, restarts.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{KEY, TestServer, poll};

/// Every event of `command_id` (all pages), once its final output is recorded.
async fn final_events(s: &TestServer, command_id: &str, timeout: Duration) -> Vec<Value> {
    poll(timeout, "the final BashOutput", || async {
        let mut items = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut path =
                format!("/api/bash/bash_events/search?command_id__eq={command_id}&limit=100");
            if let Some(p) = &page {
                path.push_str(&format!("&page_id={p}"));
            }
            let (status, body) = s.get_json(&path).await;
            assert_eq!(status, 200, "{body}");
            items.extend(body["items"].as_array().cloned().unwrap_or_default());
            match body["next_page_id"].as_str() {
                Some(p) => page = Some(p.to_string()),
                None => break,
            }
        }
        items
            .iter()
            .any(|e| !e["exit_code"].is_null())
            .then_some(items)
    })
    .await
}

fn concat(items: &[Value], stream: &str) -> String {
    items.iter().filter_map(|e| e[stream].as_str()).collect()
}

fn orders(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|e| e["order"].as_i64().unwrap_or(-100))
        .collect()
}

/// The processes whose parent is this test process and that are zombies.
fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect::<Vec<_>>())
        else {
            continue;
        };
        if rest.first() == Some(&"Z") && rest.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(me)
        {
            out.push(pid);
        }
    }
    out
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn ten_mib_of_output_arrives_complete_and_in_order() {
    let s = TestServer::start();
    let n = 1_500_000;
    let expected: String = (1..=n).map(|i| format!("{i}\n")).collect();
    assert!(expected.len() > 10 * 1024 * 1024);
    let started = Instant::now();
    let (status, cmd) = s
        .post_json(
            "/api/bash/start_bash_command",
            &json!({"command": format!("seq 1 {n}")}),
        )
        .await;
    assert_eq!(status, 200, "{cmd}");
    let items = final_events(&s, cmd["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    eprintln!("10 MiB of output recorded in {:?}", started.elapsed());
    assert_eq!(orders(&items), (0..items.len() as i64).collect::<Vec<_>>());
    assert!(items.len() >= 10);
    let out = concat(&items, "stdout");
    assert_eq!(out.len(), expected.len());
    assert!(out == expected, "output differs");
    assert_eq!(items.last().unwrap()["exit_code"], 0);
    assert!(items.iter().all(|e| e["stderr"].is_null()));
    // Every chunk but the last is exactly 1 MiB (the reference's chunking).
    for e in &items[..items.len() - 1] {
        assert_eq!(e["stdout"].as_str().map(str::len), Some(1024 * 1024));
        assert!(e["exit_code"].is_null());
    }
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let command = format!(
        "sleep 300 & echo $! > {}; echo started; wait",
        pid_file.display()
    );
    let started = Instant::now();
    let (status, out) = s
        .post_json(
            "/api/bash/execute_bash_command",
            &json!({"command": command, "timeout": 1}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        (
            out["exit_code"].clone(),
            out["stdout"].clone(),
            out["stderr"].clone(),
            out["order"].clone()
        ),
        (json!(-1), json!("started\n"), Value::Null, json!(0))
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    poll(
        Duration::from_secs(10),
        "the sleep grandchild to die",
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn two_hundred_commands_at_once_all_complete_without_zombies() {
    let s = TestServer::start();
    let starts = (0..200).map(|i| {
        let s = &s;
        async move {
            let (status, cmd) = s
                .post_json(
                    "/api/bash/start_bash_command",
                    &json!({"command": format!("echo n{i}; exit {}", i % 7)}),
                )
                .await;
            assert_eq!(status, 200, "{cmd}");
            (i, cmd["id"].as_str().unwrap().to_string())
        }
    });
    let started = futures_util::future::join_all(starts).await;
    for (i, id) in &started {
        let items = final_events(&s, id, Duration::from_secs(60)).await;
        let last = items.last().unwrap();
        assert_eq!(
            (last["exit_code"].as_i64(), concat(&items, "stdout")),
            (Some(i % 7), format!("n{i}\n"))
        );
    }
    poll(Duration::from_secs(10), "no zombie children", || async {
        zombie_children().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_missing_cwd_gives_the_reference_error() {
    let s = TestServer::start();
    let (status, out) = s
        .post_json(
            "/api/bash/execute_bash_command",
            &json!({"command": "ls", "cwd": "/nonexistent/dir"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, cmd) = s
        .get_json(&format!(
            "/api/bash/bash_events/{}",
            out["command_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(cmd["cwd"], "/nonexistent/dir");
    assert_eq!(
        out,
        json!({
            "kind": "BashOutput",
            "id": out["id"],
            "timestamp": out["timestamp"],
            "command_id": out["command_id"],
            "order": 0,
            "exit_code": -1,
            "stdout": null,
            "stderr": "Error executing command: [Errno 2] No such file or directory: '/nonexistent/dir'"
        })
    );
}

/// DEVIATIONS #10 and #11: execute returns the final event with the whole output; the chunks of
/// one second come back ordered by `order`.
#[tokio::test]
async fn execute_returns_the_final_output_with_everything_collected() {
    let s = TestServer::start();
    let n = 5 * 1024 * 1024 / 2;
    let command = format!("head -c {n} /dev/zero | tr '\\0' b; echo; echo err >&2; exit 4");
    let (status, out) = s
        .post_json(
            "/api/bash/execute_bash_command",
            &json!({"command": command}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (out["exit_code"].as_i64(), out["order"].as_i64()),
        (Some(4), Some(2))
    );
    assert_eq!(out["stdout"].as_str().map(str::len), Some(n + 1));
    assert_eq!(out["stderr"], "err\n");
    let items = final_events(
        &s,
        out["command_id"].as_str().unwrap(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(orders(&items), vec![0, 1, 2]);
    assert_eq!(items[2]["id"], out["id"]);
    assert_eq!(concat(&items, "stdout"), out["stdout"].as_str().unwrap());
    let (_, desc) = s
        .get_json(&format!(
            "/api/bash/bash_events/search?command_id__eq={}&sort_order=TIMESTAMP_DESC",
            out["command_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(orders(desc["items"].as_array().unwrap()), vec![2, 1, 0]);
}

#[tokio::test]
async fn stdout_is_a_terminal_and_stderr_stays_separate() {
    let s = TestServer::start();
    let (_, out) = s
        .post_json(
            "/api/bash/execute_bash_command",
            &json!({"command": "test -t 1 && echo tty; printf 'a\\nb\\n'; echo e >&2"}),
        )
        .await;
    assert_eq!(
        (
            out["stdout"].clone(),
            out["stderr"].clone(),
            out["exit_code"].clone()
        ),
        (json!("tty\na\nb\n"), json!("e\n"), json!(0))
    );
}

async fn ws_connect(
    s: &TestServer,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!(
        "ws://{}/sockets/bash-events?session_api_key={KEY}{query}",
        s.addr
    );
    tokio_tungstenite::connect_async(url)
        .await
        .expect("socket")
        .0
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("json frame"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// DEVIATIONS #9: the socket delivers the events, exactly as REST returns them, live and on
/// `resend_all`; commands sent over it run; invalid frames are ignored.
#[tokio::test]
async fn the_socket_delivers_events_exactly_as_rest() {
    let s = TestServer::start();
    let mut ws = ws_connect(&s, "").await;
    ws.send(Message::Text("not json".into())).await.unwrap();
    ws.send(Message::Text(json!({"nope": 1}).to_string()))
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"command": "echo via-socket; exit 2", "timeout": 20}).to_string(),
    ))
    .await
    .unwrap();
    let cmd = next_json(&mut ws).await;
    assert_eq!(
        (
            cmd["kind"].as_str(),
            cmd["command"].as_str(),
            cmd["timeout"].as_i64()
        ),
        (
            Some("BashCommand"),
            Some("echo via-socket; exit 2"),
            Some(20)
        )
    );
    let out = next_json(&mut ws).await;
    assert_eq!(
        (out["stdout"].as_str(), out["exit_code"].as_i64()),
        (Some("via-socket\n"), Some(2))
    );
    for frame in [&cmd, &out] {
        let (status, rest) = s
            .get_json(&format!(
                "/api/bash/bash_events/{}",
                frame["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!((status, &rest), (200, frame));
    }
    // A REST-started command shows up live too, with bytes identical to REST.
    let (_, rest_out) = s
        .post_json(
            "/api/bash/execute_bash_command",
            &json!({"command": "echo rest"}),
        )
        .await;
    let live_cmd = next_json(&mut ws).await;
    let live_out = next_json(&mut ws).await;
    assert_eq!(live_cmd["id"], rest_out["command_id"]);
    assert_eq!(live_out, rest_out);
    ws.close(None).await.unwrap();

    let mut replay = ws_connect(&s, "&resend_all=true").await;
    let (_, all) = s.get_json("/api/bash/bash_events/search").await;
    for expected in all["items"].as_array().unwrap() {
        assert_eq!(&next_json(&mut replay).await, expected);
    }
    replay.close(None).await.unwrap();
}

#[tokio::test]
async fn the_socket_checks_the_key_before_upgrading() {
    let s = TestServer::start();
    for query in [
        "",
        "?session_api_key=wrong",
        &format!("?session_api_key={KEY}&resend_all=maybe"),
    ] {
        let url = format!("ws://{}/sockets/bash-events{query}", s.addr);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 403, "{query}")
            }
            other => panic!("{query}: expected a 403, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn events_survive_a_restart_and_delete_clears_them() {
    let s = TestServer::start();
    let (_, out) = s
        .post_json(
            "/api/bash/execute_bash_command",
            &json!({"command": "echo keep; echo e >&2"}),
        )
        .await;
    let (_, before) = s.get_json("/api/bash/bash_events/search").await;
    let config = s.config.clone();
    let names: HashSet<String> = std::fs::read_dir(&config.bash_events_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let cmd_hex = out["command_id"].as_str().unwrap();
    assert!(
        names
            .iter()
            .any(|n| n.ends_with(&format!("_BashCommand_{cmd_hex}"))),
        "{names:?}"
    );
    let out_name = names.iter().find(|n| n.contains("_BashOutput_")).unwrap();
    assert!(out_name.ends_with(&format!("{cmd_hex}_{}", out["id"].as_str().unwrap())));
    let file = std::fs::read_to_string(config.bash_events_dir.join(out_name)).unwrap();
    assert_eq!(file, serde_json::to_string_pretty(&out).unwrap());

    let s = TestServer::start_config(s.stop(), config);
    let (_, after) = s.get_json("/api/bash/bash_events/search").await;
    assert_eq!(after, before);
    let r = s
        .client()
        .delete(s.url("/api/bash/bash_events"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"cleared_count": 2})
    );
    let (_, empty) = s.get_json("/api/bash/bash_events/search").await;
    assert_eq!(empty, json!({"items": [], "next_page_id": null}));
}

#[tokio::test]
async fn the_concurrency_limit_is_a_clear_error_and_shutdown_kills_commands() {
    let s = TestServer::start_with(|c| c.max_concurrent_bash_commands = 2);
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for i in 0..2 {
        let pid_file = dir.path().join(format!("pid{i}"));
        let command = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
        let (status, cmd) = s
            .post_json("/api/bash/start_bash_command", &json!({"command": command}))
            .await;
        assert_eq!(status, 200);
        ids.push(cmd["id"].as_str().unwrap().to_string());
    }
    let (status, body) = s
        .post_json("/api/bash/start_bash_command", &json!({"command": "true"}))
        .await;
    assert_eq!(
        (status, body),
        (
            429,
            json!({"detail": "Too many concurrent bash commands (limit 2)"})
        )
    );
    let pids: Vec<u32> = poll(Duration::from_secs(10), "pid files", || async {
        (0..2)
            .map(|i| {
                std::fs::read_to_string(dir.path().join(format!("pid{i}")))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .collect::<Option<Vec<u32>>>()
    })
    .await;
    let config = s.config.clone();
    let s = TestServer::start_config(s.stop(), config);
    for pid in pids {
        assert!(!alive(pid), "sleep {pid} survived the shutdown");
    }
    // Each command recorded its last event (killed by SIGKILL) before the server stopped.
    for id in ids {
        let items = final_events(&s, &id, Duration::from_secs(5)).await;
        assert_eq!(items.last().unwrap()["exit_code"], -9);
    }
}

#[tokio::test]
async fn search_validation_and_lookups() {
    let s = TestServer::start();
    let (status, body) = s
        .get_json("/api/bash/bash_events/search?timestamp__gte=soon&limit=101")
        .await;
    assert_eq!(status, 422);
    let kinds: Vec<(&str, &Value)> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["type"].as_str().unwrap(), &d["loc"]))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                "datetime_from_date_parsing",
                &json!(["query", "timestamp__gte"])
            ),
            ("less_than_equal", &json!(["query", "limit"]))
        ]
    );
    let (_, out) = s
        .post_json(
            "/api/bash/execute_bash_command",
            &json!({"command": "true"}),
        )
        .await;
    let id = out["id"].as_str().unwrap();
    let dashed = uuid::Uuid::parse_str(id).unwrap().hyphenated().to_string();
    assert_eq!(
        s.get_json(&format!("/api/bash/bash_events/{dashed}"))
            .await
            .0,
        404
    );
    let (_, window) = s.get_json("/api/bash/bash_events/search?timestamp__gte=2000-01-01T00:00:00&timestamp__lt=2000-01-02").await;
    assert_eq!(window, json!({"items": [], "next_page_id": null}));
    let r = s
        .client()
        .get(s.url("/api/bash/bash_events/"))
        .json(&vec!["x"; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}
