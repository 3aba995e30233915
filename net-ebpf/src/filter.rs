//! The filter: the active generation's tables, and the bit-vector search over them (see
//! `net_common::filter` for the design, and `net_common::rule` for what it must decide).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_ktime_get_coarse_ns,
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
};
use net_common::{
    filter::{
        BITMAP_WORDS, FilterConfig, FilterState, GENERATIONS, Ipv4Key, Ipv6Key, MAX_PORT_INTERVALS,
        PORT_DST, PORT_SRC, PortIntervals, RuleBitmap, SUMMARY_WORDS, bitmap_index, fields,
        icmp_key, ipv4_key, ipv6_key, port_bitmap_key, port_intervals_index, proto_key, slot,
    },
    parse::{L3, Packet},
    rule::{
        COUNTER_SLOTS, Fragments, MAX_RULES, Rule, RuleCounter, XDP_DROP, XDP_PASS,
        is_neighbour_traffic, lacks_l4_header,
    },
};

const GENERATIONS_U32: u32 = GENERATIONS as u32;
/// Per generation: every rule's prefix, and the root.
const TRIE_ENTRIES: u32 = GENERATIONS_U32 * (MAX_RULES as u32 + 1);

#[map(name = "FILTER_STATE")]
static FILTER_STATE: Array<FilterState> = Array::pinned(1, 0);

#[map(name = "FILTER_CONFIG")]
static FILTER_CONFIG: Array<FilterConfig> = Array::pinned(GENERATIONS_U32, 0);

#[map(name = "RULES")]
static RULES: Array<Rule> = Array::pinned(GENERATIONS_U32 * MAX_RULES as u32, 0);

#[map(name = "RULE_COUNTERS")]
static RULE_COUNTERS: PerCpuArray<RuleCounter> = PerCpuArray::pinned(COUNTER_SLOTS as u32, 0);

#[map(name = "SRC_V4")]
static SRC_V4: LpmTrie<Ipv4Key, RuleBitmap> = LpmTrie::pinned(TRIE_ENTRIES, 0);

#[map(name = "DST_V4")]
static DST_V4: LpmTrie<Ipv4Key, RuleBitmap> = LpmTrie::pinned(TRIE_ENTRIES, 0);

#[map(name = "SRC_V6")]
static SRC_V6: LpmTrie<Ipv6Key, RuleBitmap> = LpmTrie::pinned(TRIE_ENTRIES, 0);

#[map(name = "DST_V6")]
static DST_V6: LpmTrie<Ipv6Key, RuleBitmap> = LpmTrie::pinned(TRIE_ENTRIES, 0);

#[map(name = "BITMAPS")]
static BITMAPS: Array<RuleBitmap> = Array::pinned(GENERATIONS_U32 * slot::PER_GENERATION, 0);

#[map(name = "PORT_INTERVALS")]
static PORT_INTERVALS: Array<PortIntervals> = Array::pinned(GENERATIONS_U32 * 2, 0);

#[map(name = "PORT_BITMAPS")]
static PORT_BITMAPS: HashMap<u32, RuleBitmap> = HashMap::pinned(
    GENERATIONS_U32 * 2 * MAX_PORT_INTERVALS as u32,
    BPF_F_NO_PREALLOC,
);

/// A packet's verdict: the XDP action, and whether a rule (rather than a default) gave it.
pub struct Decision {
    pub action: u32,
    pub matched: bool,
}

/// What the fast path found.
pub enum Outcome {
    Decided(Decision),
    /// The first candidate word held no rule common to every field: only the full search,
    /// in its own program (`netxdp_search`), can tell.
    Search,
}

/// The active generation, and its settings.
#[inline(always)]
fn active() -> Option<(u32, &'static FilterConfig)> {
    let generation = match FILTER_STATE.get(0) {
        Some(state) => state.generation & 1,
        None => 0,
    };
    Some((generation, FILTER_CONFIG.get(generation)?))
}

/// Classifies `packet` if the first candidate settles it, as it always does when at most one
/// field narrows the candidates (exact and blocklist rule sets): the lowest rank set in every
/// field's summary, then in that word.
#[inline(always)]
pub fn decide_fast(packet: &Packet) -> Outcome {
    let Some((generation, config)) = active() else {
        return Outcome::Decided(Decision {
            action: XDP_PASS,
            matched: false,
        });
    };
    let Some(bitmaps) = candidates(packet, generation, config) else {
        return Outcome::Decided(finish(packet, generation, config, None));
    };
    for summary_index in 0..SUMMARY_WORDS {
        let mut candidates = u64::MAX;
        for bitmap in &bitmaps {
            candidates &= bitmap.summary[summary_index];
        }
        if candidates == 0 {
            continue;
        }
        return match lowest_rank_in_word(&bitmaps, summary_index, candidates) {
            Some(rank) => Outcome::Decided(finish(packet, generation, config, Some(rank))),
            None => Outcome::Search,
        };
    }
    Outcome::Decided(finish(packet, generation, config, None))
}

/// Classifies `packet` with the full search: every candidate word, in rank order.
#[inline(always)]
pub fn decide(packet: &Packet) -> Decision {
    let Some((generation, config)) = active() else {
        return Decision {
            action: XDP_PASS,
            matched: false,
        };
    };
    let rank = candidates(packet, generation, config)
        .and_then(|bitmaps| lowest_common_rank(bitmaps, config.summary_words()));
    finish(packet, generation, config, rank)
}

/// The default decision, for a packet whose search could not run.
#[inline(always)]
pub fn unsearched(packet: &Packet) -> Decision {
    Decision {
        action: active().map_or(XDP_PASS, |(_, config)| default_action(packet, config)),
        matched: false,
    }
}

/// The decision for the rule of rank `rank` (counted), or the default when there is none.
#[inline(always)]
fn finish(packet: &Packet, generation: u32, config: &FilterConfig, rank: Option<u32>) -> Decision {
    let rule = rank.and_then(|rank| RULES.get(generation * MAX_RULES as u32 + rank));
    let Some(rule) = rule else {
        return Decision {
            action: default_action(packet, config),
            matched: false,
        };
    };
    if let Some(counter) = RULE_COUNTERS.get_ptr_mut(rule.counter_slot) {
        // SAFETY: this CPU's own copy; XDP does not preempt itself.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += packet.len as u64;
            (*counter).last_hit_ns = bpf_ktime_get_coarse_ns();
        }
    }
    Decision {
        // Only the two actions a rule may have; anything else in the table passes.
        action: if rule.action == XDP_DROP {
            XDP_DROP
        } else {
            XDP_PASS
        },
        matched: true,
    }
}

/// What a packet that no rule matches gets.
#[inline(always)]
fn default_action(packet: &Packet, config: &FilterConfig) -> u32 {
    if is_neighbour_traffic(packet) {
        XDP_PASS
    } else if config.fragments == Fragments::Drop as u32 && lacks_l4_header(packet) {
        XDP_DROP
    } else if config.policy == XDP_DROP {
        XDP_DROP
    } else {
        // Including a configuration never written (all zero): an empty filter passes.
        XDP_PASS
    }
}

/// For each field, the bitmap of the rules it lets through; `None` when no rule can match.
#[inline(always)]
fn candidates(
    packet: &Packet,
    generation: u32,
    config: &FilterConfig,
) -> Option<[&'static RuleBitmap; 6]> {
    if config.rule_count == 0 {
        return None;
    }
    // Only rules that name neighbour traffic may match it; if no rule names the field that
    // would, none can.
    if is_neighbour_traffic(packet) {
        let naming_field = match packet.l3 {
            L3::Arp => fields::PROTO,
            _ => fields::ICMP_TYPE,
        };
        if config.fields & naming_field == 0 {
            return None;
        }
    }
    let bitmap = |slot: u32| BITMAPS.get(bitmap_index(generation, slot));
    let src = address_bitmap(
        packet,
        &packet.src,
        generation,
        &SRC_V4,
        &SRC_V6,
        slot::SRC_ANY,
    )?;
    let dst = address_bitmap(
        packet,
        &packet.dst,
        generation,
        &DST_V4,
        &DST_V6,
        slot::DST_ANY,
    )?;
    let proto = bitmap(slot::PROTO + proto_key(packet))?;
    let icmp = bitmap(slot::ICMP + icmp_key(packet))?;
    let used = |field: u32| config.fields & field != 0;
    let ports = packet
        .ports()
        .filter(|_| used(fields::SPORT | fields::DPORT));
    let sport = match ports {
        Some((port, _)) if used(fields::SPORT) => port_bitmap(port, generation, PORT_SRC)?,
        Some(_) => bitmap(slot::ALL)?,
        None => bitmap(slot::SPORT_ANY)?,
    };
    let dport = match ports {
        Some((_, port)) if used(fields::DPORT) => port_bitmap(port, generation, PORT_DST)?,
        Some(_) => bitmap(slot::ALL)?,
        None => bitmap(slot::DPORT_ANY)?,
    };
    Some([src, dst, proto, sport, dport, icmp])
}

/// The lowest rank set in every one of `bitmaps`.
#[inline(always)]
fn lowest_common_rank(bitmaps: [&RuleBitmap; 6], summary_words: usize) -> Option<u32> {
    for summary_index in 0..SUMMARY_WORDS {
        if summary_index >= summary_words {
            break;
        }
        let mut candidates = u64::MAX;
        for bitmap in &bitmaps {
            candidates &= bitmap.summary[summary_index];
        }
        for _ in 0..64 {
            if candidates == 0 {
                break;
            }
            if let Some(rank) = lowest_rank_in_word(&bitmaps, summary_index, candidates) {
                return Some(rank);
            }
            candidates &= candidates - 1;
        }
    }
    None
}

/// The lowest rank set in every one of `bitmaps` within the word that the lowest bit of
/// `candidates` (a summary word) stands for.
#[inline(always)]
fn lowest_rank_in_word(
    bitmaps: &[&RuleBitmap; 6],
    summary_index: usize,
    candidates: u64,
) -> Option<u32> {
    let word_index = opaque(summary_index * 64 + candidates.trailing_zeros() as usize);
    if word_index >= BITMAP_WORDS {
        return None;
    }
    let mut word = u64::MAX;
    for bitmap in bitmaps {
        word &= bitmap.words[word_index];
    }
    (word != 0).then(|| (word_index * 64) as u32 + word.trailing_zeros())
}

/// `value`, hidden from the optimiser. LLVM knows `trailing_zeros` of a non-zero word is below
/// 64 and drops the bound check that follows; the verifier does not know it (LLVM computes it
/// through a table) and needs that check.
#[inline(always)]
fn opaque(value: usize) -> usize {
    // SAFETY: reads a live local.
    unsafe { core::ptr::read_volatile(&value) }
}

/// The rules an address lets through: by longest prefix for IP, `any` rules only otherwise.
#[inline(always)]
fn address_bitmap(
    packet: &Packet,
    addr: &[u8; 16],
    generation: u32,
    v4: &'static LpmTrie<Ipv4Key, RuleBitmap>,
    v6: &'static LpmTrie<Ipv6Key, RuleBitmap>,
    any: u32,
) -> Option<&'static RuleBitmap> {
    match packet.l3 {
        L3::Ipv4 => v4.get(Key::new(8 + 32, ipv4_key(generation, addr))),
        L3::Ipv6 => v6.get(Key::new(8 + 128, ipv6_key(generation, addr))),
        _ => BITMAPS.get(bitmap_index(generation, any)),
    }
}

/// The rules a port lets through.
#[inline(always)]
fn port_bitmap(port: u16, generation: u32, field: u32) -> Option<&'static RuleBitmap> {
    let intervals = PORT_INTERVALS.get(port_intervals_index(generation, field))?;
    let interval = intervals.find(port, |value| opaque(value as usize) as i64) as u32;
    PORT_BITMAPS
        .get_ptr(port_bitmap_key(generation, field, interval))
        // SAFETY: a map value stays valid until the program returns (RCU), even if userspace
        // deletes its entry meanwhile.
        .map(|bitmap| unsafe { &*bitmap })
}
