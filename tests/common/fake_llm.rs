//! A scripted fake LLM server for integration tests: plain HTTP/1.1 on 127.0.0.1:0, one request
//! per connection. A responder closure picks the reply of each request (it sees the request and
//! how many came before); every request is recorded. Helpers build OpenAI chat-completions,
//! Anthropic Messages and OpenAI Responses replies.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One received request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// An agent-loop request (it carries tools or is a Responses/Anthropic call with tools).
    pub fn has_tools(&self) -> bool {
        self.body.get("tools").is_some()
    }
}

/// One canned reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering.
    pub delay: Duration,
    /// How the reply is cut short (faults).
    pub cut: Cut,
}

/// A broken reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The whole reply.
    None,
    /// The connection is reset instead of answered.
    Reset,
    /// The head promises more body than is sent, then the connection closes.
    Truncate,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
            cut: Cut::None,
        }
    }

    /// Cuts this reply short with `cut`.
    pub fn cut(mut self, cut: Cut) -> Reply {
        self.cut = cut;
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn delayed(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    /// An OpenAI-style error body with `status`.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(
            status,
            &json!({"error": {"message": message, "type": "server_error"}}),
        )
    }
}

type Responder = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// The running fake.
pub struct FakeLlm {
    /// `http://127.0.0.1:PORT` (append `/v1` for OpenAI-style base URLs).
    pub base: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeLlm {
    /// A server answering each request with `respond(request, index)`.
    pub async fn start(
        respond: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> FakeLlm {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let respond: Arc<Responder> = Arc::new(respond);
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    let reply = {
                        let mut all = recorded.lock().expect("lock");
                        let n = all.len();
                        all.push(req.clone());
                        respond(&req, n)
                    };
                    if !reply.delay.is_zero() {
                        tokio::time::sleep(reply.delay).await;
                    }
                    if reply.cut == Cut::Reset {
                        #[allow(deprecated)]
                        let _ = sock.set_linger(Some(Duration::ZERO));
                        drop(sock);
                        return;
                    }
                    let promised = match reply.cut {
                        Cut::Truncate => reply.body.len() + 1000,
                        _ => reply.body.len(),
                    };
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {promised}\r\nconnection: close\r\n",
                        reply.status,
                    );
                    for (k, v) in &reply.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(reply.body.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        FakeLlm {
            base: format!("http://{addr}"),
            requests,
        }
    }

    /// A server answering the i-th request with `replies[i]` (the last one repeats).
    pub async fn scripted(replies: Vec<Reply>) -> FakeLlm {
        FakeLlm::start(move |_, n| replies[n.min(replies.len() - 1)].clone()).await
    }

    /// `base` + `/v1`, the OpenAI-style base URL.
    pub fn v1(&self) -> String {
        format!("{}/v1", self.base)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }

    /// The POST requests (LLM calls).
    pub fn calls(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let header_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[header_end..]).unwrap_or(Value::Null);
    Some(Request {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

/// A tool call of a chat reply.
pub fn call(id: &str, name: &str, args: &Value) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}})
}

/// A chat-completions reply with `content` (string or null) and tool `calls`.
pub fn chat(id: &str, content: Value, calls: Vec<Value>) -> Reply {
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    Reply::json(
        200,
        &json!({"id": id, "object": "chat.completion", "created": 1, "model": "fake-model",
            "choices": [{"index": 0, "finish_reason": if message.get("tool_calls").is_some() {"tool_calls"} else {"stop"}, "message": message}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}),
    )
}

/// A chat reply with one tool call.
pub fn chat_call(n: usize, name: &str, args: Value) -> Reply {
    chat(
        &format!("chatcmpl-{n}"),
        Value::Null,
        vec![call(&format!("call_{n}"), name, &args)],
    )
}

/// A chat reply calling `finish`.
pub fn chat_finish(n: usize, message: &str) -> Reply {
    chat_call(n, "finish", json!({"message": message}))
}

/// An Anthropic Messages reply with content blocks.
pub fn anthropic(id: &str, blocks: Vec<Value>, input_tokens: u64, output_tokens: u64) -> Reply {
    let stop = if blocks.iter().any(|b| b["type"] == "tool_use") {
        "tool_use"
    } else {
        "end_turn"
    };
    Reply::json(
        200,
        &json!({"id": id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": blocks, "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
    )
}

/// An OpenAI Responses reply with output items.
pub fn responses(id: &str, output: Vec<Value>) -> Reply {
    Reply::json(
        200,
        &json!({"id": id, "object": "response", "created_at": 1, "status": "completed", "model": "gpt-5-mini",
            "output": output, "usage": {"input_tokens": 50, "output_tokens": 5, "total_tokens": 55,
                "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}}),
    )
}

/// A fake shared by every test of the binary (own thread and runtime, started on first use):
/// agent calls (with tools) get the text reply `Done.`, which finishes a run in one step; other
/// calls (titles) get a 400. Returns the OpenAI-style base URL.
pub fn shared_text_llm() -> String {
    static BASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let fake = FakeLlm::start(|req, n| {
                    if req.has_tools() {
                        chat(&format!("chatcmpl-text-{n}"), json!("Done."), Vec::new())
                    } else {
                        Reply::error(400, "no titles here")
                    }
                })
                .await;
                tx.send(fake.v1()).expect("send");
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("shared fake LLM")
    })
    .clone()
}
