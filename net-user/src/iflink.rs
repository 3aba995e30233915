//! What rtnetlink says about XDP on an interface, and changing a program attached through
//! it: how netxdp names, and with `--force` replaces, another tool's XDP program.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use net_common::info::AttachMode;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// The XDP program on an interface, as `ip -d link` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachedXdp {
    pub program_id: u32,
    pub mode: &'static str,
    /// XDP_FLAGS_* of that mode, to detach it again.
    flags: u32,
}

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
/// Only if the program attached is still the one expected (IFLA_XDP_EXPECTED_FD).
const XDP_FLAGS_REPLACE: u32 = 1 << 4;

impl AttachedXdp {
    /// netxdp's own program, attached through netlink in `mode`.
    pub fn netxdp(program_id: u32, mode: AttachMode) -> Self {
        let (name, flags) = match mode {
            AttachMode::Native => ("native", XDP_FLAGS_DRV_MODE),
            AttachMode::Skb => ("skb", XDP_FLAGS_SKB_MODE),
        };
        Self {
            program_id,
            mode: name,
            flags,
        }
    }

    /// The mode as netxdp records it; `None` for offload or several modes at once.
    pub fn attach_mode(&self) -> Option<AttachMode> {
        match self.flags {
            XDP_FLAGS_DRV_MODE => Some(AttachMode::Native),
            XDP_FLAGS_SKB_MODE => Some(AttachMode::Skb),
            _ => None,
        }
    }
}

/// The XDP program attached to interface `ifindex`, if any.
pub fn attached_xdp(ifindex: u32) -> io::Result<Option<AttachedXdp>> {
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    let replies = request(RouteNetlinkMessage::GetLink(link), NLM_F_REQUEST)?;
    let attributes = replies.into_iter().find_map(|message| match message {
        RouteNetlinkMessage::NewLink(link) => Some(link.attributes),
        _ => None,
    });
    let Some(xdp) = attributes
        .into_iter()
        .flatten()
        .find_map(|attribute| match attribute {
            LinkAttribute::Xdp(xdp) => Some(xdp),
            _ => None,
        })
    else {
        return Ok(None);
    };
    let mut attached = None;
    let mut program_id = 0;
    for nla in xdp {
        match nla {
            LinkXdp::Attached(mode) => attached = Some(mode),
            LinkXdp::ProgId(id) => program_id = id,
            _ => {}
        }
    }
    let (mode, flags) = match attached {
        None | Some(XdpAttached::None) => return Ok(None),
        Some(XdpAttached::Driver) => ("native", XDP_FLAGS_DRV_MODE),
        Some(XdpAttached::SocketBuffer) => ("skb", XDP_FLAGS_SKB_MODE),
        Some(XdpAttached::Hardware) => ("offload", XDP_FLAGS_HW_MODE),
        Some(_) => ("multiple", 0),
    };
    Ok(Some(AttachedXdp {
        program_id,
        mode,
        flags,
    }))
}

/// Removes the XDP program attached through netlink (`ip link set dev IFACE xdp off`). The
/// kernel refuses (EBUSY) when a bpf_link holds it: only its owner can remove that.
pub fn detach_xdp(ifindex: u32, attached: AttachedXdp) -> io::Result<()> {
    set_xdp(
        ifindex,
        vec![LinkXdp::Fd(-1), LinkXdp::Flags(attached.flags)],
    )
}

/// Puts `program` in place of `attached`, whose file descriptor is `expected`, in one step:
/// the kernel refuses (EEXIST) if another program took its place meanwhile, and the
/// interface is never without one of the two.
pub fn replace_xdp(
    ifindex: u32,
    attached: AttachedXdp,
    expected: BorrowedFd<'_>,
    program: BorrowedFd<'_>,
) -> io::Result<()> {
    set_xdp(
        ifindex,
        vec![
            LinkXdp::Fd(program.as_raw_fd()),
            LinkXdp::Flags(attached.flags | XDP_FLAGS_REPLACE),
            LinkXdp::ExpectedFd(expected.as_raw_fd() as u32),
        ],
    )
}

/// Removes `attached`, whose file descriptor is `expected`, only if it is still the program
/// attached: a program another tool put in its place stays.
pub fn detach_expected(
    ifindex: u32,
    attached: AttachedXdp,
    expected: BorrowedFd<'_>,
) -> io::Result<()> {
    set_xdp(
        ifindex,
        vec![
            LinkXdp::Fd(-1),
            LinkXdp::Flags(attached.flags | XDP_FLAGS_REPLACE),
            LinkXdp::ExpectedFd(expected.as_raw_fd() as u32),
        ],
    )
}

fn set_xdp(ifindex: u32, xdp: Vec<LinkXdp>) -> io::Result<()> {
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    link.attributes.push(LinkAttribute::Xdp(xdp));
    request(
        RouteNetlinkMessage::SetLink(link),
        NLM_F_REQUEST | NLM_F_ACK,
    )
    .map(drop)
}

/// Sends one request and collects the replies up to its ACK (or its single answer).
fn request(message: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
    packet.header.flags = flags;
    packet.header.sequence_number = 1;
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut replies = Vec::new();
    let mut receive = vec![0; 32 * 1024];
    loop {
        let size = socket.recv(&mut &mut receive[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let reply: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&receive[offset..size])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let length = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Error(error) if error.code.is_some() => return Err(error.to_io()),
                // An ACK (error code 0) or the end of a dump.
                NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::InnerMessage(inner) => {
                    replies.push(inner);
                    if flags & NLM_F_ACK == 0 {
                        return Ok(replies);
                    }
                }
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}
