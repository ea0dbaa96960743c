//! The writer (feature `std`): [`ConfigBuilder`] makes the bytes of a
//! configuration region, for `bulkhead compose` and tests.
//!
//! ```
//! use bulkhead_config::{ConfigBuilder, ConfigRegion};
//! let a = ConfigBuilder::new("eth_virt").section(9, 1, &[1]).section(4, 2, &[]).build().unwrap();
//! let b = ConfigBuilder::new("eth_virt").section(4, 2, &[]).section(9, 1, &[1]).build().unwrap();
//! assert_eq!(a, b, "bytes do not depend on insertion order");
//! assert_eq!(ConfigRegion::parse(&a, "eth_virt").unwrap().section_count(), 2);
//! ```

use std::vec::Vec;

use crate::{
    align_up, crc32c, off, ConfigError, PdName, SectionType, CRC_START, DIR_ENTRY_LEN,
    FLAG_OPTIONAL, HEADER_LEN, MAGIC, MAX_SECTIONS, VERSION_MAJOR, VERSION_MINOR,
};

/// Builds a configuration region for one PD.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    pd: std::string::String,
    sections: Vec<(u32, u16, u16, Vec<u8>)>,
}

/// Encodes a typed section's payload (the inverse of [`SectionType::decode`]).
pub trait SectionEncode {
    /// Appends the payload's fields to `out`.
    fn encode(&self, out: &mut SectionWriter);
}

/// Little-endian field writer, the counterpart of [`FieldReader`](crate::FieldReader).
#[derive(Debug, Clone, Default)]
pub struct SectionWriter {
    buf: Vec<u8>,
}

impl SectionWriter {
    /// An empty payload.
    pub fn new() -> SectionWriter {
        SectionWriter::default()
    }
    /// Appends a `u8`.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// Appends a little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a little-endian `i64`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a boolean byte (0 or 1).
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(u8::from(v));
        self
    }
    /// Appends raw bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// Appends zeros up to the next multiple of `align` (a power of two).
    pub fn pad_to(&mut self, align: usize) -> &mut Self {
        let n = self.buf.len().wrapping_neg() & align.wrapping_sub(1);
        self.buf.resize(self.buf.len() + n, 0);
        self
    }
    /// The payload.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

impl ConfigBuilder {
    /// A configuration for the PD named `pd_name` (checked by [`build`](Self::build)).
    pub fn new(pd_name: &str) -> ConfigBuilder {
        ConfigBuilder {
            pd: pd_name.into(),
            sections: Vec::new(),
        }
    }

    /// Adds a required section.
    pub fn section(mut self, type_id: u32, version: u16, payload: &[u8]) -> Self {
        self.sections.push((type_id, version, 0, payload.to_vec()));
        self
    }

    /// Adds a section that a PD not knowing `type_id` may ignore.
    pub fn optional_section(mut self, type_id: u32, version: u16, payload: &[u8]) -> Self {
        self.sections
            .push((type_id, version, FLAG_OPTIONAL, payload.to_vec()));
        self
    }

    /// Adds a required typed section.
    pub fn typed<'a, T: SectionType<'a> + SectionEncode>(self, value: &T) -> Self {
        let mut w = SectionWriter::new();
        value.encode(&mut w);
        self.section(T::ID, T::VERSION, &w.into_bytes())
    }

    /// The region's bytes: sections sorted by type id, payloads packed and
    /// zero-padded to 8, checksum filled in. The same sections give the same
    /// bytes whatever order they were added in.
    pub fn build(mut self) -> Result<Vec<u8>, ConfigError> {
        let pd = PdName::new(&self.pd).ok_or(ConfigError::BadPdName)?;
        let count = u32::try_from(self.sections.len()).map_err(|_| ConfigError::TooLarge)?;
        if count > MAX_SECTIONS {
            return Err(ConfigError::TooManySections { count });
        }
        self.sections.sort_by_key(|s| s.0);
        for w in self.sections.windows(2) {
            if let [a, b] = w {
                if a.0 == b.0 {
                    return Err(ConfigError::DuplicateSection { type_id: a.0 });
                }
            }
        }
        if let Some(index) = self.sections.iter().position(|s| s.0 == 0) {
            return Err(ConfigError::ReservedTypeId {
                index: u32::try_from(index).map_err(|_| ConfigError::TooLarge)?,
            });
        }

        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION_MAJOR.to_le_bytes());
        out.extend_from_slice(&VERSION_MINOR.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // total length, filled below
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // checksum, filled below
        let name = pd.as_str().as_bytes();
        out.push(u8::try_from(name.len()).map_err(|_| ConfigError::BadPdName)?);
        out.resize(off::NAME, 0);
        out.extend_from_slice(name);
        out.resize(HEADER_LEN, 0);

        let mut offset = (HEADER_LEN + self.sections.len() * DIR_ENTRY_LEN) as u64;
        for (type_id, version, flags, payload) in &self.sections {
            let len = u32::try_from(payload.len()).map_err(|_| ConfigError::TooLarge)?;
            out.extend_from_slice(&type_id.to_le_bytes());
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(
                &u32::try_from(offset)
                    .map_err(|_| ConfigError::TooLarge)?
                    .to_le_bytes(),
            );
            out.extend_from_slice(&len.to_le_bytes());
            offset = align_up(offset + u64::from(len)).ok_or(ConfigError::TooLarge)?;
        }
        for (_, _, _, payload) in &self.sections {
            out.extend_from_slice(payload);
            let padded = align_up(out.len() as u64).ok_or(ConfigError::TooLarge)?;
            out.resize(
                usize::try_from(padded).map_err(|_| ConfigError::TooLarge)?,
                0,
            );
        }
        let total = u32::try_from(out.len()).map_err(|_| ConfigError::TooLarge)?;
        out[off::TOTAL..off::TOTAL + 4].copy_from_slice(&total.to_le_bytes());
        let crc = crc32c(&out[CRC_START..]);
        out[off::CRC..off::CRC + 4].copy_from_slice(&crc.to_le_bytes());
        Ok(out)
    }
}
