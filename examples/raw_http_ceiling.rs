//! The ceiling of the `/server_info` measure on this machine, whatever the server: a plain
//! HTTP/1.1 keep-alive responder on tokio that answers every request with the same bytes
//! (no parsing beyond the end of the headers, no routing, no framework). What `ohbench`
//! measures against it is what its load generator and the loopback TCP stack allow on the
//! machine's cores; no real server can go past it. See `docs/performance.md`.
//!
//! ```sh
//! cargo build --release --example raw_http_ceiling
//! target/release/examples/raw_http_ceiling --port 18111 &
//! ohbench --base-url http://127.0.0.1:18111 --calibrate /server_info
//! ```

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `--port P [--threads N]` (one runtime thread unless given, like the real server's one
/// HTTP worker).
fn args() -> (u16, usize) {
    let mut port = 18111;
    let mut threads = 1;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => port = it.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--threads" => threads = it.next().and_then(|t| t.parse().ok()).unwrap_or(threads),
            _ => {}
        }
    }
    (port, threads)
}

/// The whole response: status line, headers and a body shaped like the real `/server_info`.
fn response() -> &'static [u8] {
    let body = r#"{"uptime":1.0,"idle_time":1.0,"title":"OpenHands Agent Server","version":"1.4.1","docs":"/docs","redoc":"/redoc"}"#;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    Box::leak(format!("{head}{body}").into_bytes().into_boxed_slice())
}

/// Answers each request read from `s` (anything up to a blank line) until the peer closes.
async fn serve(mut s: TcpStream, resp: &'static [u8]) {
    let mut buf = vec![0u8; 8192];
    let mut have = 0;
    loop {
        if have == buf.len() {
            return; // headers larger than the buffer: not a client of this measure
        }
        match s.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            if s.write_all(resp).await.is_err() {
                return;
            }
            buf.copy_within(end + 4..have, 0);
            have -= end + 4;
        }
    }
}

fn main() -> std::io::Result<()> {
    let (port, threads) = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let resp = response();
        loop {
            let (s, _) = listener.accept().await?;
            s.set_nodelay(true)?;
            tokio::spawn(serve(s, resp));
        }
    })
}
