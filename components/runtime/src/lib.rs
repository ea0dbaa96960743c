//! The Bulkhead PD runtime: one API for protection domains, two backends.
//!
//! A PD is a `#![no_std] #![no_main]` binary that implements [`Handler`] and
//! names its type in [`protection_domain!`]:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use bulkhead_runtime::{debug_println, Channel, ChannelSet, Handler};
//!
//! struct Hello;
//! impl Handler for Hello {
//!     fn init() -> Self {
//!         debug_println!("hello, world");
//!         Hello
//!     }
//!     fn notified(&mut self, _channels: ChannelSet) {}
//! }
//! bulkhead_runtime::protection_domain!(Hello);
//! ```
//!
//! Everything a PD may touch comes from its system description: channels
//! ([`Channel`]), memory regions ([`Region`]), `setvar` values ([`setvar`]),
//! children ([`Child`]) and vCPUs ([`Vcpu`]). Using anything the description
//! did not give the PD is an immediate, named [`RuntimeError`]; on the host
//! board the PD process additionally holds no handle for it, and a seccomp
//! allow-list keeps it from acquiring one.
//!
//! Backends: `target_os = "linux"` is the host board (module `host`);
//! `target_os = "none"` is the seL4 backend (module `sel4`, on the libmicrokit
//! ABI of `bulkhead-sel4-abi`; packable by the Microkit tool when built with
//! `MICROKIT_SDK`/`MICROKIT_BOARD`/`MICROKIT_CONFIG` set).
#![no_std]

// The host backend links `std` only for its panic machinery (unwinding in the
// dev profile needs std's personality routine); PD code itself stays
// `no_std`, and the backend talks to Linux through `libc` only.
#[cfg(target_os = "linux")]
extern crate std;

// PROTECTION-REMOVED (test-only, issue 12 item 4): see the module.
pub mod protection_removed;

mod api;
pub mod maps;
pub mod time;
pub mod wire;

#[cfg(target_os = "linux")]
#[doc(hidden)]
pub mod host;
#[cfg(target_os = "linux")]
use host as backend;
#[cfg(target_os = "linux")]
pub use host::host_resource;

#[cfg(target_os = "none")]
#[doc(hidden)]
pub mod sel4;
/// The seL4 backend's pure logic, unit-tested on the host.
#[cfg(all(test, not(target_os = "none")))]
#[path = "sel4/logic.rs"]
mod sel4_logic;
/// The ABI crate, for [`protection_domain!`]'s expansion on seL4.
#[cfg(target_os = "none")]
#[doc(hidden)]
pub use bulkhead_sel4_abi as __sel4_abi;
#[cfg(target_os = "none")]
use sel4 as backend;
/// aarch64 vCPU operations for a VMM on seL4 (register snapshot of the
/// faulting vCPU, system registers, list-register injection, VPPI ack).
#[cfg(target_os = "none")]
pub use sel4::arm as vcpu_arm;

pub use api::*;
pub use bulkhead_config;

/// Declares the PD's [`Handler`] type and provides the process entry point
/// (and, on seL4, the panic handler) for the current backend.
///
/// Use it exactly once, in the PD's binary crate. A PD that uses memory
/// regions names them (their memory-region names) with the permissions it
/// maps them with: `protection_domain!(Ping, regions: [seq: rw])`. On the
/// host board the list is not needed (the supervisor tells the runtime the
/// maps); on seL4 it declares the symbols `<name>_vaddr` and `<name>_size`
/// that the Microkit tool patches, so the PD's `<map>` in the `.system` file
/// must say `setvar_vaddr="<name>_vaddr" setvar_size="<name>_size"`.
/// [`Region::get`] then finds the region by name on both backends.
#[macro_export]
macro_rules! protection_domain {
    ($pd:ty $(, regions: [$($region:ident : $perms:ident),* $(,)?])? $(,)?) => {
        #[cfg(target_os = "linux")]
        #[no_mangle]
        extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
            $crate::__start::<$pd>()
        }

        /// The symbols the Microkit tool patches for this PD's regions.
        #[cfg(target_os = "none")]
        #[allow(non_snake_case, non_upper_case_globals)]
        mod __bulkhead_regions {
            $($(
                pub mod $region {
                    #[doc = concat!("`setvar_vaddr` of region `", stringify!($region), "`.")]
                    #[export_name = concat!(stringify!($region), "_vaddr")]
                    #[used]
                    #[link_section = ".data.microkit"]
                    pub static VADDR: $crate::__sel4_abi::symbols::Patched<u64> =
                        $crate::__sel4_abi::symbols::Patched::new(0);
                    #[doc = concat!("`setvar_size` of region `", stringify!($region), "`.")]
                    #[export_name = concat!(stringify!($region), "_size")]
                    #[used]
                    #[link_section = ".data.microkit"]
                    pub static SIZE: $crate::__sel4_abi::symbols::Patched<u64> =
                        $crate::__sel4_abi::symbols::Patched::new(0);
                }
            )*)?
        }

        #[cfg(target_os = "none")]
        static __BULKHEAD_REGIONS: &[$crate::sel4::RegionDecl] = &[
            $($(
                $crate::sel4::RegionDecl {
                    name: stringify!($region),
                    vaddr: &__bulkhead_regions::$region::VADDR,
                    size: &__bulkhead_regions::$region::SIZE,
                    perms: $crate::sel4::perms(stringify!($perms)),
                },
            )*)?
        ];

        #[cfg(target_os = "none")]
        #[no_mangle]
        #[link_section = ".text.start"]
        extern "C" fn _start() -> ! {
            $crate::__start::<$pd>(__BULKHEAD_REGIONS)
        }

        #[cfg(target_os = "none")]
        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            $crate::__panic(info)
        }
    };
}

/// Prints one line to the PD's log (on the host board: its stdout, which the
/// supervisor prefixes with the PD name). Formats into a fixed buffer; a line
/// longer than 255 bytes is cut and ends with `...`.
#[macro_export]
macro_rules! debug_println {
    ($($arg:tt)*) => {
        $crate::__print_line(format_args!($($arg)*))
    };
}

/// Entry point used by [`protection_domain!`]; not part of the API.
#[doc(hidden)]
#[cfg(target_os = "linux")]
pub fn __start<H: Handler>() -> i32 {
    backend::start::<H>()
}

/// Entry point used by [`protection_domain!`]; not part of the API.
#[doc(hidden)]
#[cfg(target_os = "none")]
pub fn __start<H: Handler>(regions: &'static [sel4::RegionDecl]) -> ! {
    backend::start::<H>(regions)
}

/// Panic handler used by [`protection_domain!`] on seL4; not part of the API.
#[doc(hidden)]
#[cfg(target_os = "none")]
pub fn __panic(info: &core::panic::PanicInfo<'_>) -> ! {
    backend::panic(info)
}

/// Line printer used by [`debug_println!`]; not part of the API.
#[doc(hidden)]
pub fn __print_line(args: core::fmt::Arguments<'_>) {
    let mut line = LineBuf::new();
    // Writing into a LineBuf never fails: it truncates instead.
    let _ = core::fmt::write(&mut line, args);
    backend::write_line(line.finish());
}

/// A fixed-size line buffer that truncates instead of failing.
struct LineBuf {
    buf: [u8; 256],
    len: usize,
    cut: bool,
}

impl LineBuf {
    const fn new() -> Self {
        LineBuf {
            buf: [0; 256],
            len: 0,
            cut: false,
        }
    }

    /// The line including its trailing newline.
    fn finish(&mut self) -> &[u8] {
        if self.cut {
            self.len = self.buf.len() - 4;
            self.buf[self.len..self.len + 3].copy_from_slice(b"...");
            self.len += 3;
        }
        self.buf[self.len] = b'\n';
        &self.buf[..=self.len]
    }
}

impl core::fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // Keep one byte for the newline.
        let room = self.buf.len() - 1 - self.len;
        let take = s.len().min(room);
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            self.cut = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn line_buf_truncates_long_lines() {
        let mut l = LineBuf::new();
        for _ in 0..100 {
            l.write_str("abcdef").unwrap_or(());
        }
        let out = l.finish();
        assert_eq!(out.len(), 256);
        assert!(out.ends_with(b"...\n"));
    }

    #[test]
    fn line_buf_short_line() {
        let mut l = LineBuf::new();
        l.write_str("hi").unwrap_or(());
        assert_eq!(l.finish(), b"hi\n");
    }
}
