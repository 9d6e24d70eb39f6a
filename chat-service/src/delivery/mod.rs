//! Delivery: waking a device's live `Connect` stream once its mailbox got something.
//!
//! [`doorbell`] is the in-process registry of the streams connected to this pod (a ring wakes
//! one, a second stream of a device replaces the first); with several chat pods, [`routes`] maps
//! each connected device to its pod in Redis and rings the pod holding a device over pub/sub
//! (its reconnecting subscriber also carries presence changes). The mailbox stays the truth: a
//! lost ring only delays delivery until the stream's next heartbeat.

pub mod doorbell;
pub mod routes;

pub use doorbell::{Doorbell, Registration};
pub use routes::{RedisRoutes, RoutesConfig};
