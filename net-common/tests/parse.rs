//! The reference parser on hand-built frames, with the expected result written out for
//! each, and on every truncation of them.

use net_common::{
    frame::SliceFrame,
    parse::{Fragment, L3, L4, Packet, Transport as Parsed, parse},
    testing::{Body, Case, FrameGenerator, FrameSpec, Transport, catalogue, ipv4, ipv6},
};

fn parsed(frame: &[u8]) -> Packet {
    parse(&SliceFrame::new(frame))
}

#[test]
fn every_catalogued_frame_parses_as_expected() {
    for Case {
        name,
        spec,
        l3,
        l4,
        transport,
        fragment,
    } in catalogue()
    {
        let frame = spec.build();
        let packet = parsed(&frame);
        assert_eq!(packet.len as usize, frame.len(), "{name}");
        assert_eq!((packet.l3, packet.l4), (l3, l4), "{name}");
        assert_eq!(packet.transport(), transport, "{name}");
        assert_eq!(packet.fragment, fragment, "{name}");
        assert!(!packet.is_defective(), "{name} is well-formed");
    }
}

#[test]
fn addresses_and_vlan_count_are_extracted() {
    let packet = parsed(
        &ipv4(Transport::Udp {
            sport: 1,
            dport: 2,
            payload: 0,
        })
        .with_vlans(&[0x8100, 0x8100])
        .build(),
    );
    assert_eq!(packet.vlan_tags, 2);
    assert_eq!(&packet.src[..4], &[198, 18, 0, 2]);
    assert_eq!(&packet.dst[..4], &[198, 18, 0, 1]);
    assert_eq!(&packet.src[4..], &[0; 12]);
    let packet = parsed(&FrameSpec::ipv6_tcp(1, 2, 0, 0).build());
    assert_eq!((packet.src, packet.dst), (ipv6(2), ipv6(1)));
    assert_eq!(packet.ip_proto, 6);
}

#[test]
fn ipv4_options_are_skipped_by_ihl() {
    let spec = FrameSpec {
        vlans: vec![],
        body: Body::Ipv4 {
            src: [1; 4],
            dst: [2; 4],
            fragment: 0,
            option_words: 10,
            transport: Transport::Udp {
                sport: 7,
                dport: 9,
                payload: 0,
            },
        },
    };
    assert_eq!(parsed(&spec.build()).ports(), Some((7, 9)));
}

#[test]
fn ipv4_fragments_carry_ports_only_in_the_first() {
    let fragment = |field| FrameSpec {
        vlans: vec![],
        body: Body::Ipv4 {
            src: [1; 4],
            dst: [2; 4],
            fragment: field,
            option_words: 0,
            transport: Transport::Udp {
                sport: 7,
                dport: 9,
                payload: 0,
            },
        },
    };
    let first = parsed(&fragment(0x2000).build());
    assert_eq!(
        (first.fragment, first.ports()),
        (Fragment::First, Some((7, 9)))
    );
    let later = parsed(&fragment(0x2000 | 3).build());
    assert_eq!(
        (later.fragment, later.ports(), later.l4),
        (Fragment::Later, None, L4::Udp)
    );
    let last = parsed(&fragment(3).build());
    assert_eq!((last.fragment, last.ports()), (Fragment::Later, None));
    let dont_fragment = parsed(&fragment(0x4000).build());
    assert_eq!(
        (dont_fragment.fragment, dont_fragment.ports()),
        (Fragment::None, Some((7, 9)))
    );
    assert!(!later.is_defective() && !last.is_defective());
}

#[test]
fn invalid_headers_are_malformed() {
    let good = ipv4(Transport::Udp {
        sport: 1,
        dport: 2,
        payload: 4,
    })
    .build();
    type Corruption = fn(&mut Vec<u8>);
    let cases: [(&str, Corruption); 6] = [
        ("version 5", |f| f[14] = 0x55),
        ("ihl 4", |f| f[14] = 0x44),
        ("ihl past the end", |f| f[14] = 0x4f),
        ("total length below header", |f| {
            f[16..18].copy_from_slice(&19u16.to_be_bytes())
        }),
        ("total length past the frame", |f| {
            f[16..18].copy_from_slice(&200u16.to_be_bytes())
        }),
        ("udp header outside the datagram", |f| {
            f[16..18].copy_from_slice(&24u16.to_be_bytes())
        }),
    ];
    for (name, corrupt) in cases {
        let mut frame = good.clone();
        corrupt(&mut frame);
        let packet = parsed(&frame);
        assert!(packet.is_defective(), "{name}");
        assert_eq!(packet.l3, L3::Ipv4, "{name}");
        assert_eq!(packet.ports(), None, "{name}");
    }
    let mut v6 = FrameSpec::ipv6_tcp(1, 2, 0, 0).build();
    v6[14] = 0x40;
    assert!(parsed(&v6).is_defective(), "ipv6 version 4");
}

#[test]
fn trailing_padding_is_not_read_as_a_header() {
    // 60-byte minimum Ethernet frame carrying a 28-byte IPv4 datagram with an 8-byte ICMP
    // header: the padding is neither malformed nor parsed.
    let mut frame = ipv4(Transport::Icmp {
        icmp_type: 0,
        code: 0,
        payload: 0,
    })
    .build();
    frame.resize(60, 0);
    let packet = parsed(&frame);
    assert!(!packet.is_defective());
    assert_eq!(
        packet.transport(),
        Parsed::Icmp {
            icmp_type: 0,
            code: 0
        }
    );
}

#[test]
fn every_truncation_of_every_catalogued_frame() {
    for Case { name, spec, l3, .. } in catalogue() {
        let frame = spec.build();
        let l3_start = 14 + 4 * spec.vlans.len().min(2);
        for len in 0..frame.len() {
            let packet = parsed(&frame[..len]);
            let cut = format!("{name} cut at {len}");
            assert_eq!(packet.len as usize, len, "{cut}");
            if len < l3_start {
                // Ethernet header or a VLAN tag incomplete.
                assert!(packet.is_defective(), "{cut}");
                assert_eq!(packet.l3, L3::Other, "{cut}");
                continue;
            }
            assert_eq!(packet.l3, l3, "{cut}");
            match l3 {
                // IP declares its length: any cut is a truncated datagram.
                L3::Ipv4 | L3::Ipv6 => {
                    assert!(packet.is_defective(), "{cut}");
                    assert_eq!(packet.transport(), Parsed::None, "{cut}");
                }
                L3::Arp => assert_eq!(packet.is_defective(), len < l3_start + 8, "{cut}"),
                L3::Other => assert!(!packet.is_defective(), "{cut}"),
            }
        }
    }
}

#[test]
fn arp_needs_its_fixed_header() {
    let frame = FrameSpec {
        vlans: vec![],
        body: Body::Arp,
    }
    .build();
    for len in 14..frame.len() {
        assert_eq!(
            parsed(&frame[..len]).is_defective(),
            len < 22,
            "arp cut at {len}"
        );
    }
}

#[test]
fn generated_frames_never_panic_and_respect_invariants() {
    let mut generator = FrameGenerator::new(0x6e78_6470);
    for _ in 0..100_000 {
        let frame = generator.next_frame();
        let packet = parsed(&frame);
        assert_eq!(packet.len as usize, frame.len());
        if packet.ports().is_some() {
            assert!(matches!(packet.l4, L4::Tcp | L4::Udp));
            assert_ne!(packet.fragment, Fragment::Later);
            assert!(!packet.is_defective());
        }
        if packet.l3 == L3::Arp || packet.l3 == L3::Other {
            assert_eq!(packet.l4, L4::Other);
        }
    }
}
