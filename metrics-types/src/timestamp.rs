//! ISO-8601 timestamps as the original API accepted them, compared on the instant.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with the UTC offset it was written in.
///
/// Parsing accepts what the original API (PostgreSQL's `timestamptz`) accepted from clients:
///
/// | form | example |
/// | --- | --- |
/// | a date (midnight) | `2016-01-01` |
/// | date and time, `T` or a space | `2016-01-01 12:00`, `2016-01-01T12:00:00` |
/// | a fraction of a second (`.` or `,`, up to nanoseconds) | `2016-01-01 12:00:00.000` |
/// | an offset: `Z`, `±HH`, `±HH:MM` or `±HHMM` | `2016-01-01T12:00:00Z`, `...+02:00`, `...-0530` |
///
/// No offset means UTC. The instant must lie between [`Timestamp::MIN`] and [`Timestamp::MAX`]
/// (years 0001 through 9999 in UTC, once the offset is applied): `0000-06-01` and
/// `9999-12-31T23:00:00-02:00` are refused, so every timestamp also prints with a four-digit year
/// and reads back. Because a `+` in a URL query decodes to a space, `12:00:00 02:00` is read
/// as `12:00:00+02:00`. Two timestamps are equal when they are the same instant, whatever their
/// offsets: `2016-03-01T10:00:00+02:00` equals `2016-03-01T08:00:00Z`.
///
/// # Examples
///
/// ```
/// use metrics_types::Timestamp;
///
/// let ts: Timestamp = "2016-01-01 12:00:00.000".parse().unwrap();
/// assert_eq!(ts.to_string(), "2016-01-01T12:00:00+00:00");
/// assert!("2016-13-01".parse::<Timestamp>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<FixedOffset>);

/// Why a string is not a timestamp. The message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: {reason}; expected ISO-8601 such as 2016-01-01, 2016-01-01 12:00:00.000 or 2016-01-01T12:00:00+02:00")]
pub struct TimestampError {
    input: String,
    reason: &'static str,
}

impl TimestampError {
    /// What is wrong, without the input and the list of forms.
    pub(crate) fn reason(&self) -> &'static str {
        self.reason
    }
}

impl Timestamp {
    /// The earliest instant accepted: `0001-01-01T00:00:00Z`.
    pub const MIN: &'static str = "0001-01-01T00:00:00Z";

    /// The latest instant accepted: `9999-12-31T23:59:59.999999999Z`.
    pub const MAX: &'static str = "9999-12-31T23:59:59.999999999Z";

    /// [`Timestamp::MIN`] in microseconds since the Unix epoch.
    pub const MIN_MICROS: i64 = -62_135_596_800_000_000;

    /// The last whole microsecond of [`Timestamp::MAX`], in microseconds since the Unix epoch:
    /// the largest value the server stores.
    pub const MAX_MICROS: i64 = 253_402_300_799_999_999;

    /// Parses a timestamp (see the type's docs for the accepted forms).
    pub fn parse(input: &str) -> Result<Timestamp, TimestampError> {
        let fail = |reason| TimestampError {
            input: input.to_owned(),
            reason,
        };
        let mut p = Cursor::new(input.trim());

        let year = p
            .digits(4)
            .ok_or_else(|| fail("the year must have four digits"))?;
        p.expect(b'-')
            .ok_or_else(|| fail("expected '-' after the year"))?;
        let month = p
            .digits(2)
            .ok_or_else(|| fail("the month must have two digits"))?;
        p.expect(b'-')
            .ok_or_else(|| fail("expected '-' after the month"))?;
        let day = p
            .digits(2)
            .ok_or_else(|| fail("the day must have two digits"))?;
        let date =
            NaiveDate::from_ymd_opt(year as i32, month, day).ok_or_else(|| fail("no such date"))?;

        let mut time = NaiveTime::MIN;
        let mut offset = 0;
        if !p.done() {
            if !matches!(p.next(), Some(b'T' | b't' | b' ')) {
                return Err(fail("expected 'T' or a space between date and time"));
            }
            let hour = p
                .digits(2)
                .ok_or_else(|| fail("the hour must have two digits"))?;
            p.expect(b':')
                .ok_or_else(|| fail("expected ':' after the hour"))?;
            let minute = p
                .digits(2)
                .ok_or_else(|| fail("the minute must have two digits"))?;
            let mut second = 0;
            let mut nanos = 0;
            if p.peek() == Some(b':') {
                p.next();
                second = p
                    .digits(2)
                    .ok_or_else(|| fail("the second must have two digits"))?;
                if matches!(p.peek(), Some(b'.' | b',')) {
                    p.next();
                    nanos = p
                        .fraction()
                        .ok_or_else(|| fail("expected digits after the decimal point"))?;
                }
            }
            time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)
                .filter(|_| second < 60)
                .ok_or_else(|| fail("hour, minute or second out of range"))?;
            offset = p.offset().map_err(fail)?;
        }
        if !p.done() {
            return Err(fail("unexpected characters after the timestamp"));
        }
        let tz = FixedOffset::east_opt(offset).ok_or_else(|| fail("offset out of range"))?;
        let dt = tz
            .from_local_datetime(&date.and_time(time))
            .single()
            .ok_or_else(|| fail("out of range"))?;
        if !(1..=9999).contains(&dt.naive_utc().year()) {
            return Err(fail(
                "outside the supported range 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z (UTC, after the offset)",
            ));
        }
        Ok(Timestamp(dt))
    }

    /// Microseconds since the Unix epoch: the instant, as the server stores and compares it.
    pub fn timestamp_micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    /// The date-time with the offset it was written in.
    pub fn as_datetime(&self) -> &DateTime<FixedOffset> {
        &self.0
    }

    /// The instant in UTC.
    pub fn to_utc(&self) -> DateTime<Utc> {
        self.0.with_timezone(&Utc)
    }
}

impl<Tz: TimeZone> From<DateTime<Tz>> for Timestamp {
    fn from(dt: DateTime<Tz>) -> Self {
        Timestamp(dt.fixed_offset())
    }
}

impl From<Timestamp> for DateTime<FixedOffset> {
    fn from(ts: Timestamp) -> Self {
        ts.0
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339, with the offset the timestamp was written in and only the fraction it needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A byte cursor over the input; timestamps are ASCII, so anything else fails a check.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            bytes: s.as_bytes(),
            pos: 0,
        }
    }

    fn done(&self) -> bool {
        self.pos == self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let slice = self.bytes.get(self.pos..self.pos + n)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.pos += n;
        Some(
            slice
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0')),
        )
    }

    /// One or more digits of a fraction of a second, as nanoseconds (beyond 9 digits: truncated).
    fn fraction(&mut self) -> Option<u32> {
        let start = self.pos;
        let mut nanos = 0u32;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            if self.pos - start < 9 {
                nanos = nanos * 10 + u32::from(d - b'0');
            }
            self.pos += 1;
        }
        let len = self.pos - start;
        if len == 0 {
            return None;
        }
        Some(nanos * 10u32.pow(9usize.saturating_sub(len) as u32))
    }

    /// An optional UTC offset in seconds: nothing, `Z`, or a sign, `HH` and optionally `[:]MM`.
    /// One space may stand before it, and a space followed by digits stands for a URL-decoded `+`.
    fn offset(&mut self) -> Result<i32, &'static str> {
        if self.done() {
            return Ok(0);
        }
        if self.peek() == Some(b' ') {
            self.pos += 1;
            if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return self.offset_digits(1);
            }
        }
        match self.next() {
            Some(b'Z' | b'z') => Ok(0),
            Some(b'+') => self.offset_digits(1),
            Some(b'-') => self.offset_digits(-1),
            _ => Err("expected an offset such as Z, +02:00 or +0200 after the time"),
        }
    }

    fn offset_digits(&mut self, sign: i32) -> Result<i32, &'static str> {
        const BAD: &str = "the offset must be ±HH, ±HH:MM or ±HHMM";
        let hours = self.digits(2).ok_or(BAD)?;
        let minutes = match self.peek() {
            None => 0,
            Some(b':') => {
                self.pos += 1;
                self.digits(2).ok_or(BAD)?
            }
            Some(_) => self.digits(2).ok_or(BAD)?,
        };
        if hours > 23 || minutes > 59 {
            return Err("offset out of range");
        }
        Ok(sign * (hours * 3600 + minutes * 60) as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(s: &str) -> i64 {
        Timestamp::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .timestamp_micros()
    }

    #[test]
    fn accepts_the_forms_of_the_original_api() {
        let noon = micros("2016-01-01T12:00:00Z");
        for s in [
            "2016-01-01 12:00:00.000",
            "2016-01-01T12:00:00",
            "2016-01-01t12:00:00z",
            "2016-01-01 12:00",
            "2016-01-01T12:00:00.000000Z",
            "2016-01-01T12:00:00,0",
            "2016-01-01T14:00:00+02:00",
            "2016-01-01T14:00:00+0200",
            "2016-01-01T14:00:00+02",
            "2016-01-01T14:00:00 +02:00",
            "2016-01-01T14:00:00 02:00",
            "2016-01-01T06:30:00-05:30",
            " 2016-01-01 12:00:00 ",
        ] {
            assert_eq!(micros(s), noon, "{s}");
        }
        assert_eq!(micros("2016-01-01"), micros("2016-01-01T00:00:00Z"));
        assert_eq!(micros("1970-01-01"), 0);
    }

    #[test]
    fn compares_on_the_instant() {
        let a = Timestamp::parse("2016-03-01T10:00:00+02:00").unwrap();
        let b = Timestamp::parse("2016-03-01T08:00:00Z").unwrap();
        assert_eq!(a.timestamp_micros(), b.timestamp_micros());
        assert_eq!(a.to_utc(), b.to_utc());
    }

    #[test]
    fn keeps_fractions_to_the_nanosecond() {
        let ts = Timestamp::parse("2016-01-01T00:00:00.123456789Z").unwrap();
        assert_eq!(ts.as_datetime().timestamp_subsec_nanos(), 123_456_789);
        assert_eq!(ts.timestamp_micros() % 1_000_000, 123_456);
        let ts = Timestamp::parse("2016-01-01T00:00:00.5").unwrap();
        assert_eq!(ts.as_datetime().timestamp_subsec_nanos(), 500_000_000);
    }

    #[test]
    fn refuses_what_is_not_a_timestamp() {
        for s in [
            "",
            "yesterday",
            "2016-1-1",
            "2016-13-01",
            "2016-02-30",
            "2016-01-01X12:00",
            "2016-01-01T25:00:00",
            "2016-01-01T12:60:00",
            "2016-01-01T12:00:60",
            "2016-01-01T12",
            "2016-01-01T12:00:00.",
            "2016-01-01T12:00:00+2",
            "2016-01-01T12:00:00+25:00",
            "2016-01-01T12:00:00 UTC",
            "2016-01-01T12:00:00Zjunk",
            "１９７０-01-01",
            "0000-01-01",
            "0000-12-31T23:59:59.999999Z",
            "0001-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-23:59",
            "9999-12-31T23:59:59.5-00:01",
        ] {
            let err = Timestamp::parse(s).expect_err(s);
            assert!(err.to_string().contains("expected ISO-8601"), "{err}");
        }
    }

    #[test]
    fn the_range_is_years_1_through_9999_in_utc() {
        assert_eq!(micros(Timestamp::MIN), Timestamp::MIN_MICROS);
        assert_eq!(micros(Timestamp::MAX), Timestamp::MAX_MICROS);
        assert_eq!(micros("0001-01-01"), Timestamp::MIN_MICROS);
        assert_eq!(micros("0001-01-01T01:00:00+01:00"), Timestamp::MIN_MICROS);
        assert_eq!(micros("9999-12-31T23:59:59.999999Z"), Timestamp::MAX_MICROS);
        assert_eq!(
            micros("9999-12-31T22:59:59.999999-01:00"),
            Timestamp::MAX_MICROS
        );
        let err = Timestamp::parse("9999-12-31T23:59:59-23:59").unwrap_err();
        assert!(err.to_string().contains("supported range"), "{err}");
    }

    #[test]
    fn displays_and_round_trips_through_serde() {
        let ts = Timestamp::parse("2016-01-01 12:00:00.250+02:00").unwrap();
        assert_eq!(ts.to_string(), "2016-01-01T12:00:00.250+02:00");
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
        assert!(serde_json::from_str::<Timestamp>("\"nope\"").is_err());
    }
}
