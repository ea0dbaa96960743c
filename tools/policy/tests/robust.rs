//! Property tests: edits of a real policy never make the parser panic, and
//! every diagnostic points inside the file.

// Test helpers outside #[test] fns: a panic there is a failed test.
#![allow(clippy::panic, clippy::unwrap_used)]

use bulkhead_policy::{parse, validate_against};
use proptest::prelude::*;

const AUTOMOTIVE: &str = include_str!("../../../system/automotive/policy.toml");

fn system() -> bulkhead_sdf::model::SystemDescription {
    bulkhead_sdf::parse(include_str!(
        "../../../system/automotive/qemu_virt_aarch64.system"
    ))
    .unwrap()
}

/// Line count and the character length of each line, for range checks.
fn in_file(src: &str, line: u32, col: u32) -> bool {
    let lines: Vec<&str> = src.split('\n').collect();
    let Some(l) = lines.get(line as usize - 1) else {
        return false;
    };
    line >= 1 && col >= 1 && col as usize <= l.chars().count() + 1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn edits_never_panic_and_positions_are_in_the_file(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..12, "[\\[\\]{}=\",a-z0-9 \n#:<>-]{0,6}"), 1..4),
    ) {
        let sys = system();
        let mut src = AUTOMOTIVE.to_string();
        for (at, del, ins) in edits {
            let mut i = at.index(src.len() + 1);
            while !src.is_char_boundary(i) { i -= 1; }
            let mut j = (i + del).min(src.len());
            while !src.is_char_boundary(j) { j -= 1; }
            src.replace_range(i..j, &ins);
        }
        match parse(&src) {
            Err(errs) => {
                prop_assert!(!errs.is_empty());
                for e in errs {
                    prop_assert!(in_file(&src, e.pos.line, e.pos.col), "{}", e.render("p.toml"));
                }
            }
            Ok(p) => {
                for d in validate_against(&p, &sys) {
                    prop_assert!(in_file(&src, d.pos.line, d.pos.col), "{}", d.render("p.toml"));
                }
            }
        }
    }
}
