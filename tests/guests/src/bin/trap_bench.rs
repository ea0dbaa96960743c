//! The cost of one trapped register access on the host board: runs
//! `systems/console.system` with `bench_guest` as `cluster` and prints its
//! p50/p99 round trip (guest MMIO read → fault → decode → VMM PD → resume).
//!
//! `cargo build --release -p bulkhead-test-guests -p bulkhead-vmm-host
//! -p bulkhead-virt-console-pd -p bulkhead-host-serial &&
//! target/release/trap_bench`
use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let exe = std::env::current_exe().unwrap_or_default();
    let bin = exe.parent().map(PathBuf::from).unwrap_or_default();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("systems/console.system");
    let dir = std::env::temp_dir().join(format!("bh-trap-bench-{}", std::process::id()));
    let sys = dir.join("console.system");
    let setup = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::copy(&src, &sys).map(|_| ()))
        .and_then(|()| {
            std::fs::write(
                dir.join("console.host.toml"),
                "[[guest]]\nvm = \"cluster\"\nprogram = \"bench_guest\"\n",
            )
        });
    if let Err(e) = setup {
        eprintln!("trap_bench: {e}");
        std::process::exit(1);
    }
    let opts = bulkhead_host::RunOptions {
        search_path: vec![bin],
        timeout: Some(Duration::from_secs(120)),
        until_line: Some("trap-bench: ".into()),
        ..Default::default()
    };
    let out = bulkhead_host::run_file(&sys, &opts);
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Ok(o) => {
            let mut found = false;
            for l in o.lines.iter().filter(|l| l.text.contains("trap-bench")) {
                println!("{}", l.text);
                found = true;
            }
            if !found || o.status != 0 {
                for l in &o.lines {
                    eprintln!("{}", l.render());
                }
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("trap_bench: {e}");
            std::process::exit(1);
        }
    }
}
