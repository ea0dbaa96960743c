//! NXP i.MX 8M Plus EVK as Microkit's `imx8mp_evk` board (also QEMU 10's
//! `-M imx8mp-evk`, which models GICv3, the UARTs, FEC, uSDHC and PCIe but no
//! FlexCAN or SAI).
//!
//! Sources (facts only, no code copied):
//! - seL4 `tools/dts/imx8mp-evk.dts` (the Linux `imx8mp-evk.dts` /
//!   `imx8mp.dtsi` flattened by seL4's `update-dts.sh`) and
//!   `src/plat/imx8m-evk/overlay-imx8mp-evk.dts` (deletes the Linux-only
//!   reserved-memory nodes), `src/plat/imx8m-evk/config.cmake`
//!   (`IMX8M_MAX_IRQ` 192), seL4/seL4@1326364. Addresses are the `reg`
//!   properties; IRQs are the DT SPI numbers + 32.
//! - Microkit `build_sdk.py` (board `imx8mp_evk`: cortex-a53, `smp_cores`
//!   4), seL4/microkit@cfd5216.
//! - Cross-checked against QEMU 10.0.2's `-M imx8mp-evk` (`info mtree`):
//!   GIC, UARTs, uSDHCs, FEC, GPTs, I2Cs, FlexCAN and SAI placeholders and
//!   PCIe sit at the addresses below.
//! - `shared/reference/automotive.md` (FlexCAN1 SPI 142; WM8960 codec on
//!   I2C3 via SAI3).
//!
//! No IOMMU: the i.MX 8M Plus has no SMMU in front of its peripherals (the
//! SoC's DT has no `iommus` properties and no SMMU node); bus masters
//! (uSDHC ADMA, FEC and EQOS DMA, PCIe) reach all of DRAM. The UARTs and SAIs
//! are not bus masters themselves: their DMA goes through the SDMA engines,
//! which no reference system gives to a PD, so they count as `dma: false`.

use crate::{device, Board, Device, DeviceKind, Gic, Range};

use DeviceKind::{Audio, Can, Ethernet, InterruptController, Other, Pcie, Storage, Uart};

/// Device windows.
const DEVICES: &[Device] = &[
    // GIC-600: distributor and redistributors; the kernel's.
    device(
        "gic_dist",
        InterruptController,
        0x3880_0000,
        0x1_0000,
        &[],
        false,
    ),
    device(
        "gic_redist",
        InterruptController,
        0x3888_0000,
        0xc_0000,
        &[],
        false,
    ),
    // General-purpose timers 1..3 (SPIs 55, 54, 53).
    device("gpt1", Other, 0x302d_0000, 0x1_0000, &[87], false),
    device("gpt2", Other, 0x302e_0000, 0x1_0000, &[86], false),
    device("gpt3", Other, 0x302f_0000, 0x1_0000, &[85], false),
    // System counter (SPI 47).
    device("sysctr", Other, 0x306a_0000, 0x2_0000, &[79], false),
    // UARTs. UART2 is the EVK's debug port and the kernel's console in
    // debug configs. Note the address order: UART3 sits below UART2.
    device("uart1", Uart, 0x3086_0000, 0x1_0000, &[58], false),
    device("uart3", Uart, 0x3088_0000, 0x1_0000, &[60], false),
    device("uart2", Uart, 0x3089_0000, 0x1_0000, &[59], false),
    // FlexCAN1 (SPI 142) and FlexCAN2 (SPI 144): message buffers live in
    // the controller, no DMA.
    device("flexcan1", Can, 0x308c_0000, 0x1_0000, &[174], false),
    device("flexcan2", Can, 0x308d_0000, 0x1_0000, &[176], false),
    // I2C1..4 (SPIs 35..38); I2C3 carries the WM8960 codec at 0x1a.
    device("i2c1", Other, 0x30a2_0000, 0x1_0000, &[67], false),
    device("i2c2", Other, 0x30a3_0000, 0x1_0000, &[68], false),
    device("i2c3", Other, 0x30a4_0000, 0x1_0000, &[69], false),
    device("i2c4", Other, 0x30a5_0000, 0x1_0000, &[70], false),
    device("uart4", Uart, 0x30a6_0000, 0x1_0000, &[61], false),
    // uSDHC1..3 (SPIs 22..24); on the EVK uSDHC2 is the SD slot and uSDHC3
    // the eMMC. ADMA makes them bus masters.
    device("usdhc1", Storage, 0x30b4_0000, 0x1_0000, &[54], true),
    device("usdhc2", Storage, 0x30b5_0000, 0x1_0000, &[55], true),
    device("usdhc3", Storage, 0x30b6_0000, 0x1_0000, &[56], true),
    // FEC (ENET1), SPIs 118..121 (queue 1, queue 2, main, PPS).
    device(
        "fec1",
        Ethernet,
        0x30be_0000,
        0x1_0000,
        &[150, 151, 152, 153],
        true,
    ),
    // ENET-QoS (EQOS), SPIs 134 and 135 (PMT wake, main).
    device("eqos", Ethernet, 0x30bf_0000, 0x1_0000, &[166, 167], true),
    // SAIs in AUDIOMIX (there is no SAI4 on this SoC). SAI5 and SAI6 share
    // SPI 90: only one PD can own INTID 122, so at most one of them is used.
    device("sai1", Audio, 0x30c1_0000, 0x1_0000, &[127], false),
    device("sai2", Audio, 0x30c2_0000, 0x1_0000, &[128], false),
    device("sai3", Audio, 0x30c3_0000, 0x1_0000, &[82], false),
    device("sai5", Audio, 0x30c5_0000, 0x1_0000, &[122], false),
    device("sai6", Audio, 0x30c6_0000, 0x1_0000, &[122], false),
    device("sai7", Audio, 0x30c8_0000, 0x1_0000, &[143], false),
    // PCIe controller (DBI registers, SPI 140) and its configuration window.
    device("pcie_dbi", Pcie, 0x3380_0000, 0x40_0000, &[172], true),
    device("pcie_config", Pcie, 0x1ff0_0000, 0x8_0000, &[], false),
];

/// The board.
pub static BOARD: Board = Board {
    name: "imx8mp_evk",
    description: "NXP i.MX 8M Plus EVK, 4x Cortex-A53, GICv3, 6 GiB",
    // The DT's memory node: 3 GiB at 0x4000_0000 and 3 GiB at 4 GiB. The
    // Linux-only reserved-memory carve-outs (DSP, rpmsg vrings) are deleted
    // by seL4's overlay, so all of it is available. The two banks are
    // adjacent; they stay separate entries, as in the DT (and in the
    // kernel's memory list), so a fixed region must not straddle 4 GiB.
    ram: &[
        Range {
            base: 0x4000_0000,
            size: 0xc000_0000,
        },
        Range {
            base: 0x1_0000_0000,
            size: 0xc000_0000,
        },
    ],
    devices: DEVICES,
    // Up to seL4's MAX_IRQ (192) for this SoC.
    // PPIs 16..=31 are per-core; seL4 (hypervisor configs) keeps 25 (VGIC
    // maintenance), 26 (EL2 physical timer, the kernel's tick) and 27 (the
    // virtual timer, delivered to VMMs as vPPI events). The others, e.g. the
    // EL1 physical timer (30) that sDDF's timer driver claims, are a PD's to
    // claim. SGIs (0..=15) never are.
    irq_range: (16, 192),
    reserved_irqs: &[25, 26, 27],
    cores: 4,
    gic: Some(Gic::V3),
    user_vaddr_top: 1 << 40,
    hypervisor: true,
    pa_bits: 40,
};
