//! TEST-ONLY protection-removed variants (issue 12 item 4; see
//! `tools/separation/README.md`).
//!
//! A `protection-removed-<name>` cargo feature builds PDs with one host-board
//! protection switched off, so the separation suite can show that the
//! checklist test relying on it FAILS. Every PD built with such a feature
//! carries a `BULKHEAD_PROTECTION_REMOVED=<name>` marker in the ELF section
//! `.bulkhead_protection_removed`, which `bulkhead check --require-images`
//! refuses (E078), and the features refuse release builds, like
//! Firecracker's fuzzing feature. Build one variant at a time.
//!
//! | feature | protection removed | item that must fail |
//! |---|---|---|
//! | `protection-removed-seccomp` | no seccomp allow-list: a PD can mmap, open and write other processes | M1 |
//! | `protection-removed-ro-maps` | a read-only map is re-opened read-write through `/proc/self/fd` and mapped writable: the description's `perms="r"` is not enforced | M1 |
//! | `protection-removed-priorities` | every PD replaces the SCHED_FIFO priority the supervisor gave it by one and the same (the description's priorities are not enforced; a busy PD keeps the CPU) | T1, T3 |
//! | `protection-removed-wakeups` | the event loop delivers one signalled channel per wake-up and drops the others it already consumed (a badge word cleared after handling its lowest bit) | T4 |
//! | `protection-removed-stack-guard` | a writable mapping is placed directly below the PD's stack (no guard gap): an overflow writes it silently | M4 |

#[cfg(all(
    any(
        feature = "protection-removed-seccomp",
        feature = "protection-removed-ro-maps",
        feature = "protection-removed-priorities",
        feature = "protection-removed-wakeups",
        feature = "protection-removed-stack-guard"
    ),
    not(debug_assertions)
))]
compile_error!(
    "protection-removed-* features are test-only: they build PDs without a protection and must never be used in a release build"
);

/// Whether this build runs without the seccomp allow-list.
pub const SECCOMP_REMOVED: bool = cfg!(feature = "protection-removed-seccomp");

/// Whether this build maps read-only regions writable.
pub const RO_MAPS_REMOVED: bool = cfg!(feature = "protection-removed-ro-maps");

/// Whether this build runs every PD at one real-time priority.
pub const PRIORITIES_REMOVED: bool = cfg!(feature = "protection-removed-priorities");

/// Whether this build loses coalesced wake-ups.
pub const WAKEUPS_REMOVED: bool = cfg!(feature = "protection-removed-wakeups");

/// Whether this build maps memory directly below the stack.
pub const STACK_GUARD_REMOVED: bool = cfg!(feature = "protection-removed-stack-guard");

/// Declares the marker of one variant in the marker section.
macro_rules! marker {
    ($feature:literal, $name:ident, $text:literal) => {
        /// The marker a PD image built with this protection-removed feature carries.
        #[cfg(feature = $feature)]
        #[used]
        #[link_section = ".bulkhead_protection_removed"]
        pub static $name: [u8; $text.len()] = *$text;
    };
}

marker!(
    "protection-removed-seccomp",
    MARKER_SECCOMP,
    b"BULKHEAD_PROTECTION_REMOVED=seccomp"
);
marker!(
    "protection-removed-ro-maps",
    MARKER_RO_MAPS,
    b"BULKHEAD_PROTECTION_REMOVED=ro-maps"
);
marker!(
    "protection-removed-priorities",
    MARKER_PRIORITIES,
    b"BULKHEAD_PROTECTION_REMOVED=priorities"
);
marker!(
    "protection-removed-wakeups",
    MARKER_WAKEUPS,
    b"BULKHEAD_PROTECTION_REMOVED=wakeups"
);
marker!(
    "protection-removed-stack-guard",
    MARKER_STACK_GUARD,
    b"BULKHEAD_PROTECTION_REMOVED=stack-guard"
);

/// Keeps the markers referenced so no linker garbage collection drops them;
/// nothing without a protection-removed feature.
#[inline(never)]
pub fn keep_marker() {
    #[cfg(feature = "protection-removed-seccomp")]
    core::hint::black_box(&MARKER_SECCOMP);
    #[cfg(feature = "protection-removed-ro-maps")]
    core::hint::black_box(&MARKER_RO_MAPS);
    #[cfg(feature = "protection-removed-priorities")]
    core::hint::black_box(&MARKER_PRIORITIES);
    #[cfg(feature = "protection-removed-wakeups")]
    core::hint::black_box(&MARKER_WAKEUPS);
    #[cfg(feature = "protection-removed-stack-guard")]
    core::hint::black_box(&MARKER_STACK_GUARD);
}
