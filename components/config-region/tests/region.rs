//! Round trips and every corruption the reader must refuse, each with its
//! own error.

// Test helpers: a failed unwrap is a failed test, and every length here is a
// few hundred bytes, so `as u32` cannot truncate.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use bulkhead_config::{
    crc32c, dump, ConfigBuilder, ConfigError, ConfigRegion, FieldReader, SectionEncode,
    SectionType, SectionWriter, CRC_START, FLAG_OPTIONAL, HEADER_LEN, MAX_SECTIONS,
};

const PD: &str = "can_virt";

/// A typed section as a component would define it.
#[derive(Debug, PartialEq)]
struct Budget<'a> {
    tokens_per_ms: u32,
    burst: u64,
    enabled: bool,
    client: &'a str,
}

impl<'a> SectionType<'a> for Budget<'a> {
    const ID: u32 = 0x0003_0002;
    const VERSION: u16 = 3;
    fn decode(payload: &'a [u8]) -> Result<Self, ConfigError> {
        let mut r = FieldReader::new(payload);
        let tokens_per_ms = r.u32()?;
        let burst = r.u64()?;
        let enabled = r.bool()?;
        let n = usize::from(r.u8()?);
        let client = r.str(n)?;
        r.finish()?;
        Ok(Budget {
            tokens_per_ms,
            burst,
            enabled,
            client,
        })
    }
}

impl SectionEncode for Budget<'_> {
    fn encode(&self, out: &mut SectionWriter) {
        out.u32(self.tokens_per_ms)
            .u64(self.burst)
            .bool(self.enabled)
            .u8(u8::try_from(self.client.len()).unwrap())
            .bytes(self.client.as_bytes());
    }
}

fn sample() -> Vec<u8> {
    ConfigBuilder::new(PD)
        .section(0x0003_0001, 1, &[1, 2, 3, 4, 5])
        .typed(&Budget {
            tokens_per_ms: 10,
            burst: 1 << 40,
            enabled: true,
            client: "cluster_vmm",
        })
        .optional_section(0x8000_0001, 7, b"vendor data")
        .build()
        .unwrap()
}

fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Recomputes the checksum, so a test reaches the structural checks behind it.
fn fix_crc(b: &mut [u8]) {
    let total = get32(b, 12) as usize;
    let crc = crc32c(&b[CRC_START..total.min(b.len())]);
    put32(b, 20, crc);
}

/// Offset of directory entry `i`.
fn dir(i: usize) -> usize {
    HEADER_LEN + 16 * i
}

fn refused(b: &[u8]) -> ConfigError {
    ConfigRegion::parse(b, PD).unwrap_err()
}

#[test]
fn round_trip_keeps_every_section() {
    let bytes = sample();
    assert_eq!(bytes.len() % 8, 0);
    let cfg = ConfigRegion::parse(&bytes, PD).unwrap();
    assert_eq!(cfg.pd_name(), PD);
    assert_eq!(cfg.version(), (1, 0));
    assert_eq!(cfg.len(), bytes.len());
    let s: Vec<_> = cfg
        .sections()
        .map(|s| (s.type_id, s.version, s.flags))
        .collect();
    assert_eq!(
        s,
        [
            (0x0003_0001, 1, 0),
            (0x0003_0002, 3, 0),
            (0x8000_0001, 7, FLAG_OPTIONAL)
        ]
    );
    assert_eq!(
        cfg.section(0x0003_0001).unwrap().payload(),
        &[1, 2, 3, 4, 5]
    );
    assert_eq!(cfg.section(0x8000_0001).unwrap().payload(), b"vendor data");
    assert!(cfg.section(0x0003_0003).is_none());
    let b: Budget = cfg.get().unwrap();
    assert_eq!(b.client, "cluster_vmm");
    assert_eq!(b.burst, 1 << 40);
    for s in cfg.sections() {
        assert_eq!(
            s.payload().as_ptr() as usize % 8,
            bytes.as_ptr() as usize % 8
        );
    }
}

#[test]
fn a_region_larger_than_the_configuration_is_accepted() {
    // The memory region is a whole page; the prefill is shorter.
    let mut page = sample();
    let len = page.len();
    page.resize(4096, 0);
    let cfg = ConfigRegion::parse(&page, PD).unwrap();
    assert_eq!(cfg.len(), len);
}

#[test]
fn no_sections_is_valid() {
    let bytes = ConfigBuilder::new("x").build().unwrap();
    assert_eq!(bytes.len(), HEADER_LEN);
    let cfg = ConfigRegion::parse(&bytes, "x").unwrap();
    assert_eq!(cfg.sections().count(), 0);
}

#[test]
fn every_single_bit_flip_is_refused_and_flips_after_the_crc_field_are_checksum_errors() {
    let bytes = sample();
    for byte in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[byte] ^= 1 << bit;
            let err = ConfigRegion::parse(&b, PD).expect_err("a flipped bit was accepted");
            if byte >= CRC_START || (20..24).contains(&byte) {
                assert!(
                    matches!(err, ConfigError::ChecksumMismatch { .. }),
                    "byte {byte} bit {bit}: {err:?}"
                );
            }
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    let bytes = sample();
    for len in 0..bytes.len() {
        let err = refused(&bytes[..len]);
        if len < HEADER_LEN {
            assert_eq!(err, ConfigError::TooShort { len });
        } else {
            assert_eq!(
                err,
                ConfigError::LengthExceedsRegion {
                    total: bytes.len() as u32,
                    region: len
                }
            );
        }
    }
}

#[test]
fn wrong_pd_is_refused_and_named() {
    let err = ConfigRegion::parse(&sample(), "infotainment_vmm").unwrap_err();
    assert!(matches!(err, ConfigError::WrongPd { found } if found.as_str() == PD));
    assert!(err.to_string().contains("built for PD `can_virt`"), "{err}");
    // A prefix of the right name is not the right name.
    assert!(ConfigRegion::parse(&sample(), "can_vir").is_err());
    assert!(ConfigRegion::parse(&sample(), "can_virt\0").is_err());
}

#[test]
fn bad_magic_is_refused() {
    let mut b = sample();
    b[0] = b'X';
    assert_eq!(refused(&b), ConfigError::BadMagic);
    assert_eq!(
        refused(&[0u8; 4096]),
        ConfigError::BadMagic,
        "a region never prefilled"
    );
}

#[test]
fn higher_minor_and_other_major_versions_are_refused() {
    for (major, minor) in [(1u16, 1u16), (1, 0xffff), (2, 0), (0, 0)] {
        let mut b = sample();
        b[8..10].copy_from_slice(&major.to_le_bytes());
        b[10..12].copy_from_slice(&minor.to_le_bytes());
        fix_crc(&mut b);
        assert_eq!(
            refused(&b),
            ConfigError::UnsupportedVersion { major, minor }
        );
    }
}

#[test]
fn oversized_total_length_is_refused() {
    let mut b = sample();
    put32(&mut b, 12, u32::MAX);
    assert_eq!(
        refused(&b),
        ConfigError::LengthExceedsRegion {
            total: u32::MAX,
            region: b.len()
        }
    );
}

#[test]
fn total_length_too_small_for_the_directory_is_refused() {
    let mut b = sample();
    put32(&mut b, 12, HEADER_LEN as u32);
    assert_eq!(
        refused(&b),
        ConfigError::LengthTooSmall {
            total: HEADER_LEN as u32,
            needed: (HEADER_LEN + 3 * 16) as u64
        }
    );
}

#[test]
fn too_many_sections_is_refused() {
    let mut b = sample();
    put32(&mut b, 16, MAX_SECTIONS + 1);
    assert_eq!(
        refused(&b),
        ConfigError::TooManySections {
            count: MAX_SECTIONS + 1
        }
    );
}

#[test]
fn overlapping_sections_are_refused() {
    let mut b = sample();
    // Point section 1 at section 0's payload.
    let s0 = get32(&b, dir(0) + 8);
    put32(&mut b, dir(1) + 8, s0);
    fix_crc(&mut b);
    assert_eq!(refused(&b), ConfigError::SectionOverlap { index: 1 });
    // A payload inside the directory.
    let mut b = sample();
    put32(&mut b, dir(0) + 8, HEADER_LEN as u32);
    fix_crc(&mut b);
    assert_eq!(refused(&b), ConfigError::SectionOverlap { index: 0 });
}

#[test]
fn misaligned_sections_are_refused() {
    let mut b = sample();
    let s1 = get32(&b, dir(1) + 8);
    put32(&mut b, dir(1) + 8, s1 + 4);
    fix_crc(&mut b);
    assert_eq!(refused(&b), ConfigError::SectionMisaligned { index: 1 });
}

#[test]
fn oversized_section_length_is_refused() {
    for len in [u32::MAX, 4096] {
        let mut b = sample();
        put32(&mut b, dir(2) + 12, len);
        fix_crc(&mut b);
        assert_eq!(refused(&b), ConfigError::SectionOutOfBounds { index: 2 });
    }
}

#[test]
fn gaps_and_trailing_bytes_are_refused() {
    // Section 0 shrinks by 8: a gap before section 1.
    let mut b = sample();
    let l0 = get32(&b, dir(0) + 12);
    assert_eq!(l0, 5);
    let s1 = get32(&b, dir(1) + 8);
    put32(&mut b, dir(1) + 8, s1 + 8);
    let s2 = get32(&b, dir(2) + 8);
    put32(&mut b, dir(2) + 8, s2 + 8);
    b.splice(s1 as usize..s1 as usize, [0u8; 8]);
    let total = b.len() as u32;
    put32(&mut b, 12, total);
    fix_crc(&mut b);
    assert_eq!(refused(&b), ConfigError::SectionGap { index: 1 });

    let mut b = sample();
    b.extend_from_slice(&[0; 8]);
    let total = b.len() as u32;
    put32(&mut b, 12, total);
    fix_crc(&mut b);
    assert_eq!(
        refused(&b),
        ConfigError::TrailingData {
            offset: total as usize - 8
        }
    );
}

#[test]
fn nonzero_padding_and_reserved_bytes_are_refused() {
    let mut b = sample();
    let s0 = get32(&b, dir(0) + 8) as usize;
    b[s0 + 5] = 0xAA; // section 0 is 5 bytes: byte 5 is padding
    fix_crc(&mut b);
    assert_eq!(refused(&b), ConfigError::PaddingNotZero { offset: s0 + 5 });

    let mut b = sample();
    b[27] = 1;
    fix_crc(&mut b);
    assert_eq!(refused(&b), ConfigError::ReservedNotZero { offset: 27 });
}

#[test]
fn unknown_flags_are_refused() {
    let mut b = sample();
    b[dir(0) + 6] = 0x02;
    fix_crc(&mut b);
    assert_eq!(
        refused(&b),
        ConfigError::UnknownFlags { index: 0, flags: 2 }
    );
}

#[test]
fn duplicate_unsorted_and_zero_type_ids_are_refused() {
    let mut b = sample();
    put32(&mut b, dir(1), 0x0003_0001);
    fix_crc(&mut b);
    assert_eq!(
        refused(&b),
        ConfigError::DuplicateSection {
            type_id: 0x0003_0001
        }
    );
    let mut b = sample();
    put32(&mut b, dir(1), 0x0000_0001);
    fix_crc(&mut b);
    assert_eq!(refused(&b), ConfigError::SectionOrder { index: 1 });
    let mut b = sample();
    put32(&mut b, dir(0), 0);
    fix_crc(&mut b);
    assert_eq!(refused(&b), ConfigError::ReservedTypeId { index: 0 });
}

#[test]
fn bad_pd_name_fields_are_refused() {
    for (at, v) in [(24usize, 0u8), (24, 65), (24, 7), (32 + 9, b'x')] {
        let mut b = sample();
        b[at] = v;
        fix_crc(&mut b);
        assert_eq!(refused(&b), ConfigError::BadPdName, "byte {at} = {v}");
    }
    let mut b = sample();
    b[32] = 0xff; // not UTF-8
    fix_crc(&mut b);
    assert_eq!(refused(&b), ConfigError::BadPdName);
}

#[test]
fn typed_access_checks_presence_version_and_payload() {
    let bytes = ConfigBuilder::new(PD)
        .section(Budget::ID, Budget::VERSION + 1, &[])
        .build()
        .unwrap();
    let cfg = ConfigRegion::parse(&bytes, PD).unwrap();
    assert_eq!(
        cfg.get::<Budget>().unwrap_err(),
        ConfigError::SectionVersion {
            type_id: Budget::ID,
            found: 4,
            expected: 3
        }
    );
    let bytes = ConfigBuilder::new(PD)
        .section(Budget::ID, Budget::VERSION, &[1, 0, 0, 0])
        .build()
        .unwrap();
    let cfg = ConfigRegion::parse(&bytes, PD).unwrap();
    assert_eq!(
        cfg.get::<Budget>().unwrap_err(),
        ConfigError::PayloadTruncated {
            offset: 4,
            wanted: 8
        }
    );
    let empty = ConfigBuilder::new(PD).build().unwrap();
    let cfg = ConfigRegion::parse(&empty, PD).unwrap();
    assert_eq!(
        cfg.get::<Budget>().unwrap_err(),
        ConfigError::MissingSection {
            type_id: Budget::ID
        }
    );
    assert_eq!(cfg.get_optional::<Budget>(), Ok(None));
}

#[test]
fn require_understood_refuses_unknown_required_sections_only() {
    let bytes = sample();
    let cfg = ConfigRegion::parse(&bytes, PD).unwrap();
    assert_eq!(cfg.require_understood(&[0x0003_0001, 0x0003_0002]), Ok(()));
    assert_eq!(
        cfg.require_understood(&[0x0003_0001]),
        Err(ConfigError::UnknownSection {
            type_id: 0x0003_0002
        })
    );
}

#[test]
fn builder_refuses_what_the_reader_would() {
    assert_eq!(ConfigBuilder::new("").build(), Err(ConfigError::BadPdName));
    assert_eq!(
        ConfigBuilder::new(&"p".repeat(65)).build(),
        Err(ConfigError::BadPdName)
    );
    assert!(ConfigBuilder::new(&"p".repeat(64)).build().is_ok());
    assert_eq!(
        ConfigBuilder::new("a")
            .section(5, 1, &[])
            .section(5, 2, &[])
            .build(),
        Err(ConfigError::DuplicateSection { type_id: 5 })
    );
    assert_eq!(
        ConfigBuilder::new("a").section(0, 1, &[]).build(),
        Err(ConfigError::ReservedTypeId { index: 0 })
    );
    let mut many = ConfigBuilder::new("a");
    for id in 1..=MAX_SECTIONS + 1 {
        many = many.section(id, 1, &[]);
    }
    assert_eq!(
        many.build(),
        Err(ConfigError::TooManySections {
            count: MAX_SECTIONS + 1
        })
    );
}

#[test]
fn error_codes_are_fixed_and_messages_say_the_pd_refuses() {
    let err = {
        let mut b = sample();
        b[150] ^= 1;
        refused(&b)
    };
    assert_eq!(err.code(), 6);
    let msg = err.to_string();
    assert!(
        msg.starts_with("refuses to start: checksum mismatch"),
        "{msg}"
    );
    assert!(msg.ends_with("[config error 6]"), "{msg}");
    assert_eq!(ConfigError::TooShort { len: 0 }.code(), 1);
    assert_eq!(ConfigError::SectionOrder { index: 0 }.code(), 27);
}

#[test]
fn dump_lists_header_and_sections() {
    let bytes = sample();
    let cfg = ConfigRegion::parse(&bytes, PD).unwrap();
    let text = dump(&cfg).to_string();
    assert!(
        text.starts_with("configuration for PD `can_virt`: format 1.0,"),
        "{text}"
    );
    assert!(
        text.contains("[0] type 0x00030001 (can) v1 required 5 bytes"),
        "{text}"
    );
    assert!(text.contains("0000: 01 02 03 04 05"), "{text}");
    assert!(
        text.contains("[2] type 0x80000001 (vendor) v7 optional 11 bytes"),
        "{text}"
    );
}

/// `golden/can_virt.bin` was written by an independent implementation of the
/// layout table in the README (a few lines of Python with `struct`), from the
/// same sections as [`sample`]: the builder must produce the same bytes, so
/// the documented layout and the code cannot drift apart.
#[test]
fn builder_matches_the_documented_layout_byte_for_byte() {
    let golden = include_bytes!("golden/can_virt.bin");
    assert_eq!(sample(), golden.to_vec());
}
