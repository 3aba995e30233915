//! The netxdp XDP program.
//!
//! It parses each frame with net-common's parser (the same code the host tests run as the
//! reference), decides its verdict with the filter's rule tables, and adds it to one per-CPU
//! counter block.
#![no_std]
#![no_main]
// `atomic_cxchg`: the BPF target offers no atomic type with compare-and-swap, though the
// instruction set has one (BPF_CMPXCHG, which the verifier accepts since 5.12).
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod bans;
mod capture;
mod clock;
mod filter;
mod flood;
mod flows;
mod frame;
mod limit;
mod synguard;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use net_common::{
    capture::FILTER_SLOT,
    info::AttachInfo,
    parse::{Packet, parse_into},
    stats::Stats,
};

use crate::{
    filter::{Decision, Outcome},
    frame::XdpFrame,
};

/// The counter block, one entry, one copy per CPU.
#[map(name = "STATS")]
static STATS: PerCpuArray<Stats> = PerCpuArray::pinned(1, 0);

/// Where the packet is parsed to, one per CPU: see `parse_into` for why not on the stack.
/// `netxdp_search` reads it there.
#[map(name = "PACKET")]
static PACKET: PerCpuArray<Packet> = PerCpuArray::with_max_entries(1, 0);

/// How the loader attached this program; written by userspace only. Declared here so that
/// it lives and is pinned beside the program's other maps.
#[map(name = "INFO")]
static INFO: Array<AttachInfo> = Array::pinned(1, 0);

/// `netxdp_search`, for packets the fast path cannot settle.
#[map(name = "SEARCH")]
static SEARCH: ProgramArray = ProgramArray::pinned(1, 0);

#[xdp]
pub fn netxdp(ctx: XdpContext) -> u32 {
    let Some(packet) = PACKET.get_ptr_mut(0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's own scratch copy; XDP does not preempt itself.
    let packet = unsafe { &mut *packet };
    parse_into(&XdpFrame::new(&ctx), packet);
    let packet = &*packet;
    if let Some(stats) = STATS.get_ptr_mut(0) {
        // SAFETY: the map value is this CPU's own copy; XDP does not preempt itself.
        unsafe { (*stats).record_class(packet) };
    }
    if packet.is_defective() {
        // The log level is a read-only global set at load: with logging off (every pinned
        // attachment) the verifier proves this call dead and removes it.
        debug!(
            &ctx,
            "{} frame, {} bytes",
            packet.defect.as_str(),
            packet.len
        );
    }
    if let Some(banned) = bans::check(packet) {
        return count_verdict(&ctx, packet, &banned);
    }
    let decision = match filter::decide_fast(packet) {
        Outcome::Decided(decision) => decision,
        Outcome::Search => {
            // SAFETY: the tail call replaces this program, or returns if the slot is empty.
            unsafe { SEARCH.tail_call(&ctx, 0) };
            // The loader fills the slot before attaching, but anyone with access to its pin
            // can empty it. The packet then gets the default rather than a search here,
            // which the verifier would have to walk along every path of the parser; counted,
            // so that it shows.
            if let Some(stats) = STATS.get_ptr_mut(0) {
                // SAFETY: the map value is this CPU's own copy; XDP does not preempt itself.
                unsafe { (*stats).search_failed.add(packet.len as u64) };
            }
            filter::unsearched(packet)
        }
    };
    count_verdict(&ctx, packet, &decision)
}

/// The rule search the fast path cannot do, for the packet `netxdp` parsed into `PACKET` on
/// this CPU: the decision trees' walk, or the bit-vector search's loop. A program of its own
/// so that the verifier walks those loops once, not once per path of the parser.
#[xdp]
pub fn netxdp_search(ctx: XdpContext) -> u32 {
    let Some(packet) = PACKET.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let (decision, searched) = filter::decide(packet);
    if searched == filter::Searched::BitVector
        && let Some(stats) = STATS.get_ptr_mut(0)
    {
        // SAFETY: the map value is this CPU's own copy; XDP does not preempt itself.
        unsafe { (*stats).searched.add(packet.len as u64) };
    }
    count_verdict(&ctx, packet, &decision)
}

/// Counts the verdict, and the packet to its flow; returns the action. A SYN or ACK to a
/// port the SYN-flood guard holds goes to the guard's program instead, which counts it.
#[inline(always)]
fn count_verdict(ctx: &XdpContext, packet: &Packet, decision: &Decision) -> u32 {
    if decision.action == xdp_action::XDP_PASS && synguard::wants(packet) {
        decision.stash();
        // SAFETY: the tail call replaces this program, or returns if the slot is empty.
        unsafe { synguard::SYNGUARD_PROG.tail_call(ctx, 0) };
    }
    if let Some(stats) = STATS.get_ptr_mut(0) {
        // SAFETY: the map value is this CPU's own copy; XDP does not preempt itself.
        unsafe { (*stats).record_verdict(packet.len, decision.action, decision.reason) };
    }
    flows::track(ctx, packet, decision);
    if capture::offer(ctx, packet, decision) == capture::Offer::ToExpression {
        decision.stash();
        // SAFETY: the tail call replaces this program, or returns if the slot is empty.
        unsafe { capture::CAPTURE_PROGS.tail_call(ctx, FILTER_SLOT) };
        // The capture is ending and took its expression out: the packet is not copied.
    }
    decision.action
}

/// `value`, hidden from the optimiser, so that a bound check after it stays as written. LLVM
/// may know a bound the verifier cannot see (that `trailing_zeros` of a non-zero word is below
/// 64, which it computes through a table; that a `min` is below its operand) and drop a check
/// the verifier needs.
#[inline(always)]
pub(crate) fn opaque<T: Copy>(value: T) -> T {
    // SAFETY: reads a live local.
    unsafe { core::ptr::read_volatile(&value) }
}

/// The SYN-flood guard, for a SYN or ACK to a guarded port that the rules passed (see
/// `synguard`): answers a SYN, checks an ACK against its cookie, and counts the packet.
#[xdp]
pub fn netxdp_synguard(ctx: XdpContext) -> u32 {
    let Some(packet) = PACKET.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let len = packet.len;
    let outcome = synguard::guard(&ctx, packet);
    let action = synguard::action(&outcome);
    let reason = match outcome {
        synguard::Guarded::Drop => net_common::rule::reason::SYNGUARD,
        _ => Decision::stashed().reason,
    };
    if let Some(stats) = STATS.get_ptr_mut(0) {
        // SAFETY: the map value is this CPU's own copy; XDP does not preempt itself.
        unsafe { (*stats).record_verdict(len, action, reason) };
    }
    action
}

/// Copies a packet a capture expression matched: tail-called by the expression's program
/// (see `netxdp::capture::translate`), for the packet `netxdp` parsed into `PACKET`.
#[xdp]
pub fn netxdp_capture(ctx: XdpContext) -> u32 {
    let decision = Decision::stashed();
    if let Some(packet) = PACKET.get(0) {
        capture::copy(&ctx, packet.len, &decision);
    }
    decision.action
}

/// Returns XDP_PASS and nothing else: the floor that `cargo xtask bench` measures beside
/// `netxdp`, so that the test-run overhead can be told from the program's own cost. Never
/// attached by the CLI.
#[xdp]
pub fn pass_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// Marks the object GPL-compatible so that it may call GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
