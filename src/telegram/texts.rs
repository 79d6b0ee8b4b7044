//! What the read commands answer: the short status table, a session's last
//! screen lines, a project's queue. Plain text; the receiver sends it
//! preformatted.

use crate::config::Config;
use crate::status::{Status, Window};
use crate::tmux::Tmux;

/// How many of the screen's last non-blank lines `/tail` shows.
pub const TAIL_LINES: usize = 40;

pub const HELP: &str = "Commands:
/status — accounts, sessions, queues
/tail SESSION — the last lines of a session's screen
/tasks PROJECT — the tasks in a project's queue
/failover [ACCOUNT] — swap now (to ACCOUNT or the best one)
/pause, /resume — stop or restart handing out tasks
/restart SESSION — relaunch a session, same conversation
A question a session waits on comes with buttons: press one to answer, or reply to it with text.";

/// The phone-sized form of `/status`.
pub fn status(s: &Status) -> String {
    let mut out = format!(
        "active {} · dispatch {} · swap {}\n",
        s.active_account.as_deref().unwrap_or("none"),
        if s.dispatch_paused { "paused" } else { "running" },
        if s.swap.in_progress { "in progress" } else { "idle" },
    );
    let pct = |w: &Option<Window>| w.as_ref().map_or("-".to_string(), |w| format!("{:.0}%", w.utilization));
    let mut rows = vec![vec!["ACCOUNT".to_string(), "STATE".into(), "5H".into(), "7D".into()]];
    for a in &s.accounts {
        rows.push(vec![a.name.clone(), a.state.clone(), pct(&a.five_hour), pct(&a.seven_day)]);
    }
    table(&mut out, &rows);
    let mut rows = vec![vec!["SESSION".to_string(), "STATE".into(), "TASK".into()]];
    for x in &s.sessions {
        rows.push(vec![x.name.clone(), x.state.clone(), x.task.clone().unwrap_or_else(|| "-".into())]);
    }
    table(&mut out, &rows);
    let mut rows = vec![vec!["QUEUE".to_string(), "IN".into(), "ACT".into(), "DONE".into(), "FAIL".into()]];
    for q in &s.queues {
        let n = |v: usize| v.to_string();
        rows.push(vec![q.project.clone(), n(q.inbox), n(q.active), n(q.done), n(q.failed)]);
    }
    table(&mut out, &rows);
    out.trim_end().to_string()
}

fn table(out: &mut String, rows: &[Vec<String>]) {
    out.push('\n');
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|x| x.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join(" ").trim_end());
        out.push('\n');
    }
}

/// The last lines of a configured session's screen.
pub fn tail(config: &Config, session: &str) -> Result<String, String> {
    if config.session(session).is_none() {
        return Err(format!("no session named {session:?} in the config"));
    }
    let screen = Tmux::new(&config.tmux.socket_name)
        .capture_pane(session)
        .map_err(|e| format!("cannot read {session}'s screen: {e}"))?;
    let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(TAIL_LINES);
    Ok(lines[from..].join("\n"))
}

/// The task files in each of a project's queue folders, newest name last.
pub fn tasks(config: &Config, project: &str) -> Result<String, String> {
    let Some(p) = config.project(project) else {
        return Err(format!("no project named {project:?} in the config"));
    };
    let root = p.queue_root();
    let mut out = String::new();
    for folder in ["inbox", "active", "done", "failed"] {
        let mut names: Vec<String> = std::fs::read_dir(root.join(folder))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.retain(|n| n.ends_with(".md") && !n.starts_with('.'));
        names.sort();
        out.push_str(&format!("{folder} ({})\n", names.len()));
        for n in names {
            out.push_str(&format!("  {n}\n"));
        }
    }
    Ok(out.trim_end().to_string())
}

/// HTML-escaped (`&`, `<`, `>`) parts of `text`, each at most `limit`
/// UTF-16 units once escaped: the split comes first, so no entity is cut.
pub fn split_escaped(text: &str, limit: usize) -> Vec<String> {
    // An escape grows a character to at most 5 units (`&amp;`): parts of
    // limit/5 raw units always fit; split finer only where needed.
    crate::notifier::split_message(text, limit)
        .into_iter()
        .flat_map(|part| {
            let escaped = escape(&part);
            if crate::notifier::utf16_len(&escaped) <= limit {
                vec![escaped]
            } else {
                crate::notifier::split_message(&part, limit / 5).iter().map(|p| escape(p)).collect()
            }
        })
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{AccountStatus, QueueStatus, SessionStatus};

    #[test]
    fn the_short_status_table() {
        let s = Status {
            active_account: Some("alpha".into()),
            accounts: vec![AccountStatus {
                name: "alpha".into(),
                state: "active".into(),
                eligible: true,
                five_hour: Some(Window { utilization: 12.4, resets_at: None }),
                seven_day: None,
                other_windows: Default::default(),
                last_poll_at: None,
                last_error: None,
                exhausted_until: None,
                burn_rate_per_hour: None,
                kind: "subscription".into(),
                spend: None,
            }],
            sessions: vec![SessionStatus {
                name: "s1".into(),
                project: "proj".into(),
                account: Some("alpha".into()),
                state: "busy".into(),
                claude_session_id: None,
                task: Some("fix.md".into()),
                restarts: 0,
                state_since: None,
                waiting_for: None,
                question: None,
            }],
            queues: vec![QueueStatus { project: "proj".into(), inbox: 2, active: 1, done: 5, failed: 0 }],
            ..Default::default()
        };
        assert_eq!(
            status(&s),
            "active alpha · dispatch running · swap idle\n\n\
             ACCOUNT STATE  5H  7D\nalpha   active 12% -\n\n\
             SESSION STATE TASK\ns1      busy  fix.md\n\n\
             QUEUE IN ACT DONE FAIL\nproj  2  1   5    0"
        );
    }

    #[test]
    fn escaped_parts_stay_within_the_limit() {
        let text = "<b>&</b>\n".repeat(2000);
        let parts = split_escaped(&text, 4000);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| crate::notifier::utf16_len(p) <= 4000));
        assert!(parts.iter().all(|p| !p.contains('<')));
    }
}
