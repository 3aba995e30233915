//! Rate limits: `net_common::limit`'s tiers over one LRU hash of TATs, each replaced by
//! compare-and-swap so that every CPU charges the same word (see there for why that is exact).

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use core::intrinsics::{AtomicOrdering, atomic_cxchg};
use net_common::limit::{
    ADMIT_BURST_NS, ADMIT_INCREMENT_NS, Limit, LimitKey, MAX_LIMIT_KEYS, Per, gcra, tier,
};
use net_common::parse::Packet;

#[map(name = "LIMITS")]
static LIMITS: LruHashMap<LimitKey, u64> = LruHashMap::pinned(MAX_LIMIT_KEYS, 0);

/// This CPU's keys being looked up: the packet's, and an admission bucket's.
#[map(name = "LIMIT_KEYS")]
static LIMIT_KEYS: PerCpuArray<LimitKey> = PerCpuArray::with_max_entries(2, 0);

/// How often a packet retries its compare-and-swap before it is dropped: a lost race means
/// another CPU charged the key meanwhile, so a packet dropped here never passes beyond the rate.
const CAS_TRIES: usize = 4;

/// What a limit made of a packet.
pub enum Charge {
    Conforms,
    /// Over the rate, charged in this tier.
    Over(u8),
}

/// Charges `packet` to `limit` at `now_ns`, in the first tier that holds or admits its key.
#[inline(always)]
pub fn charge(limit: &Limit, packet: &Packet, now_ns: u64) -> Charge {
    for tier in [tier::OWN, tier::AGGREGATE, tier::OVERFLOW] {
        match charge_tier(limit, packet, now_ns, tier) {
            CONFORMS => return Charge::Conforms,
            OVER => return Charge::Over(tier),
            _ => {}
        }
    }
    Charge::Conforms
}

/// What [`charge_tier`] returns: a plain number, as a BPF function returns one register.
const NOT_ADMITTED: u8 = 0;
const CONFORMS: u8 = 1;
const OVER: u8 = 2;

/// Charges `packet` to its key in `tier`, if the table holds the key or admits it. A
/// function of its own, with its own stack frame: the keys' handling would not fit in the
/// stack of the rule search beside the frame of its loop's body.
#[inline(never)]
fn charge_tier(limit: &Limit, packet: &Packet, now_ns: u64, tier: u8) -> u8 {
    let Some(key) = LIMIT_KEYS.get_ptr_mut(0) else {
        return CONFORMS;
    };
    // SAFETY: this CPU's own scratch entry; XDP does not preempt itself.
    let key = unsafe { &mut *key };
    limit.fill_key(key, packet, tier);
    let increment_ns = limit.increment_ns(packet.len);
    let charge = if let Some(tat) = LIMITS.get_ptr_mut(&*key) {
        step(tat, now_ns, increment_ns, limit.burst_ns, tier)
    } else if tier == tier::OVERFLOW || limit.per == Per::Rule as u8 || admits(limit, tier, now_ns)
    {
        insert(key, now_ns, increment_ns, limit.burst_ns, tier)
    } else {
        return NOT_ADMITTED;
    };
    match charge {
        Charge::Conforms => CONFORMS,
        Charge::Over(_) => OVER,
    }
}

/// Whether `tier`'s admission bucket lets one more new key in.
#[inline(always)]
fn admits(limit: &Limit, tier: u8, now_ns: u64) -> bool {
    let Some(key) = LIMIT_KEYS.get_ptr_mut(1) else {
        return false;
    };
    // SAFETY: as in `charge_tier`.
    let key = unsafe { &mut *key };
    limit.fill_admission_key(key, tier);
    let charge = match LIMITS.get_ptr_mut(&*key) {
        Some(tat) => step(tat, now_ns, ADMIT_INCREMENT_NS, ADMIT_BURST_NS, tier),
        None => insert(key, now_ns, ADMIT_INCREMENT_NS, ADMIT_BURST_NS, tier),
    };
    matches!(charge, Charge::Conforms)
}

/// GCRA on a key's shared TAT.
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

/// A key seen for the first time: its first packet against an empty bucket. Another CPU may
/// insert it first; then the packet is charged to that entry.
#[inline(always)]
fn insert(key: &LimitKey, now_ns: u64, increment_ns: u64, burst_ns: u64, tier: u8) -> Charge {
    let (tat, charge) = match gcra(0, now_ns, increment_ns, burst_ns) {
        Some(next) => (next, Charge::Conforms),
        None => (now_ns, Charge::Over(tier)),
    };
    if LIMITS.insert(key, tat, BPF_NOEXIST as u64).is_ok() {
        return charge;
    }
    match LIMITS.get_ptr_mut(key) {
        Some(tat) => step(tat, now_ns, increment_ns, burst_ns, tier),
        None => charge,
    }
}
