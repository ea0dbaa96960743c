//! [`ConfigError`]: every reason a configuration region is refused, with a
//! fixed number each.
//!
//! A PD that gets a `ConfigError` from [`ConfigRegion::parse`] refuses to
//! start and prints the error; the number lets a monitor or a test match the
//! reason without parsing text.
//!
//! ```
//! use bulkhead_config::{ConfigError, ConfigRegion};
//! let err = ConfigRegion::parse(&[0u8; 8], "can_virt").unwrap_err();
//! assert_eq!(err, ConfigError::TooShort { len: 8 });
//! assert_eq!(err.code(), 1);
//! ```
//!
//! [`ConfigRegion::parse`]: crate::ConfigRegion::parse

use core::fmt;

use crate::{PdName, HEADER_LEN};

/// Why a configuration region (or one of its sections) was refused.
///
/// The discriminants are fixed forever: a number once given is never reused
/// for another meaning. [`ConfigError::code`] returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[non_exhaustive]
pub enum ConfigError {
    /// The region is shorter than the fixed header.
    TooShort {
        /// Bytes available.
        len: usize,
    } = 1,
    /// The first 8 bytes are not [`MAGIC`](crate::MAGIC): not a configuration region at all.
    BadMagic = 2,
    /// The format version is one this reader does not understand (another
    /// major, or a newer minor).
    UnsupportedVersion {
        /// Major version found.
        major: u16,
        /// Minor version found.
        minor: u16,
    } = 3,
    /// The header's total length is larger than the memory region holding it.
    LengthExceedsRegion {
        /// Total length the header claims.
        total: u32,
        /// Size of the region.
        region: usize,
    } = 4,
    /// The header's total length cannot even hold the header and the section
    /// directory.
    LengthTooSmall {
        /// Total length the header claims.
        total: u32,
        /// Bytes the header and directory need.
        needed: u64,
    } = 5,
    /// The CRC-32C over the region does not match the header: the region was
    /// corrupted or edited after it was built.
    ChecksumMismatch {
        /// Checksum stored in the header.
        stored: u32,
        /// Checksum of the contents.
        computed: u32,
    } = 6,
    /// A reserved byte is not zero.
    ReservedNotZero {
        /// Offset of the byte from the start of the region.
        offset: usize,
    } = 7,
    /// The PD name field is empty, too long, not UTF-8, or not zero-padded.
    BadPdName = 8,
    /// The region was built for another PD.
    WrongPd {
        /// The PD the region was built for.
        found: PdName,
    } = 9,
    /// More sections than [`MAX_SECTIONS`](crate::MAX_SECTIONS).
    TooManySections {
        /// Section count the header claims.
        count: u32,
    } = 10,
    /// A section's payload extends past the total length.
    SectionOutOfBounds {
        /// Index of the section in the directory.
        index: u32,
    } = 11,
    /// A section's payload does not start at a multiple of 8.
    SectionMisaligned {
        /// Index of the section in the directory.
        index: u32,
    } = 12,
    /// A section's payload overlaps the directory or the previous payload.
    SectionOverlap {
        /// Index of the section in the directory.
        index: u32,
    } = 13,
    /// There are bytes between a payload and the next (payloads are packed,
    /// each padded only to the next multiple of 8).
    SectionGap {
        /// Index of the section in the directory.
        index: u32,
    } = 14,
    /// A padding byte is not zero.
    PaddingNotZero {
        /// Offset of the byte from the start of the region.
        offset: usize,
    } = 15,
    /// A section sets flag bits this reader does not know.
    UnknownFlags {
        /// Index of the section in the directory.
        index: u32,
        /// The flags found.
        flags: u16,
    } = 16,
    /// Two sections have the same type id.
    DuplicateSection {
        /// The repeated type id.
        type_id: u32,
    } = 17,
    /// The total length goes past the last payload's padding.
    TrailingData {
        /// Offset of the first byte past the last padded payload.
        offset: usize,
    } = 18,
    /// A section type id is 0, which is reserved as "no section".
    ReservedTypeId {
        /// Index of the section in the directory.
        index: u32,
    } = 19,
    /// A section the PD needs is not in its configuration.
    MissingSection {
        /// The type id looked for.
        type_id: u32,
    } = 20,
    /// A section has a version the PD was not built for.
    SectionVersion {
        /// The section's type id.
        type_id: u32,
        /// Version found in the region.
        found: u16,
        /// Version the PD understands.
        expected: u16,
    } = 21,
    /// A required (not optional) section has a type this PD does not know.
    UnknownSection {
        /// The unknown type id.
        type_id: u32,
    } = 22,
    /// A section payload ended before a field it must contain.
    PayloadTruncated {
        /// Offset of the field in the payload.
        offset: usize,
        /// Bytes the field needs.
        wanted: usize,
    } = 23,
    /// A section payload has bytes after its last field.
    PayloadTrailing {
        /// Bytes left over.
        extra: usize,
    } = 24,
    /// A field of a section payload has a value its decoder does not accept.
    InvalidField {
        /// Offset of the field in the payload.
        offset: usize,
    } = 25,
    /// (Writer) the configuration would not fit in the format's 32-bit
    /// length fields.
    TooLarge = 26,
    /// Section type ids are not in ascending order.
    SectionOrder {
        /// Index of the first out-of-order section.
        index: u32,
    } = 27,
}

impl ConfigError {
    /// The fixed number of this error (stable across releases).
    pub const fn code(&self) -> u32 {
        match self {
            ConfigError::TooShort { .. } => 1,
            ConfigError::BadMagic => 2,
            ConfigError::UnsupportedVersion { .. } => 3,
            ConfigError::LengthExceedsRegion { .. } => 4,
            ConfigError::LengthTooSmall { .. } => 5,
            ConfigError::ChecksumMismatch { .. } => 6,
            ConfigError::ReservedNotZero { .. } => 7,
            ConfigError::BadPdName => 8,
            ConfigError::WrongPd { .. } => 9,
            ConfigError::TooManySections { .. } => 10,
            ConfigError::SectionOutOfBounds { .. } => 11,
            ConfigError::SectionMisaligned { .. } => 12,
            ConfigError::SectionOverlap { .. } => 13,
            ConfigError::SectionGap { .. } => 14,
            ConfigError::PaddingNotZero { .. } => 15,
            ConfigError::UnknownFlags { .. } => 16,
            ConfigError::DuplicateSection { .. } => 17,
            ConfigError::TrailingData { .. } => 18,
            ConfigError::ReservedTypeId { .. } => 19,
            ConfigError::MissingSection { .. } => 20,
            ConfigError::SectionVersion { .. } => 21,
            ConfigError::UnknownSection { .. } => 22,
            ConfigError::PayloadTruncated { .. } => 23,
            ConfigError::PayloadTrailing { .. } => 24,
            ConfigError::InvalidField { .. } => 25,
            ConfigError::TooLarge => 26,
            ConfigError::SectionOrder { .. } => 27,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refuses to start: ")?;
        match *self {
            ConfigError::TooShort { len } => write!(
                f,
                "configuration region is {len} bytes, shorter than its {HEADER_LEN}-byte header"
            ),
            ConfigError::BadMagic => {
                f.write_str("configuration region has no BHCONFIG magic (not a configuration, or not prefilled)")
            }
            ConfigError::UnsupportedVersion { major, minor } => write!(
                f,
                "configuration format {major}.{minor} is not understood by this PD (it reads {}.0 to {}.{}); rebuild the configuration with the matching tools",
                crate::VERSION_MAJOR,
                crate::VERSION_MAJOR,
                crate::VERSION_MINOR
            ),
            ConfigError::LengthExceedsRegion { total, region } => write!(
                f,
                "configuration claims {total} bytes but its memory region holds only {region} (truncated)"
            ),
            ConfigError::LengthTooSmall { total, needed } => write!(
                f,
                "configuration claims {total} bytes, too few for its header and section directory ({needed})"
            ),
            ConfigError::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch: header says {stored:#010x}, contents give {computed:#010x} (region corrupted or edited after it was built)"
            ),
            ConfigError::ReservedNotZero { offset } => {
                write!(f, "reserved byte at offset {offset} is not zero")
            }
            ConfigError::BadPdName => f.write_str(
                "the PD name in the configuration header is empty, too long, not UTF-8 or not zero-padded",
            ),
            ConfigError::WrongPd { found } => write!(
                f,
                "this configuration was built for PD `{found}`, not for this PD"
            ),
            ConfigError::TooManySections { count } => write!(
                f,
                "configuration has {count} sections, more than the {} allowed",
                crate::MAX_SECTIONS
            ),
            ConfigError::SectionOutOfBounds { index } => {
                write!(f, "section {index} extends past the end of the configuration")
            }
            ConfigError::SectionMisaligned { index } => {
                write!(f, "section {index} does not start on an 8-byte boundary")
            }
            ConfigError::SectionOverlap { index } => write!(
                f,
                "section {index} overlaps the section directory or the previous section"
            ),
            ConfigError::SectionGap { index } => {
                write!(f, "unexplained bytes before section {index}")
            }
            ConfigError::PaddingNotZero { offset } => {
                write!(f, "padding byte at offset {offset} is not zero")
            }
            ConfigError::UnknownFlags { index, flags } => {
                write!(f, "section {index} has unknown flags {flags:#06x}")
            }
            ConfigError::DuplicateSection { type_id } => {
                write!(f, "section type {type_id:#010x} appears twice")
            }
            ConfigError::TrailingData { offset } => {
                write!(f, "unexplained bytes from offset {offset} to the end of the configuration")
            }
            ConfigError::ReservedTypeId { index } => {
                write!(f, "section {index} has the reserved type id 0")
            }
            ConfigError::MissingSection { type_id } => {
                write!(f, "required section {type_id:#010x} is missing")
            }
            ConfigError::SectionVersion {
                type_id,
                found,
                expected,
            } => write!(
                f,
                "section {type_id:#010x} is version {found}, this PD reads version {expected}"
            ),
            ConfigError::UnknownSection { type_id } => write!(
                f,
                "required section {type_id:#010x} is of a type this PD does not know"
            ),
            ConfigError::PayloadTruncated { offset, wanted } => write!(
                f,
                "section payload ends before the {wanted}-byte field at offset {offset}"
            ),
            ConfigError::PayloadTrailing { extra } => {
                write!(f, "section payload has {extra} unexpected bytes after its last field")
            }
            ConfigError::InvalidField { offset } => {
                write!(f, "section payload field at offset {offset} has an invalid value")
            }
            ConfigError::TooLarge => {
                f.write_str("configuration would exceed the format's 4 GiB limit")
            }
            ConfigError::SectionOrder { index } => write!(
                f,
                "section {index} is out of order (type ids must ascend)"
            ),
        }?;
        write!(f, " [config error {}]", self.code())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}
