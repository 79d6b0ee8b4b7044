//! The quota role: one thread, named "quota", that asks the usage endpoint
//! about each account on that account's schedule and reports what it got.
//!
//! Before each poll it re-reads the account's `.credentials.json` (Claude
//! Code rotates the token and rewrites the file; a cached token goes stale).
//! It never refreshes a token: an expired one means no request until the
//! file holds a new one, and a token the endpoint refused (401) is not sent
//! again. The token goes into the `Authorization` header and nowhere else:
//! not into logs, errors or reports.
//!
//! It owns the per-account [`PollSchedule`]s (only it acts on them) and
//! reports every request's outcome, plus changes of a no-request outcome
//! (token expired, no credentials), to the coordinator, which owns the
//! [`AccountQuota`](super::decide::AccountQuota) state.

use super::decide::{parse_retry_after, Jitter, PollError, PollSchedule, Windows};
use crate::claude::credentials::{Credentials, Token};
use crate::config::Config;
use crate::heartbeat::Beat;
use crossbeam_channel::{Receiver, Sender};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// The Claude Code version we present ourselves as: without a Claude Code
/// user agent the endpoint answers 429 persistently.
pub const USER_AGENT: &str = "claude-code/2.1.332";
pub const ANTHROPIC_BETA: &str = "oauth-2025-04-20";
/// A request blocks the thread; it must end well before the heartbeat goes
/// stale (20 s), whatever `request_timeout_secs` says.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Usage answers are small; anything bigger is garbage.
const MAX_BODY: u64 = 1 << 20;

/// What the coordinator asks of the quota role. Dropping the handle stops it.
#[derive(Debug, Clone)]
pub enum QuotaCommand {
    /// A reloaded config: new accounts are polled at once, removed ones
    /// forgotten, URL, interval and timeout changes apply.
    Configure(Arc<Config>),
    /// Poll this account as soon as allowed (a `Retry-After` still holds).
    PollNow { account: String },
    /// A zero-cost sample (statusline/hook `rate_limits`) for this account
    /// arrived at `at`: its next poll may wait.
    Sampled { account: String, at: SystemTime },
    /// `[fleet]`: poll only these accounts (their poll is this host's for
    /// the whole fleet); None: every account (no fleet, or etcd away).
    PollOnly(Option<std::collections::BTreeSet<String>>),
}

/// What the quota role tells the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub enum QuotaReport {
    /// One poll's outcome (or a change in why no poll can be made:
    /// `TokenExpired`, `NoCredentials`); `asked_at` is when the request went
    /// out (what makes an answer fresher than a signal), `at` when the
    /// answer came, `next_poll_at` the plan after it.
    Polled {
        account: String,
        asked_at: SystemTime,
        at: SystemTime,
        outcome: Result<Windows, PollError>,
        next_poll_at: SystemTime,
    },
}

pub struct QuotaHandle {
    commands: Sender<QuotaCommand>,
    thread: JoinHandle<()>,
}

impl QuotaHandle {
    /// Never blocks (the command channel is unbounded).
    pub fn send(&self, command: QuotaCommand) {
        if self.commands.send(command).is_err() {
            log::error!("the quota role is gone; command dropped");
        }
    }

    pub fn sender(&self) -> Sender<QuotaCommand> {
        self.commands.clone()
    }

    /// Closes the command channel and waits for the thread (at most one
    /// request timeout).
    pub fn shutdown(self) {
        drop(self.commands);
        if self.thread.join().is_err() {
            log::error!("the quota role had panicked");
        }
    }
}

/// Starts the quota role. Every configured account is polled at once, then
/// on its own schedule.
pub fn spawn(config: Arc<Config>, out: Sender<QuotaReport>, beat: Beat) -> std::io::Result<QuotaHandle> {
    let seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32);
    let (commands, rx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new().name("quota".into()).spawn(move || {
        let mut poller = Poller::new(config, out, Jitter::new(seed), SystemTime::now());
        poller.run(&rx, &beat);
    })?;
    Ok(QuotaHandle { commands, thread })
}

struct AccountPoll {
    name: String,
    config_dir: PathBuf,
    schedule: PollSchedule,
    /// A fingerprint of the token the endpoint refused (401): not sent again.
    refused: Option<u64>,
    /// The last no-request outcome reported, so that re-checking the
    /// credentials every few seconds reports changes only.
    reported: Option<PollError>,
}

struct Poller {
    config: Arc<Config>,
    agent: ureq::Agent,
    accounts: Vec<AccountPoll>,
    jitter: Jitter,
    out: Sender<QuotaReport>,
    /// Only these accounts are polled (see [`QuotaCommand::PollOnly`]).
    only: Option<std::collections::BTreeSet<String>>,
}

impl Poller {
    fn new(config: Arc<Config>, out: Sender<QuotaReport>, jitter: Jitter, now: SystemTime) -> Poller {
        let mut p = Poller {
            agent: agent(&config),
            config: Arc::clone(&config),
            accounts: Vec::new(),
            jitter,
            out,
            only: None,
        };
        // In a fleet, nothing is polled until the fleet says whose polls
        // are this host's (or that etcd is away): a start must not poll
        // what another host polls already.
        if config.fleet.is_some() {
            p.only = Some(Default::default());
        }
        p.configure(config, now);
        p
    }

    fn run(&mut self, rx: &Receiver<QuotaCommand>, beat: &Beat) {
        let asks = beat.asks();
        loop {
            beat.beat();
            let now = SystemTime::now();
            for i in 0..self.accounts.len() {
                if self.accounts[i].schedule.next_at <= now && self.polled(i) {
                    if !self.poll(i, SystemTime::now()) {
                        return;
                    }
                    beat.beat();
                }
            }
            let now = SystemTime::now();
            let wait = (0..self.accounts.len())
                .filter(|i| self.polled(*i))
                .map(|i| self.accounts[i].schedule.next_at.duration_since(now).unwrap_or_default())
                .min();
            let next_poll = wait.map_or_else(crossbeam_channel::never, crossbeam_channel::after);
            crossbeam_channel::select! {
                recv(rx) -> command => match command {
                    Ok(command) => self.command(command, SystemTime::now()),
                    Err(_) => return,
                },
                recv(next_poll) -> _ => {}
                recv(asks) -> _ => {}
            }
        }
    }

    fn polled(&self, i: usize) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(&self.accounts[i].name))
    }

    fn command(&mut self, command: QuotaCommand, now: SystemTime) {
        match command {
            QuotaCommand::PollOnly(only) => {
                // An account that becomes this host's to poll is asked at
                // once: the fleet's reading of it may be a poll old.
                for a in &mut self.accounts {
                    let newly = only.as_ref().is_none_or(|o| o.contains(&a.name))
                        && self.only.as_ref().is_some_and(|o| !o.contains(&a.name));
                    if newly {
                        a.schedule.poll_now(now);
                    }
                }
                self.only = only;
            }
            QuotaCommand::Configure(config) => self.configure(config, now),
            QuotaCommand::PollNow { account } => {
                if let Some(a) = self.accounts.iter_mut().find(|a| a.name == account) {
                    a.schedule.poll_now(now);
                }
            }
            QuotaCommand::Sampled { account, at } => {
                let quota = &self.config.quota;
                if let Some(a) = self.accounts.iter_mut().find(|a| a.name == account) {
                    a.schedule.sampled(at, quota);
                }
            }
        }
    }

    fn configure(&mut self, config: Arc<Config>, now: SystemTime) {
        self.agent = agent(&config);
        let mut old = std::mem::take(&mut self.accounts);
        // An api_key account has no subscription usage to ask about.
        for ac in config.accounts.iter().filter(|a| !a.is_api_key()) {
            let kept =
                old.iter().position(|a| a.name == ac.name && a.config_dir == ac.config_dir).map(|i| old.swap_remove(i));
            self.accounts.push(kept.unwrap_or_else(|| AccountPoll {
                name: ac.name.clone(),
                config_dir: ac.config_dir.clone(),
                schedule: PollSchedule::new(now),
                refused: None,
                reported: None,
            }));
        }
        self.config = config;
    }

    /// Polls account `i` (or re-reads its credentials when it cannot be
    /// polled) and reports. False when the coordinator is gone.
    fn poll(&mut self, i: usize, now: SystemTime) -> bool {
        let quota = &self.config.quota;
        let account = &mut self.accounts[i];
        let outcome = match read_token(&account.config_dir, now) {
            Err(e) => Err(e),
            Ok(token) if account.refused == Some(fingerprint(token.secret())) => {
                // Still the token the endpoint refused: wait for a new one,
                // quietly.
                account.schedule.record(&Err::<(), _>(PollError::TokenExpired), quota, &mut self.jitter, now);
                return true;
            }
            Ok(token) => {
                let secret = token.secret();
                let outcome = request(&self.agent, &quota.usage_url, secret);
                account.refused = matches!(outcome, Err(PollError::Unauthorized)).then(|| fingerprint(secret));
                outcome.map_err(|e| redact(e, secret))
            }
        };
        // Spaced from the answer, not the question: a slow answer must not
        // shorten the gap the server sees.
        let asked_at = now;
        let now = SystemTime::now();
        account.schedule.record(&outcome, quota, &mut self.jitter, now);
        let next_poll_at = account.schedule.next_at;
        match &outcome {
            Err(e) if e.no_request() => {
                if account.reported.as_ref() == Some(e) {
                    return true;
                }
                log::warn!("account {}: {e}", account.name);
                account.reported = Some(e.clone());
            }
            Err(e) => {
                account.reported = None;
                log::warn!("account {}: usage poll failed: {e}", account.name);
            }
            Ok(_) => {
                account.reported = None;
                log::debug!("account {}: usage polled", account.name);
            }
        }
        let report = QuotaReport::Polled { account: account.name.clone(), asked_at, at: now, outcome, next_poll_at };
        self.out.send(report).is_ok()
    }
}

fn agent(config: &Config) -> ureq::Agent {
    let timeout = config.quota.request_timeout().min(MAX_REQUEST_TIMEOUT);
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(USER_AGENT)
        .build()
        .into()
}

/// One `GET usage_url` with `token`, classified.
fn request(agent: &ureq::Agent, url: &str, token: &str) -> Result<Windows, PollError> {
    let response = agent
        .get(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("anthropic-beta", ANTHROPIC_BETA)
        .header("Accept", "application/json")
        .call();
    let mut response = match response {
        Ok(r) => r,
        Err(e) => return Err(transport_error(e)),
    };
    let status = response.status().as_u16();
    match status {
        200..=299 => {
            let body = response.body_mut().with_config().limit(MAX_BODY).read_to_string().map_err(transport_error)?;
            parse_usage(&body).map_err(PollError::Garbage)
        }
        401 => Err(PollError::Unauthorized),
        429 => Err(PollError::RateLimited {
            retry_after: response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
        }),
        500..=599 => Err(PollError::Server(status)),
        _ => Err(PollError::Status(status)),
    }
}

fn transport_error(e: ureq::Error) -> PollError {
    match e {
        ureq::Error::Timeout(_) => PollError::Timeout,
        ureq::Error::Io(io) if matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
            PollError::Timeout
        }
        ureq::Error::BodyExceedsLimit(_) => PollError::Garbage(format!("answer longer than {MAX_BODY} bytes")),
        other => PollError::Network(other.to_string()),
    }
}

/// Belt and braces: no error text may carry the token, whatever a library
/// put in it.
fn redact(e: PollError, token: &str) -> PollError {
    let clean = |s: String| s.replace(token, "***");
    match e {
        PollError::Network(s) => PollError::Network(clean(s)),
        PollError::Garbage(s) => PollError::Garbage(clean(s)),
        PollError::NoCredentials(s) => PollError::NoCredentials(clean(s)),
        other => other,
    }
}

fn fingerprint(token: &str) -> u64 {
    let mut h = DefaultHasher::new();
    token.hash(&mut h);
    h.finish()
}

/// The access token, when there is one that has not expired. It leaves
/// this function only to go into the `Authorization` header.
fn read_token(config_dir: &Path, now: SystemTime) -> Result<Token, PollError> {
    let creds = Credentials::read(config_dir).map_err(|e| PollError::NoCredentials(e.to_string()))?;
    if creds.is_expired(now) {
        return Err(PollError::TokenExpired);
    }
    Ok(creds.access_token)
}

fn parse_usage(body: &str) -> Result<Windows, String> {
    crate::claude::usage::parse(body).map(|usage| Windows::from(&usage)).map_err(|e| e.to_string())
}
