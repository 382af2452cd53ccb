//! Raw HTTP/1.1 over a socket, for requests a client library would refuse or normalise
//! (`%2e%2e` segments, bytes outside ASCII in the target, broken framing).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// A parsed answer: status, headers (names lower-cased) and body bytes.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `head` (request line and headers, without the final blank line) and `body` with
/// `Connection: close`, reads the whole answer (bounded by `timeout`). `None` when the server
/// closed the connection without an HTTP answer.
pub fn request(
    addr: SocketAddr,
    head: &[u8],
    body: &[u8],
    timeout: Duration,
) -> Option<RawResponse> {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s.set_write_timeout(Some(timeout)).expect("timeout");
    let mut req = head.to_vec();
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    req.extend_from_slice(body);
    // the server may answer (413, 400) and close before reading everything
    let _ = s.write_all(&req);
    let mut out = Vec::new();
    let read = s.read_to_end(&mut out);
    if let Err(e) = read {
        assert!(
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
            "no answer within {timeout:?} to {:?}",
            String::from_utf8_lossy(head)
        );
    }
    parse(&out)
}

fn parse(raw: &[u8]) -> Option<RawResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..end]);
        raw = &raw[(end + 2).min(raw.len())..];
    }
    out
}
