//! The gRPC layer: builds the tonic server for `juntos.otp.v1` and holds the helpers shared by
//! its services. One file per proto service: `otp.rs` (`juntos.otp.v1.Otp`, [`OtpGrpc`]).

use std::sync::Arc;

use juntos_proto::otp::v1::otp_server::OtpServer;

use crate::service::OtpService;

mod otp;

pub use otp::OtpGrpc;

/// The `Otp` gRPC server for `service`, ready to add to a tonic router.
pub fn server(service: Arc<OtpService>) -> OtpServer<OtpGrpc> {
    OtpServer::new(OtpGrpc::new(service))
}

/// `d` in whole seconds for the wire, saturating at `u32::MAX`.
fn seconds(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}
