//! `kelemetry store repair DIR`, `kelemetry store check DIR` and `kelemetry store import DIR FILE...`, and the hints the other commands give when a store
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
    /// Write the spans of OTLP/JSON lines files (what the `jsonLines` exporter writes, one export request a line)
    /// into a store: to gather what several `process` replicas exported into one place to view. A span already in
    /// the store (the same trace and span id, as an activity delivered twice has) is kept once. Needs the store to
    /// itself.
    Import {
        /// The store folder (made when missing).
        dir: PathBuf,
        /// The files to read, in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// The longest line `store import` reads (the exporter writes at most 512 spans a line).
const IMPORT_LINE_LIMIT: u64 = 256 << 20;

/// `kelemetry store import`: every span of `files` into the store at `dir`; a line that is not OTLP/JSON is an
/// error naming its file and line (what was imported before it stays).
fn import(dir: &Path, files: &[PathBuf]) -> Result<(), CliError> {
    use std::io::BufRead as _;
    let store = SpanStore::create(dir).map_err(|source| CliError::Store {
        path: dir.to_owned(),
        source,
    })?;
    let started = std::time::Instant::now();
    let (mut spans, mut lines) = (0usize, 0usize);
    for file in files {
        let io = |source| CliError::Io {
            path: file.clone(),
            source,
        };
        let mut reader = std::io::BufReader::new(std::fs::File::open(file).map_err(io)?);
        let mut line = String::new();
        for number in 1.. {
            line.clear();
            let read = std::io::Read::take(&mut reader, IMPORT_LINE_LIMIT + 1)
                .read_line(&mut line)
                .map_err(io)?;
            if read == 0 {
                break;
            }
            let at = || format!("{}:{number}", file.display());
            if read as u64 > IMPORT_LINE_LIMIT {
                return Err(CliError::Usage(format!(
                    "{}: a line longer than {IMPORT_LINE_LIMIT} bytes",
                    at()
                )));
            }
            if line.trim().is_empty() {
                continue;
            }
            let records = kelemetry_core::otlp::span_records_from_json(&line)
                .map_err(|err| CliError::Usage(format!("{}: {err}", at())))?;
            store
                .write_spans(&records)
                .map_err(|source| CliError::Store {
                    path: dir.to_owned(),
                    source,
                })?;
            spans += records.len();
            lines += 1;
        }
    }
    println!(
        "store {}: imported from {} file(s): {spans} spans, {lines} lines; took {}",
        dir.display(),
        files.len(),
        millis(started.elapsed())
    );
    Ok(())
}

/// `kelemetry store`.
pub(crate) fn store(args: StoreArgs) -> Result<(), CliError> {
    match args.command {
        StoreCommand::Import { dir, files } => import(&dir, &files),
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
