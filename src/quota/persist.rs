//! The quota state a restart must not forget, in `<state_dir>/quota.json`:
//! per account, a confirmed hard limit (`exhausted_until`) and the last known
//! windows with the times they were learned. Nothing else re-learns a hard
//! limit at once: a transcript record is not replayed, and the usage endpoint
//! may be failing or the token expired when the daemon comes back.
//!
//! This module only converts and reads/writes the file; the coordinator
//! decides when to save (a changed limit at once, windows at most every
//! [`SAVE_WINDOWS_EVERY`], everything on stop). Burn-rate samples, unconfirmed
//! sightings and token states are not kept: they are re-learned in seconds.
//!
//! The format (times RFC 3339 UTC, whole seconds; optional keys left out):
//! ```json
//! {"version": 1, "saved_at": "2026-11-25T16:00:00Z",
//!  "accounts": {"alpha": {"exhausted_until": "2026-11-25T19:00:00Z",
//!                         "windows": {"five_hour": {"utilization": 100.0, "resets_at": "2026-11-25T19:00:00Z"}},
//!                         "windows_at": "2026-11-25T15:59:00Z", "last_poll_at": "2026-11-25T15:59:00Z"}}}
//! ```

use super::decide::{AccountQuota, Window, Windows};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The only format version written and read.
pub const VERSION: u32 = 1;
/// When only windows changed (every poll), the file is rewritten at most
/// this often: they are re-learned by the first poll anyway.
pub const SAVE_WINDOWS_EVERY: Duration = Duration::from_secs(600);

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaFile {
    pub version: u32,
    #[serde(default, with = "stamp", skip_serializing_if = "Option::is_none")]
    pub saved_at: Option<SystemTime>,
    #[serde(default)]
    pub accounts: BTreeMap<String, SavedAccount>,
}

impl Default for QuotaFile {
    fn default() -> QuotaFile {
        QuotaFile { version: VERSION, saved_at: None, accounts: BTreeMap::new() }
    }
}

/// What is kept of one account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedAccount {
    #[serde(default, with = "stamp", skip_serializing_if = "Option::is_none")]
    pub exhausted_until: Option<SystemTime>,
    /// By the usage endpoint's names: `five_hour`, `seven_day`, `seven_day_opus`, ...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub windows: BTreeMap<String, SavedWindow>,
    #[serde(default, with = "stamp", skip_serializing_if = "Option::is_none")]
    pub windows_at: Option<SystemTime>,
    #[serde(default, with = "stamp", skip_serializing_if = "Option::is_none")]
    pub last_poll_at: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SavedWindow {
    pub utilization: f64,
    #[serde(default, with = "stamp", skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<SystemTime>,
}

impl QuotaFile {
    /// What the accounts' state says now, as it would be saved: limits
    /// already lifted are left out, and accounts nothing is known about.
    pub fn snapshot(quotas: &[AccountQuota], now: SystemTime) -> QuotaFile {
        let accounts = quotas
            .iter()
            .map(|q| (q.name.clone(), SavedAccount::from_quota(q, now)))
            .filter(|(_, saved)| *saved != SavedAccount::default())
            .collect();
        QuotaFile { version: VERSION, saved_at: None, accounts }
    }

    /// The confirmed hard limits in this file, by account: a change here is
    /// saved at once.
    pub fn limits(&self) -> BTreeMap<&str, SystemTime> {
        self.accounts.iter().filter_map(|(name, a)| Some((name.as_str(), a.exhausted_until?))).collect()
    }

    /// The same content, whatever time it was saved at.
    pub fn same_state(&self, other: &QuotaFile) -> bool {
        self.accounts == other.accounts
    }

    /// Puts what was saved back into the accounts of the config. Entries of
    /// accounts no longer configured and limits already lifted by `now` are
    /// dropped (and logged). Windows older than `fresh_for` are restored for
    /// `/status` and the thresholds, but without their time, so they cannot
    /// vouch for an account's headroom (it stays "not known yet" until a
    /// poll): stale numbers may keep an account out, never let it in.
    /// Returns the accounts held exhausted.
    pub fn restore(&self, quotas: &mut [AccountQuota], fresh_for: Duration, now: SystemTime) -> Vec<String> {
        let mut held = Vec::new();
        for (name, saved) in &self.accounts {
            let Some(q) = quotas.iter_mut().find(|q| &q.name == name) else {
                log::info!("quota.json: {name} is no longer in the config; its saved quota state is dropped");
                continue;
            };
            let windows = saved.windows.iter().map(|(k, w)| (k.as_str(), w.utilization, w.resets_at));
            q.windows = Windows::from_named(windows);
            q.windows_at = saved.windows_at.filter(|t| now.duration_since(*t).is_ok_and(|age| age <= fresh_for));
            q.last_poll_at = saved.last_poll_at;
            match saved.exhausted_until {
                Some(until) if until > now => {
                    // A saved hold is the reset a precise signal gave (or a
                    // guess that outlived nothing better); a poll asked after
                    // this start may end it.
                    q.exhausted_until = Some(until);
                    q.hold_precise = true;
                    q.held_since = Some(now);
                    held.push(name.clone());
                }
                Some(until) => log::info!(
                    "quota.json: the hard limit of {name} lifted at {} while the daemon was down",
                    crate::time::rfc3339(until)
                ),
                None => {}
            }
        }
        held
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

impl SavedAccount {
    fn from_quota(q: &AccountQuota, now: SystemTime) -> SavedAccount {
        let saved = |w: &Window| SavedWindow { utilization: w.utilization, resets_at: w.resets_at.map(whole) };
        let named = q
            .windows
            .five_hour
            .iter()
            .map(|w| ("five_hour", w))
            .chain(q.windows.seven_day.iter().map(|w| ("seven_day", w)));
        let windows = named
            .chain(q.windows.other.iter().map(|(k, w)| (k.as_str(), w)))
            .map(|(k, w)| (k.to_string(), saved(w)))
            .collect();
        SavedAccount {
            exhausted_until: q.exhausted_until.filter(|u| *u > now).map(whole),
            windows,
            windows_at: q.windows_at.map(whole),
            last_poll_at: q.last_poll_at.map(whole),
        }
    }
}

/// A time as the file keeps it (whole seconds), so that a snapshot compares
/// equal to what was read back.
fn whole(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(crate::time::unix_secs(t)).unwrap_or(0))
}

/// Why quota.json could not be used or written.
#[derive(Debug)]
pub enum PersistError {
    Read { path: PathBuf, error: std::io::Error },
    Garbage { path: PathBuf, why: String },
    Version { path: PathBuf, found: u32 },
    Write { path: PathBuf, error: std::io::Error },
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersistError::Read { path, error } => {
                write!(f, "{}: cannot read the saved quota state: {error}", path.display())
            }
            PersistError::Garbage { path, why } => {
                write!(f, "{}: the saved quota state is not understood ({why})", path.display())
            }
            PersistError::Version { path, found } => write!(
                f,
                "{}: the saved quota state has format version {found}; this daemon reads version {VERSION}",
                path.display()
            ),
            PersistError::Write { path, error } => {
                write!(f, "{}: cannot save the quota state: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for PersistError {}

/// Reads `<state_dir>/quota.json`; None when there is none.
pub fn load(state_dir: &Path) -> Result<Option<QuotaFile>, PersistError> {
    let path = crate::state_dir::quota_file(state_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(PersistError::Read { path, error }),
    };
    let file: QuotaFile =
        serde_json::from_slice(&bytes).map_err(|e| PersistError::Garbage { path: path.clone(), why: e.to_string() })?;
    if file.version != VERSION {
        return Err(PersistError::Version { path, found: file.version });
    }
    Ok(Some(file))
}

/// [`load`] for start-up: a file that cannot be used is logged as an error
/// and the daemon starts as if there were none.
pub fn load_or_log(state_dir: &Path) -> QuotaFile {
    match load(state_dir) {
        Ok(file) => file.unwrap_or_default(),
        Err(e) => {
            log::error!("{e}; starting without it (hard limits are re-learned from polls and sessions)");
            QuotaFile::default()
        }
    }
}

/// Writes `file` atomically to `<state_dir>/quota.json`, stamped `now`.
pub fn save(state_dir: &Path, file: &QuotaFile, now: SystemTime) -> Result<(), PersistError> {
    let path = crate::state_dir::quota_file(state_dir);
    let stamped = QuotaFile { saved_at: Some(whole(now)), ..file.clone() };
    crate::atomic::write(&path, &stamped.encode()).map_err(|error| PersistError::Write { path, error })
}

/// `Option<SystemTime>` as an RFC 3339 string; a string that is not one is an
/// error naming it.
mod stamp {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&crate::time::rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            crate::time::parse_rfc3339(&t).ok_or_else(|| D::Error::custom(format!("{t:?} is not an RFC 3339 time")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::decide::{PollError, TokenState};

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// alpha polled at 100 % five_hour (so exhausted until its reset), beta
    /// polled fine, gamma never heard of.
    fn quotas(now: SystemTime) -> Vec<AccountQuota> {
        let mut alpha = AccountQuota::new("alpha");
        let full = Windows::from_named([
            ("five_hour", 100.0, Some(now + 3 * HOUR)),
            ("seven_day", 40.0, Some(now + 90 * HOUR)),
            ("seven_day_opus", 3.0, None),
        ]);
        alpha.apply_poll(now, now, &Ok(full));
        let mut beta = AccountQuota::new("beta");
        beta.apply_poll(now, now, &Ok(Windows::from_named([("five_hour", 10.0, Some(now + HOUR))])));
        vec![alpha, beta, AccountQuota::new("gamma")]
    }

    fn fresh() -> Vec<AccountQuota> {
        ["alpha", "beta", "gamma"].iter().map(|n| AccountQuota::new(n)).collect()
    }

    #[test]
    fn a_saved_file_restores_limits_windows_and_poll_times() {
        let dir = tempfile::tempdir().unwrap();
        let now = at(1_800_000_000);
        let before = quotas(now);
        let file = QuotaFile::snapshot(&before, now);
        assert_eq!(file.accounts.keys().collect::<Vec<_>>(), ["alpha", "beta"], "gamma knows nothing");
        save(dir.path(), &file, now).unwrap();

        let read = load(dir.path()).unwrap().expect("the file is there");
        assert!(read.same_state(&file));
        assert_eq!(read.saved_at, Some(now));
        let mut after = fresh();
        let held = read.restore(&mut after, HOUR, now + Duration::from_secs(60));
        assert_eq!(held, ["alpha"]);
        for (a, b) in before.iter().zip(&after) {
            assert_eq!(a.exhausted_until, b.exhausted_until, "{}", a.name);
            assert_eq!(a.windows, b.windows, "{}", a.name);
            assert_eq!(a.windows_at, b.windows_at, "{}", a.name);
            assert_eq!(a.last_poll_at, b.last_poll_at, "{}", a.name);
        }
        assert_eq!(after[0].exhausted_until, Some(now + 3 * HOUR));
        assert_eq!(QuotaFile::snapshot(&after, now), file, "what was read back saves the same");
    }

    #[test]
    fn sub_second_times_are_saved_as_whole_seconds_and_compare_equal() {
        let now = at(1_800_000_000) + Duration::from_millis(700);
        let file = QuotaFile::snapshot(&quotas(now), now);
        let back: QuotaFile = serde_json::from_slice(&file.encode()).unwrap();
        assert_eq!(back, file);
    }

    #[test]
    fn entries_of_removed_accounts_and_lifted_limits_are_dropped() {
        let now = at(1_800_000_000);
        let mut file = QuotaFile::snapshot(&quotas(now), now);
        file.accounts
            .insert("gone".into(), SavedAccount { exhausted_until: Some(now + 5 * HOUR), ..SavedAccount::default() });
        let mut after: Vec<AccountQuota> = ["alpha", "beta"].iter().map(|n| AccountQuota::new(n)).collect();
        let later = now + 3 * HOUR + Duration::from_secs(1);
        let held = file.restore(&mut after, HOUR, later);
        assert!(held.is_empty(), "alpha's limit lifted while down; gone is gone: {held:?}");
        assert_eq!(after[0].exhausted_until, None);
        assert!(!after[0].exhausted(later));
        assert_eq!(after[0].windows.five_hour.unwrap().current(later), 0.0, "the window has reset too");
        assert!(!QuotaFile::snapshot(&after, later).accounts.contains_key("gone"));
    }

    #[test]
    fn stale_windows_keep_an_account_out_but_never_let_it_in() {
        use crate::quota::decide::{eligible, Ineligible};
        let now = at(1_800_000_000);
        let mut q = quotas(now);
        q[1].apply_poll(now, now, &Ok(Windows::from_named([("five_hour", 95.0, Some(now + 4 * HOUR))])));
        let mut file = QuotaFile::snapshot(&q, now);
        file.accounts.insert(
            "gamma".into(),
            SavedAccount {
                windows: [("five_hour".to_string(), SavedWindow { utilization: 5.0, resets_at: None })].into(),
                windows_at: Some(now),
                ..SavedAccount::default()
            },
        );
        let config = crate::config::QuotaConfig::default();
        let later = now + 2 * HOUR;
        let mut after = fresh();
        file.restore(&mut after, HOUR, later);
        assert!(matches!(eligible(&after[1], &config, later), Err(Ineligible::FiveHour { .. })));
        assert_eq!(
            eligible(&after[2], &config, later),
            Err(Ineligible::Unknown),
            "5 % two hours ago vouches for nothing"
        );
        assert_eq!(after[2].windows.five_hour.unwrap().utilization, 5.0, "still shown");
        let mut after = fresh();
        file.restore(&mut after, 3 * HOUR, later);
        assert_eq!(eligible(&after[2], &config, later), Ok(()));
    }

    #[test]
    fn a_lifted_limit_is_not_saved() {
        let now = at(1_800_000_000);
        let mut q = quotas(now);
        q[1].exhausted_until = Some(now - Duration::from_secs(1));
        let file = QuotaFile::snapshot(&q, now);
        assert_eq!(file.limits().into_iter().collect::<Vec<_>>(), [("alpha", now + 3 * HOUR)]);
    }

    #[test]
    fn token_state_and_errors_are_not_saved() {
        let now = at(1_800_000_000);
        let mut q = AccountQuota::new("alpha");
        q.apply_poll(now, now, &Err(PollError::TokenExpired));
        assert_eq!(q.token, TokenState::Expired);
        assert!(QuotaFile::snapshot(&[q], now).accounts.is_empty());
    }

    #[test]
    fn no_file_is_no_state_and_garbage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        assert_eq!(load_or_log(dir.path()), QuotaFile::default());

        let cases: [&[u8]; 5] = [
            b"",
            b"{not json",
            b"[1, 2]",
            br#"{"version": 1, "accounts": {"alpha": {"exhausted_until": "tomorrow"}}}"#,
            br#"{"version": 1, "accounts": {"alpha": {"windows": {"five_hour": {"utilization": "lots"}}}}}"#,
        ];
        for bytes in cases {
            std::fs::write(crate::state_dir::quota_file(dir.path()), bytes).unwrap();
            let err = load(dir.path()).expect_err(&String::from_utf8_lossy(bytes));
            assert!(matches!(err, PersistError::Garbage { .. }), "{err:?}");
            assert!(err.to_string().contains("quota.json"), "{err}");
            assert_eq!(load_or_log(dir.path()), QuotaFile::default());
        }
        std::fs::write(crate::state_dir::quota_file(dir.path()), br#"{"version": 7, "accounts": {}}"#).unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, PersistError::Version { found: 7, .. }), "{err:?}");
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"version": 1, "later": true, "accounts": {"alpha": {"exhausted_until": "2027-01-15T08:00:00Z", "new": 1}}}"#;
        std::fs::write(crate::state_dir::quota_file(dir.path()), text).unwrap();
        let file = load(dir.path()).unwrap().unwrap();
        assert_eq!(file.limits()["alpha"], crate::time::parse_rfc3339("2027-01-15T08:00:00Z").unwrap());
    }
}
