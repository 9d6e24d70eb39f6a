//! A response body that ends with grpc-status UNAVAILABLE when its upstream endpoint goes
//! unhealthy or its connection breaks, so a client holding a long-lived stream to a dead pod
//! learns at once and reconnects (through the gateway, to a healthy pod).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use tokio::sync::watch;

use super::{BoxError, ResponseBody};

/// Wraps an upstream response body.
pub struct StreamGuard {
    inner: ResponseBody,
    down: Pin<Box<dyn Future<Output = ()> + Send>>,
    ended: bool,
}

impl StreamGuard {
    /// Ends `inner` when `health` changes to unhealthy after this call (an endpoint already
    /// unhealthy, tried because no other was, is only cut when it recovers and fails again).
    pub fn new(inner: ResponseBody, mut health: watch::Receiver<bool>) -> Self {
        health.mark_unchanged();
        let down = Box::pin(async move {
            loop {
                if health.changed().await.is_err() {
                    // The endpoint left the pool; its checker is gone, the stream may go on.
                    std::future::pending::<()>().await;
                }
                if !*health.borrow_and_update() {
                    return;
                }
            }
        });
        Self {
            inner,
            down,
            ended: false,
        }
    }
}

/// Trailers that end a call with UNAVAILABLE.
fn unavailable(message: &str) -> Frame<Bytes> {
    let mut trailers = HeaderMap::new();
    let status = juntos_proto::error::status(
        tonic::Code::Unavailable,
        juntos_proto::error::reason::UPSTREAM_UNAVAILABLE,
        message,
    );
    // A status always fits in headers; if not, the bare trailers still end the call.
    let _ = status.add_header(&mut trailers);
    Frame::trailers(trailers)
}

impl Body for StreamGuard {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.ended = frame.is_trailers();
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "upstream response broke off");
                this.ended = true;
                return Poll::Ready(Some(Ok(unavailable(
                    "lost the connection to the service; reconnect",
                ))));
            }
            Poll::Ready(None) => {
                this.ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if this.down.as_mut().poll(cx).is_ready() {
            this.ended = true;
            return Poll::Ready(Some(Ok(unavailable(
                "the service instance became unhealthy; reconnect",
            ))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn pending_body() -> ResponseBody {
        http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, BoxError>,
        >())
        .boxed_unsync()
    }

    #[tokio::test]
    async fn a_stream_ends_with_unavailable_when_its_endpoint_goes_down() {
        let (health, rx) = watch::channel(true);
        let mut body = StreamGuard::new(pending_body(), rx);
        health.send_replace(true);
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), body.frame()).await;
        assert!(waiting.is_err(), "healthy: the stream stays open");
        health.send_replace(false);
        let frame = body.frame().await.expect("a frame").expect("not an error");
        let trailers = frame.into_trailers().expect("trailers");
        assert_eq!(trailers["grpc-status"], "14");
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_broken_upstream_ends_with_unavailable_not_a_reset() {
        let (_health, rx) = watch::channel(true);
        let broken = http_body_util::StreamBody::new(futures_util::stream::iter([Err::<
            Frame<Bytes>,
            BoxError,
        >(
            "reset".into(),
        )]))
        .boxed_unsync();
        let mut body = StreamGuard::new(broken, rx);
        let frame = body.frame().await.expect("a frame").expect("not an error");
        assert_eq!(
            frame.into_trailers().expect("trailers")["grpc-status"],
            "14"
        );
    }
}
