//! Presence and privacy through the gateway, on real processes: online state and last seen are
//! visible to mutual contacts only, and only as the owner's setting allows; the profile's name
//! and about text follow the same rule with their own setting; a followed contact's changes are
//! pushed over the `Connect` stream, across chat pods through Redis; with Redis stopped,
//! presence reads answer UNAVAILABLE while messages still flow, and presence comes back with
//! Redis.

use std::time::{Duration, Instant};

use juntos_proto::chat::v1::chat_client::ChatClient;
use juntos_proto::chat::v1::{
    ClientFrame, GetPresenceRequest, Presence, ServerFrame, SubscribePresence, client_frame,
    server_frame,
};
use juntos_proto::login::v1::directory_client::DirectoryClient;
use juntos_proto::login::v1::login_client::LoginClient;
use juntos_proto::login::v1::{
    GetProfilesRequest, Profile, ResolvePhonesRequest, UpdateSettingsRequest, Visibility,
};
use juntos_tests::clients::sign_in_with_code;
use juntos_tests::raw::{self, authed};
use juntos_tests::{ALICE, BOB, CAROL, System};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// A fourth valid number: a stranger to everyone.
const DAN: &str = "+12015550104";

/// A signed-in device and the gateway it talks to.
struct User(raw::SignedInDevice);

impl std::ops::Deref for User {
    type Target = raw::SignedInDevice;

    fn deref(&self) -> &raw::SignedInDevice {
        &self.0
    }
}

async fn sign_in(sys: &System, channel: Channel, phone: &str, name: &str) -> User {
    User(raw::signed_in_device(sys, channel, phone, name).await)
}

impl User {
    /// Records the owners of `phones` as this user's contacts.
    async fn add_contacts(&self, phones: &[&str]) {
        DirectoryClient::new(self.channel.clone())
            .resolve_phones(authed(
                ResolvePhonesRequest {
                    phones: phones.iter().map(|p| (*p).to_owned()).collect(),
                },
                &self.token,
            ))
            .await
            .expect("resolve phones");
    }

    async fn presence_of(&self, users: &[&User]) -> Result<Vec<Presence>, tonic::Status> {
        ChatClient::new(self.channel.clone())
            .get_presence(authed(
                GetPresenceRequest {
                    user_ids: users.iter().map(|u| u.user_id.clone()).collect(),
                },
                &self.token,
            ))
            .await
            .map(|r| r.into_inner().users)
    }

    async fn profiles_of(&self, users: &[&User]) -> Vec<Profile> {
        DirectoryClient::new(self.channel.clone())
            .get_profiles(authed(
                GetProfilesRequest {
                    user_ids: users.iter().map(|u| u.user_id.clone()).collect(),
                },
                &self.token,
            ))
            .await
            .expect("get profiles")
            .into_inner()
            .profiles
    }

    async fn update(&self, update: UpdateSettingsRequest) {
        LoginClient::new(self.channel.clone())
            .update_settings(authed(update, &self.token))
            .await
            .expect("update settings");
    }

    /// Opens this device's `Connect` stream.
    async fn connect(&self) -> Stream {
        let (frames, outgoing) = mpsc::channel(16);
        let inbound = ChatClient::new(self.channel.clone())
            .connect(authed(ReceiverStream::new(outgoing), &self.token))
            .await
            .expect("stream opened")
            .into_inner();
        Stream { frames, inbound }
    }
}

/// A live `Connect` stream.
struct Stream {
    frames: mpsc::Sender<ClientFrame>,
    inbound: tonic::Streaming<ServerFrame>,
}

impl Stream {
    async fn follow(&self, users: &[&User]) {
        let subscribe = SubscribePresence {
            user_ids: users.iter().map(|u| u.user_id.clone()).collect(),
        };
        self.frames
            .send(ClientFrame {
                frame: Some(client_frame::Frame::SubscribePresence(subscribe)),
            })
            .await
            .expect("stream open");
    }

    /// The next presence frame within `within`, answering heartbeats meanwhile (other frames
    /// are skipped).
    async fn next_presence(&mut self, within: Duration) -> Presence {
        self.wait_for("presence frame", within, |frame| match frame {
            server_frame::Frame::Presence(p) => Some(p),
            _ => None,
        })
        .await
    }

    /// Waits for an envelope whose body is `body`, answering heartbeats.
    async fn expect_envelope(&mut self, body: &[u8], within: Duration) {
        self.wait_for("envelope", within, |frame| match frame {
            server_frame::Frame::Envelope(e) if e.ciphertext == body => Some(()),
            _ => None,
        })
        .await
    }

    /// The first frame `pick` takes within `within` (panicking that there was no `what`),
    /// answering heartbeats meanwhile; other frames are skipped.
    async fn wait_for<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut pick: impl FnMut(server_frame::Frame) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, self.inbound.message())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
                .expect("stream healthy")
                .expect("stream open");
            match frame.frame {
                Some(server_frame::Frame::Heartbeat(beat)) => {
                    let _ = self
                        .frames
                        .send(ClientFrame {
                            frame: Some(client_frame::Frame::Heartbeat(beat)),
                        })
                        .await;
                }
                Some(other) => {
                    if let Some(picked) = pick(other) {
                        return picked;
                    }
                }
                None => {}
            }
        }
    }
}

/// What `client` may see of the presence of the user with number `phone`.
async fn visible_presence(
    client: &juntos_client::Client,
    phone: &str,
) -> Vec<juntos_client::PresenceInfo> {
    client
        .presence()
        .get(vec![phone.into()])
        .await
        .expect("presence")
}

fn unix_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("ms fit")
}

fn ids(presences: &[Presence]) -> Vec<&str> {
    presences.iter().map(|p| p.user_id.as_str()).collect()
}

/// Alice and Bob have each other; Carol has Alice (one way); Dan has nobody.
async fn contacts(alice: &User, bob: &User, carol: &User) {
    alice.add_contacts(&[BOB]).await;
    bob.add_contacts(&[ALICE]).await;
    carol.add_contacts(&[ALICE]).await;
}

#[tokio::test]
async fn presence_and_profiles_are_visible_to_mutual_contacts_only_and_as_the_owner_allows() {
    // The embedded defaults: one process, presence in memory.
    let sys = System::builder()
        .arg("--chat-heartbeat-secs", "1")
        .start()
        .await;
    let channel = sys.channel().await;
    let alice = sign_in(&sys, channel.clone(), ALICE, "alice").await;
    let bob = sign_in(&sys, channel.clone(), BOB, "bob").await;
    let carol = sign_in(&sys, channel.clone(), CAROL, "carol").await;
    let dan = sign_in(&sys, channel.clone(), DAN, "dan").await;
    contacts(&alice, &bob, &carol).await;
    alice
        .update(UpdateSettingsRequest {
            name: Some("Alice".into()),
            about: Some("Out sailing".into()),
            ..Default::default()
        })
        .await;

    let _alice_stream = alice.connect().await;
    // Bob sees Alice online; Carol (one-way contact) and Dan (stranger) see nothing at all.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let seen = bob.presence_of(&[&alice, &carol, &dan]).await.expect("get");
        assert_eq!(ids(&seen), [alice.user_id.as_str()]);
        if seen[0].online {
            break;
        }
        assert!(Instant::now() < deadline, "alice never showed online");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(carol.presence_of(&[&alice]).await.expect("get").is_empty());
    assert!(dan.presence_of(&[&alice]).await.expect("get").is_empty());
    // Everyone sees themselves.
    assert_eq!(
        ids(&dan.presence_of(&[&dan]).await.expect("get")),
        [dan.user_id.as_str()]
    );

    assert_eq!(
        bob.profiles_of(&[&alice]).await,
        [Profile {
            user_id: alice.user_id.clone(),
            name: "Alice".into(),
            about: "Out sailing".into(),
        }]
    );
    assert!(carol.profiles_of(&[&alice]).await.is_empty());
    assert!(dan.profiles_of(&[&alice]).await.is_empty());

    // Alice hides her presence: Bob no longer sees it, but still sees her profile.
    alice
        .update(UpdateSettingsRequest {
            presence: Some(Visibility::Nobody as i32),
            ..Default::default()
        })
        .await;
    assert!(bob.presence_of(&[&alice]).await.expect("get").is_empty());
    assert_eq!(bob.profiles_of(&[&alice]).await.len(), 1);
    // Then her profile too.
    alice
        .update(UpdateSettingsRequest {
            profile: Some(Visibility::Nobody as i32),
            ..Default::default()
        })
        .await;
    assert!(bob.profiles_of(&[&alice]).await.is_empty());
    // She still sees her own.
    assert_eq!(alice.profiles_of(&[&alice]).await.len(), 1);
    assert_eq!(alice.presence_of(&[&alice]).await.expect("get").len(), 1);

    // Bad settings are refused with the reason.
    let err = LoginClient::new(channel.clone())
        .update_settings(authed(
            UpdateSettingsRequest {
                name: Some("x".repeat(65)),
                ..Default::default()
            },
            &alice.token,
        ))
        .await
        .expect_err("too long");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(raw::reason(&err), "INVALID_PROFILE");
    let too_many: Vec<&User> = std::iter::repeat_n(&bob, 257).collect();
    let err = alice.presence_of(&too_many).await.expect_err("too many");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(raw::reason(&err), "TOO_MANY_USERS");
}

#[tokio::test]
async fn followers_on_another_pod_see_changes_and_last_seen_and_presence_survives_a_redis_outage() {
    let mut sys = System::builder()
        .chat_pods(2)
        .gateway_per_chat_pod()
        .with_redis()
        .arg("--chat-heartbeat-secs", "1")
        .start()
        .await;
    let pod0 = System::channel_to(sys.chat_pod_gateway_url(0)).await;
    let pod1 = System::channel_to(sys.chat_pod_gateway_url(1)).await;
    let alice = sign_in(&sys, pod0, ALICE, "alice").await;
    let bob = sign_in(&sys, pod1.clone(), BOB, "bob").await;
    let carol = sign_in(&sys, pod1, CAROL, "carol").await;
    contacts(&alice, &bob, &carol).await;

    // Alice, on pod 0, follows Bob and Carol: Bob was never online; Carol is not hers to see.
    let mut alice_stream = alice.connect().await;
    alice_stream.follow(&[&bob, &carol]).await;
    let first = alice_stream.next_presence(Duration::from_secs(3)).await;
    assert_eq!(
        first,
        Presence {
            user_id: bob.user_id.clone(),
            visible: true,
            online: false,
            last_seen_ms: 0,
        }
    );

    // Bob connects on pod 1: Alice hears at once (well before a heartbeat would tell her).
    let started = Instant::now();
    let bob_stream = bob.connect().await;
    let online = alice_stream.next_presence(Duration::from_secs(3)).await;
    assert!(online.visible && online.online, "{online:?}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // Bob leaves: offline, with a last seen time.
    let before_leaving = unix_ms();
    drop(bob_stream);
    let offline = alice_stream.next_presence(Duration::from_secs(3)).await;
    assert!(offline.visible && !offline.online, "{offline:?}");
    assert!(
        offline.last_seen_ms >= before_leaving - 1_000,
        "last seen {} vs left at {before_leaving}",
        offline.last_seen_ms
    );
    let got = alice.presence_of(&[&bob, &carol]).await.expect("get");
    assert_eq!(got, std::slice::from_ref(&offline));

    // Bob hides his presence: Alice's subscription withdraws him within a heartbeat or two.
    bob.update(UpdateSettingsRequest {
        presence: Some(Visibility::Nobody as i32),
        ..Default::default()
    })
    .await;
    let withdrawn = alice_stream.next_presence(Duration::from_secs(4)).await;
    assert_eq!(
        withdrawn,
        Presence {
            user_id: bob.user_id.clone(),
            visible: false,
            online: false,
            last_seen_ms: 0,
        }
    );
    bob.update(UpdateSettingsRequest {
        presence: Some(Visibility::Contacts as i32),
        ..Default::default()
    })
    .await;
    let _bob_stream = bob.connect().await;
    let back = alice_stream.next_presence(Duration::from_secs(4)).await;
    assert!(back.visible, "{back:?}");

    // Redis stops: presence reads fail clearly, messages still go through.
    sys.redis.as_mut().expect("redis").kill();
    let err = alice.presence_of(&[&bob]).await.expect_err("no Redis");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(raw::reason(&err), "PRESENCE_UNAVAILABLE");
    bob.send(&alice, "during-the-outage", b"during-the-outage")
        .await;
    alice_stream
        .expect_envelope(b"during-the-outage", Duration::from_secs(5))
        .await;

    // Redis returns (empty): Bob's stream marks him online again at its next heartbeat.
    sys.redis.as_mut().expect("redis").restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(seen) = alice.presence_of(&[&bob]).await
            && seen.first().is_some_and(|p| p.online)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "presence did not come back with Redis"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Records the presence events a client-core listener gets.
#[derive(Default)]
struct PresenceEvents(std::sync::Mutex<Vec<juntos_client::PresenceInfo>>);

impl juntos_client::EventListener for PresenceEvents {
    fn on_event(&self, event: juntos_client::Event) {
        if let juntos_client::Event::PresenceChanged { presence } = event {
            self.0.lock().expect("events").push(presence);
        }
    }
}

impl PresenceEvents {
    /// Waits until an event satisfies `check`.
    async fn wait_for(&self, what: &str, check: impl Fn(&juntos_client::PresenceInfo) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.0.lock().expect("events").iter().any(&check) {
            assert!(Instant::now() < deadline, "no presence event: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn client_core_sets_settings_reads_profiles_and_presence_and_follows_contacts() {
    use juntos_client::Visibility as V;
    let sys = System::builder()
        .arg("--chat-heartbeat-secs", "1")
        .start()
        .await;
    let alice = sys.client("alice");
    sign_in_with_code(&sys, &alice, "alice", ALICE).await;
    let bob = sys.client("bob");
    sign_in_with_code(&sys, &bob, "bob", BOB).await;
    // Mutual contacts by phone number (the client resolves and records them).
    assert!(visible_presence(&alice, BOB).await.is_empty());
    assert_eq!(visible_presence(&bob, ALICE).await.len(), 1);

    let settings = bob
        .profile()
        .update(Some(" Bob ".into()), Some("On a boat".into()))
        .await
        .expect("profile");
    assert_eq!(
        (settings.name.as_str(), settings.presence),
        ("Bob", V::Contacts)
    );
    let profiles = alice
        .profile()
        .get(vec![BOB.into()])
        .await
        .expect("profiles");
    assert_eq!(profiles.len(), 1);
    assert_eq!(
        (profiles[0].name.as_str(), profiles[0].about.as_str()),
        ("Bob", "On a boat")
    );
    let err = bob
        .profile()
        .update(Some("line\nbreak".into()), None)
        .await
        .expect_err("control characters");
    assert!(
        matches!(err, juntos_client::ClientError::InvalidInput { .. }),
        "{err:?}"
    );

    // Alice follows Bob over her live connection.
    let events = std::sync::Arc::new(PresenceEvents::default());
    alice
        .presence()
        .follow(vec![BOB.into()])
        .await
        .expect("follow");
    std::sync::Arc::clone(&alice)
        .start(Some(std::sync::Arc::clone(&events) as _))
        .await
        .expect("start");
    events
        .wait_for("bob offline", |p| p.visible && !p.online)
        .await;
    std::sync::Arc::clone(&bob)
        .start(None)
        .await
        .expect("bob starts");
    events
        .wait_for("bob online", |p| p.visible && p.online)
        .await;
    bob.stop();
    events
        .wait_for("bob last seen", |p| {
            p.visible && !p.online && p.last_seen_ms.is_some()
        })
        .await;

    // Bob hides his presence: Alice's view is withdrawn and she cannot ask for it either.
    bob.profile()
        .set_privacy(Some(V::Nobody), None)
        .await
        .expect("privacy");
    events.wait_for("bob hidden", |p| !p.visible).await;
    assert!(visible_presence(&alice, BOB).await.is_empty());
    assert_eq!(
        alice
            .profile()
            .get(vec![BOB.into()])
            .await
            .expect("profiles")
            .len(),
        1
    );
    alice.stop();
}
