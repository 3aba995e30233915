//! What rtnetlink says about XDP on an interface, and removing a program attached through
//! it: how netxdp names, and with `--force` replaces, another tool's XDP program.

use std::io;

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
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    link.attributes.push(LinkAttribute::Xdp(vec![
        LinkXdp::Fd(-1),
        LinkXdp::Flags(attached.flags),
    ]));
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
