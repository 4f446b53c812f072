//! The HTTP API: one file per API struct, composed into one OpenAPI service.
//!
//! | file | routes |
//! | --- | --- |
//! | `metrics.rs` | `POST /v1/metrics`, `GET /v1/metrics`, `DELETE /v1/metrics` |
//! | `answer.rs` | the formats of `GET /v1/metrics` (JSON, NDJSON, CSV) and its `Link` header |
//! | `names.rs` | `GET /v1/names` |
//! | `ws.rs` | `GET /v1/ws` |
//! | `stream.rs` | `GET /v1/stream` (resumable), `GET /v1/limits`; idempotent POSTs |
//! | `health.rs` | `GET /healthz`, `GET /` |
//! | (here) | `GET /metrics`: the server's own metrics in the Prometheus text format (`crate::monitor`; not in the spec) |
//! | `tokens.rs` | `POST/GET /v1/tokens`, `DELETE /v1/tokens/{id}`: the admin API |
//! | `assets.rs` | `GET /assets/{file}`: the live page's scripts and styles (not in the spec) |
//! | `socket.rs` | what both WebSocket routes share: Origin check, cap, writes with a deadline |
//! | `param_types.rs` | the read routes' parameters as the spec declares them |
//! | `params.rs` | the read routes' query strings: known parameters only, and their [`Selection`](crate::selection::Selection) |
//! | `body.rs`, `schema.rs` | reading POST bodies (type, encoding, limit; `ingest::parse` reads the metrics); the hand-written `Metric` schema |
//! | `security.rs` | the spec's `bearer` security scheme, from `crate::auth::policy` |
//! | `error.rs` | [`ApiError`], the one JSON error of every route |
//! | `allow.rs` | the `Allow` header of every 405, from the spec's operations |
//! | `protocols/` | other protocols' writes (not in the spec): InfluxDB line protocol, Prometheus remote write, OTLP/HTTP |

mod aggregate;
mod allow;
mod answer;
mod assets;
mod body;
mod error;
mod health;
mod idempotency;
mod metrics;
mod names;
mod param_types;
mod params;
mod protocols;
mod schema;
mod security;
mod socket;
mod stream;
mod tokens;
mod ws;

use std::sync::Arc;

use poem::{
    http::{header, Method, StatusCode},
    Endpoint, EndpointExt, IntoResponse, Route,
};
use poem_openapi::{OpenApi, OpenApiService, Tags};

pub use self::error::ApiError;
pub(crate) use self::socket::LiveSockets;
use self::{
    allow::AllowedMethods, body::BodyLimit, health::HealthApi, metrics::MetricsApi,
    names::NamesApi, stream::StreamApi, tokens::TokensApi, ws::LiveApi,
};
use crate::AppState;

#[derive(Tags)]
enum ApiTags {
    /// Write and query metrics.
    Metrics,
    /// Live stream of committed metrics.
    Live,
    /// Health and the live page.
    Health,
    /// API tokens (scope `admin`).
    Tokens,
}

type Apis = (
    MetricsApi,
    NamesApi,
    LiveApi,
    HealthApi,
    StreamApi,
    TokensApi,
);

fn openapi(state: AppState) -> OpenApiService<Apis, ()> {
    let apis = (
        MetricsApi {
            state: state.clone(),
        },
        NamesApi {
            state: state.clone(),
        },
        LiveApi {
            state: state.clone(),
        },
        HealthApi {
            state: state.clone(),
        },
        StreamApi {
            state: state.clone(),
        },
        TokensApi { state },
    );
    OpenApiService::new(apis, "metrics", env!("CARGO_PKG_VERSION"))
        .description(
            "Ingest metrics over HTTP, query them by name and time range, and watch them live over \
             WebSockets. Every error is a JSON `ErrorBody` with a stable `code`. When auth is on \
             (docs/security.md), every route but `/`, `/healthz` and the docs needs a token: \
             `Authorization: Bearer <token>` (or `Token`, or Basic with the token as password); \
             on a WebSocket also a `bearer.<token>` subprotocol next to `metrics`, or \
             `?access_token=`. GETs need scope `read`, POSTs `write`, `/v1/tokens` `admin`.",
        )
        .license("MIT OR Apache-2.0")
}

/// The OpenAPI spec of the whole service, as pretty JSON (what `GET /openapi.json` serves).
pub(crate) fn spec_json(state: AppState) -> String {
    security::declare(&openapi(state).spec())
}

/// The whole service: the API, `/openapi.json`, Swagger UI at `/docs`, and one JSON error shape
/// for every failure, including the framework's own (unknown route, wrong method, ...).
pub(crate) fn routes(state: AppState) -> impl Endpoint {
    let body_limit = BodyLimit(state.body_limit);
    let auth = state.auth.clone();
    let state_for_protocols = state.clone();
    let otlp_state = state.clone();
    let monitor = state.monitor.clone();
    let scraped = state.clone();
    // GET /metrics: the server's own metrics for Prometheus (crate::monitor).
    let self_metrics = poem::get(poem::endpoint::make_sync(move |_| {
        let text = scraped
            .monitor
            .scrape(scraped.ingest.queued(), scraped.hub.subscribers());
        poem::Response::builder()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text)
    }));
    let api = openapi(state);
    // The spec with its security scheme, served and embedded in Swagger UI (whose "Authorize"
    // then takes a token).
    let generated = api.spec();
    let declared = security::declare(&generated);
    let docs_html = api.swagger_ui_html().replace(&generated, &declared);
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(declared.clone())
    });
    let docs = poem::endpoint::make_sync(move |_| poem::web::Html(docs_html.clone()));
    // Every 405 says which methods the route does accept: the spec's operations, plus the assets.
    let allowed = Arc::new(AllowedMethods::new(
        <Apis as OpenApi>::meta()
            .into_iter()
            .flat_map(|api| api.paths)
            .map(|path| {
                let methods = path.operations.iter().map(|op| op.method.clone()).collect();
                (path.path, methods)
            })
            .chain([
                ("/assets/:file".to_owned(), vec![Method::GET]),
                ("/metrics".to_owned(), vec![Method::GET]),
            ])
            .chain(protocols::methods()),
    ));
    let routes = Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .at("/assets/:file", poem::get(assets::asset))
        .at("/metrics", self_metrics);
    protocols::mount(routes, &state_for_protocols)
        .nest("/", api)
        .around(move |ep, req| {
            // OTLP exporters pointed at the server's root post protobuf to /v1/metrics.
            let state = otlp_state.clone();
            async move {
                if req.method() == Method::POST
                    && req.uri().path() == "/v1/metrics"
                    && protocols::is_otlp_protobuf(&req)
                {
                    return protocols::otlp_on_v1(&state, req).await;
                }
                ep.call(req).await.map(IntoResponse::into_response)
            }
        })
        .data(body_limit)
        .around(move |ep, mut req| {
            let auth = auth.clone();
            async move {
                auth.check(&mut req).await?;
                ep.call(req).await
            }
        })
        .around(move |ep, req| {
            let allowed = allowed.clone();
            async move {
                let method = req.method().clone();
                let path = req.uri().path().to_owned();
                let mut response = match ep.call(req).await {
                    Ok(response) => response.into_response(),
                    Err(err) => error::error_response(err, &method, &path),
                };
                if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                    if let Some(allow) = allowed.get(&path) {
                        response.headers_mut().insert(header::ALLOW, allow.clone());
                    }
                }
                Ok(response)
            }
        })
        .around(move |ep, req| {
            let monitor = monitor.clone();
            async move {
                let started = std::time::Instant::now();
                let route = crate::monitor::route_of(req.uri().path());
                let method = req.method().clone();
                let response = ep.call(req).await?.into_response();
                monitor.request(
                    route,
                    method.as_str(),
                    response.status().as_u16(),
                    started.elapsed(),
                );
                Ok(response)
            }
        })
        .with(assets::common_headers())
}
