//! Flood generators for `cargo xtask bench`: run with BPF_PROG_TEST_RUN in live-frames mode on
//! one end of a veth pair, each returns XDP_TX, so that the kernel sends every copy of the test
//! frame to the other end, where netxdp is attached. Never attached by the CLI.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::bpf_get_prandom_u32,
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};
use net_common::FLOOD_TEMPLATE_LEN;

/// The IPv4 source address of an untagged frame: Ethernet (14) + 12.
const IPV4_SOURCE: usize = 26;

/// Sends the frame as it is: one flow.
#[xdp]
pub fn flood_fixed(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// Sends the frame with a random IPv4 source: in live-frames mode each copy keeps what the
/// program wrote, so every frame is a new flow, as in a spoofed-source flood.
#[xdp]
pub fn flood_spoof(ctx: XdpContext) -> u32 {
    let at = ctx.data() + IPV4_SOURCE;
    if at + 4 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: the 4 bytes at `at` lie within the packet, as just checked; the helper has no
    // preconditions.
    unsafe { core::ptr::write_unaligned(at as *mut u32, bpf_get_prandom_u32()) };
    xdp_action::XDP_TX
}

/// The frame [`flood_rewritten`] sends, written by the bench.
#[map(name = "FLOOD_TEMPLATE")]
static FLOOD_TEMPLATE: Array<[u8; FLOOD_TEMPLATE_LEN]> = Array::with_max_entries(1, 0);

/// Sends the template frame, written afresh into every copy: the live-frames mode recycles
/// its pages with whatever the receiver left in them, and a receiver that answers in place
/// (the SYN guard turns a SYN into its SYN-ACK) would otherwise be sent its own answers.
#[xdp]
pub fn flood_rewritten(ctx: XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + FLOOD_TEMPLATE_LEN > end {
        return xdp_action::XDP_ABORTED;
    }
    let Some(template) = FLOOD_TEMPLATE.get_ptr(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let template = template as usize;
    // Whole words, then the last one again over the tail: no byte loop for the verifier.
    let last = FLOOD_TEMPLATE_LEN - 8;
    for at in (0..last).step_by(8).chain([last]) {
        // SAFETY: 8 bytes within the template and within the packet, as just checked.
        unsafe {
            let word = core::ptr::read_unaligned((template + at) as *const u64);
            core::ptr::write_unaligned((data + at) as *mut u64, word);
        }
    }
    xdp_action::XDP_TX
}

/// Drops every frame: the receiving end's floor, beside netxdp.
#[xdp]
pub fn drop_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}
