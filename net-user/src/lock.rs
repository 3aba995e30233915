//! One lock per interface, outside bpffs: `/run/netxdp/IFACE.lock`, held by every netxdp
//! process while it changes the interface's attachment (attach, detach, rules, policy, a
//! capture starting or stopping).
//!
//! It lives outside the pin directory because detach deletes that directory and attach makes
//! it again: a lock on the directory itself would let a waiter end up holding a lock on a
//! directory that no longer exists while another process makes a new one.
//!
//! A busy lock is waited for a bounded time ([`WAIT`]), then the command fails naming the
//! holder, which writes its pid and command line into the lock file once it holds it. Within
//! one process the lock is re-entrant: a command that holds it can open the interface's maps,
//! which take it too.
//!
//! ```no_run
//! use netxdp::lock::IfaceLock;
//! let iface = "eth0".parse()?;
//! let _held = IfaceLock::acquire(&iface)?;
//! // ... change the attachment ...
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

use crate::iface::IfaceName;

/// Where the locks live.
pub const LOCK_DIR: &str = "/run/netxdp";
/// How long a command waits for a busy lock.
pub const WAIT: Duration = Duration::from_secs(10);
/// Test-only: the wait, in milliseconds, instead of [`WAIT`].
pub const WAIT_ENV: &str = "NETXDP_LOCK_WAIT_MS";

/// Locks this process holds, by interface, with how many holders share each.
type Held = HashMap<IfaceName, (usize, Flock<File>)>;

static HELD: Mutex<Option<Held>> = Mutex::new(None);

/// The interface's lock, held until dropped.
#[derive(Debug)]
pub struct IfaceLock {
    iface: IfaceName,
}

impl IfaceLock {
    /// The lock of the attachment pinned at `pins`, to change its maps: taken first, so that a
    /// detach under way finishes before the checks; then the attachment must be there and of
    /// this netxdp's layout.
    pub fn for_changes(pins: &crate::pins::PinDir) -> Result<Self> {
        let lock = Self::acquire(pins.iface())?;
        if !pins.is_attached() {
            bail!(
                "netxdp is not attached to {iface} (`netxdp attach {iface}` first)",
                iface = pins.iface()
            );
        }
        crate::layout::require_current(pins)?;
        Ok(lock)
    }

    /// Takes the interface's lock, waiting up to [`WAIT`] for another process to release it.
    pub fn acquire(iface: &IfaceName) -> Result<Self> {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        let held = held.get_or_insert_with(HashMap::new);
        if let Some((holders, _)) = held.get_mut(iface) {
            *holders += 1;
            return Ok(Self {
                iface: iface.clone(),
            });
        }
        let lock = lock_file(iface, wait()?)?;
        held.insert(iface.clone(), (1, lock));
        Ok(Self {
            iface: iface.clone(),
        })
    }

    /// The lock file of `iface`.
    pub fn path(iface: &IfaceName) -> PathBuf {
        Path::new(LOCK_DIR).join(format!("{iface}.lock"))
    }
}

impl Drop for IfaceLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(held) = held.as_mut() else {
            return;
        };
        if let Some((holders, _)) = held.get_mut(&self.iface) {
            *holders -= 1;
            if *holders == 0 {
                // Dropping the last handle closes the file, which releases the lock.
                held.remove(&self.iface);
            }
        }
    }
}

fn wait() -> Result<Duration> {
    match std::env::var(WAIT_ENV) {
        Ok(ms) => Ok(Duration::from_millis(ms.parse().with_context(|| {
            format!("{WAIT_ENV}={ms:?} is not a number of milliseconds")
        })?)),
        Err(_) => Ok(WAIT),
    }
}

/// Opens and locks the lock file, then writes this process's pid and command line into it.
fn lock_file(iface: &IfaceName, wait: Duration) -> Result<Flock<File>> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(LOCK_DIR)
        .with_context(|| format!("creating {LOCK_DIR}"))?;
    let path = IfaceLock::path(iface);
    let deadline = Instant::now() + wait;
    let mut file = open(&path)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let holder = format!("{} {}\n", std::process::id(), command_line());
                lock.set_len(0)
                    .and_then(|()| lock.seek(SeekFrom::Start(0)).map(drop))
                    .and_then(|()| lock.write_all(holder.as_bytes()))
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok(lock);
            }
            Err((unlocked, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = unlocked;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((mut unlocked, Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = unlocked.read_to_string(&mut holder);
                bail!(
                    "{iface} is busy: {} holds its lock ({}); waited {:.1} s",
                    describe_holder(holder.trim()),
                    path.display(),
                    wait.as_secs_f64()
                );
            }
            Err((_, errno)) => {
                return Err(errno).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// This process's command line, as `ps` shows it.
fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// "netxdp process PID (`COMMAND`)" from a lock file's "PID COMMAND" line.
fn describe_holder(line: &str) -> String {
    match line.split_once(' ') {
        Some((pid, command)) => format!("netxdp process {pid} (`{command}`)"),
        None if !line.is_empty() => format!("netxdp process {line}"),
        None => "another netxdp process".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_named_with_its_command() {
        assert_eq!(
            describe_holder("4242 netxdp apply eth0 rules.toml"),
            "netxdp process 4242 (`netxdp apply eth0 rules.toml`)"
        );
        assert_eq!(describe_holder(""), "another netxdp process");
    }
}
