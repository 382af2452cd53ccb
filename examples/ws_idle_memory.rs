//! Server memory per idle WebSocket subscriber (issue "Live streams": under 64 KB each).
//!
//! Against a running server whose process id is known: creates a conversation, reads the
//! server's resident memory, opens N sockets on `/sockets/events/{id}` and waits for each one's
//! initial state event, lets the server settle, reads the resident memory again, and prints the
//! difference divided by N. The sockets stay open (and idle) while the second figure is read.
//!
//! ```sh
//! cargo run --release --example ws_idle_memory -- http://127.0.0.1:8000 <server pid> 1000 [api key]
//! ```

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS line".to_string())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: ws_idle_memory BASE_URL PID N [API_KEY]";
    let base = args.next().ok_or(usage)?;
    let pid: u32 = args.next().and_then(|p| p.parse().ok()).ok_or(usage)?;
    let n: usize = args.next().and_then(|p| p.parse().ok()).ok_or(usage)?;
    let key = args.next();

    let http = reqwest::Client::new();
    let mut req = http.post(format!("{base}/api/conversations")).json(&json!({
        "agent": {"llm": {"model": "openai/unused", "api_key": "unused"}, "tools": []},
        "workspace": {"working_dir": std::env::temp_dir()},
    }));
    if let Some(k) = &key {
        req = req.header("X-Session-API-Key", k);
    }
    let created: serde_json::Value = req
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let id = created["id"]
        .as_str()
        .ok_or("no conversation id")?
        .to_string();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid)?;
    let ws_base = base.replacen("http", "ws", 1);
    let mut url = format!("{ws_base}/sockets/events/{id}");
    if let Some(k) = &key {
        url.push_str(&format!("?session_api_key={k}"));
    }
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        // the initial state event: the subscription is in place
        ws.next()
            .await
            .ok_or("socket closed before its state event")?
            .map_err(|e| e.to_string())?;
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid)?;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!(
        "{n} idle subscribers: server RSS {before} KiB -> {after} KiB, {:.1} KB per subscriber",
        per / 1000.0
    );
    drop(sockets);
    Ok(())
}
