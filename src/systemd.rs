//! systemd's notify protocol (docs/systemd.md), by hand: datagrams to `NOTIFY_SOCKET`
//! (a path, or `@name` in the abstract namespace) saying READY, STATUS,
//! WATCHDOG, RELOADING and STOPPING. It never decides when to send them, and a
//! failure to send is logged once and otherwise ignored: systemd being absent
//! or gone must not stop the daemon.
//!
//! `RELOADING=1` carries `MONOTONIC_USEC`, the CLOCK_MONOTONIC time in µs.
//! Without libc there is no `clock_gettime`; std's `Instant` on Linux *is*
//! `clock_gettime(CLOCK_MONOTONIC)`, and its `Debug` prints the raw
//! `tv_sec`/`tv_nsec`, which [`monotonic_usec`] reads back. That format is not
//! a std guarantee, so when it does not parse the field is left out (systemd
//! accepts RELOADING=1 without it for `Type=notify`). /proc/uptime is not a
//! substitute: it is CLOCK_BOOTTIME, which also counts suspended time.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct SdNotify {
    addr: SocketAddr,
    /// What NOTIFY_SOCKET said, for log lines.
    name: String,
    socket: Option<UnixDatagram>,
    complained: AtomicBool,
}

impl SdNotify {
    /// `None` when the daemon was not started by systemd with `Type=notify`.
    pub fn from_env() -> Option<SdNotify> {
        let value = std::env::var("NOTIFY_SOCKET").ok()?;
        let notify = SdNotify::new(&value);
        if notify.is_none() {
            log::warn!("NOTIFY_SOCKET={value:?} is not a usable socket address; not notifying systemd");
        }
        notify
    }

    /// Notifier for a `NOTIFY_SOCKET` value: an absolute path, or `@name`.
    pub fn new(notify_socket: &str) -> Option<SdNotify> {
        let addr = if let Some(name) = notify_socket.strip_prefix('@') {
            abstract_addr(name.as_bytes())?
        } else if notify_socket.starts_with('/') {
            SocketAddr::from_pathname(notify_socket).ok()?
        } else {
            return None;
        };
        let socket =
            UnixDatagram::unbound().map_err(|e| log::warn!("cannot create a datagram socket for systemd: {e}")).ok();
        Some(SdNotify { addr, name: notify_socket.to_string(), socket, complained: AtomicBool::new(false) })
    }

    /// Sends one notification (newline-separated `KEY=value` lines).
    pub fn send(&self, msg: &str) {
        let result = match &self.socket {
            Some(socket) => socket.send_to_addr(msg.as_bytes(), &self.addr).map(|_| ()),
            None => Err(std::io::Error::other("no socket")),
        };
        if let Err(e) = result {
            if !self.complained.swap(true, Ordering::Relaxed) {
                log::warn!("cannot notify systemd at {}: {e} (further failures are not logged)", self.name);
            }
        }
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// `STATUS=` with the line made single-line.
    pub fn status(&self, line: &str) {
        self.send(&status_message(line));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    pub fn reloading(&self) {
        self.send(&reloading_message(monotonic_usec()));
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> Option<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name).ok()
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> Option<SocketAddr> {
    None
}

fn status_message(line: &str) -> String {
    let one_line: String = line.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
    format!("STATUS={one_line}")
}

fn reloading_message(monotonic: Option<u64>) -> String {
    match monotonic {
        Some(us) => format!("RELOADING=1\nMONOTONIC_USEC={us}"),
        None => "RELOADING=1".to_string(),
    }
}

/// CLOCK_MONOTONIC now, in µs (see the module doc for how and why).
pub fn monotonic_usec() -> Option<u64> {
    parse_instant_debug(&format!("{:?}", Instant::now()))
}

/// Reads `Instant { tv_sec: 123, tv_nsec: 456 }`.
fn parse_instant_debug(text: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let start = text.find(name)? + name.len();
        let digits: String =
            text[start..].trim_start_matches([':', ' ']).chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let secs = field("tv_sec")?;
    let nanos = field("tv_nsec")?;
    (nanos < 1_000_000_000).then(|| secs.checked_mul(1_000_000)?.checked_add(nanos / 1000))?
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when systemd asks
/// this process (`WATCHDOG_PID` unset or ours) for pings.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_interval`] over given environment values.
pub fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != our_pid {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// What `run` reports to: systemd when NOTIFY_SOCKET is set, nobody otherwise.
pub struct Systemd {
    notify: Option<SdNotify>,
    watchdog: Option<Duration>,
}

/// Reads NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID once, at start-up.
pub fn supervisor_from_env() -> Systemd {
    Systemd { notify: SdNotify::from_env(), watchdog: watchdog_interval() }
}

impl crate::coordinator::Supervisor for Systemd {
    fn ready(&self) {
        if let Some(n) = &self.notify {
            n.ready();
        }
    }
    fn status(&self, line: &str) {
        if let Some(n) = &self.notify {
            n.status(line);
        }
    }
    fn watchdog(&self) {
        if let Some(n) = &self.notify {
            n.watchdog();
        }
    }
    fn reloading(&self) {
        if let Some(n) = &self.notify {
            n.reloading();
        }
    }
    fn stopping(&self) {
        if let Some(n) = &self.notify {
            n.stopping();
        }
    }
    fn watchdog_interval(&self) -> Option<Duration> {
        self.notify.as_ref().and(self.watchdog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_each_message_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let notify = SdNotify::new(path.to_str().unwrap()).unwrap();
        notify.ready();
        assert_eq!(receive(&server), "READY=1");
        notify.status("active alpha;\nsessions 2 busy");
        assert_eq!(receive(&server), "STATUS=active alpha; sessions 2 busy");
        notify.watchdog();
        assert_eq!(receive(&server), "WATCHDOG=1");
        notify.stopping();
        assert_eq!(receive(&server), "STOPPING=1");
        notify.reloading();
        let msg = receive(&server);
        let (first, second) = msg.split_once('\n').unwrap();
        assert_eq!(first, "RELOADING=1");
        let us: u64 = second.strip_prefix("MONOTONIC_USEC=").unwrap().parse().unwrap();
        assert!(us > 0);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("cf-test-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let notify = SdNotify::new(&format!("@{name}")).unwrap();
        notify.ready();
        assert_eq!(receive(&server), "READY=1");
    }

    #[test]
    fn a_missing_socket_is_not_fatal() {
        let notify = SdNotify::new("/nonexistent/cf-notify.sock").unwrap();
        notify.ready();
        notify.watchdog();
        assert!(SdNotify::new("relative/path").is_none());
    }

    #[test]
    fn monotonic_time_reads_instant_and_moves_forward() {
        assert_eq!(parse_instant_debug("Instant { tv_sec: 12, tv_nsec: 345678 }"), Some(12_000_345));
        assert_eq!(parse_instant_debug("Instant(5)"), None);
        let a = monotonic_usec().expect("Instant's Debug carries tv_sec/tv_nsec");
        let b = monotonic_usec().unwrap();
        assert!(b >= a);
        // CLOCK_MONOTONIC never runs ahead of CLOCK_BOOTTIME (/proc/uptime).
        let uptime: f64 =
            std::fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
        assert!((a as f64) / 1e6 <= uptime + 0.02, "{a} µs vs uptime {uptime} s");
    }

    #[test]
    fn watchdog_interval_is_half_and_honours_the_pid() {
        let half = Some(Duration::from_secs(10));
        assert_eq!(watchdog_interval_from(Some("20000000"), None, 42), half);
        assert_eq!(watchdog_interval_from(Some("20000000"), Some("42"), 42), half);
        assert_eq!(watchdog_interval_from(Some("20000000"), Some("43"), 42), None);
        assert_eq!(watchdog_interval_from(Some("20000000"), Some("x"), 42), None);
        assert_eq!(watchdog_interval_from(None, Some("42"), 42), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 42), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 42), None);
    }
}
