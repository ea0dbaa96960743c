//! The configuration-region container: how a PD's configuration reaches it as
//! a read-only, prefilled memory region.
//!
//! `bulkhead compose` builds one region per PD with `ConfigBuilder` (feature
//! `std`); the `.system` file maps it read-only into that PD with
//! `prefill_path`; the PD calls [`ConfigRegion::parse`] once at `init`, which
//! checks everything (magic, version, length, checksum, the PD name, every
//! section's bounds, alignment and flags) before any field is used. A PD that
//! gets an error refuses to start and prints it.
//!
//! ```
//! # #[cfg(feature = "std")] {
//! use bulkhead_config::{ConfigBuilder, ConfigRegion};
//! let bytes = ConfigBuilder::new("can_virt")
//!     .section(0x0003_0001, 1, &[1, 2, 3])
//!     .build()
//!     .unwrap();
//! let cfg = ConfigRegion::parse(&bytes, "can_virt").unwrap();
//! assert_eq!(cfg.section(0x0003_0001).unwrap().payload(), &[1, 2, 3]);
//! assert!(ConfigRegion::parse(&bytes, "cluster_vmm").is_err());
//! # }
//! ```
//!
//! # Layout (format 1.0)
//!
//! All integers are little-endian. Offsets are from the start of the region.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `b"BHCONFIG"` |
//! | 8 | 2 | format major version (1) |
//! | 10 | 2 | format minor version (0) |
//! | 12 | 4 | total length `T` in bytes (header, directory, payloads, padding) |
//! | 16 | 4 | section count `N` (at most [`MAX_SECTIONS`]) |
//! | 20 | 4 | CRC-32C of bytes `24..T` |
//! | 24 | 1 | PD name length `L` (1..=64) |
//! | 25 | 7 | reserved, zero |
//! | 32 | 64 | PD name, UTF-8, `L` bytes then zeros |
//! | 96 | 16·N | section directory, one entry per section (below) |
//! | 96+16·N | … | payloads, in directory order, each padded with zeros to a multiple of 8 |
//!
//! Section directory entry (16 bytes):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | type id (non-zero; entries in strictly ascending order) |
//! | 4 | 2 | section version |
//! | 6 | 2 | flags: bit 0 = [`FLAG_OPTIONAL`]; other bits must be zero |
//! | 8 | 4 | payload offset from the start of the region (multiple of 8) |
//! | 12 | 4 | payload length in bytes |
//!
//! The encoding is canonical: payloads are packed with only the padding to
//! the next multiple of 8 between them, and `T` ends right after the last
//! padded payload. So one configuration has exactly one byte representation,
//! and the reader refuses anything else (gaps, overlaps, trailing bytes,
//! non-zero padding or reserved bytes).
//!
//! # Versions
//!
//! A reader of format `M.m` accepts regions of format `M.0` to `M.m`: a minor
//! version adds things an older reader would not understand, so an older
//! reader refuses a newer minor rather than ignore them. A new major version
//! changes the header or directory and is never read by an older reader.
//! Each section has its own version, which must equal the
//! [`SectionType::VERSION`] the PD was built with (PD and configuration come
//! from one build of the tree).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

mod crc;
mod dump;
mod error;
mod field;
#[cfg(feature = "std")]
mod writer;

pub use crc::crc32c;
pub use dump::{dump, type_class, Dump};
pub use error::ConfigError;
pub use field::FieldReader;
#[cfg(feature = "std")]
pub use writer::{ConfigBuilder, SectionEncode, SectionWriter};

use core::fmt;

/// The magic at offset 0.
pub const MAGIC: [u8; 8] = *b"BHCONFIG";
/// The format major version this crate reads and writes.
pub const VERSION_MAJOR: u16 = 1;
/// The newest format minor version this crate reads (and the one it writes).
pub const VERSION_MINOR: u16 = 0;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 96;
/// Size of one section directory entry.
pub const DIR_ENTRY_LEN: usize = 16;
/// Longest PD name, in bytes (Microkit's limit).
pub const PD_NAME_MAX: usize = 64;
/// Most sections one region may have; bounds the reader's work.
pub const MAX_SECTIONS: u32 = 256;
/// Payload alignment.
pub const ALIGN: usize = 8;
/// Section flag: a PD that does not know this section's type may ignore it
/// (see [`ConfigRegion::require_understood`]).
pub const FLAG_OPTIONAL: u16 = 1 << 0;
/// Every flag bit this version defines.
pub const KNOWN_FLAGS: u16 = FLAG_OPTIONAL;

/// Offset of the first byte the checksum covers (just after the CRC field).
pub const CRC_START: usize = 24;

mod off {
    pub const MAJOR: usize = 8;
    pub const MINOR: usize = 10;
    pub const TOTAL: usize = 12;
    pub const COUNT: usize = 16;
    pub const CRC: usize = 20;
    pub const NAME_LEN: usize = 24;
    pub const RESERVED: usize = 25;
    pub const NAME: usize = 32;
}

/// Reads a little-endian `u16` at `at`, or `None` past the end.
fn le16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(s.try_into().ok()?))
}

/// Reads a little-endian `u32` at `at`, or `None` past the end.
fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// Rounds `n` up to the payload alignment, `None` on overflow.
fn align_up(n: u64) -> Option<u64> {
    Some(n.checked_add(ALIGN as u64 - 1)? & !(ALIGN as u64 - 1))
}

/// A PD name as stored in a region header: at most [`PD_NAME_MAX`] bytes of
/// UTF-8, kept inline so errors can carry it without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PdName {
    bytes: [u8; PD_NAME_MAX],
    len: u8,
}

impl PdName {
    /// `name` as a `PdName`, or `None` if it is empty, longer than
    /// [`PD_NAME_MAX`] bytes or contains a NUL.
    pub fn new(name: &str) -> Option<PdName> {
        let src = name.as_bytes();
        if src.is_empty() || src.len() > PD_NAME_MAX || src.contains(&0) {
            return None;
        }
        let mut bytes = [0u8; PD_NAME_MAX];
        bytes.get_mut(..src.len())?.copy_from_slice(src);
        Some(PdName {
            bytes,
            len: u8::try_from(src.len()).ok()?,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only `new` builds a PdName, from a `&str`, so this never fails;
        // an empty name would be the harmless fallback.
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

impl fmt::Debug for PdName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for PdName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated configuration region. Every accessor is infallible because
/// [`ConfigRegion::parse`] checked the whole region once.
#[derive(Debug, Clone, Copy)]
pub struct ConfigRegion<'a> {
    /// The region up to its total length.
    bytes: &'a [u8],
    pd: PdName,
    minor: u16,
    count: u32,
    crc: u32,
}

/// One section of a configuration region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section<'a> {
    /// Position in the directory.
    pub index: u32,
    /// Type id (meaning defined by the component that owns its range).
    pub type_id: u32,
    /// Section version.
    pub version: u16,
    /// Flags ([`FLAG_OPTIONAL`]).
    pub flags: u16,
    payload: &'a [u8],
}

impl<'a> Section<'a> {
    /// The payload bytes (without padding).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Whether a PD that does not know this type may ignore the section.
    pub fn is_optional(&self) -> bool {
        self.flags & FLAG_OPTIONAL != 0
    }

    /// Decodes the payload as `T`, checking its type id and version first.
    pub fn decode<T: SectionType<'a>>(&self) -> Result<T, ConfigError> {
        if self.type_id != T::ID {
            return Err(ConfigError::MissingSection { type_id: T::ID });
        }
        if self.version != T::VERSION {
            return Err(ConfigError::SectionVersion {
                type_id: T::ID,
                found: self.version,
                expected: T::VERSION,
            });
        }
        T::decode(self.payload)
    }
}

/// A typed section: each component defines its own in its own crate, with a
/// type id from its class's range (see [`type_class`] and the README).
///
/// ```
/// use bulkhead_config::{ConfigError, FieldReader, SectionType};
/// /// The CAN virtualiser's budget for one client.
/// struct Budget { tokens_per_ms: u32, burst: u32 }
/// impl SectionType<'_> for Budget {
///     const ID: u32 = 0x0003_0002;
///     const VERSION: u16 = 1;
///     fn decode(payload: &[u8]) -> Result<Self, ConfigError> {
///         let mut r = FieldReader::new(payload);
///         let b = Budget { tokens_per_ms: r.u32()?, burst: r.u32()? };
///         r.finish()?;
///         Ok(b)
///     }
/// }
/// assert!(Budget::decode(&[1, 0, 0, 0]).is_err());
/// ```
pub trait SectionType<'a>: Sized {
    /// The section type id.
    const ID: u32;
    /// The section version this decoder reads.
    const VERSION: u16;
    /// Decodes a payload. Must not panic on any input: use [`FieldReader`].
    fn decode(payload: &'a [u8]) -> Result<Self, ConfigError>;
}

impl<'a> ConfigRegion<'a> {
    /// Validates the whole region `bytes` (the mapped memory region, which may
    /// be longer than the configuration) as the configuration of PD
    /// `expected_pd`.
    pub fn parse(bytes: &'a [u8], expected_pd: &str) -> Result<ConfigRegion<'a>, ConfigError> {
        if bytes.len() < HEADER_LEN {
            return Err(ConfigError::TooShort { len: bytes.len() });
        }
        if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(ConfigError::BadMagic);
        }
        let major = le16(bytes, off::MAJOR).ok_or(ConfigError::TooShort { len: bytes.len() })?;
        let minor = le16(bytes, off::MINOR).ok_or(ConfigError::TooShort { len: bytes.len() })?;
        if major != VERSION_MAJOR || minor > VERSION_MINOR {
            return Err(ConfigError::UnsupportedVersion { major, minor });
        }
        let total = le32(bytes, off::TOTAL).ok_or(ConfigError::TooShort { len: bytes.len() })?;
        let count = le32(bytes, off::COUNT).ok_or(ConfigError::TooShort { len: bytes.len() })?;
        let stored = le32(bytes, off::CRC).ok_or(ConfigError::TooShort { len: bytes.len() })?;
        let total_len = usize::try_from(total).map_err(|_| ConfigError::LengthExceedsRegion {
            total,
            region: bytes.len(),
        })?;
        let region = bytes
            .get(..total_len)
            .ok_or(ConfigError::LengthExceedsRegion {
                total,
                region: bytes.len(),
            })?;
        if count > MAX_SECTIONS {
            return Err(ConfigError::TooManySections { count });
        }
        let dir_end = HEADER_LEN as u64 + u64::from(count) * DIR_ENTRY_LEN as u64;
        if u64::from(total) < dir_end {
            return Err(ConfigError::LengthTooSmall {
                total,
                needed: dir_end,
            });
        }
        // Checksum before structure: a corrupted region is reported as
        // corrupted, not as whatever structural error the corruption caused.
        let computed = crc32c(region.get(CRC_START..).unwrap_or(&[]));
        if computed != stored {
            return Err(ConfigError::ChecksumMismatch { stored, computed });
        }
        for offset in off::RESERVED..off::NAME {
            if region.get(offset) != Some(&0) {
                return Err(ConfigError::ReservedNotZero { offset });
            }
        }
        let pd = read_pd_name(region)?;
        if pd.as_str() != expected_pd {
            return Err(ConfigError::WrongPd { found: pd });
        }
        validate_sections(region, count, dir_end)?;
        Ok(ConfigRegion {
            bytes: region,
            pd,
            minor,
            count,
            crc: stored,
        })
    }

    /// The PD this configuration is for.
    pub fn pd_name(&self) -> &str {
        self.pd.as_str()
    }

    /// The format version `(major, minor)` of the region.
    pub fn version(&self) -> (u16, u16) {
        (VERSION_MAJOR, self.minor)
    }

    /// Total length of the configuration in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a valid region has at least its header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The stored (and verified) CRC-32C.
    pub fn checksum(&self) -> u32 {
        self.crc
    }

    /// Number of sections.
    pub fn section_count(&self) -> u32 {
        self.count
    }

    /// The validated bytes of the configuration (up to its total length).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The sections, in directory (ascending type id) order.
    pub fn sections(&self) -> Sections<'a> {
        Sections {
            bytes: self.bytes,
            next: 0,
            count: self.count,
        }
    }

    /// The section with type id `type_id`, if present.
    pub fn section(&self, type_id: u32) -> Option<Section<'a>> {
        self.sections().find(|s| s.type_id == type_id)
    }

    /// Decodes the required section `T`; [`ConfigError::MissingSection`] if absent.
    pub fn get<T: SectionType<'a>>(&self) -> Result<T, ConfigError> {
        self.section(T::ID)
            .ok_or(ConfigError::MissingSection { type_id: T::ID })?
            .decode()
    }

    /// Decodes section `T` if present.
    pub fn get_optional<T: SectionType<'a>>(&self) -> Result<Option<T>, ConfigError> {
        self.section(T::ID).map(|s| s.decode()).transpose()
    }

    /// Refuses a region that has a required section whose type is not in
    /// `known`: a PD calls this with every type id it reads, so that a
    /// configuration asking for something the PD would silently ignore is
    /// refused instead. Sections flagged [`FLAG_OPTIONAL`] may be unknown.
    pub fn require_understood(&self, known: &[u32]) -> Result<(), ConfigError> {
        match self
            .sections()
            .find(|s| !s.is_optional() && !known.contains(&s.type_id))
        {
            Some(s) => Err(ConfigError::UnknownSection { type_id: s.type_id }),
            None => Ok(()),
        }
    }
}

/// Reads and checks the PD name field.
fn read_pd_name(region: &[u8]) -> Result<PdName, ConfigError> {
    let len = usize::from(*region.get(off::NAME_LEN).ok_or(ConfigError::BadPdName)?);
    let field = region
        .get(off::NAME..off::NAME + PD_NAME_MAX)
        .ok_or(ConfigError::BadPdName)?;
    let (name, pad) = field.split_at_checked(len).ok_or(ConfigError::BadPdName)?;
    if pad.iter().any(|&b| b != 0) {
        return Err(ConfigError::BadPdName);
    }
    let name = core::str::from_utf8(name).map_err(|_| ConfigError::BadPdName)?;
    PdName::new(name).ok_or(ConfigError::BadPdName)
}

/// One raw directory entry.
struct Entry {
    type_id: u32,
    version: u16,
    flags: u16,
    offset: u32,
    len: u32,
}

fn entry(region: &[u8], index: u32) -> Option<Entry> {
    let at = HEADER_LEN + usize::try_from(index).ok()? * DIR_ENTRY_LEN;
    Some(Entry {
        type_id: le32(region, at)?,
        version: le16(region, at + 4)?,
        flags: le16(region, at + 6)?,
        offset: le32(region, at + 8)?,
        len: le32(region, at + 12)?,
    })
}

/// Checks every directory entry against the canonical layout.
fn validate_sections(region: &[u8], count: u32, dir_end: u64) -> Result<(), ConfigError> {
    let total = region.len() as u64;
    let mut expected = dir_end;
    let mut prev_type: Option<u32> = None;
    for index in 0..count {
        // `dir_end <= total` was checked, so every entry is readable.
        let e = entry(region, index).ok_or(ConfigError::SectionOutOfBounds { index })?;
        if e.type_id == 0 {
            return Err(ConfigError::ReservedTypeId { index });
        }
        if let Some(prev) = prev_type {
            if e.type_id == prev {
                return Err(ConfigError::DuplicateSection { type_id: e.type_id });
            }
            if e.type_id < prev {
                return Err(ConfigError::SectionOrder { index });
            }
        }
        prev_type = Some(e.type_id);
        if e.flags & !KNOWN_FLAGS != 0 {
            return Err(ConfigError::UnknownFlags {
                index,
                flags: e.flags,
            });
        }
        let start = u64::from(e.offset);
        let end = start + u64::from(e.len);
        let padded = align_up(end).ok_or(ConfigError::SectionOutOfBounds { index })?;
        if padded > total {
            return Err(ConfigError::SectionOutOfBounds { index });
        }
        if start % ALIGN as u64 != 0 {
            return Err(ConfigError::SectionMisaligned { index });
        }
        if start < expected {
            return Err(ConfigError::SectionOverlap { index });
        }
        if start > expected {
            return Err(ConfigError::SectionGap { index });
        }
        check_zero(region, end, padded)?;
        expected = padded;
    }
    if expected != total {
        return Err(ConfigError::TrailingData {
            offset: usize::try_from(expected).unwrap_or(usize::MAX),
        });
    }
    Ok(())
}

/// Checks that `region[from..to]` is all zeros.
fn check_zero(region: &[u8], from: u64, to: u64) -> Result<(), ConfigError> {
    let from = usize::try_from(from).map_err(|_| ConfigError::TooLarge)?;
    let to = usize::try_from(to).map_err(|_| ConfigError::TooLarge)?;
    let bytes = region.get(from..to).ok_or(ConfigError::TooLarge)?;
    match bytes.iter().position(|&b| b != 0) {
        Some(i) => Err(ConfigError::PaddingNotZero { offset: from + i }),
        None => Ok(()),
    }
}

/// Iterator over the sections of a [`ConfigRegion`].
#[derive(Debug, Clone)]
pub struct Sections<'a> {
    bytes: &'a [u8],
    next: u32,
    count: u32,
}

impl<'a> Iterator for Sections<'a> {
    type Item = Section<'a>;

    fn next(&mut self) -> Option<Section<'a>> {
        if self.next >= self.count {
            return None;
        }
        let index = self.next;
        self.next += 1;
        let e = entry(self.bytes, index)?;
        let start = usize::try_from(e.offset).ok()?;
        let end = start.checked_add(usize::try_from(e.len).ok()?)?;
        Some(Section {
            index,
            type_id: e.type_id,
            version: e.version,
            flags: e.flags,
            payload: self.bytes.get(start..end)?,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.count.saturating_sub(self.next)).unwrap_or(0);
        (left, Some(left))
    }
}
