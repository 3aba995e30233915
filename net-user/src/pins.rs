//! Where an attachment lives in bpffs: `/sys/fs/bpf/netxdp/IFACE/`, holding
//!
//! | pin     | what                                                            |
//! |---------|-----------------------------------------------------------------|
//! | `link`  | the XDP bpf_link: as long as it is pinned, the program stays on |
//! | `prog`  | the program, for `bpftool prog run/profile pinned ...`          |
//! | `STATS` | the per-CPU counters ([`net_common::stats::Stats`])             |
//! | `INFO`  | the attach record ([`net_common::info::AttachInfo`])            |
//! | `FLOWS` | the flow table ([`net_common::flow`])                            |
//! | `RULES`, `FILTER_*`, ... | the filter's rule set and counters ([`net_common::names::FILTER_MAPS`]) |
//! | `CAPTURE`, `CAPTURE_STATS`, `CAPTURE_RING` | the running capture's selection, its counters, its ring buffer ([`net_common::capture`]) |

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use net_common::names;
use nix::fcntl::{Flock, FlockArg};

/// Where bpffs is expected to be mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// The pins of one interface's attachment.
#[derive(Clone, Debug)]
pub struct PinDir {
    iface: String,
    dir: PathBuf,
}

impl PinDir {
    pub fn new(iface: &str) -> Self {
        Self {
            iface: iface.to_owned(),
            dir: Self::root().join(iface),
        }
    }

    /// The directory holding every netxdp attachment.
    pub fn root() -> PathBuf {
        Path::new(BPFFS).join("netxdp")
    }

    /// Every interface that has a pin directory, sorted by name.
    pub fn all() -> std::io::Result<Vec<PinDir>> {
        let mut found = match std::fs::read_dir(Self::root()) {
            Ok(entries) => entries
                .filter_map(|entry| entry.ok())
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                .filter_map(|entry| entry.file_name().into_string().ok())
                .map(|iface| PinDir::new(&iface))
                .collect(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        found.sort_by(|a, b| a.iface.cmp(&b.iface));
        Ok(found)
    }

    pub fn iface(&self) -> &str {
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

    pub fn stats_map(&self) -> PathBuf {
        self.dir.join(names::STATS_MAP)
    }

    pub fn info_map(&self) -> PathBuf {
        self.dir.join(names::INFO_MAP)
    }

    /// Whether an attachment is in force: its link is pinned.
    pub fn is_attached(&self) -> bool {
        self.link().exists()
    }

    /// An exclusive lock on the directory, which every netxdp process that changes the
    /// attachment's maps (rules, capture) holds while it does; released on drop.
    pub fn lock(&self) -> Result<Flock<File>> {
        let dir =
            File::open(&self.dir).with_context(|| format!("opening {}", self.dir.display()))?;
        Flock::lock(dir, FlockArg::LockExclusive)
            .map_err(|(_, errno)| errno)
            .with_context(|| format!("locking {}", self.dir.display()))
    }
}
