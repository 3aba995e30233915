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

use crate::parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use crate::rule::{Action, Family, Match, PROTO_ANY, PROTO_ARP, PortRange, Prefix, Rule, mask};

mod bench;
mod pool;

pub use bench::{BenchFrame, FrameKind, as_tuples, bench_frames, frame_matching};
pub use pool::{
    POOL_ICMP_TYPES, POOL_ICMPV6_TYPES, POOL_OTHER_PROTOS, POOL_PORTS, POOL_PRIORITIES,
    POOL_V4_HOSTS, POOL_V4_NETS, POOL_V6_HOSTS, POOL_V6_NETS, PoolFrameGenerator, random_rules,
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
/// [`crate::rule::classify`] takes.
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
            limit: crate::limit::Limit::NONE,
        })
        .collect();
    table.sort_by_key(Rule::rank_key);
    table
}

// The pools of `random_rules` and `PoolFrameGenerator`.

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::ICMP_TYPE_ANY;

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
}
