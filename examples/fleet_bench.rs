//! The fleet benchmark (`make bench`): what a fleet on etcd buys two hosts
//! sharing two accounts, beside the same two hosts run as single daemons
//! (no `[fleet]`), both measured in the same run on the same fake API and
//! the same `poll_interval_secs`.
//!
//! - Propagation of a hard limit: beta's usage is set to 100 %; the host
//!   that polls it first shows it exhausted in `/status`; the time until the
//!   other host shows it too is one trial (the fleet: the news through etcd
//!   and the watch; single daemons: the other host's own next poll). beta is
//!   then set back to 10 % and both hosts wait to see it recover. Both
//!   `/status` documents are read in turn every ~2 ms, which bounds the
//!   resolution.
//! - Usage calls per hour: every usage request the fake API answered for
//!   either account over a window, scaled to an hour, at the bench's poll
//!   interval and at the default one (180 s).
//!
//! A real three-member etcd (Debian's `etcd-server`, `/usr/bin/etcd` or
//! `CF_ETCD`); no Claude Code sessions (none are needed to poll or to pass
//! news on). Prints figures; asserts nothing.
//!
//! `fleet_bench [--trials N] [--window SECS] [--interval SECS]`

use kit::accounts::token;
use kit::fleet::{FleetOptions, FleetRig, Host};
use kit::wait_until;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);
const DEFAULT_INTERVAL: u64 = 180;

fn main() {
    let mut trials = 20;
    let mut window = Duration::from_secs(30);
    let mut interval = 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| fail(&arg));
        match arg.as_str() {
            "--trials" => trials = value() as usize,
            "--window" => window = Duration::from_secs(value()),
            "--interval" => interval = value(),
            "-h" | "--help" => {
                println!("usage: fleet_bench [--trials N] [--window SECS] [--interval SECS]");
                return;
            }
            _ => fail(&arg),
        }
    }
    let mut rig = FleetRig::new(FleetOptions { sessions: 0, poll_interval_secs: interval, ..FleetOptions::default() });

    eprintln!("fleet_bench: two hosts in a fleet on a 3-member etcd ...");
    rig.start_all();
    for h in &rig.hosts {
        h.wait_fleet_state("connected", LONG);
    }
    let fleet = measure(&rig, trials, window);

    eprintln!("fleet_bench: the same two hosts as single daemons ...");
    for h in &mut rig.hosts {
        h.kill();
        h.config = without_fleet(&h.config);
    }
    rig.etcd.stop_all();
    rig.start_all();
    let alone = measure(&rig, trials, window);

    let per_hour = |calls: u64| calls as f64 * 3600.0 / window.as_secs_f64();
    let at_default = |calls: u64| per_hour(calls) * interval as f64 / DEFAULT_INTERVAL as f64;
    println!("fleet of 2 hosts, 2 accounts, poll_interval_secs = {interval}, {trials} trials");
    println!("| measure | fleet (etcd) | single daemons (same run) |");
    println!("|---|---|---|");
    println!(
        "| a hard limit one host polled, known to the other after | p50 {:.0} ms, p99 {:.0} ms | p50 {:.0} ms, p99 {:.0} ms |",
        percentile(&fleet.propagation, 50.0),
        percentile(&fleet.propagation, 99.0),
        percentile(&alone.propagation, 50.0),
        percentile(&alone.propagation, 99.0),
    );
    println!(
        "| usage calls per hour, both accounts, poll every {interval} s | {:.0} | {:.0} |",
        per_hour(fleet.calls),
        per_hour(alone.calls)
    );
    println!(
        "| same at the default poll_interval_secs = {DEFAULT_INTERVAL} | {:.0} | {:.0} |",
        at_default(fleet.calls),
        at_default(alone.calls)
    );
}

struct Figures {
    /// Milliseconds, one per trial.
    propagation: Vec<f64>,
    /// Usage calls over the window, both accounts.
    calls: u64,
}

fn measure(rig: &FleetRig, trials: usize, window: Duration) -> Figures {
    let accounts = || ["alpha", "beta"].iter().map(|a| rig.usage_calls(a)).sum::<u64>();
    // Every account polled once (the first polls of a start come at once).
    wait_until(LONG, "both accounts polled", || {
        (["alpha", "beta"].iter().all(|a| rig.usage_calls(a) > 0)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let before = accounts();
    let started = Instant::now();
    std::thread::sleep(window);
    let calls = (accounts() - before) as f64 * window.as_secs_f64() / started.elapsed().as_secs_f64();

    let beta = token("beta");
    let mut propagation = Vec::new();
    for trial in 0..trials {
        rig.api.set_usage(&beta, 100.0, 10.0, None);
        let (first, second) = both_see(&rig.hosts, "exhausted");
        propagation.push(second.duration_since(first).as_secs_f64() * 1000.0);
        rig.api.set_usage(&beta, 10.0, 10.0, None);
        let back = Instant::now();
        let (first, second) = both_see(&rig.hosts, "standby");
        eprintln!(
            "  trial {}: {:.1} ms; recovered after {:.1} s, on both {:.1} ms apart",
            trial + 1,
            propagation[trial],
            first.duration_since(back).as_secs_f64(),
            second.duration_since(first).as_secs_f64() * 1000.0
        );
    }
    Figures { propagation, calls: calls.round() as u64 }
}

/// When each of the two hosts first showed beta in `state` (earlier first).
fn both_see(hosts: &[Host], state: &str) -> (Instant, Instant) {
    let deadline = Instant::now() + LONG;
    let mut seen: [Option<Instant>; 2] = [None, None];
    while seen.iter().any(Option::is_none) {
        assert!(Instant::now() < deadline, "beta never {state} on both hosts");
        for (i, h) in hosts.iter().take(2).enumerate() {
            if seen[i].is_none() && beta_state(h).as_deref() == Some(state) {
                seen[i] = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let (a, b) = (seen[0].unwrap_or_else(Instant::now), seen[1].unwrap_or_else(Instant::now));
    (a.min(b), a.max(b))
}

fn beta_state(h: &Host) -> Option<String> {
    let status = h.status()?;
    let beta = status["accounts"].as_array()?.iter().find(|a| a["name"] == "beta")?.clone();
    beta["state"].as_str().map(str::to_string)
}

/// The host's config without its `[fleet]` table: a single daemon.
fn without_fleet(config: &str) -> String {
    let mut value: toml::Table = toml::from_str(config).unwrap_or_else(|e| panic!("the rig's config: {e}"));
    value.remove("fleet");
    toml::to_string(&value).unwrap_or_else(|e| panic!("the rig's config: {e}"))
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn fail(arg: &str) -> ! {
    eprintln!("fleet_bench: bad argument {arg:?}; usage: fleet_bench [--trials N] [--window SECS] [--interval SECS]");
    std::process::exit(2)
}
