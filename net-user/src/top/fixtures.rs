//! Samples, flows and sources made up for the tests of [`super::rates`] and [`super::app`].

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime},
};

use net_common::{
    flow::{FlowKey, FlowStats},
    parse::L3,
    rule::{Action, Match, Rule, RuleCounter},
    source::SourceKey,
    stats::{Counter, Stats},
};

use super::{IfaceSample, RawSample};
use crate::{flows::Allocation, sources::SourceStats};

pub(super) fn flow_key(src: [u8; 4], sport: u16, dport: u16) -> FlowKey {
    let mut key = FlowKey {
        sport,
        dport,
        ip_proto: 17,
        l3: L3::Ipv4 as u8,
        ..FlowKey::default()
    };
    key.src[..4].copy_from_slice(&src);
    key.dst[..4].copy_from_slice(&[198, 18, 0, 1]);
    key
}

pub(super) fn flow(packets: u64, bytes: u64) -> FlowStats {
    FlowStats {
        packets,
        bytes,
        ..FlowStats::default()
    }
}

/// The source table that `flows` make, all passed: their /24s.
pub(super) fn sources_of(flows: &[(FlowKey, FlowStats)]) -> Vec<SourceStats> {
    let mut by_prefix: HashMap<SourceKey, SourceStats> = HashMap::new();
    for (key, flow) in flows {
        let key = SourceKey {
            prefix: [key.src[0], key.src[1], key.src[2], 0, 0, 0, 0, 0],
            family: 4,
            _pad: 0,
        };
        let source = by_prefix.entry(key).or_insert(SourceStats {
            key,
            dropped: Counter::default(),
            passed: Counter::default(),
            uncounted_at_most: 0,
            last_seen_ns: 0,
        });
        source.passed.packets += flow.packets;
        source.passed.bytes += flow.bytes;
    }
    by_prefix.into_values().collect()
}

pub(super) fn sample(at: Instant, flows: Vec<(FlowKey, FlowStats)>, stats: Stats) -> RawSample {
    RawSample {
        at,
        wall: SystemTime::now(),
        now_ns: 0,
        ifaces: vec![IfaceSample {
            iface: "eth0".to_owned(),
            stats,
            sources: sources_of(&flows),
            flows,
            flow_table: Some(Allocation {
                entries: 1024,
                bytes: 160 * 1024,
            }),
            rules: vec![(
                Rule {
                    id: 7,
                    priority: 1000,
                    action: Action::Drop as u32,
                    counter_slot: 0,
                    matches: Match::ANY,
                    limit: net_common::limit::Limit::NONE,
                },
                RuleCounter {
                    packets: 10,
                    bytes: 1000,
                    ..RuleCounter::default()
                },
            )],
            bans: Vec::new(),
            error: None,
        }],
        read_time: Duration::ZERO,
        flows_read: Some(Duration::ZERO),
        flows_period: 1.0,
    }
}

pub(super) fn stats(udp_packets: u64) -> Stats {
    let mut stats = Stats::default();
    stats.l4[1] = Counter {
        packets: udp_packets,
        bytes: udp_packets * 100,
    };
    stats.action[2] = stats.l4[1];
    stats.l3[0] = stats.l4[1];
    stats
}
