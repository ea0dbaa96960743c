//! [`dump`]: a human-readable rendering of a configuration region, for
//! `bulkhead` to print and for a PD's debug console.
//!
//! ```
//! # #[cfg(feature = "std")] {
//! use bulkhead_config::{dump, ConfigBuilder, ConfigRegion};
//! let bytes = ConfigBuilder::new("blk_virt").section(0x0002_0001, 1, b"abc").build().unwrap();
//! let cfg = ConfigRegion::parse(&bytes, "blk_virt").unwrap();
//! let text = format!("{}", dump(&cfg));
//! assert!(text.contains("type 0x00020001 (storage) v1"));
//! # }
//! ```

use core::fmt;

use crate::ConfigRegion;

/// How many payload bytes [`Dump`] shows per section.
const SHOWN: usize = 64;

/// Displays a [`ConfigRegion`]: header, then one line per section and a hex
/// dump of the start of its payload.
#[derive(Debug, Clone, Copy)]
pub struct Dump<'r, 'a>(&'r ConfigRegion<'a>);

/// Wraps `region` for printing with `{}`.
pub fn dump<'r, 'a>(region: &'r ConfigRegion<'a>) -> Dump<'r, 'a> {
    Dump(region)
}

/// The component class that owns type id `type_id`'s range (see the README's
/// table; the class is the id's upper 16 bits).
pub fn type_class(type_id: u32) -> &'static str {
    match type_id >> 16 {
        0x0000 => "runtime",
        0x0001 => "vmm",
        0x0002 => "storage",
        0x0003 => "can",
        0x0004 => "ethernet",
        0x0005 => "audio",
        0x0006 => "console",
        0x0007 => "health",
        0x0008..=0x7fff => "reserved",
        0x8000..=0xfffe => "vendor",
        _ => "test",
    }
}

impl fmt::Display for Dump<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let (major, minor) = r.version();
        writeln!(
            f,
            "configuration for PD `{}`: format {major}.{minor}, {} bytes, {} section(s), crc32c {:#010x}",
            r.pd_name(),
            r.len(),
            r.section_count(),
            r.checksum()
        )?;
        for s in r.sections() {
            writeln!(
                f,
                "  [{}] type {:#010x} ({}) v{} {} {} bytes",
                s.index,
                s.type_id,
                type_class(s.type_id),
                s.version,
                if s.is_optional() {
                    "optional"
                } else {
                    "required"
                },
                s.payload().len()
            )?;
            let payload = s.payload();
            for (row, chunk) in payload.chunks(16).take(SHOWN / 16).enumerate() {
                write!(f, "      {:04x}:", row * 16)?;
                for b in chunk {
                    write!(f, " {b:02x}")?;
                }
                writeln!(f)?;
            }
            if payload.len() > SHOWN {
                writeln!(f, "      … {} more bytes", payload.len() - SHOWN)?;
            }
        }
        Ok(())
    }
}
