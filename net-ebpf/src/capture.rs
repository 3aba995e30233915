//! Packet capture: copies the packets a running `netxdp capture` selects to a ring buffer.
//! With no capture running, the cost is one array lookup and one compare per packet; with a
//! capture whose lease ran out, a read of the coarse clock more.
//!
//! A capture with an expression puts the expression's program (classic BPF from libpcap,
//! translated by `netxdp capture`) in [`CAPTURE_PROGS`]: the packets the capture selects are
//! tail-called to it, and it tail-calls `netxdp_capture` to copy those it matches. Without
//! an expression, nothing is tail-called.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::{bpf_ktime_get_ns, bpf_xdp_load_bytes},
    macros::map,
    maps::{Array, PerCpuArray, ProgramArray, RingBuf},
    programs::XdpContext,
};
use net_common::{
    capture::{
        CaptureConfig, CaptureCounters, CaptureHeader, CaptureRecord, MAX_SNAPLEN, RING_BYTES,
    },
    parse::Packet,
};

use crate::{clock::coarse_now_ns, filter::Decision, opaque};

/// Unread bytes in the ring past which the reader is woken at once; below, it finds the
/// records on its next periodic look (`netxdp capture` looks every few tens of ms).
const WAKEUP_BYTES: u64 = RING_BYTES as u64 / 4;

/// 1 to build the capture path in; set by the loader. A read-only global: at 0 the verifier
/// proves the capture check dead and removes it, which gives the benchmarks the program as it
/// was before capture existed.
#[unsafe(no_mangle)]
static CAPTURE_ENABLED: u8 = 1;

/// The running capture's selection; `active` 0 when none runs.
#[map(name = "CAPTURE")]
static CAPTURE: Array<CaptureConfig> = Array::pinned(1, 0);

#[map(name = "CAPTURE_STATS")]
static CAPTURE_STATS: PerCpuArray<CaptureCounters> = PerCpuArray::pinned(1, 0);

#[map(name = "CAPTURE_RING")]
static CAPTURE_RING: RingBuf = RingBuf::pinned(RING_BYTES, 0);

/// The expression's program (slot `FILTER_SLOT`), and `netxdp_capture` (slot `COPY_SLOT`).
#[map(name = "CAPTURE_PROGS")]
pub static CAPTURE_PROGS: ProgramArray = ProgramArray::pinned(2, 0);

/// Where a record is put together before it is copied to the ring in one piece.
#[map(name = "CAPTURE_SCRATCH")]
static CAPTURE_SCRATCH: PerCpuArray<CaptureRecord> = PerCpuArray::with_max_entries(1, 0);

/// What [`offer`] did with a packet.
#[derive(PartialEq, Eq)]
pub enum Offer {
    /// Copied, or not selected.
    Done,
    /// Selected, for the capture's expression to decide: tail-call it.
    ToExpression,
}

/// Copies `packet` to the ring buffer if a running capture selects it, or says that its
/// expression decides.
#[inline(always)]
pub fn offer(ctx: &XdpContext, packet: &Packet, decision: &Decision) -> Offer {
    // SAFETY: reads a global the loader set; volatile so that the compiler keeps the read for
    // the verifier to resolve.
    if unsafe { core::ptr::read_volatile(&CAPTURE_ENABLED) } == 0 {
        return Offer::Done;
    }
    let Some(config) = CAPTURE.get(0) else {
        return Offer::Done;
    };
    // The rest is cold: most packets meet no capture.
    if core::intrinsics::likely(config.active == 0) {
        return Offer::Done;
    }
    // A reader that stopped renewing its lease (killed, in whatever pid namespace) is no
    // longer copied for.
    if !config.leased_at(coarse_now_ns())
        || !config.selects(decision.action, decision.rule_id, decision.reason)
    {
        return Offer::Done;
    }
    if config.filtered != 0 {
        return Offer::ToExpression;
    }
    copy_selected(ctx, packet.len, decision, config);
    Offer::Done
}

/// Copies the packet in `ctx`, of `original_len` bytes, which the running capture's
/// expression matched.
#[inline(always)]
pub fn copy(ctx: &XdpContext, original_len: u32, decision: &Decision) {
    if let Some(config) = CAPTURE.get(0) {
        copy_selected(ctx, original_len, decision, config);
    }
}

/// The capture path proper, out of line: the hot path only pays for the tests in [`offer`].
#[inline(never)]
fn copy_selected(ctx: &XdpContext, original_len: u32, decision: &Decision, config: &CaptureConfig) {
    let Some(counters) = CAPTURE_STATS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's own copy; XDP does not preempt itself.
    let counters = unsafe { &mut *counters };
    if !counters.sample(config.active, config.sample) {
        return;
    }
    let Some(record) = CAPTURE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let mut len = original_len.min(config.snaplen);
    // Bounds the verifier can see: 1..=MAX_SNAPLEN.
    len = opaque(len);
    if len == 0 || len > MAX_SNAPLEN {
        return;
    }
    // SAFETY: this CPU's own scratch record; XDP does not preempt itself. The helper writes
    // `len` bytes, at most the size of `data`.
    let loaded = unsafe {
        (*record).header = CaptureHeader {
            timestamp_ns: bpf_ktime_get_ns(),
            ifindex: (*ctx.ctx).ingress_ifindex,
            original_len,
            captured_len: len,
            action: decision.action,
            rule_id: decision.rule_id,
            reason: decision.reason as u32,
        };
        bpf_xdp_load_bytes(ctx.ctx, 0, (*record).data.as_mut_ptr().cast(), len)
    };
    if loaded != 0 {
        return;
    }
    let size = size_of::<CaptureHeader>() + len as usize;
    // SAFETY: `record` holds a header and `len` <= MAX_SNAPLEN bytes of data, `size` in all.
    let bytes = unsafe { core::slice::from_raw_parts(record.cast::<u8>(), size) };
    if CAPTURE_RING
        .output::<[u8]>(bytes, wakeup_flags(size as u64))
        .is_ok()
    {
        counters.captured += 1;
    } else {
        counters.lost += 1;
    }
}

/// The reader is woken once per crossing of [`WAKEUP_BYTES`], not per record. The ring's
/// default wakes it whenever it had caught up, which for a quick reader means a wakeup (an
/// interrupt to this CPU) per record: thousands of nanoseconds each, measured.
#[inline(always)]
fn wakeup_flags(size: u64) -> u64 {
    let unread = CAPTURE_RING.query(u64::from(BPF_RB_AVAIL_DATA));
    if unread < WAKEUP_BYTES && unread + size >= WAKEUP_BYTES {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}
