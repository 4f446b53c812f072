//! `POST /write` (InfluxDB 1: `db`, `rp`, `precision=n|u|ms|s|m|h`, `u`/`p`) and
//! `POST /api/v2/write` (InfluxDB 2: `org`, `bucket`, `precision=ns|us|ms|s`): line protocol,
//! optionally gzip-compressed, answered `204 No Content` like InfluxDB once every point is
//! committed. A bad line is a 400 naming the line and the problem, and nothing of the request is
//! stored (as InfluxDB 2 does). The token may come as `Authorization: Token`, `Bearer`, Basic
//! (InfluxDB 1's `u:p`, the token as password) or InfluxDB 1's `?p=`.

use metrics_types::ErrorCode;
use poem::{
    handler,
    http::{header, StatusCode},
    web::Data,
    Body, Request, Response,
};

use super::{encoding, query, read_body, store, ApiError};
use crate::{
    ingest::{
        line::{parse, Precision},
        points::now_nanos,
    },
    AppState,
};

/// InfluxDB 1's write route.
#[handler]
pub(super) async fn write_v1(
    req: &Request,
    body: Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    write(req, body, state, "db").await
}

/// InfluxDB 2's write route.
#[handler]
pub(super) async fn write_v2(
    req: &Request,
    body: Body,
    Data(state): Data<&AppState>,
) -> Result<Response, ApiError> {
    write(req, body, state, "bucket").await
}

async fn write(
    req: &Request,
    body: Body,
    state: &AppState,
    db_param: &str,
) -> Result<Response, ApiError> {
    // Line protocol is sent as text/plain, which a web page may POST cross-site without asking
    // (no CORS preflight); agents send no Origin, browsers always do on such a request.
    if req.headers().contains_key(header::ORIGIN) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "line protocol writes are for agents: a request from a web page (with an Origin \
             header) is refused; post JSON to /v1/metrics instead",
        ));
    }
    let params = query(req);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let precision_text = param("precision").unwrap_or("");
    let precision = Precision::parse(precision_text).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidParam,
            format!(
                "query parameter `precision`: {precision_text:?} is not a precision; use ns, \
                 us, ms or s (InfluxDB 1 also: n, u, m, h)"
            ),
        )
    })?;
    let db = param(db_param).map(str::to_owned);
    let encoding = encoding(req, false)?;
    let bytes = read_body(req, body, encoding).await?;
    let now = now_nanos();
    let metrics = tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&bytes).map_err(|err| {
            let line = bytes[..err.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            ApiError::bad_request(
                ErrorCode::InvalidBody,
                format!("line {line}: the body is not UTF-8; nothing of the request was stored"),
            )
        })?;
        parse(text, precision, db.as_deref(), now).map_err(|err| {
            ApiError::bad_request(
                ErrorCode::InvalidBody,
                format!("{err}; nothing of the request was stored"),
            )
        })
    })
    .await
    .map_err(|err| ApiError::internal(&err))??;
    store(state, req, metrics).await?;
    Ok(Response::builder().status(StatusCode::NO_CONTENT).finish())
}
