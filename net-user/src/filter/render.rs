//! A rule set written as a rules file (see [`super::file`]): what `rule list --toml` prints,
//! and the hash that names a rule set whatever ids its history gave it.

use std::fmt::Write as _;

use net_common::rule::{Action, Malformed};

use super::{
    RuleSet,
    limit::{ban_text, per_text, rate_text},
    ruleset::DEFAULT_PRIORITY,
    spec::{Field, field_text, is_named},
};

/// A rule set as a rules file, rules in the order they are tried: applying it to a fresh
/// interface makes the same rule set (ids aside), and applying it to this one changes nothing.
pub fn render_rules_file(set: &RuleSet) -> String {
    render(set, true)
}

/// The first 16 hex digits of the SHA-256 of `set` as a rules file without its `# id N`
/// comments: the same on every host whose rules and settings are the same, whatever ids
/// their history gave them. `netxdp rule list IFACE --toml | sed 's/ # id [0-9]*$//' |
/// sha256sum | cut -c1-16` computes it too.
pub fn ruleset_hash(set: &RuleSet) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(render(set, false).as_bytes());
    digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn render(set: &RuleSet, ids: bool) -> String {
    let mut out = format!(
        "# netxdp rules file: netxdp apply IFACE FILE\npolicy = \"{}\"\nfragments = \"{}\"\n",
        set.policy.as_str(),
        set.fragments.as_str()
    );
    if set.malformed != Malformed::default() {
        // Written only when set: the unsafe setting should stand out where it is used.
        let _ = writeln!(out, "malformed = \"{}\"", set.malformed.as_str());
    }
    for rule in set.rules() {
        out.push_str("\n[[rule]]");
        if ids {
            let _ = write!(out, " # id {}", rule.id);
        }
        let _ = write!(out, "\naction = \"{}\"\n", rule.action().as_str());
        if rule.priority != DEFAULT_PRIORITY {
            let _ = writeln!(out, "priority = {}", rule.priority);
        }
        for field in Field::ALL {
            if is_named(&rule.matches, field) {
                let _ = writeln!(
                    out,
                    "{field} = {}",
                    toml_value(field_text(&rule.matches, field))
                );
            }
        }
        if rule.action() == Action::Limit {
            let limit = &rule.limit;
            let _ = write!(
                out,
                "rate = \"{}\"\nburst = {}\nper = \"{}\"\n",
                rate_text(limit),
                limit.burst,
                per_text(limit)
            );
            if let Some(ban) = ban_text(limit) {
                let _ = writeln!(out, "ban = \"{ban}\"");
            }
        }
    }
    out
}

/// A field's text as a TOML value: a number bare, anything else quoted (field texts hold no
/// quotes or backslashes).
fn toml_value(text: String) -> String {
    if text.bytes().all(|byte| byte.is_ascii_digit()) {
        text
    } else {
        format!("\"{text}\"")
    }
}

#[cfg(test)]
pub(super) mod tests {
    use net_common::{
        limit::Limit,
        rule::{Fragments, Match},
    };

    use super::*;
    use crate::filter::{
        NewRule,
        file::parse_rules_file,
        limit::LimitText,
        spec::{parse_ports, parse_prefix, parse_proto},
    };

    pub(in crate::filter) fn new_rule(
        action: Action,
        priority: u32,
        src: &str,
        proto: &str,
        dport: &str,
    ) -> NewRule {
        NewRule {
            action,
            priority,
            matches: Match {
                src: parse_prefix(src).unwrap().0,
                proto: parse_proto(proto).unwrap(),
                dport: parse_ports(dport).unwrap(),
                ..Match::ANY
            },
            limit: Limit::NONE,
        }
    }

    pub(in crate::filter) fn sample_set() -> RuleSet {
        let mut set = RuleSet::default();
        set.policy = Action::Drop;
        set.fragments = Fragments::Drop;
        for rule in [
            new_rule(
                Action::Drop,
                DEFAULT_PRIORITY,
                "198.18.0.0/24",
                "any",
                "any",
            ),
            new_rule(Action::Pass, 10, "any", "udp", "53"),
            new_rule(Action::Pass, 10, "fd00::/64", "tcp", "1000-2000"),
            new_rule(Action::Pass, DEFAULT_PRIORITY, "any", "47", "any"),
            new_rule(Action::Pass, 20, "any", "arp", "any"),
            new_rule(Action::Drop, u32::MAX, "any", "any", "any"),
            NewRule {
                limit: LimitText {
                    rate: Some("10mbit/s"),
                    burst: Some(20_000),
                    per: Some("src/24/64"),
                    ban: Some("90s"),
                }
                .limit(true)
                .unwrap(),
                ..new_rule(Action::Limit, 30, "any", "udp", "5353")
            },
        ] {
            set.add(rule).unwrap();
        }
        set
    }

    #[test]
    fn a_rendered_rule_set_reads_back_as_itself() {
        let set = sample_set();
        let text = render_rules_file(&set);
        assert!(
            text.starts_with(
                "# netxdp rules file: netxdp apply IFACE FILE\npolicy = \"drop\"\nfragments = \"drop\"\n\n\
                 [[rule]] # id 2\naction = \"pass\"\npriority = 10\nproto = \"udp\"\ndport = 53\n\n\
                 [[rule]] # id 3\naction = \"pass\"\npriority = 10\nsrc = \"fd00::/64\"\nproto = \"tcp\"\ndport = \"1000-2000\"\n"
            ),
            "{text}"
        );
        let file = parse_rules_file(&text).unwrap();
        assert_eq!((file.policy, file.fragments), (set.policy, set.fragments));
        assert_eq!(file.rules, as_new_rules(&set));
        let mut again = set.clone();
        let changes = again.replace(&file.rules).unwrap();
        assert!(changes.is_empty());
        assert_eq!(again, set);
        // On a fresh interface, the rules are tried in the same order.
        let mut fresh = RuleSet::default();
        fresh.replace(&file.rules).unwrap();
        assert_eq!(as_new_rules(&fresh), file.rules);
    }

    /// The rules of a set without their ids, in rank order.
    fn as_new_rules(set: &RuleSet) -> Vec<NewRule> {
        set.rules()
            .iter()
            .map(|rule| NewRule {
                action: rule.action(),
                priority: rule.priority,
                matches: rule.matches,
                limit: Limit {
                    state_id: 0,
                    ..rule.limit
                },
            })
            .collect()
    }

    #[test]
    fn the_ruleset_hash_names_rules_and_settings_not_ids() {
        let file = parse_rules_file(
            "policy = \"drop\"\n[[rule]]\naction = \"pass\"\nproto = \"tcp\"\ndport = 22\n",
        )
        .unwrap();
        let mut fresh = RuleSet::default();
        fresh.replace(&file.rules).unwrap();
        fresh.policy = file.policy;
        // The same rule, given id 2 by a history of its own.
        let earlier = parse_rules_file("[[rule]]\naction = \"drop\"\nproto = \"udp\"\n").unwrap();
        let mut lived = RuleSet::default();
        lived.replace(&earlier.rules).unwrap();
        let (lived, _) = file.applied_to(&lived).unwrap();
        assert_eq!(lived.rules()[0].id, 2);
        let hash = ruleset_hash(&fresh);
        assert_eq!(hash.len(), 16);
        assert!(hash.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_eq!(ruleset_hash(&lived), hash, "{lived:?}");
        let mut passing = fresh.clone();
        passing.policy = Action::Pass;
        assert_ne!(ruleset_hash(&passing), hash);
    }
}
