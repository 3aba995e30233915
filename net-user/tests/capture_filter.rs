//! `netxdp capture IFACE ... EXPRESSION` end to end: datagrams sent from a namespace
//! through a veth pair, the real binary capturing on the host end with a tcpdump
//! expression, and what it wrote read back, by pcap-file and by tcpdump.

#[path = "support/capture.rs"]
mod capturing;
mod support;

use std::process::{Command, Stdio};

use capturing::{Capturing, TempFile, classified, frames, read_pcapng, read_with, send, summary};
use support::{attached_veth, eventually, fails, kernel_available};

/// 150 datagrams, every third to port 7777, the others to 7778 and 53.
fn mixed() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let wanted = frames(50, 7777, 40, 0);
    let all = wanted
        .iter()
        .cloned()
        .zip(frames(50, 7778, 40, 100))
        .zip(frames(50, 53, 40, 200))
        .flat_map(|((to_7777, to_7778), to_53)| [to_7777, to_7778, to_53])
        .collect();
    (all, wanted)
}

#[test]
fn capture_with_an_expression_holds_exactly_the_datagrams_it_matches() {
    let test = "capture_with_an_expression_holds_exactly_the_datagrams_it_matches";
    if !kernel_available(test) {
        return;
    }
    let (net, iface, _detach) = attached_veth("cexp", 63);
    let file = TempFile::new("expression.pcapng");
    let capture = Capturing::start(&[
        &iface,
        "--action",
        "all",
        "-c",
        "50",
        "-w",
        file.arg(),
        "udp dst port 7777",
    ]);
    assert!(
        capture.preamble.is_empty(),
        "nothing said before capturing: {}",
        capture.preamble
    );
    let before = classified(&iface);
    let (all, wanted) = mixed();
    send(&net, all);
    // Every datagram reached the program: the expression, not the path, left 100 out.
    let seen = eventually(|| classified(&iface) - before, |seen| *seen >= 150);
    assert!(seen >= 150, "the program saw {seen} of 150 datagrams");
    let (status, stderr) = capture.finish();
    assert!(status.success(), "capture failed: {stderr}");
    assert_eq!(summary(&stderr, "captured"), 50, "{stderr}");

    let read = read_pcapng(&file.0);
    assert_eq!(
        read.if_filters,
        [b"\0udp dst port 7777".to_vec()],
        "if_filter: libpcap's"
    );
    assert_eq!(read.packets.len(), 50);
    for ((_, data, _, _), sent) in read.packets.iter().zip(&wanted) {
        assert_eq!(data, sent, "byte for byte, in order");
    }
    if let Some(text) = read_with("tcpdump", &["-nn", "-r"], file.arg()) {
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 50, "{text}");
        assert!(
            lines.iter().all(|line| line.contains(".7777: UDP")),
            "{text}"
        );
    }
}

#[test]
fn a_filtered_capture_pipes_to_tcpdump_and_a_bad_expression_changes_nothing() {
    let test = "a_filtered_capture_pipes_to_tcpdump_and_a_bad_expression_changes_nothing";
    if !kernel_available(test) {
        return;
    }
    let (net, iface, _detach) = attached_veth("cexq", 64);

    // Refused before anything is loaded, with libpcap's message; a capture starts after.
    let refused = fails(&[
        "capture",
        &iface,
        "-w",
        "/dev/null",
        "udp",
        "port",
        "eleventy",
    ]);
    assert!(refused.contains("unknown port 'eleventy'"), "{refused}");
    let refused = fails(&["capture", "no-such-if0", "-w", "/dev/null", "udp"]);
    assert!(refused.contains("needs an interface"), "{refused}");

    let mut capture = Capturing::start_with(
        &[
            &iface, "--action", "all", "-c", "5", "-w", "-", "udp", "dst", "port", "7777",
        ],
        Stdio::piped(),
    );
    let stdout = capture.child.stdout.take().expect("stdout");
    let tcpdump = Command::new("tcpdump")
        .args(["-nn", "-r", "-"])
        .stdin(stdout)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump (xtask setup installs it)");
    let (all, _) = mixed();
    send(&net, all);
    let (status, stderr) = capture.finish();
    assert!(status.success(), "capture failed: {stderr}");
    let read = tcpdump.wait_with_output().expect("tcpdump's output");
    assert!(read.status.success(), "tcpdump failed");
    let text = String::from_utf8_lossy(&read.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines.iter().all(|line| line.contains(".7777: UDP")),
        "{text}"
    );
}

#[test]
fn dash_d_prints_what_tcpdump_dash_d_prints() {
    // An empty Ethernet capture with the snapshot length netxdp's capture copies at most:
    // tcpdump -d -r compiles for its link type and snapshot length.
    let file = TempFile::new("empty.pcap");
    let mut header = Vec::new();
    header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&net_common::capture::MAX_SNAPLEN.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    std::fs::write(&file.0, header).expect("write the empty capture");
    for expression in [
        "udp dst port 7777",
        "vlan 100 and tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn",
        "ip6 protochain 17 or icmp[icmptype] = icmp-echo",
        "not net 10.0.0.0/8 and len > 100",
    ] {
        let Some(tcpdump) = read_with("tcpdump", &["-d", expression, "-r"], file.arg()) else {
            continue;
        };
        let netxdp = support::netxdp(&["capture", "-d", expression]);
        assert!(netxdp.status.success(), "netxdp capture -d {expression:?}");
        assert_eq!(
            String::from_utf8_lossy(&netxdp.stdout),
            tcpdump,
            "{expression:?}"
        );
        let ebpf = support::netxdp(&["capture", "-dd", expression]);
        let listing = String::from_utf8_lossy(&ebpf.stdout);
        assert!(ebpf.status.success(), "netxdp capture -dd {expression:?}");
        assert!(listing.contains(") r8 = *(u32 *)(r1 +0)\n"), "{listing}");
        assert!(listing.contains("call bpf_tail_call"), "{listing}");
        assert!(listing.trim_end().ends_with("exit"), "{listing}");
    }
}

#[test]
fn vlan_in_an_expression_sees_the_tags_as_received() {
    let test = "vlan_in_an_expression_sees_the_tags_as_received";
    if !kernel_available(test) {
        return;
    }
    let (net, iface, _detach) = attached_veth("cexv", 65);
    let file = TempFile::new("vlan.pcapng");
    let capture = Capturing::start(&[
        &iface,
        "--action",
        "all",
        "-c",
        "20",
        "-w",
        file.arg(),
        "vlan 100 and udp dst port 7777",
    ]);
    // Tagged VLAN 100 to 7777 (wanted), untagged to 7777, VLAN 100 to 7778, and two tags
    // (100 outer, 101 inner) to 7777, which tcpdump's `vlan 100 and udp` does not match
    // either: `vlan 100` moves past the outer tag only, and finds the inner one, not IP.
    let tagged = |dport: u16, tags: &[u16], first: u32| -> Vec<Vec<u8>> {
        (0..20u32)
            .map(|i| {
                let spec =
                    net_common::testing::FrameSpec::ipv4_udp(30_000, dport, 40).with_vlans(tags);
                let mut frame = spec.build();
                let len = frame.len();
                frame[len - 4..].copy_from_slice(&(first + i).to_be_bytes());
                frame
            })
            .collect()
    };
    let wanted = tagged(7777, &[0x8100], 0);
    let double = tagged(7777, &[0x88a8, 0x8100], 300);
    let mut all = Vec::new();
    for (((tagged_7777, plain), other_port), outer) in wanted
        .iter()
        .zip(frames(20, 7777, 40, 100))
        .zip(tagged(7778, &[0x8100], 200))
        .zip(&double)
    {
        all.extend([plain, other_port, outer.clone(), tagged_7777.clone()]);
    }
    let before = classified(&iface);
    send(&net, all);
    let seen = eventually(|| classified(&iface) - before, |seen| *seen >= 80);
    assert!(seen >= 80, "the program saw {seen} of 80 frames");
    let (status, stderr) = capture.finish();
    assert!(status.success(), "capture failed: {stderr}");
    assert_eq!(summary(&stderr, "captured"), 20, "{stderr}");
    let read = read_pcapng(&file.0);
    assert_eq!(read.packets.len(), 20);
    for ((_, data, _, _), sent) in read.packets.iter().zip(&wanted) {
        assert_eq!(
            data, sent,
            "the tagged frames to 7777, byte for byte, in order"
        );
    }
}
