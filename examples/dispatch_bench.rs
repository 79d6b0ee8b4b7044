//! Dispatch latency benchmark (`make bench`): how long a task file takes from
//! its close in an inbox to its paste into an idle session, next to a simple
//! loop that scans an inbox every 5 s, measured in the same run.
//!
//! The real `claude-failover run` drives a private tmux server whose panes run
//! this same program as a stand-in for Claude Code (`--stand-in`): it draws an
//! idle screen the pane classifier accepts, turns bracketed paste on, stamps
//! the arrival of each paste in a log, and on the Enter after a paste appends
//! the user turn (and an answer) to `<config_dir>/projects/<key>/<id>.jsonl`,
//! which is what the dispatcher's delivery confirmation reads. With
//! `STAND_IN_API=1` in its environment it asks the Messages API at
//! `ANTHROPIC_BASE_URL` instead, with its account's token, and writes what
//! Claude Code would of the answer: the text and a normal end, a quota
//! limit's record (`quotaLimits` rejected), or an API error's (the recovery
//! tests run twenty of these against the test suite's fake API). The latency is
//! timed from outside the daemon: the file's close (wall clock, taken before
//! `close(2)`) to the paste's first bytes reaching the pane program, so it
//! leaves out the deliberate pause between paste and Enter.
//!
//! Usage: `dispatch_bench [TASKS]` (default 50). The daemon binary is looked
//! up beside the examples folder (`target/<profile>/claude-failover`) or in
//! `CLAUDE_FAILOVER_BIN`. Prints figures; asserts nothing.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROJECTS: [&str; 2] = ["bench-a", "bench-b"];
const SESSIONS_PER_PROJECT: usize = 2;
const POLL_EVERY: Duration = Duration::from_secs(5);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--stand-in") {
        stand_in(&args[2..]);
        return;
    }
    let tasks = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(50usize);
    if let Err(e) = bench(tasks) {
        eprintln!("dispatch_bench: {e}");
        std::process::exit(1);
    }
}

fn unix_ns(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

// ---------------------------------------------------------------- stand-in

/// The screen it draws: an input box holding `input`, as Claude Code draws
/// it; the daemon sends Enter once a paste shows there.
fn screen(input: &str) -> String {
    let rule = "─".repeat(60);
    format!("\x1b[2J\x1b[H stand-in for Claude Code (dispatch bench)\r\n\r\n{rule}\r\n❯ {input}\r\n{rule}\r\n  ? for shortcuts\r\n")
}

/// The pane program: see the module doc.
fn stand_in(args: &[String]) {
    let id = args
        .windows(2)
        .find(|w| w[0] == "--session-id" || w[0] == "--resume")
        .map(|w| w[1].clone())
        .unwrap_or_else(|| "no-session-id".into());
    let config_dir = PathBuf::from(std::env::var("CLAUDE_CONFIG_DIR").unwrap_or_default());
    let cwd = std::env::current_dir().unwrap_or_default();
    let transcript =
        config_dir.join("projects").join(claude_failover::claude::project_key(&cwd)).join(format!("{id}.jsonl"));
    let paste_log = std::env::var("BENCH_PASTE_LOG").ok().map(PathBuf::from);
    let _ = std::fs::create_dir_all(transcript.parent().unwrap_or(Path::new("/")));
    // Claude Code's own statement of idle/busy (sessions/<pid>.json), which
    // spares the daemon reading this pane's screen every second.
    let sessions = config_dir.join("sessions");
    let _ = std::fs::create_dir_all(&sessions);
    let status = |status: &str| {
        let file = serde_json::json!({"pid": std::process::id(), "sessionId": id, "cwd": cwd, "status": status});
        let _ = std::fs::write(sessions.join(format!("{}.json", std::process::id())), file.to_string());
    };
    status("idle");
    let api = std::env::var_os("STAND_IN_API").is_some().then(|| Api::new(&config_dir, &id));
    // Raw input: bytes as they come, no echo, Enter as a lone CR.
    let _ = Command::new("stty").args(["raw", "-echo"]).stdin(Stdio::inherit()).status();
    let mut out = std::io::stdout();
    let _ = write!(out, "\x1b[?2004h{}", screen(""));
    let _ = out.flush();

    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 65536];
    let mut pending: Vec<u8> = Vec::new();
    let mut in_paste = false;
    let mut paste: Vec<u8> = Vec::new();
    let mut paste_at: Option<SystemTime> = None;
    let mut pasted: Option<(String, SystemTime)> = None;
    const START: &[u8] = b"\x1b[200~";
    const END: &[u8] = b"\x1b[201~";
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = SystemTime::now();
        pending.extend_from_slice(&buf[..n]);
        loop {
            if in_paste {
                match find(&pending, END) {
                    Some(i) => {
                        paste.extend_from_slice(&pending[..i]);
                        pending.drain(..i + END.len());
                        in_paste = false;
                        let text = String::from_utf8_lossy(&paste).replace('\r', "\n");
                        pasted = Some((text, paste_at.take().unwrap_or(now)));
                        paste.clear();
                        let _ = write!(out, "{}", screen("[Pasted text #1]"));
                        let _ = out.flush();
                    }
                    None => {
                        // Keep a possible partial end marker for the next read.
                        let keep = pending.len().saturating_sub(END.len() - 1);
                        paste.extend(pending.drain(..keep));
                        break;
                    }
                }
            } else if let Some(i) = find(&pending, START) {
                if pending[..i].contains(&b'\r') {
                    turn(&mut pasted, &transcript, paste_log.as_deref(), &id, api.as_ref(), &status, &mut out);
                }
                pending.drain(..i + START.len());
                in_paste = true;
                paste_at = Some(now);
            } else {
                if pending.contains(&b'\r') {
                    turn(&mut pasted, &transcript, paste_log.as_deref(), &id, api.as_ref(), &status, &mut out);
                }
                let keep = pending.len().saturating_sub(START.len() - 1);
                pending.drain(..keep);
                break;
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Enter after a paste: the turn (with the API when there is one), then the
/// idle screen again.
fn turn(
    pasted: &mut Option<(String, SystemTime)>,
    transcript: &Path,
    log: Option<&Path>,
    id: &str,
    api: Option<&Api>,
    status: &dyn Fn(&str),
    out: &mut std::io::Stdout,
) {
    let shown = match (api, pasted.take()) {
        (Some(api), Some((text, _))) => {
            status("busy");
            let _ = write!(out, "{}", screen("").replace("? for shortcuts", "esc to interrupt"));
            let _ = out.flush();
            let stamp = claude_failover::time::rfc3339(SystemTime::now());
            let user = serde_json::json!({"type": "user", "sessionId": id, "timestamp": stamp,
                "message": {"role": "user", "content": text}});
            append(transcript, &format!("{user}\n"));
            append(transcript, &format!("{}\n", api.ask(&text)));
            status("idle");
            "\u{25cf} answered"
        }
        (None, taken) => {
            *pasted = taken;
            submit(pasted, transcript, log, id);
            ""
        }
        (Some(_), None) => "",
    };
    let _ = write!(out, "{}", screen("").replacen("\r\n\r\n", &format!("\r\n{shown}\r\n"), 1));
    let _ = out.flush();
}

/// The Messages API a stand-in asks (`STAND_IN_API`): the fake API's URL,
/// this account's token, this conversation's id.
struct Api {
    agent: ureq::Agent,
    url: String,
    token: String,
    id: String,
}

impl Api {
    fn new(config_dir: &Path, id: &str) -> Api {
        let creds = std::fs::read_to_string(config_dir.join(".credentials.json")).unwrap_or_default();
        let creds: serde_json::Value = serde_json::from_str(&creds).unwrap_or_default();
        let base = std::env::var("ANTHROPIC_BASE_URL").unwrap_or_default();
        Api {
            agent: ureq::Agent::config_builder().http_status_as_error(false).build().into(),
            url: format!("{}/v1/messages", base.trim_end_matches('/')),
            token: creds["claudeAiOauth"]["accessToken"].as_str().unwrap_or_default().to_string(),
            id: id.to_string(),
        }
    }

    /// One turn's answer: the transcript record Claude Code would write of it.
    fn ask(&self, text: &str) -> serde_json::Value {
        let body = serde_json::json!({"model": "claude-stand-in", "max_tokens": 64, "stream": false,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
            "tools": [{"name": "Bash", "description": "run a command", "input_schema": {"type": "object"}}]});
        let answer = self
            .agent
            .post(&self.url)
            .header("Authorization", format!("Bearer {}", self.token))
            .header("x-claude-code-session-id", &self.id)
            .send_json(&body);
        let stamp = claude_failover::time::rfc3339(SystemTime::now());
        let assistant = |extra: serde_json::Value, text: &str| {
            let mut v = serde_json::json!({"type": "assistant", "sessionId": self.id, "timestamp": stamp,
                "message": {"role": "assistant", "model": "<synthetic>", "content": [{"type": "text", "text": text}]}});
            if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                v.extend(extra.clone());
            }
            v
        };
        match answer {
            Err(e) => assistant(
                serde_json::json!({"error": "unknown", "isApiErrorMessage": true}),
                &format!("API Error: {e}"),
            ),
            Ok(mut r) => {
                let status = r.status().as_u16();
                let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
                let rejected = header("anthropic-ratelimit-unified-status").as_deref() == Some("rejected");
                let reset = header("anthropic-ratelimit-unified-reset").and_then(|v| v.parse::<u64>().ok());
                let claim = header("anthropic-ratelimit-unified-representative-claim");
                let body: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
                match status {
                    200 => serde_json::json!({"type": "assistant", "sessionId": self.id, "timestamp": stamp,
                        "message": {"role": "assistant", "model": body["model"], "content": body["content"],
                                    "stop_reason": body["stop_reason"]}}),
                    429 if rejected => assistant(
                        serde_json::json!({"error": "rate_limit", "isApiErrorMessage": true, "apiErrorStatus": 429,
                            "quotaLimits": {"status": "rejected", "resetsAt": reset, "rateLimitType": claim}}),
                        "You've hit your limit",
                    ),
                    _ => assistant(
                        serde_json::json!({"error": if status == 429 { "rate_limit" } else { "server_error" },
                            "isApiErrorMessage": true, "apiErrorStatus": status}),
                        &format!("API Error: {status}"),
                    ),
                }
            }
        }
    }
}

/// Enter after a paste: the user turn and an answer into the transcript, the
/// paste's arrival into the bench's log.
fn submit(pasted: &mut Option<(String, SystemTime)>, transcript: &Path, log: Option<&Path>, id: &str) {
    let Some((text, at)) = pasted.take() else { return };
    let stamp = claude_failover::time::rfc3339(SystemTime::now());
    let user = serde_json::json!({"type": "user", "sessionId": id, "timestamp": stamp,
        "message": {"role": "user", "content": text}});
    let answer = serde_json::json!({"type": "assistant", "sessionId": id, "timestamp": stamp,
        "message": {"role": "assistant", "content": [{"type": "text", "text": "Done (stand-in)"}]}});
    append(transcript, &format!("{user}\n{answer}\n"));
    if let Some(log) = log {
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
        append(log, &format!("{}\t{}\n", unix_ns(at), first.trim()));
    }
}

fn append(path: &Path, text: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(text.as_bytes());
    }
}

// ---------------------------------------------------------------- the bench

struct Stopper {
    daemon: Child,
    socket: String,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.daemon.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.daemon.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).stderr(Stdio::null()).status();
    }
}

fn daemon_binary() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("CLAUDE_FAILOVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("claude-failover"));
    match bin {
        Some(b) if b.exists() => Ok(b),
        _ => Err("claude-failover is not built beside the examples folder; build it or set CLAUDE_FAILOVER_BIN".into()),
    }
}

/// The body of a 200 answer.
fn get(port: u16, path: &str) -> Option<String> {
    kit::http::request(port, "GET", path, None, &[]).ok().filter(|(code, _)| *code == 200).map(|(_, body)| body)
}

fn wait_until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> Result<T, String> {
    kit::poll_until(timeout, kit::Every::Fixed(Duration::from_millis(5)), f)
        .ok_or_else(|| format!("timed out after {timeout:?} waiting for {what}"))
}

/// Writes `text` to `path` in place; the wall-clock time just before close.
fn write_closed(path: &Path, text: &str) -> Result<SystemTime, String> {
    let mut f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    let at = SystemTime::now();
    drop(f);
    Ok(at)
}

fn bench(tasks: usize) -> Result<(), String> {
    let daemon_bin = daemon_binary()?;
    let tmp = tempfile::Builder::new().prefix("cf-bench-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let root = tmp.path().canonicalize().map_err(|e| e.to_string())?;
    let port = kit::free_port();
    let socket = format!("cf-bench-{}", std::process::id());
    let paste_log = root.join("pastes.log");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut config = kit::ConfigBuilder::base(&root, &socket, port)
        .set("claude", "binary", exe.display().to_string())
        .set("claude", "args", vec!["--stand-in"])
        .set("claude.env", "BENCH_PASTE_LOG", paste_log.display().to_string())
        .set("quota", "usage_url", "http://127.0.0.1:9/api/oauth/usage")
        .set("dispatch", "settle_secs", 1)
        .account("alpha", &root.join("accounts/alpha"));
    std::fs::create_dir_all(root.join("accounts/alpha")).map_err(|e| e.to_string())?;
    let mut sessions: HashMap<String, &str> = HashMap::new();
    for project in PROJECTS {
        std::fs::create_dir_all(root.join("projects").join(project)).map_err(|e| e.to_string())?;
        config = config.project(project, &root.join("projects").join(project));
        for i in 1..=SESSIONS_PER_PROJECT {
            let name = format!("{project}-s{i}");
            config = config.session(&name, project);
            sessions.insert(name, project);
        }
    }
    let config = config.render();
    let config_path = root.join("config.toml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(root.join("daemon.log")).map_err(|e| e.to_string())?;
    let daemon = Command::new(&daemon_bin)
        .args(["run", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", daemon_bin.display()))?;
    let _stopper = Stopper { daemon, socket };
    let started = Instant::now();
    wait_until(Duration::from_secs(20), "the daemon's /healthz", || get(port, "/healthz"))?;
    let idle_sessions = || -> Option<Vec<(String, String)>> {
        let status: serde_json::Value = serde_json::from_str(&get(port, "/status")?).ok()?;
        Some(
            status["sessions"]
                .as_array()?
                .iter()
                .filter(|s| s["state"] == "idle" && s["task"].is_null())
                .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["project"].as_str()?.to_string())))
                .collect(),
        )
    };
    wait_until(Duration::from_secs(60), "every session idle", || {
        idle_sessions().filter(|idle| idle.len() == sessions.len())
    })?;
    eprintln!("{} stand-in sessions idle after {:?}", sessions.len(), started.elapsed());

    // The 5-second polling loop, watching a folder of its own.
    let poll_dir = root.join("polled-inbox");
    std::fs::create_dir_all(&poll_dir).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (dir, stop) = (poll_dir.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut seen: HashMap<String, SystemTime> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                let now = SystemTime::now();
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    seen.entry(name).or_insert(now);
                    let _ = std::fs::remove_file(entry.path());
                }
                let next = Instant::now() + POLL_EVERY;
                while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            seen
        })
    };

    let mut closed: Vec<(String, SystemTime, SystemTime)> = Vec::new();
    for i in 0..tasks {
        // An idle session with no task, and the dispatcher done with the last
        // delivery (its Enter arrived, and the confirmation has had time).
        let (_, project) = wait_until(Duration::from_secs(30), "an idle session", || {
            let idle = idle_sessions()?;
            let want = PROJECTS[i % PROJECTS.len()];
            idle.iter().find(|(_, p)| p == want).or(idle.first()).cloned()
        })?;
        let marker = format!("bench-task-{i:04}");
        let name = format!("{marker}.md");
        let text = format!("{marker}: a task for the dispatch benchmark.\nSecond line.\n");
        let inbox = root.join("projects").join(&project).join(".agent-queue/inbox");
        let at = write_closed(&inbox.join(&name), &text)?;
        let polled_at = write_closed(&poll_dir.join(&name), &text)?;
        closed.push((marker.clone(), at, polled_at));
        wait_until(Duration::from_secs(15), &format!("{marker} to be pasted and submitted"), || {
            let text = std::fs::read_to_string(&paste_log).ok()?;
            (text.lines().count() > i && text.contains(&marker)).then_some(())
        })?;
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_until(POLL_EVERY * 2, "the polling loop's last scan", || {
        poll_dir.read_dir().ok()?.next().is_none().then_some(())
    })?;
    stop.store(true, Ordering::Relaxed);
    let polled = poller.join().map_err(|_| "the polling thread panicked".to_string())?;

    let pastes: HashMap<String, u128> = std::fs::read_to_string(&paste_log)
        .map_err(|e| e.to_string())?
        .lines()
        .filter_map(|l| {
            let (ns, first) = l.split_once('\t')?;
            Some((first.split(':').next()?.to_string(), ns.parse().ok()?))
        })
        .collect();
    let mut inotify_ms = Vec::new();
    let mut polling_ms = Vec::new();
    for (marker, at, polled_at) in &closed {
        if let Some(ns) = pastes.get(marker) {
            inotify_ms.push((*ns as f64 - unix_ns(*at) as f64) / 1e6);
        }
        if let Some(t) = polled.get(&format!("{marker}.md")) {
            polling_ms.push((unix_ns(*t) as f64 - unix_ns(*polled_at) as f64) / 1e6);
        }
    }
    println!("dispatch latency, task file closed in an inbox -> paste reaches an idle session");
    println!(
        "({} tasks, {} projects, {} stand-in sessions, real tmux and inotify)",
        tasks,
        PROJECTS.len(),
        sessions.len()
    );
    report("daemon (inotify)", &mut inotify_ms);
    report("5 s polling loop", &mut polling_ms);
    if let Some(metrics) = get(port, "/metrics") {
        let pick = |suffix: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(&format!("claude_failover_dispatch_latency_seconds_{suffix}")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        if let (Some(sum), Some(count)) = (pick("sum"), pick("count")) {
            if count > 0.0 {
                println!(
                    "daemon's own histogram (inotify event -> paste returned): mean {:.1} ms over {count} tasks",
                    sum / count * 1e3
                );
            }
        }
    }
    println!("target: p50 <= 20 ms, p99 <= 100 ms");
    Ok(())
}

fn report(label: &str, ms: &mut [f64]) {
    if ms.is_empty() {
        println!("{label:>18}: no samples");
        return;
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "{label:>18}: p50 {:8.1} ms  p90 {:8.1} ms  p99 {:8.1} ms  max {:8.1} ms  min {:6.1} ms  mean {:8.1} ms  (n={})",
        q(0.5),
        q(0.9),
        q(0.99),
        ms[ms.len() - 1],
        ms[0],
        mean,
        ms.len()
    );
}
