//! Compiles `proto/juntos/**/*.proto` with `protox` (pure Rust, no system `protoc`) and feeds the
//! descriptor set to `tonic-prost-build`. The descriptor set is also written to `OUT_DIR` so every
//! role can serve gRPC reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "juntos/otp/v1/otp.proto",
    "juntos/login/v1/login.proto",
    "juntos/chat/v1/chat.proto",
    "juntos/media/v1/media.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let files = protox::compile(PROTOS, ["proto"])?;
    let descriptor_path = out_dir.join("juntos_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&files))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // No `connect` constructors: they would clash with `Chat.Connect`; clients take a Channel.
        .build_transport(false)
        .skip_protoc_run()
        .file_descriptor_set_path(&descriptor_path)
        .compile_fds(files)?;
    Ok(())
}
