//! What the capture tests share (`tests/capture.rs`, `tests/capture_ends.rs`): a running
//! `netxdp capture`, frames with their index in their payload, the capture counters, and
//! pcapng files read back.
#![allow(dead_code)] // Each capture test binary uses its own part of this module.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, ExitStatus, Stdio},
    time::Duration,
};

use net_common::testing::FrameSpec;
use netxdp::{capture::Counters, netns::VethNet, traffic};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use pcap_file::pcapng::{
    Block, PcapNgReader,
    blocks::{
        enhanced_packet::EnhancedPacketOption, interface_description::InterfaceDescriptionOption,
        interface_statistics::InterfaceStatisticsOption,
    },
};

use crate::support::eventually;

/// `netxdp capture ARGS`, running, once it said it captures.
pub struct Capturing {
    pub child: Child,
    pub stderr: BufReader<ChildStderr>,
    /// What it said before that.
    pub preamble: String,
}

impl Capturing {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(args, Stdio::null())
    }

    pub fn start_with(args: &[&str], stdout: Stdio) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_netxdp"));
        command.arg("capture").args(args).stdout(stdout);
        Self::spawn(command)
    }

    /// `command`, a capture however it is run, once it said it captures.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .expect("run netxdp capture");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut preamble = String::new();
        loop {
            let mut line = String::new();
            let read = stderr.read_line(&mut line).expect("read stderr");
            assert!(read > 0, "capture did not start: {preamble}");
            if line.starts_with("netxdp: capturing") {
                break;
            }
            preamble.push_str(&line);
        }
        Self {
            child,
            stderr,
            preamble,
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal capture");
    }

    /// Waits (patiently) for the capture to end: its status and the rest of its stderr.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let status = eventually(|| self.child.try_wait().expect("wait"), Option::is_some)
            .expect("capture did not end");
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).expect("stderr");
        (status, rest)
    }
}

impl Drop for Capturing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number in the summary line that ends with `what` ("captured", "selected by the filter").
pub fn summary(stderr: &str, what: &str) -> u64 {
    stderr
        .lines()
        .find(|line| line.contains(what))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no {what:?} line in {stderr}"))
}

/// UDP frames from the peer to `dport`, each with its index in the last four payload bytes.
pub fn frames(count: usize, dport: u16, payload: usize, first: u32) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut frame = FrameSpec::ipv4_udp(20_000 + i as u16, dport, payload).build();
            let len = frame.len();
            frame[len - 4..].copy_from_slice(&(first + i as u32).to_be_bytes());
            frame
        })
        .collect()
}

/// Packets the XDP program on `iface` has given a verdict, since attach.
pub fn classified(iface: &str) -> u64 {
    netxdp::counters::CounterMap::from_pin(&crate::support::pins(iface))
        .and_then(|counters| counters.read())
        .expect("read the counters")
        .total()
        .packets
}

/// The capture counters of `iface` (selected, captured, lost), since attach.
pub fn capture_counters(iface: &str) -> Counters {
    netxdp::capture::CounterMap::from_pin(&crate::support::pins(iface))
        .and_then(|counters| counters.read())
        .expect("read the capture counters")
}

/// Waits until the program on `iface` selected `selected` packets more than `before` and
/// has put the `copied` of them that sampling chose in the ring, or counted them lost: the
/// last thing it does with a packet. A capture stopped then finds them all.
pub fn await_copied(iface: &str, before: Counters, selected: u64, copied: u64) {
    let delta = |now: &Counters| {
        (
            now.selected - before.selected,
            now.captured + now.lost - before.captured - before.lost,
        )
    };
    let now = eventually(
        || capture_counters(iface),
        |now| delta(now) == (selected, copied),
    );
    assert_eq!(delta(&now), (selected, copied), "selected, copied: {now:?}");
}

/// Sends `frames` raw from the namespace, from one CPU (so that per-CPU sampling sees them
/// all), and waits until the program on the host end gave every one a verdict: the kernel
/// may run it a moment after the send returned.
pub fn send(net: &VethNet, frames: Vec<Vec<u8>>) {
    let (peer, iface) = (net.peer_if().to_owned(), net.host_if());
    let (before, count) = (classified(iface), frames.len() as u64);
    net.run_in_namespace(move || {
        let mut one_cpu = CpuSet::new();
        one_cpu.set(0).map_err(std::io::Error::from)?;
        sched_setaffinity(Pid::from_raw(0), &one_cpu).map_err(std::io::Error::from)?;
        traffic::send_frames(&peer, &frames)
    })
    .expect("send frames");
    let after = eventually(|| classified(iface), |now| now - before >= count);
    assert!(
        after - before >= count,
        "{} of {count} frames",
        after - before
    );
}

pub fn rule_id(text: &str) -> String {
    let id = text.trim().to_owned();
    assert!(id.parse::<u32>().is_ok(), "rule add printed {text:?}");
    id
}

/// A file in the temporary directory, removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("netxdp-{}-{name}", std::process::id())))
    }

    pub fn arg(&self) -> &str {
        self.0.to_str().expect("UTF-8 path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a pcapng file holds: the interfaces' names and time resolutions, each packet's
/// (original length, bytes, comment, timestamp) and interface id, and the statistics blocks'
/// options (by interface id).
pub struct PcapNg {
    pub if_names: Vec<String>,
    pub ts_resolutions: Vec<u8>,
    /// The interfaces' if_filter options, as written (type byte first).
    pub if_filters: Vec<Vec<u8>>,
    pub packets: Vec<(u32, Vec<u8>, String, Duration)>,
    pub interface_ids: Vec<u32>,
    pub statistics: Vec<Vec<InterfaceStatisticsOption<'static>>>,
}

pub fn read_pcapng(path: &Path) -> PcapNg {
    let file = std::fs::File::open(path).expect("open capture");
    let mut reader = PcapNgReader::new(file).expect("a pcapng section header");
    let mut read = PcapNg {
        if_names: Vec::new(),
        ts_resolutions: Vec::new(),
        if_filters: Vec::new(),
        packets: Vec::new(),
        interface_ids: Vec::new(),
        statistics: Vec::new(),
    };
    while let Some(block) = reader.next_block() {
        match block.expect("a whole block") {
            Block::InterfaceDescription(interface) => {
                for option in interface.options {
                    match option {
                        InterfaceDescriptionOption::IfName(name) => {
                            read.if_names.push(name.into_owned())
                        }
                        InterfaceDescriptionOption::IfTsResol(resolution) => {
                            read.ts_resolutions.push(resolution)
                        }
                        InterfaceDescriptionOption::IfFilter(filter) => {
                            read.if_filters.push(filter.into_owned())
                        }
                        _ => {}
                    }
                }
            }
            Block::EnhancedPacket(packet) => {
                let comment = packet
                    .options
                    .iter()
                    .find_map(|option| match option {
                        EnhancedPacketOption::Comment(text) => Some(text.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default();
                read.interface_ids.push(packet.interface_id);
                read.packets.push((
                    packet.original_len,
                    packet.data.into_owned(),
                    comment,
                    packet.timestamp,
                ));
            }
            Block::InterfaceStatistics(statistics) => {
                assert_eq!(statistics.interface_id as usize, read.statistics.len());
                read.statistics.push(
                    statistics
                        .options
                        .into_iter()
                        .map(|option| option.into_owned())
                        .collect(),
                )
            }
            _ => {}
        }
    }
    read
}

/// `tool ARGS FILE`'s stdout; the tool must be there under CI (setup installs it).
pub fn read_with(tool: &str, args: &[&str], file: &str) -> Option<String> {
    match Command::new(tool).args(args).arg(file).output() {
        Ok(output) => {
            assert!(
                output.status.success(),
                "{tool} could not read {file}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Some(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Err(error) => {
            assert!(
                std::env::var("CI").is_err(),
                "{tool} is missing under CI ({error}): `cargo xtask setup` installs it"
            );
            eprintln!("SKIPPED reading with {tool}: {error}");
            None
        }
    }
}
