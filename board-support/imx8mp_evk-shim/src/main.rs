//! EL3 shim for QEMU's `imx8mp-evk` machine.
//!
//! QEMU starts the Cortex-A53 at EL3 with no firmware. The Microkit loader
//! (at 0x4100_0000) expects to be entered at EL2 by firmware that answers
//! PSCI over `smc`: started at EL3 it drops to EL2 with SMC disabled and
//! then probes PSCI, which hangs. This shim is the minimum firmware:
//!
//! 1. `VBAR_EL3` ← a vector table whose "lower EL, AArch64, synchronous"
//!    entry answers an SMC: `PSCI_VERSION` (0x8400_0000) → 1.0
//!    (0x0001_0000), any other function → `NOT_SUPPORTED` (−1). Only x0
//!    changes (x1 is saved in `TPIDR_EL3` meanwhile), as SMCCC allows.
//!    Anything else that reaches EL3 parks the core in `wfe`.
//! 2. `ICC_SRE_EL3` ← SRE|DFB|DIB|Enable so EL2/EL1 may use the GICv3
//!    system-register interface (seL4 does), as ATF does at boot.
//! 3. `SCR_EL3` ← NS | RES1(4,5) | HCE | RW: lower ELs non-secure, HVC
//!    enabled, EL2 is AArch64, and SMD clear so `smc` reaches us.
//! 4. `SPSR_EL3` ← EL2h with D, A, I, F masked; `ELR_EL3` ← 0x4100_0000;
//!    `eret`.
//!
//! It is loaded with `-device loader,file=<this ELF>,cpu-num=0`, which
//! also points the CPU's reset PC at its entry (see `scripts/sdk.sh`).
//! Built for `aarch64-unknown-none` only; on a host it just says so.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod shim {
    /// Where the Microkit loader for imx8mp_evk is linked and loaded.
    pub const LOADER_ENTRY: u64 = 0x4100_0000;
    /// `PSCI_VERSION` function id (SMC32).
    pub const PSCI_VERSION: u64 = 0x8400_0000;
    /// The version we report: 1.0.
    pub const PSCI_1_0: u64 = 0x0001_0000;
    /// SCR_EL3: NS (0) | RES1 (4, 5) | HCE (8) | RW (10); SMD (7) clear.
    pub const SCR_EL3: u64 = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 10);
    /// SPSR_EL3: M = EL2h (0b1001), DAIF (bits 9..6) set.
    pub const SPSR_EL3: u64 = 0b1001 | (0b1111 << 6);
    /// ICC_SRE_EL3: SRE (0) | DFB (1) | DIB (2) | Enable (3).
    pub const ICC_SRE_EL3: u64 = 0b1111;
    /// ESR_ELx.EC of an SMC executed in AArch64 state.
    pub const EC_SMC64: u64 = 0x17;

    core::arch::global_asm!(
        ".section .text.shim_entry, \"ax\"",
        ".global shim_entry",
        "shim_entry:",
        "    adr x0, shim_vectors",
        "    msr vbar_el3, x0",
        "    ldr x0, ={sre}",
        "    msr S3_6_C12_C12_5, x0", // ICC_SRE_EL3
        "    isb",
        "    ldr x0, ={scr}",
        "    msr scr_el3, x0",
        "    ldr x0, ={spsr}",
        "    msr spsr_el3, x0",
        "    ldr x0, ={elr}",
        "    msr elr_el3, x0",
        "    mov x0, xzr",
        "    isb",
        "    eret",
        // 2 KiB-aligned table of 16 entries of 0x80 bytes each.
        ".section .text.shim_vectors, \"ax\"",
        ".balign 2048",
        "shim_vectors:",
        ".rept 8",               // current EL (SP0, SPx): never expected
        "    b shim_park",
        "    .balign 0x80",
        ".endr",
        // lower EL, AArch64, synchronous: the SMC path
        "    msr tpidr_el3, x1",
        "    mrs x1, esr_el3",
        "    lsr x1, x1, #26",
        "    cmp x1, #{ec}",
        "    b.ne shim_park",
        "    ldr x1, ={ver_id}",
        "    cmp w0, w1",
        "    b.ne 1f",
        "    ldr x0, ={ver}",
        "    b 2f",
        "1:  mov x0, #-1",
        "2:  mrs x1, tpidr_el3",
        "    eret",
        "    .balign 0x80",
        ".rept 7",               // lower EL IRQ/FIQ/SError, AArch32: parked
        "    b shim_park",
        "    .balign 0x80",
        ".endr",
        "shim_park:",
        "    wfe",
        "    b shim_park",
        ".ltorg",
        sre = const ICC_SRE_EL3,
        scr = const SCR_EL3,
        spsr = const SPSR_EL3,
        elr = const LOADER_ENTRY,
        ec = const EC_SMC64,
        ver_id = const PSCI_VERSION,
        ver = const PSCI_1_0,
    );

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        loop {
            core::hint::spin_loop();
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "imx8mp-evk-shim is EL3 firmware for QEMU: build it with --target aarch64-unknown-none"
    );
    std::process::exit(2);
}
