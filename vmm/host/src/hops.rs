//! Which classes this VMM serves, and the names of its hop regions.
//!
//! A class is present iff the VMM has that class's hop: listed in its
//! configuration's `VMM_VIRTIO` section (`tools/compose/src/sections.rs`)
//! when the PD has a configuration region, otherwise found by region name
//! (each class module's `present_by_name`), as in hand-written systems.
//! Compose names a VMM's hop regions `<class>_<guest>_<part>` where the VMM
//! is `<guest>_vmm` and `part` is `req`, `resp`, `out` or `in`.

use bulkhead_config::{ConfigError, ConfigRegion, FieldReader};

use crate::{Class, CLASSES};

/// Compose's `VMM_VIRTIO` section type id.
pub const VMM_VIRTIO: u32 = 0x0001_0002;

/// Longest region name built here.
const NAME_MAX: usize = 80;

/// A stack buffer for a region name (PD code has no heap).
#[derive(Debug)]
pub struct NameBuf {
    buf: [u8; NAME_MAX],
}

impl Default for NameBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl NameBuf {
    /// An empty buffer.
    pub const fn new() -> Self {
        NameBuf { buf: [0; NAME_MAX] }
    }

    /// `parts` joined, or `None` if longer than the buffer.
    pub fn join(&mut self, parts: &[&str]) -> Option<&str> {
        let mut n = 0;
        for p in parts {
            let end = n + p.len();
            self.buf.get_mut(n..end)?.copy_from_slice(p.as_bytes());
            n = end;
        }
        core::str::from_utf8(self.buf.get(..n)?).ok()
    }
}

/// This VMM's guest: its PD name without `_vmm` (compose's naming).
pub fn guest_name() -> Option<&'static str> {
    bulkhead_runtime::pd_name().strip_suffix("_vmm")
}

/// Compose's name of this VMM's `part` region of `class`'s hop:
/// `<class>_<guest>_<part>`.
pub fn hop_region_name<'a>(b: &'a mut NameBuf, class: Class, part: &str) -> Option<&'a str> {
    b.join(&[class.name(), "_", guest_name()?, "_", part])
}

/// Guest RAM: setvar symbol `guest_ram` (hand-written systems), else
/// compose's region `<guest>_ram`.
pub fn guest_ram() -> Option<bulkhead_runtime::Region> {
    if let Ok(r) = bulkhead_runtime::Region::get("guest_ram") {
        return Some(r);
    }
    let mut b = NameBuf::new();
    bulkhead_runtime::Region::get(b.join(&[guest_name()?, "_ram"])?).ok()
}

/// Which classes this VMM has, and where their hops are when the
/// configuration says (compose: the hop's vaddr in this VMM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Present {
    /// Class `c` is present.
    pub on: [bool; CLASSES],
    /// Vaddr of class `c`'s hop (`req` region), from the configuration.
    pub hop: [Option<u64>; CLASSES],
}

/// The classes a `VMM_VIRTIO` payload lists. A device whose virtio id is
/// not a class's, or whose channel is not that class's (compose writes
/// class index + 1), is refused: the configuration and this VMM disagree.
///
/// # Errors
/// [`ConfigError::PayloadTruncated`] for a short payload,
/// [`ConfigError::InvalidField`] (at the device's entry) for an unknown
/// device or a wrong channel.
pub fn virtio_classes(payload: &[u8]) -> Result<Present, ConfigError> {
    let mut r = FieldReader::new(payload);
    let count = r.u32()?;
    let _pad = r.u32()?;
    let mut present = Present::default();
    for _ in 0..count {
        let at = r.position();
        let id = r.u32()?;
        let channel = r.u32()?;
        let (_gpa, _size, _intid, _pad, hop) = (r.u64()?, r.u64()?, r.u32()?, r.u32()?, r.u64()?);
        let bad = ConfigError::InvalidField { offset: at };
        let class = Class::from_virtio_id(id).ok_or(bad)?;
        if channel != u32::from(class.channel_id()) {
            return Err(bad);
        }
        present.on[class.index()] = true;
        present.hop[class.index()] = Some(hop);
    }
    Ok(present)
}

/// The classes present in this VMM: from `config`'s `VMM_VIRTIO` section if
/// it has one, else by region name.
///
/// # Errors
/// The section's [`ConfigError`] (a VMM with a bad configuration must not
/// guess).
pub fn present(config: Option<&ConfigRegion<'_>>) -> Result<Present, ConfigError> {
    if let Some(s) = config.and_then(|c| c.section(VMM_VIRTIO)) {
        if s.version != 1 {
            return Err(ConfigError::SectionVersion {
                type_id: VMM_VIRTIO,
                found: s.version,
                expected: 1,
            });
        }
        return virtio_classes(s.payload());
    }
    let mut present = Present::default();
    for c in Class::ALL {
        present.on[c.index()] = c.present_by_name();
    }
    Ok(present)
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn section(devs: &[(u32, u32)]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&u32::try_from(devs.len()).unwrap().to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        for (id, ch) in devs {
            v.extend_from_slice(&id.to_le_bytes());
            v.extend_from_slice(&ch.to_le_bytes());
            v.extend_from_slice(&[0u8; 24]);
            v.extend_from_slice(&(0x6000_0000 + u64::from(*ch)).to_le_bytes());
        }
        v
    }

    #[test]
    fn the_virtio_section_names_the_present_classes() {
        let p = virtio_classes(&section(&[(3, 1), (2, 2)])).unwrap();
        assert_eq!(p.on, [true, true, false, false, false]);
        assert_eq!(p.hop[1], Some(0x6000_0000 + 2));
        let p = virtio_classes(&section(&[(36, 4)])).unwrap();
        assert_eq!(p.on, [false, false, false, true, false]);
        assert_eq!(virtio_classes(&section(&[])).unwrap(), Present::default());
    }

    #[test]
    fn a_wrong_channel_unknown_device_or_short_section_is_refused() {
        assert!(matches!(
            virtio_classes(&section(&[(2, 1)])),
            Err(ConfigError::InvalidField { offset: 8 })
        ));
        assert!(virtio_classes(&section(&[(99, 1)])).is_err());
        let mut s = section(&[(3, 1)]);
        s.pop();
        assert!(matches!(
            virtio_classes(&s),
            Err(ConfigError::PayloadTruncated { .. })
        ));
    }

    #[test]
    fn names_are_joined_and_bounded() {
        let mut b = NameBuf::new();
        assert_eq!(b.join(&["blk", "_", "g", "_", "req"]), Some("blk_g_req"));
        let long = "x".repeat(NAME_MAX + 1);
        assert_eq!(b.join(&[&long]), None);
    }
}
