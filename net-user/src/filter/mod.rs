//! The filter's userspace side: rule sets, their text and file forms, and writing them to the
//! kernel's tables.
//!
//! - [`ruleset`]: one interface's rules and settings, as edited.
//! - [`spec`]: a rule's fields from command-line text (CIDRs, ports, protocols), and back.
//! - [`file`]: the TOML rules file of `netxdp apply`.
//! - [`render`]: a rule set written back as a rules file, and its hash.
//! - [`account`]: what a change does to a rule set, as a diff or one line.
//! - [`limit`]: a `limit` rule's rate, burst, key and ban as text.
//! - [`listing`]: how `rule list` shows a rule set.
//! - [`compile`]: a rule set turned into the kernel's per-field bitmaps.
//! - [`maps`]: the pinned (or loaded) filter maps, and the rule set they hold.
//! - [`commit`]: a rule set written whole beside the one in force, then flipped in.
//! - [`slots`]: each rule's counter slot, and its counters read back.
//! - [`verify`]: checking that the tables in force hold exactly the rule set.
//! - [`generation`]: one generation written, map by map, maps at once.
//! - [`rcu`]: waiting until no CPU still classifies with a generation flipped out.
//! - [`stages`]: a commit's stages, and the test-only hook that stops one there.
//! - [`write_error`]: a kernel error on a filter map during a commit, with advice.
//! - [`tree`]: the decision trees of a rule set, built at commit time.

pub mod account;
pub mod commit;
pub mod compile;
pub mod file;
pub mod generation;
pub mod limit;
pub mod listing;
pub mod maps;
pub mod rcu;
pub mod render;
pub mod ruleset;
pub mod slots;
pub mod spec;
pub mod stages;
pub mod tree;
pub mod verify;
pub mod write_error;

pub use maps::FilterMaps;
pub use ruleset::{Changes, DEFAULT_PRIORITY, NewRule, RuleSet, RuleSetError};
