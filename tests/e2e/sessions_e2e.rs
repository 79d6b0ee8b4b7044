//! The sessions role end to end: the real `claude-failover run`, the real
//! Claude Code 2.1.332 in a private tmux server, the fake API on loopback.
//! Launch to idle, trust answered (or not), a killed claude relaunched on its
//! conversation, a daemon restart adopting what runs, a restart by HTTP.
//! One daemon is shared by the checks that can share it: a claude start costs
//! real CPU and seconds.

use kit::accounts::{self, Account};
use kit::daemon::Daemon;
use kit::wait_until;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Claude Code reaches its prompt in ~8 s on an idle machine; the test
/// machine is shared, so deadlines are generous (they cost nothing when met).
const START: Duration = Duration::from_secs(90);
const TASK: Duration = Duration::from_secs(90);

struct Project {
    path: PathBuf,
}

/// What a test run needs around the daemon (the kit's rig, and alpha's
/// account); everything dies with it.
struct Rig {
    kit: kit::Rig,
    alpha: Account,
}

impl std::ops::Deref for Rig {
    type Target = kit::Rig;
    fn deref(&self) -> &kit::Rig {
        &self.kit
    }
}

impl Rig {
    /// Accounts alpha and beta trusting `trusted` projects; `sessions` are
    /// (session, project) pairs.
    fn new(projects: &[&str], trusted: &[&str], sessions: &[(&str, &str)], auto_trust: bool) -> (Rig, Vec<Project>) {
        let kit = kit::Rig::builder(projects, sessions)
            .trust(trusted)
            .set("claude", "auto_trust", auto_trust)
            .set("claude", "startup_timeout_secs", 60)
            .set("claude", "stop_timeout_secs", 10)
            .set("dispatch", "settle_secs", 1)
            .build();
        let projects = kit.projects.iter().map(|(_, path)| Project { path: path.clone() }).collect();
        let alpha = kit.accounts.iter().find(|a| a.name == "alpha").expect("account alpha").clone();
        (Rig { kit, alpha }, projects)
    }

    /// Starts the daemon in its own run folder (config and log there).
    fn start(&self, run: &str) -> Run {
        let dir = self.root.join(run);
        std::fs::create_dir_all(&dir).unwrap();
        Run(Daemon::start(&dir, &self.config, self.port, &[]))
    }

    /// The pid of the session's pane process (claude itself: tmux runs `env`, which execs it).
    fn pane_pid(&self, session: &str) -> Option<u32> {
        let out = Command::new("tmux")
            .args(["-L", self.tmux.socket_name(), "list-panes", "-t", &format!("={session}"), "-F", "#{pane_pid}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    fn screen(&self, session: &str) -> String {
        let out = Command::new("tmux")
            .args(["-L", self.tmux.socket_name(), "capture-pane", "-p", "-t", &format!("={session}:")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A running daemon whose log is printed when the test fails with it alive.
struct Run(Daemon);

impl Drop for Run {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- daemon log ({}) ----\n{}", self.0.log.display(), self.0.log_text());
        }
    }
}

impl Run {
    fn json(&self, path: &str) -> Value {
        let (code, body) = self.0.get(path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    fn session(&self, name: &str) -> Value {
        let status = self.json("/status");
        let found = status["sessions"].as_array().and_then(|s| s.iter().find(|s| s["name"] == name)).cloned();
        found.unwrap_or_else(|| panic!("{name} is not in /status: {status}"))
    }

    /// Waits until /status shows `name` in `state`; returns its entry.
    fn wait_state(&self, name: &str, state: &str, timeout: Duration) -> Value {
        let mut last = Value::Null;
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(timeout, &format!("{name} to be {state}"), || {
                last = self.session(name);
                (last["state"] == state).then(|| last.clone())
            })
        }));
        found.unwrap_or_else(|_| panic!("{name} never became {state}; last seen {last}"))
    }

    fn events(&self) -> Vec<Value> {
        self.json("/events?since=0")["events"].as_array().cloned().unwrap_or_default()
    }

    fn has_event(&self, kind: &str, subject: &str) -> bool {
        self.events().iter().any(|e| e["kind"] == kind && e["subject"] == subject)
    }

    fn wait_event(&self, kind: &str, subject: &str, timeout: Duration) {
        wait_until(timeout, &format!("a {kind} event for {subject}"), || self.has_event(kind, subject).then_some(()));
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

fn cmdline(pid: u32) -> Vec<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    bytes.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// CLAUDE_CONFIG_DIR of a running process: the account it works for.
fn config_dir_of(pid: u32) -> Option<PathBuf> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    bytes.split(|b| *b == 0).find_map(|kv| {
        kv.strip_prefix(b"CLAUDE_CONFIG_DIR=").map(|v| PathBuf::from(String::from_utf8_lossy(v).into_owned()))
    })
}

fn resumes(pid: u32, id: &str) -> bool {
    cmdline(pid).windows(2).any(|w| w[0] == "--resume" && w[1] == id)
}

/// Drops a task into the project's inbox (written aside, renamed in) and
/// waits for it in done/.
fn run_task(project: &Project, name: &str, text: &str) {
    let queue = project.path.join(".agent-queue");
    let inbox = queue.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let temp = inbox.join(format!(".{name}"));
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, inbox.join(name)).unwrap();
    let done = queue.join("done").join(name);
    wait_until(TASK, &format!("{name} in done/"), || done.exists().then_some(()));
}

/// The transcripts of one project under the account's own projects/ folder.
fn transcripts(account: &Account, project: &Project) -> (PathBuf, Vec<String>) {
    let dir = account.dir.join("projects").join(claude_failover::claude::project_key(&project.path));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n.ends_with(".jsonl"));
    names.sort();
    (dir, names)
}

fn sigkill(pid: u32) {
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
}

/// Two sessions (one in a project no account trusts yet) through launch, a
/// killed claude and a daemon restart, on one tmux server and one
/// conversation each.
#[test]
fn sessions_launch_survive_a_killed_claude_and_a_daemon_restart() {
    let _lock = kit::claude_turn();
    let (rig, projects) = Rig::new(&["known", "fresh"], &["known"], &[("ccl-a", "known"), ("ccl-b", "fresh")], true);
    let known = &projects[0];
    let fresh = &projects[1];
    let daemon = rig.start("run1");

    // 1. Both launched on the first account, at their prompt, each with its own conversation.
    let mut ids = Vec::new();
    for name in ["ccl-a", "ccl-b"] {
        let s = daemon.wait_state(name, "idle", START);
        assert_eq!(s["account"], "alpha", "{s}");
        assert_eq!(s["restarts"], 0, "{s}");
        let id = s["claude_session_id"].as_str().unwrap_or_default().to_string();
        assert!(is_uuid(&id), "{name}: claude_session_id {id:?} is not a UUID");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    let (id_a, id_b) = (ids[0].clone(), ids[1].clone());

    // 3. The trust dialog of the untrusted project was answered: Claude Code recorded the trust.
    assert!(accounts::trusts(&rig.alpha, &fresh.path), "alpha's .claude.json does not trust {}", fresh.path.display());
    assert!(!daemon.has_event("session_waiting", "ccl-b"), "{:?}", daemon.events());

    // 2. A conversation with a prompt, then its claude killed.
    run_task(known, "001-first.md", "Say hello for the first task");
    assert_eq!(rig.api.count_text("Say hello for the first task"), 1, "{:?}", rig.api.user_texts());
    let (folder, before) = transcripts(&rig.alpha, known);
    let transcript = folder.join(format!("{id_a}.jsonl"));
    assert_eq!(before, [format!("{id_a}.jsonl")], "{}", folder.display());
    let size_before = std::fs::metadata(&transcript).unwrap().len();
    let pid_a = rig.pane_pid("ccl-a").expect("ccl-a's pane");
    let pid_b = rig.pane_pid("ccl-b").expect("ccl-b's pane");
    // ccl-b never had a prompt: it has no transcript to resume, so it must
    // come back under --session-id with the same id (--resume would fail).
    sigkill(pid_a);
    sigkill(pid_b);

    let mut relaunched = Vec::new();
    for (name, id, flag) in [("ccl-a", &id_a, "--resume"), ("ccl-b", &id_b, "--session-id")] {
        daemon.wait_event("session_died", name, START);
        daemon.wait_event("session_restarted", name, START);
        let s = wait_until(START, &format!("{name} relaunched and idle"), || {
            let s = daemon.session(name);
            (s["state"] == "idle" && s["restarts"] == 1).then_some(s)
        });
        assert_eq!(s["claude_session_id"], id.as_str(), "{s}");
        assert_eq!(s["account"], "alpha", "{s}");
        let pid = rig.pane_pid(name).unwrap_or_else(|| panic!("{name}'s new pane"));
        assert!(pid != pid_a && pid != pid_b, "{name}: still pid {pid}");
        let argv = cmdline(pid);
        assert!(argv.windows(2).any(|w| w[0] == flag && w[1] == **id), "{name} relaunched as {argv:?}");
        assert_eq!(config_dir_of(pid), Some(rig.alpha.dir.clone()));
        relaunched.push(pid);
    }
    let (pid_a, pid_b) = (relaunched[0], relaunched[1]);
    assert!(resumes(pid_a, &id_a));

    run_task(known, "002-second.md", "Say hello for the second task");
    let size_after = std::fs::metadata(&transcript).unwrap().len();
    assert!(size_after > size_before, "{} did not grow: {size_before} -> {size_after}", transcript.display());
    assert_eq!(transcripts(&rig.alpha, known).1, before, "a new transcript appeared in {}", folder.display());

    // 4. The daemon stops cleanly and a new one adopts what runs, relaunching nothing.
    let mut daemon = daemon;
    daemon.0.signal("TERM");
    assert_eq!(daemon.0.wait_exit(Duration::from_secs(15)), Some(0), "exit status of the daemon on SIGTERM");
    drop(daemon);
    assert_eq!(rig.pane_pid("ccl-a"), Some(pid_a), "ccl-a did not survive the daemon's stop");
    assert_eq!(rig.pane_pid("ccl-b"), Some(pid_b), "ccl-b did not survive the daemon's stop");

    // The new daemon must take the conversation ids from what runs, not
    // only from its state: lose the state file it would read them from.
    std::fs::remove_file(rig.root.join("state/sessions.json")).expect("state/sessions.json");
    let daemon = rig.start("run2");
    for (name, id) in [("ccl-a", &id_a), ("ccl-b", &id_b)] {
        let s = daemon.wait_state(name, "idle", START);
        assert_eq!(s["claude_session_id"], id.as_str(), "{s}");
        assert_eq!(s["restarts"], 0, "{s}");
        assert_eq!(s["account"], "alpha", "{s}");
    }
    assert_eq!(rig.pane_pid("ccl-a"), Some(pid_a), "ccl-a was relaunched instead of adopted");
    assert_eq!(rig.pane_pid("ccl-b"), Some(pid_b), "ccl-b was relaunched instead of adopted");
    let events = daemon.events();
    assert!(
        !events.iter().any(|e| e["kind"] == "session_restarted" || e["kind"] == "session_died"),
        "the adopting daemon relaunched something: {events:?}"
    );

    // An adopted session is watched like a launched one: killed, it comes
    // back on the conversation it ran.
    sigkill(pid_a);
    let s = wait_until(START, "adopted ccl-a relaunched and idle", || {
        let s = daemon.session("ccl-a");
        (s["state"] == "idle" && s["restarts"] == 1).then_some(s)
    });
    assert_eq!(s["claude_session_id"], id_a.as_str(), "{s}");
    let pid = rig.pane_pid("ccl-a").expect("ccl-a's pane");
    assert!(resumes(pid, &id_a), "relaunched as {:?}", cmdline(pid));
}

/// A restart by request (POST /sessions/NAME/restart): the session is
/// relaunched (a new process) on the active account, resuming the same
/// conversation.
#[test]
fn a_restart_request_relaunches_the_session_on_its_conversation() {
    let _lock = kit::claude_turn();
    let (rig, projects) = Rig::new(&["known"], &["known"], &[("ccl-r", "known")], true);
    let daemon = rig.start("run");
    let s = daemon.wait_state("ccl-r", "idle", START);
    let id = s["claude_session_id"].as_str().unwrap_or_default().to_string();
    run_task(&projects[0], "001-before-restart.md", "Say hello before the restart");
    let pid = rig.pane_pid("ccl-r").expect("ccl-r's pane");

    let (code, body) = daemon.0.request("POST", "/sessions/ccl-r/restart", Some("{}"), &[kit::http::JSON]).unwrap();
    assert_eq!(code, 202, "POST /sessions/ccl-r/restart: {body}");
    let (code, _) = daemon.0.request("POST", "/sessions/nobody/restart", Some("{}"), &[kit::http::JSON]).unwrap();
    assert_eq!(code, 404, "POST /sessions/nobody/restart");
    let new_pid = wait_until(START, "ccl-r's new pane", || rig.pane_pid("ccl-r").filter(|p| *p != pid));
    let s = wait_until(START, "ccl-r idle in its new process", || {
        let s = daemon.session("ccl-r");
        (s["state"] == "idle" && rig.pane_pid("ccl-r") == Some(new_pid)).then_some(s)
    });
    assert_eq!(s["claude_session_id"], id.as_str(), "{s}");
    assert_eq!(s["account"], "alpha", "{s}");
    assert!(resumes(new_pid, &id), "restarted as {:?}", cmdline(new_pid));
    assert_eq!(config_dir_of(new_pid), Some(rig.alpha.dir.clone()), "not relaunched on the active account");
    assert_eq!(transcripts(&rig.alpha, &projects[0]).1, [format!("{id}.jsonl")]);
}

/// With `auto_trust = false` the trust dialog is left to a person: the session
/// waits, and says so once.
#[test]
fn without_auto_trust_the_session_waits_on_the_trust_dialog() {
    let _lock = kit::claude_turn();
    let (rig, projects) = Rig::new(&["fresh"], &[], &[("ccl-w", "fresh")], false);
    let daemon = rig.start("run");
    daemon.wait_state("ccl-w", "waiting", START);
    daemon.wait_event("session_waiting", "ccl-w", START);
    // It must stay so: give the daemon several observation rounds (one a
    // second) to do the wrong thing, then look again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(daemon.session("ccl-w")["state"], "waiting");
    assert!(rig.screen("ccl-w").contains("Yes, I trust this folder"), "{}", rig.screen("ccl-w"));
    assert!(!accounts::trusts(&rig.alpha, &projects[0].path));
    let waits = daemon.events().iter().filter(|e| e["kind"] == "session_waiting").count();
    assert_eq!(waits, 1, "{:?}", daemon.events());
}
