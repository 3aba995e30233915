//! `top` on a stdout that is no terminal: plain tables every interval.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use net_common::flow::FlowStats;

use super::{
    PLAIN_FLOWS,
    sample::{Attachments, Sampler},
};
use crate::{
    cli::Sampling,
    counters::Sample,
    flows::FlowsRecord,
    process::{Shutdown, emit},
    report::{Scope, StatsRecord},
    sources::{SourceStats, SourcesRecord},
};

/// Plain tables each interval: the counters as `stats` shows them, then the top flows by
/// bytes and the top sources by packets as `flows` shows them, whenever the flow and source
/// tables were read.
pub(super) async fn plain(attachments: Attachments, sampling: Sampling) -> Result<()> {
    let mut shutdown = Shutdown::new()?;
    let mut ticker = tokio::time::interval(sampling.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let flow_tables: Vec<_> = attachments.ifaces.iter().map(|a| a.flow_table()).collect();
    let mut sampler = Sampler::new(attachments, sampling.interval);
    let mut previous: Vec<Option<Sample>> = vec![None; flow_tables.len()];
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.recv() => return Ok(()),
        }
        let sample;
        (sampler, sample) = tokio::task::spawn_blocking(move || {
            let sample = sampler.sample();
            (sampler, sample)
        })
        .await?;
        for ((flow_table, iface), previous) in
            flow_tables.iter().zip(sample.ifaces).zip(&mut previous)
        {
            if let Some(error) = iface.error {
                bail!("{}: {error}", iface.iface);
            }
            let current = Sample {
                at: sample.at,
                wall: sample.wall,
                stats: iface.stats,
            };
            let scope = Scope::Interface(iface.iface.clone());
            let mut text = StatsRecord::new(scope, &current, previous.as_ref()).to_text();
            *previous = Some(current);
            if let (Some(flow_table), Some(took)) = (flow_table, sample.flows_read) {
                let flows = FlowsRecord::new(
                    &iface.iface,
                    *flow_table,
                    iface.flows,
                    |flow: &FlowStats| flow.bytes as f64,
                    Some(PLAIN_FLOWS),
                );
                text.push_str(&flows.to_text());
                let sources = SourcesRecord::new(
                    &iface.iface,
                    iface.sources,
                    |source: &SourceStats| source.total().packets,
                    Some(PLAIN_FLOWS),
                );
                text.push_str(&sources.to_text());
                if sample.flows_period > sampling.interval.as_secs_f64() {
                    let _ = writeln!(
                        text,
                        "(flows are read every {:.0} s: reading the table took {} ms)",
                        sample.flows_period,
                        took.as_millis()
                    );
                }
            }
            emit(text.trim_end())?;
            emit("")?;
        }
        round += 1;
        if sampling.count.is_some_and(|count| round >= count.get()) {
            return Ok(());
        }
    }
}
