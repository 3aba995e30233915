//! Packet capture: what `netxdp capture` asks the XDP program to copy out, and the records the
//! program writes to the capture ring buffer.
//!
//! While no capture runs, [`CaptureConfig::active`] is 0 and the program's only capture work
//! is reading that one word. A capture writes the config whole; the program then copies
//! each packet it selects (by action, by rule, one in `sample`) into the ring buffer as a
//! [`CaptureHeader`] followed by the first `captured_len` bytes of the frame.
//!
//! A capture holds a lease: its reader keeps moving [`CaptureConfig::expires_ns`] on, and the
//! program copies nothing once the lease has run out. A reader that dies (killed, in any pid
//! namespace) or stops costs the kernel a clock read per packet once its lease (a second) is
//! over, and the next capture takes over then: no process ids are compared.

/// At most this many bytes of a packet are copied: more than any frame XDP sees in native
/// mode (a frame fits in one 4 KiB page there), and a generous snapshot of the rare larger
/// ones that skb mode hands over.
pub const MAX_SNAPLEN: u32 = 16_384;

/// Bytes of the capture ring buffer: a power of two pages, shared by every CPU. It holds
/// about 2,700 full-size 1,500-byte frames, or 40,000 minimal ones, between two reads.
pub const RING_BYTES: u32 = 4 << 20;

/// The single value of the `CAPTURE` array map: the running capture's selection. Written
/// whole by userspace; the program reads it on every packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureConfig {
    /// 0: no capture runs. Otherwise the session number, different for each capture, so
    /// that the per-CPU sampling state restarts with a new capture.
    pub active: u32,
    /// The XDP actions captured, as a bit set: bit `action` (1 << XDP_DROP, ...).
    pub actions: u32,
    /// Only packets this rule decided; 0 for any (rule ids start at 1).
    pub rule_id: u32,
    /// The verdict reasons captured ([`crate::rule::reason`] codes), as a bit set.
    pub reasons: u32,
    /// Bytes copied of each packet, 1..=[`MAX_SNAPLEN`].
    pub snaplen: u32,
    /// One selected packet in `sample` is copied; 1 copies them all.
    pub sample: u32,
    /// The process that runs the capture, as its own pid namespace numbers it: for
    /// messages only.
    pub owner_pid: u32,
    /// 1 when the capture has an expression: its program is in slot [`FILTER_SLOT`] of the
    /// capture's program array, and decides whether a selected packet is copied.
    pub filtered: u32,
    /// CLOCK_MONOTONIC nanoseconds at which the lease runs out, unless renewed.
    pub expires_ns: u64,
}

impl CaptureConfig {
    /// Whether a capture runs and its lease has not run out at `now_ns`.
    #[inline(always)]
    pub fn leased_at(&self, now_ns: u64) -> bool {
        self.active != 0 && now_ns < self.expires_ns
    }

    /// Whether the running capture selects a packet of `action` decided by `rule_id` for
    /// `reason`.
    #[inline(always)]
    pub fn selects(&self, action: u32, rule_id: u32, reason: u8) -> bool {
        action < 32
            && self.actions & (1 << action) != 0
            && (self.rule_id == 0 || self.rule_id == rule_id)
            && reason < 32
            && self.reasons & (1 << reason) != 0
    }
}

/// The capture's program array (`CAPTURE_PROGS`): the expression's program, which
/// `netxdp capture` puts in and takes out, ...
pub const FILTER_SLOT: u32 = 0;
/// ... and the program that copies a packet the expression matched, put in at attach.
pub const COPY_SLOT: u32 = 1;

/// The decision a packet got, stashed per CPU (the `DECISION` map) for the programs the
/// XDP program tail-calls after deciding: the SYN-flood guard's, and a capture expression's
/// and the copy program after it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The XDP action: what a tail-called program returns unless it changes the verdict.
    pub action: u32,
    /// The rule that decided; 0 for none.
    pub rule_id: u32,
    /// A [`crate::rule::reason`] code.
    pub reason: u32,
    /// [`EXPRESSION_LOOP_BUDGET`], always: a bound the translated expression reads at run
    /// time, where the verifier cannot see it. Seen, it would make the verifier walk every
    /// round of every loop apart, which a few `protochain`s in one expression exhaust.
    pub loop_budget: u32,
}

/// Backward jumps a capture expression may take per packet: `ip6 protochain` follows a
/// chain of up to this many extension headers (a longer chain does not match).
pub const EXPRESSION_LOOP_BUDGET: u32 = 64;

/// Where [`Decision::action`] is, for the translated expression that reads it.
pub const DECISION_ACTION_OFFSET: usize = core::mem::offset_of!(Decision, action);
/// Where [`Decision::loop_budget`] is.
pub const DECISION_LOOP_BUDGET_OFFSET: usize = core::mem::offset_of!(Decision, loop_budget);

/// Per-CPU capture counters and sampling state (the `CAPTURE_STATS` per-CPU array). The
/// counters run from attach, across captures: each capture reports what they gained while
/// it ran, and `netxdp serve` exports them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureCounters {
    /// Packets the running capture selected (before sampling).
    pub selected: u64,
    /// Packets copied to the ring buffer.
    pub captured: u64,
    /// Packets that sampling chose but the ring buffer had no room for: the kernel's drops.
    pub lost: u64,
    /// The session the sampling state belongs to ([`CaptureConfig::active`]).
    pub session: u32,
    /// Selected packets to skip before the next copy.
    pub countdown: u32,
}

impl CaptureCounters {
    /// Counts a selected packet; whether sampling copies it (one in `sample`, the first of
    /// a session included).
    #[inline(always)]
    pub fn sample(&mut self, session: u32, sample: u32) -> bool {
        self.selected += 1;
        if self.session != session {
            self.session = session;
            self.countdown = 0;
        }
        if self.countdown == 0 {
            self.countdown = sample.saturating_sub(1);
            true
        } else {
            self.countdown -= 1;
            false
        }
    }

    /// Sums CPUs' counters (the sampling state is per CPU and not summed).
    pub fn total<'a>(per_cpu: impl IntoIterator<Item = &'a CaptureCounters>) -> CaptureCounters {
        per_cpu
            .into_iter()
            .fold(CaptureCounters::default(), |sum, cpu| CaptureCounters {
                selected: sum.selected + cpu.selected,
                captured: sum.captured + cpu.captured,
                lost: sum.lost + cpu.lost,
                ..sum
            })
    }
}

/// What precedes each packet's bytes in the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureHeader {
    /// CLOCK_MONOTONIC nanoseconds when the program saw the packet.
    pub timestamp_ns: u64,
    /// The interface the packet arrived on.
    pub ifindex: u32,
    /// The frame's length on the wire (as XDP sees it).
    pub original_len: u32,
    /// Bytes that follow this header: min(original_len, snaplen).
    pub captured_len: u32,
    /// The XDP action the program returned for it.
    pub action: u32,
    /// The rule that decided it; 0 for the default policy.
    pub rule_id: u32,
    /// Why it got its action: a [`crate::rule::reason`] code.
    pub reason: u32,
}

impl CaptureHeader {
    /// Splits a ring-buffer record into its header and packet bytes; `None` when the record
    /// is shorter than it says.
    pub fn parse(record: &[u8]) -> Option<(CaptureHeader, &[u8])> {
        let header = record.get(..size_of::<CaptureHeader>())?;
        // SAFETY: `header` holds size_of::<CaptureHeader>() bytes, and every bit pattern is a
        // valid CaptureHeader (plain integers); read_unaligned copes with any alignment.
        let header = unsafe { core::ptr::read_unaligned(header.as_ptr().cast::<CaptureHeader>()) };
        let data = record
            .get(size_of::<CaptureHeader>()..)?
            .get(..header.captured_len as usize)?;
        Some((header, data))
    }
}

/// The per-CPU scratch the program assembles a record in before copying it to the ring
/// buffer in one piece (the ring's reservations must have a size fixed at load).
#[repr(C)]
pub struct CaptureRecord {
    pub header: CaptureHeader,
    pub data: [u8; MAX_SNAPLEN as usize],
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: `#[repr(C)]` integers with no padding (CaptureConfig: 8 x 4 + 8 = 40 bytes;
    // CaptureCounters: 3 x 8 + 2 x 4 = 32 bytes); every bit pattern valid.
    unsafe impl aya::Pod for CaptureConfig {}
    unsafe impl aya::Pod for CaptureCounters {}
    // SAFETY: `#[repr(C)]`, four u32s, no padding; every bit pattern valid.
    unsafe impl aya::Pod for Decision {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_copies_the_first_then_one_in_n_and_restarts_each_session() {
        let mut counters = CaptureCounters::default();
        let copied: u32 = (0..100).map(|_| counters.sample(1, 10) as u32).sum();
        assert_eq!(copied, 10);
        assert_eq!(counters.selected, 100);
        assert!(counters.sample(2, 10), "a new session starts with a copy");
        assert!(!counters.sample(2, 10));
        let mut all = CaptureCounters::default();
        assert!((0..5).all(|_| all.sample(1, 1)));
        assert!(all.sample(1, 0), "0 is taken as 1");
        assert!(all.sample(1, 0));
    }

    #[test]
    fn selection_by_action_rule_and_reason() {
        use crate::rule::reason;
        let config = CaptureConfig {
            active: 1,
            actions: 1 << 1,
            rule_id: 7,
            reasons: u32::MAX,
            snaplen: 64,
            sample: 1,
            owner_pid: 1,
            filtered: 0,
            expires_ns: 10,
        };
        assert!(config.selects(1, 7, reason::RULE));
        assert!(!config.selects(1, 8, reason::RULE));
        assert!(!config.selects(2, 7, reason::RULE));
        assert!(!config.selects(40, 7, reason::RULE));
        let any_rule = CaptureConfig {
            rule_id: 0,
            ..config
        };
        assert!(any_rule.selects(1, 0, reason::POLICY));
        let tiny = reason::DEFECT + crate::parse::Defect::TinyFragment as u8;
        let tiny_only = CaptureConfig {
            reasons: 1 << tiny,
            ..any_rule
        };
        assert!(tiny_only.selects(1, 0, tiny));
        assert!(!tiny_only.selects(1, 0, reason::POLICY));
        assert!(!tiny_only.selects(1, 0, 40));
    }

    #[test]
    fn a_lease_holds_until_it_expires_and_only_while_a_capture_runs() {
        let running = CaptureConfig {
            active: 3,
            expires_ns: 1_000,
            ..CaptureConfig::default()
        };
        assert!(running.leased_at(999));
        assert!(!running.leased_at(1_000));
        assert!(
            !CaptureConfig {
                active: 0,
                ..running
            }
            .leased_at(0)
        );
    }

    #[test]
    fn records_parse_back() {
        let header = CaptureHeader {
            timestamp_ns: 5,
            ifindex: 3,
            original_len: 100,
            captured_len: 4,
            action: 1,
            rule_id: 2,
            reason: 0,
        };
        let mut record = [0u8; size_of::<CaptureHeader>() + 6];
        // SAFETY: the record has room for the header.
        unsafe { core::ptr::write_unaligned(record.as_mut_ptr().cast(), header) };
        record[32..36].copy_from_slice(b"abcd");
        let (parsed, data) = CaptureHeader::parse(&record).expect("record");
        assert_eq!(parsed, header);
        assert_eq!(data, b"abcd");
        assert!(CaptureHeader::parse(&record[..20]).is_none());
        assert!(CaptureHeader::parse(&record[..34]).is_none());
    }
}
