//! Rule counters: the per-CPU slot each rule counts in, kept by the rules that stay, given
//! (zeroed) to new ones, and read back summed over CPUs.

use std::os::fd::AsFd as _;

use anyhow::{Context as _, Result};
use aya::maps::IterableMap;
// Keys from the rule set, not the network: a fast hash.
use foldhash::{HashMap, HashSet};
use net_common::{
    names,
    rule::{COUNTER_SLOTS, Rule, RuleCounter},
};

use super::{
    RuleSet,
    generation::{UPDATE, batch_error},
    write_error::Doing,
};
use crate::bpf_batch;

use super::maps::FilterMaps;

impl FilterMaps {
    /// Rules that stay keep their slot (and counts); new ones get a free slot, returned: their
    /// counts are zeroed once no packet can still count in them for a rule of an earlier set.
    pub(super) fn assign_counter_slots(
        &self,
        set: &mut RuleSet,
        active: u32,
        count: u32,
    ) -> Result<Vec<u32>> {
        let live: HashMap<u32, u32> = self
            .read_rules(active, count)?
            .iter()
            .map(|rule| (rule.id, rule.counter_slot))
            .collect();
        let mut taken: HashSet<u32> = set
            .rules()
            .iter()
            .filter_map(|rule| live.get(&rule.id).copied())
            .collect();
        let live_slots: HashSet<u32> = live.values().copied().collect();
        let mut free = (0..COUNTER_SLOTS as u32).filter(|slot| !live_slots.contains(slot));
        let mut new_slots = Vec::new();
        for rule in set.rules_mut() {
            match live.get(&rule.id) {
                Some(&slot) => rule.counter_slot = slot,
                None => {
                    let slot = free
                        .by_ref()
                        .find(|slot| !taken.contains(slot))
                        .context("no free counter slot")?;
                    taken.insert(slot);
                    new_slots.push(slot);
                    rule.counter_slot = slot;
                }
            }
        }
        Ok(new_slots)
    }

    /// Zeroes the counter slots `slots` on every CPU, in one batch.
    pub(super) fn zero_counters(&self, slots: &[u32]) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, error)| error)?;
        let fd = self.counters.map().fd().as_fd();
        let zeroed = bpf_batch::zero_per_cpu(fd, slots, size_of::<RuleCounter>(), cpus);
        let zeroed = zeroed.map_err(batch_error(UPDATE));
        self.check(names::RULE_COUNTERS_MAP, Doing::Write, zeroed)?;
        Ok(())
    }

    /// The counters of `rules`, each summed over CPUs, in their order: the span of counter
    /// slots they use read in a few batches, or slot by slot when that span is mostly unused
    /// (each slot read costs one value per possible CPU).
    pub fn counters(&self, rules: &[Rule]) -> Result<Vec<RuleCounter>> {
        let slots = || rules.iter().map(|rule| rule.counter_slot);
        let (Some(first), Some(last)) = (slots().min(), slots().max()) else {
            return Ok(Vec::new());
        };
        let span = last - first + 1;
        if span as usize > 2 * rules.len() + 256 {
            return rules.iter().map(|rule| self.counter(rule)).collect();
        }
        let cpus = aya::util::nr_cpus().map_err(|(_, error)| error)?;
        let mut totals = vec![RuleCounter::default(); span as usize];
        let fd = self.counters.map().fd().as_fd();
        bpf_batch::read_per_cpu_array(fd, first, span, cpus, |slot, per_cpu: &[RuleCounter]| {
            if let Some(total) = totals.get_mut((slot - first) as usize) {
                for cpu in per_cpu {
                    total.merge(cpu);
                }
            }
        })
        .with_context(|| format!("reading {}", names::RULE_COUNTERS_MAP))?;
        Ok(slots()
            .map(|slot| totals[(slot - first) as usize])
            .collect())
    }

    /// A rule's counters, summed over CPUs.
    pub fn counter(&self, rule: &Rule) -> Result<RuleCounter> {
        let per_cpu = self
            .counters
            .get(&rule.counter_slot, 0)
            .with_context(|| format!("reading the counters of rule {}", rule.id))?;
        let mut total = RuleCounter::default();
        for cpu in per_cpu.iter() {
            total.merge(cpu);
        }
        Ok(total)
    }
}
