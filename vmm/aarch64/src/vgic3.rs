//! Virtual GICv3 for a single-vCPU guest: the distributor and the vCPU's
//! redistributor a guest programs through MMIO, the trapped
//! `ICC_SGI1R_EL1` write that raises SGIs, and the list-register manager
//! that puts pending interrupts into the vCPU's `ICH_LR<n>_EL2`.
//!
//! Register offsets and fields are those of the GICv3 architecture
//! specification (Arm IHI 0069): GICD_CTLR 0x0000, TYPER 0x0004, IIDR
//! 0x0008, IGROUPRn 0x0080, ISENABLERn 0x0100, ICENABLERn 0x0180, ISPENDRn
//! 0x0200, ICPENDRn 0x0280, ISACTIVERn 0x0300, ICACTIVERn 0x0380,
//! IPRIORITYRn 0x0400 (byte-accessible), ICFGRn 0x0C00, IROUTERn
//! 0x6000 + 8n (64-bit), PIDR2 0xFFE8. A redistributor is two 64 KiB
//! frames: RD_base with GICR_CTLR 0x0000, IIDR 0x0004, TYPER 0x0008
//! (64-bit), WAKER 0x0014, PIDR2 0xFFE8; SGI_base (RD_base + 0x10000) with
//! the banked SGI/PPI registers at the distributor's offsets. ICH_LR
//! vINTID `[31:0]`, pINTID `[44:32]` (EOI `[41]` when HW is 0), Priority
//! `[55:48]`, Group `[60]`, HW `[61]`, State `[63:62]`.
//!
//! What the guest sees: one security state (GICD_CTLR.DS reads one, as a
//! VM has no secure side), affinity routing always on (ARE reads one, so
//! GICD_ITARGETSR and GICD_SGIR are reserved and SGI/PPI state lives only
//! in the redistributor), no LPIs or ITS, no 1-of-N restriction. The CPU
//! interface is the hardware's virtual one (`ICC_*_EL1` go to `ICH_*`), so
//! it is not emulated here except for the SGI generation write, which
//! traps to the hypervisor and reaches [`Vgic3::sgi`].
//!
//! As with [`crate::vgic`], the state of an interrupt sitting in a list
//! register belongs to the hardware; seL4 does not let the VMM read list
//! registers back, so the model reports such an interrupt as active and
//! ignores writes that would change its pending/active state until the
//! maintenance interrupt for its EOI arrives ([`Vgic3::eoi`]). The list
//! register types and the backend trait are shared with the GICv2 model.

use bulkhead_virtio::GuestMemory;
use bulkhead_vmm_core::MmioDevice;

pub use crate::vgic::{ListRegister, ListRegisters, LrState, VgicError, MAX_LRS, SPI_BASE};

/// Size of the distributor's MMIO window.
pub const GICD_SIZE: u64 = 0x1_0000;
/// Size of one redistributor's MMIO window (RD_base + SGI_base frames).
pub const GICR_SIZE: u64 = 0x2_0000;
/// Offset of the SGI_base frame in a redistributor's window.
const SGI_BASE: u64 = 0x1_0000;

/// GICD/GICR_IIDR: zero, no implementer claimed (this is not an Arm part).
const IIDR: u32 = 0;
/// PIDR2: ArchRev `[7:4]` = 3, GICv3.
const PIDR2: u32 = 0x30;
/// GICD_CTLR bits the guest can write: EnableGrp0, EnableGrp1 (the DS=1
/// layout).
const CTLR_ENABLES: u32 = 0b11;
/// GICD_CTLR.ARE `[4]` and DS `[6]`: read as one, writes ignored.
const CTLR_FIXED: u32 = 1 << 4 | 1 << 6;
/// GICR_WAKER.ProcessorSleep.
const WAKER_SLEEP: u32 = 1 << 1;
/// GICR_WAKER.ChildrenAsleep.
const WAKER_ASLEEP: u32 = 1 << 2;
/// GICD_IROUTER.Interrupt_Routing_Mode: any PE.
const IRM: u64 = 1 << 31;
/// GICD_IROUTER bits that exist: Aff0-2 `[23:0]`, IRM `[31]`, Aff3 `[39:32]`.
const IROUTER_MASK: u64 = 0xff_8000_0000 | 0xff_ffff;
/// Priority bits kept: the virtual CPU interface commonly implements five
/// priority bits (ICH_VTR_EL2.PRIbits), so the model keeps `[7:3]` and
/// reads the rest as zero, like GICv2.
const PRIO_MASK: u8 = 0xf8;
/// The SGIs: INTIDs 0..16. PPIs are 16..32.
const SGI_COUNT: u32 = 16;

const ENABLED: u8 = 1 << 0;
const LATCH: u8 = 1 << 1; // edge or software pending, not yet in an LR
const LINE: u8 = 1 << 2; // level of the input line
const EDGE: u8 = 1 << 3; // ICFGR: edge-triggered
const GROUP1: u8 = 1 << 4;
const IN_LR: u8 = 1 << 5;

/// The GICv3 `ICH_LR<n>_EL2` encoding of a list register's content.
pub fn encode_lr(lr: &ListRegister) -> u64 {
    let state: u64 = match lr.state {
        LrState::Invalid => 0,
        LrState::Pending => 1,
        LrState::Active => 2,
        LrState::PendingActive => 3,
    };
    let mut v = u64::from(lr.vintid)
        | u64::from(lr.priority) << 48
        | u64::from(lr.group1) << 60
        | state << 62;
    match lr.hw {
        Some(pid) => v |= 1 << 61 | u64::from(pid & 0x1fff) << 32,
        // EOI bit: maintenance interrupt when the guest EOIs it, which is
        // how the VMM learns the LR is free again.
        None => v |= 1 << 41,
    }
    v
}

#[derive(Debug, Clone, Copy)]
struct Irq {
    flags: u8,
    priority: u8,
    /// GICD_IROUTER for an SPI; unused for SGIs and PPIs.
    route: u64,
}

/// Which INTIDs a frame's banked registers reach: the distributor's only
/// SPIs (ARE is on), the redistributor's SGI_base frame only SGIs/PPIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bank {
    Dist,
    Redist,
}

impl Bank {
    fn holds(self, intid: u32) -> bool {
        match self {
            Bank::Dist => intid >= SPI_BASE,
            Bank::Redist => intid < SPI_BASE,
        }
    }
}

/// Width rules of one access.
#[derive(Debug, Clone, Copy)]
struct Access {
    offset: u64,
    width: u8,
}

impl Access {
    /// An aligned 32-bit access.
    fn word(self) -> bool {
        self.width == 4 && self.offset % 4 == 0
    }
    /// A byte access or an aligned word (IPRIORITYR).
    fn bytes(self) -> bool {
        self.width == 1 || self.word()
    }
    /// An aligned 64-bit access or an aligned word (IROUTER, GICR_TYPER).
    fn dword(self) -> bool {
        self.word() || (self.width == 8 && self.offset % 8 == 0)
    }
}

/// The distributor, the single vCPU's redistributor, and the LR manager,
/// for `N` INTIDs (a multiple of 32, at most 1024; INTIDs 1020..1023 are
/// never usable).
#[derive(Debug)]
pub struct Vgic3<const N: usize> {
    ctlr: u32,
    waker: u32,
    /// The vCPU's affinity in GICR_TYPER.Affinity_Value form:
    /// Aff3 `[31:24]`, Aff2 `[23:16]`, Aff1 `[15:8]`, Aff0 `[7:0]`.
    affinity: u32,
    irqs: [Irq; N],
    lrs: [Option<u16>; MAX_LRS],
}

impl<const N: usize> Vgic3<N> {
    const CHECK: () = assert!(N % 32 == 0 && N >= 32 && N <= 1024);

    /// The reset state for a vCPU whose MPIDR affinity is `affinity`
    /// (Aff3 `[31:24]`, Aff2 `[23:16]`, Aff1 `[15:8]`, Aff0 `[7:0]`):
    /// everything disabled, group 0, priority 0, SGIs edge, PPIs and SPIs
    /// level, SPIs routed to affinity 0.0.0.0, the redistributor asleep
    /// (GICR_WAKER.ProcessorSleep set, as after a reset).
    pub fn new(affinity: u32) -> Self {
        let () = Self::CHECK;
        let mut irqs = [Irq {
            flags: 0,
            priority: 0,
            route: 0,
        }; N];
        for irq in irqs.iter_mut().take(16) {
            irq.flags = EDGE;
        }
        Vgic3 {
            ctlr: 0,
            waker: WAKER_SLEEP | WAKER_ASLEEP,
            affinity,
            irqs,
            lrs: [None; MAX_LRS],
        }
    }

    /// The distributor's MMIO view (a [`GICD_SIZE`] window).
    pub fn distributor(&mut self) -> Distributor<'_, N> {
        Distributor(self)
    }

    /// The redistributor's MMIO view (a [`GICR_SIZE`] window).
    pub fn redistributor(&mut self) -> Redistributor<'_, N> {
        Redistributor(self)
    }

    fn irq(&self, intid: u32) -> Option<&Irq> {
        self.irqs.get(usize::try_from(intid).ok()?)
    }

    fn irq_mut(&mut self, intid: u32) -> Option<&mut Irq> {
        self.irqs.get_mut(usize::try_from(intid).ok()?)
    }

    fn pending(irq: &Irq) -> bool {
        irq.flags & LATCH != 0 || (irq.flags & EDGE == 0 && irq.flags & LINE != 0)
    }

    /// Whether an SPI's IROUTER names this vCPU (or any PE).
    fn routed_here(&self, route: u64) -> bool {
        if route & IRM != 0 {
            return true;
        }
        // IROUTER holds Aff2.Aff1.Aff0 in `[23:0]` and Aff3 in `[39:32]`.
        let aff = route & 0xff_ffff | (route >> 32 & 0xff) << 24;
        aff == u64::from(self.affinity)
    }

    fn candidate(&self, n: usize, irq: &Irq) -> bool {
        let group_on = if irq.flags & GROUP1 != 0 {
            self.ctlr & 2 != 0
        } else {
            self.ctlr & 1 != 0
        };
        // A sleeping redistributor forwards nothing to its CPU interface;
        // an SPI routed to another affinity goes nowhere.
        let routed = n < 32 || self.routed_here(irq.route);
        group_on
            && self.waker & WAKER_SLEEP == 0
            && routed
            && irq.flags & ENABLED != 0
            && irq.flags & IN_LR == 0
            && Self::pending(irq)
    }

    /// Whether `intid` waits for a list register (pending, enabled,
    /// deliverable, not in one yet).
    pub fn is_queued(&self, intid: u32) -> bool {
        usize::try_from(intid)
            .ok()
            .and_then(|n| Some((n, self.irqs.get(n)?)))
            .is_some_and(|(n, i)| self.candidate(n, i))
    }

    /// Whether `intid` is in a list register now.
    pub fn in_lr(&self, intid: u32) -> bool {
        self.irq(intid).is_some_and(|i| i.flags & IN_LR != 0)
    }

    /// Set the level of a device's line (a PPI such as the virtual timer,
    /// or an SPI). A rising edge latches an edge-triggered interrupt; a
    /// level-triggered one is pending while the line is high. Call
    /// [`Vgic3::flush`] afterwards.
    ///
    /// # Errors
    /// [`VgicError::BadIrq`] for an SGI or an INTID beyond `N`.
    pub fn set_line(&mut self, intid: u32, level: bool) -> Result<(), VgicError> {
        if intid < SGI_COUNT {
            return Err(VgicError::BadIrq(intid));
        }
        let irq = self.irq_mut(intid).ok_or(VgicError::BadIrq(intid))?;
        let was = irq.flags & LINE != 0;
        if level {
            irq.flags |= LINE;
            if !was && irq.flags & EDGE != 0 {
                irq.flags |= LATCH;
            }
        } else {
            irq.flags &= !LINE;
        }
        Ok(())
    }

    /// The guest wrote `value` to `ICC_SGI1R_EL1` (trapped): TargetList
    /// `[15:0]`, Aff1 `[23:16]`, INTID `[27:24]`, Aff2 `[39:32]`, IRM
    /// `[40]`, RS `[47:44]`, Aff3 `[55:48]`. With one vCPU, an SGI is
    /// raised only when the target list names this vCPU; IRM (every PE but
    /// the sender) reaches nobody. Call [`Vgic3::flush`] afterwards.
    pub fn sgi(&mut self, value: u64) {
        if value & 1 << 40 != 0 {
            return;
        }
        let aff3 = value >> 48 & 0xff;
        let aff2 = value >> 32 & 0xff;
        let aff1 = value >> 16 & 0xff;
        let rs = value >> 44 & 0xf;
        let me = u64::from(self.affinity);
        let aff0 = me & 0xff;
        // TargetList bit k is Aff0 = RS * 16 + k.
        let cluster_match =
            aff3 == me >> 24 & 0xff && aff2 == me >> 16 & 0xff && aff1 == me >> 8 & 0xff;
        if !cluster_match || aff0 >> 4 != rs || value & 1 << (aff0 & 0xf) == 0 {
            return;
        }
        let intid = u32::try_from(value >> 24 & 0xf).unwrap_or(0);
        if let Some(i) = self.irq_mut(intid) {
            if i.flags & IN_LR == 0 {
                i.flags |= LATCH;
            }
        }
    }

    /// Put the best queued interrupts into free list registers: lowest
    /// priority value first, then lowest INTID. Interrupts that find no
    /// free LR stay queued here; none is lost. The backend writes the
    /// hardware LR from the [`ListRegister`] ([`encode_lr`] gives the
    /// `ICH_LR<n>_EL2` value).
    ///
    /// # Errors
    /// The backend's error from the first failed LR write; that interrupt
    /// stays queued.
    pub fn flush<L: ListRegisters>(&mut self, lrs: &mut L) -> Result<(), L::Error> {
        let count = lrs.count().min(MAX_LRS);
        for slot in 0..count {
            if self.lrs[slot].is_some() {
                continue;
            }
            let best = self
                .irqs
                .iter()
                .enumerate()
                .filter(|(n, i)| self.candidate(*n, i))
                .min_by_key(|(n, i)| (i.priority, *n))
                .map(|(n, _)| n);
            let Some(n) = best else {
                return Ok(());
            };
            let irq = &self.irqs[n];
            // n < N <= 1024.
            let vintid = u16::try_from(n).unwrap_or(u16::MAX);
            lrs.write(
                slot,
                ListRegister {
                    vintid,
                    priority: irq.priority,
                    state: LrState::Pending,
                    group1: irq.flags & GROUP1 != 0,
                    hw: None,
                },
            )?;
            let irq = &mut self.irqs[n];
            irq.flags = (irq.flags | IN_LR) & !LATCH;
            self.lrs[slot] = Some(vintid);
        }
        Ok(())
    }

    /// The guest EOIed the interrupt in list register `index` (the
    /// maintenance interrupt): free it and refill from the queue. A level
    /// interrupt whose line is still high is pending again by definition.
    ///
    /// # Errors
    /// [`VgicError::BadLr`] for an index that holds nothing; the backend
    /// reports it (the kernel and the VMM disagree).
    pub fn eoi<L: ListRegisters>(&mut self, index: usize, lrs: &mut L) -> Result<(), VgicError> {
        let intid = self
            .lrs
            .get_mut(index)
            .and_then(Option::take)
            .ok_or(VgicError::BadLr(index))?;
        if let Some(irq) = self.irq_mut(u32::from(intid)) {
            irq.flags &= !IN_LR;
        }
        // A failed refill leaves the interrupts queued; the next flush
        // retries.
        let _ = self.flush(lrs);
        Ok(())
    }

    /// The INTID in list register `index`, if any.
    pub fn lr(&self, index: usize) -> Option<u16> {
        self.lrs.get(index).copied().flatten()
    }

    fn gicd_typer(&self) -> u32 {
        // ITLinesNumber `[4:0]`: 32 * (n + 1) INTIDs; IDbits `[23:19]` = 9
        // (10-bit INTIDs); no LPIs, MBIs, security extension, or 1-of-N
        // restriction.
        (u32::try_from(N / 32 - 1).unwrap_or(0) & 0x1f) | 9 << 19
    }

    fn gicr_typer(&self) -> u64 {
        // Affinity_Value `[63:32]`, Processor_Number 0 `[23:8]`, Last `[4]`
        // (the only redistributor), no physical or virtual LPIs.
        u64::from(self.affinity) << 32 | 1 << 4
    }

    /// The INTID bit `b` of the 32-INTID register at word `word` covers.
    fn intid_of(word: u64, b: u32) -> u32 {
        u32::try_from(word.saturating_mul(32))
            .unwrap_or(u32::MAX)
            .saturating_add(b)
    }

    fn bits_read(&self, bank: Bank, word: u64, f: impl Fn(&Irq) -> bool) -> u32 {
        let mut v = 0u32;
        for b in 0..32u32 {
            let intid = Self::intid_of(word, b);
            if bank.holds(intid) && self.irq(intid).is_some_and(&f) {
                v |= 1 << b;
            }
        }
        v
    }

    fn bits_write(&mut self, bank: Bank, word: u64, value: u32, f: impl Fn(u32, bool, &mut Irq)) {
        for b in 0..32u32 {
            let intid = Self::intid_of(word, b);
            if !bank.holds(intid) {
                continue;
            }
            if let Some(irq) = self.irq_mut(intid) {
                f(intid, value & (1 << b) != 0, irq);
            }
        }
    }

    /// The registers the distributor and the SGI_base frame share, at the
    /// same offsets, each reaching the INTIDs of its `bank`.
    fn banked_read(&self, bank: Bank, a: Access) -> Option<u32> {
        let off = a.offset;
        Some(match off {
            0x080..=0x0ff if a.word() => {
                self.bits_read(bank, (off - 0x080) / 4, |i| i.flags & GROUP1 != 0)
            }
            0x100..=0x1ff if a.word() => {
                self.bits_read(bank, (off & 0x7f) / 4, |i| i.flags & ENABLED != 0)
            }
            0x200..=0x2ff if a.word() => self.bits_read(bank, (off & 0x7f) / 4, |i| {
                Self::pending(i) && i.flags & IN_LR == 0
            }),
            0x300..=0x3ff if a.word() => {
                self.bits_read(bank, (off & 0x7f) / 4, |i| i.flags & IN_LR != 0)
            }
            0x400..=0x7ff if a.bytes() => {
                let mut v = 0u32;
                for k in 0..u32::from(a.width) {
                    let intid = u32::try_from(off - 0x400)
                        .unwrap_or(u32::MAX)
                        .saturating_add(k);
                    if let Some(i) = self.irq(intid).filter(|_| bank.holds(intid)) {
                        v |= u32::from(i.priority) << (8 * k);
                    }
                }
                v
            }
            0xc00..=0xcff if a.word() => {
                let first = u32::try_from((off - 0xc00) / 4 * 16).unwrap_or(u32::MAX);
                let mut v = 0u32;
                for k in 0..16u32 {
                    let intid = first.saturating_add(k);
                    if bank.holds(intid) && self.irq(intid).is_some_and(|i| i.flags & EDGE != 0) {
                        v |= 2 << (2 * k);
                    }
                }
                v
            }
            _ => return None,
        })
    }

    fn banked_write(&mut self, bank: Bank, a: Access, value: u32) -> Option<()> {
        let off = a.offset;
        match off {
            0x080..=0x0ff if a.word() => {
                self.bits_write(bank, (off - 0x080) / 4, value, |_, set, i| {
                    if set {
                        i.flags |= GROUP1;
                    } else {
                        i.flags &= !GROUP1;
                    }
                });
            }
            0x100..=0x17f if a.word() => {
                self.bits_write(bank, (off & 0x7f) / 4, value, |_, s, i| {
                    if s {
                        i.flags |= ENABLED;
                    }
                })
            }
            0x180..=0x1ff if a.word() => {
                self.bits_write(bank, (off & 0x7f) / 4, value, |_, s, i| {
                    if s {
                        i.flags &= !ENABLED;
                    }
                })
            }
            0x200..=0x27f if a.word() => {
                self.bits_write(bank, (off & 0x7f) / 4, value, |_, s, i| {
                    if s && i.flags & IN_LR == 0 {
                        i.flags |= LATCH;
                    }
                })
            }
            // Clears the latch; a level interrupt whose line is high stays
            // pending, as the architecture says.
            0x280..=0x2ff if a.word() => {
                self.bits_write(bank, (off & 0x7f) / 4, value, |_, s, i| {
                    if s {
                        i.flags &= !LATCH;
                    }
                })
            }
            // Active state lives in the list registers (module doc).
            0x300..=0x3ff if a.word() => {}
            0x400..=0x7ff if a.bytes() => {
                let bytes = value.to_le_bytes();
                for k in 0..usize::from(a.width) {
                    let intid = u32::try_from(off - 0x400)
                        .unwrap_or(u32::MAX)
                        .saturating_add(u32::try_from(k).unwrap_or(u32::MAX));
                    let byte = bytes.get(k).copied().unwrap_or(0);
                    if let Some(i) = self.irq_mut(intid).filter(|_| bank.holds(intid)) {
                        i.priority = byte & PRIO_MASK;
                    }
                }
            }
            // SGIs are always edge (ICFGR0 is read-only); only the odd
            // (edge) bit of each field is implemented.
            0xc00..=0xcff if a.word() => {
                let first = u32::try_from((off - 0xc00) / 4 * 16).unwrap_or(u32::MAX);
                for k in 0..16u32 {
                    let intid = first.saturating_add(k);
                    if intid < SGI_COUNT || !bank.holds(intid) {
                        continue;
                    }
                    if let Some(i) = self.irq_mut(intid) {
                        if value & (2 << (2 * k)) != 0 {
                            i.flags |= EDGE;
                        } else {
                            i.flags &= !EDGE;
                        }
                    }
                }
            }
            _ => return None,
        }
        Some(())
    }

    fn gicd_read(&self, a: Access) -> Option<u64> {
        let off = a.offset;
        if let Some(v) = self.banked_read(Bank::Dist, a) {
            return Some(u64::from(v));
        }
        Some(match off {
            0x0000 if a.word() => u64::from(self.ctlr | CTLR_FIXED),
            0x0004 if a.word() => u64::from(self.gicd_typer()),
            0x0008 if a.word() => u64::from(IIDR),
            // IROUTER<n> for n >= 32; the SGI/PPI slots are reserved
            // (RAZ/WI, 64-bit access allowed like their neighbours).
            0x6000..=0x7fdf if a.dword() => {
                let n = (off - 0x6000) / 8;
                let route = u32::try_from(n)
                    .ok()
                    .filter(|n| Bank::Dist.holds(*n))
                    .and_then(|n| self.irq(n))
                    .map_or(0, |i| i.route);
                if off % 8 == 0 {
                    if a.width == 8 {
                        route
                    } else {
                        route & 0xffff_ffff
                    }
                } else {
                    route >> 32
                }
            }
            0xffe8 if a.word() => u64::from(PIDR2),
            // ITARGETSR, IGRPMODR, NSACR, SGIR (reserved with ARE and one
            // security state), other ID registers and reserved space read
            // as zero.
            _ if a.word() => 0,
            _ => return None,
        })
    }

    fn gicd_write(&mut self, a: Access, value: u64) -> Option<()> {
        let off = a.offset;
        let low = u32::try_from(value & 0xffff_ffff).unwrap_or(0);
        if a.width <= 4 && self.banked_write(Bank::Dist, a, low).is_some() {
            return Some(());
        }
        match off {
            0x0000 if a.word() => self.ctlr = low & CTLR_ENABLES,
            0x6000..=0x7fdf if a.dword() => {
                let n = u32::try_from((off - 0x6000) / 8).unwrap_or(u32::MAX);
                if let Some(i) = self.irq_mut(n).filter(|_| Bank::Dist.holds(n)) {
                    let new = if a.width == 8 {
                        value
                    } else if off % 8 == 0 {
                        i.route & !0xffff_ffff | value & 0xffff_ffff
                    } else {
                        i.route & 0xffff_ffff | (value & 0xffff_ffff) << 32
                    };
                    i.route = new & IROUTER_MASK;
                }
            }
            // Read-only and reserved registers ignore writes.
            _ if a.word() => {}
            _ => return None,
        }
        Some(())
    }

    fn gicr_read(&self, a: Access) -> Option<u64> {
        let off = a.offset;
        if off >= SGI_BASE {
            let sgi = Access {
                offset: off - SGI_BASE,
                width: a.width,
            };
            // The bank keeps the words past the first (INTIDs 32 and up)
            // reading as zero; everything else in the frame is RAZ/WI.
            return match self.banked_read(Bank::Redist, sgi) {
                Some(v) => Some(u64::from(v)),
                None => a.word().then_some(0),
            };
        }
        Some(match off {
            // No LPIs: EnableLPIs RAZ/WI, RWP never set.
            0x0000 if a.word() => 0,
            0x0004 if a.word() => u64::from(IIDR),
            0x0008 if a.dword() => {
                if a.width == 8 {
                    self.gicr_typer()
                } else {
                    self.gicr_typer() & 0xffff_ffff
                }
            }
            0x000c if a.word() => self.gicr_typer() >> 32,
            0x0014 if a.word() => u64::from(self.waker),
            0xffe8 if a.word() => u64::from(PIDR2),
            _ if a.word() => 0,
            _ => return None,
        })
    }

    fn gicr_write(&mut self, a: Access, value: u64) -> Option<()> {
        let off = a.offset;
        let low = u32::try_from(value & 0xffff_ffff).unwrap_or(0);
        if off >= SGI_BASE {
            let sgi = Access {
                offset: off - SGI_BASE,
                width: a.width,
            };
            if a.width <= 4 && self.banked_write(Bank::Redist, sgi, low).is_some() {
                return Some(());
            }
            return a.word().then_some(());
        }
        match off {
            // ChildrenAsleep follows ProcessorSleep at once: there is no
            // hardware to quiesce.
            0x0014 if a.word() => {
                self.waker = if low & WAKER_SLEEP != 0 {
                    WAKER_SLEEP | WAKER_ASLEEP
                } else {
                    0
                };
            }
            // TYPER is read-only, 64-bit accessible like its read.
            0x0008 if a.dword() => {}
            // CTLR (no LPIs), IIDR, PIDR2 and reserved space.
            _ if a.word() => {}
            _ => return None,
        }
        Some(())
    }
}

/// Checks the window and narrows the value; `None` refuses the access.
fn access(offset: u64, width: u8, size: u64) -> Option<Access> {
    (offset < size && matches!(width, 1 | 2 | 4 | 8)).then_some(Access { offset, width })
}

/// The distributor's MMIO view of a [`Vgic3`]. After each access the
/// backend calls [`Vgic3::flush`], since an enable may have made an
/// interrupt deliverable.
#[derive(Debug)]
pub struct Distributor<'a, const N: usize>(&'a mut Vgic3<N>);

impl<const N: usize> MmioDevice for Distributor<'_, N> {
    fn read(&mut self, offset: u64, width: u8, _ram: &mut dyn GuestMemory) -> Result<u64, ()> {
        access(offset, width, GICD_SIZE)
            .and_then(|a| self.0.gicd_read(a))
            .ok_or(())
    }

    fn write(
        &mut self,
        offset: u64,
        width: u8,
        value: u64,
        _ram: &mut dyn GuestMemory,
    ) -> Result<(), ()> {
        access(offset, width, GICD_SIZE)
            .and_then(|a| self.0.gicd_write(a, value))
            .ok_or(())
    }

    fn irq_level(&self) -> bool {
        false
    }
}

/// The redistributor's MMIO view of a [`Vgic3`]. After each access the
/// backend calls [`Vgic3::flush`]: waking the redistributor or enabling an
/// SGI/PPI may have made an interrupt deliverable.
#[derive(Debug)]
pub struct Redistributor<'a, const N: usize>(&'a mut Vgic3<N>);

impl<const N: usize> MmioDevice for Redistributor<'_, N> {
    fn read(&mut self, offset: u64, width: u8, _ram: &mut dyn GuestMemory) -> Result<u64, ()> {
        access(offset, width, GICR_SIZE)
            .and_then(|a| self.0.gicr_read(a))
            .ok_or(())
    }

    fn write(
        &mut self,
        offset: u64,
        width: u8,
        value: u64,
        _ram: &mut dyn GuestMemory,
    ) -> Result<(), ()> {
        access(offset, width, GICR_SIZE)
            .and_then(|a| self.0.gicr_write(a, value))
            .ok_or(())
    }

    fn irq_level(&self) -> bool {
        false
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // Test INTIDs are small.
mod tests {
    use super::*;
    use bulkhead_virtio::SliceMemory;

    extern crate std;
    use std::vec::Vec;

    /// In-memory list registers that model the guest acking and EOIing.
    struct Lrs {
        regs: [Option<ListRegister>; 4],
        count: usize,
        fail: bool,
    }

    impl Lrs {
        fn new(count: usize) -> Self {
            Lrs {
                regs: [None; 4],
                count,
                fail: false,
            }
        }
        fn held(&self) -> Vec<u16> {
            let mut v: Vec<u16> = self.regs.iter().flatten().map(|l| l.vintid).collect();
            v.sort_unstable();
            v
        }
        /// The guest handles `intid`: its LR empties and the maintenance
        /// interrupt reaches the VMM.
        fn guest_eoi<const N: usize>(&mut self, v: &mut Vgic3<N>, intid: u16) {
            let slot = self
                .regs
                .iter()
                .position(|l| l.is_some_and(|l| l.vintid == intid))
                .unwrap();
            self.regs[slot] = None;
            v.eoi(slot, self).unwrap();
        }
    }

    impl ListRegisters for Lrs {
        type Error = ();
        fn count(&self) -> usize {
            self.count
        }
        fn write(&mut self, index: usize, lr: ListRegister) -> Result<(), ()> {
            if self.fail {
                return Err(());
            }
            assert!(self.regs[index].is_none(), "LR {index} overwritten");
            self.regs[index] = Some(lr);
            Ok(())
        }
    }

    fn mem() -> SliceMemory<'static> {
        SliceMemory::new(
            0,
            std::boxed::Box::leak(std::vec![0u8; 16].into_boxed_slice()),
        )
    }

    type G = Vgic3<128>;

    fn dw(v: &mut G, off: u64, width: u8, val: u64) {
        v.distributor().write(off, width, val, &mut mem()).unwrap();
    }
    fn dr(v: &mut G, off: u64, width: u8) -> u64 {
        v.distributor().read(off, width, &mut mem()).unwrap()
    }
    fn rw(v: &mut G, off: u64, width: u8, val: u64) {
        v.redistributor()
            .write(off, width, val, &mut mem())
            .unwrap();
    }
    fn rr(v: &mut G, off: u64, width: u8) -> u64 {
        v.redistributor().read(off, width, &mut mem()).unwrap()
    }

    /// What Linux's GICv3 driver does at boot, reduced: wake the
    /// redistributor, group 1 everywhere, enable the distributor (both
    /// group enables and ARE), SPIs enabled.
    fn ready() -> G {
        let mut v = G::new(0);
        rw(&mut v, 0x14, 4, 0);
        assert_eq!(rr(&mut v, 0x14, 4), 0, "ChildrenAsleep clears");
        rw(&mut v, SGI_BASE + 0x80, 4, 0xffff_ffff);
        for n in 1..4 {
            dw(&mut v, 0x80 + 4 * n, 4, 0xffff_ffff);
            dw(&mut v, 0x100 + 4 * n, 4, 0xffff_ffff);
        }
        dw(&mut v, 0, 4, 1 << 4 | 0b11);
        v
    }

    #[test]
    fn id_registers() {
        let mut v = G::new(0x0102_0304);
        // 128 INTIDs = 32 * (3 + 1); IDbits 9.
        assert_eq!(dr(&mut v, 0x4, 4), 3 | 9 << 19);
        assert_eq!(Vgic3::<1024>::new(0).gicd_typer() & 0x1f, 31);
        assert_eq!(dr(&mut v, 0xffe8, 4) >> 4 & 0xf, 3);
        assert_eq!(rr(&mut v, 0xffe8, 4) >> 4 & 0xf, 3);
        assert_eq!(dr(&mut v, 0x8, 4), 0);
        // ARE and DS read one and stay so; RWP is never set.
        assert_eq!(dr(&mut v, 0, 4), 0x50);
        dw(&mut v, 0, 4, 0xffff_ffff);
        assert_eq!(dr(&mut v, 0, 4), 0x53);
        // GICR_TYPER: affinity in the top word, Last set, as 64 or 2x32.
        assert_eq!(rr(&mut v, 0x8, 8), 0x0102_0304 << 32 | 1 << 4);
        assert_eq!(rr(&mut v, 0x8, 4), 1 << 4);
        assert_eq!(rr(&mut v, 0xc, 4), 0x0102_0304);
        // No LPIs: GICR_CTLR is RAZ/WI.
        rw(&mut v, 0, 4, 1);
        assert_eq!(rr(&mut v, 0, 4), 0);
    }

    #[test]
    fn waker_handshake() {
        let mut v = G::new(0);
        assert_eq!(rr(&mut v, 0x14, 4), 0b110, "asleep after reset");
        rw(&mut v, 0x14, 4, 0);
        assert_eq!(rr(&mut v, 0x14, 4), 0);
        // ChildrenAsleep is read-only: writing it alone changes nothing.
        rw(&mut v, 0x14, 4, WAKER_ASLEEP.into());
        assert_eq!(rr(&mut v, 0x14, 4), 0);
        rw(&mut v, 0x14, 4, WAKER_SLEEP.into());
        assert_eq!(rr(&mut v, 0x14, 4), 0b110);
    }

    #[test]
    fn sleeping_redistributor_delivers_nothing() {
        let mut v = ready();
        let mut lrs = Lrs::new(4);
        rw(&mut v, 0x14, 4, WAKER_SLEEP.into());
        v.set_line(40, true).unwrap();
        v.flush(&mut lrs).unwrap();
        assert!(lrs.held().is_empty());
        rw(&mut v, 0x14, 4, 0);
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [40]);
    }

    #[test]
    fn sgi_ppi_state_lives_in_the_redistributor() {
        let mut v = ready();
        // GICD words for INTIDs 0..31 are RAZ/WI with ARE.
        dw(&mut v, 0x100, 4, 0xffff_ffff);
        assert_eq!(dr(&mut v, 0x100, 4), 0);
        dw(&mut v, 0x400, 4, 0xffff_ffff);
        assert_eq!(dr(&mut v, 0x400, 4), 0);
        assert_eq!(dr(&mut v, 0xc00, 4), 0);
        // GICR ISENABLER0/ICENABLER0: SGIs and PPIs are both writable.
        rw(&mut v, SGI_BASE + 0x100, 4, 1 << 27 | 1 << 1);
        assert_eq!(rr(&mut v, SGI_BASE + 0x100, 4), 1 << 27 | 1 << 1);
        assert_eq!(dr(&mut v, 0x100, 4), 0, "not visible in GICD");
        rw(&mut v, SGI_BASE + 0x180, 4, 1 << 1);
        assert_eq!(rr(&mut v, SGI_BASE + 0x100, 4), 1 << 27);
        // IPRIORITYR0-7 by byte and word.
        rw(&mut v, SGI_BASE + 0x400 + 27, 1, 0xa7);
        assert_eq!(rr(&mut v, SGI_BASE + 0x418, 4), 0xa0 << 24);
        // Beyond IPRIORITYR7 and ISENABLER0 the frame is RAZ/WI, and the
        // redistributor never reaches SPIs.
        rw(&mut v, SGI_BASE + 0x420, 4, 0xffff_ffff);
        assert_eq!(rr(&mut v, SGI_BASE + 0x420, 4), 0);
        rw(&mut v, SGI_BASE + 0x184, 4, 0xffff_ffff);
        assert_eq!(dr(&mut v, 0x104, 4), 0xffff_ffff, "SPIs still enabled");
        // ICFGR0 is read-only edge; ICFGR1 (PPIs) keeps the edge bits.
        rw(&mut v, SGI_BASE + 0xc00, 4, 0);
        assert_eq!(rr(&mut v, SGI_BASE + 0xc00, 4), 0xaaaa_aaaa);
        rw(&mut v, SGI_BASE + 0xc04, 4, 0xffff_ffff);
        assert_eq!(rr(&mut v, SGI_BASE + 0xc04, 4), 0xaaaa_aaaa);
        // A PPI (the virtual timer, 27) goes into an LR.
        let mut lrs = Lrs::new(4);
        rw(&mut v, SGI_BASE + 0xc04, 4, 0);
        v.set_line(27, true).unwrap();
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [27]);
        assert_eq!(lrs.regs[0].unwrap().priority, 0xa0);
        assert!(lrs.regs[0].unwrap().group1);
        assert_eq!(
            rr(&mut v, SGI_BASE + 0x300, 4),
            1 << 27,
            "active while in an LR"
        );
    }

    #[test]
    fn distributor_spi_registers() {
        let mut v = ready();
        assert_eq!(dr(&mut v, 0x104, 4), 0xffff_ffff);
        dw(&mut v, 0x184, 4, 1 << 5);
        assert_eq!(dr(&mut v, 0x104, 4), !(1u64 << 5) & 0xffff_ffff);
        dw(&mut v, 0x400 + 44, 4, 0x1122_33ff);
        assert_eq!(dr(&mut v, 0x400 + 44, 4), 0x1020_30f8);
        assert_eq!(dr(&mut v, 0x400 + 46, 1), 0x20);
        dw(&mut v, 0x204, 4, 1 << 1);
        assert_eq!(dr(&mut v, 0x204, 4), 1 << 1);
        dw(&mut v, 0x284, 4, 1 << 1);
        assert_eq!(dr(&mut v, 0x204, 4), 0);
        dw(&mut v, 0xc08, 4, 0b1111 << 2);
        assert_eq!(dr(&mut v, 0xc08, 4), 0b1010 << 2);
        // ITARGETSR, SGIR, IGRPMODR are RAZ/WI with ARE and DS.
        dw(&mut v, 0x820, 4, 0xffff_ffff);
        assert_eq!(dr(&mut v, 0x820, 4), 0);
        dw(&mut v, 0xf00, 4, 1 << 16 | 3);
        assert!(!v.is_queued(3));
        assert_eq!(
            rr(&mut v, SGI_BASE + 0x200, 4),
            0,
            "GICD_SGIR raises nothing"
        );
        dw(&mut v, 0xd04, 4, 0xffff_ffff);
        assert_eq!(dr(&mut v, 0xd04, 4), 0);
    }

    #[test]
    fn irouter_routes_spis() {
        let mut v = ready();
        let mut lrs = Lrs::new(4);
        let r40 = 0x6000 + 8 * 40;
        // Only the architected bits stick; 64-bit and 32-bit halves.
        dw(&mut v, r40, 8, u64::MAX);
        assert_eq!(dr(&mut v, r40, 8), IROUTER_MASK);
        assert_eq!(dr(&mut v, r40 + 4, 4), 0xff);
        dw(&mut v, r40, 8, 0);
        // Routed to affinity 0.0.1.0: not this vCPU.
        dw(&mut v, r40, 4, 0x100);
        v.set_line(40, true).unwrap();
        v.flush(&mut lrs).unwrap();
        assert!(lrs.held().is_empty());
        // Any PE (IRM): delivered.
        dw(&mut v, r40, 4, IRM);
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [40]);
        // A vCPU with Aff3 = 1 matches an IROUTER with Aff3 `[39:32]` = 1.
        let mut w = Vgic3::<64>::new(0x0100_0000);
        w.redistributor().write(0x14, 4, 0, &mut mem()).unwrap();
        w.distributor().write(0, 4, 3, &mut mem()).unwrap();
        w.distributor().write(0x104, 4, 1 << 1, &mut mem()).unwrap();
        w.set_line(33, true).unwrap();
        assert!(!w.is_queued(33));
        w.distributor()
            .write(0x6000 + 8 * 33 + 4, 4, 1, &mut mem())
            .unwrap();
        assert!(w.is_queued(33));
        // The SGI/PPI IROUTER slots are reserved.
        dw(&mut v, 0x6000, 8, u64::MAX);
        assert_eq!(dr(&mut v, 0x6000, 4), 0);
    }

    #[test]
    fn icc_sgi1r_raises_sgis() {
        let mut v = G::new(0x0000_0102); // Aff1 1, Aff0 2
        rw(&mut v, 0x14, 4, 0);
        rw(&mut v, SGI_BASE + 0x80, 4, 0xffff);
        rw(&mut v, SGI_BASE + 0x100, 4, 0xffff);
        dw(&mut v, 0, 4, 3);
        let mut lrs = Lrs::new(4);
        // TargetList bit 2, Aff1 1, INTID 5: this vCPU.
        v.sgi(5 << 24 | 1 << 16 | 1 << 2);
        // Wrong Aff1, wrong target bit, wrong range selector, IRM: nobody.
        v.sgi(6 << 24 | 2 << 16 | 1 << 2);
        v.sgi(7 << 24 | 1 << 16 | 1 << 3);
        v.sgi(8 << 24 | 1 << 16 | 1 << 44 | 1 << 2);
        v.sgi(9 << 24 | 1 << 40);
        assert_eq!(rr(&mut v, SGI_BASE + 0x200, 4), 1 << 5);
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [5]);
        assert!(
            v.set_line(5, true).is_err(),
            "SGIs come only from ICC_SGI1R"
        );
        assert!(v.set_line(128, true).is_err());
    }

    #[test]
    fn injection_priority_level_edge_and_eoi() {
        let mut v = ready();
        let mut lrs = Lrs::new(2);
        dw(&mut v, 0x400 + 40, 1, 0x80);
        dw(&mut v, 0x400 + 41, 1, 0x40);
        dw(&mut v, 0x400 + 42, 1, 0xc0);
        for n in [40, 41, 42] {
            v.set_line(n, true).unwrap();
        }
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [40, 41]);
        assert_eq!(v.lr(0), Some(41));
        assert!(v.is_queued(42), "no free LR: waits, not lost");
        // Level: still high at EOI, so it comes back; 42 fills no slot
        // until a lower-priority-value one is done.
        lrs.guest_eoi(&mut v, 41);
        assert_eq!(lrs.held(), [40, 41]);
        v.set_line(41, false).unwrap();
        lrs.guest_eoi(&mut v, 41);
        assert_eq!(lrs.held(), [40, 42]);
        // Edge: a second edge while the first is in an LR is kept.
        dw(&mut v, 0xc0c, 4, 2 << (2 * 4)); // INTID 52 edge
        v.set_line(40, false).unwrap();
        v.set_line(42, false).unwrap();
        lrs.guest_eoi(&mut v, 40);
        lrs.guest_eoi(&mut v, 42);
        v.set_line(52, true).unwrap();
        v.set_line(52, false).unwrap();
        v.flush(&mut lrs).unwrap();
        v.set_line(52, true).unwrap();
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [52]);
        lrs.guest_eoi(&mut v, 52);
        assert_eq!(lrs.held(), [52]);
        lrs.guest_eoi(&mut v, 52);
        assert!(lrs.held().is_empty());
        assert!(v.eoi(0, &mut lrs).is_err(), "EOI of a free LR");
        assert!(v.eoi(MAX_LRS + 1, &mut lrs).is_err());
    }

    #[test]
    fn group_enables_gate_delivery() {
        let mut v = ready();
        let mut lrs = Lrs::new(4);
        dw(&mut v, 0x084, 4, 0); // 32..63 group 0
        dw(&mut v, 0, 4, 2); // Grp1 only
        v.set_line(40, true).unwrap();
        v.flush(&mut lrs).unwrap();
        assert!(lrs.held().is_empty());
        assert_eq!(dr(&mut v, 0x204, 4), 1 << 8, "pending, visible");
        dw(&mut v, 0, 4, 1);
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [40]);
        assert!(!lrs.regs[0].unwrap().group1);
    }

    #[test]
    fn failed_lr_write_keeps_pending() {
        let mut v = ready();
        let mut lrs = Lrs::new(4);
        v.set_line(60, true).unwrap();
        lrs.fail = true;
        assert!(v.flush(&mut lrs).is_err());
        assert!(v.is_queued(60));
        lrs.fail = false;
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [60]);
    }

    #[test]
    fn active_and_pending_writes_ignored_while_in_lr() {
        let mut v = ready();
        let mut lrs = Lrs::new(4);
        v.set_line(45, true).unwrap();
        v.flush(&mut lrs).unwrap();
        dw(&mut v, 0x384, 4, 1 << 13); // ICACTIVER
        dw(&mut v, 0x204, 4, 1 << 13); // ISPENDR
        assert_eq!(dr(&mut v, 0x304, 4), 1 << 13);
        assert_eq!(dr(&mut v, 0x204, 4), 0);
        dw(&mut v, 0x304, 4, 1 << 14); // ISACTIVER of a free one: ignored
        assert_eq!(dr(&mut v, 0x304, 4), 1 << 13);
    }

    #[test]
    fn hostile_accesses_never_panic() {
        let mut v = Vgic3::<64>::new(0);
        let m = &mut mem();
        // Word registers refuse byte, half and misaligned access.
        assert!(v.distributor().read(0x0, 1, m).is_err());
        assert!(v.distributor().read(0x100, 2, m).is_err());
        assert!(v.distributor().read(0x100, 8, m).is_err());
        assert!(v.distributor().read(0x102, 4, m).is_err());
        assert!(v.distributor().write(0x101, 1, 0, m).is_err());
        assert!(v.redistributor().read(0x14, 2, m).is_err());
        assert!(v.redistributor().read(0x9, 4, m).is_err());
        assert!(
            v.redistributor().read(0xc, 8, m).is_err(),
            "misaligned dword"
        );
        assert!(
            v.distributor().read(0x6104, 8, m).is_err(),
            "misaligned dword"
        );
        // Odd widths and outside the windows.
        assert!(v.distributor().read(0x0, 3, m).is_err());
        assert!(v.distributor().write(0x0, 16, 0, m).is_err());
        assert!(v.distributor().read(GICD_SIZE, 4, m).is_err());
        assert!(v.redistributor().read(GICR_SIZE, 4, m).is_err());
        assert!(v.distributor().write(u64::MAX, 4, 0, m).is_err());
        assert!(v.redistributor().write(u64::MAX - 3, 4, 0, m).is_err());
        // Read-only registers ignore writes.
        let typer = v.distributor().read(0x4, 4, m);
        assert!(v.distributor().write(0x4, 4, u64::MAX, m).is_ok());
        assert_eq!(v.distributor().read(0x4, 4, m), typer);
        assert!(v.redistributor().write(0x8, 8, u64::MAX, m).is_ok());
        assert!(v.redistributor().write(0x8, 4, u64::MAX, m).is_ok());
        assert_eq!(v.redistributor().read(0x8, 8, m), Ok(1 << 4));
        // INTIDs beyond N read as zero and ignore writes.
        assert!(v.distributor().write(0x108, 4, u64::MAX, m).is_ok());
        assert_eq!(v.distributor().read(0x108, 4, m), Ok(0));
        assert!(v
            .distributor()
            .write(0x6000 + 8 * 64, 8, u64::MAX, m)
            .is_ok());
        assert_eq!(v.distributor().read(0x6000 + 8 * 64, 8, m), Ok(0));
        assert!(v.distributor().write(0x7fd8, 8, u64::MAX, m).is_ok());
        // Every offset of both windows (and a little past), every width,
        // all-ones writes: never a panic.
        for off in 0..GICD_SIZE + 8 {
            for width in [0u8, 1, 2, 3, 4, 8] {
                let _ = v.distributor().read(off, width, m);
                let _ = v.distributor().write(off, width, u64::MAX, m);
            }
        }
        for off in 0..GICR_SIZE + 8 {
            for width in [0u8, 1, 2, 4, 8] {
                let _ = v.redistributor().read(off, width, m);
                let _ = v.redistributor().write(off, width, u64::MAX, m);
            }
        }
        for value in [0u64, u64::MAX, 0xf << 24, 1 << 40, 0xffff] {
            v.sgi(value);
        }
        let mut lrs = Lrs::new(4);
        // After the all-ones storm the model still works.
        let _ = v.flush(&mut lrs);
        assert!(lrs.held().len() <= 4);
    }

    #[test]
    fn lr_encoding() {
        let lr = ListRegister {
            vintid: 1019,
            priority: 0xa8,
            state: LrState::PendingActive,
            group1: true,
            hw: None,
        };
        assert_eq!(
            encode_lr(&lr),
            1019 | 0xa8 << 48 | 1 << 60 | 3 << 62 | 1 << 41
        );
        let hw = ListRegister {
            vintid: 27,
            priority: 0,
            state: LrState::Active,
            group1: false,
            hw: Some(0x155),
        };
        assert_eq!(encode_lr(&hw), 27 | 0x155 << 32 | 1 << 61 | 2 << 62);
        let inv = ListRegister {
            state: LrState::Invalid,
            ..hw
        };
        assert_eq!(encode_lr(&inv) >> 62, 0);
        let p = ListRegister {
            state: LrState::Pending,
            ..hw
        };
        assert_eq!(encode_lr(&p) >> 62, 1);
    }
}
