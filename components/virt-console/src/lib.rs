//! The console virtualiser's policy: per-guest output tagged by guest, input
//! switched between guests.
//!
//! ```
//! use bulkhead_virt_console::ConsoleMux;
//! let mut mux: ConsoleMux<2> = ConsoleMux::new(["cluster", "infotainment"]);
//! let mut uart = Vec::new();
//! mux.output(1, b"hello\nwor", &mut |b: &[u8]| { uart.extend_from_slice(b); b.len() });
//! assert_eq!(uart, b"infotainment| hello\n");
//! ```
#![no_std]
#![forbid(unsafe_code)]

/// Longest line kept per guest before it is cut.
pub const LINE_MAX: usize = 200;
/// Input bytes queued per guest.
pub const INPUT_MAX: usize = 256;
/// Longest guest name shown in the prefix.
pub const NAME_MAX: usize = 16;
/// The escape byte (Ctrl-A).
pub const ESCAPE: u8 = 0x01;

/// Per-guest counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestStats {
    /// Lines written to the UART.
    pub lines: u32,
    /// Lines cut at [`LINE_MAX`].
    pub cut: u32,
    /// Input bytes dropped because the guest's queue was full.
    pub input_dropped: u32,
}

struct Guest {
    name: [u8; NAME_MAX],
    name_len: usize,
    line: [u8; LINE_MAX],
    line_len: usize,
    input: [u8; INPUT_MAX],
    in_head: usize,
    in_len: usize,
    stats: GuestStats,
}

impl Guest {
    fn new(name: &str) -> Guest {
        let mut n = [0u8; NAME_MAX];
        let len = name.len().min(NAME_MAX);
        n[..len].copy_from_slice(&name.as_bytes()[..len]);
        Guest {
            name: n,
            name_len: len,
            line: [0; LINE_MAX],
            line_len: 0,
            input: [0; INPUT_MAX],
            in_head: 0,
            in_len: 0,
            stats: GuestStats::default(),
        }
    }

    fn push_input(&mut self, b: u8) {
        if self.in_len == INPUT_MAX {
            self.stats.input_dropped = self.stats.input_dropped.saturating_add(1);
            return;
        }
        self.input[(self.in_head + self.in_len) % INPUT_MAX] = b;
        self.in_len += 1;
    }
}

/// The console virtualiser for `N` guests.
pub struct ConsoleMux<const N: usize> {
    guests: [Guest; N],
    selected: usize,
    escape: bool,
}

/// Where a guest's finished line goes: returns how many bytes it took. A
/// short write means the UART is full: the line stays and is retried by the
/// next [`ConsoleMux::output`] or [`ConsoleMux::flush`] call.
pub trait Sink {
    /// Write `bytes`; return how many were taken.
    fn write(&mut self, bytes: &[u8]) -> usize;
}

impl<F: FnMut(&[u8]) -> usize> Sink for F {
    fn write(&mut self, bytes: &[u8]) -> usize {
        self(bytes)
    }
}

impl<const N: usize> ConsoleMux<N> {
    /// A mux for guests named `names` (guest `i` is selected by `Ctrl-A i`).
    pub fn new(names: [&str; N]) -> Self {
        ConsoleMux {
            guests: names.map(Guest::new),
            selected: 0,
            escape: false,
        }
    }

    /// The guest input goes to.
    pub fn selected(&self) -> usize {
        self.selected
    }

    /// Counters of guest `g`.
    pub fn stats(&self, g: usize) -> Option<GuestStats> {
        self.guests.get(g).map(|g| g.stats)
    }

    /// Emit guest `g`'s pending line (prefix, text, newline) if the sink
    /// takes all of it; false when the sink is full.
    fn emit(guest: &mut Guest, sink: &mut dyn Sink) -> bool {
        // Assemble the whole line first so it reaches the UART in one piece.
        let mut out = [0u8; NAME_MAX + 2 + LINE_MAX + 1];
        let mut n = 0;
        for &b in guest.name[..guest.name_len].iter().chain(b"| ") {
            out[n] = b;
            n += 1;
        }
        out[n..n + guest.line_len].copy_from_slice(&guest.line[..guest.line_len]);
        n += guest.line_len;
        out[n] = b'\n';
        n += 1;
        if sink.write(&out[..n]) < n {
            return false;
        }
        guest.line_len = 0;
        guest.stats.lines = guest.stats.lines.saturating_add(1);
        true
    }

    /// Take guest `g`'s output bytes; complete lines go to `sink`. Returns
    /// how many of `bytes` were consumed (fewer when the sink is full and
    /// the line buffer is too: the caller offers the rest later).
    pub fn output(&mut self, g: usize, bytes: &[u8], sink: &mut dyn Sink) -> usize {
        let Some(guest) = self.guests.get_mut(g) else {
            return bytes.len();
        };
        for (i, &b) in bytes.iter().enumerate() {
            if guest.line_len == LINE_MAX {
                // A line with no end: cut it rather than let it hold the UART.
                if !Self::emit(guest, sink) {
                    return i;
                }
                guest.stats.cut = guest.stats.cut.saturating_add(1);
            }
            match b {
                b'\n' => {
                    if !Self::emit(guest, sink) {
                        return i;
                    }
                }
                b'\r' => {}
                _ => {
                    guest.line[guest.line_len] = b;
                    guest.line_len += 1;
                }
            }
        }
        bytes.len()
    }

    /// Input from the UART: escapes change the selection, other bytes queue
    /// for the selected guest.
    pub fn input(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.escape {
                self.escape = false;
                if b == ESCAPE {
                    self.push(ESCAPE);
                } else if let Some(d) = b.checked_sub(b'0').map(usize::from) {
                    if d < N {
                        self.selected = d;
                    }
                }
                continue;
            }
            if b == ESCAPE {
                self.escape = true;
            } else {
                self.push(b);
            }
        }
    }

    fn push(&mut self, b: u8) {
        if let Some(g) = self.guests.get_mut(self.selected) {
            g.push_input(b);
        }
    }

    /// Move guest `g`'s queued input into `buf`; returns how many bytes.
    pub fn take_input(&mut self, g: usize, buf: &mut [u8]) -> usize {
        let Some(guest) = self.guests.get_mut(g) else {
            return 0;
        };
        let n = buf.len().min(guest.in_len);
        for slot in buf.iter_mut().take(n) {
            *slot = guest.input[guest.in_head];
            guest.in_head = (guest.in_head + 1) % INPUT_MAX;
        }
        guest.in_len -= n;
        n
    }

    /// Whether guest `g` has input queued.
    pub fn input_pending(&self, g: usize) -> bool {
        self.guests.get(g).is_some_and(|x| x.in_len > 0)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn sink(v: &mut Vec<u8>) -> impl FnMut(&[u8]) -> usize + '_ {
        |b: &[u8]| {
            v.extend_from_slice(b);
            b.len()
        }
    }

    #[test]
    fn lines_are_prefixed_and_never_mixed() {
        let mut mux: ConsoleMux<2> = ConsoleMux::new(["cluster", "info"]);
        let mut uart = Vec::new();
        mux.output(0, b"speed 5", &mut sink(&mut uart));
        mux.output(1, b"song\nnext", &mut sink(&mut uart));
        mux.output(0, b"0 km/h\r\n", &mut sink(&mut uart));
        assert_eq!(uart, b"info| song\ncluster| speed 50 km/h\n");
    }

    #[test]
    fn a_guest_cannot_forge_another_prefix() {
        let mut mux: ConsoleMux<2> = ConsoleMux::new(["cluster", "info"]);
        let mut uart = Vec::new();
        mux.output(1, b"x\ncluster| fake warning\n", &mut sink(&mut uart));
        assert_eq!(uart, b"info| x\ninfo| cluster| fake warning\n");
    }

    #[test]
    fn an_endless_line_is_cut_not_held() {
        let mut mux: ConsoleMux<1> = ConsoleMux::new(["g"]);
        let mut uart = Vec::new();
        let long = [b'a'; LINE_MAX + 10];
        assert_eq!(mux.output(0, &long, &mut sink(&mut uart)), long.len());
        assert_eq!(uart.len(), 3 + LINE_MAX + 1);
        assert_eq!(mux.stats(0).unwrap().cut, 1);
    }

    #[test]
    fn a_full_uart_keeps_the_line_and_consumes_no_more() {
        let mut mux: ConsoleMux<1> = ConsoleMux::new(["g"]);
        let mut full = |_: &[u8]| 0usize;
        assert_eq!(
            mux.output(0, b"ab\ncd", &mut full),
            2,
            "stops at the newline it cannot emit"
        );
        let mut uart = Vec::new();
        assert_eq!(mux.output(0, b"\ncd", &mut sink(&mut uart)), 3);
        assert_eq!(uart, b"g| ab\n");
    }

    #[test]
    fn escape_selects_and_doubles_and_overflow_hurts_only_the_selected() {
        let mut mux: ConsoleMux<2> = ConsoleMux::new(["a", "b"]);
        mux.input(b"x\x011y\x01\x01\x019z");
        let mut buf = [0u8; 8];
        let n = mux.take_input(0, &mut buf);
        assert_eq!(&buf[..n], b"x");
        let n = mux.take_input(1, &mut buf);
        assert_eq!(&buf[..n], b"y\x01z", "out-of-range digit ignored");
        mux.input(&[b'q'; INPUT_MAX + 5]);
        assert_eq!(mux.stats(1).unwrap().input_dropped, 5);
        assert_eq!(mux.stats(0).unwrap().input_dropped, 0);
        assert!(!mux.input_pending(0));
    }

    proptest::proptest! {
        #[test]
        fn any_output_yields_whole_prefixed_lines(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..20), g in 0usize..3) {
            let mut mux: ConsoleMux<2> = ConsoleMux::new(["a", "b"]);
            let mut uart = Vec::new();
            for c in &chunks {
                let took = mux.output(g, c, &mut sink(&mut uart));
                proptest::prop_assert_eq!(took, c.len());
            }
            if g < 2 {
                let prefix: &[u8] = if g == 0 { b"a| " } else { b"b| " };
                for line in uart.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    proptest::prop_assert!(line.starts_with(prefix));
                    proptest::prop_assert!(line.len() <= prefix.len() + LINE_MAX);
                }
            } else {
                proptest::prop_assert!(uart.is_empty(), "unknown guest index writes nothing");
            }
        }
    }
}
