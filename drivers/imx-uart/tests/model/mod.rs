//! A register-level model of the i.MX UART: 32-entry FIFOs, status bits,
//! write-one-to-clear USR2 bits, the interrupt line, and SRST.
#![allow(dead_code)]
// An access to a register the model does not know is a test failure.
#![allow(clippy::panic)]

use drv_imx_uart::regs::*;
use drv_imx_uart::Mmio;
use std::collections::VecDeque;

/// The model; `wire` collects what the transmitter shifted out.
#[derive(Default)]
pub struct UartModel {
    pub ucr: [u32; 4],
    pub ufcr: u32,
    pub ubir: u32,
    pub ubmr: u32,
    pub usr2_w1c: u32,
    pub tx: VecDeque<u8>,
    pub rx: VecDeque<u32>,
    pub wire: Vec<u8>,
    pending_overrun: bool,
    /// Reads of UCR2 left before SRST completes.
    pub reset_reads: u32,
    /// Register writes, in order, as (offset, value).
    pub log: Vec<(usize, u32)>,
}

impl UartModel {
    fn rxtl(&self) -> usize {
        (self.ufcr & UFCR_RXTL_MASK) as usize
    }
    fn txtl(&self) -> usize {
        ((self.ufcr >> UFCR_TXTL_SHIFT) & 0x3F) as usize
    }
    /// The transmitter shifts out up to `n` characters (if enabled).
    pub fn shift(&mut self, n: usize) {
        if self.ucr[0] & UCR1_UARTEN == 0 || self.ucr[1] & UCR2_TXEN == 0 {
            return;
        }
        for _ in 0..n {
            match self.tx.pop_front() {
                Some(b) => self.wire.push(b),
                None => break,
            }
        }
    }
    /// A character arrives with URXD error bits `flags`.
    pub fn receive(&mut self, b: u8, flags: u32) {
        if self.rx.len() == FIFO_DEPTH {
            self.usr2_w1c |= USR2_ORE;
            self.pending_overrun = true;
            return;
        }
        let mut v = URXD_CHARRDY | u32::from(b) | flags;
        if self.pending_overrun {
            v |= URXD_OVRRUN;
            self.pending_overrun = false;
        }
        if flags & URXD_BRK != 0 {
            self.usr2_w1c |= USR2_BRCD;
        }
        if v & (URXD_OVRRUN | URXD_FRMERR | URXD_BRK | URXD_PRERR) != 0 {
            v |= URXD_ERR;
        }
        self.rx.push_back(v);
    }
    fn usr1(&self) -> u32 {
        let mut v = 0;
        if self.tx.len() < self.txtl() {
            v |= USR1_TRDY;
        }
        if self.rxtl() > 0 && self.rx.len() >= self.rxtl() {
            v |= USR1_RRDY;
        }
        v
    }
    fn usr2(&self) -> u32 {
        let mut v = self.usr2_w1c;
        if self.tx.is_empty() {
            v |= USR2_TXFE | USR2_TXDC;
        }
        if !self.rx.is_empty() {
            v |= USR2_RDR;
        }
        v
    }
    /// The interrupt line, as the GIC sees it.
    pub fn irq(&self) -> bool {
        let (u1, u4) = (self.ucr[0], self.ucr[3]);
        (u1 & UCR1_RRDYEN != 0 && self.usr1() & USR1_RRDY != 0)
            || (u1 & UCR1_TRDYEN != 0 && self.usr1() & USR1_TRDY != 0)
            || (u4 & UCR4_OREN != 0 && self.usr2_w1c & USR2_ORE != 0)
    }
}

impl Mmio for UartModel {
    fn read32(&mut self, r: Reg) -> u32 {
        match r {
            URXD => self.rx.pop_front().unwrap_or(0),
            UCR1 => self.ucr[0],
            UCR2 => {
                if self.reset_reads > 0 {
                    self.reset_reads -= 1;
                    self.ucr[1] & !UCR2_SRST
                } else {
                    self.ucr[1] | UCR2_SRST
                }
            }
            UCR3 => self.ucr[2],
            UCR4 => self.ucr[3],
            UFCR => self.ufcr,
            USR1 => self.usr1(),
            USR2 => self.usr2(),
            UBIR => self.ubir,
            UBMR => self.ubmr,
            UTS => {
                let mut v = 0;
                if self.tx.len() == FIFO_DEPTH {
                    v |= UTS_TXFULL;
                }
                if self.rx.is_empty() {
                    v |= UTS_RXEMPTY;
                }
                v
            }
            other => panic!("read of unmodelled register {:#x}", other.offset()),
        }
    }

    fn write32(&mut self, r: Reg, v: u32) {
        self.log.push((r.offset(), v));
        match r {
            UTXD => {
                // A write to a full FIFO is lost, as on the hardware.
                if self.tx.len() < FIFO_DEPTH {
                    self.tx.push_back((v & 0xFF) as u8);
                }
            }
            UCR1 => self.ucr[0] = v,
            UCR2 => {
                if v & UCR2_SRST == 0 {
                    self.tx.clear();
                    self.rx.clear();
                    self.usr2_w1c = 0;
                    self.reset_reads = 3;
                }
                self.ucr[1] = v;
            }
            UCR3 => self.ucr[2] = v,
            UCR4 => self.ucr[3] = v,
            UFCR => self.ufcr = v,
            USR2 => self.usr2_w1c &= !v,
            UBIR => self.ubir = v,
            UBMR => self.ubmr = v,
            other => panic!("write of unmodelled register {:#x}", other.offset()),
        }
    }
}
