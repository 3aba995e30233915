//! The kernel program's clock, read from userspace: what rule hits, flows, sources, capture
//! records and capture leases are stamped with.

/// CLOCK_MONOTONIC now, in nanoseconds: the clock of the kernel's `bpf_ktime_get_ns` and,
/// within one tick, of `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE).
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|now| now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64)
        .unwrap_or(0)
}

/// CLOCK_MONOTONIC_COARSE now, in nanoseconds: what the kernel program's coarse clock reads
/// (`bpf_ktime_get_coarse_ns`, moved once a tick), for times the program compares with its
/// own, such as when a ban ends.
pub fn coarse_monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .map(|now| now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64)
        .unwrap_or(0)
}
