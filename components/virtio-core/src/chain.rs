//! Validated descriptor chains: the walk over a guest's descriptor table
//! (§2.7.5) that copies each descriptor exactly once, and the
//! reader/writer cursors that copy buffer contents to and from guest memory.
//!
//! A [`DescriptorChain`] is a plain value (no heap, no borrow of guest
//! memory): once validated, nothing of it is read from the guest again.
//! ```
//! # use bulkhead_virtio::{DescriptorChain, GuestMemory, SliceMemory};
//! fn echo<M: GuestMemory>(mem: &mut M, chain: &DescriptorChain<8>) -> u32 {
//!     let mut buf = [0u8; 64];
//!     let n = chain.reader().read(mem, &mut buf).unwrap_or(0);
//!     let mut w = chain.writer();
//!     let _ = w.write(mem, &buf[..n]);
//!     w.written()
//! }
//! ```

use crate::mem::{GuestMemory, MemError};
use crate::spec::ring::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, DESC_SIZE};

/// Why a descriptor chain was rejected. A rejected chain is returned to the
/// used ring with length 0 (so the driver gets its buffers back) and counted
/// in [`crate::Queue::rejected_chains`]; the queue stays usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// A descriptor's `next` is not below the size of its table (§2.7.5: the table has
    /// queue-size entries; an indirect one len/16).
    NextOutOfRange,
    /// The chain visits more descriptors than its table holds: a loop
    /// (§2.7.5.2: "loops in the descriptor chain are forbidden").
    TooLong,
    /// The chain has more buffers than this device's chain capacity `N`.
    TooManyBuffers,
    /// The buffers add up to more than 2^32 bytes (§2.7.5.2).
    TotalLengthTooLarge,
    /// A device-readable buffer follows a device-writable one (§2.7.4.2).
    ReadableAfterWritable,
    /// A buffer is not entirely inside guest RAM.
    BufferOutOfRange,
    /// A descriptor could not be read from guest RAM.
    DescriptorOutOfRange,
    /// INDIRECT used without `VIRTIO_F_INDIRECT_DESC` negotiated (§2.7.5.3.1).
    IndirectNotNegotiated,
    /// INDIRECT inside an indirect table (§2.7.5.3.1).
    NestedIndirect,
    /// INDIRECT and NEXT on the same descriptor (§2.7.5.3.1).
    IndirectWithNext,
    /// An indirect table length of 0, not a multiple of 16, or more entries
    /// than the queue size (§2.7.5.3.1).
    IndirectBadLength,
    /// An indirect table not entirely inside guest RAM.
    IndirectOutOfRange,
}

/// A validated descriptor chain of at most `N` non-empty buffers: the
/// device-readable buffers first, then the device-writable ones.
///
/// Zero-length descriptors are validated (ordering, range of their address)
/// but not stored: they carry no bytes.
#[derive(Clone, Copy, Debug)]
pub struct DescriptorChain<const N: usize> {
    head: u16,
    epoch: u32,
    count: usize,
    readable: usize,
    readable_bytes: u64,
    writable_bytes: u64,
    addr: [u64; N],
    len: [u32; N],
}

impl<const N: usize> DescriptorChain<N> {
    fn empty(head: u16, epoch: u32) -> Self {
        Self {
            head,
            epoch,
            count: 0,
            readable: 0,
            readable_bytes: 0,
            writable_bytes: 0,
            addr: [0; N],
            len: [0; N],
        }
    }

    /// The head descriptor index: the id the used ring gets back.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// The queue epoch this chain was popped in (a queue reset starts a new
    /// epoch; completing a chain of an older epoch is refused).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Total bytes of the device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.readable_bytes
    }

    /// Total bytes of the device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.writable_bytes
    }

    /// The stored buffers as `(gpa, len, device_writable)`, in chain order.
    pub fn buffers(&self) -> impl Iterator<Item = (u64, u32, bool)> + '_ {
        let readable = self.readable;
        self.addr
            .iter()
            .zip(self.len.iter())
            .take(self.count)
            .enumerate()
            .map(move |(i, (a, l))| (*a, *l, i >= readable))
    }

    /// A cursor over the device-readable buffers.
    pub fn reader(&self) -> Reader<'_, N> {
        Reader {
            chain: self,
            cur: Cursor::new(0, self.readable),
            left: self.readable_bytes,
        }
    }

    /// A cursor over the device-writable buffers. It can never reach a
    /// device-readable buffer (§2.7.5.1: the device MUST NOT write to one).
    pub fn writer(&self) -> Writer<'_, N> {
        Writer {
            chain: self,
            cur: Cursor::new(self.readable, self.count),
            left: self.writable_bytes,
            written: 0,
        }
    }

    fn push(&mut self, addr: u64, len: u32, writable: bool) -> Result<(), ChainError> {
        if writable {
            self.writable_bytes += u64::from(len);
        } else {
            self.readable_bytes += u64::from(len);
        }
        if len == 0 {
            return Ok(());
        }
        let slot = self.count;
        match (self.addr.get_mut(slot), self.len.get_mut(slot)) {
            (Some(a), Some(l)) => {
                *a = addr;
                *l = len;
            }
            _ => return Err(ChainError::TooManyBuffers),
        }
        self.count += 1;
        if !writable {
            self.readable = self.count;
        }
        Ok(())
    }
}

/// One descriptor as copied out of guest memory.
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

fn read_desc<M: GuestMemory + ?Sized>(mem: &M, table: u64, index: u16) -> Result<Desc, ChainError> {
    let gpa = table
        .checked_add(u64::from(index) * DESC_SIZE)
        .ok_or(ChainError::DescriptorOutOfRange)?;
    let mut b = [0u8; 16];
    mem.read(gpa, &mut b)
        .map_err(|_| ChainError::DescriptorOutOfRange)?;
    let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, n0, n1] = b;
    Ok(Desc {
        addr: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
        len: u32::from_le_bytes([l0, l1, l2, l3]),
        flags: u16::from_le_bytes([f0, f1]),
        next: u16::from_le_bytes([n0, n1]),
    })
}

/// Walks the chain starting at `head` (already checked `< queue_size`) in
/// the descriptor table at `table`, copying each descriptor once.
pub(crate) fn walk<M: GuestMemory + ?Sized, const N: usize>(
    mem: &M,
    table: u64,
    queue_size: u16,
    head: u16,
    indirect_ok: bool,
    epoch: u32,
) -> Result<DescriptorChain<N>, ChainError> {
    let mut chain = DescriptorChain::empty(head, epoch);
    let mut table = table;
    // Entries in the current table (queue size, or an indirect table's).
    let mut table_len = u32::from(queue_size);
    let mut in_indirect = false;
    let mut index = head;
    // Descriptors visited in the current table: more than its entries is a loop.
    let mut visited: u32 = 0;
    let mut seen_writable = false;
    loop {
        let d = read_desc(mem, table, index)?;
        visited += 1;
        if d.flags & DESC_F_INDIRECT != 0 {
            if !indirect_ok {
                return Err(ChainError::IndirectNotNegotiated);
            }
            if in_indirect {
                return Err(ChainError::NestedIndirect);
            }
            if d.flags & DESC_F_NEXT != 0 {
                return Err(ChainError::IndirectWithNext);
            }
            let entries = d.len / 16;
            if d.len == 0 || d.len % 16 != 0 || entries > u32::from(queue_size) {
                return Err(ChainError::IndirectBadLength);
            }
            mem.check_range(d.addr, u64::from(d.len))
                .map_err(|_| ChainError::IndirectOutOfRange)?;
            // §2.7.5.3.2: the WRITE flag of the descriptor naming the table is ignored.
            table = d.addr;
            table_len = entries;
            in_indirect = true;
            index = 0;
            visited = 0;
            continue;
        }
        let writable = d.flags & DESC_F_WRITE != 0;
        if writable {
            seen_writable = true;
        } else if seen_writable {
            return Err(ChainError::ReadableAfterWritable);
        }
        // A zero-length buffer carries no bytes and is never accessed, so
        // its address does not matter.
        if d.len != 0 {
            mem.check_range(d.addr, u64::from(d.len))
                .map_err(|_| ChainError::BufferOutOfRange)?;
        }
        chain.push(d.addr, d.len, writable)?;
        if chain.readable_bytes + chain.writable_bytes > 1 << 32 {
            return Err(ChainError::TotalLengthTooLarge);
        }
        if d.flags & DESC_F_NEXT == 0 {
            return Ok(chain);
        }
        if u32::from(d.next) >= table_len {
            return Err(ChainError::NextOutOfRange);
        }
        if visited >= table_len {
            return Err(ChainError::TooLong);
        }
        index = d.next;
    }
}

/// Why a cursor copy stopped short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainIoError {
    /// The buffers hold fewer bytes than asked for.
    ShortChain,
    /// Guest memory refused the copy.
    Mem(MemError),
}

impl From<MemError> for ChainIoError {
    fn from(e: MemError) -> Self {
        Self::Mem(e)
    }
}

/// Position inside a run of buffers `[idx, end)`.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    idx: usize,
    off: u32,
    end: usize,
}

impl Cursor {
    fn new(idx: usize, end: usize) -> Self {
        Self { idx, off: 0, end }
    }

    /// The next piece of at most `want` bytes: `(gpa, len)`, advancing.
    fn next<const N: usize>(
        &mut self,
        c: &DescriptorChain<N>,
        want: usize,
    ) -> Option<(u64, usize)> {
        if self.idx >= self.end {
            return None;
        }
        let (addr, len) = (*c.addr.get(self.idx)?, *c.len.get(self.idx)?);
        let in_buf = len.checked_sub(self.off)?;
        let n = want.min(usize::try_from(in_buf).ok()?);
        let n32 = u32::try_from(n).ok()?;
        // Cannot overflow: the walk checked [addr, addr + len) is in guest RAM.
        let gpa = addr.checked_add(u64::from(self.off))?;
        self.off += n32;
        if self.off == len {
            self.idx += 1;
            self.off = 0;
        }
        Some((gpa, n))
    }
}

/// Copies out of the device-readable buffers of a chain, in order.
#[derive(Debug)]
pub struct Reader<'c, const N: usize> {
    chain: &'c DescriptorChain<N>,
    cur: Cursor,
    left: u64,
}

impl<const N: usize> Reader<'_, N> {
    /// Bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// Copies up to `buf.len()` bytes; returns how many were copied (fewer
    /// only at the end of the readable buffers).
    ///
    /// # Errors
    /// [`MemError`] if guest memory refuses a copy (the walk already checked
    /// every range, so only a shrinking guest RAM can cause it).
    pub fn read<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        buf: &mut [u8],
    ) -> Result<usize, MemError> {
        let mut done = 0;
        while done < buf.len() {
            let Some((gpa, n)) = self.cur.next(self.chain, buf.len() - done) else {
                break;
            };
            let dst = buf.get_mut(done..done + n).ok_or(MemError::OutOfRange)?;
            mem.read(gpa, dst)?;
            done += n;
            self.left -= n as u64;
        }
        Ok(done)
    }

    /// Copies exactly `buf.len()` bytes.
    ///
    /// # Errors
    /// [`ChainIoError::ShortChain`] if fewer bytes remain.
    pub fn read_exact<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        buf: &mut [u8],
    ) -> Result<(), ChainIoError> {
        if (buf.len() as u64) > self.left {
            return Err(ChainIoError::ShortChain);
        }
        let n = self.read(mem, buf)?;
        if n == buf.len() {
            Ok(())
        } else {
            Err(ChainIoError::ShortChain)
        }
    }
}

/// Copies into the device-writable buffers of a chain, in order, counting
/// the bytes written (the used length).
#[derive(Debug)]
pub struct Writer<'c, const N: usize> {
    chain: &'c DescriptorChain<N>,
    cur: Cursor,
    left: u64,
    written: u32,
}

impl<const N: usize> Writer<'_, N> {
    /// Writable bytes not written yet.
    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// Bytes written so far, for [`crate::Queue::add_used`]. Saturates at
    /// `u32::MAX` (the used ring's length field).
    pub fn written(&self) -> u32 {
        self.written
    }

    /// Copies up to `data.len()` bytes; returns how many were copied (fewer
    /// only at the end of the writable buffers).
    ///
    /// # Errors
    /// [`MemError`] if guest memory refuses a copy.
    pub fn write<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        data: &[u8],
    ) -> Result<usize, MemError> {
        let mut done = 0;
        while done < data.len() {
            let Some((gpa, n)) = self.cur.next(self.chain, data.len() - done) else {
                break;
            };
            let src = data.get(done..done + n).ok_or(MemError::OutOfRange)?;
            mem.write(gpa, src)?;
            done += n;
            self.left -= n as u64;
            self.written = self
                .written
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        }
        Ok(done)
    }

    /// Copies all of `data`.
    ///
    /// # Errors
    /// [`ChainIoError::ShortChain`] if fewer writable bytes remain (nothing
    /// is written then).
    pub fn write_all<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        data: &[u8],
    ) -> Result<(), ChainIoError> {
        if (data.len() as u64) > self.left {
            return Err(ChainIoError::ShortChain);
        }
        let n = self.write(mem, data)?;
        if n == data.len() {
            Ok(())
        } else {
            Err(ChainIoError::ShortChain)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guest RAM that claims 16 GiB (so huge buffers pass the range check)
    /// but stores only its first page.
    struct Huge([u8; 4096]);

    impl GuestMemory for Huge {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
            let s = usize::try_from(gpa).map_err(|_| MemError::OutOfRange)?;
            buf.copy_from_slice(self.0.get(s..s + buf.len()).ok_or(MemError::OutOfRange)?);
            Ok(())
        }
        fn write(&mut self, _gpa: u64, _data: &[u8]) -> Result<(), MemError> {
            Ok(())
        }
        fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
            match gpa.checked_add(len) {
                Some(end) if end <= 16 << 30 => Ok(()),
                _ => Err(MemError::OutOfRange),
            }
        }
    }

    fn put_desc(m: &mut Huge, i: usize, addr: u64, len: u32, flags: u16, next: u16) {
        let d = &mut m.0[i * 16..i * 16 + 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
    }

    /// §2.7.5.2: a chain of more than 2^32 bytes in total is refused, and
    /// exactly 2^32 is accepted.
    #[test]
    fn verify_spec_2_7_5_2_total_length_at_most_2_pow_32() {
        let mut m = Huge([0; 4096]);
        put_desc(&mut m, 0, 1 << 32, u32::MAX, DESC_F_NEXT, 1);
        put_desc(&mut m, 1, 2 << 32, 1, DESC_F_WRITE | DESC_F_NEXT, 2);
        put_desc(&mut m, 2, 3 << 32, 1, DESC_F_WRITE, 0);
        assert_eq!(
            walk::<_, 4>(&m, 0, 8, 0, false, 0).err(),
            Some(ChainError::TotalLengthTooLarge)
        );
        put_desc(&mut m, 1, 2 << 32, 1, DESC_F_WRITE, 0);
        let c = walk::<_, 4>(&m, 0, 8, 0, false, 0).unwrap();
        assert_eq!(c.readable_len() + c.writable_len(), 1 << 32);
    }

    /// §2.7.5: a chain may use every descriptor of the table, not one more.
    #[test]
    fn verify_spec_2_7_5_chain_may_be_exactly_queue_size_long() {
        let mut m = Huge([0; 4096]);
        for i in 0..8u16 {
            let last = i == 7;
            put_desc(
                &mut m,
                usize::from(i),
                0x1000,
                1,
                if last { 0 } else { DESC_F_NEXT },
                i + 1,
            );
        }
        assert_eq!(
            walk::<_, 8>(&m, 0, 8, 0, false, 0)
                .unwrap()
                .buffers()
                .count(),
            8
        );
        // The last one pointing back to the head makes it a loop.
        put_desc(&mut m, 7, 0x1000, 1, DESC_F_NEXT, 0);
        assert_eq!(
            walk::<_, 16>(&m, 0, 8, 0, false, 0).err(),
            Some(ChainError::TooLong)
        );
    }

    #[test]
    fn cursors_split_copies_across_buffers() {
        let mut ram = [0u8; 256];
        let mut mem = crate::SliceMemory::new(0, &mut ram);
        let mut c = DescriptorChain::<4>::empty(0, 0);
        c.push(0, 3, false).unwrap();
        c.push(16, 5, false).unwrap();
        c.push(64, 2, true).unwrap();
        c.push(80, 4, true).unwrap();
        mem.write(0, b"abc").unwrap();
        mem.write(16, b"defgh").unwrap();
        let mut r = c.reader();
        let mut buf = [0u8; 6];
        assert_eq!(r.read(&mem, &mut buf), Ok(6));
        assert_eq!(&buf, b"abcdef");
        assert_eq!(
            r.read_exact(&mem, &mut [0u8; 3]),
            Err(ChainIoError::ShortChain)
        );
        assert_eq!(r.read(&mem, &mut buf), Ok(2));
        let mut w = c.writer();
        assert_eq!(
            w.write_all(&mut mem, &[1; 7]),
            Err(ChainIoError::ShortChain)
        );
        assert_eq!(w.write(&mut mem, &[9; 7]), Ok(6));
        assert_eq!(w.written(), 6);
        assert_eq!(&mem.bytes()[64..66], &[9, 9]);
        assert_eq!(&mem.bytes()[80..84], &[9, 9, 9, 9]);
        assert_eq!(&mem.bytes()[66..80], &[0; 14]);
    }
}
