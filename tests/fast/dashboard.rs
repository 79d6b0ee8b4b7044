//! The dashboard's server side (docs/dashboard.md, docs/http.md#browsers): the
//! page served without a token and its data only with one; a foreign `Host`, a
//! foreign `Origin` and a POST of a type a plain cross-site form sends refused,
//! with a token configured and without; `/history` kept across a restart; and
//! JSON log lines. The page in a real browser is tests/e2e/dashboard_e2e.rs.

use kit::{free_port, temp_dir, wait_until, Daemon};
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

const TOKEN: &str = "tok-dash-7f3e9a1c";

/// A request with exactly these header lines (a `Host` of our choosing):
/// the status, the head and the body.
fn raw(port: u16, head: &str, body: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("{head}Connection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (code, head.to_string(), body.to_string())
}

fn paused(d: &Daemon, auth: &[(&str, &str)]) -> bool {
    let (_, s) = d.request("GET", "/status", None, auth).unwrap();
    serde_json::from_str::<Value>(&s).unwrap()["dispatch_paused"].as_bool().unwrap()
}

/// What any page in a browser could send, each refused, and dispatch never paused.
fn browsers_pages_are_refused(d: &Daemon, token: Option<&str>) {
    let port = d.port;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let here = format!("127.0.0.1:{port}");
    // The cross-site POST of issue 19: text/plain, body {}.
    let (code, _, body) = raw(
        port,
        &format!("POST /dispatch/pause HTTP/1.1\r\nHost: {here}\r\nOrigin: http://evil.example\r\n{auth}Content-Type: text/plain\r\n"),
        "{}",
    );
    assert_eq!(code, 403, "{body}");
    // The same without an Origin (a client that hides it): the type still refuses it.
    let (code, _, body) = raw(
        port,
        &format!("POST /dispatch/pause HTTP/1.1\r\nHost: {here}\r\n{auth}Content-Type: text/plain\r\n"),
        "{}",
    );
    assert_eq!(code, 415, "{body}");
    assert!(body.contains("application/json"), "{body}");
    // JSON from another origin, and a DNS-rebinding page's requests (its own name in Host).
    for head in [
        format!("POST /dispatch/pause HTTP/1.1\r\nHost: {here}\r\nOrigin: http://evil.example\r\n{auth}Content-Type: application/json\r\n"),
        format!("POST /dispatch/pause HTTP/1.1\r\nHost: {here}\r\nOrigin: null\r\n{auth}Content-Type: application/json\r\n"),
        format!("POST /dispatch/pause HTTP/1.1\r\nHost: evil.example:{port}\r\nOrigin: http://evil.example:{port}\r\n{auth}Content-Type: application/json\r\n"),
        format!("GET /status HTTP/1.1\r\nHost: evil.example:{port}\r\n{auth}"),
        format!("GET / HTTP/1.1\r\nHost: evil.example:{port}\r\n"),
        "GET /healthz HTTP/1.1\r\nHost: evil.example\r\n".to_string(),
    ] {
        let (code, _, body) = raw(port, &head, "{}");
        assert_eq!(code, 403, "{head}: {body}");
        if let Some(t) = token {
            assert!(!body.contains(t));
        }
    }
    let with: Vec<(&str, String)> = token.map(|t| ("Authorization", format!("Bearer {t}"))).into_iter().collect();
    let with: Vec<(&str, &str)> = with.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert!(!paused(d, &with), "a refused request paused dispatch");
    // The page's own POST (its origin is the daemon's) goes through.
    let (code, _, body) = raw(
        port,
        &format!("POST /dispatch/pause HTTP/1.1\r\nHost: {here}\r\nOrigin: http://{here}\r\n{auth}Content-Type: application/json; charset=utf-8\r\n"),
        "{}",
    );
    assert_eq!(code, 200, "{body}");
    assert!(paused(d, &with));
    let mut json = with.clone();
    json.push(kit::http::JSON);
    assert_eq!(d.request("POST", "/dispatch/resume", Some("{}"), &json).unwrap().0, 200);
}

#[test]
fn the_page_is_open_its_data_is_not_and_browsers_pages_are_refused_with_a_token() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let port = free_port();
    let extra = format!("token_file = \"{}/token\"", dir.path().display());
    let d = Daemon::start(dir.path(), &kit::daemon::config_text(dir.path(), port, &extra), port, &[]);

    // The page, its script and style: no token needed, no data and no token in them.
    let here = format!("127.0.0.1:{port}");
    let (code, head, page) = raw(port, &format!("GET / HTTP/1.1\r\nHost: {here}\r\n"), "");
    assert_eq!(code, 200);
    assert!(head.contains("text/html"), "{head}");
    assert!(head.contains("Content-Security-Policy: default-src 'none'"), "{head}");
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(page.contains("/dashboard.js") && !page.contains(TOKEN) && !page.contains("alpha"));
    for file in ["/dashboard.js", "/dashboard.css"] {
        let (code, text) = d.get(file).unwrap();
        assert_eq!(code, 200, "{file}");
        assert!(!text.contains(TOKEN) && !text.contains("alpha"), "{file} holds data");
    }
    // Its data: 401 without the token or with a wrong one.
    let auth = format!("Bearer {TOKEN}");
    for path in ["/status", "/history", "/events?since=0", "/metrics"] {
        assert_eq!(d.get(path).unwrap().0, 401, "{path}");
        assert_eq!(d.request("GET", path, None, &[("Authorization", "Bearer wrong")]).unwrap().0, 401, "{path}");
        assert_eq!(d.request("GET", path, None, &[("Authorization", &auth)]).unwrap().0, 200, "{path}");
    }
    // No state change on GET, and the page is GET only.
    assert_eq!(d.request("GET", "/dispatch/pause", None, &[("Authorization", &auth)]).unwrap().0, 405);
    assert_eq!(d.request("POST", "/", Some("{}"), &[("Authorization", &auth), kit::http::JSON]).unwrap().0, 405);

    browsers_pages_are_refused(&d, Some(TOKEN));
    let log = d.log_text();
    assert!(!log.contains(TOKEN), "the token is in the log");
}

#[test]
fn without_a_token_browsers_pages_are_refused_all_the_same() {
    let dir = temp_dir();
    let port = free_port();
    let d = Daemon::start(dir.path(), &kit::daemon::config_text(dir.path(), port, ""), port, &[]);
    browsers_pages_are_refused(&d, None);
    // A name listed in allowed_hosts is answered (a reverse proxy's).
    let dir2 = temp_dir();
    let port2 = free_port();
    let extra = "allowed_hosts = [\"failover.example.org\"]";
    let _d2 = Daemon::start(dir2.path(), &kit::daemon::config_text(dir2.path(), port2, extra), port2, &[]);
    let (code, _, body) = raw(port2, "GET /status HTTP/1.1\r\nHost: Failover.example.org:443\r\n", "");
    assert_eq!(code, 200, "{body}");
    let (code, _, _) = raw(port2, "GET /status HTTP/1.1\r\nHost: other.example.org\r\n", "");
    assert_eq!(code, 403);
}

/// Readings of `account` in `/history`, by time.
fn readings(d: &Daemon, account: &str) -> Vec<i64> {
    let auth = format!("Bearer {TOKEN}");
    let (code, text) = d.request("GET", "/history", None, &[("Authorization", &auth)]).unwrap();
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["thresholds"]["five_hour"], 90.0);
    v["accounts"][account].as_array().map(|a| a.iter().map(|r| r["t"].as_i64().unwrap()).collect()).unwrap_or_default()
}

#[test]
fn history_survives_a_restart_and_json_log_lines_parse_without_secrets() {
    let api = kit::fake_api::FakeApi::start();
    let dir = temp_dir();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let alpha = kit::accounts::create(&dir.path().join("accounts"), "alpha", &[]);
    let beta = kit::accounts::create(&dir.path().join("accounts"), "beta", &[]);
    api.set_usage(&alpha.token, 30.0, 10.0, None);
    api.set_usage(&beta.token, 5.0, 5.0, None);
    let port = free_port();
    let text = kit::ConfigBuilder::new()
        .set("", "state_dir", dir.path().join("state").display().to_string())
        .set("claude", "shared_projects_dir", format!("{}/shared", dir.path().display()))
        .set("tmux", "socket_name", kit::unique_name("cf-dash"))
        .set("quota", "usage_url", format!("{}/api/oauth/usage", api.url()))
        .set("quota", "poll_interval_secs", 1)
        .set("http", "listen", format!("127.0.0.1:{port}"))
        .set("http", "token_file", format!("{}/token", dir.path().display()))
        .set("log", "format", "json")
        .account("alpha", &alpha.dir)
        .account("beta", &beta.dir)
        .render();
    let mut d = Daemon::start(dir.path(), &text, port, &[]);
    let before = wait_until(Duration::from_secs(20), "two readings of alpha", || {
        let r = readings(&d, "alpha");
        (r.len() >= 2).then_some(r)
    });
    assert_eq!(d.stop(), Some(0), "{}", d.log_text());
    let saved = std::fs::read_to_string(dir.path().join("state/history.json")).expect("history.json written on stop");
    assert!(saved.contains("\"alpha\""), "{saved}");

    // The JSON log of that run: one object per line, the fields, no secret.
    let log = d.log_text();
    let secrets = [TOKEN.to_string(), alpha.token.clone(), beta.token.clone()];
    let mut events = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["time", "level", "target", "message"] {
            assert!(v[key].is_string(), "{key} missing: {line}");
        }
        if let Some(event) = v.get("event") {
            assert!(event["kind"].is_string() && event["seq"].is_u64() && event["subject"].is_string(), "{line}");
            events += 1;
        }
        for secret in &secrets {
            assert!(!line.contains(secret.as_str()), "a secret in the log: {line}");
        }
    }
    assert!(events >= 2, "daemon_started and daemon_stopping are event lines:\n{log}");

    // A new daemon starts with the old readings (the env var wins over the config).
    let d = Daemon::start(dir.path(), &text, port, &[("CLAUDE_FAILOVER_LOG_FORMAT", "text")]);
    let after = readings(&d, "alpha");
    for t in &before {
        assert!(after.contains(t), "reading at {t} lost over the restart: {after:?}");
    }
    let tail: String = d.log_text().lines().last().unwrap_or("").to_string();
    assert!(serde_json::from_str::<Value>(&tail).is_err(), "the env var's text format won: {tail}");
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_the_daemon_exports() {
    let root = kit::repo_root();
    let text = std::fs::read_to_string(root.join("packaging/grafana-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the Grafana dashboard is JSON");
    let documented = std::fs::read_to_string(root.join("docs/events.md")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let mut names = Vec::new();
    for expr in panels.iter().flat_map(|p| p["targets"].as_array().unwrap()).map(|t| t["expr"].as_str().unwrap()) {
        let mut rest = expr;
        while let Some(at) = rest.find("claude_failover_") {
            let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[at + name.len()..];
            names.push(name.trim_end_matches("_bucket").to_string());
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(documented.contains(&format!("`{name}`")), "{name} is not a metric of docs/events.md");
    }
}
