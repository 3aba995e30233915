//! Starts and upgrades that never leave an interface unfiltered, tested under a stream of
//! real datagrams: `attach --rules` puts the rules in force before the first packet,
//! `attach --force` takes another program's place in one step and only after netxdp is
//! loaded, and `attach --upgrade` makes maps of another layout again, in one step too.

mod support;

use std::{
    io::{BufRead as _, BufReader},
    net::{IpAddr, SocketAddr},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use aya::maps::{Array, Map, MapData};
use net_common::{
    info::{AttachInfo, LAYOUT_VERSION},
    rule::{MAX_RULES, Rule},
};
use netxdp::{
    bpf_syscall::{MapSpec, create_map},
    filter::stages::PAUSE_AT_ENV,
    netns::VethNet,
    traffic::{self, UdpSink},
};
use serde_json::Value;
use support::{
    DetachOnDrop, KillOnDrop, PATIENCE, TempDir, XdpFilterCleanup, eventually, fails,
    kernel_available, ok, packets, pins, rules_json, stats_snapshot, xdp_on_link,
};

/// The port the stream goes to, and a port no rule names.
const STREAM_PORT: u16 = 9;

/// Drops everything but SSH, which the stream is not.
const POLICY_DROP: &str = "policy = \"drop\"\n\n\
    [[rule]]\naction = \"pass\"\nproto = \"tcp\"\ndport = 22\n";

/// A stream of datagrams from the namespace to the host's port 9, until dropped (bounded
/// anyway, at 2,000,000 datagrams).
struct Stream {
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<anyhow::Result<usize>>>,
}

impl Stream {
    fn start(net: &VethNet) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let to = SocketAddr::new(IpAddr::V4(VethNet::host_v4(net.subnet())), STREAM_PORT);
        let flag = Arc::clone(&stop);
        let sender =
            net.spawn_in_namespace(move || traffic::udp_stream(to, &[0x5a; 32], &flag, 2_000_000));
        Self {
            stop,
            sender: Some(sender),
        }
    }

    /// Stops the stream; how many datagrams it sent.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let sender = self.sender.take().expect("running");
        sender
            .join()
            .expect("the sender did not panic")
            .expect("the stream was sent")
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}

/// A socket on the host's stream port, and proof that the stream reaches it unfiltered.
fn sink_reached_without_netxdp(net: &VethNet) -> UdpSink {
    let host = IpAddr::V4(VethNet::host_v4(net.subnet()));
    let sink = UdpSink::bind(SocketAddr::new(host, STREAM_PORT)).expect("bind the sink");
    net.run_in_namespace(move || {
        traffic::udp_burst(SocketAddr::new(host, STREAM_PORT), 5, &[1; 8])
    })
    .expect("send");
    assert_eq!(
        sink.receive(5, PATIENCE, Duration::from_millis(100))
            .expect("receive"),
        5,
        "the datagrams reach the socket when nothing filters them"
    );
    sink
}

/// Waits until netxdp has dropped `at_least` packets; its stats then.
fn dropped_at_least(iface: &str, at_least: u64) -> Value {
    let record = eventually(
        || stats_snapshot(iface),
        |record| packets(record, "action", "drop") >= at_least,
    );
    assert!(
        packets(&record, "action", "drop") >= at_least,
        "the stream meets netxdp: {record}"
    );
    record
}

#[test]
fn attach_with_rules_filters_a_stream_from_its_first_packet() {
    let test = "attach_with_rules_filters_a_stream_from_its_first_packet";
    if !kernel_available(test) {
        return;
    }
    let net = VethNet::create("fcl", 52).expect("veth pair");
    let iface = net.host_if().to_owned();
    let _detach = DetachOnDrop(iface.clone());
    let dir = TempDir::new("startup-rules");
    let rules = dir.0.join("drop.toml");
    std::fs::write(&rules, POLICY_DROP).expect("write");
    let bad = dir.0.join("bad.toml");
    std::fs::write(
        &bad,
        "policy = \"drop\"\n\n[[rule]]\naction = \"pass\"\ndport = 22\n",
    )
    .expect("write");
    let _sink = sink_reached_without_netxdp(&net);

    // A file that does not check attaches nothing.
    let said = fails(&["attach", &iface, "--rules", bad.to_str().expect("utf-8")]);
    assert!(
        said.contains("bad.toml") && said.contains("line 5") && said.contains("ports need proto"),
        "{said}"
    );
    assert_eq!(xdp_on_link(&iface), "none", "{said}");
    assert!(!pins(&iface).dir().exists(), "{said}");

    let stream = Stream::start(&net);
    let attached = ok(&["attach", &iface, "--rules", rules.to_str().expect("utf-8")]);
    assert!(
        attached.contains("drop.toml in force (1 rule, policy drop)"),
        "{attached}"
    );
    let record = dropped_at_least(&iface, 1_000);
    let sent = stream.finish();
    // Until the last datagrams have been counted: two readings in a row agree.
    let mut last = record;
    let (_, record) = eventually(
        || {
            let now = stats_snapshot(&iface);
            let settled = now["total"] == last["total"];
            last = now.clone();
            (settled, now)
        },
        |(settled, _)| *settled,
    );
    assert_eq!(
        packets(&record, "action", "pass"),
        0,
        "not one of {sent} datagrams passed: the rules were in force before the first \
         packet: {record}"
    );
    assert_eq!(
        record["total"]["packets"], record["action"]["drop"]["packets"],
        "{record}"
    );
}

#[test]
fn force_takes_the_place_of_another_program_in_one_step_and_only_once_loaded() {
    let test = "force_takes_the_place_of_another_program_in_one_step_and_only_once_loaded";
    if !kernel_available(test) {
        return;
    }
    let net = VethNet::create("frc", 53).expect("veth pair");
    let iface = net.host_if().to_owned();
    let _detach = DetachOnDrop(iface.clone());
    let dir = TempDir::new("startup-force");
    let rules = dir.0.join("drop.toml");
    std::fs::write(&rules, POLICY_DROP).expect("write");
    let rules = rules.to_str().expect("utf-8");
    let sink = sink_reached_without_netxdp(&net);

    // xdp-filter, denying everything: from here on, a datagram that reaches the socket
    // met no program at all.
    let _xdp_filter = XdpFilterCleanup::load(&iface, &["--policy", "deny"]);
    let before = program_on(&iface);
    let stream = Stream::start(&net);

    // Stopped once its program is loaded and its rules committed, before it is attached:
    // killed there, xdp-filter's program is still in place, and nothing of netxdp holds the
    // interface.
    let mut paused = Command::new(env!("CARGO_BIN_EXE_netxdp"))
        .args(["attach", &iface, "--force", "--rules", rules])
        .env(PAUSE_AT_ENV, "flipped")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(KillOnDrop)
        .expect("start netxdp attach");
    let stderr_lines = BufReader::new(paused.0.stderr.take().expect("stderr"));
    let reached = stderr_lines
        .lines()
        .map_while(Result::ok)
        .find(|line| line == "paused at flipped");
    assert!(reached.is_some(), "attach never reached its pause");
    assert_eq!(
        program_on(&iface),
        before,
        "xdp-filter stays until netxdp is ready"
    );
    drop(paused);
    assert_eq!(
        program_on(&iface),
        before,
        "killed, netxdp replaced nothing"
    );
    assert!(!pins(&iface).is_attached(), "killed, netxdp holds nothing");

    let forced = ok(&["attach", &iface, "--force", "--rules", rules]);
    assert!(
        forced.contains("in skb mode") && forced.contains("in the place of XDP program"),
        "{forced}"
    );
    let record = dropped_at_least(&iface, 1_000);
    let sent = stream.finish();
    assert_eq!(
        sink.drain(Duration::from_millis(200)).expect("drain"),
        0,
        "not one of {sent} datagrams got past while netxdp took xdp-filter's place"
    );
    assert_eq!(packets(&record, "action", "pass"), 0, "{record}");
    assert_eq!(xdp_on_link(&iface), "xdpgeneric");
    let status: Value = serde_json::from_str(&ok(&["status", "--json"])).expect("JSON");
    let entry = status["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|entry| entry["iface"] == iface.as_str())
        .expect("status lists the interface");
    assert_eq!(entry["live"], true, "{status}");
    assert_eq!(entry["held_by"], "netlink", "{status}");
    assert_eq!(entry["program_id"], program_on(&iface), "{status}");

    // Detach removes netxdp's program, held through netlink, and only that.
    ok(&["detach", &iface]);
    assert_eq!(xdp_on_link(&iface), "none");
}

#[test]
fn maps_of_another_layout_are_named_and_upgraded_keeping_their_rules() {
    let test = "maps_of_another_layout_are_named_and_upgraded_keeping_their_rules";
    if !kernel_available(test) {
        return;
    }
    let net = VethNet::create("upg", 54).expect("veth pair");
    let iface = net.host_if().to_owned();
    let _detach = DetachOnDrop(iface.clone());
    let dir = TempDir::new("startup-upgrade");
    let rules = dir.0.join("drop.toml");
    std::fs::write(&rules, POLICY_DROP).expect("write");
    let sink = sink_reached_without_netxdp(&net);
    ok(&["attach", &iface, "--rules", rules.to_str().expect("utf-8")]);
    ok(&[
        "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "7",
    ]);
    let before = rules_json(&iface);

    // Kept, then made as an older netxdp with a wider tree node would have made them.
    ok(&["detach", &iface, "--keep-rules"]);
    let pins = pins(&iface);
    let tree_nodes = pins.dir().join("TREE_NODES");
    let shape = aya::maps::MapInfo::from_pin(&tree_nodes).expect("TREE_NODES");
    std::fs::remove_file(&tree_nodes).expect("unpin");
    let wider = create_map(MapSpec {
        map_type: aya::maps::MapType::Array as u32,
        key_size: 4,
        value_size: shape.value_size() + 8,
        max_entries: 16,
        ..MapSpec::default()
    })
    .expect("create");
    MapData::from_fd(wider)
        .expect("map")
        .pin(&tree_nodes)
        .expect("pin");
    // And rule records as layout 4 wrote them, before rules had limits: each rule's first 64
    // bytes, in a table of 64-byte values.
    let rules_pin = pins.dir().join("RULES");
    let current: Array<MapData, Rule> =
        Array::try_from(Map::Array(MapData::from_pin(&rules_pin).expect("RULES"))).expect("RULES");
    let kept: Vec<(u32, [u8; 64])> = (0..MAX_RULES as u32 * 2)
        .map(|index| {
            let rule = current.get(&index, 0).expect("a rule record");
            // SAFETY: `Rule` is `#[repr(C)]` plain data of more than 64 bytes.
            let bytes = unsafe { std::slice::from_raw_parts((&raw const rule).cast::<u8>(), 64) };
            let bytes: [u8; 64] = bytes.try_into().expect("64 bytes");
            (index, bytes)
        })
        .filter(|(_, bytes)| bytes.iter().any(|byte| *byte != 0))
        .collect();
    assert!(kept.len() >= 2, "the two rules' records");
    drop(current);
    std::fs::remove_file(&rules_pin).expect("unpin");
    let narrower = create_map(MapSpec {
        map_type: aya::maps::MapType::Array as u32,
        key_size: 4,
        value_size: 64,
        max_entries: MAX_RULES as u32 * 2,
        ..MapSpec::default()
    })
    .expect("create");
    let narrower = MapData::from_fd(narrower).expect("map");
    narrower.pin(&rules_pin).expect("pin");
    let mut old_rules: Array<MapData, [u8; 64]> =
        Array::try_from(Map::Array(narrower)).expect("the old table");
    for (index, bytes) in &kept {
        old_rules
            .set(*index, *bytes, 0)
            .expect("write an old record");
    }
    set_layout(&pins, LAYOUT_VERSION - 1);

    for args in [
        vec!["attach", iface.as_str()],
        vec!["rule", "add", iface.as_str(), "--action", "drop"],
    ] {
        let said = fails(&args);
        assert!(
            said.contains(&format!(
                "(layout {}; this netxdp's is layout {LAYOUT_VERSION})",
                LAYOUT_VERSION - 1
            )) && said.contains(&format!(
                "TREE_NODES has value bytes {}, not {}",
                shape.value_size() + 8,
                shape.value_size()
            )) && said.contains(&format!("`netxdp attach {iface} --upgrade`")),
            "{args:?}: {said}"
        );
    }
    assert_eq!(xdp_on_link(&iface), "none", "refused, nothing attached");

    let upgraded = ok(&["attach", &iface, "--upgrade"]);
    assert!(
        upgraded.contains(&format!(
            "from layout {} to {LAYOUT_VERSION}",
            LAYOUT_VERSION - 1
        )) && upgraded.contains("2 rules and the policy carried over; counters restart at 0"),
        "{upgraded}"
    );
    let after = rules_json(&iface);
    assert_eq!(without_counts(&after), without_counts(&before));
    assert_ne!(xdp_on_link(&iface), "none");
    assert!(!pins.staging().dir().exists(), "no staging directory left");

    // Upgraded while attached, under the stream: the old program gives way to the new one
    // in one step, and policy drop holds throughout. A capture of the old maps ends.
    let mut capture = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_netxdp"))
            .args(["capture", &iface, "-w", "/dev/null"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a capture"),
    );
    let mut said = BufReader::new(capture.0.stderr.take().expect("stderr")).lines();
    let capturing = said
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.starts_with("netxdp: capturing"));
    assert!(capturing.is_some(), "the capture never started");
    set_layout(&pins, LAYOUT_VERSION - 1);
    let old_program = program_on(&iface);
    let stream = Stream::start(&net);
    dropped_at_least(&iface, 1_000);
    let upgraded = ok(&["attach", &iface, "--upgrade"]);
    let ended = said
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("was detached (or another capture took it over)"));
    assert!(ended.is_some(), "the capture of the old maps ended");
    let status = eventually(|| capture.0.try_wait().expect("wait"), Option::is_some);
    let rest: Vec<String> = said.map_while(Result::ok).collect();
    assert!(
        status.is_some_and(|status| status.success()),
        "{status:?}: {rest:?}"
    );
    assert!(upgraded.contains("2 rules and the policy"), "{upgraded}");
    dropped_at_least(&iface, 1_000);
    let sent = stream.finish();
    assert_eq!(
        sink.drain(Duration::from_millis(200)).expect("drain"),
        0,
        "not one of {sent} datagrams got past the upgrade"
    );
    assert_ne!(program_on(&iface), old_program, "the new program runs");
    assert_eq!(without_counts(&rules_json(&iface)), without_counts(&before));

    // Rule records of a shape this netxdp cannot read: --upgrade says how to carry the
    // rules by hand, and changes nothing.
    ok(&["detach", &iface, "--keep-rules"]);
    let rules_map = pins.dir().join("RULES");
    std::fs::remove_file(&rules_map).expect("unpin");
    let other = create_map(MapSpec {
        map_type: aya::maps::MapType::Array as u32,
        key_size: 4,
        value_size: 12,
        max_entries: 16,
        ..MapSpec::default()
    })
    .expect("create");
    MapData::from_fd(other)
        .expect("map")
        .pin(&rules_map)
        .expect("pin");
    let said = fails(&["attach", &iface, "--upgrade"]);
    assert!(
        said.contains("RULES is not of this netxdp's layout")
            && said.contains(&format!("`netxdp rule list {iface} --toml > FILE`")),
        "{said}"
    );
    assert_eq!(xdp_on_link(&iface), "none", "{said}");
    assert!(rules_map.exists(), "the old maps stay: {said}");
}

/// The id of the XDP program on `iface`, as the kernel reports it.
fn program_on(iface: &str) -> u64 {
    let output = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", iface])
        .output()
        .expect("ip link show");
    let links: Value = serde_json::from_slice(&output.stdout).expect("ip's JSON");
    links[0]["xdp"]["prog"]["id"]
        .as_u64()
        .or_else(|| links[0]["xdp"]["attached"][0]["prog"]["id"].as_u64())
        .unwrap_or_else(|| panic!("no XDP program on {iface}: {links}"))
}

/// Rewrites the layout the attach record of `pins` names.
fn set_layout(pins: &netxdp::pins::PinDir, layout: u32) {
    let map = MapData::from_pin(pins.info_map()).expect("INFO");
    let mut info: Array<MapData, AttachInfo> = Array::try_from(Map::Array(map)).expect("array");
    let record = info.get(&0, 0).expect("record");
    info.set(0, AttachInfo { layout, ..record }, 0)
        .expect("write");
}

/// A rule listing's ids, matches and settings, without its counts.
fn without_counts(record: &Value) -> Value {
    let mut record = record.clone();
    for rule in record["rules"].as_array_mut().expect("rules") {
        let rule = rule.as_object_mut().expect("object");
        for count in ["packets", "bytes", "last_hit_secs_ago"] {
            rule.remove(count);
        }
    }
    record
}
