//! How `netxdp top` draws its state, with ratatui on crossterm, and the terminal it owns
//! while it runs.

use std::{
    fmt::Write as _,
    io::{self, Stdout},
    sync::{
        Once,
        atomic::{AtomicBool, Ordering},
        mpsc::Receiver,
    },
    time::Duration,
};

use anyhow::Result;
use ratatui::{
    Frame as Canvas, Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor::{Hide, Show},
        event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
        execute,
        terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
    },
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style, Stylize as _},
    text::{Line, Span},
    widgets::{Block, Cell, Row, Table},
};

use super::{App, ClassRow, Frame, Key, Pane, SortBy, endpoint, sparkline};
use crate::{
    cli::Sampling,
    report::{human_bits_per_sec, human_bytes, rfc3339},
};

/// The terminal in raw mode on the alternate screen, cursor hidden, for as long as this
/// lives: dropping it (on return, on error, or unwinding from a panic) restores the terminal,
/// and a panic hook does so before the panic message is printed.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> Result<Self> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        enable_raw_mode()?;
        if let Err(error) = execute!(io::stdout(), EnterAlternateScreen, Hide) {
            restore();
            return Err(error.into());
        }
        match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(terminal) => Ok(Self { terminal }),
            Err(error) => {
                restore();
                Err(error.into())
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Raw mode off, the main screen back, the cursor shown: what the shell expects.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
}

fn key_of(event: KeyEvent) -> Option<Key> {
    if event.kind != KeyEventKind::Press {
        return None;
    }
    let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
    Some(match event.code {
        KeyCode::Char('c') if ctrl => Key::Interrupt,
        KeyCode::Char(c) if !ctrl => Key::Char(c),
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        _ => return None,
    })
}

/// Draws the last frame received and handles keys until `q`, Ctrl-C, `stop`, or the
/// sample count; the terminal is restored on every way out.
pub(super) fn run_ui(
    frames: &Receiver<Frame>,
    stop: &AtomicBool,
    paused: &AtomicBool,
    sampling: Sampling,
) -> Result<()> {
    let mut screen = Screen::enter()?;
    let mut app = App::default();
    let mut dirty = true;
    while !stop.load(Ordering::Relaxed) && !app.quit {
        while let Ok(frame) = frames.try_recv() {
            app.ingest(frame);
            dirty = true;
        }
        if dirty {
            screen
                .terminal
                .draw(|canvas| draw(canvas, &mut app, sampling))?;
            dirty = false;
        }
        if sampling
            .count
            .is_some_and(|count| app.frames >= count.get())
        {
            break;
        }
        if event::poll(Duration::from_millis(50))? {
            match event::read()? {
                Event::Key(key) => {
                    if let Some(key) = key_of(key) {
                        app.on_key(key);
                        paused.store(app.paused, Ordering::Relaxed);
                        dirty = true;
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    }
    drop(screen);
    Ok(())
}

fn rate_text(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or("-".to_owned(), format)
}

fn pps_text(pps: Option<f64>) -> String {
    rate_text(pps, |v| format!("{v:.1}"))
}

fn bps_text(bps: Option<f64>) -> String {
    rate_text(bps, human_bits_per_sec)
}

fn draw(canvas: &mut Canvas, app: &mut App, sampling: Sampling) {
    let [title, header, tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        // Borders and the column heading, then the rows.
        Constraint::Length(3 + header_rows(app) as u16),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(canvas.area());

    let (ifaces, when) = match &app.frame {
        Some(frame) => (frame.ifaces.join(", "), rfc3339(frame.wall)),
        None => (String::new(), "reading...".to_owned()),
    };
    let mut title_line = vec![
        Span::styled("netxdp top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {ifaces}  {when}  every {:.1} s",
            sampling.interval.as_secs_f64()
        )),
    ];
    if app.paused {
        title_line.push(Span::styled("  PAUSED", Style::new().reversed()));
    }
    canvas.render_widget(Line::from(title_line), title);

    draw_header(canvas, app, header);

    let mut tab_spans = Vec::new();
    for (i, pane) in Pane::ALL.iter().enumerate() {
        let text = format!(" {} {} ", i + 1, pane.title());
        let style = if *pane == app.pane {
            Style::new().reversed().add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        tab_spans.push(Span::styled(text, style));
        tab_spans.push(Span::raw(" "));
    }
    tab_spans.push(Span::raw(format!("  sort: {}", app.sort.as_str())));
    if !app.filter.is_empty() {
        tab_spans.push(Span::raw(format!("  filter: {}", app.filter)));
    }
    canvas.render_widget(Line::from(tab_spans), tabs);

    match app.pane {
        Pane::Flows => draw_flows(canvas, app, body),
        Pane::Sources => draw_sources(canvas, app, body),
        Pane::Rules => draw_rules(canvas, app, body),
        Pane::Bans => draw_bans(canvas, app, body),
    }

    let status_line = if let Some(text) = &app.editing {
        Line::from(vec![
            Span::styled("filter: ", Style::new().bold()),
            Span::raw(format!("{text}_")),
            Span::raw("   Enter applies, Esc clears"),
        ])
    } else if let Some(error) = app.frame.as_ref().and_then(|f| f.errors.first()) {
        Line::from(Span::styled(error.clone(), Style::new().reversed()))
    } else {
        let read = app.frame.as_ref().map_or(String::new(), |frame| {
            let mut read = format!("   read in {} ms", frame.read_time.as_millis());
            if frame.flows_period > sampling.interval.as_secs_f64() {
                let _ = write!(read, ", flows every {:.0} s", frame.flows_period);
            }
            read
        });
        Line::from(format!(
            "q quit  Tab/1-4 pane  s sort  / filter  Esc clear  p pause  ↑↓ scroll{read}"
        ))
    };
    canvas.render_widget(status_line, status);
}

/// Rows of the header's panes: five, more when the verdict pane needs them.
fn header_rows(app: &App) -> usize {
    app.frame
        .as_ref()
        .map_or(0, |frame| verdict_rows(frame).len())
        .max(5)
}

/// Total, pass and drop always; the rarer verdicts, and the drops for a defect or a fragment
/// (indented, under drop), when they happen.
fn verdict_rows(frame: &Frame) -> Vec<&ClassRow> {
    std::iter::once(&frame.total)
        .chain(
            frame
                .actions
                .iter()
                .filter(|a| matches!(a.name.as_str(), "pass" | "drop") || a.packets > 0),
        )
        .chain(frame.drops.iter().filter(|d| d.packets > 0))
        .take(9)
        .collect()
}

fn draw_header(canvas: &mut Canvas, app: &App, area: Rect) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let Some(frame) = &app.frame else {
        canvas.render_widget(Block::bordered().title(" by verdict "), left);
        canvas.render_widget(Block::bordered().title(" by protocol "), right);
        return;
    };
    let table = |rows: Vec<&ClassRow>, title: &'static str| {
        let rows: Vec<Row> = rows
            .into_iter()
            .map(|class| {
                let history = app
                    .history
                    .get(&class.name)
                    .map(|values| sparkline(values, 60))
                    .unwrap_or_default();
                Row::new(vec![
                    Cell::from(class.name.clone()),
                    Cell::from(pps_text(class.rate.pps)),
                    Cell::from(bps_text(class.rate.bps)),
                    Cell::from(history),
                ])
            })
            .collect();
        Table::new(
            rows,
            [
                Constraint::Length(17),
                Constraint::Length(10),
                Constraint::Length(15),
                Constraint::Min(5),
            ],
        )
        .header(Row::new(vec!["", "pps", "bps", "pps history"]).bold())
        .block(Block::bordered().title(title))
    };
    canvas.render_widget(table(verdict_rows(frame), " by verdict "), left);
    let protocols: Vec<&ClassRow> = frame
        .protocols
        .iter()
        .chain(frame.layers.iter().filter(|l| l.name != "other"))
        .filter(|c| c.packets > 0 || c.name != "other")
        .take(6)
        .collect();
    canvas.render_widget(table(protocols, " by protocol "), right);
}

/// The sort column's header, marked.
fn heading(name: &'static str, sort: SortBy, this: Option<SortBy>) -> Cell<'static> {
    if this == Some(sort) {
        Cell::from(format!("{name}▼")).bold().underlined()
    } else {
        Cell::from(name).bold()
    }
}

/// The rows of `total` that fit `area` from the scroll position (clamped), and a title.
/// The first row shown (the scroll position, kept within the rows) and how many fit.
fn visible(scroll: usize, total: usize, area: Rect) -> (usize, usize) {
    let height = area.height.saturating_sub(3) as usize;
    (scroll.min(total.saturating_sub(1)), height)
}

fn pane_block(app: &App, name: &str, shown: usize, of: usize, extra: &str) -> Block<'static> {
    let filtered = if app.filter.is_empty() {
        String::new()
    } else {
        format!(" matching {:?}", app.filter)
    };
    Block::bordered().title(format!(
        " {name}: {shown} of {of}{filtered}, sort: {}{extra} ",
        app.sort.as_str()
    ))
}

fn draw_flows(canvas: &mut Canvas, app: &mut App, area: Rect) {
    let (all, flowless, many) = match &app.frame {
        Some(frame) => (
            frame.flows.len(),
            frame.flowless.clone(),
            frame.ifaces.len() > 1,
        ),
        None => (0, Vec::new(), false),
    };
    // Filtered and sorted once per draw: a full flow table has 65,536 rows.
    let shown = app.flows();
    let total = shown.len();
    let (from, height) = visible(app.scroll, total, area);
    let sort = app.sort;
    let rows: Vec<Row> = shown
        .into_iter()
        .skip(from)
        .take(height)
        .map(|flow| {
            let r = flow.record();
            let mut cells = Vec::new();
            if many {
                cells.push(Cell::from(flow.iface.to_string()));
            }
            cells.extend([
                Cell::from(r.proto.clone()),
                Cell::from(endpoint(r.local, r.local_port)),
                Cell::from(endpoint(r.peer, r.peer_port)),
                Cell::from(r.packets.to_string()),
                Cell::from(human_bytes(r.bytes)),
                Cell::from(bps_text(flow.rate.bps)),
                Cell::from(r.verdict),
                Cell::from(r.rule.map_or("-".to_owned(), |id| id.to_string())),
            ]);
            Row::new(cells)
        })
        .collect();
    app.scroll = from;
    let mut header = Vec::new();
    let mut widths = Vec::new();
    if many {
        header.push(Cell::from("IFACE").bold());
        widths.push(Constraint::Length(12));
    }
    header.extend([
        Cell::from("PROTO").bold(),
        Cell::from("LOCAL").bold(),
        Cell::from("PEER").bold(),
        heading("PACKETS", sort, Some(SortBy::Packets)),
        heading("BYTES", sort, Some(SortBy::Bytes)),
        heading("RATE", sort, Some(SortBy::Rate)),
        Cell::from("VERDICT").bold(),
        Cell::from("RULE").bold(),
    ]);
    widths.extend([
        Constraint::Length(7),
        Constraint::Min(21),
        Constraint::Min(21),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(14),
        Constraint::Length(8),
        Constraint::Length(6),
    ]);
    let extra = if flowless.is_empty() {
        String::new()
    } else {
        format!(" (no flow table on {})", flowless.join(", "))
    };
    let table = Table::new(rows, widths)
        .header(Row::new(header))
        .block(pane_block(app, "flows", total, all, &extra));
    canvas.render_widget(table, area);
}

fn draw_sources(canvas: &mut Canvas, app: &mut App, area: Rect) {
    let all = app.frame.as_ref().map_or(0, |f| f.sources.len());
    // Filtered and sorted once per draw: the tables of many CPUs hold many prefixes.
    let shown = app.sources();
    let total = shown.len();
    let (from, height) = visible(app.scroll, total, area);
    let sort = app.sort;
    let rows: Vec<Row> = shown
        .into_iter()
        .skip(from)
        .take(height)
        .map(|source| {
            let total = source.stats.total();
            Row::new(vec![
                Cell::from(
                    source
                        .prefix
                        .as_deref()
                        .unwrap_or("(no address)")
                        .to_owned(),
                ),
                Cell::from(source.iface.to_string()),
                Cell::from(total.packets.to_string()),
                Cell::from(human_bytes(total.bytes)),
                Cell::from(pps_text(source.rate.pps)),
                Cell::from(pps_text(source.drop_rate.pps)),
                Cell::from(bps_text(source.rate.bps)),
            ])
        })
        .collect();
    app.scroll = from;
    let table = Table::new(
        rows,
        [
            Constraint::Min(24),
            Constraint::Length(12),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(14),
        ],
    )
    .header(Row::new(vec![
        Cell::from("SOURCE").bold(),
        Cell::from("IFACE").bold(),
        heading("PACKETS", sort, Some(SortBy::Packets)),
        heading("BYTES", sort, Some(SortBy::Bytes)),
        Cell::from("PPS").bold(),
        Cell::from("DROP PPS").bold(),
        heading("RATE", sort, Some(SortBy::Rate)),
    ]))
    .block(pane_block(app, "sources", total, all, ""));
    canvas.render_widget(table, area);
}

fn draw_rules(canvas: &mut Canvas, app: &mut App, area: Rect) {
    let all = app.frame.as_ref().map_or(0, |f| f.rules.len());
    // Filtered and sorted once per draw: a full flow table has 65,536 rows.
    let shown = app.rules();
    let total = shown.len();
    let (from, height) = visible(app.scroll, total, area);
    let sort = app.sort;
    let rows: Vec<Row> = shown
        .into_iter()
        .skip(from)
        .take(height)
        .map(|rule| {
            Row::new(vec![
                Cell::from(rule.iface.to_string()),
                Cell::from(rule.id.to_string()),
                Cell::from(rule.priority.to_string()),
                Cell::from(rule.action),
                Cell::from(rule.matches.clone()),
                Cell::from(rule.packets.to_string()),
                Cell::from(human_bytes(rule.bytes)),
                Cell::from(pps_text(rule.rate.pps)),
                Cell::from(bps_text(rule.rate.bps)),
                Cell::from(match rule.action {
                    "limit" => pps_text(rule.over_pps),
                    _ => String::new(),
                }),
            ])
        })
        .collect();
    app.scroll = from;
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Min(30),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(14),
            Constraint::Length(10),
        ],
    )
    .header(Row::new(vec![
        Cell::from("IFACE").bold(),
        Cell::from("ID").bold(),
        Cell::from("PRIO").bold(),
        Cell::from("ACTION").bold(),
        Cell::from("MATCH").bold(),
        heading("PACKETS", sort, Some(SortBy::Packets)),
        heading("BYTES", sort, Some(SortBy::Bytes)),
        Cell::from("HITS/S").bold(),
        heading("RATE", sort, Some(SortBy::Rate)),
        Cell::from("OVER/S").bold(),
    ]))
    .block(pane_block(app, "rules", total, all, ""));
    canvas.render_widget(table, area);
}

/// The bans in force, soonest to end first: from `ban add`, and from limits with `--ban`
/// (their drops show in the header's `ban` row, and each limit's in the rules' OVER/S).
fn draw_bans(canvas: &mut Canvas, app: &mut App, area: Rect) {
    let all = app.frame.as_ref().map_or(0, |f| f.bans.len());
    let shown = app.bans();
    let total = shown.len();
    let (from, height) = visible(app.scroll, total, area);
    let rows: Vec<Row> = shown
        .into_iter()
        .skip(from)
        .take(height)
        .map(|ban| {
            Row::new(vec![
                Cell::from(ban.iface.to_string()),
                Cell::from(ban.prefix.clone()),
                Cell::from(ends_in_text(ban.ends_in)),
            ])
        })
        .collect();
    app.scroll = from;
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Min(44),
            Constraint::Length(12),
        ],
    )
    .header(Row::new(vec![
        Cell::from("IFACE").bold(),
        Cell::from("PREFIX").bold(),
        Cell::from("ENDS IN").bold(),
    ]))
    .block(pane_block(app, "bans", total, all, ""));
    canvas.render_widget(table, area);
}

/// `42s`, `9m 5s`, `3h 2m 5s`: a ban's time left, to the second.
fn ends_in_text(seconds: f64) -> String {
    let left = std::time::Duration::from_secs(seconds.ceil() as u64);
    humantime::format_duration(left).to_string()
}
