//! The packet parser: Ethernet, up to two VLAN tags, ARP, IPv4, IPv6 with extension
//! headers, TCP, UDP, ICMP and ICMPv6.
//!
//! This is the definition of how netxdp sees a frame. The XDP program calls [`parse`] on the
//! live packet; the tests call it on byte slices. It never panics and never loops without a
//! bound, because the verifier accepts neither.
//!
//! # What counts as malformed
//! A frame is `malformed` when a header it announces is cut short or is invalid:
//! - fewer than 14 bytes of Ethernet, or an incomplete VLAN tag;
//! - ARP with fewer than its 8 fixed header bytes;
//! - IPv4 with fewer than 20 bytes, a version other than 4, IHL below 5, options past the end
//!   of the frame, or a total length below the header length or beyond the frame;
//! - IPv6 with fewer than 40 bytes, a version other than 6, a payload length beyond the frame,
//!   or an extension header cut short;
//! - on an unfragmented packet or a first fragment: a TCP (20 bytes), UDP (8) or ICMP/ICMPv6
//!   (4) header that does not fit in the IP payload.
//!
//! Ethertypes other than IPv4, IPv6 and ARP (including a third VLAN tag) are `L3::Other`,
//! not malformed. Non-first fragments carry no L4 header: they are classed by the IP
//! protocol field with no ports. An IPv6 chain of more than [`MAX_IPV6_EXT_HEADERS`]
//! extension headers, or an unknown one such as AH or ESP, ends the walk: `L4::Other`.

use crate::frame::Frame;

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
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// VLAN tags (802.1Q or 802.1ad) parsed before giving up on a frame as `L3::Other`.
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers walked before giving up on finding the L4 header.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

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
    pub l3: L3,
    pub l4: L4,
    pub malformed: bool,
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
            malformed: false,
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
        self.malformed = false;
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

    fn set_malformed(&mut self) {
        self.malformed = true;
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
        ETH_P_ARP => {
            packet.l3 = L3::Arp;
            if frame.bytes::<8>(offset).is_none() {
                packet.set_malformed();
            }
        }
        _ => {}
    }
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
    let fragment = be16(ip[6], ip[7]);
    let more_fragments = fragment & 0x2000 != 0;
    packet.fragment = match (fragment & 0x1fff, more_fragments) {
        (0, false) => Fragment::None,
        (0, true) => Fragment::First,
        _ => {
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
    let payload_len = be16(ip[4], ip[5]) as usize;
    // A zero payload length announces a jumbogram; its length is the frame's.
    let datagram_end = match payload_len {
        0 => frame.len(),
        len => offset + 40 + len,
    };
    if !frame.reaches(datagram_end) {
        return packet.set_malformed();
    }
    let mut next_header = ip[6];
    let mut offset = offset + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next_header {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let Some(ext) = frame.bytes::<2>(offset) else {
                    return packet.set_malformed();
                };
                let ext_len = (ext[1] as usize + 1) * 8;
                if offset + ext_len > datagram_end {
                    return packet.set_malformed();
                }
                next_header = ext[0];
                offset += ext_len;
            }
            IPPROTO_FRAGMENT => {
                let Some(ext) = frame.bytes::<8>(offset) else {
                    return packet.set_malformed();
                };
                if offset + 8 > datagram_end {
                    return packet.set_malformed();
                }
                next_header = ext[0];
                offset += 8;
                let fragment = be16(ext[2], ext[3]);
                if fragment >> 3 != 0 {
                    packet.fragment = Fragment::Later;
                    packet.ip_proto = next_header;
                    packet.l4 = L4::from_ip_proto(next_header);
                    return;
                }
                if fragment & 1 != 0 {
                    packet.fragment = Fragment::First;
                }
            }
            _ => break,
        }
    }
    packet.ip_proto = next_header;
    if matches!(
        next_header,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT
    ) {
        // The chain is longer than we walk: no L4 header found.
        return;
    }
    packet.l4 = L4::from_ip_proto(next_header);
    parse_l4(frame, offset, datagram_end, packet)
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
        return packet.set_malformed();
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
