//! Bans: sources dropped before the rules until their ban ends (see `net_common::ban`).

use aya_ebpf::{
    bindings::xdp_action,
    macros::map,
    maps::{Array, LpmTrie, lpm_trie::Key},
};
use net_common::{
    ban::{BanEntry, MAX_BANS},
    parse::{L3, Packet},
    rule::reason,
};

use crate::{clock::coarse_now_ns, filter::Decision};

#[map(name = "BANS_V4")]
static BANS_V4: LpmTrie<[u8; 4], BanEntry> = LpmTrie::pinned(MAX_BANS, 0);

#[map(name = "BANS_V6")]
static BANS_V6: LpmTrie<[u8; 16], BanEntry> = LpmTrie::pinned(MAX_BANS, 0);

/// Entries in both tries, kept by userspace: with none, no packet looks them up.
#[map(name = "BAN_COUNT")]
static BAN_COUNT: Array<u32> = Array::pinned(1, 0);

/// The decision for a packet from a banned source, if its source is banned now. The clock is
/// read only for a packet whose source a ban names.
#[inline(always)]
pub fn check(packet: &Packet) -> Option<Decision> {
    if BAN_COUNT.get(0).is_none_or(|count| *count == 0) {
        return None;
    }
    let src = &packet.src;
    let entry = match packet.l3 {
        L3::Ipv4 => BANS_V4.get(Key::new(32, [src[0], src[1], src[2], src[3]]))?,
        L3::Ipv6 => BANS_V6.get(Key::new(128, *src))?,
        _ => return None,
    };
    (coarse_now_ns() < entry.expires_ns).then_some(Decision {
        action: xdp_action::XDP_DROP,
        rule_id: 0,
        reason: reason::BAN,
    })
}
