//! A text rendering of a [`DisplayTrace`] for terminals: the object tree, each object's activities beneath it.

use std::fmt::Write as _;

use crate::display::{DisplayLog, DisplaySpan, DisplayTrace};

/// How much to print.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TextOptions {
    /// Longest value printed of a snapshot; longer ones are cut and their size given.
    pub max_snapshot_chars: usize,
}

impl Default for TextOptions {
    fn default() -> Self {
        Self {
            max_snapshot_chars: 160,
        }
    }
}

/// Renders `trace` as an indented tree.
///
/// ```text
/// local deployments px / 2021-05-19 09:42:58..09:43:07  [tracing [full tree]]  2021-05-19 09:42:58..09:43:07
/// │ 09:42:58.640  event ScalingReplicaSet  source=deployment-controller
/// │               message: Scaled up replica set px-5d567cc74c to 1
/// └── replicasets px-5d567cc74c
///     │ ...
/// ```
pub fn render(trace: &DisplayTrace, options: TextOptions) -> String {
    let mut out = String::new();
    let Some(root) = trace.spans.first() else {
        return "(empty trace)\n".to_owned();
    };
    let _ = writeln!(
        out,
        "{} {}  [{}]  {}",
        root.service,
        root.operation,
        trace.mode,
        crate::display::time_range_text(root.start, root.end),
    );
    let _ = writeln!(out, "trace id {:032x}", trace.trace_id);
    // The view's own notes: objects left out, extension providers that failed or ran late.
    for warning in &root.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    render_body(trace, root, "", options, &mut out);
    out
}

fn render_body(
    trace: &DisplayTrace,
    span: &DisplaySpan,
    prefix: &str,
    options: TextOptions,
    out: &mut String,
) {
    let children: Vec<&DisplaySpan> = trace.children_of(span.span_id).collect();
    let gutter = if children.is_empty() { "  " } else { "│ " };
    for log in &span.logs {
        render_log(log, &format!("{prefix}{gutter}"), options, out);
    }
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let (branch, next) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        let class = child
            .tags
            .iter()
            .find(|(k, _)| k == kelemetry_core::vocabulary::LINK_CLASS)
            .map(|(_, c)| format!("  ({c})"))
            .unwrap_or_default();
        // Spans of other backends are requests and calls: how long they took is what one reads them for.
        let class = if child.kind == crate::display::DisplayKind::Extension {
            let micros = child.end.duration_since(child.start).as_micros();
            format!("{class}  {:.1} ms", micros as f64 / 1000.0)
        } else {
            class
        };
        let _ = writeln!(
            out,
            "{prefix}{branch}{} {}{class}",
            child.service, child.operation
        );
        render_body(trace, child, &format!("{prefix}{next}"), options, out);
    }
}

fn render_log(log: &DisplayLog, prefix: &str, options: TextOptions, out: &mut String) {
    let time = log.time.strftime("%H:%M:%S%.3f").to_string();
    let indent = " ".repeat(time.len() + 2);
    let mut fields = log.fields.iter();
    let Some((source, title)) = fields.next() else {
        return;
    };
    let mut head = format!("{prefix}{time}  {source} {title}");
    let mut rest = Vec::new();
    for (name, value) in fields {
        match name.as_str() {
            // Said by the title already ("(Conflict)") or too long for a terminal line; kept in the data.
            "userAgent" | "sourceIP" | "responseCode" | "count" => {}
            "action" | "source" | "type" => {
                let _ = write!(head, "  {name}={value}");
            }
            "snapshot" => {
                let chars = value.chars().count();
                let shown = if chars > options.max_snapshot_chars {
                    let cut: String = value.chars().take(options.max_snapshot_chars).collect();
                    format!("{cut}… ({chars} chars)")
                } else {
                    value.to_string()
                };
                rest.push(("snapshot", shown));
            }
            "" => rest.push(("note", value.to_string())),
            other => rest.push((other, value.to_string())),
        }
    }
    let _ = writeln!(out, "{head}");
    for (name, value) in rest {
        let mut lines = value.lines();
        let first = lines.next().unwrap_or_default();
        let _ = writeln!(out, "{prefix}{indent}{name}: {first}");
        let continuation = " ".repeat(name.chars().count() + 2);
        for line in lines {
            let _ = writeln!(out, "{prefix}{indent}{continuation}{line}");
        }
    }
}
