//! Property tests: any configuration the writer builds reads back the same,
//! and no input makes the reader panic.

use bulkhead_config::{crc32c, ConfigBuilder, ConfigRegion, CRC_START, HEADER_LEN};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,63}"
}

fn sections() -> impl Strategy<Value = std::collections::BTreeMap<u32, (u16, bool, Vec<u8>)>> {
    btree_map(
        1u32..,
        (any::<u16>(), any::<bool>(), vec(any::<u8>(), 0..40)),
        0..12,
    )
}

fn build(pd: &str, secs: &std::collections::BTreeMap<u32, (u16, bool, Vec<u8>)>) -> Vec<u8> {
    let mut b = ConfigBuilder::new(pd);
    // Insert in reverse to show the order does not matter.
    for (id, (ver, opt, payload)) in secs.iter().rev() {
        b = if *opt {
            b.optional_section(*id, *ver, payload)
        } else {
            b.section(*id, *ver, payload)
        };
    }
    b.build()
        .expect("the writer accepts every generated configuration")
}

proptest! {
    #[test]
    fn round_trip(pd in name(), secs in sections()) {
        let bytes = build(&pd, &secs);
        let cfg = ConfigRegion::parse(&bytes, &pd).unwrap();
        prop_assert_eq!(cfg.pd_name(), pd.as_str());
        let got: Vec<_> = cfg
            .sections()
            .map(|s| (s.type_id, (s.version, s.is_optional(), s.payload().to_vec())))
            .collect();
        let want: Vec<_> = secs.into_iter().collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        let _ = ConfigRegion::parse(&bytes, "p");
    }

    /// Mutations behind a recomputed checksum exercise every structural
    /// check; whatever is accepted must still be self-consistent.
    #[test]
    fn mutated_regions_with_fixed_crc_never_panic(
        pd in name(),
        secs in sections(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = build(&pd, &secs);
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        let total = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        if total >= CRC_START && total <= bytes.len() {
            let crc = crc32c(&bytes[CRC_START..total]);
            bytes[20..24].copy_from_slice(&crc.to_le_bytes());
        }
        if let Ok(cfg) = ConfigRegion::parse(&bytes, &pd) {
            prop_assert!(cfg.len() >= HEADER_LEN);
            let mut end = 0usize;
            for s in cfg.sections() {
                let start = s.payload().as_ptr() as usize - bytes.as_ptr() as usize;
                prop_assert_eq!(start % 8, 0);
                prop_assert!(start >= end);
                end = start + s.payload().len();
            }
            prop_assert_eq!(cfg.sections().count(), cfg.section_count() as usize);
        }
    }
}
