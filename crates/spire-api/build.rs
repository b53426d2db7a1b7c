//! Compiles the SPIRE Server API protos and the Workload API subset under `proto/` (pure
//! Rust: protox, no protoc).

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "spire/api/server/entry/v1/entry.proto",
    "spire/api/server/trustdomain/v1/trustdomain.proto",
    "spire/api/server/bundle/v1/bundle.proto",
    "spire/api/server/svid/v1/svid.proto",
    "spiffe/workload/workload.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(PROTOS, [&root])?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
