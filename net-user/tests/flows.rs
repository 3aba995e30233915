//! Flow tracking end to end, with real traffic on a veth pair: what `netxdp flows` lists
//! (the flows netxdp passed, from their second packet) and what the source table counts
//! (every packet, by source prefix), and that floods of spoofed sources, dropped or passed,
//! evict no flow.

mod support;

use std::net::{IpAddr, SocketAddr};

use net_common::testing::{Body, FrameSpec, Transport};
use netxdp::{netns::VethNet, traffic};
use serde_json::Value;
use support::{DetachOnDrop, eventually, fails, kernel_available, ok};

#[test]
fn flows_lists_exactly_the_flows_passed_and_sources_count_the_dropped() {
    let test = "flows_lists_exactly_the_flows_passed_and_sources_count_the_dropped";
    if !kernel_available(test) {
        return;
    }
    let subnet = 23;
    let net = VethNet::create("flw", subnet).expect("veth pair");
    let iface = net.host_if().to_owned();
    let _detach = DetachOnDrop(iface.clone());
    ok(&["attach", &iface, "--mode", "skb", "--flow-table-size", "1M"]);
    ok(&[
        "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "10",
    ]);
    let (host_v4, host_v6) = (VethNet::host_v4(subnet), VethNet::host_v6(subnet));
    // Two sources (the peer's IPv4 and IPv6 addresses), four flows, one dropped: each burst
    // comes from a socket of its own, so from a port of its own; and a flow of one datagram,
    // which never enters the table (a flow enters with its second packet).
    net.run_in_namespace(move || {
        traffic::pin_to_this_cpu()?;
        traffic::udp_burst(SocketAddr::new(IpAddr::V4(host_v4), 12), 1, &[5; 30])?;
        traffic::udp_burst(SocketAddr::new(IpAddr::V4(host_v4), 9), 11, &[1; 30])?;
        traffic::udp_burst(SocketAddr::new(IpAddr::V4(host_v4), 10), 7, &[2; 30])?;
        traffic::udp_burst(SocketAddr::new(IpAddr::V4(host_v4), 11), 3, &[3; 30])?;
        traffic::udp_burst(SocketAddr::new(IpAddr::V6(host_v6), 9), 5, &[4; 30])
    })
    .expect("traffic");

    let read = || -> Value {
        serde_json::from_str(&ok(&["flows", &iface, "--json", "--sort", "packets"])).expect("JSON")
    };
    let record = eventually(read, |record| {
        let packets = record["flows"].as_array().map(|flows| {
            flows
                .iter()
                .filter_map(|flow| flow["packets"].as_u64())
                .sum::<u64>()
        });
        packets == Some(11 + 3 + 5)
    });
    assert_eq!(record["schema"], "netxdp.flows/v1");
    // 1 MiB of table: some 6,500 flows, and the kernel's count of the memory in that range.
    let table_size = record["table_size"].as_u64().expect("table_size");
    let table_bytes = record["table_bytes"].as_u64().expect("table_bytes");
    assert!((6_000..7_000).contains(&table_size), "{record}");
    assert!(
        (table_size * 136..=2 << 20).contains(&table_bytes),
        "{record}"
    );
    assert_eq!(record["in_table"], 3);
    // `status` says the same, with each CPU's share.
    let status: Value = serde_json::from_str(&ok(&["status", "--json"])).expect("JSON");
    let attachment = status["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|attachment| attachment["iface"] == iface.as_str())
        .expect("this attachment");
    let table = &attachment["flow_table"];
    assert_eq!(table["flows"], table_size, "{status}");
    assert_eq!(table["bytes"], table_bytes, "{status}");
    let cpus = aya::util::nr_cpus().expect("possible CPUs") as u64;
    assert_eq!(table["flows_per_cpu"], table_size / cpus, "{status}");
    assert_eq!(table["source_slots_per_cpu"], 1024, "{status}");
    let text = ok(&["status"]);
    assert!(
        text.contains(&format!("flows: up to {table_size} in ")),
        "{text}"
    );
    let flows = record["flows"].as_array().expect("flows");
    assert_eq!(flows.len(), 3, "exactly the three flows passed: {record}");
    let peer_v4 = VethNet::peer_v4(subnet).to_string();
    let peer_v6 = VethNet::peer_v6(subnet).to_string();
    let expected = [
        (host_v4.to_string(), 9, &peer_v4, 11, 11 * 72),
        (host_v6.to_string(), 9, &peer_v6, 5, 5 * 92),
        (host_v4.to_string(), 11, &peer_v4, 3, 3 * 72),
    ];
    for (flow, (local, port, peer, packets, bytes)) in flows.iter().zip(expected) {
        assert_eq!(flow["proto"], "udp", "{flow}");
        assert_eq!(flow["local"], local.as_str(), "{flow}");
        assert_eq!(flow["local_port"], port, "{flow}");
        assert_eq!(flow["peer"], peer.as_str(), "{flow}");
        assert!(flow["peer_port"].as_u64().is_some_and(|p| p > 0), "{flow}");
        assert_eq!(flow["packets"], packets, "{flow}");
        assert_eq!(flow["bytes"], bytes, "{flow}");
        assert_eq!(flow["verdict"], "pass", "{flow}");
        assert_eq!(flow["rule"], Value::Null, "{flow}");
    }

    // The dropped flow is in the source table, with the passed ones, by prefix.
    let sources: Value =
        serde_json::from_str(&ok(&["flows", &iface, "--sources", "--json"])).expect("JSON");
    assert_eq!(sources["schema"], "netxdp.sources/v1");
    assert_eq!(sources["in_table"], 2, "{sources}");
    let v4 = &sources["sources"][0];
    assert_eq!(v4["prefix"], format!("198.18.{subnet}.0/24"), "{sources}");
    assert_eq!(v4["dropped_packets"], 7, "{sources}");
    assert_eq!(v4["dropped_bytes"], 7 * 72, "{sources}");
    assert_eq!(v4["passed_packets"], 1 + 11 + 3, "{sources}");
    assert_eq!(v4["uncounted_at_most"], 0, "{sources}");
    let v6 = &sources["sources"][1];
    assert_eq!(v6["prefix"], format!("fd00:{subnet:x}::/64"), "{sources}");
    assert_eq!(
        (
            v6["dropped_packets"].as_u64(),
            v6["passed_packets"].as_u64()
        ),
        (Some(0), Some(5))
    );

    let top: Value = serde_json::from_str(&ok(&[
        "flows", &iface, "--json", "--sort", "bytes", "--limit", "1",
    ]))
    .expect("JSON");
    assert_eq!(top["flows"].as_array().map(Vec::len), Some(1));
    assert_eq!(top["in_table"], 3, "the limit lists 1 of the 3");
    assert_eq!(top["flows"][0]["bytes"], 11 * 72, "the most bytes first");
    let text = ok(&["flows", &iface]);
    assert!(text.contains(&format!("{host_v4}:11")), "{text}");
    assert!(!text.contains(&format!("{host_v4}:10 ")), "{text}");
    assert!(!text.contains(&format!("{host_v4}:12 ")), "{text}");
    assert!(
        text.starts_with(&format!(
            "{iface}: 3 flows not dropped (the table holds {table_size}"
        )),
        "{text}"
    );
    let text = ok(&["flows", &iface, "--limit", "2"]);
    assert!(
        text.starts_with(&format!("{iface}: 2 of 3 flows")),
        "{text}"
    );
    let text = ok(&["flows", &iface, "--sources"]);
    assert!(text.contains(&format!("198.18.{subnet}.0/24")), "{text}");
    let error = fails(&["flows", &iface, "--sources", "--sort", "rate"]);
    assert!(error.contains("no rate in one snapshot"), "{error}");
}

#[test]
fn a_passed_flow_keeps_its_entry_through_floods_of_spoofed_sources() {
    let test = "a_passed_flow_keeps_its_entry_through_floods_of_spoofed_sources";
    if !kernel_available(test) {
        return;
    }
    let subnet = 34;
    let net = VethNet::create("fld", subnet).expect("veth pair");
    let iface = net.host_if().to_owned();
    let _detach = DetachOnDrop(iface.clone());
    // A small table: some 1,700 flows, fewer than either flood has sources.
    ok(&[
        "attach",
        &iface,
        "--mode",
        "skb",
        "--flow-table-size",
        "256K",
    ]);
    ok(&[
        "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "1500",
    ]);
    let table_size = flows(&iface)["table_size"].as_u64().expect("table_size");
    let host_v4 = VethNet::host_v4(subnet);
    let to_flow = SocketAddr::new(IpAddr::V4(host_v4), 9);

    // 10,000 spoofed sources sending one datagram each to the port the rule drops, and as
    // many to a port the policy passes: 198.19.0.0 and up, 40 /24s each.
    const SOURCES: u32 = 10_000;
    let mac = |text: String| -> [u8; 6] {
        let bytes: Vec<u8> = text
            .split(':')
            .map(|byte| u8::from_str_radix(byte, 16).expect("MAC"))
            .collect();
        bytes.try_into().expect("six bytes")
    };
    let (host_mac, peer_mac) = (
        mac(VethNet::host_mac(subnet)),
        mac(VethNet::peer_mac(subnet)),
    );
    let flood: Vec<Vec<u8>> = [(1500, 0u8), (1501, 64u8)]
        .into_iter()
        .flat_map(|(dport, second_octet)| {
            (0..SOURCES).map(move |n| {
                let [_, _, high, low] = n.to_be_bytes();
                let spec = FrameSpec {
                    vlans: Vec::new(),
                    body: Body::Ipv4 {
                        src: [198, 19, second_octet + high, low],
                        dst: host_v4.octets(),
                        fragment: 0,
                        option_words: 0,
                        transport: Transport::Udp {
                            sport: 40_000,
                            dport,
                            payload: 18,
                        },
                    },
                };
                let mut frame = spec.build();
                frame[..6].copy_from_slice(&host_mac);
                frame[6..12].copy_from_slice(&peer_mac);
                frame
            })
        })
        .collect();
    assert!(u64::from(SOURCES) > table_size, "{table_size}");

    let peer_if = net.peer_if().to_owned();
    net.run_in_namespace(move || {
        traffic::pin_to_this_cpu()?;
        // One socket, so one source port: one flow before and after the floods.
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        for _ in 0..5 {
            socket.send_to(&[1; 30], to_flow)?;
        }
        traffic::send_frames(&peer_if, &flood)?;
        for _ in 0..5 {
            socket.send_to(&[1; 30], to_flow)?;
        }
        Ok(())
    })
    .expect("traffic");

    let record = eventually(
        || flows(&iface),
        |record| record["flows"][0]["packets"] == 10,
    );
    // Only the flow: no spoofed source sent twice, so none entered the table, dropped or not.
    assert_eq!(record["in_table"], 1, "{record}");
    assert_eq!(record["flows"][0]["local_port"], 9, "{record}");
    assert_eq!(record["flows"][0]["packets"], 10, "{record}");

    // The source table counts the floods exactly: 80 prefixes fit its slots.
    let sources: Value =
        serde_json::from_str(&ok(&["flows", &iface, "--sources", "--json"])).expect("JSON");
    let spoofed: Vec<&Value> = sources["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .filter(|source| {
            source["prefix"]
                .as_str()
                .is_some_and(|p| p.starts_with("198.19."))
        })
        .collect();
    assert_eq!(spoofed.len(), 80, "{sources}");
    let sum = |field: &str| -> u64 {
        spoofed
            .iter()
            .map(|source| source[field].as_u64().expect(field))
            .sum()
    };
    assert_eq!(sum("dropped_packets"), u64::from(SOURCES), "{sources}");
    assert_eq!(sum("passed_packets"), u64::from(SOURCES), "{sources}");
    assert_eq!(sum("uncounted_at_most"), 0, "{sources}");
    let dropped_prefix = spoofed
        .iter()
        .find(|source| source["prefix"] == "198.19.0.0/24")
        .expect("198.19.0.0/24");
    assert_eq!(dropped_prefix["dropped_packets"], 256, "{sources}");
    assert_eq!(dropped_prefix["passed_packets"], 0, "{sources}");
}

fn flows(iface: &str) -> Value {
    serde_json::from_str(&ok(&["flows", iface, "--json"])).expect("flows JSON")
}
