//! The idle benchmark (`make bench`): what the daemon costs while ten real
//! Claude Code sessions sit idle at their prompts, for this build and a
//! baseline build (by default the commit before the quieter idle, built by
//! `scripts/baseline-daemon.sh`) measured one after the other in the same
//! run, and how fast each notices a dialog and a dead session.
//!
//! Each daemon runs as the shipped unit runs it (`WatchdogSec=30`: a notify
//! socket and `WATCHDOG_USEC`), over the failover rig (the fake API, two
//! accounts, `claude-failover setup`'s hooks). Once every session is idle and
//! a settle time (75 s: past Claude Code's one-off notice after 60 s idle)
//! has passed, a window (60 s by default) is measured:
//!
//! - wakeups per second: voluntary and involuntary context switches of all
//!   the daemon's live threads (a thread started and ended within the
//!   window is not seen: the baseline's per-call tmux pipe threads are
//!   undercounted, so its figure errs low);
//! - CPU as a share of one core: the daemon's threads; the tmux clients it
//!   started (reaped ones through the daemon's children times, live ones —
//!   control-mode clients — from their own /proc entries); the tmux server
//!   (all of it, Claude Code's drawing included, for comparison only).
//!
//! `IDLE_BENCH_THREADS=1` also prints the wakeups of each thread (by name).
//!
//! Then a dialog (`/model` typed into an idle session) and a dead session
//! (its claude killed) are timed from the act to the daemon's `/status`
//! saying so. Prints figures; asserts nothing.
//!
//! `idle_bench [--daemon PATH] [--baseline PATH] [--claude PATH] [--window SECS] [--sessions N]`

use kit::rig::{Failover as Rig, Options};
use kit::wait_until;
use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(300);
/// After every session is idle, before the window: Claude Code's start-up
/// writes die down, and its one-off idle notice (the `Notification` hook's
/// `idle_prompt`, drawn and spooled once a session has sat 60 s) is past,
/// so the window sees a session that stays idle, not one just gone idle.
const SETTLE: Duration = Duration::from_secs(75);

fn main() {
    let mut daemon = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("claude-failover")))
        .unwrap_or_else(|| PathBuf::from("target/release/claude-failover"));
    let mut baseline = None;
    let mut claude = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("build/claude-code/node_modules/.bin/claude");
    let mut window = Duration::from_secs(60);
    let mut sessions = 10;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| fail(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--daemon" => daemon = PathBuf::from(value()),
            "--baseline" => baseline = Some(PathBuf::from(value())),
            "--claude" => claude = PathBuf::from(value()),
            "--window" => window = Duration::from_secs(number(&value())),
            "--sessions" => sessions = number(&value()) as usize,
            "-h" | "--help" => {
                println!("usage: idle_bench [--daemon PATH] [--baseline PATH] [--claude PATH] [--window SECS] [--sessions N]");
                return;
            }
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    for path in [Some(&daemon), baseline.as_ref(), Some(&claude)].into_iter().flatten() {
        if !path.exists() {
            fail(&format!("{} does not exist (make build / make claude-code)", path.display()));
        }
    }
    let _turns = kit::throttle::claude_all();
    let mut columns = Vec::new();
    if let Some(b) = &baseline {
        eprintln!("idle_bench: baseline {} ...", b.display());
        columns.push(measure(b, &claude, sessions, window));
    }
    eprintln!("idle_bench: now {} ...", daemon.display());
    columns.push(measure(&daemon, &claude, sessions, window));
    print_table(&columns, baseline.is_some(), sessions, window);
}

fn number(text: &str) -> u64 {
    text.trim().parse().unwrap_or_else(|_| fail(&format!("{text:?} is not a number")))
}

/// One daemon's figures.
struct Figures {
    wakeups: f64,
    daemon_cpu: f64,
    clients_cpu: f64,
    server_cpu: f64,
    rss_mb: f64,
    dialog: Option<Duration>,
    dead: Option<Duration>,
}

fn print_table(columns: &[Figures], with_baseline: bool, sessions: usize, window: Duration) {
    let now = columns.last().expect("a column");
    let base = with_baseline.then(|| &columns[0]);
    println!(
        "\nidle footprint: {sessions} real Claude Code sessions idle, 2 accounts, {} s window, WatchdogSec=30",
        window.as_secs()
    );
    println!("{:<52} {:>12} {:>12}  target", "figure", "baseline", "now");
    let row = |what: &str, f: &dyn Fn(&Figures) -> String, target: &str| {
        let b = base.map_or_else(|| "-".into(), f);
        println!("{what:<52} {b:>12} {:>12}  {target}", f(now));
    };
    let ms = |d: Option<Duration>| d.map_or_else(|| "not seen".into(), |d| format!("{} ms", d.as_millis()));
    row("wakeups per second (daemon threads)", &|f| format!("{:.1}", f.wakeups), "≤ 5");
    row("CPU, daemon threads (% of one core)", &|f| format!("{:.3} %", f.daemon_cpu), "");
    row("CPU, tmux clients the daemon started", &|f| format!("{:.3} %", f.clients_cpu), "");
    row("CPU, daemon + its tmux clients", &|f| format!("{:.3} %", f.daemon_cpu + f.clients_cpu), "≤ 0.2 %");
    row("CPU, tmux server (Claude Code's drawing too)", &|f| format!("{:.3} %", f.server_cpu), "");
    row("daemon RSS", &|f| format!("{:.1} MB", f.rss_mb), "");
    row("a dialog (/model) noticed after", &|f| ms(f.dialog), "≤ 1000 ms");
    row("a dead session (claude killed) noticed after", &|f| ms(f.dead), "≤ 1000 ms");
    println!("(one run each; CPU from clock ticks over the window, so ±0.02 % at 60 s)");
}

fn measure(daemon_bin: &Path, claude: &Path, sessions: usize, window: Duration) -> Figures {
    let options = Options { sessions, poll_interval_secs: 180, request_timeout_secs: 10, ..Options::default() };
    std::env::set_var("CLAUDE_BIN", claude);
    let rig = Rig::new(options);
    let notify = rig.dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap_or_else(|e| fail(&format!("notify socket: {e}")));
    let _drain = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while listener.recv(&mut buf).is_ok() {}
    });
    let mut daemon = Daemon::start(&rig, daemon_bin, &notify);
    wait_until(LONG, "every session idle on alpha", || rig.all_idle_on("alpha"));
    std::thread::sleep(SETTLE);
    let pid = daemon.child.id();
    let server = tmux_server_pid(&rig);
    let before = Sample::take(pid, server);
    let started = Instant::now();
    std::thread::sleep(window);
    let after = Sample::take(pid, server);
    let elapsed = started.elapsed().as_secs_f64();
    let tick = clock_ticks();
    let share = |ticks: u64| ticks as f64 / tick / elapsed * 100.0;
    let clients = after.children_ticks.saturating_sub(before.children_ticks)
        + after
            .live_children
            .iter()
            .map(|(pid, t)| t.saturating_sub(before.live_children.get(pid).copied().unwrap_or(0)))
            .sum::<u64>();
    if std::env::var_os("IDLE_BENCH_THREADS").is_some() {
        let mut rows: Vec<(String, f64)> = after
            .by_thread
            .iter()
            .map(|(name, n)| {
                (name.clone(), n.saturating_sub(*before.by_thread.get(name).unwrap_or(&0)) as f64 / elapsed)
            })
            .filter(|(_, rate)| *rate > 0.0)
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        eprintln!("wakeups per second by thread ({}):", daemon_bin.display());
        for (name, rate) in rows {
            eprintln!("  {name:<16} {rate:.2}");
        }
    }
    let figures = Figures {
        wakeups: after.switches.saturating_sub(before.switches) as f64 / elapsed,
        daemon_cpu: share(after.own_ticks.saturating_sub(before.own_ticks)),
        clients_cpu: share(clients),
        server_cpu: share(after.server_ticks.saturating_sub(before.server_ticks)),
        rss_mb: after.rss_kb as f64 / 1024.0,
        dialog: time_dialog(&rig, "s2"),
        dead: time_death(&rig, "s3"),
    };
    daemon.stop();
    figures
}

/// `/model` typed into an idle session opens a picker; timed until `/status`
/// says the session is waiting. Escape closes it again.
fn time_dialog(rig: &Rig, session: &str) -> Option<Duration> {
    rig.tmux(&["send-keys", "-t", &format!("={session}:"), "-l", "/model"]);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    rig.tmux(&["send-keys", "-t", &format!("={session}:"), "Enter"]);
    let seen = poll(Duration::from_secs(20), || (state(rig, session)? == "waiting").then(Instant::now));
    rig.tmux(&["send-keys", "-t", &format!("={session}:"), "Escape"]);
    let _ = poll(Duration::from_secs(20), || (state(rig, session)? == "idle").then_some(()));
    seen.map(|t| t - started)
}

/// The session's claude killed; timed until `/status` no longer says idle.
fn time_death(rig: &Rig, session: &str) -> Option<Duration> {
    let (_, pid) = rig.panes().into_iter().find(|(s, _)| s == session)?;
    let started = Instant::now();
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    let seen = poll(Duration::from_secs(20), || (state(rig, session)? != "idle").then(Instant::now));
    seen.map(|t| t - started)
}

fn state(rig: &Rig, session: &str) -> Option<String> {
    let status = rig.status()?;
    let s = status["sessions"].as_array()?.iter().find(|s| s["name"] == session)?;
    Some(s["state"].as_str()?.to_string())
}

fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// The daemon as the shipped unit runs it: a notify socket and a watchdog.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(rig: &Rig, daemon_bin: &Path, notify: &Path) -> Daemon {
        std::fs::write(rig.config_path(), &rig.config).expect("config file");
        let log = std::fs::File::create(rig.dir.path().join("daemon.log")).expect("daemon log");
        let child = Command::new(daemon_bin)
            .args(["run", "--config"])
            .arg(rig.config_path())
            .env("RUST_LOG", std::env::var("IDLE_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .env("NOTIFY_SOCKET", notify)
            .env("WATCHDOG_USEC", "30000000")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| fail(&format!("cannot start {}: {e}", daemon_bin.display())));
        Daemon { child }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        if poll(Duration::from_secs(15), || self.child.try_wait().ok().flatten()).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tmux_server_pid(rig: &Rig) -> Option<u32> {
    rig.tmux(&["display-message", "-p", "#{pid}"]).trim().parse().ok()
}

/// CPU in clock ticks (the daemon's own, its reaped children's, each live
/// child's, the tmux server's), RSS and context switches of every thread.
struct Sample {
    own_ticks: u64,
    children_ticks: u64,
    live_children: HashMap<u32, u64>,
    server_ticks: u64,
    rss_kb: u64,
    switches: u64,
    /// Context switches by thread name (threads of one name summed).
    by_thread: HashMap<String, u64>,
}

impl Sample {
    fn take(pid: u32, server: Option<u32>) -> Sample {
        let f = stat_fields(pid).unwrap_or_else(|| fail("the daemon is gone"));
        let mut live_children = HashMap::new();
        let mut switches = 0;
        let mut by_thread = HashMap::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let name = status.lines().find_map(|l| l.strip_prefix("Name:")).unwrap_or_default().trim().to_string();
            for key in ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"] {
                switches += field(&status, key);
                *by_thread.entry(name.clone()).or_insert(0) += field(&status, key);
            }
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                if let Some(c) = stat_fields(child) {
                    live_children.insert(child, c[11] + c[12]);
                }
            }
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        Sample {
            own_ticks: f[11] + f[12],
            children_ticks: f[13] + f[14],
            live_children,
            server_ticks: server.and_then(stat_fields).map_or(0, |s| s[11] + s[12]),
            rss_kb: field(&status, "VmRSS:"),
            switches,
            by_thread,
        }
    }
}

/// /proc/PID/stat's fields after the command name, from the state on
/// (utime is [11], stime [12], cutime [13], cstime [14]).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect())
}

fn field(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The lock the Claude Code tests take: the benchmark does not run beside them.
fn fail(message: &str) -> ! {
    eprintln!("idle_bench: {message}");
    std::process::exit(2);
}
