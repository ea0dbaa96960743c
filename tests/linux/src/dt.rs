//! What a composed guest device tree (`bulkhead compose`'s
//! `system/*/*/<guest>.dtb`) gives the guest, read back with the `fdt`
//! crate, and which of QEMU `virt`'s own virtio-mmio transports sits at each
//! of its windows — so plain QEMU can stand in for the VMM.
//!
//! ```no_run
//! let dtb = std::fs::read("system/automotive/qemu_virt_aarch64/cluster.dtb").unwrap();
//! let g = bulkhead_linux_tests::dt::GuestDt::parse(&dtb).unwrap();
//! for w in &g.virtio {
//!     println!("{:#x} SPI {} = virt transport {:?}", w.base, w.spi, w.qemu_virt_transport());
//! }
//! ```

use bulkhead_boards::qemu_virt_aarch64 as virt;

/// One virtio-mmio window of the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioWindow {
    /// Guest-physical base.
    pub base: u64,
    /// Bytes.
    pub size: u64,
    /// GIC SPI number (INTID − 32).
    pub spi: u32,
}

impl VirtioWindow {
    /// The index `N` of QEMU `virt`'s transport (`bus=virtio-mmio-bus.N`) at
    /// exactly this base, size and interrupt, if there is one.
    pub fn qemu_virt_transport(&self) -> Option<u64> {
        (0..virt::VIRTIO_MMIO_SLOTS).find(|&n| {
            virt::virtio_mmio_slot(n) == Some((self.base, u64::from(self.spi) + 32))
                && self.size == virt::VIRTIO_MMIO_SLOT_SIZE
        })
    }
}

/// A guest's device tree, as far as booting it is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDt {
    /// RAM: `(base, size)`, one region.
    pub ram: (u64, u64),
    /// virtio-mmio windows, in device-tree order.
    pub virtio: Vec<VirtioWindow>,
    /// `/chosen/bootargs`, empty if none.
    pub bootargs: String,
    /// `/psci/method` (`hvc` or `smc`), if the tree has a PSCI node.
    pub psci_method: Option<String>,
}

/// Why a device tree is not a guest device tree we can boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtError {
    /// The `fdt` crate rejects it.
    Fdt(String),
    /// No memory node, or not exactly one RAM region.
    Memory,
    /// A `reg` cell wider than 64 bits, or missing, in this node.
    Reg(String),
    /// A virtio-mmio node's `interrupts` is not one SPI triplet.
    Interrupts(String),
}

impl std::fmt::Display for DtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fdt(e) => write!(f, "not a device tree: {e}"),
            Self::Memory => write!(f, "not exactly one RAM region"),
            Self::Reg(n) => write!(f, "{n}: bad or missing reg"),
            Self::Interrupts(n) => write!(f, "{n}: interrupts is not one SPI"),
        }
    }
}

impl std::error::Error for DtError {}

fn be(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 8 {
        return None;
    }
    Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn regs(node: fdt::node::FdtNode<'_, '_>) -> Result<Vec<(u64, u64)>, DtError> {
    let bad = || DtError::Reg(node.name.to_owned());
    node.raw_reg()
        .ok_or_else(bad)?
        .map(|r| Some((be(r.address)?, be(r.size)?)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)
}

impl GuestDt {
    /// Reads `dtb`.
    pub fn parse(dtb: &[u8]) -> Result<Self, DtError> {
        let fdt = fdt::Fdt::new(dtb).map_err(|e| DtError::Fdt(format!("{e:?}")))?;
        let mem = fdt.find_node("/memory").ok_or(DtError::Memory)?;
        let ram = match regs(mem)?.as_slice() {
            [r] => *r,
            _ => return Err(DtError::Memory),
        };
        let mut virtio = Vec::new();
        for node in fdt.all_nodes() {
            let is_virtio = node
                .compatible()
                .is_some_and(|c| c.all().any(|s| s == "virtio,mmio"));
            if !is_virtio {
                continue;
            }
            let (base, size) = match regs(node)?.as_slice() {
                [r] => *r,
                _ => return Err(DtError::Reg(node.name.to_owned())),
            };
            let irq = node
                .property("interrupts")
                .map(|p| p.value)
                .ok_or_else(|| DtError::Interrupts(node.name.to_owned()))?;
            let cell = |i: usize| irq.get(4 * i..4 * i + 4).and_then(be);
            let spi = match (irq.len(), cell(0), cell(1)) {
                (12, Some(0), Some(n)) => u32::try_from(n).ok(),
                _ => None,
            }
            .ok_or_else(|| DtError::Interrupts(node.name.to_owned()))?;
            virtio.push(VirtioWindow { base, size, spi });
        }
        let psci_method = fdt
            .find_node("/psci")
            .and_then(|n| n.property("method"))
            .and_then(|p| p.as_str())
            .map(str::to_owned);
        Ok(Self {
            ram,
            virtio,
            bootargs: fdt.chosen().bootargs().unwrap_or("").to_owned(),
            psci_method,
        })
    }

    /// The `-machine` QEMU needs to answer this guest's PSCI calls itself:
    /// QEMU's `virt` takes PSCI calls over `hvc` when it boots the kernel at
    /// EL1 and over `smc` when it has EL2 (`virtualization=on`) and boots
    /// the kernel there.
    pub fn qemu_virt_machine(&self) -> &'static str {
        match self.psci_method.as_deref() {
            Some("smc") => "virt,virtualization=on",
            _ => "virt",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_map_to_virt_transports_only_when_everything_matches() {
        let w = |base, size, spi| VirtioWindow { base, size, spi };
        assert_eq!(w(0x0a00_0000, 0x200, 16).qemu_virt_transport(), Some(0));
        assert_eq!(w(0x0a00_0200, 0x200, 17).qemu_virt_transport(), Some(1));
        assert_eq!(w(0x0a00_3e00, 0x200, 47).qemu_virt_transport(), Some(31));
        // Right address, wrong interrupt / size; past the last transport.
        assert_eq!(w(0x0a00_0200, 0x200, 16).qemu_virt_transport(), None);
        assert_eq!(w(0x0a00_0000, 0x1000, 16).qemu_virt_transport(), None);
        assert_eq!(w(0x0a00_4000, 0x200, 48).qemu_virt_transport(), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(GuestDt::parse(b"not a dtb"), Err(DtError::Fdt(_))));
        assert!(GuestDt::parse(&[]).is_err());
    }

    #[test]
    fn reads_the_composed_cluster_guest() {
        let dtb = std::fs::read(
            crate::repo_root().join("system/automotive/qemu_virt_aarch64/cluster.dtb"),
        )
        .unwrap();
        let g = GuestDt::parse(&dtb).unwrap();
        assert_eq!(g.ram.0, 0x4000_0000);
        assert!(g.ram.1 >= 64 << 20, "RAM {:#x}", g.ram.1);
        assert!(g.virtio.len() >= 2);
        // Window c is QEMU's transport c: class 0 console, class 1 block.
        for (c, w) in g.virtio.iter().enumerate() {
            assert_eq!(w.qemu_virt_transport(), Some(c as u64), "{w:?}");
        }
        assert!(g.bootargs.contains("console=hvc0"), "{}", g.bootargs);
        assert!(matches!(g.psci_method.as_deref(), Some("hvc" | "smc")));
    }

    #[test]
    fn psci_conduit_picks_the_machine() {
        let mut g = GuestDt {
            ram: (0x4000_0000, 128 << 20),
            virtio: Vec::new(),
            bootargs: String::new(),
            psci_method: Some("hvc".into()),
        };
        assert_eq!(g.qemu_virt_machine(), "virt");
        g.psci_method = Some("smc".into());
        assert_eq!(g.qemu_virt_machine(), "virt,virtualization=on");
    }
}
