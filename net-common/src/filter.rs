//! How a rule set is laid out in the kernel's maps: the tables the XDP program classifies with.
//!
//! # Design: a bit-vector search
//! Rules are ranked by (priority, id); rank `r` is bit `r` of a [`RuleBitmap`]. Each packet
//! field (source, destination, protocol, source port, destination port, ICMP type) is looked up
//! once, in a table built for it, and gives the bitmap of the rules that field lets through:
//! LPM tries for the addresses, arrays for protocol and ICMP type, a binary search over
//! elementary port intervals for the ports. The AND of those bitmaps holds the matching rules,
//! and its lowest set bit is the winner. A summary word per 64 words lets the search skip
//! empty stretches, so the cost grows with the words that hold candidates, not with the rules.
//! A port field no rule names is not looked up at all.
//!
//! # Generations
//! Every table exists twice, for generations 0 and 1. The program reads the active generation
//! once per packet ([`FilterState`]); an update writes the whole inactive generation, then flips
//! the active one with a single map write. A packet is classified against the old set or the
//! new, never a mix, and an update interrupted before the flip leaves the old set in force.

use crate::{
    parse::{L3, Packet, Transport},
    rule::MAX_RULES,
};

/// 64-bit words in a [`RuleBitmap`].
pub const BITMAP_WORDS: usize = MAX_RULES / 64;
/// Summary words: one bit per bitmap word.
pub const SUMMARY_WORDS: usize = BITMAP_WORDS.div_ceil(64);
/// Generations of tables: the active one and the one being written.
pub const GENERATIONS: usize = 2;

// The hash maps and tries hold as many entries as a rule set needs, and both generations are
// full at once while a commit writes one and packets still read the other: each map is sized
// for two generations of the worst rule set of `MAX_RULES` rules, so that no valid commit
// can find a map full. (Arrays are indexed by generation and need no such bound.)

/// Entries of each prefix trie (`SRC_V4`, `DST_V4`, `SRC_V6`, `DST_V6`), per generation: a
/// distinct prefix of that field and family per rule, and the root, always written.
pub const TRIE_ENTRIES: u32 = GENERATIONS as u32 * (MAX_RULES as u32 + 1);
/// Entries of each host table (`HOSTS_V4`, `HOSTS_V6`), per generation: its key holds the
/// address field, so one rule can need two, a source host and a destination host.
pub const HOST_ENTRIES: u32 = GENERATIONS as u32 * 2 * MAX_RULES as u32;
/// Entries of `PORT_BITMAPS`, per generation: each port field's elementary intervals.
pub const PORT_BITMAP_ENTRIES: u32 = GENERATIONS as u32 * 2 * MAX_PORT_INTERVALS as u32;

/// A set of rules, by rank.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleBitmap {
    /// Bit `w` is set when `words[w]` is not zero.
    pub summary: [u64; SUMMARY_WORDS],
    pub words: [u64; BITMAP_WORDS],
}

impl Default for RuleBitmap {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl RuleBitmap {
    pub const EMPTY: RuleBitmap = RuleBitmap {
        summary: [0; SUMMARY_WORDS],
        words: [0; BITMAP_WORDS],
    };

    /// Adds the rule of rank `rank`.
    pub fn insert(&mut self, rank: usize) {
        let word = rank / 64;
        self.words[word] |= 1 << (rank % 64);
        self.summary[word / 64] |= 1 << (word % 64);
    }

    /// Removes the rule of rank `rank`.
    pub fn remove(&mut self, rank: usize) {
        let word = rank / 64;
        self.words[word] &= !(1 << (rank % 64));
        if self.words[word] == 0 {
            self.summary[word / 64] &= !(1 << (word % 64));
        }
    }

    pub fn contains(&self, rank: usize) -> bool {
        self.words[rank / 64] & (1 << (rank % 64)) != 0
    }
}

/// Which fields some rule names. A port field no rule names is not looked up; the others are
/// cheap enough, and a single kind of pointer per field keeps the verifier's work small.
pub mod fields {
    pub const SRC: u32 = 1 << 0;
    pub const DST: u32 = 1 << 1;
    pub const PROTO: u32 = 1 << 2;
    pub const SPORT: u32 = 1 << 3;
    pub const DPORT: u32 = 1 << 4;
    pub const ICMP_TYPE: u32 = 1 << 5;
    /// The fields above: which a rule set names.
    pub const NAMED: u32 = (1 << 6) - 1;

    /// Set when the prefix trie of address field `field` ([`super::ADDR_SRC`] or
    /// [`super::ADDR_DST`]) and family holds a prefix shorter than a host and longer than
    /// /0. Only then does an address missing from the host table need the trie: otherwise
    /// the root's bitmap is the answer.
    #[inline(always)]
    pub const fn nets(field: u32, ipv6: bool) -> u32 {
        1 << (6 + field * 2 + ipv6 as u32)
    }
}

/// The active generation: the single value of the `FILTER_STATE` map, written last.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterState {
    pub generation: u32,
}

/// One generation's settings: the `FILTER_CONFIG` map holds one per generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterConfig {
    /// Rules in this generation's rule table, by rank.
    pub rule_count: u32,
    /// [`fields`] named by at least one rule.
    pub fields: u32,
    /// [`crate::rule::Action`] for packets no rule matches.
    pub policy: u32,
    /// [`crate::rule::Fragments`] as its `u32` value.
    pub fragments: u32,
    /// The id the next new rule gets; carried from generation to generation.
    pub next_rule_id: u32,
    /// [`crate::rule::Malformed`] as its `u32` value.
    pub malformed: u32,
    /// CLOCK_MONOTONIC nanoseconds when this generation was made active.
    pub activated_ns: u64,
    /// Decision trees in `TREE_NODES` (see [`crate::tree`]); 0 when the set is classified by
    /// the bit-vector search.
    pub trees: u32,
    /// Each tree's root node.
    pub tree_roots: [u32; crate::tree::MAX_TREES],
    pub _pad: u32,
}

/// Elementary port intervals: interval `i` is `starts[i] ..= starts[i + 1] - 1`. The bitmap of
/// interval `i` is in `PORT_BITMAPS` under [`port_bitmap_key`].
pub const MAX_PORT_INTERVALS: usize = 2 * MAX_RULES + 1;
/// Slots in [`PortIntervals::starts`]: a power of two, for a search without branches.
pub const PORT_SEARCH_SLOTS: usize = MAX_PORT_INTERVALS.next_power_of_two();
/// The start that fills the unused slots: past every port.
pub const PORT_PAST_END: u32 = 1 << 16;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortIntervals {
    /// `starts[0]` is 0; the slots past the last interval hold [`PORT_PAST_END`].
    pub starts: [u32; PORT_SEARCH_SLOTS],
}

impl PortIntervals {
    /// The index of the interval holding `port`: the last slot whose start is `<= port`.
    ///
    /// A branch-free binary search: the verifier walks it once instead of once per path, and
    /// the index it builds is bounded by a mask it can see. `opaque` hides the comparison from
    /// the optimiser, which would otherwise turn it back into a branch; the kernel passes its
    /// `read_volatile` barrier, the host an identity.
    #[inline(always)]
    pub fn find(&self, port: u16, opaque: impl Fn(i64) -> i64) -> usize {
        let mut base = 0;
        let mut step = PORT_SEARCH_SLOTS / 2;
        while step > 0 {
            let start = self.starts[(base + step) & (PORT_SEARCH_SLOTS - 1)];
            // Negative exactly when start <= port; the arithmetic shift makes that all ones.
            let below = opaque(start as i64 - port as i64 - 1) >> 63;
            base += step & below as usize;
            step /= 2;
        }
        base
    }
}

/// Port field: source or destination.
pub const PORT_SRC: u32 = 0;
pub const PORT_DST: u32 = 1;

/// The `PORT_INTERVALS` index of one generation's source or destination intervals.
#[inline(always)]
pub fn port_intervals_index(generation: u32, field: u32) -> u32 {
    generation * 2 + field
}

/// The `PORT_BITMAPS` key of an interval's bitmap.
#[inline(always)]
pub fn port_bitmap_key(generation: u32, field: u32, interval: u32) -> u32 {
    (generation << 31) | (field << 30) | interval
}

/// The `BITMAPS` array: per generation, the protocol bitmaps, the ICMP bitmaps, then a few
/// shared by every packet of a kind. One map, so that the verifier sees one kind of pointer.
pub mod slot {
    use super::{ICMP_KEYS, PROTO_KEYS};

    /// Plus [`super::proto_key`].
    pub const PROTO: u32 = 0;
    /// Plus [`super::icmp_key`].
    pub const ICMP: u32 = PROTO + PROTO_KEYS;
    /// Every rule: stands for a port field no rule names.
    pub const ALL: u32 = ICMP + ICMP_KEYS;
    /// Rules with source `any`: the source bitmap of a frame that is not IP.
    pub const SRC_ANY: u32 = ALL + 1;
    /// Rules with destination `any`.
    pub const DST_ANY: u32 = ALL + 2;
    /// Rules with no source port: the source-port bitmap of a packet without ports.
    pub const SPORT_ANY: u32 = ALL + 3;
    /// Rules with no destination port.
    pub const DPORT_ANY: u32 = ALL + 4;
    /// The root of an address field's prefix trie: rules with the field `any`, or a /0 of
    /// the family.
    #[inline(always)]
    pub const fn root(field: u32, ipv6: bool) -> u32 {
        ALL + 5 + field * 2 + ipv6 as u32
    }
    pub const PER_GENERATION: u32 = ALL + 9;
}

/// The `BITMAPS` index of `slot` in `generation`.
#[inline(always)]
pub fn bitmap_index(generation: u32, slot: u32) -> u32 {
    generation * slot::PER_GENERATION + slot
}

/// Protocol keys: IP protocol numbers, then these.
pub const PROTO_KEY_ARP: u32 = 256;
pub const PROTO_KEY_OTHER: u32 = 257;
pub const PROTO_KEYS: u32 = 258;

/// The protocol key of a packet: its IP protocol, or ARP, or other.
#[inline(always)]
pub fn proto_key(packet: &Packet) -> u32 {
    match packet.l3 {
        L3::Ipv4 | L3::Ipv6 => packet.ip_proto as u32,
        L3::Arp => PROTO_KEY_ARP,
        L3::Other => PROTO_KEY_OTHER,
    }
}

/// ICMP keys: the ICMP or ICMPv6 type, then "no ICMP header".
pub const ICMP_KEY_NONE: u32 = 256;
pub const ICMP_KEYS: u32 = ICMP_KEY_NONE + 1;

/// The ICMP key of a packet.
#[inline(always)]
pub fn icmp_key(packet: &Packet) -> u32 {
    match packet.transport() {
        Transport::Icmp { icmp_type, .. } => icmp_type as u32,
        _ => ICMP_KEY_NONE,
    }
}

/// Address blocks: the first [`NET_BLOCK_BITS_V4`] (IPv4) or [`NET_BLOCK_BITS_V6`] (IPv6) bits
/// of an address. A block no prefix of a field touches can only get the root's bitmap, which
/// the fast path then takes with no hash or trie lookup: most addresses a blocklist does not
/// list, at any size.
pub const NET_BLOCK_BITS_V4: u32 = 16;
pub const NET_BLOCK_BITS_V6: u32 = 20;
/// Words of a [`NetBlocks`]: one bit per IPv6 block, the larger set.
pub const NET_BLOCK_WORDS: usize = 1 << (NET_BLOCK_BITS_V6 - 6);

/// Which blocks some prefix of one address field and family touches. The `NET_BLOCKS` map
/// holds one per generation, field and family, at [`net_blocks_index`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetBlocks {
    pub words: [u64; NET_BLOCK_WORDS],
}

#[inline(always)]
pub fn net_blocks_index(generation: u32, field: u32, ipv6: bool) -> u32 {
    generation * 4 + field * 2 + ipv6 as u32
}

/// The block of `addr`.
#[inline(always)]
pub fn net_block(addr: &[u8; 16], ipv6: bool) -> usize {
    let top = u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]]);
    let bits = if ipv6 {
        NET_BLOCK_BITS_V6
    } else {
        NET_BLOCK_BITS_V4
    };
    (top >> (32 - bits)) as usize
}

impl NetBlocks {
    #[inline(always)]
    pub fn contains(&self, block: usize) -> bool {
        match self.words.get(block / 64) {
            Some(word) => word & (1 << (block % 64)) != 0,
            None => true,
        }
    }
}

/// Address fields, as host-table keys and [`fields::nets`] name them.
pub const ADDR_SRC: u32 = 0;
pub const ADDR_DST: u32 = 1;

/// Host-table key data: generation, address field, two zero bytes, address. Host prefixes
/// (/32, /128) are found with one hash lookup, as xdp-filter finds its addresses, before any
/// trie walk. Keys are a multiple of 4 bytes long, which the kernel hashes word by word.
pub type Ipv4HostKey = [u8; 8];
pub type Ipv6HostKey = [u8; 20];

#[inline(always)]
pub fn ipv4_host_key(generation: u32, field: u32, addr: &[u8; 16]) -> Ipv4HostKey {
    [
        generation as u8,
        field as u8,
        0,
        0,
        addr[0],
        addr[1],
        addr[2],
        addr[3],
    ]
}

#[inline(always)]
pub fn ipv6_host_key(generation: u32, field: u32, addr: &[u8; 16]) -> Ipv6HostKey {
    let mut key = [0; 20];
    key[0] = generation as u8;
    key[1] = field as u8;
    let mut index = 0;
    while index < 16 {
        key[index + 4] = addr[index];
        index += 1;
    }
    key
}

/// LPM trie key data: the generation byte, then the address. The prefix length counts the
/// generation byte's 8 bits.
pub type Ipv4Key = [u8; 5];
pub type Ipv6Key = [u8; 17];

#[inline(always)]
pub fn ipv4_key(generation: u32, addr: &[u8; 16]) -> Ipv4Key {
    [generation as u8, addr[0], addr[1], addr[2], addr[3]]
}

#[inline(always)]
pub fn ipv6_key(generation: u32, addr: &[u8; 16]) -> Ipv6Key {
    let mut key = [0; 17];
    key[0] = generation as u8;
    let mut index = 0;
    while index < 16 {
        key[index + 1] = addr[index];
        index += 1;
    }
    key
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each is `#[repr(C)]` of integers and integer arrays, with explicit padding
    // fields where alignment would leave a gap; every bit pattern is valid.
    unsafe impl aya::Pod for RuleBitmap {}
    unsafe impl aya::Pod for FilterState {}
    unsafe impl aya::Pod for FilterConfig {}
    unsafe impl aya::Pod for PortIntervals {}
    unsafe impl aya::Pod for NetBlocks {}
}
