//! The failover benchmark (`make bench`): N real Claude Code sessions on an
//! account that hits its hard limit, timed from the limit's record landing in
//! the transcript to every session idle at its prompt on the next account,
//! beside the cold start of the same N sessions (daemon start to all idle)
//! in the same run.
//!
//! A swap's steps: notice the limit, stop every session, relaunch
//! each on the next account with `--resume`, wait for each to be idle, then
//! send the session that held a task a continuation prompt. The failover
//! time ends when the last session is idle on the new account (each one's
//! `ready_ms` in `failover_finished`), the figure the target compares with a
//! cold start; "resumed" adds the continuation prompt being taken.
//!
//! `bench_failover [--daemon PATH] [--claude PATH] [--sizes 1,5,10]`
//! The daemon defaults to the `claude-failover` built next to this program,
//! Claude Code to `build/claude-code` (`make claude-code`). Target: failover
//! ≤ 1.3 × cold start.

use kit::accounts::token;
use kit::rig::{Failover as Rig, Options};
use kit::wait_until;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TARGET: f64 = 1.3;
const LONG: Duration = Duration::from_secs(300);

struct Row {
    sessions: usize,
    cold: Duration,
    /// The limit's record → the last session idle at its prompt on the new account.
    failover: Duration,
    /// The record → failover_started (noticing and confirming the limit).
    detect: Duration,
    /// The record → the continuation prompt taken (the swap's end).
    resumed: Duration,
    /// The fake API's 429 → Claude Code's record of it landing in the transcript.
    record: Duration,
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
    // The kit's rig runs the daemon and Claude Code these name.
    std::env::set_var("CF_BIN", &daemon);
    std::env::set_var("CLAUDE_BIN", &claude);
    // Nothing else starts Claude Code beside the figures.
    let _turns = kit::throttle::claude_all();
    let mut rows = Vec::new();
    for n in sizes {
        eprintln!("bench: {n} session(s) ...");
        rows.push(run(n));
    }
    println!("failover benchmark: real Claude Code sessions, hard limit on alpha, swap to beta");
    println!(
        "{:>8}  {:>10}  {:>10}  {:>6}  {:>8}  {:>9}  {:>8}  {:>6}",
        "sessions", "cold start", "failover", "ratio", "detect", "resumed", "429→rec", "target"
    );
    let mut missed = false;
    for r in &rows {
        let ratio = r.failover.as_secs_f64() / r.cold.as_secs_f64();
        missed |= ratio > TARGET;
        println!(
            "{:>8}  {:>9.2}s  {:>9.2}s  {:>6.2}  {:>7.2}s  {:>8.2}s  {:>7.2}s  {:>6}",
            r.sessions,
            r.cold.as_secs_f64(),
            r.failover.as_secs_f64(),
            ratio,
            r.detect.as_secs_f64(),
            r.resumed.as_secs_f64(),
            r.record.as_secs_f64(),
            if ratio <= TARGET { "ok" } else { "MISSED" }
        );
    }
    println!("cold start = daemon start → every session idle");
    println!("failover = the limit's record landing in the transcript → every session idle on beta");
    println!("detect = the record → failover_started; resumed = the record → the task's continuation prompt taken");
    println!("429→rec = the fake API's 429 → Claude Code's record of it (Claude Code's own time, not counted)");
    println!("target: failover ≤ {TARGET} × cold start");
    if missed {
        println!("(a size missed the target; benchmarks report, they do not fail the build)");
    }
}

fn run(n: usize) -> Row {
    let mut rig = Rig::new(Options { sessions: n, ..Options::default() });
    let started = Instant::now();
    rig.start_daemon();
    let cold = poll(LONG, "every session idle on alpha", || rig.all_idle_on("alpha").map(|_| Instant::now())) - started;
    wait_until(LONG, "both accounts polled", || {
        ["alpha", "beta"]
            .iter()
            .all(|a| rig.account_status(a).is_some_and(|s| !s["last_poll_at"].is_null()))
            .then_some(())
    });

    // alpha's next user turn is refused; the task pinned to s1 makes it.
    let reset = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3 * 3600;
    let record = watch_for_limit_record(transcript_of_s1(&rig));
    rig.api.set_quota(&token("alpha"), 0, "five_hour", reset);
    rig.drop_task("bench.md", "+++\nsession = \"s1\"\n+++\nWork until the limit\n");
    let mut started_at = None;
    let finished = poll(LONG, "failover_finished", || {
        let events = rig.events();
        if started_at.is_none() && events.iter().any(|e| e["kind"] == "failover_started") {
            started_at = Some(Instant::now());
        }
        events.into_iter().find(|e| e["kind"] == "failover_finished")
    });
    let answered = rig.api.first_limit_at(&token("alpha")).expect("the fake API answered the 429");
    let limited = record.join().expect("the record watcher");
    // Seen by polling, so a few ms late: the figures err on the slow side.
    let started_at = started_at.expect("failover_started before failover_finished");
    let results = finished["results"].as_array().cloned().unwrap_or_default();
    let longest = |key: &str| {
        let ms = results.iter().filter_map(|r| r[key].as_u64().or(r["ready_ms"].as_u64())).max().unwrap_or(0);
        started_at + Duration::from_millis(ms) - limited
    };
    wait_until(LONG, "bench.md in done/ on beta", || rig.result("bench.md").filter(|r| r["account"] == "beta"));
    if std::env::var_os("BENCH_LOG").is_some() {
        print_swap_log(&rig);
    }
    Row {
        sessions: n,
        cold,
        failover: longest("ready_ms"),
        detect: started_at - limited,
        resumed: longest("resumed_ms"),
        record: limited.saturating_duration_since(answered),
    }
}

/// s1's transcript (under alpha, where it runs now).
fn transcript_of_s1(rig: &Rig) -> PathBuf {
    let sessions = rig.sessions().unwrap_or_default();
    let id = sessions.iter().find(|s| s.0 == "s1").map(|s| s.3.clone()).expect("s1 has a conversation id");
    let key = claude_failover::claude::project_key(rig.project());
    rig.account_dir("alpha").join("projects").join(key).join(format!("{id}.jsonl"))
}

/// Watches `path` (a read every millisecond) for the moment a quota-limit
/// record lands in it: Claude Code writes its records a little after their
/// own `timestamp`, and the daemon can only see what is in the file.
fn watch_for_limit_record(path: PathBuf) -> std::thread::JoinHandle<Instant> {
    use claude_failover::claude::transcript::{RecordKind, TranscriptReader};
    std::thread::spawn(move || {
        let start = std::fs::metadata(&path).map_or(0, |m| m.len());
        let mut reader = TranscriptReader::at(&path, start);
        let deadline = Instant::now() + LONG;
        while Instant::now() < deadline {
            let records = reader.read_new().unwrap_or_default();
            if records.iter().any(|r| matches!(r.kind, RecordKind::QuotaLimit { .. })) {
                return Instant::now();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        fail(&format!("no limit record in {} within {LONG:?}", path.display()))
    })
}

/// `wait_until` at a finer grain, for the figures themselves.
fn poll<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    kit::poll_until(timeout, kit::Every::Fixed(Duration::from_millis(5)), f)
        .unwrap_or_else(|| fail(&format!("timed out after {timeout:?} waiting for {what}")))
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

fn fail(message: &str) -> ! {
    eprintln!("bench_failover: {message}");
    std::process::exit(2);
}
