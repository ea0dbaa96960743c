//! Start-up (entry, vectors, MMU), heap, virtio-console and PSCI for a
//! guest at EL1. Single core, interrupts masked throughout: nothing here
//! runs concurrently with anything else.

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::fmt::Write;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// The VMM's virtio-mmio slot 0 (the console), QEMU `virt` numbering.
pub const CONSOLE_MMIO: usize = 0x0a00_0000;
/// Bytes per virtio-mmio slot.
pub const SLOT_SIZE: usize = 0x200;

// Entry (linked first, at RAM + 2 MiB), the vector table and the stage-1
// tables. The VMM starts us at EL1h with D, A, I, F masked, MMU off.
core::arch::global_asm!(
    r#"
    .section .text.start, "ax"
    .global _start
_start:
    // FP/SIMD at EL1/EL0 (CPACR_EL1.FPEN = 0b11): Rust code uses it.
    mov x0, #(3 << 20)
    msr cpacr_el1, x0
    adr x0, guest_vectors
    msr vbar_el1, x0
    adrp x0, guest_stack_top
    add x0, x0, :lo12:guest_stack_top
    mov sp, x0
    adrp x0, __bss_start
    add x0, x0, :lo12:__bss_start
    adrp x1, __bss_end
    add x1, x1, :lo12:__bss_end
1:  cmp x0, x1
    b.hs 2f
    str xzr, [x0], #8
    b 1b
2:  // Identity map: 0-1 GiB device (GIC, virtio-mmio), 1-2 GiB RAM.
    adrp x0, guest_l1
    ldr x1, =0x0060000000000401
    str x1, [x0]
    ldr x1, =0x0000000040000705
    str x1, [x0, #8]
    dsb ish
    msr ttbr0_el1, x0
    ldr x1, =0xff00
    msr mair_el1, x1
    ldr x1, =0x200803519
    msr tcr_el1, x1
    isb
    tlbi vmalle1
    dsb nsh
    isb
    mrs x1, sctlr_el1
    bic x1, x1, #2
    orr x1, x1, #1
    orr x1, x1, #(1 << 2)
    orr x1, x1, #(1 << 12)
    msr sctlr_el1, x1
    isb
    bl guest_main
3:  wfi
    b 3b

    .section .text.vectors, "ax"
    .balign 2048
guest_vectors:
    .set i, 0
    .rept 16
    .balign 128
    mov x0, #i
    b guest_exception_entry
    .set i, i + 1
    .endr
guest_exception_entry:
    mrs x1, esr_el1
    mrs x2, far_el1
    mrs x3, elr_el1
    bl guest_exception
4:  wfi
    b 4b

    .section .bss.guest_tables, "aw", @nobits
    .balign 4096
guest_l1:
    .space 4096
    .balign 16
    .space 0x10000
guest_stack_top:
"#
);

/// A cell for the guest's globals. Sound because the guest is one core
/// with interrupts masked: no two accesses ever overlap.
struct Global<T>(UnsafeCell<T>);

// SAFETY: single core, no interrupts (see the type's docs): shared access
// never happens concurrently.
unsafe impl<T> Sync for Global<T> {}

/// The bump heap behind `alloc` (the console driver boxes its buffer).
struct Bump {
    next: AtomicUsize,
}

const HEAP_SIZE: usize = 0x1_0000;

#[repr(C, align(4096))]
struct Pool<const N: usize>([u8; N]);

static HEAP: Global<Pool<HEAP_SIZE>> = Global(UnsafeCell::new(Pool([0; HEAP_SIZE])));

// SAFETY: hands out disjoint, aligned ranges of HEAP and never reuses
// them (dealloc leaks, which a test guest can afford).
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = HEAP.0.get() as usize;
        let at = self.next.load(Ordering::Relaxed);
        let start = (base + at).next_multiple_of(layout.align());
        let end = start + layout.size();
        if end > base + HEAP_SIZE {
            return core::ptr::null_mut();
        }
        self.next.store(end - base, Ordering::Relaxed);
        start as *mut u8
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOC: Bump = Bump {
    next: AtomicUsize::new(0),
};

const DMA_PAGES: usize = 16;
static DMA: Global<Pool<{ DMA_PAGES * PAGE_SIZE }>> =
    Global(UnsafeCell::new(Pool([0; DMA_PAGES * PAGE_SIZE])));
static DMA_NEXT: AtomicUsize = AtomicUsize::new(0);

/// DMA for virtio-drivers: guest-physical = virtual (identity map).
pub struct GuestHal;

// SAFETY: dma_alloc returns zeroed, page-aligned, never-reused pages of
// DMA with their (identity) physical address; share/unshare translate
// identity-mapped addresses and need no copies (no IOMMU, coherent RAM).
unsafe impl Hal for GuestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let first = DMA_NEXT.fetch_add(pages, Ordering::Relaxed);
        if first + pages > DMA_PAGES {
            guest_panic("DMA pool exhausted");
        }
        let base = DMA.0.get() as usize + first * PAGE_SIZE;
        let ptr = NonNull::new(base as *mut u8).unwrap_or(NonNull::dangling());
        (base as PhysAddr, ptr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        let addr = usize::try_from(paddr).unwrap_or(0);
        NonNull::new(addr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr() as usize as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

type Console = VirtIOConsole<GuestHal, MmioTransport<'static>>;

static CONSOLE: Global<Option<Console>> = Global(UnsafeCell::new(None));

/// Finds the virtio-console in slot 0 and initialises it; without one the
/// guest can say nothing, so it powers off.
pub fn console_init() {
    let header = NonNull::new(CONSOLE_MMIO as *mut VirtIOHeader).unwrap_or(NonNull::dangling());
    // SAFETY: slot 0 is the VMM's virtio-mmio window (identity-mapped
    // device memory) for the guest's whole life, and nothing else uses it.
    let transport = match unsafe { MmioTransport::new(header, SLOT_SIZE) } {
        Ok(t) => t,
        Err(_) => psci_system_off(),
    };
    match VirtIOConsole::<GuestHal, _>::new(transport) {
        // SAFETY: single core, masked interrupts: no other access to
        // CONSOLE is live.
        Ok(c) => unsafe { *CONSOLE.0.get() = Some(c) },
        Err(_) => psci_system_off(),
    }
}

/// Line formatter to the console.
pub struct Out;

impl Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // SAFETY: single core, masked interrupts; the reference ends with
        // this call.
        let console = unsafe { &mut *CONSOLE.0.get() };
        match console {
            Some(c) => c.send_bytes(s.as_bytes()).map_err(|_| core::fmt::Error),
            None => Err(core::fmt::Error),
        }
    }
}

/// Prints one line on the virtio-console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = writeln!($crate::Out, $($arg)*);
    }};
}

/// Busy-waits about `n` loop iterations.
pub fn delay(n: u64) {
    for _ in 0..n {
        core::hint::spin_loop();
    }
}

/// PSCI `SYSTEM_OFF` through `smc` (the conduit the VMM serves).
pub fn psci_system_off() -> ! {
    // SAFETY: `smc #0` traps to the hypervisor; x0 is the PSCI function id
    // and x0..x3 may come back changed (they are declared clobbered).
    unsafe {
        core::arch::asm!("smc #0", inout("x0") 0x8400_0008u64 => _, out("x1") _,
            out("x2") _, out("x3") _, options(nostack));
    }
    loop {
        // SAFETY: waits for an interrupt; touches no memory.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

fn guest_panic(why: &str) -> ! {
    println!("guest panic: {why}");
    psci_system_off()
}

/// Every exception vector lands here with its index (0..15: current EL
/// SP0 / SPx, lower EL 64 / 32; sync, IRQ, FIQ, SError each), `ESR_EL1`,
/// `FAR_EL1` and `ELR_EL1`: it reports and powers off.
#[no_mangle]
extern "C" fn guest_exception(vector: u64, esr: u64, far: u64, elr: u64) -> ! {
    let ec = esr >> 26;
    if ec == 0x24 || ec == 0x25 {
        println!(
            "guest: data abort at {far:#x} (ESR {esr:#x}, pc {elr:#x}, vector {vector}): powering off"
        );
    } else {
        println!("guest: exception vector {vector}, ESR {esr:#x}, FAR {far:#x}, pc {elr:#x}");
    }
    psci_system_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("guest panic: {}", info.message());
    psci_system_off()
}
