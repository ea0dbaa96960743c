//! seL4 backend — PLACEHOLDER until the seL4 issue lands.
//!
//! It has the same surface as the host backend so PD crates build for
//! `aarch64-unknown-none`, but every operation returns
//! [`RuntimeError::BackendNotImplemented`], and the entry point does not
//! follow the libmicrokit ABI (no patched symbols, no event loop): the
//! resulting ELF is NOT packable by the Microkit tool and is not meant to be.

use crate::api::{Handler, MessageInfo, Region, RuntimeError};

pub(crate) fn start<H: Handler>() -> ! {
    // Nothing to run without the real backend; park the core.
    loop {
        core::hint::spin_loop();
    }
}

pub(crate) fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

pub(crate) fn write_line(_line: &[u8]) {}

pub(crate) fn notify(_id: u8) -> Result<(), RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}

pub(crate) fn pp_call(_id: u8, _msg: MessageInfo) -> Result<MessageInfo, RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}

pub(crate) fn irq_ack(_id: u8) -> Result<(), RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}

pub(crate) fn region(_name: &str) -> Result<Region, RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}

pub(crate) fn setvar(_name: &str) -> Result<u64, RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}

pub(crate) fn pd_name() -> &'static str {
    "?"
}

pub(crate) fn halt(_status: u8) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

pub(crate) fn child_restart(_id: u8) -> Result<(), RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}

pub(crate) fn child_stop(_id: u8) -> Result<(), RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}

pub(crate) fn vcpu_restart(_id: u8, _pc: u64) -> Result<(), RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}

pub(crate) fn vcpu_stop(_id: u8) -> Result<(), RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}

pub(crate) fn vcpu_inject_irq(_id: u8, _irq: u16) -> Result<(), RuntimeError> {
    Err(RuntimeError::BackendNotImplemented)
}
