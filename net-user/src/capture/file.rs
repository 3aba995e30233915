//! Captured packets as a file every network tool reads: pcapng (the default: an interface
//! block per interface captured on, each packet's action and rule in its comment, and the
//! capture's counters in a statistics block per interface at the end) or classic pcap
//! (nanosecond timestamps; it cannot tell interfaces apart).
//!
//! Whole packets reach the output: packets are encoded into a buffer and written out in
//! whole blocks. If a write fails (a full disk), a regular file is cut back to the end of the
//! last packet written, so it stays valid up to there; on a pipe, the reader is gone anyway.

use std::{
    borrow::Cow,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
    time::Duration,
};

use byteorder_slice::LittleEndian;
use net_common::{
    capture::CaptureHeader,
    rule::{REASONS, XDP_DROP, XDP_PASS, reason},
    stats::XDP_ACTIONS,
};
use pcap_file::{
    DataLink, Endianness, PcapError, TsResolution,
    pcap::{PcapHeader, PcapPacket},
    pcapng::{
        PcapNgBlock as _,
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            interface_statistics::{InterfaceStatisticsBlock, InterfaceStatisticsOption},
            section_header::{SectionHeaderBlock, SectionHeaderOption},
        },
    },
};

use super::Counters;

/// The file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    PcapNg,
    Pcap,
}

/// Where the file goes.
pub enum Output {
    File(File),
    /// Locked for the capture's life: nothing else is written to it.
    Stdout(io::StdoutLock<'static>),
}

impl Output {
    /// `-` is standard output; anything else a file, created (mode 0600: packets are
    /// sensitive) or truncated, as tcpdump -w does. Never through a symbolic link: root
    /// writing where a link in a shared directory points is how files get clobbered.
    pub fn create(path: &Path) -> io::Result<Self> {
        if path == Path::new("-") {
            return Ok(Output::Stdout(io::stdout().lock()));
        }
        let opened = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path);
        match opened {
            Ok(file) => Ok(Output::File(file)),
            // O_NOFOLLOW's answer when the last component is a link.
            Err(error) if error.raw_os_error() == Some(libc::ELOOP) => Err(io::Error::new(
                error.kind(),
                "it is a symbolic link, and netxdp does not write packets through one \
                 (name the file itself, or remove the link)",
            )),
            Err(error) => Err(error),
        }
    }

    /// Writes all of `bytes`, or fails saying how many of them were written.
    fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), (usize, io::Error)> {
        let total = bytes.len();
        while !bytes.is_empty() {
            let written = match self {
                Output::File(file) => file.write(bytes),
                Output::Stdout(stdout) => stdout.write(bytes),
            };
            match written {
                Ok(0) => return Err((total - bytes.len(), io::ErrorKind::WriteZero.into())),
                Ok(n) => bytes = &bytes[n..],
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err((total - bytes.len(), error)),
            }
        }
        match self {
            Output::File(_) => Ok(()),
            Output::Stdout(stdout) => stdout.flush().map_err(|error| (total, error)),
        }
    }
}

/// What the capture is of, for the file's headers.
pub struct Described<'a> {
    /// The interfaces, in the order of their interface ids.
    pub ifaces: &'a [String],
    /// What the capture selects, in words ("action drop, rule 7").
    pub selection: &'a str,
    /// The capture expression, if any: pcapng's if_filter, which Wireshark shows.
    pub expression: Option<&'a str>,
    pub snaplen: u32,
    /// Add this to the kernel's CLOCK_MONOTONIC timestamps for the time since the epoch.
    pub realtime_offset_ns: i128,
}

/// A capture file being written.
pub struct CaptureFile {
    output: Output,
    format: Format,
    snaplen: u32,
    offset_ns: i128,
    /// Encoded blocks not yet written out, and where each packet's block ends in them (with
    /// its interface id).
    pending: Vec<u8>,
    pending_ends: Vec<(usize, u32)>,
    /// Bytes and packets known to be in the output, whole; packets by interface id too.
    written_bytes: u64,
    written_packets: u64,
    written_by_interface: Vec<u64>,
    first_ns: Option<u64>,
    last_ns: u64,
}

/// A write that failed; what is in the output is whole up to `packets` packets.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the reader closed the pipe")]
    Closed,
    #[error("writing the capture")]
    Io(#[from] io::Error),
    #[error("encoding the capture")]
    Encode(#[from] PcapError),
}

impl CaptureFile {
    /// Starts the file: its header (pcapng: section and interface blocks).
    pub fn new(output: Output, format: Format, what: &Described) -> Result<Self, WriteError> {
        let mut file = Self {
            output,
            format,
            snaplen: what.snaplen,
            offset_ns: what.realtime_offset_ns,
            pending: Vec::with_capacity(1 << 16),
            pending_ends: Vec::new(),
            written_bytes: 0,
            written_packets: 0,
            written_by_interface: vec![0; what.ifaces.len()],
            first_ns: None,
            last_ns: 0,
        };
        match format {
            Format::PcapNg => {
                let section = SectionHeaderBlock {
                    endianness: Endianness::Little,
                    options: vec![SectionHeaderOption::UserApplication(Cow::Owned(format!(
                        "netxdp {}",
                        env!("CARGO_PKG_VERSION")
                    )))],
                    ..SectionHeaderBlock::default()
                };
                file.encode_block(section.into_block())?;
                for iface in what.ifaces {
                    let mut options = vec![
                        InterfaceDescriptionOption::IfName(Cow::Borrowed(iface)),
                        InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                            "netxdp XDP capture: {}",
                            what.selection
                        ))),
                        // Nanoseconds, as the kernel stamps them.
                        InterfaceDescriptionOption::IfTsResol(9),
                    ];
                    if let Some(expression) = what.expression {
                        // Type 0: a libpcap filter string.
                        let mut filter = vec![0];
                        filter.extend_from_slice(expression.as_bytes());
                        options.push(InterfaceDescriptionOption::IfFilter(Cow::Owned(filter)));
                    }
                    let interface = InterfaceDescriptionBlock {
                        linktype: DataLink::ETHERNET,
                        snaplen: what.snaplen,
                        options,
                    };
                    file.encode_block(interface.into_block())?;
                }
            }
            Format::Pcap => {
                let header = PcapHeader {
                    snaplen: what.snaplen,
                    datalink: DataLink::ETHERNET,
                    ts_resolution: TsResolution::NanoSecond,
                    endianness: Endianness::Little,
                    ..PcapHeader::default()
                };
                header.write_to(&mut file.pending)?;
            }
        }
        file.flush()?;
        Ok(file)
    }

    /// Adds one packet captured on the interface `interface_id` (its index in
    /// [`Described::ifaces`]); written out at the next [`CaptureFile::flush`].
    pub fn push(
        &mut self,
        interface_id: u32,
        header: &CaptureHeader,
        data: &[u8],
    ) -> Result<(), WriteError> {
        self.first_ns.get_or_insert(header.timestamp_ns);
        self.last_ns = self.last_ns.max(header.timestamp_ns);
        let timestamp = self.wall_time(header.timestamp_ns);
        match self.format {
            Format::PcapNg => {
                let packet = EnhancedPacketBlock {
                    interface_id,
                    timestamp,
                    original_len: header.original_len,
                    data: Cow::Borrowed(data),
                    options: vec![
                        EnhancedPacketOption::Comment(Cow::Owned(comment(header))),
                        // Inbound: XDP sees only what arrives.
                        EnhancedPacketOption::Flags(0b01),
                    ],
                };
                self.encode_block(packet.into_block())?;
            }
            Format::Pcap => {
                let packet = PcapPacket::new(timestamp, header.original_len, data);
                packet.write_to::<_, LittleEndian>(
                    &mut self.pending,
                    TsResolution::NanoSecond,
                    self.snaplen,
                )?;
            }
        }
        self.pending_ends.push((self.pending.len(), interface_id));
        Ok(())
    }

    /// Writes out what was pushed. On failure a regular file is cut back to its last whole
    /// packet.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.output.write_all(&self.pending);
        let (written, error) = match result {
            Ok(()) => (self.pending.len(), None),
            Err((written, error)) => (written, Some(error)),
        };
        // The packets whose blocks made it out whole.
        let whole = self
            .pending_ends
            .partition_point(|(end, _)| *end <= written);
        let whole_bytes = match (whole, &error) {
            (_, None) => self.pending.len(),
            (0, Some(_)) => 0,
            (n, Some(_)) => self.pending_ends[n - 1].0,
        };
        self.written_bytes += whole_bytes as u64;
        self.written_packets += whole as u64;
        for (_, interface_id) in &self.pending_ends[..whole] {
            if let Some(count) = self.written_by_interface.get_mut(*interface_id as usize) {
                *count += 1;
            }
        }
        self.pending.clear();
        self.pending_ends.clear();
        let Some(error) = error else {
            return Ok(());
        };
        if let Output::File(file) = &self.output {
            // Best effort: without it the file ends in a partial block, which readers reject.
            let _ = file.set_len(self.written_bytes);
        }
        Err(match error.kind() {
            io::ErrorKind::BrokenPipe => WriteError::Closed,
            _ => WriteError::Io(error),
        })
    }

    /// Packets in the output, whole.
    pub fn packets_written(&self) -> u64 {
        self.written_packets
    }

    /// Ends the file: pcapng gets an interface statistics block per interface with its
    /// capture's counters (what the selection took, what the kernel dropped, what was
    /// written), `counters` in the order of the interface ids.
    pub fn finish(mut self, counters: &[Counters]) -> Result<u64, WriteError> {
        self.flush()?;
        if self.format == Format::PcapNg {
            let to_units = |ns: u64| self.wall_time(ns).as_nanos() as u64;
            let end = to_units(self.last_ns);
            let start = self.first_ns.map(to_units);
            let delivered = self.written_by_interface.clone();
            for (interface_id, (counters, delivered)) in counters.iter().zip(delivered).enumerate()
            {
                let mut options = Vec::new();
                if let Some(start) = start {
                    options.push(InterfaceStatisticsOption::IsbStartTime(start));
                    options.push(InterfaceStatisticsOption::IsbEndTime(end));
                }
                options.extend([
                    InterfaceStatisticsOption::IsbFilterAccept(counters.selected),
                    InterfaceStatisticsOption::IsbOsDrop(counters.lost),
                    InterfaceStatisticsOption::IsbUsrDeliv(delivered),
                ]);
                let statistics = InterfaceStatisticsBlock {
                    interface_id: interface_id as u32,
                    timestamp: end,
                    options,
                };
                self.encode_block(statistics.into_block())?;
            }
            self.flush()?;
        }
        Ok(self.written_packets)
    }

    fn encode_block(&mut self, block: pcap_file::pcapng::Block) -> Result<(), WriteError> {
        block.write_to::<LittleEndian, _>(&mut self.pending)?;
        Ok(())
    }

    /// The time since the epoch of a kernel CLOCK_MONOTONIC timestamp.
    fn wall_time(&self, monotonic_ns: u64) -> Duration {
        let ns = (i128::from(monotonic_ns) + self.offset_ns).max(0);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// The packet comment: what netxdp did with it and why.
pub fn comment(header: &CaptureHeader) -> String {
    let action = XDP_ACTIONS
        .get(header.action as usize)
        .copied()
        .unwrap_or("unknown");
    let why = match (header.rule_id, header.action, header.reason as u8) {
        (0, XDP_DROP | XDP_PASS, reason::POLICY) => "by the policy".to_owned(),
        (0, XDP_PASS, reason::NEIGHBOUR) => "as neighbour traffic".to_owned(),
        (0, XDP_DROP, reason::FRAGMENT) => "as a fragment (--fragments drop)".to_owned(),
        (0, XDP_DROP, code) if code > reason::DEFECT => match REASONS.get(code as usize) {
            Some(defect) => format!("as defective: {defect}"),
            None => "by the program".to_owned(),
        },
        (0, _, _) => "by the program".to_owned(),
        (rule, _, _) => format!("by rule {rule}"),
    };
    format!("netxdp: {action} {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_say_the_action_and_what_decided_it() {
        let header = |action, rule_id, reason: u8| CaptureHeader {
            action,
            rule_id,
            reason: reason.into(),
            ..CaptureHeader::default()
        };
        let drop = |reason| comment(&header(XDP_DROP, 0, reason));
        assert_eq!(
            comment(&header(XDP_DROP, 7, reason::RULE)),
            "netxdp: drop by rule 7"
        );
        assert_eq!(
            comment(&header(XDP_PASS, 0, reason::POLICY)),
            "netxdp: pass by the policy"
        );
        assert_eq!(
            comment(&header(XDP_PASS, 0, reason::NEIGHBOUR)),
            "netxdp: pass as neighbour traffic"
        );
        assert_eq!(
            drop(reason::FRAGMENT),
            "netxdp: drop as a fragment (--fragments drop)"
        );
        assert_eq!(
            drop(reason::DEFECT + 2),
            "netxdp: drop as defective: tiny_fragment"
        );
        assert_eq!(drop(200), "netxdp: drop by the program");
        assert_eq!(
            comment(&header(0, 0, reason::POLICY)),
            "netxdp: aborted by the program"
        );
        assert_eq!(
            comment(&header(99, 0, reason::POLICY)),
            "netxdp: unknown by the program"
        );
    }

    /// A path in the temporary directory, removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("netxdp-file-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            Self(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn a_new_file_is_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let file = Scratch::new("new.pcapng");
        drop(Output::create(&file.0).unwrap());
        let mode = std::fs::metadata(&file.0).unwrap().permissions().mode();
        // Whatever the umask, which can only take bits away: nothing for group or others.
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    #[test]
    fn an_existing_file_is_truncated() {
        let file = Scratch::new("old.pcapng");
        std::fs::write(&file.0, b"old content").unwrap();
        drop(Output::create(&file.0).unwrap());
        assert_eq!(std::fs::read(&file.0).unwrap(), b"");
    }

    #[test]
    fn a_symbolic_link_is_refused_and_its_target_left_alone() {
        let target = Scratch::new("target");
        let link = Scratch::new("link.pcapng");
        std::fs::write(&target.0, b"sentinel").unwrap();
        std::os::unix::fs::symlink(&target.0, &link.0).unwrap();
        let error = match Output::create(&link.0) {
            Ok(_) => panic!("wrote through a symbolic link"),
            Err(error) => error,
        };
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert_eq!(std::fs::read(&target.0).unwrap(), b"sentinel");
        // A dangling link is refused too, rather than creating its target.
        std::fs::remove_file(&target.0).unwrap();
        assert!(Output::create(&link.0).is_err());
        assert!(!target.0.exists());
    }
}
