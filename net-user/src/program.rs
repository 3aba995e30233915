//! The embedded XDP object, and loading it.

use std::{
    path::Path,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, ProgramArray},
    programs::Xdp,
};
use net_common::{
    flow::{DEFAULT_FLOW_TABLE_BYTES, FLOW_ENTRY_BYTES, FLOW_SLOTS},
    names,
    source::SOURCE_SLOTS,
};

use crate::{pins::BPFFS, preflight};

/// The XDP object built by `cargo xtask build` from `net-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("NETXDP_EBPF_OBJECT"));

/// Which kernel-side log records the program emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelLog {
    /// None: the right choice when nothing will read the log ring (a pinned attach that
    /// outlives the CLI). The verifier then removes the log calls as dead code.
    #[default]
    Off,
    /// Up to debug level, for `-v` on a command that drains the ring while it runs.
    Debug,
}

impl KernelLog {
    fn level(self) -> u8 {
        match self {
            KernelLog::Off => 0,
            KernelLog::Debug => aya_log::Level::Debug as u8,
        }
    }
}

/// Whether the program tracks flows and sources, and the flow table's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flows {
    Off,
    /// The least recently seen flow is evicted when the table is full.
    Track {
        table_bytes: u64,
    },
}

impl Flows {
    /// The flows a table of this many bytes holds (see [`FLOW_ENTRY_BYTES`]); 0 when off.
    pub fn table_entries(self) -> u32 {
        match self {
            Flows::Off => 0,
            Flows::Track { table_bytes } => {
                u32::try_from(table_bytes / FLOW_ENTRY_BYTES).unwrap_or(u32::MAX)
            }
        }
    }
}

impl Default for Flows {
    fn default() -> Self {
        Flows::Track {
            table_bytes: DEFAULT_FLOW_TABLE_BYTES,
        }
    }
}

/// How to load the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub log: KernelLog,
    pub flows: Flows,
    /// Whether `netxdp capture` can copy packets out. Always, for the CLI; the benchmarks
    /// load the program without it to show what the idle capture check costs.
    pub capture: bool,
    /// Whether the kernel's coarse clock reads the `TEST_NOW` map instead ([`TestClock`]):
    /// for the tests that drive rate limits with packet times of their own. Never for the CLI.
    pub test_clock: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            log: KernelLog::default(),
            flows: Flows::default(),
            capture: true,
            test_clock: false,
        }
    }
}

/// Loads the object and the XDP program into the kernel (not attached yet).
///
/// With `pin_dir`, the maps declared as pinned are reused from that directory when they are
/// there, and created and pinned there when they are not. Without, the maps are private to
/// the returned object.
pub fn load(pin_dir: Option<&Path>, options: Options) -> Result<Ebpf> {
    // Either way maps are pinned in bpffs, if only for a moment (`demo` and `watch` too).
    preflight::ensure_bpffs()?;
    match pin_dir {
        Some(dir) => load_pinned(dir, options),
        None => {
            // aya pins every map the object declares pinned, under /sys/fs/bpf when given no
            // directory. A fresh directory, removed once loaded, keeps these maps private:
            // the object's file descriptors hold them alive.
            static LOADS: AtomicU32 = AtomicU32::new(0);
            let dir = Path::new(BPFFS).join(format!(
                "netxdp-private-{}-{}",
                std::process::id(),
                LOADS.fetch_add(1, Ordering::Relaxed)
            ));
            let loaded = load_pinned(&dir, options);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            loaded
        }
    }
}

fn load_pinned(dir: &Path, options: Options) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    let level = options.log.level();
    loader.override_global(aya_log::LEVEL, &level, false);
    let (flows_enabled, flow_entries, source_slots, flow_slots) = match options.flows {
        Flows::Off => (0u8, 1, 1, 1),
        Flows::Track { .. } => (1u8, options.flows.table_entries(), SOURCE_SLOTS, FLOW_SLOTS),
    };
    // Off, the verifier drops the tracking as dead code, and the tables are token ones.
    loader.override_global(names::FLOWS_ENABLED, &flows_enabled, true);
    loader.map_max_entries(names::FLOWS_MAP, flow_entries);
    loader.map_max_entries(names::SOURCES_MAP, source_slots);
    loader.map_max_entries(names::FLOW_SLOTS_MAP, flow_slots);
    let capture_enabled = u8::from(options.capture);
    loader.override_global(names::CAPTURE_ENABLED, &capture_enabled, true);
    let test_clock = u8::from(options.test_clock);
    loader.override_global(names::TEST_CLOCK, &test_clock, true);
    loader.default_map_pin_directory(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut ebpf = loader
        .load(OBJECT)
        .context("loading the netxdp object into the kernel")?;
    xdp_program(&mut ebpf)?
        .load()
        .context("loading the XDP program (rejected by the verifier?)")?;
    load_tail_called(
        &mut ebpf,
        names::SEARCH_PROGRAM,
        (names::SEARCH_MAP, 0),
        "the rule search",
    )?;
    load_tail_called(
        &mut ebpf,
        names::SYNGUARD_PROGRAM,
        (names::SYNGUARD_PROGRAM_MAP, 0),
        "the SYN-flood guard",
    )?;
    load_tail_called(
        &mut ebpf,
        names::CAPTURE_COPY_PROGRAM,
        (names::CAPTURE_PROGRAMS_MAP, net_common::capture::COPY_SLOT),
        "the capture expression's copy",
    )?;
    for name in [
        names::PROGRAM,
        names::SEARCH_PROGRAM,
        names::SYNGUARD_PROGRAM,
        names::CAPTURE_COPY_PROGRAM,
    ] {
        if let Some(Ok(info)) = ebpf.program(name).map(|program| program.info()) {
            tracing::debug!(
                "{name}: id {}, {} instructions verified",
                info.id(),
                info.verified_instruction_count().unwrap_or(0)
            );
        }
    }
    Ok(ebpf)
}

/// Loads a program the XDP program tail-calls and puts it in its slot of a program array.
/// The array is pinned with the other maps, so the program stays in place for as long as
/// the attachment does.
fn load_tail_called(
    ebpf: &mut Ebpf,
    program: &str,
    (map, slot): (&str, u32),
    what: &str,
) -> Result<()> {
    let tail: &mut Xdp = ebpf
        .program_mut(program)
        .with_context(|| format!("the object has no program named {program}"))?
        .try_into()?;
    tail.load()
        .with_context(|| format!("loading {what} ({program}; rejected by the verifier?)"))?;
    let fd = tail.fd()?.try_clone()?;
    let map = ebpf
        .map_mut(map)
        .with_context(|| format!("the object has no {map} map"))?;
    let mut slots: ProgramArray<&mut MapData> = ProgramArray::try_from(map)?;
    slots
        .set(slot, &fd, 0)
        .with_context(|| format!("installing {what}"))?;
    Ok(())
}

/// The XDP program inside a loaded object.
pub fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let program = ebpf
        .program_mut(names::PROGRAM)
        .with_context(|| format!("the object has no program named {}", names::PROGRAM))?;
    Ok(program.try_into()?)
}

/// The clock of a program loaded with [`Options::test_clock`]: what its coarse clock reads.
pub struct TestClock(aya::maps::Array<aya::maps::MapData, u64>);

impl TestClock {
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self> {
        let map = ebpf
            .take_map(names::TEST_NOW_MAP)
            .with_context(|| format!("the object has no {} map", names::TEST_NOW_MAP))?;
        Ok(Self(map.try_into()?))
    }

    /// Makes the program's clock read `now_ns` until set again.
    pub fn set(&mut self, now_ns: u64) -> Result<()> {
        self.0
            .set(0, now_ns, 0)
            .with_context(|| format!("writing {}", names::TEST_NOW_MAP))
    }
}
