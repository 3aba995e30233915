//! `netxdp ban add|del` and `netxdp bans`.

use anyhow::{Context as _, Result};

use crate::{
    bans::{BanTable, BansRecord},
    cli::BanCommand,
    filter::spec::{parse_prefix, prefix_text},
    iface::IfaceName,
    pins::PinDir,
    preflight,
    process::emit,
};

pub fn ban(command: BanCommand) -> Result<()> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    match command {
        BanCommand::Add {
            iface,
            prefix,
            duration,
        } => {
            let (prefix, normalised) =
                parse_prefix(&prefix).with_context(|| format!("banning {prefix}"))?;
            if let Some(normalised) = normalised {
                eprintln!("note: {normalised}");
            }
            let mut bans = BanTable::from_pins(&PinDir::new(&iface))?;
            bans.add(prefix, duration)?;
            emit(&format!(
                "banned {} on {iface} for {}",
                prefix_text(&prefix),
                humantime::format_duration(duration)
            ))
        }
        BanCommand::Del { iface, prefix } => {
            let (prefix, _) =
                parse_prefix(&prefix).with_context(|| format!("lifting the ban on {prefix}"))?;
            let mut bans = BanTable::from_pins(&PinDir::new(&iface))?;
            if bans.remove(prefix)? {
                emit(&format!(
                    "lifted the ban on {} on {iface}",
                    prefix_text(&prefix)
                ))
            } else {
                anyhow::bail!(
                    "{} is not banned on {iface} (`netxdp bans {iface}` lists the bans)",
                    prefix_text(&prefix)
                )
            }
        }
    }
}

pub fn list(iface: &IfaceName, json: bool) -> Result<()> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    let pins = PinDir::new(iface);
    if !pins.is_attached() {
        anyhow::bail!("netxdp is not attached to {iface} (`netxdp status` lists its attachments)");
    }
    let bans = BanTable::read_pins(&pins)?.list()?;
    let record = BansRecord::new(iface.as_str(), &bans);
    if json {
        emit(&serde_json::to_string(&record)?)
    } else {
        emit(record.to_text().trim_end())
    }
}
