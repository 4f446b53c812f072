//! The page's headers: a Content Security Policy without inline script on `/` and `/assets/*`,
//! framing refused, and `nosniff` and `Referrer-Policy` on every answer, errors included.
//!
//! ```text
//! cargo test -p metrics-server --test faults page
//! ```

use crate::common::{Backend, TestDb, TestServer};

crate::on_both_backends!(the_page_and_its_assets_carry_the_policy_headers);

async fn the_page_and_its_assets_carry_the_policy_headers(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db).await;
    for path in [
        "/",
        "/assets/dashboard.js",
        "/assets/theme.js",
        "/assets/dashboard.css",
        "/assets/uplot.min.js",
    ] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .unwrap_or_else(|| panic!("{path} has no {name}"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        let csp = header("content-security-policy");
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        for want in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
        ] {
            assert!(directives.contains(&want), "{path}: {csp} lacks {want}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }

    // The page has no inline script for the policy to block: every <script> has a src.
    let page = server.http.get(server.url("/")).send().await.unwrap();
    let html = page.text().await.unwrap();
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert!(!scripts.is_empty());
    for script in scripts {
        let tag = &script[..script.find('>').unwrap()];
        assert!(
            tag.contains(" src=\"/assets/"),
            "inline script: <script{tag}>"
        );
        assert!(
            script[tag.len() + 1..].starts_with("</script>"),
            "inline script body"
        );
    }
    assert!(
        !html.contains(" onload=") && !html.contains(" onclick="),
        "inline handlers"
    );

    // nosniff and Referrer-Policy on every other answer, errors included.
    for path in [
        "/v1/names",
        "/healthz",
        "/openapi.json",
        "/no-such-route",
        "/assets/nope.js",
    ] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    }
}
