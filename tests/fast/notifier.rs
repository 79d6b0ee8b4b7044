//! The notifier against fake Telegram and webhook servers on loopback:
//! routing, a hanging and a failing sink, deduplication, queue overflow, and
//! the bot token kept out of every log line.

use claude_failover::config::{NotifyConfig, Secret, TelegramConfig, WebhookConfig};
use claude_failover::events::{Events, Kind};
use claude_failover::heartbeat::Heartbeats;
use claude_failover::metrics::Metrics;
use claude_failover::notifier::{self, NotifierHandle, Tuning, URL_LOGGING_TARGETS};
use kit::wait_until;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const TOKEN: &str = "123456:SECRET-bot-token_xyz";
const WAIT: Duration = Duration::from_secs(10);

// ---- a logger that keeps every line, capped as the daemon caps ureq ----

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        let url_logger =
            URL_LOGGING_TARGETS.iter().any(|t| meta.target() == *t || meta.target().starts_with(&format!("{t}::")));
        !(url_logger && meta.level() > log::Level::Debug)
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            self.0.lock().push(format!("{} {}: {}", record.level(), record.target(), record.args()));
        }
    }
    fn flush(&self) {}
}

fn captured_logs() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        crate::logs::capture(capture);
        capture
    })
}

fn assert_no_token_in_logs() {
    let logs = captured_logs().0.lock();
    for line in logs.iter() {
        assert!(!line.contains(TOKEN), "token in log line: {line}");
        assert!(!line.contains("SECRET-bot"), "token part in log line: {line}");
    }
}

// ---- fake servers ----

#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Status500,
}

struct FakeSink {
    base: String,
    got: Arc<Mutex<Vec<(String, Value)>>>,
    server: Arc<tiny_http::Server>,
}

impl FakeSink {
    fn start(answer: Answer) -> FakeSink {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("fake server"));
        let addr = server.server_addr().to_ip().expect("ip address");
        let got = Arc::new(Mutex::new(Vec::new()));
        let (s, g) = (Arc::clone(&server), Arc::clone(&got));
        std::thread::spawn(move || {
            for mut request in s.incoming_requests() {
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let value = serde_json::from_str(&body).unwrap_or(Value::Null);
                g.lock().push((request.url().to_string(), value));
                let response = match answer {
                    Answer::Ok => tiny_http::Response::from_string(r#"{"ok":true}"#),
                    Answer::Status500 => tiny_http::Response::from_string("boom").with_status_code(500),
                };
                let _ = request.respond(response);
            }
        });
        FakeSink { base: format!("http://{addr}"), got, server }
    }

    fn bodies(&self) -> Vec<Value> {
        self.got.lock().iter().map(|(_, v)| v.clone()).collect()
    }

    fn wait_count(&self, n: usize, what: &str) -> Vec<Value> {
        wait_until(WAIT, what, || {
            let b = self.bodies();
            (b.len() >= n).then_some(b)
        })
    }
}

impl Drop for FakeSink {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// Accepts connections and never answers.
fn hanging_sink() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    format!("http://{addr}")
}

// ---- the notifier under test ----

fn config(telegram_base: Option<&str>, webhook_base: Option<&str>, min_interval: u64) -> NotifyConfig {
    NotifyConfig {
        min_interval_secs: min_interval,
        telegram: telegram_base.map(|base| TelegramConfig {
            bot_token_file: "/etc/claude-failover/telegram-token".into(),
            chat_id: "-100123".into(),
            chat_ids: Vec::new(),
            user_ids: Vec::new(),
            kinds: None,
            api_base: base.to_string(),
            bot_token: Some(Secret::new(format!("{TOKEN}\n"))),
        }),
        webhook: webhook_base.map(|base| WebhookConfig { url: format!("{base}/claude-failover") }),
    }
}

fn quick() -> Tuning {
    Tuning {
        queue_capacity: 256,
        backoff: vec![Duration::from_millis(20), Duration::from_millis(40)],
        request_timeout: Duration::from_secs(2),
        flush_deadline: Duration::from_millis(500),
    }
}

fn start(config: &NotifyConfig, tuning: Tuning) -> (Events, Metrics, NotifierHandle) {
    captured_logs();
    let (tx, rx) = crossbeam_channel::unbounded();
    let metrics = Metrics::new();
    let beat = Heartbeats::new(None).register("notifier");
    let handle = notifier::spawn_tuned(config, tuning, rx, metrics.clone(), beat).expect("spawn");
    (Events::new(Some(tx)), metrics, handle)
}

fn kinds(bodies: &[Value]) -> Vec<String> {
    bodies.iter().map(|b| b["kind"].as_str().unwrap_or("?").to_string()).collect()
}

#[test]
fn telegram_gets_what_a_person_acts_on_and_the_webhook_gets_everything() {
    let telegram = FakeSink::start(Answer::Ok);
    let webhook = FakeSink::start(Answer::Ok);
    let (events, metrics, handle) =
        start(&config(Some(&format!("{}/", telegram.base)), Some(&webhook.base), 30), quick());
    // session_died goes first: had Telegram received it, it would be there
    // before the other two.
    events.emit(Kind::SessionDied, "ccl-auto-11", "the claude process exited", json!({}));
    events.emit(
        Kind::FailoverFinished,
        "beta",
        "",
        json!({"from": "alpha", "to": "beta", "reason": "threshold",
               "utilization": 91.0, "window": "five_hour", "sessions_moved": 4}),
    );
    events.emit(
        Kind::TaskFailed,
        "2026-11-25-fix-login.md",
        "gave up after 3 attempts",
        json!({"project": "secumon", "attempts": 3}),
    );

    let hooks = webhook.wait_count(3, "three webhook posts");
    assert_eq!(kinds(&hooks), ["session_died", "failover_finished", "task_failed"]);
    assert_eq!(hooks[1]["from"], "alpha");
    assert_eq!(hooks[1]["sessions_moved"], 4);
    assert_eq!(hooks[2]["subject"], "2026-11-25-fix-login.md");
    assert!(hooks[0]["seq"].as_u64().is_some() && hooks[0]["at"].is_string());
    assert!(webhook.got.lock().iter().all(|(path, _)| path == "/claude-failover"));

    telegram.wait_count(2, "two Telegram messages");
    let sent = telegram.got.lock().clone();
    assert_eq!(sent.len(), 2);
    for (path, body) in &sent {
        assert_eq!(path, &format!("/bot{TOKEN}/sendMessage"));
        assert_eq!(body["chat_id"], "-100123");
    }
    assert_eq!(sent[0].1["text"], "⚠ Failover alpha → beta (threshold 91% 5h): 4 sessions moved");
    assert_eq!(sent[1].1["text"], "❌ Task 2026-11-25-fix-login.md failed after 3 attempts — gave up after 3 attempts");

    handle.join();
    assert_eq!(metrics.counter("claude_failover_notify_sent_total", &[("sink", "webhook")]), 3);
    assert_eq!(metrics.counter("claude_failover_notify_sent_total", &[("sink", "telegram")]), 2);
    assert_eq!(telegram.bodies().len(), 2, "Telegram got session_died");
    assert_no_token_in_logs();
}

#[test]
fn a_hanging_telegram_delays_neither_emit_nor_the_webhook() {
    let webhook = FakeSink::start(Answer::Ok);
    let (events, metrics, handle) = start(&config(Some(&hanging_sink()), Some(&webhook.base), 30), quick());

    let started = Instant::now();
    for i in 0..20 {
        events.emit(Kind::TaskFailed, &format!("task-{i}.md"), "failed", json!({}));
    }
    let emitting = started.elapsed();
    assert!(emitting < Duration::from_millis(200), "20 emits took {emitting:?}");

    let hooks = webhook.wait_count(20, "all 20 webhook posts");
    assert!(started.elapsed() < Duration::from_secs(2), "the webhook waited on Telegram ({:?})", started.elapsed());
    assert_eq!(hooks[19]["subject"], "task-19.md");
    assert_eq!(metrics.counter("claude_failover_notify_sent_total", &[("sink", "telegram")]), 0);

    // Stopping does not wait for the hanging sink beyond the flush deadline.
    let stopping = Instant::now();
    handle.join();
    assert!(stopping.elapsed() < Duration::from_secs(2), "join took {:?}", stopping.elapsed());
    assert_no_token_in_logs();
}

#[test]
fn a_full_queue_drops_its_oldest_notices() {
    let tuning = Tuning {
        queue_capacity: 4,
        backoff: vec![],
        request_timeout: Duration::from_secs(5),
        flush_deadline: Duration::from_millis(300),
    };
    let (events, metrics, handle) = start(&config(Some(&hanging_sink()), None, 30), tuning);
    for i in 0..20 {
        events.emit(Kind::TaskFailed, &format!("task-{i}.md"), "failed", json!({}));
    }
    // The worker holds one notice (hanging), the queue four; the rest were
    // dropped, oldest first, as they came.
    let dropped = wait_until(WAIT, "drops counted", || {
        let n = metrics.counter("claude_failover_notify_dropped_total", &[("sink", "telegram")]);
        (n >= 15).then_some(n)
    });
    assert!(dropped <= 16, "dropped {dropped}");
    handle.join();
    assert_no_token_in_logs();
}

#[test]
fn a_failing_webhook_is_retried_then_given_up_while_telegram_carries_on() {
    let telegram = FakeSink::start(Answer::Ok);
    let webhook = FakeSink::start(Answer::Status500);
    let (events, metrics, handle) = start(&config(Some(&telegram.base), Some(&webhook.base), 30), quick());

    let started = Instant::now();
    events.emit(Kind::TokenExpired, "gamma", "", json!({}));
    events.emit(Kind::AccountRecovered, "beta", "", json!({}));
    assert!(started.elapsed() < Duration::from_millis(50));

    let texts = telegram.wait_count(2, "two Telegram messages");
    assert_eq!(texts[0]["text"], "🔑 Account gamma: access token expired (renewed when Claude Code runs there)");
    assert_eq!(texts[1]["text"], "✅ Account beta recovered");

    let failed = || metrics.counter("claude_failover_notify_failed_total", &[("sink", "webhook")]);
    wait_until(WAIT, "both webhook posts given up", || (failed() == 2).then_some(()));
    // First attempt plus one per backoff step, for each notice.
    assert_eq!(webhook.bodies().len(), 6);
    assert_eq!(metrics.counter("claude_failover_notify_sent_total", &[("sink", "webhook")]), 0);
    handle.join();
    assert!(captured_logs().0.lock().iter().any(|l| l.contains("notify sink webhook: HTTP 500: boom")));
    assert_no_token_in_logs();
}

#[test]
fn a_burst_of_identical_events_sends_one_per_sink() {
    let telegram = FakeSink::start(Answer::Ok);
    let webhook = FakeSink::start(Answer::Ok);
    let (events, metrics, handle) = start(&config(Some(&telegram.base), Some(&webhook.base), 30), quick());

    for _ in 0..100 {
        events.emit(Kind::TaskFailed, "same.md", "failed again", json!({}));
    }
    // A different subject afterwards marks the end of the burst in each sink.
    events.emit(Kind::TaskFailed, "other.md", "failed", json!({}));
    let hooks = webhook.wait_count(2, "burst and marker on the webhook");
    let texts = telegram.wait_count(2, "burst and marker on Telegram");
    handle.join();

    assert_eq!(webhook.bodies().len(), 2, "{hooks:?}");
    assert_eq!(telegram.bodies().len(), 2, "{texts:?}");
    assert_eq!(hooks[0]["subject"], "same.md");
    assert_eq!(hooks[1]["subject"], "other.md");
    assert_eq!(metrics.counter("claude_failover_notify_deduplicated_total", &[]), 99);
}

#[test]
fn the_token_stays_out_of_errors_when_the_url_is_unusable() {
    // A base URL without a scheme (ureq's error quotes the whole URL), one
    // that does not parse, and one that refuses connections.
    for base in ["", "http://bad host:99999", "http://127.0.0.1:1"] {
        let (events, metrics, handle) = start(&config(Some(base), None, 30), quick());
        events.emit(Kind::TaskFailed, "t.md", "failed", json!({}));
        wait_until(WAIT, "the delivery given up", || {
            (metrics.counter("claude_failover_notify_failed_total", &[("sink", "telegram")]) == 1).then_some(())
        });
        handle.join();
    }
    assert!(captured_logs()
        .0
        .lock()
        .iter()
        .any(|l| l.contains("notify sink telegram: bad uri: *** is missing scheme")));
    assert_no_token_in_logs();
}

#[test]
fn the_notifier_ends_when_every_emitter_is_gone() {
    let webhook = FakeSink::start(Answer::Ok);
    let (events, _metrics, handle) = start(&config(None, Some(&webhook.base), 30), quick());
    events.emit(Kind::DaemonStopping, "daemon", "", json!({}));
    drop(events);
    webhook.wait_count(1, "the last event");
    let started = Instant::now();
    handle.join();
    assert!(started.elapsed() < Duration::from_secs(1));
}

fn telegram_config(base: &str, kinds: Option<&[&str]>, webhook: Option<&str>) -> NotifyConfig {
    let mut c = config(Some(base), webhook, 0);
    if let Some(t) = &mut c.telegram {
        t.kinds = kinds.map(|k| k.iter().map(|s| s.to_string()).collect());
    }
    c
}

#[test]
fn a_429_with_retry_after_holds_telegram_s_next_send_and_nothing_else() {
    let telegram = kit::fake_telegram::FakeTelegram::start();
    let webhook = FakeSink::start(Answer::Ok);
    telegram.fail_next(
        "sendMessage",
        429,
        r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 2","parameters":{"retry_after":2}}"#,
    );
    let (events, metrics, handle) = start(&telegram_config(&telegram.url(), None, Some(&webhook.base)), quick());
    events.emit(Kind::TaskFailed, "a.md", "failed", json!({}));
    events.emit(Kind::TaskFailed, "b.md", "failed", json!({}));
    let sent = wait_until(WAIT, "both messages sent", || {
        let sent = telegram.calls_of("sendMessage");
        (sent.len() == 2).then_some(sent)
    });
    let refused =
        telegram.calls().into_iter().find(|c| c.method.starts_with("sendMessage (failed 429")).expect("the 429");
    assert!(sent[0].body["text"].as_str().unwrap().contains("a.md"), "a.md was retried first");
    assert!(
        sent[0].at.duration_since(refused.at) >= Duration::from_secs(2),
        "the retry came {:?} after the 429",
        sent[0].at.duration_since(refused.at)
    );
    // The webhook, a sink of its own, got its posts all the same.
    let hooks = webhook.wait_count(2, "both webhook posts");
    assert_eq!(hooks.len(), 2);
    handle.join();
    assert_eq!(metrics.counter("claude_failover_notify_retry_after_total", &[("sink", "telegram")]), 1);
    assert_eq!(metrics.counter("claude_failover_notify_sent_total", &[("sink", "telegram")]), 2);
    assert_eq!(metrics.counter("claude_failover_notify_failed_total", &[("sink", "telegram")]), 0);
}

#[test]
fn telegram_kinds_choose_what_is_sent() {
    let telegram = kit::fake_telegram::FakeTelegram::start();
    let (events, _metrics, handle) =
        start(&telegram_config(&telegram.url(), Some(&["task_done", "session_died"]), None), quick());
    events.emit(Kind::TaskFailed, "failed.md", "not wanted here", json!({}));
    events.emit(Kind::TaskDone, "done.md", "", json!({}));
    events.emit(Kind::SessionDied, "s1", "x".repeat(900), json!({}));
    // A question carries its own buttons; it is not among the kinds, so not sent.
    events.emit(
        Kind::SessionWaiting,
        "s1",
        "",
        json!({"episode": 5, "question": {"prompt": "Go?", "options": ["a", "b"]}}),
    );
    events.emit(Kind::TaskDone, "last.md", "", json!({}));
    let texts = wait_until(WAIT, "three messages", || {
        let texts: Vec<String> =
            telegram.calls_of("sendMessage").iter().map(|c| c.body["text"].as_str().unwrap().to_string()).collect();
        (texts.len() == 3).then_some(texts)
    });
    handle.join();
    assert_eq!(texts[0], "✅ Task done.md done");
    assert!(texts[1].starts_with("💀 Session s1 died"));
    assert_eq!(texts[2], "✅ Task last.md done");
    assert_eq!(telegram.calls_of("sendMessage").len(), 3, "task_failed and session_waiting were not sent");
}
