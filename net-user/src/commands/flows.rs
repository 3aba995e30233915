//! `netxdp flows`: one snapshot of an interface's flow table.

use anyhow::{Result, bail};
use net_common::flow::FlowStats;

use super::emit;
use crate::{
    attach::read_info,
    cli::FlowSort,
    flows::{FlowTable, FlowsRecord, average_bps},
    iface::IfaceName,
    pins::PinDir,
    preflight,
};

pub fn show(iface: &IfaceName, sort: FlowSort, limit: Option<usize>, json: bool) -> Result<()> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    let pins = PinDir::new(iface);
    if !pins.is_attached() {
        bail!("netxdp is not attached to {iface} (`netxdp status` lists its attachments)");
    }
    let table_size = read_info(&pins)?.flow_table_size;
    if table_size == 0 {
        bail!(
            "netxdp counts no flows on {iface}: it was attached with --no-flows \
             (`netxdp detach {iface} --keep-rules` and attach again without it)"
        );
    }
    let flows = FlowTable::from_pin(&pins)?.read()?;
    let key = match sort {
        FlowSort::Bytes => |flow: &FlowStats| flow.bytes as f64,
        FlowSort::Packets => |flow: &FlowStats| flow.packets as f64,
        FlowSort::Rate => |flow: &FlowStats| average_bps(flow).unwrap_or(0.0),
    };
    let record = FlowsRecord::new(iface.as_str(), table_size, flows, key, limit);
    if json {
        emit(&serde_json::to_string(&record)?)
    } else {
        emit(record.to_text().trim_end())
    }
}
