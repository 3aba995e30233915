//! The flow table: per-CPU counters per flow, in an LRU hash that evicts the least recently
//! seen flow when full. Switched off at load (`netxdp attach --no-flows`), it costs nothing.

use aya_ebpf::{bindings::BPF_NOEXIST, macros::map, maps::LruPerCpuHashMap, programs::XdpContext};
use net_common::{
    flow::{DEFAULT_FLOW_TABLE_SIZE, FlowKey, FlowStats, outer_vlan_id},
    frame::Frame,
    parse::Packet,
};

use crate::{clock, filter::Decision, frame::XdpFrame};

/// 1 to track flows; set by the loader. A read-only global: when it is 0 the verifier proves
/// the tracking dead and removes it.
#[unsafe(no_mangle)]
static FLOWS_ENABLED: u8 = 1;

/// Sized by the loader (`--flow-table-size`).
#[map(name = "FLOWS")]
/// One LRU list for all CPUs: with a list per CPU (BPF_F_NO_COMMON_LRU), each CPU would hold
/// only its share of the table, and flows arriving on one CPU would fill half of it.
static FLOWS: LruPerCpuHashMap<FlowKey, FlowStats> =
    LruPerCpuHashMap::pinned(DEFAULT_FLOW_TABLE_SIZE, 0);

/// Counts `packet`, decided as `decision`, to its flow.
#[inline(always)]
pub fn track(ctx: &XdpContext, packet: &Packet, decision: &Decision) {
    // SAFETY: reads a global the loader set; volatile so that the compiler keeps the read for
    // the verifier to resolve.
    if unsafe { core::ptr::read_volatile(&FLOWS_ENABLED) } == 0 {
        return;
    }
    // SAFETY: the context the kernel passed.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    let vlan_id = XdpFrame::new(ctx)
        .bytes::<16>(0)
        .map_or(0, |header| outer_vlan_id(&header));
    let key = FlowKey::of(packet, ifindex, vlan_id);
    let now = clock::coarse_now_ns();
    match FLOWS.get_ptr_mut(&key) {
        // SAFETY: this CPU's own copy; XDP does not preempt itself.
        Some(flow) => unsafe {
            (*flow).packets += 1;
            (*flow).bytes += packet.len as u64;
            (*flow).last_seen_ns = now;
            (*flow).tcp_flags |= packet.tcp_flags();
            (*flow).action = decision.action as u8;
            (*flow).rule_id = decision.rule_id;
        },
        None => {
            let flow = FlowStats {
                packets: 1,
                bytes: packet.len as u64,
                first_seen_ns: now,
                last_seen_ns: now,
                rule_id: decision.rule_id,
                tcp_flags: packet.tcp_flags(),
                action: decision.action as u8,
                _pad: 0,
            };
            // Another CPU may have added the flow meanwhile: each CPU has its own copy of the
            // counters, so this CPU's first packet is lost only then, and only to this CPU.
            let _ = FLOWS.insert(&key, &flow, BPF_NOEXIST as u64);
        }
    }
}
