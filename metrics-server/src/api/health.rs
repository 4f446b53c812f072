//! `GET /healthz` and the live page at `GET /`.

use poem_openapi::{payload::Html, payload::Json, ApiResponse, Object, OpenApi};

use super::{assets::PAGE_CSP, ApiTags};
use crate::AppState;

/// The live dashboard, embedded in the binary (its scripts are under `/assets/`).
const INDEX_HTML: &str = include_str!("../../assets/index.html");

/// Health and the page.
pub(crate) struct HealthApi {
    pub(crate) state: AppState,
}

/// The server's health.
#[derive(Debug, Object)]
struct Health {
    /// `ok` when the server and its database answer, `unavailable` otherwise.
    status: String,
    /// The server's version.
    version: String,
}

#[derive(ApiResponse)]
enum HealthResponse {
    /// The server is up and its database answers.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// The database does not answer; retry after `Retry-After` seconds.
    #[oai(status = 503)]
    Unavailable(
        Json<Health>,
        /// Seconds to wait before asking again.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

#[derive(ApiResponse)]
enum PageResponse {
    /// The page.
    #[oai(status = 200)]
    Ok(
        Html<&'static str>,
        /// The page's Content Security Policy: its scripts, styles and sockets come from this
        /// server only, no inline script, and no other site may frame it.
        #[oai(header = "Content-Security-Policy")]
        String,
        /// `DENY`, for browsers that predate the policy's `frame-ancestors`.
        #[oai(header = "X-Frame-Options")]
        String,
    ),
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Health check
    ///
    /// 200 when the server and its database answer; 503 when the database does not.
    #[oai(path = "/healthz", method = "get", operation_id = "health")]
    async fn health(&self) -> HealthResponse {
        let health = |status: &str| Health {
            status: status.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        match self.state.store.ping().await {
            Ok(()) => HealthResponse::Ok(Json(health("ok"))),
            Err(err) => {
                tracing::warn!(error = %err, "health check failed");
                HealthResponse::Unavailable(Json(health("unavailable")), 1)
            }
        }
    }

    /// Live dashboard
    ///
    /// A page that charts the history (`GET /v1/metrics`) and the live stream (`/v1/ws`) of the
    /// metric names picked from `GET /v1/names`, over a chosen time range, with a table of the
    /// latest metrics. Its scripts are embedded in the server, so it works with no internet.
    #[oai(path = "/", method = "get", operation_id = "index")]
    async fn index(&self) -> PageResponse {
        PageResponse::Ok(Html(INDEX_HTML), PAGE_CSP.to_owned(), "DENY".to_owned())
    }
}
