//! Reading query strings strictly. poem decodes percent-escapes lossily (`%FF` becomes U+FFFD)
//! and keeps the first of a repeated parameter; a filter the client did not mean is worse than a
//! 400, so the routes with filters check the raw query string too.

use metrics_types::{validate_name, ErrorCode};
use percent_encoding::percent_decode_str;
use poem::Request;

use super::error::ApiError;

/// Checks the request's raw query string: every name and value must be UTF-8 once
/// percent-decoded, and each parameter in `single` may be given at most once. Either failure is
/// 400 `invalid_param` naming the parameter.
pub(crate) fn check(req: &Request, single: &[&str]) -> Result<(), ApiError> {
    let Some(query) = req.uri().query() else {
        return Ok(());
    };
    let mut seen = vec![0usize; single.len()];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(raw_name).map_err(|()| {
            invalid(format!(
                "the query parameter name {raw_name:?} is not UTF-8 once percent-decoded"
            ))
        })?;
        decode(raw_value).map_err(|()| {
            invalid(format!(
                "query parameter `{name}`: the value {raw_value:?} is not UTF-8 once \
                 percent-decoded"
            ))
        })?;
        if let Some(i) = single.iter().position(|s| *s == name) {
            seen[i] += 1;
            if seen[i] > 1 {
                return Err(invalid(format!(
                    "query parameter `{name}` is given more than once; give it once"
                )));
            }
        }
    }
    Ok(())
}

/// The `name` filter: empty values mean "any name" and are dropped; any other value must be a
/// name the server could have stored (no control characters such as NUL, which PostgreSQL
/// cannot even compare, at most 512 bytes), or no metric could ever match it.
pub(crate) fn names(values: Vec<String>) -> Result<Vec<String>, ApiError> {
    values
        .into_iter()
        .filter(|n| !n.is_empty())
        .map(|n| match validate_name(&n) {
            Ok(()) => Ok(n),
            Err(err) => Err(invalid(format!("query parameter `name` {err}"))),
        })
        .collect()
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidParam, message)
}

/// Percent-decodes one part of a query (`+` is a space), refusing what is not UTF-8.
fn decode(part: &str) -> Result<String, ()> {
    let spaced = part.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str) -> Request {
        Request::builder()
            .uri(format!("/v1/metrics?{query}").parse().unwrap())
            .finish()
    }

    fn code_and_message(query: &str) -> Option<(ErrorCode, String)> {
        check(&request(query), &["sts", "ets"])
            .err()
            .map(|e| (e.code(), e.to_string()))
    }

    #[test]
    fn accepts_ordinary_queries() {
        for q in [
            "",
            "name=cpu&name=mem&sts=2016-01-01&ets=2016-01-02",
            "name=caf%C3%A9+au+lait",
            "sts=2016-01-01T00:00:00%2B02:00",
            "&&flag",
        ] {
            assert_eq!(code_and_message(q), None, "{q}");
        }
    }

    #[test]
    fn refuses_invalid_utf8_and_repeated_bounds() {
        let (code, message) = code_and_message("name=%FF%FE").unwrap();
        assert_eq!(code, ErrorCode::InvalidParam);
        assert!(message.contains("`name`"), "{message}");
        let (_, message) = code_and_message("sts=2016-01-01&sts=2017-01-01").unwrap();
        assert!(message.contains("`sts`"), "{message}");
        let (_, message) = code_and_message("ets=1&name=a&ets=2").unwrap();
        assert!(message.contains("`ets`"), "{message}");
        let (_, message) = code_and_message("%C0=1").unwrap();
        assert!(message.contains("name"), "{message}");
    }

    #[test]
    fn name_filters_must_be_storable_names() {
        assert_eq!(
            names(vec!["".into(), "cpu".into()]).unwrap(),
            vec!["cpu".to_owned()]
        );
        let err = names(vec!["a\0b".into()]).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidParam);
        assert!(err.to_string().contains("`name`"), "{err}");
    }
}
