//! The SYN-flood guard's ports and counters in an attachment's pinned maps (see
//! `net_common::synguard`).

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, Map, MapData, PerCpuArray},
};
use net_common::{
    names,
    synguard::{SynGuard, SynGuardCounters},
};

use crate::{lock::IfaceLock, pins::PinDir};

/// An attachment's guard.
pub struct SynGuardMaps {
    config: Array<MapData, SynGuard>,
    counters: PerCpuArray<MapData, SynGuardCounters>,
    /// Held while this value lives, on pinned maps: one writer per interface at a time.
    _lock: Option<IfaceLock>,
}

impl SynGuardMaps {
    /// The guard of a pinned attachment, locked against other netxdp processes.
    pub fn from_pins(pins: &PinDir) -> Result<Self> {
        let lock = IfaceLock::for_changes(pins)?;
        Self::open(|name| pins.open_map(name), Some(lock))
    }

    /// The guard of a pinned attachment, for reading only: no lock.
    pub fn read_pins(pins: &PinDir) -> Result<Self> {
        Self::open(|name| pins.open_map(name), None)
    }

    /// The guard of an object this process loaded; the maps leave the object.
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str| match ebpf.take_map(name) {
            Some(Map::Array(data) | Map::PerCpuArray(data)) => Ok(data),
            _ => bail!("the object has no {name} map"),
        };
        Self::open(&mut take, None)
    }

    fn open(
        mut open: impl FnMut(&str) -> Result<MapData>,
        lock: Option<IfaceLock>,
    ) -> Result<Self> {
        Ok(Self {
            config: Map::Array(open(names::SYNGUARD_MAP)?).try_into()?,
            counters: Map::PerCpuArray(open(names::SYNGUARD_STATS_MAP)?).try_into()?,
            _lock: lock,
        })
    }

    /// Guards exactly `ports` (none: the guard is off), in one write.
    pub fn set(&mut self, ports: &[u16]) -> Result<()> {
        let mut guard = SynGuard::default();
        for &port in ports {
            guard.guard(port);
        }
        self.config
            .set(0, guard, 0)
            .with_context(|| format!("writing {}", names::SYNGUARD_MAP))
    }

    /// The guarded ports, in order.
    pub fn ports(&self) -> Result<Vec<u16>> {
        let guard = self
            .config
            .get(&0, 0)
            .with_context(|| format!("reading {}", names::SYNGUARD_MAP))?;
        Ok(guard.ports().collect())
    }

    /// What the guard did since attach, summed over CPUs.
    pub fn counters(&self) -> Result<SynGuardCounters> {
        let per_cpu = self
            .counters
            .get(&0, 0)
            .with_context(|| format!("reading {}", names::SYNGUARD_STATS_MAP))?;
        let mut total = SynGuardCounters::default();
        for cpu in per_cpu.iter() {
            total.merge(cpu);
        }
        Ok(total)
    }
}

/// Ports to guard, as `--ports` gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardPorts(pub Vec<u16>);

/// [`parse_ports`], for clap.
pub fn parse_guard_ports(text: &str) -> Result<GuardPorts, String> {
    parse_ports(text).map(GuardPorts)
}

/// `22,80,443-445`: ports and inclusive ranges, comma-separated.
pub fn parse_ports(text: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for part in text.split(',').map(str::trim) {
        let range = crate::filter::spec::parse_ports(part).map_err(|error| error.to_string())?;
        if range.is_any() {
            return Err(format!(
                "`{part}`: name the ports to guard (22,80,443), not all of them"
            ));
        }
        ports.extend(range.first..=range.last);
    }
    if ports.is_empty() {
        return Err("no ports: name at least one (22,80,443)".to_owned());
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// Ports as `parse_ports` reads them, runs as ranges: `22,80,443-445`.
pub fn ports_text(ports: &[u16]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while index < ports.len() {
        let first = ports[index];
        let mut last = first;
        while index + 1 < ports.len() && ports[index + 1] == last.wrapping_add(1) {
            index += 1;
            last = ports[index];
        }
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
        index += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_read_back_as_written() {
        assert_eq!(
            parse_ports("443, 22,80,8000-8002,22"),
            Ok(vec![22, 80, 443, 8000, 8001, 8002])
        );
        assert_eq!(
            ports_text(&[22, 80, 443, 8000, 8001, 8002]),
            "22,80,443,8000-8002"
        );
        assert!(parse_ports("any").unwrap_err().contains("name the ports"));
        assert!(parse_ports("22,http").is_err());
        assert!(parse_ports("70000").is_err());
    }
}
