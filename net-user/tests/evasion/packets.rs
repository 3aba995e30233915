//! Packets built byte by byte for the evasion tests: every length and checksum right, or
//! Linux drops them itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use net_common::{
    checksum::internet_checksum,
    parse::{IPPROTO_FRAGMENT, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
};

/// "02:4e:58:00:2a:01" as bytes.
pub fn mac(text: &str) -> [u8; 6] {
    let mut mac = [0; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).expect("a MAC address in hex");
    }
    mac
}

pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&dst[..], &src, &ethertype.to_be_bytes(), payload].concat()
}

/// An IPv4 packet: `fragment` is the flags and fragment offset field, `options` a multiple of
/// 4 bytes.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    id: u16,
    fragment: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert!(
        options.len().is_multiple_of(4) && options.len() <= 40,
        "{options:?}"
    );
    let header_len = 20 + options.len();
    let mut packet = vec![0; header_len];
    packet[0] = 0x40 | (header_len / 4) as u8;
    packet[2..4].copy_from_slice(&((header_len + payload.len()) as u16).to_be_bytes());
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    packet[6..8].copy_from_slice(&fragment.to_be_bytes());
    packet[8] = 64;
    packet[9] = protocol;
    packet[12..16].copy_from_slice(&src.octets());
    packet[16..20].copy_from_slice(&dst.octets());
    packet[20..].copy_from_slice(options);
    let checksum = internet_checksum(&packet);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// `data` cut at the byte offsets `cuts` (ascending multiples of 8): each piece's offset in
/// 8-byte units, whether more follow, and its bytes.
pub fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<(u16, bool, &'a [u8])> {
    let bounds = [&[0], cuts, &[data.len()]].concat();
    bounds
        .windows(2)
        .map(|piece| {
            let (start, end) = (piece[0], piece[1]);
            assert!(start.is_multiple_of(8) && start < end, "cuts {cuts:?}");
            ((start / 8) as u16, end < data.len(), &data[start..end])
        })
        .collect()
}

/// `segment`, of IP `protocol`, in IPv4 fragments with identification `id`, cut at `cuts`.
pub fn ipv4_fragments(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    id: u16,
    segment: &[u8],
    cuts: &[usize],
) -> Vec<Vec<u8>> {
    pieces(segment, cuts)
        .into_iter()
        .map(|(offset, more, piece)| {
            let fragment = offset | if more { 0x2000 } else { 0 };
            ipv4(src, dst, protocol, id, fragment, &[], piece)
        })
        .collect()
}

pub fn ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    hop_limit: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut packet = vec![0; 40];
    packet[0] = 0x60;
    packet[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    packet[6] = next_header;
    packet[7] = hop_limit;
    packet[8..24].copy_from_slice(&src.octets());
    packet[24..40].copy_from_slice(&dst.octets());
    packet.extend_from_slice(payload);
    packet
}

/// A destination options header of 8 bytes: its 6 bytes of options are one PadN.
pub fn destination_options(next_header: u8) -> [u8; 8] {
    [next_header, 0, 1, 4, 0, 0, 0, 0]
}

/// The fragmentable part of an IPv6 packet (extension headers, then the upper-layer header
/// and payload), whose first header is `next_header`, in fragments with identification `id`,
/// cut at `cuts`.
pub fn ipv6_fragments(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    id: u32,
    fragmentable: &[u8],
    cuts: &[usize],
) -> Vec<Vec<u8>> {
    pieces(fragmentable, cuts)
        .into_iter()
        .map(|(offset, more, piece)| {
            let field = offset << 3 | u16::from(more);
            let header = [
                &[next_header, 0][..],
                &field.to_be_bytes(),
                &id.to_be_bytes(),
            ];
            let payload = [&header.concat(), piece].concat();
            ipv6(src, dst, IPPROTO_FRAGMENT, 64, &payload)
        })
        .collect()
}

/// The checksum of a TCP, UDP or ICMPv6 `segment` (its checksum field zero) with the
/// pseudo-header of its IP packet.
pub fn l4_checksum(src: IpAddr, dst: IpAddr, protocol: u8, segment: &[u8]) -> u16 {
    let mut data = Vec::new();
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            data.extend(src.octets());
            data.extend(dst.octets());
            data.extend([0, protocol]);
            data.extend((segment.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            data.extend(src.octets());
            data.extend(dst.octets());
            data.extend((segment.len() as u32).to_be_bytes());
            data.extend([0, 0, 0, protocol]);
        }
        _ => panic!("{src} and {dst} are of different families"),
    }
    data.extend_from_slice(segment);
    internet_checksum(&data)
}

pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut segment = [
        &sport.to_be_bytes()[..],
        &dport.to_be_bytes(),
        &len.to_be_bytes(),
        &[0, 0],
        payload,
    ]
    .concat();
    // A zero UDP checksum means "none", which IPv6 forbids: zero is sent as all ones.
    let checksum = match l4_checksum(src, dst, IPPROTO_UDP, &segment) {
        0 => 0xffff,
        checksum => checksum,
    };
    segment[6..8].copy_from_slice(&checksum.to_be_bytes());
    segment
}

/// A TCP SYN with no options, its sequence number derived from the source port.
pub fn tcp_syn(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let mut segment = vec![0; 20];
    segment[0..2].copy_from_slice(&sport.to_be_bytes());
    segment[2..4].copy_from_slice(&dport.to_be_bytes());
    segment[4..8].copy_from_slice(&(u32::from(sport) << 16 | 0x4e58).to_be_bytes());
    segment[12] = 5 << 4;
    segment[13] = 0x02;
    segment[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    let checksum = l4_checksum(src, dst, IPPROTO_TCP, &segment);
    segment[16..18].copy_from_slice(&checksum.to_be_bytes());
    segment
}

/// Whether `frame` is an IPv4 TCP SYN-ACK: its source address, source and destination port.
pub fn syn_ack(frame: &[u8]) -> Option<(Ipv4Addr, u16, u16)> {
    let ip = frame
        .get(14..)
        .filter(|_| frame.get(12..14) == Some(&[0x08, 0x00]))?;
    let header_len = usize::from(ip.first()? & 0x0f) * 4;
    let tcp = ip.get(header_len..header_len + 14)?;
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
    let is_syn_ack = ip.get(9) == Some(&IPPROTO_TCP) && tcp[13] & 0x12 == 0x12;
    is_syn_ack.then(|| {
        let port = |at: usize| u16::from_be_bytes([tcp[at], tcp[at + 1]]);
        (src, port(0), port(2))
    })
}

/// A neighbour solicitation (ICMPv6 type 135) for `target`, with the source link-layer
/// address option and a nonce option (RFC 3971) that ends with `nonce`, which tells the
/// solicitations of a test apart.
pub fn neighbour_solicitation(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    lladdr: [u8; 6],
    nonce: u8,
) -> Vec<u8> {
    let mut message = vec![135, 0, 0, 0, 0, 0, 0, 0];
    message.extend(target.octets());
    message.extend([1, 1]);
    message.extend(lladdr);
    message.extend([14, 1, 0x4e, 0x58, 0, 0, 0, nonce]);
    let checksum = l4_checksum(src.into(), dst.into(), IPPROTO_ICMPV6, &message);
    message[2..4].copy_from_slice(&checksum.to_be_bytes());
    message
}

/// An ARP request (Ethernet, IPv4) from `sender` for `target`.
pub fn arp_request(sender_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    [
        &[0, 1, 8, 0, 6, 4, 0, 1][..],
        &sender_mac,
        &sender.octets(),
        &[0; 6],
        &target.octets(),
    ]
    .concat()
}
