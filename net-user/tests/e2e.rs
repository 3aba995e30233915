//! End to end: the real `netxdp` binary attached to a veth pair whose other end sits in a
//! namespace the test creates, real traffic from kernel sockets in that namespace, and the
//! counts read back with `netxdp stats --json`. Everything is removed even when a test fails.

mod support;

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use net_common::testing::FrameSpec;
use netxdp::{netns::VethNet, traffic};
use serde_json::Value;
use support::{
    DetachOnDrop, PATIENCE, attached_veth, eventually, fails, kernel_available, netxdp, ok,
    rules_json, stderr, stdout, xdp_on_link,
};

fn stats_snapshot(iface: &str) -> Value {
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
    let pins = support::pins(&iface);
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
            // Every ping is answered: a long wait costs nothing, and a slow machine gets it.
            let replies = traffic::ping(host_v4, pings, PATIENCE)?;
            traffic::udp_burst(SocketAddr::new(host_v4, 9), udp_v4, &[0x11; 58])?;
            traffic::udp_burst(SocketAddr::new(host_v6, 9), udp_v6, &[0x22; 38])?;
            let replies_v6 = traffic::ping(host_v6, pings_v6, PATIENCE)?;
            Ok((replies, replies_v6))
        })
        .expect("traffic");
    assert_eq!(
        (replies, replies_v6),
        (pings, pings_v6),
        "XDP_PASS lets every ping through"
    );

    let sent = u64::from(pings) + udp_v4 as u64 + udp_v6 as u64 + u64::from(pings_v6);
    let record = eventually(
        || stats_snapshot(&iface),
        |record| record["total"]["packets"] == sent,
    );
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
    assert!(!support::pins("nxnosuch0").dir().exists());

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
    let program = std::fs::metadata(support::pins(&iface).prog()).expect("prog pin");
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
    let after = std::fs::metadata(support::pins(&iface).prog()).expect("prog pin");
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
    let mut watch = Command::new(env!("CARGO_BIN_EXE_netxdp"))
        .args(["-v", "watch", &iface, "--json", "--interval", "0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netxdp watch");
    let text = Collected::of(watch.stdout.take().expect("stdout"));
    let log = Collected::of(watch.stderr.take().expect("stderr"));
    let attached = eventually(|| xdp_on_link(&iface), |shows| *shows != "none");

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
    // Until a sample counts all five and the log shows the three malformed ones: both come
    // from the kernel a moment after the frames were sent.
    eventually(
        || (text.get(), log.get()),
        |(text, log)| {
            let counted = text
                .lines()
                .last()
                .and_then(|line| serde_json::from_str::<Value>(line).ok())
                .is_some_and(|last| last["total"]["packets"] == 5);
            counted && log.matches("malformed frame, 52 bytes").count() == 3
        },
    );

    assert!(
        !Path::new(&support::pins(&iface).link()).exists(),
        "watch pins nothing"
    );
    terminate(watch.id());
    let status = watch.wait().expect("watch exits");
    let (text, log) = (text.all(), log.all());
    assert_ne!(attached, "none", "watch attached: {log}");
    assert!(status.success(), "{log}");
    assert_eq!(sent, 5);
    let last: Value = serde_json::from_str(text.lines().last().expect("samples")).expect("JSON");
    assert_eq!(last["iface"], iface.as_str());
    assert_eq!(last["total"]["packets"], 5, "{last}");
    assert_eq!(last["malformed"]["packets"], 3, "{last}");
    assert_eq!(last["dropped"]["malformed"]["packets"], 3, "{last}");
    assert_eq!(last["action"]["drop"]["packets"], 3, "{last}");
    assert_eq!(last["l4"]["udp"]["packets"], 2, "{last}");
    assert_eq!(
        log.matches("malformed frame, 52 bytes").count(),
        3,
        "the kernel's own log reaches -v: {log}"
    );
    assert!(log.contains(&format!("detached from {iface}")), "{log}");
    assert_eq!(xdp_on_link(&iface), "none", "SIGTERM detaches");
}

/// What a child writes to a pipe, collected by a thread as it comes.
struct Collected {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Collected {
    fn of(mut pipe: impl std::io::Read + Send + 'static) -> Self {
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let shared = text.clone();
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read @ 1..) = pipe.read(&mut buffer) {
                shared
                    .lock()
                    .expect("not poisoned")
                    .push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        });
        Self { text, reader }
    }

    /// What came so far.
    fn get(&self) -> String {
        self.text.lock().expect("not poisoned").clone()
    }

    /// Everything, once the child closed the pipe.
    fn all(self) -> String {
        self.reader.join().expect("reader");
        let text = self.text.lock().expect("not poisoned");
        text.clone()
    }
}

/// SIGTERM to a child this test spawned and has not reaped.
fn terminate(pid: u32) {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
}

/// The `packets` of the rule with `id` in a `rule list --json` record.
fn rule_packets(record: &Value, id: u64) -> u64 {
    record["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|rule| rule["id"] == id)
        .and_then(|rule| rule["packets"].as_u64())
        .unwrap_or_else(|| panic!("no rule {id} in {record}"))
}

#[test]
fn a_drop_rule_on_a_source_prefix_stops_ping_and_udp_until_deleted() {
    let test = "a_drop_rule_on_a_source_prefix_stops_ping_and_udp_until_deleted";
    if !kernel_available(test) {
        return;
    }
    let subnet = 15;
    let (net, iface, _detach) = attached_veth("dny", subnet);
    let host_v4 = VethNet::host_v4(subnet);
    let host_v6 = VethNet::host_v6(subnet);
    let sink = traffic::UdpSink::bind(SocketAddr::new(IpAddr::V4(host_v4), 9)).expect("bind");

    // The peer's /30, written with host bits set: accepted, normalised, and said so.
    let prefix = format!("{}/30", VethNet::peer_v4(subnet));
    let added = netxdp(&["rule", "add", &iface, "--action", "drop", "--src", &prefix]);
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(
        stderr(&added).contains("normalised to 198.18.15.0/30"),
        "{}",
        stderr(&added)
    );
    let id: u64 = stdout(&added)
        .trim()
        .parse()
        .expect("rule add prints the id");

    let (pings, datagrams, pings_v6) = (3u16, 40usize, 2u16);
    // IPv4 pings wait `wait_v4` for a reply: briefly where none may come (a slow machine can
    // only make the check weaker), long where every one must.
    let send = move |wait_v4: Duration| {
        move || {
            let replies = traffic::ping(IpAddr::V4(host_v4), pings, wait_v4)?;
            traffic::udp_burst(SocketAddr::new(IpAddr::V4(host_v4), 9), datagrams, &[7; 32])?;
            let replies_v6 = traffic::ping(IpAddr::V6(host_v6), pings_v6, PATIENCE)?;
            Ok((replies, replies_v6))
        }
    };
    let sent_at = Instant::now();
    let (replies, replies_v6) = net
        .run_in_namespace(send(Duration::from_millis(300)))
        .expect("traffic");
    assert_eq!(replies, 0, "ping from the dropped prefix gets no reply");
    assert_eq!(replies_v6, pings_v6, "other traffic (IPv6) still passes");
    assert_eq!(sink.drain(Duration::from_millis(200)).expect("drain"), 0);
    let blocked = u64::from(pings) + datagrams as u64;
    let rules = eventually(
        || rules_json(&iface),
        |rules| rule_packets(rules, id) == blocked,
    );
    assert_eq!(rule_packets(&rules, id), blocked);
    let ago = rules["rules"][0]["last_hit_secs_ago"]
        .as_f64()
        .expect("a last hit");
    // No earlier than the traffic (a second of slack for the kernel's coarse clock and
    // rounding), however long the test took since.
    let since_sent = sent_at.elapsed().as_secs_f64() + 1.0;
    assert!(
        (0.0..since_sent).contains(&ago),
        "last hit {ago} s ago, traffic sent {since_sent} s ago: {rules}"
    );
    let record = eventually(
        || stats_snapshot(&iface),
        |record| record["total"]["packets"] == blocked + u64::from(pings_v6),
    );
    assert_eq!(packets(&record, "action", "drop"), blocked, "{record}");
    assert_eq!(
        packets(&record, "action", "pass"),
        u64::from(pings_v6),
        "{record}"
    );
    assert_eq!(record["matched"]["packets"], blocked, "{record}");

    ok(&["rule", "del", &iface, &id.to_string()]);
    assert_eq!(rules_json(&iface)["rules"], serde_json::json!([]));
    let (replies, _) = net.run_in_namespace(send(PATIENCE)).expect("traffic");
    assert_eq!(replies, pings, "rule del lets ping through again");
    assert_eq!(
        sink.receive(datagrams, PATIENCE, Duration::from_millis(200))
            .expect("receive"),
        datagrams
    );
    let record = stats_snapshot(&iface);
    assert_eq!(
        packets(&record, "action", "drop"),
        blocked,
        "nothing more dropped"
    );
}

#[test]
fn an_allow_list_passes_one_flow_and_neighbour_discovery_only() {
    let test = "an_allow_list_passes_one_flow_and_neighbour_discovery_only";
    if !kernel_available(test) {
        return;
    }
    let subnet = 16;
    let (net, iface, _detach) = attached_veth("alw", subnet);
    let (host_v4, host_v6) = (VethNet::host_v4(subnet), VethNet::host_v6(subnet));
    let sink = traffic::UdpSink::bind(SocketAddr::new(IpAddr::V4(host_v4), 9)).expect("bind");

    let peer = VethNet::peer_v4(subnet).to_string();
    let id: u64 = ok(&[
        "rule", "add", &iface, "--action", "pass", "--src", &peer, "--proto", "udp", "--dport", "9",
    ])
    .trim()
    .parse()
    .expect("id");
    assert!(ok(&["policy", &iface, "drop"]).contains("policy drop"));

    // The peer forgets the host's addresses, so it must resolve them with ARP and neighbour
    // discovery through the allow-list.
    for addr in [host_v4.to_string(), host_v6.to_string()] {
        netxdp::netns::ip(&[
            "-n",
            net.namespace(),
            "neigh",
            "del",
            &addr,
            "dev",
            net.peer_if(),
        ])
        .expect("forget a neighbour");
    }
    let (datagrams, datagrams_v6, pings) = (25usize, 10usize, 2u16);
    let (replies, neighbours) = net
        .run_in_namespace(move || {
            traffic::udp_burst(SocketAddr::new(IpAddr::V4(host_v4), 9), datagrams, &[1; 20])?;
            traffic::udp_burst(
                SocketAddr::new(IpAddr::V6(host_v6), 9),
                datagrams_v6,
                &[2; 20],
            )?;
            let replies = traffic::ping(IpAddr::V4(host_v4), pings, Duration::from_millis(300))?;
            Ok((replies, ()))
        })
        .expect("traffic");
    let () = neighbours;
    assert_eq!(replies, 0, "ping is not on the allow-list");
    assert_eq!(
        sink.receive(datagrams, PATIENCE, Duration::from_millis(300))
            .expect("receive"),
        datagrams,
        "the allowed flow arrives whole, after ARP resolved the host"
    );
    let table = Command::new("ip")
        .args(["-n", net.namespace(), "neigh", "show", "dev", net.peer_if()])
        .output()
        .expect("ip neigh");
    let table = String::from_utf8_lossy(&table.stdout);
    for addr in [host_v4.to_string(), host_v6.to_string()] {
        let line = table
            .lines()
            .find(|line| line.starts_with(&format!("{addr} ")));
        assert!(
            line.is_some_and(|line| line.contains("lladdr")),
            "the peer resolved {addr} through the drop policy:\n{table}"
        );
    }
    assert_eq!(rule_packets(&rules_json(&iface), id), datagrams as u64);
    // The IPv6 datagrams waited in the peer's neighbour queue until discovery resolved the
    // host, and may reach the program a moment after the sends returned.
    let dropped = (datagrams_v6 + usize::from(pings)) as u64;
    let record = eventually(
        || stats_snapshot(&iface),
        |record| packets(record, "action", "drop") == dropped,
    );
    assert_eq!(packets(&record, "action", "drop"), dropped, "{record}");
    assert!(packets(&record, "l3", "arp") >= 1, "{record}");
    assert_eq!(
        packets(&record, "action", "pass"),
        datagrams as u64 + packets(&record, "l3", "arp") + packets(&record, "l4", "icmpv6"),
        "only the flow, ARP and neighbour discovery pass: {record}"
    );
}

#[test]
fn bad_rules_fail_clearly_and_change_nothing() {
    let test = "bad_rules_fail_clearly_and_change_nothing";
    if !kernel_available(test) {
        return;
    }
    let (_net, iface, _detach) = attached_veth("brl", 17);
    ok(&[
        "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "53",
    ]);
    let before = rules_json(&iface);

    let add = |extra: &[&str]| {
        let mut args = vec!["rule", "add", iface.as_str(), "--action", "drop"];
        args.extend_from_slice(extra);
        netxdp(&args)
    };
    for (extra, says) in [
        (&["--src", "198.18.0.300"][..], "198.18.0.300"),
        (&["--src", "198.18.0.0/33"], "/32"),
        (&["--proto", "udp", "--dport", "65536"], "65536"),
        (&["--proto", "udp", "--dport", "2000-1000"], "reversed"),
        (&["--proto", "bogus"], "bogus"),
    ] {
        let output = add(extra);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{extra:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(says),
            "{extra:?}: {}",
            stderr(&output)
        );
    }
    for (extra, says) in [
        (
            &["--proto", "icmp", "--dport", "80"][..],
            "ports need proto tcp or udp",
        ),
        (&["--proto", "udp", "--dport", "53"], "already matches"),
        (
            &["--src", "198.18.0.0/24", "--dst", "fd00::/8"],
            "different families",
        ),
    ] {
        let output = add(extra);
        assert_eq!(output.status.code(), Some(1), "{extra:?}");
        assert!(
            stderr(&output).contains(says),
            "{extra:?}: {}",
            stderr(&output)
        );
    }
    let error = fails(&["rule", "del", &iface, "99"]);
    assert!(error.contains("no rule has id 99"), "{error}");

    let dir = tempfile_dir();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "policy = \"drop\"\n[[rule]]\naction = \"drop\"\nsrc = \"10.0.0.1/40\"\n",
    )
    .expect("write");
    let error = fails(&["apply", &iface, file.to_str().expect("utf-8")]);
    assert!(error.contains("line 4") && error.contains("src"), "{error}");
    std::fs::write(&file, "[[rule]]\naction = \"drop\"\nsport = 5\n").expect("write");
    let error = fails(&["apply", &iface, file.to_str().expect("utf-8")]);
    assert!(error.contains("tcp or udp"), "{error}");

    assert_eq!(rules_json(&iface), before, "nothing changed");
    let error = fails(&["rule", "list", "nxnosuch0"]);
    assert!(error.contains("not attached to nxnosuch0"), "{error}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn apply_replaces_the_set_atomically_keeps_counters_and_survives_reattach() {
    let test = "apply_replaces_the_set_atomically_keeps_counters_and_survives_reattach";
    if !kernel_available(test) {
        return;
    }
    let subnet = 18;
    let (net, iface, _detach) = attached_veth("apl", subnet);
    let host_v4 = VethNet::host_v4(subnet);
    let kept: u64 = ok(&[
        "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "9",
    ])
    .trim()
    .parse()
    .expect("id");
    let gone: u64 = ok(&["rule", "add", &iface, "--action", "drop", "--proto", "47"])
        .trim()
        .parse()
        .expect("id");
    net.run_in_namespace(move || {
        traffic::udp_burst(SocketAddr::new(IpAddr::V4(host_v4), 9), 7, &[3; 10])
    })
    .expect("traffic");
    let counted = eventually(
        || rule_packets(&rules_json(&iface), kept),
        |count| *count == 7,
    );
    assert_eq!(counted, 7);

    let dir = tempfile_dir();
    let file = dir.join("rules.toml");
    std::fs::write(
        &file,
        "policy = \"pass\"\nfragments = \"drop\"\n\n\
         [[rule]]\naction = \"drop\"\nproto = \"udp\"\ndport = 9\n\n\
         [[rule]]\naction = \"pass\"\npriority = 5\nsrc = \"198.18.18.0/30\"\nproto = \"tcp\"\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");
    let diff = ok(&["apply", &iface, path, "--dry-run"]);
    assert!(diff.contains(&format!("- rule {gone}")), "{diff}");
    assert!(diff.contains("+ rule"), "{diff}");
    assert!(diff.contains("fragments: policy -> drop"), "{diff}");
    assert_eq!(
        rules_json(&iface)["rules"].as_array().map(Vec::len),
        Some(2),
        "dry run"
    );

    ok(&["apply", &iface, path]);
    let record = rules_json(&iface);
    assert_eq!(record["fragments"], "drop");
    let ids: Vec<u64> = record["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|rule| rule["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&kept) && !ids.contains(&gone), "{record}");
    assert_eq!(
        rule_packets(&record, kept),
        7,
        "a kept rule keeps its counters"
    );
    let again = ok(&["apply", &iface, path, "--dry-run"]);
    assert!(again.contains("= 2 rules unchanged"), "{again}");

    // Rules outlive the program: detach keeping them, attach again, and they are in force.
    ok(&["detach", &iface, "--keep-rules"]);
    assert_eq!(xdp_on_link(&iface), "none");
    ok(&["attach", &iface, "--mode", "skb"]);
    assert_eq!(
        rule_ids_and_counts(&rules_json(&iface)),
        rule_ids_and_counts(&record)
    );
    net.run_in_namespace(move || {
        traffic::udp_burst(SocketAddr::new(IpAddr::V4(host_v4), 9), 3, &[3; 10])
    })
    .expect("traffic");
    let counted = eventually(
        || rule_packets(&rules_json(&iface), kept),
        |count| *count == 10,
    );
    assert_eq!(counted, 10);
    let _ = std::fs::remove_dir_all(dir);
}

/// Each rule's id, match and counters, without the time since its last hit.
fn rule_ids_and_counts(record: &Value) -> Vec<Value> {
    let mut rules = record["rules"].as_array().expect("rules").clone();
    for rule in &mut rules {
        rule.as_object_mut()
            .expect("object")
            .remove("last_hit_secs_ago");
    }
    rules
}

/// A fresh private directory for a test's files.
fn tempfile_dir() -> std::path::PathBuf {
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "netxdp-e2e-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A rules file of `count` generated rules from `seed`, and its rules' matches, sorted.
fn generated_rules_file(
    dir: &Path,
    name: &str,
    seed: u64,
    count: usize,
) -> (String, Vec<net_common::rule::Match>) {
    use netxdp::filter::{RuleSet, file::render_rules_file};
    let rules = support::new_rules(net_common::rulegen::random_rules(seed, count));
    let mut set = RuleSet::default();
    set.replace(&rules).expect("valid rules");
    let path = dir.join(name);
    std::fs::write(&path, render_rules_file(&set)).expect("write the rules file");
    (
        path.to_str().expect("utf-8").to_owned(),
        sorted_matches(&set),
    )
}

/// The matches of a rule set, sorted: ids (and so the order of equal priorities) differ
/// between a file and the set it was applied over.
fn sorted_matches(set: &netxdp::filter::RuleSet) -> Vec<net_common::rule::Match> {
    let mut matches: Vec<_> = set.rules().iter().map(|rule| rule.matches).collect();
    matches.sort();
    matches
}

/// Reads `stderr` of a child until a line equal to `wanted`: `Ok` then, or `Err` with all it
/// said if it ended first. The bound only keeps a hung child from hanging the test.
fn await_line(stderr: std::process::ChildStderr, wanted: &str) -> Result<(), String> {
    use std::io::BufRead as _;
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut said = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) if line == wanted => return Ok(()),
            Ok(line) => {
                said.push_str(&line);
                said.push('\n');
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("no {wanted:?} within 60 s; it said:\n{said}"));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("it ended without {wanted:?}; it said:\n{said}"));
            }
        }
    }
}

#[test]
fn killing_apply_at_any_moment_leaves_the_old_or_the_new_set_whole() {
    use aya::programs::{TestRun, TestRunOptions, Xdp};
    use aya_obj::programs::XdpAttachType;
    use net_common::{frame::SliceFrame, parse::parse, rule::classify};
    use netxdp::filter::{
        FilterMaps,
        maps::{COMMIT_STAGES, PAUSE_AT_ENV},
    };

    let test = "killing_apply_at_any_moment_leaves_the_old_or_the_new_set_whole";
    if !kernel_available(test) {
        return;
    }
    let (_net, iface, _detach) = attached_veth("kil", 19);
    let dir = tempfile_dir();
    let (old_file, old) = generated_rules_file(&dir, "old.toml", 1, 4_000);
    let (new_file, new) = generated_rules_file(&dir, "new.toml", 2, 4_000);
    assert_ne!(old, new);

    let pins = support::pins(&iface);
    let program = Xdp::from_pin(pins.prog(), XdpAttachType::Interface).expect("pinned program");
    let mut frames = net_common::rulegen::PoolFrameGenerator::new(3);
    let flipped = COMMIT_STAGES
        .iter()
        .position(|stage| *stage == "flipped")
        .expect("a stage after the flip");
    // Every stage of the commit, each in every run: the apply stops there by itself (a
    // test-only hook) and is killed while it waits, whatever the machine's speed.
    for (index, stage) in COMMIT_STAGES.iter().enumerate() {
        // The set in force is old: kill an apply of the new one at `stage`.
        ok(&["apply", &iface, &old_file]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_netxdp"))
            .args(["apply", &iface, &new_file])
            .env(PAUSE_AT_ENV, stage)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netxdp apply");
        let stderr = child.stderr.take().expect("stderr");
        let paused = await_line(stderr, &format!("paused at {stage}"));
        let _ = child.kill();
        let _ = child.wait();
        if let Err(problem) = paused {
            panic!("apply never paused at {stage}: {problem}");
        }

        let in_force = FilterMaps::from_pins(&pins)
            .and_then(|maps| {
                // Whole tables, whether the apply before the killed one rewrote the
                // generation whole or only what differed.
                maps.verify()?;
                maps.load()
            })
            .expect("load the rule set");
        let matches = sorted_matches(&in_force);
        let (want, which) = if index < flipped {
            (&old, "old")
        } else {
            (&new, "new")
        };
        assert!(
            matches == *want,
            "killed at {stage}: the set in force should be the {which} one, whole ({} rules, \
             old {}, new {})",
            matches.len(),
            matches == old,
            matches == new,
        );
        // And the kernel classifies with exactly that set.
        for _ in 0..500 {
            let frame = frames.next_frame();
            let want = classify(
                in_force.rules(),
                in_force.policy,
                in_force.fragments,
                in_force.malformed,
                &parse(&SliceFrame::new(&frame)),
            );
            let run = program
                .test_run(TestRunOptions {
                    data_in: Some(&frame),
                    ..TestRunOptions::new()
                })
                .expect("test run");
            assert_eq!(run.return_value, want.action as u32, "killed at {stage}");
        }
    }
    // A killed apply leaves nothing in the way of the next one.
    ok(&["apply", &iface, &new_file]);
    let maps = FilterMaps::from_pins(&pins).expect("maps");
    assert!(sorted_matches(&maps.load().expect("load")) == new);
    drop(maps);
    eprintln!(
        "{test}: killed an apply of 4,000 rules at each of {} stages",
        COMMIT_STAGES.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A commit waits for an RCU grace period (the kernel's update of a map-in-map returned:
/// `synchronized`) before it touches the generation the previous commit flipped out, writes
/// each map of it after deleting from it, and flips last: the stages as one `apply` reaches
/// them, in order (the test-only hook prints each).
#[test]
fn a_commit_waits_for_rcu_before_it_touches_the_generation_flipped_out() {
    use std::io::BufRead as _;

    use netxdp::filter::{
        FilterMaps,
        maps::{COMMIT_STAGES, PAUSE_AT_ENV},
    };

    let test = "a_commit_waits_for_rcu_before_it_touches_the_generation_flipped_out";
    if !kernel_available(test) {
        return;
    }
    let (_net, iface, _detach) = attached_veth("rcu", 47);
    let dir = tempfile_dir();
    let (old_file, _) = generated_rules_file(&dir, "old.toml", 4, 2_000);
    let (new_file, new) = generated_rules_file(&dir, "new.toml", 5, 2_000);
    // Twice: both generations have held a set, and the next commit rewrites one of them.
    ok(&["apply", &iface, &old_file]);
    ok(&["apply", &iface, &new_file]);
    ok(&["apply", &iface, &old_file]);

    // Stops at the last stage only, to collect every line before it; then goes on.
    let mut child = Command::new(env!("CARGO_BIN_EXE_netxdp"))
        .args(["apply", &iface, &new_file])
        .env(PAUSE_AT_ENV, "flipped")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netxdp apply");
    let stdin = child.stdin.take().expect("stdin");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut stages = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("stderr of netxdp apply");
        if line == "paused at flipped" {
            break;
        }
        if let Some(stage) = line.strip_prefix("commit at ") {
            stages.push(stage.to_owned());
        }
    }
    // Goes on; the rest of what it says is read, so that it can say it.
    drop(stdin);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("netxdp apply");
    assert!(
        status.success(),
        "apply went on after the pause: {status}, {rest:?}"
    );

    let at = |stage: &str| {
        stages
            .iter()
            .position(|reached| reached == stage)
            .unwrap_or_else(|| panic!("the commit never reached {stage}: {stages:?}"))
    };
    let mut sorted = stages.clone();
    sorted.sort();
    let mut every: Vec<String> = COMMIT_STAGES
        .iter()
        .map(|stage| stage.to_string())
        .collect();
    every.sort();
    assert_eq!(sorted, every, "each stage once: {stages:?}");
    assert_eq!(
        stages[..3],
        ["synchronize", "synchronized", "counters"],
        "the wait returns before anything is written"
    );
    for stage in COMMIT_STAGES {
        if let Some(name) = stage.strip_prefix("write ")
            && let Some(cleared) = stages.iter().position(|s| *s == format!("clear {name}"))
        {
            assert!(
                cleared < at(stage),
                "{name} is cleared, then written: {stages:?}"
            );
        }
    }
    let written = COMMIT_STAGES
        .iter()
        .filter(|stage| stage.starts_with("write "));
    assert!(
        written
            .map(|stage| at(stage))
            .all(|index| index < at("flip")),
        "every map is written before the flip: {stages:?}"
    );
    assert_eq!(stages.last().map(String::as_str), Some("flipped"));

    let maps = FilterMaps::from_pins(&support::pins(&iface)).expect("maps");
    maps.verify().expect("the new set whole");
    assert!(sorted_matches(&maps.load().expect("load")) == new);
    let _ = std::fs::remove_dir_all(dir);
}

/// Stops a spawned `netxdp serve` when dropped, so that a failing test leaves no server.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_exports_exact_counters_as_openmetrics_and_stops_on_sigterm() {
    let test = "serve_exports_exact_counters_as_openmetrics_and_stops_on_sigterm";
    if !kernel_available(test) {
        return;
    }
    let subnet = 20;
    let (net, iface, _detach) = attached_veth("srv", subnet);
    let host_v4 = IpAddr::V4(VethNet::host_v4(subnet));
    let peer = VethNet::peer_v4(subnet).to_string();
    let id: u64 = ok(&[
        "rule", "add", &iface, "--action", "drop", "--src", &peer, "--proto", "udp", "--dport", "9",
    ])
    .trim()
    .parse()
    .expect("rule add prints the id");

    // 30 datagrams the rule drops, 12 to another port that pass; UDP frames of 14+20+8+32.
    let (dropped, passed, frame) = (30u64, 12u64, 74u64);
    let send = |to_rule: usize, to_other: usize| {
        net.run_in_namespace(move || {
            traffic::udp_burst(SocketAddr::new(host_v4, 9), to_rule, &[3; 32])?;
            traffic::udp_burst(SocketAddr::new(host_v4, 10), to_other, &[4; 32])?;
            Ok(())
        })
        .expect("traffic")
    };
    send(dropped as usize, passed as usize);

    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("its address")
    };
    let server = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_netxdp"))
            .args(["serve", "--listen", &listen.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netxdp serve"),
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(PATIENCE))
        .build()
        .into();
    let url = format!("http://{listen}/metrics");
    // The server needs a moment to start: retry refused connections, patiently.
    let scrape = || {
        let started = Instant::now();
        let mut response = loop {
            match agent.get(&url).call() {
                Ok(response) => break response,
                Err(ureq::Error::Io(_)) if started.elapsed() < PATIENCE => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => panic!("GET {url}: {error}"),
            }
        };
        assert_eq!(
            response.headers()["content-type"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let text = response.body_mut().read_to_string().expect("body");
        assert!(
            text.ends_with("# EOF\n"),
            "an OpenMetrics exposition ends with # EOF"
        );
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .expect("parse the exposition");
        (parsed, text)
    };
    // The one sample of `metric` on this interface with `labels`.
    let value =
        |scrape: &(prometheus_parse::Scrape, String), metric: &str, labels: &[(&str, &str)]| {
            let found: Vec<f64> = scrape
                .0
                .samples
                .iter()
                .filter(|sample| {
                    sample.metric == metric
                        && sample.labels.get("iface") == Some(iface.as_str())
                        && labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v))
                })
                .map(|sample| match sample.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    ref other => panic!("{metric}: unexpected {other:?}"),
                })
                .collect();
            assert_eq!(found.len(), 1, "{metric}{labels:?} in\n{}", scrape.1);
            found[0] as u64
        };

    // Until the kernel has counted all that was sent (each number below once it has).
    let first = eventually(scrape, |first| {
        value(first, "netxdp_packets_total", &[("action", "drop")]) == dropped
            && value(first, "netxdp_packets_total", &[("action", "pass")]) == passed
            && value(first, "netxdp_flows", &[]) == 1
    });
    // One flow: the passed burst's (each burst came from a socket, and so a source port, of
    // its own; the dropped one is counted by source only).
    assert_eq!(value(&first, "netxdp_flows", &[]), 1);
    let flows: Value = serde_json::from_str(&ok(&["flows", &iface, "--json"])).expect("flows JSON");
    assert_eq!(
        Some(value(&first, "netxdp_flow_table_size", &[])),
        flows["table_size"].as_u64()
    );
    assert_eq!(
        Some(value(&first, "netxdp_flow_table_bytes", &[])),
        flows["table_bytes"].as_u64()
    );
    let prefix = format!("198.18.{subnet}.0/24");
    for (verdict, packets) in [("drop", dropped), ("pass", passed)] {
        let labels = [("prefix", prefix.as_str()), ("verdict", verdict)];
        assert_eq!(
            value(&first, "netxdp_source_packets_total", &labels),
            packets
        );
        assert_eq!(
            value(&first, "netxdp_source_bytes_total", &labels),
            packets * frame
        );
    }
    let record = stats_snapshot(&iface);
    let rules = rules_json(&iface);
    let id_label = id.to_string();
    let rule_labels = [("rule", id_label.as_str()), ("action", "drop")];
    assert_eq!(
        value(&first, "netxdp_packets_total", &[("action", "drop")]),
        dropped
    );
    assert_eq!(
        value(&first, "netxdp_packets_total", &[("action", "pass")]),
        passed
    );
    assert_eq!(
        value(&first, "netxdp_bytes_total", &[("action", "drop")]),
        dropped * frame
    );
    assert_eq!(
        value(&first, "netxdp_l4_packets_total", &[("l4", "udp")]),
        dropped + passed
    );
    assert_eq!(value(&first, "netxdp_matched_packets_total", &[]), dropped);
    assert_eq!(
        value(&first, "netxdp_rule_packets_total", &rule_labels),
        dropped
    );
    assert_eq!(
        value(&first, "netxdp_rule_bytes_total", &rule_labels),
        dropped * frame
    );
    assert_eq!(value(&first, "netxdp_rules", &[]), 1);
    assert_eq!(value(&first, "netxdp_policy", &[("policy", "pass")]), 1);
    // The same numbers as `stats --json` and `rule list --json`.
    assert_eq!(packets(&record, "action", "drop"), dropped, "{record}");
    assert_eq!(packets(&record, "action", "pass"), passed, "{record}");
    assert_eq!(record["matched"]["packets"], dropped, "{record}");
    assert_eq!(rule_packets(&rules, id), dropped, "{rules}");

    // Every scrape reads the maps afresh.
    send(5, 0);
    let second = eventually(scrape, |second| {
        value(second, "netxdp_packets_total", &[("action", "drop")]) == dropped + 5
    });
    assert_eq!(
        value(&second, "netxdp_packets_total", &[("action", "drop")]),
        dropped + 5
    );
    assert_eq!(
        value(&second, "netxdp_rule_packets_total", &rule_labels),
        dropped + 5
    );
    assert_eq!(
        value(&second, "netxdp_packets_total", &[("action", "pass")]),
        passed
    );

    let index = agent
        .get(&format!("http://{listen}/"))
        .call()
        .expect("GET /")
        .body_mut()
        .read_to_string()
        .expect("body");
    assert!(index.contains("/metrics"), "{index}");

    // A second server on the same address fails, naming it.
    let error = fails(&["serve", "--listen", &listen.to_string()]);
    assert!(
        error.contains(&format!("cannot listen on {listen}")),
        "{error}"
    );

    // SIGTERM stops it cleanly.
    let mut server = server;
    terminate(server.0.id());
    let status = eventually(
        || server.0.try_wait().expect("wait"),
        |status| status.is_some(),
    )
    .expect("serve stops on SIGTERM");
    assert!(status.success(), "serve exits 0 on SIGTERM: {status}");
    let mut log = String::new();
    std::io::Read::read_to_string(server.0.stderr.as_mut().expect("stderr"), &mut log)
        .expect("read stderr");
    assert!(log.contains(&format!("http://{listen}/metrics")), "{log}");
}

#[test]
fn stats_of_two_interfaces_shows_each_and_their_total() {
    let test = "stats_of_two_interfaces_shows_each_and_their_total";
    if !kernel_available(test) {
        return;
    }
    let nets = [
        VethNet::create("tw1", 21).expect("veth pair"),
        VethNet::create("tw2", 22).expect("veth pair"),
    ];
    let ifaces: Vec<String> = nets.iter().map(|net| net.host_if().to_owned()).collect();
    let _detach: Vec<DetachOnDrop> = ifaces.iter().map(|i| DetachOnDrop(i.clone())).collect();
    for (net, (iface, datagrams)) in nets.iter().zip(ifaces.iter().zip([10usize, 7])) {
        ok(&["attach", iface, "--mode", "skb"]);
        let host = IpAddr::V4(VethNet::host_v4(net.subnet()));
        net.run_in_namespace(move || {
            traffic::udp_burst(SocketAddr::new(host, 9), datagrams, &[5; 20])
        })
        .expect("traffic");
    }
    let read = || {
        let text = ok(&["stats", &ifaces[0], &ifaces[1], "--json", "--count", "1"]);
        let records: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect();
        (text, records)
    };
    let (text, records) = eventually(read, |(_, records)| {
        records.len() == 3 && records[2]["total"]["packets"] == 17
    });
    assert_eq!(
        records.len(),
        3,
        "one line per interface, then the total: {text}"
    );
    assert_eq!(records[0]["iface"], ifaces[0].as_str());
    assert_eq!(records[0]["total"]["packets"], 10);
    assert_eq!(records[1]["iface"], ifaces[1].as_str());
    assert_eq!(records[1]["total"]["packets"], 7);
    assert_eq!(records[2]["iface"], Value::Null);
    assert_eq!(records[2]["total_of"], serde_json::json!(ifaces));
    assert_eq!(records[2]["total"]["packets"], 17);
    assert_eq!(packets(&records[2], "l4", "udp"), 17);
}

#[test]
fn top_runs_in_a_pseudo_terminal_sorts_on_s_and_restores_the_terminal_on_q() {
    let test = "top_runs_in_a_pseudo_terminal_sorts_on_s_and_restores_the_terminal_on_q";
    if !kernel_available(test) {
        return;
    }
    let subnet = 24;
    let (net, iface, _detach) = attached_veth("top", subnet);
    let host = IpAddr::V4(VethNet::host_v4(subnet));
    net.run_in_namespace(move || traffic::udp_burst(SocketAddr::new(host, 9), 25, &[7; 40]))
        .expect("traffic");
    let peer = VethNet::peer_v4(subnet).to_string();

    let mut command = Command::new(env!("CARGO_BIN_EXE_netxdp"));
    command.args(["top", &iface, "--interval", "0.2"]);
    let mut session = expectrl::Session::spawn(command).expect("spawn in a pty");
    session
        .get_process_mut()
        .set_window_size(140, 40)
        .expect("window size");
    // The screen as a terminal would show it, from everything netxdp wrote.
    let size = |n: u16| std::num::NonZeroU16::new(n).expect("non-zero");
    let mut screen = vt100::Parser::new(size(40), size(140), 0);
    let mut output = Vec::new();
    let mut pump = |session: &mut expectrl::session::OsSession,
                    screen: &mut vt100::Parser,
                    until: &dyn Fn(&vt100::Screen) -> bool,
                    within: Duration|
     -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 8192];
        loop {
            match session.try_read(&mut buf) {
                Ok(0) => return until(screen.screen()),
                Ok(n) => {
                    screen.process(&buf[..n]);
                    output.extend_from_slice(&buf[..n]);
                    continue;
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                // EIO: the child is gone and the pty drained.
                Err(_) => return until(screen.screen()),
            }
            if until(screen.screen()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let shows = |text: String| move |screen: &vt100::Screen| screen.contents().contains(&text);

    assert!(
        pump(
            &mut session,
            &mut screen,
            &shows(format!("{peer}:")),
            PATIENCE
        ),
        "the flow from {peer} never showed:\n{}",
        screen.screen().contents()
    );
    assert!(
        screen.screen().alternate_screen(),
        "top uses the alternate screen"
    );
    assert!(screen.screen().hide_cursor(), "top hides the cursor");
    let contents = screen.screen().contents();
    assert!(contents.contains("sort: packets"), "{contents}");
    assert!(contents.contains(&format!("{host}:9")), "{contents}");
    assert!(contents.contains("udp"), "{contents}");

    std::io::Write::write_all(&mut session, b"s").expect("press s");
    assert!(
        pump(
            &mut session,
            &mut screen,
            &shows("sort: bytes".into()),
            PATIENCE
        ),
        "s did not change the sort:\n{}",
        screen.screen().contents()
    );

    // The sources pane: the source table, by /24.
    std::io::Write::write_all(&mut session, b"1").expect("press 1");
    assert!(
        pump(
            &mut session,
            &mut screen,
            &shows(format!("198.18.{subnet}.0/24")),
            PATIENCE
        ),
        "the sources pane did not show the peer's /24:\n{}",
        screen.screen().contents()
    );

    std::io::Write::write_all(&mut session, b"q").expect("press q");
    let exited = pump(
        &mut session,
        &mut screen,
        &|screen: &vt100::Screen| !screen.alternate_screen(),
        PATIENCE,
    );
    assert!(exited, "q did not leave the alternate screen");
    let status = eventually(
        || session.get_process().status(),
        |status| !matches!(status, Ok(expectrl::process::unix::WaitStatus::StillAlive)),
    );
    // Whatever was still in flight: the pty reads to its end (EIO) once the child is gone.
    pump(
        &mut session,
        &mut screen,
        &|_: &vt100::Screen| false,
        PATIENCE,
    );
    assert!(
        matches!(
            status,
            Ok(expectrl::process::unix::WaitStatus::Exited(_, 0))
        ),
        "top did not exit 0 after q: {status:?}"
    );
    assert!(!screen.screen().hide_cursor(), "the cursor is shown again");
    let text = String::from_utf8_lossy(&output);
    let left = text
        .rfind("\x1b[?1049l")
        .expect("leaves the alternate screen");
    let rest = &text[left + "\x1b[?1049l".len()..];
    assert!(
        rest.starts_with("\x1b[?25h") && rest.replace("\x1b[?25h", "").trim().is_empty(),
        "the output ends by leaving the alternate screen and showing the cursor: {rest:?}"
    );
}
