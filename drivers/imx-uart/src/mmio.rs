//! Register access: the shared [`drv_mmio`] types, for this device's window.

pub use drv_mmio::{Mmio, VolatileMmio};
