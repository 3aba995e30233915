//! Capture expressions in the kernel against libpcap's own evaluation.
//!
//! Each expression is compiled by libpcap, translated by netxdp, loaded into the kernel as
//! the capture path loads it (its program array and decision map made here), and run by
//! BPF_PROG_TEST_RUN on 100,000 seeded random and mutated frames, whose addresses and ports
//! are drawn mostly from the ones the expressions name. `pcap_offline_filter` evaluates the
//! same expression on the same frames: the verdicts must be identical, frame for frame.

mod support;

use std::os::fd::{AsFd as _, OwnedFd};

use aya::maps::{IterableMap as _, Map, MapData, PerCpuArray, PerCpuValues};
use net_common::{
    capture::{COPY_SLOT, Decision},
    testing::{Body, Extension, FrameGenerator, Transport, damage, evade},
};
use netxdp::{
    bpf_syscall::{MapSpec, create_map, load_xdp_program, set_fd_element, test_run},
    capture::{
        ebpf::{Insn, R0},
        expression::Expression,
    },
};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

/// What the stashed decision says (the packet's action), and what the stand-in for the
/// copy program returns: the expression's verdict, told apart.
const ACTION: u32 = 1; // XDP_DROP
const COPIED: u32 = 3; // XDP_TX

const FRAMES: usize = 100_000;
/// IP protocol number of the authentication header.
const AH: u8 = 51;

/// Expressions of every kind pcap-filter(7) offers that an Ethernet capture can use.
const EXPRESSIONS: &[&str] = &[
    // Protocols.
    "ip",
    "ip6",
    "arp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "ip proto 47",
    "ip6 proto 59",
    "proto 132",
    "not (udp or tcp)",
    // Hosts and nets, IPv4 and IPv6.
    "host 198.18.0.1",
    "src host 198.18.0.2",
    "dst host 198.18.0.1 or dst host 10.1.2.3",
    "net 198.18.0.0/16",
    "src net 198.18.5.0/24",
    "not net 10.0.0.0/8",
    "host fd00::1",
    "src net fd00::/16",
    "ip6 dst host fd00:1::5",
    "ip host 198.18.0.1 and not ip6",
    // Ports.
    "port 53",
    "udp dst port 7777",
    "tcp src port 443",
    "portrange 1024-1030",
    "tcp dst portrange 20-25",
    "udp port 53 or tcp port 80",
    "ip and (tcp or udp) and not port 22",
    "(host 198.18.0.1 and port 80) or (host 198.18.0.2 and not port 53)",
    // VLANs: the tags shift every offset after them.
    "vlan",
    "vlan 100",
    "vlan and ip",
    "vlan 100 and vlan 101 and udp",
    "vlan and tcp[13] & 2 != 0",
    "vlan and ip6 and udp dst port 7777",
    // IPv6 extension headers.
    "ip6 protochain 6",
    "ip6 protochain 17",
    "ip protochain 17",
    "ip6 protochain 6 or ip6 protochain 17 or ip6 protochain 58",
    "ip6 and ip6[6] = 44",
    // TCP flags and byte offsets.
    "tcp[13] & 2 != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn",
    "tcp[tcpflags] & tcp-rst != 0",
    "tcp and (tcp[tcpflags] & tcp-fin) != 0 and len > 60",
    "tcp[12] >> 4 > 5",
    "icmp[icmptype] = icmp-echo",
    "icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply",
    "icmp6 and ip6[40] = 128",
    "ip[8] < 64",
    "ip[6:2] & 0x1fff != 0",
    "ip[2:2] > 40",
    "ip[0] & 0xf > 5",
    "ip[1] & 0xfc = 0xb8",
    "udp[4:2] > 20",
    "udp and udp[8:4] = 0",
    "ether[12:2] = 0x0800",
    // Lengths.
    "len > 100",
    "len <= 64",
    "greater 200",
    "less 80",
    // Ethernet addresses.
    "ether src 02:4e:58:00:00:02",
    "ether dst 02:4e:58:00:00:01",
    "ether broadcast",
    "ether multicast",
    "ip6 multicast",
    // Arithmetic on packet values: shifts by 32 or more, division and modulus by 0.
    "ip[2:2] - ((ip[0] & 0xf) << 2) > 50",
    "tcp[0:2] % 7 = 3",
    "udp[0:2] / 100 = 0",
    "(ip[2:2] << (ip[9] & 0x3f)) > 1000",
    "(ip[2:2] >> (ip[8] & 0x3f)) = 0",
    "ip[2:2] / ((ip[8] & 3) ^ (ip[0] & 1)) > 10",
    "ip[2:2] % (ip[8] & 1) = 0",
    "ip[2:2] * ip[8] > 10000 and ip[2:2] & ip[8] != 0 or ip[2:2] ^ ip[8] = 7",
];

const V4_POOL: [[u8; 4]; 4] = [
    [198, 18, 0, 1],
    [198, 18, 0, 2],
    [198, 18, 5, 9],
    [10, 1, 2, 3],
];
const PORT_POOL: [u16; 10] = [53, 80, 443, 7777, 22, 1024, 1030, 20, 25, 1031];

fn v6_pool(rng: &mut ChaCha8Rng) -> [u8; 16] {
    let mut address = [0u8; 16];
    address[0] = 0xfd;
    match rng.random_range(0..3) {
        0 => address[15] = 1,
        1 => address[15] = 2,
        _ => {
            address[3] = 1;
            address[15] = 5;
        }
    }
    address
}

/// A test frame, and whether libpcap's `protochain` loop ends on it: libpcap 1.10 loops
/// forever on some AH headers (see `netxdp::capture::translate`), so `protochain` is only
/// compared on frames without one, which a mutated frame may have grown.
struct Frame {
    bytes: Vec<u8>,
    protochain_safe: bool,
}

/// Random frames of every kind, their addresses and ports mostly from the pools.
fn frames(seed: u64) -> Vec<Frame> {
    let mut generator = FrameGenerator::new(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x00c0_ffee);
    (0..FRAMES)
        .map(|_| {
            let mut spec = generator.spec();
            let pooled = rng.random_bool(0.8);
            match spec.body {
                Body::Ipv4 {
                    ref mut src,
                    ref mut dst,
                    ref mut transport,
                    ..
                } if pooled => {
                    *src = V4_POOL[rng.random_range(0..V4_POOL.len())];
                    *dst = V4_POOL[rng.random_range(0..V4_POOL.len())];
                    pool_ports(&mut rng, transport);
                }
                Body::Ipv6 {
                    ref mut src,
                    ref mut dst,
                    ref mut transport,
                    ..
                } if pooled => {
                    *src = v6_pool(&mut rng);
                    *dst = v6_pool(&mut rng);
                    pool_ports(&mut rng, transport);
                }
                _ => {}
            }
            let has_ah = match &spec.body {
                Body::Ipv6 {
                    extensions,
                    transport,
                    ..
                } => {
                    extensions
                        .iter()
                        .any(|extension| matches!(extension, Extension::Authentication { .. }))
                        || transport.protocol() == AH
                }
                Body::Ipv4 { transport, .. } => transport.protocol() == AH,
                _ => false,
            };
            let mut whole = evade(&mut rng, spec.build());
            if rng.random_bool(0.05) {
                whole[..6].fill(0xff);
            }
            let bytes = damage(&mut rng, whole.clone(), 5);
            Frame {
                protochain_safe: !has_ah && bytes == whole,
                bytes,
            }
        })
        .collect()
}

fn pool_ports(rng: &mut ChaCha8Rng, transport: &mut Transport) {
    if let Transport::Tcp { sport, dport, .. } | Transport::Udp { sport, dport, .. } = transport {
        *sport = PORT_POOL[rng.random_range(0..PORT_POOL.len())];
        *dport = PORT_POOL[rng.random_range(0..PORT_POOL.len())];
    }
}

/// The maps a translated expression refers to, as an attachment has them: a program array
/// whose copy slot holds a stand-in returning [`COPIED`], and the per-CPU decision.
struct Harness {
    programs: OwnedFd,
    decision: PerCpuArray<MapData, Decision>,
    _copy: OwnedFd,
}

impl Harness {
    fn new() -> Harness {
        let programs = create_map(MapSpec {
            map_type: 3, // BPF_MAP_TYPE_PROG_ARRAY
            key_size: 4,
            value_size: 4,
            max_entries: 2,
            ..MapSpec::default()
        })
        .expect("a program array");
        let copy: Vec<[u8; 8]> = [Insn::mov32_imm(R0, COPIED), Insn::exit()]
            .iter()
            .map(Insn::encode)
            .collect();
        let copy = load_xdp_program(&copy, "copy_stand_in").expect("the copy stand-in");
        set_fd_element(programs.as_fd(), COPY_SLOT, copy.as_fd()).expect("the copy slot");
        let decision = create_map(MapSpec {
            map_type: 6, // BPF_MAP_TYPE_PERCPU_ARRAY
            key_size: 4,
            value_size: size_of::<Decision>() as u32,
            max_entries: 1,
            ..MapSpec::default()
        })
        .expect("a decision map");
        let decision = MapData::from_fd(decision).expect("the decision map");
        let mut decision: PerCpuArray<MapData, Decision> =
            PerCpuArray::try_from(Map::PerCpuArray(decision)).expect("a per-CPU array");
        let cpus = aya::util::nr_cpus().expect("CPUs");
        let stashed = Decision {
            action: ACTION,
            rule_id: 0,
            reason: 0,
            loop_budget: net_common::capture::EXPRESSION_LOOP_BUDGET,
        };
        decision
            .set(
                0,
                PerCpuValues::try_from(vec![stashed; cpus]).expect("values"),
                0,
            )
            .expect("the stashed decision");
        Harness {
            programs,
            decision,
            _copy: copy,
        }
    }

    fn load(&self, expression: &Expression) -> OwnedFd {
        expression
            .load(self.programs.as_fd(), self.decision.map().fd().as_fd())
            .unwrap_or_else(|error| panic!("{:?}: {error:#}", expression.text()))
    }
}

#[test]
fn kernel_and_libpcap_agree_on_every_frame_for_every_expression() {
    if !support::kernel_available("capture expressions against libpcap") {
        return;
    }
    assert!(EXPRESSIONS.len() >= 50);
    let harness = Harness::new();
    let frames = frames(0x17_2026);
    let mut disagreements = Vec::new();
    let mut matched_somewhere = 0;
    for text in EXPRESSIONS {
        let expression =
            Expression::compile(text, 65_535).unwrap_or_else(|error| panic!("{error}"));
        let program = harness.load(&expression);
        let libpcap = pcap::Capture::dead(pcap::Linktype::ETHERNET)
            .expect("a dead handle")
            .compile(text, true)
            .expect("libpcap compiles it");
        let mut matches = 0;
        let mut compared = 0;
        for frame in &frames {
            // The kernel's program must end, and with one of its two answers, on every frame.
            let kernel = test_run(program.as_fd(), &frame.bytes).expect("a test run");
            assert!(
                kernel == COPIED || kernel == ACTION,
                "{text:?} returned {kernel}, neither the copy's {COPIED} nor the action \
                 {ACTION}, on {}",
                support::hex(&frame.bytes)
            );
            if text.contains("protochain") && !frame.protochain_safe {
                continue;
            }
            compared += 1;
            let frame = &frame.bytes;
            let wanted = libpcap.filter(frame);
            matches += usize::from(wanted);
            if (kernel == COPIED) != wanted && disagreements.len() < 20 {
                disagreements.push(format!(
                    "{text:?}: libpcap {wanted}, kernel {} on {}",
                    kernel == COPIED,
                    support::hex(frame)
                ));
            }
        }
        // Each expression must be exercised both ways, or agreeing proves little.
        eprintln!("{text:?}: {matches} of {compared} frames match");
        assert!(
            compared > FRAMES / 3,
            "{text:?}: only {compared} frames compared"
        );
        if matches > 0 && matches < compared {
            matched_somewhere += 1;
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    assert!(
        matched_somewhere >= EXPRESSIONS.len() - 2,
        "only {matched_somewhere} of {} expressions both matched and missed",
        EXPRESSIONS.len()
    );
}
