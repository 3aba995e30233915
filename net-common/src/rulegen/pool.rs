//! Rule sets for differential tests, drawn from small pools so that rules overlap heavily
//! ([`random_rules`]), and frames drawn from the same pools ([`PoolFrameGenerator`]), so that
//! a good share of them match some rule.

use alloc::vec::Vec;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::parse::{ETH_P_8021AD, ETH_P_8021Q, IPPROTO_ICMP, IPPROTO_ICMPV6};
use crate::rule::{Action, Family, Match, PortRange, Prefix};
use crate::testing::{
    Body, FrameSpec, Transport, damage, evade, random_chain_length, random_extension,
};

use super::*;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        frame::SliceFrame,
        parse::{L3, parse},
        rule::{Fragments, Malformed, Reason, classify},
    };

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
}
