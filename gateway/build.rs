//! Compiles our SeaweedMQ .proto subset (../proto/seaweedmq) into tonic clients with a vendored
//! protoc, so no system protoc is needed; and our own peer protocols (../proto/cluster: raft, WAL
//! replication) into tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let dir = "../proto/seaweedmq".to_string();
    let files = [
        "mq_schema.proto",
        "mq_broker.proto",
        "master.proto",
        "filer.proto",
    ]
    .map(|f| format!("{dir}/{f}"));
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    tonic_prost_build::configure()
        .build_server(false)
        .bytes(".")
        .compile_protos(&files, &[dir])?;

    let cluster = ["../proto/cluster/raft.proto", "../proto/cluster/wal.proto"];
    for f in &cluster {
        println!("cargo:rerun-if-changed={f}");
    }
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&cluster, &["../proto/cluster"])?;
    Ok(())
}
