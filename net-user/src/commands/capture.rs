//! `netxdp capture`: selected packets from the kernel's ring buffer to a pcapng or pcap file.

use std::{
    io::IsTerminal as _,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{MapData, RingBuf};
use futures_util::future::select_all;
use net_common::capture::{CaptureHeader, MAX_SNAPLEN};
use tokio::io::{Interest, unix::AsyncFd};

use crate::process::Shutdown;
use crate::{
    capture::{
        Counters, Selection, Session,
        expression::Expression,
        file::{CaptureFile, Described, Format, Output, WriteError},
    },
    cli::{CaptureAction, ReasonArg},
    clock::monotonic_ns,
    filter::maps::FilterMaps,
    iface::IfaceName,
    pins::PinDir,
    preflight,
};

/// How often the ring is looked at when the program has not woken the reader: the longest
/// a captured packet waits before it is written.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// What `netxdp capture` was asked for.
pub struct Request {
    pub ifaces: Vec<IfaceName>,
    /// A pcap-filter expression the packets must also match.
    pub expression: Option<String>,
    pub action: Option<CaptureAction>,
    pub rule: Option<u32>,
    /// Any reason when empty.
    pub reasons: Vec<ReasonArg>,
    pub snaplen: u32,
    pub sample: u32,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub write: PathBuf,
    pub format: Format,
}

impl Request {
    /// The action asked for; by default the packets of a named rule or reason whatever
    /// their action, else the drops.
    fn action(&self) -> CaptureAction {
        self.action
            .unwrap_or(if self.rule.is_some() || !self.reasons.is_empty() {
                CaptureAction::All
            } else {
                CaptureAction::Drop
            })
    }

    fn selection(&self) -> Selection {
        let base = match self.action() {
            CaptureAction::Drop => Selection::drops(),
            CaptureAction::Pass => Selection::passes(),
            CaptureAction::All => Selection::all(),
        };
        let reasons = match self.reasons.as_slice() {
            [] => base.reasons,
            named => named
                .iter()
                .fold(0, |bits, reason| bits | 1 << reason.code()),
        };
        Selection {
            rule: self.rule,
            reasons,
            snaplen: self.snaplen,
            sample: self.sample,
            ..base
        }
    }

    /// The selection in words, for the summary and the file's interface description.
    fn describe(&self, selection: &Selection) -> String {
        let mut text = match self.action() {
            CaptureAction::Drop => "dropped packets",
            CaptureAction::Pass => "passed packets",
            CaptureAction::All => "all packets",
        }
        .to_owned();
        if let Some(rule) = self.rule {
            text.push_str(&format!(" decided by rule {rule}"));
        }
        if !self.reasons.is_empty() {
            let names: Vec<String> = self
                .reasons
                .iter()
                .filter_map(clap::ValueEnum::to_possible_value)
                .map(|value| value.get_name().to_owned())
                .collect();
            text.push_str(&format!(" for reason {}", names.join(" or ")));
        }
        if let Some(expression) = &self.expression {
            text.push_str(&format!(" matching '{expression}'"));
        }
        if selection.sample > 1 {
            text.push_str(&format!(" (one in {})", selection.sample));
        }
        text
    }
}

/// Splits `capture`'s words into the interfaces, which lead, and the expression, the rest
/// joined by spaces as tcpdump joins them. A word is an interface if this host has a network
/// interface of that name, or netxdp is attached under it.
pub fn split_words(words: Vec<String>) -> Result<(Vec<IfaceName>, Option<String>)> {
    let is_iface = |word: &String| {
        IfaceName::new(word.as_str()).is_ok_and(|name| {
            nix::net::if_::if_nametoindex(word.as_str()).is_ok()
                || PinDir::new(&name).dir().exists()
        })
    };
    let leading = words.iter().take_while(|word| is_iface(word)).count();
    let mut words = words.into_iter();
    let ifaces = words
        .by_ref()
        .take(leading)
        .map(|word| IfaceName::new(word).context("interface name"))
        .collect::<Result<Vec<_>>>()?;
    let expression: Vec<String> = words.collect();
    Ok((
        ifaces,
        (!expression.is_empty()).then(|| expression.join(" ")),
    ))
}

/// `capture -d`: the expression's program as `tcpdump -d` prints it; `-dd`, the eBPF.
pub fn dump(expression: Option<&str>, snaplen: u32, level: u8) -> Result<()> {
    let Some(text) = expression else {
        bail!("-d prints an expression's program: give one (`netxdp capture -d udp port 53`)");
    };
    let expression = Expression::compile(text, snaplen.min(MAX_SNAPLEN))?;
    let listing = match level {
        1 => expression.classic().to_string(),
        _ => expression.ebpf_listing()?,
    };
    crate::process::emit(listing.trim_end())
}

pub async fn capture(request: Request) -> Result<()> {
    preflight::require_privileges()?;
    preflight::ensure_bpffs()?;
    let to_stdout = request.write.as_os_str() == "-";
    if to_stdout && std::io::stdout().is_terminal() {
        bail!(
            "refusing to write a binary capture to a terminal: pipe it (`-w - | tcpdump -nr -`) \
             or name a file with -w"
        );
    }
    if let Some(twice) = request
        .ifaces
        .iter()
        .enumerate()
        .find_map(|(i, iface)| request.ifaces[..i].contains(iface).then_some(iface))
    {
        bail!("{twice} is named twice: one capture per interface");
    }
    if request.ifaces.is_empty() {
        match &request.expression {
            Some(expression) => bail!(
                "capture needs an interface first: {:?} names none on this host (`ip link` \
                 lists them)",
                expression.split(' ').next().unwrap_or_default()
            ),
            None => bail!("capture needs an interface"),
        }
    }
    let selection = request.selection();
    // Compiled before anything is touched: a bad expression changes nothing.
    let expression = request
        .expression
        .as_deref()
        .map(|text| Expression::compile(text, selection.effective_snaplen()))
        .transpose()?;
    let mut shutdown = Shutdown::new()?;
    let mut taps = Vec::new();
    for iface in &request.ifaces {
        // Started one by one; a failure drops (and so stops) those already started.
        let tap = Tap::start(iface, &selection, request.rule, expression.as_ref())?;
        if let Some(pid) = tap.session.replaced_stale {
            eprintln!(
                "netxdp: took over the capture on {iface} from netxdp process {pid}, which \
                 stopped renewing its lease (killed, or stopped)"
            );
        }
        taps.push(tap);
    }
    let output = Output::create(&request.write)
        .with_context(|| format!("creating {}", request.write.display()))?;
    let what = request.describe(&selection);
    let snaplen = selection.effective_snaplen();
    let names: Vec<String> = request.ifaces.iter().map(IfaceName::to_string).collect();
    let described = Described {
        ifaces: &names,
        selection: &what,
        expression: request.expression.as_deref(),
        snaplen,
        realtime_offset_ns: realtime_offset_ns(),
    };
    let mut file = CaptureFile::new(output, request.format, &described)?;
    let target = if to_stdout {
        "standard output".to_owned()
    } else {
        request.write.display().to_string()
    };
    eprintln!(
        "netxdp: capturing {what} on {}, snapshot length {snaplen} bytes{}, to {target}",
        names.join(", "),
        if request.snaplen > MAX_SNAPLEN {
            " (the most the kernel side copies)"
        } else {
            ""
        }
    );

    let ended = receive(&mut taps, &mut file, &request, &mut shutdown).await;
    // Stop the copying, then take what the rings still hold, up to the count.
    for tap in &mut taps {
        tap.session.stop()?;
    }
    let ended = ended.and_then(|()| drain(&mut taps, &mut file, request.count));
    let counters = taps
        .iter()
        .map(|tap| tap.session.counters())
        .collect::<Result<Vec<_>>>()?;
    drop(taps);
    let written = file.packets_written();
    let (written, ended) = match ended {
        Ok(()) => match file.finish(&counters) {
            Ok(written) => (written, Ok(())),
            Err(error) => (written, Err(error)),
        },
        Err(error) => (written, Err(error)),
    };
    summary(written, &counters, &selection);
    match ended {
        Ok(()) => Ok(()),
        Err(WriteError::Closed) => {
            eprintln!("netxdp: the reader closed the pipe; capture ended");
            Ok(())
        }
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "capture ended: {target} holds the first {written} packets, whole"
        ))),
    }
}

/// The capture of one interface: its session, and its ring buffer as tokio watches it.
struct Tap {
    session: Session,
    ring: AsyncFd<RingBuf<MapData>>,
}

impl Tap {
    fn start(
        iface: &IfaceName,
        selection: &Selection,
        rule: Option<u32>,
        expression: Option<&Expression>,
    ) -> Result<Self> {
        let pins = PinDir::new(iface);
        if let Some(rule) = rule {
            require_rule(&pins, rule)?;
        }
        let (session, ring) = Session::start(&pins, selection, expression)?;
        // SAFETY: the RingBuf owns its map's fd for its whole life and always reports that
        // same fd; the AsyncFd owns the RingBuf.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|error| error.into_parts().1)
            .context("watching the capture ring buffer")?;
        Ok(Self { session, ring })
    }
}

/// A capture of a rule that does not exist would wait forever for nothing: refuse it.
fn require_rule(pins: &PinDir, rule: u32) -> Result<()> {
    if !pins.is_attached() {
        bail!(
            "netxdp is not attached to {iface} (`netxdp attach {iface}` first)",
            iface = pins.iface()
        );
    }
    let set = FilterMaps::read_pins(pins)?.load()?;
    if !set.rules().iter().any(|candidate| candidate.id == rule) {
        bail!(
            "{} has no rule {rule} (`netxdp rule list {}` shows its rules)",
            pins.iface(),
            pins.iface()
        );
    }
    Ok(())
}

/// Copies records to the file as they come, until Ctrl-C, SIGTERM, --count or --duration.
async fn receive(
    taps: &mut [Tap],
    file: &mut CaptureFile,
    request: &Request,
    shutdown: &mut Shutdown,
) -> Result<(), WriteError> {
    let deadline = request
        .duration
        .map(|duration| tokio::time::Instant::now() + duration);
    let expired = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    // The program wakes the reader only when a ring is a quarter full: a trickle of packets
    // is picked up by looking every LOOK_EVERY.
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Renewing the lease also finds an interface detached, or taken over.
    let renew_every = taps
        .iter()
        .map(|tap| tap.session.renew_every())
        .min()
        .unwrap_or(crate::capture::LEASE);
    let mut renew = tokio::time::interval(renew_every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if request
            .count
            .is_some_and(|count| file.packets_written() >= count)
        {
            return Ok(());
        }
        let woken = select_all(taps.iter_mut().map(|tap| Box::pin(tap.ring.readable_mut())));
        let mut renewing = false;
        tokio::select! {
            (ready, _, _) = woken => {
                // Cleared before draining: a record that lands meanwhile wakes us again.
                ready?.clear_ready();
            }
            _ = look.tick() => {}
            _ = renew.tick() => renewing = true,
            _ = shutdown.recv() => return Ok(()),
            _ = &mut expired => return Ok(()),
        }
        if renewing {
            for tap in taps.iter_mut() {
                if !matches!(tap.session.renew(), Ok(true)) {
                    eprintln!(
                        "netxdp: {} was detached (or another capture took it over); capture \
                         ended",
                        tap.session.iface()
                    );
                    return Ok(());
                }
            }
        }
        drain(taps, file, request.count)?;
    }
}

/// Takes every record the rings hold, writing up to `count` packets to the file in all (the
/// rest are dropped: the rings must be left empty). With several interfaces, what was read
/// at once is written in the order the kernel stamped it.
fn drain(taps: &mut [Tap], file: &mut CaptureFile, count: Option<u64>) -> Result<(), WriteError> {
    let mut room = count.map(|count| count.saturating_sub(file.packets_written()));
    let mut take = |interface_id: u32, record: &[u8], file: &mut CaptureFile| {
        let Some((header, data)) = CaptureHeader::parse(record) else {
            tracing::warn!("skipped a capture record of {} bytes", record.len());
            return Ok(());
        };
        match &mut room {
            Some(0) => return Ok(()),
            Some(left) => *left -= 1,
            None => {}
        }
        file.push(interface_id, &header, data)
    };
    if let [tap] = taps {
        while let Some(record) = tap.ring.get_mut().next() {
            take(0, &record, file)?;
        }
    } else {
        let mut records = Vec::new();
        for (interface_id, tap) in taps.iter_mut().enumerate() {
            while let Some(record) = tap.ring.get_mut().next() {
                let stamp = CaptureHeader::parse(&record).map_or(0, |(h, _)| h.timestamp_ns);
                records.push((stamp, interface_id as u32, record.to_vec()));
            }
        }
        records.sort_by_key(|(stamp, _, _)| *stamp);
        for (_, interface_id, record) in &records {
            take(*interface_id, record, file)?;
        }
    }
    file.flush()
}

/// What happened, as tcpdump says it on exit (summed over the interfaces).
fn summary(written: u64, counters: &[Counters], selection: &Selection) {
    let total = counters
        .iter()
        .fold(Counters::default(), |sum, c| Counters {
            selected: sum.selected + c.selected,
            captured: sum.captured + c.captured,
            lost: sum.lost + c.lost,
        });
    eprintln!("{} captured", packets(written));
    eprintln!("{} selected by the filter", packets(total.selected));
    if selection.sample > 1 {
        eprintln!(
            "{} sampled (one in {})",
            packets(total.captured + total.lost),
            selection.sample
        );
    }
    eprintln!(
        "{} dropped by kernel (the ring buffer was full)",
        packets(total.lost)
    );
}

fn packets(count: u64) -> String {
    match count {
        1 => "1 packet".to_owned(),
        _ => format!("{count} packets"),
    }
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds: what turns the kernel's timestamps
/// into times since the epoch.
fn realtime_offset_ns() -> i128 {
    let monotonic = monotonic_ns();
    let realtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as i128);
    realtime - i128::from(monotonic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn interfaces_lead_and_the_rest_is_the_expression_joined() {
        let (ifaces, expression) = split_words(words("lo udp dst port 7777")).expect("splits");
        assert_eq!(ifaces, ["lo"]);
        assert_eq!(expression.as_deref(), Some("udp dst port 7777"));
        let (ifaces, expression) = split_words(words("lo lo")).expect("splits");
        assert_eq!(
            ifaces.len(),
            2,
            "named twice is refused later, with its own message"
        );
        assert_eq!(expression, None);
        // Not an interface here: the expression starts at once (and the capture says so).
        let (ifaces, expression) =
            split_words(words("no-such-if0 tcp[13] & 2 != 0")).expect("splits");
        assert!(ifaces.is_empty());
        assert_eq!(expression.as_deref(), Some("no-such-if0 tcp[13] & 2 != 0"));
        // Words that no interface can be named are expression words.
        let (ifaces, expression) = split_words(words("lo .. a/b")).expect("splits");
        assert_eq!(ifaces, ["lo"]);
        assert_eq!(expression.as_deref(), Some(".. a/b"));
    }
}
