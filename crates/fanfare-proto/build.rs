//! Compiles `proto/` into Rust modules and a descriptor set for server reflection.

use std::path::PathBuf;

/// Every proto file of the workspace, relative to `proto/`.
const PROTO_FILES: &[&str] = &[
    "fanfare/common/v1/group.proto",
    "fanfare/common/v1/events.proto",
    "fanfare/common/v1/update.proto",
    "fanfare/common/v1/errors.proto",
    "fanfare/groups/v1/groups.proto",
    "fanfare/messages/v1/messages.proto",
    FANOUT_PROTO,
];

/// The fanout service's proto, compiled a second time with its own codec.
const FANOUT_PROTO: &str = "fanfare/fanout/v1/fanout.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let paths: Vec<PathBuf> = PROTO_FILES.iter().map(|file| proto_root.join(file)).collect();
    println!("cargo:rerun-if-changed={}", proto_root.display());
    println!("cargo:rerun-if-env-changed=PROTOC");

    let mut config = tonic_prost_build::Config::new();
    // A fresh clone builds with cargo alone: the vendored protoc unless PROTOC names another.
    match std::env::var_os("PROTOC") {
        Some(protoc) => config.protoc_executable(protoc),
        None => config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?),
    };
    tonic_prost_build::configure()
        // Written by hand (src/frame.rs) so one encoding of an update serves every stream.
        .extern_path(".fanfare.fanout.v1.SubscribeResponse", "crate::frame::SubscribeResponse")
        .file_descriptor_set_path(out_dir.join("fanfare_descriptor.bin"))
        .compile_with_config(config, &paths, std::slice::from_ref(&proto_root))?;

    // The fanout service again, over its first output: with the small-buffer codec
    // (src/codec.rs), as a pod holds thousands of open Subscribe streams, and the shared
    // packages taken from the first pass instead of generated twice.
    let mut config = tonic_prost_build::Config::new();
    match std::env::var_os("PROTOC") {
        Some(protoc) => config.protoc_executable(protoc),
        None => config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?),
    };
    tonic_prost_build::configure()
        .extern_path(".fanfare.fanout.v1.SubscribeResponse", "crate::frame::SubscribeResponse")
        .extern_path(".fanfare.common.v1", "crate::common::v1")
        .codec_path("crate::codec::StreamingCodec")
        .compile_with_config(config, &[proto_root.join(FANOUT_PROTO)], &[proto_root])?;
    Ok(())
}
