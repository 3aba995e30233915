//! Seeded generators of rule sets, and of frames that hit them: for the filter's benchmarks
//! and differential tests. Never part of the kernel program.
//!
//! - [`generate`] makes the benchmark shapes ([`Shape`]): exact source addresses, a blocklist
//!   of source prefixes, or random AND-combinations of every field.
//! - [`random_rules`] makes rule sets for differential tests, drawn from small pools (the
//!   `POOL_*` constants) so that rules overlap heavily; [`PoolFrameGenerator`] draws frames
//!   from the same pools, so that a good share of them match some rule.
//! - [`bench_frames`] gives, for a rule set, frames that hit it and frames that miss it.
//!
//! Every generated rule is valid: netxdp accepts its [`Match`] unchanged (net-user's
//! `filter::spec::build_match` decides, and its unit tests hold every shape and
//! [`random_rules`] to it). The rules of one set have pairwise distinct [`Match`]es.
//! Generation is deterministic by seed, and prefix-stable: the first `n` rules of
//! `generate(shape, seed, m)` are `generate(shape, seed, n)` for every `n <= m`.
//!
//! ```
//! use net_common::rulegen::{Shape, bench_frames, generate, ranked};
//! let rules = generate(Shape::Blocklist, 7, 100);
//! assert_eq!(rules.len(), 100);
//! let frames = bench_frames(&rules);
//! assert!(frames.iter().any(|frame| frame.kind.is_hit()));
//! assert_eq!(ranked(&rules)[0].id, 1);
//! ```

use alloc::{collections::BTreeSet, vec::Vec};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::frame::SliceFrame;
use crate::parse::{
    ETH_P_8021AD, ETH_P_8021Q, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, parse,
};
use crate::rule::{
    Action, Family, Fragments, ICMP_TYPE_ANY, Malformed, Match, PROTO_ANY, PROTO_ARP, PortRange,
    Prefix, Reason, Rule, classify, mask,
};
use crate::testing::{
    Body, FrameSpec, Transport, damage, evade, random_chain_length, random_extension,
};

/// The priority of every rule of the exact and blocklist shapes: `netxdp`'s default
/// (`DEFAULT_PRIORITY` in net-user), so that rules rank in the order generated.
pub const PRIORITY: u32 = 1000;

/// A rule set's shape, as the benchmarks name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// Drop from one source address: /32 (IPv4) and /128 (IPv6), alternating, from
    /// 198.18.0.0/15 and fd00::/8. The only shape xdp-filter can express.
    Exact,
    /// Drop from source prefixes of mixed lengths, /8 to /32 and /32 to /128, alternating
    /// families, like a threat feed: mostly host addresses and /24s (/128s and /48s to /64s),
    /// some nested in earlier ones, anywhere in the unicast space except [`MISS_V4_NET`] and
    /// [`MISS_V6_NET`].
    Blocklist,
    /// Random AND-combinations of source and destination prefixes (in 198.18.0.0/15 and
    /// fd00::/8), protocols, ports and port ranges, ICMP types, both actions, random
    /// priorities. Every rule names a prefix, except at most one `proto arp`.
    Mixed,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Exact, Shape::Blocklist, Shape::Mixed];

    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Exact => "exact",
            Shape::Blocklist => "blocklist",
            Shape::Mixed => "mixed",
        }
    }
}

/// A generated rule: what `netxdp` would be asked to add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenRule {
    pub matches: Match,
    pub action: Action,
    pub priority: u32,
}

/// IPv4 network that no [`generate`]d rule covers: the miss frames' addresses (TEST-NET-1).
pub const MISS_V4_NET: [u8; 4] = [192, 0, 2, 0];
/// IPv6 network that no [`generate`]d rule covers: the miss frames' addresses
/// (2001:db8::/32, documentation).
pub const MISS_V6_NET: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// `count` rules of `shape`, from `seed`. Fewer only if the shape runs out of distinct rules,
/// which takes far more than [`crate::rule::MAX_RULES`].
pub fn generate(shape: Shape, seed: u64, count: usize) -> Vec<GenRule> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ shape_salt(shape));
    let mut set = Distinct::new(count);
    while !set.done() {
        let index = set.rules.len();
        let rule = match shape {
            Shape::Exact => exact_rule(&mut rng, index),
            Shape::Blocklist => blocklist_rule(&mut rng, index, &set.rules),
            Shape::Mixed => mixed_rule(&mut rng),
        };
        set.offer(rule);
    }
    set.rules
}

fn shape_salt(shape: Shape) -> u64 {
    match shape {
        Shape::Exact => 0x4558_4143,
        Shape::Blocklist => 0x424c_4f43,
        Shape::Mixed => 0x4d49_5845,
    }
}

/// Collects distinct rules, giving up after many refusals in a row.
pub(crate) struct Distinct {
    rules: Vec<GenRule>,
    seen: BTreeSet<Match>,
    count: usize,
    refused: usize,
}

impl Distinct {
    pub(crate) fn new(count: usize) -> Self {
        Self {
            rules: Vec::with_capacity(count),
            seen: BTreeSet::new(),
            count,
            refused: 0,
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.rules.len() >= self.count || self.refused > 10_000
    }

    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    pub(crate) fn into_rules(self) -> Vec<GenRule> {
        self.rules
    }

    pub(crate) fn offer(&mut self, rule: GenRule) {
        if self.seen.insert(rule.matches) {
            self.rules.push(rule);
            self.refused = 0;
        } else {
            self.refused += 1;
        }
    }
}

fn v4(addr: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&addr);
    out
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn source(src: Prefix, action: Action, priority: u32) -> GenRule {
    GenRule {
        matches: Match { src, ..Match::ANY },
        action,
        priority,
    }
}

fn exact_rule(rng: &mut ChaCha8Rng, index: usize) -> GenRule {
    let src = if index.is_multiple_of(2) {
        // 198.18.0.0/15.
        let addr = [
            198,
            18 | rng.random_range(0..2u8),
            rng.random(),
            rng.random(),
        ];
        Prefix::new(Family::Ipv4, v4(addr), 32)
    } else {
        let mut addr: [u8; 16] = rng.random();
        addr[0] = 0xfd;
        Prefix::new(Family::Ipv6, addr, 128)
    };
    source(src, Action::Drop, PRIORITY)
}

fn blocklist_rule(rng: &mut ChaCha8Rng, index: usize, earlier: &[GenRule]) -> GenRule {
    let family = if index.is_multiple_of(2) {
        Family::Ipv4
    } else {
        Family::Ipv6
    };
    let (shortest, longest) = match family {
        Family::Ipv4 => (8, 32),
        _ => (32, 128),
    };
    loop {
        // One in five nests inside an earlier prefix of its family, when one has room.
        let parent = if rng.random_bool(0.2) {
            let candidates: Vec<&GenRule> = earlier
                .iter()
                .filter(|rule| {
                    rule.matches.src.family() == family && rule.matches.src.len < longest
                })
                .collect();
            (!candidates.is_empty()).then(|| {
                candidates[rng.random_range(0..candidates.len())]
                    .matches
                    .src
            })
        } else {
            None
        };
        let prefix = match parent {
            Some(parent) => {
                let random: [u8; 16] = rng.random();
                let kept = mask([0xff; 16], parent.len);
                let mut addr = [0; 16];
                for i in 0..16 {
                    addr[i] = (parent.addr[i] & kept[i]) | (random[i] & !kept[i]);
                }
                let len = rng.random_range(parent.len + 1..=longest);
                Prefix::new(family, addr, len)
            }
            None => {
                let len = match (family, rng.random_range(0..100)) {
                    (Family::Ipv4, 0..50) => 32,
                    (Family::Ipv4, 50..65) => 24,
                    (Family::Ipv6, 0..40) => 128,
                    (Family::Ipv6, 40..55) => 64,
                    (Family::Ipv6, 55..65) => 48,
                    _ => rng.random_range(shortest..longest),
                };
                let addr = match family {
                    // 1.0.0.0 to 223.255.255.255.
                    Family::Ipv4 => v4([
                        rng.random_range(1..224),
                        rng.random(),
                        rng.random(),
                        rng.random(),
                    ]),
                    _ => {
                        // 2000::/3, global unicast.
                        let mut addr: [u8; 16] = rng.random();
                        addr[0] = 0x20 | (addr[0] & 0x1f);
                        addr
                    }
                };
                Prefix::new(family, addr, len)
            }
        };
        let miss = match family {
            Family::Ipv4 => Prefix::new(family, v4(MISS_V4_NET), 24),
            _ => Prefix::new(family, MISS_V6_NET, 32),
        };
        if !prefix.covers(&miss) && !miss.covers(&prefix) {
            return source(prefix, Action::Drop, PRIORITY);
        }
    }
}

/// A prefix of `family` inside 198.18.0.0/15 or fd00::/8, of a random length from /15 (/8).
fn bench_prefix(rng: &mut ChaCha8Rng, family: Family) -> Prefix {
    match family {
        Family::Ipv4 => {
            let addr = [
                198,
                18 | rng.random_range(0..2u8),
                rng.random(),
                rng.random(),
            ];
            let len = match rng.random_range(0..4) {
                0 => 32,
                1 => 24,
                _ => rng.random_range(15..=32),
            };
            Prefix::new(family, v4(addr), len)
        }
        _ => {
            let mut addr: [u8; 16] = rng.random();
            addr[0] = 0xfd;
            let len = match rng.random_range(0..4) {
                0 => 128,
                1 => 64,
                _ => rng.random_range(8..=128),
            };
            Prefix::new(family, addr, len)
        }
    }
}

/// Well-known ports the mixed shape names, beside random ones.
const SERVICE_PORTS: [u16; 12] = [22, 25, 53, 80, 123, 443, 853, 3306, 5353, 6443, 8080, 51820];
/// IP protocols other than TCP, UDP and ICMP that the mixed shape names.
const OTHER_PROTOS: [u8; 6] = [0, 4, 41, 47, 50, 132];

fn mixed_rule(rng: &mut ChaCha8Rng) -> GenRule {
    let action = if rng.random_bool(0.6) {
        Action::Drop
    } else {
        Action::Pass
    };
    let priority = rng.random_range(1..=2000);
    if rng.random_range(0..200) == 0 {
        return GenRule {
            matches: arp_match(),
            action,
            priority,
        };
    }
    let family = if rng.random() {
        Family::Ipv4
    } else {
        Family::Ipv6
    };
    let (src, dst) = match rng.random_range(0..10) {
        0..5 => (bench_prefix(rng, family), Prefix::ANY),
        5..7 => (Prefix::ANY, bench_prefix(rng, family)),
        _ => (bench_prefix(rng, family), bench_prefix(rng, family)),
    };
    let icmp = if family == Family::Ipv4 {
        IPPROTO_ICMP
    } else {
        IPPROTO_ICMPV6
    };
    let mut matches = with_random_proto(rng, src, dst, icmp, [5, 6, 5, 2], &OTHER_PROTOS);
    if takes_ports(matches.proto) {
        let port = |rng: &mut ChaCha8Rng| {
            if rng.random_bool(0.7) {
                pick(rng, &SERVICE_PORTS)
            } else {
                rng.random()
            }
        };
        matches.dport = match rng.random_range(0..10) {
            0..2 => PortRange::ANY,
            2..7 => one_port(port(rng)),
            _ => {
                let first = port(rng);
                let last = first.saturating_add(rng.random_range(1..1024));
                PortRange { first, last }
            }
        };
        matches.sport = match rng.random_range(0..10) {
            0..7 => PortRange::ANY,
            7 => one_port(port(rng)),
            // Ephemeral ports, or the privileged ones.
            8 => PortRange {
                first: 1024,
                last: 65535,
            },
            _ => PortRange {
                first: 0,
                last: 1023,
            },
        };
    } else if matches.proto == icmp as u16 && rng.random() {
        matches.icmp_type = if icmp == IPPROTO_ICMP {
            pick(rng, &[0u8, 3, 8, 11, 13]) as u16
        } else {
            pick(rng, &[1u8, 2, 3, 4, 128, 129, 133, 134, 135, 136, 137]) as u16
        };
    }
    GenRule {
        matches,
        action,
        priority,
    }
}

/// A match on `src` and `dst` and a random protocol: of every 20, `odds` name any protocol,
/// TCP, UDP and `icmp` (ICMP or ICMPv6, as the prefixes' family wants), in that order; the
/// rest one of `others`.
fn with_random_proto(
    rng: &mut ChaCha8Rng,
    src: Prefix,
    dst: Prefix,
    icmp: u8,
    odds: [u32; 4],
    others: &[u8],
) -> Match {
    let [any, tcp, udp, icmp_odds] = odds;
    let roll = rng.random_range(0..20);
    let proto = if roll < any {
        PROTO_ANY
    } else if roll < any + tcp {
        IPPROTO_TCP as u16
    } else if roll < any + tcp + udp {
        IPPROTO_UDP as u16
    } else if roll < any + tcp + udp + icmp_odds {
        icmp as u16
    } else {
        pick(rng, others) as u16
    };
    Match {
        src,
        dst,
        proto,
        ..Match::ANY
    }
}

/// Whether a rule with `proto` may name ports: TCP and UDP.
fn takes_ports(proto: u16) -> bool {
    proto == IPPROTO_TCP as u16 || proto == IPPROTO_UDP as u16
}

/// A port range of one port.
fn one_port(port: u16) -> PortRange {
    PortRange {
        first: port,
        last: port,
    }
}

fn arp_match() -> Match {
    Match {
        proto: PROTO_ARP,
        ..Match::ANY
    }
}

/// The rules as the kernel's table holds them: ids 1, 2, ... in the order given (as a fresh
/// rule set assigns them), counter slot = id - 1, sorted by rank (priority, then id): what
/// [`classify`] takes.
pub fn ranked(rules: &[GenRule]) -> Vec<Rule> {
    let mut table: Vec<Rule> = rules
        .iter()
        .enumerate()
        .map(|(index, rule)| Rule {
            id: index as u32 + 1,
            priority: rule.priority,
            action: rule.action as u32,
            counter_slot: index as u32,
            matches: rule.matches,
        })
        .collect();
    table.sort_by_key(Rule::rank_key);
    table
}

// The pools of `random_rules` and `PoolFrameGenerator`.

/// IPv4 /24s of the differential tests' addresses: three in 198.18.0.0/15 (two adjacent, so
/// that /23 and shorter prefixes hold both) and one apart.
pub const POOL_V4_NETS: [[u8; 3]; 4] = [[198, 18, 0], [198, 18, 1], [198, 19, 128], [192, 0, 2]];
/// Host bytes within a [`POOL_V4_NETS`] /24: both ends, and the edges of its halves and
/// quarters, so that nested prefixes split them.
pub const POOL_V4_HOSTS: [u8; 8] = [0, 1, 2, 63, 64, 127, 128, 255];
/// IPv6 /64s of the differential tests' addresses (first 8 bytes): three in fd00::/16 (two
/// adjacent) and one apart.
pub const POOL_V6_NETS: [[u8; 8]; 4] = [
    [0xfd, 0x00, 0, 0, 0, 0, 0, 0],
    [0xfd, 0x00, 0, 0, 0, 0, 0, 1],
    [0xfd, 0x00, 0, 0xc8, 0, 0, 0x80, 0],
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0],
];
/// Interface identifiers (last 8 bytes) within a [`POOL_V6_NETS`] /64.
pub const POOL_V6_HOSTS: [[u8; 8]; 6] = [
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0, 2],
    [0, 0, 0, 0, 0, 0, 0, 0xff],
    [0x80, 0, 0, 0, 0, 0, 0, 1],
    [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe],
];
/// Ports of rules and frames: the extremes, a few services, the privileged boundary.
pub const POOL_PORTS: [u16; 10] = [0, 1, 22, 53, 80, 443, 1023, 1024, 5353, 65535];
/// ICMP types of rules and frames: echo reply, unreachable, echo request, time exceeded, 255.
pub const POOL_ICMP_TYPES: [u8; 5] = [0, 3, 8, 11, 255];
/// ICMPv6 types: unreachable, echo request and reply, neighbour discovery (133 to 137), MLDv2.
pub const POOL_ICMPV6_TYPES: [u8; 9] = [1, 128, 129, 133, 134, 135, 136, 137, 143];
/// IP protocols besides TCP, UDP, ICMP and ICMPv6: GRE, ESP, AH, SCTP, 255.
pub const POOL_OTHER_PROTOS: [u8; 5] = [47, 50, 51, 132, 255];
/// Priorities: few, so that many rules tie and rank by id.
pub const POOL_PRIORITIES: [u32; 5] = [0, 10, 1000, 1000, 4_000_000_000];

fn pool_v4(rng: &mut ChaCha8Rng) -> [u8; 16] {
    let net = pick(rng, &POOL_V4_NETS);
    v4([net[0], net[1], net[2], pick(rng, &POOL_V4_HOSTS)])
}

fn pool_v6(rng: &mut ChaCha8Rng) -> [u8; 16] {
    let mut addr = [0; 16];
    addr[..8].copy_from_slice(&pick(rng, &POOL_V6_NETS));
    addr[8..].copy_from_slice(&pick(rng, &POOL_V6_HOSTS));
    addr
}

/// A prefix of a pool address, of any length but mostly from /16 (/48) on.
fn pool_prefix(rng: &mut ChaCha8Rng, family: Family) -> Prefix {
    match family {
        Family::Ipv4 => {
            let len = if rng.random_bool(0.1) {
                rng.random_range(0..16)
            } else {
                rng.random_range(16..=32)
            };
            Prefix::new(family, pool_v4(rng), len)
        }
        _ => {
            let len = match rng.random_range(0..10) {
                0 => rng.random_range(0..48),
                1..4 => pick(rng, &[48, 56, 60, 63, 64, 65, 96, 120, 127, 128]),
                _ => rng.random_range(48..=128),
            };
            Prefix::new(family, pool_v6(rng), len)
        }
    }
}

fn pool_ports(rng: &mut ChaCha8Rng) -> PortRange {
    match rng.random_range(0..10) {
        0..4 => PortRange::ANY,
        4..7 => one_port(pick(rng, &POOL_PORTS)),
        _ => {
            let (a, b) = (pick(rng, &POOL_PORTS), pick(rng, &POOL_PORTS));
            PortRange {
                first: a.min(b),
                last: a.max(b),
            }
        }
    }
}

/// `count` rules for differential tests, from `seed`: drawn from the `POOL_*` constants so
/// that they overlap (nested prefixes of many lengths, overlapping port ranges, tied
/// priorities) and frames from [`PoolFrameGenerator`] hit them. Some name ARP (`proto arp`)
/// and neighbour discovery (`proto icmpv6` with a type 133 to 137); a few match everything
/// (every field `any`; there is only one such rule, so at most one per set). Both actions.
/// Fewer than `count` only if the pools run out of distinct rules (well past
/// [`crate::rule::MAX_RULES`]).
pub fn random_rules(seed: u64, count: usize) -> Vec<GenRule> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut set = Distinct::new(count);
    while !set.done() {
        let rule = random_rule(&mut rng);
        set.offer(rule);
    }
    set.rules
}

fn random_rule(rng: &mut ChaCha8Rng) -> GenRule {
    let action = if rng.random() {
        Action::Drop
    } else {
        Action::Pass
    };
    let priority = pick(rng, &POOL_PRIORITIES);
    let matches = match rng.random_range(0..100) {
        0 => Match::ANY,
        1..3 => arp_match(),
        3..12 => {
            // Neighbour discovery, from or to a pool prefix or anywhere.
            let (src, dst) = match rng.random_range(0..4) {
                0 => (pool_prefix(rng, Family::Ipv6), Prefix::ANY),
                1 => (Prefix::ANY, pool_prefix(rng, Family::Ipv6)),
                _ => (Prefix::ANY, Prefix::ANY),
            };
            Match {
                src,
                dst,
                proto: IPPROTO_ICMPV6 as u16,
                icmp_type: rng.random_range(133..=137),
                ..Match::ANY
            }
        }
        _ => {
            let family = match rng.random_range(0..10) {
                0 => Family::Any,
                1..6 => Family::Ipv4,
                _ => Family::Ipv6,
            };
            let (src, dst) = if family == Family::Any {
                (Prefix::ANY, Prefix::ANY)
            } else {
                let src = if rng.random_bool(0.6) {
                    pool_prefix(rng, family)
                } else {
                    Prefix::ANY
                };
                let dst = if rng.random_bool(0.5) {
                    pool_prefix(rng, family)
                } else {
                    Prefix::ANY
                };
                (src, dst)
            };
            let icmp = match family {
                Family::Ipv4 => IPPROTO_ICMP,
                Family::Ipv6 => IPPROTO_ICMPV6,
                Family::Any => pick(rng, &[IPPROTO_ICMP, IPPROTO_ICMPV6]),
            };
            let mut matches =
                with_random_proto(rng, src, dst, icmp, [6, 4, 4, 4], &POOL_OTHER_PROTOS);
            if takes_ports(matches.proto) {
                matches.sport = pool_ports(rng);
                matches.dport = pool_ports(rng);
            } else if matches.proto == icmp as u16 && rng.random_bool(0.6) {
                let types: &[u8] = if icmp == IPPROTO_ICMP {
                    &POOL_ICMP_TYPES
                } else {
                    &POOL_ICMPV6_TYPES
                };
                matches.icmp_type = pick(rng, types) as u16;
            }
            matches
        }
    };
    GenRule {
        matches,
        action,
        priority,
    }
}

/// A seeded source of frames for differential tests: like
/// [`crate::testing::FrameGenerator`] (every kind the parser knows: 0 to 2 VLAN tags, and
/// now and then 3; ARP and other ethertypes; IPv4 with options and fragments, first and
/// later; IPv6 with extension headers and fragment headers; TCP, UDP, ICMP, ICMPv6 with
/// neighbour discovery, other protocols; then mutated, truncated or replaced by noise), but
/// with addresses, ports and ICMP types mostly from the `POOL_*` constants, so that a good
/// share of the frames match some rule of [`random_rules`]. Frames are 14 to 1518 bytes.
pub struct PoolFrameGenerator {
    rng: ChaCha8Rng,
}

impl PoolFrameGenerator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next frame: about five in eight well-formed, the rest mutated, truncated or noise
    /// (see [`damage`]).
    pub fn next_frame(&mut self) -> Vec<u8> {
        let frame = self.spec().build();
        let frame = evade(&mut self.rng, frame);
        damage(&mut self.rng, frame, 5)
    }

    /// A random well-formed description.
    pub fn spec(&mut self) -> FrameSpec {
        let rng = &mut self.rng;
        let tags = match rng.random_range(0..20) {
            0..10 => 0,
            10..15 => 1,
            15..19 => 2,
            _ => 3,
        };
        let vlans = (0..tags)
            .map(|_| {
                if rng.random_bool(0.7) {
                    ETH_P_8021Q
                } else {
                    ETH_P_8021AD
                }
            })
            .collect();
        let body = match rng.random_range(0..100) {
            0..8 => Body::Arp,
            8..12 => Body::Other {
                ethertype: pick(rng, &[0x88cc, 0x88b5, 0x8847, 0x0842]),
                payload: rng.random_range(0..64),
            },
            12..55 => {
                let address = |rng: &mut ChaCha8Rng| {
                    let addr = if rng.random_bool(0.85) {
                        pool_v4(rng)
                    } else {
                        v4(rng.random())
                    };
                    [addr[0], addr[1], addr[2], addr[3]]
                };
                Body::Ipv4 {
                    src: address(rng),
                    dst: address(rng),
                    fragment: match rng.random_range(0..20) {
                        0..14 => 0,
                        14..16 => 0x2000,                          // first fragment
                        16 => 0x4000,                              // don't fragment
                        17 => rng.random_range(1..0x2000),         // last fragment
                        _ => rng.random_range(1..0x2000) | 0x2000, // middle
                    },
                    option_words: if rng.random_bool(0.15) {
                        rng.random_range(1..=10)
                    } else {
                        0
                    },
                    transport: pool_transport(rng, false),
                }
            }
            _ => {
                let address = |rng: &mut ChaCha8Rng| {
                    if rng.random_bool(0.85) {
                        pool_v6(rng)
                    } else {
                        rng.random()
                    }
                };
                let headers = random_chain_length(rng);
                Body::Ipv6 {
                    src: address(rng),
                    dst: address(rng),
                    extensions: (0..headers).map(|_| random_extension(rng)).collect(),
                    transport: pool_transport(rng, true),
                }
            }
        };
        FrameSpec { vlans, body }
    }
}

fn pool_port(rng: &mut ChaCha8Rng) -> u16 {
    match rng.random_range(0..10) {
        0..7 => pick(rng, &POOL_PORTS),
        // Next to a pool port: the edges of ranges.
        7 | 8 => {
            let port = pick(rng, &POOL_PORTS);
            if rng.random() {
                port.wrapping_add(1)
            } else {
                port.wrapping_sub(1)
            }
        }
        _ => rng.random(),
    }
}

fn pool_transport(rng: &mut ChaCha8Rng, ipv6: bool) -> Transport {
    let payload = rng.random_range(0..48);
    let icmp_type = |rng: &mut ChaCha8Rng, types: &[u8]| {
        if rng.random_bool(0.9) {
            pick(rng, types)
        } else {
            rng.random()
        }
    };
    match rng.random_range(0..20) {
        0..6 => Transport::Tcp {
            sport: pool_port(rng),
            dport: pool_port(rng),
            flags: pick(rng, &[0x02, 0x10, 0x12, 0x18, 0x11, 0x04]),
            payload,
        },
        6..12 => Transport::Udp {
            sport: pool_port(rng),
            dport: pool_port(rng),
            payload,
        },
        12..16 if ipv6 => Transport::Icmpv6 {
            icmp_type: icmp_type(rng, &POOL_ICMPV6_TYPES),
            code: 0,
            payload,
        },
        12..16 => Transport::Icmp {
            icmp_type: icmp_type(rng, &POOL_ICMP_TYPES),
            code: 0,
            payload,
        },
        // The other family's ICMP: matched by `proto` alone.
        16 if ipv6 => Transport::Icmp {
            icmp_type: icmp_type(rng, &POOL_ICMP_TYPES),
            code: 0,
            payload,
        },
        16 => Transport::Icmpv6 {
            icmp_type: icmp_type(rng, &POOL_ICMPV6_TYPES),
            code: 0,
            payload,
        },
        _ => Transport::Raw {
            protocol: if rng.random_bool(0.9) {
                pick(rng, &POOL_OTHER_PROTOS)
            } else {
                59 // no next header
            },
            payload,
        },
    }
}

/// Whether a benchmark frame hits the rule set or misses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// Matches the set's first rule of its family (in the order generated; in the mixed shape
    /// a higher-ranked rule may match it first: a hit either way).
    Hit,
    /// Matches no rule: the default policy decides.
    Miss,
}

impl FrameKind {
    pub fn is_hit(self) -> bool {
        self == FrameKind::Hit
    }
}

/// A frame for the benchmarks.
#[derive(Clone, Debug)]
pub struct BenchFrame {
    pub kind: FrameKind,
    /// [`Family::Ipv4`] or [`Family::Ipv6`].
    pub family: Family,
    pub frame: Vec<u8>,
}

impl BenchFrame {
    /// "hit v4", "miss v6", ...
    pub fn name(&self) -> &'static str {
        match (self.kind, self.family) {
            (FrameKind::Hit, Family::Ipv6) => "hit v6",
            (FrameKind::Hit, _) => "hit v4",
            (FrameKind::Miss, Family::Ipv6) => "miss v6",
            (FrameKind::Miss, _) => "miss v4",
        }
    }
}

/// The default source and destination of the benchmark frames (as in
/// [`FrameSpec::ipv4_udp`] and [`FrameSpec::ipv6_tcp`]); a rule's prefix replaces their
/// leading bits.
const DEFAULT_V4: ([u8; 4], [u8; 4]) = ([198, 18, 0, 2], [198, 18, 0, 1]);

fn default_v6(n: u8) -> [u8; 16] {
    let mut addr = [0; 16];
    addr[0] = 0xfd;
    addr[15] = n;
    addr
}

/// `default` with its leading bits replaced by `prefix` (when of `family`).
fn inside(prefix: &Prefix, default: [u8; 16]) -> [u8; 16] {
    if prefix.is_any() {
        return default;
    }
    let kept = mask([0xff; 16], prefix.len);
    let mut addr = [0; 16];
    for i in 0..16 {
        addr[i] = (prefix.addr[i] & kept[i]) | (default[i] & !kept[i]);
    }
    addr
}

/// A well-formed, untagged frame of `family` (IPv4 or IPv6) that `matches` matches: the
/// prefixes' addresses (host bits from 198.18.0.2 -> .1, or fd00::2 -> ::1), the protocol,
/// the first port of each range, the ICMP type. IPv4 frames carry UDP 5353 -> 53 (64 bytes)
/// and IPv6 frames TCP SYN 40000 -> 443 (74 bytes) when the rule names no protocol. `None`
/// for `proto arp`, or a prefix of the other family.
pub fn frame_matching(matches: &Match, family: Family) -> Option<FrameSpec> {
    let ipv6 = match family {
        Family::Ipv4 => false,
        Family::Ipv6 => true,
        Family::Any => return None,
    };
    // An IPv6 packet's protocol is the one after its extension headers, AH among them.
    let extension = ipv6 && matches.proto == crate::parse::IPPROTO_AH as u16;
    if matches.proto == PROTO_ARP
        || extension
        || [matches.src, matches.dst]
            .iter()
            .any(|prefix| !prefix.is_any() && prefix.family() != family)
    {
        return None;
    }
    let port = |range: PortRange, default: u16| {
        if range.is_any() { default } else { range.first }
    };
    let icmp_type = |default: u8| {
        if matches.icmp_type == ICMP_TYPE_ANY {
            default
        } else {
            matches.icmp_type as u8
        }
    };
    let transport = match matches.proto {
        PROTO_ANY if ipv6 => Transport::Tcp {
            sport: 40000,
            dport: 443,
            flags: 0x02,
            payload: 0,
        },
        PROTO_ANY => Transport::Udp {
            sport: 5353,
            dport: 53,
            payload: 22,
        },
        proto if proto == IPPROTO_TCP as u16 => Transport::Tcp {
            sport: port(matches.sport, 40000),
            dport: port(matches.dport, 443),
            flags: 0x02,
            payload: if ipv6 { 0 } else { 10 },
        },
        proto if proto == IPPROTO_UDP as u16 => Transport::Udp {
            sport: port(matches.sport, 5353),
            dport: port(matches.dport, 53),
            payload: if ipv6 { 12 } else { 22 },
        },
        proto if proto == IPPROTO_ICMP as u16 => Transport::Icmp {
            icmp_type: icmp_type(8),
            code: 0,
            payload: 22,
        },
        proto if proto == IPPROTO_ICMPV6 as u16 => Transport::Icmpv6 {
            icmp_type: icmp_type(128),
            code: 0,
            payload: 12,
        },
        protocol => Transport::Raw {
            protocol: protocol as u8,
            payload: 30,
        },
    };
    let body = if ipv6 {
        Body::Ipv6 {
            src: inside(&matches.src, default_v6(2)),
            dst: inside(&matches.dst, default_v6(1)),
            extensions: Vec::new(),
            transport,
        }
    } else {
        let src = inside(&matches.src, v4(DEFAULT_V4.0));
        let dst = inside(&matches.dst, v4(DEFAULT_V4.1));
        Body::Ipv4 {
            src: [src[0], src[1], src[2], src[3]],
            dst: [dst[0], dst[1], dst[2], dst[3]],
            fragment: 0,
            option_words: 0,
            transport,
        }
    };
    Some(FrameSpec {
        vlans: Vec::new(),
        body,
    })
}

/// The verdict of `rules` (ranked, see [`ranked`]) on `frame`, policy pass.
fn reason(rules: &[Rule], frame: &[u8]) -> Reason {
    let packet = parse(&SliceFrame::new(frame));
    classify(
        rules,
        Action::Pass,
        Fragments::Policy,
        Malformed::Drop,
        &packet,
    )
    .reason
}

/// Frames for benchmarking `rules`: a hit for each family the set has a rule of (matching
/// the first such rule in the order given), and a miss for each family (matching no rule),
/// in the order hit v4, hit v6, miss v4, miss v6. Misses are IPv4 UDP (64 bytes) and IPv6
/// TCP SYN (74 bytes) between addresses of [`MISS_V4_NET`] and [`MISS_V6_NET`] (other
/// addresses and ports are tried if a rule covers those); a family is left out when no miss
/// is found.
pub fn bench_frames(rules: &[GenRule]) -> Vec<BenchFrame> {
    let table = ranked(rules);
    let mut frames = Vec::new();
    for family in [Family::Ipv4, Family::Ipv6] {
        let hit = rules.iter().find_map(|rule| {
            let frame = frame_matching(&rule.matches, family)?.build();
            let packet = parse(&SliceFrame::new(&frame));
            (rule.matches.matches(&packet) && matches!(reason(&table, &frame), Reason::Rule(_)))
                .then_some(frame)
        });
        if let Some(frame) = hit {
            frames.push(BenchFrame {
                kind: FrameKind::Hit,
                family,
                frame,
            });
        }
    }
    for family in [Family::Ipv4, Family::Ipv6] {
        let miss = (0u16..512).find_map(|attempt| {
            let host = (attempt % 250) as u8 + 1;
            let port = 40000 + attempt;
            let frame = if family == Family::Ipv4 {
                let net = if attempt < 250 {
                    MISS_V4_NET
                } else {
                    [203, 0, 113, 0]
                };
                let mut spec = FrameSpec::ipv4_udp(port, 9, 22);
                if let Body::Ipv4 { src, dst, .. } = &mut spec.body {
                    *src = [net[0], net[1], net[2], host];
                    *dst = [net[0], net[1], net[2], host.wrapping_add(1)];
                }
                spec.build()
            } else {
                let mut spec = FrameSpec::ipv6_tcp(port, 9, 0x02, 0);
                if let Body::Ipv6 { src, dst, .. } = &mut spec.body {
                    *src = MISS_V6_NET;
                    src[4] = (attempt >> 8) as u8;
                    src[15] = host;
                    *dst = *src;
                    dst[14] = 1;
                }
                spec.build()
            };
            (reason(&table, &frame) == Reason::Policy).then_some(frame)
        });
        if let Some(frame) = miss {
            frames.push(BenchFrame {
                kind: FrameKind::Miss,
                family,
                frame,
            });
        }
    }
    frames
}

/// The rules of `rules` as the (action, priority) pairs a `Vec` of tuples carries, for
/// callers that want no new type.
pub fn as_tuples(rules: &[GenRule]) -> Vec<(Match, Action, u32)> {
    rules
        .iter()
        .map(|rule| (rule.matches, rule.action, rule.priority))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::L3;

    const SIZES: [usize; 3] = [1, 100, 3000];

    fn all_sets() -> Vec<(&'static str, Vec<GenRule>)> {
        let mut sets = Vec::new();
        for seed in [1, 2, 0xdead_beef] {
            for shape in Shape::ALL {
                sets.push((shape.as_str(), generate(shape, seed, 3000)));
            }
            sets.push(("random", random_rules(seed, 3000)));
        }
        sets
    }

    #[test]
    fn rules_are_distinct_and_as_many_as_asked() {
        for (name, rules) in all_sets() {
            assert_eq!(rules.len(), 3000, "{name}");
            let distinct: BTreeSet<Match> = rules.iter().map(|rule| rule.matches).collect();
            assert_eq!(distinct.len(), rules.len(), "{name}: duplicates");
        }
        let most = generate(Shape::Exact, 3, crate::rule::MAX_RULES);
        assert_eq!(most.len(), crate::rule::MAX_RULES);
    }

    #[test]
    fn generation_is_deterministic_by_seed_and_prefix_stable() {
        for shape in Shape::ALL {
            let full = generate(shape, 9, 3000);
            assert_eq!(full, generate(shape, 9, 3000), "{shape:?}");
            assert_ne!(full, generate(shape, 10, 3000), "{shape:?}");
            for size in SIZES {
                assert_eq!(generate(shape, 9, size), full[..size], "{shape:?} {size}");
            }
        }
        assert_eq!(random_rules(4, 500), random_rules(4, 500));
        assert_ne!(random_rules(4, 500), random_rules(5, 500));
        let frames = |seed| {
            let mut generator = PoolFrameGenerator::new(seed);
            (0..200).map(|_| generator.next_frame()).collect::<Vec<_>>()
        };
        assert_eq!(frames(6), frames(6));
        assert_ne!(frames(6), frames(7));
    }

    #[test]
    fn shapes_have_their_form() {
        let exact = generate(Shape::Exact, 1, 3000);
        for (index, rule) in exact.iter().enumerate() {
            let src = rule.matches.src;
            assert_eq!(rule.matches, Match { src, ..Match::ANY });
            assert_eq!((rule.action, rule.priority), (Action::Drop, PRIORITY));
            if index % 2 == 0 {
                assert_eq!(
                    (src.family(), src.len, src.addr[0]),
                    (Family::Ipv4, 32, 198)
                );
                assert_eq!(src.addr[1] & 0xfe, 18);
            } else {
                assert_eq!(
                    (src.family(), src.len, src.addr[0]),
                    (Family::Ipv6, 128, 0xfd)
                );
            }
        }
        let blocklist = generate(Shape::Blocklist, 1, 3000);
        let mut lengths = BTreeSet::new();
        let mut nested = 0;
        for rule in &blocklist {
            let src = rule.matches.src;
            assert_eq!(rule.matches, Match { src, ..Match::ANY });
            assert_eq!(rule.action, Action::Drop);
            let range = if src.family() == Family::Ipv4 {
                8..=32
            } else {
                8 + 24..=128
            };
            assert!(range.contains(&src.len), "{src:?}");
            lengths.insert((src.family, src.len));
            if blocklist
                .iter()
                .any(|other| other.matches.src != src && other.matches.src.covers(&src))
            {
                nested += 1;
            }
        }
        assert!(lengths.len() > 80, "many lengths: {}", lengths.len());
        assert!(nested > 100, "nesting: {nested}");
        let mixed = generate(Shape::Mixed, 1, 3000);
        let actions: BTreeSet<Action> = mixed.iter().map(|rule| rule.action).collect();
        assert_eq!(actions.len(), 2);
        let priorities: BTreeSet<u32> = mixed.iter().map(|rule| rule.priority).collect();
        assert!(priorities.len() > 500);
        assert!(mixed.iter().any(|rule| !rule.matches.dport.is_any()));
        assert!(
            mixed
                .iter()
                .any(|rule| rule.matches.icmp_type != ICMP_TYPE_ANY)
        );
        assert!(mixed.iter().all(|rule| rule.matches.proto == PROTO_ARP
            || !rule.matches.src.is_any()
            || !rule.matches.dst.is_any()));
    }

    #[test]
    fn random_rules_name_neighbour_traffic_and_everything() {
        let rules = random_rules(1, 2000);
        assert!(rules.iter().any(|rule| rule.matches == arp_match()));
        assert!(rules.iter().any(|rule| rule.matches == Match::ANY));
        let nd = rules
            .iter()
            .filter(|rule| {
                rule.matches.proto == crate::parse::IPPROTO_ICMPV6 as u16
                    && crate::parse::ND_TYPES.contains(&(rule.matches.icmp_type as u8))
            })
            .count();
        assert!(nd > 50, "{nd} neighbour discovery rules");
    }

    #[test]
    fn bench_frames_hit_the_first_rule_and_miss_every_rule() {
        for shape in Shape::ALL {
            for size in [1, 100, 10_000] {
                let rules = generate(shape, 42, size);
                let table = ranked(&rules);
                let frames = bench_frames(&rules);
                let names: Vec<&str> = frames.iter().map(BenchFrame::name).collect();
                let has_v6 = rules.iter().any(|rule| {
                    rule.matches.src.family() == Family::Ipv6
                        || rule.matches.dst.family() == Family::Ipv6
                });
                let expected: &[&str] = if has_v6 {
                    &["hit v4", "hit v6", "miss v4", "miss v6"]
                } else {
                    &["hit v4", "miss v4", "miss v6"]
                };
                assert_eq!(names, expected, "{shape:?} {size}");
                for frame in &frames {
                    let packet = parse(&SliceFrame::new(&frame.frame));
                    assert!(!packet.is_defective());
                    let l3 = if frame.family == Family::Ipv4 {
                        L3::Ipv4
                    } else {
                        L3::Ipv6
                    };
                    assert_eq!(packet.l3, l3);
                    let verdict = reason(&table, &frame.frame);
                    if frame.kind.is_hit() {
                        assert!(matches!(verdict, Reason::Rule(_)), "{shape:?} {size}");
                    } else {
                        assert_eq!(verdict, Reason::Policy, "{shape:?} {size}");
                        assert!(frame.frame.len() == 64 || frame.frame.len() == 74);
                    }
                }
                if matches!(shape, Shape::Exact | Shape::Blocklist) {
                    // Exact and blocklist hits match the first rule of their family itself.
                    for frame in frames.iter().filter(|frame| frame.kind.is_hit()) {
                        let first = rules
                            .iter()
                            .position(|rule| rule.matches.src.family() == frame.family)
                            .unwrap();
                        assert_eq!(reason(&table, &frame.frame), Reason::Rule(first as u32 + 1));
                    }
                }
            }
        }
    }

    #[test]
    fn pool_frames_are_of_every_kind_and_bounded() {
        let mut generator = PoolFrameGenerator::new(11);
        let (mut l3, mut vlans, mut fragments, mut nd, mut malformed) =
            (BTreeSet::new(), BTreeSet::new(), 0, 0, 0);
        for _ in 0..20_000 {
            let frame = generator.next_frame();
            assert!((14..=1518).contains(&frame.len()), "{} bytes", frame.len());
            let packet = parse(&SliceFrame::new(&frame));
            l3.insert(packet.l3 as u8);
            vlans.insert(packet.vlan_tags);
            fragments += (packet.fragment != crate::parse::Fragment::None) as usize;
            nd += (packet.neighbour && packet.l3 == L3::Ipv6) as usize;
            malformed += packet.is_defective() as usize;
        }
        assert_eq!(l3.len(), 4);
        assert_eq!(vlans.len(), 3);
        assert!(fragments > 500, "{fragments} fragments");
        assert!(nd > 300, "{nd} neighbour discovery");
        assert!(malformed > 500, "{malformed} malformed");
    }

    #[test]
    fn pool_frames_often_match_random_rules() {
        for (seed, count) in [(1u64, 10usize), (2, 50), (3, 200), (4, 1000)] {
            // Without the rule that matches everything, which would make this trivial.
            let rules: Vec<GenRule> = random_rules(seed, count)
                .into_iter()
                .filter(|rule| rule.matches != Match::ANY)
                .collect();
            let table = ranked(&rules);
            let mut generator = PoolFrameGenerator::new(seed);
            let frames = 5_000;
            let (mut hits, mut neighbour_hits) = (0, 0);
            for _ in 0..frames {
                let frame = generator.next_frame();
                let packet = parse(&SliceFrame::new(&frame));
                let verdict = classify(
                    &table,
                    Action::Pass,
                    Fragments::Policy,
                    Malformed::Drop,
                    &packet,
                );
                if let Reason::Rule(_) = verdict.reason {
                    hits += 1;
                    neighbour_hits += packet.neighbour as usize;
                }
            }
            assert!(
                hits * 5 > frames,
                "seed {seed}, {count} rules: {hits} of {frames} frames match a rule"
            );
            if count >= 200 {
                assert!(neighbour_hits > 20, "{neighbour_hits} neighbour hits");
            }
        }
    }

    #[test]
    fn frame_matching_builds_frames_the_rule_matches() {
        for rule in random_rules(8, 3000) {
            for family in [Family::Ipv4, Family::Ipv6] {
                if let Some(spec) = frame_matching(&rule.matches, family) {
                    let frame = spec.build();
                    let packet = parse(&SliceFrame::new(&frame));
                    assert!(rule.matches.matches(&packet), "{rule:?} {family:?}");
                }
            }
        }
        assert!(frame_matching(&arp_match(), Family::Ipv4).is_none());
        let tuples = as_tuples(&generate(Shape::Mixed, 1, 3));
        assert_eq!(tuples.len(), 3);
    }
}
