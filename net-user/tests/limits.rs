//! Rate limits in the kernel, through BPF_PROG_TEST_RUN, held to net-common's reference
//! (`net_common::limit::Limiter`): the program is loaded with its test clock, so that kernel
//! and reference see the same packet times. Every frame's verdict and drop reason must be the
//! reference's, and every rule's counts of packets, limit drops and bans issued too; then two
//! CPUs charging one key at once must pass exactly its burst.

mod support;

use std::collections::HashMap;

use aya::{
    Ebpf,
    programs::{TestRun as _, TestRunOptions},
};
use net_common::{
    frame::SliceFrame,
    limit::{ADMIT_PER_SEC, Limiter, RECENT_TICK_SHIFT, RECENT_TICKS},
    parse::parse,
    rule::{Action, Reason, reason},
    stats::Stats,
    testing::{Body, FrameSpec, Transport, catalogue},
};
use netxdp::{
    counters::CounterMap,
    filter::{
        FilterMaps, NewRule, RuleSet,
        limit::LimitText,
        spec::{build_match, parse_ports, parse_prefix, parse_proto},
    },
    program::{self, TestClock},
};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng as StdRng;
use support::{hex, kernel_available, run_counted};

/// The program loaded with its test clock, with its counters and filter maps, and the
/// reference beside it.
struct Limits {
    ebpf: Ebpf,
    counters: CounterMap,
    maps: FilterMaps,
    clock: TestClock,
    set: RuleSet,
    reference: Limiter,
}

impl Limits {
    fn load() -> Self {
        let options = program::Options {
            test_clock: true,
            ..Default::default()
        };
        let mut ebpf = program::load(None, options).expect("load the XDP program");
        Self {
            counters: CounterMap::take_from(&mut ebpf).expect("STATS map"),
            maps: FilterMaps::take_from(&mut ebpf).expect("filter maps"),
            clock: TestClock::take_from(&mut ebpf).expect("the test clock"),
            ebpf,
            set: RuleSet::default(),
            reference: Limiter::default(),
        }
    }

    fn apply(&mut self, rules: &[NewRule]) {
        let mut set = self.maps.load().expect("load the rule set");
        set.replace(rules).expect("valid rules");
        self.maps.commit(&mut set).expect("commit");
        self.set = set;
    }

    /// Runs `frame` at `now_ns` and compares with the reference: the verdict and every
    /// counter of the block (drop reasons included). Returns the reference's verdict reason.
    fn check(&mut self, frame: &[u8], now_ns: u64) -> Result<Reason, String> {
        let packet = parse(&SliceFrame::new(frame));
        let settings = (self.set.policy, self.set.fragments, self.set.malformed);
        let want = self
            .reference
            .classify(self.set.rules(), settings, &packet, now_ns);
        let mut want_counted = Stats::default();
        want_counted.record(&packet, want.action as u32, want.reason.code());
        self.clock.set(now_ns).expect("set the clock");
        let (verdict, mut delta) = run_counted(&mut self.ebpf, &self.counters, frame);
        delta.searched = Default::default();
        if verdict != want.action as u32 || delta != want_counted {
            return Err(format!(
                "at {now_ns} ns, frame {}\nparsed {packet:?}\nreference {want:?}\nkernel verdict \
                 {verdict}\nkernel counted {delta:?}\nreference counts {want_counted:?}",
                hex(frame)
            ));
        }
        Ok(want.reason)
    }
}

/// A rule from text, as `rule add` reads it.
fn rule(priority: u32, proto: &str, dport: &str, limit: LimitText) -> NewRule {
    let matches = build_match(
        parse_prefix("any").expect("any").0,
        parse_prefix("any").expect("any").0,
        parse_proto(proto).expect("proto"),
        net_common::rule::PortRange::ANY,
        parse_ports(dport).expect("ports"),
        net_common::rule::ICMP_TYPE_ANY,
    )
    .expect("a match");
    let is_limit = limit.rate.is_some();
    NewRule {
        action: if is_limit {
            Action::Limit
        } else {
            Action::Pass
        },
        priority,
        matches,
        limit: limit.limit(is_limit).expect("a limit"),
    }
}

fn limit<'a>(rate: &'a str, burst: u64, per: &'a str, ban: Option<&'a str>) -> LimitText<'a> {
    LimitText {
        rate: Some(rate),
        burst: Some(burst),
        per: Some(per),
        ban,
    }
}

/// Every kind of limit: per source, flow (bytes, with a ban), source /24 (with a ban),
/// destination /24, the rule, and source /24 or /64; then a pass rule for the rest of UDP.
fn limit_rules() -> Vec<NewRule> {
    vec![
        rule(10, "udp", "53", limit("50/s", 5, "src", None)),
        rule(20, "tcp", "any", limit("8kbit/s", 3000, "flow", Some("1s"))),
        rule(30, "icmp", "any", limit("20/s", 3, "src/24", Some("2s"))),
        rule(40, "udp", "1000-2000", limit("5/s", 10, "dst/24", None)),
        rule(50, "icmpv6", "any", limit("10/s", 2, "rule", None)),
        rule(60, "udp", "3000-4000", limit("20/s", 5, "src/24/64", None)),
        rule(70, "udp", "any", LimitText::default()),
    ]
}

/// A source from a small pool, so that keys repeat: four IPv4 hosts in two /24s and four
/// IPv6 hosts in two /64s.
fn pooled_source(rng: &mut StdRng, ipv6: bool) -> [u8; 16] {
    let host = rng.random_range(1..=4u8);
    let net = rng.random_range(0..2u8);
    let mut addr = [0; 16];
    if ipv6 {
        addr[0] = 0xfd;
        addr[7] = net;
        addr[15] = host;
    } else {
        addr[..4].copy_from_slice(&[198, 18, net, host]);
    }
    addr
}

/// A random frame of the kinds the rules name, from `src` (IPv4 in its first 4 bytes).
fn frame_from(rng: &mut StdRng, src: [u8; 16], ipv6: bool) -> Vec<u8> {
    let dport = [53, 1000 + rng.random_range(0..4u16), 3500, 9000][rng.random_range(0..4)];
    let transport = match rng.random_range(0..4) {
        0 => Transport::Tcp {
            sport: 40_000,
            dport: 80,
            flags: 0x10,
            payload: rng.random_range(0..1400),
        },
        1 if !ipv6 => Transport::Icmp {
            icmp_type: 8,
            code: 0,
            payload: 16,
        },
        1 => Transport::Icmpv6 {
            icmp_type: 128,
            code: 0,
            payload: 16,
        },
        _ => Transport::Udp {
            sport: 5353,
            dport,
            payload: rng.random_range(0..200),
        },
    };
    let mut dst = [0; 16];
    let body = if ipv6 {
        dst[0] = 0xfd;
        dst[15] = rng.random_range(1..=2);
        Body::Ipv6 {
            src,
            dst,
            extensions: Vec::new(),
            transport,
        }
    } else {
        Body::Ipv4 {
            src: [src[0], src[1], src[2], src[3]],
            dst: [198, 19, rng.random_range(0..2), 1],
            fragment: 0,
            option_words: 0,
            transport,
        }
    };
    FrameSpec {
        vlans: Vec::new(),
        body,
    }
    .build()
}

/// Per rule id: packets matched, dropped by the limit, and bans issued.
fn tallies(limits: &Limits) -> HashMap<u32, (u64, u64, u64)> {
    limits
        .set
        .rules()
        .iter()
        .map(|rule| {
            let counter = limits.maps.counter(rule).expect("counter");
            (rule.id, (counter.packets, counter.limited, counter.bans))
        })
        .collect()
}

#[test]
fn limits_agree_with_the_reference_on_a_timed_mix_and_a_spoofed_flood() {
    if !kernel_available("limits_agree_with_the_reference_on_a_timed_mix_and_a_spoofed_flood") {
        return;
    }
    let seed = std::env::var("NETXDP_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x11_2026);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut limits = Limits::load();
    limits.apply(&limit_rules());
    let mut want: HashMap<u32, (u64, u64, u64)> = HashMap::new();
    let mut bans_before = 0;
    let mut tally = |limits: &Limits, reason: Reason, want: &mut HashMap<u32, (u64, u64, u64)>| {
        match reason {
            Reason::Rule(id) => want.entry(id).or_default().0 += 1,
            Reason::Limit(id) => {
                let entry = want.entry(id).or_default();
                entry.0 += 1;
                entry.1 += 1;
                entry.2 += limits.reference.bans_issued - bans_before;
            }
            _ => {}
        }
        bans_before = limits.reference.bans_issued;
    };
    // The kernel's clock starts far from 0, as a booted machine's does.
    let mut now_ns: u64 = 1_000_000_000_000;
    let catalogue: Vec<Vec<u8>> = catalogue()
        .into_iter()
        .map(|case| case.spec.build())
        .collect();
    let mut kinds: HashMap<&str, u64> = HashMap::new();
    for round in 0..40_000 {
        now_ns += rng.random_range(0..3_000_000);
        if round % 5_000 == 4_999 {
            // A pause longer than any burst and ban: every bucket refills.
            now_ns += 3_000_000_000;
        }
        let frame = if rng.random_range(0..20) == 0 {
            catalogue[rng.random_range(0..catalogue.len())].clone()
        } else {
            let ipv6 = rng.random_bool(0.3);
            let src = pooled_source(&mut rng, ipv6);
            frame_from(&mut rng, src, ipv6)
        };
        let reason = limits
            .check(&frame, now_ns)
            .unwrap_or_else(|error| panic!("{error}"));
        *kinds
            .entry(match reason {
                Reason::Rule(_) => "passed by a rule",
                Reason::Limit(_) => "dropped by a limit",
                Reason::Ban => "dropped by a ban",
                _ => "other",
            })
            .or_default() += 1;
        tally(&limits, reason, &mut want);
    }
    // A pause past the keys' last-use marks, then a flood of spoofed sources within a few
    // milliseconds: more new sources than a second of admissions, from more /24s than a
    // second of admissions too, so that all three tiers (own key, aggregate, overflow)
    // decide some.
    now_ns += (u64::from(RECENT_TICKS) + 2) << RECENT_TICK_SHIFT;
    let flood = 3 * ADMIT_PER_SEC as usize;
    for _ in 0..flood {
        now_ns += rng.random_range(0..2_000);
        let src: [u8; 16] = {
            let mut addr = [0; 16];
            addr[..4].copy_from_slice(&[10, rng.random(), rng.random(), rng.random()]);
            addr
        };
        let frame = FrameSpec {
            vlans: Vec::new(),
            body: Body::Ipv4 {
                src: [src[0], src[1], src[2], src[3]],
                dst: [198, 19, 0, 1],
                fragment: 0,
                option_words: 0,
                transport: Transport::Udp {
                    sport: 5353,
                    dport: 53,
                    payload: 8,
                },
            },
        }
        .build();
        let reason = limits
            .check(&frame, now_ns)
            .unwrap_or_else(|error| panic!("{error}"));
        tally(&limits, reason, &mut want);
    }
    // The mix's sources again while the flood has spent the admissions: held, but idle past
    // their marks, so charged as new keys.
    for _ in 0..2_000 {
        now_ns += rng.random_range(0..2_000);
        let ipv6 = rng.random_bool(0.3);
        let src = pooled_source(&mut rng, ipv6);
        let frame = frame_from(&mut rng, src, ipv6);
        let reason = limits
            .check(&frame, now_ns)
            .unwrap_or_else(|error| panic!("{error}"));
        tally(&limits, reason, &mut want);
    }
    // Each held key lapses once, and is marked again by that packet: the pool's keys across
    // the rules number some dozens.
    assert!(
        limits.reference.lapsed > 30,
        "held keys past their marks came back: {}",
        limits.reference.lapsed
    );
    let got = tallies(&limits);
    for rule in limits.set.rules() {
        let want = want.get(&rule.id).copied().unwrap_or_default();
        assert_eq!(
            got[&rule.id], want,
            "rule {} (packets, limited, bans): kernel, reference",
            rule.id
        );
    }
    // The mix means something: every outcome came up, and every limit rule dropped.
    for kind in ["passed by a rule", "dropped by a limit", "dropped by a ban"] {
        assert!(kinds.get(kind).copied().unwrap_or(0) > 100, "{kinds:?}");
    }
    for rule in limits
        .set
        .rules()
        .iter()
        .filter(|rule| rule.action() == Action::Limit)
    {
        assert!(
            got[&rule.id].1 > 0,
            "rule {} never dropped: {got:?}",
            rule.id
        );
    }
    let flooded = got[&limits.set.rules()[0].id];
    assert!(
        flooded.1 > (flood as u64) / 4,
        "the spoofed flood was held to the admissions and the overflow bucket: {flooded:?}"
    );
}

#[test]
fn two_cpus_charging_one_key_at_once_pass_exactly_its_burst() {
    if !kernel_available("two_cpus_charging_one_key_at_once_pass_exactly_its_burst") {
        return;
    }
    let cpus = aya::util::online_cpus().expect("online CPUs");
    assert!(
        cpus.len() >= 2,
        "this test needs two CPUs, the machine has {cpus:?}"
    );
    let mut limits = Limits::load();
    let burst = 1_000;
    limits.apply(&[rule(10, "udp", "53", limit("1/h", burst, "src", None))]);
    limits.clock.set(5_000_000_000_000).expect("clock");
    let frame = FrameSpec::ipv4_udp(5353, 53, 10).build();
    let repeat = 200_000;
    let program = &*program::xdp_program(&mut limits.ebpf).expect("program");
    let run = |cpu: u32| {
        let mut one = nix::sched::CpuSet::new();
        one.set(cpu as usize).expect("a CPU number");
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).expect("pin");
        program
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                repeat,
                ..TestRunOptions::new()
            })
            .expect("test run");
    };
    // The same frame from one source, on two CPUs at once, with the clock still: only the
    // compare-and-swap keeps the two from passing a burst each.
    std::thread::scope(|scope| {
        let one = scope.spawn(|| run(cpus[0]));
        let two = scope.spawn(|| run(cpus[1]));
        one.join().expect("first CPU");
        two.join().expect("second CPU");
    });
    let rule = limits.set.rules()[0];
    let counter = limits.maps.counter(&rule).expect("counter");
    assert_eq!(
        counter.packets,
        2 * repeat as u64,
        "both CPUs' runs counted"
    );
    assert_eq!(
        counter.packets - counter.limited,
        burst,
        "exactly the burst passes, however the CPUs interleave"
    );
    let stats = limits.counters.read().expect("counters");
    let dropped = stats.dropped[(reason::LIMIT - reason::FRAGMENT) as usize].packets;
    assert_eq!(dropped, 2 * repeat as u64 - burst);
}
