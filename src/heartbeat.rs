//! Heartbeats without a clock: a role beats when it wakes for work, and is
//! asked to beat only when someone checks. The watchdog ping (systemd) and
//! `/healthz` call [`Heartbeats::stale`], which asks every role that has not
//! beaten lately (a nudge that wakes its thread: a channel message, or a
//! callback for a role blocked outside `select!`) and names the roles that,
//! asked, have not beaten for too long. An idle daemon thus wakes its roles
//! once per check, not once a second each; the ping is still the AND of all
//! of them answering, so a role hung in its work (or in `beat()`) stops it.
//!
//! Also holds the one documented test fault switch: with
//! `CLAUDE_FAILOVER_TEST_FAULTS=1` in the daemon's environment, a role whose
//! file `<state_dir>/faults/hang-<role>` exists hangs inside `beat()` — a stand-in
//! for a deadlocked role, used by the watchdog tests. Off by default.

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A role asked to beat that has not beaten for this long is stale. Every blocking
/// call a role makes has a shorter timeout than this.
pub const STALE_AFTER: Duration = Duration::from_secs(20);

/// Asks go out at most this often, however often the health is checked.
const ASK_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// How long a role just asked has to answer before it can be called stale
/// (shorter when the staleness limit is).
const ANSWER_GRACE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Heartbeats {
    inner: Arc<Inner>,
}

struct Inner {
    roles: Mutex<Roles>,
    fault_dir: Option<PathBuf>,
    stale_after: Duration,
    /// The daemon is on its way out: long waits give up.
    stopping: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Roles {
    list: Vec<Role>,
    last_round: Option<Instant>,
}

/// How a role's thread is woken to answer an ask.
enum Nudge {
    /// It beats on its own often enough (a role with a short tick).
    None,
    /// It selects on the receiving end of this channel.
    Channel(Sender<()>),
    /// It blocks outside `select!`; this wakes it.
    Call(Arc<dyn Fn() + Send + Sync>),
}

struct Role {
    name: &'static str,
    last: Instant,
    /// When it was asked and has not answered since.
    asked: Option<Instant>,
    nudge: Nudge,
}

impl Heartbeats {
    /// `fault_dir` is `Some(<state_dir>/faults)` only when the test fault
    /// switch is on (see the module doc).
    pub fn new(fault_dir: Option<PathBuf>) -> Heartbeats {
        Heartbeats::with_stale_after(fault_dir, STALE_AFTER)
    }

    pub fn with_stale_after(fault_dir: Option<PathBuf>, stale_after: Duration) -> Heartbeats {
        let roles = Mutex::new(Roles::default());
        let stopping = std::sync::atomic::AtomicBool::new(false);
        Heartbeats { inner: Arc::new(Inner { roles, fault_dir, stale_after, stopping }) }
    }

    /// The daemon stops: every role's [`Beat::stopping`] says so from now on,
    /// so a role in a long wait (a swap waiting for a prompt) gives up rather
    /// than hold the stop up.
    pub fn stop_all(&self) {
        self.inner.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
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

    /// Registers a role (fresh as of now) and returns its beat handle. Until
    /// the role says how to wake it ([`Beat::asks`], [`Beat::woken_by`]) it
    /// must beat on its own within the staleness limit of being asked.
    pub fn register(&self, role: &'static str) -> Beat {
        let mut roles = self.inner.roles.lock();
        let now = Instant::now();
        let idx = match roles.list.iter().position(|r| r.name == role) {
            Some(i) => {
                roles.list[i].last = now;
                roles.list[i].asked = None;
                i
            }
            None => {
                roles.list.push(Role { name: role, last: now, asked: None, nudge: Nudge::None });
                roles.list.len() - 1
            }
        };
        Beat { hb: self.clone(), idx, role }
    }

    /// Roles that left an ask unanswered and have not beaten for more than
    /// `max_age` at `now` (an idle role not asked is fresh however long ago
    /// it beat; one asked gets a moment to answer). Asks (wakes) every role
    /// that has not beaten within a second and is not asked already, at most
    /// once a second: the caller's checking is what keeps the roles answering.
    pub fn stale(&self, now: Instant, max_age: Duration) -> Vec<&'static str> {
        let mut nudges = Vec::new();
        let stale = {
            let mut roles = self.inner.roles.lock();
            let round_due = roles.last_round.is_none_or(|t| now.saturating_duration_since(t) >= ASK_AT_MOST_EVERY);
            if round_due {
                roles.last_round = Some(now);
                for r in roles.list.iter_mut() {
                    if r.asked.is_none() && now.saturating_duration_since(r.last) >= ASK_AT_MOST_EVERY {
                        r.asked = Some(now);
                        match &r.nudge {
                            Nudge::None => {}
                            Nudge::Channel(tx) => nudges.push(Nudge::Channel(tx.clone())),
                            Nudge::Call(f) => nudges.push(Nudge::Call(Arc::clone(f))),
                        }
                    }
                }
            }
            let grace = ANSWER_GRACE.min(max_age);
            roles
                .list
                .iter()
                .filter(|r| {
                    r.asked.is_some_and(|a| now.saturating_duration_since(a) >= grace)
                        && now.saturating_duration_since(r.last) > max_age
                })
                .map(|r| r.name)
                .collect()
        };
        // Outside the lock: a nudged role beats (and takes the lock) at once.
        for nudge in nudges {
            match nudge {
                Nudge::None => {}
                Nudge::Channel(tx) => {
                    let _ = tx.try_send(());
                }
                Nudge::Call(f) => f(),
            }
        }
        stale
    }

    /// Roles stale right now by the configured limit.
    pub fn stale_now(&self) -> Vec<&'static str> {
        self.stale(Instant::now(), self.inner.stale_after)
    }

    pub fn stale_after(&self) -> Duration {
        self.inner.stale_after
    }

    pub fn roles(&self) -> Vec<&'static str> {
        self.inner.roles.lock().list.iter().map(|r| r.name).collect()
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
    /// Says the role is alive: call it each time the role wakes, and within
    /// long work.
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
        let mut roles = self.hb.inner.roles.lock();
        let role = &mut roles.list[self.idx];
        role.last = Instant::now();
        role.asked = None;
    }

    /// The channel asks arrive on, for a role that waits in `select!`: when
    /// it fires, the role wakes and beats.
    pub fn asks(&self) -> Receiver<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.hb.inner.roles.lock().list[self.idx].nudge = Nudge::Channel(tx);
        rx
    }

    /// How to wake a role that blocks outside `select!` (a socket read, a
    /// library's queue) so it beats.
    pub fn woken_by(&self, wake: impl Fn() + Send + Sync + 'static) {
        self.hb.inner.roles.lock().list[self.idx].nudge = Nudge::Call(Arc::new(wake));
    }

    pub fn role(&self) -> &'static str {
        self.role
    }

    /// True once the daemon is stopping ([`Heartbeats::stop_all`]).
    pub fn stopping(&self) -> bool {
        self.hb.inner.stopping.load(std::sync::atomic::Ordering::SeqCst)
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
        // The first check asks; an ask unanswered past the limit is stale.
        assert!(hb.stale(later, STALE_AFTER).is_empty());
        let much_later = later + ANSWER_GRACE;
        assert_eq!(hb.stale(much_later, STALE_AFTER), vec!["alpha", "beta"]);
        a.beat();
        assert_eq!(hb.stale(much_later, STALE_AFTER), vec!["beta"]);
    }

    #[test]
    fn a_check_wakes_the_roles_it_asks_and_their_beat_answers() {
        let hb = Heartbeats::new(None);
        let a = hb.register("alpha");
        let asks = a.asks();
        let b = hb.register("beta");
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&woken);
        b.woken_by(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let t0 = Instant::now() + Duration::from_secs(5);
        assert!(hb.stale(t0, STALE_AFTER).is_empty());
        assert!(asks.try_recv().is_ok(), "alpha was asked");
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 1, "beta was asked");
        // Within a second of the last round, no new asks go out.
        assert!(hb.stale(t0 + Duration::from_millis(500), STALE_AFTER).is_empty());
        assert!(asks.try_recv().is_err());
        // An outstanding ask is not repeated; answered, the role is asked again later.
        a.beat();
        let t1 = Instant::now() + Duration::from_secs(10);
        hb.stale(t1, STALE_AFTER);
        assert!(asks.try_recv().is_ok(), "alpha answered, so it is asked anew");
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 1, "beta's ask is still outstanding");
        b.beat();
        assert!(hb.stale(t1 + STALE_AFTER * 2, STALE_AFTER) == vec!["alpha"]);
    }
}
