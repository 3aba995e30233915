//! A rule set turned into the tables the kernel classifies with (see `net_common::filter`).
//!
//! For each field, every value the kernel can look up gets the bitmap of the rules that value
//! lets through, by rank. The kernel ANDs one bitmap per field; the lowest set bit wins.

use std::collections::BTreeSet;

use foldhash::{HashMap, HashMapExt as _};

use net_common::{
    filter::{
        ADDR_DST, ADDR_SRC, FilterConfig, ICMP_KEY_NONE, ICMP_KEYS, NET_BLOCK_BITS_V4,
        NET_BLOCK_BITS_V6, NET_BLOCK_WORDS, NetBlocks, PORT_PAST_END, PORT_SEARCH_SLOTS,
        PROTO_KEY_ARP, PROTO_KEYS, PortIntervals, RuleBitmap, fields, net_block, slot,
    },
    rule::{Family, ICMP_TYPE_ANY, PROTO_ANY, PROTO_ARP, PortRange, Prefix, Rule},
    tree::{MAX_TREES, RuleBox, TreeNode},
};

use super::{
    RuleSet,
    tree::{self, Limits},
};

/// One generation's tables, ready to be written.
pub struct Tables {
    /// Everything but `activated_ns`, which is set when the generation is flipped in.
    pub config: FilterConfig,
    /// By rank.
    pub rules: Vec<Rule>,
    /// Every prefix of the field and family, and the root; host prefixes also go to the
    /// host table.
    pub src_v4: Vec<(Prefix, RuleBitmap)>,
    pub dst_v4: Vec<(Prefix, RuleBitmap)>,
    pub src_v6: Vec<(Prefix, RuleBitmap)>,
    pub dst_v6: Vec<(Prefix, RuleBitmap)>,
    /// For each address field and family, the blocks its prefixes touch.
    pub net_blocks: Vec<(u32, bool, Box<NetBlocks>)>,
    /// The `BITMAPS` array of one generation, by [`slot`].
    pub bitmaps: Vec<RuleBitmap>,
    /// Source, then destination port.
    pub ports: [PortTable; 2],
    /// Each rule's box, by rank.
    pub boxes: Vec<RuleBox>,
    /// The decision trees' nodes and leaf ranks; empty when the set has none (the
    /// bit-vector search classifies it).
    pub nodes: Vec<TreeNode>,
    pub leaf_ranks: Vec<u32>,
}

/// Elementary port intervals and their bitmaps.
pub struct PortTable {
    pub intervals: Box<PortIntervals>,
    pub bitmaps: Vec<RuleBitmap>,
}

/// How a rule set on several fields is classified (one address field alone always takes the
/// host table and trie).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Classifier {
    /// The decision trees, or the bit-vector search when they do not fit.
    #[default]
    Trees,
    /// The bit-vector search alone: what the trees are measured and tested against.
    BitVector,
}

/// Compiles `set`, whose rules must all have counter slots.
pub fn compile(set: &RuleSet, classifier: Classifier) -> Tables {
    let rules = set.rules();
    let ranks = || rules.iter().enumerate();
    let bitmap_of = |keep: &dyn Fn(&Rule) -> bool| {
        let mut bitmap = RuleBitmap::EMPTY;
        for (rank, rule) in ranks() {
            if keep(rule) {
                bitmap.insert(rank);
            }
        }
        bitmap
    };

    let mut bitmaps = vec![RuleBitmap::EMPTY; slot::PER_GENERATION as usize];
    // Every protocol key lets the `any` rules through, and each its own rules; packets of no
    // IP protocol and not ARP (PROTO_KEY_OTHER) only the `any` ones. One pass over the rules.
    let proto_any = bitmap_of(&|rule| rule.matches.proto == PROTO_ANY);
    bitmaps[slot::PROTO as usize..(slot::PROTO + PROTO_KEYS) as usize].fill(proto_any);
    for (rank, rule) in ranks() {
        let key = match rule.matches.proto {
            PROTO_ANY => continue,
            PROTO_ARP => PROTO_KEY_ARP,
            number if u32::from(number) < PROTO_KEY_ARP => u32::from(number),
            _ => continue,
        };
        bitmaps[(slot::PROTO + key) as usize].insert(rank);
    }
    // Likewise ICMP types; packets without one (ICMP_KEY_NONE) meet only the `any` rules.
    let icmp_any = bitmap_of(&|rule| rule.matches.icmp_type == ICMP_TYPE_ANY);
    bitmaps[slot::ICMP as usize..(slot::ICMP + ICMP_KEYS) as usize].fill(icmp_any);
    for (rank, rule) in ranks() {
        let icmp_type = u32::from(rule.matches.icmp_type);
        if icmp_type < ICMP_KEY_NONE {
            bitmaps[(slot::ICMP + icmp_type) as usize].insert(rank);
        }
    }
    bitmaps[slot::ALL as usize] = bitmap_of(&|_| true);
    bitmaps[slot::SRC_ANY as usize] = bitmap_of(&|rule| rule.matches.src.is_any());
    bitmaps[slot::DST_ANY as usize] = bitmap_of(&|rule| rule.matches.dst.is_any());
    bitmaps[slot::SPORT_ANY as usize] = bitmap_of(&|rule| rule.matches.sport.is_any());
    bitmaps[slot::DPORT_ANY as usize] = bitmap_of(&|rule| rule.matches.dport.is_any());

    let named = |field: u32, names: &dyn Fn(&Rule) -> bool| {
        if rules.iter().any(names) { field } else { 0 }
    };
    let config = FilterConfig {
        rule_count: rules.len() as u32,
        fields: named(fields::SRC, &|rule| !rule.matches.src.is_any())
            | named(fields::DST, &|rule| !rule.matches.dst.is_any())
            | named(fields::PROTO, &|rule| rule.matches.proto != PROTO_ANY)
            | named(fields::SPORT, &|rule| !rule.matches.sport.is_any())
            | named(fields::DPORT, &|rule| !rule.matches.dport.is_any())
            | named(fields::ICMP_TYPE, &|rule| {
                rule.matches.icmp_type != ICMP_TYPE_ANY
            }),
        policy: set.policy as u32,
        fragments: set.fragments as u32,
        next_rule_id: set.next_rule_id,
        malformed: set.malformed as u32,
        activated_ns: 0,
        trees: 0,
        tree_roots: [0; MAX_TREES],
        _pad: 0,
    };

    let mut config = config;
    let src_v4 = address_table(rules, Family::Ipv4, |rule| &rule.matches.src);
    let dst_v4 = address_table(rules, Family::Ipv4, |rule| &rule.matches.dst);
    let src_v6 = address_table(rules, Family::Ipv6, |rule| &rule.matches.src);
    let dst_v6 = address_table(rules, Family::Ipv6, |rule| &rule.matches.dst);
    let mut net_blocks = Vec::with_capacity(4);
    for (field, ipv6, table) in [
        (ADDR_SRC, false, &src_v4),
        (ADDR_DST, false, &dst_v4),
        (ADDR_SRC, true, &src_v6),
        (ADDR_DST, true, &dst_v6),
    ] {
        let width = if ipv6 { 128 } else { 32 };
        for (prefix, bitmap) in table {
            match prefix.len {
                0 => bitmaps[slot::root(field, ipv6) as usize] = *bitmap,
                len if len < width => config.fields |= fields::nets(field, ipv6),
                _ => {}
            }
        }
        net_blocks.push((field, ipv6, blocks_touched(table, ipv6)));
    }

    let boxes: Vec<Option<RuleBox>> = rules
        .iter()
        .map(|rule| RuleBox::of(&rule.matches))
        .collect();
    let forest = match classifier {
        Classifier::Trees => tree::build(&boxes, Limits::default()).unwrap_or_default(),
        Classifier::BitVector => tree::Forest::default(),
    };
    config.trees = forest.roots.len() as u32;
    config.tree_roots[..forest.roots.len()].copy_from_slice(&forest.roots);

    Tables {
        config,
        boxes: boxes
            .into_iter()
            .map(|rule| rule.unwrap_or(RuleBox::EMPTY))
            .collect(),
        nodes: forest.nodes,
        leaf_ranks: forest.leaf_ranks,
        net_blocks,
        src_v4,
        dst_v4,
        src_v6,
        dst_v6,
        bitmaps,
        ports: [
            port_table(rules, |rule| rule.matches.sport),
            port_table(rules, |rule| rule.matches.dport),
        ],
        rules: rules.to_vec(),
    }
}

/// The LPM entries of one address field and family: every prefix some rule names, and the
/// root. An entry's bitmap holds the rules whose prefix covers it, and the `any` rules: the
/// longest prefix that contains an address is covered by exactly the prefixes that contain it.
fn address_table(
    rules: &[Rule],
    family: Family,
    field: impl Fn(&Rule) -> &Prefix,
) -> Vec<(Prefix, RuleBitmap)> {
    let mut any = RuleBitmap::EMPTY;
    let mut by_prefix: HashMap<Prefix, Vec<usize>> = HashMap::new();
    for (rank, rule) in rules.iter().enumerate() {
        let prefix = field(rule);
        if prefix.is_any() {
            any.insert(rank);
        } else if prefix.family() == family {
            by_prefix.entry(*prefix).or_default().push(rank);
        }
    }
    let lengths: BTreeSet<u8> = by_prefix.keys().map(|prefix| prefix.len).collect();
    let root = Prefix::new(family, [0; 16], 0);
    let prefixes: BTreeSet<Prefix> = by_prefix.keys().copied().chain([root]).collect();
    prefixes
        .into_iter()
        .map(|prefix| {
            let mut bitmap = any;
            for &len in lengths.range(..=prefix.len) {
                let covering = Prefix::new(family, prefix.addr, len);
                for &rank in by_prefix.get(&covering).into_iter().flatten() {
                    bitmap.insert(rank);
                }
            }
            (prefix, bitmap)
        })
        .collect()
}

/// The blocks the prefixes of one address table touch (all but the root's).
fn blocks_touched(table: &[(Prefix, RuleBitmap)], ipv6: bool) -> Box<NetBlocks> {
    let block_bits = if ipv6 {
        NET_BLOCK_BITS_V6
    } else {
        NET_BLOCK_BITS_V4
    } as u8;
    let mut blocks = Box::new(NetBlocks {
        words: [0; NET_BLOCK_WORDS],
    });
    for (prefix, _) in table.iter().filter(|(prefix, _)| prefix.len > 0) {
        // A prefix shorter than a block covers 2^(block bits - length) blocks in a row.
        let first = net_block(&prefix.addr, ipv6);
        let count = 1usize << block_bits.saturating_sub(prefix.len);
        for block in first..first + count {
            blocks.words[block / 64] |= 1 << (block % 64);
        }
    }
    blocks
}

/// The elementary intervals of one port field: cut at every range's first port and at the
/// port after its last, so that each interval lies wholly inside or outside every range.
fn port_table(rules: &[Rule], field: impl Fn(&Rule) -> PortRange) -> PortTable {
    let mut cuts = BTreeSet::from([0u32]);
    for rule in rules {
        let range = field(rule);
        if !range.is_any() {
            cuts.insert(range.first as u32);
            cuts.insert(range.last as u32 + 1);
        }
    }
    cuts.remove(&PORT_PAST_END);
    let starts: Vec<u32> = cuts.into_iter().collect();

    // Sweep the intervals, adding each rule where its range starts and removing it where it
    // ends.
    let mut starting: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut ending: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut active = RuleBitmap::EMPTY;
    for (rank, rule) in rules.iter().enumerate() {
        let range = field(rule);
        if range.is_any() {
            active.insert(rank);
        } else {
            starting.entry(range.first as u32).or_default().push(rank);
            ending.entry(range.last as u32 + 1).or_default().push(rank);
        }
    }
    let mut bitmaps = Vec::with_capacity(starts.len());
    for start in &starts {
        for &rank in ending.get(start).into_iter().flatten() {
            active.remove(rank);
        }
        for &rank in starting.get(start).into_iter().flatten() {
            active.insert(rank);
        }
        bitmaps.push(active);
    }

    let mut intervals = Box::new(PortIntervals {
        starts: [PORT_PAST_END; PORT_SEARCH_SLOTS],
    });
    intervals.starts[..starts.len()].copy_from_slice(&starts);
    PortTable { intervals, bitmaps }
}

#[cfg(test)]
mod tests {
    use net_common::rule::{Action, Match};

    use super::*;
    use crate::filter::{NewRule, RuleSet};

    fn udp_dport(first: u16, last: u16) -> NewRule {
        NewRule {
            action: Action::Drop,
            priority: 1000,
            matches: Match {
                proto: 17,
                dport: PortRange { first, last },
                ..Match::ANY
            },
            limit: net_common::limit::Limit::NONE,
        }
    }

    #[test]
    fn port_intervals_split_at_every_range_edge_and_find_agrees() {
        let mut set = RuleSet::default();
        set.add(udp_dport(53, 53)).unwrap();
        set.add(udp_dport(1000, 2000)).unwrap();
        set.add(udp_dport(1500, 65535)).unwrap();
        let tables = compile(&set, Classifier::Trees);
        let table = &tables.ports[1];
        let count = table.bitmaps.len();
        assert_eq!(
            &table.intervals.starts[..count],
            [0, 53, 54, 1000, 1500, 2001]
        );
        for (port, want) in [
            (0, vec![]),
            (53, vec![0]),
            (54, vec![]),
            (1000, vec![1]),
            (1999, vec![1, 2]),
            (2001, vec![2]),
            (65535, vec![2]),
        ] {
            let interval = table.intervals.find(port, |value| value);
            let got: Vec<usize> = (0..3)
                .filter(|&rank| table.bitmaps[interval].contains(rank))
                .collect();
            assert_eq!(got, want, "port {port}");
        }
    }

    #[test]
    fn an_address_entry_holds_every_rule_whose_prefix_covers_it() {
        let prefix = |text: [u8; 4], len| {
            let mut addr = [0; 16];
            addr[..4].copy_from_slice(&text);
            Prefix::new(Family::Ipv4, addr, len)
        };
        let mut set = RuleSet::default();
        for (addr, len) in [([198, 18, 0, 0], 15), ([198, 18, 7, 0], 24)] {
            set.add(NewRule {
                action: Action::Drop,
                priority: 1000,
                matches: Match {
                    src: prefix(addr, len),
                    ..Match::ANY
                },
                limit: net_common::limit::Limit::NONE,
            })
            .unwrap();
        }
        set.add(udp_dport(53, 53)).unwrap();
        let tables = compile(&set, Classifier::Trees);
        let entries: Vec<(u8, Vec<usize>)> = tables
            .src_v4
            .iter()
            .map(|(prefix, bitmap)| (prefix.len, (0..3).filter(|&r| bitmap.contains(r)).collect()))
            .collect();
        assert_eq!(
            entries,
            [(0, vec![2]), (15, vec![0, 2]), (24, vec![0, 1, 2])]
        );
        assert_eq!(
            tables.config.fields,
            fields::SRC | fields::PROTO | fields::DPORT | fields::nets(ADDR_SRC, false)
        );
    }

    #[test]
    fn blocks_touched_cover_every_block_a_prefix_reaches() {
        let v4 = |addr: [u8; 4], len| {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&addr);
            (Prefix::new(Family::Ipv4, bytes, len), RuleBitmap::EMPTY)
        };
        let table = [
            v4([0, 0, 0, 0], 0),
            v4([10, 0, 0, 0], 8),
            v4([198, 18, 7, 0], 24),
        ];
        let blocks = blocks_touched(&table, false);
        let touched: usize = blocks
            .words
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum();
        assert_eq!(
            touched,
            256 + 1,
            "the /8 reaches 256 blocks, the /24 one, the root none"
        );
        assert!(blocks.contains(net_block(&table[1].0.addr, false)));
        assert!(blocks.contains(net_block(&table[2].0.addr, false)));
        let mut elsewhere = [0; 16];
        elsewhere[..4].copy_from_slice(&[198, 19, 0, 1]);
        assert!(!blocks.contains(net_block(&elsewhere, false)));

        let mut v6 = [0; 16];
        v6[0] = 0xfd;
        let table = [(Prefix::new(Family::Ipv6, v6, 16), RuleBitmap::EMPTY)];
        let blocks = blocks_touched(&table, true);
        let touched: usize = blocks
            .words
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum();
        assert_eq!(touched, 16, "a /16 reaches 16 blocks of 20 bits");
    }
}
