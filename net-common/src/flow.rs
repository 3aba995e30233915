//! The flow table: counters for each 5-tuple (with L3 protocol and VLAN) of the traffic
//! netxdp does not drop, which the XDP program fills and `netxdp flows` reads.
//!
//! Each CPU has slots of its own, one picked by a flow's hash ([`FlowSlot`]). A flow enters
//! the table with its second packet on a CPU: the first waits in the slot. The slot also keeps
//! the hash of the flow the CPU counted in the table from it, and only a packet whose hash is
//! there looks the table up. A flood of spoofed sources, one packet each, so never evicts a
//! flow and never touches the table: each packet costs a hash and one slot.
//!
//! A tracked flow whose slot another tracked flow took is not lost: its next packet is held
//! for admission, and the one after finds the flow in the table when it tries to insert it,
//! and adds both to it.

use crate::parse::{ETH_P_8021AD, ETH_P_8021Q, L3, Packet};

/// Memory for the flow table unless `netxdp attach --flow-table-size` says otherwise: some
/// 100,000 flows.
pub const DEFAULT_FLOW_TABLE_BYTES: u64 = 16 << 20;

/// What one flow costs the kernel, for sizing the table from a number of bytes: an LRU hash
/// element (48-byte header, the key and the value, each rounded up to 8 bytes) and its share
/// of the buckets (16 bytes each, a power of two of them: 16 to 32 per element).
pub const FLOW_ENTRY_BYTES: u64 = 48 + 40 + 40 + 24;

/// Flow slots per CPU: 8,192 x 32 bytes, 256 KiB a CPU.
pub const FLOW_SLOTS: u32 = 8192;

/// The flows the object declares; the loader sizes the table from bytes.
pub const DECLARED_FLOW_TABLE_ENTRIES: u32 = 65_536;

/// A flow: what the packets of one conversation direction share. (The table is the
/// interface's own, so the interface is not in the key.)
///
/// Aligned to 8 so that [`FlowKey::hash`] reads it a word at a time.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source and destination addresses; IPv4 in the first 4 bytes, zero for non-IP.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// TCP or UDP ports; 0 for other protocols.
    pub sport: u16,
    pub dport: u16,
    /// The outer VLAN id; 0 untagged.
    pub vlan_id: u16,
    /// [`L3`] as its `u8` value.
    pub l3: u8,
    /// The IP protocol; 0 for non-IP.
    pub ip_proto: u8,
}

impl FlowKey {
    /// The flow `packet` belongs to, received with outer VLAN id `vlan_id`.
    #[inline(always)]
    pub fn of(packet: &Packet, vlan_id: u16) -> FlowKey {
        let (sport, dport) = packet.ports().unwrap_or((0, 0));
        FlowKey {
            src: packet.src,
            dst: packet.dst,
            sport,
            dport,
            vlan_id,
            l3: packet.l3_index() as u8,
            ip_proto: packet.ip_proto,
        }
    }

    pub fn l3(&self) -> L3 {
        L3::ALL.get(self.l3 as usize).copied().unwrap_or(L3::Other)
    }

    /// A 64-bit hash of the key, a few instructions a word: it picks the admission and
    /// tracked-hash slots and tells flows apart in them.
    #[inline(always)]
    pub fn hash(&self) -> u64 {
        let rest = rest_word(self.sport, self.dport, self.vlan_id, self.l3, self.ip_proto);
        hash_fields(&self.src, &self.dst, rest)
    }

    /// The hash of the key of `packet` with outer VLAN id `vlan_id`, without making the key:
    /// most packets of a flood need the hash only.
    #[inline(always)]
    pub fn hash_of(packet: &Packet, vlan_id: u16) -> u64 {
        let (sport, dport) = packet.ports().unwrap_or((0, 0));
        let l3 = packet.l3_index() as u8;
        let rest = rest_word(sport, dport, vlan_id, l3, packet.ip_proto);
        hash_fields(&packet.src, &packet.dst, rest)
    }

    /// The flow slot of a key of hash `hash`: from its top bits.
    #[inline(always)]
    pub fn slot(hash: u64) -> u32 {
        (hash >> (64 - FLOW_SLOTS.trailing_zeros())) as u32
    }
}

/// The key's fields after the addresses, as one word.
#[inline(always)]
fn rest_word(sport: u16, dport: u16, vlan_id: u16, l3: u8, ip_proto: u8) -> u64 {
    u64::from(sport)
        | u64::from(dport) << 16
        | u64::from(vlan_id) << 32
        | u64::from(l3) << 48
        | u64::from(ip_proto) << 56
}

/// Multiply-xorshift over the addresses' words and `rest`.
#[inline(always)]
fn hash_fields(src: &[u8; 16], dst: &[u8; 16], rest: u64) -> u64 {
    // Four-byte reads: both the key and the parsed packet hold the addresses 4-aligned, so
    // each is one load.
    let half = |bytes: &[u8; 16], at: usize| {
        u64::from(u32::from_le_bytes([
            bytes[at],
            bytes[at + 1],
            bytes[at + 2],
            bytes[at + 3],
        ]))
    };
    let word = |bytes: &[u8; 16], at: usize| half(bytes, at) | half(bytes, at + 4) << 32;
    let mut hash = 0u64;
    for word in [word(src, 0), word(src, 8), word(dst, 0), word(dst, 8), rest] {
        hash = (hash ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        hash ^= hash >> 29;
    }
    hash
}

/// One CPU's slot for the flows whose hash picks it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSlot {
    /// The hash of the flow this CPU last counted in the table from this slot; 0 for none.
    pub tracked: u64,
    pub pending: Admission,
}

/// The first packet of the last flow whose hash chose a slot and that was not in the table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// The flow's [`FlowKey::hash`]; 0 for none.
    pub hash: u64,
    pub first_seen_ns: u64,
    pub bytes: u32,
    pub tcp_flags: u32,
}

impl FlowStats {
    /// Adds `more`, later packets of the flow, to these counters: the verdict and rule are
    /// the later ones'.
    #[inline(always)]
    pub fn add(&mut self, more: &FlowStats) {
        self.packets += more.packets;
        self.bytes += more.bytes;
        self.last_seen_ns = more.last_seen_ns;
        self.tcp_flags |= more.tcp_flags;
        self.action = more.action;
        self.rule_id = more.rule_id;
    }
}

impl Admission {
    /// A packet of `len` bytes, TCP flags `tcp_flags`, of a flow of hash `hash` that is not in
    /// the table, seen at `now_ns`: the flow's first two packets when this is its second (the
    /// flow is to be inserted with them), else `None` (this one is held as the first).
    #[inline(always)]
    pub fn admit(&mut self, hash: u64, len: u32, tcp_flags: u8, now_ns: u64) -> Option<FlowStats> {
        if self.hash == hash {
            let first = *self;
            self.hash = 0;
            return Some(FlowStats {
                packets: 2,
                bytes: u64::from(first.bytes) + u64::from(len),
                first_seen_ns: first.first_seen_ns,
                last_seen_ns: now_ns,
                tcp_flags: first.tcp_flags as u8 | tcp_flags,
                ..FlowStats::default()
            });
        }
        *self = Admission {
            hash,
            first_seen_ns: now_ns,
            bytes: len,
            tcp_flags: u32::from(tcp_flags),
        };
        None
    }
}

/// A flow's counters: written by the CPU that receives the flow (one, when the NIC spreads
/// flows over queues by their 5-tuple).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub packets: u64,
    pub bytes: u64,
    /// CLOCK_MONOTONIC (coarse) nanoseconds of the first and last packet.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// The rule that decided the last packet; 0 for none (a default).
    pub rule_id: u32,
    /// The OR of the TCP flags seen.
    pub tcp_flags: u8,
    /// The XDP action of the last packet.
    pub action: u8,
    pub _pad: u16,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: `#[repr(C)]` integers and byte arrays with no padding (FlowKey: 32 + 3 x 2 +
    // 2 x 1 = 40 bytes; FlowStats: 4 x 8 + 4 + 1 + 1 + 2 = 40 bytes; Admission: 2 x 8 + 2 x 4
    // = 24 bytes; FlowSlot: 8 + 24 = 32 bytes); every bit pattern valid.
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowStats {}
    unsafe impl aya::Pod for Admission {}
    unsafe impl aya::Pod for FlowSlot {}
}

/// The VLAN id of a frame's outer tag, from its first 16 bytes; 0 untagged. The flow table
/// reads it from the frame rather than the parser keeping it: one more field in the parsed
/// packet cost every packet about 10 ns, flows or not.
#[inline(always)]
pub fn outer_vlan_id(header: &[u8; 16]) -> u16 {
    match u16::from_be_bytes([header[12], header[13]]) {
        ETH_P_8021Q | ETH_P_8021AD => u16::from_be_bytes([header[14], header[15]]) & 0x0fff,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    use crate::testing::FrameSpec;

    #[test]
    fn a_flow_is_admitted_with_its_second_packet_and_counts_both() {
        let mut slot = Admission::default();
        let (a, b) = (0x1234, 0x5678);
        assert_eq!(slot.admit(a, 100, 0x02, 10), None, "the first is held");
        // Another flow of the same slot takes it: a's first packet is forgotten.
        assert_eq!(slot.admit(b, 60, 0, 20), None);
        assert_eq!(slot.admit(a, 100, 0x02, 30), None);
        let admitted = slot.admit(a, 40, 0x10, 35).expect("the second admits");
        assert_eq!(
            (admitted.packets, admitted.bytes, admitted.first_seen_ns),
            (2, 140, 30)
        );
        assert_eq!((admitted.last_seen_ns, admitted.tcp_flags), (35, 0x12));
        assert_eq!(slot.hash, 0, "the slot is free again");
    }

    #[test]
    fn a_packet_hashes_as_its_key() {
        use crate::{frame::SliceFrame, parse::parse};
        for frame in [
            FrameSpec::ipv4_udp(1000, 53, 10).build(),
            FrameSpec::ipv6_tcp(40_000, 443, 0x02, 0).build(),
            FrameSpec::ipv4_udp(7, 9, 0)
                .with_vlans(&[ETH_P_8021Q])
                .build(),
        ] {
            let packet = parse(&SliceFrame::new(&frame));
            let vlan_id = outer_vlan_id(&frame[..16].try_into().unwrap());
            assert_eq!(
                FlowKey::hash_of(&packet, vlan_id),
                FlowKey::of(&packet, vlan_id).hash()
            );
        }
    }

    #[test]
    fn keys_differing_in_any_field_hash_apart() {
        let key = FlowKey {
            sport: 1000,
            dport: 53,
            ip_proto: 17,
            l3: 0,
            ..FlowKey::default()
        };
        let mut variants = Vec::new();
        for byte in 0..16 {
            let mut src = key;
            src.src[byte] = 1;
            variants.push(src);
            let mut dst = key;
            dst.dst[byte] = 1;
            variants.push(dst);
        }
        variants.extend([
            FlowKey { sport: 1001, ..key },
            FlowKey { dport: 54, ..key },
            FlowKey { vlan_id: 7, ..key },
            FlowKey { l3: 1, ..key },
            FlowKey { ip_proto: 6, ..key },
            key,
        ]);
        let mut hashes: Vec<u64> = variants.iter().map(FlowKey::hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), variants.len());
    }

    #[test]
    fn the_outer_vlan_id_is_read_from_the_first_tag() {
        let header = |frame: Vec<u8>| -> [u8; 16] { frame[..16].try_into().unwrap() };
        let tagged = FrameSpec::ipv4_udp(1, 2, 0).with_vlans(&[ETH_P_8021AD, ETH_P_8021Q]);
        let mut frame = tagged.build();
        frame[14..16].copy_from_slice(&0x2123u16.to_be_bytes()); // PCP 1, VID 0x123
        assert_eq!(outer_vlan_id(&header(frame)), 0x123);
        assert_eq!(
            outer_vlan_id(&header(FrameSpec::ipv4_udp(1, 2, 0).build())),
            0
        );
    }
}
