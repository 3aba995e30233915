//! What netxdp does in bpffs beyond its own directory: nothing. An interface name that would
//! lead out of `/sys/fs/bpf/netxdp/IFACE` is refused before anything is touched.
//!
//! Each case runs the real binary in a private mount namespace (`unshare -m`) over a fresh
//! bpffs of its own, holding sentinels: were a name ever let through again, what it removed
//! would be that private instance, never the host's pins.

mod support;

use std::process::{Command, Output};

use support::{kernel_available, stderr, stdout};

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
