//! Every frame kind the parser knows, written out by hand with the parse result it must get.

use alloc::{vec, vec::Vec};

use crate::parse::{Fragment, L3, L4, Transport as Parsed};

use super::*;

/// A well-formed frame of a known kind, with the parse result it must get: written out by
/// hand, not computed by the parser.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: &'static str,
    pub spec: FrameSpec,
    pub l3: L3,
    pub l4: L4,
    pub transport: Parsed,
    pub fragment: Fragment,
}

/// Every frame kind the parser knows, tagged and untagged, with extension headers and
/// fragments.
pub fn catalogue() -> Vec<Case> {
    let udp = Transport::Udp {
        sport: 5353,
        dport: 53,
        payload: 10,
    };
    let udp_ports = Parsed::Ports {
        src: 5353,
        dst: 53,
        tcp_flags: 0,
    };
    let tcp = Transport::Tcp {
        sport: 40000,
        dport: 443,
        flags: 0x02,
        payload: 0,
    };
    let tcp_ports = Parsed::Ports {
        src: 40000,
        dst: 443,
        tcp_flags: 0x02,
    };
    let echo = Transport::Icmp {
        icmp_type: 8,
        code: 0,
        payload: 8,
    };
    let echo6 = Transport::Icmpv6 {
        icmp_type: 128,
        code: 0,
        payload: 8,
    };
    let none = Parsed::None;
    vec![
        Case {
            name: "arp",
            spec: FrameSpec {
                vlans: Vec::new(),
                body: Body::Arp,
            },
            l3: L3::Arp,
            l4: L4::Other,
            transport: none,
            fragment: Fragment::None,
        },
        Case {
            name: "lldp",
            spec: FrameSpec {
                vlans: Vec::new(),
                body: Body::Other {
                    ethertype: 0x88cc,
                    payload: 30,
                },
            },
            l3: L3::Other,
            l4: L4::Other,
            transport: none,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 udp",
            spec: ipv4(udp),
            l3: L3::Ipv4,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 tcp",
            spec: ipv4(tcp),
            l3: L3::Ipv4,
            l4: L4::Tcp,
            transport: tcp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 icmp",
            spec: ipv4(echo),
            l3: L3::Ipv4,
            l4: L4::Icmp,
            transport: Parsed::Icmp {
                icmp_type: 8,
                code: 0,
            },
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 gre",
            spec: ipv4(Transport::Raw {
                protocol: 47,
                payload: 12,
            }),
            l3: L3::Ipv4,
            l4: L4::Other,
            transport: none,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 udp vlan",
            spec: ipv4(udp).with_vlans(&[0x8100]),
            l3: L3::Ipv4,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 udp qinq",
            spec: ipv4(udp).with_vlans(&[0x88a8, 0x8100]),
            l3: L3::Ipv4,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv4 udp three tags",
            spec: ipv4(udp).with_vlans(&[0x88a8, 0x8100, 0x8100]),
            l3: L3::Other,
            l4: L4::Other,
            transport: none,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 tcp",
            spec: ipv6_with(Vec::new(), tcp),
            l3: L3::Ipv6,
            l4: L4::Tcp,
            transport: tcp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 udp vlan",
            spec: ipv6_with(Vec::new(), udp).with_vlans(&[0x8100]),
            l3: L3::Ipv6,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 icmpv6",
            spec: ipv6_with(Vec::new(), echo6),
            l3: L3::Ipv6,
            l4: L4::Icmpv6,
            transport: Parsed::Icmp {
                icmp_type: 128,
                code: 0,
            },
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 hop-by-hop routing dstopts udp",
            spec: ipv6_with(
                vec![
                    Extension::HopByHop { units: 0 },
                    Extension::Routing { units: 2 },
                    Extension::DestinationOptions { units: 1 },
                ],
                udp,
            ),
            l3: L3::Ipv6,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 first fragment tcp",
            spec: ipv6_with(
                vec![Extension::Fragment {
                    offset: 0,
                    more: true,
                }],
                tcp,
            ),
            l3: L3::Ipv6,
            l4: L4::Tcp,
            transport: tcp_ports,
            fragment: Fragment::First,
        },
        Case {
            name: "ipv6 later fragment udp",
            spec: ipv6_with(
                vec![Extension::Fragment {
                    offset: 185,
                    more: false,
                }],
                udp,
            ),
            l3: L3::Ipv6,
            l4: L4::Udp,
            transport: none,
            fragment: Fragment::Later,
        },
        Case {
            name: "ipv6 nine extension headers",
            spec: ipv6_with(vec![Extension::DestinationOptions { units: 0 }; 9], udp),
            l3: L3::Ipv6,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 thirty-two extension headers",
            spec: ipv6_with(vec![Extension::DestinationOptions { units: 0 }; 32], udp),
            l3: L3::Ipv6,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 authentication header udp",
            spec: ipv6_with(vec![Extension::Authentication { units: 4 }], udp),
            l3: L3::Ipv6,
            l4: L4::Udp,
            transport: udp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 atomic fragment tcp",
            spec: ipv6_with(
                vec![
                    Extension::Fragment {
                        offset: 0,
                        more: false,
                    },
                    Extension::DestinationOptions { units: 1 },
                ],
                tcp,
            ),
            l3: L3::Ipv6,
            l4: L4::Tcp,
            transport: tcp_ports,
            fragment: Fragment::None,
        },
        Case {
            name: "ipv6 neighbour solicitation",
            spec: ipv6_with(
                Vec::new(),
                Transport::Icmpv6 {
                    icmp_type: 135,
                    code: 0,
                    payload: 20,
                },
            ),
            l3: L3::Ipv6,
            l4: L4::Icmpv6,
            transport: Parsed::Icmp {
                icmp_type: 135,
                code: 0,
            },
            fragment: Fragment::None,
        },
    ]
}

/// fd00::N.
pub fn ipv6(n: u8) -> [u8; 16] {
    let mut addr = [0u8; 16];
    addr[0] = 0xfd;
    addr[15] = n;
    addr
}
