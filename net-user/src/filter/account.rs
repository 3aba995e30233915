//! The account of what a change does to a rule set: the diff of `apply --dry-run` and
//! `--diff`, and the one line `apply` prints by default.

use std::fmt::Write as _;

use net_common::rule::Rule;

use super::{
    RuleSet,
    limit::action_text,
    ruleset::{Changes, DEFAULT_PRIORITY},
    spec::match_text,
};

/// What applying a file does, for `apply --dry-run`: a line per changed setting and per added
/// (`+`), removed (`-`) and changed (`~`) rule, and a count of the rules left as they are.
/// `before` and `after` are the rule set before and after [`RuleSet::replace`] gave `changes`.
pub fn render_changes(before: &RuleSet, after: &RuleSet, changes: &Changes) -> String {
    let mut out = String::new();
    for line in setting_changes(before, after) {
        let _ = writeln!(out, "{line}");
    }
    for (sign, rules) in [("-", &changes.removed), ("+", &changes.added)] {
        for rule in rules {
            let action = action_text(rule);
            let priority = priority_text(rule.priority);
            let _ = writeln!(out, "{sign} {}", rule_text(rule, &action, priority));
        }
    }
    for (old, new) in &changes.changed {
        let action = match (action_text(old), action_text(new)) {
            (old, new) if old == new => new,
            (old, new) => format!("{old} -> {new}"),
        };
        let priority = if old.priority == new.priority {
            priority_text(new.priority)
        } else {
            format!(" (priority {} -> {})", old.priority, new.priority)
        };
        let _ = writeln!(out, "~ {}", rule_text(new, &action, priority));
    }
    match changes.unchanged {
        0 => {}
        1 => out.push_str("= 1 rule unchanged\n"),
        count => {
            let _ = writeln!(out, "= {count} rules unchanged");
        }
    }
    if out.is_empty() {
        out.push_str("no changes\n");
    }
    out
}

/// What `apply` says of a change by default, in one line: `1 added, 1 removed, 0 changed, 5
/// unchanged; fragments: policy -> drop`.
pub fn summarize_changes(before: &RuleSet, after: &RuleSet, changes: &Changes) -> String {
    let mut line = format!(
        "{} added, {} removed, {} changed, {} unchanged",
        changes.added.len(),
        changes.removed.len(),
        changes.changed.len(),
        changes.unchanged
    );
    for setting in setting_changes(before, after) {
        line.push_str("; ");
        line.push_str(&setting);
    }
    line
}

/// The settings that differ: `policy: pass -> drop`.
fn setting_changes(before: &RuleSet, after: &RuleSet) -> Vec<String> {
    let mut lines = Vec::new();
    let mut setting = |name: &str, old: &str, new: &str| {
        if old != new {
            lines.push(format!("{name}: {old} -> {new}"));
        }
    };
    setting("policy", before.policy.as_str(), after.policy.as_str());
    setting(
        "fragments",
        before.fragments.as_str(),
        after.fragments.as_str(),
    );
    setting(
        "malformed",
        before.malformed.as_str(),
        after.malformed.as_str(),
    );
    lines
}

/// `rule 7: pass proto udp dport 53 (priority 10)`.
fn rule_text(rule: &Rule, action: &str, priority: String) -> String {
    format!(
        "rule {}: {action} {}{priority}",
        rule.id,
        match_text(&rule.matches)
    )
}

/// ` (priority N)`, or nothing for the default priority.
fn priority_text(priority: u32) -> String {
    if priority == DEFAULT_PRIORITY {
        String::new()
    } else {
        format!(" (priority {priority})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use net_common::rule::Action;

    use crate::filter::{
        NewRule,
        limit::LimitText,
        render::tests::{new_rule, sample_set},
    };

    #[test]
    fn changes_read_as_a_diff() {
        let before = sample_set();
        let mut after = before.clone();
        after.policy = Action::Pass;
        let file = [
            new_rule(
                Action::Pass,
                DEFAULT_PRIORITY,
                "198.18.0.0/24",
                "any",
                "any",
            ),
            new_rule(Action::Pass, 10, "any", "udp", "53"),
            new_rule(Action::Pass, 5, "fd00::/64", "tcp", "1000-2000"),
            new_rule(Action::Pass, DEFAULT_PRIORITY, "any", "47", "any"),
            new_rule(Action::Pass, 20, "any", "arp", "any"),
            new_rule(Action::Drop, 30, "any", "tcp", "22"),
            NewRule {
                limit: LimitText {
                    rate: Some("5mbit/s"),
                    ..LimitText::default()
                }
                .limit(true)
                .unwrap(),
                ..new_rule(Action::Limit, 30, "any", "udp", "5353")
            },
        ];
        let changes = after.replace(&file).unwrap();
        assert_eq!(
            render_changes(&before, &after, &changes),
            "policy: drop -> pass\n\
             - rule 6: drop all (priority 4294967295)\n\
             + rule 8: drop proto tcp dport 22 (priority 30)\n\
             ~ rule 1: drop -> pass src 198.18.0.0/24\n\
             ~ rule 3: pass src fd00::/64 proto tcp dport 1000-2000 (priority 10 -> 5)\n\
             ~ rule 7: limit 10mbit/s burst 20000 per src/24/64 ban 1m 30s -> \
             limit 5mbit/s burst 625000 per src proto udp dport 5353 (priority 30)\n\
             = 3 rules unchanged\n"
        );
        let changes = after.clone().replace(&file).unwrap();
        assert_eq!(
            render_changes(&after, &after, &changes),
            "= 7 rules unchanged\n"
        );
        let changes = RuleSet::default().replace(&[]).unwrap();
        assert_eq!(
            render_changes(&RuleSet::default(), &RuleSet::default(), &changes),
            "no changes\n"
        );
    }
}
