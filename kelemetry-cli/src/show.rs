//! `kelemetry show`, and what `show`, `export` and `diagnose` share: the object and its view as flags
//! ([`ViewArgs`]), opening the store ([`open_store`]).

use std::path::{Path, PathBuf};

use clap::Args;
use jiff::Timestamp;
use kelemetry_core::ObjectSelector;
use kelemetry_query::display::{BaseMode, Modifier};
use kelemetry_query::text::TextOptions;
use kelemetry_query::{DisplayMode, ShowError, Shown};
use kelemetry_store::SpanStore;

use crate::{CliError, DEFAULT_STORE};

/// The object and its view, as `show` and `export` take them.
#[derive(Debug, Args)]
pub(crate) struct ViewArgs {
    /// The object: RESOURCE/NAMESPACE/NAME, or RESOURCE/NAME for cluster-scoped objects. RESOURCE may name its
    /// group: `deployments.apps/default/web`.
    pub(crate) object: String,
    /// The cluster, when the store holds several with this object.
    #[arg(long)]
    pub(crate) cluster: Option<String>,
    /// Start of the time range (RFC 3339, e.g. 2024-05-01T12:00:00Z); default: the beginning.
    #[arg(long)]
    pub(crate) from: Option<Timestamp>,
    /// End of the time range (RFC 3339); default: the end.
    #[arg(long)]
    pub(crate) to: Option<Timestamp>,
    /// Include ancestors and descendants (owners, owned objects...).
    #[arg(long, conflicts_with_all = ["ancestors", "owned"])]
    pub(crate) full_tree: bool,
    /// Include the owners of the object.
    #[arg(long, conflicts_with = "owned")]
    pub(crate) ancestors: bool,
    /// Include the objects it owns.
    #[arg(long)]
    pub(crate) owned: bool,
    /// The display base: tracing (activities as lines of their object), tree (activities as spans), timeline or
    /// grouped.
    #[arg(long, default_value = "tracing")]
    pub(crate) mode: BaseMode,
    /// The store folder.
    #[arg(long, env = "KELEMETRY_STORE", default_value = DEFAULT_STORE)]
    pub(crate) store: PathBuf,
    /// Graft spans of other tracing backends (the apiserver's, a controller's) into the view, with the providers
    /// of this YAML file (docs/extension-traces.md).
    #[arg(long)]
    pub(crate) extensions: Option<PathBuf>,
}

impl ViewArgs {
    /// The display mode the flags name.
    pub(crate) fn display_mode(&self) -> DisplayMode {
        let modifier = if self.full_tree {
            Some(Modifier::FullTree)
        } else if self.ancestors {
            Some(Modifier::Ancestors)
        } else if self.owned {
            Some(Modifier::OwnedObjects)
        } else {
            None
        };
        DisplayMode {
            base: self.mode,
            modifier,
        }
    }

    /// The object's view, with the extension providers' spans grafted in when `--extensions` names any (what each
    /// provider did goes to standard error).
    pub(crate) async fn shown(&self) -> Result<Shown, CliError> {
        Ok(self.shown_with_store().await?.0)
    }

    /// [`Self::shown`], and the store (opened read-only) it was read from, to read more (the findings about it).
    pub(crate) async fn shown_with_store(&self) -> Result<(Shown, SpanStore), CliError> {
        let selector = parse_object(&self.object, self.cluster.clone())?;
        let extensions = self
            .extensions
            .as_deref()
            .map(crate::config::load_extensions)
            .transpose()?;
        let store = open_store(&self.store)?;
        let mut shown =
            kelemetry_query::show(&store, &selector, self.display_mode(), (self.from, self.to))
                .await
                .map_err(|err| query_error(err, &self.store))?;
        if let Some(extensions) = &extensions {
            let report = shown.graft(extensions).await;
            for (name, counts) in &report.providers {
                eprintln!(
                    "extension provider {name}: {} asked, {} answered, {} failed, {} late, {} spans grafted",
                    counts.asked, counts.answered, counts.failed, counts.late, counts.spans
                );
            }
        }
        Ok((shown, store))
    }
}

/// A failed `show` as the CLI says it: a missing object names the store.
pub(crate) fn query_error(err: ShowError, store: &Path) -> CliError {
    match err {
        ShowError::NotFound(_) => CliError::Query(format!("{err} at {}", store.display())),
        other => CliError::Query(other.to_string()),
    }
}

/// The store in `path`, opened read-only; a missing one says how to make one.
pub(crate) fn open_store(path: &Path) -> Result<SpanStore, CliError> {
    if !path.exists() {
        return Err(CliError::Usage(format!(
            "no store at {}; replay recordings first (kelemetry replay FILE...) or pass --store",
            path.display()
        )));
    }
    SpanStore::open_read_only(path).map_err(|source| CliError::Store {
        path: path.to_owned(),
        source,
    })
}

/// Arguments of `kelemetry show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The object and its view.
    #[command(flatten)]
    pub(crate) view: ViewArgs,
    /// Longest snapshot printed, in characters.
    #[arg(long, default_value_t = 160)]
    pub(crate) snapshot_chars: usize,
}

impl ShowArgs {
    /// The demo's view: the full tree of `object` in `store`.
    pub(crate) fn for_demo(object: &str, store: &Path) -> Self {
        Self {
            view: ViewArgs {
                object: object.to_owned(),
                cluster: None,
                from: None,
                to: None,
                full_tree: true,
                ancestors: false,
                owned: false,
                mode: BaseMode::Tracing,
                store: store.to_owned(),
                extensions: None,
            },
            snapshot_chars: 160,
        }
    }
}

/// The objects `text` names (`RESOURCE[.GROUP]/NAMESPACE/NAME` or `RESOURCE[.GROUP]/NAME`, see
/// [`ObjectSelector`]), in `cluster` when given.
pub(crate) fn parse_object(
    text: &str,
    cluster: Option<String>,
) -> Result<ObjectSelector, CliError> {
    let mut selector: ObjectSelector = text
        .parse()
        .map_err(|err: kelemetry_core::ParseSelectorError| CliError::Usage(err.to_string()))?;
    selector.cluster = cluster;
    Ok(selector)
}

/// `kelemetry show`.
pub(crate) async fn show(args: ShowArgs) -> Result<(), CliError> {
    let mut shown = args.view.shown().await?;
    shown.text = TextOptions {
        max_snapshot_chars: args.snapshot_chars,
    };
    print!("{shown}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_parse() {
        let p = parse_object("deployments.apps/default/web", None).unwrap();
        assert_eq!(
            (
                p.resource.as_deref(),
                p.group.as_deref(),
                p.namespace.as_deref()
            ),
            (Some("deployments"), Some("apps"), Some("default"))
        );
        let p = parse_object("nodes/n1", Some("prod".into())).unwrap();
        assert_eq!(
            (
                p.namespace.as_deref(),
                p.name.as_deref(),
                p.cluster.as_deref()
            ),
            (Some(""), Some("n1"), Some("prod"))
        );
        assert!(parse_object("a/b/c/d", None).is_err());
        assert!(parse_object("/ns/", None).is_err());
    }
}
