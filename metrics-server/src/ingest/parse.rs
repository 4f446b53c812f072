//! Reading metrics out of a posted body: JSON or NDJSON framing, each metric's required fields,
//! and the checks that let every reader decode the stored text again.
//!
//! A body is one metric object or an array of them ([`parse_metrics`]), or one metric object per
//! line ([`parse_ndjson`]). Either way it becomes a list of [`NewMetric`]s or a [`ParseError`]
//! that names what is wrong (the metric by index or line, then the field), before anything is
//! stored. A metric needs a `name` (see [`validate_name`]), a `value` (a number, string or
//! boolean) and a `ts` (an ISO-8601 string, or a number of Unix seconds or of the request's
//! [`Precision`], within [`Timestamp`]'s range); its other keys are kept
//! but only checked to be decodable: valid Unicode, numbers that fit an `f64`, at most
//! [`MAX_DEPTH`] levels of nesting. The object is kept exactly as posted (keys, order, number
//! spelling, `ts` as written), minus insignificant whitespace ([`compact`]).
//!
//! No HTTP here: `api/body.rs` reads the bytes (content type, encoding, size limit) and answers
//! a [`ParseError`] as `400`.

use std::{borrow::Cow, fmt};

use metrics_types::{validate_name, ErrorCode, Timestamp};
use serde::{
    de::{self, DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor},
    Deserialize,
};
use serde_json::value::RawValue;

use crate::store::NewMetric;

#[cfg(test)]
mod tests;

/// Why a body was refused: the code and the message the client gets (with a `400`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct ParseError {
    code: ErrorCode,
    message: String,
}

impl ParseError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ParseError {
            code,
            message: message.into(),
        }
    }

    /// The machine-readable code.
    pub(crate) fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message for the client, which names the metric and the field.
    pub(crate) fn into_message(self) -> String {
        self.message
    }

    /// The error of one metric of a batch: says which, and that the batch was not stored.
    fn in_batch(self, index: usize) -> ParseError {
        ParseError::new(
            self.code,
            format!(
                "metric at index {index}: {}; nothing of the batch was stored",
                self.message
            ),
        )
    }
}

/// The unit of a numeric `ts`: seconds unless the request says otherwise (`?precision=`).
/// A number is never read by its magnitude: `1700000000000` in seconds is refused as beyond
/// year 9999, with a hint to name the unit, rather than guessed to be milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Precision {
    /// Unix seconds, a fraction allowed (`1700000000.25`).
    #[default]
    Seconds,
    /// Milliseconds since the epoch.
    Millis,
    /// Microseconds since the epoch.
    Micros,
    /// Nanoseconds since the epoch (below a microsecond is dropped).
    Nanos,
}

impl Precision {
    /// The value of a `precision` parameter: `s`, `ms`, `us` or `ns`.
    pub(crate) fn from_param(text: &str) -> Option<Precision> {
        match text {
            "s" => Some(Precision::Seconds),
            "ms" => Some(Precision::Millis),
            "us" => Some(Precision::Micros),
            "ns" => Some(Precision::Nanos),
            _ => None,
        }
    }

    /// The power of ten that turns one of this unit into microseconds.
    fn micros_exponent(self) -> i32 {
        match self {
            Precision::Seconds => 6,
            Precision::Millis => 3,
            Precision::Micros => 0,
            Precision::Nanos => -3,
        }
    }

    fn unit_name(self) -> &'static str {
        match self {
            Precision::Seconds => "seconds",
            Precision::Millis => "milliseconds",
            Precision::Micros => "microseconds",
            Precision::Nanos => "nanoseconds",
        }
    }
}

/// A numeric `ts` (its JSON text) as microseconds since the epoch, computed exactly from the
/// decimal text (no float rounding; below a microsecond is truncated towards the past), or
/// `None` when it lies beyond the range of [`Timestamp`] (years 1 to 9999).
fn number_micros(text: &str, precision: Precision) -> Option<i64> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = int.chars().chain(frac.chars()).collect();
    let digits = digits.trim_start_matches('0');
    // The value is `digits * 10^shift` microseconds.
    let shift = i64::from(exponent) - frac.len() as i64 + i64::from(precision.micros_exponent());
    if digits.is_empty() {
        return Some(0);
    }
    let magnitude: i128 = if shift >= 0 {
        // More than 19 digits before the point is beyond any i64, let alone year 9999.
        if digits.len() as i64 + shift > 19 {
            return None;
        }
        digits.parse::<i128>().ok()? * 10i128.pow(shift as u32)
    } else {
        let cut = (-shift) as usize;
        if cut >= digits.len() {
            // Less than one microsecond.
            i128::from(negative && digits.bytes().any(|b| b != b'0'))
        } else {
            let (kept, dropped) = digits.split_at(digits.len() - cut);
            if kept.len() > 19 {
                return None;
            }
            let kept: i128 = kept.parse().ok()?;
            kept + i128::from(negative && dropped.bytes().any(|b| b != b'0'))
        }
    };
    let micros = if negative { -magnitude } else { magnitude };
    let micros = i64::try_from(micros).ok()?;
    (Timestamp::MIN_MICROS..=Timestamp::MAX_MICROS)
        .contains(&micros)
        .then_some(micros)
}

/// Parses an NDJSON body: one metric object per line, blank lines skipped; a numeric `ts` is in
/// `precision`'s unit.
pub(crate) fn parse_ndjson(
    bytes: &[u8],
    precision: Precision,
) -> Result<Vec<NewMetric>, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|err| {
        ParseError::new(
            ErrorCode::InvalidJson,
            format!("the body is not UTF-8: {err}"),
        )
    })?;
    let mut metrics = Vec::with_capacity(text.len() / 64 + 1);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at_line =
            |message: String| format!("line {}: {message}; nothing of the batch was stored", i + 1);
        let raw: &RawValue = serde_json::from_str(line).map_err(|err| {
            ParseError::new(
                ErrorCode::InvalidJson,
                at_line(format!("not valid JSON: {}", strip_position(&err))),
            )
        })?;
        let metric = parse_metric(raw, precision)
            .map_err(|e| ParseError::new(e.code, at_line(e.message)))?;
        metrics.push(metric);
    }
    if metrics.is_empty() {
        return Err(ParseError::new(
            ErrorCode::InvalidBody,
            "the body has no metrics; send one metric object per line",
        ));
    }
    Ok(metrics)
}

/// Parses a body: one metric object or an array of them; a numeric `ts` is in `precision`'s
/// unit.
pub(crate) fn parse_metrics(
    bytes: &[u8],
    precision: Precision,
) -> Result<Vec<NewMetric>, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|err| {
        ParseError::new(
            ErrorCode::InvalidJson,
            format!("the body is not UTF-8: {err}"),
        )
    })?;
    let invalid_json = |err: serde_json::Error| {
        ParseError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {err}"),
        )
    };
    match text.trim_start().as_bytes().first() {
        None => Err(ParseError::new(
            ErrorCode::InvalidBody,
            "the body is empty; send a metric object such as {\"name\": \"cpu\", \"value\": 1, \"ts\": \"2016-01-01\"}",
        )),
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(invalid_json)?;
            items
                .iter()
                .enumerate()
                .map(|(i, raw)| parse_metric(raw, precision).map_err(|e| e.in_batch(i)))
                .collect()
        }
        Some(b'{') => {
            let raw: &RawValue = serde_json::from_str(text).map_err(invalid_json)?;
            Ok(vec![parse_metric(raw, precision)?])
        }
        Some(_) => {
            // Say whether it was JSON at all before saying it was the wrong JSON.
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(invalid_json)?;
            Err(ParseError::new(
                ErrorCode::InvalidBody,
                "the body must be a metric object or an array of metric objects",
            ))
        }
    }
}

/// The deepest nesting of arrays and objects a metric may hold, the metric object itself being
/// level 1. Readers decode stored metrics with a recursion limit (serde_json's is 128, and a query
/// answer or a stream frame wraps each metric in one or two more levels), so a deeper object would
/// be stored and then break every query and subscription that includes it.
pub(crate) const MAX_DEPTH: usize = 32;

/// The three fields the API requires, still raw; every other key is kept but not read.
/// `None` means absent; an explicit `null` is present (and then refused for its type).
///
/// Reading them walks the whole object once and also checks what the stored text must satisfy
/// for every reader to decode it again: valid Unicode in every string and key (no lone surrogate
/// such as `"\ud800"`, which JSON's grammar allows), numbers that fit an `f64`, and at most
/// [`MAX_DEPTH`] levels of nesting.
#[derive(Default)]
struct Fields<'a> {
    name: Option<&'a RawValue>,
    value: Option<&'a RawValue>,
    ts: Option<&'a RawValue>,
}

/// Reads [`Fields`]; `walk` says whether the other keys need the full [`Checked`] walk or may be
/// skipped (see [`needs_walk`]).
struct FieldsVisitor {
    walk: bool,
}

impl<'de> DeserializeSeed<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Fields<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metric object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        while let Some(Key(key)) = map.next_key().map_err(|e| {
            A::Error::custom(format!(
                "a key: {}",
                explain_escape(cut_position(&e.to_string()))
            ))
        })? {
            let slot = match &*key {
                "name" => &mut fields.name,
                "value" => &mut fields.value,
                "ts" => &mut fields.ts,
                _ if !self.walk => {
                    map.next_value::<de::IgnoredAny>()?;
                    continue;
                }
                _ => {
                    map.next_value_seed(Checked { depth: 2 }).map_err(|e| {
                        let message = explain_escape(cut_position(&e.to_string()));
                        A::Error::custom(format!("field `{key}`: {message}"))
                    })?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(A::Error::custom(format!("duplicate field `{key}`")));
            }
            *slot = Some(map.next_value()?);
        }
        Ok(fields)
    }
}

/// Whether a metric's text may hold something only the full [`Checked`] walk can judge: nesting
/// deeper than [`MAX_DEPTH`], a `\uD...` escape (the surrogate range), or a number that could
/// overflow an `f64` (an exponent, or hundreds of digits). One pass over the bytes, much cheaper
/// than the walk; almost every metric has none of these, and its other keys are then skipped as
/// before. The property tests hold both paths to the same answers.
fn needs_walk(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut digits = 0usize;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => {
                    if bytes.get(i + 1) == Some(&b'u')
                        && matches!(bytes.get(i + 2), Some(b'd' | b'D'))
                    {
                        return true;
                    }
                    i += 2;
                    continue;
                }
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return true;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                b'e' | b'E' if i > 0 && bytes[i - 1].is_ascii_digit() => return true,
                _ => {}
            }
            if b.is_ascii_digit() {
                digits += 1;
                if digits > 300 {
                    return true;
                }
            } else {
                digits = 0;
            }
        }
        i += 1;
    }
    false
}

/// An object key, borrowed from the body unless it holds an escape.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Walks a value without keeping it: serde_json checks each string's escapes and each number's
/// range as it goes (skipping a value, as a `RawValue` does, checks neither), and the walk
/// refuses containers deeper than [`MAX_DEPTH`] before descending into them.
#[derive(Clone, Copy)]
struct Checked {
    /// The level a container found here would be at.
    depth: usize,
}

impl Checked {
    fn enter<E: de::Error>(self) -> Result<Checked, E> {
        if self.depth > MAX_DEPTH {
            return Err(E::custom(format!(
                "nested deeper than {MAX_DEPTH} levels of arrays and objects"
            )));
        }
        Ok(Checked {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while map.next_key::<Key<'de>>()?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

fn parse_metric(raw: &RawValue, precision: Precision) -> Result<NewMetric, ParseError> {
    let text = raw.get();
    if !text.starts_with('{') {
        return Err(ParseError::new(
            ErrorCode::InvalidBody,
            "a metric must be a JSON object with name, value and ts",
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = FieldsVisitor {
        walk: needs_walk(text),
    }
    .deserialize(&mut de)
    .and_then(|fields| de.end().map(|()| fields))
    .map_err(|err| ParseError::new(ErrorCode::InvalidField, strip_position(&err)))?;
    let missing = |field: &str| {
        ParseError::new(
            ErrorCode::MissingField,
            format!("missing field `{field}`; a metric needs name, value and ts"),
        )
    };

    let name: String = fields.name.ok_or_else(|| missing("name")).and_then(|raw| {
        serde_json::from_str(raw.get()).map_err(|err| {
            let message = if err.is_data() {
                "field `name` must be a string".to_owned()
            } else {
                format!("field `name`: {}", explain_escape(&strip_position(&err)))
            };
            ParseError::new(ErrorCode::InvalidField, message)
        })
    })?;
    validate_name(&name)
        .map_err(|err| ParseError::new(ErrorCode::InvalidField, format!("field `name` {err}")))?;

    let value_raw = fields.value.ok_or_else(|| missing("value"))?;
    let value = match serde_json::from_str::<serde_json::Value>(value_raw.get()) {
        Ok(serde_json::Value::Number(n)) => n.as_f64(),
        Ok(serde_json::Value::String(_) | serde_json::Value::Bool(_)) => None,
        Ok(_) => {
            return Err(ParseError::new(
                ErrorCode::InvalidField,
                "field `value` must be a number, a string or a boolean",
            ))
        }
        Err(err) => {
            return Err(ParseError::new(
                ErrorCode::InvalidField,
                format!("field `value`: {}", strip_position(&err)),
            ))
        }
    };

    let ts_raw = fields.ts.ok_or_else(|| missing("ts"))?.get();
    let ts_micros = if ts_raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        number_micros(ts_raw, precision).ok_or_else(|| {
            let hint = match precision {
                Precision::Seconds => "a number is read as Unix seconds; for milliseconds, \
                                       microseconds or nanoseconds add ?precision=ms (us, ns) \
                                       to the request"
                    .to_owned(),
                other => format!(
                    "the request's `precision` parameter reads numbers as {}; check it (s, \
                     ms, us or ns)",
                    other.unit_name()
                ),
            };
            ParseError::new(
                ErrorCode::InvalidTimestamp,
                format!(
                    "field `ts`: {ts_raw} {} is outside years 0001 to 9999; {hint}",
                    precision.unit_name()
                ),
            )
        })?
    } else {
        let ts_text: String = serde_json::from_str(ts_raw).map_err(|_| {
            ParseError::new(
                ErrorCode::InvalidTimestamp,
                "field `ts` must be an ISO-8601 string such as \"2016-01-01T12:00:00Z\" or a \
                 number of Unix seconds such as 1451649600",
            )
        })?;
        Timestamp::parse(&ts_text)
            .map_err(|err| {
                ParseError::new(ErrorCode::InvalidTimestamp, format!("field `ts`: {err}"))
            })?
            .timestamp_micros()
    };

    let doc = compact(text);
    let tags = crate::selection::tags_of(&doc).unwrap_or_default();
    Ok(NewMetric {
        name,
        ts_micros,
        value,
        doc,
        tags,
    })
}

/// serde_json's messages end in "at line 1 column 9", which points into one object of the body,
/// not into the body: misleading in a batch, so it goes.
fn strip_position(err: &serde_json::Error) -> String {
    cut_position(&err.to_string()).to_owned()
}

/// Says why an escape was refused, where serde_json's message does not.
fn explain_escape(message: &str) -> String {
    if message.contains("surrogate") || message.contains("hex escape") {
        format!(
            "{message} (a \\uD800-\\uDFFF escape must be half of a surrogate pair: text must be \
             valid Unicode)"
        )
    } else {
        message.to_owned()
    }
}

fn cut_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

/// Removes the whitespace between the tokens of valid JSON, leaving strings untouched.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}
