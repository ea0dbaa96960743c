//! The CTU CAN FD driver against the register model in `model/`, and the
//! PCI probe against a fake ECAM holding a `ctucan_pci` function.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    missing_docs
)]

mod model;

use std::cell::RefCell;
use std::rc::Rc;

use bulkhead_can_frame::{CanId, Frame};
use bulkhead_can_protocol::controller::{BusState, CanController, ControllerError};
use drv_ctucanfd::regs::*;
use drv_ctucanfd::*;
use drv_pci_ecam::{Bdf, Ecam, Window};
use model::{Handle, Model};

fn cfg(data_bps: Option<u32>) -> Config {
    Config {
        clock_hz: PCI_CLOCK_HZ,
        nominal_bps: 500_000,
        data_bps,
        tx_slots: 4,
    }
}

fn up(c: &Config) -> (Rc<RefCell<Model>>, CtuCanFd<Handle>) {
    let (m, h) = Model::new().handle();
    (m, CtuCanFd::new(h, c).unwrap())
}

fn std(id: u16, data: &[u8]) -> Frame {
    Frame::classic(CanId::standard(id).unwrap(), data).unwrap()
}

fn clean(m: &Rc<RefCell<Model>>) {
    let v = &m.borrow().violations;
    assert!(v.is_empty(), "driver broke the core's rules: {v:?}");
}

#[test]
fn init_resets_times_and_enables() {
    let (m, _d) = up(&cfg(Some(2_000_000)));
    let mm = m.borrow();
    assert!(mm.enabled());
    assert_ne!(mm.mode & MODE_FDE, 0);
    assert_eq!(mm.mode & MODE_NISOFD, 0, "ISO CAN FD");
    assert_eq!(
        mm.btr,
        btr(&segments(PCI_CLOCK_HZ, 500_000, false).unwrap())
    );
    assert_eq!(
        mm.btr_fd,
        btr(&segments(PCI_CLOCK_HZ, 2_000_000, true).unwrap())
    );
    assert_ne!(mm.int_ena & INT_RXI, 0);
    assert_ne!(mm.int_ena & INT_FCSI, 0);
    drop(mm);
    clean(&m);

    let (_, h) = Model::new().handle();
    assert_eq!(
        CtuCanFd::new(
            h,
            &Config {
                tx_slots: 5,
                ..cfg(None)
            }
        )
        .err(),
        Some(InitError::Slots)
    );
    let (_, h) = Model::new().handle();
    assert_eq!(
        CtuCanFd::new(
            h,
            &Config {
                nominal_bps: 333_333,
                ..cfg(None)
            }
        )
        .err(),
        Some(InitError::BitTiming)
    );
    struct Nothing;
    impl Mmio for Nothing {
        fn read32(&self, _: usize) -> u32 {
            0
        }
        fn write32(&mut self, _: usize, _: u32) {}
    }
    assert_eq!(
        CtuCanFd::new(Nothing, &cfg(None)).err(),
        Some(InitError::NotCtuCanFd)
    );
}

#[test]
fn frames_leave_by_priority_not_by_buffer_or_submission() {
    let (m, mut d) = up(&cfg(None));
    let ext = Frame::classic(CanId::extended(0x0123_4567).unwrap(), &[0xee; 8]).unwrap();
    d.submit(0, &std(0x300, &[3]), 0x300).unwrap();
    d.submit(1, &std(0x100, &[1]), 0x100).unwrap();
    d.submit(2, &ext, 0x500).unwrap();
    d.submit(3, &std(0x080, &[]), 0x080).unwrap();
    assert_eq!(d.submit(3, &std(1, &[]), 1), Err(ControllerError::BadSlot));
    assert_eq!(d.submit(4, &std(1, &[]), 1), Err(ControllerError::BadSlot));
    m.borrow_mut().drain();
    let wire: Vec<Frame> = m.borrow().wire.iter().map(|&(_, f)| f).collect();
    assert_eq!(
        wire,
        vec![std(0x080, &[]), std(0x100, &[1]), std(0x300, &[3]), ext]
    );
    let mut done: Vec<(usize, bool)> = std::iter::from_fn(|| d.completion())
        .map(|c| (c.slot, c.sent))
        .collect();
    done.sort();
    assert_eq!(done, vec![(0, true), (1, true), (2, true), (3, true)]);
    // A later, more urgent frame overtakes one already waiting.
    d.submit(0, &std(0x400, &[4]), 0x400).unwrap();
    d.submit(1, &std(0x010, &[1]), 0x010).unwrap();
    m.borrow_mut().drain();
    let ids: Vec<u32> = m.borrow().wire[4..]
        .iter()
        .map(|(_, f)| f.id().raw())
        .collect();
    assert_eq!(ids, vec![0x010, 0x400]);
    clean(&m);
}

#[test]
fn abort_only_takes_frames_not_on_the_bus() {
    let (m, mut d) = up(&cfg(None));
    d.submit(0, &std(0x100, &[1]), 0x100).unwrap();
    d.submit(1, &std(0x700, &[7]), 0x700).unwrap();
    assert_eq!(m.borrow_mut().start_tx(), Some(0));
    assert!(!d.abort(0), "on the bus");
    assert!(d.abort(1));
    assert_eq!(
        m.borrow().state(1),
        txt::ETY,
        "aborted buffer handed back empty"
    );
    d.submit(1, &std(0x050, &[5]), 0x50).unwrap();
    m.borrow_mut().finish_tx(true);
    m.borrow_mut().drain();
    let ids: Vec<u32> = m.borrow().wire.iter().map(|(_, f)| f.id().raw()).collect();
    assert_eq!(ids, vec![0x100, 0x050]);
    let mut done: Vec<(usize, bool)> = std::iter::from_fn(|| d.completion())
        .map(|c| (c.slot, c.sent))
        .collect();
    done.sort();
    assert_eq!(done, vec![(0, true), (1, true)]);

    // Abort requested during transmission, then the frame fails: not sent.
    d.submit(2, &std(0x20, &[]), 0x20).unwrap();
    assert_eq!(m.borrow_mut().start_tx(), Some(2));
    assert!(!d.abort(2));
    m.borrow_mut().finish_tx(false);
    let c = d.completion().unwrap();
    assert_eq!((c.slot, c.sent), (2, false));
    clean(&m);
}

#[test]
fn rx_fifo_delivers_every_format_in_order() {
    let (m, mut d) = up(&cfg(Some(2_000_000)));
    let payload: Vec<u8> = (0..64).collect();
    let frames = [
        std(0x123, &[1, 2, 3, 4, 5]),
        Frame::classic(CanId::extended(0x1fff_ffff).unwrap(), &[9; 8]).unwrap(),
        Frame::remote(CanId::standard(0x7ff).unwrap(), 3).unwrap(),
        Frame::fd(CanId::standard(0x42).unwrap(), &payload, true)
            .unwrap()
            .with_esi(true),
        Frame::fd(CanId::extended(0x42).unwrap(), &payload[..20], false).unwrap(),
        Frame::classic_with_dlc(CanId::standard(0x1).unwrap(), &[8; 8], 12).unwrap(),
    ];
    for f in &frames {
        assert!(m.borrow_mut().inject(f));
    }
    let got: Vec<Frame> = std::iter::from_fn(|| d.receive())
        .map(|r| r.frame)
        .collect();
    assert_eq!(got, frames.to_vec());
    assert_eq!(d.receive(), None);
    clean(&m);
}

#[test]
fn classic_core_refuses_fd() {
    let (m, mut d) = up(&cfg(None));
    let fd = Frame::fd(CanId::standard(1).unwrap(), &[0; 12], false).unwrap();
    assert_eq!(d.submit(0, &fd, 1), Err(ControllerError::Unsupported));
    clean(&m);
}

#[test]
fn bus_off_is_left_only_on_request() {
    let (m, mut d) = up(&cfg(None));
    assert_eq!(d.recover(), Err(ControllerError::NotBusOff));
    m.borrow_mut().set_counters(140, 3);
    let s = d.status();
    assert_eq!((s.state, s.tec, s.rec), (BusState::Passive, 140, 3));
    m.borrow_mut().set_counters(256, 3);
    assert_eq!(d.status().state, BusState::BusOff);
    assert_eq!(d.status().tec, 256, "the 9-bit TEC shows the bus-off count");
    d.submit(0, &std(0x1, &[]), 1).unwrap();
    m.borrow_mut().idle(1000);
    assert_eq!(
        d.status().state,
        BusState::BusOff,
        "no recovery without the virtualiser"
    );
    assert_eq!(m.borrow_mut().start_tx(), None);
    d.recover().unwrap();
    m.borrow_mut().idle(127);
    assert_eq!(d.status().state, BusState::BusOff);
    m.borrow_mut().idle(1);
    let s = d.status();
    assert_eq!((s.state, s.tec, s.rec), (BusState::Active, 0, 0));
    m.borrow_mut().drain();
    assert_eq!(d.completion().map(|c| c.sent), Some(true));
    d.ack_interrupts();
    assert_eq!(m.borrow().int_stat, 0);
    clean(&m);
}

/// A fake ECAM with one `ctucan_pci` at 00:03.0 reporting QEMU's BAR sizes.
struct FakeEcam {
    cmd: u32,
    bars: [u32; 2],
}

impl Mmio for FakeEcam {
    fn read32(&self, off: usize) -> u32 {
        let (dev, reg) = ((off >> 15) & 0x1f, off & 0xfff);
        if off >> 20 != 0 || dev != 3 || (off >> 12) & 7 != 0 {
            return u32::MAX;
        }
        match reg {
            0x00 => u32::from(PCI_DEVICE) << 16 | u32::from(PCI_VENDOR),
            0x04 => self.cmd,
            0x10 => self.bars[0],
            0x14 => self.bars[1],
            0x3c => 1 << 8, // INTA
            _ => 0,
        }
    }

    fn write32(&mut self, off: usize, v: u32) {
        match off & 0xfff {
            0x04 => self.cmd = v & 0x7,
            0x10 => self.bars[0] = v & !(0x8000 - 1),
            0x14 => self.bars[1] = v & !(0x10000 - 1),
            _ => {}
        }
    }
}

#[test]
fn pci_probe_places_bars_and_routes_inta() {
    let mut ecam = Ecam::new(FakeEcam {
        cmd: 0,
        bars: [0; 2],
    });
    let mut w = Window::virt_mmio32();
    let card = probe_pci(&mut ecam, &mut w).unwrap();
    assert_eq!(
        card.bdf,
        Bdf {
            bus: 0,
            dev: 3,
            func: 0
        }
    );
    assert_eq!((card.cores.addr, card.cores.size), (0x1001_0000, 0x10000));
    // Slot 3, INTA → SPI 3 + (3 + 1 − 1) mod 4 = SPI 6 → INTID 38.
    assert_eq!(card.intid, Some(38));
    let fake = ecam.into_inner();
    assert_eq!(fake.cmd & 0x6, 0x2, "memory decoding on, bus mastering off");
    assert_eq!(fake.bars, [0x1000_0000, 0x1001_0000]);
}
