//! The built-in web console `credtrail serve` shows at `/`: the findings with filters, a run's
//! timeline, and alias health per workspace. Plain HTML, CSS and JavaScript compiled into the
//! binary: nothing is fetched from the internet, and the page holds no data of its own. It reads
//! everything through the API with the bearer token the analyst gives it (typed in, or passed
//! once as `/#token=…`, kept in the tab's session storage only).

use axum::Router;
use axum::http::header;
use axum::routing::get;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// Content-Security-Policy: this origin only, no inline script, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CONTENT_SECURITY_POLICY, CSP),
                    ],
                    INDEX,
                )
            }),
        )
        .route(
            "/console.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SCRIPT) }),
        )
        .route(
            "/console.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], STYLE) }),
        )
}
