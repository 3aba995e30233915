//! A rule set as userspace edits it: the rules of one interface, their policy and settings.

use std::collections::HashMap;

use net_common::{
    limit::Limit,
    rule::{Action, Fragments, MAX_RULES, Malformed, Match, Rule},
};

use super::limit::same_limit;

/// Priority of a rule given none: the middle of the range, so that rules can be put both
/// before and after it.
pub const DEFAULT_PRIORITY: u32 = 1000;

/// Why a rule set cannot be changed as asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleSetError {
    #[error("rule {existing} already matches the same packets (`netxdp rule del` it first)")]
    Duplicate { existing: u32 },
    #[error("no rule has id {0} (`netxdp rule list` shows the ids)")]
    NoSuchRule(u32),
    #[error("too many rules: an interface holds at most {MAX_RULES}")]
    TooMany,
    #[error("rule ids are exhausted on this interface: `netxdp detach` and attach it again")]
    IdsExhausted,
}

/// One interface's rules and settings. Rules are kept in rank order: by priority, then id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    pub policy: Action,
    pub fragments: Fragments,
    pub malformed: Malformed,
    rules: Vec<Rule>,
    /// The id the next new rule gets: ids are never reused on an interface.
    pub next_rule_id: u32,
}

impl Default for RuleSet {
    fn default() -> Self {
        Self {
            policy: Action::Pass,
            fragments: Fragments::Policy,
            malformed: Malformed::Drop,
            rules: Vec::new(),
            next_rule_id: 1,
        }
    }
}

/// A rule as asked for, before it has an id: what `rule add` and a rules file give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewRule {
    pub action: Action,
    pub priority: u32,
    pub matches: Match,
    /// The rate limit of a [`Action::Limit`] rule, [`Limit::NONE`] for the others; its
    /// `state_id` is assigned here.
    pub limit: Limit,
}

impl RuleSet {
    /// A rule set holding `rules` as they are (ids and counter slots kept).
    pub fn from_rules(
        policy: Action,
        fragments: Fragments,
        malformed: Malformed,
        mut rules: Vec<Rule>,
        next_rule_id: u32,
    ) -> Self {
        rules.sort_by_key(Rule::rank_key);
        Self {
            policy,
            fragments,
            malformed,
            rules,
            next_rule_id,
        }
    }

    /// The rules in rank order: the order in which they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules, to set their counter slots; their order and matches stay as they are.
    pub(crate) fn rules_mut(&mut self) -> &mut [Rule] {
        &mut self.rules
    }

    pub fn get(&self, id: u32) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.id == id)
    }

    fn find_match(&self, matches: &Match) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.matches == *matches)
    }

    /// Adds a rule; returns its id.
    pub fn add(&mut self, new: NewRule) -> Result<u32, RuleSetError> {
        if let Some(existing) = self.find_match(&new.matches) {
            return Err(RuleSetError::Duplicate {
                existing: existing.id,
            });
        }
        if self.rules.len() >= MAX_RULES {
            return Err(RuleSetError::TooMany);
        }
        let rule = self.allocate(&new)?;
        let at = self
            .rules
            .partition_point(|other| other.rank_key() < rule.rank_key());
        self.rules.insert(at, rule);
        Ok(rule.id)
    }

    /// The rule `new` becomes, with the next id (which is used up: `next_rule_id` moves on).
    /// It is not added to the set.
    fn allocate(&mut self, new: &NewRule) -> Result<Rule, RuleSetError> {
        let id = self.next_id()?;
        Ok(Rule {
            id,
            priority: new.priority,
            action: new.action as u32,
            // Assigned when the set is written to the kernel.
            counter_slot: u32::MAX,
            matches: new.matches,
            limit: match new.action {
                Action::Limit => Limit {
                    state_id: id,
                    ..new.limit
                },
                _ => Limit::NONE,
            },
        })
    }

    /// The next id, used up. Rules and limits' states draw from the same sequence, so that a
    /// limit never inherits another's state.
    fn next_id(&mut self) -> Result<u32, RuleSetError> {
        let id = self.next_rule_id;
        self.next_rule_id = id.checked_add(1).ok_or(RuleSetError::IdsExhausted)?;
        Ok(id)
    }

    /// Removes the rule with `id`.
    pub fn remove(&mut self, id: u32) -> Result<Rule, RuleSetError> {
        let at = self
            .rules
            .iter()
            .position(|rule| rule.id == id)
            .ok_or(RuleSetError::NoSuchRule(id))?;
        Ok(self.rules.remove(at))
    }

    /// Replaces every rule with `wanted`, as `apply` does. A wanted rule that matches the same
    /// packets as a current one keeps that rule's id (and so its counters); the rest are new.
    /// Returns what changed.
    pub fn replace(&mut self, wanted: &[NewRule]) -> Result<Changes, RuleSetError> {
        if wanted.len() > MAX_RULES {
            return Err(RuleSetError::TooMany);
        }
        let mut next = RuleSet {
            rules: Vec::with_capacity(wanted.len()),
            ..self.clone()
        };
        let mut changes = Changes::default();
        let current: HashMap<Match, &Rule> =
            self.rules.iter().map(|rule| (rule.matches, rule)).collect();
        let mut seen = HashMap::with_capacity(wanted.len());
        for new in wanted {
            if let Some(&first) = seen.get(&new.matches) {
                // Within the file: name the earlier rule by its position.
                return Err(RuleSetError::Duplicate { existing: first });
            }
            seen.insert(new.matches, seen.len() as u32 + 1);
            match current.get(&new.matches) {
                Some(&current) => {
                    // A limit changed starts afresh: state kept under the old rate could
                    // hold a key back, or let it through, by the wrong measure.
                    let limit = if new.action != Action::Limit {
                        Limit::NONE
                    } else if same_limit(&new.limit, &current.limit) {
                        current.limit
                    } else {
                        Limit {
                            state_id: next.next_id()?,
                            ..new.limit
                        }
                    };
                    let kept = Rule {
                        priority: new.priority,
                        action: new.action as u32,
                        limit,
                        ..*current
                    };
                    if kept == *current {
                        changes.unchanged += 1;
                    } else {
                        changes.changed.push((*current, kept));
                    }
                    next.rules.push(kept);
                }
                None => {
                    // On the scratch copy: a replace that fails uses up no ids.
                    let rule = next.allocate(new)?;
                    changes.added.push(rule);
                    next.rules.push(rule);
                }
            }
        }
        changes.removed = self
            .rules
            .iter()
            .filter(|rule| !seen.contains_key(&rule.matches))
            .copied()
            .collect();
        next.rules.sort_by_key(Rule::rank_key);
        *self = next;
        Ok(changes)
    }
}

/// What [`RuleSet::replace`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<Rule>,
    pub removed: Vec<Rule>,
    /// Rules kept (same id) with a new action or priority: before, after.
    pub changed: Vec<(Rule, Rule)>,
    pub unchanged: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use net_common::rule::{Family, Prefix};

    fn drop_from(last_octet: u8) -> NewRule {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&[198, 18, 0, last_octet]);
        NewRule {
            action: Action::Drop,
            priority: DEFAULT_PRIORITY,
            matches: Match {
                src: Prefix::new(Family::Ipv4, addr, 32),
                ..Match::ANY
            },
            limit: Limit::NONE,
        }
    }

    #[test]
    fn rules_are_ranked_by_priority_then_id_and_ids_are_never_reused() {
        let mut set = RuleSet::default();
        let first = set.add(drop_from(1)).unwrap();
        let second = set
            .add(NewRule {
                priority: 10,
                ..drop_from(2)
            })
            .unwrap();
        assert_eq!((first, second), (1, 2));
        let order: Vec<u32> = set.rules().iter().map(|rule| rule.id).collect();
        assert_eq!(order, [2, 1]);
        set.remove(2).unwrap();
        assert_eq!(set.add(drop_from(3)).unwrap(), 3);
        assert_eq!(set.remove(2), Err(RuleSetError::NoSuchRule(2)));
    }

    #[test]
    fn more_than_max_rules_are_refused_and_change_nothing() {
        let many: Vec<NewRule> = (0..=MAX_RULES as u16)
            .map(|port| NewRule {
                action: Action::Drop,
                priority: DEFAULT_PRIORITY,
                matches: Match {
                    proto: 17,
                    dport: net_common::rule::PortRange {
                        first: port,
                        last: port,
                    },
                    ..Match::ANY
                },
                limit: Limit::NONE,
            })
            .collect();
        let mut set = RuleSet::default();
        assert_eq!(set.replace(&many), Err(RuleSetError::TooMany));
        assert!(set.rules().is_empty());
        set.replace(&many[..MAX_RULES]).unwrap();
        assert_eq!(set.add(many[MAX_RULES]), Err(RuleSetError::TooMany));
        assert_eq!(set.rules().len(), MAX_RULES);
    }

    #[test]
    fn a_duplicate_match_is_refused_whatever_its_action() {
        let mut set = RuleSet::default();
        set.add(drop_from(1)).unwrap();
        let pass = NewRule {
            action: Action::Pass,
            ..drop_from(1)
        };
        assert_eq!(set.add(pass), Err(RuleSetError::Duplicate { existing: 1 }));
    }

    #[test]
    fn replace_keeps_ids_of_rules_that_stay_and_reports_each_change() {
        let mut set = RuleSet::default();
        set.add(drop_from(1)).unwrap();
        set.add(drop_from(2)).unwrap();
        let changes = set
            .replace(&[
                drop_from(2),
                NewRule {
                    action: Action::Pass,
                    ..drop_from(3)
                },
            ])
            .unwrap();
        assert_eq!(changes.unchanged, 1);
        assert_eq!(changes.removed.len(), 1);
        assert_eq!(changes.removed[0].id, 1);
        assert_eq!(changes.added.len(), 1);
        assert_eq!(changes.added[0].id, 3);
        assert_eq!(set.get(2).map(|rule| rule.id), Some(2));
        let before = set.clone();
        assert_eq!(
            set.replace(&[drop_from(4), drop_from(4)]),
            Err(RuleSetError::Duplicate { existing: 1 })
        );
        assert_eq!(set, before, "a refused replace changes nothing");
    }
}
