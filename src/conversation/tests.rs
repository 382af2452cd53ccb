//! Actor-level tests of the subscriber protocol and runs (no HTTP).

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::{Value, json};

use super::{ConversationHandle, Disconnect, EventBatch, RegistryHandle};
use crate::model::requests;
use crate::state::Activity;

/// Collects every frame and disconnect it receives.
struct Collector {
    frames: Arc<Mutex<Vec<Value>>>,
    batches: Arc<Mutex<Vec<usize>>>,
    disconnects: Arc<Mutex<Vec<u16>>>,
    capacity: usize,
    /// Blocks the arbiter thread on the first batch until released (a stalled subscriber).
    gate: Option<Mutex<mpsc::Receiver<()>>>,
}

impl Actor for Collector {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.capacity);
    }
}

impl Handler<EventBatch> for Collector {
    type Result = ();
    fn handle(&mut self, EventBatch(b): EventBatch, _: &mut Context<Self>) {
        if let Some(g) = self.gate.take()
            && let Ok(rx) = g.lock()
        {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
        self.batches.lock().unwrap().push(b.len());
        self.frames
            .lock()
            .unwrap()
            .extend(b.iter().map(|j| serde_json::from_str::<Value>(j).unwrap()));
    }
}

impl Handler<Disconnect> for Collector {
    type Result = ();
    fn handle(&mut self, d: Disconnect, _: &mut Context<Self>) {
        self.disconnects.lock().unwrap().push(d.code);
    }
}

struct Probe {
    frames: Arc<Mutex<Vec<Value>>>,
    batches: Arc<Mutex<Vec<usize>>>,
    disconnects: Arc<Mutex<Vec<u16>>>,
    addr: Addr<Collector>,
}

fn collector(
    capacity: usize,
    gate: Option<mpsc::Receiver<()>>,
    arbiter: Option<&ArbiterHandle>,
) -> Probe {
    let frames = Arc::new(Mutex::new(Vec::new()));
    let batches = Arc::new(Mutex::new(Vec::new()));
    let disconnects = Arc::new(Mutex::new(Vec::new()));
    let c = Collector {
        frames: frames.clone(),
        batches: batches.clone(),
        disconnects: disconnects.clone(),
        capacity,
        gate: gate.map(Mutex::new),
    };
    let addr = match arbiter {
        Some(a) => Collector::start_in_arbiter(a, move |_| c),
        None => c.start(),
    };
    Probe {
        frames,
        batches,
        disconnects,
        addr,
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A registry on `root` without a secret key or webhooks.
async fn registry_at(root: std::path::PathBuf) -> RegistryHandle {
    RegistryHandle::start(root, None, Arc::new(Activity::default()), None).await
}

/// A conversation whose LLM (a fake that keeps answering with text) finishes every run in one step.
async fn new_conversation(reg: &RegistryHandle, dir: &std::path::Path) -> ConversationHandle {
    let reply = json!({"id": "chatcmpl-t", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "Done."}}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}});
    // the fake keeps serving after its handle is dropped (its task lives on the test runtime)
    let fake =
        crate::llm::fake::FakeServer::start(vec![crate::llm::fake::Reply::json(200, &reply)]).await;
    let body = json!({"agent": {"llm": {"model": "openai/fake-model", "base_url": format!("{}/v1", fake.base), "api_key": "k", "num_retries": 0}},
        "workspace": {"working_dir": dir.join("ws").to_string_lossy()}});
    let req = requests::start_conversation(&body).unwrap();
    reg.start_conversation(req).await.unwrap().2
}

fn describe(v: &Value) -> String {
    match v["kind"].as_str() {
        Some("ConversationStateUpdateEvent") => format!(
            "state:{}={}",
            v["key"].as_str().unwrap(),
            if v["key"] == "full_state" || v["key"] == "stats" {
                "*".into()
            } else {
                v["value"].to_string()
            }
        ),
        Some(k) => k.to_string(),
        None => "?".into(),
    }
}

#[actix_rt::test]
async fn subscribe_snapshot_then_live_events_in_log_order() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry_at(tmp.path().join("convs")).await;
    let h = new_conversation(&reg, tmp.path()).await;
    h.send_message(
        requests::send_message(&json!({"content": [{"type": "text", "text": "hi"}]})).unwrap(),
    )
    .await
    .unwrap();

    let live = collector(64, None, None);
    h.subscribe(
        live.addr.clone().recipient(),
        Some(live.addr.clone().recipient()),
        false,
    )
    .await
    .unwrap();
    let replay = collector(64, None, None);
    h.subscribe(replay.addr.clone().recipient(), None, true)
        .await
        .unwrap();

    h.run().await.unwrap();
    h.pause().await.unwrap();
    wait_until("frames", || live.frames.lock().unwrap().len() >= 7).await;
    let seq: Vec<String> = live.frames.lock().unwrap().iter().map(describe).collect();
    assert_eq!(
        seq,
        [
            "state:full_state=*",
            "state:execution_status=\"running\"",
            "state:stats=*",
            "MessageEvent",
            "state:execution_status=\"finished\"",
            "state:full_state=*",
            "state:full_state=*", // pause on a finished conversation changes nothing but publishes
        ]
        .map(String::from)
        .to_vec()
    );
    // the replay subscriber got the snapshot and the whole backlog as one first batch
    wait_until("replay", || !replay.batches.lock().unwrap().is_empty()).await;
    assert_eq!(replay.batches.lock().unwrap()[0], 3);
    let first: Vec<String> = replay
        .frames
        .lock()
        .unwrap()
        .iter()
        .take(3)
        .map(describe)
        .collect();
    assert_eq!(
        first,
        ["state:full_state=*", "SystemPromptEvent", "MessageEvent"]
    );
    // full_state carries the state without nulls, secrets masked
    let fs = live.frames.lock().unwrap()[0]["value"].clone();
    assert_eq!(fs["agent"]["llm"]["api_key"], "**********");
    assert!(fs.get("security_analyzer").is_none());
    assert!(fs["agent"]["llm"].get("aws_region_name").is_none());
    assert!(live.disconnects.lock().unwrap().is_empty());
    reg.shutdown().await;
}

#[actix_rt::test]
async fn a_stalled_subscriber_is_dropped_and_told() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry_at(tmp.path().join("convs")).await;
    let h = new_conversation(&reg, tmp.path()).await;
    let arbiter = Arbiter::new();
    let (release, gate) = mpsc::channel();
    let slow = collector(2, Some(gate), Some(&arbiter.handle()));
    h.subscribe(
        slow.addr.clone().recipient(),
        Some(slow.addr.clone().recipient()),
        false,
    )
    .await
    .unwrap();
    // the first batch blocks the subscriber's thread; a few more fill its mailbox
    for i in 0..6 {
        h.send_message(
            requests::send_message(
                &json!({"content": [{"type": "text", "text": format!("m{i}")}]}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    }
    release.send(()).unwrap();
    wait_until("disconnect", || {
        !slow.disconnects.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        *slow.disconnects.lock().unwrap(),
        vec![super::SLOW_SUBSCRIBER_CODE]
    );
    // dropped: later events do not arrive
    let n = slow.frames.lock().unwrap().len();
    h.send_message(requests::send_message(&json!({"content": []})).unwrap())
        .await
        .unwrap();
    h.info().await.unwrap();
    assert_eq!(slow.frames.lock().unwrap().len(), n);
    arbiter.stop();
    reg.shutdown().await;
}

#[actix_rt::test]
async fn second_waiting_run_while_running_is_409() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry_at(tmp.path().join("convs")).await;
    let h = new_conversation(&reg, tmp.path()).await;
    // both messages are queued before the first step can complete
    let a = h.addr().send(super::actor::Run { wait: true });
    let b = h.addr().send(super::actor::Run { wait: true });
    let (a, b) = futures_util::join!(a, b);
    let first = a.unwrap().unwrap().await.unwrap();
    assert!(first.is_ok());
    match b.unwrap() {
        Err(e) => assert_eq!(
            e.to_string(),
            format!("409 Conflict: {}", super::actor::ALREADY_RUNNING)
        ),
        Ok(_) => panic!("the second run should be refused while the first is active"),
    }
    reg.shutdown().await;
}

const A1: &str = "0b5f0d4e-6a44-4a57-9a43-6c1f7a3c0001";
const A2: &str = "0b5f0d4e-6a44-4a57-9a43-6c1f7a3c0002";

/// DEVIATIONS #2: rejecting while waiting for confirmation rejects every pending action.
#[actix_rt::test]
async fn reject_pending_actions() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("convs");
    let reg = registry_at(root.clone()).await;
    let h = new_conversation(&reg, tmp.path()).await;
    let action = |id: &str, call: &str| -> crate::model::Event {
        serde_json::from_value(json!({
            "kind": "ActionEvent", "id": id, "timestamp": crate::model::wire::event_timestamp_now(), "source": "agent",
            "thought": [], "thinking_blocks": [], "action": {"kind": "TerminalAction", "command": "ls", "is_input": false, "timeout": null, "reset": false},
            "tool_name": "terminal", "tool_call_id": call,
            "tool_call": {"id": call, "name": "terminal", "arguments": "{}", "origin": "completion"},
            "llm_response_id": "r1", "security_risk": "LOW"
        }))
        .unwrap()
    };
    h.append(vec![action(A1, "c1"), action(A2, "c2")])
        .await
        .unwrap();
    let id = h.id();
    reg.shutdown().await;
    // the run stopped waiting for confirmation (only the agent loop can get there)
    let base = root.join(id.simple().to_string()).join("base_state.json");
    let text = std::fs::read_to_string(&base).unwrap().replace(
        "\"execution_status\": \"idle\"",
        "\"execution_status\": \"waiting_for_confirmation\"",
    );
    std::fs::write(&base, text).unwrap();

    let reg = registry_at(root).await;
    let h = reg.get(id).await.unwrap().unwrap();
    assert_eq!(
        h.state().await.unwrap().execution_status,
        crate::model::ExecutionStatus::WaitingForConfirmation
    );
    h.respond_to_confirmation(false, "not now".into())
        .await
        .unwrap();
    let tail: Vec<Value> = h
        .history()
        .await
        .unwrap()
        .iter()
        .skip(3)
        .map(|e| serde_json::from_str::<Value>(&e.to_api_json()).unwrap())
        .collect();
    assert_eq!(
        tail.len(),
        3,
        "{:?}",
        h.history()
            .await
            .unwrap()
            .iter()
            .map(|e| e.kind().to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        (tail[0]["key"].clone(), tail[0]["value"].clone()),
        (json!("execution_status"), json!("idle"))
    );
    for (e, (a, c)) in tail[1..].iter().zip([(A1, "c1"), (A2, "c2")]) {
        assert_eq!(e["kind"], "UserRejectObservation");
        assert_eq!(
            (
                e["action_id"].as_str(),
                e["tool_call_id"].as_str(),
                e["rejection_reason"].as_str()
            ),
            (Some(a), Some(c), Some("not now"))
        );
    }
    assert_eq!(
        h.state().await.unwrap().execution_status,
        crate::model::ExecutionStatus::Idle
    );
    reg.shutdown().await;
}

/// DEVIATIONS #6: stats survive a restart (the reference resets them).
#[actix_rt::test]
async fn stats_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("convs");
    let reg = RegistryHandle::start(
        root.clone(),
        Some("key"),
        Arc::new(Activity::default()),
        None,
    )
    .await;
    let h = new_conversation(&reg, tmp.path()).await;
    let mut stats = h.state().await.unwrap().stats;
    let m = stats.usage_to_metrics.get_mut("default").unwrap();
    m.accumulated_cost = 0.25;
    m.token_usages.push(crate::model::conversation::TokenUsage {
        model: "m".into(),
        prompt_tokens: 10,
        ..Default::default()
    });
    h.update_stats(stats.clone()).await.unwrap();
    let id = h.id();
    let info_before = h.info().await.unwrap();
    reg.shutdown().await;

    let reg = RegistryHandle::start(root, Some("key"), Arc::new(Activity::default()), None).await;
    let h = reg.get(id).await.unwrap().unwrap();
    assert_eq!(h.state().await.unwrap().stats, stats);
    assert_eq!(h.info().await.unwrap(), info_before);
    let last = h.history().await.unwrap().pop().unwrap();
    let v: Value = serde_json::from_str(&last.to_api_json()).unwrap();
    assert_eq!(v["key"], "stats");
    assert_eq!(
        v["value"]["usage_to_metrics"]["default"]["accumulated_cost"],
        0.25
    );
    assert!(
        v["value"]["usage_to_metrics"]["default"]
            .get("token_usages")
            .is_none(),
        "snapshot form"
    );
    reg.shutdown().await;
}

/// `settle_files` (what the trajectory download waits for) returns only once the files
/// queued on the conversation's backlog are written, however many are queued.
#[actix_rt::test]
async fn settle_files_waits_for_the_queued_event_files() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry_at(tmp.path().join("convs")).await;
    let h = new_conversation(&reg, tmp.path()).await;
    let backlog = h.backlog().await.unwrap();
    let dir = tmp.path().join("convs").join(h.id().simple().to_string());
    std::fs::create_dir_all(dir.join("events")).unwrap();
    // 6,000 files of 1 KB in batches of 60: when the last push returns, up to the backlog's
    // limit (thousands of file creations) is still queued
    let page = vec![b'x'; 1 << 10];
    let names: Vec<String> = (0..6000)
        .map(|i| format!("events/zz-{i:05}.json"))
        .collect();
    let (b, n, p) = (backlog.clone(), names.clone(), page.clone());
    tokio::task::spawn_blocking(move || {
        for batch in n.chunks(60) {
            b.push(batch.iter().map(|name| (name.clone(), p.clone())).collect());
        }
    })
    .await
    .unwrap();
    h.settle_files().await.unwrap();
    for n in &names {
        let len = std::fs::metadata(dir.join(n)).map(|m| m.len()).unwrap_or(0);
        assert_eq!(
            len,
            page.len() as u64,
            "{n} written before settle_files returned"
        );
    }
    reg.shutdown().await;
}

#[actix_rt::test]
async fn json_history_and_append() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry_at(tmp.path().join("convs")).await;
    let h = new_conversation(&reg, tmp.path()).await;
    let ev = json!({"kind": "AgentErrorEvent", "id": crate::model::wire::new_event_id(), "timestamp": crate::model::wire::event_timestamp_now(),
        "source": "agent", "tool_name": "x", "tool_call_id": "c", "error": "boom"});
    h.append_json(vec![ev.clone()]).await.unwrap();
    assert!(h.append_json(vec![json!({"kind": 5})]).await.is_err());
    let hist = h.history_json().await.unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(serde_json::from_str::<Value>(&hist[1]).unwrap(), ev);
    reg.shutdown().await;
}

#[actix_rt::test]
async fn caps_on_subscribers_conversations_and_message_size() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = super::Limits {
        max_conversations: 2,
        max_subscribers: 2,
        max_event_bytes: 100,
    };
    let reg = RegistryHandle::start_limited(
        tmp.path().join("convs"),
        None,
        Arc::new(Activity::default()),
        None,
        limits,
    )
    .await;
    let h = new_conversation(&reg, tmp.path()).await;

    // subscribers: the third is refused and gets nothing; a slot frees on unsubscribe
    let probes: Vec<Probe> = (0..3).map(|_| collector(64, None, None)).collect();
    let first = h
        .subscribe(probes[0].addr.clone().recipient(), None, false)
        .await
        .unwrap();
    h.subscribe(probes[1].addr.clone().recipient(), None, false)
        .await
        .unwrap();
    let refused = h
        .subscribe(probes[2].addr.clone().recipient(), None, false)
        .await
        .unwrap_err();
    assert_eq!(
        actix_web::ResponseError::status_code(&refused).as_u16(),
        429,
        "{refused}"
    );
    // a subscription made while the start-up publish is still staged completes after its
    // commit; one cancelled before that gets nothing, so the first must have its snapshot
    wait_until("the first snapshots", || {
        probes[..2]
            .iter()
            .all(|p| !p.frames.lock().unwrap().is_empty())
    })
    .await;
    h.unsubscribe(first);
    h.subscribe(probes[2].addr.clone().recipient(), None, false)
        .await
        .unwrap();
    wait_until("snapshots", || {
        probes.iter().all(|p| !p.frames.lock().unwrap().is_empty())
    })
    .await;

    // message size: the JSON of the content counts, a refused message appends nothing
    let message = |text: &str| {
        requests::send_message(&json!({"content": [{"type": "text", "text": text}]})).unwrap()
    };
    let before = h.history().await.unwrap().len();
    let e = h.send_message(message(&"x".repeat(100))).await.unwrap_err();
    assert_eq!(actix_web::ResponseError::status_code(&e).as_u16(), 413);
    assert_eq!(h.history().await.unwrap().len(), before);
    h.send_message(message("small")).await.unwrap();

    // conversations: a second one fits, a third is refused, the first can still be found
    new_conversation(&reg, tmp.path()).await;
    let body = json!({"agent": {"llm": {"model": "m"}}, "workspace": {"working_dir": tmp.path().join("w").to_string_lossy()}});
    let e = reg
        .start_conversation(requests::start_conversation(&body).unwrap())
        .await
        .unwrap_err();
    assert_eq!(actix_web::ResponseError::status_code(&e).as_u16(), 429);
    assert_eq!(reg.count(None).await.unwrap(), 2);
    let mut again = json!({"conversation_id": h.id().to_string()});
    again["agent"] = body["agent"].clone();
    again["workspace"] = body["workspace"].clone();
    let (_, created, _) = reg
        .start_conversation(requests::start_conversation(&again).unwrap())
        .await
        .unwrap();
    assert!(!created);
    reg.shutdown().await;
}

fn text_message(text: &str) -> crate::model::SendMessageRequest {
    requests::send_message(&json!({"content": [{"type": "text", "text": text}]})).unwrap()
}

/// The texts of the user messages among `events` (API JSON values), in order; with `first_word`
/// only each text's first word (the tag of a big message).
fn message_texts<'a>(events: impl IntoIterator<Item = &'a Value>, first_word: bool) -> Vec<String> {
    events
        .into_iter()
        .filter(|v| v["kind"] == "MessageEvent")
        .filter_map(|v| v["llm_message"]["content"][0]["text"].as_str())
        .map(|t| match first_word {
            true => t.split(' ').next().unwrap_or_default().to_string(),
            false => t.to_string(),
        })
        .collect()
}

/// The texts of the user messages in a conversation's log, in log order.
async fn logged_texts(h: &ConversationHandle, first_word: bool) -> Vec<String> {
    let events: Vec<Value> = h
        .history_json()
        .await
        .unwrap()
        .iter()
        .map(|j| serde_json::from_str::<Value>(j).unwrap())
        .collect();
    message_texts(&events, first_word)
}

/// Messages that arrive while a journal write is in flight form the next batch, written when
/// it completes: every one is acknowledged, sent once to a subscriber in log order, and found
/// again after a restart.
#[actix_rt::test]
async fn messages_sent_during_a_write_are_all_acknowledged_sent_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("convs");
    let reg = registry_at(root.clone()).await;
    let h = new_conversation(&reg, tmp.path()).await;
    let live = collector(4096, None, None);
    h.subscribe(live.addr.clone().recipient(), None, false)
        .await
        .unwrap();
    // 16 senders, each waiting for its acknowledgement before the next (like HTTP clients):
    // messages keep arriving while earlier batches are being written
    let texts: Vec<String> = (0..16 * 20).map(|i| format!("m{i}")).collect();
    let senders = texts.chunks(20).map(|chunk| {
        let h = h.clone();
        async move {
            for t in chunk {
                h.send_message(text_message(t)).await?;
            }
            Ok::<(), crate::error::ApiError>(())
        }
    });
    let acks = tokio::time::timeout(
        Duration::from_secs(30),
        futures_util::future::join_all(senders),
    )
    .await
    .expect("every message acknowledged");
    assert!(acks.iter().all(Result::is_ok), "{acks:?}");

    let logged = logged_texts(&h, false).await;
    let mut sorted = logged.clone();
    sorted.sort();
    let mut expected = texts.clone();
    expected.sort();
    assert_eq!(sorted, expected, "each message once in the log");
    wait_until("live frames", || {
        live.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["kind"] == "MessageEvent")
            .count()
            >= texts.len()
    })
    .await;
    let sent = message_texts(live.frames.lock().unwrap().iter(), false);
    assert_eq!(sent, logged, "sent once each, in log order");

    let id = h.id();
    reg.shutdown().await;
    let reg = registry_at(root).await;
    let h = reg.get(id).await.unwrap().unwrap();
    assert_eq!(
        logged_texts(&h, false).await,
        logged,
        "the same log after a restart"
    );
    reg.shutdown().await;
}

/// A message handled while the previous batch is being written is the next batch: it is
/// written (and acknowledged) once that write completes, with nothing else to push it.
#[actix_rt::test]
async fn a_message_staged_during_a_write_is_written_when_it_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry_at(tmp.path().join("convs")).await;
    let h = new_conversation(&reg, tmp.path()).await;
    for round in 0..3 {
        // a few MB take milliseconds to append and sync; the second message is handled
        // right after the first one's reply, while that write runs
        let big = format!("big{round} {}", "x".repeat(4 << 20));
        let first = h
            .addr()
            .send(super::actor::SendMessage(text_message(&big)))
            .await
            .unwrap();
        let second = h
            .addr()
            .send(super::actor::SendMessage(text_message(&format!(
                "small{round}"
            ))))
            .await
            .unwrap();
        let acks = tokio::time::timeout(Duration::from_secs(30), async {
            (first.await, second.await)
        })
        .await
        .expect("both acknowledged");
        assert!(acks.0.is_ok() && acks.1.is_ok());
    }
    let texts = logged_texts(&h, true).await;
    assert_eq!(
        texts,
        ["big0", "small0", "big1", "small1", "big2", "small2"]
    );
    reg.shutdown().await;
}

/// A read that follows a change sees it, also while the change's write is still in flight.
#[actix_rt::test]
async fn a_read_after_a_change_sees_it_during_its_write() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = registry_at(tmp.path().join("convs")).await;
    let h = new_conversation(&reg, tmp.path()).await;
    let all = crate::store::event_log::EventFilter::default;
    let before = h.count_events(all()).await.unwrap();
    for round in 1..=3 {
        // handled (its write of a few MB now running), then read at once
        let ack = h
            .addr()
            .send(super::actor::SendMessage(text_message(
                &"x".repeat(4 << 20),
            )))
            .await
            .unwrap();
        assert_eq!(h.count_events(all()).await.unwrap(), before + round);
        let history = h.history_json().await.unwrap();
        assert_eq!(history.len(), before + round);
        assert!(ack.await.is_ok());
    }
    reg.shutdown().await;
}

/// A delete or a shutdown that arrives while a write is in flight takes it over: that write's
/// message is acknowledged once it is written, a deleted directory stays deleted, and what a
/// shutdown acknowledged is there after a restart.
#[actix_rt::test]
async fn delete_and_shutdown_during_a_write() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("convs");
    let reg = registry_at(root.clone()).await;
    let big = |tag: &str| text_message(&format!("{tag} {}", "x".repeat(4 << 20)));
    for round in 0..3 {
        let h = new_conversation(&reg, tmp.path()).await;
        let dir = root.join(h.id().simple().to_string());
        // handled (its reply is the acknowledgement to come), its write now running
        let ack = h
            .addr()
            .send(super::actor::SendMessage(big("deleted")))
            .await
            .unwrap();
        let more = futures_util::future::join_all(
            (0..50).map(|i| h.send_message(text_message(&format!("r{round}-{i}")))),
        );
        let (ack, _, deleted) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(30), ack),
            tokio::time::timeout(Duration::from_secs(30), more),
            reg.delete(h.id())
        );
        assert!(
            matches!(ack, Ok(Ok(()))),
            "round {round}: the write in flight is acknowledged: {ack:?}"
        );
        assert!(deleted.unwrap());
        assert!(!dir.exists(), "round {round}: the directory is gone");
    }

    let h = new_conversation(&reg, tmp.path()).await;
    let id = h.id();
    let ack = h
        .addr()
        .send(super::actor::SendMessage(big("kept")))
        .await
        .unwrap();
    let texts: Vec<String> = (0..50).map(|i| format!("s{i}")).collect();
    let sends =
        futures_util::future::join_all(texts.iter().map(|t| h.send_message(text_message(t))));
    let (ack, answers, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(30), ack),
        tokio::time::timeout(Duration::from_secs(30), sends),
        reg.shutdown()
    );
    assert!(
        matches!(ack, Ok(Ok(()))),
        "the write in flight is acknowledged: {ack:?}"
    );
    let answers = answers.expect("every message answered");
    let reg = registry_at(root).await;
    let h = reg.get(id).await.unwrap().unwrap();
    let kept = logged_texts(&h, true).await;
    assert_eq!(kept.first().map(String::as_str), Some("kept"));
    for (t, a) in texts.iter().zip(&answers) {
        if a.is_ok() {
            assert!(kept.contains(t), "{t} was acknowledged, so it is kept");
        }
    }
    reg.shutdown().await;
}
