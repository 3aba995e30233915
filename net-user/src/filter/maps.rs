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

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{
        Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray, PerCpuValues, lpm_trie,
        lpm_trie::LpmTrie,
    },
};
use net_common::{
    filter::{
        ADDR_DST, ADDR_SRC, FilterConfig, FilterState, GENERATIONS, Ipv4HostKey, Ipv4Key,
        Ipv6HostKey, Ipv6Key, NetBlocks, PortIntervals, RuleBitmap, bitmap_index, ipv4_host_key,
        ipv4_key, ipv6_host_key, ipv6_key, net_blocks_index, port_bitmap_key, port_intervals_index,
    },
    names,
    rule::{Action, COUNTER_SLOTS, Fragments, MAX_RULES, Malformed, Prefix, Rule, RuleCounter},
};
use nix::fcntl::Flock;

use super::{
    RuleSet,
    compile::{Tables, compile},
};
use crate::pins::PinDir;

/// How long a generation stays untouched after it was flipped out: longer than any packet
/// that read the old generation number takes to finish classifying (microseconds).
const GRACE: Duration = Duration::from_millis(20);

/// Every map of the filter.
pub struct FilterMaps {
    state: Array<MapData, FilterState>,
    config: Array<MapData, FilterConfig>,
    rules: Array<MapData, Rule>,
    counters: PerCpuArray<MapData, RuleCounter>,
    src_v4: LpmTrie<MapData, Ipv4Key, RuleBitmap>,
    dst_v4: LpmTrie<MapData, Ipv4Key, RuleBitmap>,
    src_v6: LpmTrie<MapData, Ipv6Key, RuleBitmap>,
    dst_v6: LpmTrie<MapData, Ipv6Key, RuleBitmap>,
    bitmaps: Array<MapData, RuleBitmap>,
    hosts_v4: BpfHashMap<MapData, Ipv4HostKey, RuleBitmap>,
    hosts_v6: BpfHashMap<MapData, Ipv6HostKey, RuleBitmap>,
    net_blocks: Array<MapData, NetBlocks>,
    port_intervals: Array<MapData, PortIntervals>,
    port_bitmaps: BpfHashMap<MapData, u32, RuleBitmap>,
    /// Held while this value lives, on pinned maps: one writer per interface at a time.
    _lock: Option<Flock<File>>,
}

impl FilterMaps {
    /// The maps of a pinned attachment, locked against other netxdp processes.
    pub fn from_pins(pins: &PinDir) -> Result<Self> {
        Self::pinned(pins, true)
    }

    /// The maps of a pinned attachment, for reading only (`netxdp serve`): no lock, so a
    /// reader never waits for a writer nor holds one up. [`FilterMaps::load`] then sees the
    /// set in force before or after a concurrent commit; only a read slower than 20 ms that
    /// spans two commits in a row could see a mix. Writers use [`FilterMaps::from_pins`].
    pub fn read_pins(pins: &PinDir) -> Result<Self> {
        Self::pinned(pins, false)
    }

    fn pinned(pins: &PinDir, lock: bool) -> Result<Self> {
        if !pins.dir().exists() {
            bail!(
                "netxdp is not attached to {iface} (`netxdp attach {iface}` first)",
                iface = pins.iface()
            );
        }
        let lock = lock.then(|| pins.lock()).transpose()?;
        let open = |name: &str, wrap: fn(MapData) -> Map| -> Result<Map> {
            let path = pins.dir().join(name);
            let data = MapData::from_pin(&path).with_context(|| {
                format!(
                    "opening {} (attached by an older netxdp? `netxdp detach {}` and attach again)",
                    path.display(),
                    pins.iface()
                )
            })?;
            Ok(wrap(data))
        };
        Self::open(open, lock)
    }

    /// The maps of an object this process loaded; they leave the object.
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str, _: fn(MapData) -> Map| {
            ebpf.take_map(name)
                .with_context(|| format!("the object has no {name} map"))
        };
        Self::open(&mut take, None)
    }

    fn open(
        mut open: impl FnMut(&str, fn(MapData) -> Map) -> Result<Map>,
        lock: Option<Flock<File>>,
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
            _lock: lock,
        })
    }

    fn active_generation(&self) -> Result<u32> {
        Ok(self
            .state
            .get(&0, 0)
            .context("reading FILTER_STATE")?
            .generation
            % 2)
    }

    /// The rule set in force.
    pub fn load(&self) -> Result<RuleSet> {
        let generation = self.active_generation()?;
        let config = self.config.get(&generation, 0)?;
        let rules = (0..config.rule_count.min(MAX_RULES as u32))
            .map(|rank| self.rules.get(&rule_index(generation, rank), 0))
            .collect::<Result<Vec<_>, _>>()
            .context("reading the rule table")?;
        Ok(RuleSet::from_rules(
            Action::from_raw(config.policy).unwrap_or(Action::Pass),
            Fragments::from_raw(config.fragments).unwrap_or_default(),
            Malformed::from_raw(config.malformed).unwrap_or_default(),
            rules,
            config.next_rule_id.max(1),
        ))
    }

    /// Puts `set` in force: gives its new rules counter slots (zeroed), writes it whole into
    /// the inactive generation, then makes that generation active with one map write. Until
    /// that write the old set is in force untouched, so an interrupted commit changes nothing.
    pub fn commit(&mut self, set: &mut RuleSet) -> Result<()> {
        let active = self.active_generation()?;
        let target = (active + 1) % GENERATIONS as u32;
        let active_config = self.config.get(&active, 0)?;
        let since_flip = monotonic_ns().saturating_sub(active_config.activated_ns);
        if let Some(rest) = GRACE.checked_sub(Duration::from_nanos(since_flip)) {
            thread::sleep(rest);
        }

        self.assign_counter_slots(set, active, active_config.rule_count)?;
        let tables = compile(set);
        self.clear_generation(target)?;
        self.write_generation(target, &tables)?;
        let config = FilterConfig {
            activated_ns: monotonic_ns(),
            ..tables.config
        };
        self.config.set(target, config, 0)?;
        self.state
            .set(0, FilterState { generation: target }, 0)
            .context("switching to the new rule set")?;
        Ok(())
    }

    /// Rules that stay keep their slot (and counts); new ones get a free slot, zeroed.
    fn assign_counter_slots(&mut self, set: &mut RuleSet, active: u32, count: u32) -> Result<()> {
        let mut live = HashMap::new();
        for rank in 0..count.min(MAX_RULES as u32) {
            let rule = self.rules.get(&rule_index(active, rank), 0)?;
            live.insert(rule.id, rule.counter_slot);
        }
        let mut taken: HashSet<u32> = set
            .rules()
            .iter()
            .filter_map(|rule| live.get(&rule.id).copied())
            .collect();
        let live_slots: HashSet<u32> = live.values().copied().collect();
        let mut free = (0..COUNTER_SLOTS as u32).filter(|slot| !live_slots.contains(slot));
        let cpus = aya::util::nr_cpus().map_err(|(_, error)| error)?;
        for rule in set.rules_mut() {
            match live.get(&rule.id) {
                Some(&slot) => rule.counter_slot = slot,
                None => {
                    let slot = free
                        .by_ref()
                        .find(|slot| !taken.contains(slot))
                        .context("no free counter slot")?;
                    taken.insert(slot);
                    let zero = PerCpuValues::try_from(vec![RuleCounter::default(); cpus])?;
                    self.counters.set(slot, zero, 0)?;
                    rule.counter_slot = slot;
                }
            }
        }
        Ok(())
    }

    /// Deletes the hash and trie entries of `generation`: what an earlier set left there.
    fn clear_generation(&mut self, generation: u32) -> Result<()> {
        let byte = generation as u8;
        clear_trie(&mut self.src_v4, |key| key[0] == byte)?;
        clear_trie(&mut self.dst_v4, |key| key[0] == byte)?;
        clear_trie(&mut self.src_v6, |key| key[0] == byte)?;
        clear_trie(&mut self.dst_v6, |key| key[0] == byte)?;
        clear_hash(&mut self.port_bitmaps, |key| key >> 31 == generation)?;
        clear_hash(&mut self.hosts_v4, |key| key[0] == byte)?;
        clear_hash(&mut self.hosts_v6, |key| key[0] == byte)?;
        Ok(())
    }

    fn write_generation(&mut self, generation: u32, tables: &Tables) -> Result<()> {
        for (rank, rule) in tables.rules.iter().enumerate() {
            self.rules
                .set(rule_index(generation, rank as u32), rule, 0)?;
        }
        write_trie(&mut self.src_v4, generation, &tables.src_v4, ipv4_key)?;
        write_trie(&mut self.dst_v4, generation, &tables.dst_v4, ipv4_key)?;
        write_trie(&mut self.src_v6, generation, &tables.src_v6, ipv6_key)?;
        write_trie(&mut self.dst_v6, generation, &tables.dst_v6, ipv6_key)?;
        for (field, table) in [(ADDR_SRC, &tables.src_v4), (ADDR_DST, &tables.dst_v4)] {
            for (prefix, bitmap) in table.iter().filter(|(prefix, _)| prefix.len == 32) {
                let key = ipv4_host_key(generation, field, &prefix.addr);
                self.hosts_v4.insert(key, bitmap, 0)?;
            }
        }
        for (field, table) in [(ADDR_SRC, &tables.src_v6), (ADDR_DST, &tables.dst_v6)] {
            for (prefix, bitmap) in table.iter().filter(|(prefix, _)| prefix.len == 128) {
                let key = ipv6_host_key(generation, field, &prefix.addr);
                self.hosts_v6.insert(key, bitmap, 0)?;
            }
        }
        for (field, ipv6, blocks) in &tables.net_blocks {
            let index = net_blocks_index(generation, *field, *ipv6);
            self.net_blocks.set(index, blocks.as_ref(), 0)?;
        }
        for (slot, bitmap) in tables.bitmaps.iter().enumerate() {
            self.bitmaps
                .set(bitmap_index(generation, slot as u32), bitmap, 0)?;
        }
        for (field, table) in tables.ports.iter().enumerate() {
            let field = field as u32;
            self.port_intervals.set(
                port_intervals_index(generation, field),
                table.intervals.as_ref(),
                0,
            )?;
            for (interval, bitmap) in table.bitmaps.iter().enumerate() {
                self.port_bitmaps.insert(
                    port_bitmap_key(generation, field, interval as u32),
                    bitmap,
                    0,
                )?;
            }
        }
        Ok(())
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

fn rule_index(generation: u32, rank: u32) -> u32 {
    generation * MAX_RULES as u32 + rank
}

fn clear_trie<K: aya::Pod>(
    trie: &mut LpmTrie<MapData, K, RuleBitmap>,
    stale: impl Fn(&K) -> bool,
) -> Result<()> {
    let keys: Vec<lpm_trie::Key<K>> = trie
        .keys()
        .collect::<Result<_, _>>()
        .context("listing a prefix table")?;
    for key in keys.iter().filter(|key| stale(&key.data())) {
        trie.remove(key)?;
    }
    Ok(())
}

fn clear_hash<K: aya::Pod>(
    map: &mut BpfHashMap<MapData, K, RuleBitmap>,
    stale: impl Fn(&K) -> bool,
) -> Result<()> {
    let keys: Vec<K> = map
        .keys()
        .collect::<Result<_, _>>()
        .context("listing a hash table")?;
    for key in keys.iter().filter(|key| stale(key)) {
        map.remove(key)?;
    }
    Ok(())
}

fn write_trie<K: aya::Pod>(
    trie: &mut LpmTrie<MapData, K, RuleBitmap>,
    generation: u32,
    entries: &[(Prefix, RuleBitmap)],
    key: fn(u32, &[u8; 16]) -> K,
) -> Result<()> {
    for (prefix, bitmap) in entries {
        // The generation byte comes first in the key, and counts in the prefix length.
        let key = lpm_trie::Key::new(8 + prefix.len as u32, key(generation, &prefix.addr));
        trie.insert(&key, bitmap, 0)
            .context("writing a prefix table")?;
    }
    Ok(())
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of `activated_ns` and of the kernel's
/// `bpf_ktime_get_coarse_ns`.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|now| now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64)
        .unwrap_or(0)
}
