//! Classic BPF to eBPF: a capture expression as an XDP program the verifier accepts.
//!
//! The program is tail-called by netxdp's capture path for each packet the capture selects
//! by action, rule and reason. It evaluates the expression on the frame as received; on a
//! match it tail-calls netxdp's copy program (slot [`COPY_SLOT`] of the capture's program
//! array), which copies the frame out and returns the packet's action. On no match, or if
//! that tail call fails, it returns the action itself, read from the per-CPU decision the
//! capture path stashed. The frame's verdict is never the expression's to change.
//!
//! Classic BPF's semantics are libpcap's (`pcap_offline_filter`), which the differential
//! tests hold the kernel to:
//! - a load past the frame's end rejects the packet (the program returns 0);
//! - A and X are 32-bit, unsigned; division or modulus by X = 0 rejects the packet;
//! - a shift by X of 32 or more leaves 0;
//! - scratch memory M[0..16] starts zeroed;
//! - `len` is the frame's length (XDP's frames are whole: wire length = captured length);
//! - a backward jump (libpcap emits them for `protochain` only, looping over extension
//!   headers) is taken at most [`EXPRESSION_LOOP_BUDGET`] times, then the packet is rejected:
//!   libpcap loops without a bound, and forever on some AH headers (its 1.10 computes the
//!   next AH's offset from the IP header, not from the AH).
//!
//! Registers: r1 holds the context throughout (the final tail call needs it), r6 is A, r7 is
//! X, r8 and r9 the frame's start and end, r5 the loop budget (in a program with a loop); r0
//! and r2-r4 are scratch.

#[cfg(doc)]
use net_common::capture::EXPRESSION_LOOP_BUDGET;
use net_common::capture::{COPY_SLOT, DECISION_ACTION_OFFSET, DECISION_LOOP_BUDGET_OFFSET};

use super::{
    classic::{ClassicInsn, RET_K},
    ebpf::{
        AluOp, Cond, FP, HELPER_MAP_LOOKUP_ELEM, HELPER_TAIL_CALL, Insn, R0, R1, R2, R3, R4, R5,
        R6, R7, R8, R9, Reg, Size,
    },
};

/// The file descriptors the program refers to.
#[derive(Clone, Copy, Debug)]
pub struct Maps {
    /// The capture's program array, where the copy program is.
    pub programs: i32,
    /// The per-CPU decision the capture path stashes ([`net_common::capture::Decision`]).
    pub decision: i32,
}

/// Why a classic program could not be translated.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("instruction {index}: unknown opcode {code:#06x}")]
    UnknownOpcode { index: usize, code: u16 },
    #[error("instruction {index}: scratch memory word {k} does not exist (M[0] to M[15])")]
    NoSuchMemory { index: usize, k: u32 },
    #[error("instruction {index}: division by the constant 0")]
    DivisionByZero { index: usize },
    #[error("instruction {index}: shift by {k}, more than 31 bits")]
    ShiftTooFar { index: usize, k: u32 },
    #[error("instruction {index}: jump past the program's end")]
    JumpOutside { index: usize },
    #[error("the expression needs {0} eBPF instructions; jumps reach 32,767")]
    TooLong(usize),
}

/// XDP_PASS: what the program returns should the stashed decision be missing, which the
/// capture path always writes first.
const XDP_PASS: u32 = 2;

/// Scratch memory M[0..16], 4 bytes each, at the top of the stack.
const MEMORY_WORDS: u32 = 16;
const MEMORY_OFFSET: i16 = -64;
/// The stack slot of the decision map's key (0).
const KEY_OFFSET: i16 = -72;

/// Largest end offset of a load the verifier lets a packet pointer reach (MAX_PACKET_OFF).
const MAX_PACKET_OFFSET: u64 = 0xffff;

/// Registers of the classic machine and of the frame.
const A: Reg = R6;
const X: Reg = R7;
const DATA: Reg = R8;
const DATA_END: Reg = R9;
/// Backward jumps left before the packet is rejected: [`EXPRESSION_LOOP_BUDGET`], read from
/// the stashed decision so that the verifier does not know it.
const LOOP_BUDGET: Reg = R5;

/// Where a jump goes: to a classic instruction, or out.
#[derive(Clone, Copy, Debug)]
enum Target {
    Classic(usize),
    Match,
    Miss,
}

struct Emitter<'a> {
    /// A jump may go to one of these, or just past the last.
    classic: &'a [ClassicInsn],
    insns: Vec<Insn>,
    /// The first eBPF instruction of each classic instruction, and of the program's end.
    starts: Vec<usize>,
    fixups: Vec<(usize, Target)>,
}

impl Emitter<'_> {
    fn push(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    /// Pushes `jump` (its offset left 0), to go to `target`.
    fn jump(&mut self, jump: Insn, target: Target) {
        self.fixups.push((self.insns.len(), target));
        self.insns.push(jump);
    }

    fn goto(&mut self, target: Target) {
        self.jump(Insn::ja(0), target);
    }

    /// The classic instruction `offset` past the one after `index`, which must exist; a
    /// `ret #k` there is the match or the miss it returns, jumped to directly.
    fn classic(&self, index: usize, offset: isize) -> Result<Target, TranslateError> {
        let target = (index as isize + 1 + offset).try_into();
        let target: usize = target.map_err(|_| TranslateError::JumpOutside { index })?;
        match self.classic.get(target) {
            Some(ret) if ret.code == RET_K => Ok(if ret.k != 0 {
                Target::Match
            } else {
                Target::Miss
            }),
            Some(_) => Ok(Target::Classic(target)),
            None if target == self.classic.len() => Ok(Target::Miss),
            None => Err(TranslateError::JumpOutside { index }),
        }
    }

    /// `dst = the n bytes at offset k`, in network order; a load past the end rejects.
    fn load_absolute(&mut self, dst: Reg, size: Size, k: u32) {
        let Some(end) = self.load_end(size, k) else {
            return;
        };
        self.push(Insn::mov64(R2, DATA));
        self.push(Insn::alu64_imm(AluOp::Add, R2, end as i32));
        self.load_ending_at(dst, size, R2);
    }

    /// `dst = the n bytes at offset X + k`, in network order; a load past the end rejects.
    fn load_indirect(&mut self, dst: Reg, size: Size, k: u32) {
        let Some(end) = self.load_end(size, k) else {
            return;
        };
        // X bounded first, so that the verifier can add it to a packet pointer.
        self.push(Insn::mov64(R2, X));
        self.jump(
            Insn::jmp64_imm(Cond::Gt, R2, (MAX_PACKET_OFFSET - end) as i32, 0),
            Target::Miss,
        );
        self.push(Insn::mov64(R3, DATA));
        self.push(Insn::alu64_reg(AluOp::Add, R3, R2));
        self.push(Insn::mov64(R4, R3));
        self.push(Insn::alu64_imm(AluOp::Add, R4, end as i32));
        self.load_ending_at(dst, size, R4);
    }

    /// Where a load of `size` at offset k (from the frame or from X) ends past its start;
    /// `None`, its rejection emitted, past what a packet pointer may reach: no frame XDP sees
    /// is that long.
    fn load_end(&mut self, size: Size, k: u32) -> Option<u64> {
        let end = u64::from(k) + bytes(size) as u64;
        if end > MAX_PACKET_OFFSET {
            self.goto(Target::Miss);
            return None;
        }
        Some(end)
    }

    /// `dst = the size bytes that end at the packet pointer in end`, in network order, the
    /// packet rejected if they are not in the frame.
    fn load_ending_at(&mut self, dst: Reg, size: Size, end: Reg) {
        self.jump(Insn::jmp64_reg(Cond::Gt, end, DATA_END, 0), Target::Miss);
        self.push(Insn::load(size, dst, end, -(bytes(size) as i16)));
        match size {
            Size::H => self.push(Insn::to_big_endian(dst, 16)),
            Size::W => self.push(Insn::to_big_endian(dst, 32)),
            Size::B | Size::Dw => {}
        }
    }

    /// `dst = the frame's length`.
    fn load_length(&mut self, dst: Reg) {
        self.push(Insn::mov64(R0, DATA_END));
        self.push(Insn::alu64_reg(AluOp::Sub, R0, DATA));
        self.push(Insn::alu32_reg(AluOp::Mov, dst, R0));
    }

    /// `if A cond operand goto jt else goto jf`, for the classic instruction `index`; the
    /// operand is X or the instruction's k. A branch to the next instruction falls through.
    fn branch(
        &mut self,
        index: usize,
        cond: Cond,
        insn: &ClassicInsn,
    ) -> Result<(), TranslateError> {
        let from_x = insn.code & 0x08 != 0;
        let jump = |cond: Cond| {
            if from_x {
                Insn::jmp32_reg(cond, A, X, 0)
            } else {
                Insn::jmp32_imm(cond, A, insn.k, 0)
            }
        };
        let falls =
            |offset: u8, target: Target| offset == 0 && matches!(target, Target::Classic(_));
        let taken = self.classic(index, isize::from(insn.jt))?;
        let not_taken = self.classic(index, isize::from(insn.jf))?;
        match (
            falls(insn.jt, taken),
            falls(insn.jf, not_taken),
            cond.inverse(),
        ) {
            (_, true, _) => self.jump(jump(cond), taken),
            (true, false, Some(inverse)) => self.jump(jump(inverse), not_taken),
            _ => {
                self.jump(jump(cond), taken);
                self.goto(not_taken);
            }
        }
        Ok(())
    }

    fn translate(&mut self, index: usize, insn: &ClassicInsn) -> Result<(), TranslateError> {
        let k = insn.k;
        let unknown = TranslateError::UnknownOpcode {
            index,
            code: insn.code,
        };
        let memory = |k: u32| {
            if k < MEMORY_WORDS {
                Ok(MEMORY_OFFSET + 4 * k as i16)
            } else {
                Err(TranslateError::NoSuchMemory { index, k })
            }
        };
        let code = insn.code;
        match code & 0x07 {
            // LD and LDX.
            class @ (0x00 | 0x01) => {
                let dst = if class == 0x00 { A } else { X };
                let size = match code & 0x18 {
                    0x00 => Size::W,
                    0x08 => Size::H,
                    0x10 => Size::B,
                    _ => return Err(unknown),
                };
                match (class, code & 0xe0) {
                    (_, 0x00) => self.push(Insn::mov32_imm(dst, k)),
                    (0x00, 0x20) => self.load_absolute(A, size, k),
                    (0x00, 0x40) => self.load_indirect(A, size, k),
                    (_, 0x60) => self.push(Insn::load(Size::W, dst, FP, memory(k)?)),
                    (_, 0x80) => self.load_length(dst),
                    // ldxb 4*([k]&0xf): the IPv4 header's length.
                    (0x01, 0xa0) if size == Size::B => {
                        self.load_absolute(X, Size::B, k);
                        self.push(Insn::alu32_imm(AluOp::And, X, 0x0f));
                        self.push(Insn::alu32_imm(AluOp::Lsh, X, 2));
                    }
                    _ => return Err(unknown),
                }
            }
            // ST and STX.
            class @ (0x02 | 0x03) => {
                let src = if class == 0x02 { A } else { X };
                self.push(Insn::store(Size::W, FP, memory(k)?, src));
            }
            // ALU.
            0x04 => self.alu(index, insn)?,
            // JMP.
            0x05 => {
                let cond = match code & 0xf0 {
                    0x00 => {
                        // libpcap sign-extends: `ip6 protochain` loops back.
                        let offset = k as i32 as isize;
                        let target = self.classic(index, offset)?;
                        if offset < 0 {
                            // A loop, bounded at run time by the budget. For the verifier,
                            // may_goto bounds it, and X, an offset into the frame, is below
                            // 64 KiB: so told, it finds the rounds' states alike at once.
                            self.push(Insn::alu32_imm(AluOp::And, X, 0xffff));
                            self.push(Insn::alu32_imm(AluOp::Sub, LOOP_BUDGET, 1));
                            self.jump(Insn::jmp32_imm(Cond::Eq, LOOP_BUDGET, 0, 0), Target::Miss);
                            self.push(Insn::may_goto(1));
                            self.goto(target);
                            self.goto(Target::Miss);
                            return Ok(());
                        }
                        self.goto(target);
                        return Ok(());
                    }
                    0x10 => Cond::Eq,
                    0x20 => Cond::Gt,
                    0x30 => Cond::Ge,
                    0x40 => Cond::Set,
                    _ => return Err(unknown),
                };
                self.branch(index, cond, insn)?;
            }
            // RET.
            0x06 => match code & 0x18 {
                0x00 => self.goto(if k != 0 { Target::Match } else { Target::Miss }),
                rval @ (0x08 | 0x10) => {
                    let reg = if rval == 0x10 { A } else { X };
                    self.jump(Insn::jmp32_imm(Cond::Ne, reg, 0, 0), Target::Match);
                    self.goto(Target::Miss);
                }
                _ => return Err(unknown),
            },
            // MISC: TAX, TXA.
            _ => match code & 0xf8 {
                0x00 => self.push(Insn::alu32_reg(AluOp::Mov, X, A)),
                0x80 => self.push(Insn::alu32_reg(AluOp::Mov, A, X)),
                _ => return Err(unknown),
            },
        }
        Ok(())
    }

    fn alu(&mut self, index: usize, insn: &ClassicInsn) -> Result<(), TranslateError> {
        let (code, k) = (insn.code, insn.k);
        let from_x = code & 0x08 != 0;
        let op = match code & 0xf0 {
            0x00 => AluOp::Add,
            0x10 => AluOp::Sub,
            0x20 => AluOp::Mul,
            0x30 => AluOp::Div,
            0x40 => AluOp::Or,
            0x50 => AluOp::And,
            0x60 => AluOp::Lsh,
            0x70 => AluOp::Rsh,
            0x80 => {
                self.push(Insn::alu32_imm(AluOp::Neg, A, 0));
                return Ok(());
            }
            0x90 => AluOp::Mod,
            0xa0 => AluOp::Xor,
            _ => {
                return Err(TranslateError::UnknownOpcode { index, code });
            }
        };
        if !from_x {
            match op {
                AluOp::Div | AluOp::Mod if k == 0 => {
                    return Err(TranslateError::DivisionByZero { index });
                }
                AluOp::Lsh | AluOp::Rsh if k > 31 => {
                    return Err(TranslateError::ShiftTooFar { index, k });
                }
                _ => {}
            }
            self.push(Insn::alu32_imm(op, A, k));
            return Ok(());
        }
        match op {
            AluOp::Div | AluOp::Mod => {
                self.jump(Insn::jmp32_imm(Cond::Eq, X, 0, 0), Target::Miss);
                self.push(Insn::alu32_reg(op, A, X));
            }
            AluOp::Lsh | AluOp::Rsh => {
                // eBPF takes the shift count modulo 32; classic BPF's 32 or more leaves 0.
                self.push(Insn::jmp32_imm(Cond::Gt, X, 31, 2));
                self.push(Insn::alu32_reg(op, A, X));
                self.push(Insn::ja(1));
                self.push(Insn::mov32_imm(A, 0));
            }
            _ => self.push(Insn::alu32_reg(op, A, X)),
        }
        Ok(())
    }

    /// `LOOP_BUDGET = the stashed decision's loop budget`, the context kept in r1.
    fn load_loop_budget(&mut self, maps: Maps) {
        self.push(Insn::mov64(A, R1));
        self.lookup_decision(maps);
        self.push(Insn::mov32_imm(LOOP_BUDGET, 0));
        self.push(Insn::jmp64_imm(Cond::Eq, R0, 0, 1));
        self.push(Insn::load(
            Size::W,
            LOOP_BUDGET,
            R0,
            DECISION_LOOP_BUDGET_OFFSET as i16,
        ));
        // One more: the budget counts down to 0 before the jump it would have paid for.
        self.push(Insn::alu32_imm(AluOp::Add, LOOP_BUDGET, 1));
        self.push(Insn::mov64(R1, A));
    }

    /// `r0 = this CPU's stashed decision` (or null), r1-r5 clobbered by the call.
    fn lookup_decision(&mut self, maps: Maps) {
        self.push(Insn::store_imm(Size::W, FP, KEY_OFFSET, 0));
        let [decision, decision_high] = Insn::load_map_fd(R1, maps.decision);
        self.push(decision);
        self.push(decision_high);
        self.push(Insn::mov64(R2, FP));
        self.push(Insn::alu64_imm(AluOp::Add, R2, i32::from(KEY_OFFSET)));
        self.push(Insn::call(HELPER_MAP_LOOKUP_ELEM));
    }

    /// On a match, the copy program; then, or on no match, the stashed action.
    fn epilogue(&mut self, maps: Maps) -> (usize, usize) {
        let matched = self.insns.len();
        let [programs, programs_high] = Insn::load_map_fd(R2, maps.programs);
        self.push(programs);
        self.push(programs_high);
        self.push(Insn::mov32_imm(R3, COPY_SLOT));
        self.push(Insn::call(HELPER_TAIL_CALL));
        let missed = self.insns.len();
        self.lookup_decision(maps);
        self.push(Insn::jmp64_imm(Cond::Eq, R0, 0, 2));
        self.push(Insn::load(Size::W, R0, R0, DECISION_ACTION_OFFSET as i16));
        self.push(Insn::exit());
        self.push(Insn::mov32_imm(R0, XDP_PASS));
        self.push(Insn::exit());
        (matched, missed)
    }
}

fn bytes(size: Size) -> usize {
    match size {
        Size::B => 1,
        Size::H => 2,
        Size::W => 4,
        Size::Dw => 8,
    }
}

/// Translates `classic` into an XDP program that refers to `maps`.
pub fn translate(classic: &[ClassicInsn], maps: Maps) -> Result<Vec<Insn>, TranslateError> {
    let mut out = Emitter {
        classic,
        insns: Vec::new(),
        starts: Vec::with_capacity(classic.len() + 1),
        fixups: Vec::new(),
    };
    if classic
        .iter()
        .any(|insn| insn.code == 0x05 && (insn.k as i32) < 0)
    {
        out.load_loop_budget(maps);
    }
    // XDP's context: the frame's start and end as 32-bit fields, which the verifier turns
    // into packet pointers.
    out.push(Insn::load(Size::W, DATA, R1, 0));
    out.push(Insn::load(Size::W, DATA_END, R1, 4));
    out.push(Insn::mov32_imm(A, 0));
    out.push(Insn::mov32_imm(X, 0));
    let uses_memory = classic
        .iter()
        .any(|insn| matches!(insn.code & 0x07, 0x00 | 0x01) && insn.code & 0xe0 == 0x60);
    if uses_memory {
        for word in 0..MEMORY_WORDS as i16 / 2 {
            out.push(Insn::store_imm(Size::Dw, FP, MEMORY_OFFSET + 8 * word, 0));
        }
    }
    for (index, insn) in classic.iter().enumerate() {
        out.starts.push(out.insns.len());
        out.translate(index, insn)?;
    }
    // Falling off the end (no ret) rejects, as a jump to the end does.
    let end = out.insns.len();
    out.starts.push(end);
    out.goto(Target::Miss);
    let (matched, missed) = out.epilogue(maps);
    if out.insns.len() > i16::MAX as usize {
        return Err(TranslateError::TooLong(out.insns.len()));
    }
    for &(at, target) in &out.fixups {
        let to = match target {
            Target::Classic(index) => out.starts[index],
            Target::Match => matched,
            Target::Miss => missed,
        };
        out.insns[at].off = (to as isize - at as isize - 1) as i16;
    }
    Ok(super::reachable::without_unreachable(out.insns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: Maps = Maps {
        programs: 5,
        decision: 6,
    };

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> ClassicInsn {
        ClassicInsn { code, jt, jf, k }
    }

    #[test]
    fn jumps_land_on_their_classic_targets() {
        // ldh [12]; jeq #0x800 jt 1 jf 2; ret #1; ret #0
        let program = [
            insn(0x28, 0, 0, 12),
            insn(0x15, 0, 1, 0x800),
            insn(0x06, 0, 0, 1),
            insn(0x06, 0, 0, 0),
        ];
        let out = translate(&program, MAPS).expect("translates");
        for (at, jump) in out.iter().enumerate().filter(|(_, insn)| insn.is_jump()) {
            let to = at as isize + 1 + jump.off as isize;
            assert!(
                to > at as isize && (to as usize) < out.len(),
                "{at}: {jump:?}"
            );
        }
        let calls = out.iter().filter(|insn| insn.code == 0x85).count();
        assert_eq!(calls, 2, "the tail call and the decision's lookup");
    }

    #[test]
    fn a_backward_jump_is_bounded_by_the_budget_it_reads_and_by_may_goto() {
        // ldb [14]; jeq #6 jt 1 jf 0 (to the ja); ja -3 (back to 0); ret #1; ret #0
        let program = [
            insn(0x30, 0, 0, 14),
            insn(0x15, 1, 0, 6),
            insn(0x05, 0, 0, (-3i32) as u32),
            insn(0x06, 0, 0, 1),
            insn(0x06, 0, 0, 0),
        ];
        let out = translate(&program, MAPS).expect("translates");
        let may_gotos = out.iter().filter(|insn| insn.code == 0xe5).count();
        assert_eq!(may_gotos, 1);
        let budget_read = out.iter().any(|insn| {
            insn.code == 0x61 && insn.dst == 5 && insn.off == DECISION_LOOP_BUDGET_OFFSET as i16
        });
        assert!(budget_read, "the budget comes from the stashed decision");
        let backward = out
            .iter()
            .filter(|insn| insn.is_goto() && insn.off < 0)
            .count();
        assert_eq!(backward, 1);
    }

    #[test]
    fn refuses_what_libpcap_would_not_emit() {
        let refused = |program: &[ClassicInsn]| translate(program, MAPS).expect_err("refused");
        assert_eq!(
            refused(&[insn(0x34, 0, 0, 0), insn(0x16, 0, 0, 0)]),
            TranslateError::DivisionByZero { index: 0 }
        );
        assert_eq!(
            refused(&[insn(0x64, 0, 0, 32), insn(0x16, 0, 0, 0)]),
            TranslateError::ShiftTooFar { index: 0, k: 32 }
        );
        assert_eq!(
            refused(&[insn(0x60, 0, 0, 16)]),
            TranslateError::NoSuchMemory { index: 0, k: 16 }
        );
        assert_eq!(
            refused(&[insn(0x05, 0, 0, 5), insn(0x06, 0, 0, 0)]),
            TranslateError::JumpOutside { index: 0 }
        );
        assert_eq!(
            refused(&[insn(0xff, 0, 0, 0)]),
            TranslateError::UnknownOpcode {
                index: 0,
                code: 0xff
            }
        );
    }
}
