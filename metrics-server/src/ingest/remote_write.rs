//! Prometheus remote write 1.0: a protobuf `WriteRequest` compressed with Snappy's block format.
//!
//! Each sample of each series becomes one metric (docs/integrations.md): `__name__` is the name,
//! every other label an extra key (a string), the value a JSON number, and the millisecond
//! timestamp RFC 3339 text. JSON has no NaN or infinity, so a sample that is not a finite number
//! is skipped: Prometheus's stale markers (the NaN `0x7ff0000000000002`, which says a series
//! ended) and any other NaN or infinity. Native histograms, exemplars and metadata are ignored.
//! Anything else that cannot be stored refuses the whole request, as the spec asks (a 400, which
//! the sender does not retry).

use prost::Message;

use super::points::{Labels, Point, PointValue};
use crate::store::NewMetric;

/// The bit pattern of Prometheus's stale marker.
#[cfg(test)]
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

use metrics_types::remote_write::WriteRequest;

/// What a request held: the metrics to store, and how many samples were skipped.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The metrics, series by series.
    pub(crate) metrics: Vec<NewMetric>,
    /// Samples that were not finite numbers (stale markers among them).
    pub(crate) skipped: usize,
}

/// Decompresses (Snappy block format) and decodes a request body; `limit` bounds the
/// decompressed size. The error is the message of a 400 (or says the body is too large).
pub(crate) fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let len = snap::raw::decompress_len(body).map_err(|err| {
        DecodeError::Invalid(format!(
            "the body is not Snappy block-format data ({err}); remote write sends \
             `Content-Encoding: snappy` with the block format, not the framed one"
        ))
    })?;
    if len > limit {
        return Err(DecodeError::TooLarge(len));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|err| DecodeError::Invalid(format!("the body is not valid Snappy data: {err}")))
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// A 400 with this message.
    Invalid(String),
    /// Decompressed, the body would be this many bytes: over the limit.
    TooLarge(usize),
}

/// Reads a decompressed `WriteRequest` into metrics.
pub(crate) fn decode(protobuf: &[u8]) -> Result<Decoded, String> {
    let request = WriteRequest::decode(protobuf)
        .map_err(|err| format!("the body is not a remote write WriteRequest: {err}"))?;
    let samples = request.timeseries.iter().map(|s| s.samples.len()).sum();
    let mut metrics = Vec::with_capacity(samples);
    let mut skipped = 0;
    for (index, series) in request.timeseries.iter().enumerate() {
        let mut name = None;
        let mut labels = Labels::default();
        for label in &series.labels {
            if label.name == "__name__" {
                name = Some(label.value.as_str());
            } else {
                labels.insert_str(&label.name, &label.value);
            }
        }
        let describe = || {
            let labels: Vec<String> = series
                .labels
                .iter()
                .map(|l| format!("{}={:?}", l.name, l.value))
                .collect();
            format!("series {index} {{{}}}", labels.join(", "))
        };
        let name = name.ok_or_else(|| format!("{} has no `__name__` label", describe()))?;
        for sample in &series.samples {
            if !sample.value.is_finite() {
                skipped += 1;
                continue;
            }
            let point = Point {
                name: name.to_owned(),
                value: PointValue::F64(sample.value),
                ts_nanos: i128::from(sample.timestamp) * 1_000_000,
                labels: labels.clone(),
            };
            let metric = point.into_metric().map_err(|err| {
                format!(
                    "{}, sample at {} ms: {}; nothing of the request was stored",
                    describe(),
                    sample.timestamp,
                    err.into_message()
                )
            })?;
            metrics.push(metric);
        }
    }
    Ok(Decoded { metrics, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_types::remote_write::{Label, Sample, TimeSeries};

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(value, timestamp)| Sample { value, timestamp })
                .collect(),
        }
    }

    fn round_trip(request: &WriteRequest) -> Result<Decoded, String> {
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap();
        decode(&decompress(&body, 1 << 20).unwrap())
    }

    /// The spec's example series (`remote_write_spec.md`): labels sorted, `__name__` first.
    #[test]
    fn series_become_metrics_with_labels_as_keys() {
        let request = WriteRequest {
            timeseries: vec![
                series(
                    &[
                        ("__name__", "http_requests_total"),
                        ("instance", "localhost:9090"),
                        ("job", "prometheus"),
                        ("name", "k8s-name"),
                    ],
                    &[(1027.0, 1_700_000_000_123), (1028.5, 1_700_000_015_123)],
                ),
                series(
                    &[("__name__", "up"), ("job", "node")],
                    &[(f64::from_bits(STALE_NAN), 1_700_000_000_000), (1.0, 0)],
                ),
            ],
        };
        let decoded = round_trip(&request).unwrap();
        let docs: Vec<&str> = decoded.metrics.iter().map(|m| m.doc.as_str()).collect();
        assert_eq!(
            docs,
            [
                r#"{"name":"http_requests_total","value":1027.0,"ts":"2023-11-14T22:13:20.123Z","instance":"localhost:9090","job":"prometheus","_name":"k8s-name"}"#,
                r#"{"name":"http_requests_total","value":1028.5,"ts":"2023-11-14T22:13:35.123Z","instance":"localhost:9090","job":"prometheus","_name":"k8s-name"}"#,
                r#"{"name":"up","value":1.0,"ts":"1970-01-01T00:00:00Z","job":"node"}"#,
            ]
        );
        assert_eq!(decoded.skipped, 1);
    }

    #[test]
    fn nan_and_infinity_are_skipped() {
        let request = WriteRequest {
            timeseries: vec![series(
                &[("__name__", "g")],
                &[
                    (f64::NAN, 1),
                    (f64::INFINITY, 2),
                    (f64::NEG_INFINITY, 3),
                    (-0.5, 4),
                ],
            )],
        };
        let decoded = round_trip(&request).unwrap();
        assert_eq!((decoded.metrics.len(), decoded.skipped), (1, 3));
        assert_eq!(decoded.metrics[0].value, Some(-0.5));
    }

    #[test]
    fn what_cannot_be_stored_refuses_the_request() {
        let nameless = WriteRequest {
            timeseries: vec![series(&[("job", "x")], &[(1.0, 1)])],
        };
        let err = round_trip(&nameless).unwrap_err();
        assert!(
            err.contains("series 0 {job=\"x\"} has no `__name__`"),
            "{err}"
        );
        let far = WriteRequest {
            timeseries: vec![series(&[("__name__", "m")], &[(1.0, i64::MAX)])],
        };
        let err = round_trip(&far).unwrap_err();
        assert!(err.contains("outside the years"), "{err}");
        assert!(decode(b"\xff\xff\xff")
            .unwrap_err()
            .contains("not a remote write"));
        assert!(matches!(
            decompress(b"not snappy at all \xff\xff\xff\xff\xff", 1000),
            Err(DecodeError::Invalid(_))
        ));
        let big = snap::raw::Encoder::new()
            .compress_vec(&[0u8; 1000])
            .unwrap();
        assert_eq!(decompress(&big, 999), Err(DecodeError::TooLarge(1000)));
    }
}
