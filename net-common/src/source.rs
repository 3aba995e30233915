//! The source table: packets and bytes by source prefix (IPv4 /24, IPv6 /64), passed and
//! dropped, in a fixed number of slots per CPU. It is what shows dropped traffic: a flood of
//! spoofed sources costs one slot write per packet here, never a flow entry.
//!
//! Each CPU keeps the heaviest prefixes it sees, Space-Saving style (Metwally, Agrawal and El
//! Abbadi, ICDT 2005), in two-choice hashed slots: a prefix counts in the slot that holds it
//! at either of its two positions, or takes the lighter of the two, and inherits that slot's
//! weight as [`SourceSlot::inherited`]. So a prefix that sends more than a slot's share of
//! the traffic keeps its slot, and what it sent before taking it is bounded by `inherited`.
//!
//! ```
//! use net_common::{
//!     frame::SliceFrame,
//!     parse::parse,
//!     source::{SourceKey, slots_of},
//!     testing::FrameSpec,
//! };
//!
//! let frame = FrameSpec::ipv4_udp(53, 53, 0).build();
//! let key = SourceKey::of(&parse(&SliceFrame::new(&frame)));
//! assert_eq!(key.len(), 24);
//! let (first, second) = slots_of(&key);
//! assert_ne!(first, second);
//! ```

use crate::{parse::Packet, rule::Family, stats::Counter};

/// Slots per CPU: 1,024 x 64 bytes, 64 KiB a CPU, which stays in a core's cache.
pub const SOURCE_SLOTS: u32 = 1024;
/// The prefix lengths sources are counted by: a spoofer varies the host bits, and one /24 or
/// /64 is what an operator blocks.
pub const SOURCE_V4_PREFIX_LEN: u8 = 24;
pub const SOURCE_V6_PREFIX_LEN: u8 = 64;

/// A source prefix: the leading bytes of the source address ([`Family`] as its `u8` value);
/// family `Any` (0) counts every packet without an address (non-IP, non-ARP) together.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    /// The prefix's bytes, in order; IPv4 uses the first three.
    pub prefix: [u8; 8],
    /// A whole word with the padding after it: a slot written with a byte here would have
    /// the zeros after it written by a byte-wise `memset` call in the XDP program.
    pub family: u32,
    pub _pad: u32,
}

impl SourceKey {
    /// The source prefix of `packet`.
    #[inline(always)]
    pub fn of(packet: &Packet) -> SourceKey {
        let src = &packet.src;
        let family = u32::from(packet.addr_family as u8);
        // Whole bytes of both prefix lengths: written byte by byte, which the eBPF compiler
        // turns into plain stores.
        let prefix = match packet.addr_family {
            Family::Ipv4 => [src[0], src[1], src[2], 0, 0, 0, 0, 0],
            Family::Ipv6 => [
                src[0], src[1], src[2], src[3], src[4], src[5], src[6], src[7],
            ],
            Family::Any => [0; 8],
        };
        SourceKey {
            prefix,
            family,
            _pad: 0,
        }
    }

    pub fn family(&self) -> Family {
        match self.family {
            4 => Family::Ipv4,
            6 => Family::Ipv6,
            _ => Family::Any,
        }
    }

    /// The prefix length in bits; 0 for the no-address key.
    pub fn len(&self) -> u8 {
        match self.family() {
            Family::Ipv4 => SOURCE_V4_PREFIX_LEN,
            Family::Ipv6 => SOURCE_V6_PREFIX_LEN,
            Family::Any => 0,
        }
    }

    /// True for the no-address key.
    pub fn is_empty(&self) -> bool {
        self.family() == Family::Any
    }

    /// The key as one word, for hashing and comparing in a few instructions.
    #[inline(always)]
    fn word(&self) -> u64 {
        u64::from_le_bytes(self.prefix) ^ u64::from(self.family)
    }
}

/// The two slots `key` may take: from one multiplicative hash, so each costs a few
/// instructions and no helper call.
#[inline(always)]
pub fn slots_of(key: &SourceKey) -> (u32, u32) {
    const SLOT_BITS: u32 = SOURCE_SLOTS.trailing_zeros();
    let hash = key.word().wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let first = (hash >> (64 - SLOT_BITS)) as u32;
    let mut second = (hash >> (64 - 2 * SLOT_BITS)) as u32 & (SOURCE_SLOTS - 1);
    if second == first {
        second ^= 1;
    }
    (first, second)
}

/// One slot of one CPU: a prefix and what it sent while holding the slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceSlot {
    pub key: SourceKey,
    /// Packets netxdp dropped, and those it gave any other verdict.
    pub dropped: Counter,
    pub passed: Counter,
    /// Packets counted in the slot before this prefix took it: the prefix sent at most this
    /// many more on this CPU than `dropped` and `passed` say.
    pub inherited: u64,
    /// CLOCK_MONOTONIC (coarse) nanoseconds of the last packet.
    pub last_seen_ns: u64,
}

impl SourceSlot {
    /// What the slot weighs against a newcomer: every packet counted in it.
    #[inline(always)]
    pub fn weight(&self) -> u64 {
        self.inherited + self.dropped.packets + self.passed.packets
    }

    /// Counts a packet of `len` bytes, dropped or not, seen at `now_ns`.
    #[inline(always)]
    fn count(&mut self, dropped: bool, len: u32, now_ns: u64) {
        if dropped {
            self.dropped.add(u64::from(len));
        } else {
            self.passed.add(u64::from(len));
        }
        self.last_seen_ns = now_ns;
    }

    /// Gives the slot to `key`, which inherits its weight, for its first packet. The counters
    /// are computed rather than one of them zeroed: the BPF backend zeroed it with a call to
    /// a byte-at-a-time `memset`, on every packet of a spoofed flood.
    #[inline(always)]
    fn take(&mut self, key: SourceKey, dropped: bool, len: u32, now_ns: u64) {
        let (in_dropped, in_passed) = (u64::from(dropped), u64::from(!dropped));
        let bytes = u64::from(len);
        *self = SourceSlot {
            key,
            dropped: Counter {
                packets: in_dropped,
                bytes: in_dropped * bytes,
            },
            passed: Counter {
                packets: in_passed,
                bytes: in_passed * bytes,
            },
            inherited: self.weight(),
            last_seen_ns: now_ns,
        };
    }
}

/// Counts a packet from `key` in one CPU's table, of which `first` and `second` are the
/// slots [`slots_of`] gives: in the one that holds `key`, else in the lighter one, which
/// `key` takes. (An empty slot holds the no-address key with no weight: that key takes it
/// without a change, the others for nothing.)
#[inline(always)]
pub fn count_source(
    first: &mut SourceSlot,
    second: &mut SourceSlot,
    key: SourceKey,
    dropped: bool,
    len: u32,
    now_ns: u64,
) {
    if first.key.word() == key.word() {
        first.count(dropped, len, now_ns);
    } else if second.key.word() == key.word() {
        second.count(dropped, len, now_ns);
    } else if first.weight() <= second.weight() {
        first.take(key, dropped, len, now_ns);
    } else {
        second.take(key, dropped, len, now_ns);
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: `#[repr(C)]` integers and byte arrays with no padding (SourceKey: 8 + 4 + 4 =
    // 16 bytes; SourceSlot: 16 + 2 x 16 + 2 x 8 = 64 bytes); every bit pattern valid.
    unsafe impl aya::Pod for SourceKey {}
    unsafe impl aya::Pod for SourceSlot {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{frame::SliceFrame, parse::parse, testing::FrameSpec};

    fn key_of(frame: &[u8]) -> SourceKey {
        SourceKey::of(&parse(&SliceFrame::new(frame)))
    }

    #[test]
    fn sources_of_one_prefix_share_a_key_and_others_do_not() {
        let v4 = |src: [u8; 4]| {
            let mut frame = FrameSpec::ipv4_udp(1, 2, 0).build();
            frame[26..30].copy_from_slice(&src);
            key_of(&frame)
        };
        assert_eq!(v4([198, 19, 7, 1]), v4([198, 19, 7, 254]));
        assert_ne!(v4([198, 19, 7, 1]), v4([198, 19, 8, 1]));
        assert_eq!(v4([198, 19, 7, 1]).prefix, [198, 19, 7, 0, 0, 0, 0, 0]);
        let v6 = key_of(&FrameSpec::ipv6_tcp(1, 2, 0x02, 0).build());
        assert_eq!((v6.family(), v6.len()), (Family::Ipv6, 64));
        assert_eq!(v6.prefix, [0xfd, 0, 0, 0, 0, 0, 0, 0]);
        let arp_free = key_of(&[0u8; 60]);
        assert!(arp_free.is_empty());
    }

    #[test]
    fn a_heavy_prefix_keeps_its_slot_against_a_stream_of_newcomers() {
        // One CPU's table, driven as the kernel drives it.
        let mut table = [SourceSlot::default(); SOURCE_SLOTS as usize];
        let mut count = |key: SourceKey| {
            let (first, second) = slots_of(&key);
            let [first, second] = table
                .get_disjoint_mut([first as usize, second as usize])
                .expect("two distinct slots");
            count_source(first, second, key, true, 100, 0);
        };
        let heavy = SourceKey {
            prefix: [203, 0, 113, 0, 0, 0, 0, 0],
            family: 4,
            _pad: 0,
        };
        let mut state = 1u64;
        for round in 0..200_000u32 {
            if round % 10 == 0 {
                count(heavy);
            }
            // A spoofed source: a random /24.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            count(SourceKey {
                prefix: [bytes[0], bytes[1], bytes[2], 0, 0, 0, 0, 0],
                family: 4,
                _pad: 0,
            });
        }
        let held: alloc::vec::Vec<&SourceSlot> =
            table.iter().filter(|slot| slot.key == heavy).collect();
        assert_eq!(held.len(), 1, "the heavy prefix holds one slot");
        // It sent 20,000 packets; it took its slot with its first and never lost it.
        assert_eq!(held[0].dropped.packets, 20_000);
        assert_eq!(held[0].inherited, 0);
    }
}
