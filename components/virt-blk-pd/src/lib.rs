//! `blk_virt`, the block virtualiser PD: `bulkhead-virt-blk`'s
//! [`Virtualiser`](bulkhead_virt_blk::virt::Virtualiser) wired to compose's
//! hops, policy and channels through `bulkhead-runtime` only, so the same
//! code runs on the host board and on seL4. Also the blk hop itself
//! ([`hop`]: rings, regions, info block), which the VMM and the block
//! drivers attach to from their side.
//!
//! # Contract (what a system must give `blk_virt`)
//!
//! - **Configuration** (`<pd>_config`, read with `bulkhead_runtime::config`):
//!   compose's storage hops section `0x0002_0001` v1 (driver channel, client
//!   count, `drv` hop vaddr, data region size, per client: channel, guest
//!   index, hop vaddr) and storage policy `0x0002_0002` v1 (per client by
//!   channel: read-only flag, partition start and size in bytes on the
//!   disk, budget); layouts in `tools/compose/src/sections.rs`, reader in
//!   [`config`]. Client `i` is the `i`-th hop of the hops section.
//! - **Regions**, found by vaddr (`Region::at`): per hop at its vaddr `req`
//!   (+0, 4 KiB), `resp` (+0x1000, 4 KiB), `out` (+0x20_0000), `in`
//!   (+0x40_0000) — the `drv` hop's data regions at least
//!   [`hop::DRIVER_SLOTS`] × [`hop::SLOT_BYTES`] = 2 MiB; `blk_virt` maps
//!   the `drv` hop's `out` and the guests' `in` read-write, the others
//!   read-only is enough. On seL4 each must be declared with
//!   `setvar_vaddr="blk_hop<k>_<part>_vaddr"` (hop `k`: 0 = `drv`, guest
//!   `i` = `i + 1`), the names `src/bin/blk_virt.rs` declares.
//! - **Channels**: to the driver the hops section's id (compose: 0); to
//!   guest `i`'s VMM its channel (compose: `i + 1`). Both directions notify.
//! - **Rings**: [`hop::RING_CAPACITY`] slots of `WireRequest`/`WireResponse`
//!   (`components/blk-protocol`) at the start of `req`/`resp`; the lower
//!   side publishes an [`hop::Info`] at `resp` + 0x800 (the driver: disk
//!   sectors and its start count; `blk_virt`: each guest's capacity and
//!   read-only flag, once the table is read).
//!
//! # Behaviour
//!
//! At start `blk_virt` waits for the driver's info (disk size), reads the
//! partition table through the driver ([`table::TableLoader`]), and accepts
//! each client only if its configured extent is exactly a partition on the
//! disk (else every request of that client fails). Then it publishes each
//! client's info, and serves: requests are checked and translated by the
//! virtualiser, write payload is copied into the virtualiser's own `drv`
//! slot, responses go back after the driver's. A new driver epoch means the
//! driver restarted: everything it held is resent (idempotent: the slot
//! still holds the bytes), so no acknowledged write is lost.
//!
//! **Budgets** (issue 7: one guest cannot starve another): each client's
//! ops/bytes per period from the policy section are token buckets in the
//! virtualiser, refilled from the runtime clock (`bulkhead_runtime::time`)
//! on every event. A client out of budget keeps its requests queued (in
//! the virtualiser's FIFO, then in its ring): they are served after the
//! refill, never dropped. So that "after the refill" does not wait for an
//! unrelated event, a system gives `blk_virt` a periodic interrupt on any
//! channel that is neither the driver's nor a client's: compose binds a
//! host timer (`[[timer_irq]]`) on the host board. On seL4 that tick would
//! come from a timer driver PD (none exists yet): without it a throttled
//! request goes out at the next driver or client notification. Without a
//! clock, budgets are logged as not enforced.
//! If the system makes the driver a child of `blk_virt`, a driver fault is
//! answered by restarting it.
#![no_std]

pub mod config;
pub mod hop;
pub mod pd;
pub mod table;
