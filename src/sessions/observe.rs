//! How the sessions role learns that a session changed without asking tmux
//! every second: a tmux control client per watched session
//! ([`crate::tmux::control`]) pushes its panes' output and its windows
//! coming and going. Output leads to a look at the screen (a dialog is seen
//! within a settle time); a window closing or the session ending leads to
//! one `list-panes` (a dead session is seen at once). This module keeps the
//! clients and decides when a look is due; it reads nothing itself.
//!
//! A session no client follows (tmux too old for `-f`, a client that just
//! ended) is looked at once a second as before; the role tries again to
//! follow it at most every [`FOLLOW_RETRY`].

use crate::tmux::control::{Follower, Notice};
use crate::tmux::Tmux;
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// After a client ended (or failed to attach), how long before attaching
/// again: meanwhile the session is polled once a second.
pub const FOLLOW_RETRY: Duration = Duration::from_secs(5);
/// After a pane drew something, how long more drawing is let in before its
/// screen is read: a dialog draws in a burst.
pub const SCREEN_SETTLE: Duration = Duration::from_millis(50);
/// The least time between two screen reads of a session that draws on and
/// on (someone typing, a dialog redrawn).
pub const SCREEN_GAP: Duration = Duration::from_millis(250);
/// The same for a session that is busy by its own file and screen: a busy
/// turn redraws its spinner all the time, and a dialog that stops it
/// rewrites the session file, which is read at once; the screen is read at
/// most this often then, as the once-a-second polling did every fifth look.
pub const BUSY_SCREEN_GAP: Duration = Duration::from_secs(5);
/// While every session is followed, how often all of them are listed anyway,
/// in case tmux's news was missed.
pub const LIST_ANYWAY_EVERY: Duration = Duration::from_secs(30);

/// The control clients of the sessions being watched.
pub struct Followers {
    tmux: Tmux,
    tx: Sender<Notice>,
    rx: Receiver<Notice>,
    by_session: BTreeMap<String, Follower>,
    /// Sessions whose client ended: not followed again before then.
    retry_at: BTreeMap<String, Instant>,
    next_id: u64,
}

impl Followers {
    pub fn new(tmux: Tmux) -> Followers {
        let (tx, rx) = crossbeam_channel::unbounded();
        Followers { tmux, tx, rx, by_session: BTreeMap::new(), retry_at: BTreeMap::new(), next_id: 0 }
    }

    /// Where the clients' notices arrive.
    pub fn notices(&self) -> Receiver<Notice> {
        self.rx.clone()
    }

    pub fn follows(&self, session: &str) -> bool {
        self.by_session.contains_key(session)
    }

    /// Attaches a client to `session` unless one runs or a retry is not due.
    pub fn follow(&mut self, session: &str, now: Instant) {
        if self.follows(session) || self.retry_at.get(session).is_some_and(|t| now < *t) {
            return;
        }
        self.next_id += 1;
        match Follower::attach(&self.tmux, session, self.next_id, self.tx.clone()) {
            Ok(f) => {
                self.retry_at.remove(session);
                self.by_session.insert(session.to_string(), f);
            }
            Err(e) => {
                log::warn!("{session}: cannot start a tmux control client ({e}); looking at it once a second");
                self.retry_at.insert(session.to_string(), now + FOLLOW_RETRY);
            }
        }
    }

    /// Stops following `session` (its client is killed).
    pub fn unfollow(&mut self, session: &str) {
        self.by_session.remove(session);
        self.retry_at.remove(session);
    }

    /// Stops following every session not named.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.by_session.retain(|s, _| keep(s));
        self.retry_at.retain(|s, _| keep(s));
    }

    /// A client ended: forgotten (unless a newer one follows the session
    /// already), and not replaced before [`FOLLOW_RETRY`].
    pub fn ended(&mut self, session: &str, follower: u64, now: Instant) {
        if self.by_session.get(session).is_some_and(|f| f.id() == follower) {
            self.by_session.remove(session);
            self.retry_at.insert(session.to_string(), now + FOLLOW_RETRY);
        }
    }

    /// An `Output` notice for `session` was taken.
    pub fn output_seen(&self, session: &str) {
        if let Some(f) = self.by_session.get(session) {
            f.output_seen();
        }
    }
}

/// When to read the screen of a session that drew something, given when it
/// was last read and whether it is settled busy.
pub fn screen_due(now: Instant, last_read: Option<Instant>, busy: bool) -> Instant {
    let gap = if busy { BUSY_SCREEN_GAP } else { SCREEN_GAP };
    let soonest = now + SCREEN_SETTLE;
    match last_read {
        Some(t) => soonest.max(t + gap),
        None => soonest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screens_are_read_after_a_settle_and_no_more_often_than_the_gap() {
        let now = Instant::now() + Duration::from_secs(100);
        assert_eq!(screen_due(now, None, false), now + SCREEN_SETTLE);
        assert_eq!(screen_due(now, Some(now - Duration::from_secs(10)), true), now + SCREEN_SETTLE);
        let just = now - Duration::from_millis(10);
        assert_eq!(screen_due(now, Some(just), false), just + SCREEN_GAP);
        assert_eq!(screen_due(now, Some(just), true), just + BUSY_SCREEN_GAP);
    }
}
