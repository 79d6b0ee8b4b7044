//! The control plane's front door on TCP. tiny_http reads a request head with
//! no limit (a client sending one endless header line grows the daemon without
//! bound, and on loopback any local user can) and sizes a body buffer by what
//! `Content-Length` says. So the TCP port is held here: one "http-front"
//! thread accepts, and each connection gets an "http-conn" thread that reads
//! the request head, at most [`MAX_HEAD`] bytes within [`HEAD_WITHIN`], and
//! answers 431, 408 or 413 itself when it is too big, too slow, or declares a
//! body over the cap. Any other request goes on to tiny_http, which listens on
//! a Unix socket in a folder only the daemon's user can enter: the head marked
//! `Connection: close` (one request per connection, so the next head is read
//! here too), then the bytes both ways until tiny_http has answered.
//!
//! It parses no more than it must: the head's end, `Content-Length`, and the
//! `Connection` lines it replaces. Everything else, bad heads included, is
//! tiny_http's to answer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The largest request head passed on: request line and headers.
pub const MAX_HEAD: usize = 16 * 1024;
/// A client gets this long to send its whole head.
pub const HEAD_WITHIN: Duration = Duration::from_secs(10);
/// Then the body up and the answer down must be through within this: one
/// deadline for the connection, so a client trickling bytes cannot hold a
/// connection slot (or tiny_http's thread) for longer.
const AFTER_HEAD_WITHIN: Duration = Duration::from_secs(60);
/// Connections served at once; more are told 503 and closed (each holds
/// threads here and in tiny_http, for up to [`HEAD_WITHIN`] and then
/// [`AFTER_HEAD_WITHIN`]).
pub const MAX_CONNECTIONS: usize = 128;
/// What is read and thrown away after a refusal, at most.
const DRAIN_AT_MOST: usize = 256 * 1024;
/// After a failed accept (say, out of file descriptors), before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Handle on the accepting thread; dropping it stops accepting.
pub struct Front {
    stop: Arc<AtomicBool>,
    max_body: Arc<AtomicUsize>,
    local_addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Front {
    /// Accepts on `listener`, passing requests on to the Unix socket `inner`;
    /// bodies declared over `max_body` are refused, heads not sent within
    /// `head_within` ([`HEAD_WITHIN`] but in tests) too.
    pub fn start(listener: TcpListener, inner: PathBuf, max_body: usize, head_within: Duration) -> io::Result<Front> {
        let local_addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let door = Door { inner, max_body: Arc::new(AtomicUsize::new(max_body)), head_within };
        let limit = door.max_body.clone();
        let thread = std::thread::Builder::new()
            .name("http-front".into())
            .spawn(move || accept_loop(listener, door, &thread_stop))?;
        Ok(Front { stop, local_addr, thread: Some(thread), max_body: limit })
    }

    /// The body cap, for a reload hook to change: a reload may change
    /// `dispatch.max_task_bytes`, which caps the enqueue route.
    pub fn max_body_handle(&self) -> Arc<AtomicUsize> {
        self.max_body.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The accept blocks: a connection of our own wakes it to see the flag.
        // Should that fail (the address gone from its interface), the thread
        // is left behind rather than the stop hung; it accepts nothing more.
        let woken = TcpStream::connect_timeout(&wake_addr(self.local_addr), Duration::from_secs(1));
        match (woken, self.thread.take()) {
            (Ok(_), Some(thread)) => {
                let _ = thread.join();
            }
            (Err(e), _) => log::warn!("control plane: cannot wake the front door's accept ({e}); not waiting for it"),
            (Ok(_), None) => {}
        }
    }
}

/// Where to connect to reach a listener bound to `addr` (an unspecified
/// address is reached on loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut to = addr;
    if to.ip().is_unspecified() {
        to.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    to
}

/// What every connection is held to.
#[derive(Debug, Clone)]
struct Door {
    /// tiny_http's Unix socket.
    inner: PathBuf,
    /// The largest body any route takes (each route checks its own cap).
    max_body: Arc<AtomicUsize>,
    head_within: Duration,
}

fn accept_loop(listener: TcpListener, door: Door, stop: &AtomicBool) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut turned_away = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, _)) if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS => {
                turned_away_with_503(client);
                turned_away += 1;
                if turned_away.is_power_of_two() {
                    log::warn!("control plane: {MAX_CONNECTIONS} connections open; {turned_away} turned away so far");
                }
            }
            Ok((client, _)) if !stop.load(Ordering::Relaxed) => {
                let door = door.clone();
                let counted = Counted::new(&open);
                let spawned = std::thread::Builder::new().name("http-conn".into()).spawn(move || {
                    let _counted = counted;
                    serve_connection(client, &door)
                });
                if let Err(e) = spawned {
                    log::error!("control plane: cannot start a connection thread: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => {
                log::warn!("control plane: accept failed: {e}");
                std::thread::sleep(ACCEPT_PAUSE);
            }
        }
    }
}

/// A best-effort 503 that never waits on the client: a fresh socket's send
/// buffer takes it whole, or it is not sent.
fn turned_away_with_503(mut client: TcpStream) {
    let body = r#"{"error":"too many connections to the control plane; try again"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if client.set_nonblocking(true).is_ok() {
        let _ = client.write(answer.as_bytes());
    }
}

/// One open connection, counted while it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: &Arc<AtomicUsize>) -> Counted {
        open.fetch_add(1, Ordering::Relaxed);
        Counted(open.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What reading a request head came to.
#[derive(Debug, PartialEq)]
enum Head {
    /// The head (ending in its blank line) and any bytes read past it.
    Whole {
        head: Vec<u8>,
        rest: Vec<u8>,
    },
    TooLarge,
    TooSlow,
    /// The client closed (or failed) before a whole head: nothing to answer.
    Gone,
}

fn serve_connection(mut client: TcpStream, door: &Door) {
    let (head, rest) = match read_head(&mut client, Instant::now() + door.head_within) {
        Head::Whole { head, rest } => (head, rest),
        Head::TooLarge => return refuse(client, 431, &format!("request head over {MAX_HEAD} bytes")),
        Head::TooSlow => {
            let within = door.head_within.as_secs_f64();
            return refuse(client, 408, &format!("request head not sent within {within} s"));
        }
        Head::Gone => return,
    };
    let max_body = door.max_body.load(Ordering::Relaxed);
    if content_length(&head).is_some_and(|n| n > max_body as u64) {
        return refuse(client, 413, &format!("body over {max_body} bytes"));
    }
    let mut upstream = match UnixStream::connect(&door.inner) {
        Ok(s) => s,
        Err(e) => {
            log::error!("control plane: cannot reach {}: {e}", door.inner.display());
            return refuse(client, 503, "the control plane is restarting; try again");
        }
    };
    let sent = upstream.write_all(&close_after(&head)).and_then(|()| upstream.write_all(&rest));
    if let Err(e) = sent {
        log::debug!("control plane: passing a request on failed: {e}");
        return;
    }
    relay(client, upstream, Instant::now() + AFTER_HEAD_WITHIN);
}

/// Reads up to the blank line that ends a head, within `deadline`.
fn read_head<C: Read + Timed>(client: &mut C, deadline: Instant) -> Head {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || client.within(left).is_err() {
            return Head::TooSlow;
        }
        match client.read(&mut chunk) {
            Ok(0) => return Head::Gone,
            Ok(n) => {
                let from = buf.len().saturating_sub(3);
                buf.extend_from_slice(&chunk[..n]);
                if let Some(at) = find(&buf[from..], b"\r\n\r\n") {
                    let end = from + at + 4;
                    if end > MAX_HEAD {
                        return Head::TooLarge;
                    }
                    let rest = buf.split_off(end);
                    return Head::Whole { head: buf, rest };
                }
                if buf.len() > MAX_HEAD {
                    return Head::TooLarge;
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Head::TooSlow,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Head::Gone,
        }
    }
}

/// A stream whose reads and writes can be bounded in time.
trait Timed {
    /// No read or write from now on waits longer than `d`.
    fn within(&self, d: Duration) -> io::Result<()>;
}

impl Timed for TcpStream {
    fn within(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

impl Timed for UnixStream {
    fn within(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))?;
        self.set_write_timeout(Some(d))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The declared body length; `None` when there is none or it is not a number
/// (tiny_http answers that one).
fn content_length(head: &[u8]) -> Option<u64> {
    header_lines(head).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
    })
}

/// The header lines of a head (not the request line), as text where they are.
fn header_lines(head: &[u8]) -> impl Iterator<Item = &str> {
    head.split(|b| *b == b'\n').skip(1).filter_map(|l| std::str::from_utf8(l).ok()).map(|l| l.trim_end_matches('\r'))
}

/// The head with its `Connection` lines replaced by `Connection: close`.
fn close_after(head: &[u8]) -> Vec<u8> {
    let body_end = head.len() - 2; // the final blank line's CRLF
    let mut out = Vec::with_capacity(head.len() + 19);
    let mut lines = head[..body_end].split_inclusive(|b| *b == b'\n');
    if let Some(request_line) = lines.next() {
        out.extend_from_slice(request_line);
    }
    for line in lines {
        let name = line.split(|b| *b == b':').next().unwrap_or_default();
        if !name.trim_ascii().eq_ignore_ascii_case(b"connection") {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out
}

/// Copies the client's further bytes (a body) up and the answer down until
/// tiny_http closes its end or `deadline` passes, then closes both.
fn relay(client: TcpStream, upstream: UnixStream, deadline: Instant) {
    let (Ok(mut client_in), Ok(mut upstream_out)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = std::thread::Builder::new().name("http-conn".into()).spawn(move || {
        pump(&mut client_in, &mut upstream_out, deadline);
        let _ = upstream_out.shutdown(Shutdown::Write);
    });
    let (mut upstream_in, mut client_out) = (upstream, client);
    if up.is_ok() {
        pump(&mut upstream_in, &mut client_out, deadline);
        let _ = client_out.flush();
    } else {
        log::error!("control plane: cannot start a relay thread; dropping the connection");
    }
    // Ends the upward copy too, should the client still be sending.
    let _ = client_out.shutdown(Shutdown::Both);
    let _ = upstream_in.shutdown(Shutdown::Both);
    if let Ok(up) = up {
        let _ = up.join();
    }
}

/// Copies `from` to `to` until `from` ends, either fails, or `deadline`.
fn pump<R: Read + Timed, W: Write + Timed>(from: &mut R, to: &mut W, deadline: Instant) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || from.within(left).is_err() || to.within(left).is_err() {
            return;
        }
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Answers `code` with `{"error": why}` and closes.
fn refuse(mut client: TcpStream, code: u16, why: &str) {
    let reason = match code {
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    log::warn!("control plane: {code} to a client: {why}");
    let body = serde_json::json!({ "error": why }).to_string();
    let answer = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes());
    let _ = client.shutdown(Shutdown::Write);
    // Read a little of what the client still sends (a body, the rest of a
    // big head), so that closing does not reset the connection before it has
    // read the answer; a client sending on and on is cut off.
    let _ = client.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let until = Instant::now() + Duration::from_millis(500);
    let mut drained = 0;
    while drained < DRAIN_AT_MOST && Instant::now() < until {
        match client.read(&mut sink) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that sends `parts` one read at a time, then blocks (times out).
    struct Script(std::collections::VecDeque<Vec<u8>>);

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(mut part) = self.0.pop_front() else { return Err(io::ErrorKind::WouldBlock.into()) };
            let n = part.len().min(buf.len());
            buf[..n].copy_from_slice(&part[..n]);
            if n < part.len() {
                self.0.push_front(part.split_off(n));
            }
            Ok(n)
        }
    }

    impl Timed for Script {
        fn within(&self, _: Duration) -> io::Result<()> {
            Ok(())
        }
    }

    fn script(parts: &[&[u8]]) -> Script {
        Script(parts.iter().map(|p| p.to_vec()).collect())
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn a_head_is_read_to_its_blank_line_across_reads() {
        let got = read_head(&mut script(&[b"GET /status HTTP/1.1\r\nHost: x\r", b"\n\r\n{\"a\""]), later());
        let want = Head::Whole { head: b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), rest: b"{\"a\"".to_vec() };
        assert_eq!(got, want);
    }

    #[test]
    fn a_head_too_large_or_too_slow_is_refused() {
        let line = format!("GET /status HTTP/1.1\r\nX-Long: {}", "y".repeat(MAX_HEAD));
        assert_eq!(read_head(&mut script(&[line.as_bytes()]), later()), Head::TooLarge);
        assert_eq!(read_head(&mut script(&[b"GET /status HTTP/1.1\r\n"]), later()), Head::TooSlow);
        assert_eq!(read_head(&mut script(&[b"GET /status HTTP/1.1\r\n"]), Instant::now()), Head::TooSlow);
        assert_eq!(read_head(&mut script(&[b"GET", b""]), later()), Head::Gone);
    }

    #[test]
    fn the_declared_length_is_found_in_any_case() {
        let head = b"POST /failover HTTP/1.1\r\nHost: x\r\ncontent-LENGTH:  70000 \r\n\r\n";
        assert_eq!(content_length(head), Some(70_000));
        assert_eq!(content_length(b"POST / HTTP/1.1\r\nContent-Length: lots\r\n\r\n"), None);
        assert_eq!(content_length(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), None);
    }

    #[test]
    fn every_connection_line_becomes_one_close() {
        let head = b"GET /status HTTP/1.1\r\nConnection: keep-alive\r\nHost: x\r\nconnection : Upgrade\r\n\r\n";
        assert_eq!(close_after(head), b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec());
    }

    #[test]
    fn an_unspecified_address_is_woken_on_loopback() {
        assert_eq!(wake_addr("0.0.0.0:8080".parse().unwrap()), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(wake_addr("[::]:8080".parse().unwrap()), "[::1]:8080".parse().unwrap());
        assert_eq!(wake_addr("10.0.0.2:80".parse().unwrap()), "10.0.0.2:80".parse().unwrap());
    }
}
