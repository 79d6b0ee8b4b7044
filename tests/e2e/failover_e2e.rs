//! Quota monitor and account failover, end to end: the real `claude-failover
//! run` moving real Claude Code 2.1.332 sessions between accounts of the fake
//! API (quota per token), in a private tmux server. Each test checks what an
//! operator would: `/status`, `/events`, the queue folders, which token the
//! fake API saw on each request, and which account each pane runs under.

use kit::accounts::token;
use kit::fake_api::{Mode, ScriptedUsage};
use kit::rig::{Failover as Rig, Options};
use kit::wait_until;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Real Claude Code on a shared 2-core machine: starts take seconds.
const LONG: Duration = Duration::from_secs(120);

fn rig(options: Options) -> Rig {
    Rig::new(options)
}

fn in_hours(h: u64) -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + h * 3600
}

/// Every named account has been polled at least once (the swap target's
/// headroom is known).
fn wait_polled(rig: &Rig, accounts: &[&str]) {
    wait_until(LONG, "every account polled once", || {
        accounts.iter().all(|a| rig.account_status(a).is_some_and(|s| !s["last_poll_at"].is_null())).then_some(())
    });
}

/// A task for one session only (front matter `session`).
fn task_for(session: &str, text: &str) -> String {
    format!("+++\nsession = \"{session}\"\n+++\n{text}\n")
}

fn assert_every_pane_on(rig: &Rig, account: &str) {
    let want = rig.account_dir(account).display().to_string();
    let panes = rig.panes();
    assert_eq!(panes.len(), rig.options.sessions, "one pane per session: {panes:?}");
    for (session, pid) in panes {
        assert_eq!(Rig::pane_config_dir(pid).as_deref(), Some(want.as_str()), "{session} (pid {pid})");
    }
}

#[test]
fn threshold_crossing_moves_every_session_with_its_conversation() {
    let _lock = kit::claude_turn();
    let mut rig = rig(Options::default());
    rig.start_daemon();
    let before = rig.wait_all_idle_on("alpha", LONG);
    wait_polled(&rig, &["alpha", "beta"]);

    rig.api.set_usage(&token("alpha"), 95.0, 20.0, None);
    let after = rig.wait_all_idle_on("beta", LONG);
    assert_eq!(after, before, "same conversation ids after the swap");
    let status = rig.status().unwrap();
    let last = &status["swap"]["last"];
    assert_eq!((&last["from"], &last["to"], &last["reason"]), (&"alpha".into(), &"beta".into(), &"threshold".into()));
    assert_eq!(last["sessions_moved"], 2);
    assert_eq!(rig.count_events("failover_started"), 1);
    assert_eq!(rig.count_events("failover_finished"), 1);
    assert_every_pane_on(&rig, "beta");

    // The next request of each session carries beta's token.
    let seen = rig.api.requests().len();
    for (session, _) in &after {
        rig.drop_task(&format!("after-{session}.md"), &task_for(session, &format!("Report after the swap {session}")));
    }
    for (session, id) in &after {
        let name = format!("after-{session}.md");
        let result = wait_until(LONG, &format!("{name} in done/"), || rig.result(&name));
        assert_eq!((&result["session"], &result["account"]), (&Value::from(session.as_str()), &"beta".into()));
        let requests = rig.api.requests();
        let turn = requests[seen..]
            .iter()
            .find(|r| r.text.contains(&format!("Report after the swap {session}")))
            .expect("the task's request");
        assert_eq!(turn.token, token("beta"), "{session}'s task went out with beta's token");
        if let Some(sid) = &turn.session_id {
            assert_eq!(sid, id, "{session}'s task continued its conversation");
        }
    }
    assert!(
        rig.api.requests()[seen..].iter().all(|r| r.token == token("beta")),
        "no user turn on alpha after the swap"
    );
}

#[test]
fn hard_limit_mid_task_resumes_on_the_next_account_and_finishes_there() {
    let _lock = kit::claude_turn();
    let mut rig = rig(Options::default());
    rig.start_daemon();
    let before = rig.wait_all_idle_on("alpha", LONG);
    wait_polled(&rig, &["alpha", "beta"]);

    // alpha's next user turn is refused with a five-hour hard limit.
    rig.api.set_quota(&token("alpha"), 0, "five_hour", in_hours(3));
    rig.drop_task("limited.md", &task_for("s1", "Write the limited report"));
    wait_until(LONG, "failover_started", || (rig.count_events("failover_started") == 1).then_some(()));
    // A task arriving while the swap runs waits for it, then goes to beta.
    rig.drop_task("during.md", "Write the report that arrived during the swap");

    for name in ["limited.md", "during.md"] {
        let result = wait_until(LONG, &format!("{name} in done/"), || rig.result(name));
        assert_eq!(result["account"], "beta", "{name}: {result}");
    }
    assert_eq!(rig.result("limited.md").unwrap()["session"], "s1");
    assert_eq!(rig.tasks_in("done"), ["during.md", "limited.md"]);
    for folder in ["inbox", "active", "failed"] {
        assert!(rig.tasks_in(folder).is_empty(), "{folder}/: {:?}", rig.tasks_in(folder));
    }
    let status = rig.status().unwrap();
    assert_eq!(status["swap"]["last"]["reason"], "hard_limit");
    assert_eq!(status["swap"]["last"]["to"], "beta");
    assert_eq!(rig.count_events("failover_started"), 1);
    // The limited turn hit alpha; the continuation went out on beta, naming the task.
    let requests = rig.api.requests();
    assert!(requests.iter().any(|r| r.token == token("alpha") && r.text.contains("Write the limited report")));
    let continued: Vec<_> = requests.iter().filter(|r| r.text.contains("interrupted by a usage limit")).collect();
    assert_eq!(continued.len(), 1, "one continuation prompt: {continued:?}");
    assert_eq!(continued[0].token, token("beta"));
    assert!(continued[0].text.contains("limited.md"));
    let after = rig.wait_all_idle_on("beta", LONG);
    assert_eq!(after, before, "same conversation ids after the swap");
    assert_every_pane_on(&rig, "beta");
}

#[test]
fn a_replayed_limit_after_resume_does_not_swap_again() {
    let _lock = kit::claude_turn();
    let mut rig = rig(Options { sessions: 1, ..Options::default() });
    rig.start_daemon();
    rig.wait_all_idle_on("alpha", LONG);
    wait_polled(&rig, &["alpha", "beta"]);
    rig.api.set_mode(&token("alpha"), Mode::HardLimit { claim: "five_hour".into(), reset_unix: in_hours(3) });
    rig.drop_task("hit.md", "Work until the limit");
    wait_until(LONG, "hit.md in done/ on beta", || rig.result("hit.md").filter(|r| r["account"] == "beta"));
    let ids = rig.wait_all_idle_on("beta", LONG);
    // What the usage endpoint would say of alpha from now on (a restarted
    // daemon forgets the sighting; the server does not).
    rig.api.set_usage(&token("alpha"), 100.0, 40.0, None);

    // A restarted daemon adopts the session; a relaunch then replays the old
    // conversation, limit text included, with --resume.
    assert_eq!(rig.stop_daemon(), Some(0));
    rig.start_daemon();
    assert_eq!(rig.wait_all_idle_on("beta", LONG), ids);
    let old_pid = rig.panes()[0].1;
    rig.tmux(&["kill-session", "-t", "s1"]);
    wait_until(LONG, "s1 relaunched", || rig.panes().first().is_some_and(|p| p.1 != old_pid).then_some(()));
    assert_eq!(rig.wait_all_idle_on("beta", LONG), ids, "resumed the same conversation");
    let screen = rig.screen("s1");
    assert!(screen.contains("You've hit your"), "the old limit is replayed on screen:\n{screen}");

    // Long enough for several observations (1 s) and polls of both accounts.
    rig.wait_polls("beta", 4, LONG);
    rig.wait_polls("alpha", 4, LONG);
    assert_eq!(rig.count_events("failover_started"), 0, "no swap after the restart");
    let status = rig.status().unwrap();
    assert_eq!(status["active_account"], "beta");
    assert_eq!(rig.all_idle_on("beta"), Some(ids));
}

#[test]
fn all_accounts_exhausted_pauses_without_a_swap_loop_and_resumes_on_recovery() {
    let _lock = kit::claude_turn();
    let mut rig = rig(Options { sessions: 1, ..Options::default() });
    rig.start_daemon();
    rig.wait_all_idle_on("alpha", LONG);
    wait_polled(&rig, &["alpha", "beta"]);

    rig.api.set_usage(&token("beta"), 97.0, 30.0, None);
    rig.wait_polls("beta", 1, LONG);
    rig.api.set_usage(&token("alpha"), 96.0, 30.0, None);
    wait_until(LONG, "all_accounts_exhausted", || (rig.count_events("all_accounts_exhausted") == 1).then_some(()));
    rig.drop_task("waits.md", "Work once an account has room");
    rig.wait_polls("alpha", 4, LONG);
    rig.wait_polls("beta", 4, LONG);
    assert_eq!(rig.count_events("failover_started"), 0, "no swap loop");
    assert_eq!(rig.count_events("all_accounts_exhausted"), 1, "raised once");
    assert_eq!(rig.tasks_in("inbox"), ["waits.md"], "dispatch waits for quota");
    assert!(rig.tasks_in("active").is_empty());

    rig.api.set_usage(&token("beta"), 10.0, 30.0, None);
    let result = wait_until(LONG, "waits.md in done/", || rig.result("waits.md"));
    assert_eq!(result["account"], "beta");
    assert_eq!(rig.count_events("failover_started"), 1);
    assert_eq!(rig.count_events("account_recovered"), 1);
    assert_eq!(rig.count_events("all_accounts_exhausted"), 1);
    rig.wait_all_idle_on("beta", LONG);
}

#[test]
fn a_daemon_killed_mid_swap_finishes_it_after_restart() {
    let _lock = kit::claude_turn();
    let mut rig = rig(Options::default());
    rig.start_daemon();
    let before = rig.wait_all_idle_on("alpha", LONG);
    wait_polled(&rig, &["alpha", "beta"]);
    let panes_before = rig.panes();
    let journal = rig.state_dir().join("swap.json");

    let (code, body) = rig.http("POST", "/failover", Some(r#"{"to":"beta"}"#)).unwrap();
    assert_eq!(code, 202, "{body}");
    // Kill it once the journal is written and the sessions have started to move.
    wait_until(LONG, "the swap under way", || (journal.exists() && rig.panes() != panes_before).then_some(()));
    rig.kill_daemon();
    assert!(journal.exists(), "killed before the swap could finish");

    rig.start_daemon();
    let after = rig.wait_all_idle_on("beta", LONG);
    assert_eq!(after, before, "conversation ids unchanged");
    wait_until(LONG, "the journal removed", || (!journal.exists()).then_some(()));
    let status = rig.status().unwrap();
    assert_eq!(status["swap"]["last"]["to"], "beta", "{status}");
    assert!(!status["swap"]["last"]["finished_at"].is_null());
    assert_every_pane_on(&rig, "beta");
    let active: Value =
        serde_json::from_str(&std::fs::read_to_string(rig.state_dir().join("active.json")).unwrap()).unwrap();
    assert_eq!(active["account"], "beta", "{active}");
    assert_eq!(active["last_swap"], status["swap"]["last"], "active.json keeps the finished swap for the next start");
}

/// A stop in the middle of a swap that waits for a prompt which does not
/// come (beta's claude sits on the folder trust dialog, auto_trust off) must
/// not wait out the startup timeout: the daemon ends, the journal stays, and
/// the next start finishes the swap.
#[test]
fn a_daemon_stopped_mid_swap_ends_at_once_and_the_next_start_finishes_it() {
    let _lock = kit::claude_turn();
    let options = Options {
        sessions: 1,
        more: vec![("claude", "auto_trust", false.into()), ("claude", "startup_timeout_secs", 600.into())],
        ..Options::default()
    };
    let mut rig = rig(options);
    rig.start_daemon();
    let before = rig.wait_all_idle_on("alpha", LONG);
    wait_polled(&rig, &["alpha", "beta"]);
    // beta trusts no folder: its claude stops on the trust dialog.
    kit::accounts::write(&rig.account_dir("beta"), &token("beta"), &[]);
    let journal = rig.state_dir().join("swap.json");
    let (code, body) = rig.http("POST", "/failover", Some(r#"{"to":"beta"}"#)).unwrap();
    assert_eq!(code, 202, "{body}");
    wait_until(LONG, "beta's claude on the trust dialog", || {
        (journal.exists() && rig.screen("s1").contains("trust")).then_some(())
    });
    // SIGTERM; the stop waits on nothing the swap holds (600 s of startup timeout).
    assert_eq!(rig.stop_daemon(), Some(0), "a clean stop");
    assert!(journal.exists(), "the journal stays for the next start");

    kit::accounts::write(&rig.account_dir("beta"), &token("beta"), &[rig.project()]);
    rig.start_daemon();
    let after = rig.wait_all_idle_on("beta", LONG);
    assert_eq!(after, before, "the same conversation, finished on beta");
    wait_until(LONG, "the journal removed", || (!journal.exists()).then_some(()));
}

#[test]
fn usage_endpoint_errors_are_reported_and_back_off() {
    // No Claude Code runs here: only the poller and the status.
    let names = ["alpha", "limited", "broken", "garbled", "slow", "expired"];
    let mut rig = rig(Options {
        accounts: names.iter().map(|s| s.to_string()).collect(),
        sessions: 0,
        request_timeout_secs: 1,
        ..Options::default()
    });
    let script = |account: &str, status: u16, body: &str, headers: &[(&str, &str)]| {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        rig.api.script_usage(&token(account), ScriptedUsage { status, body: body.into(), headers });
    };
    script("limited", 429, r#"{"error":"slow down"}"#, &[("Retry-After", "4")]);
    script("broken", 500, "internal error", &[]);
    script("garbled", 200, "<html>not a usage answer", &[("Content-Type", "text/html")]);
    script("slow", 200, "{}", &[]);
    rig.api.set_usage_delay(&token("slow"), Duration::from_millis(2500));
    script("expired", 401, r#"{"error":"token expired"}"#, &[]);
    rig.start_daemon();

    let want = [
        ("limited", "error", "429"),
        ("broken", "error", "500"),
        ("garbled", "error", "not understood"),
        ("slow", "error", "did not answer in time"),
        // A 401 for a token whose expiresAt is ahead: a revoked login.
        ("expired", "token_expired", "revoked"),
    ];
    wait_until(LONG, "every account's first poll", || {
        want.iter().all(|(a, _, _)| rig.account_status(a).is_some_and(|s| !s["last_error"].is_null())).then_some(())
    });
    for (account, state, why) in want {
        let s = rig.account_status(account).unwrap();
        assert_eq!(s["state"], state, "{account}: {s}");
        assert!(s["last_error"].as_str().unwrap().contains(why), "{account}: {s}");
    }
    let healthy = rig.account_status("alpha").unwrap();
    assert!(healthy["last_error"].is_null() && healthy["state"] == "active", "{healthy}");

    // A measured window: eight polls of the healthy account.
    let start: Vec<u64> = names.iter().map(|a| rig.usage_calls(a)).collect();
    rig.wait_polls("alpha", 8, LONG);
    let during: Vec<u64> = names.iter().zip(&start).map(|(a, s)| rig.usage_calls(a) - s).collect();
    let ok = during[0];
    assert!(ok >= 8);
    for (account, calls) in names.iter().zip(&during).skip(1) {
        assert!(calls * 2 <= ok, "{account} polled {calls} times while alpha was polled {ok} times: no backoff");
    }
    assert_eq!(during[5], 0, "a refused token is not sent again");
    assert!(rig.daemon_alive());
    assert_eq!(rig.http("GET", "/healthz", None).unwrap().0, 200);
    let (_, metrics) = rig.http("GET", "/metrics", None).unwrap();
    assert!(metrics.contains("claude_failover_usage_poll_errors_total"), "{metrics}");
    assert_eq!(rig.count_events("failover_started"), 0);
    assert_eq!(rig.count_events("login_revoked"), 1);
    assert_eq!(rig.count_events("token_expired"), 0, "not a routine expiry");
}

#[test]
fn failover_on_request_accepts_refuses_a_second_and_unknown_accounts() {
    let _lock = kit::claude_turn();
    let mut rig = rig(Options { sessions: 1, ..Options::default() });
    rig.start_daemon();
    let before = rig.wait_all_idle_on("alpha", LONG);
    wait_polled(&rig, &["alpha", "beta"]);

    let post = |body: &str| rig.http("POST", "/failover", Some(body)).unwrap();
    let (code, body) = post(r#"{"to":"gamma"}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("gamma"), "{body}");
    let (code, body) = post(r#"{"to":"beta"}"#);
    assert_eq!(code, 202, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["accepted"], true);
    let (code, body) = post(r#"{"to":"alpha"}"#);
    assert_eq!(code, 409, "{body}");
    let (code, _) = post("{}");
    assert_eq!(code, 409);

    assert_eq!(rig.wait_all_idle_on("beta", LONG), before);
    let status = rig.status().unwrap();
    assert_eq!(status["swap"]["last"]["reason"], "manual");
    assert_eq!(rig.count_events("failover_started"), 1);
    let (code, body) = post(r#"{"to":"beta"}"#);
    assert_eq!(code, 400, "already active: {body}");
    assert_every_pane_on(&rig, "beta");
}

#[test]
fn a_resting_session_moves_side_by_side_and_leaves_one_pane() {
    let _lock = kit::claude_turn();
    let mut rig = rig(Options { sessions: 1, ..Options::default() });
    rig.start_daemon();
    let before = rig.wait_all_idle_on("alpha", LONG);
    wait_polled(&rig, &["alpha", "beta"]);

    rig.api.set_quota(&token("alpha"), 0, "five_hour", in_hours(3));
    rig.drop_task("rest.md", &task_for("s1", "Write the resting report"));
    let result = wait_until(LONG, "rest.md in done/", || rig.result("rest.md"));
    assert_eq!(result["account"], "beta", "{result}");
    assert_eq!(rig.tasks_in("done"), ["rest.md"]);
    let after = rig.wait_all_idle_on("beta", LONG);
    assert_eq!(after, before, "same conversation id after the swap");
    // The old claude ended with its window: one pane, on beta.
    assert_every_pane_on(&rig, "beta");
    let finished = rig.events().into_iter().find(|e| e["kind"] == "failover_finished").expect("failover_finished");
    let moved = &finished["results"][0];
    assert_eq!(moved["ok"], true, "{finished}");
    assert!(moved["ready_ms"].as_u64().is_some_and(|r| moved["resumed_ms"].as_u64().is_some_and(|c| c >= r)));
    // One session moved on a machine with a core to spare goes side by side.
    if std::thread::available_parallelism().map_or(1, |n| n.get()) > 1 {
        assert!(rig.log_text().contains("(side by side)"), "the move was not side by side:\n{}", rig.log_text());
    }
}
