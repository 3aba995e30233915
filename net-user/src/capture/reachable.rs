//! Removing what no path of an eBPF program reaches, which the verifier refuses.

use super::ebpf::Insn;

/// `insns` without the instructions no path reaches, which the verifier refuses: a `ret`
/// that every jump to it skips (they go to the match or the miss directly), the end of a
/// program that never falls off it, the match of an expression that never matches.
pub fn without_unreachable(insns: Vec<Insn>) -> Vec<Insn> {
    let target = |at: usize, insn: &Insn| (at as isize + 1 + insn.off as isize) as usize;
    let mut reached = vec![false; insns.len()];
    let mut pending = vec![0];
    while let Some(at) = pending.pop() {
        if at >= insns.len() || reached[at] {
            continue;
        }
        reached[at] = true;
        let insn = &insns[at];
        if insn.is_wide() {
            reached[at + 1] = true;
            pending.push(at + 2);
        } else if insn.is_jump() {
            pending.push(target(at, insn));
            if !insn.is_goto() {
                pending.push(at + 1);
            }
        } else if !insn.is_exit() {
            pending.push(at + 1);
        }
    }
    // Where each kept instruction goes.
    let mut moved = vec![0; insns.len() + 1];
    let mut kept = 0;
    for (at, &is_reached) in reached.iter().enumerate() {
        moved[at] = kept;
        kept += usize::from(is_reached);
    }
    insns
        .iter()
        .enumerate()
        .filter(|&(at, _)| reached[at])
        .map(|(at, insn)| {
            let mut insn = *insn;
            if insn.is_jump() {
                insn.off = (moved[target(at, &insn)] as isize - moved[at] as isize - 1) as i16;
            }
            insn
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::ebpf::{Cond, R0};

    #[test]
    fn drops_what_no_path_reaches_and_moves_the_jumps_over_it() {
        let program = [
            Insn::jmp64_imm(Cond::Eq, R0, 0, 2), // to the second exit
            Insn::exit(),
            Insn::mov32_imm(R0, 9), // unreachable: after an exit, jumped over
            Insn::exit(),
            Insn::ja(-2), // unreachable
        ];
        let kept = without_unreachable(program.to_vec());
        assert_eq!(
            kept,
            [
                Insn::jmp64_imm(Cond::Eq, R0, 0, 1),
                Insn::exit(),
                Insn::exit()
            ]
        );
    }
}
