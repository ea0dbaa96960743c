//! ECAM enumeration and BAR programming against a fake configuration space
//! whose devices report BAR sizes the way PCI hardware does (all-ones probe,
//! read-only low bits).

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, missing_docs)]

use std::collections::HashMap;

use drv_pci_ecam::*;

#[derive(Clone, Copy)]
enum FakeBar {
    None,
    Mem32(u32),
    Mem64(u64),
    Io(u32),
}

struct Func {
    id: u32,
    multi: bool,
    bars: [FakeBar; 6],
    regs: [u32; 64],
    /// Memory decoding was on while a BAR held a probe or half-written value.
    decode_while_probing: bool,
}

impl Func {
    fn new(vendor: u16, device: u16, bars: [FakeBar; 6], pin: u8) -> Self {
        let mut regs = [0u32; 64];
        // Reset values: BAR type bits read back even before assignment.
        let mut i = 0;
        while i < 6 {
            regs[4 + i] = match bars[i] {
                FakeBar::Mem64(_) => 0b100,
                FakeBar::Io(_) => 1,
                _ => 0,
            };
            i += if matches!(bars[i], FakeBar::Mem64(_)) {
                2
            } else {
                1
            };
        }
        regs[0xf] = u32::from(pin) << 8;
        Self {
            id: u32::from(device) << 16 | u32::from(vendor),
            multi: false,
            bars,
            regs,
            decode_while_probing: false,
        }
    }

    fn read(&self, reg: usize) -> u32 {
        match reg {
            0 => self.id,
            3 => {
                if self.multi {
                    0x80 << 16
                } else {
                    0
                }
            }
            _ => self.regs[reg],
        }
    }

    fn write(&mut self, reg: usize, v: u32) {
        match reg {
            1 => self.regs[1] = v & 0x0000_0507,
            4..=9 => {
                let i = reg - 4;
                // A write to the upper half of a 64-bit BAR.
                if i > 0 {
                    if let FakeBar::Mem64(size) = self.bars[i - 1] {
                        self.regs[reg] = v & ((!(size - 1)) >> 32) as u32;
                        return;
                    }
                }
                self.regs[reg] = match self.bars[i] {
                    FakeBar::None => 0,
                    FakeBar::Mem32(size) => (v & !(size - 1)) & !0xf,
                    FakeBar::Mem64(size) => ((v & !((size - 1) as u32)) & !0xf) | 0b100,
                    FakeBar::Io(size) => (v & !(size - 1) & !3) | 1,
                };
                if self.regs[1] & CMD_MEMORY != 0 {
                    self.decode_while_probing = true;
                }
            }
            0xf => {} // pin is read-only; line unused
            _ => {}
        }
    }
}

#[derive(Default)]
struct FakeEcam {
    funcs: HashMap<(u8, u8, u8), Func>,
}

impl Mmio for FakeEcam {
    fn read32(&self, off: usize) -> u32 {
        let key = (
            (off >> 20) as u8,
            ((off >> 15) & 0x1f) as u8,
            ((off >> 12) & 7) as u8,
        );
        self.funcs
            .get(&key)
            .map_or(u32::MAX, |f| f.read((off & 0xfff) / 4))
    }

    fn write32(&mut self, off: usize, v: u32) {
        let key = (
            (off >> 20) as u8,
            ((off >> 15) & 0x1f) as u8,
            ((off >> 12) & 7) as u8,
        );
        if let Some(f) = self.funcs.get_mut(&key) {
            f.write((off & 0xfff) / 4, v);
        }
    }
}

const CTU: (u16, u16) = (0x1760, 0xff00);

/// `ctucan_pci` as QEMU builds it: BAR0 32 KiB (id/CRA), BAR1 64 KiB (two
/// cores at 0x4000 each), both 32-bit memory, INTA (QEMU `ctucan_pci.c`).
fn ctucan() -> Func {
    use FakeBar::*;
    Func::new(
        CTU.0,
        CTU.1,
        [Mem32(0x8000), Mem32(0x10000), None, None, None, None],
        1,
    )
}

fn machine() -> FakeEcam {
    use FakeBar::*;
    let mut e = FakeEcam::default();
    // The host bridge QEMU puts at 00:00.0, no BARs.
    e.funcs
        .insert((0, 0, 0), Func::new(0x1b36, 0x0008, [None; 6], 0));
    e.funcs.insert((0, 1, 0), ctucan());
    // Something else with an I/O BAR and a 64-bit 1 MiB BAR.
    e.funcs.insert(
        (0, 2, 0),
        Func::new(
            0x1af4,
            0x1000,
            [Io(0x20), Mem64(0x10_0000), None, None, None, None],
            1,
        ),
    );
    // A multi-function device whose function 3 is a CTU card.
    let mut f0 = Func::new(0x8086, 0x1234, [None; 6], 0);
    f0.multi = true;
    e.funcs.insert((0, 4, 0), f0);
    e.funcs.insert((0, 4, 3), ctucan());
    e
}

#[test]
fn finds_ctucan_functions_on_bus_0() {
    let ecam = Ecam::new(machine());
    let mut out = [Bdf::default(); 4];
    let n = ecam.find(CTU.0, CTU.1, &mut out);
    assert_eq!(
        &out[..n],
        &[
            Bdf {
                bus: 0,
                dev: 1,
                func: 0
            },
            Bdf {
                bus: 0,
                dev: 4,
                func: 3
            }
        ]
    );
    let mut one = [Bdf::default(); 1];
    assert_eq!(
        ecam.find(CTU.0, CTU.1, &mut one),
        1,
        "bounded by the output"
    );
    assert_eq!(ecam.find(0xdead, 0xbeef, &mut out), 0);
}

#[test]
fn bars_are_sized_placed_and_decoding_enabled() {
    let mut ecam = Ecam::new(machine());
    let mut w = Window::virt_mmio32();
    let dev1 = Bdf {
        bus: 0,
        dev: 1,
        func: 0,
    };
    let bars = ecam.assign_bars(dev1, &mut w, false).unwrap();
    assert_eq!(
        bars[0],
        Some(Bar {
            addr: 0x1000_0000,
            size: 0x8000,
            is_64: false
        })
    );
    assert_eq!(
        bars[1],
        Some(Bar {
            addr: 0x1001_0000,
            size: 0x10000,
            is_64: false
        })
    );
    assert_eq!(bars[2..], [None; 4]);
    assert_eq!(ecam.read(dev1, BAR0), 0x1000_0000);
    assert_eq!(ecam.read(dev1, BAR0 + 4), 0x1001_0000);
    let cmd = ecam.read(dev1, COMMAND);
    assert_ne!(cmd & CMD_MEMORY, 0);
    assert_eq!(cmd & CMD_BUS_MASTER, 0, "CTU CAN FD does no DMA");
    assert_eq!(ecam.virt_intid(dev1), Some(36), "slot 1 INTA → SPI 4");

    let dev2 = Bdf {
        bus: 0,
        dev: 2,
        func: 0,
    };
    let bars = ecam.assign_bars(dev2, &mut w, true).unwrap();
    assert_eq!(bars[0], None, "I/O BAR left alone");
    assert_eq!(
        bars[1],
        Some(Bar {
            addr: 0x1010_0000,
            size: 0x10_0000,
            is_64: true
        })
    );
    assert_eq!(bars[2], None, "upper half");
    assert_eq!(ecam.read(dev2, BAR0 + 4) & !0xf, 0x1010_0000);
    assert_eq!(ecam.read(dev2, BAR0 + 8), 0);
    assert_ne!(ecam.read(dev2, COMMAND) & CMD_BUS_MASTER, 0);

    let dev4 = Bdf {
        bus: 0,
        dev: 4,
        func: 3,
    };
    let bars = ecam.assign_bars(dev4, &mut w, false).unwrap();
    assert_eq!(bars[0].unwrap().addr, 0x1020_0000);
    assert_eq!(ecam.virt_intid(dev4), Some(35), "slot 4 INTA → SPI 3");
}

#[test]
fn decoding_is_off_while_probing_and_errors_are_typed() {
    let mut m = machine();
    // Firmware-less, but suppose decoding was left on: the driver must
    // turn it off before probing.
    m.funcs.get_mut(&(0, 1, 0)).unwrap().regs[1] = CMD_MEMORY;
    let mut ecam = Ecam::new(m);
    let mut w = Window::virt_mmio32();
    ecam.assign_bars(
        Bdf {
            bus: 0,
            dev: 1,
            func: 0,
        },
        &mut w,
        false,
    )
    .unwrap();
    assert_eq!(
        ecam.assign_bars(
            Bdf {
                bus: 0,
                dev: 9,
                func: 0
            },
            &mut w,
            false
        ),
        Err(PciError::Absent)
    );
    let mut tiny = Window::new(0x1000_0000, 0x1000_4000);
    assert_eq!(
        ecam.assign_bars(
            Bdf {
                bus: 0,
                dev: 4,
                func: 3
            },
            &mut tiny,
            false
        ),
        Err(PciError::WindowFull)
    );
    assert_eq!(
        ecam.read(
            Bdf {
                bus: 0,
                dev: 4,
                func: 3
            },
            COMMAND
        ) & CMD_MEMORY,
        0,
        "left disabled"
    );
    let m = ecam.into_inner();
    assert!(
        !m.funcs[&(0, 1, 0)].decode_while_probing,
        "BAR probed with decoding on"
    );
}
