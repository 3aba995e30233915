//! A rule's fields as text: parsed from the command line and the rules file, and shown in
//! `rule list`, `apply --dry-run` and messages.
//!
//! Each field has one canonical text form, and parsing it gives the field back, so what netxdp
//! shows can be typed back in. Parsing is strict where a typo would silently widen a rule (a
//! bad address, a port past 65535, a reversed range), and lenient only where the meaning is
//! unambiguous: host bits of a prefix are cleared, and the caller is told so.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use net_common::{
    parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    rule::{Family, ICMP_TYPE_ANY, Match, PROTO_ANY, PROTO_ARP, PortRange, Prefix},
};

/// Why text is not a rule field, or fields do not make a rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "`{0}` is not an address or prefix: expected any, an IPv4 or IPv6 address, or either \
         with /LENGTH (198.18.0.0/15, fd00::/8)"
    )]
    Prefix(String),
    #[error("`{text}`: an {family} prefix is at most /{width} long")]
    PrefixLength {
        text: String,
        family: &'static str,
        width: u8,
    },
    #[error("`{0}` is not a port or port range: expected any, a number 0..65535 or FIRST-LAST")]
    Ports(String),
    #[error("`{0}`: ports are 0..65535")]
    PortOutOfRange(String),
    #[error("`{0}` is a reversed range: the first port must not be above the last")]
    ReversedPorts(String),
    #[error("unknown protocol `{0}`: expected {PROTO_NAMES} or a number 0..255")]
    Proto(String),
    #[error("`{0}` is not an ICMP type: expected any or a number 0..255")]
    IcmpType(String),
    #[error("proto arp takes no {field}: ARP frames have no IP addresses, ports or ICMP type")]
    ArpField { field: Field },
    #[error("ports need proto tcp or udp (here proto is {proto})")]
    PortsNeedTcpOrUdp { field: Field, proto: String },
    #[error("an ICMP type needs proto icmp or icmpv6 (here proto is {proto})")]
    IcmpTypeNeedsIcmp { proto: String },
    #[error("src {src} and dst {dst} are of different families: a rule matches IPv4 or IPv6")]
    MixedFamilies { src: String, dst: String },
    #[error("proto icmp is ICMP for IPv4: with IPv6 addresses, use proto icmpv6")]
    IcmpOnIpv6,
    #[error("proto icmpv6 is ICMP for IPv6: with IPv4 addresses, use proto icmp")]
    Icmpv6OnIpv4,
}

/// The protocol names [`parse_proto`] knows, for messages.
const PROTO_NAMES: &str = "tcp, udp, icmp, icmpv6 (or ipv6-icmp), arp, any";

impl SpecError {
    /// The field at fault when fields do not make a rule together; `None` for bad text, whose
    /// field the caller knows.
    pub fn field(&self) -> Option<Field> {
        match self {
            Self::ArpField { field } | Self::PortsNeedTcpOrUdp { field, .. } => Some(*field),
            Self::IcmpTypeNeedsIcmp { .. } => Some(Field::IcmpType),
            Self::MixedFamilies { .. } => Some(Field::Dst),
            Self::IcmpOnIpv6 | Self::Icmpv6OnIpv4 => Some(Field::Proto),
            Self::Prefix(_)
            | Self::PrefixLength { .. }
            | Self::Ports(_)
            | Self::PortOutOfRange(_)
            | Self::ReversedPorts(_)
            | Self::Proto(_)
            | Self::IcmpType(_) => None,
        }
    }
}

/// A field of a rule's match, as the rules file names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Src,
    Dst,
    Proto,
    Sport,
    Dport,
    IcmpType,
}

impl Field {
    /// Every field, in the order they are shown.
    pub const ALL: [Field; 6] = [
        Self::Src,
        Self::Dst,
        Self::Proto,
        Self::Sport,
        Self::Dport,
        Self::IcmpType,
    ];

    /// The key of the rules file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Src => "src",
            Self::Dst => "dst",
            Self::Proto => "proto",
            Self::Sport => "sport",
            Self::Dport => "dport",
            Self::IcmpType => "icmp_type",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A prefix given with host bits set, and the prefix it stands for: worth a note, since the
/// rule matches more than the address given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalised {
    pub given: String,
    pub prefix: Prefix,
}

impl fmt::Display for Normalised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} normalised to {}",
            self.given,
            prefix_text(&self.prefix)
        )
    }
}

/// `any`, an address (a host prefix) or ADDRESS/LENGTH. Host bits are cleared, and reported.
pub fn parse_prefix(text: &str) -> Result<(Prefix, Option<Normalised>), SpecError> {
    if text.eq_ignore_ascii_case("any") {
        return Ok((Prefix::ANY, None));
    }
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let bad = || SpecError::Prefix(text.to_owned());
    let (family, bytes) = match addr.parse::<IpAddr>().map_err(|_| bad())? {
        IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            (Family::Ipv4, bytes)
        }
        IpAddr::V6(v6) => (Family::Ipv6, v6.octets()),
    };
    let width = family.bits();
    let len = match len {
        None => width,
        Some(len) => {
            let len = decimal(len).ok_or_else(bad)?;
            if len > u32::from(width) {
                return Err(SpecError::PrefixLength {
                    text: text.to_owned(),
                    family: family_name(family),
                    width,
                });
            }
            len as u8
        }
    };
    let prefix = Prefix::new(family, bytes, len);
    let normalised = (prefix.addr != bytes).then(|| Normalised {
        given: text.to_owned(),
        prefix,
    });
    Ok((prefix, normalised))
}

/// `any`, a port, or FIRST-LAST (inclusive).
pub fn parse_ports(text: &str) -> Result<PortRange, SpecError> {
    if text.eq_ignore_ascii_case("any") {
        return Ok(PortRange::ANY);
    }
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let port = |part: &str| {
        let value = decimal(part).ok_or_else(|| SpecError::Ports(text.to_owned()))?;
        u16::try_from(value).map_err(|_| SpecError::PortOutOfRange(text.to_owned()))
    };
    let range = PortRange {
        first: port(first)?,
        last: port(last)?,
    };
    if range.first > range.last {
        return Err(SpecError::ReversedPorts(text.to_owned()));
    }
    Ok(range)
}

/// A protocol by name (case-insensitive) or number: an IP protocol number, [`PROTO_ARP`] or
/// [`PROTO_ANY`].
pub fn parse_proto(text: &str) -> Result<u16, SpecError> {
    let proto = match text.to_ascii_lowercase().as_str() {
        "any" => PROTO_ANY,
        "arp" => PROTO_ARP,
        "tcp" => IPPROTO_TCP.into(),
        "udp" => IPPROTO_UDP.into(),
        "icmp" => IPPROTO_ICMP.into(),
        "icmpv6" | "ipv6-icmp" => IPPROTO_ICMPV6.into(),
        number => decimal(number)
            .and_then(|value| u8::try_from(value).ok())
            .ok_or_else(|| SpecError::Proto(text.to_owned()))?
            .into(),
    };
    Ok(proto)
}

/// `any` or an ICMP (or ICMPv6) type number: the `icmp_type` of a [`Match`].
pub fn parse_icmp_type(text: &str) -> Result<u16, SpecError> {
    if text.eq_ignore_ascii_case("any") {
        return Ok(ICMP_TYPE_ANY);
    }
    decimal(text)
        .and_then(|value| u8::try_from(value).ok())
        .map(u16::from)
        .ok_or_else(|| SpecError::IcmpType(text.to_owned()))
}

/// Digits only: no sign, no spaces, which `str::parse` would let through.
fn decimal(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The match of these fields, if they make sense together: ports only on TCP and UDP, an ICMP
/// type only on ICMP and ICMPv6, nothing but the protocol on ARP, and addresses of one family
/// that agrees with the protocol. Anything else could never match a packet, or (ports or an
/// ICMP type without a protocol) leaves unsaid which protocol is meant: more likely a mistake
/// than a rule worth installing.
pub fn build_match(
    src: Prefix,
    dst: Prefix,
    proto: u16,
    sport: PortRange,
    dport: PortRange,
    icmp_type: u16,
) -> Result<Match, SpecError> {
    let matches = Match {
        src,
        dst,
        proto,
        sport,
        dport,
        icmp_type,
    };
    if proto == PROTO_ARP {
        let others = [
            Field::Src,
            Field::Dst,
            Field::Sport,
            Field::Dport,
            Field::IcmpType,
        ];
        return match first_named(&matches, &others) {
            Some(field) => Err(SpecError::ArpField { field }),
            None => Ok(matches),
        };
    }
    let tcp_or_udp = proto == u16::from(IPPROTO_TCP) || proto == u16::from(IPPROTO_UDP);
    if !tcp_or_udp && let Some(field) = first_named(&matches, &[Field::Sport, Field::Dport]) {
        return Err(SpecError::PortsNeedTcpOrUdp {
            field,
            proto: proto_text(proto),
        });
    }
    let icmp = proto == u16::from(IPPROTO_ICMP);
    let icmpv6 = proto == u16::from(IPPROTO_ICMPV6);
    if is_named(&matches, Field::IcmpType) && !icmp && !icmpv6 {
        return Err(SpecError::IcmpTypeNeedsIcmp {
            proto: proto_text(proto),
        });
    }
    let family = match (src.family(), dst.family()) {
        (Family::Any, family) | (family, Family::Any) => family,
        (a, b) if a == b => a,
        _ => {
            return Err(SpecError::MixedFamilies {
                src: prefix_text(&src),
                dst: prefix_text(&dst),
            });
        }
    };
    match family {
        Family::Ipv6 if icmp => Err(SpecError::IcmpOnIpv6),
        Family::Ipv4 if icmpv6 => Err(SpecError::Icmpv6OnIpv4),
        _ => Ok(matches),
    }
}

/// Whether the match names `field`, that is, it is not `any`.
pub fn is_named(matches: &Match, field: Field) -> bool {
    match field {
        Field::Src => !matches.src.is_any(),
        Field::Dst => !matches.dst.is_any(),
        Field::Proto => matches.proto != PROTO_ANY,
        Field::Sport => !matches.sport.is_any(),
        Field::Dport => !matches.dport.is_any(),
        Field::IcmpType => matches.icmp_type != ICMP_TYPE_ANY,
    }
}

/// The first of `fields` that the match names: the one to blame in a message.
fn first_named(matches: &Match, fields: &[Field]) -> Option<Field> {
    fields
        .iter()
        .copied()
        .find(|&field| is_named(matches, field))
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::Any => "any",
        Family::Ipv4 => "IPv4",
        Family::Ipv6 => "IPv6",
    }
}

/// `any`, or the prefix in CIDR notation (always with its length).
pub fn prefix_text(prefix: &Prefix) -> String {
    let len = prefix.len;
    match prefix.family() {
        Family::Any => "any".to_owned(),
        Family::Ipv4 => {
            let [a, b, c, d, ..] = prefix.addr;
            format!("{}/{len}", Ipv4Addr::new(a, b, c, d))
        }
        Family::Ipv6 => format!("{}/{len}", Ipv6Addr::from(prefix.addr)),
    }
}

/// `any`, a port, or FIRST-LAST.
pub fn ports_text(ports: &PortRange) -> String {
    if ports.is_any() {
        "any".to_owned()
    } else if ports.first == ports.last {
        ports.first.to_string()
    } else {
        format!("{}-{}", ports.first, ports.last)
    }
}

/// The protocol's name if it has one [`parse_proto`] knows, else its number.
pub fn proto_text(proto: u16) -> String {
    match proto {
        PROTO_ANY => "any".to_owned(),
        PROTO_ARP => "arp".to_owned(),
        _ => match u8::try_from(proto) {
            Ok(IPPROTO_TCP) => "tcp".to_owned(),
            Ok(IPPROTO_UDP) => "udp".to_owned(),
            Ok(IPPROTO_ICMP) => "icmp".to_owned(),
            Ok(IPPROTO_ICMPV6) => "icmpv6".to_owned(),
            _ => proto.to_string(),
        },
    }
}

/// `any` or the type number.
pub fn icmp_type_text(icmp_type: u16) -> String {
    match icmp_type {
        ICMP_TYPE_ANY => "any".to_owned(),
        number => number.to_string(),
    }
}

/// One field of the match as text: `any` when it names none.
pub fn field_text(matches: &Match, field: Field) -> String {
    match field {
        Field::Src => prefix_text(&matches.src),
        Field::Dst => prefix_text(&matches.dst),
        Field::Proto => proto_text(matches.proto),
        Field::Sport => ports_text(&matches.sport),
        Field::Dport => ports_text(&matches.dport),
        Field::IcmpType => icmp_type_text(matches.icmp_type),
    }
}

/// The match on one line, naming only the fields that are not `any`, in the order of
/// [`Field::ALL`]: `src 198.18.0.0/24 proto udp dport 53`. A match on everything is `all`.
pub fn match_text(matches: &Match) -> String {
    let named: Vec<String> = Field::ALL
        .into_iter()
        .filter(|&field| is_named(matches, field))
        .map(|field| format!("{field} {}", field_text(matches, field)))
        .collect();
    if named.is_empty() {
        "all".to_owned()
    } else {
        named.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(text: &str) -> Prefix {
        parse_prefix(text).unwrap().0
    }

    fn error(result: Result<impl fmt::Debug, SpecError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn prefixes_parse_with_or_without_length() {
        assert_eq!(prefix("any"), Prefix::ANY);
        assert_eq!(prefix("ANY"), Prefix::ANY);
        let v4 = prefix("198.18.0.0/15");
        assert_eq!((v4.family(), v4.len), (Family::Ipv4, 15));
        assert_eq!(v4.addr[..4], [198, 18, 0, 0]);
        assert_eq!(prefix("198.18.0.1").len, 32);
        assert_eq!(prefix("fd00::/8").family(), Family::Ipv6);
        assert_eq!(prefix("fd00::1").len, 128);
        assert_eq!(prefix("0.0.0.0/0").family(), Family::Ipv4);
    }

    #[test]
    fn host_bits_are_cleared_and_reported() {
        let (prefix, note) = parse_prefix("198.18.0.5/24").unwrap();
        assert_eq!(prefix_text(&prefix), "198.18.0.0/24");
        assert_eq!(
            note.unwrap().to_string(),
            "198.18.0.5/24 normalised to 198.18.0.0/24"
        );
        let (_, note) = parse_prefix("fd00::1/64").unwrap();
        assert_eq!(
            note.unwrap().to_string(),
            "fd00::1/64 normalised to fd00::/64"
        );
        assert_eq!(parse_prefix("198.18.0.0/24").unwrap().1, None);
    }

    #[test]
    fn bad_prefixes_are_named() {
        for text in [
            "198.18.0.256",
            "198.18.0/24",
            "fd00:::1",
            "198.18.0.0/",
            "198.18.0.0/+8",
        ] {
            let message = error(parse_prefix(text));
            assert!(
                message.starts_with(&format!("`{text}` is not an address or prefix")),
                "{message}"
            );
        }
        assert_eq!(
            error(parse_prefix("198.18.0.0/33")),
            "`198.18.0.0/33`: an IPv4 prefix is at most /32 long"
        );
        assert_eq!(
            error(parse_prefix("fd00::/129")),
            "`fd00::/129`: an IPv6 prefix is at most /128 long"
        );
    }

    #[test]
    fn ports_parse_as_one_port_or_a_range() {
        assert_eq!(
            parse_ports("80"),
            Ok(PortRange {
                first: 80,
                last: 80
            })
        );
        assert_eq!(
            parse_ports("1000-2000"),
            Ok(PortRange {
                first: 1000,
                last: 2000
            })
        );
        assert_eq!(parse_ports("0-65535"), Ok(PortRange::ANY));
        assert_eq!(parse_ports("any"), Ok(PortRange::ANY));
    }

    #[test]
    fn bad_ports_are_named() {
        assert_eq!(error(parse_ports("65536")), "`65536`: ports are 0..65535");
        assert_eq!(
            error(parse_ports("2000-1000")),
            "`2000-1000` is a reversed range: the first port must not be above the last"
        );
        for text in ["http", "", "-1", "1-2-3", "1000-", " 80"] {
            assert_eq!(
                error(parse_ports(text)),
                format!(
                    "`{text}` is not a port or port range: expected any, a number 0..65535 or \
                     FIRST-LAST"
                )
            );
        }
    }

    #[test]
    fn protocols_parse_by_name_or_number() {
        assert_eq!(parse_proto("TCP"), Ok(6));
        assert_eq!(parse_proto("udp"), Ok(17));
        assert_eq!(parse_proto("icmp"), Ok(1));
        assert_eq!(parse_proto("icmpv6"), Ok(58));
        assert_eq!(parse_proto("ipv6-icmp"), Ok(58));
        assert_eq!(parse_proto("arp"), Ok(PROTO_ARP));
        assert_eq!(parse_proto("any"), Ok(PROTO_ANY));
        assert_eq!(parse_proto("47"), Ok(47));
        assert_eq!(parse_proto("0"), Ok(0));
        for text in ["sctp", "256", "-1"] {
            assert_eq!(
                error(parse_proto(text)),
                format!(
                    "unknown protocol `{text}`: expected tcp, udp, icmp, icmpv6 (or ipv6-icmp), \
                     arp, any or a number 0..255"
                )
            );
        }
    }

    #[test]
    fn icmp_types_are_numbers() {
        assert_eq!(parse_icmp_type("8"), Ok(8));
        assert_eq!(parse_icmp_type("255"), Ok(255));
        assert_eq!(parse_icmp_type("any"), Ok(ICMP_TYPE_ANY));
        assert_eq!(
            error(parse_icmp_type("256")),
            "`256` is not an ICMP type: expected any or a number 0..255"
        );
        assert_eq!(
            error(parse_icmp_type("echo")),
            "`echo` is not an ICMP type: expected any or a number 0..255"
        );
    }

    /// `build_match` from text.
    fn build(
        src: &str,
        dst: &str,
        proto: &str,
        sport: &str,
        dport: &str,
        icmp_type: &str,
    ) -> Result<Match, SpecError> {
        build_match(
            prefix(src),
            prefix(dst),
            parse_proto(proto)?,
            parse_ports(sport)?,
            parse_ports(dport)?,
            parse_icmp_type(icmp_type)?,
        )
    }

    #[test]
    fn fields_that_fit_together_build_a_match() {
        let matches = build("198.18.0.0/24", "any", "udp", "any", "53", "any").unwrap();
        assert_eq!(match_text(&matches), "src 198.18.0.0/24 proto udp dport 53");
        let matches = build("any", "fd00::/8", "icmpv6", "any", "any", "135").unwrap();
        assert_eq!(
            match_text(&matches),
            "dst fd00::/8 proto icmpv6 icmp_type 135"
        );
        assert!(build("any", "any", "arp", "any", "any", "any").is_ok());
        assert!(build("198.18.0.1", "198.18.0.2", "6", "1-2", "3", "any").is_ok());
        assert_eq!(match_text(&Match::ANY), "all");
    }

    #[test]
    fn fields_that_do_not_fit_together_are_refused_naming_the_field() {
        let cases = [
            (
                build("any", "any", "icmp", "any", "53", "any"),
                Field::Dport,
                "ports need proto tcp or udp (here proto is icmp)",
            ),
            (
                build("any", "any", "any", "1024-65535", "any", "any"),
                Field::Sport,
                "ports need proto tcp or udp (here proto is any)",
            ),
            (
                build("any", "any", "udp", "any", "any", "8"),
                Field::IcmpType,
                "an ICMP type needs proto icmp or icmpv6 (here proto is udp)",
            ),
            (
                build("any", "198.18.0.1", "arp", "any", "any", "any"),
                Field::Dst,
                "proto arp takes no dst: ARP frames have no IP addresses, ports or ICMP type",
            ),
            (
                build("any", "any", "arp", "any", "80", "any"),
                Field::Dport,
                "proto arp takes no dport: ARP frames have no IP addresses, ports or ICMP type",
            ),
            (
                build("198.18.0.0/15", "fd00::/8", "any", "any", "any", "any"),
                Field::Dst,
                "src 198.18.0.0/15 and dst fd00::/8 are of different families: a rule matches \
                 IPv4 or IPv6",
            ),
            (
                build("fd00::/8", "any", "icmp", "any", "any", "any"),
                Field::Proto,
                "proto icmp is ICMP for IPv4: with IPv6 addresses, use proto icmpv6",
            ),
            (
                build("any", "198.18.0.0/15", "icmpv6", "any", "any", "128"),
                Field::Proto,
                "proto icmpv6 is ICMP for IPv6: with IPv4 addresses, use proto icmp",
            ),
        ];
        for (result, field, message) in cases {
            let error = result.unwrap_err();
            assert_eq!(error.to_string(), message);
            assert_eq!(error.field(), Some(field), "{message}");
        }
    }

    #[test]
    fn every_field_reads_back_from_its_text() {
        for text in [
            "any",
            "0.0.0.0/0",
            "198.18.0.0/15",
            "198.18.0.1/32",
            "::/0",
            "fd00::/8",
            "fd00::1/128",
            "::ffff:198.18.0.0/120",
        ] {
            let prefix = prefix(text);
            assert_eq!(parse_prefix(&prefix_text(&prefix)), Ok((prefix, None)));
        }
        for text in ["any", "0", "53", "65535", "1000-2000", "0-1"] {
            let ports = parse_ports(text).unwrap();
            assert_eq!(ports_text(&ports), text);
            assert_eq!(parse_ports(&ports_text(&ports)), Ok(ports));
        }
        for proto in (0..=255).chain([PROTO_ARP, PROTO_ANY]) {
            assert_eq!(parse_proto(&proto_text(proto)), Ok(proto));
        }
        for icmp_type in (0..=255).chain([ICMP_TYPE_ANY]) {
            assert_eq!(parse_icmp_type(&icmp_type_text(icmp_type)), Ok(icmp_type));
        }
    }

    /// net-common's generated rule sets (the benchmark shapes, the differential tests' pools
    /// and the ClassBench-style profiles) hold only rules netxdp accepts as they are: every field reads back from its
    /// text (no host bits, no reversed range), and the fields build the same match.
    #[test]
    fn generated_rules_are_accepted_unchanged() {
        use net_common::{
            classbench::{self, Profile},
            rulegen::{Shape, generate, random_rules},
        };
        for seed in [1, 2, 0xdead_beef] {
            let mut sets: Vec<(&str, _)> = Shape::ALL
                .iter()
                .map(|&shape| (shape.as_str(), generate(shape, seed, 2000)))
                .collect();
            sets.push(("random", random_rules(seed, 2000)));
            for profile in Profile::ALL {
                sets.push((profile.as_str(), classbench::rules(profile, seed, 2000)));
            }
            for (name, rules) in sets {
                for rule in rules {
                    let m = rule.matches;
                    for prefix in [m.src, m.dst] {
                        assert_eq!(parse_prefix(&prefix_text(&prefix)), Ok((prefix, None)));
                    }
                    for ports in [m.sport, m.dport] {
                        assert_eq!(parse_ports(&ports_text(&ports)), Ok(ports));
                    }
                    assert_eq!(parse_proto(&proto_text(m.proto)), Ok(m.proto));
                    assert_eq!(
                        parse_icmp_type(&icmp_type_text(m.icmp_type)),
                        Ok(m.icmp_type)
                    );
                    assert_eq!(
                        build_match(m.src, m.dst, m.proto, m.sport, m.dport, m.icmp_type),
                        Ok(m),
                        "{name}, seed {seed}: {}",
                        match_text(&m)
                    );
                }
            }
        }
    }
}
