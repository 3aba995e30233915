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
    // Packagers building from a tarball, without git, can name the commit themselves.
    println!("cargo::rerun-if-env-changed=NETXDP_GIT_COMMIT");
    let commit = std::env::var("NETXDP_GIT_COMMIT")
        .ok()
        .filter(|commit| !commit.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown commit".to_owned());
    println!("cargo::rustc-env=NETXDP_GIT_COMMIT={commit}");
    // The man pages' date: the commit's, so that one commit always gives the same pages.
    let date = git(&["log", "-1", "--format=%cs", "HEAD"])
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
    println!("cargo::rustc-env=NETXDP_GIT_DATE={date}");
    // Without these, a build after a new commit would keep the old commit's name: the
    // rerun-if lines above stop cargo from rerunning this script on every change.
    for path in ["HEAD", "packed-refs"]
        .into_iter()
        .map(str::to_owned)
        .chain(git(&["symbolic-ref", "-q", "HEAD"]))
    {
        // A path that does not exist would make cargo rerun this script on every build.
        if let Some(file) = git(&["rev-parse", "--path-format=absolute", "--git-path", &path])
            .filter(|file| std::path::Path::new(file).exists())
        {
            println!("cargo::rerun-if-changed={file}");
        }
    }
}

/// A git command's trimmed output, or None without git, outside a checkout, or on failure.
fn git(args: &[&str]) -> Option<String> {
    std::process::Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
