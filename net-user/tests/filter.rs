//! The filter in the kernel, through BPF_PROG_TEST_RUN, held to net-common's reference
//! classifier: on every frame the kernel's verdict, whether a rule decided it, and which rule's
//! counter moved must be what `net_common::rule::classify` says; and over a run, every rule's
//! counters must equal the reference's tally.
//!
//! The random runs are seeded (`NETXDP_SEED` overrides the large sets' seed; proptest prints
//! and persists its own) and property-based: a failure shrinks to the fewest rules that still
//! disagree on the first frame that shows it, and prints both.

#[path = "support/filter.rs"]
mod filtering;
mod support;

use net_common::{
    rule::{Action, Family, Fragments, Malformed, Match, PROTO_ARP, PortRange, Reason},
    rulegen::{PoolFrameGenerator, random_rules},
    testing::{Body, Extension, FrameSpec, Transport, catalogue, cut_datagram, ipv4, ipv6_with},
};
use netxdp::filter::{DEFAULT_PRIORITY, NewRule, RuleSet, compile::Classifier};

use filtering::{Filter, prefix, rule};
use support::kernel_available;

/// Rules over the catalogue's addresses (198.18.0.2 -> 198.18.0.1, fd00::2 -> fd00::1) that
/// overlap every way: nested prefixes, protocol, ports, ICMP types, ARP and ND named.
fn catalogue_rules() -> Vec<NewRule> {
    use Action::{Drop, Pass};
    let udp = 17;
    let tcp = 6;
    vec![
        rule(
            Drop,
            DEFAULT_PRIORITY,
            Match {
                src: prefix(Family::Ipv4, "198.18.0.0", 15),
                proto: udp,
                dport: PortRange {
                    first: 50,
                    last: 60,
                },
                ..Match::ANY
            },
        ),
        rule(
            Pass,
            10,
            Match {
                src: prefix(Family::Ipv4, "198.18.0.2", 32),
                proto: udp,
                sport: PortRange {
                    first: 5353,
                    last: 5353,
                },
                ..Match::ANY
            },
        ),
        rule(
            Drop,
            20,
            Match {
                dst: prefix(Family::Ipv6, "fd00::", 64),
                proto: tcp,
                ..Match::ANY
            },
        ),
        rule(
            Drop,
            30,
            Match {
                proto: 1,
                icmp_type: 8,
                ..Match::ANY
            },
        ),
        rule(
            Drop,
            40,
            Match {
                proto: 58,
                icmp_type: 135,
                ..Match::ANY
            },
        ),
        rule(
            Pass,
            50,
            Match {
                proto: PROTO_ARP,
                ..Match::ANY
            },
        ),
        rule(
            Drop,
            60,
            Match {
                src: prefix(Family::Ipv6, "fd00::2", 128),
                ..Match::ANY
            },
        ),
        // Names ARP's sender as well as IPv4's source.
        rule(
            Drop,
            70,
            Match {
                src: prefix(Family::Ipv4, "198.18.0.2", 32),
                ..Match::ANY
            },
        ),
    ]
}

/// The frames an attacker crafts to get past rules, and neighbour traffic that must not be
/// taken for the real thing: tiny first fragments (IPv4 and IPv6, cut inside the transport
/// header and inside the extension header chain), an IPv4 fragment at offset 1, an IPv6
/// chain with two fragment headers, long chains, and neighbour discovery with a hop limit
/// other than 255.
fn evasive_frames() -> Vec<Vec<u8>> {
    let syn = Transport::Tcp {
        sport: 40000,
        dport: 443,
        flags: 0x02,
        payload: 0,
    };
    let udp = Transport::Udp {
        sport: 5353,
        dport: 53,
        payload: 10,
    };
    let first_v4 = |transport| {
        let mut spec = ipv4(transport);
        if let Body::Ipv4 { fragment, .. } = &mut spec.body {
            *fragment = 0x2000;
        }
        spec.build()
    };
    let offset_one = {
        let mut spec = ipv4(udp);
        if let Body::Ipv4 { fragment, .. } = &mut spec.body {
            *fragment = 1;
        }
        spec.build()
    };
    let first_v6 = ipv6_with(
        vec![
            Extension::Fragment {
                offset: 0,
                more: true,
            },
            Extension::DestinationOptions { units: 0 },
            Extension::DestinationOptions { units: 1 },
        ],
        udp,
    )
    .build();
    let two_fragment_headers = ipv6_with(
        vec![
            Extension::Fragment {
                offset: 0,
                more: false,
            },
            Extension::Fragment {
                offset: 0,
                more: true,
            },
        ],
        udp,
    )
    .build();
    let mut nd_hop_limit_64 = neighbour_solicitation().build();
    nd_hop_limit_64[14 + 7] = 64;
    let nd_fragmented = ipv6_with(
        vec![Extension::Fragment {
            offset: 0,
            more: false,
        }],
        Transport::Icmpv6 {
            icmp_type: 135,
            code: 0,
            payload: 20,
        },
    )
    .build();
    let mut frames = vec![
        offset_one,
        two_fragment_headers,
        nd_hop_limit_64,
        nd_fragmented,
        ipv6_with(vec![Extension::DestinationOptions { units: 0 }; 32], syn).build(),
    ];
    // 8 and 16 bytes of TCP (RFC 1858), 4 of UDP; IPv6 cut before the chain's end (RFC 7112).
    for (frame, cut) in [
        (first_v4(syn), 8),
        (first_v4(syn), 16),
        (first_v4(udp), 4),
        (first_v6.clone(), 8 + 8 + 4),
        (first_v6, 8 + 8 + 16 + 4),
    ] {
        frames.push(cut_datagram(&frame, cut).expect("a cut IP frame"));
    }
    frames
}

/// ICMPv6 type 135 from fd00::2.
fn neighbour_solicitation() -> FrameSpec {
    ipv6_with(
        Vec::new(),
        Transport::Icmpv6 {
            icmp_type: 135,
            code: 0,
            payload: 20,
        },
    )
}

#[test]
fn catalogue_frames_and_every_truncation_get_the_reference_verdict_and_rule() {
    if !kernel_available("catalogue_frames_and_every_truncation_get_the_reference_verdict_and_rule")
    {
        return;
    }
    let mut filter = Filter::load();
    let frames: Vec<Vec<u8>> = catalogue()
        .into_iter()
        .map(|case| case.spec.build())
        .chain([
            FrameSpec::ipv4_udp(5353, 53, 10).build(),
            neighbour_solicitation().build(),
        ])
        .chain(evasive_frames())
        .collect();
    let mut deciding = std::collections::HashSet::new();
    let settings = [Action::Pass, Action::Drop].into_iter().flat_map(|policy| {
        [Fragments::Policy, Fragments::Drop]
            .into_iter()
            .flat_map(move |fragments| {
                [Malformed::Drop, Malformed::Policy].map(|malformed| (policy, fragments, malformed))
            })
    });
    for (policy, fragments, malformed) in settings {
        {
            // Each rule alone, then all of them.
            let all = catalogue_rules();
            let sets = all.iter().map(|one| vec![*one]).chain([all.clone()]);
            for rules in sets {
                let mut set = RuleSet::default();
                set.policy = policy;
                set.fragments = fragments;
                set.malformed = malformed;
                set.replace(&rules).expect("valid rules");
                filter.commit(set);
                for frame in &frames {
                    for len in 14..=frame.len() {
                        let reason = filter
                            .check(&frame[..len])
                            .unwrap_or_else(|e| panic!("{e}"));
                        if let Reason::Rule(id) = reason {
                            deciding.insert(filter.set.get(id).expect("rule").matches);
                        }
                    }
                }
            }
        }
    }
    // Every rule decided some frame, or the agreement proves little.
    assert_eq!(deciding.len(), catalogue_rules().len());
}

/// The rules a proptest case asks for: one generated rule per seed, duplicates dropped, so
/// that shrinking removes whole rules.
fn rules_from_seeds(seeds: &[u64]) -> Vec<NewRule> {
    let mut rules: Vec<NewRule> = Vec::with_capacity(seeds.len());
    for &seed in seeds {
        let generated = random_rules(seed, 1)[0];
        if rules.iter().all(|rule| rule.matches != generated.matches) {
            rules.push(NewRule {
                action: generated.action,
                priority: generated.priority,
                matches: generated.matches,
                limit: net_common::limit::Limit::NONE,
            });
        }
    }
    rules
}

const SMALL_SET_CASES: u32 = 100;
const FRAMES_PER_CASE: usize = 2_000;

#[test]
fn small_random_rule_sets_agree_with_the_reference_on_200k_frames() {
    use proptest::prelude::*;
    if !kernel_available("small_random_rule_sets_agree_with_the_reference_on_200k_frames") {
        return;
    }
    let filter = std::cell::RefCell::new(Filter::load());
    let decided = std::cell::Cell::new(0u64);
    let searched = std::cell::Cell::new(0u64);
    let config = ProptestConfig {
        cases: SMALL_SET_CASES,
        // A kernel round trip per frame: shrink within bounds.
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        seeds in prop::collection::vec(any::<u64>(), 1..=48),
        drop_policy in any::<bool>(),
        drop_fragments in any::<bool>(),
        classify_malformed in any::<bool>(),
        frame_seed in any::<u64>(),
    )| {
        let mut filter = filter.borrow_mut();
        let policy = if drop_policy { Action::Drop } else { Action::Pass };
        let fragments = if drop_fragments { Fragments::Drop } else { Fragments::Policy };
        let malformed = if classify_malformed { Malformed::Policy } else { Malformed::Drop };
        let rules = rules_from_seeds(&seeds);
        filter.apply(&rules, policy, fragments, malformed);
        let trees = filter.maps.active_config().expect("config").trees;
        prop_assert!(trees > 0, "{} rules took no tree", rules.len());
        let mut frames = PoolFrameGenerator::new(frame_seed);
        let result = filter.check_all((0..FRAMES_PER_CASE).map(|_| frames.next_frame()));
        match result {
            Ok((count, slow)) => {
                decided.set(decided.get() + count);
                searched.set(searched.get() + slow);
            }
            Err(disagreement) => {
                return Err(TestCaseError::fail(format!(
                    "{disagreement}\npolicy {policy:?}, fragments {fragments:?}, malformed \
                     {malformed:?}, rules (by rank):\n{:#?}",
                    filter.set.rules()
                )));
            }
        }
    });
    let frames = u64::from(SMALL_SET_CASES) * FRAMES_PER_CASE as u64;
    assert!(frames >= 200_000);
    // The pools make rules and frames meet: the agreement covers rule matches, not just
    // the policy.
    assert!(
        decided.get() > frames / 5,
        "{} of {frames} frames matched a rule",
        decided.get()
    );
}

fn seed() -> u64 {
    std::env::var("NETXDP_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0x6e65_7478_6470)
}

/// Sets of 1,000 and 10,000 rules drawn from small pools, so that every rule overlaps
/// hundreds of others: no decision tree separates them within its work limit, and the
/// bit-vector search classifies them, often past its fast path.
#[test]
fn large_random_rule_sets_agree_with_the_reference() {
    if !kernel_available("large_random_rule_sets_agree_with_the_reference") {
        return;
    }
    let seed = seed();
    let mut filter = Filter::load();
    for (count, frames, policy) in [
        (1_000, 20_000, Action::Drop),
        (10_000, 20_000, Action::Pass),
    ] {
        // Without the rule that matches everything, if drawn: the frames that match nothing
        // must meet the policy too.
        let rules: Vec<NewRule> = random_rules(seed ^ count as u64, count)
            .into_iter()
            .filter(|rule| rule.matches != Match::ANY)
            .map(|rule| NewRule {
                action: rule.action,
                priority: rule.priority,
                matches: rule.matches,
                limit: net_common::limit::Limit::NONE,
            })
            .collect();
        assert!(rules.len() >= count - 1);
        filter.apply(&rules, policy, Fragments::Drop, Malformed::Drop);
        let trees = filter.maps.active_config().expect("config").trees;
        assert_eq!(trees, 0, "{count} pool rules took trees");
        let mut generator = PoolFrameGenerator::new(seed);
        let (decided, searched) = filter
            .check_all((0..frames).map(|_| generator.next_frame()))
            .unwrap_or_else(|e| panic!("seed {seed:#x}, {count} rules: {e}"));
        assert!(
            decided > frames as u64 / 5,
            "{decided} of {frames} frames matched a rule"
        );
        assert!(
            decided < frames as u64,
            "{decided} of {frames} frames matched a rule"
        );
        assert!(
            searched > frames as u64 / 100,
            "{searched} of {frames} frames searched"
        );
    }
}

/// ClassBench-style sets (acl, fw, ipc) of 1,000 and 10,000 rules, classified by their
/// decision trees, on 210,000 frames: each set's own trace (headers aimed at rules with
/// locality, a fifth of each field at a range's end or a prefix's edge) and headers one step
/// outside a rule on one field. Then the bit-vector search, the fallback for sets whose trees
/// do not fit, on the 1,000-rule sets.
#[test]
fn classbench_sets_agree_with_the_reference_on_their_traces_and_edges() {
    use net_common::classbench::{Profile, edges, rules, trace};
    if !kernel_available("classbench_sets_agree_with_the_reference_on_their_traces_and_edges") {
        return;
    }
    let seed = seed();
    let mut filter = Filter::load();
    let mut frames = 0;
    for (classifier, sizes, headers, outside) in [
        (Classifier::Trees, &[1_000, 10_000][..], 30_000, 5_000),
        (Classifier::BitVector, &[1_000][..], 5_000, 1_000),
    ] {
        filter.maps.use_classifier(classifier);
        for profile in Profile::ALL {
            for &count in sizes {
                let context = format!(
                    "seed {seed:#x}, {} {count}, {classifier:?}",
                    profile.as_str()
                );
                let set = rules(profile, seed ^ count as u64, count);
                filter.apply(
                    &support::new_rules(set.iter().copied()),
                    Action::Pass,
                    Fragments::Policy,
                    Malformed::Drop,
                );
                let trees = filter.maps.active_config().expect("config").trees;
                assert_eq!(
                    trees > 0,
                    classifier == Classifier::Trees,
                    "{context}: {trees} trees"
                );
                let inside = trace(&set, seed, headers).into_iter();
                let (decided, _) = filter
                    .check_all(inside.map(|header| header.frame))
                    .unwrap_or_else(|e| panic!("{context}: {e}"));
                // Every header was aimed inside a rule.
                assert_eq!(decided, headers as u64, "{context}");
                let past = edges(&set, seed, outside).into_iter();
                filter
                    .check_all(past.map(|header| header.frame))
                    .unwrap_or_else(|e| panic!("{context}, edges: {e}"));
                if classifier == Classifier::Trees {
                    frames += headers + outside;
                }
            }
        }
    }
    assert!(frames >= 200_000, "{frames} frames on the trees");
}

#[test]
fn the_full_search_finds_a_rule_behind_words_of_false_candidates() {
    let test = "the_full_search_finds_a_rule_behind_words_of_false_candidates";
    if !kernel_available(test) {
        return;
    }
    // Ranks 0 to 199 alternate between rules on the packet's source (but TCP) and rules on
    // UDP (but another source): every word of the first three has candidates in both fields
    // and none in common, so the fast path hands over to the full search, which must walk
    // past them to rank 200.
    let source = |last: u8| prefix(Family::Ipv4, &format!("198.18.0.{last}"), 32);
    let mut rules: Vec<NewRule> = (0..200u16)
        .map(|rank| {
            let matches = if rank % 2 == 0 {
                Match {
                    src: source(1),
                    proto: 6,
                    dport: PortRange {
                        first: rank,
                        last: rank,
                    },
                    ..Match::ANY
                }
            } else {
                Match {
                    src: source(9),
                    proto: 17,
                    dport: PortRange {
                        first: rank,
                        last: rank,
                    },
                    ..Match::ANY
                }
            };
            rule(Action::Pass, DEFAULT_PRIORITY, matches)
        })
        .collect();
    rules.push(rule(
        Action::Drop,
        DEFAULT_PRIORITY,
        Match {
            src: source(1),
            proto: 17,
            ..Match::ANY
        },
    ));
    let mut filter = Filter::load();
    filter.maps.use_classifier(Classifier::BitVector);
    filter.apply(&rules, Action::Pass, Fragments::Policy, Malformed::Drop);
    let frame = FrameSpec {
        vlans: Vec::new(),
        body: Body::Ipv4 {
            src: [198, 18, 0, 1],
            dst: [198, 18, 0, 2],
            fragment: 0,
            option_words: 0,
            transport: Transport::Udp {
                sport: 1000,
                dport: 53,
                payload: 10,
            },
        },
    }
    .build();
    let searched_before = filter.counters.read().expect("counters").searched.packets;
    let reason = filter.check(&frame).unwrap_or_else(|e| panic!("{e}"));
    let last = filter.set.rules().last().expect("rules").id;
    assert_eq!(reason, Reason::Rule(last));
    let searched = filter.counters.read().expect("counters").searched.packets - searched_before;
    assert_eq!(
        searched, 1,
        "the fast path handed the packet to the full search"
    );

    // Anyone with access to the pins can empty the program array: the packet then gets the
    // default, and the failed search is counted.
    let map = filter
        .ebpf
        .map_mut(net_common::names::SEARCH_MAP)
        .expect("the SEARCH map");
    aya::maps::ProgramArray::try_from(map)
        .expect("a program array")
        .clear_index(&0)
        .expect("empty the SEARCH slot");
    let (verdict, delta) = filter.run(&frame);
    assert_eq!(verdict, Action::Pass as u32, "the policy, pass");
    assert_eq!(delta.search_failed.packets, 1, "{delta:?}");
    assert_eq!(
        (delta.searched.packets, delta.matched.packets),
        (0, 0),
        "{delta:?}"
    );
}
