//! The stages of a commit, and the test-only hook that stops a commit at one of them.

use std::{io::BufRead as _, sync::OnceLock};

use anyhow::{Result, bail};

/// Test-only: a stage of [`COMMIT_STAGES`]. A commit that reaches it prints `paused at
/// STAGE` on stderr and waits for a line (or the end) on stdin before it goes on, so that a
/// test can kill `netxdp apply` at exactly that stage, on a machine of any speed. While it is
/// set, a commit also prints `commit at STAGE` for every stage it reaches, as it does.
pub const PAUSE_AT_ENV: &str = "NETXDP_TEST_PAUSE_AT";

/// The stages of [`FilterMaps::commit`]; a commit killed at any of them leaves the old set in
/// force up to `flip` (the write of `FILTER_STATE`), the new one from `flipped`. They come in
/// this order, but for the maps' parts, which run at once (see [`generation`]): each map's
/// stages come in order, after `counters` and before `write FILTER_CONFIG`.
pub const COMMIT_STAGES: &[&str] = &[
    // Waiting for an RCU grace period (see `rcu`): no packet still classifies with the
    // inactive generation, flipped out by the previous commit, whatever became of it.
    "synchronize",
    // The wait is over (the kernel's update of a map-in-map returned): nothing is written
    // before.
    "synchronized",
    // Zeroing the counters of new rules (slots no rule in force uses).
    "counters",
    // Each hash map and trie: deleting what an earlier set left in the inactive generation,
    // then writing the new set there.
    "clear SRC_V4",
    "write SRC_V4",
    "clear DST_V4",
    "write DST_V4",
    "clear SRC_V6",
    "write SRC_V6",
    "clear DST_V6",
    "write DST_V6",
    "clear PORT_BITMAPS",
    "write PORT_BITMAPS",
    "clear HOSTS_V4",
    "write HOSTS_V4",
    "clear HOSTS_V6",
    "write HOSTS_V6",
    // Each array: writing the new set into the inactive generation's part.
    "write RULES",
    "write BITMAPS",
    "write NET_BLOCKS",
    "write PORT_INTERVALS",
    "write RULE_BOXES",
    "write TREE_NODES",
    "write LEAF_RANKS",
    // Once every map is written: the generation's settings.
    "write FILTER_CONFIG",
    // Making the inactive generation the active one: one write of FILTER_STATE.
    "flip",
    "flipped",
];

/// The stage [`PAUSE_AT_ENV`] names, if any: a stage of [`COMMIT_STAGES`].
pub type PauseAt = Option<&'static str>;

pub fn pause_at() -> Result<PauseAt> {
    static PAUSE_AT: OnceLock<Option<String>> = OnceLock::new();
    let Some(wanted) = PAUSE_AT.get_or_init(|| std::env::var(PAUSE_AT_ENV).ok()) else {
        return Ok(None);
    };
    match COMMIT_STAGES
        .iter()
        .find(|stage| **stage == wanted.as_str())
    {
        Some(stage) => Ok(Some(stage)),
        None => bail!(
            "{PAUSE_AT_ENV}={wanted} names no stage of a commit (a test-only setting; the \
             stages are: {})",
            COMMIT_STAGES.join(", ")
        ),
    }
}

/// Test-only: stops at `stage` if [`PAUSE_AT_ENV`] names it.
pub fn pause(pause_at: PauseAt, stage: &str) {
    debug_assert!(
        COMMIT_STAGES.contains(&stage),
        "{stage} is in COMMIT_STAGES"
    );
    if pause_at.is_none() {
        return;
    }
    eprintln!("commit at {stage}");
    if pause_at != Some(stage) {
        return;
    }
    eprintln!("paused at {stage}");
    // The test kills the process here; a line, or the end of stdin, goes on.
    let _ = std::io::stdin().lock().read_line(&mut String::new());
}

#[cfg(test)]
mod tests {
    use net_common::names;

    use super::*;

    #[test]
    fn commit_stages_are_distinct_and_the_flip_is_among_them() {
        let distinct: std::collections::HashSet<&str> = COMMIT_STAGES.iter().copied().collect();
        assert_eq!(distinct.len(), COMMIT_STAGES.len());
        let flip = COMMIT_STAGES.iter().position(|stage| *stage == "flip");
        assert_eq!(
            flip,
            Some(COMMIT_STAGES.len() - 2),
            "flip, then flipped, last"
        );
        // The RCU wait comes before anything touches the inactive generation, which the
        // previous commit flipped out.
        assert_eq!(
            COMMIT_STAGES[..3],
            ["synchronize", "synchronized", "counters"]
        );
        // Every hash map and trie is cleared before it is written.
        for name in [
            names::SRC_V4_MAP,
            names::DST_V4_MAP,
            names::SRC_V6_MAP,
            names::DST_V6_MAP,
            names::HOSTS_V4_MAP,
            names::HOSTS_V6_MAP,
            names::PORT_BITMAPS_MAP,
        ] {
            let at = |stage: String| COMMIT_STAGES.iter().position(|s| *s == stage);
            let (cleared, written) = (at(format!("clear {name}")), at(format!("write {name}")));
            assert!(cleared.is_some() && cleared < written, "{name}");
        }
    }
}
