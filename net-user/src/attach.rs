//! Attaching the program to an interface, for good (pinned) or for the life of a process.

use std::{
    fs, io,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, MapData},
    programs::{
        ProgramError, ProgramInfo, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
    },
};
use net_common::{
    info::{AttachInfo, AttachMode},
    names,
};
use tracing::{debug, info};

use crate::{
    counters::CounterMap,
    filter::FilterMaps,
    iface::IfaceName,
    iflink,
    lock::IfaceLock,
    pins::PinDir,
    preflight,
    program::{self, Flows, KernelLog},
};

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

/// What `attach` did.
#[derive(Debug)]
pub enum Outcome {
    Attached {
        mode: AttachMode,
        program_id: u32,
    },
    /// netxdp was attached already, in a mode the request accepts: nothing changed.
    AlreadyAttached {
        mode: AttachMode,
    },
}

/// Attaches the program to `iface` and pins it, with its link and maps, under
/// `/sys/fs/bpf/netxdp/IFACE/`, so that it keeps running after this process exits.
///
/// Either the attachment is complete (link pinned last) or nothing new is left behind.
/// With `force`, another tool's XDP program on the interface is removed first; without, it
/// is named and left alone.
pub fn attach_pinned(
    iface: &IfaceName,
    request: ModeRequest,
    force: bool,
    flows: Flows,
) -> Result<Outcome> {
    preflight::require_privileges()?;
    let ifindex = preflight::ifindex(iface)?;
    preflight::ensure_bpffs()?;
    let _lock = IfaceLock::acquire(iface)?;
    let pins = PinDir::new(iface);
    if pins.is_attached() {
        match read_info(&pins) {
            Ok(record) if record.ifindex == ifindex => {
                let mode = record.mode().context("the attach record is unreadable")?;
                if request.accepts(mode) {
                    return Ok(Outcome::AlreadyAttached { mode });
                }
                bail!(
                    "netxdp is already attached to {iface} in {} mode; run `netxdp detach {iface}` \
                     first to attach in another mode",
                    mode.as_str()
                );
            }
            // The interface was deleted and a new one took its name: the old link is dead.
            _ => {
                info!("removing the stale attachment of a former interface named {iface}");
                remove_link(&pins)?;
            }
        }
    }

    make_way(iface, ifindex, force)?;

    let dir_existed = pins.dir().exists();
    fs::create_dir_all(pins.dir()).with_context(|| format!("creating {}", pins.dir().display()))?;
    let result = attach_and_pin(&pins, ifindex, request, flows);
    if result.is_err() {
        // The link pin is written last, so on failure it does not exist: only the program
        // pin, and maps this attempt created, are to be removed.
        let _ = fs::remove_file(pins.prog());
        if !dir_existed {
            let _ = fs::remove_dir_all(pins.dir());
        }
    }
    result
}

fn attach_and_pin(
    pins: &PinDir,
    ifindex: u32,
    request: ModeRequest,
    flows: Flows,
) -> Result<Outcome> {
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
        flows,
        ..Default::default()
    };
    let mut ebpf = program::load(Some(pins.dir()), options)?;
    let program = program::xdp_program(&mut ebpf)?;
    let (link_id, mode) = attach_to(program, pins.iface().as_str(), ifindex, request)?;
    let link: FdLink = program
        .take_link(link_id)?
        .try_into()
        .context("the kernel attached without a bpf_link, which cannot be pinned")?;
    let program_id = program.info()?.id();

    write_info(&mut ebpf, ifindex, mode, flows)?;
    // A stale program pin from an interrupted attach would make pinning fail.
    match fs::remove_file(pins.prog()) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error.into()),
        _ => {}
    }
    program::xdp_program(&mut ebpf)?
        .pin(pins.prog())
        .with_context(|| format!("pinning the program at {}", pins.prog().display()))?;
    link.pin(pins.link())
        .with_context(|| format!("pinning the link at {}", pins.link().display()))?;
    Ok(Outcome::Attached { mode, program_id })
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

/// Checks that no other XDP program holds the interface; with `force`, removes one that
/// was attached through netlink, as `ip link set dev IFACE xdp off` would.
fn make_way(iface: &IfaceName, ifindex: u32, force: bool) -> Result<()> {
    let Some(other) = iflink::attached_xdp(ifindex)
        .with_context(|| format!("asking the kernel which XDP program {iface} has"))?
    else {
        return Ok(());
    };
    let name = program_name(other.program_id);
    let described = format!(
        "XDP program {name} (id {}, {} mode)",
        other.program_id, other.mode
    );
    if !force {
        bail!(
            "{described} is already attached to {iface}; `netxdp attach {iface} --force` \
             replaces it (`ip -d link show dev {iface}` shows it)"
        );
    }
    match iflink::detach_xdp(ifindex, other) {
        Ok(()) => {
            info!("removed {described} from {iface}");
            Ok(())
        }
        Err(error) if error.raw_os_error() == Some(libc::EBUSY) => bail!(
            "{described} on {iface} is held by a bpf_link, which only its owner can remove \
             (`bpftool link` lists it; `bpftool link detach id ID` forces it off)"
        ),
        Err(error) => {
            Err(anyhow::Error::new(error).context(format!("removing {described} from {iface}")))
        }
    }
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

fn write_info(ebpf: &mut Ebpf, ifindex: u32, mode: AttachMode, flows: Flows) -> Result<()> {
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
            mode: mode as u32,
            attached_at_unix,
            flow_table_size: flows.table_entries(),
            _reserved: 0,
        },
        0,
    )?;
    Ok(())
}

/// Reads the attach record pinned for an interface.
pub fn read_info(pins: &PinDir) -> Result<AttachInfo> {
    let map = MapData::from_pin(pins.info_map())
        .with_context(|| format!("opening {}", pins.info_map().display()))?;
    let info: Array<MapData, AttachInfo> = Array::try_from(aya::maps::Map::Array(map))?;
    Ok(info.get(&0, 0)?)
}

/// Detaches netxdp from `iface` and removes its pins; with `keep_rules`, the filter's maps
/// stay pinned, for the next attach to reuse.
pub fn detach_pinned(iface: &IfaceName, keep_rules: bool) -> Result<()> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    let _lock = IfaceLock::acquire(iface)?;
    let pins = PinDir::new(iface);
    if !pins.dir().exists() {
        bail!("netxdp is not attached to {iface} (`netxdp status` lists its attachments)");
    }
    remove_link(&pins)?;
    if keep_rules {
        for entry in fs::read_dir(pins.dir())? {
            let entry = entry?;
            let name = entry.file_name();
            if !names::FILTER_MAPS.iter().any(|map| name == *map) {
                fs::remove_file(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
        return Ok(());
    }
    fs::remove_dir_all(pins.dir()).with_context(|| format!("removing {}", pins.dir().display()))?;
    // The last detach leaves no trace; this fails, harmlessly, while others remain.
    let _ = fs::remove_dir(PinDir::root());
    Ok(())
}

/// Unpins the link, which detaches the program once no one else holds it.
fn remove_link(pins: &PinDir) -> Result<()> {
    if !pins.link().exists() {
        return Ok(());
    }
    let link = PinnedLink::from_pin(pins.link())
        .with_context(|| format!("opening {}", pins.link().display()))?;
    let link = link
        .unpin()
        .with_context(|| format!("unpinning {}", pins.link().display()))?;
    drop(link);
    debug!("unpinned {}", pins.link().display());
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
            pins.is_attached() && preflight::ifindex(pins.iface()).ok() == Some(record.ifindex)
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
        make_way(iface, ifindex, false)?;
        let mut ebpf = program::load(None, options)?;
        let program = program::xdp_program(&mut ebpf)?;
        let (_link, mode) = attach_to(program, iface.as_str(), ifindex, request)?;
        write_info(&mut ebpf, ifindex, mode, options.flows)?;
        Ok(Self { ebpf, mode })
    }
}
