//! The command line, as clap sees it. `--help` of each command is its manual page.
//!
//! - [`args`]: the argument groups and values commands share, and how their text is read.

mod args;

pub use args::{
    CaptureAction, FlowArgs, FlowSort, FragmentsArg, MalformedArg, PolicyArg, ReasonArg,
    RuleActionArg, RuleArgs, Sampling,
};
use args::{parse_ban_duration, parse_duration, rule_metrics};

use std::{
    net::SocketAddr,
    num::{NonZeroU32, NonZeroU64},
    path::PathBuf,
    time::Duration,
};

use clap::{Parser, Subcommand};

use crate::{attach::ModeRequest, iface::IfaceName, serve::RuleMetrics};

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
        sudo netxdp rule add eth0 --action drop --src 203.0.113.0/24\n  \
        sudo netxdp apply eth0 rules.toml --dry-run\n  \
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
        sudo netxdp attach eth0 --rules /etc/netxdp/eth0.toml\n  \
        sudo netxdp attach veth0 --mode skb\n  \
        sudo netxdp attach eth0 --force       # take xdp-filter's place, say\n  \
        sudo netxdp attach eth0 --upgrade     # after a netxdp upgrade that changed its maps\n\n\
        The program, its link and its maps are pinned under /sys/fs/bpf/netxdp/IFACE/; \
        `bpftool prog run pinned /sys/fs/bpf/netxdp/IFACE/prog` runs it on a test frame. \
        Attaching again in a compatible mode changes nothing and succeeds (with --rules, it \
        applies the file, as `netxdp apply` does).\n\n\
        Fail-closed: the program is loaded and verified, and the rules file written into its \
        maps, before it reaches the interface, so its first packet meets the rules; a bad \
        file attaches nothing. --force takes the other program's place in one step (in that \
        program's mode): if anything fails, it stays.\n\n\
        Maps kept from a netxdp whose maps had another layout are not reused: attach names \
        what differs, and --upgrade makes them again, with the same rules and policy, and \
        puts the new program in the running one's place in one step. Rule counters restart \
        at 0.")]
    Attach {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        /// XDP mode: auto tries native (driver) mode and falls back to skb (generic) mode.
        #[arg(long, value_enum, default_value_t = ModeRequest::Auto)]
        mode: ModeRequest,
        /// Take the place of another tool's XDP program on the interface, in one step.
        #[arg(long)]
        force: bool,
        /// A rules file (as `netxdp apply` takes) put in force before the first packet.
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Make again maps pinned by a netxdp of another layout, keeping their rules.
        #[arg(long)]
        upgrade: bool,
        #[command(flatten)]
        flows: FlowArgs,
    },

    /// Detach from an interface and remove its pins, counters and rules.
    #[command(after_help = "Examples:\n  \
        sudo netxdp detach eth0\n  \
        sudo netxdp detach eth0 --keep-rules   # then attach again, in another mode, say\n\n\
        With --keep-rules the rule set and its counters stay pinned; `netxdp attach` puts \
        them back in force, and `netxdp rule` can edit them meanwhile.")]
    Detach {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        /// Keep the rule set (and its counters) pinned for the next attach.
        #[arg(long)]
        keep_rules: bool,
    },

    /// One snapshot of the flow table (each flow netxdp passed: packets, bytes, rate, last
    /// verdict), or of the source table (packets dropped and passed by source prefix).
    #[command(after_help = "Examples:\n  \
        sudo netxdp flows eth0\n  \
        sudo netxdp flows eth0 --sort packets --limit 20\n  \
        sudo netxdp flows eth0 --sources --limit 10\n  \
        sudo netxdp flows eth0 --sources --json | jq '.sources[0]'\n\n\
        A flow is one direction of a conversation as the interface receives it: LOCAL is the \
        destination, PEER the source, as ss shows them. Only packets netxdp does not drop \
        count in a flow, so that a flood of dropped packets from spoofed sources cannot fill \
        the table; the table holds the most recently seen flows (`netxdp attach \
        --flow-table-size`).\n\n\
        Sources count every packet by source prefix (IPv4 /24, IPv6 /64), in a fixed number of \
        slots per CPU where the heaviest prefixes keep theirs: under a flood of spoofed \
        sources they show who sends most. UNCOUNTED<= bounds what a prefix sent before it took \
        its slot.")]
    Flows {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        /// Order of the rows (sources: by packets or bytes).
        #[arg(long, value_enum, default_value_t = FlowSort::Bytes)]
        sort: FlowSort,
        /// Show at most this many rows.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Source prefixes rather than flows.
        #[arg(long)]
        sources: bool,
        /// One JSON document (schema netxdp.flows/v1, or netxdp.sources/v1 with --sources;
        /// see the README).
        #[arg(long)]
        json: bool,
    },

    /// Copy dropped (or passed, or all) packets to a pcapng or pcap file, for tcpdump and
    /// Wireshark; a tcpdump expression selects among them.
    #[command(after_help = "Examples:\n  \
        sudo netxdp capture eth0 -w drops.pcapng                  # every dropped packet\n  \
        sudo netxdp capture eth0 --action drop -w - | tcpdump -nr -\n  \
        sudo netxdp capture eth0 --action all -c 50 -w dns.pcapng udp port 53\n  \
        sudo netxdp capture eth0 -w syns.pcapng 'tcp[tcpflags] & tcp-syn != 0 and not src net 10.0.0.0/8'\n  \
        netxdp capture -d 'vlan and udp dst port 7777'             # the program, as tcpdump -d\n  \
        sudo netxdp capture eth0 --rule 7 --snaplen 128 -c 100 -w rule7.pcapng\n  \
        sudo netxdp capture eth0 --action all --sample 100 --duration 60 --pcap -w sample.pcap\n  \
        sudo netxdp capture eth0 eth1 -w both.pcapng                # one file, two interfaces\n\n\
        Packets dropped by XDP never reach tcpdump, which sees only what passed; netxdp \
        copies them out as its program decides them. Selection happens in the kernel: only \
        packets of the chosen action and rule are copied, at most --snaplen bytes each, one \
        in --sample, through a 4 MiB ring buffer. While no capture runs this costs the data \
        path one map read per packet. When the reader falls behind and the ring is full, the \
        kernel drops the copy (never the packet) and counts it; the summary on stderr \
        reports it as tcpdump does, and `netxdp serve` exports it.\n\n\
        pcapng (the default) names the interface, stamps packets in nanoseconds and says in \
        each packet's comment what netxdp did (`netxdp: drop by rule 7`, `netxdp: pass by \
        the policy`); its last block holds the capture's counters. --pcap writes classic \
        pcap with nanosecond timestamps.\n\n\
        EXPRESSION is a pcap-filter(7) expression, as tcpdump takes it: the words after the \
        interfaces (the leading words that name an interface of this host are interfaces), \
        joined. libpcap compiles it for Ethernet; netxdp translates the program to eBPF and \
        runs it in the kernel on the packets --action, --rule and --reason select, before \
        --sample. It sees the frame as received, before netxdp's verdict is applied, VLAN \
        tags included unless the NIC strips them (rx-vlan-offload; `ethtool -K IFACE rxvlan \
        off`). -d prints the compiled program as `tcpdump -d` does, -dd the eBPF it becomes; \
        neither needs an interface nor root. Ctrl-C, SIGTERM, --count and --duration end the \
        capture with a complete file; so does a reader that closes the pipe. One capture \
        runs per interface at a time.\n\n\
        Exit status: 0 when the capture ended as asked (or its reader went away), 1 on \
        error, 2 on bad usage.")]
    Capture {
        /// The interfaces, as `ip link` names them, then the expression. netxdp must be
        /// attached to each interface; several go to one file, an interface block each
        /// (pcapng).
        #[arg(required = true, value_name = "IFACE... [EXPRESSION]")]
        words: Vec<String>,
        /// Print the expression's classic BPF program as `tcpdump -d` does, and exit; twice
        /// (-dd), the eBPF program netxdp runs.
        #[arg(short = 'd', action = clap::ArgAction::Count)]
        dump: u8,
        /// The packets to copy, by the action netxdp gave them [default: drop; all with
        /// --rule or --reason].
        #[arg(long, value_enum)]
        action: Option<CaptureAction>,
        /// Only packets this rule decided (ids as `netxdp rule list` shows them).
        #[arg(long, value_name = "ID")]
        rule: Option<NonZeroU32>,
        /// Only packets given their verdict for these reasons (comma-separated): a rule, the
        /// policy, the neighbour exemption, `--fragments drop`, or a defect (malformed,
        /// tiny-fragment, overlap-fragment, ipv6-chain), as `netxdp stats` counts them.
        #[arg(long, value_enum, value_delimiter = ',', value_name = "REASON")]
        reason: Vec<ReasonArg>,
        /// Bytes to keep of each packet; the kernel copies at most 16,384.
        #[arg(short, long, value_name = "BYTES", default_value_t = NonZeroU32::new(262_144).expect("non-zero"))]
        snaplen: NonZeroU32,
        /// Copy one selected packet in N.
        #[arg(long, value_name = "N", default_value_t = NonZeroU32::MIN)]
        sample: NonZeroU32,
        /// Stop after writing this many packets.
        #[arg(short, long, value_name = "N")]
        count: Option<NonZeroU64>,
        /// Stop after this many seconds (fractions allowed).
        #[arg(long, value_name = "SECS", value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Write to FILE, or to standard output with `-` (not a terminal).
        #[arg(
            short = 'w',
            long = "write",
            value_name = "FILE",
            required_unless_present = "dump"
        )]
        write: Option<PathBuf>,
        /// Classic pcap instead of pcapng.
        #[arg(long)]
        pcap: bool,
    },

    /// Add, delete and list filter rules.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        sudo netxdp rule add eth0 --action drop --src 203.0.113.0/24\n  \
        sudo netxdp rule list eth0\n  \
        sudo netxdp rule del eth0 7\n\n\
        Each command changes the rule set in force at once. To keep rules across reboots, \
        save them with `netxdp rule list IFACE --toml > /etc/netxdp/IFACE.toml` and enable \
        `netxdp@IFACE.service`."
    )]
    Rule(RuleCommand),

    /// Ban a source address or prefix for a while, or lift a ban.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        sudo netxdp ban add eth0 203.0.113.7 --for 10m\n  \
        sudo netxdp ban add eth0 2001:db8:66::/48 --for 1h\n  \
        sudo netxdp ban del eth0 203.0.113.7\n\n\
        A banned source's IP packets are dropped before the rules, and counted as dropped \
        for reason `ban` (`stats`, `serve`, `capture --reason ban`); ARP and neighbour \
        discovery still pass. The longest banned prefix that holds a source decides. Bans \
        end by themselves; `netxdp bans IFACE` lists those in force. They live in pinned maps: \
        they outlive the CLI, and end with a detach."
    )]
    Ban(BanCommand),

    /// The bans in force on an interface, and when each ends.
    #[command(after_help = "Examples:\n  \
        sudo netxdp bans eth0\n  \
        sudo netxdp bans eth0 --json | jq '.bans[].prefix'")]
    Bans {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        /// One JSON document (schema netxdp.bans/v1).
        #[arg(long)]
        json: bool,
    },

    /// Answer SYNs to some ports from XDP with SYN cookies (a SYN-flood guard), or stop.
    #[command(after_help = "Examples:\n  \
        sudo netxdp synguard eth0 --ports 22,80,443\n  \
        sudo netxdp synguard eth0          # show the ports and what the guard did\n  \
        sudo netxdp synguard eth0 off\n\n\
        A SYN to a guarded port that the rules pass, for a socket listening there, is answered \
        from XDP with a SYN-ACK whose sequence number is the kernel's own SYN cookie \
        (XDP_TX): the stack never queues a half-open connection, so a flood of spoofed SYNs \
        costs it nothing. The returning ACK is checked against the cookie: valid, it goes to \
        the stack, which makes the connection from it; not valid, it is dropped (counted for \
        reason syn_cookie). Established connections are left alone. The SYN-ACK carries the \
        MSS option alone (no window scaling, SACK or timestamps), as the stack's own cookies \
        do without timestamps. Needs net.ipv4.tcp_syncookies = 2. Answers untagged IPv4 \
        (without IP options) and IPv6 (TCP right after the header); other SYNs go to the \
        stack. `status` shows the ports and counts.")]
    Synguard {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        /// Ports and ranges to guard, replacing those guarded: 22,80,443 or 8000-8010.
        #[arg(
            long,
            value_name = "PORTS",
            value_parser = crate::synguard::parse_guard_ports,
            conflicts_with = "off"
        )]
        ports: Option<crate::synguard::GuardPorts>,
        /// `off` stops the guard.
        #[arg(value_parser = ["off"])]
        off: Option<String>,
    },

    /// Show or set what packets that no rule matches get (and fragments without L4 headers).
    #[command(after_help = "Examples:\n  \
        sudo netxdp policy eth0                       # show\n  \
        sudo netxdp policy eth0 drop                  # allow-list: only what rules pass\n  \
        sudo netxdp policy eth0 pass --fragments drop\n\n\
        Under either policy, well-formed ARP and IPv6 neighbour discovery (ICMPv6 133-137 \
        with hop limit 255, unfragmented) that no rule matches pass, so an allow-list cannot \
        cut the host off its own network; rules apply to them as to any packet.\n\n\
        Defective packets (malformed headers, first fragments without the whole transport \
        header or IPv6 header chain, IPv4 fragments at offset 1, IPv6 chains with two \
        fragment headers) are dropped before any rule and counted by reason (`netxdp stats`). \
        `--malformed policy` classifies them like any other packet instead: unsafe, since a \
        tiny fragment carries no ports for a rule to match, and Linux reassembles the \
        datagram behind the rule's back.")]
    Policy {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        /// pass: a deny-list (rules drop what they match); drop: an allow-list.
        #[arg(value_enum)]
        policy: Option<PolicyArg>,
        /// IP packets without their L4 header (later fragments, truncated or malformed) that
        /// no rule matches: decided by the policy, or dropped.
        #[arg(long, value_enum)]
        fragments: Option<FragmentsArg>,
        /// Defective packets: dropped before any rule (default), or classified like any
        /// other (unsafe: see below).
        #[arg(long, value_enum)]
        malformed: Option<MalformedArg>,
    },

    /// Replace an interface's rules and policy with those of a rules file, atomically.
    #[command(after_help = "Examples:\n  \
        sudo netxdp apply eth0 /etc/netxdp/eth0.toml --dry-run   # show the changes only\n  \
        sudo netxdp apply eth0 /etc/netxdp/eth0.toml\n  \
        sudo netxdp apply eth0 /etc/netxdp/eth0.toml --watch   # again at every change\n\n\
        The file's format is in the README (`netxdp rule list IFACE --toml` writes one). The \
        new set is written beside the old one and switched in with one map update: the kernel \
        classifies every packet against the old set or the new, never a mix. Rules that stay \
        keep their ids and counters. Each apply's outcome is kept in \
        /run/netxdp/IFACE.apply.json: `status` shows it, `serve` exports it.\n\n\
        With --watch, netxdp stays and applies the file again whenever it changes (inotify on \
        its directory: a rename over it, or a Kubernetes ConfigMap's `..data` swap, counts), \
        logging each outcome on stderr; a bad file leaves the rules in force as they were. \
        Ctrl-C or SIGTERM ends it.")]
    Apply {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        /// The rules file (TOML).
        file: PathBuf,
        /// Print what would change, rule by rule, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print every rule added, removed or changed, as --dry-run does (by default, one
        /// line: how many of each).
        #[arg(long)]
        diff: bool,
        /// Stay, and apply the file again whenever it changes.
        #[arg(long, conflicts_with_all = ["dry_run", "diff"])]
        watch: bool,
    },

    /// Man pages and shell completions, for packaging (see `cargo xtask install`).
    #[command(subcommand, hide = true)]
    Generate(GenerateCommand),

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
        ifaces: Vec<IfaceName>,
        #[command(flatten)]
        sampling: Sampling,
        /// One JSON object per interface per sample, one per line (schema netxdp.stats/v2).
        #[arg(long)]
        json: bool,
    },

    /// A full-screen live view: rates by verdict and protocol, top sources, flows and rules.
    #[command(after_help = "Examples:\n  \
        sudo netxdp top                      # every attached interface\n  \
        sudo netxdp top eth0 -i 2            # one interface, a sample every 2 s\n  \
        sudo netxdp top eth0 -c 3 | less     # not a terminal: plain tables, 3 samples\n\n\
        Keys:\n  \
        Tab, Shift-Tab, 1 2 3   switch panes: 1 sources, 2 flows, 3 rules\n  \
        s                       cycle the sort: packets, bytes, rate (over the last interval)\n  \
        /                       type a filter (rows containing the text); Enter applies it\n  \
        Esc                     clear the filter\n  \
        p, space                pause and resume sampling\n  \
        Up Down PgUp PgDn Home  scroll\n  \
        q, Ctrl-C               quit (the terminal is restored; SIGTERM does the same)\n\n\
        The header shows packets and bits per second by verdict and by protocol, with a \
        sparkline of the last 120 samples. Sources are the flows summed by peer (source) \
        address; flows are as `netxdp flows` shows them, their rate over the last interval; \
        rules are as `netxdp rule list` shows them, with hits per second. The maps are read \
        on a thread of their own, so the keys stay responsive with a full 65,536-flow table. \
        The flow table is read every interval while that costs under 1% of a core, less \
        often when it would cost more (a full table takes about 25 ms: every 3 s at -i 1); \
        the status line says so. When stdout is not a terminal, top prints the counters (as \
        `stats`) each interval and the top 20 flows by bytes (as `flows`) each time it reads \
        the flow table.")]
    Top {
        /// Interfaces to show (default: every attached interface).
        ifaces: Vec<IfaceName>,
        #[command(flatten)]
        sampling: Sampling,
    },

    /// Attach for as long as this command runs, show live stats, detach on Ctrl-C or SIGTERM.
    #[command(after_help = "Example:\n  sudo netxdp watch eth0 --interval 2")]
    Watch {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        /// XDP mode: auto tries native (driver) mode and falls back to skb (generic) mode.
        #[arg(long, value_enum, default_value_t = ModeRequest::Auto)]
        mode: ModeRequest,
        #[command(flatten)]
        sampling: Sampling,
        /// JSON lines instead of tables, as `stats --json`.
        #[arg(long)]
        json: bool,
    },

    /// Serve the counters of every attached interface to Prometheus (OpenMetrics on /metrics).
    #[command(after_help = "Examples:\n  \
        sudo netxdp serve                              # http://127.0.0.1:9469/metrics\n  \
        sudo netxdp serve --listen 0.0.0.0:9469        # for scrapes from other hosts\n  \
        curl -s localhost:9469/metrics | grep '^netxdp_packets_total'\n\n\
        Scrapes share snapshots of the pinned maps: one read at a time, whose text every \
        scrape within a second gets, so that counters are at most a second old and many \
        scrapers cost what one does; at most 64 scrapes wait at once (more get 503, Retry-After: \
        1). Interfaces attached or detached meanwhile appear or go, and a scrape never waits for \
        `netxdp apply`. Counters (packets and bytes by action, l3, l4 and rule; malformed, \
        no_l4, matched, searched) carry an `iface` label; netxdp_rules, netxdp_policy and \
        netxdp_ruleset_info (whose hash is the same on hosts with the same rules) are gauges. \
        netxdp_program_run_seconds_total and netxdp_program_runs_total advance only while \
        `sysctl kernel.bpf_stats_enabled=1`. The README lists every metric and shows a scrape \
        config. Runs until Ctrl-C or SIGTERM.")]
    Serve {
        /// The address and port to listen on. The default is loopback only: to be scraped from
        /// another host, listen on 0.0.0.0:9469 (or [::]:9469), behind a firewall.
        #[arg(long, value_name = "ADDR:PORT", default_value = crate::serve::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Which rules get netxdp_rule_* series: all, none, or top=N (the N with the most
        /// hits). By default every rule up to 1,000, beyond that the top 100;
        /// netxdp_rule_metrics_truncated says when some are left out.
        #[arg(long, value_name = "all|none|top=N", value_parser = rule_metrics)]
        rule_metrics: Option<RuleMetrics>,
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

/// `netxdp generate ...`: what packaging installs beside the binary.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Write one man page per command (netxdp.8, netxdp-attach.8, ...) into DIR.
    Man { dir: PathBuf },
    /// Print the completion script for SHELL.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `netxdp rule ...`
// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Add a rule; prints its id. Fields left out match anything.
    #[command(after_help = "Examples:\n  \
        sudo netxdp rule add eth0 --action drop --src 203.0.113.0/24\n  \
        sudo netxdp rule add eth0 --action pass --proto tcp --dport 22 --priority 10\n  \
        sudo netxdp rule add eth0 --action drop --proto udp --dport 1024-65535 --dst fd00::/8\n  \
        id=$(sudo netxdp rule add eth0 --action drop --proto icmp --icmp-type 8)\n\n\
        Rules are tried by priority (lower first), then id; the first that matches decides. \
        A rule matches when all its fields do.")]
    Add {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// Delete rules by id.
    #[command(after_help = "Example:\n  sudo netxdp rule del eth0 7 9")]
    Del {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        /// Rule ids, as `netxdp rule list` shows them.
        #[arg(required = true)]
        ids: Vec<u32>,
    },
    /// List the rules in the order they are tried, with their hit counters.
    #[command(after_help = "Examples:\n  \
        sudo netxdp rule list eth0\n  \
        sudo netxdp rule list eth0 --json | jq '.rules[] | select(.packets > 0)'\n  \
        sudo netxdp rule list eth0 --toml > eth0.toml   # a rules file for `netxdp apply`")]
    List {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        /// One JSON document (schema netxdp.rules/v1, see the README).
        #[arg(long, conflicts_with = "toml")]
        json: bool,
        /// The rules and policy as a rules file, for `netxdp apply`.
        #[arg(long)]
        toml: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BanCommand {
    /// Ban an address or prefix: its IP packets are dropped before the rules until the ban
    /// ends.
    Add {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        /// An IPv4 or IPv6 address (a host) or prefix (CIDR).
        #[arg(value_name = "ADDR[/LEN]")]
        prefix: String,
        /// How long: 30s, 10m, 2h or 1d.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_ban_duration)]
        duration: Duration,
    },
    /// Lift the ban on exactly this address or prefix.
    Del {
        /// The interface, as `ip link` names it.
        iface: IfaceName,
        #[arg(value_name = "ADDR[/LEN]")]
        prefix: String,
    },
}

#[cfg(test)]
mod tests;
