//! The aarch64 part of a Bulkhead VMM, free of seL4: it turns what the
//! kernel reports about a guest (stage-2 data-abort syndromes, `smc`/`hvc`
//! calls) into the arch-neutral [`bulkhead_vmm_core::MmioAccess`] and into
//! actions for the seL4 backend, and models the virtual GICv2 distributor,
//! the virtual GICv3 distributor and redistributor, and their list
//! registers.
//!
//! Everything here is pure computation over values the backend passes in
//! (syndrome registers, a copy of the vCPU's registers), so it is unit
//! tested on the host; the seL4 glue that reads those values and performs
//! the resulting actions lives elsewhere.
#![no_std]
#![forbid(unsafe_code)]

pub mod boot;
pub mod elf;
pub mod fault;
pub mod inject;
pub mod psci;
pub mod vgic;
pub mod vgic3;
