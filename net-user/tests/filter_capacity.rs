//! The filter's capacity in the kernel: two full generations of rules with the most table
//! entries a rule can make (a distinct source and destination host each), commit after commit,
//! every change checked against the reference classifier (see `tests/filter.rs`).

#[path = "support/filter.rs"]
mod filtering;
mod support;

use net_common::{
    rule::{Action, Family, Fragments, Malformed, Match, Prefix, Reason},
    testing::{Body, FrameSpec, Transport, ipv6_with},
};
use netxdp::filter::{DEFAULT_PRIORITY, NewRule};

use filtering::{Filter, prefix, rule};
use support::kernel_available;

/// `count` rules, each dropping what one source host sends one destination host of its own:
/// a distinct source and destination per rule, the most entries a rule set can put in the
/// host tables (a source and a destination entry per rule) and the tries. `first` picks
/// the addresses, so that sets with different `first` share none.
fn host_pair_rules(family: Family, first: u32, count: u32) -> Vec<NewRule> {
    (first..first + count)
        .map(|i| {
            let [_, _, high, low] = i.to_be_bytes();
            let (src, dst) = if family == Family::Ipv6 {
                (
                    prefix(family, &format!("fd00:0:0:1::{high:x}:{low:x}"), 128),
                    prefix(family, &format!("fd00:0:0:2::{high:x}:{low:x}"), 128),
                )
            } else {
                (
                    prefix(family, &format!("198.18.{high}.{low}"), 32),
                    prefix(family, &format!("198.19.{high}.{low}"), 32),
                )
            };
            rule(
                Action::Drop,
                DEFAULT_PRIORITY,
                Match {
                    src,
                    dst,
                    ..Match::ANY
                },
            )
        })
        .collect()
}

/// A UDP frame from `src` to `dst` (hosts of one family).
fn udp_between(src: &Prefix, dst: &Prefix) -> Vec<u8> {
    let mut spec = if src.family() == Family::Ipv6 {
        ipv6_with(
            Vec::new(),
            Transport::Udp {
                sport: 1000,
                dport: 53,
                payload: 10,
            },
        )
    } else {
        FrameSpec::ipv4_udp(1000, 53, 10)
    };
    match &mut spec.body {
        Body::Ipv4 {
            src: from, dst: to, ..
        } => {
            from.copy_from_slice(&src.addr[..4]);
            to.copy_from_slice(&dst.addr[..4]);
        }
        Body::Ipv6 {
            src: from, dst: to, ..
        } => {
            *from = src.addr;
            *to = dst.addr;
        }
        other => panic!("not an IP frame: {other:?}"),
    }
    spec.build()
}

/// Frames that meet the set in force at a few ranks: from a rule's source to its destination
/// (that rule drops it), to the next rule's destination (no rule matches), and from the
/// destination back (no rule matches). Each must get the reference's verdict and rule.
fn check_host_pairs(filter: &mut Filter, step: &str) {
    let rules = filter.set.rules().to_vec();
    let mut decided = 0;
    for rank in [0, 1, rules.len() / 2, rules.len() - 2, rules.len() - 1] {
        let (this, next) = (rules[rank].matches, rules[(rank + 1) % rules.len()].matches);
        for frame in [
            udp_between(&this.src, &this.dst),
            udp_between(&this.src, &next.dst),
            udp_between(&this.dst, &this.src),
        ] {
            let reason = filter
                .check(&frame)
                .unwrap_or_else(|e| panic!("{step}, rank {rank}: {e}"));
            decided += u32::from(matches!(reason, Reason::Rule(_)));
        }
    }
    assert_eq!(decided, 5, "{step}: one frame in three matches its rule");
}

#[test]
fn two_full_generations_of_host_pair_rules_fit_commit_after_commit() {
    let test = "two_full_generations_of_host_pair_rules_fit_commit_after_commit";
    if !kernel_available(test) {
        return;
    }
    let full = net_common::rule::MAX_RULES as u32;
    let mut filter = Filter::load();
    // A full set; then, with it in force (one generation full), changes that each write a
    // whole generation beside it: a rule deleted, a rule added, and whole replacements by
    // sets that share no address with the one in force, so that the host tables hold two
    // full generations of distinct entries at once.
    filter.apply(
        &host_pair_rules(Family::Ipv4, 0, full),
        Action::Pass,
        Fragments::Policy,
        Malformed::Drop,
    );
    check_host_pairs(&mut filter, "10,240 IPv4 host pairs");

    let mut set = filter.maps.load().expect("load");
    let gone = set.rules()[full as usize / 3].id;
    set.remove(gone).expect("rule del");
    filter.commit(set);
    check_host_pairs(&mut filter, "one rule deleted");

    let mut set = filter.maps.load().expect("load");
    set.add(host_pair_rules(Family::Ipv4, 3 * full, 1)[0])
        .expect("rule add");
    filter.commit(set);
    assert_eq!(filter.set.rules().len(), full as usize);
    check_host_pairs(&mut filter, "one rule added");

    for (step, family, first) in [
        ("replaced by other IPv4 host pairs", Family::Ipv4, full),
        ("replaced by IPv6 host pairs", Family::Ipv6, 0),
        ("replaced by other IPv6 host pairs", Family::Ipv6, full),
        ("replaced by IPv4 host pairs again", Family::Ipv4, 0),
    ] {
        filter.apply(
            &host_pair_rules(family, first, full),
            Action::Pass,
            Fragments::Policy,
            Malformed::Drop,
        );
        check_host_pairs(&mut filter, step);
    }
}
