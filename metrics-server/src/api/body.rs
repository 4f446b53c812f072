//! Reading a `POST /v1/metrics` body: content type, encoding, size limit, JSON, and each
//! metric's fields.
//!
//! A body is one metric object or an array of them (`application/json`), or one metric object
//! per line (`application/x-ndjson`), optionally gzip-compressed (`Content-Encoding: gzip`).
//! Either way it becomes a list of [`NewMetric`]s or a 4xx [`ApiError`] that names what is wrong,
//! before anything is stored. The size limit applies to the body as sent and again to the body
//! once decompressed, so a gzip bomb gets 413 after reading at most the limit.
//! The object is kept exactly as posted (keys, order, number spelling, `ts` as written), minus
//! insignificant whitespace.

use std::{borrow::Cow, fmt, io::Read};

use flate2::read::MultiGzDecoder;
use metrics_types::{validate_name, ErrorCode, Timestamp};
use poem::{
    error::ReadBodyError,
    http::{header, StatusCode},
    Request, RequestBody,
};
use poem_openapi::{
    registry::{MetaMediaType, MetaRequest, Registry},
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
};
use serde::{
    de::{self, DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor},
    Deserialize,
};
use serde_json::value::RawValue;

use super::{error::ApiError, schema};
use crate::store::NewMetric;

/// The largest request body accepted, set once for the whole service (`--body-limit`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

/// The validated metrics of one POST.
pub(crate) struct MetricsBody(pub(crate) Vec<NewMetric>);

impl<'a> ApiExtractor<'a> for MetricsBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        schema::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some(
                "One metric object, or a JSON array of them (`application/json`), or one metric \
                 object per line (`application/x-ndjson`): a batch, stored all or nothing. Send \
                 `Content-Encoding: gzip` to compress the body; the size limit applies to the \
                 decompressed body too.",
            ),
            content: vec![
                MetaMediaType {
                    content_type: "application/json",
                    schema: schema::metric_or_batch(),
                },
                MetaMediaType {
                    content_type: NDJSON,
                    schema: schema::ndjson_lines(),
                },
            ],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let format = match request.content_type() {
            // Without a content type a browser may send this cross-site (a "simple" request,
            // no CORS preflight): only a JSON type proves a client that meant it.
            None => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorCode::UnsupportedMediaType,
                    "the request has no Content-Type; send Content-Type: application/json (or \
                     application/x-ndjson)",
                )
                .into());
            }
            Some(content_type) if is_json(content_type) => Format::Json,
            Some(content_type) if is_ndjson(content_type) => Format::Ndjson,
            Some(content_type) => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorCode::UnsupportedMediaType,
                    format!(
                        "Content-Type {content_type:?} is not supported; send application/json \
                         or application/x-ndjson"
                    ),
                )
                .into());
            }
        };
        let gzip = match request.headers().get(header::CONTENT_ENCODING) {
            None => false,
            Some(value) => match value.to_str().map(|v| v.trim().to_ascii_lowercase()) {
                Ok(v) if v == "gzip" || v == "x-gzip" => true,
                Ok(v) if v.is_empty() || v == "identity" => false,
                _ => {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        ErrorCode::UnsupportedMediaType,
                        format!(
                            "Content-Encoding {value:?} is not supported; send gzip or nothing"
                        ),
                    )
                    .into());
                }
            },
        };
        let limit = request.data::<BodyLimit>().map_or(usize::MAX, |l| l.0);
        // A declared length over the limit is refused before a byte of the body is read.
        if declared_length(request).is_some_and(|length| length > limit as u64) {
            return Err(too_large(limit).into());
        }
        let bytes = body
            .take()?
            .into_bytes_limit(limit)
            .await
            .map_err(|err| match err {
                ReadBodyError::PayloadTooLarge => too_large(limit),
                // The transport's --body-timeout.
                ReadBodyError::Io(err) if err.kind() == std::io::ErrorKind::TimedOut => {
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        ErrorCode::RequestTimeout,
                        format!("{err}; send the body faster or in smaller batches"),
                    )
                }
                other => ApiError::bad_request(
                    ErrorCode::BadRequest,
                    format!("could not read the request body: {other}"),
                ),
            })?;
        let metrics = if gzip {
            // Decompressing and parsing a large batch takes milliseconds: off the async threads.
            tokio::task::spawn_blocking(move || {
                gunzip(&bytes, limit).and_then(|plain| format.parse(&plain))
            })
            .await
            .map_err(|err| ApiError::internal(&err))??
        } else {
            format.parse(&bytes)?
        };
        Ok(MetricsBody(metrics))
    }
}

/// The media type of newline-delimited JSON: one metric object per line.
pub(crate) const NDJSON: &str = "application/x-ndjson";

/// How a body lists its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// One object or an array of objects.
    Json,
    /// One object per line; blank lines are skipped.
    Ndjson,
}

impl Format {
    fn parse(self, bytes: &[u8]) -> Result<Vec<NewMetric>, ApiError> {
        match self {
            Format::Json => parse_metrics(bytes),
            Format::Ndjson => parse_ndjson(bytes),
        }
    }
}

/// The `Content-Length` of a request, when it has a valid one.
fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!(
            "the request body is over the limit of {limit} bytes; split it into smaller batches"
        ),
    )
}

/// Decompresses a gzip body, reading at most `limit` bytes of output: one more is a 413.
fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut plain = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    MultiGzDecoder::new(compressed)
        .take(limit as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|err| {
            ApiError::bad_request(
                ErrorCode::BadRequest,
                format!("the body is not valid gzip: {err}"),
            )
        })?;
    if plain.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!(
                "the decompressed request body is over the limit of {limit} bytes; split it into \
                 smaller batches"
            ),
        ));
    }
    Ok(plain)
}

/// `application/json`, with or without parameters, and `application/<anything>+json`.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 17
            && essence[..12].eq_ignore_ascii_case("application/")
            && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// `application/x-ndjson`, with or without parameters (also the `jsonlines` spellings).
fn is_ndjson(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    [
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonlines",
        "application/x-jsonlines",
    ]
    .iter()
    .any(|t| essence.eq_ignore_ascii_case(t))
}

/// Parses an NDJSON body: one metric object per line, blank lines skipped.
pub(crate) fn parse_ndjson(bytes: &[u8]) -> Result<Vec<NewMetric>, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|err| {
        ApiError::bad_request(
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
            ApiError::bad_request(
                ErrorCode::InvalidJson,
                at_line(format!("not valid JSON: {}", strip_position(&err))),
            )
        })?;
        let metric =
            parse_metric(raw).map_err(|e| ApiError::bad_request(e.code, at_line(e.message)))?;
        metrics.push(metric);
    }
    if metrics.is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidBody,
            "the body has no metrics; send one metric object per line",
        ));
    }
    Ok(metrics)
}

/// Parses a body: one metric object or an array of them.
pub(crate) fn parse_metrics(bytes: &[u8]) -> Result<Vec<NewMetric>, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|err| {
        ApiError::bad_request(
            ErrorCode::InvalidJson,
            format!("the body is not UTF-8: {err}"),
        )
    })?;
    let invalid_json = |err: serde_json::Error| {
        ApiError::bad_request(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {err}"),
        )
    };
    match text.trim_start().as_bytes().first() {
        None => Err(ApiError::bad_request(
            ErrorCode::InvalidBody,
            "the body is empty; send a metric object such as {\"name\": \"cpu\", \"value\": 1, \"ts\": \"2016-01-01\"}",
        )),
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(invalid_json)?;
            items
                .iter()
                .enumerate()
                .map(|(i, raw)| parse_metric(raw).map_err(|e| e.in_batch(i)))
                .collect()
        }
        Some(b'{') => {
            let raw: &RawValue = serde_json::from_str(text).map_err(invalid_json)?;
            Ok(vec![parse_metric(raw).map_err(FieldError::into_api)?])
        }
        Some(_) => {
            // Say whether it was JSON at all before saying it was the wrong JSON.
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(invalid_json)?;
            Err(ApiError::bad_request(
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

/// What is wrong with one metric, before we know whether it stands alone or in a batch.
struct FieldError {
    code: ErrorCode,
    message: String,
}

impl FieldError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        FieldError {
            code,
            message: message.into(),
        }
    }

    fn into_api(self) -> ApiError {
        ApiError::bad_request(self.code, self.message)
    }

    fn in_batch(self, index: usize) -> ApiError {
        ApiError::bad_request(
            self.code,
            format!(
                "metric at index {index}: {}; nothing of the batch was stored",
                self.message
            ),
        )
    }
}

fn parse_metric(raw: &RawValue) -> Result<NewMetric, FieldError> {
    let text = raw.get();
    if !text.starts_with('{') {
        return Err(FieldError::new(
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
    .map_err(|err| FieldError::new(ErrorCode::InvalidField, strip_position(&err)))?;
    let missing = |field: &str| {
        FieldError::new(
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
            FieldError::new(ErrorCode::InvalidField, message)
        })
    })?;
    validate_name(&name)
        .map_err(|err| FieldError::new(ErrorCode::InvalidField, format!("field `name` {err}")))?;

    let value_raw = fields.value.ok_or_else(|| missing("value"))?;
    let value = match serde_json::from_str::<serde_json::Value>(value_raw.get()) {
        Ok(serde_json::Value::Number(n)) => n.as_f64(),
        Ok(serde_json::Value::String(_) | serde_json::Value::Bool(_)) => None,
        Ok(_) => {
            return Err(FieldError::new(
                ErrorCode::InvalidField,
                "field `value` must be a number, a string or a boolean",
            ))
        }
        Err(err) => {
            return Err(FieldError::new(
                ErrorCode::InvalidField,
                format!("field `value`: {}", strip_position(&err)),
            ))
        }
    };

    let ts_text: String = fields.ts.ok_or_else(|| missing("ts")).and_then(|raw| {
        serde_json::from_str(raw.get()).map_err(|_| {
            FieldError::new(
                ErrorCode::InvalidTimestamp,
                "field `ts` must be an ISO-8601 string such as \"2016-01-01T12:00:00Z\"",
            )
        })
    })?;
    let ts = Timestamp::parse(&ts_text).map_err(|err| {
        FieldError::new(ErrorCode::InvalidTimestamp, format!("field `ts`: {err}"))
    })?;

    Ok(NewMetric {
        name,
        ts_micros: ts.timestamp_micros(),
        value,
        doc: compact(text),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error(body: &str) -> ApiError {
        parse_metrics(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn keeps_the_object_as_posted_without_whitespace() {
        let metrics = parse_metrics(
            br#"{ "ts": "2016-01-01 12:00:00.000", "name": "a b",
                 "value": 1.50, "host": {"dc": "x \" y"} }"#,
        )
        .unwrap();
        assert_eq!(
            metrics[0].doc,
            r#"{"ts":"2016-01-01 12:00:00.000","name":"a b","value":1.50,"host":{"dc":"x \" y"}}"#
        );
        assert_eq!(metrics[0].value, Some(1.5));
        assert_eq!(metrics[0].ts_micros, 1_451_649_600_000_000);
    }

    #[test]
    fn reads_batches_in_order() {
        let metrics = parse_metrics(
            br#"[{"name":"a","value":"x","ts":"2016-01-01"},{"name":"b","value":true,"ts":"2016-01-02"}]"#,
        )
        .unwrap();
        assert_eq!(metrics.len(), 2);
        assert_eq!((metrics[0].name.as_str(), metrics[0].value), ("a", None));
        assert_eq!(metrics[1].name, "b");
        assert!(parse_metrics(b"[]").unwrap().is_empty());
    }

    #[test]
    fn names_what_is_wrong() {
        let e = error(r#"{"name":"a","value":1}"#);
        assert_eq!(e.code(), ErrorCode::MissingField);
        assert!(e.to_string().contains("`ts`"), "{e}");

        let e = error(r#"{"name":1,"value":1,"ts":"2016-01-01"}"#);
        assert_eq!(e.code(), ErrorCode::InvalidField);
        assert!(e.to_string().contains("`name`"), "{e}");

        let e = error(r#"{"name":"a","value":null,"ts":"2016-01-01"}"#);
        assert!(e.to_string().contains("`value`"), "{e}");

        let e = error(r#"{"name":"a","value":1,"ts":"2016-99-01"}"#);
        assert_eq!(e.code(), ErrorCode::InvalidTimestamp);

        let e = error(
            r#"[{"name":"a","value":1,"ts":"2016-01-01"}, {"name":"","value":1,"ts":"2016-01-01"}]"#,
        );
        assert!(e.to_string().contains("index 1"), "{e}");

        assert_eq!(error("{\"name\":").code(), ErrorCode::InvalidJson);
        assert_eq!(error("").code(), ErrorCode::InvalidBody);
        assert_eq!(error("42").code(), ErrorCode::InvalidBody);
        assert_eq!(error("[42]").code(), ErrorCode::InvalidBody);
        assert_eq!(error("nope").code(), ErrorCode::InvalidJson);
    }

    #[test]
    fn refuses_what_readers_could_not_decode_again() {
        let metric = |extra: &str| format!(r#"{{"name":"a","value":1,"ts":"2016-01-01",{extra}}}"#);
        let deep = format!(r#""deep":{}1{}"#, "[".repeat(10_000), "]".repeat(10_000));
        for (extra, field) in [
            (deep.as_str(), "`deep`"),
            (r#""x":"\ud800""#, "`x`"),
            (r#""x":{"y":["\udc00"]}"#, "`x`"),
            (r#""\ud800":1"#, "key"),
            (r#""x":1e400"#, "`x`"),
        ] {
            let body = format!("[{},{}]", metric(r#""ok":1"#), metric(extra));
            let e = error(&body);
            assert_eq!(e.code(), ErrorCode::InvalidField, "{extra}");
            let text = e.to_string();
            assert!(text.contains("index 1") && text.contains(field), "{text}");
            assert!(!text.contains("line 1"), "{text}");
        }
        let e = error(r#"{"name":"\ud800","value":1,"ts":"2016-01-01"}"#);
        assert!(e.to_string().contains("`name`"), "{e}");
        let e = error(r#"{"name":"a","value":"\udfff","ts":"2016-01-01"}"#);
        assert!(e.to_string().contains("`value`"), "{e}");
        let e = error(r#"{"name":"a","value":1,"ts":"2016-01-01","name":"b"}"#);
        assert!(e.to_string().contains("duplicate field `name`"), "{e}");
        let e = error(r#"{"name":"a\u0000b","value":1,"ts":"2016-01-01"}"#);
        assert!(e.to_string().contains("`name`"), "{e}");
    }

    #[test]
    fn accepts_nesting_up_to_the_limit_and_valid_pairs() {
        // The metric object is level 1: 31 more levels fit.
        let nested = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        let body = format!(
            r#"{{"name":"a","value":1,"ts":"2016-01-01","n":{nested},"s":"\ud83d\ude00 \u0000"}}"#
        );
        let metrics = parse_metrics(body.as_bytes()).unwrap();
        assert_eq!(metrics[0].doc, body);
        let deeper = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let body = format!(r#"{{"name":"a","value":1,"ts":"2016-01-01","n":{deeper}}}"#);
        let e = error(&body);
        assert!(e.to_string().contains("nested deeper than 32"), "{e}");
    }

    #[test]
    fn reads_ndjson_line_by_line() {
        let metrics = parse_ndjson(
            b"{\"name\":\"a\",\"value\":1,\"ts\":\"2016-01-01\"}\r\n\n {\"name\":\"b\",\"value\":2,\"ts\":\"2016-01-02\"}",
        )
        .unwrap();
        assert_eq!(metrics.len(), 2);
        assert_eq!(metrics[1].name, "b");
        let e =
            parse_ndjson(b"{\"name\":\"a\",\"value\":1,\"ts\":\"2016-01-01\"}\n[1]\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert_eq!(
            parse_ndjson(b"\n\n").unwrap_err().code(),
            ErrorCode::InvalidBody
        );
    }

    #[test]
    fn gunzip_stops_at_the_limit() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&[b' '; 1 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert_eq!(gunzip(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        assert_eq!(
            gunzip(&bomb, (1 << 20) - 1).unwrap_err().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            gunzip(b"plain", 100).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn accepts_json_content_types_only() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/vnd.metrics+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(is_ndjson("application/x-ndjson; charset=utf-8"));
        assert!(!is_ndjson("application/json"));
    }

    /// Property tests: whatever arrives, the parser answers parsed metrics that every reader can
    /// decode back to exactly what was posted, or a 4xx; it never panics.
    mod props {
        use metrics_types::StreamFrame;
        use proptest::prelude::*;
        use serde_json::Value;

        use super::super::*;

        /// Any JSON value, nested a few levels, with arbitrary Unicode (NUL and controls too).
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                any::<String>().prop_map(Value::String),
            ];
            leaf.prop_recursive(6, 48, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                    prop::collection::btree_map(key(), inner, 0..5)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("name".to_owned()),
                Just("value".to_owned()),
                Just("ts".to_owned()),
                any::<String>(),
            ]
        }

        fn timestamp_text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])",
                "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,12})?)?( ?(Z|[+-][0-9]{2}(:?[0-9]{2})?))?",
                any::<String>(),
            ]
        }

        /// Objects that are metrics or nearly: each required field present or not, well typed
        /// or not, and arbitrary other keys.
        fn metricish() -> impl Strategy<Value = Value> {
            let name = prop_oneof![
                6 => "[a-z0-9_. é😀]{1,20}".prop_map(Value::String),
                1 => any::<String>().prop_map(Value::String),
                1 => json_value(),
            ];
            let value = prop_oneof![
                3 => any::<f64>().prop_map(Value::from),
                2 => any::<i64>().prop_map(Value::from),
                1 => any::<bool>().prop_map(Value::Bool),
                1 => any::<String>().prop_map(Value::String),
                1 => json_value(),
            ];
            let ts = prop_oneof![
                6 => "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])".prop_map(Value::String),
                2 => timestamp_text().prop_map(Value::String),
                1 => json_value(),
            ];
            (
                prop::option::weighted(0.95, name),
                prop::option::weighted(0.95, value),
                prop::option::weighted(0.95, ts),
                prop::collection::btree_map(any::<String>(), json_value(), 0..4),
            )
                .prop_map(|(name, value, ts, extra)| {
                    let mut object: serde_json::Map<String, Value> = extra.into_iter().collect();
                    for (key, field) in [("name", name), ("value", value), ("ts", ts)] {
                        match field {
                            Some(v) => {
                                object.insert(key.to_owned(), v);
                            }
                            None => {
                                object.remove(key);
                            }
                        }
                    }
                    Value::Object(object)
                })
        }

        /// JSON text written by hand, with escapes serde_json would never write: lone and
        /// paired surrogates, `\\u0000`, deep nesting.
        fn raw_json(depth: u32) -> BoxedStrategy<String> {
            let escape = prop_oneof![
                any::<u16>().prop_map(|u| format!("\\u{u:04x}")),
                (0xd800u16..0xdc00, 0xdc00u16..0xe000)
                    .prop_map(|(h, l)| format!("\\u{h:04x}\\u{l:04x}")),
                prop::sample::select(vec!["\\n", "\\\"", "\\\\", "\\/", "\\t"])
                    .prop_map(str::to_owned),
                "[a-z é😀]{0,3}",
            ];
            let string = prop::collection::vec(escape, 0..4)
                .prop_map(|parts| format!("\"{}\"", parts.concat()));
            let leaf = prop_oneof![
                string.clone(),
                "-?[0-9]{1,3}(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
                Just("true".to_owned()),
                Just("null".to_owned()),
            ];
            if depth == 0 {
                return leaf.boxed();
            }
            let inner = raw_json(depth - 1);
            prop_oneof![
                2 => leaf,
                1 => prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                1 => prop::collection::vec((string, inner), 0..3).prop_map(|pairs| {
                    let pairs: Vec<String> =
                        pairs.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{{}}}", pairs.join(","))
                }),
                1 => (0usize..80).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
            ]
            .boxed()
        }

        /// What every reader must be able to do with a stored metric: decode it as a value, as
        /// a stream frame and inside a query answer, and get what was posted.
        fn assert_round_trips(stored: &NewMetric, posted: &str) {
            let posted: Value = serde_json::from_str(posted).expect("accepted means valid JSON");
            let doc: Value = serde_json::from_str(&stored.doc).expect("the stored doc decodes");
            assert_eq!(doc, posted);
            let frame = format!("{{\"id\":1,\"metric\":{}}}", stored.doc);
            let frame: StreamFrame = serde_json::from_str(&frame).expect("a stream frame decodes");
            assert_eq!(frame.metric.as_ref(), Some(&posted));
            let answer: Vec<Value> =
                serde_json::from_str(&format!("[{}]", stored.doc)).expect("a query answer decodes");
            assert_eq!(answer[0], posted);
            assert_eq!(posted["name"].as_str(), Some(stored.name.as_str()));
            let ts = metrics_types::Timestamp::parse(posted["ts"].as_str().unwrap()).unwrap();
            assert_eq!(ts.timestamp_micros(), stored.ts_micros);
            assert!(
                (metrics_types::Timestamp::MIN_MICROS..=metrics_types::Timestamp::MAX_MICROS)
                    .contains(&stored.ts_micros)
            );
        }

        fn assert_client_error(err: &ApiError) {
            assert!(err.status().is_client_error(), "{err}");
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn any_bytes_parse_or_get_a_4xx(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
                for result in [parse_metrics(&bytes), parse_ndjson(&bytes)] {
                    if let Err(err) = result {
                        assert_client_error(&err);
                    }
                }
            }

            #[test]
            fn any_json_value_parses_or_gets_a_4xx(value in json_value()) {
                if let Err(err) = parse_metrics(value.to_string().as_bytes()) {
                    assert_client_error(&err);
                }
            }

            #[test]
            fn metrics_round_trip_exactly_or_get_a_4xx(
                batch in prop::collection::vec(metricish(), 1..3),
                pretty in any::<bool>(),
            ) {
                let texts: Vec<String> = batch
                    .iter()
                    .map(|m| if pretty {
                        serde_json::to_string_pretty(m).unwrap()
                    } else {
                        m.to_string()
                    })
                    .collect();
                let body = format!("[{}]", texts.join(",\n"));
                match parse_metrics(body.as_bytes()) {
                    Ok(metrics) => {
                        prop_assert_eq!(metrics.len(), texts.len());
                        for (stored, posted) in metrics.iter().zip(&texts) {
                            assert_round_trips(stored, posted);
                        }
                    }
                    Err(err) => assert_client_error(&err),
                }
            }

            #[test]
            fn skipping_the_walk_never_lets_through_what_the_walk_refuses(
                extra in raw_json(3),
                key in "[a-z]{1,3}",
            ) {
                let body = format!(r#"{{"name":"m","value":1,"ts":"2016-01-01","x{key}":{extra}}}"#);
                let read = |walk: bool| {
                    let mut de = serde_json::Deserializer::from_str(&body);
                    FieldsVisitor { walk }.deserialize(&mut de).map(|_| ()).map_err(|e| e.to_string())
                };
                if !needs_walk(&body) {
                    // (Their messages may differ: the walk names the field.)
                    prop_assert_eq!(read(false).is_ok(), read(true).is_ok(), "{}", body);
                }
            }

            #[test]
            fn hand_written_json_is_stored_only_if_readers_can_decode_it(
                extra in raw_json(3),
                key in "[a-z]{1,3}",
                ts in timestamp_text(),
            ) {
                let ts = Value::String(ts).to_string();
                let body = format!(r#"{{"name":"m","value":1,"ts":{ts},"x{key}":{extra}}}"#);
                for result in [parse_metrics(body.as_bytes()), parse_ndjson(body.as_bytes())] {
                    match result {
                        Ok(metrics) => assert_round_trips(&metrics[0], &body),
                        Err(err) => assert_client_error(&err),
                    }
                }
            }
        }
    }
}
