//! What capture costs: the data path with no capture running beside the program built without
//! capture (must be equal within noise), and with a capture of every packet running, its
//! ring drained by a reader or left full, with a five-term expression that matches or not,
//! and with one whose lease ran out (its reader dead); then the sustained rate of `netxdp
//! capture` writing a file while frames arrive on a veth pair.

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use std::os::fd::AsFd as _;

use aya::maps::{Array, Map, MapData, PerCpuArray, RingBuf};
use net_common::{
    capture::{CaptureConfig, CaptureCounters, MAX_SNAPLEN},
    names,
    rule::XDP_PASS,
    testing::FrameSpec,
};
use netxdp::{capture::expression::Expression, program, traffic};

use super::{Prog, ROUNDS, measure, median};
use crate::userspace::{NETXDP, attached_veth};

/// The subnet of the capture-rate veth pair (the peer uses 213, the userspace bench 214).
const SUBNET: u8 = 215;

/// Five terms the bench frame (UDP from 198.18.0.2 to port 53, 64 bytes) passes, and the
/// same with a last term it fails: either way the whole expression runs.
pub const MATCHING: &str = "ip and udp and dst port 53 and src host 198.18.0.2 and len <= 128";
pub const NOT_MATCHING: &str = "ip and udp and dst port 53 and src host 198.18.0.2 and len > 128";

/// Per-packet costs of one 64-byte UDP/IPv4 frame, median of [`ROUNDS`].
pub struct PathCosts {
    pub floor: Duration,
    /// The program built without capture: as before capture existed.
    pub without_capture: Duration,
    /// Capture built in, none running.
    pub idle: Duration,
    /// A capture of every packet running, a reader thread draining the ring.
    pub drained: Duration,
    /// Of the packets of the drained runs: copied, and lost to a full ring.
    pub drained_copied: u64,
    pub drained_lost: u64,
    /// A capture of every packet matching [`MATCHING`], ring drained.
    pub expression_matches: Duration,
    /// A capture of every packet matching [`NOT_MATCHING`]: none copied.
    pub expression_misses: Duration,
    /// A capture of every packet running, the ring full (a stalled reader).
    pub ring_full: Duration,
    /// A capture of every packet whose lease ran out (its reader died).
    pub expired: Duration,
}

pub fn path_costs(floor: &Prog, repeat: u32) -> Result<PathCosts> {
    let frame = FrameSpec::ipv4_udp(5353, 53, 22).build();
    let flows_off = program::Options {
        flows: program::Flows::Off,
        ..Default::default()
    };
    let before = program::load(
        None,
        program::Options {
            capture: false,
            ..flows_off
        },
    )?;
    let mut with = program::load(None, flows_off)?;
    let mut config: Array<MapData, CaptureConfig> = Array::try_from(
        with.take_map(names::CAPTURE_MAP)
            .context("no CAPTURE map")?,
    )?;
    let stats: PerCpuArray<MapData, CaptureCounters> = PerCpuArray::try_from(
        with.take_map(names::CAPTURE_STATS_MAP)
            .context("no CAPTURE_STATS map")?,
    )?;
    let ring = RingBuf::try_from(
        with.take_map(names::CAPTURE_RING_MAP)
            .context("no CAPTURE_RING map")?,
    )?;
    let data = |map: Option<Map>| match map {
        Some(Map::ProgramArray(data) | Map::PerCpuArray(data)) => Ok(data),
        _ => anyhow::bail!("no CAPTURE_PROGS or DECISION map"),
    };
    let programs = data(with.take_map(names::CAPTURE_PROGRAMS_MAP))?;
    let decision = data(with.take_map(names::DECISION_MAP))?;
    let before_prog = Prog::of(&before, names::PROGRAM)?;
    let with_prog = Prog::of(&with, names::PROGRAM)?;

    let (mut floor_ns, mut before_ns, mut idle_ns) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        floor_ns.push(measure(floor, &frame, repeat, XDP_PASS)?);
        before_ns.push(measure(&before_prog, &frame, repeat, XDP_PASS)?);
        idle_ns.push(measure(&with_prog, &frame, repeat, XDP_PASS)?);
    }

    let all = CaptureConfig {
        active: 1,
        actions: u32::MAX,
        rule_id: 0,
        reasons: u32::MAX,
        snaplen: MAX_SNAPLEN,
        sample: 1,
        owner_pid: std::process::id(),
        filtered: 0,
        // A lease that outlasts the bench.
        expires_ns: u64::MAX,
    };
    config.set(0, all, 0)?;
    let totals =
        || -> Result<CaptureCounters> { Ok(CaptureCounters::total(stats.get(&0, 0)?.iter())) };
    // A reader on the other CPU, taking records as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let taken = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, taken) = (Arc::clone(&stop), Arc::clone(&taken));
        thread::spawn(move || {
            let mut ring = ring;
            while !stop.load(Ordering::Relaxed) {
                while ring.next().is_some() {
                    taken.fetch_add(1, Ordering::Relaxed);
                }
                std::hint::spin_loop();
            }
            ring
        })
    };
    let start = totals()?;
    let mut drained_ns = Vec::new();
    for _ in 0..ROUNDS {
        drained_ns.push(measure(&with_prog, &frame, repeat, XDP_PASS)?);
    }
    let drained = totals()?;
    let mut expression_ns = [Vec::new(), Vec::new()];
    for (text, rounds) in [MATCHING, NOT_MATCHING].iter().zip(&mut expression_ns) {
        Expression::compile(text, MAX_SNAPLEN)?
            .install(programs.fd().as_fd(), decision.fd().as_fd())?;
        config.set(0, CaptureConfig { filtered: 1, ..all }, 0)?;
        for _ in 0..ROUNDS {
            rounds.push(measure(&with_prog, &frame, repeat, XDP_PASS)?);
        }
    }
    let filtered = totals()?;
    let runs = u64::from(repeat) * ROUNDS as u64;
    ensure!(
        filtered.selected - drained.selected == runs,
        "the matching expression should have selected every packet, and the other none"
    );
    config.set(0, all, 0)?;
    stop.store(true, Ordering::Relaxed);
    let ring = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the ring reader panicked"))?;
    let after_reader = totals()?;
    // The reader is gone: the first runs fill the ring, the rest find it full.
    let mut full_ns = Vec::new();
    for _ in 0..ROUNDS {
        full_ns.push(measure(&with_prog, &frame, repeat, XDP_PASS)?);
    }
    let full = totals()?;
    drop(ring);
    // Its reader dead: the lease ran out a moment ago.
    config.set(
        0,
        CaptureConfig {
            expires_ns: netxdp::clock::monotonic_ns(),
            ..all
        },
        0,
    )?;
    let mut expired_ns = Vec::new();
    for _ in 0..ROUNDS {
        expired_ns.push(measure(&with_prog, &frame, repeat, XDP_PASS)?);
    }
    ensure!(
        totals()?.selected == full.selected,
        "a capture whose lease ran out selected packets"
    );
    ensure!(
        full.lost - after_reader.lost >= u64::from(repeat) * (ROUNDS as u64 - 1),
        "the ring should have been full for all but the first round"
    );
    Ok(PathCosts {
        floor: median(floor_ns),
        without_capture: median(before_ns),
        idle: median(idle_ns),
        drained: median(drained_ns),
        drained_copied: drained.captured - start.captured,
        drained_lost: drained.lost - start.lost,
        expression_matches: median(std::mem::take(&mut expression_ns[0])),
        expression_misses: median(std::mem::take(&mut expression_ns[1])),
        ring_full: median(full_ns),
        expired: median(expired_ns),
    })
}

/// What `netxdp capture --action all` kept up with on a veth pair.
pub struct Rate {
    pub frame_bytes: usize,
    pub sent: usize,
    pub seconds: f64,
    pub written: u64,
    pub lost: u64,
    pub file_bytes: u64,
}

/// Sends `count` frames of each size from the namespace while `netxdp capture` writes them to
/// a file, then stops it and reads its summary.
pub fn capture_rates(count: usize) -> Result<Vec<Rate>> {
    let (net, iface, _detach) = attached_veth("cb", SUBNET, &["--no-flows"])?;
    let file = std::env::temp_dir().join(format!("netxdp-bench-{}.pcapng", std::process::id()));
    let mut rates = Vec::new();
    for payload in [22, 1_458] {
        let frames: Vec<Vec<u8>> = (0..count)
            .map(|i| FrameSpec::ipv4_udp(i as u16, 9, payload).build())
            .collect();
        let frame_bytes = frames[0].len();
        let capture = Command::new(NETXDP)
            .args(["capture", &iface, "--action", "all", "-w"])
            .arg(&file)
            .stderr(Stdio::piped())
            .spawn()?;
        // Give it time to open the ring and write the file header.
        thread::sleep(Duration::from_millis(300));
        let peer = net.peer_if().to_owned();
        let started = Instant::now();
        let sent = net.run_in_namespace(move || traffic::send_frames(&peer, &frames));
        let seconds = started.elapsed().as_secs_f64();
        thread::sleep(Duration::from_millis(300));
        // Stopped whatever happened to the sending: it must not outlive the bench.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(capture.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let output = capture.wait_with_output()?;
        sent.context("sending the frames")?;
        ensure!(output.status.success(), "netxdp capture failed");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let count_of = |what: &str| -> Result<u64> {
            stderr
                .lines()
                .find(|line| line.contains(what))
                .and_then(|line| line.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("no {what:?} in capture's summary: {stderr}"))
        };
        rates.push(Rate {
            frame_bytes,
            sent: count,
            seconds,
            written: count_of("captured")?,
            lost: count_of("dropped by kernel")?,
            file_bytes: std::fs::metadata(&file).map_or(0, |meta| meta.len()),
        });
    }
    let _ = std::fs::remove_file(&file);
    Ok(rates)
}
