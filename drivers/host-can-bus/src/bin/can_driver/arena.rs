//! The driver's heap: a fixed arena in `.bss`, because after lockdown a PD
//! may not ask the host kernel for memory (no `brk`, no `mmap`), and the
//! bus model (`CanBus`) allocates as it runs.
//!
//! Power-of-two size classes from 16 bytes to 8 MiB, each with a free
//! list; a class with an empty list takes fresh space from the arena. The
//! bus model's allocations are short-lived event vectors and a few
//! long-lived queues, so the classes' free lists absorb nearly everything.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

const ARENA_BYTES: usize = 96 << 20;
const MIN_SHIFT: u32 = 4;
const CLASSES: usize = 20; // 16 B ..= 8 MiB

#[repr(C, align(4096))]
struct Mem(UnsafeCell<core::mem::MaybeUninit<[u8; ARENA_BYTES]>>);

struct Inner {
    top: usize,
    free: [usize; CLASSES],
}

/// The allocator.
pub struct Arena {
    mem: Mem,
    inner: UnsafeCell<Inner>,
}

// SAFETY: a PD is one thread (the runtime is single-threaded and seccomp
// forbids `clone`), so the allocator is never entered concurrently.
unsafe impl Sync for Arena {}

impl Arena {
    /// An empty arena.
    pub const fn new() -> Self {
        Self {
            mem: Mem(UnsafeCell::new(core::mem::MaybeUninit::uninit())),
            inner: UnsafeCell::new(Inner {
                top: 0,
                free: [0; CLASSES],
            }),
        }
    }

    fn class(layout: Layout) -> Option<(usize, usize)> {
        let size = layout.size().max(layout.align()).max(1 << MIN_SHIFT);
        let size = size.checked_next_power_of_two()?;
        let class = usize::try_from(size.trailing_zeros() - MIN_SHIFT).ok()?;
        (class < CLASSES && layout.align() <= 4096).then_some((class, size))
    }
}

// SAFETY: blocks are disjoint ranges of the arena, each at least as large
// and as aligned as its layout (power-of-two blocks aligned to min(size,
// 4096) ≥ align); a freed block is reused only for its own class.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((class, size)) = Self::class(layout) else {
            return core::ptr::null_mut();
        };
        // SAFETY: single-threaded (see `Sync`), so this is the only
        // reference to the bookkeeping while it lives.
        let inner = unsafe { &mut *self.inner.get() };
        let base = self.mem.0.get().cast::<u8>();
        let head = inner.free[class];
        if head != 0 {
            // SAFETY: `head` is a freed block of this class inside the
            // arena; its first word holds the next free block's address.
            inner.free[class] = unsafe { core::ptr::read(head as *const usize) };
            return head as *mut u8;
        }
        let align = size.min(4096);
        let start = inner.top.next_multiple_of(align);
        match start.checked_add(size) {
            Some(end) if end <= ARENA_BYTES => {
                inner.top = end;
                // SAFETY: `start + size <= ARENA_BYTES`: inside the arena.
                unsafe { base.add(start) }
            }
            _ => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some((class, _)) = Self::class(layout) else {
            return;
        };
        // SAFETY: single-threaded; `ptr` is a block of this class (the
        // caller passes the layout it allocated with), at least 16 bytes
        // and word-aligned, now unused: its first word links the list.
        unsafe {
            let inner = &mut *self.inner.get();
            core::ptr::write(ptr.cast::<usize>(), inner.free[class]);
            inner.free[class] = ptr as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let same = Layout::from_size_align(new_size, layout.align())
            .ok()
            .and_then(Self::class)
            .zip(Self::class(layout))
            .is_some_and(|(a, b)| a.0 == b.0);
        if same {
            return ptr;
        }
        let Ok(new) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        // SAFETY: the GlobalAlloc contract, forwarded: a fresh block of the
        // new size, the old contents copied, the old block freed.
        unsafe {
            let p = self.alloc(new);
            if !p.is_null() {
                core::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_disjoint_reused_and_bounded() {
        static A: Arena = Arena::new();
        let l = |size, align| Layout::from_size_align(size, align).unwrap();
        // SAFETY: the test is the arena's only user; every block is freed
        // with the layout it was allocated with.
        unsafe {
            let a = A.alloc(l(24, 8));
            let b = A.alloc(l(24, 8));
            assert!(!a.is_null() && !b.is_null());
            assert!(
                (b as usize).abs_diff(a as usize) >= 32,
                "24 bytes take a 32-byte block"
            );
            let c = A.alloc(l(100, 64));
            assert_eq!(c as usize % 64, 0);
            A.dealloc(a, l(24, 8));
            assert_eq!(A.alloc(l(20, 4)), a, "a freed block of the class is reused");
            let r = A.realloc(b, l(24, 8), 30);
            assert_eq!(r, b, "same class: same block");
            let big = A.realloc(r, l(30, 8), 5000);
            assert!(!big.is_null() && big != b);
            assert!(A.alloc(l(16 << 20, 8)).is_null(), "above the largest class");
            assert!(A.alloc(l(8, 8192)).is_null(), "alignment above a page");
        }
    }
}
