//! The coordinator's per-account quota: quota polls, statusline samples and
//! limit sightings folded into each account's state, and when `quota.json`
//! is written. Whether a limit is real is `quota::decide`'s pure functions.

use super::{Coordinator, Effects, Now, StateWrite};
use crate::config::Config;
use crate::events::Kind;
use crate::quota::decide::{cost, next_utc_midnight, price_of, Usage};
use crate::quota::spend_file::SpendFile;
use crate::quota::{
    history, persist, AccountQuota, HardLimitSignal, LimitSource, PollError, QuotaCommand, QuotaReport,
};
use serde_json::json;
use std::time::{Instant, SystemTime};

pub(super) struct Quotas {
    /// Per account, in config (priority) order.
    pub(super) accounts: Vec<AccountQuota>,
    /// What `quota.json` holds now (as of the last save or the restore),
    /// and when it was last written.
    pub(super) saved: persist::QuotaFile,
    pub(super) saved_at: Instant,
    /// Readings recorded since `history.json` was last written, and when.
    pub(super) history_unsaved: bool,
    pub(super) history_saved_at: Instant,
    /// Models seen on a paid account that the price table does not list
    /// (said once each).
    pub(super) unpriced: std::collections::BTreeSet<String>,
}

/// A fresh quota state for a configured account: a paid one's spend starts
/// at nothing on today's UTC day.
fn account_quota(a: &crate::config::AccountConfig, now: SystemTime) -> AccountQuota {
    match a.daily_cap() {
        Some(cap) => AccountQuota::paid(&a.name, cap, now),
        None => AccountQuota::new(&a.name),
    }
}

impl Quotas {
    /// The accounts of `config`, with what `quota.json` kept of them.
    pub(super) fn restore(config: &Config, file: &persist::QuotaFile, spent: &SpendFile, now: Now) -> Quotas {
        let mut accounts: Vec<AccountQuota> = config.accounts.iter().map(|a| account_quota(a, now.wall)).collect();
        spent.restore(&mut accounts);
        // Windows no older than a poll may wait after a sample still count.
        let fresh_for = config.quota.poll_interval() * crate::quota::decide::MAX_DEFER_INTERVALS;
        for name in file.restore(&mut accounts, fresh_for, now.wall) {
            let until = accounts.iter().find(|q| q.name == name).and_then(|q| q.exhausted_until);
            log::warn!(
                "{name}: hard limit restored from quota.json, held until {}",
                until.map(crate::time::rfc3339).unwrap_or_default()
            );
        }
        let saved = persist::QuotaFile::snapshot(&accounts, now.wall);
        Quotas {
            accounts,
            saved,
            saved_at: now.at,
            history_unsaved: false,
            history_saved_at: now.at,
            unpriced: Default::default(),
        }
    }

    pub(super) fn get_mut(&mut self, account: &str) -> Option<&mut AccountQuota> {
        self.accounts.iter_mut().find(|q| q.name == account)
    }
}

/// What a session showed of a hard limit, before the coordinator adds whose
/// and when.
pub(super) struct Sighting {
    pub(super) source: LimitSource,
    pub(super) resets_at: Option<SystemTime>,
    pub(super) record_time: Option<SystemTime>,
    pub(super) window: Option<String>,
}

impl Sighting {
    /// A sighting that says nothing but where it was seen.
    pub(super) fn bare(source: LimitSource) -> Sighting {
        Sighting { source, resets_at: None, record_time: None, window: None }
    }
}

impl Coordinator {
    pub(super) fn on_quota_report(&mut self, report: QuotaReport, now: Now, fx: &mut Effects) {
        let QuotaReport::Polled { account, asked_at, at, outcome, next_poll_at } = report;
        let Some(q) = self.quotas.get_mut(&account) else { return };
        let was_expired = matches!(q.last_error, Some(PollError::TokenExpired));
        let (was_revoked, was_held) = (q.revoked(), q.exhausted(now.wall));
        if let Err(e) = &outcome {
            fx.count("claude_failover_usage_poll_errors_total", &[("account", &account)]);
            log::warn!("usage poll for {account}: {e}");
        }
        q.apply_poll(asked_at, at, &outcome);
        q.next_poll_at = Some(next_poll_at);
        if outcome.is_ok() {
            self.record_reading(&account, at, now, fx);
        }
        let Some(q) = self.quotas.get_mut(&account) else { return };
        let expired = matches!(q.last_error, Some(PollError::TokenExpired));
        let (revoked, held) = (q.revoked(), q.exhausted(now.wall));
        if expired && !was_expired && !revoked {
            fx.emit(
                Kind::TokenExpired,
                &account,
                format!("the access token of {account} has expired; Claude Code renews it when it next runs there"),
                json!({"account": account}),
            );
        }
        if revoked && !was_revoked {
            self.login_revoked_event(&account, "the usage endpoint refused its token (401) before it expired", fx);
        }
        if was_revoked && !revoked {
            log::info!("{account}: a poll with its new credentials succeeded; the login works again");
        }
        if was_held && !held && outcome.is_ok() {
            log::info!("{account}: a fresh usage reading shows every window below 100 %; its hold ends");
        }
        self.save_quota(now, false, fx);
        if outcome.is_ok() || revoked != was_revoked {
            self.fleet_polled(&account, asked_at, at, fx);
            if outcome.is_err() {
                self.fleet_news(&account, None, fx);
            }
        }
        self.fleet_polls(fx);
        self.consider_swap(now, fx);
        self.offer_work(now, fx);
    }

    /// The one event (and Telegram message) that asks a person to log in.
    pub(super) fn login_revoked_event(&self, account: &str, why: &str, fx: &mut Effects) {
        let config_dir = self.config.account(account).map(|a| a.config_dir.display().to_string()).unwrap_or_default();
        fx.emit(
            Kind::LoginRevoked,
            account,
            format!(
                "the login of {account} was revoked ({why}); its sessions move to another account. \
                 To log in again: CLAUDE_CONFIG_DIR={config_dir} claude, then /login"
            ),
            json!({"account": account, "config_dir": config_dir, "why": why}),
        );
    }

    /// A session's turn on `account` ended in `authentication_failed`: the
    /// login is revoked now, without waiting for a poll.
    pub(super) fn session_login_revoked(&mut self, account: &str, now: Now, fx: &mut Effects) {
        let Some(q) = self.quotas.get_mut(account) else { return };
        if q.login_revoked(now.wall) {
            log::warn!("{account}: a turn ended in authentication_failed; the login is revoked");
            self.login_revoked_event(account, "a turn ended in authentication_failed", fx);
            self.save_quota(now, false, fx);
            self.fleet_news(account, None, fx);
            self.fleet_polls(fx);
        }
    }

    /// Writes `quota.json` when what it would hold changed: at once for a
    /// new, moved or lifted hard limit (or on `stopping`), and at most every
    /// [`SAVE_WINDOWS_EVERY`](persist::SAVE_WINDOWS_EVERY) when only windows
    /// moved, which they do on every poll. A failed write is logged and
    /// retried on the next change.
    pub(super) fn save_quota(&mut self, now: Now, stopping: bool, fx: &mut Effects) {
        let file = persist::QuotaFile::snapshot(&self.quotas.accounts, now.wall);
        if file.same_state(&self.quotas.saved) {
            return;
        }
        let limit_changed = file.limits() != self.quotas.saved.limits();
        let due = now.at.saturating_duration_since(self.quotas.saved_at) >= persist::SAVE_WINDOWS_EVERY;
        if !(stopping || limit_changed || due) {
            return;
        }
        fx.files.push(StateWrite::Quota { state_dir: self.config.state_dir.clone(), file: file.clone(), at: now.wall });
        self.quotas.saved = file;
        self.quotas.saved_at = now.at;
    }

    /// The account's windows as they are now, into the usage history, which
    /// is saved at most every [`SAVE_EVERY`](history::SAVE_EVERY).
    fn record_reading(&mut self, account: &str, at: SystemTime, now: Now, fx: &mut Effects) {
        let Some(q) = self.quotas.accounts.iter().find(|q| q.name == account) else { return };
        let unix = |t: SystemTime| crate::time::unix_secs(t);
        let reading = history::Reading {
            t: unix(at),
            five_hour: q.windows.five_hour.map(|w| w.utilization),
            seven_day: q.windows.seven_day.map(|w| w.utilization),
            five_hour_resets_at: q.windows.five_hour.and_then(|w| w.resets_at).map(unix),
        };
        fx.readings.push(history::Recorded { account: account.to_string(), reading });
        self.quotas.history_unsaved = true;
        self.save_history(now, false, fx);
    }

    /// Writes `history.json` when readings arrived since the last write and
    /// [`SAVE_EVERY`](history::SAVE_EVERY) has passed, or on `stopping`.
    pub(super) fn save_history(&mut self, now: Now, stopping: bool, fx: &mut Effects) {
        let due = now.at.saturating_duration_since(self.quotas.history_saved_at) >= history::SAVE_EVERY;
        if !self.quotas.history_unsaved || !(stopping || due) {
            return;
        }
        fx.files.push(StateWrite::History { state_dir: self.config.state_dir.clone() });
        self.quotas.history_unsaved = false;
        self.quotas.history_saved_at = now.at;
    }

    /// An API message's token usage read from a session's transcript,
    /// written while the session ran on `account`. Only a paid account
    /// counts it: priced by `[quota.prices]`, once per message id. Reaching
    /// the day's cap takes the account out until the next UTC day; the
    /// decision to move waits for the turn in flight (it already spent).
    pub(super) fn usage(
        &mut self,
        account: &str,
        message_id: &str,
        model: &str,
        usage: Usage,
        now: Now,
        fx: &mut Effects,
    ) {
        let prices = &self.config.quota.prices;
        let Some(q) = self.quotas.get_mut(account) else { return };
        let Some(spend) = q.spend.as_mut() else { return };
        let (price, known) = price_of(prices, model);
        let usd = cost(&usage, &price);
        let was_capped = spend.capped(now.wall);
        if !spend.count(message_id, usd, now.wall) {
            return;
        }
        let (spent, cap, capped) = (spend.today(now.wall), spend.cap_usd, spend.capped(now.wall));
        if !known && self.quotas.unpriced.insert(model.to_string()) {
            log::warn!(
                "{account}: model {model:?} has no [quota.prices] entry; priced at the dearest listed price of each kind"
            );
        }
        for (kind, n) in [
            ("input", usage.input),
            ("output", usage.output),
            ("cache_write", usage.cache_write),
            ("cache_read", usage.cache_read),
        ] {
            if n > 0 {
                fx.add("claude_failover_api_key_tokens_total", &[("account", account), ("kind", kind)], n);
            }
        }
        log::debug!("{account}: {message_id} ({model}) cost {usd:.6} USD; {spent:.4} of {cap:.2} USD today");
        fx.files.push(StateWrite::Spend {
            state_dir: self.config.state_dir.clone(),
            file: SpendFile::snapshot(&self.quotas.accounts),
        });
        if capped && !was_capped {
            let until = crate::time::rfc3339(next_utc_midnight(now.wall));
            fx.emit(
                Kind::SpendCapReached,
                account,
                format!(
                    "{account} spent {spent:.2} USD today, its cap is {cap:.2} USD: no more work there until {until} \
                     (the turn in flight may finish)"
                ),
                json!({"account": account, "spent_usd": spent, "cap_usd": cap, "until": until}),
            );
            self.consider_swap(now, fx);
        }
    }

    /// A hard limit seen in a session (pane, transcript or hook); it counts
    /// only when `quota::confirm_hard_limit` says it is real.
    pub(super) fn limit_sighting(&mut self, session: &str, seen: Sighting, now: Now, fx: &mut Effects) {
        let Some(s) = self.pool.sessions.get(session) else { return };
        let Some(account) = s.account.clone() else { return };
        let last_launch = s.launched_at.map(|t| now.wall_of(t));
        let source = seen.source;
        let signal = HardLimitSignal {
            account: account.clone(),
            source,
            at: now.wall,
            resets_at: seen.resets_at,
            window: seen.window,
            record_time: seen.record_time,
            session: Some(session.into()),
        };
        let Some(q) = self.quotas.get_mut(&account) else { return };
        if q.sighting(signal, last_launch, now.wall) {
            log::warn!("{account}: hard limit confirmed (seen in {session} by {source:?})");
            self.save_quota(now, false, fx);
            self.fleet_news(&account, None, fx);
            self.consider_swap(now, fx);
        }
    }

    /// The statusline's windows for the account `session` runs on: fresher
    /// than a poll, and free; the poller may then wait longer.
    pub(super) fn statusline_sample(
        &mut self,
        session: &str,
        limits: &[crate::claude::hook::RateLimit],
        now: Now,
        fx: &mut Effects,
    ) {
        let Some(account) = self.pool.sessions.get(session).and_then(|s| s.account.clone()) else { return };
        let Some(q) = self.quotas.get_mut(&account) else { return };
        q.apply_sample(now.wall, &crate::quota::Windows::from(limits));
        self.record_reading(&account, now.wall, now, fx);
        fx.quota(QuotaCommand::Sampled { account, at: now.wall });
        self.save_quota(now, false, fx);
        self.consider_swap(now, fx);
    }

    /// After a reload: quota state follows the account list (kept for
    /// accounts that stay, in the new priority order), and the poller too.
    pub(super) fn apply_account_changes(&mut self, now: Now, fx: &mut Effects) {
        let mut old = std::mem::take(&mut self.quotas.accounts);
        self.quotas.accounts = self
            .config
            .accounts
            .iter()
            .map(|a| match old.iter().position(|q| q.name == a.name && q.is_paid() == a.is_api_key()) {
                Some(i) => {
                    let mut q = old.swap_remove(i);
                    if let (Some(spend), Some(cap)) = (&mut q.spend, a.daily_cap()) {
                        spend.cap_usd = cap;
                    }
                    q
                }
                None => account_quota(a, now.wall),
            })
            .collect();
        fx.quota(QuotaCommand::Configure(std::sync::Arc::clone(&self.config)));
    }
}
