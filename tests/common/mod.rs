//! Shared test helpers: a real server on an ephemeral loopback port, with its own data
//! directories, driven over HTTP.

#![allow(dead_code)]

pub mod fake_llm;
pub mod proc;
pub mod raw;
pub mod routes;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agent_server::Services;
use agent_server::config::Config;
use serde_json::Value;

/// The session key every test server is configured with.
pub const KEY: &str = "test-key";

/// A server running on its own actix system thread, with temporary data directories.
pub struct TestServer {
    pub base: String,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: Config,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// A server with a session key and fresh directories.
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    /// A server whose configuration `tweak` may change (directories are already set).
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            session_api_keys: vec![KEY.to_string()],
            conversations_path: dir.path().join("conversations"),
            bash_events_dir: dir.path().join("bash_events"),
            enable_vscode: false,
            ..Config::default()
        };
        tweak(&mut config);
        Self::start_config(dir, config)
    }

    /// Starts a server on an existing directory (restart tests).
    pub fn start_config(dir: tempfile::TempDir, config: Config) -> TestServer {
        let (tx, rx) = mpsc::channel();
        let cfg = config.clone();
        let thread = std::thread::spawn(move || {
            let sys = actix_rt::System::new();
            sys.block_on(async move {
                let services = Services::start(cfg).await.expect("services");
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().expect("addr");
                let server =
                    agent_server::start_server(services.clone(), listener).expect("server");
                tx.send((addr, server.handle())).expect("send");
                let _ = server.await;
                services.shutdown().await;
            });
        });
        let (addr, handle) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server start");
        TestServer {
            base: format!("http://{addr}"),
            addr,
            dir,
            config,
            handle,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A client that sends the session key.
    pub fn client(&self) -> reqwest::Client {
        keyed_client(KEY)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self
            .client()
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Stops the server gracefully and returns its directory (for restarts).
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            let h = self.handle.clone();
            let _ =
                std::thread::spawn(move || actix_rt::System::new().block_on(h.stop(true))).join();
            let _ = t.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A client builder whose requests carry `X-Session-API-Key: key`.
pub fn keyed_client(key: &str) -> reqwest::ClientBuilder {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("X-Session-API-Key", key.parse().expect("header"));
    reqwest::Client::builder().default_headers(h)
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Path of the release or debug binary built by cargo for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_agent-server"))
}
