//! The system harness: starts real servers on loopback for end-to-end tests and stops them on
//! drop. `System::builder()` reads like the scenario:
//!
//! ```no_run
//! # async fn demo() {
//! let sys = juntos_tests::System::builder().split_roles().with_redis().with_twilio().start().await;
//! # }
//! ```
//!
//! Everything is real: the `juntos` binary (built on first use), `redis-server` (a missing binary
//! fails the test with install instructions), and a fake Twilio speaking the Messages API over
//! HTTP. Time is moved with [`System::advance_clock`], which every role reads through
//! `--test-clock-file`.

#![forbid(unsafe_code)]

mod juntos;

pub use juntos::{
    Process, System, SystemBuilder, extract_code, juntos_bin, juntos_cli_bin, use_juntos_bin,
};
// The servers themselves live in juntos-testkit, which the services' store suites use too.
pub use juntos_testkit::{
    FakeTwilio, MongoTestServer, RedisServer, S3TestServer, TwilioMessage, unique_database,
};

/// The sender number the fake Twilio is configured with.
pub fn twilio_from() -> &'static str {
    juntos_testkit::twilio::FROM
}

/// Phone numbers that are valid E.164 numbers (NANP fictional range and UK drama range).
pub const ALICE: &str = "+12015550101";
pub const BOB: &str = "+12015550102";
pub const CAROL: &str = "+447400123456";

pub mod bench;
pub mod clients;
pub mod raw;
