//! The nights nobody watches, end to end: the real `claude-failover run` and
//! real Claude Code 2.1.332 against the fake API when every account is out
//! and one resets as announced, when the server resets a window early, when
//! the active account's login is revoked, and when turns end in API errors.
//! What is checked is what a person finds in the morning: the queue folders,
//! `/status`, `/events`, and which token each request carried.

use kit::accounts::{token, write_credentials};
use kit::fake_api::{unix_now, Mode};
use kit::fake_telegram::{FakeTelegram, TOKEN};
use kit::rig::{stem, Failover as Rig, Options, PROJECT};
use kit::wait_until;
use std::time::Duration;

/// Real Claude Code on a shared 2-core machine: starts take seconds.
const LONG: Duration = Duration::from_secs(120);

/// A one-session failover rig with its daemon started, idle on alpha, both
/// accounts polled.
fn started(options: Options) -> Rig {
    let mut rig = Rig::new(options);
    rig.start_daemon();
    rig.wait_all_idle_on("alpha", LONG);
    rig.wait_polls("alpha", 1, LONG);
    rig.wait_polls("beta", 1, LONG);
    rig
}

fn one_session() -> Options {
    Options { sessions: 1, ..Options::default() }
}

/// `options` with Telegram notices going to `telegram`; the bot token's file
/// lives in `secrets`.
fn with_telegram(mut options: Options, telegram: &FakeTelegram, secrets: &std::path::Path) -> Options {
    let token_file = secrets.join("telegram-token");
    kit::write(&token_file, TOKEN);
    options.more.extend([
        ("notify", "min_interval_secs", 0.into()),
        ("notify.telegram", "bot_token_file", token_file.display().to_string().into()),
        ("notify.telegram", "chat_id", "-100777".into()),
        ("notify.telegram", "api_base", telegram.url().into()),
    ]);
    options
}

/// beta is out for a day (its weekly window full, as the usage endpoint says).
fn beta_out_for_a_day(rig: &Rig) {
    let day = unix_now() + 86_400;
    rig.api.set_mode(&token("beta"), Mode::HardLimit { claim: "seven_day".into(), reset_unix: day });
    wait_until(LONG, "beta seen exhausted", || {
        rig.account_status("beta").filter(|a| a["state"] == "exhausted" && a["eligible"] == false)
    });
}

fn assert_only_done(rig: &Rig, done: &[&str]) {
    assert_eq!(rig.tasks_in("done"), done);
    for folder in ["inbox", "active", "failed"] {
        assert!(rig.tasks_in(folder).is_empty(), "{folder}/: {:?}", rig.tasks_in(folder));
    }
}

#[test]
fn every_account_out_then_one_resets_as_announced_and_the_task_ends_once_there() {
    let _lock = kit::claude_turn();
    let (telegram, secrets) = (FakeTelegram::start(), kit::temp_dir());
    let rig = started(with_telegram(one_session(), &telegram, secrets.path()));
    beta_out_for_a_day(&rig);
    // alpha's next turn meets its weekly limit, announced to reset in 40 s.
    let reset = unix_now() + 40;
    rig.api.set_quota(&token("alpha"), 0, "seven_day", reset);
    rig.drop_task("night.md", "Write the night report");
    wait_until(LONG, "all_accounts_exhausted", || (rig.count_events("all_accounts_exhausted") == 1).then_some(()));
    let exhausted = rig.events().into_iter().find(|e| e["kind"] == "all_accounts_exhausted").unwrap();
    let message = exhausted["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("work is expected to resume around"), "{message}");
    telegram.wait_sent("the exhausted message", LONG, |t| t.contains("All accounts exhausted; work resumes around"));
    rig.drop_task("morning.md", "Write the morning report");

    // The hold is the weekly window's, which ran out: it ends at the
    // announced reset and the interrupted task goes on, on alpha.
    let night = wait_until(LONG, "night.md in done/", || rig.result("night.md"));
    assert_eq!((night["account"].as_str(), night["session"].as_str()), (Some("alpha"), Some("s1")));
    assert!(unix_now() >= reset, "done after the reset, not before");
    let morning = wait_until(LONG, "morning.md in done/", || rig.result("morning.md"));
    assert_eq!(morning["account"], "alpha");
    assert_only_done(&rig, &["morning.md", "night.md"]);
    assert_eq!(rig.count_events("failover_started"), 0, "nowhere to go: no swap");
    assert_eq!(rig.count_events("account_recovered"), 1);
    assert_eq!(rig.count_events("task_done"), 2);
    // The limited turn went out once; then one continuation, naming the
    // task, after the reset; Claude Code's own retry was called off.
    // (Claude Code sends the refused prompt again with the next one, in one
    // user message.)
    let requests = rig.api.requests();
    let continued = |r: &&kit::fake_api::RecordedRequest| r.text.contains("night.md") && r.text.contains("Continue");
    let limited = requests.iter().filter(|r| r.text.contains("Write the night report") && !continued(r)).count();
    let continued = requests.iter().filter(continued).count();
    assert_eq!((limited, continued), (1, 1), "{requests:?}");
    assert!(rig.log_text().contains("cancelling Claude Code's automatic continue"));
    let alpha = rig.account_status("alpha").unwrap();
    assert_eq!((alpha["state"].as_str(), alpha["eligible"].as_bool()), (Some("active"), Some(true)));
}

#[test]
fn a_window_reset_early_is_believed_at_the_next_fresh_reading() {
    let _lock = kit::claude_turn();
    let rig = started(Options { poll_interval_secs: 2, ..one_session() });
    beta_out_for_a_day(&rig);
    // alpha's weekly limit is announced to reset in two days.
    rig.api.set_quota(&token("alpha"), 0, "seven_day", unix_now() + 2 * 86_400);
    rig.drop_task("night.md", "Write the night report");
    wait_until(LONG, "all_accounts_exhausted", || (rig.count_events("all_accounts_exhausted") == 1).then_some(()));
    wait_until(LONG, "the limited turn stopped", || (rig.tasks_in("active") == ["night.md"]).then_some(()));

    // The server resets alpha's window early: a low reading, the next reset
    // a week away. The first poll asked after that ends the hold.
    let calls = rig.usage_calls("alpha");
    rig.api.set_mode(&token("alpha"), Mode::Ok);
    rig.api.set_usage(&token("alpha"), 3.0, 2.0, None);
    rig.api.set_usage_resets(&token("alpha"), None, Some(unix_now() + 7 * 86_400));
    wait_until(LONG, "account_recovered", || (rig.count_events("account_recovered") == 1).then_some(()));
    let polls = rig.usage_calls("alpha") - calls;
    assert!(polls <= 2, "work resumed within two poll intervals, not {polls}");
    let night = wait_until(LONG, "night.md in done/", || rig.result("night.md"));
    assert_eq!(night["account"], "alpha");
    assert_only_done(&rig, &["night.md"]);
    let alpha = rig.account_status("alpha").unwrap();
    assert!(alpha["exhausted_until"].is_null(), "{alpha}");
}

#[test]
fn a_login_revoked_mid_task_moves_the_work_and_asks_a_person_to_log_in() {
    let _lock = kit::claude_turn();
    let (telegram, secrets) = (FakeTelegram::start(), kit::temp_dir());
    let rig = started(with_telegram(one_session(), &telegram, secrets.path()));
    rig.api.set_mode(&token("alpha"), Mode::Unauthorized);
    rig.drop_task("revoked.md", "Write the revoked report");

    let result = wait_until(LONG, "revoked.md in done/ on beta", || rig.result("revoked.md"));
    assert_eq!(result["account"], "beta", "{result}");
    assert!(result["last_assistant_message"].is_string(), "worked on, not called done: {result}");
    assert_only_done(&rig, &["revoked.md"]);
    let alpha = rig.account_status("alpha").unwrap();
    assert_eq!((alpha["state"].as_str(), alpha["eligible"].as_bool()), (Some("token_expired"), Some(false)));
    assert!(alpha["last_error"].as_str().is_some_and(|e| e.contains("revoked")), "{alpha}");
    assert_eq!(rig.count_events("login_revoked"), 1);
    let event = rig.events().into_iter().find(|e| e["kind"] == "login_revoked").unwrap();
    let want = format!("CLAUDE_CONFIG_DIR={} claude", rig.account_dir("alpha").display());
    assert!(event["message"].as_str().is_some_and(|m| m.contains(&want) && m.contains("/login")), "{event}");
    let asked = telegram.wait_sent("a login asked for on Telegram", LONG, |t| t.contains("login revoked"));
    let text = asked["text"].as_str().unwrap_or_default();
    assert!(text.contains("alpha") && text.contains(&want) && text.contains("/login"), "{text}");
    assert_eq!(
        telegram.sent().iter().filter(|m| m["text"].as_str().is_some_and(|t| t.contains("login revoked"))).count(),
        1
    );
    let status = rig.status().unwrap();
    assert_eq!(status["swap"]["last"]["reason"], "login_revoked");
    // The refused turn went out with alpha's token; the continuation with beta's.
    let requests = rig.api.requests();
    assert!(requests.iter().any(|r| r.token == token("alpha") && r.text.contains("Write the revoked report")));
    assert!(requests.iter().any(|r| r.token == token("beta") && r.text.contains("revoked.md")));

    // A person logs in again: alpha is eligible at the next poll and the
    // sessions fail back to it.
    write_credentials(&rig.account_dir("alpha"), &format!("{}-RENEWED", token("alpha")));
    wait_until(LONG, "alpha eligible again", || rig.account_status("alpha").filter(|a| a["eligible"] == true));
    rig.wait_all_idle_on("alpha", LONG);
    assert_eq!(rig.status().unwrap()["swap"]["last"]["reason"], "failback");
}

#[test]
fn turns_ending_in_api_errors_never_finish_their_task() {
    let _lock = kit::claude_turn();
    let options = Options {
        sessions: 1,
        more: vec![("claude.env", "CLAUDE_CODE_MAX_RETRIES", "1".into()), ("dispatch", "max_attempts", 2.into())],
        ..Options::default()
    };
    let rig = started(options);
    // Overload Claude Code gives up on, and a request the API refuses: each
    // attempt fails, and after max_attempts the task fails with the error.
    for (task, mode, error) in
        [("overload.md", Mode::Overloaded, "server_error"), ("invalid.md", Mode::InvalidRequest, "unknown")]
    {
        rig.api.set_mode(&token("alpha"), mode);
        rig.drop_task(task, &format!("Write the {task} report"));
        let failed = wait_until(LONG, &format!("{task} in failed/"), || {
            rig.tasks_in("failed").contains(&task.to_string()).then(|| rig.tasks_in("failed"))
        });
        assert!(failed.contains(&task.to_string()));
        let record = rig.side_json(PROJECT, "failed", &format!("{}.error.json", stem(task)));
        assert_eq!(record["attempts"], 2, "{record}");
        assert!(record["reason"].as_str().is_some_and(|r| r.contains(error)), "{record}");
        assert!(rig.result(task).is_none(), "{task} never in done/");
    }
    // A plain 429 Claude Code gave up on: once the cause is gone, the task
    // is continued (its second attempt) and settles like a fresh one.
    rig.api.set_mode(&token("alpha"), Mode::PlainRateLimit);
    rig.drop_task("busy.md", "Write the busy report");
    wait_until(LONG, "turn_failed for busy.md", || {
        rig.events().into_iter().find(|e| e["kind"] == "turn_failed" && e["task"] == "busy.md")
    });
    rig.api.set_mode(&token("alpha"), Mode::Ok);
    let result = wait_until(LONG, "busy.md in done/", || rig.result("busy.md"));
    assert_eq!(result["attempts"], 2, "{result}");
    assert_eq!(rig.tasks_in("done"), ["busy.md"]);
    assert!(rig.count_events("turn_failed") >= 5, "every failed turn said: {}", rig.count_events("turn_failed"));
}

#[test]
fn twenty_sessions_resume_after_a_wait_spread_over_the_window() {
    // Stand-ins for Claude Code (`dispatch_bench --stand-in` asking the fake
    // API): twenty real ones would not fit this machine at once. What is
    // measured is when their continuations reach the API.
    const SESSIONS: usize = 20;
    const SPREAD: u64 = 10;
    let stand_in = kit::example_binary("dispatch_bench");
    let options = Options {
        accounts: vec!["alpha".into()],
        sessions: SESSIONS,
        more: vec![
            ("claude", "binary", stand_in.display().to_string().into()),
            ("claude", "args", vec!["--stand-in"].into()),
            ("claude.env", "STAND_IN_API", "1".into()),
            ("quota", "resume_spread_secs", (SPREAD as i64).into()),
        ],
        ..Options::default()
    };
    let mut rig = Rig::new(options);
    rig.start_daemon();
    rig.wait_all_idle_on("alpha", LONG);
    // Every session takes a turn that is still out when alpha's limit comes.
    rig.api.set_delay(Duration::from_secs(25));
    for i in 1..=SESSIONS {
        rig.drop_task(&format!("t{i:02}.md"), &format!("+++\nsession = \"s{i}\"\n+++\nWrite report {i:02}\n"));
    }
    wait_until(LONG, "every task handed out", || (rig.count_events("task_dispatched") == SESSIONS).then_some(()));
    // Most turns are out at the API before the limit comes. On a busy
    // machine a stand-in may ask a while after its task was handed out (or
    // not at all, and be repaired): one asking only after the reset is
    // simply not limited, so what is checked below is every limited turn.
    wait_until(LONG, "the turns at the API", || (rig.api.turns_arrived() >= SESSIONS - 2).then_some(()));
    let reset = unix_now() + 35;
    rig.api.set_mode(&token("alpha"), Mode::HardLimit { claim: "five_hour".into(), reset_unix: reset });
    wait_until(LONG, "all_accounts_exhausted", || (rig.count_events("all_accounts_exhausted") == 1).then_some(()));
    rig.api.set_delay(Duration::ZERO);
    wait_until(LONG, "every limited turn answered", || {
        let limited = rig.events().iter().filter(|e| e["kind"] == "task_done").count();
        (limited == 0 && rig.tasks_in("active").len() == SESSIONS).then_some(())
    });

    // After the reset every task goes on, once, and is done.
    let all: Vec<String> = (1..=SESSIONS).map(|i| format!("t{i:02}.md")).collect();
    wait_until(LONG, "every task done", || (rig.tasks_in("done") == all).then_some(()));
    // One continuation after the limit per limited turn (a task repaired
    // for another reason is told of "a restart of the session" instead).
    let limited = rig.api.turns_limited();
    assert!(limited >= SESSIONS - 2, "{limited} of {SESSIONS} turns met the limit");
    let mut continued: Vec<std::time::SystemTime> =
        rig.api.requests().iter().filter(|r| r.text.contains("interrupted by a usage limit")).map(|r| r.at).collect();
    assert_eq!(continued.len(), limited, "one continuation per limited task");
    continued.sort();
    let secs = |d: Duration| d.as_secs_f64();
    let span = secs(continued[continued.len() - 1].duration_since(continued[0]).unwrap());
    assert!(span >= 0.6 * SPREAD as f64, "continuations spread over {span:.1} s, not the {SPREAD} s window");
    let busiest = continued
        .iter()
        .map(|t| continued.iter().filter(|u| **u >= *t && secs(u.duration_since(*t).unwrap()) < 1.0).count())
        .max()
        .unwrap_or(0);
    eprintln!(
        "continuations of {limited} limited sessions: spread over {span:.1} s, at most {busiest} within one second"
    );
    assert!(busiest <= 5, "{busiest} continuations within one second");
    let first = continued[0].duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(first >= reset, "none before the announced reset");
}

#[test]
fn resets_soonest_moves_to_the_account_whose_window_resets_first() {
    let _lock = kit::claude_turn();
    let options = Options {
        accounts: vec!["alpha".into(), "beta".into(), "gamma".into()],
        more: vec![("quota", "prefer", "resets_soonest".into())],
        ..one_session()
    };
    let mut rig = Rig::new(options);
    // beta: roomy, its fullest window the weekly one, resetting in four days;
    // gamma: its fullest the five-hour one (40 %), resetting in twenty minutes.
    rig.api.set_usage(&token("beta"), 5.0, 45.0, None);
    rig.api.set_usage(&token("gamma"), 40.0, 10.0, None);
    rig.api.set_usage_resets(&token("gamma"), Some(unix_now() + 1200), None);
    rig.start_daemon();
    rig.wait_all_idle_on("alpha", LONG);
    for account in ["alpha", "beta", "gamma"] {
        rig.wait_polls(account, 1, LONG);
    }
    rig.api.set_usage(&token("alpha"), 95.0, 20.0, None);
    rig.wait_all_idle_on("gamma", LONG);
    let last = rig.status().unwrap()["swap"]["last"].clone();
    assert_eq!((last["to"].as_str(), last["reason"].as_str()), (Some("gamma"), Some("threshold")), "{last}");
}
