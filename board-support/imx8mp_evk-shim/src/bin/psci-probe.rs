//! Test payload for the shim: runs at EL2 where the Microkit loader would,
//! asks for the PSCI version with `smc`, asks for an unknown function, and
//! prints both answers on the i.MX8MP debug UART (UART2, 0x3089_0000),
//! e.g. `PSCI 00010000 FFFFFFFFFFFFFFFF EL2`, then parks.
//!
//! It reads CurrentEL too, so the test also proves the shim dropped to EL2.
//! It needs a stack, which it sets up itself: the shim provides none.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod probe {
    use core::ptr::{read_volatile, write_volatile};

    const UART: usize = 0x3089_0000;
    const UTXD: usize = 0x40;
    const USR1: usize = 0x94;
    const USR1_TRDY: u32 = 1 << 13;

    fn reg(off: usize) -> *mut u32 {
        (UART + off) as *mut u32
    }

    fn putc(c: u8) {
        // SAFETY: UART2's registers are at this fixed MMIO address on the
        // i.MX8MP; nothing else runs on this core, and the MMU is off, so
        // volatile 32-bit accesses are the device's contract.
        unsafe {
            let mut spins = 0u32;
            while read_volatile(reg(USR1)) & USR1_TRDY == 0 && spins < 100_000 {
                spins += 1;
            }
            write_volatile(reg(UTXD), u32::from(c));
        }
    }

    fn puts(s: &str) {
        s.bytes().for_each(putc);
    }

    fn put_hex(v: u64, digits: u32) {
        for i in (0..digits).rev() {
            let nib = (v >> (i * 4)) & 0xf;
            putc(b"0123456789ABCDEF"[usize::from(u8::try_from(nib).unwrap_or(0))]);
        }
    }

    fn smc(function: u64) -> u64 {
        let mut x0 = function;
        // SAFETY: an SMC traps to the EL3 shim, which changes only x0; the
        // probe owns the whole machine.
        unsafe { core::arch::asm!("smc #0", inout("x0") x0, options(nostack)) };
        x0
    }

    // The shim hands over with no stack, as firmware hands the Microkit
    // loader over: give ourselves one (1 MiB above the image) first.
    core::arch::global_asm!(
        ".section .text.probe_entry, \"ax\"",
        ".global probe_entry",
        "probe_entry:",
        "    ldr x9, =0x41100000",
        "    mov sp, x9",
        "    b probe_main",
        ".ltorg",
    );

    #[no_mangle]
    extern "C" fn probe_main() -> ! {
        // No UART set-up, on purpose: the Microkit loader does none either
        // (it relies on firmware, or on QEMU's reset state), so a probe that
        // prints without it shows the loader's prints will appear too.
        let version = smc(0x8400_0000);
        let unknown = smc(0xC400_0003); // CPU_ON: not supported by the shim
        let el: u64;
        // SAFETY: reading CurrentEL has no side effects.
        unsafe { core::arch::asm!("mrs {}, CurrentEL", out(reg) el, options(nomem, nostack)) };
        puts("PSCI ");
        put_hex(version, 8);
        puts(" ");
        put_hex(unknown, 16);
        puts(" EL");
        put_hex((el >> 2) & 3, 1);
        puts("\n");
        loop {
            core::hint::spin_loop();
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        loop {
            core::hint::spin_loop();
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("psci-probe is an EL2 test payload: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
