//! PCIe configuration through ECAM: enumeration of bus 0, BAR sizing and
//! programming into a 32-bit MMIO window, command register, INTx routing.
//!
//! On QEMU `virt` nothing assigns BARs before the driver PD runs, so the PD
//! does it: size each BAR by writing all-ones and reading back the
//! read-only low bits (PCI Local Bus 3.0 §6.2.5.1), place it naturally
//! aligned in the window, then enable memory decoding.
#![no_std]
// `deny`, not `forbid`: the one volatile MMIO module (`mmio::volatile`) opts out.
#![deny(unsafe_code)]

pub mod mmio;

pub use mmio::Mmio;

/// ECAM base on QEMU `virt` with `highmem` (QEMU `hw/arm/virt.c`, VIRT_HIGH_PCIE_ECAM).
pub const VIRT_ECAM_BASE: u64 = 0x40_1000_0000;
/// ECAM size on QEMU `virt` (256 buses × 1 MiB).
pub const VIRT_ECAM_SIZE: u64 = 0x1000_0000;
/// QEMU `virt` 32-bit PCI MMIO window start (VIRT_PCIE_MMIO).
pub const VIRT_MMIO32_BASE: u64 = 0x1000_0000;
/// QEMU `virt` 32-bit PCI MMIO window end (exclusive).
pub const VIRT_MMIO32_END: u64 = 0x3eff_0000;

/// Vendor/device id register.
pub const ID: u16 = 0x00;
/// Command (low half) and status (high half).
pub const COMMAND: u16 = 0x04;
/// Header type byte lives in this word (bits 23..16).
pub const HEADER: u16 = 0x0c;
/// First BAR.
pub const BAR0: u16 = 0x10;
/// Interrupt line (7..0) and pin (15..8).
pub const INTERRUPT: u16 = 0x3c;
/// Command: memory space decoding.
pub const CMD_MEMORY: u32 = 1 << 1;
/// Command: bus master.
pub const CMD_BUS_MASTER: u32 = 1 << 2;
/// Command: INTx disable.
pub const CMD_INTX_DISABLE: u32 = 1 << 10;

/// A PCI function's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0..32.
    pub dev: u8,
    /// Function number, 0..8.
    pub func: u8,
}

impl Bdf {
    fn offset(self, reg: u16) -> usize {
        (usize::from(self.bus) << 20)
            | (usize::from(self.dev & 0x1f) << 15)
            | (usize::from(self.func & 7) << 12)
            | usize::from(reg & 0xffc)
    }
}

/// Why BAR assignment failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciError {
    /// No function at that address.
    Absent,
    /// The window cannot hold a BAR of that size.
    WindowFull,
    /// The BAR reports an impossible size mask.
    BadBar,
}

/// A memory BAR as programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Bus address (identical to the CPU physical address on `virt`).
    pub addr: u64,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// 64-bit BAR (occupies two slots; placed below 4 GiB anyway).
    pub is_64: bool,
}

/// A bump allocator over an MMIO window; each BAR naturally aligned.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    next: u64,
    end: u64,
}

impl Window {
    /// The window `[base, end)`.
    pub const fn new(base: u64, end: u64) -> Self {
        Self { next: base, end }
    }

    /// QEMU `virt`'s 32-bit MMIO window.
    pub const fn virt_mmio32() -> Self {
        Self::new(VIRT_MMIO32_BASE, VIRT_MMIO32_END)
    }

    /// Reserves `size` (a power of two) bytes aligned to `size`.
    pub fn alloc(&mut self, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        let at = self.next.checked_add(size - 1)? & !(size - 1);
        let end = at.checked_add(size)?;
        (end <= self.end).then(|| {
            self.next = end;
            at
        })
    }
}

/// The ECAM region of one host bridge.
#[derive(Debug)]
pub struct Ecam<M: Mmio> {
    mmio: M,
}

impl<M: Mmio> Ecam<M> {
    /// Wraps the mapped ECAM region.
    pub fn new(mmio: M) -> Self {
        Self { mmio }
    }

    /// The register access, back.
    pub fn into_inner(self) -> M {
        self.mmio
    }

    /// Reads config word `reg` of `bdf`.
    pub fn read(&self, bdf: Bdf, reg: u16) -> u32 {
        self.mmio.read32(bdf.offset(reg))
    }

    /// Writes config word `reg` of `bdf`.
    pub fn write(&mut self, bdf: Bdf, reg: u16, v: u32) {
        self.mmio.write32(bdf.offset(reg), v);
    }

    fn present(&self, bdf: Bdf) -> bool {
        self.read(bdf, ID) & 0xffff != 0xffff
    }

    /// Functions on bus 0 with this vendor and device id, written to `out`
    /// in slot order; returns how many were found (at most `out.len()`).
    pub fn find(&self, vendor: u16, device: u16, out: &mut [Bdf]) -> usize {
        let want = u32::from(device) << 16 | u32::from(vendor);
        let mut n = 0;
        for dev in 0..32u8 {
            let f0 = Bdf {
                bus: 0,
                dev,
                func: 0,
            };
            if !self.present(f0) {
                continue;
            }
            let multi = self.read(f0, HEADER) & (0x80 << 16) != 0;
            let funcs = if multi { 8 } else { 1 };
            for func in 0..funcs {
                let bdf = Bdf { bus: 0, dev, func };
                if self.read(bdf, ID) == want && n < out.len() {
                    out[n] = bdf;
                    n += 1;
                }
            }
        }
        n
    }

    /// Sizes every memory BAR of the type-0 function `bdf`, places it in
    /// `window` and enables memory decoding (and bus mastering if
    /// `bus_master`). Returns the BARs by index (`None`: unimplemented,
    /// I/O, or the upper half of a 64-bit BAR).
    ///
    /// # Errors
    /// [`PciError`]; decoding stays disabled then.
    pub fn assign_bars(
        &mut self,
        bdf: Bdf,
        window: &mut Window,
        bus_master: bool,
    ) -> Result<[Option<Bar>; 6], PciError> {
        if !self.present(bdf) {
            return Err(PciError::Absent);
        }
        // Decoding off while BARs hold probe values.
        let cmd = self.read(bdf, COMMAND) & 0xffff;
        self.write(bdf, COMMAND, cmd & !(CMD_MEMORY | CMD_BUS_MASTER));
        let mut bars = [None; 6];
        let mut i = 0u16;
        while i < 6 {
            let reg = BAR0 + 4 * i;
            let orig = self.read(bdf, reg);
            if orig & 1 != 0 {
                // I/O BAR: `virt` has no use for port space here; leave it.
                i += 1;
                continue;
            }
            let is_64 = (orig >> 1) & 3 == 2;
            self.write(bdf, reg, u32::MAX);
            let lo = self.read(bdf, reg) & !0xf;
            let hi = if is_64 && i < 5 {
                self.write(bdf, reg + 4, u32::MAX);
                self.read(bdf, reg + 4)
            } else {
                0
            };
            let mask = u64::from(hi) << 32 | u64::from(lo);
            if mask == 0 {
                // Unimplemented BAR.
                self.write(bdf, reg, orig);
                i += 1;
                continue;
            }
            let mask = if is_64 {
                mask
            } else {
                mask | 0xffff_ffff_0000_0000
            };
            let size = (!mask).wrapping_add(1);
            if !size.is_power_of_two() || size < 16 {
                return Err(PciError::BadBar);
            }
            let addr = window.alloc(size).ok_or(PciError::WindowFull)?;
            // The window is below 4 GiB: the upper half is 0.
            self.write(
                bdf,
                reg,
                u32::try_from(addr & 0xffff_fff0).map_err(|_| PciError::WindowFull)?,
            );
            if is_64 {
                self.write(
                    bdf,
                    reg + 4,
                    u32::try_from(addr >> 32).map_err(|_| PciError::WindowFull)?,
                );
            }
            bars[usize::from(i)] = Some(Bar { addr, size, is_64 });
            i += if is_64 { 2 } else { 1 };
        }
        let mut cmd = (cmd | CMD_MEMORY) & !CMD_INTX_DISABLE;
        if bus_master {
            cmd |= CMD_BUS_MASTER;
        }
        self.write(bdf, COMMAND, cmd);
        Ok(bars)
    }

    /// The GIC INTID the function's INTx pin raises on QEMU `virt`, if it
    /// has a pin (bus 0 only: no bridges are swizzled).
    pub fn virt_intid(&self, bdf: Bdf) -> Option<u32> {
        let pin = (self.read(bdf, INTERRUPT) >> 8) & 0xff;
        virt_intx_intid(bdf.dev, pin)
    }
}

/// QEMU `virt`'s INTx routing: slot `s`, pin `p` (1 = INTA … 4 = INTD) goes
/// to SPI 3 + ((s + p − 1) mod 4), i.e. GIC INTID 35..=38 (`create_pcie_irq_map`
/// in `hw/arm/virt.c`).
pub fn virt_intx_intid(slot: u8, pin: u32) -> Option<u32> {
    (1..=4)
        .contains(&pin)
        .then(|| 32 + 3 + (u32::from(slot) + pin - 1) % 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_aligns_naturally_and_refuses_overflow() {
        let mut w = Window::new(0x1000_0000, 0x1002_0000);
        assert_eq!(w.alloc(0x8000), Some(0x1000_0000));
        assert_eq!(
            w.alloc(0x10000),
            Some(0x1001_0000),
            "aligned up past the hole"
        );
        assert_eq!(w.alloc(0x100), None, "full");
        assert_eq!(w.alloc(3), None, "not a power of two");
    }

    #[test]
    fn intx_swizzle_matches_virt() {
        assert_eq!(virt_intx_intid(0, 1), Some(35));
        assert_eq!(virt_intx_intid(1, 1), Some(36));
        assert_eq!(virt_intx_intid(3, 2), Some(35));
        assert_eq!(virt_intx_intid(2, 4), Some(36));
        assert_eq!(virt_intx_intid(2, 3), Some(35));
        assert_eq!(virt_intx_intid(2, 0), None);
    }
}
