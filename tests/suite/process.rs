//! The binary as a user runs it: start-up from the command line, configuration errors, logging,
//! graceful shutdown, and the project files that ship with it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::binary;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A spawned `agent-server` with a clean environment and its own working directory.
struct Proc {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn spawn(env: &[(&str, &str)], args: &[&str]) -> (Proc, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(binary());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OH_ENABLE_VSCODE", "false")
        .current_dir(dir.path())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let path = dir.path().to_path_buf();
    (
        Proc {
            child: cmd.spawn().unwrap(),
            port,
            _dir: dir,
        },
        path,
    )
}

impl Proc {
    fn wait_healthy(&self) -> Duration {
        let started = Instant::now();
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ =
                    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return started.elapsed();
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "server did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut req =
                reqwest::Client::new().get(format!("http://127.0.0.1:{}{}", self.port, path));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }

    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(e) = self.child.stderr.take() {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                err.push_str(&line);
                err.push('\n');
            }
        }
        (status, err)
    }
}

fn startup_error(env: &[(&str, &str)]) -> String {
    let (mut p, _) = spawn(env, &[]);
    let status = p.child.wait().unwrap();
    assert!(!status.success(), "expected a start-up failure for {env:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(p.child.stderr.as_mut().unwrap(), &mut err).unwrap();
    err
}

#[test]
fn starts_fast_with_defaults_and_stops_cleanly_on_sigterm() {
    let (p, dir) = spawn(&[], &[]);
    let took = p.wait_healthy();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(dir.join("workspace/conversations").is_dir());
    assert!(dir.join("workspace/bash_events").is_dir());
    // no keys configured: /api is open
    assert_eq!(p.get("/api/vscode/status", &[]).0 / 100, 2);
    let (status, _) = p.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn invalid_values_stop_startup_naming_the_variable() {
    for (var, val) in [
        ("OH_VSCODE_PORT", "0"),
        ("OH_VSCODE_PORT", "http"),
        ("OH_SESSION_API_KEYS", "plainstring"),
        ("OH_WEBHOOKS_0_FLUSH_DELAY", "1"),
        ("OH_MAX_CONCURRENT_BASH_COMMANDS", "0"),
        ("OH", "not json"),
    ] {
        let err = startup_error(&[(var, val)]);
        let name = if var == "OH_WEBHOOKS_0_FLUSH_DELAY" {
            "OH_WEBHOOKS_0_BASE_URL"
        } else {
            var
        };
        assert!(err.contains(name), "{var}={val}: {err}");
    }
}

#[test]
fn environment_controls_keys_paths_and_logging() {
    let (p, dir) = spawn(
        &[
            ("OH_SESSION_API_KEYS_0", "k1"),
            ("OH_SESSION_API_KEYS_1", "k2"),
            ("OH_CONVERSATIONS_PATH", "convs"),
            ("OH_BASH_EVENTS_DIR", "bash"),
            ("LOG_JSON", "true"),
            ("DEBUG", "true"),
        ],
        &[],
    );
    p.wait_healthy();
    assert!(dir.join("convs").is_dir() && dir.join("bash").is_dir());
    assert_eq!(p.get("/api/vscode/status", &[]).0, 401);
    assert_eq!(
        p.get("/api/vscode/status", &[("X-Session-API-Key", "k2")])
            .0,
        200
    );
    let (status, err) = p.terminate();
    assert!(status.success());
    let access: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect();
    assert!(!access.is_empty(), "no JSON access lines in: {err}");
    assert!(!err.contains("k2"), "a session key leaked into the log");
}

#[test]
fn config_file_is_overridden_by_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.toml");
    std::fs::write(
        &file,
        "session_api_keys = [\"from-file\"]\nconversations_path = \"file-convs\"\n",
    )
    .unwrap();
    let file_arg = file.to_str().unwrap().to_string();
    let (p, wd) = spawn(
        &[("OH_CONVERSATIONS_PATH", "env-convs")],
        &["--config", &file_arg],
    );
    p.wait_healthy();
    assert!(wd.join("env-convs").is_dir() && !wd.join("file-convs").exists());
    assert_eq!(
        p.get("/api/vscode/status", &[("X-Session-API-Key", "from-file")])
            .0,
        200
    );
    assert!(p.terminate().0.success());
}

#[test]
fn static_files_mode() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<h1>hi</h1>").unwrap();
    let (p, _) = spawn(
        &[("OH_STATIC_FILES_PATH", site.path().to_str().unwrap())],
        &[],
    );
    p.wait_healthy();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = c
            .get(format!("http://127.0.0.1:{}/", p.port))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "/static/index.html");
        let r = c
            .get(format!("http://127.0.0.1:{}/static/index.html", p.port))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "<h1>hi</h1>");
        let r = c
            .get(format!("http://127.0.0.1:{}/static/missing.html", p.port))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    });
    assert!(p.terminate().0.success());
}

#[test]
fn env_example_lists_every_variable() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    for var in agent_server::config::ENV_VARIABLES {
        assert!(
            text.contains(&format!("{var}=")),
            ".env.example does not list {var}"
        );
    }
}

#[test]
fn dockerfile_copies_files_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let mut copied = 0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(root.join(src).exists(), "Dockerfile copies missing {src}");
            copied += 1;
        }
    }
    assert!(copied >= 3);
}
