//! Samples of the pinned maps: what `top` reads from each attachment, and how often it reads
//! the flow and source tables ([`Sampler`]).

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use net_common::{
    flow::{FlowKey, FlowStats},
    rule::{Rule, RuleCounter},
    stats::Stats,
};

use super::FLOW_READ_BUDGET;
use crate::{
    attach::read_info,
    bans::{Ban, BanTable},
    clock::monotonic_ns,
    counters::CounterMap,
    filter::maps::FilterMaps,
    flows::{Allocation, FlowTable},
    iface::IfaceName,
    pins::PinDir,
    sources::{SourceStats, SourceTable},
};

/// One interface's maps, as read at one moment.
#[derive(Clone, Debug, Default)]
pub struct IfaceSample {
    pub iface: String,
    pub stats: Stats,
    pub flows: Vec<(FlowKey, FlowStats)>,
    pub sources: Vec<SourceStats>,
    /// The flow table's size; `None` when attached with `--no-flows`.
    pub flow_table: Option<Allocation>,
    pub rules: Vec<(Rule, RuleCounter)>,
    /// The bans in force, soonest to end first.
    pub bans: Vec<Ban>,
    /// What could not be read, said once.
    pub error: Option<String>,
}

/// Every interface's maps, read together.
#[derive(Clone, Debug)]
pub struct RawSample {
    pub at: Instant,
    pub wall: SystemTime,
    /// CLOCK_MONOTONIC nanoseconds, the flow table's clock.
    pub now_ns: u64,
    pub ifaces: Vec<IfaceSample>,
    /// How long reading took.
    pub read_time: Duration,
    /// How long reading the flow and source tables took; `None` when they were not read
    /// this time.
    pub flows_read: Option<Duration>,
    /// Seconds from one flow-table read to the next.
    pub flows_period: f64,
}

/// The pinned maps of the interfaces shown.
pub struct Attachments {
    pub ifaces: Vec<Attached>,
}

pub struct Attached {
    pins: PinDir,
    counters: CounterMap,
    /// `None` when attached with `--no-flows`.
    tracking: Option<Tracking>,
}

/// The flow and source tables of one attachment.
struct Tracking {
    flows: FlowTable,
    sources: SourceTable,
    flow_table: Allocation,
}

impl Attached {
    pub fn flow_table(&self) -> Option<Allocation> {
        self.tracking.as_ref().map(|tracking| tracking.flow_table)
    }
}

impl Attachments {
    pub fn open(ifaces: &[IfaceName]) -> Result<Self> {
        let pins = if ifaces.is_empty() {
            let all = PinDir::all()?;
            if all.is_empty() {
                bail!(
                    "netxdp is not attached to any interface (`netxdp attach IFACE` attaches it)"
                );
            }
            all
        } else {
            ifaces.iter().map(PinDir::new).collect()
        };
        let mut attached = Vec::new();
        for pins in pins {
            if !pins.is_attached() {
                bail!(
                    "netxdp is not attached to {} (`netxdp status` lists its attachments)",
                    pins.iface()
                );
            }
            let tracking = if read_info(&pins)?.flow_table_size > 0 {
                let flows = FlowTable::from_pin(&pins)?;
                Some(Tracking {
                    flow_table: flows.allocation()?,
                    sources: SourceTable::from_pin(&pins)?,
                    flows,
                })
            } else {
                None
            };
            attached.push(Attached {
                counters: CounterMap::from_pin(&pins)?,
                tracking,
                pins,
            });
        }
        Ok(Self { ifaces: attached })
    }

    /// Reads every map; what fails is said in the sample, not fatal (an interface detached
    /// meanwhile shows as an error line).
    fn read(&self, with_flows: bool) -> RawSample {
        let started = Instant::now();
        let mut flows_read = None;
        let ifaces = self
            .ifaces
            .iter()
            .map(|attached| {
                let mut sample = IfaceSample {
                    iface: attached.pins.iface().to_string(),
                    flow_table: attached.flow_table(),
                    ..Default::default()
                };
                let mut fail = |error: anyhow::Error| {
                    sample.error.get_or_insert(format!("{error:#}"));
                };
                match attached.counters.read() {
                    Ok(stats) => sample.stats = stats,
                    Err(error) => fail(error),
                }
                match read_rules(&attached.pins) {
                    Ok(rules) => sample.rules = rules,
                    Err(error) => fail(error),
                }
                match BanTable::read_pins(&attached.pins).and_then(|bans| bans.list()) {
                    Ok(mut bans) => {
                        bans.sort_by_key(|ban| ban.expires_ns);
                        sample.bans = bans;
                    }
                    Err(error) => fail(error),
                }
                if let (true, Some(tracking)) = (with_flows, &attached.tracking) {
                    let reading = Instant::now();
                    match tracking.flows.read() {
                        Ok(flows) => sample.flows = flows,
                        Err(error) => fail(error),
                    }
                    match tracking.sources.read() {
                        Ok(sources) => sample.sources = sources,
                        Err(error) => fail(error),
                    }
                    *flows_read.get_or_insert(Duration::ZERO) += reading.elapsed();
                }
                sample
            })
            .collect();
        RawSample {
            at: Instant::now(),
            wall: SystemTime::now(),
            now_ns: monotonic_ns(),
            ifaces,
            read_time: started.elapsed(),
            flows_read,
            flows_period: 0.0,
        }
    }
}

/// Samples the interfaces every interval, and their flow tables as often as
/// [`FLOW_READ_BUDGET`] allows: every sample while a read is cheap, every few samples when a
/// full table makes it expensive (rates stay right, being taken over the time between reads).
pub struct Sampler {
    attachments: Attachments,
    interval: Duration,
    /// Samples from one flow-table read to the next.
    flows_every: u32,
    since_flows: u32,
}

impl Sampler {
    pub fn new(attachments: Attachments, interval: Duration) -> Self {
        Self {
            attachments,
            interval,
            flows_every: 1,
            since_flows: 0,
        }
    }

    pub fn sample(&mut self) -> RawSample {
        let with_flows = self.since_flows + 1 >= self.flows_every;
        let mut sample = self.attachments.read(with_flows);
        match sample.flows_read {
            Some(took) => {
                self.flows_every = flows_every(took, self.interval);
                self.since_flows = 0;
            }
            None => self.since_flows += 1,
        }
        sample.flows_period = self.flows_period();
        sample
    }

    /// Seconds from one flow-table read to the next.
    fn flows_period(&self) -> f64 {
        self.interval.as_secs_f64() * f64::from(self.flows_every)
    }
}

/// Samples between flow-table reads that take `took` each, for reads to stay within
/// [`FLOW_READ_BUDGET`] at one sample per `interval`.
fn flows_every(took: Duration, interval: Duration) -> u32 {
    let budget = interval.as_secs_f64() * FLOW_READ_BUDGET;
    (took.as_secs_f64() / budget)
        .ceil()
        .clamp(1.0, f64::from(u32::MAX)) as u32
}

fn read_rules(pins: &PinDir) -> Result<Vec<(Rule, RuleCounter)>> {
    let maps = FilterMaps::read_pins(pins)?;
    let set = maps.load()?;
    let counters = maps.counters(set.rules())?;
    Ok(set.rules().iter().copied().zip(counters).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_tables_are_read_as_often_as_the_budget_allows() {
        let second = Duration::from_secs(1);
        assert_eq!(flows_every(Duration::from_millis(3), second), 1);
        assert_eq!(flows_every(Duration::from_millis(10), second), 1);
        assert_eq!(flows_every(Duration::from_millis(25), second), 3);
        assert_eq!(flows_every(Duration::from_millis(25), second * 5), 1);
        assert_eq!(flows_every(Duration::ZERO, second), 1);
    }
}
