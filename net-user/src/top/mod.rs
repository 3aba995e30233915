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

mod rates;
mod sample;
mod view;

pub use rates::{ClassRow, FlowRow, Frame, Rate, Rates, RuleRow, SourceRow, endpoint};
use sample::{Attachments, Sampler};
pub use sample::{IfaceSample, RawSample};

use std::{
    collections::{HashMap, VecDeque},
    fmt::Write as _,
    io::{self, IsTerminal as _},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use net_common::flow::FlowStats;

use crate::{
    cli::Sampling,
    counters::Sample,
    flows::FlowsRecord,
    iface::IfaceName,
    preflight,
    report::{Scope, StatsRecord},
    sources::{SourceStats, SourcesRecord},
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
            |row| {
                let total = row.stats.total();
                (total.packets, total.bytes, row.rate.bps)
            },
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
/// `netxdp top`: the full-screen view on a terminal, plain tables otherwise.
pub async fn run(ifaces: Vec<IfaceName>, sampling: Sampling) -> Result<()> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    let attachments = Attachments::open(&ifaces)?;
    if io::stdout().is_terminal() {
        interactive(attachments, sampling).await
    } else {
        plain(attachments, sampling).await
    }
}

/// Plain tables each interval: the counters as `stats` shows them, then the top flows by
/// bytes and the top sources by packets as `flows` shows them, whenever the flow and source
/// tables were read.
async fn plain(attachments: Attachments, sampling: Sampling) -> Result<()> {
    let mut shutdown = crate::process::Shutdown::new()?;
    let mut ticker = tokio::time::interval(sampling.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let flow_tables: Vec<_> = attachments.ifaces.iter().map(|a| a.flow_table()).collect();
    let mut sampler = Sampler::new(attachments, sampling.interval);
    let mut previous: Vec<Option<Sample>> = vec![None; flow_tables.len()];
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
        for ((flow_table, iface), previous) in
            flow_tables.iter().zip(sample.ifaces).zip(&mut previous)
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
            if let (Some(flow_table), Some(took)) = (flow_table, sample.flows_read) {
                let flows = FlowsRecord::new(
                    &iface.iface,
                    *flow_table,
                    iface.flows,
                    |flow: &FlowStats| flow.bytes as f64,
                    Some(PLAIN_FLOWS),
                );
                text.push_str(&flows.to_text());
                let sources = SourcesRecord::new(
                    &iface.iface,
                    iface.sources,
                    |source: &SourceStats| source.total().packets,
                    Some(PLAIN_FLOWS),
                );
                text.push_str(&sources.to_text());
                if sample.flows_period > sampling.interval.as_secs_f64() {
                    let _ = writeln!(
                        text,
                        "(flows are read every {:.0} s: reading the table took {} ms)",
                        sample.flows_period,
                        took.as_millis()
                    );
                }
            }
            crate::process::emit(text.trim_end())?;
            crate::process::emit("")?;
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
async fn interactive(attachments: Attachments, sampling: Sampling) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let (frames, received) = mpsc::sync_channel::<Frame>(1);
    let mut sampler = Sampler::new(attachments, sampling.interval);
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
    let mut shutdown = crate::process::Shutdown::new()?;
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
    use std::time::SystemTime;

    use net_common::{
        flow::FlowKey,
        parse::L3,
        rule::{Action, Match, Rule, RuleCounter},
        source::SourceKey,
        stats::{Counter, Stats},
    };

    use super::*;
    use crate::flows::Allocation;

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

    /// The source table that `flows` make, all passed: their /24s.
    fn sources_of(flows: &[(FlowKey, FlowStats)]) -> Vec<SourceStats> {
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

    fn sample(at: Instant, flows: Vec<(FlowKey, FlowStats)>, stats: Stats) -> RawSample {
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
                // Few big ones, from another /24.
                (
                    flow_key([10, 0, 2, 2], 2000, 53),
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

        // Sources: the flows of 10.0.0.0/24 summed.
        let sources = app.sources();
        assert_eq!(sources[0].prefix.as_deref(), Some("10.0.0.0/24"));
        assert_eq!(sources[0].stats.total().packets, 200 + 400);
        assert_eq!(sources[1].stats.total().packets, 20);
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
        for c in "10.0.2.0".chars() {
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
