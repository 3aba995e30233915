//! The rules file of `netxdp apply`: an interface's whole rule set, declared.
//!
//! ```toml
//! # netxdp rules file: netxdp apply IFACE FILE
//! policy = "drop"        # pass (default) | drop: what packets no rule matches get
//! fragments = "policy"   # policy (default) | drop: what IP packets without their L4 header
//!                        # (later fragments) get when no rule matches them
//! malformed = "drop"     # drop (default) | policy: defective packets (malformed headers,
//!                        # tiny or overlapping fragments) are dropped before any rule;
//!                        # "policy" classifies them like others, which lets tiny fragments
//!                        # past rules on ports: unsafe
//!
//! [[rule]]
//! action = "pass"        # required: pass | drop
//! priority = 10          # optional, default 1000; lower is tried first, ties by rule id
//! src = "198.18.0.0/24"  # optional, default any; an IPv4 or IPv6 address or prefix
//! dst = "any"
//! proto = "udp"          # tcp | udp | icmp | icmpv6 | arp | 0..255 | any
//! sport = "1024-65535"   # a number or "first-last"; needs proto tcp or udp
//! dport = 53
//! # icmp_type = 8        # 0..255; needs proto icmp or icmpv6
//!
//! [[rule]]
//! action = "pass"
//! proto = "icmpv6"
//! icmp_type = 128
//!
//! [[rule]]
//! action = "limit"       # pass within the rate, drop beyond it
//! proto = "udp"
//! dport = 53
//! rate = "1000/s"        # required with limit: N/s, N/m, N/h, or bytes: "10mbit/s"
//! burst = 500            # optional, default one second of the rate
//! per = "src"            # src (default) | src/LEN | dst | dst/LEN | flow | rule
//! ban = "30s"            # optional: a source that goes over is banned this long
//! ```
//!
//! Every key but `action` may be left out, and means `any` (or the default) then. Ports, ICMP
//! types and protocols may be written as numbers or strings. Unknown keys, two rules that
//! match the same packets, and more than [`MAX_RULES`] rules are errors, each reported with
//! its line. Rules already on the interface that the file names again keep their ids (and
//! counters); new rules get ids in file order. A loaded rule set can be written back in this
//! form ([`super::render::render_rules_file`]), and `apply --dry-run` shows what applying a file
//! would change ([`super::account::render_changes`]).

use std::{collections::HashMap, fmt, ops::Range};

use net_common::{
    limit::Limit,
    rule::{Action, Fragments, ICMP_TYPE_ANY, MAX_RULES, Malformed, PROTO_ANY, PortRange, Prefix},
};
use serde::{Deserialize, Deserializer, de};
use toml::Spanned;

use super::{
    limit::{LimitError, LimitText},
    ruleset::{Changes, DEFAULT_PRIORITY, NewRule, RuleSet},
    spec::{
        Field, SpecError, build_match, match_text, parse_icmp_type, parse_ports, parse_prefix,
        parse_proto,
    },
};

/// A rules file, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesFile {
    pub policy: Action,
    pub fragments: Fragments,
    pub malformed: Malformed,
    /// In file order, the order in which new rules get their ids.
    pub rules: Vec<NewRule>,
    /// Prefixes given with host bits set, and what they were taken as: worth telling the
    /// user, since such a rule matches more than the address written.
    pub notes: Vec<String>,
}

impl RulesFile {
    /// `before` made to hold this file's rules and settings: rules already there keep their
    /// ids and counters. With the changes, for the account of what was done.
    pub fn applied_to(
        &self,
        before: &RuleSet,
    ) -> Result<(RuleSet, Changes), super::ruleset::RuleSetError> {
        let mut after = before.clone();
        let changes = after.replace(&self.rules)?;
        after.policy = self.policy;
        after.fragments = self.fragments;
        after.malformed = self.malformed;
        Ok((after, changes))
    }
}

/// Why a rules file cannot be applied. Each names the line at fault.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Syntax, an unknown key or a value of the wrong type; toml's message shows the line.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error("line {line}, rule {rule}, field {field}: {error}")]
    Field {
        line: usize,
        rule: usize,
        field: Field,
        error: SpecError,
    },
    #[error(
        "line {line}, rule {rule} matches the same packets as rule {first} at line \
         {first_line} ({matches}): keep one"
    )]
    Duplicate {
        line: usize,
        rule: usize,
        first: usize,
        first_line: usize,
        matches: String,
    },
    #[error("{count} rules: an interface holds at most {MAX_RULES}")]
    TooMany { count: usize },
    #[error("line {line}, rule {rule}: {error}")]
    Limit {
        line: usize,
        rule: usize,
        error: LimitError,
    },
}

/// The file as toml reads it, before its fields are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default = "default_policy", with = "ActionText")]
    policy: Action,
    #[serde(default, with = "FragmentsText")]
    fragments: Fragments,
    #[serde(default, with = "MalformedText")]
    malformed: Malformed,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

fn default_policy() -> Action {
    RuleSet::default().policy
}

#[derive(Deserialize)]
#[serde(remote = "Action", rename_all = "lowercase")]
enum ActionText {
    Pass,
    Drop,
}

#[derive(Deserialize)]
#[serde(remote = "Action", rename_all = "lowercase")]
enum RuleActionText {
    Pass,
    Drop,
    Limit,
}

#[derive(Deserialize)]
#[serde(remote = "Fragments", rename_all = "lowercase")]
enum FragmentsText {
    Policy,
    Drop,
}

#[derive(Deserialize)]
#[serde(remote = "Malformed", rename_all = "lowercase")]
enum MalformedText {
    Drop,
    Policy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(with = "RuleActionText")]
    action: Action,
    priority: Option<u32>,
    rate: Option<Spanned<Text>>,
    burst: Option<Spanned<u64>>,
    per: Option<Spanned<Text>>,
    ban: Option<Spanned<Text>>,
    src: Option<Spanned<Text>>,
    dst: Option<Spanned<Text>>,
    proto: Option<Spanned<Text>>,
    sport: Option<Spanned<Text>>,
    dport: Option<Spanned<Text>>,
    icmp_type: Option<Spanned<Text>>,
}

impl RawRule {
    fn value(&self, field: Field) -> Option<&Spanned<Text>> {
        match field {
            Field::Src => self.src.as_ref(),
            Field::Dst => self.dst.as_ref(),
            Field::Proto => self.proto.as_ref(),
            Field::Sport => self.sport.as_ref(),
            Field::Dport => self.dport.as_ref(),
            Field::IcmpType => self.icmp_type.as_ref(),
        }
    }
}

/// A field's value as a string or a number, so that `dport = 53` and `dport = "53"` both
/// read; the field's own parser then checks it.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Text, E> {
                Ok(Text(value.to_owned()))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Reads and checks a rules file.
pub fn parse_rules_file(text: &str) -> Result<RulesFile, FileError> {
    let raw: RawFile = toml::from_str(text)?;
    if raw.rule.len() > MAX_RULES {
        return Err(FileError::TooMany {
            count: raw.rule.len(),
        });
    }
    let mut file = RulesFile {
        policy: raw.policy,
        fragments: raw.fragments,
        malformed: raw.malformed,
        rules: Vec::with_capacity(raw.rule.len()),
        notes: Vec::new(),
    };
    // Each match, with the number and offset of the first rule that has it (lines are
    // counted only for a message: counting them for every rule would take quadratic time).
    let mut seen = HashMap::with_capacity(raw.rule.len());
    for (index, raw_rule) in raw.rule.iter().enumerate() {
        let reader = RuleReader {
            text,
            number: index + 1,
            raw: raw_rule.get_ref(),
            span: raw_rule.span(),
        };
        let rule = reader.read(&mut file.notes)?;
        if let Some(&(first, first_offset)) = seen.get(&rule.matches) {
            return Err(FileError::Duplicate {
                line: line_of(text, reader.span.start),
                rule: reader.number,
                first,
                first_line: line_of(text, first_offset),
                matches: match_text(&rule.matches),
            });
        }
        seen.insert(rule.matches, (reader.number, reader.span.start));
        file.rules.push(rule);
    }
    Ok(file)
}

/// One `[[rule]]` table being checked: where it is, for messages.
struct RuleReader<'a> {
    text: &'a str,
    /// 1-based, in file order.
    number: usize,
    raw: &'a RawRule,
    span: Range<usize>,
}

impl RuleReader<'_> {
    fn read(&self, notes: &mut Vec<String>) -> Result<NewRule, FileError> {
        let matches = build_match(
            self.prefix(Field::Src, notes)?,
            self.prefix(Field::Dst, notes)?,
            self.parse(Field::Proto, parse_proto, PROTO_ANY)?,
            self.parse(Field::Sport, parse_ports, PortRange::ANY)?,
            self.parse(Field::Dport, parse_ports, PortRange::ANY)?,
            self.parse(Field::IcmpType, parse_icmp_type, ICMP_TYPE_ANY)?,
        )
        .map_err(|error| {
            // build_match's errors all name the field at fault.
            let field = error.field().unwrap_or(Field::Proto);
            self.error(field, error)
        })?;
        Ok(NewRule {
            action: self.raw.action,
            priority: self.raw.priority.unwrap_or(DEFAULT_PRIORITY),
            matches,
            limit: self.limit()?,
        })
    }

    /// The rule's limit, from its rate, burst, per and ban.
    fn limit(&self) -> Result<Limit, FileError> {
        let raw = self.raw;
        let text = LimitText {
            rate: raw.rate.as_ref().map(|rate| rate.get_ref().0.as_str()),
            burst: raw.burst.as_ref().map(|burst| *burst.get_ref()),
            per: raw.per.as_ref().map(|per| per.get_ref().0.as_str()),
            ban: raw.ban.as_ref().map(|ban| ban.get_ref().0.as_str()),
        };
        text.limit(raw.action == Action::Limit)
            .map_err(|error| FileError::Limit {
                line: line_of(self.text, self.span.start),
                rule: self.number,
                error,
            })
    }

    /// A prefix field; a prefix given with host bits set gets a note.
    fn prefix(&self, field: Field, notes: &mut Vec<String>) -> Result<Prefix, FileError> {
        let (prefix, note) = self.parse(field, parse_prefix, (Prefix::ANY, None))?;
        if let Some(note) = note {
            notes.push(format!(
                "line {}, rule {}, field {field}: {note}",
                self.line(field),
                self.number
            ));
        }
        Ok(prefix)
    }

    /// The field's value through `parse`, or `any` when the rule leaves it out.
    fn parse<T>(
        &self,
        field: Field,
        parse: impl Fn(&str) -> Result<T, SpecError>,
        any: T,
    ) -> Result<T, FileError> {
        match self.raw.value(field) {
            Some(value) => parse(&value.get_ref().0).map_err(|error| self.error(field, error)),
            None => Ok(any),
        }
    }

    fn error(&self, field: Field, error: SpecError) -> FileError {
        FileError::Field {
            line: self.line(field),
            rule: self.number,
            field,
            error,
        }
    }

    /// The line of the field's value, or of the rule when it has none.
    fn line(&self, field: Field) -> usize {
        let start = self
            .raw
            .value(field)
            .map_or(self.span.start, |value| value.span().start);
        line_of(self.text, start)
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    1 + text
        .bytes()
        .take(offset)
        .filter(|&byte| byte == b'\n')
        .count()
}

#[cfg(test)]
pub(super) mod tests {
    use super::{super::limit::limit_text, *};
    use net_common::rule::Match;

    fn error(text: &str) -> String {
        parse_rules_file(text).unwrap_err().to_string()
    }

    /// A rules file of one rule with these lines.
    fn one_rule(lines: &str) -> String {
        format!("policy = \"drop\"\n\n[[rule]]\n{lines}\n")
    }

    #[test]
    fn the_documented_example_reads() {
        let source = include_str!("file.rs");
        let example: String = source
            .lines()
            .skip_while(|line| *line != "//! ```toml")
            .skip(1)
            .take_while(|line| *line != "//! ```")
            .map(|line| format!("{}\n", line.trim_start_matches("//!").trim_start()))
            .collect();
        let file = parse_rules_file(&example).unwrap();
        assert_eq!(
            (file.policy, file.fragments),
            (Action::Drop, Fragments::Policy)
        );
        let texts: Vec<String> = file
            .rules
            .iter()
            .map(|rule| {
                format!(
                    "{} {} {}",
                    rule.action.as_str(),
                    rule.priority,
                    match_text(&rule.matches)
                )
            })
            .collect();
        assert_eq!(
            texts,
            [
                "pass 10 src 198.18.0.0/24 proto udp sport 1024-65535 dport 53",
                "pass 1000 proto icmpv6 icmp_type 128",
                "limit 1000 proto udp dport 53",
            ]
        );
        assert_eq!(
            limit_text(&file.rules[2].limit),
            "1000/s burst 500 per src ban 30s"
        );
    }

    #[test]
    fn limit_keys_belong_to_limit_rules_and_name_their_line() {
        let message = error(&one_rule("action = \"drop\"\nrate = \"10/s\""));
        assert!(
            message.contains("line 3, rule 1: rate is for --action limit"),
            "{message}"
        );
        let message = error(&one_rule("action = \"limit\"\nproto = \"udp\""));
        assert!(
            message.contains("line 3, rule 1: --action limit needs --rate"),
            "{message}"
        );
        let message = error(&one_rule(
            "action = \"limit\"\nrate = \"10/s\"\nper = \"dst\"\nban = \"1m\"",
        ));
        assert!(message.contains("--ban bans sources"), "{message}");
        let message = error(&one_rule("action = \"limit\"\nrate = \"10/fortnight\""));
        assert!(
            message.contains("`10/fortnight` is not a rate"),
            "{message}"
        );
    }

    #[test]
    fn left_out_keys_are_any_or_the_default() {
        let file = parse_rules_file("").unwrap();
        assert_eq!(
            (file.policy, file.fragments),
            (Action::Pass, Fragments::Policy)
        );
        assert!(file.rules.is_empty());
        let file = parse_rules_file("fragments = \"drop\"\n[[rule]]\naction = \"drop\"\n").unwrap();
        assert_eq!(file.fragments, Fragments::Drop);
        assert_eq!(
            file.rules,
            [NewRule {
                action: Action::Drop,
                priority: DEFAULT_PRIORITY,
                matches: Match::ANY,
                limit: Limit::NONE,
            }]
        );
    }

    #[test]
    fn numbers_and_strings_are_alike() {
        let as_numbers = parse_rules_file(&one_rule(
            "action = \"pass\"\nproto = 17\nsport = 5353\ndport = 53",
        ))
        .unwrap();
        let as_strings = parse_rules_file(&one_rule(
            "action = \"pass\"\nproto = \"UDP\"\nsport = \"5353\"\ndport = \"53-53\"",
        ))
        .unwrap();
        assert_eq!(as_numbers, as_strings);
        let icmp =
            parse_rules_file(&one_rule("action = \"pass\"\nproto = 1\nicmp_type = \"8\"")).unwrap();
        assert_eq!(match_text(&icmp.rules[0].matches), "proto icmp icmp_type 8");
    }

    #[test]
    fn toml_errors_name_the_line_and_the_key() {
        let message = error("policy = \"drop\"\nrules = 1\n");
        assert!(message.contains("line 2, column 1"), "{message}");
        assert!(message.contains("unknown field `rules`"), "{message}");
        let message = error(&one_rule("action = \"pass\"\ndprot = 53"));
        assert!(message.contains("line 5, column 1"), "{message}");
        assert!(message.contains("unknown field `dprot`"), "{message}");
        let message = error(&one_rule("action = \"allow\""));
        assert!(message.contains("line 4, column 10"), "{message}");
        assert!(
            message.contains("unknown variant `allow`, expected one of `pass`, `drop`, `limit`"),
            "{message}"
        );
        let message = error(&one_rule("priority = 5"));
        assert!(message.contains("line 3, column 1"), "{message}");
        assert!(message.contains("missing field `action`"), "{message}");
        let message = error(&one_rule("action = \"pass\"\ndport = 5.3"));
        assert!(message.contains("line 5, column 9"), "{message}");
        assert!(
            message.contains("expected a string or a number"),
            "{message}"
        );
        let message = error("policy = \"drop\"\n[[rule]\n");
        assert!(message.contains("TOML parse error at line 2"), "{message}");
    }

    #[test]
    fn bad_fields_name_the_line_the_rule_and_the_field() {
        let rules =
            "[[rule]]\naction = \"drop\"\nsrc = \"198.18.0.1\"\n\n[[rule]]\naction = \"pass\"\n";
        let cases = [
            (
                "src = \"198.18.0.0/33\"",
                "line 9, rule 2, field src: `198.18.0.0/33`: an IPv4 prefix is at most /32 long",
            ),
            (
                "dst = \"198.18.0\"",
                "line 9, rule 2, field dst: `198.18.0` is not an address or prefix: expected any, an IPv4 or IPv6 address, or either with /LENGTH (198.18.0.0/15, fd00::/8)",
            ),
            (
                "proto = \"tcp\"\ndport = \"2000-1000\"",
                "line 10, rule 2, field dport: `2000-1000` is a reversed range: the first port must not be above the last",
            ),
            (
                "proto = \"tcp\"\nsport = 65536",
                "line 10, rule 2, field sport: `65536`: ports are 0..65535",
            ),
            (
                "proto = \"gre\"",
                "line 9, rule 2, field proto: unknown protocol `gre`: expected tcp, udp, icmp, icmpv6 (or ipv6-icmp), arp, any or a number 0..255",
            ),
            (
                "proto = \"icmp\"\nicmp_type = 300",
                "line 10, rule 2, field icmp_type: `300` is not an ICMP type: expected any or a number 0..255",
            ),
            (
                "proto = \"icmp\"\ndport = 53",
                "line 10, rule 2, field dport: ports need proto tcp or udp (here proto is icmp)",
            ),
            (
                "icmp_type = 8",
                "line 9, rule 2, field icmp_type: an ICMP type needs proto icmp or icmpv6 (here proto is any)",
            ),
            (
                "src = \"198.18.0.1\"\nproto = \"arp\"",
                "line 9, rule 2, field src: proto arp takes no src: ARP frames have no IP addresses, ports or ICMP type",
            ),
            (
                "src = \"fd00::1\"\n\ndst = \"198.18.0.1\"",
                "line 11, rule 2, field dst: src fd00::1/128 and dst 198.18.0.1/32 are of different families: a rule matches IPv4 or IPv6",
            ),
            (
                "proto = \"icmpv6\"\ndst = \"198.18.0.1\"",
                "line 9, rule 2, field proto: proto icmpv6 is ICMP for IPv6: with IPv4 addresses, use proto icmp",
            ),
        ];
        for (lines, message) in cases {
            assert_eq!(
                error(&format!("policy = \"drop\"\n\n{rules}{lines}\n")),
                message
            );
        }
    }

    #[test]
    fn a_duplicate_rule_names_both_rules() {
        let text = "[[rule]]\naction = \"drop\"\nproto = \"udp\"\ndport = 53\n\n\
                    [[rule]]\naction = \"pass\"\n\n\
                    [[rule]]\naction = \"pass\"\npriority = 5\ndport = \"53\"\nproto = 17\n";
        assert_eq!(
            error(text),
            "line 9, rule 3 matches the same packets as rule 1 at line 1 (proto udp dport 53): keep one"
        );
    }

    #[test]
    fn too_many_rules_are_refused() {
        let text = "[[rule]]\naction = \"pass\"\n".repeat(MAX_RULES + 1);
        assert_eq!(
            error(&text),
            "10241 rules: an interface holds at most 10240"
        );
    }

    #[test]
    fn host_bits_are_noted_with_their_place() {
        let file = parse_rules_file(&one_rule("action = \"pass\"\ndst = \"fd00::1/64\"")).unwrap();
        assert_eq!(
            file.notes,
            ["line 5, rule 1, field dst: fd00::1/64 normalised to fd00::/64"]
        );
        assert_eq!(match_text(&file.rules[0].matches), "dst fd00::/64");
    }
}
