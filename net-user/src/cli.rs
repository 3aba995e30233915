//! The command line, as clap sees it. `--help` of each command is its manual page.

use std::{num::NonZeroU64, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::attach::ModeRequest;

#[derive(Debug, Parser)]
#[command(
    name = "netxdp",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("NETXDP_GIT_COMMIT"), ")"),
    about = "Count and filter packets at the driver with XDP, and watch what it sees",
    long_about = "netxdp attaches an XDP program to a network interface. The program parses \
        every received frame (Ethernet, VLAN, ARP, IPv4, IPv6 and its extension headers, TCP, \
        UDP, ICMP, ICMPv6) and counts it by verdict, network layer and transport, in per-CPU \
        maps that netxdp reads back. It sees frames before the kernel's stack does, so its \
        counts include what tcpdump and ss never see.\n\n\
        Attachments are pinned under /sys/fs/bpf/netxdp/IFACE/ and outlive the command.",
    after_help = "Examples:\n  \
        sudo netxdp demo                      # a first look, on a private veth pair\n  \
        sudo netxdp attach eth0               # attach for good (native, else skb mode)\n  \
        sudo netxdp stats eth0 --interval 1   # stream rates and totals\n  \
        sudo netxdp stats --json --count 1    # one JSON snapshot of every interface\n  \
        sudo netxdp detach eth0\n\n\
        Exit status: 0 on success, 1 on error, 2 on bad usage."
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG, when set, takes precedence.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to an interface and leave the program running after netxdp exits.
    #[command(after_help = "Examples:\n  \
        sudo netxdp attach eth0\n  \
        sudo netxdp attach veth0 --mode skb\n  \
        sudo netxdp attach eth0 --force       # replace xdp-filter, say\n\n\
        The program, its link and its maps are pinned under /sys/fs/bpf/netxdp/IFACE/; \
        `bpftool prog run pinned /sys/fs/bpf/netxdp/IFACE/prog` runs it on a test frame. \
        Attaching again in a compatible mode changes nothing and succeeds.")]
    Attach {
        /// The interface, as `ip link` names it.
        iface: String,
        /// XDP mode: auto tries native (driver) mode and falls back to skb (generic) mode.
        #[arg(long, value_enum, default_value_t = ModeRequest::Auto)]
        mode: ModeRequest,
        /// Replace another tool's XDP program on the interface (as `ip link set dev IFACE
        /// xdp off` would remove it).
        #[arg(long)]
        force: bool,
    },

    /// Detach from an interface and remove its pins and counters.
    #[command(after_help = "Example:\n  sudo netxdp detach eth0")]
    Detach {
        /// The interface, as `ip link` names it.
        iface: String,
    },

    /// Show every interface netxdp is attached to: mode, program id, since when, totals.
    #[command(after_help = "Examples:\n  \
        sudo netxdp status\n  \
        sudo netxdp status --json | jq '.interfaces[].iface'")]
    Status {
        /// One JSON document (schema netxdp.status/v1, see the README).
        #[arg(long)]
        json: bool,
    },

    /// Stream the counters of attached interfaces as totals and rates.
    #[command(after_help = "Examples:\n  \
        sudo netxdp stats eth0\n  \
        sudo netxdp stats --json --count 1\n  \
        sudo netxdp stats eth0 --interval 5 --json | jq .total.pps\n\n\
        The first sample shows totals since attach and no rates; each later one adds the \
        rates over the interval before it.")]
    Stats {
        /// Interfaces to show (default: every attached interface).
        ifaces: Vec<String>,
        #[command(flatten)]
        sampling: Sampling,
        /// One JSON object per interface per sample, one per line (schema netxdp.stats/v1).
        #[arg(long)]
        json: bool,
    },

    /// Attach for as long as this command runs, show live stats, detach on Ctrl-C or SIGTERM.
    #[command(after_help = "Example:\n  sudo netxdp watch eth0 --interval 2")]
    Watch {
        /// The interface, as `ip link` names it.
        iface: String,
        /// XDP mode: auto tries native (driver) mode and falls back to skb (generic) mode.
        #[arg(long, value_enum, default_value_t = ModeRequest::Auto)]
        mode: ModeRequest,
        #[command(flatten)]
        sampling: Sampling,
        /// JSON lines instead of tables, as `stats --json`.
        #[arg(long)]
        json: bool,
    },

    /// A first look that touches no real interface: a private namespace and veth pair,
    /// a bounded mix of ICMP, UDP, TCP and IPv6 traffic, live stats, then clean up.
    #[command(after_help = "Example:\n  sudo netxdp demo --seconds 5\n\n\
        Creates namespace netxdp-demo-PID and veth pair nxdemo<PID>h/p on 198.18.200.0/30 \
        and fd00:c8::/64, attaches to the host end, and removes everything at the end or on \
        Ctrl-C.")]
    Demo {
        /// How long to send traffic.
        #[arg(long, default_value_t = NonZeroU64::new(5).expect("non-zero literal"))]
        seconds: NonZeroU64,
        /// XDP mode for the demo's veth end.
        #[arg(long, value_enum, default_value_t = ModeRequest::Auto)]
        mode: ModeRequest,
    },
}

/// How often to sample, and how many times.
#[derive(Debug, Args, Clone, Copy)]
pub struct Sampling {
    /// Seconds between samples (fractions allowed, at least 0.05).
    #[arg(short, long, default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this many samples (default: until Ctrl-C).
    #[arg(short, long)]
    pub count: Option<NonZeroU64>,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.05..=86_400.0).contains(&seconds) {
        return Err(format!("{seconds} s is outside 0.05 s to 86400 s"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("netxdp").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn attach_defaults_to_auto_mode() {
        let cli = parse(&["attach", "eth0"]).unwrap();
        assert!(
            matches!(cli.command, Command::Attach { ref iface, mode: ModeRequest::Auto, force: false } if iface == "eth0")
        );
        let cli = parse(&["attach", "eth0", "--mode", "skb"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Attach {
                mode: ModeRequest::Skb,
                ..
            }
        ));
    }

    #[test]
    fn unknown_mode_is_a_usage_error() {
        let error = parse(&["attach", "eth0", "--mode", "turbo"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("turbo"));
    }

    #[test]
    fn stats_takes_many_interfaces_and_fractional_intervals() {
        let cli = parse(&["stats", "a", "b", "-i", "0.5", "-c", "3", "--json"]).unwrap();
        let Command::Stats {
            ifaces,
            sampling,
            json,
        } = cli.command
        else {
            panic!()
        };
        assert_eq!(ifaces, ["a", "b"]);
        assert_eq!(sampling.interval, Duration::from_millis(500));
        assert_eq!(sampling.count.map(NonZeroU64::get), Some(3));
        assert!(json);
    }

    #[test]
    fn bad_intervals_and_counts_are_refused() {
        for args in [
            &["stats", "-i", "0"][..],
            &["stats", "-i", "soon"],
            &["stats", "-i", "-1"],
            &["stats", "-c", "0"],
            &["demo", "--seconds", "0"],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn interface_is_required() {
        assert!(parse(&["attach"]).is_err());
        assert!(parse(&["detach"]).is_err());
    }
}
