//! `netxdp capture` end to end: known frames sent from a namespace through a veth pair, the
//! real binary capturing on the host end, and the file read back byte for byte, by
//! pcap-file, tcpdump and tshark.

#[path = "support/capture.rs"]
mod capturing;
mod support;

use std::{
    fs::Permissions,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    process::Command,
    time::SystemTime,
};

use capturing::{
    Capturing, TempFile, await_copied, capture_counters, frames, read_pcapng, read_with, rule_id,
    send, summary,
};
use net_common::testing::{Body, FrameSpec, cut_datagram};
use nix::sys::signal::Signal;
use pcap_file::{
    pcap::PcapReader, pcapng::blocks::interface_statistics::InterfaceStatisticsOption,
};
use support::{attached_veth, fails, kernel_available, ok};

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
