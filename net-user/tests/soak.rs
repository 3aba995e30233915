//! Updates under load: while the kernel's live-frames generator floods two attachments with
//! spoofed sources, one has `apply` alternate two 10,000-rule sets as fast as it goes and the
//! other has `rule add` and `rule del` on a 1,000-rule set (at most 100 a second); meanwhile a
//! flow that every set passes sends numbered datagrams to a real socket behind each.
//!
//! Passes when every datagram arrived, once; every counter read (totals, and each rule's that
//! stayed) is at least the one before; each probe frame run through the pinned program
//! between the applies got a verdict that one of the two whole sets gives it; and each pass
//! rule counted exactly the datagrams. `cargo xtask soak` runs it for 60 s
//! (`NETXDP_SOAK_SECONDS`) and prints what it measured; `cargo xtask test` runs it for 4.

mod support;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::{AsFd as _, OwnedFd},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use aya::programs::Xdp;
use aya_obj::programs::XdpAttachType;
use net_common::{
    frame::SliceFrame,
    parse::parse,
    rule::{Action, Family, Fragments, Malformed, Match, PortRange, Prefix, classify},
    rulegen::{Shape, bench_frames, frame_matching, generate},
};
use netxdp::{
    bpf_syscall::test_run,
    filter::{NewRule, RuleSet, render::render_rules_file},
    flood::{Generators, live_frames},
    netns::VethNet,
};
use serde_json::Value;
use support::{DetachOnDrop, kernel_available, ok, pins};

/// The port the numbered datagrams go to; every set passes them.
const PORT: u16 = 7000;
/// Numbered datagrams a second, from each namespace.
const DATAGRAMS_PER_SECOND: u64 = 500;
/// Live frames per generator call: a few tens of milliseconds.
const FLOOD_CHUNK: u32 = 100_000;

#[test]
fn updates_under_a_flood_lose_no_datagram_mix_no_sets_and_count_forward() {
    let test = "updates_under_a_flood_lose_no_datagram_mix_no_sets_and_count_forward";
    if !kernel_available(test) {
        return;
    }
    let seconds: u64 = std::env::var("NETXDP_SOAK_SECONDS")
        .ok()
        .map(|text| {
            text.parse()
                .expect("NETXDP_SOAK_SECONDS is a number of seconds")
        })
        .unwrap_or(4);
    let dir = support::TempDir::new("soak");

    // A: two 10,000-rule sets in turn. B: a 1,000-rule set, a rule added and deleted at a time.
    let a = Lab::new("sa", 48);
    let b = Lab::new("sb", 49);
    let sets = [
        a.set(Shape::Mixed, 1, 10_000),
        a.set(Shape::Blocklist, 2, 10_000),
    ];
    let files: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(n, set)| write_file(&dir.0, &format!("set{n}.toml"), set))
        .collect();
    ok(&["apply", &a.iface, &files[0]]);
    let b_set = b.set(Shape::Mixed, 3, 1_000);
    ok(&["apply", &b.iface, &write_file(&dir.0, "b.toml", &b_set)]);
    let extra: Vec<String> = generate(Shape::Exact, 4, 64)
        .iter()
        .map(|rule| match_args(&rule.matches).join(" "))
        .collect();

    let generators = Generators::load().expect("the flood generators");
    let generator = |spoofed| -> OwnedFd {
        generators
            .generator(spoofed)
            .and_then(|fd| Ok(fd.try_clone_to_owned()?))
            .expect("a generator")
    };
    let stop = Arc::new(AtomicBool::new(false));
    let floods = [&a, &b].map(|lab| lab.flood(generator(true), Arc::clone(&stop)));
    let receivers = [&a, &b].map(|lab| lab.receive(Arc::clone(&stop)));

    // The flood alone first, for the rate without updates.
    let quiet = Duration::from_secs(seconds.div_ceil(4));
    let flooded = |floods: &[Flood; 2]| floods.iter().map(Flood::frames).sum::<u64>();
    let before = flooded(&floods);
    thread::sleep(quiet);
    let quiet_mpps = (flooded(&floods) - before) as f64 / quiet.as_secs_f64() / 1e6;

    let updating = Arc::new(AtomicBool::new(true));
    let applies = {
        let (iface, files, updating) = (a.iface.clone(), files.clone(), Arc::clone(&updating));
        thread::spawn(move || {
            let mut applied = 0u64;
            while updating.load(Ordering::Relaxed) {
                applied += 1;
                ok(&["apply", &iface, &files[(applied % 2) as usize]]);
            }
            applied
        })
    };
    let changes = {
        let (iface, updating) = (b.iface.clone(), Arc::clone(&updating));
        thread::spawn(move || {
            let mut changed = 0u64;
            let mut next = Instant::now();
            while updating.load(Ordering::Relaxed) {
                let rule = &extra[(changed / 2) as usize % extra.len()];
                let args: Vec<&str> = rule.split(' ').collect();
                let add = [&["rule", "add", &iface, "--action", "drop"], &args[..]].concat();
                let id = ok(&add);
                ok(&["rule", "del", &iface, id.trim()]);
                changed += 2;
                // At most 100 changes a second.
                next += Duration::from_millis(20);
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            changed
        })
    };
    let probes = a.probe(&sets, Arc::clone(&updating));
    let monitor = [&a, &b].map(|lab| lab.monitor(Arc::clone(&updating)));
    let senders = [&a, &b].map(|lab| lab.send(seconds));

    let started = Instant::now();
    let before = flooded(&floods);
    let sent: Vec<u64> = senders
        .into_iter()
        .map(|sender| sender.join().expect("sender").expect("datagrams sent"))
        .collect();
    let busy = started.elapsed();
    let busy_mpps = (flooded(&floods) - before) as f64 / busy.as_secs_f64() / 1e6;
    updating.store(false, Ordering::Relaxed);
    let applied = applies.join().expect("applies");
    let changed = changes.join().expect("rule changes");
    let probed = probes.join().expect("probes");
    let reads: Vec<Reads> = monitor
        .into_iter()
        .map(|monitor| monitor.join().expect("monitor"))
        .collect();
    // Datagrams still in flight land within a moment; then everything stops.
    let received: Vec<Vec<u64>> = receivers
        .into_iter()
        .zip(&sent)
        .map(|(receiver, sent)| receiver.wait_for(*sent))
        .collect();
    stop.store(true, Ordering::Relaxed);
    for flood in floods {
        flood.join();
    }

    println!(
        "soak {seconds} s: flood {quiet_mpps:.2} Mpps before the updates, {busy_mpps:.2} Mpps \
         during ({:.2}x); {applied} applies of 10,000 rules ({:.1}/s), {changed} rule adds and \
         dels on 1,000 ({:.1}/s); {} probe verdicts checked; {} and {} counter reads; \
         datagrams sent {sent:?}, received {:?}",
        busy_mpps / quiet_mpps,
        applied as f64 / busy.as_secs_f64(),
        changed as f64 / busy.as_secs_f64(),
        probed.checked,
        reads[0].reads,
        reads[1].reads,
        received.iter().map(Vec::len).collect::<Vec<_>>(),
    );
    assert!(
        probed.wrong.is_empty(),
        "verdicts no whole set gives:\n{}",
        probed.wrong.join("\n")
    );
    assert!(probed.checked > 0 && applied > 1 && changed > 1);
    for (lab, (sent, received)) in [&a, &b].iter().zip(sent.iter().zip(&received)) {
        let expected: Vec<u64> = (0..*sent).collect();
        assert!(
            *received == expected,
            "{}: {} of {sent} datagrams arrived, in order: lost or repeated {:?}; {}",
            lab.iface,
            received.len(),
            missing(received, *sent),
            lab.veth_drops()
        );
    }
    for (lab, reads) in [&a, &b].iter().zip(&reads) {
        assert!(
            reads.backwards.is_empty(),
            "{}: counters went back:\n{}",
            lab.iface,
            reads.backwards.join("\n")
        );
        assert!(reads.reads > 1, "{}: the counters were read", lab.iface);
    }
    for (lab, sent) in [&a, &b].iter().zip(&sent) {
        assert_eq!(lab.pass_rule_packets(), *sent, "{}", lab.iface);
    }
}

/// One attachment under test: a namespace pair with netxdp on the host end, in native mode
/// (the generator's frames reach it through the veth's XDP path).
///
/// The veth queues each frame for its receiver's softirq in a ring per receive queue, and
/// drops what a full ring cannot take. So the numbered datagrams have a queue of their own:
/// the peer has a queue per CPU, its first for CPU 0 (XPS), where the sender runs; the
/// generators run on the last CPU, whose frames the veth puts on the last queue.
struct Lab {
    _detach: DetachOnDrop,
    net: VethNet,
    iface: String,
    subnet: u8,
}

impl Lab {
    fn new(tag: &str, subnet: u8) -> Self {
        let net = VethNet::with_queues(tag, subnet, cpus()).expect("veth pair");
        let xps = format!("/sys/class/net/{}/queues/tx-0/xps_cpus", net.peer_if());
        // sysfs shows the devices of the namespace that mounted it: `ip netns exec` mounts
        // the namespace's own.
        let status = std::process::Command::new("ip")
            .args(["netns", "exec", net.namespace(), "sh", "-c"])
            .arg(format!("echo 1 > {xps}"))
            .status()
            .expect("ip netns exec");
        assert!(status.success(), "setting {xps}");
        let iface = net.host_if().to_owned();
        let detach = DetachOnDrop(iface.clone());
        ok(&["attach", &iface, "--mode", "native"]);
        Self {
            _detach: detach,
            net,
            iface,
            subnet,
        }
    }

    /// The rule that passes the numbered datagrams, tried first.
    fn pass_rule(&self) -> NewRule {
        let mut src = [0; 16];
        src[..4].copy_from_slice(&VethNet::peer_v4(self.subnet).octets());
        NewRule {
            action: Action::Pass,
            priority: 0,
            matches: Match {
                src: Prefix {
                    family: Family::Ipv4 as u8,
                    len: 32,
                    addr: src,
                },
                proto: 17,
                dport: PortRange {
                    first: PORT,
                    last: PORT,
                },
                ..Match::ANY
            },
            limit: net_common::limit::Limit::NONE,
        }
    }

    /// `count` rules of `shape` from `seed`, after the pass rule.
    fn set(&self, shape: Shape, seed: u64, count: usize) -> RuleSet {
        let rules: Vec<NewRule> = std::iter::once(self.pass_rule())
            .chain(support::new_rules(generate(shape, seed, count)))
            .collect();
        let mut set = RuleSet::default();
        set.replace(&rules).expect("valid rules");
        set
    }

    /// What the veth pair dropped itself, for a failure message.
    fn veth_drops(&self) -> String {
        let ip = |args: &[&str]| {
            let output = std::process::Command::new("ip").args(args).output();
            output.map_or_else(
                |error| error.to_string(),
                |output| String::from_utf8_lossy(&output.stdout).into_owned(),
            )
        };
        let host = ip(&["-s", "link", "show", "dev", &self.iface]);
        let peer = ip(&[
            "-n",
            self.net.namespace(),
            "-s",
            "link",
            "show",
            "dev",
            self.net.peer_if(),
        ]);
        format!("the veth pair's own counters:\n{host}{peer}")
    }

    /// The pass rule's packets, as `rule list` counts them.
    fn pass_rule_packets(&self) -> u64 {
        let record: Value =
            serde_json::from_str(&ok(&["rule", "list", &self.iface, "--json"])).expect("JSON");
        let port = PORT.to_string();
        record["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|rule| rule["action"] == "pass" && rule["dport"] == port.as_str())
            .and_then(|rule| rule["packets"].as_u64())
            .expect("the pass rule")
    }

    /// Floods the host end from the namespace until `stop`, spoofed sources to UDP 1500.
    fn flood(&self, generator: OwnedFd, stop: Arc<AtomicBool>) -> Flood {
        let frames = Arc::new(AtomicU64::new(0));
        let sent = Arc::clone(&frames);
        let peer = self.net.peer_if().to_owned();
        let thread = self.net.spawn_in_namespace(move || {
            pin_to(cpus() - 1)?;
            let ifindex = nix::net::if_::if_nametoindex(peer.as_str())?;
            let frame = netxdp::flood::frame(1500);
            while !stop.load(Ordering::Relaxed) {
                live_frames(generator.as_fd(), &frame, ifindex, FLOOD_CHUNK)?;
                sent.fetch_add(u64::from(FLOOD_CHUNK), Ordering::Relaxed);
            }
            Ok(())
        });
        Flood { frames, thread }
    }

    /// A socket on the host end that records the numbers of the datagrams it receives.
    fn receive(&self, stop: Arc<AtomicBool>) -> Receiver {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .expect("socket");
        // Room for every datagram of a minute: the socket never drops one.
        socket.set_recv_buffer_size(64 << 20).expect("SO_RCVBUF");
        let address = SocketAddr::new(IpAddr::V4(VethNet::host_v4(self.subnet)), PORT);
        socket.bind(&address.into()).expect("bind");
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let numbers = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&numbers);
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(8) = socket.recv(&mut buf) {
                    let number = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                    seen.lock().expect("lock").push(number);
                }
            }
        });
        Receiver { numbers, thread }
    }

    /// Sends `seconds` x [`DATAGRAMS_PER_SECOND`] numbered datagrams from the namespace, paced.
    fn send(&self, seconds: u64) -> thread::JoinHandle<anyhow::Result<u64>> {
        let to = SocketAddr::new(IpAddr::V4(VethNet::host_v4(self.subnet)), PORT);
        self.net.spawn_in_namespace(move || {
            pin_to(0)?;
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            let count = seconds * DATAGRAMS_PER_SECOND;
            let started = Instant::now();
            for number in 0..count {
                let due = started + Duration::from_secs(number) / DATAGRAMS_PER_SECOND as u32;
                thread::sleep(due.saturating_duration_since(Instant::now()));
                socket.send_to(&number.to_be_bytes(), to)?;
            }
            Ok(count)
        })
    }

    /// Runs probe frames through the pinned program until `updating` ends: each verdict must
    /// be one that `sets[0]` or `sets[1]` gives the frame, whole.
    fn probe(&self, sets: &[RuleSet; 2], updating: Arc<AtomicBool>) -> thread::JoinHandle<Probed> {
        let program = Xdp::from_pin(pins(&self.iface).prog(), XdpAttachType::Interface)
            .expect("the pinned program");
        let verdict = |set: &RuleSet, frame: &[u8]| {
            let packet = parse(&SliceFrame::new(frame));
            let policy = Action::Pass;
            classify(
                set.rules(),
                policy,
                Fragments::Policy,
                Malformed::Drop,
                &packet,
            )
            .action as u32
        };
        // Not the numbered datagrams' flow: its rule counts them alone.
        let pass_rule = self.pass_rule().matches;
        // Frames that every 50th rule of each set matches, and the sets' hit and miss frames:
        // most get the same verdict from both sets, many a different one.
        let frames: Vec<(Vec<u8>, [u32; 2])> = sets
            .iter()
            .flat_map(|set| {
                let rules: Vec<_> = generate_back(set);
                let matching: Vec<Vec<u8>> = set
                    .rules()
                    .iter()
                    .step_by(50)
                    .flat_map(|rule| {
                        [Family::Ipv4, Family::Ipv6]
                            .into_iter()
                            .filter_map(|family| frame_matching(&rule.matches, family))
                            .map(|spec| spec.build())
                    })
                    .collect();
                bench_frames(&rules)
                    .into_iter()
                    .map(|frame| frame.frame)
                    .chain(matching)
            })
            .filter(|frame| !pass_rule.matches(&parse(&SliceFrame::new(frame))))
            .map(|frame| {
                let verdicts = [verdict(&sets[0], &frame), verdict(&sets[1], &frame)];
                (frame, verdicts)
            })
            .collect();
        let differing = frames.iter().filter(|(_, [x, y])| x != y).count();
        assert!(
            differing > 10 && differing < frames.len() - 10,
            "{differing} of {} probes tell the sets apart",
            frames.len()
        );
        thread::spawn(move || {
            let fd = program.fd().expect("a loaded program").as_fd();
            let mut probed = Probed::default();
            while updating.load(Ordering::Relaxed) {
                for (frame, verdicts) in &frames {
                    let verdict = test_run(fd, frame).expect("a test run");
                    probed.checked += 1;
                    if !verdicts.contains(&verdict) && probed.wrong.len() < 10 {
                        probed.wrong.push(format!(
                            "verdict {verdict} where the sets give {verdicts:?}: {}",
                            support::hex(frame)
                        ));
                    }
                }
                // A round every few milliseconds: many a commit, without taking a CPU from
                // the rest.
                thread::sleep(Duration::from_millis(5));
            }
            probed
        })
    }

    /// Reads the counters until `updating` ends: totals, and each rule's by id.
    fn monitor(&self, updating: Arc<AtomicBool>) -> thread::JoinHandle<Reads> {
        let iface = self.iface.clone();
        thread::spawn(move || {
            let mut reads = Reads::default();
            let mut total = 0u64;
            let mut rules: HashMap<u64, u64> = HashMap::new();
            while updating.load(Ordering::Relaxed) {
                let stats: Value =
                    serde_json::from_str(&ok(&["stats", &iface, "-c", "1", "--json"]))
                        .expect("stats JSON");
                let now = stats["total"]["packets"].as_u64().expect("total packets");
                if now < total {
                    reads.backwards.push(format!("total {total} -> {now}"));
                }
                total = now;
                let record: Value =
                    serde_json::from_str(&ok(&["rule", "list", &iface, "--json"])).expect("JSON");
                let mut now_rules = HashMap::new();
                for rule in record["rules"].as_array().expect("rules") {
                    let (id, packets) = (rule["id"].as_u64(), rule["packets"].as_u64());
                    let (Some(id), Some(packets)) = (id, packets) else {
                        continue;
                    };
                    if rules.get(&id).is_some_and(|before| packets < *before) {
                        reads
                            .backwards
                            .push(format!("rule {id}: {} -> {packets}", rules[&id]));
                    }
                    now_rules.insert(id, packets);
                }
                rules = now_rules;
                reads.reads += 1;
                thread::sleep(Duration::from_millis(250));
            }
            reads
        })
    }
}

/// The online CPUs: at least two, one to send the numbered datagrams, one to flood.
fn cpus() -> usize {
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    assert!(
        cpus >= 2,
        "the soak needs two CPUs, one to flood and one to send"
    );
    cpus
}

/// Pins this thread to `cpu`.
fn pin_to(cpu: usize) -> std::io::Result<()> {
    let mut one = nix::sched::CpuSet::new();
    one.set(cpu).map_err(std::io::Error::from)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).map_err(std::io::Error::from)
}

/// The rules of `set` as the generator's, for its bench frames (hits and misses).
fn generate_back(set: &RuleSet) -> Vec<net_common::rulegen::GenRule> {
    set.rules()
        .iter()
        .map(|rule| net_common::rulegen::GenRule {
            matches: rule.matches,
            action: rule.action(),
            priority: rule.priority,
        })
        .collect()
}

fn write_file(dir: &Path, name: &str, set: &RuleSet) -> String {
    let path = dir.join(name);
    std::fs::write(&path, render_rules_file(set)).expect("write the rules file");
    path.to_str().expect("utf-8").to_owned()
}

/// `rule add` arguments for an exact rule's match: its source host.
fn match_args(matches: &Match) -> Vec<String> {
    vec![
        "--src".to_owned(),
        netxdp::filter::spec::prefix_text(&matches.src),
    ]
}

/// The numbers below `sent` not received once.
fn missing(received: &[u64], sent: u64) -> Vec<u64> {
    let mut counts = vec![0u32; sent as usize];
    for number in received {
        if let Some(count) = counts.get_mut(*number as usize) {
            *count += 1;
        }
    }
    counts
        .iter()
        .enumerate()
        .filter(|(_, count)| **count != 1)
        .map(|(number, _)| number as u64)
        .take(20)
        .collect()
}

struct Flood {
    frames: Arc<AtomicU64>,
    thread: thread::JoinHandle<anyhow::Result<()>>,
}

impl Flood {
    fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    fn join(self) {
        self.thread
            .join()
            .expect("generator thread")
            .expect("live frames");
    }
}

struct Receiver {
    numbers: Arc<Mutex<Vec<u64>>>,
    thread: thread::JoinHandle<()>,
}

impl Receiver {
    /// The numbers received, once `sent` have arrived or [`support::PATIENCE`] has passed.
    fn wait_for(self, sent: u64) -> Vec<u64> {
        let numbers = support::eventually(
            || self.numbers.lock().expect("lock").clone(),
            |numbers| numbers.len() as u64 >= sent,
        );
        drop(self.thread);
        numbers
    }
}

#[derive(Default)]
struct Probed {
    checked: u64,
    wrong: Vec<String>,
}

#[derive(Default)]
struct Reads {
    reads: u64,
    backwards: Vec<String>,
}
