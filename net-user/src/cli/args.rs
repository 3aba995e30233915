//! The argument groups and values commands share, and how their text is read.

use std::{num::NonZeroU64, time::Duration};

use clap::Args;
use net_common::{
    limit::Limit,
    rule::{Action, Fragments, Malformed, PortRange, Prefix},
};

use crate::{
    filter::{
        DEFAULT_PRIORITY,
        limit::{self, LimitError, LimitText},
        spec::{self, Normalised},
    },
    program::Flows,
    serve::RuleMetrics,
};

/// Flow tracking, at attach.
#[derive(Debug, Args, Clone, Copy)]
pub struct FlowArgs {
    /// Count no flows (`netxdp flows` then has nothing to show); spares the per-packet cost
    /// of the flow table (see the README's benchmarks).
    #[arg(long)]
    pub no_flows: bool,
    /// Memory for the flow table, in bytes, K, M or G (powers of 1024): 16M holds some
    /// 100,000 flows. Each CPU evicts the least recently seen of its share when that is full.
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = flow_table_bytes,
          conflicts_with = "no_flows")]
    pub flow_table_size: u64,
}

pub(super) fn rule_metrics(text: &str) -> Result<RuleMetrics, String> {
    let top = |count: &str| match count.trim().parse::<usize>() {
        Ok(count) if count > 0 => Ok(RuleMetrics::Top(count)),
        _ => Err(format!("{count:?} is not a number of rules (top=100, say)")),
    };
    match text {
        "all" => Ok(RuleMetrics::All),
        "none" => Ok(RuleMetrics::None),
        _ => match text.strip_prefix("top") {
            Some(count) => top(count.trim_start_matches(['=', ' ', ':'])),
            None => Err(format!("{text:?}: all, none or top=N")),
        },
    }
}

/// The bounds of `--flow-table-size`: room for some flows on every possible CPU, and no
/// more than the kernel lets one map allocate (`KMALLOC_MAX_SIZE` bounds the buckets).
const FLOW_TABLE_BYTES: std::ops::RangeInclusive<u64> = (256 << 10)..=(4 << 30);

pub(super) fn flow_table_bytes(text: &str) -> Result<u64, String> {
    let bytes = parse_size::Config::new()
        .with_binary()
        .parse_size(text)
        .map_err(|error| format!("{error} (a size such as 16M, 512K or 1G)"))?;
    if FLOW_TABLE_BYTES.contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!(
            "{bytes} bytes is outside {}K..={}G",
            FLOW_TABLE_BYTES.start() >> 10,
            FLOW_TABLE_BYTES.end() >> 30
        ))
    }
}

impl FlowArgs {
    pub fn flows(&self) -> Flows {
        if self.no_flows {
            Flows::Off
        } else {
            Flows::Track {
                table_bytes: self.flow_table_size,
            }
        }
    }
}

/// Which packets `capture` copies, by the action netxdp gave them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CaptureAction {
    Drop,
    Pass,
    All,
}

/// Why a packet got its verdict, as `capture --reason` names it (`net_common::rule::REASONS`
/// with dashes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReasonArg {
    Rule,
    Policy,
    Neighbour,
    Fragment,
    Malformed,
    TinyFragment,
    OverlapFragment,
    Ipv6Chain,
    Ban,
    Limit,
    SynCookie,
}

impl ReasonArg {
    /// The reason's code (`net_common::rule::reason`).
    pub fn code(self) -> u8 {
        use net_common::{parse::Defect, rule::reason};
        match self {
            Self::Rule => reason::RULE,
            Self::Policy => reason::POLICY,
            Self::Neighbour => reason::NEIGHBOUR,
            Self::Fragment => reason::FRAGMENT,
            Self::Malformed => reason::DEFECT + Defect::Malformed as u8,
            Self::TinyFragment => reason::DEFECT + Defect::TinyFragment as u8,
            Self::OverlapFragment => reason::DEFECT + Defect::OverlapFragment as u8,
            Self::Ipv6Chain => reason::DEFECT + Defect::Ipv6Chain as u8,
            Self::Ban => reason::BAN,
            Self::Limit => reason::LIMIT,
            Self::SynCookie => reason::SYNGUARD,
        }
    }
}

pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(seconds > 0.0 && seconds <= 31_536_000.0) {
        return Err(format!("{seconds} s is outside 0 s to one year"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A ban's length, as humantime reads it (`30s`, `10m`, `2h`, `1d`): at least a second, at
/// most a year.
pub(super) fn parse_ban_duration(text: &str) -> Result<Duration, LimitError> {
    limit::parse_ban(text)
}

/// How `flows` orders its rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FlowSort {
    /// Most bytes first.
    #[default]
    Bytes,
    /// Most packets first.
    Packets,
    /// Highest average rate (bits per second between the first and last packet) first.
    Rate,
}

/// A rule's fields on the command line.
#[derive(Debug, Args, Clone)]
pub struct RuleArgs {
    /// What a matching packet gets: pass, drop, or limit (pass within --rate, drop beyond).
    #[arg(long, value_enum)]
    pub action: RuleActionArg,
    /// Source address or prefix (IPv4 or IPv6), or any.
    #[arg(long, value_name = "CIDR", value_parser = parse_prefix_arg)]
    pub src: Option<(Prefix, Option<Normalised>)>,
    /// Destination address or prefix (IPv4 or IPv6), or any.
    #[arg(long, value_name = "CIDR", value_parser = parse_prefix_arg)]
    pub dst: Option<(Prefix, Option<Normalised>)>,
    /// tcp, udp, icmp, icmpv6, arp, an IP protocol number, or any.
    #[arg(long, value_name = "PROTO", value_parser = spec::parse_proto)]
    pub proto: Option<u16>,
    /// Source port or inclusive range FIRST-LAST (needs --proto tcp or udp).
    #[arg(long, value_name = "PORT[-PORT]", value_parser = spec::parse_ports)]
    pub sport: Option<PortRange>,
    /// Destination port or inclusive range FIRST-LAST (needs --proto tcp or udp).
    #[arg(long, value_name = "PORT[-PORT]", value_parser = spec::parse_ports)]
    pub dport: Option<PortRange>,
    /// ICMP or ICMPv6 type, 0-255 (needs --proto icmp or icmpv6).
    #[arg(long, value_name = "TYPE", value_parser = spec::parse_icmp_type)]
    pub icmp_type: Option<u16>,
    /// Lower is tried first; ties go to the older rule.
    #[arg(long, default_value_t = DEFAULT_PRIORITY)]
    pub priority: u32,
    /// With --action limit: N/s, N/m or N/h packets, or bytes with a unit (10mbit/s,
    /// 500kbytes/s; powers of 1000).
    #[arg(long, value_name = "RATE", help_heading = "Limits")]
    pub rate: Option<String>,
    /// Packets (bytes, for a byte rate) that may come at once [default: one second of the
    /// rate].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub burst: Option<u64>,
    /// What the rate is counted per: src (the default), src/LEN (src/24, src/64, src/24/64),
    /// dst, dst/LEN, flow, or rule (one bucket for the rule).
    #[arg(long, value_name = "KEY", help_heading = "Limits")]
    pub per: Option<String>,
    /// Ban a source that goes over its rate for this long (30s, 10m): its packets are then
    /// dropped before any rule. With --per src, src/LEN or flow.
    #[arg(long, value_name = "DURATION", help_heading = "Limits")]
    pub ban: Option<String>,
}

impl RuleArgs {
    pub fn action_text(&self) -> &'static str {
        Action::from(self.action).as_str()
    }

    /// The limit the --rate, --burst, --per and --ban flags give the rule.
    pub fn limit(&self) -> Result<Limit, LimitError> {
        LimitText {
            rate: self.rate.as_deref(),
            burst: self.burst,
            per: self.per.as_deref(),
            ban: self.ban.as_deref(),
        }
        .limit(self.action == RuleActionArg::Limit)
    }
}

/// A rule's action, as the command line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RuleActionArg {
    Pass,
    Drop,
    Limit,
}

impl From<RuleActionArg> for Action {
    fn from(arg: RuleActionArg) -> Action {
        match arg {
            RuleActionArg::Pass => Action::Pass,
            RuleActionArg::Drop => Action::Drop,
            RuleActionArg::Limit => Action::Limit,
        }
    }
}

pub(super) fn parse_prefix_arg(
    text: &str,
) -> Result<(Prefix, Option<Normalised>), spec::SpecError> {
    spec::parse_prefix(text)
}

/// A verdict, as the command line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyArg {
    Pass,
    Drop,
}

impl From<PolicyArg> for Action {
    fn from(arg: PolicyArg) -> Action {
        match arg {
            PolicyArg::Pass => Action::Pass,
            PolicyArg::Drop => Action::Drop,
        }
    }
}

/// `--fragments`, as the command line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FragmentsArg {
    /// Decided by the default policy.
    Policy,
    /// Dropped.
    Drop,
}

impl From<FragmentsArg> for Fragments {
    fn from(arg: FragmentsArg) -> Fragments {
        match arg {
            FragmentsArg::Policy => Fragments::Policy,
            FragmentsArg::Drop => Fragments::Drop,
        }
    }
}

/// `--malformed`, as the command line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MalformedArg {
    /// Dropped before any rule, and counted by reason.
    Drop,
    /// Classified like any other packet (unsafe).
    Policy,
}

impl From<MalformedArg> for Malformed {
    fn from(arg: MalformedArg) -> Malformed {
        match arg {
            MalformedArg::Drop => Malformed::Drop,
            MalformedArg::Policy => Malformed::Policy,
        }
    }
}

/// How often to sample, and how many times.
#[derive(Debug, Args, Clone, Copy)]
pub struct Sampling {
    /// Seconds between samples (fractions allowed, at least 0.05).
    #[arg(short, long, default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this many samples (default: until Ctrl-C).
    #[arg(short, long)]
    pub count: Option<NonZeroU64>,
}

pub(super) fn parse_interval(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.05..=86_400.0).contains(&seconds) {
        return Err(format!("{seconds} s is outside 0.05 s to 86400 s"));
    }
    Ok(Duration::from_secs_f64(seconds))
}
