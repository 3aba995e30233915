//! Rates between samples: what the view shows of the counters, flows, sources and rules.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use net_common::{
    flow::{FlowKey, FlowStats},
    parse::{L3, L4},
    rule::Action,
    source::SourceKey,
    stats::{Counter, DROP_REASONS, Stats, XDP_ACTIONS},
};

use super::sample::RawSample;
use crate::{clock::coarse_monotonic_ns, filter::spec, flows::FlowRecord, sources::SourceStats};

/// A packet and bit rate; `None` before a second sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    pub pps: Option<f64>,
    pub bps: Option<f64>,
}

impl Rate {
    /// The rate from `before` to `now` over `seconds` (none without an earlier sample or with
    /// no time between); a counter that went back (a re-attach) counts from zero.
    pub fn between(now: (u64, u64), before: Option<(u64, u64)>, seconds: Option<f64>) -> Rate {
        match (before, seconds.filter(|s| *s > 0.0)) {
            (Some((packets, bytes)), Some(seconds)) => {
                let delta = |now: u64, before: u64| {
                    if now >= before { now - before } else { now }
                };
                Rate {
                    pps: Some(delta(now.0, packets) as f64 / seconds),
                    bps: Some(delta(now.1, bytes) as f64 * 8.0 / seconds),
                }
            }
            _ => Rate::default(),
        }
    }
}

/// One header line: a class of traffic with its totals and rates.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassRow {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
    pub rate: Rate,
}

/// One flow, with its rate over the last interval. Kept as read: the text of a row is made
/// only for the rows shown (and for all only while a text filter is set), since a full table
/// has 65,536 flows and a screen some forty rows.
#[derive(Debug)]
pub struct FlowRow {
    pub iface: Arc<str>,
    pub key: FlowKey,
    pub stats: FlowStats,
    pub rate: Rate,
    /// When the sample was read, for the record's times.
    now_ns: u64,
    wall: SystemTime,
}

impl FlowRow {
    /// The flow as `netxdp flows` shows it.
    pub fn record(&self) -> FlowRecord {
        FlowRecord::new(&self.key, &self.stats, self.now_ns, self.wall)
    }

    /// What the text filter searches, lower case.
    pub(super) fn haystack(&self) -> String {
        flow_haystack(&self.iface, &self.record())
    }
}

/// One source prefix of one interface, with its rates over the last interval.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRow {
    pub iface: Arc<str>,
    /// As `ip route` writes it; `None` for packets without a source address.
    pub prefix: Option<String>,
    pub stats: SourceStats,
    /// Of every packet, and of the dropped ones.
    pub rate: Rate,
    pub drop_rate: Rate,
    pub haystack: String,
}

/// One rule with its hit rate.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleRow {
    pub iface: Arc<str>,
    pub id: u32,
    pub priority: u32,
    pub action: &'static str,
    pub matches: String,
    pub packets: u64,
    pub bytes: u64,
    pub rate: Rate,
    /// A limit rule's drops over its rate a second (`None` for other rules, or before a
    /// second sample).
    pub over_pps: Option<f64>,
    pub haystack: String,
}

/// One ban in force.
#[derive(Clone, Debug, PartialEq)]
pub struct BanRow {
    pub iface: Arc<str>,
    /// As `ip route` writes it.
    pub prefix: String,
    /// Seconds until it ends.
    pub ends_in: f64,
    pub haystack: String,
}

/// What the view shows of one sample: everything with rates.
#[derive(Debug)]
pub struct Frame {
    pub wall: SystemTime,
    pub interval: Option<f64>,
    pub ifaces: Vec<String>,
    pub total: ClassRow,
    /// By verdict (aborted, drop, pass, tx, redirect).
    pub actions: Vec<ClassRow>,
    /// Drops for a reason other than a rule or the policy, by reason (`stats`' `dropped`).
    pub drops: Vec<ClassRow>,
    /// By transport (tcp, udp, icmp, icmpv6, other).
    pub protocols: Vec<ClassRow>,
    /// By network layer (ipv4, ipv6, arp, other).
    pub layers: Vec<ClassRow>,
    /// The flows and sources of the last sample that read the flow tables.
    pub flows: Arc<[FlowRow]>,
    pub sources: Arc<[SourceRow]>,
    /// Seconds from one flow-table read to the next.
    pub flows_period: f64,
    pub rules: Vec<RuleRow>,
    /// Every interface's bans, soonest to end first.
    pub bans: Vec<BanRow>,
    pub errors: Vec<String>,
    pub read_time: Duration,
    /// Interfaces that count no flows (`--no-flows`).
    pub flowless: Vec<String>,
}

/// Turns consecutive samples into frames: remembers the counters of the previous one.
#[derive(Default)]
pub struct Rates {
    previous_at: Option<Instant>,
    stats: Option<Stats>,
    /// When the flows were last read, and their counters then.
    flows_at: Option<Instant>,
    flows: HashMap<(usize, FlowKey), (u64, u64)>,
    /// The rows made then, shown again until the next read.
    flow_rows: Arc<[FlowRow]>,
    /// Each source prefix's total and dropped counters when last read.
    sources: HashMap<(usize, SourceKey), (Counter, Counter)>,
    source_rows: Arc<[SourceRow]>,
    /// Each rule's packets, bytes and limit drops when last read.
    rules: HashMap<(usize, u32), (u64, u64, u64)>,
}

impl Rates {
    pub fn frame(&mut self, sample: RawSample) -> Frame {
        let seconds = self
            .previous_at
            .map(|at| sample.at.duration_since(at).as_secs_f64());
        let first = self.previous_at.is_none();
        let mut stats = Stats::default();
        for iface in &sample.ifaces {
            stats.merge(&iface.stats);
        }
        let before = self.stats.as_ref();
        let class = |name: &str, now: &Counter, prev: Option<&Counter>| ClassRow {
            name: name.to_owned(),
            packets: now.packets,
            bytes: now.bytes,
            rate: Rate::between(
                (now.packets, now.bytes),
                prev.map(|c| (c.packets, c.bytes)),
                seconds,
            ),
        };
        let total = class("total", &stats.total(), before.map(Stats::total).as_ref());
        let actions = XDP_ACTIONS
            .iter()
            .enumerate()
            .map(|(i, name)| class(name, &stats.action[i], before.map(|b| &b.action[i])))
            .collect();
        let drops = DROP_REASONS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let name = format!(" {}", name.replace('_', "-"));
                class(&name, &stats.dropped[i], before.map(|b| &b.dropped[i]))
            })
            .collect();
        let protocols = L4::ALL
            .iter()
            .enumerate()
            .map(|(i, l4)| class(l4.as_str(), &stats.l4[i], before.map(|b| &b.l4[i])))
            .collect();
        let layers = L3::ALL
            .iter()
            .enumerate()
            .map(|(i, l3)| class(l3.as_str(), &stats.l3[i], before.map(|b| &b.l3[i])))
            .collect();

        if sample.flows_read.is_some() {
            self.read_flows(&sample);
        }
        let mut rules_now = HashMap::new();
        let mut rules = Vec::new();
        let mut bans = Vec::new();
        let coarse_now = coarse_monotonic_ns();
        let mut errors = Vec::new();
        let mut flowless = Vec::new();
        for (index, iface) in sample.ifaces.iter().enumerate() {
            let name: Arc<str> = Arc::from(iface.iface.as_str());
            if let Some(error) = &iface.error {
                errors.push(format!("{}: {error}", iface.iface));
            }
            if iface.flow_table.is_none() {
                flowless.push(iface.iface.clone());
            }
            for (rule, counter) in &iface.rules {
                let now = (counter.packets, counter.bytes, counter.limited);
                let before = (!first).then(|| {
                    self.rules
                        .get(&(index, rule.id))
                        .copied()
                        .unwrap_or_default()
                });
                rules_now.insert((index, rule.id), now);
                let matches = spec::match_text(&rule.matches);
                let action = rule.action().as_str();
                let over_pps = (rule.action() == Action::Limit)
                    .then(|| {
                        Rate::between((now.2, 0), before.map(|before| (before.2, 0)), seconds).pps
                    })
                    .flatten();
                rules.push(RuleRow {
                    haystack: format!("{name} {} {action} {matches}", rule.id).to_lowercase(),
                    iface: Arc::clone(&name),
                    id: rule.id,
                    priority: rule.priority,
                    action,
                    matches,
                    packets: counter.packets,
                    bytes: counter.bytes,
                    rate: Rate::between(
                        (now.0, now.1),
                        before.map(|before| (before.0, before.1)),
                        seconds,
                    ),
                    over_pps,
                });
            }
            for ban in &iface.bans {
                let prefix = spec::prefix_text(&ban.prefix);
                bans.push(BanRow {
                    haystack: format!("{name} {prefix}").to_lowercase(),
                    iface: Arc::clone(&name),
                    prefix,
                    ends_in: ban.expires_ns.saturating_sub(coarse_now) as f64 / 1e9,
                });
            }
        }
        self.previous_at = Some(sample.at);
        self.stats = Some(stats);
        self.rules = rules_now;
        Frame {
            wall: sample.wall,
            interval: seconds,
            ifaces: sample.ifaces.iter().map(|i| i.iface.clone()).collect(),
            total,
            actions,
            drops,
            protocols,
            layers,
            flows: Arc::clone(&self.flow_rows),
            sources: Arc::clone(&self.source_rows),
            flows_period: sample.flows_period,
            rules,
            bans,
            errors,
            read_time: sample.read_time,
            flowless,
        }
    }

    /// Rows for the flows of `sample`, with rates since the last sample that read them.
    fn read_flows(&mut self, sample: &RawSample) {
        let since = self
            .flows_at
            .map(|at| sample.at.duration_since(at).as_secs_f64());
        let mut counts = HashMap::with_capacity(self.flows.len());
        let mut rows = Vec::new();
        for (index, iface) in sample.ifaces.iter().enumerate() {
            let name: Arc<str> = Arc::from(iface.iface.as_str());
            for (key, stats) in &iface.flows {
                let now = (stats.packets, stats.bytes);
                // A flow new since the last read counts from zero.
                let before = since
                    .is_some()
                    .then(|| self.flows.get(&(index, *key)).copied().unwrap_or((0, 0)));
                counts.insert((index, *key), now);
                rows.push(FlowRow {
                    iface: Arc::clone(&name),
                    key: *key,
                    stats: *stats,
                    rate: Rate::between(now, before, since),
                    now_ns: sample.now_ns,
                    wall: sample.wall,
                });
            }
        }
        self.flow_rows = rows.into();
        self.flows = counts;
        self.read_sources(sample, since);
        self.flows_at = Some(sample.at);
    }

    /// Rows for the source prefixes of `sample`, with rates over `since` seconds.
    fn read_sources(&mut self, sample: &RawSample, since: Option<f64>) {
        let mut counts = HashMap::with_capacity(self.sources.len());
        let mut rows = Vec::new();
        for (index, iface) in sample.ifaces.iter().enumerate() {
            let name: Arc<str> = Arc::from(iface.iface.as_str());
            for source in &iface.sources {
                let now = (source.total(), source.dropped);
                // A prefix that took a slot since the last read counts from zero.
                let before = since.is_some().then(|| {
                    self.sources
                        .get(&(index, source.key))
                        .copied()
                        .unwrap_or_default()
                });
                counts.insert((index, source.key), now);
                let pair = |counter: &Counter| (counter.packets, counter.bytes);
                let prefix = source.prefix();
                rows.push(SourceRow {
                    haystack: format!("{name} {}", prefix.as_deref().unwrap_or("(no address)"))
                        .to_lowercase(),
                    iface: Arc::clone(&name),
                    prefix,
                    stats: *source,
                    rate: Rate::between(pair(&now.0), before.map(|b| pair(&b.0)), since),
                    drop_rate: Rate::between(pair(&now.1), before.map(|b| pair(&b.1)), since),
                });
            }
        }
        self.source_rows = rows.into();
        self.sources = counts;
    }
}

fn flow_haystack(iface: &str, record: &FlowRecord) -> String {
    format!(
        "{iface} {} {} {} {}",
        record.proto,
        endpoint(record.local, record.local_port),
        endpoint(record.peer, record.peer_port),
        record.verdict
    )
    .to_lowercase()
}

/// An address and port as ss writes them; `*` for none.
pub fn endpoint(addr: Option<IpAddr>, port: Option<u16>) -> String {
    match (addr, port) {
        (Some(IpAddr::V6(addr)), Some(port)) => format!("[{addr}]:{port}"),
        (Some(addr), Some(port)) => format!("{addr}:{port}"),
        (Some(addr), None) => addr.to_string(),
        (None, _) => "*".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::fixtures::*;

    #[test]
    fn flows_not_read_this_time_keep_their_last_rows_and_rates_span_the_reads() {
        let t0 = Instant::now();
        let a = flow_key([10, 0, 0, 1], 1000, 9);
        let mut rates = Rates::default();
        rates.frame(sample(t0, vec![(a, flow(10, 1000))], stats(10)));
        let mut skipped = sample(t0 + Duration::from_secs(1), Vec::new(), stats(20));
        skipped.flows_read = None;
        let kept = rates.frame(skipped);
        assert_eq!(kept.flows.len(), 1, "the last rows stay");
        assert_eq!(kept.flows[0].stats.packets, 10);
        assert_eq!(
            kept.total.rate.pps,
            Some(10.0),
            "counters are read every time"
        );
        let read = rates.frame(sample(
            t0 + Duration::from_secs(3),
            vec![(a, flow(40, 4000))],
            stats(40),
        ));
        assert_eq!(read.flows[0].rate.pps, Some(10.0), "30 packets over 3 s");
        assert_eq!(read.sources[0].stats.passed.packets, 40);
        assert_eq!(read.sources[0].rate.pps, Some(10.0));
        assert_eq!(read.sources[0].drop_rate.pps, Some(0.0));
    }

    #[test]
    fn limit_drops_and_bans_show_with_their_rate_and_time_left() {
        use net_common::rule::{Family, Prefix};

        let t0 = Instant::now();
        let limited = |over: u64| {
            let mut sample = sample(t0, Vec::new(), stats(10));
            let (rule, counter) = &mut sample.ifaces[0].rules[0];
            rule.action = Action::Limit as u32;
            counter.limited = over;
            sample.ifaces[0].bans = vec![crate::bans::Ban {
                prefix: Prefix::new(
                    Family::Ipv4,
                    [203, 0, 113, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    24,
                ),
                expires_ns: coarse_monotonic_ns() + 90_000_000_000,
            }];
            sample
        };
        let mut rates = Rates::default();
        let first = rates.frame(limited(100));
        assert_eq!(
            first.rules[0].over_pps, None,
            "no rate before a second sample"
        );
        let mut later = limited(400);
        later.at = t0 + Duration::from_secs(2);
        let second = rates.frame(later);
        assert_eq!(
            second.rules[0].over_pps,
            Some(150.0),
            "300 over the rate in 2 s"
        );
        assert_eq!(second.bans[0].prefix, "203.0.113.0/24");
        assert!(
            (89.0..=90.0).contains(&second.bans[0].ends_in),
            "{:?}",
            second.bans[0]
        );
    }

    #[test]
    fn rates_come_from_consecutive_samples() {
        assert_eq!(Rate::between((10, 100), None, Some(1.0)), Rate::default());
        assert_eq!(
            Rate::between((10, 100), Some((0, 0)), Some(0.0)),
            Rate::default()
        );
        let rate = Rate::between((30, 3000), Some((10, 1000)), Some(2.0));
        assert_eq!(rate.pps, Some(10.0));
        assert_eq!(rate.bps, Some(8000.0));
        // A counter that went back (re-attached) counts from zero.
        let rate = Rate::between((5, 50), Some((10, 1000)), Some(1.0));
        assert_eq!(rate.pps, Some(5.0));

        let t0 = Instant::now();
        let (a, b) = (
            flow_key([10, 0, 0, 1], 1000, 9),
            flow_key([10, 0, 0, 2], 2000, 9),
        );
        let mut rates = Rates::default();
        let first = rates.frame(sample(t0, vec![(a, flow(10, 1000))], stats(10)));
        assert_eq!(first.interval, None);
        assert_eq!(first.total.rate, Rate::default());
        assert_eq!(first.flows[0].rate, Rate::default());
        let second = rates.frame(sample(
            t0 + Duration::from_secs(2),
            vec![(a, flow(30, 3000)), (b, flow(4, 400))],
            stats(34),
        ));
        assert_eq!(second.interval, Some(2.0));
        let udp = &second.protocols[1];
        assert_eq!((udp.name.as_str(), udp.rate.pps), ("udp", Some(12.0)));
        assert_eq!(second.total.rate.bps, Some(24.0 * 100.0 * 8.0 / 2.0));
        let rate_of = |key: &FlowKey| {
            second
                .flows
                .iter()
                .find(|row| row.record().peer_port == Some(key.sport))
                .map(|row| row.rate)
                .expect("flow")
        };
        assert_eq!(rate_of(&a).pps, Some(10.0));
        // New since the last sample: counted from zero.
        assert_eq!(rate_of(&b).pps, Some(2.0));
        assert_eq!(second.rules[0].rate.pps, Some(0.0));
        assert_eq!(second.rules[0].action, "drop");
    }
}
