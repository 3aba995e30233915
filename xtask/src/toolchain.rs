//! Finding, and where possible installing, a toolchain that builds Rust for the BPF target.
//!
//! Two routes, in order of preference:
//! 1. Debian's rustc-web with its prebuilt `core` for bpfel-unknown-none
//!    (package libstd-rust-web-dev-bpf), and bpf-linker 0.13.0 built on Debian's LLVM 22.
//!    Works offline; on Debian as root, `setup` installs all of it.
//! 2. rustup's nightly with rust-src (`-Z build-std=core`) and a bpf-linker on PATH.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{is_root, run};

/// Debian packages: the BPF toolchain, then what the kernel tests and benchmarks use.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    (
        "rustc-web",
        "rustc 1.96 built on LLVM 22, with a BPF backend",
    ),
    ("cargo-web", "the cargo that goes with rustc-web"),
    (
        "libstd-rust-web-dev-bpf",
        "a prebuilt core for bpfel-unknown-none (no -Z build-std)",
    ),
    ("llvm-22-dev", "LLVM 22, which bpf-linker links against"),
    ("bpftool", "inspecting and running pinned programs"),
    (
        "iproute2",
        "namespaces and veth pairs for the end-to-end tests and the demo",
    ),
    (
        "xdp-tools",
        "xdp-filter, the peer the benchmark compares against",
    ),
    (
        "nftables",
        "nft: the netdev-ingress chain the classifier benchmark compares against",
    ),
    (
        "libpcap-dev",
        "libpcap, which compiles `netxdp capture` expressions (tcpdump's syntax)",
    ),
    (
        "tcpdump",
        "reading back what `netxdp capture` writes, in the capture tests",
    ),
    (
        "tshark",
        "reading back what `netxdp capture` writes, a second opinion",
    ),
    (
        "man-db",
        "man, which the package check asks where the pages went",
    ),
    (
        "bash-completion",
        "the loader the package check completes netxdp with",
    ),
    (
        "systemd",
        "systemd-analyze, which the package check verifies the unit with",
    ),
];

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_BPF_CORE: &str = "/usr/lib/rustlib/bpfel-unknown-none/lib";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// How to build the eBPF crate.
pub enum BpfToolchain {
    /// Debian's rustc-web and its prebuilt core; `linker_dir` holds bpf-linker.
    Debian { linker_dir: PathBuf },
    /// rustup's nightly with rust-src, bpf-linker on PATH.
    Nightly,
}

/// Makes sure a BPF toolchain is present, installing what is missing when it can, and says
/// what it does.
pub fn setup() -> Result<BpfToolchain> {
    if is_debian() && is_root() {
        install_missing_debian_packages()?;
    } else if is_debian() {
        warn_missing_debian_packages();
    }
    if debian_core_present() {
        let linker_dir = ensure_bpf_linker()?;
        return Ok(BpfToolchain::Debian { linker_dir });
    }
    if nightly_with_rust_src() {
        if which("bpf-linker").is_none() {
            bail!(
                "rustup nightly with rust-src is present but bpf-linker is not: \
                 `cargo install bpf-linker` installs it"
            );
        }
        return Ok(BpfToolchain::Nightly);
    }
    bail!(
        "no Rust toolchain that can build for bpfel-unknown-none was found. Either:\n  \
         - on Debian 12 (as root, or run `cargo xtask setup` with sudo): apt-get install \
         rustc-web cargo-web libstd-rust-web-dev-bpf llvm-22-dev; or\n  \
         - rustup toolchain install nightly --component rust-src && cargo install bpf-linker"
    )
}

fn is_debian() -> bool {
    Path::new("/etc/debian_version").exists()
}

fn debian_core_present() -> bool {
    Path::new(DEBIAN_RUSTC).exists()
        && std::fs::read_dir(DEBIAN_BPF_CORE).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
}

fn nightly_with_rust_src() -> bool {
    let Ok(output) = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
    else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    output.status.success()
        && Path::new(&sysroot)
            .join("lib/rustlib/src/rust/library")
            .exists()
}

pub fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

fn missing_debian_packages() -> Vec<&'static (&'static str, &'static str)> {
    DEBIAN_PACKAGES
        .iter()
        .filter(|(package, _)| !package_installed(package))
        .collect()
}

/// Without root nothing is installed: what is missing is said, with the command that
/// installs it, before a build fails for it (libpcap-dev's absence is a linker error).
fn warn_missing_debian_packages() {
    let missing = missing_debian_packages();
    if missing.is_empty() {
        return;
    }
    eprintln!("xtask setup: not root, so these Debian packages are not installed:");
    for (package, why) in &missing {
        eprintln!("  {package}: {why}");
    }
    let names: Vec<&str> = missing.iter().map(|(package, _)| *package).collect();
    eprintln!(
        "  `sudo cargo xtask setup`, or `sudo apt-get install {}`, installs them",
        names.join(" ")
    );
}

fn install_missing_debian_packages() -> Result<()> {
    let missing = missing_debian_packages();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask setup: installing Debian packages:");
    for (package, why) in &missing {
        eprintln!("  {package}: {why}");
    }
    run(Command::new("apt-get").args(["update", "-q"]))
        .context("apt-get update (needed to install the packages above)")?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(missing.iter().map(|(package, _)| package))
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("installing the Debian packages above")
}

/// Whether the program at `path` is there and answers `--version`: a tool built into the
/// cache before is not built again.
pub fn runs(path: &Path) -> bool {
    Command::new(path)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// bpf-linker built on Debian's LLVM 22, in a cache shared by every checkout.
fn ensure_bpf_linker() -> Result<PathBuf> {
    let root = cache_dir()?.join(format!("bpf-linker-{BPF_LINKER_VERSION}-llvm22"));
    let bin = root.join("bin");
    let linker = bin.join("bpf-linker");
    if runs(&linker) {
        return Ok(bin);
    }
    if !Path::new(LLVM_PREFIX).exists() {
        bail!("bpf-linker needs LLVM 22 ({LLVM_PREFIX}): apt-get install llvm-22-dev");
    }
    eprintln!(
        "xtask setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 into {} \
         (about a minute, once)",
        root.display()
    );
    run(Command::new(DEBIAN_CARGO)
        .args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
        ])
        .args(["--no-default-features", "--features", "llvm-22", "--root"])
        .arg(&root)
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env("RUSTC", DEBIAN_RUSTC)
        .env_remove("RUSTUP_TOOLCHAIN"))
    .context("building bpf-linker")?;
    Ok(bin)
}

/// Where tools built for netxdp live, shared by every checkout: ~/.cache/netxdp.
pub fn cache_dir() -> Result<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(cache.join("netxdp"))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}
