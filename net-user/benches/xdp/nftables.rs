//! The 1,000-rule ClassBench-style acl set on a veth pair, every rule made a drop: netxdp
//! against the same rules as an nftables netdev-ingress chain (linear, as nftables runs a
//! chain), the same trace headers sent by the same generator in the same run, and an XDP
//! program that drops everything as the pair's limit.
//!
//! The generator ([`netxdp::flood`]) sends each header of the trace in turn from one CPU; the
//! receiving end runs its filter in the softirq of that CPU. A receiver slower than the
//! generator lets the pair's ring overflow, so the rate is the frames the filter saw (its own
//! counter) over the time of the run. For nftables, the receiving end has an XDP program that
//! passes everything (a veth takes frames from XDP only with one), and the chain's first rule
//! is a named counter.

use std::{process::Command, time::Instant};

use anyhow::{Context as _, Result, bail, ensure};
use aya::programs::{Xdp, XdpMode};
use net_common::{
    classbench::{self, Profile},
    names,
    rule::{Action, Family, Match, PROTO_ANY, PortRange},
    rulegen::GenRule,
};
use netxdp::{
    counters::CounterMap,
    filter::{
        RuleSet,
        render::render_rules_file,
        spec::{ports_text, prefix_text},
    },
    flood::{Generators, live_frames},
    netns::VethNet,
    pins::PinDir,
    program,
};

use super::{
    check_interrupted,
    flood::FloodPair,
    new_rules,
    userspace::{Detach, netxdp},
};

const RULES: usize = 1_000;
/// Distinct headers sent, and frames of each per run.
const HEADERS: usize = 64;
const FRAMES_PER_HEADER: u32 = 16_384;
/// Runs per receiver; the median is kept.
const RUNS: usize = 3;
const TABLE: &str = "netxdp_bench";
/// The veth pair the generator is attached to (198.18.N.0/30): one no test uses.
const PARKING_SUBNET: u8 = 218;

pub struct DropRates {
    pub frames: u64,
    pub floor: Rate,
    pub netxdp: Rate,
    pub nftables: Rate,
}

pub struct Rate {
    pub mpps: f64,
    /// The share of the frames sent that the receiver saw (the rest overflowed the ring).
    pub seen: f64,
}

pub fn measure(rules_seed: u64, trace_seed: u64) -> Result<DropRates> {
    let rules: Vec<GenRule> = classbench::rules(Profile::Acl, rules_seed, RULES)
        .into_iter()
        .map(|rule| GenRule {
            action: Action::Drop,
            ..rule
        })
        .collect();
    let headers: Vec<Vec<u8>> = classbench::trace(&rules, trace_seed, HEADERS)
        .into_iter()
        .map(|header| header.frame)
        .collect();
    let pair = FloodPair::create(1, 'n')?;
    let mut generators = Generators::load()?;
    // Attached to a pair of its own, the generator stays in the kernel's XDP dispatcher: a
    // test run of a program that is not attached adds it there and removes it again, each
    // time with an RCU grace period, and the trace's headers take one run each.
    let parked = VethNet::create("bg", PARKING_SUBNET)?;
    let generator: &mut Xdp = generators
        .ebpf_mut()
        .program_mut(names::FLOOD_FIXED)
        .context("flood_fixed")?
        .try_into()?;
    generator.attach(parked.host_if(), XdpMode::Driver)?;
    let generator = generators.generator(false)?;
    let sender = netxdp::preflight::ifindex(&pair.sender)?;
    let sent = HEADERS as u64 * u64::from(FRAMES_PER_HEADER);
    // The median run's rate of frames seen, and the share of those sent that it saw.
    let run = |seen: &dyn Fn() -> Result<u64>| -> Result<Rate> {
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            check_interrupted()?;
            let before = seen()?;
            let began = Instant::now();
            for header in &headers {
                live_frames(generator, header, sender, FRAMES_PER_HEADER).context("live frames")?;
            }
            let elapsed = began.elapsed().as_secs_f64();
            let frames = seen()? - before;
            runs.push(Rate {
                mpps: frames as f64 / elapsed / 1e6,
                seen: frames as f64 / sent as f64,
            });
        }
        runs.sort_by(|a, b| a.mpps.total_cmp(&b.mpps));
        Ok(runs.swap_remove(RUNS / 2))
    };

    let mut object = program::load(
        None,
        program::Options {
            flows: program::Flows::Off,
            ..Default::default()
        },
    )?;
    let floor = {
        let drop_floor: &mut Xdp = object
            .program_mut(names::DROP_FLOOR)
            .context("drop_floor")?
            .try_into()?;
        drop_floor.load()?;
        let link = drop_floor.attach(pair.receiver.as_str(), XdpMode::Driver)?;
        let frames = std::cell::Cell::new(0u64);
        // The floor counts nothing: its rate is the generator's, frames offered.
        let rate = run(&|| {
            frames.set(frames.get() + sent);
            Ok(frames.get())
        })?;
        drop_floor.detach(link)?;
        rate
    };

    let netxdp = {
        let _attached = attach_with(&pair.receiver, &rules)?;
        let counters = CounterMap::from_pin(&PinDir::new(&pair.receiver))?;
        let rate = run(&|| Ok(counters.read()?.total().packets))?;
        let dropped = counters.read()?.action[net_common::rule::XDP_DROP as usize].packets;
        ensure!(
            dropped == counters.read()?.total().packets,
            "netxdp passed some of the headers every rule drops"
        );
        rate
    };

    let nftables = {
        let pass: &mut Xdp = object
            .program_mut(names::PASS_FLOOR)
            .context("pass_floor")?
            .try_into()?;
        pass.load()?;
        let link = pass.attach(pair.receiver.as_str(), XdpMode::Driver)?;
        let chain = Chain::new(pair.receiver.as_str(), &rules)?;
        let rate = run(&|| chain.seen());
        pass.detach(link)?;
        rate?
    };
    Ok(DropRates {
        frames: sent,
        floor,
        netxdp,
        nftables,
    })
}

pub fn print(rates: &DropRates) {
    println!(
        "veth drop rate, the 1,000-rule acl set with every rule a drop, {} trace headers in \
         turn, {} frames per run from one CPU; frames the filter saw per second (median of \
         {RUNS} runs):",
        HEADERS,
        super::thousands(rates.frames as usize)
    );
    println!(
        "  offered (an XDP_DROP receiver)           {:>6.2} Mpps",
        rates.floor.mpps
    );
    for (name, rate) in [
        ("netxdp (native, --no-flows)          ", &rates.netxdp),
        ("nftables netdev ingress, 1,000 rules ", &rates.nftables),
    ] {
        println!(
            "  {name}    {:>6.2} Mpps   saw {:.0}% of the frames sent",
            rate.mpps,
            rate.seen * 100.0
        );
    }
    println!(
        "  netxdp / nftables: {:.1}x",
        rates.netxdp.mpps / rates.nftables.mpps
    );
}

/// netxdp attached to `iface` with `rules`; detached when the guard drops.
fn attach_with(iface: &netxdp::iface::IfaceName, rules: &[GenRule]) -> Result<Detach> {
    netxdp(&["attach", iface.as_str(), "--mode", "native", "--no-flows"])?;
    let attached = Detach(iface.to_string());
    let mut set = RuleSet::default();
    set.replace(&new_rules(rules))?;
    let file = std::env::temp_dir().join(format!("netxdp-bench-{}.toml", std::process::id()));
    std::fs::write(&file, render_rules_file(&set)).context("writing the rules file")?;
    let applied = netxdp(&["apply", iface.as_str(), &file.to_string_lossy()]);
    let _ = std::fs::remove_file(&file);
    applied?;
    Ok(attached)
}

/// The nftables table holding the chain; deleted on drop.
struct Chain;

impl Chain {
    fn new(iface: &str, rules: &[GenRule]) -> Result<Self> {
        let mut script = format!(
            "table netdev {TABLE} {{\n  counter seen {{}}\n  chain ingress {{\n    type filter \
             hook ingress device \"{iface}\" priority 0; policy accept;\n    counter name seen\n"
        );
        for rule in rules {
            script.push_str(&format!("    {} drop\n", nft_match(&rule.matches)?));
        }
        script.push_str("  }\n}\n");
        nft(&["-f", "-"], Some(&script))?;
        Ok(Chain)
    }

    /// Frames the chain has seen.
    fn seen(&self) -> Result<u64> {
        let json = nft(&["-j", "list", "counter", "netdev", TABLE, "seen"], None)?;
        let value: serde_json::Value = serde_json::from_str(&json).context("nft's JSON")?;
        value["nftables"]
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .find_map(|item| item["counter"]["packets"].as_u64())
            })
            .context("nft listed no packet count")
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        let _ = nft(&["delete", "table", "netdev", TABLE], None);
    }
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<String> {
    use std::io::Write as _;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running nft (Debian's nftables; `cargo xtask setup` installs it)")?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("nft's stdin")?
            .write_all(input.as_bytes())?;
    }
    drop(child.stdin.take());
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "nft {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A rule's match in nft's syntax (IPv4 ClassBench rules).
fn nft_match(matches: &Match) -> Result<String> {
    let mut words = Vec::new();
    for (field, prefix) in [("saddr", &matches.src), ("daddr", &matches.dst)] {
        match prefix.family() {
            Family::Any => {}
            Family::Ipv4 => words.push(format!("ip {field} {}", prefix_text(prefix))),
            Family::Ipv6 => bail!("the acl set is IPv4"),
        }
    }
    let named = |range: PortRange| !range.is_any();
    let port_words = |l4: &str, words: &mut Vec<String>| {
        for (field, range) in [("sport", matches.sport), ("dport", matches.dport)] {
            if named(range) {
                words.push(format!("{l4} {field} {}", ports_text(&range)));
            }
        }
    };
    match matches.proto {
        // Ports without a protocol: TCP or UDP, as netxdp reads a rule that names ports.
        PROTO_ANY if named(matches.sport) || named(matches.dport) => {
            words.push("meta l4proto { tcp, udp }".to_owned());
            port_words("th", &mut words);
        }
        PROTO_ANY => {}
        proto @ (6 | 17) if named(matches.sport) || named(matches.dport) => {
            let l4 = if proto == 6 { "tcp" } else { "udp" };
            words.push(format!("ip protocol {l4}"));
            port_words(l4, &mut words);
        }
        1 if matches.icmp_type != net_common::rule::ICMP_TYPE_ANY => {
            words.push(format!("icmp type {}", matches.icmp_type));
        }
        proto => words.push(format!("ip protocol {proto}")),
    }
    if words.is_empty() {
        words.push("meta protocol ip".to_owned());
    }
    Ok(words.join(" "))
}
