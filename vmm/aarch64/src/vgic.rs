//! Virtual GICv2: the distributor a guest programs through MMIO (an
//! [`MmioDevice`]), and the list-register manager that puts its pending
//! interrupts into the vCPU's hardware list registers.
//!
//! Register offsets and fields are those of the GICv2 architecture
//! specification (Arm IHI 0048B): GICD_CTLR 0x000, TYPER 0x004, IIDR 0x008,
//! IGROUPRn 0x080, ISENABLERn 0x100, ICENABLERn 0x180, ISPENDRn 0x200,
//! ICPENDRn 0x280, ISACTIVERn 0x300, ICACTIVERn 0x380, IPRIORITYRn 0x400
//! (byte-accessible), ITARGETSRn 0x800 (byte-accessible), ICFGRn 0xC00,
//! SGIR 0xF00, CPENDSGIRn 0xF10, SPENDSGIRn 0xF20, ICPIDR2 0xFE8; GICH_LRn
//! VirtualID `[9:0]`, PhysicalID `[19:10]` (EOI `[19]` when HW is 0),
//! Priority `[27:23]`, State `[29:28]`, Grp1 `[30]`, HW `[31]`.
//!
//! The model is one vCPU (CPU interface 0); an SMP guest needs SGI/PPI
//! state banked per vCPU and SGIR routing between them, which is not here. The guest's CPU interface is the
//! hardware GICV frame mapped at the guest's GICC address, so it is not
//! emulated here. The state of an interrupt sitting in a list register
//! belongs to the hardware (the guest acknowledges and EOIs it directly);
//! seL4 does not let the VMM read list registers back, so the distributor
//! reports such an interrupt as active and ignores writes that would change
//! its pending/active state, until the maintenance interrupt for its EOI
//! arrives ([`Vgic::eoi`]).

use bulkhead_virtio::GuestMemory;
use bulkhead_vmm_core::MmioDevice;

/// Size of the distributor's MMIO window.
pub const GICD_SIZE: u64 = 0x1000;
/// The first shared peripheral interrupt; 0..16 are SGIs, 16..32 PPIs.
pub const SPI_BASE: u32 = 32;
/// Most list registers GICv2 defines (GICH_VTR.ListRegs is 6 bits).
pub const MAX_LRS: usize = 64;

/// GICD_IIDR: zero, i.e. no implementer claimed (this is not an Arm part).
const IIDR: u32 = 0;
/// ICPIDR2: ArchRev `[7:4]` = 2, GICv2.
const PIDR2: u32 = 0x20;
/// Priority bits kept: GICH_LR holds priority`[7:3]`, so the distributor
/// implements those five and reads the rest as zero.
const PRIO_MASK: u8 = 0xf8;

/// State of a list register entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrState {
    /// Free.
    Invalid,
    /// Pending.
    Pending,
    /// Active.
    Active,
    /// Pending and active.
    PendingActive,
}

/// One list register's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRegister {
    /// Virtual INTID the guest sees.
    pub vintid: u16,
    /// Priority, as the guest wrote it to GICD_IPRIORITYR. GICH_LR holds
    /// only bits `[7:3]`: a backend whose interface takes the 5-bit field
    /// passes `priority >> 3`.
    pub priority: u8,
    /// State.
    pub state: LrState,
    /// Group 1 (otherwise group 0).
    pub group1: bool,
    /// For a hardware interrupt: the physical INTID deactivated when the
    /// guest deactivates this one. `None` for a software interrupt, which
    /// requests a maintenance interrupt on EOI instead.
    pub hw: Option<u16>,
}

impl ListRegister {
    /// The GICH_LR encoding.
    pub fn encode(&self) -> u32 {
        let state = match self.state {
            LrState::Invalid => 0,
            LrState::Pending => 1,
            LrState::Active => 2,
            LrState::PendingActive => 3,
        };
        let mut v = u32::from(self.vintid & 0x3ff)
            | u32::from(self.priority >> 3) << 23
            | state << 28
            | u32::from(self.group1) << 30;
        match self.hw {
            Some(pid) => v |= 1 << 31 | u32::from(pid & 0x3ff) << 10,
            // EOI bit: maintenance interrupt when the guest EOIs it, which
            // is how the VMM learns the LR is free again.
            None => v |= 1 << 19,
        }
        v
    }
}

/// The vCPU's list registers, as the backend can write them (on seL4, with
/// `seL4_ARM_VCPU_InjectIRQ`).
pub trait ListRegisters {
    /// Why a write failed (the backend's invocation error).
    type Error;
    /// How many list registers the vCPU has.
    fn count(&self) -> usize;
    /// Load list register `index`.
    ///
    /// # Errors
    /// The backend's error; the manager then keeps the interrupt pending.
    fn write(&mut self, index: usize, lr: ListRegister) -> Result<(), Self::Error>;
}

/// Why an injection request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VgicError {
    /// The INTID is beyond the distributor's interrupt count, or an SGI
    /// (SGIs only come from GICD_SGIR).
    BadIrq(u32),
    /// The list register index is beyond the vCPU's list registers, or
    /// that list register holds nothing.
    BadLr(usize),
}

const ENABLED: u8 = 1 << 0;
const LATCH: u8 = 1 << 1; // edge or software pending, not yet in an LR
const LINE: u8 = 1 << 2; // level of the input line
const EDGE: u8 = 1 << 3; // ICFGR: edge-triggered
const GROUP1: u8 = 1 << 4;
const IN_LR: u8 = 1 << 5;

#[derive(Debug, Clone, Copy)]
struct Irq {
    flags: u8,
    priority: u8,
    target: u8,
}

/// The distributor and LR manager for `N` INTIDs (a multiple of 32, at
/// most 1024; INTIDs 1020..1023 are never usable).
#[derive(Debug)]
pub struct Vgic<const N: usize> {
    ctlr: u32,
    irqs: [Irq; N],
    lrs: [Option<u16>; MAX_LRS],
}

impl<const N: usize> Default for Vgic<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Vgic<N> {
    const CHECK: () = assert!(N % 32 == 0 && N >= 32 && N <= 1024);

    /// The reset state: everything disabled, group 0, priority 0, SGIs
    /// edge, PPIs and SPIs level, SPIs targeting CPU 0.
    pub fn new() -> Self {
        let () = Self::CHECK;
        let mut irqs = [Irq {
            flags: 0,
            priority: 0,
            target: 1,
        }; N];
        for irq in irqs.iter_mut().take(16) {
            // SGI enables are RAO/WI, as on common GICv2 implementations.
            irq.flags = ENABLED | EDGE;
        }
        Vgic {
            ctlr: 0,
            irqs,
            lrs: [None; MAX_LRS],
        }
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

    fn candidate(&self, irq: &Irq) -> bool {
        let group_on = if irq.flags & GROUP1 != 0 {
            self.ctlr & 2 != 0
        } else {
            self.ctlr & 1 != 0
        };
        // An SPI whose target list is empty goes nowhere (SGIs and PPIs
        // always target their own CPU; their `target` stays 1).
        group_on
            && irq.target & 1 != 0
            && irq.flags & ENABLED != 0
            && irq.flags & IN_LR == 0
            && Self::pending(irq)
    }

    /// Whether `intid` waits for a list register (pending, enabled, not in
    /// one yet).
    pub fn is_queued(&self, intid: u32) -> bool {
        self.irq(intid).is_some_and(|i| self.candidate(i))
    }

    /// Whether `intid` is in a list register now.
    pub fn in_lr(&self, intid: u32) -> bool {
        self.irq(intid).is_some_and(|i| i.flags & IN_LR != 0)
    }

    /// Set the level of a device's line (an `IrqEdge` from the VMM core or
    /// a passthrough interrupt). A rising edge latches an edge-triggered
    /// interrupt; a level-triggered one is pending while the line is high.
    /// Call [`Vgic::flush`] afterwards.
    ///
    /// # Errors
    /// [`VgicError::BadIrq`] for an SGI or an INTID beyond `N`.
    pub fn set_line(&mut self, intid: u32, level: bool) -> Result<(), VgicError> {
        if intid < 16 {
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

    /// Put the best queued interrupts into free list registers: lowest
    /// priority value first, then lowest INTID. Interrupts that find no
    /// free LR stay queued here; none is lost.
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
                .filter(|(_, i)| self.candidate(i))
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
    /// maintenance interrupt): free it, re-pend a level interrupt whose
    /// line is still high (a level interrupt is pending while its line is high, so nothing to
    /// do), and refill from the queue.
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

    fn typer(&self) -> u32 {
        // ITLinesNumber: 32 * (n + 1) INTIDs; CPUNumber 0 (one CPU).
        u32::try_from(N / 32 - 1).unwrap_or(0) & 0x1f
    }

    /// Bit `b` of the 32-INTID register `reg` for each INTID it covers.
    fn bits_read(&self, base: u64, offset: u64, f: impl Fn(&Irq) -> bool) -> u32 {
        let first = (offset - base) / 4 * 32;
        let mut v = 0u32;
        for b in 0..32u32 {
            if let Some(irq) = u32::try_from(first).ok().and_then(|f0| self.irq(f0 + b)) {
                if f(irq) {
                    v |= 1 << b;
                }
            }
        }
        v
    }

    fn bits_write(&mut self, base: u64, offset: u64, value: u32, f: impl Fn(u32, &mut Irq)) {
        let Ok(first) = u32::try_from((offset - base) / 4 * 32) else {
            return;
        };
        for b in 0..32u32 {
            if value & (1 << b) != 0 {
                let intid = first + b;
                if let Some(irq) = self.irq_mut(intid) {
                    f(intid, irq);
                }
            }
        }
    }

    fn byte_read(&self, offset: u64, width: u8, f: impl Fn(u32, &Irq) -> u8) -> u32 {
        let mut v = 0u32;
        for i in 0..u32::from(width) {
            let intid = u32::try_from(offset).unwrap_or(u32::MAX).saturating_add(i);
            if let Some(irq) = self.irq(intid) {
                v |= u32::from(f(intid, irq)) << (8 * i);
            }
        }
        v
    }

    fn byte_write(&mut self, offset: u64, width: u8, value: u32, f: impl Fn(u32, &mut Irq, u8)) {
        for i in 0..u32::from(width) {
            let intid = u32::try_from(offset).unwrap_or(u32::MAX).saturating_add(i);
            let byte = value
                .to_le_bytes()
                .get(usize::try_from(i).unwrap_or(usize::MAX))
                .copied()
                .unwrap_or(0);
            if let Some(irq) = self.irq_mut(intid) {
                f(intid, irq, byte);
            }
        }
    }

    fn read_reg(&self, offset: u64, width: u8) -> Option<u32> {
        let word = width == 4 && offset % 4 == 0;
        let bytes = (width == 1 || word) && offset % u64::from(width) == 0;
        Some(match offset {
            0x000 if word => self.ctlr,
            0x004 if word => self.typer(),
            0x008 if word => IIDR,
            0x080..=0x0ff if word => self.bits_read(0x080, offset, |i| i.flags & GROUP1 != 0),
            0x100..=0x1ff if word => {
                self.bits_read(0x100 + (offset & 0x80), offset, |i| i.flags & ENABLED != 0)
            }
            0x200..=0x2ff if word => self.bits_read(0x200 + (offset & 0x80), offset, |i| {
                Self::pending(i) && i.flags & IN_LR == 0
            }),
            0x300..=0x3ff if word => {
                self.bits_read(0x300 + (offset & 0x80), offset, |i| i.flags & IN_LR != 0)
            }
            0x400..=0x7fb if bytes => self.byte_read(offset - 0x400, width, |_, i| i.priority),
            0x800..=0xbfb if bytes => self.byte_read(offset - 0x800, width, |n, i| {
                if n < SPI_BASE {
                    1
                } else {
                    i.target
                }
            }),
            0xc00..=0xcff if word => {
                let first = (offset - 0xc00) / 4 * 16;
                let mut v = 0u32;
                for k in 0..16u32 {
                    let intid = u32::try_from(first).unwrap_or(u32::MAX).saturating_add(k);
                    if self.irq(intid).is_some_and(|i| i.flags & EDGE != 0) {
                        v |= 2 << (2 * k);
                    }
                }
                v
            }
            // SGIR is write-only.
            0xf00 if word => 0,
            0xf10..=0xf2f if bytes => self.byte_read(offset & 0xf, width, |n, i| {
                u8::from(n < 16 && i.flags & LATCH != 0)
            }),
            0xfe8 if word => PIDR2,
            // Other ID registers and reserved space read as zero.
            _ if word => 0,
            _ => return None,
        })
    }

    fn write_reg(&mut self, offset: u64, width: u8, value: u32) -> Option<()> {
        let word = width == 4 && offset % 4 == 0;
        let bytes = (width == 1 || word) && offset % u64::from(width) == 0;
        match offset {
            0x000 if word => self.ctlr = value & 3,
            0x080..=0x0ff if word => self.bits_write(0x080, offset, u32::MAX, |n, i| {
                if value & (1 << (n % 32)) != 0 {
                    i.flags |= GROUP1;
                } else {
                    i.flags &= !GROUP1;
                }
            }),
            0x100..=0x17f if word => self.bits_write(0x100, offset, value, |n, i| {
                if n >= 16 {
                    i.flags |= ENABLED;
                }
            }),
            0x180..=0x1ff if word => self.bits_write(0x180, offset, value, |n, i| {
                if n >= 16 {
                    i.flags &= !ENABLED;
                }
            }),
            // SGI pending bits are set through SGIR/SPENDSGIR only.
            0x200..=0x27f if word => self.bits_write(0x200, offset, value, |n, i| {
                if n >= 16 && i.flags & IN_LR == 0 {
                    i.flags |= LATCH;
                }
            }),
            // Clears the latch; a level interrupt whose line is high stays
            // pending, as the architecture says.
            0x280..=0x2ff if word => self.bits_write(0x280, offset, value, |n, i| {
                if n >= 16 {
                    i.flags &= !LATCH;
                }
            }),
            // Active state lives in the list registers (see the module doc).
            0x300..=0x3ff if word => {}
            0x400..=0x7fb if bytes => self.byte_write(offset - 0x400, width, value, |_, i, b| {
                i.priority = b & PRIO_MASK
            }),
            // One CPU: SGI/PPI targets are read-only; an SPI can only
            // target CPU 0.
            0x800..=0xbfb if bytes => self.byte_write(offset - 0x800, width, value, |n, i, b| {
                if n >= SPI_BASE {
                    i.target = b & 1;
                }
            }),
            // SGIs are always edge; only the odd (edge) bit of each field
            // is implemented.
            0xc00..=0xcff if word => {
                let first = u32::try_from((offset - 0xc00) / 4 * 16).unwrap_or(u32::MAX);
                for k in 0..16u32 {
                    let intid = first.saturating_add(k);
                    if intid < 16 {
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
            0xf00 if word => {
                let filter = (value >> 24) & 3;
                let list = (value >> 16) & 0xff;
                let to_self = match filter {
                    0 => list & 1 != 0,
                    2 => true,
                    // 1: every other CPU (there is none); 3: reserved.
                    _ => false,
                };
                if to_self {
                    if let Some(i) = self.irq_mut(value & 0xf) {
                        if i.flags & IN_LR == 0 {
                            i.flags |= LATCH;
                        }
                    }
                }
            }
            // CPENDSGIR / SPENDSGIR: bit 0 of each byte is source CPU 0.
            0xf10..=0xf2f if bytes => {
                let set = offset >= 0xf20;
                self.byte_write(offset & 0xf, width, value, |n, i, b| {
                    if n < 16 && b & 1 != 0 {
                        if set && i.flags & IN_LR == 0 {
                            i.flags |= LATCH;
                        } else if !set {
                            i.flags &= !LATCH;
                        }
                    }
                })
            }
            // Read-only and reserved registers ignore writes.
            _ if word => {}
            _ => return None,
        }
        Some(())
    }
}

/// The guest's accesses to the distributor. After each one the backend
/// calls [`Vgic::flush`], since an enable or SGI may have made an
/// interrupt deliverable.
impl<const N: usize> MmioDevice for Vgic<N> {
    fn read(&mut self, offset: u64, width: u8, _ram: &mut dyn GuestMemory) -> Result<u64, ()> {
        if offset >= GICD_SIZE {
            return Err(());
        }
        self.read_reg(offset, width).map(u64::from).ok_or(())
    }

    fn write(
        &mut self,
        offset: u64,
        width: u8,
        value: u64,
        _ram: &mut dyn GuestMemory,
    ) -> Result<(), ()> {
        if offset >= GICD_SIZE || width > 4 {
            return Err(());
        }
        // width <= 4, so the value fits.
        let v = u32::try_from(value & 0xffff_ffff).unwrap_or(0);
        self.write_reg(offset, width, v).ok_or(())
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
        fn held(&self) -> std::vec::Vec<u16> {
            let mut v: std::vec::Vec<u16> = self.regs.iter().flatten().map(|l| l.vintid).collect();
            v.sort_unstable();
            v
        }
        fn slot_of(&self, intid: u16) -> usize {
            self.regs
                .iter()
                .position(|l| l.is_some_and(|l| l.vintid == intid))
                .unwrap()
        }
        /// The guest handles the interrupt in `slot`: the LR empties and
        /// the maintenance interrupt reaches the VMM.
        fn guest_eoi<const N: usize>(&mut self, v: &mut Vgic<N>, intid: u16) {
            let slot = self.slot_of(intid);
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

    extern crate std;

    fn mem() -> SliceMemory<'static> {
        SliceMemory::new(
            0,
            std::boxed::Box::leak(std::vec![0u8; 16].into_boxed_slice()),
        )
    }

    fn w(v: &mut Vgic<128>, off: u64, width: u8, val: u64) {
        MmioDevice::write(v, off, width, val, &mut mem()).unwrap();
    }
    fn r(v: &mut Vgic<128>, off: u64, width: u8) -> u64 {
        MmioDevice::read(v, off, width, &mut mem()).unwrap()
    }

    /// Enabled distributor, SPIs 32.. enabled, all level.
    fn ready() -> Vgic<128> {
        let mut v = Vgic::<128>::new();
        w(&mut v, 0x000, 4, 1);
        for n in 0..4 {
            w(&mut v, 0x100 + 4 * n, 4, 0xffff_ffff);
        }
        v
    }

    #[test]
    fn id_registers() {
        let mut v = Vgic::<128>::new();
        assert_eq!(r(&mut v, 0x004, 4), 3); // 128 INTIDs = 32 * (3 + 1)
        assert_eq!(Vgic::<32>::new().typer(), 0);
        assert_eq!(Vgic::<1024>::new().typer(), 31);
        assert_eq!(r(&mut v, 0xfe8, 4) >> 4 & 0xf, 2);
        assert_eq!(r(&mut v, 0x008, 4), 0);
        assert_eq!(r(&mut v, 0xf00, 4), 0, "SGIR is write-only");
    }

    #[test]
    fn enable_pending_priority_registers() {
        let mut v = ready();
        assert_eq!(r(&mut v, 0x104, 4), 0xffff_ffff);
        // SGI enables are RAO/WI; PPIs are writable.
        w(&mut v, 0x180, 4, 0xffff_ffff);
        assert_eq!(r(&mut v, 0x100, 4), 0x0000_ffff);
        w(&mut v, 0x184, 4, 1 << 5); // disable 37
        assert_eq!(r(&mut v, 0x104, 4), !(1u64 << 5) & 0xffff_ffff);
        // Priority: byte and word access, low 3 bits not implemented.
        w(&mut v, 0x400 + 40, 1, 0xa7);
        assert_eq!(r(&mut v, 0x400 + 40, 1), 0xa0);
        w(&mut v, 0x400 + 44, 4, 0x1122_33ff);
        assert_eq!(r(&mut v, 0x400 + 44, 4), 0x1020_30f8);
        assert_eq!(r(&mut v, 0x400 + 46, 1), 0x20);
        // Software pending.
        w(&mut v, 0x200 + 4, 4, 1 << 1); // 33
        assert_eq!(r(&mut v, 0x204, 4), 1 << 1);
        w(&mut v, 0x280 + 4, 4, 1 << 1);
        assert_eq!(r(&mut v, 0x204, 4), 0);
        // Groups.
        w(&mut v, 0x084, 4, 0x8000_0001);
        assert_eq!(r(&mut v, 0x084, 4), 0x8000_0001);
    }

    #[test]
    fn targets_and_config() {
        let mut v = ready();
        // SGIs/PPIs read CPU 0 and ignore writes.
        assert_eq!(r(&mut v, 0x800, 4), 0x0101_0101);
        w(&mut v, 0x81c, 4, 0);
        assert_eq!(r(&mut v, 0x81c, 1), 1);
        // SPIs: only the CPU 0 bit sticks.
        w(&mut v, 0x820, 1, 0xff);
        assert_eq!(r(&mut v, 0x820, 1), 1);
        w(&mut v, 0x820, 1, 0xfe);
        assert_eq!(r(&mut v, 0x820, 1), 0);
        // ICFGR0 (SGIs) is all edge and read-only.
        assert_eq!(r(&mut v, 0xc00, 4), 0xaaaa_aaaa);
        w(&mut v, 0xc00, 4, 0);
        assert_eq!(r(&mut v, 0xc00, 4), 0xaaaa_aaaa);
        // SPI 32..47: fields of 33 and 34 all ones; only their odd (edge) bits stick.
        w(&mut v, 0xc08, 4, 0b1111 << 2);
        assert_eq!(r(&mut v, 0xc08, 4), 0b1010 << 2);
    }

    #[test]
    fn bounds_and_widths() {
        let mut v = Vgic::<64>::new();
        let m = &mut mem();
        // Word registers refuse byte, half, dword and misaligned access.
        assert!(v.read(0x000, 1, m).is_err());
        assert!(v.read(0x100, 2, m).is_err());
        assert!(v.read(0x100, 8, m).is_err());
        assert!(v.read(0x102, 4, m).is_err());
        assert!(v.write(0x104, 8, 0, m).is_err());
        assert!(v.write(0x101, 1, 0, m).is_err());
        // Outside the window.
        assert!(v.read(0x1000, 4, m).is_err());
        assert!(v.write(u64::MAX, 4, 0, m).is_err());
        // INTIDs beyond N read as zero and ignore writes.
        assert_eq!(v.read(0x108, 4, m), Ok(0));
        assert!(v.write(0x108, 4, u64::MAX, m).is_ok());
        assert_eq!(v.read(0x108, 4, m), Ok(0));
        assert_eq!(v.read(0x400 + 64, 1, m), Ok(0));
        assert!(v.write(0x7f8, 4, u64::MAX, m).is_ok());
        // Every offset and width: never a panic.
        for off in 0..0x1004u64 {
            for width in [1u8, 2, 4, 8] {
                let _ = v.read(off, width, m);
                let _ = v.write(off, width, 0xffff_ffff_ffff_ffff, m);
            }
        }
    }

    #[test]
    fn inject_priority_order_and_eoi() {
        let mut v = ready();
        let mut lrs = Lrs::new(4);
        w(&mut v, 0x400 + 40, 1, 0x80);
        w(&mut v, 0x400 + 41, 1, 0x40);
        w(&mut v, 0x400 + 42, 1, 0xc0);
        for n in [40, 41, 42] {
            v.set_line(n, true).unwrap();
        }
        v.flush(&mut lrs).unwrap();
        // Highest priority (lowest value) in the first free LR.
        assert_eq!(lrs.regs[0].unwrap().vintid, 41);
        assert_eq!(lrs.regs[0].unwrap().priority, 0x40);
        assert_eq!(lrs.regs[1].unwrap().vintid, 40);
        assert_eq!(lrs.regs[2].unwrap().vintid, 42);
        assert_eq!(lrs.regs[0].unwrap().state, LrState::Pending);
        assert!(v.in_lr(41));
        // In an LR: reported active, not pending.
        assert_eq!(r(&mut v, 0x304, 4), 0b111 << 8);
        assert_eq!(r(&mut v, 0x204, 4), 0);
        // Device lowers 41's line, guest EOIs it: nothing re-injected.
        v.set_line(41, false).unwrap();
        lrs.guest_eoi(&mut v, 41);
        assert!(!v.in_lr(41));
        assert_eq!(lrs.held(), [40, 42]);
        assert!(v.eoi(0, &mut lrs).is_err(), "EOI of a free LR");
        assert!(v.eoi(99, &mut lrs).is_err());
    }

    #[test]
    fn level_reassertion() {
        let mut v = ready();
        let mut lrs = Lrs::new(4);
        v.set_line(50, true).unwrap();
        v.flush(&mut lrs).unwrap();
        // Line still high at EOI: the device still wants service.
        lrs.guest_eoi(&mut v, 50);
        assert_eq!(lrs.held(), [50]);
        v.set_line(50, false).unwrap();
        lrs.guest_eoi(&mut v, 50);
        assert_eq!(lrs.held(), std::vec::Vec::<u16>::new());
        assert!(!v.is_queued(50));
    }

    #[test]
    fn edge_latches_while_in_lr() {
        let mut v = ready();
        w(&mut v, 0xc0c, 4, 2 << (2 * 4)); // INTID 52 edge
        let mut lrs = Lrs::new(4);
        v.set_line(52, true).unwrap();
        v.set_line(52, false).unwrap();
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [52]);
        // A second edge while the first is being handled is not lost.
        v.set_line(52, true).unwrap();
        v.set_line(52, false).unwrap();
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [52]);
        lrs.guest_eoi(&mut v, 52);
        assert_eq!(lrs.held(), [52]);
        lrs.guest_eoi(&mut v, 52);
        assert!(lrs.held().is_empty());
        // Holding an edge line high is one interrupt, not a stream.
        v.set_line(52, true).unwrap();
        v.flush(&mut lrs).unwrap();
        lrs.guest_eoi(&mut v, 52);
        assert!(lrs.held().is_empty());
    }

    #[test]
    fn overflow_keeps_all_in_priority_order() {
        let mut v = ready();
        let mut lrs = Lrs::new(2);
        // 10 level interrupts, priorities in scrambled order.
        let prios = [0x50u8, 0x10, 0x90, 0x30, 0x70, 0x20, 0x80, 0x40, 0x60, 0x10];
        for (k, p) in prios.iter().enumerate() {
            let n = 40 + k as u32;
            w(&mut v, 0x400 + u64::from(n), 1, u64::from(*p));
            v.set_line(n, true).unwrap();
        }
        v.flush(&mut lrs).unwrap();
        let mut served = std::vec::Vec::new();
        while let Some(lr) = lrs
            .regs
            .iter()
            .flatten()
            .min_by_key(|l| (l.priority, l.vintid))
            .copied()
        {
            served.push((lr.priority, lr.vintid));
            v.set_line(u32::from(lr.vintid), false).unwrap();
            lrs.guest_eoi(&mut v, lr.vintid);
        }
        assert_eq!(served.len(), 10, "none lost");
        let mut sorted = served.clone();
        sorted.sort_unstable();
        assert_eq!(served, sorted, "priority order, ties by INTID");
        assert_eq!(served[0], (0x10, 41));
        assert_eq!(served[1], (0x10, 49));
    }

    #[test]
    fn disabled_or_distributor_off_not_injected() {
        let mut v = ready();
        let mut lrs = Lrs::new(4);
        w(&mut v, 0x184, 4, 1 << 8); // disable 40
        v.set_line(40, true).unwrap();
        v.flush(&mut lrs).unwrap();
        assert!(lrs.held().is_empty());
        // Pending though: the guest sees it and it goes in on enable.
        assert_eq!(r(&mut v, 0x204, 4), 1 << 8);
        w(&mut v, 0x104, 4, 1 << 8);
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [40]);
        // Distributor disabled: nothing new goes in.
        w(&mut v, 0x000, 4, 0);
        v.set_line(41, true).unwrap();
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [40]);
        // Group 1 needs EnableGrp1.
        w(&mut v, 0x084, 4, 1 << 9);
        w(&mut v, 0x000, 4, 1);
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [40]);
        w(&mut v, 0x000, 4, 3);
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [40, 41]);
        assert!(lrs.regs[lrs.slot_of(41)].unwrap().group1);
        // An SPI targeting no CPU stays pending until it targets CPU 0.
        w(&mut v, 0x800 + 42, 1, 0);
        v.set_line(42, true).unwrap();
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [40, 41]);
        w(&mut v, 0x800 + 42, 1, 1);
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [40, 41, 42]);
    }

    #[test]
    fn sgir_and_sgi_pending_registers() {
        let mut v = ready();
        let mut lrs = Lrs::new(4);
        // Filter 0, target list CPU 0, SGI 3.
        w(&mut v, 0xf00, 4, 1 << 16 | 3);
        // Filter 1 (others) and list without CPU 0: nothing.
        w(&mut v, 0xf00, 4, 1 << 24 | 4);
        w(&mut v, 0xf00, 4, 2 << 16 | 5);
        // Filter 2 (self).
        w(&mut v, 0xf00, 4, 2 << 24 | 6);
        assert_eq!(r(&mut v, 0xf10, 4), 1 << 24);
        assert_eq!(r(&mut v, 0xf14, 4), 1 << 16);
        // SPENDSGIR byte, CPENDSGIR clears.
        w(&mut v, 0xf20 + 9, 1, 1);
        w(&mut v, 0xf10 + 6, 1, 1);
        v.flush(&mut lrs).unwrap();
        assert_eq!(lrs.held(), [3, 9]);
        assert!(v.set_line(3, true).is_err(), "SGIs only come from SGIR");
        assert!(v.set_line(128, true).is_err());
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
    fn lr_encoding() {
        let lr = ListRegister {
            vintid: 0x3ff,
            priority: 0xa8,
            state: LrState::PendingActive,
            group1: true,
            hw: None,
        };
        assert_eq!(
            lr.encode(),
            0x3ff | 0x15 << 23 | 3 << 28 | 1 << 30 | 1 << 19
        );
        let hw = ListRegister {
            vintid: 27,
            priority: 0,
            state: LrState::Active,
            group1: false,
            hw: Some(0x155),
        };
        assert_eq!(hw.encode(), 27 | 0x155 << 10 | 2 << 28 | 1 << 31);
        let inv = ListRegister {
            state: LrState::Invalid,
            ..hw
        };
        assert_eq!(inv.encode() >> 28 & 3, 0);
        let p = ListRegister {
            state: LrState::Pending,
            ..hw
        };
        assert_eq!(p.encode() >> 28 & 3, 1);
    }
}
