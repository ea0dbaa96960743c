//! `scripts/sdk.sh`'s checks before it builds anything: the messages a
//! user without (or with a wrong) SDK sees, and their exit codes. The SDK
//! directories here only have the shape the script inspects; the Microkit
//! tool is never run (the script stops first).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sdk_sh(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(root().join("scripts/sdk.sh"))
        .args(args)
        .env_remove("MICROKIT_SDK")
        .output()
        .expect("bash runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An SDK-shaped directory: bin/microkit (executable, never run) and
/// board/<b>/<c>/ for the given pairs.
fn sdk_dir(name: &str, boards: &[(&str, &str)], with_tool: bool) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("sdk-script")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("bin")).expect("mkdir");
    for (b, c) in boards {
        std::fs::create_dir_all(d.join("board").join(b).join(c)).expect("mkdir");
    }
    if with_tool {
        let tool = d.join("bin/microkit");
        std::fs::write(&tool, "#!/bin/sh\nexit 99\n").expect("write");
        make_executable(&tool);
    }
    d
}

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

const SYSTEM: &str = "tests/sel4/hello.system";

#[test]
fn without_an_sdk_image_says_what_to_set_and_exits_2() {
    let o = sdk_sh(&["image", "", "qemu_virt_aarch64", "debug", SYSTEM]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("make image needs MICROKIT_SDK="),
        "{}",
        stderr(&o)
    );
    let o = sdk_sh(&["qemu", "", "imx8mp_evk", "debug", SYSTEM]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("needs MICROKIT_SDK="), "{}", stderr(&o));
}

#[test]
fn a_directory_without_the_tool_is_not_an_sdk() {
    let d = sdk_dir("no-tool", &[("qemu_virt_aarch64", "debug")], false);
    let o = sdk_sh(&[
        "image",
        d.to_str().unwrap(),
        "qemu_virt_aarch64",
        "debug",
        SYSTEM,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bin/microkit not found or not executable"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unknown_board_or_config_lists_the_valid_ones() {
    let d = sdk_dir(
        "boards",
        &[
            ("qemu_virt_aarch64", "debug"),
            ("qemu_virt_aarch64", "release"),
            ("imx8mm_evk", "debug"),
        ],
        true,
    );
    let sdk = d.to_str().unwrap();
    let o = sdk_sh(&["image", sdk, "imx8mp_evk", "debug", SYSTEM]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("board 'imx8mp_evk' is not in this SDK"), "{e}");
    assert!(
        e.contains("  imx8mm_evk\n") && e.contains("  qemu_virt_aarch64\n"),
        "{e}"
    );

    let o = sdk_sh(&["image", sdk, "qemu_virt_aarch64", "benchmark", SYSTEM]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("config 'benchmark' is not in this SDK"), "{e}");
    assert!(e.contains("  debug\n") && e.contains("  release\n"), "{e}");
}

#[test]
fn a_missing_system_file_is_named() {
    let d = sdk_dir("nosys", &[("qemu_virt_aarch64", "debug")], true);
    let o = sdk_sh(&[
        "image",
        d.to_str().unwrap(),
        "qemu_virt_aarch64",
        "debug",
        "no/such.system",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("SYSTEM=no/such.system not found"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unknown_subcommands_print_usage() {
    let o = sdk_sh(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("usage:"), "{}", stderr(&o));
}
