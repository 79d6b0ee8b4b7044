//! A fleet (`[fleet]`) end to end: two daemons, each with its own tmux
//! server, state dir, project and logins, sharing the accounts of one fake
//! API through a real three-member etcd cluster (Debian's `etcd-server`),
//! with real Claude Code 2.1.332 sessions. Each test checks what an operator
//! would: `/status` (and its `fleet` section), `/events`, the fake API's
//! usage calls and what etcd holds.

use kit::accounts::token;
use kit::etcd::{Security, User};
use kit::fake_api::Mode;
use kit::fleet::{clock_ahead, FleetOptions, FleetRig, PREFIX};
use kit::relay::Relay;
use kit::wait_until;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LONG: Duration = Duration::from_secs(120);

fn in_hours(h: u64) -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + h * 3600
}

fn joined(rig: &FleetRig) {
    for h in &rig.hosts {
        h.wait_fleet_state("connected", LONG);
    }
}

#[test]
fn usage_is_polled_once_per_account_per_interval_across_the_fleet() {
    let _lock = kit::claude_turn();
    let mut rig = FleetRig::new(FleetOptions { sessions: 0, poll_interval_secs: 2, ..FleetOptions::default() });
    rig.start_all();
    joined(&rig);
    // One poller per account, the same one on every host.
    let pollers = wait_until(LONG, "every account has a poller", || {
        let p = rig.hosts[0].fleet()?["pollers"].clone();
        (p["alpha"].is_string() && p["beta"].is_string()).then_some(p)
    });
    wait_until(LONG, "both hosts see the same pollers", || (rig.hosts[1].fleet()?["pollers"] == pollers).then_some(()));

    // N polls of alpha take at least N-1 intervals: two hosts polling on
    // their own would make them in half the time. (A bound below only: a
    // slow machine makes it longer, never shorter.)
    let n = 5;
    let start = rig.usage_calls("alpha");
    let t0 = Instant::now();
    wait_until(LONG, "5 more usage polls of alpha", || (rig.usage_calls("alpha") >= start + n).then_some(()));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2 * (n - 1)) - Duration::from_millis(500),
        "{n} polls of alpha in {took:?}: more than one poller per interval"
    );
    // `status --fleet` from either host shows both.
    let out = std::process::Command::new(kit::daemon_binary())
        .args(["status", "--fleet", "--config"])
        .arg(rig.hosts[1].dir.join("config.toml"))
        .output()
        .expect("status --fleet");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("policy shared, etcd connected"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("h1 ")) && text.lines().any(|l| l.starts_with("h2 ")), "{text}");
    // Both hosts know alpha's reading, though only one asked.
    for h in &rig.hosts {
        wait_until(LONG, "alpha's reading on every host", || {
            let s = h.status()?;
            s["accounts"].as_array()?.iter().find(|a| a["name"] == "alpha" && !a["last_poll_at"].is_null()).cloned()
        });
    }
}

#[test]
fn a_hard_limit_on_one_host_moves_the_other_without_meeting_it() {
    let _lock = kit::claude_turn();
    let mut rig = FleetRig::new(FleetOptions::default());
    rig.start_all();
    joined(&rig);
    for h in &rig.hosts {
        h.wait_all_idle_on("alpha", LONG);
    }
    let requests_before = rig.api.requests().len();
    // alpha's next user turn is refused with a five-hour hard limit; only
    // h1 gets work.
    rig.api.set_mode(&token("alpha"), Mode::HardLimit { claim: "five_hour".into(), reset_unix: in_hours(3) });
    rig.hosts[0].drop_task("hit.md", "Work until the limit");
    let result = wait_until(LONG, "hit.md done on beta", || rig.hosts[0].result("hit.md"));
    assert_eq!(result["account"], "beta", "{result}");
    rig.hosts[1].wait_all_idle_on("beta", LONG);

    let h2 = rig.hosts[1].status().unwrap();
    assert_eq!(h2["swap"]["last"]["reason"], "hard_limit", "h2 followed h1's decision: {}", h2["swap"]);
    // Whichever host learnt it first (h1's session, or the poll of alpha)
    // decided for both: one revision of the fleet's active account.
    let h1 = rig.hosts[0].status().unwrap();
    assert_eq!(h2["fleet"]["active"]["account"], "beta");
    assert_eq!(h1["fleet"]["active"]["revision"], h2["fleet"]["active"]["revision"], "one decision");
    // h2's session sent nothing on alpha: every request after the limit was
    // set came from h1's task or went out on beta.
    let after = &rig.api.requests()[requests_before..];
    assert!(
        after.iter().filter(|r| r.token == token("alpha")).all(|r| r.text.contains("Work until the limit")),
        "only h1's task met alpha's limit"
    );
    // No second swap anywhere, a few polls later.
    let polls = rig.usage_calls("beta");
    wait_until(LONG, "3 more polls of beta", || (rig.usage_calls("beta") >= polls + 3).then_some(()));
    for h in &rig.hosts {
        assert_eq!(h.count_events("failover_started"), 1, "{}: one swap", h.name);
        assert_eq!(h.active().as_deref(), Some("beta"));
    }
}

#[test]
fn exclusive_hosts_never_share_an_account_and_a_dead_hosts_account_is_freed() {
    let _lock = kit::claude_turn();
    let mut rig = FleetRig::new(FleetOptions {
        policy: "exclusive".into(),
        accounts: vec!["alpha".into(), "beta".into(), "gamma".into()],
        ..FleetOptions::default()
    });
    rig.hosts[0].start();
    rig.hosts[0].wait_fleet_state("connected", LONG);
    rig.hosts[0].wait_all_idle_on("alpha", LONG);
    rig.hosts[1].start();
    // alpha is h1's: h2 starts on a free account.
    rig.hosts[1].wait_all_idle_on("beta", LONG);

    let distinct = |rig: &FleetRig| {
        let (a, b) = (rig.hosts[0].active(), rig.hosts[1].active());
        assert!(a.is_some() && a != b, "h1 on {a:?}, h2 on {b:?}");
    };
    // Forced swaps back and forth: h1 may never land on h2's account.
    for to in ["gamma", "alpha", "gamma"] {
        let (code, body) = rig.hosts[0].post("/failover", &format!(r#"{{"to":"{to}"}}"#));
        assert_eq!(code, 202, "{body}");
        rig.hosts[0].wait_all_idle_on(to, LONG);
        distinct(&rig);
    }
    // h2's account is taken: asking h1 to go there changes nothing.
    let (code, _) = rig.hosts[0].post("/failover", r#"{"to":"beta"}"#);
    assert_eq!(code, 202);
    wait_until(LONG, "h1 told beta is held", || rig.hosts[0].log_text().contains("beta is held by h2").then_some(()));
    distinct(&rig);
    assert_eq!(rig.hosts[0].active().as_deref(), Some("gamma"));

    // h2 dies: its lease expires and beta is free for h1.
    rig.hosts[1].kill();
    wait_until(LONG, "h2's hold on beta expired", || {
        let holds = rig.hosts[0].fleet()?["holds"].clone();
        (holds.get("beta").is_none()).then_some(())
    });
    assert!(rig.etcd.get_prefix(&format!("{PREFIX}hosts/h2")).is_empty(), "h2's host record expired too");
    let (code, body) = rig.hosts[0].post("/failover", r#"{"to":"beta"}"#);
    assert_eq!(code, 202, "{body}");
    rig.hosts[0].wait_all_idle_on("beta", LONG);
}

#[test]
fn exclusive_a_host_cut_off_past_its_lease_stops_its_turn_before_another_takes_its_account() {
    let _lock = kit::claude_turn();
    let mut rig = FleetRig::new(FleetOptions {
        policy: "exclusive".into(),
        accounts: vec!["alpha".into(), "beta".into(), "gamma".into()],
        ..FleetOptions::default()
    });
    // h1 reaches etcd only through relays the test can cut: a partition
    // between h1 and a cluster that goes on serving h2.
    let relays: Vec<Relay> = rig.etcd.endpoints().iter().map(|e| Relay::start(e)).collect();
    for (e, r) in rig.etcd.endpoints().iter().zip(&relays) {
        rig.hosts[0].config = rig.hosts[0].config.replace(&format!("\"{e}\""), &format!("\"{}\"", r.url()));
    }
    rig.hosts[0].start();
    rig.hosts[0].wait_fleet_state("connected", LONG);
    rig.hosts[0].wait_all_idle_on("alpha", LONG);
    rig.hosts[1].start();
    rig.hosts[1].wait_all_idle_on("beta", LONG);

    // A long turn on h1 (every answer takes 60 s), then the partition.
    rig.api.set_delay(Duration::from_secs(60));
    rig.hosts[0].drop_task("long.md", "A long piece of work on h1");
    let session = wait_until(LONG, "h1's turn under way", || {
        let s = rig.hosts[0].status()?["sessions"][0].clone();
        (s["state"] == "busy" && s["task"] == "long.md").then_some(s)
    });
    let id = session["claude_session_id"].as_str().expect("a conversation id").to_string();
    for r in &relays {
        r.cut();
    }
    rig.hosts[0].wait_fleet_state("fenced", LONG);
    let fenced =
        wait_until(LONG, "fleet_fenced", || rig.hosts[0].events().into_iter().find(|e| e["kind"] == "fleet_fenced"));
    assert_eq!(fenced["why"], "lease", "{fenced}");
    assert_eq!(fenced["account"], "alpha", "{fenced}");
    assert_eq!(fenced["sessions"], serde_json::json!(["h1-s1"]), "{fenced}");
    wait_until(LONG, "h1's turn stopped", || (rig.hosts[0].status()?["sessions"][0]["state"] == "idle").then_some(()));
    rig.api.set_delay(Duration::ZERO);
    let h1_turns = |rig: &FleetRig| rig.api.requests().iter().filter(|r| r.session_id.as_deref() == Some(&id)).count();
    let turns_when_fenced = h1_turns(&rig);

    // h1's hold is gone with its lease: h2 may now take alpha, and does.
    wait_until(LONG, "h1's hold on alpha expired", || {
        rig.hosts[1].fleet()?["holds"].get("alpha").is_none().then_some(())
    });
    let (code, body) = rig.hosts[1].post("/failover", r#"{"to":"alpha"}"#);
    assert_eq!(code, 202, "{body}");
    rig.hosts[1].wait_all_idle_on("alpha", LONG);
    rig.hosts[1].drop_task("h2.md", "Work on h2 while h1 is cut off");
    let result = wait_until(LONG, "h2.md done", || rig.hosts[1].result("h2.md"));
    assert_eq!(result["account"], "alpha");
    // Meanwhile h1 dispatched nothing and called nothing.
    rig.hosts[0].drop_task("queued.md", "Queued on h1 while it is fenced");
    assert_eq!(h1_turns(&rig), turns_when_fenced, "h1 used alpha while fenced");
    let h1 = rig.hosts[0].status().unwrap();
    assert_eq!(h1["fleet"]["state"], "fenced");
    assert!(rig.hosts[0].result("long.md").is_none() && rig.hosts[0].result("queued.md").is_none());

    // The link is back: alpha is h2's, so h1 takes a free account, lifts
    // its fence, and both tasks are done there, once.
    for r in &relays {
        r.heal();
    }
    let unfenced = wait_until(LONG, "fleet_unfenced", || {
        rig.hosts[0].events().into_iter().find(|e| e["kind"] == "fleet_unfenced")
    });
    assert_ne!(unfenced["account"], "alpha", "{unfenced}");
    for task in ["long.md", "queued.md"] {
        let result = wait_until(LONG, &format!("{task} done on h1"), || rig.hosts[0].result(task));
        assert_ne!(result["account"], "alpha", "{task}: {result}");
    }
    let (a, b) = (rig.hosts[0].active(), rig.hosts[1].active());
    assert!(a.is_some() && a != b, "h1 on {a:?}, h2 on {b:?}");
    assert_eq!(rig.hosts[0].count_events("fleet_fenced"), 1);
}

#[test]
fn the_etcd_leader_killed_in_the_middle_of_a_swap_the_swap_completes_once_on_every_host() {
    let _lock = kit::claude_turn();
    let mut rig = FleetRig::new(FleetOptions::default());
    rig.start_all();
    joined(&rig);
    for h in &rig.hosts {
        h.wait_all_idle_on("alpha", LONG);
    }
    // Twice: the leader killed just after h1 decided (the proposal out or
    // the sessions moving), then just before (the proposal meets an
    // election).
    let mut revision = serde_json::Value::Null;
    for (to, kill_first) in [("beta", false), ("alpha", true)] {
        let leader = wait_until(LONG, "an etcd leader", || rig.etcd.leader());
        if kill_first {
            rig.etcd.stop_member(leader);
        }
        let (code, body) = rig.hosts[0].post("/failover", &format!(r#"{{"to":"{to}"}}"#));
        assert_eq!(code, 202, "{body}");
        if !kill_first {
            rig.etcd.stop_member(leader);
        }
        let h1 = rig.hosts[0].status().unwrap();
        assert_eq!(h1["swap"]["in_progress"], true, "the swap had not ended: {}", h1["swap"]);

        // The members left elect a leader; the swap ends on both hosts,
        // which agree on one newer revision of the fleet's account.
        for h in &rig.hosts {
            h.wait_all_idle_on(to, LONG);
            h.wait_fleet_state("connected", LONG);
        }
        let before = revision.as_i64().unwrap_or(0);
        revision = wait_until(LONG, &format!("one revision of {to} on both hosts"), || {
            let (a, b) = (rig.hosts[0].fleet()?, rig.hosts[1].fleet()?);
            (a["active"]["account"] == to && a["active"] == b["active"]).then(|| a["active"]["revision"].clone())
        });
        assert!(revision.as_i64().unwrap_or(0) > before, "{revision}");
        rig.etcd.start_member(leader);
        rig.etcd.wait_healthy();
    }
    // Nothing moves again, a few polls later: each host swapped once each way.
    let polls = rig.usage_calls("alpha");
    wait_until(LONG, "3 more polls of alpha", || (rig.usage_calls("alpha") >= polls + 3).then_some(()));
    for h in &rig.hosts {
        let started: Vec<String> = h
            .events()
            .iter()
            .filter(|e| e["kind"] == "failover_started")
            .map(|e| e["to"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(started, ["beta", "alpha"], "{}: each swap once", h.name);
        assert_eq!(h.count_events("failover_finished"), 2, "{}: each finished", h.name);
        assert_eq!(h.active().as_deref(), Some("alpha"), "{}", h.name);
        assert_eq!(h.fleet().unwrap()["active"]["revision"], revision, "{}: no later decision", h.name);
    }
    let active = rig.etcd.get_prefix(&format!("{PREFIX}active"));
    assert!(active.len() == 1 && active[0].1.contains(r#""account":"alpha""#), "{active:?}");
}

#[test]
fn etcd_gone_hosts_work_on_and_swap_alone_then_converge_without_a_storm() {
    let _lock = kit::claude_turn();
    let mut rig = FleetRig::new(FleetOptions::default());
    rig.start_all();
    joined(&rig);
    for h in &rig.hosts {
        h.wait_all_idle_on("alpha", LONG);
    }
    rig.etcd.stop_all();
    for h in &rig.hosts {
        let fleet = h.wait_fleet_state("unreachable", LONG);
        assert!(fleet["error"].as_str().is_some_and(|e| e.contains("127.0.0.1")), "{fleet}");
        wait_until(LONG, "fleet_unreachable event", || (h.count_events("fleet_unreachable") == 1).then_some(()));
    }
    let metrics = kit::http::request(rig.hosts[0].port, "GET", "/metrics", None, &[]).unwrap().1;
    assert!(metrics.contains("claude_failover_fleet_unreachable_total"), "{metrics}");
    // Work goes on without etcd, and h1 swaps alone on a hard limit.
    rig.api.set_mode(&token("alpha"), Mode::HardLimit { claim: "five_hour".into(), reset_unix: in_hours(3) });
    rig.hosts[0].drop_task("alone.md", "Work while etcd is away");
    let result = wait_until(LONG, "alone.md done", || rig.hosts[0].result("alone.md"));
    assert_eq!(result["account"], "beta");

    rig.etcd.start_all();
    joined(&rig);
    // h1's move becomes the fleet's; h2 follows once; nothing else moves.
    rig.hosts[1].wait_all_idle_on("beta", LONG);
    let polls = rig.usage_calls("beta");
    wait_until(LONG, "3 more polls of beta", || (rig.usage_calls("beta") >= polls + 3).then_some(()));
    for h in &rig.hosts {
        assert_eq!(h.count_events("failover_started"), 1, "{}: one swap each", h.name);
        assert_eq!(h.fleet().unwrap()["active"]["account"], "beta", "{}", h.name);
    }
}

#[test]
fn bad_input_unreachable_endpoints_garbage_under_the_prefix_and_a_wrong_prefix() {
    let _lock = kit::claude_turn();
    let mut rig = FleetRig::new(FleetOptions { sessions: 0, ..FleetOptions::default() });
    // Garbage where the fleet reads: ignored, named once, the rest works.
    rig.etcd.put(&format!("{PREFIX}accounts/alpha"), b"{not json");
    rig.etcd.put(&format!("{PREFIX}holds/beta"), b"\xff\xfe");
    rig.etcd.put(&format!("{PREFIX}something/else"), b"x");
    rig.hosts[0].start();
    rig.hosts[0].wait_fleet_state("connected", LONG);
    let garbage = wait_until(LONG, "three fleet_garbage events", || {
        let e: Vec<_> = rig.hosts[0].events().into_iter().filter(|e| e["kind"] == "fleet_garbage").collect();
        (e.len() == 3).then_some(e)
    });
    let keys: Vec<&str> = garbage.iter().filter_map(|e| e["subject"].as_str()).collect();
    for key in ["accounts/alpha", "holds/beta", "something/else"] {
        assert!(keys.iter().any(|k| k.ends_with(key)), "{key} named: {keys:?}");
    }
    assert_eq!(rig.hosts[0].active().as_deref(), Some("alpha"));

    // h2 with a mistyped prefix is a fleet of its own: /status shows it
    // alone, it polls every account itself, and it touches nothing of h1's.
    let wrong = "/cf-tset/";
    rig.hosts[1].config = rig.hosts[1].config.replace(PREFIX, wrong);
    rig.hosts[1].start();
    let alone = rig.hosts[1].wait_fleet_state("connected", LONG);
    let hosts = |f: &serde_json::Value| -> Vec<String> {
        f["hosts"].as_array().into_iter().flatten().filter_map(|h| h["host"].as_str().map(str::to_string)).collect()
    };
    wait_until(LONG, "h2 sees itself", || (hosts(&rig.hosts[1].fleet()?) == ["h2"]).then_some(()));
    let pollers = wait_until(LONG, "h2 polls every account", || {
        let p = rig.hosts[1].fleet()?["pollers"].clone();
        (p["alpha"] == "h2" && p["beta"] == "h2").then_some(p)
    });
    assert_eq!(alone["policy"], "shared", "{pollers}");
    assert_eq!(hosts(&rig.hosts[0].fleet().unwrap()), ["h1"], "h1 does not see h2");
    let theirs = rig.etcd.get_prefix(PREFIX);
    assert!(theirs.iter().all(|(_, v)| !v.contains(r#""host":"h2""#)), "h2 wrote under h1's prefix: {theirs:?}");
    assert_eq!(rig.hosts[0].count_events("fleet_garbage"), 3, "h2's keys are not h1's garbage");
    rig.hosts[1].kill();

    // A config whose endpoints do not answer: the daemon runs, and says so.
    let dead = format!("http://127.0.0.1:{}", kit::free_port());
    let config = rig.hosts[0].config.replace(&rig.etcd.endpoints()[0], &dead);
    let config = rig.etcd.endpoints()[1..].iter().fold(config, |c, e| c.replace(e, &dead));
    rig.hosts[0].kill();
    rig.hosts[0].config = config;
    rig.hosts[0].start();
    let fleet = rig.hosts[0].wait_fleet_state("unreachable", LONG);
    assert!(fleet["error"].as_str().unwrap_or_default().contains(&dead), "{fleet}");
}

/// h1 forces a failover to `to`; h2 (shared) follows it.
fn a_decision_crosses(rig: &FleetRig, to: &str) {
    let (code, body) = rig.hosts[0].post("/failover", &format!(r#"{{"to":"{to}"}}"#));
    assert_eq!(code, 202, "{body}");
    for h in &rig.hosts {
        wait_until(LONG, &format!("{} on {to}", h.name), || (h.active().as_deref() == Some(to)).then_some(()));
    }
}

/// `config` without the lines setting `keys`.
fn without(config: &str, keys: &[&str]) -> String {
    config.lines().filter(|l| !keys.iter().any(|k| l.starts_with(&format!("{k} =")))).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_fleet_over_tls_with_client_certificates() {
    let _lock = kit::claude_turn();
    let security = Security { tls: true, user: None };
    let mut rig = FleetRig::new(FleetOptions { sessions: 0, security, ..FleetOptions::default() });
    assert!(rig.etcd.endpoints().iter().all(|e| e.starts_with("https://")));
    rig.start_all();
    joined(&rig);
    a_decision_crosses(&rig, "beta");

    // Without its client certificate a host is refused, and says why.
    let config = rig.hosts[1].config.clone();
    rig.hosts[1].kill();
    rig.hosts[1].config = without(&config, &["cert_file", "key_file"]);
    rig.hosts[1].start();
    let fleet = rig.hosts[1].wait_fleet_state("unreachable", LONG);
    let error = fleet["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("https://127.0.0.1:"), "{error}");
    // Trusting other roots (the Mozilla ones): etcd's certificate is refused.
    rig.hosts[1].kill();
    rig.hosts[1].config = without(&config, &["ca_file"]);
    rig.hosts[1].start();
    let fleet = rig.hosts[1].wait_fleet_state("unreachable", LONG);
    let error = fleet["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("certificate") || error.contains("issuer"), "{error}");
    // h1 went on meanwhile.
    assert_eq!(rig.hosts[0].fleet().unwrap()["state"], "connected");
}

#[test]
fn etcd_users_a_host_signs_in_again_after_etcd_forgot_its_token_and_a_wrong_password_is_named() {
    let _lock = kit::claude_turn();
    let user = User { name: "fleet".into(), password: "s3cret-fleet".into(), prefix: PREFIX.into() };
    let security = Security { tls: false, user: Some(user) };
    let mut rig = FleetRig::new(FleetOptions { sessions: 0, security, ..FleetOptions::default() });
    rig.start_all();
    joined(&rig);
    a_decision_crosses(&rig, "beta");

    // etcd restarted: it forgot every token (they live in its memory). The
    // hosts meet "invalid auth token" on rejoining and sign in again.
    rig.etcd.stop_all();
    for h in &rig.hosts {
        h.wait_fleet_state("unreachable", LONG);
    }
    rig.etcd.start_all();
    joined(&rig);
    a_decision_crosses(&rig, "alpha");
    for h in &rig.hosts {
        assert!(h.log_text().contains("signing in again"), "{} signed in again", h.name);
    }

    // A wrong password: named in /status, the password itself nowhere.
    rig.hosts[1].kill();
    std::fs::write(rig.hosts[1].dir.join("etcd-password"), "not-the-password\n").unwrap();
    rig.hosts[1].start();
    let fleet = rig.hosts[1].wait_fleet_state("unreachable", LONG);
    let error = fleet["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains(r#"signing in as "fleet""#) && error.contains("authentication failed"), "{error}");
    assert!(!rig.hosts[1].log_text().contains("not-the-password"));
    // The user may not write outside its prefix: a host on another prefix is refused.
    rig.hosts[1].kill();
    std::fs::write(rig.hosts[1].dir.join("etcd-password"), "s3cret-fleet\n").unwrap();
    rig.hosts[1].config = rig.hosts[1].config.replace(PREFIX, "/elsewhere/");
    rig.hosts[1].start();
    let fleet = rig.hosts[1].wait_fleet_state("unreachable", LONG);
    assert!(fleet["error"].as_str().unwrap_or_default().contains("permission denied"), "{fleet}");
    assert_eq!(rig.hosts[0].fleet().unwrap()["state"], "connected");
}

#[test]
fn a_host_whose_login_of_an_account_is_refused_lets_another_host_poll_it_for_the_fleet() {
    let _lock = kit::claude_turn();
    let mut rig = FleetRig::new(FleetOptions { sessions: 0, ..FleetOptions::default() });
    // h1's own login of alpha is revoked (its own credentials: each host
    // logs in itself); h2's works.
    let dead = "h1-alpha-revoked-token";
    kit::accounts::write_credentials(&rig.hosts[0].dir.join("accounts/alpha"), dead);
    rig.api.set_mode(dead, Mode::Unauthorized);
    rig.hosts[0].start();
    rig.hosts[0].wait_fleet_state("connected", LONG);
    wait_until(LONG, "h1 says its login of alpha was refused", || {
        (rig.hosts[0].count_events("login_revoked") == 1).then_some(())
    });
    wait_until(LONG, "alpha's poll let go", || {
        rig.etcd.get_prefix(&format!("{PREFIX}pollers/alpha")).is_empty().then_some(())
    });
    rig.hosts[1].start();
    let pollers = wait_until(LONG, "h2 polls alpha for the fleet", || {
        let p = rig.hosts[0].fleet()?["pollers"].clone();
        (p["alpha"] == "h2" && p["beta"] == "h1").then_some(p)
    });
    // The fleet's readings of alpha come from h2's login, and reach h1.
    let calls = rig.usage_calls("alpha");
    wait_until(LONG, "two more polls of alpha", || (rig.usage_calls("alpha") >= calls + 2).then_some(()));
    rig.api.set_usage(&token("alpha"), 37.0, 12.0, None);
    wait_until(LONG, "h1 sees h2's reading of alpha", || {
        let status = rig.hosts[0].status()?;
        let alpha = status["accounts"].as_array()?.iter().find(|a| a["name"] == "alpha")?.clone();
        (alpha["five_hour"]["utilization"].as_f64()? == 37.0).then_some(())
    });
    assert_eq!(pollers["beta"], "h1", "h1 still polls what its login can");
    // A person logs h1 in again: its poll works, and h1's login is good again.
    kit::accounts::write_credentials(&rig.hosts[0].dir.join("accounts/alpha"), &token("alpha"));
    wait_until(LONG, "h1's login of alpha works again", || {
        rig.hosts[0].log_text().contains("a poll with its new credentials succeeded").then_some(())
    });
}

#[test]
fn a_host_whose_clock_runs_two_hours_ahead_is_named_and_never_hides_newer_readings() {
    let _lock = kit::claude_turn();
    let mut rig = FleetRig::new(FleetOptions { sessions: 0, ..FleetOptions::default() });
    let utilization = |rig: &FleetRig, account: &str| -> Option<f64> {
        let status = rig.hosts[0].status()?;
        let a = status["accounts"].as_array()?.iter().find(|a| a["name"] == account)?.clone();
        a["five_hour"]["utilization"].as_f64()
    };
    // h2 first, its wall clock two hours ahead: it takes both polls.
    rig.hosts[1].start_with_env(&clock_ahead("+2h"));
    rig.hosts[1].wait_fleet_state("connected", LONG);
    rig.hosts[0].start();
    rig.hosts[0].wait_fleet_state("connected", LONG);
    let h2 = wait_until(LONG, "h1 names h2's clock", || {
        let fleet = rig.hosts[0].fleet()?;
        let h2 = fleet["hosts"].as_array()?.iter().find(|h| h["host"] == "h2")?.clone();
        (fleet["pollers"]["alpha"] == "h2" && h2["clock_skew_secs"].is_i64()).then_some(h2)
    });
    let skew = h2["clock_skew_secs"].as_i64().unwrap();
    assert!((7100..=7300).contains(&skew), "{h2}");
    assert!(rig.hosts[0].log_text().contains("h2's clock is"), "a warning names it");
    // Its readings reach h1 all the same...
    rig.api.set_usage(&token("alpha"), 40.0, 10.0, None);
    wait_until(LONG, "h1 sees h2's reading", || (utilization(&rig, "alpha")? == 40.0).then_some(()));
    // ...and, stamped two hours later, do not hide the readings after them.
    rig.hosts[1].kill();
    wait_until(LONG, "h1 polls alpha itself", || (rig.hosts[0].fleet()?["pollers"]["alpha"] == "h1").then_some(()));
    rig.api.set_usage(&token("alpha"), 55.0, 10.0, None);
    wait_until(LONG, "h1 takes its own newer reading", || (utilization(&rig, "alpha")? == 55.0).then_some(()));
}

#[test]
fn exclusive_three_hosts_two_accounts_the_third_waits_then_works_on_a_dead_hosts_account() {
    let _lock = kit::claude_turn();
    let mut rig = FleetRig::new(FleetOptions {
        hosts: vec!["h1".into(), "h2".into(), "h3".into()],
        policy: "exclusive".into(),
        ..FleetOptions::default()
    });
    rig.hosts[0].start();
    rig.hosts[0].wait_all_idle_on("alpha", LONG);
    rig.hosts[1].start();
    rig.hosts[1].wait_all_idle_on("beta", LONG);
    // No account is free for h3: it joins, holds nothing, launches nothing,
    // and a task dropped there waits in its inbox.
    rig.hosts[2].start();
    rig.hosts[2].wait_fleet_state("connected", LONG);
    rig.hosts[2].drop_task("waits.md", "Work for h3 once it holds an account");
    let holds = wait_until(LONG, "h3 sees both holds", || {
        let holds = rig.hosts[2].fleet()?["holds"].clone();
        (holds["alpha"] == "h1" && holds["beta"] == "h2").then_some(holds)
    });
    let h3 = rig.hosts[2].status().unwrap();
    assert!(h3["sessions"][0]["account"].is_null(), "h3 launched nothing: {h3}");
    assert!(rig.hosts[2].result("waits.md").is_none(), "{holds}");

    // h1 dies: its lease expires, h3 takes alpha (and only alpha), launches
    // its session there and does the task; h2 stays on beta.
    rig.hosts[0].kill();
    let result = wait_until(LONG, "waits.md done on h3", || rig.hosts[2].result("waits.md"));
    assert_eq!(result["account"], "alpha");
    let holds = rig.hosts[1].fleet().unwrap()["holds"].clone();
    assert_eq!((holds["alpha"].as_str(), holds["beta"].as_str()), (Some("h3"), Some("h2")), "{holds}");
    assert_eq!(rig.hosts[1].active().as_deref(), Some("beta"));
    assert_eq!(rig.hosts[2].count_events("failover_started"), 0, "h3 started on alpha, nothing moved");
}
