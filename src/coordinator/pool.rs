//! The coordinator's sessions: its model of each configured session, the
//! sessions role's reports folded into it, and the launches, restarts and
//! trust answers it orders in return.

use super::quotas::Sighting;
use super::{Coordinator, Effects, Now};
use crate::claude::question::Choice;
use crate::config::Config;
use crate::control::{Answer, ControlError, Reply};
use crate::dispatcher::{self, SessionRef};
use crate::events::Kind;
use crate::quota::LimitSource;
use crate::sessions::model::{Activity, Seen, Session, Step};
use crate::sessions::{Command, Report};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

pub(super) struct Pool {
    pub(super) sessions: BTreeMap<String, Session>,
    /// The id the next waiting episode (a question put to a person) gets.
    pub(super) next_episode: u64,
    /// Sessions whose adoption report (Adopted/Absent) has not come yet.
    pub(super) adoption_pending: Option<BTreeSet<String>>,
}

impl Pool {
    /// `first_episode`: where this run's episode ids start; ids from an
    /// earlier run (buttons in old messages) must not name this run's
    /// questions, so a caller starts past them (the start time in seconds).
    pub(super) fn new(config: &Config, first_episode: u64) -> Pool {
        let sessions =
            config.sessions.iter().map(|s| (s.name.clone(), Session::new(&s.name, &s.project, s.dispatch))).collect();
        let pending = config.sessions.iter().map(|s| s.name.clone()).collect();
        Pool { sessions, next_episode: first_episode.max(1), adoption_pending: Some(pending) }
    }

    /// Where a session's conversation is, for the dispatcher.
    pub(super) fn session_ref(&self, config: &Config, s: &Session) -> Option<SessionRef> {
        let account = config.account(s.account.as_deref()?)?;
        Some(SessionRef {
            session: s.name.clone(),
            project: s.project.clone(),
            account: account.name.clone(),
            config_dir: account.config_dir.clone(),
            claude_session_id: s.claude_session_id.clone()?,
        })
    }
}

impl Coordinator {
    pub(super) fn session_ref(&self, s: &Session) -> Option<SessionRef> {
        self.pool.session_ref(&self.config, s)
    }

    /// Once every session has been adopted or found absent, the dispatcher
    /// reconciles the leases left by the last run.
    pub(super) fn adoption_done(&mut self, session: &str, fx: &mut Effects) {
        let Some(pending) = &mut self.pool.adoption_pending else { return };
        pending.remove(session);
        if !pending.is_empty() {
            return;
        }
        self.pool.adoption_pending = None;
        let sessions = self
            .pool
            .sessions
            .values()
            .map(|s| {
                let running = s.activity != Activity::Stopped && s.launched_at.is_some() && s.restarts == 0;
                (s.name.clone(), running.then(|| self.session_ref(s)).flatten())
            })
            .collect();
        fx.dispatcher(dispatcher::Command::Recover { sessions });
    }

    pub(super) fn on_session_report(&mut self, report: Report, now: Now, fx: &mut Effects) {
        match report {
            Report::Adopted { session, account, claude_session_id } => {
                if let Some(s) = self.pool.sessions.get_mut(&session) {
                    log::info!(
                        "adopted running session {session} (account {account}, conversation {claude_session_id})"
                    );
                    s.launched(&account, &claude_session_id, now.at);
                }
                self.adoption_done(&session, fx);
            }
            Report::Absent { session } => {
                self.adoption_done(&session, fx);
                self.launch(&session, now, fx);
            }
            Report::Launched { session, account, claude_session_id } => {
                let Some(s) = self.pool.sessions.get_mut(&session) else {
                    return;
                };
                let relaunch = s.restarts > 0;
                s.launched(&account, &claude_session_id, now.at);
                if relaunch {
                    fx.emit(
                        Kind::SessionRestarted,
                        &session,
                        format!("relaunched on {account}, resuming conversation {claude_session_id}"),
                        json!({"account": account, "claude_session_id": claude_session_id, "restarts": s.restarts}),
                    );
                }
            }
            Report::LaunchFailed { session, account, error } => {
                log::error!("launching session {session} on {account} failed: {error}");
                if let Some(s) = self.pool.sessions.get_mut(&session) {
                    s.launching = false;
                }
                self.observed(&session, Seen::Missing, now, fx);
            }
            Report::Seen { session, seen } => self.observed(&session, seen, now, fx),
            Report::Limit { session, resets_at, record_time, window } => {
                if let Some(w) = self.pool.sessions.get_mut(&session).and_then(|s| s.work.as_mut()) {
                    w.limit(now.at);
                }
                let seen = Sighting { source: LimitSource::Transcript, resets_at, record_time, window };
                self.limit_sighting(&session, seen, now, fx);
            }
            Report::Sample { session, limits } => self.statusline_sample(&session, &limits, now, fx),
            Report::ScreenLimit { session, takeover } => {
                self.limit_sighting(&session, Sighting::bare(LimitSource::Pane), now, fx);
                if takeover {
                    self.limit_takeover(&session, now, fx);
                }
            }
            Report::RateLimitFailure { session } => {
                self.limit_sighting(&session, Sighting::bare(LimitSource::Hook), now, fx)
            }
            Report::TurnStarted { session } => self.turn_started(&session, now),
            Report::TurnEnded { session, end } => self.turn_ended(&session, end, now, fx),
            Report::Usage { account, message_id, model, tokens, .. } => {
                self.usage(&account, &message_id, &model, tokens, now, fx)
            }
        }
    }

    pub(super) fn observed(&mut self, name: &str, seen: Seen, now: Now, fx: &mut Effects) {
        let Some(s) = self.pool.sessions.get_mut(name) else {
            return;
        };
        let was_busy = s.activity == crate::sessions::model::Activity::Busy;
        let step = s.observe(seen, now.at);
        if !was_busy && s.activity == crate::sessions::model::Activity::Busy {
            // A turn that began while this host is fenced (a swap's
            // continuation, an answer typed, Claude Code's own retry) is
            // stopped as the fence stopped the others.
            self.fenced_turn(name, now, fx);
        }
        let Some(s) = self.pool.sessions.get_mut(name) else {
            return;
        };
        match step {
            Step::Nothing | Step::Changed { .. } => {}
            Step::AnswerTrust if self.config.claude.auto_trust => {
                log::info!("{name}: answering the folder trust dialog (auto_trust)");
                fx.sessions(Command::AnswerTrust { session: name.into() });
            }
            Step::AnswerTrust => waiting_event(name, "the folder trust dialog (auto_trust is off)", fx),
            Step::NowWaiting(what) => waiting_event(name, &what, fx),
            Step::NowAsking { what, question } => {
                let episode = self.pool.next_episode;
                self.pool.next_episode += 1;
                s.episode = Some(episode);
                let task = s.work.as_ref().map(|w| w.task.clone());
                fx.emit(
                    Kind::SessionWaiting,
                    name,
                    format!("session {name} asks: {}", question.prompt),
                    json!({"waiting_for": what, "episode": episode, "task": task, "question": question}),
                );
            }
            Step::Died { relaunch_at, crash_loop } => {
                let wait = relaunch_at.saturating_duration_since(now.at);
                let task = s.work.as_ref().map(|w| w.task.clone());
                fx.emit(
                    Kind::SessionDied,
                    name,
                    format!("session {name} is gone; relaunching in {} s", wait.as_secs()),
                    json!({"relaunch_in_secs": wait.as_secs(), "task": task}),
                );
                if crash_loop {
                    fx.emit(
                        Kind::SessionCrashLoop,
                        name,
                        format!("session {name} keeps dying; still relaunching, with backoff up to 5 min"),
                        json!({}),
                    );
                }
            }
        }
    }

    /// Launches a session on the active account (or leaves it stopped when
    /// no account is active).
    pub(super) fn launch(&mut self, name: &str, now: Now, fx: &mut Effects) {
        let Some(account) = self.active_account.clone() else {
            log::warn!("{name}: no active account to launch it on");
            if let Some(f) = self.fleet.as_mut() {
                f.deferred.insert(name.into());
            }
            return;
        };
        if !self.may_launch_on(name, &account) {
            log::info!("{name}: waits until this host holds {account} in the fleet");
            return;
        }
        let Some(s) = self.pool.sessions.get_mut(name) else {
            return;
        };
        s.activity = Activity::Starting;
        s.relaunch_at = None;
        s.launched_at = Some(now.at);
        s.launching = true;
        fx.sessions(Command::Launch { session: name.into(), account });
    }

    /// Stops a session and launches it again on `account`, same conversation.
    pub(super) fn restart(&mut self, name: &str, account: &str, now: Now, fx: &mut Effects) {
        if !self.may_restart_on(name, account) {
            return;
        }
        let Some(s) = self.pool.sessions.get_mut(name) else { return };
        s.restarts += 1;
        s.activity = Activity::Starting;
        s.relaunch_at = None;
        s.launched_at = Some(now.at);
        s.launching = true;
        fx.sessions(Command::Restart { session: name.into(), account: account.into() });
    }

    /// Dead sessions whose backoff is over are launched again; sessions not
    /// at their prompt within `startup_timeout_secs` are restarted.
    pub(super) fn relaunch_due(&mut self, now: Now, fx: &mut Effects) {
        let due: Vec<String> =
            self.pool.sessions.values().filter(|s| s.relaunch_due(now.at)).map(|s| s.name.clone()).collect();
        for name in due {
            if let Some(s) = self.pool.sessions.get_mut(&name) {
                s.restarts += 1;
            }
            self.launch(&name, now, fx);
        }
        let startup = Duration::from_secs(self.config.claude.startup_timeout_secs);
        let overdue: Vec<String> = self
            .pool
            .sessions
            .values()
            .filter(|s| s.startup_overdue(now.at, startup))
            .map(|s| s.name.clone())
            .collect();
        for name in overdue {
            let Some(account) = self.active_account.clone() else { continue };
            if self.may_restart_on(&name, &account) {
                log::warn!("{name}: not at its prompt within {} s; restarting it", startup.as_secs());
                self.restart(&name, &account, now, fx);
            }
        }
    }

    /// After a reload: new sessions are launched, removed ones are left
    /// running but no longer managed, changed ones take the new settings.
    pub(super) fn apply_session_changes(&mut self, now: Now, fx: &mut Effects) {
        let config = Arc::clone(&self.config);
        self.pool.sessions.retain(|name, _| {
            let keep = config.session(name).is_some();
            if !keep {
                log::info!("{name} is no longer in the config: left running, no longer managed");
            }
            keep
        });
        fx.sessions(Command::Configure(Arc::clone(&config)));
        let mut added = Vec::new();
        for sc in &config.sessions {
            match self.pool.sessions.get_mut(&sc.name) {
                Some(s) => {
                    s.dispatch = sc.dispatch;
                    s.project = sc.project.clone();
                }
                None => {
                    self.pool.sessions.insert(sc.name.clone(), Session::new(&sc.name, &sc.project, sc.dispatch));
                    added.push(sc.name.clone());
                }
            }
        }
        for name in added {
            self.launch(&name, now, fx);
        }
    }
}

impl Coordinator {
    /// Dialogs whose question could not be read, there long enough to say so.
    pub(super) fn dialogs_due(&mut self, now: Now, fx: &mut Effects) {
        for s in self.pool.sessions.values_mut() {
            if let Some(what) = s.dialog_due(now.at) {
                waiting_event(&s.name, &what, fx);
            }
        }
    }

    /// A person's answer: typed (by the sessions role) only if its episode
    /// is the one still open; the episode then closes, so a second answer
    /// to it is refused.
    pub(super) fn answer(&mut self, answer: Answer, now: Now, fx: &mut Effects) -> Reply {
        let refused = || ControlError::Conflict("already answered / changed: that question is no longer open".into());
        let Some(s) = self.pool.sessions.values_mut().find(|s| s.episode == Some(answer.episode)) else {
            return Err(refused());
        };
        let Some(question) = s.question.clone() else { return Err(refused()) };
        let said = match &answer.choice {
            Choice::Option(i) => match question.options.get(*i) {
                Some(label) => label.clone(),
                None => return Err(ControlError::BadRequest(format!("the question has no option {}", i + 1))),
            },
            Choice::Text(text) => text.clone(),
        };
        s.answered(now.at);
        let session = s.name.clone();
        fx.sessions(Command::Answer { session: session.clone(), question, choice: answer.choice.clone() });
        let kind = if matches!(answer.choice, Choice::Text(_)) { "text" } else { "option" };
        fx.emit(
            Kind::QuestionAnswered,
            &session,
            format!("{} answered {session}'s question with {said:?} via {}", answer.by, answer.via),
            json!({"episode": answer.episode, "answer": said, "answer_kind": kind, "by": answer.by, "via": answer.via}),
        );
        Ok(json!({"session": session, "answer": said}))
    }
}

fn waiting_event(name: &str, what: &str, fx: &mut Effects) {
    fx.emit(
        Kind::SessionWaiting,
        name,
        format!("session {name} waits on {what}; not answered automatically"),
        json!({"waiting_for": what}),
    );
}
