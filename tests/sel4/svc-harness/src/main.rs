//! `svc-harness`: checks the register convention of `bulkhead-sel4-abi`'s
//! syscall wrappers on a real AArch64 core, without seL4.
//!
//! Runs at EL1 on QEMU `virt` (`-kernel`). Its own vector table catches
//! every `svc #0` the wrappers execute, prints the registers seL4 would read
//! for that syscall (per libsel4's `sel4_arch/syscalls.h`), then answers
//! like the kernel would — badge in x0, tag in x1, MR0..3 in x2..x5 — and
//! the harness prints what each wrapper returned. `tests/svc_abi.rs` compares
//! the transcript with `golden/svc-abi.txt`, written from libsel4's
//! convention, so a swapped register or a lost output fails the test.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod harness {
    use bulkhead_sel4_abi::syscall::{self, Received};
    use bulkhead_sel4_abi::MessageInfo;
    use core::fmt::{self, Write};

    const UART: *mut u32 = 0x0900_0000 as *mut u32; // PL011 UARTDR

    struct Uart;
    impl Write for Uart {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for b in s.bytes() {
                // SAFETY: QEMU virt's PL011 data register; it needs no set-up
                // on QEMU, and this single-core program owns it.
                unsafe { UART.write_volatile(u32::from(b)) };
            }
            Ok(())
        }
    }

    macro_rules! say {
        ($($t:tt)*) => {{ let _ = writeln!(Uart, $($t)*); }};
    }

    // Stack, vector table, and an SVC entry that saves x0..x30 in a frame,
    // calls `svc_handler(frame)`, restores (with the handler's x0..x5) and
    // returns past the svc.
    core::arch::global_asm!(
        ".section .text.harness_entry, \"ax\"",
        ".global harness_entry",
        "harness_entry:",
        "    ldr x9, =harness_stack_top",
        "    mov sp, x9",
        // Rust code uses FP/SIMD registers: allow them at EL1 (CPACR_EL1.FPEN).
        "    mov x9, #(3 << 20)",
        "    msr cpacr_el1, x9",
        "    adr x9, harness_vectors",
        "    msr vbar_el1, x9",
        "    isb",
        "    b harness_main",
        ".ltorg",
        ".balign 2048",
        "harness_vectors:",
        ".rept 4",
        "    b harness_unexpected",
        "    .balign 0x80",
        ".endr",
        // current EL with SP_ELx, synchronous: our svc
        "    sub sp, sp, #256",
        "    stp x0, x1, [sp, #0]",
        "    stp x2, x3, [sp, #16]",
        "    stp x4, x5, [sp, #32]",
        "    stp x6, x7, [sp, #48]",
        "    stp x8, x9, [sp, #64]",
        "    stp x10, x11, [sp, #80]",
        "    stp x12, x13, [sp, #96]",
        "    stp x14, x15, [sp, #112]",
        "    stp x16, x17, [sp, #128]",
        "    stp x18, x19, [sp, #144]",
        "    stp x29, x30, [sp, #160]",
        "    mov x0, sp",
        "    bl svc_handler",
        "    ldp x0, x1, [sp, #0]",
        "    ldp x2, x3, [sp, #16]",
        "    ldp x4, x5, [sp, #32]",
        "    ldp x6, x7, [sp, #48]",
        "    ldp x8, x9, [sp, #64]",
        "    ldp x10, x11, [sp, #80]",
        "    ldp x12, x13, [sp, #96]",
        "    ldp x14, x15, [sp, #112]",
        "    ldp x16, x17, [sp, #128]",
        "    ldp x18, x19, [sp, #144]",
        "    ldp x29, x30, [sp, #160]",
        "    add sp, sp, #256",
        "    eret",
        "    .balign 0x80",
        ".rept 11",
        "    b harness_unexpected",
        "    .balign 0x80",
        ".endr",
    );

    /// What the fake kernel answers on every syscall.
    const BADGE: u64 = 0xb0d6e;
    const MRS: [u64; 4] = [0x11, 0x22, 0x33, 0x44];

    fn reply_tag() -> MessageInfo {
        MessageInfo::new(7, 0, 0, 3)
    }

    #[no_mangle]
    extern "C" fn svc_handler(frame: &mut [u64; 32]) {
        let esr: u64;
        // SAFETY: reading ESR_EL1 in the exception handler has no effects.
        unsafe { core::arch::asm!("mrs {}, esr_el1", out(reg) esr, options(nomem, nostack)) };
        if esr >> 26 != 0x15 {
            say!("unexpected exception, ESR {esr:#x}");
            park();
        }
        let f = *frame;
        let n = f[7] as i64;
        let mr = |f: &[u64; 32]| [f[2], f[3], f[4], f[5]];
        match n {
            -1 => say!(
                "SVC Call x0={:#x} x1={:#x} mrs={:x?} x6={:#x}",
                f[0],
                f[1],
                mr(&f),
                f[6]
            ),
            -2 => say!(
                "SVC ReplyRecv x0={:#x} x1={:#x} mrs={:x?} x6={:#x}",
                f[0],
                f[1],
                mr(&f),
                f[6]
            ),
            -3 => say!(
                "SVC NBSendRecv x0={:#x} x1={:#x} mrs={:x?} x6={:#x} x8={:#x}",
                f[0],
                f[1],
                mr(&f),
                f[6],
                f[8]
            ),
            -5 => say!("SVC Send x0={:#x} x1={:#x} mrs={:x?}", f[0], f[1], mr(&f)),
            -6 => say!("SVC NBSend x0={:#x} x1={:#x} mrs={:x?}", f[0], f[1], mr(&f)),
            -7 => say!("SVC Recv x0={:#x} x6={:#x}", f[0], f[6]),
            -9 => say!("SVC Wait x0={:#x} x6={:#x}", f[0], f[6]),
            -10 => say!("SVC NBWait x0={:#x} x6={:#x}", f[0], f[6]),
            -11 => say!("SVC Yield"),
            -12 => say!(
                "SVC DebugPutChar x0={:?} x1..x6={:x?}",
                char::from(u8::try_from(f[0] & 0xff).unwrap_or(b'?')),
                &f[1..7]
            ),
            -14 => say!("SVC DebugHalt"),
            other => say!("SVC unknown number {other}"),
        }
        frame[0] = BADGE;
        frame[1] = reply_tag().to_word();
        frame[2..6].copy_from_slice(&MRS);
    }

    fn show(what: &str, r: Received) {
        say!(
            "  {what} -> badge={:#x} label={} len={} mrs={:x?}",
            r.badge,
            r.info.label(),
            r.info.length(),
            r.mrs
        );
    }

    #[no_mangle]
    extern "C" fn harness_main() -> ! {
        say!("svc-harness start");
        let tag = MessageInfo::new(0x1234, 0, 0, 4);
        let mrs = [0xa, 0xb, 0xc, 0xd];
        let (t, m) = syscall::call(74, tag, mrs);
        say!(
            "  call -> label={} len={} mrs={m:x?}",
            t.label(),
            t.length()
        );
        show("reply_recv", syscall::reply_recv(1, tag, mrs, 4));
        show("nb_send_recv", syscall::nb_send_recv(10, tag, mrs, 1, 4));
        syscall::send(138, MessageInfo::with_label(3, 0), [0; 4]);
        syscall::nb_send(11, tag, mrs);
        syscall::signal(12);
        show("recv", syscall::recv(1, 4));
        show("wait", syscall::wait(1));
        show("nb_wait", syscall::nb_wait(1));
        syscall::yield_now();
        syscall::debug_put_char(b'Z');
        syscall::debug_halt();
        say!("svc-harness done");
        park()
    }

    #[no_mangle]
    extern "C" fn harness_unexpected() -> ! {
        say!("unexpected exception");
        park()
    }

    fn park() -> ! {
        loop {
            core::hint::spin_loop();
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        say!("panic");
        park()
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("svc-harness runs on QEMU virt: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
