//! The filter's maps, pinned or owned by a loaded object: a rule set read from the active
//! generation, and a rule set written whole into the inactive one and flipped in.
//!
//! ```no_run
//! use net_common::{limit::Limit, rule::{Action, Match}};
//! use netxdp::{filter::{FilterMaps, NewRule}, pins::PinDir};
//!
//! let mut maps = FilterMaps::from_pins(&PinDir::new(&"eth0".parse()?))?;
//! let mut rules = maps.load()?;
//! let matches = Match { proto: 47, ..Match::ANY };
//! rules.add(NewRule { action: Action::Drop, priority: 10, matches, limit: Limit::NONE })?;
//! maps.commit(&mut rules)?;
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::os::fd::AsFd as _;

use anyhow::{Context as _, Result, bail};
use aya::Ebpf;
use aya::maps::{
    Array, HashMap as BpfHashMap, IterableMap, Map, MapData, PerCpuArray, lpm_trie::LpmTrie,
};
use net_common::{
    filter::{
        FilterConfig, FilterState, Ipv4HostKey, Ipv4Key, Ipv6HostKey, Ipv6Key, NetBlocks,
        PortIntervals, RuleBitmap, fields,
    },
    limit::Limit,
    names,
    rule::{Action, Fragments, MAX_RULES, Malformed, Rule, RuleCounter},
    tree::{RuleBox, TreeNode},
};

use super::{RuleSet, compile::Classifier};
use crate::{bpf_batch, layout, lock::IfaceLock, pins::PinDir};

pub(super) type V4Trie = LpmTrie<MapData, Ipv4Key, RuleBitmap>;
pub(super) type V6Trie = LpmTrie<MapData, Ipv6Key, RuleBitmap>;

/// Every map of the filter.
pub struct FilterMaps {
    pub(super) state: Array<MapData, FilterState>,
    pub(super) config: Array<MapData, FilterConfig>,
    pub(super) rules: Array<MapData, Rule>,
    pub(super) counters: PerCpuArray<MapData, RuleCounter>,
    pub(super) src_v4: V4Trie,
    pub(super) dst_v4: V4Trie,
    pub(super) src_v6: V6Trie,
    pub(super) dst_v6: V6Trie,
    pub(super) bitmaps: Array<MapData, RuleBitmap>,
    pub(super) hosts_v4: BpfHashMap<MapData, Ipv4HostKey, RuleBitmap>,
    pub(super) hosts_v6: BpfHashMap<MapData, Ipv6HostKey, RuleBitmap>,
    pub(super) net_blocks: Array<MapData, NetBlocks>,
    pub(super) port_intervals: Array<MapData, PortIntervals>,
    pub(super) port_bitmaps: BpfHashMap<MapData, u32, RuleBitmap>,
    pub(super) rule_boxes: Array<MapData, RuleBox>,
    pub(super) tree_nodes: Array<MapData, TreeNode>,
    pub(super) leaf_ranks: Array<MapData, u32>,
    /// How the sets this value commits are classified.
    pub(super) classifier: Classifier,
    /// The interface whose pinned maps these are, for advice in errors.
    pub(super) iface: Option<String>,
    /// Held while this value lives, on pinned maps: one writer per interface at a time.
    pub(super) _lock: Option<IfaceLock>,
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

    pub(super) fn active_generation(&self) -> Result<u32> {
        active_generation(&self.state)
    }

    /// The rule set in force.
    pub fn load(&self) -> Result<RuleSet> {
        rule_set_in_force(&self.state, &self.config, &RuleTable::Current(&self.rules))
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
        let rules = open(names::RULES_MAP, Map::Array)?;
        let rules = match Array::<MapData, Rule>::try_from(rules) {
            Ok(rules) => RuleTable::Owned(rules),
            Err(error) => {
                let rules = open(names::RULES_MAP, Map::Array)?;
                match Array::<MapData, [u8; RULE_BEFORE_LIMITS]>::try_from(rules) {
                    Ok(rules) => RuleTable::BeforeLimits(rules),
                    Err(_) => return Err(shaped(names::RULES_MAP, error)),
                }
            }
        };
        rule_set_in_force(&state, &config, &rules)
    }

    /// The first `count` ranks of a generation's rule table, in a few batched reads.
    pub(super) fn read_rules(&self, generation: u32, count: u32) -> Result<Vec<Rule>> {
        read_rules(&self.rules, generation, count)
    }
}

pub(super) fn active_generation(state: &Array<MapData, FilterState>) -> Result<u32> {
    Ok(state.get(&0, 0).context("reading FILTER_STATE")?.generation % 2)
}

/// The size of a rule record before layout 5 gave rules their [`Limit`]: the same fields,
/// without it.
const RULE_BEFORE_LIMITS: usize = 64;

/// A rule table as `--upgrade` may find it.
enum RuleTable<'a> {
    Current(&'a Array<MapData, Rule>),
    Owned(Array<MapData, Rule>),
    /// Of layouts 1 to 4: records of [`RULE_BEFORE_LIMITS`] bytes.
    BeforeLimits(Array<MapData, [u8; RULE_BEFORE_LIMITS]>),
}

fn rule_set_in_force(
    state: &Array<MapData, FilterState>,
    config: &Array<MapData, FilterConfig>,
    rules: &RuleTable<'_>,
) -> Result<RuleSet> {
    let generation = active_generation(state)?;
    let config = config.get(&generation, 0)?;
    let rules = match rules {
        RuleTable::Current(rules) => read_rules(rules, generation, config.rule_count)?,
        RuleTable::Owned(rules) => read_rules(rules, generation, config.rule_count)?,
        RuleTable::BeforeLimits(rules) => {
            let fd = rules.map().fd().as_fd();
            let count = config.rule_count.min(MAX_RULES as u32);
            let records: Vec<[u8; RULE_BEFORE_LIMITS]> =
                bpf_batch::read_array(fd, rule_index(generation, 0), count)
                    .with_context(|| format!("reading the rule table ({})", names::RULES_MAP))?;
            records.iter().map(rule_before_limits).collect()
        }
    };
    Ok(RuleSet::from_rules(
        Action::from_raw(config.policy).unwrap_or(Action::Pass),
        Fragments::from_raw(config.fragments).unwrap_or_default(),
        Malformed::from_raw(config.malformed).unwrap_or_default(),
        rules,
        config.next_rule_id.max(1),
    ))
}

/// A rule of layouts 1 to 4, which had no limits.
fn rule_before_limits(record: &[u8; RULE_BEFORE_LIMITS]) -> Rule {
    let mut rule = Rule {
        id: 0,
        priority: 0,
        action: 0,
        counter_slot: 0,
        matches: net_common::rule::Match::ANY,
        limit: Limit::NONE,
    };
    const _: () = assert!(core::mem::offset_of!(Rule, limit) == RULE_BEFORE_LIMITS);
    // SAFETY: `Rule` is `#[repr(C)]` and `Pod`; its first RULE_BEFORE_LIMITS bytes are the
    // fields the old record held, in the same order, and any bytes are valid there.
    unsafe {
        std::ptr::copy_nonoverlapping(
            record.as_ptr(),
            (&raw mut rule).cast::<u8>(),
            RULE_BEFORE_LIMITS,
        );
    }
    rule
}

pub(super) fn read_rules(
    rules: &Array<MapData, Rule>,
    generation: u32,
    count: u32,
) -> Result<Vec<Rule>> {
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
pub(super) fn classifier_of(config: &FilterConfig) -> Classifier {
    if config.trees == 0 {
        Classifier::BitVector
    } else {
        Classifier::Trees
    }
}

pub(super) fn rule_index(generation: u32, rank: u32) -> u32 {
    generation * MAX_RULES as u32 + rank
}
