//! Floods: how many frames a second the receiving end of a veth pair takes with netxdp
//! attached, as the number of CPUs sending grows, for a spoofed-source flood (every frame a
//! new flow) and a fixed-source one, of frames a rule drops and frames the policy passes.
//!
//! The generator is the kernel's own ([`netxdp::flood`]), one thread per CPU, pinned; the
//! receiving end's XDP program runs on the queue of that CPU. The veth pair has as many
//! queues as the machine has CPUs, so the bench runs unchanged on 2 or 64. Both ends stay in
//! the root namespace (netxdp pins in its bpffs), with no addresses.

use std::{os::fd::BorrowedFd, sync::Barrier, thread, time::Instant};

use anyhow::{Context as _, Result};
use aya::programs::{Xdp, XdpMode};
use net_common::names;
use netxdp::{
    counters::CounterMap,
    flood::{Generators, live_frames},
    iface::IfaceName,
    netns::ip,
    pins::PinDir,
};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    unistd::Pid,
};

use super::check_interrupted;
use crate::userspace::{Detach, netxdp};

/// Frames each generator thread sends per run.
pub const FRAMES_PER_CPU: u32 = 1_000_000;
/// Runs per measurement; the median is reported. The two netxdp receivers run in turns, so
/// that each ratio compares runs seconds apart, not minutes.
pub const RUNS: usize = 5;
/// The UDP port the rule drops; the pass floods go to the next one.
pub const DROP_PORT: u16 = 1500;

/// What receives the flood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receiver {
    /// A program that drops every frame: the generator's and the veth's limit.
    DropFloor,
    NoFlows,
    Default,
}

impl Receiver {
    pub fn as_str(self) -> &'static str {
        match self {
            Receiver::DropFloor => "XDP_DROP floor",
            Receiver::NoFlows => "netxdp --no-flows",
            Receiver::Default => "netxdp (default)",
        }
    }
}

/// A flood: spoofed sources or one, to the port the rule drops or to one the policy passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flood {
    pub spoofed: bool,
    pub dropped: bool,
}

impl Flood {
    pub const ALL: [Flood; 4] = [
        Flood {
            spoofed: true,
            dropped: true,
        },
        Flood {
            spoofed: false,
            dropped: true,
        },
        Flood {
            spoofed: true,
            dropped: false,
        },
        Flood {
            spoofed: false,
            dropped: false,
        },
    ];

    pub fn name(self) -> String {
        format!(
            "{} {}",
            if self.spoofed { "spoofed" } else { "fixed" },
            if self.dropped { "drop" } else { "pass" }
        )
    }
}

/// One measurement.
pub struct FloodRow {
    pub receiver: Receiver,
    pub flood: Flood,
    pub cpus: usize,
    pub mpps: f64,
    /// Frames the receiver counted of those sent (netxdp's counters; the floor has none).
    pub counted: Option<(u64, u64)>,
    /// For the default receiver: the median, over the rounds, of its rate against the
    /// `--no-flows` run of the same round.
    pub ratio: Option<f64>,
    /// The netxdp program's own time per packet, as the kernel's BPF statistics count it
    /// (in a round of its own, with the statistics on: they cost each run two clock reads).
    pub program_ns: Option<f64>,
}

/// The CPU counts measured: 1, 2, 4, ... and all of them.
pub fn cpu_counts(cpus: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = std::iter::successors(Some(1usize), |n| Some(n * 2))
        .take_while(|n| *n < cpus)
        .collect();
    counts.push(cpus);
    counts
}

/// Every flood at every CPU count, against the floor, `--no-flows` and the default.
pub fn floods() -> Result<Vec<FloodRow>> {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let cpus = usize::try_from(online)
        .ok()
        .filter(|n| *n > 0)
        .context("counting the online CPUs")?;
    // A pair for each netxdp receiver, both attached at once, to take turns.
    let pairs = [FloodPair::create(cpus, 'a')?, FloodPair::create(cpus, 'b')?];
    let mut generators = Generators::load()?;
    let senders = [
        netxdp::preflight::ifindex(&pairs[0].sender)?,
        netxdp::preflight::ifindex(&pairs[1].sender)?,
    ];
    let mut rows = Vec::new();

    // The floor: the generator and the veth with nothing to do on the receiving end.
    {
        let floor: &mut Xdp = generators
            .ebpf_mut()
            .program_mut(names::DROP_FLOOR)
            .context("drop_floor")?
            .try_into()?;
        let link = floor
            .attach(pairs[0].receiver.as_str(), XdpMode::Driver)
            .context("attaching drop_floor")?;
        let generator = generators.generator(false)?;
        let flood = Flood {
            spoofed: false,
            dropped: true,
        };
        for &count in &cpu_counts(cpus) {
            check_interrupted()?;
            let mut runs = (0..RUNS)
                .map(|_| run_once(generator, &frame(flood), senders[0], count))
                .collect::<Result<Vec<f64>>>()?;
            rows.push(FloodRow {
                receiver: Receiver::DropFloor,
                flood,
                cpus: count,
                mpps: median(&mut runs),
                counted: None,
                ratio: None,
                program_ns: None,
            });
        }
        let floor: &mut Xdp = generators
            .ebpf_mut()
            .program_mut(names::DROP_FLOOR)
            .context("drop_floor")?
            .try_into()?;
        floor.detach(link).context("detaching drop_floor")?;
    }

    let receivers = [Receiver::NoFlows, Receiver::Default];
    let _attached = [
        attach_dropping(&pairs[0].receiver, &["--no-flows"])?,
        attach_dropping(&pairs[1].receiver, &[])?,
    ];
    let counters = [
        CounterMap::from_pin(&PinDir::new(&pairs[0].receiver))?,
        CounterMap::from_pin(&PinDir::new(&pairs[1].receiver))?,
    ];
    for flood in Flood::ALL {
        let generator = generators.generator(flood.spoofed)?;
        for &count in &cpu_counts(cpus) {
            let mut runs = [Vec::new(), Vec::new()];
            let mut counted = [0, 0];
            for round in 0..RUNS {
                // Each goes first in turn, so neither always runs on a warmer machine.
                for turn in 0..2 {
                    let which = (round + turn) % 2;
                    check_interrupted()?;
                    let before = counters[which].read()?.total().packets;
                    let mpps = run_once(generator, &frame(flood), senders[which], count)?;
                    counted[which] += counters[which].read()?.total().packets - before;
                    runs[which].push(mpps);
                }
            }
            let mut ratios: Vec<f64> = runs[1]
                .iter()
                .zip(&runs[0])
                .map(|(with, without)| with / without)
                .collect();
            let sent = u64::from(FRAMES_PER_CPU) * (count * RUNS) as u64;
            let program_ns = {
                let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
                    .context("turning the kernel's BPF statistics on")?;
                let mut program_ns = [0.0; 2];
                for which in 0..2 {
                    let pins = PinDir::new(&pairs[which].receiver);
                    let before = program_runs(&pins)?;
                    run_once(generator, &frame(flood), senders[which], count)?;
                    let after = program_runs(&pins)?;
                    let runs = after.1.saturating_sub(before.1).max(1);
                    program_ns[which] = after.0.saturating_sub(before.0) as f64 / runs as f64;
                }
                program_ns
            };
            for which in 0..2 {
                rows.push(FloodRow {
                    receiver: receivers[which],
                    flood,
                    cpus: count,
                    mpps: median(&mut runs[which]),
                    counted: Some((counted[which], sent)),
                    ratio: (which == 1).then(|| median(&mut ratios)),
                    program_ns: Some(program_ns[which]),
                });
            }
        }
    }
    Ok(rows)
}

/// The pinned program's run time (ns) and runs, as the kernel counts them.
fn program_runs(pins: &PinDir) -> Result<(u64, u64)> {
    let info = aya::programs::ProgramInfo::from_pin(pins.prog())
        .with_context(|| format!("reading {}", pins.prog().display()))?;
    Ok((info.run_time().as_nanos() as u64, info.run_count()))
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Measures the floods and prints the table, the program's time per packet and the ratios.
pub fn print() -> Result<()> {
    let rows = floods().context("measuring floods")?;
    let counts: Vec<usize> = {
        let mut counts: Vec<usize> = rows.iter().map(|row| row.cpus).collect();
        counts.sort_unstable();
        counts.dedup();
        counts
    };
    println!(
        "floods: Mpps taken by the receiving end of a veth pair ({} queues), 64-byte UDP/IPv4 \
         live frames sent by XDP_TX (BPF_PROG_TEST_RUN, batch 64), one generator per CPU, \
         median of {} runs (the two netxdp receivers on two pairs, in turns), rule \
         `drop proto udp dport 1500`; by CPUs sending:",
        counts.last().copied().unwrap_or(1),
        RUNS
    );
    print!("{:<20} {:<14}", "receiver", "flood");
    for count in &counts {
        print!(" {:>8}", format!("{count} CPU"));
    }
    println!("  counted");
    let mut keys: Vec<(Receiver, Flood)> = Vec::new();
    for row in &rows {
        if !keys.contains(&(row.receiver, row.flood)) {
            keys.push((row.receiver, row.flood));
        }
    }
    let mpps = |receiver, flood, cpus| {
        rows.iter()
            .find(|row| row.receiver == receiver && row.flood == flood && row.cpus == cpus)
            .map(|row| row.mpps)
    };
    for (receiver, flood) in &keys {
        print!("{:<20} {:<14}", receiver.as_str(), flood.name());
        for &count in &counts {
            match mpps(*receiver, *flood, count) {
                Some(value) => print!(" {value:>8.2}"),
                None => print!(" {:>8}", "-"),
            }
        }
        let (counted, sent) = rows
            .iter()
            .filter(|row| row.receiver == *receiver && row.flood == *flood)
            .filter_map(|row| row.counted)
            .fold((0, 0), |(c, s), (counted, sent)| (c + counted, s + sent));
        if sent > 0 {
            println!("  {:.1}%", counted as f64 * 100.0 / sent as f64);
        } else {
            println!("  -");
        }
    }
    println!(
        "netxdp's own time per packet, ns (the kernel's BPF statistics, a run of its own), by \
         CPUs sending:"
    );
    for (receiver, flood) in keys
        .iter()
        .filter(|(receiver, _)| *receiver != Receiver::DropFloor)
    {
        print!("{:<20} {:<14}", receiver.as_str(), flood.name());
        for &count in &counts {
            let ns = rows
                .iter()
                .find(|row| row.receiver == *receiver && row.flood == *flood && row.cpus == count)
                .and_then(|row| row.program_ns);
            match ns {
                Some(ns) => print!(" {ns:>8.1}"),
                None => print!(" {:>8}", "-"),
            }
        }
        println!();
    }
    println!("default / --no-flows, same flood and CPUs (median of the rounds' ratios):");
    let worst = |flood: Flood| {
        let mut worst: Option<f64> = None;
        print!("  {:<14}", flood.name());
        for &count in &counts {
            // Only the default receiver's rows hold a ratio.
            let ratio = rows
                .iter()
                .filter(|row| row.flood == flood && row.cpus == count)
                .find_map(|row| row.ratio);
            if let Some(ratio) = ratio {
                print!(" {ratio:>7.2}x");
                worst = Some(worst.map_or(ratio, |w: f64| w.min(ratio)));
            }
        }
        println!();
        worst.unwrap_or(0.0)
    };
    let ratios: Vec<(Flood, f64)> = Flood::ALL
        .iter()
        .map(|flood| (*flood, worst(*flood)))
        .collect();
    for (flood, goal) in [(Flood::ALL[0], 0.9), (Flood::ALL[2], 0.8)] {
        let worst = ratios
            .iter()
            .find(|(candidate, _)| *candidate == flood)
            .map_or(0.0, |(_, ratio)| *ratio);
        println!(
            "goal: {} flood with flow tracking on >= {goal}x of --no-flows at every CPU count: \
             {} (worst {worst:.2}x)",
            flood.name(),
            if worst >= goal { "met" } else { "NOT met" }
        );
    }
    Ok(())
}

/// A 64-byte UDP/IPv4 frame of `flood`, to a MAC that is not the receiver's.
fn frame(flood: Flood) -> Vec<u8> {
    netxdp::flood::frame(if flood.dropped {
        DROP_PORT
    } else {
        DROP_PORT + 1
    })
}

/// Runs `generator` on `cpus` CPUs at once, each sending [`FRAMES_PER_CPU`] live frames from
/// the sending end: frames per second, in millions.
pub fn run_once(
    generator: BorrowedFd<'_>,
    frame: &[u8],
    sender_ifindex: u32,
    cpus: usize,
) -> Result<f64> {
    let start = Barrier::new(cpus + 1);
    let elapsed = thread::scope(|scope| -> Result<f64> {
        let threads: Vec<_> = (0..cpus)
            .map(|cpu| {
                let start = &start;
                scope.spawn(move || -> Result<()> {
                    let mut one = CpuSet::new();
                    one.set(cpu)?;
                    sched_setaffinity(Pid::from_raw(0), &one)?;
                    start.wait();
                    let sent = live_frames(generator, frame, sender_ifindex, FRAMES_PER_CPU);
                    if sent.is_err() {
                        check_interrupted()?;
                    }
                    sent.context("live frames")
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        for thread in threads {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
        }
        Ok(began.elapsed().as_secs_f64())
    })?;
    Ok(f64::from(FRAMES_PER_CPU) * cpus as f64 / elapsed / 1e6)
}

/// The veth pair, in the root namespace, with a queue per CPU; removed on drop.
pub(crate) struct FloodPair {
    pub(crate) sender: IfaceName,
    pub(crate) receiver: IfaceName,
}

impl FloodPair {
    /// The pair `nxfl<pid><tag>s` / `nxfl<pid><tag>r`.
    pub(crate) fn create(cpus: usize, tag: char) -> Result<Self> {
        let pid = std::process::id() % 100_000;
        let pair = FloodPair {
            sender: IfaceName::new(format!("nxfl{pid}{tag}s"))?,
            receiver: IfaceName::new(format!("nxfl{pid}{tag}r"))?,
        };
        let queues = cpus.to_string();
        ip(&[
            "link",
            "add",
            pair.sender.as_str(),
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
            "type",
            "veth",
            "peer",
            "name",
            pair.receiver.as_str(),
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
        ])?;
        for end in [&pair.sender, &pair.receiver] {
            // No link-local address: nothing of the host's own on the wire.
            ip(&["link", "set", "dev", end.as_str(), "addrgenmode", "none"])?;
            ip(&["link", "set", "dev", end.as_str(), "up"])?;
        }
        Ok(pair)
    }
}

impl Drop for FloodPair {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", self.sender.as_str()]);
    }
}

/// `netxdp attach IFACE --mode native FLAGS` with the rule that drops [`DROP_PORT`];
/// detached when the guard drops.
fn attach_dropping(iface: &IfaceName, flags: &[&str]) -> Result<Detach> {
    netxdp(&[&["attach", iface.as_str(), "--mode", "native"], flags].concat())?;
    let attached = Detach(iface.to_string());
    let port = DROP_PORT.to_string();
    netxdp(&[
        "rule",
        "add",
        iface.as_str(),
        "--action",
        "drop",
        "--proto",
        "udp",
        "--dport",
        &port,
    ])?;
    Ok(attached)
}
