//! One decoded guest access to device memory.

/// Read or write, with what the backend must know to complete it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    /// A load; the value goes to general-purpose register `reg` (the
    /// backend writes it back, zero-extended, before resuming the vCPU).
    Read {
        /// Destination register number (arch-specific; 31 is XZR on aarch64).
        reg: u8,
    },
    /// A store of `value` (already truncated to the access width).
    Write {
        /// The stored value.
        value: u64,
    },
}

/// A guest access to an address that faulted into the VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioAccess {
    /// Guest-physical address.
    pub gpa: u64,
    /// Width in bytes: 1, 2, 4 or 8.
    pub width: u8,
    /// Load or store.
    pub kind: AccessKind,
}

impl MmioAccess {
    /// A `width`-byte load at `gpa` into register 0.
    pub fn read(gpa: u64, width: u8) -> MmioAccess {
        MmioAccess {
            gpa,
            width,
            kind: AccessKind::Read { reg: 0 },
        }
    }

    /// A `width`-byte store of `value` at `gpa`.
    pub fn write(gpa: u64, width: u8, value: u64) -> MmioAccess {
        MmioAccess {
            gpa,
            width,
            kind: AccessKind::Write { value },
        }
    }

    /// Whether the width is one the hardware can produce.
    pub fn width_valid(&self) -> bool {
        matches!(self.width, 1 | 2 | 4 | 8)
    }
}
