//! Capture: turning the XDP program's copy of selected packets on and off, and reading the
//! copies back from its ring buffer.
//!
//! A [`Session`] owns the capture of one attachment while it lives: it writes the selection
//! to the pinned `CAPTURE` map, opens the ring buffer the records arrive in, and switches the
//! copying off again when dropped. One capture runs per interface at a time, on a lease its
//! reader renews ([`Session::renew`]): a capture whose reader died or stopped costs the
//! kernel next to nothing once its lease has run out, and the next capture takes over.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use netxdp::capture::{Selection, Session};
//! use netxdp::pins::PinDir;
//!
//! let selection = Selection::drops();
//! let (session, mut ring) = Session::start(&PinDir::new(&"eth0".parse()?), &selection, None)?;
//! while let Some(record) = ring.next() {
//!     println!("{} bytes", record.len());
//! }
//! println!("{:?}", session.counters()?);
//! # Ok(())
//! # }
//! ```

pub mod classic;
pub mod ebpf;
pub mod expression;
pub mod file;
mod reachable;
pub mod translate;

use std::{os::fd::AsFd as _, time::Duration};

use anyhow::{Context as _, Result, bail};
use aya::maps::{Array, IterableMap as _, Map, MapData, PerCpuArray, ProgramArray, RingBuf};
use net_common::{
    capture::{CaptureConfig, CaptureCounters, MAX_SNAPLEN},
    names,
    rule::{XDP_DROP, XDP_PASS},
};

use crate::{clock::monotonic_ns, lock::IfaceLock, pins::PinDir};
use expression::Expression;

/// How long a capture's lease runs unrenewed: how long a dead reader can still cost the
/// kernel copies.
pub const LEASE: Duration = Duration::from_secs(1);

/// Test-only: the lease in milliseconds, for a test that stops a reader for longer than a
/// lease on purpose (to let its ring fill) on a machine of any speed.
pub const LEASE_ENV: &str = "NETXDP_TEST_LEASE_MS";

/// The lease this process takes: [`LEASE`], or [`LEASE_ENV`]'s.
pub fn lease() -> Result<Duration> {
    match std::env::var(LEASE_ENV) {
        Ok(ms) => Ok(Duration::from_millis(ms.parse().with_context(|| {
            format!("{LEASE_ENV}={ms:?} is not a number of milliseconds")
        })?)),
        Err(_) => Ok(LEASE),
    }
}

/// Which packets a capture copies, and how much of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    /// XDP actions, as a bit set (bit `action`).
    pub actions: u32,
    /// Only packets this rule decided; `None` for any.
    pub rule: Option<u32>,
    /// Verdict reasons (`net_common::rule::reason` codes), as a bit set.
    pub reasons: u32,
    /// Bytes of each packet; at most [`MAX_SNAPLEN`] are copied.
    pub snaplen: u32,
    /// One selected packet in `sample`.
    pub sample: u32,
}

impl Selection {
    /// Every dropped packet, whole.
    pub fn drops() -> Self {
        Self {
            actions: 1 << XDP_DROP,
            rule: None,
            reasons: u32::MAX,
            snaplen: MAX_SNAPLEN,
            sample: 1,
        }
    }

    /// Every passed packet, whole.
    pub fn passes() -> Self {
        Self {
            actions: 1 << XDP_PASS,
            ..Self::drops()
        }
    }

    /// Every packet, whatever its action.
    pub fn all() -> Self {
        Self {
            actions: u32::MAX,
            ..Self::drops()
        }
    }

    /// The bytes copied of each packet: the snaplen asked for, within what the program copies.
    pub fn effective_snaplen(&self) -> u32 {
        self.snaplen.clamp(1, MAX_SNAPLEN)
    }
}

/// Capture counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets the selection took (before sampling).
    pub selected: u64,
    /// Packets copied to the ring buffer.
    pub captured: u64,
    /// Packets sampling chose that found the ring buffer full: dropped by the kernel.
    pub lost: u64,
}

impl std::iter::Sum for Counters {
    fn sum<I: Iterator<Item = Counters>>(counters: I) -> Counters {
        counters.fold(Counters::default(), |sum, c| Counters {
            selected: sum.selected + c.selected,
            captured: sum.captured + c.captured,
            lost: sum.lost + c.lost,
        })
    }
}

impl Counters {
    fn since(self, start: Counters) -> Counters {
        Counters {
            selected: self.selected.wrapping_sub(start.selected),
            captured: self.captured.wrapping_sub(start.captured),
            lost: self.lost.wrapping_sub(start.lost),
        }
    }
}

/// The capture counters of a pinned attachment, since attach (for `netxdp serve`).
pub struct CounterMap {
    map: PerCpuArray<MapData, CaptureCounters>,
}

impl CounterMap {
    pub fn from_pin(pins: &PinDir) -> Result<Self> {
        let map = open(pins, names::CAPTURE_STATS_MAP, Map::PerCpuArray)?;
        Ok(Self {
            map: PerCpuArray::try_from(map)?,
        })
    }

    pub fn read(&self) -> Result<Counters> {
        let per_cpu = self
            .map
            .get(&0, 0)
            .context("reading the capture counters")?;
        let total = CaptureCounters::total(per_cpu.iter());
        Ok(Counters {
            selected: total.selected,
            captured: total.captured,
            lost: total.lost,
        })
    }
}

/// A running capture on one attachment; dropping it stops the copying.
pub struct Session {
    pins: PinDir,
    config: Array<MapData, CaptureConfig>,
    /// Where the expression's program is; `None` on an attachment older than expressions.
    programs: Option<ProgramArray<MapData>>,
    session: u32,
    counters: CounterMap,
    start: Counters,
    lease: Duration,
    /// The process id of an earlier capture whose lease had run out, which this one took
    /// over (as that process's pid namespace numbers it).
    pub replaced_stale: Option<u32>,
}

impl Session {
    /// Starts copying what `selection` selects, to the ring buffer returned beside the
    /// session: its records are a [`net_common::capture::CaptureHeader`] and the packet's
    /// bytes. With an expression, only the selected packets it matches are copied. Fails if
    /// another capture holds the interface's lease, or the kernel refuses the expression's
    /// program; the capture then changes nothing.
    pub fn start(
        pins: &PinDir,
        selection: &Selection,
        expression: Option<&Expression>,
    ) -> Result<(Self, RingBuf<MapData>)> {
        let lease = lease()?;
        if !pins.is_attached() {
            bail!(
                "netxdp is not attached to {iface} (`netxdp attach {iface}` first)",
                iface = pins.iface()
            );
        }
        let mut config: Array<MapData, CaptureConfig> =
            Array::try_from(open(pins, names::CAPTURE_MAP, Map::Array)?)?;
        let counters = CounterMap::from_pin(pins)?;
        let mut ring = RingBuf::try_from(open(pins, names::CAPTURE_RING_MAP, Map::RingBuf)?)?;
        let programs = pins.open_map(names::CAPTURE_PROGRAMS_MAP).ok();

        // The same lock as rule changes take, held only while the selection is written, so
        // that two captures starting at once cannot both take the lease.
        let _lock = IfaceLock::acquire(pins.iface())?;
        let running = config.get(&0, 0)?;
        let now = monotonic_ns();
        if running.leased_at(now) {
            bail!(
                "a capture is already running on {} (netxdp process {}); one capture runs \
                 per interface at a time",
                pins.iface(),
                running.owner_pid
            );
        }
        let replaced_stale = (running.active != 0).then_some(running.owner_pid);
        match (expression, &programs) {
            (Some(expression), Some(programs)) => {
                let decision = pins.open_map(names::DECISION_MAP)?;
                expression.install(programs.fd().as_fd(), decision.fd().as_fd())?;
            }
            (Some(_), None) => bail!(
                "the netxdp program attached to {iface} predates capture expressions: \
                 `netxdp attach {iface} --upgrade` replaces it, rules kept",
                iface = pins.iface()
            ),
            (None, _) => {}
        }
        let mut programs = programs
            .map(|programs| ProgramArray::try_from(Map::ProgramArray(programs)))
            .transpose()?;
        if let (None, Some(programs)) = (expression, &mut programs) {
            // What a killed capture left there is never run (`filtered` is 0), but goes.
            clear_expression(programs)?;
        }
        // What an earlier capture left unread (it was killed, or stopped at its count) is
        // not this capture's.
        while ring.next().is_some() {}
        let start = counters.read()?;
        // A session number unlike the last capture's restarts every CPU's sampling (and a
        // clash, one in four billion, only carries a sampling countdown over).
        let session = match now as u32 {
            0 => 1,
            same if same == running.active => same.wrapping_add(2).max(1),
            other => other,
        };
        config.set(
            0,
            CaptureConfig {
                active: session,
                actions: selection.actions,
                rule_id: selection.rule.unwrap_or(0),
                reasons: selection.reasons,
                snaplen: selection.effective_snaplen(),
                sample: selection.sample.max(1),
                owner_pid: std::process::id(),
                filtered: u32::from(expression.is_some()),
                expires_ns: now + lease.as_nanos() as u64,
            },
            0,
        )?;
        let session = Self {
            pins: pins.clone(),
            config,
            programs,
            session,
            counters,
            start,
            lease,
            replaced_stale,
        };
        Ok((session, ring))
    }

    /// Extends the lease to a lease from now; call it every [`Session::renew_every`].
    /// Whether this capture still holds the interface: false once it was detached (and
    /// perhaps attached again, or upgraded, with maps made anew), or another capture took
    /// over a lease that had run out.
    ///
    /// Without the lock, which a long commit may hold for longer than a lease: another
    /// capture can only take over between this read and write if the lease had already run
    /// out, and then the write ends that capture (its next renewal finds the session is not
    /// its own) instead of this one.
    pub fn renew(&mut self) -> Result<bool> {
        // The map pinned now, which the program reads, is this session's only if it is the
        // same map.
        let Ok(pinned) = self.pins.open_map(names::CAPTURE_MAP) else {
            return Ok(false);
        };
        if pinned.info()?.id() != self.config.map().info()?.id() {
            return Ok(false);
        }
        let mut running = self.config.get(&0, 0)?;
        if running.active != self.session {
            return Ok(false);
        }
        running.expires_ns = monotonic_ns() + self.lease.as_nanos() as u64;
        self.config.set(0, running, 0)?;
        Ok(true)
    }

    /// What the program did for this capture so far.
    pub fn counters(&self) -> Result<Counters> {
        Ok(self.counters.read()?.since(self.start))
    }

    /// How often [`Session::renew`] is due: four renewals may be missed before the lease
    /// runs out.
    pub fn renew_every(&self) -> Duration {
        (self.lease / 5).max(Duration::from_millis(1))
    }

    pub fn iface(&self) -> &str {
        self.pins.iface().as_str()
    }

    /// Stops the copying; records already in the ring stay readable. Also done on drop.
    pub fn stop(&mut self) -> Result<()> {
        if !self.pins.dir().exists() {
            // Detached meanwhile: no program copies to these maps any more.
            return Ok(());
        }
        let _lock = IfaceLock::acquire(self.pins.iface())?;
        // Only if still ours: a detach and attach meanwhile would have replaced the maps.
        if self.config.get(&0, 0)?.active == self.session {
            self.config.set(0, CaptureConfig::default(), 0)?;
            // A packet that read the selection just before finds no expression: not copied.
            if let Some(programs) = &mut self.programs {
                clear_expression(programs)?;
            }
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!("stopping the capture on {}: {error:#}", self.pins.iface());
        }
    }
}

/// The process id of the capture running on an attachment, if one holds its lease.
pub fn running(pins: &PinDir) -> Result<Option<u32>> {
    let config: Array<MapData, CaptureConfig> =
        Array::try_from(open(pins, names::CAPTURE_MAP, Map::Array)?)?;
    let running = config.get(&0, 0)?;
    Ok(running
        .leased_at(monotonic_ns())
        .then_some(running.owner_pid))
}

fn clear_expression(programs: &mut ProgramArray<MapData>) -> Result<()> {
    match programs.clear_index(&net_common::capture::FILTER_SLOT) {
        Ok(()) => Ok(()),
        // Empty already.
        Err(aya::maps::MapError::SyscallError(error))
            if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(error) => Err(error).context("removing the capture expression's program"),
    }
}

fn open(pins: &PinDir, name: &str, wrap: fn(MapData) -> Map) -> Result<Map> {
    Ok(wrap(pins.open_map(name)?))
}
