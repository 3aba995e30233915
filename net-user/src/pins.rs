//! Where an attachment lives in bpffs: `/sys/fs/bpf/netxdp/IFACE/`, holding
//!
//! | pin     | what                                                            |
//! |---------|-----------------------------------------------------------------|
//! | `link`  | the XDP bpf_link: as long as it is pinned, the program stays on |
//! | `netlink` | instead of `link`, after `attach --force` replaced another tool's program in one step: the program, which rtnetlink holds on the interface (a bpf_link cannot take a netlink program's place) |
//! | `prog`  | the program, for `bpftool prog run/profile pinned ...`          |
//! | `STATS` | the per-CPU counters ([`net_common::stats::Stats`])             |
//! | `INFO`  | the attach record ([`net_common::info::AttachInfo`])            |
//! | `FLOWS` | the flow table ([`net_common::flow`])                            |
//! | `RULES`, `FILTER_*`, ... | the filter's rule set and counters ([`net_common::names::FILTER_MAPS`]) |
//! | `CAPTURE`, `CAPTURE_STATS`, `CAPTURE_RING` | the running capture's selection, its counters, its ring buffer ([`net_common::capture`]) |

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use aya::maps::MapData;
use net_common::names;

use crate::iface::IfaceName;

/// Where bpffs is expected to be mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// The pins of one interface's attachment.
#[derive(Clone, Debug)]
pub struct PinDir {
    iface: IfaceName,
    dir: PathBuf,
}

impl PinDir {
    /// Only a checked name: it becomes a path component, where `..` or `a/b` would name
    /// other pins.
    pub fn new(iface: &IfaceName) -> Self {
        Self {
            iface: iface.clone(),
            dir: Self::root().join(iface.as_str()),
        }
    }

    /// The directory holding every netxdp attachment.
    pub fn root() -> PathBuf {
        Path::new(BPFFS).join("netxdp")
    }

    /// Every interface that has a pin directory, sorted by name.
    pub fn all() -> std::io::Result<Vec<PinDir>> {
        Ok(names_under(&Self::root())?
            .iter()
            .map(PinDir::new)
            .collect())
    }

    pub fn iface(&self) -> &IfaceName {
        &self.iface
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn link(&self) -> PathBuf {
        self.dir.join("link")
    }

    pub fn prog(&self) -> PathBuf {
        self.dir.join("prog")
    }

    /// Pinned when rtnetlink, not a bpf_link, holds the program on the interface.
    pub fn netlink(&self) -> PathBuf {
        self.dir.join("netlink")
    }

    pub fn stats_map(&self) -> PathBuf {
        self.dir.join(names::STATS_MAP)
    }

    pub fn info_map(&self) -> PathBuf {
        self.dir.join(names::INFO_MAP)
    }

    /// Where a new layout's maps are made by `attach --upgrade`, before they take this
    /// directory's place: a name no interface can have, so that no listing shows it.
    pub fn staging(&self) -> PinDir {
        PinDir {
            iface: self.iface.clone(),
            dir: Self::root().join(format!("{}:new", self.iface)),
        }
    }

    /// The map `name` pinned here.
    pub fn open_map(&self, name: &str) -> Result<MapData> {
        let path = self.dir.join(name);
        MapData::from_pin(&path).with_context(|| {
            format!(
                "opening {} (is netxdp attached to {iface}? `netxdp status` lists its \
                 attachments, and `netxdp attach {iface} --upgrade` makes maps of another \
                 netxdp's layout again)",
                path.display(),
                iface = self.iface
            )
        })
    }

    /// Whether an attachment is in force: its link (or its netlink hold) is pinned.
    pub fn is_attached(&self) -> bool {
        self.link().exists() || self.netlink().exists()
    }
}

/// The directories under `root` named as an interface could be, sorted. Others (made by
/// someone else, or a name no interface can have) are not netxdp's: they are left out.
fn names_under(root: &Path) -> std::io::Result<Vec<IfaceName>> {
    let mut found: Vec<IfaceName> = match std::fs::read_dir(root) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter_map(|name| IfaceName::new(name).ok())
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_named_as_interfaces_are_listed() {
        let root = std::env::temp_dir().join(format!("netxdp-pins-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["eth1", "eth0", "a b", "eth0:1", "sixteen-bytes-xx", "à"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("file0"), b"").unwrap();
        let names = names_under(&root);
        std::fs::remove_dir_all(&root).unwrap();
        let names: Vec<String> = names.unwrap().into_iter().map(String::from).collect();
        assert_eq!(names, ["eth0", "eth1"]);
    }

    #[test]
    fn a_missing_root_lists_nothing() {
        let root = std::env::temp_dir().join(format!("netxdp-pins-none-{}", std::process::id()));
        assert!(names_under(&root).unwrap().is_empty());
    }

    #[test]
    fn the_pin_directory_is_the_name_under_the_root() {
        let pins = PinDir::new(&"eth0".parse().unwrap());
        assert_eq!(pins.dir(), Path::new("/sys/fs/bpf/netxdp/eth0"));
        assert_eq!(pins.iface().as_str(), "eth0");
    }
}
