//! Generates the config message types from `proto/config.proto` with the pure-Rust protobuf
//! parser, so building needs no `protoc`.
fn main() {
    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .input("proto/config.proto")
        .cargo_out_dir("proto")
        .run_from_script();
    println!("cargo:rerun-if-changed=proto/config.proto");
    // `sqlx::migrate!` embeds the migrations at compile time; without this a new migration
    // file is not picked up by an incremental build.
    println!("cargo:rerun-if-changed=migrations");
}
