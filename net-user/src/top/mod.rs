//! `netxdp top`: a full-screen live view of attached interfaces (rates and sparklines by
//! verdict and protocol, top sources, top flows, rules with hit rates), or, on a stdout that
//! is no terminal, plain tables every interval.
//!
//! This module holds what is testable without a terminal: the samples read from the pinned
//! maps ([`RawSample`]), the rates computed between two of them ([`Rates`]), and the state of
//! the view ([`App`]: pane, sort, filter, pause, history for the sparklines). [`view`] draws
//! it with ratatui; [`run`] wires the two to a sampling thread and the keyboard.
//!
//! Cost: the kernel copies a full 65,536-flow table out in about 25 ms (BPF_MAP_LOOKUP_BATCH,
//! some 0.4 µs per flow, nearly all of it system time), and everything else a refresh does
//! costs a few milliseconds. So the flow table is read on every sample only while that stays
//! within [`FLOW_READ_BUDGET`] of a core, and every few samples when it would not ([`Sampler`]);
//! counters and rules are read on every sample. Reading happens on a blocking thread, and the
//! view always draws the last complete snapshot: keys stay responsive however large the table.

mod app;
#[cfg(test)]
mod fixtures;
mod plain;
mod rates;
mod sample;
mod terminal;
mod view;

pub use app::{App, HISTORY, Key, Pane, SortBy, sparkline};
pub use rates::{BanRow, ClassRow, FlowRow, Frame, Rate, Rates, RuleRow, SourceRow, endpoint};
use sample::Attachments;
pub use sample::{IfaceSample, RawSample};

use std::io::{self, IsTerminal as _};

use anyhow::Result;

use crate::{cli::Sampling, iface::IfaceName, preflight};

/// Flows printed per interface each interval on a non-terminal stdout.
pub const PLAIN_FLOWS: usize = 20;
/// The share of one core that reading flow tables may take.
pub const FLOW_READ_BUDGET: f64 = 0.01;

/// `netxdp top`: the full-screen view on a terminal, plain tables otherwise.
pub async fn run(ifaces: Vec<IfaceName>, sampling: Sampling) -> Result<()> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    let attachments = Attachments::open(&ifaces)?;
    if io::stdout().is_terminal() {
        terminal::interactive(attachments, sampling).await
    } else {
        plain::plain(attachments, sampling).await
    }
}
