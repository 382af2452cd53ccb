//! LLM faults against the real binary: a fake LLM that times out, resets connections, answers
//! 429 with `Retry-After`, 500, malformed JSON, an empty choice list, a truncated body, or a
//! tool call with broken arguments. Each ends in the documented event and status
//! (agent-behaviour.md §3.4–3.6), the server stays healthy, and resident memory, threads and
//! file descriptors stay flat across 1,000 failing calls (`LLM_FAULT_CALLS` sets the number),
//! made on conversations of 100 calls each that are deleted once done.

use std::time::Duration;

use serde_json::{Value, json};

use super::crash::{KEY, events, get, post};
use crate::common::fake_llm::{Cut, FakeLlm, Reply, chat, chat_finish};
use crate::common::poll;
use crate::common::proc::{Spawned, fd_count, rss_kib};

const WAIT: Duration = Duration::from_secs(60);

fn env() -> [(&'static str, &'static str); 1] {
    [("OH_SESSION_API_KEYS_0", KEY)]
}

async fn start(s: &Spawned, fake: &FakeLlm, llm_extra: Value, ws: &str, run: bool) -> String {
    let mut llm = json!({"model": "openai/fake-model", "base_url": fake.v1(), "api_key": "sk-fake",
        "usage_id": "agent", "num_retries": 0});
    for (k, v) in llm_extra.as_object().unwrap() {
        llm[k] = v.clone();
    }
    let mut body = json!({
        "agent": {"kind": "Agent", "llm": llm, "tools": [{"name": "terminal"}]},
        "workspace": {"working_dir": ws},
    });
    if run {
        body["initial_message"] =
            json!({"role": "user", "content": [{"type": "text", "text": "go"}], "run": true});
    }
    let (st, info) = post(s, "/api/conversations", &body).await;
    assert_eq!(st, 201, "{info}");
    info["id"].as_str().unwrap().to_string()
}

async fn wait_end(s: &Spawned, id: &str) -> String {
    poll(WAIT, "the run ends", || async {
        let (_, info) = get(s, &format!("/api/conversations/{id}")).await;
        let st = info["execution_status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ["finished", "error", "stuck"]
            .contains(&st.as_str())
            .then_some(st)
    })
    .await
}

/// What a fault must end in.
enum Expect {
    /// Status `error`, last event a ConversationErrorEvent with this code.
    Error(&'static str),
    /// Status `finished`.
    Finished,
}

fn body(status: u16, text: &str) -> Reply {
    Reply {
        body: text.to_string(),
        ..Reply::json(status, &Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_llm_fault_ends_in_its_documented_event_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let ws = ws.to_string_lossy().into_owned();
    let server = tokio::task::block_in_place(|| Spawned::start(dir.path(), &env()));
    let broken = chat(
        "r0",
        Value::Null,
        vec![json!({"id": "c0", "type": "function",
            "function": {"name": "terminal", "arguments": "{\"command\": \"ls\", "}})],
    );
    let rate_limited = Reply::error(429, "slow down").header("retry-after", "1");
    let faults: Vec<(&str, Vec<Reply>, Value, Expect)> = vec![
        (
            "timeout",
            vec![chat_finish(0, "too late").delayed(Duration::from_secs(3))],
            json!({"timeout": 1}),
            Expect::Error("LLMTimeoutError"),
        ),
        (
            "reset",
            vec![chat_finish(0, "x").cut(Cut::Reset)],
            json!({}),
            Expect::Error("LLMServiceUnavailableError"),
        ),
        (
            "429 persisting",
            vec![rate_limited.clone()],
            json!({}),
            Expect::Error("LLMRateLimitError"),
        ),
        (
            "429 clearing",
            vec![rate_limited.clone(), rate_limited, chat_finish(2, "ok")],
            json!({}),
            Expect::Finished,
        ),
        (
            "500",
            vec![Reply::error(500, "boom")],
            json!({}),
            Expect::Error("LLMServiceUnavailableError"),
        ),
        (
            "malformed JSON",
            vec![body(200, "{\"id\": \"x\", \"choices\": [")],
            json!({}),
            Expect::Error("LLMError"),
        ),
        (
            "empty choices",
            vec![Reply::json(
                200,
                &json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}),
            )],
            json!({}),
            Expect::Error("LLMNoResponseError"),
        ),
        (
            "truncated body",
            vec![chat_finish(0, "cut").cut(Cut::Truncate)],
            json!({}),
            Expect::Error("LLMServiceUnavailableError"),
        ),
        (
            "broken arguments",
            vec![broken, chat_finish(1, "recovered")],
            json!({}),
            Expect::Finished,
        ),
    ];
    let mut runs = Vec::new();
    for (name, replies, extra, expect) in faults {
        let fake = FakeLlm::scripted(replies).await;
        let id = start(&server, &fake, extra, &ws, true).await;
        runs.push((name, fake, id, expect));
    }
    for (name, fake, id, expect) in &runs {
        let status = wait_end(&server, id).await;
        let evs = events(&server, id).await;
        let last = evs.last().unwrap();
        match expect {
            Expect::Error(code) => {
                assert_eq!(status, "error", "{name}: {last}");
                let err = evs
                    .iter()
                    .rev()
                    .find(|e| e["kind"] == "ConversationErrorEvent")
                    .unwrap_or_else(|| panic!("{name}: no ConversationErrorEvent"));
                assert_eq!(err["code"], *code, "{name}: {err}");
                assert!(err["detail"].as_str().is_some_and(|d| !d.is_empty()));
            }
            Expect::Finished => assert_eq!(status, "finished", "{name}: {last}"),
        }
        let calls = fake.calls();
        match *name {
            // one attempt = 3 HTTP tries on the OpenAI-compatible path
            "timeout" | "reset" | "429 persisting" | "500" | "truncated body" => {
                assert_eq!(calls.len(), 3, "{name}")
            }
            "malformed JSON" | "empty choices" => assert_eq!(calls.len(), 1, "{name}"),
            _ => {}
        }
        if name.starts_with("429") {
            // Retry-After (1 s) is honoured instead of the first 0.5 s back-off
            let gap = calls[1].at - calls[0].at;
            assert!(gap >= Duration::from_millis(900), "{name}: gap {gap:?}");
        }
        if *name == "broken arguments" {
            let err = evs
                .iter()
                .find(|e| e["kind"] == "AgentErrorEvent")
                .expect("AgentErrorEvent");
            assert!(
                err["error"].as_str().unwrap().starts_with(
                    "Error validating args {\"command\": \"ls\",  for tool 'terminal': "
                ),
                "{err}"
            );
            assert!(
                evs.iter()
                    .any(|e| e["kind"] == "ObservationEvent" && e["tool_name"] == "finish")
            );
        }
    }
    assert_eq!(get(&server, "/health").await.0, 200);
    let (st, count) = get(&server, "/api/conversations/count").await;
    assert_eq!((st, count), (200, json!(runs.len())));
}

/// Threads of process `pid`.
fn threads(pid: i32) -> u64 {
    crate::common::proc::status_field(pid, "Threads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_threads_and_fds_stay_flat_across_failing_llm_calls() {
    let total: usize = std::env::var("LLM_FAULT_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    // calls per conversation: each conversation keeps its events (a message, two status
    // updates and an error per call), so the calls are spread over conversations that are
    // deleted once done; what a failing call leaves behind anywhere else would pile up
    const PER_CONVERSATION: usize = 100;
    let warm_up = 30.min(total / 2);
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let ws = ws.to_string_lossy().to_string();
    let server = tokio::task::block_in_place(|| Spawned::start(dir.path(), &env()));
    let pid = server.pid().as_raw();
    // failures that are not retried, so each run is one call: a 400, malformed JSON, no choices
    let fake = FakeLlm::start(|_, n| match n % 3 {
        0 => Reply::error(400, "bad request: invalid thing"),
        1 => body(200, "{\"choices\": [{\"message\": "),
        _ => Reply::json(200, &json!({"id": "x", "choices": []})),
    })
    .await;
    let fail_on = |id: String, i: usize| {
        let server = &server;
        async move {
            let (st, v) = post(
                server,
                &format!("/api/conversations/{id}/events"),
                &json!({"role": "user", "content": [{"type": "text", "text": format!("try {i}")}], "run": false}),
            )
            .await;
            assert_eq!(st, 200, "{v}");
            let (st, v) = post(server, &format!("/api/conversations/{id}/run"), &json!({})).await;
            assert_eq!(st, 500, "call {i}: {v}");
        }
    };
    let delete = |id: String| {
        let server = &server;
        async move {
            let r = super::crash::client()
                .delete(format!("{}/api/conversations/{id}", server.base()))
                .send()
                .await
                .expect("delete");
            assert_eq!(r.status().as_u16(), 200);
        }
    };
    let id = start(&server, &fake, json!({}), &ws, false).await;
    for i in 0..warm_up {
        fail_on(id.clone(), i).await;
    }
    delete(id).await;
    let (rss0, fds0, threads0) = (rss_kib(pid), fd_count(pid), threads(pid));
    let mut done = warm_up;
    while done < total {
        let id = start(&server, &fake, json!({}), &ws, false).await;
        let end = (done + PER_CONVERSATION).min(total);
        for i in done..end {
            fail_on(id.clone(), i).await;
        }
        delete(id).await;
        done = end;
    }
    assert_eq!(fake.calls().len(), total);
    assert_eq!(get(&server, "/health").await.0, 200);
    let fds1 = poll(Duration::from_secs(10), "descriptors back", || async {
        let n = fd_count(pid);
        (n <= fds0 + 2).then_some(n)
    })
    .await;
    // the server trims its heap after a deletion (src/memory.rs); a few MB of allocator slack
    // are allowed, a per-call leak (bodies, connections, tasks: at least a few KB each) is not
    let rss1 = poll(
        Duration::from_secs(10),
        "memory back to its level",
        || async {
            let n = rss_kib(pid);
            (n < rss0 + 6 * 1024).then_some(n)
        },
    )
    .await;
    // blocking-pool threads started under load go after 10 s idle (tokio's keep-alive): what
    // must not happen is a thread per call
    let threads1 = poll(Duration::from_secs(15), "threads back", || async {
        let n = threads(pid);
        (n <= threads0 + 4).then_some(n)
    })
    .await;
    eprintln!(
        "llm_faults: {total} failing calls; RSS {rss0} -> {rss1} KiB, fds {fds0} -> {fds1}, threads {threads0} -> {threads1}"
    );
}
