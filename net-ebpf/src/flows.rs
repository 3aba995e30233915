//! Flow tracking: the source table counts every packet by source prefix, in per-CPU slots;
//! the flow table counts the packets netxdp does not drop, per flow, in an LRU hash, from
//! each flow's second packet (see `net_common::flow`).
//!
//! A dropped packet never touches the flow table, so a flood of spoofed sources that a rule
//! drops costs one slot of this CPU's source table per packet, and cannot evict a flow; one
//! that passes costs the flow's hash and one flow slot per packet, and no table lookup. Switched
//! off at load (`netxdp attach --no-flows`), it all costs nothing.

use aya_ebpf::{
    bindings::{BPF_F_NO_COMMON_LRU, BPF_NOEXIST, xdp_action},
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use net_common::{
    flow::{DECLARED_FLOW_TABLE_ENTRIES, FLOW_SLOTS, FlowKey, FlowSlot, FlowStats, outer_vlan_id},
    frame::Frame,
    parse::Packet,
    source::{SOURCE_SLOTS, SourceKey, SourceSlot, count_source, slots_of},
};

use crate::{clock, filter::Decision, frame::XdpFrame};

/// 1 to track flows; set by the loader. A read-only global: when it is 0 the verifier proves
/// the tracking dead and removes it.
#[unsafe(no_mangle)]
static FLOWS_ENABLED: u8 = 1;

/// Sized by the loader (`--flow-table-size`). An LRU list per CPU (BPF_F_NO_COMMON_LRU):
/// with one list for all CPUs, every CPU inserting a new flow takes its lock now and then,
/// which stops the rate growing with cores under a flood of new flows. Each CPU then evicts
/// from its own share of the table.
#[map(name = "FLOWS")]
static FLOWS: LruHashMap<FlowKey, FlowStats> =
    LruHashMap::pinned(DECLARED_FLOW_TABLE_ENTRIES, BPF_F_NO_COMMON_LRU);

#[map(name = "SOURCES")]
static SOURCES: PerCpuArray<SourceSlot> = PerCpuArray::pinned(SOURCE_SLOTS, 0);

/// The flows this CPU counts in the table, and the first packets of those not yet in it, a
/// slot per hash; never read by the loader.
#[map(name = "FLOW_SLOTS")]
static FLOW_SLOTS_MAP: PerCpuArray<FlowSlot> = PerCpuArray::with_max_entries(FLOW_SLOTS, 0);

/// Counts `packet`, decided as `decision`, to its source prefix and, unless dropped, to its
/// flow.
#[inline(always)]
pub fn track(ctx: &XdpContext, packet: &Packet, decision: &Decision) {
    // SAFETY: reads a global the loader set; volatile so that the compiler keeps the read for
    // the verifier to resolve.
    if unsafe { core::ptr::read_volatile(&FLOWS_ENABLED) } == 0 {
        return;
    }
    let now = clock::coarse_now_ns();
    let dropped = decision.action == xdp_action::XDP_DROP;
    count_by_source(packet, dropped, now);
    if !dropped {
        count_by_flow(ctx, packet, decision, now);
    }
}

#[inline(always)]
fn count_by_source(packet: &Packet, dropped: bool, now: u64) {
    let key = SourceKey::of(packet);
    let (first, second) = slots_of(&key);
    if let (Some(first), Some(second)) = (SOURCES.get_ptr_mut(first), SOURCES.get_ptr_mut(second)) {
        // `dropped` opaque: LLVM would otherwise make a copy of `count_source` for each value,
        // and in each zero a counter with a call to a byte-at-a-time `memset`.
        let dropped = crate::opaque(dropped);
        // SAFETY: this CPU's own copies of two distinct slots; XDP does not preempt itself.
        unsafe { count_source(&mut *first, &mut *second, key, dropped, packet.len, now) };
    }
}

#[inline(always)]
fn count_by_flow(ctx: &XdpContext, packet: &Packet, decision: &Decision, now: u64) {
    let vlan_id = XdpFrame::new(ctx)
        .bytes::<16>(0)
        .map_or(0, |header| outer_vlan_id(&header));
    let hash = FlowKey::hash_of(packet, vlan_id);
    let Some(slot) = FLOW_SLOTS_MAP.get_ptr_mut(FlowKey::slot(hash)) else {
        return;
    };
    // SAFETY: this CPU's own copy; XDP does not preempt itself.
    let slot = unsafe { &mut *slot };
    if slot.tracked == hash {
        let key = FlowKey::of(packet, vlan_id);
        if let Some(flow) = FLOWS.get_ptr_mut(&key) {
            let this = FlowStats {
                packets: 1,
                bytes: u64::from(packet.len),
                first_seen_ns: now,
                last_seen_ns: now,
                rule_id: decision.rule_id,
                tcp_flags: packet.tcp_flags(),
                action: decision.action as u8,
                _pad: 0,
            };
            // SAFETY: see `add_to`.
            unsafe { add_to(flow, &this) };
            return;
        }
        // Evicted: admitted again like a new flow.
    }
    let Some(first_two) = slot
        .pending
        .admit(hash, packet.len, packet.tcp_flags(), now)
    else {
        return;
    };
    let flow = FlowStats {
        rule_id: decision.rule_id,
        action: decision.action as u8,
        ..first_two
    };
    let key = FlowKey::of(packet, vlan_id);
    if FLOWS.insert(&key, &flow, u64::from(BPF_NOEXIST)).is_err() {
        // In the table already: tracked in a slot another flow took since, or inserted by
        // another CPU. (Or the table could not take it, and this finds nothing.)
        match FLOWS.get_ptr_mut(&key) {
            // SAFETY: see `add_to`.
            Some(existing) => unsafe { add_to(existing, &flow) },
            None => return,
        }
    }
    slot.tracked = hash;
}

/// Adds `more` to the flow entry `flow`.
///
/// # Safety
/// `flow` is a live element of the table. Only the CPU that receives a flow writes its entry,
/// as long as the NIC keeps a flow on one queue (RSS hashes the 5-tuple). When two CPUs
/// receive one flow at once, an increment may be lost, never more: the BPF target has no
/// atomic add in Rust's `core`.
#[inline(always)]
unsafe fn add_to(flow: *mut FlowStats, more: &FlowStats) {
    // SAFETY: as the caller promises.
    unsafe { (*flow).add(more) };
}
