//! The per-packet cost of the netxdp XDP program, measured in the kernel with
//! BPF_PROG_TEST_RUN: no NIC, no traffic generator, just the program run `repeat` times on one
//! frame, and the kernel's average time per run.
//!
//! That average includes the test-run machinery itself (setting up the `xdp_buff`, the loop,
//! the indirect call), which is not part of netxdp's cost. So every frame is also run through
//! `pass_floor`, a program from the same object that only returns XDP_PASS, in the same run:
//! netxdp minus the floor is what netxdp adds per packet, and netxdp / floor shows how it
//! compares to doing nothing. Each (program, frame) is measured 5 times, alternating the two
//! programs so that drift (frequency scaling, other load) affects both alike, and the median is
//! shown.
//!
//! Run with `cargo xtask bench` (as root). `NETXDP_BENCH_REPEAT` sets the repeats per
//! measurement (default 1,000,000).

use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use net_common::{names, testing::FrameSpec};
use netxdp::program::{self, KernelLog};

const XDP_PASS: u32 = 2;
const ROUNDS: usize = 5;
const DEFAULT_REPEAT: u32 = 1_000_000;
const TCP_SYN: u8 = 0x02;

fn main() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the benchmarks need root to load XDP programs and run them with BPF_PROG_TEST_RUN: \
             run `cargo xtask bench`, or `sudo -E cargo bench -p net-user --bench xdp`"
        );
    }
    netxdp::preflight::require_bpffs()?;
    let repeat = repeat()?;

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
    ];

    let mut ebpf = program::load(None, KernelLog::Off)?;
    let floor: &mut Xdp = ebpf
        .program_mut(names::PASS_FLOOR)
        .with_context(|| format!("the object has no program named {}", names::PASS_FLOOR))?
        .try_into()?;
    floor
        .load()
        .with_context(|| format!("loading {}", names::PASS_FLOOR))?;
    let floor: &Xdp = ebpf
        .program(names::PASS_FLOOR)
        .with_context(|| format!("the object has no program named {}", names::PASS_FLOOR))?
        .try_into()?;
    let netxdp: &Xdp = ebpf
        .program(names::PROGRAM)
        .with_context(|| format!("the object has no program named {}", names::PROGRAM))?
        .try_into()?;

    let mut rows = Vec::new();
    for (name, bytes, frame) in &frames {
        ensure!(
            frame.len() == *bytes,
            "the {name} frame is {} bytes, not {bytes}",
            frame.len()
        );
        let (mut floor_ns, mut netxdp_ns) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            floor_ns.push(measure(floor, names::PASS_FLOOR, frame, repeat)?);
            netxdp_ns.push(measure(netxdp, names::PROGRAM, frame, repeat)?);
        }
        rows.push(Row {
            frame: name,
            bytes: *bytes,
            floor: median(floor_ns),
            netxdp: median(netxdp_ns),
        });
    }

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .context("reading /proc/sys/kernel/osrelease")?;
    println!(
        "netxdp per-packet cost: median of {ROUNDS} x {} BPF_PROG_TEST_RUN repeats on kernel {}",
        thousands(repeat),
        kernel.trim()
    );
    print_table(&rows);
    Ok(())
}

/// The repeats per measurement: `NETXDP_BENCH_REPEAT`, or 1,000,000.
fn repeat() -> Result<u32> {
    let Ok(value) = std::env::var("NETXDP_BENCH_REPEAT") else {
        return Ok(DEFAULT_REPEAT);
    };
    let repeat: u32 = value
        .replace('_', "")
        .parse()
        .with_context(|| format!("NETXDP_BENCH_REPEAT={value:?} is not a number of repeats"))?;
    ensure!(repeat > 0, "NETXDP_BENCH_REPEAT must be at least 1");
    Ok(repeat)
}

/// The kernel's average time per run of `program` on `frame`, over `repeat` runs.
///
/// Panics if the verdict is not XDP_PASS: a benchmark of a program that drops or aborts on
/// this frame would measure something else.
fn measure(program: &Xdp, name: &str, frame: &[u8], repeat: u32) -> Result<Duration> {
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::new()
        })
        .with_context(|| {
            format!(
                "BPF_PROG_TEST_RUN of {name} on a {}-byte frame",
                frame.len()
            )
        })?;
    assert_eq!(
        result.return_value,
        XDP_PASS,
        "{name} returned verdict {} on a {}-byte frame, expected XDP_PASS ({XDP_PASS})",
        result.return_value,
        frame.len()
    );
    Ok(result.duration)
}

/// The median of an odd number of samples.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    // Never empty: there are ROUNDS (5) samples.
    samples[samples.len() / 2]
}

struct Row<'a> {
    frame: &'a str,
    bytes: usize,
    floor: Duration,
    netxdp: Duration,
}

fn print_table(rows: &[Row]) {
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

/// `n` with thousands separators: 1000000 as "1,000,000".
fn thousands(n: u32) -> String {
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
