//! The time forms of query parameters (`sts`, `ets`): ISO-8601, Unix epochs with an explicit
//! unit, and times relative to now. A bare number is always seconds; an epoch is never guessed
//! by its magnitude, so it can never be misread by a factor of 1,000.

use chrono::{DateTime, Utc};

use crate::Timestamp;

/// The unit of a Unix epoch number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    /// Seconds (`s`, or no suffix).
    Seconds,
    /// Milliseconds (`ms`).
    Millis,
    /// Microseconds (`us`).
    Micros,
    /// Nanoseconds (`ns`).
    Nanos,
}

impl EpochUnit {
    /// Nanoseconds per unit.
    fn nanos(self) -> i128 {
        match self {
            EpochUnit::Seconds => 1_000_000_000,
            EpochUnit::Millis => 1_000_000,
            EpochUnit::Micros => 1_000,
            EpochUnit::Nanos => 1,
        }
    }

    /// The suffix that names the unit (`s`, `ms`, `us`, `ns`).
    pub fn suffix(self) -> &'static str {
        match self {
            EpochUnit::Seconds => "s",
            EpochUnit::Millis => "ms",
            EpochUnit::Micros => "us",
            EpochUnit::Nanos => "ns",
        }
    }

    /// Reads a unit name: `s`, `ms`, `us` (or `µs`), `ns`.
    pub fn parse(text: &str) -> Option<EpochUnit> {
        match text {
            "s" => Some(EpochUnit::Seconds),
            "ms" => Some(EpochUnit::Millis),
            "us" | "µs" => Some(EpochUnit::Micros),
            "ns" => Some(EpochUnit::Nanos),
            _ => None,
        }
    }
}

/// Why a time parameter (or a numeric `ts`) is refused. The message names the accepted forms
/// and, for an epoch beyond year 9999, the unit suffix that was probably meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time {input:?}: {reason}")]
pub struct TimeParamError {
    input: String,
    reason: String,
}

/// The forms a time parameter accepts, for error messages and docs.
pub const TIME_FORMS: &str = "expected ISO-8601 (2016-01-01, 2016-01-01T12:00:00Z, \
    2016-01-01T12:00:00+02:00), Unix seconds (1700000000 or 1700000000.5), an epoch with its \
    unit (1700000000000ms, 1700000000000000us, 1700000000000000000ns, 1700000000s), or a time \
    relative to now (now, now-15m, now+1h; units ms, s, m, h, d, w)";

impl Timestamp {
    /// Parses a query parameter's time: any [`Timestamp::parse`] form, a Unix epoch
    /// ([`Timestamp::from_epoch`]: a bare number is seconds; `ms`, `us`, `ns` or `s` suffixes
    /// say otherwise), or `now`, `now-15m`, `now+1h` (units `ms`, `s`, `m`, `h`, `d`, `w`;
    /// `now 1h`, a URL-decoded `+`, reads as `now+1h`) counted from `now`.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use metrics_types::Timestamp;
    ///
    /// let now = Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap();
    /// let micros = |s| Timestamp::parse_param(s, now).unwrap().timestamp_micros();
    /// assert_eq!(micros("1700000000"), 1_700_000_000_000_000);
    /// assert_eq!(micros("1700000000000ms"), 1_700_000_000_000_000);
    /// assert_eq!(micros("now-15m"), now.timestamp_micros() - 900_000_000);
    /// let err = Timestamp::parse_param("1700000000000", now).unwrap_err();
    /// assert!(err.to_string().contains("1700000000000ms"));
    /// ```
    pub fn parse_param(input: &str, now: DateTime<Utc>) -> Result<Timestamp, TimeParamError> {
        let text = input.trim();
        let fail = |reason: String| TimeParamError {
            input: input.to_owned(),
            reason,
        };
        if let Some(rest) = text.strip_prefix("now") {
            return relative(rest, now).map_err(|reason| fail(format!("{reason}; {TIME_FORMS}")));
        }
        if let Some((number, unit)) = split_epoch(text) {
            let unit = match unit {
                "" => EpochUnit::Seconds,
                other => EpochUnit::parse(other).ok_or_else(|| {
                    fail(format!(
                        "unknown unit {other:?} (ns, us, ms and s are known); {TIME_FORMS}"
                    ))
                })?,
            };
            return Timestamp::from_epoch(number, unit).map_err(|err| fail(err.reason));
        }
        Timestamp::parse(text).map_err(|err| fail(format!("{}; {TIME_FORMS}", err.reason())))
    }

    /// A Unix epoch number given as text (`1700000000`, `-5`, `1700000000.25`) in `unit`, to
    /// the nanosecond. Refuses a number outside years 0001 to 9999; beyond 9999 the message
    /// names the unit suffix that lands in range (so milliseconds sent as seconds are refused,
    /// never misread).
    ///
    /// ```
    /// use metrics_types::{EpochUnit, Timestamp};
    ///
    /// let ts = Timestamp::from_epoch("1700000000.5", EpochUnit::Seconds).unwrap();
    /// assert_eq!(ts.timestamp_micros(), 1_700_000_000_500_000);
    /// assert!(Timestamp::from_epoch("1700000000000", EpochUnit::Seconds).is_err());
    /// ```
    pub fn from_epoch(number: &str, unit: EpochUnit) -> Result<Timestamp, TimeParamError> {
        let fail = |reason: String| TimeParamError {
            input: format!(
                "{number}{}",
                if unit == EpochUnit::Seconds {
                    ""
                } else {
                    unit.suffix()
                }
            ),
            reason,
        };
        let nanos = epoch_nanos(number, unit).ok_or_else(|| {
            fail(format!(
                "not a Unix epoch number (digits, an optional sign and fraction); {TIME_FORMS}"
            ))
        })?;
        const MIN_NANOS: i128 = Timestamp::MIN_MICROS as i128 * 1_000;
        const MAX_NANOS: i128 = Timestamp::MAX_MICROS as i128 * 1_000 + 999;
        if nanos > MAX_NANOS {
            let hint = [EpochUnit::Millis, EpochUnit::Micros, EpochUnit::Nanos]
                .into_iter()
                .filter(|u| u.nanos() < unit.nanos())
                .find(|u| {
                    epoch_nanos(number, *u).is_some_and(|n| (MIN_NANOS..=MAX_NANOS).contains(&n))
                });
            let unit_name = match unit {
                EpochUnit::Seconds => "seconds",
                EpochUnit::Millis => "milliseconds",
                EpochUnit::Micros => "microseconds",
                EpochUnit::Nanos => "nanoseconds",
            };
            let advice = match hint {
                Some(u) => format!(
                    "; if it is in {}, say so with the unit suffix: {}{}",
                    match u {
                        EpochUnit::Millis => "milliseconds",
                        EpochUnit::Micros => "microseconds",
                        _ => "nanoseconds",
                    },
                    number.trim(),
                    u.suffix()
                ),
                None => String::new(),
            };
            return Err(fail(format!(
                "as {unit_name} since 1970 this is beyond year 9999 (a bare number is always \
                 seconds){advice}"
            )));
        }
        if nanos < MIN_NANOS {
            return Err(fail("before year 0001".to_owned()));
        }
        let secs = nanos.div_euclid(1_000_000_000) as i64;
        let sub = nanos.rem_euclid(1_000_000_000) as u32;
        let dt =
            DateTime::from_timestamp(secs, sub).ok_or_else(|| fail("out of range".to_owned()))?;
        Ok(Timestamp::from(dt))
    }
}

/// `(number, unit suffix)` if `text` is shaped like an epoch: an optional sign, digits, an
/// optional fraction, then letters (the unit) or nothing.
fn split_epoch(text: &str) -> Option<(&str, &str)> {
    let unit_at = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_at);
    let digits = number.trim_start_matches(['-', '+']);
    let shaped = !digits.is_empty()
        && number.len() - digits.len() <= 1
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
        && digits.starts_with(|c: char| c.is_ascii_digit())
        && unit.chars().all(char::is_alphabetic);
    shaped.then_some((number, unit))
}

/// Exact nanoseconds of a decimal number of `unit`s (fraction digits below a nanosecond are
/// dropped), or `None` if it is not a number or overflows.
fn epoch_nanos(number: &str, unit: EpochUnit) -> Option<i128> {
    let number = number.trim();
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || (digits.contains('.') && fraction.is_empty())
        || whole.len() > 30
    {
        return None;
    }
    let per = unit.nanos();
    let mut nanos = whole.parse::<i128>().ok()?.checked_mul(per)?;
    let mut scale = per;
    for d in fraction.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        nanos += i128::from(d - b'0') * scale;
    }
    Some(if negative { -nanos } else { nanos })
}

/// `now` plus what follows it: nothing, or a sign, a whole number and a unit.
fn relative(rest: &str, now: DateTime<Utc>) -> Result<Timestamp, String> {
    let now_nanos =
        i128::from(now.timestamp()) * 1_000_000_000 + i128::from(now.timestamp_subsec_nanos());
    let rest = rest.trim_end();
    let offset = if rest.is_empty() {
        0
    } else {
        let (sign, amount) = match rest.chars().next() {
            Some('-') => (-1, &rest[1..]),
            Some('+') => (1, &rest[1..]),
            Some(' ') => (1, rest.trim_start()),
            _ => return Err("expected `-` or `+` after `now`".to_owned()),
        };
        let unit_at = amount
            .find(|c: char| !c.is_ascii_digit())
            .ok_or("the offset after `now` needs a unit (ms, s, m, h, d or w)")?;
        let (count, unit) = amount.split_at(unit_at);
        if count.is_empty() {
            return Err("expected a whole number after the sign, e.g. now-15m".to_owned());
        }
        let per: i128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "w" => 7 * 86_400 * 1_000_000_000,
            other => {
                return Err(format!(
                    "unknown unit {other:?} after `now` (ms, s, m, h, d and w are known)"
                ))
            }
        };
        let count: i128 = count
            .parse()
            .ok()
            .filter(|c: &i128| *c < 1_000_000_000_000)
            .ok_or("the offset after `now` is too large")?;
        sign * count * per
    };
    let nanos = now_nanos + offset;
    Timestamp::from_epoch(&nanos.to_string(), EpochUnit::Nanos).map_err(|err| err.reason)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap()
    }

    fn micros(s: &str) -> i64 {
        Timestamp::parse_param(s, now())
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .timestamp_micros()
    }

    fn error(s: &str) -> String {
        Timestamp::parse_param(s, now()).expect_err(s).to_string()
    }

    #[test]
    fn epochs_with_and_without_units() {
        let want = 1_700_000_000_000_000;
        for s in [
            "1700000000",
            "1700000000s",
            "1700000000000ms",
            "1700000000000000us",
            "1700000000000000µs",
            "1700000000000000000ns",
            "1700000000.000",
            " 1700000000 ",
            "+1700000000",
        ] {
            assert_eq!(micros(s), want, "{s}");
        }
        assert_eq!(micros("1700000000.5"), want + 500_000);
        assert_eq!(micros("1700000000000.25ms"), want + 250);
        assert_eq!(micros("0"), 0);
        assert_eq!(micros("-1.5"), -1_500_000);
        assert_eq!(micros("2016"), 2_016_000_000, "a bare number is seconds");
        let ns = Timestamp::parse_param("1700000000123456789ns", now()).unwrap();
        assert_eq!(ns.as_datetime().timestamp_subsec_nanos(), 123_456_789);
    }

    #[test]
    fn epochs_beyond_9999_name_the_unit_to_add() {
        let err = error("1700000000000");
        assert!(err.contains("beyond year 9999"), "{err}");
        assert!(err.contains("1700000000000ms"), "{err}");
        assert!(error("1700000000000000").contains("1700000000000000us"));
        assert!(error("1700000000000000000").contains("1700000000000000000ns"));
        assert!(error("1700000000000000ms").contains("1700000000000000us"));
        assert!(error("1700000000000000000000ns").contains("beyond year 9999"));
        assert!(error("-99999999999").contains("before year 0001"));
        // The largest second of year 9999 is accepted, the next refused.
        assert_eq!(micros("253402300799"), 253_402_300_799_000_000);
        assert!(error("253402300800").contains("beyond year 9999"));
    }

    #[test]
    fn relative_to_now() {
        let n = now().timestamp_micros();
        assert_eq!(micros("now"), n);
        assert_eq!(micros("now-15m"), n - 900_000_000);
        assert_eq!(micros("now+1h"), n + 3_600_000_000);
        assert_eq!(micros("now 1h"), n + 3_600_000_000, "a URL-decoded +");
        assert_eq!(micros("now-1500ms"), n - 1_500_000);
        assert_eq!(micros("now-30s"), n - 30_000_000);
        assert_eq!(micros("now-2d"), n - 2 * 86_400_000_000);
        assert_eq!(micros("now-1w"), n - 7 * 86_400_000_000);
        for bad in [
            "now-", "now-15", "now-15y", "now*2", "now-m", "nowadays", "now-1.5h",
        ] {
            let err = error(bad);
            assert!(err.contains("now-15m"), "{bad}: {err}");
        }
        assert!(error("now+99999999999w").contains("now"));
    }

    #[test]
    fn iso_forms_still_parse_and_errors_list_every_form() {
        assert_eq!(micros("2016-01-01"), micros("1451606400"));
        assert_eq!(micros("2016-01-01T02:00:00+02:00"), 1_451_606_400_000_000);
        for bad in [
            "",
            "m",
            "yesterday",
            "1.2.3",
            "12abc",
            "2016-13-01",
            "--5",
            "1e9",
            ".5",
        ] {
            let err = error(bad);
            assert!(
                err.contains("now-15m") && err.contains("ISO-8601"),
                "{bad}: {err}"
            );
        }
        assert!(error("12abc").contains("unknown unit"));
    }
}
