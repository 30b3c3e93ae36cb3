//! Timestamps as chrono's serde writes them (`2021-04-02T09:30:00Z`, with 3, 6 or 9 fraction digits when
//! there are any), read and written without chrono's general parser and formatter: the parser was a fifth
//! of decoding a commit, the formatter a third of writing a ledger row. Anything outside that one form is
//! handed to chrono, so every timestamp reads and writes exactly as with chrono (the envelope hash depends
//! on it).

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, Timelike, Utc};
use serde::de::{self, Visitor};
use serde::{Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::fmt;

/// Writes `value` in `digits` decimal digits at `buf[at..]`.
fn put(buf: &mut [u8], at: usize, mut value: u32, digits: usize) {
    for i in (at..at + digits).rev() {
        buf[i] = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// `t` as chrono writes it, into `buf`; its length, or `None` for a year outside 0–9999 or a leap second.
fn write(t: &DateTime<Utc>, buf: &mut [u8; 30]) -> Option<usize> {
    let (date, time) = (t.date_naive(), t.time());
    let nanos = time.nanosecond();
    if !(0..=9999).contains(&date.year()) || nanos >= 1_000_000_000 {
        return None;
    }
    *buf = *b"0000-00-00T00:00:00.000000000Z";
    put(buf, 0, date.year() as u32, 4);
    put(buf, 5, date.month(), 2);
    put(buf, 8, date.day(), 2);
    put(buf, 11, time.hour(), 2);
    put(buf, 14, time.minute(), 2);
    put(buf, 17, time.second(), 2);
    // chrono's `SecondsFormat::AutoSi`: no fraction, or as few of 3, 6 and 9 digits as represent it exactly.
    let (fraction, digits) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    let end = if digits == 0 { 19 } else { 20 + digits };
    put(buf, 20, fraction, digits);
    buf[end] = b'Z';
    Some(end + 1)
}

/// For `#[serde(serialize_with = "crate::timestamp::serialize")]` (on a `DateTime<Utc>` or a reference to one).
pub fn serialize<T: Borrow<DateTime<Utc>>, S: Serializer>(t: &T, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0; 30];
    match write(t.borrow(), &mut buf) {
        Some(n) => s.serialize_str(std::str::from_utf8(&buf[..n]).expect("ASCII digits")),
        None => t.borrow().serialize(s),
    }
}

/// [`serialize`] for an optional timestamp (`null` when absent).
pub fn serialize_option<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

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

    /// Through our writer, to compare with chrono's.
    #[derive(serde::Serialize)]
    struct Ours(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    proptest! {
        /// Every timestamp is written byte for byte as chrono writes it.
        #[test]
        fn writes_what_chrono_writes(
            secs in -62_135_596_800i64..253_402_300_799,
            nanos in 0u32..1_000_000_000,
            round in 0usize..4,
        ) {
            // Whole seconds, milliseconds and microseconds are common: chrono writes fewer digits for them.
            let nanos = [0, nanos / 1_000_000 * 1_000_000, nanos / 1_000 * 1_000, nanos][round];
            let t = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap();
            prop_assert_eq!(serde_json::to_string(&Ours(t)).unwrap(), serde_json::to_string(&t).unwrap());
        }

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
    fn timestamps_outside_the_fast_form_are_written_by_chrono() {
        for t in [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::<Utc>::from_timestamp(1_483_228_799, 1_500_000_000).unwrap(), // a leap second
            DateTime::<Utc>::from_timestamp(-62_167_219_201, 0).unwrap(),           // year -1
        ] {
            assert_eq!(serde_json::to_string(&Ours(t)).unwrap(), serde_json::to_string(&t).unwrap());
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
