//! The start-up, console and exception reporting that every bare-metal
//! test guest shares (see README.md). Only meaningful on
//! `aarch64-unknown-none`; on other targets the library is empty.
#![no_std]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod bare;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use bare::*;
