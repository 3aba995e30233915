//! The packet parser: Ethernet, up to two VLAN tags, ARP, IPv4, IPv6 with extension
//! headers, TCP, UDP, ICMP and ICMPv6.
//!
//! This is the definition of how netxdp sees a frame. The XDP program calls [`parse`] on the
//! live packet; the tests call it on byte slices. It never panics and never loops without a
//! bound, because the verifier accepts neither.
//!
//! # Defects
//! A frame is defective ([`Packet::defect`]) when it is one that an honest sender never
//! makes and a filter could be fooled by:
//! - [`Defect::Malformed`]: a header it announces is cut short or invalid. Fewer than 14
//!   bytes of Ethernet, or an incomplete VLAN tag; ARP with fewer than its 8 fixed header
//!   bytes; IPv4 with fewer than 20 bytes, a version other than 4, IHL below 5, options past
//!   the end of the frame, or a total length below the header length or beyond the frame;
//!   IPv6 with fewer than 40 bytes, a version other than 6, a payload length beyond the
//!   frame, or an extension header cut short; on an unfragmented packet, a TCP (20 bytes),
//!   UDP (8) or ICMP/ICMPv6 (4) header that does not fit in the IP payload. Linux drops all
//!   of these itself.
//! - [`Defect::TinyFragment`]: a first fragment that does not hold the whole transport
//!   header (RFC 1858) or, for IPv6, the whole extension header chain (RFC 7112). Linux
//!   reassembles it, and the header that rules match on arrives in a later fragment, which
//!   carries no ports.
//! - [`Defect::OverlapFragment`]: an IPv4 fragment at offset 1 (8 bytes), which can only
//!   serve to overwrite a first fragment's transport header (RFC 1858, RFC 3128).
//! - [`Defect::Ipv6Chain`]: an IPv6 extension header chain with a second fragment header (or
//!   one reaching past [`MAX_HEADER_OFFSET`], which no frame does).
//!
//! Ethertypes other than IPv4, IPv6 and ARP (including a third VLAN tag) are `L3::Other`,
//! not defective. Non-first fragments carry no L4 header: they are classed by the IP
//! protocol field with no ports.
//!
//! # IPv6 extension headers
//! The chain is walked to its upper-layer header however long it is, as Linux walks it:
//! hop-by-hop options, routing, fragment, authentication (AH) and destination options
//! headers; any other next header is the upper layer (ESP and "no next header" included).
//! An atomic fragment (offset 0, no more fragments) is an unfragmented packet, as Linux
//! treats it (RFC 6946). The walk is a [`Frame::repeat`] of one header per turn, which the
//! XDP program runs through `bpf_loop`.
//!
//! # Neighbour traffic
//! [`Packet::neighbour`] is set on well-formed neighbour traffic only: Ethernet/IPv4 ARP
//! with its 28 bytes, and ICMPv6 types 133 to 137 with code 0, hop limit 255 and no
//! fragment header (RFC 4861, RFC 6980), which is what Linux accepts as such.

use crate::{
    frame::{Frame, Step},
    rule::Family,
};

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// VLAN tags (802.1Q or 802.1ad) parsed before giving up on a frame as `L3::Other`.
pub const MAX_VLAN_TAGS: usize = 2;
/// The furthest into a frame an IPv6 extension or upper-layer header is looked for: beyond
/// any frame XDP sees, and within the verifier's limit on packet offsets (0xffff), which the
/// walk's offsets, kept in a map value, must be seen to respect.
pub const MAX_HEADER_OFFSET: usize = 0xff00;
/// The hop limit of genuine neighbour discovery: a router would have decreased it.
pub const ND_HOP_LIMIT: u8 = 255;
/// ICMPv6 types of neighbour discovery: router solicitation and advertisement, neighbour
/// solicitation and advertisement, redirect.
pub const ND_TYPES: core::ops::RangeInclusive<u8> = 133..=137;

/// Network-layer class, also the index into [`crate::stats::Stats::l3`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L3 {
    Ipv4 = 0,
    Ipv6 = 1,
    Arp = 2,
    Other = 3,
}

impl L3 {
    pub const ALL: [L3; 4] = [L3::Ipv4, L3::Ipv6, L3::Arp, L3::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            L3::Ipv4 => "ipv4",
            L3::Ipv6 => "ipv6",
            L3::Arp => "arp",
            L3::Other => "other",
        }
    }
}

/// Transport-layer class, also the index into [`crate::stats::Stats::l4`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum L4 {
    Tcp = 0,
    Udp = 1,
    Icmp = 2,
    Icmpv6 = 3,
    Other = 4,
}

impl L4 {
    pub const ALL: [L4; 5] = [L4::Tcp, L4::Udp, L4::Icmp, L4::Icmpv6, L4::Other];

    pub fn from_ip_proto(proto: u8) -> L4 {
        match proto {
            IPPROTO_TCP => L4::Tcp,
            IPPROTO_UDP => L4::Udp,
            IPPROTO_ICMP => L4::Icmp,
            IPPROTO_ICMPV6 => L4::Icmpv6,
            _ => L4::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
            L4::Icmp => "icmp",
            L4::Icmpv6 => "icmpv6",
            L4::Other => "other",
        }
    }
}

/// What makes a frame defective (see the module documentation); also the index of its
/// counter in [`crate::stats::Stats::dropped`] (after [`Defect::None`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Defect {
    None = 0,
    Malformed = 1,
    TinyFragment = 2,
    OverlapFragment = 3,
    Ipv6Chain = 4,
}

impl Defect {
    /// Every defect, [`Defect::None`] aside.
    pub const ALL: [Defect; 4] = [
        Defect::Malformed,
        Defect::TinyFragment,
        Defect::OverlapFragment,
        Defect::Ipv6Chain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Defect::None => "none",
            Defect::Malformed => "malformed",
            Defect::TinyFragment => "tiny_fragment",
            Defect::OverlapFragment => "overlap_fragment",
            Defect::Ipv6Chain => "ipv6_chain",
        }
    }
}

/// Where a packet sits in IP fragmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    None,
    /// The first fragment: it carries the L4 header.
    First,
    /// A later fragment: no L4 header.
    Later,
}

/// The transport header fields the parser extracts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// No L4 header: not IP, a later fragment, a truncated header or an unknown protocol.
    None,
    Ports {
        src: u16,
        dst: u16,
        tcp_flags: u8,
    },
    Icmp {
        icmp_type: u8,
        code: u8,
    },
}

/// What the parser learned about one frame.
///
/// Laid out with the fields that start zeroed first, 8-byte aligned, so that clearing them is
/// a few 8-byte stores: otherwise the XDP program clears them through a `memset` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct Packet {
    /// Source and destination addresses; IPv4 in the first 4 bytes, the rest zero.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The L4 header's fields: see [`Packet::transport`].
    l4_header: L4Header,
    /// The frame's length in bytes.
    pub len: u32,
    // The byte fields are ordered so that the zeros `reset` writes fall in whole aligned
    // words around `l3` and `l4`: a zero run across a word boundary compiles, in the XDP
    // program, to a call to a byte-wise `memset`.
    /// Which addresses [`Packet::src`] and [`Packet::dst`] hold: IPv4 for IPv4 and for
    /// Ethernet/IPv4 ARP (sender and target), IPv6 for IPv6, none otherwise.
    pub addr_family: Family,
    pub defect: Defect,
    pub l3: L3,
    pub l4: L4,
    /// Well-formed ARP or neighbour discovery (see the module documentation).
    pub neighbour: bool,
    pub vlan_tags: u8,
    /// The IP protocol (IPv4) or final next-header (IPv6); 0 for non-IP.
    pub ip_proto: u8,
    pub fragment: Fragment,
}

/// [`Transport`] as plain fields, every one always written: the XDP program keeps the packet
/// in a map value, and storing an enum with fields there leaves bytes undefined, which the
/// verifier rejects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
struct L4Header {
    /// `KIND_*`.
    kind: u8,
    tcp_flags: u8,
    icmp_type: u8,
    icmp_code: u8,
    sport: u16,
    dport: u16,
}

impl L4Header {
    const KIND_NONE: u8 = 0;
    const KIND_PORTS: u8 = 1;
    const KIND_ICMP: u8 = 2;
}

impl Packet {
    pub fn new(len: usize) -> Self {
        Packet {
            len: len as u32,
            l3: L3::Other,
            l4: L4::Other,
            addr_family: Family::Any,
            defect: Defect::None,
            neighbour: false,
            vlan_tags: 0,
            ip_proto: 0,
            fragment: Fragment::None,
            src: [0; 16],
            dst: [0; 16],
            l4_header: L4Header {
                kind: L4Header::KIND_NONE,
                tcp_flags: 0,
                icmp_type: 0,
                icmp_code: 0,
                sport: 0,
                dport: 0,
            },
        }
    }

    /// Makes this [`Packet::new`] again, field by field: assigning a whole new packet
    /// compiles, in the XDP program, to a call to a byte-wise `memset`.
    #[inline(always)]
    fn reset(&mut self, len: usize) {
        store_address(&mut self.src, &[0; 16]);
        store_address(&mut self.dst, &[0; 16]);
        self.l4_header = L4Header::default();
        self.len = len as u32;
        self.l3 = L3::Other;
        self.l4 = L4::Other;
        self.addr_family = Family::Any;
        self.defect = Defect::None;
        self.neighbour = false;
        self.vlan_tags = 0;
        self.ip_proto = 0;
        self.fragment = Fragment::None;
    }

    /// The transport header fields the parser extracted.
    #[inline(always)]
    pub fn transport(&self) -> Transport {
        let header = &self.l4_header;
        match header.kind {
            L4Header::KIND_PORTS => Transport::Ports {
                src: header.sport,
                dst: header.dport,
                tcp_flags: header.tcp_flags,
            },
            L4Header::KIND_ICMP => Transport::Icmp {
                icmp_type: header.icmp_type,
                code: header.icmp_code,
            },
            _ => Transport::None,
        }
    }

    /// [`Packet::l3`] as an index, read as the raw byte. The XDP program keeps the packet in a
    /// map value; read as an enum, its known range lets the compiler drop the bounds check
    /// that the verifier needs before indexing with it.
    #[inline(always)]
    pub fn l3_index(&self) -> usize {
        // SAFETY: `L3` is `repr(u8)`: its value is that byte.
        unsafe { *(&raw const self.l3).cast::<u8>() as usize }
    }

    /// [`Packet::l4`] as an index, read as the raw byte (see [`Packet::l3_index`]).
    #[inline(always)]
    pub fn l4_index(&self) -> usize {
        // SAFETY: `L4` is `repr(u8)`: its value is that byte.
        unsafe { *(&raw const self.l4).cast::<u8>() as usize }
    }

    /// The flags of a TCP header present in full; 0 otherwise.
    #[inline(always)]
    pub fn tcp_flags(&self) -> u8 {
        self.l4_header.tcp_flags
    }

    /// Source and destination ports of a TCP or UDP header that was present in full.
    #[inline(always)]
    pub fn ports(&self) -> Option<(u16, u16)> {
        let header = &self.l4_header;
        (header.kind == L4Header::KIND_PORTS).then_some((header.sport, header.dport))
    }

    /// Whether the parser found the frame defective: see [`Defect`].
    #[inline(always)]
    pub fn is_defective(&self) -> bool {
        self.defect != Defect::None
    }

    /// [`Packet::defect`] as an index, read as the raw byte (see [`Packet::l3_index`]).
    #[inline(always)]
    pub fn defect_index(&self) -> usize {
        // SAFETY: `Defect` is `repr(u8)`: its value is that byte.
        unsafe { *(&raw const self.defect).cast::<u8>() as usize }
    }

    fn set_malformed(&mut self) {
        self.defect = Defect::Malformed;
    }
}

/// Writes 16 address bytes as two 8-byte stores. A plain copy or clear compiles, in the XDP
/// program, to a call to a byte-wise `memmove` or `memset`, which costs more than the parse;
/// volatile stores cannot be merged back into one.
#[inline(always)]
fn store_address(to: &mut [u8; 16], from: &[u8]) {
    for (half, bytes) in to.chunks_exact_mut(8).zip(from.chunks_exact(8)) {
        let mut value = [0; 8];
        value.copy_from_slice(bytes);
        // SAFETY: 8 bytes inside `to`; `Packet` is 8-aligned and starts with the addresses.
        unsafe {
            core::ptr::write_volatile(half.as_mut_ptr().cast::<u64>(), u64::from_ne_bytes(value))
        };
    }
}

#[inline(always)]
fn be16(hi: u8, lo: u8) -> u16 {
    u16::from_be_bytes([hi, lo])
}

/// Parses one frame. Never panics; every read is bounds-checked through [`Frame`].
#[inline(always)]
pub fn parse<F: Frame>(frame: &F) -> Packet {
    let mut packet = Packet::new(frame.len());
    parse_into(frame, &mut packet);
    packet
}

/// [`parse`], into a packet that lives elsewhere. The XDP program parses into a map value:
/// a local packet is split by the compiler into one variable per field, and every branch of
/// the parser then stores all of them again, which cost more than the parsing itself.
#[inline(always)]
pub fn parse_into<F: Frame>(frame: &F, packet: &mut Packet) {
    packet.reset(frame.len());
    let Some(eth) = frame.bytes::<ETH_HLEN>(0) else {
        return packet.set_malformed();
    };
    let mut ethertype = be16(eth[12], eth[13]);
    let mut offset = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let Some(tag) = frame.bytes::<4>(offset) else {
            return packet.set_malformed();
        };
        packet.vlan_tags += 1;
        ethertype = be16(tag[2], tag[3]);
        offset += 4;
    }
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(frame, offset, packet),
        ETH_P_IPV6 => parse_ipv6(frame, offset, packet),
        ETH_P_ARP => parse_arp(frame, offset, packet),
        _ => {}
    }
}

/// ARP: Ethernet/IPv4 ARP gives its sender and target addresses, and is neighbour traffic.
#[inline(always)]
fn parse_arp<F: Frame>(frame: &F, offset: usize, packet: &mut Packet) {
    packet.l3 = L3::Arp;
    let Some(arp) = frame.bytes::<8>(offset) else {
        return packet.set_malformed();
    };
    // Hardware type Ethernet (1) or IEEE 802 (6), protocol IPv4, address lengths 6 and 4:
    // what Linux's ARP accepts on an Ethernet device.
    if arp[0] != 0 || !matches!(arp[1], 1 | 6) || arp[2..6] != [0x08, 0x00, 6, 4] {
        return;
    }
    let Some(addresses) = frame.bytes::<20>(offset + 8) else {
        return;
    };
    packet.src[..4].copy_from_slice(&addresses[6..10]);
    packet.dst[..4].copy_from_slice(&addresses[16..20]);
    packet.addr_family = Family::Ipv4;
    packet.neighbour = true;
}

#[inline(always)]
fn parse_ipv4<F: Frame>(frame: &F, offset: usize, packet: &mut Packet) {
    packet.l3 = L3::Ipv4;
    let Some(ip) = frame.bytes::<20>(offset) else {
        return packet.set_malformed();
    };
    let header_len = ((ip[0] & 0x0f) as usize) * 4;
    if ip[0] >> 4 != 4 || header_len < 20 {
        return packet.set_malformed();
    }
    let total_len = be16(ip[2], ip[3]) as usize;
    let datagram_end = offset + total_len;
    if total_len < header_len || !frame.reaches(datagram_end) {
        return packet.set_malformed();
    }
    packet.ip_proto = ip[9];
    packet.l4 = L4::from_ip_proto(ip[9]);
    packet.src[..4].copy_from_slice(&ip[12..16]);
    packet.dst[..4].copy_from_slice(&ip[16..20]);
    packet.addr_family = Family::Ipv4;
    let fragment = be16(ip[6], ip[7]);
    let more_fragments = fragment & 0x2000 != 0;
    packet.fragment = match (fragment & 0x1fff, more_fragments) {
        (0, false) => Fragment::None,
        (0, true) => Fragment::First,
        (offset, _) => {
            if offset == 1 {
                packet.defect = Defect::OverlapFragment;
            }
            packet.fragment = Fragment::Later;
            return;
        }
    };
    parse_l4(frame, offset + header_len, datagram_end, packet)
}

#[inline(always)]
fn parse_ipv6<F: Frame>(frame: &F, offset: usize, packet: &mut Packet) {
    packet.l3 = L3::Ipv6;
    let Some(ip) = frame.bytes::<40>(offset) else {
        return packet.set_malformed();
    };
    if ip[0] >> 4 != 6 {
        return packet.set_malformed();
    }
    store_address(&mut packet.src, &ip[8..24]);
    store_address(&mut packet.dst, &ip[24..40]);
    packet.addr_family = Family::Ipv6;
    let payload_len = be16(ip[4], ip[5]) as usize;
    // A zero payload length announces a jumbogram; its length is the frame's.
    let datagram_end = match payload_len {
        0 => frame.len(),
        len => offset + 40 + len,
    };
    if !frame.reaches(datagram_end) {
        return packet.set_malformed();
    }
    let mut chain = Chain {
        next_header: ip[6],
        offset: offset + 40,
        datagram_end,
        fragment: Fragment::None,
        fragment_header: false,
        defect: Defect::None,
        walking: true,
    };
    if is_extension_header(chain.next_header) {
        // Every header but the last takes 8 bytes or more: this many turns walk any chain
        // that fits in the datagram.
        let turns = (datagram_end - chain.offset) / 8 + 1;
        // A copy goes to the walk: were `chain` itself lent, its fields would live in memory
        // on every path, extension headers or not.
        let mut walked = chain;
        frame.repeat(turns as u32, &mut walked);
        chain = walked;
        if chain.walking || chain.offset > MAX_HEADER_OFFSET {
            chain.defect = Defect::Ipv6Chain;
        }
    }
    packet.fragment = chain.fragment;
    if chain.defect != Defect::None {
        packet.defect = chain.defect;
        return;
    }
    packet.ip_proto = chain.next_header;
    packet.l4 = L4::from_ip_proto(chain.next_header);
    if chain.fragment == Fragment::Later {
        return;
    }
    parse_l4(frame, chain.offset, datagram_end, packet);
    if let Transport::Icmp { icmp_type, code } = packet.transport() {
        packet.neighbour = packet.l4 == L4::Icmpv6
            && ND_TYPES.contains(&icmp_type)
            && code == 0
            && ip[7] == ND_HOP_LIMIT
            && !chain.fragment_header;
    }
}

/// Whether Linux walks `next_header` as an IPv6 extension header rather than deliver it to
/// an upper-layer protocol (`ipv6_ext_hdr`, ESP and "no next header" aside).
#[inline(always)]
fn is_extension_header(next_header: u8) -> bool {
    matches!(
        next_header,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_FRAGMENT | IPPROTO_AH | IPPROTO_DSTOPTS
    )
}

/// An IPv6 extension header chain, walked one header per [`Step::step`].
#[derive(Clone, Copy)]
struct Chain {
    /// The header at `offset`.
    next_header: u8,
    offset: usize,
    datagram_end: usize,
    fragment: Fragment,
    /// Whether a fragment header was seen (an atomic fragment leaves `fragment` at `None`).
    fragment_header: bool,
    defect: Defect,
    /// Cleared when the walk reaches the upper-layer header, a later fragment or a defect.
    walking: bool,
}

impl Chain {
    /// Ends the walk on a header that does not fit in the datagram: in a first fragment the
    /// rest of the chain is in a later one (RFC 7112); otherwise the packet is cut short.
    #[inline(always)]
    fn cut_short(&mut self) -> bool {
        self.defect = if self.fragment == Fragment::First {
            Defect::TinyFragment
        } else {
            Defect::Malformed
        };
        self.walking = false;
        false
    }
}

impl<F: Frame> Step<F> for Chain {
    #[inline(always)]
    fn step(&mut self, frame: &F) -> bool {
        if !is_extension_header(self.next_header) {
            self.walking = false;
            return false;
        }
        if self.offset > MAX_HEADER_OFFSET {
            self.defect = Defect::Ipv6Chain;
            self.walking = false;
            return false;
        }
        if self.offset + 2 > self.datagram_end {
            return self.cut_short();
        }
        let Some([next_header, units]) = frame.bytes::<2>(self.offset) else {
            return self.cut_short();
        };
        let header_len = match self.next_header {
            IPPROTO_FRAGMENT => 8,
            IPPROTO_AH => (units as usize + 2) * 4,
            _ => (units as usize + 1) * 8,
        };
        if self.offset + header_len > self.datagram_end {
            return self.cut_short();
        }
        if self.next_header == IPPROTO_FRAGMENT {
            if self.fragment_header {
                self.defect = Defect::Ipv6Chain;
                self.walking = false;
                return false;
            }
            self.fragment_header = true;
            let Some(header) = frame.bytes::<4>(self.offset) else {
                return self.cut_short();
            };
            let fragment = be16(header[2], header[3]);
            if fragment >> 3 != 0 {
                self.fragment = Fragment::Later;
                self.next_header = next_header;
                self.walking = false;
                return false;
            }
            if fragment & 1 != 0 {
                self.fragment = Fragment::First;
            }
        }
        self.next_header = next_header;
        self.offset += header_len;
        true
    }
}

/// Parses the L4 header at `offset`, which must end by `datagram_end` (the IP datagram's end,
/// already known to be inside the frame).
#[inline(always)]
fn parse_l4<F: Frame>(frame: &F, offset: usize, datagram_end: usize, packet: &mut Packet) {
    let needed = match packet.l4 {
        L4::Tcp => 20,
        L4::Udp => 8,
        L4::Icmp | L4::Icmpv6 => 4,
        L4::Other => return,
    };
    if offset + needed > datagram_end {
        // In a first fragment the header continues in a later one (RFC 1858): a rule on
        // ports could not see it.
        packet.defect = if packet.fragment == Fragment::First {
            Defect::TinyFragment
        } else {
            Defect::Malformed
        };
        return;
    }
    let header = &mut packet.l4_header;
    match packet.l4 {
        L4::Tcp => match frame.bytes::<14>(offset) {
            Some(tcp) => {
                header.kind = L4Header::KIND_PORTS;
                header.sport = be16(tcp[0], tcp[1]);
                header.dport = be16(tcp[2], tcp[3]);
                header.tcp_flags = tcp[13];
            }
            None => packet.set_malformed(),
        },
        L4::Udp => match frame.bytes::<4>(offset) {
            Some(udp) => {
                header.kind = L4Header::KIND_PORTS;
                header.sport = be16(udp[0], udp[1]);
                header.dport = be16(udp[2], udp[3]);
            }
            None => packet.set_malformed(),
        },
        _ => match frame.bytes::<2>(offset) {
            Some(icmp) => {
                header.kind = L4Header::KIND_ICMP;
                header.icmp_type = icmp[0];
                header.icmp_code = icmp[1];
            }
            None => packet.set_malformed(),
        },
    }
}
