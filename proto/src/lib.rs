//! The Juntos wire protocol: generated tonic/prost code for every `juntos.*.v1` package, the
//! encoded file descriptor set (for gRPC reflection), and the few conventions every role shares on
//! the wire: the identity headers the gateway injects ([`meta`]) and the clock ([`clock`]).

pub mod clock;
pub mod error;
pub mod meta;

/// `juntos.otp.v1`: one-time sign-in codes.
pub mod otp {
    pub mod v1 {
        tonic::include_proto!("juntos.otp.v1");
    }
}

/// `juntos.login.v1`: accounts, devices, tokens.
pub mod login {
    pub mod v1 {
        tonic::include_proto!("juntos.login.v1");
    }
}

// `juntos.chat.v1` and `juntos.media.v1` are declared (proto/juntos/{chat,media}/v1) but still
// empty, so prost generates no module for them yet; later issues add their messages and modules.

/// The encoded `FileDescriptorSet` of every Juntos `.proto` file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/juntos_descriptor.bin"));
