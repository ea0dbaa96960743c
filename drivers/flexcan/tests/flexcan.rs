//! The FlexCAN driver against the register-level model in `model/`.

#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod model;

use std::cell::RefCell;
use std::rc::Rc;

use bulkhead_can_frame::{CanId, Frame};
use bulkhead_can_protocol::controller::{BusState, CanController, ControllerError};
use drv_flexcan::regs::*;
use drv_flexcan::{timing, Config, Filter, FlexCan, InitError, CLOCK_HZ};
use model::{Handle, Model};

const ALL_STD: Filter = Filter {
    id: 0,
    mask: 0,
    extended: false,
};
const ALL_EXT: Filter = Filter {
    id: 0,
    mask: 0,
    extended: true,
};

fn cfg(data_bps: Option<u32>, filters: &[Filter]) -> Config<'_> {
    Config {
        nominal_bps: 500_000,
        data_bps,
        tx_slots: 4,
        filters,
    }
}

fn up(c: &Config<'_>) -> (Rc<RefCell<Model>>, FlexCan<Handle>) {
    let (m, h) = Model::new().handle();
    let d = FlexCan::new(h, c).unwrap();
    (m, d)
}

fn std(id: u16, data: &[u8]) -> Frame {
    Frame::classic(CanId::standard(id).unwrap(), data).unwrap()
}

fn no_violations(m: &Rc<RefCell<Model>>) {
    let v = &m.borrow().violations;
    assert!(
        v.is_empty(),
        "driver did what the controller forbids: {v:?}"
    );
}

#[test]
fn init_configures_in_freeze_and_leaves_it() {
    let (m, _d) = up(&cfg(None, &[ALL_STD, ALL_EXT]));
    let mm = m.borrow();
    assert!(!mm.frozen(), "controller must be running after init");
    let mcr = mm.reg(MCR);
    assert_eq!(mcr & MCR_MDIS, 0);
    assert_ne!(mcr & MCR_SRX_DIS, 0, "own frames must not come back");
    assert_ne!(mcr & MCR_IRMQ, 0, "individual masks");
    assert_ne!(mcr & MCR_AEN, 0, "safe abort");
    assert_eq!(mcr & MCR_FDEN, 0);
    assert_eq!(mcr & MCR_MAXMB_MASK, 63);
    let ctrl1 = mm.reg(CTRL1);
    assert_ne!(
        ctrl1 & CTRL1_BOFF_REC,
        0,
        "automatic bus-off recovery disabled"
    );
    assert_eq!(ctrl1 & CTRL1_LBUF, 0, "lowest id first, not lowest buffer");
    assert_eq!(
        mm.reg(CBT),
        timing::cbt(&timing::nominal(CLOCK_HZ, 500_000).unwrap())
    );
    assert_ne!(mm.reg(CBT) & (1 << 31), 0, "BTF: CBT in use");
    // Every MB has a defined code although MB RAM was garbage.
    // MB 0 is reserved (ERR005829), MBs 1..=4 are the TX slots.
    for mb in 0..5 {
        assert_eq!(mm.code(mb), CODE_TX_INACTIVE, "TX MB {mb}");
    }
    for mb in 5..64 {
        assert_eq!(mm.code(mb), CODE_RX_EMPTY, "RX MB {mb}");
    }
    assert_eq!(mm.reg(IMASK1), !1u32, "reserved MB 0 never interrupts");
    assert_eq!(mm.reg(IMASK2), u32::MAX);
    drop(mm);
    no_violations(&m);
}

#[test]
fn init_refuses_bad_configurations() {
    let bad = |c: Config<'_>| FlexCan::new(Model::new().handle().1, &c).err();
    let f = [ALL_STD];
    assert_eq!(
        bad(Config {
            nominal_bps: 333_333,
            ..cfg(None, &f)
        }),
        Some(InitError::BitTiming)
    );
    assert_eq!(bad(cfg(Some(10_000_000), &f)), Some(InitError::BitTiming));
    assert_eq!(
        bad(Config {
            tx_slots: 0,
            ..cfg(None, &f)
        }),
        Some(InitError::Slots)
    );
    // FD leaves 14 MBs: 12 TX slots and the reserved MB leave one RX MB.
    assert_eq!(
        bad(Config {
            tx_slots: 12,
            ..cfg(Some(2_000_000), &f)
        }),
        Some(InitError::Slots)
    );
    assert_eq!(bad(cfg(None, &[])), Some(InitError::NoFilters));
    let mut m = Model::new();
    m.stuck = true;
    assert_eq!(
        FlexCan::new(m.handle().1, &cfg(None, &f)).err(),
        Some(InitError::Timeout)
    );
}

#[test]
fn tx_leaves_in_id_order_not_submission_order() {
    let (m, mut d) = up(&cfg(None, &[ALL_STD]));
    let ext = Frame::classic(CanId::extended(0x0800_0000).unwrap(), &[9]).unwrap(); // base id 0x200
    d.submit(0, &std(0x300, &[3]), 0x300).unwrap();
    d.submit(1, &ext, 0x200).unwrap();
    d.submit(2, &std(0x100, &[1, 2, 3, 4, 5, 6, 7, 8]), 0x100)
        .unwrap();
    d.submit(3, &std(0x200, &[2]), 0x200).unwrap();
    // ERR005829: each activation is followed by two INACTIVE writes to MB 0
    // (one more from init).
    assert_eq!(m.borrow().mb0_inactive_writes, 1 + 2 * 4);
    assert_eq!(
        d.submit(3, &std(0x1, &[]), 1),
        Err(ControllerError::BadSlot),
        "slot busy"
    );
    assert_eq!(
        d.submit(4, &std(0x1, &[]), 1),
        Err(ControllerError::BadSlot),
        "no such slot"
    );
    m.borrow_mut().drain();
    let wire: Vec<Frame> = m.borrow().wire.iter().map(|&(_, f)| f).collect();
    // Standard 0x200 beats the extended frame with the same base id (SRR/IDE).
    assert_eq!(
        wire,
        vec![
            std(0x100, &[1, 2, 3, 4, 5, 6, 7, 8]),
            std(0x200, &[2]),
            ext,
            std(0x300, &[3])
        ]
    );
    let mut done: Vec<(usize, bool)> = std::iter::from_fn(|| d.completion())
        .map(|c| (c.slot, c.sent))
        .collect();
    done.sort();
    assert_eq!(done, vec![(0, true), (1, true), (2, true), (3, true)]);
    assert_eq!(d.completion(), None);
    // Slots are free again.
    d.submit(0, &std(0x5, &[]), 5).unwrap();
    no_violations(&m);
}

#[test]
fn abort_frees_a_waiting_slot_but_not_one_on_the_bus() {
    let (m, mut d) = up(&cfg(None, &[ALL_STD]));
    d.submit(0, &std(0x100, &[1]), 0x100).unwrap();
    d.submit(1, &std(0x700, &[7]), 0x700).unwrap();
    // 0x100 (slot 0 = MB 1) wins arbitration and is on the bus.
    assert_eq!(m.borrow_mut().start_tx(), Some(1));
    assert!(!d.abort(0), "a frame on the bus cannot be aborted");
    // The low-priority waiting frame can: the virtualiser reuses its slot.
    assert!(d.abort(1));
    assert_eq!(m.borrow().code(2), CODE_TX_ABORT);
    d.submit(1, &std(0x050, &[5]), 0x50).unwrap();
    m.borrow_mut().finish_tx(true);
    m.borrow_mut().drain();
    let ids: Vec<u32> = m.borrow().wire.iter().map(|(_, f)| f.id().raw()).collect();
    assert_eq!(ids, vec![0x100, 0x050], "the aborted 0x700 never went out");
    let mut done: Vec<(usize, bool)> = std::iter::from_fn(|| d.completion())
        .map(|c| (c.slot, c.sent))
        .collect();
    done.sort();
    assert_eq!(
        done,
        vec![(0, true), (1, true)],
        "no completion for the aborted frame"
    );
    assert!(!d.abort(0), "nothing pending");
    no_violations(&m);
}

#[test]
fn abort_of_a_frame_that_then_fails_on_the_bus_reports_not_sent() {
    let (m, mut d) = up(&cfg(None, &[ALL_STD]));
    d.submit(2, &std(0x10, &[]), 0x10).unwrap();
    assert_eq!(m.borrow_mut().start_tx(), Some(3));
    assert!(!d.abort(2));
    m.borrow_mut().finish_tx(false);
    let c = d.completion().unwrap();
    assert_eq!((c.slot, c.sent), (2, false));
    assert!(m.borrow().wire.is_empty());
    no_violations(&m);
}

#[test]
fn rx_filters_are_programmed_with_individual_masks() {
    let filters = [
        Filter {
            id: 0x120,
            mask: 0x7f0,
            extended: false,
        },
        Filter {
            id: 0x1234_5678,
            mask: 0x1fff_ffff,
            extended: true,
        },
    ];
    let (m, mut d) = up(&cfg(None, &filters));
    {
        let mm = m.borrow();
        // RX MBs start at 5 (reserved MB 0, TX MBs 1..=4).
        assert_eq!(mm.reg(RXIMR + 4 * 5), 0x7f0 << 18);
        assert_eq!(mm.reg(mm.mb_addr(5) + 4), 0x120 << 18);
        assert_eq!(mm.reg(RXIMR + 4 * 6), 0x1fff_ffff);
        assert_ne!(mm.reg(mm.mb_addr(6)) & CS_IDE, 0);
    }
    let ext = Frame::classic(CanId::extended(0x1234_5678).unwrap(), &[1, 2]).unwrap();
    let ext_other = Frame::classic(CanId::extended(0x1234_5679).unwrap(), &[]).unwrap();
    let mut mm = m.borrow_mut();
    assert!(mm
        .inject(&std(0x125, &[0xaa, 0xbb, 0xcc, 0xdd, 0xee]))
        .is_some());
    assert!(mm.inject(&std(0x130, &[])).is_none(), "outside the union");
    // An extended id whose base bits look like 0x120 must not match the
    // standard filter: IDE is compared.
    assert!(mm
        .inject(&Frame::classic(CanId::extended(0x120 << 18).unwrap(), &[]).unwrap())
        .is_none());
    assert!(mm.inject(&ext).is_some());
    assert!(mm.inject(&ext_other).is_none());
    assert!(mm.inject(&std(0x12f, &[1])).is_some());
    drop(mm);
    let got: Vec<Frame> = std::iter::from_fn(|| d.receive())
        .map(|r| r.frame)
        .collect();
    assert_eq!(
        got,
        vec![
            std(0x125, &[0xaa, 0xbb, 0xcc, 0xdd, 0xee]),
            ext,
            std(0x12f, &[1])
        ],
        "arrival order"
    );
    // MBs re-armed.
    assert!(m.borrow_mut().inject(&std(0x121, &[])).is_some());
    assert_eq!(d.receive().map(|r| r.frame), Some(std(0x121, &[])));
    assert_eq!(d.overruns(), 0);
    no_violations(&m);
}

#[test]
fn spare_rx_mbs_absorb_a_burst_for_one_filter() {
    let (m, mut d) = up(&cfg(
        None,
        &[Filter {
            id: 0x42,
            mask: 0x7ff,
            extended: false,
        }],
    ));
    // 64 MBs − reserved MB 0 − 4 TX MBs = 59 RX MBs.
    for i in 0..59u8 {
        assert!(m.borrow_mut().inject(&std(0x42, &[i])).is_some());
    }
    let got: Vec<u8> = std::iter::from_fn(|| d.receive())
        .map(|r| r.frame.data()[0])
        .collect();
    assert_eq!(got, (0..59).collect::<Vec<_>>());
    assert_eq!(d.overruns(), 0);
    // Beyond the 59 RX MBs the last one is overrun, and the driver counts it.
    for i in 0..60u8 {
        m.borrow_mut().inject(&std(0x42, &[i]));
    }
    assert_eq!(std::iter::from_fn(|| d.receive()).count(), 59);
    assert_eq!(d.overruns(), 1);
    no_violations(&m);
}

#[test]
fn more_filters_than_mbs_are_merged_into_a_superset() {
    // FD: 14 MBs, reserved + 4 TX → 9 RX MBs for 16 standard + 1 extended filters.
    let mut filters: Vec<Filter> = (0..16)
        .map(|i| Filter {
            id: 0x100 + 0x11 * i,
            mask: 0x7ff,
            extended: false,
        })
        .collect();
    filters.push(Filter {
        id: 0x1abc_def0,
        mask: 0x1fff_fff0,
        extended: true,
    });
    let (m, mut d) = up(&cfg(Some(2_000_000), &filters));
    for f in &filters {
        let frame = if f.extended {
            Frame::classic(CanId::extended(f.id | 0xf).unwrap(), &[]).unwrap()
        } else {
            std(u16::try_from(f.id).unwrap(), &[])
        };
        assert!(m.borrow_mut().inject(&frame).is_some(), "{f:?} lost");
        assert_eq!(d.receive().map(|r| r.frame), Some(frame));
    }
    no_violations(&m);
}

#[test]
fn fd_frames_round_trip_with_64_byte_buffers() {
    let (m, mut d) = up(&cfg(Some(2_000_000), &[ALL_STD, ALL_EXT]));
    {
        let mm = m.borrow();
        assert_ne!(mm.reg(MCR) & MCR_FDEN, 0);
        assert_eq!(mm.reg(MCR) & MCR_MAXMB_MASK, 13);
        let fdctrl = mm.reg(FDCTRL);
        assert_ne!(fdctrl & FDCTRL_FDRATE, 0);
        assert_eq!((fdctrl >> 16) & 3, 3, "MBDSR0: 64 bytes");
        assert_eq!((fdctrl >> 19) & 3, 3, "MBDSR1: 64 bytes");
        assert_ne!(fdctrl & FDCTRL_TDCEN, 0);
        assert_eq!(
            mm.reg(FDCBT),
            timing::fdcbt(&timing::data(CLOCK_HZ, 2_000_000).unwrap())
        );
        assert_ne!(mm.reg(CTRL2) & CTRL2_ISOCANFDEN, 0);
    }
    let payload: Vec<u8> = (0..64).collect();
    let big = Frame::fd(CanId::extended(0x0400_0000).unwrap(), &payload, true).unwrap();
    let small = Frame::fd(CanId::standard(0x7).unwrap(), &payload[..12], false).unwrap();
    // Slot 3 is MB 4, in the second half of RAM block 0; RX MBs from 5.
    d.submit(3, &big, 0).unwrap();
    d.submit(0, &small, 0).unwrap();
    d.submit(1, &std(0x8, &[1]), 0).unwrap();
    m.borrow_mut().drain();
    let wire: Vec<Frame> = m.borrow().wire.iter().map(|&(_, f)| f).collect();
    assert_eq!(wire, vec![small, std(0x8, &[1]), big]);
    let rx = Frame::fd(CanId::standard(0x55).unwrap(), &payload[..48], true)
        .unwrap()
        .with_esi(true);
    // RX MBs 5..14 alternate standard/extended filters: 5 standard MBs
    // (5, 7, 9, 11, 13), four of them in RAM block 1 (MB 7 onwards).
    for i in 0..5u8 {
        assert_eq!(
            m.borrow_mut().inject(&rx.with_byte(0, i)),
            Some(5 + 2 * usize::from(i))
        );
    }
    for i in 0..5u8 {
        assert_eq!(d.receive().map(|r| r.frame), Some(rx.with_byte(0, i)));
    }
    assert_eq!(d.receive(), None);
    no_violations(&m);
}

#[test]
fn classic_controller_refuses_fd_frames() {
    let (m, mut d) = up(&cfg(None, &[ALL_STD]));
    let fd = Frame::fd(CanId::standard(1).unwrap(), &[0; 16], true).unwrap();
    assert_eq!(d.submit(0, &fd, 1), Err(ControllerError::Unsupported));
    let remote = Frame::remote(CanId::standard(0x33).unwrap(), 4).unwrap();
    d.submit(0, &remote, 0x33).unwrap();
    m.borrow_mut().drain();
    assert_eq!(m.borrow().wire[0].1, remote);
    assert!(m.borrow_mut().inject(&remote).is_some());
    assert_eq!(d.receive().map(|r| r.frame), Some(remote));
    no_violations(&m);
}

#[test]
fn error_passive_and_bus_off_recovery_only_when_asked() {
    let (m, mut d) = up(&cfg(None, &[ALL_STD]));
    assert_eq!(d.recover(), Err(ControllerError::NotBusOff));
    m.borrow_mut().set_counters(130, 5);
    let s = d.status();
    assert_eq!((s.state, s.tec, s.rec), (BusState::Passive, 130, 5));
    assert_eq!(d.recover(), Err(ControllerError::NotBusOff));
    m.borrow_mut().set_counters(256, 5);
    assert_eq!(d.status().state, BusState::BusOff);
    d.submit(0, &std(0x1, &[]), 1).unwrap();
    // Plenty of idle time: no automatic recovery, nothing sent.
    m.borrow_mut().idle(1000);
    d.service();
    assert_eq!(d.status().state, BusState::BusOff);
    assert_eq!(m.borrow_mut().start_tx(), None);
    // The virtualiser decides: recovery takes 128 × 11 recessive bits.
    d.recover().unwrap();
    m.borrow_mut().idle(127);
    assert_eq!(d.status().state, BusState::BusOff);
    m.borrow_mut().idle(1);
    let s = d.status();
    assert_eq!((s.state, s.tec, s.rec), (BusState::Active, 0, 0));
    d.service();
    assert_ne!(
        m.borrow().reg(CTRL1) & CTRL1_BOFF_REC,
        0,
        "automatic recovery disabled again"
    );
    assert_eq!(
        m.borrow().reg(ESR1) & ESR1_W1C,
        0,
        "interrupt causes acknowledged"
    );
    // The pending frame goes out after recovery.
    m.borrow_mut().drain();
    assert_eq!(m.borrow().wire.len(), 1);
    assert_eq!(d.completion().map(|c| c.sent), Some(true));
    // A second bus-off waits for the virtualiser again.
    m.borrow_mut().set_counters(256, 0);
    m.borrow_mut().idle(1000);
    assert_eq!(d.status().state, BusState::BusOff);
    no_violations(&m);
}
