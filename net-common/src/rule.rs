//! Filter rules, and the reference classifier: what a rule set means, in plain Rust.
//!
//! The kernel program answers the same question with per-field lookups and bitmaps (see
//! [`crate::filter`]); the tests hold it to [`classify`] on every packet.
//!
//! # Meaning
//! - A rule matches a packet when every field it names matches (AND). Rules are tried in
//!   order of priority (lower first), ties broken by id; the first match decides.
//! - A prefix matches packets of its own family whose address lies inside it; `any` matches
//!   every frame, IP or not. A protocol number matches IP packets with that (final) protocol;
//!   [`PROTO_ARP`] matches ARP frames.
//! - Ports match only a TCP or UDP header present in full; an ICMP type only an ICMP or
//!   ICMPv6 header present in full. So a packet without its L4 header (a later fragment, or a
//!   truncated or malformed one) never matches a rule that names ports or an ICMP type, while
//!   rules on addresses and protocol still apply to it.
//!   ARP's addresses are its sender and target IPv4 addresses.
//! - A defective packet ([`crate::parse::Defect`]: malformed, a tiny or overlapping fragment,
//!   an IPv6 chain with two fragment headers) is dropped before any rule is tried, unless
//!   [`Malformed::Policy`] says to classify it like any other (unsafe: see there).
//! - Well-formed neighbour traffic ([`Packet::neighbour`]: ARP, and neighbour discovery with
//!   hop limit 255) that no rule matches passes, whatever the policy: an allow-list cannot cut
//!   the host off its own network. Rules apply to it as to any other packet.
//! - A packet that no rule matches gets the default policy; with [`Fragments::Drop`], an IP
//!   packet without its L4 header is dropped instead.

use crate::{
    limit::Limit,
    parse::{Defect, Fragment, L3, Packet, Transport},
};

/// The most rules one interface holds.
pub const MAX_RULES: usize = 10_240;
/// Per-rule counter slots: while a new set is written, the old one keeps counting in its own
/// slots, so a set can be replaced by one with no rule in common.
pub const COUNTER_SLOTS: usize = 2 * MAX_RULES;

/// XDP_DROP and XDP_PASS, in the kernel's numbering.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
/// A rule's `limit` action: not an XDP action, the kernel decides pass or drop by the limit.
pub const LIMIT: u32 = 0x100;

/// `proto` of a rule that names no protocol.
pub const PROTO_ANY: u16 = 0xffff;
/// `proto` of a rule on ARP frames.
pub const PROTO_ARP: u16 = 0x100;
/// `icmp_type` of a rule that names no ICMP type.
pub const ICMP_TYPE_ANY: u16 = 0xffff;

/// What a rule, or the default policy, does with a packet.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Drop = XDP_DROP,
    Pass = XDP_PASS,
    /// Pass within the rule's rate limit ([`crate::limit`]), drop beyond it. Rules only.
    Limit = LIMIT,
}

impl Action {
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            XDP_DROP => Some(Self::Drop),
            XDP_PASS => Some(Self::Pass),
            LIMIT => Some(Self::Limit),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Pass => "pass",
            Self::Limit => "limit",
        }
    }
}

/// What happens to an IP packet without its L4 header that no rule matches.
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Fragments {
    /// The default policy decides, as for any other packet.
    #[default]
    Policy = 0,
    /// Dropped.
    Drop = 1,
}

impl Fragments {
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Policy),
            1 => Some(Self::Drop),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::Drop => "drop",
        }
    }
}

/// What happens to a defective packet ([`crate::parse::Defect`]). Drop is 0, so that a
/// configuration never written drops them.
#[repr(u32)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// Dropped before any rule is tried, and counted by defect.
    #[default]
    Drop = 0,
    /// Classified like any other packet. Unsafe: a tiny fragment carries no ports, so a rule
    /// on ports cannot drop it, and the datagram Linux reassembles from it gets past the rule.
    Policy = 1,
}

impl Malformed {
    pub fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Drop),
            1 => Some(Self::Policy),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Policy => "policy",
        }
    }
}

/// An address family, as a prefix names it, and as a packet's addresses have it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Any = 0,
    Ipv4 = 4,
    Ipv6 = 6,
}

/// An IPv4 or IPv6 prefix, or `any`. Host bits are always zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    /// [`Family`] as its `u8` value.
    pub family: u8,
    /// Prefix length in bits.
    pub len: u8,
    /// IPv4 in the first 4 bytes, the rest zero.
    pub addr: [u8; 16],
}

impl Prefix {
    pub const ANY: Prefix = Prefix {
        family: Family::Any as u8,
        len: 0,
        addr: [0; 16],
    };

    /// The prefix of `len` bits of `addr` (IPv4 in the first 4 bytes); host bits are cleared.
    /// `len` is capped at the family's width.
    pub fn new(family: Family, addr: [u8; 16], len: u8) -> Prefix {
        let len = len.min(family.bits());
        Prefix {
            family: family as u8,
            len,
            addr: mask(addr, len),
        }
    }

    pub fn family(&self) -> Family {
        match self.family {
            4 => Family::Ipv4,
            6 => Family::Ipv6,
            _ => Family::Any,
        }
    }

    pub fn is_any(&self) -> bool {
        self.family() == Family::Any
    }

    /// Whether `addr`, of this prefix's family, lies inside it.
    pub fn contains(&self, addr: &[u8; 16]) -> bool {
        mask(*addr, self.len) == self.addr
    }

    /// Whether every address of `other` lies inside this prefix (both of one family).
    pub fn covers(&self, other: &Prefix) -> bool {
        self.family == other.family && self.len <= other.len && self.contains(&other.addr)
    }

    /// Whether the packet's address `addr` matches: `any` always, a prefix only on a packet
    /// with addresses of its family.
    fn matches(&self, packet: &Packet, addr: &[u8; 16]) -> bool {
        match self.family() {
            Family::Any => true,
            family => family == packet.addr_family && self.contains(addr),
        }
    }
}

impl Family {
    /// Address width in bits (0 for `any`).
    pub fn bits(self) -> u8 {
        match self {
            Family::Any => 0,
            Family::Ipv4 => 32,
            Family::Ipv6 => 128,
        }
    }
}

/// An address's four 32-bit words as its bytes lie in memory (network order, read as native
/// words): for hashing it, and for kernel structures that hold addresses as words.
#[inline(always)]
pub fn address_words(addr: &[u8; 16]) -> [u32; 4] {
    let word = |at: usize| u32::from_ne_bytes([addr[at], addr[at + 1], addr[at + 2], addr[at + 3]]);
    [word(0), word(4), word(8), word(12)]
}

/// `addr` with every bit past the first `len` cleared. As two 64-bit words: the kernel
/// program masks keys with it, where sixteen bytes at once would spill to its small stack.
#[inline(always)]
pub fn mask(addr: [u8; 16], len: u8) -> [u8; 16] {
    let word = |bytes: &[u8]| {
        let mut word = [0; 8];
        word.copy_from_slice(bytes);
        u64::from_be_bytes(word)
    };
    // The bits of each word that `len` keeps: all for a shift of 64 or more, none for 0.
    let kept = |len: u32| !u64::MAX.checked_shr(len).unwrap_or(0);
    let len = len as u32;
    let high = word(&addr[..8]) & kept(len);
    let low = word(&addr[8..]) & kept(len.saturating_sub(64));
    let mut masked = [0; 16];
    masked[..8].copy_from_slice(&high.to_be_bytes());
    masked[8..].copy_from_slice(&low.to_be_bytes());
    masked
}

/// An inclusive range of ports; `0-65535` is "any port".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };

    pub fn is_any(&self) -> bool {
        *self == Self::ANY
    }

    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

/// What a rule matches on. Two rules with equal `Match` are duplicates.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Match {
    pub src: Prefix,
    pub dst: Prefix,
    /// An IP protocol number, [`PROTO_ARP`] or [`PROTO_ANY`].
    pub proto: u16,
    pub sport: PortRange,
    pub dport: PortRange,
    /// An ICMP or ICMPv6 type, or [`ICMP_TYPE_ANY`].
    pub icmp_type: u16,
}

impl Match {
    /// Matches every packet.
    pub const ANY: Match = Match {
        src: Prefix::ANY,
        dst: Prefix::ANY,
        proto: PROTO_ANY,
        sport: PortRange::ANY,
        dport: PortRange::ANY,
        icmp_type: ICMP_TYPE_ANY,
    };

    /// Whether this matches `packet`.
    pub fn matches(&self, packet: &Packet) -> bool {
        self.src.matches(packet, &packet.src)
            && self.dst.matches(packet, &packet.dst)
            && self.proto_matches(packet)
            && self.ports_match(packet)
            && self.icmp_type_matches(packet)
    }

    fn proto_matches(&self, packet: &Packet) -> bool {
        match self.proto {
            PROTO_ANY => true,
            PROTO_ARP => packet.l3 == L3::Arp,
            proto => is_ip(packet) && packet.ip_proto as u16 == proto,
        }
    }

    fn ports_match(&self, packet: &Packet) -> bool {
        if self.sport.is_any() && self.dport.is_any() {
            return true;
        }
        match packet.transport() {
            Transport::Ports { src, dst, .. } => {
                self.sport.contains(src) && self.dport.contains(dst)
            }
            _ => false,
        }
    }

    fn icmp_type_matches(&self, packet: &Packet) -> bool {
        if self.icmp_type == ICMP_TYPE_ANY {
            return true;
        }
        matches!(packet.transport(), Transport::Icmp { icmp_type, .. } if icmp_type as u16 == self.icmp_type)
    }
}

/// One rule as stored in the kernel's rule table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable, unique on its interface, never reused.
    pub id: u32,
    /// Lower wins.
    pub priority: u32,
    /// [`Action`] as its `u32` value.
    pub action: u32,
    /// The rule's entry in the per-rule counters, kept for the rule's life.
    pub counter_slot: u32,
    pub matches: Match,
    /// The rate limit of a `limit` rule; [`Limit::NONE`] for the others.
    pub limit: Limit,
}

impl Rule {
    pub fn action(&self) -> Action {
        Action::from_raw(self.action).unwrap_or(Action::Pass)
    }

    /// The order in which rules are tried.
    pub fn rank_key(&self) -> (u32, u32) {
        (self.priority, self.id)
    }
}

/// Per-rule counters, one copy per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleCounter {
    pub packets: u64,
    pub bytes: u64,
    /// CLOCK_MONOTONIC (coarse) nanoseconds of the last match; 0 if never.
    pub last_hit_ns: u64,
    /// Packets a `limit` rule dropped for going over its rate.
    pub limited: u64,
    /// Bans a `limit` rule issued.
    pub bans: u64,
}

impl RuleCounter {
    /// Adds another CPU's copy into this one.
    pub fn merge(&mut self, other: &RuleCounter) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
        self.last_hit_ns = self.last_hit_ns.max(other.last_hit_ns);
        self.limited = self.limited.wrapping_add(other.limited);
        self.bans = self.bans.wrapping_add(other.bans);
    }
}

/// Why a packet got its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The rule with this id matched.
    Rule(u32),
    /// No rule matched: the default policy.
    Policy,
    /// Well-formed ARP or neighbour discovery that no rule matched: passed.
    Neighbour,
    /// An IP packet without its L4 header that no rule matched, under [`Fragments::Drop`].
    Fragment,
    /// A defective packet, dropped before the rules under [`Malformed::Drop`].
    Defect(Defect),
    /// From a banned source: dropped before the rules ([`crate::ban`]).
    Ban,
    /// Over the rate of the `limit` rule with this id: dropped ([`crate::limit`]).
    Limit(u32),
}

/// [`Reason`] as a number, for the kernel's decisions, the drop counters and capture's
/// selection by reason: [`Reason::code`] indexes [`REASONS`].
pub mod reason {
    pub const RULE: u8 = 0;
    pub const POLICY: u8 = 1;
    pub const NEIGHBOUR: u8 = 2;
    pub const FRAGMENT: u8 = 3;
    /// Plus the [`crate::parse::Defect`]: 4 to 7.
    pub const DEFECT: u8 = 3;
    pub const BAN: u8 = 8;
    pub const LIMIT: u8 = 9;
    /// An ACK to a port the SYN-flood guard holds whose cookie is not valid.
    pub const SYNGUARD: u8 = 10;
}

/// Every reason's name, by code: as `stats --json`, `serve` and `capture --reason` spell it.
pub const REASONS: [&str; 11] = [
    "rule",
    "policy",
    "neighbour",
    "fragment",
    "malformed",
    "tiny_fragment",
    "overlap_fragment",
    "ipv6_chain",
    "ban",
    "limit",
    "syn_cookie",
];

impl Reason {
    pub fn code(&self) -> u8 {
        match self {
            Reason::Rule(_) => reason::RULE,
            Reason::Policy => reason::POLICY,
            Reason::Neighbour => reason::NEIGHBOUR,
            Reason::Fragment => reason::FRAGMENT,
            Reason::Defect(defect) => reason::DEFECT + *defect as u8,
            Reason::Ban => reason::BAN,
            Reason::Limit(_) => reason::LIMIT,
        }
    }
}

/// A verdict and its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    pub reason: Reason,
}

/// Whether the packet is IPv4 or IPv6.
pub fn is_ip(packet: &Packet) -> bool {
    matches!(packet.l3, L3::Ipv4 | L3::Ipv6)
}

/// Whether the packet is IP but its L4 header is missing: a later fragment, or a defective
/// packet.
pub fn lacks_l4_header(packet: &Packet) -> bool {
    is_ip(packet) && (packet.fragment == Fragment::Later || packet.is_defective())
}

/// The reference classifier. `rules` must be in rank order ([`Rule::rank_key`]).
pub fn classify(
    rules: &[Rule],
    policy: Action,
    fragments: Fragments,
    malformed: Malformed,
    packet: &Packet,
) -> Verdict {
    if malformed == Malformed::Drop && packet.is_defective() {
        return Verdict {
            action: Action::Drop,
            reason: Reason::Defect(packet.defect),
        };
    }
    if let Some(rule) = rules.iter().find(|rule| rule.matches.matches(packet)) {
        return Verdict {
            action: rule.action(),
            reason: Reason::Rule(rule.id),
        };
    }
    if packet.neighbour {
        Verdict {
            action: Action::Pass,
            reason: Reason::Neighbour,
        }
    } else if fragments == Fragments::Drop && lacks_l4_header(packet) {
        Verdict {
            action: Action::Drop,
            reason: Reason::Fragment,
        }
    } else {
        Verdict {
            action: policy,
            reason: Reason::Policy,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`, 4 x u32 then `Match` (2 x 18-byte prefixes, u16, 2 x 2 x u16, u16:
// 48 bytes at offset 16, 2-aligned), then `Limit` (56 bytes at offset 64, 8-aligned): 120
// bytes, no padding, every bit pattern valid.
unsafe impl aya::Pod for Rule {}

#[cfg(feature = "user")]
// SAFETY: five u64, no padding.
unsafe impl aya::Pod for RuleCounter {}
