//! Board facts: RAM, device windows, interrupt ranges and cores of every board
//! Bulkhead supports.
//!
//! This crate holds chip and board facts only — no system composition — so
//! that the checker (`bulkhead check --board B`), the composer and the board
//! wiring of each image read one table. Each board lives in its own module;
//! [`BOARDS`] is the explicit registry (no name-based discovery).
//!
//! ```
//! let b = bulkhead_boards::board("qemu_virt_aarch64").unwrap();
//! assert!(b.ram_contains(0x4000_0000, 0x1000));
//! ```
#![no_std]
#![forbid(unsafe_code)]

pub mod host;
pub mod imx8mm_evk;
pub mod imx8mp_evk;
pub mod qemu_virt_aarch64;

/// A physical address range `[base, base + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Range {
    /// One past the last byte, saturating at `u64::MAX`.
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether `[base, base + size)` lies wholly inside this range.
    pub const fn contains(&self, base: u64, size: u64) -> bool {
        match base.checked_add(size) {
            Some(end) => base >= self.base && end <= self.end(),
            None => false,
        }
    }
}

/// What kind of thing a device window is (for reports and DMA analysis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Interrupt controller (GIC distributor, redistributor, CPU interface).
    InterruptController,
    /// Serial port.
    Uart,
    /// virtio-mmio transport slot.
    VirtioMmio,
    /// Block storage controller (SD/eMMC).
    Storage,
    /// Ethernet MAC.
    Ethernet,
    /// CAN controller.
    Can,
    /// Audio interface.
    Audio,
    /// PCIe configuration space (ECAM) or BAR window.
    Pcie,
    /// Anything else (timers, clocks, pin muxing, ...).
    Other,
}

/// A device register window on a board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// Short name, as the board's device tree or reference manual calls it.
    pub name: &'static str,
    /// Kind of device.
    pub kind: DeviceKind,
    /// Register window.
    pub window: Range,
    /// Interrupt numbers (GIC INTIDs, i.e. DT SPI + 32) the device raises.
    pub irqs: &'static [u64],
    /// Whether the device can master the bus (DMA) on this board.
    pub dma: bool,
    /// Whether an IOMMU confines that DMA.
    pub iommu: bool,
}

/// Interrupt controller generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gic {
    /// GICv2.
    V2,
    /// GICv3.
    V3,
}

/// Facts about one board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    /// The Microkit board name (`MICROKIT_BOARD`), or `host`.
    pub name: &'static str,
    /// One line for humans.
    pub description: &'static str,
    /// RAM banks usable by PDs (kernel and loader carve-outs excluded only
    /// where the board documents them).
    pub ram: &'static [Range],
    /// Device register windows.
    pub devices: &'static [Device],
    /// Lowest and highest interrupt number a PD may claim (inclusive).
    pub irq_range: (u64, u64),
    /// Interrupts inside [`Board::irq_range`] that the kernel keeps for
    /// itself, so no PD may claim them.
    pub reserved_irqs: &'static [u64],
    /// Number of CPU cores the SMP configs use; non-SMP configs use one.
    pub cores: u32,
    /// Interrupt controller.
    pub gic: Option<Gic>,
    /// The top of a PD's user virtual address space (the IPC buffer page
    /// sits just below it; the stack below that).
    pub user_vaddr_top: u64,
    /// Whether images for this board run as a hypervisor (EL2) in the
    /// default configs, so PDs may own virtual machines.
    pub hypervisor: bool,
    /// Physical address-space width in bits (a `phys_addr` must fit).
    pub pa_bits: u32,
}

/// A Microkit kernel configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Base flavour.
    pub kind: ConfigKind,
    /// The `smp-` form.
    pub smp: bool,
}

/// Base flavour of a Microkit configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// `debug`: kernel printing, extra invocation labels.
    Debug,
    /// `release`.
    Release,
    /// `benchmark`.
    Benchmark,
}

impl Config {
    /// Parse `debug`, `release`, `benchmark` or their `smp-` forms.
    pub fn parse(s: &str) -> Option<Config> {
        let (smp, base) = match s.strip_prefix("smp-") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let kind = match base {
            "debug" => ConfigKind::Debug,
            "release" => ConfigKind::Release,
            "benchmark" => ConfigKind::Benchmark,
            _ => return None,
        };
        Some(Config { kind, smp })
    }

    /// The names [`Config::parse`] accepts.
    pub const NAMES: &'static [&'static str] = &[
        "debug",
        "release",
        "benchmark",
        "smp-debug",
        "smp-release",
        "smp-benchmark",
    ];
}

impl Board {
    /// Cores available under `config`.
    pub fn cores_for(&self, config: Config) -> u32 {
        if config.smp {
            self.cores
        } else {
            1
        }
    }

    /// Whether `[base, base + size)` lies wholly in one RAM bank.
    pub fn ram_contains(&self, base: u64, size: u64) -> bool {
        self.ram.iter().any(|r| r.contains(base, size))
    }

    /// The device whose window wholly contains `[base, base + size)`.
    pub fn device_containing(&self, base: u64, size: u64) -> Option<&'static Device> {
        self.devices.iter().find(|d| d.window.contains(base, size))
    }

    /// Whether a PD may claim interrupt `irq` on this board (inside
    /// [`Board::irq_range`]; always false on a board whose range is empty,
    /// i.e. whose low bound exceeds its high bound, like `host`).
    pub fn irq_claimable(&self, irq: u64) -> bool {
        let (lo, hi) = self.irq_range;
        lo <= irq && irq <= hi && !self.reserved_irqs.contains(&irq)
    }

    /// Whether `addr` fits in this board's physical address space
    /// ([`Board::pa_bits`] wide; nothing fits when it is 0).
    pub fn pa_fits(&self, addr: u64) -> bool {
        self.pa_bits >= 64 || (self.pa_bits > 0 && addr >> self.pa_bits == 0)
    }
}

/// A device table entry with no IOMMU (none of our boards confines DMA with
/// one; each board module says why).
pub(crate) const fn device(
    name: &'static str,
    kind: DeviceKind,
    base: u64,
    size: u64,
    irqs: &'static [u64],
    dma: bool,
) -> Device {
    Device {
        name,
        kind,
        window: Range { base, size },
        irqs,
        dma,
        iommu: false,
    }
}

/// Every supported board, in the order `--help` lists them.
pub const BOARDS: &[&Board] = &[
    &qemu_virt_aarch64::BOARD,
    &imx8mp_evk::BOARD,
    &imx8mm_evk::BOARD,
    &host::BOARD,
];

/// The board named `name`.
pub fn board(name: &str) -> Option<&'static Board> {
    BOARDS.iter().copied().find(|b| b.name == name)
}

#[cfg(test)]
mod tests;
