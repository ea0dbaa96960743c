//! The seL4 VMM PD's decisions that need no kernel: the guest-physical
//! layout beyond vmm/host's device slots (the GIC), how a trapped
//! instruction is classified, reading a guest image out of a runtime
//! region, and naming a Linux guest's initrd in its device tree. The PD
//! itself is `src/bin/sel4_vmm.rs`.
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

/// Why [`with_initrd`] could not name the initrd in a device tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdtError {
    /// Not a flattened device tree (magic), or its header's offsets and
    /// sizes do not fit the blob or are not in dtc's order (reserve map,
    /// structure, strings).
    BadHeader,
    /// The structure block ends early or holds an unknown token.
    BadStructure,
    /// The tree has no `/chosen` node.
    NoChosen,
    /// The result does not fit the output buffer.
    TooLarge,
}

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
const START_NAME: &[u8] = b"linux,initrd-start\0";
const END_NAME: &[u8] = b"linux,initrd-end\0";

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

fn usize32(b: &[u8], at: usize) -> Result<usize, FdtError> {
    be32(b, at)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or(FdtError::BadHeader)
}

/// Where `/chosen`'s properties start in the structure block `st` (just
/// past its `FDT_BEGIN_NODE` and name), and whether it already has a
/// `linux,initrd-start` property (`strings`: the strings block).
fn find_chosen(st: &[u8], strings: &[u8]) -> Result<(usize, bool), FdtError> {
    let mut at = 0usize;
    let mut depth = 0u32;
    let mut chosen: Option<usize> = None;
    loop {
        let token = be32(st, at).ok_or(FdtError::BadStructure)?;
        at += 4;
        match token {
            FDT_BEGIN_NODE => {
                let rest = st.get(at..).ok_or(FdtError::BadStructure)?;
                let n = rest
                    .iter()
                    .position(|&c| c == 0)
                    .ok_or(FdtError::BadStructure)?;
                let name = &rest[..n];
                at = (at + n + 1 + 3) & !3;
                depth += 1;
                if depth == 2 && chosen.is_none() && name == b"chosen" {
                    chosen = Some(at);
                }
            }
            FDT_END_NODE => {
                if depth == 2 {
                    if let Some(c) = chosen {
                        return Ok((c, false));
                    }
                }
                depth = depth.checked_sub(1).ok_or(FdtError::BadStructure)?;
            }
            FDT_PROP => {
                let len = usize32(st, at).map_err(|_| FdtError::BadStructure)?;
                let off = usize32(st, at + 4).map_err(|_| FdtError::BadStructure)?;
                if depth == 2 && chosen.is_some() {
                    let name = strings.get(off..).unwrap_or(&[]);
                    if name.starts_with(START_NAME) {
                        return Ok((chosen.unwrap_or(at), true));
                    }
                }
                at = at.checked_add(8 + len + 3).ok_or(FdtError::BadStructure)? & !3;
            }
            FDT_NOP => {}
            FDT_END => return Err(FdtError::NoChosen),
            _ => return Err(FdtError::BadStructure),
        }
    }
}

/// Writes into `out` the device tree `dtb` with `/chosen`
/// `linux,initrd-start` / `linux,initrd-end` (64-bit) naming
/// `[start, end)`, the two properties first in the node and their names
/// appended to the strings block; returns the new blob's length. A tree
/// whose `/chosen` already names an initrd is copied unchanged (the
/// description's choice stands). Compose's trees carry the PSCI conduit
/// and `bootargs`; the initrd's place is the VMM's to know.
///
/// # Errors
/// [`FdtError`]: a malformed tree, no `/chosen`, or no room in `out`.
pub fn with_initrd(dtb: &[u8], out: &mut [u8], start: u64, end: u64) -> Result<usize, FdtError> {
    if dtb.get(..4) != Some(&[0xd0, 0x0d, 0xfe, 0xed][..]) {
        return Err(FdtError::BadHeader);
    }
    let total = usize32(dtb, 4)?;
    let (off_st, off_str, off_rsv) = (usize32(dtb, 8)?, usize32(dtb, 12)?, usize32(dtb, 16)?);
    let (size_str, size_st) = (usize32(dtb, 32)?, usize32(dtb, 36)?);
    let st_end = off_st.checked_add(size_st).ok_or(FdtError::BadHeader)?;
    let str_end = off_str.checked_add(size_str).ok_or(FdtError::BadHeader)?;
    if total > dtb.len()
        || off_rsv > off_st
        || st_end > off_str
        || str_end > total
        || off_st % 4 != 0
    {
        return Err(FdtError::BadHeader);
    }
    let st = &dtb[off_st..st_end];
    let strings = &dtb[off_str..str_end];
    let (at, has) = find_chosen(st, strings)?;
    if has {
        let o = out.get_mut(..total).ok_or(FdtError::TooLarge)?;
        o.copy_from_slice(&dtb[..total]);
        return Ok(total);
    }
    // Two properties of one u64 each: token, len, nameoff, value.
    let mut props = [0u8; 40];
    let name_off = [size_str, size_str + START_NAME.len()];
    for (i, value) in [start, end].into_iter().enumerate() {
        let p = &mut props[i * 20..i * 20 + 20];
        p[..4].copy_from_slice(&FDT_PROP.to_be_bytes());
        p[4..8].copy_from_slice(&8u32.to_be_bytes());
        let off = u32::try_from(name_off[i]).map_err(|_| FdtError::TooLarge)?;
        p[8..12].copy_from_slice(&off.to_be_bytes());
        p[12..20].copy_from_slice(&value.to_be_bytes());
    }
    let new_off_str = off_str + props.len();
    let new_size_str = size_str + START_NAME.len() + END_NAME.len();
    let new_total = new_off_str + new_size_str;
    let o = out.get_mut(..new_total).ok_or(FdtError::TooLarge)?;
    let split = off_st + at;
    o[..split].copy_from_slice(&dtb[..split]);
    o[split..split + props.len()].copy_from_slice(&props);
    o[split + props.len()..new_off_str].copy_from_slice(&dtb[split..off_str]);
    o[new_off_str..new_off_str + size_str].copy_from_slice(strings);
    let names = new_off_str + size_str;
    o[names..names + START_NAME.len()].copy_from_slice(START_NAME);
    o[names + START_NAME.len()..new_total].copy_from_slice(END_NAME);
    for (field, v) in [
        (4, new_total),
        (12, new_off_str),
        (32, new_size_str),
        (36, size_st + props.len()),
    ] {
        let v = u32::try_from(v).map_err(|_| FdtError::TooLarge)?;
        o[field..field + 4].copy_from_slice(&v.to_be_bytes());
    }
    Ok(new_total)
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

    /// A minimal dtc-ordered tree: `/ { chosen { bootargs = "x"; }; };`
    /// (`chosen`: whether the node is there). Returns the blob and its
    /// length.
    fn tiny_tree(chosen: bool) -> ([u8; 256], usize) {
        let mut st = [0u8; 128];
        let mut n = 0;
        let mut put = |w: &[u8], n: &mut usize| {
            st[*n..*n + w.len()].copy_from_slice(w);
            *n += w.len();
        };
        put(&1u32.to_be_bytes(), &mut n);
        put(&[0, 0, 0, 0], &mut n); // "" padded
        put(&1u32.to_be_bytes(), &mut n);
        put(if chosen { b"chosen\0\0" } else { b"memory\0\0" }, &mut n);
        put(&3u32.to_be_bytes(), &mut n);
        put(&2u32.to_be_bytes(), &mut n);
        put(&0u32.to_be_bytes(), &mut n);
        put(b"x\0\0\0", &mut n);
        put(&2u32.to_be_bytes(), &mut n);
        put(&2u32.to_be_bytes(), &mut n);
        put(&9u32.to_be_bytes(), &mut n);
        let strings = b"bootargs\0";
        let (off_rsv, off_st) = (40usize, 56usize);
        let off_str = off_st + n;
        let total = off_str + strings.len();
        let mut b = [0u8; 256];
        for (field, v) in [
            (0, 0xd00d_feed_usize),
            (4, total),
            (8, off_st),
            (12, off_str),
            (16, off_rsv),
            (20, 17),
            (24, 16),
            (32, strings.len()),
            (36, n),
        ] {
            b[field..field + 4].copy_from_slice(&u32::try_from(v).unwrap().to_be_bytes());
        }
        b[off_st..off_st + n].copy_from_slice(&st[..n]);
        b[off_str..total].copy_from_slice(strings);
        (b, total)
    }

    #[test]
    fn the_initrd_is_named_in_chosen_and_the_tree_stays_well_formed() {
        let (b, len) = tiny_tree(true);
        let mut out = [0u8; 512];
        let n = with_initrd(&b[..len], &mut out, 0x4400_0000, 0x4410_0000).unwrap();
        assert_eq!(n, len + 40 + 36);
        let t = &out[..n];
        assert_eq!(dtb_len(t), Some(n as u64));
        let off_st = be32(t, 8).unwrap() as usize;
        let off_str = be32(t, 12).unwrap() as usize;
        let size_st = be32(t, 36).unwrap() as usize;
        let strings = &t[off_str..off_str + be32(t, 32).unwrap() as usize];
        // Found again: the tree walks, and the property is there.
        let (at, has) = find_chosen(&t[off_st..off_st + size_st], strings).unwrap();
        assert!(has);
        // Its value: the first property after /chosen's name.
        let prop = off_st + 20;
        assert_eq!(be32(t, prop), Some(3));
        assert_eq!(&t[prop + 12..prop + 20], &0x4400_0000u64.to_be_bytes());
        assert_eq!(&t[prop + 32..prop + 40], &0x4410_0000u64.to_be_bytes());
        let name = be32(t, prop + 28).unwrap() as usize;
        assert!(strings[name..].starts_with(b"linux,initrd-end\0"));
        // bootargs (after the two) still names "bootargs".
        assert_eq!(be32(t, prop + 40), Some(3));
        assert_eq!(at, 20, "just past /chosen's name");
        // Already named: copied as is.
        let mut again = [0u8; 512];
        assert_eq!(with_initrd(t, &mut again, 1, 2), Ok(n));
        assert_eq!(&again[..n], t);
    }

    #[test]
    fn a_tree_without_chosen_or_room_or_magic_is_refused() {
        let (b, len) = tiny_tree(false);
        let mut out = [0u8; 512];
        assert_eq!(
            with_initrd(&b[..len], &mut out, 1, 2),
            Err(FdtError::NoChosen)
        );
        let (b, len) = tiny_tree(true);
        let mut small = [0u8; 64];
        assert_eq!(
            with_initrd(&b[..len], &mut small, 1, 2),
            Err(FdtError::TooLarge)
        );
        assert_eq!(
            with_initrd(&b[..len - 1], &mut out, 1, 2),
            Err(FdtError::BadHeader)
        );
        let mut bad = b;
        bad[0] = 0;
        assert_eq!(
            with_initrd(&bad[..len], &mut out, 1, 2),
            Err(FdtError::BadHeader)
        );
        let mut junk = b;
        junk[56] = 7; // an unknown token where the root node begins
        assert_eq!(
            with_initrd(&junk[..len], &mut out, 1, 2),
            Err(FdtError::BadStructure)
        );
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
