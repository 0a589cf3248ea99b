//! A request body that must keep arriving: [`MinRateBody`] fails with [`BodyTooSlow`] once the bytes received fall
//! behind a minimum rate after a grace period (the rule of Apache's `mod_reqtimeout`: the deadline starts at the
//! grace and moves one second later for every `min_rate` bytes received).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use kelemetry_core::BoxError;
use tokio::time::{Instant, Sleep};

use super::WebhookMetrics;

/// The body arrived slower than the minimum rate.
#[derive(Debug, thiserror::Error)]
#[error(
    "the body arrived too slowly: {received} bytes in {elapsed:?}, below {min_rate} bytes/s after a grace of {grace:?}"
)]
pub(super) struct BodyTooSlow {
    received: u64,
    elapsed: Duration,
    min_rate: u64,
    grace: Duration,
}

/// Whether `error` or one of its sources is a [`BodyTooSlow`].
pub(super) fn is_too_slow(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<BodyTooSlow>() {
            return true;
        }
        next = error.source();
    }
    false
}

/// What the rate check of one server needs: the rule and where to count the bodies cut.
#[derive(Clone, Debug)]
pub(super) struct BodyRate {
    pub(super) min_rate: u64,
    pub(super) grace: Duration,
    pub(super) metrics: Arc<WebhookMetrics>,
}

/// `inner`, failing with [`BodyTooSlow`] when it falls behind the rate, timed from the first time it is read (a
/// request waiting for a read slot is not charged for the wait).
pub(super) struct MinRateBody<B> {
    inner: B,
    rate: BodyRate,
    clock: Option<Clock>,
}

/// When reading started, what arrived since, and the deadline for the next bytes.
struct Clock {
    started: Instant,
    received: u64,
    deadline: Pin<Box<Sleep>>,
}

impl<B> std::fmt::Debug for MinRateBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinRateBody")
            .field("received", &self.clock.as_ref().map(|c| c.received))
            .finish_non_exhaustive()
    }
}

impl<B> MinRateBody<B> {
    pub(super) fn new(inner: B, rate: BodyRate) -> Self {
        Self {
            inner,
            rate,
            clock: None,
        }
    }
}

impl Clock {
    fn start(grace: Duration) -> Self {
        let started = Instant::now();
        Self {
            started,
            received: 0,
            deadline: Box::pin(tokio::time::sleep_until(started + grace)),
        }
    }

    /// Counts `bytes` received and moves the deadline: the grace, plus one second for every `min_rate` bytes.
    fn received(&mut self, bytes: usize, rate: &BodyRate) {
        self.received += bytes as u64;
        let nanos = u128::from(self.received) * 1_000_000_000 / u128::from(rate.min_rate.max(1));
        let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let deadline = self.started + rate.grace + earned;
        self.deadline.as_mut().reset(deadline);
    }
}

impl<B> Body for MinRateBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let clock = this
            .clock
            .get_or_insert_with(|| Clock::start(this.rate.grace));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    clock.received(data.len(), &this.rate);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(clock.deadline.as_mut().poll(cx));
                this.rate
                    .metrics
                    .connections
                    .slow_bodies
                    .fetch_add(1, Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyTooSlow {
                    received: clock.received,
                    elapsed: clock.started.elapsed(),
                    min_rate: this.rate.min_rate,
                    grace: this.rate.grace,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn rate() -> BodyRate {
        BodyRate {
            min_rate: 100,
            grace: Duration::from_secs(2),
            metrics: Arc::default(),
        }
    }

    /// A body of `chunks` of 10 bytes, one every `every`.
    fn trickle(
        chunks: usize,
        every: Duration,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let stream = futures::stream::unfold(0, move |sent| async move {
            (sent < chunks).then_some(())?;
            tokio::time::sleep(every).await;
            Some((Ok(Frame::data(Bytes::from_static(b"0123456789"))), sent + 1))
        });
        StreamBody::new(Box::pin(stream))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_up_is_read_whole() {
        // 10 bytes every 50 ms: 200 bytes/s.
        let body = MinRateBody::new(trickle(100, Duration::from_millis(50)), rate());
        let bytes = body.collect().await.map(|c| c.to_bytes().len());
        assert_eq!(bytes.ok(), Some(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_falls_behind_is_cut_after_the_grace() {
        // 10 bytes every 500 ms: 20 bytes/s, allowed within the grace of 2 s, cut once behind 100 bytes/s after it.
        let rate = rate();
        let metrics = Arc::clone(&rate.metrics);
        let body = MinRateBody::new(trickle(100, Duration::from_millis(500)), rate);
        // Not charged for a wait before the body is read.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let started = Instant::now();
        let error = body.collect().await.expect_err("cut");
        assert!(is_too_slow(error.as_ref()), "{error}");
        // At 2 s it has 40 bytes, earning 0.4 s: the deadline of 2.4 s passes before the next chunk at 2.5 s.
        assert_eq!(started.elapsed(), Duration::from_millis(2400));
        assert_eq!(metrics.connections.slow_bodies.load(Relaxed), 1);
    }
}
