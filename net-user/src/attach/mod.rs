//! Attaching the program to an interface, for good (pinned) or for the life of a process.
//!
//! - [`hold`]: what keeps the program on the interface (a bpf_link, or rtnetlink).
//! - [`upgrade`]: `attach --upgrade`, from maps of another layout.

mod hold;
mod upgrade;

use std::{
    fs, io,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, MapData},
    programs::{ProgramError, ProgramInfo, Xdp, XdpMode, links::FdLink},
};
use net_common::{
    info::{AttachInfo, AttachMode, LAYOUT_VERSION},
    names,
    synguard::SynGuardCounters,
};
use tracing::info;

use crate::{
    counters::CounterMap,
    filter::{FilterMaps, RuleSet, file::RulesFile},
    iface::IfaceName,
    iflink::{self, AttachedXdp},
    layout,
    lock::IfaceLock,
    pins::PinDir,
    preflight,
    program::{self, Flows, KernelLog},
};

pub use hold::Hold;

/// The attach mode asked for on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeRequest {
    /// Native (driver) mode if the driver supports it, else generic (skb) mode.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode: works on every interface, at a higher cost per packet.
    Skb,
}

impl ModeRequest {
    fn accepts(self, mode: AttachMode) -> bool {
        matches!(
            (self, mode),
            (ModeRequest::Auto, _)
                | (ModeRequest::Native, AttachMode::Native)
                | (ModeRequest::Skb, AttachMode::Skb)
        )
    }
}

/// What `attach` is asked to do.
#[derive(Debug, Default)]
pub struct Request {
    pub mode: ModeRequest,
    /// Take the place of another tool's XDP program, in one step.
    pub force: bool,
    pub flows: Flows,
    /// Rules and settings put in force before the program sees a packet (or, when netxdp is
    /// attached already, applied as `netxdp apply` would).
    pub rules: Option<RulesFile>,
    /// Re-create maps of another layout, carrying their rules and policy over.
    pub upgrade: bool,
}

/// What `attach` did.
#[derive(Debug)]
pub enum Outcome {
    Attached {
        mode: AttachMode,
        program_id: u32,
        /// The other tool's program netxdp took the place of, described.
        replaced: Option<String>,
    },
    /// netxdp was attached already, in a mode the request accepts: only the rules asked
    /// for, if any, were applied.
    AlreadyAttached { mode: AttachMode },
    /// The maps were of another layout: they were made again, holding the same rules.
    Upgraded {
        mode: AttachMode,
        program_id: u32,
        /// The layout the old maps' record named.
        from: Option<u32>,
        rules: usize,
    },
}

/// Attaches the program to `iface` and pins it, with its link and maps, under
/// `/sys/fs/bpf/netxdp/IFACE/`, so that it keeps running after this process exits.
///
/// Everything that can fail comes before the program reaches the interface: the layout
/// check, the load and the verifier, and the rules file, written into the maps first so that
/// the first packet meets them. Either the attachment is complete (link pinned last) or
/// nothing new is left behind. With `force`, another tool's XDP program is replaced in one
/// step; without, it is named and left alone.
pub fn attach_pinned(iface: &IfaceName, request: &Request) -> Result<Outcome> {
    preflight::require_privileges()?;
    let ifindex = preflight::ifindex(iface)?;
    preflight::ensure_bpffs()?;
    let _lock = IfaceLock::acquire(iface)?;
    let pins = PinDir::new(iface);
    if let Some(stale) = layout::check(&pins)? {
        if !request.upgrade {
            return Err(stale.into());
        }
        return upgrade::run(&pins, ifindex, request, &stale);
    }
    if pins.is_attached() {
        match read_info(&pins) {
            Ok(record) if hold::holds(&pins, &record, ifindex) => {
                let mode = record.mode().context("the attach record is unreadable")?;
                if !request.mode.accepts(mode) {
                    bail!(
                        "netxdp is already attached to {iface} in {} mode; run `netxdp detach \
                         {iface}` first to attach in another mode",
                        mode.as_str()
                    );
                }
                if let Some(file) = &request.rules {
                    commit_file(&mut FilterMaps::from_pins(&pins)?, file)?;
                }
                return Ok(Outcome::AlreadyAttached { mode });
            }
            // The interface was deleted and a new one took its name, or another tool took
            // netxdp's netlink program off: that attachment is dead.
            record => {
                info!("removing the stale attachment of {iface}");
                hold::release(&pins, record.ok())?;
            }
        }
    }
    let other = foreign_program(iface, ifindex, request)?;
    let dir_existed = pins.dir().exists();
    fs::create_dir_all(pins.dir()).with_context(|| format!("creating {}", pins.dir().display()))?;
    let result = attach_and_pin(&pins, ifindex, request, other, None);
    if result.is_err() {
        // The hold is pinned last, so on failure it does not exist: only the program pin,
        // and maps this attempt created, are to be removed.
        let _ = fs::remove_file(pins.prog());
        if !dir_existed {
            let _ = fs::remove_dir_all(pins.dir());
        }
    }
    let made = result?;
    Ok(Outcome::Attached {
        mode: made.mode,
        program_id: made.program_id,
        replaced: other.map(describe),
    })
}

/// A program attached and pinned.
struct Made {
    mode: AttachMode,
    program_id: u32,
}

/// Loads the program into `pins`, with `carried` (the rules `upgrade` brings over) and the
/// request's rules in force, then attaches it, in the place of `other` if given.
fn attach_and_pin(
    pins: &PinDir,
    ifindex: u32,
    request: &Request,
    other: Option<AttachedXdp>,
    carried: Option<RuleSet>,
) -> Result<Made> {
    let mut ebpf = load_for(pins, ifindex, request, carried)?;
    let program = program::xdp_program(&mut ebpf)?;
    let (hold, mode) = match other {
        None => {
            let (link_id, mode) = attach_to(program, pins.iface().as_str(), ifindex, request.mode)?;
            let link: FdLink = program
                .take_link(link_id)?
                .try_into()
                .context("the kernel attached without a bpf_link, which cannot be pinned")?;
            (Some(link), mode)
        }
        Some(other) => {
            let mode = other
                .attach_mode()
                .context("the other program's mode cannot be replaced")?;
            hold::replace(pins, ifindex, other, program)?;
            (None, mode)
        }
    };
    let program_id = program.info()?.id();
    write_info(&mut ebpf, ifindex, Some(mode), request.flows)?;
    pin_program(pins, &mut ebpf, hold)?;
    Ok(Made { mode, program_id })
}

/// Loads the program with its maps pinned in `pins`, and puts `carried` then the request's
/// rules file in force in them, all before the program is attached anywhere.
fn load_for(
    pins: &PinDir,
    ifindex: u32,
    request: &Request,
    carried: Option<RuleSet>,
) -> Result<Ebpf> {
    let rules = request.rules.as_ref();
    // Flow and source tables pinned by an earlier attachment have their own sizes: start
    // afresh.
    for map in [names::FLOWS_MAP, names::SOURCES_MAP] {
        match fs::remove_file(pins.dir().join(map)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error.into()),
            _ => {}
        }
    }
    let options = program::Options {
        log: KernelLog::Off,
        flows: request.flows,
        ..Default::default()
    };
    let mut ebpf = program::load(Some(pins.dir()), options)?;
    // The record first: it names the layout of the maps just made or reused.
    write_info(&mut ebpf, ifindex, None, request.flows)?;
    if carried.is_some() || rules.is_some() {
        let mut maps = FilterMaps::from_pins(pins)?;
        if let Some(mut set) = carried {
            maps.commit(&mut set)?;
        }
        if let Some(file) = rules {
            commit_file(&mut maps, file)?;
        }
    }
    Ok(ebpf)
}

/// Puts a rules file in force, as `netxdp apply` does.
fn commit_file(maps: &mut FilterMaps, file: &RulesFile) -> Result<()> {
    let (mut after, _) = file.applied_to(&maps.load()?)?;
    maps.commit(&mut after)
}

/// Pins the program, then what holds it on the interface: the link, or for a netlink
/// program a second pin that says so.
fn pin_program(pins: &PinDir, ebpf: &mut Ebpf, link: Option<FdLink>) -> Result<()> {
    // A stale program pin from an interrupted attach would make pinning fail.
    match fs::remove_file(pins.prog()) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error.into()),
        _ => {}
    }
    let program = program::xdp_program(ebpf)?;
    program
        .pin(pins.prog())
        .with_context(|| format!("pinning the program at {}", pins.prog().display()))?;
    match link {
        Some(link) => {
            link.pin(pins.link())
                .with_context(|| format!("pinning the link at {}", pins.link().display()))?;
        }
        None => hold::pin_netlink_hold(pins, program)?,
    }
    Ok(())
}

/// Attaches `program` in the requested mode; `auto` falls back from native to skb, saying so.
pub fn attach_to(
    program: &mut Xdp,
    iface: &str,
    ifindex: u32,
    request: ModeRequest,
) -> Result<(aya::programs::xdp::XdpLinkId, AttachMode)> {
    if request != ModeRequest::Skb {
        match program.attach_to_if_index(ifindex, XdpMode::Driver) {
            Ok(id) => return Ok((id, AttachMode::Native)),
            Err(error) if is_busy(&error) => return Err(busy_error(iface, error)),
            Err(error) if request == ModeRequest::Native => {
                return Err(anyhow::Error::new(error).context(format!(
                    "attaching in native mode to {iface} (the driver may lack XDP support: \
                     try --mode skb)"
                )));
            }
            Err(error) => {
                info!("native XDP is not available on {iface} ({error}); using skb (generic) mode");
            }
        }
    }
    match program.attach_to_if_index(ifindex, XdpMode::Skb) {
        Ok(id) => Ok((id, AttachMode::Skb)),
        Err(error) if is_busy(&error) => Err(busy_error(iface, error)),
        Err(error) => {
            Err(anyhow::Error::new(error).context(format!("attaching in skb mode to {iface}")))
        }
    }
}

/// Another tool's XDP program on the interface, which only `force` may replace: it is
/// named and left alone otherwise, or when it cannot be replaced in one step.
fn foreign_program(
    iface: &IfaceName,
    ifindex: u32,
    request: &Request,
) -> Result<Option<AttachedXdp>> {
    let Some(other) = iflink::attached_xdp(ifindex)
        .with_context(|| format!("asking the kernel which XDP program {iface} has"))?
    else {
        return Ok(None);
    };
    let described = describe(other);
    if !request.force {
        bail!(
            "{described} is already attached to {iface}; `netxdp attach {iface} --force` \
             replaces it (`ip -d link show dev {iface}` shows it)"
        );
    }
    match other.attach_mode() {
        Some(mode) if request.mode.accepts(mode) => Ok(Some(other)),
        Some(_) => bail!(
            "{described} is attached to {iface} in {} mode, and --force replaces it in one \
             step, in its own mode: leave out --mode (or remove it first, with `ip link set \
             dev {iface} xdp off`)",
            other.mode
        ),
        None => bail!(
            "{described} is attached to {iface} in {} mode, which netxdp cannot take the \
             place of (`ip link set dev {iface} xdp off` removes it)",
            other.mode
        ),
    }
}

/// Another program on an interface, for messages.
fn describe(other: AttachedXdp) -> String {
    format!(
        "XDP program {} (id {}, {} mode)",
        program_name(other.program_id),
        other.program_id,
        other.mode
    )
}

/// A program's name as the kernel has it, for messages.
fn program_name(id: u32) -> String {
    aya::programs::loaded_programs()
        .filter_map(|info| info.ok())
        .find(|info| info.id() == id)
        .and_then(|info| info.name_as_str().map(|name| format!("\"{name}\"")))
        .unwrap_or_else(|| "(unnamed)".to_owned())
}

fn is_busy(error: &ProgramError) -> bool {
    matches!(error, ProgramError::SyscallError(e)
        if matches!(e.io_error.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)))
}

fn busy_error(iface: &str, error: ProgramError) -> anyhow::Error {
    anyhow::Error::new(error).context(format!(
        "another XDP program is already attached to {iface} (`ip link show dev {iface}` names it; \
         `ip link set dev {iface} xdp off` or its own tool removes it)"
    ))
}

/// Writes the attach record: the layout always, the mode once the program is attached.
fn write_info(ebpf: &mut Ebpf, ifindex: u32, mode: Option<AttachMode>, flows: Flows) -> Result<()> {
    let map = ebpf
        .map_mut(names::INFO_MAP)
        .context("the object has no INFO map")?;
    let mut info: Array<&mut MapData, AttachInfo> = Array::try_from(map)?;
    let attached_at_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    info.set(
        0,
        AttachInfo {
            ifindex,
            mode: mode.map_or(0, |mode| mode as u32),
            attached_at_unix,
            flow_table_size: flows.table_entries(),
            layout: LAYOUT_VERSION,
        },
        0,
    )?;
    Ok(())
}

/// Reads the attach record pinned for an interface.
pub fn read_info(pins: &PinDir) -> Result<AttachInfo> {
    let map = pins.open_map(names::INFO_MAP)?;
    let info: Array<MapData, AttachInfo> = Array::try_from(aya::maps::Map::Array(map))?;
    Ok(info.get(&0, 0)?)
}

/// Detaches netxdp from `iface` and removes its pins; with `keep_rules`, the filter's maps
/// and the attach record (which names their layout) stay pinned, for the next attach to
/// reuse.
pub fn detach_pinned(iface: &IfaceName, keep_rules: bool) -> Result<()> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    let _lock = IfaceLock::acquire(iface)?;
    let pins = PinDir::new(iface);
    if !pins.dir().exists() {
        bail!("netxdp is not attached to {iface} (`netxdp status` lists its attachments)");
    }
    let record = read_info(&pins).ok();
    hold::release(&pins, record)?;
    if keep_rules {
        for entry in fs::read_dir(pins.dir())? {
            let entry = entry?;
            let name = entry.file_name();
            let kept = names::FILTER_MAPS
                .iter()
                .chain(&[names::INFO_MAP])
                .any(|map| name == *map);
            if !kept {
                fs::remove_file(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
        if let Some(record) = record {
            mark_detached(&pins, record)?;
        }
        return Ok(());
    }
    fs::remove_dir_all(pins.dir()).with_context(|| format!("removing {}", pins.dir().display()))?;
    crate::last_apply::LastApply::forget(iface);
    // The last detach leaves no trace; this fails, harmlessly, while others remain.
    let _ = fs::remove_dir(PinDir::root());
    Ok(())
}

/// Rewrites a kept record as attached nowhere, in no mode, keeping its layout.
fn mark_detached(pins: &PinDir, record: AttachInfo) -> Result<()> {
    let map = pins.open_map(names::INFO_MAP)?;
    let mut info: Array<MapData, AttachInfo> = Array::try_from(aya::maps::Map::Array(map))?;
    info.set(
        0,
        AttachInfo {
            ifindex: 0,
            mode: 0,
            ..record
        },
        0,
    )?;
    Ok(())
}

/// One pinned attachment, as `status` shows it.
#[derive(Debug)]
pub struct Attachment {
    pub iface: IfaceName,
    pub info: Option<AttachInfo>,
    pub program: Option<ProgramInfo>,
    /// Whether the interface the record names still exists under this name.
    pub live: bool,
    pub counters: Option<net_common::stats::Stats>,
    /// The rule set in force, if it could be read.
    pub rules: Option<crate::filter::RuleSet>,
    /// How it is classified, and the kernel memory of the filter's tables.
    pub classifier: Option<(crate::filter::maps::InForce, u64)>,
    /// The process id of a `netxdp capture` running on it.
    pub capture_pid: Option<u32>,
    /// The outcome of the last `netxdp apply` on it.
    pub last_apply: Option<crate::last_apply::LastApply>,
    /// What holds the program on the interface, if anything does.
    pub hold: Option<Hold>,
    /// Bans in force, if the ban tables could be read.
    pub bans: Option<usize>,
    /// The ports the SYN-flood guard answers for (empty when it is off), and what it did.
    pub synguard: Option<(Vec<u16>, SynGuardCounters)>,
    /// The flow and source tables as the kernel made them; `None` with `--no-flows` (or
    /// when they cannot be read).
    pub tables: Option<TrackingTables>,
}

/// The sizes of an attachment's flow and source tables.
#[derive(Clone, Copy, Debug)]
pub struct TrackingTables {
    pub flows: crate::flows::Allocation,
    pub sources: crate::flows::Allocation,
    /// Possible CPUs: each evicts from its own share of the flow table, and has its own
    /// source slots.
    pub cpus: usize,
}

impl TrackingTables {
    fn read(pins: &PinDir) -> Result<Self> {
        Ok(Self {
            flows: crate::flows::FlowTable::from_pin(pins)?.allocation()?,
            sources: crate::sources::SourceTable::from_pin(pins)?.allocation()?,
            cpus: aya::util::nr_cpus().map_err(|(_, error)| error)?,
        })
    }
}

/// Every pinned attachment.
pub fn list_pinned() -> Result<Vec<Attachment>> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    let mut found = Vec::new();
    for pins in PinDir::all().context("listing /sys/fs/bpf/netxdp")? {
        let info = read_info(&pins).ok();
        let live = info.is_some_and(|record| {
            preflight::ifindex(pins.iface())
                .is_ok_and(|ifindex| hold::holds(&pins, &record, ifindex))
        });
        found.push(Attachment {
            iface: pins.iface().clone(),
            info,
            program: ProgramInfo::from_pin(pins.prog()).ok(),
            live,
            counters: CounterMap::from_pin(&pins).and_then(|map| map.read()).ok(),
            rules: FilterMaps::read_pins(&pins)
                .and_then(|maps| maps.load())
                .ok(),
            classifier: FilterMaps::read_pins(&pins)
                .and_then(|maps| Ok((maps.classifier_in_force()?, maps.kernel_bytes()?)))
                .ok(),
            capture_pid: crate::capture::running(&pins).ok().flatten(),
            last_apply: crate::last_apply::LastApply::read(pins.iface()),
            hold: Hold::of(&pins),
            bans: crate::bans::BanTable::in_force(&pins).ok(),
            synguard: crate::synguard::SynGuardMaps::read_pins(&pins)
                .and_then(|guard| Ok((guard.ports()?, guard.counters()?)))
                .ok(),
            tables: info
                .filter(|record| record.flow_table_size > 0)
                .and_then(|_| TrackingTables::read(&pins).ok()),
        });
    }
    Ok(found)
}

/// An attachment owned by this process: detached when dropped (by `watch` and `demo`).
pub struct ScopedAttachment {
    pub ebpf: Ebpf,
    pub mode: AttachMode,
}

impl ScopedAttachment {
    pub fn new(iface: &IfaceName, request: ModeRequest, options: program::Options) -> Result<Self> {
        preflight::require_privileges()?;
        let ifindex = preflight::ifindex(iface)?;
        if PinDir::new(iface).is_attached() {
            bail!(
                "netxdp is already attached to {iface} for good: `netxdp stats {iface}` shows its \
                 counters, `netxdp detach {iface}` removes it"
            );
        }
        foreign_program(iface, ifindex, &Request::default())?;
        let mut ebpf = program::load(None, options)?;
        let program = program::xdp_program(&mut ebpf)?;
        let (_link, mode) = attach_to(program, iface.as_str(), ifindex, request)?;
        write_info(&mut ebpf, ifindex, Some(mode), options.flows)?;
        Ok(Self { ebpf, mode })
    }
}
