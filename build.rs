//! Generates the gRPC code and the descriptor set served by reflection.
//!
//! protox compiles the protos in pure Rust, so no `protoc` is needed on the
//! build machine.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/connector/v1/connector.proto",
    "proto/connector/v1/agent.proto",
    "proto/connector/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=third_party/proto");
    // refinery embeds these at compile time.
    println!("cargo:rerun-if-changed=src/store/postgres/migrations");
    println!("cargo:rerun-if-changed=src/store/sqlite/migrations");

    // google/rpc/status.proto (per-connector errors of the batch calls) is
    // vendored under third_party/ as Google publishes it; its Rust type is
    // tonic-types' own.
    let descriptors = protox::compile(PROTOS, ["proto", "third_party/proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("connector_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;

    tonic_prost_build::configure()
        // The generated `connect(dst)` constructor would clash with the
        // AgentService.Connect method; clients are built from a Channel.
        .build_transport(false)
        // Undecodable bytes are INVALID_ARGUMENT with details, not INTERNAL.
        .codec_path("crate::proto::codec::Codec")
        .extern_path(".google.rpc", "::tonic_types::pb")
        .emit_rerun_if_changed(false)
        .compile_fds(descriptors)?;

    // The conformance suite's AgentService.Connect: the same route, but it
    // sends raw bytes, so that it can send fields and messages the agent
    // under test does not know (they must be ignored).
    let connect = tonic_build::manual::Method::builder()
        .name("connect")
        .route_name("Connect")
        .input_type("crate::proto::v1::AgentMessage")
        .output_type("crate::conformance::wire::Raw")
        .codec_path("crate::conformance::wire::RawCodec")
        .client_streaming()
        .server_streaming()
        .build();
    tonic_build::manual::Builder::new()
        .build_client(false)
        .build_transport(false)
        .compile(&[tonic_build::manual::Service::builder()
            .name("AgentService")
            .package("connector.v1")
            .method(connect)
            .build()]);
    Ok(())
}
