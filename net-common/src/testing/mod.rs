//! Test support: build frames from a description, and generate random and mutated ones from
//! a seed. Never part of the kernel program.
//!
//! - This module: frames built from a description ([`FrameSpec`]).
//! - [`catalogue`]: every frame kind the parser knows, with the parse it must get.
//! - `random`: seeded random frames, and the same mutated, evaded or damaged.
//!
//! ```
//! use net_common::testing::{Body, FrameSpec, Transport};
//! let frame = FrameSpec::ipv4_udp(5353, 53, 32).build();
//! assert_eq!(frame.len(), 14 + 20 + 8 + 32);
//! ```

mod catalogue;
mod random;

pub use catalogue::{Case, catalogue, ipv6};
pub use random::{FrameGenerator, damage, evade, random_chain_length, random_extension};

use alloc::{vec, vec::Vec};

use crate::checksum::internet_checksum;
use crate::parse::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_AH, IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_TCP,
    IPPROTO_UDP, MAX_VLAN_TAGS, ND_HOP_LIMIT, ND_TYPES,
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

/// The VLAN tags at the start of `frame` (as many as the parser reads, or one more).
pub(crate) fn vlan_tags(frame: &[u8]) -> usize {
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
