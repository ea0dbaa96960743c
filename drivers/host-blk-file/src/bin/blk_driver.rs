//! `blk_driver` on the host board: serves the `drv` blk hop from the disk
//! image bound to it as host resource `disk0` (`[[disk]]` in the
//! `.host.toml` file; compose writes it from `[host] disk`).
//!
//! Configuration: compose's driver section `0x0002_8001` v1 (virtualiser
//! channel, `drv` hop vaddr, data region size). At every start (and
//! restart) it publishes the disk size and its start count in the hop's
//! info block and notifies `blk_virt`, which resends whatever an earlier
//! incarnation held. Requests are served by
//! [`drv_host_blk_file::queued::QueuedDisk`] (the same checks and answers
//! as `FileDisk`): up to `DRIVER_SLOTS` of them at the disk at once through
//! io_uring, set up before the seccomp lockdown by a process constructor
//! ([`PREPARE`]); afterwards the engine needs only `io_uring_enter`.
#![no_main]

use core::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

use bulkhead_blk_protocol::{Response, WireResponse, REQUEST_LEN};
use bulkhead_config::FieldReader;
use bulkhead_ring::{Armed, RingError};
use bulkhead_runtime::{debug_println, Channel, ChannelSet, Handler};
use bulkhead_virt_blk_pd::hop::{HopRegions, Info, Lower, DRIVER_SLOTS, SLOT_BYTES};
use drv_host_blk_file::engine::EngineConfig;
use drv_host_blk_file::queued::{DriverHop, HopBroken, QueuedDisk, ServeError};

/// Compose's driver section for class blk.
const DEVICE: u32 = 0x0002_8001;
/// The host resource name compose binds.
const DISK: &str = "disk0";

/// The disk, built once before lockdown: a restart (memory kept, as on
/// Microkit) reuses it — no ring can be made, nothing mapped, afterwards.
static THE_DISK: AtomicPtr<QueuedDisk> = AtomicPtr::new(core::ptr::null_mut());
/// Why the engine could not be set up (errno), for `init` to report.
static PREPARE_ERRNO: AtomicI32 = AtomicI32::new(0);

/// A process constructor: runs before `main`, so before the runtime's
/// seccomp lockdown — making the io_uring ring needs `io_uring_setup`,
/// `mmap` and `io_uring_register`, which the PD may not call afterwards.
/// No file yet (the image's descriptor comes with the boot message);
/// `init` attaches it.
#[used]
#[link_section = ".init_array"]
static PREPARE: extern "C" fn() = prepare;

extern "C" fn prepare() {
    let cfg = EngineConfig {
        depth: DRIVER_SLOTS,
        max_len: SLOT_BYTES as usize,
        read_only: false,
        // The descriptor comes later; `direct_io` decides then.
        direct: false,
    };
    match QueuedDisk::prepare(&cfg) {
        Ok(d) => THE_DISK.store(Box::into_raw(Box::new(d)), Ordering::Release),
        Err(e) => PREPARE_ERRNO.store(e.raw_os_error().unwrap_or(-1), Ordering::Release),
    }
}

struct BlkDriver {
    hop: Lower,
    virt: Channel,
    disk: &'static mut QueuedDisk,
}

fn stop(why: core::fmt::Arguments<'_>) -> ! {
    debug_println!("blk_driver: {}", why);
    bulkhead_runtime::halt(1)
}

/// The disk image's size in bytes (`lseek` to the end: a PD may not
/// `stat`; positioned I/O ignores the file offset).
fn image_len(fd: i32) -> Option<u64> {
    // SAFETY: `fd` is a descriptor this PD was given; lseek only moves its
    // file offset.
    let end = unsafe { libc::lseek(fd, 0, libc::SEEK_END) };
    u64::try_from(end).ok()
}

/// Puts the image's descriptor into `O_DIRECT` (the supervisor opens it
/// buffered): reads and writes then bypass the page cache, as a device's
/// would. Kept only if a 512-byte read at offset 0 works that way (every
/// blk request is 512-byte aligned); otherwise back to buffered I/O, said
/// loudly. Returns the alignment in use.
fn direct_io(fd: i32) -> Option<u32> {
    /// A page-aligned probe buffer.
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    // SAFETY: fcntl on a descriptor this PD was given; F_SETFL changes only
    // its status flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_DIRECT) } != 0 {
        debug_println!("blk_driver: NO O_DIRECT (the image's filesystem refuses it): reads and writes go through the page cache");
        return None;
    }
    let mut page = Page([0; 4096]);
    // SAFETY: reads at most 512 bytes into the live, aligned local buffer.
    let n = unsafe { libc::pread(fd, page.0.as_mut_ptr().cast(), 512, 0) };
    if n >= 0 {
        return Some(512);
    }
    // SAFETY: as above; clears the status flags again.
    unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
    debug_println!("blk_driver: NO O_DIRECT (512-byte direct reads refused): reads and writes go through the page cache");
    None
}

fn disk() -> &'static mut QueuedDisk {
    let p = THE_DISK.load(Ordering::Acquire);
    if p.is_null() {
        stop(format_args!(
            "no I/O engine (io_uring set-up failed before lockdown: errno {})",
            PREPARE_ERRNO.load(Ordering::Acquire)
        ));
    }
    // SAFETY: `p` came from Box::into_raw in `prepare` and is never freed.
    // The PD is single-threaded and a restart discards the previous
    // incarnation's stack, so this is the only live reference.
    let d = unsafe { &mut *p };
    // An earlier incarnation may have left requests in flight: wait for
    // them and forget them (blk_virt resends what was not answered).
    if let Err(e) = d.drain() {
        stop(format_args!("draining the I/O engine: {e}"));
    }
    let fd = bulkhead_runtime::host_resource(DISK)
        .unwrap_or_else(|e| stop(format_args!("no disk image bound as `{DISK}`: {e}")));
    let len = image_len(fd).unwrap_or_else(|| stop(format_args!("cannot size the disk image")));
    // The descriptor stays open for the PD's life (the runtime holds it).
    // A read-only binding makes every write fail with IOERR (EBADF).
    if d.attach_fd(fd, len, direct_io(fd)).is_err() {
        stop(format_args!("I/O engine busy after draining"));
    }
    d
}

/// (virtualiser channel, `drv` hop vaddr) from the configuration.
fn config() -> (u8, u64) {
    let cfg = match bulkhead_runtime::config() {
        Ok(Some(c)) => c,
        Ok(None) => stop(format_args!("no configuration region")),
        Err(e) => stop(format_args!("configuration: {e}")),
    };
    let Some(s) = cfg.section(DEVICE).filter(|s| s.version == 1) else {
        stop(format_args!(
            "configuration lacks the blk driver section v1"
        ));
    };
    let mut r = FieldReader::new(s.payload());
    let parsed = (|| {
        let ch = u8::try_from(r.u32().ok()?).ok()?;
        let _windows = r.u32().ok()?;
        let hop = r.u64().ok()?;
        Some((ch, hop))
    })();
    parsed.unwrap_or_else(|| stop(format_args!("driver section refused")))
}

/// The `drv` hop's lower end as the engine's serve loop sees it.
struct Hop<'a> {
    hop: &'a mut Lower,
    virt: Channel,
}

impl DriverHop for Hop<'_> {
    fn pop(&mut self) -> Result<Option<[u8; REQUEST_LEN]>, HopBroken> {
        self.hop
            .rx
            .pop()
            .map(|w| w.map(|w| w.0))
            .map_err(|_| HopBroken)
    }

    fn arm(&mut self) -> Result<bool, HopBroken> {
        match self.hop.rx.arm_signal() {
            Ok(Armed::MaySleep) => Ok(true),
            Ok(Armed::Pending) => Ok(false),
            Err(_) => Err(HopBroken),
        }
    }

    fn push(&mut self, rsp: &Response) -> Result<bool, HopBroken> {
        match self.hop.tx.push(&WireResponse::from(rsp)) {
            Ok(()) => Ok(true),
            Err(RingError::Full) => Ok(false),
            Err(_) => Err(HopBroken),
        }
    }

    fn notify(&mut self) {
        if self.hop.tx.notify_needed() {
            let _ = self.virt.notify();
        }
    }

    fn regions(&mut self) -> (&[u8], &mut [u8]) {
        let (out, inp) = (self.hop.regions.out, self.hop.regions.inp);
        // SAFETY: `blk_drv_out` is mapped readable and `blk_drv_in`
        // read-write for the PD's life, in different regions. blk_virt
        // writes a slot of `out` only before sending the request that names
        // it (its bytes are copied into a bounce buffer when the request is
        // taken) and reads a slot of `in` only after this driver's response
        // (its bytes are copied in when the read completes, before the
        // response), so nobody changes the bytes behind these slices while
        // they are used (a faulty blk_virt can only spoil its own data). The
        // slices live no longer than the borrow of this hop.
        unsafe {
            (
                core::slice::from_raw_parts(out.vaddr() as *const u8, out.size()),
                core::slice::from_raw_parts_mut(inp.vaddr() as *mut u8, inp.size()),
            )
        }
    }
}

impl BlkDriver {
    fn serve(&mut self) {
        let mut hop = Hop {
            hop: &mut self.hop,
            virt: self.virt,
        };
        match self.disk.serve(&mut hop) {
            Ok(()) => {}
            Err(ServeError::Hop(_)) => stop(format_args!("a ring of the drv hop is corrupt")),
            Err(ServeError::Io(e)) => stop(format_args!("io_uring: {e}")),
        }
    }
}

impl Handler for BlkDriver {
    fn init() -> Self {
        let (ch, hop_vaddr) = config();
        let regions =
            HopRegions::at(hop_vaddr).unwrap_or_else(|e| stop(format_args!("drv hop: {e:?}")));
        let hop = Lower::attach(regions).unwrap_or_else(|e| stop(format_args!("drv hop: {e:?}")));
        let disk = disk();
        let epoch = hop
            .published()
            .map_or(0, |i| i.epoch)
            .wrapping_add(1)
            .max(1);
        let info = Info {
            epoch,
            sectors: disk.sectors(),
            read_only: false,
        };
        if hop.publish(&info).is_err() {
            stop(format_args!("cannot publish the disk's info"));
        }
        debug_println!(
            "blk_driver: start {epoch}: {} sectors, io_uring depth {} ({:?})",
            info.sectors,
            disk.engine().depth(),
            disk.engine().direct()
        );
        let mut me = BlkDriver {
            hop,
            virt: Channel::new(ch),
            disk,
        };
        // Tell blk_virt (a new epoch means "resend what I held"), then take
        // whatever is already queued.
        let _ = me.virt.notify();
        me.serve();
        me
    }

    fn notified(&mut self, _channels: ChannelSet) {
        self.serve();
    }
}

bulkhead_runtime::protection_domain!(BlkDriver);
