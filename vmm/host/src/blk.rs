//! Class `blk` (slot 1): virtio-blk whose backend is the hop to `blk_virt`
//! (`components/virt-blk-pd`): requests into the hop's `req` ring, payload
//! through its `out`/`in` regions, completions from its `resp` ring.
//!
//! The guest's capacity and read-only flag are `blk_virt`'s to decide (it
//! checks the partition on the disk first), published in the hop's info
//! block. Until then the slot reads as zeros, like an absent device, and
//! the device appears once the info is there (checked at every access to
//! the slot and every notification from `blk_virt`).

use bulkhead_blk_protocol::{Request, WireRequest};
use bulkhead_ring::Armed;
use bulkhead_runtime::debug_println;
use bulkhead_virt_blk_pd::hop::{HopRegions, Upper};
use bulkhead_virtio::GuestMemory;
use bulkhead_vmm_core::{MmioDevice, VirtioMmio};
use bulkhead_vmm_devices::blk::{BlkBackend, BlkConfig, VirtioBlk, DATA_REGION_BYTES};

use crate::hops::{hop_region_name, NameBuf};
use crate::Class;

// The device model's slots are the hop's data regions' layout.
const _: () =
    assert!(bulkhead_vmm_devices::blk::SLOT_BYTES == bulkhead_virt_blk_pd::hop::SLOT_BYTES);

/// Whether this VMM has a blk hop by name (compose's `blk_<guest>_req`).
pub fn present_by_name() -> bool {
    let mut b = NameBuf::new();
    hop_region_name(&mut b, Class::Blk, "req")
        .is_some_and(|n| bulkhead_runtime::Region::get(n).is_ok())
}

/// The hop: at `vaddr` (from the configuration) or by compose's names.
fn regions(vaddr: Option<u64>) -> Option<HopRegions> {
    if let Some(v) = vaddr {
        return HopRegions::at(v).ok();
    }
    let mut b = NameBuf::new();
    let prefix = b.join(&[Class::Blk.name(), "_", crate::hops::guest_name()?])?;
    HopRegions::named(prefix).ok()
}

/// The hop end a VMM drives.
pub struct RingBlk {
    hop: Upper,
    /// `blk_virt` asked to be notified.
    pub notify: bool,
}

impl BlkBackend for RingBlk {
    fn data_out(&mut self) -> &mut [u8] {
        let r = self.hop.regions.out;
        // SAFETY: `blk_G_out` is mapped read-write at r.vaddr() for the life
        // of this PD and this VMM is its only writer (blk_virt maps it
        // read-only); no other reference to it exists in this PD, and the
        // `&mut self` borrow bounds this one.
        unsafe { core::slice::from_raw_parts_mut(r.vaddr() as *mut u8, r.size()) }
    }

    fn data_in(&self) -> &[u8] {
        let r = self.hop.regions.inp;
        // SAFETY: mapped readable for the PD's life. blk_virt writes a slot
        // of `blk_G_in` only while the device model has that slot's read in
        // flight, and the model copies out of a slot only after its
        // completion: the bytes read here are not being written. A faulty
        // blk_virt can only give this guest wrong data for its own read.
        unsafe { core::slice::from_raw_parts(r.vaddr() as *const u8, r.size()) }
    }

    fn submit(&mut self, req: &Request) -> bool {
        if self.hop.tx.push(&WireRequest::from(req)).is_err() {
            return false;
        }
        self.notify |= self.hop.tx.notify_needed();
        true
    }
}

type Model = VirtioMmio<VirtioBlk<RingBlk>>;

/// The blk slot: waiting for `blk_virt`'s info, or the device.
// Built once per VMM and never moved: no heap to box the model into.
#[allow(clippy::large_enum_variant)]
pub enum Device {
    /// Attached, `blk_virt` has not said what the guest may see yet.
    Waiting(Option<Upper>),
    /// The device.
    Ready(Model),
}

/// The blk slot over the hop (at `vaddr` if the configuration gave one),
/// or `None` if the hop is not mapped or its rings refuse.
pub fn attach(vaddr: Option<u64>) -> Option<Device> {
    let r = regions(vaddr)?;
    if r.out.size() < DATA_REGION_BYTES || r.inp.size() < DATA_REGION_BYTES {
        return None;
    }
    let mut hop = Upper::attach(r).ok()?;
    // Arm the response ring so blk_virt signals completions.
    let _ = hop.rx.arm_signal();
    let mut d = Device::Waiting(Some(hop));
    d.try_ready();
    Some(d)
}

impl Device {
    /// Builds the device once `blk_virt` has published the guest's info.
    pub fn try_ready(&mut self) {
        let Device::Waiting(hop) = self else { return };
        let Some(info) = hop.as_ref().and_then(Upper::info) else {
            return;
        };
        let Some(hop) = hop.take() else { return };
        let mut serial = [0u8; 20];
        serial[..12].copy_from_slice(b"bulkhead-blk");
        let config = BlkConfig {
            capacity: info.sectors,
            read_only: info.read_only,
            serial,
        };
        match VirtioMmio::new(VirtioBlk::new(RingBlk { hop, notify: false }, config)) {
            Ok(m) => {
                debug_println!(
                    "{}: blk: {} sectors{}",
                    bulkhead_runtime::pd_name(),
                    info.sectors,
                    if info.read_only { ", read-only" } else { "" }
                );
                *self = Device::Ready(m);
            }
            Err(_) => debug_println!("{}: blk model refused", bulkhead_runtime::pd_name()),
        }
    }

    /// Takes `blk_virt`'s completions into the model (the caller then polls
    /// the slot so the guest sees them).
    pub fn completions(&mut self) {
        self.try_ready();
        let Device::Ready(m) = self else { return };
        let dev = m.device_mut();
        loop {
            let rx = &mut dev.backend_mut().hop.rx;
            let w = match rx.pop() {
                Ok(Some(w)) => w,
                Ok(None) => match rx.arm_signal() {
                    Ok(Armed::Pending) => continue,
                    _ => break,
                },
                // A corrupt ring: blk_virt is faulty; nothing more comes.
                Err(_) => break,
            };
            if let Ok(rsp) = w.decode() {
                // An unknown id is counted by the model and ignored.
                let _ = dev.complete(rsp.id, rsp.status);
            }
        }
    }

    /// `blk_virt` asked to be notified (and clears the request).
    pub fn take_notify(&mut self) -> bool {
        match self {
            Device::Ready(m) => core::mem::take(&mut m.device_mut().backend_mut().notify),
            Device::Waiting(_) => false,
        }
    }
}

impl MmioDevice for Device {
    fn read(&mut self, offset: u64, width: u8, ram: &mut dyn GuestMemory) -> Result<u64, ()> {
        self.try_ready();
        match self {
            Device::Ready(m) => m.read(offset, width, ram),
            Device::Waiting(_) => Ok(0),
        }
    }

    fn write(
        &mut self,
        offset: u64,
        width: u8,
        value: u64,
        ram: &mut dyn GuestMemory,
    ) -> Result<(), ()> {
        self.try_ready();
        match self {
            Device::Ready(m) => m.write(offset, width, value, ram),
            Device::Waiting(_) => Ok(()),
        }
    }

    fn irq_level(&self) -> bool {
        match self {
            Device::Ready(m) => m.irq_level(),
            Device::Waiting(_) => false,
        }
    }

    fn poll(&mut self, ram: &mut dyn GuestMemory) {
        if let Device::Ready(m) = self {
            m.poll(ram);
        }
    }
}
