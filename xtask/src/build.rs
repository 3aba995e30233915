//! Building the XDP object and the binary that embeds it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::{
    host_cargo, run,
    toolchain::{self, BpfToolchain},
};

/// Environment a parent cargo sets that must not leak into the BPF build.
const HOST_ONLY_ENV: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO",
];

/// Builds net-ebpf (always optimised: the verifier and the hot path both need it) and
/// returns the object's path.
pub fn ebpf(root: &Path) -> Result<PathBuf> {
    let toolchain = toolchain::setup()?;
    let crate_dir = root.join("net-ebpf");
    let mut cargo = match &toolchain {
        BpfToolchain::Debian { linker_dir } => {
            let mut cargo = Command::new("/usr/bin/cargo");
            for var in HOST_ONLY_ENV {
                cargo.env_remove(var);
            }
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![linker_dir.clone()];
            paths.extend(std::env::split_paths(&path));
            cargo
                .env("PATH", std::env::join_paths(paths)?)
                .env("RUSTC", "/usr/bin/rustc")
                // Unstable features for aya-ebpf (asm_experimental_arch) and net-ebpf
                // (core_intrinsics, for the compare-and-swap the target does not offer as an
                // atomic type) alone; `1` would make the build ask for -Z build-std, which
                // needs sources Debian does not ship here.
                .env("RUSTC_BOOTSTRAP", "aya_ebpf,net_ebpf")
                .args(["build", "--release"]);
            cargo
        }
        BpfToolchain::Nightly => {
            let mut cargo = Command::new("cargo");
            for var in HOST_ONLY_ENV {
                cargo.env_remove(var);
            }
            cargo.args(["+nightly", "build", "--release", "-Z", "build-std=core"]);
            cargo
        }
    };
    run(cargo.current_dir(&crate_dir)).context("building the XDP program (net-ebpf)")?;
    Ok(crate_dir.join("target/bpfel-unknown-none/release/net-ebpf"))
}

/// Builds the XDP object, then `netxdp`; returns the binary's path.
pub fn all(root: &Path, release: bool) -> Result<PathBuf> {
    let object = ebpf(root)?;
    let mut cargo = host_cargo(root, &object);
    cargo.args(["build", "--package", "net-user", "--bin", "netxdp"]);
    if release {
        cargo.arg("--release");
    }
    run(&mut cargo).context("building netxdp")?;
    let profile = if release { "release" } else { "debug" };
    Ok(root.join("target").join(profile).join("netxdp"))
}
