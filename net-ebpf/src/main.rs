//! The netxdp XDP program.
//!
//! It parses each frame with net-common's parser (the same code the host tests run as the
//! reference), decides its verdict with the filter's rule tables, and adds it to one per-CPU
//! counter block.
#![no_std]
#![no_main]

mod filter;
mod frame;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use net_common::{info::AttachInfo, parse::parse, stats::Stats};

use crate::frame::XdpFrame;

/// The counter block, one entry, one copy per CPU.
#[map(name = "STATS")]
static STATS: PerCpuArray<Stats> = PerCpuArray::pinned(1, 0);

/// How the loader attached this program; written by userspace only. Declared here so that
/// it lives and is pinned beside the program's other maps.
#[map(name = "INFO")]
static INFO: Array<AttachInfo> = Array::pinned(1, 0);

#[xdp]
pub fn netxdp(ctx: XdpContext) -> u32 {
    let packet = parse(&XdpFrame::new(&ctx));
    let stats = STATS.get_ptr_mut(0);
    if let Some(stats) = stats {
        // SAFETY: the map value is this CPU's own copy; XDP does not preempt itself.
        unsafe { (*stats).record_class(&packet) };
    }
    if packet.malformed {
        // The log level is a read-only global set at load: with logging off (every pinned
        // attachment) the verifier proves this call dead and removes it.
        debug!(&ctx, "malformed frame, {} bytes", packet.len);
    }
    let decision = filter::decide(&packet);
    if let Some(stats) = stats {
        // SAFETY: as above.
        unsafe { (*stats).record_verdict(packet.len, decision.action, decision.matched) };
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
