//! The `juntos` binary's library: the chat service ([`chat`]), the routing proxy ([`gateway`]),
//! serving helpers, and the composition of every role from its flags ([`roles`]).

#![forbid(unsafe_code)]

pub mod chat;
pub mod cli;
pub mod gateway;
pub mod roles;
pub mod serve;
pub mod shutdown;
pub mod tls;
