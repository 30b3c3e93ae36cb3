//! Reading stored timestamps quickly. The log holds them as chrono writes them (`2021-04-02T09:30:00Z`, with
//! 3, 6 or 9 fraction digits when there are any); chrono's own parser, which takes every form RFC 3339
//! allows, was a fifth of decoding a commit. This reads that one form and hands anything else to chrono,
//! so every input gives exactly what chrono gives.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, Utc};
use serde::Deserializer;
use serde::de::{self, Visitor};
use std::fmt;

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with 1–9 fraction digits and no leap second; `None` for anything else
/// (which may still be a valid timestamp).
fn parse_utc(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?.iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if b.len() < 20 || separators.iter().any(|&(at, c)| b[at] != c) || b[b.len() - 1] != b'Z' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let nanos = match b.len() - 20 {
        0 => 0,
        n @ 2..=10 if b[19] == b'.' => digits(20..19 + n)? * 10u32.pow(10 - n as u32),
        _ => return None,
    };
    if second >= 60 {
        return None; // a leap second is chrono's to read
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some(date.and_time(time).and_utc())
}

/// Parses as chrono's `Deserialize` for `DateTime<Utc>` does, with the same errors.
pub fn parse(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_utc(s) {
        Some(t) => Ok(t),
        None => s.parse::<DateTime<FixedOffset>>().map(|t| t.with_timezone(&Utc)),
    }
}

/// For `#[serde(deserialize_with = "crate::timestamp::deserialize")]`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    struct Timestamp;
    impl Visitor<'_> for Timestamp {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<DateTime<Utc>, E> {
            parse(s).map_err(E::custom)
        }
    }
    d.deserialize_str(Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono(s: &str) -> Result<DateTime<Utc>, String> {
        s.parse::<DateTime<FixedOffset>>().map(|t| t.with_timezone(&Utc)).map_err(|e| e.to_string())
    }

    proptest! {
        /// Every timestamp chrono writes is read by the fast path, as chrono reads it.
        #[test]
        fn reads_what_chrono_writes(secs in -62_135_596_800i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let t = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap();
            let written = serde_json::to_string(&t).unwrap();
            let s = written.trim_matches('"');
            prop_assert_eq!(parse_utc(s), Some(t));
            prop_assert_eq!(serde_json::from_str::<DateTime<Utc>>(&written).unwrap(), t);
        }

        /// Near misses of that form read as chrono reads them (or fail as chrono fails).
        #[test]
        fn anything_else_reads_as_chrono_reads_it(
            s in "[0-9]{4}[-/][0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?([Zz]|[+-][0-9]{2}:[0-9]{2})?"
        ) {
            prop_assert_eq!(parse(&s).map_err(|e| e.to_string()), chrono(&s));
        }
    }

    #[test]
    fn edge_cases_read_as_chrono_reads_them() {
        for s in [
            "2021-04-02T09:30:00Z",
            "2021-04-02T09:30:00.5Z",
            "2021-04-02T09:30:00.123456789Z",
            "2021-04-02T09:30:00.1234567891Z",
            "2021-04-02T09:30:00.Z",
            "2021-02-29T09:30:00Z",
            "2020-02-29T09:30:00Z",
            "2021-04-02T24:00:00Z",
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "0000-01-01T00:00:00Z",
            "2021-04-02T09:30:00+08:00",
            "2021-04-02t09:30:00z",
            "+2021-04-02T09:30:00Z",
            "2021-4-02T09:30:00Z",
            "",
        ] {
            assert_eq!(parse(s).map_err(|e| e.to_string()), chrono(s), "{s}");
        }
    }
}
