//! `kelemetry show`.

use std::path::{Path, PathBuf};

use clap::Args;
use jiff::Timestamp;
use kelemetry_core::ObjectSelector;
use kelemetry_query::display::{BaseMode, Modifier};
use kelemetry_query::text::TextOptions;
use kelemetry_query::{DisplayMode, ShowError};
use kelemetry_store::SpanStore;

use crate::{CliError, DEFAULT_STORE};

/// Arguments of `kelemetry show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
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
    /// The store folder.
    #[arg(long, env = "KELEMETRY_STORE", default_value = DEFAULT_STORE)]
    pub(crate) store: PathBuf,
    /// Longest snapshot printed, in characters.
    #[arg(long, default_value_t = 160)]
    pub(crate) snapshot_chars: usize,
    /// The display base: tracing (activities as lines of their object), tree (activities as spans), timeline or
    /// grouped.
    #[arg(long, default_value = "tracing")]
    pub(crate) mode: BaseMode,
    /// Graft spans of other tracing backends (the apiserver's, a controller's) into the view, with the providers
    /// of this YAML file (docs/extension-traces.md).
    #[arg(long)]
    pub(crate) extensions: Option<PathBuf>,
}

impl ShowArgs {
    /// The demo's view: the full tree of `object` in `store`.
    pub(crate) fn for_demo(object: &str, store: &Path) -> Self {
        Self {
            object: object.to_owned(),
            cluster: None,
            from: None,
            to: None,
            full_tree: true,
            ancestors: false,
            owned: false,
            store: store.to_owned(),
            snapshot_chars: 160,
            mode: BaseMode::Tracing,
            extensions: None,
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
    let selector = parse_object(&args.object, args.cluster.clone())?;
    let extensions = args
        .extensions
        .as_deref()
        .map(crate::config::load_extensions)
        .transpose()?;
    if !args.store.exists() {
        return Err(CliError::Usage(format!(
            "no store at {}; replay recordings first (kelemetry replay FILE...) or pass --store",
            args.store.display()
        )));
    }
    let store = SpanStore::open_read_only(&args.store).map_err(|source| CliError::Store {
        path: args.store.clone(),
        source,
    })?;
    let modifier = if args.full_tree {
        Some(Modifier::FullTree)
    } else if args.ancestors {
        Some(Modifier::Ancestors)
    } else if args.owned {
        Some(Modifier::OwnedObjects)
    } else {
        None
    };
    let mode = DisplayMode {
        base: args.mode,
        modifier,
    };
    let mut shown = kelemetry_query::show(&store, &selector, mode, (args.from, args.to))
        .await
        .map_err(|err| match err {
            ShowError::NotFound(_) => CliError::Query(format!("{err} at {}", args.store.display())),
            other => CliError::Query(other.to_string()),
        })?;
    if let Some(extensions) = &extensions {
        shown.graft(extensions).await;
    }
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
