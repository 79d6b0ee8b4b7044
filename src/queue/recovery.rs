//! What to do with each `active/` task after the daemon restarts: a pure decision
//! over the leases found on disk and what each session is doing now. The
//! dispatcher gathers the facts and carries out the verdicts through `Queue`.

use std::collections::HashMap;

use super::Lease;

/// What a session is doing now, as the dispatcher found it (pane, transcript).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionNow {
    /// Busy with this task (or waiting on a quota limit while holding it).
    WorkingOn(String),
    /// Worked on this task and has settled idle since.
    Finished(String),
    /// Idle with nothing to show, dead, missing, or on something else.
    Other,
}

/// The verdict for one leased task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Its session still works on it: leave the lease alone.
    Keep,
    /// Its session finished it: `Queue::finish`.
    Done,
    /// Nobody works on it: `Queue::requeue`; the next lease gets `next_attempt`.
    Requeue { next_attempt: u32 },
    /// Nobody works on it and `max_attempts` are used up: `Queue::fail`.
    Fail { attempts: u32 },
}

/// Decides each lease's fate. A session missing from `sessions` counts as
/// `Other`. A session can hold only the one task it names, so a lease whose
/// session reports another task is treated as abandoned.
pub fn recover(
    leases: &[(String, Lease)],
    sessions: &HashMap<String, SessionNow>,
    max_attempts: u32,
) -> Vec<(String, Recovery)> {
    leases
        .iter()
        .map(|(name, lease)| {
            let verdict = match sessions.get(&lease.session) {
                Some(SessionNow::WorkingOn(t)) if t == name => Recovery::Keep,
                Some(SessionNow::Finished(t)) if t == name => Recovery::Done,
                _ if lease.attempt >= max_attempts => Recovery::Fail {
                    attempts: lease.attempt,
                },
                _ => Recovery::Requeue {
                    next_attempt: lease.attempt + 1,
                },
            };
            (name.clone(), verdict)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(session: &str, attempt: u32) -> Lease {
        Lease {
            session: session.into(),
            account: "alpha".into(),
            attempt,
            dispatched_at: "2026-11-25T16:00:00Z".into(),
            claude_session_id: None,
        }
    }

    #[test]
    fn recovery_table() {
        use Recovery::*;
        use SessionNow::*;
        // (task, lease session, lease attempt, that session now, max, verdict)
        type Row = (
            &'static str,
            &'static str,
            u32,
            Option<SessionNow>,
            u32,
            Recovery,
        );
        let table: Vec<Row> = vec![
            ("a.md", "s1", 1, Some(WorkingOn("a.md".into())), 3, Keep),
            ("a.md", "s1", 3, Some(WorkingOn("a.md".into())), 3, Keep),
            ("a.md", "s1", 1, Some(Finished("a.md".into())), 3, Done),
            ("a.md", "s1", 5, Some(Finished("a.md".into())), 3, Done),
            ("a.md", "s1", 1, Some(Other), 3, Requeue { next_attempt: 2 }),
            ("a.md", "s1", 2, Some(Other), 3, Requeue { next_attempt: 3 }),
            ("a.md", "s1", 3, Some(Other), 3, Fail { attempts: 3 }),
            ("a.md", "s1", 4, Some(Other), 3, Fail { attempts: 4 }),
            ("a.md", "s1", 1, None, 3, Requeue { next_attempt: 2 }),
            ("a.md", "s1", 3, None, 3, Fail { attempts: 3 }),
            (
                "a.md",
                "s1",
                1,
                Some(WorkingOn("b.md".into())),
                3,
                Requeue { next_attempt: 2 },
            ),
            (
                "a.md",
                "s1",
                1,
                Some(Finished("b.md".into())),
                3,
                Requeue { next_attempt: 2 },
            ),
            ("a.md", "s1", 1, Some(Other), 1, Fail { attempts: 1 }),
        ];
        for (task, session, attempt, now, max, want) in table {
            let mut sessions = HashMap::new();
            if let Some(now) = now.clone() {
                sessions.insert(session.to_string(), now);
            }
            let got = recover(
                &[(task.to_string(), lease(session, attempt))],
                &sessions,
                max,
            );
            assert_eq!(
                got,
                vec![(task.to_string(), want.clone())],
                "lease {session}/{attempt} with {now:?}, max {max}"
            );
        }
    }

    #[test]
    fn two_leases_on_one_session_keep_only_the_named_task() {
        let leases = vec![
            ("a.md".to_string(), lease("s1", 1)),
            ("b.md".to_string(), lease("s1", 1)),
            ("c.md".to_string(), lease("s2", 2)),
        ];
        let sessions = HashMap::from([
            ("s1".to_string(), SessionNow::WorkingOn("b.md".into())),
            ("s2".to_string(), SessionNow::Finished("c.md".into())),
        ]);
        assert_eq!(
            recover(&leases, &sessions, 3),
            vec![
                ("a.md".to_string(), Recovery::Requeue { next_attempt: 2 }),
                ("b.md".to_string(), Recovery::Keep),
                ("c.md".to_string(), Recovery::Done),
            ]
        );
    }
}
