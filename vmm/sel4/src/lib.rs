//! The seL4 VMM PD's decisions that need no kernel: the guest-physical
//! layout beyond vmm/host's device slots (the GIC), how a trapped
//! instruction is classified, and reading a guest image out of a runtime
//! region. The PD itself is `src/bin/sel4_vmm.rs`.
#![no_std]

use bulkhead_runtime::Region;
use bulkhead_vmm_aarch64::boot::{Placement, ALIGN_2M};
use bulkhead_vmm_aarch64::elf::{self, ElfError, ImageSource};
use bulkhead_vmm_core::Window;

pub mod layout {
    //! Guest-physical addresses a guest of this VMM sees besides RAM and
    //! the virtio-mmio slots (`bulkhead_vmm_host::layout`): QEMU `virt`'s
    //! GICv2 — the distributor, emulated here, and the CPU interface, the
    //! hardware's virtual CPU interface (GICV) mapped by the `.system`
    //! file at [`GICC_BASE`].

    /// GIC distributor (emulated: `bulkhead_vmm_aarch64::vgic`).
    pub const GICD_BASE: u64 = 0x0800_0000;
    /// GIC CPU interface: the `.system` file maps GICV here.
    pub const GICC_BASE: u64 = 0x0801_0000;

    // The GIC (distributor page, CPU interface's two pages) lies below the
    // virtio-mmio slots.
    const _: () = assert!(GICD_BASE + 0x1000 <= GICC_BASE);
    const _: () = assert!(GICC_BASE + 0x2000 <= bulkhead_vmm_host::layout::MMIO_BASE);
}

/// The distributor's bus window (no line of its own).
pub const fn gicd_window() -> Window {
    Window {
        base: layout::GICD_BASE,
        size: bulkhead_vmm_aarch64::vgic::GICD_SIZE,
        irq: 0,
    }
}

/// A trapped guest instruction, from its syndrome's exception class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trap {
    /// `smc` (EC 0x17): a PSCI / SMCCC call.
    Smc,
    /// `wfi` / `wfe` (EC 0x01).
    Wfx,
    /// Anything else: the exception class.
    Other(u8),
}

impl Trap {
    /// Classifies `ESR_EL2`.
    pub fn from_esr(esr: u64) -> Trap {
        match (esr >> 26) & 0x3f {
            0x17 => Trap::Smc,
            0x01 => Trap::Wfx,
            // Masked to 6 bits above, so it fits.
            ec => Trap::Other(u8::try_from(ec).unwrap_or(u8::MAX)),
        }
    }
}

/// A guest image in a memory region the VMM maps read-only (`prefill_path`
/// in the `.system` file), read by copy.
#[derive(Debug, Clone, Copy)]
pub struct RegionImage(pub Region);

impl ImageSource for RegionImage {
    fn len(&self) -> u64 {
        self.0.size() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> bool {
        usize::try_from(offset).is_ok_and(|o| self.0.copy_out(o, buf).is_ok())
    }
}

/// Why a guest could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// The image is not an ELF (an arm64 Linux `Image` needs a device tree
    /// and initrd placement this VMM does not do yet).
    NotElf,
    /// The ELF was refused.
    Elf(ElfError),
}

/// Loads a bare-metal guest ELF from `image` into `ram`; returns the
/// entry point.
///
/// # Errors
/// [`LoadError`] when the image is not an ELF or does not fit.
pub fn load_guest<S: ImageSource + ?Sized>(
    ram: &mut dyn bulkhead_virtio::GuestMemory,
    image: &S,
) -> Result<u64, LoadError> {
    if !elf::is_elf(image) {
        return Err(LoadError::NotElf);
    }
    elf::load(ram, image).map_err(LoadError::Elf)
}

/// Where a Linux guest's blobs go, by `tools/compose`'s rules (`dt.rs`,
/// which writes the same addresses into the guest's device tree): kernel
/// base RAM + 2 MiB, initrd at RAM + RAM/2, device tree at RAM end − 2 MiB.
pub fn linux_placement(
    ram_base: u64,
    ram_size: u64,
    initrd_len: Option<u64>,
    dtb_len: u64,
) -> Placement {
    Placement {
        ram_base,
        ram_size,
        kernel_base: ram_base + ALIGN_2M,
        initrd: initrd_len.map(|n| (ram_base + ram_size / 2, n)),
        dtb: (ram_base + ram_size - ALIGN_2M, dtb_len),
    }
}

/// The size a flattened device tree declares (`totalsize`, big-endian at
/// offset 4), if the blob starts with the FDT magic.
pub fn dtb_len<S: ImageSource + ?Sized>(dtb: &S) -> Option<u64> {
    let mut h = [0u8; 8];
    if !dtb.read_at(0, &mut h) || h[..4] != [0xd0, 0x0d, 0xfe, 0xed] {
        return None;
    }
    Some(u64::from(u32::from_be_bytes([h[4], h[5], h[6], h[7]])))
}

/// A byte range of a source (the device tree's declared length inside its
/// page-rounded region).
#[derive(Debug, Clone, Copy)]
pub struct Prefix<'a, S: ?Sized>(pub &'a S, pub u64);

impl<S: ImageSource + ?Sized> ImageSource for Prefix<'_, S> {
    fn len(&self) -> u64 {
        self.1.min(self.0.len())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> bool {
        offset
            .checked_add(buf.len() as u64)
            .is_some_and(|end| end <= self.len())
            && self.0.read_at(offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traps_are_classified_by_exception_class() {
        assert_eq!(Trap::from_esr((0x17 << 26) | (1 << 25)), Trap::Smc);
        assert_eq!(Trap::from_esr((0x01 << 26) | (1 << 25) | 1), Trap::Wfx);
        assert_eq!(Trap::from_esr(0x18 << 26), Trap::Other(0x18));
    }

    #[test]
    fn the_gic_sits_below_the_virtio_slots_and_ram() {
        let w = gicd_window();
        assert!(w.base + w.size <= layout::GICC_BASE);
        let mut bus: bulkhead_vmm_core::Vmm<8> = bulkhead_vmm_core::Vmm::new();
        for w in bulkhead_vmm_host::windows() {
            bus.add(w).unwrap();
        }
        assert!(bus.add(w).is_ok(), "GICD overlaps no device slot");
    }

    #[test]
    fn linux_blobs_go_where_compose_says_and_the_dtb_length_is_its_own() {
        let p = linux_placement(0x4000_0000, 0x800_0000, Some(0x1000), 0x800);
        assert_eq!(p.kernel_base, 0x4020_0000);
        assert_eq!(p.initrd, Some((0x4400_0000, 0x1000)));
        assert_eq!(p.dtb, (0x47e0_0000, 0x800), "the DTB's /memreserve/");
        let mut dtb = [0u8; 32];
        dtb[..8].copy_from_slice(&[0xd0, 0x0d, 0xfe, 0xed, 0, 0, 0, 0x14]);
        assert_eq!(dtb_len(&dtb[..]), Some(0x14));
        assert_eq!(dtb_len(&[0u8; 8][..]), None);
        let pre = Prefix(&dtb[..], 0x14);
        assert_eq!(pre.len(), 0x14);
        let mut b = [0u8; 4];
        assert!(pre.read_at(0x10, &mut b));
        assert!(!pre.read_at(0x11, &mut b), "past the prefix");
    }

    #[test]
    fn a_non_elf_image_is_refused_before_anything_is_written() {
        let mut backing = [0u8; 64];
        let mut ram = bulkhead_virtio::SliceMemory::new(0x4000_0000, &mut backing);
        let image = [0x4du8, 0x5a, 0, 0];
        assert_eq!(load_guest(&mut ram, &image[..]), Err(LoadError::NotElf));
        assert!(backing.iter().all(|b| *b == 0));
    }
}
