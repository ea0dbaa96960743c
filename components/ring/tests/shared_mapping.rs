//! Two threads, one ring, two mappings of the same memory: no loss, no duplicate, no lost wake-up.
//!
//! The region is a memfd mapped twice, so producer and consumer see the same
//! physical pages at different virtual addresses — as two PDs do — which
//! would expose any assumption that the two sides share pointers. The
//! notification is an eventfd, which has seL4 notification semantics for one
//! badge: signals coalesce, and a read returns and clears them. A lost
//! wake-up shows up as the consumer waiting out its timeout with work in the
//! ring, and fails the test.

// Test code: a failed unwrap or panic is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::ptr::NonNull;
use std::time::{Duration, Instant};

use bulkhead_ring::{layout, Armed, Consumer, Pod, Producer, Region, Request, RingError};

const CAP: u32 = 64;
const ITEMS: u32 = 200_000;
/// Long enough for a loaded CI machine; a lost wake-up waits it out.
const WAKE_TIMEOUT_MS: i32 = 10_000;

/// One memfd mapped twice.
struct Shared {
    fd: libc::c_int,
    len: usize,
    a: NonNull<u8>,
    b: NonNull<u8>,
}

impl Shared {
    fn new(len: usize) -> Self {
        // SAFETY: plain syscalls with valid arguments; results are checked.
        unsafe {
            let fd = libc::memfd_create(c"bulkhead-ring-test".as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0, "memfd_create");
            assert_eq!(libc::ftruncate(fd, i64::try_from(len).unwrap()), 0);
            let map = || {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                );
                assert_ne!(p, libc::MAP_FAILED, "mmap");
                NonNull::new(p.cast::<u8>()).unwrap()
            };
            let (a, b) = (map(), map());
            Shared { fd, len, a, b }
        }
    }

    fn region(&self, which: NonNull<u8>) -> Region<'_> {
        // SAFETY: `which` is one of our two live mappings of `len` bytes
        // (page-aligned by mmap), unmapped only in Drop, i.e. after every
        // borrow of `self`; within this process both are used only through
        // Regions (atomics).
        unsafe { Region::from_raw(which.as_ptr(), self.len) }.unwrap()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mappings and closing our own fd; no
        // Region borrowing them outlives `self`.
        unsafe {
            libc::munmap(self.a.as_ptr().cast(), self.len);
            libc::munmap(self.b.as_ptr().cast(), self.len);
            libc::close(self.fd);
        }
    }
}

/// An eventfd standing in for a Microkit channel.
struct Notification(libc::c_int);

impl Notification {
    fn new() -> Self {
        // SAFETY: plain syscall; result checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(fd >= 0, "eventfd");
        Notification(fd)
    }
    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        let n = unsafe { libc::write(self.0, (&raw const one).cast(), 8) };
        assert_eq!(n, 8);
    }
    /// Waits for a signal; false on timeout.
    fn wait(&self, timeout_ms: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&raw mut pfd, 1, timeout_ms) };
        assert!(n >= 0, "poll");
        if n == 0 {
            return false;
        }
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; the eventfd is readable.
        let r = unsafe { libc::read(self.0, (&raw mut count).cast(), 8) };
        assert_eq!(r, 8);
        true
    }
}

impl Drop for Notification {
    fn drop(&mut self) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(self.0) };
    }
}

/// Payload whose words depend on each other, so a torn or stale slot read
/// would be noticed.
fn item(i: u32) -> Request<[u32; 3]> {
    Request {
        id: i,
        op: i.rotate_left(7),
        payload: [!i, i.wrapping_mul(0x9E37_79B9), i ^ 0x5555_5555],
    }
}

#[test]
fn two_mappings_really_alias() {
    let shm = Shared::new(4096);
    assert_ne!(shm.a, shm.b);
    let ra = shm.region(shm.a);
    let rb = shm.region(shm.b);
    let mut p = Producer::<u32>::attach(ra, 4).unwrap();
    let mut c = Consumer::<u32>::attach(rb, 4).unwrap();
    p.push(&42).unwrap();
    assert_eq!(c.pop(), Ok(Some(42)));
}

#[test]
fn no_loss_no_duplicate_no_lost_wakeup_across_mappings() {
    let bytes = layout::ring_bytes(CAP, Request::<[u32; 3]>::WORDS).unwrap();
    let shm = Shared::new(bytes.next_multiple_of(4096));
    let note = Notification::new();
    let (ra, rb) = (shm.region(shm.a), shm.region(shm.b));

    let (signals, sleeps, arms) = std::thread::scope(|s| {
        let note = &note;
        let producer = s.spawn(move || {
            let mut p = Producer::<Request<[u32; 3]>>::attach(ra, CAP).unwrap();
            let mut signals = 0u32;
            let mut rng = 0x1234_5678u32;
            let mut i = 0;
            while i < ITEMS {
                // Batches of 1..=16 entries, then the notification check, as
                // a PD does at the end of its event handler.
                rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                for _ in 0..(rng >> 28) + 1 {
                    if i == ITEMS {
                        break;
                    }
                    match p.push(&item(i)) {
                        Ok(()) => i += 1,
                        Err(RingError::Full) => break,
                        Err(e) => panic!("producer: {e:?}"),
                    }
                }
                if p.notify_needed() {
                    note.signal();
                    signals += 1;
                }
                // Now and then let the consumer run dry, so that it sleeps.
                if rng % 512 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                } else if rng % 8 == 0 {
                    std::thread::yield_now();
                }
            }
            signals
        });

        let mut c = Consumer::<Request<[u32; 3]>>::attach(rb, CAP).unwrap();
        let mut next = 0;
        let (mut sleeps, mut arms) = (0u32, 0u32);
        let start = Instant::now();
        while next < ITEMS {
            match c.pop().unwrap() {
                Some(got) => {
                    assert_eq!(got, item(next), "lost, duplicated or torn entry");
                    next += 1;
                }
                None => {
                    arms += 1;
                    if c.arm_signal().unwrap() == Armed::MaySleep {
                        sleeps += 1;
                        assert!(
                            note.wait(WAKE_TIMEOUT_MS),
                            "lost wake-up: slept {WAKE_TIMEOUT_MS} ms with {} entries in the ring \
                             after {next} items",
                            c.available().unwrap()
                        );
                    }
                }
            }
        }
        assert_eq!(c.pop(), Ok(None), "more entries than were produced");
        eprintln!("{ITEMS} items in {:?}", start.elapsed());
        (producer.join().unwrap(), sleeps, arms)
    });
    eprintln!(
        "consumer asked {arms} times and slept {sleeps} times; producer signalled {signals} times \
         for {ITEMS} items"
    );
    // The protocol ran both ways: the consumer did sleep and was woken, and
    // the producer signalled only when asked (at most once per request), not
    // for every entry.
    assert!(sleeps > 0, "the wake-up path was not exercised");
    assert!(
        signals > 0 && signals <= arms && signals < ITEMS,
        "signals {signals}, requests {arms}"
    );
}

/// Pops the next entry, sleeping on `note` (consumer protocol) while the ring is empty.
fn next_or_sleep<T: Pod>(c: &mut Consumer<'_, T>, note: &Notification, what: &str) -> T {
    loop {
        if let Some(v) = c.pop().unwrap() {
            return v;
        }
        if c.arm_signal().unwrap() == Armed::MaySleep {
            assert!(
                note.wait(WAKE_TIMEOUT_MS),
                "lost wake-up: {what} slept {WAKE_TIMEOUT_MS} ms with {} entries in its ring",
                c.available().unwrap()
            );
        }
    }
}

/// Request/response ping-pong: every round both sides run dry and sleep, so
/// a lost wake-up on either ring stalls the exchange for good (unlike a
/// stream, where the producer's next publish would mask it).
#[test]
fn request_response_rounds_never_stall() {
    use bulkhead_ring::{InFlight, Response};
    const ROUNDS: u32 = 20_000;
    let req_bytes = layout::ring_bytes(16, Request::<u32>::WORDS).unwrap();
    let rsp_bytes = layout::ring_bytes(16, Response::<u32>::WORDS).unwrap();
    let shm = Shared::new((req_bytes + rsp_bytes).next_multiple_of(4096));
    let (to_server, to_client) = (Notification::new(), Notification::new());
    let (client_req, client_rsp) = shm.region(shm.a).split_at(req_bytes).unwrap();
    let (server_req, server_rsp) = shm.region(shm.b).split_at(req_bytes).unwrap();

    std::thread::scope(|s| {
        let (to_server, to_client) = (&to_server, &to_client);
        s.spawn(move || {
            let mut reqs = Consumer::<Request<u32>>::attach(server_req, 16).unwrap();
            let mut rsps = Producer::<Response<u32>>::attach(server_rsp, 16).unwrap();
            let mut held: Vec<Request<u32>> = Vec::new();
            let mut served = 0;
            while served < ROUNDS {
                let first = next_or_sleep(&mut reqs, to_server, "server");
                held.push(first);
                while let Some(r) = reqs.pop().unwrap() {
                    held.push(r);
                }
                // Complete out of order: newest first.
                while let Some(r) = held.pop() {
                    rsps.push(&Response {
                        id: r.id,
                        status: 0,
                        payload: r.payload.wrapping_add(1),
                    })
                    .unwrap();
                    served += 1;
                }
                if rsps.notify_needed() {
                    to_client.signal();
                }
            }
        });

        let mut reqs = Producer::<Request<u32>>::attach(client_req, 16).unwrap();
        let mut rsps = Consumer::<Response<u32>>::attach(client_rsp, 16).unwrap();
        let mut ids = InFlight::<16>::new();
        let mut sent = 0u32;
        let mut rng = 0x0BAD_5EEDu32;
        while sent < ROUNDS {
            rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let burst = ((rng >> 29) + 1).min(ROUNDS - sent);
            for _ in 0..burst {
                let id = ids.issue().unwrap();
                reqs.push(&Request {
                    id,
                    op: 1,
                    payload: sent,
                })
                .unwrap();
                sent += 1;
            }
            if reqs.notify_needed() {
                to_server.signal();
            }
            for _ in 0..burst {
                let r = next_or_sleep(&mut rsps, to_client, "client");
                ids.complete(r.id).unwrap();
            }
            assert_eq!(ids.outstanding(), 0);
        }
    });
}
