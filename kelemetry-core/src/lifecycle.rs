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
/// Where a signal handler cannot be installed, that signal is not listened to (and a warning is logged).
pub fn shutdown_on_signals() -> ShutdownSignals {
    let signals = ShutdownSignals {
        graceful: CancellationToken::new(),
        immediate: CancellationToken::new(),
    };
    let (graceful, immediate) = (signals.graceful.clone(), signals.immediate.clone());
    tokio::spawn(async move {
        let name = next_signal().await;
        tracing::info!(
            signal = name,
            "stopping: handing over and exporting what was accepted"
        );
        graceful.cancel();
        let name = next_signal().await;
        tracing::warn!(signal = name, "second signal: stopping now");
        immediate.cancel();
    });
    signals
}

/// Waits for SIGINT or SIGTERM; returns its name.
async fn next_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};

    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!(%err, "cannot listen to SIGTERM");
            None
        }
    };
    let terminated = async {
        match &mut terminate {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        () = terminated => "SIGTERM",
    }
}
