//! What each command does, over the library's pieces.

mod bans;
mod capture;
mod filter;
mod flows;
mod reload;
mod synguard;

use std::{
    io,
    net::{IpAddr, SocketAddr},
    num::{NonZeroU32, NonZeroU64},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use aya::Ebpf;
use tokio::io::unix::AsyncFd;
use tracing::warn;

use crate::{
    attach::{self, ModeRequest, Outcome, ScopedAttachment},
    cli::{Command, Sampling},
    counters::{CounterMap, Sample},
    iface::IfaceName,
    netns::VethNet,
    pins::PinDir,
    preflight,
    process::{Shutdown, emit},
    program::{self, Flows, KernelLog},
    report::{Scope, StatsRecord, StatusRecord},
    traffic,
};

pub async fn run(command: Command, verbose: u8) -> Result<()> {
    let kernel_log = if verbose > 0 {
        KernelLog::Debug
    } else {
        KernelLog::Off
    };
    match command {
        Command::Attach {
            iface,
            mode,
            force,
            rules,
            upgrade,
            flows,
        } => attach(
            &iface,
            mode,
            force,
            rules.as_deref(),
            upgrade,
            flows.flows(),
        ),
        Command::Detach { iface, keep_rules } => {
            attach::detach_pinned(&iface, keep_rules)?;
            if keep_rules {
                println!("detached from {iface}; its rules stay pinned for the next attach");
            } else {
                println!("detached from {iface}; pins removed");
            }
            Ok(())
        }
        Command::Flows {
            iface,
            sort,
            limit,
            sources,
            json,
        } => {
            if sources {
                flows::show_sources(&iface, sort, limit, json)
            } else {
                flows::show(&iface, sort, limit, json)
            }
        }
        Command::Capture {
            words,
            dump,
            action,
            rule,
            reason,
            snaplen,
            sample,
            count,
            duration,
            write,
            pcap,
        } => {
            let (ifaces, expression) = capture::split_words(words)?;
            if dump > 0 {
                return capture::dump(expression.as_deref(), snaplen.get(), dump);
            }
            let Some(write) = write else {
                anyhow::bail!("capture needs -w FILE (or -w - for standard output)");
            };
            capture::capture(capture::Request {
                ifaces,
                expression,
                action,
                rule: rule.map(NonZeroU32::get),
                reasons: reason,
                snaplen: snaplen.get(),
                sample: sample.get(),
                count: count.map(NonZeroU64::get),
                duration,
                write,
                format: if pcap {
                    crate::capture::file::Format::Pcap
                } else {
                    crate::capture::file::Format::PcapNg
                },
            })
            .await
        }
        Command::Rule(command) => filter::rule(command),
        Command::Ban(command) => bans::ban(command),
        Command::Bans { iface, json } => bans::list(&iface, json),
        Command::Synguard { iface, ports, off } => {
            synguard::synguard(&iface, ports.map(|ports| ports.0), off.is_some())
        }
        Command::Policy {
            iface,
            policy,
            fragments,
            malformed,
        } => filter::policy(&iface, policy, fragments, malformed),
        Command::Apply {
            iface,
            file,
            watch: true,
            ..
        } => reload::watch(&iface, &file).await,
        Command::Apply {
            iface,
            file,
            dry_run,
            diff,
            watch: false,
        } => filter::apply(&iface, &file, dry_run, diff),
        Command::Generate(command) => crate::generate::run(command),
        Command::Status { json } => {
            let status = StatusRecord::new(&attach::list_pinned()?);
            if json {
                emit(&serde_json::to_string(&status)?)?;
            } else {
                emit(status.to_text().trim_end())?;
            }
            Ok(())
        }
        Command::Stats {
            ifaces,
            sampling,
            json,
        } => stats(ifaces, sampling, json).await,
        Command::Top { ifaces, sampling } => crate::top::run(ifaces, sampling).await,
        Command::Watch {
            iface,
            mode,
            sampling,
            json,
        } => watch(&iface, mode, sampling, json, kernel_log).await,
        Command::Demo { seconds, mode } => {
            demo(Duration::from_secs(seconds.get()), mode, kernel_log).await
        }
        Command::Serve {
            listen,
            rule_metrics,
        } => {
            preflight::require_privileges()?;
            preflight::ensure_bpffs()?;
            let mut shutdown = Shutdown::new()?;
            let rule_metrics = rule_metrics.unwrap_or_default();
            crate::serve::serve(listen, rule_metrics, async move { shutdown.recv().await }).await
        }
    }
}

/// Writes one line to stdout. A closed pipe (`| head`) is a normal way to stop reading, so
/// it ends the command quietly, as it does for tcpdump.
fn attach(
    iface: &IfaceName,
    mode: ModeRequest,
    force: bool,
    rules_path: Option<&Path>,
    upgrade: bool,
    flows: Flows,
) -> Result<()> {
    preflight::require_privileges()?;
    // Read and checked before anything is loaded: a bad file attaches nothing.
    let rules = rules_path
        .map(|path| filter::read_rules_file(iface, path))
        .transpose()?;
    let with_rules = match (rules_path, &rules) {
        (Some(path), Some(file)) => format!(
            "; {} in force ({} rule{}, policy {})",
            path.display(),
            file.rules.len(),
            if file.rules.len() == 1 { "" } else { "s" },
            file.policy.as_str()
        ),
        _ => String::new(),
    };
    let request = attach::Request {
        mode,
        force,
        flows,
        rules,
        upgrade,
    };
    let pinned = PinDir::new(iface);
    match attach::attach_pinned(iface, &request)? {
        Outcome::Attached {
            mode,
            program_id,
            replaced,
        } => {
            let replaced = replaced
                .map(|other| format!(", in the place of {other}"))
                .unwrap_or_default();
            println!(
                "attached to {iface} in {} mode (program id {program_id}){replaced}{with_rules}; \
                 pinned under {}",
                mode.as_str(),
                pinned.dir().display()
            );
        }
        Outcome::AlreadyAttached { mode } if rules_path.is_some() => println!(
            "already attached to {iface} in {} mode{with_rules}",
            mode.as_str()
        ),
        Outcome::AlreadyAttached { mode } => println!(
            "already attached to {iface} in {} mode; nothing changed",
            mode.as_str()
        ),
        Outcome::Upgraded {
            mode,
            program_id,
            from,
            rules,
        } => println!(
            "upgraded {iface} from layout {} to {} in {} mode (program id {program_id}): {rules} \
             rule{} and the policy carried over; counters restart at 0",
            from.map_or_else(|| "unknown".to_owned(), |from| from.to_string()),
            net_common::info::LAYOUT_VERSION,
            mode.as_str(),
            if rules == 1 { "" } else { "s" }
        ),
    }
    Ok(())
}

async fn stats(ifaces: Vec<IfaceName>, sampling: Sampling, json: bool) -> Result<()> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    let pins = if ifaces.is_empty() {
        let all = PinDir::all()?;
        if all.is_empty() {
            bail!("netxdp is not attached to any interface (`netxdp attach IFACE` attaches it)");
        }
        all
    } else {
        ifaces.iter().map(PinDir::new).collect()
    };
    let mut sources = Vec::new();
    for pin in &pins {
        if !pin.is_attached() {
            bail!(
                "netxdp is not attached to {} (`netxdp status` lists its attachments)",
                pin.iface()
            );
        }
        sources.push((pin.iface().to_string(), CounterMap::from_pin(pin)?));
    }
    sample_loop(&sources, sampling, json, || Ok(())).await
}

/// Prints a sample of every source each interval until the count is reached or a signal
/// arrives; `between` runs after each round (demo uses it to stop with its traffic).
async fn sample_loop(
    sources: &[(String, CounterMap)],
    sampling: Sampling,
    json: bool,
    mut between: impl FnMut() -> Result<()>,
) -> Result<()> {
    let mut shutdown = Shutdown::new()?;
    let mut previous: Vec<Option<Sample>> = vec![None; sources.len()];
    let mut previous_total: Option<Sample> = None;
    let ifaces: Vec<String> = sources.iter().map(|(iface, _)| iface.clone()).collect();
    let mut ticker = tokio::time::interval(sampling.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0u64;
    let show = |record: StatsRecord| {
        if json {
            emit(&record.to_json().to_string())
        } else {
            emit(&record.to_text())
        }
    };
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.recv() => return Ok(()),
        }
        let mut samples = Vec::with_capacity(sources.len());
        for ((iface, map), previous) in sources.iter().zip(previous.iter_mut()) {
            let sample = map.sample()?;
            let scope = Scope::Interface(iface.clone());
            show(StatsRecord::new(scope, &sample, previous.as_ref()))?;
            *previous = Some(sample);
            samples.push(sample);
        }
        // Several interfaces: their sum too, as `ip -s link` users add them up by hand.
        if let (true, Some(total)) = (sources.len() > 1, Sample::total(&samples)) {
            let scope = Scope::Total(ifaces.clone());
            show(StatsRecord::new(scope, &total, previous_total.as_ref()))?;
            previous_total = Some(total);
        }
        round += 1;
        if sampling.count.is_some_and(|count| round >= count.get()) {
            return Ok(());
        }
        between()?;
    }
}

/// Forwards the kernel program's aya-log records to tracing, while the returned task runs;
/// nothing when kernel logging is off.
fn forward_kernel_logs(
    ebpf: &mut Ebpf,
    kernel_log: KernelLog,
) -> Option<tokio::task::JoinHandle<()>> {
    if kernel_log == KernelLog::Off {
        return None;
    }
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(error) => {
            warn!("kernel logs are unavailable: {error}");
            return None;
        }
    };
    // SAFETY: the logger owns its ring buffer's fd for its whole life and always reports
    // that same fd; the AsyncFd owns the logger.
    let mut logger = match unsafe { AsyncFd::register(logger) } {
        Ok(fd) => fd,
        Err(error) => {
            warn!("kernel logs are unavailable: {}", error.into_parts().1);
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while let Ok(mut ready) = logger.readable_mut().await {
            ready.get_inner_mut().flush();
            ready.clear_ready();
        }
    }))
}

async fn watch(
    iface: &IfaceName,
    mode: ModeRequest,
    sampling: Sampling,
    json: bool,
    kernel_log: KernelLog,
) -> Result<()> {
    let options = program::Options {
        log: kernel_log,
        ..Default::default()
    };
    let mut attachment = ScopedAttachment::new(iface, mode, options)?;
    eprintln!(
        "watching {iface} in {} mode; Ctrl-C detaches",
        attachment.mode.as_str()
    );
    let logs = forward_kernel_logs(&mut attachment.ebpf, kernel_log);
    let sources = [(
        iface.to_string(),
        CounterMap::take_from(&mut attachment.ebpf)?,
    )];
    let result = sample_loop(&sources, sampling, json, || Ok(())).await;
    if let Some(task) = logs {
        task.abort();
    }
    drop(attachment);
    eprintln!("detached from {iface}");
    result
}

/// The subnet index of the demo's veth pair: 198.18.200.0/30, fd00:c8::/64.
const DEMO_SUBNET: u8 = 200;

async fn demo(duration: Duration, mode: ModeRequest, kernel_log: KernelLog) -> Result<()> {
    preflight::require_privileges()?;
    let net = VethNet::create("demo", DEMO_SUBNET).context("creating the demo namespace")?;
    eprintln!(
        "demo: namespace {} with veth {} (here, 198.18.{DEMO_SUBNET}.1) <-> {} (there, .2); \
         sending traffic for {} s",
        net.namespace(),
        net.host_if(),
        net.peer_if(),
        duration.as_secs()
    );
    let options = program::Options {
        log: kernel_log,
        ..Default::default()
    };
    let mut attachment = ScopedAttachment::new(net.host_iface(), mode, options)?;
    eprintln!(
        "demo: attached to {} in {} mode",
        net.host_if(),
        attachment.mode.as_str()
    );
    let logs = forward_kernel_logs(&mut attachment.ebpf, kernel_log);
    let counters = CounterMap::take_from(&mut attachment.ebpf)?;

    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        let subnet = net.subnet();
        net.spawn_in_namespace(move || demo_traffic(subnet, duration, &stop))
    };
    let rounds = duration.as_secs().max(1);
    let sampling = Sampling {
        interval: Duration::from_secs(1),
        count: std::num::NonZeroU64::new(rounds + 1),
    };
    let sources = [(net.host_if().to_owned(), counters)];
    let result = sample_loop(&sources, sampling, false, || Ok(())).await;
    stop.store(true, Ordering::Relaxed);
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the traffic thread panicked"))?;
    if let Some(task) = logs {
        task.abort();
    }
    drop(attachment);
    drop(net);
    eprintln!("demo: detached, namespace and veth pair removed");
    let sent = sent?;
    eprintln!(
        "demo: sent {} ICMP and {} ICMPv6 echo requests ({} and {} answered), {} UDP datagrams, \
         {} TCP connection attempts",
        sent.pings_v4, sent.pings_v6, sent.replies_v4, sent.replies_v6, sent.udp, sent.tcp
    );
    result
}

/// What the demo sent.
#[derive(Debug, Default)]
struct DemoTraffic {
    pings_v4: u64,
    pings_v6: u64,
    replies_v4: u64,
    replies_v6: u64,
    udp: u64,
    tcp: u64,
}

/// Ten rounds a second, each: a ping and a ping6, a burst of UDP over IPv4 and IPv6, and
/// a TCP connection attempt to a closed port; until `duration` passes or `stop` is set.
fn demo_traffic(subnet: u8, duration: Duration, stop: &AtomicBool) -> io::Result<DemoTraffic> {
    let host_v4 = IpAddr::V4(VethNet::host_v4(subnet));
    let host_v6 = IpAddr::V6(VethNet::host_v6(subnet));
    let deadline = std::time::Instant::now() + duration;
    let mut sent = DemoTraffic::default();
    let wait = Duration::from_millis(50);
    while std::time::Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        sent.pings_v4 += 1;
        sent.replies_v4 += u64::from(traffic::ping(host_v4, 1, wait)?);
        sent.pings_v6 += 1;
        sent.replies_v6 += u64::from(traffic::ping(host_v6, 1, wait)?);
        sent.udp += traffic::udp_burst(SocketAddr::new(host_v4, 9), 20, &[0x5a; 200])? as u64;
        sent.udp += traffic::udp_burst(SocketAddr::new(host_v6, 9), 5, &[0xa5; 600])? as u64;
        traffic::tcp_connects(SocketAddr::new(host_v4, 9), 1, wait);
        sent.tcp += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(sent)
}
