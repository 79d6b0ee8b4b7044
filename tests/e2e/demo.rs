//! `make demo` end to end: scripts/demo.sh with the binaries this test build made,
//! real Claude Code, a private tmux server and the fake API in this process. The
//! demo must exit 0 with a summary of the tasks done on each account and the swap,
//! and leave nothing running behind it.

use kit::fake_api::FakeApi;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Ends the script if the test gives up on it: SIGTERM lets its trap clean up.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
            for _ in 0..150 {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The first number after `prefix` on the first line that has it.
fn number_after(text: &str, prefix: &str) -> Option<u32> {
    let rest = text.lines().find_map(|l| l.split_once(prefix).map(|(_, rest)| rest))?;
    rest.split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty())?.parse().ok()
}

#[test]
fn the_demo_does_its_tasks_swaps_accounts_and_cleans_up() {
    let _lock = kit::claude_turn();
    let api = FakeApi::start();
    let tmp = kit::temp_dir();
    let socket = kit::unique_name("cf-demo");
    let transcript = tmp.path().join("demo.out");
    let child = Command::new("bash")
        .arg(kit::repo_root().join("scripts/demo.sh"))
        .env("DEMO_DIR", tmp.path().join("demo"))
        .env("DEMO_SOCKET", &socket)
        .env("CF_BIN", kit::daemon_binary())
        .env("CLAUDE_BIN", kit::claude_binary())
        .env("FAKE_API_URL", api.url())
        .env_remove("KEEP")
        .env_remove("SCENARIO")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&transcript).unwrap())
        .stderr(std::fs::File::create(tmp.path().join("demo.err")).unwrap())
        .spawn()
        .unwrap();
    let mut script = Script(child);
    let status =
        kit::wait_until(Duration::from_secs(300), "scripts/demo.sh to finish", || script.0.try_wait().unwrap());
    let out = std::fs::read_to_string(&transcript).unwrap();
    let err = std::fs::read_to_string(tmp.path().join("demo.err")).unwrap();
    let all = format!("{out}\n--- stderr ---\n{err}");
    assert!(status.success(), "the demo failed ({status}):\n{all}");

    assert!(out.contains("tasks done per account:"), "no summary:\n{all}");
    // The summary lists "  ACCOUNT: N (task, ...)", indented by two.
    let done_on = |account: &str| {
        out.lines().find_map(|l| l.strip_prefix(&format!("  {account}: "))).and_then(|r| number_after(r, ""))
    };
    assert_eq!(done_on("alpha"), Some(4), "tasks done on alpha:\n{all}");
    assert_eq!(done_on("beta"), Some(4), "tasks done on beta:\n{all}");
    assert_eq!(number_after(&out, "tasks failed:"), Some(0), "{all}");
    let swap = out.lines().find(|l| l.starts_with("swap: from alpha to beta, reason ")).unwrap_or_else(|| {
        panic!("no swap line from alpha to beta:\n{all}");
    });
    assert_eq!(number_after(swap, "sessions moved"), Some(2), "{all}");
    // Each session's conversation went on under beta after its turns under alpha.
    // (Summary lines "  <session id>: alpha N, then beta M".)
    let resumed = out
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.split_once(": alpha ")?.1.split_once(", then beta "))
        .filter(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
        .count();
    assert_eq!(resumed, 2, "conversations resumed across the swap:\n{all}");
    assert!(out.contains("failover_started") && out.contains("failover_finished"), "swap events not shown:\n{all}");
    assert!(out.contains("demo: OK"), "{all}");

    // The work really went through each account's own token.
    let by_token = |t: &str| api.requests().iter().filter(|r| r.token == t).count();
    assert!(by_token("sk-ant-oat01-DEMO-ALPHA") >= 4, "{all}");
    assert!(by_token("sk-ant-oat01-DEMO-BETA") >= 4, "{all}");

    // Nothing left running: the daemon, the tmux server and its Claude Code sessions.
    let pid = number_after(&out, "daemon pid").expect("the daemon's pid in the transcript");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "the daemon (pid {pid}) still runs");
    let tmux = Command::new("tmux").args(["-L", &socket, "list-sessions"]).output().unwrap();
    assert!(!tmux.status.success(), "the demo's tmux server still runs: {}", String::from_utf8_lossy(&tmux.stdout));
}
