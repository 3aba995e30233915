//! eBPF instructions as the kernel reads them (`struct bpf_insn`), built one by one, and
//! shown one per line as `netxdp capture -dd` prints them.
//!
//! Only what [`super::translate`] emits is named here; the listing shows any instruction.

use std::fmt;

/// A register, r0 to r10.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(pub u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const R8: Reg = Reg(8);
pub const R9: Reg = Reg(9);
/// The frame pointer, read-only.
pub const FP: Reg = Reg(10);

// Instruction classes.
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;

// Sizes and modes of loads and stores.
/// A load or store of 1, 2, 4 or 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    Dw = 0x18,
}
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;

/// The source operand: the immediate (K) or a register (X).
const K: u8 = 0x00;
const X: u8 = 0x08;

/// Arithmetic operations (the high four bits of an ALU opcode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    Add = 0x00,
    Sub = 0x10,
    Mul = 0x20,
    Div = 0x30,
    Or = 0x40,
    And = 0x50,
    Lsh = 0x60,
    Rsh = 0x70,
    Neg = 0x80,
    Mod = 0x90,
    Xor = 0xa0,
    Mov = 0xb0,
}
const END: u8 = 0xd0;
/// BPF_TO_BE: from the host's order to big endian.
const TO_BE: u8 = 0x08;

/// Jump conditions (the high four bits of a JMP opcode), unsigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ge = 0x30,
    Set = 0x40,
    Ne = 0x50,
    Lt = 0xa0,
    Le = 0xb0,
}

impl Cond {
    /// The condition that holds when this one does not, if eBPF has it (JSET has none).
    pub fn inverse(self) -> Option<Cond> {
        match self {
            Cond::Eq => Some(Cond::Ne),
            Cond::Ne => Some(Cond::Eq),
            Cond::Gt => Some(Cond::Le),
            Cond::Le => Some(Cond::Gt),
            Cond::Ge => Some(Cond::Lt),
            Cond::Lt => Some(Cond::Ge),
            Cond::Set => None,
        }
    }
}
const JA: u8 = 0x00;
const CALL: u8 = 0x80;
const JCOND: u8 = 0xe0;
const EXIT: u8 = 0x90;

/// `src_reg` of a 64-bit immediate load that names a map by file descriptor.
pub const PSEUDO_MAP_FD: u8 = 1;

/// Helper function numbers (`enum bpf_func_id`).
pub const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
pub const HELPER_TAIL_CALL: i32 = 12;

/// One `struct bpf_insn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst: dst.0,
            src: src.0,
            off,
            imm,
        }
    }

    /// `dst = src`, all 64 bits.
    pub const fn mov64(dst: Reg, src: Reg) -> Insn {
        Insn::new(ALU64 | AluOp::Mov as u8 | X, dst, src, 0, 0)
    }

    /// `dst op= imm` on 64 bits (`imm` sign-extended).
    pub const fn alu64_imm(op: AluOp, dst: Reg, imm: i32) -> Insn {
        Insn::new(ALU64 | op as u8 | K, dst, R0, 0, imm)
    }

    /// `dst op= src` on 64 bits.
    pub const fn alu64_reg(op: AluOp, dst: Reg, src: Reg) -> Insn {
        Insn::new(ALU64 | op as u8 | X, dst, src, 0, 0)
    }

    /// `dst op= imm` on the low 32 bits, the high 32 cleared.
    pub const fn alu32_imm(op: AluOp, dst: Reg, imm: u32) -> Insn {
        Insn::new(ALU | op as u8 | K, dst, R0, 0, imm as i32)
    }

    /// `dst op= src` on the low 32 bits, the high 32 cleared.
    pub const fn alu32_reg(op: AluOp, dst: Reg, src: Reg) -> Insn {
        Insn::new(ALU | op as u8 | X, dst, src, 0, 0)
    }

    /// `dst = imm` as an unsigned 32-bit value.
    pub const fn mov32_imm(dst: Reg, imm: u32) -> Insn {
        Insn::alu32_imm(AluOp::Mov, dst, imm)
    }

    /// `dst`'s low `bits` (16 or 32) from host (little-endian) to network order, zero-extended.
    pub const fn to_big_endian(dst: Reg, bits: i32) -> Insn {
        Insn::new(ALU | END | TO_BE, dst, R0, 0, bits)
    }

    /// `dst = *(size *)(src + off)`.
    pub const fn load(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(LDX | MEM | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub const fn store(size: Size, dst: Reg, off: i16, src: Reg) -> Insn {
        Insn::new(STX | MEM | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub const fn store_imm(size: Size, dst: Reg, off: i16, imm: i32) -> Insn {
        Insn::new(ST | MEM | size as u8, dst, R0, off, imm)
    }

    /// `dst = map` (by file descriptor): two instruction slots.
    pub const fn load_map_fd(dst: Reg, fd: i32) -> [Insn; 2] {
        [
            Insn {
                code: LD | IMM | Size::Dw as u8,
                dst: dst.0,
                src: PSEUDO_MAP_FD,
                off: 0,
                imm: fd,
            },
            Insn::new(0, R0, R0, 0, 0),
        ]
    }

    /// `goto +off`.
    pub const fn ja(off: i16) -> Insn {
        Insn::new(JMP | JA, R0, R0, off, 0)
    }

    /// `if (u64) dst cond imm goto +off` (`imm` sign-extended).
    pub const fn jmp64_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(JMP | cond as u8 | K, dst, R0, off, imm)
    }

    /// `if (u64) dst cond (u64) src goto +off`.
    pub const fn jmp64_reg(cond: Cond, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(JMP | cond as u8 | X, dst, src, off, 0)
    }

    /// `if (u32) dst cond (u32) imm goto +off`.
    pub const fn jmp32_imm(cond: Cond, dst: Reg, imm: u32, off: i16) -> Insn {
        Insn::new(JMP32 | cond as u8 | K, dst, R0, off, imm as i32)
    }

    /// `if (u32) dst cond (u32) src goto +off`.
    pub const fn jmp32_reg(cond: Cond, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(JMP32 | cond as u8 | X, dst, src, off, 0)
    }

    /// `may_goto +off`: jumps once the kernel's budget of loop rounds (millions) is spent,
    /// else falls through. What lets the verifier accept a loop whose bound it cannot see.
    pub const fn may_goto(off: i16) -> Insn {
        Insn::new(JMP | JCOND, R0, R0, off, 0)
    }

    pub const fn call(helper: i32) -> Insn {
        Insn::new(JMP | CALL, R0, R0, 0, helper)
    }

    pub const fn exit() -> Insn {
        Insn::new(JMP | EXIT, R0, R0, 0, 0)
    }

    /// Whether this is a jump with an offset to fix (not a call or exit).
    pub fn is_jump(&self) -> bool {
        let class = self.code & 0x07;
        let op = self.code & 0xf0;
        (class == JMP || class == JMP32) && op != CALL && op != EXIT
    }

    /// Whether this is an unconditional jump.
    pub fn is_goto(&self) -> bool {
        self.code == JMP | JA
    }

    pub fn is_exit(&self) -> bool {
        self.code == JMP | EXIT
    }

    /// Whether this is the first of a 64-bit immediate load's two slots.
    pub fn is_wide(&self) -> bool {
        self.code == LD | IMM | Size::Dw as u8
    }

    /// The instruction as the kernel reads it: 8 bytes, little-endian.
    pub fn encode(&self) -> [u8; 8] {
        let mut bytes = [0; 8];
        bytes[0] = self.code;
        bytes[1] = (self.dst & 0x0f) | (self.src << 4);
        bytes[2..4].copy_from_slice(&self.off.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.imm.to_le_bytes());
        bytes
    }
}

/// A program's instructions, one per line, numbered as the kernel counts them (a 64-bit
/// immediate load takes two), in the style of the kernel's own verifier log. Maps are shown
/// by name where `map_names` gives their file descriptor's.
pub struct Listing<'a> {
    pub insns: &'a [Insn],
    pub map_names: &'a [(i32, &'a str)],
}

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut index = 0;
        while let Some(insn) = self.insns.get(index) {
            write!(f, "({index:03}) ")?;
            match self.map_names.iter().find(|(fd, _)| *fd == insn.imm) {
                Some((_, name)) if insn.src == PSEUDO_MAP_FD => {
                    writeln!(f, "r{} = map[{name}]", insn.dst)?
                }
                _ => writeln!(f, "{}", Shown(insn, self.insns.get(index + 1)))?,
            }
            index += if insn.is_wide() { 2 } else { 1 };
        }
        Ok(())
    }
}

struct Shown<'a>(&'a Insn, Option<&'a Insn>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let insn = self.0;
        let class = insn.code & 0x07;
        let dst = insn.dst;
        let src = insn.src;
        let off = insn.off;
        let imm = insn.imm;
        let width = |size: u8| match size {
            0x10 => "u8",
            0x08 => "u16",
            0x00 => "u32",
            _ => "u64",
        };
        match class {
            ALU | ALU64 => {
                let (reg, unsigned) = if class == ALU64 {
                    ("r", imm.to_string())
                } else {
                    ("w", (imm as u32).to_string())
                };
                let op = insn.code & 0xf0;
                let operand = if insn.code & X != 0 {
                    format!("{reg}{src}")
                } else {
                    unsigned
                };
                match op {
                    END => write!(f, "r{dst} = be{imm} r{dst}"),
                    0x80 => write!(f, "{reg}{dst} = -{reg}{dst}"),
                    0xb0 => write!(f, "{reg}{dst} = {operand}"),
                    _ => {
                        let symbol = match op {
                            0x00 => "+",
                            0x10 => "-",
                            0x20 => "*",
                            0x30 => "/",
                            0x40 => "|",
                            0x50 => "&",
                            0x60 => "<<",
                            0x70 => ">>",
                            0x90 => "%",
                            0xa0 => "^",
                            _ => "?",
                        };
                        write!(f, "{reg}{dst} {symbol}= {operand}")
                    }
                }
            }
            LDX => write!(
                f,
                "r{dst} = *({} *)(r{src} {off:+})",
                width(insn.code & 0x18)
            ),
            STX => write!(
                f,
                "*({} *)(r{dst} {off:+}) = r{src}",
                width(insn.code & 0x18)
            ),
            ST => write!(
                f,
                "*({} *)(r{dst} {off:+}) = {imm}",
                width(insn.code & 0x18)
            ),
            LD if src == PSEUDO_MAP_FD => write!(f, "r{dst} = map[fd {imm}]"),
            LD => {
                let high = self.1.map_or(0, |next| next.imm as u32 as u64);
                write!(f, "r{dst} = {:#x}", (high << 32) | imm as u32 as u64)
            }
            JMP | JMP32 => {
                let op = insn.code & 0xf0;
                let target = |f: &mut fmt::Formatter<'_>| write!(f, "goto pc{off:+}");
                match op {
                    CALL => match imm {
                        HELPER_MAP_LOOKUP_ELEM => write!(f, "call bpf_map_lookup_elem"),
                        HELPER_TAIL_CALL => write!(f, "call bpf_tail_call"),
                        other => write!(f, "call helper {other}"),
                    },
                    EXIT => write!(f, "exit"),
                    JCOND => write!(f, "may_goto pc{off:+}"),
                    JA => target(f),
                    _ => {
                        let reg = if class == JMP32 { "w" } else { "r" };
                        let symbol = match op {
                            0x10 => "==",
                            0x20 => ">",
                            0x30 => ">=",
                            0x40 => "&",
                            0x50 => "!=",
                            0xa0 => "<",
                            0xb0 => "<=",
                            _ => "?",
                        };
                        let operand = if insn.code & X != 0 {
                            format!("{reg}{src}")
                        } else if class == JMP32 {
                            (imm as u32).to_string()
                        } else {
                            imm.to_string()
                        };
                        write!(f, "if {reg}{dst} {symbol} {operand} ")?;
                        target(f)
                    }
                }
            }
            _ => write!(f, "code {:#04x}", insn.code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_the_kernel_reads_it() {
        // r2 = *(u32 *)(r1 + 4): code 0x61, dst 2, src 1.
        assert_eq!(
            Insn::load(Size::W, R2, R1, 4).encode(),
            [0x61, 0x12, 4, 0, 0, 0, 0, 0]
        );
        // if w6 == 0x800 goto +3: JMP32 | JEQ | K.
        assert_eq!(
            Insn::jmp32_imm(Cond::Eq, R6, 0x800, 3).encode(),
            [0x16, 0x06, 3, 0, 0, 8, 0, 0]
        );
        let [first, second] = Insn::load_map_fd(R2, 7);
        assert_eq!(first.encode(), [0x18, 0x12, 0, 0, 7, 0, 0, 0]);
        assert_eq!(second.encode(), [0; 8]);
    }

    #[test]
    fn lists_one_instruction_per_line_counting_wide_loads_twice() {
        let [map, map_high] = Insn::load_map_fd(R2, 9);
        let program = [
            Insn::load(Size::H, R6, R8, 12),
            Insn::to_big_endian(R6, 16),
            map,
            map_high,
            Insn::jmp32_imm(Cond::Gt, R6, u32::MAX, -2),
            Insn::exit(),
        ];
        let listing = Listing {
            insns: &program,
            map_names: &[],
        };
        assert_eq!(
            listing.to_string(),
            "(000) r6 = *(u16 *)(r8 +12)\n\
             (001) r6 = be16 r6\n\
             (002) r2 = map[fd 9]\n\
             (004) if w6 > 4294967295 goto pc-2\n\
             (005) exit\n"
        );
        let named = Listing {
            insns: &program[2..4],
            map_names: &[(9, "CAPTURE_PROGS")],
        };
        assert_eq!(named.to_string(), "(000) r2 = map[CAPTURE_PROGS]\n");
    }
}
