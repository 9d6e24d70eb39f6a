//! A sender of scenario `pairs`: encrypts its messages in order (sequence number and send time
//! in the payload) and keeps up to W `Chat.Send` calls in flight, retrying UNAVAILABLE,
//! RESOURCE_EXHAUSTED and ABORTED.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::raw::authed;
use juntos_client::crypto::Session;
use juntos_proto::chat::v1::chat_client::ChatClient;
use juntos_proto::chat::v1::{OutgoingEnvelope, SendRequest};
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use super::Progress;
use crate::bench::clock::{nanos_since, unix_ms};

/// Attempts per message when the server answers UNAVAILABLE or RESOURCE_EXHAUSTED.
pub(super) const SEND_ATTEMPTS: u32 = 5;
/// Payload header: 8-byte sequence number and 8-byte send time.
pub(super) const HEADER_BYTES: usize = 16;

/// What one sender saw.
pub(super) struct SendOutcome {
    /// Which sequence numbers the server acknowledged.
    pub(super) acked: Vec<bool>,
    pub(super) failures: u64,
    pub(super) retries: u64,
    /// When the first message was encrypted, ns on the run's clock.
    pub(super) first_send_ns: u64,
}

/// A sender's side of a pair.
pub(super) struct Outbound {
    pub(super) chat: ChatClient<Channel>,
    pub(super) access_token: String,
    pub(super) recipient_user_id: String,
    pub(super) recipient_device_id: String,
    pub(super) id_prefix: String,
}

impl Outbound {
    /// Encrypts `messages` messages one after the other (the ratchet is sequential) and keeps up
    /// to `window` sends in flight.
    pub(super) async fn run(
        self,
        mut session: Session,
        messages: u64,
        window: u32,
        payload_bytes: usize,
        clock: Instant,
        progress: Arc<Progress>,
    ) -> SendOutcome {
        let this = Arc::new(self);
        let in_flight = Arc::new(Semaphore::new(window as usize));
        let acked: Arc<Vec<AtomicBool>> =
            Arc::new((0..messages).map(|_| AtomicBool::new(false)).collect());
        let failures = Arc::new(AtomicU64::new(0));
        let retries = Arc::new(AtomicU64::new(0));
        let mut first_send_ns = None;
        let mut payload = vec![0u8; payload_bytes.max(HEADER_BYTES)];
        for seq in 0..messages {
            let permit = Arc::clone(&in_flight)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let sent_ns = nanos_since(clock);
            first_send_ns.get_or_insert(sent_ns);
            payload[..8].copy_from_slice(&seq.to_le_bytes());
            payload[8..16].copy_from_slice(&sent_ns.to_le_bytes());
            let ciphertext = match session.encrypt(&payload, unix_ms()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("juntos-bench: encrypt failed: {e}");
                    failures.fetch_add(1, Ordering::Relaxed);
                    progress.answered.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let request = SendRequest {
                client_msg_id: format!("{}{seq}", this.id_prefix),
                envelopes: vec![OutgoingEnvelope {
                    recipient_user_id: this.recipient_user_id.clone(),
                    recipient_device_id: this.recipient_device_id.clone(),
                    ciphertext,
                }],
            };
            let this = Arc::clone(&this);
            let acked = Arc::clone(&acked);
            let failures = Arc::clone(&failures);
            let retries = Arc::clone(&retries);
            let progress = Arc::clone(&progress);
            tokio::spawn(async move {
                let mut chat = this.chat.clone();
                for attempt in 1..=SEND_ATTEMPTS {
                    match chat.send(authed(request.clone(), &this.access_token)).await {
                        Ok(_) => {
                            acked[seq as usize].store(true, Ordering::Relaxed);
                            progress.acked.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(status) if attempt < SEND_ATTEMPTS && retryable(&status) => {
                            if retries.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("juntos-bench: Chat.Send will be retried: {status}");
                            }
                            tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
                        }
                        Err(status) => {
                            if failures.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("juntos-bench: Chat.Send failed: {status}");
                            }
                            break;
                        }
                    }
                }
                progress.answered.fetch_add(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        // Every send is answered once all permits are back.
        let _all = in_flight
            .acquire_many(window)
            .await
            .expect("the semaphore is never closed");
        SendOutcome {
            acked: acked.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
            failures: failures.load(Ordering::Relaxed),
            retries: retries.load(Ordering::Relaxed),
            first_send_ns: first_send_ns.unwrap_or(0),
        }
    }
}

pub(super) fn retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted | tonic::Code::Aborted
    )
}
