//! `kelemetry`: replay recorded audit logs and Kubernetes Events into an embedded store, and show the object tree
//! that explains what happened.

mod config;
mod diagnose;
mod export;
mod inputs;
mod readiness;
mod replay;
mod rules;
mod run;
mod serve;
mod show;
mod store_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// mimalloc: the pipeline allocates many short-lived strings and JSON values; glibc's allocator spent a third of
/// the replay's time in `malloc`/`free` (benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The default store folder, relative to the working directory.
const DEFAULT_STORE: &str = ".kelemetry/store";

/// Control-plane tracing for Kubernetes: every object a span, what happened to it its children.
#[derive(Debug, Parser)]
#[command(name = "kelemetry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay recorded audit logs and Kubernetes objects/Events into the store.
    Replay(replay::ReplayArgs),
    /// Print the trace view of one object as a tree.
    Show(show::ShowArgs),
    /// Write the trace view of one object to files: a self-contained HTML page, OTLP JSON.
    Export(export::ExportArgs),
    /// Find known failure patterns in an object's history (or every object's) and print them with their evidence.
    Diagnose(diagnose::DiagnoseArgs),
    /// Replay the recorded demo data into a fresh store and print the tree of its Deployment.
    Demo(replay::DemoArgs),
    /// Check linking rule files, print the built-in rules.
    Rules(rules::RulesArgs),
    /// Serve the Jaeger-shaped HTTP API over the store.
    Serve(serve::ServeArgs),
    /// Run a live pipeline from a configuration file (audit webhook, audit log, Events, object watch).
    Run(run::RunArgs),
    /// Repair or check a store folder.
    Store(store_cmd::StoreArgs),
}

/// What can go wrong, said so that the user knows which file or object and what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened or read; the message ends with what to do when there is something to do.
    #[error("store {}: {source}{}", path.display(), store_cmd::store_hint(source, path))]
    Store {
        /// The store folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: kelemetry_store::StoreError,
    },
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// The object is not in the store, or ambiguous.
    #[error("{0}")]
    Query(String),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("KELEMETRY_LOG").unwrap_or_else(|_| EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kelemetry: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Replay(args) => replay::replay(args).await,
            Command::Show(args) => show::show(args).await,
            Command::Export(args) => export::export(args).await,
            Command::Demo(args) => replay::demo(args).await,
            Command::Rules(args) => rules::rules(args),
            Command::Serve(args) => serve::serve(args).await,
            Command::Diagnose(args) => diagnose::diagnose(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Store(args) => store_cmd::store(args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kelemetry: {err}");
            ExitCode::FAILURE
        }
    }
}
