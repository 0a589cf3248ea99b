//! The web viewer: a plain page (HTML, CSS, JavaScript in `kelemetry-query/viewer/`) embedded in the binary and
//! served beside the HTTP API, so that `kelemetry serve` needs no other service and the page loads nothing from
//! the network.
//!
//! - `GET /` (and `/trace/{id}`, where `/redirect` points): the page; its routes live in the URL's hash
//!   (`#/search?...`, `#/trace/<id>?span=...&mark=...`), so every view is a link that can be shared;
//! - `GET /viewer.js`, `GET /viewer.css`: the script and the style sheet.
//!
//! The page reads `/api/services` (display modes), `/api/operations` (clusters), `/api/traces` (search),
//! `/api/traces/{id}` and `/api/diagnose/{id}`, and draws a trace as a timeline: one row per object, its activities
//! as marks, the spans extension providers grafted in (`crate::extension`) as small waterfalls in the side panel of
//! their activity, and the findings of the automatic diagnosis (`crate::diagnose`) in a section above the timeline,
//! their evidence marks ringed.
//!
//! [`offline_page`] is the same page as one file that carries one trace and its findings (`kelemetry export
//! --html`): style sheet, script, the trace's `/api/traces/{id}` answer and the `/api/diagnose/{id}` answer inlined,
//! a content security policy that lets it load nothing, so that it opens from disk.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::diagnose::Finding;
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

/// The viewer as one self-contained HTML page showing `trace` and its `findings` without a server: the style sheet
/// and the script inlined; the trace as `/api/traces/{id}` answers it in a `<script type="application/json"
/// id="kelemetry-trace">` element (its display mode in `data-mode`) and the findings as `/api/diagnose/{id}` answers
/// in a `<script type="application/json" id="kelemetry-findings">` element, which the script renders instead of
/// calling the API (search and mode switch disabled). A content security policy in the page forbids every load, so
/// it opens from disk (`file://`) and reaches nothing.
pub fn offline_page(
    trace: &DisplayTrace,
    findings: &[Finding],
) -> Result<String, serde_json::Error> {
    let data = embedded_json(&ApiResponse::ok(vec![Trace::from(trace)], 1))?;
    let diagnosis = embedded_json(&ApiResponse::ok(findings, findings.len()))?;
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
                "<script type=\"application/json\" id=\"kelemetry-trace\" data-mode=\"{mode}\">{data}</script>\n\
                 <script type=\"application/json\" id=\"kelemetry-findings\">{diagnosis}</script>\n<script>\n{VIEWER_JS}</script>"
            ),
            1,
        );
    Ok(page)
}

/// `value` as JSON to put inside a `<script>` element: `<` only occurs inside JSON strings, where `\u003c` means the
/// same; so no `</script>` (nor `<!--`) in a value ends the element early.
fn embedded_json(value: &impl serde::Serialize) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_string(value)?.replace('<', "\\u003c"))
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
            "findings",
            "findings-summary",
            "findings-list",
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

    fn sample_finding() -> Finding {
        let at: jiff::Timestamp = "2026-11-28T01:35:00.123456Z".parse().unwrap();
        Finding {
            diagnoser: "failed-requests".into(),
            title: "alice: 4 requests failed with 403 Forbidden on </script><!-- (local)".into(),
            object: "deployments default/web (local)".into(),
            from: at,
            to: at,
            evidence: vec![crate::diagnose::Evidence {
                object: "deployments default/web (local)".into(),
                span_id: "0000000000000002".into(),
                time: at,
                activity: "audit alice patch (Forbidden)".into(),
                note: "403 Forbidden".into(),
            }],
            explanation: "each was answered 403".into(),
            next_steps: vec!["check the user's RoleBindings".into()],
        }
    }

    /// The text of the `<script type="application/json">` element with this id on `page`.
    fn embedded<'a>(page: &'a str, id: &str) -> &'a str {
        let data = &page[page.find(&format!(r#"id="{id}""#)).unwrap()..];
        &data[data.find('>').unwrap() + 1..data.find("</script>").unwrap()]
    }

    #[test]
    fn the_offline_page_carries_everything_and_loads_nothing() {
        let trace = sample_trace();
        let findings = vec![sample_finding()];
        let page = offline_page(&trace, &findings).unwrap();
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
        let answer: serde_json::Value =
            serde_json::from_str(embedded(&page, "kelemetry-trace")).unwrap();
        let expected = serde_json::to_value(ApiResponse::ok(vec![Trace::from(&trace)], 1)).unwrap();
        assert_eq!(answer, expected, "the answer /api/traces/{{id}} gives");
        assert_eq!(
            answer["data"][0]["spans"][0]["logs"][0]["fields"][0]["value"],
            "</script><script>alert(1)</script>"
        );
        // The findings beside it, as `/api/diagnose/{id}` answers, camelCase, whole.
        let text = embedded(&page, "kelemetry-findings");
        assert!(!text.contains('<'), "no markup inside the element: {text}");
        let answer: serde_json::Value = serde_json::from_str(text).unwrap();
        let expected = serde_json::to_value(ApiResponse::ok(&findings, 1)).unwrap();
        assert_eq!(answer, expected, "the answer /api/diagnose/{{id}} gives");
        assert_eq!(answer["total"], 1);
        assert_eq!(
            answer["data"][0]["evidence"][0]["spanId"],
            "0000000000000002"
        );
        assert_eq!(
            answer["data"][0]["nextSteps"][0],
            "check the user's RoleBindings"
        );
        let back: Vec<Finding> = serde_json::from_value(answer["data"].clone()).unwrap();
        assert_eq!(back, findings);
        // No findings: an empty list, not a missing element (the page says "no finding").
        let page = offline_page(&trace, &[]).unwrap();
        let answer: serde_json::Value =
            serde_json::from_str(embedded(&page, "kelemetry-findings")).unwrap();
        assert_eq!(answer["data"], serde_json::json!([]));
    }

    #[test]
    fn inlined_assets_cannot_end_their_element() {
        assert!(!VIEWER_JS.to_ascii_lowercase().contains("</script"));
        assert!(!VIEWER_JS.contains("<!--"));
        assert!(!VIEWER_CSS.to_ascii_lowercase().contains("</style"));
    }
}
