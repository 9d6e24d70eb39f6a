//! What end-to-end tests that drive client-core share: a system with room for bulk sends,
//! signed-in clients, an event recorder, and "settle until quiet".

use std::sync::{Arc, Mutex};
use std::time::Duration;

use juntos_client::{Account, Client, Event, EventListener, GroupAction, Message};

use crate::{System, SystemBuilder};

/// A builder whose gateway and chat rate limits leave room for bulk sends.
pub fn bulk_builder() -> SystemBuilder {
    System::builder()
        .arg("--ip-rate", "100000")
        .arg("--ip-burst", "100000")
        .arg("--user-rate", "100000")
        .arg("--user-burst", "100000")
        .arg("--chat-send-rate", "100000")
        .arg("--chat-send-burst", "100000")
}

/// A new device called `name` that has requested a code for `phone`.
pub async fn awaiting_code(sys: &System, name: &str, phone: &str) -> Arc<Client> {
    let client = sys.client(name);
    client
        .request_code(phone.to_owned())
        .await
        .expect("code requested");
    client
}

/// Requests a code for `phone` on `client` and signs in with it as a device called `name`
/// (without waiting out the resend time: see [`signed_in`]).
pub async fn sign_in_with_code(sys: &System, client: &Client, name: &str, phone: &str) -> Account {
    client
        .request_code(phone.to_owned())
        .await
        .expect("code requested");
    client
        .sign_in(phone.to_owned(), sys.last_code(phone), name.to_owned())
        .await
        .expect("signed in")
}

/// Another device called `name` for the account of `phone`, signed in (the caller waits out
/// the resend time first).
pub async fn another_device(sys: &System, name: &str, phone: &str) -> (Arc<Client>, Account) {
    let device = sys.client(name);
    device
        .request_code(phone.to_owned())
        .await
        .expect("second code");
    let account = device
        .sign_in(phone.to_owned(), sys.last_code(phone), name.to_owned())
        .await
        .expect("signed in");
    (device, account)
}

/// Signs `phone` in on a new device called `name`.
pub async fn signed_in(sys: &System, name: &str, phone: &str) -> Arc<Client> {
    signed_in_on(sys, sys.client(name), name, phone).await
}

/// Signs `phone` in on `client`, a device called `name`, then waits out the resend time.
pub async fn signed_in_on(
    sys: &System,
    client: Arc<Client>,
    name: &str,
    phone: &str,
) -> Arc<Client> {
    sign_in_with_code(sys, &client, name, phone).await;
    // The next code for the same number may only be requested after the resend wait.
    sys.advance_clock(Duration::from_secs(601));
    client
}

/// Flushes `sender`'s outbox, then asserts that none of `secrets` lies in plaintext in the
/// system's stores, and that the stores were there to scan.
pub async fn assert_flushed_without_plaintext(sys: &System, sender: &Client, secrets: &[&str]) {
    assert_eq!(sender.flush_outbox().await.expect("flush"), 0);
    let scanned = assert_no_plaintext(sys, secrets);
    assert!(
        scanned > 10_000,
        "the stores were scanned ({scanned} bytes)"
    );
}

/// Everything queued leaves, and everything waiting arrives, on each client, until quiet.
pub async fn settle(clients: &[&Arc<Client>]) {
    for _ in 0..4 {
        for c in clients {
            assert_eq!(c.flush_outbox().await.expect("flush"), 0, "outbox drained");
        }
        for c in clients {
            c.sync_now().await.expect("sync");
        }
    }
}

/// Asserts that no file in the system's data directory (or below it) holds any of `secrets`;
/// returns how many bytes were scanned (so a caller can check the stores were there at all).
pub fn assert_no_plaintext(sys: &System, secrets: &[&str]) -> usize {
    let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.as_bytes()).collect();
    assert_no_plaintext_in(sys.data_dir(), &secrets)
}

/// [`assert_no_plaintext`] for every file in or below `dir`.
pub fn assert_no_plaintext_in(dir: &std::path::Path, secrets: &[&[u8]]) -> usize {
    let mut scanned = 0;
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            scanned += assert_no_plaintext_in(&path, secrets);
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        scanned += bytes.len();
        for s in secrets {
            assert!(!contains(&bytes, s), "{} holds a plaintext", path.display());
        }
    }
    scanned
}

/// Whether `needle` occurs in `haystack` (first-byte scan, fast enough for 50 MiB files).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == first)
        .any(|(i, _)| haystack[i + 1..].starts_with(rest))
}

/// The texts of a history.
pub fn texts(history: &[Message]) -> Vec<String> {
    history.iter().map(|m| m.body.clone()).collect()
}

/// Records every event a client emits.
#[derive(Default)]
pub struct Recorder(Mutex<Vec<Event>>);

impl EventListener for Recorder {
    fn on_event(&self, event: Event) {
        self.0.lock().expect("events").push(event);
    }
}

impl Recorder {
    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().expect("events").clone()
    }

    /// The messages received so far.
    pub fn received(&self) -> Vec<Message> {
        self.0
            .lock()
            .expect("events")
            .iter()
            .filter_map(|e| match e {
                Event::MessageReceived { message } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// The group notices so far: what happened, and to whom.
    pub fn group_actions(&self) -> Vec<(GroupAction, Vec<String>)> {
        self.0
            .lock()
            .expect("events")
            .iter()
            .filter_map(|e| match e {
                Event::GroupChanged { notice } => {
                    Some((notice.action, notice.subject_user_ids.clone()))
                }
                _ => None,
            })
            .collect()
    }
}
