//! The agent loop through real conversations and a scripted fake LLM: a 20-step task, run
//! semantics (messages while running, pause, confirmation, stuck, max iterations, errors),
//! secrets, restart in the middle of a run, delete while running, both provider formats with
//! retries and token accounting, and the DEVIATIONS fixes #1 #2 #3 #4 #16.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fake_llm::{FakeLlm, Reply, anthropic, call, chat, chat_call, chat_finish};
use crate::common::{TestServer, poll};

const WAIT: Duration = Duration::from_secs(60);

fn llm(base: &str) -> Value {
    json!({"model": "openai/fake-model", "base_url": base, "api_key": "sk-fake", "usage_id": "agent", "num_retries": 0})
}

fn agent(llm: Value) -> Value {
    json!({"kind": "Agent", "llm": llm,
        "tools": [{"name": "terminal"}, {"name": "file_editor"}, {"name": "task_tracker"}]})
}

fn workspace(s: &TestServer) -> String {
    let ws = s.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    ws.canonicalize().unwrap().to_string_lossy().into_owned()
}

/// Starts a conversation with `llm`; `extra` fields are merged into the start request.
async fn start(s: &TestServer, llm: Value, extra: Value) -> String {
    let mut body = json!({"agent": agent(llm), "workspace": {"working_dir": workspace(s)}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (st, info) = s.post_json("/api/conversations", &body).await;
    assert_eq!(st, 201, "{info}");
    info["id"].as_str().unwrap().to_string()
}

fn message(text: &str, run: bool) -> Value {
    json!({"role": "user", "content": [{"type": "text", "text": text}], "run": run})
}

async fn send(s: &TestServer, id: &str, text: &str, run: bool) {
    let (st, v) = s
        .post_json(
            &format!("/api/conversations/{id}/events"),
            &message(text, run),
        )
        .await;
    assert_eq!(st, 200, "{v}");
}

async fn post(s: &TestServer, path: &str, body: Value) -> (u16, Value) {
    s.post_json(path, &body).await
}

async fn events(s: &TestServer, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let path = match &page {
            Some(p) => format!("/api/conversations/{id}/events/search?limit=100&page_id={p}"),
            None => format!("/api/conversations/{id}/events/search?limit=100"),
        };
        let (st, v) = s.get_json(&path).await;
        assert_eq!(st, 200, "{v}");
        out.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next_page_id"].as_str() {
            Some(p) => page = Some(p.to_string()),
            None => return out,
        }
    }
}

async fn status(s: &TestServer, id: &str) -> String {
    s.get_json(&format!("/api/conversations/{id}")).await.1["execution_status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn wait_status(s: &TestServer, id: &str, wanted: &[&str]) -> String {
    poll(WAIT, &format!("status in {wanted:?}"), || async {
        let st = status(s, id).await;
        wanted.contains(&st.as_str()).then_some(st)
    })
    .await
}

/// `Kind` or `Kind:tool` or `state:key=value` per event, stats updates left out.
fn seq(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .filter(|e| e["key"] != "stats")
        .map(|e| match e["kind"].as_str().unwrap_or_default() {
            "ActionEvent" | "ObservationEvent" | "AgentErrorEvent" | "UserRejectObservation" => {
                format!(
                    "{}:{}",
                    e["kind"].as_str().unwrap(),
                    e["tool_name"].as_str().unwrap()
                )
            }
            "ConversationStateUpdateEvent" => {
                format!("state:{}={}", e["key"].as_str().unwrap(), e["value"])
            }
            "MessageEvent" => format!("MessageEvent:{}", e["source"].as_str().unwrap()),
            k => k.to_string(),
        })
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn obs_text(e: &Value) -> String {
    e["observation"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["text"].as_str())
        .collect()
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(marker)
                })
                .unwrap_or(false)
        })
        .count()
}

#[tokio::test]
async fn twenty_step_task_builds_tests_and_fixes_a_project() {
    let s = TestServer::start();
    let ws = workspace(&s);
    let p = format!("{ws}/proj");
    let calc = format!("{p}/calc.sh");
    let steps: Vec<(&str, Value)> = vec![
        (
            "task_tracker",
            json!({"command": "plan", "task_list": [
            {"title": "Write calc.sh", "status": "in_progress"}, {"title": "Write the tests"}, {"title": "Make the tests pass"}], "security_risk": "LOW"}),
        ),
        (
            "terminal",
            json!({"command": format!("mkdir -p {p}"), "security_risk": "LOW"}),
        ),
        (
            "file_editor",
            json!({"command": "create", "path": calc,
            "file_text": "add() { echo $(( $1 + $2 )); }\nsub() { echo $(( $1 + $2 )); }\n", "security_risk": "MEDIUM"}),
        ),
        (
            "file_editor",
            json!({"command": "create", "path": format!("{p}/test.sh"),
            "file_text": ". ./calc.sh\nfail=0\n[ \"$(add 2 3)\" = 5 ] || { echo 'add failed'; fail=1; }\n[ \"$(sub 5 3)\" = 2 ] || { echo 'sub failed'; fail=1; }\n[ $fail = 0 ] && echo 'all tests passed'\nexit $fail\n",
            "security_risk": "MEDIUM"}),
        ),
        (
            "terminal",
            json!({"command": format!("cd {p} && sh test.sh"), "security_risk": "LOW"}),
        ),
        (
            "think",
            json!({"thought": "sub adds instead of subtracting"}),
        ),
        (
            "file_editor",
            json!({"command": "view", "path": calc, "security_risk": "LOW"}),
        ),
        (
            "file_editor",
            json!({"command": "str_replace", "path": calc, "old_str": "sub() { echo $(( $1 + $2 )); }",
            "new_str": "sub() { echo $(( $1 - $2 )); }", "security_risk": "MEDIUM"}),
        ),
        (
            "terminal",
            json!({"command": "sh test.sh", "security_risk": "LOW"}),
        ),
        (
            "task_tracker",
            json!({"command": "plan", "task_list": [
            {"title": "Write calc.sh", "status": "done"}, {"title": "Write the tests", "status": "done"},
            {"title": "Make the tests pass", "status": "in_progress", "notes": "sub fixed"}], "security_risk": "LOW"}),
        ),
        (
            "file_editor",
            json!({"command": "insert", "path": calc, "insert_line": 0, "new_str": "# tiny calculator", "security_risk": "MEDIUM"}),
        ),
        (
            "file_editor",
            json!({"command": "view", "path": calc, "view_range": [1, 2], "security_risk": "LOW"}),
        ),
        ("terminal", json!({"command": "ls", "security_risk": "LOW"})),
        (
            "file_editor",
            json!({"command": "undo_edit", "path": calc, "security_risk": "MEDIUM"}),
        ),
        (
            "terminal",
            json!({"command": "cat calc.sh", "security_risk": "LOW"}),
        ),
        (
            "task_tracker",
            json!({"command": "view", "security_risk": "LOW"}),
        ),
        (
            "terminal",
            json!({"command": "sh test.sh && echo ok-again", "security_risk": "LOW"}),
        ),
        (
            "file_editor",
            json!({"command": "create", "path": format!("{p}/README.md"), "file_text": "calc: add and sub\n", "security_risk": "MEDIUM"}),
        ),
        (
            "task_tracker",
            json!({"command": "plan", "task_list": [
            {"title": "Write calc.sh", "status": "done"}, {"title": "Write the tests", "status": "done"},
            {"title": "Make the tests pass", "status": "done"}], "security_risk": "LOW"}),
        ),
        ("finish", json!({"message": "calc.sh works and is tested"})),
    ];
    assert_eq!(steps.len(), 20);
    let replies: Vec<Reply> = steps
        .iter()
        .enumerate()
        .map(|(i, (tool, args))| chat_call(i, tool, args.clone()))
        .collect();
    let fake = FakeLlm::scripted(replies).await;
    let id = start(
        &s,
        llm(&fake.v1()),
        json!({"initial_message": message("Build a tiny tested calculator in proj/", true)}),
    )
    .await;
    assert_eq!(
        wait_status(&s, &id, &["finished", "error", "stuck"]).await,
        "finished"
    );
    assert_eq!(fake.calls().len(), 20);

    // files on disk
    assert_eq!(
        std::fs::read_to_string(&calc).unwrap(),
        "add() { echo $(( $1 + $2 )); }\nsub() { echo $(( $1 - $2 )); }\n"
    );
    assert_eq!(
        std::fs::read_to_string(format!("{p}/README.md")).unwrap(),
        "calc: add and sub\n"
    );
    let conv_dir = s.config.conversations_path.join(id.replace('-', ""));
    let tasks: Value =
        serde_json::from_str(&std::fs::read_to_string(conv_dir.join("TASKS.json")).unwrap())
            .unwrap();
    assert_eq!(tasks.as_array().unwrap().len(), 3);
    assert!(
        tasks
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "done")
    );

    // the event log: one action and one observation per step, in order
    let evs = events(&s, &id).await;
    let actions: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "ActionEvent").collect();
    let observations: Vec<&Value> = evs
        .iter()
        .filter(|e| e["kind"] == "ObservationEvent")
        .collect();
    assert_eq!(actions.len(), 20);
    assert_eq!(observations.len(), 20);
    for (i, (a, o)) in actions.iter().zip(&observations).enumerate() {
        assert_eq!(a["tool_name"], steps[i].0);
        assert_eq!(o["action_id"], a["id"]);
    }
    let first_run = obs_text(observations[4]);
    assert!(first_run.contains("sub failed"), "{first_run}");
    assert_eq!(observations[4]["observation"]["metadata"]["exit_code"], 1);
    let second_run = obs_text(observations[8]);
    assert!(second_run.contains("all tests passed"), "{second_run}");
    assert_eq!(observations[8]["observation"]["metadata"]["exit_code"], 0);
    assert_eq!(observations[8]["observation"]["metadata"]["working_dir"], p);
    assert!(obs_text(observations[15]).contains("🔄 Make the tests pass"));
    assert!(obs_text(observations[16]).contains("ok-again"));
    assert_eq!(
        evs.iter().filter(|e| e["key"] == "stats").count(),
        20,
        "one stats update per LLM call"
    );
    assert_eq!(
        seq(&evs).last().map(String::as_str),
        Some("state:execution_status=\"finished\"")
    );

    // every step reached the LLM: the last request holds the whole history, paired
    let last = &fake.calls()[19].body["messages"];
    let msgs = last.as_array().unwrap();
    assert_eq!(msgs.len(), 2 + 2 * 19);
    for pair in msgs[2..].chunks(2) {
        assert_eq!(pair[0]["role"], "assistant");
        assert_eq!(pair[1]["role"], "tool");
        assert_eq!(pair[1]["tool_call_id"], pair[0]["tool_calls"][0]["id"]);
    }

    // stats accumulate (100 prompt + 10 completion tokens per call) and survive a restart
    let info = s.get_json(&format!("/api/conversations/{id}")).await.1;
    let usage = &info["stats"]["usage_to_metrics"]["agent"]["accumulated_token_usage"];
    assert_eq!(usage["prompt_tokens"], 2000);
    assert_eq!(usage["completion_tokens"], 200);
    let config = s.config.clone();
    let dir = s.stop();
    let s = TestServer::start_config(dir, config);
    let again = s.get_json(&format!("/api/conversations/{id}")).await.1;
    assert_eq!(again["stats"], info["stats"]);
    assert_eq!(again["execution_status"], "finished");
}

#[tokio::test]
async fn message_while_running_is_picked_up_and_several_calls_run_in_order() {
    let s = TestServer::start();
    let fake = FakeLlm::scripted(vec![
        chat(
            "r0",
            json!("three things at once"),
            vec![
                call(
                    "c0",
                    "terminal",
                    &json!({"command": "echo one", "security_risk": "LOW"}),
                ),
                call("c1", "think", &json!({"thought": "and then"})),
                call("c2", "finish", &json!({"message": "first done"})),
            ],
        )
        .delayed(Duration::from_millis(800)),
        chat("r1", json!("Saw the second message."), Vec::new()),
    ])
    .await;
    let id = start(&s, llm(&fake.v1()), json!({})).await;
    send(&s, &id, "first", true).await;
    poll(WAIT, "first LLM call", || async {
        (!fake.calls().is_empty()).then_some(())
    })
    .await;
    // arrives while the step that ends with `finish` waits for the LLM: the run goes on
    send(&s, &id, "second", false).await;
    assert_eq!(
        wait_status(&s, &id, &["finished", "error"]).await,
        "finished"
    );
    let evs = events(&s, &id).await;
    assert_eq!(
        seq(&evs),
        strings(&[
            "SystemPromptEvent",
            "MessageEvent:user",
            "state:execution_status=\"running\"",
            "MessageEvent:user",
            "ActionEvent:terminal",
            "ActionEvent:think",
            "ActionEvent:finish",
            "ObservationEvent:terminal",
            "ObservationEvent:think",
            "ObservationEvent:finish",
            "MessageEvent:agent",
            "state:execution_status=\"finished\"",
        ])
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    let texts: Vec<String> = calls[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"][0]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["first", "second"]);
    // one assistant message with the three calls, then their results in call order
    let msgs = calls[1].body["messages"].as_array().unwrap().clone();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "system",
            "user",
            "user",
            "assistant",
            "tool",
            "tool",
            "tool"
        ]
    );
    assert_eq!(msgs[3]["tool_calls"].as_array().unwrap().len(), 3);
    let ids: Vec<&str> = msgs[4..]
        .iter()
        .map(|m| m["tool_call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c0", "c1", "c2"]);
    // the stats update of each call sits right before the events derived from it
    let first_stats = evs.iter().position(|e| e["key"] == "stats").unwrap();
    assert_eq!(evs[first_stats + 1]["kind"], "ActionEvent");
}

#[tokio::test]
async fn deviation_1_second_run_while_running_is_409() {
    let s = TestServer::start();
    let fake = FakeLlm::scripted(vec![
        chat_finish(0, "slow").delayed(Duration::from_millis(1500)),
        chat("r1", json!("idle answer"), Vec::new()),
    ])
    .await;
    let id = start(
        &s,
        llm(&fake.v1()),
        json!({"initial_message": message("go", true)}),
    )
    .await;
    poll(WAIT, "LLM call", || async {
        (!fake.calls().is_empty()).then_some(())
    })
    .await;
    let t = std::time::Instant::now();
    let (st, v) = post(&s, &format!("/api/conversations/{id}/run"), json!({})).await;
    assert_eq!(
        (st, v),
        (
            409,
            json!({"detail": "Conversation already running. Wait for completion or pause first."})
        )
    );
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "answered at once"
    );
    assert_eq!(wait_status(&s, &id, &["finished"]).await, "finished");
    // POST /run blocks until the run ends: a message, then run to the text answer
    send(&s, &id, "again", false).await;
    let (st, v) = post(&s, &format!("/api/conversations/{id}/run"), json!({})).await;
    assert_eq!((st, v), (200, json!({"success": true})));
    assert_eq!(status(&s, &id).await, "finished");
    assert_eq!(fake.calls().len(), 2);
}

#[tokio::test]
async fn pause_takes_effect_at_the_step_boundary() {
    let s = TestServer::start();
    let fake = FakeLlm::scripted(vec![
        chat_call(
            0,
            "terminal",
            json!({"command": "echo paused-step", "security_risk": "LOW"}),
        )
        .delayed(Duration::from_millis(1000)),
        chat_finish(1, "resumed"),
    ])
    .await;
    let id = start(
        &s,
        llm(&fake.v1()),
        json!({"initial_message": message("go", true)}),
    )
    .await;
    poll(WAIT, "LLM call", || async {
        (!fake.calls().is_empty()).then_some(())
    })
    .await;
    let (st, _) = post(&s, &format!("/api/conversations/{id}/pause"), json!({})).await;
    assert_eq!(st, 200);
    // pause answered after the step: its observation is already there
    assert_eq!(status(&s, &id).await, "paused");
    let evs = events(&s, &id).await;
    assert_eq!(
        seq(&evs)[2..],
        strings(&[
            "state:execution_status=\"running\"",
            "ActionEvent:terminal",
            "ObservationEvent:terminal",
            "state:execution_status=\"paused\"",
            "PauseEvent",
        ])
    );
    assert_eq!(fake.calls().len(), 1);
    let (st, _) = post(&s, &format!("/api/conversations/{id}/run"), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(status(&s, &id).await, "finished");
}

#[tokio::test]
async fn deviation_2_reject_and_confirm_risky() {
    let s = TestServer::start();
    let fake = FakeLlm::scripted(vec![
        chat(
            "r0",
            Value::Null,
            vec![
                call(
                    "c0",
                    "terminal",
                    &json!({"command": "echo a", "security_risk": "LOW"}),
                ),
                call(
                    "c1",
                    "terminal",
                    &json!({"command": "echo b", "security_risk": "HIGH"}),
                ),
            ],
        ),
        chat_call(
            1,
            "terminal",
            json!({"command": "echo low", "security_risk": "LOW"}),
        ),
        chat_call(
            2,
            "terminal",
            json!({"command": "echo high", "security_risk": "HIGH"}),
        ),
        chat_finish(3, "done"),
    ])
    .await;
    let id = start(
        &s,
        llm(&fake.v1()),
        json!({"confirmation_policy": {"kind": "AlwaysConfirm"}, "initial_message": message("go", true)}),
    )
    .await;
    assert_eq!(
        wait_status(&s, &id, &["waiting_for_confirmation", "error"]).await,
        "waiting_for_confirmation"
    );
    let (st, v) = post(
        &s,
        &format!("/api/conversations/{id}/events/respond_to_confirmation"),
        json!({"accept": false, "reason": "Not now"}),
    )
    .await;
    assert_eq!((st, v), (200, json!({"success": true})));
    assert_eq!(status(&s, &id).await, "idle");
    let evs = events(&s, &id).await;
    assert_eq!(
        seq(&evs),
        strings(&[
            "SystemPromptEvent",
            "MessageEvent:user",
            "state:execution_status=\"running\"",
            "ActionEvent:terminal",
            "ActionEvent:terminal",
            "state:execution_status=\"waiting_for_confirmation\"",
            "state:execution_status=\"idle\"",
            "UserRejectObservation:terminal",
            "UserRejectObservation:terminal",
        ])
    );
    let rejects: Vec<&Value> = evs
        .iter()
        .filter(|e| e["kind"] == "UserRejectObservation")
        .collect();
    assert_eq!(rejects[0]["rejection_reason"], "Not now");
    assert_eq!(rejects[1]["tool_call_id"], "c1");
    assert_eq!(fake.calls().len(), 1);

    // ConfirmRisky with the LLM analyzer: LOW runs, HIGH waits; accept runs it
    post(
        &s,
        &format!("/api/conversations/{id}/confirmation_policy"),
        json!({"policy": {"kind": "ConfirmRisky", "threshold": "HIGH"}}),
    )
    .await;
    post(
        &s,
        &format!("/api/conversations/{id}/security_analyzer"),
        json!({"security_analyzer": {"kind": "LLMSecurityAnalyzer"}}),
    )
    .await;
    let (st, _) = post(&s, &format!("/api/conversations/{id}/run"), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(status(&s, &id).await, "waiting_for_confirmation");
    // the rejected calls reached the LLM as tool results
    let second = &fake.calls()[1].body["messages"];
    let tool_texts: Vec<&str> = second
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        tool_texts,
        ["Action rejected: Not now", "Action rejected: Not now"]
    );
    let (st, v) = post(
        &s,
        &format!("/api/conversations/{id}/events/respond_to_confirmation"),
        json!({"accept": true}),
    )
    .await;
    assert_eq!((st, v), (200, json!({"success": true})));
    assert_eq!(status(&s, &id).await, "finished");
    let evs = events(&s, &id).await;
    let outputs: Vec<String> = evs
        .iter()
        .filter(|e| e["kind"] == "ObservationEvent")
        .map(obs_text)
        .collect();
    assert_eq!(outputs, ["low", "high", "done"]);
}

#[tokio::test]
async fn deviation_3_max_iterations_is_an_error() {
    let s = TestServer::start();
    let fake =
        FakeLlm::start(|_, n| chat_call(n, "think", json!({"thought": format!("thought {n}")})))
            .await;
    let id = start(
        &s,
        llm(&fake.v1()),
        json!({"max_iterations": 3, "initial_message": message("think forever", true)}),
    )
    .await;
    assert_eq!(
        wait_status(&s, &id, &["error", "finished", "stuck"]).await,
        "error"
    );
    assert_eq!(fake.calls().len(), 3);
    let evs = events(&s, &id).await;
    let err = evs.last().unwrap();
    assert_eq!(err["kind"], "ConversationErrorEvent");
    assert_eq!(err["code"], "MaxIterationsReached");
    // another run gets another max_iterations steps; the run itself did not fail (200)
    let (st, v) = post(&s, &format!("/api/conversations/{id}/run"), json!({})).await;
    assert_eq!((st, v), (200, json!({"success": true})));
    assert_eq!(fake.calls().len(), 6);
    assert_eq!(status(&s, &id).await, "error");
    let codes: Vec<Value> = events(&s, &id)
        .await
        .iter()
        .filter(|e| e["kind"] == "ConversationErrorEvent")
        .map(|e| e["code"].clone())
        .collect();
    assert_eq!(
        codes,
        [json!("MaxIterationsReached"), json!("MaxIterationsReached")]
    );
}

#[tokio::test]
async fn deviation_4_stuck_and_finished_are_left_by_a_message() {
    let s = TestServer::start();
    let same = json!({"command": "echo same", "security_risk": "LOW"});
    let fake = FakeLlm::scripted(vec![
        chat_call(0, "terminal", same.clone()),
        chat_call(1, "terminal", same.clone()),
        chat_call(2, "terminal", same.clone()),
        chat_call(3, "terminal", same.clone()),
        chat_call(4, "terminal", same),
        chat_finish(5, "unstuck"),
        chat("r6", json!("Finished again."), Vec::new()),
    ])
    .await;
    let id = start(
        &s,
        llm(&fake.v1()),
        json!({"initial_message": message("loop", true)}),
    )
    .await;
    assert_eq!(
        wait_status(&s, &id, &["stuck", "error", "finished"]).await,
        "stuck"
    );
    // the fourth identical round is detected before a fifth LLM call
    assert_eq!(fake.calls().len(), 4);
    let evs = events(&s, &id).await;
    assert_eq!(
        seq(&evs).last().unwrap(),
        "state:execution_status=\"stuck\""
    );
    // run is accepted from stuck (the window is unchanged, so it is stuck again at once)
    let (st, _) = post(&s, &format!("/api/conversations/{id}/run"), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(status(&s, &id).await, "stuck");
    // a message moves stuck to idle; its run goes on
    send(&s, &id, "try something else", false).await;
    assert_eq!(status(&s, &id).await, "idle");
    let (st, _) = post(&s, &format!("/api/conversations/{id}/run"), json!({})).await;
    assert_eq!(st, 200);
    // the fifth reply (same command) is no longer stuck: the window starts at the new message
    assert_eq!(status(&s, &id).await, "finished");
    send(&s, &id, "one more", true).await;
    assert_eq!(wait_status(&s, &id, &["finished"]).await, "finished");
    let evs = events(&s, &id).await;
    let statuses: Vec<String> = seq(&evs)
        .into_iter()
        .filter(|e| e.starts_with("state:execution_status"))
        .collect();
    assert_eq!(
        statuses,
        strings(&[
            "state:execution_status=\"running\"",
            "state:execution_status=\"stuck\"",
            "state:execution_status=\"running\"",
            "state:execution_status=\"stuck\"",
            "state:execution_status=\"idle\"",
            "state:execution_status=\"running\"",
            "state:execution_status=\"finished\"",
            "state:execution_status=\"idle\"",
            "state:execution_status=\"running\"",
            "state:execution_status=\"finished\"",
        ])
    );
}

#[tokio::test]
async fn deviation_16_tool_failures_are_observations_and_bad_calls_are_errors() {
    let s = TestServer::start();
    let fake = FakeLlm::scripted(vec![
        // the reference's terminal raises here (ValueError) and the run dies
        chat_call(0, "terminal", json!({"command": "x", "reset": true, "is_input": true, "security_risk": "LOW"})),
        chat_call(1, "no_such_tool", json!({})),
        chat(
            "r2",
            Value::Null,
            vec![json!({"id": "c2", "type": "function", "function": {"name": "terminal", "arguments": "{bad json"}})],
        ),
        chat_call(3, "terminal", json!({"security_risk": "LOW"})),
        chat_finish(4, "survived"),
    ])
    .await;
    let id = start(
        &s,
        llm(&fake.v1()),
        json!({"initial_message": message("break things", true)}),
    )
    .await;
    assert_eq!(
        wait_status(&s, &id, &["finished", "error", "stuck"]).await,
        "finished"
    );
    let evs = events(&s, &id).await;
    assert_eq!(
        seq(&evs)[3..],
        strings(&[
            "ActionEvent:terminal",
            "ObservationEvent:terminal",
            "ActionEvent:no_such_tool",
            "AgentErrorEvent:no_such_tool",
            "ActionEvent:terminal",
            "AgentErrorEvent:terminal",
            "ActionEvent:terminal",
            "AgentErrorEvent:terminal",
            "ActionEvent:finish",
            "ObservationEvent:finish",
            "state:execution_status=\"finished\"",
        ])
    );
    let failed = evs
        .iter()
        .find(|e| e["kind"] == "ObservationEvent")
        .unwrap();
    assert_eq!(failed["observation"]["is_error"], true);
    let errors: Vec<&str> = evs
        .iter()
        .filter(|e| e["kind"] == "AgentErrorEvent")
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    assert_eq!(
        errors[0],
        "Tool 'no_such_tool' not found. Available: ['terminal', 'file_editor', 'task_tracker', 'finish', 'think']"
    );
    assert!(errors[1].starts_with("Error validating args {bad json for tool 'terminal': "));
    assert!(
        errors[2]
            .starts_with("Error validating args {\"security_risk\":\"LOW\"} for tool 'terminal': ")
    );
}

#[tokio::test]
async fn llm_failure_after_retries_is_an_error_and_the_server_stays_healthy() {
    let s = TestServer::start();
    let fake = FakeLlm::scripted(vec![Reply::error(500, "boom internal")]).await;
    let mut l = llm(&fake.v1());
    l["num_retries"] = json!(2);
    l["retry_min_wait"] = json!(0);
    l["retry_max_wait"] = json!(0);
    l["retry_multiplier"] = json!(0.0);
    let id = start(&s, l, json!({"initial_message": message("fail", true)})).await;
    assert_eq!(wait_status(&s, &id, &["error", "finished"]).await, "error");
    // 2 attempts × (1 + 2 quick client retries)
    assert_eq!(fake.calls().len(), 6);
    let evs = events(&s, &id).await;
    let err = evs.last().unwrap();
    assert_eq!(err["kind"], "ConversationErrorEvent");
    assert_eq!(err["code"], "LLMServiceUnavailableError");
    assert!(err["detail"].as_str().unwrap().contains("boom internal"));
    assert_eq!(s.get_json("/health").await.0, 200);
    assert_eq!(s.get_json("/api/conversations/count").await.1, 1);
    let (st, v) = post(&s, &format!("/api/conversations/{id}/run"), json!({})).await;
    assert_eq!(st, 500, "{v}");
    assert!(
        v["exception"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Conversation run failed for id={id}: "))
    );
}

#[tokio::test]
async fn secrets_reach_the_terminal_masked_and_never_the_events() {
    let s = TestServer::start();
    let fake = FakeLlm::scripted(vec![
        chat_call(
            0,
            "terminal",
            json!({"command": "echo token=$MY_TOKEN", "security_risk": "LOW"}),
        ),
        chat_call(
            1,
            "terminal",
            json!({"command": "echo $OTHER_SECRET", "security_risk": "LOW"}),
        ),
        chat_finish(2, "ok"),
    ])
    .await;
    let id = start(
        &s,
        llm(&fake.v1()),
        json!({"secrets": {"MY_TOKEN": {"kind": "StaticSecret", "value": "s3cr3t-value-123"}}}),
    )
    .await;
    post(
        &s,
        &format!("/api/conversations/{id}/secrets"),
        json!({"secrets": {"OTHER_SECRET": "added-later-456"}}),
    )
    .await;
    send(&s, &id, "use the token", true).await;
    assert_eq!(
        wait_status(&s, &id, &["finished", "error"]).await,
        "finished"
    );
    let evs = events(&s, &id).await;
    let outs: Vec<String> = evs
        .iter()
        .filter(|e| e["kind"] == "ObservationEvent")
        .map(obs_text)
        .collect();
    assert_eq!(outs, ["token=<secret-hidden>", "<secret-hidden>", "ok"]);
    let all = serde_json::to_string(&evs).unwrap();
    assert!(!all.contains("s3cr3t-value-123") && !all.contains("added-later-456"));
    for call in fake.calls() {
        let body = call.body.to_string();
        assert!(!body.contains("s3cr3t-value-123") && !body.contains("added-later-456"));
    }
}

#[tokio::test]
async fn restart_in_the_middle_of_a_run_closes_the_call_and_runs_again() {
    // with a key, the LLM's api_key survives the restart (DEVIATIONS #6)
    let s = TestServer::start_with(|c| c.secret_key = Some("restart-key".into()));
    let fake = FakeLlm::scripted(vec![
        chat_call(
            0,
            "terminal",
            json!({"command": "sleep 987", "security_risk": "LOW"}),
        ),
        chat_finish(1, "after restart"),
    ])
    .await;
    let id = start(
        &s,
        llm(&fake.v1()),
        json!({"initial_message": message("long job", true)}),
    )
    .await;
    poll(WAIT, "the command running", || async {
        (processes_with("sleep 987") > 0).then_some(())
    })
    .await;
    let config = s.config.clone();
    let dir = s.stop();
    // the shell and its command died with the server
    poll(WAIT, "the command killed", || async {
        (processes_with("sleep 987") == 0).then_some(())
    })
    .await;
    let s = TestServer::start_config(dir, config);
    let evs = events(&s, &id).await;
    let last = evs.last().unwrap();
    assert_eq!(last["kind"], "ObservationEvent");
    assert_eq!(last["observation"]["kind"], "TerminalObservation");
    assert_eq!(last["observation"]["is_error"], true);
    let action = evs.iter().find(|e| e["kind"] == "ActionEvent").unwrap();
    assert_eq!(last["action_id"], action["id"]);
    // the events on disk were written as they happened (nothing lost across the restart)
    assert_eq!(
        seq(&evs)[1..],
        strings(&[
            "MessageEvent:user",
            "state:execution_status=\"running\"",
            "ActionEvent:terminal",
            "ObservationEvent:terminal",
        ])
    );
    let (st, v) = post(&s, &format!("/api/conversations/{id}/run"), json!({})).await;
    assert_eq!((st, v), (200, json!({"success": true})));
    assert_eq!(status(&s, &id).await, "finished");
    // the LLM saw the call answered with the error
    let msgs = fake.calls()[1].body["messages"].clone();
    let tool = msgs.as_array().unwrap().last().unwrap().clone();
    assert_eq!(tool["role"], "tool");
    assert_eq!(
        tool["content"][0]["text"],
        "[An error occurred during execution.]\n"
    );
}

#[tokio::test]
async fn delete_while_running_stops_the_loop_and_kills_the_shell() {
    let s = TestServer::start();
    let fake = FakeLlm::scripted(vec![
        chat_call(
            0,
            "terminal",
            json!({"command": "sleep 988", "security_risk": "LOW"}),
        ),
        chat_finish(1, "never"),
    ])
    .await;
    let id = start(
        &s,
        llm(&fake.v1()),
        json!({"initial_message": message("long job", true)}),
    )
    .await;
    poll(WAIT, "the command running", || async {
        (processes_with("sleep 988") > 0).then_some(())
    })
    .await;
    let r = s
        .client()
        .delete(s.url(&format!("/api/conversations/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    poll(WAIT, "the command killed", || async {
        (processes_with("sleep 988") == 0).then_some(())
    })
    .await;
    assert_eq!(s.get_json(&format!("/api/conversations/{id}")).await.0, 404);
    assert_eq!(fake.calls().len(), 1);
}

/// Token usage of the conversation's agent LLM.
async fn agent_usage(s: &TestServer, id: &str) -> Value {
    s.get_json(&format!("/api/conversations/{id}")).await.1["stats"]["usage_to_metrics"]["agent"]
        ["accumulated_token_usage"]
        .clone()
}

fn fast_retries(mut l: Value) -> Value {
    l["num_retries"] = json!(3);
    l["retry_min_wait"] = json!(0);
    l["retry_max_wait"] = json!(0);
    l["retry_multiplier"] = json!(0.0);
    l
}

#[tokio::test]
async fn openai_endpoint_tool_calls_retries_and_tokens() {
    let s = TestServer::start();
    let fake = FakeLlm::scripted(vec![
        Reply::error(429, "slow down"),
        Reply::error(500, "hiccup"),
        chat_call(
            0,
            "terminal",
            json!({"command": "echo via-openai", "security_risk": "LOW"}),
        ),
        chat_finish(1, "done"),
    ])
    .await;
    let id = start(
        &s,
        fast_retries(llm(&fake.v1())),
        json!({"initial_message": message("go", true)}),
    )
    .await;
    assert_eq!(
        wait_status(&s, &id, &["finished", "error"]).await,
        "finished"
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().all(|c| c.path == "/v1/chat/completions"));
    assert_eq!(calls[0].header("authorization"), Some("Bearer sk-fake"));
    assert_eq!(
        calls[0].body, calls[2].body,
        "retries resend the same request"
    );
    let evs = events(&s, &id).await;
    assert_eq!(evs.iter().filter(|e| e["key"] == "stats").count(), 2);
    let usage = agent_usage(&s, &id).await;
    assert_eq!(usage["prompt_tokens"], 200);
    assert_eq!(usage["completion_tokens"], 20);
    assert_eq!(usage["per_turn_token"], 110);
    let info = s.get_json(&format!("/api/conversations/{id}")).await.1;
    let agent = &info["stats"]["usage_to_metrics"]["agent"];
    assert_eq!(agent["token_usages"].as_array().unwrap().len(), 2);
    assert_eq!(agent["response_latencies"].as_array().unwrap().len(), 2);
    assert_eq!(agent["model_name"], "openai/fake-model");
}

#[tokio::test]
async fn anthropic_endpoint_tool_calls_retries_and_tokens() {
    let s = TestServer::start();
    let fake = FakeLlm::scripted(vec![
        Reply::json(429, &json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})),
        Reply::json(500, &json!({"type": "error", "error": {"type": "api_error", "message": "hiccup"}})),
        anthropic(
            "msg_0",
            vec![
                json!({"type": "text", "text": "Running it."}),
                json!({"type": "tool_use", "id": "toolu_0", "name": "terminal", "input": {"command": "echo via-anthropic", "security_risk": "LOW"}}),
            ],
            120,
            12,
        ),
        anthropic(
            "msg_1",
            vec![json!({"type": "tool_use", "id": "toolu_1", "name": "finish", "input": {"message": "done"}})],
            200,
            8,
        ),
    ])
    .await;
    let l = fast_retries(
        json!({"model": "anthropic/claude-3-5-haiku-20241022", "base_url": fake.base,
        "api_key": "sk-ant-fake", "usage_id": "agent"}),
    );
    let id = start(&s, l, json!({"initial_message": message("go", true)})).await;
    assert_eq!(
        wait_status(&s, &id, &["finished", "error"]).await,
        "finished"
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().all(|c| c.path == "/v1/messages"));
    assert_eq!(calls[0].header("x-api-key"), Some("sk-ant-fake"));
    // the second real call carries the tool_use and its tool_result
    let msgs = calls[3].body["messages"].as_array().unwrap().clone();
    let last = msgs.last().unwrap();
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"][0]["type"], "tool_result");
    assert_eq!(last["content"][0]["tool_use_id"], "toolu_0");
    let evs = events(&s, &id).await;
    let action = evs.iter().find(|e| e["kind"] == "ActionEvent").unwrap();
    assert_eq!(action["tool_call_id"], "toolu_0");
    assert_eq!(action["thought"][0]["text"], "Running it.");
    let obs = evs
        .iter()
        .find(|e| e["kind"] == "ObservationEvent")
        .unwrap();
    assert_eq!(obs_text(obs), "via-anthropic");
    let usage = agent_usage(&s, &id).await;
    assert_eq!(usage["prompt_tokens"], 320);
    assert_eq!(usage["completion_tokens"], 20);
    assert_eq!(usage["per_turn_token"], 208);
}

#[tokio::test]
async fn title_and_ask_agent_use_the_llm_without_touching_the_log() {
    let s = TestServer::start();
    let fake = FakeLlm::start(|req, _| {
        if req.has_tools() {
            chat("ask", json!("Four."), Vec::new())
        } else {
            chat("title", json!("🐛 Fix The Parser Bug Quickly"), Vec::new())
        }
    })
    .await;
    let id = start(&s, llm(&fake.v1()), json!({})).await;
    send(&s, &id, "Please fix the parser bug", false).await;
    let before = events(&s, &id).await;
    let (st, v) = post(
        &s,
        &format!("/api/conversations/{id}/generate_title"),
        json!({"max_length": 19}),
    )
    .await;
    assert_eq!((st, v), (200, json!({"title": "🐛 Fix The Parser..."})));
    let (st, v) = post(
        &s,
        &format!("/api/conversations/{id}/ask_agent"),
        json!({"question": "2+2?"}),
    )
    .await;
    assert_eq!((st, v), (200, json!({"response": "Four."})));
    let after = events(&s, &id).await;
    // only the title call's stats update was added
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after.last().unwrap()["key"], "stats");
    assert_eq!(status(&s, &id).await, "idle");
    let calls = fake.calls();
    let ask = calls[1].body["messages"].as_array().unwrap();
    assert_eq!(ask.len(), 3);
    assert!(
        ask[2]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("2+2?")
    );
}

#[tokio::test]
async fn deviation_17_and_18_terminal_and_editor_quirks_are_not_reproduced() {
    let s = TestServer::start();
    let ws = workspace(&s);
    let big: String = (0..2000)
        .map(|i| format!("row {i} {}\n", "x".repeat(40)))
        .collect();
    std::fs::write(format!("{ws}/big.txt"), &big).unwrap();
    let fake = FakeLlm::scripted(vec![
        // the very first command of a fresh shell (the reference's tmux race)
        chat_call(0, "terminal", json!({"command": "echo first", "security_risk": "LOW"})),
        chat_call(1, "terminal", json!({"command": "echo a \\; echo b", "security_risk": "LOW"})),
        chat_call(2, "terminal", json!({"command": format!("find {ws} -maxdepth 0 -exec echo found {{}} \\;"), "security_risk": "LOW"})),
        chat_call(3, "terminal", json!({"command": "printf 'x\\ty\\n'; echo 'tab\there'", "security_risk": "LOW"})),
        chat_call(4, "file_editor", json!({"command": "view", "path": format!("{ws}/big.txt"), "security_risk": "LOW"})),
        chat_finish(5, "done"),
    ])
    .await;
    let id = start(
        &s,
        llm(&fake.v1()),
        json!({"initial_message": message("quirks", true)}),
    )
    .await;
    assert_eq!(
        wait_status(&s, &id, &["finished", "error"]).await,
        "finished"
    );
    let evs = events(&s, &id).await;
    let outs: Vec<String> = evs
        .iter()
        .filter(|e| e["kind"] == "ObservationEvent")
        .map(obs_text)
        .collect();
    assert_eq!(outs[0], "first");
    assert_eq!(outs[1], "a ; echo b");
    assert_eq!(outs[2], format!("found {ws}"));
    assert_eq!(outs[3], "x\ty\ntab\there");
    // the clipped view keeps the file's real line numbers after the cut (DEVIATIONS #18)
    let view = &outs[4];
    let after_cut = view
        .lines()
        .rev()
        .find(|l| l.contains("row 1990 "))
        .unwrap();
    assert!(
        after_cut.trim_start().starts_with("1991\trow 1990 "),
        "{after_cut}"
    );
}
