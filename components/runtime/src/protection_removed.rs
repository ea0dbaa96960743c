//! TEST-ONLY protection-removed variants (issue 12 item 4; see
//! `tools/separation/README.md`).
//!
//! A `protection-removed-<name>` cargo feature builds PDs with one host-board
//! protection switched off, so the separation suite can show that the
//! checklist test relying on it FAILS. Every PD built with such a feature
//! carries [`MARKER`] in the ELF section `.bulkhead_protection_removed`, which
//! `bulkhead check --require-images` refuses (E078), and the features refuse
//! release builds, like Firecracker's fuzzing feature.
//!
//! Variants: `protection-removed-seccomp` — the host backend installs no
//! seccomp allow-list, so a PD can mmap, open and write other processes.

#[cfg(all(feature = "protection-removed-seccomp", not(debug_assertions)))]
compile_error!(
    "protection-removed-* features are test-only: they build PDs without a protection and must never be used in a release build"
);

/// Whether this build runs without the seccomp allow-list.
pub const SECCOMP_REMOVED: bool = cfg!(feature = "protection-removed-seccomp");

/// The marker every PD image built with a protection-removed feature carries.
#[cfg(feature = "protection-removed-seccomp")]
#[used]
#[link_section = ".bulkhead_protection_removed"]
pub static MARKER: [u8; 35] = *b"BULKHEAD_PROTECTION_REMOVED=seccomp";

/// Keeps [`MARKER`] referenced so no linker garbage collection drops it;
/// nothing without a protection-removed feature.
#[inline(never)]
pub fn keep_marker() {
    #[cfg(feature = "protection-removed-seccomp")]
    core::hint::black_box(&MARKER);
}
