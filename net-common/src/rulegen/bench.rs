//! Frames for a rule set's benchmarks: for each rule, a frame it decides, and frames that
//! miss every rule ([`bench_frames`]); a frame a given match takes ([`frame_matching`]).

use alloc::vec::Vec;

use crate::frame::SliceFrame;
use crate::parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, parse};
use crate::rule::{
    Action, Family, Fragments, ICMP_TYPE_ANY, Malformed, Match, PROTO_ANY, PROTO_ARP, PortRange,
    Prefix, Reason, Rule, classify, mask,
};
use crate::testing::{Body, FrameSpec, Transport};

use super::*;

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
