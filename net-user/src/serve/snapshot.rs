//! What one snapshot reads of the pinned attachments: plain data, encoded by
//! [`super::encode`]. A new source is a field of [`IfaceMetrics`], read in
//! [`IfaceMetrics::read`], and a family written in the encoder.

use std::time::Duration;

use anyhow::Result;
use aya::programs::ProgramInfo;
use net_common::{rule::RuleCounter, stats::Stats};
use tracing::{debug, warn};

use crate::{
    attach::read_info,
    bans::BanTable,
    capture,
    counters::CounterMap,
    filter::{FilterMaps, render::ruleset_hash},
    flows::{Allocation, FlowTable},
    last_apply::LastApply,
    pins::PinDir,
    sources::{SourceStats, SourceTable},
};

/// Which rules get series of their own: each is two series per interface, and a fleet of
/// hosts with large rule sets would otherwise fill Prometheus with them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuleMetrics {
    /// Every rule up to [`RuleMetrics::AUTO_ALL_UP_TO`]; beyond, the
    /// [`RuleMetrics::AUTO_TOP`] rules with the most hits.
    #[default]
    Auto,
    All,
    /// The N rules with the most hits.
    Top(usize),
    None,
}

impl RuleMetrics {
    pub const AUTO_ALL_UP_TO: usize = 1_000;
    pub const AUTO_TOP: usize = 100;

    /// How many of `rules` rules get series.
    pub fn kept(self, rules: usize) -> usize {
        match self {
            RuleMetrics::Auto if rules <= Self::AUTO_ALL_UP_TO => rules,
            RuleMetrics::Auto => Self::AUTO_TOP,
            RuleMetrics::All => rules,
            RuleMetrics::Top(top) => top.min(rules),
            RuleMetrics::None => 0,
        }
    }
}

/// Where the kernel says whether it counts programs' run time and runs.
const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// What one scrape reads of one attached interface.
#[derive(Clone, Debug, Default)]
pub struct IfaceMetrics {
    pub iface: String,
    /// The STATS block, summed over CPUs.
    pub stats: Stats,
    /// The rule set in force and the counters of the rules that get series; `None` when its
    /// maps cannot be read.
    pub filter: Option<FilterMetrics>,
    /// The program's run time and runs, as the kernel counts them; `None` when the pinned
    /// program cannot be read.
    pub program: Option<ProgramRuns>,
    /// The flow and source tables; `None` when flow tracking is off.
    pub tracking: Option<TrackingMetrics>,
    /// Capture counters since attach; `None` when the capture maps cannot be read.
    pub capture: Option<capture::Counters>,
    /// The last `netxdp apply`'s outcome, if one was recorded.
    pub last_apply: Option<LastApply>,
    /// Bans in force; `None` when the ban tables cannot be read.
    pub bans: Option<usize>,
}

/// What a scrape exports of the flow and source tables.
#[derive(Clone, Debug)]
pub struct TrackingMetrics {
    /// Flows in the table.
    pub flows: u64,
    pub flow_table: Allocation,
    /// The [`TOP_SOURCES`] prefixes that sent most packets.
    pub top_sources: Vec<SourceStats>,
}

/// Source prefixes exported per interface: a scrape stays small, and an attack's heaviest
/// sources are there.
pub const TOP_SOURCES: usize = 10;

/// The rule set in force on an interface.
#[derive(Clone, Debug, Default)]
pub struct FilterMetrics {
    /// What packets no rule matches get: "pass" or "drop".
    pub policy: &'static str,
    /// Rules in force.
    pub count: usize,
    /// [`ruleset_hash`] of the set: equal on hosts whose rules are the same.
    pub hash: String,
    /// The rules that get series, in the order they are tried: all of them, or those with
    /// the most hits ([`RuleMetrics`]).
    pub rules: Vec<RuleSample>,
}

impl FilterMetrics {
    /// Whether some rules got no series.
    pub fn truncated(&self) -> bool {
        self.rules.len() < self.count
    }
}

/// One rule's counters.
#[derive(Clone, Debug, Default)]
pub struct RuleSample {
    pub id: u32,
    /// "pass", "drop" or "limit".
    pub action: &'static str,
    pub counter: RuleCounter,
}

/// `run_time_ns` and `run_cnt` of a program: they advance only while the kernel's BPF
/// statistics are on (`sysctl kernel.bpf_stats_enabled=1`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgramRuns {
    pub run_time: Duration,
    pub run_count: u64,
}

impl IfaceMetrics {
    /// Reads an attachment's pins. The counters are required; the rule set and the program
    /// are left out (and logged) when they cannot be read. Takes no lock: a scrape neither
    /// waits for `netxdp apply` nor holds it up.
    pub fn read(pins: &PinDir, rule_metrics: RuleMetrics) -> Result<Self> {
        let stats = CounterMap::from_pin(pins)?.read()?;
        let filter = match read_filter(pins, rule_metrics) {
            Ok(filter) => Some(filter),
            Err(error) => {
                warn!("{}: rules not exported: {error:#}", pins.iface());
                None
            }
        };
        let program = match ProgramInfo::from_pin(pins.prog()) {
            Ok(info) => Some(ProgramRuns {
                run_time: info.run_time(),
                run_count: info.run_count(),
            }),
            Err(error) => {
                debug!("{}: program run time not exported: {error}", pins.iface());
                None
            }
        };
        let tracking = match read_info(pins).map(|info| info.flow_table_size) {
            Ok(0) => None,
            Ok(_) => match read_tracking(pins) {
                Ok(tracking) => Some(tracking),
                Err(error) => {
                    warn!(
                        "{}: flow and source tables not exported: {error:#}",
                        pins.iface()
                    );
                    None
                }
            },
            Err(error) => {
                debug!("{}: attach record unreadable: {error:#}", pins.iface());
                None
            }
        };
        let capture = match capture::CounterMap::from_pin(pins).and_then(|map| map.read()) {
            Ok(counters) => Some(counters),
            Err(error) => {
                debug!("{}: capture counters not exported: {error:#}", pins.iface());
                None
            }
        };
        Ok(Self {
            iface: pins.iface().to_string(),
            stats,
            filter,
            program,
            tracking,
            capture,
            last_apply: LastApply::read(pins.iface()),
            bans: BanTable::in_force(pins).ok(),
        })
    }
}

fn read_tracking(pins: &PinDir) -> Result<TrackingMetrics> {
    let flows = FlowTable::from_pin(pins)?;
    let mut top_sources = SourceTable::from_pin(pins)?.read()?;
    top_sources.sort_by_key(|source| std::cmp::Reverse(source.total().packets));
    top_sources.truncate(TOP_SOURCES);
    Ok(TrackingMetrics {
        flows: flows.count()? as u64,
        flow_table: flows.allocation()?,
        top_sources,
    })
}

fn read_filter(pins: &PinDir, rule_metrics: RuleMetrics) -> Result<FilterMetrics> {
    let maps = FilterMaps::read_pins(pins)?;
    let set = maps.load()?;
    let kept = rule_metrics.kept(set.rules().len());
    let counters = if kept == 0 {
        Vec::new()
    } else {
        maps.counters(set.rules())?
    };
    let mut rules: Vec<RuleSample> = set
        .rules()
        .iter()
        .zip(counters)
        .map(|(rule, counter)| RuleSample {
            id: rule.id,
            action: rule.action().as_str(),
            counter,
        })
        .collect();
    if kept < rules.len() {
        // The most hits first (ties by id, for the same series from one scrape to the next),
        // then back in the order tried.
        let order: std::collections::HashMap<u32, usize> = rules
            .iter()
            .enumerate()
            .map(|(at, rule)| (rule.id, at))
            .collect();
        rules.sort_by_key(|rule| (std::cmp::Reverse(rule.counter.packets), rule.id));
        rules.truncate(kept);
        rules.sort_by_key(|rule| order[&rule.id]);
    }
    Ok(FilterMetrics {
        policy: set.policy.as_str(),
        count: set.rules().len(),
        hash: ruleset_hash(&set),
        rules,
    })
}

/// Everything one scrape exports.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Attached interfaces, sorted by name.
    pub interfaces: Vec<IfaceMetrics>,
    /// `kernel.bpf_stats_enabled`; `None` when it cannot be read.
    pub bpf_stats_enabled: Option<bool>,
    /// Snapshots the exporter read, this one included.
    pub snapshots: u64,
}

impl Snapshot {
    /// Every attached interface, read now. An interface that is not attached (its link is
    /// not pinned) is skipped; one that cannot be read (detached meanwhile, say) is skipped
    /// and logged: a scrape never fails for one interface.
    pub fn read(rule_metrics: RuleMetrics) -> Self {
        let pins = match PinDir::all() {
            Ok(pins) => pins,
            Err(error) => {
                warn!("listing {}: {error}", PinDir::root().display());
                Vec::new()
            }
        };
        let interfaces = pins
            .iter()
            .filter(|pins| pins.is_attached())
            .filter_map(|pins| match IfaceMetrics::read(pins, rule_metrics) {
                Ok(metrics) => Some(metrics),
                Err(error) => {
                    warn!("{}: not exported: {error:#}", pins.iface());
                    None
                }
            })
            .collect();
        let bpf_stats_enabled = std::fs::read_to_string(BPF_STATS_SYSCTL)
            .ok()
            .map(|text| text.trim() != "0");
        Self {
            interfaces,
            bpf_stats_enabled,
            snapshots: 0,
        }
    }
}
