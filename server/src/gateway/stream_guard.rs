//! A response body that ends with a gRPC status of the gateway's own when its call must stop:
//! UNAVAILABLE when its upstream endpoint goes unhealthy or its connection breaks (so a client
//! holding a long-lived stream to a dead pod learns at once and reconnects, through the gateway,
//! to a healthy pod), and the status of a [`Stop`] future (UNAUTHENTICATED when the caller's
//! session is revoked or its token expires). Otherwise every frame, trailers included, passes
//! unchanged, and a trailers-only answer stays trailers-only.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::watch;

use super::{BoxError, ForwardBody, ResponseBody};

/// A future whose completion ends a call with the status it yields.
pub type Stop = Pin<Box<dyn Future<Output = tonic::Status> + Send>>;

/// Wraps an upstream response body.
pub struct StreamGuard {
    inner: ResponseBody,
    stop: Stop,
    /// Fired when the call is stopped, so the request side ends too.
    cut: Option<Cut>,
    ended: bool,
}

impl StreamGuard {
    /// Ends `inner` when `health` changes to unhealthy after this call (an endpoint already
    /// unhealthy, tried because no other was, is only cut when it recovers and fails again),
    /// or when the `session` future completes (then also firing its [`Cut`]).
    pub fn new(
        inner: ResponseBody,
        mut health: watch::Receiver<bool>,
        session: Option<(Stop, Cut)>,
    ) -> Self {
        health.mark_unchanged();
        let down = async move {
            loop {
                if health.changed().await.is_err() {
                    // The endpoint left the pool; its checker is gone, the stream may go on.
                    std::future::pending::<()>().await;
                }
                if !*health.borrow_and_update() {
                    return juntos_proto::error::status(
                        tonic::Code::Unavailable,
                        juntos_proto::error::reason::UPSTREAM_UNAVAILABLE,
                        "the service instance became unhealthy; reconnect",
                    );
                }
            }
        };
        let (stop, cut): (Stop, _) = match session {
            None => (Box::pin(down), None),
            Some((session, cut)) => (
                Box::pin(async move {
                    tokio::select! {
                        status = down => status,
                        status = session => status,
                    }
                }),
                Some(cut),
            ),
        };
        Self {
            inner,
            stop,
            cut,
            ended: false,
        }
    }

    fn end_with(&mut self, status: &tonic::Status) -> Frame<Bytes> {
        self.ended = true;
        if let Some(cut) = &self.cut {
            cut.fire();
        }
        // Drop the upstream answer now: its stream is reset rather than left to idle.
        self.inner = http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut trailers = HeaderMap::new();
        // A status always fits in headers; if not, the bare trailers still end the call.
        let _ = status.add_header(&mut trailers);
        Frame::trailers(trailers)
    }
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
        // The stop first: an upstream that always has a frame ready must not delay it.
        if let Poll::Ready(status) = this.stop.as_mut().poll(cx) {
            return Poll::Ready(Some(Ok(this.end_with(&status))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.ended = frame.is_trailers();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "upstream response broke off");
                let status = juntos_proto::error::status(
                    tonic::Code::Unavailable,
                    juntos_proto::error::reason::UPSTREAM_UNAVAILABLE,
                    "lost the connection to the service; reconnect",
                );
                Poll::Ready(Some(Ok(this.end_with(&status))))
            }
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // An upstream answer that is over before it starts (trailers-only: the status in the
        // headers) must reach the client the same way, as one HEADERS frame that ends the
        // stream; else the client sees headers, an empty DATA frame and no trailers, which
        // standard gRPC clients report as UNKNOWN.
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Ends a forwarded request body on demand (an upstream call whose caller may no longer make
/// it): the body fails, so the upstream stream is reset.
#[derive(Clone)]
pub struct Cut(watch::Sender<bool>);

impl Cut {
    pub fn new() -> Self {
        Self(watch::channel(false).0)
    }

    /// Ends every body wrapped by this cut.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// `body`, failing once the cut fires.
    pub fn wrap(&self, body: ForwardBody) -> ForwardBody {
        let mut fired = self.0.subscribe();
        let cut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            // An error means the sender went away: nothing can cut any more.
            if fired.wait_for(|cut| *cut).await.is_err() {
                std::future::pending::<()>().await;
            }
        });
        CutBody { inner: body, cut }.boxed_unsync()
    }
}

struct CutBody {
    inner: ForwardBody,
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Body for CutBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err("the call was ended by the gateway".into())));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
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

    fn pending_body() -> ResponseBody {
        http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, BoxError>,
        >())
        .boxed_unsync()
    }

    #[tokio::test]
    async fn a_stream_ends_with_unavailable_when_its_endpoint_goes_down() {
        let (health, rx) = watch::channel(true);
        let mut body = StreamGuard::new(pending_body(), rx, None);
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
    async fn a_trailers_only_answer_stays_trailers_only() {
        let (_health, rx) = watch::channel(true);
        let empty = http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let body = StreamGuard::new(empty, rx, None);
        assert!(body.is_end_stream(), "the response ends with its headers");
    }

    #[tokio::test]
    async fn a_stopped_session_ends_the_answer_and_cuts_the_request() {
        let (_health, rx) = watch::channel(true);
        let cut = Cut::new();
        let mut request = cut.wrap(pending_body());
        let (end, ended) = tokio::sync::oneshot::channel::<()>();
        let stop: Stop = Box::pin(async move {
            let _ = ended.await;
            tonic::Status::unauthenticated("session over")
        });
        let mut body = StreamGuard::new(pending_body(), rx, Some((stop, cut)));
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), body.frame()).await;
        assert!(
            waiting.is_err(),
            "the stream stays open while the session lasts"
        );
        end.send(()).expect("stop");
        let frame = body.frame().await.expect("a frame").expect("not an error");
        assert_eq!(
            frame.into_trailers().expect("trailers")["grpc-status"],
            "16"
        );
        assert!(body.frame().await.is_none());
        let cut_off = request.frame().await.expect("a frame");
        assert!(cut_off.is_err(), "the request to the service is cut");
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
        let mut body = StreamGuard::new(broken, rx, None);
        let frame = body.frame().await.expect("a frame").expect("not an error");
        assert_eq!(
            frame.into_trailers().expect("trailers")["grpc-status"],
            "14"
        );
    }
}
