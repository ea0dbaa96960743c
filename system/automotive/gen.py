#!/usr/bin/env python3
"""Generate the four board variants of the reference automotive system.

    python3 system/automotive/gen.py          # rewrite the .system files
    python3 system/automotive/gen.py --check  # fail if any file is stale

The four files must stay structurally parallel (same PD, region and channel
names, same ids and vaddrs) so that a diff between two of them shows only
board differences. Writing them from one table guarantees that; the table
below is the only place a board difference is stated. This script is a
stop-gap until `bulkhead compose` generates systems; it needs only the
Python standard library. Names and ids are documented in README.md here.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

GUESTS = ["cluster", "infotainment"]
# Device classes, in a fixed order: the index fixes each class's vaddr slot
# and the VMM's channel id to its virtualiser (index + 1).
CLASSES = ["serial", "blk", "eth", "can", "snd"]
# Bytes of each data region (`out`/`in`) per class; CAN frames travel inline
# in the queues, so CAN has no data regions.
DATA_SIZE = {"serial": 0x1000, "blk": 0x20_0000, "eth": 0x20_0000, "can": 0, "snd": 0x10_0000}
QUEUE_SIZE = 0x1000

# Scheduling (µs). Drivers > virtualisers > VMMs; within each tier the safety
# class (CAN) first. Every PD above the infotainment VM has a budget, so the
# worst case above the cluster VM is bounded (see ../README.md).
SCHED = {
    "can_driver": (200, 50, 1000),
    "eth_driver": (195, 100, 1000),
    "blk_driver": (190, 50, 1000),
    "snd_driver": (185, 50, 1000),
    "serial_driver": (180, 50, 1000),
    "can_virt": (160, 50, 1000),
    "eth_virt": (155, 100, 1000),
    "blk_virt": (150, 50, 1000),
    "snd_virt": (145, 50, 1000),
    "serial_virt": (140, 50, 1000),
    "cluster_vmm": (120, 500, 10000),
    "infotainment_vmm": (100, 500, 10000),
}
VM_SCHED = {
    "cluster": (110, 2000, 10000),
    # Lowest priority of all: it only ever runs in slack, so a full budget
    # cannot hurt anyone above it.
    "infotainment": (90, 10000, 10000),
}
GUEST_RAM = {"cluster": 0x0800_0000, "infotainment": 0x2000_0000}
GUEST_RAM_BASE = 0x4000_0000  # guest-physical, and the VMM's vaddr for it

# PD-local vaddr plan (the same vaddr in every PD that maps a region).
CONFIG_VADDR = 0x1000_0000
DEVICE_VADDR = 0x2000_0000  # + 0x10_0000 per device window of a driver
DMA_VADDR = 0x3000_0000
HOP_BASE = 0x6000_0000  # + 0x200_0000 per class
HOP_OFFSET = {"drv": 0, "cluster": 0x80_0000, "infotainment": 0x100_0000}
IN_HOP = {"req": 0, "resp": 0x1000, "out": 0x20_0000, "in": 0x40_0000}


def dev(name, paddr, size, irqs, trigger="level"):
    """A device window a driver maps, with its IRQs (GIC INTIDs)."""
    return {"name": name, "paddr": paddr, "size": size, "irqs": irqs, "trigger": trigger}


# Per board: which device each driver owns (from board-support/boards), the
# DMA descriptor memory it needs, and the GICv2 virtual CPU interface.
BOARDS = {
    "qemu_virt_aarch64": {
        "title": "QEMU virt (virtualization=on, GICv2): virtio-mmio devices, PL011, CTU CAN FD on PCIe",
        "drivers": {
            "serial": [dev("pl011_regs", 0x0900_0000, 0x1000, [33])],
            # virtio-mmio transports are 0x200 bytes, eight to a page: each
            # device sits on a transport in a page of its own (QEMU
            # `-device ...,bus=virtio-mmio-bus.N`): blk on 31, net on 23,
            # sound on 15. Transport IRQs are edge-triggered (QEMU's DT).
            "blk": [dev("virtio_blk_regs", 0x0a00_3000, 0x1000, [79], "edge")],
            "eth": [dev("virtio_net_regs", 0x0a00_2000, 0x1000, [71], "edge")],
            "snd": [dev("virtio_snd_regs", 0x0a00_1000, 0x1000, [63], "edge")],
            # The PCIe root complex, whose only function is the CTU CAN FD
            # card (`-device ctucan_pci,addr=1`, so 00:01.0): ECAM of bus 0
            # and 1 MiB of the 32-bit window for its BARs. The card raises
            # INTA of slot 1 = SPI 3 + ((1 + 1 - 1) mod 4) = INTID 36, the
            # only INTx line it needs.
            "can": [
                dev("pcie_ecam", 0x40_1000_0000, 0x10_0000, [36]),
                dev("pcie_bars", 0x1000_0000, 0x10_0000, []),
            ],
        },
        # Virtqueues of the virtio devices (the CTU CAN FD card does no DMA).
        "dma": {"blk": 0x4000, "eth": 0x1_0000, "snd": 0x4000},
        "gic_vcpu": (0x0804_0000, 0x0801_0000),
    },
    "imx8mp_evk": {
        "title": "NXP i.MX 8M Plus EVK (GICv3): UART2, uSDHC3 (eMMC), FEC, FlexCAN1, SAI3 + I2C3 (WM8960)",
        "drivers": {
            "serial": [dev("uart2_regs", 0x3089_0000, 0x1_0000, [59])],
            "blk": [dev("usdhc3_regs", 0x30b6_0000, 0x1_0000, [56])],
            "eth": [dev("fec1_regs", 0x30be_0000, 0x1_0000, [150, 151, 152, 153])],
            "can": [dev("flexcan1_regs", 0x308c_0000, 0x1_0000, [174])],
            "snd": [
                dev("sai3_regs", 0x30c3_0000, 0x1_0000, [82]),
                dev("i2c3_regs", 0x30a4_0000, 0x1_0000, [69]),
            ],
        },
        # uSDHC ADMA tables and FEC buffer descriptors; FlexCAN keeps frames
        # in its own mailboxes and the SAI is fed by the CPU.
        "dma": {"blk": 0x4000, "eth": 0x1_0000},
        "gic_vcpu": None,
    },
    "imx8mm_evk": {
        "title": "NXP i.MX 8M Mini EVK (GICv3): UART2, uSDHC3 (eMMC), FEC, SAI3 (WM8524); no CAN controller",
        "drivers": {
            "serial": [dev("uart2_regs", 0x3089_0000, 0x1_0000, [59])],
            "blk": [dev("usdhc3_regs", 0x30b6_0000, 0x1_0000, [56])],
            "eth": [dev("fec1_regs", 0x30be_0000, 0x1_0000, [150, 151, 152])],
            "snd": [dev("sai3_regs", 0x3003_0000, 0x1_0000, [82])],
        },
        "dma": {"blk": 0x4000, "eth": 0x1_0000},
        "gic_vcpu": None,
    },
    "host": {
        "title": "host board (Linux processes): drivers use host resources bound by the host-binding file",
        "drivers": {"serial": [], "blk": [], "eth": [], "can": [], "snd": []},
        "dma": {},
        "gic_vcpu": None,
    },
}


def hx(n, pad=False):
    """Hex with `_` every four digits; `pad` zero-fills addresses to whole
    16-bit groups (0x0900_0000) so they line up."""
    digits = f"{n:x}"
    if pad:
        digits = digits.zfill((len(digits) + 3) // 4 * 4)
    groups = []
    while digits:
        groups.insert(0, digits[-4:])
        digits = digits[:-4]
    return "0x" + "_".join(groups)


def hop_vaddr(cls, hop, part):
    return HOP_BASE + CLASSES.index(cls) * 0x200_0000 + HOP_OFFSET[hop] + IN_HOP[part]


def hop_parts(cls):
    return ["req", "resp"] + (["out", "in"] if DATA_SIZE[cls] else [])


def hop_upper_lower(cls, hop):
    """(upper PD, lower PD) of a hop: upper is nearer the guest."""
    if hop == "drv":
        return f"{cls}_virt", f"{cls}_driver"
    return f"{hop}_vmm", f"{cls}_virt"


def hop_perms(part, side):
    # Queues carry a producer index written by one side and a consumer index
    # written by the other, so both ends need rw. Data regions have exactly
    # one writer: `out` the upper side, `in` the lower side.
    if part in ("req", "resp"):
        return "rw"
    writer = "upper" if part == "out" else "lower"
    return "rw" if side == writer else "r"


class Out:
    def __init__(self):
        self.lines = []

    def __call__(self, indent, text=""):
        self.lines.append(("    " * indent + text) if text else "")


def generate(board_name):
    b = BOARDS[board_name]
    classes = [c for c in CLASSES if c in b["drivers"]]
    pds = {}  # name -> dict(maps, irqs, setvars, vm)
    order = []

    def pd(name):
        if name not in pds:
            pds[name] = {"maps": [], "irqs": [], "setvars": [], "vm": None}
            order.append(name)
        return pds[name]

    for g in GUESTS:
        pd(f"{g}_vmm")
    for c in classes:
        pd(f"{c}_virt")
        pd(f"{c}_driver")

    o = Out()
    o(0, '<?xml version="1.0" encoding="UTF-8"?>')
    o(0, "<!--")
    o(1, f"Bulkhead reference automotive system: {board_name}.")
    o(1, b["title"] + ".")
    o(0)
    o(1, "Two guests: `cluster` (safety domain, with can_driver and can_virt) and")
    o(1, "`infotainment`, each a virtual machine in its own VMM PD. Per device class a")
    o(1, "driver PD owns the device and a virtualiser PD multiplexes it; every hop is a")
    o(1, "request queue, a response queue, one-writer data regions and a channel.")
    o(1, "GENERATED by system/automotive/gen.py from one table for all four boards, so")
    o(1, "that the files differ only where the boards do. Edit the script, not this file.")
    o(1, "Names and ids: system/automotive/README.md; rules: system/README.md.")
    o(0, "-->")
    o(0, "<system>")

    # --- memory regions -------------------------------------------------
    o(1, "<!-- Guest RAM: mapped into its VM and into that VM's VMM only. -->")
    for g in GUESTS:
        o(1, f'<memory_region name="{g}_ram" size="{hx(GUEST_RAM[g])}" page_size="0x20_0000" />')
        pd(f"{g}_vmm")["maps"].append((f"{g}_ram", GUEST_RAM_BASE, "rw", True))
    if b["gic_vcpu"]:
        paddr, _ = b["gic_vcpu"]
        o(0)
        o(1, "<!-- GICv2 virtual CPU interface (GICV). Each VM maps it as its GIC CPU")
        o(1, "     interface; the hardware shows the state of whichever vCPU the kernel")
        o(1, "     has loaded, so this page carries no data between the VMs. -->")
        o(1, f'<memory_region name="gic_vcpu" size="0x1000" phys_addr="{hx(paddr, True)}" />')

    o(0)
    o(1, "<!-- Read-only configuration of each PD (no prefill yet: see system/README.md). -->")
    for name in order:
        o(1, f'<memory_region name="{name}_config" size="0x1000" />')
        pd(name)["maps"].append((f"{name}_config", CONFIG_VADDR, "r", True))

    for c in classes:
        o(0)
        o(1, f"<!-- {c}: rings between {c}_virt and {c}_driver (hop `drv`) and between")
        o(1, f"     each VMM and {c}_virt (hops `cluster`, `infotainment`). -->")
        for hop in ["drv"] + GUESTS:
            upper, lower = hop_upper_lower(c, hop)
            for part in hop_parts(c):
                size = QUEUE_SIZE if part in ("req", "resp") else DATA_SIZE[c]
                rname = f"{c}_{hop}_{part}"
                o(1, f'<memory_region name="{rname}" size="{hx(size)}" />')
                va = hop_vaddr(c, hop, part)
                pd(upper)["maps"].append((rname, va, hop_perms(part, "upper"), True))
                pd(lower)["maps"].append((rname, va, hop_perms(part, "lower"), True))
                # A bus-master device reads `out` and writes `in` of the
                # driver hop by physical address.
                if hop == "drv" and part in ("out", "in") and c in b["dma"]:
                    pd(lower)["setvars"].append((f"{rname}_paddr", rname))
        devs = b["drivers"][c]
        if devs:
            o(1, f"<!-- {c}_driver's device registers: mapped uncached into {c}_driver only. -->")
        next_irq_id = 1
        for i, d in enumerate(devs):
            o(1, f'<memory_region name="{d["name"]}" size="{hx(d["size"])}" phys_addr="{hx(d["paddr"], True)}" />')
            pd(f"{c}_driver")["maps"].append((d["name"], DEVICE_VADDR + i * 0x10_0000, "rw", False))
            for irq in d["irqs"]:
                pd(f"{c}_driver")["irqs"].append((irq, next_irq_id, d["trigger"]))
                next_irq_id += 1
        if c in b["dma"]:
            rname = f"{c}_dma"
            o(1, f"<!-- DMA descriptor memory of {c}_driver's bus-master device (uncached). -->")
            o(1, f'<memory_region name="{rname}" size="{hx(b["dma"][c])}" />')
            pd(f"{c}_driver")["maps"].append((rname, DMA_VADDR, "rw", False))
            pd(f"{c}_driver")["setvars"].append((f"{rname}_paddr", rname))

    # --- protection domains ---------------------------------------------
    comments = {
        "cluster_vmm": "VMM of the safety guest `cluster`: budgeted, above the infotainment side.",
        "infotainment_vmm": "VMM of the infotainment guest: budgeted so it cannot take the safety path's time.",
    }
    for c in classes:
        comments[f"{c}_driver"] = f"{c} driver: owns the device, its IRQs and DMA; talks only to {c}_virt."
        comments[f"{c}_virt"] = f"{c} virtualiser: per-guest policy between the VMMs and {c}_driver."
    for name in order:
        p = pds[name]
        prio, budget, period = SCHED[name]
        o(0)
        o(1, f"<!-- {comments[name]} -->")
        o(1, f'<protection_domain name="{name}" priority="{prio}" budget="{budget}" period="{period}">')
        o(2, f'<program_image path="{name}.elf" />')
        for mr, va, perms, cached in p["maps"]:
            extra = ' cached="false"' if not cached else ""
            o(2, f'<map mr="{mr}" vaddr="{hx(va, True)}" perms="{perms}"{extra} />')
        for irq, iid, trig in p["irqs"]:
            o(2, f'<irq irq="{irq}" id="{iid}" trigger="{trig}" />')
        for sym, mr in p["setvars"]:
            o(2, f'<setvar symbol="{sym}" region_paddr="{mr}" />')
        if name.endswith("_vmm"):
            g = name[: -len("_vmm")]
            vprio, vbudget, vperiod = VM_SCHED[g]
            o(2, f'<virtual_machine name="{g}" priority="{vprio}" budget="{vbudget}" period="{vperiod}">')
            o(3, '<vcpu id="0" />')
            o(3, f'<map mr="{g}_ram" vaddr="{hx(GUEST_RAM_BASE, True)}" perms="rwx" />')
            if b["gic_vcpu"]:
                _, gpa = b["gic_vcpu"]
                o(3, f'<map mr="gic_vcpu" vaddr="{hx(gpa, True)}" perms="rw" cached="false" />')
            o(2, "</virtual_machine>")
        o(1, "</protection_domain>")

    # --- channels ---------------------------------------------------------
    o(0)
    o(1, "<!-- Channels: notifications only (no PPC). Ids: VMM 1 serial, 2 blk, 3 eth,")
    o(1, "     4 can, 5 snd; virtualiser 0 driver, 1 cluster_vmm, 2 infotainment_vmm;")
    o(1, "     driver 0 virtualiser, IRQs from 1. -->")
    for c in classes:
        o(1, "<channel>")
        o(2, f'<end pd="{c}_virt" id="0" />')
        o(2, f'<end pd="{c}_driver" id="0" />')
        o(1, "</channel>")
        for gi, g in enumerate(GUESTS):
            o(1, "<channel>")
            o(2, f'<end pd="{g}_vmm" id="{CLASSES.index(c) + 1}" />')
            o(2, f'<end pd="{c}_virt" id="{gi + 1}" />')
            o(1, "</channel>")
    o(0, "</system>")
    return "\n".join(o.lines) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name in BOARDS:
        path = HERE / f"{name}.system"
        text = generate(name)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("stale (run python3 system/automotive/gen.py):", *stale, sep="\n  ", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
