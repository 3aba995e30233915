//! The filter's maps, pinned or owned by a loaded object: a rule set read from the active
//! generation, and a rule set written whole into the inactive one and flipped in.
//!
//! ```no_run
//! use net_common::rule::{Action, Match};
//! use netxdp::{filter::{FilterMaps, NewRule}, pins::PinDir};
//!
//! let mut maps = FilterMaps::from_pins(&PinDir::new(&"eth0".parse()?))?;
//! let mut rules = maps.load()?;
//! rules.add(NewRule { action: Action::Drop, priority: 10, matches: Match { proto: 47, ..Match::ANY } })?;
//! maps.commit(&mut rules)?;
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::{collections::BTreeMap, os::fd::AsFd as _, panic::resume_unwind};

use anyhow::{Context as _, Result, bail, ensure};
use aya::maps::{
    Array, HashMap as BpfHashMap, IterableMap, Map, MapData, MapError, PerCpuArray,
    lpm_trie::LpmTrie,
};
use aya::{Ebpf, Pod};
// Keys from the rule set, not the network: a fast hash.
use foldhash::{HashMap, HashSet};
use net_common::{
    filter::{
        FilterConfig, FilterState, GENERATIONS, Ipv4HostKey, Ipv4Key, Ipv6HostKey, Ipv6Key,
        NetBlocks, PortIntervals, RuleBitmap, bitmap_index, fields, ipv4_host_key, ipv4_key,
        ipv6_host_key, ipv6_key, net_blocks_index, port_bitmap_key, port_intervals_index,
    },
    names,
    rule::{Action, COUNTER_SLOTS, Fragments, MAX_RULES, Malformed, Prefix, Rule, RuleCounter},
    tree::{RuleBox, TreeNode, leaf_rank_index, node_index},
};

use super::{
    RuleSet,
    compile::{Classifier, Tables, compile},
    generation::{
        self, Target, UPDATE, array_part, batch_error, capacity, changed_at, hash_part,
        host_entries, port_entries, trie_part,
    },
    rcu::RcuBarrier,
    stages::{PauseAt, pause, pause_at},
    write_error::{Doing, MapWriteError},
};
use crate::{bpf_batch, layout, lock::IfaceLock, pins::PinDir};

type V4Trie = LpmTrie<MapData, Ipv4Key, RuleBitmap>;
type V6Trie = LpmTrie<MapData, Ipv6Key, RuleBitmap>;

/// Every map of the filter.
pub struct FilterMaps {
    state: Array<MapData, FilterState>,
    config: Array<MapData, FilterConfig>,
    rules: Array<MapData, Rule>,
    counters: PerCpuArray<MapData, RuleCounter>,
    src_v4: V4Trie,
    dst_v4: V4Trie,
    src_v6: V6Trie,
    dst_v6: V6Trie,
    bitmaps: Array<MapData, RuleBitmap>,
    hosts_v4: BpfHashMap<MapData, Ipv4HostKey, RuleBitmap>,
    hosts_v6: BpfHashMap<MapData, Ipv6HostKey, RuleBitmap>,
    net_blocks: Array<MapData, NetBlocks>,
    port_intervals: Array<MapData, PortIntervals>,
    port_bitmaps: BpfHashMap<MapData, u32, RuleBitmap>,
    rule_boxes: Array<MapData, RuleBox>,
    tree_nodes: Array<MapData, TreeNode>,
    leaf_ranks: Array<MapData, u32>,
    /// How the sets this value commits are classified.
    classifier: Classifier,
    /// The interface whose pinned maps these are, for advice in errors.
    iface: Option<String>,
    /// Held while this value lives, on pinned maps: one writer per interface at a time.
    _lock: Option<IfaceLock>,
}

impl FilterMaps {
    /// The maps of a pinned attachment, locked against other netxdp processes.
    pub fn from_pins(pins: &PinDir) -> Result<Self> {
        Self::pinned(pins, true)
    }

    /// The maps of a pinned attachment, for reading only (`netxdp serve`): no lock, so a
    /// reader never waits for a writer nor holds one up. [`FilterMaps::load`] then sees the
    /// set in force before or after a concurrent commit; only a read that spans two commits
    /// in a row (the second rewrites the generation the first retired) could see a mix.
    /// Writers use [`FilterMaps::from_pins`].
    pub fn read_pins(pins: &PinDir) -> Result<Self> {
        Self::pinned(pins, false)
    }

    fn pinned(pins: &PinDir, lock: bool) -> Result<Self> {
        // Locked first: a detach under way finishes before the check.
        let lock = lock.then(|| IfaceLock::acquire(pins.iface())).transpose()?;
        if !pins.dir().exists() {
            bail!(
                "netxdp is not attached to {iface} (`netxdp attach {iface}` first)",
                iface = pins.iface()
            );
        }
        // A writer must not write another layout's maps as its own.
        if lock.is_some() {
            layout::require_current(pins)?;
        }
        let open = |name: &str, wrap: fn(MapData) -> Map| -> Result<Map> {
            Ok(wrap(pins.open_map(name)?))
        };
        Self::open(open, lock, Some(pins.iface().to_string()))
    }

    /// The maps of an object this process loaded; they leave the object.
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str, _: fn(MapData) -> Map| {
            ebpf.take_map(name)
                .with_context(|| format!("the object has no {name} map"))
        };
        Self::open(&mut take, None, None)
    }

    fn open(
        mut open: impl FnMut(&str, fn(MapData) -> Map) -> Result<Map>,
        lock: Option<IfaceLock>,
        iface: Option<String>,
    ) -> Result<Self> {
        Ok(Self {
            state: open(names::FILTER_STATE_MAP, Map::Array)?.try_into()?,
            config: open(names::FILTER_CONFIG_MAP, Map::Array)?.try_into()?,
            rules: open(names::RULES_MAP, Map::Array)?.try_into()?,
            counters: open(names::RULE_COUNTERS_MAP, Map::PerCpuArray)?.try_into()?,
            src_v4: open(names::SRC_V4_MAP, Map::LpmTrie)?.try_into()?,
            dst_v4: open(names::DST_V4_MAP, Map::LpmTrie)?.try_into()?,
            src_v6: open(names::SRC_V6_MAP, Map::LpmTrie)?.try_into()?,
            dst_v6: open(names::DST_V6_MAP, Map::LpmTrie)?.try_into()?,
            bitmaps: open(names::BITMAPS_MAP, Map::Array)?.try_into()?,
            hosts_v4: open(names::HOSTS_V4_MAP, Map::HashMap)?.try_into()?,
            hosts_v6: open(names::HOSTS_V6_MAP, Map::HashMap)?.try_into()?,
            net_blocks: open(names::NET_BLOCKS_MAP, Map::Array)?.try_into()?,
            port_intervals: open(names::PORT_INTERVALS_MAP, Map::Array)?.try_into()?,
            port_bitmaps: open(names::PORT_BITMAPS_MAP, Map::HashMap)?.try_into()?,
            rule_boxes: open(names::RULE_BOXES_MAP, Map::Array)?.try_into()?,
            tree_nodes: open(names::TREE_NODES_MAP, Map::Array)?.try_into()?,
            leaf_ranks: open(names::LEAF_RANKS_MAP, Map::Array)?.try_into()?,
            classifier: Classifier::default(),
            iface,
            _lock: lock,
        })
    }

    /// Bytes of kernel memory the filter's maps are charged, all generations: what one
    /// interface's rule tables cost.
    pub fn kernel_bytes(&self) -> Result<u64> {
        let maps = [
            self.state.map(),
            self.config.map(),
            self.rules.map(),
            self.counters.map(),
            self.src_v4.map(),
            self.dst_v4.map(),
            self.src_v6.map(),
            self.dst_v6.map(),
            self.bitmaps.map(),
            self.hosts_v4.map(),
            self.hosts_v6.map(),
            self.net_blocks.map(),
            self.port_intervals.map(),
            self.port_bitmaps.map(),
            self.rule_boxes.map(),
            self.tree_nodes.map(),
            self.leaf_ranks.map(),
        ];
        maps.into_iter().map(crate::flows::memlock).sum()
    }

    /// The active generation's settings.
    pub fn active_config(&self) -> Result<FilterConfig> {
        let generation = self.active_generation()?;
        Ok(self.config.get(&generation, 0)?)
    }

    /// How the kernel classifies the set in force, as the program decides it.
    pub fn classifier_in_force(&self) -> Result<InForce> {
        let config = self.active_config()?;
        let named = config.fields & fields::NAMED;
        Ok(if config.rule_count == 0 {
            InForce::NoRules
        } else if named == fields::SRC || named == fields::DST {
            InForce::AddressTable
        } else if config.trees > 0 {
            InForce::Trees(config.trees)
        } else {
            InForce::BitVector
        })
    }

    /// Classifies the sets committed from now on with `classifier`: for the tests and
    /// benchmarks that hold the trees to the bit-vector search.
    pub fn use_classifier(&mut self, classifier: Classifier) {
        self.classifier = classifier;
    }

    fn active_generation(&self) -> Result<u32> {
        active_generation(&self.state)
    }

    /// The rule set in force.
    pub fn load(&self) -> Result<RuleSet> {
        rule_set_in_force(&self.state, &self.config, &self.rules)
    }

    /// The rule set in force in the maps pinned for `pins`, read from the three maps that
    /// hold it alone: what `attach --upgrade` carries over from maps whose other tables are
    /// of another layout.
    pub fn read_pinned_rule_set(pins: &PinDir) -> Result<RuleSet> {
        let open = |name: &str, wrap: fn(MapData) -> Map| -> Result<Map> {
            Ok(wrap(pins.open_map(name)?))
        };
        let shaped = |name: &str, error: aya::maps::MapError| {
            anyhow::Error::new(error).context(format!("{name} is not of this netxdp's layout"))
        };
        let state = open(names::FILTER_STATE_MAP, Map::Array)?
            .try_into()
            .map_err(|e| shaped(names::FILTER_STATE_MAP, e))?;
        let config = open(names::FILTER_CONFIG_MAP, Map::Array)?
            .try_into()
            .map_err(|e| shaped(names::FILTER_CONFIG_MAP, e))?;
        let rules = open(names::RULES_MAP, Map::Array)?
            .try_into()
            .map_err(|e| shaped(names::RULES_MAP, e))?;
        rule_set_in_force(&state, &config, &rules)
    }

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

    /// `result` of an operation on the map `name`, its error told with what to do.
    fn check<T>(
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

    /// The first `count` ranks of a generation's rule table, in a few batched reads.
    fn read_rules(&self, generation: u32, count: u32) -> Result<Vec<Rule>> {
        read_rules(&self.rules, generation, count)
    }

    /// Rules that stay keep their slot (and counts); new ones get a free slot, returned: their
    /// counts are zeroed once no packet can still count in them for a rule of an earlier set.
    fn assign_counter_slots(&self, set: &mut RuleSet, active: u32, count: u32) -> Result<Vec<u32>> {
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
    fn zero_counters(&self, slots: &[u32]) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, error)| error)?;
        let fd = self.counters.map().fd().as_fd();
        let zeroed = bpf_batch::zero_per_cpu(fd, slots, size_of::<RuleCounter>(), cpus);
        let zeroed = zeroed.map_err(batch_error(UPDATE));
        self.check(names::RULE_COUNTERS_MAP, Doing::Write, zeroed)?;
        Ok(())
    }

    /// Checks that the active generation's tries, host tables and port bitmaps hold exactly
    /// the entries of the rule set in force, and nothing more: a commit that writes only
    /// what differs must leave what a whole rewrite would. The error names the first map that
    /// does not.
    pub fn verify(&self) -> Result<()> {
        let generation = self.active_generation()?;
        let config = self.config.get(&generation, 0)?;
        let byte = generation as u8;
        if config.next_rule_id == 0 {
            // Never committed (a commit always writes a next id): a fresh attachment's
            // zeroed tables, which classify as no rules; they must hold nothing.
            let empty = [
                (
                    names::SRC_V4_MAP,
                    trie_entries(&self.src_v4, byte)?.is_empty(),
                ),
                (
                    names::DST_V4_MAP,
                    trie_entries(&self.dst_v4, byte)?.is_empty(),
                ),
                (
                    names::SRC_V6_MAP,
                    trie_entries(&self.src_v6, byte)?.is_empty(),
                ),
                (
                    names::DST_V6_MAP,
                    trie_entries(&self.dst_v6, byte)?.is_empty(),
                ),
            ];
            for (name, empty) in empty {
                ensure!(
                    empty,
                    "{name} holds entries of a generation never committed"
                );
            }
            return Ok(());
        }
        let tables = compile(&self.load()?, classifier_of(&config));
        // A trie's entries as `tables` has them, keyed as `key` makes them.
        let trie = |table: &[(Prefix, RuleBitmap)], key: &dyn Fn(&[u8; 16]) -> Vec<u8>| {
            table
                .iter()
                .map(|(prefix, bitmap)| ((8 + u32::from(prefix.len), key(&prefix.addr)), *bitmap))
                .collect::<BTreeMap<(u32, Vec<u8>), RuleBitmap>>()
        };
        let v4 = |table| trie(table, &|addr| ipv4_key(generation, addr).to_vec());
        let v6 = |table| trie(table, &|addr| ipv6_key(generation, addr).to_vec());
        let tries = [
            (
                names::SRC_V4_MAP,
                trie_entries(&self.src_v4, byte)?,
                v4(&tables.src_v4),
            ),
            (
                names::DST_V4_MAP,
                trie_entries(&self.dst_v4, byte)?,
                v4(&tables.dst_v4),
            ),
            (
                names::SRC_V6_MAP,
                trie_entries(&self.src_v6, byte)?,
                v6(&tables.src_v6),
            ),
            (
                names::DST_V6_MAP,
                trie_entries(&self.dst_v6, byte)?,
                v6(&tables.dst_v6),
            ),
        ];
        for (name, held, wanted) in tries {
            ensure!(held == wanted, "{name} does not hold the set in force");
        }
        // The host entries `tables` has for hosts of `bits` bits, keyed as `key` makes them.
        let hosts = |bits, key: &dyn Fn(u32, &[u8; 16]) -> Vec<u8>| -> BTreeMap<_, _> {
            host_entries(&tables, bits)
                .into_iter()
                .map(|((field, addr), bitmap)| (key(field, &addr), *bitmap))
                .collect()
        };
        let held_v4 = hash_entries(&self.hosts_v4, |key| key[0] == byte, |key| key.to_vec())?;
        let wanted_v4 = hosts(32, &|field, addr| {
            ipv4_host_key(generation, field, addr).to_vec()
        });
        let held_v6 = hash_entries(&self.hosts_v6, |key| key[0] == byte, |key| key.to_vec())?;
        let wanted_v6 = hosts(128, &|field, addr| {
            ipv6_host_key(generation, field, addr).to_vec()
        });
        for (name, held, wanted) in [
            (names::HOSTS_V4_MAP, held_v4, wanted_v4),
            (names::HOSTS_V6_MAP, held_v6, wanted_v6),
        ] {
            ensure!(held == wanted, "{name} does not hold the set in force");
        }
        let ports: BTreeMap<u32, RuleBitmap> = port_entries(&tables)
            .into_iter()
            .map(|((field, interval), bitmap)| {
                (port_bitmap_key(generation, field, interval), *bitmap)
            })
            .collect();
        ensure!(
            hash_entries(
                &self.port_bitmaps,
                |key| key >> 31 == generation,
                |key| *key
            )? == ports,
            "{} does not hold the set in force",
            names::PORT_BITMAPS_MAP
        );
        Ok(())
    }

    /// The tables the inactive generation `generation` holds, when it is known to hold them
    /// whole: it was flipped in once (its activation is stamped only after the flip), and no
    /// commit has touched it since (a commit clears the stamp before it touches anything).
    /// A commit then writes only what differs; otherwise it rewrites the generation whole.
    fn held_tables(&self, generation: u32) -> Result<Option<Tables>> {
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
    fn write_generation(
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

fn active_generation(state: &Array<MapData, FilterState>) -> Result<u32> {
    Ok(state.get(&0, 0).context("reading FILTER_STATE")?.generation % 2)
}

fn rule_set_in_force(
    state: &Array<MapData, FilterState>,
    config: &Array<MapData, FilterConfig>,
    rules: &Array<MapData, Rule>,
) -> Result<RuleSet> {
    let generation = active_generation(state)?;
    let config = config.get(&generation, 0)?;
    let rules = read_rules(rules, generation, config.rule_count)?;
    Ok(RuleSet::from_rules(
        Action::from_raw(config.policy).unwrap_or(Action::Pass),
        Fragments::from_raw(config.fragments).unwrap_or_default(),
        Malformed::from_raw(config.malformed).unwrap_or_default(),
        rules,
        config.next_rule_id.max(1),
    ))
}

fn read_rules(rules: &Array<MapData, Rule>, generation: u32, count: u32) -> Result<Vec<Rule>> {
    let fd = rules.map().fd().as_fd();
    bpf_batch::read_array(fd, rule_index(generation, 0), count.min(MAX_RULES as u32))
        .with_context(|| format!("reading the rule table ({})", names::RULES_MAP))
}

/// How a set in force is classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InForce {
    NoRules,
    /// Rules on one address field alone: its host table and prefix trie decide.
    AddressTable,
    /// Decision trees, this many.
    Trees(u32),
    /// The bit-vector search: the set's trees did not fit.
    BitVector,
}

impl InForce {
    pub fn as_str(self) -> &'static str {
        match self {
            InForce::NoRules => "none",
            InForce::AddressTable => "address-table",
            InForce::Trees(_) => "trees",
            InForce::BitVector => "bit-vector",
        }
    }
}

/// The classifier a generation was compiled with: the same rules compile to the same trees,
/// so a generation with trees had them from [`Classifier::Trees`].
fn classifier_of(config: &FilterConfig) -> Classifier {
    if config.trees == 0 {
        Classifier::BitVector
    } else {
        Classifier::Trees
    }
}

fn rule_index(generation: u32, rank: u32) -> u32 {
    generation * MAX_RULES as u32 + rank
}

/// A trie's entries of the generation whose byte leads the key: (prefix length, key bytes).
fn trie_entries<K: Pod + AsRef<[u8]>>(
    trie: &LpmTrie<MapData, K, RuleBitmap>,
    generation: u8,
) -> Result<BTreeMap<(u32, Vec<u8>), RuleBitmap>, MapError> {
    let mut entries = BTreeMap::new();
    for entry in trie.iter() {
        let (key, bitmap) = entry?;
        let data = key.data();
        if data.as_ref()[0] == generation {
            entries.insert((key.prefix_len(), data.as_ref().to_vec()), bitmap);
        }
    }
    Ok(entries)
}

/// A hash map's entries that `keep` selects, keyed as `ordered` makes them.
fn hash_entries<K: Pod, O: Ord>(
    map: &BpfHashMap<MapData, K, RuleBitmap>,
    keep: impl Fn(&K) -> bool,
    ordered: impl Fn(&K) -> O,
) -> Result<BTreeMap<O, RuleBitmap>, MapError> {
    let mut entries = BTreeMap::new();
    for entry in map.iter() {
        let (key, bitmap) = entry?;
        if keep(&key) {
            entries.insert(ordered(&key), bitmap);
        }
    }
    Ok(entries)
}
