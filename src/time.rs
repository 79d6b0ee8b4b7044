//! Wall-clock times as the outside sees them: RFC 3339 UTC strings for status,
//! events and queue files, and `YYYY-MM` archive folder names.
//!
//! Plain calendar arithmetic on Unix seconds (no chrono); it never reads a clock
//! except in `unix_now`, so callers can pass an injected `now`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    unix_secs(SystemTime::now())
}

/// Whole seconds since the Unix epoch, rounded down (also before 1970).
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -secs - i64::from(d.subsec_nanos() > 0)
        }
    }
}

/// `2026-11-25T16:00:00Z`: UTC, whole seconds.
pub fn rfc3339(t: SystemTime) -> String {
    rfc3339_from_unix(unix_secs(t))
}

/// `2026-11-25T16:00:00.123Z`: UTC with milliseconds (log lines).
pub fn rfc3339_millis(t: SystemTime) -> String {
    let secs = rfc3339(t);
    let millis = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_millis()).unwrap_or(0);
    format!("{}.{millis:03}Z", secs.trim_end_matches('Z'))
}

/// `rfc3339` for a count of Unix seconds.
pub fn rfc3339_from_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// `2026-11`, the archive folder a time belongs in (UTC).
pub fn year_month(t: SystemTime) -> String {
    let (y, m, _) = civil_from_days(unix_secs(t).div_euclid(86_400));
    format!("{y:04}-{m:02}")
}

/// Parses RFC 3339: `2026-01-02T19:59:59Z`, `2026-01-02T19:59:59.600956+00:00`,
/// `...-05:30`; `t`/space as separator and `z` are accepted too. Fractions
/// beyond nanoseconds are cut. None for anything else, never a panic.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || !s.is_ascii() {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60 is a leap second; Unix time has none, so it folds onto :59.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let second = second.min(59);

    let mut i = 19;
    let mut nanos: u32 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let h = digits(&b[i + 1..i + 3])?;
            let m = digits(&b[i + 4..i + 6])?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let unix = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    if unix >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(unix as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(unix.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |n, c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of `days_from_civil`: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> SystemTime {
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
    }

    // Values cross-checked with `date -u -d @SECS +%FT%TZ`.
    const KNOWN: &[(i64, &str)] = &[
        (0, "1970-01-01T00:00:00Z"),
        (-1, "1969-12-31T23:59:59Z"),
        (951_782_400, "2000-02-29T00:00:00Z"),
        (951_868_799, "2000-02-29T23:59:59Z"),
        (1_709_164_800, "2024-02-29T00:00:00Z"),
        (1_767_225_600, "2026-01-01T00:00:00Z"),
        (1_767_383_999, "2026-01-02T19:59:59Z"),
        (1_795_622_400, "2026-11-25T16:00:00Z"),
        (4_107_542_400, "2100-03-01T00:00:00Z"),
        (253_402_300_799, "9999-12-31T23:59:59Z"),
        (-2_208_988_800, "1900-01-01T00:00:00Z"),
    ];

    #[test]
    fn formats_known_instants() {
        for (secs, text) in KNOWN {
            assert_eq!(rfc3339_from_unix(*secs), *text, "{secs}");
            assert_eq!(rfc3339(at(*secs)), *text, "{secs}");
        }
    }

    #[test]
    fn parses_known_instants_back() {
        for (secs, text) in KNOWN {
            assert_eq!(parse_rfc3339(text), Some(at(*secs)), "{text}");
        }
    }

    #[test]
    fn sub_second_times_round_down() {
        let t = UNIX_EPOCH + Duration::from_millis(1_767_383_999_600);
        assert_eq!(rfc3339(t), "2026-01-02T19:59:59Z");
        let before = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(unix_secs(before), -1);
        assert_eq!(rfc3339(before), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parses_fractions_and_offsets() {
        let base = 1_767_383_999; // 2026-01-02T19:59:59Z
        let cases: &[(&str, i64, u32)] = &[
            ("2026-01-02T19:59:59.600956+00:00", base, 600_956_000),
            ("2026-01-02T19:59:59.6Z", base, 600_000_000),
            ("2026-01-02T19:59:59.123456789123Z", base, 123_456_789),
            ("2026-01-02T21:59:59+02:00", base, 0),
            ("2026-01-02T14:29:59-05:30", base, 0),
            ("2026-01-02t19:59:59z", base, 0),
            ("2026-01-02 19:59:59Z", base, 0),
            ("2025-12-31T23:00:00-01:00", 1_767_225_600, 0),
            ("1970-01-01T00:00:00.5-00:01", 60, 500_000_000),
            ("2016-12-31T23:59:60Z", 1_483_228_799, 0),
        ];
        for (text, secs, nanos) in cases {
            let want = at(*secs) + Duration::from_nanos(u64::from(*nanos));
            assert_eq!(parse_rfc3339(text), Some(want), "{text}");
        }
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "2026-01-02",
            "2026-01-02T19:59:59",
            "2026-01-02T19:59:59+0000",
            "2026-01-02T19:59:59.Z",
            "2026-13-02T19:59:59Z",
            "2026-00-02T19:59:59Z",
            "2026-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-02T24:00:00Z",
            "2026-01-02T19:60:00Z",
            "2026-01-02T19:59:59+24:00",
            "2026-01-02T19:59:59Zjunk",
            "2026/01/02T19:59:59Z",
            "2026-01-02T19:59:59ZZ",
            "２026-01-02T19:59:59Z",
            "+026-01-02T19:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339("2000-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn year_month_names_the_utc_month() {
        for (secs, ym) in [
            (1_795_622_400, "2026-11"),
            (1_709_164_800, "2024-02"),
            (951_868_799, "2000-02"),
            (951_868_800, "2000-03"),
            (1_767_225_599, "2025-12"),
            (-1, "1969-12"),
        ] {
            assert_eq!(year_month(at(secs)), ym, "{secs}");
        }
    }

    #[test]
    fn civil_round_trips_over_centuries() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn unix_now_is_after_2025() {
        assert!(unix_now() > 1_735_689_600);
    }
}
