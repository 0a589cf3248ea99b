//! The web viewer: a plain page (HTML, CSS, JavaScript in `kelemetry-query/viewer/`) embedded in the binary and
//! served beside the HTTP API, so that `kelemetry serve` needs no other service and the page loads nothing from
//! the network.
//!
//! - `GET /` (and `/trace/{id}`, where `/redirect` points): the page; its routes live in the URL's hash
//!   (`#/search?...`, `#/trace/<id>?span=...&mark=...`), so every view is a link that can be shared;
//! - `GET /viewer.js`, `GET /viewer.css`: the script and the style sheet.
//!
//! The page reads `/api/services` (display modes), `/api/operations` (clusters), `/api/traces` (search) and
//! `/api/traces/{id}`, and draws a trace as a timeline: one row per object, its activities as marks.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page.
pub const INDEX_HTML: &str = include_str!("../viewer/index.html");
/// The script.
pub const VIEWER_JS: &str = include_str!("../viewer/viewer.js");
/// The style sheet.
pub const VIEWER_CSS: &str = include_str!("../viewer/viewer.css");

/// The routes of the viewer's assets, to merge with the API's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/trace/{id}",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/viewer.js",
            get(|| async { asset("text/javascript; charset=utf-8", VIEWER_JS) }),
        )
        .route(
            "/viewer.css",
            get(|| async { asset("text/css; charset=utf-8", VIEWER_CSS) }),
        )
}

/// An embedded asset. `no-cache`: a browser revalidates, so a new binary's page is never mixed with an old script.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
                ),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(INDEX_HTML.contains(r#"<script src="/viewer.js">"#));
        assert!(INDEX_HTML.contains(r#"href="/viewer.css""#));
        for asset in [INDEX_HTML, VIEWER_JS, VIEWER_CSS] {
            assert!(!asset.contains("http://"), "no address outside the server");
            assert!(!asset.contains("https://"), "no address outside the server");
        }
        // The ids the script looks up exist in the page.
        for id in [
            "search",
            "results",
            "trace",
            "mode-switch",
            "rows",
            "rows-spacer",
            "panel",
            "axis-ticks",
            "message",
            "row-filter",
            "copy-link",
        ] {
            assert!(
                INDEX_HTML.contains(&format!(r#"id="{id}""#)),
                "index.html has no element {id}"
            );
            assert!(
                VIEWER_JS.contains(&format!(r#"$("{id}")"#)) || id == "search",
                "viewer.js does not use {id}"
            );
        }
    }
}
