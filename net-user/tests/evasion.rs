//! Evasion with real packets: frames an attacker crafts to walk around a drop rule (tiny and
//! offset-1 fragments, long IPv6 header chains, IPv6 first fragments without the header chain,
//! neighbour discovery that is not well-formed, IPv4 options, ARP from a blocked source), sent
//! raw from the namespace end of a veth pair to the host end, where netxdp is attached, and
//! looked for at a socket on the host.
//!
//! Every case first shows that the packet reaches the socket when nothing stops it: Linux
//! delivers it, so a filter that lets it through has been walked around and the test means
//! something. Then it must not reach the socket with the rule in place. "Did not arrive" is
//! never a timeout: a control packet that nothing stops follows the probe on the same path, and
//! once the control has arrived, the probe, sent before it, would have arrived too.

#[path = "evasion/lab.rs"]
mod lab;
#[path = "evasion/packets.rs"]
mod packets;
mod support;

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

use net_common::parse::{ETH_P_ARP, IPPROTO_DSTOPTS, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use socket2::{Domain, Protocol, Socket, Type};
use support::{kernel_available, ok};

use lab::*;
use packets::*;

/// The TCP port that the TCP rules drop; a listener waits there.
pub const TCP_PORT: u16 = 7777;
/// The UDP port that the UDP rules drop; a socket waits there.
pub const UDP_PORT: u16 = 7778;
/// Where control packets go: a port no rule names, on the same host address.
pub const CONTROL_PORT: u16 = 7779;
#[test]
fn tiny_tcp_fragments_do_not_walk_past_a_port_rule() {
    if !kernel_available("tiny_tcp_fragments_do_not_walk_past_a_port_rule") {
        return;
    }
    let lab = Lab::new("evtiny", 40);
    let _listener = TcpListener::bind((lab.host_v4(), TCP_PORT)).expect("listen");
    let _control = TcpListener::bind((lab.host_v4(), CONTROL_PORT)).expect("listen");
    // A SYN whose first fragment holds only `first` bytes of TCP header (RFC 1858): 8 bytes
    // leave the flags to the second fragment, at offset 1; 16 bytes leave it the checksum and
    // the urgent pointer. Each SYN has its own source port, and IP identification.
    let syn = |first: usize, sport: u16| -> Vec<Vec<u8>> {
        let segment = tcp_syn(lab.peer_v4().into(), lab.host_v4().into(), sport, TCP_PORT);
        let fragments = ipv4_fragments(
            lab.peer_v4(),
            lab.host_v4(),
            IPPROTO_TCP,
            sport,
            &segment,
            &[first],
        );
        fragments.iter().map(|packet| lab.frame4(packet)).collect()
    };

    lab.malformed("policy");
    for (first, sport) in [(8, 40_008), (16, 40_016)] {
        assert!(
            lab.syn_ack_comes_back(syn(first, sport), sport),
            "with no rule and --malformed policy, Linux reassembles the SYN whose first \
             fragment holds {first} bytes of TCP and answers it"
        );
    }

    lab.malformed("drop");
    lab.rule(&["--proto", "tcp", "--dport", "7777"]);
    let reasons = [
        (
            8,
            41_008,
            &[("tiny_fragment", 1), ("overlap_fragment", 1)][..],
        ),
        (16, 41_016, &[("tiny_fragment", 1)][..]),
    ];
    for (first, sport, grown) in reasons {
        let before = drop_reasons(&lab.iface);
        assert!(
            !lab.syn_ack_comes_back(syn(first, sport), sport),
            "a SYN whose first fragment holds {first} bytes of TCP got past the rule on its port"
        );
        expect_growth(&before, &drop_reasons(&lab.iface), grown);
    }
}

#[test]
fn offset_one_fragments_do_not_walk_past_a_port_rule() {
    if !kernel_available("offset_one_fragments_do_not_walk_past_a_port_rule") {
        return;
    }
    let lab = Lab::new("evoff1", 41);
    let sockets = UdpSockets::bind(lab.host_v4().into());
    // RFC 3128: a first fragment of just the 8-byte UDP header, the payload at offset 1.
    let datagram = |id: u16, tag: &str| -> Vec<Vec<u8>> {
        let segment = udp(
            lab.peer_v4().into(),
            lab.host_v4().into(),
            50_000,
            UDP_PORT,
            tag.as_bytes(),
        );
        let fragments = ipv4_fragments(
            lab.peer_v4(),
            lab.host_v4(),
            IPPROTO_UDP,
            id,
            &segment,
            &[8],
        );
        fragments.iter().map(|packet| lab.frame4(packet)).collect()
    };

    lab.malformed("policy");
    assert!(
        lab.udp_reaches(&sockets, datagram(1, "offset-1 base"), "offset-1 base"),
        "with no rule and --malformed policy, Linux reassembles a datagram split at offset 1"
    );

    lab.malformed("drop");
    let rule = lab.rule(&["--proto", "udp", "--dport", "7778"]);
    let before = drop_reasons(&lab.iface);
    assert!(
        !lab.udp_reaches(&sockets, datagram(2, "offset-1 rule"), "offset-1 rule"),
        "a datagram split at offset 1 got past the rule on its port"
    );
    // The first fragment holds the whole UDP header: the rule drops it. The second is dropped
    // for its offset, whatever the rules.
    expect_growth(
        &before,
        &drop_reasons(&lab.iface),
        &[("overlap_fragment", 1)],
    );
    assert_eq!(rule_packets(&lab.iface, rule), 1);
}

#[test]
fn long_ipv6_header_chains_do_not_walk_past_a_port_rule() {
    if !kernel_available("long_ipv6_header_chains_do_not_walk_past_a_port_rule") {
        return;
    }
    let lab = Lab::new("evchain", 42);
    let sockets = UdpSockets::bind(lab.host_v6().into());
    let lengths = [9, 16, 32];
    // A datagram behind `headers` destination options headers of 8 bytes each.
    let datagram = |headers: usize, tag: &str| -> Vec<Vec<u8>> {
        let mut payload = Vec::new();
        for i in 0..headers {
            let last = i + 1 == headers;
            payload.extend(destination_options(if last {
                IPPROTO_UDP
            } else {
                IPPROTO_DSTOPTS
            }));
        }
        payload.extend(udp(
            lab.peer_v6().into(),
            lab.host_v6().into(),
            50_000,
            UDP_PORT,
            tag.as_bytes(),
        ));
        let packet = ipv6(lab.peer_v6(), lab.host_v6(), IPPROTO_DSTOPTS, 64, &payload);
        vec![lab.frame6(&packet)]
    };

    for headers in lengths {
        let tag = format!("{headers} headers base");
        assert!(
            lab.udp_reaches(&sockets, datagram(headers, &tag), &tag),
            "with no rule, Linux delivers a datagram behind {headers} destination options headers"
        );
    }

    let rule = lab.rule(&["--proto", "udp", "--dport", "7778"]);
    for headers in lengths {
        let tag = format!("{headers} headers rule");
        assert!(
            !lab.udp_reaches(&sockets, datagram(headers, &tag), &tag),
            "a datagram behind {headers} destination options headers got past the rule on its port"
        );
    }
    assert_eq!(
        rule_packets(&lab.iface, rule),
        lengths.len() as u64,
        "the rule itself matched every datagram"
    );
}

#[test]
fn ipv6_first_fragments_without_the_header_chain_do_not_walk_past_a_port_rule() {
    let test = "ipv6_first_fragments_without_the_header_chain_do_not_walk_past_a_port_rule";
    if !kernel_available(test) {
        return;
    }
    let lab = Lab::new("evv6fr", 43);
    let sockets = UdpSockets::bind(lab.host_v6().into());
    // RFC 7112: first fragments that end inside the header chain, the rest of the chain and
    // the UDP header in the second fragment. Linux queues a first fragment only when it cannot
    // read where the chain goes (one whose chain it reads to a cut-short UDP or TCP header, it
    // drops itself): so in each, the last header of the first fragment names another one.
    // A 16-byte destination options header: PadN, then an experimental option (RFC 4727)
    // whose type says "skip me if unknown".
    let long_options = [
        IPPROTO_DSTOPTS,
        1,
        1,
        4,
        0,
        0,
        0,
        0,
        0x1e,
        6,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    let variants: [(&str, Vec<u8>); 2] = [
        (
            "the next header starts in the second fragment",
            [
                destination_options(IPPROTO_DSTOPTS),
                destination_options(IPPROTO_UDP),
            ]
            .concat(),
        ),
        (
            "a header is cut in two",
            [&long_options[..], &destination_options(IPPROTO_UDP)].concat(),
        ),
    ];
    let datagram = |chain: &[u8], id: u32, tag: &str| -> Vec<Vec<u8>> {
        let (peer, host) = (lab.peer_v6(), lab.host_v6());
        let segment = udp(peer.into(), host.into(), 50_000, UDP_PORT, tag.as_bytes());
        let fragmentable = [chain, &segment].concat();
        ipv6_fragments(peer, host, IPPROTO_DSTOPTS, id, &fragmentable, &[8])
            .iter()
            .map(|packet| lab.frame6(packet))
            .collect()
    };

    lab.malformed("policy");
    for (id, (name, chain)) in (1..).zip(&variants) {
        let tag = format!("{name}: base");
        assert!(
            lab.udp_reaches(&sockets, datagram(chain, id, &tag), &tag),
            "with no rule and --malformed policy, Linux reassembles a datagram whose first \
             fragment ends inside the header chain ({name})"
        );
    }

    lab.malformed("drop");
    lab.rule(&["--proto", "udp", "--dport", "7778"]);
    for (id, (name, chain)) in (11..).zip(&variants) {
        let tag = format!("{name}: rule");
        let before = drop_reasons(&lab.iface);
        assert!(
            !lab.udp_reaches(&sockets, datagram(chain, id, &tag), &tag),
            "a datagram whose first fragment ends inside the header chain ({name}) got past \
             the rule on its port"
        );
        expect_growth(&before, &drop_reasons(&lab.iface), &[("tiny_fragment", 1)]);
    }
}

#[test]
fn neighbour_solicitations_are_exempt_only_when_well_formed_and_unnamed() {
    let test = "neighbour_solicitations_are_exempt_only_when_well_formed_and_unnamed";
    if !kernel_available(test) {
        return;
    }
    let lab = Lab::new("evnd", 44);
    let watch = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).expect("raw ICMPv6");
    watch.bind_device(Some(lab.iface.as_bytes())).expect("bind");
    // Solicitations for the host's address, told apart by the nonce option they end with.
    let solicitation = |src: Ipv6Addr, hop_limit: u8, nonce: u8| -> Vec<u8> {
        let host = lab.host_v6();
        let message = neighbour_solicitation(src, host, host, lab.peer_mac(), nonce);
        lab.frame6(&ipv6(src, host, IPPROTO_ICMPV6, hop_limit, &message))
    };
    // Whether the probe (from `src`, with `hop_limit`) reaches the host's raw socket. A
    // solicitation with hop limit 255 from `control_src` follows it, and must arrive.
    let mut nonce = 0;
    let mut reaches = |src: Ipv6Addr, hop_limit: u8, control_src: Ipv6Addr| -> bool {
        nonce += 2;
        let (probe, control) = (nonce, nonce + 1);
        lab.send(vec![
            solicitation(src, hop_limit, probe),
            solicitation(control_src, 255, control),
        ]);
        let has_nonce = |nonce: u8| {
            move |message: &[u8]| message.first() == Some(&135) && message.last() == Some(&nonce)
        };
        watch_for(
            |wait| recv_within(&watch, wait),
            has_nonce(probe),
            has_nonce(control),
        )
        .unwrap_or_else(|| {
            panic!("a solicitation with hop limit 255 from {control_src} never reached the host")
        })
    };
    let peer = lab.peer_v6();
    let other = Ipv6Addr::new(0xfd00, u16::from(lab.subnet), 0, 0, 0, 0, 0, 3);

    ok(&["policy", &lab.iface, "pass"]);
    assert!(
        reaches(peer, 64, peer),
        "under policy pass, a solicitation with hop limit 64 reaches the host"
    );

    // The control, with hop limit 255, must still arrive: neighbour discovery is exempt.
    ok(&["policy", &lab.iface, "drop"]);
    assert!(
        !reaches(peer, 64, peer),
        "a solicitation with hop limit 64 (RFC 4861: to be ignored) got the neighbour \
         exemption from policy drop"
    );

    let rule = lab.rule(&["--src", &format!("{peer}/128")]);
    assert!(
        !reaches(peer, 255, other),
        "a solicitation from {peer} got past the rule that names its address"
    );
    assert_eq!(rule_packets(&lab.iface, rule), 1);
}

#[test]
fn ipv4_options_do_not_walk_past_a_port_rule() {
    if !kernel_available("ipv4_options_do_not_walk_past_a_port_rule") {
        return;
    }
    let lab = Lab::new("evopt", 45);
    let sockets = UdpSockets::bind(lab.host_v4().into());
    let variants: [(&str, &[u8]); 2] = [
        // Three no-operations and an end of options list.
        ("nop", &[1, 1, 1, 0]),
        // Record route with room for one address (type 7, length 7, pointer 4), then the end.
        ("record route", &[7, 7, 4, 0, 0, 0, 0, 0]),
    ];
    let datagram = |options: &[u8], id: u16, tag: &str| -> Vec<Vec<u8>> {
        let segment = udp(
            lab.peer_v4().into(),
            lab.host_v4().into(),
            50_000,
            UDP_PORT,
            tag.as_bytes(),
        );
        let packet = ipv4(
            lab.peer_v4(),
            lab.host_v4(),
            IPPROTO_UDP,
            id,
            0,
            options,
            &segment,
        );
        vec![lab.frame4(&packet)]
    };

    for (id, (name, options)) in (1..).zip(variants) {
        let tag = format!("{name} options base");
        assert!(
            lab.udp_reaches(&sockets, datagram(options, id, &tag), &tag),
            "with no rule, Linux delivers a datagram with {name} options"
        );
    }
    let rule = lab.rule(&["--proto", "udp", "--dport", "7778"]);
    for (id, (name, options)) in (11..).zip(variants) {
        let tag = format!("{name} options rule");
        assert!(
            !lab.udp_reaches(&sockets, datagram(options, id, &tag), &tag),
            "a datagram with {name} options got past the rule on its port"
        );
    }
    assert_eq!(rule_packets(&lab.iface, rule), variants.len() as u64);
}

#[test]
fn arp_from_a_source_a_rule_names_is_not_exempt() {
    if !kernel_available("arp_from_a_source_a_rule_names_is_not_exempt") {
        return;
    }
    let lab = Lab::new("evarp", 46);
    let watch = PacketSocket::open(&lab.iface, ETH_P_ARP).expect("packet socket");
    // Requests for the host's address, told apart by their sender hardware address (the
    // socket also sees the host's replies: they carry the host's).
    let hardware = |mark: u8| [0x02, 0x4e, 0x58, 0xee, lab.subnet, mark];
    let request = |sender: Ipv4Addr, mark: u8| -> Vec<u8> {
        let arp = arp_request(hardware(mark), sender, lab.host_v4());
        ethernet([0xff; 6], hardware(mark), ETH_P_ARP, &arp)
    };
    let marked = |mark: u8| move |frame: &[u8]| frame.get(22..28) == Some(&hardware(mark)[..]);
    let requested = |probe_mark, control_mark| {
        lab.send(vec![
            request(lab.peer_v4(), probe_mark),
            // An ARP probe (RFC 5227), from no address.
            request(Ipv4Addr::UNSPECIFIED, control_mark),
        ]);
        watch_for(
            |wait| watch.recv_within(wait),
            marked(probe_mark),
            marked(control_mark),
        )
        .unwrap_or_else(|| panic!("the ARP probe never reached the host"))
    };

    assert!(requested(1, 2), "with no rule, ARP reaches the host");
    let rule = lab.rule(&["--src", &format!("{}/32", lab.peer_v4())]);
    assert!(
        !requested(3, 4),
        "ARP from {} got past the rule that names it",
        lab.peer_v4()
    );
    assert_eq!(rule_packets(&lab.iface, rule), 1);
}
