//! One blk hop as both of its ends see it: four regions at compose's
//! offsets from the hop's vaddr, a request ring and a response ring of
//! [`RING_CAPACITY`] slots, and an [`Info`] block the lower side publishes
//! beside its response ring.
//!
//! | region | offset | holds | written by |
//! |---|---:|---|---|
//! | `req` | 0 | request ring ([`WireRequest`], 32 B) | both (ring indices) |
//! | `resp` | 0x1000 | response ring ([`WireResponse`], 8 B) in its first [`RING_BYTES`]; [`Info`] at [`INFO_OFFSET`] | both (indices); info: the lower side |
//! | `out` | 0x20_0000 | payload going down (writes) | the upper side |
//! | `in` | 0x40_0000 | payload coming up (reads) | the lower side |
//!
//! Upper side: a VMM on its guest's hop, `blk_virt` on the `drv` hop. Lower
//! side: `blk_virt` on a guest hop, a driver on the `drv` hop.

use core::sync::atomic::{fence, Ordering};

use bulkhead_blk_protocol::{WireRequest, WireResponse};
use bulkhead_ring::{Consumer, Producer, Region as RingRegion, RingError};
use bulkhead_runtime::{Region, RuntimeError};

/// Offset of the `resp` region from the hop's vaddr.
pub const RESP: u64 = 0x1000;
/// Offset of the `out` region.
pub const OUT: u64 = 0x20_0000;
/// Offset of the `in` region.
pub const IN: u64 = 0x40_0000;
/// Slots of both rings of every blk hop.
pub const RING_CAPACITY: u32 = 64;
/// Bytes of the `resp` region its ring may use; the rest is the info
/// block's (the request ring has its whole page).
pub const RING_BYTES: usize = 0x800;
/// Offset of the [`Info`] block in the `resp` region.
pub const INFO_OFFSET: usize = 0x800;
/// Bytes of one request's payload slot in the data regions (the largest
/// request), as the VMM's device model uses them.
pub const SLOT_BYTES: u32 = 64 * 1024;
/// Payload slots of the `drv` hop's data regions `blk_virt` uses.
pub const DRIVER_SLOTS: usize = 32;

// The response ring (header + slots) fits below the info block; the
// request ring (384 + 64 × 32 bytes) fits its page.
const _: () = assert!(384 + 64 * 8 <= RING_BYTES);
const _: () = assert!(INFO_OFFSET + 24 <= 0x1000);

/// `"BLKI"`: an info block has been published.
const INFO_MAGIC: u64 = 0x424C_4B49;

/// Why a hop could not be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopError {
    /// A region is not mapped at the expected vaddr (which part).
    NoRegion(&'static str),
    /// A ring refused its region (layout mismatch with the other side,
    /// misaligned, too small).
    Ring(RingError),
}

/// The four regions of a hop.
#[derive(Debug, Clone, Copy)]
pub struct HopRegions {
    /// Request ring page.
    pub req: Region,
    /// Response ring page and info block.
    pub resp: Region,
    /// Payload going down.
    pub out: Region,
    /// Payload coming up.
    pub inp: Region,
}

impl HopRegions {
    /// The regions this PD maps at `vaddr` + compose's part offsets.
    ///
    /// # Errors
    /// [`HopError::NoRegion`] naming the first part not mapped there.
    pub fn at(vaddr: u64) -> Result<HopRegions, HopError> {
        let get = |off: u64, part: &'static str| {
            vaddr
                .checked_add(off)
                .and_then(|a| Region::at(a).ok())
                .ok_or(HopError::NoRegion(part))
        };
        Ok(HopRegions {
            req: get(0, "req")?,
            resp: get(RESP, "resp")?,
            out: get(OUT, "out")?,
            inp: get(IN, "in")?,
        })
    }

    /// The regions by memory-region (or setvar) name `<prefix>_req`,
    /// `_resp`, `_out`, `_in` (hand-written systems, the VMM).
    ///
    /// # Errors
    /// [`HopError::NoRegion`] naming the first part missing.
    pub fn named(prefix: &str) -> Result<HopRegions, HopError> {
        let get = |part: &'static str| {
            let mut buf = [0u8; 80];
            let name = join(&mut buf, prefix, part).ok_or(HopError::NoRegion(part))?;
            Region::get(name).map_err(|_| HopError::NoRegion(part))
        };
        Ok(HopRegions {
            req: get("req")?,
            resp: get("resp")?,
            out: get("out")?,
            inp: get("in")?,
        })
    }
}

fn join<'a>(buf: &'a mut [u8; 80], prefix: &str, part: &str) -> Option<&'a str> {
    let (a, b) = (prefix.len(), prefix.len() + 1 + part.len());
    buf.get_mut(..a)?.copy_from_slice(prefix.as_bytes());
    *buf.get_mut(a)? = b'_';
    buf.get_mut(a + 1..b)?.copy_from_slice(part.as_bytes());
    core::str::from_utf8(buf.get(..b)?).ok()
}

fn ring(r: &Region, limit: usize) -> Result<RingRegion<'static>, HopError> {
    if !r.perms().write {
        return Err(HopError::Ring(RingError::Misaligned));
    }
    // SAFETY: the runtime mapped `r.size()` bytes at `r.vaddr()` readable
    // and writable (checked just above) for the life of the PD, and this PD
    // touches the first `limit` bytes only through the ring built here (atomic
    // word accesses); the info block after them is accessed through the
    // runtime's checked accessors only.
    unsafe { RingRegion::from_raw(r.vaddr() as *mut u8, r.size().min(limit)) }
        .map_err(HopError::Ring)
}

/// The upper end: produces requests, consumes responses.
#[derive(Debug)]
pub struct Upper {
    /// Requests going down.
    pub tx: Producer<'static, WireRequest>,
    /// Responses coming up.
    pub rx: Consumer<'static, WireResponse>,
    /// The hop's regions.
    pub regions: HopRegions,
}

impl Upper {
    /// Attaches the upper end of the hop in `regions`.
    ///
    /// # Errors
    /// [`HopError::Ring`].
    pub fn attach(regions: HopRegions) -> Result<Upper, HopError> {
        Ok(Upper {
            tx: Producer::attach(ring(&regions.req, 0x1000)?, RING_CAPACITY)
                .map_err(HopError::Ring)?,
            rx: Consumer::attach(ring(&regions.resp, RING_BYTES)?, RING_CAPACITY)
                .map_err(HopError::Ring)?,
            regions,
        })
    }

    /// What the lower side published, if anything.
    pub fn info(&self) -> Option<Info> {
        Info::read(&self.regions.resp)
    }
}

/// The lower end: consumes requests, produces responses.
#[derive(Debug)]
pub struct Lower {
    /// Requests coming down.
    pub rx: Consumer<'static, WireRequest>,
    /// Responses going up.
    pub tx: Producer<'static, WireResponse>,
    /// The hop's regions.
    pub regions: HopRegions,
}

impl Lower {
    /// Attaches the lower end of the hop in `regions`.
    ///
    /// # Errors
    /// [`HopError::Ring`].
    pub fn attach(regions: HopRegions) -> Result<Lower, HopError> {
        Ok(Lower {
            rx: Consumer::attach(ring(&regions.req, 0x1000)?, RING_CAPACITY)
                .map_err(HopError::Ring)?,
            tx: Producer::attach(ring(&regions.resp, RING_BYTES)?, RING_CAPACITY)
                .map_err(HopError::Ring)?,
            regions,
        })
    }

    /// Publishes `info` for the upper side.
    ///
    /// # Errors
    /// The runtime's, if the `resp` region is too small or read-only.
    pub fn publish(&self, info: &Info) -> Result<(), RuntimeError> {
        info.publish(&self.regions.resp)
    }

    /// What this side published before (a restarted driver continues its
    /// epoch count from it).
    pub fn published(&self) -> Option<Info> {
        Info::read(&self.regions.resp)
    }
}

/// What the lower side of a hop tells the upper side, at [`INFO_OFFSET`]
/// of `resp`: `u64 state` (`"BLKI"` << 32 | epoch, written last), `u64`
/// sectors, `u64` flags (bit 0: read-only).
///
/// - `drv` hop (driver → `blk_virt`): the disk's size; the epoch counts the
///   driver's starts, so `blk_virt` sees a restart and resends what the
///   driver held.
/// - guest hop (`blk_virt` → VMM): the guest's partition size (its
///   virtio-blk capacity) and read-only; the VMM shows the device once this
///   is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// Starts of the publisher (≥ 1).
    pub epoch: u32,
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    /// Modifications fail.
    pub read_only: bool,
}

impl Info {
    /// Writes the block; the state word last, with release ordering, so a
    /// reader that sees the magic sees the fields.
    ///
    /// # Errors
    /// The runtime's accessor errors.
    pub fn publish(&self, resp: &Region) -> Result<(), RuntimeError> {
        resp.write_u64(INFO_OFFSET + 8, self.sectors)?;
        resp.write_u64(INFO_OFFSET + 16, u64::from(self.read_only))?;
        fence(Ordering::Release);
        resp.atomic_u64(INFO_OFFSET)?
            .store(INFO_MAGIC << 32 | u64::from(self.epoch), Ordering::Release);
        Ok(())
    }

    /// The published block, or `None` before the first publish.
    pub fn read(resp: &Region) -> Option<Info> {
        let state = resp.read_u64(INFO_OFFSET).ok()?;
        fence(Ordering::Acquire);
        if state >> 32 != INFO_MAGIC {
            return None;
        }
        Some(Info {
            epoch: u32::try_from(state & 0xFFFF_FFFF).ok()?,
            sectors: resp.read_u64(INFO_OFFSET + 8).ok()?,
            read_only: resp.read_u64(INFO_OFFSET + 16).ok()? & 1 != 0,
        })
    }
}

/// Copies `len` bytes from `src` at `src_off` to `dst` at `dst_off`
/// through a stack buffer (both are shared regions: no references into
/// them). False if either range is outside its region.
pub fn copy(src: &Region, src_off: u64, dst: &Region, dst_off: u64, len: u32) -> bool {
    let (Ok(s), Ok(d), Ok(n)) = (
        usize::try_from(src_off),
        usize::try_from(dst_off),
        usize::try_from(len),
    ) else {
        return false;
    };
    let fits = |r: &Region, at: usize| at.checked_add(n).is_some_and(|e| e <= r.size());
    if !fits(src, s) || !fits(dst, d) {
        return false;
    }
    // Sector payloads are 8-byte aligned in practice: a word at a time is
    // an eighth of the checked accesses of the byte path below.
    let aligned = |r: &Region, at: usize| (r.vaddr() + at) % 8 == 0;
    if n % 8 == 0 && aligned(src, s) && aligned(dst, d) {
        for k in (0..n).step_by(8) {
            let Ok(w) = src.read_u64(s + k) else {
                return false;
            };
            if dst.write_u64(d + k, w).is_err() {
                return false;
            }
        }
        return true;
    }
    let mut buf = [0u8; 512];
    let mut done = 0;
    while done < n {
        let k = (n - done).min(buf.len());
        if src.copy_out(s + done, &mut buf[..k]).is_err()
            || dst.copy_in(d + done, &buf[..k]).is_err()
        {
            return false;
        }
        done += k;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_joined_within_the_buffer() {
        let mut b = [0u8; 80];
        assert_eq!(join(&mut b, "blk_cluster", "req"), Some("blk_cluster_req"));
        let long = [b'x'; 79];
        let long = core::str::from_utf8(&long).unwrap();
        assert_eq!(join(&mut b, long, "req"), None);
    }
}
