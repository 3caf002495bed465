//! Compiles the minimal streaming server's proto (`proto/minimal.proto`), the fanout
//! benchmark's tonic baseline. Its messages reuse `fanfare.common.v1.Update` from
//! `fanfare-proto`, so both sides of the comparison encode the same type.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bench_protos = manifest_dir.join("proto");
    let workspace_protos = manifest_dir.join("../../proto");
    println!("cargo:rerun-if-changed={}", bench_protos.display());
    println!("cargo:rerun-if-env-changed=PROTOC");

    let mut config = tonic_prost_build::Config::new();
    // Builds with cargo alone: the vendored protoc unless PROTOC names another.
    match std::env::var_os("PROTOC") {
        Some(protoc) => config.protoc_executable(protoc),
        None => config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?),
    };
    tonic_prost_build::configure()
        .extern_path(".fanfare.common.v1", "::fanfare_proto::common::v1")
        .compile_with_config(config, &[bench_protos.join("minimal.proto")], &[bench_protos, workspace_protos])?;
    Ok(())
}
