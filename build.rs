//! Compiles the protocol definitions in `proto/` without a system `protoc`:
//! protox parses them in pure Rust and tonic-prost-build generates the code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/wardsync/v1/records.proto",
        "proto/wardsync/v1/ward.proto",
        "proto/wardsync/v1/sync.proto",
        "proto/wardsync/v1/query.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    // The descriptors, for gRPC server reflection.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("wardsync_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
