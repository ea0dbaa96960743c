//! The VMM protection domain's parts: the guest-physical layout it presents
//! ([`layout`]), guest RAM over a runtime [`Region`] ([`RegionRam`]), the
//! virtio-console backend that is a ring to `serial_virt` ([`RingConsole`]),
//! and the device table ([`Devices`]). The PD itself is `src/bin/vmm.rs`.
#![no_std]

use bulkhead_ring::{Consumer, Producer};
use bulkhead_runtime::Region;
use bulkhead_virt_console_pd::{push_bytes, Chunk, CHUNK_BYTES};
use bulkhead_vmm_core::{MmioDevice, RamBacking, VirtioMmio, Window};
use bulkhead_vmm_devices::console::{ConsoleBackend, VirtioConsole};

pub mod layout {
    //! The guest-physical layout every guest of this VMM sees — on the host
    //! board the test guest's "device tree": RAM at [`RAM_BASE`], virtio-mmio
    //! slot `k` at `MMIO_BASE + k * SLOT_SIZE` with interrupt `IRQ_BASE + k`
    //! (QEMU `virt`'s numbers). An empty slot reads as zeros (no magic), so a
    //! driver probing every slot finds exactly the devices in
    //! [`crate::DEVICE_TABLE`].

    /// Guest-physical base of RAM (`G_ram` is mapped here in VM and VMM).
    pub const RAM_BASE: u64 = 0x4000_0000;
    /// First virtio-mmio slot.
    pub const MMIO_BASE: u64 = 0x0a00_0000;
    /// Bytes per slot.
    pub const SLOT_SIZE: u64 = 0x200;
    /// Slots a guest probes.
    pub const SLOTS: u64 = 8;
    /// The interrupt of slot 0.
    pub const IRQ_BASE: u32 = 48;
    /// The whole MMIO range (page-rounded): a test guest maps it with no
    /// access so every register access traps.
    pub const MMIO_RANGE: u64 = 0x1000;

    // Every slot lies in the trapping range, which lies below RAM.
    const _: () = assert!(slot(SLOTS) <= MMIO_BASE + MMIO_RANGE);
    const _: () = assert!(MMIO_BASE + MMIO_RANGE <= RAM_BASE);

    /// Guest-physical address of slot `k`.
    pub const fn slot(k: u64) -> u64 {
        MMIO_BASE + k * SLOT_SIZE
    }
}

/// What sits in each slot. Adding a device class is one line here and one
/// field in [`Devices`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// virtio-console, backed by the `serial` hop.
    Console,
}

/// Slot → device. The bus window of entry `i` is `layout::slot(i)`.
pub const DEVICE_TABLE: &[DeviceKind] = &[DeviceKind::Console];

/// The bus windows of [`DEVICE_TABLE`].
pub fn windows() -> impl Iterator<Item = Window> {
    (0u64..).zip(DEVICE_TABLE).map(|(k, _)| Window {
        base: layout::slot(k),
        size: layout::SLOT_SIZE,
        irq: layout::IRQ_BASE + u32::try_from(k).unwrap_or(0),
    })
}

/// Guest RAM as the VMM maps it: a runtime region, read and written by copy
/// (the guest may change it at any time).
#[derive(Debug)]
pub struct RegionRam(pub Region);

impl RamBacking for RegionRam {
    fn len(&self) -> usize {
        self.0.size()
    }
    fn read_at(&self, offset: usize, buf: &mut [u8]) {
        // In range by RamBacking's contract; an error leaves zeros.
        if self.0.copy_out(offset, buf).is_err() {
            buf.fill(0);
        }
    }
    fn write_at(&mut self, offset: usize, data: &[u8]) {
        let _ = self.0.copy_in(offset, data);
    }
}

/// The virtio-console backend: output is pushed into the `serial_tx` ring
/// (to `serial_virt`), input comes from the `serial_rx` ring.
pub struct RingConsole {
    tx: Option<Producer<'static, Chunk>>,
    rx: Option<Consumer<'static, Chunk>>,
    /// Input popped from the ring but not yet given to the guest.
    pending: [u8; CHUNK_BYTES],
    pending_len: usize,
    pending_at: usize,
    /// `serial_virt` asked to be notified.
    pub notify: bool,
}

impl RingConsole {
    /// Attaches the rings in the regions whose setvar symbols are
    /// `serial_tx` and `serial_rx`; a missing one leaves that direction off.
    pub fn attach() -> RingConsole {
        let mut me = RingConsole {
            tx: bulkhead_virt_console_pd::producer("serial_tx").ok(),
            rx: bulkhead_virt_console_pd::consumer("serial_rx").ok(),
            pending: [0; CHUNK_BYTES],
            pending_len: 0,
            pending_at: 0,
            notify: false,
        };
        // Arm the input ring, so serial_virt signals when input arrives.
        me.refill();
        me
    }

    fn refill(&mut self) {
        if self.pending_at < self.pending_len {
            return;
        }
        let Some(rx) = self.rx.as_mut() else { return };
        loop {
            match rx.pop() {
                Ok(Some(c)) => {
                    let b = c.bytes();
                    self.pending[..b.len()].copy_from_slice(b);
                    self.pending_len = b.len();
                    self.pending_at = 0;
                    return;
                }
                Ok(None) => match rx.arm_signal() {
                    Ok(bulkhead_ring::Armed::Pending) => {}
                    Ok(bulkhead_ring::Armed::MaySleep) => return,
                    Err(_) => break,
                },
                Err(_) => break,
            }
        }
        // A corrupt ring: the neighbour is faulty; stop reading it.
        self.rx = None;
    }
}

impl ConsoleBackend for RingConsole {
    fn output(&mut self, bytes: &[u8]) -> usize {
        let Some(tx) = self.tx.as_mut() else {
            // Nowhere to go: consume, as a disconnected UART would.
            return bytes.len();
        };
        match push_bytes(tx, bytes) {
            Ok((n, notify)) => {
                self.notify |= notify;
                n
            }
            Err(_) => {
                self.tx = None;
                bytes.len()
            }
        }
    }

    fn input_pending(&self) -> bool {
        self.pending_at < self.pending_len
    }

    fn input(&mut self, buf: &mut [u8]) -> usize {
        let avail = &self.pending[self.pending_at..self.pending_len];
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.pending_at += n;
        n
    }
}

impl RingConsole {
    /// Pulls the next input chunk from the ring, if the last is used up.
    pub fn poll_input(&mut self) {
        self.refill();
    }
}

/// The VMM's devices, one field per [`DEVICE_TABLE`] entry.
pub struct Devices {
    /// Slot 0.
    pub console: VirtioMmio<VirtioConsole<RingConsole>>,
}

impl Devices {
    /// Bus order (= [`DEVICE_TABLE`] order).
    pub fn bus(&mut self) -> [&mut dyn MmioDevice; 1] {
        [&mut self.console]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_device_window_fits_the_trapping_range_and_the_bus() {
        let mut bus: bulkhead_vmm_core::Vmm<8> = bulkhead_vmm_core::Vmm::new();
        for (k, w) in windows().enumerate() {
            assert_eq!(w.base, layout::MMIO_BASE + k as u64 * layout::SLOT_SIZE);
            assert!(w.base + w.size <= layout::MMIO_BASE + layout::MMIO_RANGE);
            assert_eq!(bus.add(w), Ok(k), "windows must not overlap");
        }
        assert_eq!(windows().count(), DEVICE_TABLE.len());
        assert!(DEVICE_TABLE.len() as u64 <= layout::SLOTS);
    }
}
