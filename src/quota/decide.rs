//! The quota decisions, as plain functions of per-account state and an
//! injected `now`: which accounts may take the sessions, whether a limit seen
//! somewhere is real, whether and where to swap, and when to poll next.
//!
//! No I/O and no clock here. The coordinator owns one [`AccountQuota`] per
//! account and feeds it poll reports, statusline samples and hard-limit
//! signals; the quota poller owns one [`PollSchedule`] per account.
//!
//! Choices worth knowing:
//! - A window whose `resets_at` has passed counts as 0 %: it has reset, even
//!   if no poll has said so yet. That is what lets failback happen on time.
//! - An account never polled is not eligible (`Unknown`), and neither is one
//!   whose access token expired (`TokenExpired`): we cannot vouch for their
//!   headroom. Both are *soft* reasons. A swap the active account cannot avoid
//!   (a hard limit, or a threshold crossing with nowhere better to go) falls
//!   back to a soft-ineligible account rather than stopping all work: a
//!   standby account runs no Claude Code, so its token expires after some
//!   hours and is refreshed only when Claude Code starts there; refusing such
//!   accounts would strand every overnight failover. Failback and projected
//!   swaps go only to accounts known to have headroom.
//! - The active account's own token state never causes a swap: the sessions
//!   running there refresh it.

use crate::config::QuotaConfig;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime};

/// Backoff after failed polls never grows beyond this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// A `Retry-After` further out than this is treated as this (a garbled date
/// must not silence an account for days).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);
/// How often an account whose token cannot be used has its credentials
/// file re-read (no request is made), at most.
pub const TOKEN_RECHECK: Duration = Duration::from_secs(30);
/// Zero-cost samples may push the next poll back, but never further than
/// this many poll intervals after the last successful poll: statusline data
/// lacks the `seven_day_*` windows.
pub const MAX_DEFER_INTERVALS: u32 = 3;
/// Jitter spreads polls over ±this fraction of the interval.
pub const JITTER: f64 = 0.1;
/// Five-hour samples older than this do not count for the burn rate.
pub const BURN_WINDOW: Duration = Duration::from_secs(30 * 60);
/// The burn rate needs samples spanning at least this long.
pub const BURN_MIN_SPAN: Duration = Duration::from_secs(60);
/// Accounts whose every window is below this are "roomy" and all equal:
/// among them priority order decides. Among tighter ones, headroom decides.
pub const ROOMY_BELOW: f64 = 50.0;
/// Two hard-limit signals from different sources confirm each other when
/// they are at most this far apart.
pub const CONFIRM_WINDOW: Duration = Duration::from_secs(10 * 60);
/// A confirmed hard limit with no known reset time holds the account this long.
pub const UNKNOWN_RESET_HOLD: Duration = Duration::from_secs(3600);

/// One usage window: percent used (0–100) and when it resets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub utilization: f64,
    pub resets_at: Option<SystemTime>,
}

impl Window {
    /// The utilization as of `now`: 0 once its reset time has passed.
    pub fn current(&self, now: SystemTime) -> f64 {
        match self.resets_at {
            Some(reset) if reset <= now => 0.0,
            _ => self.utilization,
        }
    }
}

/// The usage windows of one account, as the usage endpoint names them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Windows {
    pub five_hour: Option<Window>,
    pub seven_day: Option<Window>,
    /// `seven_day_opus`, `seven_day_sonnet`, ... and keys not known yet.
    pub other: BTreeMap<String, Window>,
}

impl Windows {
    /// Sorts named windows into place: `five_hour`, `seven_day`, the rest
    /// under their names. Takes the usage answer's windows and the
    /// statusline's `rate_limits` alike.
    pub fn from_named<'a>(windows: impl IntoIterator<Item = (&'a str, f64, Option<SystemTime>)>) -> Windows {
        let mut out = Windows::default();
        for (name, utilization, resets_at) in windows {
            let w = Window { utilization, resets_at };
            match name {
                "five_hour" => out.five_hour = Some(w),
                "seven_day" => out.seven_day = Some(w),
                other => {
                    out.other.insert(other.to_string(), w);
                }
            }
        }
        out
    }

    /// The windows the weekly threshold applies to: `seven_day` and every
    /// `seven_day_*`.
    pub fn weekly(&self) -> impl Iterator<Item = (&str, &Window)> {
        self.seven_day
            .iter()
            .map(|w| ("seven_day", w))
            .chain(self.other.iter().filter(|(k, _)| k.starts_with("seven_day_")).map(|(k, w)| (k.as_str(), w)))
    }

    fn all(&self) -> impl Iterator<Item = (&str, &Window)> {
        self.five_hour.iter().map(|w| ("five_hour", w)).chain(self.weekly())
    }
}

impl From<&crate::claude::usage::Usage> for Windows {
    fn from(usage: &crate::claude::usage::Usage) -> Windows {
        Windows::from_named(usage.windows.iter().map(|w| (w.name.as_str(), w.utilization, w.resets_at)))
    }
}

impl From<&[crate::claude::hook::RateLimit]> for Windows {
    /// The statusline's `rate_limits`, for [`AccountQuota::apply_sample`].
    fn from(limits: &[crate::claude::hook::RateLimit]) -> Windows {
        Windows::from_named(limits.iter().map(|r| (r.window.as_str(), r.used_percentage, r.resets_at)))
    }
}

/// Whether the account's access token can be used for a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Ok,
    /// `expiresAt` passed, or the endpoint answered 401. Claude Code renews
    /// it when it next runs there; the daemon never does.
    Expired,
    /// No credentials file, or no access token in it: nobody is logged in.
    Missing,
}

/// Why a poll brought no windows. Never carries the token.
#[derive(Debug, Clone, PartialEq)]
pub enum PollError {
    /// 429; `retry_after` is the absolute time from `Retry-After`, if any.
    RateLimited { retry_after: Option<SystemTime> },
    /// 5xx.
    Server(u16),
    /// Any other unexpected status (403, 404, ...).
    Status(u16),
    /// 401: the token is expired or revoked.
    Unauthorized,
    /// The credentials say the token expired: no request was made.
    TokenExpired,
    /// No usable credentials file (the text says why): no request was made.
    NoCredentials(String),
    /// A 200 whose body is not a usage answer.
    Garbage(String),
    /// No answer within `request_timeout_secs`.
    Timeout,
    /// Connection refused, DNS, TLS ...
    Network(String),
}

impl PollError {
    /// True for the outcomes that made no request (credentials only).
    pub fn no_request(&self) -> bool {
        matches!(self, PollError::TokenExpired | PollError::NoCredentials(_))
    }

    /// The token state this outcome shows, if it says anything about it.
    pub fn token_state(&self) -> Option<TokenState> {
        match self {
            PollError::Unauthorized | PollError::TokenExpired => Some(TokenState::Expired),
            PollError::NoCredentials(_) => Some(TokenState::Missing),
            _ => None,
        }
    }

    /// Failures that back off exponentially.
    fn backs_off(&self) -> bool {
        matches!(
            self,
            PollError::RateLimited { .. }
                | PollError::Server(_)
                | PollError::Status(_)
                | PollError::Garbage(_)
                | PollError::Timeout
                | PollError::Network(_)
        )
    }
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollError::RateLimited { retry_after: None } => {
                write!(f, "usage endpoint answered 429 (rate limited)")
            }
            PollError::RateLimited { retry_after: Some(t) } => {
                write!(f, "usage endpoint answered 429 (rate limited), retry after {}", crate::time::rfc3339(*t))
            }
            PollError::Server(code) => write!(f, "usage endpoint answered {code} (server error)"),
            PollError::Status(code) => write!(f, "usage endpoint answered {code}"),
            PollError::Unauthorized => write!(
                f,
                "usage endpoint answered 401: the access token is expired or revoked \
                 (Claude Code renews it when it next runs on this account)"
            ),
            PollError::TokenExpired => write!(
                f,
                "the access token in .credentials.json has expired; not polling until \
                 Claude Code renews it"
            ),
            PollError::NoCredentials(why) => write!(f, "no usable credentials: {why}"),
            PollError::Garbage(why) => write!(f, "usage answer not understood: {why}"),
            PollError::Timeout => write!(f, "usage endpoint did not answer in time"),
            PollError::Network(why) => write!(f, "usage endpoint unreachable: {why}"),
        }
    }
}

impl std::error::Error for PollError {}

/// Where a hard-limit sighting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// `StopFailure` with `error: "rate_limit"` (live: hooks do not replay).
    Hook,
    /// A transcript record with `quotaLimits.status == "rejected"`.
    Transcript,
    /// "You've hit your … limit" and the like on screen.
    Pane,
    /// The usage endpoint shows a window at 100 %.
    Poll,
}

/// One sighting of a hard quota limit.
///
/// Contract for whoever builds these: only a *rejection* is a hard limit.
/// "Approaching … limit" warnings, "Server is temporarily limiting requests
/// (not your usage limit)", a 429 or 529 that Claude Code retries, and an
/// `"error": "rate_limit"` record without `quotaLimits.status == "rejected"`
/// are not limits and must never be turned into a signal.
#[derive(Debug, Clone, PartialEq)]
pub struct HardLimitSignal {
    pub account: String,
    pub source: LimitSource,
    /// When the daemon saw it.
    pub at: SystemTime,
    /// When the limit lifts, if the source says.
    pub resets_at: Option<SystemTime>,
    /// When the record was written (transcript timestamp, hook arrival);
    /// None for pane text, which carries no time.
    pub record_time: Option<SystemTime>,
    /// The session it was seen in (None for a poll).
    pub session: Option<String>,
}

/// Is this sighting a real limit? `recent` holds other sightings for any
/// account (this one excluded or not: it is skipped); `last_launch` is when
/// the signal's session was last launched or resumed.
///
/// - A poll at 100 % is the server's current word: confirmed by itself.
/// - A reset time already past means an old message: never confirmed.
/// - A hook or transcript record written after the session's last launch
///   cannot be a replay from `--resume`: confirmed.
/// - Otherwise (pane text, or a record of unknown age) it needs a sighting
///   from another source for the same account within [`CONFIRM_WINDOW`].
pub fn confirm_hard_limit(
    signal: &HardLimitSignal,
    recent: &[HardLimitSignal],
    last_launch: Option<SystemTime>,
    now: SystemTime,
) -> bool {
    if signal.resets_at.is_some_and(|r| r <= now) {
        return false;
    }
    if signal.source == LimitSource::Poll {
        return true;
    }
    let live_record = matches!(signal.source, LimitSource::Hook | LimitSource::Transcript)
        && match (signal.record_time, last_launch) {
            (Some(written), Some(launch)) => written > launch,
            _ => false,
        };
    if live_record {
        return true;
    }
    recent.iter().any(|other| {
        other.account == signal.account
            && other.source != signal.source
            && other.resets_at.is_none_or(|r| r > now)
            && gap(other.at, signal.at) <= CONFIRM_WINDOW
    })
}

fn gap(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b).or_else(|_| b.duration_since(a)).unwrap_or_default()
}

/// Everything the coordinator knows about one account's quota.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountQuota {
    pub name: String,
    pub windows: Windows,
    /// When `windows` were last updated (poll or zero-cost sample); None
    /// while nothing is known.
    pub windows_at: Option<SystemTime>,
    pub last_poll_at: Option<SystemTime>,
    /// The last poll (or credentials check) failed, and how.
    pub last_error: Option<PollError>,
    pub token: TokenState,
    /// A confirmed hard limit holds the account until then.
    pub exhausted_until: Option<SystemTime>,
    /// Five-hour utilization samples, oldest first, for the burn rate.
    pub samples: VecDeque<(SystemTime, f64)>,
    /// Hard-limit sightings not confirmed yet (kept [`CONFIRM_WINDOW`]).
    pub sightings: Vec<HardLimitSignal>,
    /// When the poller plans to ask next (for information only).
    pub next_poll_at: Option<SystemTime>,
}

impl AccountQuota {
    pub fn new(name: &str) -> AccountQuota {
        AccountQuota {
            name: name.into(),
            windows: Windows::default(),
            windows_at: None,
            last_poll_at: None,
            last_error: None,
            token: TokenState::Ok,
            exhausted_until: None,
            samples: VecDeque::new(),
            sightings: Vec::new(),
            next_poll_at: None,
        }
    }

    /// A poll report. A window at 100 % is a hard limit (the server says so
    /// now), held until that window resets.
    pub fn apply_poll(&mut self, at: SystemTime, outcome: &Result<Windows, PollError>) {
        match outcome {
            Ok(windows) => {
                self.last_poll_at = Some(at);
                self.last_error = None;
                self.token = TokenState::Ok;
                self.windows = windows.clone();
                self.windows_at = Some(at);
                if let Some(w) = windows.five_hour {
                    self.sample(at, w.current(at));
                }
                let full = windows
                    .all()
                    .filter(|(_, w)| w.current(at) >= 100.0)
                    .map(|(_, w)| w.resets_at.unwrap_or(at + UNKNOWN_RESET_HOLD))
                    .max();
                if let Some(until) = full {
                    self.exhausted_until = Some(self.exhausted_until.map_or(until, |u| u.max(until)));
                }
            }
            Err(e) => {
                if !e.no_request() {
                    self.last_poll_at = Some(at);
                }
                if let Some(state) = e.token_state() {
                    self.token = state;
                }
                self.last_error = Some(e.clone());
            }
        }
    }

    /// Zero-cost windows (statusline or hook `rate_limits`: `five_hour` and
    /// `seven_day` only). Older than what we have: ignored.
    pub fn apply_sample(&mut self, at: SystemTime, sample: &Windows) {
        if self.windows_at.is_some_and(|t| t > at) {
            return;
        }
        if let Some(w) = sample.five_hour {
            self.windows.five_hour = Some(w);
            self.sample(at, w.current(at));
        }
        if let Some(w) = sample.seven_day {
            self.windows.seven_day = Some(w);
        }
        if sample.five_hour.is_some() || sample.seven_day.is_some() {
            self.windows_at = Some(at);
        }
    }

    /// A hard-limit sighting for this account. Returns true when it is
    /// confirmed (see [`confirm_hard_limit`]); the account is then exhausted
    /// until the limit's reset (or the five-hour reset, or an hour).
    pub fn sighting(&mut self, signal: HardLimitSignal, last_launch: Option<SystemTime>, now: SystemTime) -> bool {
        self.sightings.retain(|s| gap(s.at, now) <= CONFIRM_WINDOW);
        let confirmed = confirm_hard_limit(&signal, &self.sightings, last_launch, now);
        if confirmed {
            let fallback = self
                .windows
                .five_hour
                .and_then(|w| w.resets_at)
                .filter(|r| *r > now)
                .unwrap_or(now + UNKNOWN_RESET_HOLD);
            let until = signal.resets_at.unwrap_or(fallback);
            self.exhausted_until = Some(self.exhausted_until.map_or(until, |u| u.max(until)));
            self.sightings.clear();
        } else {
            self.sightings.push(signal);
        }
        confirmed
    }

    /// The five-hour utilization as of `now` (0 after its reset).
    pub fn five_hour(&self, now: SystemTime) -> Option<f64> {
        self.windows.five_hour.map(|w| w.current(now))
    }

    /// True while a confirmed hard limit holds.
    pub fn exhausted(&self, now: SystemTime) -> bool {
        self.exhausted_until.is_some_and(|u| u > now)
    }

    /// Percent per second over the recent samples, when they rise over a
    /// long enough span.
    pub fn burn_rate(&self, now: SystemTime) -> Option<f64> {
        let recent: Vec<&(SystemTime, f64)> =
            self.samples.iter().filter(|(t, _)| gap(*t, now) <= BURN_WINDOW).collect();
        let (first, last) = (recent.first()?, recent.last()?);
        let span = last.0.duration_since(first.0).ok()?;
        if span < BURN_MIN_SPAN {
            return None;
        }
        let rate = (last.1 - first.1) / span.as_secs_f64();
        (rate > 0.0).then_some(rate)
    }

    /// The five-hour utilization expected at `at` at the current burn rate.
    pub fn projected_five_hour(&self, now: SystemTime, at: SystemTime) -> Option<f64> {
        let rate = self.burn_rate(now)?;
        let (t, u) = *self.samples.back()?;
        let ahead = at.duration_since(t).ok()?.as_secs_f64();
        // A reset before `at` makes the projection meaningless.
        if self.windows.five_hour.and_then(|w| w.resets_at).is_some_and(|r| r <= at) {
            return None;
        }
        Some(u + rate * ahead)
    }

    fn sample(&mut self, at: SystemTime, utilization: f64) {
        // A drop means the window reset: older samples describe another window.
        if self.samples.back().is_some_and(|(_, u)| utilization < *u) {
            self.samples.clear();
        }
        if self.samples.back().is_some_and(|(t, _)| *t > at) {
            return;
        }
        self.samples.push_back((at, utilization));
        while self.samples.front().is_some_and(|(t, _)| gap(*t, at) > BURN_WINDOW) {
            self.samples.pop_front();
        }
    }

    /// This account as `/status` shows it.
    pub fn to_status(&self, active: bool, config: &QuotaConfig, now: SystemTime) -> crate::status::AccountStatus {
        let window = |w: &Window| crate::status::Window {
            utilization: w.utilization,
            resets_at: w.resets_at.map(crate::time::rfc3339),
        };
        crate::status::AccountStatus {
            name: self.name.clone(),
            state: state_name(self, active, config, now).into(),
            eligible: eligible(self, config, now).is_ok(),
            five_hour: self.windows.five_hour.as_ref().map(window),
            seven_day: self.windows.seven_day.as_ref().map(window),
            other_windows: self.windows.other.iter().map(|(k, w)| (k.clone(), window(w))).collect(),
            last_poll_at: self.last_poll_at.map(crate::time::rfc3339),
            last_error: self.last_error.as_ref().map(|e| e.to_string()),
            exhausted_until: self.exhausted_until.filter(|u| *u > now).map(crate::time::rfc3339),
        }
    }

    /// The smallest room left under a threshold, in percentage points.
    fn headroom(&self, config: &QuotaConfig, now: SystemTime) -> f64 {
        let five = config.five_hour_threshold - self.five_hour(now).unwrap_or(0.0);
        let weekly =
            self.windows.weekly().map(|(_, w)| config.weekly_threshold - w.current(now)).fold(f64::INFINITY, f64::min);
        five.min(weekly)
    }

    fn roomy(&self, now: SystemTime) -> bool {
        self.windows.all().all(|(_, w)| w.current(now) < ROOMY_BELOW)
    }
}

/// Why an account may not take the sessions now.
#[derive(Debug, Clone, PartialEq)]
pub enum Ineligible {
    /// Nobody is logged in there.
    TokenMissing,
    /// A confirmed hard limit holds until then.
    Exhausted {
        until: SystemTime,
    },
    FiveHour {
        utilization: f64,
        threshold: f64,
    },
    Weekly {
        window: String,
        utilization: f64,
        threshold: f64,
    },
    /// Soft: never polled, nothing known.
    Unknown,
    /// Soft: the token expired, so we cannot poll; Claude Code renews it on
    /// launch. The last known windows were fine.
    TokenExpired,
}

impl Ineligible {
    /// Soft reasons: the account may still take a swap that cannot wait.
    pub fn is_soft(&self) -> bool {
        matches!(self, Ineligible::Unknown | Ineligible::TokenExpired)
    }
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ineligible::TokenMissing => write!(f, "no credentials (nobody is logged in)"),
            Ineligible::Exhausted { until } => {
                write!(f, "quota limit hit, resets {}", crate::time::rfc3339(*until))
            }
            Ineligible::FiveHour { utilization, threshold } => {
                write!(f, "five_hour at {utilization:.1} % (threshold {threshold:.1} %)")
            }
            Ineligible::Weekly { window, utilization, threshold } => {
                write!(f, "{window} at {utilization:.1} % (threshold {threshold:.1} %)")
            }
            Ineligible::Unknown => write!(f, "usage not known yet (never polled)"),
            Ineligible::TokenExpired => write!(f, "access token expired (usage cannot be checked)"),
        }
    }
}

/// May this account take the sessions now? Hard reasons are checked first,
/// so a soft `Err` means nothing else is known against it.
pub fn eligible(q: &AccountQuota, config: &QuotaConfig, now: SystemTime) -> Result<(), Ineligible> {
    if q.token == TokenState::Missing {
        return Err(Ineligible::TokenMissing);
    }
    if let Some(until) = q.exhausted_until.filter(|u| *u > now) {
        return Err(Ineligible::Exhausted { until });
    }
    if let Some(u) = q.five_hour(now).filter(|u| *u >= config.five_hour_threshold) {
        return Err(Ineligible::FiveHour { utilization: u, threshold: config.five_hour_threshold });
    }
    if let Some((name, w)) = q.windows.weekly().find(|(_, w)| w.current(now) >= config.weekly_threshold) {
        return Err(Ineligible::Weekly {
            window: name.into(),
            utilization: w.current(now),
            threshold: config.weekly_threshold,
        });
    }
    if q.windows_at.is_none() {
        return Err(Ineligible::Unknown);
    }
    if q.token == TokenState::Expired {
        return Err(Ineligible::TokenExpired);
    }
    Ok(())
}

/// The account `state` of `/status`: `token_expired` (can't be polled),
/// then `exhausted` (a hard limit holds, or — for a standby — a threshold is
/// crossed), then `active`, then `error` (the last poll failed), `standby`.
pub fn state_name(q: &AccountQuota, active: bool, config: &QuotaConfig, now: SystemTime) -> &'static str {
    if q.token != TokenState::Ok {
        return "token_expired";
    }
    if q.exhausted(now) {
        return "exhausted";
    }
    if active {
        return "active";
    }
    if matches!(eligible(q, config, now), Err(Ineligible::FiveHour { .. } | Ineligible::Weekly { .. })) {
        return "exhausted";
    }
    if q.last_error.is_some() {
        return "error";
    }
    "standby"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapReason {
    /// A confirmed hard limit on the active account: swap now.
    HardLimit,
    /// The active account crossed a threshold.
    Threshold,
    /// At the current burn rate it will cross one before the next poll.
    Projected,
    /// The first account is eligible again.
    Failback,
}

impl SwapReason {
    /// As in `/status` `swap.last.reason` and the failovers metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SwapReason::HardLimit => "hard_limit",
            SwapReason::Threshold => "threshold",
            SwapReason::Projected => "projected",
            SwapReason::Failback => "failback",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapDecision {
    pub to: String,
    pub reason: SwapReason,
}

/// What [`should_swap`] concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Stay,
    Swap(SwapDecision),
    /// The active account must be left but no account can take over.
    /// The coordinator raises `all_accounts_exhausted` once per episode
    /// (not on every evaluation) and, for `HardLimit`, pauses dispatch.
    AllExhausted(SwapReason),
}

/// Should the sessions leave `active`, and for which account? `accounts` is
/// in priority (config) order; `last_swap_at` is when the last swap started.
pub fn should_swap(
    active: &str,
    accounts: &[AccountQuota],
    config: &QuotaConfig,
    last_swap_at: Option<SystemTime>,
    now: SystemTime,
) -> Verdict {
    let Some(current) = accounts.iter().find(|a| a.name == active) else {
        return Verdict::Stay;
    };
    let dwelt = last_swap_at.is_none_or(|t| now >= t + config.min_dwell());
    let reason = if current.exhausted(now) {
        SwapReason::HardLimit
    } else if !dwelt {
        return Verdict::Stay;
    } else if matches!(eligible(current, config, now), Err(Ineligible::FiveHour { .. } | Ineligible::Weekly { .. })) {
        SwapReason::Threshold
    } else if current
        .projected_five_hour(now, now + config.poll_interval())
        .is_some_and(|u| u >= config.five_hour_threshold)
    {
        SwapReason::Projected
    } else if config.failback
        && accounts.first().is_some_and(|first| {
            first.name != active && eligible(first, config, now).is_ok() && !projected_over(first, config, now)
        })
    {
        return Verdict::Swap(SwapDecision { to: accounts[0].name.clone(), reason: SwapReason::Failback });
    } else {
        return Verdict::Stay;
    };

    let others = || accounts.iter().filter(|a| a.name != active);
    let known: Vec<&AccountQuota> = others()
        .filter(|a| eligible(a, config, now).is_ok())
        .filter(|a| reason != SwapReason::Projected || !projected_over(a, config, now))
        .collect();
    if let Some(to) = best(&known, config, now) {
        return Verdict::Swap(SwapDecision { to: to.name.clone(), reason });
    }
    if reason == SwapReason::Projected {
        // Nowhere better to go: keep working until a threshold says more.
        return Verdict::Stay;
    }
    let soft = others().find(|a| eligible(a, config, now).is_err_and(|why| why.is_soft()));
    match soft {
        Some(to) => Verdict::Swap(SwapDecision { to: to.name.clone(), reason }),
        None => Verdict::AllExhausted(reason),
    }
}

fn projected_over(q: &AccountQuota, config: &QuotaConfig, now: SystemTime) -> bool {
    q.projected_five_hour(now, now + config.poll_interval()).is_some_and(|u| u >= config.five_hour_threshold)
}

/// Roomy accounts (every window under [`ROOMY_BELOW`]) are equals: the first
/// in priority order wins. Without a roomy one, most headroom wins, priority
/// breaking ties.
fn best<'a>(candidates: &[&'a AccountQuota], config: &QuotaConfig, now: SystemTime) -> Option<&'a AccountQuota> {
    if let Some(roomy) = candidates.iter().find(|a| a.roomy(now)) {
        return Some(roomy);
    }
    let mut best: Option<&AccountQuota> = None;
    for c in candidates {
        if best.is_none_or(|b| c.headroom(config, now) > b.headroom(config, now)) {
            best = Some(c);
        }
    }
    best
}

/// A small deterministic generator for poll jitter (xorshift64*): the same
/// seed gives the same schedule, so tests can check it.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// A number in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The poller's plan for one account.
#[derive(Debug, Clone, PartialEq)]
pub struct PollSchedule {
    pub next_at: SystemTime,
    /// Consecutive failed polls (for the backoff).
    pub failures: u32,
    /// A server-given `Retry-After`: nothing is sent before it, even on request.
    pub not_before: Option<SystemTime>,
    pub last_ok_at: Option<SystemTime>,
}

impl PollSchedule {
    /// The first poll is due at once.
    pub fn new(now: SystemTime) -> PollSchedule {
        PollSchedule { next_at: now, failures: 0, not_before: None, last_ok_at: None }
    }

    /// After a poll (or a credentials check) at `now` with this outcome.
    pub fn record<T>(
        &mut self,
        outcome: &Result<T, PollError>,
        config: &QuotaConfig,
        jitter: &mut Jitter,
        now: SystemTime,
    ) {
        match outcome {
            Ok(_) => {
                self.failures = 0;
                self.last_ok_at = Some(now);
            }
            Err(e) if e.backs_off() => self.failures = self.failures.saturating_add(1),
            Err(_) => {}
        }
        self.not_before = match outcome {
            Err(PollError::RateLimited { retry_after: Some(t) }) => Some((*t).min(now + MAX_RETRY_AFTER)),
            _ => None,
        };
        let err = outcome.as_ref().err();
        self.next_at = next_poll_at(err, self.failures, config, jitter.next_unit(), now);
    }

    /// `PollNow`: due at once, unless the server asked us to wait.
    pub fn poll_now(&mut self, now: SystemTime) {
        self.next_at = self.not_before.map_or(now, |t| t.max(now));
    }

    /// A zero-cost sample at `at` may push the next poll back (see
    /// [`defer_after_sample`]).
    pub fn sampled(&mut self, at: SystemTime, config: &QuotaConfig) {
        if self.failures == 0 {
            self.next_at = defer_after_sample(self.next_at, at, self.last_ok_at, config);
        }
    }
}

/// When to ask next after a poll at `now` that ended with `error` (None:
/// success), `failures` consecutive failures included; `unit` is a jitter
/// draw in [0, 1).
///
/// - success: the interval ± [`JITTER`];
/// - 429/5xx/timeouts/garbage: interval × 2^failures, capped at
///   [`MAX_BACKOFF`], and never before a `Retry-After` (capped at
///   [`MAX_RETRY_AFTER`]); jitter only adds here;
/// - an expired or missing token: re-read the credentials within
///   [`TOKEN_RECHECK`] (no request is made until the token changes).
pub fn next_poll_at(
    error: Option<&PollError>,
    failures: u32,
    config: &QuotaConfig,
    unit: f64,
    now: SystemTime,
) -> SystemTime {
    let interval = config.poll_interval();
    let Some(error) = error else {
        let spread = interval.as_secs_f64() * JITTER * (2.0 * unit - 1.0);
        return now + Duration::from_secs_f64((interval.as_secs_f64() + spread).max(0.0));
    };
    if !error.backs_off() {
        return now + interval.min(TOKEN_RECHECK);
    }
    let factor = 2u32.saturating_pow(failures.min(20));
    let backoff = interval.saturating_mul(factor).min(MAX_BACKOFF.max(interval));
    let backoff = backoff + backoff.mul_f64(JITTER * unit);
    let mut at = now + backoff;
    if let PollError::RateLimited { retry_after: Some(t) } = error {
        at = at.max((*t).min(now + MAX_RETRY_AFTER));
    }
    at
}

/// A fresh zero-cost sample at `at` makes a poll less urgent: the next poll
/// moves to `at + interval`, but never beyond [`MAX_DEFER_INTERVALS`]
/// intervals after the last successful poll, and never earlier than planned.
pub fn defer_after_sample(
    next_at: SystemTime,
    at: SystemTime,
    last_ok_at: Option<SystemTime>,
    config: &QuotaConfig,
) -> SystemTime {
    let Some(last_ok) = last_ok_at else {
        return next_at;
    };
    let interval = config.poll_interval();
    let limit = last_ok + interval * MAX_DEFER_INTERVALS;
    next_at.max((at + interval).min(limit))
}

/// Parses `Retry-After`: delay seconds or an HTTP date (IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`), into an absolute time.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return now.checked_add(Duration::from_secs(secs));
    }
    let (_, rest) = value.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    if day.len() != 2 || year.len() != 4 {
        return None;
    }
    crate::time::parse_rfc3339(&format!("{year}-{month:02}-{day}T{time}Z"))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
