//! SYN-flood absorption: SYNs a second answered under a flood of the kernel's generator on
//! every CPU (one source, its TCP checksum right), by the stack with its own cookies and by
//! the guard from XDP, in turns, same run; and what the guard's program costs per SYN.

use std::{net::TcpListener, time::Duration};

use anyhow::{Context as _, Result};
use net_common::{
    checksum::internet_checksum,
    names,
    rule::XDP_PASS,
    testing::{Body, FrameSpec, Transport},
};
use netxdp::{
    flood::Generators, iface::IfaceName, netns::ip, pins::PinDir, program, synguard::SynGuardMaps,
};

use crate::{
    Prog, check_interrupted,
    flood::{self, FloodPair},
    measure, median, thousands,
    userspace::{Detach, netxdp},
};

/// Single test runs of the guard, of which the median is shown.
const SINGLE_RUNS: usize = 2_001;

const PORT: u16 = 8443;
/// The receiver's address, and the source of the unspoofed flood.
const RECEIVER: [u8; 4] = [198, 18, 218, 1];
const SENDER: [u8; 4] = [198, 18, 218, 2];
const SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";

/// `net.ipv4.tcp_syncookies` at 2 for the bench, put back after.
struct Syncookies(String);

impl Drop for Syncookies {
    fn drop(&mut self) {
        let _ = std::fs::write(SYNCOOKIES, self.0.trim());
    }
}

fn mac_of(iface: &IfaceName) -> Result<[u8; 6]> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|byte| u8::from_str_radix(byte, 16))
        .collect::<Result<_, _>>()?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{path}: not a MAC"))
}

/// A SYN from [`SENDER`] to [`RECEIVER`]:[`PORT`], its TCP checksum right.
fn syn(to: [u8; 6], from: [u8; 6]) -> Vec<u8> {
    let mut frame = FrameSpec {
        vlans: Vec::new(),
        body: Body::Ipv4 {
            src: SENDER,
            dst: RECEIVER,
            fragment: 0,
            option_words: 0,
            transport: Transport::Tcp {
                sport: 40_000,
                dport: PORT,
                flags: 0x02,
                payload: 0,
            },
        },
    }
    .build();
    frame[..6].copy_from_slice(&to);
    frame[6..12].copy_from_slice(&from);
    let tcp = &frame[34..];
    let mut pseudo = Vec::with_capacity(12 + tcp.len());
    pseudo.extend_from_slice(&SENDER);
    pseudo.extend_from_slice(&RECEIVER);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(tcp);
    pseudo[12 + 16..12 + 18].copy_from_slice(&[0, 0]);
    let sum = internet_checksum(&pseudo);
    frame[34 + 16..34 + 18].copy_from_slice(&sum.to_be_bytes());
    frame
}

/// The stack's count of SYN cookies it sent.
fn stack_cookies() -> Result<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat")?;
    let mut lines = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (
        lines.next().context("TcpExt names")?,
        lines.next().context("TcpExt values")?,
    );
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "SyncookiesSent")
        .and_then(|(_, value)| value.parse().ok())
        .context("no SyncookiesSent in /proc/net/netstat")
}

pub fn print() -> Result<()> {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let cpus = usize::try_from(online)
        .ok()
        .filter(|n| *n > 0)
        .context("counting the online CPUs")?;
    let was = std::fs::read_to_string(SYNCOOKIES).context("reading tcp_syncookies")?;
    let _syncookies = Syncookies(was);
    std::fs::write(SYNCOOKIES, "2").context("setting tcp_syncookies to 2")?;
    let pair = FloodPair::create(cpus, 'y')?;
    let receiver = pair.receiver.as_str();
    let [a, b, c, d] = RECEIVER;
    ip(&[
        "addr",
        "add",
        &format!("{a}.{b}.{c}.{d}/24"),
        "dev",
        receiver,
    ])?;
    let sender_mac = mac_of(&pair.sender)?;
    let [a, b, c, d] = SENDER;
    let mac_text: Vec<String> = sender_mac
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    ip(&[
        "neigh",
        "replace",
        &format!("{a}.{b}.{c}.{d}"),
        "lladdr",
        &mac_text.join(":"),
        "dev",
        receiver,
        "nud",
        "permanent",
    ])?;
    let [a, b, c, d] = RECEIVER;
    let _listener = TcpListener::bind((format!("{a}.{b}.{c}.{d}"), PORT))
        .context("listening on the guarded port")?;
    netxdp(&["attach", receiver, "--mode", "native", "--no-flows"])?;
    let _attached = Detach(receiver.to_owned());
    let frame = syn(mac_of(&pair.receiver)?, sender_mac);
    const XDP_TX: u32 = 3;
    let mut generators = Generators::load()?;
    let sender = netxdp::preflight::ifindex(&pair.sender)?;
    let sent = u64::from(flood::FRAMES_PER_CPU) * cpus as u64;
    let guard = SynGuardMaps::read_pins(&PinDir::new(&pair.receiver))?;
    let guard_cookies = || -> Result<u64> { Ok(guard.counters()?.cookies) };
    let port = PORT.to_string();
    // In turns, the stack first in even rounds and the guard first in odd ones; the generator
    // writes the SYN into every copy, as the guard turns the pages it is sent into SYN-ACKs.
    let (mut stack_rates, mut guard_rates) = (Vec::new(), Vec::new());
    for round in 0..flood::RUNS {
        for turn in 0..2 {
            check_interrupted()?;
            let guarded = (round + turn) % 2 == 1;
            if guarded {
                netxdp(&["synguard", receiver, "--ports", &port])?;
            } else {
                netxdp(&["synguard", receiver, "off"])?;
            }
            let answered: &dyn Fn() -> Result<u64> = if guarded {
                &guard_cookies
            } else {
                &stack_cookies
            };
            let before = answered()?;
            let generator = generators.rewriting(&frame)?;
            let mpps = flood::run_once(generator, &frame, sender, cpus)?;
            // Answers can trail the last frame sent: the softirq may still be at work.
            std::thread::sleep(Duration::from_millis(50));
            let seconds = sent as f64 / (mpps * 1e6);
            let rate = (answered()? - before) as f64 / seconds / 1e6;
            if guarded {
                &mut guard_rates
            } else {
                &mut stack_rates
            }
            .push(rate);
        }
    }
    netxdp(&["synguard", receiver, "off"])?;
    let stack = flood::median(&mut stack_rates);
    let guarded = flood::median(&mut guard_rates);

    // The guard, per SYN, through BPF_PROG_TEST_RUN: one run at a time, since the run turns
    // its frame into the SYN-ACK. A listener on every address: the test run's device is this
    // namespace's loopback.
    let _any = TcpListener::bind(("0.0.0.0", PORT + 1)).context("listening for the test run")?;
    let flows_off = program::Options {
        flows: program::Flows::Off,
        ..Default::default()
    };
    let mut ebpf = program::load(None, flows_off)?;
    SynGuardMaps::take_from(&mut ebpf)?.set(&[PORT + 1])?;
    let netxdp_prog = Prog::of(&ebpf, names::PROGRAM)?;
    let mut test_frame = frame.clone();
    test_frame[34 + 2..34 + 4].copy_from_slice(&(PORT + 1).to_be_bytes());
    let (mut guard_ns, mut pass_ns) = (Vec::new(), Vec::new());
    for _ in 0..SINGLE_RUNS {
        guard_ns.push(measure(&netxdp_prog, &test_frame, 1, XDP_TX)?);
        pass_ns.push(measure(&netxdp_prog, &frame, 1, XDP_PASS)?);
    }
    let (guard_ns, pass_ns) = (median(guard_ns).as_nanos(), median(pass_ns).as_nanos());
    println!(
        "SYN-flood absorption: SYNs answered under {} SYNs per run from the kernel's generator \
         on {cpus} CPUs (tcp_syncookies=2, median of {} runs, in turns), and the guard's cost \
         per SYN (median of {} single test runs):",
        thousands(sent as usize),
        flood::RUNS,
        thousands(SINGLE_RUNS)
    );
    println!(
        "  the stack's own cookies, no guard        {stack:>6.2} Mpps answered on {cpus} CPUs"
    );
    println!(
        "  netxdp synguard (cookies from XDP_TX)    {guarded:>6.2} Mpps answered on {cpus} CPUs, \
         {:.1}x the stack's",
        guarded / stack
    );
    println!(
        "  netxdp synguard, one SYN answered        {guard_ns:>6} ns, {:.1} Mpps a CPU",
        1e3 / guard_ns.max(1) as f64
    );
    println!("  the same SYN passed to the stack         {pass_ns:>6} ns (a port not guarded)");
    Ok(())
}
