//! An I/O engine that keeps up to `depth` requests in flight on one disk
//! image file: io_uring over an `O_DIRECT` descriptor, with aligned bounce
//! buffers the engine owns.
//!
//! ```no_run
//! use drv_host_blk_file::engine::{Engine, EngineConfig, Outcome};
//! let mut e = Engine::open("disk.img".as_ref(), &EngineConfig::default()).unwrap();
//! e.read(7, 4096, 4096).unwrap(); // tag 7: 4 KiB at byte 4096
//! e.wait(1).unwrap();
//! e.reap(|c| {
//!     assert_eq!(c.tag, 7);
//!     if let Outcome::Done = c.outcome { let _bytes: &[u8] = c.data; }
//! });
//! ```
//!
//! Why io_uring rather than a worker pool: a PD is one thread whose restart
//! resets one PC and SP; the kernel does the waiting here, so the PD stays
//! single-threaded, and once the ring exists it needs one more syscall
//! (`io_uring_enter`).
//!
//! Two phases, for a host-board PD's seccomp lockdown:
//! - [`Engine::prepare`] (before lockdown: `io_uring_setup`, `mmap`,
//!   `io_uring_register`) makes the ring and the bounce buffers and ends by
//!   registering *restrictions*: the ring accepts only `READ_FIXED`,
//!   `WRITE_FIXED`, `FSYNC` and `FALLOCATE`, with no SQE flag but
//!   `IOSQE_IO_DRAIN`, into the engine's registered buffers only, and no
//!   further `io_uring_register` call. So the ring can do no more than
//!   positioned I/O, `fdatasync` and `fallocate` on descriptors the process
//!   already holds — it cannot open, connect or map anything.
//! - [`Engine::attach`] / [`Engine::attach_fds`] (any time the engine is
//!   idle, no syscall) point it at the image's descriptors; a driver gets
//!   those from its host resource after lockdown, and re-attaches after a
//!   restart.
//!
//! [`Engine::open`] does both at once (tests, benchmarks, tools).
//!
//! Semantics (those of a device with a volatile write cache):
//! - A completion is reported only after the kernel finished the operation;
//!   a write is acknowledged when it is done.
//! - Requests in flight together are unordered, as on a device.
//!   [`Engine::flush`] is a barrier (`IOSQE_IO_DRAIN`): it starts after
//!   every earlier request has completed, and later ones start after it;
//!   it is an `fdatasync`, so every write completed before it is durable
//!   when it completes.
//! - A FUA write ([`Engine::write`] with `fua`) is written with
//!   `RWF_DSYNC`: durable when acknowledged.
//! - A transfer that moves fewer bytes than asked (the file shrank under
//!   the engine) is an error, never a silent short read.
//! - Requests whose offset or length is not a multiple of the file's
//!   direct-I/O alignment go through a second, buffered descriptor of the
//!   same file (no request is refused for alignment).
//! - If the filesystem refuses `O_DIRECT`, the engine runs on buffered
//!   I/O and says so in [`Engine::direct`] — callers print it loudly,
//!   because results then include the page cache.
//!
//! No allocation per request: slots (bounce buffer + bookkeeping) are made
//! once, in [`Engine::open`].

use std::alloc::Layout;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::Path;
use std::ptr::NonNull;

use io_uring::register::Restriction;
use io_uring::squeue::Flags;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// Page size; bounce buffers are aligned to it (every direct-I/O memory
/// alignment a Linux filesystem asks is at most this).
const PAGE: usize = 4096;
/// Most slots an engine may have (slot numbers travel as `u16`).
pub const MAX_DEPTH: usize = 4096;

/// How an [`Engine`] is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Requests in flight at most (1..=[`MAX_DEPTH`]).
    pub depth: usize,
    /// Largest transfer of one request in bytes (a multiple of 4096).
    pub max_len: usize,
    /// Open the file read-only; writes are refused at submission.
    pub read_only: bool,
    /// Try `O_DIRECT` (fall back to buffered I/O if the filesystem refuses).
    pub direct: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            depth: 32,
            max_len: 128 * 1024,
            read_only: false,
            direct: true,
        }
    }
}

/// Whether the engine bypasses the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectIo {
    /// `O_DIRECT` is in use; requests aligned to `offset_align` (offset and
    /// length) go direct.
    On {
        /// Alignment the filesystem asks of file offsets and lengths.
        offset_align: u32,
    },
    /// The caller did not ask for `O_DIRECT`.
    NotRequested,
    /// The filesystem refused `O_DIRECT` (this errno); buffered I/O is used.
    Refused(i32),
}

/// Why a request was not accepted (nothing was started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// Every slot is in flight; reap completions first.
    Full,
    /// The range does not lie inside the file, or its end overflows.
    OutOfRange,
    /// Longer than [`EngineConfig::max_len`] (or zero bytes).
    BadLength,
    /// A write or zeroing on a read-only engine.
    ReadOnly,
    /// No file attached yet.
    NoFile,
}

/// Why [`Engine::attach`] refused.
#[derive(Debug)]
pub enum AttachError {
    /// Requests are in flight on the current file: drain first.
    Busy,
    /// The file's size could not be read.
    Size(io::Error),
}

/// The kind of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`Engine::read`].
    Read,
    /// [`Engine::write`].
    Write,
    /// [`Engine::flush`].
    Flush,
    /// [`Engine::write_zeroes`].
    WriteZeroes,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done in full.
    Done,
    /// The kernel returned this errno.
    Os(i32),
    /// Fewer bytes moved than asked (e.g. the file shrank under the engine).
    Short {
        /// Bytes moved.
        done: u32,
    },
}

/// One finished request, handed to the [`Engine::reap`] callback.
#[derive(Debug)]
pub struct Completion<'a> {
    /// The caller's tag from submission.
    pub tag: u64,
    /// What the request was.
    pub kind: Kind,
    /// How it ended.
    pub outcome: Outcome,
    /// A successful read's bytes (empty otherwise); valid until the
    /// callback returns, when the slot is reused.
    pub data: &'a [u8],
}

/// Bookkeeping of one slot.
#[derive(Debug, Clone, Copy)]
struct Slot {
    tag: u64,
    kind: Kind,
    len: u32,
    busy: bool,
}

const IDLE: Slot = Slot {
    tag: 0,
    kind: Kind::Flush,
    len: 0,
    busy: false,
};

/// The bounce buffers: one page-aligned allocation of `depth × max_len`
/// bytes, registered with the ring as fixed buffer 0.
#[derive(Debug)]
struct Slab {
    ptr: NonNull<u8>,
    layout: Layout,
    /// Never freed: the kernel may still write into it.
    leaked: bool,
}

impl Slab {
    fn new(len: usize) -> io::Result<Slab> {
        let layout = Layout::from_size_align(len, PAGE)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `len` is non-zero (depth ≥ 1, max_len ≥ 4096: checked by
        // the caller); zeroed so no stale heap bytes are ever written out.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or(io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(Slab {
            ptr,
            layout,
            leaked: false,
        })
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: allocated in `new` with this layout; the engine frees it
        // only when no operation is in flight (see `Engine::drop`).
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// The io_uring engine over one file. See the module docs.
pub struct Engine {
    ring: IoUring,
    /// Keeps the descriptors of an owned file open (None: not attached, or
    /// attached to descriptors the caller owns).
    files: Option<Files>,
    /// The descriptor aligned requests use (-1: not attached).
    fd_direct: RawFd,
    /// The descriptor unaligned requests use.
    fd_buffered: RawFd,
    slab: Slab,
    slots: Vec<Slot>,
    /// Free slot numbers (a stack; capacity `depth`, never grows).
    free: Vec<u16>,
    /// Entries pushed to the submission queue and not yet submitted.
    unsubmitted: usize,
    max_len: usize,
    file_len: u64,
    read_only: bool,
    direct: DirectIo,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("depth", &self.slots.len())
            .field("in_flight", &self.in_flight())
            .field("max_len", &self.max_len)
            .field("file_len", &self.file_len)
            .field("direct", &self.direct)
            .finish_non_exhaustive()
    }
}

/// The descriptors of the disk image an engine serves.
#[derive(Debug)]
pub struct Files {
    /// Opened with `O_DIRECT` (None: buffered I/O only).
    pub direct: Option<File>,
    /// Opened without `O_DIRECT`; serves unaligned requests.
    pub buffered: File,
    /// Why `direct` is what it is.
    pub status: DirectIo,
}

impl Files {
    /// Opens `path` twice (direct and buffered). If `O_DIRECT` is refused —
    /// at open or at the first aligned read, as some filesystems accept the
    /// flag and fail the I/O — the direct descriptor is dropped and
    /// [`Files::status`] says why.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path, read_only: bool, want_direct: bool) -> io::Result<Files> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(!read_only);
        let buffered = opts.open(path)?;
        if !want_direct {
            return Ok(Files {
                direct: None,
                buffered,
                status: DirectIo::NotRequested,
            });
        }
        let direct = opts.custom_flags(libc::O_DIRECT).open(path);
        let (direct, status) = match direct.and_then(|f| probe_direct(&f).map(|a| (f, a))) {
            Ok((f, offset_align)) => (Some(f), DirectIo::On { offset_align }),
            Err(e) => (
                None,
                DirectIo::Refused(e.raw_os_error().unwrap_or(libc::EINVAL)),
            ),
        };
        Ok(Files {
            direct,
            buffered,
            status,
        })
    }
}

/// The direct-I/O offset alignment of `f` (statx `STATX_DIOALIGN`, else
/// 512), after one aligned read proved the filesystem honours `O_DIRECT`.
fn probe_direct(f: &File) -> io::Result<u32> {
    let align = dio_offset_align(f).unwrap_or(512);
    let len = f.metadata()?.len();
    if len >= u64::from(align) && align as usize <= PAGE {
        let slab = Slab::new(PAGE)?;
        // SAFETY: the slab is PAGE bytes, live for this scope, owned here.
        let buf = unsafe { std::slice::from_raw_parts_mut(slab.ptr.as_ptr(), align as usize) };
        f.read_exact_at(buf, 0)?;
    } else if align as usize > PAGE {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(align)
}

fn dio_offset_align(f: &File) -> Option<u32> {
    // SAFETY: all-zero bytes are a valid `statx` (plain integers).
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor, an empty NUL-terminated path with
    // AT_EMPTY_PATH, and a pointer to a live statx the kernel fills.
    let r = unsafe {
        libc::statx(
            f.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &raw mut st,
        )
    };
    (r == 0 && st.stx_mask & libc::STATX_DIOALIGN != 0 && st.stx_dio_offset_align != 0)
        .then_some(st.stx_dio_offset_align)
}

impl Engine {
    /// Opens the image at `path`, prepares the engine and attaches it.
    ///
    /// # Errors
    /// As [`Files::open`] and [`Engine::prepare`].
    pub fn open(path: &Path, cfg: &EngineConfig) -> io::Result<Engine> {
        Engine::with_files(Files::open(path, cfg.read_only, cfg.direct)?, cfg)
    }

    /// [`Engine::prepare`] and [`Engine::attach`] `files`.
    ///
    /// # Errors
    /// As [`Engine::prepare`]; the file's size cannot be read.
    pub fn with_files(files: Files, cfg: &EngineConfig) -> io::Result<Engine> {
        let mut e = Engine::prepare(cfg)?;
        match e.attach(files) {
            Ok(()) => Ok(e),
            Err(AttachError::Size(err)) => Err(err),
            Err(AttachError::Busy) => Err(io::Error::from(io::ErrorKind::ResourceBusy)),
        }
    }

    /// The ring and the bounce buffers, no file yet: allocates the slab,
    /// sets the ring up disabled, registers the slab as its one fixed
    /// buffer, registers the restrictions and enables the ring. Run it
    /// before a PD's seccomp lockdown.
    ///
    /// # Errors
    /// `InvalidInput` for a bad configuration; otherwise what the kernel
    /// said (e.g. io_uring disabled by `kernel.io_uring_disabled`).
    pub fn prepare(cfg: &EngineConfig) -> io::Result<Engine> {
        let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
        if cfg.depth == 0
            || cfg.depth > MAX_DEPTH
            || cfg.max_len == 0
            || cfg.max_len % PAGE != 0
            || u32::try_from(cfg.max_len).is_err()
        {
            return Err(invalid());
        }
        let slab_len = cfg.depth.checked_mul(cfg.max_len).ok_or_else(invalid)?;
        let slab = Slab::new(slab_len)?;
        let entries = u32::try_from(cfg.depth).map_err(|_| invalid())?;
        let ring: IoUring = IoUring::builder()
            .setup_r_disabled()
            // Task work runs when the submitter enters the kernel anyway.
            .setup_coop_taskrun()
            .build(entries)?;
        let sub = ring.submitter();
        let iov = libc::iovec {
            iov_base: slab.ptr.as_ptr().cast(),
            iov_len: slab_len,
        };
        // SAFETY: the slab stays allocated while the ring exists: `Engine`
        // owns both, and its Drop waits for every operation before the
        // slab is freed (or leaks the slab if it cannot).
        unsafe { sub.register_buffers(&[iov])? };
        let mut rules = [
            Restriction::sqe_op(opcode::ReadFixed::CODE),
            Restriction::sqe_op(opcode::WriteFixed::CODE),
            Restriction::sqe_op(opcode::Fsync::CODE),
            Restriction::sqe_op(opcode::Fallocate::CODE),
            Restriction::sqe_flags_allowed(Flags::IO_DRAIN.bits()),
        ];
        sub.register_restrictions(&mut rules)?;
        sub.register_enable_rings()?;
        let mut free = Vec::with_capacity(cfg.depth);
        // Pop order 0, 1, 2, … (cosmetic: tests read more easily).
        free.extend((0..entries).rev().filter_map(|i| u16::try_from(i).ok()));
        Ok(Engine {
            ring,
            files: None,
            fd_direct: -1,
            fd_buffered: -1,
            direct: DirectIo::NotRequested,
            slab,
            slots: vec![IDLE; cfg.depth],
            free,
            unsubmitted: 0,
            max_len: cfg.max_len,
            file_len: 0,
            read_only: cfg.read_only,
        })
    }

    /// Serves `files` from now on (the engine keeps them open). The size is
    /// read now (`fstat`).
    ///
    /// # Errors
    /// [`AttachError::Busy`] while requests are in flight;
    /// [`AttachError::Size`].
    pub fn attach(&mut self, files: Files) -> Result<(), AttachError> {
        if self.in_flight() > 0 {
            return Err(AttachError::Busy);
        }
        let len = files.buffered.metadata().map_err(AttachError::Size)?.len();
        let buffered = files.buffered.as_raw_fd();
        let direct = files.direct.as_ref().map(AsRawFd::as_raw_fd);
        self.attach_fds(buffered, direct, files.status, len)?;
        self.files = Some(files);
        Ok(())
    }

    /// Serves descriptors the caller owns and keeps open while attached: a
    /// file of `len` bytes, `buffered` for unaligned requests and `direct`
    /// (opened with `O_DIRECT`; None: `buffered` serves everything) for
    /// aligned ones; `status` says which (it is what [`Engine::direct`]
    /// reports). No syscall: usable after lockdown.
    ///
    /// # Errors
    /// [`AttachError::Busy`] while requests are in flight.
    pub fn attach_fds(
        &mut self,
        buffered: RawFd,
        direct: Option<RawFd>,
        status: DirectIo,
        len: u64,
    ) -> Result<(), AttachError> {
        if self.in_flight() > 0 {
            return Err(AttachError::Busy);
        }
        self.files = None;
        self.fd_buffered = buffered;
        (self.fd_direct, self.direct) = match (direct, status) {
            (Some(fd), DirectIo::On { offset_align }) => (fd, DirectIo::On { offset_align }),
            (_, DirectIo::On { .. }) => (buffered, DirectIo::NotRequested),
            (_, other) => (buffered, other),
        };
        self.file_len = len;
        Ok(())
    }

    /// Whether requests bypass the page cache, and if not, why.
    pub fn direct(&self) -> DirectIo {
        self.direct
    }

    /// The file's size in bytes when the engine was built.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Slots (most requests in flight).
    pub fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Requests submitted and not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Largest transfer of one request.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Whether writes and zeroing are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<u32, SubmitError> {
        if self.fd_buffered < 0 {
            return Err(SubmitError::NoFile);
        }
        if len == 0 || len > self.max_len {
            return Err(SubmitError::BadLength);
        }
        let len32 = u32::try_from(len).map_err(|_| SubmitError::BadLength)?;
        match offset.checked_add(u64::from(len32)) {
            Some(end) if end <= self.file_len => Ok(len32),
            _ => Err(SubmitError::OutOfRange),
        }
    }

    /// The descriptor for a transfer: direct when aligned.
    fn file_for(&self, offset: u64, len: u32) -> types::Fd {
        match self.direct {
            DirectIo::On { offset_align }
                if offset % u64::from(offset_align) != 0 || len % offset_align != 0 =>
            {
                types::Fd(self.fd_buffered)
            }
            // `fd_direct` is the buffered descriptor when not direct.
            _ => types::Fd(self.fd_direct),
        }
    }

    fn slot_ptr(&self, slot: u16) -> *mut u8 {
        // In bounds: slot < depth, and the slab is depth × max_len bytes.
        self.slab
            .ptr
            .as_ptr()
            .wrapping_add(usize::from(slot) * self.max_len)
    }

    fn take_slot(&mut self) -> Result<u16, SubmitError> {
        self.free.pop().ok_or(SubmitError::Full)
    }

    fn push(&mut self, slot: u16, tag: u64, kind: Kind, len: u32, sqe: squeue::Entry) {
        self.slots[usize::from(slot)] = Slot {
            tag,
            kind,
            len,
            busy: true,
        };
        let sqe = sqe.user_data(u64::from(slot));
        // SAFETY: every buffer the entry names is this slot's part of the
        // registered slab, which outlives the operation (see `Slab`), and
        // the slot is not reused before its completion is reaped.
        let pushed = unsafe { self.ring.submission().push(&sqe) };
        if pushed.is_err() {
            // Unreachable: the submission queue has ≥ depth entries and each
            // unsubmitted entry holds a slot. Flush it and push again.
            let _ = self.ring.submit();
            self.unsubmitted = 0;
            // SAFETY: as above.
            let _ = unsafe { self.ring.submission().push(&sqe) };
        }
        self.unsubmitted += 1;
    }

    /// Queues a read of `len` bytes at byte `offset` under `tag`; its bytes
    /// arrive in [`Completion::data`]. Started by the next
    /// [`Engine::submit`] or [`Engine::wait`].
    ///
    /// # Errors
    /// [`SubmitError`]; nothing was queued.
    pub fn read(&mut self, tag: u64, offset: u64, len: usize) -> Result<(), SubmitError> {
        let len = self.check_range(offset, len)?;
        let slot = self.take_slot()?;
        let sqe = opcode::ReadFixed::new(self.file_for(offset, len), self.slot_ptr(slot), len, 0)
            .offset(offset)
            .build();
        self.push(slot, tag, Kind::Read, len, sqe);
        Ok(())
    }

    /// Queues a write of `data` at byte `offset` (copied into a bounce
    /// buffer now; the caller's buffer is free on return). With `fua` the
    /// data is durable when the write completes.
    ///
    /// # Errors
    /// [`SubmitError`]; nothing was queued.
    pub fn write(
        &mut self,
        tag: u64,
        offset: u64,
        data: &[u8],
        fua: bool,
    ) -> Result<(), SubmitError> {
        if self.read_only {
            return Err(SubmitError::ReadOnly);
        }
        let len = self.check_range(offset, data.len())?;
        let slot = self.take_slot()?;
        let dst = self.slot_ptr(slot);
        // SAFETY: `dst` is this free slot's max_len ≥ data.len() bytes of
        // the slab; no operation uses a free slot's bytes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        let sqe = opcode::WriteFixed::new(self.file_for(offset, len), dst, len, 0)
            .offset(offset)
            .rw_flags(if fua { libc::RWF_DSYNC } else { 0 })
            .build();
        self.push(slot, tag, Kind::Write, len, sqe);
        Ok(())
    }

    /// Queues a flush: a barrier (starts after every earlier request
    /// completed; later ones start after it) that makes every completed
    /// write durable (`fdatasync`).
    ///
    /// # Errors
    /// [`SubmitError::Full`]; nothing was queued.
    pub fn flush(&mut self, tag: u64) -> Result<(), SubmitError> {
        if self.fd_buffered < 0 {
            return Err(SubmitError::NoFile);
        }
        let slot = self.take_slot()?;
        let sqe = opcode::Fsync::new(types::Fd(self.fd_direct))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .flags(Flags::IO_DRAIN);
        self.push(slot, tag, Kind::Flush, 0, sqe);
        Ok(())
    }

    /// Queues zeroing of `len` bytes at `offset` (`fallocate` with
    /// `FALLOC_FL_ZERO_RANGE`, keeping the size). The range reads as zeroes
    /// afterwards; a filesystem without zero-range support completes it
    /// with `Os(EOPNOTSUPP)`.
    ///
    /// # Errors
    /// [`SubmitError`] (no length limit beyond the file); nothing was
    /// queued.
    pub fn write_zeroes(&mut self, tag: u64, offset: u64, len: u64) -> Result<(), SubmitError> {
        if self.read_only {
            return Err(SubmitError::ReadOnly);
        }
        if self.fd_buffered < 0 {
            return Err(SubmitError::NoFile);
        }
        match offset.checked_add(len) {
            Some(end) if len > 0 && end <= self.file_len => {}
            _ => return Err(SubmitError::OutOfRange),
        }
        let slot = self.take_slot()?;
        let sqe = opcode::Fallocate::new(types::Fd(self.fd_direct), len)
            .offset(offset)
            .mode(libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE)
            .build();
        self.push(slot, tag, Kind::WriteZeroes, 0, sqe);
        Ok(())
    }

    /// Hands queued requests to the kernel without waiting.
    ///
    /// # Errors
    /// What `io_uring_enter` said.
    pub fn submit(&mut self) -> io::Result<()> {
        self.wait(0)
    }

    /// Hands queued requests to the kernel and waits until at least
    /// `min(want, in flight)` completions are ready to [`Engine::reap`].
    ///
    /// # Errors
    /// What `io_uring_enter` said (interruptions are retried).
    pub fn wait(&mut self, want: usize) -> io::Result<()> {
        loop {
            let ready = self.ring.completion().len();
            let want = want.min(self.in_flight()).saturating_sub(ready);
            if want == 0 && self.unsubmitted == 0 {
                return Ok(());
            }
            match self.ring.submit_and_wait(want) {
                Ok(_) => {
                    self.unsubmitted = 0;
                    if want == 0 {
                        return Ok(());
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                    // The submission part may have gone through; the queue
                    // tells us what is left.
                    self.unsubmitted = self.ring.submission().len();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Calls `f` for every ready completion, frees its slot, and returns how
    /// many there were.
    pub fn reap(&mut self, mut f: impl FnMut(Completion<'_>)) -> usize {
        let mut n = 0;
        loop {
            let Some(cqe): Option<cqueue::Entry> = self.ring.completion().next() else {
                return n;
            };
            let Some(slot) = u16::try_from(cqe.user_data())
                .ok()
                .filter(|&s| self.slots.get(usize::from(s)).is_some_and(|s| s.busy))
            else {
                // Not one of ours (cannot happen: only `push` submits).
                continue;
            };
            let s = self.slots[usize::from(slot)];
            let outcome = match cqe.result() {
                r if r < 0 => Outcome::Os(-r),
                r => match u32::try_from(r) {
                    Ok(done) if done < s.len => Outcome::Short { done },
                    _ => Outcome::Done,
                },
            };
            let data: &[u8] = if s.kind == Kind::Read && outcome == Outcome::Done {
                // SAFETY: the read into this slot completed, so the kernel
                // no longer writes it; `s.len` ≤ max_len bytes of the slab.
                unsafe { std::slice::from_raw_parts(self.slot_ptr(slot), s.len as usize) }
            } else {
                &[]
            };
            f(Completion {
                tag: s.tag,
                kind: s.kind,
                outcome,
                data,
            });
            self.slots[usize::from(slot)].busy = false;
            self.free.push(slot);
            n += 1;
        }
    }

    /// Waits for every request in flight and discards the completions (a
    /// restarting driver: its client resends what was not acknowledged).
    ///
    /// # Errors
    /// What `io_uring_enter` said.
    pub fn drain(&mut self) -> io::Result<()> {
        while self.in_flight() > 0 {
            self.wait(self.in_flight())?;
            self.reap(|_| {});
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.drain().is_err() {
            eprintln!(
                "drv-host-blk-file engine: could not drain the ring; leaking its bounce buffers"
            );
            self.slab.leaked = true;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::cast_possible_truncation)]
    use super::*;

    /// A file of `len` bytes whose byte `i` is `pattern(i)`, on the disk of
    /// the target dir (not tmpfs), so `O_DIRECT` is the real thing.
    fn image(len: usize) -> tempfile::NamedTempFile {
        let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "../../target".into());
        let _ = std::fs::create_dir_all(&dir);
        let f = tempfile::NamedTempFile::new_in(dir).unwrap();
        let bytes: Vec<u8> = (0..len).map(pattern).collect();
        f.as_file().write_all_at(&bytes, 0).unwrap();
        f
    }

    fn pattern(i: usize) -> u8 {
        (i / 512 * 7 + i % 251) as u8
    }

    fn cfg(depth: usize) -> EngineConfig {
        EngineConfig {
            depth,
            max_len: 16 * 1024,
            read_only: false,
            direct: true,
        }
    }

    /// Reaps everything in flight into (tag, kind, outcome, data).
    fn finish(e: &mut Engine) -> Vec<(u64, Kind, Outcome, Vec<u8>)> {
        let mut out = Vec::new();
        while e.in_flight() > 0 {
            e.wait(1).unwrap();
            e.reap(|c| out.push((c.tag, c.kind, c.outcome, c.data.to_vec())));
        }
        out
    }

    #[test]
    fn direct_io_is_on_for_the_target_disk() {
        let img = image(64 * 1024);
        let e = Engine::open(img.path(), &cfg(4)).unwrap();
        // The target dir is on a real filesystem; if this ever runs on one
        // that refuses O_DIRECT, the refusal must be visible, not silent.
        match e.direct() {
            DirectIo::On { offset_align } => assert!(offset_align.is_power_of_two()),
            other => panic!("O_DIRECT refused here: {other:?}"),
        }
    }

    #[test]
    fn no_allocation_per_request() {
        let img = image(256 * 1024);
        let mut e = Engine::open(img.path(), &cfg(8)).unwrap();
        let mut sum = 0u64;
        let mut round = |e: &mut Engine| {
            for t in 0..6u64 {
                e.read(t, t * 4096, 4096).unwrap();
            }
            e.write(6, 8192, &[7; 4096], true).unwrap();
            e.flush(7).unwrap();
            while e.in_flight() > 0 {
                e.wait(1).unwrap();
                e.reap(|c| sum += u64::from(c.data.first().copied().unwrap_or(0)));
            }
        };
        round(&mut e);
        let before = crate::alloc_count::allocations();
        for _ in 0..200 {
            round(&mut e);
        }
        assert_eq!(
            crate::alloc_count::allocations(),
            before,
            "the request path allocated"
        );
        assert!(sum > 0);
    }

    #[test]
    fn reads_in_flight_return_the_right_bytes() {
        let img = image(256 * 1024);
        let mut e = Engine::open(img.path(), &cfg(32)).unwrap();
        for t in 0..32u64 {
            e.read(t, (31 - t) * 4096, 4096).unwrap();
        }
        assert_eq!(e.read(99, 0, 512), Err(SubmitError::Full));
        assert_eq!(e.in_flight(), 32);
        let done = finish(&mut e);
        assert_eq!(done.len(), 32);
        for (tag, kind, outcome, data) in done {
            assert_eq!((kind, outcome), (Kind::Read, Outcome::Done));
            let off = (31 - tag as usize) * 4096;
            assert!(
                data.iter().enumerate().all(|(i, &b)| b == pattern(off + i)),
                "tag {tag}"
            );
        }
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn unaligned_requests_go_buffered_and_are_right() {
        let img = image(64 * 1024);
        let mut e = Engine::open(img.path(), &cfg(4)).unwrap();
        e.read(1, 513, 100).unwrap();
        e.write(2, 4096 + 3, &[0xEE; 700], false).unwrap();
        let done = finish(&mut e);
        let r = done.iter().find(|d| d.0 == 1).unwrap();
        assert_eq!(r.2, Outcome::Done);
        assert!(r.3.iter().enumerate().all(|(i, &b)| b == pattern(513 + i)));
        assert_eq!(done.iter().find(|d| d.0 == 2).unwrap().2, Outcome::Done);
        let mut back = vec![0u8; 702];
        img.as_file().read_exact_at(&mut back, 4096 + 2).unwrap();
        assert_eq!(back[0], pattern(4096 + 2));
        assert!(back[1..701].iter().all(|&b| b == 0xEE));
        assert_eq!(back[701], pattern(4096 + 3 + 700));
    }

    #[test]
    fn bounce_buffers_are_page_aligned() {
        let img = image(64 * 1024);
        let e = Engine::open(img.path(), &cfg(8)).unwrap();
        for s in 0..8 {
            assert_eq!(e.slot_ptr(s) as usize % PAGE, 0, "slot {s}");
        }
    }

    #[test]
    fn flush_is_a_barrier_and_writes_are_read_back() {
        let img = image(256 * 1024);
        let mut e = Engine::open(img.path(), &cfg(32)).unwrap();
        for t in 0..16u64 {
            e.write(t, t * 8192, &[t as u8 + 1; 8192], false).unwrap();
        }
        e.flush(100).unwrap();
        // Queued after the barrier: must see the writes before it.
        for t in 0..8u64 {
            e.read(200 + t, t * 8192, 8192).unwrap();
        }
        let done = finish(&mut e);
        let pos = |tag| done.iter().position(|d| d.0 == tag).unwrap();
        let flush = pos(100);
        assert_eq!(done[flush].2, Outcome::Done);
        for t in 0..16 {
            assert!(pos(t) < flush, "write {t} completed after the flush");
        }
        for t in 0..8u64 {
            let i = pos(200 + t);
            assert!(i > flush, "read {t} completed before the flush");
            assert!(done[i].3.iter().all(|&b| b == t as u8 + 1), "read {t}");
        }
    }

    #[test]
    fn fua_write_and_zeroes() {
        let img = image(64 * 1024);
        let mut e = Engine::open(img.path(), &cfg(4)).unwrap();
        e.write(1, 8192, &[0x11; 4096], true).unwrap();
        e.write_zeroes(2, 0, 4096).unwrap();
        let done = finish(&mut e);
        assert!(done.iter().all(|d| d.2 == Outcome::Done), "{done:?}");
        let mut back = vec![0u8; 4096];
        img.as_file().read_exact_at(&mut back, 8192).unwrap();
        assert!(back.iter().all(|&b| b == 0x11));
        img.as_file().read_exact_at(&mut back, 0).unwrap();
        assert!(back.iter().all(|&b| b == 0));
    }

    #[test]
    fn refusals_start_nothing() {
        let img = image(64 * 1024);
        let mut e = Engine::open(img.path(), &cfg(4)).unwrap();
        assert_eq!(e.read(1, 64 * 1024, 512), Err(SubmitError::OutOfRange));
        assert_eq!(e.read(1, 63 * 1024, 2048), Err(SubmitError::OutOfRange));
        assert_eq!(e.read(1, u64::MAX - 10, 512), Err(SubmitError::OutOfRange));
        assert_eq!(e.read(1, 0, 0), Err(SubmitError::BadLength));
        assert_eq!(e.read(1, 0, 16 * 1024 + 512), Err(SubmitError::BadLength));
        assert_eq!(
            e.write_zeroes(1, 60 * 1024, 8192),
            Err(SubmitError::OutOfRange)
        );
        assert_eq!(e.in_flight(), 0);
        let mut ro = Engine::open(
            img.path(),
            &EngineConfig {
                read_only: true,
                ..cfg(4)
            },
        )
        .unwrap();
        assert_eq!(ro.write(1, 0, &[0; 512], false), Err(SubmitError::ReadOnly));
        assert_eq!(ro.write_zeroes(1, 0, 512), Err(SubmitError::ReadOnly));
        ro.flush(2).unwrap();
        assert_eq!(finish(&mut ro)[0].2, Outcome::Done);
        for bad in [0, MAX_DEPTH + 1] {
            let r = Engine::open(
                img.path(),
                &EngineConfig {
                    depth: bad,
                    ..cfg(4)
                },
            );
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
        let r = Engine::open(
            img.path(),
            &EngineConfig {
                max_len: 1000,
                ..cfg(4)
            },
        );
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn short_read_past_eof_is_an_error() {
        let img = image(64 * 1024);
        let mut e = Engine::open(img.path(), &cfg(4)).unwrap();
        // The file shrinks under the engine: reads that now cross or pass
        // the end must fail, not return fewer bytes as success.
        img.as_file().set_len(48 * 1024 + 512).unwrap();
        e.read(1, 48 * 1024, 4096).unwrap(); // crosses the new end
        e.read(2, 56 * 1024, 4096).unwrap(); // wholly past it
        e.read(3, 4096, 4096).unwrap(); // still inside
        let done = finish(&mut e);
        let get = |t| done.iter().find(|d| d.0 == t).unwrap();
        assert_eq!(get(1).2, Outcome::Short { done: 512 });
        assert!(get(1).3.is_empty());
        assert_eq!(get(2).2, Outcome::Short { done: 0 });
        assert_eq!(get(3).2, Outcome::Done);
    }

    #[test]
    fn write_to_read_only_descriptor_fails_with_the_errno() {
        // Files opened read-only but an engine that believes it may write:
        // the kernel's refusal arrives as the completion's errno.
        let img = image(64 * 1024);
        let files = Files::open(img.path(), true, true).unwrap();
        let mut e = Engine::with_files(files, &cfg(2)).unwrap();
        e.write(1, 0, &[1; 4096], false).unwrap();
        assert_eq!(finish(&mut e)[0].2, Outcome::Os(libc::EBADF));
    }

    #[test]
    fn buffered_when_not_requested() {
        let img = image(64 * 1024);
        let mut e = Engine::open(
            img.path(),
            &EngineConfig {
                direct: false,
                ..cfg(2)
            },
        )
        .unwrap();
        assert_eq!(e.direct(), DirectIo::NotRequested);
        e.read(5, 512, 512).unwrap();
        let d = finish(&mut e);
        assert_eq!(d[0].2, Outcome::Done);
        assert!(d[0]
            .3
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern(512 + i)));
    }

    #[test]
    fn o_direct_refusal_falls_back_loudly() {
        // /dev/shm is tmpfs; kernels before 6.6 refuse O_DIRECT there. On
        // newer ones it is accepted; either way the status must say which.
        let Ok(f) = tempfile::NamedTempFile::new_in("/dev/shm") else {
            return;
        };
        f.as_file().set_len(8192).unwrap();
        let files = Files::open(f.path(), false, true).unwrap();
        match files.status {
            DirectIo::On { .. } => assert!(files.direct.is_some()),
            DirectIo::Refused(errno) => {
                assert!(files.direct.is_none());
                assert_ne!(errno, 0);
            }
            DirectIo::NotRequested => panic!("direct was requested"),
        }
        let mut e = Engine::with_files(files, &cfg(2)).unwrap();
        e.write(1, 0, &[9; 512], false).unwrap();
        assert_eq!(finish(&mut e)[0].2, Outcome::Done);
    }

    /// Pushes a raw entry as if `push` had, so its completion is reaped.
    fn push_raw(e: &mut Engine, sqe: squeue::Entry) {
        let slot = e.take_slot().unwrap();
        e.slots[usize::from(slot)] = Slot {
            tag: 40 + u64::from(slot),
            kind: Kind::Flush,
            len: 0,
            busy: true,
        };
        // SAFETY: the entries pushed by the tests name no buffer, or the
        // slot's own part of the slab.
        unsafe {
            e.ring
                .submission()
                .push(&sqe.user_data(u64::from(slot)))
                .unwrap()
        };
        e.unsubmitted += 1;
    }

    #[test]
    fn ring_refuses_what_the_restrictions_exclude() {
        // The restrictions are really registered: an op not on the list
        // (NOP; OPENAT would be the dangerous one) and a permitted op with
        // a flag not on the list (IOSQE_FIXED_FILE, IOSQE_ASYNC) are refused
        // by the ring itself with EACCES.
        let img = image(8192);
        let mut e = Engine::open(img.path(), &cfg(4)).unwrap();
        push_raw(&mut e, opcode::Nop::new().build());
        let fd = types::Fd(img.as_file().as_raw_fd());
        let p = e.slot_ptr(1);
        push_raw(
            &mut e,
            opcode::ReadFixed::new(fd, p, 512, 0)
                .build()
                .flags(Flags::ASYNC),
        );
        let dirfd = types::Fd(libc::AT_FDCWD);
        push_raw(
            &mut e,
            opcode::OpenAt::new(dirfd, c"/etc/hostname".as_ptr()).build(),
        );
        let done = finish(&mut e);
        assert_eq!(done.len(), 3);
        for d in &done {
            assert_eq!(d.2, Outcome::Os(libc::EACCES), "{d:?}");
        }
        // And no further registration is possible.
        assert!(e.ring.submitter().register_files(&[0]).is_err());
        assert!(e.ring.submitter().register_restrictions(&mut []).is_err());
    }

    #[test]
    fn prepared_engine_serves_once_attached() {
        let img = image(64 * 1024);
        let mut e = Engine::prepare(&cfg(4)).unwrap();
        assert_eq!(e.read(1, 0, 512), Err(SubmitError::NoFile));
        assert_eq!(e.flush(1), Err(SubmitError::NoFile));
        assert_eq!(e.write_zeroes(1, 0, 512), Err(SubmitError::NoFile));
        // Descriptors the caller owns (a PD's host resource), attached
        // without a syscall.
        let fd = img.as_file().as_raw_fd();
        e.attach_fds(fd, None, DirectIo::NotRequested, 64 * 1024)
            .unwrap();
        e.read(2, 4096, 4096).unwrap();
        assert!(matches!(
            e.attach_fds(fd, None, DirectIo::NotRequested, 0),
            Err(AttachError::Busy)
        ));
        let d = finish(&mut e);
        assert_eq!(d[0].2, Outcome::Done);
        assert!(d[0]
            .3
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern(4096 + i)));
        // Re-attached to a smaller view of it: the bound moves.
        e.attach_fds(fd, None, DirectIo::NotRequested, 8192)
            .unwrap();
        assert_eq!(e.read(3, 8192, 512), Err(SubmitError::OutOfRange));
        // An O_DIRECT status without a direct descriptor is not claimed.
        e.attach_fds(fd, None, DirectIo::On { offset_align: 512 }, 8192)
            .unwrap();
        assert_eq!(e.direct(), DirectIo::NotRequested);
    }
}
