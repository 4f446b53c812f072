//! Each protocol's bytes, built here, against the real server: what is stored, the answers,
//! errors, auth, the body limit and the live fan-out.

use std::io::Write;

use futures::StreamExt;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message as _;
use serde_json::{json, Value};
use tokio_tungstenite::{connect_async, tungstenite::Message};

use crate::common::{query, start_with_auth, token, Backend, TestDb, TestServer, ADMIN};

crate::on_both_backends!(
    line_protocol_v1_and_v2_store_one_metric_per_field,
    a_bad_line_is_a_400_naming_it_and_stores_nothing,
    remote_write_samples_arrive_and_stale_markers_are_skipped,
    otlp_json_and_protobuf_get_answers_in_their_own_encoding,
    a_subscriber_sees_an_otlp_point_like_a_posted_one,
    tokens_scopes_and_prefixes_hold_on_every_protocol,
    the_body_limit_holds_on_every_protocol,
    get_metrics_serves_the_servers_own_metrics,
);

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The stored documents, as text, without the order of keys changing.
async fn raw(server: &TestServer, name: &str) -> String {
    server
        .http
        .get(server.url("/v1/metrics"))
        .query(&[("name", name)])
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn line_protocol_v1_and_v2_store_one_metric_per_field(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = start_with_auth(&db).await;
    // InfluxDB 2, gzip, seconds, the token as `Authorization: Token`.
    let body = "weather,location=us-midwest,season=summer temperature=82,humidity=71i 1465839830\n\
                weather,location=us-east value=\"sunny\",ok=true 1465839831\n";
    let response = server
        .http
        .post(server.url("/api/v2/write?org=o&bucket=b1&precision=s"))
        .header("authorization", format!("Token {ADMIN}"))
        .header("content-type", "text/plain; charset=utf-8")
        .header("content-encoding", "gzip")
        .body(gzip(body.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());
    assert_eq!(
        raw(&server, "weather.temperature").await,
        r#"[{"name":"weather.temperature","value":82.0,"ts":"2016-06-13T17:43:50Z","db":"b1","location":"us-midwest","season":"summer"}]"#
    );
    assert_eq!(
        raw(&server, "weather.humidity").await,
        r#"[{"name":"weather.humidity","value":71,"ts":"2016-06-13T17:43:50Z","db":"b1","location":"us-midwest","season":"summer"}]"#
    );
    assert_eq!(
        raw(&server, "weather").await,
        r#"[{"name":"weather","value":"sunny","ts":"2016-06-13T17:43:51Z","db":"b1","location":"us-east"}]"#
    );
    assert_eq!(query(&server, "weather.ok").await[0]["value"], json!(true));

    // InfluxDB 1, milliseconds, the token as `?p=`.
    let response = server
        .http
        .post(server.url(&format!("/write?db=telegraf&precision=ms&u=any&p={ADMIN}")))
        .body("cpu,host=a usage_idle=99.5 1465839830100")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());
    assert_eq!(
        raw(&server, "cpu.usage_idle").await,
        r#"[{"name":"cpu.usage_idle","value":99.5,"ts":"2016-06-13T17:43:50.100Z","db":"telegraf","host":"a"}]"#
    );
}

async fn a_bad_line_is_a_400_naming_it_and_stores_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let post = |path: &'static str, body: &'static str| {
        server.http.post(server.url(path)).body(body).send()
    };
    let response = post("/api/v2/write?bucket=b", "m v=1 1\nm v=oops 2\nm v=3 3\n")
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "invalid_body");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("line 2: invalid line protocol"),
        "{message}"
    );
    assert!(
        message.contains("`m v=oops 2`") && message.contains("nothing of the request was stored"),
        "{message}"
    );
    assert!(query(&server, "m.v").await.is_empty());

    let response = post("/write?precision=d", "m v=1 1").await.unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "invalid_param", "{error}");

    // A page's cross-site text/plain POST is refused.
    let response = server
        .http
        .post(server.url("/write"))
        .header("origin", "https://evil.example")
        .body("m v=1 1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(query(&server, "m.v").await.is_empty());
    // Only POST: a 405 says so in the one JSON shape.
    let response = server
        .http
        .get(server.url("/api/v2/write"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "method_not_allowed");
}

use metrics_types::remote_write::{Label, Sample, TimeSeries, WriteRequest};

fn remote_write_body(request: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap()
}

async fn post_remote_write(server: &TestServer, body: Vec<u8>) -> reqwest::Response {
    server
        .http
        .post(server.url("/api/v1/write"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn remote_write_samples_arrive_and_stale_markers_are_skipped(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    let request = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                label("__name__", "http_requests_total"),
                label("instance", "localhost:9090"),
                label("job", "prometheus"),
            ],
            samples: vec![
                Sample {
                    value: 1027.0,
                    timestamp: 1_700_000_000_123,
                },
                Sample {
                    value: f64::from_bits(0x7ff0_0000_0000_0002),
                    timestamp: 1_700_000_015_123,
                },
            ],
        }],
    };
    let response = post_remote_write(&server, remote_write_body(&request)).await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        raw(&server, "http_requests_total").await,
        r#"[{"name":"http_requests_total","value":1027.0,"ts":"2023-11-14T22:13:20.123Z","instance":"localhost:9090","job":"prometheus"}]"#
    );
    // Not Snappy, not a WriteRequest, no name: 400 (not retried), nothing stored.
    for body in [
        b"\x05plain".to_vec(),
        snap::raw::Encoder::new().compress_vec(b"\xff\xff").unwrap(),
    ] {
        let response = post_remote_write(&server, body).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "invalid_body");
    }
    let nameless = WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: vec![label("__name__", "ok_series")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
            },
            TimeSeries {
                labels: vec![label("job", "x")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
            },
        ],
    };
    let response = post_remote_write(&server, remote_write_body(&nameless)).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"].as_str().unwrap().contains("no `__name__`"),
        "{error}"
    );
    assert!(query(&server, "ok_series").await.is_empty());
}

const OTLP_JSON: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
  "scopeMetrics":[{"scope":{"name":"lib"},"metrics":[
    {"name":"otlp.gauge","gauge":{"dataPoints":[{"asDouble":0.5,"timeUnixNano":"1700000000000000000","attributes":[{"key":"host","value":{"stringValue":"web-1"}}]}]}},
    {"name":"otlp.sum","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"7","timeUnixNano":"1700000000000000000"}]}}
  ]}]}]}"#;

async fn otlp_json_and_protobuf_get_answers_in_their_own_encoding(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let response = server
        .http
        .post(server.url("/otlp/v1/metrics"))
        .header("content-type", "application/json")
        .body(OTLP_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), "{}");
    assert_eq!(
        raw(&server, "otlp.gauge").await,
        r#"[{"name":"otlp.gauge","value":0.5,"ts":"2023-11-14T22:13:20Z","service.name":"svc","host":"web-1"}]"#
    );
    assert_eq!(query(&server, "otlp.sum").await[0]["value"], json!(7));

    // Protobuf on /v1/metrics (an exporter pointed at the root), gzip-compressed; one of the two
    // data points has no value: partial success.
    let request: opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest =
        serde_json::from_str(
            &OTLP_JSON
                .replace(r#""asInt":"7","#, "")
                .replace("otlp.", "pb."),
        )
        .unwrap();
    let response = server
        .http
        .post(server.url("/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(gzip(&request.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let answer = ExportMetricsServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 1);
    assert!(
        partial
            .error_message
            .contains("\"pb.sum\": a data point without a value"),
        "{}",
        partial.error_message
    );
    assert_eq!(query(&server, "pb.gauge").await.len(), 1);

    // The same partial success in JSON.
    let response = server
        .http
        .post(server.url("/otlp/v1/metrics"))
        .header("content-type", "application/json")
        .body(OTLP_JSON.replace(r#""asInt":"7","#, ""))
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["partialSuccess"]["rejectedDataPoints"], "1",
        "{answer}"
    );

    // Errors: a google.rpc.Status in the request's encoding.
    let response = server
        .http
        .post(server.url("/otlp/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .body(&b"\xff\xff\xff"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = response.bytes().await.unwrap();
    // Field 1 (code) = 3, INVALID_ARGUMENT; then the message.
    assert_eq!(&body[..2], b"\x08\x03");
    assert!(String::from_utf8_lossy(&body).contains("not an OTLP ExportMetricsServiceRequest"));
    let response = server
        .http
        .post(server.url("/otlp/v1/metrics"))
        .header("content-type", "application/json")
        .body(r#"{"resourceMetrics": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["code"], 3, "{status}");
    // Neither protobuf nor JSON: 415 in our JSON shape.
    let response = server
        .http
        .post(server.url("/otlp/v1/metrics"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // JSON on /v1/metrics is still our API.
    assert_eq!(
        server
            .post(r#"{"name":"j","value":1,"ts":"2016-01-01"}"#)
            .await
            .0,
        200
    );
}

async fn a_subscriber_sees_an_otlp_point_like_a_posted_one(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    let (mut socket, _) = connect_async(server.ws_url("/v1/ws")).await.unwrap();
    let mut next = async || loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Text(text) => return text.to_string(),
            _ => continue,
        }
    };
    let response = server
        .http
        .post(server.url("/otlp/v1/metrics"))
        .header("content-type", "application/json")
        .body(OTLP_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let from_otlp = next().await;
    let _sum = next().await;
    // The same metric posted as JSON, as a user would write it.
    let posted = r#"{"name":"otlp.gauge","value":0.5,"ts":"2023-11-14T22:13:20Z","service.name":"svc","host":"web-1"}"#;
    assert_eq!(server.post(posted).await.0, 200);
    assert_eq!(from_otlp, next().await);
    assert_eq!(from_otlp, posted);
}

async fn tokens_scopes_and_prefixes_hold_on_every_protocol(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = start_with_auth(&db).await;
    let writer = token(&server, &["write"], &["app"]).await;
    let reader = token(&server, &["read"], &[]).await;
    let send = |path: &str, token: Option<&str>, body: &'static str| {
        let mut request = server.http.post(server.url(path)).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(
        send("/api/v2/write", None, "app v=1 1")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        send("/api/v2/write", Some(&reader), "app v=1 1")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        send("/api/v2/write", Some(&writer), "app v=1 1")
            .await
            .unwrap()
            .status(),
        204
    );
    // One name outside the prefixes refuses the whole request.
    let response = send("/api/v2/write", Some(&writer), "app v=2 2\nother v=1 1")
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"].as_str().unwrap().contains("\"other.v\""),
        "{error}"
    );
    assert_eq!(query(&server, "app.v").await.len(), 1);
    // InfluxDB 1's ?p= and Basic u:p carry the token too.
    let response = server
        .http
        .post(server.url(&format!("/write?u=me&p={writer}")))
        .body("app v=3 3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = server
        .http
        .post(server.url("/write"))
        .basic_auth("me", Some(&writer))
        .body("app v=4 4")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    // OTLP: the scope is checked before the handler (JSON error); the prefix by the handler,
    // which answers with a Status.
    let response = server
        .http
        .post(server.url("/otlp/v1/metrics"))
        .bearer_auth(&reader)
        .header("content-type", "application/json")
        .body(OTLP_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = server
        .http
        .post(server.url("/otlp/v1/metrics"))
        .bearer_auth(&writer)
        .header("content-type", "application/json")
        .body(OTLP_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["code"], 7, "{status}");
    assert!(query(&server, "otlp.gauge").await.is_empty());
}

async fn the_body_limit_holds_on_every_protocol(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.body_limit = 1000;
    let server = TestServer::start_with(config).await;
    let lines: String = (0..200).map(|i| format!("m v={i} {i}\n")).collect();
    let response = server
        .http
        .post(server.url("/api/v2/write"))
        .body(lines.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // Compressed under the limit, over it once decompressed.
    let response = server
        .http
        .post(server.url("/write"))
        .header("content-encoding", "gzip")
        .body(gzip(lines.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let series = TimeSeries {
        labels: vec![Label {
            name: "__name__".into(),
            value: "x".repeat(2000),
        }],
        samples: vec![],
    };
    let body = remote_write_body(&WriteRequest {
        timeseries: vec![series],
    });
    assert!(body.len() < 1000);
    assert_eq!(post_remote_write(&server, body).await.status(), 413);
    assert!(query(&server, "m.v").await.is_empty());
}

async fn get_metrics_serves_the_servers_own_metrics(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    assert_eq!(server.post(r#"[{"name":"a","value":1,"ts":"2016-01-01"},{"name":"a","value":2,"ts":"2016-01-01"}]"#).await.0, 200);
    let response = server
        .http
        .post(server.url("/write"))
        .body("m v=1 1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (_socket, _) = connect_async(server.ws_url("/v1/ws")).await.unwrap();
    let response = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    for line in [
        "metrics_rows_stored_total 3",
        "metrics_http_requests_total{route=\"/v1/metrics\",method=\"POST\",status=\"200\"} 1",
        "metrics_http_requests_total{route=\"/write\",method=\"POST\",status=\"204\"} 1",
        "metrics_live_subscribers 1",
        "metrics_writer_queue_depth 0",
        "metrics_commit_failures_total 0",
        "# TYPE metrics_commit_rows histogram",
        "# TYPE metrics_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}
