//! The read side in one call: [`show`] finds the one object a selector names, assembles its view in a display mode
//! and returns it, printable as the text tree (`kelemetry show` prints exactly this).
//!
//! ```
//! use kelemetry_query::{DisplayMode, Modifier, show};
//!
//! # async fn example(store: &kelemetry_store::SpanStore) -> Result<(), Box<dyn std::error::Error>> {
//! let mode = DisplayMode::TRACING.with_modifier(Modifier::FullTree);
//! let shown = show(store, &"deployments/default/web".parse()?, mode, (None, None)).await?;
//! print!("{shown}");
//! # Ok(())
//! # }
//! ```

use std::fmt;

use jiff::Timestamp;
use kelemetry_core::{ObjectKey, ObjectSelector};

use crate::assemble::{AssembleError, TraceView, ViewRequest, assemble};
use crate::display::{DisplayMode, DisplayTrace, display};
use crate::extension::{Extensions, GraftReport};
use crate::reader::{ReadError, Reader};
use crate::text::{self, TextOptions};

/// How many matches an ambiguous selector reports.
const MAX_MATCHES: usize = 20;

/// An object's view in one display mode.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Shown {
    /// The assembled view (objects, activities, links).
    pub view: TraceView,
    /// The view in the display mode.
    pub trace: DisplayTrace,
    /// How the text form is written.
    pub text: TextOptions,
}

impl Shown {
    /// Grafts the spans `extensions` find for the view's objects and activities into [`Shown::trace`]
    /// ([`Extensions::graft`]).
    pub async fn graft(&mut self, extensions: &Extensions) -> GraftReport {
        extensions.graft(&self.view, &mut self.trace).await
    }
}

impl fmt::Display for Shown {
    /// The text tree ([`text::render`]), the view's warnings (linked objects left out when the link budget ran
    /// out, extension providers that failed) under its first lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&text::render(&self.trace, self.text))
    }
}

/// Why [`show`] has nothing to show.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShowError {
    /// No object matches.
    #[error("no object {0} in the store")]
    NotFound(ObjectSelector),
    /// Several objects match; the selector should name the group or the cluster.
    #[error(
        "{selector} matches several objects; name the group (RESOURCE.GROUP/...) or the cluster: {}",
        matches.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous {
        /// The selector.
        selector: ObjectSelector,
        /// Some of the objects it matches.
        matches: Vec<ObjectKey>,
    },
    /// Reading failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Assembling the view failed.
    #[error(transparent)]
    Assemble(#[from] AssembleError),
}

/// The one object `selector` names, in `mode`, from `from` to `to` (each open when `None`).
pub async fn show(
    reader: &dyn Reader,
    selector: &ObjectSelector,
    mode: DisplayMode,
    (from, to): (Option<Timestamp>, Option<Timestamp>),
) -> Result<Shown, ShowError> {
    let mut found = reader.find_objects(selector, MAX_MATCHES).await?;
    let key = match found.len() {
        0 => return Err(ShowError::NotFound(selector.clone())),
        1 => found.remove(0),
        _ => {
            return Err(ShowError::Ambiguous {
                selector: selector.clone(),
                matches: found,
            });
        }
    };
    let mut request = ViewRequest::new(key);
    request.selector = mode.selector();
    if let Some(from) = from {
        request.from = from;
    }
    if let Some(to) = to {
        request.to = to;
    }
    let view = assemble(reader, &request).await?;
    let trace = display(&view, mode);
    Ok(Shown {
        view,
        trace,
        text: TextOptions::default(),
    })
}
