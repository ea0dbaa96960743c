//! [`FieldReader`]: little-endian field reads from a section payload that
//! return errors instead of panicking.
//!
//! ```
//! use bulkhead_config::{ConfigError, FieldReader};
//! let mut r = FieldReader::new(&[7, 0, 1, 0, 0, 0]);
//! assert_eq!(r.u16(), Ok(7));
//! assert_eq!(r.u32(), Ok(1));
//! assert_eq!(r.u8(), Err(ConfigError::PayloadTruncated { offset: 6, wanted: 1 }));
//! ```

use crate::ConfigError;

/// A cursor over a payload. Every read either returns the field and advances,
/// or returns [`ConfigError::PayloadTruncated`] and leaves the cursor where it
/// was.
#[derive(Debug, Clone)]
pub struct FieldReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> FieldReader<'a> {
    /// A reader at the start of `payload`.
    pub fn new(payload: &'a [u8]) -> FieldReader<'a> {
        FieldReader {
            buf: payload,
            pos: 0,
        }
    }

    /// Offset of the next field.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ConfigError> {
        let err = ConfigError::PayloadTruncated {
            offset: self.pos,
            wanted: n,
        };
        let end = self.pos.checked_add(n).ok_or(err)?;
        let s = self.buf.get(self.pos..end).ok_or(err)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ConfigError> {
        let at = self.pos;
        self.bytes(N)?
            .try_into()
            .map_err(|_| ConfigError::PayloadTruncated {
                offset: at,
                wanted: N,
            })
    }

    /// A `u8`.
    pub fn u8(&mut self) -> Result<u8, ConfigError> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, ConfigError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, ConfigError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, ConfigError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A little-endian `i64`.
    pub fn i64(&mut self) -> Result<i64, ConfigError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A boolean byte: 0 or 1, anything else is [`ConfigError::InvalidField`].
    pub fn bool(&mut self) -> Result<bool, ConfigError> {
        let at = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => {
                self.pos = at;
                Err(ConfigError::InvalidField { offset: at })
            }
        }
    }

    /// `n` bytes of UTF-8.
    pub fn str(&mut self, n: usize) -> Result<&'a str, ConfigError> {
        let at = self.pos;
        let b = self.bytes(n)?;
        core::str::from_utf8(b).map_err(|_| {
            self.pos = at;
            ConfigError::InvalidField { offset: at }
        })
    }

    /// Skips zero bytes up to the next multiple of `align` (a power of two);
    /// a non-zero padding byte is [`ConfigError::InvalidField`].
    pub fn pad_to(&mut self, align: usize) -> Result<(), ConfigError> {
        if !align.is_power_of_two() {
            return Err(ConfigError::InvalidField { offset: self.pos });
        }
        let n = self.pos.wrapping_neg() & (align - 1);
        let at = self.pos;
        let pad = self.bytes(n)?;
        if let Some(i) = pad.iter().position(|&b| b != 0) {
            self.pos = at;
            return Err(ConfigError::InvalidField { offset: at + i });
        }
        Ok(())
    }

    /// Succeeds only if every byte was read: a payload with more fields than
    /// the decoder knows is refused, not silently truncated.
    pub fn finish(self) -> Result<(), ConfigError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(ConfigError::PayloadTrailing { extra }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_stops_at_the_end() {
        let mut r = FieldReader::new(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(r.u64(), Ok(0x0807_0605_0403_0201));
        assert_eq!(
            r.u16(),
            Err(ConfigError::PayloadTruncated {
                offset: 8,
                wanted: 2
            })
        );
        assert_eq!(r.position(), 8, "a failed read does not advance");
        assert_eq!(r.u8(), Ok(9));
        assert!(r.finish().is_ok());
    }

    #[test]
    fn bool_str_pad_and_finish_refuse_bad_bytes() {
        assert_eq!(
            FieldReader::new(&[2]).bool(),
            Err(ConfigError::InvalidField { offset: 0 })
        );
        assert_eq!(
            FieldReader::new(&[0xff, 0xfe]).str(2),
            Err(ConfigError::InvalidField { offset: 0 })
        );
        let mut r = FieldReader::new(&[1, 0, 0, 5, 0, 0, 0, 0]);
        r.u8().unwrap();
        assert_eq!(r.pad_to(4), Err(ConfigError::InvalidField { offset: 3 }));
        let mut r = FieldReader::new(&[1, 0, 0, 0, 9]);
        r.u8().unwrap();
        r.pad_to(4).unwrap();
        assert_eq!(r.position(), 4);
        assert_eq!(r.finish(), Err(ConfigError::PayloadTrailing { extra: 1 }));
        assert_eq!(
            FieldReader::new(&[]).bytes(usize::MAX),
            Err(ConfigError::PayloadTruncated {
                offset: 0,
                wanted: usize::MAX
            })
        );
    }
}
