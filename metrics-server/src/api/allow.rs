//! The `Allow` header of a 405: the methods the route does accept (RFC 9110, section 15.5.6),
//! read from the same operations the OpenAPI spec is made of, so it cannot drift from them.

use poem::http::{HeaderValue, Method};

/// For each route (a path template such as `/v1/tokens/{id}`), the `Allow` value it answers a
/// 405 with.
pub(crate) struct AllowedMethods(Vec<(Vec<String>, HeaderValue)>);

impl AllowedMethods {
    /// The table of these routes: `(path template, methods)`; a segment written `{name}` or
    /// `:name` matches any one segment. A route accepting GET also accepts HEAD (poem answers
    /// it).
    pub(crate) fn new(routes: impl IntoIterator<Item = (String, Vec<Method>)>) -> Self {
        let mut table: Vec<(Vec<String>, Vec<Method>)> = Vec::new();
        for (path, methods) in routes {
            let segments: Vec<String> = path.split('/').map(str::to_owned).collect();
            match table.iter_mut().find(|(s, _)| *s == segments) {
                Some((_, known)) => known.extend(methods),
                None => table.push((segments, methods)),
            }
        }
        AllowedMethods(
            table
                .into_iter()
                .map(|(segments, mut methods)| {
                    if methods.contains(&Method::GET) {
                        methods.push(Method::HEAD);
                    }
                    methods.sort_by_key(|m| ORDER.iter().position(|o| o == m));
                    methods.dedup();
                    let list = methods
                        .iter()
                        .map(Method::as_str)
                        .collect::<Vec<_>>()
                        .join(", ");
                    let value = HeaderValue::from_str(&list)
                        .unwrap_or_else(|_| HeaderValue::from_static(""));
                    (segments, value)
                })
                .collect(),
        )
    }

    /// The `Allow` value for a request path, when it names a route.
    pub(crate) fn get(&self, path: &str) -> Option<&HeaderValue> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .find(|(template, _)| {
                template.len() == segments.len()
                    && template.iter().zip(&segments).all(|(t, s)| {
                        t == s || ((t.starts_with('{') || t.starts_with(':')) && !s.is_empty())
                    })
            })
            .map(|(_, value)| value)
    }
}

/// The order methods are listed in.
const ORDER: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_each_routes_methods_with_head_for_get() {
        let allowed = AllowedMethods::new([
            ("/v1/tokens".to_owned(), vec![Method::POST]),
            ("/v1/tokens".to_owned(), vec![Method::GET]),
            ("/v1/tokens/{id}".to_owned(), vec![Method::DELETE]),
            ("/assets/:file".to_owned(), vec![Method::GET]),
            ("/".to_owned(), vec![Method::GET]),
        ]);
        let get = |path| allowed.get(path).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(get("/v1/tokens").as_deref(), Some("GET, HEAD, POST"));
        assert_eq!(get("/v1/tokens/42").as_deref(), Some("DELETE"));
        assert_eq!(get("/assets/live.js").as_deref(), Some("GET, HEAD"));
        assert_eq!(get("/").as_deref(), Some("GET, HEAD"));
        assert_eq!(get("/v1/tokens/"), None);
        assert_eq!(get("/v1/tokens/42/x"), None);
        assert_eq!(get("/v2"), None);
    }
}
