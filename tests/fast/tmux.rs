//! The tmux client against a private tmux server: sessions, panes, environment,
//! pasting and typing, capture, and the errors for things that are not there.

use claude_failover::tmux::{Tmux, TmuxError};
use kit::tmux::TmuxServer;
use kit::wait_until;
use std::path::Path;
use std::time::Duration;

/// The daemon's tmux client on a kit server (the kit does not depend on the daemon's crate).
trait Client {
    fn tmux(&self) -> Tmux;
}

impl Client for TmuxServer {
    fn tmux(&self) -> Tmux {
        Tmux::new(self.socket_name())
    }
}

const WAIT: Duration = Duration::from_secs(10);

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// A session whose process copies what it is typed into `out` (until EOF).
fn recorder(tmux: &Tmux, name: &str, dir: &Path, out: &Path) {
    let out = out.to_str().expect("utf-8 path");
    tmux.new_session(name, dir, 120, 30, &[], &[], &argv(&["sh", "-c", "exec cat > \"$0\"", out]))
        .expect("new session");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn environ(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    raw.split(|b| *b == 0).filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned()).collect()
}

#[test]
fn a_session_runs_its_command_directly_with_its_own_environment() {
    let server = TmuxServer::new();
    let tmux = server.tmux();
    let dir = kit::temp_dir();
    let env = vec![
        ("CF_SET".to_string(), "value with spaces;".to_string()),
        ("CF_BOTH".to_string(), "set then unset".to_string()),
    ];
    // HOME comes from the tmux server's own environment: unsetting must reach it too.
    let spawned = tmux
        .new_session("work-1", dir.path(), 100, 25, &env, &["HOME", "CF_BOTH"], &argv(&["cat"]))
        .expect("new session");
    assert!(spawned.pane_id.starts_with('%'), "{spawned:?}");

    assert!(tmux.has_session("work-1").unwrap());
    // tmux would match a prefix; the client must not.
    assert!(!tmux.has_session("work").unwrap());

    let sessions = tmux.list_sessions().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].name, "work-1");
    assert_eq!(sessions[0].attached, 0);
    assert!(sessions[0].created > 1_600_000_000);

    let panes = wait_until(WAIT, "cat to be the pane's command", || {
        let panes = tmux.list_panes("work-1").ok()?;
        (panes.len() == 1 && panes[0].current_command == "cat").then_some(panes)
    });
    assert_eq!(panes[0].pane_id, spawned.pane_id);
    assert_eq!(panes[0].pid, spawned.pid);
    assert!(!panes[0].dead);

    // No shell in between: the pane's process is `cat` itself, in the cwd asked for.
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", spawned.pid)).unwrap();
    assert_eq!(comm.trim(), "cat");
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", spawned.pid)).unwrap();
    assert_eq!(cwd, dir.path().canonicalize().unwrap());

    let vars = environ(spawned.pid);
    assert!(vars.contains(&"CF_SET=value with spaces;".to_string()), "{vars:?}");
    assert!(!vars.iter().any(|v| v.starts_with("HOME=")), "{vars:?}");
    assert!(!vars.iter().any(|v| v.starts_with("CF_BOTH=")), "{vars:?}");

    // The screen is the size asked for.
    let screen = tmux.capture_pane("work-1").unwrap();
    assert_eq!(screen.lines().count(), 25, "{screen:?}");

    tmux.kill_session("work-1").unwrap();
    assert!(!tmux.has_session("work-1").unwrap());
}

#[test]
fn a_pasted_text_with_a_code_block_arrives_intact() {
    let server = TmuxServer::new();
    let tmux = server.tmux();
    let dir = kit::temp_dir();
    let out = dir.path().join("received.txt");
    recorder(&tmux, "paste", dir.path(), &out);

    let text = "Fix the login bug; then run the tests.\n\
                \n\
                ```rust\n\
                fn main() {\n    println!(\"$HOME `id` 'quoted' \\\"x\\\" ;\");\n}\n\
                ```\n\
                Last line with trailing semicolon;\n";
    tmux.paste("paste", text).unwrap();
    // The terminal echoes what it is given: the capture shows the pasted lines.
    wait_until(WAIT, "the paste on screen", || {
        let screen = tmux.capture_pane("paste").ok()?;
        screen.contains("Last line with trailing semicolon;").then_some(())
    });
    tmux.send_keys("paste", &["C-d"]).unwrap();
    wait_until(WAIT, "the pasted text in the file", || (read(&out) == text).then_some(()));
    wait_until(WAIT, "the session to end after EOF", || (!tmux.has_session("paste").unwrap()).then_some(()));
    // The named buffer was deleted after the paste.
    let buffers = raw_tmux(&server, &["list-buffers", "-F", "#{buffer_name}"]);
    assert_eq!(buffers.trim(), "", "{buffers}");
}

/// A tmux command the client does not offer, for checking from outside.
fn raw_tmux(server: &TmuxServer, args: &[&str]) -> String {
    let out = std::process::Command::new("tmux").arg("-L").arg(server.socket_name()).args(args).output().expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_hung_server_costs_a_timeout_not_a_hang() {
    let server = TmuxServer::new();
    let tmux = server.tmux().with_timeout(Duration::from_millis(300));
    let dir = kit::temp_dir();
    tmux.new_session("s", dir.path(), 80, 24, &[], &[], &argv(&["sleep", "30"])).unwrap();
    let pid = raw_tmux(&server, &["display-message", "-p", "#{pid}"]);
    let pid = pid.trim().to_string();
    assert!(pid.parse::<u32>().is_ok(), "{pid:?}");
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill").args([sig, &pid]).status().expect("kill");
        assert!(status.success());
    };
    signal("-STOP");
    let started = std::time::Instant::now();
    let result = tmux.has_session("s");
    let took = started.elapsed();
    signal("-CONT");
    let err = result.unwrap_err();
    assert!(matches!(err, TmuxError::TimedOut { .. }), "{err}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The server, woken again, answers as before.
    assert!(server.tmux().has_session("s").unwrap());
}

#[test]
fn typed_text_and_named_keys_reach_the_pane() {
    let server = TmuxServer::new();
    let tmux = server.tmux();
    let dir = kit::temp_dir();
    let out = dir.path().join("typed.txt");
    recorder(&tmux, "typed", dir.path(), &out);

    let pane = tmux.list_panes("typed").unwrap().remove(0).pane_id;
    tmux.send_keys_literal("typed", "-not a flag; Enter;").unwrap();
    tmux.send_keys("typed", &["Enter"]).unwrap();
    // A pane id works as a target as well as a session name.
    tmux.send_keys_literal(&pane, "second").unwrap();
    tmux.send_keys(&pane, &["Enter", "C-d"]).unwrap();
    wait_until(WAIT, "the typed lines in the file", || (read(&out) == "-not a flag; Enter;\nsecond\n").then_some(()));
    // Escape is a key name too; the pane is gone by now, which is a missing session.
    let err = tmux.send_keys(&pane, &["Escape"]);
    if let Err(e) = err {
        assert!(e.is_missing(), "{e}");
    }
}

#[test]
fn a_session_whose_command_exits_disappears() {
    let server = TmuxServer::new();
    let tmux = server.tmux();
    let dir = kit::temp_dir();
    tmux.new_session("keeper", dir.path(), 80, 24, &[], &[], &argv(&["sleep", "30"])).unwrap();
    tmux.new_session("short", dir.path(), 80, 24, &[], &[], &argv(&["sh", "-c", "sleep 0.2"])).unwrap();
    wait_until(WAIT, "the finished session to go away", || (!tmux.has_session("short").unwrap()).then_some(()));
    let names: Vec<String> = tmux.list_sessions().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["keeper".to_string()]);

    tmux.kill_server().unwrap();
    assert!(tmux.list_sessions().unwrap().is_empty());
    assert!(!tmux.has_session("keeper").unwrap());
    // Killing a server that is not running is not an error.
    tmux.kill_server().unwrap();
}

#[test]
fn missing_sessions_and_servers_are_told_apart_from_failures() {
    let server = TmuxServer::new();
    let tmux = server.tmux();
    let dir = kit::temp_dir();

    // No server yet.
    assert!(!tmux.has_session("nope").unwrap());
    assert!(tmux.list_sessions().unwrap().is_empty());
    let err = tmux.list_panes("nope").unwrap_err();
    assert!(matches!(err, TmuxError::NoServer { .. }), "{err}");
    assert!(err.is_missing());

    tmux.new_session("present", dir.path(), 80, 24, &[], &[], &argv(&["sleep", "30"])).unwrap();

    for err in [
        tmux.capture_pane("nope").unwrap_err(),
        tmux.kill_session("nope").unwrap_err(),
        tmux.list_panes("nope").unwrap_err(),
        tmux.paste("nope", "text").unwrap_err(),
        tmux.send_keys_literal("nope", "x").unwrap_err(),
        tmux.send_keys("nope", &["Enter"]).unwrap_err(),
        // A prefix of an existing name is still missing.
        tmux.kill_session("pres").unwrap_err(),
    ] {
        assert!(matches!(err, TmuxError::NoSession { .. }), "{err}");
        assert!(err.to_string().contains("tmux "), "{err}");
    }
    let err = tmux.capture_pane("nope").unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");

    let err = tmux.new_session("present", dir.path(), 80, 24, &[], &[], &argv(&["true"])).unwrap_err();
    assert!(matches!(err, TmuxError::SessionExists { .. }), "{err}");
    assert!(!err.is_missing());

    let missing = dir.path().join("not-here");
    let err = tmux.new_session("other", &missing, 80, 24, &[], &[], &argv(&["true"])).unwrap_err();
    assert!(matches!(err, TmuxError::NoDirectory { .. }), "{err}");
    assert!(err.to_string().contains("not-here"), "{err}");

    assert!(tmux.has_session("present").unwrap());
}

/// A control-mode client tells of its session's output, of windows coming and
/// going, and ends with the session; another ends with the server.
#[test]
fn a_control_client_tells_of_output_windows_and_the_end() {
    use claude_failover::tmux::control::{Follower, Notice};
    let server = TmuxServer::new();
    let tmux = server.tmux();
    let dir = kit::temp_dir();
    recorder(&tmux, "ctl-1", dir.path(), &dir.path().join("typed"));
    recorder(&tmux, "ctl-2", dir.path(), &dir.path().join("typed-2"));
    let (tx, rx) = crossbeam_channel::unbounded();
    let one = Follower::attach(&tmux, "ctl-1", 1, tx.clone()).expect("attach ctl-1");
    let _two = Follower::attach(&tmux, "ctl-2", 2, tx).expect("attach ctl-2");
    // Drawn before a client is attached, output is told to nobody.
    wait_until(WAIT, "both clients attached", || {
        let sessions = tmux.list_sessions().ok()?;
        sessions.iter().all(|s| s.attached > 0).then_some(())
    });
    let next = |what: &str, want: &dyn Fn(&Notice) -> bool| {
        wait_until(WAIT, what, || rx.recv_timeout(Duration::from_millis(100)).ok().filter(|n| want(n)))
    };
    tmux.send_keys_literal("ctl-1", "drawn").unwrap();
    next("ctl-1's output", &|n| *n == Notice::Output { session: "ctl-1".into() });
    // Told once until taken: more drawing sends nothing more...
    tmux.send_keys_literal("ctl-1", "more").unwrap();
    wait_until(WAIT, "the second text drawn", || tmux.capture_pane("ctl-1").ok()?.contains("more").then_some(()));
    assert!(rx.try_iter().all(|n| !matches!(n, Notice::Output { .. })));
    // ...and once taken, the next drawing is told again.
    one.output_seen();
    tmux.send_keys_literal("ctl-1", "again").unwrap();
    next("ctl-1's output again", &|n| *n == Notice::Output { session: "ctl-1".into() });
    // A window that comes and goes.
    tmux.new_window("ctl-1", dir.path(), &[], &[], &argv(&["sleep", "0.3"])).unwrap();
    next("a layout change in ctl-1", &|n| *n == Notice::Layout { session: "ctl-1".into() });
    tmux.kill_session("ctl-1").unwrap();
    next("ctl-1's client to end", &|n| *n == Notice::Ended { session: "ctl-1".into(), follower: 1 });
    tmux.kill_server().unwrap();
    next("ctl-2's client to end with the server", &|n| *n == Notice::Ended { session: "ctl-2".into(), follower: 2 });
    // A session that is not there: the client ends at once.
    let (tx, rx) = crossbeam_channel::unbounded();
    let _none = Follower::attach(&tmux, "nowhere", 3, tx);
    let ended = rx.recv_timeout(WAIT).expect("a notice");
    assert_eq!(ended, Notice::Ended { session: "nowhere".into(), follower: 3 });
}
