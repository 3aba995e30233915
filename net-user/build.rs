//! Locates the XDP object that `cargo xtask build` produced, for `include_bytes_aligned!`.
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-env-changed=NETXDP_EBPF_OBJECT");
    let object = match std::env::var_os("NETXDP_EBPF_OBJECT") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../net-ebpf/target/bpfel-unknown-none/release/net-ebpf"),
    };
    if !object.exists() {
        panic!(
            "the XDP object {} does not exist: build through `cargo xtask build` (it builds \
             net-ebpf for bpfel-unknown-none first), or set NETXDP_EBPF_OBJECT",
            object.display()
        );
    }
    println!("cargo::rerun-if-changed={}", object.display());
    println!("cargo::rustc-env=NETXDP_EBPF_OBJECT={}", object.display());
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo::rustc-env=NETXDP_GIT_COMMIT={commit}");
}
