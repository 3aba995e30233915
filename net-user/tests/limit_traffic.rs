//! `--action limit` with real traffic: two sources flooding one limited port each get their
//! own rate, independently; a limit with `--ban` keeps a source out for the ban's length, then
//! lets it back. Every datagram is first shown to reach its socket without the limit.

mod support;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use netxdp::{
    netns::{VethNet, ip},
    traffic::{self, UdpSink},
};
use serde_json::Value;
use support::{
    PATIENCE, attached_veth, eventually, kernel_available, ok, rules_json, stats_snapshot,
};

/// Datagrams each source sends in the flood.
const FLOOD: usize = 20_000;
const RATE: f64 = 1_000.0;
const BURST: f64 = 500.0;

/// The limit rule's JSON record in `rule list --json`.
fn limit_record(iface: &str) -> Value {
    rules_json(iface)["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|rule| rule["action"] == "limit"))
        .cloned()
        .expect("the limit rule")
}

#[test]
fn two_sources_flooding_a_limited_port_each_get_their_own_rate() {
    let test = "two_sources_flooding_a_limited_port_each_get_their_own_rate";
    if !kernel_available(test) {
        return;
    }
    let subnet = 60;
    let (net, iface, _detach) = attached_veth("lim", subnet);
    let host = IpAddr::V4(VethNet::host_v4(subnet));
    // A second source in a /30 of its own beside the pair's, routed back to on the host.
    let second = Ipv4Addr::new(198, 18, subnet, 5);
    let peer_if = net.peer_if();
    let second_net = format!("198.18.{subnet}.4/30");
    ip(&[
        "-n",
        net.namespace(),
        "addr",
        "add",
        &format!("{second}/30"),
        "dev",
        peer_if,
    ])
    .and_then(|()| ip(&["route", "add", &second_net, "dev", &iface]))
    .expect("a second source address");
    let sources = [IpAddr::V4(VethNet::peer_v4(subnet)), IpAddr::V4(second)];
    let sinks: Vec<(SocketAddr, UdpSink)> = [9001, 9002]
        .into_iter()
        .map(|port| {
            let at = SocketAddr::new(host, port);
            // Room for the burst and more, arriving within milliseconds.
            let sink = UdpSink::bind(at).and_then(|sink| sink.with_room(16 << 20));
            (at, sink.expect("bind"))
        })
        .collect();
    let quiet = Duration::from_millis(300);
    for (source, (at, sink)) in sources.iter().zip(&sinks) {
        let (source, at) = (*source, *at);
        net.run_in_namespace(move || traffic::udp_burst_from(source, at, 5, &[1; 16]))
            .expect("send");
        assert_eq!(
            sink.receive(5, PATIENCE, quiet).expect("receive"),
            5,
            "no limit yet"
        );
    }

    let said = ok(&[
        "rule",
        "add",
        &iface,
        "--action",
        "limit",
        "--rate",
        "1000/s",
        "--burst",
        "500",
        "--per",
        "src",
        "--proto",
        "udp",
        "--dport",
        "9001-9002",
    ]);
    assert!(
        said.trim().parse::<u32>().is_ok(),
        "the new rule's id: {said}"
    );

    // Both sources at once, as fast as their sockets go, each read as it arrives.
    let (received, elapsed): (Vec<usize>, Vec<Duration>) = std::thread::scope(|scope| {
        let readers: Vec<_> = sinks
            .iter()
            .map(|(_, sink)| scope.spawn(move || sink.receive(1, PATIENCE, quiet)))
            .collect();
        let senders: Vec<_> = sources
            .iter()
            .zip(&sinks)
            .map(|(&source, &(at, _))| {
                net.spawn_in_namespace(move || {
                    let start = Instant::now();
                    traffic::udp_burst_from(source, at, FLOOD, &[2; 16])?;
                    Ok(start.elapsed())
                })
            })
            .collect();
        let elapsed = senders
            .into_iter()
            .map(|sender| sender.join().expect("sender").expect("send"))
            .collect();
        let received = readers
            .into_iter()
            .map(|reader| reader.join().expect("reader").expect("receive"))
            .collect();
        (received, elapsed)
    });
    for ((source, got), elapsed) in sources.iter().zip(&received).zip(&elapsed) {
        // What GCRA lets through in the time the source sent: its burst, then the rate.
        let expected = BURST + RATE * elapsed.as_secs_f64();
        let got = *got as f64;
        eprintln!("{source}: {FLOOD} sent in {elapsed:?}, {got} received, {expected:.0} expected");
        assert!(
            (got - expected).abs() <= 0.25 * expected,
            "{source} sent {FLOOD} in {elapsed:?}: received {got}, expected about {expected:.0}"
        );
        assert!(
            got < FLOOD as f64 / 2.0,
            "{source}: the limit held most back"
        );
    }
    let record = limit_record(&iface);
    let packets = record["packets"].as_u64().expect("packets");
    let limited = record["limit"]["limited"].as_u64().expect("limited");
    assert_eq!(
        packets,
        2 * FLOOD as u64,
        "the rule saw every datagram: {record}"
    );
    let passed = (packets - limited) as usize;
    assert_eq!(
        passed,
        received.iter().sum::<usize>(),
        "every datagram the limit passed reached its socket: {record}"
    );
    let dropped = stats_snapshot(&iface)["dropped"]["limit"]["packets"]
        .as_u64()
        .expect("dropped.limit");
    assert_eq!(dropped, limited);
}

#[test]
fn a_limit_with_a_ban_keeps_a_source_out_for_the_ban_then_lets_it_back() {
    let test = "a_limit_with_a_ban_keeps_a_source_out_for_the_ban_then_lets_it_back";
    if !kernel_available(test) {
        return;
    }
    let subnet = 61;
    let (net, iface, _detach) = attached_veth("limban", subnet);
    let host = IpAddr::V4(VethNet::host_v4(subnet));
    let peer = VethNet::peer_v4(subnet);
    let at = SocketAddr::new(host, 9003);
    let sink = UdpSink::bind(at).expect("bind");
    let send = |count: usize| {
        net.run_in_namespace(move || traffic::udp_burst(at, count, &[3; 16]))
            .expect("send")
    };
    let quiet = Duration::from_millis(300);
    send(5);
    assert_eq!(
        sink.receive(5, PATIENCE, quiet).expect("receive"),
        5,
        "no limit yet"
    );

    ok(&[
        "rule", "add", &iface, "--action", "limit", "--rate", "10/s", "--burst", "10", "--ban",
        "4s", "--proto", "udp", "--dport", "9003",
    ]);
    send(200);
    let passed = sink.drain(quiet).expect("drain");
    assert!(
        (10..20).contains(&passed),
        "the burst, then the ban: {passed} passed"
    );
    let bans: Value = serde_json::from_str(&ok(&["bans", &iface, "--json"])).expect("JSON");
    assert_eq!(bans["bans"][0]["prefix"], format!("{peer}/32"), "{bans}");
    let record = limit_record(&iface);
    assert_eq!(record["limit"]["bans"], 1, "one ban issued: {record}");
    assert_eq!(record["limit"]["ban"], "4s", "{record}");

    // Banned: dropped before the rules, counted for the ban.
    let ban_drops = || {
        stats_snapshot(&iface)["dropped"]["ban"]["packets"]
            .as_u64()
            .expect("dropped.ban")
    };
    let before = ban_drops();
    send(50);
    let counted = eventually(ban_drops, |drops| *drops == before + 50);
    assert_eq!(counted, before + 50, "every datagram dropped for the ban");
    assert_eq!(
        sink.drain(quiet).expect("drain"),
        0,
        "none reached the socket"
    );

    // The ban ends by itself; the source is back, within its limit.
    let listed = eventually(
        || {
            let bans: Value = serde_json::from_str(&ok(&["bans", &iface, "--json"])).expect("JSON");
            bans["bans"].as_array().map_or(0, Vec::len)
        },
        |count| *count == 0,
    );
    assert_eq!(listed, 0, "the ban ended");
    send(5);
    assert_eq!(
        sink.receive(5, PATIENCE, quiet).expect("receive"),
        5,
        "back after the ban"
    );
}
