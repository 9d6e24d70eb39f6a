//! A request body wrapper that refuses oversized gRPC messages while streaming.
//!
//! gRPC frames each message as a 1-byte compression flag, a 4-byte big-endian length, then the
//! payload. [`FrameLimit`] follows those headers as bytes pass through and fails the body as soon
//! as a header announces a message above the cap, so an oversized message is never buffered or
//! forwarded whole, whether the call is unary or a long-lived stream. [`OneMessage`] reads the
//! body of a call the gateway may have to send twice, refusing a second message, so what it
//! holds is bounded by the cap.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The body error when a message exceeds the cap.
#[derive(Debug, thiserror::Error)]
#[error("gRPC message of {size} bytes exceeds the limit of {limit} bytes")]
pub struct MessageTooLarge {
    pub size: usize,
    pub limit: usize,
}

/// Where the parser is within the gRPC framing.
#[derive(Debug, Clone, Copy)]
enum Position {
    /// Reading a 5-byte message header; `have` bytes of it seen, the length so far in `len`.
    Header { have: u8, len: u32 },
    /// Inside a message payload with `remaining` bytes to go.
    Payload { remaining: usize },
}

/// Wraps a gRPC request body and enforces a per-message size cap.
pub struct FrameLimit<B> {
    inner: B,
    limit: usize,
    position: Position,
    tripped: Arc<AtomicBool>,
}

impl<B> FrameLimit<B> {
    /// Wraps `inner`; `tripped` is set when the cap is hit, so the proxy can tell the client why
    /// the upstream call failed.
    pub fn new(inner: B, limit: usize, tripped: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            limit,
            position: Position::Header { have: 0, len: 0 },
            tripped,
        }
    }

    /// Advances the framing parser over `data`; an error when a header announces too much.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), MessageTooLarge> {
        while !data.is_empty() {
            match &mut self.position {
                Position::Header { have, len } => {
                    // Byte 0 is the compression flag; bytes 1..=4 the length.
                    if *have > 0 {
                        *len = (*len << 8) | u32::from(data[0]);
                    }
                    *have += 1;
                    data = &data[1..];
                    if *have == 5 {
                        let size = usize::try_from(*len).unwrap_or(usize::MAX);
                        if size > self.limit {
                            self.tripped.store(true, Ordering::SeqCst);
                            return Err(MessageTooLarge {
                                size,
                                limit: self.limit,
                            });
                        }
                        self.position = if size == 0 {
                            Position::Header { have: 0, len: 0 }
                        } else {
                            Position::Payload { remaining: size }
                        };
                    }
                }
                Position::Payload { remaining } => {
                    let take = (*remaining).min(data.len());
                    *remaining -= take;
                    data = &data[take..];
                    if *remaining == 0 {
                        self.position = Position::Header { have: 0, len: 0 };
                    }
                }
            }
        }
        Ok(())
    }
}

impl<B> Body for FrameLimit<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.scan(data)?;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a buffered request body could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// More than one gRPC message arrived.
    TooMany,
    /// Buffered requests already hold all the memory set aside for them.
    Busy,
    /// The body failed (the client went away, or a message was over the cap).
    Body(Box<dyn std::error::Error + Send + Sync>),
}

/// Reads a request body that must hold at most one gRPC message (a unary call).
pub struct OneMessage<B> {
    body: B,
}

impl<B> OneMessage<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// `body` should be a [`FrameLimit`], which refuses a message over the cap from its
    /// header, so what this holds is bounded by the cap.
    pub fn new(body: B) -> Self {
        Self { body }
    }

    /// The whole body: at most one message (5 header bytes and its payload), its size taken
    /// from `budget` (shared by every buffered request) as soon as its header announces it, so
    /// all buffered requests together never hold more than the budget.
    pub async fn read(mut self, budget: &Arc<Semaphore>) -> Result<Buffered, ReadError> {
        let mut buf = BytesMut::new();
        let mut permit = None;
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|e| ReadError::Body(e.into()))?;
            // Request trailers mean nothing in gRPC; only data counts.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            if buf.len() >= 5 {
                let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
                if permit.is_none() {
                    let bytes = len.saturating_add(5);
                    permit = Some(
                        Arc::clone(budget)
                            .try_acquire_many_owned(bytes)
                            .map_err(|_| ReadError::Busy)?,
                    );
                }
                let whole = usize::try_from(len).map_or(usize::MAX, |l| l.saturating_add(5));
                if buf.len() > whole {
                    return Err(ReadError::TooMany);
                }
            }
        }
        Ok(Buffered {
            bytes: buf.freeze(),
            _permit: permit,
        })
    }
}

/// A buffered request and its share of the buffering budget (given back on drop).
#[derive(Debug)]
pub struct Buffered {
    pub bytes: Bytes,
    _permit: Option<OwnedSemaphorePermit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(len: u32) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend(std::iter::repeat_n(7u8, len as usize));
        v
    }

    fn limit(cap: usize) -> FrameLimit<http_body_util::Empty<Bytes>> {
        FrameLimit::new(http_body_util::Empty::new(), cap, Arc::default())
    }

    fn body_of(chunks: Vec<Vec<u8>>) -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = chunks
            .into_iter()
            .map(|c| Ok(Frame::data(Bytes::from(c))))
            .collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn one_message_is_read_whole_and_a_second_is_refused() {
        let budget = Arc::new(Semaphore::new(1000));
        let one = framed(10);
        let read = OneMessage::new(body_of(one.chunks(3).map(<[u8]>::to_vec).collect()))
            .read(&budget)
            .await
            .expect("one message");
        assert_eq!(read.bytes.as_ref(), one.as_slice());
        assert_eq!(budget.available_permits(), 1000 - 15, "held while buffered");
        drop(read);
        assert_eq!(budget.available_permits(), 1000, "given back");
        let two = [framed(3), framed(3)].concat();
        let err = OneMessage::new(body_of(vec![two]))
            .read(&budget)
            .await
            .expect_err("two messages");
        assert!(matches!(err, ReadError::TooMany));
        let empty = OneMessage::new(body_of(Vec::new()))
            .read(&budget)
            .await
            .expect("no message");
        assert!(empty.bytes.is_empty());
        // More than the budget has left: refused before it is read.
        let small = Arc::new(Semaphore::new(10));
        let err = OneMessage::new(body_of(vec![framed(10)]))
            .read(&small)
            .await
            .expect_err("over budget");
        assert!(matches!(err, ReadError::Busy));
    }

    #[test]
    fn messages_at_the_cap_pass_in_any_chunking() {
        let stream: Vec<u8> = [framed(10), framed(0), framed(3)].concat();
        for chunk in 1..stream.len() {
            let mut l = limit(10);
            for part in stream.chunks(chunk) {
                l.scan(part).expect("within the cap");
            }
            assert!(matches!(l.position, Position::Header { have: 0, .. }));
        }
    }

    #[test]
    fn oversized_header_trips_even_when_split() {
        let stream: Vec<u8> = [framed(4), framed(11)].concat();
        let mut l = limit(10);
        let (a, b) = stream.split_at(11);
        l.scan(a).expect("first message fits");
        let err = l.scan(b).expect_err("second message is too large");
        assert_eq!(err.size, 11);
        assert!(l.tripped.load(Ordering::SeqCst));
    }
}
