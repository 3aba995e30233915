//! Shared by the kernel and end-to-end tests.
#![allow(dead_code)] // Each test binary uses its own part of this module.

use aya::{
    Ebpf,
    programs::{TestRun, TestRunOptions},
};
use net_common::stats::Stats;
use netxdp::{counters::CounterMap, preflight, program};

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

/// Runs the loaded (not attached) XDP program of `ebpf` once on `frame` through
/// BPF_PROG_TEST_RUN: its verdict, and what it added to `counters`.
pub fn run_counted(ebpf: &mut Ebpf, counters: &CounterMap, frame: &[u8]) -> (u32, Stats) {
    let before = counters.read().expect("read counters");
    let result = program::xdp_program(ebpf)
        .expect("program")
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::new()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on {}: {e}", hex(frame)));
    let after = counters.read().expect("read counters");
    (result.return_value, after.since(&before))
}
