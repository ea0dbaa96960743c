//! `sel4-hello`: the smallest Bulkhead PD on seL4.
//!
//! Prints `hello from <its patched microkit_name>` with `seL4_DebugPutChar`
//! and then waits on its input capability forever. It exists so that CI can
//! build a real PD ELF for `aarch64-unknown-none` and check, without an SDK,
//! everything the Microkit tool needs from it (tests/sel4/tests/elf_abi.rs),
//! and so that with an SDK it boots as the first example
//! (tests/sel4/hello.system).
//!
//! On a host target it only explains itself: it is a PD, not a program.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod pd {
    use bulkhead_sel4_abi::symbols::patched;
    use bulkhead_sel4_abi::{caps, syscall};

    // A `setvar` target, so the ELF test can check the 8-byte rule on a
    // real symbol (`<setvar symbol="hello_greeting_count" .../>`); 0 = once.
    bulkhead_sel4_abi::setvar!(
        /// How many times to greet (patched by the tool via `setvar`).
        pub hello_greeting_count
    );

    bulkhead_sel4_abi::entry!(main);

    fn main() -> ! {
        // Only the name is read: the other patched symbols stay
        // unreferenced, so the ELF test also proves they are retained
        // (the tool needs all six).
        let name = patched::name();
        let times = hello_greeting_count.get().max(1);
        for _ in 0..times {
            syscall::debug_puts("hello from ");
            syscall::debug_puts(name);
            syscall::debug_puts("\n");
        }
        loop {
            // Nothing will arrive; Wait blocks without a reply object.
            let _ = syscall::wait(caps::INPUT);
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        syscall::debug_puts("hello: panic\n");
        loop {
            syscall::debug_halt();
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("sel4-hello is a seL4 PD: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
