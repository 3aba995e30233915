//! The filter in the kernel, through BPF_PROG_TEST_RUN, held to net-common's reference
//! classifier: on every frame the kernel's verdict, whether a rule decided it, and which rule's
//! counter moved must be what `net_common::rule::classify` says.

mod support;

use aya::{
    Ebpf,
    programs::{TestRun, TestRunOptions},
};
use net_common::{
    frame::SliceFrame,
    parse::parse,
    rule::{Action, Family, Fragments, Match, PROTO_ARP, PortRange, Prefix, Reason, classify},
    stats::Stats,
    testing::{FrameSpec, Transport, catalogue, ipv6_with},
};
use netxdp::{
    counters::CounterMap,
    filter::{DEFAULT_PRIORITY, FilterMaps, NewRule, RuleSet},
    program::{self, KernelLog},
};
use support::{hex, kernel_available};

/// The program loaded (not attached), with its counters and filter maps.
struct Filter {
    ebpf: Ebpf,
    counters: CounterMap,
    maps: FilterMaps,
    set: RuleSet,
}

impl Filter {
    fn load() -> Self {
        let mut ebpf = program::load(None, KernelLog::Off).expect("load the XDP program");
        let counters = CounterMap::take_from(&mut ebpf).expect("STATS map");
        let maps = FilterMaps::take_from(&mut ebpf).expect("filter maps");
        Self {
            ebpf,
            counters,
            maps,
            set: RuleSet::default(),
        }
    }

    /// Puts `set` in force.
    fn commit(&mut self, mut set: RuleSet) {
        self.maps.commit(&mut set).expect("commit the rule set");
        assert_eq!(self.maps.load().expect("load the rule set"), set);
        self.set = set;
    }

    fn run(&mut self, frame: &[u8]) -> (u32, Stats) {
        let before = self.counters.read().expect("read counters");
        let result = program::xdp_program(&mut self.ebpf)
            .expect("program")
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::new()
            })
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on {}: {e}", hex(frame)));
        let after = self.counters.read().expect("read counters");
        (result.return_value, after.since(&before))
    }

    /// Runs `frame` and compares with the reference; the error describes the disagreement.
    fn check(&mut self, frame: &[u8]) -> Result<Reason, String> {
        let packet = parse(&SliceFrame::new(frame));
        let want = classify(
            self.set.rules(),
            self.set.policy,
            self.set.fragments,
            &packet,
        );
        let expected_rule = match want.reason {
            Reason::Rule(id) => self.set.get(id).copied(),
            _ => None,
        };
        let hits_before = expected_rule.map(|rule| self.maps.counter(&rule).expect("counter"));
        let (verdict, delta) = self.run(frame);
        let hits_after = expected_rule.map(|rule| self.maps.counter(&rule).expect("counter"));
        let rule_hit = match (hits_before, hits_after) {
            (Some(before), Some(after)) => after.packets - before.packets == 1,
            _ => true,
        };
        let matched = delta.matched.packets == 1;
        if verdict != want.action as u32 || matched != expected_rule.is_some() || !rule_hit {
            return Err(format!(
                "frame {}\nparsed {packet:?}\nreference {want:?}\nkernel verdict {verdict}, \
                 decided by a rule: {matched}, the reference's rule counted: {rule_hit}",
                hex(frame)
            ));
        }
        Ok(want.reason)
    }
}

fn prefix(family: Family, text: &str, len: u8) -> Prefix {
    let addr = match text.parse::<std::net::IpAddr>().expect("address") {
        std::net::IpAddr::V4(v4) => {
            let mut addr = [0; 16];
            addr[..4].copy_from_slice(&v4.octets());
            addr
        }
        std::net::IpAddr::V6(v6) => v6.octets(),
    };
    Prefix::new(family, addr, len)
}

fn rule(action: Action, priority: u32, matches: Match) -> NewRule {
    NewRule {
        action,
        priority,
        matches,
    }
}

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
    ]
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
        .collect();
    let mut deciding = std::collections::HashSet::new();
    for policy in [Action::Pass, Action::Drop] {
        for fragments in [Fragments::Policy, Fragments::Drop] {
            // Each rule alone, then all of them.
            let all = catalogue_rules();
            let sets = all.iter().map(|one| vec![*one]).chain([all.clone()]);
            for rules in sets {
                let mut set = RuleSet::default();
                set.policy = policy;
                set.fragments = fragments;
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
