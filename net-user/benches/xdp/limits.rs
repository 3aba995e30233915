//! What rate limits cost: per packet through BPF_PROG_TEST_RUN (a limit rule within its rate
//! beside a pass rule of the same match, and over it beside a drop rule), then live floods on
//! a veth pair with a queue per CPU (one source over its limit, and spoofed sources against
//! a `--per src` limit, each beside the same flood against a plain drop rule, run in turns).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use net_common::{
    limit::RECENT_TICKS,
    rule::{Action, Match, PortRange, XDP_DROP, XDP_PASS},
    testing::FrameSpec,
};
use netxdp::{
    counters::CounterMap,
    filter::{FilterMaps, NewRule, RuleSet, limit::LimitText},
    flood::Generators,
    pins::PinDir,
};

use crate::{
    Prog, ROUNDS, check_interrupted,
    flood::{self, FloodPair},
    measure, median, thousands,
    userspace::{Detach, netxdp},
};

/// The one rule measured: UDP to port 53, with `action` and `limit`.
fn one_rule(
    maps: &mut FilterMaps,
    set: &mut RuleSet,
    action: Action,
    (rate, burst): (&str, u64),
) -> Result<()> {
    let limit = match action {
        Action::Limit => LimitText {
            rate: Some(rate),
            burst: Some(burst),
            ..LimitText::default()
        }
        .limit(true)?,
        _ => net_common::limit::Limit::NONE,
    };
    set.replace(&[NewRule {
        action,
        priority: 10,
        matches: Match {
            proto: 17,
            dport: PortRange {
                first: 53,
                last: 53,
            },
            ..Match::ANY
        },
        limit,
    }])?;
    maps.commit(set)?;
    check_interrupted()
}

pub fn print_costs(maps: &mut FilterMaps, floor: &Prog, netxdp: &Prog, repeat: u32) -> Result<()> {
    let frame = FrameSpec::ipv4_udp(5353, 53, 22).build();
    let cost = |expected: u32| -> Result<u128> {
        let (mut floor_ns, mut netxdp_ns) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            floor_ns.push(measure(floor, &frame, repeat, XDP_PASS)?);
            netxdp_ns.push(measure(netxdp, &frame, repeat, expected)?);
        }
        Ok(median(netxdp_ns)
            .as_nanos()
            .saturating_sub(median(floor_ns).as_nanos()))
    };
    let mut set = RuleSet::default();
    let mut rows = Vec::new();
    // Within: a billion a second, a second of them at once, which no run of the test reaches.
    // Over: one an hour, one at once, spent by the first run.
    for (what, action, limit, verdict) in [
        ("pass rule", Action::Pass, ("", 0), XDP_PASS),
        (
            "limit rule, within its rate",
            Action::Limit,
            ("1000000000/s", 1_000_000_000),
            XDP_PASS,
        ),
        ("drop rule", Action::Drop, ("", 0), XDP_DROP),
        (
            "limit rule, over its rate",
            Action::Limit,
            ("1/h", 1),
            XDP_DROP,
        ),
    ] {
        one_rule(maps, &mut set, action, limit)?;
        cost(verdict)?; // warm-up
        rows.push((what, cost(verdict)?));
    }
    println!(
        "limits, per packet (udp/ipv4, 64 bytes, one rule, --per src, no flow tracking; median \
         of {ROUNDS} x {} repeats):",
        thousands(repeat as usize)
    );
    for (what, ns) in &rows {
        println!("  {what:<32} {ns:>5} ns over the floor");
    }
    println!(
        "  a limit costs {} ns over a pass rule within its rate (bound: 30), {} ns over a drop \
         rule beyond it",
        rows[1].1 as i128 - rows[0].1 as i128,
        rows[3].1 as i128 - rows[2].1 as i128
    );
    set.replace(&[])?;
    maps.commit(&mut set)?;
    Ok(())
}

/// Rounds of the floods, each a turn of the drop rule and one of the limit: more than the
/// other floods' runs, as a ratio of two noisy rates is noisier still.
const ROUNDS_OF_TURNS: usize = 9;

/// One source flooding a limited port, and spoofed sources flooding it, each beside the same
/// flood against a plain drop rule: frames a second the receiving end takes, on every CPU.
pub fn print_floods() -> Result<()> {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let cpus = usize::try_from(online)
        .ok()
        .filter(|n| *n > 0)
        .context("counting the online CPUs")?;
    let pairs = [FloodPair::create(cpus, 'd')?, FloodPair::create(cpus, 'l')?];
    let generators = Generators::load()?;
    let senders = [
        netxdp::preflight::ifindex(&pairs[0].sender)?,
        netxdp::preflight::ifindex(&pairs[1].sender)?,
    ];
    let port = flood::DROP_PORT.to_string();
    let rule = |iface: &str, action: &[&str]| -> Result<Detach> {
        netxdp(&["attach", iface, "--mode", "native", "--no-flows"])?;
        let attached = Detach(iface.to_owned());
        netxdp(
            &[
                &["rule", "add", iface][..],
                action,
                &["--proto", "udp", "--dport", &port],
            ]
            .concat(),
        )?;
        Ok(attached)
    };
    let _attached = [
        rule(pairs[0].receiver.as_str(), &["--action", "drop"])?,
        rule(
            pairs[1].receiver.as_str(),
            &["--action", "limit", "--rate", "1000/s", "--per", "src"],
        )?,
    ];
    let counters = [
        CounterMap::from_pin(&PinDir::new(&pairs[0].receiver))?,
        CounterMap::from_pin(&PinDir::new(&pairs[1].receiver))?,
    ];
    println!(
        "limits under a flood of 64-byte frames from the kernel's generator on {cpus} CPUs, \
         native XDP, --no-flows (median of {} runs of {} frames per CPU, in turns):",
        ROUNDS_OF_TURNS,
        thousands(flood::FRAMES_PER_CPU as usize)
    );
    // The last row floods the limit for longer than the keys' last-use marks last first, so
    // that the marks the admissions write are as many as a lasting flood keeps.
    let steady = Duration::from_secs(u64::from(RECENT_TICKS) + 3);
    let after_steady = format!("the same, after {} s of that flood", steady.as_secs());
    for (what, spoofed, warm_up) in [
        (
            "one source over a --per src limit of 1000/s",
            false,
            Duration::ZERO,
        ),
        (
            "spoofed sources against a --per src limit of 1000/s",
            true,
            Duration::ZERO,
        ),
        (after_steady.as_str(), true, steady),
    ] {
        let generator = generators.generator(spoofed)?;
        let frame = netxdp::flood::frame(flood::DROP_PORT);
        let started = Instant::now();
        while started.elapsed() < warm_up {
            check_interrupted()?;
            flood::run_once(generator, &frame, senders[1], cpus)?;
        }
        let mut runs = [Vec::new(), Vec::new()];
        let mut passed = 0;
        for round in 0..ROUNDS_OF_TURNS {
            for turn in 0..2 {
                let which = (round + turn) % 2;
                check_interrupted()?;
                let before = counters[which].read()?;
                let mpps = flood::run_once(generator, &frame, senders[which], cpus)?;
                if which == 1 {
                    passed +=
                        counters[which].read()?.since(&before).action[XDP_PASS as usize].packets;
                }
                runs[which].push(mpps);
            }
        }
        // The ratio of each round's two turns, which ran moments apart: the VM's speed drifts
        // more between rounds than within one.
        let mut ratios: Vec<f64> = runs[1].iter().zip(&runs[0]).map(|(l, d)| l / d).collect();
        let (lowest, highest) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        let ratio = flood::median(&mut ratios);
        let [drop_mpps, limit_mpps] = runs.map(|mut runs| flood::median(&mut runs));
        println!(
            "  {what:<52} {limit_mpps:>6.2} Mpps, {ratio:.2}x ({lowest:.2}-{highest:.2}x) the \
             drop rule's {drop_mpps:.2} Mpps in its round; {} of {} frames passed",
            thousands(passed as usize),
            thousands(flood::FRAMES_PER_CPU as usize * cpus * ROUNDS_OF_TURNS)
        );
    }
    Ok(())
}
