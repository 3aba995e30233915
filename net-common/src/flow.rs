//! The flow table: per-CPU counters for each 5-tuple (with L3 protocol, VLAN and ingress
//! interface), which the XDP program fills and `netxdp flows` reads.

use crate::parse::{ETH_P_8021AD, ETH_P_8021Q, L3, Packet};

/// Flows the table holds unless `netxdp attach --flow-table-size` says otherwise; the least
/// recently seen are evicted first.
pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 65_536;

/// A flow: what the packets of one conversation direction share.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source and destination addresses; IPv4 in the first 4 bytes, zero for non-IP.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ifindex: u32,
    /// TCP or UDP ports; 0 for other protocols.
    pub sport: u16,
    pub dport: u16,
    /// The outer VLAN id; 0 untagged.
    pub vlan_id: u16,
    /// [`L3`] as its `u8` value.
    pub l3: u8,
    /// The IP protocol; 0 for non-IP.
    pub ip_proto: u8,
}

impl FlowKey {
    /// The flow `packet` belongs to, received on `ifindex` with outer VLAN id `vlan_id`.
    #[inline(always)]
    pub fn of(packet: &Packet, ifindex: u32, vlan_id: u16) -> FlowKey {
        let (sport, dport) = packet.ports().unwrap_or((0, 0));
        FlowKey {
            src: packet.src,
            dst: packet.dst,
            ifindex,
            sport,
            dport,
            vlan_id,
            l3: packet.l3_index() as u8,
            ip_proto: packet.ip_proto,
        }
    }

    pub fn l3(&self) -> L3 {
        L3::ALL.get(self.l3 as usize).copied().unwrap_or(L3::Other)
    }
}

/// One CPU's counters of a flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub packets: u64,
    pub bytes: u64,
    /// CLOCK_MONOTONIC (coarse) nanoseconds of the first and last packet.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// The rule that decided the last packet; 0 for none (a default).
    pub rule_id: u32,
    /// The OR of the TCP flags seen.
    pub tcp_flags: u8,
    /// The XDP action of the last packet.
    pub action: u8,
    pub _pad: u16,
}

impl FlowStats {
    /// Adds another CPU's counters into these: the last packet's verdict is the later one's.
    pub fn merge(&mut self, other: &FlowStats) {
        if other.packets == 0 {
            return;
        }
        if self.packets == 0 || other.first_seen_ns < self.first_seen_ns {
            self.first_seen_ns = other.first_seen_ns;
        }
        if other.last_seen_ns >= self.last_seen_ns {
            self.last_seen_ns = other.last_seen_ns;
            self.rule_id = other.rule_id;
            self.action = other.action;
        }
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.tcp_flags |= other.tcp_flags;
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: `#[repr(C)]` integers and byte arrays with no padding (FlowKey: 32 + 4 + 3 x 2 +
    // 2 x 1 = 44 bytes; FlowStats: 4 x 8 + 4 + 1 + 1 + 2 = 40 bytes); every bit pattern valid.
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowStats {}
}

/// The VLAN id of a frame's outer tag, from its first 16 bytes; 0 untagged. The flow table
/// reads it from the frame rather than the parser keeping it: one more field in the parsed
/// packet cost every packet about 10 ns, flows or not.
#[inline(always)]
pub fn outer_vlan_id(header: &[u8; 16]) -> u16 {
    match u16::from_be_bytes([header[12], header[13]]) {
        ETH_P_8021Q | ETH_P_8021AD => u16::from_be_bytes([header[14], header[15]]) & 0x0fff,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    use crate::testing::FrameSpec;

    #[test]
    fn the_outer_vlan_id_is_read_from_the_first_tag() {
        let header = |frame: Vec<u8>| -> [u8; 16] { frame[..16].try_into().unwrap() };
        let tagged = FrameSpec::ipv4_udp(1, 2, 0).with_vlans(&[ETH_P_8021AD, ETH_P_8021Q]);
        let mut frame = tagged.build();
        frame[14..16].copy_from_slice(&0x2123u16.to_be_bytes()); // PCP 1, VID 0x123
        assert_eq!(outer_vlan_id(&header(frame)), 0x123);
        assert_eq!(
            outer_vlan_id(&header(FrameSpec::ipv4_udp(1, 2, 0).build())),
            0
        );
    }
}
