//! The web viewer: a plain page (HTML, CSS, JavaScript in `kelemetry-query/viewer/`) embedded in the binary and
//! served beside the HTTP API, so that `kelemetry serve` needs no other service and the page loads nothing from
//! the network.
//!
//! - `GET /` (and `/trace/{id}`, where `/redirect` points): the page; its routes live in the URL's hash
//!   (`#/search?...`, `#/trace/<id>?span=...&mark=...`), so every view is a link that can be shared;
//! - `GET /viewer.js`, `GET /viewer.css`: the script and the style sheet.
//!
//! The page reads `/api/services` (display modes), `/api/operations` (clusters), `/api/traces` (search) and
//! `/api/traces/{id}`, and draws a trace as a timeline: one row per object, its activities as marks, the spans
//! extension providers grafted in (`crate::extension`) as small waterfalls in the side panel of their activity.
//!
//! [`offline_page`] is the same page as one file that carries one trace (`kelemetry export --html`): style sheet,
//! script and the trace's `/api/traces/{id}` answer inlined, a content security policy that lets it load nothing,
//! so that it opens from disk.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::display::DisplayTrace;
use crate::jaeger_json::{Response as ApiResponse, Trace};

/// The page.
pub const INDEX_HTML: &str = include_str!("../viewer/index.html");
/// The script.
pub const VIEWER_JS: &str = include_str!("../viewer/viewer.js");
/// The style sheet.
pub const VIEWER_CSS: &str = include_str!("../viewer/viewer.css");

/// Where the page loads its style sheet; [`offline_page`] puts the style sheet there.
const STYLESHEET_LINK: &str = r#"<link rel="stylesheet" href="/viewer.css">"#;
/// Where the page loads its script; [`offline_page`] puts the trace and the script there.
const SCRIPT_TAG: &str = r#"<script src="/viewer.js"></script>"#;
/// What [`offline_page`] puts after the charset: nothing may be loaded, inline script and style only.
const OFFLINE_POLICY: &str = r#"<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">"#;

/// The viewer as one self-contained HTML page showing `trace` without a server: the style sheet and the script
/// inlined, and the trace as `/api/traces/{id}` answers it in a `<script type="application/json"
/// id="kelemetry-trace">` element (its display mode in `data-mode`), which the script renders instead of calling
/// the API (search and mode switch disabled). A content security policy in the page forbids every load, so it
/// opens from disk (`file://`) and reaches nothing.
pub fn offline_page(trace: &DisplayTrace) -> Result<String, serde_json::Error> {
    let answer = ApiResponse::ok(vec![Trace::from(trace)], 1);
    // `<` only occurs inside JSON strings, where `\u003c` means the same; so no `</script>` ends the element early.
    let data = serde_json::to_string(&answer)?.replace('<', "\\u003c");
    let mode = html_attribute(&trace.mode.to_string());
    let page = INDEX_HTML
        .replacen(
            "<meta charset=\"utf-8\">",
            &format!("<meta charset=\"utf-8\">\n{OFFLINE_POLICY}"),
            1,
        )
        .replacen(STYLESHEET_LINK, &format!("<style>\n{VIEWER_CSS}</style>"), 1)
        .replacen(
            SCRIPT_TAG,
            &format!(
                "<script type=\"application/json\" id=\"kelemetry-trace\" data-mode=\"{mode}\">{data}</script>\n<script>\n{VIEWER_JS}</script>"
            ),
            1,
        );
    Ok(page)
}

/// `text` as the value of a double-quoted HTML attribute.
fn html_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

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
        assert!(INDEX_HTML.contains(SCRIPT_TAG));
        assert!(INDEX_HTML.contains(STYLESHEET_LINK));
        assert!(INDEX_HTML.contains(r#"<meta charset="utf-8">"#));
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

    fn sample_trace() -> DisplayTrace {
        use crate::display::{DisplayKind, DisplayLog, DisplayMode, DisplaySpan};
        let start: jiff::Timestamp = "2026-11-28T01:35:00Z".parse().unwrap();
        DisplayTrace {
            trace_id: 0xff21_0000_00e1_e3e7_0000_0000_0000_0001,
            mode: DisplayMode::DEFAULT,
            spans: vec![DisplaySpan {
                span_id: 1,
                parent: None,
                kind: DisplayKind::Object,
                service: "deployments".into(),
                operation: "default/web".into(),
                start,
                end: start,
                tags: vec![("resource".into(), "deployments".into())],
                logs: vec![DisplayLog {
                    time: start,
                    fields: vec![("audit".into(), "</script><script>alert(1)</script>".into())],
                }],
                warnings: Vec::new(),
            }],
        }
    }

    #[test]
    fn the_offline_page_carries_everything_and_loads_nothing() {
        let trace = sample_trace();
        let page = offline_page(&trace).unwrap();
        // The style sheet and the script inline, nothing to load.
        assert!(page.contains(VIEWER_CSS) && page.contains(VIEWER_JS));
        for load in [
            " src=",
            " href=\"/",
            "http://",
            "https://",
            "@import",
            "url(",
        ] {
            assert!(!page.contains(load), "the exported page holds {load:?}");
        }
        assert!(page.contains(OFFLINE_POLICY));
        assert!(page.contains(&format!(r#"data-mode="{}""#, trace.mode)));
        // One element holds the embedded answer; a `</script>` inside a value does not end it.
        let data = &page[page.find(r#"id="kelemetry-trace""#).unwrap()..];
        let data = &data[data.find('>').unwrap() + 1..data.find("</script>").unwrap()];
        let answer: serde_json::Value = serde_json::from_str(data).unwrap();
        let expected = serde_json::to_value(ApiResponse::ok(vec![Trace::from(&trace)], 1)).unwrap();
        assert_eq!(answer, expected, "the answer /api/traces/{{id}} gives");
        assert_eq!(
            answer["data"][0]["spans"][0]["logs"][0]["fields"][0]["value"],
            "</script><script>alert(1)</script>"
        );
    }

    #[test]
    fn inlined_assets_cannot_end_their_element() {
        assert!(!VIEWER_JS.to_ascii_lowercase().contains("</script"));
        assert!(!VIEWER_JS.contains("<!--"));
        assert!(!VIEWER_CSS.to_ascii_lowercase().contains("</style"));
    }
}
