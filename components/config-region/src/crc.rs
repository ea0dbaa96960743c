//! CRC-32C (Castagnoli), the checksum of a configuration region.
//!
//! CRC-32C rather than the zip CRC-32 because its polynomial has a larger
//! Hamming distance at the lengths configuration regions have (it detects
//! every error of up to 5 bits in a message up to about 1 KiB and all burst
//! errors up to 32 bits), and it is the checksum other storage formats
//! (iSCSI, ext4, btrfs) use, so it is easy to check with standard tools.
//!
//! ```
//! assert_eq!(bulkhead_config::crc32c(b"123456789"), 0xE306_9283);
//! ```

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// The byte-at-a-time lookup table, computed at compile time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i: u32 = 0;
    while i < 256 {
        let mut c = i;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        table[i as usize] = c;
        i += 1;
    }
    table
};

/// CRC-32C of `data` (initial value and final XOR `0xFFFF_FFFF`).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        let idx = usize::from(crc.to_le_bytes()[0] ^ b);
        crc = (crc >> 8) ^ TABLE[idx];
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::crc32c;

    #[test]
    fn check_value_of_the_standard() {
        // The "check" value of CRC-32C in the CRC catalogue (RFC 3720 B.4).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }
}
