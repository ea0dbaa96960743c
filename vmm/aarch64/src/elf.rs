//! Loading a bare-metal guest from a static AArch64 ELF: each `PT_LOAD`
//! segment's file bytes go to its physical address (`p_paddr`) in guest
//! RAM, the rest of its memory size is zeroed, and the entry point is
//! `e_entry`. Test guests are built this way (no `objcopy` step between
//! the compiler and the packed image).
//!
//! Every field is checked before anything is written: a malformed or
//! hostile image is a typed [`ElfError`], never a panic or a write outside
//! guest RAM.

use bulkhead_virtio::GuestMemory;

/// Why a guest ELF is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than its headers claim, or not an ELF.
    Truncated,
    /// Not a 64-bit little-endian AArch64 executable.
    NotAarch64Exec,
    /// A segment's file bytes lie outside the file, or `p_filesz >
    /// p_memsz`.
    BadSegment(u16),
    /// A segment does not fit in guest RAM.
    OutsideRam(u16),
    /// The entry point is in no loaded segment.
    EntryOutside(u64),
}

/// Where a guest image is read from: a byte slice, or a memory region the
/// VMM reads by copy (a region shared with nobody still gets no Rust
/// reference from the runtime).
pub trait ImageSource {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Whether it is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `buf.len()` bytes from `offset`; `false` if out of range.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> bool;
}

impl ImageSource for [u8] {
    fn len(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> bool {
        let Ok(at) = usize::try_from(offset) else {
            return false;
        };
        match at.checked_add(buf.len()).and_then(|end| self.get(at..end)) {
            Some(s) => {
                buf.copy_from_slice(s);
                true
            }
            None => false,
        }
    }
}

/// Whether `image` starts like an ELF file.
#[must_use]
pub fn is_elf<S: ImageSource + ?Sized>(image: &S) -> bool {
    let mut m = [0u8; 4];
    image.read_at(0, &mut m) && &m == b"\x7fELF"
}

fn bytes<const N: usize, S: ImageSource + ?Sized>(b: &S, at: u64) -> Result<[u8; N], ElfError> {
    let mut w = [0u8; N];
    if b.read_at(at, &mut w) {
        Ok(w)
    } else {
        Err(ElfError::Truncated)
    }
}

fn u16_at<S: ImageSource + ?Sized>(b: &S, at: u64) -> Result<u16, ElfError> {
    Ok(u16::from_le_bytes(bytes(b, at)?))
}

fn u32_at<S: ImageSource + ?Sized>(b: &S, at: u64) -> Result<u32, ElfError> {
    Ok(u32::from_le_bytes(bytes(b, at)?))
}

fn u64_at<S: ImageSource + ?Sized>(b: &S, at: u64) -> Result<u64, ElfError> {
    Ok(u64::from_le_bytes(bytes(b, at)?))
}

const PT_LOAD: u32 = 1;
const EM_AARCH64: u16 = 183;
const ET_EXEC: u16 = 2;

/// One loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    paddr: u64,
    offset: u64,
    filesz: u64,
    memsz: u64,
}

/// Checks `image` and calls `each` for its segments (index, segment).
fn segments<S: ImageSource + ?Sized>(
    image: &S,
    mut each: impl FnMut(u16, Segment) -> Result<(), ElfError>,
) -> Result<u64, ElfError> {
    let ident: [u8; 8] = bytes(image, 0)?;
    if &ident[..4] != b"\x7fELF" || image.len() < 64 {
        return Err(ElfError::Truncated);
    }
    // EI_CLASS 2 (64-bit), EI_DATA 1 (little-endian).
    if ident[4] != 2 || ident[5] != 1 {
        return Err(ElfError::NotAarch64Exec);
    }
    if u16_at(image, 16)? != ET_EXEC || u16_at(image, 18)? != EM_AARCH64 {
        return Err(ElfError::NotAarch64Exec);
    }
    let entry = u64_at(image, 24)?;
    let phoff = u64_at(image, 32)?;
    let phentsize = u64::from(u16_at(image, 54)?);
    let phnum = u16_at(image, 56)?;
    if phentsize < 56 {
        return Err(ElfError::Truncated);
    }
    for i in 0..phnum {
        let at = phoff
            .checked_add(u64::from(i) * phentsize)
            .ok_or(ElfError::Truncated)?;
        if u32_at(image, at)? != PT_LOAD {
            continue;
        }
        let offset = u64_at(image, at + 8)?;
        let paddr = u64_at(image, at + 24)?;
        let filesz = u64_at(image, at + 32)?;
        let memsz = u64_at(image, at + 40)?;
        let end = offset.checked_add(filesz).ok_or(ElfError::BadSegment(i))?;
        if end > image.len() || filesz > memsz {
            return Err(ElfError::BadSegment(i));
        }
        each(
            i,
            Segment {
                paddr,
                offset,
                filesz,
                memsz,
            },
        )?;
    }
    Ok(entry)
}

/// Loads `image` into `ram` and returns its entry point. Everything is
/// checked first; nothing is written unless the whole image fits.
///
/// # Errors
/// An [`ElfError`] naming what is wrong.
pub fn load<S: ImageSource + ?Sized>(
    ram: &mut dyn GuestMemory,
    image: &S,
) -> Result<u64, ElfError> {
    // Pass 1: every segment fits, and the entry lies in one.
    let mut entry_ok = false;
    let entry = segments(image, |i, s| {
        ram.check_range(s.paddr, s.memsz)
            .map_err(|_| ElfError::OutsideRam(i))
    })?;
    segments(image, |_, s| {
        entry_ok |= entry >= s.paddr && entry - s.paddr < s.memsz;
        Ok(())
    })?;
    if !entry_ok {
        return Err(ElfError::EntryOutside(entry));
    }
    // Pass 2: copy, then zero-fill, in small chunks (no heap).
    segments(image, |i, s| {
        let mut buf = [0u8; 512];
        let mut done = 0u64;
        while done < s.memsz {
            let n = (s.memsz - done).min(buf.len() as u64);
            let chunk = &mut buf[..usize::try_from(n).unwrap_or(0)];
            let from_file = s.filesz.saturating_sub(done).min(n);
            let (file, zero) = chunk.split_at_mut(usize::try_from(from_file).unwrap_or(0));
            if !image.read_at(s.offset + done, file) {
                return Err(ElfError::BadSegment(i));
            }
            zero.fill(0);
            ram.write(s.paddr + done, chunk)
                .map_err(|_| ElfError::OutsideRam(i))?;
            done += n;
        }
        Ok(())
    })?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use bulkhead_virtio::SliceMemory;
    use std::vec::Vec;

    const RAM: u64 = 0x4000_0000;

    /// A minimal ELF: header, one PT_LOAD at `paddr` with `data`, memsz
    /// `memsz`, entry `entry`.
    fn elf(paddr: u64, data: &[u8], memsz: u64, entry: u64) -> Vec<u8> {
        let mut b = std::vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        b[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        b[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        b[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
        b[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        b[ph + 32..ph + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        b[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn loads_segments_zero_fills_and_returns_the_entry() {
        let mut backing = std::vec![0xaau8; 0x1000];
        let mut ram = SliceMemory::new(RAM, &mut backing);
        let image = elf(RAM + 0x100, &[1, 2, 3, 4], 8, RAM + 0x100);
        assert_eq!(load(&mut ram, image.as_slice()), Ok(RAM + 0x100));
        let mut out = [0u8; 10];
        ram.read(RAM + 0xff, &mut out).unwrap();
        assert_eq!(out, [0xaa, 1, 2, 3, 4, 0, 0, 0, 0, 0xaa]);
    }

    #[test]
    fn refuses_bad_images_without_writing() {
        let mut backing = std::vec![0u8; 0x1000];
        let mut ram = SliceMemory::new(RAM, &mut backing);
        let good = elf(RAM, &[1; 16], 16, RAM);
        assert_eq!(load(&mut ram, &good[..40]), Err(ElfError::Truncated));
        assert_eq!(load(&mut ram, &b"not an elf"[..]), Err(ElfError::Truncated));
        let mut x86 = good.clone();
        x86[18] = 62;
        assert_eq!(
            load(&mut ram, x86.as_slice()),
            Err(ElfError::NotAarch64Exec)
        );
        assert_eq!(
            load(
                &mut ram,
                elf(RAM + 0xff8, &[1; 16], 16, RAM + 0xff8).as_slice()
            ),
            Err(ElfError::OutsideRam(0))
        );
        assert_eq!(
            load(&mut ram, elf(RAM, &[1; 16], 8, RAM).as_slice()),
            Err(ElfError::BadSegment(0)),
            "filesz > memsz"
        );
        assert_eq!(
            load(&mut ram, elf(RAM, &[1; 16], 16, RAM + 0x800).as_slice()),
            Err(ElfError::EntryOutside(RAM + 0x800))
        );
        let mut cut = good.clone();
        cut.truncate(good.len() - 1);
        assert_eq!(load(&mut ram, cut.as_slice()), Err(ElfError::BadSegment(0)));
        let mut huge = good;
        huge[64 + 8..64 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(load(&mut ram, huge.as_slice()).is_err());
        assert!(backing.iter().all(|b| *b == 0), "nothing written");
    }
}
