//! The UART driver against the register-level model in `model/`.

mod model;

use drv_imx_uart::regs::*;
use drv_imx_uart::{best_rational, Config, Divider, RxError, Uart, UartError};
use model::UartModel;

fn ready() -> Uart<UartModel> {
    let mut u = Uart::new(UartModel::default());
    u.init(&Config::console(80_000_000)).expect("init");
    u
}

#[test]
fn divider_matches_linux_imx_c() {
    // imx_uart_set_termios at 115200 from an 80 MHz uart root: div =
    // 80e6/(16*115200) = 43 -> clamped to 7; 16*7*115200/80e6 reduces to
    // 504/3125, so UBIR = 503, UBMR = 3124, RFDIV field 0b110.
    let d = Divider::for_baud(80_000_000, 115_200).expect("divider");
    assert_eq!(
        d,
        Divider {
            rfdiv: 7,
            ubir: 503,
            ubmr: 3124
        }
    );
    assert_eq!(d.baud(80_000_000), 115_200);
    // 24 MHz oscillator: 12902400/24e6 = 336/625.
    let d = Divider::for_baud(24_000_000, 115_200).expect("divider");
    assert_eq!(
        d,
        Divider {
            rfdiv: 7,
            ubir: 335,
            ubmr: 624
        }
    );
    // 1.5 Mbaud from 24 MHz: div = 1; 16*1.5e6/24e6 = 1/1.
    let d = Divider::for_baud(24_000_000, 1_500_000).expect("divider");
    assert_eq!(
        d,
        Divider {
            rfdiv: 1,
            ubir: 0,
            ubmr: 0
        }
    );
    assert_eq!(
        Divider::for_baud(24_000_000, 0),
        Err(UartError::BaudUnreachable)
    );
    assert_eq!(
        Divider::for_baud(24_000_000, 2_000_000),
        Err(UartError::BaudUnreachable)
    );
}

#[test]
fn best_rational_bounded_cases() {
    // pi ~ 355/113 with terms <= 400 (the next convergent is 103993/33102).
    assert_eq!(
        best_rational(3_141_592_653, 1_000_000_000, 400, 400),
        (355, 113)
    );
    assert_eq!(best_rational(1, 2, 1, 2), (1, 2));
    // 27/32 bounded to 16/16 -> the best is 11/13 (a semiconvergent).
    assert_eq!(best_rational(27, 32, 16, 16), (11, 13));
    // Every divider stays in the 16-bit registers and within 0.1 % of baud.
    for clk in [
        24_000_000u32,
        25_000_000,
        66_666_666,
        80_000_000,
        100_000_003,
    ] {
        for baud in [
            9600u32, 19_200, 57_600, 115_200, 230_400, 921_600, 1_000_000,
        ] {
            let d = Divider::for_baud(clk, baud).expect("divider");
            assert!(d.ubir <= 0xFFFF && d.ubmr <= 0xFFFF);
            let err = d.baud(clk).abs_diff(u64::from(baud));
            assert!(err * 1000 <= u64::from(baud), "{clk} {baud}: {:?}", d);
        }
    }
}

/// Exhaustive oracle: for every x = num/den <= 1 in a small range, no n/d
/// within the bounds is strictly closer than what `best_rational` returns.
#[test]
fn best_rational_is_closest_exhaustive() {
    for den in 1..=40u64 {
        for num in 1..=den {
            for (mn, md) in [(3, 5), (7, 7), (12, 9)] {
                let (n, d) = best_rational(num, den, mn, md);
                assert!(d > 0 && n <= mn && d <= md);
                // |n/d - num/den| = |n*den - num*d| / (d*den); compare cross-multiplied.

                for dd in 1..=md {
                    for nn in 0..=mn {
                        assert!(
                            (nn * den).abs_diff(num * dd) * d >= (n * den).abs_diff(num * d) * dd,
                            "{num}/{den} in {mn}/{md}: got {n}/{d}, {nn}/{dd} closer"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn init_programs_registers() {
    let u = &mut ready();
    let m = u.regs();
    assert_eq!(m.ubir, 503);
    assert_eq!(m.ubmr, 3124);
    assert_eq!(m.ufcr, (2 << 10) | (6 << 7) | 1);
    assert_eq!(m.ucr[0], UCR1_UARTEN);
    assert_eq!(
        m.ucr[1],
        UCR2_SRST | UCR2_IRTS | UCR2_WS | UCR2_TXEN | UCR2_RXEN
    );
    assert_eq!(m.ucr[2], UCR3_RXDMUXSEL);
    // UBIR is written before UBMR (the UBMR write latches the pair).
    let pos = |off| m.log.iter().position(|&(o, _)| o == off).expect("written");
    assert!(pos(UBIR.offset()) < pos(UBMR.offset()));
    // The reset was requested (SRST low) before anything was configured.
    assert_eq!(m.log[1], (UCR2.offset(), 0));
}

#[test]
fn init_rejects_bad_settings_and_stuck_reset() {
    let mut u = Uart::new(UartModel::default());
    let mut c = Config::console(80_000_000);
    c.rx_trigger = 0;
    assert_eq!(u.init(&c), Err(UartError::BadTriggerLevel));
    c = Config::console(80_000_000);
    c.tx_trigger = 33;
    assert_eq!(u.init(&c), Err(UartError::BadTriggerLevel));
    u.regs().reset_reads = u32::MAX;
    // The model re-arms reset_reads on the SRST write; make it stick.
    struct Stuck(UartModel);
    impl drv_imx_uart::Mmio for Stuck {
        fn read32(&mut self, r: Reg) -> u32 {
            self.0.read32(r) & if r == UCR2 { !UCR2_SRST } else { !0 }
        }
        fn write32(&mut self, r: Reg, v: u32) {
            self.0.write32(r, v)
        }
    }
    let mut s = Uart::new(Stuck(UartModel::default()));
    assert_eq!(
        s.init(&Config::console(80_000_000)),
        Err(UartError::ResetTimeout)
    );
}

#[test]
fn tx_fills_fifo_then_backpressures() {
    let mut u = ready();
    let msg: Vec<u8> = (0..50u8).collect();
    assert_eq!(u.write(&msg), FIFO_DEPTH);
    assert_eq!(u.write(&msg[FIFO_DEPTH..]), 0);
    assert!(!u.tx_done());
    u.regs().shift(10);
    assert_eq!(u.write(&msg[FIFO_DEPTH..]), 10);
    u.regs().shift(100);
    assert!(u.tx_done());
    assert_eq!(u.regs().wire, msg[..42]);
}

#[test]
fn rx_typed_errors_per_byte() {
    let mut u = ready();
    u.regs().receive(b'a', 0);
    u.regs().receive(b'b', URXD_PRERR);
    u.regs().receive(b'c', URXD_FRMERR);
    u.regs().receive(0, URXD_BRK | URXD_FRMERR);
    u.regs().receive(b'd', 0);
    assert_eq!(u.read_byte(), Some(Ok(b'a')));
    assert_eq!(u.read_byte(), Some(Err(RxError::Parity(b'b'))));
    assert_eq!(u.read_byte(), Some(Err(RxError::Frame(b'c'))));
    assert_eq!(u.read_byte(), Some(Err(RxError::Break)));
    assert_eq!(u.read_byte(), Some(Ok(b'd')));
    assert_eq!(u.read_byte(), None);
}

#[test]
fn rx_overrun_is_reported_and_acked() {
    let mut u = ready();
    u.set_rx_irq(true);
    for i in 0..35u8 {
        u.regs().receive(i, 0);
    }
    assert!(u.regs().irq());
    let ev = u.handle_irq();
    assert!(ev.overrun && ev.rx_ready);
    assert_eq!(u.regs().usr2_w1c & USR2_ORE, 0, "ORE acknowledged");
    let mut buf = [0u8; 64];
    assert_eq!(u.read(&mut buf), FIFO_DEPTH);
    u.regs().receive(0x55, 0);
    assert_eq!(u.read_byte(), Some(Err(RxError::Overrun(0x55))));
    assert!(!u.regs().irq());
}

#[test]
fn console_read_drops_and_counts_bad_bytes() {
    let mut u = ready();
    for (b, f) in [(b'h', 0), (b'x', URXD_PRERR), (b'i', 0), (0, URXD_BRK)] {
        u.regs().receive(b, f);
    }
    let mut buf = [0u8; 8];
    assert_eq!(u.read(&mut buf), 2);
    assert_eq!(&buf[..2], b"hi");
    assert_eq!((u.stats().corrupt, u.stats().breaks), (1, 1));
}

#[test]
fn irq_enable_and_ack() {
    let mut u = ready();
    u.regs().receive(b'z', 0);
    assert!(!u.regs().irq(), "RX IRQ off after init");
    u.set_rx_irq(true);
    assert!(u.regs().irq());
    assert!(u.handle_irq().rx_ready);
    assert_eq!(u.read_byte(), Some(Ok(b'z')));
    assert!(!u.regs().irq(), "draining the FIFO clears RRDY");
    // TX IRQ: fires while the FIFO is below TXTL (2), only when enabled.
    u.set_tx_irq(true);
    assert!(u.regs().irq());
    assert!(u.handle_irq().tx_ready);
    assert_eq!(u.write(&[1, 2, 3]), 3);
    assert!(!u.regs().irq(), "FIFO at/above TXTL");
    u.regs().shift(2);
    assert!(u.regs().irq());
    u.set_tx_irq(false);
    assert!(!u.regs().irq());
    assert!(!u.handle_irq().tx_ready);
}

/// The console driver's loop: offer bytes, park the rest, enable the TX
/// interrupt, refill on each interrupt, disable it when drained; input is
/// read on RX interrupts. Nothing is lost or reordered.
#[test]
fn interrupt_driven_console_round_trip() {
    let mut u = ready();
    u.set_rx_irq(true);
    let out: Vec<u8> = (0..200u8).collect();
    let mut sent = u.write(&out);
    let mut got = Vec::new();
    let mut rounds: u32 = 0;
    if sent < out.len() {
        u.set_tx_irq(true);
    }
    while (sent < out.len() || !u.tx_done()) && rounds < 1000 {
        rounds += 1;
        // The line moves 5 characters out and one in per "interrupt period".
        u.regs().shift(5);
        u.regs().receive(rounds.to_le_bytes()[0], 0);
        if !u.regs().irq() {
            continue;
        }
        let ev = u.handle_irq();
        if ev.rx_ready {
            let mut buf = [0u8; 8];
            let n = u.read(&mut buf);
            got.extend_from_slice(&buf[..n]);
        }
        if ev.tx_ready {
            sent += u.write(&out[sent..]);
            if sent == out.len() {
                u.set_tx_irq(false);
            }
        }
    }
    assert_eq!(u.regs().wire, out);
    let want: Vec<u8> = (1..=rounds).map(|r| r.to_le_bytes()[0]).collect();
    assert_eq!(got, want);
    assert_eq!(u.regs().ucr[0] & UCR1_TRDYEN, 0, "TX IRQ off once drained");
}
