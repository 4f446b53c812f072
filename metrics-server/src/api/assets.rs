//! `GET /assets/{file}`: the live page's script, styles and vendored chart library, embedded in
//! the binary so that the page works with no internet.
//!
//! uPlot is vendored from the npm registry; `assets/vendor/uplot/README.md` records its version,
//! checksum and licence.

use poem::{
    error::NotFoundError,
    handler,
    http::{header, HeaderValue},
    middleware::SetHeader,
    web::Path,
    IntoResponse, Response, Result,
};

/// The page's Content Security Policy: its scripts, styles and sockets come from this server only
/// (`'self'` covers `ws:`/`wss:` to the same host), no inline script, no plugins, and no other
/// site may frame it. A metric name that smuggles markup can therefore not run script even if a
/// future change rendered it as HTML.
pub(crate) const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Headers on every response: no MIME sniffing (a JSON answer is never run as a script or
/// rendered as HTML) and no `Referer` leaking the page's URL and query to other sites.
pub(crate) fn common_headers() -> SetHeader {
    SetHeader::new()
        .overriding(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .overriding(header::REFERRER_POLICY, "no-referrer")
}

/// Adds the page's policy headers to a response: the CSP and, for browsers that predate
/// `frame-ancestors`, `X-Frame-Options: DENY`.
pub(crate) fn with_page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Each embedded file: its name under `/assets/`, its content type and its bytes.
const FILES: &[(&str, &str, &str)] = &[
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard.js"),
    ),
    (
        "theme.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/theme.js"),
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
    Ok(with_page_headers(
        body.with_content_type(*content_type)
            // Revalidate on every load: a new server version must not run an old script.
            .with_header(header::CACHE_CONTROL, "no-cache")
            .into_response(),
    ))
}
