//! The VMM protection domain's parts: the guest-physical layout it presents
//! ([`layout`]), the device classes and their fixed slots ([`Class`]),
//! which classes this VMM serves ([`hops`]), guest RAM over a runtime
//! [`Region`] ([`RegionRam`]), one module per device class ([`console`],
//! [`blk`]),
//! and the bus of all slots ([`Devices`]). The PD itself is
//! `src/bin/vmm.rs`.
//!
//! # Adding a device class
//!
//! Slots are fixed per class, exactly as compose's guest device tree puts
//! them (`tools/compose/src/dt.rs`): class *c* at `0x0a00_0000 + 0x200·c`,
//! SPI `16 + c` (INTID `48 + c`), channel to its virtualiser `c + 1`. A
//! class the VMM has no hop for sits in its slot as [`Empty`] (reads as
//! zeros: no virtio magic, so a driver skips it). To add class `X`:
//!
//! 1. write `src/x.rs` with a `Device` that is an `MmioDevice`,
//!    `pub fn present_by_name()`, `pub fn attach(hop) -> Option<Device>`
//!    (see [`console`], [`blk`]);
//! 2. add the field `x: Option<x::Device>` to [`Devices`], and one line
//!    each in [`Devices::attach`], [`Devices::bus`] and
//!    [`Class::present_by_name`];
//! 3. in `src/bin/vmm.rs` `notified`, the backend work of `Class::X` (the
//!    bus poll of its slot is already generic).
#![no_std]

pub mod blk;
pub mod can;
pub mod console;
pub mod hops;

use bulkhead_runtime::Region;
use bulkhead_virtio::GuestMemory;
use bulkhead_vmm_core::{MmioDevice, RamBacking, Window};

pub mod layout {
    //! The guest-physical layout every guest of this VMM sees — on the host
    //! board the test guest's "device tree": RAM at [`RAM_BASE`], the slot
    //! of class `c` at `MMIO_BASE + c * SLOT_SIZE` with interrupt
    //! `IRQ_BASE + c` (QEMU `virt`'s numbers, compose's `dt.rs`). The
    //! [`crate::CLASSES`] class slots are always on the bus (an absent
    //! class reads as zeros); past them nothing is, and an access aborts.

    /// Guest-physical base of RAM (`G_ram` is mapped here in VM and VMM).
    pub const RAM_BASE: u64 = 0x4000_0000;
    /// First virtio-mmio slot.
    pub const MMIO_BASE: u64 = 0x0a00_0000;
    /// Bytes per slot.
    pub const SLOT_SIZE: u64 = 0x200;
    /// Slots a guest probes (more than there are classes: the ones past
    /// the last class are unbacked).
    pub const SLOTS: u64 = 8;
    /// The interrupt of slot 0 (SPI 16).
    pub const IRQ_BASE: u32 = 48;
    /// The whole MMIO range (page-rounded): a test guest maps it with no
    /// access so every register access traps.
    pub const MMIO_RANGE: u64 = 0x1000;

    // Every slot lies in the trapping range, which lies below RAM.
    const _: () = assert!(slot(SLOTS) <= MMIO_BASE + MMIO_RANGE);
    const _: () = assert!(MMIO_BASE + MMIO_RANGE <= RAM_BASE);
    const _: () = assert!(crate::CLASSES as u64 <= SLOTS);

    /// Guest-physical address of slot `k`.
    pub const fn slot(k: u64) -> u64 {
        MMIO_BASE + k * SLOT_SIZE
    }
}

/// Number of device classes (= class slots on the bus).
pub const CLASSES: usize = 5;

/// A device class, in compose's order (`tools/compose/src/lib.rs`
/// `Class::ALL`): the discriminant is the slot index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// virtio-console, hop to `serial_virt`.
    Serial = 0,
    /// virtio-blk, hop to `blk_virt`.
    Blk = 1,
    /// virtio-net, hop to `eth_virt`.
    Eth = 2,
    /// virtio-can, hop to `can_virt`.
    Can = 3,
    /// virtio-sound, hop to `snd_virt`.
    Snd = 4,
}

impl Class {
    /// Every class, by slot.
    pub const ALL: [Class; CLASSES] = [
        Class::Serial,
        Class::Blk,
        Class::Eth,
        Class::Can,
        Class::Snd,
    ];

    /// Slot index.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Compose's name (region and PD names: `<name>_virt`).
    pub const fn name(self) -> &'static str {
        match self {
            Class::Serial => "serial",
            Class::Blk => "blk",
            Class::Eth => "eth",
            Class::Can => "can",
            Class::Snd => "snd",
        }
    }

    /// The virtio device id.
    pub const fn virtio_id(self) -> u32 {
        match self {
            Class::Eth => 1,
            Class::Blk => 2,
            Class::Serial => 3,
            Class::Snd => 25,
            Class::Can => 36,
        }
    }

    /// The class with virtio device id `id`.
    pub fn from_virtio_id(id: u32) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.virtio_id() == id)
    }

    /// Id of the channel VMM → virtualiser (class index + 1).
    pub const fn channel_id(self) -> u8 {
        self as u8 + 1
    }

    /// The class whose virtualiser channel is `id`.
    pub fn from_channel_id(id: u8) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.channel_id() == id)
    }

    /// The channel to this class's virtualiser.
    pub const fn channel(self) -> bulkhead_runtime::Channel {
        bulkhead_runtime::Channel::new(self.channel_id())
    }

    /// The class's bus window.
    pub const fn window(self) -> Window {
        Window {
            base: layout::slot(self as u64),
            size: layout::SLOT_SIZE,
            irq: layout::IRQ_BASE + self as u32,
        }
    }

    /// Whether this VMM has the class's hop, by region name (systems
    /// without a configuration region). A class without a module here is
    /// never present.
    pub fn present_by_name(self) -> bool {
        match self {
            Class::Serial => console::present_by_name(),
            Class::Blk => blk::present_by_name(),
            Class::Can => can::present_by_name(),
            Class::Eth | Class::Snd => false,
        }
    }
}

/// The bus windows: every class slot, in class order.
pub fn windows() -> impl Iterator<Item = Window> {
    Class::ALL.into_iter().map(Class::window)
}

/// An absent class's slot: every register reads as zero and writes are
/// ignored (virtio magic 0: "no device here", as a driver probing QEMU's
/// empty `virtio-mmio` transports sees).
#[derive(Debug, Default, Clone, Copy)]
pub struct Empty;

impl MmioDevice for Empty {
    fn read(&mut self, _: u64, _: u8, _: &mut dyn GuestMemory) -> Result<u64, ()> {
        Ok(0)
    }
    fn write(&mut self, _: u64, _: u8, _: u64, _: &mut dyn GuestMemory) -> Result<(), ()> {
        Ok(())
    }
    fn irq_level(&self) -> bool {
        false
    }
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

/// A present class whose device could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachError(pub Class);

/// The VMM's devices: one field per class module; absent classes are
/// `None` and sit on the bus as [`Empty`].
pub struct Devices {
    /// Slot 0.
    pub console: Option<console::Device>,
    /// Slot 1.
    pub blk: Option<blk::Device>,
    /// Slot 3.
    pub can: Option<can::Device>,
    empty: [Empty; CLASSES],
}

/// `dev` if present, else the empty slot.
fn slot<'a, D: MmioDevice>(dev: &'a mut Option<D>, empty: &'a mut Empty) -> &'a mut dyn MmioDevice {
    match dev {
        Some(d) => d,
        None => empty,
    }
}

impl Devices {
    /// The devices of the classes in `present` (indexed by slot).
    ///
    /// # Errors
    /// [`AttachError`] naming a present class whose device could not be
    /// built.
    pub fn attach(present: &hops::Present) -> Result<Devices, AttachError> {
        let on = |c: Class| present.on[c.index()];
        let hop = |c: Class| present.hop[c.index()];
        let console = if on(Class::Serial) {
            Some(console::attach().ok_or(AttachError(Class::Serial))?)
        } else {
            None
        };
        let blk = if on(Class::Blk) {
            Some(blk::attach(hop(Class::Blk)).ok_or(AttachError(Class::Blk))?)
        } else {
            None
        };
        let can = if on(Class::Can) {
            Some(can::attach().ok_or(AttachError(Class::Can))?)
        } else {
            None
        };
        Ok(Devices {
            console,
            blk,
            can,
            empty: [Empty; CLASSES],
        })
    }

    /// Which classes have a device.
    pub fn present(&self) -> [bool; CLASSES] {
        let mut p = [false; CLASSES];
        p[Class::Serial.index()] = self.console.is_some();
        p[Class::Blk.index()] = self.blk.is_some();
        p[Class::Can.index()] = self.can.is_some();
        p
    }

    /// The bus, slot `i` = class `i` (= [`windows`] order).
    pub fn bus(&mut self) -> [&mut dyn MmioDevice; CLASSES] {
        let [e0, e1, e2, e3, e4] = &mut self.empty;
        [
            slot(&mut self.console, e0),
            slot(&mut self.blk, e1),
            e2,
            slot(&mut self.can, e3),
            e4,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_slots_are_composes_windows_and_fit_the_trapping_range() {
        let mut bus: bulkhead_vmm_core::Vmm<CLASSES> = bulkhead_vmm_core::Vmm::new();
        for (k, w) in windows().enumerate() {
            assert_eq!(w.base, 0x0a00_0000 + 0x200 * k as u64);
            assert_eq!(w.irq, 32 + 16 + u32::try_from(k).unwrap(), "SPI 16 + class");
            assert!(w.base + w.size <= layout::MMIO_BASE + layout::MMIO_RANGE);
            assert_eq!(bus.add(w), Ok(k), "windows must not overlap");
        }
        assert_eq!(Class::Blk.window().base, 0x0a00_0200);
        assert_eq!(Class::Can.window().irq, 51);
    }

    #[test]
    fn class_numbers_match_compose() {
        for c in Class::ALL {
            assert_eq!(Class::ALL[c.index()], c);
            assert_eq!(Class::from_virtio_id(c.virtio_id()), Some(c));
            assert_eq!(Class::from_channel_id(c.channel_id()), Some(c));
        }
        assert_eq!(
            Class::ALL.map(Class::channel_id),
            [1, 2, 3, 4, 5],
            "serial 1, blk 2, eth 3, can 4, snd 5"
        );
        assert_eq!(Class::from_channel_id(0), None);
    }

    #[test]
    fn an_absent_class_reads_as_zeros_and_ignores_writes() {
        let mut ram = bulkhead_virtio::SliceMemory::new(0, &mut []);
        let mut e = Empty;
        assert_eq!(e.read(0, 4, &mut ram), Ok(0));
        assert_eq!(e.write(0x70, 4, 7, &mut ram), Ok(()));
        assert_eq!(e.read(0x70, 4, &mut ram), Ok(0));
        assert!(!e.irq_level());
    }
}
