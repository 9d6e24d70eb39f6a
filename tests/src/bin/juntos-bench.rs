//! `juntos-bench`: a load generator for Juntos messaging.
//!
//! Scenario `pairs`: P sender/receiver pairs of signed-in devices; every sender sends M messages
//! to its receiver with up to W `Chat.Send` calls in flight, each message really encrypted
//! (X3DH + Double Ratchet from client-core) and really decrypted by the receiver, which holds a
//! live `Chat.Connect` stream and acks cumulatively. Everything goes through the gateway, as an
//! app's traffic does. One JSON object per run goes to stdout; progress goes to stderr.
//!
//! Setup uses raw gRPC instead of client-core's `Client`, because the data path needs W sends of
//! one device in flight at once.
//!
//! Scenario `group`: one sender and N-1 receivers, every one a client-core `Client` with its own
//! home, in one group made with `Groups::create` (`client.groups()`); the sender sends M group messages with
//! `Groups::send_text` (sender-key encryption; the first also hands the sender key to
//! every member device pairwise), and the receivers poll with `Client::sync_now` (or keep live
//! connections) until every member has every message.
//!
//! `--pods N` runs the system as separate roles (otp, login, N chat pods, one gateway) on one
//! Redis and one SecantusDB started by the harness, instead of `juntos all` on SQLite.
//!
//! The scenarios, measurements and reports live in the harness library (`juntos_tests::bench`),
//! next to the system harness they drive.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    juntos_tests::bench::main()
}
