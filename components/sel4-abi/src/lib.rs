//! The libmicrokit ABI in Rust, for PDs that the real `microkit` tool packs.
//!
//! Everything a Microkit PD needs below a runtime: aarch64 MCS system calls
//! ([`syscall`]), the message tag ([`MessageInfo`]), the IPC buffer
//! ([`ipc_buffer`]), the capability layout ([`caps`]), badge decoding
//! ([`badge`]), the symbols the tool patches ([`symbols`]), the event loop
//! ([`event_loop`]) and invocations ([`invocations`]). Pure logic builds
//! and is tested on every target; the `svc` wrappers exist only on
//! `aarch64-unknown-none`; wrappers that need invocation labels exist only
//! when the build was given an SDK (`MICROKIT_SDK`, `MICROKIT_BOARD`,
//! `MICROKIT_CONFIG`). Each fact's source is in README.md.
//!
//! ```
//! use bulkhead_sel4_abi::badge::{decode, Event, PPC_BIT};
//! assert_eq!(decode(PPC_BIT | 3), Event::Protected(3));
//! ```
#![cfg_attr(not(test), no_std)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod api;
pub mod badge;
pub mod caps;
pub mod event_loop;
pub mod invocations;
pub mod ipc_buffer;
pub mod message;
pub mod symbols;
pub mod syscall;
pub mod vcpu;

pub use message::MessageInfo;

/// What the SDK given at build time says (labels, `seL4_UserVSpaceTop`).
#[cfg(sel4_sdk)]
pub mod sdk {
    include!(concat!(env!("OUT_DIR"), "/sdk.rs"));
}

/// Absolute path of the PD linker script, for PD crates' build scripts
/// (also exported to them as `DEP_BULKHEAD_SEL4_ABI_LINKER_SCRIPT`).
pub const LINKER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/link/microkit-pd.ld");

/// Defines the PD entry point `_start` calling `$main` (a `fn() -> !`).
///
/// libmicrokit's `crt0.s` is a bare `b main`: the tool's TCB set-up gives
/// the PD its stack pointer (one guard page below the IPC buffer) and its
/// program counter (`e_entry`), and the loader zero-fills `.bss`, so
/// nothing else needs doing before Rust code runs. `_start` is placed in
/// `.text.start`, first in the text segment.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// PD entry point (ELF `e_entry`).
        #[no_mangle]
        #[link_section = ".text.start"]
        pub extern "C" fn _start() -> ! {
            $main()
        }
    };
}
