//! What an `api_key` account spent today: the assistant records' token usage
//! priced by `[quota.prices]`, summed per UTC day, each API message counted
//! once (Claude Code writes one line per content block, every one carrying
//! the message's whole usage). At the day's cap the account is out until the
//! next UTC midnight.

use crate::config::Price;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many message ids are remembered to count each message once; the
/// lines of one message are written together, so a few suffice.
pub const COUNTED_IDS: usize = 256;

const DAY: u64 = 86_400;

/// The UTC day `at` falls on, as days since the epoch.
pub fn utc_day(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / DAY
}

/// The next UTC midnight after `at`.
pub fn next_utc_midnight(at: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs((utc_day(at) + 1) * DAY)
}

/// `YYYY-MM-DD` of the UTC day `at` falls on.
pub fn utc_date(at: SystemTime) -> String {
    let start = UNIX_EPOCH + Duration::from_secs(utc_day(at) * DAY);
    crate::time::rfc3339(start).chars().take(10).collect()
}

/// Token counts of one API message (`message.usage`).
pub use crate::claude::transcript::TokenUsage as Usage;

/// The price of `usage` in USD (prices are per million tokens).
pub fn cost(usage: &Usage, price: &Price) -> f64 {
    (usage.input as f64 * price.input
        + usage.output as f64 * price.output
        + usage.cache_write as f64 * price.cache_write
        + usage.cache_read as f64 * price.cache_read)
        / 1_000_000.0
}

/// The price of `model`: its own entry, else the entry whose name it
/// extends with a `-suffix` (a dated snapshot such as
/// `claude-opus-4-1-20250805` of `claude-opus-4-1`), the longest such name
/// winning. A model with neither is priced at the dearest price of each kind
/// in the table, so the cap is never undercounted; `false` says so.
pub fn price_of(prices: &BTreeMap<String, Price>, model: &str) -> (Price, bool) {
    if let Some(p) = prices.get(model) {
        return (*p, true);
    }
    let family = prices
        .iter()
        .filter(|(name, _)| model.strip_prefix(name.as_str()).is_some_and(|rest| rest.starts_with('-')))
        .max_by_key(|(name, _)| name.len());
    if let Some((_, p)) = family {
        return (*p, true);
    }
    let dearest =
        prices.values().fold(Price { input: 0.0, output: 0.0, cache_write: 0.0, cache_read: 0.0 }, |a, p| Price {
            input: a.input.max(p.input),
            output: a.output.max(p.output),
            cache_write: a.cache_write.max(p.cache_write),
            cache_read: a.cache_read.max(p.cache_read),
        });
    (dearest, false)
}

/// An `api_key` account's spend.
#[derive(Debug, Clone, PartialEq)]
pub struct Spend {
    /// `max_spend_usd_per_day`.
    pub cap_usd: f64,
    /// The UTC day `usd` was spent on.
    pub day: u64,
    pub usd: f64,
    /// The last message ids counted, oldest first.
    pub counted: VecDeque<String>,
}

impl Spend {
    pub fn new(cap_usd: f64, now: SystemTime) -> Spend {
        Spend { cap_usd, day: utc_day(now), usd: 0.0, counted: VecDeque::new() }
    }

    /// Spent on the UTC day of `now`.
    pub fn today(&self, now: SystemTime) -> f64 {
        if self.day == utc_day(now) {
            self.usd
        } else {
            0.0
        }
    }

    /// The day's cap is reached: no more work on this account before the
    /// next UTC midnight.
    pub fn capped(&self, now: SystemTime) -> bool {
        self.today(now) >= self.cap_usd
    }

    /// Counts one message of `usd` at `now`, unless its id was counted
    /// already. True when it was counted.
    pub fn count(&mut self, message_id: &str, usd: f64, now: SystemTime) -> bool {
        if self.counted.iter().any(|id| id == message_id) {
            return false;
        }
        let today = utc_day(now);
        if self.day != today {
            self.day = today;
            self.usd = 0.0;
        }
        self.usd += usd;
        self.counted.push_back(message_id.to_string());
        while self.counted.len() > COUNTED_IDS {
            self.counted.pop_front();
        }
        true
    }
}
