//! The answer of `GET /v1/metrics` in its three formats: a JSON array, NDJSON (one object per
//! line) or CSV (a header row `name,ts,value[,columns...]`), chosen by `format=` or `Accept`,
//! with the `Link` header of the next page.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::{stream, Stream, StreamExt};
use poem::{http::header, Body, IntoResponse, Request, Response};
use poem_openapi::{
    registry::{
        MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
    },
    ApiResponse,
};
use serde_json::value::RawValue;

use super::{error::ApiError, params::invalid, schema};
use crate::store::StoreError;

/// The format of a raw query's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// A JSON array of the objects as posted.
    Json,
    /// One object per line.
    Ndjson,
    /// A header row, then one row per metric.
    Csv,
}

impl Format {
    const JSON: &'static str = "application/json; charset=utf-8";
    const NDJSON: &'static str = "application/x-ndjson; charset=utf-8";
    const CSV: &'static str = "text/csv; charset=utf-8; header=present";

    /// The format `format=` asks for, else the one `Accept` prefers (JSON when it names none
    /// of ours).
    pub(crate) fn choose(param: Option<&str>, req: &Request) -> Result<Format, ApiError> {
        match param {
            Some("json") => Ok(Format::Json),
            Some("ndjson") => Ok(Format::Ndjson),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(invalid(format!(
                "query parameter `format`: {other:?} is not a format; expected json, ndjson or csv"
            ))),
            None => Ok(req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .map_or(Format::Json, Format::negotiate)),
        }
    }

    /// The supported type with the highest `q` in an `Accept` header (the first on ties).
    fn negotiate(accept: &str) -> Format {
        let mut best: Option<(f32, Format)> = None;
        for item in accept.split(',') {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let format = match media.as_str() {
                "application/json" | "application/*" | "*/*" => Format::Json,
                "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                    Format::Ndjson
                }
                "text/csv" | "text/*" => Format::Csv,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Json, |(_, f)| f)
    }

    /// The separator the store joins documents with for this format.
    pub(crate) fn separator(self) -> char {
        match self {
            Format::Json => ',',
            Format::Ndjson | Format::Csv => '\n',
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => Format::JSON,
            Format::Ndjson => Format::NDJSON,
            Format::Csv => Format::CSV,
        }
    }
}

/// The body of an answer, from chunks of documents joined by [`Format::separator`].
pub(crate) fn body(
    format: Format,
    columns: Vec<String>,
    chunks: impl Stream<Item = Result<String, StoreError>> + Send + 'static,
) -> Body {
    let framed = stream::unfold(
        (chunks.boxed(), false, false),
        move |(mut chunks, started, done)| {
            let columns = columns.clone();
            async move {
                if done {
                    return None;
                }
                let out = match chunks.next().await {
                    None => {
                        let tail = match format {
                            Format::Json if started => "]",
                            Format::Json => "[]",
                            Format::Csv if !started => {
                                return Some((
                                    Ok(Bytes::from(csv_header(&columns))),
                                    (chunks, true, true),
                                ))
                            }
                            _ => "",
                        };
                        return Some((
                            Ok(Bytes::from_static(tail.as_bytes())),
                            (chunks, started, true),
                        ));
                    }
                    Some(Ok(chunk)) if chunk.is_empty() => String::new(),
                    Some(Ok(chunk)) => match format {
                        Format::Json => {
                            let mut buf = String::with_capacity(chunk.len() + 1);
                            buf.push(if started { ',' } else { '[' });
                            buf.push_str(&chunk);
                            buf
                        }
                        Format::Ndjson => chunk + "\n",
                        Format::Csv => {
                            let mut buf = if started {
                                String::new()
                            } else {
                                csv_header(&columns)
                            };
                            for doc in chunk.split('\n') {
                                csv_row(&mut buf, doc, &columns);
                            }
                            buf
                        }
                    },
                    Some(Err(err)) => {
                        // Too late for a status: cut the body so the client sees it incomplete.
                        tracing::error!(error = %err, "query stream failed mid-answer");
                        return Some((Err(std::io::Error::other(err)), (chunks, started, true)));
                    }
                };
                let started = started || !out.is_empty();
                Some((Ok(Bytes::from(out)), (chunks, started, false)))
            }
        },
    );
    Body::from_bytes_stream(framed)
}

fn csv_header(columns: &[String]) -> String {
    let mut row = String::from("name,ts,value");
    for column in columns {
        row.push(',');
        csv_field(&mut row, column);
    }
    row.push_str("\r\n");
    row
}

/// One CSV row of a stored document: `name`, `ts`, `value`, then the requested columns (empty
/// when the metric lacks the key). Strings are written as their content, other values as their
/// JSON text, `null` as nothing.
fn csv_row(out: &mut String, doc: &str, columns: &[String]) {
    let Ok(object) = serde_json::from_str::<BTreeMap<String, &RawValue>>(doc) else {
        tracing::error!("a stored document is not a JSON object; left out of a CSV answer");
        return;
    };
    let mut first = true;
    for key in ["name", "ts", "value"]
        .into_iter()
        .chain(columns.iter().map(String::as_str))
    {
        if !first {
            out.push(',');
        }
        first = false;
        if let Some(raw) = object.get(key) {
            csv_field(out, &crate::selection::tag_text(raw));
        }
    }
    out.push_str("\r\n");
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

/// A raw query's answer: the body in its format and the `Link` of the next page, if any.
pub(crate) struct MetricsAnswer {
    pub(crate) format: Format,
    pub(crate) body: Body,
    pub(crate) link: Option<String>,
}

impl IntoResponse for MetricsAnswer {
    fn into_response(self) -> Response {
        let mut builder = Response::builder()
            .content_type(self.format.content_type())
            .header(header::VARY, "Accept");
        if let Some(link) = self.link {
            builder = builder.header(header::LINK, link);
        }
        builder.body(self.body)
    }
}

impl ApiResponse for MetricsAnswer {
    fn meta() -> MetaResponses {
        let mut csv = MetaSchema::new("string");
        csv.description = Some(
            "CSV (RFC 4180, CRLF line ends): a header row `name,ts,value` plus the `columns` \
             asked for, then one row per metric; strings as their content, other values as \
             their JSON text, a missing key as an empty field.",
        );
        let mut ndjson = MetaSchema::new("string");
        ndjson.description = Some("One metric object per line, as posted.");
        let mut link = MetaSchema::new("string");
        link.example = Some(serde_json::json!(
            "</v1/metrics?name=cpu&limit=100&cursor=djE6MTcwMDAwMDAwMDAwMDAwMDo0Mg>; rel=\"next\""
        ));
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The matching metrics, as posted, ordered by `ts` then storage order \
                              (or newest first with `order=desc`).",
                status: Some(200),
                status_range: None,
                content: vec![
                    MetaMediaType {
                        content_type: Format::JSON,
                        schema: schema::metric_array(),
                    },
                    MetaMediaType {
                        content_type: Format::NDJSON,
                        schema: MetaSchemaRef::Inline(Box::new(ndjson)),
                    },
                    MetaMediaType {
                        content_type: Format::CSV,
                        schema: MetaSchemaRef::Inline(Box::new(csv)),
                    },
                ],
                headers: vec![MetaHeader {
                    name: "Link".to_owned(),
                    description: Some(
                        "Present when `limit` metrics were returned: the URL of the next page \
                         (the same parameters plus `cursor`), `rel=\"next\"`."
                            .to_owned(),
                    ),
                    required: false,
                    deprecated: false,
                    schema: MetaSchemaRef::Inline(Box::new(link)),
                }],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        schema::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(accept: &str) -> Format {
        let req = Request::builder().header(header::ACCEPT, accept).finish();
        Format::choose(None, &req).unwrap()
    }

    #[test]
    fn accept_picks_the_preferred_supported_type() {
        assert_eq!(format("text/csv"), Format::Csv);
        assert_eq!(format("application/x-ndjson"), Format::Ndjson);
        assert_eq!(
            format("text/html, text/csv;q=0.5, application/json;q=0.9"),
            Format::Json
        );
        assert_eq!(format("image/png"), Format::Json);
        assert_eq!(format("text/csv;q=0, */*"), Format::Json);
        assert_eq!(format("application/x-ndjson, text/csv"), Format::Ndjson);
        let req = Request::builder()
            .header(header::ACCEPT, "text/csv")
            .finish();
        assert_eq!(
            Format::choose(Some("ndjson"), &req).unwrap(),
            Format::Ndjson
        );
        let err = Format::choose(Some("xml"), &req).unwrap_err();
        assert!(err.to_string().contains("`format`"), "{err}");
    }

    #[test]
    fn csv_rows_quote_what_needs_it() {
        let mut out = csv_header(&["host".into(), "note".into()]);
        csv_row(
            &mut out,
            r#"{"name":"cpu","value":0.5,"ts":"2016-01-01","host":"web-1","note":"a,\"b\"\nc"}"#,
            &["host".into(), "note".into()],
        );
        csv_row(
            &mut out,
            r#"{"name":"m","value":true,"ts":1700000000}"#,
            &["host".into(), "note".into()],
        );
        assert_eq!(
            out,
            "name,ts,value,host,note\r\ncpu,2016-01-01,0.5,web-1,\"a,\"\"b\"\"\nc\"\r\nm,1700000000,true,,\r\n"
        );
    }
}
