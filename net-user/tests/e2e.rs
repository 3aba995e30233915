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
    DetachOnDrop, KillOnDrop, PATIENCE, XdpFilterCleanup, attached_veth, eventually, fails,
    kernel_available, netxdp, ok, packets, rule_packets, rules_json, stats_snapshot, stderr,
    stdout, xdp_on_link,
};

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
    assert_eq!(entry["classifier"], "none", "{entry}");
    assert!(entry["filter_bytes"].as_u64() > Some(0), "{entry}");

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

#[test]
fn a_foreign_xdp_program_is_named_and_replaced_only_with_force() {
    if !kernel_available("a_foreign_xdp_program_is_named_and_replaced_only_with_force") {
        return;
    }
    let net = VethNet::create("fgn", 13).expect("veth pair");
    let iface = net.host_if().to_owned();
    let _detach = DetachOnDrop(iface.clone());
    let _xdp_filter = XdpFilterCleanup::load(&iface, &[]);
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
        stdout(&forced).contains("in the place of XDP program")
            && stdout(&forced).contains("skb mode"),
        "{}",
        stdout(&forced)
    );
    assert_eq!(
        link, "xdpgeneric",
        "netxdp took xdp-filter's place, in its mode"
    );
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
    assert_eq!(value(&first, "netxdp_rule_metrics_truncated", &[]), 0);
    // The rule set's hash is the one the README's pipeline computes with sha256sum.
    let computed = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} rule list {iface} --toml | sed 's/ # id [0-9]*$//' | sha256sum | cut -c1-16",
            env!("CARGO_BIN_EXE_netxdp")
        ))
        .output()
        .expect("sh");
    let computed = String::from_utf8_lossy(&computed.stdout).trim().to_owned();
    assert_eq!(computed.len(), 16, "{computed:?}");
    let labels = [("hash", computed.as_str()), ("rules", "1")];
    assert_eq!(value(&first, "netxdp_ruleset_info", &labels), 1);
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
