//! The HTTP control plane at library level: the role spawned over loopback TCP
//! or a unix socket, with a fake coordinator answering control requests, and
//! every answer of docs/http.md checked over real HTTP.

use claude_failover::client;
use claude_failover::config::{Config, Secret};
use claude_failover::control::{Control, ControlError, ControlRequest, Shared};
use claude_failover::events::{Events, Kind};
use claude_failover::heartbeat::Heartbeats;
use claude_failover::http::{self, HttpHandle, Limits};
use claude_failover::metrics::Metrics;
use claude_failover::status::{AccountStatus, Status, Window};
use crossbeam_channel::Receiver;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const TOKEN: &str = "tok-7f3a9c1e-never-print-me";

/// Every log line of this test binary, to prove the token is never in one.
struct Capture(Mutex<String>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let mut text = self.0.lock();
        text.push_str(&format!("{} {}: {}\n", record.level(), record.target(), record.args()));
    }
    fn flush(&self) {}
}

fn captured_logs() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(String::new()))));
        crate::logs::capture(capture);
        capture
    })
}

fn status() -> Status {
    Status {
        version: "0.1.0".into(),
        started_at: "2026-11-25T16:00:00Z".into(),
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
        ..Default::default()
    }
}

/// The HTTP role plus a fake coordinator that records what it was asked.
struct Fixture {
    handle: Option<HttpHandle>,
    config: Config,
    heartbeats: Heartbeats,
    events: Events,
    swap_running: Arc<AtomicBool>,
    asked: Arc<Mutex<Vec<Control>>>,
    /// Where tiny_http's socket behind the TCP front door lives.
    _private: tempfile::TempDir,
}

impl Fixture {
    fn addr(&self) -> SocketAddr {
        self.handle.as_ref().unwrap().local_addr().expect("tcp")
    }

    /// A request through the CLI's client, with the configured token.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (code, text) = client::request(&self.config, method, path, body).expect("an answer");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (code, value)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

fn config(listen: &str, token: Option<&str>) -> Config {
    let mut config: Config = toml::from_str(&format!("[http]\nlisten = {listen:?}\n")).expect("config");
    config.http.token = token.map(|t| Secret::new(t.into()));
    config
}

fn start(listen: &str, token: Option<&str>, limits: Limits) -> Fixture {
    captured_logs();
    let heartbeats = Heartbeats::new(None);
    let events = Events::new(None);
    events.emit(Kind::DaemonStarted, "daemon", "started", json!({}));
    events.emit(Kind::TaskDone, "secumon", "fix-login.md done", json!({"task": "fix-login.md"}));
    let shared = Shared {
        status: Arc::new(RwLock::new(status())),
        events: events.clone(),
        metrics: Metrics::new(),
        heartbeats: heartbeats.clone(),
        history: Default::default(),
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let swap_running = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(Mutex::new(Vec::new()));
    coordinator(rx, swap_running.clone(), asked.clone());
    let mut config = config(listen, token);
    let beat = heartbeats.register("http");
    let private = kit::temp_dir();
    let handle = http::spawn_with(&config, private.path(), shared, tx, beat, limits).expect("spawn");
    if let Some(addr) = handle.local_addr() {
        // Port 0 became a real one; the client needs it.
        config.http.listen = addr.to_string();
    }
    Fixture { handle: Some(handle), config, heartbeats, events, swap_running, asked, _private: private }
}

fn coordinator(rx: Receiver<ControlRequest>, swap_running: Arc<AtomicBool>, asked: Arc<Mutex<Vec<Control>>>) {
    std::thread::spawn(move || {
        for req in rx {
            asked.lock().push(req.control.clone());
            let reply = match &req.control {
                Control::Failover { .. } if swap_running.load(Ordering::Relaxed) => {
                    Err(ControlError::Conflict("a swap is already running".into()))
                }
                Control::Failover { to: Some(to) } if to != "beta" => {
                    Err(ControlError::BadRequest(format!("unknown account {to:?}")))
                }
                Control::Failover { .. } => Ok(Value::Null),
                Control::PauseDispatch => Ok(json!({"paused": true})),
                Control::ResumeDispatch => Ok(json!({})),
                Control::RestartSession(name) if name == "ghost" => {
                    Err(ControlError::NotFound(format!("no session {name:?}")))
                }
                Control::RestartSession(_) => Ok(Value::Null),
                Control::Answer(_) => Err(ControlError::Conflict("HTTP sends no answers".into())),
            };
            let _ = req.reply.send(reply);
        }
    });
}

/// Raw bytes in, (status, headers, body) out; the connection is closed by us
/// asking for it.
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, head.to_string(), body.to_string())
}

fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    raw(addr, format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n").as_bytes())
}

fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String, String) {
    raw(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    v["error"].as_str().unwrap_or_else(|| panic!("no error in {body}")).to_string()
}

#[test]
fn reads_answer_with_the_right_codes() {
    let f = start("127.0.0.1:0", Some(TOKEN), Limits::default());
    let addr = f.addr();

    let (code, _, body) = get(addr, "/healthz", None);
    assert_eq!((code, body.as_str()), (200, "ok"));

    let (code, status) = f.call("GET", "/status", None);
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_value::<Status>(status).unwrap(), self::status());

    let (code, head, body) = get(addr, "/metrics", Some(&format!("Bearer {TOKEN}")));
    assert_eq!(code, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("claude_failover_account_utilization{account=\"alpha\",window=\"five_hour\"} 42"));

    let (code, events) = f.call("GET", "/events?since=1", None);
    assert_eq!(code, 200);
    let events = events["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["kind"], "task_done");
    assert_eq!(events[0]["seq"], 2);
    assert_eq!(f.call("GET", "/events", None).1["events"].as_array().unwrap().len(), 2);

    let (code, _, body) = get(addr, "/events?since=abc", Some(&format!("Bearer {TOKEN}")));
    assert_eq!(code, 400);
    assert!(error_of(&body).contains("since"));

    let (code, _, body) = get(addr, "/nope", Some(&format!("Bearer {TOKEN}")));
    assert_eq!(code, 404);
    assert!(error_of(&body).contains("/nope"));

    let (code, head, body) = post(addr, "/status", "");
    assert_eq!(code, 405);
    assert!(head.contains("Allow: GET"), "{head}");
    error_of(&body);
    let (code, head, _) = get(addr, "/failover", Some(&format!("Bearer {TOKEN}")));
    assert_eq!(code, 405);
    assert!(head.contains("Allow: POST"), "{head}");
}

#[test]
fn the_token_guards_everything_but_healthz() {
    let f = start("127.0.0.1:0", Some(TOKEN), Limits::default());
    let addr = f.addr();
    for path in ["/status", "/metrics", "/events", "/nope"] {
        let (code, _, body) = get(addr, path, None);
        assert_eq!(code, 401, "{path} without a token");
        error_of(&body);
        let (code, _, _) = get(addr, path, Some("Bearer wrong-token"));
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, _, _) = get(addr, path, Some(&format!("Basic {TOKEN}")));
        assert_eq!(code, 401, "{path} with another scheme");
        let (code, _, _) = get(addr, path, Some(&format!("Bearer {TOKEN}x")));
        assert_eq!(code, 401, "{path} with a longer token");
    }
    let (code, _, _) = raw(addr, b"POST /failover HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    assert_eq!(code, 401);
    assert!(f.asked.lock().is_empty(), "nothing reached the coordinator");
    // POST /healthz is not the open endpoint.
    let (code, _, _) = raw(
        addr,
        b"POST /healthz HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 401);
    let (code, _, _) = get(addr, "/status", Some(&format!("bearer  {TOKEN} ")));
    assert_eq!(code, 200, "scheme is case-insensitive, blanks are trimmed");
}

#[test]
fn writes_go_to_the_coordinator_and_its_refusals_map_to_codes() {
    let f = start("127.0.0.1:0", Some(TOKEN), Limits::default());

    assert_eq!(f.call("POST", "/failover", Some("{}")), (202, json!({"accepted": true})));
    assert_eq!(f.call("POST", "/failover", Some(r#"{"to":"beta"}"#)), (202, json!({"accepted": true})));
    let (code, body) = f.call("POST", "/failover", Some(r#"{"to":"gamma"}"#));
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("gamma"));
    f.swap_running.store(true, Ordering::Relaxed);
    let (code, body) = f.call("POST", "/failover", Some("{}"));
    assert_eq!(code, 409);
    assert!(body["error"].as_str().unwrap().contains("swap"));
    f.swap_running.store(false, Ordering::Relaxed);

    assert_eq!(f.call("POST", "/dispatch/pause", None), (200, json!({"paused": true})));
    assert_eq!(f.call("POST", "/dispatch/resume", None), (200, json!({"paused": false})));
    assert_eq!(f.call("POST", "/sessions/ccl-auto-11/restart", None), (202, json!({"accepted": true})));
    let (code, body) = f.call("POST", "/sessions/ghost/restart", None);
    assert_eq!(code, 404);
    assert!(body["error"].as_str().unwrap().contains("ghost"));

    // Bad JSON and unknown fields never reach the coordinator.
    let before = f.asked.lock().len();
    for bad in ["not json", r#"{"to":"beta","now":true}"#, r#"{"to":5}"#, "[]"] {
        let (code, body) = f.call("POST", "/failover", Some(bad));
        assert_eq!(code, 400, "{bad}");
        assert!(body["error"].is_string());
    }
    assert_eq!(f.asked.lock().len(), before);
    assert_eq!(
        f.asked.lock()[..3],
        [
            Control::Failover { to: None },
            Control::Failover { to: Some("beta".into()) },
            Control::Failover { to: Some("gamma".into()) },
        ]
    );
}

#[test]
fn bodies_over_64_kib_are_refused_and_smaller_ones_are_read() {
    let f = start("127.0.0.1:0", Some(TOKEN), Limits::default());
    let addr = f.addr();

    // Declared too large: refused before reading.
    let big = " ".repeat(http::MAX_BODY + 1);
    let (code, _, body) = post(addr, "/failover", &format!("{{}}{big}"));
    assert_eq!(code, 413);
    assert!(error_of(&body).contains("65536"));

    // Chunked, with no length declared: the read is capped.
    let mut chunked = format!(
        "POST /failover HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..20 {
        chunked.push_str(&format!("1000\r\n{}\r\n", " ".repeat(0x1000)));
    }
    chunked.push_str("0\r\n\r\n");
    let (code, _, _) = raw(addr, chunked.as_bytes());
    assert_eq!(code, 413);

    // A valid body past tiny_http's 1 KiB pre-read is read on a helper thread.
    let padded = format!("{{\"to\": \"beta\"{}}}", " ".repeat(4000));
    let (code, _, body) = post(addr, "/failover", &padded);
    assert_eq!((code, body.as_str()), (202, r#"{"accepted":true}"#));

    // A claimed length so large that tiny_http would allocate it on drop: the
    // connection is left unanswered and the daemon lives on.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        format!(
            "POST /failover HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000000000000\r\n\r\n{{}}"
        )
        .as_bytes(),
    )
    .unwrap();
    let (code, _, _) = get(addr, "/status", Some(&format!("Bearer {TOKEN}")));
    assert_eq!(code, 200);
}

#[test]
fn a_slow_body_does_not_hold_the_role() {
    let f = start("127.0.0.1:0", Some(TOKEN), Limits::default());
    let addr = f.addr();
    // Declares 4000 bytes and sends 10, then stalls.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(
        format!("POST /failover HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\nContent-Length: 4000\r\n\r\n{{\"to\": \"b")
            .as_bytes(),
    )
    .unwrap();
    // A 413 with a body left unread: tiny_http drains the rest when the
    // request is dropped, which must not be on the role thread either.
    let mut slow_too_large = TcpStream::connect(addr).unwrap();
    slow_too_large
        .write_all(
            format!("POST /failover HTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100000\r\n\r\n{{}}")
                .as_bytes(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(f.call("GET", "/status", None).0, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // The role keeps beating.
    assert!(f.heartbeats.stale(Instant::now(), Duration::from_secs(2)).is_empty());
    // The stalled client finishing its body still gets its answer.
    slow.write_all(format!("eta\"{}}}", " ".repeat(4000 - 14)).as_bytes()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer:?}");
}

#[test]
fn healthz_names_stale_roles() {
    let limits = Limits { stale_after: Duration::from_millis(300), ..Limits::default() };
    let f = start("127.0.0.1:0", None, limits);
    let _quota = f.heartbeats.register("quota");
    let _janitor = f.heartbeats.register("janitor");
    let (code, _, body) = get(f.addr(), "/healthz", None);
    assert_eq!((code, body.as_str()), (200, "ok"));
    let body = kit::wait_until(Duration::from_secs(10), "a 503 from /healthz", || {
        let (code, _, body) = get(f.addr(), "/healthz", None);
        (code == 503).then_some(body)
    });
    assert!(body.contains("quota") && body.contains("janitor"), "{body}");
    assert!(!body.contains("http"), "the http role itself keeps beating: {body}");
}

#[test]
fn an_absent_or_silent_coordinator_is_a_503() {
    captured_logs();
    let limits = Limits { reply_timeout: Duration::from_millis(200), ..Limits::default() };
    let heartbeats = Heartbeats::new(None);
    let shared = Shared {
        status: Arc::new(RwLock::new(status())),
        events: Events::new(None),
        metrics: Metrics::new(),
        heartbeats: heartbeats.clone(),
        history: Default::default(),
    };
    // A coordinator that takes requests and never answers.
    let (tx, rx) = crossbeam_channel::unbounded::<ControlRequest>();
    let config = config("127.0.0.1:0", None);
    let private = kit::temp_dir();
    let handle =
        http::spawn_with(&config, private.path(), shared.clone(), tx, heartbeats.register("http"), limits).unwrap();
    let addr = handle.local_addr().unwrap();
    let (code, _, body) = raw(addr, b"POST /dispatch/pause HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(code, 503);
    assert!(error_of(&body).contains("in time"));
    // ... and one that is gone altogether.
    drop(rx);
    let (code, _, body) = raw(addr, b"POST /failover HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    assert_eq!(code, 503);
    error_of(&body);
    handle.shutdown();
}

#[test]
fn listens_on_a_unix_socket_and_removes_it_on_shutdown() {
    let dir = kit::temp_dir();
    let path = dir.path().join("run/claude-failover/control.sock");
    // A stale socket left by a dead daemon is replaced.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let mut f = start(&format!("unix:{}", path.display()), Some(TOKEN), Limits::default());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let (code, status) = f.call("GET", "/status", None);
    assert_eq!(code, 200);
    assert_eq!(status["active_account"], "alpha");
    assert_eq!(f.call("POST", "/dispatch/pause", Some("")), (200, json!({"paused": true})));

    // A second daemon on the same socket is refused, and does not remove it.
    let second = config(&format!("unix:{}", path.display()), None);
    let err = http::spawn(
        &second,
        dir.path(),
        Shared {
            status: Arc::new(RwLock::new(Status::default())),
            events: Events::new(None),
            metrics: Metrics::new(),
            heartbeats: Heartbeats::new(None),
            history: Default::default(),
        },
        crossbeam_channel::unbounded().0,
        Heartbeats::new(None).register("http"),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("control.sock"), "{err}");
    assert_eq!(f.call("GET", "/healthz", None).0, 200);

    f.handle.take().unwrap().shutdown();
    assert!(!path.exists(), "socket removed on shutdown");
    match client::request(&f.config, "GET", "/status", None) {
        Err(client::ClientError::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }

    // A file that is not a socket is never removed.
    std::fs::write(&path, "precious").unwrap();
    let third = config(&format!("unix:{}", path.display()), None);
    let shared = Shared {
        status: Arc::new(RwLock::new(Status::default())),
        events: Events::new(None),
        metrics: Metrics::new(),
        heartbeats: Heartbeats::new(None),
        history: Default::default(),
    };
    let beat = shared.heartbeats.register("http");
    assert!(http::spawn(&third, dir.path(), shared, crossbeam_channel::unbounded().0, beat).is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn no_daemon_is_unavailable() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = config(&format!("127.0.0.1:{port}"), Some(TOKEN));
    let err = client::request(&config, "GET", "/status", None).unwrap_err();
    assert!(matches!(err, client::ClientError::Unavailable { .. }));
    assert!(!err.to_string().contains(TOKEN));
}

#[test]
fn the_token_never_appears_in_answers_or_logs() {
    let f = start("127.0.0.1:0", Some(TOKEN), Limits::default());
    let addr = f.addr();
    let auth = format!("Bearer {TOKEN}");
    let mut bodies = Vec::new();
    for path in ["/status", "/metrics", "/events", "/nope", "/healthz", "/failover"] {
        for auth in [None, Some(auth.as_str()), Some("Bearer nope")] {
            let (_, head, body) = get(addr, path, auth);
            bodies.push(head);
            bodies.push(body);
        }
    }
    for body in ["{}", "garbage", r#"{"to":"gamma"}"#] {
        let (_, head, body) = post(addr, "/failover", body);
        bodies.push(head);
        bodies.push(body);
    }
    for text in &bodies {
        assert!(!text.contains(TOKEN), "token in an answer: {text}");
    }
    let logs = captured_logs().0.lock().clone();
    assert!(logs.contains("GET /status -> 200"), "requests are logged at debug: {logs}");
    assert!(!logs.contains(TOKEN), "token in the logs: {logs}");
}

#[test]
fn a_large_answer_to_a_client_that_does_not_read_holds_nobody() {
    let dir = kit::temp_dir();
    let path = dir.path().join("control.sock");
    let f = start(&format!("unix:{}", path.display()), None, Limits::default());
    let filler = "x".repeat(2000);
    for i in 0..1000 {
        f.events.emit(Kind::TaskDone, "secumon", format!("{i} {filler}"), json!({}));
    }
    // About 2 MB of events, far past a unix socket's buffer; nobody reads.
    let mut lazy = std::os::unix::net::UnixStream::connect(&path).unwrap();
    lazy.write_all(b"GET /events HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(f.call("GET", "/status", None).0, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    // Reading it later gets all of it.
    lazy.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    lazy.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    let events: Value = serde_json::from_str(body).unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 1002, "two from the fixture");
}

/// The TCP front door: tiny_http would read a head of any size and size a
/// body buffer by any Content-Length, so these are refused before it sees
/// them, and the role answers the next request as ever.
#[test]
fn the_front_door_refuses_big_heads_slow_heads_and_huge_bodies() {
    let limits = Limits { head_within: Duration::from_millis(500), ..Limits::default() };
    let f = start("127.0.0.1:0", Some(TOKEN), limits);
    let addr = f.addr();

    let big = format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n", "y".repeat(20 * 1024));
    let (code, _, body) = raw(addr, big.as_bytes());
    assert_eq!(code, 431, "{body}");
    assert!(error_of(&body).contains("head over"), "{body}");

    // An endless header line is not read on and on: writing it fails long
    // before 256 MiB have gone (the door reads 16 KiB, answers, closes).
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nX-Endless: ").unwrap();
    let junk = vec![b'y'; 64 * 1024];
    let mut sent = 0usize;
    while sent < 256 << 20 {
        match s.write(&junk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 256 << 20, "the daemon kept reading an endless head");

    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    slow.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    let mut out = String::new();
    let _ = slow.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");

    let huge = b"POST /failover HTTP/1.1\r\nContent-Type: application/json\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000000\r\n\r\n{}";
    let (code, _, body) = raw(addr, huge);
    assert_eq!(code, 413, "{body}");

    // One request per connection: a second one pipelined behind the first
    // is not answered on it.
    let two = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let (code, head, body) = raw(addr, two);
    assert_eq!((code, body.as_str()), (200, "ok"), "one answer, then the close: {head}");

    let (code, _, body) = get(addr, "/healthz", None);
    assert_eq!((code, body.as_str()), (200, "ok"));
}

/// Connections past `MAX_CONNECTIONS` are turned away (503) while the others
/// are open; once those end (here: closed by their clients), requests are
/// served again.
#[test]
fn the_front_door_turns_away_connections_past_its_cap() {
    let limits = Limits { head_within: Duration::from_secs(3), ..Limits::default() };
    let f = start("127.0.0.1:0", None, limits);
    let addr = f.addr();
    let held: Vec<TcpStream> = (0..claude_failover::http_front::MAX_CONNECTIONS)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /status HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    let (code, head, _) = get(addr, "/healthz", None);
    // 503, or only the close when the client's request arrived first.
    assert!([0, 503].contains(&code), "answered past the cap: {head}");
    drop(held);
    let (code, body) = kit::wait_until(Duration::from_secs(10), "/healthz answered again", || {
        let (code, _, body) = get(addr, "/healthz", None);
        (code == 200).then_some((code, body))
    });
    assert_eq!((code, body.as_str()), (200, "ok"));
}

/// `Expect: 100-continue` makes tiny_http read no body ahead, however small:
/// a client that then sends nothing must not hold the role thread.
#[test]
fn a_body_expected_and_never_sent_holds_nobody_up() {
    let f = start("127.0.0.1:0", Some(TOKEN), Limits::default());
    let addr = f.addr();
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled
        .write_all(
            format!(
                "POST /failover HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Expect: 100-continue\r\nContent-Length: 100\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    // The body is asked for (tiny_http says 100 Continue) once a thread reads it.
    let mut continued = [0u8; 25];
    stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stalled.read_exact(&mut continued).unwrap();
    assert!(continued.starts_with(b"HTTP/1.1 100 Continue"), "{:?}", String::from_utf8_lossy(&continued));
    let started = Instant::now();
    let (code, _, body) = get(addr, "/healthz", None);
    assert_eq!((code, body.as_str()), (200, "ok"));
    assert!(started.elapsed() < Duration::from_secs(5), "held up for {:?}", started.elapsed());
    drop(stalled);
}
