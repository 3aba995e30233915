//! The bpf() system call, for the commands aya 0.14 does not wrap.

use std::io;

/// `enum bpf_cmd` values used here.
pub const BPF_MAP_CREATE: libc::c_long = 0;
pub const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
pub const BPF_PROG_TEST_RUN: libc::c_long = 10;
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

/// The batch part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
pub struct BatchAttr {
    pub in_batch: u64,
    pub out_batch: u64,
    pub keys: u64,
    pub values: u64,
    pub count: u32,
    pub map_fd: u32,
    pub elem_flags: u64,
    pub flags: u64,
}

/// Elements `first .. first + count` of the array map `map_fd`, whose values are `V`, read
/// with BPF_MAP_LOOKUP_BATCH: a few system calls where one per element would take thousands.
pub fn read_array<V: aya::Pod>(
    map_fd: std::os::fd::BorrowedFd<'_>,
    first: u32,
    count: u32,
) -> io::Result<Vec<V>> {
    use std::os::fd::AsRawFd as _;

    // SAFETY: `V` is Pod: every bit pattern, zeros too, is a valid value.
    let mut values = vec![unsafe { std::mem::zeroed::<V>() }; count as usize];
    let mut keys = vec![0u32; count as usize];
    let mut read = 0usize;
    // The batch token of an array is the last index read: the next batch starts after it.
    let mut token = first.wrapping_sub(1);
    let mut out = 0u32;
    while read < count as usize {
        let mut attr = BatchAttr {
            in_batch: if first == 0 && read == 0 {
                0
            } else {
                (&raw const token) as u64
            },
            out_batch: (&raw mut out) as u64,
            keys: keys[read..].as_mut_ptr() as u64,
            values: values[read..].as_mut_ptr() as u64,
            count: (count as usize - read) as u32,
            map_fd: map_fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `keys` and `values` have room for `attr.count` keys (u32, the array's key)
        // and values (`V`, the caller's promise: the map's value type), and the tokens are
        // u32 indices.
        let result = unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) };
        let done = match result {
            Ok(_) => false,
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => true,
            Err(error) => return Err(error),
        };
        read += attr.count as usize;
        token = out;
        if done || attr.count == 0 {
            break;
        }
    }
    if read < count as usize {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the array ended after {read} of {count} elements"),
        ));
    }
    Ok(values)
}
