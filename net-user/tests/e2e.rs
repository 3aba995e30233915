//! End to end: the real `netxdp` binary attached to a veth pair whose other end sits in a
//! namespace the test creates, real traffic from kernel sockets in that namespace, and the
//! counts read back with `netxdp stats --json`. Everything is removed even when a test fails.

mod support;

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use net_common::testing::FrameSpec;
use netxdp::{netns::VethNet, pins::PinDir, traffic};
use serde_json::Value;
use support::kernel_available;

fn netxdp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netxdp"))
        .args(args)
        .output()
        .expect("run netxdp")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `netxdp ARGS` must succeed; returns its stdout.
fn ok(args: &[&str]) -> String {
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
fn fails(args: &[&str]) -> String {
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

/// Detaches on drop, so that a failing test leaves no pins behind. Declared after the
/// VethNet, so that it runs before the interface goes.
struct DetachOnDrop(String);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        if PinDir::new(&self.0).dir().exists() {
            let _ = netxdp(&["detach", &self.0]);
        }
    }
}

/// What `ip -d link show` says about XDP on an interface: "xdp", "xdpgeneric" or "none".
fn xdp_on_link(iface: &str) -> &'static str {
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

fn stats_snapshot(iface: &str) -> Value {
    let text = ok(&["stats", iface, "--json", "--count", "1"]);
    let mut lines = text.lines();
    let record: Value = serde_json::from_str(lines.next().expect("one line")).expect("JSON");
    assert!(
        lines.next().is_none(),
        "--count 1 prints one line per interface"
    );
    assert_eq!(record["schema"], "netxdp.stats/v1");
    assert_eq!(record["iface"], iface);
    record
}

fn packets(record: &Value, group: &str, name: &str) -> u64 {
    record[group][name]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("{group}.{name}.packets missing in {record}"))
}

fn counts_real_traffic(mode: &str, link_shows: &str, subnet: u8) {
    let net = VethNet::create(&format!("e{}", &mode[..1]), subnet).expect("veth pair");
    let iface = net.host_if().to_owned();
    let _detach = DetachOnDrop(iface.clone());

    let attached = ok(&["attach", &iface, "--mode", mode]);
    assert!(attached.contains(&format!("in {mode} mode")), "{attached}");
    assert_eq!(xdp_on_link(&iface), link_shows);
    let pins = PinDir::new(&iface);
    for pin in [pins.prog(), pins.link(), pins.stats_map(), pins.info_map()] {
        assert!(pin.exists(), "{} is not pinned", pin.display());
    }
    let status: Value = serde_json::from_str(&ok(&["status", "--json"])).expect("JSON");
    let entry = status["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|i| i["iface"] == iface.as_str())
        .expect("status lists the interface")
        .clone();
    assert_eq!(entry["mode"], mode);
    assert_eq!(entry["live"], true);
    assert_eq!(entry["packets"], 0, "nothing has been sent yet: {entry}");

    let (pings, udp_v4, udp_v6, pings_v6) = (5u16, 100usize, 20usize, 3u16);
    let host_v4 = IpAddr::V4(VethNet::host_v4(subnet));
    let host_v6 = IpAddr::V6(VethNet::host_v6(subnet));
    let (replies, replies_v6) = net
        .run_in_namespace(move || {
            let wait = Duration::from_secs(2);
            let replies = traffic::ping(host_v4, pings, wait)?;
            traffic::udp_burst(SocketAddr::new(host_v4, 9), udp_v4, &[0x11; 58])?;
            traffic::udp_burst(SocketAddr::new(host_v6, 9), udp_v6, &[0x22; 38])?;
            let replies_v6 = traffic::ping(host_v6, pings_v6, wait)?;
            Ok((replies, replies_v6))
        })
        .expect("traffic");
    assert_eq!(
        (replies, replies_v6),
        (pings, pings_v6),
        "XDP_PASS lets every ping through"
    );

    let record = stats_snapshot(&iface);
    let sent = u64::from(pings) + udp_v4 as u64 + udp_v6 as u64 + u64::from(pings_v6);
    assert_eq!(packets(&record, "action", "pass"), sent, "{record}");
    assert_eq!(record["total"]["packets"], sent);
    assert_eq!(
        packets(&record, "l3", "ipv4"),
        u64::from(pings) + udp_v4 as u64
    );
    assert_eq!(
        packets(&record, "l3", "ipv6"),
        udp_v6 as u64 + u64::from(pings_v6)
    );
    assert_eq!(
        packets(&record, "l3", "arp"),
        0,
        "static neighbours: no ARP"
    );
    assert_eq!(packets(&record, "l4", "icmp"), u64::from(pings));
    assert_eq!(packets(&record, "l4", "icmpv6"), u64::from(pings_v6));
    assert_eq!(packets(&record, "l4", "udp"), (udp_v4 + udp_v6) as u64);
    assert_eq!(record["malformed"]["packets"], 0);
    // Frame sizes: ICMP echo 14+20+16, UDP 14+20+8+58 and 14+40+8+38, ICMPv6 14+40+16.
    let bytes = u64::from(pings) * 50
        + udp_v4 as u64 * 100
        + udp_v6 as u64 * 100
        + u64::from(pings_v6) * 70;
    assert_eq!(record["total"]["bytes"], bytes, "{record}");
    assert!(
        record["total"]["pps"].is_null(),
        "a single snapshot has no rate"
    );

    // A second reading over an interval reports rates.
    let two = ok(&[
        "stats",
        &iface,
        "--json",
        "--count",
        "2",
        "--interval",
        "0.2",
    ]);
    let second: Value = serde_json::from_str(two.lines().nth(1).expect("two lines")).expect("JSON");
    assert_eq!(second["total"]["pps"], 0.0);
    assert!(second["interval_secs"].as_f64().is_some_and(|s| s > 0.15));

    ok(&["detach", &iface]);
    assert!(!pins.dir().exists(), "detach removes the pins");
    assert_eq!(
        xdp_on_link(&iface),
        "none",
        "detach removes XDP from the link"
    );
}

#[test]
fn native_mode_counts_real_traffic_exactly() {
    if kernel_available("native_mode_counts_real_traffic_exactly") {
        counts_real_traffic("native", "xdp", 10);
    }
}

#[test]
fn skb_mode_counts_real_traffic_exactly() {
    if kernel_available("skb_mode_counts_real_traffic_exactly") {
        counts_real_traffic("skb", "xdpgeneric", 11);
    }
}

#[test]
fn bad_requests_fail_clearly_and_change_nothing() {
    if !kernel_available("bad_requests_fail_clearly_and_change_nothing") {
        return;
    }
    let error = fails(&["attach", "nxnosuch0"]);
    assert!(error.contains("no such interface: nxnosuch0"), "{error}");
    assert!(!PinDir::new("nxnosuch0").dir().exists());

    let net = VethNet::create("bad", 12).expect("veth pair");
    let iface = net.host_if().to_owned();
    let _detach = DetachOnDrop(iface.clone());
    let error = fails(&["detach", &iface]);
    assert!(
        error.contains(&format!("netxdp is not attached to {iface}")),
        "{error}"
    );
    let error = fails(&["stats", &iface, "--count", "1"]);
    assert!(error.contains("not attached"), "{error}");

    ok(&["attach", &iface, "--mode", "skb"]);
    let program = std::fs::metadata(PinDir::new(&iface).prog()).expect("prog pin");
    let again = ok(&["attach", &iface, "--mode", "skb"]);
    assert!(
        again.contains("already attached") && again.contains("nothing changed"),
        "{again}"
    );
    let again = ok(&["attach", &iface]);
    assert!(
        again.contains("already attached"),
        "auto accepts skb: {again}"
    );
    let error = fails(&["attach", &iface, "--mode", "native"]);
    assert!(
        error.contains("already attached") && error.contains("skb mode"),
        "{error}"
    );
    let after = std::fs::metadata(PinDir::new(&iface).prog()).expect("prog pin");
    assert_eq!(
        program.modified().ok(),
        after.modified().ok(),
        "the pins were not touched"
    );
    assert_eq!(xdp_on_link(&iface), "xdpgeneric");

    let usage = netxdp(&["stats", "--interval", "0"]);
    assert_eq!(usage.status.code(), Some(2), "bad usage exits 2");
}

/// Removes what xdp-filter pins in bpffs for an interface (its state outlives a program
/// that netxdp replaced), and the directories it created if this test made them.
struct XdpFilterCleanup {
    iface: String,
    made: Vec<&'static str>,
}

impl XdpFilterCleanup {
    const DIRS: [&'static str; 2] = ["/sys/fs/bpf/xdp-filter", "/sys/fs/bpf/xdp"];

    fn new(iface: &str) -> Self {
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
        let _ = std::fs::remove_file(format!("/sys/fs/bpf/xdp-filter/programs/{}", self.iface));
        for dir in &self.made {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn a_foreign_xdp_program_is_named_and_replaced_only_with_force() {
    if !kernel_available("a_foreign_xdp_program_is_named_and_replaced_only_with_force") {
        return;
    }
    let net = VethNet::create("fgn", 13).expect("veth pair");
    let iface = net.host_if().to_owned();
    let _detach = DetachOnDrop(iface.clone());
    let _xdp_filter = XdpFilterCleanup::new(&iface);
    let loaded = Command::new("xdp-filter")
        .args(["load", "--mode", "skb", &iface])
        .output()
        .expect("xdp-filter (Debian's xdp-tools; `cargo xtask setup` installs it)");
    assert!(
        loaded.status.success(),
        "xdp-filter load: {}",
        stderr(&loaded)
    );
    let error = fails(&["attach", &iface]);
    let watch_error = fails(&["watch", &iface, "--count", "1"]);
    let forced = netxdp(&["attach", &iface, "--force"]);
    let link = xdp_on_link(&iface);
    assert!(
        error.contains("is already attached to") && error.contains("--force"),
        "{error}"
    );
    assert!(
        error.contains("skb mode") && error.contains("(id "),
        "named: {error}"
    );
    assert!(
        watch_error.contains("is already attached to"),
        "{watch_error}"
    );
    assert!(
        forced.status.success(),
        "--force replaces it: {}",
        stderr(&forced)
    );
    assert!(
        stderr(&forced).contains("removed XDP program"),
        "{}",
        stderr(&forced)
    );
    assert_eq!(link, "xdp", "netxdp now holds the link, natively");
}

#[test]
fn watch_counts_malformed_frames_logs_them_with_v_and_detaches_on_sigterm() {
    let test = "watch_counts_malformed_frames_logs_them_with_v_and_detaches_on_sigterm";
    if !kernel_available(test) {
        return;
    }
    let net = VethNet::create("wch", 14).expect("veth pair");
    let iface = net.host_if().to_owned();
    let watch = Command::new(env!("CARGO_BIN_EXE_netxdp"))
        .args(["-v", "watch", &iface, "--json", "--interval", "0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netxdp watch");
    let deadline = Instant::now() + Duration::from_secs(10);
    while xdp_on_link(&iface) == "none" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let attached = xdp_on_link(&iface);

    // Three IPv4 frames with IHL 4 (a header shorter than IPv4's minimum), and two whole
    // UDP frames, injected raw from the namespace's end.
    let mut bad = FrameSpec::ipv4_udp(1, 2, 10).build();
    bad[14] = 0x44;
    let good = FrameSpec::ipv4_udp(1, 2, 10).build();
    let peer = net.peer_if().to_owned();
    let frames = vec![bad.clone(), bad.clone(), bad, good.clone(), good];
    let sent = net
        .run_in_namespace(move || traffic::send_frames(&peer, &frames))
        .expect("inject frames");
    std::thread::sleep(Duration::from_millis(400));

    assert!(
        !Path::new(&PinDir::new(&iface).link()).exists(),
        "watch pins nothing"
    );
    // SAFETY: kill(2) on a child we own.
    unsafe { libc_kill(watch.id() as i32, 15) };
    let output = watch.wait_with_output().expect("watch exits");
    let log = stderr(&output);
    assert_ne!(attached, "none", "watch attached: {log}");
    assert!(output.status.success(), "{log}");
    assert_eq!(sent, 5);
    let text = stdout(&output);
    let last: Value = serde_json::from_str(text.lines().last().expect("samples")).expect("JSON");
    assert_eq!(last["iface"], iface.as_str());
    assert_eq!(last["total"]["packets"], 5, "{last}");
    assert_eq!(last["malformed"]["packets"], 3, "{last}");
    assert_eq!(last["l4"]["udp"]["packets"], 2, "{last}");
    assert_eq!(
        log.matches("malformed frame, 52 bytes").count(),
        3,
        "the kernel's own log reaches -v: {log}"
    );
    assert!(log.contains(&format!("detached from {iface}")), "{log}");
    assert_eq!(xdp_on_link(&iface), "none", "SIGTERM detaches");
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}
