//! Crash safety: the real binary is killed with SIGKILL at pseudo-random (seeded) points while an
//! agent runs (during LLM calls, during `sleep` tool calls, while events are written), and
//! restarted on the same directory each time. After every restart: every event a WebSocket
//! client received before the kill is on disk and served unchanged, every event file parses, the
//! conversation loads, every tool call has its closing observation, and at the end the
//! conversation runs to `finished`.
//!
//! The number of kills is `CRASH_KILLS` (default 50, the figure; about 40 s), the seed
//! `CRASH_SEED` (default 10).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::common::fake_llm::{FakeLlm, Reply, chat, chat_call, chat_finish};
use crate::common::poll;
use crate::common::proc::Spawned;

pub(super) const KEY: &str = "crash-test-key";
const WAIT: Duration = Duration::from_secs(60);
/// Tool calls per user message before the fake LLM finishes.
const STEPS: usize = 3;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(super) fn client() -> reqwest::Client {
    crate::common::keyed_client(KEY)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub(super) async fn get(s: &Spawned, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{}{path}", s.base()))
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

pub(super) async fn post(s: &Spawned, path: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(format!("{}{path}", s.base()))
        .json(body)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

pub(super) async fn events(s: &Spawned, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let path = match &page {
            Some(p) => format!("/api/conversations/{id}/events/search?limit=100&page_id={p}"),
            None => format!("/api/conversations/{id}/events/search?limit=100"),
        };
        let (st, v) = get(s, &path).await;
        assert_eq!(st, 200, "{v}");
        out.extend(v["items"].as_array().cloned().unwrap_or_default());
        match v["next_page_id"].as_str() {
            Some(p) => page = Some(p.to_string()),
            None => return out,
        }
    }
}

/// The fake LLM: stateless, so it scripts the same run after any restart. Since the last user
/// message it asks for `STEPS` terminal calls (`sleep 0.2`), then `finish`. Every other reply is
/// held a little so kills also land during LLM calls.
async fn fake_llm() -> FakeLlm {
    FakeLlm::start(|req, n| {
        if !req.has_tools() {
            return Reply::error(400, "no titles here");
        }
        let msgs = req.body["messages"].as_array().cloned().unwrap_or_default();
        let since_user = msgs
            .iter()
            .rev()
            .take_while(|m| m["role"] != "user")
            .filter(|m| m["role"] == "tool")
            .count();
        let reply = if since_user < STEPS {
            chat_call(
                n,
                "terminal",
                json!({"command": format!("sleep 0.2; echo step {n}"), "security_risk": "LOW"}),
            )
        } else if since_user == STEPS {
            chat_finish(n, "done")
        } else {
            chat(&format!("chatcmpl-{n}"), json!("Done."), Vec::new())
        };
        if n % 2 == 0 {
            reply.delayed(Duration::from_millis(150))
        } else {
            reply
        }
    })
    .await
}

/// Collects every frame of the conversation's event socket until it breaks.
fn listen(s: &Spawned, id: &str) -> (Arc<Mutex<Vec<Value>>>, tokio::task::JoinHandle<()>) {
    let url = format!(
        "ws://127.0.0.1:{}/sockets/events/{id}?session_api_key={KEY}&resend_all=true",
        s.port
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
            return;
        };
        while let Some(Ok(msg)) = socket.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg
                && let Ok(v) = serde_json::from_str::<Value>(&t)
            {
                out.lock().expect("lock").push(v);
            }
        }
    });
    (seen, task)
}

/// Every `event-*.json` file of every conversation parses as a JSON object with an id.
fn check_files(dir: &Path) -> usize {
    let root = dir.join("workspace/conversations");
    let mut n = 0;
    for conv in std::fs::read_dir(&root)
        .expect("conversations dir")
        .flatten()
    {
        if !conv.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(conv.path().join("events"))
            .expect("events dir")
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("event-") && name.ends_with(".json")) {
                continue;
            }
            let bytes = std::fs::read(f.path()).expect("read event file");
            let v: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{name} does not parse ({e}): {bytes:?}"));
            assert!(v["id"].is_string(), "{name}: {v}");
            n += 1;
        }
    }
    n
}

/// Every action has exactly one closing observation (or error / rejection) after it.
fn check_closed(evs: &[Value]) {
    let mut open: HashMap<String, usize> = HashMap::new();
    for e in evs {
        match e["kind"].as_str().unwrap_or_default() {
            "ActionEvent" => {
                open.insert(e["id"].as_str().unwrap_or_default().to_string(), 0);
            }
            "ObservationEvent" | "AgentErrorEvent" | "UserRejectObservation" => {
                if let Some(a) = e["action_id"].as_str()
                    && let Some(c) = open.get_mut(a)
                {
                    *c += 1;
                }
            }
            _ => {}
        }
    }
    for (action, closings) in open {
        assert_eq!(closings, 1, "action {action} has {closings} closing events");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_agent_runs_loses_nothing_sent() {
    let kills = env_num("CRASH_KILLS", 50);
    let seed = env_num("CRASH_SEED", 10);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let fake = fake_llm().await;
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let env = [
        ("OH_SESSION_API_KEYS_0", KEY),
        ("OH_SECRET_KEY", "crash-key"),
    ];
    let started = Instant::now();

    let mut server = Spawned::start(dir.path(), &env);
    let (st, conv) = post(
        &server,
        "/api/conversations",
        &json!({
            "agent": {"kind": "Agent", "tools": [{"name": "terminal"}],
                "llm": {"model": "openai/fake-model", "base_url": fake.v1(), "api_key": "sk-fake",
                    "usage_id": "agent", "num_retries": 0}},
            "workspace": {"working_dir": ws.to_string_lossy()},
        }),
    )
    .await;
    assert_eq!(st, 201, "{conv}");
    let id = conv["id"].as_str().unwrap().to_string();
    let mut delivered: HashMap<String, Value> = HashMap::new();

    for round in 0..kills {
        let (seen, task) = listen(&server, &id);
        let (st, v) = post(
            &server,
            &format!("/api/conversations/{id}/events"),
            &json!({"role": "user", "content": [{"type": "text", "text": format!("round {round}")}], "run": true}),
        )
        .await;
        assert_eq!(st, 200, "round {round}: {v}");
        // a run is ~4 LLM calls and 3 × 0.2 s tool calls
        let delay = Duration::from_millis(rng.gen_range(0..1400));
        tokio::time::sleep(delay).await;
        nix::sys::signal::kill(server.pid(), nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
        tokio::task::block_in_place(|| server.child.wait()).expect("wait");
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        for e in seen.lock().unwrap().iter() {
            if e["key"] == "full_state" {
                continue;
            }
            if let Some(eid) = e["id"].as_str() {
                delivered.insert(eid.to_string(), e.clone());
            }
        }

        server = tokio::task::block_in_place(|| Spawned::start(dir.path(), &env));
        check_files(dir.path());
        let (st, info) = get(&server, &format!("/api/conversations/{id}")).await;
        assert_eq!(st, 200, "round {round}: {info}");
        let evs = events(&server, &id).await;
        let stored: HashMap<&str, &Value> = evs
            .iter()
            .filter_map(|e| Some((e["id"].as_str()?, e)))
            .collect();
        for (eid, e) in &delivered {
            let Some(on_disk) = stored.get(eid.as_str()) else {
                panic!("round {round} (kill after {delay:?}): event sent but lost: {e}");
            };
            assert_eq!(*on_disk, e, "round {round}: event changed");
        }
        check_closed(&evs);
    }

    // one last run, not killed, ends in finished
    let (st, v) = post(
        &server,
        &format!("/api/conversations/{id}/events"),
        &json!({"role": "user", "content": [{"type": "text", "text": "last round"}], "run": true}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let status = poll(WAIT, "the last run ends", || async {
        let (_, info) = get(&server, &format!("/api/conversations/{id}")).await;
        let st = info["execution_status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ["finished", "error", "stuck"]
            .contains(&st.as_str())
            .then_some(st)
    })
    .await;
    assert_eq!(status, "finished", "log:\n{}", server.log());
    let evs = events(&server, &id).await;
    check_closed(&evs);
    let files = check_files(dir.path());
    let interrupted = evs
        .iter()
        .filter(|e| {
            e["kind"] == "ObservationEvent"
                && e["observation"]["content"][0]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("did not complete"))
        })
        .count();
    eprintln!(
        "crash: {kills} kills (seed {seed}), {} events delivered before kills, {files} event files, \
         {interrupted} interrupted tool calls closed, {:?}",
        delivered.len(),
        started.elapsed()
    );
    assert!(!delivered.is_empty());
}
