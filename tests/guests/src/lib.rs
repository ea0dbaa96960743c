//! What every test guest shares: [`setup`] maps guest RAM at its
//! guest-physical address (from the supervisor's `BULKHEAD_GUEST_MAPS`) and
//! the virtio-mmio range with no access, so each register access traps into
//! the VMM; [`GuestHal`] gives `virtio-drivers` DMA memory in guest RAM
//! (physical = guest-physical = virtual, identity-mapped); [`probe`] finds
//! the devices in the VMM's slots; [`watchdog`] ends a guest that hangs
//! (`virtio-drivers` busy-waits for the device).
//!
//! Interrupts: the supervisor signals an eventfd at [`IRQ_FD`] when the VMM
//! raises a line; [`wait_irq`] polls it.
//!
//! [`can`]: what the CAN guests (`src/bin/can_*.rs`) share.

// Test guests are x86_64 Linux programs (the host board): guest-physical
// addresses (u64) and pointers (usize) are the same width.
#![allow(clippy::cast_possible_truncation)]
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("test guests run on the x86_64 Linux host board only");

pub mod can;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use bulkhead_vmm_host::layout;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// The start pipe: one byte arrives once the supervisor traces this guest.
pub const GO_FD: i32 = 3;
/// The interrupt eventfd the supervisor passes.
pub const IRQ_FD: i32 = 4;

/// Guest RAM: [base, end) once [`setup`] ran.
static RAM_BASE: AtomicUsize = AtomicUsize::new(0);
static RAM_END: AtomicUsize = AtomicUsize::new(0);
/// Next free byte for [`Hal::dma_alloc`] (never freed: a test guest's
/// queues live as long as it does).
static DMA_TOP: AtomicUsize = AtomicUsize::new(0);
/// Bounce area for buffers outside guest RAM (the driver's stack and heap):
/// a stack reset whenever nothing is shared.
static BOUNCE_BASE: AtomicUsize = AtomicUsize::new(0);
static BOUNCE_TOP: AtomicUsize = AtomicUsize::new(0);
static SHARED: AtomicUsize = AtomicUsize::new(0);

/// Bytes of guest RAM kept for bounce buffers (the rest is DMA memory).
const BOUNCE_BYTES: usize = 64 * 1024;

/// Why a guest could not start.
#[derive(Debug)]
pub enum SetupError {
    /// `BULKHEAD_GUEST_MAPS` is missing or malformed.
    Maps(String),
    /// A mapping failed.
    Map(std::io::Error),
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Maps guest RAM and reserves the MMIO range; returns (RAM base, size).
pub fn setup() -> Result<(u64, u64), SetupError> {
    let mut b = 0u8;
    // SAFETY: reads one byte into a local.
    if unsafe { libc::read(GO_FD, std::ptr::addr_of_mut!(b).cast(), 1) } != 1 {
        return Err(SetupError::Maps("no start byte from the supervisor".into()));
    }
    // SAFETY: closes our own descriptor, used only above.
    unsafe { libc::close(GO_FD) };
    // An injected data abort is SIGBUS: let it end the guest, as an abort
    // in a kernel without a handler would (std's stack-overflow handler
    // would return and re-run the access instead).
    // SAFETY: restores the default disposition; no handler code involved.
    unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
    let maps =
        std::env::var("BULKHEAD_GUEST_MAPS").map_err(|_| SetupError::Maps("not set".into()))?;
    let mut ram = None;
    for (k, m) in maps.split(';').filter(|m| !m.is_empty()).enumerate() {
        let f: Vec<&str> = m.split(',').collect();
        let (Some(gpa), Some(size), Some(perms)) = (
            f.first().and_then(|s| parse_u64(s)),
            f.get(1).and_then(|s| parse_u64(s)),
            f.get(2).and_then(|s| parse_u64(s)),
        ) else {
            return Err(SetupError::Maps(m.to_string()));
        };
        let mut prot = 0;
        if perms & 1 != 0 {
            prot |= libc::PROT_READ;
        }
        if perms & 2 != 0 {
            prot |= libc::PROT_WRITE;
        }
        let fd = IRQ_FD + 1 + i32::try_from(k).unwrap_or(0);
        // SAFETY: maps a descriptor the supervisor passed at a fixed address
        // that must be free (MAP_FIXED_NOREPLACE fails rather than clobber).
        let p = unsafe {
            libc::mmap(
                gpa as *mut libc::c_void,
                usize::try_from(size).unwrap_or(0),
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                fd,
                0,
            )
        };
        if p as u64 != gpa {
            return Err(SetupError::Map(std::io::Error::last_os_error()));
        }
        if ram.is_none() && perms & 3 == 3 {
            ram = Some((gpa, size));
        }
    }
    let (base, size) = ram.ok_or_else(|| SetupError::Maps("no read-write RAM".into()))?;
    // SAFETY: reserves the MMIO range with no access at a fixed, free
    // address; nothing in this process ever dereferences it except the
    // driver's register accesses, which trap by design.
    let p = unsafe {
        libc::mmap(
            layout::MMIO_BASE as *mut libc::c_void,
            layout::MMIO_RANGE as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_NORESERVE
                | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p as u64 != layout::MMIO_BASE {
        return Err(SetupError::Map(std::io::Error::last_os_error()));
    }
    let (b, e) = (base as usize, (base + size) as usize);
    RAM_BASE.store(b, Ordering::Relaxed);
    RAM_END.store(e, Ordering::Relaxed);
    BOUNCE_BASE.store(e - BOUNCE_BYTES, Ordering::Relaxed);
    BOUNCE_TOP.store(e - BOUNCE_BYTES, Ordering::Relaxed);
    DMA_TOP.store(b, Ordering::Relaxed);
    Ok((base, size))
}

/// Ends this guest with status 3 after `secs` seconds unless re-armed
/// (`alarm`; the supervisor reports the exit).
pub fn watchdog(secs: u32) {
    extern "C" fn expired(_: libc::c_int) {
        const MSG: &[u8] = b"watchdog: guest made no progress; exiting\n";
        // SAFETY: write and _exit are async-signal-safe.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(3);
        }
    }
    // SAFETY: installs a handler that only makes async-signal-safe calls.
    unsafe {
        libc::signal(libc::SIGALRM, expired as *const () as libc::sighandler_t);
        libc::alarm(secs);
    }
}

/// Waits up to `timeout_ms` for an interrupt; true if one came.
pub fn wait_irq(timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: IRQ_FD,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd for the call.
    if unsafe { libc::poll(&mut pfd, 1, timeout_ms) } != 1 {
        return false;
    }
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a local u64 (eventfd protocol).
    unsafe { libc::read(IRQ_FD, std::ptr::addr_of_mut!(v).cast(), 8) };
    true
}

/// The first device of type `ty` among the VMM's slots. Each probe is a
/// trapped read of the slot's magic.
pub fn probe(ty: DeviceType) -> Option<MmioTransport<'static>> {
    for k in 0..layout::SLOTS {
        let header = NonNull::new(layout::slot(k) as *mut VirtIOHeader)?;
        // SAFETY: the slot is in the reserved MMIO range; every access to it
        // traps into the VMM, which emulates the device (or aborts).
        if let Ok(t) = unsafe { MmioTransport::new(header, layout::SLOT_SIZE as usize) } {
            if t.device_type() == ty {
                return Some(t);
            }
        }
    }
    None
}

/// The `virtio-drivers` HAL of a test guest.
pub struct GuestHal;

fn in_ram(addr: usize, len: usize) -> bool {
    addr >= RAM_BASE.load(Ordering::Relaxed)
        && addr
            .checked_add(len)
            .is_some_and(|e| e <= BOUNCE_BASE.load(Ordering::Relaxed))
}

// SAFETY: DMA memory is guest RAM, identity-mapped (physical = virtual), so
// the addresses handed to the device are the ones the driver uses; buffers
// outside guest RAM are bounced through it and copied back on unshare.
unsafe impl Hal for GuestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let len = pages * PAGE_SIZE;
        let at = DMA_TOP.fetch_add(len, Ordering::Relaxed);
        if at + len > BOUNCE_BASE.load(Ordering::Relaxed) {
            eprintln!("guest: out of DMA memory");
            std::process::exit(4);
        }
        // SAFETY: [at, at+len) is guest RAM this guest mapped read-write and
        // hands out once.
        unsafe { std::ptr::write_bytes(at as *mut u8, 0, len) };
        (
            at as PhysAddr,
            NonNull::new(at as *mut u8).unwrap_or(NonNull::dangling()),
        )
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let (addr, len) = (buffer.as_ptr().cast::<u8>() as usize, buffer.len());
        if in_ram(addr, len) {
            return addr as PhysAddr;
        }
        let at = BOUNCE_TOP.fetch_add(len.next_multiple_of(16), Ordering::Relaxed);
        if at + len > RAM_END.load(Ordering::Relaxed) {
            eprintln!("guest: out of bounce memory");
            std::process::exit(4);
        }
        SHARED.fetch_add(1, Ordering::Relaxed);
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the source is the driver's live buffer of `len` bytes;
            // the destination is free bounce memory in guest RAM.
            unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, at as *mut u8, len) };
        }
        at as PhysAddr
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let (addr, len) = (buffer.as_ptr().cast::<u8>() as usize, buffer.len());
        if paddr as usize == addr {
            return;
        }
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: `paddr` is the bounce copy made by `share` for this
            // buffer; the driver's buffer is live and `len` bytes long.
            unsafe { std::ptr::copy_nonoverlapping(paddr as *const u8, addr as *mut u8, len) };
        }
        if SHARED.fetch_sub(1, Ordering::Relaxed) == 1 {
            BOUNCE_TOP.store(BOUNCE_BASE.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// The console guest: greets, prints `lines` numbered lines (0 = forever)
/// 50 ms apart, then `done`, echoing any input; with `die_after = Some(n)`
/// it kills itself right after line `n`.
pub fn run_console(lines: u64, die_after: Option<u64>) -> ! {
    use virtio_drivers::device::console::VirtIOConsole;

    watchdog(20);
    let (base, size) = match setup() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("guest: setup failed: {e:?}");
            std::process::exit(2);
        }
    };
    let Some(t) = probe(DeviceType::Console) else {
        eprintln!("guest: no console device");
        std::process::exit(2);
    };
    let mut con = match VirtIOConsole::<GuestHal, _>::new(t) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("guest: console init failed: {e:?}");
            std::process::exit(2);
        }
    };
    let say = |con: &mut VirtIOConsole<GuestHal, _>, s: &str| {
        if let Err(e) = con.send_bytes(s.as_bytes()) {
            eprintln!("guest: send failed: {e:?}");
            std::process::exit(2);
        }
    };
    say(
        &mut con,
        &format!("hello from a virtio-drivers guest (RAM {size:#x} bytes at {base:#x})\n"),
    );
    let mut n = 0u64;
    let mut irqs = 0u64;
    loop {
        n += 1;
        if lines == 0 || n <= lines {
            say(&mut con, &format!("line {n}\n"));
            watchdog(20);
            if die_after == Some(n) {
                // SAFETY: plain syscall; the guest ends itself abruptly, as
                // a crashed guest would.
                unsafe { libc::raise(libc::SIGKILL) };
            }
        } else if n == lines + 1 {
            // The interrupts the VMM injected so far (one per used TX
            // buffer the device returned, unless the driver suppressed them).
            say(&mut con, &format!("done ({irqs} interrupts)\n"));
        }
        // Echo input, if any arrived (an interrupt says the RX queue moved).
        if wait_irq(50) {
            irqs += 1;
            let _ = con.ack_interrupt();
        }
        while let Ok(Some(c)) = con.recv(true) {
            let _ = con.send(c);
        }
        if lines != 0 && n > lines + 1 {
            watchdog(0);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// How [`run_hostile`] misbehaves after its nonsense register writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// A 2-byte read of a 4-byte register (the device refuses it).
    OddWidth,
    /// A read past the last device window (no device there).
    PastWindow,
    /// A read-modify-write on a register (`add`), which no MMIO emulation
    /// performs.
    Unsupported,
}

/// A guest that abuses the console's registers directly: nonsense writes
/// (which the device must absorb), then the access of `case`, which must
/// end this guest only. It says on stderr how far it got.
pub fn run_hostile(case: Hostile) -> ! {
    watchdog(20);
    if let Err(e) = setup() {
        eprintln!("hostile: setup failed: {e:?}");
        std::process::exit(2);
    }
    let reg = |off: u64| (layout::slot(0) + off) as *mut u32;
    for (off, v) in [
        (0x70, 0xdead_beef),
        (0x30, 9999),
        (0x38, u32::MAX),
        (0x44, 1),
        (0x50, 77),
        (0x14, u32::MAX),
        (0x70, 0),
    ] {
        // SAFETY: a register of slot 0 in the reserved MMIO range; the
        // access traps into the VMM by design.
        unsafe { std::ptr::write_volatile(reg(off), v) };
    }
    // SAFETY: as above.
    let magic = unsafe { std::ptr::read_volatile(reg(0)) };
    eprintln!("hostile: survived nonsense writes; magic still {magic:#x}");
    match case {
        Hostile::OddWidth => {
            eprintln!("hostile: 2-byte read at offset 0x72");
            // SAFETY: as above (an unaligned 2-byte register read).
            let v = unsafe { std::ptr::read_volatile((layout::slot(0) + 0x72) as *const u16) };
            eprintln!("hostile: odd-width read returned {v:#x}");
        }
        Hostile::PastWindow => {
            let at = layout::slot(layout::SLOTS) - 4;
            eprintln!("hostile: read at {at:#x}, past every device window");
            // SAFETY: in the reserved MMIO range; traps by design.
            let v = unsafe { std::ptr::read_volatile(at as *const u32) };
            eprintln!("hostile: past-window read returned {v:#x}");
        }
        Hostile::Unsupported => {
            eprintln!("hostile: add to a register");
            // SAFETY: a read-modify-write of a trapping register; the
            // supervisor refuses to emulate it.
            unsafe {
                core::arch::asm!("add dword ptr [{0}], 1", in(reg) reg(0x70), options(nostack))
            };
            eprintln!("hostile: add completed");
        }
    }
    std::process::exit(0)
}
