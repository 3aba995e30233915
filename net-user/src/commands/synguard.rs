//! `netxdp synguard`.

use anyhow::{Result, bail};

use crate::{
    iface::IfaceName, pins::PinDir, preflight, process::emit, report::SynGuardRecord,
    synguard::SynGuardMaps,
};

/// Whether the stack uses SYN cookies: at 2 (always), the kernel hands the guard a cookie for
/// every SYN, and accepts the ACKs that return them; at 1 it does so only while a listener's
/// queue is full, which a flood answered in XDP never fills.
const SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";

pub fn synguard(iface: &IfaceName, ports: Option<Vec<u16>>, off: bool) -> Result<()> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    let pins = PinDir::new(iface);
    if let Some(ports) = ports {
        // Before anything changes: without it the stack would refuse the guard's cookies.
        let syncookies = std::fs::read_to_string(SYNCOOKIES).unwrap_or_default();
        if syncookies.trim() != "2" {
            bail!(
                "the SYN guard needs net.ipv4.tcp_syncookies = 2 (here {:?}): the kernel gives \
                 out cookies for every SYN only then, and checks the ACKs that return them \
                 (`sysctl -w net.ipv4.tcp_syncookies=2`)",
                syncookies.trim()
            );
        }
        SynGuardMaps::from_pins(&pins)?.set(&ports)?;
    } else if off {
        SynGuardMaps::from_pins(&pins)?.set(&[])?;
    }
    if !pins.is_attached() {
        bail!("netxdp is not attached to {iface} (`netxdp status` lists its attachments)");
    }
    let guard = SynGuardMaps::read_pins(&pins)?;
    let ports = guard.ports()?;
    if ports.is_empty() {
        return emit(&format!("{iface}: SYN guard off"));
    }
    let record = SynGuardRecord::new(&ports, &guard.counters()?);
    emit(&format!("{iface}: SYN guard {}", record.to_text()))
}
