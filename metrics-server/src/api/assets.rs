//! `GET /assets/{file}`: the live page's script, styles and vendored chart library, embedded in
//! the binary so that the page works with no internet.
//!
//! uPlot is vendored from the npm registry; `assets/vendor/uplot/README.md` records its version,
//! checksum and licence.

use poem::{
    error::NotFoundError, handler, http::header, web::Path, IntoResponse, Response, Result,
};

/// Each embedded file: its name under `/assets/`, its content type and its bytes.
const FILES: &[(&str, &str, &str)] = &[
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard.css"),
    ),
    (
        "uplot.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/vendor/uplot/uplot.min.js"),
    ),
    (
        "uplot.min.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/vendor/uplot/uplot.min.css"),
    ),
];

/// Serves one embedded file; an unknown name is the usual JSON 404.
#[handler]
pub(crate) fn asset(Path(file): Path<String>) -> Result<Response> {
    let (_, content_type, body) = FILES
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or(NotFoundError)?;
    Ok(body
        .with_content_type(*content_type)
        // Revalidate on every load: a new server version must not run an old script.
        .with_header(header::CACHE_CONTROL, "no-cache")
        .into_response())
}
