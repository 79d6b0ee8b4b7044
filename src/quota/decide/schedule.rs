//! When the poller asks the usage endpoint next, per account: the interval
//! with jitter, backoff after failures, `Retry-After`, and how a fresh
//! statusline sample defers a poll.

use super::model::*;
use crate::config::QuotaConfig;
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
