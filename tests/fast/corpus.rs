//! The bad-input corpus (tests/fixtures/corpus/): malformed configs, task
//! files, HTTP requests, usage answers, credentials files and hook payloads,
//! each fed to the real binary (or the parser it uses). Every case must give
//! a clear error naming what is wrong, leave the daemon up, and change nothing
//! else. The fixture folders' headers and cases.toml files say what each case
//! is and what error it must give.

use kit::daemon::{config_text, Daemon};
use kit::free_port;
use kit::{daemon_binary, repo_root, temp_dir, wait_until, write};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn corpus(part: &str) -> PathBuf {
    repo_root().join("tests/fixtures/corpus").join(part)
}

/// The `[[case]]` tables of `<part>/cases.toml`.
fn cases(part: &str) -> Vec<toml::Table> {
    let text = std::fs::read_to_string(corpus(part).join("cases.toml")).unwrap();
    let mut doc: toml::Table = text.parse().unwrap();
    match doc.remove("case") {
        Some(toml::Value::Array(items)) => items.into_iter().map(|v| v.as_table().unwrap().clone()).collect(),
        other => panic!("{part}/cases.toml has no [[case]]: {other:?}"),
    }
}

fn field<'a>(case: &'a toml::Table, key: &str) -> Option<&'a str> {
    case.get(key).and_then(toml::Value::as_str)
}

// ---- configs ----

/// `# key:` and `# expect:` from a config fixture's header.
fn config_expectation(path: &Path) -> (String, String) {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let header = |tag: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("# {tag}: ")))
            .unwrap_or_else(|| panic!("{} has no `# {tag}:` line", path.display()))
            .to_string()
    };
    assert!(text.starts_with("# wrong: "), "{} must say what is wrong", path.display());
    (header("key"), header("expect"))
}

fn config_fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_malformed_config_is_refused_with_exit_78_naming_the_key() {
    let files = config_fixtures();
    assert!(files.len() >= 20, "the config corpus has {} cases", files.len());
    // All processes at once: each is a few milliseconds of work.
    let runs: Vec<_> = files
        .iter()
        .flat_map(|f| {
            ["check-config", "run"].map(|cmd| {
                let child = Command::new(daemon_binary())
                    .args([cmd, "--config"])
                    .arg(f)
                    .env_remove("NOTIFY_SOCKET")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (f.clone(), cmd, child)
            })
        })
        .collect();
    for (file, cmd, child) in runs {
        let out = child.wait_with_output().unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{cmd} {name}: {err}");
        let (key, expect) = config_expectation(&file);
        let line = format!("{}: {key}: ", file.display());
        let problem = err.lines().find(|l| l.contains(&line));
        let problem = problem.unwrap_or_else(|| panic!("{cmd} {name}: no problem at {key:?} in:\n{err}"));
        let rest = err[err.find(problem).unwrap()..].to_string();
        assert!(rest.contains(&expect), "{cmd} {name}: {key} should say {expect:?}:\n{err}");
        assert!(!err.contains("tg-FAKE-TOKEN"), "{cmd} {name}: a token leaked: {err}");
        if cmd == "check-config" {
            assert!(out.stdout.is_empty(), "{name}: check-config printed on stdout");
        }
    }
    // `run` refused before touching anything: no state folder next to the fixtures.
    assert!(!corpus("config").join("state").exists());
}

#[test]
fn sighup_with_a_broken_file_keeps_the_old_config_running() {
    let dir = temp_dir();
    let port = free_port();
    let good = config_text(dir.path(), port, "");
    let d = Daemon::start(dir.path(), &good, port, &[]);
    let broken = [
        "05-threshold-over-100",
        "11-no-accounts",
        "18-listen-public-without-token",
        "30-duplicate-key",
        "33-not-utf8",
    ];
    for (i, case) in broken.iter().enumerate() {
        let fixture = corpus("config").join(format!("{case}.toml"));
        let (key, _) = config_expectation(&fixture);
        std::fs::write(&d.config, std::fs::read(&fixture).unwrap()).unwrap();
        d.signal("HUP");
        let events = wait_until(Duration::from_secs(10), &format!("config_rejected #{}", i + 1), || {
            let (_, body) = d.get("/events?since=0").ok()?;
            let v: Value = serde_json::from_str(&body).ok()?;
            let rejected: Vec<Value> =
                v["events"].as_array()?.iter().filter(|e| e["kind"] == "config_rejected").cloned().collect();
            (rejected.len() > i).then_some(rejected)
        });
        let message = events[i]["message"].as_str().unwrap();
        assert!(message.contains(&key), "{case}: the rejection should name {key}: {message}");
        let (code, status) = d.get("/status").unwrap();
        assert_eq!(code, 200, "{case}");
        let status: Value = serde_json::from_str(&status).unwrap();
        let names: Vec<&str> =
            status["accounts"].as_array().unwrap().iter().filter_map(|a| a["name"].as_str()).collect();
        assert_eq!(names, ["alpha", "beta"], "{case}: the old config must stay");
        assert_eq!(d.get("/healthz").unwrap().0, 200, "{case}");
    }
    let (_, events) = d.get("/events?since=0").unwrap();
    assert!(!events.contains("config_reloaded"), "no broken file was applied: {events}");
}

// ---- task files ----

/// Builds one inbox entry for a case; returns its name in the inbox.
fn drop_task(case: &toml::Table, inbox: &Path, outside: &Path, staging: &Path) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    if let Some(file) = field(case, "file") {
        let name = field(case, "name").unwrap_or(file);
        // Written beside the inbox, then renamed in, as writers should.
        let staged = staging.join(name);
        std::fs::copy(corpus("tasks").join(file), &staged).unwrap();
        std::fs::rename(&staged, inbox.join(name)).unwrap();
        return name.into();
    }
    let name = field(case, "name").unwrap();
    let path = inbox.join(name);
    match field(case, "make").unwrap() {
        "symlink" => std::os::unix::fs::symlink(outside, &path).unwrap(),
        "dangling-symlink" => std::os::unix::fs::symlink(outside.with_extension("gone"), &path).unwrap(),
        "hardlink" => std::fs::hard_link(outside, &path).unwrap(),
        "dir" => {
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("inner.md"), "inside a folder").unwrap();
        }
        "fifo" => assert!(Command::new("mkfifo").arg(&path).status().unwrap().success()),
        "bad-name" => {
            let raw = std::ffi::OsString::from_vec(b"bad-\xff-name.md".to_vec());
            std::fs::write(inbox.join(&raw), "Fix the login page.\n").unwrap();
            return raw;
        }
        other => panic!("unknown make {other:?}"),
    }
    name.into()
}

fn error_json(failed: &Path, name: &str) -> Option<Value> {
    let stem = name.strip_suffix(".md").unwrap_or(name);
    let path = failed.join(format!("{stem}.error.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?
}

#[test]
fn malformed_tasks_dropped_into_a_running_inbox_go_to_failed_and_good_ones_stay() {
    let dir = temp_dir();
    let port = free_port();
    let project = dir.path().join("project");
    let extra = format!(
        "[dispatch]\nenabled = true\nmax_task_bytes = 4096\n[[projects]]\nname = \"web\"\npath = \"{}\"\n",
        project.display()
    );
    let text = config_text(dir.path(), port, &extra);
    let d = Daemon::start(dir.path(), &text, port, &[]);
    let queue = project.join(".agent-queue");
    let (inbox, failed) = (queue.join("inbox"), queue.join("failed"));
    wait_until(Duration::from_secs(10), "the inbox folder", || inbox.is_dir().then_some(()));
    let outside = dir.path().join("outside-secret.md");
    write(&outside, "OUTSIDE-SECRET-CONTENT\n");
    let outside_mtime = std::fs::metadata(&outside).unwrap().modified().unwrap();
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();

    let all = cases("tasks");
    let (good, bad): (Vec<_>, Vec<_>) =
        all.iter().partition(|c| c.get("good").and_then(toml::Value::as_bool) == Some(true));
    assert!(bad.len() >= 15, "the task corpus has {} bad cases", bad.len());
    for case in &good {
        drop_task(case, &inbox, &outside, &staging);
    }
    let mut names = Vec::new();
    for case in &bad {
        let raw = drop_task(case, &inbox, &outside, &staging);
        names.push((raw.to_string_lossy().into_owned(), field(case, "reason").unwrap().to_string()));
    }
    for (name, reason) in &names {
        let record = wait_until(Duration::from_secs(10), &format!("failed/{name} with its error.json"), || {
            std::fs::symlink_metadata(failed.join(name)).ok()?;
            error_json(&failed, name)
        });
        let why = record["reason"].as_str().unwrap();
        assert!(why.contains(reason.as_str()), "{name}: {why:?} should say {reason:?}");
        assert!(!why.contains("OUTSIDE-SECRET"), "{name}: {why}");
    }
    // Good tasks untouched: no session may take them.
    for case in &good {
        let file = field(case, "file").unwrap();
        let now = std::fs::read(inbox.join(file)).unwrap();
        assert_eq!(now, std::fs::read(corpus("tasks").join(file)).unwrap(), "{file} changed");
    }
    let mut left: Vec<String> =
        std::fs::read_dir(&inbox).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["good-1.md", "good-2.md"]);
    // The outside file: same bytes, same mtime, its text nowhere the daemon writes.
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "OUTSIDE-SECRET-CONTENT\n");
    assert_eq!(std::fs::metadata(&outside).unwrap().modified().unwrap(), outside_mtime);
    assert!(std::fs::symlink_metadata(failed.join("link-out.md")).unwrap().file_type().is_symlink());

    assert_eq!(d.get("/healthz").unwrap().0, 200);
    let status: Value = wait_until(Duration::from_secs(10), "queue counts in /status", || {
        let v: Value = serde_json::from_str(&d.get("/status").ok()?.1).ok()?;
        (v["queues"][0]["failed"] == bad.len() && v["queues"][0]["inbox"] == 2).then_some(v)
    });
    let failures = d.events("task_failed");
    let failed_subjects: Vec<&str> = failures.iter().filter_map(|e| e["subject"].as_str()).collect();
    let (_, events) = d.get("/events?since=0").unwrap();
    for (name, _) in &names {
        assert!(failed_subjects.contains(&name.as_str()), "no task_failed event for {name}: {events}");
    }
    for text in [events, status.to_string(), d.log_text()] {
        assert!(!text.contains("OUTSIDE-SECRET"), "the outside file's text leaked");
    }
}

// ---- HTTP ----

/// What a malformed request may get: a status, or 0 for a connection closed
/// without an answer.
struct HttpCase {
    wrong: &'static str,
    request: Vec<u8>,
    accept: &'static [u16],
    /// tiny_http answers protocol errors itself, with an empty body; the
    /// daemon's own answers are `{"error": "..."}`.
    ours: bool,
}

fn raw_request(method: &str, path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn post_json(path: &str, body: &str) -> Vec<u8> {
    raw_request("POST", path, &["Content-Type: application/json"], body.as_bytes())
}

fn http_cases() -> Vec<HttpCase> {
    let c = |wrong, request, accept| HttpCase { wrong, request, accept, ours: true };
    let p = |wrong, request, accept| HttpCase { wrong, request, accept, ours: false };
    let mut flood = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".to_vec();
    for i in 0..20_000 {
        flood.extend_from_slice(format!("X-Flood-{i}: {}\r\n", "y".repeat(50)).as_bytes());
    }
    flood.extend_from_slice(b"\r\n");
    vec![
        c("DELETE on a read endpoint", raw_request("DELETE", "/status", &[], b""), &[405]),
        c("GET on a write endpoint", raw_request("GET", "/failover", &[], b""), &[405]),
        c("PUT on pause", raw_request("PUT", "/dispatch/pause", &[], b"{}"), &[405]),
        c("a body that is not JSON", post_json("/failover", "{not json"), &[400]),
        c("an unknown field", post_json("/failover", r#"{"too":"beta"}"#), &[400]),
        c("a JSON array for an object", post_json("/failover", "[]"), &[400]),
        c("a number where the account name goes", post_json("/failover", r#"{"to":5}"#), &[400]),
        c("an account that does not exist", post_json("/failover", r#"{"to":"nobody"}"#), &[400]),
        c("a form body, not JSON", raw_request("POST", "/failover", &["Content-Type: application/x-www-form-urlencoded"], b"to=beta"), &[415]),
        c("a text/plain body (a cross-site form's)", raw_request("POST", "/dispatch/pause", &["Content-Type: text/plain"], b"{}"), &[415]),
        c("a POST without a type", raw_request("POST", "/dispatch/pause", &[], b"{}"), &[415]),
        c("a body that is not UTF-8", raw_request("POST", "/failover", &["Content-Type: application/json"], b"{\"to\":\"\xff\xfe\"}"), &[400]),
        c("pause with an argument it does not take", post_json("/dispatch/pause", r#"{"paused":true,"for":60}"#), &[400]),
        c("resume with a JSON string body", post_json("/dispatch/resume", r#""now""#), &[400]),
        c("a body over 64 KiB", post_json("/failover", &format!("{{\"to\":\"{}\"}}", "x".repeat(70_000))), &[413]),
        c("a since that is not a number", raw_request("GET", "/events?since=abc", &[], b""), &[400]),
        c("a negative since", raw_request("GET", "/events?since=-1", &[], b""), &[400]),
        c("an unknown path", raw_request("GET", "/admin", &[], b""), &[404]),
        c("a bad percent-escape in a session name", post_json("/sessions/%zz/restart", "{}"), &[400]),
        c("a session that does not exist", post_json("/sessions/nobody/restart", "{}"), &[404]),
        p("a path that is not UTF-8", b"GET /status\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_vec(), &[400, 404, 0]),
        p("an invalid request line", b"THIS IS NOT HTTP\r\n\r\n".to_vec(), &[400, 0]),
        p("an unknown HTTP version", b"GET /status HTTP/9.9\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_vec(), &[400, 505, 0]),
        p("a header line without a colon", b"GET /status HTTP/1.1\r\nHost x\r\nConnection: close\r\n\r\n".to_vec(), &[400, 0]),
        // The front door reads 16 KiB of it, answers 431 and closes; the client
        // may see the answer or, still writing, only the close.
        c("20 000 headers (1.3 MB of head)", flood, &[431, 0]),
        p(
            "chunked encoding with a bad chunk size",
            b"POST /failover HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec(),
            &[400, 0],
        ),
    ]
}

/// Sends `request`; the status answered, or 0 when the server closed the
/// connection without one. Panics when it neither answers nor closes.
fn send_raw(port: u16, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before reading everything (413): fine.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) if out.is_empty() => panic!("no answer and no close: {e}"),
        Err(_) => {}
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.strip_prefix("HTTP/1.").and_then(|t| t.get(2..5)).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

#[test]
fn malformed_http_requests_get_the_right_4xx_and_the_daemon_keeps_answering() {
    let dir = temp_dir();
    let port = free_port();
    let d = Daemon::start(dir.path(), &config_text(dir.path(), port, ""), port, &[]);
    let before: Value = serde_json::from_str(&d.get("/status").unwrap().1).unwrap();

    // A slow client: half a request head, held open through every case below.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").unwrap();
    // A body promised and never sent, also held open.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled.write_all(b"POST /failover HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n{\"to\"").unwrap();

    let cases = http_cases();
    assert!(cases.len() >= 15, "the HTTP corpus has {} cases", cases.len());
    for case in &cases {
        let started = Instant::now();
        let (code, text) = send_raw(port, &case.request);
        assert!(case.accept.contains(&code), "{}: got {code}, want one of {:?}:\n{text}", case.wrong, case.accept);
        if case.ours && (400..500).contains(&code) {
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            let v: Value =
                serde_json::from_str(body).unwrap_or_else(|_| panic!("{}: body not JSON: {body}", case.wrong));
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{}: {body}", case.wrong);
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{}: took {:?}", case.wrong, started.elapsed());
        assert_eq!(d.get("/healthz").unwrap().0, 200, "after {}", case.wrong);
    }

    // A declared body of a terabyte: no answer is possible without reading
    // it; the daemon must neither allocate it nor stop answering others.
    let mut huge = TcpStream::connect(("127.0.0.1", port)).unwrap();
    huge.write_all(b"POST /failover HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1099511627776\r\n\r\n{}").unwrap();
    assert_eq!(d.get("/healthz").unwrap().0, 200, "after a huge Content-Length");
    drop(huge);

    // Nothing changed: not paused, no swap, same active account.
    let (code, after) = d.get("/status").unwrap();
    assert_eq!(code, 200);
    let after: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["dispatch_paused"], false);
    assert_eq!(after["active_account"], before["active_account"]);
    let (_, events) = d.get("/events?since=0").unwrap();
    assert!(!events.contains("failover_started"), "{events}");
    // The slow clients held nobody up, and the half-sent head was never
    // served: at most told 408 once its 10 s were up.
    slow.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 16];
    if let Ok(n) = slow.read(&mut buf) {
        assert!(buf[..n].starts_with(b"HTTP/1.1 408"), "the half-sent request was answered: {:?}", &buf[..n]);
    }
    drop(stalled);
}

// ---- usage answers and credentials ----

#[test]
fn malformed_usage_answers_are_errors_naming_what_is_wrong() {
    let all = cases("usage");
    assert!(all.len() >= 10, "the usage corpus has {} cases", all.len());
    for case in &all {
        let file = field(case, "file").unwrap();
        let body = String::from_utf8_lossy(&std::fs::read(corpus("usage").join(file)).unwrap()).into_owned();
        let want = field(case, "error").unwrap();
        let result = std::panic::catch_unwind(|| claude_failover::claude::usage::parse(&body));
        let err = match result {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(u)) => panic!("{file}: accepted as {u:?}"),
            Err(_) => panic!("{file}: parse panicked"),
        };
        assert!(err.contains(want), "{file}: {err:?} should say {want:?}");
        assert!(err.len() < 300, "{file}: the error quotes too much: {err}");
    }
}

#[test]
fn malformed_credentials_name_the_file_and_never_a_token() {
    use claude_failover::claude::credentials::Credentials;
    let dir = temp_dir();
    let all = cases("credentials");
    assert!(all.len() >= 5);
    for (i, case) in all.iter().enumerate() {
        let account = dir.path().join(format!("acct-{i}"));
        std::fs::create_dir_all(&account).unwrap();
        let path = account.join(".credentials.json");
        match field(case, "file") {
            Some(file) => {
                std::fs::copy(corpus("credentials").join(file), &path).unwrap();
            }
            None => std::fs::create_dir(&path).unwrap(),
        }
        let err = Credentials::read(&account).unwrap_err().to_string();
        let want = field(case, "error").unwrap();
        assert!(err.contains(&path.display().to_string()), "{}: {err}", field(case, "wrong").unwrap());
        assert!(err.contains(want), "{}: {err:?} should say {want:?}", field(case, "wrong").unwrap());
        assert!(!err.contains("CORPUS-SECRET") && !err.contains("12345"), "a token leaked: {err}");
    }
}

/// One daemon with one account per malformed usage answer and per malformed
/// credentials file: its poller must report each as that account's error in
/// /status, without a token anywhere, and keep answering.
#[test]
fn the_poller_reports_every_malformed_answer_and_credentials_file_per_account() {
    let api = kit::fake_api::FakeApi::start();
    let dir = temp_dir();
    let port = free_port();
    let mut config = kit::ConfigBuilder::base(dir.path(), &kit::unique_name("cf-corpus"), port).set(
        "quota",
        "usage_url",
        format!("{}/api/oauth/usage", api.url()),
    );
    let mut want = BTreeMap::new();
    let mut want_also = BTreeMap::new();
    let usage = cases("usage");
    for (i, case) in usage.iter().enumerate() {
        let name = format!("usage-{i}");
        let token = format!("sk-ant-oat01-POLL-SECRET-{i}");
        let acct = kit::accounts::create(&dir.path().join("accounts"), &name, &[]);
        let creds = std::fs::read_to_string(acct.dir.join(".credentials.json")).unwrap().replace(&acct.token, &token);
        std::fs::write(acct.dir.join(".credentials.json"), creds).unwrap();
        let body = String::from_utf8_lossy(&std::fs::read(corpus("usage").join(field(case, "file").unwrap())).unwrap())
            .into_owned();
        api.script_usage(&token, kit::fake_api::ScriptedUsage { status: 200, body, headers: vec![] });
        config = config.account(&name, &acct.dir);
        want.insert(name, "usage answer not understood: usage answer".to_string());
        want_also.insert(format!("usage-{i}"), field(case, "error").unwrap().to_string());
    }
    for (i, case) in cases("credentials").iter().enumerate() {
        let name = format!("creds-{i}");
        let acct = dir.path().join("accounts").join(&name);
        std::fs::create_dir_all(&acct).unwrap();
        match field(case, "file") {
            Some(file) => {
                std::fs::copy(corpus("credentials").join(file), acct.join(".credentials.json")).unwrap();
            }
            None => std::fs::create_dir(acct.join(".credentials.json")).unwrap(),
        }
        config = config.account(&name, &acct);
        want.insert(name.clone(), format!("no usable credentials: {}", acct.join(".credentials.json").display()));
        want_also.insert(name, field(case, "error").unwrap().to_string());
    }
    let text = config.render();
    let d = Daemon::start(dir.path(), &text, port, &[]);
    let status: Value = wait_until(Duration::from_secs(20), "every account's last_error", || {
        let v: Value = serde_json::from_str(&d.get("/status").ok()?.1).ok()?;
        let all = v["accounts"].as_array()?;
        (all.len() == want.len() && all.iter().all(|a| a["last_error"].is_string())).then_some(v)
    });
    for a in status["accounts"].as_array().unwrap() {
        let name = a["name"].as_str().unwrap();
        let error = a["last_error"].as_str().unwrap();
        assert!(error.contains(&want[name]), "{name}: {error:?} should say {:?}", want[name]);
        assert!(error.contains(&want_also[name]), "{name}: {error:?} should say {:?}", want_also[name]);
    }
    assert_eq!(d.get("/healthz").unwrap().0, 200);
    let (_, events) = d.get("/events?since=0").unwrap();
    for text in [status.to_string(), events, d.log_text()] {
        assert!(!text.contains("SECRET"), "a token leaked: {text}");
    }
}

// ---- hook payloads ----

#[test]
fn malformed_hook_payloads_exit_0_print_nothing_and_spool_only_objects() {
    let dir = temp_dir();
    let all = cases("hook");
    for (i, case) in all.iter().enumerate() {
        let payload = match field(case, "file") {
            Some(file) => std::fs::read(corpus("hook").join(file)).unwrap(),
            None => {
                let mut big = b"{\"session_id\":\"".to_vec();
                big.extend(std::iter::repeat_n(b'x', 2 << 20));
                big.extend_from_slice(b"\"}");
                big
            }
        };
        let wrong = field(case, "wrong").unwrap();
        let spool = dir.path().join(format!("spool-{i}"));
        std::fs::create_dir_all(&spool).unwrap();
        let mut child = Command::new(daemon_binary())
            .args(["hook", "--spool"])
            .arg(&spool)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The hook may stop reading at its cap; a broken pipe is its right.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&payload);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert_eq!(out.status.code(), Some(0), "{wrong}");
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{wrong}: printed {out:?}");
        let spooled: Vec<PathBuf> = std::fs::read_dir(&spool).unwrap().map(|e| e.unwrap().path()).collect();
        let may = case.get("spooled").and_then(toml::Value::as_bool).unwrap();
        if !may {
            assert!(spooled.is_empty(), "{wrong}: spooled {spooled:?}");
        }
        for file in &spooled {
            let text = std::fs::read_to_string(file).unwrap();
            assert_eq!(claude_failover::sessions::spool::read(&text), None, "{wrong}: the daemon acted on it");
        }
        if let Some(file) = field(case, "file") {
            let text = String::from_utf8_lossy(&std::fs::read(corpus("hook").join(file)).unwrap()).into_owned();
            assert_eq!(claude_failover::sessions::spool::read(&text), None, "{wrong}");
        }
    }
}
