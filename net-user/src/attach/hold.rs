//! How netxdp's program is held on an interface: by a pinned bpf_link (an attach of its
//! own), or by rtnetlink (after `attach --force` took the place of another tool's netlink
//! program in one step, which a bpf_link cannot do: the kernel refuses a link where a
//! netlink program is).

use std::os::fd::AsFd as _;

use anyhow::{Context as _, Result, bail};
use aya::programs::{ProgramFd, ProgramInfo, Xdp, links::PinnedLink};
use net_common::info::AttachInfo;
use tracing::debug;

use crate::{
    iflink::{self, AttachedXdp},
    pins::PinDir,
    preflight,
};

/// What keeps a pinned attachment's program on its interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The bpf_link pinned as `link`.
    Link,
    /// rtnetlink; the program is pinned as `netlink` too.
    Netlink,
}

impl Hold {
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Link => "link",
            Hold::Netlink => "netlink",
        }
    }

    /// How the attachment pinned at `pins` is held, if it is.
    pub fn of(pins: &PinDir) -> Option<Hold> {
        if pins.link().exists() {
            Some(Hold::Link)
        } else if pins.netlink().exists() {
            Some(Hold::Netlink)
        } else {
            None
        }
    }
}

/// Whether the attachment recorded in `record` still holds the interface whose index is now
/// `ifindex`: a link dies with its interface; a netlink program can also be taken off by
/// another tool (`ip link set dev IFACE xdp off`).
pub fn holds(pins: &PinDir, record: &AttachInfo, ifindex: u32) -> bool {
    record.ifindex == ifindex
        && match Hold::of(pins) {
            Some(Hold::Link) => true,
            Some(Hold::Netlink) => netlink_program_in_place(pins, ifindex),
            None => false,
        }
}

fn netlink_program_in_place(pins: &PinDir, ifindex: u32) -> bool {
    let Ok(ours) = ProgramInfo::from_pin(pins.netlink()) else {
        return false;
    };
    iflink::attached_xdp(ifindex)
        .ok()
        .flatten()
        .is_some_and(|attached| attached.program_id == ours.id())
}

/// Takes the program off the interface and unpins its hold. A netlink program is removed
/// only if it is still the one on the interface the record names.
pub fn release(pins: &PinDir, record: Option<AttachInfo>) -> Result<()> {
    match Hold::of(pins) {
        None => Ok(()),
        Some(Hold::Link) => {
            let link = PinnedLink::from_pin(pins.link())
                .with_context(|| format!("opening {}", pins.link().display()))?;
            // Unpinning drops the last reference: the kernel detaches the program.
            drop(
                link.unpin()
                    .with_context(|| format!("unpinning {}", pins.link().display()))?,
            );
            debug!("unpinned {}", pins.link().display());
            Ok(())
        }
        Some(Hold::Netlink) => {
            let ifindex = preflight::ifindex(pins.iface()).ok();
            let mode = record.and_then(|record| record.mode());
            if let (Some(record), Some(ifindex), Some(mode)) = (record, ifindex, mode)
                && holds(pins, &record, ifindex)
            {
                let ours = ProgramInfo::from_pin(pins.netlink())?;
                let fd = ours.fd()?;
                iflink::detach_expected(ifindex, AttachedXdp::netxdp(ours.id(), mode), fd.as_fd())
                    .with_context(|| {
                        format!("removing netxdp's XDP program from {}", pins.iface())
                    })?;
            }
            std::fs::remove_file(pins.netlink())
                .with_context(|| format!("unpinning {}", pins.netlink().display()))
        }
    }
}

/// Puts `program` in the place of `other`, another tool's program attached through netlink,
/// in one step: the interface is never without one of the two, and if `other` changed since
/// it was seen, nothing is replaced.
pub fn replace(pins: &PinDir, ifindex: u32, other: AttachedXdp, program: &Xdp) -> Result<()> {
    let iface = pins.iface();
    let described = super::describe(other);
    let expected =
        program_fd(other.program_id).with_context(|| format!("opening {described} on {iface}"))?;
    match iflink::replace_xdp(ifindex, other, expected.as_fd(), program.fd()?.as_fd()) {
        Ok(()) => Ok(()),
        Err(error) if error.raw_os_error() == Some(libc::EBUSY) => bail!(
            "{described} on {iface} is held by a bpf_link, which only its owner can remove \
             (`bpftool link` lists it; `bpftool link detach id ID` forces it off); it is \
             still in place"
        ),
        Err(error) if error.raw_os_error() == Some(libc::EEXIST) => bail!(
            "the XDP program on {iface} changed while netxdp was loading; nothing was \
             replaced (`netxdp attach {iface} --force` again replaces what is there now)"
        ),
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "replacing {described} on {iface}; it is still in place"
        ))),
    }
}

/// Pins `program` as held by netlink in `mode`.
pub fn pin_netlink_hold(pins: &PinDir, program: &mut Xdp) -> Result<()> {
    program
        .pin(pins.netlink())
        .with_context(|| format!("pinning {}", pins.netlink().display()))
}

/// A file descriptor of the loaded program with id `id`.
fn program_fd(id: u32) -> Result<ProgramFd> {
    let info = aya::programs::loaded_programs()
        .filter_map(|info| info.ok())
        .find(|info| info.id() == id)
        .with_context(|| format!("program id {id} is no longer loaded"))?;
    Ok(info.fd()?)
}
