//! End-to-end: test guests driving `virtio-drivers`' console through
//! trapped MMIO, their VMM PDs, `serial_virt` and `serial_driver` on the
//! host board. If the host lacks ptrace, a test prints `SKIPPED: <why>`.

// A panic is how an integration test fails.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use bulkhead_host::{run_file, HostError, RunOptions, RunOutcome};

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: where cargo put this test and the guest programs.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Builds the PD programs of the console system into this target dir.
fn build_pds() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(here().join("../.."))
            .args([
                "build",
                "-p",
                "bulkhead-vmm-host",
                "-p",
                "bulkhead-virt-console-pd",
            ])
            .args([
                "-p",
                "bulkhead-host-serial",
                "-p",
                "bulkhead-test-guests",
                "--target-dir",
            ])
            .arg(bin_dir().parent().unwrap());
        if bin_dir().file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().unwrap().success(),
            "building the console PDs failed"
        );
    });
}

/// Runs `systems/console.system` with the two guests bound to the named
/// programs (a copy in a temporary directory with its own `.host.toml`).
fn run(
    name: &str,
    cluster: &str,
    infotainment: &str,
    until: &str,
    secs: u64,
) -> Option<RunOutcome> {
    build_pds();
    let dir = std::env::temp_dir().join(format!("bh-guests-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sys = dir.join("console.system");
    std::fs::copy(here().join("systems/console.system"), &sys).unwrap();
    std::fs::write(
        dir.join("console.host.toml"),
        format!("[[guest]]\nvm = \"cluster\"\nprogram = \"{cluster}\"\n[[guest]]\nvm = \"infotainment\"\nprogram = \"{infotainment}\"\n"),
    )
    .unwrap();
    let opts = RunOptions {
        search_path: vec![bin_dir()],
        timeout: Some(Duration::from_secs(secs)),
        until_line: (!until.is_empty()).then(|| until.to_string()),
        ..RunOptions::default()
    };
    let out = match run_file(&sys, &opts) {
        Ok(o) => Some(o),
        Err(HostError::Os(what, e)) if what.contains("ptrace") => {
            eprintln!("SKIPPED: {what}: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn rendered(o: &RunOutcome) -> Vec<String> {
    o.lines.iter().map(|l| l.render()).collect()
}

fn pos(lines: &[String], needle: &str) -> Option<usize> {
    lines.iter().position(|l| l.contains(needle))
}

#[test]
fn two_guests_print_through_their_vmms_and_serial_virt() {
    let Some(o) = run("console", "console_guest", "console_guest", "", 8) else {
        return;
    };
    let lines = rendered(&o);
    let text = lines.join("\n");
    for g in ["cluster", "infotainment"] {
        // Every line went guest → trapped MMIO → VMM → ring → serial_virt
        // (tag) → ring → serial_driver (the UART).
        let hello = pos(&lines, &format!("[serial_driver] {g}| hello from a virtio-drivers guest (RAM 0x200000 bytes at 0x40000000)"));
        assert!(hello.is_some(), "{g} greeting missing:\n{text}");
        let mut last = hello.unwrap();
        for n in 1..=5 {
            let at = pos(&lines, &format!("[serial_driver] {g}| line {n}"))
                .unwrap_or_else(|| panic!("{g} line {n} missing:\n{text}"));
            assert!(at > last, "{g} lines out of order:\n{text}");
            last = at;
        }
        // The VMM's IRQ edges reached the guest (Vcpu::inject_irq → eventfd).
        let done = pos(&lines, &format!("[serial_driver] {g}| done ("))
            .unwrap_or_else(|| panic!("{text}"));
        let irqs: u64 = lines[done]
            .split("done (")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(irqs > 0, "{g} saw no interrupt:\n{text}");
    }
    assert!(
        pos(&lines, "MONITOR").is_none(),
        "no fault or refusal expected:\n{text}"
    );
}

/// Runs a misbehaving `cluster` next to `chatty_guest` as `infotainment`
/// until infotainment's 40th line; returns the rendered lines.
fn beside_chatty(name: &str, cluster: &str) -> Option<Vec<String>> {
    let o = run(
        name,
        cluster,
        "chatty_guest",
        r"infotainment\| line 40$",
        30,
    )?;
    assert_eq!(
        o.status,
        0,
        "infotainment never reached line 40:\n{}",
        rendered(&o).join("\n")
    );
    Some(rendered(&o))
}

fn after(lines: &[String], first: &str, then: &str) {
    let text = lines.join("\n");
    let a = pos(lines, first).unwrap_or_else(|| panic!("missing {first:?}:\n{text}"));
    let b = pos(lines, then).unwrap_or_else(|| panic!("missing {then:?}:\n{text}"));
    assert!(a < b, "{then:?} should come after {first:?}:\n{text}");
}

#[test]
fn an_odd_width_read_aborts_only_the_guest_that_made_it() {
    let Some(l) = beside_chatty("oddwidth", "hostile_odd_width") else {
        return;
    };
    after(
        &l,
        "[cluster] hostile: survived nonsense writes; magic still 0x74726976",
        "[cluster] hostile: 2-byte read at offset 0x72",
    );
    after(
        &l,
        "MONITOR: guest cluster: data abort injected",
        "[serial_driver] infotainment| line 40",
    );
    after(
        &l,
        "[cluster_vmm] cluster_vmm: device refused 2-byte access at 0xa000072",
        "MONITOR: guest cluster: killed by signal 7",
    );
    assert!(pos(&l, "odd-width read returned").is_none());
}

#[test]
fn a_read_past_the_windows_aborts_only_that_guest() {
    let Some(l) = beside_chatty("past", "hostile_past_window") else {
        return;
    };
    after(
        &l,
        "[cluster_vmm] cluster_vmm: no device at 0xa000ffc",
        "MONITOR: guest cluster: killed by signal 7",
    );
    after(
        &l,
        "MONITOR: guest cluster: data abort injected",
        "[serial_driver] infotainment| line 40",
    );
    assert!(pos(&l, "past-window read returned").is_none());
}

#[test]
fn an_unsupported_instruction_stops_only_that_guest() {
    let Some(l) = beside_chatty("insn", "hostile_unsupported") else {
        return;
    };
    after(
        &l,
        "MONITOR: guest cluster: unsupported MMIO instruction add (83 00 01)",
        "[serial_driver] infotainment| line 40",
    );
    assert!(pos(&l, "add completed").is_none());
}

#[test]
fn killing_one_guest_leaves_the_other_running() {
    let Some(l) = beside_chatty("kill", "dying_guest") else {
        return;
    };
    after(
        &l,
        "[serial_driver] cluster| line 3",
        "MONITOR: guest cluster: killed by signal 9",
    );
    after(
        &l,
        "MONITOR: guest cluster: killed by signal 9",
        "[serial_driver] infotainment| line 40",
    );
    assert!(pos(&l, "cluster| line 4").is_none());
}
