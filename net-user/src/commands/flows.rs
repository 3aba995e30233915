//! `netxdp flows`: one snapshot of an interface's flow table, or of its source table.

use anyhow::{Result, bail};
use net_common::flow::FlowStats;

use crate::{
    attach::read_info,
    cli::FlowSort,
    flows::{FlowTable, FlowsRecord, average_bps},
    iface::IfaceName,
    pins::PinDir,
    preflight,
    process::emit,
    sources::{SourceStats, SourceTable, SourcesRecord},
};

pub fn show(iface: &IfaceName, sort: FlowSort, limit: Option<usize>, json: bool) -> Result<()> {
    let pins = tracked(iface)?;
    let table = FlowTable::from_pin(&pins)?;
    let allocation = table.allocation()?;
    let flows = table.read()?;
    let key = match sort {
        FlowSort::Bytes => |flow: &FlowStats| flow.bytes as f64,
        FlowSort::Packets => |flow: &FlowStats| flow.packets as f64,
        FlowSort::Rate => |flow: &FlowStats| average_bps(flow).unwrap_or(0.0),
    };
    let record = FlowsRecord::new(iface.as_str(), allocation, flows, key, limit);
    if json {
        emit(&serde_json::to_string(&record)?)
    } else {
        emit(record.to_text().trim_end())
    }
}

pub fn show_sources(
    iface: &IfaceName,
    sort: FlowSort,
    limit: Option<usize>,
    json: bool,
) -> Result<()> {
    let pins = tracked(iface)?;
    let key = match sort {
        FlowSort::Bytes => |source: &SourceStats| source.total().bytes,
        FlowSort::Packets => |source: &SourceStats| source.total().packets,
        FlowSort::Rate => bail!(
            "sources have no rate in one snapshot: --sort packets or bytes \
             (`netxdp top` shows their rates)"
        ),
    };
    let sources = SourceTable::from_pin(&pins)?.read()?;
    let record = SourcesRecord::new(iface.as_str(), sources, key, limit);
    if json {
        emit(&serde_json::to_string(&record)?)
    } else {
        emit(record.to_text().trim_end())
    }
}

/// The pins of `iface`, attached with flow tracking.
fn tracked(iface: &IfaceName) -> Result<PinDir> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    let pins = PinDir::new(iface);
    if !pins.is_attached() {
        bail!("netxdp is not attached to {iface} (`netxdp status` lists its attachments)");
    }
    if read_info(&pins)?.flow_table_size == 0 {
        bail!(
            "netxdp tracks no flows on {iface}: it was attached with --no-flows \
             (`netxdp detach {iface} --keep-rules` and attach again without it)"
        );
    }
    Ok(pins)
}
