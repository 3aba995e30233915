//! The SYN-flood guard: SYNs to the guarded ports are answered from XDP with a SYN cookie
//! (the kernel's own, from `bpf_tcp_gen_syncookie` on the listening socket), so that the
//! stack never queues a half-open connection; the ACK that returns is checked against the
//! cookie (`bpf_tcp_check_syncookie`) and passed to the stack, which accepts it as a cookie
//! of its own.

/// TCP flags, as the header's 14th byte holds them.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// Ports the guard answers for, one bit each, and whether it is on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynGuard {
    /// 1 when some port is guarded.
    pub enabled: u32,
    pub _pad: u32,
    /// Bit `port % 64` of word `port / 64`.
    pub ports: [u64; 1024],
}

impl Default for SynGuard {
    fn default() -> Self {
        Self {
            enabled: 0,
            _pad: 0,
            ports: [0; 1024],
        }
    }
}

impl SynGuard {
    #[inline(always)]
    pub fn guards(&self, port: u16) -> bool {
        self.ports[(port >> 6) as usize] >> (port & 63) & 1 != 0
    }

    pub fn guard(&mut self, port: u16) {
        self.ports[(port >> 6) as usize] |= 1 << (port & 63);
        self.enabled = 1;
    }

    /// The guarded ports, in order.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|port| self.guards(*port))
    }
}

/// What the guard did, one copy per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynGuardCounters {
    /// SYNs answered with a cookie (XDP_TX).
    pub cookies: u64,
    /// ACKs to a listener that carried a valid cookie: passed.
    pub acks_valid: u64,
    /// ACKs to a listener whose cookie was not valid: dropped.
    pub acks_invalid: u64,
    /// SYNs to a guarded port with no listener, or that the guard could not answer (options
    /// it does not handle): left to the stack.
    pub unanswered: u64,
}

impl SynGuardCounters {
    pub fn merge(&mut self, other: &SynGuardCounters) {
        self.cookies = self.cookies.wrapping_add(other.cookies);
        self.acks_valid = self.acks_valid.wrapping_add(other.acks_valid);
        self.acks_invalid = self.acks_invalid.wrapping_add(other.acks_invalid);
        self.unanswered = self.unanswered.wrapping_add(other.unanswered);
    }
}

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]`: two u32 and 1,024 u64, no padding; every bit pattern valid.
unsafe impl aya::Pod for SynGuard {}

#[cfg(feature = "user")]
// SAFETY: four u64, no padding.
unsafe impl aya::Pod for SynGuardCounters {}
