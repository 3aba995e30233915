//! The bpf() system call, for the commands aya 0.14 does not wrap (batched map operations are
//! in [`crate::bpf_batch`]).

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
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

/// The element part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ElementAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Sets element `index` of a map whose values are file descriptors (a program array, an
/// array of maps) to `value`.
pub fn set_fd_element(map: BorrowedFd<'_>, index: u32, value: BorrowedFd<'_>) -> io::Result<()> {
    let value = value.as_raw_fd() as u32;
    let mut attr = ElementAttr {
        map_fd: map.as_raw_fd() as u32,
        key: (&raw const index) as u64,
        value: (&raw const value) as u64,
        ..ElementAttr::default()
    };
    // SAFETY: `attr` is the element member BPF_MAP_UPDATE_ELEM reads; its pointers are to a
    // 4-byte key and a 4-byte value (a file descriptor), the sizes of such maps.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(|_| ())
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

pub const BPF_PROG_LOAD: libc::c_long = 5;
/// `enum bpf_prog_type` and `enum bpf_attach_type` values of an XDP program.
pub const BPF_PROG_TYPE_XDP: u32 = 6;
pub const BPF_XDP: u32 = 37;

/// BPF_PROG_LOAD's part of `union bpf_attr`, up to `expected_attach_type`: the kernel takes
/// the fields after it as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The verifier's log of a refused program is kept up to this many bytes.
const VERIFIER_LOG_BYTES: usize = 1 << 20;

/// A program the kernel refused to load, with what the verifier said.
#[derive(Debug, thiserror::Error)]
#[error("the kernel refused the program: {error}{}", if log.is_empty() { String::new() } else { format!("; the verifier's log ends:\n{}", log_tail(log)) })]
pub struct ProgLoadError {
    pub error: io::Error,
    /// The verifier's whole log (empty if it wrote none).
    pub log: String,
}

fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

/// Loads an XDP program from its raw instructions (`struct bpf_insn`, 8 bytes each), under
/// `name` (at most 15 bytes are kept) and a GPL licence. The verifier's log is asked for
/// only when the first attempt fails.
pub fn load_xdp_program(insns: &[[u8; 8]], name: &str) -> Result<OwnedFd, ProgLoadError> {
    let license = c"GPL";
    let mut prog_name = [0u8; 16];
    for (to, from) in prog_name[..15].iter_mut().zip(name.bytes()) {
        *to = from;
    }
    let attr = |log: &mut Vec<u8>| ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name,
        expected_attach_type: BPF_XDP,
        ..ProgLoadAttr::default()
    };
    let load = |log: &mut Vec<u8>| {
        let mut attr = attr(log);
        // SAFETY: the program-load member, whose pointers point to `insns` (insn_cnt
        // instructions of 8 bytes), the NUL-terminated licence, and `log` (log_size bytes),
        // all alive for the call.
        let fd = unsafe { bpf(BPF_PROG_LOAD, &mut attr) }?;
        // SAFETY: BPF_PROG_LOAD returned a new file descriptor that nothing else owns.
        Ok::<_, io::Error>(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    };
    let first = load(&mut Vec::new());
    match first {
        Ok(fd) => Ok(fd),
        // Asked again with the log for what the verifier says (not for a missing privilege).
        Err(error) if error.raw_os_error() != Some(libc::EPERM) => {
            let mut log = vec![0u8; VERIFIER_LOG_BYTES];
            let retried = load(&mut log);
            let end = log.iter().position(|&byte| byte == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]).into_owned();
            match retried {
                Ok(fd) => Ok(fd),
                // The log filled its buffer: the first attempt's error is the verifier's.
                Err(retried) if retried.raw_os_error() == Some(libc::ENOSPC) => {
                    Err(ProgLoadError { error, log })
                }
                Err(error) => Err(ProgLoadError { error, log }),
            }
        }
        Err(error) => Err(ProgLoadError {
            error,
            log: String::new(),
        }),
    }
}

/// Runs `program` once on `frame` (BPF_PROG_TEST_RUN): what it returned.
pub fn test_run(program: BorrowedFd<'_>, frame: &[u8]) -> io::Result<u32> {
    let mut attr = TestRunAttr {
        prog_fd: program.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    // SAFETY: the test-run member; the kernel reads `frame` (borrowed for the call) and
    // writes only into `attr`.
    unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) }?;
    Ok(attr.retval)
}
