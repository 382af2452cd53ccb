//! Data compatibility with the reference: a conversations directory and a bash events directory
//! written by openhands-agent-server 1.4.1 (`tests/data/reference-1.4.1`, see its README) are
//! served by this server with the same REST answers the reference gave at recording time
//! (`expected.json` there), and the secrets the reference encrypted with `OH_SECRET_KEY` are
//! decrypted (masked in responses, usable by the agent).
//!
//! The recording ran under the fixed root `/tmp/oh-ref-record` with its fake LLM on port 18099;
//! both strings are substituted (in the data copy and in the expectations) with this test's temp
//! dir and fake LLM. Nothing else in the data is touched.

use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::common::{TestServer, poll};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/reference-1.4.1");
const RECORD_ROOT: &str = "/tmp/oh-ref-record";
const RECORD_LLM: &str = "http://127.0.0.1:18099";
const SECRET_KEY: &str = "test-secret-key";
const RUN_ID: &str = "5e689b32-70f9-4ade-949a-319cf968b9fa";
const TITLED_ID: &str = "8cec7b5e-4bdc-468c-8c84-f9a9e5c49c7a";

/// The reference's data, copied into a temp dir with the recording's root and LLM URL
/// substituted, and a server started on it with the recording's secret key.
struct Loaded {
    server: TestServer,
    /// The data copy; dropped after the server.
    _root: tempfile::TempDir,
    expected: Value,
}

impl Loaded {
    fn start(llm_url: &str) -> Loaded {
        let root = tempfile::tempdir().expect("tempdir");
        let root_str = root.path().to_str().expect("utf-8 temp path").to_string();
        let subst = |text: &str| {
            text.replace(RECORD_ROOT, &root_str)
                .replace(RECORD_LLM, llm_url)
        };
        for d in ["conversations", "bash_events"] {
            copy_tree(&Path::new(DATA).join(d), &root.path().join(d), &subst);
        }
        for d in ["workspace/run", "workspace/titled"] {
            std::fs::create_dir_all(root.path().join(d)).expect("workspace dir");
        }
        let text =
            std::fs::read_to_string(Path::new(DATA).join("expected.json")).expect("expected.json");
        let expected: Value = serde_json::from_str(&subst(&text)).expect("expected.json parses");
        let (convs, bash) = (
            root.path().join("conversations"),
            root.path().join("bash_events"),
        );
        let server = TestServer::start_with(|cfg| {
            cfg.conversations_path = convs;
            cfg.bash_events_dir = bash;
            cfg.secret_key = Some(SECRET_KEY.to_string());
        });
        Loaded {
            server,
            _root: root,
            expected,
        }
    }
}

fn copy_tree(src: &Path, dst: &Path, subst: &dyn Fn(&str) -> String) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read_dir") {
        let entry = entry.expect("entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &to, subst);
        } else {
            let text = std::fs::read_to_string(entry.path()).expect("data files are UTF-8");
            std::fs::write(&to, subst(&text)).expect("write");
        }
    }
}

/// Canonical JSON as Python's `json.dumps(v, sort_keys=True, separators=(",", ":"),
/// ensure_ascii=False)` writes it (the digests in expected.json).
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn digest(v: &Value) -> Value {
    let mut s = String::new();
    canonical(v, &mut s);
    let hex: String = Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({ "sha256": hex })
}

/// The SystemPromptEvent's prompt and tools as digests, as expected.json stores them.
fn digest_system_prompt(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if e["kind"] == "SystemPromptEvent" {
                for field in ["system_prompt", "tools"] {
                    let d = digest(&e[field]);
                    e[field] = d;
                }
            }
            e
        })
        .collect()
}

/// Panics with the JSON paths where `actual` differs from `expected`.
fn assert_same(what: &str, expected: &Value, actual: &Value) {
    let mut diffs = Vec::new();
    diff("$", expected, actual, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{what}: {} difference(s) from the reference:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn diff(path: &str, e: &Value, a: &Value, out: &mut Vec<String>) {
    match (e, a) {
        (Value::Object(em), Value::Object(am)) => {
            for (k, ev) in em {
                match am.get(k) {
                    Some(av) => diff(&format!("{path}.{k}"), ev, av, out),
                    None => out.push(format!("{path}.{k}: missing (expected {ev})")),
                }
            }
            for k in am.keys().filter(|k| !em.contains_key(*k)) {
                out.push(format!("{path}.{k}: unexpected key"));
            }
        }
        (Value::Array(ea), Value::Array(aa)) => {
            if ea.len() != aa.len() {
                out.push(format!("{path}: {} items, expected {}", aa.len(), ea.len()));
            }
            for (i, (ev, av)) in ea.iter().zip(aa).enumerate() {
                diff(&format!("{path}[{i}]"), ev, av, out);
            }
        }
        (Value::Number(en), Value::Number(an)) if en.as_f64() == an.as_f64() => {}
        _ if e == a => {}
        _ => {
            let short = |v: &Value| {
                let s = v.to_string();
                if s.len() > 200 {
                    format!("{}...", &s[..200])
                } else {
                    s
                }
            };
            out.push(format!("{path}: expected {}, got {}", short(e), short(a)));
        }
    }
}

/// A ConversationInfo as the data can carry it: `updated_at` moves (the reference bumps it on
/// every publish and at shutdown), and ADDED_SECRET was added with POST /secrets, which the
/// reference keeps only in memory (its files never had it; PERSISTENCE.md §6).
fn comparable_info(info: &Value) -> Value {
    let mut info = info.clone();
    if let Some(m) = info.as_object_mut() {
        m.remove("updated_at");
    }
    if let Some(s) = info
        .pointer_mut("/secret_registry/secret_sources")
        .and_then(Value::as_object_mut)
    {
        s.remove("ADDED_SECRET");
    }
    info
}

async fn events_of(s: &TestServer, id: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut path = format!("/api/conversations/{id}/events/search?limit=100");
        if let Some(p) = &page {
            path.push_str(&format!("&page_id={p}"));
        }
        let (status, body) = s.get_json(&path).await;
        assert_eq!(status, 200, "events of {id}: {body}");
        items.extend(body["items"].as_array().cloned().unwrap_or_default());
        match body["next_page_id"].as_str() {
            Some(p) => page = Some(p.to_string()),
            None => return items,
        }
    }
}

#[tokio::test]
async fn reference_conversations_are_listed_as_the_reference_listed_them() {
    let l = Loaded::start("http://127.0.0.1:9");
    let s = &l.server;
    let expected = &l.expected["conversations_search"]["items"];

    let (status, page) = s.get_json("/api/conversations/search?limit=100").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["next_page_id"], Value::Null);
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let ids = |v: &[Value]| v.iter().map(|i| i["id"].clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&items),
        ids(expected.as_array().expect("items")),
        "same conversations in the same order"
    );
    for (e, a) in expected.as_array().expect("items").iter().zip(&items) {
        let updated = a["updated_at"].as_str().unwrap_or_default();
        assert!(updated.ends_with('Z'), "updated_at {updated}");
        assert_same(
            &format!("search item {}", e["id"]),
            &comparable_info(e),
            &comparable_info(a),
        );
        // GET of each one answers the same
        let (status, one) = s
            .get_json(&format!(
                "/api/conversations/{}",
                e["id"].as_str().unwrap_or_default()
            ))
            .await;
        assert_eq!(status, 200, "{one}");
        assert_same(
            "GET conversation",
            &comparable_info(e),
            &comparable_info(&one),
        );
    }
    let (status, count) = s.get_json("/api/conversations/count").await;
    assert_eq!(
        (status, count),
        (200, l.expected["conversations_count"].clone())
    );
    let (status, batch) = s
        .get_json(&format!("/api/conversations?ids={RUN_ID}&ids={TITLED_ID}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(batch[0]["id"], RUN_ID);
    assert_eq!(batch[1]["title"], "Reference data title");
}

#[tokio::test]
async fn reference_events_are_served_unchanged() {
    let l = Loaded::start("http://127.0.0.1:9");
    let s = &l.server;
    for id in [RUN_ID, TITLED_ID] {
        let expected = l.expected["events"][id]
            .as_array()
            .cloned()
            .expect("events");
        let actual = events_of(s, id).await;
        assert_same(
            &format!("events of {id}"),
            &Value::Array(expected.clone()),
            &Value::Array(digest_system_prompt(&actual)),
        );
        let (status, count) = s
            .get_json(&format!("/api/conversations/{id}/events/count"))
            .await;
        assert_eq!((status, count), (200, json!(expected.len())));
        // single gets by id
        for e in &actual {
            let eid = e["id"].as_str().unwrap_or_default();
            let (status, one) = s
                .get_json(&format!("/api/conversations/{id}/events/{eid}"))
                .await;
            assert_eq!(status, 200, "{one}");
            assert_eq!(&one, e);
        }
    }
}

#[tokio::test]
async fn digests_match_the_recorded_files() {
    // The canonical JSON here must be the one the recording script hashed: checked on the
    // SystemPromptEvent files themselves, independently of the server.
    let text = std::fs::read_to_string(Path::new(DATA).join("expected.json")).expect("expected");
    let expected: Value = serde_json::from_str(&text).expect("parses");
    let dir = Path::new(DATA).join("conversations/5e689b3270f94ade949a319cf968b9fa/events");
    let first = std::fs::read_dir(&dir)
        .expect("events dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("event-00000-"))
        .expect("event 0");
    let event: Value =
        serde_json::from_str(&std::fs::read_to_string(first).expect("read")).expect("json");
    let got = digest_system_prompt(&[event]);
    let want = &expected["events"][RUN_ID][0];
    assert_eq!(got[0]["system_prompt"], want["system_prompt"]);
    assert_eq!(got[0]["tools"], want["tools"]);
}

#[tokio::test]
async fn reference_bash_events_are_listed() {
    let l = Loaded::start("http://127.0.0.1:9");
    let (status, page) = l
        .server
        .get_json("/api/bash/bash_events/search?sort_order=TIMESTAMP&limit=100")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_same(
        "bash events search",
        &l.expected["bash_events_search"],
        &page,
    );
    let command = &l.expected["bash_events_search"]["items"][0];
    let id = command["id"].as_str().unwrap_or_default();
    let (status, one) = l
        .server
        .get_json(&format!("/api/bash/bash_events/{id}"))
        .await;
    assert_eq!((status, &one), (200, command));
}

/// What the fake LLM saw: the Authorization header and the body of each request.
type Recorded = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A scripted OpenAI-compatible LLM: step N = number of assistant messages in the request;
/// step 0 echoes the secret in the terminal, later steps finish. Records every request.
struct FakeLlm {
    url: String,
    requests: Recorded,
    handle: actix_web::dev::ServerHandle,
}

impl FakeLlm {
    fn start() -> FakeLlm {
        let requests: Recorded = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let recorded = requests.clone();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().expect("addr");
                let data = web::Data::new(recorded);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::JsonConfig::default().limit(64 << 20))
                        .route("/v1/chat/completions", web::post().to(chat))
                })
                .workers(1)
                .listen(listener)
                .expect("listen")
                .run();
                tx.send((addr, server.handle())).expect("send");
                let _ = server.await;
            });
        });
        let (addr, handle) = rx.recv_timeout(Duration::from_secs(10)).expect("fake LLM");
        FakeLlm {
            url: format!("http://{addr}"),
            requests,
            handle,
        }
    }

    fn requests(&self) -> Vec<(Option<String>, Value)> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        let h = self.handle.clone();
        let _ = std::thread::spawn(move || actix_rt::System::new().block_on(h.stop(false))).join();
    }
}

async fn chat(
    req: HttpRequest,
    body: web::Json<Value>,
    recorded: web::Data<Recorded>,
) -> HttpResponse {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let step = body["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "assistant").count())
        .unwrap_or(0);
    if let Ok(mut r) = recorded.lock() {
        r.push((auth, body.0.clone()));
    }
    let (name, args) = if step == 0 {
        (
            "terminal",
            json!({"command": "echo secret=$MY_SECRET", "security_risk": "LOW"}),
        )
    } else {
        ("finish", json!({"message": "done"}))
    };
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert("content".into(), Value::Null);
    message.insert(
        "tool_calls".into(),
        json!([{
            "id": format!("call_{step}"),
            "type": "function",
            "function": {"name": name, "arguments": args.to_string()},
        }]),
    );
    HttpResponse::Ok().json(json!({
        "id": format!("chatcmpl-compat-{step}"),
        "object": "chat.completion",
        "created": 1,
        "model": body["model"],
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }))
}

#[tokio::test]
async fn reference_secrets_are_decrypted() {
    let llm = FakeLlm::start();
    let l = Loaded::start(&llm.url);
    let s = &l.server;

    // masked in responses, but present: decrypted from meta.json with OH_SECRET_KEY (a key that
    // cannot be decrypted comes back as null)
    let (status, info) = s.get_json(&format!("/api/conversations/{TITLED_ID}")).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["agent"]["llm"]["api_key"], "**********");
    assert_eq!(
        info["secret_registry"]["secret_sources"]["MY_SECRET"]["value"],
        "**********"
    );

    // usable by the agent: the LLM key reaches the LLM, the secret reaches the terminal and is
    // masked in what comes back
    let (status, body) = s
        .post_json(
            &format!("/api/conversations/{TITLED_ID}/events"),
            &json!({"role": "user", "content": [{"type": "text", "text": "show the secret"}], "run": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let status = poll(Duration::from_secs(60), "the run to end", || async {
        let (_, info) = s.get_json(&format!("/api/conversations/{TITLED_ID}")).await;
        let st = info["execution_status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ["finished", "error", "stuck"]
            .contains(&st.as_str())
            .then_some(st)
    })
    .await;
    assert_eq!(status, "finished");
    let reqs = llm.requests();
    assert!(!reqs.is_empty());
    for (auth, _) in &reqs {
        assert_eq!(auth.as_deref(), Some("Bearer ohconf-rec-titled"));
    }
    let events = events_of(s, TITLED_ID).await;
    let obs: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "ObservationEvent" && e["tool_name"] == "terminal")
        .collect();
    assert_eq!(obs.len(), 1, "{events:?}");
    let text = obs[0]["observation"]["content"].to_string();
    assert!(text.contains("secret=<secret-hidden>"), "{text}");
    assert!(!text.contains("s3cr3t-from-start"), "{text}");
    assert!(
        !serde_json::to_string(&events)
            .unwrap_or_default()
            .contains("s3cr3t-from-start")
    );
}
