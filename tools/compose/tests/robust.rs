//! Edited descriptions never panic compose, and every error it reports
//! points inside the file: the reference description with random edits
//! (bytes deleted, replaced or inserted; numbers changed; lines dropped).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use proptest::prelude::*;

fn reference() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system/automotive/automotive.toml");
    std::fs::read_to_string(p).unwrap()
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    DropLine(usize),
    Number(usize, u64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), "[ -~\n]{1,12}").prop_map(|(a, s)| Edit::Insert(a, s)),
        any::<usize>().prop_map(Edit::DropLine),
        (
            any::<usize>(),
            prop_oneof![Just(0u64), Just(u64::MAX), Just(1 << 40), 0u64..100_000]
        )
            .prop_map(|(a, v)| Edit::Number(a, v)),
    ]
}

fn apply(src: &str, e: &Edit) -> String {
    let mut s: Vec<char> = src.chars().collect();
    match e {
        Edit::Delete(at, n) => {
            let at = at % s.len();
            let end = (at + n).min(s.len());
            s.drain(at..end);
        }
        Edit::Insert(at, t) => {
            let at = at % (s.len() + 1);
            for (i, c) in t.chars().enumerate() {
                s.insert(at + i, c);
            }
        }
        Edit::DropLine(n) => {
            let lines: Vec<&str> = src.lines().collect();
            let n = n % lines.len();
            return lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != n)
                .map(|(_, l)| *l)
                .collect::<Vec<_>>()
                .join("\n");
        }
        Edit::Number(at, v) => {
            // Replace the at-th number in the file.
            let text: String = s.iter().collect();
            let starts: Vec<usize> = text
                .char_indices()
                .filter(|&(i, c)| {
                    c.is_ascii_digit()
                        && (i == 0 || !text[..i].ends_with(|p: char| p.is_ascii_alphanumeric()))
                })
                .map(|(i, _)| i)
                .collect();
            if starts.is_empty() {
                return text;
            }
            let b = starts[at % starts.len()];
            let e = b + text[b..]
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(text.len() - b);
            return format!("{}{v}{}", &text[..b], &text[e..]);
        }
    }
    s.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn edited_descriptions_never_panic_and_errors_point_inside(edits in proptest::collection::vec(edit(), 1..4)) {
        let mut src = reference();
        for e in &edits {
            src = apply(&src, e);
        }
        let lines = u32::try_from(src.lines().count()).unwrap() + 1;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system/automotive");
        if let Err(diags) = bulkhead_compose::compose(&src, "e.toml", &dir, None) {
            prop_assert!(!diags.is_empty());
            for d in &diags {
                prop_assert!(d.pos.line >= 1 && d.pos.line <= lines, "{} outside {lines} lines", d.render("e.toml"));
                prop_assert!(d.pos.col >= 1);
                prop_assert!(!d.message.starts_with("internal error"), "{}\n---\n{src}", d.render("e.toml"));
            }
        }
    }
}
