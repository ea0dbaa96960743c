//! A controller whose registers read back garbage (a broken or hostile
//! device, a wrong mapping) must give typed errors, never a panic or a hang.

use drv_imx_usdhc::regs::Reg;
use drv_imx_usdhc::{Mmio, Usdhc};

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
    for seed in 1..200u64 {
        let mut sd = Usdhc::new(
            Garbage(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            200_000_000,
        );
        let init = sd.init();
        let mut buf = vec![0u8; 1024];
        // Whatever init said, I/O must return (Ok only if init succeeded).
        let r = sd.read_blocks(0, &mut buf);
        if init.is_err() {
            assert!(r.is_err());
        }
        let _ = sd.write_blocks(1, &buf);
    }
}
