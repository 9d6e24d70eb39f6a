//! The Juntos wire protocol and nothing else: generated tonic/prost code for every `juntos.*.v1`
//! package, the encoded file descriptor set (for gRPC reflection), and the conventions every role
//! shares on the wire: the identity headers the gateway injects ([`meta`]), how errors look
//! (`google.rpc.ErrorInfo` reasons and `RetryInfo`, [`error`]) and which ids a client may choose
//! ([`ids`]).

#![forbid(unsafe_code)]

pub mod error;
pub mod ids;
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

/// `juntos.chat.v1`: messaging.
pub mod chat {
    pub mod v1 {
        tonic::include_proto!("juntos.chat.v1");
    }
}

/// `juntos.media.v1`: statuses, media blobs and profile photos.
pub mod media {
    pub mod v1 {
        tonic::include_proto!("juntos.media.v1");
    }
}

/// The encoded `FileDescriptorSet` of every Juntos `.proto` file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/juntos_descriptor.bin"));
