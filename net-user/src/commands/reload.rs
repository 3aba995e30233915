//! `netxdp apply IFACE FILE --watch`: the rules file put in force again whenever it changes.
//!
//! The file's directory is watched (inotify), not the file: editors and config management
//! replace a file by renaming another over it, and a Kubernetes ConfigMap mount swaps a
//! `..data` symlink, neither of which a watch on the file itself would see. Any event there
//! has the file read again, once the directory has been quiet for [`SETTLE`]; only content
//! unlike the last read is applied. A file that fails leaves the rules in force as they were.

use std::{
    os::fd::{AsFd as _, AsRawFd, RawFd},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, Result};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

use super::filter::put_in_force;
use crate::{iface::IfaceName, preflight, process::Shutdown};

/// How long the directory must be quiet before the file is read: a writer's steps (create,
/// write, rename) land together.
const SETTLE: Duration = Duration::from_millis(100);

/// The inotify instance, as tokio watches it.
struct Watch(Inotify);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub async fn watch(iface: &IfaceName, path: &Path) -> Result<()> {
    preflight::require_privileges()?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .context("starting inotify")?;
    inotify
        .add_watch(
            dir,
            AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_ATTRIB,
        )
        .with_context(|| format!("watching {}", dir.display()))?;
    // SAFETY: the Inotify owns its fd for its whole life and always reports that same fd;
    // the AsyncFd owns the Inotify.
    let events = unsafe { AsyncFd::register(Watch(inotify)) }
        .map_err(|error| error.into_parts().1)
        .context("watching inotify")?;
    let mut shutdown = Shutdown::new()?;
    eprintln!(
        "netxdp: watching {} for changes; each is applied to {iface} whole, or not at all",
        path.display()
    );
    let mut last_read = None;
    apply_if_changed(iface, path, &mut last_read);
    loop {
        tokio::select! {
            event = next_event(&events) => event?,
            _ = shutdown.recv() => return Ok(()),
        }
        // Until the writer is done: no event for SETTLE.
        loop {
            tokio::select! {
                event = next_event(&events) => event?,
                _ = tokio::time::sleep(SETTLE) => break,
                _ = shutdown.recv() => return Ok(()),
            }
        }
        apply_if_changed(iface, path, &mut last_read);
    }
}

/// Waits for events, and reads every one pending: which they were does not matter, the
/// file is read again.
async fn next_event(events: &AsyncFd<Watch>) -> Result<()> {
    let mut ready = events.readable().await.context("waiting for inotify")?;
    while matches!(ready.get_inner().0.read_events(), Ok(read) if !read.is_empty()) {}
    ready.clear_ready();
    Ok(())
}

/// Applies the file if its content is not what was read last, and says what came of it.
fn apply_if_changed(iface: &IfaceName, path: &Path, last_read: &mut Option<Vec<u8>>) {
    let content = std::fs::read(path).ok();
    if content.is_some() && content == *last_read {
        return;
    }
    *last_read = content;
    match put_in_force(iface, path) {
        Ok(applied) => eprintln!(
            "netxdp: applied {} to {iface}: {}",
            path.display(),
            applied.summary
        ),
        Err(error) => {
            eprintln!("netxdp: {error:#}; the rules in force on {iface} stay as they were")
        }
    }
}
