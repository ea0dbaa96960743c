//! The arm64 Linux `Image` header (Linux `Documentation/arch/arm64/booting.rst`)
//! and where such an Image may be loaded.
//!
//! ```
//! use bulkhead_linux_tests::image::ImageHeader;
//! let mut hdr = [0u8; 64];
//! hdr[16..24].copy_from_slice(&(32u64 << 20).to_le_bytes()); // image_size
//! hdr[24] = 0b1010; // LE, 4K pages, anywhere
//! hdr[56..60].copy_from_slice(b"ARM\x64");
//! let h = ImageHeader::parse(&hdr).unwrap();
//! // At RAM + 2 MiB in 128 MiB of RAM at 0x4000_0000:
//! assert!(h.check_load(0x4000_0000, 128 << 20, 0x4020_0000).is_ok());
//! ```

/// `magic` at offset 0x38: "ARM\x64".
pub const MAGIC: [u8; 4] = *b"ARM\x64";
/// Header length.
pub const HEADER_LEN: usize = 64;
/// The base (load address − `text_offset`) must be aligned to this.
pub const BASE_ALIGN: u64 = 2 << 20;

/// Page size the kernel was built for (header flags bits 1–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageSize {
    /// Not given.
    Unspecified,
    /// 4 KiB.
    K4,
    /// 16 KiB.
    K16,
    /// 64 KiB.
    K64,
}

/// The fields of the header a loader acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the load address from a 2 MiB-aligned base.
    pub text_offset: u64,
    /// Bytes the kernel needs from the load address, BSS included.
    pub image_size: u64,
    /// Kernel page size.
    pub page_size: PageSize,
    /// Flags bit 3: the base may be anywhere in RAM (else as low as possible;
    /// RAM below it is unused).
    pub anywhere: bool,
}

/// Why bytes are not a loadable arm64 Image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than the 64-byte header.
    Short(usize),
    /// No "ARM\x64" at 0x38 (a compressed vmlinuz, or not arm64).
    BadMagic([u8; 4]),
    /// Flags bit 0 says big-endian.
    BigEndian,
    /// `image_size` is 0: a kernel before 3.17, whose size a loader cannot know.
    NoImageSize,
}

/// Why a load address does not suit an Image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// `load − text_offset` is not 2 MiB aligned.
    Misaligned(u64),
    /// The kernel's `image_size` bytes do not fit between the load address
    /// and the end of RAM.
    DoesNotFit {
        /// First byte past the kernel.
        end: u64,
        /// First byte past RAM.
        ram_end: u64,
    },
    /// The load address is below RAM.
    BelowRam,
}

impl ImageHeader {
    /// Reads the header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(ImageError::Short(bytes.len()))?;
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let magic = [h[56], h[57], h[58], h[59]];
        if magic != MAGIC {
            return Err(ImageError::BadMagic(magic));
        }
        let flags = u64_at(24);
        if flags & 1 != 0 {
            return Err(ImageError::BigEndian);
        }
        let image_size = u64_at(16);
        if image_size == 0 {
            return Err(ImageError::NoImageSize);
        }
        let page_size = match (flags >> 1) & 3 {
            1 => PageSize::K4,
            2 => PageSize::K16,
            3 => PageSize::K64,
            _ => PageSize::Unspecified,
        };
        Ok(Self {
            text_offset: u64_at(8),
            image_size,
            page_size,
            anywhere: flags & 8 != 0,
        })
    }

    /// Checks that the kernel can run loaded at `load` in RAM
    /// `[ram_base, ram_base + ram_size)`.
    pub fn check_load(&self, ram_base: u64, ram_size: u64, load: u64) -> Result<(), LoadError> {
        let base = load
            .checked_sub(self.text_offset)
            .filter(|b| *b >= ram_base)
            .ok_or(LoadError::BelowRam)?;
        if base % BASE_ALIGN != 0 {
            return Err(LoadError::Misaligned(base));
        }
        let ram_end = ram_base.saturating_add(ram_size);
        let end = load.saturating_add(self.image_size);
        if end > ram_end {
            return Err(LoadError::DoesNotFit { end, ram_end });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[56..60].copy_from_slice(&MAGIC);
        h
    }

    #[test]
    fn reads_debian_like_header() {
        // Debian 6.1's: text_offset 0, image_size 0x0201_0000, flags 0xa.
        let h = ImageHeader::parse(&header(0, 0x0201_0000, 0xa)).unwrap();
        assert_eq!(h.text_offset, 0);
        assert_eq!(h.image_size, 0x0201_0000);
        assert_eq!(h.page_size, PageSize::K4);
        assert!(h.anywhere);
    }

    #[test]
    fn rejects_non_images() {
        assert_eq!(ImageHeader::parse(&[0; 10]), Err(ImageError::Short(10)));
        let mut gz = header(0, 1, 0);
        gz[56..60].copy_from_slice(&[0x1f, 0x8b, 8, 0]);
        assert_eq!(
            ImageHeader::parse(&gz),
            Err(ImageError::BadMagic([0x1f, 0x8b, 8, 0]))
        );
        assert_eq!(
            ImageHeader::parse(&header(0, 1, 1)),
            Err(ImageError::BigEndian)
        );
        assert_eq!(
            ImageHeader::parse(&header(0, 0, 0)),
            Err(ImageError::NoImageSize)
        );
    }

    #[test]
    fn load_address_rules() {
        const RAM: u64 = 0x4000_0000;
        let h = ImageHeader::parse(&header(0, 0x0201_0000, 0xa)).unwrap();
        assert_eq!(h.check_load(RAM, 128 << 20, RAM + 0x20_0000), Ok(()));
        assert_eq!(
            h.check_load(RAM, 128 << 20, RAM + 0x1000),
            Err(LoadError::Misaligned(RAM + 0x1000))
        );
        assert_eq!(
            h.check_load(RAM, 32 << 20, RAM + 0x20_0000),
            Err(LoadError::DoesNotFit {
                end: RAM + 0x20_0000 + 0x0201_0000,
                ram_end: RAM + (32 << 20)
            })
        );
        assert_eq!(
            h.check_load(RAM, 128 << 20, RAM - 0x20_0000),
            Err(LoadError::BelowRam)
        );
        // An old-style text_offset of 0x80000 from a 2 MiB-aligned base.
        let old = ImageHeader::parse(&header(0x8_0000, 0x100_0000, 0x2)).unwrap();
        assert_eq!(old.check_load(RAM, 128 << 20, RAM + 0x8_0000), Ok(()));
        assert_eq!(
            old.check_load(RAM, 128 << 20, RAM + 0x40_0000),
            Err(LoadError::Misaligned(RAM + 0x38_0000))
        );
        assert_eq!(
            old.check_load(RAM, 128 << 20, 0x4_0000),
            Err(LoadError::BelowRam)
        );
    }
}
