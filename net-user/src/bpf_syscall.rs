//! The bpf() system call, for the commands aya 0.14 does not wrap.

use std::io;

/// `enum bpf_cmd` values used here.
pub const BPF_MAP_CREATE: libc::c_long = 0;
pub const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
pub const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

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
