//! What the console test PDs and the test that reads their output agree
//! on: the lines each client writes.
#![no_std]

/// Lines each client writes (before the long one).
pub const LINES: u32 = 3;

/// Length of the long line's pattern: longer than a ring chunk (56 bytes)
/// and than the UART's 32-byte TX FIFO, so it crosses both.
pub const LONG: usize = 150;

/// Byte `i` of the long line's pattern (printable ASCII, position-coded so
/// a lost or repeated byte shows).
pub fn long_byte(i: usize) -> u8 {
    // i % 26 < 26, so the sum stays in 'a'..='z'.
    b'a' + u8::try_from(i % 26).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_pattern_is_printable_and_position_coded() {
        assert_eq!(long_byte(0), b'a');
        assert_eq!(long_byte(25), b'z');
        assert_eq!(long_byte(26), b'a');
        assert!((0..LONG).all(|i| long_byte(i).is_ascii_lowercase()));
    }
}
