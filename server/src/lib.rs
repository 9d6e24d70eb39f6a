//! The `juntos` binary's library: the routing proxy ([`gateway`]), serving helpers, and the
//! composition of every role from its flags ([`roles`]). The chat service joins in a later issue.

#![forbid(unsafe_code)]

pub mod cli;
pub mod gateway;
pub mod roles;
pub mod serve;
pub mod shutdown;
pub mod tasks;
