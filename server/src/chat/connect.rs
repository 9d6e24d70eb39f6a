//! `Chat.Connect`: a device's live stream.
//!
//! The server pushes the device's mailbox in order, keeping at most `push_window` envelopes
//! pushed and not yet acked, starting from the oldest envelope still stored, so everything
//! not acked before a disconnect is pushed again on the next connection (at-least-once; the
//! client drops duplicates). A cumulative `ack_up_to` deletes through that seq (one delete in
//! flight per stream; later acks coalesce). The mailbox is read again when the doorbell rings
//! and on every heartbeat tick, so a lost ring only delays delivery. The server sends a heartbeat
//! every `heartbeat` and ends the stream when nothing arrived from the client for
//! `idle_timeout`. A second stream of the same device replaces this one: this one gets a
//! `replaced` frame and ends. Shutdown ends every stream (clients reconnect elsewhere).

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::{Stream, StreamExt as _};
use juntos_proto::chat::v1::{
    ClientFrame, Envelope, Heartbeat, Replaced, ServerFrame, client_frame, server_frame,
};
use juntos_proto::meta::Caller;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::doorbell::Registration;
use super::error::Error;
use super::routes::Claim;
use super::service::ChatService;
use super::store::StoredEnvelope;

/// Most envelopes read from the mailbox at once.
const PAGE: usize = 256;
/// Room in the outgoing channel beyond the push window (heartbeats, the `replaced` frame).
const EXTRA_FRAMES: usize = 16;

/// The frames a `Connect` stream sends.
pub type ServerFrames = ReceiverStream<Result<ServerFrame, Status>>;

impl ChatService {
    /// `Chat.Connect` for `caller`: registers the device's stream (replacing an older one at
    /// once) and serves it from a spawned task until the client goes, is idle too long, is
    /// replaced, or the server shuts down.
    pub fn connect<S>(self: &Arc<Self>, caller: Caller, inbound: S) -> ServerFrames
    where
        S: Stream<Item = Result<ClientFrame, Status>> + Send + Unpin + 'static,
    {
        let (out, frames) = mpsc::channel(self.config.push_window + EXTRA_FRAMES);
        let registration = self.doorbell.register(&caller.device_id);
        let claim = self.routes.as_ref().map(|r| r.claim(&caller.device_id));
        let connection = Connection {
            service: Arc::clone(self),
            caller,
            registration,
            _claim: claim,
            out,
            in_flight: VecDeque::new(),
            pushed_up_to: 0,
            maybe_more: true,
            ack_wanted: 0,
            ack_sent: 0,
            acking: None,
        };
        tokio::spawn(connection.run(inbound));
        ReceiverStream::new(frames)
    }
}

/// Why a stream ends.
enum End {
    /// The client closed its side, went away or was idle too long; nothing more to say.
    Quiet,
    /// Another stream of the device took over.
    Replaced,
    /// A failure to report to the client.
    Failed(Status),
}

/// One device's stream.
struct Connection {
    service: Arc<ChatService>,
    caller: Caller,
    registration: Registration,
    /// This pod's route for the device in Redis, released after `registration` is dropped
    /// (fields drop in order).
    _claim: Option<Claim>,
    out: mpsc::Sender<Result<ServerFrame, Status>>,
    /// Seqs pushed and not acked yet, oldest first.
    in_flight: VecDeque<u64>,
    /// The highest seq pushed (or acked) on this stream; the next read starts after it.
    pushed_up_to: u64,
    /// Whether the mailbox may hold envelopes not pushed yet.
    maybe_more: bool,
    /// The highest `ack_up_to` received.
    ack_wanted: u64,
    /// The highest ack handed to the store.
    ack_sent: u64,
    /// The store's delete in progress.
    acking: Option<JoinHandle<()>>,
}

impl Connection {
    async fn run<S>(mut self, mut inbound: S)
    where
        S: Stream<Item = Result<ClientFrame, Status>> + Send + Unpin + 'static,
    {
        let config = &self.service.config;
        let (heartbeat, idle_timeout) = (config.heartbeat, config.idle_timeout);
        let mut ticks = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        let mut shutdown = self.service.shutdown.clone();

        let end = loop {
            if let Err(end) = self.fill().await {
                break end;
            }
            tokio::select! {
                biased;
                () = shutdown.wait() => break End::Quiet,
                () = self.registration.replaced() => break End::Replaced,
                frame = inbound.next() => match frame {
                    Some(Ok(frame)) => {
                        idle.as_mut().reset(Instant::now() + idle_timeout);
                        self.on_frame(frame);
                    }
                    // The client closed its side or the call broke.
                    Some(Err(_)) | None => break End::Quiet,
                },
                () = async { self.acking.as_mut().expect("guarded").await.unwrap_or_default() },
                    if self.acking.is_some() =>
                {
                    self.acking = None;
                    self.start_ack();
                }
                () = self.registration.rung() => self.maybe_more = true,
                _ = ticks.tick() => {
                    self.maybe_more = true;
                    let beat = frame(server_frame::Frame::Heartbeat(Heartbeat {
                        time_ms: self.service.clock.now_ms(),
                    }));
                    // A client too far behind to take a heartbeat does not need one.
                    let _ = self.out.try_send(Ok(beat));
                }
                () = &mut idle => {
                    tracing::debug!("closing an idle chat stream");
                    break End::Quiet;
                }
                () = self.out.closed() => break End::Quiet,
            }
        };
        match end {
            End::Quiet => {}
            End::Replaced => {
                let _ = self
                    .out
                    .try_send(Ok(frame(server_frame::Frame::Replaced(Replaced {}))));
            }
            End::Failed(status) => {
                let _ = self.out.try_send(Err(status));
            }
        }
    }

    /// Pushes from the mailbox while the window has room and more may be there.
    async fn fill(&mut self) -> Result<(), End> {
        let window = self.service.config.push_window;
        while self.maybe_more && self.in_flight.len() < window {
            // Never more than the channel holds right now, so the sends below cannot block
            // (a client acking what it has not read yet must not wedge this task).
            let room = self.out.capacity();
            if room == 0 {
                break;
            }
            let limit = (window - self.in_flight.len()).min(PAGE).min(room);
            let page = self
                .service
                .store
                .fetch(
                    &self.caller.device_id,
                    self.pushed_up_to,
                    u32::try_from(limit).expect("at most PAGE"),
                )
                .await
                .map_err(|e| End::Failed(Error::from(e).into()))?;
            self.maybe_more = page.more;
            for envelope in page.envelopes {
                self.pushed_up_to = envelope.seq;
                self.in_flight.push_back(envelope.seq);
                let pushed = frame(server_frame::Frame::Envelope(to_proto(envelope)));
                // Does not block: there is room for the whole page (checked above).
                if self.out.send(Ok(pushed)).await.is_err() {
                    return Err(End::Quiet);
                }
            }
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: ClientFrame) {
        match frame.frame {
            Some(client_frame::Frame::AckUpTo(seq)) => {
                while self.in_flight.front().is_some_and(|s| *s <= seq) {
                    self.in_flight.pop_front();
                }
                // An ack past what was pushed here (seen through `Sync`) deletes those too;
                // never push them again.
                self.pushed_up_to = self.pushed_up_to.max(seq);
                self.ack_wanted = self.ack_wanted.max(seq);
                self.start_ack();
            }
            // Any frame proves the client is there; the idle timer was reset already.
            Some(client_frame::Frame::Heartbeat(_)) | None => {}
        }
    }

    /// Hands the highest wanted ack to the store unless a delete is already running.
    fn start_ack(&mut self) {
        if self.acking.is_some() || self.ack_wanted <= self.ack_sent {
            return;
        }
        self.ack_sent = self.ack_wanted;
        let store = Arc::clone(&self.service.store);
        let (device_id, up_to) = (self.caller.device_id.clone(), self.ack_sent);
        self.acking = Some(tokio::spawn(async move {
            if let Err(e) = store.ack(&device_id, up_to).await {
                // The envelopes stay and are pushed again on the next connection.
                tracing::warn!(error = %e, "deleting acked envelopes failed");
            }
        }));
    }
}

fn frame(frame: server_frame::Frame) -> ServerFrame {
    ServerFrame { frame: Some(frame) }
}

/// The wire form of a stored envelope.
pub(super) fn to_proto(e: StoredEnvelope) -> Envelope {
    Envelope {
        seq: e.seq,
        sender_user_id: e.sender_user_id,
        sender_device_id: e.sender_device_id,
        client_msg_id: e.client_msg_id,
        server_time_ms: e.server_time_ms,
        ciphertext: e.ciphertext,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::chat::service::ChatConfig;
    use crate::chat::store::ChatStore as _;
    use crate::chat::test_support::{ALICE_TO_BOB, Fixture, Got, caller};

    fn envelope(seq: u64, body: &[u8]) -> Got {
        Got::Envelope {
            seq,
            body: body.to_vec(),
        }
    }

    async fn send_n(f: &Fixture, from: usize, to: usize) {
        let alice = caller("alice", "a1");
        for i in from..to {
            f.send(
                &alice,
                &format!("m{i}"),
                ALICE_TO_BOB,
                format!("{i}").as_bytes(),
            )
            .await
            .expect("send");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_doorbell_pushes_a_new_envelope_at_once() {
        let f = Fixture::new(); // heartbeats every 30 s: only the doorbell can wake the stream
        let mut b1 = f.connect(&caller("bob", "b1"));
        b1.assert_quiet().await;
        send_n(&f, 0, 1).await;
        assert_eq!(
            b1.next_within(Duration::from_secs(2)).await,
            envelope(1, b"0")
        );
        // The other device was not connected; its mailbox has it for later.
        assert_eq!(
            f.store
                .fetch("b2", 0, 10)
                .await
                .expect("fetch")
                .envelopes
                .len(),
            1
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_mailbox_is_pushed_in_order_within_the_window() {
        let f = Fixture::with_config(ChatConfig {
            push_window: 3,
            ..ChatConfig::default()
        });
        send_n(&f, 0, 5).await;
        let b1 = caller("bob", "b1");
        let mut stream = f.connect(&b1);
        for seq in 1..=3 {
            assert_eq!(
                stream.next().await,
                envelope(seq, format!("{}", seq - 1).as_bytes())
            );
        }
        stream.assert_quiet().await; // the window is full
        stream.ack(2).await;
        assert_eq!(stream.next().await, envelope(4, b"3"));
        assert_eq!(stream.next().await, envelope(5, b"4"));
        stream.assert_quiet().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_delete_and_unacked_envelopes_come_again_on_reconnect() {
        let f = Fixture::new();
        send_n(&f, 0, 3).await;
        let b1 = caller("bob", "b1");
        let mut first = f.connect(&b1);
        for seq in 1..=3 {
            assert!(matches!(first.next().await, Got::Envelope { seq: s, .. } if s == seq));
        }
        first.ack(1).await;
        // The delete happens behind the stream; wait for it.
        for _ in 0..100 {
            let left = f.store.fetch("b1", 0, 10).await.expect("fetch").envelopes;
            if left.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left: Vec<u64> = f
            .store
            .fetch("b1", 0, 10)
            .await
            .expect("fetch")
            .envelopes
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(left, [2, 3]);
        drop(first);
        let mut second = f.connect(&b1);
        assert_eq!(second.next().await, envelope(2, b"1"));
        assert_eq!(second.next().await, envelope(3, b"2"));
        second.assert_quiet().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_connection_replaces_the_first() {
        let f = Fixture::new();
        let b1 = caller("bob", "b1");
        let mut first = f.connect(&b1);
        let mut second = f.connect(&b1);
        assert_eq!(first.next().await, Got::Replaced);
        assert_eq!(first.next().await, Got::End);
        send_n(&f, 0, 1).await;
        assert_eq!(second.next().await, envelope(1, b"0"));
        // Other devices are separate streams.
        let mut b2 = f.connect(&caller("bob", "b2"));
        assert_eq!(b2.next().await, envelope(1, b"0"));
        second.assert_quiet().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn heartbeats_flow_and_a_silent_client_is_dropped() {
        let f = Fixture::with_config(ChatConfig {
            heartbeat: Duration::from_millis(50),
            idle_timeout: Duration::from_millis(300),
            ..ChatConfig::default()
        });
        let mut talking = f.connect(&caller("bob", "b1"));
        let mut silent = f.connect(&caller("bob", "b2"));
        assert_eq!(
            talking.next_within(Duration::from_secs(2)).await,
            Got::Heartbeat
        );
        // The talking client answers heartbeats for longer than the idle timeout.
        let started = tokio::time::Instant::now();
        while started.elapsed() < Duration::from_millis(600) {
            talking.heartbeat().await;
            match talking.next_within(Duration::from_millis(200)).await {
                Got::Heartbeat | Got::Nothing => {}
                got => panic!("the talking stream got {got:?}"),
            }
        }
        // The silent one was closed after its idle timeout.
        let mut ended = false;
        for _ in 0..40 {
            match silent.next_within(Duration::from_secs(1)).await {
                Got::Heartbeat => continue,
                Got::End => {
                    ended = true;
                    break;
                }
                got => panic!("the silent stream got {got:?}"),
            }
        }
        assert!(ended);
        send_n(&f, 0, 1).await;
        assert_eq!(talking.next().await, envelope(1, b"0"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tick_finds_what_no_doorbell_announced() {
        let f = Fixture::with_config(ChatConfig {
            heartbeat: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(10),
            ..ChatConfig::default()
        });
        let mut b1 = f.connect(&caller("bob", "b1"));
        b1.assert_quiet().await;
        // Stored behind the service's back: no ring (as with a lost doorbell).
        f.store
            .send(crate::chat::store::SendBatch {
                sender_user_id: "alice".into(),
                sender_device_id: "a1".into(),
                client_msg_id: "quiet".into(),
                envelopes: vec![crate::chat::test_support::envelope("bob", "b1", b"q")],
                now_ms: 0,
            })
            .await
            .expect("send");
        assert_eq!(b1.next().await, envelope(1, b"q"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_ends_streams_and_a_closed_client_side_ends_its_stream() {
        let f = Fixture::new();
        let mut b1 = f.connect(&caller("bob", "b1"));
        let b2 = f.connect(&caller("bob", "b2"));
        let crate::chat::test_support::Stream { frames, mut out } = b2;
        drop(frames);
        assert!(
            tokio::time::timeout(
                Duration::from_secs(2),
                tokio_stream::StreamExt::next(&mut out)
            )
            .await
            .expect("ends")
            .is_none()
        );
        f.shutdown.fire();
        assert_eq!(b1.next().await, Got::End);
        assert_eq!(f.service.doorbell().connected(), 0);
    }
}
