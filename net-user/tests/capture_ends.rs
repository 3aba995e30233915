//! How `netxdp capture` ends, and what it leaves: a reader that closes its pipe, a ring that
//! fills while the reader is stopped, a reader killed (in its own pid namespace, too) whose
//! lease runs out, a detach, and a full disk.

#[path = "support/capture.rs"]
mod capturing;
mod support;

use std::{
    io::Read as _,
    path::PathBuf,
    process::{Command, Stdio},
};

use capturing::{
    Capturing, TempFile, await_copied, capture_counters, frames, read_pcapng, send, summary,
};
use nix::sys::signal::Signal;
use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
use support::{attached_veth, eventually, fails, kernel_available, ok};

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
