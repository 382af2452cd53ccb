//! Files, git, trajectory download, VS Code and desktop routes over HTTP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::common::{KEY, TestServer, binary};

fn multipart_file(name: &str, bytes: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()),
        )
        .text("destination_path", "ignored")
}

/// `/api/file/upload/` + an absolute path: the double slash the official client sends.
fn upload_url(s: &TestServer, path: &Path) -> String {
    s.url(&format!("/api/file/upload/{}", path.display()))
}

fn download_url(s: &TestServer, path: &Path) -> String {
    s.url(&format!("/api/file/download/{}", path.display()))
}

async fn status_and_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn upload_then_download_round_trip() {
    let s = TestServer::start();
    let c = s.client();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sub/dir/data.bin");
    let payload: Vec<u8> = (0..=255u8).chain(b"hello".iter().copied()).collect();

    let r = c
        .post(upload_url(&s, &target))
        .multipart(multipart_file("data.bin", payload.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_json(r).await, (200, json!({"success": true})));
    assert_eq!(std::fs::read(&target).unwrap(), payload);

    let r = c.get(download_url(&s, &target)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"data.bin\""
    );
    assert_eq!(h["content-length"], "261");
    assert_eq!(h["accept-ranges"], "bytes");
    assert!(h["etag"].to_str().unwrap().starts_with('"'));
    assert!(h["last-modified"].to_str().unwrap().ends_with(" GMT"));
    assert_eq!(r.bytes().await.unwrap().to_vec(), payload);

    // Overwrite keeps the destination's permission bits; nothing temporary is left behind.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let r = c
        .post(upload_url(&s, &target))
        .multipart(multipart_file("other.txt", b"replaced".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(std::fs::read(&target).unwrap(), b"replaced");
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(
        std::fs::read_dir(target.parent().unwrap()).unwrap().count(),
        1
    );

    // Percent-encoded names and the RFC 5987 disposition.
    let spaced = dir.path().join("with space é.txt");
    let url = |base: &str| format!("{base}{}", spaced.display()).replace(' ', "%20");
    let r = c
        .post(url(&s.url("/api/file/upload/")))
        .multipart(multipart_file("x", b"spaced".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(url(&s.url("/api/file/download/")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename*=utf-8''with%20space%20%C3%A9.txt"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"spaced");

    // `%2F` works as the leading slash.
    let encoded = s.url(&format!(
        "/api/file/download/%2F{}",
        target.display().to_string().trim_start_matches('/')
    ));
    assert_eq!(
        c.get(encoded)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"replaced"
    );

    // Empty file.
    let empty = dir.path().join("empty.txt");
    let r = c
        .post(upload_url(&s, &empty))
        .multipart(multipart_file("empty.txt", Vec::new()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(download_url(&s, &empty)).send().await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["content-length"].to_str().unwrap().to_string()
        ),
        (200, "0".into())
    );
}

#[tokio::test]
async fn relative_and_traversing_paths_are_refused() {
    let s = TestServer::start();
    let c = s.client();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("real.txt"), b"x").unwrap();
    let relative_download = json!({"detail": "Path must be absolute"});
    for tail in [
        "relative/path.txt",
        "relative%2F..%2F..%2Fetc%2Fpasswd",
        "..%2F..%2Fetc%2Fpasswd",
        "",
    ] {
        let r = c
            .get(s.url(&format!("/api/file/download/{tail}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_json(r).await,
            (400, relative_download.clone()),
            "download {tail}"
        );
        let r = c
            .post(s.url(&format!("/api/file/upload/{tail}")))
            .multipart(multipart_file("x", b"x".to_vec()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            status_and_json(r).await,
            (
                500,
                json!({"detail": "Internal Server Error", "exception": "500: Failed to upload file: 400: Path must be absolute"})
            ),
            "upload {tail}"
        );
    }
    assert!(!Path::new("relative").exists());
    // A single slash after the route makes the path relative.
    let r = c
        .get(s.url(&format!(
            "/api/file/download{}",
            dir.path().join("real.txt").display()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_json(r).await, (400, relative_download));
    // `..` is not normalised away: through a missing directory the kernel finds nothing.
    let through_missing = format!("{}%2Fnope%2F..%2Freal.txt", dir.path().display());
    let r = c
        .get(s.url(&format!("/api/file/download/{through_missing}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_json(r).await,
        (404, json!({"detail": "File not found"}))
    );
    let r = c
        .get(download_url(&s, &dir.path().join("nope.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_json(r).await,
        (404, json!({"detail": "File not found"}))
    );
    let r = c.get(download_url(&s, dir.path())).send().await.unwrap();
    assert_eq!(
        status_and_json(r).await,
        (400, json!({"detail": "Path is not a file"}))
    );
    // A symlink is followed.
    std::os::unix::fs::symlink(dir.path().join("real.txt"), dir.path().join("link")).unwrap();
    let r = c
        .get(download_url(&s, &dir.path().join("link")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"link\""
    );
    // Uploading onto a directory.
    let r = c
        .post(upload_url(&s, dir.path()))
        .multipart(multipart_file("x", b"x".to_vec()))
        .send()
        .await
        .unwrap();
    let body = status_and_json(r).await;
    assert_eq!(
        body,
        (
            500,
            json!({"detail": "Internal Server Error",
                   "exception": format!("500: Failed to upload file: [Errno 21] Is a directory: '{}'", dir.path().display())})
        )
    );
}

#[tokio::test]
async fn upload_without_a_file_part_is_a_validation_error() {
    let s = TestServer::start();
    let c = s.client();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("nofile.txt");
    let missing = json!({"detail": [{"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": null}]});
    let form = reqwest::multipart::Form::new().text("other", "x");
    let r = c
        .post(upload_url(&s, &target))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_json(r).await, (422, missing.clone()));
    let r = c
        .post(upload_url(&s, &target))
        .json(&json!({"file": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_json(r).await, (422, missing.clone()));
    // Even on a relative path, the missing part is reported first.
    let form = reqwest::multipart::Form::new().text("other", "x");
    let r = c
        .post(s.url("/api/file/upload/relative.txt"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(status_and_json(r).await, (422, missing));
    // A text field named `file` is not a file.
    let form = reqwest::multipart::Form::new().text("file", "hello");
    let r = c
        .post(upload_url(&s, &target))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(r).await;
    assert_eq!(
        (
            status,
            &body["detail"][0]["type"],
            &body["detail"][0]["input"]
        ),
        (422, &json!("value_error"), &json!("hello"))
    );
    assert!(!target.exists());
}

#[tokio::test]
async fn byte_ranges() {
    let s = TestServer::start();
    let c = s.client();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("r.txt");
    std::fs::write(&f, b"0123456789abcdefghij").unwrap();
    let get = |range: &'static str| c.get(download_url(&s, &f)).header("Range", range).send();
    let r = get("bytes=5-9").await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 5-9/20");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"56789");
    let r = get("bytes=-3").await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hij");
    let r = get("bytes=30-").await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["content-range"].to_str().unwrap()
        ),
        (416, "*/20")
    );
    let r = get("bytes=5-2").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "Range header: start must be less than end"
    );
    let r = get("bytes=0-1,4-5").await.unwrap();
    assert_eq!(r.status(), 206);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap()
        .to_string();
    let len: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.text().await.unwrap();
    assert_eq!(body.len(), len);
    assert_eq!(
        body,
        format!(
            "--{boundary}\nContent-Type: application/octet-stream\nContent-Range: bytes 0-1/20\n\n01\n\
             --{boundary}\nContent-Type: application/octet-stream\nContent-Range: bytes 4-5/20\n\n45\n\n--{boundary}--\n"
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Large transfers: the server's memory must not grow with the file.

/// A server process of its own, so its memory can be read from `/proc/<pid>/status`.
struct ServerProcess {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    async fn spawn() -> ServerProcess {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("OH_SESSION_API_KEYS_0", KEY)
            .env("OH_CONVERSATIONS_PATH", dir.path().join("conversations"))
            .env("OH_BASH_EVENTS_DIR", dir.path().join("bash_events"))
            .env("OH_ENABLE_VSCODE", "false")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{base}/alive")).await
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ServerProcess {
            child,
            base,
            _dir: dir,
        }
    }

    /// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
    fn memory_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic bytes for position `i` of the large file.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

#[tokio::test]
async fn large_upload_and_download_stream_in_constant_memory() {
    const SIZE: u64 = 200 * 1024 * 1024;
    const CHUNK: u64 = 256 * 1024;
    let server = ServerProcess::spawn().await;
    let idle_kb = server.memory_kb("VmRSS:");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("big.bin");
    let c = reqwest::Client::new();

    let chunks = futures_util::stream::iter((0..SIZE / CHUNK).map(|n| {
        let bytes: Vec<u8> = (n * CHUNK..(n + 1) * CHUNK).map(pattern).collect();
        Ok::<_, std::io::Error>(bytes)
    }));
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(chunks), SIZE)
            .file_name("big.bin");
    let r = c
        .post(format!(
            "{}/api/file/upload/{}",
            server.base,
            target.display()
        ))
        .header("X-Session-API-Key", KEY)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(std::fs::metadata(&target).unwrap().len(), SIZE);

    let r = c
        .get(format!(
            "{}/api/file/download/{}",
            server.base,
            target.display()
        ))
        .header("X-Session-API-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-length"], SIZE.to_string().as_str());
    let mut stream = r.bytes_stream();
    let mut pos = 0u64;
    while let Some(chunk) = stream.next().await {
        for b in chunk.unwrap() {
            assert_eq!(b, pattern(pos), "byte {pos}");
            pos += 1;
        }
    }
    assert_eq!(pos, SIZE);
    let peak_kb = server.memory_kb("VmHWM:");
    assert!(
        peak_kb < idle_kb + 50 * 1024,
        "server peak RSS {peak_kb} kB vs idle {idle_kb} kB"
    );
}

// ---------------------------------------------------------------------------------------------
// Git

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The changes `git status --porcelain` reports, in the endpoint's vocabulary: renames become a
/// deletion and an addition, untracked files are added.
fn porcelain_changes(repo: &Path) -> Vec<(String, String)> {
    let text = git(
        repo,
        &["status", "--porcelain", "-z", "--untracked-files=all"],
    );
    let mut out = Vec::new();
    let mut fields = text.split('\0').filter(|f| !f.is_empty());
    while let Some(entry) = fields.next() {
        let (xy, path) = entry.split_at(3);
        let xy = xy.trim();
        if xy.starts_with('R') {
            // With -z a rename is "R  <new>" followed by "<old>".
            let old = fields.next().unwrap_or_default();
            out.push(("DELETED".to_string(), old.to_string()));
            out.push(("ADDED".to_string(), path.to_string()));
            continue;
        }
        let status = match xy {
            "??" | "A" | "AM" => "ADDED",
            "D" => "DELETED",
            _ => "UPDATED",
        };
        out.push((status.to_string(), path.to_string()));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// A repository whose `origin/main` equals `HEAD`, then changed in every way.
fn changed_repo(root: &Path) -> PathBuf {
    let origin = root.join("origin.git");
    let repo = root.join("repo");
    std::fs::create_dir_all(&origin).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    git(&origin, &["init", "-q", "--bare", "-b", "main"]);
    git(&repo, &["init", "-q", "-b", "main"]);
    write(&repo.join("modified.txt"), b"one\ntwo\n");
    write(&repo.join("deleted.txt"), b"bye\n");
    write(&repo.join("keep.txt"), b"same\n");
    write(&repo.join("old name.txt"), b"a file that will be renamed\n");
    write(
        &repo.join("image.bin"),
        &[0x89, b'P', b'N', b'G', 0, 1, 2, 3],
    );
    write(&repo.join("src/lib.rs"), b"fn a() {}\n");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    git(
        &repo,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    git(&repo, &["push", "-q", "origin", "main"]);
    git(&repo, &["fetch", "-q", "origin"]);
    write(&repo.join("modified.txt"), b"one\nTWO\nthree\n");
    std::fs::remove_file(repo.join("deleted.txt")).unwrap();
    write(&repo.join("added.txt"), b"staged\n");
    git(&repo, &["add", "added.txt"]);
    git(&repo, &["mv", "old name.txt", "src/new name.txt"]);
    write(&repo.join("untracked/deep/u.txt"), b"new\n");
    write(
        &repo.join("image.bin"),
        &[0x89, b'P', b'N', b'G', 0, 9, 9, 9],
    );
    write(&repo.join("new.bin"), &[0xff, 0xfe, 0]);
    repo
}

async fn git_diff(s: &TestServer, repo: &Path, file: &str) -> (u16, Value) {
    s.get_json(&format!(
        "/api/git/diff/{}",
        repo.join(file).display().to_string().replace(' ', "%20")
    ))
    .await
}

#[tokio::test]
async fn git_changes_agree_with_git_status() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = changed_repo(dir.path());
    let (status, body) = s
        .get_json(&format!("/api/git/changes/{}", repo.display()))
        .await;
    assert_eq!(status, 200);
    let got: Vec<(String, String)> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = porcelain_changes(&repo);
    assert_eq!(got, expected);
    assert_eq!(
        expected
            .iter()
            .map(|(s, p)| format!("{s} {p}"))
            .collect::<Vec<_>>(),
        vec![
            "ADDED added.txt",
            "DELETED deleted.txt",
            "UPDATED image.bin",
            "UPDATED modified.txt",
            "ADDED new.bin",
            "DELETED old name.txt",
            "ADDED src/new name.txt",
            "ADDED untracked/deep/u.txt",
        ],
        "the fixture covers every kind of change"
    );

    assert_eq!(
        git_diff(&s, &repo, "modified.txt").await,
        (
            200,
            json!({"modified": "one\nTWO\nthree", "original": "one\ntwo"})
        )
    );
    assert_eq!(
        git_diff(&s, &repo, "keep.txt").await,
        (200, json!({"modified": "same", "original": "same"}))
    );
    assert_eq!(
        git_diff(&s, &repo, "src/new name.txt").await,
        (
            200,
            json!({"modified": "a file that will be renamed", "original": ""})
        )
    );
    // Binary: undecodable current content reads as empty, an undecodable original is an error.
    assert_eq!(
        git_diff(&s, &repo, "new.bin").await,
        (200, json!({"modified": "", "original": ""}))
    );
    assert_eq!(
        git_diff(&s, &repo, "image.bin").await,
        (
            500,
            json!({"detail": "Internal Server Error",
                   "exception": "'utf-8' codec can't decode byte 0x89 in position 0: invalid start byte"})
        )
    );
}

#[tokio::test]
async fn git_errors_and_repositories_without_commits() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let err = |msg: String| {
        (
            500,
            json!({"detail": "Internal Server Error", "exception": msg}),
        )
    };
    let missing = root.join("missing");
    assert_eq!(
        s.get_json(&format!("/api/git/changes/{}", missing.display()))
            .await,
        err(format!("Directory does not exist: {}", missing.display()))
    );
    assert_eq!(
        s.get_json(&format!("/api/git/changes/{}", root.display()))
            .await,
        err(format!("Not a git repository: {}", root.display()))
    );
    write(&root.join("plain.txt"), b"x\n");
    assert_eq!(
        s.get_json(&format!("/api/git/diff/{}/plain.txt", root.display()))
            .await,
        err(format!(
            "File is not in a git repository: {}/plain.txt",
            root.display()
        ))
    );
    assert_eq!(
        s.get_json(&format!("/api/git/diff/{}/nope.txt", root.display()))
            .await,
        err(format!("File does not exist: {}/nope.txt", root.display()))
    );

    let fresh = root.join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    git(&fresh, &["init", "-q", "-b", "main"]);
    write(&fresh.join("staged.txt"), b"s\n");
    git(&fresh, &["add", "staged.txt"]);
    write(&fresh.join("untracked.txt"), b"u\n");
    assert_eq!(
        s.get_json(&format!("/api/git/changes/{}", fresh.display()))
            .await,
        (
            200,
            json!([{"status": "ADDED", "path": "staged.txt"}, {"status": "ADDED", "path": "untracked.txt"}])
        )
    );
    assert_eq!(
        s.get_json(&format!("/api/git/diff/{}/staged.txt", fresh.display()))
            .await,
        (200, json!({"modified": "s", "original": ""}))
    );
}

// ---------------------------------------------------------------------------------------------
// Trajectory

/// The entry names of a zip archive, sorted.
fn zip_names(bytes: &[u8]) -> Vec<String> {
    let archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut names: Vec<String> = archive.file_names().map(str::to_string).collect();
    names.sort();
    names
}

/// Event files are written shortly after their acknowledgement; the trajectory of a live
/// conversation waits for them, so it holds every event acknowledged before the request.
#[tokio::test]
async fn trajectory_of_a_live_conversation_has_every_acknowledged_event() {
    let s = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let (st, info) = s
        .post_json(
            "/api/conversations",
            &json!({
                "agent": crate::common::routes::failing_agent("sk-t"),
                "workspace": {"working_dir": work.path().join("ws").to_string_lossy()},
            }),
        )
        .await;
    assert_eq!(st, 201, "{info}");
    let id = info["id"].as_str().unwrap().to_string();
    // 40 messages, answered before their files are written (once the conversation is quiet);
    // one client, so the download follows the last answer at once
    let c = s.client();
    let posts = (0..40).map(|i| {
        let (s, c, id) = (&s, &c, &id);
        async move {
            let r = c
                .post(s.url(&format!("/api/conversations/{id}/events")))
                .json(&json!({"content": [{"type": "text", "text": format!("m{i}")}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    });
    futures_util::future::join_all(posts).await;
    let r = c
        .get(s.url(&format!("/api/file/download-trajectory/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = zip_names(&r.bytes().await.unwrap())
        .iter()
        .filter(|n| n.contains("/events/event-"))
        .count();
    let (_, count) = s
        .get_json(&format!("/api/conversations/{id}/events/count"))
        .await;
    assert_eq!(Some(events as u64), count.as_u64(), "{count}");
    assert!(events > 40);
}

#[tokio::test]
async fn trajectory_zip_of_a_conversation_directory() {
    let s = TestServer::start();
    let c = s.client();
    let id = uuid::Uuid::new_v4();
    let hex = id.simple().to_string();
    let conv = s.config.conversations_path.join(&hex);
    write(&conv.join("base_state.json"), b"{}");
    write(
        &conv.join("events/event-00000-a.json"),
        b"{\"kind\":\"MessageEvent\"}",
    );
    write(&conv.join("meta.json"), b"{}");

    let r = c
        .get(s.url(&format!("/api/file/download-trajectory/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(
        r.headers()["content-disposition"],
        format!("attachment; filename=\"{hex}.zip\"").as_str()
    );
    let names = zip_names(&r.bytes().await.unwrap());
    let prefix = conv
        .display()
        .to_string()
        .trim_start_matches('/')
        .to_string();
    assert_eq!(
        names,
        vec![
            format!("{prefix}/"),
            format!("{prefix}/base_state.json"),
            format!("{prefix}/events/"),
            format!("{prefix}/events/event-00000-a.json"),
            format!("{prefix}/meta.json"),
        ]
    );

    let unknown = uuid::Uuid::new_v4();
    let (status, body) = s
        .get_json(&format!("/api/file/download-trajectory/{unknown}"))
        .await;
    let zip_path = s
        .config
        .conversations_path
        .join(format!("{}.zip", unknown.simple()));
    assert_eq!(
        (status, body),
        (
            500,
            json!({"detail": "Internal Server Error", "exception": format!("File at path {} does not exist.", zip_path.display())})
        )
    );
    let (status, body) = s.get_json("/api/file/download-trajectory/nope").await;
    assert_eq!(
        (
            status,
            &body["detail"][0]["type"],
            &body["detail"][0]["loc"]
        ),
        (
            422,
            &json!("uuid_parsing"),
            &json!(["path", "conversation_id"])
        )
    );
}

// ---------------------------------------------------------------------------------------------
// VS Code and desktop

#[tokio::test]
async fn vscode_and_desktop_when_disabled() {
    let s = TestServer::start();
    assert_eq!(
        s.get_json("/api/vscode/status").await,
        (
            200,
            json!({"running": false, "enabled": false, "message": "VSCode is disabled in configuration"})
        )
    );
    assert_eq!(
        s.get_json("/api/vscode/url").await,
        (
            503,
            json!({"detail": "Internal Server Error",
                   "exception": "503: VSCode is disabled in configuration. Set enable_vscode=true to enable."})
        )
    );
    assert_eq!(
        s.get_json("/api/desktop/url").await,
        (
            503,
            json!({"detail": "Internal Server Error",
                   "exception": "503: Desktop is disabled in configuration. Set enable_vnc=true to enable."})
        )
    );
}

#[tokio::test]
async fn vscode_enabled_without_the_program_uses_the_session_key_as_token() {
    let s = TestServer::start_with(|c| c.enable_vscode = true);
    assert_eq!(
        s.get_json("/api/vscode/status").await,
        (200, json!({"running": false, "enabled": true}))
    );
    assert_eq!(
        s.get_json("/api/vscode/url?base_url=http://h:9&workspace_dir=/w")
            .await,
        (
            200,
            json!({"url": format!("http://h:9/?tkn={KEY}&folder=/w")})
        )
    );
    assert_eq!(
        s.get_json("/api/vscode/url").await,
        (
            200,
            json!({"url": format!("http://localhost:8001/?tkn={KEY}&folder=workspace")})
        )
    );
}
