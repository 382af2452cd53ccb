//! Every route of the router table (`agent_server::http::ROUTES`) turned into a concrete request
//! against a server with a few real objects to point at (a conversation, its event, a bash event,
//! a file, a git repository), so tests can walk the whole table without listing routes by hand.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::{KEY, TestServer, poll};

/// An agent whose LLM fails at once (closed port, no retries): runs end quickly whatever the
/// agent loop does.
pub fn failing_agent(api_key: &str) -> Value {
    json!({
        "kind": "Agent",
        "llm": {
            "model": "openai/fake-model",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key": api_key,
            "num_retries": 0,
            "timeout": 5,
            "usage_id": "agent"
        },
        "tools": [{"name": "terminal"}]
    })
}

/// Real objects the route patterns are filled with.
pub struct Fixture {
    /// A conversation with one user message (dashed id).
    pub conversation: String,
    /// The id of an event of that conversation.
    pub event: String,
    /// The hex id of a recorded bash command.
    pub bash_event: String,
    /// An existing file (absolute).
    pub file: PathBuf,
    /// A git repository with one commit and a change (absolute).
    pub repo: PathBuf,
    pub _dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn create(s: &TestServer) -> Fixture {
        Self::create_at(&s.base, KEY).await
    }

    /// Creates the objects through the server at `base` with session key `key`.
    pub async fn create_at(base: &str, key: &str) -> Fixture {
        let client = crate::common::keyed_client(key).build().expect("client");
        let post = |path: &str, body: Value| {
            let req = client.post(format!("{base}{path}")).json(&body);
            async move {
                let r = req.send().await.expect("request");
                (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
        let get = |path: &str| {
            let req = client.get(format!("{base}{path}"));
            async move {
                let r = req.send().await.expect("request");
                (
                    r.status().as_u16(),
                    r.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (st, info) = post(
            "/api/conversations",
            json!({
                "agent": failing_agent("sk-fixture"),
                "workspace": {"working_dir": dir.path().join("ws").to_string_lossy()},
                "max_iterations": 1,
            }),
        )
        .await;
        assert_eq!(st, 201, "{info}");
        let conversation = info["id"].as_str().expect("id").to_string();
        let (st, _) = post(
            &format!("/api/conversations/{conversation}/events"),
            json!({"content": [{"type": "text", "text": "hello"}]}),
        )
        .await;
        assert_eq!(st, 200);
        let (_, page) = get(&format!(
            "/api/conversations/{conversation}/events/search?limit=1"
        ))
        .await;
        let event = page["items"][0]["id"].as_str().expect("event").to_string();
        let (st, cmd) = post("/api/bash/start_bash_command", json!({"command": "true"})).await;
        assert_eq!(st, 200, "{cmd}");
        let bash_event = cmd["id"].as_str().expect("id").to_string();
        let file = dir.path().join("file.txt");
        std::fs::write(&file, b"content\n").expect("write");
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).expect("mkdir");
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args(args)
                .current_dir(&repo)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(repo.join("a.txt"), b"one\n").expect("write");
        git(&["add", "."]);
        git(&["commit", "-qm", "init"]);
        std::fs::write(repo.join("a.txt"), b"two\n").expect("write");
        // the bash command is recorded before anything else runs against the fixture
        poll(Duration::from_secs(10), "bash event", || async {
            let (st, _) = get(&format!("/api/bash/bash_events/{bash_event}")).await;
            (st == 200).then_some(())
        })
        .await;
        Fixture {
            conversation,
            event,
            bash_event,
            file,
            repo,
            _dir: dir,
        }
    }

    /// The request path for a route pattern of `ROUTES`.
    pub fn path(&self, pattern: &str) -> String {
        let file = self.file.to_string_lossy();
        let repo = self.repo.to_string_lossy();
        let path_tail = if pattern.starts_with("/api/git/diff/") {
            format!("{repo}/a.txt")
        } else if pattern.starts_with("/api/git/") {
            repo.to_string()
        } else if pattern.starts_with("/static/") {
            "index.html".to_string()
        } else {
            file.to_string()
        };
        let event = if pattern.starts_with("/api/bash/") {
            &self.bash_event
        } else {
            &self.event
        };
        pattern
            .replace("{conversation_id}", &self.conversation)
            .replace("{event_id}", event)
            .replace("{path:.*}", &path_tail)
    }
}

/// Whether a `ROUTES` entry is a WebSocket.
pub fn is_socket(pattern: &str) -> bool {
    pattern.starts_with("/sockets/")
}
