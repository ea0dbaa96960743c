//! The runtime's own configuration section: `MAPS` (type `0x0000_0001`,
//! version 1, optional), the list of memory maps the description gives
//! this PD, written by `bulkhead compose` next to the `<map>` lines from the
//! same data.
//!
//! Why: on the host board the supervisor tells the runtime every map, so
//! [`Region::get`](crate::Region::get) and [`Region::at`](crate::Region::at)
//! find any region by name or address. On seL4 the kernel tells a PD
//! nothing; only regions the PD names in `protection_domain!` (symbols the
//! tool patches) were known, so a virtualiser that learns its hops' vaddrs
//! from its configuration could not reach them. With this section the seL4
//! backend knows the same maps as the host board, for any number of hops,
//! with no per-system symbol names.
//!
//! Layout (little endian): count `N` u32, pad u32, then `N` entries of 88
//! bytes: vaddr u64, size u64, perms u8 (r=1, w=2, x=4), cached u8, name
//! length u8 (1..=64), pad \[5\], name \[64\] (UTF-8, zero padded). The map
//! of the configuration region itself is not listed (its vaddr and size
//! come from the `bulkhead_config_vaddr` / `_size` setvars).
//!
//! Decoding copies every entry out of the (already copied) configuration
//! and checks it: page-aligned, non-empty, no overflow, no overlap with
//! another entry, at most [`MAX_MAPS`] entries. The backend additionally
//! refuses entries that overlap the PD's own image or stack.

use bulkhead_config::{ConfigError, ConfigRegion, FieldReader};

use crate::api::Perms;

/// Section type id (the PD runtime's range, `0x0000_xxxx`).
pub const MAPS_SECTION: u32 = 0x0000_0001;
/// Section version.
pub const MAPS_VERSION: u16 = 1;
/// Most maps a PD's table holds.
pub const MAX_MAPS: usize = 96;
/// Longest region name.
pub const NAME_MAX: usize = 64;
/// Bytes per entry.
pub const ENTRY_BYTES: usize = 88;

const PAGE: u64 = 0x1000;

/// One map of this PD, as the description gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEntry {
    /// Virtual address in this PD.
    pub vaddr: u64,
    /// Bytes mapped.
    pub size: u64,
    /// Permissions.
    pub perms: Perms,
    /// Mapped cached.
    pub cached: bool,
    name: [u8; NAME_MAX],
    name_len: u8,
}

impl MapEntry {
    /// The memory region's name.
    pub fn name(&self) -> &str {
        let n = usize::from(self.name_len).min(NAME_MAX);
        core::str::from_utf8(&self.name[..n]).unwrap_or("")
    }

    /// `vaddr..vaddr + size` contains `[lo, hi)` partly.
    pub fn overlaps(&self, lo: u64, hi: u64) -> bool {
        self.vaddr < hi && lo < self.vaddr.saturating_add(self.size)
    }
}

/// Why a `MAPS` section was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapsError {
    /// The container's field reader refused it (short, trailing bytes, …).
    Format(ConfigError),
    /// Section version other than [`MAPS_VERSION`].
    Version(u16),
    /// More than [`MAX_MAPS`] entries.
    TooMany(u32),
    /// Entry `i`: vaddr or size not page-aligned, size 0, or the end
    /// overflows.
    BadRange(usize),
    /// Entry `i`: permission bits beyond r/w/x, or not readable.
    BadPerms(usize),
    /// Entry `i`: name empty, longer than [`NAME_MAX`] or not UTF-8.
    BadName(usize),
    /// Entries `i` and `j` overlap.
    Overlap(usize, usize),
}

impl core::fmt::Display for MapsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapsError::Format(e) => write!(f, "MAPS section: {e:?}"),
            MapsError::Version(v) => write!(f, "MAPS section version {v} (this runtime reads 1)"),
            MapsError::TooMany(n) => write!(f, "MAPS section lists {n} maps (at most {MAX_MAPS})"),
            MapsError::BadRange(i) => write!(
                f,
                "MAPS entry {i}: range not page-aligned, empty or overflowing"
            ),
            MapsError::BadPerms(i) => write!(f, "MAPS entry {i}: bad permissions"),
            MapsError::BadName(i) => write!(f, "MAPS entry {i}: bad name"),
            MapsError::Overlap(i, j) => write!(f, "MAPS entries {i} and {j} overlap"),
        }
    }
}

/// A PD's decoded map table (fixed capacity, no heap).
#[derive(Debug, Clone, Copy)]
pub struct MapTable {
    entries: [MapEntry; MAX_MAPS],
    len: usize,
}

const EMPTY: MapEntry = MapEntry {
    vaddr: 0,
    size: 0,
    perms: Perms {
        read: false,
        write: false,
        execute: false,
    },
    cached: false,
    name: [0; NAME_MAX],
    name_len: 0,
};

impl Default for MapTable {
    fn default() -> Self {
        MapTable::new()
    }
}

impl MapTable {
    /// No maps.
    pub const fn new() -> MapTable {
        MapTable {
            entries: [EMPTY; MAX_MAPS],
            len: 0,
        }
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The entries.
    pub fn entries(&self) -> &[MapEntry] {
        &self.entries[..self.len]
    }

    /// The map of region `name`.
    pub fn by_name(&self, name: &str) -> Option<&MapEntry> {
        self.entries().iter().find(|e| e.name() == name)
    }

    /// The map that starts at `vaddr`.
    pub fn at(&self, vaddr: u64) -> Option<&MapEntry> {
        self.entries()
            .iter()
            .find(|e| vaddr != 0 && e.vaddr == vaddr)
    }

    /// Decodes the `MAPS` section of `cfg`; an empty table if it has none.
    ///
    /// # Errors
    /// [`MapsError`] naming the first entry refused.
    pub fn from_config(cfg: &ConfigRegion<'_>) -> Result<MapTable, MapsError> {
        let mut t = MapTable::new();
        t.load_config(cfg)?;
        Ok(t)
    }

    /// [`MapTable::from_config`] in place: a table is ~8 KiB, more than a
    /// PD's default stack can hold as a temporary. On error the table is
    /// left empty.
    ///
    /// # Errors
    /// [`MapsError`] naming the first entry refused.
    pub fn load_config(&mut self, cfg: &ConfigRegion<'_>) -> Result<(), MapsError> {
        self.len = 0;
        let Some(sec) = cfg.section(MAPS_SECTION) else {
            return Ok(());
        };
        if sec.version != MAPS_VERSION {
            return Err(MapsError::Version(sec.version));
        }
        self.load(sec.payload())
    }

    /// Decodes a `MAPS` payload.
    ///
    /// # Errors
    /// [`MapsError`] naming the first entry refused.
    pub fn decode(payload: &[u8]) -> Result<MapTable, MapsError> {
        let mut t = MapTable::new();
        t.load(payload)?;
        Ok(t)
    }

    /// [`MapTable::decode`] in place; on error the table is left empty.
    ///
    /// # Errors
    /// [`MapsError`] naming the first entry refused.
    pub fn load(&mut self, payload: &[u8]) -> Result<(), MapsError> {
        self.len = 0;
        let r = self.fill(payload);
        if r.is_err() {
            self.len = 0;
        }
        r
    }

    fn fill(&mut self, payload: &[u8]) -> Result<(), MapsError> {
        let t = self;
        let mut r = FieldReader::new(payload);
        let n = r.u32().map_err(MapsError::Format)?;
        r.u32().map_err(MapsError::Format)?;
        let count = usize::try_from(n).map_err(|_| MapsError::TooMany(n))?;
        if count > MAX_MAPS {
            return Err(MapsError::TooMany(n));
        }
        for i in 0..count {
            let vaddr = r.u64().map_err(MapsError::Format)?;
            let size = r.u64().map_err(MapsError::Format)?;
            let bits = r.u8().map_err(MapsError::Format)?;
            let cached = r.u8().map_err(MapsError::Format)?;
            let name_len = r.u8().map_err(MapsError::Format)?;
            r.bytes(5).map_err(MapsError::Format)?;
            let raw = r.bytes(NAME_MAX).map_err(MapsError::Format)?;
            if size == 0
                || vaddr % PAGE != 0
                || size % PAGE != 0
                || vaddr.checked_add(size).is_none()
            {
                return Err(MapsError::BadRange(i));
            }
            if bits & !7 != 0 || bits & 1 == 0 || cached > 1 {
                return Err(MapsError::BadPerms(i));
            }
            let len = usize::from(name_len);
            if len == 0
                || len > NAME_MAX
                || core::str::from_utf8(&raw[..len]).is_err()
                || raw[len..].iter().any(|&b| b != 0)
            {
                return Err(MapsError::BadName(i));
            }
            let mut name = [0u8; NAME_MAX];
            name.copy_from_slice(raw);
            let e = MapEntry {
                vaddr,
                size,
                perms: Perms {
                    read: true,
                    write: bits & 2 != 0,
                    execute: bits & 4 != 0,
                },
                cached: cached == 1,
                name,
                name_len,
            };
            if let Some(j) = t
                .entries()
                .iter()
                .position(|o| o.overlaps(e.vaddr, e.vaddr + e.size))
            {
                return Err(MapsError::Overlap(j, i));
            }
            t.entries[i] = e;
            t.len = i + 1;
        }
        r.finish().map_err(MapsError::Format)
    }
}

/// Encodes one entry (tools and tests; the layout in the module doc).
pub fn encode_entry(
    out: &mut [u8; ENTRY_BYTES],
    name: &str,
    vaddr: u64,
    size: u64,
    perms: &str,
    cached: bool,
) -> bool {
    if name.is_empty() || name.len() > NAME_MAX {
        return false;
    }
    out.fill(0);
    out[0..8].copy_from_slice(&vaddr.to_le_bytes());
    out[8..16].copy_from_slice(&size.to_le_bytes());
    let mut bits = 0u8;
    for c in perms.bytes() {
        bits |= match c {
            b'r' => 1,
            b'w' => 2,
            b'x' => 4,
            _ => return false,
        };
    }
    out[16] = bits;
    out[17] = u8::from(cached);
    out[18] = u8::try_from(name.len()).unwrap_or(0);
    out[24..24 + name.len()].copy_from_slice(name.as_bytes());
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn payload(entries: &[(&str, u64, u64, &str)]) -> [u8; 8 + 4 * ENTRY_BYTES] {
        let mut p = [0u8; 8 + 4 * ENTRY_BYTES];
        p[0..4].copy_from_slice(&u32::try_from(entries.len()).unwrap().to_le_bytes());
        for (i, (n, va, sz, perms)) in entries.iter().enumerate() {
            let mut e = [0u8; ENTRY_BYTES];
            assert!(encode_entry(&mut e, n, *va, *sz, perms, true));
            p[8 + i * ENTRY_BYTES..8 + (i + 1) * ENTRY_BYTES].copy_from_slice(&e);
        }
        p
    }

    fn len(n: usize) -> usize {
        8 + n * ENTRY_BYTES
    }

    #[test]
    fn round_trip_by_name_and_address() {
        let p = payload(&[
            ("blk_drv_req", 0x6200_0000, 0x1000, "rw"),
            ("blk_drv_in", 0x6240_0000, 0x20_0000, "r"),
        ]);
        let t = MapTable::decode(&p[..len(2)]).unwrap();
        assert_eq!(t.entries().len(), 2);
        let e = t.by_name("blk_drv_in").unwrap();
        assert_eq!(
            (e.vaddr, e.size, e.perms.write),
            (0x6240_0000, 0x20_0000, false)
        );
        assert_eq!(t.at(0x6200_0000).unwrap().name(), "blk_drv_req");
        assert!(t.at(0x6200_1000).is_none(), "only a map's start finds it");
        assert!(t.by_name("blk_drv").is_none());
    }

    #[test]
    fn hostile_entries_are_refused_by_index() {
        let p = payload(&[("a", 0x1000, 0x1000, "rw"), ("b", 0x1800, 0x1000, "rw")]);
        assert_eq!(
            MapTable::decode(&p[..len(2)]).unwrap_err(),
            MapsError::BadRange(1)
        );
        let p = payload(&[("a", 0x1000, 0x2000, "rw"), ("b", 0x2000, 0x1000, "rw")]);
        assert_eq!(
            MapTable::decode(&p[..len(2)]).unwrap_err(),
            MapsError::Overlap(0, 1)
        );
        let p = payload(&[("a", 0x1000, 0, "rw")]);
        assert_eq!(
            MapTable::decode(&p[..len(1)]).unwrap_err(),
            MapsError::BadRange(0)
        );
        let p = payload(&[("a", u64::MAX - 0xfff, 0x2000, "rw")]);
        assert_eq!(
            MapTable::decode(&p[..len(1)]).unwrap_err(),
            MapsError::BadRange(0)
        );
        let p = payload(&[("a", 0x1000, 0x1000, "w")]);
        assert_eq!(
            MapTable::decode(&p[..len(1)]).unwrap_err(),
            MapsError::BadPerms(0)
        );
        let mut p = payload(&[("a", 0x1000, 0x1000, "r")]);
        p[8 + 18] = 65;
        assert_eq!(
            MapTable::decode(&p[..len(1)]).unwrap_err(),
            MapsError::BadName(0)
        );
        p[8 + 18] = 0;
        assert_eq!(
            MapTable::decode(&p[..len(1)]).unwrap_err(),
            MapsError::BadName(0)
        );
        // Trailing bytes, short payload, too many entries.
        let p = payload(&[("a", 0x1000, 0x1000, "r")]);
        assert!(matches!(
            MapTable::decode(&p[..len(1) + 8]),
            Err(MapsError::Format(_))
        ));
        assert!(matches!(
            MapTable::decode(&p[..len(1) - 1]),
            Err(MapsError::Format(_))
        ));
        let mut p = payload(&[]);
        p[0..4].copy_from_slice(&97u32.to_le_bytes());
        assert_eq!(MapTable::decode(&p).unwrap_err(), MapsError::TooMany(97));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep (the section comes from the
        // integrator's tools, but the decoder must not trust it either).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = [0u8; 8 + 2 * ENTRY_BYTES];
        for _ in 0..2000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x.to_le_bytes()[0];
            }
            buf[0] %= 3;
            buf[1..4].fill(0);
            let n = usize::from(buf[0]);
            let _ = MapTable::decode(&buf[..len(n)]);
        }
    }
}
