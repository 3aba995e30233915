//! The bpf() system call, for the commands aya 0.14 does not wrap (batched map operations are
//! in [`crate::bpf_batch`]).

use std::{
    io,
    os::fd::{FromRawFd as _, OwnedFd},
};

/// `enum bpf_cmd` values used here.
pub const BPF_MAP_CREATE: libc::c_long = 0;
pub const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
pub const BPF_PROG_TEST_RUN: libc::c_long = 10;
pub const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
pub const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
pub const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// `bpf(cmd, attr, sizeof attr)`: its non-negative result (a file descriptor for
/// BPF_MAP_CREATE), or the error it set.
///
/// # Safety
/// `attr` must be the `union bpf_attr` member that `cmd` reads, `#[repr(C)]`, and every
/// pointer in it must point to memory of the size the kernel reads or writes there.
pub unsafe fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: as the caller promises.
    let result = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, size_of::<A>()) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// BPF_PROG_TEST_RUN's part of `union bpf_attr` (include/uapi/linux/bpf.h), with the tail
/// padding spelled out: the kernel refuses non-zero bytes past the last field.
#[repr(C)]
#[derive(Default)]
pub struct TestRunAttr {
    pub prog_fd: u32,
    pub retval: u32,
    pub data_size_in: u32,
    pub data_size_out: u32,
    pub data_in: u64,
    pub data_out: u64,
    pub repeat: u32,
    pub duration: u32,
    pub ctx_size_in: u32,
    pub ctx_size_out: u32,
    pub ctx_in: u64,
    pub ctx_out: u64,
    pub flags: u32,
    pub cpu: u32,
    pub batch_size: u32,
    pub _padding: u32,
}

/// The map-creation part of `union bpf_attr`, up to `inner_map_fd`: a map's type and sizes.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct MapSpec {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    /// For a map of maps: a map like those it holds.
    pub inner_map_fd: u32,
}

/// A new map, owned by no object and pinned nowhere: gone when its descriptor closes.
pub fn create_map(mut spec: MapSpec) -> io::Result<OwnedFd> {
    // SAFETY: `spec` is the creation member BPF_MAP_CREATE reads; it holds no pointers.
    let fd = unsafe { bpf(BPF_MAP_CREATE, &mut spec) }?;
    // SAFETY: BPF_MAP_CREATE returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
