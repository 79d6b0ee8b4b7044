//! The quota decisions over [`AccountQuota`]s and an injected `now`: which
//! accounts may take the sessions, whether and where to swap, and the account
//! as `/status` shows it (its state and eligibility are verdicts too).

use super::model::*;
use crate::config::QuotaConfig;
use std::fmt;
use std::time::SystemTime;

/// Why an account may not take the sessions now.
#[derive(Debug, Clone, PartialEq)]
pub enum Ineligible {
    /// Nobody is logged in there.
    TokenMissing,
    /// The login was revoked: a person must log in again.
    LoginRevoked,
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
    /// An `api_key` account spent its day's cap: out until `until` (the
    /// next UTC midnight).
    SpendCap {
        spent_usd: f64,
        cap_usd: f64,
        until: SystemTime,
    },
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
            Ineligible::LoginRevoked => write!(f, "the login was revoked (log in again with /login)"),
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
            Ineligible::SpendCap { spent_usd, cap_usd, until } => write!(
                f,
                "spent {spent_usd:.2} USD of its {cap_usd:.2} USD daily cap; out until {}",
                crate::time::rfc3339(*until)
            ),
        }
    }
}

/// May this account take the sessions now? Hard reasons are checked first,
/// so a soft `Err` means nothing else is known against it.
pub fn eligible(q: &AccountQuota, config: &QuotaConfig, now: SystemTime) -> Result<(), Ineligible> {
    if let Some(spend) = &q.spend {
        // Paid: never polled, no login; only a hold or the cap stop it.
        if let Some(until) = q.exhausted_until.filter(|u| *u > now) {
            return Err(Ineligible::Exhausted { until });
        }
        if spend.capped(now) {
            return Err(Ineligible::SpendCap {
                spent_usd: spend.today(now),
                cap_usd: spend.cap_usd,
                until: super::next_utc_midnight(now),
            });
        }
        return Ok(());
    }
    if q.token == TokenState::Missing {
        return Err(Ineligible::TokenMissing);
    }
    if q.revoked() {
        return Err(Ineligible::LoginRevoked);
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
    if q.is_paid() {
        return match (q.out(now), active) {
            (true, _) => "exhausted",
            (false, true) => "active",
            (false, false) => "standby",
        };
    }
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
    /// The active account's login was revoked: swap now.
    LoginRevoked,
    /// The active `api_key` account spent its day's cap.
    SpendCap,
    /// The active account is an `api_key` one and a subscription can work
    /// again: the sessions go back to it.
    BackToSubscription,
}

impl SwapReason {
    /// As in `/status` `swap.last.reason` and the failovers metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SwapReason::HardLimit => "hard_limit",
            SwapReason::Threshold => "threshold",
            SwapReason::Projected => "projected",
            SwapReason::Failback => "failback",
            SwapReason::LoginRevoked => "login_revoked",
            SwapReason::SpendCap => "spend_cap",
            SwapReason::BackToSubscription => "back_to_subscription",
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
///
/// Subscriptions come first: an `api_key` account is chosen only when no
/// subscription can take the sessions (not even a soft-ineligible one), and
/// left as soon as a subscription is eligible, or merely has an expired
/// token after its windows reset (Claude Code renews it at launch) — with
/// no dwell, since it costs money.
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
    let subscriptions = || accounts.iter().filter(|a| !a.is_paid());
    let reason = if current.is_paid() {
        let back: Vec<&AccountQuota> = subscriptions()
            .filter(|a| match eligible(a, config, now) {
                Ok(()) => !projected_over(a, config, now),
                Err(why) => why == Ineligible::TokenExpired,
            })
            .collect();
        let ready: Vec<&AccountQuota> = back.iter().copied().filter(|a| eligible(a, config, now).is_ok()).collect();
        if let Some(to) = best(&ready, config, now).or_else(|| back.first().copied()) {
            return Verdict::Swap(SwapDecision { to: to.name.clone(), reason: SwapReason::BackToSubscription });
        }
        if current.exhausted(now) {
            SwapReason::HardLimit
        } else if current.capped(now) {
            SwapReason::SpendCap
        } else {
            return Verdict::Stay;
        }
    } else if current.revoked() {
        SwapReason::LoginRevoked
    } else if current.exhausted(now) {
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
    } else if let Some(first) = subscriptions().next().filter(|first| {
        config.failback
            && first.name != active
            && eligible(first, config, now).is_ok()
            && !projected_over(first, config, now)
            && first.headroom(config, now) >= current.headroom(config, now)
    }) {
        return Verdict::Swap(SwapDecision { to: first.name.clone(), reason: SwapReason::Failback });
    } else {
        return Verdict::Stay;
    };

    let others = || subscriptions().filter(|a| a.name != active);
    // Leaving an account that is not over a threshold yet (a projection)
    // must not land on one with less room.
    let projected = reason == SwapReason::Projected;
    let known: Vec<&AccountQuota> = others()
        .filter(|a| eligible(a, config, now).is_ok())
        .filter(|a| !projected || !projected_over(a, config, now))
        .filter(|a| !projected || a.headroom(config, now) >= current.headroom(config, now))
        .collect();
    if let Some(to) = best(&known, config, now) {
        return Verdict::Swap(SwapDecision { to: to.name.clone(), reason });
    }
    if reason == SwapReason::Projected {
        // Nowhere better to go: keep working until a threshold says more.
        return Verdict::Stay;
    }
    let soft = others().find(|a| eligible(a, config, now).is_err_and(|why| why.is_soft()));
    // Last, a paid key: the first one in priority order that may still spend.
    let paid = || accounts.iter().find(|a| a.is_paid() && a.name != active && eligible(a, config, now).is_ok());
    match soft.or_else(paid) {
        Some(to) => Verdict::Swap(SwapDecision { to: to.name.clone(), reason }),
        None => Verdict::AllExhausted(reason),
    }
}

fn projected_over(q: &AccountQuota, config: &QuotaConfig, now: SystemTime) -> bool {
    q.projected_five_hour(now, now + config.poll_interval()).is_some_and(|u| u >= config.five_hour_threshold)
}

/// With `prefer = "resets_soonest"`, the account whose limiting window
/// resets first wins (what it has left would otherwise be thrown away by
/// the reset), priority breaking ties. Otherwise roomy accounts (every
/// window under [`ROOMY_BELOW`]) are equals: the first in priority order
/// wins; without a roomy one, most headroom wins, priority breaking ties.
fn best<'a>(candidates: &[&'a AccountQuota], config: &QuotaConfig, now: SystemTime) -> Option<&'a AccountQuota> {
    if config.resets_soonest() {
        // `min_by_key` keeps the first of equals: priority order.
        return candidates.iter().copied().min_by_key(|a| a.limiting_reset(now).unwrap_or(far_future()));
    }
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

fn far_future() -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u32::MAX.into())
}

/// When `q` may take the sessions again, as far as the quota can tell: the
/// hold's end and the reset of every window over its threshold; None when
/// it can work now or only a person can help (no or a revoked login).
pub fn eligible_again_at(q: &AccountQuota, config: &QuotaConfig, now: SystemTime) -> Option<SystemTime> {
    match eligible(q, config, now) {
        Ok(()) | Err(Ineligible::TokenMissing | Ineligible::LoginRevoked) => return None,
        Err(Ineligible::SpendCap { until, .. }) => return Some(until),
        Err(_) => {}
    }
    let five = q.windows.five_hour.filter(|w| w.current(now) >= config.five_hour_threshold);
    let weekly = q.windows.weekly().map(|(_, w)| *w).filter(|w| w.current(now) >= config.weekly_threshold);
    let resets = five.into_iter().chain(weekly).filter_map(|w| w.resets_at);
    q.exhausted_until.filter(|u| *u > now).into_iter().chain(resets).max()
}

impl AccountQuota {
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
            last_error: match self.token {
                TokenState::Revoked { since } => Some(format!(
                    "the login was revoked ({}): the API refused a token that has not expired; log in again \
                     (CLAUDE_CONFIG_DIR=<this account's config_dir> claude, then /login)",
                    crate::time::rfc3339(since)
                )),
                _ => self.last_error.as_ref().map(|e| e.to_string()),
            },
            exhausted_until: self
                .exhausted_until
                .filter(|u| *u > now)
                .map(crate::time::rfc3339)
                .or_else(|| self.capped(now).then(|| crate::time::rfc3339(super::next_utc_midnight(now)))),
            kind: if self.is_paid() { "api_key" } else { "subscription" }.into(),
            spend: self.spend.as_ref().map(|s| crate::status::SpendStatus {
                day: super::utc_date(now),
                spent_usd: s.today(now),
                cap_usd: s.cap_usd,
            }),
            burn_rate_per_hour: self.burn_rate(now).map(|per_sec| per_sec * 3600.0),
        }
    }
}
