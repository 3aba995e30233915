//! Seeded random frames: well-formed ones of every kind, and the same mutated, evaded or
//! damaged.

use alloc::vec::Vec;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checksum::internet_checksum;
use crate::parse::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6};

use super::*;

/// A seeded source of frames: well-formed ones of every kind the parser knows, and the same
/// mutated (bytes flipped, lengths lied about, truncated) or replaced by noise.
pub struct FrameGenerator {
    rng: ChaCha8Rng,
}

impl FrameGenerator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next frame: about half well-formed, the rest mutated, truncated or noise (see
    /// [`damage`]), and now and then an IP datagram cut short (see [`evade`]). Always 14 to
    /// 1518 bytes.
    pub fn next_frame(&mut self) -> Vec<u8> {
        let frame = self.spec().build();
        let frame = evade(&mut self.rng, frame);
        damage(&mut self.rng, frame, 4)
    }

    /// A random well-formed description.
    pub fn spec(&mut self) -> FrameSpec {
        let rng = &mut self.rng;
        let vlans = (0..rng.random_range(0..=3))
            .map(|_| {
                if rng.random_bool(0.7) {
                    ETH_P_8021Q
                } else {
                    ETH_P_8021AD
                }
            })
            .collect();
        let body = match rng.random_range(0..10) {
            0 => Body::Arp,
            1 => Body::Other {
                ethertype: 0x88cc,
                payload: rng.random_range(0..64),
            },
            2..=5 => Body::Ipv4 {
                src: rng.random(),
                dst: rng.random(),
                fragment: match rng.random_range(0..7) {
                    0 => 0x2000,
                    1 => rng.random_range(1..0x2000) | if rng.random() { 0x2000 } else { 0 },
                    2 => 0x4000,                                    // don't fragment
                    3 => 1 | if rng.random() { 0x2000 } else { 0 }, // offset 1 (RFC 3128)
                    _ => 0,
                },
                option_words: if rng.random_bool(0.2) {
                    rng.random_range(1..=10)
                } else {
                    0
                },
                transport: random_transport(rng, false),
            },
            _ => Body::Ipv6 {
                src: rng.random(),
                dst: rng.random(),
                extensions: (0..random_chain_length(rng))
                    .map(|_| random_extension(rng))
                    .collect(),
                transport: random_transport(rng, true),
            },
        };
        FrameSpec { vlans, body }
    }
}

/// `frame`, one time in ten, with its IP datagram cut 0 to 47 bytes after the IP header
/// ([`cut_datagram`]), and an IPv4 one half of those times made a first fragment: a first
/// fragment cut there is a tiny fragment (RFC 1858, RFC 7112).
pub fn evade(rng: &mut ChaCha8Rng, frame: Vec<u8>) -> Vec<u8> {
    if !rng.random_bool(0.1) {
        return frame;
    }
    let Some(mut cut) = cut_datagram(&frame, rng.random_range(0..48)) else {
        return frame;
    };
    let l3 = 14 + 4 * vlan_tags(&cut);
    if rng.random() && u16::from_be_bytes([cut[l3 - 2], cut[l3 - 1]]) == ETH_P_IPV4 {
        // More fragments, offset 0; the header checksum made right again.
        cut[l3 + 6..l3 + 8].copy_from_slice(&0x2000u16.to_be_bytes());
        let header_len = usize::from(cut[l3] & 0x0f) * 4;
        cut[l3 + 10..l3 + 12].fill(0);
        let checksum = internet_checksum(&cut[l3..l3 + header_len]);
        cut[l3 + 10..l3 + 12].copy_from_slice(&checksum.to_be_bytes());
    }
    cut
}

/// A number of IPv6 extension headers: mostly none or a few, now and then the long chains
/// that attackers use to hide the upper-layer header (up to 40).
pub fn random_chain_length(rng: &mut ChaCha8Rng) -> usize {
    match rng.random_range(0..20) {
        0..12 => 0,
        12..18 => rng.random_range(1..=3),
        18 => rng.random_range(4..=9),
        _ => rng.random_range(10..=40),
    }
}

/// A well-formed `frame`, damaged at random: of every eight frames, `intact` (0 to 6) are
/// kept as they are, one is truncated, one is replaced by noise behind a plausible ethertype,
/// and the rest get 1 to 3 bytes flipped where the parser looks, in the first 100. Then cut
/// to 1518 bytes, an Ethernet MTU (and within a page, which BPF_PROG_TEST_RUN needs for the
/// whole frame to be linear: a long extension header chain is cut, as a capture would), and
/// padded with zeros to at least 14 bytes, the least BPF_PROG_TEST_RUN accepts.
pub fn damage(rng: &mut ChaCha8Rng, mut frame: Vec<u8>, intact: u32) -> Vec<u8> {
    debug_assert!(
        intact <= 6,
        "at most 6 frames in 8 stay intact, not {intact}"
    );
    match rng.random_range(0..8u32) {
        roll if roll < intact => {}
        0..=5 => {
            let reach = frame.len().min(100);
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(12..reach.max(13));
                if let Some(byte) = frame.get_mut(at) {
                    *byte = rng.random();
                }
            }
        }
        6 => {
            let len = rng.random_range(14..=frame.len().max(14));
            frame.truncate(len);
        }
        _ => {
            let len = rng.random_range(14..128);
            frame = (0..len).map(|_| rng.random()).collect();
            // Noise behind a plausible ethertype reaches deeper into the parser.
            let ethertypes = [ETH_P_IPV4, ETH_P_IPV6, ETH_P_ARP, ETH_P_8021Q, 0x88b5];
            let ethertype = ethertypes[rng.random_range(0..ethertypes.len())];
            frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
        }
    }
    frame.truncate(1518);
    while frame.len() < 14 {
        frame.push(0);
    }
    frame
}

fn random_transport(rng: &mut ChaCha8Rng, ipv6: bool) -> Transport {
    let payload = rng.random_range(0..64);
    match rng.random_range(0..5) {
        0 => Transport::Tcp {
            sport: rng.random(),
            dport: rng.random(),
            flags: rng.random(),
            payload,
        },
        1 => Transport::Udp {
            sport: rng.random(),
            dport: rng.random(),
            payload,
        },
        2 if ipv6 => Transport::Icmpv6 {
            icmp_type: rng.random(),
            code: rng.random(),
            payload,
        },
        2 => Transport::Icmp {
            icmp_type: rng.random(),
            code: rng.random(),
            payload,
        },
        3 => Transport::Icmp {
            icmp_type: 8,
            code: 0,
            payload,
        },
        _ => Transport::Raw {
            protocol: [47, 50, 51, 59, 132, 255][rng.random_range(0..6)],
            payload,
        },
    }
}

/// A random IPv6 extension header: hop-by-hop, routing, destination options (mostly 8 to 24
/// bytes, now and then up to 2 KiB), authentication, or fragment (first, later or atomic,
/// more or last); destination options most often, as the long chains attackers use are.
pub fn random_extension(rng: &mut ChaCha8Rng) -> Extension {
    let units = if rng.random_bool(0.8) {
        rng.random_range(0..3)
    } else {
        rng.random()
    };
    match rng.random_range(0..6) {
        0 => Extension::HopByHop { units },
        1 => Extension::Routing { units },
        2 | 3 => Extension::DestinationOptions { units },
        4 => Extension::Authentication { units },
        _ => Extension::Fragment {
            offset: if rng.random_bool(0.5) {
                0
            } else {
                rng.random_range(1..0x2000)
            },
            more: rng.random(),
        },
    }
}
