//! A `limit` rule's rate, burst, key and ban as text: parsed from the command line and the
//! rules file, and shown back in the same form (see `net_common::limit` for what they do).
//!
//! - rate: `N/s`, `N/m` or `N/h` packets, or bytes with a unit before the slash: `bit`,
//!   `kbit`, `mbit`, `gbit`, `bytes`, `kbytes`, `mbytes`, `gbytes` (powers of 1000, as tc
//!   reads them): `10mbit/s`. Byte rates are shown in bits.
//! - burst: units (packets, or bytes) that may come at once; one second of the rate if not
//!   given.
//! - per: `src` (the default), `src/LEN`, `dst`, `dst/LEN`, `flow` or `rule`. A length up to
//!   32 applies to IPv4 and one above to IPv6 (`src/24`, `src/64`); `src/24/64` gives both.
//! - ban: how long a source that goes over is banned (`30s`, `10m`), for `src` and `flow`.

use std::{fmt::Write as _, time::Duration};

use net_common::{
    limit::{Limit, MAX_COST, Per, UNIT_SHIFT},
    rule::{Action, Rule},
};

/// Why text is not a limit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error(
        "`{0}` is not a rate: expected N/s, N/m or N/h packets, or bytes with a unit before the \
         slash (bit, kbit, mbit, gbit, bytes, kbytes, mbytes, gbytes): 1000/s, 10mbit/s"
    )]
    Rate(String),
    #[error("`{0}`: a rate must be above 0")]
    ZeroRate(String),
    #[error("`{0}`: a bit rate must be a whole number of bytes (a multiple of 8 bits)")]
    PartialByte(String),
    #[error(
        "`{0}` is out of range: at most 10^15 packets or bytes a second, at least a byte every 4 s"
    )]
    RateRange(String),
    #[error("a burst must be above 0")]
    ZeroBurst,
    #[error(
        "a burst of {0} bytes is smaller than a full-size frame: packets above it could never \
         pass (give at least {MIN_BYTE_BURST})"
    )]
    SmallByteBurst(u64),
    #[error("a burst of {0} units at this rate lasts longer than a year: give a smaller one")]
    LongBurst(u64),
    #[error("`{0}` is not a key: expected src, src/LEN, dst, dst/LEN, flow or rule")]
    Per(String),
    #[error(
        "`{0}`: an IPv4 prefix is /0 to /32 and an IPv6 one /33 to /128 (src/24/64 gives both)"
    )]
    PerLength(String),
    #[error("`{0}` is not a duration: {1} (a duration such as 30s, 10m or 2h)")]
    Ban(String, String),
    #[error("`{0}` is outside 1s to one year")]
    BanRange(String),
    #[error("--ban bans sources: it needs --per src, src/LEN or flow (here per is {0})")]
    BanNeedsSource(String),
    #[error("{0} is for --action limit (a rules file: action = \"limit\")")]
    NotALimit(&'static str),
    #[error("--action limit needs --rate (a rules file: rate = \"1000/s\")")]
    NoRate,
}

/// The smallest burst of a byte rate: one full-size Ethernet frame.
pub const MIN_BYTE_BURST: u64 = 1518;

/// A limit's fields as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitText<'a> {
    pub rate: Option<&'a str>,
    pub burst: Option<u64>,
    pub per: Option<&'a str>,
    pub ban: Option<&'a str>,
}

impl LimitText<'_> {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The limit these fields give a rule of `action` ("limit", or another which takes none).
    pub fn limit(&self, is_limit: bool) -> Result<Limit, LimitError> {
        if !is_limit {
            return match self.is_empty() {
                true => Ok(Limit::NONE),
                false => Err(LimitError::NotALimit(self.first_given())),
            };
        }
        let rate_text = self.rate.ok_or(LimitError::NoRate)?;
        let (rate, period_secs, bytes) = parse_rate(rate_text)?;
        let (per, v4_len, v6_len) = parse_per(self.per.unwrap_or("src"))?;
        let ban_ns = match self.ban {
            None => 0,
            Some(text) => {
                if !matches!(per, Per::Src | Per::Flow) {
                    return Err(LimitError::BanNeedsSource(per_text_of(per, v4_len, v6_len)));
                }
                parse_ban(text)?.as_nanos() as u64
            }
        };
        let second = rate.div_ceil(period_secs as u64).max(1);
        let burst = match self.burst {
            Some(0) => return Err(LimitError::ZeroBurst),
            Some(burst) => burst,
            None if bytes => second.max(MIN_BYTE_BURST),
            None => second,
        };
        if bytes && burst < MIN_BYTE_BURST {
            return Err(LimitError::SmallByteBurst(burst));
        }
        let unit_ns_fp = ((period_secs as u128 * 1_000_000_000) << UNIT_SHIFT) / rate as u128;
        let most = if bytes { u64::MAX / MAX_COST } else { u64::MAX };
        if unit_ns_fp == 0 || unit_ns_fp > most as u128 {
            return Err(LimitError::RateRange(rate_text.to_owned()));
        }
        let burst_ns = (burst as u128 * unit_ns_fp) >> UNIT_SHIFT;
        if burst_ns > 365 * 86_400 * 1_000_000_000 {
            return Err(LimitError::LongBurst(burst));
        }
        Ok(Limit {
            unit_ns_fp: unit_ns_fp as u64,
            burst_ns: burst_ns as u64,
            ban_ns,
            rate,
            burst,
            state_id: 0,
            period_secs,
            per: per as u8,
            v4_len,
            v6_len,
            bytes: u8::from(bytes),
            _reserved: 0,
        })
    }

    fn first_given(&self) -> &'static str {
        if self.rate.is_some() {
            "rate"
        } else if self.burst.is_some() {
            "burst"
        } else if self.per.is_some() {
            "per"
        } else {
            "ban"
        }
    }
}

/// Byte units of a rate, with their size in bits.
const BIT_UNITS: [(&str, u64); 8] = [
    ("gbit", 1_000_000_000),
    ("mbit", 1_000_000),
    ("kbit", 1_000),
    ("bit", 1),
    ("gbytes", 8_000_000_000),
    ("mbytes", 8_000_000),
    ("kbytes", 8_000),
    ("bytes", 8),
];

/// The most units a second a rate may have.
const MAX_RATE_PER_SEC: u128 = 1_000_000_000_000_000;

/// `N[unit]/period`: the rate in units (bytes when a unit is given) per `period_secs`.
pub fn parse_rate(text: &str) -> Result<(u64, u32, bool), LimitError> {
    let bad = || LimitError::Rate(text.to_owned());
    let lower = text.trim().to_ascii_lowercase();
    let (amount, period) = lower.split_once('/').ok_or_else(bad)?;
    let period_secs = match period {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return Err(bad()),
    };
    let digits = amount.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &amount[digits.len()..];
    let count: u128 = digits.parse().map_err(|_| bad())?;
    let (rate, bytes) = match unit {
        "" | "p" | "pkts" | "packets" => (count, false),
        unit => {
            let (_, bits) = BIT_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .ok_or_else(bad)?;
            let total = count * *bits as u128;
            if !total.is_multiple_of(8) {
                return Err(LimitError::PartialByte(text.to_owned()));
            }
            (total / 8, true)
        }
    };
    if rate == 0 {
        return Err(LimitError::ZeroRate(text.to_owned()));
    }
    if rate / period_secs as u128 > MAX_RATE_PER_SEC {
        return Err(LimitError::RateRange(text.to_owned()));
    }
    Ok((rate as u64, period_secs, bytes))
}

/// `src`, `src/LEN`, `src/LEN/LEN`, the same for `dst`, `flow` or `rule`.
pub fn parse_per(text: &str) -> Result<(Per, u8, u8), LimitError> {
    let lower = text.trim().to_ascii_lowercase();
    let mut parts = lower.split('/');
    let per = match parts.next() {
        Some("src") => Per::Src,
        Some("dst") => Per::Dst,
        Some("flow") => Per::Flow,
        Some("rule") => Per::Rule,
        _ => return Err(LimitError::Per(text.to_owned())),
    };
    let lengths: Vec<&str> = parts.collect();
    if !lengths.is_empty() && !matches!(per, Per::Src | Per::Dst) || lengths.len() > 2 {
        return Err(LimitError::Per(text.to_owned()));
    }
    let (mut v4_len, mut v6_len) = (32, 128);
    for (index, length) in lengths.iter().enumerate() {
        let length: u8 = length
            .parse()
            .map_err(|_| LimitError::Per(text.to_owned()))?;
        // One length: its size says its family. Two: IPv4's, then IPv6's.
        let ipv6 = if lengths.len() == 2 {
            index == 1
        } else {
            length > 32
        };
        let fits = if ipv6 {
            length <= 128 && (lengths.len() == 2 || length > 32)
        } else {
            length <= 32
        };
        if !fits {
            return Err(LimitError::PerLength(text.to_owned()));
        }
        if ipv6 {
            v6_len = length;
        } else {
            v4_len = length;
        }
    }
    Ok((per, v4_len, v6_len))
}

/// A ban's length, as humantime reads it: from a second to a year.
pub fn parse_ban(text: &str) -> Result<Duration, LimitError> {
    let duration = humantime::parse_duration(text)
        .map_err(|error| LimitError::Ban(text.to_owned(), error.to_string()))?;
    if !(Duration::from_secs(1)..=Duration::from_secs(31_536_000)).contains(&duration) {
        return Err(LimitError::BanRange(text.to_owned()));
    }
    Ok(duration)
}

/// The rate as [`parse_rate`] reads it back: packets as given, bytes in bits.
pub fn rate_text(limit: &Limit) -> String {
    let period = match limit.period_secs {
        60 => "m",
        3600 => "h",
        _ => "s",
    };
    if limit.bytes == 0 {
        return format!("{}/{period}", limit.rate);
    }
    let bits = limit.rate as u128 * 8;
    let (unit, size) = BIT_UNITS[..4]
        .iter()
        .find(|(_, size)| bits.is_multiple_of(*size as u128))
        .copied()
        .unwrap_or(("bit", 1));
    format!("{}{unit}/{period}", bits / size as u128)
}

/// The key as [`parse_per`] reads it back.
pub fn per_text(limit: &Limit) -> String {
    per_text_of(limit.per(), limit.v4_len, limit.v6_len)
}

fn per_text_of(per: Per, v4_len: u8, v6_len: u8) -> String {
    let mut text = match per {
        Per::Src => "src",
        Per::Dst => "dst",
        Per::Flow => return "flow".to_owned(),
        Per::Rule => return "rule".to_owned(),
    }
    .to_owned();
    match (v4_len, v6_len) {
        (32, 128) => {}
        (v4, 128) => _ = write!(text, "/{v4}"),
        (32, v6) if v6 > 32 => _ = write!(text, "/{v6}"),
        (v4, v6) => _ = write!(text, "/{v4}/{v6}"),
    }
    text
}

/// The ban's length, if the limit bans.
pub fn ban_text(limit: &Limit) -> Option<String> {
    (limit.ban_ns != 0).then(|| {
        humantime::format_duration(Duration::from_secs(limit.ban_ns / 1_000_000_000)).to_string()
    })
}

/// The whole limit in one line, as `rule list` shows it: `1000/s burst 500 per src ban 30s`.
pub fn limit_text(limit: &Limit) -> String {
    let mut text = format!(
        "{} burst {} per {}",
        rate_text(limit),
        limit.burst,
        per_text(limit)
    );
    if let Some(ban) = ban_text(limit) {
        let _ = write!(text, " ban {ban}");
    }
    text
}

/// A rule's action as `rule list` and the account of changes show it: `drop`, or
/// `limit 1000/s burst 500 per src`.
pub fn action_text(rule: &Rule) -> String {
    match rule.action() {
        Action::Limit => format!("limit {}", limit_text(&rule.limit)),
        action => action.as_str().to_owned(),
    }
}

/// Two limits that behave alike: equal but for their state.
pub fn same_limit(a: &Limit, b: &Limit) -> bool {
    Limit { state_id: 0, ..*a } == Limit { state_id: 0, ..*b }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(
        rate: &str,
        burst: Option<u64>,
        per: Option<&str>,
        ban: Option<&str>,
    ) -> Result<Limit, LimitError> {
        LimitText {
            rate: Some(rate),
            burst,
            per,
            ban,
        }
        .limit(true)
    }

    #[test]
    fn rates_read_back_as_written() {
        for text in [
            "1000/s", "5/m", "1/h", "10mbit/s", "1gbit/s", "12kbit/m", "8bit/s",
        ] {
            let limit = limit(text, Some(2000), None, None).unwrap();
            assert_eq!(rate_text(&limit), text);
        }
        let limit = limit("500kbytes/s", None, None, None).unwrap();
        assert_eq!(
            (rate_text(&limit), limit.burst),
            ("4mbit/s".to_owned(), 500_000)
        );
    }

    #[test]
    fn the_time_a_unit_earns_and_the_burst_follow_from_the_rate() {
        let packets = limit("1000/s", Some(500), None, None).unwrap();
        assert_eq!(packets.increment_ns(1500), 1_000_000);
        assert_eq!(packets.burst_ns, 500_000_000);
        let bytes = limit("10mbit/s", None, None, None).unwrap();
        assert_eq!(bytes.increment_ns(1250), 1_000_000);
        assert_eq!(bytes.burst, 1_250_000, "a second of the rate");
        assert_eq!(limit("1/m", None, None, None).unwrap().burst, 1);
    }

    #[test]
    fn keys_read_back_as_written() {
        for text in [
            "src",
            "src/24",
            "src/64",
            "src/24/64",
            "dst/16",
            "flow",
            "rule",
            "src/32/32",
        ] {
            let (per, v4, v6) = parse_per(text).unwrap();
            assert_eq!(per_text_of(per, v4, v6), text);
        }
        assert_eq!(parse_per("SRC/24/48"), Ok((Per::Src, 24, 48)));
    }

    #[test]
    fn bad_limits_name_the_problem() {
        assert!(matches!(
            limit("fast", None, None, None),
            Err(LimitError::Rate(_))
        ));
        assert!(matches!(
            limit("0/s", None, None, None),
            Err(LimitError::ZeroRate(_))
        ));
        assert!(matches!(
            limit("100/d", None, None, None),
            Err(LimitError::Rate(_))
        ));
        assert!(matches!(
            limit("12bit/s", None, None, None),
            Err(LimitError::PartialByte(_))
        ));
        assert!(matches!(
            limit("10mb/s", None, None, None),
            Err(LimitError::Rate(_))
        ));
        assert_eq!(
            limit("1000/s", Some(0), None, None),
            Err(LimitError::ZeroBurst)
        );
        assert_eq!(
            limit("1mbit/s", Some(100), None, None),
            Err(LimitError::SmallByteBurst(100))
        );
        assert!(matches!(
            limit("1/h", Some(10_000), None, None),
            Err(LimitError::LongBurst(_))
        ));
        assert!(matches!(
            limit("1/s", None, Some("src/33/24"), None),
            Err(LimitError::PerLength(_))
        ));
        assert!(matches!(
            limit("1/s", None, Some("src/129"), None),
            Err(LimitError::PerLength(_))
        ));
        assert!(matches!(
            limit("1/s", None, Some("flow/24"), None),
            Err(LimitError::Per(_))
        ));
        assert!(matches!(
            limit("1/s", None, Some("dst"), Some("30s")),
            Err(LimitError::BanNeedsSource(_))
        ));
        assert!(matches!(
            limit("1/s", None, None, Some("forever")),
            Err(LimitError::Ban(..))
        ));
        assert!(matches!(
            limit("1/s", None, None, Some("2y")),
            Err(LimitError::BanRange(_))
        ));
        let not_a_limit = LimitText {
            burst: Some(5),
            ..LimitText::default()
        };
        assert_eq!(
            not_a_limit.limit(false),
            Err(LimitError::NotALimit("burst"))
        );
        assert_eq!(LimitText::default().limit(true), Err(LimitError::NoRate));
    }

    #[test]
    fn the_whole_limit_reads_in_one_line() {
        let limit = limit("1000/s", Some(500), Some("src/24"), Some("30s")).unwrap();
        assert_eq!(limit_text(&limit), "1000/s burst 500 per src/24 ban 30s");
    }
}
