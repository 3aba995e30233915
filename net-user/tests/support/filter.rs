//! What the kernel filter tests share (`tests/filter.rs`, `tests/filter_capacity.rs`): the
//! program loaded with its filter maps, held to the reference classifier frame by frame.
#![allow(dead_code)] // Each filter test binary uses its own part of this module.

use std::collections::HashMap;

use aya::Ebpf;
use net_common::{
    frame::SliceFrame,
    parse::parse,
    rule::{Action, Family, Fragments, Malformed, Match, Prefix, Reason, classify},
    stats::Stats,
};
use netxdp::{
    counters::CounterMap,
    filter::{FilterMaps, NewRule, RuleSet},
    program,
};

use crate::support::{hex, run_counted};

/// The program loaded (not attached), with its counters and filter maps.
pub struct Filter {
    pub ebpf: Ebpf,
    pub counters: CounterMap,
    pub maps: FilterMaps,
    pub set: RuleSet,
}

impl Filter {
    pub fn load() -> Self {
        let mut ebpf =
            program::load(None, program::Options::default()).expect("load the XDP program");
        let counters = CounterMap::take_from(&mut ebpf).expect("STATS map");
        let maps = FilterMaps::take_from(&mut ebpf).expect("filter maps");
        Self {
            ebpf,
            counters,
            maps,
            set: RuleSet::default(),
        }
    }

    /// Puts `rules` in force, with these settings, as `netxdp apply` would: rules that stay
    /// keep their ids and counters, new ones get fresh ids.
    pub fn apply(
        &mut self,
        rules: &[NewRule],
        policy: Action,
        fragments: Fragments,
        malformed: Malformed,
    ) {
        let mut set = self.maps.load().expect("load the rule set");
        set.replace(rules).expect("valid rules");
        set.policy = policy;
        set.fragments = fragments;
        set.malformed = malformed;
        self.commit(set);
    }

    /// Every rule's packet count, by id.
    pub fn rule_packets(&self) -> HashMap<u32, u64> {
        self.set
            .rules()
            .iter()
            .map(|rule| (rule.id, self.maps.counter(rule).expect("counter").packets))
            .collect()
    }

    /// Runs `frames` and checks each against the reference, then checks that every rule's
    /// counter moved by the reference's tally. Returns how many frames a rule decided, and how
    /// many took the full search.
    pub fn check_all(
        &mut self,
        frames: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<(u64, u64), String> {
        let before = self.rule_packets();
        let searched_before = self.counters.read().expect("counters").searched.packets;
        let mut tally: HashMap<u32, u64> = HashMap::new();
        for frame in frames {
            if let Reason::Rule(id) = self.check(&frame)? {
                *tally.entry(id).or_default() += 1;
            }
        }
        let after = self.rule_packets();
        for (id, count) in &after {
            let moved = count - before.get(id).copied().unwrap_or(0);
            let want = tally.get(id).copied().unwrap_or(0);
            if moved != want {
                return Err(format!(
                    "rule {id} counted {moved} packets, the reference {want}"
                ));
            }
        }
        let searched = self.counters.read().expect("counters").searched.packets - searched_before;
        Ok((tally.values().sum(), searched))
    }

    /// Puts `set` in force, and checks that the generation now active holds exactly its
    /// tables, whether the commit rewrote it whole or wrote only what differed.
    pub fn commit(&mut self, mut set: RuleSet) {
        self.maps.commit(&mut set).expect("commit the rule set");
        assert_eq!(self.maps.load().expect("load the rule set"), set);
        self.maps
            .verify()
            .expect("the active generation holds exactly the set in force");
        self.set = set;
    }

    pub fn run(&mut self, frame: &[u8]) -> (u32, Stats) {
        run_counted(&mut self.ebpf, &self.counters, frame)
    }

    /// Runs `frame` and compares with the reference: the verdict, the rule whose counter
    /// moved, and every counter of the block, drop reasons included (the full search's own
    /// counter aside); the error describes the disagreement.
    pub fn check(&mut self, frame: &[u8]) -> Result<Reason, String> {
        let packet = parse(&SliceFrame::new(frame));
        let want = classify(
            self.set.rules(),
            self.set.policy,
            self.set.fragments,
            self.set.malformed,
            &packet,
        );
        let mut want_counted = Stats::default();
        want_counted.record(&packet, want.action as u32, want.reason.code());
        let expected_rule = match want.reason {
            Reason::Rule(id) => self.set.get(id).copied(),
            _ => None,
        };
        let hits_before = expected_rule.map(|rule| self.maps.counter(&rule).expect("counter"));
        let (verdict, mut delta) = self.run(frame);
        // Which packets the fast path settles is the kernel's business.
        delta.searched = Default::default();
        let hits_after = expected_rule.map(|rule| self.maps.counter(&rule).expect("counter"));
        let rule_hit = match (hits_before, hits_after) {
            (Some(before), Some(after)) => after.packets - before.packets == 1,
            _ => true,
        };
        let matched = delta.matched.packets == 1;
        if verdict != want.action as u32
            || matched != expected_rule.is_some()
            || !rule_hit
            || delta != want_counted
        {
            return Err(format!(
                "frame {}\nparsed {packet:?}\nreference {want:?}\nkernel verdict {verdict}, \
                 decided by a rule: {matched}, the reference's rule counted: {rule_hit}\n\
                 kernel counted {delta:?}\nreference counts {want_counted:?}",
                hex(frame)
            ));
        }
        Ok(want.reason)
    }
}

pub fn prefix(family: Family, text: &str, len: u8) -> Prefix {
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

pub fn rule(action: Action, priority: u32, matches: Match) -> NewRule {
    NewRule {
        action,
        priority,
        matches,
        limit: net_common::limit::Limit::NONE,
    }
}
