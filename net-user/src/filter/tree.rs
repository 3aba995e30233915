//! The decision tree of a rule set (see `net_common::tree` for the design), built at commit
//! time.
//!
//! Each node takes the rules that overlap its region, by rank. A rule that covers the whole
//! region hides every rule after it there, so they are dropped; a node left with few rules
//! is a leaf. Otherwise the node cuts its region along the dimension, and into as many parts,
//! that leave the fewest rules in its fullest child, within a space budget: the rules its
//! children hold together may not exceed [`Limits::space_factor`] times its own (HiCuts'
//! measure), so that rules spanning many children cannot make the tree explode.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt as _};

use net_common::tree::{
    DIM_BITS, DIMS, Key, LEAF_RANKS_PER_GENERATION, MAX_DEPTH, MAX_LEAF, MAX_TREES,
    NODES_PER_GENERATION, RuleBox, TreeNode, axis_max, dim,
};

/// How a tree is shaped.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A node with at most this many rules is a leaf.
    pub leaf_rules: usize,
    /// How many rules a node's children may hold together, as a multiple of its own.
    pub space_factor: f64,
    /// At most `2^max_cut_bits` children per node.
    pub max_cut_bits: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            leaf_rules: 8,
            space_factor: 8.0,
            max_cut_bits: 12,
        }
    }
}

/// Built trees, in one node array and one leaf-rank array.
#[derive(Debug, Default)]
pub struct Forest {
    pub nodes: Vec<TreeNode>,
    pub leaf_ranks: Vec<u32>,
    /// Each tree's root, by node index.
    pub roots: Vec<u32>,
    /// The deepest leaf's depth (a root is at 0).
    pub depth: usize,
    /// The most ranks in one leaf.
    pub largest_leaf: usize,
}

/// A node's region: on dimension `d`, the `2^bits[d]` keys from `lo[d]`.
#[derive(Clone, Copy)]
struct Region {
    lo: [u32; DIMS],
    bits: [u8; DIMS],
}

impl Region {
    fn whole() -> Region {
        Region {
            lo: [0; DIMS],
            bits: DIM_BITS,
        }
    }

    fn hi(&self, d: usize) -> u32 {
        self.lo[d] | (axis_max(d) >> (DIM_BITS[d] - self.bits[d]))
    }

    fn covered_on(&self, rule: &RuleBox, d: usize) -> bool {
        rule.lo[d] <= self.lo[d] && rule.hi(d) >= self.hi(d)
    }

    fn covered_by(&self, rule: &RuleBox) -> bool {
        (0..DIMS).all(|d| self.covered_on(rule, d))
    }

    /// The children that `rule` overlaps when cut along `d` into parts of `2^shift` keys.
    fn parts(&self, rule: &RuleBox, d: usize, shift: u32) -> (usize, usize) {
        let first = rule.lo[d].max(self.lo[d]) - self.lo[d];
        let last = rule.hi(d).min(self.hi(d)) - self.lo[d];
        ((first >> shift) as usize, (last >> shift) as usize)
    }

    fn part(&self, d: usize, shift: u32, index: usize) -> Region {
        let mut part = *self;
        part.lo[d] = self.lo[d] + ((index as u32) << shift);
        part.bits[d] = shift as u8;
        part
    }
}

/// Whether a cut keeps to [`Limits::space_factor`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Budget {
    Kept,
    Ignored,
}

/// A chosen cut.
struct Cut {
    dim: usize,
    bits: u32,
    fullest: usize,
    held: usize,
}

struct Work {
    slot: usize,
    ranks: Vec<u32>,
    region: Region,
    depth: usize,
}

/// The trees of `boxes` (by rank; `None` for a rule that matches nothing), or `None` when
/// they would need a leaf larger than [`MAX_LEAF`], or more nodes or leaf ranks than a
/// generation holds.
///
/// Where a node's rules cannot be cut apart (rules wide on one dimension mixed with rules
/// narrow on it, so that every cut copies the wide ones to every child), the wide rules leave
/// this tree for the next: each tree then holds rules that its cuts separate (EffiCuts'
/// separable trees, found as the build meets them).
pub fn build(boxes: &[Option<RuleBox>], limits: Limits) -> Option<Forest> {
    let mut builder = Builder {
        boxes,
        limits,
        forest: Forest::default(),
        leaves: HashMap::new(),
        work: std::cell::Cell::new(0),
    };
    // Rules wide on an address (shorter than a /8, or `any`) are cut along other
    // dimensions than rules narrow on it: one tree per kind, from the start.
    let wide = |rank: &u32, d: usize| {
        boxes[*rank as usize]
            .as_ref()
            .is_some_and(|rule| rule.span[d] >= 1 << 24)
    };
    let mut kinds: [Vec<u32>; 4] = Default::default();
    for rank in (0..boxes.len() as u32).filter(|&rank| boxes[rank as usize].is_some()) {
        let kind = wide(&rank, dim::SRC) as usize * 2 + wide(&rank, dim::DST) as usize;
        kinds[kind].push(rank);
    }
    let mut pending: Vec<Vec<u32>> = kinds.into_iter().filter(|k| !k.is_empty()).collect();
    pending.reverse();
    while let Some(mut next) = pending.pop() {
        let last = builder.forest.roots.len() + 1 == MAX_TREES;
        if last {
            next.extend(pending.drain(..).flatten());
            next.sort_unstable();
            next.dedup();
        }
        let mut spilled = (!last).then(Vec::new);
        builder.grow(next, spilled.as_mut())?;
        let mut spilled = spilled.unwrap_or_default();
        spilled.sort_unstable();
        spilled.dedup();
        if !spilled.is_empty() {
            pending.insert(0, spilled);
        }
    }
    Some(builder.forest)
}

struct Builder<'a> {
    boxes: &'a [Option<RuleBox>],
    limits: Limits,
    forest: Forest,
    /// Leaves already stored, by their ranks.
    leaves: HashMap<Vec<u32>, u32>,
    /// Rules looked at so far: the build's cost, bounded by [`WORK_LIMIT`].
    work: std::cell::Cell<u64>,
}

/// Rules a build may look at (in cuts weighed and rules given to children): a fifth of a
/// second here. ClassBench-style sets of 10,000 rules take a quarter of it at most; sets whose
/// rules overlap everywhere at once give up and keep the bit-vector search. A count, not a
/// clock, so that the same set always compiles to the same tables.
const WORK_LIMIT: u64 = 20_000_000;

impl Builder<'_> {
    /// Counts `rules` looked at.
    fn spend(&self, rules: usize) {
        self.work.set(self.work.get() + rules as u64);
    }

    fn rule(&self, rank: u32) -> &RuleBox {
        self.boxes[rank as usize]
            .as_ref()
            .expect("only ranks with boxes")
    }

    /// Adds the tree of `ranks`; with `spilled`, rules that keep a node from being cut go
    /// there instead.
    fn grow(&mut self, ranks: Vec<u32>, mut spilled: Option<&mut Vec<u32>>) -> Option<()> {
        let root = self.forest.nodes.len();
        self.forest.roots.push(root as u32);
        self.forest.nodes.push(TreeNode::default());
        let mut queue = VecDeque::from([Work {
            slot: root,
            ranks,
            region: Region::whole(),
            depth: 0,
        }]);
        while let Some(mut work) = queue.pop_front() {
            // A rule covering the whole region hides every rule after it there.
            if let Some(covering) = work
                .ranks
                .iter()
                .position(|&rank| work.region.covered_by(self.rule(rank)))
            {
                work.ranks.truncate(covering + 1);
            }
            let cut = self.cut_for(&mut work, spilled.as_deref_mut());
            if self.work.get() > WORK_LIMIT {
                return None;
            }
            match cut {
                Some(cut) => self.split(work, &cut, &mut queue)?,
                None => self.leaf(work)?,
            }
        }
        Some(())
    }

    /// How `work` is cut, if it is: within the space budget; else, when this tree may spill,
    /// after the rules wide on the dimension that frees a cut have gone to `spilled`; else,
    /// for a node too large to be a leaf, past the budget.
    fn cut_for(&self, work: &mut Work, spilled: Option<&mut Vec<u32>>) -> Option<Cut> {
        let splittable =
            |work: &Work| work.ranks.len() > self.limits.leaf_rules && work.depth + 1 < MAX_DEPTH;
        if !splittable(work) {
            return None;
        }
        if let Some(cut) = self.choose_cut(&work.ranks, &work.region, None, Budget::Kept) {
            return Some(cut);
        }
        if let Some(spilled) = spilled
            && let Some(dim) = self.choose_spill(work)
        {
            let (wide, narrow) = work
                .ranks
                .iter()
                .partition(|&&rank| work.region.covered_on(self.rule(rank), dim));
            spilled.extend::<Vec<u32>>(wide);
            work.ranks = narrow;
            if !splittable(work) {
                return None;
            }
            if let Some(cut) = self.choose_cut(&work.ranks, &work.region, None, Budget::Kept) {
                return Some(cut);
            }
        }
        // Too many rules for a leaf and none to spill: rules that overlap in every way at
        // once (dense sets from tiny pools, not real ones). Cut anyway.
        (work.ranks.len() > MAX_LEAF)
            .then(|| self.choose_cut(&work.ranks, &work.region, None, Budget::Ignored))
            .flatten()
    }

    /// Makes `work` an inner node cut by `cut`, and queues its children.
    fn split(&mut self, work: Work, cut: &Cut, queue: &mut VecDeque<Work>) -> Option<()> {
        let shift = work.region.bits[cut.dim] as u32 - cut.bits;
        let base = self.forest.nodes.len();
        let children = 1 << cut.bits;
        if base + children > NODES_PER_GENERATION as usize {
            return None;
        }
        self.forest.nodes[work.slot] = TreeNode::inner(base as u32, cut.dim, shift, cut.bits);
        self.forest
            .nodes
            .resize(base + children, TreeNode::leaf(0, 0));
        self.spend(cut.held);
        let mut parts = vec![Vec::new(); children];
        for &rank in &work.ranks {
            let (first, last) = work.region.parts(self.rule(rank), cut.dim, shift);
            for part in &mut parts[first..=last] {
                part.push(rank);
            }
        }
        for (index, ranks) in parts.into_iter().enumerate() {
            queue.push_back(Work {
                slot: base + index,
                ranks,
                region: work.region.part(cut.dim, shift, index),
                depth: work.depth + 1,
            });
        }
        Some(())
    }

    /// Makes `work` a leaf; `None` when it holds too many rules or the ranks are full.
    fn leaf(&mut self, work: Work) -> Option<()> {
        if work.ranks.len() > MAX_LEAF {
            return None;
        }
        let forest = &mut self.forest;
        forest.depth = forest.depth.max(work.depth);
        forest.largest_leaf = forest.largest_leaf.max(work.ranks.len());
        if forest.leaf_ranks.len() + work.ranks.len() > LEAF_RANKS_PER_GENERATION as usize {
            return None;
        }
        let count = work.ranks.len() as u32;
        let base = *self.leaves.entry(work.ranks).or_insert_with_key(|ranks| {
            let base = forest.leaf_ranks.len() as u32;
            forest.leaf_ranks.extend_from_slice(ranks);
            base
        });
        forest.nodes[work.slot] = TreeNode::leaf(base, count);
        Some(())
    }

    /// The dimension whose wide rules (those covering the region on it) to spill, so that
    /// the rest can be cut along it: the fewest spilled plus the fullest child left.
    fn choose_spill(&self, work: &Work) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for d in 0..DIMS {
            if work.region.bits[d] == 0 {
                continue;
            }
            let narrow: Vec<u32> = work
                .ranks
                .iter()
                .copied()
                .filter(|&rank| !work.region.covered_on(self.rule(rank), d))
                .collect();
            let wide = work.ranks.len() - narrow.len();
            if wide == 0 || narrow.is_empty() {
                continue;
            }
            let fullest = if narrow.len() <= self.limits.leaf_rules {
                narrow.len()
            } else {
                match self.choose_cut(&narrow, &work.region, Some(d), Budget::Kept) {
                    Some(cut) => cut.fullest,
                    None => continue,
                }
            };
            let score = wide + fullest;
            if best.is_none_or(|(best, _)| score < best) {
                best = Some((score, d));
            }
        }
        best.map(|(_, d)| d)
    }

    /// The cut that leaves the fewest rules in the fullest child, within the space budget
    /// unless told otherwise (along `only` when given); `None` when no cut leaves fewer than
    /// the node holds.
    fn choose_cut(
        &self,
        ranks: &[u32],
        region: &Region,
        only: Option<usize>,
        budget: Budget,
    ) -> Option<Cut> {
        let rules = ranks.len();
        let space = (self.limits.space_factor * rules as f64) as usize;
        let mut best: Option<Cut> = None;
        let mut counts = Vec::new();
        for d in 0..DIMS {
            if only.is_some_and(|only| only != d) {
                continue;
            }
            let width = region.bits[d] as u32;
            for bits in 1..=width.min(self.limits.max_cut_bits) {
                let shift = width - bits;
                let children = 1usize << bits;
                counts.clear();
                counts.resize(children + 1, 0i64);
                let mut held = 0;
                self.spend(ranks.len());
                for &rank in ranks {
                    let (first, last) = region.parts(self.rule(rank), d, shift);
                    counts[first] += 1;
                    counts[last + 1] -= 1;
                    held += last - first + 1;
                }
                if bits > 1 && budget == Budget::Kept && children + held > space {
                    break;
                }
                let mut running = 0;
                let mut fullest = 0;
                for count in &counts[..children] {
                    running += count;
                    fullest = fullest.max(running as usize);
                }
                let better = match &best {
                    None => true,
                    Some(best) => (fullest, held) < (best.fullest, best.held),
                };
                // Past the budget, a cut that only shrinks the region is progress too: rules
                // that all overlap one spot part once the spot's region is covered by one.
                let progress = match budget {
                    Budget::Kept => fullest < rules,
                    Budget::Ignored => {
                        fullest < rules
                            || ranks
                                .iter()
                                .any(|&rank| !region.covered_on(self.rule(rank), d))
                    }
                };
                if progress && better {
                    best = Some(Cut {
                        dim: d,
                        bits,
                        fullest,
                        held,
                    });
                }
            }
        }
        best
    }
}

impl Forest {
    /// The rank of the first rule holding `key`, walked as the kernel walks it.
    pub fn classify(&self, boxes: &[RuleBox], key: &Key) -> Option<u32> {
        let mut best: Option<u32> = None;
        for &root in &self.roots {
            let mut node = self.nodes[root as usize];
            for _ in 0..MAX_DEPTH {
                if node.is_leaf() {
                    break;
                }
                node = self.nodes[node.child(key) as usize];
            }
            let base = node.base as usize;
            for &rank in &self.leaf_ranks[base..base + node.mask_or_count as usize] {
                if best.is_some_and(|best| best < rank) {
                    break;
                }
                if boxes[rank as usize].contains(key) {
                    best = Some(rank);
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use net_common::{
        classbench::{self, Profile},
        frame::SliceFrame,
        parse::parse,
        rule::Rule,
        rulegen::{PoolFrameGenerator, random_rules, ranked},
        tree::key_of,
    };

    /// Builds the trees of `rules` and holds their walk to the reference on every frame.
    fn assert_agrees(rules: &[Rule], frames: impl IntoIterator<Item = Vec<u8>>) -> Forest {
        let boxes: Vec<_> = rules
            .iter()
            .map(|rule| RuleBox::of(&rule.matches))
            .collect();
        let forest = build(&boxes, Limits::default()).expect("the trees fit");
        let flat: Vec<_> = boxes.iter().map(|b| b.unwrap_or(RuleBox::EMPTY)).collect();
        for frame in frames {
            let packet = parse(&SliceFrame::new(&frame));
            let reference = rules.iter().position(|rule| rule.matches.matches(&packet));
            assert_eq!(
                forest.classify(&flat, &key_of(&packet)),
                reference.map(|rank| rank as u32),
                "{packet:?}"
            );
        }
        forest
    }

    #[test]
    fn pool_sets_of_every_field_and_family_agree_with_the_reference() {
        for seed in 0..40 {
            let rules = ranked(&random_rules(seed, 1 + seed as usize * 5));
            let mut frames = PoolFrameGenerator::new(seed);
            assert_agrees(&rules, (0..5_000).map(|_| frames.next_frame()));
        }
        let rules = ranked(&random_rules(40, 400));
        let mut frames = PoolFrameGenerator::new(40);
        assert_agrees(&rules, (0..20_000).map(|_| frames.next_frame()));
    }

    #[test]
    fn a_set_that_overlaps_everywhere_gives_up_within_its_work_limit() {
        // Thousands of rules from a few addresses, ports and types: every rule overlaps
        // hundreds of others at every spot, which no tree separates at a sane size.
        let rules = ranked(&random_rules(6, 10_000));
        let boxes: Vec<_> = rules
            .iter()
            .map(|rule| RuleBox::of(&rule.matches))
            .collect();
        assert!(build(&boxes, Limits::default()).is_none());
    }

    #[test]
    fn classbench_sets_agree_with_the_reference_on_their_traces() {
        for profile in Profile::ALL {
            for count in [1_000, 10_000] {
                let generated = classbench::rules(profile, 7, count);
                let trace = classbench::trace(&generated, 3, 10_000);
                let forest = assert_agrees(
                    &ranked(&generated),
                    trace.into_iter().map(|header| header.frame),
                );
                assert!(forest.roots.len() <= MAX_TREES);
            }
        }
    }

    #[test]
    fn a_rule_of_no_rules_or_of_two_families_makes_no_tree_node() {
        assert!(build(&[], Limits::default()).is_some_and(|forest| forest.roots.is_empty()));
        assert!(build(&[None, None], Limits::default()).is_some_and(|f| f.roots.is_empty()));
    }
}
