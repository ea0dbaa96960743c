//! The MMIO bus: which device window a guest access lands in, and the
//! dispatch of that access to the device.

use bulkhead_virtio::GuestMemory;

use crate::access::{AccessKind, MmioAccess};

/// A device's window in guest-physical space and the interrupt line it
/// drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Guest-physical base.
    pub base: u64,
    /// Size in bytes (non-zero).
    pub size: u64,
    /// Interrupt line (the guest's INTID on aarch64).
    pub irq: u32,
}

impl Window {
    fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    fn offset_of(&self, gpa: u64, width: u8) -> Option<u64> {
        let off = gpa.checked_sub(self.base)?;
        let last = off.checked_add(u64::from(width))?;
        (last <= self.size).then_some(off)
    }
}

/// Why a window cannot be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusError {
    /// Every slot is taken.
    Full,
    /// Zero size, or base + size overflows.
    BadWindow,
    /// It overlaps the window at this index.
    Overlaps(usize),
}

/// A device on the bus. The VMM owns the devices; the bus only knows their
/// windows, so device models stay plain structs with no heap.
pub trait MmioDevice {
    /// A `width`-byte read at `offset` in the window. `Err(())` means the
    /// device refuses the access (the backend injects a data abort).
    #[allow(clippy::result_unit_err)]
    fn read(&mut self, offset: u64, width: u8, ram: &mut dyn GuestMemory) -> Result<u64, ()>;
    /// A `width`-byte write of `value` at `offset`.
    #[allow(clippy::result_unit_err)]
    fn write(
        &mut self,
        offset: u64,
        width: u8,
        value: u64,
        ram: &mut dyn GuestMemory,
    ) -> Result<(), ()>;
    /// The level of the device's interrupt line now.
    fn irq_level(&self) -> bool;
    /// Work that arrived from the device's backend (a completion, input):
    /// run it against guest RAM.
    fn poll(&mut self, _ram: &mut dyn GuestMemory) {}
}

/// A change of an interrupt line for the backend to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqEdge {
    /// The line.
    pub irq: u32,
    /// Raised (true) or lowered (false).
    pub level: bool,
}

/// What became of one access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done. For a read, `value` goes to the access's register; `irq` says
    /// whether the device's line changed.
    Completed {
        /// The value read (None for a write).
        value: Option<u64>,
        /// A change of the device's line.
        irq: Option<IrqEdge>,
    },
    /// No device window holds the access: inject a data abort into this
    /// guest.
    Unhandled {
        /// The address.
        gpa: u64,
    },
    /// The device refused it (bad width or alignment): inject a data abort.
    Refused {
        /// The address.
        gpa: u64,
    },
}

/// The VMM core of one guest: up to `N` device windows.
#[derive(Debug)]
pub struct Vmm<const N: usize> {
    windows: [Option<Window>; N],
    levels: [bool; N],
    count: usize,
}

impl<const N: usize> Default for Vmm<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Vmm<N> {
    /// An empty bus.
    pub fn new() -> Self {
        Vmm {
            windows: [None; N],
            levels: [false; N],
            count: 0,
        }
    }

    /// Add a window; its index is the device's index in the slice later
    /// passed to [`Vmm::handle`].
    ///
    /// # Errors
    /// [`BusError`] when it is empty, overflows, overlaps or the bus is full.
    pub fn add(&mut self, w: Window) -> Result<usize, BusError> {
        let end = w.end().filter(|_| w.size > 0).ok_or(BusError::BadWindow)?;
        for (i, other) in self.windows.iter().enumerate() {
            if let Some(o) = other {
                let oend = o.end().unwrap_or(u64::MAX);
                if w.base < oend && o.base < end {
                    return Err(BusError::Overlaps(i));
                }
            }
        }
        let slot = self.windows.get_mut(self.count).ok_or(BusError::Full)?;
        *slot = Some(w);
        self.count += 1;
        Ok(self.count - 1)
    }

    /// The windows, in index order.
    pub fn windows(&self) -> impl Iterator<Item = &Window> {
        self.windows.iter().flatten()
    }

    /// The index of the window wholly holding `[gpa, gpa + width)`.
    pub fn lookup(&self, gpa: u64, width: u8) -> Option<(usize, u64)> {
        self.windows
            .iter()
            .enumerate()
            .find_map(|(i, w)| w.and_then(|w| w.offset_of(gpa, width)).map(|off| (i, off)))
    }

    fn sync_irq(&mut self, index: usize, level: bool) -> Option<IrqEdge> {
        let (w, old) = (
            self.windows.get(index).copied().flatten()?,
            self.levels.get_mut(index)?,
        );
        if *old == level {
            return None;
        }
        *old = level;
        Some(IrqEdge { irq: w.irq, level })
    }

    /// Dispatch one access. `devices[i]` is the device of window `i`.
    pub fn handle(
        &mut self,
        access: &MmioAccess,
        ram: &mut dyn GuestMemory,
        devices: &mut [&mut dyn MmioDevice],
    ) -> Outcome {
        let gpa = access.gpa;
        if !access.width_valid() {
            return Outcome::Refused { gpa };
        }
        let Some((index, offset)) = self.lookup(gpa, access.width) else {
            return Outcome::Unhandled { gpa };
        };
        let Some(dev) = devices.get_mut(index) else {
            return Outcome::Unhandled { gpa };
        };
        let value = match access.kind {
            AccessKind::Read { .. } => match dev.read(offset, access.width, ram) {
                Ok(v) => Some(v),
                Err(()) => return Outcome::Refused { gpa },
            },
            AccessKind::Write { value } => match dev.write(offset, access.width, value, ram) {
                Ok(()) => None,
                Err(()) => return Outcome::Refused { gpa },
            },
        };
        let level = dev.irq_level();
        Outcome::Completed {
            value,
            irq: self.sync_irq(index, level),
        }
    }

    /// Run backend-driven work of device `index`; returns a line change.
    pub fn poll(
        &mut self,
        index: usize,
        ram: &mut dyn GuestMemory,
        devices: &mut [&mut dyn MmioDevice],
    ) -> Option<IrqEdge> {
        let dev = devices.get_mut(index)?;
        dev.poll(ram);
        let level = dev.irq_level();
        self.sync_irq(index, level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_virtio::SliceMemory;

    /// A register file of one u32 whose line is high while it is non-zero.
    #[derive(Default)]
    struct Latch(u32);

    impl MmioDevice for Latch {
        fn read(&mut self, offset: u64, width: u8, _: &mut dyn GuestMemory) -> Result<u64, ()> {
            (offset == 0 && width == 4)
                .then_some(u64::from(self.0))
                .ok_or(())
        }
        fn write(
            &mut self,
            offset: u64,
            width: u8,
            v: u64,
            _: &mut dyn GuestMemory,
        ) -> Result<(), ()> {
            if offset != 0 || width != 4 {
                return Err(());
            }
            self.0 = u32::try_from(v).map_err(|_| ())?;
            Ok(())
        }
        fn irq_level(&self) -> bool {
            self.0 != 0
        }
    }

    fn bus() -> Vmm<2> {
        let mut v = Vmm::new();
        assert_eq!(
            v.add(Window {
                base: 0x1000,
                size: 0x200,
                irq: 48
            }),
            Ok(0)
        );
        assert_eq!(
            v.add(Window {
                base: 0x1200,
                size: 0x200,
                irq: 49
            }),
            Ok(1)
        );
        v
    }

    #[test]
    fn windows_may_not_overlap_overflow_or_be_empty() {
        let mut v: Vmm<4> = Vmm::new();
        v.add(Window {
            base: 0x1000,
            size: 0x200,
            irq: 0,
        })
        .unwrap();
        assert_eq!(
            v.add(Window {
                base: 0x11ff,
                size: 1,
                irq: 0
            }),
            Err(BusError::Overlaps(0))
        );
        assert_eq!(
            v.add(Window {
                base: 0x0f00,
                size: 0x101,
                irq: 0
            }),
            Err(BusError::Overlaps(0))
        );
        assert_eq!(
            v.add(Window {
                base: u64::MAX,
                size: 2,
                irq: 0
            }),
            Err(BusError::BadWindow)
        );
        assert_eq!(
            v.add(Window {
                base: 0x5000,
                size: 0,
                irq: 0
            }),
            Err(BusError::BadWindow)
        );
        assert_eq!(
            v.add(Window {
                base: 0x1200,
                size: 0x200,
                irq: 0
            }),
            Ok(1)
        );
        let mut full: Vmm<1> = Vmm::new();
        full.add(Window {
            base: 0,
            size: 1,
            irq: 0,
        })
        .unwrap();
        assert_eq!(
            full.add(Window {
                base: 8,
                size: 1,
                irq: 0
            }),
            Err(BusError::Full)
        );
    }

    #[test]
    fn an_access_must_fit_wholly_in_one_window() {
        let v = bus();
        assert_eq!(v.lookup(0x11fc, 4), Some((0, 0x1fc)));
        assert_eq!(v.lookup(0x11fe, 4), None, "straddles two windows");
        assert_eq!(v.lookup(0x13fc, 8), None, "runs past the last window");
        assert_eq!(v.lookup(0x0fff, 1), None);
    }

    #[test]
    fn dispatch_reports_values_refusals_misses_and_irq_edges_once() {
        let mut v = bus();
        let (mut a, mut b) = (Latch::default(), Latch::default());
        let mut bytes = [0u8; 64];
        let mut ram = SliceMemory::new(0, &mut bytes);
        let mut devs: [&mut dyn MmioDevice; 2] = [&mut a, &mut b];
        let raised = v.handle(&MmioAccess::write(0x1200, 4, 7), &mut ram, &mut devs);
        assert_eq!(
            raised,
            Outcome::Completed {
                value: None,
                irq: Some(IrqEdge {
                    irq: 49,
                    level: true
                })
            }
        );
        let again = v.handle(&MmioAccess::write(0x1200, 4, 9), &mut ram, &mut devs);
        assert_eq!(
            again,
            Outcome::Completed {
                value: None,
                irq: None
            },
            "no second edge while high"
        );
        assert_eq!(
            v.handle(&MmioAccess::read(0x1200, 4), &mut ram, &mut devs),
            Outcome::Completed {
                value: Some(9),
                irq: None
            }
        );
        assert_eq!(
            v.handle(&MmioAccess::read(0x1202, 2), &mut ram, &mut devs),
            Outcome::Refused { gpa: 0x1202 }
        );
        assert_eq!(
            v.handle(&MmioAccess::read(0x1000, 3), &mut ram, &mut devs),
            Outcome::Refused { gpa: 0x1000 }
        );
        assert_eq!(
            v.handle(&MmioAccess::read(0x9000, 4), &mut ram, &mut devs),
            Outcome::Unhandled { gpa: 0x9000 }
        );
        let lowered = v.handle(&MmioAccess::write(0x1200, 4, 0), &mut ram, &mut devs);
        assert_eq!(
            lowered,
            Outcome::Completed {
                value: None,
                irq: Some(IrqEdge {
                    irq: 49,
                    level: false
                })
            }
        );
        // The other device never saw any of it.
        assert_eq!(a.0, 0);
    }

    #[test]
    fn a_window_without_a_device_is_unhandled_not_a_panic() {
        let mut v = bus();
        let mut bytes = [0u8; 8];
        let mut ram = SliceMemory::new(0, &mut bytes);
        assert_eq!(
            v.handle(&MmioAccess::read(0x1200, 4), &mut ram, &mut []),
            Outcome::Unhandled { gpa: 0x1200 }
        );
        assert_eq!(v.poll(5, &mut ram, &mut []), None);
    }

    const WIDTHS: [u8; 4] = [1, 2, 4, 8];

    proptest::proptest! {
        #[test]
        fn lookup_never_returns_an_offset_past_the_window(base in 0u64..=u64::MAX, size in 1u64..0x10000, gpa: u64, w in proptest::sample::select(&WIDTHS[..])) {
            let mut v: Vmm<1> = Vmm::new();
            if v.add(Window { base, size, irq: 0 }).is_ok() {
                if let Some((_, off)) = v.lookup(gpa, w) {
                    proptest::prop_assert!(off + u64::from(w) <= size);
                    proptest::prop_assert_eq!(base + off, gpa);
                }
            }
        }
    }
}
