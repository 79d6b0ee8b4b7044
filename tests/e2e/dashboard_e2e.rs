//! The dashboard in a real browser (docs/dashboard.md): Debian's headless
//! Chromium, driven over the DevTools protocol by puppeteer-core (`make
//! browser` installs both), loads the page from a daemon running two real
//! Claude Code sessions against the fake API. Without a token it shows only
//! the prompt; a wrong token is refused; with the right one each account,
//! session and queue shows the daemon's values (failed task reasons too); a
//! failover clicked in the page (behind its confirmation) runs, and the live
//! feed gains its events without a reload. Readings rising over more than a
//! minute draw the projected crossing on the chart. A session stopped on a
//! permission prompt (manual permission mode, a scripted Bash `tool_use`)
//! shows its question. Screenshots at desktop and phone widths land in
//! `target/dashboard-screenshots/` (copies in docs/images/).

use kit::accounts::token;
use kit::rig::Rig;
use kit::{repo_root, temp_dir, wait_until};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
        .set("claude", "args", vec!["--permission-mode", "default"])
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
    // Alpha's readings rise one point every 6 s until the daemon has a burn
    // rate (readings over at least a minute), then stay.
    let rising = Instant::now();
    let alpha = |s: &Value| s["accounts"].as_array().and_then(|a| a.iter().find(|a| a["name"] == "alpha")).cloned();
    let reached =
        wait_until(START, "both sessions idle on alpha, both accounts polled, a task failed, a burn rate", || {
            let reading = 40.0 + (rising.elapsed().as_secs() / 6) as f64;
            rig.api.set_usage(&token("alpha"), reading, 17.0, None);
            let s = status()?;
            let idle = s["sessions"].as_array()?.iter().all(|x| x["state"] == "idle" && x["account"] == "alpha");
            let polled = s["accounts"].as_array()?.iter().all(|a| !a["last_poll_at"].is_null());
            let burning = alpha(&s)?["burn_rate_per_hour"].as_f64().is_some_and(|r| r > 0.0);
            (idle && polled && burning && s["queues"][0]["failed"] == 1).then_some(reading)
        });
    let before = wait_until(START, "the last rising reading polled", || {
        let s = status()?;
        (alpha(&s)?["five_hour"]["utilization"].as_f64() == Some(reached)).then_some(s)
    });

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
    let mut node = Command::new("node")
        .arg(repo_root().join("tests/e2e/dashboard_browser.cjs"))
        .arg(args.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    // After the failover the script says `question?` and waits; a task then
    // stops a session on a permission prompt, and the script is told to look.
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    for line in lines.by_ref() {
        let line = line.expect("the script's stdout");
        if line == "question?" {
            let marker = rig.project("proj").join("marker");
            rig.api.push_tool_use(&format!("touch {} && echo made", marker.display()));
            rig.drop_task("proj", "ask.md", "Create the marker");
            wait_until(START, "a session waiting on the question", || {
                let s = status()?;
                s["sessions"]
                    .as_array()?
                    .iter()
                    .any(|x| x["state"] == "waiting" && !x["question"].is_null())
                    .then_some(())
            });
            // Closed after the line, or node's open stdin keeps it alive at the end.
            let mut go = node.stdin.take().expect("the script's stdin");
            writeln!(go, "look").expect("tell the script");
        } else {
            stdout.push_str(&line);
            stdout.push('\n');
        }
    }
    let run = node.wait_with_output().expect("wait for node");
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
        if name == "alpha" {
            assert_eq!(card["projection_line"], true, "{name}: rising readings, a projection: {card}");
            let note = card["projection"].as_str().unwrap();
            assert!(note.starts_with("crosses ") && note.contains("/h"), "{name}: {note}");
        } else {
            assert_eq!(card["projection_line"], false, "{name}: flat readings, no projection: {card}");
        }
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

    // The waiting session's question, as the daemon read it off the screen.
    let waiting = status["sessions"].as_array().unwrap().iter().find(|s| s["state"] == "waiting").expect("waiting");
    let name = waiting["name"].as_str().unwrap();
    let card = seen["question"]["sessions"].as_array().unwrap().iter().find(|c| c["name"] == name).expect(name);
    assert_eq!((&card["state"], &card["task"]), (&"waiting".into(), &"ask.md".into()), "{card}");
    let q = &waiting["question"];
    let shown = card["question"].as_str().unwrap();
    assert!(shown.contains(q["prompt"].as_str().unwrap()) && shown.contains("Do you want to proceed?"), "{shown}");
    assert!(shown.contains(&format!("touch {}", rig.project("proj").join("marker").display())), "{shown}");
    let options: Vec<&str> = q["options"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(card["options"], serde_json::json!(options), "{card}");
    assert!(options.first() == Some(&"Yes") && options.contains(&"No"), "{options:?}");
    for other in seen["question"]["sessions"].as_array().unwrap().iter().filter(|c| c["name"] != name) {
        assert!(other["question"].is_null(), "only the waiting session shows a question: {other}");
    }
    for shot in ["dashboard-desktop.png", "dashboard-phone.png"] {
        assert!(std::fs::metadata(out.join(shot)).is_ok_and(|m| m.len() > 10_000), "{shot}");
    }
    assert!(!rig.log_text().contains(TOKEN));
}
