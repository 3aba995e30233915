//! A [`Snapshot`] in the OpenMetrics text format, through prometheus-client's
//! [`Collector`].

use std::fmt;

use net_common::{
    parse::{L3, L4},
    stats::{Counter, DROP_REASONS, Stats, XDP_ACTIONS},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeCounterValue, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::{Registry, Unit},
};

use super::snapshot::{FilterMetrics, ProgramRuns, Snapshot, TrackingMetrics};
use crate::{capture, last_apply::LastApply};

/// A label set: `iface` first, then the family's own labels.
type Labels = Vec<(&'static str, String)>;

fn labels(iface: &str, more: &[(&'static str, &str)]) -> Labels {
    std::iter::once(("iface", iface.to_owned()))
        .chain(more.iter().map(|(key, value)| (*key, (*value).to_owned())))
        .collect()
}

/// Writes one counter family; nothing when it has no samples.
fn counters<V: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: Vec<(Labels, V)>,
) -> fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one gauge family; nothing when it has no samples.
fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: Vec<(Labels, i64)>,
) -> fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Packets or bytes of a counter.
fn pick(counter: &Counter, bytes: bool) -> u64 {
    if bytes {
        counter.bytes
    } else {
        counter.packets
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let ifaces = &self.interfaces;
        let l3: Vec<&'static str> = L3::ALL.iter().map(|class| class.as_str()).collect();
        let l4: Vec<&'static str> = L4::ALL.iter().map(|class| class.as_str()).collect();
        type Group = fn(&Stats) -> &[Counter];
        let groups: [(&str, &str, &[&str], Group, &str); 4] = [
            (
                "netxdp",
                "action",
                &XDP_ACTIONS,
                |s| &s.action,
                "by XDP verdict",
            ),
            ("netxdp_l3", "l3", &l3, |s| &s.l3, "by network layer"),
            ("netxdp_l4", "l4", &l4, |s| &s.l4, "by transport"),
            (
                "netxdp_dropped",
                "reason",
                &DROP_REASONS,
                |s| &s.dropped,
                "dropped for a reason other than a rule or the policy, by reason",
            ),
        ];
        for (stem, label, names, group, by) in groups {
            for bytes in [false, true] {
                let samples = ifaces
                    .iter()
                    .flat_map(|i| {
                        names.iter().zip(group(&i.stats)).map(move |(name, c)| {
                            (labels(&i.iface, &[(label, name)]), pick(c, bytes))
                        })
                    })
                    .collect();
                if bytes {
                    let help = format!("Bytes of received frames (without FCS), {by}.");
                    counters(&mut encoder, stem, &help, Some(&Unit::Bytes), samples)?;
                } else {
                    let help = format!("Received frames, {by}.");
                    counters(
                        &mut encoder,
                        &format!("{stem}_packets"),
                        &help,
                        None,
                        samples,
                    )?;
                }
            }
        }

        type Single = fn(&Stats) -> &Counter;
        let singles: [(&str, Single, &str, Option<&str>); 5] = [
            (
                "netxdp_malformed",
                |s| &s.malformed,
                "Defective frames: malformed headers, tiny or overlapping fragments, IPv6 \
                 chains with two fragment headers (also counted by class).",
                Some("Bytes of defective frames."),
            ),
            (
                "netxdp_no_l4",
                |s| &s.no_l4,
                "IP packets without their L4 header: later fragments, truncated or malformed.",
                Some("Bytes of IP packets without their L4 header."),
            ),
            (
                "netxdp_matched",
                |s| &s.matched,
                "Packets a filter rule decided (the rest got the policy).",
                Some("Bytes of the packets a filter rule decided."),
            ),
            (
                "netxdp_searched",
                |s| &s.searched,
                "Packets the fast path handed to the full rule search.",
                None,
            ),
            (
                "netxdp_search_failed",
                |s| &s.search_failed,
                "Packets the full rule search could not reach (its program was removed): \
                 they got the default.",
                None,
            ),
        ];
        for (stem, single, packets_help, bytes_help) in singles {
            let samples = |bytes| {
                ifaces
                    .iter()
                    .map(|i| (labels(&i.iface, &[]), pick(single(&i.stats), bytes)))
                    .collect()
            };
            let name = format!("{stem}_packets");
            counters(&mut encoder, &name, packets_help, None, samples(false))?;
            if let Some(help) = bytes_help {
                counters(&mut encoder, stem, help, Some(&Unit::Bytes), samples(true))?;
            }
        }

        let filters: Vec<(&str, &FilterMetrics)> = ifaces
            .iter()
            .filter_map(|i| Some((i.iface.as_str(), i.filter.as_ref()?)))
            .collect();
        for bytes in [false, true] {
            let samples = filters
                .iter()
                .flat_map(|(iface, filter)| {
                    filter.rules.iter().map(move |rule| {
                        let id = rule.id.to_string();
                        let labels = labels(iface, &[("rule", &id), ("action", rule.action)]);
                        let counter = Counter {
                            packets: rule.counter.packets,
                            bytes: rule.counter.bytes,
                        };
                        (labels, pick(&counter, bytes))
                    })
                })
                .collect();
            if bytes {
                let help = "Bytes of the packets each rule decided, by rule id.";
                counters(
                    &mut encoder,
                    "netxdp_rule",
                    help,
                    Some(&Unit::Bytes),
                    samples,
                )?;
            } else {
                let help = "Packets each rule decided, by rule id.";
                counters(&mut encoder, "netxdp_rule_packets", help, None, samples)?;
            }
        }
        // What each limit rule did beyond passing: the packets it dropped over its rate (also
        // in netxdp_rule_packets_total), and the bans it issued.
        let limit_rules = || {
            filters.iter().flat_map(|(iface, filter)| {
                filter
                    .rules
                    .iter()
                    .filter(|rule| rule.action == "limit")
                    .map(move |rule| (labels(iface, &[("rule", &rule.id.to_string())]), rule))
            })
        };
        let samples = limit_rules()
            .map(|(labels, rule)| (labels, rule.counter.limited))
            .collect();
        let help = "Packets each limit rule dropped for going over its rate, by rule id.";
        counters(
            &mut encoder,
            "netxdp_rule_limited_packets",
            help,
            None,
            samples,
        )?;
        let samples = limit_rules()
            .map(|(labels, rule)| (labels, rule.counter.bans))
            .collect();
        let help = "Bans each limit rule issued (`--ban`), by rule id.";
        counters(&mut encoder, "netxdp_rule_bans", help, None, samples)?;
        let samples = filters
            .iter()
            .map(|(iface, filter)| (labels(iface, &[]), filter.count as i64))
            .collect();
        gauges(&mut encoder, "netxdp_rules", "Rules in force.", samples)?;
        let samples = filters
            .iter()
            .map(|(iface, filter)| (labels(iface, &[]), i64::from(filter.truncated())))
            .collect();
        let help = "1 when some rules in force have no netxdp_rule series (`serve \
                    --rule-metrics`: by default every rule up to 1,000, beyond that the 100 with \
                    the most hits).";
        gauges(&mut encoder, "netxdp_rule_metrics_truncated", help, samples)?;
        let samples = filters
            .iter()
            .map(|(iface, filter)| {
                let count = filter.count.to_string();
                let labels = labels(iface, &[("hash", &filter.hash), ("rules", &count)]);
                (labels, 1)
            })
            .collect();
        let help = "The rule set in force (the value is 1): hosts with the same rules and \
                    settings have the same hash, the first 16 hex digits of the SHA-256 of \
                    `netxdp rule list IFACE --toml` without its `# id N` comments.";
        gauges(&mut encoder, "netxdp_ruleset_info", help, samples)?;
        let samples = filters
            .iter()
            .map(|(iface, filter)| (labels(iface, &[("policy", filter.policy)]), 1))
            .collect();
        let help = "What packets no rule matches get (the label; the value is 1).";
        gauges(&mut encoder, "netxdp_policy", help, samples)?;

        let samples = ifaces
            .iter()
            .filter_map(|i| Some((labels(&i.iface, &[]), i.bans? as i64)))
            .collect();
        let help = "Bans in force (`netxdp bans IFACE` lists them); their packets count in \
                    netxdp_dropped_packets_total{reason=\"ban\"}.";
        gauges(&mut encoder, "netxdp_bans", help, samples)?;

        let applies: Vec<(&str, &LastApply)> = ifaces
            .iter()
            .filter_map(|i| Some((i.iface.as_str(), i.last_apply.as_ref()?)))
            .collect();
        let samples = applies
            .iter()
            .map(|(iface, last)| (labels(iface, &[]), i64::from(last.ok)))
            .collect();
        let help = "1 when the last `netxdp apply` (or `apply --watch` reload) put its file in \
                    force, 0 when it was refused and the rules before it stayed.";
        gauges(&mut encoder, "netxdp_apply_success", help, samples)?;
        let samples = applies
            .iter()
            .map(|(iface, last)| (labels(iface, &[]), last.at_unix as i64))
            .collect();
        let help = "When the last `netxdp apply` ran, in seconds since the Unix epoch.";
        gauges(
            &mut encoder,
            "netxdp_apply_timestamp_seconds",
            help,
            samples,
        )?;

        let tables: Vec<(&str, &TrackingMetrics)> = ifaces
            .iter()
            .filter_map(|i| Some((i.iface.as_str(), i.tracking.as_ref()?)))
            .collect();
        let samples = tables
            .iter()
            .map(|(iface, tracking)| (labels(iface, &[]), tracking.flows as i64))
            .collect();
        let help = "Flows in the flow table, which counts what netxdp does not drop (the least \
                    recently seen are evicted when full).";
        gauges(&mut encoder, "netxdp_flows", help, samples)?;
        let samples = tables
            .iter()
            .map(|(iface, tracking)| (labels(iface, &[]), i64::from(tracking.flow_table.entries)))
            .collect();
        let help = "Flows the flow table holds at most.";
        gauges(&mut encoder, "netxdp_flow_table_size", help, samples)?;
        let samples = tables
            .iter()
            .map(|(iface, tracking)| (labels(iface, &[]), tracking.flow_table.bytes as i64))
            .collect();
        let help = "Kernel memory charged for the flow table.";
        gauges(&mut encoder, "netxdp_flow_table_bytes", help, samples)?;
        for (name, help, bytes) in [
            (
                "netxdp_source_packets",
                "Packets from one of the source prefixes (IPv4 /24, IPv6 /64) that sent most, by \
                 verdict; counted since the prefix took its slots, so a prefix that loses them \
                 starts again.",
                false,
            ),
            (
                // The unit names the family netxdp_source_bytes.
                "netxdp_source",
                "Bytes from one of the source prefixes that sent most, by verdict.",
                true,
            ),
        ] {
            let samples = tables
                .iter()
                .flat_map(|(iface, tracking)| {
                    tracking.top_sources.iter().flat_map(move |source| {
                        let prefix = source.prefix().unwrap_or_else(|| "none".to_owned());
                        [("drop", &source.dropped), ("pass", &source.passed)].map(
                            |(verdict, counter)| {
                                let labels =
                                    labels(iface, &[("prefix", &prefix), ("verdict", verdict)]);
                                (labels, pick(counter, bytes))
                            },
                        )
                    })
                })
                .collect();
            let unit = bytes.then_some(&Unit::Bytes);
            counters(&mut encoder, name, help, unit, samples)?;
        }

        let captures: Vec<(&str, capture::Counters)> = ifaces
            .iter()
            .filter_map(|i| Some((i.iface.as_str(), i.capture?)))
            .collect();
        type CaptureCount = fn(&capture::Counters) -> u64;
        let capture_families: [(&str, CaptureCount, &str); 3] = [
            (
                "netxdp_capture_selected_packets",
                |c| c.selected,
                "Packets a running `netxdp capture` selected (by action and rule, before \
                 sampling).",
            ),
            (
                "netxdp_capture_packets",
                |c| c.captured,
                "Packets copied to the capture ring buffer.",
            ),
            (
                "netxdp_capture_lost_packets",
                |c| c.lost,
                "Packets a capture chose that found its ring buffer full (the reader was too \
                 slow): copies dropped by the kernel, not the packets.",
            ),
        ];
        for (name, count, help) in capture_families {
            let samples = captures
                .iter()
                .map(|(iface, counters)| (labels(iface, &[]), count(counters)))
                .collect();
            counters(&mut encoder, name, help, None, samples)?;
        }

        let programs: Vec<(&str, ProgramRuns)> = ifaces
            .iter()
            .filter_map(|i| Some((i.iface.as_str(), i.program?)))
            .collect();
        let samples = programs
            .iter()
            .map(|(iface, runs)| (labels(iface, &[]), runs.run_time.as_secs_f64()))
            .collect();
        let help = "Time the XDP program ran, while kernel.bpf_stats_enabled is 1.";
        counters(
            &mut encoder,
            "netxdp_program_run",
            help,
            Some(&Unit::Seconds),
            samples,
        )?;
        let samples = programs
            .iter()
            .map(|(iface, runs)| (labels(iface, &[]), runs.run_count))
            .collect();
        let help = "Runs of the XDP program, while kernel.bpf_stats_enabled is 1.";
        counters(&mut encoder, "netxdp_program_runs", help, None, samples)?;

        if self.snapshots > 0 {
            let mut family = encoder.encode_descriptor(
                "netxdp_exporter_snapshots",
                "Snapshots of the pinned maps this exporter read, this one included: scrapes \
                 within a second of one another, or at once, share one.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(self.snapshots).encode(family.encode_family(&Labels::new())?)?;
        }
        if let Some(enabled) = self.bpf_stats_enabled {
            let mut family = encoder.encode_descriptor(
                "netxdp_bpf_stats_enabled",
                "Whether the kernel counts program run time (sysctl kernel.bpf_stats_enabled).",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::from(enabled)).encode(family.encode_family(&Labels::new())?)?;
        }
        Ok(())
    }
}

/// A registry holding `collector`.
pub fn registry(collector: impl Collector) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    registry
}

/// The OpenMetrics text of a registry, `# EOF` included.
pub fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use net_common::rule::RuleCounter;

    use super::*;
    use crate::{
        flows::Allocation,
        serve::snapshot::{IfaceMetrics, RuleSample},
        sources::SourceStats,
    };

    fn snapshot() -> Snapshot {
        let mut stats = Stats::default();
        stats.action[1] = Counter {
            packets: 30,
            bytes: 3000,
        };
        stats.action[2] = Counter {
            packets: 12,
            bytes: 1200,
        };
        stats.l3[0] = Counter {
            packets: 42,
            bytes: 4200,
        };
        stats.matched = Counter {
            packets: 30,
            bytes: 3000,
        };
        Snapshot {
            interfaces: vec![IfaceMetrics {
                iface: "eth\"0".to_owned(),
                stats,
                filter: Some(FilterMetrics {
                    policy: "pass",
                    count: 3,
                    hash: "0123456789abcdef".to_owned(),
                    rules: vec![
                        RuleSample {
                            id: 7,
                            action: "drop",
                            counter: RuleCounter {
                                packets: 30,
                                bytes: 3000,
                                ..RuleCounter::default()
                            },
                        },
                        RuleSample {
                            id: 9,
                            action: "limit",
                            counter: RuleCounter {
                                packets: 50,
                                bytes: 5000,
                                limited: 20,
                                bans: 1,
                                ..RuleCounter::default()
                            },
                        },
                    ],
                }),
                program: Some(ProgramRuns {
                    run_time: Duration::from_micros(1500),
                    run_count: 42,
                }),
                tracking: Some(TrackingMetrics {
                    flows: 3,
                    flow_table: Allocation {
                        entries: 104_857,
                        bytes: 17_000_000,
                    },
                    top_sources: vec![SourceStats {
                        key: net_common::source::SourceKey {
                            prefix: [203, 0, 113, 0, 0, 0, 0, 0],
                            family: 4,
                            _pad: 0,
                        },
                        dropped: Counter {
                            packets: 5,
                            bytes: 500,
                        },
                        passed: Counter::default(),
                        uncounted_at_most: 0,
                        last_seen_ns: 0,
                    }],
                }),
                capture: Some(capture::Counters {
                    selected: 9,
                    captured: 5,
                    lost: 4,
                }),
                last_apply: Some(LastApply {
                    file: "/etc/netxdp/eth0.toml".to_owned(),
                    ok: false,
                    at_unix: 1_800_000_000,
                    outcome: "in /etc/netxdp/eth0.toml: line 3".to_owned(),
                }),
                bans: Some(2),
            }],
            bpf_stats_enabled: Some(true),
            snapshots: 3,
        }
    }

    #[test]
    fn encodes_every_family_with_conventional_names() {
        let text = render(&registry(snapshot())).unwrap();
        for line in [
            "# TYPE netxdp_packets counter",
            r#"netxdp_packets_total{iface="eth\"0",action="drop"} 30"#,
            r#"netxdp_packets_total{iface="eth\"0",action="redirect"} 0"#,
            "# UNIT netxdp_bytes bytes",
            r#"netxdp_bytes_total{iface="eth\"0",action="pass"} 1200"#,
            r#"netxdp_l3_packets_total{iface="eth\"0",l3="ipv4"} 42"#,
            r#"netxdp_l4_bytes_total{iface="eth\"0",l4="other"} 0"#,
            r#"netxdp_matched_packets_total{iface="eth\"0"} 30"#,
            r#"netxdp_flows{iface="eth\"0"} 3"#,
            r#"netxdp_flow_table_size{iface="eth\"0"} 104857"#,
            r#"netxdp_flow_table_bytes{iface="eth\"0"} 17000000"#,
            r#"netxdp_source_packets_total{iface="eth\"0",prefix="203.0.113.0/24",verdict="drop"} 5"#,
            r#"netxdp_source_bytes_total{iface="eth\"0",prefix="203.0.113.0/24",verdict="pass"} 0"#,
            r#"netxdp_capture_selected_packets_total{iface="eth\"0"} 9"#,
            r#"netxdp_capture_packets_total{iface="eth\"0"} 5"#,
            r#"netxdp_capture_lost_packets_total{iface="eth\"0"} 4"#,
            r#"netxdp_matched_bytes_total{iface="eth\"0"} 3000"#,
            r#"netxdp_searched_packets_total{iface="eth\"0"} 0"#,
            r#"netxdp_rule_packets_total{iface="eth\"0",rule="7",action="drop"} 30"#,
            r#"netxdp_rule_bytes_total{iface="eth\"0",rule="7",action="drop"} 3000"#,
            r#"netxdp_rule_limited_packets_total{iface="eth\"0",rule="9"} 20"#,
            r#"netxdp_rule_bans_total{iface="eth\"0",rule="9"} 1"#,
            "# TYPE netxdp_rules gauge",
            r#"netxdp_rules{iface="eth\"0"} 3"#,
            r#"netxdp_rule_metrics_truncated{iface="eth\"0"} 1"#,
            r#"netxdp_ruleset_info{iface="eth\"0",hash="0123456789abcdef",rules="3"} 1"#,
            "netxdp_exporter_snapshots_total 3",
            r#"netxdp_apply_success{iface="eth\"0"} 0"#,
            r#"netxdp_bans{iface="eth\"0"} 2"#,
            r#"netxdp_apply_timestamp_seconds{iface="eth\"0"} 1800000000"#,
            r#"netxdp_policy{iface="eth\"0",policy="pass"} 1"#,
            r#"netxdp_program_run_seconds_total{iface="eth\"0"} 0.0015"#,
            r#"netxdp_program_runs_total{iface="eth\"0"} 42"#,
            "netxdp_bpf_stats_enabled 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("netxdp_searched_bytes"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn no_interfaces_is_an_empty_exposition() {
        let text = render(&registry(Snapshot::default())).unwrap();
        assert_eq!(text, "# EOF\n");
    }
}
