//! The reference system: system/automotive/automotive.toml composes, for
//! every board it lists, into files that pass `bulkhead check`, parse back
//! (configuration regions, device trees), are byte-identical run to run, and
//! equal the committed files (the staleness check).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

use bulkhead_compose::{compose, BoardOutput};

const REGENERATE: &str = "bulkhead compose system/automotive/automotive.toml -o system/automotive";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system/automotive")
}

fn composed() -> Vec<BoardOutput> {
    let src = std::fs::read_to_string(dir().join("automotive.toml")).unwrap();
    match compose(&src, "automotive.toml", &dir(), None) {
        Ok(o) => o,
        Err(d) => panic!(
            "{}",
            d.iter()
                .map(|d| d.render("automotive.toml"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[test]
fn committed_files_are_up_to_date() {
    let mut stale = Vec::new();
    for o in composed() {
        for f in &o.files {
            let path = dir().join(&f.path);
            if std::fs::read(&path).ok().as_deref() != Some(&f.bytes[..]) {
                stale.push(format!("system/automotive/{}", f.path));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are stale or missing:\n  {}\nregenerate them with:\n  {REGENERATE}\n(or `cargo run -p bulkhead -- compose ...`) and commit the result",
        stale.join("\n  ")
    );
}

#[test]
fn lists_every_board_and_is_deterministic() {
    let a = composed();
    let b = composed();
    assert_eq!(a, b, "two runs differ");
    let boards: Vec<&str> = a.iter().map(|o| o.board).collect();
    assert_eq!(
        boards,
        ["qemu_virt_aarch64", "imx8mp_evk", "imx8mm_evk", "host"]
    );
}

#[test]
fn every_system_passes_bulkhead_check_on_its_board_single_core_and_smp() {
    for o in composed() {
        let sys = &o.files[0];
        let text = String::from_utf8(sys.bytes.clone()).unwrap();
        // Prefill files are looked up in a directory holding exactly what
        // compose wrote, so their sizes are checked too.
        let tmp = std::env::temp_dir().join(format!(
            "bh-compose-check-{}-{}",
            std::process::id(),
            o.board
        ));
        for f in &o.files {
            let p = tmp.join(&f.path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, &f.bytes).unwrap();
        }
        for config in ["debug", "smp-debug"] {
            let opts = bulkhead_sdf::CheckOptions {
                board: bulkhead_boards::board(o.board),
                config: bulkhead_boards::Config::parse(config).unwrap(),
                search_paths: vec![tmp.clone()],
                require_images: false,
            };
            let report = bulkhead_sdf::check_source(&text, &sys.path, &opts);
            assert!(
                report.is_valid(),
                "{} ({config}):\n{}",
                sys.path,
                report.render()
            );
            assert_eq!(report.warning_count(), 0, "{}", report.render());
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}

#[test]
fn every_pd_has_a_valid_read_only_prefilled_configuration() {
    for o in composed() {
        let text = String::from_utf8(o.files[0].bytes.clone()).unwrap();
        let sd = bulkhead_sdf::parse(&text).unwrap();
        for pd in sd.all_pds() {
            let region = format!("{}_config", pd.name);
            let m = pd
                .maps
                .iter()
                .find(|m| m.mr == region)
                .unwrap_or_else(|| panic!("{} maps no {region}", pd.name));
            assert!(
                m.perms.read && !m.perms.write && !m.perms.execute,
                "{region} not read-only"
            );
            let mr = sd.region(&region).unwrap();
            let want = format!("{}/{}_config.bin", o.board, pd.name);
            assert_eq!(mr.prefill, Some(bulkhead_sdf::Prefill::Path(want.clone())));
            let bin = &o.files.iter().find(|f| f.path == want).unwrap().bytes;
            assert!(bin.len() as u64 <= mr.size.unwrap());
            let cfg = bulkhead_config::ConfigRegion::parse(bin, &pd.name).unwrap();
            assert!(cfg.section_count() >= 1);
            // Only this PD maps its configuration.
            let others = sd
                .all_pds()
                .into_iter()
                .filter(|p| p.maps.iter().any(|m| m.mr == region))
                .count();
            assert_eq!(others, 1);
        }
    }
}

#[test]
fn guest_device_trees_parse_with_the_fdt_crate() {
    for o in composed() {
        for f in o.files.iter().filter(|f| f.path.ends_with(".dtb")) {
            let fdt = fdt::Fdt::new(&f.bytes).unwrap_or_else(|e| panic!("{}: {e:?}", f.path));
            let mem = fdt.memory();
            let region = mem.regions().next().unwrap();
            assert_eq!(region.starting_address as u64, 0x4000_0000, "{}", f.path);
            assert_eq!(fdt.cpus().count(), 1);
            let virtio: Vec<_> = fdt
                .all_nodes()
                .filter(|n| n.name.starts_with("virtio_mmio@"))
                .collect();
            // Console, storage, Ethernet, audio everywhere; CAN except on
            // the i.MX 8M Mini.
            let want = if o.board == "imx8mm_evk" { 4 } else { 5 };
            assert_eq!(virtio.len(), want, "{}", f.path);
            assert!(fdt.find_compatible(&["arm,psci-1.0"]).is_some());
            assert!(fdt.chosen().bootargs().unwrap().contains("console=hvc0"));
        }
    }
}

#[test]
fn blk_virt_gets_a_budget_tick_on_the_host_board_only() {
    let text = |o: &BoardOutput, path: &str| {
        let f = o.files.iter().find(|f| f.path == path).unwrap();
        String::from_utf8(f.bytes.clone()).unwrap()
    };
    let tick = "<irq irq=\"1000\" id=\"61\" trigger=\"level\" />";
    for o in composed() {
        let system = text(&o, &format!("{}.system", o.board));
        let virt = system
            .split("<protection_domain name=\"blk_virt\"")
            .nth(1)
            .and_then(|s| s.split("</protection_domain>").next())
            .unwrap();
        if o.board == "host" {
            assert!(virt.contains(tick), "host blk_virt has no tick:\n{virt}");
            // automotive.toml: both storage budgets are per 10 ms; the
            // tick is a quarter of that.
            let bind = text(&o, "host.host.toml");
            assert!(
                bind.contains("[[timer_irq]]\npd = \"blk_virt\"\nirq = 1000\nperiod_us = 2500\n"),
                "{bind}"
            );
        } else {
            // seL4 boards: no timer driver PD yet, so no tick.
            assert!(!virt.contains("<irq"), "{} blk_virt: {virt}", o.board);
        }
    }
}
