//! Compiles the `.proto` files with `protox` (a protobuf compiler written in Rust) into a file
//! descriptor set, and generates the prost messages and tonic services from it: a fresh machine
//! needs no system `protoc`.

use std::path::Path;

const PROTOS: [&str; 2] = ["proto/replbd/agent.proto", "proto/replbd/controller.proto"];
/// etcd's API: only a client is needed.
const ETCD: &str = "proto/etcd/rpc.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, [Path::new("proto")])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={ETCD}");
    let etcd = protox::compile([ETCD], [Path::new("proto")])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(etcd)?;
    Ok(())
}
