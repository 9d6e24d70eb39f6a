//! The `juntos` binary's library: the routing proxy ([`gateway`]), serving helpers, and the
//! composition of every role from its flags ([`roles`]; the services are crates of their own:
//! `juntos-otp`, `juntos-login`, `juntos-chat`, `juntos-media`).

#![forbid(unsafe_code)]

pub mod cli;
pub mod gateway;
pub mod roles;
pub mod serve;
pub mod shutdown;
pub mod tls;
