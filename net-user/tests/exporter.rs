//! `netxdp serve` scraped by many at once while the rules change and traffic flows: every
//! scrape answered with a whole exposition, snapshots shared, the series bounded, and the
//! server's memory too. How long the scrapes took is `cargo xtask bench`'s to report.

mod support;

use std::collections::HashMap;

use support::{
    kernel_available,
    scrape_load::{self, EACH, RULES, SCRAPERS},
};

/// The server's peak resident memory may not pass this.
const PEAK_RSS: u64 = 96 << 20;

/// One answer, judged: a whole exposition whose rule series are bounded and say so.
fn check(iface: &str, text: &str) -> Result<(), String> {
    if !text.ends_with("# EOF\n") {
        return Err(format!("not a whole exposition ({} bytes)", text.len()));
    }
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .map_err(|error| format!("unparsable: {error}"))?;
    let mut ours: HashMap<&str, Vec<&prometheus_parse::Sample>> = HashMap::new();
    for sample in &parsed.samples {
        if sample.labels.get("iface") == Some(iface) {
            ours.entry(sample.metric.as_str()).or_default().push(sample);
        }
    }
    let value = |metric: &str| -> Result<f64, String> {
        match ours.get(metric).map(Vec::as_slice) {
            Some([sample]) => match sample.value {
                prometheus_parse::Value::Gauge(value) | prometheus_parse::Value::Untyped(value) => {
                    Ok(value)
                }
                ref other => Err(format!("{metric}: {other:?}")),
            },
            other => Err(format!("{metric}: {} samples", other.map_or(0, <[_]>::len))),
        }
    };
    let rules = value("netxdp_rules")?;
    if rules != RULES as f64 && rules != RULES as f64 + 1.0 {
        return Err(format!("netxdp_rules {rules}"));
    }
    if value("netxdp_rule_metrics_truncated")? != 1.0 {
        return Err("the rule series are cut, and the gauge must say so".to_owned());
    }
    let series = ours.get("netxdp_rule_packets_total").map_or(0, Vec::len);
    if series != 100 {
        return Err(format!(
            "{series} netxdp_rule_packets_total series, not the top 100"
        ));
    }
    let info = ours
        .get("netxdp_ruleset_info")
        .and_then(|samples| samples.first())
        .ok_or("no netxdp_ruleset_info")?;
    if info.labels.get("rules") != Some(rules.to_string().as_str())
        || info.labels.get("hash").is_none_or(|hash| hash.len() != 16)
    {
        return Err(format!("netxdp_ruleset_info {:?}", info.labels));
    }
    Ok(())
}

#[test]
fn concurrent_scrapes_of_a_large_rule_set_are_all_answered_from_shared_snapshots() {
    let test = "concurrent_scrapes_of_a_large_rule_set_are_all_answered_from_shared_snapshots";
    if !kernel_available(test) {
        return;
    }
    let outcome = scrape_load::run(56, &[], &check).expect("the load");
    let scrapes = SCRAPERS * EACH;
    assert!(
        outcome.failures.is_empty(),
        "{} of {scrapes} scrapes failed: {:#?}",
        outcome.failures.len(),
        &outcome.failures[..outcome.failures.len().min(5)]
    );
    assert_eq!(outcome.took.len(), scrapes);
    assert!(
        outcome.updates > 0 && outcome.sent > 0,
        "rules changed and traffic flowed"
    );
    assert!(
        outcome.snapshots < scrapes as u64,
        "{scrapes} scrapes at once share snapshots: {} were read",
        outcome.snapshots
    );
    assert!(
        outcome.peak_rss <= PEAK_RSS,
        "serve peaked at {} MiB (at most {} MiB)",
        outcome.peak_rss >> 20,
        PEAK_RSS >> 20
    );
    let slowest = outcome.took.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{scrapes} scrapes of {}: {} snapshots, largest answer {} bytes, slowest {slowest:?}, \
         peak RSS {} MiB, {} rule changes, {} datagrams",
        outcome.iface,
        outcome.snapshots,
        outcome.largest,
        outcome.peak_rss >> 20,
        outcome.updates,
        outcome.sent
    );
}
