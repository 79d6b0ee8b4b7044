//! The coordinator's per-account quota: quota polls, statusline samples and
//! limit sightings folded into each account's state, and when `quota.json`
//! is written. Whether a limit is real is `quota::decide`'s pure functions.

use super::{Coordinator, Effects, Now, StateWrite};
use crate::config::Config;
use crate::events::Kind;
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
}

impl Quotas {
    /// The accounts of `config`, with what `quota.json` kept of them.
    pub(super) fn restore(config: &Config, file: &persist::QuotaFile, now: Now) -> Quotas {
        let mut accounts: Vec<AccountQuota> = config.accounts.iter().map(|a| AccountQuota::new(&a.name)).collect();
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
        Quotas { accounts, saved, saved_at: now.at, history_unsaved: false, history_saved_at: now.at }
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
    pub(super) fn apply_account_changes(&mut self, fx: &mut Effects) {
        let mut old = std::mem::take(&mut self.quotas.accounts);
        self.quotas.accounts = self
            .config
            .accounts
            .iter()
            .map(|a| match old.iter().position(|q| q.name == a.name) {
                Some(i) => old.swap_remove(i),
                None => AccountQuota::new(&a.name),
            })
            .collect();
        fx.quota(QuotaCommand::Configure(std::sync::Arc::clone(&self.config)));
    }
}
