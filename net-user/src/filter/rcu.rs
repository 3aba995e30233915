//! Waiting, from userspace, until no CPU still runs an XDP program that read the old value of
//! a map.
//!
//! XDP programs run inside RCU read-side critical sections. After the commit flips the active
//! generation, a packet that read the old generation number may still be classifying with the
//! old tables; only when an RCU grace period has passed is the retired generation free to be
//! rewritten. Userspace cannot call `synchronize_rcu()`, but the kernel calls it on its behalf
//! whenever a map-in-map element is updated (`maybe_wait_bpf_programs` in
//! kernel/bpf/syscall.c, for BPF_MAP_TYPE_ARRAY_OF_MAPS and HASH_OF_MAPS, used by a program or
//! not; the kernel's own selftests trigger it this way). [`RcuBarrier`] is such a map, with
//! the one-entry array it stores, made for that purpose only.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
};

use crate::bpf_syscall::{MapSpec, create_map, set_fd_element};

const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

/// A one-entry array of maps holding a one-entry array: updating it waits for an RCU grace
/// period.
pub struct RcuBarrier {
    outer: OwnedFd,
    inner: OwnedFd,
}

impl RcuBarrier {
    pub fn new() -> io::Result<Self> {
        let inner = create_map(MapSpec {
            map_type: BPF_MAP_TYPE_ARRAY,
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            ..MapSpec::default()
        })?;
        let outer = create_map(MapSpec {
            map_type: BPF_MAP_TYPE_ARRAY_OF_MAPS,
            key_size: 4,
            value_size: 4,
            max_entries: 1,
            inner_map_fd: inner.as_raw_fd() as u32,
            ..MapSpec::default()
        })?;
        Ok(Self { outer, inner })
    }

    /// Returns once every XDP program run that began before the call has ended.
    pub fn wait(&self) -> io::Result<()> {
        set_fd_element(self.outer.as_fd(), 0, self.inner.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_barrier_is_made_and_waits() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var("CI").is_err(),
                "creating BPF maps needs root under CI"
            );
            eprintln!("SKIPPED the_barrier_is_made_and_waits: creating BPF maps needs root");
            return;
        }
        let barrier = RcuBarrier::new().expect("a map-in-map");
        barrier.wait().expect("an RCU wait");
        barrier.wait().expect("and another");
    }
}
