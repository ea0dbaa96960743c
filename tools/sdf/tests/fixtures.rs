//! Table-driven test over `tests/fixtures/sdf/`.
//!
//! Every file in `invalid/` starts with `<!-- expect: CODE LINE:COL [opts] -->`
//! (opts: `board=B`, `config=C`, `require-images`). The test asserts that
//! checking the file reports CODE at exactly LINE:COL, that an `E` code makes
//! the file invalid, and that no file demonstrates a rule another file
//! already covers (one fixture per rule). Every file in `valid/` must check
//! without errors or warnings.

// Test helpers: a failed unwrap or panic here is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bulkhead_sdf::{check_source, CheckOptions, Config, Pos, RULES};

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/sdf")
        .join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "system"))
        .collect();
    v.sort();
    v
}

struct Expect {
    code: String,
    pos: Pos,
    opts: CheckOptions,
}

fn expectation(path: &Path, src: &str) -> Expect {
    let first = src.lines().next().unwrap_or_default();
    let body = first
        .strip_prefix("<!-- expect: ")
        .and_then(|s| s.strip_suffix(" -->"))
        .unwrap_or_else(|| {
            panic!(
                "{}: first line must be <!-- expect: CODE L:C -->",
                path.display()
            )
        });
    let mut words = body.split_whitespace();
    let code = words.next().unwrap().to_string();
    let (l, c) = words.next().unwrap().split_once(':').unwrap();
    let mut opts = CheckOptions {
        search_paths: vec![path.parent().unwrap().to_path_buf()],
        ..CheckOptions::default()
    };
    for w in words {
        if let Some(b) = w.strip_prefix("board=") {
            opts.board =
                Some(bulkhead_boards::board(b).unwrap_or_else(|| panic!("unknown board {b}")));
        } else if let Some(c) = w.strip_prefix("config=") {
            opts.config = Config::parse(c).unwrap();
        } else if w == "require-images" {
            opts.require_images = true;
        } else {
            panic!("{}: unknown option {w}", path.display());
        }
    }
    Expect {
        code,
        pos: Pos {
            line: l.parse().unwrap(),
            col: c.parse().unwrap(),
        },
        opts,
    }
}

#[test]
fn each_invalid_fixture_reports_its_rule_at_its_position() {
    let files = fixtures("invalid");
    assert!(files.len() >= 40, "only {} invalid fixtures", files.len());
    let mut by_code: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut failures = Vec::new();
    for path in &files {
        let src = std::fs::read_to_string(path).unwrap();
        let exp = expectation(path, &src);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let rule = RULES
            .iter()
            .find(|r| r.code == exp.code)
            .unwrap_or_else(|| panic!("{name}: {} is not in RULES", exp.code));
        assert!(
            name.ends_with(&format!("-{}.system", rule.name)),
            "{name}: file name should end in -{}.system",
            rule.name
        );
        if let Some(prev) = by_code.insert(exp.code.clone(), path.clone()) {
            panic!(
                "{} and {name} both demonstrate {}",
                prev.display(),
                exp.code
            );
        }
        let report = check_source(&src, &name, &exp.opts);
        let hit = report
            .diagnostics
            .iter()
            .find(|d| d.code == exp.code && d.pos == exp.pos);
        match hit {
            None => failures.push(format!(
                "{name}: expected {} at {}:{}, got:\n{}",
                exp.code,
                exp.pos.line,
                exp.pos.col,
                report.render()
            )),
            Some(d) => {
                assert!(!d.hint.is_empty(), "{name}: empty hint");
                assert!(!d.message.is_empty(), "{name}: empty message");
                if exp.code.starts_with('E') {
                    assert!(!report.is_valid(), "{name}: error code but report valid");
                } else {
                    // A warning fixture shows that warning and nothing worse.
                    assert!(report.is_valid(), "{name}: {}", report.render());
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every rule is demonstrated, except those no supported board can
    // trigger (tested in the checker's unit tests with a constructed board).
    const NO_FIXTURE: &[&str] = &["E083"];
    for r in RULES {
        assert!(
            by_code.contains_key(r.code) || NO_FIXTURE.contains(&r.code),
            "no fixture demonstrates {} ({})",
            r.code,
            r.name
        );
    }
}

#[test]
fn valid_fixtures_are_clean() {
    let files = fixtures("valid");
    assert!(!files.is_empty());
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let first = src.lines().next().unwrap_or_default();
        let mut opts = CheckOptions {
            search_paths: vec![path.parent().unwrap().to_path_buf()],
            ..CheckOptions::default()
        };
        // `<!-- check: board=B config=C -->` selects what to check against.
        if let Some(body) = first
            .strip_prefix("<!-- check: ")
            .and_then(|s| s.strip_suffix(" -->"))
        {
            for w in body.split_whitespace() {
                if let Some(b) = w.strip_prefix("board=") {
                    opts.board = bulkhead_boards::board(b);
                    assert!(opts.board.is_some(), "unknown board {b}");
                } else if let Some(c) = w.strip_prefix("config=") {
                    opts.config = Config::parse(c).unwrap();
                }
            }
        }
        let report = check_source(&src, &path.display().to_string(), &opts);
        assert!(report.diagnostics.is_empty(), "{}", report.render());
    }
}
