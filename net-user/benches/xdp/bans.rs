//! What bans cost per packet: none in force (one array read), many in force that do not hold
//! the source (the trie lookup), and the source banned (the lookup, the clock, the drop).

use std::time::Duration;

use anyhow::Result;
use net_common::{
    rule::{Family, Prefix, XDP_DROP, XDP_PASS},
    testing::FrameSpec,
};
use netxdp::bans::BanTable;

use crate::{Prog, ROUNDS, measure, median, thousands};

/// Bans in force that do not hold the frame's source.
const OTHERS: [usize; 2] = [1_000, 50_000];

pub fn print(bans: &mut BanTable, floor: &Prog, netxdp: &Prog, repeat: u32) -> Result<()> {
    let frame = FrameSpec::ipv4_udp(5353, 53, 22).build();
    let cost = |expected: u32| -> Result<(Duration, Duration)> {
        let (mut floor_ns, mut netxdp_ns) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            floor_ns.push(measure(floor, &frame, repeat, XDP_PASS)?);
            netxdp_ns.push(measure(netxdp, &frame, repeat, expected)?);
        }
        Ok((median(floor_ns), median(netxdp_ns)))
    };
    // Once to warm up, which the first rounds of a section otherwise pay.
    cost(XDP_PASS)?;
    let mut rows = vec![("no bans".to_owned(), cost(XDP_PASS)?)];
    let hour = Duration::from_secs(3600);
    for others in OTHERS {
        // /32s in 10.0.0.0/8, none of which holds 198.18.0.2.
        let prefixes: Vec<Prefix> = (0..others as u32)
            .map(|n| {
                let mut addr = [0; 16];
                addr[..4].copy_from_slice(&(0x0a00_0000 | n).to_be_bytes());
                Prefix::new(Family::Ipv4, addr, 32)
            })
            .collect();
        bans.clear()?;
        bans.add_all(&prefixes, hour)?;
        rows.push((
            format!("{} bans, the source not banned", thousands(others)),
            cost(XDP_PASS)?,
        ));
    }
    let mut source = [0; 16];
    source[..4].copy_from_slice(&[198, 18, 0, 0]);
    bans.add(Prefix::new(Family::Ipv4, source, 24), hour)?;
    rows.push((
        format!("{} bans, the source banned", thousands(OTHERS[1] + 1)),
        cost(XDP_DROP)?,
    ));
    bans.clear()?;
    println!(
        "bans, per packet (udp/ipv4, 64 bytes, no rules, no flow tracking; median of {ROUNDS} x \
         {} repeats):",
        thousands(repeat as usize)
    );
    let none = (rows[0].1).1.as_nanos().max(1) as f64;
    for (what, (floor, netxdp)) in &rows {
        println!(
            "  {what:<40} {:>5} ns over the floor  {:>5.2}x no bans",
            netxdp.as_nanos().saturating_sub(floor.as_nanos()),
            netxdp.as_nanos() as f64 / none
        );
    }
    Ok(())
}
