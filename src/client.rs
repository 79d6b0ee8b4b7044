//! The command line's side of the control plane: one HTTP/1.1 request to the
//! running daemon at `http.listen` (TCP or unix socket), and the readable
//! `status` table. Hand-written HTTP because ureq cannot speak over a unix
//! socket, and one code path for both keeps them behaving alike.

use crate::config::{Config, Listen};
use crate::status::{Status, Window};
use std::fmt::{self, Write as _};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Connecting, sending and reading each give up after this.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Answers larger than this are refused (the event ring fits well within).
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

#[derive(Debug)]
pub enum ClientError {
    /// No daemon answers at `listen` (exit 69, EX_UNAVAILABLE).
    Unavailable { listen: String, why: String },
    /// `http.listen` cannot be parsed.
    BadListen(String),
    /// Something answered, but not with HTTP we understand.
    BadAnswer { listen: String, why: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unavailable { listen, why } => {
                write!(f, "no daemon answers at {listen}: {why}")
            }
            ClientError::BadListen(l) => write!(f, "http.listen {l:?}: expected host:port or unix:/path/to/socket"),
            ClientError::BadAnswer { listen, why } => {
                write!(f, "the daemon at {listen} gave an answer that is not HTTP: {why}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Sends one request to the daemon and returns the status code and body.
/// `path` includes any query string; `body` is sent as JSON.
pub fn request(config: &Config, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), ClientError> {
    let call =
        Call { method, path, body, content_type: "application/json", token: config.http.token.as_ref(), headers: &[] };
    send(config, &call)
}

/// One request as [`send`] makes it.
pub struct Call<'a> {
    pub method: &'a str,
    /// With any query string.
    pub path: &'a str,
    pub body: Option<&'a str>,
    pub content_type: &'a str,
    /// The bearer token to send, if any (the MCP server sends its own).
    pub token: Option<&'a crate::config::Secret>,
    /// More headers; values must be printable ASCII.
    pub headers: &'a [(&'a str, String)],
}

/// Sends `call` to the daemon at `http.listen`: the status code and body.
pub fn send(config: &Config, call: &Call<'_>) -> Result<(u16, String), ClientError> {
    let Call { method, path, body, content_type, token, headers } = *call;
    let listen = config.http.listen.clone();
    let unavailable = |why: String| ClientError::Unavailable { listen: listen.clone(), why };
    let addr = Listen::parse(&listen).map_err(|_| ClientError::BadListen(listen.clone()))?;
    let (mut stream, host): (Box<dyn Stream>, String) = match &addr {
        Listen::Tcp(sock) => {
            let s = TcpStream::connect_timeout(sock, TIMEOUT).map_err(|e| unavailable(e.to_string()))?;
            set_timeouts_tcp(&s).map_err(|e| unavailable(e.to_string()))?;
            (Box::new(s), sock.to_string())
        }
        Listen::Unix(path) => {
            let s = UnixStream::connect(path).map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
            s.set_read_timeout(Some(TIMEOUT))
                .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
                .map_err(|e| unavailable(e.to_string()))?;
            (Box::new(s), "localhost".to_string())
        }
    };
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if let Some(token) = token {
        // Written straight into the request; never formatted into an error.
        head.push_str("Authorization: Bearer ");
        head.push_str(token.expose());
        head.push_str("\r\n");
    }
    let body = body.unwrap_or("");
    if method != "GET" || !body.is_empty() {
        let _ = write!(head, "Content-Type: {content_type}\r\nContent-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| unavailable(format!("cannot send the request: {e}")))?;
    drop(head);

    let deadline = Instant::now() + TIMEOUT;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if Instant::now() > deadline {
            return Err(unavailable("the answer did not arrive in time".into()));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() as u64 > MAX_ANSWER {
                    return Err(ClientError::BadAnswer { listen, why: "answer too large".into() });
                }
                if complete(&raw) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(unavailable(format!("no answer within {} s", TIMEOUT.as_secs())));
            }
            Err(e) => return Err(unavailable(format!("reading the answer: {e}"))),
        }
    }
    parse_answer(&raw).map_err(|why| ClientError::BadAnswer { listen, why })
}

fn set_timeouts_tcp(s: &TcpStream) -> std::io::Result<()> {
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))
}

/// True once the head and a `Content-Length` body have fully arrived (so a
/// server that keeps the connection open does not make us wait).
fn complete(raw: &[u8]) -> bool {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    match content_length(&head) {
        Some(n) => raw.len() >= end + 4 + n,
        None => false,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn content_length(head: &str) -> Option<usize> {
    header(head, "Content-Length")?.parse().ok()
}

/// Splits a raw HTTP/1.x answer into status code and body (identity,
/// Content-Length or chunked).
fn parse_answer(raw: &[u8]) -> Result<(u16, String), String> {
    let end = find(raw, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unexpected status line {status_line:?}"));
    }
    let code: u16 =
        parts.next().and_then(|c| c.parse().ok()).ok_or_else(|| format!("unexpected status line {status_line:?}"))?;
    let rest = &raw[end + 4..];
    let body = if header(head, "Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(n) = content_length(head) {
        rest.get(..n).ok_or("the answer was cut short")?.to_vec()
    } else {
        rest.to_vec()
    };
    let body = String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    Ok((code, body))
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("bad chunk header")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(rest.get(..size).ok_or("the answer was cut short")?);
        rest = rest.get(size + 2..).ok_or("the answer was cut short")?;
    }
}

/// The readable form of `/status` for `claude-failover status`.
/// `claude-failover status --fleet`: the fleet as this host sees it.
pub fn render_fleet_table(f: &crate::status::FleetStatus) -> String {
    let mut out = format!(
        "fleet: host {}, policy {}, etcd {}{}\n",
        f.host,
        f.policy,
        f.state,
        f.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
    );
    if let Some(a) = &f.active {
        out.push_str(&format!("active: {} (revision {}, by {}, {})\n", a.account, a.revision, a.by, a.reason));
    }
    out.push_str(&format!(
        "{:<20} {:<14} {:>8} {:>5} {:>7}  {}\n",
        "HOST", "ACCOUNT", "SESSIONS", "BUSY", "QUEUED", "LAST SEEN"
    ));
    for h in &f.hosts {
        out.push_str(&format!(
            "{:<20} {:<14} {:>8} {:>5} {:>7}  {}\n",
            h.host,
            h.account.as_deref().unwrap_or("-"),
            h.sessions,
            h.busy,
            h.queued,
            match h.clock_skew_secs {
                Some(skew) => format!("{} (clock {skew:+} s)", h.last_seen),
                None => h.last_seen.clone(),
            }
        ));
    }
    for (account, host) in &f.holds {
        out.push_str(&format!("hold: {account} by {host}\n"));
    }
    for (account, host) in &f.pollers {
        out.push_str(&format!("poll: {account} by {host}\n"));
    }
    out
}

pub fn render_status_table(status: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "claude-failover {}  started {}  active account: {}  dispatch: {}",
        status.version,
        status.started_at,
        status.active_account.as_deref().unwrap_or("none"),
        if status.dispatch_paused { "paused" } else { "running" }
    );
    let swap = if status.swap.in_progress { "in progress".to_string() } else { "idle".to_string() };
    let _ = write!(out, "swap: {swap}");
    if let Some(last) = &status.swap.last {
        let _ = write!(
            out,
            "; last {} -> {} ({}) started {}, {}, {} sessions moved",
            last.from,
            last.to,
            last.reason,
            last.started_at,
            last.finished_at.as_deref().map(|f| format!("finished {f}")).unwrap_or_else(|| "not finished".into()),
            last.sessions_moved
        );
    }
    out.push_str("\n\n");

    let mut rows = vec![vec![
        "ACCOUNT".to_string(),
        "STATE".into(),
        "ELIGIBLE".into(),
        "5H".into(),
        "5H RESETS".into(),
        "7D".into(),
        "7D RESETS".into(),
        "NOTE".into(),
    ]];
    for a in &status.accounts {
        let mut note = Vec::new();
        if let Some(until) = &a.exhausted_until {
            note.push(format!("exhausted until {until}"));
        }
        if let Some(e) = &a.last_error {
            note.push(e.clone());
        }
        if let Some(s) = &a.spend {
            note.push(format!("api key: spent {:.2} of {:.2} USD on {}", s.spent_usd, s.cap_usd, s.day));
        }
        for (name, w) in &a.other_windows {
            note.push(format!("{name} {}", percent(Some(w))));
        }
        rows.push(vec![
            a.name.clone(),
            a.state.clone(),
            if a.eligible { "yes" } else { "no" }.into(),
            percent(a.five_hour.as_ref()),
            resets(a.five_hour.as_ref()),
            percent(a.seven_day.as_ref()),
            resets(a.seven_day.as_ref()),
            note.join("; "),
        ]);
    }
    table(&mut out, &rows);

    out.push('\n');
    let mut rows = vec![vec![
        "SESSION".to_string(),
        "PROJECT".into(),
        "STATE".into(),
        "ACCOUNT".into(),
        "TASK".into(),
        "RESTARTS".into(),
    ]];
    for s in &status.sessions {
        rows.push(vec![
            s.name.clone(),
            s.project.clone(),
            s.state.clone(),
            s.account.clone().unwrap_or_else(|| "-".into()),
            s.task.clone().unwrap_or_else(|| "-".into()),
            s.restarts.to_string(),
        ]);
    }
    table(&mut out, &rows);

    out.push('\n');
    let mut rows = vec![vec!["QUEUE".to_string(), "INBOX".into(), "ACTIVE".into(), "DONE".into(), "FAILED".into()]];
    for q in &status.queues {
        rows.push(vec![
            q.project.clone(),
            q.inbox.to_string(),
            q.active.to_string(),
            q.done.to_string(),
            q.failed.to_string(),
        ]);
    }
    table(&mut out, &rows);
    out
}

fn percent(w: Option<&Window>) -> String {
    w.map(|w| format!("{:.1}%", w.utilization)).unwrap_or_else(|| "-".into())
}

fn resets(w: Option<&Window>) -> String {
    w.and_then(|w| w.resets_at.clone()).unwrap_or_else(|| "-".into())
}

/// Left-aligned columns, two spaces apart, no trailing blanks.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{AccountStatus, QueueStatus, SessionStatus};

    #[test]
    fn parses_plain_and_chunked_answers() {
        let raw = b"HTTP/1.1 202 Accepted\r\nContent-Length: 17\r\n\r\n{\"accepted\":true}";
        assert_eq!(parse_answer(raw).unwrap(), (202, "{\"accepted\":true}".into()));
        assert!(complete(raw));
        assert!(!complete(&raw[..raw.len() - 1]));
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_answer(raw).unwrap(), (200, "abcde".into()));
        assert!(parse_answer(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab").is_err());
    }

    #[test]
    fn the_table_shows_accounts_sessions_and_queues() {
        let status = Status {
            version: "0.1.0".into(),
            active_account: Some("alpha".into()),
            accounts: vec![AccountStatus {
                name: "alpha".into(),
                state: "active".into(),
                eligible: true,
                five_hour: Some(Window { utilization: 42.0, resets_at: Some("2026-11-25T20:00:00Z".into()) }),
                seven_day: None,
                other_windows: Default::default(),
                last_poll_at: None,
                last_error: None,
                exhausted_until: None,
                burn_rate_per_hour: None,
                kind: "subscription".into(),
                spend: None,
            }],
            sessions: vec![SessionStatus {
                name: "ccl-auto-11".into(),
                project: "secumon".into(),
                account: Some("alpha".into()),
                state: "busy".into(),
                claude_session_id: None,
                task: Some("fix-login.md".into()),
                restarts: 2,
                state_since: None,
                waiting_for: None,
                question: None,
            }],
            queues: vec![QueueStatus { project: "secumon".into(), inbox: 3, ..Default::default() }],
            ..Default::default()
        };
        let text = render_status_table(&status);
        assert!(text.contains("active account: alpha"));
        let alpha = text.lines().find(|l| l.starts_with("alpha")).unwrap();
        assert!(alpha.contains("active") && alpha.contains("yes") && alpha.contains("42.0%"));
        assert!(alpha.contains("2026-11-25T20:00:00Z"));
        let session = text.lines().find(|l| l.starts_with("ccl-auto-11")).unwrap();
        assert!(session.contains("busy") && session.contains("fix-login.md") && session.ends_with('2'));
        let queue = text.lines().find(|l| l.starts_with("secumon ")).unwrap();
        assert!(queue.split_whitespace().eq(["secumon", "3", "0", "0", "0"]));
    }
}
