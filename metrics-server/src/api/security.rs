//! The spec's security scheme: poem-openapi can only declare one by taking the credentials as a
//! handler argument, which would also enforce them even with auth off. Auth is a middleware
//! here (`crate::auth`), so its rule is written into the generated spec afterwards: every
//! operation that [`crate::auth::policy()`] does not leave open requires the `bearer` scheme, so
//! clients and tools (schemathesis' `ignored_auth`) know which routes need a token.

use poem::http::Method;
use serde_json::{json, Value};

use crate::auth::{policy, Need};

/// `spec` (JSON, as poem-openapi writes it) with the `bearer` scheme declared and required by
/// every operation that needs a token; pretty JSON again.
pub(crate) fn declare(spec: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(spec) else {
        return spec.to_owned();
    };
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, operations) in paths.iter_mut() {
            for (method, operation) in operations.as_object_mut().into_iter().flatten() {
                let Ok(method) = method.to_uppercase().parse::<Method>() else {
                    continue;
                };
                if policy(&method, path) != Need::Open {
                    operation["security"] = json!([{ "bearer": [] }]);
                }
            }
        }
    }
    doc["components"]["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `metrics-server token create` or `POST /v1/tokens`, as \
                `Authorization: Bearer <token>`. Needed only when auth is on \
                (docs/security.md); a missing or unknown token then gets 401, a token without \
                the route's scope 403."
        }
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| spec.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_but_the_open_ones_requires_the_scheme() {
        let spec = r#"{"paths": {"/": {"get": {}}, "/healthz": {"get": {}},
            "/v1/metrics": {"get": {}, "post": {}}, "/v1/limits": {"get": {}},
            "/v1/tokens/{id}": {"delete": {}}}, "components": {"schemas": {}}}"#;
        let doc: Value = serde_json::from_str(&declare(spec)).unwrap();
        let required = json!([{"bearer": []}]);
        for (path, method) in [
            ("/v1/metrics", "get"),
            ("/v1/metrics", "post"),
            ("/v1/limits", "get"),
            ("/v1/tokens/{id}", "delete"),
        ] {
            assert_eq!(doc["paths"][path][method]["security"], required, "{path}");
        }
        assert!(doc["paths"]["/"]["get"].get("security").is_none());
        assert!(doc["paths"]["/healthz"]["get"].get("security").is_none());
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(doc["components"]["schemas"].is_object(), "the rest is kept");
    }
}
