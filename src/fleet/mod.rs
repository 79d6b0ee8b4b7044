//! The fleet role: this daemon's link to the other hosts of a fleet through
//! etcd (`[fleet]`, docs/fleet.md). Two named threads: "fleet" keeps the
//! host's lease alive, writes what the coordinator orders (news of an
//! account, a proposed active account, a claim on an account, the host's
//! record) and claims the usage polls nobody holds; "fleet-watch" streams
//! every change under the prefix. Both report to the coordinator, which
//! alone decides what the fleet's state means for this host.
//!
//! It must not decide: whether to swap, to follow or to wait is the
//! coordinator's. When etcd does not answer it says so once
//! ([`Report::Unreachable`]) and tries again every second; when it answers
//! again the host joins afresh ([`Report::Joined`], the whole state).

pub mod etcd;
pub mod store;

use crate::config::{Config, FleetConfig};
use crate::heartbeat::Beat;
use crate::report::Reporter;
use crossbeam_channel::{select, Receiver, Sender};
use etcd::{Access, Compare, Etcd, EtcdError, Op, WatchEvent};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
pub use store::{AccountNews, Active, ActiveRecord, Change, Garbage, Hold, HostRecord, Key, Reading};

/// A watch request lasts at most this long before it is taken up again
/// from the next revision: well inside the heartbeat's staleness limit.
pub const WATCH_SPAN: Duration = Duration::from_secs(5);
/// How often a host that lost etcd tries again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// What the coordinator orders.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Publish this host's news of an account.
    News(AccountNews),
    /// `shared`: make `record` the fleet's active account if the fleet's is
    /// still the one of revision `base` (0: none yet).
    Propose { record: ActiveRecord, base: i64 },
    /// `exclusive`: hold `to` if no other host does, and let `from` go.
    Claim { from: Option<String>, to: String },
    /// This host's record (renewed with the lease).
    Host(HostRecord),
    /// The accounts this host's own login cannot poll (refused, expired,
    /// missing): their poll claims are let go for hosts that can, and not
    /// taken again until the login works.
    LoginsOut(BTreeSet<String>),
}

/// What the role tells the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// etcd answered (at start or after an outage): everything under the
    /// prefix as of `revision`; changes follow as [`Report::Changed`].
    Joined {
        revision: i64,
        state: Vec<Change>,
    },
    /// etcd stopped answering; the role tries again every second.
    /// `lease_left`: how long the lease this host's keys were on may still
    /// live, by this host's clock, counted from the last renewal etcd
    /// answered as if it took effect when it was sent (None: no lease was
    /// held). After that, another host may find this host's holds gone.
    Unreachable {
        error: String,
        lease_left: Option<Duration>,
    },
    /// `exclusive`: the lease carrying this host's keys lives at least until
    /// `until` (this host's monotonic clock): sent on every grant and
    /// renewal, so the coordinator can fence on time even while this thread
    /// is stuck in a call. `renewed`: a renewal of the lease that already
    /// carried the holds (so they are still there), not a new grant.
    LeaseAlive {
        until: Instant,
        renewed: bool,
    },
    Changed(Change),
    /// A value under the prefix that is not the fleet's; ignored.
    Garbage(Garbage),
    /// The outcome of a [`Command::Propose`]: `active` is the fleet's
    /// active account after it (this host's if `won`).
    Proposed {
        won: bool,
        active: Option<Active>,
    },
    /// The outcome of a [`Command::Claim`]: `holder` is who holds `to` now.
    Claimed {
        to: String,
        won: bool,
        holder: Option<String>,
    },
}

pub struct FleetHandle {
    commands: Sender<Command>,
    thread: std::thread::JoinHandle<()>,
}

impl FleetHandle {
    pub fn sender(&self) -> Sender<Command> {
        self.commands.clone()
    }

    /// Closes the command channel; the role revokes its lease (its keys go
    /// at once) and returns.
    pub fn shutdown(self) {
        drop(self.commands);
        if self.thread.join().is_err() {
            log::error!("the fleet role had panicked");
        }
    }
}

/// Starts the fleet role for `config.fleet` (which must be set).
pub fn spawn(config: &Config, out: Reporter<Report>, beat: Beat) -> std::io::Result<FleetHandle> {
    let fleet = config.fleet.clone().ok_or_else(|| std::io::Error::other("no [fleet] in the config"))?;
    let accounts: Vec<String> = config.accounts.iter().map(|a| a.name.clone()).collect();
    let (commands, rx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new().name("fleet".into()).spawn(move || {
        let mut role = Role::new(fleet, accounts, out);
        role.run(&rx, &beat);
        role.leave();
    })?;
    Ok(FleetHandle { commands, thread })
}

/// A change seen by the watch thread, or why it stopped.
enum Watched {
    Event(WatchEvent),
    Failed(EtcdError),
}

struct Watcher {
    stop: Sender<()>,
    events: Receiver<Watched>,
    thread: std::thread::JoinHandle<()>,
}

impl Watcher {
    fn start(access: Access, prefix: String, from: i64) -> std::io::Result<Watcher> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let (tx, events) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new().name("fleet-watch".into()).spawn(move || {
            let mut etcd = Etcd::new(access);
            let mut next = from;
            loop {
                let outcome = etcd.watch(&prefix, next, WATCH_SPAN, |e| {
                    stopped.try_recv() != Err(crossbeam_channel::TryRecvError::Disconnected)
                        && tx.send(Watched::Event(e)).is_ok()
                });
                match outcome {
                    Ok(n) => next = n,
                    Err(e) => {
                        etcd.skip_endpoint();
                        if tx.send(Watched::Failed(e)).is_err() {
                            return;
                        }
                        // Next endpoint after a pause; a stop ends the wait.
                        if stopped.recv_timeout(RETRY_EVERY) != Err(crossbeam_channel::RecvTimeoutError::Timeout) {
                            return;
                        }
                    }
                }
                if stopped.try_recv() == Err(crossbeam_channel::TryRecvError::Disconnected) {
                    return;
                }
            }
        })?;
        Ok(Watcher { stop, events, thread })
    }

    fn stop(self) {
        drop(self.stop);
        // The watch ends at its span at the latest.
        if self.thread.join().is_err() {
            log::error!("the fleet watch had panicked");
        }
    }
}

struct Role {
    config: FleetConfig,
    access: Access,
    accounts: Vec<String>,
    /// See [`Command::LoginsOut`].
    logins_out: BTreeSet<String>,
    etcd: Etcd,
    out: Reporter<Report>,
    /// The lease of this host's keys, while joined.
    lease: Option<i64>,
    watcher: Option<Watcher>,
    host: Option<HostRecord>,
    last_renewal: Instant,
    /// When the last grant or renewal etcd answered was sent, and the TTL
    /// it gave: the lease lives at least until then plus the TTL.
    lease_from: Option<(Instant, Duration)>,
    /// Failed to join at this time: try again after [`RETRY_EVERY`].
    last_attempt: Option<Instant>,
    /// What was last reported of the link: false once `Unreachable` went out.
    reported_up: Option<bool>,
}

impl Role {
    fn new(config: FleetConfig, accounts: Vec<String>, out: Reporter<Report>) -> Role {
        let access = Access::new(&config);
        Role {
            etcd: Etcd::new(access.clone()),
            access,
            config,
            accounts,
            logins_out: BTreeSet::new(),
            out,
            lease: None,
            watcher: None,
            host: None,
            last_renewal: Instant::now(),
            lease_from: None,
            last_attempt: None,
            reported_up: None,
        }
    }

    fn renew_every(&self) -> Duration {
        (self.config.lease_ttl() / 4).clamp(Duration::from_millis(300), Duration::from_secs(5))
    }

    fn key(&self, key: Key) -> String {
        key.path(&self.config.prefix)
    }

    fn run(&mut self, rx: &Receiver<Command>, beat: &Beat) {
        let asks = beat.asks();
        let ticks = crossbeam_channel::tick(Duration::from_millis(250));
        loop {
            beat.beat();
            if self.lease.is_none() && self.last_attempt.is_none_or(|t| t.elapsed() >= RETRY_EVERY) {
                self.join();
                beat.beat();
            }
            let never = crossbeam_channel::never();
            let watched = self.watcher.as_ref().map_or(&never, |w| &w.events);
            select! {
                recv(rx) -> command => match command {
                    Ok(c) => self.command(c),
                    Err(_) => return,
                },
                recv(watched) -> w => match w {
                    Ok(Watched::Event(e)) => self.watched(e),
                    Ok(Watched::Failed(e)) => self.watch_failed(e),
                    Err(_) => self.watcher = None,
                },
                recv(ticks) -> _ => {
                    if self.lease.is_some() && self.last_renewal.elapsed() >= self.renew_every() {
                        self.renew();
                    }
                }
                recv(asks) -> _ => {}
            }
        }
    }

    /// Grants a lease, writes the host record, claims free polls, reads the
    /// whole state and starts watching after it.
    fn join(&mut self) {
        self.last_attempt = Some(Instant::now());
        match self.try_join() {
            Ok((revision, state, garbage)) => {
                log::info!("fleet: joined through {} at revision {revision}", self.etcd.endpoint());
                self.reported_up = Some(true);
                self.out.send(Report::Joined { revision, state });
                for g in garbage {
                    self.out.send(Report::Garbage(g));
                }
                match Watcher::start(self.access.clone(), self.config.prefix.clone(), revision + 1) {
                    Ok(w) => self.watcher = Some(w),
                    Err(e) => log::error!("fleet: cannot start the watch thread: {e}"),
                }
            }
            Err(e) => self.lost(e),
        }
    }

    #[allow(clippy::type_complexity)]
    fn try_join(&mut self) -> Result<(i64, Vec<Change>, Vec<Garbage>), EtcdError> {
        let sent = Instant::now();
        let (lease, ttl) = self.etcd.grant(self.config.lease_ttl())?;
        self.lease = Some(lease);
        self.last_renewal = Instant::now();
        self.lease_from = Some((sent, Duration::from_secs(ttl).min(self.config.lease_ttl())));
        self.lease_alive(false);
        self.put_host()?;
        let (_, kvs) = self.etcd.range_prefix(&self.config.prefix)?;
        for account in self.accounts.clone() {
            let taken = kvs.iter().any(|kv| kv.key == self.key(Key::Poller(account.clone())));
            if !taken {
                self.claim_poll(&account)?;
            }
        }
        for account in self.logins_out.clone() {
            self.release_poll(&account)?;
        }
        let (revision, kvs) = self.etcd.range_prefix(&self.config.prefix)?;
        let mut state = Vec::new();
        let mut garbage = Vec::new();
        for kv in kvs {
            match store::read(&self.config.prefix, &kv.key, &kv.value, kv.mod_revision, false) {
                Ok(c) => state.push(c),
                Err(g) => garbage.push(g),
            }
        }
        Ok((revision, state, garbage))
    }

    fn put_host(&mut self) -> Result<(), EtcdError> {
        let Some(mut record) = self.host.clone() else { return Ok(()) };
        record.seen_at = crate::time::unix_now();
        let value = serde_json::to_vec(&record).unwrap_or_default();
        self.etcd.put(&self.key(Key::Host(self.config.host.clone())), &value, self.lease).map(|_| ())
    }

    /// Takes the usage poll of `account` if no host has it (and this
    /// host's login of it works).
    fn claim_poll(&mut self, account: &str) -> Result<(), EtcdError> {
        if self.logins_out.contains(account) {
            return Ok(());
        }
        let key = self.key(Key::Poller(account.into()));
        let value = store::claim_value(&self.config.host);
        self.etcd.txn(&[Compare::Absent(&key)], &[Op::Put { key: &key, value: &value, lease: self.lease }], &[])?;
        Ok(())
    }

    fn lease_alive(&mut self, renewed: bool) {
        if self.config.policy() != crate::config::FleetPolicy::Exclusive {
            return;
        }
        if let Some((from, ttl)) = self.lease_from {
            self.out.send(Report::LeaseAlive { until: from + ttl, renewed });
        }
    }

    /// Lets the usage poll of `account` go if this host holds it (only if
    /// it is still this host's: a transaction on the revision read).
    fn release_poll(&mut self, account: &str) -> Result<(), EtcdError> {
        let key = self.key(Key::Poller(account.into()));
        let read = self.etcd.txn(&[], &[Op::Get(&key)], &[])?.read;
        let Some(kv) = read.into_iter().next() else { return Ok(()) };
        let ours = serde_json::from_slice::<store::Claim>(&kv.value).is_ok_and(|c| c.host == self.config.host);
        if ours {
            log::warn!(
                "fleet: this host's login of {account} does not work; letting its usage poll go to another host"
            );
            self.etcd.txn(&[Compare::ModRevision(&key, kv.mod_revision)], &[Op::Delete(&key)], &[])?;
        }
        Ok(())
    }

    fn renew(&mut self) {
        let Some(lease) = self.lease else { return };
        let sent = Instant::now();
        match self.etcd.keepalive(lease) {
            Ok(true) => {
                self.last_renewal = Instant::now();
                if let Some((from, _)) = &mut self.lease_from {
                    *from = sent;
                }
                self.lease_alive(true);
                if let Err(e) = self.put_host() {
                    self.lost(e);
                }
            }
            // Expired while we could not renew it: our keys are gone; join
            // afresh (the coordinator re-claims what it holds).
            Ok(false) => {
                log::warn!("fleet: the lease expired; joining again");
                self.drop_link();
                self.join();
            }
            Err(e) => self.lost(e),
        }
    }

    fn command(&mut self, command: Command) {
        if let Command::LoginsOut(out) = &command {
            let (out, was) = (out.clone(), std::mem::replace(&mut self.logins_out, out.clone()));
            if self.lease.is_none() {
                return;
            }
            let mut done = Ok(());
            for account in out.difference(&was) {
                done = done.and_then(|()| self.release_poll(account));
            }
            let back: Vec<String> = was.difference(&out).filter(|a| self.accounts.contains(a)).cloned().collect();
            for account in back {
                done = done.and_then(|()| self.claim_poll(&account));
            }
            if let Err(e) = done {
                self.lost(e);
            }
            return;
        }
        if self.lease.is_none() {
            // Not joined: the coordinator knows (it got `Unreachable`) and
            // decides alone; news is published again on the next change.
            match command {
                Command::Host(record) => self.host = Some(record),
                Command::Propose { .. } => {
                    self.out.send(Report::Proposed { won: false, active: None });
                }
                Command::Claim { to, .. } => {
                    self.out.send(Report::Claimed { to, won: false, holder: None });
                }
                Command::News(_) | Command::LoginsOut(_) => {}
            }
            return;
        }
        let done = match command {
            Command::Host(record) => {
                let changed = self.host.as_ref().is_none_or(|h| {
                    (&h.account, h.sessions, h.busy, h.queued)
                        != (&record.account, record.sessions, record.busy, record.queued)
                });
                self.host = Some(record);
                if changed {
                    self.put_host()
                } else {
                    Ok(())
                }
            }
            Command::News(news) => {
                let value = serde_json::to_vec(&news).unwrap_or_default();
                self.etcd.put(&self.key(Key::Account(news.account.clone())), &value, None).map(|_| ())
            }
            Command::Propose { record, base } => self.propose(record, base),
            Command::Claim { from, to } => self.claim(from, to),
            Command::LoginsOut(_) => Ok(()),
        };
        if let Err(e) = done {
            self.lost(e);
        }
    }

    fn propose(&mut self, record: ActiveRecord, base: i64) -> Result<(), EtcdError> {
        let key = self.key(Key::Active);
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let compare = if base == 0 { Compare::Absent(&key) } else { Compare::ModRevision(&key, base) };
        let outcome =
            match self.etcd.txn(&[compare], &[Op::Put { key: &key, value: &value, lease: None }], &[Op::Get(&key)]) {
                Ok(o) => o,
                Err(e) => {
                    self.out.send(Report::Proposed { won: false, active: None });
                    return Err(e);
                }
            };
        let active = if outcome.succeeded {
            Some(Active { record, revision: outcome.revision })
        } else {
            outcome.read.first().and_then(|kv| {
                match store::read(&self.config.prefix, &kv.key, &kv.value, kv.mod_revision, false) {
                    Ok(Change::Active(a)) => a,
                    _ => None,
                }
            })
        };
        self.out.send(Report::Proposed { won: outcome.succeeded, active });
        Ok(())
    }

    fn claim(&mut self, from: Option<String>, to: String) -> Result<(), EtcdError> {
        let key = self.key(Key::Hold(to.clone()));
        let value = store::claim_value(&self.config.host);
        let release = from.filter(|f| *f != to).map(|f| self.key(Key::Hold(f)));
        let mut success = vec![Op::Put { key: &key, value: &value, lease: self.lease }];
        if let Some(old) = &release {
            success.push(Op::Delete(old));
        }
        let outcome = match self.etcd.txn(&[Compare::Absent(&key)], &success, &[Op::Get(&key)]) {
            Ok(o) => o,
            Err(e) => {
                self.out.send(Report::Claimed { to, won: false, holder: None });
                return Err(e);
            }
        };
        let holder = if outcome.succeeded {
            Some(self.config.host.clone())
        } else {
            outcome.read.first().and_then(|kv| serde_json::from_slice::<store::Claim>(&kv.value).ok()).map(|c| c.host)
        };
        // Held by this host already (from before a rejoin): renew it on
        // the current lease.
        let won = outcome.succeeded || holder.as_deref() == Some(self.config.host.as_str());
        if won && !outcome.succeeded {
            self.etcd.put(&key, &value, self.lease)?;
            if let Some(old) = &release {
                self.etcd.txn(&[], &[Op::Delete(old)], &[])?;
            }
        }
        self.out.send(Report::Claimed { to, won, holder });
        Ok(())
    }

    fn watched(&mut self, event: WatchEvent) {
        let kv = &event.kv;
        match store::read(&self.config.prefix, &kv.key, &kv.value, kv.mod_revision, event.deleted) {
            Ok(change) => {
                // A poll nobody holds any more (its host's lease expired):
                // this host takes it.
                if let Change::Poller { account, host: None } = &change {
                    if self.accounts.contains(account) {
                        if let Err(e) = self.claim_poll(&account.clone()) {
                            self.lost(e);
                        }
                    }
                }
                self.out.send(Report::Changed(change));
            }
            Err(g) => {
                self.out.send(Report::Garbage(g));
            }
        }
    }

    /// The watch stream broke (its member went away): the lease renewal
    /// says whether etcd as a whole is gone; the watcher tries the next
    /// endpoint by itself.
    fn watch_failed(&mut self, e: EtcdError) {
        log::warn!("fleet: the watch stopped: {e}");
        if let EtcdError::Compacted(_) = e {
            // Changes were missed for good: read everything afresh.
            self.drop_link();
            self.join();
            return;
        }
        self.renew();
    }

    fn drop_link(&mut self) {
        self.lease = None;
        if let Some(w) = self.watcher.take() {
            w.stop();
        }
    }

    fn lost(&mut self, e: EtcdError) {
        // The lease is given up (a new one is granted on joining again): it
        // lives on in etcd only until its TTL runs out. Said before the watch
        // thread is stopped, which may take a watch span.
        let lease_left =
            self.lease_from.take().map(|(from, ttl)| (from + ttl).saturating_duration_since(Instant::now()));
        self.lease = None;
        if self.reported_up != Some(false) {
            log::warn!("fleet: {e}; working on alone until it answers");
            self.reported_up = Some(false);
            self.out.send(Report::Unreachable { error: e.to_string(), lease_left });
        }
        self.drop_link();
    }

    /// A clean stop: the lease goes, and with it this host's keys.
    fn leave(&mut self) {
        if let Some(lease) = self.lease.take() {
            if let Err(e) = self.etcd.revoke(lease) {
                log::warn!("fleet: could not revoke the lease on the way out: {e}");
            }
        }
        if let Some(w) = self.watcher.take() {
            w.stop();
        }
    }
}

/// Unix milliseconds, as the fleet's records spell times.
pub fn millis(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub fn from_millis(ms: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}
