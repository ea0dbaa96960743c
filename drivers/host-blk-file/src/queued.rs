//! The file driver with requests in flight: the `blk_drv_*` contract of
//! [`crate::FileDisk`] (same checks, same answers) over the io_uring
//! [`Engine`], split into submit and complete so that a driver PD keeps
//! many requests at the disk at once.
//!
//! ```no_run
//! use bulkhead_blk_protocol::Request;
//! use drv_host_blk_file::engine::EngineConfig;
//! use drv_host_blk_file::queued::{QueuedDisk, Submitted};
//! let mut d = QueuedDisk::open("disk.img".as_ref(), &EngineConfig::default()).unwrap();
//! let (out, mut inn) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
//! match d.submit(&Request::read(1, 0, 8, 0), &out, inn.len()) {
//!     Submitted::Started => {}
//!     Submitted::Done(rsp) => { /* refused: answer now */ let _ = rsp; }
//!     Submitted::Busy => { /* leave it in the ring; complete some first */ }
//! }
//! d.wait(1).unwrap();
//! d.complete(&mut inn, |rsp| { /* push rsp to the response ring */ let _ = rsp; });
//! ```
//!
//! A driver loop: pop requests while [`QueuedDisk::submit`] does not say
//! `Busy`, [`QueuedDisk::wait`] for one completion while any are in
//! flight, [`QueuedDisk::complete`] (reads' bytes land in the `_in` region
//! then), answer, repeat — requests are picked up between completions.
//! [`QueuedDisk::serve`] is that loop over any [`DriverHop`].
//!
//! In a host-board driver PD: [`QueuedDisk::prepare`] before the seccomp
//! lockdown (the ring needs `io_uring_setup`/`mmap`), keep it in a static
//! (a restart keeps memory, and no new ring can be made afterwards), and
//! in `init` [`QueuedDisk::drain`] what an earlier incarnation left in
//! flight, then [`QueuedDisk::attach_fd`] the bound image's descriptor.
//! After lockdown the engine needs `io_uring_enter` only.
//!
//! Differences from [`crate::FileDisk`]: requests in flight together are
//! unordered (a flush is a barrier); discard and write-zeroes are
//! `fallocate(ZERO_RANGE)` (they read as zeroes afterwards, on
//! filesystems with zero-range support, else IOERR); a transfer longer than
//! the engine's `max_len` is refused (the virtualiser's slots are smaller).

use std::collections::VecDeque;
use std::io;
use std::os::unix::io::RawFd;
use std::path::Path;

use bulkhead_blk_protocol::{Op, Request, Response, Status, FLAG_FUA, REQUEST_LEN, SECTOR};

use crate::engine::{AttachError, DirectIo, Engine, EngineConfig, Kind, Outcome, SubmitError};
use crate::DiskStats;

/// What [`QueuedDisk::submit`] did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// In flight; its response comes from [`QueuedDisk::complete`].
    Started,
    /// Answered at once (refused); send this response.
    Done(Response),
    /// No room in flight: complete some requests and offer it again.
    Busy,
}

/// A request in flight: what its response and read data need.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u32,
    data_offset: usize,
    data_len: usize,
    /// Engine operations still to complete (2 for FUA zeroing: the zeroing
    /// and the barrier flush after it).
    parts: u8,
    failed: bool,
}

const FREE: Pending = Pending {
    id: 0,
    data_offset: 0,
    data_len: 0,
    parts: 0,
    failed: false,
};

/// A disk image file served over the block protocol with requests in
/// flight. See the module docs.
#[derive(Debug)]
pub struct QueuedDisk {
    engine: Engine,
    sectors: u64,
    pending: Vec<Pending>,
    /// Free `pending` indices (capacity = engine depth; never grows).
    free: Vec<u16>,
    /// Responses the response ring could not take yet (capacity fixed at
    /// twice the depth; never grows).
    held: VecDeque<Response>,
    /// A request popped when no slot was free.
    stashed: Option<[u8; REQUEST_LEN]>,
    /// Counters (as [`crate::FileDisk`]'s).
    pub stats: DiskStats,
    /// The errno of the last I/O error, for the driver's log.
    pub last_io_error: Option<i32>,
}

impl QueuedDisk {
    /// Opens the image and builds the engine (see [`Engine::open`]; must run
    /// before a host-board PD's seccomp lockdown).
    ///
    /// # Errors
    /// As [`Engine::open`].
    pub fn open(path: &Path, cfg: &EngineConfig) -> io::Result<QueuedDisk> {
        Ok(QueuedDisk::new(Engine::open(path, cfg)?))
    }

    /// Serves the file behind `engine`; the disk is its whole sectors.
    pub fn new(engine: Engine) -> QueuedDisk {
        let depth = engine.depth();
        let mut free = Vec::with_capacity(depth);
        free.extend((0..depth).rev().filter_map(|i| u16::try_from(i).ok()));
        QueuedDisk {
            sectors: engine.file_len() / SECTOR,
            engine,
            pending: vec![FREE; depth],
            free,
            held: VecDeque::with_capacity(2 * depth),
            stashed: None,
            stats: DiskStats::default(),
            last_io_error: None,
        }
    }

    /// An engine with no file yet ([`Engine::prepare`]): run it before a
    /// PD's lockdown, then [`QueuedDisk::attach_fd`].
    ///
    /// # Errors
    /// As [`Engine::prepare`].
    pub fn prepare(cfg: &EngineConfig) -> io::Result<QueuedDisk> {
        Ok(QueuedDisk::new(Engine::prepare(cfg)?))
    }

    /// Serves the image behind `fd` (`len` bytes; buffered I/O, or
    /// `O_DIRECT` with `offset_align` when the descriptor was opened so),
    /// which the caller keeps open. No syscall.
    ///
    /// # Errors
    /// [`AttachError::Busy`] while requests are in flight (drain first).
    pub fn attach_fd(
        &mut self,
        fd: RawFd,
        len: u64,
        direct_align: Option<u32>,
    ) -> Result<(), AttachError> {
        let (direct, status) = match direct_align {
            Some(offset_align) => (Some(fd), DirectIo::On { offset_align }),
            None => (None, DirectIo::NotRequested),
        };
        if !self.held.is_empty() || self.stashed.is_some() {
            return Err(AttachError::Busy);
        }
        self.engine.attach_fds(fd, direct, status, len)?;
        self.sectors = len / SECTOR;
        Ok(())
    }

    /// Disk size in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// The engine (its `O_DIRECT` status, depth, …).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len() - self.free.len()
    }

    fn refuse(&mut self, id: u32) -> Submitted {
        self.stats.refused += 1;
        Submitted::Done(Response {
            id,
            status: Status::IoErr,
        })
    }

    /// Starts raw request bytes: a malformed request is answered IOERR at
    /// once under the id found in its bytes.
    pub fn submit_bytes(&mut self, bytes: &[u8], data_out: &[u8], data_in_len: usize) -> Submitted {
        match Request::decode(bytes) {
            Ok(r) => self.submit(&r, data_out, data_in_len),
            Err(_) => {
                let mut id = [0u8; 4];
                if let Some(b) = bytes.get(4..8) {
                    id.copy_from_slice(b);
                }
                self.refuse(u32::from_le_bytes(id))
            }
        }
    }

    /// Checks `req` as [`crate::FileDisk::handle`] does and starts it. A
    /// write's bytes are copied from `data_out` now; a read's land in the
    /// `_in` region (of `data_in_len` bytes) at [`QueuedDisk::complete`].
    pub fn submit(&mut self, req: &Request, data_out: &[u8], data_in_len: usize) -> Submitted {
        if req.validate().is_err() || (req.op.modifies() && self.engine.read_only()) {
            return self.refuse(req.id);
        }
        let in_disk = req.end_sector().is_some_and(|e| e <= self.sectors);
        if req.op != Op::Flush && !in_disk {
            return self.refuse(req.id);
        }
        let data = match req.op {
            Op::Read => req.data_range(data_in_len),
            Op::Write => req.data_range(data_out.len()),
            _ => Some(0..0),
        };
        let Some(data) = data else {
            return self.refuse(req.id);
        };
        let fua = req.flags & FLAG_FUA != 0;
        let off = req.sector * SECTOR; // no overflow: inside the disk
        let len = u64::from(req.count) * SECTOR;
        let zeroing = matches!(req.op, Op::Discard | Op::WriteZeroes);
        if req.op != Op::Flush && len == 0 && !(fua && req.op.modifies()) {
            // Nothing to move and nothing to make durable (a FUA one is a
            // flush below, as FileDisk syncs it).
            self.stats.ok += 1;
            return Submitted::Done(Response {
                id: req.id,
                status: Status::Ok,
            });
        }
        let parts: u8 = if zeroing && len > 0 && fua { 2 } else { 1 };
        if self.engine.depth() - self.engine.in_flight() < usize::from(parts) {
            return Submitted::Busy;
        }
        let Some(idx) = self.free.pop() else {
            return Submitted::Busy;
        };
        let tag = u64::from(idx);
        let started = match req.op {
            Op::Flush => self.engine.flush(tag),
            _ if len == 0 => self.engine.flush(tag),
            Op::Read => self.engine.read(tag, off, data.len()),
            Op::Write => self.engine.write(tag, off, &data_out[data.clone()], fua),
            Op::Discard | Op::WriteZeroes => self
                .engine
                .write_zeroes(tag, off, len)
                .and_then(|()| if fua { self.engine.flush(tag) } else { Ok(()) }),
        };
        match started {
            Ok(()) => {
                if req.op == Op::Flush || (req.op.modifies() && fua) {
                    self.stats.syncs += 1;
                }
                self.pending[usize::from(idx)] = Pending {
                    id: req.id,
                    data_offset: data.start,
                    data_len: data.len(),
                    parts,
                    failed: false,
                };
                Submitted::Started
            }
            Err(e) => {
                // Only the first part can fail here (room was checked), so
                // nothing of this request is in flight.
                self.free.push(idx);
                match e {
                    SubmitError::Full => Submitted::Busy,
                    _ => self.refuse(req.id),
                }
            }
        }
    }

    /// Hands started requests to the kernel and waits until at least
    /// `min(want, in flight)` have completed.
    ///
    /// # Errors
    /// What `io_uring_enter` said.
    pub fn wait(&mut self, want: usize) -> io::Result<()> {
        self.engine.wait(want)
    }

    /// Hands started requests to the kernel without waiting.
    ///
    /// # Errors
    /// What `io_uring_enter` said.
    pub fn kick(&mut self) -> io::Result<()> {
        self.engine.submit()
    }

    /// Answers every finished request through `answer`, copying reads'
    /// bytes into `data_in` first; returns how many were answered.
    pub fn complete(&mut self, data_in: &mut [u8], mut answer: impl FnMut(Response)) -> usize {
        let mut n = 0;
        let QueuedDisk {
            engine,
            pending,
            free,
            stats,
            last_io_error,
            ..
        } = self;
        engine.reap(|c| {
            let Some(p) = u16::try_from(c.tag)
                .ok()
                .and_then(|i| pending.get_mut(usize::from(i)).map(|p| (i, p)))
                .filter(|(_, p)| p.parts > 0)
            else {
                return;
            };
            let (idx, p) = p;
            match c.outcome {
                Outcome::Done if c.kind == Kind::Read => {
                    match data_in.get_mut(p.data_offset..p.data_offset + p.data_len) {
                        Some(dst) if dst.len() == c.data.len() => dst.copy_from_slice(c.data),
                        // The `_in` region shrank since submission: refuse.
                        _ => p.failed = true,
                    }
                }
                Outcome::Done => {}
                Outcome::Os(errno) => {
                    *last_io_error = Some(errno);
                    p.failed = true;
                }
                Outcome::Short { .. } => {
                    *last_io_error = Some(libc::EIO);
                    p.failed = true;
                }
            }
            p.parts -= 1;
            if p.parts > 0 {
                return;
            }
            let status = if p.failed {
                stats.io_errors += 1;
                Status::IoErr
            } else {
                stats.ok += 1;
                Status::Ok
            };
            answer(Response { id: p.id, status });
            free.push(idx);
            n += 1;
        });
        n
    }

    /// Waits for every request in flight and forgets them unanswered (a
    /// restarting driver: the virtualiser resends what was not answered).
    ///
    /// # Errors
    /// What `io_uring_enter` said.
    pub fn drain(&mut self) -> io::Result<()> {
        self.engine.drain()?;
        self.held.clear();
        self.stashed = None;
        self.pending.fill(FREE);
        self.free.clear();
        let depth = self.pending.len();
        self.free
            .extend((0..depth).rev().filter_map(|i| u16::try_from(i).ok()));
        Ok(())
    }
}

/// The lower end of a blk hop as [`QueuedDisk::serve`] sees it: the
/// request ring, the response ring, the virtualiser's channel and the two
/// data regions. A corrupt ring is reported as [`HopBroken`] and ends
/// `serve`.
pub trait DriverHop {
    /// The next request's bytes, if any.
    ///
    /// # Errors
    /// The request ring is corrupt.
    fn pop(&mut self) -> Result<Option<[u8; REQUEST_LEN]>, HopBroken>;
    /// Arms the request ring's signal: true if it is still empty (the
    /// driver may sleep until notified), false if a request slipped in.
    ///
    /// # Errors
    /// The request ring is corrupt.
    fn arm(&mut self) -> Result<bool, HopBroken>;
    /// Pushes a response: false if the ring is full.
    ///
    /// # Errors
    /// The response ring is corrupt.
    fn push(&mut self, rsp: &Response) -> Result<bool, HopBroken>;
    /// Signals the virtualiser that responses were pushed (if it asked).
    fn notify(&mut self);
    /// The `_out` region (write payloads) and the `_in` region (read
    /// payloads), borrowed for one request or one batch of completions.
    fn regions(&mut self) -> (&[u8], &mut [u8]);
}

/// Why [`QueuedDisk::serve`] stopped serving.
#[derive(Debug)]
pub enum ServeError {
    /// A ring of the hop is corrupt ([`DriverHop`] said so).
    Hop(HopBroken),
    /// `io_uring_enter` failed.
    Io(io::Error),
}

/// A [`DriverHop`] ring is corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopBroken;

impl From<HopBroken> for ServeError {
    fn from(e: HopBroken) -> Self {
        ServeError::Hop(e)
    }
}

impl QueuedDisk {
    /// Pushes held responses in order; returns whether any went out, and
    /// stops at a full ring.
    fn push_held(&mut self, hop: &mut impl DriverHop) -> Result<bool, HopBroken> {
        let mut pushed = false;
        while let Some(rsp) = self.held.front() {
            if !hop.push(rsp)? {
                break;
            }
            self.held.pop_front();
            pushed = true;
        }
        Ok(pushed)
    }

    /// Offers a request; false if there was no room (it is stashed).
    fn offer(&mut self, bytes: [u8; REQUEST_LEN], hop: &mut impl DriverHop) -> bool {
        let (out, inn) = hop.regions();
        let in_len = inn.len();
        match self.submit_bytes(&bytes, out, in_len) {
            Submitted::Started => true,
            Submitted::Done(rsp) => {
                self.held.push_back(rsp);
                true
            }
            Submitted::Busy => {
                self.stashed = Some(bytes);
                false
            }
        }
    }

    /// Serves the hop until nothing is in flight and the request ring is
    /// empty and armed (then returns: the next notification calls it
    /// again). While requests are in flight it sleeps in the kernel until
    /// one completes, answers, picks up new requests and signals the
    /// virtualiser once per batch — so up to the engine's depth of
    /// requests are at the disk at once. It also returns, with responses
    /// held, when the response ring is full (a virtualiser sending more
    /// than it has room to hear; the next notification resumes).
    ///
    /// # Errors
    /// [`ServeError`]: the driver should stop (a corrupt ring) or restart
    /// (the ring failed).
    pub fn serve(&mut self, hop: &mut impl DriverHop) -> Result<(), ServeError> {
        loop {
            let mut pushed = self.push_held(hop)?;
            // Take requests while there is room for them and their answers.
            if let Some(bytes) = self.stashed.take() {
                self.offer(bytes, hop);
            }
            while self.stashed.is_none() && self.held.len() < self.held.capacity() / 2 {
                let Some(bytes) = hop.pop()? else { break };
                self.offer(bytes, hop);
            }
            pushed |= self.push_held(hop)?;
            self.kick().map_err(ServeError::Io)?;
            if pushed {
                hop.notify();
            }
            if self.in_flight() == 0 {
                if !self.held.is_empty() {
                    // The response ring is full and nothing will complete:
                    // wait for the virtualiser.
                    return Ok(());
                }
                if self.stashed.is_none() && hop.arm()? {
                    return Ok(());
                }
                continue;
            }
            self.wait(1).map_err(ServeError::Io)?;
            let (_, inn) = hop.regions();
            let QueuedDisk { held, .. } = self;
            let mut answers = std::mem::take(held);
            self.complete(inn, |rsp| answers.push_back(rsp));
            self.held = answers;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
    use super::*;
    use crate::FileDisk;
    use std::os::unix::fs::FileExt;

    const REGION: usize = 64 * 1024;

    fn image(sectors: u64) -> tempfile::NamedTempFile {
        let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "../../target".into());
        let _ = std::fs::create_dir_all(&dir);
        let f = tempfile::NamedTempFile::new_in(dir).unwrap();
        f.as_file().set_len(sectors * SECTOR).unwrap();
        f
    }

    fn disk(f: &tempfile::NamedTempFile, read_only: bool) -> QueuedDisk {
        let cfg = EngineConfig {
            depth: 8,
            max_len: 16 * 1024,
            read_only,
            direct: true,
        };
        QueuedDisk::open(f.path(), &cfg).unwrap()
    }

    /// Submits, waits for everything, returns responses in completion order.
    fn run(d: &mut QueuedDisk, reqs: &[Request], out: &[u8], inn: &mut [u8]) -> Vec<Response> {
        let mut rsps = Vec::new();
        for r in reqs {
            match d.submit(r, out, inn.len()) {
                Submitted::Started => {}
                Submitted::Done(rsp) => rsps.push(rsp),
                Submitted::Busy => panic!("busy"),
            }
        }
        while d.in_flight() > 0 {
            d.wait(1).unwrap();
            d.complete(inn, |r| rsps.push(r));
        }
        rsps
    }

    #[test]
    fn write_read_flush_zero() {
        let f = image(64);
        let mut d = disk(&f, false);
        let mut out = vec![0u8; REGION];
        let mut inn = vec![0u8; REGION];
        out[4096..8192].fill(0xAB);
        let w = Request::write(1, 8, 8, 4096);
        assert_eq!(run(&mut d, &[w], &out, &mut inn)[0].status, Status::Ok);
        let r = Request::read(2, 8, 8, 8192);
        assert_eq!(run(&mut d, &[r], &out, &mut inn)[0].status, Status::Ok);
        assert!(inn[8192..12288].iter().all(|&b| b == 0xAB));
        let fl = Request::no_data(3, Op::Flush, 0, 0);
        assert_eq!(run(&mut d, &[fl], &out, &mut inn)[0].status, Status::Ok);
        assert_eq!(d.stats.syncs, 1);
        let mut z = Request::no_data(4, Op::WriteZeroes, 9, 2);
        z.flags = FLAG_FUA;
        let rs = run(&mut d, &[z, r], &out, &mut inn);
        // One answer for the two engine operations of a FUA zeroing.
        assert_eq!(rs.len(), 2);
        assert!(rs.iter().all(|r| r.status == Status::Ok));
        run(&mut d, &[r], &out, &mut inn);
        assert!(inn[8192..8704].iter().all(|&b| b == 0xAB));
        assert!(inn[8704..9728].iter().all(|&b| b == 0));
        assert!(inn[9728..12288].iter().all(|&b| b == 0xAB));
        assert_eq!((d.stats.ok, d.stats.syncs), (6, 2));
    }

    #[test]
    fn refuses_what_file_disk_refuses() {
        let f = image(16);
        let mut d = disk(&f, false);
        let out = vec![0u8; 1024];
        let mut inn = vec![0u8; 1024];
        for r in [
            Request::read(1, 16, 1, 0),
            Request::read(1, 15, 2, 0),
            Request::read(1, u64::MAX / 512, 1, 0),
            Request::read(1, 0, 1, 1000),
            Request::write(1, 0, 3, 0),
            Request::no_data(1, Op::Discard, 10, 7),
            Request::read(1, 0, 33, 0), // longer than max_len
        ] {
            assert_eq!(
                d.submit(&r, &out, inn.len()),
                Submitted::Done(Response {
                    id: 1,
                    status: Status::IoErr
                }),
                "{r:?}"
            );
        }
        let mut junk = [0xEEu8; 32];
        junk[4..8].copy_from_slice(&42u32.to_le_bytes());
        let rsp = d.submit_bytes(&junk, &out, inn.len());
        assert_eq!(
            rsp,
            Submitted::Done(Response {
                id: 42,
                status: Status::IoErr
            })
        );
        assert_eq!(d.stats.refused, 8);
        assert_eq!(d.in_flight(), 0);
        let mut ro = disk(&f, true);
        for r in [
            Request::write(1, 0, 1, 0),
            Request::no_data(1, Op::WriteZeroes, 0, 1),
        ] {
            assert!(matches!(ro.submit(&r, &out, 1024), Submitted::Done(_)));
        }
        let _ = run(&mut ro, &[], &out, &mut inn);
        assert_eq!(
            run(&mut ro, &[Request::read(5, 0, 1, 0)], &out, &mut inn)[0].status,
            Status::Ok
        );
    }

    #[test]
    fn busy_when_full_and_every_request_answered_once() {
        let f = image(256);
        let mut d = disk(&f, false);
        let out = vec![0u8; REGION];
        let mut inn = vec![0u8; REGION];
        for i in 0..7u32 {
            let r = Request::read(i, u64::from(i) * 8, 8, u64::from(i) * 4096);
            assert_eq!(d.submit(&r, &out, inn.len()), Submitted::Started);
        }
        // A FUA zeroing needs two engine slots; one is left.
        let mut z = Request::no_data(98, Op::WriteZeroes, 0, 8);
        z.flags = FLAG_FUA;
        assert_eq!(d.submit(&z, &out, inn.len()), Submitted::Busy);
        let r = Request::read(7, 56, 8, 7 * 4096);
        assert_eq!(d.submit(&r, &out, inn.len()), Submitted::Started);
        let extra = Request::read(99, 0, 1, 0);
        assert_eq!(d.submit(&extra, &out, inn.len()), Submitted::Busy);
        let mut ids = Vec::new();
        d.wait(8).unwrap();
        d.complete(&mut inn, |r| ids.push(r.id));
        ids.sort_unstable();
        assert_eq!(ids, (0..8).collect::<Vec<_>>());
        assert_eq!(d.in_flight(), 0);
    }

    #[test]
    fn drain_forgets_in_flight_requests() {
        let f = image(64);
        let mut d = disk(&f, false);
        let out = vec![0u8; REGION];
        let mut inn = vec![0u8; REGION];
        for i in 0..4u32 {
            assert_eq!(
                d.submit(&Request::read(i, 0, 1, 0), &out, inn.len()),
                Submitted::Started
            );
        }
        d.kick().unwrap();
        d.drain().unwrap();
        assert_eq!(d.in_flight(), 0);
        assert_eq!(d.complete(&mut inn, |_| panic!("answered after drain")), 0);
        assert_eq!(
            run(&mut d, &[Request::read(9, 0, 1, 0)], &out, &mut inn)[0].id,
            9
        );
    }

    #[test]
    fn one_at_a_time_it_answers_and_writes_as_file_disk_does() {
        // The same random request stream, one request at a time, through
        // FileDisk on one image and QueuedDisk on another: same responses,
        // same bytes read, same image afterwards.
        let (fa, fb) = (image(128), image(128));
        let mut a = FileDisk::open(fa.path(), false).unwrap();
        let mut b = disk(&fb, false);
        let mut out = vec![0u8; REGION];
        let (mut ia, mut ib) = (vec![0u8; REGION], vec![0u8; REGION]);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for id in 0..400u32 {
            let sector = rnd(140); // some past the end (128)
                                   // Up to max_len (32 sectors) for data; longer for zeroing. Longer
                                   // transfers are refused here and served by FileDisk, see
                                   // `refuses_what_file_disk_refuses`.
            let op = rnd(6);
            let count = rnd(if op < 3 { 33 } else { 40 }) as u32;
            let off = rnd(REGION as u64 / 512) * 512;
            let mut r = match op {
                0 | 1 => Request::read(id, sector, count, off),
                2 => Request::write(id, sector, count, off),
                3 => Request::no_data(id, Op::Flush, 0, 0),
                4 => Request::no_data(id, Op::WriteZeroes, sector, count),
                _ => Request::no_data(id, Op::Discard, sector, count),
            };
            if rnd(4) == 0 {
                r.flags = FLAG_FUA;
            }
            let fill = rnd(256) as u8;
            out.fill(fill);
            let want = a.handle(&r, &out, &mut ia);
            let got = run(&mut b, &[r], &out, &mut ib);
            assert_eq!(got, vec![want], "{r:?}");
            let diff = ia.iter().zip(&ib).position(|(x, y)| x != y);
            assert_eq!(diff, None, "{r:?}: _in regions differ");
        }
        let mut ba = vec![0u8; 128 * 512];
        let mut bb = vec![0u8; 128 * 512];
        fa.as_file().read_exact_at(&mut ba, 0).unwrap();
        fb.as_file().read_exact_at(&mut bb, 0).unwrap();
        let diff = ba.iter().zip(&bb).position(|(x, y)| x != y);
        assert_eq!(diff, None, "images differ");
    }

    /// An in-memory hop: rings as queues (the response ring holds `room`),
    /// regions as vectors.
    struct FakeHop {
        req: VecDeque<[u8; REQUEST_LEN]>,
        rsp: Vec<Response>,
        room: usize,
        notifies: usize,
        arms: usize,
        out: Vec<u8>,
        inn: Vec<u8>,
    }

    impl FakeHop {
        fn new(room: usize) -> FakeHop {
            FakeHop {
                req: VecDeque::new(),
                rsp: Vec::new(),
                room,
                notifies: 0,
                arms: 0,
                out: vec![0; REGION],
                inn: vec![0; REGION],
            }
        }
    }

    impl DriverHop for FakeHop {
        fn pop(&mut self) -> Result<Option<[u8; REQUEST_LEN]>, HopBroken> {
            Ok(self.req.pop_front())
        }
        fn arm(&mut self) -> Result<bool, HopBroken> {
            self.arms += 1;
            Ok(self.req.is_empty())
        }
        fn push(&mut self, rsp: &Response) -> Result<bool, HopBroken> {
            if self.rsp.len() >= self.room {
                return Ok(false);
            }
            self.rsp.push(*rsp);
            Ok(true)
        }
        fn notify(&mut self) {
            self.notifies += 1;
        }
        fn regions(&mut self) -> (&[u8], &mut [u8]) {
            (&self.out, &mut self.inn)
        }
    }

    fn pattern_image(sectors: u64) -> tempfile::NamedTempFile {
        let f = image(sectors);
        let bytes: Vec<u8> = (0..sectors * 512).map(|i| (i / 512) as u8).collect();
        f.as_file().write_all_at(&bytes, 0).unwrap();
        f
    }

    #[test]
    fn serve_answers_every_request_with_many_in_flight() {
        let f = pattern_image(256);
        let mut d = disk(&f, false);
        let mut hop = FakeHop::new(64);
        // 20 reads (more than the depth of 8), one malformed request, and
        // one out of range: every one answered once, reads' bytes right.
        for i in 0..20u32 {
            let r = Request::read(i, u64::from(i) * 8, 1, u64::from(i) * 512);
            hop.req.push_back(r.encode());
        }
        hop.req.push_back([0xEE; REQUEST_LEN]);
        hop.req.push_back(Request::read(77, 256, 1, 0).encode());
        d.serve(&mut hop).unwrap();
        assert!(hop.req.is_empty());
        assert_eq!(d.in_flight(), 0);
        let mut ids: Vec<u32> = hop.rsp.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        let mut want: Vec<u32> = (0..20).chain([77, 0xEEEE_EEEE]).collect();
        want.sort_unstable();
        assert_eq!(ids, want);
        for r in &hop.rsp {
            let ok = r.id < 20;
            assert_eq!(r.status == Status::Ok, ok, "{r:?}");
        }
        for i in 0..20usize {
            assert!(
                hop.inn[i * 512..(i + 1) * 512]
                    .iter()
                    .all(|&b| b == (i * 8) as u8),
                "read {i}"
            );
        }
        // Signalled per batch, not per response; armed before returning.
        assert!(hop.notifies >= 1 && hop.notifies < 22, "{}", hop.notifies);
        assert!(hop.arms >= 1);
    }

    #[test]
    fn serve_allocates_nothing_per_request() {
        let f = pattern_image(256);
        let mut d = disk(&f, false);
        let mut hop = FakeHop::new(64);
        hop.req.reserve(64);
        hop.rsp.reserve(64);
        let batch = |d: &mut QueuedDisk, hop: &mut FakeHop| {
            hop.rsp.clear();
            for i in 0..20u32 {
                let r = Request::read(i, u64::from(i) * 8, 8, u64::from(i) * 4096);
                hop.req.push_back(r.encode());
            }
            hop.req
                .push_back(Request::no_data(99, Op::Flush, 0, 0).encode());
            d.serve(hop).unwrap();
            assert_eq!(hop.rsp.len(), 21);
        };
        batch(&mut d, &mut hop);
        let before = crate::alloc_count::allocations();
        for _ in 0..50 {
            batch(&mut d, &mut hop);
        }
        assert_eq!(crate::alloc_count::allocations(), before, "serve allocated");
    }

    #[test]
    fn serve_holds_answers_for_a_full_response_ring() {
        let f = pattern_image(64);
        let mut d = disk(&f, false);
        let mut hop = FakeHop::new(3);
        for i in 0..6u32 {
            hop.req
                .push_back(Request::read(i, u64::from(i), 1, 0).encode());
        }
        d.serve(&mut hop).unwrap();
        // Three fit; three wait, in completion order, for room.
        assert_eq!(hop.rsp.len(), 3);
        assert_eq!(d.in_flight(), 0);
        let first: Vec<u32> = hop.rsp.drain(..).map(|r| r.id).collect();
        d.serve(&mut hop).unwrap();
        let mut all: Vec<u32> = first
            .into_iter()
            .chain(hop.rsp.iter().map(|r| r.id))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn serve_writes_then_flush_then_read_back() {
        let f = image(64);
        let mut d = disk(&f, false);
        let mut hop = FakeHop::new(64);
        hop.out[..4096].fill(0x3C);
        hop.req.push_back(Request::write(1, 8, 8, 0).encode());
        d.serve(&mut hop).unwrap();
        hop.req
            .push_back(Request::no_data(2, Op::Flush, 0, 0).encode());
        hop.req.push_back(Request::read(3, 8, 8, 8192).encode());
        d.serve(&mut hop).unwrap();
        assert_eq!(hop.rsp.len(), 3);
        assert!(hop.rsp.iter().all(|r| r.status == Status::Ok));
        // The flush is a barrier: the read after it completed after it.
        let pos = |id| hop.rsp.iter().position(|r| r.id == id).unwrap();
        assert!(pos(2) < pos(3));
        assert!(hop.inn[8192..12288].iter().all(|&b| b == 0x3C));
    }

    #[test]
    fn prepared_then_attached_to_a_descriptor() {
        let f = pattern_image(64);
        let mut d = QueuedDisk::prepare(&EngineConfig {
            depth: 4,
            max_len: 4096,
            read_only: false,
            direct: true,
        })
        .unwrap();
        assert_eq!(d.sectors(), 0);
        let mut hop = FakeHop::new(8);
        hop.req.push_back(Request::read(1, 0, 1, 0).encode());
        d.serve(&mut hop).unwrap();
        assert_eq!(hop.rsp[0].status, Status::IoErr, "no disk yet");
        use std::os::unix::io::AsRawFd;
        d.attach_fd(f.as_file().as_raw_fd(), 64 * 512, None)
            .unwrap();
        assert_eq!(d.sectors(), 64);
        hop.req.push_back(Request::read(2, 5, 1, 0).encode());
        d.serve(&mut hop).unwrap();
        assert_eq!(
            hop.rsp[1],
            Response {
                id: 2,
                status: Status::Ok
            }
        );
        assert!(hop.inn[..512].iter().all(|&b| b == 5));
    }
}
