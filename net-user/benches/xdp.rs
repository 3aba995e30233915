//! The per-packet cost of the netxdp XDP program, measured in the kernel with
//! BPF_PROG_TEST_RUN: no NIC, no traffic generator, just the program run `repeat` times on one
//! frame, and the kernel's average time per run.
//!
//! That average includes the test-run machinery itself (setting up the `xdp_buff`, the loop,
//! the indirect call), which is not part of netxdp's cost. So every frame is also run through
//! `pass_floor`, a program from the same object that only returns XDP_PASS, in the same run:
//! netxdp minus the floor is what netxdp adds per packet, and netxdp / floor shows how it
//! compares to doing nothing. Each (program, frame) is measured 5 times, alternating the
//! programs so that drift (frequency scaling, other load) affects them alike, and the median is
//! shown. Every run's verdict is checked: XDP_PASS with no rules, and with rules the verdict of
//! the reference classifier (`net_common::rule::classify`).
//!
//! The no-rules frames are measured without and with flow tracking, then without capture built
//! in, with none running, and with a capture of every packet running (`xdp/capture.rs`).
//!
//! Then the filter, in one run:
//! - three rule-set shapes (`net_common::rulegen`: exact, blocklist, mixed) at 1, 100, 1,000
//!   and 10,000 rules, each on a frame that hits the set and one that misses it, IPv4 and IPv6
//!   (`xdp/rules.rs`, with the growth, the goals and the apply time below);
//! - beside the exact shape, xdp-filter (Debian's xdp-tools) with the same rules, run by the id
//!   of the program attached to a veth pair of its own (see `xdp/peer.rs`);
//! - how the cost grows from 1 to 10,000 rules;
//! - the time to apply a 10,000-rule set (`RuleSet::replace`, then `FilterMaps::commit`);
//! - ClassBench-style sets of 100 to 10,000 rules on their own traces, median and 99th
//!   percentile over the floor, on the decision trees and on the bit-vector search
//!   (`xdp/classbench.rs`), and the 1,000-rule acl set on veth against the same rules as an
//!   nftables netdev-ingress chain (`xdp/nftables.rs`; `NETXDP_BENCH_ONLY=classbench` runs
//!   these alone, about 70 s).
//!
//! The floor and netxdp stay attached to veth pairs of their own throughout, which keeps them
//! in the kernel's XDP dispatcher (see `keep_in_dispatcher`).
//!
//! Last, on veth pairs of their own: the userspace cost of reading a full flow table once a
//! second (`xdp/userspace.rs`), the rate `netxdp capture` writes a file at, and floods
//! (`xdp/flood.rs`): Mpps by CPUs sending, spoofed and fixed sources, dropped and passed, with
//! and without flow tracking (`NETXDP_BENCH_ONLY=flood` runs that section alone, about 60 s;
//! `NETXDP_BENCH_ONLY=userspace` the refreshes of a full flow table, about 70 s;
//! `NETXDP_BENCH_ONLY=capture` the capture path's costs per packet, `bans` those of bans
//! (`xdp/bans.rs`); `NETXDP_BENCH_ONLY=serve`
//! the exporter under 200 concurrent scrapes, `xdp/serve.rs`).
//!
//! Run with `cargo xtask bench` (as root); about 220 seconds, 25 of them the floods, 30 the
//! userspace refresh, 70 the ClassBench-style sets and 15 xdp-filter's CLI.
//! `NETXDP_BENCH_REPEAT` sets the repeats per measurement (default 1,000,000);
//! `NETXDP_BENCH_RULES_REPEAT` sets those of the rule-set tables alone (about 110
//! program/frame pairs; 200,000 takes the bench to about 40 seconds, with more noise).

#[path = "xdp/bans.rs"]
mod bans;
#[path = "xdp/capture.rs"]
mod capture;
#[path = "xdp/classbench.rs"]
mod classbench;
#[path = "xdp/flood.rs"]
mod flood;
#[path = "xdp/limits.rs"]
mod limits;
#[path = "xdp/nftables.rs"]
mod nftables;
#[path = "xdp/peer.rs"]
mod peer;
#[path = "xdp/rules.rs"]
mod rules;
#[path = "../tests/support/scrape_load.rs"]
mod scrape_load;
#[path = "xdp/serve.rs"]
mod serve;
#[path = "xdp/synguard.rs"]
mod synguard;
#[path = "xdp/userspace.rs"]
mod userspace;

use std::{
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::programs::{Xdp, XdpMode};
use net_common::{
    names,
    rule::{XDP_DROP, XDP_PASS},
    rulegen::{self, GenRule, Shape},
    testing::{Extension, FrameSpec, Transport, ipv6_with},
};
use netxdp::{
    bpf_syscall::{BPF_PROG_TEST_RUN, TestRunAttr, bpf},
    filter::{FilterMaps, NewRule, RuleSet},
    netns::VethNet,
    program,
};

use peer::XdpFilter;
use rules::{
    measure_apply, measure_rule_row, print_apply, print_goals, print_growth, print_rule_rows,
};

const ROUNDS: usize = 5;
const DEFAULT_REPEAT: u32 = 1_000_000;
const TCP_SYN: u8 = 0x02;
/// Rule-set sizes of the filter tables.
const SIZES: [usize; 4] = [1, 100, 1_000, 10_000];
/// The seed of every generated rule set.
const SEED: u64 = 2026;
/// Rule-set size of the apply-time measurement.
const APPLY_SIZE: usize = 10_000;
/// The veth pairs that keep the floor and netxdp attached (198.18.N.0/30): ones no test uses.
const DISPATCH_SUBNETS: [u8; 2] = [216, 217];
/// Applies timed per shape; the median is shown.
const APPLY_ROUNDS: usize = 5;

/// Set by SIGINT or SIGTERM: the bench stops at the next step, cleaning up as on any error.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn main() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the benchmarks need root to load XDP programs and run them with BPF_PROG_TEST_RUN: \
             run `cargo xtask bench`, or `sudo -E cargo bench -p net-user --bench xdp`"
        );
    }
    netxdp::preflight::ensure_bpffs()?;
    let started = Instant::now();
    let repeat = repeat_from_env("NETXDP_BENCH_REPEAT", DEFAULT_REPEAT)?;
    let rules_repeat = repeat_from_env("NETXDP_BENCH_RULES_REPEAT", repeat)?;
    catch_interrupts()?;
    let only = std::env::var("NETXDP_BENCH_ONLY").ok();
    match only.as_deref() {
        None | Some("classbench" | "capture" | "bans" | "limits") => {}
        Some("flood") => return flood::print(),
        Some("userspace") => return print_refreshes(),
        Some("serve") => return serve::print(),
        Some("synguard") => return synguard::print(),
        Some(other) => bail!(
            "NETXDP_BENCH_ONLY={other:?}: the sections it can name are `flood`, `userspace`, \
             `serve`, `classbench`, `capture`, `bans`, `limits` and `synguard`"
        ),
    }

    // The filter is measured with flow tracking off, as xdp-filter has none; the cost of the
    // flow table is measured on its own, just below.
    let flows_off = program::Options {
        flows: program::Flows::Off,
        ..Default::default()
    };
    let mut ebpf = program::load(None, flows_off)?;
    let floor: &mut Xdp = ebpf
        .program_mut(names::PASS_FLOOR)
        .with_context(|| format!("the object has no program named {}", names::PASS_FLOOR))?
        .try_into()?;
    floor
        .load()
        .with_context(|| format!("loading {}", names::PASS_FLOOR))?;
    let _dispatched = keep_in_dispatcher(&mut ebpf)?;
    let mut maps = FilterMaps::take_from(&mut ebpf)?;
    let mut ban_table = netxdp::bans::BanTable::take_from(&mut ebpf)?;
    let floor = Prog::of(&ebpf, names::PASS_FLOOR)?;
    let netxdp = Prog::of(&ebpf, names::PROGRAM)?;
    match only.as_deref() {
        Some("classbench") => return print_classbench(&mut maps, &floor, &netxdp),
        Some("capture") => {
            print_capture_costs(&capture::path_costs(&floor, repeat)?, repeat);
            return Ok(());
        }
        Some("bans") => return bans::print(&mut ban_table, &floor, &netxdp, repeat),
        Some("limits") => {
            limits::print_costs(&mut maps, &floor, &netxdp, repeat)?;
            println!();
            return limits::print_floods();
        }
        _ => {}
    }

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading /proc/sys/kernel/osrelease")?;
    let kernel = kernel.trim();
    let no_rules = measure_without_rules(&floor, &netxdp, repeat)?;
    println!(
        "netxdp per-packet cost, no rules, no flow tracking (attach --no-flows): median of \
         {ROUNDS} x {} BPF_PROG_TEST_RUN repeats on kernel {kernel}",
        thousands(repeat as usize)
    );
    print_no_rules(&no_rules);
    println!();
    {
        let tracking = program::load(None, program::Options::default())?;
        let netxdp = Prog::of(&tracking, names::PROGRAM)?;
        let with_flows = measure_without_rules(&floor, &netxdp, repeat)?;
        println!(
            "netxdp per-packet cost, no rules, flow tracking on (the default {} MiB table), \
             same frames, each frame's flow already in the table:",
            net_common::flow::DEFAULT_FLOW_TABLE_BYTES >> 20
        );
        print_no_rules(&with_flows);
        println!();
    }
    print_capture_costs(&capture::path_costs(&floor, repeat)?, repeat);
    println!();
    bans::print(&mut ban_table, &floor, &netxdp, repeat)?;
    println!();
    limits::print_costs(&mut maps, &floor, &netxdp, repeat)?;
    println!();

    // The peer first: if it cannot run, say why up front, and measure netxdp anyway.
    let mut xdp_filter = match XdpFilter::start() {
        Ok(peer) => Some(peer),
        Err(error) => {
            eprintln!("bench: xdp-filter peer not measured: {error:#}");
            None
        }
    };
    let mut set = RuleSet::default();
    let mut rows = Vec::new();
    for shape in Shape::ALL {
        let all = rulegen::generate(shape, SEED, SIZES[SIZES.len() - 1]);
        for size in SIZES {
            let rules = all.get(..size).with_context(|| {
                format!(
                    "the {} generator made only {} rules",
                    shape.as_str(),
                    all.len()
                )
            })?;
            apply(&mut maps, &mut set, rules)
                .with_context(|| format!("applying {size} {} rules", shape.as_str()))?;
            let peer = match (shape, xdp_filter.as_mut()) {
                (Shape::Exact, Some(peer)) => match peer.grow_to(rules) {
                    Ok(()) => Some(Prog {
                        name: "xdp-filter",
                        fd: peer.fd().as_fd(),
                    }),
                    Err(error) => {
                        check_interrupted()?;
                        eprintln!("bench: xdp-filter peer stopped: {error:#}");
                        None
                    }
                },
                _ => None,
            };
            for frame in rulegen::bench_frames(rules) {
                rows.push(measure_rule_row(
                    (shape, size),
                    &frame,
                    &set,
                    (&floor, &netxdp, peer.as_ref()),
                    rules_repeat,
                )?);
            }
            if peer.is_none() && shape == Shape::Exact && xdp_filter.is_some() {
                // It failed to grow: stop it (and clean up) now.
                xdp_filter = None;
            }
        }
    }
    println!(
        "netxdp with rules (policy pass), per-packet ns: median of {ROUNDS} x {} repeats \
         (NETXDP_BENCH_RULES_REPEAT) per (program, frame); floor = pass_floor in the same rounds; \
         rules from seed {SEED}",
        thousands(rules_repeat as usize)
    );
    if let Some(peer) = &xdp_filter {
        println!(
            "xdp-filter: `xdp-filter load --mode native --features {}` on {}; running program id \
             {} ({}{}, {} mode) by id",
            peer.features,
            peer.iface(),
            peer.program_id,
            peer.program_name,
            if peer.program_name.starts_with("xdp_dispatcher") {
                ": libxdp's dispatcher, which runs xdp-filter's program"
            } else {
                ": xdp-filter's program itself; libxdp attached it without its dispatcher"
            },
            peer.mode,
        );
    }
    print_rule_rows(&rows);
    println!();
    print_growth(&rows);
    println!();
    print_goals(&rows);
    println!();

    let applied = measure_apply(&mut maps)?;
    print_apply(&applied, xdp_filter.as_ref());
    drop(xdp_filter);
    println!();
    print_classbench(&mut maps, &floor, &netxdp)?;
    println!();
    print_refreshes()?;
    serve::print()?;
    let count = 200_000;
    println!(
        "capture: `netxdp capture IFACE --action all -w FILE` (pcapng) while {} frames are \
         sent from the namespace (AF_PACKET, one thread) to a veth pair in skb mode:",
        thousands(count)
    );
    for rate in capture::capture_rates(count).context("measuring capture rates")? {
        println!(
            "  {}-byte frames: {} sent in {:.2} s ({:.0} frames/s); {} written ({:.0}/s, {:.1} \
             MB/s to the file), {} lost to a full ring ({:.2}%)",
            rate.frame_bytes,
            thousands(rate.sent),
            rate.seconds,
            rate.sent as f64 / rate.seconds,
            thousands(rate.written as usize),
            rate.written as f64 / rate.seconds,
            rate.file_bytes as f64 / rate.seconds / 1e6,
            thousands(rate.lost as usize),
            rate.lost as f64 * 100.0 / rate.sent as f64,
        );
    }
    flood::print()?;
    println!();
    limits::print_floods()?;
    println!();
    synguard::print()?;
    println!(
        "bench wall time: {:.1} s ({} (program, frame) pairs x {ROUNDS} rounds, xdp-filter's \
         CLI, {} applies, setup and cleanup)",
        started.elapsed().as_secs_f64(),
        3 * 2 + rows.len() * 2 + rows.iter().filter(|row| row.peer.is_some()).count(),
        Shape::ALL.len() * (SIZES.len() + 2 * APPLY_ROUNDS),
    );
    Ok(())
}

/// A loaded XDP program, by name, and the descriptor BPF_PROG_TEST_RUN takes.
struct Prog<'a> {
    name: &'static str,
    fd: BorrowedFd<'a>,
}

impl<'a> Prog<'a> {
    fn of(ebpf: &'a aya::Ebpf, name: &'static str) -> Result<Self> {
        let program: &Xdp = ebpf
            .program(name)
            .with_context(|| format!("the object has no program named {name}"))?
            .try_into()?;
        let fd = program
            .fd()
            .with_context(|| format!("{name} is not loaded"))?
            .as_fd();
        Ok(Self { name, fd })
    }
}

/// The ClassBench-style table, and the 1,000-rule acl set against nftables on veth.
fn print_classbench(maps: &mut FilterMaps, floor: &Prog, netxdp: &Prog) -> Result<()> {
    classbench::print(&classbench::measure(maps, floor, netxdp)?);
    println!();
    let rates = nftables::measure(classbench::RULES_SEED, classbench::TRACE_SEED)
        .context("measuring the acl set against nftables")?;
    nftables::print(&rates);
    Ok(())
}

/// Attaches the floor and netxdp to veth pairs of their own for as long as the pairs live.
/// A test run adds the program it runs to the kernel's XDP dispatcher and removes it again,
/// each time waiting for an RCU grace period (milliseconds), unless the program is already
/// there because it is attached: then a call costs what its runs cost. The measured runs are
/// the same either way: the dispatcher calls the program directly during a test run.
fn keep_in_dispatcher(ebpf: &mut aya::Ebpf) -> Result<Vec<VethNet>> {
    let mut pairs = Vec::new();
    for (name, tag, subnet) in [
        (names::PASS_FLOOR, "bf", DISPATCH_SUBNETS[0]),
        (names::PROGRAM, "bn", DISPATCH_SUBNETS[1]),
    ] {
        let pair = VethNet::create(tag, subnet)?;
        let program: &mut Xdp = ebpf
            .program_mut(name)
            .with_context(|| format!("the object has no program named {name}"))?
            .try_into()?;
        program
            .attach(pair.host_if(), XdpMode::Driver)
            .with_context(|| format!("attaching {name} to {}", pair.host_if()))?;
        pairs.push(pair);
    }
    Ok(pairs)
}

/// The repeats per measurement: `variable`, or `default`.
fn repeat_from_env(variable: &str, default: u32) -> Result<u32> {
    let Ok(value) = std::env::var(variable) else {
        return Ok(default);
    };
    let repeat: u32 = value
        .replace(['_', ','], "")
        .parse()
        .with_context(|| format!("{variable}={value:?} is not a number of repeats"))?;
    ensure!(repeat > 0, "{variable} must be at least 1");
    Ok(repeat)
}

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM set [`INTERRUPTED`] instead of killing the bench, so that the veth pair,
/// the namespace and xdp-filter's pins are removed. A test run under way returns EINTR.
fn catch_interrupts() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"; the handler only
        // stores to an atomic, which is async-signal-safe.
        let result = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_interrupt as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if result != 0 {
            return Err(std::io::Error::last_os_error()).context("installing a signal handler");
        }
    }
    Ok(())
}

/// Fails once SIGINT or SIGTERM arrived.
pub(crate) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs `program` `repeat` times on `frame`: its verdict, and the kernel's average time per
/// run. One code path for every program measured (netxdp, the floor, xdp-filter's, which this
/// process did not load and aya cannot wrap without its attach type).
fn test_run(program: &Prog, frame: &[u8], repeat: u32) -> Result<(u32, Duration)> {
    let mut attr = TestRunAttr {
        prog_fd: program.fd.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    // SAFETY: the kernel reads `frame` (borrowed for the call) and writes only into `attr`.
    unsafe { prog_test_run(&mut attr) }.with_context(|| {
        format!(
            "BPF_PROG_TEST_RUN of {} on a {}-byte frame",
            program.name,
            frame.len()
        )
    })?;
    Ok((attr.retval, Duration::from_nanos(attr.duration.into())))
}

/// BPF_PROG_TEST_RUN with `attr`; an interruption (SIGINT, SIGTERM) is told as such.
///
/// # Safety
/// Every pointer in `attr` must point to memory of the size it gives, the kernel's to read
/// (data and context in) or write (data and context out).
unsafe fn prog_test_run(attr: &mut TestRunAttr) -> Result<()> {
    // SAFETY: `attr` is BPF_PROG_TEST_RUN's attribute, of its exact size; its pointers are
    // the caller's promise.
    let result = unsafe { bpf(BPF_PROG_TEST_RUN, attr) };
    if let Err(error) = result {
        check_interrupted()?;
        return Err(error.into());
    }
    Ok(())
}

/// The average time per run of `program` on `frame`, failing unless every run's verdict is
/// `expected`: a program that gave another verdict would be measuring something else.
fn measure(program: &Prog, frame: &[u8], repeat: u32, expected: u32) -> Result<Duration> {
    let (verdict, duration) = test_run(program, frame, repeat)?;
    ensure!(
        verdict == expected,
        "{} returned {} on a {}-byte frame, where {} was expected",
        program.name,
        verdict_name(verdict),
        frame.len(),
        verdict_name(expected)
    );
    Ok(duration)
}

fn verdict_name(verdict: u32) -> String {
    match verdict {
        0 => "XDP_ABORTED".to_owned(),
        XDP_DROP => "XDP_DROP".to_owned(),
        XDP_PASS => "XDP_PASS".to_owned(),
        3 => "XDP_TX".to_owned(),
        4 => "XDP_REDIRECT".to_owned(),
        other => format!("verdict {other}"),
    }
}

/// The median of an odd number of samples.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    // Never empty: every caller takes ROUNDS (5) or APPLY_ROUNDS (5) samples.
    samples[samples.len() / 2]
}

/// An IPv6 UDP datagram (10 bytes of payload) behind `headers` 8-byte destination options.
fn udp_behind_dstopts(headers: usize) -> Vec<u8> {
    ipv6_with(
        vec![Extension::DestinationOptions { units: 0 }; headers],
        Transport::Udp {
            sport: 5353,
            dport: 53,
            payload: 10,
        },
    )
    .build()
}

struct NoRulesRow {
    frame: &'static str,
    bytes: usize,
    floor: Duration,
    netxdp: Duration,
}

/// The v1 table: netxdp with an empty filter (before any rule set is committed).
fn measure_without_rules(floor: &Prog, netxdp: &Prog, repeat: u32) -> Result<Vec<NoRulesRow>> {
    let frames = [
        ("udp/ipv4", 64, FrameSpec::ipv4_udp(5353, 53, 22).build()),
        (
            "tcp/ipv6 syn",
            74,
            FrameSpec::ipv6_tcp(40000, 443, TCP_SYN, 0).build(),
        ),
        (
            "udp/ipv4 802.1Q",
            68,
            FrameSpec::ipv4_udp(5353, 53, 22)
                .with_vlans(&[0x8100])
                .build(),
        ),
        // The extension header walk (bpf_loop), one turn per header.
        ("udp/ipv6 2 dstopts", 88, udp_behind_dstopts(2)),
        ("udp/ipv6 32 dstopts", 328, udp_behind_dstopts(32)),
    ];
    let mut rows = Vec::new();
    for (name, bytes, frame) in &frames {
        ensure!(
            frame.len() == *bytes,
            "the {name} frame is {} bytes, not {bytes}",
            frame.len()
        );
        let (mut floor_ns, mut netxdp_ns) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            floor_ns.push(measure(floor, frame, repeat, XDP_PASS)?);
            netxdp_ns.push(measure(netxdp, frame, repeat, XDP_PASS)?);
        }
        rows.push(NoRulesRow {
            frame: name,
            bytes: *bytes,
            floor: median(floor_ns),
            netxdp: median(netxdp_ns),
        });
    }
    Ok(rows)
}

fn print_no_rules(rows: &[NoRulesRow]) {
    println!(
        "{:<16} {:>5} {:>13} {:>14} {:>16} {:>6}",
        "frame", "bytes", "floor ns/pkt", "netxdp ns/pkt", "netxdp-floor ns", "ratio"
    );
    for row in rows {
        let (floor, netxdp) = (row.floor.as_nanos(), row.netxdp.as_nanos());
        let difference = netxdp as i128 - floor as i128;
        let ratio = netxdp as f64 / floor.max(1) as f64;
        println!(
            "{:<16} {:>5} {floor:>13} {netxdp:>14} {difference:>16} {ratio:>5.2}x",
            row.frame, row.bytes
        );
    }
}

fn print_capture_costs(costs: &capture::PathCosts, repeat: u32) {
    let floor = costs.floor.as_nanos().max(1) as f64;
    let row = |what: &str, cost: Duration| {
        let ns = cost.as_nanos();
        println!(
            "  {what:<52} {ns:>5} ns  {:>5.2}x floor  {:>5.2}x without capture",
            ns as f64 / floor,
            ns as f64 / costs.without_capture.as_nanos().max(1) as f64
        );
    };
    println!(
        "capture, per packet (udp/ipv4, 64 bytes, no rules, no flow tracking; median of \
         {ROUNDS} x {} repeats; floor {} ns):",
        thousands(repeat as usize),
        costs.floor.as_nanos()
    );
    row(
        "built without capture (as before capture existed)",
        costs.without_capture,
    );
    row("no capture running", costs.idle);
    let copied = costs.drained_copied + costs.drained_lost;
    row(
        &format!(
            "capturing all, ring drained ({:.0}% copied)",
            costs.drained_copied as f64 * 100.0 / copied.max(1) as f64
        ),
        costs.drained,
    );
    row(
        "capturing all matching a five-term expression",
        costs.expression_matches,
    );
    row(
        "capturing all: five-term expression, no match",
        costs.expression_misses,
    );
    println!(
        "    (expression: {}; the other fails its last term)",
        capture::MATCHING
    );
    row("capturing all, ring full (reader stalled)", costs.ring_full);
    row("capturing all, lease run out (reader dead)", costs.expired);
}

/// Replaces the rule set with `rules` and commits it.
fn apply(maps: &mut FilterMaps, set: &mut RuleSet, rules: &[GenRule]) -> Result<()> {
    set.replace(&new_rules(rules))?;
    maps.commit(set)?;
    check_interrupted()
}

fn new_rules(rules: &[GenRule]) -> Vec<NewRule> {
    rules
        .iter()
        .map(|rule| NewRule {
            action: rule.action,
            priority: rule.priority,
            matches: rule.matches,
            limit: net_common::limit::Limit::NONE,
        })
        .collect()
}

/// The userspace cost of refreshing a full flow table once a second.
fn print_refreshes() -> Result<()> {
    let seconds = 30;
    let refreshes = userspace::flows_refresh(seconds).context("measuring flows refreshes")?;
    for refresh in refreshes {
        println!(
            "userspace: {} for {} s, {} flows in the table: {:.2} s CPU in all, {:.2}% of one \
             core; {} ms per refresh at most; peak RSS {} MiB",
            refresh.command,
            refresh.seconds,
            thousands(refresh.flows),
            refresh.cpu.as_secs_f64(),
            refresh.cpu.as_secs_f64() * 100.0 / f64::from(refresh.seconds),
            refresh.slowest.as_millis(),
            refresh.peak_rss_kib / 1024
        );
    }
    Ok(())
}

/// `n` with thousands separators: 1000000 as "1,000,000".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
