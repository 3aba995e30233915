//! A capture expression compiled by libpcap to classic BPF, as `tcpdump -d` shows it.
//!
//! The expression is compiled on a dead handle of linktype Ethernet (what XDP sees), with
//! libpcap's optimiser, exactly as tcpdump compiles it for an Ethernet interface. libpcap
//! accepts a packet with `ret #snaplen` and rejects it with `ret #0`; the program built here
//! says the capture's snapshot length, so that `-d` shows what a match copies.

use std::{ffi::CStr, fmt};

use pcap::{Capture, Linktype};

/// The snapshot length of the pcap crate's dead handle, which its accepting `ret`s carry.
const DEAD_HANDLE_SNAPLEN: u32 = 65_535;

/// One classic BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassicInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A compiled capture expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassicProgram {
    /// The expression as given (the words joined by spaces).
    pub expression: String,
    pub insns: Vec<ClassicInsn>,
}

/// libpcap refused the expression; its message, as tcpdump prints it.
#[derive(Debug, thiserror::Error)]
#[error("bad capture expression {expression:?}: {message}")]
pub struct CompileError {
    pub expression: String,
    pub message: String,
}

impl ClassicProgram {
    /// Compiles `expression` for Ethernet frames, accepting with `ret #snaplen`.
    pub fn compile(expression: &str, snaplen: u32) -> Result<Self, CompileError> {
        let failed = |message: String| CompileError {
            expression: expression.to_owned(),
            message,
        };
        let dead = Capture::dead(Linktype::ETHERNET).map_err(|error| failed(error.to_string()))?;
        let compiled = dead
            .compile(expression, true)
            .map_err(|error| failed(libpcap_message(error)))?;
        let insns = compiled
            .get_instructions()
            .iter()
            .map(|insn| parse_insn(&insn.to_string()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| failed("libpcap's program could not be read".to_owned()))?
            .into_iter()
            .map(|insn| match insn {
                ClassicInsn { code, k, .. } if code == RET_K && k == DEAD_HANDLE_SNAPLEN => {
                    ClassicInsn { k: snaplen, ..insn }
                }
                other => other,
            })
            .collect();
        Ok(Self {
            expression: expression.to_owned(),
            insns,
        })
    }
}

/// `BPF_RET | BPF_K`.
pub const RET_K: u16 = 0x06;

/// The pcap crate shows an instruction as `code jt jf k`, its only public view of one.
fn parse_insn(shown: &str) -> Option<ClassicInsn> {
    let mut fields = shown.split(' ');
    let insn = ClassicInsn {
        code: fields.next()?.parse().ok()?,
        jt: fields.next()?.parse().ok()?,
        jf: fields.next()?.parse().ok()?,
        k: fields.next()?.parse().ok()?,
    };
    fields.next().is_none().then_some(insn)
}

fn libpcap_message(error: pcap::Error) -> String {
    match error {
        pcap::Error::PcapError(message) => message,
        other => other.to_string(),
    }
}

unsafe extern "C" {
    /// libpcap's text of one instruction, the lines `tcpdump -d` prints: a static buffer,
    /// overwritten by the next call.
    fn bpf_image(insn: *const ClassicInsn, index: libc::c_int) -> *const libc::c_char;
}

impl fmt::Display for ClassicProgram {
    /// The program as `tcpdump -d` prints it, by libpcap's own formatter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, insn) in self.insns.iter().enumerate() {
            // SAFETY: `insn` is a `struct bpf_insn` (same layout, `#[repr(C)]`); bpf_image
            // returns a NUL-terminated static buffer, copied before the next call. Not
            // reentrant: only ever called here, by one thread at a time (`&self` is not
            // shared across the CLI's threads while it prints).
            let line = unsafe { CStr::from_ptr(bpf_image(insn, index as libc::c_int)) };
            writeln!(f, "{}", line.to_string_lossy())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_as_tcpdump_shows_it() {
        let program = ClassicProgram::compile("udp dst port 7777", 262_144).expect("compiles");
        let listing = program.to_string();
        assert!(listing.starts_with("(000) ldh      [12]\n"), "{listing}");
        assert!(listing.contains("jeq      #0x1e61"), "{listing}");
        assert!(listing.contains("ret      #262144\n"), "{listing}");
        assert!(listing.ends_with("ret      #0\n"), "{listing}");
        assert_eq!(program.insns.last().map(|insn| insn.k), Some(0));
    }

    #[test]
    fn a_bad_expression_gets_libpcaps_message() {
        let error = ClassicProgram::compile("udp port eleventy", 100).expect_err("refused");
        assert!(error.message.contains("eleventy"), "{error}");
        assert!(error.to_string().starts_with("bad capture expression"));
        let error = ClassicProgram::compile("tcp[0] << 40 = 0", 100).expect_err("refused");
        assert!(error.message.contains("shift"), "{error}");
    }
}
