//! The state of the full-screen view: which pane, how rows are sorted and filtered, whether it
//! is paused, and the history its sparklines draw; the keys that change it.

use std::collections::{HashMap, VecDeque};

use super::{BanRow, FlowRow, Frame, RuleRow, SourceRow};

/// Samples kept for the sparklines.
pub const HISTORY: usize = 120;

/// The panes, in the order Tab visits them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pane {
    Sources,
    Flows,
    Rules,
    /// Bans in force, from `ban add` and from limits.
    Bans,
}

impl Pane {
    pub const ALL: [Pane; 4] = [Pane::Sources, Pane::Flows, Pane::Rules, Pane::Bans];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Sources => "Sources",
            Pane::Flows => "Flows",
            Pane::Rules => "Rules",
            Pane::Bans => "Bans",
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
            Key::Char('4') => self.switch(Pane::Bans),
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

    /// Bans soonest to end first, whatever the sort: a ban's only measure is its end.
    pub fn bans(&self) -> Vec<&BanRow> {
        self.frame.as_ref().map_or_else(Vec::new, |frame| {
            frame
                .bans
                .iter()
                .filter(|row| self.keep(&row.haystack))
                .collect()
        })
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::top::{Rates, fixtures::*};

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
        assert_eq!(app.pane, Pane::Bans);
        app.on_key(Key::Tab);
        assert_eq!(app.pane, Pane::Sources);
        app.on_key(Key::BackTab);
        assert_eq!(app.pane, Pane::Bans);
        app.on_key(Key::Char('3'));
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
