//! `<state_dir>/spend.json`: what each `api_key` account spent on its last
//! UTC day and the message ids last counted, so a restart neither forgets
//! the day's spend nor counts a message twice. Written whole and atomically
//! by the coordinator's loop on every change.

use super::decide::{utc_day, AccountQuota};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpendFile {
    pub accounts: BTreeMap<String, SpentDay>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpentDay {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub usd: f64,
    /// The last message ids counted.
    #[serde(default)]
    pub counted: Vec<String>,
}

impl SpendFile {
    /// The spend of every `api_key` account in `accounts`.
    pub fn snapshot(accounts: &[AccountQuota]) -> SpendFile {
        let accounts = accounts
            .iter()
            .filter_map(|q| {
                let s = q.spend.as_ref()?;
                let day = super::decide::utc_date(UNIX_EPOCH + Duration::from_secs(s.day * 86_400));
                Some((q.name.clone(), SpentDay { day, usd: s.usd, counted: s.counted.iter().cloned().collect() }))
            })
            .collect();
        SpendFile { accounts }
    }

    /// Puts what the file kept back into the paid accounts of `accounts`; a
    /// day that does not parse is skipped with a log line.
    pub fn restore(&self, accounts: &mut [AccountQuota]) {
        for q in accounts {
            let (Some(spend), Some(kept)) = (q.spend.as_mut(), self.accounts.get(&q.name)) else { continue };
            let Some(start) = crate::time::parse_rfc3339(&format!("{}T00:00:00Z", kept.day)) else {
                log::error!("spend.json: {}: day {:?} is not YYYY-MM-DD; its spend is not restored", q.name, kept.day);
                continue;
            };
            spend.day = utc_day(start);
            spend.usd = if kept.usd.is_finite() { kept.usd.max(0.0) } else { 0.0 };
            spend.counted = kept.counted.iter().cloned().collect();
        }
    }
}

/// Reads `spend.json`; missing means nothing spent, a broken file is logged
/// and read as nothing spent.
pub fn load_or_log(state_dir: &Path) -> SpendFile {
    let path = crate::state_dir::spend_file(state_dir);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SpendFile::default(),
        Err(e) => {
            log::error!("{}: cannot read ({e}); starting from no spend", path.display());
            return SpendFile::default();
        }
    };
    serde_json::from_slice(&text).unwrap_or_else(|e| {
        log::error!("{}: not understood ({e}); starting from no spend", path.display());
        SpendFile::default()
    })
}

/// Writes `file` atomically to `<state_dir>/spend.json`.
pub fn save(state_dir: &Path, file: &SpendFile) -> std::io::Result<()> {
    let path = crate::state_dir::spend_file(state_dir);
    let bytes = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    crate::atomic::write(&path, &bytes)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: cannot write: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn spend_survives_a_round_trip_through_the_file() {
        let now = UNIX_EPOCH + Duration::from_secs(1_796_180_437);
        let mut q = AccountQuota::paid("paid", 5.0, now);
        q.spend.as_mut().unwrap().count("msg_1", 1.25, now);
        let accounts = vec![AccountQuota::new("alpha"), q];
        let file = SpendFile::snapshot(&accounts);
        assert_eq!(file.accounts.len(), 1);
        assert_eq!(file.accounts["paid"].day, "2026-12-02");
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &file).unwrap();
        let read = load_or_log(dir.path());
        assert_eq!(read, file);
        let mut fresh = vec![AccountQuota::new("alpha"), AccountQuota::paid("paid", 5.0, now)];
        read.restore(&mut fresh);
        let spend = fresh[1].spend.as_ref().unwrap();
        assert_eq!((spend.today(now), spend.counted.len()), (1.25, 1));
        let next_day: SystemTime = now + Duration::from_secs(86_400);
        assert_eq!(spend.today(next_day), 0.0);
        assert!(!fresh[1].spend.as_mut().unwrap().count("msg_1", 1.25, now), "counted once");
        std::fs::write(crate::state_dir::spend_file(dir.path()), "{").unwrap();
        assert_eq!(load_or_log(dir.path()), SpendFile::default());
    }
}
