//! The `min_interval_secs` rule: the same event kind for the same subject is
//! sent at most once per interval. A plain function of an injected `now`, so
//! the table test below drives it without a clock.

use crate::events::Kind;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Past this many remembered (kind, subject) pairs, the ones whose window has
/// closed are forgotten (they would be admitted anyway).
const PRUNE_ABOVE: usize = 4096;

pub struct Dedup {
    min_interval: Duration,
    last_sent: HashMap<(Kind, String), Instant>,
}

impl Dedup {
    pub fn new(min_interval: Duration) -> Dedup {
        Dedup {
            min_interval,
            last_sent: HashMap::new(),
        }
    }

    /// True when an event of `kind` about `subject` may go out at `now`; it
    /// then opens a new window. A suppressed event does not extend the window,
    /// so a steady stream still gets one message per interval.
    pub fn admit(&mut self, kind: Kind, subject: &str, now: Instant) -> bool {
        if self.min_interval.is_zero() {
            return true;
        }
        let key = (kind, subject.to_string());
        if let Some(last) = self.last_sent.get(&key) {
            if now.saturating_duration_since(*last) < self.min_interval {
                return false;
            }
        }
        if self.last_sent.len() >= PRUNE_ABOVE {
            let min_interval = self.min_interval;
            self.last_sent
                .retain(|_, last| now.saturating_duration_since(*last) < min_interval);
        }
        self.last_sent.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Kind::*;

    #[test]
    fn one_message_per_kind_and_subject_per_interval() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // (seconds after t0, kind, subject, admitted?)
        let table: &[(u64, Kind, &str, bool)] = &[
            (0, TaskFailed, "a.md", true),
            (0, TaskFailed, "a.md", false),
            (0, TaskFailed, "b.md", true),
            (0, TaskDone, "a.md", true),
            (10, TaskFailed, "a.md", false),
            (29, TaskFailed, "a.md", false),
            // The window is 30 s from the last one sent, not from the last seen.
            (30, TaskFailed, "a.md", true),
            (31, TaskFailed, "a.md", false),
            (59, TaskFailed, "a.md", false),
            (60, TaskFailed, "a.md", true),
            (60, TaskFailed, "b.md", true),
        ];
        let mut dedup = Dedup::new(Duration::from_secs(30));
        for (i, (s, kind, subject, want)) in table.iter().enumerate() {
            assert_eq!(
                dedup.admit(*kind, subject, at(*s)),
                *want,
                "row {i}: {kind:?} {subject} at +{s}s"
            );
        }
    }

    #[test]
    fn a_zero_interval_admits_everything() {
        let now = Instant::now();
        let mut dedup = Dedup::new(Duration::ZERO);
        assert!(dedup.admit(SessionDied, "s1", now));
        assert!(dedup.admit(SessionDied, "s1", now));
    }

    #[test]
    fn forgetting_closed_windows_keeps_open_ones() {
        let t0 = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(30));
        assert!(dedup.admit(TaskFailed, "keep", t0 + Duration::from_secs(100)));
        for i in 0..PRUNE_ABOVE {
            assert!(dedup.admit(TaskDone, &format!("t{i}"), t0));
        }
        // This insert prunes the TaskDone entries (closed at +100 s) but not "keep".
        assert!(dedup.admit(TaskDone, "new", t0 + Duration::from_secs(100)));
        assert!(dedup.last_sent.len() < 10);
        assert!(!dedup.admit(TaskFailed, "keep", t0 + Duration::from_secs(101)));
    }
}
