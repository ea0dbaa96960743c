//! Whole-system and isolation tests on the host board: real PD processes,
//! real ptrace, seccomp and shared memory.
//!
//! Each test runs a `.system` file and checks per-PD transcripts (against
//! goldens in `golden/<system>/<pd>.txt`, `(pc 0x…)` normalised) or
//! specific monitor reports. Set `BULKHEAD_BLESS=1` to rewrite goldens.
//!
//! If the host lacks ptrace or seccomp, a test prints `SKIPPED: <why>` on
//! stderr and returns without asserting; it never passes silently.

// A panic is how an integration test fails.
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use bulkhead_host::{run_file, HostError, RunOptions, RunOutcome};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/<profile>` of this test binary, where cargo also puts PD bins.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

fn cargo_build(package: &str) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = bin_dir().parent().expect("target dir").to_path_buf();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo())
        .args(["build", "-p", package, "--target-dir"])
        .arg(&target_dir);
    if bin_dir().file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let st = cmd.status().expect("run cargo build");
    assert!(st.success(), "building {package} failed");
}

/// Builds the example PDs into this test's target directory (the test
/// crate's own adversarial PDs are built by cargo before the tests).
fn build_once() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| cargo_build("bulkhead-example-pds"));
}

/// Builds the `bulkhead` tool, for the tests that run the real command.
fn build_tool() {
    static BUILT: OnceLock<()> = OnceLock::new();
    build_once();
    BUILT.get_or_init(|| cargo_build("bulkhead"));
}

/// Why this host cannot run the host board, if it cannot.
fn unsupported() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status.lines().any(|l| l.starts_with("Seccomp:")) {
        return Some("the kernel has no seccomp".into());
    }
    if let Ok(scope) = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        if scope.trim() == "3" {
            return Some("ptrace is disabled (yama ptrace_scope = 3)".into());
        }
    }
    None
}

fn run(system: &Path, opts: RunOptions) -> Option<RunOutcome> {
    if let Some(why) = unsupported() {
        eprintln!("SKIPPED: {}: {why}", system.display());
        return None;
    }
    build_once();
    let mut opts = opts;
    opts.search_path.push(bin_dir());
    opts.timeout.get_or_insert(Duration::from_secs(60));
    match run_file(system, &opts) {
        Ok(o) => Some(o),
        Err(HostError::Os(what, e)) if what.starts_with("ptrace") => {
            eprintln!("SKIPPED: {}: {what}: {e}", system.display());
            None
        }
        Err(e) => panic!("{}: {e}", system.display()),
    }
}

fn example(name: &str) -> PathBuf {
    repo()
        .join("system/examples")
        .join(format!("{name}.system"))
}

fn adversary(name: &str) -> PathBuf {
    repo()
        .join("tests/host-board/systems")
        .join(format!("{name}.system"))
}

/// Replaces `(pc 0x…)` (which depends on the build) with `(pc <pc>)`.
fn normalise(line: &str) -> String {
    match line.find("(pc 0x") {
        Some(i) => {
            let rest = &line[i + 6..];
            let end = rest.find(')').unwrap_or(rest.len());
            format!("{}(pc <pc>){}", &line[..i], &rest[end + 1..])
        }
        None => line.to_string(),
    }
}

fn all_output(o: &RunOutcome) -> String {
    o.lines
        .iter()
        .map(|l| l.render())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compares each PD's transcript with `golden/<system>/<pd>.txt`.
fn check_golden(system: &str, o: &RunOutcome, pds: &[&str]) {
    let dir = repo().join("tests/host-board/golden").join(system);
    let bless = std::env::var_os("BULKHEAD_BLESS").is_some();
    for pd in pds {
        let got: String = o
            .transcript(pd)
            .iter()
            .map(|l| normalise(l) + "\n")
            .collect();
        let path = dir.join(format!("{pd}.txt"));
        if bless {
            std::fs::create_dir_all(&dir).expect("golden dir");
            std::fs::write(&path, &got).expect("write golden");
            continue;
        }
        let want =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            got,
            want,
            "transcript of PD {pd} in {system} differs from {}\nwhole run:\n{}",
            path.display(),
            all_output(o)
        );
    }
}

#[test]
fn normalise_strips_only_the_pc() {
    assert_eq!(
        normalise("MONITOR: fault at 0x10 (pc 0x5555) x"),
        "MONITOR: fault at 0x10 (pc <pc>) x"
    );
    assert_eq!(normalise("no pc here"), "no pc here");
}

#[test]
fn hello_matches_golden() {
    let Some(o) = run(&example("hello"), RunOptions::default()) else {
        return;
    };
    assert_eq!(o.status, 0, "{}", all_output(&o));
    check_golden("hello", &o, &["hello"]);
}

#[test]
fn pingpong_matches_golden() {
    let Some(o) = run(&example("pingpong"), RunOptions::default()) else {
        return;
    };
    assert_eq!(o.status, 0, "{}", all_output(&o));
    check_golden("pingpong", &o, &["ping", "pong"]);
}

#[test]
fn passive_server_matches_golden() {
    let Some(o) = run(&example("passive_server"), RunOptions::default()) else {
        return;
    };
    assert_eq!(o.status, 0, "{}", all_output(&o));
    check_golden("passive_server", &o, &["server", "client"]);
}

#[test]
fn hierarchy_matches_golden() {
    let Some(o) = run(&example("hierarchy"), RunOptions::default()) else {
        return;
    };
    assert_eq!(o.status, 0, "{}", all_output(&o));
    check_golden("hierarchy", &o, &["parent", "crasher"]);
}

#[test]
fn rowrite_matches_golden_and_reports_the_fault() {
    let Some(o) = run(&example("rowrite"), RunOptions::default()) else {
        return;
    };
    assert_eq!(
        o.status,
        1,
        "a reported fault makes the run fail\n{}",
        all_output(&o)
    );
    let t = o.transcript("writer");
    assert!(
        t.iter().any(|l| l.starts_with(
            "MONITOR: fault in PD writer: write to read-only map of ro at 0x10000000 (pc 0x"
        )),
        "{t:#?}"
    );
    check_golden("rowrite", &o, &["writer"]);
}

#[test]
fn bulkhead_run_pingpong_exits_zero() {
    if let Some(why) = unsupported() {
        eprintln!("SKIPPED: bulkhead run pingpong: {why}");
        return;
    }
    build_tool();
    let out = Command::new(bin_dir().join("bulkhead"))
        .current_dir(repo())
        .args(["run", "system/examples/pingpong.system", "--timeout", "60"])
        .output()
        .expect("run bulkhead");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[pong] pong: done after 1000 rounds, no gap, no repeat"),
        "{stdout}"
    );
}

#[test]
fn access_outside_the_maps_is_reported() {
    let Some(o) = run(&adversary("outside"), RunOptions::default()) else {
        return;
    };
    let t = o.transcript("outside");
    assert!(
        t.iter().any(|l| l.starts_with(
            "MONITOR: fault in PD outside: access outside the maps at 0x30000000 (pc 0x"
        )),
        "{}",
        all_output(&o)
    );
    assert!(!t.iter().any(|l| l.contains("isolation broken")), "{t:#?}");
    assert_eq!(o.status, 1);
}

#[test]
fn mprotect_of_a_read_only_map_is_refused_and_reported() {
    let Some(o) = run(&adversary("remap"), RunOptions::default()) else {
        return;
    };
    let t = o.transcript("remap");
    assert!(
        t.contains(&"MONITOR: PD remap stopped: forbidden syscall 10 (mprotect)".to_string()),
        "{}",
        all_output(&o)
    );
    assert!(!t.iter().any(|l| l.contains("isolation broken")), "{t:#?}");
    assert_eq!(o.status, 1);
}

#[test]
fn openat_stops_the_pd_and_is_reported() {
    let Some(o) = run(&adversary("opener"), RunOptions::default()) else {
        return;
    };
    let t = o.transcript("opener");
    assert!(
        t.contains(&"MONITOR: PD opener stopped: forbidden syscall 257 (openat)".to_string()),
        "{}",
        all_output(&o)
    );
    assert!(!t.iter().any(|l| l.contains("isolation broken")), "{t:#?}");
    assert_eq!(o.status, 1);
}

#[test]
fn signalling_an_undeclared_channel_is_refused() {
    let Some(o) = run(&adversary("spy"), RunOptions::default()) else {
        return;
    };
    let t = o.transcript("spy");
    assert!(
        t.contains(&"spy: 62 of 62 undeclared channels refused by the runtime".to_string()),
        "{}",
        all_output(&o)
    );
    assert!(
        t.contains(&"spy: 0 descriptors accepted a raw signal".to_string()),
        "{}",
        all_output(&o)
    );
    // The channel it is not part of kept working, undisturbed.
    assert!(o
        .transcript("pong")
        .contains(&"pong: done after 1000 rounds, no gap, no repeat".to_string()));
    assert_eq!(o.status, 0, "{}", all_output(&o));
}

#[test]
fn siblings_lose_nothing_while_a_child_is_restarted_repeatedly() {
    let Some(o) = run(&adversary("restart_siblings"), RunOptions::default()) else {
        return;
    };
    let out = all_output(&o);
    assert!(
        o.transcript("restarter")
            .contains(&"restarter: restarted 50 times".to_string()),
        "{out}"
    );
    assert!(
        o.transcript("crashloop")
            .contains(&"crashloop: ran through after 50 restarts".to_string()),
        "{out}"
    );
    // A lost payload is a sequence gap; a lost wake-up hangs the game until
    // the timeout (status 124).
    assert!(
        o.transcript("ping")
            .contains(&"ping: done, every echo in order".to_string()),
        "{out}"
    );
    assert!(
        o.transcript("pong")
            .contains(&"pong: done after 1000 rounds, no gap, no repeat".to_string()),
        "{out}"
    );
    assert_eq!(o.status, 0, "{out}");
}

/// Writes a one-PD system mapping `configured_config` (prefilled with
/// `prefill`, or zeroed) read-only into PD `configured`; returns its path.
fn config_system(tag: &str, prefill: Option<&[u8]>) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("bulkhead-host-config-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let prefill_attr = match prefill {
        Some(bytes) => {
            std::fs::write(dir.join("configured_config.bin"), bytes).expect("prefill");
            r#"prefill_path="configured_config.bin""#
        }
        None => "",
    };
    let sys = format!(
        r#"<system>
    <memory_region name="configured_config" size="0x1000" {prefill_attr} />
    <protection_domain name="configured" priority="1">
        <program_image path="configured.elf" />
        <map mr="configured_config" vaddr="0x1000_0000" perms="r" />
    </protection_domain>
</system>"#
    );
    let path = dir.join("configured.system");
    std::fs::write(&path, sys).expect("system file");
    path
}

#[test]
fn configuration_region_is_parsed_at_boot() {
    let good = bulkhead_config::ConfigBuilder::new("configured")
        .section(7, 1, &[1, 2, 3])
        .build()
        .expect("config");
    let Some(o) = run(&config_system("good", Some(&good)), RunOptions::default()) else {
        return;
    };
    assert_eq!(
        o.transcript("configured"),
        ["configured: config for configured with 1 sections"],
        "{}",
        all_output(&o)
    );
    assert_eq!(o.status, 0);
    let Some(o) = run(&config_system("zero", None), RunOptions::default()) else {
        return;
    };
    assert_eq!(
        o.transcript("configured"),
        ["configured: no configuration"],
        "{}",
        all_output(&o)
    );
}

#[test]
fn a_pd_with_a_bad_configuration_refuses_to_start() {
    // Built for another PD: the name check must refuse it.
    let other = bulkhead_config::ConfigBuilder::new("someone_else")
        .build()
        .expect("config");
    let Some(o) = run(&config_system("bad", Some(&other)), RunOptions::default()) else {
        return;
    };
    let t = o.transcript("configured");
    assert!(
        t[0].starts_with("refusing to start: configuration region: "),
        "{t:#?}"
    );
    assert!(
        t.contains(&"MONITOR: PD configured exited with status 78".to_string()),
        "{t:#?}"
    );
    assert!(
        !t.iter().any(|l| l.starts_with("configured:")),
        "init must not run: {t:#?}"
    );
    assert_eq!(o.status, 1);
}

#[test]
fn bound_disk_image_reaches_only_its_pd() {
    let dir = std::env::temp_dir().join(format!("bulkhead-host-disk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("disk.img"), "hello from the disk image\n").expect("image");
    std::fs::write(
        dir.join("disk.system"),
        r#"<system>
    <protection_domain name="diskreader" priority="2"><program_image path="diskreader.elf" /></protection_domain>
    <protection_domain name="opener" priority="1"><program_image path="opener.elf" /></protection_domain>
</system>"#,
    )
    .expect("system");
    std::fs::write(
        dir.join("disk.host.toml"),
        "[[disk]]\nname = \"disk\"\npd = \"diskreader\"\npath = \"disk.img\"\nread_only = true\n",
    )
    .expect("bindings");
    assert!(bulkhead_host::bindings::check_file(&dir.join("disk.system")).is_empty());
    let Some(o) = run(&dir.join("disk.system"), RunOptions::default()) else {
        return;
    };
    assert_eq!(
        o.transcript("diskreader"),
        [
            "diskreader: hello from the disk image",
            "diskreader: tap: no such host resource is bound to this PD"
        ],
        "{}",
        all_output(&o)
    );
    // The other PD still cannot open anything itself.
    assert!(o
        .transcript("opener")
        .contains(&"MONITOR: PD opener stopped: forbidden syscall 257 (openat)".to_string()));
}

#[test]
fn until_line_and_timeout_end_a_run() {
    let opts = RunOptions {
        until_line: Some("ping: round 500".into()),
        ..Default::default()
    };
    let Some(o) = run(&example("pingpong"), opts) else {
        return;
    };
    assert_eq!(o.status, 0);
    assert!(all_output(&o).contains("[ping] ping: round 500"));
    let opts = RunOptions {
        timeout: Some(Duration::from_millis(800)),
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let Some(o) = run(&adversary("idle"), opts) else {
        return;
    };
    assert_eq!(
        o.status,
        bulkhead_host::STATUS_TIMEOUT,
        "{}",
        all_output(&o)
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    // --until-exit: the run's status is that PD's.
    let opts = RunOptions {
        until_exit: Some("writer".into()),
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let Some(o) = run(&example("rowrite"), opts) else {
        return;
    };
    // The writer faulted and nothing can restart it: the run ends at once,
    // as a failure, without waiting for the timeout.
    assert_eq!(o.status, 1, "{}", all_output(&o));
    assert!(all_output(&o).ends_with("host board: every PD has ended before the exit condition"));
    let opts = RunOptions {
        until_exit: Some("client".into()),
        ..Default::default()
    };
    let Some(o) = run(&example("passive_server"), opts) else {
        return;
    };
    assert_eq!(o.status, 0, "{}", all_output(&o));
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|w| w.parse::<u32>().ok()),
        );
    }
    out
}

#[test]
fn sigterm_stops_every_pd_with_no_orphans() {
    use std::io::{BufRead, BufReader};
    if let Some(why) = unsupported() {
        eprintln!("SKIPPED: sigterm: {why}");
        return;
    }
    build_tool();
    let mut child = Command::new(bin_dir().join("bulkhead"))
        .current_dir(repo())
        .args([
            "run",
            "tests/host-board/systems/idle.system",
            "--timeout",
            "60",
            "--search-path",
        ])
        .arg(bin_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run bulkhead");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    assert_eq!(first, "[pong] pong: ready");
    let pds = children_of(child.id());
    assert_eq!(pds.len(), 1, "one PD process: {pds:?}");
    // SAFETY: signals our own child process.
    unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    for pid in pds {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "PD process {pid} outlived the supervisor"
        );
    }
}

#[test]
fn a_parent_stops_and_restarts_a_running_child() {
    let Some(o) = run(&adversary("stop_restart"), RunOptions::default()) else {
        return;
    };
    let out = all_output(&o);
    assert_eq!(
        o.transcript("sleeper"),
        ["sleeper: run 1", "sleeper: run 2"],
        "{out}"
    );
    assert_eq!(
        o.transcript("stopper"),
        [
            "stopper: child 9: child 9 is not declared for this PD",
            "stopper: report 1 from the child",
            "stopper: stopped and restarted the child",
            "stopper: report 2 from the child",
        ],
        "{out}"
    );
    assert_eq!(o.status, 0, "{out}");
}

#[test]
fn a_panic_becomes_a_fault_report() {
    let Some(o) = run(&adversary("panicker"), RunOptions::default()) else {
        return;
    };
    let t = o.transcript("panicker");
    assert!(
        t.contains(&"panicker: deliberate panic".to_string()),
        "{t:#?}"
    );
    assert!(
        t.iter()
            .any(|l| l.starts_with("MONITOR: fault in PD panicker: illegal instruction at 0x")),
        "{t:#?}"
    );
    assert!(!t.iter().any(|l| l.contains("forbidden syscall")), "{t:#?}");
    assert_eq!(o.status, 1);
}

#[test]
fn a_host_timer_bound_as_an_irq_is_delivered() {
    assert!(bulkhead_host::bindings::check_file(&adversary("ticker")).is_empty());
    let Some(o) = run(&adversary("ticker"), RunOptions::default()) else {
        return;
    };
    assert_eq!(
        o.transcript("ticker"),
        [
            "ticker: ack on channel 4: id 4 is not an IRQ of this PD",
            "ticker: tick 1",
            "ticker: tick 2",
            "ticker: tick 3"
        ],
        "{}",
        all_output(&o)
    );
    assert_eq!(o.status, 0);
}

#[test]
fn signals_coalesce_into_one_badge_bit() {
    let Some(o) = run(&adversary("coalesce"), RunOptions::default()) else {
        return;
    };
    let out = all_output(&o);
    if out.contains("priorities are NOT enforced") {
        eprintln!("SKIPPED: coalescing under priorities: SCHED_FIFO refused here\n{out}");
        return;
    }
    assert_eq!(
        o.transcript("counter"),
        ["counter: channel 0 delivered 1 time(s) for 100 signals"],
        "{out}"
    );
    assert_eq!(o.status, 0, "{out}");
}
