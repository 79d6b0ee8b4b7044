//! The paid fallback end to end: the real `claude-failover run` and real
//! Claude Code 2.1.332 against the fake API, with two subscriptions and an
//! `api_key` account. Both subscriptions out: the sessions move onto the key
//! and work there with it (`x-api-key`, no login, no "use this API key?"
//! dialog left waiting); what the answers used is priced and shown in
//! `/status`; the day's cap stops the work there; a subscription back moves
//! the sessions back to it.

use kit::accounts::token;
use kit::fake_api::{unix_now, AnswerUsage, Mode};
use kit::rig::{ApiKeyAccount, Failover as Rig, Options};
use kit::wait_until;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);
const KEY: &str = "sk-ant-api03-TESTe2epaidkeyabcdefghijklmnop-0123456789-KEYE2E-AA";
/// Per answer: 1000 input and 1000 output tokens of claude-opus-5-5 at 15
/// and 75 USD per million = 0.09 USD.
const PER_ANSWER: f64 = 0.09;

fn spend(rig: &Rig) -> Option<(f64, f64)> {
    let paid = rig.account_status("paid")?;
    Some((paid["spend"]["spent_usd"].as_f64()?, paid["spend"]["cap_usd"].as_f64()?))
}

/// What the answers to the key written into transcripts cost.
fn priced_answers(rig: &Rig) -> f64 {
    rig.api.answered().iter().filter(|a| a.token == KEY && a.conversation).count() as f64 * PER_ANSWER
}

#[test]
fn the_key_works_only_while_both_subscriptions_are_out_is_capped_and_gives_way_to_a_returning_one() {
    let _lock = kit::claude_turn();
    let price = |k: &'static str, v: f64| ("quota.prices.\"claude-opus-5-5\"", k, v.into());
    let options = Options {
        sessions: 1,
        api_key: Some(ApiKeyAccount { name: "paid".into(), key: KEY.into(), max_spend_usd_per_day: 0.15 }),
        more: vec![price("input", 15.0), price("output", 75.0), price("cache_write", 18.75), price("cache_read", 1.5)],
        ..Options::default()
    };
    let mut rig = Rig::new(options);
    rig.api.set_answer_usage(
        KEY,
        AnswerUsage { model: Some("claude-opus-5-5".into()), input: 1000, output: 1000, cache_write: 0, cache_read: 0 },
    );
    rig.start_daemon();
    rig.wait_all_idle_on("alpha", LONG);
    rig.wait_polls("alpha", 1, LONG);
    rig.wait_polls("beta", 1, LONG);
    let paid = rig.account_status("paid").unwrap();
    assert_eq!((paid["kind"].as_str(), paid["state"].as_str()), (Some("api_key"), Some("standby")), "{paid}");
    assert_eq!(spend(&rig), Some((0.0, 0.15)));

    // One subscription out: the other takes over, the key does not.
    let day = unix_now() + 86_400;
    rig.api.set_mode(&token("alpha"), Mode::HardLimit { claim: "seven_day".into(), reset_unix: day });
    rig.wait_all_idle_on("beta", LONG);
    // Both out: the key.
    rig.api.set_mode(&token("beta"), Mode::HardLimit { claim: "seven_day".into(), reset_unix: day });
    rig.wait_all_idle_on("paid", LONG);
    let status = rig.status().unwrap();
    assert_eq!(status["swap"]["last"]["to"], "paid");
    assert_eq!(rig.count_events("all_accounts_exhausted"), 0, "the key was a way out");

    // A task done there, with the key and no login.
    rig.drop_task("paid1.md", "Write the first paid report");
    let result = wait_until(LONG, "paid1.md in done/", || rig.result("paid1.md"));
    assert_eq!(result["account"], "paid", "{result}");
    let requests = rig.api.requests();
    let turn = requests.iter().find(|r| r.text.contains("first paid report")).expect("the task reached the API");
    assert!(turn.api_key && turn.token == KEY, "sent with the key in x-api-key: {turn:?}");
    let state = std::fs::read_to_string(rig.account_dir("paid").join(".claude.json")).unwrap();
    assert!(state.contains("0123456789-KEYE2E-AA") && !state.contains(KEY), "the key's tail approved, never the key");
    assert!(!rig.screen("s1").contains("Detected a custom API key"));
    let (spent, cap) = wait_until(LONG, "the answer's spend counted", || {
        spend(&rig).filter(|(s, _)| *s > 0.0 && (*s - priced_answers(&rig)).abs() < 1e-9)
    });
    assert!(spent < cap, "{spent} of {cap}");

    // The next turn crosses the cap: the key is out until the next UTC day,
    // and with it every account.
    rig.drop_task("paid2.md", "Write the second paid report");
    let result = wait_until(LONG, "paid2.md in done/", || rig.result("paid2.md"));
    assert_eq!(result["account"], "paid", "the turn that crossed the cap finished");
    wait_until(LONG, "spend_cap_reached", || (rig.count_events("spend_cap_reached") == 1).then_some(()));
    let paid =
        wait_until(LONG, "the key exhausted", || rig.account_status("paid").filter(|a| a["state"] == "exhausted"));
    assert_eq!(paid["eligible"], false);
    assert!(paid["spend"]["spent_usd"].as_f64().unwrap() >= 0.15, "{paid}");
    let tomorrow = paid["exhausted_until"].as_str().unwrap_or_default().to_string();
    assert!(tomorrow.ends_with("T00:00:00Z"), "out until the next UTC midnight: {tomorrow}");
    wait_until(LONG, "all_accounts_exhausted", || (rig.count_events("all_accounts_exhausted") == 1).then_some(()));
    let metrics = rig.http("GET", "/metrics", None).unwrap().1;
    assert!(metrics.contains("claude_failover_spend_usd{account=\"paid\"}"), "{metrics}");
    assert!(metrics.contains("claude_failover_spend_cap_usd{account=\"paid\"} 0.15"), "{metrics}");

    // A subscription back (the server says its window reset): the sessions
    // go back to it, and the work waiting meanwhile is done there.
    rig.drop_task("after.md", "Write the morning report");
    rig.api.set_mode(&token("alpha"), Mode::Ok);
    rig.api.set_usage(&token("alpha"), 3.0, 2.0, None);
    rig.api.set_usage_resets(&token("alpha"), None, Some(unix_now() + 7 * 86_400));
    let result = wait_until(LONG, "after.md in done/", || rig.result("after.md"));
    assert_eq!(result["account"], "alpha", "{result}");
    let status = rig.status().unwrap();
    assert_eq!(status["active_account"], "alpha");
    assert_eq!(status["swap"]["last"]["reason"], "back_to_subscription");
    let morning: Vec<String> =
        rig.api.requests().iter().filter(|r| r.text.contains("morning report")).map(|r| r.token.clone()).collect();
    assert!(
        !morning.is_empty() && morning.iter().all(|t| *t == token("alpha")),
        "never sent with the key: {morning:?}"
    );
    rig.stop_daemon();
}
