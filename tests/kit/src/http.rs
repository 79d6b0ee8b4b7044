//! The one raw HTTP/1.1 client of the tests and benches: a request on a fresh
//! connection (`Connection: close`), its status and body. Raw on purpose: the
//! tests look at exactly what the daemon's door answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The header every JSON POST to the daemon carries (others are refused, 415).
pub const JSON: (&str, &str) = ("Content-Type", "application/json");

/// `method path` to `127.0.0.1:port` with `body` (a Content-Length is always
/// sent) and `headers`; the status code (0 if the answer has none) and body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// Every event in the `/events` ring of the daemon on `port` (none if it
/// does not answer).
pub fn events(port: u16) -> Vec<serde_json::Value> {
    get_json(port, "/events?since=0")
        .and_then(|v| v.get("events").and_then(serde_json::Value::as_array).cloned())
        .unwrap_or_default()
}

/// `GET path` parsed as JSON, when it answers 200 with JSON.
pub fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let (code, body) = request(port, "GET", path, None, &[]).ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}
