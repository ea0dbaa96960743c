//! seL4 boot tests on QEMU's `imx8mp-evk` for the i.MX drivers' PDs, with
//! the real virtualisers in front of them:
//!
//! - `console-imx8mp.system`: two `console_client` PDs (as `cluster` and
//!   `infotainment`) -> `serial_virt` -> `imx_uart_driver` on UART2, the
//!   console QEMU gives the test. Every client line must come out of the
//!   UART whole, tagged with its client by `serial_virt`, in each client's
//!   order — including a 150-byte line that crosses ring chunks and the
//!   32-byte TX FIFO (the driver's backpressure path).
//!
//! Without `MICROKIT_SDK` at build time the boot test is reported as
//! ignored with a `SKIPPED:` reason (see build.rs and boot.rs).

use std::path::PathBuf;
use std::time::Duration;

use bulkhead_sel4_console_pds::{long_byte, LINES, LONG};

/// Lines no console of these tests may contain.
const FORBIDDEN: &[&str] = &["stopping", "corrupt", "MON|ERROR", "panicked", "no serial_"];

#[cfg_attr(not(microkit_sdk), allow(dead_code))]
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

#[cfg_attr(not(microkit_sdk), allow(dead_code))]
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The lines the console must show for client PD `pd` tagged `tag`, in
/// order.
fn client_lines(tag: &str, pd: &str) -> Vec<String> {
    let mut v: Vec<String> = (1..=LINES)
        .map(|n| format!("{tag}| {pd}: line {n} of {LINES}"))
        .collect();
    let long: String = (0..LONG).map(|i| char::from(long_byte(i))).collect();
    v.push(format!("{tag}| {pd}: long {long}"));
    v
}

/// The first of `want` not found, in order, among the console's lines.
fn missing_in_order<'w>(want: &'w [String], console: &str) -> Option<&'w str> {
    let mut lines = console.lines().map(|l| l.trim_end_matches('\r'));
    want.iter()
        .find(|w| !lines.any(|l| l == w.as_str()))
        .map(String::as_str)
}

#[test]
fn missing_in_order_needs_whole_lines_in_order() {
    let want = client_lines("cluster", "cluster");
    let mut console: String = want.iter().map(|l| format!("{l}\r\n")).collect();
    assert_eq!(missing_in_order(&want, &console), None);
    // Another client's and the kernel's lines in between are fine.
    console = format!("x\n{}\ninfotainment| y\n{}", want[0], want[1..].join("\n"));
    assert_eq!(missing_in_order(&want, &console), None);
    // Swapped order, a cut line, a byte lost from the long line: missing.
    let swapped = format!("{}\n{}\n{}\n{}", want[1], want[0], want[2], want[3]);
    assert!(missing_in_order(&want, &swapped).is_some());
    let cut = &want[3][..want[3].len() - 1];
    let lost = format!("{}\n{}\n{}\n{cut}", want[0], want[1], want[2]);
    assert_eq!(missing_in_order(&want, &lost), Some(want[3].as_str()));
}

#[cfg(microkit_sdk)]
mod with_sdk {
    use super::{root, BOOT_TIMEOUT};
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};

    /// Boots `system` on `imx8mp_evk` (debug config) with `scripts/sdk.sh
    /// qemu` and returns the console once `done` holds or the timeout
    /// passed.
    pub fn boot(system: &str, build_dir: &str, done: &dyn Fn(&str) -> bool) -> String {
        let sdk = std::env::var("MICROKIT_SDK")
            .expect("MICROKIT_SDK was set at build time; set it for the run too");
        let mut child = Command::new("scripts/sdk.sh")
            .current_dir(root())
            .args(["qemu", &sdk, "imx8mp_evk", "debug", system])
            // The system's sidecar names the PD packages.
            .env_remove("PD_PACKAGES")
            // Its own output directory: no race with other boot tests.
            .env("SDK_BUILD_DIR", build_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("scripts/sdk.sh runs");
        let mut out = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut text = String::new();
        while Instant::now() < deadline && !done(&text) {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        // A late fault gets a moment to show.
        let settle = Instant::now() + Duration::from_secs(2);
        while let Some(left) = settle.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => break,
            }
        }
        // sdk.sh `exec`s QEMU, so this is QEMU's pid.
        let _ = child.kill();
        let _ = child.wait();
        text
    }
}

#[test]
#[cfg_attr(
    not(microkit_sdk),
    ignore = "SKIPPED: MICROKIT_SDK not set — cannot pack or boot seL4 images (make test MICROKIT_SDK=/path/to/sdk)"
)]
fn imx_uart_driver_prints_both_clients_lines_through_serial_virt_on_imx8mp() {
    let cluster = client_lines("cluster", "cluster");
    let info = client_lines("infotainment", "infotainment");
    let _ = (&cluster, &info, FORBIDDEN);
    #[cfg(microkit_sdk)]
    {
        let console = with_sdk::boot(
            "tests/sel4/systems/console-imx8mp.system",
            "build/sel4-imx8mp/console",
            &|c| missing_in_order(&cluster, c).is_none() && missing_in_order(&info, c).is_none(),
        );
        assert!(
            console.contains("imx_uart_driver: UART2 up"),
            "driver never came up; console:\n{console}"
        );
        for want in [&cluster, &info] {
            let missing = missing_in_order(want, &console);
            assert!(
                missing.is_none(),
                "line {missing:?} never came out of UART2 whole and in order; console:\n{console}"
            );
        }
        let bad = console
            .lines()
            .find(|l| FORBIDDEN.iter().any(|f| l.contains(f)));
        assert!(bad.is_none(), "console has {bad:?}; console:\n{console}");
    }
}
