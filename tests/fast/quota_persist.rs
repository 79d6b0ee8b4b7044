//! The real daemon keeps what it learned about quota across a restart
//! (`<state_dir>/quota.json`): a hard limit seen before a SIGTERM still holds
//! after it, even when the usage endpoint then fails. No sessions, so no
//! Claude Code and no tmux panes; the usage endpoint is the loopback fake API.

use kit::daemon::{config_text, Daemon};
use kit::fake_api::{FakeApi, ScriptedUsage};
use kit::free_port;
use kit::wait_until;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DEADLINE: Duration = Duration::from_secs(20);

fn status(d: &Daemon) -> Value {
    let (code, body) = d.get("/status").expect("GET /status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}

fn account<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["accounts"].as_array().unwrap().iter().find(|a| a["name"] == name).unwrap()
}

fn answer(status: u16, body: String) -> ScriptedUsage {
    let headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    ScriptedUsage { status, body, headers }
}

/// A config over alpha and beta (priority order) polling the fake API often.
fn config(dir: &Path, port: u16, api: &FakeApi) -> String {
    for name in ["alpha", "beta"] {
        kit::accounts::create(&dir.join("accounts"), name, &[]);
    }
    let extra = format!("[quota]\nusage_url = \"{}/api/oauth/usage\"\npoll_interval_secs = 2\n", api.url());
    config_text(dir, port, &extra)
}

fn stop(mut d: Daemon) {
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)), Some(0), "{}", d.log_text());
}

#[test]
fn a_hard_limit_survives_a_restart_while_the_usage_endpoint_fails() {
    let dir = kit::temp_dir();
    let api = FakeApi::start();
    let (alpha, beta) = ("sk-ant-oat01-TEST-ALPHA", "sk-ant-oat01-TEST-BETA");
    let reset_unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3 * 3600;
    let reset = claude_failover::time::rfc3339_from_unix(reset_unix as i64);
    let full = format!(
        r#"{{"five_hour": {{"utilization": 100.0, "resets_at": "{}"}},
            "seven_day": {{"utilization": 30.0, "resets_at": null}}}}"#,
        kit::fake_api::rfc3339(reset_unix)
    );
    api.script_usage(alpha, answer(200, full));
    api.set_usage(beta, 10.0, 20.0, None);
    let port = free_port();
    let text = config(dir.path(), port, &api);

    // First run: the poll at 100 % exhausts alpha and moves off it.
    let d = Daemon::start(dir.path(), &text, port, &[]);
    wait_until(DEADLINE, "alpha exhausted and beta active", || {
        let s = status(&d);
        (account(&s, "alpha")["state"] == "exhausted" && s["active_account"] == "beta").then_some(())
    });
    stop(d);
    let saved: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/quota.json")).expect("quota.json written"))
            .unwrap();
    assert_eq!(saved["accounts"]["alpha"]["exhausted_until"], reset.as_str(), "{saved}");

    // Second run: every poll fails, and active.json is gone, so the daemon
    // starts on the first account, alpha: only the saved limit tells it not to.
    for token in [alpha, beta] {
        api.script_usage(token, answer(500, r#"{"error": "overloaded"}"#.into()));
    }
    std::fs::remove_file(dir.path().join("state/active.json")).unwrap();
    let calls_before = api.usage_calls(alpha);
    let d = Daemon::start(dir.path(), &text, port, &[]);
    let s = status(&d);
    let a = account(&s, "alpha");
    assert_eq!(a["state"], "exhausted", "right after the restart: {s}");
    assert_eq!(a["exhausted_until"], reset.as_str(), "{s}");
    assert_eq!(a["eligible"], false, "{s}");
    assert_eq!(a["five_hour"]["utilization"], 100.0, "last known windows are shown: {s}");
    wait_until(DEADLINE, "beta active after the restart", || (status(&d)["active_account"] == "beta").then_some(()));
    wait_until(DEADLINE, "a failed poll of alpha", || (api.usage_calls(alpha) > calls_before).then_some(()));
    let s = wait_until(DEADLINE, "the failed poll in /status", || {
        let s = status(&d);
        account(&s, "alpha")["last_error"].is_string().then_some(s)
    });
    assert_eq!(account(&s, "alpha")["state"], "exhausted", "a failing poll does not lift the limit: {s}");
    assert_eq!(account(&s, "alpha")["exhausted_until"], reset.as_str());
    assert_eq!(s["active_account"], "beta");
    assert!(d.log_text().contains("hard limit restored from quota.json"), "{}", d.log_text());
    stop(d);
}

#[test]
fn a_garbage_quota_json_is_logged_and_the_daemon_starts_without_it() {
    let dir = kit::temp_dir();
    let api = FakeApi::start();
    for token in ["sk-ant-oat01-TEST-ALPHA", "sk-ant-oat01-TEST-BETA"] {
        api.script_usage(token, answer(500, "{}".into()));
    }
    let port = free_port();
    let text = config(dir.path(), port, &api);
    let state = dir.path().join("state");
    kit::write(&state.join("quota.json"), "{\"version\": 1, \"accounts\": {\"alpha\": {\"exhausted_until\": 7");
    kit::write(&state.join("active.json"), r#"{"account": "beta"}"#);

    let d = Daemon::start(dir.path(), &text, port, &[]);
    let s = status(&d);
    assert_eq!(s["active_account"], "beta", "other saved state is kept: {s}");
    assert_eq!(account(&s, "alpha")["exhausted_until"], Value::Null, "{s}");
    let log = d.log_text();
    let named =
        log.lines().find(|l| l.contains("ERROR") && l.contains(&format!("{}", state.join("quota.json").display())));
    assert!(named.is_some_and(|l| l.contains("not understood")), "{log}");
    stop(d);
}
