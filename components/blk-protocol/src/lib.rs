//! The block wire format shared by the VMM, the block virtualiser and block
//! drivers: a fixed 32-byte [`Request`] and an 8-byte [`Response`], encoded
//! little endian field by field (no `repr(C)`), versioned, and decoded with
//! typed [`DecodeError`]s because the bytes come from a neighbour PD.
//!
//! ```
//! use bulkhead_blk_protocol::{Op, Request, Response, Status};
//! let r = Request::read(7, 2048, 8, 0x1000);
//! let bytes = r.encode();
//! assert_eq!(Request::decode(&bytes), Ok(r));
//! assert_eq!(r.data_range(0x2000), Some(0x1000..0x2000));
//! let rsp = Response { id: 7, status: Status::Ok };
//! assert_eq!(Response::decode(&rsp.encode()), Ok(rsp));
//! assert_eq!(r.op, Op::Read);
//! ```
#![no_std]
#![forbid(unsafe_code)]

use core::ops::Range;

use bulkhead_ring::Pod;

/// Protocol version carried in every message.
pub const VERSION: u16 = 1;
/// Bytes in an encoded request.
pub const REQUEST_LEN: usize = 32;
/// Bytes in an encoded response.
pub const RESPONSE_LEN: usize = 8;
/// Sector size of every hop.
pub const SECTOR: u64 = 512;
/// Request flag: the data must be durable before the response (FUA).
pub const FLAG_FUA: u8 = 1;
/// Every flag this version knows.
const KNOWN_FLAGS: u8 = FLAG_FUA;

/// A block operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read `count` sectors into the data region.
    Read,
    /// Write `count` sectors from the data region.
    Write,
    /// Make every write completed before this request durable.
    Flush,
    /// The sectors' contents may be dropped (reads return anything).
    Discard,
    /// The sectors read as zeroes afterwards.
    WriteZeroes,
}

impl Op {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Op::Read => 1,
            Op::Write => 2,
            Op::Flush => 3,
            Op::Discard => 4,
            Op::WriteZeroes => 5,
        }
    }

    /// The op for a wire code.
    pub fn from_code(code: u8) -> Option<Op> {
        Some(match code {
            1 => Op::Read,
            2 => Op::Write,
            3 => Op::Flush,
            4 => Op::Discard,
            5 => Op::WriteZeroes,
            _ => return None,
        })
    }

    /// Whether the op changes the disk contents.
    pub fn modifies(self) -> bool {
        matches!(self, Op::Write | Op::Discard | Op::WriteZeroes)
    }

    /// Whether the op carries data in a data region.
    pub fn has_data(self) -> bool {
        matches!(self, Op::Read | Op::Write)
    }
}

/// A response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done.
    Ok,
    /// Failed (out of range, read-only, medium error, …).
    IoErr,
    /// Not supported by this hop.
    Unsupported,
}

impl Status {
    /// The wire code (the same numbers as virtio-blk's status byte).
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::IoErr => 1,
            Status::Unsupported => 2,
        }
    }

    /// The status for a wire code.
    pub fn from_code(code: u8) -> Option<Status> {
        Some(match code {
            0 => Status::Ok,
            1 => Status::IoErr,
            2 => Status::Unsupported,
            _ => return None,
        })
    }
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than a message.
    Short,
    /// A version this build does not speak.
    Version(u16),
    /// An unknown op code.
    Op(u8),
    /// Unknown flag bits.
    Flags(u8),
    /// An unknown status code.
    Status(u8),
    /// `data_len` does not match `count` for the op (or a flush has a count).
    Length,
    /// `sector + count` or `data_offset + data_len` overflows.
    Overflow,
    /// A reserved field is not zero.
    Reserved,
}

/// A block request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Requester-chosen id, echoed in the response.
    pub id: u32,
    /// The operation.
    pub op: Op,
    /// [`FLAG_FUA`] or 0.
    pub flags: u8,
    /// First sector.
    pub sector: u64,
    /// Sectors.
    pub count: u32,
    /// Offset of the payload in the hop's data region.
    pub data_offset: u64,
    /// Payload bytes (`count × 512` for read/write, else 0).
    pub data_len: u32,
}

fn le16(b: &[u8], at: usize) -> u16 {
    let mut w = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        w.copy_from_slice(s);
    }
    u16::from_le_bytes(w)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

impl Request {
    /// A read of `count` sectors at `sector` into `data_offset` (saturates
    /// the length; [`Request::validate`] catches that).
    pub fn read(id: u32, sector: u64, count: u32, data_offset: u64) -> Request {
        Request {
            id,
            op: Op::Read,
            flags: 0,
            sector,
            count,
            data_offset,
            data_len: count.saturating_mul(512),
        }
    }

    /// A write of `count` sectors at `sector` from `data_offset`.
    pub fn write(id: u32, sector: u64, count: u32, data_offset: u64) -> Request {
        Request {
            op: Op::Write,
            ..Request::read(id, sector, count, data_offset)
        }
    }

    /// A request without data (flush, discard, write-zeroes).
    pub fn no_data(id: u32, op: Op, sector: u64, count: u32) -> Request {
        Request {
            id,
            op,
            flags: 0,
            sector,
            count,
            data_offset: 0,
            data_len: 0,
        }
    }

    /// Checks the field combination (what [`Request::decode`] enforces).
    ///
    /// # Errors
    /// [`DecodeError::Flags`], [`DecodeError::Length`] or
    /// [`DecodeError::Overflow`].
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::Flags(self.flags));
        }
        let want = if self.op.has_data() {
            u64::from(self.count) * SECTOR
        } else {
            0
        };
        if u64::from(self.data_len) != want || (self.op == Op::Flush && self.count != 0) {
            return Err(DecodeError::Length);
        }
        if self.sector.checked_add(u64::from(self.count)).is_none()
            || self
                .data_offset
                .checked_add(u64::from(self.data_len))
                .is_none()
        {
            return Err(DecodeError::Overflow);
        }
        Ok(())
    }

    /// The payload's byte range in a data region of `region_len` bytes, or
    /// `None` if it does not fit.
    pub fn data_range(&self, region_len: usize) -> Option<Range<usize>> {
        let start = usize::try_from(self.data_offset).ok()?;
        let end = start.checked_add(usize::try_from(self.data_len).ok()?)?;
        (end <= region_len).then_some(start..end)
    }

    /// The sectors `[sector, sector + count)`, if they do not overflow.
    pub fn end_sector(&self) -> Option<u64> {
        self.sector.checked_add(u64::from(self.count))
    }

    /// The wire bytes.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0..2].copy_from_slice(&VERSION.to_le_bytes());
        b[2] = self.op.code();
        b[3] = self.flags;
        b[4..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..16].copy_from_slice(&self.sector.to_le_bytes());
        b[16..20].copy_from_slice(&self.count.to_le_bytes());
        b[20..24].copy_from_slice(&self.data_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.data_offset.to_le_bytes());
        b
    }

    /// Decodes and validates untrusted bytes (extra bytes are ignored).
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first thing wrong.
    pub fn decode(b: &[u8]) -> Result<Request, DecodeError> {
        if b.len() < REQUEST_LEN {
            return Err(DecodeError::Short);
        }
        let version = le16(b, 0);
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let op = Op::from_code(b[2]).ok_or(DecodeError::Op(b[2]))?;
        let r = Request {
            id: le32(b, 4),
            op,
            flags: b[3],
            sector: le64(b, 8),
            count: le32(b, 16),
            data_len: le32(b, 20),
            data_offset: le64(b, 24),
        };
        r.validate()?;
        Ok(r)
    }
}

/// A block response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The request's id.
    pub id: u32,
    /// The outcome.
    pub status: Status,
}

impl Response {
    /// The wire bytes.
    pub fn encode(&self) -> [u8; RESPONSE_LEN] {
        let mut b = [0u8; RESPONSE_LEN];
        b[0..2].copy_from_slice(&VERSION.to_le_bytes());
        b[2] = self.status.code();
        b[4..8].copy_from_slice(&self.id.to_le_bytes());
        b
    }

    /// Decodes untrusted bytes.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first thing wrong.
    pub fn decode(b: &[u8]) -> Result<Response, DecodeError> {
        if b.len() < RESPONSE_LEN {
            return Err(DecodeError::Short);
        }
        let version = le16(b, 0);
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let status = Status::from_code(b[2]).ok_or(DecodeError::Status(b[2]))?;
        if b[3] != 0 {
            return Err(DecodeError::Reserved);
        }
        Ok(Response {
            id: le32(b, 4),
            status,
        })
    }
}

/// A ring slot holding the bytes of a request (8 words); decode with
/// [`WireRequest::decode`] after popping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireRequest(pub [u8; REQUEST_LEN]);

/// A ring slot holding the bytes of a response (2 words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireResponse(pub [u8; RESPONSE_LEN]);

impl WireRequest {
    /// Decodes the slot's bytes. See [`Request::decode`].
    ///
    /// # Errors
    /// As [`Request::decode`].
    pub fn decode(&self) -> Result<Request, DecodeError> {
        Request::decode(&self.0)
    }
}

impl From<&Request> for WireRequest {
    fn from(r: &Request) -> Self {
        WireRequest(r.encode())
    }
}

impl WireResponse {
    /// Decodes the slot's bytes. See [`Response::decode`].
    ///
    /// # Errors
    /// As [`Response::decode`].
    pub fn decode(&self) -> Result<Response, DecodeError> {
        Response::decode(&self.0)
    }
}

impl From<&Response> for WireResponse {
    fn from(r: &Response) -> Self {
        WireResponse(r.encode())
    }
}

fn store_words(bytes: &[u8], put: &mut impl FnMut(usize, u32)) {
    for (i, w) in bytes.chunks_exact(4).enumerate() {
        put(i, le32(w, 0));
    }
}

fn load_words<const L: usize>(get: &mut impl FnMut(usize) -> u32) -> [u8; L] {
    let mut b = [0u8; L];
    for (i, w) in b.chunks_exact_mut(4).enumerate() {
        w.copy_from_slice(&get(i).to_le_bytes());
    }
    b
}

/// Words: the 32 request bytes, 4 per word, little endian.
impl Pod for WireRequest {
    const WORDS: usize = REQUEST_LEN / 4;
    fn store(&self, put: &mut impl FnMut(usize, u32)) {
        store_words(&self.0, put);
    }
    fn load(get: &mut impl FnMut(usize) -> u32) -> Self {
        WireRequest(load_words(get))
    }
}

/// Words: the 8 response bytes, 4 per word, little endian.
impl Pod for WireResponse {
    const WORDS: usize = RESPONSE_LEN / 4;
    fn store(&self, put: &mut impl FnMut(usize, u32)) {
        store_words(&self.0, put);
    }
    fn load(get: &mut impl FnMut(usize) -> u32) -> Self {
        WireResponse(load_words(get))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_field_is_checked() {
        let good = Request::write(1, 10, 2, 4096).encode();
        assert!(Request::decode(&good).is_ok());
        assert_eq!(Request::decode(&good[..31]), Err(DecodeError::Short));
        let mut b = good;
        b[0] = 2;
        assert_eq!(Request::decode(&b), Err(DecodeError::Version(2)));
        let mut b = good;
        b[2] = 9;
        assert_eq!(Request::decode(&b), Err(DecodeError::Op(9)));
        let mut b = good;
        b[3] = 0x80;
        assert_eq!(Request::decode(&b), Err(DecodeError::Flags(0x80)));
        let mut b = good;
        b[20] = 1; // data_len no longer count * 512
        assert_eq!(Request::decode(&b), Err(DecodeError::Length));
        let mut r = Request::write(1, u64::MAX, 1, 0);
        assert_eq!(Request::decode(&r.encode()), Err(DecodeError::Overflow));
        r = Request::write(1, 0, 1, u64::MAX - 10);
        assert_eq!(Request::decode(&r.encode()), Err(DecodeError::Overflow));
        let f = Request::no_data(3, Op::Flush, 0, 1);
        assert_eq!(Request::decode(&f.encode()), Err(DecodeError::Length));
        let d = Request::no_data(3, Op::Discard, 5, 100);
        assert_eq!(Request::decode(&d.encode()), Ok(d));
    }

    #[test]
    fn data_range_is_bounded() {
        let r = Request::read(1, 0, 8, 4096);
        assert_eq!(r.data_range(8192), Some(4096..8192));
        assert_eq!(r.data_range(8191), None);
    }

    #[test]
    fn response_checks() {
        let ok = Response {
            id: 9,
            status: Status::IoErr,
        };
        let b = ok.encode();
        assert_eq!(Response::decode(&b), Ok(ok));
        let mut x = b;
        x[2] = 7;
        assert_eq!(Response::decode(&x), Err(DecodeError::Status(7)));
        let mut x = b;
        x[3] = 1;
        assert_eq!(Response::decode(&x), Err(DecodeError::Reserved));
    }

    #[test]
    fn pod_round_trip() {
        let w = WireRequest::from(&Request::read(5, 77, 3, 512));
        let mut words = [0u32; 8];
        w.store(&mut |i, v| words[i] = v);
        let back = WireRequest::load(&mut |i| words[i]);
        assert_eq!(back.decode(), Ok(Request::read(5, 77, 3, 512)));
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(r) = Request::decode(&bytes) {
                prop_assert_eq!(&r.encode()[..], &bytes[..REQUEST_LEN]);
            }
            if let Ok(r) = Response::decode(&bytes) {
                prop_assert_eq!(&r.encode()[..], &bytes[..RESPONSE_LEN]);
            }
        }
    }
}
