//! Test guests' MMIO accesses: the faulting x86-64 instruction decoded into
//! what the aarch64 syndrome gives a VMM on seL4 (width, direction,
//! register), and the load's value written back as the instruction would.
//!
//! Only the forms a compiler emits for volatile loads and stores are
//! accepted: `mov` between a register and memory, `mov` of an immediate to
//! memory, and `movzx` from memory. Anything else (string moves, read-modify-
//! write, segment overrides, vector loads) is [`DecodeError::Unsupported`],
//! and the supervisor stops that guest with a report naming the instruction.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// Longest x86 instruction.
pub const MAX_INSN: usize = 15;

/// A general-purpose register slice an access reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gpr {
    /// x86 register number: rax = 0, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8 … r15.
    pub num: u8,
    /// Size of the slice in bytes (1, 2, 4, 8).
    pub size: u8,
    /// The slice is bits 8..16 (ah, ch, dh, bh).
    pub high8: bool,
}

/// Where a store's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A register.
    Reg(Gpr),
    /// An immediate (already truncated to the access width).
    Imm(u64),
}

/// One decoded MMIO access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Instruction length (RIP advances by this much).
    pub len: u8,
    /// Access width in bytes.
    pub width: u8,
    /// Load or store.
    pub op: Op,
}

/// Load or store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A load into `dst`.
    Load {
        /// Destination register.
        dst: Gpr,
    },
    /// A store.
    Store {
        /// The stored value's source.
        src: Source,
    },
}

/// Why an instruction cannot be emulated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes are not a valid instruction.
    Invalid,
    /// A valid instruction this emulation does not perform (its text).
    Unsupported(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Invalid => write!(f, "undecodable instruction"),
            DecodeError::Unsupported(t) => write!(f, "unsupported MMIO instruction {t}"),
        }
    }
}

fn gpr(r: Register) -> Option<Gpr> {
    use Register::*;
    let (high8, full) = match r {
        AH => (true, RAX),
        CH => (true, RCX),
        DH => (true, RDX),
        BH => (true, RBX),
        _ => (false, r.full_register()),
    };
    let num = match full {
        RAX => 0,
        RCX => 1,
        RDX => 2,
        RBX => 3,
        RSP => 4,
        RBP => 5,
        RSI => 6,
        RDI => 7,
        R8 => 8,
        R9 => 9,
        R10 => 10,
        R11 => 11,
        R12 => 12,
        R13 => 13,
        R14 => 14,
        R15 => 15,
        _ => return Option::None,
    };
    let size = u8::try_from(r.size())
        .ok()
        .filter(|s| matches!(s, 1 | 2 | 4 | 8))?;
    Some(Gpr { num, size, high8 })
}

fn mask(width: u8) -> u64 {
    if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * u32::from(width))) - 1
    }
}

/// Decodes the instruction at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut d = Decoder::new(64, bytes, DecoderOptions::NONE);
    let ins: Instruction = d.decode();
    if ins.is_invalid() {
        return Err(DecodeError::Invalid);
    }
    let text = {
        let n = ins.len().min(bytes.len());
        let hex: Vec<String> = bytes[..n].iter().map(|b| format!("{b:02x}")).collect();
        format!("{:?} ({})", ins.mnemonic(), hex.join(" ")).to_lowercase()
    };
    let unsupported = || DecodeError::Unsupported(text.clone());
    let len = u8::try_from(ins.len()).map_err(|_| DecodeError::Invalid)?;
    // An fs/gs override addresses thread-local memory, never guest-physical.
    if ins.segment_prefix() != Register::None || ins.op_count() != 2 {
        return Err(unsupported());
    }
    let width = u8::try_from(ins.memory_size().size())
        .ok()
        .filter(|w| matches!(w, 1 | 2 | 4 | 8))
        .ok_or_else(unsupported)?;
    let (k0, k1) = (ins.op0_kind(), ins.op1_kind());
    let op = match (ins.mnemonic(), k0, k1) {
        (Mnemonic::Mov, OpKind::Register, OpKind::Memory)
        | (Mnemonic::Movzx, OpKind::Register, OpKind::Memory) => Op::Load {
            dst: gpr(ins.op0_register()).ok_or_else(unsupported)?,
        },
        (Mnemonic::Mov, OpKind::Memory, OpKind::Register) => Op::Store {
            src: Source::Reg(gpr(ins.op1_register()).ok_or_else(unsupported)?),
        },
        (
            Mnemonic::Mov,
            OpKind::Memory,
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate32to64,
        ) => Op::Store {
            src: Source::Imm(ins.immediate(1) & mask(width)),
        },
        _ => return Err(unsupported()),
    };
    Ok(Decoded { len, width, op })
}

fn slot(regs: &mut libc::user_regs_struct, num: u8) -> Option<&mut u64> {
    Some(match num {
        0 => &mut regs.rax,
        1 => &mut regs.rcx,
        2 => &mut regs.rdx,
        3 => &mut regs.rbx,
        4 => &mut regs.rsp,
        5 => &mut regs.rbp,
        6 => &mut regs.rsi,
        7 => &mut regs.rdi,
        8 => &mut regs.r8,
        9 => &mut regs.r9,
        10 => &mut regs.r10,
        11 => &mut regs.r11,
        12 => &mut regs.r12,
        13 => &mut regs.r13,
        14 => &mut regs.r14,
        15 => &mut regs.r15,
        _ => return None,
    })
}

/// The value a store writes (truncated to `width`).
pub fn store_value(regs: &libc::user_regs_struct, d: &Decoded) -> u64 {
    match d.op {
        Op::Store {
            src: Source::Imm(v),
        } => v & mask(d.width),
        Op::Store {
            src: Source::Reg(g),
        } => {
            let mut r = *regs;
            let full = slot(&mut r, g.num).map_or(0, |v| *v);
            let v = if g.high8 { full >> 8 } else { full };
            v & mask(d.width)
        }
        Op::Load { .. } => 0,
    }
}

/// Writes a load's `value` into its destination as the instruction does: a
/// 32-bit destination clears bits 32..64, 8- and 16-bit destinations keep
/// the rest of the register, `movzx` zero-extends to the destination size.
/// Then RIP moves past the instruction.
pub fn complete(regs: &mut libc::user_regs_struct, d: &Decoded, value: u64) {
    if let Op::Load { dst } = d.op {
        let v = value & mask(d.width);
        if let Some(r) = slot(regs, dst.num) {
            *r = match (dst.size, dst.high8) {
                (1, true) => (*r & !0xff00) | (v << 8),
                (1 | 2, _) => (*r & !mask(dst.size)) | v,
                _ => v,
            };
        }
    }
    regs.rip = regs.rip.wrapping_add(u64::from(d.len));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> libc::user_regs_struct {
        // SAFETY: user_regs_struct is plain data; all-zero is valid.
        let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        r.rax = 0x1111_2222_3333_4444;
        r.rcx = 0xaaaa_bbbb_cccc_dddd;
        r.r9 = 0x0102_0304_0506_0708;
        r.rip = 0x1000;
        r
    }

    #[test]
    fn loads_extend_and_merge_like_the_hardware() {
        // mov eax, [rcx+0x70]
        let d = decode(&[0x8b, 0x41, 0x70]).unwrap();
        assert_eq!((d.len, d.width), (3, 4));
        let mut r = regs();
        complete(&mut r, &d, 0x7472_6976);
        assert_eq!(r.rax, 0x7472_6976, "32-bit destination clears the top half");
        assert_eq!(r.rip, 0x1003);
        // mov al, [rcx]
        let d = decode(&[0x8a, 0x01]).unwrap();
        let mut r = regs();
        complete(&mut r, &d, 0x1ff);
        assert_eq!(r.rax, 0x1111_2222_3333_44ff, "8-bit destination merges");
        // mov ah, [rcx]
        let d = decode(&[0x8a, 0x21]).unwrap();
        let mut r = regs();
        complete(&mut r, &d, 0x5a);
        assert_eq!(r.rax, 0x1111_2222_3333_5a44);
        // movzx eax, word [rcx]
        let d = decode(&[0x0f, 0xb7, 0x01]).unwrap();
        assert_eq!(d.width, 2);
        let mut r = regs();
        complete(&mut r, &d, 0xffff_beef);
        assert_eq!(r.rax, 0xbeef);
        // mov r9, [rcx]
        let d = decode(&[0x4c, 0x8b, 0x09]).unwrap();
        assert_eq!(d.width, 8);
        let mut r = regs();
        complete(&mut r, &d, u64::MAX);
        assert_eq!(r.r9, u64::MAX);
    }

    #[test]
    fn stores_take_register_slices_and_immediates() {
        // mov [rax], ecx
        let d = decode(&[0x89, 0x08]).unwrap();
        assert_eq!(store_value(&regs(), &d), 0xcccc_dddd);
        // mov [rax], ch
        let d = decode(&[0x88, 0x28]).unwrap();
        assert_eq!((d.width, store_value(&regs(), &d)), (1, 0xdd));
        // mov dword [rax+0x70], 0xffffffff
        let d = decode(&[0xc7, 0x40, 0x70, 0xff, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(
            (d.len, d.width, store_value(&regs(), &d)),
            (7, 4, 0xffff_ffff)
        );
        // mov qword [rax], -1 (sign-extended imm32)
        let d = decode(&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(store_value(&regs(), &d), u64::MAX);
        // A store leaves registers alone and moves RIP.
        let mut r = regs();
        complete(&mut r, &d, 5);
        assert_eq!((r.rax, r.rip), (regs().rax, 0x1007));
    }

    #[test]
    fn everything_else_is_refused_with_its_text() {
        // add [rax], ecx: read-modify-write
        assert!(
            matches!(decode(&[0x01, 0x08]), Err(DecodeError::Unsupported(t)) if t.contains("add"))
        );
        // rep movsb
        assert!(matches!(
            decode(&[0xf3, 0xa4]),
            Err(DecodeError::Unsupported(_))
        ));
        // mov eax, fs:[rax]
        assert!(matches!(
            decode(&[0x64, 0x8b, 0x00]),
            Err(DecodeError::Unsupported(_))
        ));
        // movups xmm0, [rax]
        assert!(matches!(
            decode(&[0x0f, 0x10, 0x00]),
            Err(DecodeError::Unsupported(_))
        ));
        assert_eq!(
            decode(&[0x0f, 0x0b])
                .err()
                .map(|e| e.to_string().contains("ud2")),
            Some(true)
        );
        assert_eq!(
            decode(&[0x06]),
            Err(DecodeError::Invalid),
            "push es is invalid in 64-bit mode"
        );
        assert_eq!(decode(&[]), Err(DecodeError::Invalid));
        assert_eq!(decode(&[0x8b]), Err(DecodeError::Invalid), "truncated");
    }
}
