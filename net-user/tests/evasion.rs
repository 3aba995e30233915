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

mod support;

use std::{
    io::{self, Read as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener},
    time::{Duration, Instant},
};

use net_common::{
    checksum::internet_checksum,
    parse::{
        ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_ICMPV6,
        IPPROTO_TCP, IPPROTO_UDP,
    },
};
use netxdp::netns::VethNet;
use nix::{
    sched::{CpuSet, sched_getcpu, sched_setaffinity},
    unistd::Pid,
};
use serde_json::Value;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use support::{DetachOnDrop, attached_veth, kernel_available, ok, rules_json};

/// The TCP port that the TCP rules drop; a listener waits there.
const TCP_PORT: u16 = 7777;
/// The UDP port that the UDP rules drop; a socket waits there.
const UDP_PORT: u16 = 7778;
/// Where control packets go: a port no rule names, on the same host address.
const CONTROL_PORT: u16 = 7779;
/// How long a control packet may take to arrive: far more than it needs on any machine.
const CONTROL_WAIT: Duration = Duration::from_secs(10);
const ETH_P_ALL: u16 = 0x0003;

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

/// A namespace and veth pair with netxdp attached to the host end, in skb mode.
struct Lab {
    // Fields drop in declaration order: netxdp detaches before the pair goes.
    _detach: DetachOnDrop,
    net: VethNet,
    iface: String,
    subnet: u8,
}

impl Lab {
    fn new(tag: &str, subnet: u8) -> Self {
        let (net, iface, detach) = attached_veth(tag, subnet);
        Lab {
            _detach: detach,
            net,
            iface,
            subnet,
        }
    }

    fn host_v4(&self) -> Ipv4Addr {
        VethNet::host_v4(self.subnet)
    }

    fn peer_v4(&self) -> Ipv4Addr {
        VethNet::peer_v4(self.subnet)
    }

    fn host_v6(&self) -> Ipv6Addr {
        VethNet::host_v6(self.subnet)
    }

    fn peer_v6(&self) -> Ipv6Addr {
        VethNet::peer_v6(self.subnet)
    }

    fn peer_mac(&self) -> [u8; 6] {
        mac(&VethNet::peer_mac(self.subnet))
    }

    /// `packet` in an Ethernet frame from the peer to the host end: to the host's own MAC
    /// address, or the host would take it for another host's and not deliver it.
    fn frame(&self, ethertype: u16, packet: &[u8]) -> Vec<u8> {
        let host = mac(&VethNet::host_mac(self.subnet));
        ethernet(host, self.peer_mac(), ethertype, packet)
    }

    fn frame4(&self, packet: &[u8]) -> Vec<u8> {
        self.frame(ETH_P_IPV4, packet)
    }

    fn frame6(&self, packet: &[u8]) -> Vec<u8> {
        self.frame(ETH_P_IPV6, packet)
    }

    /// `netxdp policy IFACE pass --malformed SETTING`.
    fn malformed(&self, setting: &str) {
        ok(&["policy", &self.iface, "pass", "--malformed", setting]);
    }

    /// `netxdp rule add IFACE --action drop MATCHES`; returns the rule's id.
    fn rule(&self, matches: &[&str]) -> u64 {
        let args = [&["rule", "add", &self.iface, "--action", "drop"], matches].concat();
        let id = ok(&args);
        id.trim()
            .parse()
            .unwrap_or_else(|_| panic!("rule add printed {id:?}"))
    }

    /// Sends `frames` out of the namespace end, in order.
    fn send(&self, frames: Vec<Vec<u8>>) {
        self.exchange(frames, None::<fn(&[u8]) -> bool>);
    }

    /// Sends `frames` out of the namespace end, in order, then reads the frames that come back
    /// into the namespace until `last` accepts one, within [`CONTROL_WAIT`]; returns them, the
    /// last included. Frames sent from one CPU are handled by the host end in the order sent
    /// (from several CPUs, a later frame could be handled first), and so are the packets it
    /// sends back: the sending thread keeps to one CPU.
    fn exchange<F>(&self, frames: Vec<Vec<u8>>, last: Option<F>) -> Vec<Vec<u8>>
    where
        F: Fn(&[u8]) -> bool + Send + 'static,
    {
        let peer_if = self.net.peer_if().to_owned();
        self.net
            .run_in_namespace(move || {
                let mut here = CpuSet::new();
                here.set(sched_getcpu()?)?;
                sched_setaffinity(Pid::from_raw(0), &here)?;
                let socket = PacketSocket::open(&peer_if, ETH_P_ALL)?;
                for frame in &frames {
                    socket.send(frame)?;
                }
                let mut seen = Vec::new();
                let Some(last) = last else {
                    return Ok(seen);
                };
                let deadline = Instant::now() + CONTROL_WAIT;
                while let Some(frame) =
                    socket.recv_within(deadline.saturating_duration_since(Instant::now()))?
                {
                    let done = last(&frame);
                    seen.push(frame);
                    if done || Instant::now() >= deadline {
                        break;
                    }
                }
                Ok(seen)
            })
            .expect("sending from the namespace")
    }

    /// Whether the datagram that `probe` carries, with payload `tag`, reaches `sockets.sink`.
    /// A plain datagram to [`CONTROL_PORT`] follows it, and must arrive.
    fn udp_reaches(&self, sockets: &UdpSockets, probe: Vec<Vec<u8>>, tag: &str) -> bool {
        let control_tag = format!("control after {tag}");
        let control = match sockets.host {
            IpAddr::V4(host) => {
                let segment = udp(
                    self.peer_v4().into(),
                    host.into(),
                    50_001,
                    CONTROL_PORT,
                    control_tag.as_bytes(),
                );
                self.frame4(&ipv4(
                    self.peer_v4(),
                    host,
                    IPPROTO_UDP,
                    0,
                    0,
                    &[],
                    &segment,
                ))
            }
            IpAddr::V6(host) => {
                let segment = udp(
                    self.peer_v6().into(),
                    host.into(),
                    50_001,
                    CONTROL_PORT,
                    control_tag.as_bytes(),
                );
                self.frame6(&ipv6(self.peer_v6(), host, IPPROTO_UDP, 64, &segment))
            }
        };
        self.send([probe, vec![control]].concat());
        watch_for(
            |wait| recv_within(&sockets.control, wait),
            |_| false,
            |payload| payload == control_tag.as_bytes(),
        )
        .unwrap_or_else(|| panic!("the control datagram after {tag:?} never arrived"));
        // Whatever reached the sink is queued there by now: read it without waiting.
        let mut reached = false;
        while let Some(payload) = recv_within(&sockets.sink, Duration::ZERO).expect("recv") {
            reached |= payload == tag.as_bytes();
        }
        reached
    }

    /// Whether the host answers the SYN that `probe` carries, from port `sport`, with a
    /// SYN-ACK. A plain SYN to [`CONTROL_PORT`] follows it, and must be answered.
    fn syn_ack_comes_back(&self, probe: Vec<Vec<u8>>, sport: u16) -> bool {
        let (peer, host) = (self.peer_v4(), self.host_v4());
        let control_sport = sport + 10_000;
        let segment = tcp_syn(peer.into(), host.into(), control_sport, CONTROL_PORT);
        let control = ipv4(peer, host, IPPROTO_TCP, control_sport, 0, &[], &segment);
        let answer =
            move |from: u16, to: u16| move |frame: &[u8]| syn_ack(frame) == Some((host, from, to));
        let seen = self.exchange(
            [probe, vec![self.frame4(&control)]].concat(),
            Some(answer(CONTROL_PORT, control_sport)),
        );
        assert!(
            seen.last()
                .is_some_and(|frame| answer(CONTROL_PORT, control_sport)(frame)),
            "the control SYN after the one from port {sport} was never answered"
        );
        seen.iter().any(|frame| answer(TCP_PORT, sport)(frame))
    }
}

/// A socket on the probes' port and one on the control port, on the host address of a family.
struct UdpSockets {
    host: IpAddr,
    sink: Socket,
    control: Socket,
}

impl UdpSockets {
    fn bind(host: IpAddr) -> Self {
        let bound = |port| {
            let address = SocketAddr::new(host, port);
            let socket =
                Socket::new(Domain::for_address(address), Type::DGRAM, None).expect("UDP socket");
            socket.bind(&address.into()).expect("bind");
            socket
        };
        UdpSockets {
            host,
            sink: bound(UDP_PORT),
            control: bound(CONTROL_PORT),
        }
    }
}

/// An AF_PACKET socket on one interface: whole Ethernet frames out, and in (both the frames
/// the interface receives and those it sends).
struct PacketSocket(Socket);

impl PacketSocket {
    /// Bound to `iface` for frames of `protocol` (an ethertype, or [`ETH_P_ALL`]). Opened with
    /// no protocol, it receives nothing until bound: no frames of other interfaces slip in.
    fn open(iface: &str, protocol: u16) -> io::Result<Self> {
        let ifindex = nix::net::if_::if_nametoindex(iface).map_err(io::Error::from)?;
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        let mut storage = socket2::SockAddrStorage::zeroed();
        // SAFETY: sockaddr_ll is one of this platform's sockaddr types, and fits the storage.
        let link = unsafe { storage.view_as::<libc::sockaddr_ll>() };
        link.sll_family = libc::AF_PACKET as u16;
        link.sll_protocol = protocol.to_be();
        link.sll_ifindex = ifindex as i32;
        let length = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: the storage holds an initialised sockaddr_ll of `length` bytes.
        socket.bind(&unsafe { SockAddr::new(storage, length) })?;
        Ok(PacketSocket(socket))
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.0.send(frame).map(drop)
    }

    fn recv_within(&self, wait: Duration) -> io::Result<Option<Vec<u8>>> {
        recv_within(&self.0, wait)
    }
}

/// The next message on `socket`, waiting up to `wait` (zero: not at all); None if none came.
fn recv_within(socket: &Socket, wait: Duration) -> io::Result<Option<Vec<u8>>> {
    // A zero read timeout would mean none: wait forever.
    socket.set_nonblocking(wait.is_zero())?;
    if !wait.is_zero() {
        socket.set_read_timeout(Some(wait))?;
    }
    let mut buffer = vec![0; 2048];
    let mut reader = socket;
    match reader.read(&mut buffer) {
        Ok(len) => {
            buffer.truncate(len);
            Ok(Some(buffer))
        }
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Reads messages with `next` (given the time left) until `is_control` accepts one, within
/// [`CONTROL_WAIT`]: whether `is_probe` accepted one before it, or None if the control never
/// came. Messages from earlier steps, or from the host itself, are neither, and skipped.
fn watch_for(
    mut next: impl FnMut(Duration) -> io::Result<Option<Vec<u8>>>,
    is_probe: impl Fn(&[u8]) -> bool,
    is_control: impl Fn(&[u8]) -> bool,
) -> Option<bool> {
    let deadline = Instant::now() + CONTROL_WAIT;
    let mut probe_seen = false;
    while let Some(message) =
        next(deadline.saturating_duration_since(Instant::now())).expect("recv")
    {
        if is_control(&message) {
            return Some(probe_seen);
        }
        probe_seen |= is_probe(&message);
        if Instant::now() >= deadline {
            break;
        }
    }
    None
}

/// The drop-reason counters of `netxdp stats --json` (schema netxdp.stats/v2).
fn drop_reasons(iface: &str) -> Value {
    let text = ok(&["stats", iface, "--json", "--count", "1"]);
    let record: Value = serde_json::from_str(text.lines().next().expect("a line")).expect("JSON");
    assert_eq!(record["schema"], "netxdp.stats/v2", "{record}");
    record["dropped"].clone()
}

/// Every `(reason, packets)` of `grown`: the reason's counter grew by exactly that much.
fn expect_growth(before: &Value, after: &Value, grown: &[(&str, u64)]) {
    for &(reason, packets) in grown {
        let count = |record: &Value| {
            record[reason]["packets"]
                .as_u64()
                .unwrap_or_else(|| panic!("no dropped.{reason}.packets in {record}"))
        };
        assert_eq!(
            count(after) - count(before),
            packets,
            "packets dropped as {reason}: before {before}, after {after}"
        );
    }
}

fn rule_packets(iface: &str, id: u64) -> u64 {
    let record = rules_json(iface);
    record["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|rule| rule["id"] == id)
        .and_then(|rule| rule["packets"].as_u64())
        .unwrap_or_else(|| panic!("no rule {id} in {record}"))
}

// Packets, built byte by byte: every length and checksum right, or Linux drops them itself.

/// "02:4e:58:00:2a:01" as bytes.
fn mac(text: &str) -> [u8; 6] {
    let mut mac = [0; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).expect("a MAC address in hex");
    }
    mac
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&dst[..], &src, &ethertype.to_be_bytes(), payload].concat()
}

/// An IPv4 packet: `fragment` is the flags and fragment offset field, `options` a multiple of
/// 4 bytes.
fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    id: u16,
    fragment: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert!(
        options.len().is_multiple_of(4) && options.len() <= 40,
        "{options:?}"
    );
    let header_len = 20 + options.len();
    let mut packet = vec![0; header_len];
    packet[0] = 0x40 | (header_len / 4) as u8;
    packet[2..4].copy_from_slice(&((header_len + payload.len()) as u16).to_be_bytes());
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    packet[6..8].copy_from_slice(&fragment.to_be_bytes());
    packet[8] = 64;
    packet[9] = protocol;
    packet[12..16].copy_from_slice(&src.octets());
    packet[16..20].copy_from_slice(&dst.octets());
    packet[20..].copy_from_slice(options);
    let checksum = internet_checksum(&packet);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// `data` cut at the byte offsets `cuts` (ascending multiples of 8): each piece's offset in
/// 8-byte units, whether more follow, and its bytes.
fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<(u16, bool, &'a [u8])> {
    let bounds = [&[0], cuts, &[data.len()]].concat();
    bounds
        .windows(2)
        .map(|piece| {
            let (start, end) = (piece[0], piece[1]);
            assert!(start.is_multiple_of(8) && start < end, "cuts {cuts:?}");
            ((start / 8) as u16, end < data.len(), &data[start..end])
        })
        .collect()
}

/// `segment`, of IP `protocol`, in IPv4 fragments with identification `id`, cut at `cuts`.
fn ipv4_fragments(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    id: u16,
    segment: &[u8],
    cuts: &[usize],
) -> Vec<Vec<u8>> {
    pieces(segment, cuts)
        .into_iter()
        .map(|(offset, more, piece)| {
            let fragment = offset | if more { 0x2000 } else { 0 };
            ipv4(src, dst, protocol, id, fragment, &[], piece)
        })
        .collect()
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0; 40];
    packet[0] = 0x60;
    packet[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    packet[6] = next_header;
    packet[7] = hop_limit;
    packet[8..24].copy_from_slice(&src.octets());
    packet[24..40].copy_from_slice(&dst.octets());
    packet.extend_from_slice(payload);
    packet
}

/// A destination options header of 8 bytes: its 6 bytes of options are one PadN.
fn destination_options(next_header: u8) -> [u8; 8] {
    [next_header, 0, 1, 4, 0, 0, 0, 0]
}

/// The fragmentable part of an IPv6 packet (extension headers, then the upper-layer header
/// and payload), whose first header is `next_header`, in fragments with identification `id`,
/// cut at `cuts`.
fn ipv6_fragments(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    id: u32,
    fragmentable: &[u8],
    cuts: &[usize],
) -> Vec<Vec<u8>> {
    pieces(fragmentable, cuts)
        .into_iter()
        .map(|(offset, more, piece)| {
            let field = offset << 3 | u16::from(more);
            let header = [
                &[next_header, 0][..],
                &field.to_be_bytes(),
                &id.to_be_bytes(),
            ];
            let payload = [&header.concat(), piece].concat();
            ipv6(src, dst, IPPROTO_FRAGMENT, 64, &payload)
        })
        .collect()
}

/// The checksum of a TCP, UDP or ICMPv6 `segment` (its checksum field zero) with the
/// pseudo-header of its IP packet.
fn l4_checksum(src: IpAddr, dst: IpAddr, protocol: u8, segment: &[u8]) -> u16 {
    let mut data = Vec::new();
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            data.extend(src.octets());
            data.extend(dst.octets());
            data.extend([0, protocol]);
            data.extend((segment.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            data.extend(src.octets());
            data.extend(dst.octets());
            data.extend((segment.len() as u32).to_be_bytes());
            data.extend([0, 0, 0, protocol]);
        }
        _ => panic!("{src} and {dst} are of different families"),
    }
    data.extend_from_slice(segment);
    internet_checksum(&data)
}

fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut segment = [
        &sport.to_be_bytes()[..],
        &dport.to_be_bytes(),
        &len.to_be_bytes(),
        &[0, 0],
        payload,
    ]
    .concat();
    // A zero UDP checksum means "none", which IPv6 forbids: zero is sent as all ones.
    let checksum = match l4_checksum(src, dst, IPPROTO_UDP, &segment) {
        0 => 0xffff,
        checksum => checksum,
    };
    segment[6..8].copy_from_slice(&checksum.to_be_bytes());
    segment
}

/// A TCP SYN with no options, its sequence number derived from the source port.
fn tcp_syn(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let mut segment = vec![0; 20];
    segment[0..2].copy_from_slice(&sport.to_be_bytes());
    segment[2..4].copy_from_slice(&dport.to_be_bytes());
    segment[4..8].copy_from_slice(&(u32::from(sport) << 16 | 0x4e58).to_be_bytes());
    segment[12] = 5 << 4;
    segment[13] = 0x02;
    segment[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    let checksum = l4_checksum(src, dst, IPPROTO_TCP, &segment);
    segment[16..18].copy_from_slice(&checksum.to_be_bytes());
    segment
}

/// Whether `frame` is an IPv4 TCP SYN-ACK: its source address, source and destination port.
fn syn_ack(frame: &[u8]) -> Option<(Ipv4Addr, u16, u16)> {
    let ip = frame
        .get(14..)
        .filter(|_| frame.get(12..14) == Some(&[0x08, 0x00]))?;
    let header_len = usize::from(ip.first()? & 0x0f) * 4;
    let tcp = ip.get(header_len..header_len + 14)?;
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
    let is_syn_ack = ip.get(9) == Some(&IPPROTO_TCP) && tcp[13] & 0x12 == 0x12;
    is_syn_ack.then(|| {
        let port = |at: usize| u16::from_be_bytes([tcp[at], tcp[at + 1]]);
        (src, port(0), port(2))
    })
}

/// A neighbour solicitation (ICMPv6 type 135) for `target`, with the source link-layer
/// address option and a nonce option (RFC 3971) that ends with `nonce`, which tells the
/// solicitations of a test apart.
fn neighbour_solicitation(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    lladdr: [u8; 6],
    nonce: u8,
) -> Vec<u8> {
    let mut message = vec![135, 0, 0, 0, 0, 0, 0, 0];
    message.extend(target.octets());
    message.extend([1, 1]);
    message.extend(lladdr);
    message.extend([14, 1, 0x4e, 0x58, 0, 0, 0, nonce]);
    let checksum = l4_checksum(src.into(), dst.into(), IPPROTO_ICMPV6, &message);
    message[2..4].copy_from_slice(&checksum.to_be_bytes());
    message
}

/// An ARP request (Ethernet, IPv4) from `sender` for `target`.
fn arp_request(sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    [
        &[0, 1, 8, 0, 6, 4, 0, 1][..],
        &sender_mac,
        &sender.octets(),
        &[0; 6],
        &target.octets(),
    ]
    .concat()
}
