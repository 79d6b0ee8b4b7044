//! Faults under a running daemon (reliability campaign): the tmux server
//! killed, and a claude process killed again and again. The daemon stays up,
//! says what happened, and the sessions come back on their conversations.

use kit::rig::{status, wait_idle, Rig};
use kit::{claude_turn, wait_until};
use std::time::Duration;

fn pane_pid(rig: &Rig, session: &str) -> Option<u32> {
    let out = std::process::Command::new("tmux")
        .args(["-L", rig.tmux.socket_name(), "list-panes", "-t", &format!("={session}"), "-F", "#{pane_pid}"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn ids(st: &serde_json::Value) -> Vec<(String, String)> {
    st["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["claude_session_id"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn events(d: &kit::daemon::Daemon, kind: &str) -> usize {
    let (_, body) = d.get("/events?since=0").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["events"].as_array().unwrap().iter().filter(|e| e["kind"] == kind).count()
}

#[test]
fn the_tmux_server_killed_under_the_daemon_the_sessions_come_back_on_their_conversations() {
    let _lock = claude_turn();
    let rig = Rig::new(&["p"], &[("s1", "p"), ("s2", "p")], "[dispatch]\nsettle_secs = 1\n");
    let daemon = rig.start();
    wait_idle(&daemon, &["s1", "s2"], Duration::from_secs(120));
    rig.drop_task("p", "before.md", "Before the tmux server dies: answer briefly.");
    wait_until(Duration::from_secs(60), "before.md done", || {
        rig.tasks("p", "done").contains(&"before.md".into()).then_some(())
    });
    let before = ids(&status(&daemon).unwrap());

    let killed =
        std::process::Command::new("tmux").args(["-L", rig.tmux.socket_name(), "kill-server"]).status().unwrap();
    assert!(killed.success());
    wait_until(Duration::from_secs(120), "both sessions back and idle", || {
        let st = status(&daemon)?;
        let back = st["sessions"].as_array()?.iter().all(|s| s["state"] == "idle" && s["restarts"].as_u64() >= Some(1));
        back.then_some(())
    });
    assert_eq!(ids(&status(&daemon).unwrap()), before, "the conversations changed");
    assert_eq!(daemon.get("/healthz").unwrap().0, 200);
    assert!(events(&daemon, "session_died") >= 2);
    rig.drop_task("p", "after.md", "After the tmux server came back: answer briefly.");
    wait_until(Duration::from_secs(60), "after.md done", || {
        rig.tasks("p", "done").contains(&"after.md".into()).then_some(())
    });
}

#[test]
fn a_claude_killed_again_and_again_is_reported_as_a_crash_loop_and_still_relaunched() {
    let _lock = claude_turn();
    let rig = Rig::new(&["p"], &[("s1", "p")], "");
    let daemon = rig.start();
    wait_idle(&daemon, &["s1"], Duration::from_secs(120));
    let id = ids(&status(&daemon).unwrap());
    // Five deaths within the crash window: kill each new claude as soon as
    // it appears (backoff 1, 2, 4, 8 s between them).
    let mut last = None;
    for round in 0..5 {
        let pid = wait_until(Duration::from_secs(60), &format!("claude #{round} to run"), || {
            pane_pid(&rig, "s1").filter(|p| Some(*p) != last)
        });
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        last = Some(pid);
    }
    wait_until(Duration::from_secs(30), "a session_crash_loop event", || {
        (events(&daemon, "session_crash_loop") == 1).then_some(())
    });
    assert_eq!(daemon.get("/healthz").unwrap().0, 200);
    // Still relaunched (with the backoff), on the same conversation.
    wait_idle(&daemon, &["s1"], Duration::from_secs(120));
    assert_eq!(ids(&status(&daemon).unwrap()), id);
    assert_eq!(events(&daemon, "session_crash_loop"), 1, "a loop is reported once");
}

/// A tmpfs mounted over a folder for one test, unmounted when dropped.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(dir: &std::path::Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mounting a tmpfs needs root (CI runs as root): {}", dir.display());
        Mount(dir.to_path_buf())
    }

    fn remount(&self, opts: &str) {
        let ok =
            std::process::Command::new("mount").args(["-o", &format!("remount,{opts}")]).arg(&self.0).status().unwrap();
        assert!(ok.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills a filesystem to the last byte.
fn fill(dir: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn state_dir_full_then_read_only_the_work_goes_on_and_the_daemon_says_why() {
    let _lock = claude_turn();
    let rig = Rig::new(&["p"], &[("s1", "p")], "[dispatch]\nsettle_secs = 1\n");
    let state = rig.dir.path().join("state");
    let mount = Mount::tmpfs(&state, "512k");
    let daemon = rig.start();
    wait_idle(&daemon, &["s1"], Duration::from_secs(120));

    fill(&state);
    rig.drop_task("p", "full.md", "Written while the state folder is full: answer briefly.");
    wait_until(Duration::from_secs(60), "full.md done", || {
        rig.tasks("p", "done").contains(&"full.md".into()).then_some(())
    });
    // Something the daemon writes under state_dir fails, says so, and nothing stops.
    let (code, _) = daemon.request("POST", "/sessions/s1/restart", Some("{}"), &[kit::http::JSON]).unwrap();
    assert_eq!(code, 202);
    wait_until(Duration::from_secs(120), "s1 relaunched", || {
        let st = status(&daemon)?;
        let s = &st["sessions"][0];
        (s["state"] == "idle" && s["restarts"] == 1).then_some(())
    });
    let log = std::fs::read_to_string(rig.dir.path().join("daemon.log")).unwrap();
    assert!(log.contains("No space left"), "the full state folder is not reported in the log");

    mount.remount("ro");
    rig.drop_task("p", "ro.md", "Written while the state folder is read-only: answer briefly.");
    wait_until(Duration::from_secs(60), "ro.md done", || {
        rig.tasks("p", "done").contains(&"ro.md".into()).then_some(())
    });
    assert_eq!(daemon.get("/healthz").unwrap().0, 200);
    assert!(rig.tasks("p", "failed").is_empty());
}
