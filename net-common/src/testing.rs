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
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, Fragment, IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_TCP,
    IPPROTO_UDP, L3, L4, Transport as Parsed,
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
                // Ethernet/IPv4 request: htype 1, ptype 0x0800, hlen 6, plen 4, op 1.
                frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
                frame.extend_from_slice(&[0; 20]);
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
                ip[7] = 64;
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
            l4: L4::Other,
            transport: none,
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
    /// [`damage`]). Always 14 to 1518 bytes.
    pub fn next_frame(&mut self) -> Vec<u8> {
        let frame = self.spec().build();
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
                fragment: match rng.random_range(0..6) {
                    0 => 0x2000,
                    1 => rng.random_range(1..0x2000) | if rng.random() { 0x2000 } else { 0 },
                    2 => 0x4000, // don't fragment
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
                extensions: (0..rng.random_range(0..=9))
                    .map(|_| random_extension(rng))
                    .collect(),
                transport: random_transport(rng, true),
            },
        };
        FrameSpec { vlans, body }
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
/// bytes, now and then up to 2 KiB) or fragment (first or later, more or last), one in four
/// each.
pub fn random_extension(rng: &mut ChaCha8Rng) -> Extension {
    let units = if rng.random_bool(0.8) {
        rng.random_range(0..3)
    } else {
        rng.random()
    };
    match rng.random_range(0..4) {
        0 => Extension::HopByHop { units },
        1 => Extension::Routing { units },
        2 => Extension::DestinationOptions { units },
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
