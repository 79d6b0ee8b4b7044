//! The daemon as systemd and an operator meet it: the real binary under a
//! NOTIFY_SOCKET the test binds, signals, the HTTP control plane, and what
//! it writes to its log.

use kit::daemon::{config_text, Daemon};
use kit::free_port;
use kit::{temp_dir, wait_until};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// Collects sd_notify datagrams.
struct NotifySocket {
    sock: UnixDatagram,
    /// Everything received so far.
    seen: Vec<String>,
    /// Received and not yet looked at by `wait`.
    pending: std::collections::VecDeque<String>,
}

impl NotifySocket {
    fn bind_path(path: &std::path::Path) -> NotifySocket {
        NotifySocket::from(UnixDatagram::bind(path).unwrap())
    }

    fn bind_abstract(name: &str) -> NotifySocket {
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        NotifySocket::from(UnixDatagram::bind_addr(&addr).unwrap())
    }

    fn from(sock: UnixDatagram) -> NotifySocket {
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        NotifySocket { sock, seen: Vec::new(), pending: Default::default() }
    }

    /// Reads what has arrived (waiting up to 100 ms for the first).
    fn drain(&mut self) -> Vec<String> {
        let mut new = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock.recv(&mut buf) {
            new.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.seen.extend(new.iter().cloned());
        self.pending.extend(new.iter().cloned());
        new
    }

    /// Waits until a message satisfying `pred` arrives (in order; earlier
    /// ones are passed over); returns it.
    fn wait(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        wait_until(timeout, what, || {
            self.drain();
            while let Some(m) = self.pending.pop_front() {
                if pred(&m) {
                    return Some(m);
                }
            }
            None
        })
    }
}

fn notify_lifecycle(mut sock: NotifySocket, notify_socket: &str) {
    let dir = temp_dir();
    let port = free_port();
    let mut d = Daemon::spawn(
        dir.path(),
        &config_text(dir.path(), port, ""),
        port,
        &[("NOTIFY_SOCKET", notify_socket), ("WATCHDOG_USEC", "1000000")],
    );
    sock.wait("READY=1", Duration::from_secs(20), |m| m.lines().any(|l| l == "READY=1"));
    assert!(sock.seen.iter().any(|m| m.starts_with("STATUS=") && m.contains("active alpha")), "{:?}", sock.seen);
    // Pings at half of WATCHDOG_USEC: count three, and check they are spaced.
    let mut pings = Vec::new();
    while pings.len() < 3 {
        sock.wait("WATCHDOG=1", Duration::from_secs(10), |m| m == "WATCHDOG=1");
        pings.push(Instant::now());
    }
    assert!(pings[2] - pings[0] >= Duration::from_millis(700), "pings too close: {pings:?}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0), "{}", d.log_text());
    sock.drain();
    assert!(sock.seen.iter().any(|m| m == "STOPPING=1"), "{:?}", sock.seen);
}

#[test]
fn notify_over_a_path_socket() {
    let dir = temp_dir();
    let path = dir.path().join("notify.sock");
    notify_lifecycle(NotifySocket::bind_path(&path), path.to_str().unwrap());
}

#[test]
fn notify_over_an_abstract_socket() {
    let name = kit::unique_name("cf-notify");
    notify_lifecycle(NotifySocket::bind_abstract(&name), &format!("@{name}"));
}

/// A role made to hang (the documented test fault switch) stops the pings
/// and turns /healthz into 503 naming it; released, both come back.
#[test]
fn a_hung_role_stops_the_watchdog_and_fails_healthz() {
    let dir = temp_dir();
    let sock_path = dir.path().join("notify.sock");
    let mut sock = NotifySocket::bind_path(&sock_path);
    let port = free_port();
    let d = Daemon::start(
        dir.path(),
        &config_text(dir.path(), port, ""),
        port,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
            ("CLAUDE_FAILOVER_TEST_FAULTS", "1"),
            ("CLAUDE_FAILOVER_TEST_STALE_SECS", "2"),
        ],
    );
    sock.wait("a first WATCHDOG=1", Duration::from_secs(10), |m| m == "WATCHDOG=1");
    let faults = dir.path().join("state/faults");
    std::fs::create_dir_all(&faults).unwrap();
    std::fs::write(faults.join("hang-janitor"), "").unwrap();
    let body = wait_until(Duration::from_secs(20), "/healthz to turn 503", || {
        d.get("/healthz").ok().filter(|(code, _)| *code == 503).map(|(_, b)| b)
    });
    assert!(body.contains("janitor"), "{body}");
    // From here on no ping may come: watch for three ping intervals.
    sock.drain();
    sock.pending.clear();
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet_until {
        let new = sock.drain();
        assert!(!new.iter().any(|m| m == "WATCHDOG=1"), "a ping came while janitor hung");
    }
    std::fs::remove_file(faults.join("hang-janitor")).unwrap();
    sock.wait("pings to resume", Duration::from_secs(10), |m| m == "WATCHDOG=1");
    wait_until(Duration::from_secs(10), "/healthz back to 200", || {
        d.get("/healthz").ok().filter(|(code, _)| *code == 200)
    });
}

#[test]
fn sighup_applies_a_valid_config_and_keeps_the_old_one_when_broken() {
    let dir = temp_dir();
    let sock_path = dir.path().join("notify.sock");
    let mut sock = NotifySocket::bind_path(&sock_path);
    let port = free_port();
    let text = config_text(dir.path(), port, "");
    let d = Daemon::start(dir.path(), &text, port, &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
    sock.wait("READY=1", Duration::from_secs(10), |m| m == "READY=1");

    // Valid: a third account appears in /status.
    let grown =
        format!("{text}[[accounts]]\nname = \"gamma\"\nconfig_dir = \"{}/accounts/gamma\"\n", dir.path().display());
    std::fs::write(&d.config, &grown).unwrap();
    d.signal("HUP");
    let reloading = sock.wait("RELOADING=1", Duration::from_secs(10), |m| m.contains("RELOADING=1"));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    sock.wait("READY=1 after the reload", Duration::from_secs(10), |m| m == "READY=1");
    let status = wait_until(Duration::from_secs(10), "gamma in /status", || {
        d.get("/status").ok().filter(|(_, b)| b.contains("\"gamma\"")).map(|(_, b)| b)
    });
    assert!(status.contains("\"alpha\""));
    let (_, events) = d.get("/events?since=0").unwrap();
    assert!(events.contains("config_reloaded"), "{events}");

    // Broken: an unknown key. Logged, STATUS says so, old config stays.
    std::fs::write(&d.config, format!("{grown}\nbogus_key = 1\n")).unwrap();
    d.signal("HUP");
    sock.wait("STATUS= naming the rejected config", Duration::from_secs(10), |m| {
        m.starts_with("STATUS=") && m.contains("old config kept")
    });
    let (_, events) = d.get("/events?since=0").unwrap();
    assert!(events.contains("config_rejected") && events.contains("bogus_key"), "{events}");
    let (code, status) = d.get("/status").unwrap();
    assert_eq!(code, 200);
    assert!(status.contains("\"gamma\""), "the old (valid) config must stay: {status}");
    assert!(d.log_text().contains("bogus_key"));
}

#[test]
fn control_plane_answers_every_documented_code_and_never_shows_the_token() {
    let dir = temp_dir();
    let token = "tok-SECRET-4d3c2b1a";
    std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
    let port = free_port();
    let extra = format!("token_file = \"{}/token\"", dir.path().display());
    let mut d = Daemon::start(dir.path(), &config_text(dir.path(), port, &extra), port, &[]);
    let auth = format!("Bearer {token}");
    let with = [("Authorization", auth.as_str()), kit::http::JSON];
    let wrong = [("Authorization", "Bearer tok-WRONG")];
    let mut seen = Vec::new();
    let mut check = |method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)], want: u16| {
        let (code, text) = d.request(method, path, body, headers).unwrap();
        assert_eq!(code, want, "{method} {path}: {text}");
        seen.push(text);
    };
    check("GET", "/healthz", None, &[], 200);
    check("GET", "/status", None, &[], 401);
    check("GET", "/status", None, &wrong, 401);
    check("GET", "/status", None, &with, 200);
    check("GET", "/metrics", None, &with, 200);
    check("GET", "/events?since=0", None, &with, 200);
    check("GET", "/events?since=x", None, &with, 400);
    check("POST", "/failover", Some("{not json"), &with, 400);
    check("POST", "/failover", Some(r#"{"to":"nobody"}"#), &with, 400);
    check("GET", "/nowhere", None, &with, 404);
    check("POST", "/sessions/nobody/restart", Some("{}"), &with, 404);
    check("DELETE", "/status", None, &with, 405);
    check("POST", "/dispatch/pause", Some("{}"), &with, 200);
    check("POST", "/dispatch/resume", Some("{}"), &with, 200);
    let big = "x".repeat(64 * 1024 + 1);
    check("POST", "/failover", Some(&big), &with, 413);
    for text in &seen {
        assert!(!text.contains(token), "the token leaked into a response: {text}");
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!d.log_text().contains(token), "the token leaked into the log");
}

#[test]
fn check_config_passes_the_example_and_run_refuses_a_bad_file() {
    let example = kit::repo_root().join("etc/config.example.toml");
    let out = std::process::Command::new(kit::daemon_binary())
        .args(["check-config", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let dir = temp_dir();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[quota]\nfive_hour_threshold = 150.0\n").unwrap();
    for cmd in ["check-config", "run"] {
        let out = std::process::Command::new(kit::daemon_binary()).args([cmd, "--config"]).arg(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(78), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("quota.five_hour_threshold") && err.contains("accounts"), "{cmd}: {err}");
    }
}

#[test]
fn cli_commands_talk_to_the_daemon_and_say_when_none_answers() {
    let dir = temp_dir();
    let port = free_port();
    let text = config_text(dir.path(), port, "");
    let cli = |args: &[&str], config: &std::path::Path| {
        std::process::Command::new(kit::daemon_binary()).args(args).arg("--config").arg(config).output().unwrap()
    };
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &text).unwrap();
    assert_eq!(cli(&["status"], &path).status.code(), Some(69));
    let d = Daemon::start(dir.path(), &text, port, &[]);
    let out = cli(&["status"], &d.config);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("alpha"));
    let out = cli(&["status", "--json"], &d.config);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["active_account"], "alpha");
    assert_eq!(cli(&["pause"], &d.config).status.code(), Some(0));
    assert!(d.get("/status").unwrap().1.contains("\"dispatch_paused\":true"));
    assert_eq!(cli(&["resume"], &d.config).status.code(), Some(0));
    let out = cli(&["failover", "--to", "nobody"], &d.config);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
}

/// A port held a moment longer (a killed predecessor's connections closing)
/// is waited for, not a reason to exit.
#[test]
fn a_port_still_in_use_at_start_is_waited_for() {
    let dir = temp_dir();
    let port = free_port();
    let holder = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut d = Daemon::spawn(dir.path(), &config_text(dir.path(), port, ""), port, &[]);
    wait_until(Duration::from_secs(20), "the in-use warning", || d.log_text().contains("is in use").then_some(()));
    assert!(d.child.try_wait().unwrap().is_none(), "exited while the port was taken:\n{}", d.log_text());
    drop(holder);
    wait_until(Duration::from_secs(20), "/healthz", || d.get("/healthz").ok().filter(|(code, _)| *code == 200));
    assert!(d.log_text().contains("free after"), "{}", d.log_text());
}
