//! The outcome of the last `netxdp apply` on an interface, kept beside its lock in
//! `/run/netxdp/IFACE.apply.json`, for `status` and `serve` to show: the way to tell that a
//! rules file reloaded by `apply --watch` (or `systemctl reload`) was refused, and the
//! previous rules stayed.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::{iface::IfaceName, lock::LOCK_DIR};

/// One apply's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastApply {
    /// The rules file, as given.
    pub file: String,
    /// Whether its rules are the ones in force.
    pub ok: bool,
    /// When, in seconds since the Unix epoch.
    pub at_unix: u64,
    /// What was done ("2 added, 0 removed, ..."), or why nothing was.
    pub outcome: String,
}

impl LastApply {
    pub fn new(file: &Path, result: &Result<String>) -> Self {
        Self {
            file: file.display().to_string(),
            ok: result.is_ok(),
            at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            outcome: match result {
                Ok(summary) => summary.clone(),
                Err(error) => format!("{error:#}"),
            },
        }
    }

    fn path(iface: &IfaceName) -> PathBuf {
        Path::new(LOCK_DIR).join(format!("{iface}.apply.json"))
    }

    /// Records this outcome for `iface`, in one rename: a reader sees the last record or
    /// this one, whole.
    pub fn record(&self, iface: &IfaceName) -> Result<()> {
        std::fs::create_dir_all(LOCK_DIR).with_context(|| format!("creating {LOCK_DIR}"))?;
        let path = Self::path(iface);
        let partial = path.with_extension(format!("json.{}", std::process::id()));
        let mut file = std::fs::File::create(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        file.write_all(serde_json::to_string(self)?.as_bytes())?;
        std::fs::rename(&partial, &path)
            .with_context(|| format!("renaming {} into place", partial.display()))
    }

    /// Forgets the outcomes recorded for `iface` (it was detached).
    pub fn forget(iface: &IfaceName) {
        let _ = std::fs::remove_file(Self::path(iface));
    }

    /// The last outcome recorded for `iface`, if any.
    pub fn read(iface: &IfaceName) -> Option<Self> {
        let text = std::fs::read_to_string(Self::path(iface)).ok()?;
        serde_json::from_str(&text).ok()
    }
}
