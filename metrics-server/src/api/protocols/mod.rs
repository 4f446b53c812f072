//! The write routes of other protocols, for the agents people already run (docs/integrations.md):
//!
//! | file | routes |
//! | --- | --- |
//! | `influx.rs` | `POST /write` (InfluxDB 1), `POST /api/v2/write` (InfluxDB 2): line protocol |
//! | `prom_write.rs` | `POST /api/v1/write`: Prometheus remote write 1.0 |
//! | `otlp.rs` | `POST /otlp/v1/metrics`, and `POST /v1/metrics` with a protobuf body: OTLP/HTTP |
//!
//! Each reads its body under the same size limit as `POST /v1/metrics` (gzip allowed, the limit
//! applying to the decompressed body too), turns it into the metrics a user would post (through
//! `ingest::parse`, see `ingest::points`) and stores them through the same group-commit writer,
//! so validation, limits, a token's name prefixes, `Idempotency-Key` and the live fan-out are
//! the same. These routes are not in the OpenAPI spec: their protocols have specs of their own.

mod influx;
mod otlp;
mod prom_write;

use metrics_types::ErrorCode;
use poem::{
    http::{header, Method, StatusCode},
    Body, Endpoint, EndpointExt, Request, Route,
};

pub(super) use self::otlp::is_otlp_protobuf;
use super::{body, error::ApiError};
use crate::{store::NewMetric, AppState};

/// Every route of this module and its method, for the `Allow` header of a 405.
pub(super) const ROUTES: [&str; 4] = ["/write", "/api/v2/write", "/api/v1/write", OTLP_PATH];

/// Where OTLP/HTTP exporters send metrics (`OTEL_EXPORTER_OTLP_ENDPOINT=http://host:port/otlp`).
pub(super) const OTLP_PATH: &str = "/otlp/v1/metrics";

/// The methods each route of [`ROUTES`] accepts.
pub(super) fn methods() -> impl Iterator<Item = (String, Vec<Method>)> {
    ROUTES
        .iter()
        .map(|path| ((*path).to_owned(), vec![Method::POST]))
}

/// Adds the routes to `route`.
pub(super) fn mount(route: Route, state: &AppState) -> Route {
    route
        .at("/write", poem::post(influx::write_v1).data(state.clone()))
        .at(
            "/api/v2/write",
            poem::post(influx::write_v2).data(state.clone()),
        )
        .at(
            "/api/v1/write",
            poem::post(prom_write::write).data(state.clone()),
        )
        .at(OTLP_PATH, poem::post(otlp::export).data(state.clone()))
}

/// `POST /v1/metrics` with a protobuf body is OTLP: the JSON API never receives one.
pub(super) async fn otlp_on_v1(state: &AppState, req: Request) -> poem::Result<poem::Response> {
    otlp::export.data(state.clone()).call(req).await
}

/// The encodings a route accepts besides identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Snappy,
}

/// The request's `Content-Encoding`: identity or gzip, and snappy where `snappy` is true.
fn encoding(req: &Request, snappy: bool) -> Result<Encoding, ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    match value.to_str().map(|v| v.trim().to_ascii_lowercase()) {
        Ok(v) if v.is_empty() || v == "identity" => Ok(Encoding::Identity),
        Ok(v) if v == "gzip" || v == "x-gzip" => Ok(Encoding::Gzip),
        Ok(v) if snappy && v == "snappy" => Ok(Encoding::Snappy),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            format!(
                "Content-Encoding {value:?} is not supported; send {}",
                if snappy { "snappy" } else { "gzip or nothing" }
            ),
        )),
    }
}

/// The body, read under the server's limit; gzip is decompressed (under the limit too), other
/// encodings are left to the caller.
async fn read_body(req: &Request, body: Body, encoding: Encoding) -> Result<Vec<u8>, ApiError> {
    let limit = req.data::<body::BodyLimit>().map_or(usize::MAX, |l| l.0);
    let bytes = body::read_limited(req, body, limit).await?;
    match encoding {
        Encoding::Gzip => tokio::task::spawn_blocking(move || body::gunzip(&bytes, limit))
            .await
            .map_err(|err| ApiError::internal(&err))?,
        Encoding::Identity | Encoding::Snappy => Ok(bytes.to_vec()),
    }
}

/// The body limit of the server.
fn limit(req: &Request) -> usize {
    req.data::<body::BodyLimit>().map_or(usize::MAX, |l| l.0)
}

/// The request's query parameters, decoded.
fn query(req: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Stores `metrics` as `POST /v1/metrics` does: all within the token's name prefixes or none,
/// at most once per `Idempotency-Key` when the request has one; returns how many were stored.
async fn store(state: &AppState, req: &Request, metrics: Vec<NewMetric>) -> Result<u64, ApiError> {
    if let Some(grant) = req.extensions().get::<crate::auth::Grant>() {
        if let Some(metric) = metrics.iter().find(|m| !grant.allows_name(&m.name)) {
            return Err(grant.name_forbidden(&metric.name));
        }
    }
    if metrics.is_empty() {
        return Ok(0);
    }
    if let Some(key) = req.headers().get("idempotency-key") {
        let key = key
            .to_str()
            .map_err(|_| super::idempotency::bad_key())?
            .to_owned();
        return super::idempotency::post_once(state, key, metrics)
            .await
            .map(|answer| answer.stored);
    }
    let ids = state.ingest.write(metrics).await?;
    Ok(ids.len() as u64)
}
