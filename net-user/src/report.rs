//! How counters and attachments are shown: JSON records with a versioned schema (documented
//! in the README), and the plain-text tables an operator reads, rendered from those records.

use std::{fmt::Write as _, time::SystemTime};

use net_common::{
    parse::{L3, L4},
    stats::{Counter, DROP_REASONS, Stats, XDP_ACTIONS},
};
use serde::Serialize;

use crate::{attach::Attachment, counters::Sample, filter::maps::InForce};

/// v2: `dropped` (by reason) and `search_failed`; `malformed` counts every defect.
pub const STATS_SCHEMA: &str = "netxdp.stats/v2";
pub const STATUS_SCHEMA: &str = "netxdp.status/v1";

/// One counter with its rates over the last interval (`None` on the first sample).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CounterRecord {
    pub packets: u64,
    pub bytes: u64,
    /// Packets per second.
    pub pps: Option<f64>,
    /// Bits per second (frame bytes x 8).
    pub bps: Option<f64>,
}

impl CounterRecord {
    fn new(current: &Counter, previous: Option<&Counter>, seconds: Option<f64>) -> Self {
        let rate = |now: u64, before: u64| {
            seconds
                .filter(|s| *s > 0.0)
                .map(|s| now.saturating_sub(before) as f64 / s)
        };
        let (pps, bps) = match previous {
            Some(before) => (
                rate(current.packets, before.packets),
                rate(current.bytes, before.bytes).map(|bytes| bytes * 8.0),
            ),
            None => (None, None),
        };
        Self {
            packets: current.packets,
            bytes: current.bytes,
            pps,
            bps,
        }
    }
}

/// One line of `netxdp stats --json`.
#[derive(Clone, Debug)]
pub struct StatsRecord {
    pub schema: &'static str,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub scope: Scope,
    /// Seconds since the previous sample; `None` on the first.
    pub interval_secs: Option<f64>,
    pub total: CounterRecord,
    /// By XDP verdict: aborted, drop, pass, tx, redirect.
    pub action: Vec<(&'static str, CounterRecord)>,
    /// By network layer: ipv4, ipv6, arp, other.
    pub l3: Vec<(&'static str, CounterRecord)>,
    /// By transport: tcp, udp, icmp, icmpv6, other.
    pub l4: Vec<(&'static str, CounterRecord)>,
    /// Defective frames: malformed headers, tiny or overlapping fragments, IPv6 chains with
    /// two fragment headers (also counted above).
    pub malformed: CounterRecord,
    /// IP packets without their L4 header: later fragments, truncated or malformed ones.
    pub no_l4: CounterRecord,
    /// Packets a filter rule decided (the rest got the policy, or passed as ARP/ND).
    pub matched: CounterRecord,
    /// Packets that needed the full rule search (the fast path settles the rest).
    pub searched: CounterRecord,
    /// Packets the full search could not reach (its program was removed): they got the
    /// default.
    pub search_failed: CounterRecord,
    /// Packets dropped for a reason other than a rule or the policy, by reason:
    /// fragment (`--fragments drop`), malformed, tiny_fragment, overlap_fragment, ipv6_chain.
    pub dropped: Vec<(&'static str, CounterRecord)>,
}

/// What a record counts: one interface, or the sum of several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Interface(String),
    Total(Vec<String>),
}

impl StatsRecord {
    pub fn new(scope: Scope, current: &Sample, previous: Option<&Sample>) -> Self {
        let seconds = previous.map(|p| current.at.duration_since(p.at).as_secs_f64());
        let before = previous.map(|p| &p.stats);
        let group = |names: &[&'static str], pick: fn(&Stats) -> &[Counter]| {
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let prev = before.map(|b| &pick(b)[i]);
                    (
                        *name,
                        CounterRecord::new(&pick(&current.stats)[i], prev, seconds),
                    )
                })
                .collect()
        };
        let l3_names: Vec<_> = L3::ALL.iter().map(|l3| l3.as_str()).collect();
        let l4_names: Vec<_> = L4::ALL.iter().map(|l4| l4.as_str()).collect();
        Self {
            schema: STATS_SCHEMA,
            timestamp: rfc3339(current.wall),
            scope,
            interval_secs: seconds,
            total: CounterRecord::new(
                &current.stats.total(),
                before.map(Stats::total).as_ref(),
                seconds,
            ),
            action: group(&XDP_ACTIONS, |s| &s.action),
            l3: group(&l3_names, |s| &s.l3),
            l4: group(&l4_names, |s| &s.l4),
            malformed: CounterRecord::new(
                &current.stats.malformed,
                before.map(|b| &b.malformed),
                seconds,
            ),
            no_l4: CounterRecord::new(&current.stats.no_l4, before.map(|b| &b.no_l4), seconds),
            matched: CounterRecord::new(
                &current.stats.matched,
                before.map(|b| &b.matched),
                seconds,
            ),
            searched: CounterRecord::new(
                &current.stats.searched,
                before.map(|b| &b.searched),
                seconds,
            ),
            search_failed: CounterRecord::new(
                &current.stats.search_failed,
                before.map(|b| &b.search_failed),
                seconds,
            ),
            dropped: group(&DROP_REASONS, |s| &s.dropped),
        }
    }

    /// The record as one line of JSON, groups as objects keyed by name.
    pub fn to_json(&self) -> serde_json::Value {
        let group = |entries: &[(&str, CounterRecord)]| {
            entries
                .iter()
                .map(|(name, counter)| ((*name).to_owned(), serde_json::json!(counter)))
                .collect::<serde_json::Map<_, _>>()
        };
        let (iface, total_of) = match &self.scope {
            Scope::Interface(iface) => (Some(iface), None),
            Scope::Total(ifaces) => (None, Some(ifaces)),
        };
        let mut record = serde_json::json!({
            "schema": self.schema,
            "timestamp": self.timestamp,
            "iface": iface,
            "interval_secs": self.interval_secs,
            "total": self.total,
            "action": group(&self.action),
            "l3": group(&self.l3),
            "l4": group(&self.l4),
            "malformed": self.malformed,
            "no_l4": self.no_l4,
            "matched": self.matched,
            "searched": self.searched,
            "search_failed": self.search_failed,
            "dropped": group(&self.dropped),
        });
        if let Some(ifaces) = total_of {
            record["total_of"] = serde_json::json!(ifaces);
        }
        record
    }

    /// The record as a table.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let interval = self
            .interval_secs
            .map(|s| format!("over the last {s:.1} s"))
            .unwrap_or_else(|| "totals since attach".to_owned());
        let name = match &self.scope {
            Scope::Interface(iface) => iface.clone(),
            Scope::Total(ifaces) => format!("total of {}", ifaces.join(", ")),
        };
        let _ = writeln!(out, "{name}  {}  ({interval})", self.timestamp);
        let _ = writeln!(
            out,
            "  {:<16} {:>12} {:>12} {:>12} {:>14}",
            "", "packets", "bytes", "pps", "bps"
        );
        let mut row = |label: String, c: &CounterRecord| {
            let _ = writeln!(
                out,
                "  {:<16} {:>12} {:>12} {:>12} {:>14}",
                label,
                c.packets,
                human_bytes(c.bytes),
                c.pps.map_or("-".to_owned(), |v| format!("{v:.1}")),
                c.bps.map_or("-".to_owned(), human_bits_per_sec),
            );
        };
        row("total".to_owned(), &self.total);
        // Classes that have seen nothing are left out: the JSON has every one.
        for (group, entries) in [("action", &self.action), ("l3", &self.l3), ("l4", &self.l4)] {
            for (name, counter) in entries.iter().filter(|(_, c)| c.packets > 0) {
                row(format!("{group} {name}"), counter);
            }
        }
        for (label, counter) in [
            ("malformed", &self.malformed),
            ("no l4 header", &self.no_l4),
            ("matched a rule", &self.matched),
            ("full rule search", &self.searched),
            ("search failed", &self.search_failed),
        ] {
            if counter.packets > 0 {
                row(label.to_owned(), counter);
            }
        }
        for (reason, counter) in self.dropped.iter().filter(|(_, c)| c.packets > 0) {
            row(format!("drop {}", reason.replace('_', "-")), counter);
        }
        out
    }
}

/// `netxdp status --json`.
#[derive(Debug, Serialize)]
pub struct StatusRecord {
    pub schema: &'static str,
    pub interfaces: Vec<AttachmentRecord>,
}

#[derive(Debug, Serialize)]
pub struct AttachmentRecord {
    pub iface: String,
    pub ifindex: Option<u32>,
    /// "native" or "skb".
    pub mode: Option<&'static str>,
    pub program_id: Option<u32>,
    /// RFC 3339, UTC.
    pub attached_at: Option<String>,
    /// False when the link is missing or the interface is gone (`netxdp detach` cleans up),
    /// and after `detach --keep-rules` (with `mode` null).
    pub live: bool,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
    /// The filter's default: "pass" or "drop".
    pub policy: Option<&'static str>,
    /// Rules in force.
    pub rules: Option<usize>,
    /// How they are classified: "trees", "address-table" (rules on one address field),
    /// "bit-vector" (a set whose trees did not fit) or "none".
    pub classifier: Option<&'static str>,
    /// Decision trees, with "trees".
    pub trees: Option<u32>,
    /// Kernel memory charged for the filter's tables (both generations).
    pub filter_bytes: Option<u64>,
    /// The process id of a `netxdp capture` running on the interface.
    pub capture_pid: Option<u32>,
    /// What holds the program on the interface: "link" (a pinned bpf_link) or "netlink"
    /// (after `attach --force` took another program's place); `null` when nothing does.
    pub held_by: Option<&'static str>,
    /// Bans in force (`netxdp bans IFACE` lists them).
    pub bans: Option<usize>,
    /// The SYN-flood guard: its ports and what it did; `null` when it is off.
    pub synguard: Option<SynGuardRecord>,
    /// The last `netxdp apply`: its file, whether it is in force, when, and what it did or
    /// why not.
    pub last_apply: Option<LastApplyRecord>,
    /// `null` when attached with `--no-flows`.
    pub flow_table: Option<FlowTableRecord>,
}

/// `netxdp synguard`'s ports, and its counters since attach.
#[derive(Debug, Serialize)]
pub struct SynGuardRecord {
    /// As `--ports` takes them: `22,80,443-445`.
    pub ports: String,
    pub cookies: u64,
    pub acks_valid: u64,
    pub acks_invalid: u64,
    pub unanswered: u64,
}

impl SynGuardRecord {
    pub fn new(ports: &[u16], counters: &net_common::synguard::SynGuardCounters) -> Self {
        Self {
            ports: crate::synguard::ports_text(ports),
            cookies: counters.cookies,
            acks_valid: counters.acks_valid,
            acks_invalid: counters.acks_invalid,
            unanswered: counters.unanswered,
        }
    }

    /// One line: `on ports 22,443: 1200 SYNs answered with cookies, ...`.
    pub fn to_text(&self) -> String {
        format!(
            "on ports {}: {} SYNs answered with cookies, {} ACKs with a valid cookie, {} \
             invalid (dropped), {} SYNs left to the stack",
            self.ports, self.cookies, self.acks_valid, self.acks_invalid, self.unanswered
        )
    }
}

#[derive(Debug, Serialize)]
pub struct LastApplyRecord {
    pub file: String,
    pub ok: bool,
    /// RFC 3339, UTC.
    pub at: String,
    pub outcome: String,
}

/// The flow and source tables' sizes, as the kernel made them.
#[derive(Debug, Serialize)]
pub struct FlowTableRecord {
    /// Flows the table holds, and each CPU's share of them (a CPU evicts from its own).
    pub flows: u32,
    pub flows_per_cpu: u32,
    /// Kernel memory charged for the flow table.
    pub bytes: u64,
    /// Source prefixes each CPU keeps, and the source table's memory on all CPUs.
    pub source_slots_per_cpu: u32,
    pub source_bytes: u64,
}

impl StatusRecord {
    pub fn new(attachments: &[Attachment]) -> Self {
        let interfaces = attachments
            .iter()
            .map(|a| AttachmentRecord {
                iface: a.iface.to_string(),
                ifindex: a.info.map(|i| i.ifindex),
                mode: a.info.and_then(|i| i.mode()).map(|m| m.as_str()),
                program_id: a.program.as_ref().map(|p| p.id()),
                attached_at: a.info.filter(|i| i.mode().is_some()).map(|i| {
                    rfc3339(
                        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(i.attached_at_unix),
                    )
                }),
                live: a.live,
                packets: a.counters.map(|c| c.total().packets),
                bytes: a.counters.map(|c| c.total().bytes),
                policy: a.rules.as_ref().map(|set| set.policy.as_str()),
                rules: a.rules.as_ref().map(|set| set.rules().len()),
                classifier: a.classifier.map(|(in_force, _)| in_force.as_str()),
                trees: a.classifier.and_then(|(in_force, _)| match in_force {
                    InForce::Trees(trees) => Some(trees),
                    _ => None,
                }),
                filter_bytes: a.classifier.map(|(_, bytes)| bytes),
                capture_pid: a.capture_pid,
                held_by: a.hold.map(|hold| hold.as_str()),
                bans: a.bans,
                synguard: a
                    .synguard
                    .as_ref()
                    .filter(|(ports, _)| !ports.is_empty())
                    .map(|(ports, counters)| SynGuardRecord::new(ports, counters)),
                last_apply: a.last_apply.as_ref().map(|last| LastApplyRecord {
                    file: last.file.clone(),
                    ok: last.ok,
                    at: rfc3339(
                        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(last.at_unix),
                    ),
                    outcome: last.outcome.clone(),
                }),
                flow_table: a.tables.map(|tables| FlowTableRecord {
                    flows: tables.flows.entries,
                    flows_per_cpu: tables.flows.entries / tables.cpus.max(1) as u32,
                    bytes: tables.flows.bytes,
                    source_slots_per_cpu: tables.sources.entries,
                    source_bytes: tables.sources.bytes,
                }),
            })
            .collect();
        Self {
            schema: STATUS_SCHEMA,
            interfaces,
        }
    }

    pub fn to_text(&self) -> String {
        if self.interfaces.is_empty() {
            return "netxdp is not attached to any interface (`netxdp attach IFACE` attaches it)\n"
                .to_owned();
        }
        let mut out = format!(
            "{:<16} {:<7} {:>8} {:<22} {:>12} {:>10} {:>6} {:<6}  {}\n",
            "INTERFACE",
            "MODE",
            "PROG ID",
            "ATTACHED (UTC)",
            "PACKETS",
            "BYTES",
            "RULES",
            "POLICY",
            "STATE"
        );
        let dash = || "-".to_owned();
        for i in &self.interfaces {
            let _ = writeln!(
                out,
                "{:<16} {:<7} {:>8} {:<22} {:>12} {:>10} {:>6} {:<6}  {}",
                i.iface,
                i.mode.unwrap_or("-"),
                i.program_id.map_or_else(dash, |id| id.to_string()),
                i.attached_at.clone().unwrap_or_else(dash),
                i.packets.map_or_else(dash, |p| p.to_string()),
                i.bytes.map_or_else(dash, human_bytes),
                i.rules.map_or_else(dash, |n| n.to_string()),
                i.policy.unwrap_or("-"),
                match (i.live, i.capture_pid) {
                    (true, None) if i.held_by == Some("netlink") =>
                        "attached (held by netlink, after --force)".to_owned(),
                    (true, None) => "attached".to_owned(),
                    (true, Some(pid)) => format!("attached, capturing (netxdp process {pid})"),
                    (false, _) if i.mode.is_none() && i.rules.is_some() => format!(
                        "detached, rules kept (`netxdp attach {}` puts them back in force)",
                        i.iface
                    ),
                    (false, _) =>
                        "stale: interface or link gone, `netxdp detach` cleans up".to_owned(),
                },
            );
            if let (Some(classifier), Some(bytes)) = (i.classifier, i.filter_bytes) {
                let how = match (classifier, i.trees) {
                    ("trees", Some(trees)) => format!("{trees} decision trees"),
                    ("address-table", _) => "the address's host table and prefix trie".to_owned(),
                    ("bit-vector", _) => {
                        "the bit-vector search (the set's trees did not fit)".to_owned()
                    }
                    _ => "nothing (no rules)".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "  filter: classified by {how}; tables {} of kernel memory",
                    human_bytes(bytes)
                );
            }
            if let Some(guard) = &i.synguard {
                let _ = writeln!(out, "  SYN guard: {}", guard.to_text());
            }
            if let Some(bans) = i.bans.filter(|bans| *bans > 0) {
                let _ = writeln!(
                    out,
                    "  bans: {bans} in force (`netxdp bans {}` lists them)",
                    i.iface
                );
            }
            if let Some(last) = &i.last_apply {
                let _ = if last.ok {
                    writeln!(
                        out,
                        "  last apply: {} at {}: {}",
                        last.file, last.at, last.outcome
                    )
                } else {
                    writeln!(
                        out,
                        "  last apply: {} at {} FAILED, the rules before it stay: {}",
                        last.file, last.at, last.outcome
                    )
                };
            }
            match &i.flow_table {
                Some(table) => {
                    let _ = writeln!(
                        out,
                        "  flows: up to {} in {} ({} per CPU, each evicting its least recently \
                         seen); sources: {} prefixes per CPU in {}",
                        table.flows,
                        human_bytes(table.bytes),
                        table.flows_per_cpu,
                        table.source_slots_per_cpu,
                        human_bytes(table.source_bytes),
                    );
                }
                None if i.live => out.push_str("  flows: not tracked (attached with --no-flows)\n"),
                None => {}
            }
        }
        out
    }
}

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Bytes with an SI suffix, as `ip -h -s link` shows them.
pub fn human_bytes(bytes: u64) -> String {
    scaled(bytes as f64, "B")
}

pub fn human_bits_per_sec(bps: f64) -> String {
    scaled(bps, "bit/s")
}

fn scaled(value: f64, unit: &str) -> String {
    const PREFIXES: [&str; 5] = ["", "k", "M", "G", "T"];
    let mut value = value;
    let mut prefix = 0;
    while value >= 1000.0 && prefix + 1 < PREFIXES.len() {
        value /= 1000.0;
        prefix += 1;
    }
    if prefix == 0 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {}{unit}", PREFIXES[prefix])
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn sample(at: Instant, packets: u64, bytes: u64) -> Sample {
        let mut stats = Stats::default();
        stats.action[2] = Counter { packets, bytes };
        stats.l3[0] = Counter { packets, bytes };
        stats.l4[1] = Counter { packets, bytes };
        Sample {
            at,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            stats,
        }
    }

    #[test]
    fn first_sample_has_totals_and_no_rates() {
        let record = StatsRecord::new(
            Scope::Interface("veth0".into()),
            &sample(Instant::now(), 10, 640),
            None,
        );
        let json = record.to_json();
        assert_eq!(json["schema"], "netxdp.stats/v2");
        assert_eq!(json["timestamp"], "2027-01-15T08:00:00Z");
        assert_eq!(json["total"]["packets"], 10);
        assert_eq!(json["action"]["pass"]["bytes"], 640);
        assert_eq!(json["l4"]["udp"]["packets"], 10);
        assert!(json["total"]["pps"].is_null());
        assert!(json["interval_secs"].is_null());
    }

    #[test]
    fn rates_are_deltas_over_the_interval() {
        let t0 = Instant::now();
        let first = sample(t0, 10, 1000);
        let second = sample(t0 + Duration::from_secs(2), 30, 3000);
        let json =
            StatsRecord::new(Scope::Interface("veth0".into()), &second, Some(&first)).to_json();
        assert_eq!(json["interval_secs"], 2.0);
        assert_eq!(json["total"]["pps"], 10.0);
        assert_eq!(json["total"]["bps"], 8000.0);
        assert_eq!(json["l3"]["ipv4"]["pps"], 10.0);
        assert_eq!(json["l3"]["ipv6"]["pps"], 0.0);
    }

    #[test]
    fn text_table_shows_the_classes_that_saw_packets() {
        let text = StatsRecord::new(
            Scope::Interface("veth0".into()),
            &sample(Instant::now(), 3, 192),
            None,
        )
        .to_text();
        for label in ["total", "action pass", "l3 ipv4", "l4 udp"] {
            assert!(text.contains(label), "{label} missing from\n{text}");
        }
        for label in ["action drop", "l3 ipv6", "l4 tcp", "malformed"] {
            assert!(
                !text.contains(label),
                "{label} is zero yet shown in\n{text}"
            );
        }
    }

    #[test]
    fn json_starts_with_its_schema() {
        let json = StatsRecord::new(
            Scope::Interface("veth0".into()),
            &sample(Instant::now(), 3, 192),
            None,
        )
        .to_json();
        assert!(
            json.to_string()
                .starts_with(r#"{"schema":"netxdp.stats/v2""#),
            "{json}"
        );
    }

    #[test]
    fn scales_like_ip_dash_h() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_bits_per_sec(2_500_000.0), "2.5 Mbit/s");
    }

    #[test]
    fn a_total_record_sums_its_interfaces_and_names_them() {
        let now = Instant::now();
        let samples = [sample(now, 3, 192), sample(now, 5, 320)];
        let total = Sample::total(&samples).unwrap();
        let scope = Scope::Total(vec!["a".into(), "b".into()]);
        let json = StatsRecord::new(scope.clone(), &total, None).to_json();
        assert_eq!(json["iface"], serde_json::Value::Null);
        assert_eq!(json["total_of"], serde_json::json!(["a", "b"]));
        assert_eq!(json["total"]["packets"], 8);
        assert_eq!(json["total"]["bytes"], 512);
        let text = StatsRecord::new(scope, &total, None).to_text();
        assert!(text.starts_with("total of a, b  "), "{text}");
    }
}
