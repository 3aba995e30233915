//! Shared ground between the netxdp XDP program (`net-ebpf`) and its loader (`net-user`).
//!
//! - [`frame`]: the one way the parser reads bytes, implemented over a slice here and over
//!   the XDP context in the kernel.
//! - [`parse`]: the packet parser. Its meaning lives here once: the kernel program runs this
//!   very code, and the host tests exercise it as the reference.
//! - [`stats`]: the `#[repr(C)]` counter block the kernel fills and userspace reads.
//! - [`rule`]: filter rules, and the reference classifier that says what a rule set means.
//! - [`filter`]: the layout of a rule set in the kernel's maps (bitmaps, generations).
//! - [`flow`]: the flow table's key and counters.
//! - [`source`]: the source table, packets by source prefix in fixed per-CPU slots.
//! - [`capture`]: what a capture selects, and the records it copies out.
//! - [`info`]: the `#[repr(C)]` record of how an interface was attached.
//!
//! ```
//! use net_common::{frame::SliceFrame, parse::{parse, L3, L4}};
//!
//! // An Ethernet + IPv4 + UDP frame, 42 bytes, no payload.
//! let mut frame = [0u8; 42];
//! frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
//! frame[14] = 0x45; // version 4, 20-byte header
//! frame[16..18].copy_from_slice(&28u16.to_be_bytes()); // total length
//! frame[23] = 17; // UDP
//! frame[34..36].copy_from_slice(&5353u16.to_be_bytes());
//! frame[36..38].copy_from_slice(&53u16.to_be_bytes());
//!
//! let packet = parse(&SliceFrame::new(&frame));
//! assert_eq!((packet.l3, packet.l4), (L3::Ipv4, L4::Udp));
//! assert_eq!(packet.ports(), Some((5353, 53)));
//! assert!(!packet.is_defective());
//! ```
#![no_std]

#[cfg(feature = "testing")]
extern crate alloc;

/// The length of the frame the `flood_rewritten` generator sends: a TCP segment without
/// options or payload over IPv4, untagged.
pub const FLOOD_TEMPLATE_LEN: usize = 54;

pub mod ban;
pub mod capture;
pub mod checksum;
#[cfg(feature = "testing")]
pub mod classbench;
pub mod filter;
pub mod flow;
pub mod frame;
pub mod info;
pub mod limit;
pub mod parse;
pub mod rule;
#[cfg(feature = "testing")]
pub mod rulegen;
pub mod source;
pub mod stats;
pub mod synguard;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tree;

/// Names shared by the loader and the object file: the program, and the maps as pinned.
pub mod names {
    /// The XDP program's function name in the object file.
    pub const PROGRAM: &str = "netxdp";
    /// Banned IPv4 and IPv6 sources ([`crate::ban::BanEntry`] by prefix).
    pub const BANS_V4_MAP: &str = "BANS_V4";
    pub const BANS_V6_MAP: &str = "BANS_V6";
    /// The entries of both ban tries: 0 spares every packet the lookups.
    pub const BAN_COUNT_MAP: &str = "BAN_COUNT";
    /// Rate-limit state by address or prefix ([`crate::limit::LimitKey`] to a TAT), LRU.
    pub const LIMITS_MAP: &str = "LIMITS";
    /// Rate-limit state by flow ([`crate::limit::FlowLimitKey`] to a TAT), LRU.
    pub const LIMIT_FLOWS_MAP: &str = "LIMIT_FLOWS";
    /// Each limit rule's own buckets, by counter slot ([`crate::limit::LimitSlot`]).
    pub const LIMIT_SLOTS_MAP: &str = "LIMIT_SLOTS";
    /// Rate-limit keys' last uses ([`crate::limit::RecentLine`]), by a hash of the key.
    pub const LIMIT_RECENT_MAP: &str = "LIMIT_RECENT";
    /// The read-only global that makes the coarse clock read [`TEST_NOW_MAP`] (tests only).
    pub const TEST_CLOCK: &str = "TEST_CLOCK";
    /// The time the coarse clock reads under [`TEST_CLOCK`], in ns.
    pub const TEST_NOW_MAP: &str = "TEST_NOW";
    /// The SYN-flood guard's ports ([`crate::synguard::SynGuard`]).
    pub const SYNGUARD_MAP: &str = "SYNGUARD";
    /// Its per-CPU counters ([`crate::synguard::SynGuardCounters`]).
    pub const SYNGUARD_STATS_MAP: &str = "SYNGUARD_STATS";
    /// The guard's program, tail-called by [`PROGRAM`] through [`SYNGUARD_PROGRAM_MAP`].
    pub const SYNGUARD_PROGRAM: &str = "netxdp_synguard";
    pub const SYNGUARD_PROGRAM_MAP: &str = "SYNGUARD_PROG";
    /// The flow table ([`crate::flow::FlowKey`] to per-CPU [`crate::flow::FlowStats`]).
    pub const FLOWS_MAP: &str = "FLOWS";
    /// The source table (per-CPU [`crate::source::SourceSlot`]s).
    pub const SOURCES_MAP: &str = "SOURCES";
    /// Per-CPU [`crate::flow::FlowSlot`]s: tracked flows' hashes and first packets.
    pub const FLOW_SLOTS_MAP: &str = "FLOW_SLOTS";
    /// The read-only global that switches flow tracking on (1) or off (0) at load.
    pub const FLOWS_ENABLED: &str = "FLOWS_ENABLED";
    /// The full rule search, tail-called by [`PROGRAM`] through [`SEARCH_MAP`].
    pub const SEARCH_PROGRAM: &str = "netxdp_search";
    /// The program array holding [`SEARCH_PROGRAM`].
    pub const SEARCH_MAP: &str = "SEARCH";
    /// A program that only returns XDP_PASS: the benchmarks' floor.
    pub const PASS_FLOOR: &str = "pass_floor";
    /// A program that only returns XDP_DROP: the flood benchmark's receiving floor.
    pub const DROP_FLOOR: &str = "drop_floor";
    /// Flood generators (XDP_TX in live-frames mode): the frame as it is, and with a random
    /// IPv4 source in every copy.
    pub const FLOOD_FIXED: &str = "flood_fixed";
    pub const FLOOD_SPOOF: &str = "flood_spoof";
    pub const FLOOD_REWRITTEN: &str = "flood_rewritten";
    /// The frame `flood_rewritten` writes into every copy ([`crate::FLOOD_TEMPLATE_LEN`] bytes).
    pub const FLOOD_TEMPLATE_MAP: &str = "FLOOD_TEMPLATE";
    /// The read-only global that builds the capture path in (1, the default) or out (0, for
    /// the benchmarks' "before capture" program).
    pub const CAPTURE_ENABLED: &str = "CAPTURE_ENABLED";
    /// The running capture's selection ([`crate::capture::CaptureConfig`]).
    pub const CAPTURE_MAP: &str = "CAPTURE";
    /// Per-CPU capture counters ([`crate::capture::CaptureCounters`]).
    pub const CAPTURE_STATS_MAP: &str = "CAPTURE_STATS";
    /// The capture's program array ([`crate::capture::FILTER_SLOT`],
    /// [`crate::capture::COPY_SLOT`]).
    pub const CAPTURE_PROGRAMS_MAP: &str = "CAPTURE_PROGS";
    /// The program that copies a packet a capture expression matched.
    pub const CAPTURE_COPY_PROGRAM: &str = "netxdp_capture";
    /// The decision stashed per CPU for tail-called programs ([`crate::capture::Decision`]).
    pub const DECISION_MAP: &str = "DECISION";
    /// The ring buffer captured packets are copied to.
    pub const CAPTURE_RING_MAP: &str = "CAPTURE_RING";
    /// The per-CPU counter block ([`crate::stats::Stats`]).
    pub const STATS_MAP: &str = "STATS";
    /// The attach record ([`crate::info::AttachInfo`]).
    pub const INFO_MAP: &str = "INFO";
    /// The active generation ([`crate::filter::FilterState`]).
    pub const FILTER_STATE_MAP: &str = "FILTER_STATE";
    /// Per-generation settings ([`crate::filter::FilterConfig`]).
    pub const FILTER_CONFIG_MAP: &str = "FILTER_CONFIG";
    /// Per-generation rule tables, by rank ([`crate::rule::Rule`]).
    pub const RULES_MAP: &str = "RULES";
    /// Per-rule per-CPU counters, by counter slot ([`crate::rule::RuleCounter`]).
    pub const RULE_COUNTERS_MAP: &str = "RULE_COUNTERS";
    pub const SRC_V4_MAP: &str = "SRC_V4";
    pub const DST_V4_MAP: &str = "DST_V4";
    pub const SRC_V6_MAP: &str = "SRC_V6";
    pub const DST_V6_MAP: &str = "DST_V6";
    pub const BITMAPS_MAP: &str = "BITMAPS";
    pub const HOSTS_V4_MAP: &str = "HOSTS_V4";
    pub const HOSTS_V6_MAP: &str = "HOSTS_V6";
    pub const NET_BLOCKS_MAP: &str = "NET_BLOCKS";
    pub const PORT_INTERVALS_MAP: &str = "PORT_INTERVALS";
    pub const PORT_BITMAPS_MAP: &str = "PORT_BITMAPS";
    /// Per-generation rule boxes, by rank ([`crate::tree::RuleBox`]).
    pub const RULE_BOXES_MAP: &str = "RULE_BOXES";
    /// Per-generation decision-tree nodes ([`crate::tree::TreeNode`]).
    pub const TREE_NODES_MAP: &str = "TREE_NODES";
    /// Per-generation leaf ranks of the decision trees.
    pub const LEAF_RANKS_MAP: &str = "LEAF_RANKS";
    /// Every map of the filter: a rule set and its counters.
    pub const FILTER_MAPS: [&str; 17] = [
        FILTER_STATE_MAP,
        FILTER_CONFIG_MAP,
        RULES_MAP,
        RULE_COUNTERS_MAP,
        SRC_V4_MAP,
        DST_V4_MAP,
        SRC_V6_MAP,
        DST_V6_MAP,
        BITMAPS_MAP,
        HOSTS_V4_MAP,
        HOSTS_V6_MAP,
        NET_BLOCKS_MAP,
        PORT_INTERVALS_MAP,
        PORT_BITMAPS_MAP,
        RULE_BOXES_MAP,
        TREE_NODES_MAP,
        LEAF_RANKS_MAP,
    ];
}
