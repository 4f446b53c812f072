//! Finding the token a request carries: `Authorization` (Bearer, Token or Basic), a
//! `bearer.<t>` WebSocket subprotocol, or `?access_token=`, which is taken out of the query.

use base64::Engine;
use poem::{
    http::{header, uri::PathAndQuery, Uri},
    Request,
};

/// The token a request carries in a header, if any.
pub(super) fn credential(req: &Request) -> Option<String> {
    if let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = value.trim().split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
            return Some(rest.to_owned());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (_user, password) = decoded.split_once(':')?;
            return Some(password.to_owned());
        }
        return None;
    }
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("bearer."))
        .map(str::to_owned)
}

/// InfluxDB 1's `?p=<password>` on its write route: the token, for agents that send it there.
pub(super) fn influx_password(req: &Request) -> Option<String> {
    if req.uri().path() != "/write" {
        return None;
    }
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(key, value)| key == "p" && !value.is_empty())
        .map(|(_, value)| value.into_owned())
}

/// Takes `access_token` out of the request's query (so that no handler sees it and no log line
/// of a URI can hold it); returns its value.
pub(super) fn strip_access_token(req: &mut Request) -> Option<String> {
    let query = req.uri().query()?;
    if !query
        .split('&')
        .any(|pair| pair == "access_token" || pair.starts_with("access_token="))
    {
        return None;
    }
    let mut token = None;
    let mut kept = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "access_token" {
            token.get_or_insert_with(|| value.into_owned());
        } else {
            kept.append_pair(&key, &value);
        }
    }
    let kept = kept.finish();
    let path_and_query = if kept.is_empty() {
        req.uri().path().to_owned()
    } else {
        format!("{}?{kept}", req.uri().path())
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_every_transport() {
        let token = "mt_abc";
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("any:{token}"));
        for value in [
            format!("Bearer {token}"),
            format!("Token {token}"),
            format!("Basic {basic}"),
        ] {
            let req = Request::builder()
                .header(header::AUTHORIZATION, value.as_str())
                .finish();
            assert_eq!(credential(&req).as_deref(), Some(token), "{value}");
        }
        let req = Request::builder()
            .header(header::SEC_WEBSOCKET_PROTOCOL, "metrics, bearer.mt_abc")
            .finish();
        assert_eq!(credential(&req).as_deref(), Some(token));
        let mut req = Request::builder()
            .uri(Uri::from_static(
                "/v1/stream?name=a&access_token=mt_abc&since=3",
            ))
            .finish();
        assert_eq!(strip_access_token(&mut req).as_deref(), Some(token));
        assert_eq!(req.uri().to_string(), "/v1/stream?name=a&since=3");
    }
}
