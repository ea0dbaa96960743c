//! Partition tables read from the shared disk: GPT (protective MBR, header
//! and entry-array CRC32s, backup header when the primary is damaged) and
//! plain MBR primary partitions. The table comes from a disk anyone with
//! write access to it (a compromised guest yesterday) could have crafted:
//! every field is checked, a bad table is a [`TableError`], never a panic,
//! and nothing is allocated (at most [`MAX_PARTITIONS`] are kept).

use crate::crc32::Crc32;

/// Bytes per sector of the tables (the protocol's sector).
pub const SECTOR: usize = 512;
/// Partitions kept per disk; a table naming more used entries is refused.
pub const MAX_PARTITIONS: usize = 16;
/// GPT entry arrays larger than this are refused (the spec's minimum is
/// 16 KiB; 128 KiB leaves room and bounds the work a hostile header causes).
pub const MAX_GPT_ENTRY_BYTES: u64 = 128 * 1024;

/// A sector could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadError;

/// Reads whole sectors of the disk.
pub trait SectorSource {
    /// Disk size in sectors.
    fn sectors(&self) -> u64;
    /// Reads sector `lba` into `buf`.
    ///
    /// # Errors
    /// The disk could not be read.
    fn read_sector(&mut self, lba: u64, buf: &mut [u8; SECTOR]) -> Result<(), ReadError>;
}

/// Why a partition table was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// Reading a sector failed.
    Io,
    /// No 0x55AA boot signature in sector 0.
    NoMbr,
    /// Protective MBR present but neither GPT header is valid.
    GptHeader(GptError),
    /// An entry's range is empty, reversed, outside the usable area or the
    /// disk, or overlaps another.
    BadRange {
        /// Entry index in the table.
        index: u32,
    },
    /// More used entries than [`MAX_PARTITIONS`].
    TooMany,
}

/// What is wrong with a GPT header (the primary's error is reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GptError {
    /// No "EFI PART" signature.
    Signature,
    /// Header size below 92 or above a sector.
    HeaderSize,
    /// Header CRC32 mismatch.
    HeaderCrc,
    /// `my_lba` is not where the header was read from.
    MyLba,
    /// Usable range reversed or outside the disk.
    Usable,
    /// Entry size not 128 × 2ⁿ, entry array too large, or outside the disk.
    Entries,
    /// Entry array CRC32 mismatch.
    EntriesCrc,
}

/// A partition: sectors `[first, first + len)` of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Index in the table (GPT entry index, or MBR slot 0–3).
    pub index: u32,
    /// First sector.
    pub first: u64,
    /// Length in sectors (≥ 1).
    pub len: u64,
    /// GPT type GUID (on-disk byte order), zero for MBR.
    pub type_guid: [u8; 16],
    /// GPT unique partition GUID (on-disk byte order), zero for MBR.
    pub guid: [u8; 16],
    /// GPT name (UTF-16LE code units, NUL padded); empty for MBR.
    pub name: [u16; 36],
    /// MBR partition type byte (0xEE-style types are never kept), 0 for GPT.
    pub mbr_type: u8,
}

impl Partition {
    const EMPTY: Partition = Partition {
        index: 0,
        first: 0,
        len: 0,
        type_guid: [0; 16],
        guid: [0; 16],
        name: [0; 36],
        mbr_type: 0,
    };

    /// Whether the GPT name equals `name` (compared as UTF-16; ASCII or not).
    pub fn name_is(&self, name: &str) -> bool {
        let mut units = name.encode_utf16();
        for &u in &self.name {
            match units.next() {
                Some(n) if n == u => {}
                Some(_) => return false,
                None => return u == 0,
            }
        }
        units.next().is_none()
    }
}

/// Which table the partitions came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// GPT from the primary header.
    Gpt,
    /// GPT from the backup header (the primary was damaged).
    GptBackup,
    /// MBR primary partitions.
    Mbr,
}

/// The partitions of one disk.
#[derive(Debug, Clone, Copy)]
pub struct PartitionTable {
    /// Where they came from.
    pub kind: TableKind,
    parts: [Partition; MAX_PARTITIONS],
    count: usize,
}

impl PartitionTable {
    /// The partitions, in table order.
    pub fn partitions(&self) -> &[Partition] {
        &self.parts[..self.count]
    }

    /// The partition whose table index is `index`.
    pub fn by_index(&self, index: u32) -> Option<&Partition> {
        self.partitions().iter().find(|p| p.index == index)
    }

    /// The GPT partition named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Partition> {
        self.partitions().iter().find(|p| p.name_is(name))
    }

    /// The GPT partition with unique GUID `guid` (on-disk byte order).
    pub fn by_guid(&self, guid: &[u8; 16]) -> Option<&Partition> {
        self.partitions().iter().find(|p| p.guid == *guid)
    }

    fn push(&mut self, p: Partition) -> Result<(), TableError> {
        for q in self.partitions() {
            // Overlapping partitions would let one guest reach another's data.
            if p.first < q.first + q.len && q.first < p.first + p.len {
                return Err(TableError::BadRange { index: p.index });
            }
        }
        let slot = self.parts.get_mut(self.count).ok_or(TableError::TooMany)?;
        *slot = p;
        self.count += 1;
        Ok(())
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    let mut w = [0u8; 2];
    w.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(w)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Reads the partition table of `disk`: GPT if sector 0 is a protective
/// MBR (an 0xEE entry), else the MBR's primary partitions (extended
/// partitions and empty slots are skipped).
///
/// # Errors
/// A [`TableError`] for an unreadable, inconsistent or hostile table.
pub fn read_table<S: SectorSource + ?Sized>(disk: &mut S) -> Result<PartitionTable, TableError> {
    let mut mbr = [0u8; SECTOR];
    disk.read_sector(0, &mut mbr)
        .map_err(|ReadError| TableError::Io)?;
    if mbr[510] != 0x55 || mbr[511] != 0xAA {
        return Err(TableError::NoMbr);
    }
    let entry = |i: usize| &mbr[446 + 16 * i..446 + 16 * (i + 1)];
    if (0..4).any(|i| entry(i)[4] == 0xEE) {
        return read_gpt(disk);
    }
    let mut t = PartitionTable {
        kind: TableKind::Mbr,
        parts: [Partition::EMPTY; MAX_PARTITIONS],
        count: 0,
    };
    for i in 0..4u32 {
        let e = entry(i as usize);
        let ty = e[4];
        // 0: unused; 0x05/0x0F/0x85: extended containers, not data.
        if matches!(ty, 0 | 0x05 | 0x0F | 0x85) {
            continue;
        }
        let first = u64::from(le32(e, 8));
        let len = u64::from(le32(e, 12));
        if first == 0 || len == 0 || first + len > disk.sectors() {
            return Err(TableError::BadRange { index: i });
        }
        t.push(Partition {
            index: i,
            first,
            len,
            mbr_type: ty,
            ..Partition::EMPTY
        })?;
    }
    Ok(t)
}

struct Header {
    first_usable: u64,
    last_usable: u64,
    entries_lba: u64,
    count: u32,
    entry_size: u32,
    entries_crc: u32,
}

fn parse_header<S: SectorSource + ?Sized>(disk: &mut S, lba: u64) -> Result<Header, GptError> {
    let mut h = [0u8; SECTOR];
    disk.read_sector(lba, &mut h)
        .map_err(|ReadError| GptError::Signature)?;
    if &h[0..8] != b"EFI PART" {
        return Err(GptError::Signature);
    }
    let size = le32(&h, 12) as usize;
    if !(92..=SECTOR).contains(&size) {
        return Err(GptError::HeaderSize);
    }
    let want = le32(&h, 16);
    let mut c = Crc32::new();
    c.update(&h[0..16]);
    c.update(&[0; 4]);
    c.update(&h[20..size]);
    if c.finish() != want {
        return Err(GptError::HeaderCrc);
    }
    if le64(&h, 24) != lba {
        return Err(GptError::MyLba);
    }
    let sectors = disk.sectors();
    let (first_usable, last_usable) = (le64(&h, 40), le64(&h, 48));
    if first_usable > last_usable || last_usable >= sectors || first_usable < 2 {
        return Err(GptError::Usable);
    }
    let entries_lba = le64(&h, 72);
    let count = le32(&h, 80);
    let entry_size = le32(&h, 84);
    let bytes = u64::from(count) * u64::from(entry_size);
    let entry_sectors = bytes.div_ceil(SECTOR as u64);
    let size_ok = entry_size >= 128 && entry_size.is_power_of_two();
    let inside = entries_lba >= 1
        && entries_lba
            .checked_add(entry_sectors)
            .is_some_and(|end| end <= sectors)
        // The array must not overlap the usable area (where partitions are).
        && (entries_lba + entry_sectors <= first_usable || entries_lba > last_usable);
    if !size_ok || bytes > MAX_GPT_ENTRY_BYTES || !inside {
        return Err(GptError::Entries);
    }
    Ok(Header {
        first_usable,
        last_usable,
        entries_lba,
        count,
        entry_size,
        entries_crc: le32(&h, 88),
    })
}

/// Walks the entry array twice: once for the CRC (nothing is trusted before
/// it matches), once to collect the used entries.
fn read_entries<S: SectorSource + ?Sized>(
    disk: &mut S,
    h: &Header,
    kind: TableKind,
) -> Result<PartitionTable, TableError> {
    let bytes = u64::from(h.count) * u64::from(h.entry_size);
    let mut sec = [0u8; SECTOR];
    let mut crc = Crc32::new();
    let mut left = bytes;
    let mut lba = h.entries_lba;
    while left > 0 {
        disk.read_sector(lba, &mut sec)
            .map_err(|ReadError| TableError::Io)?;
        let n = usize::try_from(left.min(SECTOR as u64)).unwrap_or(SECTOR);
        crc.update(&sec[..n]);
        left -= n as u64;
        lba += 1;
    }
    if crc.finish() != h.entries_crc {
        return Err(TableError::GptHeader(GptError::EntriesCrc));
    }
    let mut t = PartitionTable {
        kind,
        parts: [Partition::EMPTY; MAX_PARTITIONS],
        count: 0,
    };
    // Entry sizes are 128 × 2ⁿ: an entry never straddles a sector when
    // ≤ 512, and a larger one starts at a sector boundary.
    let esize = u64::from(h.entry_size);
    let mut cached = u64::MAX;
    for i in 0..h.count {
        let off = u64::from(i) * esize;
        let elba = h.entries_lba + off / SECTOR as u64;
        if elba != cached {
            disk.read_sector(elba, &mut sec)
                .map_err(|ReadError| TableError::Io)?;
            cached = elba;
        }
        let at = usize::try_from(off % SECTOR as u64).unwrap_or(0);
        let e = &sec[at..at + 128];
        let mut type_guid = [0u8; 16];
        type_guid.copy_from_slice(&e[0..16]);
        if type_guid == [0; 16] {
            continue;
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&e[16..32]);
        let (first, last) = (le64(e, 32), le64(e, 40));
        if first > last || first < h.first_usable || last > h.last_usable {
            return Err(TableError::BadRange { index: i });
        }
        let mut name = [0u16; 36];
        for (k, n) in name.iter_mut().enumerate() {
            *n = le16(e, 56 + 2 * k);
        }
        t.push(Partition {
            index: i,
            first,
            len: last - first + 1,
            type_guid,
            guid,
            name,
            mbr_type: 0,
        })?;
    }
    Ok(t)
}

fn read_gpt<S: SectorSource + ?Sized>(disk: &mut S) -> Result<PartitionTable, TableError> {
    let primary = parse_header(disk, 1)
        .map_err(TableError::GptHeader)
        .and_then(|h| read_entries(disk, &h, TableKind::Gpt));
    match primary {
        Ok(t) => Ok(t),
        // A damaged primary (torn write, bit rot): the spec's recovery is the
        // backup at the last sector. A bad *range* is not damage but a
        // consistent hostile table: refuse rather than look elsewhere.
        Err(e @ (TableError::GptHeader(_) | TableError::Io)) => {
            let last = disk.sectors().checked_sub(1).ok_or(e)?;
            match parse_header(disk, last) {
                Ok(h) => read_entries(disk, &h, TableKind::GptBackup).map_err(|_| e),
                Err(_) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem<'a>(&'a [u8]);
    impl SectorSource for Mem<'_> {
        fn sectors(&self) -> u64 {
            (self.0.len() / SECTOR) as u64
        }
        fn read_sector(&mut self, lba: u64, buf: &mut [u8; SECTOR]) -> Result<(), ReadError> {
            let at = usize::try_from(lba).map_err(|_| ReadError)? * SECTOR;
            buf.copy_from_slice(self.0.get(at..at + SECTOR).ok_or(ReadError)?);
            Ok(())
        }
    }

    fn mbr_disk(entries: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut d = vec![0u8; 64 * SECTOR];
        for (i, &(ty, first, len)) in entries.iter().enumerate() {
            let e = 446 + 16 * i;
            d[e + 4] = ty;
            d[e + 8..e + 12].copy_from_slice(&first.to_le_bytes());
            d[e + 12..e + 16].copy_from_slice(&len.to_le_bytes());
        }
        d[510] = 0x55;
        d[511] = 0xAA;
        d
    }

    #[test]
    fn mbr_primaries() {
        let d = mbr_disk(&[(0x83, 2, 10), (0x05, 20, 10), (0x0c, 12, 8)]);
        let t = read_table(&mut Mem(&d)).expect("valid");
        assert_eq!(t.kind, TableKind::Mbr);
        assert_eq!(t.partitions().len(), 2);
        assert_eq!(t.by_index(2).map(|p| (p.first, p.len)), Some((12, 8)));
    }

    #[test]
    fn mbr_hostile() {
        let mut d = mbr_disk(&[(0x83, 2, 10)]);
        d[511] = 0;
        assert_eq!(read_table(&mut Mem(&d)).err(), Some(TableError::NoMbr));
        let d = mbr_disk(&[(0x83, 2, 100)]);
        assert_eq!(
            read_table(&mut Mem(&d)).err(),
            Some(TableError::BadRange { index: 0 })
        );
        let d = mbr_disk(&[(0x83, 2, 10), (0x83, 11, 5)]);
        assert_eq!(
            read_table(&mut Mem(&d)).err(),
            Some(TableError::BadRange { index: 1 })
        );
        let d = mbr_disk(&[(0x83, u32::MAX, u32::MAX)]);
        assert!(read_table(&mut Mem(&d)).is_err());
    }

    #[test]
    fn protective_mbr_without_gpt() {
        let d = mbr_disk(&[(0xEE, 1, 63)]);
        assert_eq!(
            read_table(&mut Mem(&d)).err(),
            Some(TableError::GptHeader(GptError::Signature))
        );
    }

    #[test]
    fn name_comparison() {
        let mut p = Partition::EMPTY;
        for (i, u) in "cluster".encode_utf16().enumerate() {
            p.name[i] = u;
        }
        assert!(p.name_is("cluster"));
        assert!(!p.name_is("cluste"));
        assert!(!p.name_is("clusterx"));
    }
}
