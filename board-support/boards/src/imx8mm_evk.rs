//! NXP i.MX 8M Mini EVK as Microkit's `imx8mm_evk` board. Unlike the
//! i.MX 8M Plus it has no FlexCAN and no ENET-QoS.
//!
//! Sources (facts only, no code copied):
//! - seL4 `tools/dts/imx8mm-evk.dts` (the Linux `imx8mm-evk.dts` /
//!   `imx8mm.dtsi` flattened by seL4's `update-dts.sh`),
//!   `src/plat/imx8m-evk/overlay-imx8mm-evk.dts` (adds GPT1/GPT2, which the
//!   Linux DT lacks) and `src/plat/imx8m-evk/config.cmake` (`IMX8M_MAX_IRQ`
//!   160), seL4/seL4@1326364. Addresses are the `reg` properties; IRQs are
//!   the DT SPI numbers + 32.
//! - Microkit `build_sdk.py` (board `imx8mm_evk`: cortex-a53, `smp_cores`
//!   4), seL4/microkit@cfd5216.
//! - `shared/reference/automotive.md` (WM8524 DAC on SAI3, no CAN).
//!
//! No IOMMU: the i.MX 8M Mini has no SMMU; bus masters (uSDHC ADMA, FEC DMA)
//! reach all of DRAM. UARTs and SAIs use the SDMA engines for DMA, which no
//! reference system gives to a PD, so they count as `dma: false`.

use crate::{device, Board, Device, DeviceKind, Gic, Range};

use DeviceKind::{Audio, Ethernet, InterruptController, Other, Storage, Uart};

/// Device windows.
const DEVICES: &[Device] = &[
    // SAIs in the AIPS1 audio block (no SAI4). SAI5 and SAI6 share SPI 90.
    device("sai1", Audio, 0x3001_0000, 0x1_0000, &[127], false),
    device("sai2", Audio, 0x3002_0000, 0x1_0000, &[128], false),
    device("sai3", Audio, 0x3003_0000, 0x1_0000, &[82], false),
    device("sai5", Audio, 0x3005_0000, 0x1_0000, &[122], false),
    device("sai6", Audio, 0x3006_0000, 0x1_0000, &[122], false),
    // GPT1/GPT2 (SPIs 55, 54), from seL4's overlay.
    device("gpt1", Other, 0x302d_0000, 0x1_0000, &[87], false),
    device("gpt2", Other, 0x302e_0000, 0x1_0000, &[86], false),
    // System counter: read, compare and control frames (SPIs 47, 48).
    device("sysctr", Other, 0x306a_0000, 0x3_0000, &[79, 80], false),
    // UARTs; UART2 is the EVK's debug port and the kernel's console.
    device("uart1", Uart, 0x3086_0000, 0x1_0000, &[58], false),
    device("uart3", Uart, 0x3088_0000, 0x1_0000, &[60], false),
    device("uart2", Uart, 0x3089_0000, 0x1_0000, &[59], false),
    device("i2c1", Other, 0x30a2_0000, 0x1_0000, &[67], false),
    device("i2c2", Other, 0x30a3_0000, 0x1_0000, &[68], false),
    device("i2c3", Other, 0x30a4_0000, 0x1_0000, &[69], false),
    device("i2c4", Other, 0x30a5_0000, 0x1_0000, &[70], false),
    device("uart4", Uart, 0x30a6_0000, 0x1_0000, &[61], false),
    // uSDHC1..3; on the EVK uSDHC2 is the SD slot and uSDHC3 the eMMC.
    device("usdhc1", Storage, 0x30b4_0000, 0x1_0000, &[54], true),
    device("usdhc2", Storage, 0x30b5_0000, 0x1_0000, &[55], true),
    device("usdhc3", Storage, 0x30b6_0000, 0x1_0000, &[56], true),
    // FEC (ENET1), SPIs 118..120 (queue 1, queue 2, main).
    device(
        "fec1",
        Ethernet,
        0x30be_0000,
        0x1_0000,
        &[150, 151, 152],
        true,
    ),
    // GIC-500: distributor and redistributors; the kernel's.
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
];

/// The board.
pub static BOARD: Board = Board {
    name: "imx8mm_evk",
    description: "NXP i.MX 8M Mini EVK, 4x Cortex-A53, GICv3, 2 GiB",
    // The DT's memory node is 2 GiB at 0x4000_0000, minus the `no-map`
    // rpmsg carve-out of 4 MiB at 0xb800_0000, which seL4's overlay keeps.
    ram: &[
        Range {
            base: 0x4000_0000,
            size: 0x7800_0000,
        },
        Range {
            base: 0xb840_0000,
            size: 0x07c0_0000,
        },
    ],
    devices: DEVICES,
    // Up to seL4's MAX_IRQ (160) for this SoC.
    // PPIs 16..=31 are per-core; seL4 (hypervisor configs) keeps 25 (VGIC
    // maintenance), 26 (EL2 physical timer, the kernel's tick) and 27 (the
    // virtual timer, delivered to VMMs as vPPI events). The others, e.g. the
    // EL1 physical timer (30) that sDDF's timer driver claims, are a PD's to
    // claim. SGIs (0..=15) never are.
    irq_range: (16, 160),
    reserved_irqs: &[25, 26, 27],
    cores: 4,
    gic: Some(Gic::V3),
    user_vaddr_top: 1 << 40,
    hypervisor: true,
    pa_bits: 40,
};
