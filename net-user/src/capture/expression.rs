//! A capture expression (`netxdp capture IFACE udp dst port 53`): compiled by libpcap
//! ([`super::classic`]), translated to eBPF ([`super::translate`]), and loaded where the
//! attachment's capture path tail-calls it.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use netxdp::capture::expression::Expression;
//!
//! let expression = Expression::compile("tcp[tcpflags] & tcp-syn != 0", 96)?;
//! print!("{}", expression.classic()); // as `tcpdump -d` prints it
//! print!("{}", expression.ebpf_listing()?); // the XDP program it becomes
//! # Ok(())
//! # }
//! ```

use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd};

use anyhow::{Context as _, Result};
use net_common::{capture::FILTER_SLOT, names};

use super::{
    classic::{ClassicProgram, CompileError},
    ebpf::{Insn, Listing},
    translate::{Maps, translate},
};
use crate::bpf_syscall::{load_xdp_program, set_fd_element};

/// The name the kernel shows the loaded expression under (`bpftool prog`).
const PROGRAM_NAME: &str = "netxdp_expr";

/// A capture expression, compiled.
pub struct Expression {
    classic: ClassicProgram,
}

impl Expression {
    /// Compiles `text` as tcpdump would for an Ethernet interface capturing `snaplen` bytes.
    /// A bad expression is refused with libpcap's message.
    pub fn compile(text: &str, snaplen: u32) -> Result<Self, CompileError> {
        Ok(Self {
            classic: ClassicProgram::compile(text, snaplen)?,
        })
    }

    pub fn text(&self) -> &str {
        &self.classic.expression
    }

    /// The classic program, which shows as `tcpdump -d` shows it.
    pub fn classic(&self) -> &ClassicProgram {
        &self.classic
    }

    /// The eBPF program, for `maps`.
    pub fn ebpf(&self, maps: Maps) -> Result<Vec<Insn>> {
        translate(&self.classic.insns, maps)
            .with_context(|| format!("translating {:?} to eBPF", self.text()))
    }

    /// The eBPF program as `netxdp capture -dd` prints it, its maps by name.
    pub fn ebpf_listing(&self) -> Result<String> {
        // Stand-ins: shown by name, never loaded.
        let maps = Maps {
            programs: -1,
            decision: -2,
        };
        let insns = self.ebpf(maps)?;
        let listing = Listing {
            insns: &insns,
            map_names: &[
                (maps.programs, names::CAPTURE_PROGRAMS_MAP),
                (maps.decision, names::DECISION_MAP),
            ],
        };
        Ok(listing.to_string())
    }

    /// Loads the eBPF program for an attachment's `programs` array and `decision` map.
    pub fn load(&self, programs: BorrowedFd<'_>, decision: BorrowedFd<'_>) -> Result<OwnedFd> {
        let maps = Maps {
            programs: programs.as_raw_fd(),
            decision: decision.as_raw_fd(),
        };
        let encoded: Vec<[u8; 8]> = self.ebpf(maps)?.iter().map(Insn::encode).collect();
        load_xdp_program(&encoded, PROGRAM_NAME).map_err(|error| {
            let too_complex = error.error.raw_os_error() == Some(libc::E2BIG)
                || error.log.contains("too complex");
            let context = if too_complex {
                format!(
                    "the capture expression {:?} is too complex for the kernel's verifier, \
                     which follows at most 1,000,000 instructions and 8,192 jumps through it \
                     (each `protochain` costs the most: a loop over up to {} headers)",
                    self.text(),
                    net_common::capture::EXPRESSION_LOOP_BUDGET
                )
            } else {
                format!("loading the capture expression {:?}", self.text())
            };
            anyhow::Error::new(error).context(context)
        })
    }

    /// Loads the program and puts it where the attachment's capture path tail-calls it.
    pub fn install(&self, programs: BorrowedFd<'_>, decision: BorrowedFd<'_>) -> Result<()> {
        let program = self.load(programs, decision)?;
        set_fd_element(programs, FILTER_SLOT, program.as_fd())
            .context("installing the capture expression's program")
    }
}
