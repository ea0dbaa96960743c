//! `bulkhead check` end to end: exit codes, messages, JSON, search paths.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sdf")
}

fn bulkhead(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bulkhead-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

#[test]
fn valid_file_exits_0() {
    let f = fixtures().join("valid/02-qemu-devices.system");
    let o = bulkhead(&["check", f.to_str().unwrap(), "--board", "qemu_virt_aarch64"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("ok (0 warnings)"));
}

#[test]
fn warnings_still_exit_0() {
    let f = fixtures().join("invalid/81-unmapped-mr.system");
    let o = bulkhead(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("warning[W002]"));
}

#[test]
fn invalid_file_exits_1_with_position_and_hint() {
    let f = fixtures().join("invalid/15-priority-range.system");
    let o = bulkhead(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("15-priority-range.system:3:33: error[E015]: <protection_domain> priority:"),
        "{e}"
    );
    assert!(e.contains("\n  hint: "), "{e}");
}

#[test]
fn json_output_is_an_array_of_diagnostics() {
    let f = fixtures().join("invalid/55-duplicate-channel-id.system");
    let o = bulkhead(&["check", f.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let d = &v.as_array().unwrap()[0];
    assert_eq!(d["code"], "E056");
    assert_eq!(d["line"], 11);
    assert_eq!(d["col"], 21);
    assert_eq!(d["severity"], "error");
    assert_eq!(d["element"], "end");
    assert_eq!(d["attribute"], "id");
    assert!(d["hint"].as_str().unwrap().len() > 10);
}

#[test]
fn unknown_board_is_usage_error_listing_boards() {
    let f = fixtures().join("valid/01-all-features.system");
    let o = bulkhead(&["check", f.to_str().unwrap(), "--board", "rpi4"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    for b in ["qemu_virt_aarch64", "imx8mp_evk", "imx8mm_evk", "host"] {
        assert!(e.contains(b), "{e}");
    }
}

#[test]
fn unknown_config_is_usage_error_listing_configs() {
    let f = fixtures().join("valid/01-all-features.system");
    let o = bulkhead(&["check", f.to_str().unwrap(), "--config", "fast"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("smp-benchmark"));
}

#[test]
fn missing_file_is_usage_error() {
    let o = bulkhead(&["check", "/nonexistent/x.system"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read '/nonexistent/x.system'"));
}

#[test]
fn no_arguments_is_usage_error() {
    assert_eq!(bulkhead(&["check"]).status.code(), Some(2));
    assert_eq!(bulkhead(&[]).status.code(), Some(2));
}

#[test]
fn not_utf8_is_an_error_with_position() {
    let f = tmp(
        "latin1.system",
        b"<system>\n  <!-- caf\xe9 -->\n</system>\n",
    );
    let o = bulkhead(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(":2:11: error[E001]"), "{}", stderr(&o));
}

#[test]
fn require_images_uses_search_path() {
    let sys = tmp(
        "img.system",
        br#"<system><protection_domain name="a"><program_image path="a.elf"/></protection_domain></system>"#,
    );
    let s = sys.to_str().unwrap();
    // Without --require-images the image need not exist.
    assert_eq!(bulkhead(&["check", s]).status.code(), Some(0));
    let o = bulkhead(&["check", s, "--require-images"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("E071"));
    // Found in the .system file's directory (the default search path)...
    let elf = sys.with_file_name("a.elf");
    std::fs::copy(fixtures().join("valid/data/pd.elf"), &elf).unwrap();
    assert_eq!(
        bulkhead(&["check", s, "--require-images"]).status.code(),
        Some(0)
    );
    // ...but not when another search path replaces the default.
    let o = bulkhead(&[
        "check",
        s,
        "--require-images",
        "--search-path",
        "/nonexistent",
    ]);
    assert_eq!(o.status.code(), Some(1));
    // A file that is there but is no AArch64 ELF is an error even without
    // --require-images.
    std::fs::write(&elf, b"\x7fELF").unwrap();
    let o = bulkhead(&["check", s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("E077"), "{}", stderr(&o));
    std::fs::remove_file(elf).unwrap();
}

#[test]
fn host_board_checks_the_host_binding_file_too() {
    let sys = br#"<system>
  <protection_domain name="a"><program_image path="a.elf"/></protection_domain>
</system>"#;
    let f = tmp("bound.system", sys);
    // A binding file with a key the format does not know.
    tmp(
        "bound.host.toml",
        b"[programs]\na = \"a\"\n\n[nonsense]\nx = 1\n",
    );
    let o = bulkhead(&["check", f.to_str().unwrap(), "--board", "host"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("bound.host.toml:4:"), "{e}");
    assert!(e.contains("nonsense"), "{e}");
    // Other boards do not read it.
    let o = bulkhead(&["check", f.to_str().unwrap(), "--board", "qemu_virt_aarch64"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn host_board_irqs_must_be_fed_by_a_binding() {
    let sys = br#"<system>
  <protection_domain name="ticker"><program_image path="t.elf"/><irq irq="40" id="1"/></protection_domain>
</system>"#;
    let f = tmp("irq.system", sys);
    let o = bulkhead(&["check", f.to_str().unwrap(), "--board", "host"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "irq.system:2:65: error: PD \"ticker\"'s <irq irq=\"40\"> is fed by no host source"
        ),
        "{}",
        stderr(&o)
    );
    tmp(
        "irq.host.toml",
        b"[[timer_irq]]\npd = \"ticker\"\nirq = 40\nperiod_us = 1000\n",
    );
    let o = bulkhead(&["check", f.to_str().unwrap(), "--board", "host"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
