//! A hostile guest against the virtio-can device, through the whole path:
//! malformed TX messages are answered NOT_OK and nothing reaches the bus;
//! RX chains too short are returned empty and the frame is kept; TX while
//! stopped, STOP with pending TX, bad control types, and feature
//! negotiation.
#![allow(clippy::unwrap_used, clippy::panic)]

use bulkhead_can_frame::virtio::{FLAG_EXTENDED, FLAG_FD, MSG_TX};
use bulkhead_can_frame::{CanId, Frame};
use bulkhead_can_tests::harness::System;
use bulkhead_virt_can::{Arbitration, Budget, IdFilter, Policy};
use bulkhead_virtio::spec::{feature, reg, status};
use bulkhead_virtio::{MmioTransport, VirtioDevice};
use bulkhead_virtio_can_driver::{DriverError, Wanted};
use bulkhead_vmm_devices::can::{CanBackend, TxAdmit, VirtioCan};
use drv_host_can_bus::{BusConfig, CanBus, NodeId, Traffic};

const MS: u64 = 1_000_000;

fn std_frame(id: u16, data: &[u8]) -> Frame {
    Frame::classic(CanId::standard(id).unwrap(), data).unwrap()
}

fn policy() -> Policy {
    let all = IdFilter {
        id: 0,
        mask: 0,
        extended: false,
    };
    let all_ext = IdFilter {
        extended: true,
        ..all
    };
    Policy::new(&[all, all_ext], &[all, all_ext], Budget::default()).unwrap()
}

/// One guest allowed everything, a listening node, and optionally an ECU.
fn system(wanted: Wanted, fd: bool, traffic: &[Traffic]) -> (System, NodeId) {
    let cfg = if fd {
        BusConfig::fd(500_000, 2_000_000).unwrap()
    } else {
        BusConfig::classic(500_000).unwrap()
    };
    let mut b = CanBus::new(cfg);
    let observer = b.attach_scripted("observer", traffic).unwrap();
    let sys = System::new(b, &[policy()], Arbitration::ById, 3, wanted);
    (sys, observer)
}

/// A TX message: header fields as given, then `sdu`.
fn tx_msg(length: u16, dlc: u8, flags: u32, id: u32, sdu: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&MSG_TX.to_le_bytes());
    m.extend_from_slice(&length.to_le_bytes());
    m.push(dlc);
    m.push(0);
    m.extend_from_slice(&0u16.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(sdu);
    m
}

#[test]
fn malformed_tx_messages_get_not_ok_and_nothing_is_sent() {
    let (mut sys, observer) = system(
        Wanted {
            fd: false,
            ..Wanted::default()
        },
        true,
        &[],
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length 9 > 8", tx_msg(9, 0, 0, 0x100, &[0; 9])),
        ("length 65", tx_msg(65, 0, FLAG_FD, 0x100, &[0; 65])),
        ("undefined flag 0x1", tx_msg(1, 0, 0x1, 0x100, &[0])),
        (
            "undefined flag 0x8000_0000",
            tx_msg(1, 0, 0x8000_0000, 0x100, &[0]),
        ),
        ("FD not negotiated", tx_msg(12, 0, FLAG_FD, 0x100, &[0; 12])),
        ("11-bit id 0x800", tx_msg(1, 0, 0, 0x800, &[0])),
        (
            "29-bit id 0x2000_0000",
            tx_msg(1, 0, FLAG_EXTENDED, 0x2000_0000, &[0]),
        ),
        ("sdu shorter than length", tx_msg(8, 0, 0, 0x100, &[0; 4])),
        (
            "header cut short",
            tx_msg(0, 0, 0, 0x100, &[])[..10].to_vec(),
        ),
        ("RTR with FD", tx_msg(0, 0, FLAG_FD | 0x2000, 0x100, &[])),
    ];
    for (what, msg) in &cases {
        let slot = sys.guests[0].driver.send_raw(msg).unwrap();
        // Answered at once, before any bus time passes.
        let done = sys.guests[0]
            .driver
            .poll_tx()
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(done.slot, slot);
        assert!(!done.ok, "{what}: must be NOT_OK");
    }
    sys.run_until(5 * MS);
    assert!(
        sys.ctrl.bus.received(observer).is_empty(),
        "nothing on the bus"
    );
    let errors = sys.guests[0].vmm.borrow().dev.device().errors;
    assert_eq!(errors.tx_invalid, u32::try_from(cases.len()).unwrap());

    // The same path does send a well-formed message (the cases above fail
    // for their defect, not for the path).
    let now = sys.now();
    sys.guests[0].send(&std_frame(0x100, &[1, 2]), now);
    sys.run_until(10 * MS);
    assert_eq!(sys.guests[0].sent[0].ok, Some(true));
    assert_eq!(sys.ctrl.bus.received(observer).len(), 1);
}

#[test]
fn tx_while_stopped_and_stop_with_pending_tx_complete_not_ok() {
    let (mut sys, observer) = system(Wanted::default(), false, &[]);
    // LATE_TX_ACK: pending until on the bus, then OK.
    sys.guests[0].send(&std_frame(0x123, &[1]), 0);
    assert!(
        sys.guests[0].driver.poll_tx().is_none(),
        "LATE_TX_ACK holds it"
    );
    sys.run_until(MS);
    assert_eq!(sys.guests[0].sent[0].ok, Some(true));
    let on_bus = sys.ctrl.bus.received(observer)[0].timestamp_ns;
    assert!(sys.guests[0].sent[0].completed_ns.unwrap() >= on_bus);

    // STOP with a frame still pending: NOT_OK, never sent.
    sys.guests[0].send(&std_frame(0x124, &[2]), MS);
    sys.guests[0].driver.stop().unwrap();
    sys.run_until(2 * MS);
    assert_eq!(sys.guests[0].sent[1].ok, Some(false));
    // TX while stopped.
    sys.guests[0].send(&std_frame(0x125, &[3]), 2 * MS);
    sys.run_until(3 * MS);
    assert_eq!(sys.guests[0].sent[2].ok, Some(false));
    let ids: Vec<u32> = sys
        .ctrl
        .bus
        .received(observer)
        .iter()
        .map(|r| r.frame.id().raw())
        .collect();
    assert_eq!(ids, [0x123]);
    assert_eq!(sys.guests[0].vmm.borrow().dev.device().errors.tx_stopped, 1);
    // START again works.
    sys.guests[0].driver.start().unwrap();
    sys.guests[0].send(&std_frame(0x126, &[4]), 3 * MS);
    sys.run_until(4 * MS);
    assert_eq!(sys.guests[0].sent[3].ok, Some(true));
}

#[test]
fn without_late_tx_ack_tx_completes_on_admission() {
    let (mut sys, _) = system(
        Wanted {
            late_tx_ack: false,
            ..Wanted::default()
        },
        false,
        &[],
    );
    sys.guests[0].driver.send(&std_frame(0x10, &[])).unwrap();
    assert!(sys.guests[0].driver.poll_tx().unwrap().ok);
}

#[test]
fn control_messages_with_bad_types_are_refused() {
    let (mut sys, _) = system(Wanted::default(), false, &[]);
    for t in [0u16, 0x0200, 0x0203, 0x0101, 0xffff] {
        assert_eq!(
            sys.guests[0].driver.control_raw(t),
            Err(DriverError::Refused),
            "{t:#x}"
        );
    }
    assert_eq!(
        sys.guests[0].vmm.borrow().dev.device().errors.ctrl_invalid,
        5
    );
    assert!(sys.guests[0].driver.control_raw(0x0201).is_ok());
}

#[test]
fn rx_chains_too_short_are_returned_empty_and_no_frame_is_lost() {
    let traffic = [Traffic::Periodic {
        frame: std_frame(0x321, &[0; 8]),
        period_ns: 300_000,
        offset_ns: 0,
        counter_byte: Some(0),
    }];
    let (mut sys, _) = system(Wanted::default(), false, &traffic);
    // Every buffer the guest posts from now on is 10 bytes: shorter than
    // the 16-byte header + 8 data bytes.
    sys.guests[0].driver.set_rx_buffer_len(10);
    sys.run_until(10 * MS);
    let got_short = sys.guests[0].received.len();
    let device_short = sys.guests[0].vmm.borrow().dev.device().errors.rx_too_short;
    assert_eq!(
        got_short, 16,
        "only the 16 buffers posted at start were big enough"
    );
    assert!(device_short > 0);
    assert!(sys.guests[0].rx_empty > 0);
    // Buffers of the right size again: every frame arrives, in order.
    sys.guests[0].driver.set_rx_buffer_len(80);
    for _ in 0..40 {
        sys.run_until(sys.now() + 300_000);
    }
    let seq: Vec<u8> = sys.guests[0]
        .received
        .iter()
        .map(|(f, _)| f.data()[0])
        .collect();
    let expected: Vec<u8> = (0..u8::try_from(seq.len()).unwrap()).collect();
    assert!(seq.len() > 40);
    assert_eq!(seq, expected, "no frame lost or reordered");
    assert_eq!(sys.virt.borrow().counters(0).unwrap().rx_overrun, 0);
}

/// A backend that records nothing: for register-level checks.
struct Null;

impl CanBackend for Null {
    fn start(&mut self) -> bool {
        true
    }
    fn stop(&mut self) {}
    fn transmit(&mut self, _frame: &Frame) -> TxAdmit {
        TxAdmit::Refused
    }
    fn tx_completion(&mut self) -> Option<(u32, bool)> {
        None
    }
    fn rx_peek(&self) -> Option<Frame> {
        None
    }
    fn rx_pop(&mut self) {}
    fn bus_off(&self) -> bool {
        false
    }
}

fn negotiate(features: u64) -> u32 {
    let mut t = MmioTransport::new(VirtioCan::new(Null, true)).unwrap();
    let w = |t: &mut MmioTransport<_>, off, v: u64| {
        t.write(off, 4, v).unwrap();
    };
    w(
        &mut t,
        reg::STATUS,
        u64::from(status::ACKNOWLEDGE | status::DRIVER),
    );
    w(&mut t, reg::DRIVER_FEATURES_SEL, 0);
    w(&mut t, reg::DRIVER_FEATURES, features & 0xffff_ffff);
    w(&mut t, reg::DRIVER_FEATURES_SEL, 1);
    w(&mut t, reg::DRIVER_FEATURES, features >> 32);
    w(
        &mut t,
        reg::STATUS,
        u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
    );
    u32::try_from(t.read(reg::STATUS, 4).unwrap()).unwrap()
}

#[test]
fn features_ok_needs_classic_or_fd_and_rtr_needs_classic() {
    let v1 = feature::VERSION_1;
    let ok = |f: u64| negotiate(f | v1) & status::FEATURES_OK != 0;
    assert!(ok(1 << 0));
    assert!(ok(1 << 1));
    assert!(ok(1 << 0 | 1 << 2 | 1 << 3));
    assert!(!ok(0), "neither CLASSIC nor FD");
    assert!(!ok(1 << 3), "LATE_TX_ACK alone");
    assert!(!ok(1 << 1 | 1 << 2), "RTR without CLASSIC");
    // The controller starts STOPPED, status 0.
    let d = VirtioCan::new(Null, false);
    assert!(!d.started());
    let mut cfg = [0xffu8; 2];
    d.read_config(0, &mut cfg);
    assert_eq!(cfg, [0, 0]);
    assert_eq!(d.device_id(), 36);
}

/// A small deterministic generator (xorshift): the same messages every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        u32::try_from(self.0 >> 32).unwrap()
    }
    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

#[test]
fn random_tx_messages_are_sent_exactly_when_the_parser_accepts_them() {
    use bulkhead_can_frame::virtio::{parse_tx, Features, FLAG_RTR};
    let (mut sys, observer) = system(Wanted::default(), false, &[]);
    let features = Features::from_bits(sys.guests[0].driver.features());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut expected = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..400 {
        let flags = match rng.below(6) {
            0 => 0,
            1 => FLAG_EXTENDED,
            2 => FLAG_RTR,
            3 => FLAG_FD,
            4 => FLAG_EXTENDED | FLAG_RTR,
            _ => rng.next(),
        };
        let id = if rng.below(2) == 0 {
            rng.below(0x900)
        } else {
            rng.below(0x2100_0000)
        };
        let length = u16::try_from(rng.below(12)).unwrap();
        let dlc = if rng.below(4) == 0 {
            u8::try_from(rng.below(16)).unwrap()
        } else {
            0
        };
        let sdu_len = if rng.below(5) == 0 {
            rng.below(12)
        } else {
            u32::from(length)
        };
        let sdu: Vec<u8> = (0..sdu_len)
            .map(|_| u8::try_from(rng.below(256)).unwrap())
            .collect();
        let mut msg = tx_msg(length, dlc, flags, id, &sdu);
        if rng.below(10) == 0 {
            msg.truncate(usize::try_from(rng.below(16)).unwrap());
        }
        if msg.is_empty() {
            msg.push(0);
        }
        if let Ok(f) = parse_tx(&msg, features) {
            expected.push(f);
        }
        answers.push(parse_tx(&msg, features).is_ok());
        sys.guests[0].driver.send_raw(&msg).unwrap();
        let t = sys.now() + MS;
        sys.run_until(t);
    }
    let got: Vec<bool> = sys.guests[0].raw_done.iter().map(|d| d.ok).collect();
    assert_eq!(got, answers, "OK exactly for what the parser accepts");
    let on_bus: Vec<Frame> = sys
        .ctrl
        .bus
        .received(observer)
        .iter()
        .map(|r| r.frame)
        .collect();
    assert_eq!(on_bus, expected, "exactly those frames, in order");
    assert!(
        expected.len() > 50 && expected.len() < 350,
        "{} valid",
        expected.len()
    );
}

#[test]
fn fd_and_remote_frames_cross_the_whole_path_both_ways() {
    let e = CanId::extended(0x1234_5678).unwrap();
    let fd_in = Frame::fd(CanId::standard(0x222).unwrap(), &[0xa5; 64], true).unwrap();
    let traffic = [Traffic::Periodic {
        frame: fd_in,
        period_ns: 10 * MS,
        offset_ns: 5 * MS,
        counter_byte: None,
    }];
    let (mut sys, observer) = system(Wanted::default(), true, &traffic);
    let fd_out = Frame::fd(e, &[7; 48], true).unwrap();
    let rtr = Frame::remote(CanId::standard(0x321).unwrap(), 3).unwrap();
    sys.guests[0].send(&fd_out, 0);
    sys.guests[0].send(&rtr, 0);
    sys.run_until(6 * MS);
    assert_eq!(sys.guests[0].sent[0].ok, Some(true));
    assert_eq!(sys.guests[0].sent[1].ok, Some(true));
    let on_bus: Vec<Frame> = sys
        .ctrl
        .bus
        .received(observer)
        .iter()
        .map(|r| r.frame)
        .collect();
    // virtio-can messages have no BRS (or ESI) flag (§5.20: EXTENDED, FD,
    // RTR only): a guest's FD frame goes out without bit-rate switch, and
    // a received frame's BRS is not visible to the guest.
    let fd_sent = Frame::fd(e, &[7; 48], false).unwrap();
    let fd_seen = Frame::fd(CanId::standard(0x222).unwrap(), &[0xa5; 64], false).unwrap();
    assert_eq!(
        on_bus,
        [rtr, fd_sent],
        "by priority: 0x321 before the 29-bit id"
    );
    let got: Vec<Frame> = sys.guests[0].received.iter().map(|(f, _)| *f).collect();
    assert_eq!(got, [fd_seen]);

    // Without FD negotiated the driver refuses to build the message, and
    // the device refuses the raw one (checked in the malformed cases).
    let (mut sys, _) = system(
        Wanted {
            fd: false,
            rtr: false,
            ..Wanted::default()
        },
        true,
        &[],
    );
    assert!(matches!(
        sys.guests[0].driver.send(&fd_out),
        Err(DriverError::Frame(_))
    ));
    assert!(matches!(
        sys.guests[0].driver.send(&rtr),
        Err(DriverError::Frame(_))
    ));
}
