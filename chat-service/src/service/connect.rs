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
//!
//! The stream also carries presence: it marks its device online when it opens and every
//! heartbeat, and gone when it ends ([`super::presence`]). A client may follow up to
//! [`MAX_PRESENCE_USERS`] users with `subscribe_presence`: it gets the presence of each it may see
//! (the directory decides, on every look), then a frame whenever one changes. A look happens on
//! subscribing, when a followed user goes online or offline, and every heartbeat (which catches
//! changed privacy settings and pods that died); only differences from what the client was
//! last told are sent, including `visible: false` for a user it may no longer see.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures_util::{Stream, StreamExt as _};
use juntos_proto::chat::v1::{
    ClientFrame, Envelope, Heartbeat, Presence as WirePresence, Replaced, ServerFrame,
    client_frame, server_frame,
};
use juntos_proto::meta::Caller;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::presence::{PresenceState, Watch};
use super::{ChatService, MAX_PRESENCE_USERS};
use crate::delivery::doorbell::Registration;
use crate::delivery::routes::Claim;
use crate::error::Error;
use crate::store::StoredEnvelope;

/// Most envelopes read from the mailbox at once.
const PAGE: usize = 256;
/// Room in the outgoing channel beyond the push window: heartbeats, the `replaced` frame, and
/// one presence frame per followed user.
const EXTRA_FRAMES: usize = 16 + MAX_PRESENCE_USERS;

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
        let mut stream_id = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut stream_id);
        let connection = Connection {
            service: Arc::clone(self),
            caller,
            stream_id: hex::encode(stream_id),
            follow: None,
            looking: None,
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

/// The presence a stream follows.
struct Follow {
    /// The followed users, as the client listed them (deduplicated).
    users: Vec<String>,
    watch: Watch,
    /// What the client was last told about each user (absent: nothing yet).
    told: HashMap<String, WirePresence>,
    /// Whether a look is due.
    due: bool,
}

/// The outcome of one look: each followed user's presence, `None` where it may not be seen.
/// `None` as a whole when the directory or the presence store could not be asked.
type Looked = Option<Vec<(String, Option<PresenceState>)>>;

/// One device's stream.
struct Connection {
    service: Arc<ChatService>,
    caller: Caller,
    /// This stream's id in presence entries (random, unique across pods).
    stream_id: String,
    /// The users whose presence the client follows.
    follow: Option<Follow>,
    /// The presence look in progress.
    looking: Option<JoinHandle<Looked>>,
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
        self.mark_online();

        let end = loop {
            if let Err(end) = self.fill().await {
                break end;
            }
            self.start_look();
            tokio::select! {
                biased;
                () = shutdown.wait() => break End::Quiet,
                () = self.registration.replaced() => break End::Replaced,
                frame = inbound.next() => match frame {
                    Some(Ok(frame)) => {
                        idle.as_mut().reset(Instant::now() + idle_timeout);
                        if let Err(end) = self.on_frame(frame) {
                            break end;
                        }
                    }
                    // The client closed its side or the call broke.
                    Some(Err(_)) | None => break End::Quiet,
                },
                looked = async { self.looking.as_mut().expect("guarded").await },
                    if self.looking.is_some() =>
                {
                    self.looking = None;
                    if let Ok(Some(looked)) = looked {
                        self.tell(looked);
                    }
                }
                () = async { self.follow.as_ref().expect("guarded").watch.changed().await },
                    if self.follow.is_some() =>
                {
                    if let Some(follow) = &mut self.follow {
                        follow.due = true;
                    }
                }
                () = async { self.acking.as_mut().expect("guarded").await.unwrap_or_default() },
                    if self.acking.is_some() =>
                {
                    self.acking = None;
                    self.start_ack();
                }
                () = self.registration.rung() => self.maybe_more = true,
                _ = ticks.tick() => {
                    self.maybe_more = true;
                    self.mark_online();
                    if let Some(follow) = &mut self.follow {
                        follow.due = true;
                    }
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
        if let Some(looking) = self.looking.take() {
            looking.abort();
        }
        self.service.presence.offline(
            &self.caller.user_id,
            &self.caller.device_id,
            &self.stream_id,
            self.service.clock.now_ms(),
        );
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

    fn on_frame(&mut self, frame: ClientFrame) -> Result<(), End> {
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
            Some(client_frame::Frame::SubscribePresence(subscribe)) => {
                self.follow_presence(subscribe.user_ids)?;
            }
            // Any frame proves the client is there; the idle timer was reset already.
            Some(client_frame::Frame::Heartbeat(_)) | None => {}
        }
        Ok(())
    }

    fn mark_online(&self) {
        self.service.presence.online(
            &self.caller.user_id,
            &self.caller.device_id,
            &self.stream_id,
            self.service.clock.now_ms(),
        );
    }

    /// Replaces the followed users (none: stop following).
    fn follow_presence(&mut self, mut users: Vec<String>) -> Result<(), End> {
        if users.len() > MAX_PRESENCE_USERS {
            let error = Error::TooManyUsers {
                count: users.len(),
                limit: MAX_PRESENCE_USERS,
            };
            return Err(End::Failed(error.into()));
        }
        if let Some(looking) = self.looking.take() {
            looking.abort();
        }
        let mut seen = std::collections::HashSet::new();
        users.retain(|u| seen.insert(u.clone()));
        self.follow = (!users.is_empty()).then(|| Follow {
            watch: self.service.presence.watch(&users),
            users,
            told: HashMap::new(),
            due: true,
        });
        Ok(())
    }

    /// Starts a look at the followed users' presence when one is due and none is running.
    fn start_look(&mut self) {
        let Some(follow) = &mut self.follow else {
            return;
        };
        if !follow.due || self.looking.is_some() {
            return;
        }
        follow.due = false;
        let (service, caller, users) = (
            Arc::clone(&self.service),
            self.caller.clone(),
            follow.users.clone(),
        );
        self.looking = Some(tokio::spawn(async move {
            let visible = match service.visible_presence(&caller, &users).await {
                Ok(visible) => visible,
                Err(e) => {
                    tracing::debug!(error = %e, "presence visibility unavailable");
                    return None;
                }
            };
            let states = match service.presence.get(&visible, service.clock.now_ms()).await {
                Ok(states) => states,
                Err(e) => {
                    tracing::debug!(error = %e, "presence unavailable");
                    return None;
                }
            };
            let seen: HashMap<String, PresenceState> = visible.into_iter().zip(states).collect();
            Some(
                users
                    .into_iter()
                    .map(|u| {
                        let state = seen.get(&u).copied();
                        (u, state)
                    })
                    .collect(),
            )
        }));
    }

    /// Sends the client what changed since it was last told.
    fn tell(&mut self, looked: Vec<(String, Option<PresenceState>)>) {
        let Some(follow) = &mut self.follow else {
            return;
        };
        for (user_id, state) in looked {
            let told = follow.told.get(&user_id);
            if state.is_none() && told.is_none_or(|t| !t.visible) {
                continue; // never shown, or already told it is hidden
            }
            let now = presence_to_proto(user_id.clone(), state);
            if told == Some(&now) {
                continue;
            }
            if self
                .out
                .try_send(Ok(frame(server_frame::Frame::Presence(now.clone()))))
                .is_err()
            {
                // The client is behind; the next look tells it.
                break;
            }
            follow.told.insert(user_id, now);
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

/// The wire form of a user's presence (`None`: the viewer may not see it). While a user is
/// online, last seen is left out (it changes every heartbeat and means nothing then).
pub(crate) fn presence_to_proto(user_id: String, state: Option<PresenceState>) -> WirePresence {
    match state {
        Some(state) => WirePresence {
            user_id,
            visible: true,
            online: state.online,
            last_seen_ms: if state.online { 0 } else { state.last_seen_ms },
        },
        None => WirePresence {
            user_id,
            visible: false,
            online: false,
            last_seen_ms: 0,
        },
    }
}

/// The wire form of a stored envelope.
pub(crate) fn to_proto(e: StoredEnvelope) -> Envelope {
    Envelope {
        seq: e.seq,
        sender_user_id: e.sender_user_id,
        sender_device_id: e.sender_device_id,
        client_msg_id: e.client_msg_id,
        server_time_ms: e.server_time_ms,
        ciphertext: e.ciphertext,
        kind: e.kind.code(),
        group_id: e.group_id,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::service::ChatConfig;
    use crate::store::ChatStore as _;
    use crate::test_support::{ALICE_TO_BOB, Fixture, Got, T0, caller};

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
        assert_eq!(f.mailbox("b2").await.len(), 1);
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
            if f.mailbox("b1").await.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left: Vec<u64> = f.mailbox("b1").await.iter().map(|e| e.seq).collect();
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
            .send(crate::store::SendBatch {
                sender_user_id: "alice".into(),
                sender_device_id: "a1".into(),
                client_msg_id: "quiet".into(),
                envelopes: vec![crate::test_support::envelope("bob", "b1", b"q")],
                now_ms: 0,
                ..Default::default()
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
        let crate::test_support::Stream { frames, mut out } = b2;
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

    fn presence(user: &str, visible: bool, online: bool, last_seen_ms: i64) -> Got {
        Got::Presence {
            user: user.into(),
            visible,
            online,
            last_seen_ms,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn followers_see_a_contact_come_and_go() {
        let f = Fixture::new();
        let mut a1 = f.connect(&caller("alice", "a1"));
        a1.follow(&["bob", "bob", "carol"]).await;
        // Bob was never online; carol is unknown but the fake directory shows everyone.
        let mut first = vec![a1.next().await, a1.next().await];
        first.sort_by_key(|g| format!("{g:?}"));
        assert_eq!(
            first,
            [
                presence("bob", true, false, 0),
                presence("carol", true, false, 0)
            ]
        );

        let b1 = f.connect(&caller("bob", "b1"));
        assert_eq!(a1.next().await, presence("bob", true, true, 0));
        // A second device of an online user changes nothing. (Marks run in the background:
        // give b2's a moment before b1 leaves, as a real second device would have.)
        let mut b2 = f.connect(&caller("bob", "b2"));
        b2.assert_quiet().await;
        drop(b1);
        a1.assert_quiet().await;

        f.clock.advance_ms(5_000);
        drop(b2);
        assert_eq!(
            a1.next().await,
            presence("bob", true, false, T0 + 5_000),
            "offline, last seen when the last stream ended"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hidden_user_is_never_shown_and_one_hidden_later_is_withdrawn() {
        let f = Fixture::with_config(ChatConfig {
            heartbeat: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(5),
            ..ChatConfig::default()
        });
        f.directory.hide_presence("alice", "carol", true);
        let _b1 = f.connect(&caller("bob", "b1"));
        let _c1 = f.connect(&caller("carol", "c1"));
        // Marks run in the background: wait until Bob shows online.
        let alice = caller("alice", "a1");
        for _ in 0..100 {
            let seen = f.service.get_presence(&alice, vec!["bob".into()]).await;
            if seen.expect("get").first().is_some_and(|(_, s)| s.online) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut a1 = f.connect(&alice);
        a1.follow(&["carol", "bob"]).await;
        assert_eq!(a1.next().await, presence("bob", true, true, 0));
        a1.heartbeat().await;
        a1.assert_quiet().await;

        // Bob hides from Alice: the next look (a heartbeat later) withdraws him.
        f.directory.hide_presence("alice", "bob", true);
        assert_eq!(a1.next().await, presence("bob", false, false, 0));
        a1.heartbeat().await;
        a1.assert_quiet().await;
        // And shows him again when allowed again.
        f.directory.hide_presence("alice", "bob", false);
        assert_eq!(a1.next().await, presence("bob", true, true, 0));

        let got = f
            .service
            .get_presence(&caller("alice", "a1"), vec!["carol".into(), "bob".into()])
            .await
            .expect("get");
        assert_eq!(got.len(), 1, "carol is left out: {got:?}");
        assert_eq!(got[0].0, "bob");
        assert!(got[0].1.online);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn following_too_many_users_ends_the_stream_with_invalid_argument() {
        let f = Fixture::new();
        let mut a1 = f.connect(&caller("alice", "a1"));
        let many: Vec<String> = (0..=crate::service::MAX_PRESENCE_USERS)
            .map(|i| format!("u{i}"))
            .collect();
        a1.follow(&many.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        assert_eq!(a1.next().await, Got::Error(tonic::Code::InvalidArgument));
        let status = f
            .service
            .get_presence(&caller("alice", "a1"), many)
            .await
            .expect_err("too many");
        assert_eq!(
            tonic::Status::from(status).code(),
            tonic::Code::InvalidArgument
        );
    }
}
