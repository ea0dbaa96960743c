//! Guest boot: check an arm64 Linux `Image` header and the placement of the
//! kernel, initrd and device tree in guest RAM, load them, and give the
//! boot vCPU's initial state.
//!
//! The addresses come from the guest's configuration, which `tools/compose`
//! computes (`dt.rs`: kernel at RAM + 2 MiB, initrd at RAM + RAM/2, device
//! tree at RAM end − 2 MiB) and which already carries `/chosen`
//! `linux,initrd-start/end`; so the VMM does not patch the device tree, it
//! verifies that what it is told to load fits the rules of the Linux arm64
//! boot protocol (Documentation/arch/arm64/booting.rst):
//!
//! - Image header (64 bytes, little-endian): `text_offset` at 0x08,
//!   `image_size` at 0x10, `flags` at 0x18 (bit 0: big-endian kernel), magic
//!   0x644d5241 ("ARM\x64") at 0x38;
//! - the Image goes `text_offset` bytes above a 2 MiB-aligned base, and
//!   `image_size` bytes from there (text, data and BSS) must be free;
//! - the device tree is 8-byte aligned, at most 2 MiB, and does not share
//!   a 2 MiB block with anything else;
//! - entry with x0 = device tree address, x1..x3 = 0, MMU off, EL1h with
//!   D, A, I and F masked.

use bulkhead_virtio::GuestMemory;

use crate::elf::ImageSource;

/// The Image magic, "ARM\x64" read as a little-endian u32.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Size of the Image header.
pub const IMAGE_HEADER_LEN: usize = 64;
/// The boot protocol's alignment for the kernel base and the DTB's block.
pub const ALIGN_2M: u64 = 0x20_0000;
/// Largest device tree the boot protocol allows.
pub const DTB_MAX: u64 = 0x20_0000;
/// PSTATE at entry: M = EL1h (0b0101), D, A, I, F masked (bits 9..6).
pub const PSTATE_EL1H_DAIF: u64 = 0x3c5;

/// What is wrong with a guest's boot images or their placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootError {
    /// The Image is shorter than its header.
    TooShort,
    /// The magic at 0x38 is not "ARM\x64": not an arm64 Linux Image.
    BadMagic(u32),
    /// A big-endian kernel; guests run little-endian.
    BigEndian,
    /// `image_size` is 0 (kernels before 3.17): the BSS size is unknown,
    /// so the VMM cannot keep other images out of it.
    NoImageSize,
    /// The file is larger than the `image_size` it declares.
    FileLargerThanImage,
    /// An address is not aligned as the boot protocol requires.
    Misaligned(Blob),
    /// A blob does not lie wholly in guest RAM (or its end overflows).
    OutsideRam(Blob),
    /// Two blobs overlap (the DTB counting as its whole 2 MiB block).
    Overlap(Blob, Blob),
    /// The device tree is empty or larger than 2 MiB.
    DtbSize(u64),
    /// Writing into guest RAM failed.
    Memory,
}

/// Which boot blob an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blob {
    /// The kernel (from its load address for `image_size` bytes).
    Kernel,
    /// The initrd.
    Initrd,
    /// The device tree.
    Dtb,
}

/// The fields of an arm64 Image header the VMM uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the image above its 2 MiB-aligned base.
    pub text_offset: u64,
    /// Bytes the running kernel occupies from its load address.
    pub image_size: u64,
    /// The header's flags.
    pub flags: u64,
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

/// Parse and check the header of `image`.
///
/// # Errors
/// [`BootError::TooShort`], [`BootError::BadMagic`],
/// [`BootError::BigEndian`], [`BootError::NoImageSize`],
/// [`BootError::FileLargerThanImage`].
pub fn parse_image(image: &[u8]) -> Result<ImageHeader, BootError> {
    if image.len() < IMAGE_HEADER_LEN {
        return Err(BootError::TooShort);
    }
    let magic = u32::try_from(le64(image, 0x38) & 0xffff_ffff).unwrap_or(0);
    if magic != IMAGE_MAGIC {
        return Err(BootError::BadMagic(magic));
    }
    let h = ImageHeader {
        text_offset: le64(image, 0x08),
        image_size: le64(image, 0x10),
        flags: le64(image, 0x18),
    };
    if h.flags & 1 != 0 {
        return Err(BootError::BigEndian);
    }
    if h.image_size == 0 {
        return Err(BootError::NoImageSize);
    }
    if u64::try_from(image.len()).unwrap_or(u64::MAX) > h.image_size {
        return Err(BootError::FileLargerThanImage);
    }
    Ok(h)
}

/// Where the configuration says the blobs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Guest RAM base.
    pub ram_base: u64,
    /// Guest RAM size.
    pub ram_size: u64,
    /// The kernel's 2 MiB-aligned base (it loads at base + text_offset).
    pub kernel_base: u64,
    /// Initrd address and size, if there is one.
    pub initrd: Option<(u64, u64)>,
    /// Device tree address and size.
    pub dtb: (u64, u64),
}

/// The boot vCPU's state at entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryState {
    /// PC: the kernel's load address.
    pub pc: u64,
    /// x0: the device tree's address (x1..x3 are zero).
    pub x0: u64,
    /// SPSR for the first entry: EL1h, DAIF masked.
    pub pstate: u64,
}

/// A checked boot plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootPlan {
    /// Kernel load address (base + text_offset).
    pub kernel: u64,
    /// The checked header.
    pub header: ImageHeader,
    /// The boot vCPU's entry state.
    pub entry: EntryState,
}

fn range(start: u64, len: u64, p: &Placement, what: Blob) -> Result<(u64, u64), BootError> {
    let end = start.checked_add(len).ok_or(BootError::OutsideRam(what))?;
    let ram_end = p
        .ram_base
        .checked_add(p.ram_size)
        .ok_or(BootError::OutsideRam(what))?;
    if start < p.ram_base || end > ram_end {
        return Err(BootError::OutsideRam(what));
    }
    Ok((start, end))
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Check `p` for a kernel with header `h`.
///
/// # Errors
/// [`BootError`] naming the blob that is misaligned, outside RAM,
/// oversized or overlapping another.
pub fn plan(h: &ImageHeader, p: &Placement) -> Result<BootPlan, BootError> {
    if p.kernel_base % ALIGN_2M != 0 {
        return Err(BootError::Misaligned(Blob::Kernel));
    }
    let kernel = p
        .kernel_base
        .checked_add(h.text_offset)
        .ok_or(BootError::OutsideRam(Blob::Kernel))?;
    let k = range(kernel, h.image_size, p, Blob::Kernel)?;
    let (dtb, dtb_len) = p.dtb;
    if dtb_len == 0 || dtb_len > DTB_MAX {
        return Err(BootError::DtbSize(dtb_len));
    }
    if dtb % 8 != 0 {
        return Err(BootError::Misaligned(Blob::Dtb));
    }
    let d = range(dtb, dtb_len, p, Blob::Dtb)?;
    // The kernel maps the DTB with 2 MiB blocks: nothing else in them.
    let d_blocks = (
        d.0 & !(ALIGN_2M - 1),
        d.1.checked_add(ALIGN_2M - 1)
            .ok_or(BootError::OutsideRam(Blob::Dtb))?
            & !(ALIGN_2M - 1),
    );
    if overlaps(k, d_blocks) {
        return Err(BootError::Overlap(Blob::Kernel, Blob::Dtb));
    }
    if let Some((addr, len)) = p.initrd {
        // Page alignment: the kernel frees the initrd's pages after use.
        if addr % 0x1000 != 0 {
            return Err(BootError::Misaligned(Blob::Initrd));
        }
        let i = range(addr, len, p, Blob::Initrd)?;
        if overlaps(k, i) {
            return Err(BootError::Overlap(Blob::Kernel, Blob::Initrd));
        }
        if overlaps(i, d_blocks) {
            return Err(BootError::Overlap(Blob::Initrd, Blob::Dtb));
        }
    }
    Ok(BootPlan {
        kernel,
        header: *h,
        entry: EntryState {
            pc: kernel,
            x0: dtb,
            pstate: PSTATE_EL1H_DAIF,
        },
    })
}

/// Check everything, then copy the kernel, initrd and device tree into
/// guest RAM. Nothing is written unless every check passes.
///
/// # Errors
/// Any [`BootError`] from [`parse_image`] or [`plan`], or
/// [`BootError::Memory`] if a write into `ram` fails.
pub fn load(
    ram: &mut dyn GuestMemory,
    p: &Placement,
    image: &[u8],
    initrd: Option<&[u8]>,
    dtb: &[u8],
) -> Result<BootPlan, BootError> {
    let h = parse_image(image)?;
    let len = |b: &[u8]| u64::try_from(b.len()).unwrap_or(u64::MAX);
    // The sizes the placement states must be the blobs' real sizes.
    if p.dtb.1 != len(dtb) {
        return Err(BootError::DtbSize(len(dtb)));
    }
    match (p.initrd, initrd) {
        (Some((_, n)), Some(b)) if n == len(b) => {}
        (None, None) => {}
        _ => return Err(BootError::OutsideRam(Blob::Initrd)),
    }
    let plan = plan(&h, p)?;
    ram.write(plan.kernel, image)
        .map_err(|_| BootError::Memory)?;
    if let (Some((addr, _)), Some(b)) = (p.initrd, initrd) {
        ram.write(addr, b).map_err(|_| BootError::Memory)?;
    }
    ram.write(p.dtb.0, dtb).map_err(|_| BootError::Memory)?;
    Ok(plan)
}

/// Copies all of `src` to guest-physical `at` in small chunks (no heap).
fn copy_in<S: ImageSource + ?Sized>(
    ram: &mut dyn GuestMemory,
    at: u64,
    src: &S,
) -> Result<(), BootError> {
    let mut buf = [0u8; 512];
    let mut done = 0u64;
    while done < src.len() {
        let n = usize::try_from((src.len() - done).min(buf.len() as u64)).unwrap_or(0);
        let chunk = &mut buf[..n];
        if !src.read_at(done, chunk) {
            return Err(BootError::Memory);
        }
        ram.write(at + done, chunk).map_err(|_| BootError::Memory)?;
        done += n as u64;
    }
    Ok(())
}

/// [`load`] for blobs the VMM reads by copy (memory regions it maps
/// read-only): the same checks, then the same copies.
///
/// # Errors
/// As [`load`].
pub fn load_from<K, I, D>(
    ram: &mut dyn GuestMemory,
    p: &Placement,
    image: &K,
    initrd: Option<&I>,
    dtb: &D,
) -> Result<BootPlan, BootError>
where
    K: ImageSource + ?Sized,
    I: ImageSource + ?Sized,
    D: ImageSource + ?Sized,
{
    let mut header = [0u8; IMAGE_HEADER_LEN];
    if !image.read_at(0, &mut header) {
        return Err(BootError::TooShort);
    }
    let h = parse_image(&header)?;
    if image.len() > h.image_size {
        return Err(BootError::FileLargerThanImage);
    }
    if p.dtb.1 != dtb.len() {
        return Err(BootError::DtbSize(dtb.len()));
    }
    match (p.initrd, initrd) {
        (Some((_, n)), Some(b)) if n == b.len() => {}
        (None, None) => {}
        _ => return Err(BootError::OutsideRam(Blob::Initrd)),
    }
    let plan = plan(&h, p)?;
    copy_in(ram, plan.kernel, image)?;
    if let (Some((addr, _)), Some(b)) = (p.initrd, initrd) {
        copy_in(ram, addr, b)?;
    }
    copy_in(ram, p.dtb.0, dtb)?;
    Ok(plan)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // Test patterns wrap on purpose.
mod tests {
    use super::*;
    extern crate std;
    use bulkhead_virtio::SliceMemory;
    use std::vec::Vec;

    const RAM: u64 = 0x4000_0000;
    const RAM_SIZE: u64 = 0x0400_0000; // 64 MiB

    fn image(text_offset: u64, image_size: u64, flags: u64, len: usize) -> Vec<u8> {
        let mut b = std::vec![0u8; len];
        b[8..16].copy_from_slice(&text_offset.to_le_bytes());
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[24..32].copy_from_slice(&flags.to_le_bytes());
        b[0x38..0x3c].copy_from_slice(b"ARM\x64");
        for (i, x) in b.iter_mut().enumerate().skip(64) {
            *x = i as u8;
        }
        b
    }

    /// compose's layout: kernel RAM + 2 MiB, initrd RAM + RAM/2, DTB at
    /// RAM end − 2 MiB.
    fn placement(initrd: u64, dtb: u64) -> Placement {
        Placement {
            ram_base: RAM,
            ram_size: RAM_SIZE,
            kernel_base: RAM + ALIGN_2M,
            initrd: (initrd > 0).then_some((RAM + RAM_SIZE / 2, initrd)),
            dtb: (RAM + RAM_SIZE - ALIGN_2M, dtb),
        }
    }

    #[test]
    fn header_magic_is_arm64_le() {
        assert_eq!(u32::from_le_bytes(*b"ARM\x64"), IMAGE_MAGIC);
    }

    #[test]
    fn parse_good_and_bad_headers() {
        let h = parse_image(&image(0, 0x10_0000, 0b1010, 4096)).unwrap();
        assert_eq!(
            h,
            ImageHeader {
                text_offset: 0,
                image_size: 0x10_0000,
                flags: 0b1010
            }
        );
        assert_eq!(parse_image(&[0u8; 63]), Err(BootError::TooShort));
        let mut bad = image(0, 0x10_0000, 0, 4096);
        bad[0x38] = b'X';
        assert!(matches!(parse_image(&bad), Err(BootError::BadMagic(_))));
        assert_eq!(
            parse_image(&image(0, 0x10_0000, 1, 4096)),
            Err(BootError::BigEndian)
        );
        assert_eq!(
            parse_image(&image(0x8_0000, 0, 0, 4096)),
            Err(BootError::NoImageSize)
        );
        assert_eq!(
            parse_image(&image(0, 4095, 0, 4096)),
            Err(BootError::FileLargerThanImage)
        );
    }

    #[test]
    fn plan_entry_state() {
        let h = parse_image(&image(0x8_0000, 0x20_0000, 0, 4096)).unwrap();
        let p = plan(&h, &placement(0x10_0000, 0x4000)).unwrap();
        assert_eq!(p.kernel, RAM + ALIGN_2M + 0x8_0000);
        assert_eq!(
            p.entry,
            EntryState {
                pc: RAM + ALIGN_2M + 0x8_0000,
                x0: RAM + RAM_SIZE - ALIGN_2M,
                pstate: 0x3c5
            }
        );
        // EL1h with D, A, I, F set.
        assert_eq!(PSTATE_EL1H_DAIF & 0xf, 0b0101);
        assert_eq!(PSTATE_EL1H_DAIF >> 6 & 0xf, 0xf);
    }

    #[test]
    fn plan_rejects_bad_placements() {
        let h = parse_image(&image(0, 0x100_0000, 0, 4096)).unwrap();
        // Kernel base not 2 MiB aligned.
        let mut p = placement(0, 0x4000);
        p.kernel_base += 0x1000;
        assert_eq!(plan(&h, &p), Err(BootError::Misaligned(Blob::Kernel)));
        // Kernel BSS runs into the initrd (16 MiB kernel at +2 MiB reaches
        // 18 MiB; initrd moved to +16 MiB).
        let mut p = placement(0x1000, 0x4000);
        p.initrd = Some((RAM + 0x100_0000, 0x1000));
        assert_eq!(
            plan(&h, &p),
            Err(BootError::Overlap(Blob::Kernel, Blob::Initrd))
        );
        // Kernel too big for RAM.
        let huge = ImageHeader {
            image_size: RAM_SIZE,
            ..h
        };
        assert_eq!(
            plan(&huge, &placement(0, 0x4000)),
            Err(BootError::OutsideRam(Blob::Kernel))
        );
        // DTB: misaligned, empty, over 2 MiB, past RAM end, sharing its
        // 2 MiB block with the initrd.
        let mut p = placement(0, 0x4000);
        p.dtb.0 += 4;
        assert_eq!(plan(&h, &p), Err(BootError::Misaligned(Blob::Dtb)));
        assert_eq!(plan(&h, &placement(0, 0)), Err(BootError::DtbSize(0)));
        assert_eq!(
            plan(&h, &placement(0, DTB_MAX + 8)),
            Err(BootError::DtbSize(DTB_MAX + 8))
        );
        let mut p = placement(0, 0x4000);
        p.dtb.0 = RAM + RAM_SIZE - 0x2000;
        assert_eq!(plan(&h, &p), Err(BootError::OutsideRam(Blob::Dtb)));
        let mut p = placement(0x1000, 0x4000);
        p.initrd = Some((RAM + RAM_SIZE - ALIGN_2M + 0x10_0000, 0x1000));
        assert_eq!(
            plan(&h, &p),
            Err(BootError::Overlap(Blob::Initrd, Blob::Dtb))
        );
        // Initrd misaligned or outside RAM; overflowing addresses.
        let mut p = placement(0x1000, 0x4000);
        p.initrd = Some((RAM + RAM_SIZE / 2 + 8, 0x1000));
        assert_eq!(plan(&h, &p), Err(BootError::Misaligned(Blob::Initrd)));
        p.initrd = Some((!0xfff, 0x2000));
        assert_eq!(plan(&h, &p), Err(BootError::OutsideRam(Blob::Initrd)));
        let odd = ImageHeader {
            text_offset: u64::MAX,
            ..h
        };
        assert_eq!(
            plan(&odd, &placement(0, 0x4000)),
            Err(BootError::OutsideRam(Blob::Kernel))
        );
        let mut p = placement(0, 0x4000);
        p.ram_size = u64::MAX;
        assert!(plan(&h, &p).is_err());
    }

    #[test]
    fn load_copies_all_three() {
        let mut backing = std::vec![0u8; usize::try_from(RAM_SIZE).unwrap()];
        let mut ram = SliceMemory::new(RAM, &mut backing);
        let img = image(0, 0x20_0000, 0, 8192);
        let initrd: Vec<u8> = (0..0x3000u32).map(|i| (i * 7) as u8).collect();
        let dtb = [0xd0u8, 0x0d, 0xfe, 0xed, 0, 0, 0, 8];
        let p = placement(initrd.len() as u64, dtb.len() as u64);
        let plan = load(&mut ram, &p, &img, Some(&initrd), &dtb).unwrap();
        let mut back = std::vec![0u8; img.len()];
        ram.read(plan.kernel, &mut back).unwrap();
        assert_eq!(back, img);
        let mut back = std::vec![0u8; initrd.len()];
        ram.read(p.initrd.unwrap().0, &mut back).unwrap();
        assert_eq!(back, initrd);
        let mut back = [0u8; 8];
        ram.read(p.dtb.0, &mut back).unwrap();
        assert_eq!(back, dtb);
        // Sizes that disagree with the blobs are refused before writing.
        let mut wrong = p;
        wrong.dtb.1 = 16;
        assert_eq!(
            load(&mut ram, &wrong, &img, Some(&initrd), &dtb),
            Err(BootError::DtbSize(8))
        );
        assert!(load(&mut ram, &p, &img, None, &dtb).is_err());
        let mut bad = img.clone();
        bad[0x39] = 0;
        let before = backing_snapshot(&ram, p.dtb.0);
        assert!(load(&mut ram, &p, &bad, Some(&initrd), &[1u8; 8]).is_err());
        assert_eq!(backing_snapshot(&ram, p.dtb.0), before, "nothing written");
    }

    #[test]
    fn load_from_sources_matches_load_from_slices() {
        let img = image(0, 0x20_0000, 0, 8192);
        let initrd: Vec<u8> = (0..0x1234u32).map(|i| (i * 13) as u8).collect();
        let dtb = [0xd0u8, 0x0d, 0xfe, 0xed, 0, 0, 0, 8];
        let p = placement(initrd.len() as u64, dtb.len() as u64);
        let mut a = std::vec![0u8; usize::try_from(RAM_SIZE).unwrap()];
        let mut b = a.clone();
        let plan_a = load(
            &mut SliceMemory::new(RAM, &mut a),
            &p,
            &img,
            Some(&initrd),
            &dtb,
        );
        let plan_b = load_from(
            &mut SliceMemory::new(RAM, &mut b),
            &p,
            img.as_slice(),
            Some(initrd.as_slice()),
            &dtb[..],
        );
        assert_eq!(plan_a, plan_b);
        assert!(plan_b.is_ok());
        assert!(a == b, "same bytes in guest RAM");
        // A file larger than its image_size is refused here too.
        let big = image(0, 0x1000, 0, 8192);
        assert_eq!(
            load_from(
                &mut SliceMemory::new(RAM, &mut b),
                &p,
                big.as_slice(),
                Some(initrd.as_slice()),
                &dtb[..]
            ),
            Err(BootError::FileLargerThanImage)
        );
    }

    fn backing_snapshot(ram: &SliceMemory<'_>, at: u64) -> [u8; 8] {
        let mut b = [0u8; 8];
        ram.read(at, &mut b).unwrap();
        b
    }
}
