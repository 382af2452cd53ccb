//! Our LLM requests against the reference's (`reference/llm-captures/`), one test per capture
//! file. Each capture's history is replayed through a real conversation: the fake LLM answers
//! with the replies the history shows (tool-call ids and arguments included), the conversation
//! runs, and the request we send at the same point is compared with the captured body for
//! structure: endpoint, body keys and the parameters sent, message roles and keys, content part
//! types, tool-call ids/names/arguments and their pairing with tool results, tool names and
//! parameter schemas (descriptions are our own words, so only their presence is compared).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fake_llm::{FakeLlm, Reply, Request, chat};
use crate::common::{TestServer, poll};

const WAIT: Duration = Duration::from_secs(120);

fn captures_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        here.join("../shared/reference/llm-captures"),
        PathBuf::from("/work/shared/reference/llm-captures"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .expect("reference/llm-captures")
}

fn load(file: &str) -> Value {
    let text = std::fs::read_to_string(captures_dir().join(file)).expect("capture");
    serde_json::from_str(&text).expect("capture json")
}

/// Which wire format a capture is in.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Format {
    Chat,
    Anthropic,
    Responses,
}

/// How the conversation reaches the captured request.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Flow {
    /// `initial_message` with run; compare the n-th agent request (n = replies in the history).
    Run,
    /// AlwaysConfirm; reject the pending action; POST /run; compare the next request.
    Reject,
    /// AlwaysConfirm; a message while waiting; accept; compare the next request.
    MessageWhileWaiting,
    /// Run to the end, then POST ask_agent; compare that request.
    AskAgent,
    /// A message, then POST generate_title; compare the title request.
    Title,
    /// A long run with a condenser; compare the second condenser request.
    CondenserRequest,
    /// A long run with a condenser; compare the second agent request after a condensation.
    AfterCondensation,
}

struct Case {
    file: &'static str,
    format: Format,
    flow: Flow,
    /// The agent's `llm` (base_url added by the test; `{base}` = fake root, else root + /v1).
    llm: Value,
    /// Fields merged into the agent.
    agent: Value,
    /// Fields merged into the start request.
    start: Value,
    /// Replies when the history does not show them all (dropped replies); else derived.
    script: Option<Vec<Value>>,
}

impl Case {
    fn new(file: &'static str) -> Case {
        Case {
            file,
            format: Format::Chat,
            flow: Flow::Run,
            llm: json!({"model": "openai/fake-model"}),
            agent: json!({}),
            start: json!({}),
            script: None,
        }
    }
    fn format(mut self, f: Format) -> Case {
        self.format = f;
        self
    }
    fn flow(mut self, f: Flow) -> Case {
        self.flow = f;
        self
    }
    fn llm(mut self, extra: Value) -> Case {
        merge(&mut self.llm, &extra);
        self
    }
    fn agent(mut self, extra: Value) -> Case {
        merge(&mut self.agent, &extra);
        self
    }
    fn start(mut self, extra: Value) -> Case {
        merge(&mut self.start, &extra);
        self
    }
    fn script(mut self, replies: Vec<Value>) -> Case {
        self.script = Some(replies);
        self
    }
}

fn merge(into: &mut Value, extra: &Value) {
    if let (Some(a), Some(b)) = (into.as_object_mut(), extra.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
}

/// Replaces `from` by `to` in every string of `v`.
fn replace_strings(v: &Value, from: &str, to: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace(from, to)),
        Value::Array(a) => Value::Array(a.iter().map(|x| replace_strings(x, from, to)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), replace_strings(x, from, to)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .find(|p| {
                matches!(
                    p["type"].as_str(),
                    Some("text" | "output_text" | "input_text")
                )
            })
            .and_then(|p| p["text"].as_str().map(String::from)),
        _ => None,
    }
}

/// The chat replies a history shows, in order: consecutive assistant messages belong to one
/// reply while calls of that reply are still unanswered (the reference splits a batch around
/// AgentErrorEvents).
fn chat_replies(messages: &[Value]) -> Vec<Value> {
    let mut replies: Vec<Value> = Vec::new();
    let mut open: Vec<String> = Vec::new();
    for m in messages {
        match m["role"].as_str() {
            Some("assistant") => {
                let calls = m["tool_calls"].as_array().cloned().unwrap_or_default();
                if !open.is_empty()
                    && let Some(last) = replies.last_mut()
                {
                    let list = last["tool_calls"].as_array_mut().expect("calls");
                    list.extend(calls.iter().cloned());
                } else {
                    let content = match m.get("content") {
                        Some(Value::Array(parts)) if parts.is_empty() => Value::Null,
                        Some(c) => text_of(c).map(Value::String).unwrap_or(Value::Null),
                        None => Value::Null,
                    };
                    let mut r = json!({"content": content, "tool_calls": calls});
                    if m.get("content") == Some(&json!([])) {
                        r["reasoning_content"] = json!("Thinking it over.");
                    }
                    replies.push(r);
                }
                open.extend(
                    calls
                        .iter()
                        .filter_map(|c| c["id"].as_str().map(String::from)),
                );
            }
            Some("tool") => {
                let id = m["tool_call_id"].as_str().unwrap_or_default();
                open.retain(|o| o != id);
            }
            _ => {}
        }
    }
    replies
}

fn anthropic_replies(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m["role"] == "assistant")
        .map(|m| json!({"blocks": m["content"]}))
        .collect()
}

fn responses_replies(input: &[Value]) -> Vec<Value> {
    let mut replies: Vec<Vec<Value>> = Vec::new();
    let mut in_turn = false;
    for item in input {
        let assistant_item = item["type"] == "function_call"
            || (item["type"] == "message" && item["role"] == "assistant");
        if assistant_item {
            if !in_turn {
                replies.push(Vec::new());
                in_turn = true;
            }
            let out = if item["type"] == "function_call" {
                let call_id = item["call_id"].as_str().unwrap_or_default();
                json!({"type": "function_call", "id": item["id"], "status": "completed",
                    "call_id": call_id.strip_prefix("fc_").unwrap_or(call_id),
                    "name": item["name"], "arguments": item["arguments"]})
            } else {
                json!({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": text_of(&item["content"]).unwrap_or_default(), "annotations": []}]})
            };
            replies.last_mut().expect("turn").push(out);
        } else {
            in_turn = false;
        }
    }
    replies.into_iter().map(|o| json!({"output": o})).collect()
}

/// The wire reply for one scripted reply of `format`.
fn wire_reply(format: Format, n: usize, r: &Value) -> Reply {
    match format {
        Format::Chat => {
            let mut message = json!({"role": "assistant", "content": r["content"]});
            if let Some(calls) = r["tool_calls"].as_array().filter(|c| !c.is_empty()) {
                message["tool_calls"] = Value::Array(calls.clone());
            }
            if let Some(rc) = r.get("reasoning_content") {
                message["reasoning_content"] = rc.clone();
            }
            Reply::json(
                200,
                &json!({"id": format!("chatcmpl-cap-{n}"), "object": "chat.completion", "created": 1, "model": "fake-model",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}}),
            )
        }
        Format::Anthropic => crate::common::fake_llm::anthropic(
            &format!("msg_cap_{n}"),
            r["blocks"].as_array().cloned().unwrap_or_default(),
            100,
            7,
        ),
        Format::Responses => crate::common::fake_llm::responses(
            &format!("resp_cap_{n}"),
            r["output"].as_array().cloned().unwrap_or_default(),
        ),
    }
}

/// A reply that ends the run, in `format` (text for non-native tool calling).
fn finish_reply(format: Format, n: usize, native: bool) -> Reply {
    match format {
        Format::Chat if !native => chat(
            &format!("chatcmpl-end-{n}"),
            json!("<function=finish>\n<parameter=message>done</parameter>\n</function>"),
            Vec::new(),
        ),
        Format::Chat => crate::common::fake_llm::chat_finish(1000 + n, "done"),
        Format::Anthropic => crate::common::fake_llm::anthropic(
            &format!("msg_end_{n}"),
            vec![
                json!({"type": "tool_use", "id": format!("toolu_end_{n}"), "name": "finish", "input": {"message": "done"}}),
            ],
            100,
            7,
        ),
        Format::Responses => crate::common::fake_llm::responses(
            &format!("resp_end_{n}"),
            vec![
                json!({"type": "function_call", "id": format!("fc_end_{n}"), "call_id": format!("call_end_{n}"),
                "name": "finish", "arguments": "{\"message\": \"done\"}", "status": "completed"}),
            ],
        ),
    }
}

/// A condenser call: one user message, no tools.
fn is_condenser(r: &Request) -> bool {
    r.body.get("tools").is_none()
        && r.body["messages"]
            .as_array()
            .is_some_and(|m| m.len() == 1 && m[0]["role"] == "user")
}

/// The messages (or Anthropic messages / Responses input) of a body.
fn history_of(format: Format, body: &Value) -> Vec<Value> {
    let key = match format {
        Format::Chat | Format::Anthropic => "messages",
        Format::Responses => "input",
    };
    body[key].as_array().cloned().unwrap_or_default()
}

/// Keys whose string values must be equal; every other string is compared by type only
/// (texts, descriptions, prompts are this server's own words).
const EXACT_STRINGS: &[&str] = &[
    "role",
    "type",
    "name",
    "id",
    "call_id",
    "tool_call_id",
    "tool_use_id",
    "model",
    "arguments",
    "effort",
    "tool_choice",
    "enum",
    "required",
    "include",
    "stop",
];

/// Compares `ours` with the captured `theirs` (see [`EXACT_STRINGS`]); returns the differences.
fn compare(path: &str, key: &str, theirs: &Value, ours: &Value, out: &mut Vec<String>) {
    match (theirs, ours) {
        (Value::Object(t), Value::Object(o)) => {
            let tk: Vec<&String> = t.keys().collect();
            let mut tk_sorted = tk.clone();
            tk_sorted.sort();
            let mut ok: Vec<&String> = o.keys().collect();
            ok.sort();
            if tk_sorted != ok {
                out.push(format!("{path}: keys {tk_sorted:?} != ours {ok:?}"));
            }
            for (k, tv) in t {
                if let Some(ov) = o.get(k) {
                    compare(&format!("{path}.{k}"), k, tv, ov, out);
                }
            }
        }
        (Value::Array(t), Value::Array(o)) => {
            if t.len() != o.len() {
                out.push(format!("{path}: {} items != ours {}", t.len(), o.len()));
            }
            for (i, (tv, ov)) in t.iter().zip(o).enumerate() {
                compare(&format!("{path}[{i}]"), key, tv, ov, out);
            }
        }
        (Value::String(t), Value::String(o)) => {
            if EXACT_STRINGS.contains(&key) && t != o {
                out.push(format!("{path}: {t:?} != ours {o:?}"));
            }
        }
        (t, o) => {
            let same_kind = std::mem::discriminant(t) == std::mem::discriminant(o);
            if !same_kind || (!t.is_string() && t != o) {
                out.push(format!("{path}: {t} != ours {o}"));
            }
        }
    }
}

/// Tool calls and their results pair up: every tool message answers a call made before it.
fn check_pairing(messages: &[Value], out: &mut Vec<String>) {
    let mut calls: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        for c in m["tool_calls"].as_array().into_iter().flatten() {
            calls.push(c["id"].as_str().unwrap_or_default().to_string());
        }
        if m["role"] == "tool" {
            let id = m["tool_call_id"].as_str().unwrap_or_default();
            if !calls.iter().any(|c| c == id) {
                out.push(format!("messages[{i}]: tool result for unknown call {id}"));
            }
        }
    }
}

/// Runs `case` and compares the request.
async fn check(case: Case) {
    let capture = load(case.file);
    let mut theirs = capture["body"].clone();
    let basic = load("chat-basic-step0.json")["body"].clone();
    if theirs["tools"].is_string() {
        theirs["tools"] = basic["tools"].clone();
    }
    let s = TestServer::start_with(|c| c.secret_key = Some("captures".into()));
    let ws_dir = s.dir.path().join("ws");
    std::fs::create_dir_all(&ws_dir).unwrap();
    let ws = ws_dir
        .canonicalize()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    if case.file.starts_with("chat-image-observation") {
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(PNG_BASE64)
            .unwrap();
        std::fs::write(ws_dir.join("img.png"), png).unwrap();
    }
    let history = history_of(case.format, &theirs);
    let derived = match case.format {
        Format::Chat => chat_replies(&history),
        Format::Anthropic => anthropic_replies(&history),
        Format::Responses => responses_replies(&history),
    };
    let script: Vec<Value> = case
        .script
        .clone()
        .unwrap_or_else(|| derived.clone())
        .iter()
        .map(|r| replace_strings(r, "<WORKSPACE>", &ws))
        .collect();
    let target = match case.flow {
        Flow::Run | Flow::Title => script.len(),
        // the script ends with the answer to the question
        Flow::AskAgent => script.len() - 1,
        Flow::Reject | Flow::MessageWhileWaiting => 1,
        Flow::CondenserRequest | Flow::AfterCondensation => 0,
    };
    let native = case.llm["native_tool_calling"] != json!(false);
    let format = case.format;
    let replies = script.clone();
    let summary = json!("SUMMARY: user asked for things; agent ran echo commands.");
    // replies in order of the agent requests (counting them survives condensation)
    let agent_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fake = FakeLlm::start(move |req, _| {
        if req.method != "POST" {
            return Reply::json(200, &json!({"data": [{"key": "value"}]}))
                .header("x-note", "lookups and model info");
        }
        if is_condenser(req) && format == Format::Chat && req.body.get("stop").is_none() {
            return chat("chatcmpl-summary", summary.clone(), Vec::new());
        }
        let n = agent_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match replies.get(n) {
            Some(r) => wire_reply(format, n, r),
            None => finish_reply(format, n, native),
        }
    })
    .await;

    // the conversation
    let base = if case.llm["base"] == "root" {
        fake.base.clone()
    } else {
        fake.v1()
    };
    let mut llm = case.llm.clone();
    llm.as_object_mut().unwrap().remove("base");
    merge(
        &mut llm,
        &json!({"base_url": base, "api_key": "sk-fake", "usage_id": "agent", "num_retries": 0}),
    );
    // the agent's tools are the captured ones (finish and think are built in)
    let tool_names: Vec<Value> = theirs["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.get("name"))
                .and_then(Value::as_str)
        })
        .filter(|n| !matches!(*n, "finish" | "think"))
        .map(|n| json!({"name": n}))
        .collect();
    let tool_names = if theirs.get("tools").is_some() {
        tool_names
    } else {
        vec![
            json!({"name": "terminal"}),
            json!({"name": "file_editor"}),
            json!({"name": "task_tracker"}),
        ]
    };
    let mut agent = json!({"kind": "Agent", "llm": llm, "tools": tool_names});
    merge(
        &mut agent,
        &replace_strings(&case.agent, "{base}", &fake.v1()),
    );
    let first_user = match case.format {
        Format::Responses => history.iter().find(|m| m["role"] == "user").cloned(),
        _ => history
            .iter()
            .filter(|m| m["role"] == "user")
            .find(|m| text_of(&m["content"]).is_some_and(|t| t.starts_with("SCN:")))
            .cloned(),
    };
    let content: Vec<Value> = match first_user.as_ref().map(|m| &m["content"]) {
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p["type"].as_str() {
                Some("text") | Some("input_text") => {
                    Some(json!({"type": "text", "text": p["text"]}))
                }
                Some("image_url") => {
                    Some(json!({"type": "image", "image_urls": [p["image_url"]["url"]]}))
                }
                _ => None,
            })
            .take(if case.agent.get("agent_context").is_some() {
                1
            } else {
                usize::MAX
            })
            .collect(),
        _ => vec![json!({"type": "text", "text": "SCN:basic please do the task"})],
    };
    let mut body = json!({"agent": agent, "workspace": {"working_dir": ws}});
    merge(
        &mut body,
        &replace_strings(&case.start, "{base}", &fake.base),
    );
    let run_now = !matches!(case.flow, Flow::Title);
    if run_now {
        body["initial_message"] = json!({"role": "user", "content": content, "run": true});
    }
    let (st, info) = s.post_json("/api/conversations", &body).await;
    assert_eq!(st, 201, "{info}");
    let id = info["id"].as_str().unwrap().to_string();
    match case.flow {
        Flow::Run | Flow::CondenserRequest | Flow::AfterCondensation => {}
        Flow::Reject | Flow::MessageWhileWaiting => {
            poll(WAIT, "waiting_for_confirmation", || {
                let id = id.clone();
                let s = &s;
                async move { (status(s, id).await == "waiting_for_confirmation").then_some(()) }
            })
            .await;
            if case.flow == Flow::Reject {
                let reason = history
                    .iter()
                    .filter(|m| m["role"] == "tool")
                    .find_map(|m| text_of(&m["content"]))
                    .and_then(|t| t.strip_prefix("Action rejected: ").map(String::from))
                    .expect("rejection reason");
                let (st, _) = s
                    .post_json(
                        &format!("/api/conversations/{id}/events/respond_to_confirmation"),
                        &json!({"accept": false, "reason": reason}),
                    )
                    .await;
                assert_eq!(st, 200);
                let (st, _) = s
                    .post_json(&format!("/api/conversations/{id}/run"), &json!({}))
                    .await;
                assert_eq!(st, 200);
            } else {
                let text = history
                    .iter()
                    .filter(|m| m["role"] == "user")
                    .filter_map(|m| text_of(&m["content"]))
                    .nth(1)
                    .expect("second user message");
                let (st, _) = s
                    .post_json(
                        &format!("/api/conversations/{id}/events"),
                        &json!({"content": [{"type": "text", "text": text}], "run": false}),
                    )
                    .await;
                assert_eq!(st, 200);
                let (st, _) = s
                    .post_json(
                        &format!("/api/conversations/{id}/events/respond_to_confirmation"),
                        &json!({"accept": true}),
                    )
                    .await;
                assert_eq!(st, 200);
            }
        }
        Flow::AskAgent => {
            poll(WAIT, "finished", || {
                let id = id.clone();
                let s = &s;
                async move { (status(s, id).await == "finished").then_some(()) }
            })
            .await;
            let (st, v) = s
                .post_json(
                    &format!("/api/conversations/{id}/ask_agent"),
                    &json!({"question": "What did you just do?"}),
                )
                .await;
            assert_eq!(st, 200, "{v}");
        }
        Flow::Title => {
            let (st, _) = s
                .post_json(
                    &format!("/api/conversations/{id}/events"),
                    &json!({"content": content, "run": false}),
                )
                .await;
            assert_eq!(st, 200);
            let (st, v) = s
                .post_json(
                    &format!("/api/conversations/{id}/generate_title"),
                    &json!({"max_length": 30}),
                )
                .await;
            assert_eq!(st, 200, "{v}");
        }
    }
    let pick = |calls: &[Request]| -> Option<usize> {
        match case.flow {
            Flow::CondenserRequest => calls
                .iter()
                .enumerate()
                .filter(|(_, r)| is_condenser(r))
                .map(|(i, _)| i)
                .nth(1),
            Flow::AfterCondensation => {
                let first = calls.iter().position(is_condenser)?;
                calls
                    .iter()
                    .enumerate()
                    .skip(first + 1)
                    .filter(|(_, r)| !is_condenser(r))
                    .map(|(i, _)| i)
                    .nth(1)
            }
            _ => calls
                .iter()
                .enumerate()
                .filter(|(_, r)| !is_condenser(r) || case.flow == Flow::Title)
                .map(|(i, _)| i)
                .nth(target),
        }
    };
    let ours = poll(WAIT, "the captured request", || {
        let calls = fake.calls();
        let found = pick(&calls).map(|i| calls[i].clone());
        async move { found }
    })
    .await;

    let mut diffs = Vec::new();
    let expected_path = capture["http_path"].as_str().unwrap();
    if ours.path != expected_path {
        diffs.push(format!("path {expected_path} != ours {}", ours.path));
    }
    let ours_body = replace_strings(&ours.body, &ws, "<WORKSPACE>");
    compare("body", "", &theirs, &ours_body, &mut diffs);
    if case.format == Format::Chat {
        check_pairing(&history_of(Format::Chat, &ours_body), &mut diffs);
    }
    assert!(
        diffs.is_empty(),
        "{}: our request differs from the capture:\n  {}\nours: {}",
        case.file,
        diffs.join("\n  "),
        serde_json::to_string_pretty(&ours_body).unwrap()
    );
}

async fn status(s: &TestServer, id: String) -> String {
    s.get_json(&format!("/api/conversations/{id}")).await.1["execution_status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The 2×2 PNG of the image captures.
const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg==";

macro_rules! capture_test {
    ($name:ident, $case:expr) => {
        #[tokio::test]
        async fn $name() {
            check($case).await;
        }
    };
}

capture_test!(chat_basic_step0, Case::new("chat-basic-step0.json"));
capture_test!(chat_basic_step1, Case::new("chat-basic-step1.json"));
capture_test!(chat_parallel_step1, Case::new("chat-parallel-step1.json"));
capture_test!(
    chat_parallel_with_invalid_calls_step1,
    Case::new("chat-parallel-with-invalid-calls-step1.json")
);
capture_test!(
    chat_invalid_json_step1,
    Case::new("chat-invalid-json-step1.json")
);
capture_test!(
    chat_unknown_tool_step1,
    Case::new("chat-unknown-tool-step1.json")
);
capture_test!(chat_think_step1, Case::new("chat-think-step1.json"));
capture_test!(
    chat_reasoning_only_step1,
    Case::new("chat-reasoning-only-step1.json")
);
capture_test!(chat_empty_replies, Case::new("chat-empty-replies.json"));
capture_test!(
    chat_argument_errors_final,
    Case::new("chat-argument-errors-final.json")
);
capture_test!(
    chat_file_editor_final,
    Case::new("chat-file-editor-final.json")
);
capture_test!(
    chat_task_tracker_final,
    Case::new("chat-task-tracker-final.json")
);
capture_test!(
    chat_terminal_final,
    Case::new("chat-terminal-final.json").agent(json!({"tools": [
        {"name": "terminal", "params": {"no_change_timeout_seconds": 3}}, {"name": "file_editor"}, {"name": "task_tracker"}]}))
);
capture_test!(
    chat_secrets_final,
    Case::new("chat-secrets-final.json").start(json!({"secrets": {
        "MY_TOKEN": {"kind": "StaticSecret", "value": "s3cr3t-value-123"},
        "LOOKUP_TOK": {"kind": "LookupSecret", "url": "{base}/secret"},
        "OTHER_SECRET": {"kind": "StaticSecret", "value": "other-value"}}}))
);
capture_test!(
    chat_rejected_action,
    Case::new("chat-rejected-action.json")
        .flow(Flow::Reject)
        .start(json!({"confirmation_policy": {"kind": "AlwaysConfirm"}}))
);
capture_test!(
    chat_user_message_between_call_and_result,
    Case::new("chat-user-message-between-call-and-result.json")
        .flow(Flow::MessageWhileWaiting)
        .start(json!({"confirmation_policy": {"kind": "AlwaysConfirm"}}))
);
capture_test!(
    chat_agent_context_step0,
    Case::new("chat-agent-context-step0.json").agent(json!({"agent_context": {
        "skills": [
            {"name": "repo", "content": "Repository notes: keep it simple.", "trigger": null},
            {"name": "magic", "content": "The magic word was said.", "trigger": {"type": "keyword", "keywords": ["flarglebargle"]}}],
        "system_message_suffix": "SYSTEM SUFFIX HERE",
        "user_message_suffix": "USER SUFFIX HERE"}}))
);
capture_test!(
    chat_after_condensation,
    Case::new("chat-after-condensation.json")
        .flow(Flow::AfterCondensation)
        .agent(condenser())
        .script(echo_script())
);
capture_test!(
    condenser_summary_request,
    Case::new("condenser-summary-request.json")
        .flow(Flow::CondenserRequest)
        .agent(condenser())
        .script(echo_script())
);
capture_test!(ask_agent, Case::new("ask-agent.json").flow(Flow::AskAgent).script(vec![
    json!({"content": "u", "tool_calls": [{"id": "call_71465524_0", "type": "function", "function": {"name": "terminal", "arguments": "{\"command\": \"echo usage\", \"security_risk\": \"LOW\"}"}}]}),
    json!({"content": "u", "tool_calls": [{"id": "call_71465526_0", "type": "function", "function": {"name": "finish", "arguments": "{\"message\": \"done\"}"}}]}),
    json!({"content": "The answer to your question is 42.", "tool_calls": []}),
]));
capture_test!(
    generate_title,
    Case::new("generate-title.json")
        .flow(Flow::Title)
        .script(vec![])
);
capture_test!(
    chat_gpt_4o_user_image_step0,
    Case::new("chat-gpt-4o-user-image-step0.json").llm(json!({"model": "openai/gpt-4o"}))
);
capture_test!(
    chat_image_observation_vision,
    Case::new("chat-image-observation-vision.json").llm(json!({"model": "openai/gpt-4o"}))
);
capture_test!(
    chat_image_observation_no_vision,
    Case::new("chat-image-observation-no-vision.json")
);
capture_test!(
    chat_o3_mini_step0,
    Case::new("chat-o3-mini-step0.json").llm(json!({"model": "openai/o3-mini"}))
);
capture_test!(
    chat_litellm_proxy_claude_sonnet_4_5_step1,
    Case::new("chat-litellm-proxy-claude-sonnet-4-5-step1.json").llm(
        json!({"model": "litellm_proxy/anthropic/claude-sonnet-4-5-20250929", "base": "root"})
    )
);
capture_test!(
    anthropic_messages_claude_sonnet_4_5_step1,
    Case::new("anthropic-messages-claude-sonnet-4-5-step1.json")
        .format(Format::Anthropic)
        .llm(json!({"model": "anthropic/claude-sonnet-4-5-20250929", "base": "root"}))
);
capture_test!(
    responses_gpt_5_mini_step1,
    Case::new("responses-gpt-5-mini-step1.json")
        .format(Format::Responses)
        .llm(json!({"model": "openai/gpt-5-mini"}))
);
capture_test!(
    nonnative_function_calling_step0,
    Case::new("nonnative-function-calling-step0.json").llm(json!({"native_tool_calling": false}))
);
capture_test!(
    nonnative_function_calling_validation_error,
    Case::new("nonnative-function-calling-validation-error.json")
        .llm(json!({"native_tool_calling": false}))
        .script(vec![
            json!({"content": "I'll think first.\n<function=think>\n<parameter=thought>hmm</parameter>\n</function>", "tool_calls": []}),
            json!({"content": "<function=finish>\n<parameter=bogus>x</parameter>\n</function>", "tool_calls": []}),
            json!({"content": "<function=finish>\n<parameter=bogus>x</parameter>\n</function>", "tool_calls": []}),
        ])
);

fn condenser() -> Value {
    json!({"condenser": {"kind": "LLMSummarizingCondenser", "max_size": 8, "keep_first": 2,
        "llm": {"model": "openai/fake-model", "base_url": "{base}", "api_key": "sk-fake", "usage_id": "condenser", "num_retries": 0}}})
}

/// Terminal calls `echo c-N`; the one the captured request shows keeps its captured id.
fn echo_script() -> Vec<Value> {
    (0..14)
        .map(|i| json!({"content": null, "tool_calls": [{"id": if i == 4 { "call_71465499_0".to_string() } else { format!("call_c_{i}") }, "type": "function",
            "function": {"name": "terminal", "arguments": format!("{{\"command\": \"echo c-{i}\", \"security_risk\": \"LOW\"}}")}}]}))
        .collect()
}

/// `http-retry-timelines.json`: how many HTTP requests one logical call makes and the
/// `x-stainless-retry-count` header of each (timings are shortened with the retry settings).
#[tokio::test]
async fn http_retry_timelines() {
    let capture = load("http-retry-timelines.json");
    let t = &capture["timelines"];
    let statuses = |name: &str| -> Vec<(u64, String)> {
        t[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["status"].as_u64().unwrap(),
                    e["x-stainless-retry-count"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let cases: Vec<(&str, Vec<Reply>, Value)> = vec![
        (
            "http500_num_retries0",
            vec![Reply::error(500, "boom internal")],
            json!({"num_retries": 0}),
        ),
        (
            "http500_num_retries3_min1_max2_mult1",
            vec![Reply::error(500, "boom internal")],
            json!({"num_retries": 3, "retry_min_wait": 1, "retry_max_wait": 2, "retry_multiplier": 1.0}),
        ),
        (
            "http429_twice_then_200",
            vec![
                Reply::error(429, "slow down"),
                Reply::error(429, "slow down"),
                chat("chatcmpl-ok", json!("fine"), Vec::new()),
            ],
            json!({"num_retries": 0}),
        ),
        (
            "http400",
            vec![Reply::error(400, "bad request: invalid thing")],
            json!({"num_retries": 5}),
        ),
        (
            "http401",
            vec![Reply::error(401, "Incorrect API key provided")],
            json!({"num_retries": 5}),
        ),
        (
            "http400_context_length",
            vec![Reply::error(
                400,
                "This model's maximum context length is 10 tokens",
            )],
            json!({"num_retries": 5}),
        ),
    ];
    for (name, replies, llm_extra) in cases {
        let s = TestServer::start();
        let fake = FakeLlm::scripted(replies).await;
        let mut llm = json!({"model": "openai/fake-model", "base_url": fake.v1(), "api_key": "sk-fake", "usage_id": "agent"});
        merge(&mut llm, &llm_extra);
        let body = json!({"agent": {"kind": "Agent", "llm": llm, "tools": [{"name": "terminal"}]},
            "workspace": {"working_dir": s.dir.path().join("ws").to_string_lossy()},
            "initial_message": {"role": "user", "content": [{"type": "text", "text": "go"}], "run": true}});
        let (st, info) = s.post_json("/api/conversations", &body).await;
        assert_eq!(st, 201, "{info}");
        let id = info["id"].as_str().unwrap().to_string();
        poll(WAIT, name, || {
            let s = &s;
            let id = id.clone();
            async move {
                let st =
                    s.get_json(&format!("/api/conversations/{id}")).await.1["execution_status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                (st == "error" || st == "finished").then_some(())
            }
        })
        .await;
        let expected = statuses(name);
        let calls = fake.calls();
        let ours: Vec<(u64, String)> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let status = match name {
                    "http429_twice_then_200" if i == 2 => 200,
                    "http429_twice_then_200" => 429,
                    "http401" => 401,
                    "http400" | "http400_context_length" => 400,
                    _ => 500,
                };
                (
                    status,
                    c.header("x-stainless-retry-count")
                        .unwrap_or("-")
                        .to_string(),
                )
            })
            .collect();
        assert_eq!(ours, expected, "{name}");
    }
}

#[test]
fn reply_grouping_follows_unanswered_calls() {
    let capture = load("chat-parallel-with-invalid-calls-step1.json");
    let replies = chat_replies(capture["body"]["messages"].as_array().unwrap());
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["tool_calls"].as_array().unwrap().len(), 4);
    assert_eq!(replies[0]["content"], "mixed");
}
