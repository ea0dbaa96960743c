//! The project's GPT disk-image builder: protective MBR, primary header and
//! 128-entry array at LBA 1–33, partitions aligned to 1 MiB, backup array
//! and header at the end. Deterministic: GUIDs are derived from the
//! partition names, so the same layout gives the same bytes.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bulkhead_virt_blk::crc32::crc32;

const SECTOR: u64 = 512;
const ENTRIES: u32 = 128;
const ENTRY_SIZE: u32 = 128;
/// Sectors of the entry array (128 × 128 B).
const ARRAY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / SECTOR;
/// Bytes of the entry array.
const ARRAY_BYTES: usize = (ENTRIES * ENTRY_SIZE) as usize;
/// Partition alignment in sectors (1 MiB).
const ALIGN: u64 = 2048;

/// Linux filesystem data: 0FC63DAF-8483-4772-8E79-3D69D8477DE4.
pub const LINUX_DATA: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// A partition to create.
#[derive(Debug, Clone)]
pub struct PartSpec {
    /// GPT name (at most 36 UTF-16 units).
    pub name: String,
    /// Size in sectors.
    pub sectors: u64,
}

/// Where a partition landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// GPT name.
    pub name: String,
    /// First sector.
    pub first: u64,
    /// Sectors.
    pub sectors: u64,
    /// Unique GUID, on-disk byte order.
    pub guid: [u8; 16],
}

/// A GUID in its textual form to the on-disk (mixed-endian) bytes.
pub fn guid_from_str(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s
        .bytes()
        .filter(|&b| b != b'-')
        .map(|b| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok()))
        .collect::<Option<Vec<u8>>>()?;
    if hex.len() != 32 {
        return None;
    }
    let mut be = [0u8; 16];
    for (i, b) in be.iter_mut().enumerate() {
        *b = hex[2 * i] << 4 | hex[2 * i + 1];
    }
    let mut d = be;
    d[0..4].reverse();
    d[4..6].reverse();
    d[6..8].reverse();
    Some(d)
}

/// The on-disk bytes of a GUID to its textual form (upper case).
pub fn guid_to_string(d: &[u8; 16]) -> String {
    let mut be = *d;
    be[0..4].reverse();
    be[4..6].reverse();
    be[6..8].reverse();
    let h: Vec<String> = be.iter().map(|b| format!("{b:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// A version-4-shaped GUID derived from `seed` (deterministic images).
fn derived_guid(seed: &str) -> [u8; 16] {
    let mut g = [0u8; 16];
    for (i, chunk) in g.chunks_exact_mut(4).enumerate() {
        let c = crc32(format!("{seed}/{i}").as_bytes());
        chunk.copy_from_slice(&c.to_le_bytes());
    }
    g[7] = (g[7] & 0x0F) | 0x40;
    g[8] = (g[8] & 0x3F) | 0x80;
    g
}

/// Creates (or truncates) `path` as a disk of `disk_sectors` with `parts`
/// laid out in order, each aligned to 1 MiB.
///
/// # Errors
/// `InvalidInput` if the partitions do not fit, there are more than 128, or
/// a name is longer than 36 UTF-16 units; I/O errors.
pub fn build(path: &Path, disk_sectors: u64, parts: &[PartSpec]) -> io::Result<Vec<Placed>> {
    let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
    if parts.len() > ENTRIES as usize || disk_sectors < 2 * (2 + ARRAY_SECTORS) + ALIGN {
        return Err(invalid());
    }
    let first_usable = 2 + ARRAY_SECTORS;
    let last_usable = disk_sectors - 2 - ARRAY_SECTORS;
    let mut placed = Vec::new();
    let mut next = ALIGN;
    for p in parts {
        let end = next.checked_add(p.sectors).ok_or_else(invalid)?;
        if p.sectors == 0 || end - 1 > last_usable || p.name.encode_utf16().count() > 36 {
            return Err(invalid());
        }
        placed.push(Placed {
            name: p.name.clone(),
            first: next,
            sectors: p.sectors,
            guid: derived_guid(&p.name),
        });
        next = end.next_multiple_of(ALIGN);
    }
    let type_guid = guid_from_str(LINUX_DATA).ok_or_else(invalid)?;
    let mut array = vec![0u8; ARRAY_BYTES];
    for (e, p) in array.chunks_exact_mut(ENTRY_SIZE as usize).zip(&placed) {
        e[0..16].copy_from_slice(&type_guid);
        e[16..32].copy_from_slice(&p.guid);
        e[32..40].copy_from_slice(&p.first.to_le_bytes());
        e[40..48].copy_from_slice(&(p.first + p.sectors - 1).to_le_bytes());
        for (k, u) in p.name.encode_utf16().enumerate() {
            e[56 + 2 * k..58 + 2 * k].copy_from_slice(&u.to_le_bytes());
        }
    }
    let array_crc = crc32(&array);
    let disk_guid = derived_guid("bulkhead-disk");
    let header = |my: u64, alt: u64, entries: u64| {
        let mut h = [0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid);
        h[72..80].copy_from_slice(&entries.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let c = crc32(&h[0..92]);
        h[16..20].copy_from_slice(&c.to_le_bytes());
        h
    };
    let last = disk_sectors - 1;
    let mut mbr = [0u8; 512];
    // One 0xEE entry covering the disk from LBA 1 (capped at 2^32 − 1).
    let e = &mut mbr[446..462];
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    e[4] = 0xEE;
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(last).unwrap_or(u32::MAX);
    e[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;

    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    f.set_len(disk_sectors * SECTOR)?;
    f.write_all_at(&mbr, 0)?;
    f.write_all_at(&header(1, last, 2), SECTOR)?;
    f.write_all_at(&array, 2 * SECTOR)?;
    let backup_array = last - ARRAY_SECTORS;
    f.write_all_at(&array, backup_array * SECTOR)?;
    f.write_all_at(&header(last, 1, backup_array), last * SECTOR)?;
    f.sync_all()?;
    Ok(placed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn guid_text_round_trip() {
        let g = super::guid_from_str(super::LINUX_DATA).expect("valid");
        // Mixed endian: the first field is stored little endian.
        assert_eq!(&g[0..4], &[0xAF, 0x3D, 0xC6, 0x0F]);
        assert_eq!(super::guid_to_string(&g), super::LINUX_DATA);
        assert!(super::guid_from_str("nope").is_none());
    }
}
