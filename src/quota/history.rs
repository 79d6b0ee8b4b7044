//! Usage history: the readings behind the dashboard's charts (docs/http.md#get-history),
//! per account a bounded ring of (time, five-hour %, weekly %, five-hour reset),
//! kept in `<state_dir>/history.json` so a restart keeps the charts.
//!
//! The ring is thinned as it ages: each reading is kept only when it lies at
//! least [`spacing`] before the next newer one kept, a spacing that grows with
//! age, and readings older than [`KEEP_FOR`] go. So its length is bounded
//! whatever the rate of readings (statusline samples may come every second):
//! at most about `6 h / 20 s + 8 d / max(poll, 60 s) + 23 d / 1 h` per account.
//!
//! This module only keeps and converts the data: the coordinator says which
//! readings to record (`Effects::readings`) and when to save
//! (`StateWrite::History`); the coordinator's loop carries both out on the
//! shared [`History`] the HTTP role reads.

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The only format version written and read.
pub const VERSION: u32 = 1;
/// Readings older than this are dropped.
pub const KEEP_FOR: Duration = Duration::from_secs(31 * 24 * 3600);
/// Up to this age readings are kept [`FINE_SPACING`] apart.
const FINE_FOR: Duration = Duration::from_secs(6 * 3600);
const FINE_SPACING: Duration = Duration::from_secs(20);
/// Up to this age, one reading per poll interval (at least a minute).
const POLL_FOR: Duration = Duration::from_secs(8 * 24 * 3600);
const POLL_SPACING_AT_LEAST: Duration = Duration::from_secs(60);
/// Older readings: one an hour.
const COARSE_SPACING: Duration = Duration::from_secs(3600);
/// Readings are thinned when their time enters a new ten minutes.
const THIN_EVERY: i64 = 600;
/// The file is rewritten at most this often while readings arrive (and on stop).
pub const SAVE_EVERY: Duration = Duration::from_secs(300);

/// One reading of an account's usage, times in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// When it was learned.
    pub t: i64,
    /// Five-hour utilization, percent.
    pub five_hour: Option<f64>,
    /// Weekly (seven-day) utilization, percent.
    pub seven_day: Option<f64>,
    /// When the five-hour window resets: its start is five hours before.
    pub five_hour_resets_at: Option<i64>,
}

/// An account's reading as the coordinator hands it over.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub account: String,
    pub reading: Reading,
}

/// The minimum distance kept between a reading of this age and the next
/// newer one; `None` past [`KEEP_FOR`] (dropped).
pub fn spacing(age: Duration, poll_interval: Duration) -> Option<Duration> {
    if age <= FINE_FOR {
        Some(FINE_SPACING)
    } else if age <= POLL_FOR {
        Some(poll_interval.max(POLL_SPACING_AT_LEAST))
    } else if age <= KEEP_FOR {
        Some(COARSE_SPACING)
    } else {
        None
    }
}

/// Every account's ring.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rings {
    pub accounts: BTreeMap<String, VecDeque<Reading>>,
    /// The quota poll interval, which sets the spacing of days-old readings.
    pub poll_interval: Duration,
}

impl Rings {
    pub fn new(poll_interval: Duration) -> Rings {
        Rings { accounts: BTreeMap::new(), poll_interval }
    }

    /// Adds `reading` to `account`'s ring and thins it as of the reading's
    /// time. A reading not newer than the last one replaces it (a clock set
    /// back must not leave the ring out of order).
    pub fn record(&mut self, account: &str, reading: Reading) {
        let ring = self.accounts.entry(account.to_string()).or_default();
        while ring.back().is_some_and(|last| last.t >= reading.t) {
            ring.pop_back();
        }
        let previous = ring.back().map(|r| r.t);
        ring.push_back(reading);
        // Thinning walks the whole ring: done once per ten minutes of readings,
        // which lets the ring grow by at most that much between.
        if previous.is_none_or(|p| p.div_euclid(THIN_EVERY) != reading.t.div_euclid(THIN_EVERY)) {
            thin(ring, reading.t, self.poll_interval);
        }
    }

    /// The readings of each account at or after `since`, oldest first.
    pub fn since(&self, since: i64) -> BTreeMap<&str, Vec<Reading>> {
        self.accounts
            .iter()
            .map(|(name, ring)| {
                let from = ring.partition_point(|r| r.t < since);
                (name.as_str(), ring.range(from..).copied().collect())
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.accounts.values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops what [`spacing`] does not keep: time is cut into buckets of the
/// spacing of each reading's age, and of each bucket only the oldest reading
/// stays (so a kept reading stays kept until its age moves it into a coarser
/// bucket), except that the newest reading always stays.
fn thin(ring: &mut VecDeque<Reading>, now: i64, poll_interval: Duration) {
    let newest = ring.back().map(|r| r.t);
    let mut last_bucket: Option<(u64, i64)> = None;
    ring.retain(|r| {
        let age = Duration::from_secs(now.saturating_sub(r.t).max(0) as u64);
        let Some(gap) = spacing(age, poll_interval) else { return false };
        let gap = gap.as_secs().max(1);
        let bucket = (gap, r.t.div_euclid(gap as i64));
        let keep = last_bucket != Some(bucket) || Some(r.t) == newest;
        last_bucket = Some(bucket);
        keep
    });
}

/// The shared handle: the coordinator's loop records, the HTTP role reads.
#[derive(Debug, Clone, Default)]
pub struct History(Arc<RwLock<Rings>>);

impl History {
    pub fn new(rings: Rings) -> History {
        History(Arc::new(RwLock::new(rings)))
    }

    pub fn record(&self, account: &str, reading: Reading) {
        self.0.write().record(account, reading);
    }

    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, Rings> {
        self.0.read()
    }
}

/// `history.json`: per account its readings as `[t, five_hour, seven_day,
/// five_hour_resets_at]` arrays, compact because there are thousands.
#[derive(Debug, Serialize, Deserialize)]
struct HistoryFile {
    version: u32,
    accounts: BTreeMap<String, Vec<SavedReading>>,
}

/// One reading in the file: `[t, five_hour, seven_day, five_hour_resets_at]`.
type SavedReading = (i64, Option<f64>, Option<f64>, Option<i64>);

#[derive(Debug)]
pub enum HistoryError {
    Write { path: PathBuf, error: std::io::Error },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Write { path, error } => {
                write!(f, "cannot write the usage history {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for HistoryError {}

/// Writes the rings atomically to `<state_dir>/history.json`.
pub fn save(state_dir: &Path, rings: &Rings) -> Result<(), HistoryError> {
    let file = HistoryFile {
        version: VERSION,
        accounts: rings
            .accounts
            .iter()
            .map(|(name, ring)| {
                (name.clone(), ring.iter().map(|r| (r.t, r.five_hour, r.seven_day, r.five_hour_resets_at)).collect())
            })
            .collect(),
    };
    let path = crate::state_dir::history_file(state_dir);
    let mut bytes = serde_json::to_vec(&file).unwrap_or_default();
    bytes.push(b'\n');
    crate::atomic::write(&path, &bytes).map_err(|error| HistoryError::Write { path, error })
}

/// What `<state_dir>/history.json` holds, thinned as of `now`; empty rings
/// (and a logged warning) when it is missing or unreadable: a chart with a
/// gap is no reason to refuse to start.
pub fn load_or_log(state_dir: &Path, poll_interval: Duration, now: i64) -> Rings {
    let path = crate::state_dir::history_file(state_dir);
    let mut rings = Rings::new(poll_interval);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return rings,
        Err(e) => {
            log::warn!("cannot read the usage history {}: {e}; the charts start empty", path.display());
            return rings;
        }
    };
    let file: HistoryFile = match serde_json::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            log::warn!("{}: not a usage history ({e}); the charts start empty", path.display());
            return rings;
        }
    };
    if file.version != VERSION {
        log::warn!("{}: format version {} is not {VERSION}; the charts start empty", path.display(), file.version);
        return rings;
    }
    for (name, readings) in file.accounts {
        let mut sorted: Vec<Reading> = readings
            .into_iter()
            .map(|(t, five_hour, seven_day, five_hour_resets_at)| Reading {
                t,
                five_hour,
                seven_day,
                five_hour_resets_at,
            })
            .collect();
        sorted.sort_by_key(|r| r.t);
        sorted.dedup_by_key(|r| r.t);
        let mut ring = VecDeque::from(sorted);
        thin(&mut ring, now, poll_interval);
        if !ring.is_empty() {
            rings.accounts.insert(name, ring);
        }
    }
    rings
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_secs(180);

    fn at(t: i64, five_hour: f64) -> Reading {
        Reading { t, five_hour: Some(five_hour), seven_day: Some(five_hour / 2.0), five_hour_resets_at: Some(t + 3600) }
    }

    #[test]
    fn the_ring_stays_bounded_over_a_long_run_and_keeps_a_week_at_the_poll_interval() {
        let mut rings = Rings::new(POLL);
        // Forty days of a reading every 15 s (statusline samples while busy).
        let start = 1_700_000_000;
        let end = start + 40 * 24 * 3600;
        let mut most = 0;
        for t in (start..end).step_by(15) {
            rings.record("alpha", at(t, (t % 18_000) as f64 / 180.0));
            most = most.max(rings.len());
        }
        let bound = (6 * 3600 / 20) + (8 * 24 * 3600 / 180) + (23 * 24) + 3 + THIN_EVERY as usize;
        assert!(most <= bound, "the ring grew to {most}, over its bound {bound}");
        let ring = &rings.accounts["alpha"];
        assert_eq!(ring.back().unwrap().t, end - 15, "the newest reading is kept");
        assert!(ring.front().unwrap().t >= end - KEEP_FOR.as_secs() as i64, "nothing older than 31 days");
        // Every gap is what its age allows, and a week back is at poll resolution.
        let week_ago = end - 7 * 24 * 3600;
        let mut last_week = ring.iter().filter(|r| r.t >= week_ago).map(|r| r.t).collect::<Vec<_>>();
        last_week.dedup();
        let widest = last_week.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(widest < 2 * POLL.as_secs() as i64, "a gap of {widest} s in the last 7 days");
        assert!(last_week.len() >= (7 * 24 * 3600 / 360) as usize, "only {} readings in 7 days", last_week.len());
    }

    #[test]
    fn readings_out_of_order_replace_the_newer_ones_and_since_filters() {
        let mut rings = Rings::new(POLL);
        rings.record("a", at(100, 1.0));
        rings.record("a", at(200, 2.0));
        rings.record("a", at(150, 3.0));
        assert_eq!(rings.accounts["a"].iter().map(|r| r.t).collect::<Vec<_>>(), vec![100, 150]);
        rings.record("b", at(300, 4.0));
        let since = rings.since(140);
        assert_eq!(since["a"].len(), 1);
        assert_eq!(since["b"][0].five_hour, Some(4.0));
    }

    #[test]
    fn the_file_round_trips_and_a_bad_one_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_700_000_000;
        let mut rings = Rings::new(POLL);
        for i in 0..10 {
            rings.record("alpha", at(now - 600 + i * 60, i as f64));
        }
        rings.record("beta", Reading { t: now, five_hour: None, seven_day: Some(3.5), five_hour_resets_at: None });
        save(dir.path(), &rings).unwrap();
        assert_eq!(load_or_log(dir.path(), POLL, now), rings);
        std::fs::write(crate::state_dir::history_file(dir.path()), "{not json").unwrap();
        assert!(load_or_log(dir.path(), POLL, now).is_empty());
        // Readings past what is kept are dropped on load.
        save(dir.path(), &rings).unwrap();
        assert!(load_or_log(dir.path(), POLL, now + KEEP_FOR.as_secs() as i64 + 1).is_empty());
    }
}
