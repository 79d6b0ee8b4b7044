//! Footprint and scale benchmark (`make bench`): prints one table.
//!
//! - idle footprint of the daemon with 10 sessions and 3 accounts over a
//!   window (60 s by default): RSS, CPU as a share of one core (the daemon's
//!   own threads, and with the tmux processes it ran), wakeups per second
//!   (context switches of all its threads);
//! - 10 000 tasks across 20 projects: start-up scan time (daemon start to
//!   every task counted in /status), RSS after it, and dispatch throughput
//!   with stand-in sessions;
//! - usage-API calls per account per hour, measured against the configured
//!   interval;
//! - the static binary's size.
//!
//! Sessions run `dispatch_bench --stand-in` (a small program that draws an
//! idle Claude Code screen and writes the transcript turn on Enter) instead of
//! Claude Code: this measures the daemon's own cost. The daemon binary is
//! looked up beside the examples folder or in `CLAUDE_FAILOVER_BIN`.
//! Usage: `footprint_bench [WINDOW_SECS]`. Prints figures; asserts nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ACCOUNTS: [&str; 3] = ["alpha", "beta", "gamma"];
const POLL_SECS: u64 = 20;

fn main() {
    let window =
        std::env::args().nth(1).and_then(|s| s.parse().ok()).map_or(Duration::from_secs(60), Duration::from_secs);
    if let Err(e) = run(window) {
        eprintln!("footprint_bench: {e}");
        std::process::exit(1);
    }
}

struct Row(String, String, String);

fn run(window: Duration) -> Result<(), String> {
    let daemon = daemon_binary()?;
    let stand_in = daemon
        .parent()
        .map(|d| d.join("examples/dispatch_bench"))
        .filter(|p| p.exists())
        .ok_or("dispatch_bench is not built beside the daemon (cargo build --release --example dispatch_bench)")?;
    let mut rows = Vec::new();
    idle(&daemon, &stand_in, window, &mut rows)?;
    scale(&daemon, &stand_in, &mut rows)?;
    let musl = PathBuf::from("target/x86_64-unknown-linux-musl/release/claude-failover");
    let size = std::fs::metadata(&musl)
        .map(|m| format!("{:.2} MB", m.len() as f64 / 1e6))
        .unwrap_or_else(|_| "not built (make musl)".into());
    rows.push(Row("static binary size".into(), size, "≤ 6 MB".into()));
    println!("\nclaude-failover footprint ({})", daemon.display());
    println!("{:<58} {:>22}  target", "measure", "value");
    for Row(what, value, target) in rows {
        println!("{what:<58} {value:>22}  {target}");
    }
    Ok(())
}

/// 10 stand-in sessions, 3 accounts, nothing to do: what the daemon costs.
fn idle(daemon: &Path, stand_in: &Path, window: Duration, rows: &mut Vec<Row>) -> Result<(), String> {
    let rig = Rig::new("idle", 2, 10, stand_in)?;
    let mut child = rig.start(daemon)?;
    let pid = child.id();
    let ready = rig.wait_sessions_idle(10, Duration::from_secs(60));
    if let Err(e) = ready {
        let _ = child.kill();
        return Err(e);
    }
    let calls_before: u64 = ACCOUNTS.iter().map(|a| rig.api.usage_calls(&token(a))).sum();
    let before = Sample::take(pid)?;
    let started = Instant::now();
    std::thread::sleep(window);
    let after = Sample::take(pid)?;
    let elapsed = started.elapsed().as_secs_f64();
    let calls: u64 = ACCOUNTS.iter().map(|a| rig.api.usage_calls(&token(a))).sum::<u64>() - calls_before;
    let _ = child.kill();
    let _ = child.wait();
    let tick = clock_ticks();
    let own = (after.cpu - before.cpu) as f64 / tick / elapsed * 100.0;
    let with_children = ((after.cpu + after.children) - (before.cpu + before.children)) as f64 / tick / elapsed * 100.0;
    let wakeups = (after.switches - before.switches) as f64 / elapsed;
    let per_hour = calls as f64 / ACCOUNTS.len() as f64 / elapsed * 3600.0;
    let w = window.as_secs();
    rows.push(Row(
        format!("idle RSS, 10 sessions, 3 accounts ({w} s)"),
        format!("{:.1} MB", after.rss_kb as f64 / 1024.0),
        "≤ 8 MB".into(),
    ));
    rows.push(Row("idle peak RSS (VmHWM)".into(), format!("{:.1} MB", after.hwm_kb as f64 / 1024.0), String::new()));
    rows.push(Row("idle CPU, daemon threads (% of one core)".into(), format!("{own:.2} %"), "≤ 1 %".into()));
    rows.push(Row("idle CPU, with the tmux processes it ran".into(), format!("{with_children:.2} %"), String::new()));
    rows.push(Row("idle wakeups per second (all threads)".into(), format!("{wakeups:.1}"), String::new()));
    rows.push(Row(
        format!("usage calls per account per hour (interval {POLL_SECS} s)"),
        format!("{per_hour:.0}"),
        format!("≈ {} (3600 / interval, jittered)", 3600 / POLL_SECS),
    ));
    Ok(())
}

/// 10 000 tasks over 20 projects: scan time, RSS, dispatch throughput.
fn scale(daemon: &Path, stand_in: &Path, rows: &mut Vec<Row>) -> Result<(), String> {
    const PROJECTS: usize = 20;
    const PER_PROJECT: usize = 500;
    let rig = Rig::new("scale", PROJECTS, PROJECTS, stand_in)?;
    for p in 0..PROJECTS {
        let inbox = rig.project(p).join(".agent-queue/inbox");
        std::fs::create_dir_all(&inbox).map_err(|e| e.to_string())?;
        for t in 0..PER_PROJECT {
            let text = format!("+++\npriority = {}\n+++\nBench task {t} of project {p}.\n", t % 3);
            std::fs::write(inbox.join(format!("{t:05}-task.md")), text).map_err(|e| e.to_string())?;
        }
    }
    let total = PROJECTS * PER_PROJECT;
    let started = Instant::now();
    let mut child = rig.start(daemon)?;
    let pid = child.id();
    let counted = wait(Duration::from_secs(120), || {
        let st = rig.status()?;
        let queued: u64 = st["queues"]
            .as_array()?
            .iter()
            .map(|q| {
                q["inbox"].as_u64().unwrap_or(0) + q["active"].as_u64().unwrap_or(0) + q["done"].as_u64().unwrap_or(0)
            })
            .sum();
        (queued as usize >= total).then_some(())
    });
    let scan = started.elapsed();
    if counted.is_none() {
        let _ = child.kill();
        return Err("the 10 000 tasks were not all counted within 120 s".into());
    }
    let rss = Sample::take(pid)?.rss_kb;
    rig.wait_sessions_idle(PROJECTS, Duration::from_secs(120)).ok();
    let done = |rig: &Rig| -> u64 {
        rig.status()
            .and_then(|st| Some(st["queues"].as_array()?.iter().map(|q| q["done"].as_u64().unwrap_or(0)).sum()))
            .unwrap_or(0)
    };
    let d0 = done(&rig);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(30));
    let throughput = (done(&rig) - d0) as f64 / t0.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    rows.push(Row(
        "start-up scan of 10 000 tasks in 20 projects".into(),
        format!("{} ms", scan.as_millis()),
        "≤ 1 s".into(),
    ));
    rows.push(Row("RSS after the scan".into(), format!("{:.1} MB", rss as f64 / 1024.0), String::new()));
    rows.push(Row(
        format!("dispatch throughput, {PROJECTS} stand-in sessions"),
        format!("{throughput:.1} tasks/s"),
        "(per task: paste, Enter once it shows, confirm, settle_secs 1)".into(),
    ));
    Ok(())
}

struct Rig {
    dir: PathBuf,
    api: kit::fake_api::FakeApi,
    socket: String,
    port: u16,
    projects: usize,
}

use kit::accounts::token;

impl Rig {
    fn new(name: &str, projects: usize, sessions: usize, stand_in: &Path) -> Result<Rig, String> {
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("cf-bench-{name}-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let api = kit::fake_api::FakeApi::start();
        let port = kit::free_port();
        let socket = format!("cf-bench-{name}-{}", std::process::id());
        let mut config = kit::ConfigBuilder::base(&dir, &socket, port)
            .set("claude", "binary", stand_in.display().to_string())
            .set("claude", "args", vec!["--stand-in"])
            .set("quota", "usage_url", format!("{}/api/oauth/usage", api.url()))
            .set("quota", "poll_interval_secs", POLL_SECS as i64)
            .set("dispatch", "settle_secs", 1);
        for a in ACCOUNTS {
            let acct = dir.join("accounts").join(a);
            kit::accounts::write(&acct, &token(a), &[]);
            config = config.account(a, &acct);
        }
        for p in 0..projects {
            let path = dir.join("projects").join(format!("p{p:02}"));
            std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
            config = config.project(&format!("p{p:02}"), &path);
        }
        for s in 0..sessions {
            config = config.session(&format!("s{s:02}"), &format!("p{:02}", s % projects));
        }
        let config = config.render();
        std::fs::write(dir.join("config.toml"), config).map_err(|e| e.to_string())?;
        Ok(Rig { dir, api, socket, port, projects })
    }

    fn project(&self, p: usize) -> PathBuf {
        debug_assert!(p < self.projects);
        self.dir.join("projects").join(format!("p{p:02}"))
    }

    fn start(&self, daemon: &Path) -> Result<Child, String> {
        Command::new(daemon)
            .args(["run", "--config"])
            .arg(self.dir.join("config.toml"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("daemon.log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", daemon.display()))
    }

    fn status(&self) -> Option<serde_json::Value> {
        kit::http::get_json(self.port, "/status")
    }

    fn wait_sessions_idle(&self, n: usize, timeout: Duration) -> Result<(), String> {
        wait(timeout, || {
            let st = self.status()?;
            let idle = st["sessions"].as_array()?.iter().filter(|s| s["state"] == "idle").count();
            (idle >= n).then_some(())
        })
        .ok_or_else(|| format!("{n} sessions were not idle within {timeout:?}"))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    kit::poll_until(timeout, kit::Every::Fixed(Duration::from_millis(10)), f)
}

/// CPU (own and reaped children's, in clock ticks), RSS and context switches
/// of a process, from /proc.
struct Sample {
    cpu: u64,
    children: u64,
    rss_kb: u64,
    hwm_kb: u64,
    switches: u64,
}

impl Sample {
    fn take(pid: u32) -> Result<Sample, String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("daemon gone? {e}"))?;
        // Fields after the command name (which may hold spaces) start at state.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
        let (utime, stime, cutime, cstime) = (f[11], f[12], f[13], f[14]);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        let mut switches = 0;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                for key in ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"] {
                    switches += s
                        .lines()
                        .find_map(|l| l.strip_prefix(key))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        Ok(Sample {
            cpu: utime + stime,
            children: cutime + cstime,
            rss_kb: kb("VmRSS:"),
            hwm_kb: kb("VmHWM:"),
            switches,
        })
    }
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

fn daemon_binary() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("CLAUDE_FAILOVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    exe.parent().and_then(Path::parent).map(|d| d.join("claude-failover")).filter(|b| b.exists()).ok_or_else(|| {
        "claude-failover is not built beside the examples folder; build it or set CLAUDE_FAILOVER_BIN".into()
    })
}
