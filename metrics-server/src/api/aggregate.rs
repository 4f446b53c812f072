//! `GET /v1/metrics` with `step`: the aggregation parameters (`step`, `agg`, `by`, `offset`,
//! `fill`) read strictly, the store's series written as columnar JSON, NDJSON or CSV, and the
//! OpenAPI declarations of those parameters.
//!
//! ```text
//! GET /v1/metrics?name=cpu&sts=now-1d&step=1m&agg=avg,max,p99&by=host&fill=null
//! {"step":60,"offset":0,"fill":"null","series":[{"name":"cpu","tags":{"host":"web-1"},
//!  "non_numeric":0,"ts":[1767225600,...],"avg":[0.41,...],"max":[...],"p99":[...]}]}
//! ```

use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};
use poem::{Body, Request};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use serde_json::json;

use super::{
    answer::{Format, MetricsAnswer},
    error::ApiError,
    param_types::declared_param,
    params::{invalid, Params},
};
use crate::{
    aggregation::{suggested_step, AggSeries, Aggregation, Fill, Function, MAX_BUCKETS},
    selection::{Selection, RESERVED_KEYS},
    store::{Aggregated, StoreError},
    AppState,
};

/// The parameters of the aggregate form (`step` makes a query one).
pub(crate) const AGGREGATE_PARAMS: [&str; 5] = ["step", "agg", "by", "offset", "fill"];

/// Parameters of the raw form that mean nothing to an aggregation.
const RAW_ONLY: [&str; 4] = ["limit", "order", "cursor", "columns"];

/// The most `by` keys.
const MAX_BY: usize = 8;

/// Whether the query asks for an aggregation (any of its parameters is given).
pub(crate) fn asked(params: &Params) -> bool {
    AGGREGATE_PARAMS
        .iter()
        .any(|name| params.all(name).next().is_some())
}

/// The answer of an aggregate query.
pub(crate) async fn answer(
    state: &AppState,
    req: &Request,
    params: &Params,
) -> Result<MetricsAnswer, ApiError> {
    let selection: Selection = params.selection()?;
    let aggregation = aggregation(params)?;
    let format = Format::choose(params.one("format")?, req)?;
    let series = match state.store.aggregate(&selection, &aggregation).await? {
        Aggregated::Series(series) => series,
        Aggregated::TooManyBuckets {
            buckets,
            span_micros,
        } => {
            return Err(invalid(format!(
                "query parameter `step`: {} gives {buckets} buckets per series over the {} \
                 selected, more than the {MAX_BUCKETS} allowed; use step={} or more, or narrow \
                 sts/ets",
                params.one("step")?.unwrap_or_default(),
                span_words(span_micros),
                suggested_step(span_micros),
            )))
        }
    };
    Ok(MetricsAnswer {
        format,
        body: body(format, aggregation, series),
        link: None,
    })
}

/// Reads `step`, `agg`, `by`, `offset` and `fill`, refusing the raw form's parameters.
pub(crate) fn aggregation(params: &Params) -> Result<Aggregation, ApiError> {
    let Some(step_text) = params.one("step")? else {
        let given = AGGREGATE_PARAMS
            .iter()
            .find(|name| params.all(name).next().is_some())
            .unwrap_or(&"agg");
        return Err(invalid(format!(
            "query parameter `{given}` needs `step`, the bucket width (e.g. step=1m): \
             aggregations are made per bucket"
        )));
    };
    if let Some(raw) = RAW_ONLY
        .iter()
        .find(|name| params.all(name).next().is_some())
    {
        return Err(invalid(format!(
            "query parameter `{raw}` applies to raw queries, not to aggregations (with `step`); \
             narrow the answer with sts/ets or a larger step"
        )));
    }
    let step_secs = duration_secs(step_text).filter(|s| *s > 0).ok_or_else(|| {
        invalid(format!(
            "query parameter `step`: {step_text:?} is not a bucket width; expected whole \
                 seconds (`60`) or a number with a unit s, m, h, d or w (`10s`, `5m`, `1h`, `1d`)"
        ))
    })?;
    let offset_secs = match params.one("offset")? {
        None => 0,
        Some(text) => {
            let (negative, rest) = match text.trim().strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text.trim()),
            };
            let secs = duration_secs(rest).ok_or_else(|| {
                invalid(format!(
                    "query parameter `offset`: {text:?} is not a shift of the grid; expected \
                     seconds or a number with a unit, optionally negative (`30s`, `-1h`, `2h`)"
                ))
            })?;
            if negative {
                -secs
            } else {
                secs
            }
        }
    };
    let mut functions: Vec<Function> = Vec::new();
    let agg_texts: Vec<&str> = params.all("agg").collect();
    let agg_texts = if agg_texts.iter().all(|t| t.trim().is_empty()) {
        vec!["avg"]
    } else {
        agg_texts
    };
    for text in agg_texts.iter().flat_map(|t| t.split(',')).map(str::trim) {
        let function = Function::parse(text).ok_or_else(|| {
            invalid(format!(
                "query parameter `agg`: {text:?} is not a function; expected a comma-separated \
                 list of count, sum, avg, min, max, first, last, stddev and percentiles pNN \
                 (p50, p99, p99.9)"
            ))
        })?;
        if functions.contains(&function) {
            return Err(invalid(format!(
                "query parameter `agg`: {text} is asked twice; name each function once"
            )));
        }
        functions.push(function);
    }
    let mut by: Vec<String> = Vec::new();
    for key in params
        .all("by")
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        if RESERVED_KEYS.contains(&key) {
            return Err(invalid(format!(
                "query parameter `by`: {key:?} is not a tag key (series are always split by \
                 name; value and ts are not tags); expected tag keys, e.g. by=host,region"
            )));
        }
        if !by.iter().any(|k| k == key) {
            by.push(key.to_owned());
        }
    }
    if by.len() > MAX_BY {
        return Err(invalid(format!(
            "query parameter `by`: {} keys given, at most {MAX_BY} allowed",
            by.len()
        )));
    }
    let fill = match params.one("fill")? {
        None | Some("none") => Fill::None,
        Some("null") => Fill::Null,
        Some("prev") => Fill::Prev,
        Some("linear") => Fill::Linear,
        Some(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Fill::Value)
            .ok_or_else(|| {
                invalid(format!(
                    "query parameter `fill`: {text:?} is not a fill; expected none, null, prev, \
                     linear or a number"
                ))
            })?,
    };
    Ok(Aggregation {
        step_micros: step_secs.saturating_mul(1_000_000),
        offset_micros: offset_secs.saturating_mul(1_000_000),
        functions,
        by,
        fill,
    })
}

/// Whole seconds from `60`, `10s`, `5m`, `1h`, `1d` or `1w`; at most ten years.
fn duration_secs(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 12 {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    n.checked_mul(unit).filter(|s| *s <= 10 * 366 * 86_400)
}

/// A span in words for a message: `3 days 4h` style, roughly.
fn span_words(span_micros: i64) -> String {
    let secs = span_micros / 1_000_000;
    match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s if s >= 120 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

fn fill_text(fill: Fill) -> serde_json::Value {
    match fill {
        Fill::None => json!("none"),
        Fill::Null => json!("null"),
        Fill::Prev => json!("prev"),
        Fill::Linear => json!("linear"),
        Fill::Value(v) => json!(v),
    }
}

/// The answer's body in `format`, one series at a time.
fn body(
    format: Format,
    aggregation: Aggregation,
    series: BoxStream<'static, Result<AggSeries, StoreError>>,
) -> Body {
    let labels: Vec<String> = aggregation.functions.iter().map(Function::label).collect();
    let head = match format {
        Format::Json => format!(
            "{{\"step\":{},\"offset\":{},\"fill\":{},\"series\":[",
            aggregation.step_micros / 1_000_000,
            aggregation.offset_micros / 1_000_000,
            fill_text(aggregation.fill)
        ),
        Format::Ndjson => String::new(),
        Format::Csv => {
            let mut row = String::from("name,ts");
            for key in &aggregation.by {
                row.push(',');
                csv_field(&mut row, key);
            }
            for label in &labels {
                row.push(',');
                row.push_str(label);
            }
            row.push_str(",non_numeric\r\n");
            row
        }
    };
    let tail = match format {
        Format::Json => "]}",
        _ => "",
    };
    let by = aggregation.by.clone();
    let mut first = true;
    let parts = series.map(move |item| match item {
        Ok(series) => {
            let text = match format {
                Format::Json => {
                    let mut text = if first { String::new() } else { ",".into() };
                    json_series(&mut text, &series, &labels);
                    text
                }
                Format::Ndjson => ndjson_series(&series, &labels),
                Format::Csv => csv_series(&series, &by, &labels),
            };
            first = false;
            Ok(Bytes::from(text))
        }
        Err(err) => {
            // Too late for a status: cut the body so the client sees it incomplete.
            tracing::error!(error = %err, "aggregation failed mid-answer");
            Err(std::io::Error::other(err))
        }
    });
    let mut failed = false;
    let parts = parts.take_while(move |part| {
        let go = !failed;
        failed = failed || part.is_err();
        futures::future::ready(go)
    });
    let stream = futures::stream::once(futures::future::ready(Ok(Bytes::from(head))))
        .chain(parts)
        .chain(futures::stream::once(futures::future::ready(Ok(
            Bytes::from_static(tail.as_bytes()),
        ))));
    Body::from_bytes_stream(stream)
}

fn seconds(micros: i64) -> i64 {
    micros.div_euclid(1_000_000)
}

/// A number as JSON text: whole numbers without a fraction (`3`, not `3.0`), `null` for none
/// (and for the infinities an overflowing sum may give, which JSON cannot hold).
fn number(value: Option<f64>) -> String {
    match value {
        Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => format!("{}", v as i64),
        Some(v) if v.is_finite() => json!(v).to_string(),
        _ => "null".to_owned(),
    }
}

fn json_series(out: &mut String, series: &AggSeries, labels: &[String]) {
    out.push_str("{\"name\":");
    out.push_str(&json!(series.name).to_string());
    out.push_str(",\"tags\":");
    out.push_str(&json!(series.tags).to_string());
    out.push_str(&format!(",\"non_numeric\":{}", series.non_numeric));
    out.push_str(",\"ts\":");
    let ts: Vec<i64> = series.starts_micros.iter().map(|&t| seconds(t)).collect();
    out.push_str(&json!(ts).to_string());
    for (label, column) in labels.iter().zip(&series.columns) {
        out.push_str(&format!(",\"{label}\":["));
        for (i, value) in column.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&number(*value));
        }
        out.push(']');
    }
    out.push('}');
}

/// One object per bucket: `name`, `tags`, `ts`, the functions, and `non_numeric` when the
/// bucket had metrics without a number.
fn ndjson_series(series: &AggSeries, labels: &[String]) -> String {
    let mut out = String::new();
    let non_numeric = &series.bucket_non_numeric;
    let head = format!(
        "{{\"name\":{},\"tags\":{}",
        json!(series.name),
        json!(series.tags)
    );
    for (i, start) in series.starts_micros.iter().enumerate() {
        out.push_str(&head);
        out.push_str(&format!(",\"ts\":{}", seconds(*start)));
        for (label, column) in labels.iter().zip(&series.columns) {
            out.push_str(&format!(",\"{label}\":{}", number(column[i])));
        }
        if non_numeric[i] > 0 {
            out.push_str(&format!(",\"non_numeric\":{}", non_numeric[i]));
        }
        out.push_str("}\n");
    }
    out
}

fn csv_series(series: &AggSeries, by: &[String], labels: &[String]) -> String {
    let mut out = String::new();
    let non_numeric = &series.bucket_non_numeric;
    for (i, start) in series.starts_micros.iter().enumerate() {
        csv_field(&mut out, &series.name);
        out.push_str(&format!(",{}", seconds(*start)));
        for key in by {
            out.push(',');
            if let Some(value) = series.tags.get(key) {
                csv_field(&mut out, value);
            }
        }
        for column in series.columns.iter().take(labels.len()) {
            out.push(',');
            if column[i].is_some_and(f64::is_finite) {
                out.push_str(&number(column[i]));
            }
        }
        out.push_str(&format!(",{}\r\n", non_numeric[i]));
    }
    out
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_field(out: &mut String, text: &str) {
    if text.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

fn inline(schema: MetaSchema) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(schema))
}

fn integer() -> MetaSchemaRef {
    let mut s = MetaSchema::new("integer");
    s.format = Some("int64");
    inline(s)
}

/// The schema of the columnar JSON answer (`step` given).
fn aggregate_schema() -> MetaSchemaRef {
    let mut number = MetaSchema::new("number");
    number.nullable = true;
    let mut column = MetaSchema::new("array");
    column.items = Some(Box::new(inline(number)));
    column.description = Some(
        "One column per function asked (`avg`, `p99`, ...), as long as `ts`; null where a \
         bucket has no number or is filled with null.",
    );
    let mut tags = MetaSchema::new("object");
    tags.additional_properties = Some(Box::new(inline(MetaSchema::new("string"))));
    tags.description = Some("The texts of the `by` keys; a key the metrics lack is left out.");
    let mut ts = MetaSchema::new("array");
    ts.items = Some(Box::new(integer()));
    ts.description = Some("The buckets' starts in Unix seconds, ascending.");
    let mut non_numeric = MetaSchema::new("integer");
    non_numeric.format = Some("int64");
    non_numeric.minimum = Some(0.0);
    non_numeric.description = Some(
        "How many of the series' metrics have a value that is not a number: counted by \
         `count`, skipped by every other function.",
    );
    let mut series = MetaSchema::new("object");
    series.properties = vec![
        ("name", inline(MetaSchema::new("string"))),
        ("tags", inline(tags)),
        ("non_numeric", inline(non_numeric)),
        ("ts", inline(ts)),
    ];
    series.required = vec!["name", "tags", "non_numeric", "ts"];
    series.additional_properties = Some(Box::new(inline(column)));
    let mut series_list = MetaSchema::new("array");
    series_list.items = Some(Box::new(inline(series)));
    let mut fill = MetaSchema::new("");
    fill.one_of = vec![
        inline(MetaSchema::new("string")),
        inline(MetaSchema::new("number")),
    ];
    let mut answer = MetaSchema::new("object");
    answer.description = Some(
        "With `step`: one series per name and values of the `by` keys, columnar (see the \
         Aggregation section of docs/api.md).",
    );
    answer.properties = vec![
        ("step", integer()),
        ("offset", integer()),
        ("fill", inline(fill)),
        ("series", inline(series_list)),
    ];
    answer.required = vec!["step", "offset", "fill", "series"];
    answer.example = Some(json!({
        "step": 60, "offset": 0, "fill": "none",
        "series": [{ "name": "cpu", "tags": { "host": "web-1" }, "non_numeric": 0,
                     "ts": [1767225600, 1767225660], "avg": [0.41, 0.38], "p99": [0.9, 0.7] }]
    }));
    inline(answer)
}

/// The JSON answer of `GET /v1/metrics`: the array of metrics, or with `step` the aggregate.
pub(crate) fn json_answer_schema(metrics: MetaSchemaRef) -> MetaSchemaRef {
    let mut s = MetaSchema::new("");
    s.one_of = vec![metrics, aggregate_schema()];
    inline(s)
}

// The aggregation parameters carry no `example`: Swagger UI's "Try it out" fills in every
// example, and a raw query's `limit`/`cursor`/`columns` examples do not go with `step`.
declared_param!(
    /// `step`: a bucket width.
    StepParam,
    || {
        let mut s = MetaSchema::new("string");
        // Narrower than the server (which takes up to ten years in any unit, leading zeros too), so
        // that every value the pattern allows is accepted: not zero, and within ten years.
        s.pattern = Some(r"^([1-9][0-9]{0,7}s?|[1-9][0-9]{0,5}m|[1-9][0-9]{0,3}h|[1-9][0-9]{0,2}d|[1-9][0-9]?w)$".to_owned());
        MetaSchemaRef::Inline(Box::new(s))
    }
);

declared_param!(
    /// `agg`: comma-separated functions.
    AggParam,
    || {
        let function =
            r"(count|sum|avg|min|max|first|last|stddev|p(100(\.0{1,4})?|[0-9]{1,2}(\.[0-9]{1,4})?))";
        let mut s = MetaSchema::new("string");
        s.pattern = Some(format!("^{function}(,{function})*$"));
        MetaSchemaRef::Inline(Box::new(s))
    }
);

declared_param!(
    /// `by`: comma-separated tag keys.
    ByParam,
    || MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
);

declared_param!(
    /// `offset`: the grid's shift from the epoch.
    OffsetParam,
    || {
        let mut s = MetaSchema::new("string");
        s.pattern = Some(r"^-?(0[smhdw]?|[1-9][0-9]{0,7}s?|[1-9][0-9]{0,5}m|[1-9][0-9]{0,3}h|[1-9][0-9]{0,2}d|[1-9][0-9]?w)$".to_owned());
        MetaSchemaRef::Inline(Box::new(s))
    }
);

declared_param!(
    /// `fill`: what empty buckets become.
    FillParam,
    || {
        let mut named = MetaSchema::new("string");
        named.enum_items = vec![json!("none"), json!("null"), json!("prev"), json!("linear")];
        let mut number = MetaSchema::new("string");
        number.pattern = Some(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$".to_owned());
        let mut s = MetaSchema::new("string");
        s.any_of = vec![
            MetaSchemaRef::Inline(Box::new(named)),
            MetaSchemaRef::Inline(Box::new(number)),
        ];
        // No `default`: Swagger UI's "Try it out" sends a declared default, and `fill` without
        // `step` is refused. The description says `none` is what an absent `fill` means.
        MetaSchemaRef::Inline(Box::new(s))
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn read(query: &str) -> Result<Aggregation, String> {
        let req = Request::builder()
            .uri(format!("/v1/metrics?{query}").parse().unwrap())
            .finish();
        let params = Params::read(
            &req,
            &[
                "step", "agg", "by", "offset", "fill", "limit", "order", "cursor", "format",
                "columns",
            ],
        )
        .map_err(|e| e.to_string())?;
        aggregation(&params).map_err(|e| e.to_string())
    }

    #[test]
    fn parameters_are_read_strictly() {
        let a = read("step=5m&agg=avg,p99.9&agg=count&by=host,dc&by=host&offset=-1h&fill=prev")
            .unwrap();
        assert_eq!(a.step_micros, 300_000_000);
        assert_eq!(a.offset_micros, -3_600_000_000);
        assert_eq!(
            a.functions.iter().map(Function::label).collect::<Vec<_>>(),
            ["avg", "p99.9", "count"]
        );
        assert_eq!(a.by, ["host", "dc"]);
        assert_eq!(a.fill, Fill::Prev);
        let a = read("step=90").unwrap();
        assert_eq!(a.step_micros, 90_000_000);
        assert_eq!(a.functions, [Function::Avg]);
        assert_eq!(a.fill, Fill::None);
        assert_eq!(read("step=1d&fill=-2.5").unwrap().fill, Fill::Value(-2.5));

        for (query, names) in [
            ("step=0", "`step`"),
            ("step=1y", "`step`"),
            ("step=1.5m", "`step`"),
            ("step=5m&agg=median", "`agg`"),
            ("step=5m&agg=avg,avg", "`agg`"),
            ("step=5m&fill=zero", "`fill`"),
            ("step=5m&fill=NaN", "`fill`"),
            ("step=5m&offset=x", "`offset`"),
            ("step=5m&by=value", "`by`"),
            ("step=5m&limit=3", "`limit`"),
            ("step=5m&cursor=abc", "`cursor`"),
            ("agg=avg", "`agg`"),
            ("fill=null", "`fill`"),
            ("step=1m&step=2m", "`step`"),
        ] {
            let err = read(query).expect_err(query);
            assert!(err.contains(names), "{query}: {err}");
        }
        assert!(read("agg=avg").unwrap_err().contains("needs `step`"));
    }
}
