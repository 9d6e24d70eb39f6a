//! Fixtures for the chat service's unit tests: a real SQLite store in a temporary directory, a
//! fake directory with two users, and a manual clock.

use std::sync::Arc;
use std::time::Duration;

use juntos_clock::ManualClock;
use juntos_proto::chat::v1::{ClientFrame, ServerFrame, client_frame, server_frame};
use juntos_proto::meta::Caller;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use juntos_store::{ShutdownTrigger, shutdown_channel};

use crate::directory::FakeDirectory;
use crate::service::connect::ServerFrames;
use crate::service::{ChatConfig, ChatService};
use crate::store::sqlite::SqliteChatStore;
use crate::store::{ChatStore, OutgoingEnvelope, StoredEnvelope};

pub(crate) const T0: i64 = 1_750_000_000_000;

/// A chat service whose directory knows `alice` (devices `a1`, `a2`) and `bob` (`b1`, `b2`).
pub(crate) struct Fixture {
    pub service: Arc<ChatService>,
    pub directory: Arc<FakeDirectory>,
    pub store: Arc<SqliteChatStore>,
    pub clock: Arc<ManualClock>,
    pub shutdown: ShutdownTrigger,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_config(ChatConfig::default())
    }

    pub fn with_config(config: ChatConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteChatStore::open(&dir.path().join("chat.db")).expect("open"));
        let directory = Arc::new(FakeDirectory::default());
        directory.set("alice", &["a1", "a2"]);
        directory.set("bob", &["b1", "b2"]);
        let clock = ManualClock::new(T0);
        let (trigger, shutdown) = shutdown_channel();
        let service = ChatService::new(
            config,
            Arc::clone(&store) as _,
            Arc::clone(&directory) as _,
            Arc::clone(&clock) as _,
            shutdown,
            None,
        );
        Self {
            service,
            directory,
            store,
            clock,
            shutdown: trigger,
            _dir: dir,
        }
    }

    /// Sends `body` from `from` to the listed `(user, device)` recipients.
    pub async fn send(
        &self,
        from: &Caller,
        id: &str,
        to: &[(&str, &str)],
        body: &[u8],
    ) -> Result<i64, Status> {
        let envelopes = to.iter().map(|(u, d)| envelope(u, d, body)).collect();
        self.service
            .send(from, id.to_owned(), envelopes)
            .await
            .map_err(Status::from)
    }

    /// Every envelope in `device`'s mailbox.
    pub async fn mailbox(&self, device: &str) -> Vec<StoredEnvelope> {
        mailbox(&*self.store, device).await
    }

    /// Opens a `Connect` stream for `caller`.
    pub fn connect(&self, caller: &Caller) -> Stream {
        let (frames, inbound) = mpsc::channel(64);
        let out = self
            .service
            .connect(caller.clone(), ReceiverStream::new(inbound));
        Stream { frames, out }
    }
}

/// Alice's `a1`, Bob's `b1` and so on.
pub(crate) fn caller(user: &str, device: &str) -> Caller {
    Caller {
        user_id: user.into(),
        device_id: device.into(),
        session_id: format!("s-{device}"),
    }
}

pub(crate) fn envelope(user: &str, device: &str, body: &[u8]) -> OutgoingEnvelope {
    OutgoingEnvelope {
        recipient_user_id: user.into(),
        recipient_device_id: device.into(),
        ciphertext: bytes::Bytes::copy_from_slice(body),
    }
}

/// Everything Alice's `a1` must address when writing to Bob.
pub(crate) const ALICE_TO_BOB: &[(&str, &str)] = &[("bob", "b1"), ("bob", "b2"), ("alice", "a2")];

/// A test's end of a `Connect` stream.
pub(crate) struct Stream {
    pub frames: mpsc::Sender<Result<ClientFrame, Status>>,
    pub out: ServerFrames,
}

/// What a server frame was, for assertions.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Got {
    Envelope {
        seq: u64,
        body: Vec<u8>,
    },
    Heartbeat,
    Replaced,
    Presence {
        user: String,
        visible: bool,
        online: bool,
        last_seen_ms: i64,
    },
    Error(tonic::Code),
    End,
    Nothing,
}

impl Stream {
    /// The next frame within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Got {
        match tokio::time::timeout(wait, self.out.next()).await {
            Err(_) => Got::Nothing,
            Ok(None) => Got::End,
            Ok(Some(Err(status))) => Got::Error(status.code()),
            Ok(Some(Ok(ServerFrame { frame }))) => match frame {
                Some(server_frame::Frame::Envelope(e)) => Got::Envelope {
                    seq: e.seq,
                    body: e.ciphertext,
                },
                Some(server_frame::Frame::Heartbeat(_)) => Got::Heartbeat,
                Some(server_frame::Frame::Replaced(_)) => Got::Replaced,
                Some(server_frame::Frame::Presence(p)) => Got::Presence {
                    user: p.user_id,
                    visible: p.visible,
                    online: p.online,
                    last_seen_ms: p.last_seen_ms,
                },
                None => panic!("empty server frame"),
            },
        }
    }

    /// The next frame that is not a heartbeat, within a generous time.
    pub async fn next(&mut self) -> Got {
        loop {
            match self.next_within(Duration::from_secs(5)).await {
                Got::Heartbeat => continue,
                got => return got,
            }
        }
    }

    /// Asserts nothing but heartbeats comes for a short while.
    pub async fn assert_quiet(&mut self) {
        let until = tokio::time::Instant::now() + Duration::from_millis(150);
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Got::Nothing => return,
                Got::Heartbeat => continue,
                got => panic!("expected nothing, got {got:?}"),
            }
        }
    }

    pub async fn ack(&self, seq: u64) {
        self.frames
            .send(Ok(ClientFrame {
                frame: Some(client_frame::Frame::AckUpTo(seq)),
            }))
            .await
            .expect("stream open");
    }

    /// Follows the presence of `users`.
    pub async fn follow(&self, users: &[&str]) {
        self.frames
            .send(Ok(ClientFrame {
                frame: Some(client_frame::Frame::SubscribePresence(
                    juntos_proto::chat::v1::SubscribePresence {
                        user_ids: users.iter().map(|u| (*u).to_owned()).collect(),
                    },
                )),
            }))
            .await
            .expect("stream open");
    }

    pub async fn heartbeat(&self) {
        self.frames
            .send(Ok(ClientFrame {
                frame: Some(client_frame::Frame::Heartbeat(Default::default())),
            }))
            .await
            .expect("stream open");
    }
}

/// Every envelope in `device`'s mailbox (up to a thousand), oldest first.
pub(crate) async fn mailbox(store: &dyn ChatStore, device: &str) -> Vec<StoredEnvelope> {
    store
        .fetch(device, 0, 1_000)
        .await
        .expect("fetch")
        .envelopes
}
