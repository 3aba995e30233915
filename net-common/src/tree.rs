//! The decision tree: how a rule set of several fields is classified at a cost that does not
//! grow with its rules.
//!
//! # Design
//! A packet is a point in a space of [`DIMS`] dimensions ([`Key`]): address family, each
//! 32-bit word of both addresses, protocol, both ports and ICMP type, each a small unsigned
//! integer. A rule is a box in that space ([`RuleBox`]): a prefix is a range on each word of
//! its address (its bits fix a prefix of every word they reach), a port range is a range, a
//! field the rule does not name is the whole axis. Classifying is finding the first box, by
//! rank, that holds the point.
//!
//! The tree cuts the space the way HiCuts does (Gupta and McKeown, "Packet Classification
//! using Hierarchical Intelligent Cuttings", 1999): a node cuts its region along one dimension
//! into 2^k equal parts, and each part is a child holding the rules that overlap it. Every
//! region is aligned on powers of two, so a child is found from the key's bits alone
//! ([`TreeNode::child`]): no comparison, one array lookup per level. A leaf holds a few rules,
//! by rank, and tests each in full ([`RuleBox::contains`]): the first that holds the key wins.
//! Because a leaf tests whole boxes, identical leaves are stored once.
//!
//! The tree is built by userspace at commit time; the kernel walks it. Both arrays exist
//! once per generation, like every other table (see [`crate::filter`]).

use crate::{
    filter::{icmp_key, proto_key},
    parse::Packet,
    rule::{Family, ICMP_TYPE_ANY, Match, PROTO_ANY, PROTO_ARP, PortRange, Prefix},
};

/// Dimensions of a [`Key`].
pub const DIMS: usize = 13;
/// Slots of a [`Key`]: a power of two, so that a dimension read from the tree can be masked
/// into range.
pub const KEY_SLOTS: usize = 16;

/// The dimensions. The first [`V4_DIMS`] are all an IPv4 or non-IP packet needs: the other
/// address words are `0..=MAX` in every rule that can match it.
pub mod dim {
    pub const SRC: usize = 0;
    pub const DST: usize = 1;
    pub const SPORT: usize = 2;
    pub const DPORT: usize = 3;
    pub const PROTO: usize = 4;
    pub const FAMILY: usize = 5;
    pub const ICMP: usize = 6;
    /// Words 1 to 3 of the source address (word 0 is [`SRC`]).
    pub const SRC_WORDS: usize = 7;
    /// Words 1 to 3 of the destination address.
    pub const DST_WORDS: usize = 10;
}

/// Dimensions that decide an IPv4 or non-IP packet.
pub const V4_DIMS: usize = 7;

/// The width in bits of each dimension's axis: every key fits, and every region is a
/// power-of-two block of it.
pub const DIM_BITS: [u8; DIMS] = [32, 32, 17, 17, 9, 2, 9, 32, 32, 32, 32, 32, 32];

/// The port key of a packet without ports (no full TCP or UDP header): past every port.
pub const NO_PORT: u32 = 1 << 16;
/// The family key: non-IP, IPv4, IPv6.
pub const FAMILY_NONE: u32 = 0;
pub const FAMILY_V4: u32 = 1;
pub const FAMILY_V6: u32 = 2;

/// A packet as a point: one value per dimension, the rest zero.
pub type Key = [u32; KEY_SLOTS];

/// The key of `packet`. Written as one array of every slot, not zeroes then stores: the BPF
/// backend zeroed the slots left over with a call to a byte-at-a-time `memset`, on every
/// packet the trees classify.
#[inline(always)]
pub fn key_of(packet: &Packet) -> Key {
    let family = match packet.addr_family {
        Family::Any => FAMILY_NONE,
        Family::Ipv4 => FAMILY_V4,
        Family::Ipv6 => FAMILY_V6,
    };
    let (sport, dport) = match packet.ports() {
        Some((sport, dport)) => (sport as u32, dport as u32),
        None => (NO_PORT, NO_PORT),
    };
    // Words 1 to 3 of an address: an IPv6 packet's only.
    let high = |addr: &[u8; 16], index: usize| {
        if family == FAMILY_V6 {
            word(addr, index)
        } else {
            0
        }
    };
    let key: Key = [
        word(&packet.src, 0),
        word(&packet.dst, 0),
        sport,
        dport,
        proto_key(packet),
        family,
        icmp_key(packet),
        high(&packet.src, 1),
        high(&packet.src, 2),
        high(&packet.src, 3),
        high(&packet.dst, 1),
        high(&packet.dst, 2),
        high(&packet.dst, 3),
        0,
        0,
        0,
    ];
    const _: () = assert!(
        dim::SRC == 0
            && dim::DST == 1
            && dim::SPORT == 2
            && dim::DPORT == 3
            && dim::PROTO == 4
            && dim::FAMILY == 5
            && dim::ICMP == 6
            && dim::SRC_WORDS == 7
            && dim::DST_WORDS == 10
            && DIMS == 13
            && KEY_SLOTS == 16
    );
    key
}

/// Word `index` (0 to 3) of an address, as a key holds it.
#[inline(always)]
fn word(addr: &[u8; 16], index: usize) -> u32 {
    u32::from_be_bytes([
        addr[index * 4],
        addr[index * 4 + 1],
        addr[index * 4 + 2],
        addr[index * 4 + 3],
    ])
}

/// A rule as a box: key `k` is inside when `k[d] - lo[d] <= span[d]` (wrapping) on every
/// dimension, that is `lo[d] <= k[d] <= lo[d] + span[d]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleBox {
    pub lo: [u32; DIMS],
    pub span: [u32; DIMS],
}

impl RuleBox {
    /// The box of a rule that matches nothing: a family no key has.
    pub const EMPTY: RuleBox = RuleBox {
        lo: [u32::MAX; DIMS],
        span: [0; DIMS],
    };

    /// The box of `matches`, or `None` when no packet can match it (a source of one family
    /// and a destination of the other).
    pub fn of(matches: &Match) -> Option<RuleBox> {
        let mut lo = [0; DIMS];
        let mut hi: [u32; DIMS] = core::array::from_fn(axis_max);
        let (family_lo, family_hi) = match (matches.src.family(), matches.dst.family()) {
            (Family::Any, Family::Any) => (FAMILY_NONE, FAMILY_V6),
            (Family::Any, family) | (family, Family::Any) => {
                let key = family_key(family);
                (key, key)
            }
            (src, dst) if src == dst => (family_key(src), family_key(src)),
            _ => return None,
        };
        lo[dim::FAMILY] = family_lo;
        hi[dim::FAMILY] = family_hi;
        prefix_ranges(&matches.src, dim::SRC, dim::SRC_WORDS, &mut lo, &mut hi);
        prefix_ranges(&matches.dst, dim::DST, dim::DST_WORDS, &mut lo, &mut hi);
        // A rule that names a port matches only packets with ports; one that names none
        // matches every packet, ports or not.
        if !(matches.sport.is_any() && matches.dport.is_any()) {
            (lo[dim::SPORT], hi[dim::SPORT]) = port_range(matches.sport);
            (lo[dim::DPORT], hi[dim::DPORT]) = port_range(matches.dport);
        }
        match matches.proto {
            PROTO_ANY => {}
            PROTO_ARP => (lo[dim::PROTO], hi[dim::PROTO]) = (256, 256),
            proto => (lo[dim::PROTO], hi[dim::PROTO]) = (proto as u32, proto as u32),
        }
        if matches.icmp_type != ICMP_TYPE_ANY {
            let icmp_type = matches.icmp_type as u32;
            (lo[dim::ICMP], hi[dim::ICMP]) = (icmp_type, icmp_type);
        }
        Some(RuleBox {
            lo,
            span: core::array::from_fn(|d| hi[d] - lo[d]),
        })
    }

    /// The highest key inside the box on dimension `d`.
    #[inline(always)]
    pub fn hi(&self, d: usize) -> u32 {
        self.lo[d].wrapping_add(self.span[d])
    }

    /// Whether `key` is inside. An IPv4 or non-IP key needs only the first [`V4_DIMS`]
    /// dimensions: every box that holds its family is `0..=MAX` on the other address words.
    #[inline(always)]
    pub fn contains(&self, key: &Key) -> bool {
        let dims = if key[dim::FAMILY] == FAMILY_V6 {
            DIMS
        } else {
            V4_DIMS
        };
        let mut d = 0;
        while d < DIMS {
            if d >= dims {
                break;
            }
            if key[d].wrapping_sub(self.lo[d]) > self.span[d] {
                return false;
            }
            d += 1;
        }
        true
    }
}

/// The highest key of dimension `d`'s axis.
#[inline(always)]
pub fn axis_max(d: usize) -> u32 {
    match DIM_BITS[d] {
        32 => u32::MAX,
        bits => (1 << bits) - 1,
    }
}

fn family_key(family: Family) -> u32 {
    match family {
        Family::Any => FAMILY_NONE,
        Family::Ipv4 => FAMILY_V4,
        Family::Ipv6 => FAMILY_V6,
    }
}

/// The range of a named port field; `any` is every port, but not "no port".
fn port_range(range: PortRange) -> (u32, u32) {
    (range.first as u32, range.last as u32)
}

/// Each address word's range under `prefix`: its bits fix the top of each word they reach.
fn prefix_ranges(
    prefix: &Prefix,
    first: usize,
    rest: usize,
    lo: &mut [u32; DIMS],
    hi: &mut [u32; DIMS],
) {
    let words = match prefix.family() {
        Family::Any => return,
        Family::Ipv4 => 1,
        Family::Ipv6 => 4,
    };
    for index in 0..words {
        let d = if index == 0 { first } else { rest + index - 1 };
        let fixed = (prefix.len as i32 - index as i32 * 32).clamp(0, 32) as u32;
        let word = word(&prefix.addr, index);
        let free = if fixed == 0 {
            u32::MAX
        } else {
            u32::MAX.checked_shr(fixed).unwrap_or(0)
        };
        lo[d] = word & !free;
        hi[d] = word | free;
    }
}

/// A node of the tree: an inner node cuts its region along `dim` into `mask + 1` children at
/// `base..`; a leaf holds the `count` ranks at `base..` of the leaf-rank array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeNode {
    pub base: u32,
    /// An inner node's `children - 1`; a leaf's rank count.
    pub mask_or_count: u32,
    pub dim: u8,
    pub shift: u8,
    /// [`TreeNode::LEAF`] or [`TreeNode::INNER`].
    pub kind: u8,
    pub _pad: u8,
}

impl TreeNode {
    pub const INNER: u8 = 0;
    pub const LEAF: u8 = 1;

    pub fn leaf(base: u32, count: u32) -> TreeNode {
        TreeNode {
            base,
            mask_or_count: count,
            kind: Self::LEAF,
            ..TreeNode::default()
        }
    }

    pub fn inner(base: u32, dim: usize, shift: u32, cut_bits: u32) -> TreeNode {
        TreeNode {
            base,
            mask_or_count: (1 << cut_bits) - 1,
            dim: dim as u8,
            shift: shift as u8,
            kind: Self::INNER,
            _pad: 0,
        }
    }

    #[inline(always)]
    pub fn is_leaf(&self) -> bool {
        self.kind == Self::LEAF
    }

    /// An inner node's child that holds `key`, as an index into the node array.
    #[inline(always)]
    pub fn child(&self, key: &Key) -> u32 {
        let value = key[self.dim as usize & (KEY_SLOTS - 1)];
        let part = value.checked_shr(self.shift as u32).unwrap_or(0) & self.mask_or_count;
        self.base.wrapping_add(part)
    }
}

/// Levels the kernel walks at most; a deeper tree is not used.
pub const MAX_DEPTH: usize = 24;
/// Ranks a leaf holds at most; a tree with a larger leaf is not used.
pub const MAX_LEAF: usize = 64;
/// Trees at most: a packet walks each.
pub const MAX_TREES: usize = 8;
/// Node slots of one generation in `TREE_NODES`.
pub const NODES_PER_GENERATION: u32 = 1 << 19;
/// Rank slots of one generation in `LEAF_RANKS`.
pub const LEAF_RANKS_PER_GENERATION: u32 = 1 << 18;

/// The `TREE_NODES` index of node `node` of `generation`.
#[inline(always)]
pub fn node_index(generation: u32, node: u32) -> u32 {
    generation * NODES_PER_GENERATION + node
}

/// The `LEAF_RANKS` index of slot `slot` of `generation`.
#[inline(always)]
pub fn leaf_rank_index(generation: u32, slot: u32) -> u32 {
    generation * LEAF_RANKS_PER_GENERATION + slot
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: `#[repr(C)]` of integers with explicit padding; every bit pattern is valid.
    unsafe impl aya::Pod for RuleBox {}
    unsafe impl aya::Pod for TreeNode {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(family: Family, addr: [u8; 16], len: u8) -> Prefix {
        Prefix::new(family, addr, len)
    }

    #[test]
    fn a_prefix_fixes_the_top_bits_of_each_word_it_reaches() {
        let mut v6 = [0; 16];
        v6[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01]);
        let rule = RuleBox::of(&Match {
            src: prefix(Family::Ipv6, v6, 48),
            ..Match::ANY
        })
        .expect("a box");
        assert_eq!((rule.lo[dim::SRC], rule.span[dim::SRC]), (0x2001_0db8, 0));
        assert_eq!(
            (rule.lo[dim::SRC_WORDS], rule.span[dim::SRC_WORDS]),
            (0x0001_0000, 0xffff)
        );
        assert_eq!(rule.span[dim::SRC_WORDS + 1], u32::MAX);
        assert_eq!(
            (rule.lo[dim::FAMILY], rule.span[dim::FAMILY]),
            (FAMILY_V6, 0)
        );
        assert_eq!(rule.span[dim::DST], u32::MAX);

        let mut v4 = [0; 16];
        v4[..4].copy_from_slice(&[198, 18, 7, 9]);
        let rule = RuleBox::of(&Match {
            dst: prefix(Family::Ipv4, v4, 24),
            ..Match::ANY
        })
        .expect("a box");
        assert_eq!(
            (rule.lo[dim::DST], rule.hi(dim::DST)),
            (0xc612_0700, 0xc612_07ff)
        );
        assert_eq!(
            (rule.lo[dim::FAMILY], rule.span[dim::FAMILY]),
            (FAMILY_V4, 0)
        );
        assert!((0..3).all(|word| rule.span[dim::DST_WORDS + word] == u32::MAX));
    }

    #[test]
    fn a_port_is_named_with_the_other_or_no_port_is() {
        let dport = RuleBox::of(&Match {
            proto: 17,
            dport: PortRange {
                first: 53,
                last: 53,
            },
            ..Match::ANY
        })
        .expect("a box");
        assert_eq!((dport.lo[dim::DPORT], dport.hi(dim::DPORT)), (53, 53));
        // `any` source port, but a port: a packet without ports is outside.
        assert_eq!((dport.lo[dim::SPORT], dport.hi(dim::SPORT)), (0, 65_535));
        let none = RuleBox::of(&Match {
            proto: 17,
            ..Match::ANY
        })
        .expect("a box");
        assert!(none.lo[dim::SPORT] == 0 && none.hi(dim::SPORT) >= NO_PORT);
        assert!(none.lo[dim::DPORT] == 0 && none.hi(dim::DPORT) >= NO_PORT);
        assert_eq!((none.lo[dim::PROTO], none.span[dim::PROTO]), (17, 0));
    }

    #[test]
    fn addresses_of_two_families_match_nothing() {
        let matches = Match {
            src: prefix(Family::Ipv4, [0; 16], 8),
            dst: prefix(Family::Ipv6, [0; 16], 8),
            ..Match::ANY
        };
        assert_eq!(RuleBox::of(&matches), None);
        // And the box of a rule that matches nothing holds no key.
        assert!(!RuleBox::EMPTY.contains(&[0; KEY_SLOTS]));
    }

    #[test]
    fn a_child_is_found_from_the_bits_below_its_parent_region() {
        let node = TreeNode::inner(100, dim::DPORT, 13, 4);
        let mut key = [0; KEY_SLOTS];
        key[dim::DPORT] = 443;
        assert_eq!(node.child(&key), 100);
        key[dim::DPORT] = NO_PORT;
        // Bits 13..17 of 65,536: part 8 of 16.
        assert_eq!(node.child(&key), 108);
    }
}
