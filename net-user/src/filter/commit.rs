//! The swap protocol: a rule set written whole into the inactive generation, then made the
//! active one with one map write ([`FilterMaps::commit`]).

use std::panic::resume_unwind;

use anyhow::{Context as _, Result};
use aya::maps::{IterableMap, MapError};
use net_common::{
    filter::{
        FilterConfig, FilterState, GENERATIONS, Ipv4Key, Ipv6Key, bitmap_index, ipv4_host_key,
        ipv4_key, ipv6_host_key, ipv6_key, net_blocks_index, port_bitmap_key, port_intervals_index,
    },
    names,
    rule::{Action, Fragments, Malformed},
    tree::{leaf_rank_index, node_index},
};

use super::{
    RuleSet,
    compile::{Tables, compile},
    generation::{
        self, Target, array_part, capacity, changed_at, hash_part, host_entries, port_entries,
        trie_part,
    },
    rcu::RcuBarrier,
    stages::{PauseAt, pause, pause_at},
    write_error::{Doing, MapWriteError},
};

use super::maps::{FilterMaps, classifier_of, rule_index};

impl FilterMaps {
    /// Puts `set` in force: gives its new rules counter slots (zeroed), writes it whole into
    /// the inactive generation, then makes that generation active with one map write. Until
    /// that write the old set is in force untouched, so an interrupted commit changes nothing.
    pub fn commit(&mut self, set: &mut RuleSet) -> Result<()> {
        let pause_at = pause_at()?;
        let active = self.active_generation()?;
        let target = (active + 1) % GENERATIONS as u32;
        let active_config = self.config.get(&active, 0)?;
        pause(pause_at, "synchronize");
        // The wait runs beside what only reads the maps: the new set's counter slots and
        // tables, and the tables the inactive generation holds, each compiled in a thread of
        // its own. Nothing is written before the wait has returned.
        let (new_slots, tables, held) = std::thread::scope(|scope| {
            let waited = scope.spawn(|| {
                let waited = RcuBarrier::new().and_then(|barrier| barrier.wait());
                if waited.is_ok() {
                    pause(pause_at, "synchronized");
                }
                waited
            });
            let held = scope.spawn(|| self.held_tables(target));
            let prepared = self
                .assign_counter_slots(set, active, active_config.rule_count)
                .map(|new_slots| (new_slots, compile(set, self.classifier)));
            // A thread that panicked has printed why; the commit cannot go on.
            let held = held.join().unwrap_or_else(|panic| resume_unwind(panic));
            let waited = waited.join().unwrap_or_else(|panic| resume_unwind(panic));
            waited.context("waiting for an RCU grace period (an update of a map-in-map)")?;
            let (new_slots, tables) = prepared?;
            Ok::<_, anyhow::Error>((new_slots, tables, held?))
        })?;

        pause(pause_at, "counters");
        self.zero_counters(&new_slots)?;
        self.write_generation(target, held.as_ref(), &tables, pause_at)?;
        pause(pause_at, "write FILTER_CONFIG");
        let written = self.config.set(target, tables.config, 0);
        self.check(names::FILTER_CONFIG_MAP, Doing::Write, written)?;
        pause(pause_at, "flip");
        let flipped = self.state.set(0, FilterState { generation: target }, 0);
        self.check(names::FILTER_STATE_MAP, Doing::Flip, flipped)?;
        pause(pause_at, "flipped");
        // Stamped once in force. The program reads this config meanwhile; rewriting it with
        // the same bytes but this one field changes nothing it reads.
        let activated = FilterConfig {
            activated_ns: crate::clock::monotonic_ns(),
            ..tables.config
        };
        let stamped = self.config.set(target, activated, 0);
        self.check(names::FILTER_CONFIG_MAP, Doing::Write, stamped)?;
        Ok(())
    }

    /// The tables the inactive generation `generation` holds, when it is known to hold them
    /// whole: it was flipped in once (its activation is stamped only after the flip), and no
    /// commit has touched it since (a commit clears the stamp before it touches anything).
    /// A commit then writes only what differs; otherwise it rewrites the generation whole.
    pub(super) fn held_tables(&self, generation: u32) -> Result<Option<Tables>> {
        let config = self.config.get(&generation, 0)?;
        if config.activated_ns == 0 {
            return Ok(None);
        }
        let rules = self.read_rules(generation, config.rule_count)?;
        let set = RuleSet::from_rules(
            Action::from_raw(config.policy).unwrap_or(Action::Pass),
            Fragments::from_raw(config.fragments).unwrap_or_default(),
            Malformed::from_raw(config.malformed).unwrap_or_default(),
            rules,
            config.next_rule_id.max(1),
        );
        Ok(Some(compile(&set, classifier_of(&config))))
    }

    /// Writes `tables` into the inactive generation `generation`, map by map and maps at once
    /// (see [`generation`]): in each hash map and trie, first deletes what the generation
    /// holds and `tables` does not (only that when `held` says what it holds, else every entry
    /// of the generation), so that none ever holds more than two generations, the one in force
    /// and the one being written; then writes what differs from `held` (all, without it).
    /// First the generation is marked as no longer whole, so that a commit killed from here on
    /// leaves the next one a full rewrite.
    pub(super) fn write_generation(
        &mut self,
        generation: u32,
        held: Option<&Tables>,
        tables: &Tables,
        pause_at: PauseAt,
    ) -> Result<()> {
        let config = self.config.get(&generation, 0)?;
        let unstamped = FilterConfig {
            activated_ns: 0,
            ..config
        };
        let marked = self.config.set(generation, unstamped, 0);
        self.check(names::FILTER_CONFIG_MAP, Doing::Clear, marked)?;

        let target = Target {
            generation,
            held,
            tables,
            pause_at,
            iface: self.iface.as_deref(),
        };
        let v4_mine = |key: &Ipv4Key, generation| u32::from(key[0]) == generation;
        let v6_mine = |key: &Ipv6Key, generation| u32::from(key[0]) == generation;
        // The costliest first: tries write one entry per system call.
        let parts = vec![
            trie_part(
                &mut self.src_v4,
                names::SRC_V4_MAP,
                target,
                |t| &t.src_v4,
                ipv4_key,
                v4_mine,
            ),
            trie_part(
                &mut self.dst_v4,
                names::DST_V4_MAP,
                target,
                |t| &t.dst_v4,
                ipv4_key,
                v4_mine,
            ),
            trie_part(
                &mut self.src_v6,
                names::SRC_V6_MAP,
                target,
                |t| &t.src_v6,
                ipv6_key,
                v6_mine,
            ),
            trie_part(
                &mut self.dst_v6,
                names::DST_V6_MAP,
                target,
                |t| &t.dst_v6,
                ipv6_key,
                v6_mine,
            ),
            hash_part(
                &self.port_bitmaps,
                names::PORT_BITMAPS_MAP,
                target,
                port_entries,
                |generation, (field, interval)| port_bitmap_key(generation, *field, *interval),
                |key, generation| key >> 31 == generation,
            ),
            hash_part(
                &self.hosts_v4,
                names::HOSTS_V4_MAP,
                target,
                |t| host_entries(t, 32),
                |generation, (field, addr)| ipv4_host_key(generation, *field, addr),
                |key, generation| u32::from(key[0]) == generation,
            ),
            hash_part(
                &self.hosts_v6,
                names::HOSTS_V6_MAP,
                target,
                |t| host_entries(t, 128),
                |generation, (field, addr)| ipv6_host_key(generation, *field, addr),
                |key, generation| u32::from(key[0]) == generation,
            ),
            array_part(self.rules.map(), names::RULES_MAP, target, |t| {
                changed_at(t.held.map(|held| held.rules.as_slice()), &t.tables.rules)
                    .map(|(rank, rule)| (rule_index(t.generation, rank as u32), rule))
                    .collect()
            }),
            array_part(self.bitmaps.map(), names::BITMAPS_MAP, target, |t| {
                changed_at(
                    t.held.map(|held| held.bitmaps.as_slice()),
                    &t.tables.bitmaps,
                )
                .map(|(slot, bitmap)| (bitmap_index(t.generation, slot as u32), bitmap))
                .collect()
            }),
            array_part(self.net_blocks.map(), names::NET_BLOCKS_MAP, target, |t| {
                changed_at(
                    t.held.map(|held| held.net_blocks.as_slice()),
                    &t.tables.net_blocks,
                )
                .map(|(_, (field, ipv6, blocks))| {
                    (
                        net_blocks_index(t.generation, *field, *ipv6),
                        blocks.as_ref(),
                    )
                })
                .collect()
            }),
            array_part(
                self.port_intervals.map(),
                names::PORT_INTERVALS_MAP,
                target,
                |t| {
                    (0..2)
                        .filter(|&field| {
                            !t.held.is_some_and(|held| {
                                held.ports[field].intervals == t.tables.ports[field].intervals
                            })
                        })
                        .map(|field| {
                            let index = port_intervals_index(t.generation, field as u32);
                            (index, t.tables.ports[field].intervals.as_ref())
                        })
                        .collect()
                },
            ),
            array_part(self.rule_boxes.map(), names::RULE_BOXES_MAP, target, |t| {
                changed_at(t.held.map(|held| held.boxes.as_slice()), &t.tables.boxes)
                    .map(|(rank, rule)| (rule_index(t.generation, rank as u32), rule))
                    .collect()
            }),
            array_part(self.tree_nodes.map(), names::TREE_NODES_MAP, target, |t| {
                changed_at(t.held.map(|held| held.nodes.as_slice()), &t.tables.nodes)
                    .map(|(node, value)| (node_index(t.generation, node as u32), value))
                    .collect()
            }),
            array_part(self.leaf_ranks.map(), names::LEAF_RANKS_MAP, target, |t| {
                changed_at(
                    t.held.map(|held| held.leaf_ranks.as_slice()),
                    &t.tables.leaf_ranks,
                )
                .map(|(slot, rank)| (leaf_rank_index(t.generation, slot as u32), rank))
                .collect()
            }),
        ];
        generation::run(parts)?;
        Ok(())
    }

    /// `result` of an operation on the map `name`, its error told with what to do.
    pub(super) fn check<T>(
        &self,
        name: &'static str,
        doing: Doing,
        result: Result<T, MapError>,
    ) -> Result<T, MapWriteError> {
        result.map_err(|source| {
            let capacity = match name {
                names::SRC_V4_MAP => capacity(&self.src_v4),
                names::DST_V4_MAP => capacity(&self.dst_v4),
                names::SRC_V6_MAP => capacity(&self.src_v6),
                names::DST_V6_MAP => capacity(&self.dst_v6),
                names::HOSTS_V4_MAP => capacity(&self.hosts_v4),
                names::HOSTS_V6_MAP => capacity(&self.hosts_v6),
                names::PORT_BITMAPS_MAP => capacity(&self.port_bitmaps),
                _ => None,
            };
            MapWriteError::new(name, doing, capacity, self.iface.as_deref(), source)
        })
    }
}
