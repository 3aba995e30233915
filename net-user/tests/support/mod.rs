//! Shared by the kernel and end-to-end tests.
#![allow(dead_code)] // Each test binary uses its own part of this module.

pub mod scrape_load;

use aya::{
    Ebpf,
    programs::{TestRun, TestRunOptions},
};
use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use net_common::stats::Stats;
use netxdp::{counters::CounterMap, netns::VethNet, pins::PinDir, preflight, program};
use serde_json::Value;

/// Whether the kernel tests can run here: root and bpffs (mounted here when it is not, as
/// netxdp itself does). Under CI=true a missing precondition fails the test; elsewhere the
/// test says loudly that it skipped.
pub fn kernel_available(test: &str) -> bool {
    let problem = preflight::require_privileges()
        .and_then(|()| preflight::ensure_bpffs())
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

/// How long a test waits for something that happens within milliseconds on any working
/// machine: only a bound, so that a broken test fails instead of hanging, never a condition
/// a slow machine could miss.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Reads with `read` until `done` holds of what it read, for at most [`PATIENCE`]; returns
/// the last reading, for the caller to assert on. Traffic sent from a namespace reaches the
/// XDP program in a softirq, which a busy machine may defer to ksoftirqd: a count can move a
/// moment after the send returned, so a test waits for it rather than reading it once.
pub fn eventually<T>(mut read: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = read();
        if done(&value) || Instant::now() >= deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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

/// `netxdp ARGS`, as built for this test run.
pub fn netxdp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netxdp"))
        .args(args)
        .output()
        .expect("run netxdp")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `netxdp ARGS` must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let output = netxdp(args);
    assert!(
        output.status.success(),
        "netxdp {args:?} failed: {}{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// `netxdp ARGS` must fail with exit status 1; returns its stderr.
pub fn fails(args: &[&str]) -> String {
    let output = netxdp(args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "netxdp {args:?} should fail: {}{}",
        stdout(&output),
        stderr(&output)
    );
    stderr(&output)
}

/// The pins of `iface`, a name the test made.
pub fn pins(iface: &str) -> PinDir {
    PinDir::new(&iface.parse().expect("an interface name"))
}

/// Detaches on drop, so that a failing test leaves no pins behind. Declared after the
/// VethNet, so that it runs before the interface goes.
pub struct DetachOnDrop(pub String);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        if pins(&self.0).dir().exists() {
            let _ = netxdp(&["detach", &self.0]);
        }
    }
}

/// What `ip -d link show` says about XDP on an interface: "xdp", "xdpgeneric" or "none".
pub fn xdp_on_link(iface: &str) -> &'static str {
    let output = Command::new("ip")
        .args(["-d", "link", "show", "dev", iface])
        .output()
        .expect("ip link show");
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("xdpgeneric") {
        "xdpgeneric"
    } else if text.contains(" xdp ") || text.contains("prog/xdp") {
        "xdp"
    } else {
        "none"
    }
}

/// `rule list IFACE --json`, parsed, with its schema checked.
pub fn rules_json(iface: &str) -> Value {
    let record: Value =
        serde_json::from_str(&ok(&["rule", "list", iface, "--json"])).expect("JSON");
    assert_eq!(record["schema"], "netxdp.rules/v1");
    record
}

/// A namespace and veth pair on `subnet` (see [`VethNet::create`]) with netxdp attached to
/// the host end in skb mode: the pair, the host end's name, and the guard that detaches.
/// Bound in this order, the guard drops first: netxdp detaches before the pair goes.
pub fn attached_veth(tag: &str, subnet: u8) -> (VethNet, String, DetachOnDrop) {
    let net = VethNet::create(tag, subnet).expect("veth pair");
    let iface = net.host_if().to_owned();
    let detach = DetachOnDrop(iface.clone());
    ok(&["attach", &iface, "--mode", "skb"]);
    (net, iface, detach)
}

/// A fresh private directory for a test's files, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("netxdp-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Generated rules as rules to add.
pub fn new_rules(
    rules: impl IntoIterator<Item = net_common::rulegen::GenRule>,
) -> Vec<netxdp::filter::NewRule> {
    rules
        .into_iter()
        .map(|rule| netxdp::filter::NewRule {
            action: rule.action,
            priority: rule.priority,
            matches: rule.matches,
            limit: net_common::limit::Limit::NONE,
        })
        .collect()
}

/// The `packets` of the rule with `id` in a `rule list --json` record.
pub fn rule_packets(record: &Value, id: u64) -> u64 {
    record["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|rule| rule["id"] == id)
        .and_then(|rule| rule["packets"].as_u64())
        .unwrap_or_else(|| panic!("no rule {id} in {record}"))
}

/// Stops a spawned `netxdp serve` when dropped, so that a failing test leaves no server.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `stats IFACE --json --count 1`, parsed, with its schema checked.
pub fn stats_snapshot(iface: &str) -> Value {
    let text = ok(&["stats", iface, "--json", "--count", "1"]);
    let mut lines = text.lines();
    let record: Value = serde_json::from_str(lines.next().expect("one line")).expect("JSON");
    assert!(
        lines.next().is_none(),
        "--count 1 prints one line per interface"
    );
    assert_eq!(record["schema"], "netxdp.stats/v2");
    assert_eq!(record["iface"], iface);
    record
}

/// The `packets` of `group.name` in a stats record.
pub fn packets(record: &Value, group: &str, name: &str) -> u64 {
    record[group][name]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("{group}.{name}.packets missing in {record}"))
}

/// Removes what xdp-filter pins in bpffs for an interface (its state outlives a program
/// that netxdp replaced), and the directories it created if this test made them.
pub struct XdpFilterCleanup {
    iface: String,
    made: Vec<&'static str>,
}

impl XdpFilterCleanup {
    const DIRS: [&'static str; 2] = ["/sys/fs/bpf/xdp-filter", "/sys/fs/bpf/xdp"];

    /// `xdp-filter load --mode skb ARGS IFACE`, which must succeed, and its cleanup.
    pub fn load(iface: &str, args: &[&str]) -> Self {
        let cleanup = Self::new(iface);
        let loaded = Command::new("xdp-filter")
            .args(["load", "--mode", "skb"])
            .args(args)
            .arg(iface)
            .output()
            .expect("xdp-filter (Debian's xdp-tools; `cargo xtask setup` installs it)");
        assert!(
            loaded.status.success(),
            "xdp-filter load: {}",
            stderr(&loaded)
        );
        cleanup
    }

    pub fn new(iface: &str) -> Self {
        Self {
            iface: iface.to_owned(),
            made: Self::DIRS
                .into_iter()
                .filter(|dir| !Path::new(dir).exists())
                .collect(),
        }
    }
}

impl Drop for XdpFilterCleanup {
    fn drop(&mut self) {
        let _ = Command::new("xdp-filter")
            .args(["unload", &self.iface])
            .output();
        let program = format!("/sys/fs/bpf/xdp-filter/programs/{}", self.iface);
        let _ = std::fs::remove_file(&program);
        let _ = std::fs::remove_dir_all(&program);
        for dir in &self.made {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
