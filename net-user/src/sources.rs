//! The source table, read back: packets and bytes by source prefix (IPv4 /24, IPv6 /64),
//! dropped and passed, summed over CPUs; and how `netxdp flows --sources` shows them.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsFd as _,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Map, MapData},
};
use net_common::{
    names,
    rule::Family,
    source::{SourceKey, SourceSlot},
    stats::Counter,
};
use serde::Serialize;

use crate::{
    clock::monotonic_ns,
    flows::{Allocation, memlock},
    pins::PinDir,
    report::{human_bytes, rfc3339},
};

pub const SOURCES_SCHEMA: &str = "netxdp.sources/v1";

/// The `SOURCES` map, pinned or owned by a loaded object.
pub struct SourceTable {
    map: MapData,
}

impl SourceTable {
    pub fn from_pin(pins: &PinDir) -> Result<Self> {
        Ok(Self {
            map: pins.open_map(names::SOURCES_MAP)?,
        })
    }

    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self> {
        let map = ebpf
            .take_map(names::SOURCES_MAP)
            .context("the object has no SOURCES map")?;
        let Map::PerCpuArray(map) = map else {
            bail!("the SOURCES map is not a per-CPU array");
        };
        Ok(Self { map })
    }

    /// Every prefix some CPU holds, its slots on every CPU summed: one row per prefix.
    pub fn read(&self) -> Result<Vec<SourceStats>> {
        let slots = self.map.info()?.max_entries();
        let cpus = aya::util::nr_cpus().map_err(|(_, error)| error)?;
        let mut by_key: HashMap<SourceKey, SourceStats> = HashMap::new();
        crate::bpf_batch::read_per_cpu_array(
            self.map.fd().as_fd(),
            0,
            slots,
            cpus,
            |_, per_cpu: &[SourceSlot]| {
                for slot in per_cpu.iter().filter(|slot| slot.weight() > 0) {
                    by_key
                        .entry(slot.key)
                        .or_insert_with(|| SourceStats::new(slot.key))
                        .add(slot);
                }
            },
        )
        .with_context(|| format!("reading the source table ({})", names::SOURCES_MAP))?;
        // A prefix that holds a slot only by inheritance has sent nothing counted.
        Ok(by_key
            .into_values()
            .filter(|source| source.total().packets > 0)
            .collect())
    }

    /// The table's size, as the kernel made it: slots per CPU, and memory for all CPUs.
    pub fn allocation(&self) -> Result<Allocation> {
        Ok(Allocation {
            entries: self.map.info()?.max_entries(),
            bytes: memlock(&self.map)?,
        })
    }
}

/// One prefix, over every CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceStats {
    pub key: SourceKey,
    pub dropped: Counter,
    pub passed: Counter,
    /// Packets the prefix may have sent beyond those counted (see [`SourceSlot::inherited`]).
    pub uncounted_at_most: u64,
    pub last_seen_ns: u64,
}

impl SourceStats {
    fn new(key: SourceKey) -> Self {
        Self {
            key,
            dropped: Counter::default(),
            passed: Counter::default(),
            uncounted_at_most: 0,
            last_seen_ns: 0,
        }
    }

    fn add(&mut self, slot: &SourceSlot) {
        self.dropped.merge(&slot.dropped);
        self.passed.merge(&slot.passed);
        self.uncounted_at_most += slot.inherited;
        self.last_seen_ns = self.last_seen_ns.max(slot.last_seen_ns);
    }

    /// Dropped and passed together.
    pub fn total(&self) -> Counter {
        let mut total = self.dropped;
        total.merge(&self.passed);
        total
    }

    /// The prefix as `ip route` writes one (`198.51.100.0/24`, `2001:db8::/64`); `None` for
    /// packets without a source address.
    pub fn prefix(&self) -> Option<String> {
        prefix_text(&self.key)
    }
}

/// `key` as `ip route` writes a prefix; `None` for the no-address key.
pub fn prefix_text(key: &SourceKey) -> Option<String> {
    let p = key.prefix;
    let address = match key.family() {
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(p[0], p[1], p[2], 0)),
        Family::Ipv6 => {
            let mut bytes = [0; 16];
            bytes[..8].copy_from_slice(&p);
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        Family::Any => return None,
    };
    Some(format!("{address}/{}", key.len()))
}

/// `netxdp flows --sources --json`.
#[derive(Debug, Serialize)]
pub struct SourcesRecord {
    pub schema: &'static str,
    pub iface: String,
    /// Prefixes the table held when it was read (more than `sources` holds with a limit).
    pub in_table: usize,
    /// In the order asked for.
    pub sources: Vec<SourceRecord>,
}

/// One source prefix.
#[derive(Debug, Serialize)]
pub struct SourceRecord {
    /// `198.51.100.0/24` or `2001:db8::/64`; `null` for packets without a source address.
    pub prefix: Option<String>,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub passed_packets: u64,
    pub passed_bytes: u64,
    /// Packets the prefix may have sent, before it took its slot, beyond those counted.
    pub uncounted_at_most: u64,
    /// RFC 3339, UTC.
    pub last_seen: String,
}

impl SourcesRecord {
    /// The sources of `iface`, ordered by `sort` (descending), at most `limit` of them.
    pub fn new(
        iface: &str,
        mut sources: Vec<SourceStats>,
        sort: impl Fn(&SourceStats) -> u64,
        limit: Option<usize>,
    ) -> Self {
        let now_ns = monotonic_ns();
        let now = SystemTime::now();
        let in_table = sources.len();
        sources.sort_by_key(|source| std::cmp::Reverse(sort(source)));
        sources.truncate(limit.unwrap_or(usize::MAX));
        let wall = |ns: u64| {
            let ago = Duration::from_nanos(now_ns.saturating_sub(ns));
            rfc3339(now.checked_sub(ago).unwrap_or(now))
        };
        let records = sources
            .iter()
            .map(|source| SourceRecord {
                prefix: source.prefix(),
                dropped_packets: source.dropped.packets,
                dropped_bytes: source.dropped.bytes,
                passed_packets: source.passed.packets,
                passed_bytes: source.passed.bytes,
                uncounted_at_most: source.uncounted_at_most,
                last_seen: wall(source.last_seen_ns),
            })
            .collect();
        Self {
            schema: SOURCES_SCHEMA,
            iface: iface.to_owned(),
            in_table,
            sources: records,
        }
    }

    pub fn to_text(&self) -> String {
        let shown = match self.sources.len() {
            all if all == self.in_table => String::new(),
            some => format!("{some} of "),
        };
        let mut out = format!(
            "{}: {shown}{} source prefix{} (IPv4 /24, IPv6 /64; the heaviest a CPU sees keep \
             their slots)\n",
            self.iface,
            self.in_table,
            if self.in_table == 1 { "" } else { "es" },
        );
        let _ = writeln!(
            out,
            "{:<24} {:>12} {:>10} {:>12} {:>10} {:>12}",
            "SOURCE", "DROPPED", "BYTES", "PASSED", "BYTES", "UNCOUNTED<="
        );
        for source in &self.sources {
            let _ = writeln!(
                out,
                "{:<24} {:>12} {:>10} {:>12} {:>10} {:>12}",
                source.prefix.as_deref().unwrap_or("(no address)"),
                source.dropped_packets,
                human_bytes(source.dropped_bytes),
                source.passed_packets,
                human_bytes(source.passed_bytes),
                source.uncounted_at_most,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_written_as_ip_route_writes_them() {
        let key = |prefix: [u8; 8], family: u32| SourceKey {
            prefix,
            family,
            _pad: 0,
        };
        assert_eq!(
            prefix_text(&key([198, 51, 100, 0, 0, 0, 0, 0], 4)).as_deref(),
            Some("198.51.100.0/24")
        );
        assert_eq!(
            prefix_text(&key([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1], 6)).as_deref(),
            Some("2001:db8:0:1::/64")
        );
        assert_eq!(prefix_text(&key([0; 8], 0)), None);
    }

    #[test]
    fn a_prefix_is_summed_over_its_slots_on_every_cpu() {
        let key = SourceKey {
            prefix: [203, 0, 113, 0, 0, 0, 0, 0],
            family: 4,
            _pad: 0,
        };
        let slot = |dropped: u64, passed: u64, inherited: u64, seen: u64| SourceSlot {
            key,
            dropped: Counter {
                packets: dropped,
                bytes: dropped * 100,
            },
            passed: Counter {
                packets: passed,
                bytes: passed * 60,
            },
            inherited,
            last_seen_ns: seen,
        };
        let mut stats = SourceStats::new(key);
        stats.add(&slot(5, 1, 0, 10));
        stats.add(&slot(7, 0, 3, 30));
        assert_eq!(stats.dropped.packets, 12);
        assert_eq!(stats.passed.bytes, 60);
        assert_eq!(stats.uncounted_at_most, 3);
        assert_eq!(stats.last_seen_ns, 30);
        assert_eq!(stats.total().packets, 13);
    }
}
