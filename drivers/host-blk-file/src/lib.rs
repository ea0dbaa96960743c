//! The host board's block driver: a disk image file behind the block
//! protocol ([`FileDisk`]), and the project's GPT disk-image builder
//! ([`gpt`]) used by tests and by `make run`.
//!
//! The driver side of `blk_drv_*`: it reads requests, checks each against
//! the image size and the data regions (the virtualiser is trusted less
//! than the disk), and answers with `pread`/`pwrite`/`fdatasync`. A write
//! is acknowledged once the kernel has it (page cache: the "device's
//! volatile cache"); FUA writes and flushes are `fdatasync`ed first.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bulkhead_blk_protocol::{Op, Request, Response, Status, FLAG_FUA, SECTOR};

#[cfg(test)]
mod alloc_count;
pub mod engine;
pub mod gpt;
pub mod queued;

/// Bytes written per zeroing step (discard / write-zeroes).
const ZERO_CHUNK: usize = 64 * 1024;

/// Counters for the driver's log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Requests answered `Ok`.
    pub ok: u64,
    /// Requests refused (malformed, out of range, data outside a region).
    pub refused: u64,
    /// Requests the file refused (I/O errors).
    pub io_errors: u64,
    /// `fdatasync` calls.
    pub syncs: u64,
}

/// A disk image file served over the block protocol.
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    sectors: u64,
    read_only: bool,
    zeroes: Vec<u8>,
    /// Counters.
    pub stats: DiskStats,
    /// The kind of the last I/O error, for the driver's log.
    pub last_io_error: Option<io::ErrorKind>,
}

impl FileDisk {
    /// Opens `path` (read-write unless `read_only`); the disk is the file's
    /// whole 512-byte sectors.
    ///
    /// # Errors
    /// The file cannot be opened or its size read.
    pub fn open(path: &Path, read_only: bool) -> io::Result<FileDisk> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        let len = file.metadata()?.len();
        Ok(FileDisk::from_file(file, read_only, len))
    }

    /// A disk over an already open `file` of `len` bytes (a driver PD gets
    /// its image as a descriptor and may not `open` or `statx`).
    pub fn from_file(file: File, read_only: bool, len: u64) -> FileDisk {
        FileDisk {
            file,
            sectors: len / SECTOR,
            read_only,
            zeroes: vec![0; ZERO_CHUNK],
            stats: DiskStats::default(),
            last_io_error: None,
        }
    }

    /// Disk size in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// The file (for benchmarks comparing against direct `pread`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Reads sectors `[lba, lba + buf.len() / 512)` directly (partition
    /// table parsing at start-up).
    ///
    /// # Errors
    /// Out of range or an I/O error.
    pub fn read_sectors(&self, lba: u64, buf: &mut [u8]) -> io::Result<()> {
        let off = self.byte_range(lba, buf.len() as u64)?;
        self.file.read_exact_at(buf, off)
    }

    fn byte_range(&self, lba: u64, len: u64) -> io::Result<u64> {
        let end = lba
            .checked_mul(SECTOR)
            .and_then(|o| o.checked_add(len))
            .filter(|&e| e <= self.sectors * SECTOR);
        match end {
            Some(_) => Ok(lba * SECTOR),
            None => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
    }

    /// Answers raw request bytes: a malformed request gets IOERR under the
    /// id found in its bytes.
    pub fn handle_bytes(&mut self, bytes: &[u8], data_out: &[u8], data_in: &mut [u8]) -> Response {
        match Request::decode(bytes) {
            Ok(r) => self.handle(&r, data_out, data_in),
            Err(_) => {
                self.stats.refused += 1;
                let mut id = [0u8; 4];
                if let Some(b) = bytes.get(4..8) {
                    id.copy_from_slice(b);
                }
                Response {
                    id: u32::from_le_bytes(id),
                    status: Status::IoErr,
                }
            }
        }
    }

    /// Executes `req`: a write's bytes come from `data_out` (the region the
    /// virtualiser writes), a read's go to `data_in`.
    pub fn handle(&mut self, req: &Request, data_out: &[u8], data_in: &mut [u8]) -> Response {
        let status = match self.execute(req, data_out, data_in) {
            Ok(()) => {
                self.stats.ok += 1;
                Status::Ok
            }
            Err(Refused::Request) => {
                self.stats.refused += 1;
                Status::IoErr
            }
            Err(Refused::Io(e)) => {
                self.stats.io_errors += 1;
                self.last_io_error = Some(e.kind());
                Status::IoErr
            }
        };
        Response { id: req.id, status }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.stats.syncs += 1;
        self.file.sync_data()
    }

    fn execute(
        &mut self,
        req: &Request,
        data_out: &[u8],
        data_in: &mut [u8],
    ) -> Result<(), Refused> {
        req.validate().map_err(|_| Refused::Request)?;
        if req.op.modifies() && self.read_only {
            return Err(Refused::Request);
        }
        let len = u64::from(req.count) * SECTOR;
        let off = if req.op == Op::Flush {
            0
        } else {
            self.byte_range(req.sector, len)
                .map_err(|_| Refused::Request)?
        };
        let bad_range = Refused::Request;
        match req.op {
            Op::Read => {
                let r = req.data_range(data_in.len()).ok_or(bad_range)?;
                self.file
                    .read_exact_at(&mut data_in[r], off)
                    .map_err(Refused::Io)?;
            }
            Op::Write => {
                let r = req.data_range(data_out.len()).ok_or(bad_range)?;
                self.file
                    .write_all_at(&data_out[r], off)
                    .map_err(Refused::Io)?;
            }
            Op::Flush => {}
            Op::Discard | Op::WriteZeroes => {
                // Discarded sectors read as zeroes here too: simpler and
                // leaks nothing of what the guest had there.
                let mut done = 0u64;
                while done < len {
                    let n = usize::try_from((len - done).min(ZERO_CHUNK as u64)).unwrap_or(0);
                    self.file
                        .write_all_at(&self.zeroes[..n], off + done)
                        .map_err(Refused::Io)?;
                    done += n as u64;
                }
            }
        }
        if req.op == Op::Flush || (req.op.modifies() && req.flags & FLAG_FUA != 0) {
            self.sync().map_err(Refused::Io)?;
        }
        Ok(())
    }
}

enum Refused {
    Request,
    Io(io::Error),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn disk(sectors: u64) -> (tempfile::NamedTempFile, FileDisk) {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(sectors * SECTOR).unwrap();
        let d = FileDisk::open(f.path(), false).unwrap();
        (f, d)
    }

    #[test]
    fn write_read_flush_zero() {
        let (_f, mut d) = disk(16);
        let mut out = vec![0u8; 4096];
        let mut inn = vec![0u8; 4096];
        out[512..1024].fill(0xAB);
        let w = Request::write(1, 3, 1, 512);
        assert_eq!(d.handle(&w, &out, &mut inn).status, Status::Ok);
        let r = Request::read(2, 3, 1, 1024);
        assert_eq!(d.handle(&r, &out, &mut inn).status, Status::Ok);
        assert!(inn[1024..1536].iter().all(|&b| b == 0xAB));
        let f = Request::no_data(3, Op::Flush, 0, 0);
        assert_eq!(d.handle(&f, &out, &mut inn).status, Status::Ok);
        assert_eq!(d.stats.syncs, 1);
        let z = Request::no_data(4, Op::WriteZeroes, 3, 1);
        assert_eq!(d.handle(&z, &out, &mut inn).status, Status::Ok);
        d.handle(&r, &out, &mut inn);
        assert!(inn[1024..1536].iter().all(|&b| b == 0));
    }

    #[test]
    fn refuses_out_of_range_and_bad_regions() {
        let (_f, mut d) = disk(16);
        let out = vec![0u8; 1024];
        let mut inn = vec![0u8; 1024];
        for r in [
            Request::read(1, 16, 1, 0),
            Request::read(1, 15, 2, 0),
            Request::read(1, u64::MAX / 512, 1, 0),
            Request::read(1, 0, 1, 1000),
            Request::write(1, 0, 3, 0),
            Request::no_data(1, Op::Discard, 10, 7),
        ] {
            assert_eq!(d.handle(&r, &out, &mut inn).status, Status::IoErr, "{r:?}");
        }
        let mut junk = [0xEEu8; 32];
        junk[4..8].copy_from_slice(&42u32.to_le_bytes());
        let rsp = d.handle_bytes(&junk, &out, &mut inn);
        assert_eq!((rsp.id, rsp.status), (42, Status::IoErr));
        assert_eq!(d.stats.refused, 7);
    }
}
