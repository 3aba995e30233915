//! Bans: sources dropped before the rules until their ban ends (see `net_common::ban`).

use aya_ebpf::{
    bindings::xdp_action,
    macros::map,
    maps::{Array, LpmTrie, lpm_trie::Key},
};
use net_common::{
    ban::{BanEntry, MAX_BANS},
    parse::{L3, Packet},
    rule::{mask, reason},
};

use crate::{clock::coarse_now_ns, filter::Decision};

#[map(name = "BANS_V4")]
static BANS_V4: LpmTrie<[u8; 4], BanEntry> = LpmTrie::pinned(MAX_BANS, 0);

#[map(name = "BANS_V6")]
static BANS_V6: LpmTrie<[u8; 16], BanEntry> = LpmTrie::pinned(MAX_BANS, 0);

/// Entries in both tries, kept by userspace: with none, no packet looks them up.
#[map(name = "BAN_COUNT")]
static BAN_COUNT: Array<u32> = Array::pinned(1, 0);

/// Bans `packet`'s source prefix of `len` bits until `expires_ns`, for a limit: whether the
/// ban was written (not when the family's trie is full: the bans already there stay).
#[inline(always)]
pub fn issue(packet: &Packet, len: u8, expires_ns: u64) -> bool {
    let entry = BanEntry { expires_ns };
    let src = mask(packet.src, len);
    let written = match packet.l3 {
        L3::Ipv4 => BANS_V4.insert(
            Key::new(len as u32, [src[0], src[1], src[2], src[3]]),
            entry,
            0,
        ),
        L3::Ipv6 => BANS_V6.insert(Key::new(len as u32, src), entry, 0),
        _ => return false,
    };
    if written.is_err() {
        return false;
    }
    // After the entry: userspace, recounting, reads the tries again after it writes the count.
    if let Some(count) = BAN_COUNT.get_ptr_mut(0) {
        // SAFETY: an aligned u32 of a map value; a plain store, racing only other stores of
        // a non-zero count.
        unsafe {
            if core::ptr::read_volatile(count) == 0 {
                core::ptr::write_volatile(count, 1);
            }
        }
    }
    true
}

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
