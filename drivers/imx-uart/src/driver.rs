//! The device logic proper; reaches hardware only through [`Mmio`].

use crate::mmio::Mmio;
use crate::regs::*;

/// Why the UART could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UartError {
    /// The baud rate is zero or too high for the reference clock (the
    /// receiver samples 16 times per bit, so baud <= ref_clk / 16).
    BaudUnreachable,
    /// A FIFO trigger level is outside 1..=31 (RX) or 2..=32 (TX).
    BadTriggerLevel,
    /// The software reset (UCR2.SRST) did not complete.
    ResetTimeout,
}

/// A received character the hardware flagged (URXD error bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxError {
    /// A break (line held low for a whole character) was received.
    Break,
    /// The stop bit was missing; the byte is probably corrupt.
    Frame(u8),
    /// The parity bit did not match; the byte is probably corrupt.
    Parity(u8),
    /// This byte is fine but earlier ones were lost (RX FIFO overran).
    Overrun(u8),
}

/// Line settings and FIFO trigger levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The UART's reference clock (the board's uart root clock), in Hz.
    pub ref_clk_hz: u32,
    /// Baud rate; 8 data bits, no parity, 1 stop bit.
    pub baud: u32,
    /// RX trigger level: RRDY (and its IRQ) when this many chars wait (1..=31).
    pub rx_trigger: u32,
    /// TX trigger level: TRDY (and its IRQ) when fewer chars wait (2..=32).
    pub tx_trigger: u32,
}

impl Config {
    /// The console's settings: 115200 8N1, Linux imx.c's trigger levels
    /// (RXTL 1 so each character raises RRDY, TXTL 2).
    pub const fn console(ref_clk_hz: u32) -> Config {
        Config {
            ref_clk_hz,
            baud: 115_200,
            rx_trigger: 1,
            tx_trigger: 2,
        }
    }
}

/// A baud-rate divider setting: baud = (ref / rfdiv) * (ubir+1) / (16 * (ubmr+1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Divider {
    /// Reference-clock predivider, 1..=7 (UFCR.RFDIV encodes it).
    pub rfdiv: u32,
    /// UBIR value (numerator - 1).
    pub ubir: u32,
    /// UBMR value (denominator - 1).
    pub ubmr: u32,
}

impl Divider {
    /// The divider for `baud` from `ref_clk_hz`, chosen as Linux imx.c's
    /// `imx_uart_set_termios` does: predivider = ref/(16*baud) clamped to
    /// 1..=7, then UBIR+1 / UBMR+1 is the best rational approximation, with
    /// both terms at most 2^16, of 16*rfdiv*baud / ref.
    pub fn for_baud(ref_clk_hz: u32, baud: u32) -> Result<Divider, UartError> {
        let ref_clk = u64::from(ref_clk_hz);
        let baud = u64::from(baud);
        if baud == 0 || baud * 16 > ref_clk {
            return Err(UartError::BaudUnreachable);
        }
        let rfdiv = (ref_clk / (baud * 16)).clamp(1, 7);
        let (num, den) = best_rational(16 * rfdiv * baud, ref_clk, 1 << 16, 1 << 16);
        if num == 0 || den == 0 {
            return Err(UartError::BaudUnreachable);
        }
        let f = |v: u64| u32::try_from(v - 1).map_err(|_| UartError::BaudUnreachable);
        Ok(Divider {
            rfdiv: u32::try_from(rfdiv).map_err(|_| UartError::BaudUnreachable)?,
            ubir: f(num)?,
            ubmr: f(den)?,
        })
    }

    /// The baud rate this divider produces from `ref_clk_hz` (rounded down).
    pub fn baud(&self, ref_clk_hz: u32) -> u64 {
        let num = u64::from(self.ubir) + 1;
        let den = (u64::from(self.ubmr) + 1) * 16 * u64::from(self.rfdiv.max(1));
        u64::from(ref_clk_hz) * num / den
    }
}

/// Best rational approximation n/d of `num/den` with n <= `max_n`,
/// d <= `max_d`, by continued fractions with a final semiconvergent (the
/// algorithm of Linux `lib/math/rational.c`, which imx.c uses).
pub fn best_rational(num: u64, den: u64, max_n: u64, max_d: u64) -> (u64, u64) {
    let (mut n, mut d) = (num, den);
    // Convergents h(k-2)/k(k-2) = n0/d0 and h(k-1)/k(k-1) = n1/d1.
    let (mut n0, mut d0, mut n1, mut d1) = (0u64, 1u64, 1u64, 0u64);
    while d != 0 {
        let a = n / d;
        let dp = d;
        d = n % d;
        n = dp;
        let n2 = n0.saturating_add(a.saturating_mul(n1));
        let d2 = d0.saturating_add(a.saturating_mul(d1));
        if n2 > max_n || d2 > max_d {
            // The largest t with n0 + t*n1, d0 + t*d1 in range; take that
            // semiconvergent if it is closer than the last convergent.
            let tn = max_n.saturating_sub(n0).checked_div(n1).unwrap_or(u64::MAX);
            let td = max_d.saturating_sub(d0).checked_div(d1).unwrap_or(u64::MAX);
            let t = tn.min(td);
            if t.saturating_mul(2) > a || (t.saturating_mul(2) == a && d0 * dp > d1 * d) {
                n1 = n0 + t * n1;
                d1 = d0 + t * d1;
            }
            break;
        }
        n0 = n1;
        n1 = n2;
        d0 = d1;
        d1 = d2;
    }
    (n1, d1)
}

/// What an interrupt meant, after the driver acknowledged it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IrqEvents {
    /// Characters wait in the RX FIFO: call [`Uart::read`] / [`Uart::read_byte`].
    pub rx_ready: bool,
    /// The TX FIFO has room (only reported while the TX IRQ is enabled).
    pub tx_ready: bool,
    /// The RX FIFO overran (acknowledged; the next char carries `Overrun`).
    pub overrun: bool,
    /// A break was detected (acknowledged).
    pub brk: bool,
}

/// Counters kept by [`Uart::read`], which drops flagged characters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxStats {
    /// Breaks seen.
    pub breaks: u32,
    /// Bytes dropped for frame or parity errors.
    pub corrupt: u32,
    /// Overruns seen (bytes lost before a good one).
    pub overruns: u32,
}

/// Bounded wait for the software reset, in register reads.
const RESET_POLLS: u32 = 10_000;

/// One i.MX UART.
#[derive(Debug)]
pub struct Uart<M: Mmio> {
    regs: M,
    stats: RxStats,
}

impl<M: Mmio> Uart<M> {
    /// A driver over `regs`; call [`Uart::init`] before use.
    pub fn new(regs: M) -> Uart<M> {
        Uart {
            regs,
            stats: RxStats::default(),
        }
    }

    /// The register window (for tests and for handing it back).
    pub fn regs(&mut self) -> &mut M {
        &mut self.regs
    }

    /// Receive counters.
    pub fn stats(&self) -> RxStats {
        self.stats
    }

    /// Reset the UART and program 8N1 at `cfg.baud`, FIFO trigger levels,
    /// TX and RX enabled, interrupts off.
    pub fn init(&mut self, cfg: &Config) -> Result<Divider, UartError> {
        if !(1..=31).contains(&cfg.rx_trigger) || !(2..=32).contains(&cfg.tx_trigger) {
            return Err(UartError::BadTriggerLevel);
        }
        let div = Divider::for_baud(cfg.ref_clk_hz, cfg.baud)?;
        let rfdiv = rfdiv_field(div.rfdiv).ok_or(UartError::BaudUnreachable)?;
        // Disable first, then soft-reset: SRST is active low and reads 0
        // until the FIFOs and state machines are clear.
        self.regs.write32(UCR1, 0);
        self.regs.write32(UCR2, 0);
        let mut polls = 0;
        while self.regs.read32(UCR2) & UCR2_SRST == 0 {
            polls += 1;
            if polls >= RESET_POLLS {
                return Err(UartError::ResetTimeout);
            }
        }
        self.regs.write32(
            UFCR,
            (cfg.tx_trigger << UFCR_TXTL_SHIFT) | (rfdiv << UFCR_RFDIV_SHIFT) | cfg.rx_trigger,
        );
        // UBIR must be written before UBMR: the UBMR write loads both.
        self.regs.write32(UBIR, div.ubir);
        self.regs.write32(UBMR, div.ubmr);
        self.regs.write32(UCR3, UCR3_RXDMUXSEL);
        self.regs.write32(UCR4, 0);
        self.regs.write32(
            UCR2,
            UCR2_SRST | UCR2_IRTS | UCR2_WS | UCR2_TXEN | UCR2_RXEN,
        );
        self.regs.write32(UCR1, UCR1_UARTEN);
        Ok(div)
    }

    /// Push one byte if the TX FIFO has room.
    pub fn try_write_byte(&mut self, b: u8) -> bool {
        if self.regs.read32(UTS) & UTS_TXFULL != 0 {
            return false;
        }
        self.regs.write32(UTXD, u32::from(b));
        true
    }

    /// Push as many of `bytes` as the TX FIFO takes; returns how many (the
    /// console's backpressure: offer the rest after a TX-ready interrupt).
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        bytes
            .iter()
            .take_while(|&&b| self.try_write_byte(b))
            .count()
    }

    /// True when every byte written has left the shifter.
    pub fn tx_done(&mut self) -> bool {
        self.regs.read32(USR2) & USR2_TXDC != 0
    }

    /// Pop one character: `None` when the RX FIFO is empty.
    pub fn read_byte(&mut self) -> Option<Result<u8, RxError>> {
        if self.regs.read32(USR2) & USR2_RDR == 0 {
            return None;
        }
        let v = self.regs.read32(URXD);
        if v & URXD_CHARRDY == 0 {
            return None;
        }
        let b = (v & 0xFF) as u8;
        if v & URXD_ERR == 0 {
            return Some(Ok(b));
        }
        // A break also shows as a frame error (all-zero char, no stop bit),
        // so it is checked first.
        Some(Err(if v & URXD_BRK != 0 {
            RxError::Break
        } else if v & URXD_FRMERR != 0 {
            RxError::Frame(b)
        } else if v & URXD_PRERR != 0 {
            RxError::Parity(b)
        } else {
            RxError::Overrun(b)
        }))
    }

    /// Fill `buf` from the RX FIFO; returns how many bytes. Breaks and
    /// corrupt bytes are dropped and counted; an overrun keeps its byte.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            match self.read_byte() {
                None => break,
                Some(Ok(b)) => {
                    buf[n] = b;
                    n += 1;
                }
                Some(Err(RxError::Overrun(b))) => {
                    self.stats.overruns = self.stats.overruns.saturating_add(1);
                    buf[n] = b;
                    n += 1;
                }
                Some(Err(RxError::Break)) => {
                    self.stats.breaks = self.stats.breaks.saturating_add(1)
                }
                Some(Err(RxError::Frame(_) | RxError::Parity(_))) => {
                    self.stats.corrupt = self.stats.corrupt.saturating_add(1)
                }
            }
        }
        n
    }

    fn set_ucr1(&mut self, bit: u32, on: bool) {
        let v = self.regs.read32(UCR1);
        self.regs.write32(UCR1, if on { v | bit } else { v & !bit });
    }

    /// Enable or disable the RX interrupts (RX ready and overrun).
    pub fn set_rx_irq(&mut self, on: bool) {
        self.set_ucr1(UCR1_RRDYEN, on);
        let v = self.regs.read32(UCR4);
        self.regs
            .write32(UCR4, if on { v | UCR4_OREN } else { v & !UCR4_OREN });
    }

    /// Enable or disable the TX-ready interrupt. Enable it only while bytes
    /// are pending: it fires whenever the FIFO is below the trigger level.
    pub fn set_tx_irq(&mut self, on: bool) {
        self.set_ucr1(UCR1_TRDYEN, on);
    }

    /// Decode and acknowledge an interrupt. RRDY and TRDY are level
    /// conditions cleared by draining/filling the FIFOs; ORE and BRCD are
    /// write-one-to-clear and are acknowledged here.
    pub fn handle_irq(&mut self) -> IrqEvents {
        let ucr1 = self.regs.read32(UCR1);
        let usr1 = self.regs.read32(USR1);
        let usr2 = self.regs.read32(USR2);
        let ack = usr2 & (USR2_ORE | USR2_BRCD);
        if ack != 0 {
            self.regs.write32(USR2, ack);
        }
        IrqEvents {
            rx_ready: usr1 & USR1_RRDY != 0 || usr2 & USR2_RDR != 0,
            tx_ready: ucr1 & UCR1_TRDYEN != 0 && usr1 & USR1_TRDY != 0,
            overrun: usr2 & USR2_ORE != 0,
            brk: usr2 & USR2_BRCD != 0,
        }
    }
}
