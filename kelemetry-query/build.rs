//! Generates the Jaeger remote storage protocol code (feature `remote-storage`) from `proto/` with protox, a
//! protobuf compiler written in Rust, so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto");
    if std::env::var_os("CARGO_FEATURE_REMOTE_STORAGE").is_none() {
        return Ok(());
    }
    generate()
}

#[cfg(feature = "remote-storage")]
fn generate() -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(
        ["jaeger/storage/v2/kelemetry_remote_storage.proto"],
        ["proto"],
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(
            ".opentelemetry.proto.trace.v1",
            "::opentelemetry_proto::tonic::trace::v1",
        )
        .compile_fds(descriptors)?;
    Ok(())
}

#[cfg(not(feature = "remote-storage"))]
fn generate() -> Result<(), Box<dyn std::error::Error>> {
    Ok(())
}
