//! `/openapi.json` against the reference's document (`../shared/reference/openapi.json`), the
//! offline documentation pages, and live responses held against the served document.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use agent_server::openapi::conform::violations;
use serde_json::{Value, json};

use crate::common::{KEY, TestServer};

/// Differences from the reference document that this server means, each with its reason. The
/// comparison fails on any difference not listed here, and on any entry here that no longer
/// occurs.
const ALLOWED: &[(&str, &str)] = &[
    // routes the reference serves but leaves out of its document
    (
        "+op GET /openapi.json",
        "this document itself (FastAPI serves it without listing it)",
    ),
    (
        "+op GET /docs",
        "the documentation page (FastAPI does not list it)",
    ),
    (
        "+op GET /redoc",
        "the documentation page (FastAPI does not list it)",
    ),
    (
        "+op GET /docs/oauth2-redirect",
        "the OAuth2 helper page (FastAPI does not list it)",
    ),
    (
        "+op GET /static/{path}",
        "static files, mounted outside FastAPI's router in the reference",
    ),
    (
        "+op GET /sockets/events/{conversation_id}",
        "WebSocket route: OpenAPI has no WebSockets, FastAPI leaves them out; listed here as a GET upgrade",
    ),
    (
        "+op GET /sockets/bash-events",
        "WebSocket route: OpenAPI has no WebSockets, FastAPI leaves them out; listed here as a GET upgrade",
    ),
    // statuses this server documents because it answers them
    (
        "+status GET / 302",
        "redirect to the static files when a static directory is configured (API.md §1)",
    ),
    (
        "+status POST /api/conversations 201",
        "a new conversation is answered with 201, a loaded one with 200 (API.md §2.1)",
    ),
    (
        "+status GET /api/conversations/{conversation_id}/events 404",
        "every event route answers 404 for an unknown conversation (API.md §3)",
    ),
    (
        "+status POST /api/conversations/{conversation_id}/events 404",
        "every event route answers 404 for an unknown conversation (API.md §3)",
    ),
    (
        "+status GET /api/file/download/{path} 400",
        "relative path or a directory (API.md §5.2)",
    ),
    (
        "+status GET /api/file/download/{path} 404",
        "missing file (API.md §5.2)",
    ),
    (
        "+status GET /api/vscode/url 503",
        "VS Code disabled in the configuration (API.md §8)",
    ),
    (
        "+status GET /api/desktop/url 503",
        "desktop disabled in the configuration (API.md §8)",
    ),
    // statuses the reference declares but never answers (its unknown-conversation answers are
    // kept as they are, DEVIATIONS "keep"); this document lists what is answered instead
    (
        "+status DELETE /api/conversations/{conversation_id} 400",
        "unknown conversation is 400, as the reference answers (API.md §2.7)",
    ),
    (
        "-status DELETE /api/conversations/{conversation_id} 404",
        "declared by the reference, never answered: unknown conversation is 400",
    ),
    (
        "+status POST /api/conversations/{conversation_id}/pause 400",
        "unknown conversation is 400, as the reference answers (API.md §2.9)",
    ),
    (
        "-status POST /api/conversations/{conversation_id}/pause 404",
        "declared by the reference, never answered: unknown conversation is 400",
    ),
    (
        "-status PATCH /api/conversations/{conversation_id} 404",
        "declared by the reference, never answered: unknown conversation is 200 {\"success\": false} (API.md §2.6)",
    ),
    (
        "-status POST /api/conversations/{conversation_id}/generate_title 404",
        "declared by the reference, never answered: unknown conversation is 500 (API.md §2.13)",
    ),
    (
        "-status POST /api/conversations/{conversation_id}/ask_agent 404",
        "declared by the reference, never answered: unknown conversation is 500 (API.md §2.14)",
    ),
];

/// Reference components this server's document does not have, with the reason. Informative:
/// the comparison of routes and of request/response schema names above is the contract.
const NOT_EMITTED: &[(&str, &str)] = &[
    (
        "BaseWorkspace",
        "only LocalWorkspace exists here; the field refers to it directly",
    ),
    ("RemoteWorkspace", "only LocalWorkspace exists here"),
    (
        "ConversationStats-Input",
        "one schema serves both directions (ConversationStats-Output)",
    ),
    ("BrowserAction", "browser tools are not run by this server"),
    (
        "BrowserClickAction",
        "browser tools are not run by this server",
    ),
    (
        "BrowserCloseTabAction",
        "browser tools are not run by this server",
    ),
    (
        "BrowserGetContentAction",
        "browser tools are not run by this server",
    ),
    (
        "BrowserGetStateAction",
        "browser tools are not run by this server",
    ),
    (
        "BrowserGoBackAction",
        "browser tools are not run by this server",
    ),
    (
        "BrowserListTabsAction",
        "browser tools are not run by this server",
    ),
    (
        "BrowserNavigateAction",
        "browser tools are not run by this server",
    ),
    (
        "BrowserObservation",
        "browser tools are not run by this server",
    ),
    (
        "BrowserScrollAction",
        "browser tools are not run by this server",
    ),
    (
        "BrowserSwitchTabAction",
        "browser tools are not run by this server",
    ),
    (
        "BrowserTypeAction",
        "browser tools are not run by this server",
    ),
    ("GlobAction", "the glob tool is not run by this server"),
    ("GlobObservation", "the glob tool is not run by this server"),
    ("GrepAction", "the grep tool is not run by this server"),
    ("GrepObservation", "the grep tool is not run by this server"),
    (
        "PlanningFileEditorAction",
        "the planning file editor is not run by this server",
    ),
    (
        "PlanningFileEditorObservation",
        "the planning file editor is not run by this server",
    ),
    ("MCPToolAction", "MCP tools are not run by this server"),
    ("MCPToolObservation", "MCP tools are not run by this server"),
    (
        "ExecuteBashAction",
        "legacy name of TerminalAction; never produced",
    ),
    (
        "ExecuteBashObservation",
        "legacy name of TerminalObservation; never produced",
    ),
];

/// The reference document: `$OH_REFERENCE_OPENAPI`, `$SHARED/reference/openapi.json`, or the
/// shared folder next to the repository.
fn reference_document() -> Option<Value> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(p) = std::env::var("OH_REFERENCE_OPENAPI") {
        candidates.push(p.into());
    }
    if let Ok(s) = std::env::var("SHARED") {
        candidates.push(PathBuf::from(s).join("reference/openapi.json"));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    candidates.push(root.join("../shared/reference/openapi.json"));
    candidates.push("/work/shared/reference/openapi.json".into());
    for c in &candidates {
        if let Ok(text) = std::fs::read_to_string(c) {
            return Some(serde_json::from_str(&text).expect("reference openapi.json is JSON"));
        }
    }
    assert!(
        std::env::var_os("OH_REQUIRE_REFERENCE").is_none(),
        "reference openapi.json not found in {candidates:?} (set SHARED or OH_REFERENCE_OPENAPI)"
    );
    eprintln!("skipping: reference openapi.json not found in {candidates:?}");
    None
}

fn ref_names(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                out.insert(r.rsplit('/').next().unwrap_or(r).to_string());
            }
            o.values().for_each(|c| ref_names(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| ref_names(c, out)),
        _ => {}
    }
}

fn names_in(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    ref_names(v, &mut out);
    out
}

/// `(METHOD, path)` -> operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            out.insert((method.to_uppercase(), path.clone()), op.clone());
        }
    }
    out
}

/// Every difference in routes, methods, parameters, request and response schema names and
/// status codes, one line each.
fn differences(ours: &Value, reference: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (o, r) = (operations(ours), operations(reference));
    for (m, p) in o.keys().filter(|k| !r.contains_key(*k)) {
        out.push(format!("+op {m} {p}"));
    }
    for (m, p) in r.keys().filter(|k| !o.contains_key(*k)) {
        out.push(format!("-op {m} {p}"));
    }
    for ((m, p), ro) in &r {
        let Some(oo) = o.get(&(m.clone(), p.clone())) else {
            continue;
        };
        let at = format!("{m} {p}");
        if oo["operationId"] != ro["operationId"] {
            out.push(format!(
                "operationId {at}: ours {} reference {}",
                oo["operationId"], ro["operationId"]
            ));
        }
        let params = |op: &Value| -> BTreeMap<(String, String), (bool, BTreeSet<String>)> {
            op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        (
                            p["in"].as_str().unwrap_or("").to_string(),
                            p["name"].as_str().unwrap_or("").to_string(),
                        ),
                        (
                            p["required"].as_bool().unwrap_or(false),
                            names_in(&p["schema"]),
                        ),
                    )
                })
                .collect()
        };
        let (op_, rp) = (params(oo), params(ro));
        for (k, v) in &op_ {
            match rp.get(k) {
                None => out.push(format!("+param {at} {}:{}", k.0, k.1)),
                Some(rv) if rv != v => out.push(format!(
                    "param {at} {}:{}: ours {v:?} reference {rv:?}",
                    k.0, k.1
                )),
                Some(_) => {}
            }
        }
        for k in rp.keys().filter(|k| !op_.contains_key(*k)) {
            out.push(format!("-param {at} {}:{}", k.0, k.1));
        }
        let body = |op: &Value| -> Option<(BTreeSet<String>, BTreeSet<String>)> {
            let b = op.get("requestBody")?;
            let types = b["content"]
                .as_object()
                .map(|c| c.keys().cloned().collect())
                .unwrap_or_default();
            Some((types, names_in(b)))
        };
        if body(oo) != body(ro) {
            out.push(format!(
                "body {at}: ours {:?} reference {:?}",
                body(oo),
                body(ro)
            ));
        }
        let statuses = |op: &Value| -> BTreeMap<String, BTreeSet<String>> {
            op["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(s, r)| (s.clone(), names_in(r)))
                .collect()
        };
        let (os, rs) = (statuses(oo), statuses(ro));
        for (s, names) in &os {
            match rs.get(s) {
                None => out.push(format!("+status {at} {s}")),
                Some(rn) if rn != names => out.push(format!(
                    "response {at} {s}: ours {names:?} reference {rn:?}"
                )),
                Some(_) => {}
            }
        }
        for s in rs.keys().filter(|s| !os.contains_key(*s)) {
            out.push(format!("-status {at} {s}"));
        }
    }
    out
}

#[tokio::test]
async fn the_document_differs_from_the_reference_only_where_intended() {
    let Some(reference) = reference_document() else {
        return;
    };
    let s = TestServer::start();
    // open route: no key
    let r = reqwest::get(s.url("/openapi.json")).await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let ours: Value = r.json().await.expect("json");
    for key in ["openapi", "info", "paths", "components"] {
        assert!(ours.get(key).is_some(), "document without `{key}`");
    }
    assert!(
        ours["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );

    let found = differences(&ours, &reference);
    println!("differences from the reference document ({}):", found.len());
    for d in &found {
        let reason = ALLOWED.iter().find(|(k, _)| k == d).map(|(_, r)| *r);
        println!("  {d}  -- {}", reason.unwrap_or("NOT ALLOWED"));
    }
    let unexpected: Vec<&String> = found
        .iter()
        .filter(|d| !ALLOWED.iter().any(|(k, _)| k == d))
        .collect();
    let stale: Vec<&str> = ALLOWED
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| !found.iter().any(|d| d == k))
        .collect();

    // component names: ours must be the reference's names; theirs that we lack are listed
    let names = |d: &Value| -> BTreeSet<String> {
        d["components"]["schemas"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let (on, rn) = (names(&ours), names(&reference));
    let invented: Vec<&String> = on.difference(&rn).collect();
    let lacking: Vec<&String> = rn.difference(&on).collect();
    println!(
        "reference components not in this document ({}):",
        lacking.len()
    );
    for n in &lacking {
        let reason = NOT_EMITTED.iter().find(|(k, _)| k == n).map(|(_, r)| *r);
        println!("  {n}  -- {}", reason.unwrap_or("NOT LISTED"));
    }
    let unlisted: Vec<&String> = lacking
        .iter()
        .copied()
        .filter(|n| !NOT_EMITTED.iter().any(|(k, _)| *k == n.as_str()))
        .collect();
    let emitted_after_all: Vec<&str> = NOT_EMITTED
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| on.contains(*k))
        .collect();

    assert!(
        unexpected.is_empty(),
        "differences not in ALLOWED: {unexpected:#?}"
    );
    assert!(
        stale.is_empty(),
        "ALLOWED entries that no longer occur: {stale:#?}"
    );
    assert!(
        invented.is_empty(),
        "component names the reference does not have: {invented:?}"
    );
    assert!(
        unlisted.is_empty(),
        "reference components missing without a reason: {unlisted:?}"
    );
    assert!(
        emitted_after_all.is_empty(),
        "NOT_EMITTED entries that are emitted now: {emitted_after_all:?}"
    );
}

#[tokio::test]
async fn the_documentation_pages_work_offline() {
    let s = TestServer::start();
    for path in ["/docs", "/redoc"] {
        let r = reqwest::get(s.url(path)).await.expect("request");
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = r.text().await.unwrap();
        assert!(
            html.contains("fetch(\"openapi.json\")"),
            "{path} loads the document"
        );
        for external in ["src=\"http", "href=\"http", "url(http", "@import", "cdn"] {
            assert!(!html.contains(external), "{path} refers to {external}");
        }
    }
    let r = reqwest::get(s.url("/docs/oauth2-redirect"))
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<script>"));
    // the gate knows the pages: wrong method and trailing slash as for every route
    let r = reqwest::Client::new()
        .post(s.url("/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(s.url("/openapi.json/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
}

/// Holds live responses against the served document.
struct Checker {
    doc: Value,
    checked: BTreeSet<(String, String, u16)>,
}

impl Checker {
    /// The schema of `status` of `METHOD template`, or `None` when it has no JSON body.
    fn schema(&self, method: &str, template: &str, status: u16) -> Option<Value> {
        let op = &self.doc["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        let resp = &op["responses"][status.to_string()];
        assert!(
            resp.is_object(),
            "{method} {template} answered {status}, which is not documented"
        );
        resp.pointer("/content/application~1json/schema").cloned()
    }

    fn check(&mut self, method: &str, template: &str, status: u16, body: &Value) {
        if let Some(schema) = self.schema(method, template, status) {
            let errs = violations(&self.doc, &schema, body);
            assert!(
                errs.is_empty(),
                "{method} {template} {status}: {errs:#?}\nbody: {body}"
            );
        }
        self.checked
            .insert((method.to_string(), template.to_string(), status));
    }
}

async fn call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rq = s.client().request(method, s.url(path));
    if let Some(b) = body {
        rq = rq.json(&b);
    }
    let r = rq.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn live_responses_match_the_document() {
    use reqwest::Method;
    let s = TestServer::start();
    let doc: Value = reqwest::get(s.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut c = Checker {
        doc,
        checked: BTreeSet::new(),
    };
    macro_rules! expect {
        ($method:ident, $template:expr, $path:expr, $body:expr, $status:expr) => {{
            let (st, v) = call(&s, Method::$method, &$path, $body).await;
            assert_eq!(st, $status, "{} {}: {}", stringify!($method), $path, v);
            c.check(stringify!($method), $template, st, &v);
            v
        }};
    }

    for p in ["/alive", "/health", "/server_info", "/"] {
        expect!(GET, p, p, None, 200);
    }
    expect!(GET, "/api/tools/", "/api/tools/", None, 200);
    expect!(GET, "/api/vscode/status", "/api/vscode/status", None, 200);
    expect!(GET, "/api/vscode/url", "/api/vscode/url", None, 503);
    expect!(GET, "/api/desktop/url", "/api/desktop/url", None, 503);

    // conversations
    let ws = s.dir.path().join("ws");
    let start = json!({
        "agent": {"llm": {"model": "openai/m", "api_key": "sk", "usage_id": "agent"},
                  "tools": [{"name": "terminal"}, {"name": "file_editor"}]},
        "workspace": {"working_dir": ws.to_string_lossy()},
        "secrets": {"TOKEN": {"kind": "StaticSecret", "value": "v"}},
    });
    let info = expect!(
        POST,
        "/api/conversations",
        "/api/conversations",
        Some(start),
        201
    );
    let id = info["id"].as_str().unwrap().to_string();
    let one = "/api/conversations/{conversation_id}";
    expect!(GET, one, format!("/api/conversations/{id}"), None, 200);
    expect!(GET, one, "/api/conversations/not-a-uuid", None, 422);
    expect!(
        GET,
        one,
        "/api/conversations/00000000-0000-0000-0000-000000000001",
        None,
        404
    );
    expect!(
        GET,
        "/api/conversations/search",
        "/api/conversations/search?limit=5",
        None,
        200
    );
    expect!(
        GET,
        "/api/conversations/count",
        "/api/conversations/count?status=idle",
        None,
        200
    );
    expect!(
        GET,
        "/api/conversations",
        format!("/api/conversations?ids={id}&ids=00000000-0000-0000-0000-000000000001"),
        None,
        200
    );
    expect!(
        PATCH,
        one,
        format!("/api/conversations/{id}"),
        Some(json!({"title": "T"})),
        200
    );
    let sub = |tail: &str| format!("/api/conversations/{id}/{tail}");
    expect!(
        POST,
        "/api/conversations/{conversation_id}/confirmation_policy",
        sub("confirmation_policy"),
        Some(json!({"policy": {"kind": "ConfirmRisky", "threshold": "MEDIUM"}})),
        200
    );
    expect!(
        POST,
        "/api/conversations/{conversation_id}/security_analyzer",
        sub("security_analyzer"),
        Some(json!({"security_analyzer": {"kind": "LLMSecurityAnalyzer"}})),
        200
    );
    expect!(
        POST,
        "/api/conversations/{conversation_id}/secrets",
        sub("secrets"),
        Some(
            json!({"secrets": {"PLAIN": "p", "LOOKUP": {"kind": "LookupSecret", "url": "http://127.0.0.1:9/x"}}})
        ),
        200
    );
    expect!(
        POST,
        "/api/conversations/{conversation_id}/events",
        sub("events"),
        Some(json!({"role": "user", "content": [{"type": "text", "text": "hello"}], "run": false})),
        200
    );
    let info = expect!(GET, one, format!("/api/conversations/{id}"), None, 200);
    assert_eq!(info["confirmation_policy"]["kind"], "ConfirmRisky");
    let page = expect!(
        GET,
        "/api/conversations/{conversation_id}/events/search",
        sub("events/search"),
        None,
        200
    );
    let event_id = page["items"][0]["id"].as_str().unwrap().to_string();
    expect!(
        GET,
        "/api/conversations/{conversation_id}/events/count",
        sub("events/count"),
        None,
        200
    );
    expect!(
        GET,
        "/api/conversations/{conversation_id}/events/{event_id}",
        sub(&format!("events/{event_id}")),
        None,
        200
    );
    expect!(
        GET,
        "/api/conversations/{conversation_id}/events",
        sub("events"),
        Some(json!([event_id, "no-such-event"])),
        200
    );

    // bash
    let out = expect!(
        POST,
        "/api/bash/execute_bash_command",
        "/api/bash/execute_bash_command",
        Some(json!({"command": "echo hi"})),
        200
    );
    assert_eq!(out["exit_code"], 0);
    let cmd = expect!(
        POST,
        "/api/bash/start_bash_command",
        "/api/bash/start_bash_command",
        Some(json!({"command": "true", "timeout": 5})),
        200
    );
    let cmd_id = cmd["id"].as_str().unwrap().to_string();
    expect!(
        GET,
        "/api/bash/bash_events/search",
        "/api/bash/bash_events/search",
        None,
        200
    );
    expect!(
        GET,
        "/api/bash/bash_events/{event_id}",
        format!("/api/bash/bash_events/{cmd_id}"),
        None,
        200
    );
    expect!(
        GET,
        "/api/bash/bash_events/",
        "/api/bash/bash_events/",
        Some(json!([cmd_id, "0"])),
        200
    );
    expect!(
        POST,
        "/api/bash/execute_bash_command",
        "/api/bash/execute_bash_command",
        Some(json!({"timeout": "x"})),
        422
    );

    // git and files
    let repo = s.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git2::Repository::init(&repo).unwrap();
    std::fs::write(repo.join("a.txt"), "one\n").unwrap();
    let repo_path = repo.to_string_lossy().to_string();
    expect!(
        GET,
        "/api/git/changes/{path}",
        format!("/api/git/changes/{repo_path}"),
        None,
        200
    );
    expect!(
        GET,
        "/api/git/diff/{path}",
        format!("/api/git/diff/{repo_path}/a.txt"),
        None,
        200
    );
    expect!(
        GET,
        "/api/file/download/{path}",
        format!("/api/file/download/{repo_path}/missing"),
        None,
        404
    );
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("f"),
    );
    let r = s
        .client()
        .post(s.url(&format!("/api/file/upload/{repo_path}/up.txt")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    c.check("POST", "/api/file/upload/{path}", 200, &v);

    expect!(
        DELETE,
        "/api/bash/bash_events",
        "/api/bash/bash_events",
        None,
        200
    );
    expect!(DELETE, one, format!("/api/conversations/{id}"), None, 200);
    expect!(DELETE, one, format!("/api/conversations/{id}"), None, 400);

    // the key is enforced on documented /api/ routes only
    let r = reqwest::get(s.url("/api/tools/")).await.unwrap();
    assert_eq!(r.status(), 401);
    let secured = c.doc["paths"]["/api/tools/"]["get"]["security"][0]
        .get("SessionApiKey")
        .is_some();
    assert!(secured);
    assert!(c.doc["paths"]["/health"]["get"].get("security").is_none());
    let _ = KEY;
    println!(
        "checked {} (route, status) pairs against the document",
        c.checked.len()
    );
}
