//! A UART whose registers read back garbage must not panic or hang the driver.

use drv_imx_uart::regs::Reg;
use drv_imx_uart::{Config, Mmio, Uart};

/// Every read returns the next xorshift value; writes are dropped.
struct Garbage(u64);

impl Mmio for Garbage {
    fn read32(&mut self, _r: Reg) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // Take 32 of the 64 bits.
        #[allow(clippy::cast_possible_truncation)]
        let v = (self.0 >> 16) as u32;
        v
    }
    fn write32(&mut self, _r: Reg, _v: u32) {}
}

#[test]
fn garbage_registers_never_panic() {
    for seed in 1..500u64 {
        let mut u = Uart::new(Garbage(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let _ = u.init(&Config::console(24_000_000));
        let _ = u.write(&[0u8; 64]);
        let mut buf = [0u8; 64];
        assert!(u.read(&mut buf) <= 64);
        let _ = u.handle_irq();
        let _ = u.read_byte();
    }
}
