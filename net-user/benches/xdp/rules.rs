//! The filter's rule sets: netxdp's per-packet cost on the benchmark shapes at every size,
//! beside the floor and xdp-filter, how it grows with the set, the goals, and the
//! time `apply` takes.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use net_common::{
    frame::SliceFrame,
    parse::parse,
    rule::{Action, XDP_DROP, XDP_PASS, classify},
    rulegen::{self, BenchFrame, FrameKind, Shape},
};
use netxdp::filter::{FilterMaps, RuleSet};

use crate::{
    APPLY_ROUNDS, APPLY_SIZE, Prog, ROUNDS, SEED, SIZES, check_interrupted, measure, median,
    new_rules, peer::XdpFilter, thousands,
};

pub(crate) struct RuleRow {
    shape: Shape,
    size: usize,
    frame: &'static str,
    kind: FrameKind,
    bytes: usize,
    verdict: u32,
    floor: Duration,
    netxdp: Duration,
    pub(crate) peer: Option<Duration>,
}

/// One frame on the rule set in force: the floor, netxdp and (on the exact shape) xdp-filter,
/// alternating, ROUNDS times.
pub(crate) fn measure_rule_row(
    (shape, size): (Shape, usize),
    frame: &BenchFrame,
    set: &RuleSet,
    (floor, netxdp, peer): (&Prog, &Prog, Option<&Prog>),
    repeat: u32,
) -> Result<RuleRow> {
    let packet = parse(&SliceFrame::new(&frame.frame));
    let verdict = classify(
        set.rules(),
        set.policy,
        set.fragments,
        set.malformed,
        &packet,
    )
    .action as u32;
    // xdp-filter drops what a rule names and passes the rest, as the exact shape does.
    let peer_verdict = match frame.kind {
        FrameKind::Hit => XDP_DROP,
        FrameKind::Miss => XDP_PASS,
    };
    let (mut floor_ns, mut netxdp_ns, mut peer_ns) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        floor_ns.push(measure(floor, &frame.frame, repeat, XDP_PASS)?);
        netxdp_ns.push(
            measure(netxdp, &frame.frame, repeat, verdict).with_context(|| {
                format!(
                    "{} rules, {} shape, {} frame (the kernel disagrees with the reference \
                     classifier)",
                    size,
                    shape.as_str(),
                    frame.name()
                )
            })?,
        );
        if let Some(peer) = peer {
            peer_ns.push(
                measure(peer, &frame.frame, repeat, peer_verdict)
                    .with_context(|| format!("xdp-filter, {size} rules, {}", frame.name()))?,
            );
        }
    }
    Ok(RuleRow {
        shape,
        size,
        frame: frame.name(),
        kind: frame.kind,
        bytes: frame.frame.len(),
        verdict,
        floor: median(floor_ns),
        netxdp: median(netxdp_ns),
        peer: (!peer_ns.is_empty()).then(|| median(peer_ns)),
    })
}

pub(crate) fn action_name(verdict: u32) -> &'static str {
    match Action::from_raw(verdict) {
        Some(action) => action.as_str(),
        None => "?",
    }
}

pub(crate) fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_nanos() as f64 / b.as_nanos().max(1) as f64
}

pub(crate) fn print_rule_rows(rows: &[RuleRow]) {
    println!(
        "{:<9} {:>6} {:<7} {:>5} {:<7} {:>8} {:>9} {:>6} {:>13} {:>17}",
        "shape",
        "rules",
        "frame",
        "bytes",
        "verdict",
        "floor ns",
        "netxdp ns",
        "ratio",
        "xdp-filter ns",
        "netxdp/xdp-filter"
    );
    let mut previous = None;
    for row in rows {
        if previous.is_some_and(|shape| shape != row.shape) {
            println!();
        }
        previous = Some(row.shape);
        let (peer, versus) = match row.peer {
            Some(peer) => (
                peer.as_nanos().to_string(),
                format!("{:.2}x", ratio(row.netxdp, peer)),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "{:<9} {:>6} {:<7} {:>5} {:<7} {:>8} {:>9} {:>5.2}x {:>13} {:>17}",
            row.shape.as_str(),
            thousands(row.size),
            row.frame,
            row.bytes,
            action_name(row.verdict),
            row.floor.as_nanos(),
            row.netxdp.as_nanos(),
            ratio(row.netxdp, row.floor),
            peer,
            versus
        );
    }
}

const FRAMES: [&str; 4] = ["hit v4", "hit v6", "miss v4", "miss v6"];

/// Cost at the largest size over cost at the smallest, per shape and frame.
pub(crate) fn print_growth(rows: &[RuleRow]) {
    let (first, last) = (SIZES[0], SIZES[SIZES.len() - 1]);
    println!(
        "growth: ns at {} rules / ns at {first} rule, per frame (\"-\": no such frame at {first} \
         rule, whose set has no IPv6 rule)",
        thousands(last)
    );
    println!(
        "{:<20} {:>8} {:>8} {:>8} {:>8}",
        "", FRAMES[0], FRAMES[1], FRAMES[2], FRAMES[3]
    );
    for shape in Shape::ALL {
        let cost = |size: usize, frame: &str, peer: bool| {
            rows.iter()
                .find(|row| row.shape == shape && row.size == size && row.frame == frame)
                .and_then(|row| if peer { row.peer } else { Some(row.netxdp) })
        };
        for (label, peer) in [("netxdp", false), ("xdp-filter", true)] {
            if peer && (shape != Shape::Exact || rows.iter().all(|row| row.peer.is_none())) {
                continue;
            }
            let cells: Vec<String> = FRAMES
                .iter()
                .map(
                    |&frame| match (cost(last, frame, peer), cost(first, frame, peer)) {
                        (Some(large), Some(small)) => format!("{:.2}x", ratio(large, small)),
                        _ => "-".to_owned(),
                    },
                )
                .collect();
            println!(
                "{:<20} {:>8} {:>8} {:>8} {:>8}",
                format!("{} {label}", shape.as_str()),
                cells[0],
                cells[1],
                cells[2],
                cells[3]
            );
        }
    }
}

/// The goals, checked against the rows.
pub(crate) fn print_goals(rows: &[RuleRow]) {
    let exact: Vec<&RuleRow> = rows
        .iter()
        .filter(|row| row.shape == Shape::Exact && row.peer.is_some())
        .collect();
    match exact
        .iter()
        .filter_map(|row| Some((ratio(row.netxdp, row.peer?), *row)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
    {
        Some((worst, row)) => {
            let at_or_below = exact
                .iter()
                .filter(|row| row.peer.is_some_and(|peer| row.netxdp <= peer))
                .count();
            println!(
                "goal: exact shape at or below xdp-filter at every size: {} ({at_or_below} of {} \
                 size/frame pairs; worst netxdp/xdp-filter {worst:.2}x at {} rules, {})",
                if at_or_below == exact.len() {
                    "met"
                } else {
                    "NOT met"
                },
                exact.len(),
                thousands(row.size),
                row.frame
            );
        }
        None => println!("goal: exact shape at or below xdp-filter: not measured (no peer)"),
    }
    let (first, last) = (SIZES[0], SIZES[SIZES.len() - 1]);
    for shape in Shape::ALL {
        let growth: Vec<(f64, &str)> = FRAMES
            .iter()
            .filter_map(|&frame| {
                let at = |size| {
                    rows.iter()
                        .find(|row| row.shape == shape && row.size == size && row.frame == frame)
                };
                Some((ratio(at(last)?.netxdp, at(first)?.netxdp), frame))
            })
            .collect();
        let Some(&(worst, frame)) = growth.iter().max_by(|a, b| a.0.total_cmp(&b.0)) else {
            continue;
        };
        let verdict = match shape {
            Shape::Mixed => "reported, no goal",
            _ if worst <= 1.5 => "met",
            _ => "NOT met",
        };
        println!(
            "goal: {} at {} rules within 1.5x of {first} rule: {verdict} (worst {worst:.2}x, {frame})",
            shape.as_str(),
            thousands(last)
        );
    }
    let hits = rows.iter().filter(|row| row.kind.is_hit()).count();
    println!(
        "checked: every run's verdict equalled the reference classifier's ({hits} hit and {} miss \
         rows)",
        rows.len() - hits
    );
}

pub(crate) struct Applied {
    shape: Shape,
    replace: Duration,
    commit: Duration,
}

/// The time to put a 10,000-rule set in force on an empty filter, per shape: `replace` (the
/// userspace rule set) and `commit` (compile, write the inactive generation, flip).
pub(crate) fn measure_apply(maps: &mut FilterMaps) -> Result<Vec<Applied>> {
    let mut applied = Vec::new();
    for shape in Shape::ALL {
        let wanted = new_rules(&rulegen::generate(shape, SEED ^ 1, APPLY_SIZE));
        let (mut replace, mut commit) = (Vec::new(), Vec::new());
        let mut set = RuleSet::default();
        for _ in 0..APPLY_ROUNDS {
            set.replace(&[])?;
            maps.commit(&mut set)?;
            let started = Instant::now();
            set.replace(&wanted)?;
            let replaced = Instant::now();
            maps.commit(&mut set)?;
            commit.push(replaced.elapsed());
            replace.push(replaced - started);
            ensure!(
                set.rules().len() == APPLY_SIZE,
                "the set holds {} rules",
                set.rules().len()
            );
            check_interrupted()?;
        }
        applied.push(Applied {
            shape,
            replace: median(replace),
            commit: median(commit),
        });
    }
    // Leave the filter empty.
    let mut empty = RuleSet::default();
    maps.commit(&mut empty)?;
    Ok(applied)
}

pub(crate) fn print_apply(applied: &[Applied], peer: Option<&XdpFilter>) {
    println!(
        "apply {} rules to an empty filter: median of {APPLY_ROUNDS} (RuleSet::replace, then \
         FilterMaps::commit: compile, write the inactive generation, flip)",
        thousands(APPLY_SIZE)
    );
    println!(
        "{:<9} {:>10} {:>10} {:>10}",
        "shape", "replace ms", "commit ms", "total ms"
    );
    for row in applied {
        let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
        println!(
            "{:<9} {:>10.1} {:>10.1} {:>10.1}",
            row.shape.as_str(),
            ms(row.replace),
            ms(row.commit),
            ms(row.replace + row.commit)
        );
    }
    if let Some(peer) = peer.filter(|peer| peer.added() > 0) {
        println!(
            "xdp-filter: {} exact rules added with one `xdp-filter ip ADDR --mode src` each: \
             {:.1} s ({:.2} ms per rule)",
            thousands(peer.added()),
            peer.cli_time.as_secs_f64(),
            peer.cli_time.as_secs_f64() * 1000.0 / peer.added() as f64
        );
    }
}
