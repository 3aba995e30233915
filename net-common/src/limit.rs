//! Rate limits: a rule whose action is `limit` passes the packets it matches while their key
//! (the source, a source prefix, the destination, the flow, or the rule itself) is within the
//! rule's rate, and drops the rest. With a ban, a source that goes over is also banned for a
//! while ([`crate::ban`]), so that its next packets are dropped before any rule is tried.
//!
//! # The algorithm: GCRA, exact across CPUs
//! Each key keeps one word, its theoretical arrival time (TAT): when the key's bucket would be
//! empty again if nothing more came. A packet that costs `c` units (1 for a packet rate, its
//! length for a byte rate) moves it to `max(TAT, now) + c·T`, where `T` is the time one unit
//! of the rate earns, and conforms if that is at most `now + τ`, where `τ = burst·T`. A packet
//! that conforms writes the new TAT; one that does not writes nothing. So a key passes at
//! most `burst + rate·t` units in any span `t`.
//!
//! In the kernel the word is shared by every CPU and replaced with a compare-and-swap from the
//! value the packet read: a packet that loses the race reads the winner's value and tries
//! again. Every conforming packet therefore advances one shared TAT by exactly its cost, in
//! some order, which is a run of GCRA on a single CPU: a source spread over every RX queue
//! gets its rate once, not once per queue. The clock is the kernel's coarse monotonic clock,
//! which is global (every CPU reads the same value), read once per packet and only for a
//! packet a rule matched.
//!
//! # Bounded state, and floods of spoofed sources
//! Keys live in LRU hashes ([`MAX_LIMIT_KEYS`] addresses and prefixes, [`MAX_LIMIT_FLOWS`]
//! flows), so a table never refuses a key: a flood cannot make it drop a legitimate source for
//! want of room, and a source whose state was evicted only starts again with a full bucket.
//! Bans live in tables of their own, which nothing evicts. A packet is charged in tiers:
//! 1. its own key (`src`, `src/LEN`, `dst`, `dst/LEN` or `flow`), if the table holds it and
//!    it is marked as used in the last [`RECENT_TICKS`] ticks (about 17 s), or if the rule's
//!    admission bucket lets the key in: at most [`ADMIT_PER_SEC`] keys a second per rule, in
//!    bursts of as many;
//! 2. otherwise its aggregate: the source's (for `dst`, the destination's) /24 or /64,
//!    admitted the same way by a second bucket;
//! 3. otherwise one overflow bucket per rule and family, at the rule's own rate.
//!
//! A key's last use is marked in a table of [`RECENT_LINES`] cache lines of one-byte ticks
//! (128 KiB, all limits together), by a hash of the key, so that a packet of a source the
//! table has not seen lately, which is every packet of a spoofed flood, is told so by one
//! read of a small array that stays in cache, not by a miss in a hash table of megabytes.
//! A key is marked from its second packet on, when it comes back: the first only puts it in
//! the table. So the keys of a spoofed flood, which never come back, mark nothing, and the
//! marks stay few however long the flood lasts (marked at admission, a flood's 8,192 keys a
//! second kept about 23% of 512 KiB of marks recent, each a lookup that misses, and a spoofed
//! flood's rate fell from 0.71x to 0.46-0.50x a drop rule's after 17 s of it). A key that is
//! not marked recent, whether new, idle past its mark, or past its first packet only, is
//! charged as a new key: when the rule admits keys, that finds its entry, charges it and marks it; while a
//! flood spends the admissions, it is charged to its aggregate, as if the LRU had evicted
//! it, which such a flood does to an idle key within about 16 s anyway. So a source new
//! during a flood needs two admissions to its own state, not one.
//!
//! `rule` is one bucket for the rule. The admission, overflow and `rule` buckets sit in an
//! array beside the rule's counters ([`LimitSlot`]), one lookup each, so that a flood of new
//! sources costs two hash lookups a packet, not five. A flood of random sources therefore
//! gets at most the admission rate of fresh buckets plus the rule's rate through, while
//! sources already known keep their own state: new keys cannot push an active one out of the
//! table faster than two admission rates a rule allow, about 16 s for the address table per
//! limit rule.
//!
//! Limit ids ([`Limit::state_id`]) are never reused on an interface: a limit created or changed
//! gets a fresh one, so that it never inherits the state of another.

use crate::{
    parse::{L3, Packet},
    rule::{Family, address_words, mask},
};

/// Address and prefix keys the limit table holds (all limit rules of an interface together).
pub const MAX_LIMIT_KEYS: u32 = 131_072;
/// Flow keys the flow limit table holds.
pub const MAX_LIMIT_FLOWS: u32 = 65_536;

/// New keys a limit rule admits to the table per second (and per burst), in each of the own
/// and aggregate tiers.
pub const ADMIT_PER_SEC: u64 = 4_096;

/// Fixed-point shift of [`Limit::unit_ns_fp`].
pub const UNIT_SHIFT: u32 = 16;

/// The largest cost of one packet, in bytes: a byte rate's `cost · unit_ns_fp` must fit 64 bits.
pub const MAX_COST: u64 = 0xffff;

/// What a limit's state is kept per.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Per {
    /// The source address, or its prefix ([`Limit::v4_len`], [`Limit::v6_len`]).
    Src = 0,
    /// The destination address, or its prefix.
    Dst = 1,
    /// The flow: addresses, protocol and ports.
    Flow = 2,
    /// The rule: one bucket for every packet it matches.
    Rule = 3,
}

impl Per {
    pub fn from_raw(raw: u8) -> Per {
        match raw {
            0 => Per::Src,
            1 => Per::Dst,
            2 => Per::Flow,
            _ => Per::Rule,
        }
    }
}

/// A rule's rate limit, as the kernel reads it beside the rule. A rule that is not a limit has
/// [`Limit::NONE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Limit {
    /// `T`: the time one unit (a packet, or a byte) of the rate earns, in 2^-16 ns.
    pub unit_ns_fp: u64,
    /// `τ`: how far ahead of now a key's TAT may run, in ns (`burst · T`).
    pub burst_ns: u64,
    /// How long a source that goes over is banned, in ns; 0 for no ban.
    pub ban_ns: u64,
    /// The rate as given: `rate` units per `period_secs`.
    pub rate: u64,
    /// The burst as given, in units.
    pub burst: u64,
    /// The key space of this limit's state: see the module documentation.
    pub state_id: u32,
    pub period_secs: u32,
    /// [`Per`] as its value.
    pub per: u8,
    /// The prefix lengths `src/LEN` or `dst/LEN` key by (32 and 128 for the address).
    pub v4_len: u8,
    pub v6_len: u8,
    /// 1 when the rate counts bytes, 0 when it counts packets.
    pub bytes: u8,
    pub _reserved: u32,
}

/// Tiers: see the module documentation.
pub mod tier {
    pub const OWN: u8 = 0;
    pub const AGGREGATE: u8 = 1;
    pub const OVERFLOW: u8 = 2;
}

/// The prefix lengths of the aggregate tier.
pub const AGGREGATE_V4_LEN: u8 = 24;
pub const AGGREGATE_V6_LEN: u8 = 64;

/// A key of the address table: a source or destination address, or its prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitKey {
    pub state_id: u32,
    /// [`tier::OWN`] or [`tier::AGGREGATE`].
    pub tier: u8,
    /// [`Family`] as its value: the family of the address.
    pub family: u8,
    pub _pad: u16,
    pub addr: [u8; 16],
}

/// Lines of the table of keys' last uses ([`RecentLine`]): a mark for each key the address
/// table holds. Only keys that came back write one, so a table this size stays mostly
/// unmarked under a spoofed flood, and small enough to stay in a CPU's cache (at 512 KiB,
/// a mark's read was a tenth of a spoofed packet's time, by perf's samples; at 64 KiB, half
/// as much).
pub const RECENT_LINES: u32 = (MAX_LIMIT_KEYS as usize / RECENT_LINE_MARKS) as u32;
/// The last-use marks of a line: a cache line of them.
pub const RECENT_LINE_MARKS: usize = 64;
/// One entry of the last-use table.
pub type RecentLine = [u8; RECENT_LINE_MARKS];
/// The coarse tick of a last-use mark: 2^30 ns, about 1.07 s.
pub const RECENT_TICK_SHIFT: u32 = 30;
/// How many ticks a key counts as recently used after its last use: about 17 s.
pub const RECENT_TICKS: u8 = 16;

/// The mark a key used at `now_ns` gets: the tick, but never 0, which is a mark never written
/// (every mark, until a key writes it). Tick 0 shares 1's mark.
#[inline(always)]
pub fn recent_tick(now_ns: u64) -> u8 {
    let tick = (now_ns >> RECENT_TICK_SHIFT) as u8;
    if tick == 0 { 1 } else { tick }
}

/// Whether a key whose mark is `mark` counts as used within [`RECENT_TICKS`] of the tick
/// `now` ([`recent_tick`]; one less across a wrap). Marks wrap every 256 ticks (about 275 s), so a mark that old can look
/// recent for a while: that only costs a lookup. A mark never written never does: were 0 a tick like the others,
/// every mark would look recent for 17 s in every 275, and a spoofed flood would make
/// two lookups a packet all that time (0.27x a drop rule's rate, in one bench run).
#[inline(always)]
pub fn is_recent(mark: u8, now: u8) -> bool {
    now.wrapping_sub(mark) < RECENT_TICKS && mark != 0
}

/// The index of a key's mark in the last-use table, from the key's 32-bit words: a sum of
/// products, whose multiplications are independent of each other (a chain of them would
/// cost a limit hit their latencies one after another), then one mix. Keys that share an
/// index only make each other look recent, which costs a lookup: so an attacker who aims at
/// collisions gains nothing the table's own lookups would not cost.
#[inline(always)]
fn mark_index<const N: usize>(words: [u32; N]) -> u32 {
    // Odd constants: the golden ratio's fraction, then SHA-512's initial and first round words.
    const FACTORS: [u64; 11] = [
        0x9e37_79b9_7f4a_7c15,
        0x6a09_e667_f3bc_c909,
        0xbb67_ae85_84ca_a73b,
        0x3c6e_f372_fe94_f82b,
        0xa54f_f53a_5f1d_36f1,
        0x510e_527f_ade6_82d1,
        0x9b05_688c_2b3e_6c1f,
        0x1f83_d9ab_fb41_bd6b,
        0x5be0_cd19_137e_2179,
        0xcbbb_9d5d_c105_9ed9,
        0x629a_292a_367c_d507,
    ];
    let mut sum: u64 = 0;
    for (word, factor) in words.into_iter().zip(FACTORS) {
        sum = sum.wrapping_add((word as u64 ^ factor >> 32).wrapping_mul(factor));
    }
    let mixed = (sum ^ sum >> 29).wrapping_mul(FACTORS[0]);
    const BITS: u32 = (RECENT_LINES * RECENT_LINE_MARKS as u32).trailing_zeros();
    (mixed >> (64 - BITS)) as u32
}

impl LimitKey {
    /// Where this key's last use is marked: see [`RECENT_LINES`].
    #[inline(always)]
    pub fn mark_index(&self) -> u32 {
        let [a, b, c, d] = address_words(&self.addr);
        mark_index([
            self.state_id,
            self.tier as u32 | (self.family as u32) << 8,
            a,
            b,
            c,
            d,
        ])
    }
}

impl FlowLimitKey {
    /// Where this key's last use is marked: see [`RECENT_LINES`].
    #[inline(always)]
    pub fn mark_index(&self) -> u32 {
        let [a, b, c, d] = address_words(&self.src);
        let [e, f, g, h] = address_words(&self.dst);
        mark_index([
            self.state_id,
            0xff00_0000 | self.family as u32 | (self.proto as u32) << 8,
            self.sport as u32 | (self.dport as u32) << 16,
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
        ])
    }
}

/// A key of the flow table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowLimitKey {
    pub state_id: u32,
    pub family: u8,
    pub proto: u8,
    pub _pad: u16,
    pub sport: u16,
    pub dport: u16,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// A limit rule's own buckets' TATs, by its counter slot: one array lookup for all.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitSlot {
    /// The limit these belong to: a slot of another (an earlier rule's, or the rule's before
    /// its limit changed) is started afresh.
    pub state_id: u32,
    pub _pad: u32,
    /// The admission buckets of the own and aggregate tiers.
    pub admit: [u64; 2],
    /// The overflow buckets, by [`family_index`].
    pub overflow: [u64; 3],
    /// The bucket of a `per rule` limit.
    pub rule: u64,
}

/// 0 for a packet without IP addresses, 1 for IPv4, 2 for IPv6.
#[inline(always)]
pub fn family_index(packet: &Packet) -> usize {
    match packet.addr_family {
        Family::Any => 0,
        Family::Ipv4 => 1,
        Family::Ipv6 => 2,
    }
}

impl Limit {
    /// No limit.
    pub const NONE: Limit = Limit {
        unit_ns_fp: 0,
        burst_ns: 0,
        ban_ns: 0,
        rate: 0,
        burst: 0,
        state_id: 0,
        period_secs: 0,
        per: Per::Rule as u8,
        v4_len: 32,
        v6_len: 128,
        bytes: 0,
        _reserved: 0,
    };

    pub fn per(&self) -> Per {
        Per::from_raw(self.per)
    }

    /// How far a packet of `len` bytes moves its key's TAT, in ns.
    #[inline(always)]
    pub fn increment_ns(&self, len: u32) -> u64 {
        let cost = if self.bytes != 0 {
            (len as u64).min(MAX_COST)
        } else {
            1
        };
        (cost * self.unit_ns_fp) >> UNIT_SHIFT
    }

    /// Whether the own tier's key is a flow's.
    #[inline(always)]
    pub fn keys_flows(&self) -> bool {
        self.per == Per::Flow as u8
    }

    /// Writes `packet`'s address key in `tier` ([`tier::OWN`] for `src` and `dst` limits,
    /// [`tier::AGGREGATE`] for all but `rule`) over `key`, in place: the kernel keeps its keys
    /// in a map, its stack being too small for copies.
    #[inline(always)]
    pub fn fill_key(&self, key: &mut LimitKey, packet: &Packet, tier: u8) {
        key.state_id = self.state_id;
        key.tier = tier;
        key.family = packet.addr_family as u8;
        key._pad = 0;
        let (own_len, aggregate_len) = match packet.addr_family {
            Family::Ipv4 if self.keys_flows() => (32, AGGREGATE_V4_LEN),
            Family::Ipv6 if self.keys_flows() => (128, AGGREGATE_V6_LEN),
            Family::Ipv4 => (self.v4_len, AGGREGATE_V4_LEN),
            Family::Ipv6 => (self.v6_len, AGGREGATE_V6_LEN),
            Family::Any => (0, 0),
        };
        let len = if tier == tier::AGGREGATE {
            aggregate_len.min(own_len)
        } else {
            own_len
        };
        let addr = if self.per == Per::Dst as u8 {
            packet.dst
        } else {
            packet.src
        };
        key.addr = mask(addr, len);
    }

    /// Writes `packet`'s flow key over `key`, in place.
    #[inline(always)]
    pub fn fill_flow_key(&self, key: &mut FlowLimitKey, packet: &Packet) {
        key.state_id = self.state_id;
        key.family = packet.addr_family as u8;
        key.proto = packet.ip_proto;
        key._pad = 0;
        (key.sport, key.dport) = packet.ports().unwrap_or((0, 0));
        key.src = packet.src;
        key.dst = packet.dst;
    }

    /// Whether a key that goes over is banned: limits by source or flow, on IP packets.
    #[inline(always)]
    pub fn bans(&self, packet: &Packet) -> bool {
        self.ban_ns != 0
            && matches!(self.per(), Per::Src | Per::Flow)
            && matches!(packet.l3, L3::Ipv4 | L3::Ipv6)
    }

    /// The source prefix length a ban from `tier` covers.
    #[inline(always)]
    pub fn ban_len(&self, packet: &Packet, tier: u8) -> u8 {
        let ipv6 = packet.l3 == L3::Ipv6;
        let own = match (self.per(), ipv6) {
            (Per::Flow, false) => 32,
            (Per::Flow, true) => 128,
            (_, false) => self.v4_len,
            (_, true) => self.v6_len,
        };
        if tier == tier::AGGREGATE {
            own.min(if ipv6 {
                AGGREGATE_V6_LEN
            } else {
                AGGREGATE_V4_LEN
            })
        } else {
            own
        }
    }
}

/// GCRA's step: the TAT after a packet moving it by `increment_ns` at `now_ns`, if the packet
/// conforms to a tolerance of `burst_ns`. A TAT of 0 is a key never seen.
#[inline(always)]
pub fn gcra(tat_ns: u64, now_ns: u64, increment_ns: u64, burst_ns: u64) -> Option<u64> {
    let next = if tat_ns > now_ns { tat_ns } else { now_ns } + increment_ns;
    (next <= now_ns + burst_ns).then_some(next)
}

/// `T` in 2^-16 ns of the admission buckets.
pub const ADMIT_UNIT_NS_FP: u64 = (1_000_000_000 << UNIT_SHIFT) / ADMIT_PER_SEC;
/// `τ` of the admission buckets: a second of admissions.
pub const ADMIT_BURST_NS: u64 = 1_000_000_000;
/// How far one admission moves its bucket's TAT, in ns.
pub const ADMIT_INCREMENT_NS: u64 = ADMIT_UNIT_NS_FP >> UNIT_SHIFT;

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`: five u64, two u32, four u8 and a u32: 56 bytes, no padding, every bit
// pattern valid.
unsafe impl aya::Pod for Limit {}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`: a u32, two u8, a u16, 16 bytes: 24 bytes, no padding.
unsafe impl aya::Pod for LimitKey {}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`: a u32, two u8, three u16, two 16-byte arrays: 44 bytes, no padding.
unsafe impl aya::Pod for FlowLimitKey {}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`: two u32 and six u64: 56 bytes, no padding.
unsafe impl aya::Pod for LimitSlot {}

#[cfg(feature = "testing")]
pub use reference::Limiter;

#[cfg(feature = "testing")]
mod reference {
    use alloc::{collections::BTreeMap, vec::Vec};

    use super::{
        ADMIT_BURST_NS, ADMIT_INCREMENT_NS, FlowLimitKey, Limit, LimitKey, LimitSlot, Per,
        family_index, gcra, is_recent, recent_tick, tier,
    };
    use crate::{
        ban::BanEntry,
        parse::Packet,
        rule::{Action, Family, Fragments, Malformed, Prefix, Reason, Rule, Verdict},
    };

    /// The reference for what the kernel's limits do, with an explicit clock: the same tiers,
    /// the same admissions, the same bans. It never evicts: the tests that compare it with
    /// the kernel stay below [`super::MAX_LIMIT_KEYS`].
    #[derive(Clone, Debug, Default)]
    pub struct Limiter {
        addresses: BTreeMap<LimitKey, u64>,
        flows: BTreeMap<FlowLimitKey, u64>,
        /// By state id: the kernel's by counter slot, started afresh for a new state id.
        slots: BTreeMap<u32, LimitSlot>,
        /// The last-use marks, by index: 0 where none was written.
        marks: BTreeMap<u32, u8>,
        /// Bans issued by limits, as the kernel writes them to its ban tries.
        pub bans: Vec<(Prefix, BanEntry)>,
        /// How many bans were issued, renewals of an ended one included.
        pub bans_issued: u64,
        /// How many packets of a key the table held were charged as new keys: its mark had
        /// lapsed, or it had none yet (its second packet).
        pub lapsed: u64,
    }

    impl Limiter {
        /// The reference classifier with limits and bans at `now_ns`: a banned source is
        /// dropped before the rules; a `limit` rule passes the packet if it conforms, and
        /// drops it for its limit if not. `rules` as [`crate::rule::classify`] takes them.
        pub fn classify(
            &mut self,
            rules: &[Rule],
            settings: (Action, Fragments, Malformed),
            packet: &Packet,
            now_ns: u64,
        ) -> Verdict {
            if crate::ban::banned(&self.bans, packet, now_ns) {
                return Verdict {
                    action: Action::Drop,
                    reason: Reason::Ban,
                };
            }
            let (policy, fragments, malformed) = settings;
            let verdict = crate::rule::classify(rules, policy, fragments, malformed, packet);
            let (Action::Limit, Reason::Rule(id)) = (verdict.action, verdict.reason) else {
                return verdict;
            };
            let Some(rule) = rules.iter().find(|rule| rule.id == id) else {
                return verdict;
            };
            if self.conforms(&rule.limit, packet, now_ns) {
                Verdict {
                    action: Action::Pass,
                    reason: Reason::Rule(id),
                }
            } else {
                Verdict {
                    action: Action::Drop,
                    reason: Reason::Limit(id),
                }
            }
        }

        /// Charges `packet` to `limit` at `now_ns`: whether it conforms.
        pub fn conforms(&mut self, limit: &Limit, packet: &Packet, now_ns: u64) -> bool {
            let increment = limit.increment_ns(packet.len);
            let slot = self.slots.entry(limit.state_id).or_default();
            if limit.per() == Per::Rule {
                return charge(&mut slot.rule, now_ns, increment, limit.burst_ns);
            }
            for tier in [tier::OWN, tier::AGGREGATE] {
                let (key, flow) = if tier == tier::OWN && limit.keys_flows() {
                    let mut key = FlowLimitKey::default();
                    limit.fill_flow_key(&mut key, packet);
                    (None, Some(key))
                } else {
                    let mut key = LimitKey::default();
                    limit.fill_key(&mut key, packet, tier);
                    (Some(key), None)
                };
                let (held, mark_index) = match (key, flow) {
                    (Some(key), _) => (self.addresses.contains_key(&key), key.mark_index()),
                    (_, Some(flow)) => (self.flows.contains_key(&flow), flow.mark_index()),
                    _ => unreachable!("one of the two keys"),
                };
                let mark = self.marks.get(&mark_index).copied().unwrap_or(0);
                let known = held && is_recent(mark, recent_tick(now_ns));
                self.lapsed += u64::from(held && !known);
                let slot = self.slots.entry(limit.state_id).or_default();
                let admitted = known
                    || charge(
                        &mut slot.admit[tier as usize],
                        now_ns,
                        ADMIT_INCREMENT_NS,
                        ADMIT_BURST_NS,
                    );
                if !admitted {
                    continue;
                }
                if held {
                    self.marks.insert(mark_index, recent_tick(now_ns));
                }
                let tat = match (key, flow) {
                    (Some(key), _) => self.addresses.entry(key).or_insert(0),
                    (_, Some(flow)) => self.flows.entry(flow).or_insert(0),
                    _ => unreachable!("one of the two keys"),
                };
                // A key's first packet against an empty bucket: one that does not fit it
                // still leaves the key in the table, as in the kernel.
                let fresh = *tat == 0;
                let conforms = charge(tat, now_ns, increment, limit.burst_ns);
                if fresh && !conforms {
                    *tat = now_ns;
                }
                if !conforms && limit.bans(packet) {
                    self.ban(limit, packet, tier, now_ns);
                }
                return conforms;
            }
            let slot = self.slots.entry(limit.state_id).or_default();
            charge(
                &mut slot.overflow[family_index(packet)],
                now_ns,
                increment,
                limit.burst_ns,
            )
        }

        /// How many address keys of `tier` ([`super::tier`]) the state holds.
        pub fn keys_in(&self, tier: u8) -> usize {
            self.addresses.keys().filter(|key| key.tier == tier).count()
        }

        /// Whether the overflow bucket of `state_id` for `family` ([`family_index`]) was
        /// charged.
        pub fn overflowed(&self, state_id: u32, family: usize) -> bool {
            self.slots
                .get(&state_id)
                .is_some_and(|slot| slot.overflow[family] != 0)
        }

        fn ban(&mut self, limit: &Limit, packet: &Packet, tier: u8, now_ns: u64) {
            let family = if packet.l3 == crate::parse::L3::Ipv6 {
                Family::Ipv6
            } else {
                Family::Ipv4
            };
            let prefix = Prefix::new(family, packet.src, limit.ban_len(packet, tier));
            let entry = BanEntry {
                expires_ns: now_ns + limit.ban_ns,
            };
            self.bans.retain(|(banned, _)| *banned != prefix);
            self.bans.push((prefix, entry));
            self.bans_issued += 1;
        }
    }

    /// GCRA on one TAT: whether the packet conforms; the TAT moves if it does.
    fn charge(tat: &mut u64, now_ns: u64, increment_ns: u64, burst_ns: u64) -> bool {
        match gcra(*tat, now_ns, increment_ns, burst_ns) {
            Some(next) => {
                *tat = next;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;
    use crate::{
        frame::SliceFrame,
        parse::parse,
        testing::{Body, FrameSpec, Transport},
    };

    fn udp_from(src: [u8; 4]) -> Vec<u8> {
        FrameSpec {
            vlans: Vec::new(),
            body: Body::Ipv4 {
                src,
                dst: [198, 18, 0, 1],
                fragment: 0,
                option_words: 0,
                transport: Transport::Udp {
                    sport: 1,
                    dport: 53,
                    payload: 16,
                },
            },
        }
        .build()
    }

    /// 100 packets a second (10 ms each), in bursts of 5, per source.
    const PER_SRC: Limit = Limit {
        unit_ns_fp: 10_000_000 << UNIT_SHIFT,
        burst_ns: 50_000_000,
        rate: 100,
        burst: 5,
        state_id: 1,
        period_secs: 1,
        per: Per::Src as u8,
        ..Limit::NONE
    };

    #[test]
    fn a_key_passes_its_burst_at_once_then_its_rate() {
        let mut limiter = Limiter::default();
        let frame = udp_from([198, 18, 0, 2]);
        let packet = parse(&SliceFrame::new(&frame));
        let now = 1_000_000_000;
        let passed = (0..10)
            .filter(|_| limiter.conforms(&PER_SRC, &packet, now))
            .count();
        assert_eq!(passed, 5, "the burst");
        assert!(!limiter.conforms(&PER_SRC, &packet, now + 9_000_000));
        assert!(
            limiter.conforms(&PER_SRC, &packet, now + 10_000_000),
            "one more per 10 ms"
        );
        let other = udp_from([198, 18, 0, 3]);
        let other = parse(&SliceFrame::new(&other));
        assert!(
            limiter.conforms(&PER_SRC, &other, now),
            "another source, its own bucket"
        );
    }

    #[test]
    fn new_sources_beyond_the_admissions_share_their_prefix_then_the_overflow() {
        let mut limiter = Limiter::default();
        let now = 1_000_000_000;
        let mut own_keys = 0;
        for index in 0..3 * ADMIT_PER_SEC as u32 {
            let [_, a, b, c] = index.to_be_bytes();
            let frame = udp_from([10, a, b, c]);
            limiter.conforms(&PER_SRC, &parse(&SliceFrame::new(&frame)), now);
            own_keys = limiter.keys_in(tier::OWN);
        }
        assert_eq!(own_keys, ADMIT_PER_SEC as usize, "a second of admissions");
        // The 8,192 sources not admitted span 32 /24s: they share those.
        assert_eq!(limiter.keys_in(tier::AGGREGATE), 32);
        assert!(!limiter.overflowed(PER_SRC.state_id, 1));
        for index in 0..2 * ADMIT_PER_SEC as u32 {
            let [_, _, b, c] = index.to_be_bytes();
            let frame = udp_from([11, b, c, 1]);
            limiter.conforms(&PER_SRC, &parse(&SliceFrame::new(&frame)), now);
        }
        // 8,192 sources from as many /24s: a second of admissions, less what the first 32
        // took (each one's first packet, and its second, which marked it), then one bucket
        // for the rest.
        assert_eq!(
            limiter.keys_in(tier::AGGREGATE),
            32 + ADMIT_PER_SEC as usize - 2 * 32
        );
        assert!(limiter.overflowed(PER_SRC.state_id, 1));
    }

    #[test]
    fn a_mark_is_recent_for_its_ticks_and_an_unwritten_one_never() {
        for tick in 0..600u64 {
            let now = tick << RECENT_TICK_SHIFT;
            assert!(!is_recent(0, recent_tick(now)), "tick {tick}");
            let mark = recent_tick(now);
            let later = |ticks: u64| now + (ticks << RECENT_TICK_SHIFT);
            // Tick 0 shares 1's mark: across a wrap, a mark is recent one tick less.
            assert!(
                is_recent(mark, recent_tick(later(u64::from(RECENT_TICKS) - 2))),
                "tick {tick}"
            );
            assert!(
                !is_recent(mark, recent_tick(later(u64::from(RECENT_TICKS) + 1))),
                "tick {tick}"
            );
        }
    }

    /// Spends the own tier's admissions at `now` with new sources from `net`.0.0.0/8.
    fn spend_admissions(limiter: &mut Limiter, net: u8, now: u64) {
        for index in 0..ADMIT_PER_SEC as u32 {
            let [_, a, b, c] = index.to_be_bytes();
            let frame = udp_from([net, a, b, c]);
            limiter.conforms(&PER_SRC, &parse(&SliceFrame::new(&frame)), now);
        }
    }

    /// The aggregate keys `limiter` holds and its lapsed count, after `packet` at `now`.
    fn after(limiter: &mut Limiter, packet: &Packet, now: u64) -> (usize, u64) {
        assert!(limiter.conforms(&PER_SRC, packet, now));
        (limiter.keys_in(tier::AGGREGATE), limiter.lapsed)
    }

    #[test]
    fn a_key_is_marked_when_it_comes_back_and_keeps_its_state_while_marked() {
        let frame = udp_from([198, 18, 0, 2]);
        let packet = parse(&SliceFrame::new(&frame));
        let start = 1_000_000_000_000;
        let lapsed = start + ((u64::from(RECENT_TICKS) + 2) << RECENT_TICK_SHIFT);
        // Its second packet marks it; then its own state, though new keys are not admitted.
        let mut limiter = Limiter::default();
        assert_eq!(after(&mut limiter, &packet, start), (0, 0));
        assert_eq!(
            after(&mut limiter, &packet, start),
            (0, 1),
            "unmarked, found"
        );
        spend_admissions(&mut limiter, 10, start + 1_000_000);
        let aggregates = limiter.keys_in(tier::AGGREGATE);
        assert_eq!(
            after(&mut limiter, &packet, start + 1_000_000),
            (aggregates, 1)
        );
        // Idle past its mark while a flood spends the admissions: its prefix's state.
        spend_admissions(&mut limiter, 11, lapsed);
        let aggregates = limiter.keys_in(tier::AGGREGATE);
        assert_eq!(after(&mut limiter, &packet, lapsed), (aggregates + 1, 2));
        // Idle as long with admissions to spare: its own state again, without a new key.
        let mut limiter = Limiter::default();
        after(&mut limiter, &packet, start);
        after(&mut limiter, &packet, start);
        let own_keys = limiter.keys_in(tier::OWN);
        assert_eq!(after(&mut limiter, &packet, lapsed), (0, 2));
        assert_eq!(limiter.keys_in(tier::OWN), own_keys);
    }

    #[test]
    fn a_key_seen_once_is_not_marked_so_a_flood_sends_it_to_its_prefix() {
        let frame = udp_from([198, 18, 0, 2]);
        let packet = parse(&SliceFrame::new(&frame));
        let start = 1_000_000_000_000;
        let mut limiter = Limiter::default();
        assert_eq!(after(&mut limiter, &packet, start), (0, 0));
        spend_admissions(&mut limiter, 10, start + 1_000_000);
        let aggregates = limiter.keys_in(tier::AGGREGATE);
        assert_eq!(
            after(&mut limiter, &packet, start + 1_000_000),
            (aggregates + 1, 1)
        );
    }
}
