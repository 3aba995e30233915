//! Real firewall rule sets, measured the way the field measures classifiers: ClassBench-style
//! acl, fw and ipc sets (`net_common::classbench`) of 100, 1,000 and 10,000 rules, each run on
//! its own trace of headers aimed at its rules. Every header is run through netxdp and the
//! floor, alternating, [`ROUNDS`] times; its cost over the floor is the difference of the
//! medians, and the table gives the median and 99th percentile of that over the trace. Every
//! verdict is checked against the reference classifier.
//!
//! The same sets at 1,000 and 10,000 rules are also measured with the bit-vector search alone
//! (the classifier before the trees), on the first [`BIT_VECTOR_HEADERS`] headers of the same
//! traces: the before and after of the same run.
//!
//! xdp-filter has no rule that names two fields at once (it drops a packet when any one of
//! its address, port or protocol lists names it), so it cannot express these sets.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use net_common::{
    classbench::{self, Header, Profile},
    frame::SliceFrame,
    parse::parse,
    rule::classify,
};
use netxdp::filter::{FilterMaps, RuleSet, compile::Classifier};

use super::{Prog, check_interrupted, new_rules, test_run, thousands};

/// Rule-set sizes.
const SIZES: [usize; 3] = [100, 1_000, 10_000];
/// Headers per trace.
const HEADERS: usize = 2_000;
/// Headers of the bit-vector rows: that search is slow enough that a full trace would take
/// minutes.
const BIT_VECTOR_HEADERS: usize = 400;
/// Measurements per header and program; the median is kept.
const ROUNDS: usize = 3;
/// Repeats per measurement.
const REPEAT: u32 = 2_000;
/// Seeds of the sets and of their traces.
pub const RULES_SEED: u64 = 2026;
pub const TRACE_SEED: u64 = 14;

pub struct Row {
    pub profile: Profile,
    pub size: usize,
    pub classifier: Classifier,
    pub headers: usize,
    pub floor: Duration,
    pub median: Duration,
    pub p99: Duration,
    pub apply: Duration,
    pub trees: u32,
    pub kernel_bytes: u64,
}

/// Every (profile, size) row, then the bit-vector rows.
pub fn measure(maps: &mut FilterMaps, floor: &Prog, netxdp: &Prog) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for classifier in [Classifier::Trees, Classifier::BitVector] {
        maps.use_classifier(classifier);
        for profile in Profile::ALL {
            for size in SIZES {
                let headers = match classifier {
                    Classifier::Trees => HEADERS,
                    Classifier::BitVector if size >= 1_000 => BIT_VECTOR_HEADERS,
                    Classifier::BitVector => continue,
                };
                rows.push(
                    measure_set(maps, (floor, netxdp), profile, size, classifier, headers)
                        .with_context(|| format!("the {} set of {size} rules", profile.as_str()))?,
                );
            }
        }
    }
    maps.use_classifier(Classifier::default());
    maps.commit(&mut RuleSet::default())?;
    Ok(rows)
}

fn measure_set(
    maps: &mut FilterMaps,
    (floor, netxdp): (&Prog, &Prog),
    profile: Profile,
    size: usize,
    classifier: Classifier,
    headers: usize,
) -> Result<Row> {
    let rules = classbench::rules(profile, RULES_SEED, size);
    let mut set = RuleSet::default();
    maps.commit(&mut set)?;
    set.replace(&new_rules(&rules))?;
    let started = Instant::now();
    maps.commit(&mut set)?;
    let apply = started.elapsed();
    let trace = classbench::trace(&rules, TRACE_SEED, headers);
    let expected: Vec<u32> = trace
        .iter()
        .map(|header| {
            let packet = parse(&SliceFrame::new(&header.frame));
            classify(
                set.rules(),
                set.policy,
                set.fragments,
                set.malformed,
                &packet,
            )
            .action as u32
        })
        .collect();
    // Program by program over the whole trace: the kernel switches the XDP test-run
    // dispatcher, with an RCU grace period, whenever the program run changes.
    let (mut floor_runs, mut netxdp_runs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        floor_runs.push(run_trace(floor, &trace, None)?);
        netxdp_runs.push(run_trace(netxdp, &trace, Some(&expected))?);
    }
    let per_header = |runs: &[Vec<Duration>], index: usize| {
        super::median(runs.iter().map(|run| run[index]).collect())
    };
    let mut floors = Vec::with_capacity(trace.len());
    let mut costs = Vec::with_capacity(trace.len());
    for index in 0..trace.len() {
        let floor_ns = per_header(&floor_runs, index);
        floors.push(floor_ns);
        costs.push(per_header(&netxdp_runs, index).saturating_sub(floor_ns));
    }
    floors.sort_unstable();
    costs.sort_unstable();
    let config = maps.active_config()?;
    Ok(Row {
        profile,
        size,
        classifier,
        headers: trace.len(),
        floor: floors[floors.len() / 2],
        median: costs[costs.len() / 2],
        p99: costs[costs.len() * 99 / 100],
        apply,
        trees: config.trees,
        kernel_bytes: maps.kernel_bytes()?,
    })
}

/// `program`'s time on each header of `trace`, its verdicts checked against `expected`.
fn run_trace(program: &Prog, trace: &[Header], expected: Option<&[u32]>) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(trace.len());
    for (index, header) in trace.iter().enumerate() {
        let (verdict, duration) = test_run(program, &header.frame, REPEAT)?;
        if let Some(expected) = expected {
            ensure!(
                verdict == expected[index],
                "{} gave verdict {verdict} to header {index} (aimed at rule {}), where the \
                 reference gives {}",
                program.name,
                header.target,
                expected[index]
            );
        }
        times.push(duration);
    }
    check_interrupted()?;
    Ok(times)
}

pub fn print(rows: &[Row]) {
    println!(
        "ClassBench-style sets (net_common::classbench, rules seed {RULES_SEED}, trace seed \
         {TRACE_SEED}): per-packet ns over the floor on each set's trace, median of {ROUNDS} x \
         {} repeats per header; policy pass, every verdict checked against the reference",
        thousands(REPEAT as usize)
    );
    println!(
        "{:<8} {:>7} {:<10} {:>7} {:>6} {:>8} {:>8} {:>9} {:>6} {:>10}",
        "set",
        "rules",
        "classifier",
        "headers",
        "floor",
        "median",
        "p99",
        "apply ms",
        "trees",
        "kernel MiB"
    );
    for row in rows {
        println!(
            "{:<8} {:>7} {:<10} {:>7} {:>6} {:>8} {:>8} {:>9.1} {:>6} {:>10.1}",
            row.profile.as_str(),
            thousands(row.size),
            match row.classifier {
                Classifier::Trees => "trees",
                Classifier::BitVector => "bit-vector",
            },
            thousands(row.headers),
            row.floor.as_nanos(),
            format!("+{}", row.median.as_nanos()),
            format!("+{}", row.p99.as_nanos()),
            row.apply.as_secs_f64() * 1000.0,
            row.trees,
            row.kernel_bytes as f64 / (1 << 20) as f64,
        );
    }
    let goal = |row: &&Row| row.classifier == Classifier::Trees && row.size >= 1_000;
    let met = rows
        .iter()
        .filter(goal)
        .all(|row| row.median.as_nanos() <= 150 && row.p99.as_nanos() <= 300);
    println!(
        "goal (trees, 1,000 and 10,000 rules: median <= +150 ns, p99 <= +300 ns): {}",
        if met { "met" } else { "NOT met" }
    );
    println!(
        "xdp-filter cannot express these sets: its rules name one field each, and a packet \
         any of them names is dropped"
    );
}
