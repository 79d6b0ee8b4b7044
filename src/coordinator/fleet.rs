//! The coordinator's fleet (`[fleet]`): what this host knows of the other
//! hosts through the fleet role, and the decisions that hang on it.
//!
//! - Quota news: a reading this host polled, a hard limit it confirmed or a
//!   login refused here is published; news from other hosts is folded into
//!   the same [`AccountQuota`](crate::quota::AccountQuota) as a local poll
//!   or sighting, so the usual decisions see it within a watch's delay.
//! - Polls: only the accounts whose poll claim this host holds are polled
//!   while etcd answers; all of them while it does not.
//! - Swaps under `shared`: a swap this host decides is first proposed as
//!   the fleet's active account (an etcd transaction on the revision last
//!   seen); it runs only if the proposal won. Every new revision of the
//!   fleet's active account is applied once (`applied`), by every host.
//! - Swaps under `exclusive`: a swap runs only once this host holds the
//!   target account (a transaction that fails if another host holds it);
//!   accounts other hosts hold are not candidates; without etcd, no move.
//! - The fence under `exclusive`: a host works only on an account it
//!   holds. Cut off from etcd, it works on until its lease may have run out
//!   (less [`FENCE_MARGIN`]); then, or when it learns another host holds its
//!   account, it stops its turns and dispatches nothing (`fleet_fenced`)
//!   until a claim of its own wins again (`fleet_unfenced`), when the
//!   stopped tasks are continued like tasks a limit stopped.

use super::swap::PendingSwap;
use super::{Coordinator, Effects, Now};
use crate::config::FleetPolicy;
use crate::events::Kind;
use crate::fleet::{self, AccountNews, Active, ActiveRecord, Change, Hold, HostRecord, Reading, Report};
use crate::quota::{AccountQuota, TokenState, Windows};
use crate::status::{FleetActive, FleetHost, FleetStatus, SwapCause};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

/// Why a host fenced itself (`fleet_fenced`'s `why`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FenceCause {
    /// Its lease may have run out (cut off, or renewals late).
    Lease,
    /// Another host holds the account it works on.
    HeldElsewhere,
}

impl FenceCause {
    fn as_str(self) -> &'static str {
        match self {
            FenceCause::Lease => "lease",
            FenceCause::HeldElsewhere => "held_elsewhere",
        }
    }
}

/// A host stops its turns this long before its lease may run out (a fifth
/// of the TTL, at least half a second): stopping a turn takes a moment,
/// and another host may claim the account the instant etcd drops the
/// lease. The fleet role renews every quarter TTL, so a renewal may come
/// up to TTL − a quarter − a fifth late before it fences.
pub fn fence_margin(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(500))
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Link {
    Joining,
    Connected,
    Unreachable { error: String },
}

pub(super) struct Fleet {
    pub(super) host: String,
    pub(super) policy: FleetPolicy,
    pub(super) link: Link,
    pub(super) link_since: SystemTime,
    /// `shared`: the fleet's active account as last seen.
    pub(super) active: Option<Active>,
    /// The newest revision of `active` this host applied.
    pub(super) applied: i64,
    /// A proposal or claim is out: no other swap until it answers.
    pub(super) asking: Option<PendingSwap>,
    /// This host swapped while etcd did not answer (`shared`).
    pub(super) swapped_alone: bool,
    /// `exclusive`: account → the host holding it.
    pub(super) holds: BTreeMap<String, String>,
    pub(super) pollers: BTreeMap<String, String>,
    pub(super) hosts: BTreeMap<String, HostRecord>,
    /// What the quota role was last told to poll (None: every account).
    pub(super) polling: Option<Option<BTreeSet<String>>>,
    pub(super) last_record: Option<HostRecord>,
    /// `exclusive`: sessions to launch once this host holds an account.
    pub(super) deferred: BTreeSet<String>,
    /// `exclusive`: sessions to restart (startup timeout) once it does.
    pub(super) deferred_restarts: BTreeSet<String>,
    /// Keys already reported as garbage (once each).
    pub(super) garbage: BTreeSet<String>,
    /// `exclusive`, cut off: when to fence (its lease may run out then,
    /// less the margin).
    pub(super) fence_at: Option<Instant>,
    /// `exclusive`: the lease carrying this host's holds lives at least
    /// until then (the fleet role's last grant or renewal).
    pub(super) lease_until: Option<Instant>,
    pub(super) margin: Duration,
    /// `exclusive`: fenced since then (it works on nothing until a claim
    /// wins, or its lease is renewed after all), and why.
    pub(super) fenced_since: Option<SystemTime>,
    pub(super) fenced_why: Option<FenceCause>,
    /// The accounts the fleet role was last told this host cannot poll.
    pub(super) logins_out: Option<BTreeSet<String>>,
    /// Hosts whose clock is off this one's by more than
    /// [`CLOCK_SKEW_SHOWN`](crate::status::CLOCK_SKEW_SHOWN) s: by how much.
    pub(super) skews: BTreeMap<String, i64>,
}

impl Fleet {
    pub(super) fn new(config: &crate::config::FleetConfig, now: SystemTime) -> Fleet {
        Fleet {
            host: config.host.clone(),
            policy: config.policy(),
            link: Link::Joining,
            link_since: now,
            active: None,
            applied: 0,
            asking: None,
            swapped_alone: false,
            holds: BTreeMap::new(),
            pollers: BTreeMap::new(),
            hosts: BTreeMap::new(),
            polling: None,
            last_record: None,
            deferred: BTreeSet::new(),
            deferred_restarts: BTreeSet::new(),
            garbage: BTreeSet::new(),
            fence_at: None,
            lease_until: None,
            margin: fence_margin(config.lease_ttl()),
            fenced_since: None,
            fenced_why: None,
            logins_out: None,
            skews: BTreeMap::new(),
        }
    }

    pub(super) fn connected(&self) -> bool {
        self.link == Link::Connected
    }

    /// `exclusive`: this host holds `account` in etcd (and may vouch for
    /// it: not fenced).
    pub(super) fn holds(&self, account: &str) -> bool {
        self.fenced_since.is_none() && self.holds.get(account) == Some(&self.host)
    }

    /// `exclusive`, not fenced: when to fence if nothing is heard first.
    pub(super) fn fence_moment(&self) -> Option<Instant> {
        if self.policy != FleetPolicy::Exclusive || self.fenced_since.is_some() {
            return None;
        }
        let by_lease = self.lease_until.map(|u| u.checked_sub(self.margin).unwrap_or(u));
        match (self.fence_at, by_lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn link_error(&self) -> Option<String> {
        match &self.link {
            Link::Unreachable { error } => Some(error.clone()),
            _ => None,
        }
    }

    /// `exclusive`: another host holds `account`.
    pub(super) fn held_elsewhere(&self, account: &str) -> bool {
        self.holds.get(account).is_some_and(|h| *h != self.host)
    }

    pub(super) fn status(&self) -> FleetStatus {
        let (state, error) = match &self.link {
            _ if self.fenced_since.is_some() => ("fenced", self.link_error()),
            Link::Joining => ("joining", None),
            Link::Connected => ("connected", None),
            Link::Unreachable { error } => ("unreachable", Some(error.clone())),
        };
        let since = self.fenced_since.unwrap_or(self.link_since);
        FleetStatus {
            host: self.host.clone(),
            policy: self.policy.as_str().into(),
            state: state.into(),
            since: Some(crate::time::rfc3339(since)),
            error,
            active: self.active.as_ref().map(|a| FleetActive {
                account: a.record.account.clone(),
                revision: a.revision,
                by: a.record.by.clone(),
                reason: a.record.reason.clone(),
            }),
            // Fenced, this host vouches for none of its holds.
            holds: self
                .holds
                .iter()
                .filter(|(_, h)| self.fenced_since.is_none() || **h != self.host)
                .map(|(a, h)| (a.clone(), h.clone()))
                .collect(),
            pollers: self.pollers.clone(),
            hosts: self
                .hosts
                .values()
                .map(|h| FleetHost {
                    host: h.host.clone(),
                    account: h.account.clone(),
                    sessions: h.sessions,
                    busy: h.busy,
                    queued: h.queued,
                    last_seen: crate::time::rfc3339_from_unix(h.seen_at),
                    clock_skew_secs: self.skews.get(&h.host).copied(),
                })
                .collect(),
        }
    }
}

/// An account's reading as the fleet spells it.
fn reading(asked_at: SystemTime, at: SystemTime, windows: &Windows) -> Reading {
    let spell = |w: &crate::quota::Window| (w.utilization, w.resets_at.map(crate::time::unix_secs));
    let mut all = BTreeMap::new();
    if let Some(w) = &windows.five_hour {
        all.insert("five_hour".to_string(), spell(w));
    }
    if let Some(w) = &windows.seven_day {
        all.insert("seven_day".to_string(), spell(w));
    }
    for (name, w) in &windows.other {
        all.insert(name.clone(), spell(w));
    }
    Reading { asked_at_ms: fleet::millis(asked_at), at_ms: fleet::millis(at), windows: all }
}

fn windows_of(reading: &Reading) -> Windows {
    let at = |secs: i64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    Windows::from_named(reading.windows.iter().map(|(name, (u, r))| (name.as_str(), u.clamp(0.0, 100.0), r.map(at))))
}

fn cause(reason: &str) -> SwapCause {
    serde_json::from_value(json!(reason)).unwrap_or(SwapCause::Consolidate)
}

impl Coordinator {
    /// Publishes what this host knows of `account` (`polled`: the reading
    /// it just got itself).
    pub(super) fn fleet_news(&self, account: &str, polled: Option<Reading>, fx: &mut Effects) {
        let Some(fleet) = &self.fleet else { return };
        let Some(q) = self.quotas.accounts.iter().find(|q| q.name == account) else { return };
        let hold = q.exhausted_until.map(|until| Hold {
            until_ms: fleet::millis(until),
            precise: q.hold_precise,
            since_ms: q.held_since.map_or(0, fleet::millis),
        });
        let revoked_since_ms = match q.token {
            crate::quota::TokenState::Revoked { since } => Some(fleet::millis(since)),
            _ => None,
        };
        fx.fleet(fleet::Command::News(AccountNews {
            account: account.into(),
            host: fleet.host.clone(),
            reading: polled,
            hold,
            revoked_since_ms,
        }));
    }

    /// After a poll of this host: its reading goes to the fleet.
    pub(super) fn fleet_polled(&self, account: &str, asked_at: SystemTime, at: SystemTime, fx: &mut Effects) {
        let Some(q) = self.quotas.accounts.iter().find(|q| q.name == account) else { return };
        if q.windows_at == Some(at) {
            self.fleet_news(account, Some(reading(asked_at, at, &q.windows)), fx);
        }
    }

    pub(super) fn on_fleet_report(&mut self, report: Report, now: Now, fx: &mut Effects) {
        if self.fleet.is_none() {
            return;
        }
        match report {
            Report::Joined { revision, state } => self.fleet_joined(revision, state, now, fx),
            Report::Unreachable { error, lease_left } => {
                let Some(fleet) = self.fleet.as_mut() else { return };
                fleet.link = Link::Unreachable { error: error.clone() };
                fleet.link_since = now.wall;
                if fleet.policy == FleetPolicy::Exclusive {
                    // What this host holds may be another's once its lease
                    // is gone: it works on until then.
                    let left = lease_left.unwrap_or_default().saturating_sub(fleet.margin);
                    fleet.fence_at = Some(now.at + left);
                }
                let host = fleet.host.clone();
                if let Some(p) = fleet.asking.take() {
                    // The answer will not come: shared decides alone now;
                    // exclusive keeps what it holds.
                    if fleet.policy == FleetPolicy::Shared {
                        self.swap.pending = Some(p);
                    }
                }
                fx.count("claude_failover_fleet_unreachable_total", &[]);
                fx.emit(
                    Kind::FleetUnreachable,
                    &host,
                    format!("{host}: etcd does not answer ({error}); working on with what this host knows"),
                    json!({"host": host, "error": error}),
                );
            }
            Report::LeaseAlive { until, renewed } => {
                let Some(fleet) = self.fleet.as_mut() else { return };
                fleet.lease_until = Some(until);
                // A renewal of the very lease the holds are on: they never
                // lapsed, so a fence for fear of that lifts.
                if renewed
                    && fleet.fenced_since.is_some()
                    && fleet.fenced_why == Some(FenceCause::Lease)
                    && fleet.connected()
                {
                    if let Some(account) =
                        self.active_account.clone().filter(|a| fleet.holds.get(a) == Some(&fleet.host))
                    {
                        self.unfence(&account, now, fx);
                        self.launch_deferred(now, fx);
                    }
                }
            }
            Report::Changed(change) => self.fleet_change(change, true, now, fx),
            Report::Garbage(g) => {
                let Some(fleet) = self.fleet.as_mut() else { return };
                if fleet.garbage.insert(g.key.clone()) {
                    let host = fleet.host.clone();
                    log::warn!("fleet: ignoring {}: {}", g.key, g.error);
                    fx.emit(
                        Kind::FleetGarbage,
                        &g.key,
                        format!("ignoring {} under the fleet's prefix: {}", g.key, g.error),
                        json!({"host": host, "key": g.key, "error": g.error}),
                    );
                }
            }
            Report::Proposed { won, active } => {
                let Some(fleet) = self.fleet.as_mut() else { return };
                let asked = fleet.asking.take();
                match (won, active) {
                    (true, Some(active)) => {
                        fleet.applied = active.revision;
                        fleet.active = Some(active.clone());
                        fleet.swapped_alone = false;
                        if let Some(p) = asked {
                            if self.active_account.as_deref() != Some(p.to.as_str()) {
                                self.start_swap(&p.to, p.reason, now, fx);
                            }
                        }
                    }
                    (false, Some(active)) => self.fleet_change(Change::Active(Some(active)), false, now, fx),
                    // No answer: `Unreachable` follows and decides.
                    (_, _) => {
                        if let Some(p) = asked {
                            self.swap.pending = Some(p);
                        }
                    }
                }
            }
            Report::Claimed { to, won, holder } => {
                let Some(fleet) = self.fleet.as_mut() else { return };
                let asked = match &fleet.asking {
                    Some(p) if p.to == to => fleet.asking.take(),
                    _ => None,
                };
                match &holder {
                    Some(h) => {
                        fleet.holds.insert(to.clone(), h.clone());
                    }
                    None => {
                        fleet.holds.remove(&to);
                    }
                }
                if won {
                    let old = self.active_account.clone().filter(|a| *a != to);
                    if let Some(old) = old {
                        fleet.holds.remove(&old);
                    }
                    self.unfence(&to, now, fx);
                    // A claim made on joining or while waiting (no account
                    // yet) moves nothing: the account simply becomes this
                    // host's to work on.
                    match asked {
                        Some(p) if self.active_account.as_deref().is_some_and(|a| a != to) => {
                            self.start_swap(&p.to, p.reason, now, fx)
                        }
                        _ => {
                            if self.active_account.is_none() {
                                self.active_account = Some(to.clone());
                            }
                        }
                    }
                    self.launch_deferred(now, fx);
                } else if self.active_account.as_deref() == Some(to.as_str()) && holder.is_some() {
                    // Another host took the account this host meant to work
                    // on (at start, or while this host was cut off): move to
                    // a free one, or wait for one.
                    log::warn!("fleet: {to} is held by {}; looking for a free account", holder.unwrap_or_default());
                    let free = self.free_account(now);
                    let running = self.pool.sessions.values().any(|s| s.account.is_some());
                    match free {
                        Some(free) if running => {
                            // Not one more call where another host works:
                            // stopped now, moved once a claim of its own wins.
                            self.fence(FenceCause::HeldElsewhere, now, fx);
                            self.swap.pending =
                                Some(PendingSwap { to: free, reason: SwapCause::Consolidate, decided: now.at })
                        }
                        Some(free) => {
                            self.active_account = None;
                            self.fleet_claim(free, now, fx);
                        }
                        None if !running => self.active_account = None,
                        // Its sessions may not go on where another host works.
                        None => self.fence(FenceCause::HeldElsewhere, now, fx),
                    }
                } else if self.active_account.is_none() {
                    // Waiting for an account: another one nobody holds, if any.
                    if let Some(free) = self.free_account(now) {
                        self.fleet_claim(free, now, fx);
                    }
                } else {
                    log::info!(
                        "fleet: {to} is held by {}; not moving there",
                        holder.as_deref().unwrap_or("another host")
                    );
                }
            }
        }
        self.fleet_polls(fx);
        self.consider_swap(now, fx);
        self.offer_work(now, fx);
    }

    fn fleet_joined(&mut self, revision: i64, state: Vec<Change>, now: Now, fx: &mut Effects) {
        let Some(fleet) = self.fleet.as_mut() else { return };
        let was = std::mem::replace(&mut fleet.link, Link::Connected);
        fleet.link_since = now.wall;
        // From here the claims decide whether this host may work.
        fleet.fence_at = None;
        fleet.holds.clear();
        fleet.pollers.clear();
        fleet.hosts.clear();
        fleet.active = None;
        let host = fleet.host.clone();
        let policy = fleet.policy;
        let rejoin = matches!(was, Link::Unreachable { .. });
        fx.emit(
            Kind::FleetJoined,
            &host,
            format!("{host} joined the fleet ({}) at etcd revision {revision}", if rejoin { "again" } else { "first" }),
            json!({"host": host, "revision": revision, "policy": policy.as_str(), "rejoin": rejoin}),
        );
        let mut active = None;
        for change in state {
            match change {
                Change::Active(a) => active = a,
                other => self.fleet_change(other, false, now, fx),
            }
        }
        // A record of this host's own that survived a restart is ours again.
        self.publish_host(fx, true);
        match policy {
            FleetPolicy::Shared => self.shared_joined(active, now, fx),
            FleetPolicy::Exclusive => {
                let Some(fleet) = self.fleet.as_mut() else { return };
                fleet.active = active;
                // Hold what this host works on (again); if another host
                // took it meanwhile, the claim fails and the swap decision
                // moves this host to a free account.
                fleet.asking = None;
                let to = self.active_account.clone().or_else(|| self.free_account(now));
                if let Some(to) = to {
                    self.fleet_claim(to, now, fx);
                }
            }
        }
    }

    /// `shared`, on joining: a host that moved alone while etcd was away
    /// offers its account to the fleet on the revision it last saw (the
    /// first such host wins, the others follow it); any other host follows
    /// the fleet's account.
    fn shared_joined(&mut self, active: Option<Active>, now: Now, fx: &mut Effects) {
        let Some(fleet) = self.fleet.as_mut() else { return };
        let mine = self.active_account.clone();
        let base = active.as_ref().map_or(0, |a| a.revision);
        let offer = match &active {
            None => true,
            Some(a) => {
                fleet.swapped_alone && a.revision <= fleet.applied.max(0) && Some(&a.record.account) != mine.as_ref()
            }
        };
        if let (true, Some(account)) = (offer, mine) {
            fleet.active = active;
            let record = ActiveRecord {
                account: account.clone(),
                from: account.clone(),
                reason: SwapCause::Consolidate.as_str().into(),
                by: fleet.host.clone(),
                at: crate::time::unix_secs(now.wall),
            };
            fleet.asking = Some(PendingSwap { to: account, reason: SwapCause::Consolidate, decided: now.at });
            fx.fleet(fleet::Command::Propose { record, base });
            return;
        }
        self.fleet_change(Change::Active(active), false, now, fx);
    }

    /// One change under the prefix; `live` when it came by the watch.
    fn fleet_change(&mut self, change: Change, live: bool, now: Now, fx: &mut Effects) {
        let Some(fleet) = self.fleet.as_mut() else { return };
        match change {
            Change::Host { host, record } => match record {
                Some(r) => {
                    // A record is written at every renewal (seconds apart):
                    // its time says how far that host's clock is off.
                    // Only a record that just came by the watch is fresh; one
                    // read on joining may be a lease's TTL old.
                    let skew = r.seen_at - crate::time::unix_secs(now.wall);
                    let off = skew.abs() > crate::status::CLOCK_SKEW_SHOWN && host != fleet.host;
                    if live && off && fleet.skews.insert(host.clone(), skew).is_none() {
                        log::warn!(
                            "fleet: {host}'s clock is {} s {} this host's; times it stamps are shown as it \
                             stamps them and never taken as later than this host's now",
                            skew.abs(),
                            if skew > 0 { "ahead of" } else { "behind" }
                        );
                    } else if live && !off {
                        fleet.skews.remove(&host);
                    }
                    fleet.hosts.insert(host, r);
                }
                None => {
                    fleet.skews.remove(&host);
                    fleet.hosts.remove(&host);
                }
            },
            Change::Hold { account, host } => {
                let freed = host.is_none();
                match host {
                    Some(h) => fleet.holds.insert(account.clone(), h),
                    None => fleet.holds.remove(&account),
                };
                // A fenced host takes any account let go: it works on none.
                let ours = self.active_account.as_ref().is_none_or(|a| *a == account) || fleet.fenced_since.is_some();
                if freed && live && ours && fleet.asking.is_none() {
                    // A host waiting for a free account tries this one; one
                    // whose account another host took (while it was cut
                    // off) takes it back.
                    self.fleet_claim(account, now, fx);
                }
            }
            Change::Poller { account, host } => {
                match host {
                    Some(h) => fleet.pollers.insert(account, h),
                    None => fleet.pollers.remove(&account),
                };
            }
            Change::News(news) => {
                if news.host != fleet.host {
                    self.fleet_apply_news(news, live, now, fx);
                }
            }
            Change::Active(active) => {
                let Some(active) = active else { return };
                // An answer read before a change the watch already brought
                // says nothing new; kept, it would be the base of the next
                // proposal, which would then lose for nothing.
                if fleet.active.as_ref().is_some_and(|a| a.revision > active.revision) {
                    return;
                }
                if fleet.policy != FleetPolicy::Shared {
                    fleet.active = Some(active);
                    return;
                }
                let new = active.revision > fleet.applied;
                fleet.active = Some(active.clone());
                if !new {
                    return;
                }
                fleet.applied = active.revision;
                fleet.swapped_alone = false;
                let to = active.record.account.clone();
                if self.active_account.as_deref() == Some(to.as_str()) || self.config.account(&to).is_none() {
                    return;
                }
                log::warn!(
                    "fleet: {} moved the fleet to {to} ({}) at revision {}; following",
                    active.record.by,
                    active.record.reason,
                    active.revision
                );
                // A running swap ends first; this one follows it.
                self.swap.pending = Some(PendingSwap { to, reason: cause(&active.record.reason), decided: now.at });
            }
        }
    }

    /// Another host's news of an account, folded in like a local poll or
    /// sighting.
    fn fleet_apply_news(&mut self, news: AccountNews, live: bool, now: Now, fx: &mut Effects) {
        let Some(q) = self.quotas.get_mut(&news.account) else { return };
        let was_held = q.exhausted(now.wall);
        // Times another host stamped come from its clock: one running ahead
        // must not make its news newer than any that follows.
        let theirs = |ms: i64| fleet::from_millis(ms).min(now.wall);
        if let Some(r) = &news.reading {
            let at = theirs(r.at_ms);
            if q.windows_at.is_none_or(|t| t < at) {
                // The reading is the account's; the login that got it is
                // the other host's, so this host's own login state stays.
                let (token, last_error) = (q.token, q.last_error.clone());
                q.apply_poll(theirs(r.asked_at_ms).min(at), at, &Ok(windows_of(r)));
                (q.token, q.last_error) = (token, last_error);
            }
        }
        if let Some(h) = &news.hold {
            let until = fleet::from_millis(h.until_ms);
            if until > now.wall && q.exhausted_until.is_none_or(|u| u < until) {
                q.hold(until, h.precise, theirs(h.since_ms));
            }
        }
        let held = q.exhausted(now.wall);
        let account = news.account.clone();
        if held && !was_held && live {
            let until = q.exhausted_until.map(crate::time::rfc3339);
            fx.emit(
                Kind::FleetNews,
                &account,
                format!(
                    "{} saw a hard limit on {account}; held until {}",
                    news.host,
                    until.clone().unwrap_or_default()
                ),
                json!({"host": news.host, "account": account, "until": until}),
            );
        }
        if news.revoked_since_ms.is_some() && live {
            fx.emit(
                Kind::FleetNews,
                &account,
                format!("{}'s login of {account} was refused (each host has its own login)", news.host),
                json!({"host": news.host, "account": account, "login_revoked": true}),
            );
        }
        if held != was_held {
            self.save_quota(now, false, fx);
        }
    }

    /// The accounts this host polls: its claims while etcd answers, all
    /// of them otherwise. The quota role is told when that changes. An
    /// account whose login does not work here is let go to a host whose
    /// does, and polled here all the same (the poll tells when the login
    /// works again; its reading is not the fleet's).
    pub(super) fn fleet_polls(&mut self, fx: &mut Effects) {
        let out: BTreeSet<String> = self
            .quotas
            .accounts
            .iter()
            .filter(|q| q.revoked() || matches!(q.token, TokenState::Expired | TokenState::Missing))
            .map(|q| q.name.clone())
            .collect();
        let Some(fleet) = self.fleet.as_mut() else { return };
        if fleet.logins_out.as_ref() != Some(&out) {
            fleet.logins_out = Some(out.clone());
            fx.fleet(fleet::Command::LoginsOut(out.clone()));
        }
        let want = match fleet.link {
            Link::Joining => Some(BTreeSet::new()),
            Link::Connected => Some(
                fleet
                    .pollers
                    .iter()
                    .filter(|(_, h)| **h == fleet.host)
                    .map(|(a, _)| a.clone())
                    .chain(out)
                    .collect::<BTreeSet<_>>(),
            ),
            Link::Unreachable { .. } => None,
        };
        if fleet.polling.as_ref() != Some(&want) {
            fleet.polling = Some(want.clone());
            fx.quota(crate::quota::QuotaCommand::PollOnly(want));
        }
    }

    /// Renews this host's record in etcd when it changed (or `always`).
    pub(super) fn publish_host(&mut self, fx: &mut Effects, always: bool) {
        let Some(fleet) = &self.fleet else { return };
        let record = HostRecord {
            host: fleet.host.clone(),
            policy: fleet.policy.as_str().into(),
            account: self.active_account.clone(),
            sessions: self.pool.sessions.len(),
            busy: self.pool.sessions.values().filter(|s| s.activity.as_str() == "busy").count(),
            queued: self.dispatch.counts.values().map(|c| c.inbox).sum(),
            seen_at: 0,
        };
        if always || fleet.last_record.as_ref() != Some(&record) {
            if let Some(fleet) = self.fleet.as_mut() {
                fleet.last_record = Some(record.clone());
            }
            fx.fleet(fleet::Command::Host(record));
        }
    }

    /// A swap this host decided waits for the fleet's answer (a proposal,
    /// or a claim of another account than the one it works on).
    pub(super) fn swap_asked(&self) -> bool {
        let asked = self.fleet.as_ref().and_then(|f| f.asking.as_ref());
        asked.is_some_and(|p| self.active_account.as_ref().is_some_and(|a| *a != p.to))
    }

    /// `exclusive`: claims `to` without moving (on joining, or while this
    /// host waits for an account). The claim counts as out: no swap is
    /// decided until it answers, so this host never holds two accounts.
    fn fleet_claim(&mut self, to: String, now: Now, fx: &mut Effects) {
        let Some(fleet) = self.fleet.as_mut() else { return };
        fleet.asking = Some(PendingSwap { to: to.clone(), reason: SwapCause::Consolidate, decided: now.at });
        fx.fleet(fleet::Command::Claim { from: None, to });
    }

    /// `exclusive`: the accounts a swap may go to (none another host holds).
    pub(super) fn swap_candidates(&self) -> Vec<AccountQuota> {
        match &self.fleet {
            Some(f) if f.policy == FleetPolicy::Exclusive => {
                self.quotas.accounts.iter().filter(|q| !f.held_elsewhere(&q.name)).cloned().collect()
            }
            _ => self.quotas.accounts.clone(),
        }
    }

    /// `exclusive`: the first eligible account no host holds.
    fn free_account(&self, now: Now) -> Option<String> {
        let fleet = self.fleet.as_ref()?;
        let quota = &self.config.quota;
        let free = || self.quotas.accounts.iter().filter(|q| !fleet.holds.contains_key(&q.name));
        free()
            .find(|q| crate::quota::eligible(q, quota, now.wall).is_ok())
            .or_else(|| free().next())
            .map(|q| q.name.clone())
    }

    /// `exclusive`: an account another host holds is not this host's to
    /// launch on; sessions wait for a claim of its own.
    pub(super) fn may_launch_on(&mut self, session: &str, account: &str) -> bool {
        let Some(fleet) = self.fleet.as_mut() else { return true };
        if fleet.policy != FleetPolicy::Exclusive || fleet.holds(account) {
            return true;
        }
        fleet.deferred.insert(session.into());
        false
    }

    /// `exclusive`: another host holds `account` (a person's restart there
    /// is refused rather than left waiting).
    pub(super) fn fleet_holds_elsewhere(&self, account: &str) -> bool {
        self.fleet.as_ref().is_some_and(|f| f.policy == FleetPolicy::Exclusive && f.held_elsewhere(account))
    }

    /// `exclusive`: a restart onto an account this host does not hold
    /// waits for its claim, as a launch does.
    pub(super) fn may_restart_on(&mut self, session: &str, account: &str) -> bool {
        let Some(fleet) = self.fleet.as_mut() else { return true };
        if fleet.policy != FleetPolicy::Exclusive || fleet.holds(account) {
            return true;
        }
        if fleet.deferred_restarts.insert(session.into()) {
            log::info!("{session}: its restart waits until this host holds {account} in the fleet");
        }
        false
    }

    /// Where a decided swap goes next: straight to the switcher without a
    /// fleet; through a proposal (`shared`) or a claim (`exclusive`) while
    /// etcd answers; alone (`shared`) or not at all (`exclusive`) while it
    /// does not. False: it waits (it stays pending).
    pub(super) fn fleet_allows(&mut self, p: &PendingSwap, now: Now, fx: &mut Effects) -> bool {
        let from = self.active_account.clone().unwrap_or_default();
        let Some(fleet) = self.fleet.as_mut() else { return true };
        if fleet.asking.is_some() {
            return false;
        }
        match (fleet.policy, fleet.connected()) {
            (FleetPolicy::Shared, true) => {
                // Following the fleet's own decision needs no proposal.
                if fleet.active.as_ref().is_some_and(|a| a.revision == fleet.applied && a.record.account == p.to) {
                    return true;
                }
                let record = ActiveRecord {
                    account: p.to.clone(),
                    from,
                    reason: p.reason.as_str().into(),
                    by: fleet.host.clone(),
                    at: crate::time::unix_secs(now.wall),
                };
                let base = fleet.active.as_ref().map_or(0, |a| a.revision);
                fleet.asking = Some(p.clone());
                fx.fleet(fleet::Command::Propose { record, base });
                false
            }
            (FleetPolicy::Shared, false) => {
                fleet.swapped_alone = true;
                true
            }
            (FleetPolicy::Exclusive, true) => {
                if fleet.holds(&p.to) {
                    return true;
                }
                fleet.asking = Some(p.clone());
                fx.fleet(fleet::Command::Claim { from: Some(from).filter(|f| !f.is_empty()), to: p.to.clone() });
                false
            }
            (FleetPolicy::Exclusive, false) => false,
        }
    }

    /// `exclusive`: fenced once its lease may run out (cut off, or its
    /// renewals late), while it works on an account.
    pub(super) fn fence_due(&mut self, now: Now, fx: &mut Effects) {
        let due = self.fleet.as_ref().and_then(Fleet::fence_moment).is_some_and(|t| t <= now.at);
        if due && self.active_account.is_some() {
            self.fence(FenceCause::Lease, now, fx);
        }
    }

    /// This host may not use its account any more (`why`): every running
    /// turn is stopped, the tasks wait as after a limit, and nothing is
    /// dispatched until a claim wins.
    fn fence(&mut self, why: FenceCause, now: Now, fx: &mut Effects) {
        let account = self.active_account.clone();
        let Some(fleet) = self.fleet.as_mut() else { return };
        if fleet.fenced_since.is_some() {
            return;
        }
        fleet.fenced_since = Some(now.wall);
        fleet.fenced_why = Some(why);
        fleet.fence_at = None;
        let host = fleet.host.clone();
        // Only running turns: an idle session makes no call, and its task
        // settles, retries or goes on by the usual rules once work may.
        let stopped: Vec<String> = self
            .pool
            .sessions
            .values()
            .filter(|s| s.account.is_some() && s.activity == crate::sessions::model::Activity::Busy)
            .map(|s| s.name.clone())
            .collect();
        for name in &stopped {
            self.stop_turn(name, now, fx);
        }
        let account = account.unwrap_or_default();
        let cause = match why {
            FenceCause::Lease => "cut off from etcd past its lease, another host may take it",
            FenceCause::HeldElsewhere => "another host holds it",
        };
        fx.count("claude_failover_fleet_fenced_total", &[]);
        fx.emit(
            Kind::FleetFenced,
            &host,
            format!(
                "{host} stopped working on {account} ({cause}): {} turn(s) stopped, nothing dispatched until it holds an account again",
                stopped.len()
            ),
            json!({"host": host, "account": account, "why": why.as_str(), "sessions": stopped}),
        );
    }

    /// `session` began a turn while this host is fenced: it is stopped.
    pub(super) fn fenced_turn(&mut self, session: &str, now: Now, fx: &mut Effects) {
        if self.fenced() {
            log::warn!("{session}: a turn began while this host is fenced; stopping it");
            self.stop_turn(session, now, fx);
        }
    }

    /// Stops the turn in `session` (Escape); its task waits for the fence to lift.
    fn stop_turn(&mut self, session: &str, now: Now, fx: &mut Effects) {
        let Some(s) = self.pool.sessions.get_mut(session) else { return };
        if let Some(w) = s.work.as_mut().filter(|w| !w.finishing) {
            w.fence(now.at);
        }
        fx.sessions(crate::sessions::Command::Interrupt { session: session.into() });
    }

    /// A claim of this host's won: a fence, if any, is lifted.
    fn unfence(&mut self, account: &str, now: Now, fx: &mut Effects) {
        let Some(fleet) = self.fleet.as_mut() else { return };
        fleet.fence_at = None;
        let Some(since) = fleet.fenced_since.take() else { return };
        let host = fleet.host.clone();
        let secs = now.wall.duration_since(since).unwrap_or_default().as_secs();
        fx.emit(
            Kind::FleetUnfenced,
            &host,
            format!("{host} holds {account} in the fleet again after {secs} s; the stopped tasks go on"),
            json!({"host": host, "account": account, "fenced_secs": secs}),
        );
    }

    /// `exclusive`: the launches and restarts that waited for this host to
    /// hold an account (or to be unfenced) go now.
    fn launch_deferred(&mut self, now: Now, fx: &mut Effects) {
        let Some(fleet) = self.fleet.as_mut() else { return };
        let deferred = std::mem::take(&mut fleet.deferred);
        let restarts = std::mem::take(&mut fleet.deferred_restarts);
        for name in deferred {
            self.launch(&name, now, fx);
        }
        for name in restarts {
            if let Some(account) = self.active_account.clone() {
                self.restart(&name, &account, now, fx);
            }
        }
    }

    /// `exclusive`: fenced, so nothing runs.
    pub(super) fn fenced(&self) -> bool {
        self.fleet.as_ref().is_some_and(|f| f.fenced_since.is_some())
    }

    /// When the loop must wake to fence on time (its tick may be a second).
    pub(super) fn fence_wake(&self) -> Option<Instant> {
        self.fleet.as_ref().and_then(Fleet::fence_moment)
    }

    pub(super) fn fleet_status(&self) -> Option<FleetStatus> {
        self.fleet.as_ref().map(Fleet::status)
    }
}
