//! Which board device serves each device class: the one composition choice
//! per board (which UART, which SD controller, which virtio transport).
//! Addresses and IRQs come from `bulkhead_boards`; only the choice is here.
//!
//! ```
//! use bulkhead_compose::{boards::binding, Class};
//! let b = bulkhead_boards::board("imx8mp_evk").unwrap();
//! let can = binding(b, Class::Can, None).unwrap();
//! assert_eq!(can.windows[0].region, "flexcan1_regs");
//! assert!(binding(bulkhead_boards::board("imx8mm_evk").unwrap(), Class::Can, None).is_err());
//! ```

use bulkhead_boards::{qemu_virt_aarch64 as qemu, Board, DeviceKind};

use crate::Class;

/// One device window a driver maps, with its IRQs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Memory region name (`<device>_regs`, or a fixed name like `pcie_ecam`).
    pub region: String,
    /// Physical address.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// GIC INTIDs, in the order the driver numbers them (channel id 1, 2, …).
    pub irqs: Vec<u64>,
    /// Edge-triggered (virtio-mmio transports) rather than level.
    pub edge: bool,
}

/// The devices behind one class's driver on one board.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Binding {
    /// Register windows (empty on the host board).
    pub windows: Vec<Window>,
    /// Bytes of DMA descriptor memory, when the device is a bus master that
    /// needs it.
    pub dma: Option<u64>,
}

/// DMA descriptor memory per class for a bus-master device (virtqueues,
/// ADMA tables, FEC buffer descriptors). CAN never needs any: FlexCAN keeps
/// frames in its mailboxes and the CTU CAN FD card does no DMA.
fn dma_size(class: Class) -> Option<u64> {
    match class {
        Class::Blk | Class::Snd => Some(0x4000),
        Class::Eth => Some(0x1_0000),
        Class::Serial | Class::Can => None,
    }
}

fn kind_of(class: Class) -> DeviceKind {
    match class {
        Class::Serial => DeviceKind::Uart,
        Class::Blk => DeviceKind::Storage,
        Class::Eth => DeviceKind::Ethernet,
        Class::Can => DeviceKind::Can,
        Class::Snd => DeviceKind::Audio,
    }
}

/// A board device as a whole-window binding.
fn named(board: &Board, class: Class, names: &[&str]) -> Result<Binding, String> {
    let mut windows = Vec::new();
    let mut dma = None;
    for (i, n) in names.iter().enumerate() {
        let d = board
            .devices
            .iter()
            .find(|d| d.name == *n)
            .ok_or_else(|| format!("board {} has no device `{n}`", board.name))?;
        if i == 0 && d.dma {
            dma = dma_size(class);
        }
        windows.push(Window {
            region: format!("{n}_regs"),
            paddr: d.window.base,
            size: d.window.size,
            irqs: d.irqs.to_vec(),
            edge: false,
        });
    }
    Ok(Binding { windows, dma })
}

/// A QEMU virtio-mmio transport: its whole page (the smallest mappable
/// window), named `region`, with its one edge-triggered IRQ.
fn virtio(slot: u64, region: &str, class: Class) -> Result<Binding, String> {
    let (base, irq) = qemu::virtio_mmio_slot(slot).ok_or("no such virtio-mmio slot")?;
    Ok(Binding {
        windows: vec![Window {
            region: region.into(),
            paddr: base & !0xfff,
            size: 0x1000,
            irqs: vec![irq],
            edge: true,
        }],
        dma: dma_size(class),
    })
}

/// The devices serving `class` on `board`; `controller` picks a board
/// device by name instead of the default (CAN grants may name one). An error
/// says why the board cannot serve the class.
pub fn binding(board: &Board, class: Class, controller: Option<&str>) -> Result<Binding, String> {
    if board.name == "host" {
        // Host resources come from the host-binding file, not windows.
        return Ok(Binding::default());
    }
    if let Some(ctl) = controller {
        let kind = kind_of(class);
        let ok = board
            .devices
            .iter()
            .any(|d| d.name == ctl && d.kind == kind);
        if board.name == "qemu_virt_aarch64" && class == Class::Can && ctl == "ctucan" {
            return binding(board, class, None);
        }
        if !ok {
            let names: Vec<&str> = board
                .devices
                .iter()
                .filter(|d| d.kind == kind)
                .map(|d| d.name)
                .collect();
            return Err(format!(
                "board {} has no {} named `{ctl}` (it has: {})",
                board.name,
                class.human(),
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ));
        }
        return named(board, class, &[ctl]);
    }
    match (board.name, class) {
        // QEMU virt: each virtio device on a transport in a page of its own
        // (`-device ...,bus=virtio-mmio-bus.N`): blk 31, net 23, sound 15.
        ("qemu_virt_aarch64", Class::Serial) => named(board, class, &["pl011"]),
        ("qemu_virt_aarch64", Class::Blk) => virtio(31, "virtio_blk_regs", class),
        ("qemu_virt_aarch64", Class::Eth) => virtio(23, "virtio_net_regs", class),
        ("qemu_virt_aarch64", Class::Snd) => virtio(15, "virtio_snd_regs", class),
        // The CTU CAN FD card at 00:01.0 (`-device ctucan_pci,addr=1`): the
        // ECAM of bus 0 (1 MiB) and 1 MiB of the 32-bit window for its BARs;
        // it raises INTA of slot 1.
        ("qemu_virt_aarch64", Class::Can) => {
            let ecam = board
                .devices
                .iter()
                .find(|d| d.name == "pcie_ecam")
                .ok_or("no pcie_ecam")?;
            let bars = board
                .devices
                .iter()
                .find(|d| d.name == "pcie_mmio")
                .ok_or("no pcie_mmio")?;
            let irq = qemu::pcie_intx_intid(1, 1).ok_or("no INTA")?;
            Ok(Binding {
                windows: vec![
                    Window {
                        region: "pcie_ecam".into(),
                        paddr: ecam.window.base,
                        size: 0x10_0000,
                        irqs: vec![irq],
                        edge: false,
                    },
                    Window {
                        region: "pcie_bars".into(),
                        paddr: bars.window.base,
                        size: 0x10_0000,
                        irqs: vec![],
                        edge: false,
                    },
                ],
                dma: None,
            })
        }
        // The i.MX8M EVKs: UART2 is the debug port, uSDHC3 the eMMC, FEC the
        // Ethernet, SAI3 the audio (plus I2C3 for the i.MX8MP's WM8960).
        ("imx8mp_evk" | "imx8mm_evk", Class::Serial) => named(board, class, &["uart2"]),
        ("imx8mp_evk" | "imx8mm_evk", Class::Blk) => named(board, class, &["usdhc3"]),
        ("imx8mp_evk" | "imx8mm_evk", Class::Eth) => named(board, class, &["fec1"]),
        ("imx8mp_evk", Class::Can) => named(board, class, &["flexcan1"]),
        ("imx8mp_evk", Class::Snd) => named(board, class, &["sai3", "i2c3"]),
        ("imx8mm_evk", Class::Snd) => named(board, class, &["sai3"]),
        _ => Err(format!(
            "board {} has no {} device",
            board.name,
            class.human()
        )),
    }
}
