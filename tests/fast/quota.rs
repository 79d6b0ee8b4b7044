//! The quota role against a loopback usage endpoint: what it sends, how it
//! reads tokens, and how it spaces its requests after each kind of answer.
//! Gaps are measured on the server's clock and only from below, so a slow
//! machine makes them longer, never a failure.

use claude_failover::config::Config;
use claude_failover::config::QuotaConfig;
use claude_failover::heartbeat::Heartbeats;
use claude_failover::quota::{
    spawn, state_name, AccountQuota, PollError, QuotaCommand, QuotaHandle, QuotaReport, TokenState,
};
use crossbeam_channel::Receiver;
use kit::wait_until;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DEADLINE: Duration = Duration::from_secs(20);
const USAGE: &str = r#"{"five_hour":{"utilization":24.0,"resets_at":"2099-01-02T19:59:59.600956+00:00"},
 "seven_day":{"utilization":36.0,"resets_at":"2099-01-05T00:00:00Z"},
 "seven_day_sonnet":{"utilization":1.0,"resets_at":null},
 "seven_day_opus":null,"extra_usage":{"is_enabled":false}}"#;

#[derive(Clone)]
struct Reply {
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
    delay: Duration,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply { status, body: body.into(), headers: Vec::new(), delay: Duration::ZERO }
}

#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    path: String,
    authorization: Option<String>,
    user_agent: Option<String>,
    beta: Option<String>,
}

#[derive(Default)]
struct Script {
    /// Answers used once each, in order; then `default`.
    queue: VecDeque<Reply>,
    default: Option<Reply>,
    seen: Vec<Seen>,
}

/// A usage endpoint on 127.0.0.1 that records every request.
struct FakeUsage {
    url: String,
    script: Arc<Mutex<Script>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUsage {
    fn start(default: Reply) -> FakeUsage {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/api/oauth/usage", server.server_addr());
        let script = Arc::new(Mutex::new(Script { default: Some(default), ..Script::default() }));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (script, stop) = (script.clone(), stop.clone());
            std::thread::spawn(move || serve(&server, &script, &stop))
        };
        FakeUsage { url, script, stop, thread: Some(thread) }
    }

    fn then(&self, r: Reply) {
        self.script.lock().unwrap().queue.push_back(r);
    }

    fn set_default(&self, r: Reply) {
        self.script.lock().unwrap().default = Some(r);
    }

    fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }

    fn wait_requests(&self, n: usize) -> Vec<Seen> {
        wait_until(DEADLINE, &format!("{n} usage requests"), || {
            let seen = self.seen();
            (seen.len() >= n).then_some(seen)
        })
    }
}

impl Drop for FakeUsage {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, script: &Mutex<Script>, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) else {
            continue;
        };
        let header =
            |name: &'static str| request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.to_string());
        let seen = Seen {
            at: Instant::now(),
            path: request.url().to_string(),
            authorization: header("Authorization"),
            user_agent: header("User-Agent"),
            beta: header("anthropic-beta"),
        };
        let r = {
            let mut s = script.lock().unwrap();
            s.seen.push(seen);
            s.queue.pop_front().or_else(|| s.default.clone()).expect("a reply")
        };
        std::thread::sleep(r.delay);
        let mut response = tiny_http::Response::from_string(r.body).with_status_code(r.status);
        for (k, v) in r.headers {
            response.add_header(tiny_http::Header::from_bytes(k, v).expect("header"));
        }
        // The client may have given up (timeout test): nothing to do then.
        let _ = request.respond(response);
    }
}

fn write_credentials(dir: &Path, token: &str, expires_at: SystemTime) {
    let ms = expires_at.duration_since(UNIX_EPOCH).unwrap().as_millis();
    let text = format!(
        r#"{{"claudeAiOauth":{{"accessToken":"{token}","refreshToken":"refresh-{token}","expiresAt":{ms},"scopes":["user:inference"],"subscriptionType":"max"}}}}"#
    );
    // As Claude Code does it: a temp file renamed over the old one.
    let tmp = dir.join(".credentials.json.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(".credentials.json")).unwrap();
}

fn in_hours(h: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(h * 3600)
}

struct Rig {
    _dir: tempfile::TempDir,
    accounts: Vec<PathBuf>,
    handle: Option<QuotaHandle>,
    reports: Receiver<QuotaReport>,
    got: Vec<QuotaReport>,
    heartbeats: Heartbeats,
}

impl Rig {
    /// Accounts named a0, a1, ... each with a config dir; `setup` writes
    /// their credentials before the role starts.
    fn start(url: &str, accounts: usize, setup: impl FnOnce(&[PathBuf])) -> Rig {
        let dir = kit::temp_dir();
        let mut toml = format!(
            "state_dir = \"{}\"\n[quota]\nusage_url = \"{url}\"\npoll_interval_secs = 1\nrequest_timeout_secs = 1\n",
            dir.path().join("state").display()
        );
        let mut dirs = Vec::new();
        for i in 0..accounts {
            let d = dir.path().join(format!("a{i}"));
            std::fs::create_dir_all(&d).unwrap();
            toml.push_str(&format!("[[accounts]]\nname = \"a{i}\"\nconfig_dir = \"{}\"\n", d.display()));
            dirs.push(d);
        }
        setup(&dirs);
        let config =
            Config::from_toml(&toml, &dir.path().join("config.toml")).unwrap_or_else(|e| panic!("test config: {e}"));
        let heartbeats = Heartbeats::new(None);
        let (tx, reports) = crossbeam_channel::unbounded();
        let handle = spawn(Arc::new(config), tx, heartbeats.register("quota")).expect("spawn");
        Rig { _dir: dir, accounts: dirs, handle: Some(handle), reports, got: Vec::new(), heartbeats }
    }

    fn drain(&mut self) {
        self.got.extend(self.reports.try_iter());
    }

    /// Waits for the `n`-th report (1-based) matching `f`.
    fn wait_report(
        &mut self,
        what: &str,
        n: usize,
        f: impl Fn(&str, &Result<claude_failover::quota::Windows, PollError>) -> bool,
    ) -> QuotaReport {
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.drain();
            let found: Vec<&QuotaReport> = self
                .got
                .iter()
                .filter(|r| match r {
                    QuotaReport::Polled { account, outcome, .. } => f(account, outcome),
                })
                .collect();
            if let Some(r) = found.get(n - 1) {
                return (*r).clone();
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {:?}", self.got);
            if let Ok(r) = self.reports.recv_timeout(Duration::from_millis(100)) {
                self.got.push(r);
            }
        }
    }

    fn send(&self, c: QuotaCommand) {
        self.handle.as_ref().unwrap().send(c);
    }

    /// No report and no log line may carry a token (reports checked here).
    fn assert_no_token(&mut self, tokens: &[&str]) {
        self.drain();
        let text = format!("{:?}", self.got);
        for t in tokens {
            assert!(!text.contains(t), "a report carries the token {t}: {text}");
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

fn gap(a: &Seen, b: &Seen) -> Duration {
    b.at.duration_since(a.at)
}

#[test]
fn reads_a_fresh_token_for_every_poll_and_sends_claude_code_headers() {
    let api = FakeUsage::start(reply(200, USAGE));
    let mut rig = Rig::start(&api.url, 1, |d| write_credentials(&d[0], "tok-one", in_hours(8)));
    let first = rig.wait_report("a successful poll", 1, |_, o| o.is_ok());
    let QuotaReport::Polled { account, outcome, at, next_poll_at, .. } = first;
    assert_eq!(account, "a0");
    assert!(next_poll_at > at);
    let w = outcome.unwrap();
    assert_eq!(w.five_hour.map(|w| w.utilization), Some(24.0));
    assert_eq!(w.seven_day.map(|w| w.utilization), Some(36.0));
    assert_eq!(w.other.get("seven_day_sonnet").map(|w| w.utilization), Some(1.0));
    assert!(!w.other.contains_key("seven_day_opus"));

    let seen = api.seen();
    let s = &seen[0];
    assert_eq!(s.path, "/api/oauth/usage");
    assert_eq!(s.authorization.as_deref(), Some("Bearer tok-one"));
    assert_eq!(s.user_agent.as_deref(), Some("claude-code/2.1.332"));
    assert_eq!(s.beta.as_deref(), Some("oauth-2025-04-20"));

    // Claude Code rotated the token: the next poll uses the new one.
    write_credentials(&rig.accounts[0], "tok-two", in_hours(8));
    wait_until(DEADLINE, "a poll with the new token", || {
        api.seen().iter().any(|s| s.authorization.as_deref() == Some("Bearer tok-two")).then_some(())
    });
    let seen = api.seen();
    let first_new = seen.iter().position(|s| s.authorization.as_deref() == Some("Bearer tok-two")).unwrap();
    assert!(seen[first_new..].iter().all(|s| s.authorization.as_deref() == Some("Bearer tok-two")));
    // Polls after a success are an interval (1 s, -10 % jitter) apart.
    for pair in seen.windows(2) {
        assert!(gap(&pair[0], &pair[1]) >= Duration::from_millis(850), "{pair:?}");
    }
    rig.assert_no_token(&["tok-one", "tok-two"]);
    // The role beats while it waits.
    assert!(rig.heartbeats.stale(Instant::now(), Duration::from_secs(3)).is_empty());
}

#[test]
fn a_429_with_retry_after_holds_the_next_request_back() {
    let api = FakeUsage::start(reply(200, USAGE));
    let mut limited = reply(429, r#"{"error":"rate_limited"}"#);
    limited.headers.push(("Retry-After".into(), "3".into()));
    api.then(limited);
    let mut rig = Rig::start(&api.url, 1, |d| write_credentials(&d[0], "tok-rl", in_hours(8)));
    let r = rig.wait_report("a 429", 1, |_, o| matches!(o, Err(PollError::RateLimited { retry_after: Some(_) })));
    // Asking for a poll now does not override the server's Retry-After.
    rig.send(QuotaCommand::PollNow { account: "a0".into() });
    let QuotaReport::Polled {
        at,
        next_poll_at,
        outcome: Err(PollError::RateLimited { retry_after: Some(retry_after) }),
        ..
    } = r
    else {
        unreachable!()
    };
    assert!(retry_after + Duration::from_secs(1) >= at + Duration::from_secs(3));
    assert!(next_poll_at >= retry_after);
    rig.wait_report("a poll after the 429", 1, |_, o| o.is_ok());
    let seen = api.seen();
    assert!(gap(&seen[0], &seen[1]) >= Duration::from_millis(2900), "{seen:?}");
    rig.assert_no_token(&["tok-rl"]);
}

#[test]
fn server_errors_back_off_doubling() {
    let api = FakeUsage::start(reply(500, "oops"));
    let mut rig = Rig::start(&api.url, 1, |d| write_credentials(&d[0], "tok-500", in_hours(8)));
    let seen = api.wait_requests(3);
    rig.wait_report("a server error", 1, |_, o| o == &Err(PollError::Server(500)));
    // 1 s interval: 2 s after the first failure, 4 s after the second.
    let (g1, g2) = (gap(&seen[0], &seen[1]), gap(&seen[1], &seen[2]));
    assert!(g1 >= Duration::from_millis(1900), "{g1:?}");
    assert!(g2 >= Duration::from_millis(3900), "{g2:?}");
    assert!(g2.as_secs_f64() >= 1.5 * g1.as_secs_f64(), "{g1:?} then {g2:?}");
    // Asked to, it polls at once despite the backoff; recovery is reported.
    api.set_default(reply(200, USAGE));
    rig.send(QuotaCommand::PollNow { account: "a0".into() });
    rig.wait_report("recovery", 1, |_, o| o.is_ok());
}

#[test]
fn garbage_is_reported_and_polling_goes_on() {
    let api = FakeUsage::start(reply(200, USAGE));
    api.then(reply(200, "<html>not json</html>"));
    api.then(reply(200, "[1, 2]"));
    let mut rig = Rig::start(&api.url, 1, |d| write_credentials(&d[0], "tok-g", in_hours(8)));
    rig.wait_report("garbage", 1, |_, o| matches!(o, Err(PollError::Garbage(_))));
    rig.wait_report("more garbage", 2, |_, o| matches!(o, Err(PollError::Garbage(_))));
    rig.send(QuotaCommand::PollNow { account: "a0".into() });
    rig.wait_report("a good answer after garbage", 1, |_, o| o.is_ok());
}

#[test]
fn a_slow_answer_is_a_timeout() {
    let api = FakeUsage::start(reply(200, USAGE));
    let mut slow = reply(200, USAGE);
    slow.delay = Duration::from_millis(2500);
    api.then(slow);
    let mut rig = Rig::start(&api.url, 1, |d| write_credentials(&d[0], "tok-slow", in_hours(8)));
    rig.wait_report("a timeout", 1, |_, o| o == &Err(PollError::Timeout));
    rig.wait_report("a poll after the timeout", 1, |_, o| o.is_ok());
}

#[test]
fn a_401_before_expiry_marks_the_login_revoked_and_the_token_is_not_sent_again() {
    let api = FakeUsage::start(reply(200, USAGE));
    api.then(reply(401, r#"{"error":"token expired"}"#));
    let mut rig = Rig::start(&api.url, 1, |d| write_credentials(&d[0], "tok-old", in_hours(8)));
    let QuotaReport::Polled { at, outcome, .. } =
        rig.wait_report("a 401", 1, |_, o| o == &Err(PollError::Unauthorized));
    // Fed to the coordinator's state: expiresAt is hours ahead, so the login
    // was revoked; shown as token_expired, and not eligible.
    let mut q = AccountQuota::new("a0");
    q.apply_poll(at, at, &outcome);
    assert_eq!(q.token, TokenState::Revoked { since: at });
    assert_eq!(state_name(&q, false, &QuotaConfig::default(), at), "token_expired");
    assert!(!q.to_status(false, &QuotaConfig::default(), at).eligible);
    // Several credential re-checks (1 s apart here) pass with the same
    // token: none may send it again. Letting time pass is the point here.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(api.seen().len(), 1, "{:?}", api.seen());
    // Claude Code renewed it: polling resumes with the new token.
    write_credentials(&rig.accounts[0], "tok-new", in_hours(8));
    rig.wait_report("a poll with the renewed token", 1, |_, o| o.is_ok());
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer tok-new"));
    rig.assert_no_token(&["tok-old", "tok-new"]);
}

#[test]
fn an_expired_token_makes_no_request_until_renewed() {
    let api = FakeUsage::start(reply(200, USAGE));
    let mut rig = Rig::start(&api.url, 2, |d| {
        write_credentials(&d[0], "tok-stale", SystemTime::now() - Duration::from_secs(60));
    });
    rig.wait_report("token expired", 1, |a, o| a == "a0" && o == &Err(PollError::TokenExpired));
    rig.wait_report("no credentials", 1, |a, o| a == "a1" && matches!(o, Err(PollError::NoCredentials(_))));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(api.seen().is_empty(), "{:?}", api.seen());
    write_credentials(&rig.accounts[0], "tok-fresh", in_hours(8));
    rig.wait_report("a poll once renewed", 1, |a, o| a == "a0" && o.is_ok());
    assert!(api.seen().iter().all(|s| s.authorization.as_deref() == Some("Bearer tok-fresh")));
    // Re-checks report changes only: one report per state, not one per check.
    rig.drain();
    let expired = rig
        .got
        .iter()
        .filter(|r| matches!(r, QuotaReport::Polled { outcome: Err(PollError::TokenExpired), .. }))
        .count();
    assert_eq!(expired, 1, "{:?}", rig.got);
    rig.assert_no_token(&["tok-stale", "tok-fresh"]);
}

#[test]
fn reconfigure_polls_new_accounts_and_shutdown_ends_the_thread() {
    let api = FakeUsage::start(reply(200, USAGE));
    let mut rig = Rig::start(&api.url, 1, |d| write_credentials(&d[0], "tok-a", in_hours(8)));
    rig.wait_report("a0 polled", 1, |a, o| a == "a0" && o.is_ok());
    let extra = rig._dir.path().join("b");
    std::fs::create_dir_all(&extra).unwrap();
    write_credentials(&extra, "tok-b", in_hours(8));
    let toml = format!(
        "state_dir = \"{}\"\n[quota]\nusage_url = \"{}\"\npoll_interval_secs = 60\nrequest_timeout_secs = 1\n\
         [[accounts]]\nname = \"a0\"\nconfig_dir = \"{}\"\n[[accounts]]\nname = \"b\"\nconfig_dir = \"{}\"\n",
        rig._dir.path().join("state").display(),
        api.url,
        rig.accounts[0].display(),
        extra.display()
    );
    let config = Config::from_toml(&toml, &rig._dir.path().join("config.toml")).unwrap();
    rig.send(QuotaCommand::Configure(Arc::new(config)));
    rig.wait_report("b polled", 1, |a, o| a == "b" && o.is_ok());
    // PollNow asks again at once, whatever the (now long) interval.
    let before = api.seen().len();
    rig.send(QuotaCommand::PollNow { account: "b".into() });
    api.wait_requests(before + 1);
    let started = Instant::now();
    rig.handle.take().unwrap().shutdown();
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The shared fake Anthropic API answers each account's token with its own
/// usage; the reports drive the coordinator's state to a swap decision.
#[test]
fn per_account_usage_from_the_fake_api_drives_a_swap_decision() {
    use claude_failover::quota::{should_swap, SwapDecision, SwapReason, Verdict};
    let api = kit::fake_api::FakeApi::start();
    api.set_usage("tok-alpha", 93.0, 20.0, None);
    api.set_usage("tok-beta", 10.0, 5.0, Some(2.0));
    let url = format!("{}/api/oauth/usage", api.url());
    let mut rig = Rig::start(&url, 2, |d| {
        write_credentials(&d[0], "tok-alpha", in_hours(8));
        write_credentials(&d[1], "tok-beta", in_hours(8));
    });
    let mut accounts = vec![AccountQuota::new("a0"), AccountQuota::new("a1")];
    for (i, name) in ["a0", "a1"].iter().enumerate() {
        let QuotaReport::Polled { at, outcome, .. } = rig.wait_report(name, 1, |a, o| a == *name && o.is_ok());
        accounts[i].apply_poll(at, at, &outcome);
    }
    assert_eq!(accounts[0].five_hour(SystemTime::now()), Some(93.0));
    let opus = accounts[1].windows.other.get("seven_day_opus");
    assert_eq!(opus.map(|w| w.utilization), Some(2.0));
    assert!(accounts[1].windows.five_hour.unwrap().resets_at.is_some());
    assert_eq!(
        should_swap("a0", &accounts, &QuotaConfig::default(), None, SystemTime::now()),
        Verdict::Swap(SwapDecision { to: "a1".into(), reason: SwapReason::Threshold })
    );
    assert!(api.usage_calls("tok-alpha") >= 1 && api.usage_calls("tok-beta") >= 1);
    rig.assert_no_token(&["tok-alpha", "tok-beta"]);
}
