//! Scenario tests of the simulated CAN bus, asserting in simulated bit time.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use bulkhead_can_frame::bits::Shape;
use bulkhead_can_frame::{CanId, Frame, FrameBits};
use drv_host_can_bus::{
    blocking_bound_ns, BusConfig, CanBus, ErrorState, NodeConfig, NodeFault, NodeId, Traffic,
    TxOrder,
};
use proptest::prelude::*;

const MS: u64 = 1_000_000;

fn sid(id: u16) -> CanId {
    CanId::standard(id).unwrap()
}

fn eid(id: u32) -> CanId {
    CanId::extended(id).unwrap()
}

fn classic_bus(bps: u32) -> CanBus {
    CanBus::new(BusConfig::classic(bps).unwrap())
}

#[test]
fn frame_durations_are_the_exact_stuffed_lengths() {
    for bps in [500_000u32, 1_000_000] {
        let bit = 1_000_000_000 / u64::from(bps);
        let mut bus = classic_bus(bps);
        let a = bus.attach(NodeConfig::named("a"));
        let b = bus.attach(NodeConfig::named("b"));
        let f1 = Frame::classic(sid(0x7ff), &[0xff; 8]).unwrap();
        // Same ID-A as f1, so f1 (base format) goes first.
        let f2 = Frame::classic(eid(0x1fff_ffff), &[0x00; 8]).unwrap();
        bus.submit(a, f1).unwrap();
        bus.submit(a, f2).unwrap();
        bus.run_until(10 * MS);
        let r1 = bus.receive(b).unwrap();
        let r2 = bus.receive(b).unwrap();
        // RX after the last-but-one EOF bit, TX done after the last; the next
        // frame starts right after intermission.
        let n1 = u64::from(f1.wire_bits());
        let n2 = u64::from(f2.wire_bits());
        assert_eq!(r1.timestamp_ns, (n1 - 4) * bit);
        assert_eq!(r2.timestamp_ns, (n1 + n2 - 4) * bit);
        let c = bus.take_completion(a).unwrap();
        assert_eq!(
            (c.started_ns, c.done_ns, c.attempts),
            (0, (n1 - 3) * bit, 1)
        );
        // All-zero data stuffs more than alternating bits.
        assert!(
            n2 > FrameBits::new(&Frame::classic(eid(0x1fff_ffff), &[0x55; 8]).unwrap())
                .len()
                .into()
        );
    }
}

#[test]
fn fd_brs_frames_use_the_data_rate_between_brs_and_crc_delimiter() {
    let mut bus = CanBus::new(BusConfig::fd(500_000, 2_000_000).unwrap());
    let a = bus.attach(NodeConfig::named("a"));
    let b = bus.attach(NodeConfig::named("b"));
    let f = Frame::fd(sid(0x10), &[0xa5; 64], true).unwrap();
    bus.submit(a, f).unwrap();
    bus.run_until(MS);
    let rx = bus.receive(b).unwrap();
    let bits = FrameBits::new(&f);
    let (nominal, data) = bits.phase_split();
    // RX valid = everything but the 3 intermission bits and the last EOF bit.
    assert_eq!(
        rx.timestamp_ns,
        u64::from(nominal - 4) * 2_000 + u64::from(data) * 500
    );
    // A classic-only bus refuses FD frames.
    let mut classic = classic_bus(500_000);
    let n = classic.attach(NodeConfig::named("n"));
    assert!(classic.submit(n, f).is_err());
}

#[test]
fn arbitration_lower_id_wins_and_standard_beats_extended_with_the_same_base_id() {
    let mut bus = classic_bus(500_000);
    let frames = [
        Frame::classic(sid(0x200), &[1]).unwrap(),
        Frame::classic(eid(0x100 << 18), &[2]).unwrap(),
        Frame::remote(sid(0x100), 1).unwrap(),
        Frame::classic(sid(0x100), &[3]).unwrap(),
        Frame::classic(eid(0x0ff << 18 | 0x3_ffff), &[4]).unwrap(),
    ];
    let senders: Vec<NodeId> = (0..frames.len())
        .map(|i| bus.attach(NodeConfig::named(&format!("s{i}"))))
        .collect();
    let obs = bus.attach(NodeConfig::named("observer"));
    for (s, f) in senders.iter().zip(frames) {
        bus.submit(*s, f).unwrap();
    }
    bus.run_until(10 * MS);
    let order: Vec<Frame> = bus.received(obs).iter().map(|r| r.frame).collect();
    // Extended with lower ID-A first; base data, base remote, extended same ID-A, then 0x200.
    assert_eq!(
        order,
        vec![frames[4], frames[3], frames[2], frames[1], frames[0]]
    );
    // Every loser lost arbitration once per frame that beat it.
    assert_eq!(bus.stats(senders[0]).arbitration_lost, 4);
    assert_eq!(bus.stats(senders[4]).arbitration_lost, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// ISO 11898-1 §10.8 (arbitration): frames offered together go out in
    /// arbitration-key order, whoever offered them.
    #[test]
    fn iso11898_1_arbitration_order(ids in prop::collection::btree_set(0u32..0x1fff_ffff, 2..8), ext in any::<u64>()) {
        let mut bus = classic_bus(1_000_000);
        let obs = bus.attach(NodeConfig::named("observer"));
        let mut frames = Vec::new();
        for (k, id) in ids.iter().enumerate() {
            let id = if ext >> k & 1 == 1 { eid(*id) } else { sid(u16::try_from(id & 0x7ff).unwrap()) };
            let f = Frame::classic(id, &[u8::try_from(k).unwrap()]).unwrap();
            let n = bus.attach(NodeConfig::named("s"));
            bus.submit(n, f).unwrap();
            frames.push(f);
        }
        bus.run_until(20 * MS);
        let got: Vec<u32> = bus.received(obs).iter().map(|r| r.frame.arbitration_key()).collect();
        let mut want: Vec<u32> = frames.iter().map(Frame::arbitration_key).collect();
        want.sort();
        // Equal keys (same id) collide; the proptest keeps ids distinct but an
        // 11-bit truncation may repeat one, so compare only when unique.
        let mut dedup = want.clone();
        dedup.dedup();
        if dedup.len() == want.len() {
            prop_assert_eq!(got, want);
        }
    }
}

/// Runs a periodic high-priority frame against a low-priority flood and
/// returns (max response of the periodic frame, bus frames ok, bound).
fn blocking_scenario(cfg: BusConfig, lp: Frame, fifo_backlog: bool) -> (u64, u64, u64) {
    let mut bus = CanBus::new(cfg);
    let hp = Frame::classic(sid(0x010), &[0x11; 8]).unwrap();
    let obs = bus.attach(NodeConfig::named("observer"));
    let flood = bus
        .attach_scripted(
            "infotainment",
            &[Traffic::Flood {
                frame: lp,
                depth: 1,
                counter_byte: None,
            }],
        )
        .unwrap();
    // A period co-prime with every frame length samples all phases.
    let period = 1_000_003;
    let hp_node = if fifo_backlog {
        // Negative control: the same node also floods through one FIFO
        // buffer, so the periodic frame queues behind its own backlog.
        let mut cfg = NodeConfig::named("cluster-fifo");
        cfg.tx_order = TxOrder::Fifo;
        let n = bus.attach(cfg);
        for _ in 0..3 {
            bus.submit(n, lp).unwrap();
        }
        n
    } else {
        bus.attach_scripted(
            "cluster",
            &[Traffic::Periodic {
                frame: hp,
                period_ns: period,
                offset_ns: 7_777,
                counter_byte: Some(0),
            }],
        )
        .unwrap()
    };
    let mut t = 0;
    while t < 1_000 * MS {
        if fifo_backlog && t % period == 0 {
            bus.submit(hp_node, hp).unwrap();
            bus.submit(hp_node, lp).unwrap();
        }
        t += period;
        bus.run_until(t);
    }
    let _ = obs;
    let own = Shape {
        extended: false,
        fd: false,
        brs: false,
        len: 8,
    };
    let bound = blocking_bound_ns(bus.config(), own);
    let lat = bus.latency(hp_node, sid(0x010)).unwrap();
    assert!(lat.count > 900);
    let _ = flood;
    (lat.max_response_ns, bus.bus_stats().frames_ok, bound)
}

#[test]
fn high_priority_frame_under_full_load_meets_the_blocking_bound() {
    let lp_classic = Frame::classic(sid(0x700), &[0x00; 8]).unwrap();
    let lp_fd = Frame::fd(eid(0x1fff_ffff), &[0x00; 64], true).unwrap();
    let cases = [
        (BusConfig::classic(500_000).unwrap(), lp_classic),
        (BusConfig::classic(1_000_000).unwrap(), lp_classic),
        (BusConfig::fd(500_000, 2_000_000).unwrap(), lp_fd),
    ];
    for (cfg, lp) in cases {
        let (max, frames, bound) = blocking_scenario(cfg, lp, false);
        let bit = cfg.bit_ns();
        let own = u64::from(Frame::classic(sid(0x010), &[0x11; 8]).unwrap().wire_bits()) * bit;
        assert!(max <= bound, "{cfg:?}: {max} > {bound}");
        // And it really was blocked: the bound is not vacuous.
        assert!(max > own + 100 * bit, "{cfg:?}: never blocked ({max})");
        // 100 % load: the bus carried a frame back to back all second.
        let lp_ns = FrameBits::new(&lp).duration_ns(&cfg.timing);
        assert!(frames * lp_ns >= 990 * MS, "{cfg:?}: {frames} frames");
    }
    // The same check catches a FIFO controller with a backlog.
    let (max, _, bound) = blocking_scenario(BusConfig::classic(500_000).unwrap(), lp_classic, true);
    assert!(
        max > bound,
        "FIFO backlog should break the bound: {max} <= {bound}"
    );
}

#[test]
fn id_collision_drives_the_colliding_node_bus_off_after_32_attempts() {
    let mut bus = classic_bus(500_000);
    // Same id, different data: at the first differing data bit the cluster
    // sends dominant 0, infotainment recessive 1 → infotainment's bit error.
    let good = Frame::classic(sid(0x123), &[0x00, 0xaa]).unwrap();
    let bad = Frame::classic(sid(0x123), &[0x01, 0xaa]).unwrap();
    let other = Frame::classic(sid(0x050), &[1, 2, 3, 4]).unwrap();
    let obs = bus.attach(NodeConfig::named("observer"));
    let w = bus
        .attach_scripted(
            "cluster",
            &[Traffic::Flood {
                frame: good,
                depth: 1,
                counter_byte: None,
            }],
        )
        .unwrap();
    let l = bus
        .attach_scripted(
            "infotainment",
            &[Traffic::Flood {
                frame: bad,
                depth: 1,
                counter_byte: None,
            }],
        )
        .unwrap();
    let c = bus
        .attach_scripted(
            "engine",
            &[Traffic::Periodic {
                frame: other,
                period_ns: MS,
                offset_ns: 0,
                counter_byte: Some(0),
            }],
        )
        .unwrap();
    while bus.status(l).unwrap().state != ErrorState::BusOff {
        assert!(bus.now() < 100 * MS, "infotainment never went bus-off");
        bus.step();
    }
    let t_off = bus.now();
    // 16 attempts with both error-active (both TEC +8: the cluster sees the
    // flag as a bit error), then 16 more as error-passive where only
    // infotainment's (invisible) flag counts: 32 × 8 = 256 > 255.
    assert_eq!(bus.stats(l).tx_errors, 32);
    assert_eq!(bus.status(l).unwrap().tec, 256);
    let states: Vec<ErrorState> = bus.state_log(l).iter().map(|s| s.1).collect();
    assert_eq!(
        states,
        vec![ErrorState::Active, ErrorState::Passive, ErrorState::BusOff]
    );
    // The cluster took the first 16 hits too, then recovered by sending.
    assert_eq!(bus.stats(w).tx_errors, 16);
    assert_ne!(bus.status(w).unwrap().state, ErrorState::BusOff);
    // Everyone else keeps communicating: the engine's frames all arrive.
    bus.run_until(t_off + 50 * MS);
    assert_eq!(bus.status(w).unwrap().state, ErrorState::Active);
    let engine_rx: Vec<u8> = bus
        .received(obs)
        .iter()
        .filter(|r| r.source == c)
        .map(|r| r.frame.data()[0])
        .collect();
    let want: Vec<u8> = (0..engine_rx.len())
        .map(|k| u8::try_from(k % 256).unwrap())
        .collect();
    assert_eq!(engine_rx, want, "engine frames lost or reordered");
    assert!(engine_rx.len() >= 50);
    let after: Vec<_> = bus
        .received(obs)
        .into_iter()
        .filter(|r| r.timestamp_ns > t_off)
        .collect();
    assert!(after.iter().any(|r| r.source == w));
    assert!(!after.iter().any(|r| r.source == l));
    // Swapping the payloads moves the blame: the model does not just pick a node.
    let mut bus2 = classic_bus(500_000);
    bus2.attach(NodeConfig::named("observer"));
    let w2 = bus2
        .attach_scripted(
            "a",
            &[Traffic::Flood {
                frame: bad,
                depth: 1,
                counter_byte: None,
            }],
        )
        .unwrap();
    let l2 = bus2
        .attach_scripted(
            "b",
            &[Traffic::Flood {
                frame: good,
                depth: 1,
                counter_byte: None,
            }],
        )
        .unwrap();
    bus2.run_until(20 * MS);
    assert_eq!(bus2.status(w2).unwrap().state, ErrorState::BusOff);
    assert_ne!(bus2.status(l2).unwrap().state, ErrorState::BusOff);
}

#[test]
fn bus_off_recovery_needs_a_request_and_128_times_11_recessive_bits() {
    let bit = 2_000;
    let mut bus = classic_bus(500_000);
    let dead = bus.attach(NodeConfig::named("dead-transceiver"));
    let obs = bus.attach(NodeConfig::named("observer"));
    bus.set_fault(dead, NodeFault::TxDead).unwrap();
    bus.submit(dead, Frame::classic(sid(0x1), &[1]).unwrap())
        .unwrap();
    while bus.status(dead).unwrap().state != ErrorState::BusOff {
        assert!(bus.now() < 10 * MS);
        bus.step();
    }
    // Nobody saw anything.
    assert!(bus.received(obs).is_empty());
    assert_eq!(bus.stats(dead).tx_errors, 32);
    // Without a request it stays bus-off however long the bus is idle.
    bus.set_fault(dead, NodeFault::None).unwrap();
    let t = bus.now() + 100 * MS;
    bus.run_until(t);
    assert_eq!(bus.status(dead).unwrap().state, ErrorState::BusOff);
    bus.request_recovery(dead).unwrap();
    let t_req = bus.now();
    bus.run_until(t_req + 128 * 11 * bit - 1);
    assert_eq!(bus.status(dead).unwrap().state, ErrorState::BusOff);
    bus.run_until(t_req + 128 * 11 * bit);
    let st = bus.status(dead).unwrap();
    assert_eq!((st.state, st.tec, st.rec), (ErrorState::Active, 0, 0));
    // ≈ 2.8 ms at 500 kbit/s; then its pending frame goes out.
    assert_eq!(128 * 11 * bit, 2_816_000);
    bus.run_until(t_req + 5 * MS);
    assert_eq!(bus.received(obs).len(), 1);
    assert!(bus.request_recovery(dead).is_err());
}

#[test]
fn bus_off_recovery_on_a_busy_bus_counts_one_sequence_per_frame() {
    let mut bus = classic_bus(500_000);
    let dead = bus.attach(NodeConfig::named("dead"));
    let obs = bus.attach(NodeConfig::named("observer"));
    bus.set_fault(dead, NodeFault::TxDead).unwrap();
    bus.submit(dead, Frame::classic(sid(0x7ff), &[1]).unwrap())
        .unwrap();
    while bus.status(dead).unwrap().state != ErrorState::BusOff {
        bus.step();
    }
    bus.set_fault(dead, NodeFault::None).unwrap();
    let f = Frame::classic(sid(0x100), &[0; 8]).unwrap();
    bus.attach_scripted(
        "flood",
        &[Traffic::Flood {
            frame: f,
            depth: 1,
            counter_byte: None,
        }],
    )
    .unwrap();
    bus.request_recovery(dead).unwrap();
    let t_req = bus.now();
    let before = bus.received(obs).len();
    while bus.status(dead).unwrap().state == ErrorState::BusOff {
        assert!(bus.now() < t_req + 100 * MS);
        bus.step();
    }
    // Back to back frames leave exactly one run of 11 recessive bits each
    // (ACK delimiter, EOF, intermission): 128 frames.
    let frames = bus.received(obs).len() - before;
    assert!((127..=129).contains(&frames), "{frames}");
    assert!(bus.now() - t_req >= 128 * 11 * 2_000);
}

#[test]
fn error_passive_at_128_and_a_lone_node_stays_there() {
    // No receiver: every attempt is an ACK error. Error-active: TEC +8 each;
    // error-passive: ISO exception 1 keeps TEC at 128, never bus-off.
    let mut bus = classic_bus(500_000);
    let lone = bus.attach(NodeConfig::named("lone"));
    bus.submit(lone, Frame::classic(sid(0x55), &[0]).unwrap())
        .unwrap();
    let mut tec_seen = Vec::new();
    while bus.stats(lone).tx_errors < 16 {
        bus.step();
        let s = bus.status(lone).unwrap();
        if tec_seen.last() != Some(&s.tec) {
            tec_seen.push(s.tec);
        }
        if s.tec < 128 {
            assert_eq!(s.state, ErrorState::Active);
        }
    }
    assert_eq!(tec_seen, (0..=16).map(|k| k * 8).collect::<Vec<u16>>());
    // Each attempt: SOF..ACK slot, then a 6-bit active flag from the ACK
    // delimiter, 8-bit delimiter, 3-bit intermission.
    let ack = u64::from(FrameBits::new(&Frame::classic(sid(0x55), &[0]).unwrap()).ack_slot());
    let passive_at = bus
        .state_log(lone)
        .iter()
        .find(|s| s.1 == ErrorState::Passive)
        .unwrap()
        .0;
    assert_eq!(passive_at, 16 * (ack + 1 + 6 + 8 + 3) * 2_000);
    let s = bus.status(lone).unwrap();
    assert_eq!((s.state, s.tec), (ErrorState::Passive, 128));
    bus.run_until(bus.now() + 50 * MS);
    let s = bus.status(lone).unwrap();
    assert_eq!((s.state, s.tec), (ErrorState::Passive, 128));
    assert_eq!(bus.stats(lone).tx_errors, 16);
    // A receiver appears: the frame is acknowledged, TEC −1 → error-active.
    let rx = bus.attach(NodeConfig::named("rx"));
    bus.run_until(bus.now() + MS);
    assert_eq!(bus.received(rx).len(), 1);
    assert_eq!(bus.status(lone).unwrap().state, ErrorState::Active);
    assert_eq!(bus.status(lone).unwrap().tec, 127);
}

#[test]
fn rx_broadcast_delivers_the_same_sequence_to_every_node() {
    let mut bus = CanBus::new(BusConfig::fd(500_000, 2_000_000).unwrap());
    let mut senders = Vec::new();
    for (k, (id, period)) in [
        (0x100u16, 1_000_000u64),
        (0x080, 2_500_000),
        (0x300, 700_000),
    ]
    .iter()
    .enumerate()
    {
        let f = if k == 2 {
            Frame::fd(sid(*id), &[0; 12], true).unwrap()
        } else {
            Frame::classic(sid(*id), &[0; 8]).unwrap()
        };
        senders.push(
            bus.attach_scripted(
                &format!("ecu{k}"),
                &[Traffic::Periodic {
                    frame: f,
                    period_ns: *period,
                    offset_ns: 0,
                    counter_byte: Some(0),
                }],
            )
            .unwrap(),
        );
    }
    let rxs: Vec<NodeId> = (0..3)
        .map(|k| bus.attach(NodeConfig::named(&format!("rx{k}"))))
        .collect();
    bus.run_until(200 * MS);
    let logs: Vec<Vec<_>> = rxs.iter().map(|&r| bus.received(r)).collect();
    assert!(logs[0].len() > 500);
    assert_eq!(logs[0], logs[1]);
    assert_eq!(logs[0], logs[2]);
    // Each sender sees everyone else's frames, in the same order.
    for &s in &senders {
        let mine: Vec<_> = logs[0].iter().filter(|r| r.source != s).copied().collect();
        assert_eq!(bus.received(s), mine);
    }
    // Timestamps strictly increase.
    assert!(logs[0]
        .windows(2)
        .all(|w| w[0].timestamp_ns < w[1].timestamp_ns));
}

#[test]
fn dead_transceiver_node_goes_bus_off_alone() {
    let mut bus = classic_bus(500_000);
    let obs = bus.attach(NodeConfig::named("observer"));
    let f = Frame::classic(sid(0x200), &[9; 8]).unwrap();
    let good = bus
        .attach_scripted(
            "good",
            &[Traffic::Periodic {
                frame: f,
                period_ns: MS,
                offset_ns: 0,
                counter_byte: Some(0),
            }],
        )
        .unwrap();
    let dead = bus.attach(NodeConfig::named("dead"));
    bus.set_fault(dead, NodeFault::TxDead).unwrap();
    for _ in 0..4 {
        bus.submit(dead, Frame::classic(sid(0x100), &[1]).unwrap())
            .unwrap();
    }
    bus.run_until(50 * MS);
    assert_eq!(bus.status(dead).unwrap().state, ErrorState::BusOff);
    assert!(bus.received(obs).iter().all(|r| r.source == good));
    assert_eq!(bus.received(obs).len(), 50);
    assert_eq!(bus.status(good).unwrap().tec, 0);
    // A dead transceiver also cannot acknowledge: alone with it, a sender
    // gets ACK errors.
    let mut bus = classic_bus(500_000);
    let a = bus.attach(NodeConfig::named("a"));
    let d = bus.attach(NodeConfig::named("d"));
    bus.set_fault(d, NodeFault::TxDead).unwrap();
    bus.submit(a, f).unwrap();
    bus.run_until(5 * MS);
    assert_eq!(bus.status(a).unwrap().state, ErrorState::Passive);
    assert!(bus.received(d).is_empty());
}

#[test]
fn stuck_dominant_takes_the_transmitter_bus_off_and_receivers_passive() {
    let mut bus = classic_bus(500_000);
    let f = Frame::classic(sid(0x100), &[1; 8]).unwrap();
    let tx = bus.attach(NodeConfig::named("tx"));
    let rx = bus.attach(NodeConfig::named("rx"));
    bus.inject_stuck_dominant(0, 2 * MS);
    bus.submit(tx, f).unwrap();
    bus.run_until(MS);
    assert_eq!(bus.status(tx).unwrap().state, ErrorState::BusOff);
    assert_eq!(bus.status(rx).unwrap().state, ErrorState::Passive);
    assert!(bus.received(rx).is_empty());
    // After the fault: the transmitter recovers on request, the frame goes out.
    bus.request_recovery(tx).unwrap();
    bus.run_until(10 * MS);
    assert_eq!(bus.received(rx).len(), 1);
    assert_eq!(bus.status(tx).unwrap().state, ErrorState::Active);
}

#[test]
fn stuck_recessive_bus_makes_every_transmitter_fail() {
    let mut bus = classic_bus(500_000);
    let a = bus.attach(NodeConfig::named("a"));
    let b = bus.attach(NodeConfig::named("b"));
    bus.inject_stuck_recessive(0, 5 * MS);
    bus.submit(a, Frame::classic(sid(0x100), &[1]).unwrap())
        .unwrap();
    bus.run_until(4 * MS);
    assert!(bus.received(b).is_empty());
    assert_eq!(bus.status(a).unwrap().state, ErrorState::BusOff);
    assert_eq!(bus.status(b).unwrap().rec, 0);
}

#[test]
fn cancel_and_queue_limits() {
    let mut bus = classic_bus(500_000);
    let mut cfg = NodeConfig::named("a");
    cfg.tx_capacity = 2;
    let a = bus.attach(cfg);
    let b = bus.attach(NodeConfig::named("b"));
    let f = Frame::classic(sid(0x100), &[1]).unwrap();
    let t1 = bus.submit(a, f).unwrap();
    bus.submit(a, f).unwrap();
    assert!(bus.submit(a, f).is_err());
    assert_eq!(bus.stats(a).tx_queue_full, 1);
    assert!(bus.cancel(a, t1));
    assert!(!bus.cancel(a, t1));
    bus.run_until(MS);
    assert_eq!(bus.received(b).len(), 1);
    let mut ctl = bus.controller(a);
    assert_eq!(
        ctl.completion().unwrap().outcome,
        drv_host_can_bus::TxOutcome::Cancelled
    );
    assert_eq!(
        ctl.completion().unwrap().outcome,
        drv_host_can_bus::TxOutcome::Sent
    );
    assert_eq!(ctl.status().unwrap().state, ErrorState::Active);
}

#[test]
fn one_collision_error_frame_matches_the_hand_count() {
    // id 0x123, DLC 1: SOF 0, id 00100100011, RTR/IDE/r0 000, DLC 0001, then
    // the data byte. Stuffed: a stuff bit after logical bit 16 (five zeros
    // from RTR to the DLC's second bit) and after the data's fifth zero, so
    // the data bytes 0x00 / 0x01 first differ at wire bit 28, where the bus
    // has shown three dominant bits in a row (26, 27, 28).
    let mut bus = classic_bus(500_000);
    let obs = bus.attach(NodeConfig::named("observer"));
    let w = bus.attach(NodeConfig::named("w"));
    let l = bus.attach(NodeConfig::named("l"));
    bus.submit(w, Frame::classic(sid(0x123), &[0x00]).unwrap())
        .unwrap();
    bus.submit(l, Frame::classic(sid(0x123), &[0x01]).unwrap())
        .unwrap();
    while bus.stats(l).tx_errors == 0 {
        bus.step();
    }
    // L's flag: bits 29..34. The observer sees its 6th dominant bit at 31 and
    // flags 32..37; W flags from its first recessive bit (≤ 31). Dominant
    // ends at 37, then 8 delimiter + 3 intermission bits: 49 bits in all.
    assert_eq!(bus.now(), 49 * 2_000);
    assert_eq!(bus.status(l).unwrap().tec, 8);
    assert_eq!(bus.status(w).unwrap().tec, 8);
    // The observer's own flag ended with the last dominant bit: REC +1 only.
    assert_eq!(bus.status(obs).unwrap().rec, 1);
    assert_eq!(bus.stats(obs).rx_errors, 1);
    assert_eq!(bus.bus_stats().error_frames, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Random ECUs (colliding ids included), dead transceivers and stuck
    /// intervals, with a driver that requests recovery after every bus-off:
    /// the model never panics, listeners agree on one sequence, frames never
    /// overlap on the wire, and states match the counters.
    #[test]
    fn random_traffic_and_faults_keep_the_bus_consistent(
        traffic in prop::collection::vec((0u16..0x10, 0usize..=8, 200_000u64..3_000_000, any::<bool>()), 1..5),
        dead in prop::collection::vec(any::<bool>(), 5),
        stuck in prop::option::of((0u64..8 * MS, 1u64..400_000, any::<bool>())),
    ) {
        let bit = 2_000;
        let mut bus = classic_bus(500_000);
        let listeners = [bus.attach(NodeConfig::named("l0")), bus.attach(NodeConfig::named("l1"))];
        let mut ecus = Vec::new();
        for (k, &(id, len, period, flood)) in traffic.iter().enumerate() {
            let f = Frame::classic(sid(id), &vec![0x5a; len]).unwrap();
            let counter = (len > 0).then_some(0);
            let t = if flood {
                Traffic::Flood { frame: f, depth: 1, counter_byte: counter }
            } else {
                Traffic::Periodic { frame: f, period_ns: period, offset_ns: 0, counter_byte: counter }
            };
            let n = bus.attach_scripted(&format!("ecu{k}"), &[t]).unwrap();
            if dead[k] {
                bus.set_fault(n, NodeFault::TxDead).unwrap();
            }
            ecus.push(n);
        }
        if let Some((at, dur, dominant)) = stuck {
            if dominant { bus.inject_stuck_dominant(at, dur) } else { bus.inject_stuck_recessive(at, dur) }
        }
        let mut t = 0;
        while t < 20 * MS {
            t += MS;
            bus.run_until(t);
            for &n in &ecus {
                let s = bus.status(n).unwrap();
                prop_assert_eq!(s.state == ErrorState::BusOff, s.tec > 255);
                if s.state == ErrorState::BusOff {
                    bus.request_recovery(n).unwrap();
                }
            }
        }
        let a = bus.received(listeners[0]);
        prop_assert_eq!(&a, &bus.received(listeners[1]));
        for w in a.windows(2) {
            let min_gap = u64::from(w[1].frame.wire_bits()) * bit;
            prop_assert!(w[1].timestamp_ns >= w[0].timestamp_ns + min_gap);
        }
        let s = bus.bus_stats();
        prop_assert!(s.busy_ok_ns + s.busy_error_ns <= bus.now());
        for &l in &listeners {
            prop_assert_ne!(bus.status(l).unwrap().state, ErrorState::BusOff);
        }
    }
}

#[test]
fn an_error_passive_fd_transmitter_sends_esi_recessive() {
    let mut bus = CanBus::new(BusConfig::fd(500_000, 2_000_000).unwrap());
    let lone = bus.attach(NodeConfig::named("lone"));
    let f = Frame::fd(sid(0x42), &[7; 16], true).unwrap();
    bus.submit(lone, f).unwrap();
    while bus.status(lone).unwrap().state != ErrorState::Passive {
        bus.step();
    }
    let rx = bus.attach(NodeConfig::named("rx"));
    bus.run_until(bus.now() + MS);
    let got = bus.received(rx);
    assert_eq!(got.len(), 1);
    assert!(got[0].frame.esi());
    assert_eq!(got[0].frame.data(), f.data());
    // Error-active again after that success: the next frame has ESI dominant.
    bus.submit(lone, f).unwrap();
    bus.run_until(bus.now() + MS);
    assert!(!bus.received(rx)[1].frame.esi());
}

#[test]
fn a_corrupting_receiver_is_confined_to_error_passive() {
    // Every frame X receives fails its CRC: while error-active, X flags it
    // after the ACK delimiter (REC +1, +8 for the others' flags right after
    // its own), the sender retransmits (TEC +8). After 15 such frames X's
    // REC is 135: error-passive, its flags go quiet, traffic flows again.
    let mut bus = classic_bus(500_000);
    let f = Frame::classic(sid(0x321), &[0; 4]).unwrap();
    let t = bus
        .attach_scripted(
            "sender",
            &[Traffic::Periodic {
                frame: f,
                period_ns: MS,
                offset_ns: 0,
                counter_byte: Some(0),
            }],
        )
        .unwrap();
    let x = bus.attach(NodeConfig::named("noisy"));
    let o = bus.attach(NodeConfig::named("observer"));
    bus.set_fault(x, NodeFault::RxCorrupt).unwrap();
    bus.run_until(100 * MS);
    assert_eq!(bus.bus_stats().error_frames, 15);
    let xs = bus.status(x).unwrap();
    assert_eq!(xs.state, ErrorState::Passive);
    assert!(xs.rec >= 135, "{}", xs.rec);
    assert!(bus.received(x).is_empty());
    // The sender peaked at 15 × 8 = 120 (never passive) and came back down.
    assert_eq!(bus.stats(t).tx_errors, 15);
    assert!(bus.state_log(t).iter().all(|s| s.1 == ErrorState::Active));
    assert_eq!(bus.status(t).unwrap().tec, 120 - 100);
    // The observer got every frame exactly once, in order: no duplicates
    // from the retransmissions.
    let seq: Vec<u8> = bus.received(o).iter().map(|r| r.frame.data()[0]).collect();
    assert_eq!(seq, (0..100u8).collect::<Vec<_>>());
    assert_eq!(bus.status(o).unwrap().rec, 0);
}

#[test]
fn an_error_passive_transmitter_suspends_transmission_for_8_bits() {
    // A is made error-passive by its receive path (REC ≥ 128) while its
    // transmitter stays healthy. After each of its own frames it must wait 8
    // bits past intermission, so B's lower-priority frame gets in between
    // A's two high-priority frames.
    let mut bus = classic_bus(500_000);
    let a = bus.attach(NodeConfig::named("a"));
    let b = bus.attach(NodeConfig::named("b"));
    let c = bus.attach(NodeConfig::named("c"));
    let obs = bus.attach(NodeConfig::named("observer"));
    bus.set_fault(a, NodeFault::RxCorrupt).unwrap();
    bus.submit(c, Frame::classic(sid(0x300), &[0]).unwrap())
        .unwrap();
    bus.run_until(10 * MS);
    assert_eq!(bus.status(a).unwrap().state, ErrorState::Passive);
    let a1 = Frame::classic(sid(0x001), &[1]).unwrap();
    let a2 = Frame::classic(sid(0x001), &[2]).unwrap();
    let low = Frame::classic(sid(0x700), &[3]).unwrap();
    bus.submit(a, a1).unwrap();
    bus.submit(a, a2).unwrap();
    bus.submit(b, low).unwrap();
    bus.run_until(20 * MS);
    let order: Vec<Frame> = bus.received(obs).iter().skip(1).map(|r| r.frame).collect();
    assert_eq!(order, vec![a1, low, a2]);
    // While error-active, the same node would have sent back to back.
    let mut bus = classic_bus(500_000);
    let a = bus.attach(NodeConfig::named("a"));
    let b = bus.attach(NodeConfig::named("b"));
    let obs = bus.attach(NodeConfig::named("observer"));
    bus.submit(a, a1).unwrap();
    bus.submit(a, a2).unwrap();
    bus.submit(b, low).unwrap();
    bus.run_until(10 * MS);
    let order: Vec<Frame> = bus.received(obs).iter().map(|r| r.frame).collect();
    assert_eq!(order, vec![a1, a2, low]);
}

#[test]
fn identical_frames_from_two_nodes_superpose_without_error() {
    let mut bus = classic_bus(500_000);
    let a = bus.attach(NodeConfig::named("a"));
    let b = bus.attach(NodeConfig::named("b"));
    let obs = bus.attach(NodeConfig::named("observer"));
    let f = Frame::classic(sid(0x222), &[1, 2, 3]).unwrap();
    bus.submit(a, f).unwrap();
    bus.submit(b, f).unwrap();
    bus.run_until(MS);
    // One frame on the wire, both transmitters done, nobody saw an error.
    assert_eq!(bus.received(obs).len(), 1);
    assert_eq!(bus.stats(a).tx_ok + bus.stats(b).tx_ok, 2);
    assert_eq!(bus.bus_stats().error_frames, 0);
    assert_eq!(bus.bus_stats().frames_ok, 1);
}
