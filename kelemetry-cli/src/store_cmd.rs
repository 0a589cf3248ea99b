//! `kelemetry store repair DIR` and `kelemetry store check DIR`, and the hints the other commands give when a store
//! cannot be opened (docs/store.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use kelemetry_store::{SpanStore, StoreError};

use crate::CliError;

/// Arguments of `kelemetry store`.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Repair a store whose writer stopped in the middle of a write (killed, crashed, power lost), then verify the
    /// checksum of every page. Needs the store to itself: a running `kelemetry run` repairs its store when it
    /// opens it.
    Repair {
        /// The store folder.
        dir: PathBuf,
    },
    /// Check a store without changing it: open it read-only, read and decode every span. Works beside a running
    /// `kelemetry run`.
    Check {
        /// The store folder.
        dir: PathBuf,
    },
}

/// `kelemetry store`.
pub(crate) fn store(args: StoreArgs) -> Result<(), CliError> {
    match args.command {
        StoreCommand::Repair { dir } => {
            let report = SpanStore::repair(&dir).map_err(|source| CliError::Store {
                path: dir.clone(),
                source,
            })?;
            let what = match (report.repaired_on_open, report.repaired_by_check) {
                (false, false) => "clean, nothing to repair",
                (true, false) => "repaired (it had not been closed cleanly)",
                (false, true) => "repaired (the integrity check found damage)",
                (true, true) => {
                    "repaired (it had not been closed cleanly, and the integrity check found damage)"
                }
            };
            println!(
                "store {}: {what}; {} spans; took {}",
                dir.display(),
                report.spans,
                millis(report.took)
            );
            Ok(())
        }
        StoreCommand::Check { dir } => {
            let report = SpanStore::check(&dir).map_err(|source| CliError::Store {
                path: dir.clone(),
                source,
            })?;
            println!(
                "store {}: ok; {} spans, {} traces, {} objects, every span decoded; took {}",
                dir.display(),
                report.spans,
                report.traces,
                report.objects,
                millis(report.took)
            );
            Ok(())
        }
    }
}

/// `N ms`.
pub(crate) fn millis(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
}

/// What to do about a store error, appended to its message: how to repair a store that needs it, why another
/// process holds it. Empty for the other errors.
pub(crate) fn store_hint(source: &StoreError, dir: &Path) -> String {
    match source {
        StoreError::NeedsRepair { .. } => format!(
            "; repair it with `kelemetry store repair {}`, or start `kelemetry run` on it (a writer repairs the \
             store when it opens it)",
            dir.display()
        ),
        StoreError::InUse { .. } => "; `kelemetry run` shares its store with readers (`show`, `serve`, \
             `store check`), `kelemetry replay` and `store repair` need it to themselves: wait until the other \
             process is done"
            .to_owned(),
        _ => String::new(),
    }
}

/// Says on stderr that opening `store` repaired it, and how long that took.
pub(crate) fn announce_repair(store: &SpanStore) {
    if let Some(took) = store.repaired_on_open() {
        eprintln!(
            "kelemetry: store {} had not been closed cleanly (its writer stopped in the middle of a write); \
             repaired when opened, in {}",
            store.path().display(),
            millis(took)
        );
    }
}
