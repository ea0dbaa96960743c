//! The host board: a Linux machine that runs a system description as
//! processes (see `shared/design/ARCHITECTURE.md` §3).
//!
//! It has no physical address space a description could name: memory
//! regions are shared-memory objects, devices are host resources (disk
//! images, TAP devices, SocketCAN interfaces) bound by the host-binding file
//! beside the `.system` file. So the board reports no RAM, no devices, no
//! interrupt controller and a zero-bit physical address space: every
//! `phys_addr` is an error on this board. An `<irq>` is a host interrupt
//! source the host-binding file feeds (today a periodic timer,
//! `[[timer_irq]]`); its number only has to be a GIC-style INTID so that
//! the same description stays valid on the aarch64 boards, and the binding
//! check (`bulkhead check --board host`) refuses an `<irq>` nothing feeds.
//!
//! What it does share with the aarch64 boards is the PD address-space
//! layout: the runtime maps regions at the description's vaddrs and puts
//! the IPC buffer and stack where Microkit does on a 40-bit hypervisor
//! config, so a description that is valid on `qemu_virt_aarch64` has the
//! same vaddr constraints here.

use crate::Board;

/// The board.
pub static BOARD: Board = Board {
    name: "host",
    description: "Linux host: one process per PD, regions as shared memory",
    ram: &[],
    devices: &[],
    // Any GIC-style INTID except SGIs (so descriptions stay portable); what
    // raises it is bound in the host-binding file.
    irq_range: (16, 1019),
    reserved_irqs: &[],
    // The runtime pins the PDs of each Microkit core to one host CPU; it
    // offers as many cores as the aarch64 boards so the same SMP
    // descriptions check here.
    cores: 4,
    gic: None,
    user_vaddr_top: 1 << 40,
    // Virtual machines run as traced test-guest processes (or KVM guests),
    // so descriptions with `<virtual_machine>` are valid here.
    hypervisor: true,
    // No physical addresses exist here.
    pa_bits: 0,
};
