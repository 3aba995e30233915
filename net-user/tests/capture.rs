//! `netxdp capture` end to end: known frames sent from a namespace through a veth pair, the
//! real binary capturing on the host end, and the file read back byte for byte, by
//! pcap-file, tcpdump and tshark.

mod support;

use std::{
    fs::Permissions,
    io::{BufRead as _, BufReader, Read as _},
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, ExitStatus, Stdio},
    time::{Duration, SystemTime},
};

use net_common::testing::{Body, FrameSpec, cut_datagram};
use netxdp::{capture::Counters, netns::VethNet, traffic};
use nix::{
    sched::{CpuSet, sched_setaffinity},
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use pcap_file::{
    pcap::PcapReader,
    pcapng::{
        Block, PcapNgReader,
        blocks::{
            enhanced_packet::EnhancedPacketOption,
            interface_description::InterfaceDescriptionOption,
            interface_statistics::InterfaceStatisticsOption,
        },
    },
};
use support::{attached_veth, eventually, fails, kernel_available, ok};

/// `netxdp capture ARGS`, running, once it said it captures.
struct Capturing {
    child: Child,
    stderr: BufReader<ChildStderr>,
    /// What it said before that.
    preamble: String,
}

impl Capturing {
    fn start(args: &[&str]) -> Self {
        Self::start_with(args, Stdio::null())
    }

    fn start_with(args: &[&str], stdout: Stdio) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_netxdp"));
        command.arg("capture").args(args).stdout(stdout);
        Self::spawn(command)
    }

    /// `command`, a capture however it is run, once it said it captures.
    fn spawn(mut command: Command) -> Self {
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

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal capture");
    }

    /// Waits (patiently) for the capture to end: its status and the rest of its stderr.
    fn finish(mut self) -> (ExitStatus, String) {
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
fn summary(stderr: &str, what: &str) -> u64 {
    stderr
        .lines()
        .find(|line| line.contains(what))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no {what:?} line in {stderr}"))
}

/// UDP frames from the peer to `dport`, each with its index in the last four payload bytes.
fn frames(count: usize, dport: u16, payload: usize, first: u32) -> Vec<Vec<u8>> {
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
fn classified(iface: &str) -> u64 {
    netxdp::counters::CounterMap::from_pin(&support::pins(iface))
        .and_then(|counters| counters.read())
        .expect("read the counters")
        .total()
        .packets
}

/// The capture counters of `iface` (selected, captured, lost), since attach.
fn capture_counters(iface: &str) -> Counters {
    netxdp::capture::CounterMap::from_pin(&support::pins(iface))
        .and_then(|counters| counters.read())
        .expect("read the capture counters")
}

/// Waits until the program on `iface` selected `selected` packets more than `before` and
/// has put the `copied` of them that sampling chose in the ring, or counted them lost: the
/// last thing it does with a packet. A capture stopped then finds them all.
fn await_copied(iface: &str, before: Counters, selected: u64, copied: u64) {
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
fn send(net: &VethNet, frames: Vec<Vec<u8>>) {
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

fn rule_id(text: &str) -> String {
    let id = text.trim().to_owned();
    assert!(id.parse::<u32>().is_ok(), "rule add printed {text:?}");
    id
}

/// A file in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("netxdp-{}-{name}", std::process::id())))
    }

    fn arg(&self) -> &str {
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
struct PcapNg {
    if_names: Vec<String>,
    ts_resolutions: Vec<u8>,
    packets: Vec<(u32, Vec<u8>, String, Duration)>,
    interface_ids: Vec<u32>,
    statistics: Vec<Vec<InterfaceStatisticsOption<'static>>>,
}

fn read_pcapng(path: &Path) -> PcapNg {
    let file = std::fs::File::open(path).expect("open capture");
    let mut reader = PcapNgReader::new(file).expect("a pcapng section header");
    let mut read = PcapNg {
        if_names: Vec::new(),
        ts_resolutions: Vec::new(),
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
fn read_with(tool: &str, args: &[&str], file: &str) -> Option<String> {
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

#[test]
fn capture_of_drops_holds_exactly_the_dropped_packets_byte_for_byte() {
    let test = "capture_of_drops_holds_exactly_the_dropped_packets_byte_for_byte";
    if !kernel_available(test) {
        return;
    }
    let (net, iface, _detach) = attached_veth("cap", 26);
    let id = rule_id(&ok(&[
        "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "9",
    ]));
    let file = TempFile::new("drops.pcapng");
    let before = SystemTime::now();
    let capture = Capturing::start(&[&iface, "--action", "drop", "-w", file.arg(), "-c", "10"]);
    // Interleaved: even frames to port 9 (dropped), odd ones to port 10 (passed).
    let all: Vec<Vec<u8>> = frames(10, 9, 40, 0)
        .into_iter()
        .zip(frames(10, 10, 40, 100))
        .flat_map(|(dropped, passed)| [dropped, passed])
        .collect();
    let dropped: Vec<Vec<u8>> = all.iter().step_by(2).cloned().collect();
    send(&net, all);
    let (status, stderr) = capture.finish();
    let after = SystemTime::now();
    assert!(status.success(), "capture failed: {stderr}");
    assert_eq!(summary(&stderr, "captured"), 10, "{stderr}");
    assert_eq!(summary(&stderr, "selected by the filter"), 10, "{stderr}");
    assert_eq!(summary(&stderr, "dropped by kernel"), 0, "{stderr}");

    let read = read_pcapng(&file.0);
    assert_eq!(read.if_names, [iface.as_str()]);
    assert_eq!(read.ts_resolutions, [9], "nanosecond timestamps");
    assert_eq!(read.packets.len(), 10);
    let window = |at: SystemTime| at.duration_since(SystemTime::UNIX_EPOCH).expect("epoch");
    for ((original_len, data, comment, timestamp), sent) in read.packets.iter().zip(&dropped) {
        assert_eq!(data, sent, "byte for byte");
        assert_eq!(*original_len as usize, sent.len());
        assert_eq!(comment, &format!("netxdp: drop by rule {id}"));
        assert!(
            (window(before)..=window(after)).contains(timestamp),
            "timestamp {timestamp:?} outside the test's run"
        );
    }
    assert!(
        read.statistics[0].contains(&InterfaceStatisticsOption::IsbFilterAccept(10)),
        "{:?}",
        read.statistics
    );

    if let Some(text) = read_with("tcpdump", &["-nn", "-r"], file.arg()) {
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10, "{text}");
        assert!(lines.iter().all(|line| line.contains(".9: UDP")), "{text}");
    }
    let fields = [
        "-T",
        "fields",
        "-e",
        "frame.comment",
        "-e",
        "udp.dstport",
        "-r",
    ];
    if let Some(text) = read_with("tshark", &fields, file.arg()) {
        let expected = format!("netxdp: drop by rule {id}\t9");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10, "{text}");
        assert!(lines.iter().all(|line| *line == expected), "{text}");
    }
}

#[test]
fn capture_by_reason_holds_exactly_the_defective_packets_and_names_their_defect() {
    let test = "capture_by_reason_holds_exactly_the_defective_packets_and_names_their_defect";
    if !kernel_available(test) {
        return;
    }
    let (net, iface, _detach) = attached_veth("crsn", 36);
    ok(&[
        "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "9",
    ]);
    let fragment = |index: u16, flags_and_offset: u16| {
        let mut spec = FrameSpec::ipv4_udp(30_000 + index, 9, 40);
        if let Body::Ipv4 { fragment, .. } = &mut spec.body {
            *fragment = flags_and_offset;
        }
        spec.build()
    };
    // A first fragment with 4 bytes of the UDP header (tiny), and one at offset 1.
    let tiny: Vec<Vec<u8>> = (0..3)
        .map(|i| cut_datagram(&fragment(i, 0x2000), 4).expect("an IPv4 frame"))
        .collect();
    let overlapping: Vec<Vec<u8>> = (0..3).map(|i| fragment(10 + i, 1)).collect();
    let file = TempFile::new("reasons.pcapng");
    let capture = Capturing::start(&[
        &iface,
        "--reason",
        "tiny-fragment,overlap-fragment",
        "-w",
        file.arg(),
        "-c",
        "6",
    ]);
    // Between them, frames the rule drops and frames the policy passes: not selected.
    let mut all = Vec::new();
    for ((tiny, overlapping), (dropped, passed)) in tiny
        .iter()
        .zip(&overlapping)
        .zip(frames(3, 9, 40, 0).into_iter().zip(frames(3, 10, 40, 100)))
    {
        all.extend([dropped, tiny.clone(), passed, overlapping.clone()]);
    }
    send(&net, all);
    let (status, stderr) = capture.finish();
    assert!(status.success(), "capture failed: {stderr}");
    assert_eq!(summary(&stderr, "captured"), 6, "{stderr}");

    let read = read_pcapng(&file.0);
    let expected = tiny.iter().zip(&overlapping).flat_map(|(t, o)| {
        [
            (t, "netxdp: drop as defective: tiny_fragment"),
            (o, "netxdp: drop as defective: overlap_fragment"),
        ]
    });
    assert_eq!(read.packets.len(), 6);
    for ((_, data, comment, _), (sent, why)) in read.packets.iter().zip(expected) {
        assert_eq!(data, sent, "byte for byte");
        assert_eq!(comment, why);
    }
    let stats: serde_json::Value =
        serde_json::from_str(ok(&["stats", &iface, "--json", "--count", "1"]).trim())
            .expect("stats JSON");
    assert_eq!(stats["dropped"]["tiny_fragment"]["packets"], 3, "{stats}");
    assert_eq!(
        stats["dropped"]["overlap_fragment"]["packets"], 3,
        "{stats}"
    );
}

#[test]
fn capture_of_two_interfaces_gives_each_its_interface_block() {
    let test = "capture_of_two_interfaces_gives_each_its_interface_block";
    if !kernel_available(test) {
        return;
    }
    let (first, first_iface, _first_detach) = attached_veth("cab", 32);
    let (second, second_iface, _second_detach) = attached_veth("cac", 33);
    for iface in [&first_iface, &second_iface] {
        ok(&[
            "rule", "add", iface, "--action", "drop", "--proto", "udp", "--dport", "9",
        ]);
    }
    let twice = fails(&["capture", &first_iface, &first_iface, "-w", "/dev/null"]);
    assert!(twice.contains("named twice"), "{twice}");
    let file = TempFile::new("two.pcapng");
    let capture = Capturing::start(&[&first_iface, &second_iface, "-w", file.arg(), "-c", "7"]);
    let (to_first, to_second) = (frames(3, 9, 30, 0), frames(4, 9, 30, 100));
    send(&first, to_first.clone());
    send(&second, to_second.clone());
    let (status, stderr) = capture.finish();
    assert!(status.success(), "capture failed: {stderr}");
    let read = read_pcapng(&file.0);
    assert_eq!(read.if_names, [first_iface.as_str(), second_iface.as_str()]);
    assert_eq!(
        read.interface_ids,
        [0, 0, 0, 1, 1, 1, 1],
        "in the order stamped"
    );
    let sent: Vec<&Vec<u8>> = to_first.iter().chain(&to_second).collect();
    for ((_, data, _, _), sent) in read.packets.iter().zip(sent) {
        assert_eq!(data, sent);
    }
    assert_eq!(read.statistics.len(), 2, "a statistics block per interface");
    assert!(read.statistics[0].contains(&InterfaceStatisticsOption::IsbUsrDeliv(3)));
    assert!(read.statistics[1].contains(&InterfaceStatisticsOption::IsbUsrDeliv(4)));
}

#[test]
fn capture_by_snaplen_rule_and_sample_selects_what_they_say() {
    let test = "capture_by_snaplen_rule_and_sample_selects_what_they_say";
    if !kernel_available(test) {
        return;
    }
    let (net, iface, _detach) = attached_veth("csel", 27);
    ok(&[
        "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "9",
    ]);
    let rule_10 = rule_id(&ok(&[
        "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "10",
    ]));

    // A rule that does not exist is refused, naming it.
    let refused = fails(&["capture", &iface, "--rule", "999", "-w", "/dev/null"]);
    assert!(refused.contains("has no rule 999"), "{refused}");

    // --duration ends a capture by itself (nothing selected arrives meanwhile).
    let file = TempFile::new("duration.pcap");
    let capture = Capturing::start(&[
        &iface,
        "--rule",
        &rule_10,
        "--pcap",
        "--duration",
        "0.3",
        "-w",
        file.arg(),
    ]);
    let (status, stderr) = capture.finish();
    assert!(status.success(), "capture failed: {stderr}");
    assert_eq!(summary(&stderr, "captured"), 0, "{stderr}");

    // --rule and --snaplen, as classic pcap; ended by -c, which comes after the first two
    // frames to port 9 (interleaved), so that selecting those would show.
    let file = TempFile::new("rule.pcap");
    let capture = Capturing::start(&[
        &iface,
        "--rule",
        &rule_10,
        "--snaplen",
        "64",
        "--pcap",
        "-c",
        "6",
        "-w",
        file.arg(),
    ]);
    let to_10 = frames(6, 10, 200, 0);
    let mixed: Vec<Vec<u8>> = frames(6, 9, 200, 100)
        .into_iter()
        .zip(to_10.iter().cloned())
        .flat_map(|(a, b)| [a, b])
        .collect();
    send(&net, mixed);
    let (status, stderr) = capture.finish();
    assert!(status.success(), "capture failed: {stderr}");
    let mut reader = PcapReader::new(std::fs::File::open(&file.0).expect("open")).expect("pcap");
    assert_eq!(reader.header().snaplen, 64);
    let mut packets = Vec::new();
    // Raw: pcap-file 2.0 rejects orig_len > snaplen when it checks a packet, which is what
    // a snapshot length is for (tcpdump reads these packets below).
    while let Some(packet) = reader.next_raw_packet() {
        let packet = packet.expect("a whole packet");
        packets.push((packet.orig_len, packet.data.into_owned()));
    }
    assert_eq!(packets.len(), 6, "only rule {rule_10}'s packets");
    for ((original_len, data), sent) in packets.iter().zip(&to_10) {
        assert_eq!(*original_len as usize, sent.len(), "the length on the wire");
        assert_eq!(data.as_slice(), &sent[..64], "the first 64 bytes");
    }
    if let Some(text) = read_with("tcpdump", &["-nn", "-r"], file.arg()) {
        assert_eq!(text.lines().count(), 6, "{text}");
    }

    // --sample 10 of 100 selected packets, ended by SIGINT once all are through.
    let file = TempFile::new("sample.pcapng");
    let capture = Capturing::start(&[&iface, "--sample", "10", "-w", file.arg()]);
    let before = capture_counters(&iface);
    send(&net, frames(100, 9, 20, 0));
    await_copied(&iface, before, 100, 10);
    capture.signal(Signal::SIGINT);
    let (status, stderr) = capture.finish();
    assert!(status.success(), "capture failed: {stderr}");
    assert_eq!(summary(&stderr, "selected by the filter"), 100, "{stderr}");
    assert_eq!(summary(&stderr, "captured"), 10, "{stderr}");
    let read = read_pcapng(&file.0);
    let indexes: Vec<u32> = read
        .packets
        .iter()
        .map(|(_, data, _, _)| u32::from_be_bytes(data[data.len() - 4..].try_into().unwrap()))
        .collect();
    assert_eq!(indexes, (0..100).step_by(10).collect::<Vec<u32>>());
}

#[test]
fn a_closed_pipe_ends_capture_cleanly_and_a_full_ring_counts_its_losses() {
    let test = "a_closed_pipe_ends_capture_cleanly_and_a_full_ring_counts_its_losses";
    if !kernel_available(test) {
        return;
    }
    let (net, iface, _detach) = attached_veth("cpip", 28);
    ok(&[
        "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "9",
    ]);

    // A reader that reads the file header and goes away.
    let mut capture = Capturing::start_with(&[&iface, "-w", "-"], Stdio::piped());
    let mut stdout = capture.child.stdout.take().expect("stdout");
    let mut header = [0u8; 4];
    stdout.read_exact(&mut header).expect("the file header");
    assert_eq!(header, [0x0a, 0x0d, 0x0d, 0x0a], "a pcapng section header");
    // One capture per interface: a second one is refused while this one lives.
    let refused = fails(&["capture", &iface, "-w", "/dev/null"]);
    assert!(refused.contains("already running"), "{refused}");
    drop(stdout);
    send(&net, frames(5, 9, 20, 0));
    let (status, stderr) = capture.finish();
    assert!(status.success(), "a closed pipe is a clean end: {stderr}");
    assert!(stderr.contains("the reader closed the pipe"), "{stderr}");

    // A killed capture leaves its selection behind; the next one takes over once its lease
    // has run out.
    let killed = Capturing::start(&[&iface, "-w", "/dev/null"]);
    killed.signal(Signal::SIGKILL);
    let (_, _) = killed.finish();
    await_no_capture(&iface);

    // A reader stopped while 4,000 full-size frames arrive: the ring holds about 2,700. Its
    // lease outlasts the stop, whatever the machine's speed.
    let file = TempFile::new("overflow.pcapng");
    let mut leased = Command::new(env!("CARGO_BIN_EXE_netxdp"));
    leased
        .args(["capture", &iface, "-w", file.arg()])
        .env(netxdp::capture::LEASE_ENV, "3600000")
        .stdout(Stdio::null());
    let capture = Capturing::spawn(leased);
    assert!(
        capture.preamble.contains(&format!(
            "took over the capture on {iface} from netxdp process"
        )),
        "{}",
        capture.preamble
    );
    capture.signal(Signal::SIGSTOP);
    let sent = 4_000;
    let before = capture_counters(&iface);
    send(&net, frames(sent, 9, 1_400, 0));
    // Every frame in the ring or counted lost before the reader goes on: it drains the ring
    // when it stops.
    await_copied(&iface, before, sent as u64, sent as u64);
    capture.signal(Signal::SIGCONT);
    capture.signal(Signal::SIGTERM);
    let (status, stderr) = capture.finish();
    assert!(status.success(), "capture failed: {stderr}");
    let (captured, selected, lost) = (
        summary(&stderr, "captured"),
        summary(&stderr, "selected by the filter"),
        summary(&stderr, "dropped by kernel"),
    );
    assert_eq!(selected, sent as u64, "{stderr}");
    assert!(lost > 0, "the ring must have overflowed: {stderr}");
    assert_eq!(captured + lost, selected, "{stderr}");
    let read = read_pcapng(&file.0);
    assert_eq!(read.packets.len() as u64, captured);
    assert!(
        read.statistics[0].contains(&InterfaceStatisticsOption::IsbOsDrop(lost)),
        "{:?}",
        read.statistics
    );

    // `status` names a running capture; a detach ends it.
    let capture = Capturing::start(&[&iface, "-w", "/dev/null"]);
    let status: serde_json::Value = serde_json::from_str(&ok(&["status", "--json"])).expect("JSON");
    let entry = status["interfaces"]
        .as_array()
        .and_then(|all| all.iter().find(|entry| entry["iface"] == iface.as_str()))
        .cloned()
        .expect("the interface in status");
    assert_eq!(entry["capture_pid"], capture.child.id(), "{status}");
    ok(&["detach", &iface]);
    let (status, stderr) = capture.finish();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("was detached"), "{stderr}");
}

/// A tmpfs of `kib` KiB, unmounted and removed on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(kib: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("netxdp-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mount point");
        let disk = Self(dir);
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "netxdp-test"])
            .arg(&disk.0)
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a tmpfs");
        disk
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Waits until `status` shows no capture on `iface`: an earlier one's lease ran out.
fn await_no_capture(iface: &str) {
    let capture_pid = || {
        let status: serde_json::Value =
            serde_json::from_str(&ok(&["status", "--json"])).expect("JSON");
        status["interfaces"]
            .as_array()
            .and_then(|all| all.iter().find(|entry| entry["iface"] == iface))
            .map(|entry| entry["capture_pid"].clone())
            .expect("the interface in status")
    };
    let left = eventually(capture_pid, serde_json::Value::is_null);
    assert!(
        left.is_null(),
        "the lease never ran out: capture_pid {left}"
    );
}

#[test]
fn a_dead_reader_in_another_pid_namespace_stops_costing_and_is_taken_over() {
    let test = "a_dead_reader_in_another_pid_namespace_stops_costing_and_is_taken_over";
    if !kernel_available(test) {
        return;
    }
    let (net, iface, _detach) = attached_veth("clse", 55);

    // A capture in a pid namespace of its own, where it is process 1: a pid that names a
    // live process (init) in this namespace, whatever becomes of the capture.
    let mut isolated = Command::new("unshare");
    isolated
        .args(["--pid", "--fork", "--kill-child"])
        .arg(env!("CARGO_BIN_EXE_netxdp"))
        .args(["capture", &iface, "--action", "all", "-w", "/dev/null"])
        .stdout(Stdio::null());
    let capture = Capturing::spawn(isolated);
    let before = capture_counters(&iface);
    send(&net, frames(10, 9, 20, 0));
    await_copied(&iface, before, 10, 10);

    // Killed (unshare takes its child with it): once the lease has run out, the program
    // selects nothing more, and status shows no capture.
    capture.signal(Signal::SIGKILL);
    let (_, _) = capture.finish();
    let still_selecting = eventually(
        || {
            let before = capture_counters(&iface);
            send(&net, frames(10, 9, 20, 0));
            capture_counters(&iface).selected - before.selected
        },
        |selected| *selected == 0,
    );
    assert_eq!(
        still_selecting, 0,
        "a dead reader's capture still selects packets"
    );
    await_no_capture(&iface);

    // The next capture takes over, at once, and captures.
    let capture = Capturing::start(&[&iface, "--action", "all", "-w", "/dev/null"]);
    assert!(
        capture.preamble.contains(&format!(
            "took over the capture on {iface} from netxdp process 1,"
        )),
        "{}",
        capture.preamble
    );
    let before = capture_counters(&iface);
    send(&net, frames(5, 9, 20, 100));
    await_copied(&iface, before, 5, 5);
    capture.signal(Signal::SIGTERM);
    let (status, stderr) = capture.finish();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_full_disk_ends_capture_with_a_file_whole_up_to_its_last_packet() {
    let test = "a_full_disk_ends_capture_with_a_file_whole_up_to_its_last_packet";
    if !kernel_available(test) {
        return;
    }
    let (net, iface, _detach) = attached_veth("cful", 29);
    let disk = SmallDisk::mount(64);
    let path = disk.0.join("full.pcapng");
    let path_arg = path.to_str().expect("UTF-8 path");
    let capture = Capturing::start(&[&iface, "--action", "pass", "-w", path_arg]);
    // 200 frames of 1,442 bytes: about 300 KB of pcapng, for 64 KiB of disk.
    send(&net, frames(200, 9, 1_400, 0));
    let (status, stderr) = capture.finish();
    assert_eq!(status.code(), Some(1), "a full disk is an error: {stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let written = summary(&stderr, "captured");
    assert!(
        stderr.contains(&format!("holds the first {written} packets, whole")),
        "{stderr}"
    );
    assert!(written > 0 && written < 200, "{stderr}");
    // Every block whole, and no partial one after the last: the reader ends cleanly.
    let read = read_pcapng(&path);
    assert_eq!(read.packets.len() as u64, written);
    let sent = frames(200, 9, 1_400, 0);
    for ((_, data, comment, _), sent) in read.packets.iter().zip(&sent) {
        assert_eq!(data, sent);
        assert_eq!(comment, "netxdp: pass by the policy");
    }
}

#[test]
fn capture_files_are_for_their_owner_only_and_never_written_through_a_link() {
    let test = "capture_files_are_for_their_owner_only_and_never_written_through_a_link";
    if !kernel_available(test) {
        return;
    }
    let (_net, iface, _detach) = attached_veth("cmode", 72);
    // Under umask 022, as most shells have it: the mode must be netxdp's, not the umask's.
    let capture = |path: &str| {
        Command::new("sh")
            .args(["-c", r#"umask 022 && exec "$0" "$@""#])
            .arg(env!("CARGO_BIN_EXE_netxdp"))
            .args(["capture", &iface, "--duration", "0.2", "-w", path])
            .output()
            .expect("run netxdp capture")
    };

    let sentinel = TempFile::new("sentinel");
    std::fs::write(&sentinel.0, b"sentinel").expect("write the sentinel");
    std::fs::set_permissions(&sentinel.0, Permissions::from_mode(0o644)).expect("chmod");
    let link = TempFile::new("link.pcapng");
    std::os::unix::fs::symlink(&sentinel.0, &link.0).expect("symlink");
    let output = capture(link.arg());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(link.arg()), "names the file: {stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(std::fs::read(&sentinel.0).expect("sentinel"), b"sentinel");
    let mode = std::fs::metadata(&sentinel.0).expect("sentinel").mode();
    assert_eq!(mode & 0o777, 0o644, "the link's target keeps its mode");
    assert!(link.0.is_symlink(), "the link is left as it was");

    let file = TempFile::new("mode.pcapng");
    let output = capture(file.arg());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let mode = std::fs::metadata(&file.0).expect("capture file").mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert_eq!(read_pcapng(&file.0).if_names, [iface.as_str()]);
}
