//! [`Frame`] over the live packet, for net-common's parser.

use aya_ebpf::programs::XdpContext;
use net_common::frame::Frame;

/// The packet between `data` and `data_end`.
pub struct XdpFrame {
    start: usize,
    end: usize,
}

impl XdpFrame {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }
}

impl Frame for XdpFrame {
    #[inline(always)]
    fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        // The verifier accepts a packet read only after comparing the pointer it reads
        // through against data_end, so the check is written on pointers, not lengths.
        let at = self.start + offset;
        if at + N > self.end {
            return None;
        }
        // SAFETY: [at, at + N) lies within the packet, as just checked.
        Some(unsafe { core::ptr::read_unaligned(at as *const [u8; N]) })
    }
}
