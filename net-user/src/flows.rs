//! The flow table, read back: each flow's counters summed over CPUs, and how `netxdp flows`
//! shows them (a table like ss's, and a JSON document with a versioned schema).

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime},
};

use std::os::fd::{AsFd as _, AsRawFd as _};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Map, MapData},
};
use net_common::{
    flow::{FlowKey, FlowStats},
    names,
    parse::{L3, L4},
    stats::XDP_ACTIONS,
};
use serde::Serialize;

use crate::{clock::monotonic_ns, pins::PinDir, report::rfc3339};

pub const FLOWS_SCHEMA: &str = "netxdp.flows/v1";

/// The `FLOWS` map, pinned or owned by a loaded object.
pub struct FlowTable {
    map: MapData,
}

impl FlowTable {
    pub fn from_pin(pins: &PinDir) -> Result<Self> {
        Ok(Self {
            map: pins.open_map(names::FLOWS_MAP)?,
        })
    }

    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self> {
        let map = ebpf
            .take_map(names::FLOWS_MAP)
            .context("the object has no FLOWS map")?;
        let Map::LruHashMap(map) = map else {
            bail!("the FLOWS map is not an LRU hash map");
        };
        Ok(Self { map })
    }

    /// Flows in the table.
    pub fn count(&self) -> Result<usize> {
        let mut count = 0;
        self.for_each(|_, _| count += 1)?;
        Ok(count)
    }

    /// Every flow: a 100,000-flow table in a few dozen system calls.
    pub fn read(&self) -> Result<Vec<(FlowKey, FlowStats)>> {
        let mut flows = Vec::new();
        self.for_each(|key, flow| flows.push((*key, *flow)))?;
        Ok(flows)
    }

    fn for_each(&self, each: impl FnMut(&FlowKey, &FlowStats)) -> Result<()> {
        crate::bpf_batch::for_each(self.map.fd().as_fd(), each)
            .with_context(|| format!("reading the flow table ({})", names::FLOWS_MAP))
    }

    /// What the table holds at most, and the memory the kernel charged for it.
    pub fn allocation(&self) -> Result<Allocation> {
        let info = self.map.info()?;
        Ok(Allocation {
            entries: info.max_entries(),
            bytes: memlock(&self.map)?,
        })
    }
}

/// A map's size, as the kernel made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Allocation {
    /// Elements it holds at most.
    pub entries: u32,
    /// Bytes of kernel memory charged for it (`memlock` in its fdinfo).
    pub bytes: u64,
}

/// The kernel's count of the memory a map uses, from its fdinfo.
pub fn memlock(map: &MapData) -> Result<u64> {
    let path = format!("/proc/self/fdinfo/{}", map.fd().as_fd().as_raw_fd());
    let fdinfo = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("{path} has no memlock line"))
}

/// `netxdp flows --json`.
#[derive(Debug, Serialize)]
pub struct FlowsRecord {
    pub schema: &'static str,
    pub iface: String,
    /// Flows the table holds at most.
    pub table_size: u32,
    /// Kernel memory charged for the table.
    pub table_bytes: u64,
    /// Flows in the table when it was read (more than `flows` holds with a limit).
    pub in_table: usize,
    /// In the order asked for.
    pub flows: Vec<FlowRecord>,
}

/// One flow, as the interface received it: `peer` sent to `local`.
#[derive(Debug, Serialize)]
pub struct FlowRecord {
    /// tcp, udp, icmp, icmpv6, an IP protocol number, arp or other.
    pub proto: String,
    /// The destination address (`null` for non-IP) and port (`null` without ports).
    pub local: Option<IpAddr>,
    pub local_port: Option<u16>,
    pub peer: Option<IpAddr>,
    pub peer_port: Option<u16>,
    /// The outer VLAN id, `null` untagged.
    pub vlan: Option<u16>,
    pub packets: u64,
    pub bytes: u64,
    /// Bits per second between the first and the last packet; `null` for a single packet.
    pub bps: Option<f64>,
    /// RFC 3339, UTC.
    pub first_seen: String,
    pub last_seen: String,
    /// TCP flags seen, as ss and tcpdump name them (`S`, `A`, `F`, `R`, `P`, `U`, `E`, `C`).
    pub tcp_flags: String,
    /// The last packet's verdict, and the rule that gave it (`null` for a default).
    pub verdict: &'static str,
    pub rule: Option<u32>,
}

impl FlowRecord {
    /// One flow as read, as of `now_ns` (CLOCK_MONOTONIC, [`monotonic_ns`]) and `now`.
    pub fn new(key: &FlowKey, flow: &FlowStats, now_ns: u64, now: SystemTime) -> Self {
        let address = |bytes: &[u8; 16]| address(key, bytes);
        let ports = (key.sport != 0 || key.dport != 0).then_some((key.sport, key.dport));
        let wall = |ns: u64| {
            let ago = Duration::from_nanos(now_ns.saturating_sub(ns));
            rfc3339(now.checked_sub(ago).unwrap_or(now))
        };

        Self {
            proto: proto_name(key),
            local: address(&key.dst),
            local_port: ports.map(|(_, dport)| dport),
            peer: address(&key.src),
            peer_port: ports.map(|(sport, _)| sport),
            vlan: (key.vlan_id != 0).then_some(key.vlan_id),
            packets: flow.packets,
            bytes: flow.bytes,
            bps: average_bps(flow),
            first_seen: wall(flow.first_seen_ns),
            last_seen: wall(flow.last_seen_ns),
            tcp_flags: tcp_flags(flow.tcp_flags),
            verdict: XDP_ACTIONS
                .get(flow.action as usize)
                .copied()
                .unwrap_or("unknown"),
            rule: (flow.rule_id != 0).then_some(flow.rule_id),
        }
    }
}

/// Bits per second between a flow's first and last packet; `None` for a single packet.
pub fn average_bps(flow: &FlowStats) -> Option<f64> {
    let seconds = flow.last_seen_ns.saturating_sub(flow.first_seen_ns) as f64 / 1e9;
    (flow.packets > 1 && seconds > 0.0).then(|| flow.bytes as f64 * 8.0 / seconds)
}

/// The flow's source (the peer), as an address; `None` for non-IP.
pub fn peer(key: &FlowKey) -> Option<IpAddr> {
    address(key, &key.src)
}

fn address(key: &FlowKey, bytes: &[u8; 16]) -> Option<IpAddr> {
    match key.l3() {
        L3::Ipv4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        L3::Ipv6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
        _ => None,
    }
}

fn proto_name(key: &FlowKey) -> String {
    match key.l3() {
        L3::Ipv4 | L3::Ipv6 => match L4::from_ip_proto(key.ip_proto) {
            L4::Other => key.ip_proto.to_string(),
            l4 => l4.as_str().to_owned(),
        },
        l3 => l3.as_str().to_owned(),
    }
}

fn tcp_flags(flags: u8) -> String {
    const NAMES: [(u8, char); 8] = [
        (0x02, 'S'),
        (0x10, 'A'),
        (0x01, 'F'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'C'),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

impl FlowsRecord {
    /// The flows of `iface`, ordered by `sort` (descending), at most `limit` of them. Rows
    /// are made for the flows kept only: a full table holds 100,000.
    pub fn new(
        iface: &str,
        table: Allocation,
        mut flows: Vec<(FlowKey, FlowStats)>,
        sort: impl Fn(&FlowStats) -> f64,
        limit: Option<usize>,
    ) -> Self {
        let now_ns = monotonic_ns();
        let now = SystemTime::now();
        let in_table = flows.len();
        let order = |(_, a): &(FlowKey, FlowStats), (_, b): &(FlowKey, FlowStats)| {
            sort(b).total_cmp(&sort(a))
        };
        // The first `limit` alone, then ordered: a live view shows 20 of 65,536.
        if let Some(limit) = limit.filter(|limit| *limit < flows.len()) {
            if limit > 0 {
                flows.select_nth_unstable_by(limit - 1, order);
            }
            flows.truncate(limit);
        }
        flows.sort_by(order);
        let records = flows
            .iter()
            .map(|(key, flow)| FlowRecord::new(key, flow, now_ns, now))
            .collect();
        Self {
            schema: FLOWS_SCHEMA,
            iface: iface.to_owned(),
            table_size: table.entries,
            table_bytes: table.bytes,
            in_table,
            flows: records,
        }
    }

    pub fn to_text(&self) -> String {
        let endpoint = |addr: Option<IpAddr>, port: Option<u16>| match (addr, port) {
            (Some(IpAddr::V6(addr)), Some(port)) => format!("[{addr}]:{port}"),
            (Some(addr), Some(port)) => format!("{addr}:{port}"),
            (Some(addr), None) => addr.to_string(),
            (None, _) => "*".to_owned(),
        };
        let shown = match self.flows.len() {
            all if all == self.in_table => String::new(),
            some => format!("{some} of "),
        };
        let mut out = format!(
            "{}: {shown}{} flow{} not dropped (the table holds {} in {})\n",
            self.iface,
            self.in_table,
            if self.in_table == 1 { "" } else { "s" },
            self.table_size,
            crate::report::human_bytes(self.table_bytes),
        );
        let _ = writeln!(
            out,
            "{:<7} {:<42} {:<42} {:>10} {:>12} {:>14} {:<6} {:>6} {:<5}",
            "PROTO", "LOCAL", "PEER", "PACKETS", "BYTES", "RATE", "VERDICT", "RULE", "FLAGS"
        );
        for flow in &self.flows {
            let _ = writeln!(
                out,
                "{:<7} {:<42} {:<42} {:>10} {:>12} {:>14} {:<6} {:>6} {:<5}",
                flow.proto,
                endpoint(flow.local, flow.local_port),
                endpoint(flow.peer, flow.peer_port),
                flow.packets,
                crate::report::human_bytes(flow.bytes),
                flow.bps
                    .map_or("-".to_owned(), crate::report::human_bits_per_sec),
                flow.verdict,
                flow.rule.map_or("-".to_owned(), |id| id.to_string()),
                flow.tcp_flags,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flags_are_named_as_tcpdump_names_them() {
        assert_eq!(tcp_flags(0x12), "SA");
        assert_eq!(tcp_flags(0), "");
        assert_eq!(tcp_flags(0x11), "AF");
    }
}
