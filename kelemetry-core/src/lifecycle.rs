//! Stopping a process that runs a [`Pipeline`](crate::Pipeline): the usual signals as cancellation tokens.
//!
//! ```no_run
//! use kelemetry_core::{Pipeline, lifecycle};
//!
//! # async fn example(pipeline: Pipeline) {
//! let signals = lifecycle::shutdown_on_signals();
//! // The first SIGINT or SIGTERM drains the pipeline; a second one stops it at once.
//! let report = pipeline.run_until(signals.graceful, signals.immediate).await;
//! println!("stopped: {}", report.stop);
//! # }
//! ```

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Tokens cancelled by SIGINT and SIGTERM: the first signal cancels `graceful`, the second `immediate`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ShutdownSignals {
    /// Cancelled by the first signal: stop taking input, hand over and export what was accepted.
    pub graceful: CancellationToken,
    /// Cancelled by the second signal: stop now.
    pub immediate: CancellationToken,
}

/// Starts a task that turns SIGINT and SIGTERM into [`ShutdownSignals`]. Must be called inside a Tokio runtime.
/// The handlers are installed before this returns, so a signal that arrives right after is not missed. Where a
/// signal handler cannot be installed, that signal is not listened to (and a warning is logged).
pub fn shutdown_on_signals() -> ShutdownSignals {
    let signals = ShutdownSignals {
        graceful: CancellationToken::new(),
        immediate: CancellationToken::new(),
    };
    let mut listeners = Listeners::install();
    let (graceful, immediate) = (signals.graceful.clone(), signals.immediate.clone());
    tokio::spawn(async move {
        let name = listeners.next().await;
        tracing::info!(
            signal = name,
            "stopping: handing over and exporting what was accepted"
        );
        graceful.cancel();
        let name = listeners.next().await;
        tracing::warn!(signal = name, "second signal: stopping now");
        immediate.cancel();
    });
    signals
}

/// The SIGINT and SIGTERM streams (each absent if it could not be installed).
struct Listeners {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl Listeners {
    fn install() -> Self {
        let install = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(err) => {
                tracing::warn!(%err, "cannot listen to {name}");
                None
            }
        };
        Self {
            interrupt: install(SignalKind::interrupt(), "SIGINT"),
            terminate: install(SignalKind::terminate(), "SIGTERM"),
        }
    }

    /// Waits for the next SIGINT or SIGTERM; returns its name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            () = receive(&mut self.interrupt) => "SIGINT",
            () = receive(&mut self.terminate) => "SIGTERM",
        }
    }
}

/// The next signal of `stream`; never, without one.
async fn receive(stream: &mut Option<Signal>) {
    match stream {
        Some(stream) => {
            stream.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
