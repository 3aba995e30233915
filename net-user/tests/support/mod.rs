//! Shared by the kernel and end-to-end tests.
#![allow(dead_code)] // Each test binary uses its own part of this module.

use netxdp::preflight;

/// Whether the kernel tests can run here: root and bpffs. Under CI=true a missing
/// precondition fails the test; elsewhere the test says loudly that it skipped.
pub fn kernel_available(test: &str) -> bool {
    let problem = preflight::require_privileges()
        .and_then(|()| preflight::require_bpffs())
        .err();
    let Some(problem) = problem else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false") {
        panic!("{test} cannot run under CI: {problem}");
    }
    eprintln!("SKIPPED {test}: {problem} (under CI=true this fails)");
    false
}

/// A frame as hex, for failure messages that can be replayed.
pub fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}
