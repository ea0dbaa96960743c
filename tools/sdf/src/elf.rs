//! Just enough ELF64 reading to know where a program image's loadable
//! segments sit, so the checker can tell when a `<map>` lands on top of
//! them. Every read is bounds-checked: an image is untrusted input.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// `e_machine` of AArch64.
pub const EM_AARCH64: u16 = 183;
const PT_LOAD: u32 = 1;
/// Program headers we are willing to read (real images have a handful).
const MAX_PHDRS: u16 = 256;

/// What the checker needs from an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `e_machine`.
    pub machine: u16,
    /// `[start, end)` of each `PT_LOAD` segment in memory (`p_vaddr`,
    /// `p_vaddr + p_memsz`), in file order.
    pub segments: Vec<(u64, u64)>,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Parse the ELF header and program headers from `header` (the file's first
/// 64 bytes) and `read_phdrs(offset, len)`.
fn parse(
    header: &[u8],
    read_phdrs: impl FnOnce(u64, usize) -> Option<Vec<u8>>,
) -> Result<ImageInfo, String> {
    if header.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file".into());
    }
    if header.get(4) != Some(&2) {
        return Err("not a 64-bit ELF (Microkit images are ELF64)".into());
    }
    if header.get(5) != Some(&1) {
        return Err("not a little-endian ELF".into());
    }
    let bad = || "truncated ELF header".to_string();
    let machine = u16_at(header, 18).ok_or_else(bad)?;
    let phoff = u64_at(header, 32).ok_or_else(bad)?;
    let phentsize = u16_at(header, 54).ok_or_else(bad)?;
    let phnum = u16_at(header, 56).ok_or_else(bad)?;
    if phnum > MAX_PHDRS {
        return Err(format!("{phnum} program headers (more than {MAX_PHDRS})"));
    }
    if phnum > 0 && phentsize < 56 {
        return Err(format!("program header size {phentsize} is below 56"));
    }
    let len = usize::from(phentsize) * usize::from(phnum);
    let table = read_phdrs(phoff, len).ok_or("program headers lie outside the file")?;
    let mut segments = Vec::new();
    for i in 0..usize::from(phnum) {
        let base = i * usize::from(phentsize);
        let truncated = || "truncated program header".to_string();
        if u32_at(&table, base).ok_or_else(truncated)? != PT_LOAD {
            continue;
        }
        let vaddr = u64_at(&table, base + 16).ok_or_else(truncated)?;
        let memsz = u64_at(&table, base + 40).ok_or_else(truncated)?;
        let end = vaddr
            .checked_add(memsz)
            .ok_or_else(|| format!("segment at {vaddr:#x} + {memsz:#x} overflows"))?;
        if memsz > 0 {
            segments.push((vaddr, end));
        }
    }
    Ok(ImageInfo { machine, segments })
}

/// Read the load segments of the ELF file at `path`.
pub fn read_image(path: &Path) -> Result<ImageInfo, String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut header = Vec::with_capacity(64);
    (&mut f)
        .take(64)
        .read_to_end(&mut header)
        .map_err(|e| e.to_string())?;
    parse(&header, |off, len| {
        f.seek(SeekFrom::Start(off)).ok()?;
        let mut buf = Vec::with_capacity(len);
        (&mut f)
            .take(u64::try_from(len).ok()?)
            .read_to_end(&mut buf)
            .ok()?;
        (buf.len() == len).then_some(buf)
    })
}

/// Parse an ELF image held in memory (for tests and fuzzing).
pub fn parse_bytes(bytes: &[u8]) -> Result<ImageInfo, String> {
    parse(bytes.get(..64).unwrap_or(bytes), |off, len| {
        let start = usize::try_from(off).ok()?;
        bytes
            .get(start..start.checked_add(len)?)
            .map(<[u8]>::to_vec)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal AArch64 ELF64 with the given `(vaddr, memsz)` PT_LOADs.
    pub(crate) fn elf(segments: &[(u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        let n = u16::try_from(segments.len()).unwrap();
        b[56..58].copy_from_slice(&n.to_le_bytes());
        for &(vaddr, memsz) in segments {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
            ph[24..32].copy_from_slice(&vaddr.to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            b.extend(ph);
        }
        b
    }

    #[test]
    fn reads_load_segments() {
        let info = parse_bytes(&elf(&[(0x20_0000, 0x1234), (0x21_0000, 0)])).unwrap();
        assert_eq!(info.machine, EM_AARCH64);
        assert_eq!(info.segments, [(0x20_0000, 0x20_1234)]);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(parse_bytes(b"").is_err());
        assert!(parse_bytes(b"\x7fELF").is_err());
        let mut e = elf(&[(0x20_0000, 0x1000)]);
        e.truncate(100);
        assert!(parse_bytes(&e).is_err());
        let mut e = elf(&[(u64::MAX - 1, 0x1000)]);
        assert!(parse_bytes(&e).is_err());
        e[4] = 1;
        assert!(parse_bytes(&e).unwrap_err().contains("64-bit"));
    }
}
