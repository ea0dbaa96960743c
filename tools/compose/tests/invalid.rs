//! Every description in tests/fixtures/compose/invalid/ is rejected, and its
//! first line `# expect: LINE:COL: MESSAGE` names the position and (a part
//! of) the message of one of the errors. An optional `# board: B` line
//! composes for that board only.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/compose/invalid")
}

#[test]
fn every_invalid_fixture_is_rejected_at_the_right_place() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "only {} invalid fixtures", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let expect = src
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: no `# expect:` line"));
        let board = src.lines().find_map(|l| l.strip_prefix("# board: "));
        let mut parts = expect.splitn(3, ':');
        let line: u32 = parts.next().unwrap().trim().parse().unwrap();
        let col: u32 = parts.next().unwrap().trim().parse().unwrap();
        let msg = parts.next().unwrap_or("").trim();
        match bulkhead_compose::compose(&src, &name, &fixtures(), board) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(diags) => {
                let hit = diags
                    .iter()
                    .any(|d| d.pos.line == line && d.pos.col == col && d.message.contains(msg));
                if !hit {
                    let got: Vec<String> = diags.iter().map(|d| d.render(&name)).collect();
                    failures.push(format!(
                        "{name}: expected {line}:{col}: {msg}\n  got:\n{}",
                        got.join("\n")
                    ));
                }
                for d in &diags {
                    assert!(!d.hint.is_empty(), "{name}: diagnostic without a hint: {d}");
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
