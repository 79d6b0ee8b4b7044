//! The failover benchmark (`make bench`): N real Claude Code sessions on an
//! account that hits its hard limit, timed from the fake API's 429 to every
//! session idle on the next account (GET /status), beside the cold start of
//! the same N sessions (daemon start to all idle) in the same run.
//!
//! `bench_failover [--daemon PATH] [--claude PATH] [--sizes 1,5,10]`
//! The daemon defaults to the `claude-failover` built next to this program,
//! Claude Code to `build/claude-code` (`make claude-code`). Target: failover
//! ≤ 1.3 × cold start; the exit status is 1 when a size misses it.

#[path = "../tests/support/failover_rig.rs"]
mod failover_rig;
#[path = "../tests/support/fake_api.rs"]
mod fake_api;

use failover_rig::{token, wait_until, Options, Rig};
use fake_api::Mode;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TARGET: f64 = 1.3;
const LONG: Duration = Duration::from_secs(300);

struct Row {
    sessions: usize,
    cold: Duration,
    failover: Duration,
    /// 429 → failover_started (noticing and confirming the limit).
    detect: Duration,
    /// failover_started → swap.last set (the switcher's work).
    swap: Duration,
}

fn main() {
    let mut daemon = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("claude-failover")))
        .unwrap_or_else(|| PathBuf::from("target/release/claude-failover"));
    let mut claude = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("build/claude-code/node_modules/.bin/claude");
    let mut sizes = vec![1, 5, 10];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| fail(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--daemon" => daemon = PathBuf::from(value()),
            "--claude" => claude = PathBuf::from(value()),
            "--sizes" => {
                sizes = value()
                    .split(',')
                    .map(|s| s.trim().parse().unwrap_or_else(|_| fail(&format!("--sizes: {s:?} is not a number"))))
                    .collect()
            }
            "-h" | "--help" => {
                println!("usage: bench_failover [--daemon PATH] [--claude PATH] [--sizes 1,5,10]");
                return;
            }
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    for (what, path) in [("the daemon", &daemon), ("Claude Code", &claude)] {
        if !path.exists() {
            fail(&format!("{what} is not at {} (make build / make claude-code)", path.display()));
        }
    }
    let _lock = claude_lock();
    let mut rows = Vec::new();
    for n in sizes {
        eprintln!("bench: {n} session(s) ...");
        rows.push(run(&daemon, &claude, n));
    }
    println!("failover benchmark: real Claude Code sessions, hard limit on alpha, swap to beta");
    println!(
        "{:>8}  {:>12}  {:>12}  {:>7}  {:>10}  {:>10}  {:>6}",
        "sessions", "cold start", "failover", "ratio", "detect", "swap", "target"
    );
    let mut missed = false;
    for r in &rows {
        let ratio = r.failover.as_secs_f64() / r.cold.as_secs_f64();
        missed |= ratio > TARGET;
        println!(
            "{:>8}  {:>11.2}s  {:>11.2}s  {:>7.2}  {:>9.2}s  {:>9.2}s  {:>6}",
            r.sessions,
            r.cold.as_secs_f64(),
            r.failover.as_secs_f64(),
            ratio,
            r.detect.as_secs_f64(),
            r.swap.as_secs_f64(),
            if ratio <= TARGET { "ok" } else { "MISSED" }
        );
    }
    println!("failover = fake API's 429 → every session idle on beta; cold start = daemon start → every session idle");
    println!("detect = 429 → failover_started; swap = failover_started → swap finished; target: failover ≤ {TARGET} × cold start");
    if missed {
        println!("(a size missed the target; benchmarks report, they do not fail the build)");
    }
}

fn run(daemon: &std::path::Path, claude: &std::path::Path, n: usize) -> Row {
    let mut rig = Rig::new(daemon, claude, Options { sessions: n, ..Options::default() });
    let started = Instant::now();
    rig.start_daemon();
    rig.wait_all_idle_on("alpha", LONG);
    let cold = started.elapsed();
    wait_until(LONG, "both accounts polled", || {
        ["alpha", "beta"]
            .iter()
            .all(|a| rig.account_status(a).is_some_and(|s| !s["last_poll_at"].is_null()))
            .then_some(())
    });

    // alpha's next user turn is refused; the task pinned to s1 makes it.
    let reset = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3 * 3600;
    rig.api.set_quota(&token("alpha"), 0, "five_hour", reset);
    rig.drop_task("bench.md", "+++\nsession = \"s1\"\n+++\nWork until the limit\n");
    // The fake API flips the token's mode as it answers the 429.
    let limited = wait_until(LONG, "the 429", || {
        matches!(rig.api.mode(&token("alpha")), Mode::HardLimit { .. }).then(Instant::now)
    });
    let mut started_at = None;
    let mut finished_at = None;
    let done = wait_until(LONG, "every session idle on beta", || {
        if started_at.is_none() && rig.events().iter().any(|e| e["kind"] == "failover_started") {
            started_at = Some(Instant::now());
        }
        let status = rig.status()?;
        if finished_at.is_none() && status["swap"]["last"]["to"] == "beta" {
            finished_at = Some(Instant::now());
        }
        rig.all_idle_on("beta").map(|_| Instant::now())
    });
    let started_at = started_at.unwrap_or(done);
    let finished_at = finished_at.unwrap_or(done);
    wait_until(LONG, "bench.md in done/ on beta", || rig.result("bench.md").filter(|r| r["account"] == "beta"));
    if std::env::var_os("BENCH_LOG").is_some() {
        print_swap_log(&rig);
    }
    Row {
        sessions: n,
        cold,
        failover: done - limited,
        detect: started_at.saturating_duration_since(limited),
        swap: finished_at.saturating_duration_since(started_at),
    }
}

/// The switcher's and sessions' lines of the daemon log (BENCH_LOG=1), to
/// see where a swap spends its time.
fn print_swap_log(rig: &Rig) {
    for line in rig.log_text().lines() {
        if line.contains("switcher") || line.contains("failover") || line.contains("launch") {
            eprintln!("{line}");
        }
    }
}

/// The lock the Claude Code tests take: the benchmark does not run beside them.
fn claude_lock() -> std::fs::File {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&dir);
    let f = std::fs::File::create(dir.join("claude-tests.lock")).unwrap_or_else(|e| fail(&format!("lock file: {e}")));
    if let Err(e) = f.lock() {
        fail(&format!("cannot take the Claude Code lock: {e}"));
    }
    f
}

fn fail(message: &str) -> ! {
    eprintln!("bench_failover: {message}");
    std::process::exit(2);
}
