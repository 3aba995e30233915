//! The reference parser on hand-built frames, with the expected result written out for
//! each, and on every truncation of them.

use net_common::{
    frame::SliceFrame,
    parse::{Defect, Fragment, L3, L4, Packet, Transport as Parsed, parse},
    rule::Family,
    testing::{
        Body, Case, Extension, FrameGenerator, FrameSpec, Transport, catalogue, cut_datagram, ipv4,
        ipv6, ipv6_with,
    },
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

/// An IPv4 frame carrying `transport` with this flags-and-offset field.
fn ipv4_fragment(transport: Transport, flags_and_offset: u16) -> Vec<u8> {
    let mut spec = ipv4(transport);
    if let Body::Ipv4 { fragment, .. } = &mut spec.body {
        *fragment = flags_and_offset;
    }
    spec.build()
}

const SYN: Transport = Transport::Tcp {
    sport: 40000,
    dport: 7777,
    flags: 0x02,
    payload: 0,
};
const UDP: Transport = Transport::Udp {
    sport: 5353,
    dport: 7778,
    payload: 10,
};

#[test]
fn first_fragments_without_the_whole_transport_header_are_tiny() {
    let first = ipv4_fragment(SYN, 0x2000);
    for tcp_bytes in [0, 8, 16, 19] {
        let packet = parsed(&cut_datagram(&first, tcp_bytes).expect("cut"));
        assert_eq!(
            packet.defect,
            Defect::TinyFragment,
            "{tcp_bytes} bytes of TCP"
        );
        assert_eq!(packet.fragment, Fragment::First);
        assert_eq!(packet.ports(), None);
    }
    let whole = parsed(&first);
    assert_eq!(
        (whole.defect, whole.ports()),
        (Defect::None, Some((40000, 7777)))
    );
    // Unfragmented, the same cut is a header cut short: malformed.
    let unfragmented = parsed(&cut_datagram(&ipv4_fragment(SYN, 0), 8).expect("cut"));
    assert_eq!(unfragmented.defect, Defect::Malformed);
}

#[test]
fn ipv4_fragments_at_offset_one_overlap() {
    for flags in [0, 0x2000] {
        let packet = parsed(&ipv4_fragment(UDP, flags | 1));
        assert_eq!(packet.defect, Defect::OverlapFragment);
        assert_eq!(packet.fragment, Fragment::Later);
    }
    let offset_two = parsed(&ipv4_fragment(UDP, 2));
    assert_eq!(
        (offset_two.defect, offset_two.fragment),
        (Defect::None, Fragment::Later)
    );
}

#[test]
fn the_ipv6_chain_is_walked_to_its_end_however_long() {
    for headers in [9, 16, 32, 100] {
        let frame = ipv6_with(
            vec![Extension::DestinationOptions { units: 0 }; headers],
            UDP,
        );
        let packet = parsed(&frame.build());
        assert_eq!(packet.defect, Defect::None, "{headers} headers");
        assert_eq!(packet.ports(), Some((5353, 7778)), "{headers} headers");
    }
    let behind_ah = ipv6_with(
        vec![
            Extension::HopByHop { units: 0 },
            Extension::Authentication { units: 4 },
            Extension::Routing { units: 1 },
        ],
        UDP,
    );
    let packet = parsed(&behind_ah.build());
    assert_eq!((packet.ip_proto, packet.ports()), (17, Some((5353, 7778))));
}

#[test]
fn ipv6_first_fragments_must_hold_the_whole_chain() {
    let chain = vec![
        Extension::HopByHop { units: 0 },
        Extension::Fragment {
            offset: 0,
            more: true,
        },
        Extension::DestinationOptions { units: 1 },
    ];
    let frame = ipv6_with(chain, UDP).build();
    // Hop-by-hop (8), fragment (8), destination options (16), UDP (8).
    for (payload, defect) in [
        (4, Defect::Malformed), // inside hop-by-hop: in every fragment, cut short
        (16 + 4, Defect::TinyFragment), // inside the destination options
        (32 + 4, Defect::TinyFragment), // inside the UDP header
        (32 + 8, Defect::None),
    ] {
        let packet = parsed(&cut_datagram(&frame, payload).expect("cut"));
        assert_eq!(packet.defect, defect, "cut {payload} bytes in");
    }
    let two = ipv6_with(
        vec![
            Extension::Fragment {
                offset: 0,
                more: false,
            },
            Extension::Fragment {
                offset: 0,
                more: true,
            },
        ],
        UDP,
    );
    assert_eq!(parsed(&two.build()).defect, Defect::Ipv6Chain);
    let atomic = ipv6_with(
        vec![Extension::Fragment {
            offset: 0,
            more: false,
        }],
        UDP,
    );
    let packet = parsed(&atomic.build());
    assert_eq!(
        (packet.defect, packet.fragment, packet.ports()),
        (Defect::None, Fragment::None, Some((5353, 7778)))
    );
}

#[test]
fn only_well_formed_neighbour_traffic_is_neighbour_traffic() {
    let solicitation = |extensions| {
        ipv6_with(
            extensions,
            Transport::Icmpv6 {
                icmp_type: 135,
                code: 0,
                payload: 20,
            },
        )
        .build()
    };
    assert!(parsed(&solicitation(Vec::new())).neighbour);
    let mut hop_limit_64 = solicitation(Vec::new());
    hop_limit_64[14 + 7] = 64;
    assert!(!parsed(&hop_limit_64).neighbour, "hop limit 64");
    let mut code_1 = solicitation(Vec::new());
    code_1[14 + 40 + 1] = 1;
    assert!(!parsed(&code_1).neighbour, "code 1");
    let atomic = solicitation(vec![Extension::Fragment {
        offset: 0,
        more: false,
    }]);
    assert!(!parsed(&atomic).neighbour, "behind a fragment header");

    let arp = FrameSpec {
        vlans: Vec::new(),
        body: Body::Arp,
    }
    .build();
    let packet = parsed(&arp);
    assert!(packet.neighbour);
    assert_eq!(packet.addr_family, Family::Ipv4);
    assert_eq!(
        (&packet.src[..4], &packet.dst[..4]),
        (&[198, 18, 0, 2][..], &[198, 18, 0, 1][..])
    );
    let mut ieee802 = arp.clone();
    ieee802[15] = 6;
    assert!(parsed(&ieee802).neighbour, "hardware type IEEE 802");
    let mut other_protocol = arp.clone();
    other_protocol[19] = 16;
    let packet = parsed(&other_protocol);
    assert!(
        !packet.neighbour && packet.addr_family == Family::Any,
        "protocol length 16"
    );
    assert!(!parsed(&arp[..14 + 27]).neighbour, "27 bytes of ARP");
}
