//! The per-CPU counter block, read whole and summed over CPUs.

use std::time::{Instant, SystemTime};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuArray},
};
use net_common::{names, stats::Stats};

use crate::pins::PinDir;

/// The `STATS` map, pinned or owned by a loaded object.
pub struct CounterMap {
    map: PerCpuArray<MapData, Stats>,
}

impl CounterMap {
    /// The counters of a pinned attachment.
    pub fn from_pin(pins: &PinDir) -> Result<Self> {
        let data = pins.open_map(names::STATS_MAP)?;
        Ok(Self {
            map: PerCpuArray::try_from(Map::PerCpuArray(data))?,
        })
    }

    /// The counters of an object this process loaded; the map leaves the object.
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self> {
        let map = ebpf
            .take_map(names::STATS_MAP)
            .context("the object has no STATS map")?;
        Ok(Self {
            map: PerCpuArray::try_from(map)?,
        })
    }

    /// The sum over all CPUs.
    pub fn read(&self) -> Result<Stats> {
        let per_cpu = self.map.get(&0, 0).context("reading the STATS map")?;
        let mut total = Stats::default();
        for cpu in per_cpu.iter() {
            total.merge(cpu);
        }
        Ok(total)
    }

    /// A timestamped reading.
    pub fn sample(&self) -> Result<Sample> {
        Ok(Sample {
            at: Instant::now(),
            wall: SystemTime::now(),
            stats: self.read()?,
        })
    }
}

/// Counters as read at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: Instant,
    pub wall: SystemTime,
    pub stats: Stats,
}

impl Sample {
    /// The sum of samples taken together (of several interfaces), as of the last of them.
    pub fn total(samples: &[Sample]) -> Option<Sample> {
        let last = samples.iter().max_by_key(|sample| sample.at)?;
        let mut stats = Stats::default();
        for sample in samples {
            stats.merge(&sample.stats);
        }
        Some(Sample { stats, ..*last })
    }
}
