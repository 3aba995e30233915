//! Userspace cost of reading a full flow table once a second, as `netxdp flows` (and the
//! refresh of a live view) does: the CPU time and peak memory of the real binary, on a real
//! attachment whose table holds 65,536 flows.

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use net_common::{flow::FLOW_ENTRY_BYTES, testing::FrameSpec};
use netxdp::{netns::VethNet, traffic};

/// The subnet of the bench's veth pair (the xdp-filter peer uses 213).
const SUBNET: u8 = 214;

/// What refreshing once a second for `seconds` cost.
pub struct Refresh {
    /// What refreshed.
    pub command: String,
    pub flows: usize,
    pub seconds: u32,
    /// CPU time (user + system) of all the refreshes.
    pub cpu: Duration,
    /// The largest resident set of any refresh.
    pub peak_rss_kib: i64,
    pub slowest: Duration,
}

/// Flows the bench fills the table with.
pub const FLOWS: usize = 65_536;

/// Attaches `netxdp` to a veth pair, fills its flow table from the namespace, then refreshes
/// once a second for `seconds`: `netxdp flows IFACE --json` as a new process each time, and
/// `netxdp top` as one process.
pub fn flows_refresh(seconds: u32) -> Result<Vec<Refresh>> {
    // Each CPU evicts from its own share of the table, and the frames may all arrive on one:
    // a share for all of them on every CPU.
    let cpus = aya::util::nr_cpus().map_err(|(_, error)| error)?;
    let table_mib = (FLOWS as u64 * FLOW_ENTRY_BYTES * cpus as u64).div_ceil(1 << 20) + 1;
    let table_size = format!("{table_mib}M");
    let (net, iface, _detach) = attached_veth("ub", SUBNET, &["--flow-table-size", &table_size])?;

    // One flow per source port, sent raw from the namespace, twice: a flow enters the table
    // with its second packet on a CPU, so the sender keeps to one.
    let flows = FLOWS;
    let frames: Vec<Vec<u8>> = (0..flows)
        .flat_map(|index| {
            let frame = FrameSpec::ipv4_udp(index as u16, 9, 0).build();
            [frame.clone(), frame]
        })
        .collect();
    let peer = net.peer_if().to_owned();
    net.run_in_namespace(move || {
        traffic::pin_to_this_cpu()?;
        traffic::send_frames(&peer, &frames)
    })
    .context("sending the frames")?;

    let mut refreshes = vec![snapshots(&iface, seconds, flows)?];
    // The live view, in its plain mode (stdout is not a terminal): one long-running process.
    let seconds_arg = seconds.to_string();
    let begun = Instant::now();
    let child = Command::new(NETXDP)
        .args(["top", &iface, "-i", "1", "-c", &seconds_arg])
        .stdout(Stdio::null())
        .spawn()?;
    let (status, cpu, peak_rss_kib) = wait_with_usage(child.id())?;
    ensure!(status == 0, "netxdp top failed (wait status {status})");
    refreshes.push(Refresh {
        command: format!("netxdp top {iface} -i 1 -c {seconds} (plain mode)"),
        flows,
        seconds,
        cpu,
        peak_rss_kib,
        slowest: begun.elapsed() / seconds.max(1),
    });
    Ok(refreshes)
}

/// `netxdp flows IFACE --json` once a second for `seconds`: a new process each time.
fn snapshots(iface: &str, seconds: u32, flows: usize) -> Result<Refresh> {
    let mut slowest = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    let mut peak_rss_kib = 0;
    let started = Instant::now();
    let listing = std::env::temp_dir().join(format!("netxdp-bench-flows-{}", std::process::id()));
    let mut listed = 0;
    for second in 0..seconds {
        let begun = Instant::now();
        let child = Command::new(NETXDP)
            .args(["flows", iface, "--json"])
            .stdout(std::fs::File::create(&listing)?)
            .spawn()?;
        let (status, used, rss) = wait_with_usage(child.id())?;
        ensure!(status == 0, "netxdp flows failed (wait status {status})");
        cpu += used;
        peak_rss_kib = peak_rss_kib.max(rss);
        if second == 0 {
            let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&listing)?)?;
            listed = record["flows"].as_array().map_or(0, Vec::len);
        }
        slowest = slowest.max(begun.elapsed());
        let next = started + Duration::from_secs(u64::from(second) + 1);
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let _ = std::fs::remove_file(&listing);
    ensure!(
        listed >= flows * 99 / 100,
        "only {listed} of {flows} flows listed"
    );
    Ok(Refresh {
        command: format!("netxdp flows {iface} --json, once a second"),
        flows: listed,
        seconds,
        cpu,
        peak_rss_kib,
        slowest,
    })
}

/// Waits for the child `pid`: its wait status, CPU time, and peak RSS (KiB) of the program it
/// runs. The peak is VmHWM, polled from /proc: `ru_maxrss` would include the bench's own
/// memory, which the child shares until it executes `netxdp`.
fn wait_with_usage(pid: u32) -> Result<(i32, Duration, i64)> {
    let status_file = format!("/proc/{pid}/status");
    let mut peak_rss_kib = 0;
    let mut status = 0;
    // SAFETY: wait4 writes the status and the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let hwm = std::fs::read_to_string(&status_file).ok().and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches(" kB").parse::<i64>().ok())
        });
        peak_rss_kib = peak_rss_kib.max(hwm.unwrap_or(0));
        // SAFETY: as above; WNOHANG returns at once.
        let waited = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut usage) };
        ensure!(waited >= 0, "wait4: {}", std::io::Error::last_os_error());
        if waited == pid as i32 {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok((
        status,
        time(usage.ru_utime) + time(usage.ru_stime),
        peak_rss_kib,
    ))
}

/// The binary the benchmarks run.
pub const NETXDP: &str = env!("CARGO_BIN_EXE_netxdp");

/// A namespace and veth pair on `subnet` with `netxdp attach IFACE --mode skb FLAGS` on the
/// host end: the pair, the host end's name, and the guard that detaches. Bound in this order,
/// the guard drops first: netxdp detaches before the pair goes.
pub fn attached_veth(tag: &str, subnet: u8, flags: &[&str]) -> Result<(VethNet, String, Detach)> {
    let net = VethNet::create(tag, subnet).context("creating the bench's veth pair")?;
    let iface = net.host_if().to_owned();
    let detach = Detach(iface.clone());
    let status = Command::new(NETXDP)
        .args(["attach", &iface, "--mode", "skb"])
        .args(flags)
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "netxdp attach {iface} failed");
    Ok((net, iface, detach))
}

/// Runs `netxdp ARGS`, failing with its error message.
pub fn netxdp(args: &[&str]) -> Result<()> {
    let output = Command::new(NETXDP).args(args).output()?;
    ensure!(
        output.status.success(),
        "netxdp {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Detaches netxdp from the interface on drop (before its veth pair goes).
pub struct Detach(pub String);

impl Drop for Detach {
    fn drop(&mut self) {
        let _ = Command::new(NETXDP)
            .args(["detach", &self.0])
            .stdout(Stdio::null())
            .status();
    }
}
