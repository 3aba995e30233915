//! `netxdp serve` under load, shared by the exporter test (which checks every answer and the
//! server's memory) and the bench (which reports how long the answers took): the 10,000-rule
//! ClassBench acl set in force, a stream of datagrams, a rule added and deleted again and
//! again, and [`SCRAPERS`] threads scraping [`EACH`] times each.

use std::{
    net::{IpAddr, SocketAddr},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use net_common::classbench::{self, Profile};
use netxdp::{
    filter::{NewRule, RuleSet, render::render_rules_file},
    netns::VethNet,
    traffic,
};

pub const SCRAPERS: usize = 40;
pub const EACH: usize = 5;
/// Between one scraper's scrapes: the load spans some snapshots, and the rule changes.
const PACE: Duration = Duration::from_millis(250);
pub const RULES: usize = 10_000;
const NETXDP: &str = env!("CARGO_BIN_EXE_netxdp");

/// What the load did and met.
pub struct Outcome {
    pub iface: String,
    /// Every scrape's time, in the order they ended.
    pub took: Vec<Duration>,
    /// Scrapes that failed, or whose answer `check` refused, and why.
    pub failures: Vec<String>,
    /// The largest answer, in bytes.
    pub largest: usize,
    /// The server's peak resident memory (VmHWM).
    pub peak_rss: u64,
    /// Snapshots the server read for all the scrapes (netxdp_exporter_snapshots_total).
    pub snapshots: u64,
    /// Rule changes committed while the scrapes ran.
    pub updates: usize,
    /// Datagrams sent meanwhile.
    pub sent: usize,
}

/// Runs the load on a veth pair of `subnet`.
/// `netxdp serve` runs with `serve_args`; `check` judges each answer, given the interface's
/// name.
pub fn run(
    subnet: u8,
    serve_args: &[&str],
    check: &(dyn Fn(&str, &str) -> Result<(), String> + Sync),
) -> Result<Outcome> {
    let net = VethNet::create("ld", subnet)?;
    let iface = net.host_if().to_owned();
    let _detach = Detach(iface.clone());
    let dir = std::env::temp_dir().join(format!("netxdp-scrape-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("acl.toml");
    let mut set = RuleSet::default();
    let rules: Vec<NewRule> = classbench::rules(Profile::Acl, 2026, RULES)
        .into_iter()
        .map(|rule| NewRule {
            action: rule.action,
            priority: rule.priority,
            matches: rule.matches,
            limit: net_common::limit::Limit::NONE,
        })
        .collect();
    set.replace(&rules)?;
    std::fs::write(&file, render_rules_file(&set))?;
    let attached = netxdp(&[
        "attach",
        &iface,
        "--mode",
        "skb",
        "--rules",
        file.to_str().context("a UTF-8 path")?,
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    attached?;

    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let server = Server(
        Command::new(NETXDP)
            .args(["serve", "--listen", &listen.to_string()])
            .args(serve_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let url = format!("http://{listen}/metrics");
    let agent = new_agent();
    let started = Instant::now();
    while agent.get(&url).call().is_err() {
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "serve never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let to = SocketAddr::new(IpAddr::V4(VethNet::host_v4(subnet)), 9);
    let flag = Arc::clone(&stop);
    let stream =
        net.spawn_in_namespace(move || traffic::udp_stream(to, &[7; 32], &flag, 10_000_000));
    let updater = {
        let (iface, stop) = (iface.clone(), Arc::clone(&stop));
        std::thread::spawn(move || -> Result<usize> {
            let mut updates = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = output(&[
                    "rule", "add", &iface, "--action", "drop", "--proto", "udp", "--dport", "7",
                ])?;
                netxdp(&["rule", "del", &iface, id.trim()])?;
                updates += 2;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(updates)
        })
    };

    let results: Vec<(Duration, Result<usize, String>)> = std::thread::scope(|scope| {
        let scrapers: Vec<_> = (0..SCRAPERS)
            .map(|index| {
                let (url, iface) = (&url, &iface);
                scope.spawn(move || {
                    let scraper = new_agent();
                    // Spread over a pace, as scrapers that started apart would be.
                    std::thread::sleep(PACE * index as u32 / SCRAPERS as u32);
                    (0..EACH)
                        .map(|_| {
                            std::thread::sleep(PACE);
                            let started = Instant::now();
                            let answer = scraper
                                .get(url)
                                .call()
                                .map_err(|error| error.to_string())
                                .and_then(|mut response| {
                                    response
                                        .body_mut()
                                        .with_config()
                                        .limit(64 << 20)
                                        .read_to_string()
                                        .map_err(|error| error.to_string())
                                })
                                .and_then(|text: String| check(iface, &text).map(|()| text.len()));
                            (started.elapsed(), answer)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        scrapers
            .into_iter()
            .flat_map(|scraper| scraper.join().unwrap_or_default())
            .collect()
    });
    stop.store(true, Ordering::Relaxed);
    let updates = updater
        .join()
        .map_err(|_| anyhow::anyhow!("the updater panicked"))??;
    let sent = stream
        .join()
        .map_err(|_| anyhow::anyhow!("the sender panicked"))??;

    let peak_rss = peak_rss(server.0.id())?;
    // A second after the last scrape: the next one reads a snapshot of its own, and counts it.
    std::thread::sleep(Duration::from_millis(1_100));
    let last = agent.get(&url).call()?.body_mut().read_to_string()?;
    let snapshots = last
        .lines()
        .find_map(|line| line.strip_prefix("netxdp_exporter_snapshots_total "))
        .context("no netxdp_exporter_snapshots_total")?
        .parse::<u64>()?
        - 1;
    Ok(Outcome {
        iface,
        took: results.iter().map(|(took, _)| *took).collect(),
        failures: results
            .iter()
            .filter_map(|(_, answer)| answer.as_ref().err().cloned())
            .collect(),
        largest: results
            .iter()
            .filter_map(|(_, answer)| answer.as_ref().ok().copied())
            .max()
            .unwrap_or(0),
        peak_rss,
        snapshots,
        updates,
        sent,
    })
}

fn new_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A process's peak resident memory, in bytes.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .context("no VmHWM")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()?;
    Ok(kib * 1024)
}

fn output(args: &[&str]) -> Result<String> {
    let output = Command::new(NETXDP).args(args).output()?;
    if !output.status.success() {
        bail!(
            "netxdp {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn netxdp(args: &[&str]) -> Result<()> {
    output(args).map(drop)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Detach(String);

impl Drop for Detach {
    fn drop(&mut self) {
        let _ = Command::new(NETXDP)
            .args(["detach", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
