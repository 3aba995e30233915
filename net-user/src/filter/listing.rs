//! How a rule set is shown by `netxdp rule list`: a table an operator reads, and a JSON
//! document with a versioned schema (documented in the README).

use std::{
    fmt::Write as _,
    time::{Duration, SystemTime},
};

use net_common::rule::{Action, Rule, RuleCounter};
use serde::Serialize;

use super::{
    RuleSet,
    limit::{ban_text, per_text, rate_text},
    spec::{self, Field},
};
use crate::clock::monotonic_ns;

pub const RULES_SCHEMA: &str = "netxdp.rules/v1";

/// `netxdp rule list --json`.
#[derive(Debug, Serialize)]
pub struct RulesRecord {
    pub schema: &'static str,
    pub iface: String,
    pub policy: &'static str,
    pub fragments: &'static str,
    pub malformed: &'static str,
    /// In the order they are tried.
    pub rules: Vec<RuleRecord>,
}

/// One rule and its counters.
#[derive(Debug, Serialize)]
pub struct RuleRecord {
    pub id: u32,
    pub priority: u32,
    pub action: &'static str,
    pub src: String,
    pub dst: String,
    pub proto: String,
    pub sport: String,
    pub dport: String,
    pub icmp_type: String,
    pub packets: u64,
    pub bytes: u64,
    /// A `limit` rule's limit, and what it did; `None` for other rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitRecord>,
    /// RFC 3339, UTC; `None` if the rule never matched.
    pub last_hit: Option<String>,
    /// Seconds since the last match; `None` if the rule never matched.
    pub last_hit_secs_ago: Option<f64>,
}

/// A `limit` rule's limit as the rules file writes it, and its counts.
#[derive(Debug, Serialize)]
pub struct LimitRecord {
    pub rate: String,
    pub burst: u64,
    pub per: String,
    /// How long a source that goes over is banned, if it is.
    pub ban: Option<String>,
    /// Packets dropped for going over the rate (counted in `packets` too).
    pub limited: u64,
    /// Bans issued.
    pub bans: u64,
}

impl RulesRecord {
    /// `counters` holds each rule's counters, in the order of `set.rules()`.
    pub fn new(iface: &str, set: &RuleSet, counters: &[RuleCounter]) -> Self {
        let now_ns = monotonic_ns();
        let now = SystemTime::now();
        let rules = set
            .rules()
            .iter()
            .zip(counters)
            .map(|(rule, counter)| RuleRecord::new(rule, counter, now_ns, now))
            .collect();
        Self {
            schema: RULES_SCHEMA,
            iface: iface.to_owned(),
            policy: set.policy.as_str(),
            fragments: set.fragments.as_str(),
            malformed: set.malformed.as_str(),
            rules,
        }
    }

    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}: policy {}, fragments {}, malformed {}, {} rule{}\n",
            self.iface,
            self.policy,
            self.fragments,
            self.malformed,
            self.rules.len(),
            if self.rules.len() == 1 { "" } else { "s" }
        );
        if self.rules.is_empty() {
            return text;
        }
        let header = [
            "ID", "PRIO", "ACTION", "SRC", "DST", "PROTO", "SPORT", "DPORT", "ICMP", "PACKETS",
            "BYTES", "LAST HIT",
        ];
        let rows: Vec<[String; 12]> = self
            .rules
            .iter()
            .map(|rule| {
                let action = match &rule.limit {
                    // What the limit is, and what it did: packets dropped over it, bans.
                    Some(limit) => {
                        let mut text = format!(
                            "limit {} burst {} per {}",
                            limit.rate, limit.burst, limit.per
                        );
                        if let Some(ban) = &limit.ban {
                            let _ = write!(text, " ban {ban}");
                        }
                        let _ = write!(text, " ({} over", limit.limited);
                        if limit.ban.is_some() {
                            let _ = write!(text, ", {} bans", limit.bans);
                        }
                        text.push(')');
                        text
                    }
                    None => rule.action.to_owned(),
                };
                [
                    rule.id.to_string(),
                    rule.priority.to_string(),
                    action,
                    rule.src.clone(),
                    rule.dst.clone(),
                    rule.proto.clone(),
                    rule.sport.clone(),
                    rule.dport.clone(),
                    rule.icmp_type.clone(),
                    rule.packets.to_string(),
                    rule.bytes.to_string(),
                    match rule.last_hit_secs_ago {
                        Some(secs) => format!("{}s ago", secs.round()),
                        None => "never".to_owned(),
                    },
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        let mut line = |cells: &[&str]| {
            let mut out = String::new();
            for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
                // Numbers right-aligned, text left-aligned, as ss and ip do.
                let numeric = matches!(index, 0 | 1 | 9 | 10);
                let _ = if numeric {
                    write!(out, "{cell:>width$}  ")
                } else {
                    write!(out, "{cell:<width$}  ")
                };
            }
            text.push_str(out.trim_end());
            text.push('\n');
        };
        line(&header);
        for row in &rows {
            line(&row.each_ref().map(String::as_str));
        }
        text
    }
}

impl RuleRecord {
    fn new(rule: &Rule, counter: &RuleCounter, now_ns: u64, now: SystemTime) -> Self {
        let field = |field| spec::field_text(&rule.matches, field);
        let ago = (counter.last_hit_ns != 0)
            .then(|| Duration::from_nanos(now_ns.saturating_sub(counter.last_hit_ns)));
        Self {
            id: rule.id,
            priority: rule.priority,
            action: rule.action().as_str(),
            src: field(Field::Src),
            dst: field(Field::Dst),
            proto: field(Field::Proto),
            sport: field(Field::Sport),
            dport: field(Field::Dport),
            icmp_type: field(Field::IcmpType),
            packets: counter.packets,
            bytes: counter.bytes,
            limit: (rule.action() == Action::Limit).then(|| LimitRecord {
                rate: rate_text(&rule.limit),
                burst: rule.limit.burst,
                per: per_text(&rule.limit),
                ban: ban_text(&rule.limit),
                limited: counter.limited,
                bans: counter.bans,
            }),
            last_hit: ago
                .and_then(|ago| now.checked_sub(ago))
                .map(|at| humantime::format_rfc3339_seconds(at).to_string()),
            last_hit_secs_ago: ago.map(|ago| ago.as_secs_f64()),
        }
    }
}
