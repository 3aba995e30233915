//! Realistic firewall rule sets and header traces, made the way ClassBench makes them (Taylor
//! and Turner, "ClassBench: A Packet Classification Benchmark", INFOCOM 2005; IEEE/ACM ToN
//! 2007), written from the paper's description: no ClassBench code or seed file is used.
//!
//! A rule is an IPv4 5-tuple filter, first match wins (rule `i` has priority `i`). Each
//! profile ([`Profile`]: access-control lists, firewalls, IP chains) gives:
//! - the protocol distribution;
//! - the joint distribution of the source and destination port classes: wildcard, high
//!   (1024-65535), low (0-1023), an arbitrary range, an exact port (from the services real
//!   rule sets name);
//! - the joint distribution of the source and destination prefix lengths;
//! - how often a new prefix nests in one already made (extends it), and how skewed addresses
//!   are towards a few networks.
//!
//! The trace ([`trace`]) aims headers at the rules with locality, as ClassBench's trace
//! generator does: a rule is picked, and a burst of headers whose length follows a Pareto
//! distribution falls inside it, each field at a random point of the rule's range or, a
//! fifth of the time, at one of its ends (the prefix's first or last address, the range's
//! first or last port), where a classifier's cut or interval boundary lies.
//!
//! ```
//! use net_common::classbench::{Profile, rules, trace};
//! let acl = rules(Profile::Acl, 1, 1_000);
//! assert_eq!(acl.len(), 1_000);
//! let headers = trace(&acl, 2, 2_000);
//! assert_eq!(headers.len(), 2_000);
//! ```

use alloc::vec::Vec;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::parse::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use crate::rule::{Action, Family, ICMP_TYPE_ANY, Match, PROTO_ANY, PortRange, Prefix};
use crate::rulegen::{Distinct, GenRule, MISS_V4_NET};
use crate::testing::{Body, FrameSpec, Transport};

/// The rule-set profiles of ClassBench's seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Access-control lists: specific destinations (hosts and small networks) and services
    /// (exact destination ports), sources mostly wildcards or networks.
    Acl,
    /// Firewalls: many wildcards on either address, ports as ranges and wildcards.
    Fw,
    /// IP chains: specific prefixes on both sides, exact ports on either.
    Ipc,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Acl, Profile::Fw, Profile::Ipc];

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Acl => "acl",
            Profile::Fw => "fw",
            Profile::Ipc => "ipc",
        }
    }

    fn params(self) -> &'static Params {
        match self {
            Profile::Acl => &ACL,
            Profile::Fw => &FW,
            Profile::Ipc => &IPC,
        }
    }
}

/// A port field's class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortClass {
    Wildcard,
    High,
    Low,
    Range,
    Exact,
}

use PortClass::{Exact, High, Low, Range, Wildcard};

/// One profile's distributions: weights, not probabilities (they need not sum to 1).
struct Params {
    /// IP protocols; [`PROTO_ANY`] for a wildcard.
    protocols: &'static [(u16, u32)],
    /// (source, destination) port classes, for TCP and UDP rules.
    ports: &'static [((PortClass, PortClass), u32)],
    /// (source, destination) prefix lengths; 0 is a wildcard.
    lengths: &'static [((u8, u8), u32)],
    /// The chance that a new prefix extends one already made (nests in it).
    nesting: f64,
    /// The chance that an address falls in one of the set's few busy /8 networks.
    skew: f64,
    /// The share of drop rules.
    drops: f64,
}

const ACL: Params = Params {
    protocols: &[
        (IPPROTO_TCP as u16, 60),
        (IPPROTO_UDP as u16, 22),
        (IPPROTO_ICMP as u16, 8),
        (PROTO_ANY, 7),
        (47, 2),
        (50, 1),
    ],
    ports: &[
        ((Wildcard, Exact), 62),
        ((Wildcard, Range), 12),
        ((Wildcard, Wildcard), 9),
        ((Wildcard, High), 6),
        ((High, Exact), 5),
        ((Exact, Wildcard), 3),
        ((Low, Exact), 2),
        ((Range, Exact), 1),
    ],
    lengths: &[
        ((0, 32), 26),
        ((24, 32), 12),
        ((32, 32), 10),
        ((16, 32), 8),
        ((0, 24), 10),
        ((24, 24), 8),
        ((16, 24), 6),
        ((8, 32), 4),
        ((28, 32), 4),
        ((32, 24), 3),
        ((0, 16), 3),
        ((24, 16), 2),
        ((30, 30), 2),
        ((20, 28), 2),
    ],
    nesting: 0.45,
    skew: 0.7,
    drops: 0.4,
};

const FW: Params = Params {
    protocols: &[
        (IPPROTO_TCP as u16, 45),
        (PROTO_ANY, 30),
        (IPPROTO_UDP as u16, 17),
        (IPPROTO_ICMP as u16, 6),
        (47, 2),
    ],
    ports: &[
        ((Wildcard, Wildcard), 30),
        ((Wildcard, Exact), 25),
        ((Wildcard, Range), 15),
        ((High, Range), 8),
        ((Wildcard, High), 8),
        ((High, Exact), 6),
        ((Range, Wildcard), 4),
        ((Low, Low), 2),
        ((Exact, Exact), 2),
    ],
    lengths: &[
        ((0, 0), 6),
        ((0, 32), 18),
        ((32, 0), 12),
        ((0, 24), 10),
        ((24, 0), 10),
        ((16, 0), 6),
        ((0, 16), 6),
        ((24, 24), 8),
        ((32, 32), 6),
        ((16, 32), 5),
        ((8, 0), 4),
        ((28, 29), 3),
        ((20, 24), 3),
        ((32, 24), 3),
    ],
    nesting: 0.3,
    skew: 0.6,
    drops: 0.55,
};

const IPC: Params = Params {
    protocols: &[
        (IPPROTO_TCP as u16, 45),
        (IPPROTO_UDP as u16, 33),
        (IPPROTO_ICMP as u16, 10),
        (PROTO_ANY, 10),
        (50, 2),
    ],
    ports: &[
        ((Wildcard, Exact), 35),
        ((Exact, Wildcard), 18),
        ((Wildcard, Wildcard), 15),
        ((Exact, Exact), 10),
        ((High, Exact), 8),
        ((Wildcard, Range), 6),
        ((Range, Wildcard), 4),
        ((Low, High), 2),
        ((High, High), 2),
    ],
    lengths: &[
        ((32, 32), 20),
        ((24, 32), 14),
        ((32, 24), 14),
        ((24, 24), 12),
        ((16, 24), 6),
        ((24, 16), 6),
        ((28, 32), 6),
        ((32, 28), 5),
        ((0, 32), 6),
        ((32, 0), 5),
        ((16, 16), 3),
        ((8, 24), 3),
    ],
    nesting: 0.35,
    skew: 0.8,
    drops: 0.5,
};

/// Ports real rule sets name exactly, most named first.
const SERVICES: [u16; 20] = [
    80, 443, 53, 25, 22, 21, 23, 110, 143, 123, 161, 389, 445, 993, 995, 1433, 3306, 3389, 5060,
    8080,
];

/// Arbitrary ranges real rule sets name.
const RANGES: [(u16, u16); 8] = [
    (1024, 5000),
    (6000, 6063),
    (137, 139),
    (20, 21),
    (5000, 5100),
    (8000, 8999),
    (33434, 33534),
    (49152, 65535),
];

/// `count` rules of `profile` from `seed`, distinct, in first-match order (rule `i` has
/// priority `i + 1`). Deterministic by seed.
pub fn rules(profile: Profile, seed: u64, count: usize) -> Vec<GenRule> {
    let params = profile.params();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc1a5_5be7_c400 ^ profile as u64);
    // The few /8 networks most addresses of the set fall in.
    let busy: Vec<u8> = (0..6).map(|_| unicast_octet(&mut rng)).collect();
    let mut made: [Vec<Prefix>; 2] = [Vec::new(), Vec::new()];
    let mut set = Distinct::new(count);
    while !set.done() {
        let (src_len, dst_len) = weighted(&mut rng, params.lengths);
        let src = prefix(&mut rng, params, &busy, &mut made[0], src_len);
        let dst = prefix(&mut rng, params, &busy, &mut made[1], dst_len);
        let proto = weighted(&mut rng, params.protocols);
        let mut matches = Match {
            src,
            dst,
            proto,
            ..Match::ANY
        };
        if proto == u16::from(IPPROTO_TCP) || proto == u16::from(IPPROTO_UDP) {
            let (sport, dport) = weighted(&mut rng, params.ports);
            matches.sport = port_range(&mut rng, sport);
            matches.dport = port_range(&mut rng, dport);
        } else if proto == u16::from(IPPROTO_ICMP) && rng.random_bool(0.5) {
            matches.icmp_type = if rng.random_bool(0.7) { 8 } else { 0 };
        }
        if matches == Match::ANY {
            // A rule that matches everything ends a real list, once: not here.
            continue;
        }
        let action = if rng.random_bool(params.drops) {
            Action::Drop
        } else {
            Action::Pass
        };
        let priority = set.len() as u32 + 1;
        set.offer(GenRule {
            matches,
            action,
            priority,
        });
    }
    set.into_rules()
}

/// One header of a trace, and the rule it was aimed at (an earlier rule may match it too).
#[derive(Clone, Debug)]
pub struct Header {
    pub frame: Vec<u8>,
    pub target: usize,
}

/// `count` headers aimed at `rules`: bursts at one rule at a time, of Pareto-distributed
/// length (shape 1, most of one header, a few of dozens), each header inside its rule.
pub fn trace(rules: &[GenRule], seed: u64, count: usize) -> Vec<Header> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x007a_ce0f_c1a5);
    let mut headers = Vec::with_capacity(count);
    if rules.is_empty() {
        return headers;
    }
    while headers.len() < count {
        let target = rng.random_range(0..rules.len());
        // Pareto(shape 1, scale 1): P(burst >= n) = 1 / n, capped.
        let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
        let burst = ((1.0 / uniform) as usize).clamp(1, 64);
        for _ in 0..burst.min(count - headers.len()) {
            headers.push(Header {
                frame: header_in(&mut rng, &rules[target].matches),
                target,
            });
        }
    }
    headers
}

/// `count` headers just outside the rules: each aimed at a rule, inside it but for one
/// named field (an address or a port) one step past one end of its range, where a cut or an
/// interval boundary lies, seen from the other side. Such a header may match a later rule,
/// or none.
pub fn edges(rules: &[GenRule], seed: u64, count: usize) -> Vec<Header> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xed6e_5eed);
    let mut headers = Vec::with_capacity(count);
    if rules.is_empty() {
        return headers;
    }
    while headers.len() < count {
        let target = rng.random_range(0..rules.len());
        let matches = &rules[target].matches;
        let mut fields = fields_in(&mut rng, matches);
        let mut pasts = Vec::new();
        for (index, prefix) in [&matches.src, &matches.dst].into_iter().enumerate() {
            if let Some((below, above)) = address_past(prefix) {
                pasts.extend(
                    [below, above]
                        .into_iter()
                        .flatten()
                        .map(|past| (index, past)),
                );
            }
        }
        for (index, range) in [matches.sport, matches.dport].into_iter().enumerate() {
            if !range.is_any() && takes_ports(fields.proto) {
                let below = range.first.checked_sub(1).map(u32::from);
                let above = range.last.checked_add(1).map(u32::from);
                pasts.extend(
                    [below, above]
                        .into_iter()
                        .flatten()
                        .map(|past| (2 + index, past)),
                );
            }
        }
        if let Some(&(field, value)) = pasts.get(rng.random_range(0..pasts.len().max(1))) {
            match field {
                0 => fields.src = value.to_be_bytes(),
                1 => fields.dst = value.to_be_bytes(),
                2 => fields.sport = value as u16,
                _ => fields.dport = value as u16,
            }
        }
        headers.push(Header {
            frame: frame_of(&fields, matches),
            target,
        });
    }
    headers
}

fn takes_ports(proto: u8) -> bool {
    proto == IPPROTO_TCP || proto == IPPROTO_UDP
}

/// The addresses just below and just above `prefix`, where there are some.
fn address_past(prefix: &Prefix) -> Option<(Option<u32>, Option<u32>)> {
    if prefix.len == 0 {
        return None;
    }
    let base = u32::from_be_bytes([
        prefix.addr[0],
        prefix.addr[1],
        prefix.addr[2],
        prefix.addr[3],
    ]);
    let span = u32::MAX.checked_shr(u32::from(prefix.len)).unwrap_or(0);
    Some((base.checked_sub(1), (base | span).checked_add(1)))
}

/// A header's fields.
struct Fields {
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    sport: u16,
    dport: u16,
}

/// A frame inside `matches`: each field at a random point of its range, or at an end.
fn header_in(rng: &mut ChaCha8Rng, matches: &Match) -> Vec<u8> {
    frame_of(&fields_in(rng, matches), matches)
}

fn fields_in(rng: &mut ChaCha8Rng, matches: &Match) -> Fields {
    let src = address_in(rng, &matches.src);
    let dst = address_in(rng, &matches.dst);
    let proto = if matches.proto == PROTO_ANY {
        weighted(
            rng,
            &[(IPPROTO_TCP, 5), (IPPROTO_UDP, 3), (IPPROTO_ICMP, 1)],
        )
    } else {
        matches.proto as u8
    };
    Fields {
        src,
        dst,
        proto,
        sport: port_in(rng, matches.sport),
        dport: port_in(rng, matches.dport),
    }
}

fn frame_of(fields: &Fields, matches: &Match) -> Vec<u8> {
    let Fields {
        src,
        dst,
        proto,
        sport,
        dport,
    } = *fields;
    let transport = match proto {
        IPPROTO_TCP => Transport::Tcp {
            sport,
            dport,
            flags: 0x02,
            payload: 0,
        },
        IPPROTO_UDP => Transport::Udp {
            sport,
            dport,
            payload: 18,
        },
        IPPROTO_ICMP => Transport::Icmp {
            icmp_type: if matches.icmp_type == ICMP_TYPE_ANY {
                8
            } else {
                matches.icmp_type as u8
            },
            code: 0,
            payload: 8,
        },
        protocol => Transport::Raw {
            protocol,
            payload: 16,
        },
    };
    FrameSpec {
        vlans: Vec::new(),
        body: Body::Ipv4 {
            src,
            dst,
            fragment: 0,
            option_words: 0,
            transport,
        },
    }
    .build()
}

fn address_in(rng: &mut ChaCha8Rng, prefix: &Prefix) -> [u8; 4] {
    let base = u32::from_be_bytes([
        prefix.addr[0],
        prefix.addr[1],
        prefix.addr[2],
        prefix.addr[3],
    ]);
    let host_bits = 32 - u32::from(prefix.len);
    let span = if host_bits == 32 {
        u32::MAX
    } else {
        (1u32 << host_bits) - 1
    };
    let offset = match rng.random_range(0..10) {
        0 => 0,
        1 => span,
        _ => rng.random::<u32>() & span,
    };
    let address = (base & !span) | offset;
    if prefix.len == 0 && address.to_be_bytes()[..3] == MISS_V4_NET[..3] {
        // The misses' network stays missed.
        return [198, 18, 0, 2];
    }
    address.to_be_bytes()
}

fn port_in(rng: &mut ChaCha8Rng, range: PortRange) -> u16 {
    match rng.random_range(0..10) {
        0 => range.first,
        1 => range.last,
        _ => rng.random_range(range.first..=range.last),
    }
}

fn port_range(rng: &mut ChaCha8Rng, class: PortClass) -> PortRange {
    match class {
        Wildcard => PortRange::ANY,
        High => PortRange {
            first: 1024,
            last: u16::MAX,
        },
        Low => PortRange {
            first: 0,
            last: 1023,
        },
        Range => {
            let (first, last) = RANGES[rng.random_range(0..RANGES.len())];
            PortRange { first, last }
        }
        Exact => {
            // Services by popularity: the first few most of the time.
            let index = (rng.random::<f64>().powi(3) * SERVICES.len() as f64) as usize;
            let port = SERVICES[index.min(SERVICES.len() - 1)];
            PortRange {
                first: port,
                last: port,
            }
        }
    }
}

/// A prefix of `len` bits (a wildcard for 0): nested in one already made, with the profile's
/// chance, or new, mostly in one of the busy networks.
fn prefix(
    rng: &mut ChaCha8Rng,
    params: &Params,
    busy: &[u8],
    made: &mut Vec<Prefix>,
    len: u8,
) -> Prefix {
    if len == 0 {
        return Prefix::ANY;
    }
    let shorter: Vec<&Prefix> = made.iter().filter(|made| made.len < len).collect();
    let addr = if !shorter.is_empty() && rng.random_bool(params.nesting) {
        let outer = shorter[rng.random_range(0..shorter.len())];
        let base = u32::from_be_bytes([outer.addr[0], outer.addr[1], outer.addr[2], outer.addr[3]]);
        let free = u32::MAX >> outer.len;
        base | (rng.random::<u32>() & free)
    } else {
        let first = if rng.random_bool(params.skew) {
            busy[rng.random_range(0..busy.len())]
        } else {
            unicast_octet(rng)
        };
        u32::from(first) << 24 | (rng.random::<u32>() >> 8)
    };
    let mut bytes = [0; 16];
    bytes[..4].copy_from_slice(&addr.to_be_bytes());
    if bytes[..3] == MISS_V4_NET[..3] {
        // Never cover the misses' network.
        bytes[2] ^= 0x80;
    }
    let prefix = Prefix::new(Family::Ipv4, bytes, len);
    made.push(prefix);
    prefix
}

/// A first octet of unicast space, not 0, 127, multicast or above, and not 192 (where the
/// misses' network lies).
fn unicast_octet(rng: &mut ChaCha8Rng) -> u8 {
    loop {
        let octet = rng.random_range(1..224);
        if octet != 127 && octet != 192 {
            return octet;
        }
    }
}

fn weighted<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, weight)| weight).sum();
    let mut point = rng.random_range(0..total);
    for (item, weight) in items {
        if point < *weight {
            return *item;
        }
        point -= weight;
    }
    items[items.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::SliceFrame;
    use crate::parse::parse;

    fn share(rules: &[GenRule], test: impl Fn(&Match) -> bool) -> f64 {
        rules.iter().filter(|rule| test(&rule.matches)).count() as f64 / rules.len() as f64
    }

    #[test]
    fn sets_are_deterministic_distinct_and_of_the_size_asked() {
        for profile in Profile::ALL {
            let set = rules(profile, 9, 10_000);
            assert_eq!(set.len(), 10_000, "{profile:?}");
            let again = rules(profile, 9, 10_000);
            assert!(set.iter().zip(&again).all(|(a, b)| a.matches == b.matches));
            let mut matches: Vec<Match> = set.iter().map(|rule| rule.matches).collect();
            matches.sort();
            matches.dedup();
            assert_eq!(matches.len(), 10_000, "{profile:?}: distinct");
            assert!(
                set.iter()
                    .enumerate()
                    .all(|(i, rule)| rule.priority == i as u32 + 1)
            );
        }
    }

    #[test]
    fn profiles_keep_their_character() {
        let exact_dport = |m: &Match| m.dport.first == m.dport.last;
        let host_dst = |m: &Match| m.dst.len == 32;
        let any_src = |m: &Match| m.src.is_any();
        let any_dst = |m: &Match| m.dst.is_any();
        let acl = rules(Profile::Acl, 1, 10_000);
        let fw = rules(Profile::Fw, 1, 10_000);
        let ipc = rules(Profile::Ipc, 1, 10_000);
        // ACLs: services on hosts.
        assert!(share(&acl, exact_dport) > 0.4);
        assert!(share(&acl, host_dst) > 0.5);
        // Firewalls: wildcards on either side.
        assert!(share(&fw, |m| any_src(m) || any_dst(m)) > 0.5);
        assert!(share(&fw, |m| m.proto == PROTO_ANY) > 0.2);
        // IP chains: both addresses named.
        assert!(share(&ipc, |m| !any_src(m) && !any_dst(m)) > 0.7);
        for (set, name) in [(&acl, "acl"), (&fw, "fw"), (&ipc, "ipc")] {
            let nested = set
                .iter()
                .filter(|rule| {
                    !rule.matches.src.is_any()
                        && set.iter().any(|other| {
                            other.matches.src.len < rule.matches.src.len
                                && !other.matches.src.is_any()
                                && crate::rule::mask(rule.matches.src.addr, other.matches.src.len)
                                    == other.matches.src.addr
                        })
                })
                .take(100)
                .count();
            assert_eq!(nested, 100, "{name}: source prefixes nest");
        }
    }

    #[test]
    fn every_header_falls_inside_its_rule_and_some_on_its_edges() {
        for profile in Profile::ALL {
            let set = rules(profile, 4, 1_000);
            let headers = trace(&set, 5, 20_000);
            assert_eq!(headers.len(), 20_000);
            let mut edges = 0;
            for header in &headers {
                let packet = parse(&SliceFrame::new(&header.frame));
                let matches = &set[header.target].matches;
                assert!(matches.matches(&packet), "{profile:?}: {header:?}");
                if packet.ports().is_some_and(|(_, dport)| {
                    !matches.dport.is_any()
                        && matches.dport.first != matches.dport.last
                        && (dport == matches.dport.first || dport == matches.dport.last)
                }) {
                    edges += 1;
                }
            }
            assert!(edges > 50, "{profile:?}: {edges} headers on a range's end");
            // Locality: bursts, so fewer distinct targets than headers.
            let mut targets: Vec<usize> = headers.iter().map(|header| header.target).collect();
            targets.dedup();
            assert!(targets.len() < headers.len() * 3 / 4, "{profile:?}");
        }
    }

    #[test]
    fn an_edge_header_misses_its_rule_by_one_step_of_one_field() {
        for profile in Profile::ALL {
            let set = rules(profile, 4, 1_000);
            let mut outside = 0;
            for header in edges(&set, 6, 5_000) {
                let packet = parse(&SliceFrame::new(&header.frame));
                let matches = &set[header.target].matches;
                if matches.matches(&packet) {
                    // Only a rule with nothing to step past: every field `any`.
                    assert!(matches.src.is_any() && matches.dst.is_any(), "{header:?}");
                    continue;
                }
                outside += 1;
                // Exactly one field is outside its range.
                let inside = |prefix: &Prefix, addr| prefix.is_any() || prefix.contains(addr);
                let moved = [
                    !inside(&matches.src, &packet.src),
                    !inside(&matches.dst, &packet.dst),
                    packet
                        .ports()
                        .is_some_and(|(sport, _)| !matches.sport.contains(sport)),
                    packet
                        .ports()
                        .is_some_and(|(_, dport)| !matches.dport.contains(dport)),
                ];
                assert_eq!(moved.iter().filter(|&&m| m).count(), 1, "{header:?}");
            }
            assert!(outside > 4_000, "{profile:?}: {outside} of 5,000 outside");
        }
    }
}
