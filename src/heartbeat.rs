//! Heartbeats: every role thread beats at least once a second; the watchdog
//! ping (systemd) and `/healthz` are the AND of all of them being fresh.
//!
//! Also holds the one documented test fault switch: with
//! `CLAUDE_FAILOVER_TEST_FAULTS=1` in the daemon's environment, a role whose
//! file `<state_dir>/faults/hang-<role>` exists hangs inside `beat()` — a stand-in
//! for a deadlocked role, used by the watchdog tests. Off by default.

use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A role that has not beaten for this long is stale. Every blocking call a
/// role makes has a shorter timeout than this.
pub const STALE_AFTER: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct Heartbeats {
    inner: Arc<Inner>,
}

struct Inner {
    roles: Mutex<Vec<(&'static str, Instant)>>,
    fault_dir: Option<PathBuf>,
    stale_after: Duration,
}

impl Heartbeats {
    /// `fault_dir` is `Some(<state_dir>/faults)` only when the test fault
    /// switch is on (see the module doc).
    pub fn new(fault_dir: Option<PathBuf>) -> Heartbeats {
        Heartbeats::with_stale_after(fault_dir, STALE_AFTER)
    }

    pub fn with_stale_after(fault_dir: Option<PathBuf>, stale_after: Duration) -> Heartbeats {
        let roles = Mutex::new(Vec::new());
        Heartbeats { inner: Arc::new(Inner { roles, fault_dir, stale_after }) }
    }

    /// Reads the test fault switch from the environment. With the switch on, `CLAUDE_FAILOVER_TEST_STALE_SECS` may also shorten
    /// the staleness limit so a test need not wait the production 20 s.
    pub fn from_env(state_dir: &std::path::Path) -> Heartbeats {
        let on = std::env::var("CLAUDE_FAILOVER_TEST_FAULTS").is_ok_and(|v| v == "1");
        if !on {
            return Heartbeats::new(None);
        }
        let stale_after = std::env::var("CLAUDE_FAILOVER_TEST_STALE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(STALE_AFTER, Duration::from_secs);
        Heartbeats::with_stale_after(Some(crate::state_dir::faults_dir(state_dir)), stale_after)
    }

    /// Registers a role (fresh as of now) and returns its beat handle.
    pub fn register(&self, role: &'static str) -> Beat {
        let mut roles = self.inner.roles.lock();
        let idx = match roles.iter().position(|(r, _)| *r == role) {
            Some(i) => {
                roles[i].1 = Instant::now();
                i
            }
            None => {
                roles.push((role, Instant::now()));
                roles.len() - 1
            }
        };
        Beat { hb: self.clone(), idx, role }
    }

    /// Roles that have not beaten within `max_age` of `now`.
    pub fn stale(&self, now: Instant, max_age: Duration) -> Vec<&'static str> {
        self.inner
            .roles
            .lock()
            .iter()
            .filter(|(_, last)| now.saturating_duration_since(*last) > max_age)
            .map(|(r, _)| *r)
            .collect()
    }

    /// Roles stale right now by the configured limit.
    pub fn stale_now(&self) -> Vec<&'static str> {
        self.stale(Instant::now(), self.inner.stale_after)
    }

    pub fn stale_after(&self) -> Duration {
        self.inner.stale_after
    }

    pub fn roles(&self) -> Vec<&'static str> {
        self.inner.roles.lock().iter().map(|(r, _)| *r).collect()
    }
}

/// One role's heartbeat. Cheap to call often.
#[derive(Clone)]
pub struct Beat {
    hb: Heartbeats,
    idx: usize,
    role: &'static str,
}

impl Beat {
    pub fn beat(&self) {
        if let Some(dir) = &self.hb.inner.fault_dir {
            let switch = dir.join(format!("hang-{}", self.role));
            if switch.exists() {
                log::warn!("test fault switch {}: role {} hangs", switch.display(), self.role);
                while switch.exists() {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        self.hb.inner.roles.lock()[self.idx].1 = Instant::now();
    }

    pub fn role(&self) -> &'static str {
        self.role
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_that_stops_beating_goes_stale() {
        let hb = Heartbeats::new(None);
        let a = hb.register("alpha");
        let _b = hb.register("beta");
        let later = Instant::now() + Duration::from_secs(30);
        assert_eq!(hb.stale(later, STALE_AFTER), vec!["alpha", "beta"]);
        a.beat();
        assert!(hb.stale(Instant::now(), STALE_AFTER).is_empty());
    }
}
