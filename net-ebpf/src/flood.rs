//! Flood generators for `cargo xtask bench`: run with BPF_PROG_TEST_RUN in live-frames mode on
//! one end of a veth pair, each returns XDP_TX, so that the kernel sends every copy of the test
//! frame to the other end, where netxdp is attached. Never attached by the CLI.

use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_get_prandom_u32, macros::xdp,
    programs::XdpContext,
};

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

/// Drops every frame: the receiving end's floor, beside netxdp.
#[xdp]
pub fn drop_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}
