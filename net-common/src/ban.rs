//! Bans: sources whose packets are dropped before the rules, until a time. The kernel keeps
//! them in two LPM tries (`BANS_V4`, keyed by the 4 address bytes, and `BANS_V6`, by the 16),
//! and the number of entries in `BAN_COUNT`, so that an interface without bans pays one array
//! read per packet and no trie lookup.

use crate::{
    parse::Packet,
    rule::{Family, Prefix},
};

/// Entries each ban trie holds at most.
pub const MAX_BANS: u32 = 65_536;

/// The value of a ban trie entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BanEntry {
    /// CLOCK_MONOTONIC (coarse) nanoseconds at which the ban ends.
    pub expires_ns: u64,
}

#[cfg(feature = "user")]
// SAFETY: one `u64`, no padding; every bit pattern valid.
unsafe impl aya::Pod for BanEntry {}

/// Whether `packet` comes from a source one of `bans` covers at `now_ns`: the reference for
/// what the kernel does before it classifies. ARP and frames without an IP source are never
/// banned; neighbour traffic keeps a host reachable.
pub fn banned(bans: &[(Prefix, BanEntry)], packet: &Packet, now_ns: u64) -> bool {
    let family = match packet.l3 {
        crate::parse::L3::Ipv4 => Family::Ipv4,
        crate::parse::L3::Ipv6 => Family::Ipv6,
        _ => return false,
    };
    // The longest prefix that holds the source decides, as in the kernel's trie.
    bans.iter()
        .filter(|(prefix, _)| prefix.family() == family && prefix.contains(&packet.src))
        .max_by_key(|(prefix, _)| prefix.len)
        .is_some_and(|(_, entry)| now_ns < entry.expires_ns)
}
