//! Counters and histograms any role may bump, and the Prometheus text that
//! `/metrics` answers. Gauges (utilization, tasks, sessions) are read from the
//! published `/status` document at render time, so they can never disagree.

use crate::status::Status;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// Every counter and histogram, with its help text. Bumping a name not listed
/// here is a programming error caught by the test below.
const FAMILIES: &[(&str, &str, &str)] = &[
    ("claude_failover_failovers_total", "counter", "Account swaps, by reason."),
    ("claude_failover_usage_poll_errors_total", "counter", "Failed usage-endpoint polls, by account."),
    ("claude_failover_tasks_dispatched_total", "counter", "Tasks handed to a session, by project."),
    ("claude_failover_tasks_finished_total", "counter", "Tasks moved to done/ or failed/, by project and outcome."),
    ("claude_failover_session_restarts_total", "counter", "Session relaunches after a death, by session."),
    ("claude_failover_notify_sent_total", "counter", "Notifications delivered, by sink."),
    ("claude_failover_notify_failed_total", "counter", "Notification deliveries given up, by sink."),
    ("claude_failover_notify_dropped_total", "counter", "Notifications dropped from a full queue, by sink."),
    ("claude_failover_notify_deduplicated_total", "counter", "Notifications suppressed by min_interval_secs."),
    ("claude_failover_notify_retry_after_total", "counter", "429 answers with retry_after, by sink."),
    (
        "claude_failover_telegram_ignored_total",
        "counter",
        "Telegram updates ignored, by reason (chat, user, stale, other).",
    ),
    ("claude_failover_janitor_actions_total", "counter", "Janitor actions, by action."),
    ("claude_failover_fleet_unreachable_total", "counter", "Times the fleet's etcd stopped answering this host."),
    (
        "claude_failover_fleet_fenced_total",
        "counter",
        "Times this host stopped its work because it could no longer vouch for its account (exclusive).",
    ),
    (
        "claude_failover_api_key_tokens_total",
        "counter",
        "Tokens used on api_key accounts, by account and kind (input, output, cache_write, cache_read).",
    ),
    (
        "claude_failover_dispatch_latency_seconds",
        "histogram",
        "From a task file's arrival to its paste into a session.",
    ),
];

const BUCKETS: &[f64] = &[0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

type Labels = Vec<(String, String)>;

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<&'static str, Histogram>,
}

#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Registry>>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn inc(&self, name: &'static str, pairs: &[(&str, &str)]) {
        self.add(name, pairs, 1);
    }

    pub fn add(&self, name: &'static str, pairs: &[(&str, &str)], n: u64) {
        debug_assert!(FAMILIES.iter().any(|f| f.0 == name), "undeclared metric {name}");
        *self.inner.lock().counters.entry((name, labels(pairs))).or_default() += n;
    }

    pub fn counter(&self, name: &'static str, pairs: &[(&str, &str)]) -> u64 {
        self.inner.lock().counters.get(&(name, labels(pairs))).copied().unwrap_or(0)
    }

    pub fn observe(&self, name: &'static str, seconds: f64) {
        debug_assert!(FAMILIES.iter().any(|f| f.0 == name), "undeclared metric {name}");
        let mut reg = self.inner.lock();
        let h = reg.histograms.entry(name).or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// The Prometheus text exposition of everything, gauges from `status`.
    pub fn render(&self, status: &Status) -> String {
        let mut out = String::new();
        gauges(&mut out, status);
        let reg = self.inner.lock();
        for (name, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            if *kind == "histogram" {
                let empty = Histogram { counts: vec![0; BUCKETS.len()], ..Histogram::default() };
                let h = reg.histograms.get(name).unwrap_or(&empty);
                for (bound, count) in BUCKETS.iter().zip(&h.counts) {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
                }
                let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "{name}_sum {}", h.sum);
                let _ = writeln!(out, "{name}_count {}", h.count);
                continue;
            }
            for ((n, l), v) in reg.counters.iter().filter(|((n, _), _)| n == name) {
                let _ = writeln!(out, "{n}{} {v}", render_labels(l));
            }
        }
        out
    }
}

fn render_labels(l: &Labels) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", inner.join(","))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn gauges(out: &mut String, status: &Status) {
    let name = "claude_failover_account_utilization";
    let _ = writeln!(out, "# HELP {name} Quota window utilization in percent.\n# TYPE {name} gauge");
    for a in &status.accounts {
        let windows = [("five_hour", &a.five_hour), ("seven_day", &a.seven_day)];
        for (window, w) in windows.iter().filter_map(|(n, w)| w.as_ref().map(|w| (*n, w))) {
            let _ = writeln!(out, "{name}{{account=\"{}\",window=\"{window}\"}} {}", escape(&a.name), w.utilization);
        }
        for (window, w) in &a.other_windows {
            let _ = writeln!(
                out,
                "{name}{{account=\"{}\",window=\"{}\"}} {}",
                escape(&a.name),
                escape(window),
                w.utilization
            );
        }
    }
    let name = "claude_failover_account_active";
    let _ = writeln!(out, "# HELP {name} 1 for the active account.\n# TYPE {name} gauge");
    for a in &status.accounts {
        let active = u8::from(status.active_account.as_deref() == Some(a.name.as_str()));
        let _ = writeln!(out, "{name}{{account=\"{}\"}} {active}", escape(&a.name));
    }
    for (name, help, value) in [
        (
            "claude_failover_spend_usd",
            "What each api_key account spent on the current UTC day, in USD.",
            (|s: &crate::status::SpendStatus| s.spent_usd) as fn(&crate::status::SpendStatus) -> f64,
        ),
        ("claude_failover_spend_cap_usd", "The daily spend cap of each api_key account, in USD.", |s| s.cap_usd),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}
# TYPE {name} gauge"
        );
        for a in &status.accounts {
            if let Some(spend) = &a.spend {
                let _ = writeln!(out, "{name}{{account=\"{}\"}} {}", escape(&a.name), value(spend));
            }
        }
    }
    let name = "claude_failover_tasks";
    let _ = writeln!(out, "# HELP {name} Tasks in each queue folder.\n# TYPE {name} gauge");
    for q in &status.queues {
        for (state, n) in [("inbox", q.inbox), ("active", q.active), ("done", q.done), ("failed", q.failed)] {
            let _ = writeln!(out, "{name}{{project=\"{}\",state=\"{state}\"}} {n}", escape(&q.project));
        }
    }
    let name = "claude_failover_sessions";
    let _ = writeln!(out, "# HELP {name} Sessions in each state.\n# TYPE {name} gauge");
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for state in ["starting", "idle", "busy", "waiting", "rate_limited", "stopped", "dead"] {
        by_state.insert(state, 0);
    }
    for s in &status.sessions {
        *by_state.entry(s.state.as_str()).or_default() += 1;
    }
    for (state, n) in by_state {
        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {n}");
    }
    let name = "claude_failover_dispatch_paused";
    let _ = writeln!(
        out,
        "# HELP {name} 1 while dispatch is paused.\n# TYPE {name} gauge\n{name} {}",
        u8::from(status.dispatch_paused)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        let m = Metrics::new();
        m.inc("claude_failover_failovers_total", &[("reason", "threshold")]);
        m.observe("claude_failover_dispatch_latency_seconds", 0.015);
        let status = Status {
            queues: vec![crate::status::QueueStatus { project: "p".into(), inbox: 3, ..Default::default() }],
            ..Default::default()
        };
        let text = m.render(&status);
        assert!(text.contains("claude_failover_failovers_total{reason=\"threshold\"} 1"));
        assert!(text.contains("claude_failover_dispatch_latency_seconds_bucket{le=\"0.01\"} 0"));
        assert!(text.contains("claude_failover_dispatch_latency_seconds_bucket{le=\"0.02\"} 1"));
        assert!(text.contains("claude_failover_tasks{project=\"p\",state=\"inbox\"} 3"));
        assert!(text.contains("claude_failover_sessions{state=\"idle\"} 0"));
    }
}
