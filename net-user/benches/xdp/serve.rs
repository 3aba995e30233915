//! `netxdp serve` under load (the scenario of `tests/exporter.rs`, in
//! `tests/support/scrape_load.rs`): how long the scrapes took, and the server's memory, with
//! the default rule series and with every rule's.

use anyhow::{Result, ensure};

use crate::scrape_load::{self, EACH, RULES, SCRAPERS};

/// The subnet of the load's veth pair.
const SUBNET: u8 = 219;

/// The bounds: the slowest scrape and the server's peak memory.
const SLOWEST_MS: f64 = 500.0;
const PEAK_RSS_MIB: f64 = 96.0;

pub fn print() -> Result<()> {
    println!(
        "serve under load: {SCRAPERS} scrapers x {EACH} scrapes (each 250 ms apart) of the \
         {RULES}-rule ClassBench acl set, while a rule is added and deleted again and again and \
         datagrams stream in:"
    );
    for (what, args) in [
        ("default (top 100 rules)", &[][..]),
        ("--rule-metrics all", &["--rule-metrics", "all"][..]),
    ] {
        let whole = |_: &str, text: &str| -> Result<(), String> {
            text.ends_with("# EOF\n")
                .then_some(())
                .ok_or_else(|| "not a whole exposition".to_owned())
        };
        let outcome = scrape_load::run(SUBNET, args, &whole)?;
        ensure!(
            outcome.failures.is_empty(),
            "{what}: scrapes failed: {:?}",
            outcome.failures
        );
        let mut took = outcome.took.clone();
        took.sort();
        let median = took[took.len() / 2].as_secs_f64() * 1000.0;
        let slowest = took.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let rss = outcome.peak_rss as f64 / f64::from(1 << 20);
        println!(
            "  {what:<24} {} answered, median {median:.1} ms, slowest {slowest:.1} ms \
             ({:.2}x the {SLOWEST_MS} ms bound); {} snapshots; largest answer {} kB; peak RSS \
             {rss:.1} MiB ({:.2}x the {PEAK_RSS_MIB} MiB bound); {} rule changes and {} \
             datagrams to {} meanwhile",
            took.len(),
            slowest / SLOWEST_MS,
            outcome.snapshots,
            outcome.largest / 1000,
            rss / PEAK_RSS_MIB,
            outcome.updates,
            outcome.sent,
            outcome.iface,
        );
    }
    Ok(())
}
