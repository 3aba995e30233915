//! `netxdp top`: a full-screen live view of attached interfaces (rates and sparklines by
//! verdict and protocol, top sources, top flows, rules with hit rates), or, on a stdout that
//! is no terminal, plain tables every interval.
//!
//! This module holds what is testable without a terminal: the samples read from the pinned
//! maps ([`RawSample`]), the rates computed between two of them ([`Rates`]), and the state of
//! the view ([`App`]: pane, sort, filter, pause, history for the sparklines). [`view`] draws
//! it with ratatui; [`run`] wires the two to a sampling thread and the keyboard.
//!
//! Cost: the kernel copies a full 65,536-flow table out in about 25 ms (BPF_MAP_LOOKUP_BATCH,
//! some 0.4 µs per flow, nearly all of it system time), and everything else a refresh does
//! costs a few milliseconds. So the flow table is read on every sample only while that stays
//! within [`FLOW_READ_BUDGET`] of a core, and every few samples when it would not ([`Sampler`]);
//! counters and rules are read on every sample. Reading happens on a blocking thread, and the
//! view always draws the last complete snapshot: keys stay responsive however large the table.

mod view;

use std::{
    collections::{HashMap, VecDeque},
    io::{self, IsTerminal as _},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime},
};

use std::fmt::Write as _;

use anyhow::{Result, bail};
use net_common::{
    flow::{FlowKey, FlowStats},
    parse::{L3, L4},
    rule::{Rule, RuleCounter},
    stats::{Counter, DROP_REASONS, Stats, XDP_ACTIONS},
};

use crate::{
    attach::read_info,
    cli::Sampling,
    counters::{CounterMap, Sample},
    filter::{maps::FilterMaps, maps::monotonic_ns, spec},
    flows::{FlowRecord, FlowTable, FlowsRecord},
    iface::IfaceName,
    pins::PinDir,
    preflight,
    report::{Scope, StatsRecord},
};

/// Samples kept for the sparklines.
pub const HISTORY: usize = 120;
/// Flows printed per interface each interval on a non-terminal stdout.
pub const PLAIN_FLOWS: usize = 20;
/// The share of one core that reading flow tables may take.
pub const FLOW_READ_BUDGET: f64 = 0.01;

/// The panes, in the order Tab visits them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Sources,
    Flows,
    Rules,
}

impl Pane {
    pub const ALL: [Pane; 3] = [Pane::Sources, Pane::Flows, Pane::Rules];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Sources => "Sources",
            Pane::Flows => "Flows",
            Pane::Rules => "Rules",
        }
    }

    fn next(self) -> Pane {
        Pane::ALL[(self as usize + 1) % Pane::ALL.len()]
    }

    fn previous(self) -> Pane {
        Pane::ALL[(self as usize + Pane::ALL.len() - 1) % Pane::ALL.len()]
    }
}

/// What rows are ordered by, largest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Packets,
    Bytes,
    /// Bits per second over the last interval.
    Rate,
}

impl SortBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SortBy::Packets => "packets",
            SortBy::Bytes => "bytes",
            SortBy::Rate => "rate",
        }
    }

    fn next(self) -> SortBy {
        match self {
            SortBy::Packets => SortBy::Bytes,
            SortBy::Bytes => SortBy::Rate,
            SortBy::Rate => SortBy::Packets,
        }
    }
}

/// One interface's maps, as read at one moment.
#[derive(Clone, Debug, Default)]
pub struct IfaceSample {
    pub iface: String,
    pub stats: Stats,
    pub flows: Vec<(FlowKey, FlowStats)>,
    /// Flows the table holds at most; 0 when attached with `--no-flows`.
    pub table_size: u32,
    pub rules: Vec<(Rule, RuleCounter)>,
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
    /// How long reading the flow tables took; `None` when they were not read this time.
    pub flows_read: Option<Duration>,
    /// Seconds from one flow-table read to the next.
    pub flows_period: f64,
}

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
    fn haystack(&self) -> String {
        flow_haystack(&self.iface, &self.record())
    }
}

/// One source address: the sum of its flows.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRow {
    pub peer: Option<IpAddr>,
    pub flows: usize,
    pub packets: u64,
    pub bytes: u64,
    pub rate: Rate,
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
    sources: Arc<[SourceRow]>,
    rules: HashMap<(usize, u32), (u64, u64)>,
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
        let mut errors = Vec::new();
        let mut flowless = Vec::new();
        for (index, iface) in sample.ifaces.iter().enumerate() {
            let name: Arc<str> = Arc::from(iface.iface.as_str());
            if let Some(error) = &iface.error {
                errors.push(format!("{}: {error}", iface.iface));
            }
            if iface.table_size == 0 {
                flowless.push(iface.iface.clone());
            }
            for (rule, counter) in &iface.rules {
                let now = (counter.packets, counter.bytes);
                let before =
                    (!first).then(|| self.rules.get(&(index, rule.id)).copied().unwrap_or((0, 0)));
                rules_now.insert((index, rule.id), now);
                let matches = spec::match_text(&rule.matches);
                let action = rule.action().as_str();
                rules.push(RuleRow {
                    haystack: format!("{name} {} {action} {matches}", rule.id).to_lowercase(),
                    iface: Arc::clone(&name),
                    id: rule.id,
                    priority: rule.priority,
                    action,
                    matches,
                    packets: counter.packets,
                    bytes: counter.bytes,
                    rate: Rate::between(now, before, seconds),
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
            sources: Arc::clone(&self.sources),
            flows_period: sample.flows_period,
            rules,
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
        self.sources = sources_of(&rows).into();
        self.flow_rows = rows.into();
        self.flows = counts;
        self.flows_at = Some(sample.at);
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

/// Flows summed by peer (source) address.
pub fn sources_of(flows: &[FlowRow]) -> Vec<SourceRow> {
    let mut by_peer: HashMap<Option<IpAddr>, SourceRow> = HashMap::new();
    for flow in flows {
        let peer = crate::flows::peer(&flow.key);
        let row = by_peer.entry(peer).or_insert_with(|| SourceRow {
            peer,
            flows: 0,
            packets: 0,
            bytes: 0,
            rate: Rate::default(),
            haystack: endpoint(peer, None).to_lowercase(),
        });
        row.flows += 1;
        row.packets += flow.stats.packets;
        row.bytes += flow.stats.bytes;
        let add = |sum: Option<f64>, more: Option<f64>| match (sum, more) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        row.rate.pps = add(row.rate.pps, flow.rate.pps);
        row.rate.bps = add(row.rate.bps, flow.rate.bps);
    }
    by_peer.into_values().collect()
}

/// A key, as the view's state sees it (the terminal's events translated, so that the state
/// is testable without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Tab,
    BackTab,
    Enter,
    Esc,
    Backspace,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    /// Ctrl-C: raw mode turns it into a key, not SIGINT.
    Interrupt,
}

/// The view's state.
pub struct App {
    pub pane: Pane,
    pub sort: SortBy,
    /// The filter in force (rows whose text contains it, case-insensitively).
    pub filter: String,
    /// The filter being typed after `/`, until Enter or Esc.
    pub editing: Option<String>,
    pub paused: bool,
    pub quit: bool,
    /// The first row shown of the current pane.
    pub scroll: usize,
    pub frame: Option<Frame>,
    /// Packets per second of each header class, oldest first, by class name.
    pub history: HashMap<String, VecDeque<u64>>,
    pub frames: u64,
}

impl Default for App {
    fn default() -> Self {
        Self {
            pane: Pane::Flows,
            sort: SortBy::Packets,
            filter: String::new(),
            editing: None,
            paused: false,
            quit: false,
            scroll: 0,
            frame: None,
            history: HashMap::new(),
            frames: 0,
        }
    }
}

impl App {
    pub fn on_key(&mut self, key: Key) {
        if key == Key::Interrupt {
            self.quit = true;
            return;
        }
        if let Some(text) = &mut self.editing {
            match key {
                Key::Enter => {
                    self.filter = text.trim().to_lowercase();
                    self.editing = None;
                    self.scroll = 0;
                }
                Key::Esc => {
                    self.filter.clear();
                    self.editing = None;
                    self.scroll = 0;
                }
                Key::Backspace => {
                    text.pop();
                }
                Key::Char(c) => text.push(c),
                _ => {}
            }
            return;
        }
        match key {
            Key::Char('q') => self.quit = true,
            Key::Tab => self.switch(self.pane.next()),
            Key::BackTab => self.switch(self.pane.previous()),
            Key::Char('1') => self.switch(Pane::Sources),
            Key::Char('2') => self.switch(Pane::Flows),
            Key::Char('3') => self.switch(Pane::Rules),
            Key::Char('s') => {
                self.sort = self.sort.next();
                self.scroll = 0;
            }
            Key::Char('/') => self.editing = Some(self.filter.clone()),
            Key::Esc => {
                self.filter.clear();
                self.scroll = 0;
            }
            Key::Char('p') | Key::Char(' ') => self.paused = !self.paused,
            Key::Up | Key::Char('k') => self.scroll = self.scroll.saturating_sub(1),
            Key::Down | Key::Char('j') => self.scroll = self.scroll.saturating_add(1),
            Key::PageUp => self.scroll = self.scroll.saturating_sub(20),
            Key::PageDown => self.scroll = self.scroll.saturating_add(20),
            Key::Home => self.scroll = 0,
            _ => {}
        }
    }

    fn switch(&mut self, pane: Pane) {
        self.pane = pane;
        self.scroll = 0;
    }

    /// Takes a new frame, unless paused (then it is dropped: the view stays as it was).
    pub fn ingest(&mut self, frame: Frame) {
        if self.paused {
            return;
        }
        self.frames += 1;
        if frame.interval.is_some() {
            let classes = std::iter::once(&frame.total)
                .chain(&frame.actions)
                .chain(&frame.drops)
                .chain(&frame.protocols)
                .chain(&frame.layers);
            for class in classes {
                let history = self.history.entry(class.name.clone()).or_default();
                if history.len() == HISTORY {
                    history.pop_front();
                }
                history.push_back(class.rate.pps.unwrap_or(0.0).round() as u64);
            }
        }
        self.frame = Some(frame);
    }

    fn keep(&self, haystack: &str) -> bool {
        self.filter.is_empty() || haystack.contains(&self.filter)
    }

    /// The flows shown, in order (filtered and sorted).
    pub fn flows(&self) -> Vec<&FlowRow> {
        self.shown(
            |frame| &frame.flows,
            |row| self.keep(&row.haystack()),
            |row| (row.stats.packets, row.stats.bytes, row.rate.bps),
        )
    }

    pub fn sources(&self) -> Vec<&SourceRow> {
        self.shown(
            |frame| &frame.sources,
            |row| self.keep(&row.haystack),
            |row| (row.packets, row.bytes, row.rate.bps),
        )
    }

    pub fn rules(&self) -> Vec<&RuleRow> {
        self.shown(
            |frame| &frame.rules,
            |row| self.keep(&row.haystack),
            |row| (row.packets, row.bytes, row.rate.bps),
        )
    }

    /// The rows of one pane that pass the filter, in the chosen order.
    fn shown<'a, T>(
        &'a self,
        pane: impl Fn(&'a Frame) -> &'a [T],
        passes: impl Fn(&T) -> bool,
        key: impl Fn(&T) -> (u64, u64, Option<f64>),
    ) -> Vec<&'a T> {
        let Some(frame) = &self.frame else {
            return Vec::new();
        };
        let mut rows: Vec<&T> = pane(frame)
            .iter()
            .filter(|row| self.filter.is_empty() || passes(row))
            .collect();
        sort_rows(&mut rows, self.sort, key);
        rows
    }
}

/// Largest first by `sort`, ties by packets then bytes; stable otherwise.
fn sort_rows<T>(rows: &mut [&T], sort: SortBy, key: impl Fn(&T) -> (u64, u64, Option<f64>)) {
    rows.sort_by(|a, b| {
        let (a, b) = (key(a), key(b));
        let primary = match sort {
            SortBy::Packets => b.0.cmp(&a.0),
            SortBy::Bytes => b.1.cmp(&a.1),
            SortBy::Rate => b.2.unwrap_or(0.0).total_cmp(&a.2.unwrap_or(0.0)),
        };
        primary.then(b.0.cmp(&a.0)).then(b.1.cmp(&a.1))
    });
}

/// A text sparkline of the last `width` values, scaled to their maximum.
pub fn sparkline(values: &VecDeque<u64>, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let skip = values.len().saturating_sub(width);
    let shown: Vec<u64> = values.iter().skip(skip).copied().collect();
    let max = shown.iter().copied().max().unwrap_or(0);
    shown
        .iter()
        .map(|&v| {
            if max == 0 || v == 0 {
                ' '
            } else {
                BARS[((v as f64 / max as f64) * 7.0).round() as usize]
            }
        })
        .collect()
}

/// The pinned maps of the interfaces shown.
struct Sources {
    ifaces: Vec<Source>,
}

struct Source {
    pins: PinDir,
    counters: CounterMap,
    flows: Option<FlowTable>,
    table_size: u32,
}

impl Sources {
    fn open(ifaces: &[IfaceName]) -> Result<Self> {
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
        let mut sources = Vec::new();
        for pins in pins {
            if !pins.is_attached() {
                bail!(
                    "netxdp is not attached to {} (`netxdp status` lists its attachments)",
                    pins.iface()
                );
            }
            let table_size = read_info(&pins)?.flow_table_size;
            sources.push(Source {
                counters: CounterMap::from_pin(&pins)?,
                flows: (table_size > 0)
                    .then(|| FlowTable::from_pin(&pins))
                    .transpose()?,
                table_size,
                pins,
            });
        }
        Ok(Self { ifaces: sources })
    }

    /// Reads every map; what fails is said in the sample, not fatal (an interface detached
    /// meanwhile shows as an error line).
    fn read(&self, with_flows: bool) -> RawSample {
        let started = Instant::now();
        let mut flows_read = None;
        let ifaces = self
            .ifaces
            .iter()
            .map(|source| {
                let mut sample = IfaceSample {
                    iface: source.pins.iface().to_string(),
                    table_size: source.table_size,
                    ..Default::default()
                };
                let mut fail = |error: anyhow::Error| {
                    sample.error.get_or_insert(format!("{error:#}"));
                };
                match source.counters.read() {
                    Ok(stats) => sample.stats = stats,
                    Err(error) => fail(error),
                }
                match read_rules(&source.pins) {
                    Ok(rules) => sample.rules = rules,
                    Err(error) => fail(error),
                }
                if let (true, Some(table)) = (with_flows, &source.flows) {
                    let reading = Instant::now();
                    match table.read() {
                        Ok(flows) => sample.flows = flows,
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
struct Sampler {
    sources: Sources,
    interval: Duration,
    /// Samples from one flow-table read to the next.
    flows_every: u32,
    since_flows: u32,
}

impl Sampler {
    fn new(sources: Sources, interval: Duration) -> Self {
        Self {
            sources,
            interval,
            flows_every: 1,
            since_flows: 0,
        }
    }

    fn sample(&mut self) -> RawSample {
        let with_flows = self.since_flows + 1 >= self.flows_every;
        let mut sample = self.sources.read(with_flows);
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

/// `netxdp top`: the full-screen view on a terminal, plain tables otherwise.
pub async fn run(ifaces: Vec<IfaceName>, sampling: Sampling) -> Result<()> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    let sources = Sources::open(&ifaces)?;
    if io::stdout().is_terminal() {
        interactive(sources, sampling).await
    } else {
        plain(sources, sampling).await
    }
}

/// Plain tables each interval: the counters as `stats` shows them, then the top flows by
/// bytes as `flows` shows them, whenever the flow tables were read.
async fn plain(sources: Sources, sampling: Sampling) -> Result<()> {
    let mut shutdown = crate::commands::Shutdown::new()?;
    let mut ticker = tokio::time::interval(sampling.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let table_sizes: Vec<u32> = sources.ifaces.iter().map(|s| s.table_size).collect();
    let mut sampler = Sampler::new(sources, sampling.interval);
    let mut previous: Vec<Option<Sample>> = vec![None; table_sizes.len()];
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.recv() => return Ok(()),
        }
        let sample;
        (sampler, sample) = tokio::task::spawn_blocking(move || {
            let sample = sampler.sample();
            (sampler, sample)
        })
        .await?;
        for ((table_size, iface), previous) in
            table_sizes.iter().zip(sample.ifaces).zip(&mut previous)
        {
            if let Some(error) = iface.error {
                bail!("{}: {error}", iface.iface);
            }
            let current = Sample {
                at: sample.at,
                wall: sample.wall,
                stats: iface.stats,
            };
            let scope = Scope::Interface(iface.iface.clone());
            let mut text = StatsRecord::new(scope, &current, previous.as_ref()).to_text();
            *previous = Some(current);
            if *table_size == 0 {
                // Attached with --no-flows: nothing to show.
            } else if let Some(took) = sample.flows_read {
                let flows = FlowsRecord::new(
                    &iface.iface,
                    *table_size,
                    iface.flows,
                    |flow: &FlowStats| flow.bytes as f64,
                    Some(PLAIN_FLOWS),
                );
                text.push_str(&flows.to_text());
                if sample.flows_period > sampling.interval.as_secs_f64() {
                    let _ = writeln!(
                        text,
                        "(flows are read every {:.0} s: reading the table took {} ms)",
                        sample.flows_period,
                        took.as_millis()
                    );
                }
            }
            crate::commands::emit(text.trim_end())?;
            crate::commands::emit("")?;
        }
        round += 1;
        if sampling.count.is_some_and(|count| round >= count.get()) {
            return Ok(());
        }
    }
}

/// The full-screen view: a sampling thread reads the maps every interval and sends frames;
/// the UI thread draws the last one and handles keys; SIGTERM (or SIGINT from another
/// process) ends both, with the terminal restored.
async fn interactive(sources: Sources, sampling: Sampling) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let (frames, received) = mpsc::sync_channel::<Frame>(1);
    let mut sampler = Sampler::new(sources, sampling.interval);
    let sampling_thread = {
        let (stop, paused) = (Arc::clone(&stop), Arc::clone(&paused));
        tokio::task::spawn_blocking(move || {
            let mut rates = Rates::default();
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep((next - now).min(Duration::from_millis(50)));
                    continue;
                }
                next = now + sampling.interval;
                if paused.load(Ordering::Relaxed) {
                    continue;
                }
                let frame = rates.frame(sampler.sample());
                if frames.send(frame).is_err() {
                    return;
                }
            }
        })
    };
    let ui = {
        let (stop, paused) = (Arc::clone(&stop), Arc::clone(&paused));
        tokio::task::spawn_blocking(move || view::run_ui(&received, &stop, &paused, sampling))
    };
    let mut shutdown = crate::commands::Shutdown::new()?;
    let result = tokio::select! {
        result = ui => result,
        _ = shutdown.recv() => {
            stop.store(true, Ordering::Relaxed);
            Ok(Ok(()))
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = sampling_thread.await;
    result?
}

#[cfg(test)]
mod tests {
    use net_common::rule::{Action, Match};

    use super::*;

    fn flow_key(src: [u8; 4], sport: u16, dport: u16) -> FlowKey {
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

    fn flow(packets: u64, bytes: u64) -> FlowStats {
        FlowStats {
            packets,
            bytes,
            ..FlowStats::default()
        }
    }

    fn sample(at: Instant, flows: Vec<(FlowKey, FlowStats)>, stats: Stats) -> RawSample {
        RawSample {
            at,
            wall: SystemTime::now(),
            now_ns: 0,
            ifaces: vec![IfaceSample {
                iface: "eth0".to_owned(),
                stats,
                flows,
                table_size: 1024,
                rules: vec![(
                    Rule {
                        id: 7,
                        priority: 1000,
                        action: Action::Drop as u32,
                        counter_slot: 0,
                        matches: Match::ANY,
                    },
                    RuleCounter {
                        packets: 10,
                        bytes: 1000,
                        last_hit_ns: 0,
                    },
                )],
                error: None,
            }],
            read_time: Duration::ZERO,
            flows_read: Some(Duration::ZERO),
            flows_period: 1.0,
        }
    }

    fn stats(udp_packets: u64) -> Stats {
        let mut stats = Stats::default();
        stats.l4[1] = Counter {
            packets: udp_packets,
            bytes: udp_packets * 100,
        };
        stats.action[2] = stats.l4[1];
        stats.l3[0] = stats.l4[1];
        stats
    }

    #[test]
    fn flow_tables_are_read_as_often_as_the_budget_allows() {
        let second = Duration::from_secs(1);
        assert_eq!(flows_every(Duration::from_millis(3), second), 1);
        assert_eq!(flows_every(Duration::from_millis(10), second), 1);
        assert_eq!(flows_every(Duration::from_millis(25), second), 3);
        assert_eq!(flows_every(Duration::from_millis(25), second * 5), 1);
        assert_eq!(flows_every(Duration::ZERO, second), 1);
    }

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
        assert_eq!(read.sources[0].packets, 40);
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

    fn app_with_flows() -> App {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        let flows = |scale: u64| {
            vec![
                // Many small packets.
                (
                    flow_key([10, 0, 0, 1], 1000, 9),
                    flow(100 * scale, 6_400 * scale),
                ),
                // Few big ones.
                (
                    flow_key([10, 0, 0, 2], 2000, 53),
                    flow(10 * scale, 15_000 * scale),
                ),
                // Same source as the first; the fastest since the last sample.
                (
                    flow_key([10, 0, 0, 1], 3000, 9),
                    flow(50 * scale.pow(3), 3_200),
                ),
            ]
        };
        let mut app = App::default();
        app.ingest(rates.frame(sample(t0, flows(1), stats(1))));
        app.ingest(rates.frame(sample(t0 + Duration::from_secs(1), flows(2), stats(2))));
        app
    }

    #[test]
    fn rows_sort_by_packets_bytes_and_rate_as_s_cycles() {
        let mut app = app_with_flows();
        let ports = |app: &App| -> Vec<u16> {
            app.flows()
                .iter()
                .map(|row| row.record().peer_port.unwrap())
                .collect()
        };
        assert_eq!(app.pane, Pane::Flows);
        assert_eq!(app.sort, SortBy::Packets);
        assert_eq!(ports(&app), [3000, 1000, 2000]);
        app.on_key(Key::Char('s'));
        assert_eq!(app.sort, SortBy::Bytes);
        assert_eq!(ports(&app), [2000, 1000, 3000]);
        app.on_key(Key::Char('s'));
        assert_eq!(app.sort, SortBy::Rate);
        // bps over the second: 3000 grew by 350 packets but no bytes; 1000 by 6,400 bytes.
        assert_eq!(ports(&app), [2000, 1000, 3000]);
        app.on_key(Key::Char('s'));
        assert_eq!(app.sort, SortBy::Packets);

        // Sources: the flows of 10.0.0.1 summed.
        let sources = app.sources();
        assert_eq!(sources[0].peer, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(sources[0].flows, 2);
        assert_eq!(sources[0].packets, 200 + 400);
        assert_eq!(sources[1].packets, 20);
    }

    #[test]
    fn the_filter_applies_on_enter_and_esc_clears_it() {
        let mut app = app_with_flows();
        app.on_key(Key::Char('/'));
        for c in ":53".chars() {
            app.on_key(Key::Char(c));
        }
        // Typing does not quit, sort or filter yet.
        app.on_key(Key::Char('q'));
        app.on_key(Key::Backspace);
        assert!(!app.quit);
        assert_eq!(app.flows().len(), 3);
        app.on_key(Key::Enter);
        assert_eq!(app.filter, ":53");
        let shown = app.flows();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].record().local_port, Some(53));
        assert_eq!(app.sources().len(), 0, "no source address contains :53");
        app.on_key(Key::Char('/'));
        app.on_key(Key::Esc);
        assert_eq!(app.filter, "");
        assert_eq!(app.flows().len(), 3);
        app.on_key(Key::Char('/'));
        for c in "10.0.0.2".chars() {
            app.on_key(Key::Char(c));
        }
        app.on_key(Key::Enter);
        assert_eq!(app.sources().len(), 1);
        app.on_key(Key::Esc);
        assert_eq!(app.sources().len(), 2);
    }

    #[test]
    fn keys_switch_panes_pause_and_quit() {
        let mut app = App::default();
        app.on_key(Key::Tab);
        assert_eq!(app.pane, Pane::Rules);
        app.on_key(Key::Tab);
        assert_eq!(app.pane, Pane::Sources);
        app.on_key(Key::BackTab);
        assert_eq!(app.pane, Pane::Rules);
        app.on_key(Key::Char('2'));
        assert_eq!(app.pane, Pane::Flows);
        app.on_key(Key::Char('p'));
        assert!(app.paused);
        let mut rates = Rates::default();
        app.ingest(rates.frame(sample(Instant::now(), Vec::new(), stats(1))));
        assert!(app.frame.is_none(), "paused: frames are dropped");
        app.on_key(Key::Char('p'));
        app.ingest(rates.frame(sample(Instant::now(), Vec::new(), stats(1))));
        assert!(app.frame.is_some());
        app.on_key(Key::Char('q'));
        assert!(app.quit);
        let mut app = App::default();
        app.on_key(Key::Char('/'));
        app.on_key(Key::Interrupt);
        assert!(app.quit, "Ctrl-C quits even while typing a filter");
    }

    #[test]
    fn sparklines_scale_to_their_maximum_and_keep_the_last_values() {
        let values: VecDeque<u64> = [0, 1, 2, 4, 8].into_iter().collect();
        assert_eq!(sparkline(&values, 10), " ▂▃▅█");
        assert_eq!(sparkline(&values, 2), "▅█");
        assert_eq!(sparkline(&VecDeque::new(), 5), "");
        let mut app = App::default();
        let mut rates = Rates::default();
        let t0 = Instant::now();
        for i in 0..(HISTORY as u64 + 5) {
            let at = t0 + Duration::from_secs(i);
            app.ingest(rates.frame(sample(at, Vec::new(), stats(i * i))));
        }
        let udp = &app.history["udp"];
        assert_eq!(udp.len(), HISTORY);
        let last = HISTORY as u64 + 4;
        assert_eq!(udp.back(), Some(&(last * last - (last - 1) * (last - 1))));
    }
}
