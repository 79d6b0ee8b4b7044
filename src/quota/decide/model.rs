//! One account's quota as the coordinator knows it: usage windows, token
//! state, hard-limit sightings (and whether one is real) and the burn rate,
//! fed by polls, statusline samples and signals. The decisions over it are
//! in `verdict`.

use crate::config::QuotaConfig;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime};

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

    /// The window of this name, as the usage endpoint names it.
    pub fn named(&self, name: &str) -> Option<&Window> {
        match name {
            "five_hour" => self.five_hour.as_ref(),
            "seven_day" => self.seven_day.as_ref(),
            other => self.other.get(other),
        }
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
    /// The login was refused although the token had not expired (a usage
    /// 401 before `expiresAt`, or a turn ending in `authentication_failed`):
    /// only a person logging in again helps. Ends when a poll asked after
    /// `since` succeeds (the credentials were rewritten).
    Revoked {
        since: SystemTime,
    },
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
    /// 401 although `expiresAt` is still ahead: the login was revoked.
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

    /// The token state this outcome shows, if it says anything about it;
    /// `asked_at` is when the request went out.
    pub fn token_state(&self, asked_at: SystemTime) -> Option<TokenState> {
        match self {
            PollError::Unauthorized => Some(TokenState::Revoked { since: asked_at }),
            PollError::TokenExpired => Some(TokenState::Expired),
            PollError::NoCredentials(_) => Some(TokenState::Missing),
            _ => None,
        }
    }

    /// Failures that back off exponentially.
    pub(super) fn backs_off(&self) -> bool {
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
                "usage endpoint answered 401 although the access token has not expired: \
                 the login was revoked; log in again (/login)"
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
    /// The window that ran out (`five_hour`, `seven_day`, ...), if the
    /// source names it (the transcript's `quotaLimits.rateLimitType`).
    pub window: Option<String>,
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

pub(super) fn gap(a: SystemTime, b: SystemTime) -> Duration {
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
    /// The hold's reset is the one of the window that actually ran out (a
    /// limit record's, a 429's claim, a full window of a poll); false for a
    /// guess, which a precise reset arriving later replaces.
    pub hold_precise: bool,
    /// When the newest signal behind the hold was seen: only a poll asked
    /// after it can end the hold early.
    pub held_since: Option<SystemTime>,
    /// Five-hour utilization samples, oldest first, for the burn rate.
    pub samples: VecDeque<(SystemTime, f64)>,
    /// Hard-limit sightings not confirmed yet (kept [`CONFIRM_WINDOW`]).
    pub sightings: Vec<HardLimitSignal>,
    /// When the poller plans to ask next (for information only).
    pub next_poll_at: Option<SystemTime>,
    /// `api_key` accounts only: what they spent today and may spend. Such
    /// an account is never polled; its spend is its quota.
    pub spend: Option<super::Spend>,
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
            hold_precise: false,
            held_since: None,
            samples: VecDeque::new(),
            sightings: Vec::new(),
            next_poll_at: None,
            spend: None,
        }
    }

    /// An `api_key` account with this daily cap, nothing spent yet.
    pub fn paid(name: &str, cap_usd: f64, now: SystemTime) -> AccountQuota {
        AccountQuota { spend: Some(super::Spend::new(cap_usd, now)), ..AccountQuota::new(name) }
    }

    /// An `api_key` account rather than a subscription.
    pub fn is_paid(&self) -> bool {
        self.spend.is_some()
    }

    /// An `api_key` account whose day's cap is reached.
    pub fn capped(&self, now: SystemTime) -> bool {
        self.spend.as_ref().is_some_and(|s| s.capped(now))
    }

    /// Out of work for now by a hard limit or, for a paid account, its cap.
    pub fn out(&self, now: SystemTime) -> bool {
        self.exhausted(now) || self.capped(now)
    }

    /// A poll report; `asked_at` is when its request went out, `at` when
    /// the answer came. A fresh answer (asked after the newest signal behind
    /// a hold) is the truth about the account: a window at 100 % holds it
    /// until that window resets; every window below 100 % ends a hold. A 401
    /// marks the login revoked; a success asked after a revocation ends it.
    pub fn apply_poll(&mut self, asked_at: SystemTime, at: SystemTime, outcome: &Result<Windows, PollError>) {
        match outcome {
            Ok(windows) => {
                self.last_poll_at = Some(at);
                self.last_error = None;
                let stale_for_login = matches!(self.token, TokenState::Revoked { since } if asked_at < since);
                if !stale_for_login {
                    self.token = TokenState::Ok;
                }
                self.windows = windows.clone();
                self.windows_at = Some(at);
                if let Some(w) = windows.five_hour {
                    self.sample(at, w.current(at));
                }
                let full = windows
                    .all()
                    .filter(|(_, w)| w.current(at) >= 100.0)
                    .map(|(_, w)| (w.resets_at.unwrap_or(at + UNKNOWN_RESET_HOLD), w.resets_at.is_some()))
                    .max_by_key(|(until, _)| *until);
                let fresh = self.held_since.is_none_or(|since| asked_at >= since);
                match full {
                    Some((until, precise)) => self.hold(until, precise, asked_at),
                    None if fresh && self.exhausted_until.is_some() => self.end_hold(),
                    None => {}
                }
            }
            Err(e) => {
                if !e.no_request() {
                    self.last_poll_at = Some(at);
                }
                if let Some(state) = e.token_state(asked_at) {
                    // A routine expiry does not soften a revoked login.
                    if !(state == TokenState::Expired && matches!(self.token, TokenState::Revoked { .. })) {
                        self.token = state;
                    }
                }
                self.last_error = Some(e.clone());
            }
        }
    }

    /// Holds the account until `until` for a signal seen at `seen`. A
    /// precise reset replaces a guessed one (even an earlier one); a guess
    /// never outlives nor replaces a precise hold; two of a kind keep the
    /// later reset (both windows ran out).
    pub fn hold(&mut self, until: SystemTime, precise: bool, seen: SystemTime) {
        let current = self.exhausted_until.filter(|u| *u > seen);
        self.exhausted_until = Some(match current {
            None => until,
            Some(_) if precise && !self.hold_precise => until,
            Some(old) if !precise && self.hold_precise => old,
            Some(old) => old.max(until),
        });
        self.hold_precise = precise || (current.is_some() && self.hold_precise);
        self.held_since = Some(self.held_since.map_or(seen, |s| s.max(seen)));
    }

    fn end_hold(&mut self) {
        self.exhausted_until = None;
        self.hold_precise = false;
        self.held_since = None;
    }

    /// A running session's turn ended in `authentication_failed`: the login
    /// is revoked now, without waiting for a poll. True when that is news.
    pub fn login_revoked(&mut self, at: SystemTime) -> bool {
        let news = !matches!(self.token, TokenState::Revoked { .. });
        if news {
            self.token = TokenState::Revoked { since: at };
        }
        news
    }

    /// True while a person must log in again.
    pub fn revoked(&self) -> bool {
        matches!(self.token, TokenState::Revoked { .. })
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
    /// confirmed (see [`confirm_hard_limit`]); the account is then held until
    /// the reset of the window that ran out: the signal's own, else the
    /// named window's as last polled; failing both, a guess (the fullest
    /// known window's reset, or an hour) that a precise reset replaces.
    pub fn sighting(&mut self, signal: HardLimitSignal, last_launch: Option<SystemTime>, now: SystemTime) -> bool {
        self.sightings.retain(|s| gap(s.at, now) <= CONFIRM_WINDOW);
        let confirmed = confirm_hard_limit(&signal, &self.sightings, last_launch, now);
        if confirmed {
            let named = signal.window.as_deref().and_then(|name| self.windows.named(name));
            let (until, precise) = match (signal.resets_at, named.and_then(|w| w.resets_at).filter(|r| *r > now)) {
                (Some(reset), _) => (reset, true),
                (None, Some(reset)) => (reset, true),
                (None, None) => (self.guessed_reset(now), false),
            };
            self.hold(until, precise, signal.at);
            self.sightings.clear();
        } else {
            self.sightings.push(signal);
        }
        confirmed
    }

    /// When a limit whose window nobody named probably lifts: the reset of
    /// the fullest window known, or an hour from now.
    fn guessed_reset(&self, now: SystemTime) -> SystemTime {
        self.limiting_reset(now).unwrap_or(now + UNKNOWN_RESET_HOLD)
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

    /// The smallest room left under a threshold, in percentage points.
    pub(super) fn headroom(&self, config: &QuotaConfig, now: SystemTime) -> f64 {
        let five = config.five_hour_threshold - self.five_hour(now).unwrap_or(0.0);
        let weekly =
            self.windows.weekly().map(|(_, w)| config.weekly_threshold - w.current(now)).fold(f64::INFINITY, f64::min);
        five.min(weekly)
    }

    /// The reset of the window that limits this account most (the fullest
    /// one with a known reset).
    pub fn limiting_reset(&self, now: SystemTime) -> Option<SystemTime> {
        self.windows
            .all()
            .filter(|(_, w)| w.resets_at.is_some_and(|r| r > now))
            .max_by(|(_, a), (_, b)| a.current(now).total_cmp(&b.current(now)))
            .and_then(|(_, w)| w.resets_at)
    }

    pub(super) fn roomy(&self, now: SystemTime) -> bool {
        self.windows.all().all(|(_, w)| w.current(now) < ROOMY_BELOW)
    }
}
