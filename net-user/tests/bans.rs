//! `netxdp ban` with real traffic: a source's datagrams reach the host's socket until it is
//! banned, none do while it is, each counted as dropped for reason `ban`, and they reach it
//! again once the ban is lifted, or has ended by itself.

mod support;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use netxdp::{netns::VethNet, traffic};
use serde_json::Value;
use support::{PATIENCE, attached_veth, eventually, fails, kernel_available, ok, stats_snapshot};

/// Drop counts for reason `ban` on `iface`.
fn ban_drops(iface: &str) -> u64 {
    stats_snapshot(iface)["dropped"]["ban"]["packets"]
        .as_u64()
        .expect("dropped.ban")
}

#[test]
fn a_banned_source_is_dropped_until_its_ban_is_lifted_or_ends() {
    let test = "a_banned_source_is_dropped_until_its_ban_is_lifted_or_ends";
    if !kernel_available(test) {
        return;
    }
    let subnet = 59;
    let (net, iface, _detach) = attached_veth("ban", subnet);
    let host = IpAddr::V4(VethNet::host_v4(subnet));
    let peer = VethNet::peer_v4(subnet).to_string();
    let sink = traffic::UdpSink::bind(SocketAddr::new(host, 9)).expect("bind");
    let send = |count: usize| {
        net.run_in_namespace(move || traffic::udp_burst(SocketAddr::new(host, 9), count, &[5; 16]))
            .expect("send")
    };
    let quiet = Duration::from_millis(200);
    send(5);
    assert_eq!(
        sink.receive(5, PATIENCE, quiet).expect("receive"),
        5,
        "unbanned"
    );

    let said = ok(&["ban", "add", &iface, &peer, "--for", "1h"]);
    assert!(
        said.contains(&format!("banned {peer}/32 on {iface} for 1h")),
        "{said}"
    );
    let listed: Value = serde_json::from_str(&ok(&["bans", &iface, "--json"])).expect("JSON");
    assert_eq!(listed["schema"], "netxdp.bans/v1");
    assert_eq!(
        listed["bans"][0]["prefix"],
        format!("{peer}/32"),
        "{listed}"
    );
    let ends_in = listed["bans"][0]["expires_in_secs"]
        .as_f64()
        .expect("seconds");
    assert!(ends_in > 3500.0 && ends_in <= 3600.0, "{listed}");
    let status: Value = serde_json::from_str(&ok(&["status", "--json"])).expect("JSON");
    let entry = status["interfaces"]
        .as_array()
        .and_then(|all| all.iter().find(|entry| entry["iface"] == iface.as_str()))
        .cloned()
        .expect("the interface in status");
    assert_eq!(entry["bans"], 1, "{entry}");
    send(20);
    let counted = eventually(|| ban_drops(&iface), |drops| *drops == 20);
    assert_eq!(
        counted, 20,
        "every datagram of the banned source dropped for its ban"
    );
    assert_eq!(
        sink.drain(quiet).expect("drain"),
        0,
        "none reached the socket"
    );

    ok(&["ban", "del", &iface, &peer]);
    let error = fails(&["ban", "del", &iface, &peer]);
    assert!(error.contains("is not banned"), "{error}");
    send(5);
    assert_eq!(
        sink.receive(5, PATIENCE, quiet).expect("receive"),
        5,
        "lifted"
    );

    // A ban that ends by itself: dropped, then (once it has ended) let through.
    ok(&["ban", "add", &iface, &format!("{peer}/24"), "--for", "1s"]);
    let arrived = eventually(
        || {
            send(1);
            sink.receive(1, Duration::from_millis(50), Duration::from_millis(1))
                .expect("receive")
        },
        |arrived| *arrived >= 1,
    );
    assert!(arrived >= 1, "the ban never ended");
    assert!(
        ban_drops(&iface) > 20,
        "the ban dropped some before it ended"
    );
    let listed: Value = serde_json::from_str(&ok(&["bans", &iface, "--json"])).expect("JSON");
    assert_eq!(
        listed["bans"],
        serde_json::json!([]),
        "an ended ban is not listed"
    );
}
