//! A kernel error on one of the filter's maps during a commit, told with what it means and
//! what to do.

use aya::maps::MapError;
use net_common::{
    filter::{HOST_ENTRIES, PORT_BITMAP_ENTRIES, TRIE_ENTRIES},
    names,
    rule::MAX_RULES,
};
use nix::errno::Errno;

/// What a commit was doing to a map when the kernel refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doing {
    /// Deleting what an earlier set left in the inactive generation.
    Clear,
    /// Writing the new set into the inactive generation.
    Write,
    /// Making the new generation the active one.
    Flip,
}

/// A kernel error on one of the filter's maps during a commit: which map, what the error
/// means, and what to do about it. The old set is still in force unless `doing` is a flip
/// (which is one write: it either happened or not).
#[derive(Debug, thiserror::Error)]
#[error("{} {map} for the new rule set: {advice}", doing.verb())]
pub struct MapWriteError {
    pub map: &'static str,
    pub doing: Doing,
    advice: String,
    #[source]
    source: Box<MapError>,
}

impl Doing {
    fn verb(self) -> &'static str {
        match self {
            Doing::Clear => "clearing",
            Doing::Write => "writing",
            Doing::Flip => "switching",
        }
    }
}

/// The entries this netxdp's object gives the filter map `name`, if it can fill up.
fn entries_needed(name: &str) -> Option<u32> {
    match name {
        names::SRC_V4_MAP | names::DST_V4_MAP | names::SRC_V6_MAP | names::DST_V6_MAP => {
            Some(TRIE_ENTRIES)
        }
        names::HOSTS_V4_MAP | names::HOSTS_V6_MAP => Some(HOST_ENTRIES),
        names::PORT_BITMAPS_MAP => Some(PORT_BITMAP_ENTRIES),
        _ => None,
    }
}

impl MapWriteError {
    /// `capacity`: the map's `max_entries`, if known; `iface`: whose pinned map it is.
    pub fn new(
        map: &'static str,
        doing: Doing,
        capacity: Option<u32>,
        iface: Option<&str>,
        source: MapError,
    ) -> Self {
        let errno = match &source {
            MapError::SyscallError(error) => error.io_error.raw_os_error().map(Errno::from_raw),
            _ => None,
        };
        Self {
            map,
            doing,
            advice: advice(map, errno, capacity, iface),
            source: Box::new(source),
        }
    }
}

/// What an error `errno` on the map `name` means, and what to do.
fn advice(name: &str, errno: Option<Errno>, capacity: Option<u32>, iface: Option<&str>) -> String {
    let iface = iface.unwrap_or("IFACE");
    match errno {
        // A hash map says E2BIG when full, an LPM trie ENOSPC.
        Some(errno @ (Errno::E2BIG | Errno::ENOSPC)) => {
            let needed = entries_needed(name);
            match (capacity, needed) {
                (Some(capacity), Some(needed)) if capacity < needed => format!(
                    "the map is full ({errno:?}): it holds {capacity} entries, fewer than the \
                     {needed} this netxdp needs, so an older netxdp created it. The rule set in \
                     force is unchanged; to move to maps of the right size, save the rules \
                     (`netxdp rule list {iface} --toml > FILE`), `netxdp detach {iface}`, \
                     `netxdp attach {iface}` and `netxdp apply {iface} FILE`"
                ),
                _ => format!(
                    "the map is full ({errno:?}); this is a bug in netxdp's map sizing (every map \
                     holds two whole generations of {MAX_RULES} rules), please report it"
                ),
            }
        }
        Some(Errno::ENOMEM) => "the kernel could not allocate memory for it (ENOMEM): the \
             memory cgroup netxdp runs in is at its limit (memory.max) or the machine is out \
             of memory; free some or raise the limit and run the command again (kernels before \
             5.11 count BPF maps against RLIMIT_MEMLOCK instead: `ulimit -l`)"
            .to_owned(),
        Some(errno @ (Errno::EPERM | Errno::EACCES)) => {
            format!("permission denied ({errno:?}): netxdp needs root (CAP_BPF and CAP_NET_ADMIN)")
        }
        Some(errno) => format!("unexpected kernel error ({errno:?}); please report it"),
        None => "unexpected error; this is a bug in netxdp, please report it".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use aya::sys::SyscallError;

    use net_common::filter::GENERATIONS;

    use super::*;

    fn update_failed(errno: Errno) -> MapError {
        MapError::SyscallError(SyscallError {
            call: "bpf_map_update_elem",
            io_error: io::Error::from_raw_os_error(errno as i32),
        })
    }

    #[test]
    fn a_full_map_is_named_and_called_a_sizing_bug() {
        let error = MapWriteError::new(
            names::HOSTS_V4_MAP,
            Doing::Write,
            Some(HOST_ENTRIES),
            Some("eth0"),
            update_failed(Errno::E2BIG),
        );
        let text = format!("{:#}", anyhow::Error::new(error));
        assert!(
            text.starts_with("writing HOSTS_V4 for the new rule set: the map is full (E2BIG)"),
            "{text}"
        );
        assert!(text.contains("bug in netxdp's map sizing"), "{text}");
        assert!(text.contains("please report it"), "{text}");
        assert!(
            text.contains("os error 7"),
            "the kernel's own words too: {text}"
        );

        let trie = advice(names::SRC_V6_MAP, Some(Errno::ENOSPC), None, None);
        assert!(
            trie.contains("full (ENOSPC)") && trie.contains("bug"),
            "{trie}"
        );
    }

    #[test]
    fn a_map_smaller_than_this_netxdp_needs_says_how_to_recreate_it() {
        // The size HOSTS_V4 had before it counted a source and a destination per rule.
        let old = GENERATIONS as u32 * (MAX_RULES as u32 + 1);
        let text = advice(
            names::HOSTS_V4_MAP,
            Some(Errno::E2BIG),
            Some(old),
            Some("eth0"),
        );
        assert!(text.contains(&format!("holds {old} entries")), "{text}");
        assert!(text.contains("older netxdp"), "{text}");
        assert!(
            text.contains("`netxdp rule list eth0 --toml > FILE`")
                && text.contains("`netxdp detach eth0`")
                && text.contains("`netxdp apply eth0 FILE`"),
            "{text}"
        );
    }

    #[test]
    fn other_errors_name_the_limit_or_the_permission() {
        let memory = advice(names::PORT_BITMAPS_MAP, Some(Errno::ENOMEM), None, None);
        assert!(
            memory.contains("memory.max") && memory.contains("RLIMIT_MEMLOCK"),
            "{memory}"
        );
        let denied = advice(names::RULES_MAP, Some(Errno::EPERM), None, None);
        assert!(denied.contains("root"), "{denied}");
        let flip = MapWriteError::new(
            names::FILTER_STATE_MAP,
            Doing::Flip,
            None,
            None,
            update_failed(Errno::EINVAL),
        );
        assert!(
            flip.to_string().starts_with(
                "switching FILTER_STATE for the new rule set: unexpected kernel error (EINVAL)"
            ),
            "{flip}"
        );
    }
}
