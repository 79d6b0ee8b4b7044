//! What the fleet keeps in etcd, under `fleet.prefix`, and how each value
//! is spelled (JSON). One key per fact, so a watch on the prefix tells every
//! host about each change as it happens:
//!
//! - `hosts/<host>`: a host's record (account, sessions, queue depth, last
//!   seen), on the host's lease: it disappears `lease_ttl_secs` after the
//!   host stops renewing it;
//! - `accounts/<account>`: the newest news of an account's quota (a usage
//!   reading, a hard limit, a dead login), by whichever host learnt it;
//! - `active`: under `shared`, the fleet's active account; its etcd
//!   `mod_revision` numbers the decisions, so none is applied twice;
//! - `holds/<account>`: under `exclusive`, the host using the account, on
//!   that host's lease;
//! - `pollers/<account>`: the host that polls the account's usage for the
//!   whole fleet, on that host's lease.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A key under the prefix, read back into what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Host(String),
    Account(String),
    Active,
    Hold(String),
    Poller(String),
}

impl Key {
    /// The full etcd key.
    pub fn path(&self, prefix: &str) -> String {
        match self {
            Key::Host(h) => format!("{prefix}hosts/{h}"),
            Key::Account(a) => format!("{prefix}accounts/{a}"),
            Key::Active => format!("{prefix}active"),
            Key::Hold(a) => format!("{prefix}holds/{a}"),
            Key::Poller(a) => format!("{prefix}pollers/{a}"),
        }
    }

    /// None for a key the fleet does not write (left alone, reported once).
    pub fn parse(prefix: &str, key: &str) -> Option<Key> {
        let rest = key.strip_prefix(prefix)?;
        if rest == "active" {
            return Some(Key::Active);
        }
        let (kind, name) = rest.split_once('/')?;
        if name.is_empty() || name.contains('/') {
            return None;
        }
        Some(match kind {
            "hosts" => Key::Host(name.into()),
            "accounts" => Key::Account(name.into()),
            "holds" => Key::Hold(name.into()),
            "pollers" => Key::Poller(name.into()),
            _ => return None,
        })
    }
}

/// A host as the fleet sees it (`hosts/<host>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRecord {
    pub host: String,
    pub policy: String,
    pub account: Option<String>,
    pub sessions: usize,
    pub busy: usize,
    pub queued: usize,
    /// Unix seconds of the last renewal, by the host's own clock.
    pub seen_at: i64,
}

/// One usage reading: when it was asked and answered (unix ms) and its
/// windows by the endpoint's names: (percent used, reset unix seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    pub asked_at_ms: i64,
    pub at_ms: i64,
    pub windows: BTreeMap<String, (f64, Option<i64>)>,
}

/// A confirmed hard limit (unix ms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    pub until_ms: i64,
    pub precise: bool,
    pub since_ms: i64,
}

/// The newest news of one account (`accounts/<account>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountNews {
    pub account: String,
    /// The host that learnt it.
    pub host: String,
    pub reading: Option<Reading>,
    pub hold: Option<Hold>,
    /// That host's login of the account was refused (unix ms): its own
    /// credentials, so other hosts only hear of it.
    pub revoked_since_ms: Option<i64>,
}

/// The fleet's active account under `shared` (`active`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveRecord {
    pub account: String,
    pub from: String,
    /// The swap reason as `/status` spells it (`hard_limit`, `threshold`, ...).
    pub reason: String,
    pub by: String,
    /// Unix seconds, by the deciding host's clock (shown, never compared).
    pub at: i64,
}

/// A host's claim on an account (`holds/<a>`, `pollers/<a>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pub host: String,
}

/// The active record with the etcd revision that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Active {
    pub record: ActiveRecord,
    pub revision: i64,
}

/// One fact under the prefix, as it is now (`None`: the key is gone).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Host { host: String, record: Option<HostRecord> },
    News(AccountNews),
    Active(Option<Active>),
    Hold { account: String, host: Option<String> },
    Poller { account: String, host: Option<String> },
}

/// Why a value under the prefix was not taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Garbage {
    pub key: String,
    pub error: String,
}

/// Reads one key's value (or its deletion) into a change.
pub fn read(prefix: &str, key: &str, value: &[u8], revision: i64, deleted: bool) -> Result<Change, Garbage> {
    let garbage = |error: String| Garbage { key: key.into(), error };
    let Some(parsed) = Key::parse(prefix, key) else {
        return Err(garbage("not a key the fleet writes".into()));
    };
    fn json<T: serde::de::DeserializeOwned>(value: &[u8]) -> Result<T, String> {
        serde_json::from_slice(value).map_err(|e| format!("not a fleet record: {e}"))
    }
    let claim = |value: &[u8]| -> Result<Option<String>, Garbage> {
        if deleted {
            return Ok(None);
        }
        json::<Claim>(value).map(|c| Some(c.host)).map_err(garbage)
    };
    Ok(match parsed {
        Key::Host(host) => {
            let record = if deleted { None } else { Some(json::<HostRecord>(value).map_err(garbage)?) };
            if record.as_ref().is_some_and(|r| r.host != host) {
                return Err(garbage(format!("the record names another host than {host}")));
            }
            Change::Host { host, record }
        }
        Key::Account(account) => {
            if deleted {
                return Err(garbage("deleted by hand; the next news rewrites it".into()));
            }
            let news: AccountNews = json(value).map_err(garbage)?;
            if news.account != account {
                return Err(garbage(format!("the news names another account than {account}")));
            }
            Change::News(news)
        }
        Key::Active => Change::Active(if deleted {
            None
        } else {
            Some(Active { record: json(value).map_err(garbage)?, revision })
        }),
        Key::Hold(account) => Change::Hold { host: claim(value)?, account },
        Key::Poller(account) => Change::Poller { host: claim(value)?, account },
    })
}

pub fn claim_value(host: &str) -> Vec<u8> {
    serde_json::to_vec(&Claim { host: host.into() }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_and_strangers_are_garbage() {
        let p = "/cf/";
        for key in [Key::Host("h1".into()), Key::Account("alpha".into()), Key::Active, Key::Hold("a".into())] {
            assert_eq!(Key::parse(p, &key.path(p)), Some(key));
        }
        for stranger in ["/cf/other/x", "/cf/hosts/", "/cf/hosts/a/b", "/elsewhere/active"] {
            assert_eq!(Key::parse(p, stranger), None, "{stranger}");
        }
        let bad = read(p, "/cf/holds/alpha", b"{not json", 3, false).unwrap_err();
        assert!(bad.error.contains("not a fleet record"), "{bad:?}");
        let wrong = read(
            p,
            "/cf/accounts/alpha",
            br#"{"account":"beta","host":"h","reading":null,"hold":null,"revoked_since_ms":null}"#,
            3,
            false,
        );
        assert!(wrong.unwrap_err().error.contains("another account"));
        assert_eq!(
            read(p, "/cf/holds/alpha", &claim_value("h2"), 3, false),
            Ok(Change::Hold { account: "alpha".into(), host: Some("h2".into()) })
        );
        assert_eq!(read(p, "/cf/holds/alpha", b"", 4, true), Ok(Change::Hold { account: "alpha".into(), host: None }));
    }
}
