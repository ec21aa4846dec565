//! Compiles `proto/meridian.proto` and `proto/node_services.proto` (both package
//! `meridian.v1`) with protox (pure Rust), so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/meridian.proto");
    println!("cargo:rerun-if-changed=proto/node_services.proto");
    let fds = protox::compile(
        ["proto/meridian.proto", "proto/node_services.proto"],
        ["proto"],
    )?;
    // The descriptors, for gRPC server reflection (grpcurl lists and calls the API).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("meridian_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
