//! What each route needs (nothing, any token, or a scope), and the extra checks of a token
//! confined to some metric-name prefixes.

use metrics_types::ErrorCode;
use poem::http::{Method, StatusCode, Uri};

use super::{Grant, Scope};
use crate::api::ApiError;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Nothing: anyone may call it.
    Open,
    /// A valid token, whatever its scopes.
    AnyToken,
    /// A token with this scope.
    Scope(Scope),
}

/// What `method path` needs. Unknown routes need a token like the API around them, so that
/// the answer to a stranger does not tell which routes exist.
pub(crate) fn policy(method: &Method, path: &str) -> Need {
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if path == "/" || path == "/healthz" || under("/assets") || under("/docs") {
        return Need::Open;
    }
    if path == "/openapi.json" {
        return Need::Open;
    }
    if path == "/v1/limits" {
        return Need::AnyToken;
    }
    if under("/v1/tokens") {
        return Need::Scope(Scope::Admin);
    }
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Need::Scope(Scope::Read),
        Method::DELETE => Need::Scope(Scope::Delete),
        _ => Need::Scope(Scope::Write),
    }
}

/// The routes that upgrade to a WebSocket, where `?access_token=` is accepted.
pub(super) fn is_websocket_route(path: &str) -> bool {
    path == "/v1/ws" || path == "/v1/stream"
}

/// The checks a prefix-confined token needs before the handler: reads (and deletes, and the tag
/// catalog) must name their metrics.
/// (`POST /v1/metrics` checks each metric's name once the body is parsed; `GET /v1/names` lists
/// only the names within the prefixes.)
pub(super) fn confine(
    grant: &Grant,
    method: &Method,
    path: &str,
    uri: &Uri,
) -> Result<(), ApiError> {
    // Routes whose answer or effect reaches metrics of any name unless `name=` narrows it.
    let reads_by_name = (path == "/v1/metrics"
        && (*method == Method::GET || *method == Method::DELETE))
        || path == "/v1/stream"
        || path == "/v1/tags"
        || path.starts_with("/v1/tags/");
    if path == "/v1/ws" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "/v1/ws streams every metric and this token is confined to names starting with \
                 {}; subscribe to /v1/stream?name=<name> instead",
                grant.prefix_list()
            ),
        ));
    }
    if !reads_by_name {
        return Ok(());
    }
    let names: Vec<String> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(key, value)| key == "name" && !value.is_empty())
        .map(|(_, value)| value.into_owned())
        .collect();
    if names.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "this token is confined to metric names starting with {}: name the metrics \
                 (`?name=...`) to read",
                grant.prefix_list()
            ),
        ));
    }
    match names.iter().find(|name| !grant.allows_name(name)) {
        Some(name) => Err(grant.name_forbidden(name)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_their_scope() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(policy(&get, "/"), Need::Open);
        assert_eq!(policy(&get, "/healthz"), Need::Open);
        assert_eq!(policy(&get, "/assets/dashboard.js"), Need::Open);
        assert_eq!(policy(&get, "/docs/"), Need::Open);
        assert_eq!(policy(&get, "/openapi.json"), Need::Open);
        assert_eq!(policy(&get, "/docsx"), Need::Scope(Scope::Read));
        assert_eq!(policy(&get, "/v1/limits"), Need::AnyToken);
        assert_eq!(policy(&get, "/v1/metrics"), Need::Scope(Scope::Read));
        assert_eq!(policy(&post, "/v1/metrics"), Need::Scope(Scope::Write));
        assert_eq!(
            policy(&Method::DELETE, "/v1/metrics"),
            Need::Scope(Scope::Delete)
        );
        assert_eq!(policy(&get, "/v1/tokens"), Need::Scope(Scope::Admin));
        assert_eq!(
            policy(&Method::DELETE, "/v1/tokens/3"),
            Need::Scope(Scope::Admin)
        );
    }
}
