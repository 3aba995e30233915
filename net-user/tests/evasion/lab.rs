//! The evasion tests' bench: a veth pair with netxdp on the host end, sockets that wait for
//! the probes and their controls, and the counters that say why netxdp dropped a packet.

use std::{
    io::{self, Read as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::{Duration, Instant},
};

use net_common::parse::{ETH_P_IPV4, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP};
use netxdp::netns::VethNet;
use serde_json::Value;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::{
    CONTROL_PORT, TCP_PORT, UDP_PORT,
    packets::*,
    support::{DetachOnDrop, attached_veth, ok, rules_json},
};

/// How long a control packet may take to arrive: far more than it needs on any machine.
pub const CONTROL_WAIT: Duration = Duration::from_secs(10);
pub const ETH_P_ALL: u16 = 0x0003;

/// A namespace and veth pair with netxdp attached to the host end, in skb mode.
pub struct Lab {
    // Fields drop in declaration order: netxdp detaches before the pair goes.
    pub _detach: DetachOnDrop,
    pub net: VethNet,
    pub iface: String,
    pub subnet: u8,
}

impl Lab {
    pub fn new(tag: &str, subnet: u8) -> Self {
        let (net, iface, detach) = attached_veth(tag, subnet);
        Lab {
            _detach: detach,
            net,
            iface,
            subnet,
        }
    }

    pub fn host_v4(&self) -> Ipv4Addr {
        VethNet::host_v4(self.subnet)
    }

    pub fn peer_v4(&self) -> Ipv4Addr {
        VethNet::peer_v4(self.subnet)
    }

    pub fn host_v6(&self) -> Ipv6Addr {
        VethNet::host_v6(self.subnet)
    }

    pub fn peer_v6(&self) -> Ipv6Addr {
        VethNet::peer_v6(self.subnet)
    }

    pub fn peer_mac(&self) -> [u8; 6] {
        mac(&VethNet::peer_mac(self.subnet))
    }

    /// `packet` in an Ethernet frame from the peer to the host end: to the host's own MAC
    /// address, or the host would take it for another host's and not deliver it.
    pub fn frame(&self, ethertype: u16, packet: &[u8]) -> Vec<u8> {
        let host = mac(&VethNet::host_mac(self.subnet));
        ethernet(host, self.peer_mac(), ethertype, packet)
    }

    pub fn frame4(&self, packet: &[u8]) -> Vec<u8> {
        self.frame(ETH_P_IPV4, packet)
    }

    pub fn frame6(&self, packet: &[u8]) -> Vec<u8> {
        self.frame(ETH_P_IPV6, packet)
    }

    /// `netxdp policy IFACE pass --malformed SETTING`.
    pub fn malformed(&self, setting: &str) {
        ok(&["policy", &self.iface, "pass", "--malformed", setting]);
    }

    /// `netxdp rule add IFACE --action drop MATCHES`; returns the rule's id.
    pub fn rule(&self, matches: &[&str]) -> u64 {
        let args = [&["rule", "add", &self.iface, "--action", "drop"], matches].concat();
        let id = ok(&args);
        id.trim()
            .parse()
            .unwrap_or_else(|_| panic!("rule add printed {id:?}"))
    }

    /// Sends `frames` out of the namespace end, in order.
    pub fn send(&self, frames: Vec<Vec<u8>>) {
        self.exchange(frames, None::<fn(&[u8]) -> bool>);
    }

    /// Sends `frames` out of the namespace end, in order, then reads the frames that come back
    /// into the namespace until `last` accepts one, within [`CONTROL_WAIT`]; returns them, the
    /// last included. Frames sent from one CPU are handled by the host end in the order sent
    /// (from several CPUs, a later frame could be handled first), and so are the packets it
    /// sends back: the sending thread keeps to one CPU.
    pub fn exchange<F>(&self, frames: Vec<Vec<u8>>, last: Option<F>) -> Vec<Vec<u8>>
    where
        F: Fn(&[u8]) -> bool + Send + 'static,
    {
        let peer_if = self.net.peer_if().to_owned();
        self.net
            .run_in_namespace(move || {
                netxdp::traffic::pin_to_this_cpu()?;
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
    pub fn udp_reaches(&self, sockets: &UdpSockets, probe: Vec<Vec<u8>>, tag: &str) -> bool {
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
    pub fn syn_ack_comes_back(&self, probe: Vec<Vec<u8>>, sport: u16) -> bool {
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
pub struct UdpSockets {
    host: IpAddr,
    sink: Socket,
    control: Socket,
}

impl UdpSockets {
    pub fn bind(host: IpAddr) -> Self {
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
pub struct PacketSocket(Socket);

impl PacketSocket {
    /// Bound to `iface` for frames of `protocol` (an ethertype, or [`ETH_P_ALL`]). Opened with
    /// no protocol, it receives nothing until bound: no frames of other interfaces slip in.
    pub fn open(iface: &str, protocol: u16) -> io::Result<Self> {
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

    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.0.send(frame).map(drop)
    }

    pub fn recv_within(&self, wait: Duration) -> io::Result<Option<Vec<u8>>> {
        recv_within(&self.0, wait)
    }
}

/// The next message on `socket`, waiting up to `wait` (zero: not at all); None if none came.
pub fn recv_within(socket: &Socket, wait: Duration) -> io::Result<Option<Vec<u8>>> {
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
pub fn watch_for(
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
pub fn drop_reasons(iface: &str) -> Value {
    let text = ok(&["stats", iface, "--json", "--count", "1"]);
    let record: Value = serde_json::from_str(text.lines().next().expect("a line")).expect("JSON");
    assert_eq!(record["schema"], "netxdp.stats/v2", "{record}");
    record["dropped"].clone()
}

/// Every `(reason, packets)` of `grown`: the reason's counter grew by exactly that much.
pub fn expect_growth(before: &Value, after: &Value, grown: &[(&str, u64)]) {
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

/// The `packets` of the rule with `id` on `iface`.
pub fn rule_packets(iface: &str, id: u64) -> u64 {
    crate::support::rule_packets(&rules_json(iface), id)
}
