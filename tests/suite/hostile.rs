//! Hostile input over the wire: oversized bodies and frames, deeply nested JSON, random bytes on
//! every route of the table, path traversal in the file, git and static routes and in bash
//! `cwd`, non-UTF-8 file names and command output. Past any of it the server still answers.
//! (Property tests of the models and path rules sit beside the code: `src/*/proptests.rs`.)

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use agent_server::http::ROUTES;
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::proc::Spawned;
use crate::common::routes::{Fixture, is_socket};
use crate::common::{KEY, TestServer, poll, raw};

/// Every route that reads a JSON body (a new one must be added here: the test finds them by
/// their answer to a broken body and compares).
const JSON_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/conversations"),
    ("PATCH", "/api/conversations/{conversation_id}"),
    ("POST", "/api/conversations/{conversation_id}/secrets"),
    (
        "POST",
        "/api/conversations/{conversation_id}/confirmation_policy",
    ),
    (
        "POST",
        "/api/conversations/{conversation_id}/security_analyzer",
    ),
    (
        "POST",
        "/api/conversations/{conversation_id}/generate_title",
    ),
    ("POST", "/api/conversations/{conversation_id}/ask_agent"),
    (
        "POST",
        "/api/conversations/{conversation_id}/events/respond_to_confirmation",
    ),
    ("GET", "/api/conversations/{conversation_id}/events"),
    ("POST", "/api/conversations/{conversation_id}/events"),
    ("GET", "/api/bash/bash_events/"),
    ("POST", "/api/bash/start_bash_command"),
    ("POST", "/api/bash/execute_bash_command"),
];

/// Requests per route in the random-input test.
const RANDOM_REQUESTS_PER_ROUTE: usize = 24;
/// Longest a request may take before it counts as a hang.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    crate::common::keyed_client(KEY)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_DEADLINE)
        .build()
        .expect("client")
}

async fn status_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn healthy(base: &str) {
    let r = reqwest::get(format!("{base}/health"))
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
}

/// The fixture-filled routes of the table, without the sockets.
fn rest_routes() -> Vec<(&'static str, &'static str)> {
    let mut routes: Vec<_> = ROUTES
        .iter()
        .copied()
        .filter(|(_, p)| !is_socket(p))
        .collect();
    routes.sort_by_key(|(m, _)| *m == "DELETE");
    routes
}

// ------------------------------------------------------------------------------- body limits

#[tokio::test]
async fn every_json_route_answers_oversized_bodies_with_a_413_json_error() {
    const LIMIT: usize = 64 * 1024;
    let s = TestServer::start_with(|c| c.max_body_bytes = LIMIT);
    let fx = Fixture::create(&s).await;
    let c = client();
    // which routes read a JSON body: they answer a broken body with json_invalid
    let mut found = Vec::new();
    for (method, pattern) in rest_routes() {
        if pattern == "/api/file/upload/{path:.*}" {
            continue; // multipart, streamed to disk, not bound by the JSON limit
        }
        // (an unknown id on DELETE: the fixture stays)
        let path = match method {
            "DELETE" => pattern.replace("{conversation_id}", &uuid::Uuid::new_v4().to_string()),
            _ => fx.path(pattern),
        };
        let r = c
            .request(method.parse().unwrap(), s.url(&path))
            .header("content-type", "application/json")
            .body("{\"a\": ")
            .send()
            .await
            .unwrap();
        let (status, body) = status_json(r).await;
        if status == 422 && body["detail"][0]["type"] == "json_invalid" {
            found.push((method, pattern));
        }
    }
    let mut expected = JSON_ROUTES.to_vec();
    expected.sort();
    found.sort();
    assert_eq!(found, expected, "routes that read a JSON body");

    let events_path = format!("/api/conversations/{}/events/count", fx.conversation);
    let (_, events_before) = s.get_json(&events_path).await;
    let big = json!({"content": [{"type": "text", "text": "x".repeat(LIMIT)}]}).to_string();
    for (method, pattern) in JSON_ROUTES {
        let url = s.url(&fx.path(pattern));
        // with a content-length, and streamed without one
        let sized = c
            .request(method.parse().unwrap(), &url)
            .header("content-type", "application/json")
            .body(big.clone());
        let r = sized.send().await.unwrap();
        let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
        assert_eq!(
            (status_json(r).await, content_type.as_str()),
            (
                (413, json!({"detail": "Request body too large"})),
                "application/json"
            ),
            "{method} {pattern} with a content-length"
        );
        // chunked, without a length (raw: HTTP clients drop streamed bodies on a GET)
        let mut chunked = Vec::new();
        for piece in big.as_bytes().chunks(4096) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let head = format!(
            "{method} {} HTTP/1.1\r\nHost: x\r\nX-Session-API-Key: {KEY}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked",
            fx.path(pattern)
        );
        let a =
            raw::request(s.addr, head.as_bytes(), &chunked, REQUEST_DEADLINE).expect("an answer");
        assert_eq!(
            (a.status, a.json(), a.header("content-type")),
            (
                413,
                json!({"detail": "Request body too large"}),
                Some("application/json")
            ),
            "{method} {pattern} chunked"
        );
    }
    // the urlencoded branch of upload is bound too
    let r = c
        .post(s.url(&format!("/api/file/upload/{}", fx.file.display())))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("file={}", "x".repeat(LIMIT)))
        .send()
        .await
        .unwrap();
    assert_eq!(status_json(r).await.0, 413);
    // nothing was appended by the refused messages
    assert_eq!(s.get_json(&events_path).await.1, events_before);
    healthy(&s.base).await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_exhausting_the_stack() {
    let s = TestServer::start();
    let fx = Fixture::create(&s).await;
    let c = client();
    let bodies = [
        "[".repeat(100_000),
        "{\"a\":".repeat(50_000),
        format!("{}{}", "[".repeat(1_000), "]".repeat(1_000)),
        format!(
            "{{\"content\":[{{\"type\":\"text\",\"text\":{}1{}}}]}}",
            "[".repeat(200),
            "]".repeat(200)
        ),
    ];
    for (method, pattern) in JSON_ROUTES {
        for body in &bodies {
            let r = c
                .request(method.parse().unwrap(), s.url(&fx.path(pattern)))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let (status, v) = status_json(r).await;
            assert_eq!(
                (status, v["detail"][0]["type"].as_str()),
                (422, Some("json_invalid")),
                "{method} {pattern} with {}…",
                &body[..20]
            );
        }
    }
    // the same on the bash socket: the frame is ignored, the socket keeps working
    let mut ws = bash_socket(&s.addr.to_string()).await;
    for body in &bodies {
        ws.send(Message::Text(body.clone())).await.unwrap();
    }
    ws.send(Message::Text(
        json!({"command": "echo still-here"}).to_string(),
    ))
    .await
    .unwrap();
    let out = next_output(&mut ws).await;
    assert_eq!(out["stdout"], "still-here\n");
    healthy(&s.base).await;
}

// ------------------------------------------------------------------------------- random input

/// Field names and kinds of the wire models, so random JSON gets past the first checks.
const VOCABULARY: &[&str] = &[
    "kind",
    "agent",
    "llm",
    "model",
    "api_key",
    "tools",
    "name",
    "workspace",
    "working_dir",
    "content",
    "type",
    "text",
    "role",
    "run",
    "secrets",
    "value",
    "policy",
    "accept",
    "reason",
    "title",
    "question",
    "max_length",
    "cwd",
    "timeout",
    "conversation_id",
    "initial_message",
    "max_iterations",
    "image_urls",
    "security_analyzer",
    "Agent",
    "StaticSecret",
    "LookupSecret",
    "NeverConfirm",
    "ConfirmRisky",
    "user",
    "system",
    "image",
    "LocalWorkspace",
];

fn random_string(rng: &mut StdRng) -> String {
    match rng.gen_range(0..4) {
        0 => VOCABULARY[rng.gen_range(0..VOCABULARY.len())].to_string(),
        1 => (0..rng.gen_range(0..40))
            .map(|_| char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('\u{FFFD}'))
            .collect(),
        2 => "\u{0}\u{1b}[31m\\\"'%00../..".to_string(),
        _ => "x".repeat(rng.gen_range(0..5000)),
    }
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    let pick = if depth == 0 {
        rng.gen_range(0..5)
    } else {
        rng.gen_range(0..7)
    };
    match pick {
        0 => Value::Null,
        1 => Value::Bool(rng.r#gen()),
        2 => match rng.gen_range(0..4) {
            0 => json!(rng.r#gen::<i64>()),
            1 => json!(rng.r#gen::<u64>()),
            2 => json!(rng.r#gen::<f64>() * 1e300),
            _ => json!(rng.gen_range(-3..300)),
        },
        3 | 4 => Value::String(random_string(rng)),
        5 => Value::Array(
            (0..rng.gen_range(0..5))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.gen_range(0..6))
                .map(|_| (random_string(rng), random_json(rng, depth - 1)))
                .collect(),
        ),
    }
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    (0..rng.gen_range(0..max)).map(|_| rng.r#gen()).collect()
}

fn percent_encoded(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// A random body and its content type.
fn random_body(rng: &mut StdRng) -> (Vec<u8>, Option<&'static str>) {
    let content_type = [
        Some("application/json"),
        Some("application/json; charset=latin-1"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=XyZ"),
        Some("multipart/form-data"),
        Some("application/x-www-form-urlencoded"),
        Some("application/vnd.api+json"),
        None,
    ][rng.gen_range(0..8)];
    let body = match rng.gen_range(0..5) {
        0 => random_bytes(rng, 2048),
        1 | 2 => random_json(rng, 4).to_string().into_bytes(),
        3 => {
            let mut b = random_json(rng, 4).to_string().into_bytes();
            b.truncate(rng.gen_range(0..b.len().max(1)));
            b
        }
        _ => {
            let mut b = Vec::new();
            for _ in 0..rng.gen_range(0..4) {
                let name = ["file", "destination_path", "x"][rng.gen_range(0..3)];
                b.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
                b.extend_from_slice(name.as_bytes());
                if rng.r#gen() {
                    b.extend_from_slice(b"\"; filename=\"");
                    b.extend_from_slice(&random_bytes(rng, 20));
                }
                b.extend_from_slice(b"\"\r\n\r\n");
                b.extend_from_slice(&random_bytes(rng, 512));
                b.extend_from_slice(b"\r\n");
            }
            if rng.r#gen() {
                b.extend_from_slice(b"--XyZ--\r\n");
            }
            b
        }
    };
    (body, content_type)
}

/// The 5xx answers the reference itself gives on these routes (API.md §2.13, §2.14, §5, §6, §8;
/// a failed run on `/run`).
fn reference_5xx(pattern: &str, status: u16, body: &Value) -> bool {
    let exception = body["exception"].as_str().unwrap_or("");
    match (pattern, status) {
        (
            "/api/conversations/{conversation_id}/generate_title"
            | "/api/conversations/{conversation_id}/ask_agent"
            | "/api/file/download/{path:.*}"
            | "/api/file/download-trajectory/{conversation_id}"
            | "/api/git/changes/{path:.*}"
            | "/api/git/diff/{path:.*}",
            500,
        ) => true,
        ("/api/file/upload/{path:.*}", 500) => exception.starts_with("500: Failed to upload file"),
        (
            "/api/conversations/{conversation_id}/run"
            | "/api/conversations/{conversation_id}/events/respond_to_confirmation",
            500,
        ) => exception.starts_with("Conversation run failed"),
        ("/api/vscode/url" | "/api/desktop/url", 503) => true,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_on_every_route_never_crash_or_hang() {
    // the real binary in a scratch directory: whatever random input manages to create lands there
    let dir = tempfile::tempdir().unwrap();
    let mut server = Spawned::start(dir.path(), &[("OH_SESSION_API_KEYS_0", KEY)]);
    let base = server.base();
    let fx = Fixture::create_at(&base, KEY).await;
    let scratch = fx._dir.path().join("scratch");
    let c = client();
    let mut rng = StdRng::seed_from_u64(0x5eed_0010);
    let mut tried = 0usize;
    for (method, pattern) in rest_routes() {
        for i in 0..RANDOM_REQUESTS_PER_ROUTE {
            let mut path = fx.path(pattern);
            if i % 3 == 1 {
                // random path parameters (file paths stay inside the scratch directory)
                let junk = percent_encoded(&random_bytes(&mut rng, 24));
                path = pattern
                    .replace("{conversation_id}", &junk)
                    .replace("{event_id}", &junk)
                    .replace("{path:.*}", &format!("{}/{junk}", scratch.display()));
            }
            if i % 2 == 0 {
                path.push('?');
                path.push_str(
                    &percent_encoded(&random_bytes(&mut rng, 40)).replacen("%3D", "=", 1),
                );
            }
            let (body, content_type) = random_body(&mut rng);
            let mut req = c
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .body(body.clone());
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let r = req.send().await.unwrap_or_else(|e| {
                panic!(
                    "{method} {path}: no answer ({e}) to {:?}; log:\n{}",
                    String::from_utf8_lossy(&body),
                    server.log()
                )
            });
            tried += 1;
            let (status, v) = status_json(r).await;
            if status >= 500 {
                assert_eq!(
                    v["detail"], "Internal Server Error",
                    "{method} {path}: a 5xx without the reference's body"
                );
                assert!(
                    reference_5xx(pattern, status, &v),
                    "{method} {path}: {status} {v} for {:?}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }
    // the sockets: random text and binary frames are ignored
    let mut ws = bash_socket(&format!("127.0.0.1:{}", server.port)).await;
    for _ in 0..RANDOM_REQUESTS_PER_ROUTE {
        let frame = if rng.r#gen() {
            Message::Binary(random_bytes(&mut rng, 4096))
        } else {
            Message::Text(random_json(&mut rng, 4).to_string())
        };
        ws.send(frame).await.unwrap();
        tried += 1;
    }
    ws.send(Message::Text(json!({"command": "echo alive"}).to_string()))
        .await
        .unwrap();
    loop {
        let out = next_output(&mut ws).await;
        if out["stdout"] == "alive\n" {
            break;
        }
    }
    healthy(&base).await;
    eprintln!("random input: {tried} requests and frames");
    let (status, took) = tokio::task::block_in_place(|| server.terminate(Duration::from_secs(15)));
    assert!(status.success(), "{status:?} after {took:?}");
    let log = server.log();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
}

// ------------------------------------------------------------------------------- traversal

fn raw_get(s: &TestServer, target: &[u8]) -> raw::RawResponse {
    let mut head = b"GET ".to_vec();
    head.extend_from_slice(target);
    head.extend_from_slice(format!(" HTTP/1.1\r\nHost: x\r\nX-Session-API-Key: {KEY}").as_bytes());
    raw::request(s.addr, &head, b"", REQUEST_DEADLINE).expect("an HTTP answer")
}

#[tokio::test]
async fn traversal_follows_the_reference_rules() {
    let site = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<h1>in</h1>").unwrap();
    std::fs::create_dir(site.path().join("sub")).unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        site.path().join("escape"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), site.path().join("escape-dir")).unwrap();
    std::os::unix::fs::symlink(site.path().join("index.html"), site.path().join("inside")).unwrap();
    let site_path = site.path().to_path_buf();
    let s = TestServer::start_with(|c| c.static_files_path = Some(site_path));
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("real.txt"), "real").unwrap();
    let r = root.display().to_string();

    // download: relative forms (however encoded) are refused; absolute ones are the kernel's
    for target in [
        "/api/file/download/%2e%2e/%2e%2e/etc/hostname".to_string(),
        "/api/file/download/..%2f..%2fetc%2fhostname".to_string(),
        "/api/file/download/.%2E/x".to_string(),
        "/api/file/download/../../etc/hostname".to_string(),
        format!("/api/file/download{r}/real.txt"),
    ] {
        let a = raw_get(&s, target.as_bytes());
        assert_eq!(
            (a.status, a.json()),
            (400, json!({"detail": "Path must be absolute"})),
            "{target}"
        );
    }
    for (target, expected) in [
        (format!("/api/file/download/{r}/sub/%2e%2e/real.txt"), 200),
        (format!("/api/file/download/{r}/sub/../real.txt"), 200),
        (format!("/api/file/download/{r}%2Fsub%2F..%2Freal.txt"), 200),
        (
            format!("/api/file/download/{r}/missing/%2e%2e/real.txt"),
            404,
        ),
    ] {
        let a = raw_get(&s, target.as_bytes());
        assert_eq!(a.status, expected, "{target}: {:?}", a.json());
        if expected == 200 {
            assert_eq!(a.body, b"real", "{target}");
        }
    }
    // a symlink loop is "not found", as `Path.exists()` says
    std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
    let a = raw_get(&s, format!("/api/file/download/{r}/loop").as_bytes());
    assert_eq!(
        (a.status, a.json()),
        (404, json!({"detail": "File not found"}))
    );

    // upload: relative forms refused (nothing written), absolute `..` resolved by the kernel
    let c = client();
    let part = || {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"up".to_vec()).file_name("f"),
        )
    };
    let r_upload = |tail: String| {
        let c = c.clone();
        let url = s.url(&format!("/api/file/upload/{tail}"));
        async move {
            let r = c.post(url).multipart(part()).send().await.unwrap();
            status_json(r).await
        }
    };
    // raw, so that `%2e%2e` reaches the server as sent
    let name = format!("hostile-{}.txt", std::process::id());
    let form = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nup\r\n--B--\r\n";
    for target in [
        format!("/api/file/upload/%2e%2e/{name}"),
        format!("/api/file/upload/..%2F{name}"),
        format!("/api/file/upload/../{name}"),
    ] {
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nX-Session-API-Key: {KEY}\r\n\
             Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {}",
            form.len()
        );
        let a = raw::request(s.addr, head.as_bytes(), form, REQUEST_DEADLINE).expect("answer");
        assert_eq!(
            (a.status, a.json()["exception"].as_str()),
            (
                500,
                Some("500: Failed to upload file: 400: Path must be absolute")
            ),
            "{target}"
        );
    }
    assert!(!Path::new("..").join(&name).exists());
    let (st, _) = r_upload(format!("{r}/missing/%2e%2e/up.txt")).await;
    assert_eq!(st, 200);
    assert_eq!(std::fs::read(root.join("up.txt")).unwrap(), b"up");
    // through a symlinked directory the file lands in the target, as `open()` would
    std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
    let (st, _) = r_upload(format!("{r}/link/through.txt")).await;
    assert_eq!(st, 200);
    assert!(outside.path().join("through.txt").is_file());
    // onto a symlink loop: the OS error, as `open()` reports it in the reference
    let (st, v) = r_upload(format!("{r}/loop")).await;
    assert_eq!(
        (st, v["exception"].as_str().unwrap_or("")),
        (
            500,
            format!("500: Failed to upload file: [Errno 40] Too many levels of symbolic links: '{r}/loop'")
                .as_str()
        )
    );
    assert!(
        std::fs::symlink_metadata(root.join("loop"))
            .unwrap()
            .is_symlink()
    );

    // git: `..` and symlinks resolve like Path.resolve(); relative paths use the server's cwd
    let repo = root.join("repo");
    std::fs::create_dir(&repo).unwrap();
    let git = |args: &[&str]| {
        assert!(
            std::process::Command::new("git")
                .args(args)
                .current_dir(&repo)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t")
                .status()
                .unwrap()
                .success()
        )
    };
    git(&["init", "-q"]);
    std::fs::create_dir(repo.join("dir")).unwrap();
    std::fs::write(repo.join("a.txt"), "one\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-qm", "c"]);
    std::fs::write(repo.join("a.txt"), "two\n").unwrap();
    let direct = raw_get(&s, format!("/api/git/diff/{r}/repo/a.txt").as_bytes());
    assert_eq!(direct.status, 200);
    for target in [
        format!("/api/git/diff/{r}/repo/dir/%2e%2e/a.txt"),
        format!("/api/git/diff/{r}/repo/missing/../a.txt"),
    ] {
        let a = raw_get(&s, target.as_bytes());
        assert_eq!((a.status, a.json()), (200, direct.json()), "{target}");
    }
    for target in [
        "/api/git/changes/%2e%2e".to_string(),
        "/api/git/changes/..%2f..%2f..".to_string(),
        format!("/api/git/changes/{r}/repo/%2e%2e"),
        "/api/git/diff/%2e%2e/%2e%2e/etc/hostname".to_string(),
    ] {
        let a = raw_get(&s, target.as_bytes());
        assert!(
            a.status == 200 || (a.status == 500 && a.json()["exception"].is_string()),
            "{target}: {} {:?}",
            a.status,
            a.json()
        );
    }

    // static files (open to everyone): nothing outside the directory, symlinks included
    for target in [
        "/static/%2e%2e/secret.txt".to_string(),
        "/static/..%2fsecret.txt".to_string(),
        "/static/sub/../../secret.txt".to_string(),
        "/static/sub/%2e%2e/%2e%2e/secret.txt".to_string(),
        "/static/escape".to_string(),
        "/static/escape-dir/secret.txt".to_string(),
        format!(
            "/static/{}/secret.txt",
            "..%2F".repeat(8) + &outside.path().display().to_string()[1..]
        ),
    ] {
        let a = raw_get(&s, target.as_bytes());
        assert_eq!(
            (a.status, a.json()),
            (404, json!({"detail": "Not Found"})),
            "{target}"
        );
    }
    let a = raw_get(&s, b"/static/inside");
    assert_eq!(
        (a.status, a.body.as_slice()),
        (200, b"<h1>in</h1>".as_slice())
    );
}

#[tokio::test]
async fn bash_cwd_takes_any_directory_and_reports_bad_ones() {
    let s = TestServer::start();
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("file"), "x").unwrap();
    std::os::unix::fs::symlink(root.join("sub"), root.join("link")).unwrap();
    let server_cwd = std::env::current_dir().unwrap();
    let r = root.display();
    let cases: Vec<(String, Result<String, &str>)> = vec![
        (format!("{r}/sub/.."), Ok(format!("{r}/sub/.."))),
        (format!("{r}/link"), Ok(format!("{r}/link"))),
        // relative: against the server's working directory, as the reference's subprocess does
        (
            "..".to_string(),
            Ok(server_cwd.parent().unwrap().display().to_string()),
        ),
        (format!("{r}/missing"), Err("No such file or directory")),
        (format!("{r}/missing/.."), Err("No such file or directory")),
        (format!("{r}/file"), Err("Not a directory")),
        (format!("{r}/sub\u{0}/x"), Err("Error executing command")),
        (String::new(), Err("Error executing command")),
    ];
    for (cwd, expected) in cases {
        let (status, out) = s
            .post_json(
                "/api/bash/execute_bash_command",
                &json!({"command": "pwd -L 2>/dev/null || pwd", "cwd": cwd}),
            )
            .await;
        assert_eq!(status, 200, "{cwd:?}: {out}");
        match expected {
            Ok(dir) => {
                let printed = out["stdout"].as_str().unwrap_or("").trim_end().to_string();
                let real = |p: &str| std::fs::canonicalize(p).ok();
                assert!(
                    printed == dir || real(&printed) == real(&dir),
                    "{cwd:?}: printed {printed:?}, expected {dir:?}"
                );
                assert_eq!(out["exit_code"], 0, "{cwd:?}");
            }
            Err(text) => {
                assert_eq!(out["exit_code"], -1, "{cwd:?}: {out}");
                assert!(
                    out["stderr"].as_str().unwrap_or("").contains(text),
                    "{cwd:?}: {out}"
                );
            }
        }
    }
    // a NUL byte in the command itself
    let (status, out) = s
        .post_json(
            "/api/bash/execute_bash_command",
            &json!({"command": "echo a\u{0}b"}),
        )
        .await;
    assert_eq!(
        (status, out["exit_code"].as_i64()),
        (200, Some(-1)),
        "{out}"
    );
}

// ------------------------------------------------------------------------------- non-UTF-8

#[tokio::test]
async fn non_utf8_names_and_output_are_handled() {
    let s = TestServer::start();
    let c = client();
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap();
    let r = root.display().to_string();

    // a name with bytes that are not UTF-8: decoded with replacement, as uvicorn does
    let tail = format!("{r}/%FF%FEname.txt");
    let up = c
        .post(s.url(&format!("/api/file/upload/{tail}")))
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(vec![0xff, 0x00, 0xfe]).file_name("\u{FFFD}"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);
    assert!(root.join("\u{FFFD}\u{FFFD}name.txt").is_file());
    let down = c
        .get(s.url(&format!("/api/file/download/{tail}")))
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 200);
    assert!(
        down.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("filename*=utf-8''"),
    );
    assert_eq!(down.bytes().await.unwrap().as_ref(), &[0xff, 0x00, 0xfe]);
    // raw bytes in the request target, not percent-encoded
    let mut target = format!("/api/file/download/{r}/").into_bytes();
    target.extend_from_slice(&[0xff, 0xfe, b'x']);
    let a = raw_get(&s, &target);
    assert!(a.status < 500, "{} {:?}", a.status, a.json());

    // a file whose on-disk name is not UTF-8: git lists it, the trajectory zips it
    let repo = root.join("repo");
    std::fs::create_dir(&repo).unwrap();
    assert!(
        std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(&repo)
            .status()
            .unwrap()
            .success()
    );
    let odd = std::ffi::OsStr::from_bytes(b"odd-\xff\xfe.txt");
    std::fs::write(repo.join(odd), b"\xff\xfe not utf-8 content\n").unwrap();
    let (status, changes) = s
        .get_json(&format!("/api/git/changes/{}", repo.display()))
        .await;
    assert_eq!(status, 200, "{changes}");
    let paths: Vec<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert_eq!(paths.len(), 1, "{changes}");
    assert!(paths[0].starts_with("odd-"), "{changes}");
    std::fs::write(repo.join("bytes.txt"), b"\xff\xfe\n").unwrap();
    let (status, diff) = s
        .get_json(&format!("/api/git/diff/{}/bytes.txt", repo.display()))
        .await;
    assert!(
        status == 200 || (status == 500 && diff["exception"].is_string()),
        "{status} {diff}"
    );

    let (_, info) = s
        .post_json(
            "/api/conversations",
            &json!({"agent": crate::common::routes::failing_agent("k"),
                    "workspace": {"working_dir": root.join("ws").to_string_lossy()}}),
        )
        .await;
    let hex = info["id"].as_str().unwrap().replace('-', "");
    std::fs::write(s.config.conversations_path.join(&hex).join(odd), b"x").unwrap();
    let zip = c
        .get(s.url(&format!("/api/file/download-trajectory/{hex}")))
        .send()
        .await
        .unwrap();
    assert_eq!(zip.status(), 200);
    assert!(zip.bytes().await.unwrap().starts_with(b"PK"));

    // command output that is not UTF-8, also split across the 1 MiB chunk boundary
    let (status, out) = s
        .post_json(
            "/api/bash/execute_bash_command",
            &json!({"command": "printf '\\377\\376 ok \\303\\251'; printf '\\377' >&2"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (out["stdout"].as_str(), out["stderr"].as_str()),
        (Some("\u{FFFD}\u{FFFD} ok é"), Some("\u{FFFD}"))
    );
    let (status, cmd) = s
        .post_json(
            "/api/bash/start_bash_command",
            &json!({"command": "head -c 1048575 /dev/zero | tr '\\0' a; printf '\\303\\251'; head -c 3000000 /dev/urandom"}),
        )
        .await;
    assert_eq!(status, 200);
    let id = cmd["id"].as_str().unwrap().to_string();
    let outputs = poll(Duration::from_secs(30), "random output", || async {
        let (_, page) = s
            .get_json(&format!(
                "/api/bash/bash_events/search?kind__eq=BashOutput&command_id__eq={id}&limit=100"
            ))
            .await;
        let items = page["items"].as_array()?.clone();
        items
            .last()
            .is_some_and(|l| l["exit_code"].is_i64())
            .then_some(items)
    })
    .await;
    assert_eq!(outputs.last().unwrap()["exit_code"], 0);
    let stdout: String = outputs
        .iter()
        .filter_map(|o| o["stdout"].as_str())
        .collect();
    assert!(stdout.starts_with(&"a".repeat(1_048_575)));
    assert!(
        stdout.contains('é'),
        "a character split across chunks was lost"
    );

    // the socket: binary frames and invalid UTF-8 are ignored
    let mut ws = bash_socket(&s.addr.to_string()).await;
    ws.send(Message::Binary(vec![0xff, 0xfe, 0xfd]))
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"command": "printf '\\377x'"}).to_string(),
    ))
    .await
    .unwrap();
    loop {
        let out = next_output(&mut ws).await;
        if out["stdout"] == "\u{FFFD}x" {
            break;
        }
    }
}

// ------------------------------------------------------------------------------- frame limits

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn bash_socket(addr: &str) -> Socket {
    let url = format!("ws://{addr}/sockets/bash-events?session_api_key={KEY}");
    tokio_tungstenite::connect_async(url)
        .await
        .expect("socket")
        .0
}

/// The next BashOutput with an exit code on the socket.
async fn next_output(ws: &mut Socket) -> Value {
    let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a frame in time");
        if let Some(Ok(Message::Text(t))) = frame {
            let v: Value = serde_json::from_str(&t).expect("json frame");
            if v["kind"] == "BashOutput" && v["exit_code"].is_i64() {
                return v;
            }
        } else if !matches!(frame, Some(Ok(Message::Ping(_) | Message::Pong(_)))) {
            panic!("unexpected {frame:?}");
        }
    }
}

/// Sends a frame larger than the limit and returns the close code the server answers with.
async fn close_code_for_big_frame(url: &str, size: usize) -> Option<CloseCode> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("socket");
    ws.send(Message::Text("x".repeat(size)))
        .await
        .expect("send");
    let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a close in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn websocket_frames_over_the_limit_close_with_1009() {
    const LIMIT: usize = 64 * 1024;
    let s = TestServer::start_with(|c| c.max_body_bytes = LIMIT);
    let bash = format!("ws://{}/sockets/bash-events?session_api_key={KEY}", s.addr);
    assert_eq!(
        close_code_for_big_frame(&bash, LIMIT + 1).await,
        Some(CloseCode::Size)
    );
    // just under the limit is a frame like any other (ignored: not a request)
    let mut ws = bash_socket(&s.addr.to_string()).await;
    ws.send(Message::Text("y".repeat(LIMIT - 16)))
        .await
        .unwrap();
    ws.send(Message::Text(json!({"command": "echo fine"}).to_string()))
        .await
        .unwrap();
    assert_eq!(next_output(&mut ws).await["stdout"], "fine\n");

    // the conversation event socket
    let (_, info) = s
        .post_json(
            "/api/conversations",
            &json!({"agent": crate::common::routes::failing_agent("k"),
                    "workspace": {"working_dir": s.dir.path().join("ws").to_string_lossy()}}),
        )
        .await;
    let events = format!(
        "ws://{}/sockets/events/{}?session_api_key={KEY}",
        s.addr,
        info["id"].as_str().unwrap()
    );
    assert_eq!(
        close_code_for_big_frame(&events, LIMIT + 1).await,
        Some(CloseCode::Size)
    );
    healthy(&s.base).await;
}
