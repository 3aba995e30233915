//! The coarse clock, cheaply.

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    macros::map,
    maps::{Array, PerCpuArray},
};

/// 1 makes the clock read [`TEST_NOW`]: set at load by the tests that drive the limits with
/// packet times of their own (a test run carries none). A read-only global: at 0, as every
/// attachment loads it, the verifier removes the test path.
#[unsafe(no_mangle)]
static TEST_CLOCK: u8 = 0;

/// The time under [`TEST_CLOCK`], written by the test.
#[map(name = "TEST_NOW")]
static TEST_NOW: Array<u64> = Array::with_max_entries(1, 0);

/// The coarse clock, read once per tick per CPU: see [`coarse_now_ns`].
#[map(name = "CLOCK")]
static CLOCK: PerCpuArray<ClockCache> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
struct ClockCache {
    jiffies: u64,
    ns: u64,
}

/// CLOCK_MONOTONIC_COARSE, as `bpf_ktime_get_coarse_ns` gives it, at a fraction of the cost:
/// that helper costs a rule hit some 20 ns, while `bpf_jiffies64` is inlined to one load, and
/// the coarse clock only moves when jiffies do.
#[inline(always)]
pub fn coarse_now_ns() -> u64 {
    // SAFETY: a read-only global, written only at load.
    if unsafe { core::ptr::read_volatile(&TEST_CLOCK) } != 0 {
        return TEST_NOW.get(0).copied().unwrap_or(0);
    }
    // SAFETY: helpers without preconditions.
    let jiffies = unsafe { bpf_jiffies64() };
    match CLOCK.get_ptr_mut(0) {
        // SAFETY: this CPU's own copy; XDP does not preempt itself.
        Some(cache) => unsafe {
            if (*cache).jiffies != jiffies {
                (*cache).jiffies = jiffies;
                (*cache).ns = bpf_ktime_get_coarse_ns();
            }
            (*cache).ns
        },
        // SAFETY: as above.
        None => unsafe { bpf_ktime_get_coarse_ns() },
    }
}
