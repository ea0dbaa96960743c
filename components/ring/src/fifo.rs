//! A fixed-capacity FIFO in a PD's own memory (not shared): what a PD
//! queues between the shared-memory rings and its device model or
//! virtualiser, with no heap. Full is an answer (`push` returns `false`),
//! never a panic.

/// A FIFO of at most `N` copies of `T` (`N > 0`, checked at compile time).
#[derive(Clone, Copy, Debug)]
pub struct Fifo<T: Copy, const N: usize> {
    items: [Option<T>; N],
    head: usize,
    len: usize,
}

impl<T: Copy, const N: usize> Default for Fifo<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy, const N: usize> Fifo<T, N> {
    // `% N` below: a zero capacity is refused when the type is used.
    const NON_EMPTY: () = assert!(N > 0, "a Fifo needs a capacity of at least 1");

    /// An empty FIFO.
    pub const fn new() -> Self {
        let () = Self::NON_EMPTY;
        Self {
            items: [None; N],
            head: 0,
            len: 0,
        }
    }

    /// Appends `v`; `false` (and nothing changes) when full.
    pub fn push(&mut self, v: T) -> bool {
        if self.len == N {
            return false;
        }
        self.items[(self.head + self.len) % N] = Some(v);
        self.len += 1;
        true
    }

    /// The oldest item, left in place.
    pub fn peek(&self) -> Option<T> {
        if self.len == 0 {
            None
        } else {
            self.items[self.head]
        }
    }

    /// Removes and returns the oldest item.
    pub fn pop(&mut self) -> Option<T> {
        let v = self.peek()?;
        self.items[self.head] = None;
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(v)
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops every item.
    pub fn clear(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::Fifo;

    #[test]
    fn order_wraparound_full_and_clear() {
        let mut f: Fifo<u32, 3> = Fifo::new();
        assert_eq!(f.pop(), None);
        assert!(f.push(1) && f.push(2) && f.push(3));
        assert!(!f.push(4), "full refuses");
        assert_eq!((f.pop(), f.peek(), f.len()), (Some(1), Some(2), 2));
        assert!(f.push(4), "wraps around");
        assert_eq!(
            [f.pop(), f.pop(), f.pop(), f.pop()],
            [Some(2), Some(3), Some(4), None]
        );
        assert!(f.push(5));
        f.clear();
        assert!(f.is_empty() && f.peek().is_none());
    }
}
