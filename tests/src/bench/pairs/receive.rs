//! A receiver of scenario `pairs`: a live `Chat.Connect` stream whose envelopes it decrypts,
//! acks cumulatively and counts (first deliveries with their latency, duplicates, deliveries
//! out of order, decryption failures).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::raw::authed;
use juntos_client::crypto::{CryptoError, IdentityKeyPair, InMemoryPrekeys, Session};
use juntos_proto::chat::v1::chat_client::ChatClient;
use juntos_proto::chat::v1::{
    ClientFrame, Envelope, Heartbeat, ServerFrame, client_frame, server_frame,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::Progress;
use super::device::Device;
use crate::bench::clock::{nanos_since, unix_ms};
use crate::bench::error::{BenchError, rpc};

/// A receiver acks after this many envelopes…
pub(super) const ACK_EVERY: u64 = 64;
/// …or after this long without a new one.
pub(super) const ACK_IDLE: Duration = Duration::from_millis(20);

/// What one receiver saw.
pub(super) struct ReceiveOutcome {
    /// Which sequence numbers arrived.
    pub(super) seen: Vec<bool>,
    /// Send-to-deliver latency of each first delivery, ns.
    pub(super) latencies_ns: Vec<u64>,
    pub(super) duplicates: u64,
    pub(super) reordered: u64,
    pub(super) decrypt_failures: u64,
    /// When the last new message arrived, ns on the run's clock.
    pub(super) last_delivery_ns: u64,
}

/// A receiver's live connection.
pub(super) struct Inbound {
    pub(super) frames: mpsc::Sender<ClientFrame>,
    pub(super) stream: tonic::Streaming<ServerFrame>,
}

impl Inbound {
    /// Opens `Chat.Connect` for `device`.
    pub(super) async fn connect(device: &Device) -> Result<Self, BenchError> {
        let (frames, outgoing) = mpsc::channel(64);
        let stream = ChatClient::new(device.channel.clone())
            .connect(authed(ReceiverStream::new(outgoing), &device.access_token))
            .await
            .map_err(rpc("Chat.Connect"))?
            .into_inner();
        Ok(Self { frames, stream })
    }

    /// Decrypts every envelope and acks cumulatively (every [`ACK_EVERY`] envelopes or after
    /// [`ACK_IDLE`] without one), until `stop`.
    pub(super) async fn run(
        mut self,
        identity: IdentityKeyPair,
        prekeys: InMemoryPrekeys,
        messages: u64,
        clock: Instant,
        progress: Arc<Progress>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<ReceiveOutcome, BenchError> {
        let mut outcome = ReceiveOutcome {
            seen: vec![false; messages as usize],
            latencies_ns: Vec::with_capacity(messages as usize),
            duplicates: 0,
            reordered: 0,
            decrypt_failures: 0,
            last_delivery_ns: 0,
        };
        let mut sessions: HashMap<String, Session> = HashMap::new();
        let mut highest_seq: Option<u64> = None;
        let mut last_mailbox_seq = 0;
        let mut unacked = 0u64;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                frame = self.stream.next() => {
                    let frame = match frame {
                        Some(Ok(ServerFrame { frame: Some(frame) })) => frame,
                        Some(Ok(ServerFrame { frame: None })) => continue,
                        Some(Err(status)) => {
                            return Err(BenchError::Rpc { what: "Chat.Connect stream", status });
                        }
                        None => break,
                    };
                    match frame {
                        server_frame::Frame::Envelope(envelope) => {
                            last_mailbox_seq = envelope.seq;
                            unacked += 1;
                            let opened = open(&envelope, &identity, &prekeys, &mut sessions);
                            let now_ns = nanos_since(clock);
                            match opened {
                                Ok((seq, sent_ns)) if seq < messages => {
                                    if outcome.seen[seq as usize] {
                                        outcome.duplicates += 1;
                                    } else {
                                        outcome.seen[seq as usize] = true;
                                        outcome.last_delivery_ns = now_ns;
                                        outcome.latencies_ns.push(now_ns.saturating_sub(sent_ns));
                                        progress.delivered.fetch_add(1, Ordering::Relaxed);
                                        if highest_seq.is_some_and(|h| seq < h) {
                                            outcome.reordered += 1;
                                        }
                                        highest_seq = highest_seq.max(Some(seq));
                                    }
                                }
                                Ok(_) => outcome.decrypt_failures += 1,
                                // The ratchet refuses a message key used before: a redelivery.
                                Err(CryptoError::Duplicate) => outcome.duplicates += 1,
                                Err(_) => outcome.decrypt_failures += 1,
                            }
                            if unacked >= ACK_EVERY {
                                self.ack(last_mailbox_seq).await;
                                unacked = 0;
                            }
                        }
                        server_frame::Frame::Heartbeat(_) => {
                            let beat = client_frame::Frame::Heartbeat(Heartbeat { time_ms: unix_ms() });
                            let _ = self.frames.send(ClientFrame { frame: Some(beat) }).await;
                        }
                        server_frame::Frame::Replaced(_) => {
                            return Err(BenchError::Setup("the receiver's connection was replaced".to_owned()));
                        }
                        // The bench follows nobody's presence.
                        server_frame::Frame::Presence(_) => {}
                    }
                }
                () = tokio::time::sleep(ACK_IDLE), if unacked > 0 => {
                    self.ack(last_mailbox_seq).await;
                    unacked = 0;
                }
            }
        }
        if unacked > 0 {
            self.ack(last_mailbox_seq).await;
        }
        Ok(outcome)
    }

    pub(super) async fn ack(&self, up_to: u64) {
        let frame = client_frame::Frame::AckUpTo(up_to);
        let _ = self.frames.send(ClientFrame { frame: Some(frame) }).await;
    }
}

/// Decrypts an envelope (accepting the session on the first message from its device); the
/// sequence number and send time the payload carries.
pub(super) fn open(
    envelope: &Envelope,
    identity: &IdentityKeyPair,
    prekeys: &InMemoryPrekeys,
    sessions: &mut HashMap<String, Session>,
) -> Result<(u64, u64), CryptoError> {
    let plaintext = match sessions.get_mut(&envelope.sender_device_id) {
        Some(session) => session.decrypt(&envelope.ciphertext, unix_ms())?,
        None => {
            let accepted = Session::accept(identity, prekeys, &envelope.ciphertext, unix_ms())?;
            sessions.insert(envelope.sender_device_id.clone(), accepted.session);
            accepted.plaintext
        }
    };
    let header = |range: std::ops::Range<usize>| {
        plaintext
            .get(range)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .ok_or(CryptoError::InvalidMessage)
    };
    Ok((header(0..8)?, header(8..16)?))
}
