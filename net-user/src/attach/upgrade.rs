//! `attach --upgrade`: maps of another layout made again, holding the same rules.
//!
//! The rule set and policy are read from the old maps, the new program and its maps are made
//! beside them in a staging directory with that set written in, and then the new program
//! takes the old one's place in one step (a link update, or a netlink replace) and the
//! directories swap. Until that step the old attachment runs untouched, and a failure
//! leaves it so. Rule counters start again at 0: the old counter table may not be of a
//! shape this netxdp can read.

use std::fs;

use anyhow::{Context as _, Result};
use aya::programs::{
    ProgramInfo,
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};
use net_common::info::AttachMode;

use super::{Hold, Made, Outcome, Request, hold};
use crate::{
    filter::{FilterMaps, RuleSet},
    iflink::{self, AttachedXdp},
    layout::Stale,
    pins::PinDir,
    program,
};

pub(super) fn run(
    pins: &PinDir,
    ifindex: u32,
    request: &Request,
    stale: &Stale,
) -> Result<Outcome> {
    let iface = pins.iface();
    let carried = FilterMaps::read_pinned_rule_set(pins).with_context(|| {
        format!(
            "reading the rules of {iface} from its old maps, to carry them over (by hand: with \
             the netxdp that made them, `netxdp rule list {iface} --toml > FILE`, then `netxdp \
             detach {iface}` and `netxdp attach {iface} --rules FILE`)"
        )
    })?;
    let previous = running(pins, ifindex)?;
    if let Some(running) = previous
        && !request.mode.accepts(running.mode)
    {
        anyhow::bail!(
            "netxdp is attached to {iface} in {} mode, and --upgrade keeps it: leave out --mode",
            running.mode.as_str()
        );
    }
    // Checked before anything is made, as a plain attach does.
    let other = match previous {
        None => super::foreign_program(iface, ifindex, request)?,
        Some(_) => None,
    };

    let staging = pins.staging();
    remove_dir(staging.dir())?;
    fs::create_dir_all(staging.dir())
        .with_context(|| format!("creating {}", staging.dir().display()))?;
    let made = match previous {
        None => super::attach_and_pin(&staging, ifindex, request, other, Some(carried)),
        Some(running) => take_over(&staging, pins, ifindex, request, running, carried),
    };
    let Made { mode, program_id } = match made {
        Ok(made) => made,
        Err(error) => {
            let _ = remove_dir(staging.dir());
            return Err(error);
        }
    };
    let rules = FilterMaps::read_pins(&staging)?.load()?.rules().len();
    swap(pins, &staging)?;
    Ok(Outcome::Upgraded {
        mode,
        program_id,
        from: stale.recorded,
        rules,
    })
}

/// netxdp's program on the interface, as the old pins hold it.
#[derive(Clone, Copy)]
struct Running {
    hold: Hold,
    program_id: u32,
    mode: AttachMode,
}

/// netxdp's program on the interface, if the old pins still hold it.
fn running(pins: &PinDir, ifindex: u32) -> Result<Option<Running>> {
    let Some(hold) = Hold::of(pins) else {
        return Ok(None);
    };
    let Ok(pinned) = ProgramInfo::from_pin(pins.prog()) else {
        return Ok(None);
    };
    let attached = iflink::attached_xdp(ifindex)
        .with_context(|| format!("asking the kernel which XDP program {} has", pins.iface()))?;
    Ok(attached
        .filter(|attached| attached.program_id == pinned.id())
        .and_then(|attached| attached.attach_mode())
        .map(|mode| Running {
            hold,
            program_id: pinned.id(),
            mode,
        }))
}

/// Loads the new program into `staging` and puts it in the old one's place, held the same
/// way. Everything is pinned in `staging` before the step, so that after it nothing is left
/// to fail but the swap of directories.
fn take_over(
    staging: &PinDir,
    pins: &PinDir,
    ifindex: u32,
    request: &Request,
    running: Running,
    carried: RuleSet,
) -> Result<Made> {
    let mode = running.mode;
    let mut ebpf = super::load_for(staging, ifindex, request, Some(carried))?;
    super::write_info(&mut ebpf, ifindex, Some(mode), request.flows)?;
    let program = program::xdp_program(&mut ebpf)?;
    let program_id = program.info()?.id();
    match running.hold {
        Hold::Link => {
            let open = || -> Result<FdLink> {
                Ok(PinnedLink::from_pin(pins.link())
                    .with_context(|| format!("opening {}", pins.link().display()))?
                    .into())
            };
            super::pin_program(staging, &mut ebpf, Some(open()?))?;
            let link = XdpLink::try_from(open()?).context("the pinned link is not an XDP link")?;
            program::xdp_program(&mut ebpf)?
                .attach_to_link(link)
                .context("putting the new program in the old one's place (bpf_link update)")?;
        }
        Hold::Netlink => {
            super::pin_program(staging, &mut ebpf, None)?;
            let program = program::xdp_program(&mut ebpf)?;
            hold::replace(
                pins,
                ifindex,
                AttachedXdp::netxdp(running.program_id, mode),
                program,
            )?;
        }
    }
    Ok(Made { mode, program_id })
}

/// The staging directory takes the old one's place; the old one, its work done, goes.
fn swap(pins: &PinDir, staging: &PinDir) -> Result<()> {
    let retired = PinDir::root().join(format!("{}:old", pins.iface()));
    remove_dir(&retired)?;
    fs::rename(pins.dir(), &retired)
        .with_context(|| format!("moving {} aside", pins.dir().display()))?;
    if let Err(error) = fs::rename(staging.dir(), pins.dir()) {
        let _ = fs::rename(&retired, pins.dir());
        return Err(anyhow::Error::new(error)
            .context(format!("moving {} into place", staging.dir().display())));
    }
    remove_dir(&retired)
}

fn remove_dir(dir: &std::path::Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(error).context(format!("removing {}", dir.display())))
        }
        _ => Ok(()),
    }
}
