//! The XDP program in the kernel, through BPF_PROG_TEST_RUN: verdicts and exact counter
//! deltas for hand-built frames, every truncation of them, and a large seeded differential
//! run against net-common's reference parser. The program is loaded with no rule set
//! written: policy pass, defective frames dropped.

mod support;

use aya::Ebpf;
use net_common::{
    frame::SliceFrame,
    parse::{Fragment, L3, L4, parse},
    rule::{Action, Fragments, Malformed, classify},
    stats::{Counter, Stats},
    testing::{Case, FrameGenerator, catalogue},
};
use netxdp::{counters::CounterMap, program};
use support::{hex, kernel_available, run_counted};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// The program loaded (not attached) with its counters.
struct Kernel {
    ebpf: Ebpf,
    counters: CounterMap,
}

impl Kernel {
    fn load() -> Self {
        let mut ebpf =
            program::load(None, program::Options::default()).expect("load the XDP program");
        let counters = CounterMap::take_from(&mut ebpf).expect("STATS map");
        Self { ebpf, counters }
    }

    /// Runs the program once on `frame`: its verdict, and what it added to the counters.
    fn run(&mut self, frame: &[u8]) -> (u32, Stats) {
        run_counted(&mut self.ebpf, &self.counters, frame)
    }
}

/// The counter delta one packet must cause, written from its expected class.
fn expected(len: usize, l3: L3, l4: L4, fragment: Fragment) -> Stats {
    let one = Counter {
        packets: 1,
        bytes: len as u64,
    };
    let mut stats = Stats::default();
    stats.action[XDP_PASS as usize] = one;
    stats.l3[l3 as usize] = one;
    stats.l4[l4 as usize] = one;
    if matches!(l3, L3::Ipv4 | L3::Ipv6) && fragment == Fragment::Later {
        stats.no_l4 = one;
    }
    stats
}

/// The verdict and counter delta the reference says a frame gets from a program with no rule
/// set written.
fn reference(frame: &[u8]) -> (u32, Stats) {
    let packet = parse(&SliceFrame::new(frame));
    let verdict = classify(
        &[],
        Action::Pass,
        Fragments::Policy,
        Malformed::Drop,
        &packet,
    );
    let mut stats = Stats::default();
    stats.record(&packet, verdict.action as u32, verdict.reason.code());
    (verdict.action as u32, stats)
}

#[test]
fn every_frame_kind_is_passed_and_counted_exactly() {
    if !kernel_available("every_frame_kind_is_passed_and_counted_exactly") {
        return;
    }
    let mut kernel = Kernel::load();
    let cases = catalogue();
    assert!(cases.len() >= 16);
    for Case {
        name,
        spec,
        l3,
        l4,
        fragment,
        ..
    } in cases
    {
        let frame = spec.build();
        let (verdict, delta) = kernel.run(&frame);
        assert_eq!(verdict, XDP_PASS, "{name}");
        assert_eq!(
            delta,
            expected(frame.len(), l3, l4, fragment),
            "{name}: {}",
            hex(&frame)
        );
    }
}

#[test]
fn every_truncation_is_counted_as_the_reference_says() {
    if !kernel_available("every_truncation_is_counted_as_the_reference_says") {
        return;
    }
    let mut kernel = Kernel::load();
    let mut checked = 0;
    let mut expected_checks = 0;
    for Case {
        name,
        spec,
        l3,
        l4,
        fragment,
        ..
    } in catalogue()
    {
        let frame = spec.build();
        expected_checks += frame.len() - 13;
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header; the host tests
        // cover those lengths.
        for len in 14..=frame.len() {
            let cut = &frame[..len];
            let (verdict, delta) = kernel.run(cut);
            assert_eq!(
                (verdict, delta),
                reference(cut),
                "{name} cut at {len}: {}",
                hex(cut)
            );
            if len == frame.len() {
                assert_eq!(delta, expected(len, l3, l4, fragment), "{name} whole");
            } else if matches!(l3, L3::Ipv4 | L3::Ipv6) && len >= 14 + 4 * spec.vlans.len() {
                assert_eq!(
                    delta.malformed.packets, 1,
                    "{name} cut at {len} is malformed"
                );
                assert_eq!(verdict, XDP_DROP, "{name} cut at {len} is dropped");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, expected_checks);
}

#[test]
fn kernel_agrees_with_reference_on_100k_random_and_mutated_frames() {
    if !kernel_available("kernel_agrees_with_reference_on_100k_random_and_mutated_frames") {
        return;
    }
    let seed = std::env::var("NETXDP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6e65_7478_6470);
    let frames = 100_000;
    let mut generator = FrameGenerator::new(seed);
    let mut kernel = Kernel::load();
    let mut total = Stats::default();
    let mut reference_total = Stats::default();
    for index in 0..frames {
        let frame = generator.next_frame();
        let (verdict, delta) = kernel.run(&frame);
        let (want_verdict, want) = reference(&frame);
        assert_eq!(
            (verdict, delta),
            (want_verdict, want),
            "seed {seed:#x}, frame {index}: {}\nreference: {:?}",
            hex(&frame),
            parse(&SliceFrame::new(&frame))
        );
        total.merge(&delta);
        reference_total.merge(&want);
    }
    assert_eq!(total, reference_total);
    // The generator must reach every class, or the agreement proves little.
    for (i, l3) in total.l3.iter().enumerate() {
        assert!(l3.packets > 1000, "L3 class {i} seen {} times", l3.packets);
    }
    for (i, l4) in total.l4.iter().enumerate() {
        assert!(l4.packets > 1000, "L4 class {i} seen {} times", l4.packets);
    }
    assert!(total.malformed.packets > 5000, "{:?}", total.malformed);
    // Every kind of defect, dropped for it: the drop reasons after `fragment`, up to `ban`,
    // `limit` and `syn_cookie`, which need a ban, a limit and the SYN guard.
    let defects = 1..net_common::stats::DROP_REASONS.len() - 3;
    for (index, dropped) in total
        .dropped
        .iter()
        .enumerate()
        .take(defects.end)
        .skip(defects.start)
    {
        assert!(
            dropped.packets > 100,
            "drop reason {index} seen {dropped:?}"
        );
    }
    assert_eq!(
        total.dropped[0],
        Counter::default(),
        "no --fragments drop here"
    );
    assert_eq!(total.total().packets, frames);
}

#[test]
fn the_flow_table_counts_every_flow_from_its_second_packet_and_reads_back_in_batches() {
    let test = "the_flow_table_counts_every_flow_from_its_second_packet_and_reads_back_in_batches";
    if !kernel_available(test) {
        return;
    }
    // Test runs run on this thread's CPU, where the program keeps its admission state.
    netxdp::traffic::pin_to_this_cpu().expect("pin to one CPU");
    let mut kernel = Kernel::load();
    let flows = netxdp::flows::FlowTable::take_from(&mut kernel.ebpf).expect("FLOWS map");
    // 7,000 source ports, each sent 1 to 3 times: the 4,667 sent more than once are flows,
    // more than one batch reads (4,096).
    let mut sent = 0;
    for port in 0..7_000u16 {
        let frame = net_common::testing::FrameSpec::ipv4_udp(10_000 + port, 53, 10).build();
        for _ in 0..=(port % 3) {
            kernel.run(&frame);
            sent += 1;
        }
    }
    let single = 7_000u64.div_ceil(3);
    assert_eq!(flows.count().expect("count"), 7_000 - single as usize);
    let read = flows.read().expect("read the flow table");
    assert_eq!(read.len(), 7_000 - single as usize);
    let packets: u64 = read.iter().map(|(_, flow)| flow.packets).sum();
    assert_eq!(packets, sent - single);
    for (key, flow) in &read {
        assert_eq!(
            flow.packets,
            u64::from((key.sport - 10_000) % 3) + 1,
            "{key:?}"
        );
        assert_eq!(flow.bytes, flow.packets * 52, "{key:?}");
        assert_eq!(key.dport, 53);
        assert_eq!(flow.action, XDP_PASS as u8);
    }
}

#[test]
fn the_source_table_holds_what_the_reference_counts_on_a_seeded_mix() {
    use net_common::source::{SOURCE_SLOTS, SourceKey, SourceSlot, count_source, slots_of};
    use std::collections::BTreeMap;

    if !kernel_available("the_source_table_holds_what_the_reference_counts_on_a_seeded_mix") {
        return;
    }
    // Test runs run on this thread's CPU: its slots are the ones the reference plays.
    netxdp::traffic::pin_to_this_cpu().expect("pin to one CPU");
    let mut kernel = Kernel::load();
    let table = netxdp::sources::SourceTable::take_from(&mut kernel.ebpf).expect("SOURCES map");
    let mut reference_slots = vec![SourceSlot::default(); SOURCE_SLOTS as usize];
    let mut generator = FrameGenerator::new(0x50_0ce5);
    // Random frames (every kind, defective ones dropped), many more prefixes than slots, and
    // every fourth frame from one of five heavy /24s.
    for n in 0..20_000u32 {
        let frame = if n % 4 == 0 {
            let mut frame = net_common::testing::FrameSpec::ipv4_udp(1, 2, 0).build();
            frame[26..30].copy_from_slice(&[203, 0, 113 + (n % 5) as u8, n as u8]);
            frame
        } else {
            generator.next_frame()
        };
        let (verdict, _) = kernel.run(&frame);
        assert_eq!(verdict, reference(&frame).0, "{}", hex(&frame));
        let key = SourceKey::of(&parse(&SliceFrame::new(&frame)));
        let (first, second) = slots_of(&key);
        let [first, second] = reference_slots
            .get_disjoint_mut([first as usize, second as usize])
            .expect("two distinct slots");
        let dropped = verdict == XDP_DROP;
        count_source(first, second, key, dropped, frame.len() as u32, 0);
    }
    let counts = |slot: (SourceKey, Counter, Counter, u64)| slot;
    let expected: BTreeMap<SourceKey, _> = reference_slots
        .iter()
        .filter(|slot| slot.dropped.packets + slot.passed.packets > 0)
        .map(|slot| {
            (
                slot.key,
                counts((slot.key, slot.dropped, slot.passed, slot.inherited)),
            )
        })
        .collect();
    let found: BTreeMap<SourceKey, _> = table
        .read()
        .expect("read the source table")
        .into_iter()
        .map(|s| {
            (
                s.key,
                counts((s.key, s.dropped, s.passed, s.uncounted_at_most)),
            )
        })
        .collect();
    assert!(
        expected.len() > 500,
        "the mix fills the table: {}",
        expected.len()
    );
    let differing: Vec<String> = expected
        .keys()
        .chain(found.keys())
        .filter(|key| expected.get(key) != found.get(key))
        .take(5)
        .map(|key| {
            format!(
                "{key:?}: kernel {:?}, reference {:?}",
                found.get(key),
                expected.get(key)
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "{} prefixes in the kernel, {} in the reference; first differences:\n{}",
        found.len(),
        expected.len(),
        differing.join("\n")
    );
    // The heavy prefixes kept their slots from their first packet.
    for third in 113..118 {
        let heavy = SourceKey {
            prefix: [203, 0, third, 0, 0, 0, 0, 0],
            family: 4,
            _pad: 0,
        };
        let (_, _, passed, inherited) = found[&heavy];
        assert_eq!(
            (passed.packets, inherited),
            (1_000, 0),
            "203.0.{third}.0/24"
        );
    }
}

#[test]
fn bans_drop_their_sources_before_the_rules_until_they_end() {
    use std::time::Duration;

    use net_common::{
        ban::{BanEntry, banned},
        rule::{Family, Prefix, reason},
        testing::{FrameSpec, Transport, ipv6_with},
    };
    use netxdp::{bans::BanTable, clock::coarse_monotonic_ns, filter::spec::parse_prefix};

    if !kernel_available("bans_drop_their_sources_before_the_rules_until_they_end") {
        return;
    }
    let mut kernel = Kernel::load();
    let mut bans = BanTable::take_from(&mut kernel.ebpf).expect("the ban maps");
    let v4 = FrameSpec::ipv4_udp(5353, 53, 10).build();
    let v6 = ipv6_with(
        Vec::new(),
        Transport::Udp {
            sport: 5353,
            dport: 53,
            payload: 10,
        },
    )
    .build();
    let arp = catalogue()
        .into_iter()
        .find(|case| case.l3 == L3::Arp && case.spec.vlans.is_empty())
        .expect("an ARP frame")
        .spec
        .build();
    let prefix = |text: &str| -> Prefix { parse_prefix(text).expect("a prefix").0 };
    // The bans as the reference sees them, beside the kernel's.
    let mut reference: Vec<(Prefix, BanEntry)> = Vec::new();
    let mut ban = |bans: &mut BanTable, text: &str, duration: Duration| {
        let added = bans.add(prefix(text), duration).expect("ban");
        reference.retain(|(known, _)| *known != added.prefix);
        reference.push((
            added.prefix,
            BanEntry {
                expires_ns: added.expires_ns,
            },
        ));
        reference.clone()
    };
    // Each frame's verdict and ban count, and the reference's verdict.
    let check = |kernel: &mut Kernel, reference: &[(Prefix, BanEntry)], frame: &[u8]| {
        let (verdict, delta) = kernel.run(frame);
        let packet = parse(&SliceFrame::new(frame));
        let expected = banned(reference, &packet, coarse_monotonic_ns());
        let ban_drops = delta.dropped[reason::BAN as usize - reason::FRAGMENT as usize].packets;
        assert_eq!(
            (verdict == XDP_DROP, ban_drops),
            (expected, u64::from(expected)),
            "{}: the kernel and the reference disagree",
            hex(frame)
        );
        verdict
    };

    for frame in [&v4, &v6, &arp] {
        assert_eq!(check(&mut kernel, &[], frame), XDP_PASS, "no bans");
    }
    let reference = ban(&mut bans, "198.18.0.0/24", Duration::from_secs(3600));
    assert_eq!(check(&mut kernel, &reference, &v4), XDP_DROP);
    assert_eq!(check(&mut kernel, &reference, &v6), XDP_PASS);
    assert_eq!(
        check(&mut kernel, &reference, &arp),
        XDP_PASS,
        "neighbour traffic is never banned"
    );
    let reference = ban(&mut bans, "fd00::/64", Duration::from_secs(3600));
    assert_eq!(check(&mut kernel, &reference, &v6), XDP_DROP);
    // A longer prefix whose ban has ended decides: the source is not banned any more. Its
    // end is now, which the kernel's clock, cached once a tick per CPU, reaches within a
    // tick.
    let reference = ban(&mut bans, "198.18.0.2/32", Duration::ZERO);
    let packet = parse(&SliceFrame::new(&v4));
    assert!(!banned(&reference, &packet, coarse_monotonic_ns()));
    let verdict = support::eventually(|| kernel.run(&v4).0, |verdict| *verdict == XDP_PASS);
    assert_eq!(
        verdict, XDP_PASS,
        "the ended ban on the longer prefix decides"
    );
    assert!(bans.remove(prefix("198.18.0.2/32")).expect("remove"));
    let reference: Vec<_> = reference
        .into_iter()
        .filter(|(known, _)| *known != prefix("198.18.0.2/32"))
        .collect();
    assert_eq!(check(&mut kernel, &reference, &v4), XDP_DROP);
    let listed: Vec<Family> = bans
        .list()
        .expect("list")
        .iter()
        .map(|ban| ban.prefix.family())
        .collect();
    assert_eq!(listed, [Family::Ipv4, Family::Ipv6]);
    for text in ["198.18.0.0/24", "fd00::/64"] {
        assert!(bans.remove(prefix(text)).expect("remove"));
    }
    for frame in [&v4, &v6] {
        assert_eq!(check(&mut kernel, &[], frame), XDP_PASS, "bans lifted");
    }
}
