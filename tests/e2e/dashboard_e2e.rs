//! The dashboard in a real browser (docs/dashboard.md): Debian's headless
//! Chromium, driven over the DevTools protocol by puppeteer-core (`make
//! browser` installs both), loads the page from a daemon running two real
//! Claude Code sessions against the fake API. Without a token it shows only
//! the prompt; a wrong token is refused; with the right one each account,
//! session and queue shows the daemon's values (failed task reasons too); a
//! failover clicked in the page (behind its confirmation) runs, and the live
//! feed gains its events without a reload. Screenshots at desktop and phone
//! widths land in `target/dashboard-screenshots/` (copies in docs/images/).

use kit::accounts::token;
use kit::rig::Rig;
use kit::{repo_root, temp_dir, wait_until};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "tok-dashboard-e2e-5b1d";
/// Claude Code sessions start in about 8 s alone; more on a loaded machine.
const START: Duration = Duration::from_secs(150);

fn chromium() -> std::path::PathBuf {
    let p = std::path::PathBuf::from("/usr/bin/chromium");
    assert!(p.exists(), "Debian's chromium is not installed: run `make browser` (make test does)");
    p
}

fn puppeteer() -> std::path::PathBuf {
    let p = repo_root().join("build/browser/node_modules/puppeteer-core");
    assert!(p.join("package.json").exists(), "puppeteer-core is not in {}: run `make browser`", p.display());
    p
}

#[test]
fn the_page_shows_the_pool_and_a_click_fails_over_with_the_feed_live() {
    let _turn = kit::claude_turn();
    let tokens = temp_dir();
    let token_file = tokens.path().join("token");
    kit::write(&token_file, TOKEN);
    let rig = Rig::builder(&["proj"], &[("s1", "proj"), ("s2", "proj")])
        .set("http", "token_file", token_file.display().to_string())
        .set("quota", "poll_interval_secs", 2)
        .set("quota", "min_dwell_secs", 0)
        .set("quota", "failback", false)
        .set("claude", "stop_timeout_secs", 10)
        .setup()
        .build();
    rig.api.set_usage(&token("alpha"), 42.0, 17.0, None);
    rig.api.set_usage(&token("beta"), 8.0, 3.0, None);
    // The readings a previous run kept (history.json): two and a half hours
    // of alpha rising to 40 %, beta flat, every three minutes.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let ramp = |to: f64, weekly: f64| -> Vec<Value> {
        (0..50).map(|i| serde_json::json!([now - 9000 + i * 180, to * (i as f64 + 1.0) / 50.0, weekly, null])).collect()
    };
    std::fs::create_dir_all(rig.state_dir()).unwrap();
    let kept = serde_json::json!({"version": 1, "accounts": {"alpha": ramp(40.0, 15.0), "beta": ramp(7.0, 3.0)}});
    kit::write(&rig.state_dir().join("history.json"), &kept.to_string());
    let _daemon = rig.start();
    // An empty task: the inbox scan moves it to failed/ with its reason.
    rig.drop_task("proj", "empty.md", "");
    let auth = format!("Bearer {TOKEN}");
    let status = || -> Option<Value> {
        let (code, body) = kit::http::request(rig.port, "GET", "/status", None, &[("Authorization", &auth)]).ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    };
    wait_until(START, "both sessions idle on alpha, both accounts polled, a task failed", || {
        let s = status()?;
        let idle = s["sessions"].as_array()?.iter().all(|x| x["state"] == "idle" && x["account"] == "alpha");
        let polled = s["accounts"].as_array()?.iter().all(|a| !a["last_poll_at"].is_null());
        (idle && polled && s["queues"][0]["failed"] == 1).then_some(())
    });
    let before = status().expect("status");

    let out = repo_root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&out).unwrap();
    let profile = temp_dir();
    let args = serde_json::json!({
        "url": format!("http://127.0.0.1:{}/", rig.port),
        "token": TOKEN,
        "failover_to": "beta",
        "out": out,
        "profile": profile.path(),
        "chromium": chromium(),
        "puppeteer": puppeteer(),
    });
    let run = Command::new("node")
        .arg(repo_root().join("tests/e2e/dashboard_browser.cjs"))
        .arg(args.to_string())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "the browser script failed:\n{}\n{stdout}", String::from_utf8_lossy(&run.stderr));
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("its JSON line");

    // Without the token: the prompt only.
    let none = &seen["no_token"];
    assert_eq!((&none["dash_hidden"], &none["login_shown"]), (&Value::Bool(true), &Value::Bool(true)), "{none}");
    assert_eq!((none["accounts"].as_u64(), none["sessions"].as_u64()), (Some(0), Some(0)));
    let visible = none["visible_text"].as_str().unwrap();
    for word in ["alpha", "beta", "s1", "proj"] {
        assert!(!visible.contains(word), "{word:?} shown without the token: {visible}");
    }
    // A wrong token is refused.
    assert!(seen["wrong_token"]["error"].as_str().unwrap().contains("refused"), "{}", seen["wrong_token"]);
    assert_eq!(seen["wrong_token"]["dash_hidden"], true);

    // With the token: the daemon's values.
    let shown = &seen["before"];
    assert_eq!(shown["active"], "alpha");
    for a in before["accounts"].as_array().unwrap() {
        let name = a["name"].as_str().unwrap();
        let card = shown["accounts"].as_array().unwrap().iter().find(|c| c["name"] == name).expect(name);
        let pct = |w: &Value| format!("{}%", w["utilization"].as_f64().unwrap());
        assert_eq!(card["five_hour"], pct(&a["five_hour"]), "{name}: {card}");
        assert_eq!(card["weekly"], pct(&a["seven_day"]), "{name}: {card}");
        let state = if name == "alpha" { "active" } else { "standby" };
        assert_eq!(card["state"], state, "{name}");
        assert_eq!(card["threshold_line"], true);
        // The kept readings and this run's.
        assert!(card["chart_points"].as_u64().unwrap() > 50, "{name}: a chart with readings: {card}");
    }
    for s in before["sessions"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let card = shown["sessions"].as_array().unwrap().iter().find(|c| c["name"] == name).expect(name);
        assert_eq!(
            (&card["state"], &card["account"], &card["task"]),
            (&"idle".into(), &"alpha".into(), &"none".into())
        );
    }
    let q = &shown["queues"][0];
    assert_eq!((&q["project"], &q["inbox"], &q["failed"]), (&"proj".into(), &0.into(), &1.into()), "{q}");
    let failed = &shown["failed"][0];
    assert_eq!(failed["task"], "empty.md", "{failed}");
    assert!(failed["reason"].as_str().unwrap().contains("no text"), "{failed}");
    assert!(shown["events"].as_array().unwrap().iter().any(|k| k == "daemon_started"), "{shown}");

    // The failover clicked in the page.
    assert!(seen["confirm_text"].as_str().unwrap().contains("beta"), "{}", seen["confirm_text"]);
    let after = &seen["after"];
    assert_eq!(after["active"], "beta");
    let kinds: Vec<&str> = after["events"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(kinds.contains(&"failover_started") && kinds.contains(&"failover_finished"), "{kinds:?}");
    assert!(after["sessions"].as_array().unwrap().iter().all(|s| s["account"] == "beta"), "{after}");
    assert_eq!(after["swaps"][0], "manual");
    assert_eq!(seen["reloads"], 0, "the feed grew without a reload");
    assert_eq!(seen["token_in_page"], false);
    // The refused reads without and with a wrong token log their 401s; nothing else may.
    let errors: Vec<&Value> =
        seen["console"].as_array().unwrap().iter().filter(|e| !e.as_str().unwrap().contains("status of 401")).collect();
    assert!(errors.is_empty(), "errors in the page: {errors:?}");
    let status = status().unwrap();
    assert_eq!(status["swap"]["last"]["reason"], "manual");
    assert_eq!(status["active_account"], "beta");
    for shot in ["dashboard-desktop.png", "dashboard-phone.png"] {
        assert!(std::fs::metadata(out.join(shot)).is_ok_and(|m| m.len() > 10_000), "{shot}");
    }
    assert!(!rig.log_text().contains(TOKEN));
}
