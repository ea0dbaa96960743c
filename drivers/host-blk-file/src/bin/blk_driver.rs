//! `blk_driver` on the host board: serves the `drv` blk hop from the disk
//! image bound to it as host resource `disk0` (`[[disk]]` in the
//! `.host.toml` file; compose writes it from `[host] disk`).
//!
//! Configuration: compose's driver section `0x0002_8001` v1 (virtualiser
//! channel, `drv` hop vaddr, data region size). At every start (and
//! restart) it publishes the disk size and its start count in the hop's
//! info block and notifies `blk_virt`, which resends whatever an earlier
//! incarnation held. Requests are served one at a time with
//! [`FileDisk::handle_bytes`] (`pread`/`pwrite`/`fdatasync`): the only use
//! of the library, so another I/O engine can take its place.
#![no_main]

use core::sync::atomic::{AtomicPtr, Ordering};
use std::fs::File;
use std::os::fd::FromRawFd;

use bulkhead_blk_protocol::{WireRequest, WireResponse};
use bulkhead_config::FieldReader;
use bulkhead_ring::{Armed, RingError};
use bulkhead_runtime::{debug_println, Channel, ChannelSet, Handler};
use bulkhead_virt_blk_pd::hop::{HopRegions, Info, Lower};
use drv_host_blk_file::FileDisk;

/// Compose's driver section for class blk.
const DEVICE: u32 = 0x0002_8001;
/// The host resource name compose binds.
const DISK: &str = "disk0";

/// The disk, built once: a restart (memory kept, as on Microkit) reuses it
/// instead of allocating again (no new mappings after lockdown).
static THE_DISK: AtomicPtr<FileDisk> = AtomicPtr::new(core::ptr::null_mut());

struct BlkDriver {
    hop: Lower,
    virt: Channel,
    disk: &'static mut FileDisk,
    /// A response the full ring could not take yet.
    held: Option<WireResponse>,
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

fn disk() -> &'static mut FileDisk {
    let mut p = THE_DISK.load(Ordering::Acquire);
    if p.is_null() {
        let fd = bulkhead_runtime::host_resource(DISK)
            .unwrap_or_else(|e| stop(format_args!("no disk image bound as `{DISK}`: {e}")));
        let len = image_len(fd).unwrap_or_else(|| stop(format_args!("cannot size the disk image")));
        // SAFETY: the descriptor was handed to this PD for this disk and
        // nothing else owns it; the File takes it over for the PD's life.
        let file = unsafe { File::from_raw_fd(fd) };
        // A read-only binding makes every write fail with IOERR (EBADF).
        p = Box::into_raw(Box::new(FileDisk::from_file(file, false, len)));
        THE_DISK.store(p, Ordering::Release);
    }
    // SAFETY: `p` came from Box::into_raw above (now or before a restart)
    // and is never freed. The PD is single-threaded and a restart discards
    // the previous incarnation's stack, so this is the only live reference.
    unsafe { &mut *p }
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

impl BlkDriver {
    /// Serves requests until the ring is empty or the response ring full.
    fn serve(&mut self) {
        let mut pushed = false;
        loop {
            if let Some(rsp) = self.held {
                match self.hop.tx.push(&rsp) {
                    Ok(()) => {
                        self.held = None;
                        pushed = true;
                    }
                    Err(RingError::Full) => break,
                    Err(_) => stop(format_args!("response ring corrupt")),
                }
            }
            let w: WireRequest = match self.hop.rx.pop() {
                Ok(Some(w)) => w,
                Ok(None) => match self.hop.rx.arm_signal() {
                    Ok(Armed::Pending) => continue,
                    Ok(Armed::MaySleep) => break,
                    Err(_) => stop(format_args!("request ring corrupt")),
                },
                Err(_) => stop(format_args!("request ring corrupt")),
            };
            let (out, inp) = (self.hop.regions.out, self.hop.regions.inp);
            // SAFETY: `blk_drv_out` is mapped readable and `blk_drv_in`
            // read-write for the PD's life, in different regions. blk_virt
            // writes a slot of `out` only before sending the request that
            // names it and reads a slot of `in` only after this driver's
            // response, so nobody changes the bytes behind these slices
            // while the request is served (a faulty blk_virt can only spoil
            // its own data). No other reference into them exists here, and
            // they are dropped at the end of this iteration.
            let (out, inp) = unsafe {
                (
                    core::slice::from_raw_parts(out.vaddr() as *const u8, out.size()),
                    core::slice::from_raw_parts_mut(inp.vaddr() as *mut u8, inp.size()),
                )
            };
            let rsp = self.disk.handle_bytes(&w.0, out, inp);
            self.held = Some(WireResponse::from(&rsp));
        }
        if pushed && self.hop.tx.notify_needed() {
            let _ = self.virt.notify();
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
        debug_println!("blk_driver: start {epoch}: {} sectors", info.sectors);
        let mut me = BlkDriver {
            hop,
            virt: Channel::new(ch),
            disk,
            held: None,
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
