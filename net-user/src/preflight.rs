//! Checks made before touching the kernel, so that a missing privilege or mount is reported
//! as advice rather than as a raw EPERM or ENOENT from deep inside a load.

use std::{
    fs::File,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
    mount::{MsFlags, mount},
    sys::statfs,
};

use crate::{iface::IfaceName, pins::BPFFS};

/// A precondition that is not met; each message says how to meet it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "netxdp needs root (or CAP_BPF and CAP_NET_ADMIN) to load XDP programs: run it with sudo"
    )]
    NotPrivileged,
    #[error("no such interface: {0} (see `ip link` for the interfaces of this host)")]
    NoSuchInterface(String),
    #[error(
        "bpffs is not mounted at {BPFFS} and netxdp could not mount it ({0}): mount it with \
         `sudo mount -t bpf bpf {BPFFS}`"
    )]
    BpffsMissing(Errno),
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Root, or the capabilities that loading and attaching XDP programs needs.
pub fn require_privileges() -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let effective = effective_capabilities().unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    if has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN)) {
        Ok(())
    } else {
        Err(Error::NotPrivileged)
    }
}

fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The interface's index.
pub fn ifindex(iface: &IfaceName) -> Result<u32, Error> {
    match nix::net::if_::if_nametoindex(iface.as_str()) {
        Ok(index) if index != 0 => Ok(index),
        _ => Err(Error::NoSuchInterface(iface.to_string())),
    }
}

/// bpffs mounted where netxdp pins: mounted here when it is not, as libxdp and bpftool do
/// (a machine without systemd, or a container, has none), and said once on stderr.
pub fn ensure_bpffs() -> Result<(), Error> {
    if is_bpffs() {
        return Ok(());
    }
    // Two netxdp processes that both found it missing would mount it twice, the second
    // mount hiding whatever the first one's owner pinned meanwhile. The directory under the
    // mount point is the one thing both can lock: the loser then finds it mounted.
    let _lock = File::open(BPFFS)
        .ok()
        .and_then(|dir| Flock::lock(dir, FlockArg::LockExclusive).ok());
    if is_bpffs() {
        return Ok(());
    }
    // As systemd mounts it: pins are for root only, and nothing there is a device or runs.
    mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .map_err(Error::BpffsMissing)?;
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!("netxdp: mounted bpffs at {BPFFS} (it was not mounted)");
    }
    Ok(())
}

fn is_bpffs() -> bool {
    statfs::statfs(Path::new(BPFFS)).is_ok_and(|fs| fs.filesystem_type() == statfs::BPF_FS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_interface_is_named_in_the_error() {
        let error = ifindex(&"nxnosuch0".parse().unwrap()).unwrap_err();
        assert!(matches!(error, Error::NoSuchInterface(ref n) if n == "nxnosuch0"));
        assert!(error.to_string().contains("ip link"));
    }

    #[test]
    fn loopback_has_an_index() {
        assert!(ifindex(&"lo".parse().unwrap()).unwrap() > 0);
    }
}
