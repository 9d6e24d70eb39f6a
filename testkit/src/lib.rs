//! Test harnesses shared by the Juntos crates: real servers on loopback, started per test and
//! stopped on drop, and hand-made image fixtures.
//!
//! - [`redis`]: `redis-server` on a free port, which a test can kill and start again on it.
//! - [`mongo`]: SecantusDB, a MongoDB-wire-protocol server (or a real MongoDB from
//!   `JUNTOS_TEST_MONGODB_URI`).
//! - [`s3`]: `s3s-fs`, an S3-compatible server over a temporary folder.
//! - `twilio` (feature `twilio`): a fake Twilio speaking the Messages API over HTTP.
//! - [`images`]: PNG fixtures (chunks with their CRC, a decompression bomb's header), and with
//!   feature `image` encoded pictures.
//! - `tls` (feature `tls`): a private certificate authority issuing server certificates.
//!
//! A missing binary fails the test with instructions to install it: tests never skip silently.

#![forbid(unsafe_code)]

pub mod images;
pub mod mongo;
pub mod redis;
pub mod s3;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "twilio")]
pub mod twilio;

mod net;

pub use mongo::{MongoTestServer, unique_database};
pub use redis::RedisServer;
pub use s3::S3TestServer;
#[cfg(feature = "twilio")]
pub use twilio::{FakeTwilio, TwilioMessage};
