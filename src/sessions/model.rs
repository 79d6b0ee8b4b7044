//! What the coordinator knows about each configured session, and the pure
//! decisions over it: what a new observation means, when a dead session is
//! relaunched (backoff 1 s doubling to 5 min), when deaths make a crash loop.
//! No I/O here: the sessions role observes and executes.

use crate::claude::question::Question;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A session that ran this long since its launch resets its backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(120);
/// This many deaths within `CRASH_WINDOW` is a crash loop, reported once.
pub const CRASH_LOOP_DEATHS: usize = 5;
pub const CRASH_WINDOW: Duration = Duration::from_secs(600);
/// What a session on the folder trust dialog is waiting for.
pub const TRUST_DIALOG: &str = "trust dialog";
/// A trust dialog still open this long after it was last raised is raised
/// again (answered again, or a person reminded when auto_trust is off).
pub const TRUST_ASK_AGAIN: Duration = Duration::from_secs(60);
/// A question still on screen this long after a person answered it is asked
/// again (a new episode): the answer did not land.
pub const QUESTION_ASK_AGAIN: Duration = Duration::from_secs(10);
/// A dialog whose question could not be read is reported once it has been
/// there this long: a question is often seen half drawn first, and then it
/// is reported as the question it is, not twice.
pub const DIALOG_SETTLE: Duration = Duration::from_secs(2);

/// The session states of docs/http.md#get-status, as the coordinator tracks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Starting,
    Idle,
    Busy,
    Waiting,
    RateLimited,
    Stopped,
    Dead,
}

impl Activity {
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Starting => "starting",
            Activity::Idle => "idle",
            Activity::Busy => "busy",
            Activity::Waiting => "waiting",
            Activity::RateLimited => "rate_limited",
            Activity::Stopped => "stopped",
            Activity::Dead => "dead",
        }
    }
}

/// One observation of a session, already boiled down by the sessions role
/// from Claude Code's session file, the hook spool, the transcript and the
/// pane (in that order of trust).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// No tmux session, or its pane's process is gone.
    Missing,
    /// Running but not at its prompt yet.
    Starting,
    Idle,
    Busy,
    /// The "trust this folder?" dialog.
    TrustDialog,
    /// Any other dialog or question; never answered blindly.
    Dialog(String),
    /// A dialog whose question and options could be read off the screen:
    /// one a person may answer from afar. `what` as for `Dialog`.
    Asking {
        what: String,
        question: Box<Question>,
    },
    /// A quota limit is on screen or in the transcript.
    RateLimited,
    /// The account's login is dead (401).
    LoginNeeded,
}

/// How a turn ended, as the transcript or a `StopFailure` hook says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEnd {
    /// The model ended its turn: the only ending that can finish a task.
    Normal,
    /// `authentication_failed`: the account's login is dead.
    LoginRevoked,
    /// Any other API error Claude Code gave up on (`rate_limit` without a
    /// quota rejection, `server_error`, `unknown` for a 400, ...).
    ApiError { error: String, status: Option<u16>, text: String },
}

impl TurnEnd {
    /// The error as a task's `failed/` reason or an event names it.
    pub fn describe(&self) -> String {
        match self {
            TurnEnd::Normal => "ended normally".into(),
            TurnEnd::LoginRevoked => "authentication_failed (the login was revoked)".into(),
            TurnEnd::ApiError { error, status, text } => {
                let status = status.map(|s| format!(" {s}")).unwrap_or_default();
                let text = text.trim();
                if text.is_empty() {
                    format!("API error {error}{status}")
                } else {
                    format!("API error {error}{status}: {}", text.chars().take(200).collect::<String>())
                }
            }
        }
    }
}

/// A task handed to a session, followed until it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    pub task: String,
    /// The delivery was confirmed (busy, or the user turn in the transcript).
    pub turn_seen: bool,
    /// Idle continuously since then (None while busy or not yet seen idle).
    pub idle_since: Option<Instant>,
    /// A quota limit (or a revoked login) stopped the task: not finished,
    /// continued once its account can work, or after a swap.
    pub limited: bool,
    /// The turn ended in an API error that was not dealt with yet: never
    /// finished by idling; continued (or failed) by the coordinator.
    pub failure: Option<TurnEnd>,
    /// The last turn ended normally (the transcript said so): the evidence a
    /// repair may settle the task on.
    pub ended_normally: bool,
    /// The limit on screen was taken over (Claude Code's own continue
    /// cancelled, its what-to-do dialog closed) this episode.
    pub limit_taken_over: bool,
    /// The screen showed a limit the daemon may take over (Claude Code's
    /// auto-continue footer, or its what-to-do dialog).
    pub takeover_offered: bool,
    /// When `limited` was set: only news of the account newer than this (a
    /// reading, or its hold's reset passing) lets the task go on.
    pub limited_since: Option<Instant>,
    /// Stopped by a limit and waiting for its account: when to continue it
    /// (spread over `resume_spread_secs`); None until its account can work.
    pub resume_at: Option<Instant>,
    /// Finish was ordered; waiting for the dispatcher to confirm.
    pub finishing: bool,
    /// The session died (or could not be moved) mid-task: once it is back
    /// at its prompt it is told to continue the task, which is not done.
    pub resume_prompt: bool,
    /// `limited` by the fleet's fence rather than a quota limit: continued
    /// once this host holds an account again, no news of the account needed.
    pub fenced: bool,
}

impl Work {
    /// A limit (or a dead login) stopped the task at `now`.
    pub fn limit(&mut self, now: Instant) {
        self.limited = true;
        self.limited_since.get_or_insert(now);
    }

    /// Whatever stopped the task is behind it.
    pub fn unlimit(&mut self) {
        self.limited = false;
        self.limited_since = None;
        self.resume_at = None;
        self.fenced = false;
    }

    /// The fleet's fence stopped the task at `now` (unless a limit already had).
    pub fn fence(&mut self, now: Instant) {
        if !self.limited {
            self.limit(now);
            self.fenced = true;
        }
    }

    pub fn new(task: &str) -> Work {
        Work {
            task: task.into(),
            turn_seen: false,
            idle_since: None,
            limited: false,
            failure: None,
            ended_normally: false,
            limit_taken_over: false,
            takeover_offered: false,
            limited_since: None,
            resume_at: None,
            finishing: false,
            resume_prompt: false,
            fenced: false,
        }
    }
}

/// What the coordinator should do about a session after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Became idle, busy, ... (for status, dispatch and completion).
    Changed {
        from: Activity,
        to: Activity,
    },
    /// Answer the trust dialog (the caller checks `auto_trust`).
    AnswerTrust,
    /// It died; relaunch at `at` (backoff); `crash_loop` is set the first
    /// time the deaths make a loop.
    Died {
        relaunch_at: Instant,
        crash_loop: bool,
    },
    /// A dialog holds it: report once.
    NowWaiting(String),
    /// A question a person must answer holds it, new since the last
    /// observation (or still there well after an answer): a new episode.
    NowAsking {
        what: String,
        question: Question,
    },
}

#[derive(Debug, Clone)]
pub struct Session {
    pub name: String,
    pub project: String,
    pub dispatch: bool,
    /// The account it runs under (None until launched or adopted).
    pub account: Option<String>,
    pub claude_session_id: Option<String>,
    pub activity: Activity,
    pub waiting_for: Option<String>,
    /// The question on its screen, while it waits on one.
    pub question: Option<Question>,
    /// The question's open episode (the coordinator numbers them): answers
    /// carry it, and one that does not match is refused.
    pub episode: Option<u64>,
    /// When the open question was answered (its episode then closed).
    pub answered_at: Option<Instant>,
    /// A dialog without a readable question, seen since then and not yet
    /// reported (see [`DIALOG_SETTLE`]).
    dialog_seen_at: Option<Instant>,
    /// The task it works on (a lease in active/).
    pub work: Option<Work>,
    /// Offered to the dispatcher and not answered yet: no second offer.
    pub offered: bool,
    /// Being moved to another account by a swap: observations mean nothing
    /// until the switcher reports it moved.
    pub moving: bool,
    /// A launch or restart was ordered and not reported yet: an observation
    /// queued before the order must not make it look idle.
    pub launching: bool,
    pub restarts: u32,
    pub launched_at: Option<Instant>,
    /// When to relaunch after a death; None while alive or not yet due.
    pub relaunch_at: Option<Instant>,
    backoff: Duration,
    deaths: VecDeque<Instant>,
    crash_loop_reported: bool,
    /// When the trust dialog was last raised with the coordinator.
    trust_raised_at: Option<Instant>,
}

impl Session {
    pub fn new(name: &str, project: &str, dispatch: bool) -> Session {
        Session {
            name: name.into(),
            project: project.into(),
            dispatch,
            account: None,
            claude_session_id: None,
            activity: Activity::Stopped,
            waiting_for: None,
            question: None,
            episode: None,
            answered_at: None,
            dialog_seen_at: None,
            work: None,
            offered: false,
            moving: false,
            launching: false,
            restarts: 0,
            launched_at: None,
            relaunch_at: None,
            backoff: BACKOFF_FIRST,
            deaths: VecDeque::new(),
            crash_loop_reported: false,
            trust_raised_at: None,
        }
    }

    /// A launch (or adoption) was carried out at `now`.
    pub fn launched(&mut self, account: &str, claude_session_id: &str, now: Instant) {
        self.account = Some(account.into());
        self.claude_session_id = Some(claude_session_id.into());
        self.activity = Activity::Starting;
        self.launched_at = Some(now);
        self.launching = false;
        self.relaunch_at = None;
        self.waiting_for = None;
        self.forget_question();
    }

    /// Folds one observation in; says what the coordinator should do.
    pub fn observe(&mut self, seen: Seen, now: Instant) -> Step {
        if self.activity == Activity::Stopped || self.moving || self.launching {
            // Not launched by us (yet): observations mean nothing.
            return Step::Nothing;
        }
        let to = match &seen {
            Seen::Missing => return self.died(now),
            Seen::Starting => Activity::Starting,
            Seen::Idle => Activity::Idle,
            Seen::Busy => Activity::Busy,
            Seen::TrustDialog | Seen::Dialog(_) | Seen::Asking { .. } | Seen::LoginNeeded => Activity::Waiting,
            Seen::RateLimited => Activity::RateLimited,
        };
        if let Some(launched) = self.launched_at {
            if now.saturating_duration_since(launched) >= STABLE_AFTER {
                self.backoff = BACKOFF_FIRST;
            }
        }
        let from = self.activity;
        self.activity = to;
        if let Some(work) = &mut self.work {
            match to {
                Activity::Busy => {
                    work.turn_seen = true;
                    work.idle_since = None;
                }
                Activity::Idle => {
                    work.idle_since.get_or_insert(now);
                }
                Activity::RateLimited => {
                    work.limit(now);
                    work.idle_since = None;
                }
                _ => work.idle_since = None,
            }
        }
        match seen {
            // Once per appearance of the dialog (and again after a long while):
            // the sessions role makes sure its answer lands, and with
            // auto_trust off the coordinator turns this into a
            // `session_waiting` event, which must not repeat each second while
            // a person has not answered.
            Seen::TrustDialog => {
                self.forget_question();
                let recent = self.trust_raised_at.is_some_and(|t| now.saturating_duration_since(t) < TRUST_ASK_AGAIN);
                if self.waiting_for.as_deref() == Some(TRUST_DIALOG) && recent {
                    return Step::Nothing;
                }
                self.waiting_for = Some(TRUST_DIALOG.into());
                self.trust_raised_at = Some(now);
                Step::AnswerTrust
            }
            // A question read a moment ago and not this time (a screen caught
            // mid-redraw) is still the same dialog.
            Seen::Dialog(_) if self.question.is_some() => Step::Nothing,
            Seen::Dialog(what) => {
                if self.waiting_for.as_deref() != Some(what.as_str()) {
                    self.waiting_for = Some(what);
                    self.dialog_seen_at = Some(now);
                }
                Step::Nothing
            }
            Seen::Asking { what, question } => self.asking(what, *question, now),
            Seen::LoginNeeded => {
                self.forget_question();
                self.waiting("login: the account needs /login".into())
            }
            _ => {
                self.waiting_for = None;
                self.forget_question();
                if from == to {
                    Step::Nothing
                } else {
                    Step::Changed { from, to }
                }
            }
        }
    }

    /// A dialog without a readable question, there for [`DIALOG_SETTLE`]:
    /// what it waits on, to be reported once (the coordinator asks each tick).
    pub fn dialog_due(&mut self, now: Instant) -> Option<String> {
        let since = self.dialog_seen_at?;
        if self.activity != Activity::Waiting || self.question.is_some() {
            self.dialog_seen_at = None;
            return None;
        }
        if now.saturating_duration_since(since) < DIALOG_SETTLE {
            return None;
        }
        self.dialog_seen_at = None;
        self.waiting_for.clone()
    }

    fn asking(&mut self, what: String, question: Question, now: Instant) -> Step {
        if self.question.as_ref().is_some_and(|open| open.same_as(&question)) {
            let ask_again = self.answered_at.is_some_and(|t| now.saturating_duration_since(t) >= QUESTION_ASK_AGAIN);
            if !ask_again {
                return Step::Nothing;
            }
        }
        self.waiting_for = Some(what.clone());
        self.dialog_seen_at = None;
        self.question = Some(question.clone());
        self.episode = None;
        self.answered_at = None;
        Step::NowAsking { what, question }
    }

    /// The question's episode was answered at `now`: it is closed, and the
    /// same question still on screen later is asked again.
    pub fn answered(&mut self, now: Instant) {
        self.episode = None;
        self.answered_at = Some(now);
    }

    fn forget_question(&mut self) {
        self.dialog_seen_at = None;
        self.question = None;
        self.episode = None;
        self.answered_at = None;
    }

    fn waiting(&mut self, what: String) -> Step {
        if self.waiting_for.as_deref() == Some(what.as_str()) {
            return Step::Nothing;
        }
        self.waiting_for = Some(what.clone());
        Step::NowWaiting(what)
    }

    fn died(&mut self, now: Instant) -> Step {
        if self.activity == Activity::Dead {
            return Step::Nothing;
        }
        self.activity = Activity::Dead;
        self.waiting_for = None;
        self.forget_question();
        if let Some(w) = &mut self.work {
            // Its turn died with it: not finished, to be continued.
            w.resume_prompt = true;
            w.turn_seen = false;
            w.unlimit();
            w.failure = None;
            w.idle_since = None;
        }
        let relaunch_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.relaunch_at = Some(relaunch_at);
        self.deaths.push_back(now);
        while self.deaths.front().is_some_and(|d| now.saturating_duration_since(*d) > CRASH_WINDOW) {
            self.deaths.pop_front();
        }
        let crash_loop = self.deaths.len() >= CRASH_LOOP_DEATHS && !self.crash_loop_reported;
        if crash_loop {
            self.crash_loop_reported = true;
        }
        if self.deaths.len() < CRASH_LOOP_DEATHS {
            self.crash_loop_reported = false;
        }
        Step::Died { relaunch_at, crash_loop }
    }

    /// The task's turn ran and the session has been idle for `settle` since,
    /// with no limit hit and no API error in between: the task is finished.
    pub fn settled(&self, now: Instant, settle: Duration) -> bool {
        self.activity == Activity::Idle
            && !self.moving
            && self.work.as_ref().is_some_and(|w| {
                w.turn_seen
                    && !w.limited
                    && w.failure.is_none()
                    && !w.finishing
                    && !w.resume_prompt
                    && w.idle_since.is_some_and(|t| now.saturating_duration_since(t) >= settle)
            })
    }

    /// Back at its prompt after dying mid-task: to be told to continue.
    pub fn wants_continuation(&self) -> bool {
        self.activity == Activity::Idle && !self.offered && self.work.as_ref().is_some_and(|w| w.resume_prompt)
    }

    /// Idle, dispatchable, not working and not already offered.
    pub fn wants_work(&self) -> bool {
        self.dispatch && self.activity == Activity::Idle && self.work.is_none() && !self.offered
    }

    /// Launched longer than `timeout` ago and still not at its prompt.
    pub fn startup_overdue(&self, now: Instant, timeout: Duration) -> bool {
        self.activity == Activity::Starting
            && !self.moving
            && self.account.is_some()
            && self.launched_at.is_some_and(|t| now.saturating_duration_since(t) > timeout)
    }

    /// Dead and its backoff has run out.
    pub fn relaunch_due(&self, now: Instant) -> bool {
        self.activity == Activity::Dead && !self.moving && self.relaunch_at.is_some_and(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(now: Instant) -> Session {
        let mut s = Session::new("s1", "p", true);
        s.launched("alpha", "id-1", now);
        s
    }

    #[test]
    fn observations_move_the_activity() {
        let t0 = Instant::now();
        let mut s = running(t0);
        let table = [
            (Seen::Starting, Step::Nothing, Activity::Starting),
            (Seen::Idle, Step::Changed { from: Activity::Starting, to: Activity::Idle }, Activity::Idle),
            (Seen::Idle, Step::Nothing, Activity::Idle),
            (Seen::Busy, Step::Changed { from: Activity::Idle, to: Activity::Busy }, Activity::Busy),
            (
                Seen::RateLimited,
                Step::Changed { from: Activity::Busy, to: Activity::RateLimited },
                Activity::RateLimited,
            ),
            (Seen::TrustDialog, Step::AnswerTrust, Activity::Waiting),
            (Seen::TrustDialog, Step::Nothing, Activity::Waiting),
            (Seen::Dialog("permission".into()), Step::Nothing, Activity::Waiting),
            (Seen::Dialog("permission".into()), Step::Nothing, Activity::Waiting),
            (Seen::Idle, Step::Changed { from: Activity::Waiting, to: Activity::Idle }, Activity::Idle),
        ];
        for (seen, step, activity) in table {
            assert_eq!(s.observe(seen.clone(), t0), step, "after {seen:?}");
            assert_eq!(s.activity, activity, "after {seen:?}");
        }
    }

    #[test]
    fn deaths_back_off_doubling_to_five_minutes_and_a_loop_is_reported_once() {
        let t0 = Instant::now();
        let mut s = running(t0);
        let mut now = t0;
        let mut waits = Vec::new();
        let mut loops = Vec::new();
        for _ in 0..12 {
            match s.observe(Seen::Missing, now) {
                Step::Died { relaunch_at, crash_loop } => {
                    waits.push(relaunch_at - now);
                    loops.push(crash_loop);
                    assert!(!s.relaunch_due(now));
                    assert!(s.relaunch_due(relaunch_at));
                    now = relaunch_at;
                    s.launched("alpha", "id-1", now);
                    now += Duration::from_secs(1);
                }
                other => panic!("expected a death, got {other:?}"),
            }
        }
        let secs: Vec<u64> = waits.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(loops.iter().filter(|l| **l).count(), 1);
        assert!(loops[4]);
    }

    #[test]
    fn a_stable_session_starts_its_backoff_afresh() {
        let t0 = Instant::now();
        let mut s = running(t0);
        for i in 0..4 {
            s.observe(Seen::Missing, t0 + Duration::from_secs(i));
            s.launched("alpha", "id-1", t0 + Duration::from_secs(i));
        }
        let later = t0 + STABLE_AFTER + Duration::from_secs(10);
        s.observe(Seen::Idle, later);
        match s.observe(Seen::Missing, later) {
            Step::Died { relaunch_at, .. } => assert_eq!(relaunch_at - later, BACKOFF_FIRST),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_task_settles_after_idle_for_settle_secs_unless_a_limit_came_between() {
        let t0 = Instant::now();
        let settle = Duration::from_secs(5);
        let mut s = running(t0);
        s.observe(Seen::Idle, t0);
        assert!(s.wants_work());
        s.work = Some(Work::new("a.md"));
        assert!(!s.wants_work());
        // Idle before the turn was seen does not count.
        s.observe(Seen::Idle, t0 + Duration::from_secs(1));
        assert!(!s.settled(t0 + Duration::from_secs(10), settle));
        s.observe(Seen::Busy, t0 + Duration::from_secs(2));
        s.observe(Seen::Idle, t0 + Duration::from_secs(3));
        assert!(!s.settled(t0 + Duration::from_secs(7), settle));
        assert!(s.settled(t0 + Duration::from_secs(8), settle));
        // Once Finish is ordered it is not settled again.
        s.work.as_mut().unwrap().finishing = true;
        assert!(!s.settled(t0 + Duration::from_secs(8), settle));
        s.work.as_mut().unwrap().finishing = false;
        // Busy again restarts the settle clock.
        s.observe(Seen::Busy, t0 + Duration::from_secs(9));
        s.observe(Seen::Idle, t0 + Duration::from_secs(10));
        assert!(!s.settled(t0 + Duration::from_secs(14), settle));
        // A limit between: never settled by idling.
        s.observe(Seen::RateLimited, t0 + Duration::from_secs(15));
        s.observe(Seen::Idle, t0 + Duration::from_secs(16));
        assert!(!s.settled(t0 + Duration::from_secs(60), settle));
    }

    #[test]
    fn the_trust_dialog_is_raised_once_per_appearance_and_again_after_a_long_while() {
        let t0 = Instant::now();
        let secs = |n| t0 + Duration::from_secs(n);
        let mut s = running(t0);
        let table = [
            (0, Seen::Starting, Step::Nothing),
            (1, Seen::TrustDialog, Step::AnswerTrust),
            (2, Seen::TrustDialog, Step::Nothing),
            (60, Seen::TrustDialog, Step::Nothing),
            (61, Seen::TrustDialog, Step::AnswerTrust),
            (62, Seen::TrustDialog, Step::Nothing),
            (63, Seen::Idle, Step::Changed { from: Activity::Waiting, to: Activity::Idle }),
            (64, Seen::TrustDialog, Step::AnswerTrust),
        ];
        for (at, seen, step) in table {
            assert_eq!(s.observe(seen.clone(), secs(at)), step, "{seen:?} at {at} s");
        }
    }

    #[test]
    fn a_task_whose_session_died_is_continued_not_finished() {
        let t0 = Instant::now();
        let mut s = running(t0);
        s.observe(Seen::Idle, t0);
        s.work = Some(Work { turn_seen: true, ..Work::new("a.md") });
        s.observe(Seen::Busy, t0);
        s.observe(Seen::Missing, t0);
        s.launched("alpha", "id-1", t0 + Duration::from_secs(1));
        s.observe(Seen::Idle, t0 + Duration::from_secs(2));
        assert!(!s.settled(t0 + Duration::from_secs(60), Duration::from_secs(5)));
        assert!(s.wants_continuation());
    }

    #[test]
    fn a_session_not_launched_by_us_ignores_observations() {
        let mut s = Session::new("s1", "p", true);
        assert_eq!(s.observe(Seen::Missing, Instant::now()), Step::Nothing);
        assert_eq!(s.activity, Activity::Stopped);
    }
}
