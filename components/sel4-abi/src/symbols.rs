//! The symbols the Microkit tool patches into every PD ELF, and `setvar`s.
//!
//! The tool (`tool/microkit/src/symbols.rs`, Microkit 2.3.0) writes, for
//! every PD, by symbol name and with `.unwrap()` (so a missing symbol
//! crashes the tool): `microkit_name` (the PD name, at most
//! `MICROKIT_PD_NAME_LENGTH` = 64 bytes, not NUL-terminated when exactly
//! 64), `microkit_passive` (1 byte, 0/1), and the u64 little-endian
//! bitmasks `microkit_irqs`, `microkit_notifications`, `microkit_pps`,
//! `microkit_ioports`. Each `setvar` symbol must exist and be exactly one
//! word (8 bytes) or the tool rejects the system. The tool finds symbols
//! in `.symtab` (so PD ELFs must not be stripped), refuses names that occur
//! twice, and writes into whichever PT_LOAD segment covers the symbol —
//! including its zero-filled (`.bss`) part, since it loads each segment's
//! full memory size (`elf.rs` `write_symbol`, `capdl/builder.rs`).
//!
//! Why they are where they are: each is a `#[no_mangle]` static (the tool
//! looks them up by exact name) wrapped in [`Patched`], an `UnsafeCell`, so
//! the compiler neither folds the build-time zero into readers nor places
//! it in read-only memory; reads are volatile. They live in the writable
//! input section `.data.microkit`: an unreferenced `microkit_pps` must
//! still exist for the tool, so they are `#[used]` (on ELF, LLVM marks the
//! section SHF_GNU_RETAIN, which rust-lld's section GC honours — checked:
//! a PD that references none of them still has all six) and our PD linker
//! script (`link/microkit-pd.ld`) also `KEEP`s the section, so the
//! guarantee does not rest on one linker feature. Being in `.data` they are
//! file-backed, so tools that read the ELF's bytes see the patched values.

use core::cell::UnsafeCell;

/// Length of `microkit_name` (`MICROKIT_PD_NAME_LENGTH`).
pub const NAME_LENGTH: usize = 64;

/// A value the Microkit tool writes into the ELF before boot.
#[repr(transparent)]
pub struct Patched<T>(UnsafeCell<T>);

// SAFETY: the value is written by the tool before the PD runs and never by
// the PD (there is no safe way to write through `Patched`); a PD on seL4
// is single-threaded. Shared reads are therefore race-free.
unsafe impl<T: Copy> Sync for Patched<T> {}

impl<T: Copy> Patched<T> {
    /// The build-time placeholder value.
    #[must_use]
    pub const fn new(value: T) -> Self {
        Self(UnsafeCell::new(value))
    }

    /// Reads the (patched) value.
    #[must_use]
    pub fn get(&self) -> T {
        // SAFETY: the pointer comes from a live UnsafeCell; no `&mut` to it
        // ever exists; volatile so the build-time value is not assumed.
        unsafe { self.0.get().read_volatile() }
    }
}

/// Declares a `setvar` target: a `#[no_mangle]` 8-byte [`Patched`] `u64`
/// named exactly like the `.system` file's `symbol=` attribute.
///
/// ```
/// bulkhead_sel4_abi::setvar!(
///     /// Base of the TX ring (`<map … setvar_vaddr="ring_vaddr"/>`).
///     ring_vaddr
/// );
/// fn main() {
///     // 0 until the tool patches it.
///     assert_eq!(ring_vaddr.get(), 0);
/// }
/// ```
#[macro_export]
macro_rules! setvar {
    ($(#[$m:meta])* $vis:vis $name:ident) => {
        $(#[$m])*
        #[allow(non_upper_case_globals)]
        #[no_mangle]
        #[used]
        #[link_section = ".data.microkit"]
        $vis static $name: $crate::symbols::Patched<u64> = $crate::symbols::Patched::new(0);
    };
}

/// The patched statics themselves; only on bare-metal targets, where they
/// cannot collide with a host program's symbols.
#[cfg(target_os = "none")]
#[allow(non_upper_case_globals)]
pub mod patched {
    use super::{Patched, NAME_LENGTH};

    /// `microkit_name`: the PD's name from the `.system` file.
    #[no_mangle]
    #[used]
    #[link_section = ".data.microkit"]
    pub static microkit_name: Patched<[u8; NAME_LENGTH]> = Patched::new([0; NAME_LENGTH]);

    /// `microkit_passive`: 1 if the PD is passive (C `bool`, one byte).
    #[no_mangle]
    #[used]
    #[link_section = ".data.microkit"]
    pub static microkit_passive: Patched<u8> = Patched::new(0);

    /// `microkit_irqs`: bit n set iff IRQ id n belongs to this PD.
    #[no_mangle]
    #[used]
    #[link_section = ".data.microkit"]
    pub static microkit_irqs: Patched<u64> = Patched::new(0);

    /// `microkit_notifications`: bit n set iff channel n may be notified.
    #[no_mangle]
    #[used]
    #[link_section = ".data.microkit"]
    pub static microkit_notifications: Patched<u64> = Patched::new(0);

    /// `microkit_pps`: bit n set iff channel n may be PP-called.
    #[no_mangle]
    #[used]
    #[link_section = ".data.microkit"]
    pub static microkit_pps: Patched<u64> = Patched::new(0);

    /// `microkit_ioports`: x86 I/O port ids (always 0 on aarch64, but the
    /// tool writes it on every architecture).
    #[no_mangle]
    #[used]
    #[link_section = ".data.microkit"]
    pub static microkit_ioports: Patched<u64> = Patched::new(0);

    /// This PD's name as the tool patched it, for the whole run
    /// (`microkit_name` up to its first NUL, cut to valid UTF-8).
    #[must_use]
    pub fn name() -> &'static str {
        // SAFETY: `microkit_name` is written only by the Microkit tool,
        // before the PD starts; no API of this crate writes through a
        // `Patched`, so a shared 'static reference to its bytes never
        // aliases a write.
        let bytes: &'static [u8; NAME_LENGTH] = unsafe { &*microkit_name.0.get() };
        super::name_of(bytes)
    }

    /// This PD's identity as the tool patched it.
    #[must_use]
    pub fn identity() -> super::Identity {
        super::Identity {
            name: microkit_name.get(),
            passive: microkit_passive.get() != 0,
            irqs: microkit_irqs.get(),
            notifications: microkit_notifications.get(),
            pps: microkit_pps.get(),
            ioports: microkit_ioports.get(),
        }
    }
}

/// Names of every symbol the tool patches, with their exact sizes: what an
/// ELF check (ours, in `tests/`) compares against.
pub const PATCHED_SYMBOLS: [(&str, u64); 6] = [
    ("microkit_name", NAME_LENGTH as u64),
    ("microkit_passive", 1),
    ("microkit_irqs", 8),
    ("microkit_notifications", 8),
    ("microkit_pps", 8),
    ("microkit_ioports", 8),
];

/// Size every `setvar` symbol must have (one aarch64 word).
pub const SETVAR_SIZE: u64 = 8;

/// A PD's patched identity, as plain values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Identity {
    /// Raw `microkit_name` bytes.
    pub name: [u8; NAME_LENGTH],
    /// `microkit_passive`.
    pub passive: bool,
    /// `microkit_irqs`.
    pub irqs: u64,
    /// `microkit_notifications`.
    pub notifications: u64,
    /// `microkit_pps`.
    pub pps: u64,
    /// `microkit_ioports`.
    pub ioports: u64,
}

impl Identity {
    /// The name as text: bytes up to the first NUL (or all 64 when the tool
    /// truncated a longer name), cut back to the longest valid UTF-8
    /// prefix — the tool truncates by bytes, which may split a character.
    #[must_use]
    pub fn name(&self) -> &str {
        name_of(&self.name)
    }
}

/// `microkit_name` bytes as text: up to the first NUL (all 64 when none),
/// cut back to the longest valid UTF-8 prefix.
fn name_of(raw: &[u8; NAME_LENGTH]) -> &str {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(NAME_LENGTH);
    let bytes = &raw[..end];
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        // `valid_up_to` is a char boundary, so this cannot fail.
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(name: &[u8]) -> Identity {
        let mut n = [0u8; NAME_LENGTH];
        n[..name.len()].copy_from_slice(name);
        Identity {
            name: n,
            passive: false,
            irqs: 0,
            notifications: 0,
            pps: 0,
            ioports: 0,
        }
    }

    #[test]
    fn name_stops_at_nul() {
        assert_eq!(ident(b"serial_driver").name(), "serial_driver");
        assert_eq!(ident(b"").name(), "");
    }

    #[test]
    fn a_64_byte_name_has_no_nul_and_is_kept_whole() {
        let long = [b'a'; NAME_LENGTH];
        assert_eq!(ident(&long).name().len(), NAME_LENGTH);
    }

    #[test]
    fn a_name_truncated_inside_a_character_drops_the_partial_character() {
        let mut n = [b'x'; NAME_LENGTH];
        n[62] = 0xc3; // first byte of 'é', its second byte cut off by the tool
        n[63] = b'x';
        let id = ident(&n);
        assert_eq!(id.name(), &"x".repeat(62));
    }

    #[test]
    fn patched_reads_its_value() {
        let p = Patched::new(0x1234u64);
        assert_eq!(p.get(), 0x1234);
        assert_eq!(core::mem::size_of::<Patched<[u8; 64]>>(), 64);
        assert_eq!(core::mem::size_of::<Patched<u64>>() as u64, SETVAR_SIZE);
    }
}
