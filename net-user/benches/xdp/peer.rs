//! The peer of the exact shape: xdp-filter, from Debian's xdp-tools, loaded on a veth pair of
//! a namespace this bench creates, and given the same rules through its own CLI.
//!
//! `xdp-filter load` on the host end of the pair, then one `xdp-filter ip ADDR --mode src`
//! per rule (about a millisecond each, so the CLI is used for all 10,000 rules and its time is
//! reported). The program the kernel reports attached to the veth is opened by id and run with
//! BPF_PROG_TEST_RUN like netxdp: with libxdp's dispatcher that id is the dispatcher (which runs
//! the chain); where libxdp falls back to attaching xdp-filter's program alone (as libxdp 1.3
//! does on kernel 6.18), it is that program.
//!
//! Everything is removed on drop, on success or failure: xdp-filter is unloaded from the veth
//! (which destroys its maps once no interface uses them), its per-interface pin directory and
//! the bpffs directories it created are removed, then the namespace and veth pair.
//! xdp-filter's maps are shared by every interface it is loaded on, so the peer refuses to start
//! when /sys/fs/bpf/xdp-filter already exists: the rules would go into someone else's filter.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::programs::{ProgramFd, loaded_programs};
use net_common::{
    rule::{Family, Match},
    rulegen::GenRule,
};
use netxdp::{iflink, netns::VethNet, preflight};

/// Where xdp-filter pins its maps and programs, and where libxdp pins its dispatchers.
const XDP_FILTER_DIR: &str = "/sys/fs/bpf/xdp-filter";
const LIBXDP_DIR: &str = "/sys/fs/bpf/xdp";
/// The /30 and /64 of the veth pair (198.18.N.0/30, fd00:N::/64): one no test uses.
const SUBNET: u8 = 213;
/// The xdp-filter features loaded: the least that expresses the exact shape, so the cheapest
/// xdp-filter program (`xdpfilt_alw_ip`). `NETXDP_BENCH_XDP_FILTER_FEATURES` overrides (for
/// example `all`, xdp-filter's default).
const FEATURES: &str = "ipv4,ipv6";

/// xdp-filter loaded on a veth pair, with the rules added so far.
pub struct XdpFilter {
    /// Dropped first: our descriptor of the attached program.
    fd: ProgramFd,
    pub program_name: String,
    pub program_id: u32,
    pub mode: &'static str,
    pub features: String,
    /// Rules added so far (a prefix of the rule list given to [`XdpFilter::grow_to`]).
    added: usize,
    /// Time spent in `xdp-filter ip`, over all rules added.
    pub cli_time: Duration,
    /// Then: unload xdp-filter, remove its pins.
    _cleanup: Cleanup,
    /// Last: the namespace and veth pair.
    net: VethNet,
}

impl XdpFilter {
    pub fn start() -> Result<Self> {
        ensure!(
            !Path::new(XDP_FILTER_DIR).exists(),
            "{XDP_FILTER_DIR} exists: xdp-filter is loaded somewhere on this host (its maps are \
             shared by every interface it is loaded on, so this bench's rules would land in \
             that filter), or an interrupted run left it; see `xdp-filter status`, and remove \
             the directory if nothing uses it"
        );
        let features = std::env::var("NETXDP_BENCH_XDP_FILTER_FEATURES")
            .unwrap_or_else(|_| FEATURES.to_owned());
        let made = [XDP_FILTER_DIR, LIBXDP_DIR]
            .into_iter()
            .filter(|dir| !Path::new(dir).exists())
            .collect();
        let net = VethNet::create("xf", SUBNET).context("creating the peer's veth pair")?;
        let iface = net.host_if().to_owned();
        let cleanup = Cleanup {
            iface: iface.clone(),
            made,
        };
        xdp_filter(&["load", "--mode", "native", "--features", &features, &iface])?;
        let ifindex = preflight::ifindex(net.host_iface())?;
        let attached = iflink::attached_xdp(ifindex)
            .with_context(|| format!("reading the XDP program of {iface}"))?
            .with_context(|| format!("xdp-filter load left no XDP program on {iface}"))?;
        let info = loaded_programs()
            .filter_map(|info| info.ok())
            .find(|info| info.id() == attached.program_id)
            .with_context(|| {
                format!(
                    "program id {} (attached to {iface}) is not among the loaded programs",
                    attached.program_id
                )
            })?;
        let program_name = info.name_as_str().unwrap_or("?").to_owned();
        ensure!(
            program_name.starts_with("xdpfilt") || program_name.starts_with("xdp_dispatcher"),
            "the program attached to {iface} is {program_name:?}, not xdp-filter's"
        );
        let fd = info
            .fd()
            .with_context(|| format!("opening program id {}", attached.program_id))?;
        Ok(Self {
            fd,
            program_name,
            program_id: attached.program_id,
            mode: attached.mode,
            features,
            added: 0,
            cli_time: Duration::ZERO,
            _cleanup: cleanup,
            net,
        })
    }

    pub fn iface(&self) -> &str {
        self.net.host_if()
    }

    pub fn fd(&self) -> &ProgramFd {
        &self.fd
    }

    pub fn added(&self) -> usize {
        self.added
    }

    /// Adds `rules[self.added()..]`: exact-shape rules (drop from one source address).
    pub fn grow_to(&mut self, rules: &[GenRule]) -> Result<()> {
        for rule in rules.iter().skip(self.added) {
            let address = source_address(&rule.matches)?;
            let started = Instant::now();
            xdp_filter(&["ip", &address, "--mode", "src"])?;
            self.cli_time += started.elapsed();
            self.added += 1;
            crate::check_interrupted()?;
        }
        Ok(())
    }
}

/// The source address of an exact-shape rule, as xdp-filter's CLI takes it.
fn source_address(matches: &Match) -> Result<String> {
    let src = matches.src;
    ensure!(
        *matches == Match { src, ..Match::ANY },
        "xdp-filter matches a single source address only, not {matches:?}"
    );
    match (src.family(), src.len) {
        (Family::Ipv4, 32) => {
            let octets: [u8; 4] = src.addr[..4].try_into()?;
            Ok(Ipv4Addr::from(octets).to_string())
        }
        (Family::Ipv6, 128) => Ok(Ipv6Addr::from(src.addr).to_string()),
        _ => bail!("xdp-filter matches a single source address only, not {src:?}"),
    }
}

fn xdp_filter(args: &[&str]) -> Result<()> {
    let output = Command::new("xdp-filter")
        .args(args)
        .output()
        .context("running xdp-filter (Debian's xdp-tools; `cargo xtask setup` installs it)")?;
    if !output.status.success() {
        bail!(
            "`xdp-filter {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Unloads xdp-filter from the veth and removes what it pinned.
struct Cleanup {
    iface: String,
    /// The bpffs directories that did not exist before: removed whole.
    made: Vec<&'static str>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Not `unload --all`: that would reach interfaces this bench does not own.
        let _ = Command::new("xdp-filter")
            .args(["unload", &self.iface])
            .output();
        let _ = std::fs::remove_dir_all(format!("{XDP_FILTER_DIR}/programs/{}", self.iface));
        for dir in &self.made {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
