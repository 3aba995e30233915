//! Test support: build frames from a description, and generate random and mutated ones from
//! a seed. Never part of the kernel program.
//!
//! ```
//! use net_common::testing::{Body, FrameSpec, Transport};
//! let frame = FrameSpec::ipv4_udp(5353, 53, 32).build();
//! assert_eq!(frame.len(), 14 + 20 + 8 + 32);
//! ```

use alloc::{vec, vec::Vec};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checksum::internet_checksum;
use crate::parse::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, Fragment, IPPROTO_AH,
    IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP, L3, L4, MAX_VLAN_TAGS, ND_HOP_LIMIT, ND_TYPES,
    Transport as Parsed,
};

/// A frame, described.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    /// VLAN tag protocol identifiers, outermost first (0x8100 or 0x88a8).
    pub vlans: Vec<u16>,
    pub body: Body,
}

/// What follows the Ethernet header and VLAN tags.
#[derive(Clone, Debug)]
pub enum Body {
    Arp,
    Ipv4 {
        src: [u8; 4],
        dst: [u8; 4],
        /// The flags and fragment offset field (0x2000 = more fragments).
        fragment: u16,
        /// IPv4 options, in 32-bit words (0 to 10).
        option_words: u8,
        transport: Transport,
    },
    Ipv6 {
        src: [u8; 16],
        dst: [u8; 16],
        extensions: Vec<Extension>,
        transport: Transport,
    },
    /// Any other ethertype, with this many payload bytes.
    Other {
        ethertype: u16,
        payload: usize,
    },
}

/// An IPv6 extension header.
#[derive(Clone, Copy, Debug)]
pub enum Extension {
    /// Hop-by-hop options of (units + 1) * 8 bytes.
    HopByHop {
        units: u8,
    },
    Routing {
        units: u8,
    },
    DestinationOptions {
        units: u8,
    },
    /// An authentication header of (units + 2) * 4 bytes.
    Authentication {
        units: u8,
    },
    /// Offset in 8-byte units, and the more-fragments flag.
    Fragment {
        offset: u16,
        more: bool,
    },
}

/// The transport header and payload.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        payload: usize,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: usize,
    },
    Icmp {
        icmp_type: u8,
        code: u8,
        payload: usize,
    },
    Icmpv6 {
        icmp_type: u8,
        code: u8,
        payload: usize,
    },
    /// Another protocol number, with opaque payload.
    Raw { protocol: u8, payload: usize },
}

impl Transport {
    pub fn protocol(&self) -> u8 {
        match self {
            Transport::Tcp { .. } => IPPROTO_TCP,
            Transport::Udp { .. } => IPPROTO_UDP,
            Transport::Icmp { .. } => IPPROTO_ICMP,
            Transport::Icmpv6 { .. } => IPPROTO_ICMPV6,
            Transport::Raw { protocol, .. } => *protocol,
        }
    }

    fn build(&self) -> Vec<u8> {
        let mut out;
        match *self {
            Transport::Tcp {
                sport,
                dport,
                flags,
                payload,
            } => {
                out = vec![0u8; 20 + payload];
                out[0..2].copy_from_slice(&sport.to_be_bytes());
                out[2..4].copy_from_slice(&dport.to_be_bytes());
                out[12] = 5 << 4;
                out[13] = flags;
            }
            Transport::Udp {
                sport,
                dport,
                payload,
            } => {
                out = vec![0u8; 8 + payload];
                out[0..2].copy_from_slice(&sport.to_be_bytes());
                out[2..4].copy_from_slice(&dport.to_be_bytes());
                out[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
            }
            Transport::Icmp {
                icmp_type,
                code,
                payload,
            }
            | Transport::Icmpv6 {
                icmp_type,
                code,
                payload,
            } => {
                out = vec![0u8; 8 + payload];
                out[0] = icmp_type;
                out[1] = code;
            }
            Transport::Raw { payload, .. } => out = vec![0xab; payload],
        }
        out
    }
}

impl FrameSpec {
    /// An untagged IPv4/UDP frame from 198.18.0.2 to 198.18.0.1.
    pub fn ipv4_udp(sport: u16, dport: u16, payload: usize) -> Self {
        FrameSpec {
            vlans: Vec::new(),
            body: Body::Ipv4 {
                src: [198, 18, 0, 2],
                dst: [198, 18, 0, 1],
                fragment: 0,
                option_words: 0,
                transport: Transport::Udp {
                    sport,
                    dport,
                    payload,
                },
            },
        }
    }

    /// An untagged IPv6/TCP frame from fd00::2 to fd00::1.
    pub fn ipv6_tcp(sport: u16, dport: u16, flags: u8, payload: usize) -> Self {
        FrameSpec {
            vlans: Vec::new(),
            body: Body::Ipv6 {
                src: ipv6(2),
                dst: ipv6(1),
                extensions: Vec::new(),
                transport: Transport::Tcp {
                    sport,
                    dport,
                    flags,
                    payload,
                },
            },
        }
    }

    pub fn with_vlans(mut self, tpids: &[u16]) -> Self {
        self.vlans = tpids.to_vec();
        self
    }

    /// The frame's bytes: lengths, and the IPv4 header checksum, consistent.
    pub fn build(&self) -> Vec<u8> {
        let ethertype = match &self.body {
            Body::Arp => ETH_P_ARP,
            Body::Ipv4 { .. } => ETH_P_IPV4,
            Body::Ipv6 { .. } => ETH_P_IPV6,
            Body::Other { ethertype, .. } => *ethertype,
        };
        let mut frame = vec![0u8; 12];
        frame[0..6].copy_from_slice(&[0x02, 0x4e, 0x58, 0, 0, 1]);
        frame[6..12].copy_from_slice(&[0x02, 0x4e, 0x58, 0, 0, 2]);
        for (i, tpid) in self.vlans.iter().enumerate() {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        frame.extend_from_slice(&ethertype.to_be_bytes());
        match &self.body {
            Body::Arp => {
                // Ethernet/IPv4 request: htype 1, ptype 0x0800, hlen 6, plen 4, op 1; from
                // 198.18.0.2 (the frame's source MAC) for 198.18.0.1.
                frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
                frame.extend_from_slice(&[0x02, 0x4e, 0x58, 0, 0, 2, 198, 18, 0, 2]);
                frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 198, 18, 0, 1]);
            }
            Body::Ipv4 {
                src,
                dst,
                fragment,
                option_words,
                transport,
            } => {
                let l4 = transport.build();
                let header_len = 20 + 4 * usize::from(*option_words);
                let mut ip = vec![0u8; header_len];
                ip[0] = 0x40 | (header_len / 4) as u8;
                ip[2..4].copy_from_slice(&((header_len + l4.len()) as u16).to_be_bytes());
                ip[6..8].copy_from_slice(&fragment.to_be_bytes());
                ip[8] = 64;
                ip[9] = transport.protocol();
                ip[12..16].copy_from_slice(src);
                ip[16..20].copy_from_slice(dst);
                let checksum = internet_checksum(&ip);
                ip[10..12].copy_from_slice(&checksum.to_be_bytes());
                frame.extend_from_slice(&ip);
                frame.extend_from_slice(&l4);
            }
            Body::Ipv6 {
                src,
                dst,
                extensions,
                transport,
            } => {
                let mut payload = Vec::new();
                let mut next_headers: Vec<u8> = extensions.iter().map(Extension::kind).collect();
                next_headers.push(transport.protocol());
                for (ext, next) in extensions.iter().zip(&next_headers[1..]) {
                    payload.extend_from_slice(&ext.build(*next));
                }
                payload.extend_from_slice(&transport.build());
                let mut ip = vec![0u8; 40];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
                ip[6] = next_headers[0];
                // Neighbour discovery as hosts send it: routers would have decreased it.
                ip[7] = match transport {
                    Transport::Icmpv6 { icmp_type, .. } if ND_TYPES.contains(icmp_type) => {
                        ND_HOP_LIMIT
                    }
                    _ => 64,
                };
                ip[8..24].copy_from_slice(src);
                ip[24..40].copy_from_slice(dst);
                frame.extend_from_slice(&ip);
                frame.extend_from_slice(&payload);
            }
            Body::Other { payload, .. } => frame.extend(core::iter::repeat_n(0x5a, *payload)),
        }
        frame
    }
}

impl Extension {
    fn kind(&self) -> u8 {
        match self {
            Extension::HopByHop { .. } => IPPROTO_HOPOPTS,
            Extension::Routing { .. } => IPPROTO_ROUTING,
            Extension::DestinationOptions { .. } => IPPROTO_DSTOPTS,
            Extension::Authentication { .. } => IPPROTO_AH,
            Extension::Fragment { .. } => IPPROTO_FRAGMENT,
        }
    }

    fn build(&self, next_header: u8) -> Vec<u8> {
        match *self {
            Extension::HopByHop { units }
            | Extension::Routing { units }
            | Extension::DestinationOptions { units } => {
                let mut ext = vec![0u8; (usize::from(units) + 1) * 8];
                ext[0] = next_header;
                ext[1] = units;
                ext
            }
            Extension::Authentication { units } => {
                let mut ext = vec![0u8; (usize::from(units) + 2) * 4];
                ext[0] = next_header;
                ext[1] = units;
                ext
            }
            Extension::Fragment { offset, more } => {
                let mut ext = vec![0u8; 8];
                ext[0] = next_header;
                ext[2..4].copy_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
                ext[4..8].copy_from_slice(&0x4e58_0001u32.to_be_bytes());
                ext
            }
        }
    }
}

/// `frame` (an IPv4 or IPv6 frame as [`FrameSpec::build`] makes them, with up to two VLAN
/// tags) with its IP datagram cut `ip_payload` bytes after the IPv4 header or the fixed IPv6
/// header, its length fields (and the IPv4 header checksum) rewritten to match: the first
/// fragment of a datagram split there, when the spec was a first fragment. `None` for other
/// frames, or when the datagram is not longer than that.
pub fn cut_datagram(frame: &[u8], ip_payload: usize) -> Option<Vec<u8>> {
    let l3 = 14 + 4 * vlan_tags(frame);
    if l3 > 14 + 4 * MAX_VLAN_TAGS {
        return None;
    }
    let ethertype = u16::from_be_bytes([*frame.get(l3 - 2)?, *frame.get(l3 - 1)?]);
    let mut frame = frame.to_vec();
    match ethertype {
        ETH_P_IPV4 => {
            let header_len = usize::from(frame.get(l3)? & 0x0f) * 4;
            let end = l3 + header_len + ip_payload;
            if end >= frame.len() {
                return None;
            }
            frame.truncate(end);
            let total = (header_len + ip_payload) as u16;
            frame[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            frame[l3 + 10..l3 + 12].fill(0);
            let checksum = internet_checksum(&frame[l3..l3 + header_len]);
            frame[l3 + 10..l3 + 12].copy_from_slice(&checksum.to_be_bytes());
        }
        ETH_P_IPV6 => {
            let end = l3 + 40 + ip_payload;
            if end >= frame.len() {
                return None;
            }
            frame.truncate(end);
            frame[l3 + 4..l3 + 6].copy_from_slice(&(ip_payload as u16).to_be_bytes());
        }
        _ => return None,
    }
    Some(frame)
}

/// An untagged IPv4 frame from 198.18.0.2 to 198.18.0.1 carrying `transport`.
pub fn ipv4(transport: Transport) -> FrameSpec {
    FrameSpec {
        vlans: Vec::new(),
        body: Body::Ipv4 {
            src: [198, 18, 0, 2],
            dst: [198, 18, 0, 1],
            fragment: 0,
            option_words: 0,
            transport,
        },
    }
}

/// An untagged IPv6 frame from fd00::2 to fd00::1 with extension headers.
pub fn ipv6_with(extensions: Vec<Extension>, transport: Transport) -> FrameSpec {
    FrameSpec {
        vlans: Vec::new(),
        body: Body::Ipv6 {
            src: ipv6(2),
            dst: ipv6(1),
            extensions,
            transport,
        },
    }
}

/// A well-formed frame of a known kind, with the parse result it must get: written out by
/// hand, not computed by the parser.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: &'static str,
    pub spec: FrameSpec,
    pub l3: L3,
    pub l4: L4,
    pub transport: Parsed,
    pub fragment: Fragment,
}

/// Every frame kind the parser knows, tagged and untagged, with extension headers and
/// fragments.
pub fn catalogue() -> Vec<Case> {
    let udp = Transport::Udp {
        sport: 5353,
        dport: 53,
        payload: 10,
    };
    let udp_ports = Parsed::Ports {
        src: 5353,
        dst: 53,
        tcp_flags: 0,
    };
    let tcp = Transport::Tcp {
        sport: 40000,
        dport: 443,
        flags: 0x02,
        payload: 0,
    };
    let tcp_ports = Parsed::Ports {
        src: 40000,
        dst: 443,
        tcp_flags: 0x02,
    };
    let echo = Transport::Icmp {
        icmp_type: 8,
        code: 0,
        payload: 8,
    };
    let echo6 = Transport::Icmpv6 {
        icmp_type: 128,
        code: 0,
        payload: 8,
    };
    let none = Parsed::None;
    vec![
        Case {
            name: "arp",
            spec: FrameSpec {
                vlans: Vec::new(),
                body: Body::Arp,
            },
            l3: L3::Arp,
            l4: L4::Other,
            transport: none,
            fragment: Fragment::None,
        },
        Case {
            name: "lldp",
            spec: FrameSpec {
                vlans: Vec::new(),
                body: Body::Other {
                    ethertype: 0x88cc,
                    payload: 30,
                },
            },
            l3: L3::Other,
            l4: L4::Other,
            transport: none,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 udp",
            spec: ipv4(udp),
            l3: L3::Ipv4,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 tcp",
            spec: ipv4(tcp),
            l3: L3::Ipv4,
            l4: L4::Tcp,
            transport: tcp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 icmp",
            spec: ipv4(echo),
            l3: L3::Ipv4,
            l4: L4::Icmp,
            transport: Parsed::Icmp {
                icmp_type: 8,
                code: 0,
            },
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 gre",
            spec: ipv4(Transport::Raw {
                protocol: 47,
                payload: 12,
            }),
            l3: L3::Ipv4,
            l4: L4::Other,
            transport: none,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 udp vlan",
            spec: ipv4(udp).with_vlans(&[0x8100]),
            l3: L3::Ipv4,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 udp qinq",
            spec: ipv4(udp).with_vlans(&[0x88a8, 0x8100]),
            l3: L3::Ipv4,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 udp three tags",
            spec: ipv4(udp).with_vlans(&[0x88a8, 0x8100, 0x8100]),
            l3: L3::Other,
            l4: L4::Other,
            transport: none,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 tcp",
            spec: ipv6_with(Vec::new(), tcp),
            l3: L3::Ipv6,
            l4: L4::Tcp,
            transport: tcp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 udp vlan",
            spec: ipv6_with(Vec::new(), udp).with_vlans(&[0x8100]),
            l3: L3::Ipv6,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 icmpv6",
            spec: ipv6_with(Vec::new(), echo6),
            l3: L3::Ipv6,
            l4: L4::Icmpv6,
            transport: Parsed::Icmp {
                icmp_type: 128,
                code: 0,
            },
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 hop-by-hop routing dstopts udp",
            spec: ipv6_with(
                vec![
                    Extension::HopByHop { units: 0 },
                    Extension::Routing { units: 2 },
                    Extension::DestinationOptions { units: 1 },
                ],
                udp,
            ),
            l3: L3::Ipv6,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 first fragment tcp",
            spec: ipv6_with(
                vec![Extension::Fragment {
                    offset: 0,
                    more: true,
                }],
                tcp,
            ),
            l3: L3::Ipv6,
            l4: L4::Tcp,
            transport: tcp_ports,
            fragment: Fragment::First,
        },
        Case {
            name: "ipv6 later fragment udp",
            spec: ipv6_with(
                vec![Extension::Fragment {
                    offset: 185,
                    more: false,
                }],
                udp,
            ),
            l3: L3::Ipv6,
            l4: L4::Udp,
            transport: none,
            fragment: Fragment::Later,
        },
        Case {
            name: "ipv6 nine extension headers",
            spec: ipv6_with(vec![Extension::DestinationOptions { units: 0 }; 9], udp),
            l3: L3::Ipv6,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 thirty-two extension headers",
            spec: ipv6_with(vec![Extension::DestinationOptions { units: 0 }; 32], udp),
            l3: L3::Ipv6,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 authentication header udp",
            spec: ipv6_with(vec![Extension::Authentication { units: 4 }], udp),
            l3: L3::Ipv6,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 atomic fragment tcp",
            spec: ipv6_with(
                vec![
                    Extension::Fragment {
                        offset: 0,
                        more: false,
                    },
                    Extension::DestinationOptions { units: 1 },
                ],
                tcp,
            ),
            l3: L3::Ipv6,
            l4: L4::Tcp,
            transport: tcp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 neighbour solicitation",
            spec: ipv6_with(
                Vec::new(),
                Transport::Icmpv6 {
                    icmp_type: 135,
                    code: 0,
                    payload: 20,
                },
            ),
            l3: L3::Ipv6,
            l4: L4::Icmpv6,
            transport: Parsed::Icmp {
                icmp_type: 135,
                code: 0,
            },
            fragment: Fragment::None,
        },
    ]
}

/// fd00::N.
pub fn ipv6(n: u8) -> [u8; 16] {
    let mut addr = [0u8; 16];
    addr[0] = 0xfd;
    addr[15] = n;
    addr
}

/// A seeded source of frames: well-formed ones of every kind the parser knows, and the same
/// mutated (bytes flipped, lengths lied about, truncated) or replaced by noise.
pub struct FrameGenerator {
    rng: ChaCha8Rng,
}

impl FrameGenerator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next frame: about half well-formed, the rest mutated, truncated or noise (see
    /// [`damage`]), and now and then an IP datagram cut short (see [`evade`]). Always 14 to
    /// 1518 bytes.
    pub fn next_frame(&mut self) -> Vec<u8> {
        let frame = self.spec().build();
        let frame = evade(&mut self.rng, frame);
        damage(&mut self.rng, frame, 4)
    }

    /// A random well-formed description.
    pub fn spec(&mut self) -> FrameSpec {
        let rng = &mut self.rng;
        let vlans = (0..rng.random_range(0..=3))
            .map(|_| {
                if rng.random_bool(0.7) {
                    ETH_P_8021Q
                } else {
                    ETH_P_8021AD
                }
            })
            .collect();
        let body = match rng.random_range(0..10) {
            0 => Body::Arp,
            1 => Body::Other {
                ethertype: 0x88cc,
                payload: rng.random_range(0..64),
            },
            2..=5 => Body::Ipv4 {
                src: rng.random(),
                dst: rng.random(),
                fragment: match rng.random_range(0..7) {
                    0 => 0x2000,
                    1 => rng.random_range(1..0x2000) | if rng.random() { 0x2000 } else { 0 },
                    2 => 0x4000,                                    // don't fragment
                    3 => 1 | if rng.random() { 0x2000 } else { 0 }, // offset 1 (RFC 3128)
                    _ => 0,
                },
                option_words: if rng.random_bool(0.2) {
                    rng.random_range(1..=10)
                } else {
                    0
                },
                transport: random_transport(rng, false),
            },
            _ => Body::Ipv6 {
                src: rng.random(),
                dst: rng.random(),
                extensions: (0..random_chain_length(rng))
                    .map(|_| random_extension(rng))
                    .collect(),
                transport: random_transport(rng, true),
            },
        };
        FrameSpec { vlans, body }
    }
}

/// `frame`, one time in ten, with its IP datagram cut 0 to 47 bytes after the IP header
/// ([`cut_datagram`]), and an IPv4 one half of those times made a first fragment: a first
/// fragment cut there is a tiny fragment (RFC 1858, RFC 7112).
pub fn evade(rng: &mut ChaCha8Rng, frame: Vec<u8>) -> Vec<u8> {
    if !rng.random_bool(0.1) {
        return frame;
    }
    let Some(mut cut) = cut_datagram(&frame, rng.random_range(0..48)) else {
        return frame;
    };
    let l3 = 14 + 4 * vlan_tags(&cut);
    if rng.random() && u16::from_be_bytes([cut[l3 - 2], cut[l3 - 1]]) == ETH_P_IPV4 {
        // More fragments, offset 0; the header checksum made right again.
        cut[l3 + 6..l3 + 8].copy_from_slice(&0x2000u16.to_be_bytes());
        let header_len = usize::from(cut[l3] & 0x0f) * 4;
        cut[l3 + 10..l3 + 12].fill(0);
        let checksum = internet_checksum(&cut[l3..l3 + header_len]);
        cut[l3 + 10..l3 + 12].copy_from_slice(&checksum.to_be_bytes());
    }
    cut
}

/// The VLAN tags at the start of `frame` (as many as the parser reads, or one more).
fn vlan_tags(frame: &[u8]) -> usize {
    let ethertype = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    let mut tags = 0;
    while tags <= MAX_VLAN_TAGS
        && frame.len() >= 14 + 4 * tags + 4
        && matches!(ethertype(12 + 4 * tags), ETH_P_8021Q | ETH_P_8021AD)
    {
        tags += 1;
    }
    tags
}

/// A number of IPv6 extension headers: mostly none or a few, now and then the long chains
/// that attackers use to hide the upper-layer header (up to 40).
pub fn random_chain_length(rng: &mut ChaCha8Rng) -> usize {
    match rng.random_range(0..20) {
        0..12 => 0,
        12..18 => rng.random_range(1..=3),
        18 => rng.random_range(4..=9),
        _ => rng.random_range(10..=40),
    }
}

/// A well-formed `frame`, damaged at random: of every eight frames, `intact` (0 to 6) are
/// kept as they are, one is truncated, one is replaced by noise behind a plausible ethertype,
/// and the rest get 1 to 3 bytes flipped where the parser looks, in the first 100. Then cut
/// to 1518 bytes, an Ethernet MTU (and within a page, which BPF_PROG_TEST_RUN needs for the
/// whole frame to be linear: a long extension header chain is cut, as a capture would), and
/// padded with zeros to at least 14 bytes, the least BPF_PROG_TEST_RUN accepts.
pub fn damage(rng: &mut ChaCha8Rng, mut frame: Vec<u8>, intact: u32) -> Vec<u8> {
    debug_assert!(
        intact <= 6,
        "at most 6 frames in 8 stay intact, not {intact}"
    );
    match rng.random_range(0..8u32) {
        roll if roll < intact => {}
        0..=5 => {
            let reach = frame.len().min(100);
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(12..reach.max(13));
                if let Some(byte) = frame.get_mut(at) {
                    *byte = rng.random();
                }
            }
        }
        6 => {
            let len = rng.random_range(14..=frame.len().max(14));
            frame.truncate(len);
        }
        _ => {
            let len = rng.random_range(14..128);
            frame = (0..len).map(|_| rng.random()).collect();
            // Noise behind a plausible ethertype reaches deeper into the parser.
            let ethertypes = [ETH_P_IPV4, ETH_P_IPV6, ETH_P_ARP, ETH_P_8021Q, 0x88b5];
            let ethertype = ethertypes[rng.random_range(0..ethertypes.len())];
            frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
        }
    }
    frame.truncate(1518);
    while frame.len() < 14 {
        frame.push(0);
    }
    frame
}

fn random_transport(rng: &mut ChaCha8Rng, ipv6: bool) -> Transport {
    let payload = rng.random_range(0..64);
    match rng.random_range(0..5) {
        0 => Transport::Tcp {
            sport: rng.random(),
            dport: rng.random(),
            flags: rng.random(),
            payload,
        },
        1 => Transport::Udp {
            sport: rng.random(),
            dport: rng.random(),
            payload,
        },
        2 if ipv6 => Transport::Icmpv6 {
            icmp_type: rng.random(),
            code: rng.random(),
            payload,
        },
        2 => Transport::Icmp {
            icmp_type: rng.random(),
            code: rng.random(),
            payload,
        },
        3 => Transport::Icmp {
            icmp_type: 8,
            code: 0,
            payload,
        },
        _ => Transport::Raw {
            protocol: [47, 50, 51, 59, 132, 255][rng.random_range(0..6)],
            payload,
        },
    }
}

/// A random IPv6 extension header: hop-by-hop, routing, destination options (mostly 8 to 24
/// bytes, now and then up to 2 KiB), authentication, or fragment (first, later or atomic,
/// more or last); destination options most often, as the long chains attackers use are.
pub fn random_extension(rng: &mut ChaCha8Rng) -> Extension {
    let units = if rng.random_bool(0.8) {
        rng.random_range(0..3)
    } else {
        rng.random()
    };
    match rng.random_range(0..6) {
        0 => Extension::HopByHop { units },
        1 => Extension::Routing { units },
        2 | 3 => Extension::DestinationOptions { units },
        4 => Extension::Authentication { units },
        _ => Extension::Fragment {
            offset: if rng.random_bool(0.5) {
                0
            } else {
                rng.random_range(1..0x2000)
            },
            more: rng.random(),
        },
    }
}
