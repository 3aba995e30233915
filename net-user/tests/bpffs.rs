//! netxdp and bpffs, with the real binary in private mount namespaces (`unshare -m`), so that
//! nothing here can touch the host's bpffs:
//!
//! - beyond its own directory, netxdp touches nothing: an interface name that would lead out
//!   of `/sys/fs/bpf/netxdp/IFACE` is refused before anything is touched (each case runs over
//!   a fresh bpffs of its own holding sentinels: were a name ever let through again, what it
//!   removed would be that private instance, never the host's pins);
//! - where bpffs is not mounted, netxdp mounts it and says so once; without the privilege to
//!   mount, it says how to.

mod support;

use std::{
    os::unix::fs::MetadataExt as _,
    process::{Command, Output},
};

use netxdp::netns::VethNet;
use nix::sys::statfs;
use support::{kernel_available, stderr, stdout, xdp_on_link};

const NOTICE: &str = "netxdp: mounted bpffs at /sys/fs/bpf (it was not mounted)\n";

/// Whether `unshare` (util-linux) is here; under CI=true its absence fails the test.
fn unshare_available(test: &str) -> bool {
    match Command::new("unshare").arg("--version").output() {
        Ok(output) if output.status.success() => true,
        outcome => {
            let problem = format!("`unshare` (util-linux) cannot run: {outcome:?}");
            if std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false") {
                panic!("{test} cannot run under CI: {problem}");
            }
            eprintln!("SKIPPED {test}: {problem} (under CI=true this fails)");
            false
        }
    }
}

/// `netxdp ARGS` in a private mount namespace whose /sys/fs/bpf is a fresh bpffs holding a
/// sentinel beside netxdp's directory and a sentinel attachment inside it; stdout ends with
/// "sentinels intact" when both are still there after netxdp ran.
fn netxdp_beside_sentinels(args: &[&str]) -> Output {
    // Private first (unshare -m makes it so too): nothing below reaches the host's mounts.
    const SCRIPT: &str = r#"
        set -u
        mount --make-rprivate / || exit 90
        mount -t bpf bpf /sys/fs/bpf || exit 91
        mkdir -p /sys/fs/bpf/netxdp-sentinel /sys/fs/bpf/netxdp/nxsentinel0 || exit 92
        "$0" "$@"
        status=$?
        if [ -d /sys/fs/bpf/netxdp-sentinel ] && [ -d /sys/fs/bpf/netxdp/nxsentinel0 ]; then
            echo "sentinels intact"
        fi
        exit $status
    "#;
    Command::new("unshare")
        .args(["-m", "sh", "-c", SCRIPT, env!("CARGO_BIN_EXE_netxdp")])
        .args(args)
        .output()
        .expect("run unshare")
}

#[test]
fn names_that_lead_out_of_an_attachment_are_refused_and_remove_nothing() {
    let test = "names_that_lead_out_of_an_attachment_are_refused_and_remove_nothing";
    if !kernel_available(test) || !unshare_available(test) {
        return;
    }
    // The sentinels are there when netxdp is given a good name (and nothing to remove).
    let output = netxdp_beside_sentinels(&["status"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("sentinels intact"), "{output:?}");

    for (args, problem) in [
        (&["detach", ".."][..], r#"".." is not an interface name"#),
        (&["detach", "."], r#""." is not an interface name"#),
        (&["detach", ""], "an interface name cannot be empty"),
        (&["detach", "../netxdp"], r#""../netxdp" contains '/'"#),
        (&["attach", "../x"], r#""../x" contains '/'"#),
        (&["rule", "list", "a/b"], r#""a/b" contains '/'"#),
        (
            &["rule", "del", "..", "1"],
            r#"".." is not an interface name"#,
        ),
        (&["policy", "."], r#""." is not an interface name"#),
        (
            &["stats", "nxsentinel0", ".."],
            r#"".." is not an interface name"#,
        ),
    ] {
        let output = netxdp_beside_sentinels(args);
        let (out, err) = (stdout(&output), stderr(&output));
        assert_eq!(
            output.status.code(),
            Some(2),
            "netxdp {args:?} is bad usage: {out}{err}"
        );
        assert!(err.contains(problem), "netxdp {args:?}: {err}");
        assert!(err.contains("invalid value"), "netxdp {args:?}: {err}");
        assert!(
            out.contains("sentinels intact"),
            "netxdp {args:?} removed a sentinel: {out}{err}"
        );
    }
}

/// `SCRIPT` run by sh, with $0 the netxdp binary and $1... `args`, in a private mount
/// namespace where /sys/fs/bpf is not mounted. The host's mount stays as it is: the
/// namespace is made private before anything in it is unmounted.
fn without_bpffs(script: &str, args: &[&str]) -> Output {
    let script = format!(
        r#"
        set -u
        mount --make-rprivate / || exit 90
        while mountpoint -q /sys/fs/bpf; do umount /sys/fs/bpf || exit 91; done
        {script}
        "#
    );
    Command::new("unshare")
        .args(["-m", "sh", "-c", &script, env!("CARGO_BIN_EXE_netxdp")])
        .args(args)
        .output()
        .expect("run unshare")
}

/// The host's bpffs, as a device number: the same before and after a test when the test
/// left the mount alone.
fn host_bpffs() -> u64 {
    let fs = statfs::statfs("/sys/fs/bpf").expect("statfs /sys/fs/bpf");
    assert_eq!(fs.filesystem_type(), statfs::BPF_FS_MAGIC, "host bpffs");
    std::fs::metadata("/sys/fs/bpf").expect("/sys/fs/bpf").dev()
}

#[test]
fn demo_mounts_bpffs_where_it_is_missing_and_says_so_once() {
    let test = "demo_mounts_bpffs_where_it_is_missing_and_says_so_once";
    if !kernel_available(test) || !unshare_available(test) {
        return;
    }
    let host = host_bpffs();
    let output = without_bpffs(r#"exec "$0" "$@""#, &["demo", "--seconds", "1"]);
    let err = stderr(&output);
    assert!(
        output.status.success(),
        "demo failed: {}{err}",
        stdout(&output)
    );
    assert_eq!(err.matches(NOTICE).count(), 1, "{err}");
    assert!(err.contains("demo: detached"), "{err}");
    assert_eq!(host_bpffs(), host, "the host's bpffs was left alone");
}

#[test]
fn attach_and_detach_mount_bpffs_where_it_is_missing_and_say_so_once() {
    let test = "attach_and_detach_mount_bpffs_where_it_is_missing_and_say_so_once";
    if !kernel_available(test) || !unshare_available(test) {
        return;
    }
    let host = host_bpffs();
    let net = VethNet::create("bfs", 70).expect("veth pair");
    let iface = net.host_if();
    // Both in one namespace: its bpffs, and the pins in it, go when the namespace does.
    let output = without_bpffs(
        r#"
        "$0" attach "$1" --mode skb || exit
        [ -e "/sys/fs/bpf/netxdp/$1/link" ] && echo "link pinned"
        "$0" detach "$1"
        "#,
        &[iface],
    );
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "{out}{err}");
    assert!(
        out.contains(&format!("attached to {iface} in skb mode")),
        "{out}"
    );
    assert!(out.contains("link pinned"), "{out}");
    assert!(
        out.contains(&format!("detached from {iface}; pins removed")),
        "{out}"
    );
    assert_eq!(err.matches(NOTICE).count(), 1, "{err}");
    assert_eq!(xdp_on_link(iface), "none");
    assert!(!support::pins(iface).dir().exists(), "no pins on the host");
    assert_eq!(host_bpffs(), host, "the host's bpffs was left alone");
}

#[test]
fn without_the_privilege_to_mount_bpffs_netxdp_says_how_to() {
    let test = "without_the_privilege_to_mount_bpffs_netxdp_says_how_to";
    if !kernel_available(test) || !unshare_available(test) {
        return;
    }
    // Root without CAP_SYS_ADMIN: enough to load programs (CAP_BPF), not to mount.
    let output = without_bpffs(
        r#"exec setpriv --bounding-set -sys_admin "$0" "$@""#,
        &["status"],
    );
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{}{err}", stdout(&output));
    assert!(
        err.contains("bpffs is not mounted at /sys/fs/bpf and netxdp could not mount it"),
        "{err}"
    );
    assert!(err.contains("`sudo mount -t bpf bpf /sys/fs/bpf`"), "{err}");
    assert!(!err.contains(NOTICE), "{err}");
}
