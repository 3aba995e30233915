//! The counter block: one per CPU, one map entry, so the kernel does a single map lookup per
//! packet and userspace sums the CPUs when it reads.

use crate::{
    parse::{L3, L4, Packet},
    rule::{REASONS, lacks_l4_header, reason},
};

/// Packets and bytes (bytes as the frame's length on the wire, without FCS).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl Counter {
    #[inline(always)]
    pub fn add(&mut self, bytes: u64) {
        self.packets += 1;
        self.bytes += bytes;
    }

    pub fn merge(&mut self, other: &Counter) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }
}

/// XDP verdicts, in the kernel's numbering (`enum xdp_action`).
pub const XDP_ACTIONS: [&str; 5] = ["aborted", "drop", "pass", "tx", "redirect"];

/// The reasons a packet is dropped other than by a rule or the policy, in the order of
/// [`Stats::dropped`]: `--fragments drop`, then each [`crate::parse::Defect`].
pub const DROP_REASONS: [&str; 8] = [
    REASONS[reason::FRAGMENT as usize],
    REASONS[reason::DEFECT as usize + 1],
    REASONS[reason::DEFECT as usize + 2],
    REASONS[reason::DEFECT as usize + 3],
    REASONS[reason::DEFECT as usize + 4],
    REASONS[reason::BAN as usize],
    REASONS[reason::LIMIT as usize],
    REASONS[reason::SYNGUARD as usize],
];

/// Every packet is counted once under its verdict, once under its L3 and once under its L4
/// class; `malformed` counts, in addition, frames the parser found defective (malformed,
/// tiny or overlapping fragments, bad IPv6 chains: [`crate::parse::Defect`]), `no_l4` IP
/// packets without their L4 header (later fragments and defective ones), `matched` packets
/// that a filter rule decided (the rest got a default), and `dropped` the packets dropped for
/// a reason other than a rule or the policy, by reason ([`DROP_REASONS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Indexed by XDP action ([`XDP_ACTIONS`]).
    pub action: [Counter; XDP_ACTIONS.len()],
    /// Indexed by [`L3`].
    pub l3: [Counter; L3::ALL.len()],
    /// Indexed by [`L4`].
    pub l4: [Counter; L4::ALL.len()],
    pub malformed: Counter,
    pub no_l4: Counter,
    pub matched: Counter,
    /// Packets the fast path could not settle, classified by the full rule search.
    pub searched: Counter,
    /// Packets the full search should have classified but could not reach (its program was
    /// missing from the program array): they got the default instead.
    pub search_failed: Counter,
    /// Indexed like [`DROP_REASONS`].
    pub dropped: [Counter; DROP_REASONS.len()],
}

impl Stats {
    /// Counts one packet with the verdict `action`, given by a rule when `matched`. The
    /// reference for what the kernel does.
    #[inline(always)]
    pub fn record(&mut self, packet: &Packet, action: u32, reason: u8) {
        self.record_class(packet);
        self.record_verdict(packet.len, action, reason);
    }

    /// The half of [`Stats::record`] that needs the parsed packet. The kernel counts it before
    /// classifying, so that the packet's fields are dead during the rule search and the
    /// verifier's paths through the parser can merge there.
    #[inline(always)]
    pub fn record_class(&mut self, packet: &Packet) {
        let bytes = packet.len as u64;
        if let Some(counter) = self.l3.get_mut(packet.l3_index()) {
            counter.add(bytes);
        }
        if let Some(counter) = self.l4.get_mut(packet.l4_index()) {
            counter.add(bytes);
        }
        if packet.is_defective() {
            self.malformed.add(bytes);
        }
        if lacks_l4_header(packet) {
            self.no_l4.add(bytes);
        }
    }

    /// The half of [`Stats::record`] that needs only the verdict and its reason (a
    /// [`crate::rule::reason`] code).
    #[inline(always)]
    pub fn record_verdict(&mut self, len: u32, action: u32, reason: u8) {
        let bytes = len as u64;
        if let Some(counter) = self.action.get_mut(action as usize) {
            counter.add(bytes);
        }
        if reason == reason::RULE {
            self.matched.add(bytes);
        } else if let Some(counter) = self
            .dropped
            .get_mut((reason as usize).wrapping_sub(reason::FRAGMENT as usize))
        {
            counter.add(bytes);
        }
    }

    /// Every counter of the block, in layout order.
    pub fn counters(&self) -> impl Iterator<Item = &Counter> {
        self.action
            .iter()
            .chain(&self.l3)
            .chain(&self.l4)
            .chain([
                &self.malformed,
                &self.no_l4,
                &self.matched,
                &self.searched,
                &self.search_failed,
            ])
            .chain(&self.dropped)
    }

    fn counters_mut(&mut self) -> impl Iterator<Item = &mut Counter> {
        self.action
            .iter_mut()
            .chain(&mut self.l3)
            .chain(&mut self.l4)
            .chain([
                &mut self.malformed,
                &mut self.no_l4,
                &mut self.matched,
                &mut self.searched,
                &mut self.search_failed,
            ])
            .chain(&mut self.dropped)
    }

    /// Adds another block (another CPU's) into this one.
    pub fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.counters_mut().zip(other.counters()) {
            mine.merge(theirs);
        }
    }

    /// What was counted since `earlier`, a reading of the same counters.
    pub fn since(&self, earlier: &Stats) -> Stats {
        let mut delta = *self;
        for (now, before) in delta.counters_mut().zip(earlier.counters()) {
            now.packets = now.packets.wrapping_sub(before.packets);
            now.bytes = now.bytes.wrapping_sub(before.bytes);
        }
        delta
    }

    /// All packets seen: the sum over verdicts.
    pub fn total(&self) -> Counter {
        let mut total = Counter::default();
        for counter in &self.action {
            total.merge(counter);
        }
        total
    }
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]` arrays of `u64` pairs, no padding, every bit pattern valid.
unsafe impl aya::Pod for Stats {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_walks_every_counter_of_the_block() {
        let count = core::mem::size_of::<Stats>() / core::mem::size_of::<Counter>();
        let mut stats = Stats::default();
        assert_eq!(stats.counters().count(), count);
        assert_eq!(stats.counters_mut().count(), count);
    }
}
