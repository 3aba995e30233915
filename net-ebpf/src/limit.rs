//! Rate limits: `net_common::limit`'s tiers over LRU hashes of TATs, an array of keys' last
//! uses in front of them, and an array of each rule's own buckets, every TAT replaced by compare-and-swap so that all CPUs charge the
//! same word (see there for why that is exact).

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use core::intrinsics::{AtomicOrdering, atomic_cxchg};
use net_common::{
    limit::{
        ADMIT_BURST_NS, ADMIT_INCREMENT_NS, FlowLimitKey, Limit, LimitKey, LimitSlot,
        MAX_LIMIT_FLOWS, MAX_LIMIT_KEYS, Per, RECENT_LINE_MARKS, RECENT_LINES, RecentLine,
        family_index, gcra, is_recent, recent_tick, tier,
    },
    parse::Packet,
    rule::COUNTER_SLOTS,
};

#[map(name = "LIMITS")]
static LIMITS: LruHashMap<LimitKey, u64> = LruHashMap::pinned(MAX_LIMIT_KEYS, 0);

#[map(name = "LIMIT_FLOWS")]
static LIMIT_FLOWS: LruHashMap<FlowLimitKey, u64> = LruHashMap::pinned(MAX_LIMIT_FLOWS, 0);

#[map(name = "LIMIT_SLOTS")]
static LIMIT_SLOTS: Array<LimitSlot> = Array::pinned(COUNTER_SLOTS as u32, 0);

#[map(name = "LIMIT_RECENT")]
static LIMIT_RECENT: Array<RecentLine> = Array::pinned(RECENT_LINES, 0);

/// This CPU's keys being looked up.
#[repr(C)]
struct Keys {
    /// By tier: the own key of an address limit, and the aggregate's.
    address: [LimitKey; 2],
    flow: FlowLimitKey,
    /// By tier: the key's index in [`LIMIT_RECENT`].
    mark_index: [u32; 2],
}

#[map(name = "LIMIT_KEYS")]
static LIMIT_KEYS: PerCpuArray<Keys> = PerCpuArray::with_max_entries(1, 0);

/// How often a packet retries its compare-and-swap before it is dropped: a lost race means
/// another CPU charged the key meanwhile, so a packet dropped here never passes beyond the rate.
const CAS_TRIES: usize = 4;

/// What a limit made of a packet.
pub enum Charge {
    Conforms,
    /// Over the rate, charged in this tier.
    Over(u8),
}

/// What the hash tiers return: a plain number, as a BPF function returns one register.
const MISSING: u8 = 0;
const CONFORMS: u8 = 1;
const OVER: u8 = 2;
/// Of the own tier: missing, and the aggregate's key not marked recent either, so that its
/// tier needs no call of its own (the key is in the scratch for [`charge_new`]).
const UNMARKED: u8 = 3;

/// Charges `packet` to `limit` at `now_ns`, in the first tier that holds or admits its key.
/// `counter_slot` is its rule's, which also indexes the rule's own buckets.
#[inline(always)]
pub fn charge(limit: &Limit, counter_slot: u32, packet: &Packet, now_ns: u64) -> Charge {
    let increment_ns = limit.increment_ns(packet.len);
    let mut own = MISSING;
    if limit.per != Per::Rule as u8 {
        // A key the table holds, the common case, needs nothing of the rule's own buckets.
        own = charge_known::<{ tier::OWN }>(limit, packet, now_ns, increment_ns);
        match own {
            CONFORMS => return Charge::Conforms,
            OVER => return Charge::Over(tier::OWN),
            _ => {}
        }
    }
    let Some(slot) = LIMIT_SLOTS.get_ptr_mut(counter_slot) else {
        return Charge::Conforms;
    };
    // SAFETY: a map value, valid until the program returns; its words are only ever written
    // whole, by compare-and-swap, but for the reset below.
    let slot = unsafe { &mut *slot };
    if slot.state_id != limit.state_id {
        // Another limit's buckets (an earlier rule's, or this one's before it changed): start
        // afresh. Not atomic: CPUs meeting the change at once may each reset, which at most
        // lets a packet or two more through, once.
        *slot = LimitSlot {
            state_id: limit.state_id,
            ..LimitSlot::default()
        };
    }
    if limit.per == Per::Rule as u8 {
        return step(
            &mut slot.rule,
            now_ns,
            increment_ns,
            limit.burst_ns,
            tier::OWN,
        );
    }
    for tier in [tier::OWN, tier::AGGREGATE] {
        if tier == tier::AGGREGATE && own != UNMARKED {
            match charge_known::<{ tier::AGGREGATE }>(limit, packet, now_ns, increment_ns) {
                CONFORMS => return Charge::Conforms,
                OVER => return Charge::Over(tier),
                _ => {}
            }
        }
        let admitted = step(
            &mut slot.admit[tier as usize],
            now_ns,
            ADMIT_INCREMENT_NS,
            ADMIT_BURST_NS,
            tier,
        );
        if let Charge::Conforms = admitted {
            return match charge_new(limit, now_ns, increment_ns, tier) {
                CONFORMS => Charge::Conforms,
                _ => Charge::Over(tier),
            };
        }
    }
    let family = family_index(packet);
    match slot.overflow.get_mut(family) {
        Some(tat) => step(tat, now_ns, increment_ns, limit.burst_ns, tier::OVERFLOW),
        None => Charge::Conforms,
    }
}

/// Charges `packet` to its key in `tier` if the table holds it and it was marked lately;
/// [`MISSING`] if not, with the key left in this CPU's scratch for [`charge_new`]; for the own
/// tier, [`UNMARKED`] if the aggregate's key is not marked either (a spoofed packet's case:
/// one call for both tiers). A function of its own, with its own stack frame: the keys'
/// handling would not fit in the stack of the rule search beside the frame of its loop's body.
/// One per tier: a hit (own tier) pays for no test of the tier.
#[inline(never)]
fn charge_known<const TIER: u8>(
    limit: &Limit,
    packet: &Packet,
    now_ns: u64,
    increment_ns: u64,
) -> u8 {
    let tier = TIER;
    let Some(keys) = LIMIT_KEYS.get_ptr_mut(0) else {
        return CONFORMS;
    };
    // SAFETY: this CPU's own scratch entry; XDP does not preempt itself.
    let keys = unsafe { &mut *keys };
    let flows = tier == tier::OWN && limit.keys_flows();
    let Some(mark) = fill_tier_key(keys, limit, packet, tier) else {
        return MISSING;
    };
    let tick = recent_tick(now_ns);
    // SAFETY: a byte of a map value, valid until the program returns.
    if !is_recent(unsafe { *mark }, tick) {
        if tier == tier::OWN {
            let aggregate = fill_tier_key(keys, limit, packet, tier::AGGREGATE);
            // SAFETY: as above.
            if aggregate.is_some_and(|mark| !is_recent(unsafe { *mark }, tick)) {
                return UNMARKED;
            }
        }
        return MISSING;
    }
    let tat = if flows {
        LIMIT_FLOWS.get_ptr_mut(&keys.flow)
    } else {
        LIMITS.get_ptr_mut(&keys.address[tier_index(tier)])
    };
    match tat {
        Some(tat) => {
            mark_used(mark, tick);
            code(step(tat, now_ns, increment_ns, limit.burst_ns, tier))
        }
        None => MISSING,
    }
}

/// Writes `packet`'s key in `tier` and its mark's index to `keys`; the mark.
#[inline(always)]
fn fill_tier_key(keys: &mut Keys, limit: &Limit, packet: &Packet, tier: u8) -> Option<*mut u8> {
    let at = tier_index(tier);
    keys.mark_index[at] = if tier == tier::OWN && limit.keys_flows() {
        limit.fill_flow_key(&mut keys.flow, packet);
        keys.flow.mark_index()
    } else {
        limit.fill_key(&mut keys.address[at], packet, tier);
        keys.address[at].mark_index()
    };
    last_use(keys.mark_index[at])
}

/// The index of `tier` (own or aggregate) in [`Keys`].
#[inline(always)]
fn tier_index(tier: u8) -> usize {
    (tier & 1) as usize
}

/// The last-use mark at `index` ([`LIMIT_RECENT`]).
#[inline(always)]
fn last_use(index: u32) -> Option<*mut u8> {
    let line = LIMIT_RECENT.get_ptr_mut(index / RECENT_LINE_MARKS as u32)?;
    let at = index as usize % RECENT_LINE_MARKS;
    // SAFETY: `at` is within the line, a map value valid until the program returns.
    Some(unsafe { (line as *mut u8).add(at) })
}

/// Marks a key used at `tick`, writing only when the tick moved: the line is shared by every
/// CPU, and stays in each one's cache while nobody writes it.
#[inline(always)]
fn mark_used(mark: *mut u8, tick: u8) {
    // SAFETY: a byte of a map value; a byte store is whole, whichever CPU wins.
    unsafe {
        if *mark != tick {
            *mark = tick;
        }
    }
}

/// A key [`charge_known`] did not find, admitted: its first packet against an empty bucket,
/// unmarked (see `net_common::limit` on marks). If the table holds the key (a key whose mark
/// lapsed, or one another CPU inserted first), the packet is charged to that entry, and the
/// key is marked.
#[inline(never)]
fn charge_new(limit: &Limit, now_ns: u64, increment_ns: u64, tier: u8) -> u8 {
    let Some(keys) = LIMIT_KEYS.get_ptr_mut(0) else {
        return CONFORMS;
    };
    // SAFETY: as in `charge_known`, whose key this still is.
    let keys = unsafe { &mut *keys };
    let (tat, charge) = match gcra(0, now_ns, increment_ns, limit.burst_ns) {
        Some(next) => (next, CONFORMS),
        None => (now_ns, OVER),
    };
    let flows = tier == tier::OWN && limit.keys_flows();
    let at = tier_index(tier);
    let inserted = if flows {
        LIMIT_FLOWS.insert(&keys.flow, tat, BPF_NOEXIST as u64)
    } else {
        LIMITS.insert(&keys.address[at], tat, BPF_NOEXIST as u64)
    };
    if inserted.is_ok() {
        return charge;
    }
    let existing = if flows {
        LIMIT_FLOWS.get_ptr_mut(&keys.flow)
    } else {
        LIMITS.get_ptr_mut(&keys.address[at])
    };
    match existing {
        Some(tat) => {
            if let Some(mark) = last_use(keys.mark_index[at]) {
                mark_used(mark, recent_tick(now_ns));
            }
            code(step(tat, now_ns, increment_ns, limit.burst_ns, tier))
        }
        None => charge,
    }
}

#[inline(always)]
fn code(charge: Charge) -> u8 {
    match charge {
        Charge::Conforms => CONFORMS,
        Charge::Over(_) => OVER,
    }
}

/// GCRA on a shared TAT.
#[inline(always)]
fn step(tat: *mut u64, now_ns: u64, increment_ns: u64, burst_ns: u64, tier: u8) -> Charge {
    // SAFETY: a map value stays valid until the program returns (RCU).
    let mut seen = unsafe { core::ptr::read_volatile(tat) };
    for _ in 0..CAS_TRIES {
        let Some(next) = gcra(seen, now_ns, increment_ns, burst_ns) else {
            return Charge::Over(tier);
        };
        // SAFETY: as above; an aligned u64 of a map value.
        let (previous, swapped) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
                tat, seen, next,
            )
        };
        if swapped {
            return Charge::Conforms;
        }
        seen = previous;
    }
    Charge::Over(tier)
}
