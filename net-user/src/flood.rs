//! A flood generator, for the benchmarks and the soak test: the kernel's own. BPF_PROG_TEST_RUN
//! in live-frames mode runs an XDP_TX program (`flood_spoof`, which writes a random IPv4
//! source into every copy, or `flood_fixed`) on one end of a veth pair, which sends every copy
//! of the frame to the other end, synchronously, on the calling CPU: the receiving end's XDP
//! program runs there too.
//!
//! Frames go to a MAC address that is not the receiver's ([`OTHER_HOST_MAC`]), so that what
//! the receiver passes is dropped by the stack (`PACKET_OTHERHOST`) and nothing is routed.

use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd};

use anyhow::{Context as _, Result};
use aya::{Ebpf, maps::Array, programs::Xdp};
use net_common::{FLOOD_TEMPLATE_LEN, checksum::internet_checksum, names};

use crate::{
    bpf_syscall::{BPF_PROG_TEST_RUN, TestRunAttr, bpf},
    program,
};

/// Not a receiver's MAC: passed frames die in the stack as `PACKET_OTHERHOST`.
pub const OTHER_HOST_MAC: [u8; 6] = [0x02, 0x4e, 0x58, 0xff, 0xff, 0x09];
/// Live frames the kernel sends per batch.
const BATCH: u32 = 64;

/// The object loaded for its generators (and the drop floor), with no flow table.
pub struct Generators {
    ebpf: Ebpf,
}

impl Generators {
    pub fn load() -> Result<Self> {
        let no_flows = program::Options {
            flows: program::Flows::Off,
            ..Default::default()
        };
        let mut ebpf = program::load(None, no_flows)?;
        for name in [
            names::FLOOD_FIXED,
            names::FLOOD_SPOOF,
            names::FLOOD_REWRITTEN,
            names::DROP_FLOOR,
        ] {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("the object has no program named {name}"))?
                .try_into()?;
            program.load().with_context(|| format!("loading {name}"))?;
        }
        Ok(Self { ebpf })
    }

    /// The generator: with a random IPv4 source in every copy (`spoofed`), or the frame as
    /// it is.
    pub fn generator(&self, spoofed: bool) -> Result<BorrowedFd<'_>> {
        self.program_fd(if spoofed {
            names::FLOOD_SPOOF
        } else {
            names::FLOOD_FIXED
        })
    }

    /// The generator that writes `frame` ([`FLOOD_TEMPLATE_LEN`] bytes) into every copy, for
    /// a receiver that rewrites the frames it is sent.
    pub fn rewriting(&mut self, frame: &[u8]) -> Result<BorrowedFd<'_>> {
        let template: [u8; FLOOD_TEMPLATE_LEN] = frame.try_into().with_context(|| {
            format!(
                "a rewritten flood's frame is {FLOOD_TEMPLATE_LEN} bytes, not {}",
                frame.len()
            )
        })?;
        let map = self
            .ebpf
            .map_mut(names::FLOOD_TEMPLATE_MAP)
            .with_context(|| {
                format!("the object has no map named {}", names::FLOOD_TEMPLATE_MAP)
            })?;
        Array::<_, [u8; FLOOD_TEMPLATE_LEN]>::try_from(map)?
            .set(0, template, 0)
            .context("writing the flood's template frame")?;
        self.program_fd(names::FLOOD_REWRITTEN)
    }

    pub fn program_fd(&self, name: &str) -> Result<BorrowedFd<'_>> {
        let program: &Xdp = self
            .ebpf
            .program(name)
            .with_context(|| format!("the object has no program named {name}"))?
            .try_into()?;
        Ok(program
            .fd()
            .with_context(|| format!("{name} is not loaded"))?
            .as_fd())
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

/// A 64-byte UDP/IPv4 frame from 198.18.0.2:40000 to 198.18.0.1:`dport` (the spoofing
/// generator rewrites the source), addressed to [`OTHER_HOST_MAC`].
pub fn frame(dport: u16) -> Vec<u8> {
    const PAYLOAD: usize = 22;
    let udp_len = 8 + PAYLOAD;
    let ip_len = 20 + udp_len;
    let mut frame = Vec::with_capacity(14 + ip_len);
    frame.extend_from_slice(&OTHER_HOST_MAC);
    frame.extend_from_slice(&[0x02, 0x4e, 0x58, 0x00, 0x00, 0x02]);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 18, 0, 2]);
    ip[16..20].copy_from_slice(&[198, 18, 0, 1]);
    let checksum = internet_checksum(&ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&40_000u16.to_be_bytes());
    frame.extend_from_slice(&dport.to_be_bytes());
    frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
    // No UDP checksum (0: none, which IPv4 allows).
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(&[0; PAYLOAD]);
    frame
}

/// `struct xdp_md` as BPF_PROG_TEST_RUN takes it: the frame's length (no metadata before it)
/// and the interface it arrived on.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// One BPF_PROG_TEST_RUN of `generator` in live-frames mode: `count` copies of `frame` sent
/// from the interface `ifindex` (of this thread's network namespace), on this thread's CPU.
pub fn live_frames(
    generator: BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
    count: u32,
) -> std::io::Result<()> {
    let ctx = XdpMd {
        data_end: frame.len() as u32,
        ingress_ifindex: ifindex,
        ..XdpMd::default()
    };
    let mut attr = TestRunAttr {
        prog_fd: generator.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat: count,
        ctx_size_in: size_of::<XdpMd>() as u32,
        ctx_in: (&raw const ctx) as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size: BATCH,
        ..TestRunAttr::default()
    };
    // SAFETY: the kernel reads `frame` and `ctx` (borrowed for the call) and writes only into
    // `attr`.
    unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) }.map(|_| ())
}

#[cfg(test)]
mod tests {
    use net_common::testing::FrameSpec;

    use super::*;

    #[test]
    fn the_flood_frame_is_the_test_frame_to_another_host() {
        let mut expected = FrameSpec::ipv4_udp(40_000, 1500, 22).build();
        expected[..6].copy_from_slice(&OTHER_HOST_MAC);
        assert_eq!(frame(1500), expected);
    }
}
