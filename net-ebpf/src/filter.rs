//! The filter: the active generation's tables, and the bit-vector search over them (see
//! `net_common::filter` for the design, and `net_common::rule` for what it must decide).

use crate::{
    bans, clock,
    limit::{self, Charge},
    opaque,
};
use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, xdp_action},
    cty::c_void,
    helpers::bpf_loop,
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
};
use net_common::{
    filter::{
        ADDR_DST, ADDR_SRC, BITMAP_WORDS, FilterConfig, FilterState, GENERATIONS, Ipv4HostKey,
        Ipv4Key, Ipv6HostKey, Ipv6Key, MAX_PORT_INTERVALS, NetBlocks, PORT_DST, PORT_SRC,
        PortIntervals, RuleBitmap, SUMMARY_WORDS, bitmap_index, fields, icmp_key, ipv4_host_key,
        ipv4_key, ipv6_host_key, ipv6_key, net_block, net_blocks_index, port_bitmap_key,
        port_intervals_index, proto_key, slot,
    },
    limit::tier as limit_tier,
    parse::Packet,
    rule::{
        COUNTER_SLOTS, Family, Fragments, LIMIT, MAX_RULES, Malformed, Rule, RuleCounter, XDP_DROP,
        XDP_PASS, lacks_l4_header, reason,
    },
    tree::{
        LEAF_RANKS_PER_GENERATION, MAX_DEPTH, MAX_LEAF, MAX_TREES, NODES_PER_GENERATION, RuleBox,
        TreeNode, key_of, leaf_rank_index, node_index,
    },
};

const GENERATIONS_U32: u32 = GENERATIONS as u32;
// Sized for two full generations: see net_common::filter.
const TRIE_ENTRIES: u32 = net_common::filter::TRIE_ENTRIES;
const HOST_ENTRIES: u32 = net_common::filter::HOST_ENTRIES;

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

#[map(name = "HOSTS_V4")]
static HOSTS_V4: HashMap<Ipv4HostKey, RuleBitmap> =
    HashMap::pinned(HOST_ENTRIES, BPF_F_NO_PREALLOC);

#[map(name = "HOSTS_V6")]
static HOSTS_V6: HashMap<Ipv6HostKey, RuleBitmap> =
    HashMap::pinned(HOST_ENTRIES, BPF_F_NO_PREALLOC);

#[map(name = "NET_BLOCKS")]
static NET_BLOCKS: Array<NetBlocks> = Array::pinned(GENERATIONS_U32 * 4, 0);

#[map(name = "BITMAPS")]
static BITMAPS: Array<RuleBitmap> = Array::pinned(GENERATIONS_U32 * slot::PER_GENERATION, 0);

#[map(name = "PORT_INTERVALS")]
static PORT_INTERVALS: Array<PortIntervals> = Array::pinned(GENERATIONS_U32 * 2, 0);

#[map(name = "PORT_BITMAPS")]
static PORT_BITMAPS: HashMap<u32, RuleBitmap> = HashMap::pinned(
    GENERATIONS_U32 * 2 * MAX_PORT_INTERVALS as u32,
    BPF_F_NO_PREALLOC,
);

#[map(name = "RULE_BOXES")]
static RULE_BOXES: Array<RuleBox> = Array::pinned(GENERATIONS_U32 * MAX_RULES as u32, 0);

#[map(name = "TREE_NODES")]
static TREE_NODES: Array<TreeNode> = Array::pinned(GENERATIONS_U32 * NODES_PER_GENERATION, 0);

#[map(name = "LEAF_RANKS")]
static LEAF_RANKS: Array<u32> = Array::pinned(GENERATIONS_U32 * LEAF_RANKS_PER_GENERATION, 0);

/// A packet's verdict: the XDP action, the rule that gave it (0 for none), and why
/// (`net_common::rule::reason`).
pub struct Decision {
    pub action: u32,
    pub rule_id: u32,
    pub reason: u8,
}

/// The decision stashed for the programs tail-called after deciding (the SYN-flood guard's,
/// a capture expression's and the copy after it), which cannot be handed it otherwise.
/// Pinned for `netxdp capture`, which loads an expression's program that reads it.
#[map(name = "DECISION")]
static DECISION: PerCpuArray<net_common::capture::Decision> = PerCpuArray::pinned(1, 0);

impl Decision {
    /// Keeps this decision on this CPU for the program about to be tail-called.
    #[inline(always)]
    pub fn stash(&self) {
        if let Some(slot) = DECISION.get_ptr_mut(0) {
            // SAFETY: this CPU's own copy; XDP does not preempt itself.
            unsafe {
                *slot = net_common::capture::Decision {
                    action: self.action,
                    rule_id: self.rule_id,
                    reason: self.reason as u32,
                    loop_budget: net_common::capture::EXPRESSION_LOOP_BUDGET,
                }
            };
        }
    }

    /// The decision [`Decision::stash`] kept on this CPU (in a tail-called program); XDP_PASS
    /// by no rule should it be missing, which the array map's one entry never is.
    #[inline(always)]
    pub fn stashed() -> Decision {
        DECISION.get(0).map_or(
            Decision::without_rule(xdp_action::XDP_PASS, net_common::rule::reason::POLICY),
            |stashed| Decision {
                action: stashed.action,
                rule_id: stashed.rule_id,
                reason: stashed.reason as u8,
            },
        )
    }

    /// The decision of no rule.
    #[inline(always)]
    fn without_rule(action: u32, reason: u8) -> Decision {
        Decision {
            action,
            rule_id: 0,
            reason,
        }
    }
}

/// What the fast path found.
pub enum Outcome {
    Decided(Decision),
    /// The set is classified by its decision trees, or the first candidate word of the
    /// bit-vector search held no rule common to every field: `netxdp_search`, a program of
    /// its own, decides.
    Search,
}

/// How [`decide`] classified a packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Searched {
    Trees,
    BitVector,
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
        return Outcome::Decided(Decision::without_rule(XDP_PASS, reason::POLICY));
    };
    // Before any rule: a rule could pass what it cannot see through (a tiny fragment's
    // missing ports), and the datagram Linux reassembles would get past the rules after it.
    let defect = packet.defect_index();
    if defect != 0 && config.malformed == Malformed::Drop as u32 {
        return Outcome::Decided(Decision::without_rule(
            XDP_DROP,
            reason::DEFECT + defect as u8,
        ));
    }
    // A rule set on one address field alone (a blocklist, an allow-list of hosts): that
    // field's bitmap decides, with no other lookup.
    let named = config.fields & fields::NAMED;
    if named == fields::SRC || named == fields::DST {
        let field = if named == fields::SRC {
            ADDR_SRC
        } else {
            ADDR_DST
        };
        let rank = address_bitmap(packet, generation, config, field, Lookup::Fast)
            .and_then(|bitmap| first_rank(&[bitmap]));
        return Outcome::Decided(finish(packet, generation, config, rank));
    }
    if config.trees != 0 {
        // The walk lives in `netxdp_search`, verified once there rather than along every
        // path of the parser here.
        return Outcome::Search;
    }
    let Some(bitmaps) = candidates(packet, generation, config, Lookup::Fast) else {
        return Outcome::Decided(finish(packet, generation, config, None));
    };
    match first_candidate(&bitmaps) {
        Some((summary_index, candidates)) => {
            match lowest_rank_in_word(&bitmaps, summary_index, candidates) {
                Some(rank) => Outcome::Decided(finish(packet, generation, config, Some(rank))),
                None => Outcome::Search,
            }
        }
        None => Outcome::Decided(finish(packet, generation, config, None)),
    }
}

/// The lowest rank whose box holds the packet, from the decision trees (see
/// `net_common::tree`): each tree walked to its leaf, and the leaf's ranks tested in order
/// until one holds the key or passes the best found so far.
#[inline(always)]
fn tree_rank(packet: &Packet, generation: u32, config: &FilterConfig) -> Option<u32> {
    let key = key_of(packet);
    let mut best = u32::MAX;
    for tree in 0..MAX_TREES {
        if tree as u32 >= config.trees {
            break;
        }
        let mut node = *TREE_NODES.get(node_index(generation, config.tree_roots[tree]))?;
        for _ in 0..MAX_DEPTH {
            if node.is_leaf() {
                break;
            }
            node = *TREE_NODES.get(node_index(generation, node.child(&key)))?;
        }
        for slot in 0..MAX_LEAF as u32 {
            if slot >= node.mask_or_count {
                break;
            }
            let rank =
                *LEAF_RANKS.get(leaf_rank_index(generation, node.base.wrapping_add(slot)))?;
            if rank >= best {
                break;
            }
            let rule = RULE_BOXES.get(generation * MAX_RULES as u32 + rank)?;
            if rule.contains(&key) {
                best = rank;
                break;
            }
        }
    }
    (best != u32::MAX).then_some(best)
}

/// The first summary word with a candidate in every one of `bitmaps`, and those candidates.
#[inline(always)]
fn first_candidate<const N: usize>(bitmaps: &[&RuleBitmap; N]) -> Option<(usize, u64)> {
    for summary_index in 0..SUMMARY_WORDS {
        let mut candidates = u64::MAX;
        for bitmap in bitmaps {
            candidates &= bitmap.summary[summary_index];
        }
        if candidates != 0 {
            return Some((summary_index, candidates));
        }
    }
    None
}

/// The lowest rank of a single bitmap: its first candidate word always holds one.
#[inline(always)]
fn first_rank(bitmaps: &[&RuleBitmap; 1]) -> Option<u32> {
    let (summary_index, candidates) = first_candidate(bitmaps)?;
    lowest_rank_in_word(bitmaps, summary_index, candidates)
}

/// Classifies `packet` with the set's decision trees, or with the bit-vector search over every
/// candidate word, in rank order, when it has none (the generation may have flipped since the
/// fast path looked).
#[inline(always)]
pub fn decide(packet: &Packet) -> (Decision, Searched) {
    let Some((generation, config)) = active() else {
        return (
            Decision::without_rule(XDP_PASS, reason::POLICY),
            Searched::BitVector,
        );
    };
    let (rank, searched) = if config.trees != 0 {
        (tree_rank(packet, generation, config), Searched::Trees)
    } else {
        let rank =
            candidates(packet, generation, config, Lookup::Tries).and_then(lowest_common_rank);
        (rank, Searched::BitVector)
    };
    (finish(packet, generation, config, rank), searched)
}

/// The default decision, for a packet whose search could not run.
#[inline(always)]
pub fn unsearched(packet: &Packet) -> Decision {
    match active() {
        Some((_, config)) => default_decision(packet, config),
        None => Decision::without_rule(XDP_PASS, reason::POLICY),
    }
}

/// The decision for the rule of rank `rank` (counted), or the default when there is none.
#[inline(always)]
fn finish(packet: &Packet, generation: u32, config: &FilterConfig, rank: Option<u32>) -> Decision {
    let rule = rank.and_then(|rank| RULES.get(generation * MAX_RULES as u32 + rank));
    let Some(rule) = rule else {
        return default_decision(packet, config);
    };
    let counter = RULE_COUNTERS.get_ptr_mut(rule.counter_slot);
    let now_ns = clock::coarse_now_ns();
    if let Some(counter) = counter {
        // SAFETY: this CPU's own copy; XDP does not preempt itself.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += packet.len as u64;
            (*counter).last_hit_ns = now_ns;
        }
    }
    let action = match rule.action {
        XDP_DROP => XDP_DROP,
        LIMIT => match limit::charge(&rule.limit, rule.counter_slot, packet, now_ns) {
            Charge::Conforms => XDP_PASS,
            Charge::Over(tier) => {
                let banned = rule.limit.bans(packet)
                    && tier != limit_tier::OVERFLOW
                    && bans::issue(
                        packet,
                        rule.limit.ban_len(packet, tier),
                        now_ns + rule.limit.ban_ns,
                    );
                if let Some(counter) = counter {
                    // SAFETY: as above.
                    unsafe {
                        (*counter).limited += 1;
                        (*counter).bans += banned as u64;
                    }
                }
                return Decision {
                    action: XDP_DROP,
                    rule_id: rule.id,
                    reason: reason::LIMIT,
                };
            }
        },
        // Anything else in the table passes.
        _ => XDP_PASS,
    };
    Decision {
        action,
        rule_id: rule.id,
        reason: reason::RULE,
    }
}

/// What a packet that no rule matches gets.
#[inline(always)]
fn default_decision(packet: &Packet, config: &FilterConfig) -> Decision {
    let (action, why) = if packet.neighbour {
        (XDP_PASS, reason::NEIGHBOUR)
    } else if config.fragments == Fragments::Drop as u32 && lacks_l4_header(packet) {
        (XDP_DROP, reason::FRAGMENT)
    } else if config.policy == XDP_DROP {
        (XDP_DROP, reason::POLICY)
    } else {
        // Including a configuration never written (all zero): an empty filter passes.
        (XDP_PASS, reason::POLICY)
    };
    Decision::without_rule(action, why)
}

/// For each field, the bitmap of the rules it lets through; `None` when no rule can match.
#[inline(always)]
fn candidates(
    packet: &Packet,
    generation: u32,
    config: &FilterConfig,
    lookup: Lookup,
) -> Option<[&'static RuleBitmap; 6]> {
    if config.rule_count == 0 {
        return None;
    }
    let bitmap = |slot: u32| BITMAPS.get(bitmap_index(generation, slot));
    let used = |field: u32| config.fields & field != 0;
    let proto = bitmap(slot::PROTO + proto_key(packet))?;
    let icmp = bitmap(slot::ICMP + icmp_key(packet))?;
    // On the fast path, an address field no rule names lets every rule through: it takes the
    // other field's bitmap (ANDing one twice changes nothing) or the protocol's, and costs
    // no lookup.
    let src = || address_bitmap(packet, generation, config, ADDR_SRC, lookup);
    let dst = || address_bitmap(packet, generation, config, ADDR_DST, lookup);
    let (src, dst) = match (used(fields::SRC), used(fields::DST)) {
        // The full search looks both up always: fewer kinds of pointer for the verifier to
        // combine along its loop.
        _ if lookup == Lookup::Tries => (src()?, dst()?),
        (false, false) => (proto, proto),
        (true, false) => {
            let src = src()?;
            (src, src)
        }
        (false, true) => {
            let dst = dst()?;
            (dst, dst)
        }
        (true, true) => (src()?, dst()?),
    };
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

/// The full search's state, shared with its loop body.
#[repr(C)]
struct Search {
    bitmaps: [&'static RuleBitmap; 6],
    /// The AND of the bitmaps' summaries: the words still worth looking at.
    summary: [u64; SUMMARY_WORDS],
    /// The rank found, or `u32::MAX`.
    rank: u32,
}

/// The lowest rank set in every one of `bitmaps`: each candidate word in turn (a word whose
/// bit is set in every field's summary), through `bpf_loop`, whose body the verifier checks
/// once rather than once per possible turn.
#[inline(always)]
fn lowest_common_rank(bitmaps: [&'static RuleBitmap; 6]) -> Option<u32> {
    let mut summary = [u64::MAX; SUMMARY_WORDS];
    let mut candidate_words = 0;
    for (index, word) in summary.iter_mut().enumerate() {
        for bitmap in &bitmaps {
            *word &= bitmap.summary[index];
        }
        candidate_words += word.count_ones();
    }
    let mut search = Search {
        bitmaps,
        summary,
        rank: u32::MAX,
    };
    // SAFETY: `search_words` has the signature bpf_loop calls, and `search` outlives the call.
    unsafe {
        bpf_loop(
            candidate_words,
            search_words as *mut c_void,
            (&raw mut search).cast(),
            0,
        )
    };
    (search.rank != u32::MAX).then_some(search.rank)
}

/// The next candidate word of the full search: 1 (stop) when it holds a rank common to every
/// field, recorded in `search`, or when none is left. One word per turn: the verifier's walk
/// of a body with a loop of its own grows with every turn of that loop.
#[inline(never)]
extern "C" fn search_words(_turn: u32, search: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer `lowest_common_rank` gave it.
    let search = unsafe { &mut *search.cast::<Search>() };
    let Some(summary_index) = search.summary.iter().position(|word| *word != 0) else {
        return 1;
    };
    let candidates = search.summary[summary_index];
    search.summary[summary_index] = candidates & (candidates - 1);
    match lowest_rank_in_word(&search.bitmaps, summary_index, candidates) {
        Some(rank) => {
            search.rank = rank;
            1
        }
        None => 0,
    }
}

/// The lowest rank set in every one of `bitmaps` within the word that the lowest bit of
/// `candidates` (a summary word) stands for.
#[inline(always)]
fn lowest_rank_in_word<const N: usize>(
    bitmaps: &[&RuleBitmap; N],
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

/// How addresses are looked up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// The host table first, then the trie only if it holds networks: cheapest.
    Fast,
    /// The trie alone, which holds every prefix: one kind of pointer per family, which keeps
    /// the verifier's walk of the full search short.
    Tries,
}

/// The rules an address field lets through: by longest prefix for IP, `any` rules only
/// otherwise.
#[inline(always)]
fn address_bitmap(
    packet: &Packet,
    generation: u32,
    config: &FilterConfig,
    field: u32,
    lookup: Lookup,
) -> Option<&'static RuleBitmap> {
    let (addr, v4, v6, any) = if field == ADDR_SRC {
        (&packet.src, &SRC_V4, &SRC_V6, slot::SRC_ANY)
    } else {
        (&packet.dst, &DST_V4, &DST_V6, slot::DST_ANY)
    };
    let ipv6 = match packet.addr_family {
        Family::Ipv4 => false,
        Family::Ipv6 => true,
        Family::Any => return BITMAPS.get(bitmap_index(generation, any)),
    };
    if lookup == Lookup::Fast {
        let untouched = NET_BLOCKS
            .get(net_blocks_index(generation, field, ipv6))
            .is_some_and(|blocks| !blocks.contains(net_block(addr, ipv6)));
        if untouched {
            return BITMAPS.get(bitmap_index(generation, slot::root(field, ipv6)));
        }
        let host = if ipv6 {
            HOSTS_V6.get_ptr(ipv6_host_key(generation, field, addr))
        } else {
            HOSTS_V4.get_ptr(ipv4_host_key(generation, field, addr))
        };
        if let Some(bitmap) = host {
            // SAFETY: a map value stays valid until the program returns (RCU).
            return Some(unsafe { &*bitmap });
        }
        if config.fields & fields::nets(field, ipv6) == 0 {
            return BITMAPS.get(bitmap_index(generation, slot::root(field, ipv6)));
        }
    }
    if ipv6 {
        v6.get(Key::new(8 + 128, ipv6_key(generation, addr)))
    } else {
        v4.get(Key::new(8 + 32, ipv4_key(generation, addr)))
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
