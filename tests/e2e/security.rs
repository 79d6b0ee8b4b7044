//! Security checks against the real binary: the control plane refuses
//! unauthenticated writes, a network-facing control plane without a token is
//! refused at config time, task text never reaches a shell, and no secret
//! (control token, OAuth tokens, Telegram bot token) shows up in logs,
//! answers or events. (Links out of an inbox: tests/corpus.rs.)

use kit::daemon::{config_text, Daemon};
use kit::free_port;
use kit::{daemon_binary, temp_dir, wait_until, write};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CONTROL_TOKEN: &str = "ctl-SECRET-7f3a9c";

fn status_of(d: &Daemon, auth: &str) -> Value {
    let (code, body) = d.request("GET", "/status", None, &[("Authorization", auth)]).unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn every_write_without_the_right_token_is_401_and_changes_nothing() {
    let dir = temp_dir();
    write(&dir.path().join("token"), &format!("{CONTROL_TOKEN}\n"));
    let port = free_port();
    let extra = format!("token_file = \"{}/token\"", dir.path().display());
    let d = Daemon::start(dir.path(), &config_text(dir.path(), port, &extra), port, &[]);
    let good = format!("Bearer {CONTROL_TOKEN}");
    let before = status_of(&d, &good);
    let wrong_len = format!("Bearer {CONTROL_TOKEN}x");
    let prefix = format!("Bearer {}", &CONTROL_TOKEN[..CONTROL_TOKEN.len() - 1]);
    let basic = format!("Basic {CONTROL_TOKEN}");
    let bare = CONTROL_TOKEN.to_string();
    let no_auth: Vec<(&str, &str)> = vec![];
    let headers: Vec<Vec<(&str, &str)>> = vec![
        no_auth,
        vec![("Authorization", "Bearer ")],
        vec![("Authorization", "Bearer wrong-token")],
        vec![("Authorization", wrong_len.as_str())],
        vec![("Authorization", prefix.as_str())],
        vec![("Authorization", basic.as_str())],
        vec![("Authorization", bare.as_str())],
        vec![("X-Token", CONTROL_TOKEN)],
    ];
    let writes = [
        ("/failover", "{}"),
        ("/failover", r#"{"to":"beta"}"#),
        ("/dispatch/pause", "{}"),
        ("/dispatch/resume", "{}"),
        ("/sessions/any/restart", "{}"),
        (&*format!("/failover?token={CONTROL_TOKEN}"), "{}"),
    ];
    for (path, body) in writes {
        for h in &headers {
            let mut h = h.clone();
            h.push(kit::http::JSON);
            let (code, text) = d.request("POST", path, Some(body), &h).unwrap();
            assert_eq!(code, 401, "POST {path} with {h:?}: {text}");
            assert!(!text.contains(CONTROL_TOKEN));
        }
    }
    // Reads are guarded too, healthz is not.
    assert_eq!(d.get("/status").unwrap().0, 401);
    assert_eq!(d.get("/events?since=0").unwrap().0, 401);
    assert_eq!(d.get("/healthz").unwrap().0, 200);
    let after = status_of(&d, &good);
    assert_eq!(after["dispatch_paused"], false);
    assert_eq!(after["active_account"], before["active_account"]);
    assert_eq!(after["swap"], before["swap"]);
    let (_, events) = d.request("GET", "/events?since=0", None, &[("Authorization", &good)]).unwrap();
    assert!(!events.contains("failover_"), "{events}");
    assert!(!d.log_text().contains(CONTROL_TOKEN));
}

#[test]
fn a_control_plane_open_to_the_network_without_a_token_is_refused() {
    let dir = temp_dir();
    for listen in ["0.0.0.0", "[::]"] {
        let port = free_port();
        let text = config_text(dir.path(), port, "").replace(&format!("127.0.0.1:{port}"), &format!("{listen}:{port}"));
        let path = dir.path().join("open.toml");
        std::fs::write(&path, &text).unwrap();
        for cmd in ["check-config", "run"] {
            let out = std::process::Command::new(daemon_binary()).args([cmd, "--config"]).arg(&path).output().unwrap();
            assert_eq!(out.status.code(), Some(78), "{cmd} {listen}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("http.listen") && err.contains("without auth"), "{cmd} {listen}: {err}");
        }
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "{listen}: something listens");
    }
    // With a token the same address is accepted.
    write(&dir.path().join("token"), "t0ken\n");
    let text = config_text(dir.path(), 1, &format!("token_file = \"{}/token\"", dir.path().display()))
        .replace("127.0.0.1:1", "0.0.0.0:8787");
    let path = dir.path().join("closed.toml");
    std::fs::write(&path, text).unwrap();
    let out =
        std::process::Command::new(daemon_binary()).args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A loopback stand-in for api.telegram.org: records every request line and body.
struct FakeTelegram {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    server: Arc<tiny_http::Server>,
}

impl FakeTelegram {
    fn start() -> FakeTelegram {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, log) = (server.clone(), seen.clone());
        std::thread::spawn(move || {
            while let Ok(mut r) = s.recv() {
                let mut body = String::new();
                let _ = r.as_reader().read_to_string(&mut body);
                log.lock().unwrap().push(format!("{} {} {body}", r.method(), r.url()));
                let _ = r.respond(tiny_http::Response::from_string(r#"{"ok":true,"result":{}}"#));
            }
        });
        FakeTelegram { url, seen, server }
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

#[test]
fn no_secret_reaches_logs_answers_or_events() {
    let api = kit::fake_api::FakeApi::start();
    let telegram = FakeTelegram::start();
    let dir = temp_dir();
    let port = free_port();
    let bot_token = "123456:BOT-SECRET-q9w8e7";
    write(&dir.path().join("token"), &format!("{CONTROL_TOKEN}\n"));
    write(&dir.path().join("bot-token"), &format!("{bot_token}\n"));
    let alpha = kit::accounts::create(&dir.path().join("accounts"), "alpha", &[]);
    let beta = kit::accounts::create(&dir.path().join("accounts"), "beta", &[]);
    // Secrets of the accounts: access and refresh tokens in .credentials.json.
    let oauth: Vec<String> = [&alpha, &beta]
        .iter()
        .flat_map(|a| {
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(a.dir.join(".credentials.json")).unwrap()).unwrap();
            ["accessToken", "refreshToken"].map(|k| v["claudeAiOauth"][k].as_str().unwrap().to_string())
        })
        .collect();
    api.set_usage(&alpha.token, 20.0, 10.0, None);
    api.set_usage(&beta.token, 5.0, 5.0, None);
    let text = kit::ConfigBuilder::new()
        .set("", "state_dir", dir.path().join("state").display().to_string())
        .set("claude", "shared_projects_dir", format!("{}/shared", dir.path().display()))
        .set("tmux", "socket_name", kit::unique_name("cf-sec"))
        .set("quota", "usage_url", format!("{}/api/oauth/usage", api.url()))
        .set("http", "listen", format!("127.0.0.1:{port}"))
        .set("http", "token_file", format!("{}/token", dir.path().display()))
        .set("notify", "min_interval_secs", 1)
        .set("notify.telegram", "bot_token_file", format!("{}/bot-token", dir.path().display()))
        .set("notify.telegram", "chat_id", "-100123")
        .set("notify.telegram", "api_base", telegram.url.clone())
        .account("alpha", &alpha.dir)
        .account("beta", &beta.dir)
        .render();
    let d = Daemon::start(dir.path(), &text, port, &[]);
    let auth = format!("Bearer {CONTROL_TOKEN}");
    let with = [("Authorization", auth.as_str()), kit::http::JSON];
    let mut bodies = Vec::new();
    let mut call = |method: &str, path: &str, body: Option<&str>, h: &[(&str, &str)]| {
        let (code, text) = d.request(method, path, body, h).unwrap();
        bodies.push(format!("{method} {path} -> {code} {text}"));
        (code, text)
    };
    wait_until(Duration::from_secs(15), "both accounts polled", || {
        let (_, s) = d.request("GET", "/status", None, &with).ok()?;
        let v: Value = serde_json::from_str(&s).ok()?;
        v["accounts"]
            .as_array()?
            .iter()
            .all(|a| !a["last_poll_at"].is_null() || a["last_error"].is_string())
            .then_some(())
    });
    call("GET", "/status", None, &with);
    call("GET", "/metrics", None, &with);
    call("GET", "/status", None, &[("Authorization", "Bearer wrong")]);
    call("POST", "/failover", Some("{}"), &[kit::http::JSON]);
    call("POST", "/failover", Some(r#"{"to":"nobody"}"#), &with);
    call("POST", "/dispatch/pause", Some("{}"), &with);
    call("POST", "/dispatch/resume", Some("{}"), &with);
    // A bad reload whose problems concern the token files.
    std::fs::write(
        &d.config,
        text.replace("token\"\n", "no-such-token\"\n").replace("[notify]", "bogus = 1\n[notify]"),
    )
    .unwrap();
    d.signal("HUP");
    wait_until(Duration::from_secs(10), "config_rejected", || {
        let (_, e) = d.request("GET", "/events?since=0", None, &with).ok()?;
        e.contains("config_rejected").then_some(())
    });
    // A failover (events go to Telegram).
    call("POST", "/failover", Some(r#"{"to":"beta"}"#), &with);
    wait_until(Duration::from_secs(10), "a message at the fake Telegram", || {
        (!telegram.seen.lock().unwrap().is_empty()).then_some(())
    });
    let (_, events) = call("GET", "/events?since=0", None, &with);
    call("GET", "/status", None, &with);
    let captured = [bodies.join("\n"), events, d.log_text()];
    let mut secrets = vec![CONTROL_TOKEN.to_string(), bot_token.to_string()];
    secrets.extend(oauth);
    for text in &captured {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret ({}...) leaked into:\n{text}", &secret[..6]);
        }
    }
    // Telegram itself got only the message, the token only in its URL path.
    for request in telegram.seen.lock().unwrap().iter() {
        let body = request.split_once(' ').map(|(_, rest)| rest).unwrap_or("");
        let body = body.split_once(' ').map(|(_, b)| b).unwrap_or("");
        for secret in secrets.iter().filter(|s| s.as_str() != bot_token) {
            assert!(!body.contains(secret.as_str()), "a secret in a Telegram message: {request}");
        }
    }
}

/// Task text goes from the file to the pane through tmux's paste buffer only:
/// shell syntax in it is never run, by the daemon or on its way into Claude
/// Code, and arrives at the API as written.
#[test]
fn task_text_never_reaches_a_shell() {
    use kit::rig::{wait_idle, Rig};
    let _lock = kit::claude_turn();
    let marker = std::env::temp_dir().join(kit::unique_name("pwned"));
    let m = marker.display();
    let text = format!(
        "Check these strings and answer briefly: $(touch {m}) `touch {m}` ; touch {m} && touch {m} | touch {m} \
         '\"$HOME\"' ${{IFS}}touch${{IFS}}{m} \n$(touch {m})\n"
    );
    let rig = Rig::new(&["p"], &[("s1", "p")], "[dispatch]\nsettle_secs = 1\n");
    let daemon = rig.start();
    wait_idle(&daemon, &["s1"], Duration::from_secs(120));
    rig.drop_task("p", "shell.md", &text);
    wait_until(Duration::from_secs(90), "the task in done/", || {
        rig.tasks("p", "done").contains(&"shell.md".to_string()).then_some(())
    });
    assert!(!marker.exists(), "{m} was created: task text reached a shell");
    let first_line = text.lines().next().unwrap();
    assert_eq!(
        rig.api.count_text(first_line),
        1,
        "the text did not reach the API verbatim: {:?}",
        rig.api.user_texts()
    );
}
