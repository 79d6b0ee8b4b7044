//! Table tests for the quota decisions, on a fake clock.

use super::*;
use crate::config::QuotaConfig;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const T0: u64 = 1_795_622_400; // 2026-11-25T16:00:00Z

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

fn cfg() -> QuotaConfig {
    QuotaConfig { poll_interval_secs: 180, min_dwell_secs: 600, ..QuotaConfig::default() }
}

fn win(u: f64, resets: Option<u64>) -> Window {
    Window { utilization: u, resets_at: resets.map(at) }
}

/// An account polled at t=0 with these five_hour and seven_day values
/// (resetting far in the future).
fn polled(name: &str, five: f64, week: f64) -> AccountQuota {
    let mut q = AccountQuota::new(name);
    let w = Windows {
        five_hour: Some(win(five, Some(5 * 3600))),
        seven_day: Some(win(week, Some(7 * 86400))),
        other: BTreeMap::new(),
    };
    q.apply_poll(at(0), at(0), &Ok(w));
    q
}

fn with(mut q: AccountQuota, f: impl FnOnce(&mut AccountQuota)) -> AccountQuota {
    f(&mut q);
    q
}

#[test]
fn eligibility_reasons() {
    let now = at(60);
    let c = cfg();
    type Case = (&'static str, AccountQuota, Result<(), &'static str>);
    let cases: Vec<Case> = vec![
        ("fresh and low", polled("a", 10.0, 10.0), Ok(())),
        ("five_hour just under", polled("a", 89.9, 0.0), Ok(())),
        ("five_hour at threshold", polled("a", 90.0, 0.0), Err("five_hour")),
        ("seven_day at threshold", polled("a", 0.0, 95.0), Err("weekly")),
        (
            "seven_day_opus over",
            with(polled("a", 0.0, 0.0), |q| {
                q.windows.other.insert("seven_day_opus".into(), win(97.0, None));
            }),
            Err("weekly"),
        ),
        (
            "unknown window over: ignored",
            with(polled("a", 0.0, 0.0), |q| {
                q.windows.other.insert("monthly".into(), win(99.0, None));
            }),
            Ok(()),
        ),
        (
            "five_hour over but reset has passed",
            with(polled("a", 99.0, 0.0), |q| {
                q.windows.five_hour = Some(win(99.0, Some(30)));
            }),
            Ok(()),
        ),
        ("never polled", AccountQuota::new("a"), Err("unknown")),
        ("token expired", with(polled("a", 0.0, 0.0), |q| q.token = TokenState::Expired), Err("token_expired")),
        (
            "token missing beats unknown",
            with(AccountQuota::new("a"), |q| q.token = TokenState::Missing),
            Err("token_missing"),
        ),
        (
            "expired token and over threshold: the hard reason",
            with(polled("a", 95.0, 0.0), |q| q.token = TokenState::Expired),
            Err("five_hour"),
        ),
        (
            "exhausted until later",
            with(polled("a", 0.0, 0.0), |q| q.exhausted_until = Some(at(3600))),
            Err("exhausted"),
        ),
        ("exhausted until a past reset", with(polled("a", 0.0, 0.0), |q| q.exhausted_until = Some(at(59))), Ok(())),
    ];
    for (what, q, want) in cases {
        let got = eligible(&q, &c, now).map_err(|e| match e {
            Ineligible::TokenMissing => "token_missing",
            Ineligible::LoginRevoked => "login_revoked",
            Ineligible::Exhausted { .. } => "exhausted",
            Ineligible::FiveHour { .. } => "five_hour",
            Ineligible::Weekly { .. } => "weekly",
            Ineligible::Unknown => "unknown",
            Ineligible::TokenExpired => "token_expired",
            Ineligible::SpendCap { .. } => "spend_cap",
        });
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn reasons_read_well_and_soft_ones_are_marked() {
    let e = Ineligible::Weekly { window: "seven_day_opus".into(), utilization: 97.0, threshold: 95.0 };
    assert_eq!(e.to_string(), "seven_day_opus at 97.0 % (threshold 95.0 %)");
    assert!(Ineligible::Unknown.is_soft() && Ineligible::TokenExpired.is_soft());
    assert!(!e.is_soft() && !Ineligible::TokenMissing.is_soft());
}

#[test]
fn state_names() {
    let now = at(60);
    let c = cfg();
    let cases: Vec<(&str, AccountQuota, bool, &str)> = vec![
        ("active, fine", polled("a", 10.0, 0.0), true, "active"),
        ("standby, fine", polled("a", 10.0, 0.0), false, "standby"),
        ("never polled standby", AccountQuota::new("a"), false, "standby"),
        ("active over threshold stays active", polled("a", 95.0, 0.0), true, "active"),
        ("standby over threshold", polled("a", 95.0, 0.0), false, "exhausted"),
        ("active hard-limited", with(polled("a", 50.0, 0.0), |q| q.exhausted_until = Some(at(600))), true, "exhausted"),
        ("token expired", with(polled("a", 0.0, 0.0), |q| q.token = TokenState::Expired), true, "token_expired"),
        ("token missing", with(AccountQuota::new("a"), |q| q.token = TokenState::Missing), false, "token_expired"),
        (
            "last poll failed",
            with(polled("a", 0.0, 0.0), |q| q.last_error = Some(PollError::Server(503))),
            false,
            "error",
        ),
    ];
    for (what, q, active, want) in cases {
        assert_eq!(state_name(&q, active, &c, now), want, "{what}");
    }
}

#[test]
fn polls_update_token_state_errors_and_hard_limits() {
    let mut q = polled("a", 10.0, 10.0);
    // A 401 is only asked for with a token whose expiresAt is ahead: revoked.
    q.apply_poll(at(100), at(100), &Err(PollError::Unauthorized));
    assert_eq!(q.token, TokenState::Revoked { since: at(100) });
    assert_eq!(eligible(&q, &cfg(), at(100)), Err(Ineligible::LoginRevoked));
    assert_eq!(q.last_poll_at, Some(at(100)));
    q.apply_poll(at(200), at(200), &Err(PollError::TokenExpired));
    assert_eq!(q.last_poll_at, Some(at(100)), "no request, no poll time");
    assert_eq!(q.token, TokenState::Revoked { since: at(100) }, "a routine expiry does not soften a revoked login");
    // A success asked before the revocation says nothing of the new login.
    q.apply_poll(at(90), at(250), &Ok(Windows::default()));
    assert!(q.revoked());
    q.apply_poll(at(300), at(300), &Err(PollError::NoCredentials("gone".into())));
    assert_eq!(q.token, TokenState::Missing);

    let full =
        Windows { five_hour: Some(win(100.0, Some(4000))), seven_day: Some(win(40.0, None)), other: BTreeMap::new() };
    q.apply_poll(at(400), at(400), &Ok(full));
    assert_eq!(q.token, TokenState::Ok);
    assert_eq!(q.last_error, None);
    assert_eq!(q.exhausted_until, Some(at(4000)));
    assert!(q.exhausted(at(3999)) && !q.exhausted(at(4000)));
}

#[test]
fn zero_cost_samples_merge_and_old_ones_are_ignored() {
    let mut q = polled("a", 10.0, 10.0);
    q.windows.other.insert("seven_day_opus".into(), win(5.0, None));
    let sample = Windows { five_hour: Some(win(20.0, Some(5 * 3600))), ..Windows::default() };
    q.apply_sample(at(30), &sample);
    assert_eq!(q.five_hour(at(30)), Some(20.0));
    assert_eq!(q.windows.seven_day.map(|w| w.utilization), Some(10.0));
    assert!(q.windows.other.contains_key("seven_day_opus"));
    let stale = Windows { five_hour: Some(win(5.0, None)), ..Windows::default() };
    q.apply_sample(at(10), &stale);
    assert_eq!(q.five_hour(at(30)), Some(20.0));
    // A never-polled account becomes known from a sample.
    let mut fresh = AccountQuota::new("b");
    fresh.apply_sample(at(5), &sample);
    assert_eq!(eligible(&fresh, &cfg(), at(6)), Ok(()));
}

fn sig(source: LimitSource, at_s: u64, record: Option<u64>, resets: Option<u64>) -> HardLimitSignal {
    HardLimitSignal {
        account: "a".into(),
        source,
        at: at(at_s),
        resets_at: resets.map(at),
        window: None,
        record_time: record.map(at),
        session: Some("s1".into()),
    }
}

#[test]
fn hard_limit_confirmation() {
    use LimitSource::*;
    let launch = Some(at(100));
    let now = at(1000);
    let other_account = HardLimitSignal { account: "b".into(), ..sig(Transcript, 990, None, None) };
    type Case = (&'static str, HardLimitSignal, Vec<HardLimitSignal>, bool);
    let cases: Vec<Case> = vec![
        ("pane alone", sig(Pane, 1000, None, Some(5000)), vec![], false),
        (
            "pane confirmed by a transcript record",
            sig(Pane, 1000, None, Some(5000)),
            vec![sig(Transcript, 995, Some(50), Some(5000))],
            true,
        ),
        ("pane and pane are one source", sig(Pane, 1000, None, None), vec![sig(Pane, 990, None, None)], false),
        ("pane confirmed only by another account", sig(Pane, 1000, None, None), vec![other_account], false),
        ("confirmation too old", sig(Pane, 1000, None, None), vec![sig(Hook, 1000 - 601, None, None)], false),
        ("transcript record after launch", sig(Transcript, 1000, Some(500), None), vec![], true),
        ("hook record after launch", sig(Hook, 1000, Some(101), Some(5000)), vec![], true),
        (
            "transcript record before launch: a --resume replay",
            sig(Transcript, 1000, Some(99), Some(5000)),
            vec![],
            false,
        ),
        ("record without a time", sig(Transcript, 1000, None, None), vec![], false),
        ("poll at 100 %", sig(Poll, 1000, None, Some(5000)), vec![], true),
        (
            "reset already passed: old text",
            sig(Transcript, 1000, Some(500), Some(999)),
            vec![sig(Pane, 1000, None, Some(999))],
            false,
        ),
        (
            "confirmation whose reset passed does not count",
            sig(Pane, 1000, None, None),
            vec![sig(Transcript, 990, Some(50), Some(900))],
            false,
        ),
    ];
    for (what, signal, recent, want) in cases {
        assert_eq!(confirm_hard_limit(&signal, &recent, launch, now), want, "{what}");
    }
    // No known launch: a record's age cannot be judged.
    assert!(!confirm_hard_limit(&sig(Hook, 1000, Some(900), None), &[], None, now));
}

#[test]
fn sightings_accumulate_until_confirmed() {
    let mut q = polled("a", 50.0, 10.0);
    let launch = Some(at(500));
    assert!(!q.sighting(sig(LimitSource::Pane, 1000, None, None), launch, at(1000)));
    assert_eq!(q.exhausted_until, None);
    // A replayed transcript record alone would not do, but it is a second source.
    assert!(q.sighting(sig(LimitSource::Transcript, 1010, Some(10), Some(7000)), launch, at(1010)));
    assert_eq!(q.exhausted_until, Some(at(7000)));
    assert!(q.sightings.is_empty());
    // Without a reset time, the five-hour window's reset holds it.
    let mut q = polled("a", 50.0, 10.0);
    assert!(q.sighting(sig(LimitSource::Hook, 1000, Some(900), None), launch, at(1000)));
    assert_eq!(q.exhausted_until, Some(at(5 * 3600)));
}

fn pool(list: &[(&str, f64, f64)]) -> Vec<AccountQuota> {
    list.iter().map(|(n, f, w)| polled(n, *f, *w)).collect()
}

fn swap(to: &str, reason: SwapReason) -> Verdict {
    Verdict::Swap(SwapDecision { to: to.into(), reason })
}

#[test]
fn swap_decisions() {
    use SwapReason::*;
    let now = at(10_000);
    let recent = Some(at(10_000 - 60)); // inside min_dwell
    let long_ago = Some(at(0));
    let hard = |mut v: Vec<AccountQuota>, i: usize| {
        v[i].exhausted_until = Some(at(20_000));
        v
    };
    type Case = (&'static str, &'static str, Vec<AccountQuota>, Option<SystemTime>, Verdict);
    let cases: Vec<Case> = vec![
        ("all fine", "a", pool(&[("a", 10.0, 10.0), ("b", 0.0, 0.0)]), None, Verdict::Stay),
        ("threshold crossed", "a", pool(&[("a", 91.0, 10.0), ("b", 0.0, 0.0)]), long_ago, swap("b", Threshold)),
        ("threshold crossed inside min_dwell", "a", pool(&[("a", 91.0, 10.0), ("b", 0.0, 0.0)]), recent, Verdict::Stay),
        ("weekly crossed", "a", pool(&[("a", 10.0, 96.0), ("b", 0.0, 0.0)]), None, swap("b", Threshold)),
        (
            "hard limit ignores min_dwell",
            "a",
            hard(pool(&[("a", 60.0, 10.0), ("b", 0.0, 0.0)]), 0),
            recent,
            swap("b", HardLimit),
        ),
        (
            "priority order among roomy accounts",
            "a",
            pool(&[("a", 95.0, 0.0), ("b", 40.0, 10.0), ("c", 0.0, 0.0)]),
            None,
            swap("b", Threshold),
        ),
        (
            "most headroom among tight accounts",
            "a",
            pool(&[("a", 95.0, 0.0), ("b", 80.0, 10.0), ("c", 60.0, 0.0)]),
            None,
            swap("c", Threshold),
        ),
        (
            "a roomy account beats a tighter earlier one",
            "a",
            pool(&[("a", 95.0, 0.0), ("b", 70.0, 10.0), ("c", 10.0, 10.0)]),
            None,
            swap("c", Threshold),
        ),
        (
            "weekly headroom counts too",
            "a",
            pool(&[("a", 95.0, 0.0), ("b", 55.0, 94.0), ("c", 60.0, 60.0)]),
            None,
            swap("c", Threshold),
        ),
        (
            "nowhere to go on a hard limit",
            "a",
            hard(pool(&[("a", 60.0, 10.0), ("b", 95.0, 0.0)]), 0),
            None,
            Verdict::AllExhausted(HardLimit),
        ),
        (
            "nowhere to go on a threshold",
            "a",
            pool(&[("a", 92.0, 10.0), ("b", 0.0, 99.0)]),
            None,
            Verdict::AllExhausted(Threshold),
        ),
        (
            "soft fallback: never polled",
            "a",
            vec![polled("a", 92.0, 10.0), AccountQuota::new("b")],
            None,
            swap("b", Threshold),
        ),
        (
            "soft fallback: expired token with good last windows",
            "a",
            hard(vec![polled("a", 50.0, 10.0), with(polled("b", 20.0, 10.0), |q| q.token = TokenState::Expired)], 0),
            None,
            swap("b", HardLimit),
        ),
        (
            "known headroom beats a soft candidate earlier in order",
            "a",
            vec![polled("a", 92.0, 10.0), AccountQuota::new("b"), polled("c", 30.0, 0.0)],
            None,
            swap("c", Threshold),
        ),
        (
            "no fallback to a missing login",
            "a",
            hard(vec![polled("a", 50.0, 10.0), with(AccountQuota::new("b"), |q| q.token = TokenState::Missing)], 0),
            None,
            Verdict::AllExhausted(HardLimit),
        ),
        (
            "failback to the first once eligible",
            "b",
            pool(&[("a", 10.0, 10.0), ("b", 30.0, 10.0)]),
            long_ago,
            swap("a", Failback),
        ),
        ("failback waits for min_dwell", "b", pool(&[("a", 10.0, 10.0), ("b", 30.0, 10.0)]), recent, Verdict::Stay),
        (
            "no failback while the first is over threshold",
            "b",
            pool(&[("a", 91.0, 10.0), ("b", 30.0, 10.0)]),
            None,
            Verdict::Stay,
        ),
        (
            "no failback to a never-polled first",
            "b",
            vec![AccountQuota::new("a"), polled("b", 30.0, 10.0)],
            None,
            Verdict::Stay,
        ),
        (
            "failback after the first's hard limit reset",
            "b",
            vec![
                with(polled("a", 100.0, 10.0), |q| {
                    q.windows.five_hour = Some(win(100.0, Some(9_000)));
                    q.exhausted_until = Some(at(9_000));
                }),
                polled("b", 30.0, 10.0),
            ],
            None,
            swap("a", Failback),
        ),
        ("unknown active account", "zz", pool(&[("a", 99.0, 10.0)]), None, Verdict::Stay),
    ];
    for (what, active, accounts, last_swap, want) in cases {
        assert_eq!(should_swap(active, &accounts, &cfg(), last_swap, now), want, "{what}");
    }
    let mut no_failback = cfg();
    no_failback.failback = false;
    assert_eq!(
        should_swap("b", &pool(&[("a", 10.0, 10.0), ("b", 30.0, 10.0)]), &no_failback, None, now),
        Verdict::Stay
    );
}

/// Five-hour samples rising 1 % a minute from `start` %.
fn burning(name: &str, start: f64, minutes: u64, until: u64) -> AccountQuota {
    let mut q = AccountQuota::new(name);
    for m in 0..=minutes {
        let t = until - (minutes - m) * 60;
        let w = Windows {
            five_hour: Some(win(start + m as f64, Some(t + 4 * 3600))),
            seven_day: Some(win(10.0, None)),
            other: BTreeMap::new(),
        };
        q.apply_poll(at(t), at(t), &Ok(w));
    }
    q
}

#[test]
fn burn_rate_and_projection() {
    let now = at(10_000);
    let q = burning("a", 70.0, 10, 10_000);
    let rate = q.burn_rate(now).unwrap();
    assert!((rate - 1.0 / 60.0).abs() < 1e-9, "{rate}");
    // 80 % now, +3 % by the next poll (180 s).
    let p = q.projected_five_hour(now, now + Duration::from_secs(180)).unwrap();
    assert!((p - 83.0).abs() < 1e-9, "{p}");
    // Too short a span says nothing.
    assert_eq!(burning("a", 70.0, 0, 10_000).burn_rate(now), None);
    // A drop (window reset) starts over.
    let mut r = burning("a", 70.0, 10, 10_000);
    r.apply_poll(at(10_060), at(10_060), &Ok(Windows { five_hour: Some(win(1.0, None)), ..Windows::default() }));
    assert_eq!(r.samples.len(), 1);
    assert_eq!(r.burn_rate(at(10_060)), None);
}

#[test]
fn projected_crossing_swaps_early() {
    use SwapReason::*;
    let now = at(10_000);
    // 88 % now, rising 1 %/min: 91 % before the next poll in 180 s.
    let hot = burning("a", 78.0, 10, 10_000);
    let accounts = vec![hot.clone(), polled("b", 0.0, 0.0)];
    assert_eq!(should_swap("a", &accounts, &cfg(), None, now), swap("b", Projected));
    // Subject to min_dwell.
    assert_eq!(should_swap("a", &accounts, &cfg(), Some(at(9_900)), now), Verdict::Stay);
    // A shorter poll interval leaves time: stay.
    let mut quick = cfg();
    quick.poll_interval_secs = 60;
    assert_eq!(should_swap("a", &accounts, &quick, None, now), Verdict::Stay);
    // Nowhere better to go: stay rather than raise the alarm.
    let lonely = vec![hot.clone(), polled("b", 95.0, 0.0)];
    assert_eq!(should_swap("a", &lonely, &cfg(), None, now), Verdict::Stay);
    // A candidate burning just as hot is no refuge.
    let both = vec![hot.clone(), burning("b", 78.0, 10, 10_000), polled("c", 60.0, 0.0)];
    assert_eq!(should_swap("a", &both, &cfg(), None, now), swap("c", Projected));
}

#[test]
fn poll_schedule_after_success_is_jittered_and_deterministic() {
    let c = cfg();
    let now = at(0);
    let draw = |seed| {
        let mut j = Jitter::new(seed);
        (0..50).map(|_| next_poll_at(None, 0, &c, j.next_unit(), now)).collect::<Vec<_>>()
    };
    let a = draw(7);
    assert_eq!(a, draw(7));
    assert_ne!(a, draw(8));
    for t in &a {
        let d = t.duration_since(now).unwrap().as_secs_f64();
        assert!((162.0..=198.0).contains(&d), "{d}");
    }
}

#[test]
fn poll_schedule_after_errors() {
    let c = cfg();
    let now = at(0);
    let secs = |e: Option<&PollError>, failures: u32, unit: f64| {
        next_poll_at(e, failures, &c, unit, now).duration_since(now).unwrap().as_secs()
    };
    let server = PollError::Server(503);
    assert_eq!(secs(Some(&server), 1, 0.0), 360);
    assert_eq!(secs(Some(&server), 2, 0.0), 720);
    assert_eq!(secs(Some(&server), 3, 0.0), 1440);
    assert_eq!(secs(Some(&server), 5, 0.0), 3600, "capped");
    assert_eq!(secs(Some(&server), 500, 0.0), 3600, "no overflow");
    assert_eq!(secs(Some(&server), 1, 0.99), 395, "jitter only adds");
    assert_eq!(secs(Some(&PollError::Timeout), 1, 0.0), 360);
    assert_eq!(secs(Some(&PollError::Garbage("x".into())), 2, 0.0), 720);
    let later = PollError::RateLimited { retry_after: Some(at(2000)) };
    assert_eq!(secs(Some(&later), 1, 0.0), 2000, "Retry-After beyond backoff");
    let soon = PollError::RateLimited { retry_after: Some(at(5)) };
    assert_eq!(secs(Some(&soon), 1, 0.0), 360, "backoff beyond Retry-After");
    let absurd = PollError::RateLimited { retry_after: Some(at(30 * 86400)) };
    assert_eq!(secs(Some(&absurd), 1, 0.0), 6 * 3600);
    assert_eq!(secs(Some(&PollError::TokenExpired), 0, 0.5), 30);
    assert_eq!(secs(Some(&PollError::Unauthorized), 0, 0.5), 30);
    let mut quick = cfg();
    quick.poll_interval_secs = 5;
    let t = next_poll_at(Some(&PollError::TokenExpired), 0, &quick, 0.5, now);
    assert_eq!(t, at(5));
}

#[test]
fn schedule_records_outcomes() {
    let c = cfg();
    let mut j = Jitter::new(1);
    let mut s = PollSchedule::new(at(0));
    assert_eq!(s.next_at, at(0));
    s.record(&Err::<(), _>(PollError::Server(500)), &c, &mut j, at(0));
    s.record(&Err::<(), _>(PollError::Server(500)), &c, &mut j, at(400));
    assert_eq!(s.failures, 2);
    assert!(s.next_at >= at(400 + 720));
    s.record(&Ok(()), &c, &mut j, at(2000));
    assert_eq!((s.failures, s.last_ok_at), (0, Some(at(2000))));
    // Retry-After holds even against PollNow.
    let limited = PollError::RateLimited { retry_after: Some(at(9000)) };
    s.record(&Err::<(), _>(limited), &c, &mut j, at(3000));
    s.poll_now(at(3001));
    assert_eq!(s.next_at, at(9000));
    s.record(&Ok(()), &c, &mut j, at(9000));
    s.poll_now(at(9001));
    assert_eq!(s.next_at, at(9001));
}

#[test]
fn samples_defer_the_next_poll_within_limits() {
    let c = cfg();
    let planned = at(180);
    assert_eq!(defer_after_sample(planned, at(100), Some(at(0)), &c), at(280));
    assert_eq!(defer_after_sample(at(300), at(10), Some(at(0)), &c), at(300), "never earlier");
    assert_eq!(defer_after_sample(planned, at(500), Some(at(0)), &c), at(540), "capped");
    assert_eq!(defer_after_sample(planned, at(100), None, &c), planned, "never polled ok");
    // No deferral while backing off.
    let mut j = Jitter::new(3);
    let mut s = PollSchedule::new(at(0));
    s.record(&Err::<(), _>(PollError::Timeout), &c, &mut j, at(0));
    let before = s.next_at;
    s.sampled(at(10), &c);
    assert_eq!(s.next_at, before);
}

#[test]
fn retry_after_values() {
    let now = at(0);
    assert_eq!(parse_retry_after("120", now), Some(at(120)));
    assert_eq!(parse_retry_after(" 0 ", now), Some(at(0)));
    assert_eq!(parse_retry_after("Wed, 25 Nov 2026 16:10:00 GMT", now), Some(at(600)));
    for bad in ["", "-5", "soon", "Wed, 25 Nov 2026 16:10:00 UTC", "Wed, 5 Nov 2026 16:10:00 GMT", "1.5"] {
        assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
    }
}

#[test]
fn poll_errors_never_need_the_token_to_read() {
    let texts: Vec<String> = [
        PollError::RateLimited { retry_after: None },
        PollError::Server(502),
        PollError::Unauthorized,
        PollError::TokenExpired,
        PollError::Timeout,
    ]
    .iter()
    .map(|e| e.to_string())
    .collect();
    assert!(texts.iter().all(|t| !t.is_empty()));
    assert!(texts[2].contains("401"));
}

#[test]
fn status_shows_windows_errors_and_state() {
    let now = at(60);
    let mut q = polled("a", 42.0, 10.0);
    q.windows.other.insert("seven_day_opus".into(), win(3.0, None));
    q.apply_poll(at(30), at(30), &Err(PollError::Server(502)));
    q.exhausted_until = Some(at(59));
    let s = q.to_status(false, &cfg(), now);
    assert_eq!(s.state, "error");
    assert!(s.eligible);
    assert_eq!(s.five_hour.as_ref().map(|w| w.utilization), Some(42.0));
    assert_eq!(s.five_hour.and_then(|w| w.resets_at).as_deref(), Some("2026-11-25T21:00:00Z"));
    assert_eq!(s.other_windows["seven_day_opus"].resets_at, None);
    assert_eq!(s.last_poll_at.as_deref(), Some("2026-11-25T16:00:30Z"));
    assert_eq!(s.last_error.as_deref(), Some("usage endpoint answered 502 (server error)"));
    assert_eq!(s.exhausted_until, None, "a past hold is not shown");
    let w = Windows::from_named([("five_hour", 1.0, None), ("seven_day_x", 2.0, Some(at(5)))]);
    assert_eq!(w.five_hour.map(|w| w.utilization), Some(1.0));
    assert_eq!(w.weekly().map(|(n, _)| n).collect::<Vec<_>>(), ["seven_day_x"]);
}

#[test]
fn windows_from_claude_formats() {
    let usage = crate::claude::usage::parse(
        r#"{"five_hour":{"utilization":24.0,"resets_at":"2026-11-25T21:00:00Z"},
            "seven_day":{"utilization":36,"resets_at":null},"seven_day_opus":null,
            "seven_day_sonnet":{"utilization":1.0,"resets_at":null},"extra_usage":{"is_enabled":false}}"#,
    )
    .unwrap();
    let w = Windows::from(&usage);
    assert_eq!(w.five_hour, Some(win(24.0, Some(5 * 3600))));
    assert_eq!(w.seven_day, Some(win(36.0, None)));
    assert_eq!(w.other.keys().collect::<Vec<_>>(), ["seven_day_sonnet"]);

    let hook = crate::claude::hook::parse(
        r#"{"session_id":"s","rate_limits":{"five_hour":{"used_percentage":23.5,"resets_at":1795640400},
            "seven_day":{"used_percentage":4}}}"#,
    )
    .unwrap();
    let w = Windows::from(hook.rate_limits.as_slice());
    assert_eq!(w.five_hour, Some(win(23.5, Some(5 * 3600))));
    assert_eq!(w.seven_day.map(|w| w.utilization), Some(4.0));
}

/// A confirmed sighting (a live transcript record) at `at_s` naming `window`.
fn live(at_s: u64, resets: Option<u64>, window: Option<&str>) -> HardLimitSignal {
    HardLimitSignal { window: window.map(str::to_string), ..sig(LimitSource::Transcript, at_s, Some(at_s), resets) }
}

#[test]
fn a_hold_takes_the_reset_of_the_window_that_ran_out_and_precise_replaces_guessed() {
    // five_hour resets in 5 h, seven_day in 7 days; the weekly one is full.
    let base = || with(polled("a", 40.0, 99.0), |q| q.windows.seven_day = Some(win(99.0, Some(1000))));
    type Case = (&'static str, Vec<HardLimitSignal>, u64, bool);
    let cases: Vec<Case> = vec![
        ("the record's own reset", vec![live(100, Some(700), Some("seven_day"))], 700, true),
        ("the named window's reset", vec![live(100, None, Some("seven_day"))], 1000, true),
        ("no name: the fullest window's reset, a guess", vec![live(100, None, None)], 1000, false),
        (
            "a precise reset replaces a later guess",
            vec![live(100, None, None), live(200, Some(400), Some("seven_day"))],
            400,
            true,
        ),
        (
            "a guess never outlives a precise hold",
            vec![live(100, Some(400), Some("seven_day")), live(200, None, None)],
            400,
            true,
        ),
        (
            "two precise holds: both windows ran out",
            vec![live(100, Some(400), Some("seven_day")), live(200, Some(5 * 3600), Some("five_hour"))],
            5 * 3600,
            true,
        ),
    ];
    for (what, signals, until, precise) in cases {
        let mut q = base();
        for s in signals {
            let at_s = s.at;
            assert!(q.sighting(s, Some(at(1)), at_s), "{what}: confirmed");
        }
        assert_eq!((q.exhausted_until, q.hold_precise), (Some(at(until)), precise), "{what}");
    }
}

#[test]
fn a_fresh_reading_below_100_ends_a_hold_and_one_asked_before_the_signal_does_not() {
    let low = Windows {
        five_hour: Some(win(5.0, Some(9000))),
        seven_day: Some(win(3.0, Some(7 * 86400))),
        ..Windows::default()
    };
    let mut q = polled("a", 40.0, 60.0);
    assert!(q.sighting(live(100, Some(2 * 86400), Some("seven_day")), Some(at(1)), at(100)));
    q.apply_poll(at(90), at(110), &Ok(low.clone()));
    assert!(q.exhausted(at(111)), "asked before the limit: not news of it");
    q.apply_poll(at(200), at(201), &Ok(low.clone()));
    assert!(!q.exhausted(at(202)) && q.exhausted_until.is_none(), "a fresh reading is the truth");
    assert_eq!(eligible(&q, &cfg(), at(202)), Ok(()));
    // A reading with a full window starts a precise hold by itself.
    let full = Windows { five_hour: Some(win(100.0, Some(3000))), ..low };
    q.apply_poll(at(300), at(301), &Ok(full));
    assert_eq!((q.exhausted_until, q.hold_precise), (Some(at(3000)), true));
}

#[test]
fn resets_soonest_picks_the_account_whose_limiting_window_resets_first() {
    let c = QuotaConfig { prefer: "resets_soonest".into(), ..cfg() };
    let resets = |name: &str, five: f64, five_reset: u64, week: f64, week_reset: u64| {
        with(polled(name, five, week), |q| {
            q.windows.five_hour = Some(win(five, Some(five_reset)));
            q.windows.seven_day = Some(win(week, Some(week_reset)));
        })
    };
    let accounts = vec![
        with(polled("a", 95.0, 10.0), |_| {}),
        // b.s limiting window is its weekly one (45 %), resetting in two days.
        resets("b", 10.0, 3600, 45.0, 2 * 86400),
        // c's is its five-hour one (40 %), resetting in an hour and a half.
        resets("c", 40.0, 5400, 20.0, 6 * 86400),
    ];
    let got = should_swap("a", &accounts, &c, None, at(60));
    assert_eq!(got, Verdict::Swap(SwapDecision { to: "c".into(), reason: SwapReason::Threshold }));
    let got = should_swap("a", &accounts, &cfg(), None, at(60));
    assert_eq!(got, Verdict::Swap(SwapDecision { to: "b".into(), reason: SwapReason::Threshold }), "priority: roomy b");
}

#[test]
fn a_projected_swap_or_a_failback_never_lands_on_less_headroom() {
    let c = QuotaConfig { failback: true, ..cfg() };
    // a (first) has less room than b, the active one, which is under its threshold.
    let accounts = vec![polled("a", 60.0, 10.0), polled("b", 30.0, 10.0)];
    assert_eq!(should_swap("b", &accounts, &c, None, at(60)), Verdict::Stay, "no failback onto less room");
    let accounts = vec![polled("a", 20.0, 10.0), polled("b", 30.0, 10.0)];
    assert_eq!(
        should_swap("b", &accounts, &c, None, at(60)),
        Verdict::Swap(SwapDecision { to: "a".into(), reason: SwapReason::Failback })
    );
}

// ---- api_key accounts: paid, last in line, capped per UTC day ----

/// A paid account with this cap that spent `usd` at t=0.
fn paid(name: &str, cap: f64, usd: f64) -> AccountQuota {
    let mut q = AccountQuota::paid(name, cap, at(0));
    q.spend.as_mut().unwrap().count("msg_0", usd, at(0));
    q
}

#[test]
fn a_paid_account_takes_over_only_when_every_subscription_is_out_and_leaves_when_one_returns() {
    use SwapReason::*;
    let now = at(10_000);
    let recent = Some(at(10_000 - 60));
    let held = |mut q: AccountQuota| {
        q.exhausted_until = Some(at(20_000));
        q
    };
    type Case = (&'static str, &'static str, Vec<AccountQuota>, Option<SystemTime>, Verdict);
    let cases: Vec<Case> = vec![
        (
            "a subscription with room goes first",
            "a",
            vec![held(polled("a", 50.0, 10.0)), paid("p", 10.0, 0.0), polled("b", 0.0, 0.0)],
            None,
            swap("b", HardLimit),
        ),
        (
            "even one that cannot be polled (expired token) goes before paying",
            "a",
            vec![
                held(polled("a", 50.0, 10.0)),
                with(polled("b", 0.0, 0.0), |q| q.token = TokenState::Expired),
                paid("p", 10.0, 0.0),
            ],
            None,
            swap("b", HardLimit),
        ),
        (
            "both subscriptions out: the key",
            "a",
            vec![held(polled("a", 50.0, 10.0)), held(polled("b", 10.0, 10.0)), paid("p", 10.0, 0.0)],
            None,
            swap("p", HardLimit),
        ),
        (
            "a threshold with no subscription left: the key too",
            "a",
            vec![polled("a", 92.0, 10.0), polled("b", 0.0, 99.0), paid("p", 10.0, 0.0)],
            None,
            swap("p", Threshold),
        ),
        (
            "never for a projection",
            "a",
            vec![
                with(polled("a", 80.0, 10.0), |q| {
                    q.samples = [(at(9_700), 80.0), (at(10_000), 88.0)].into_iter().collect();
                }),
                polled("b", 0.0, 99.0),
                paid("p", 10.0, 0.0),
            ],
            None,
            Verdict::Stay,
        ),
        (
            "a capped key is no way out",
            "a",
            vec![held(polled("a", 50.0, 10.0)), held(polled("b", 10.0, 10.0)), paid("p", 10.0, 10.0)],
            None,
            Verdict::AllExhausted(HardLimit),
        ),
        (
            "on the key while nothing returned: stay",
            "p",
            vec![held(polled("a", 50.0, 10.0)), held(polled("b", 10.0, 10.0)), paid("p", 10.0, 3.0)],
            None,
            Verdict::Stay,
        ),
        (
            "a subscription eligible again: back at once, dwell or not",
            "p",
            vec![held(polled("a", 50.0, 10.0)), polled("b", 10.0, 10.0), paid("p", 10.0, 3.0)],
            recent,
            swap("b", BackToSubscription),
        ),
        (
            "back to the best subscription",
            "p",
            vec![polled("a", 70.0, 10.0), polled("b", 10.0, 10.0), paid("p", 10.0, 3.0)],
            None,
            swap("b", BackToSubscription),
        ),
        (
            "a subscription whose windows reset but whose token expired on standby: back too",
            "p",
            vec![
                with(polled("a", 95.0, 10.0), |q| {
                    q.token = TokenState::Expired;
                    q.windows.five_hour = Some(win(95.0, Some(9_000)));
                }),
                paid("p", 10.0, 3.0),
            ],
            None,
            swap("a", BackToSubscription),
        ),
        ("never polled is not back", "p", vec![AccountQuota::new("a"), paid("p", 10.0, 3.0)], None, Verdict::Stay),
        (
            "the cap reached with a second key: on to it",
            "p",
            vec![held(polled("a", 50.0, 10.0)), paid("p", 10.0, 10.5), paid("q", 5.0, 0.0)],
            None,
            swap("q", SpendCap),
        ),
        (
            "the cap reached and nothing else: all out",
            "p",
            vec![held(polled("a", 50.0, 10.0)), paid("p", 10.0, 10.0)],
            None,
            Verdict::AllExhausted(SpendCap),
        ),
        (
            "failback skips a paid account listed first",
            "b",
            vec![paid("p", 10.0, 0.0), polled("a", 10.0, 10.0), polled("b", 20.0, 10.0)],
            None,
            swap("a", Failback),
        ),
    ];
    let c = cfg();
    for (what, active, accounts, last, want) in cases {
        assert_eq!(should_swap(active, &accounts, &c, last, now), want, "{what}");
    }
}

#[test]
fn spend_is_priced_counted_once_per_message_and_capped_until_the_next_utc_day() {
    use crate::config::Price;
    let prices: BTreeMap<String, Price> = [
        ("claude-opus-5-5".to_string(), Price { input: 15.0, output: 75.0, cache_write: 18.75, cache_read: 1.5 }),
        ("claude-haiku-5".to_string(), Price { input: 1.0, output: 5.0, cache_write: 1.25, cache_read: 0.1 }),
    ]
    .into_iter()
    .collect();
    let usage = Usage { input: 123, output: 42, cache_write: 456, cache_read: 789 };
    let opus = (123.0 * 15.0 + 42.0 * 75.0 + 456.0 * 18.75 + 789.0 * 1.5) / 1e6;
    let cases: [(&str, f64, bool); 4] = [
        ("claude-opus-5-5", opus, true),
        ("claude-opus-5-5-20261101", opus, true),
        ("claude-haiku-5", (123.0 + 42.0 * 5.0 + 456.0 * 1.25 + 789.0 * 0.1) / 1e6, true),
        ("claude-mystery-9", opus, false),
    ];
    for (model, want, known) in cases {
        let (price, k) = price_of(&prices, model);
        assert!((cost(&usage, &price) - want).abs() < 1e-12, "{model}");
        assert_eq!(k, known, "{model}");
    }

    // T0 is 16:00 UTC; midnight is 8 hours on.
    let midnight = at(8 * 3600);
    assert_eq!(next_utc_midnight(at(0)), midnight);
    let c = cfg();
    let mut q = AccountQuota::paid("p", 1.0, at(0));
    let s = q.spend.as_mut().unwrap();
    assert!(s.count("msg_a", 0.6, at(10)));
    assert!(!s.count("msg_a", 0.6, at(11)), "a second line of the same message");
    assert_eq!(eligible(&q, &c, at(12)), Ok(()));
    assert_eq!(state_name(&q, true, &c, at(12)), "active");
    q.spend.as_mut().unwrap().count("msg_b", 0.5, at(20));
    let capped = eligible(&q, &c, at(30));
    assert_eq!(
        capped,
        Err(Ineligible::SpendCap { spent_usd: 1.1, cap_usd: 1.0, until: midnight }),
        "one turn may go past the cap"
    );
    assert_eq!(state_name(&q, true, &c, at(30)), "exhausted");
    assert_eq!(eligible_again_at(&q, &c, at(30)), Some(midnight));
    let status = q.to_status(true, &c, at(30));
    assert_eq!((status.kind.as_str(), status.eligible), ("api_key", false));
    assert_eq!(status.exhausted_until.as_deref(), Some("2026-11-26T00:00:00Z"));
    let spend = status.spend.unwrap();
    assert_eq!((spend.day.as_str(), spend.cap_usd), ("2026-11-25", 1.0));
    assert!((spend.spent_usd - 1.1).abs() < 1e-9);
    // A new UTC day: nothing spent, eligible again.
    assert_eq!(eligible(&q, &c, midnight), Ok(()));
    assert_eq!(q.spend.as_ref().unwrap().today(midnight), 0.0);
    assert!(q.spend.as_mut().unwrap().count("msg_c", 0.2, midnight + Duration::from_secs(1)));
    assert!((q.spend.as_ref().unwrap().today(midnight + Duration::from_secs(2)) - 0.2).abs() < 1e-12);
}

#[test]
fn from_a_capped_key_a_returning_subscription_is_still_a_way_back() {
    let accounts = vec![polled("a", 10.0, 10.0), paid("p", 1.0, 2.0)];
    assert_eq!(should_swap("p", &accounts, &cfg(), None, at(10_000)), swap("a", SwapReason::BackToSubscription));
}
