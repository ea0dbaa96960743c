//! Property tests: randomly generated valid descriptions compose, on every
//! board, into systems that `bulkhead check` accepts, with no two maps of
//! one PD or VM overlapping, a valid configuration region per PD, and the
//! same bytes when composed twice.
#![allow(clippy::unwrap_used, clippy::panic, clippy::write_with_newline)]

use std::fmt::Write as _;
use std::path::Path;

use proptest::prelude::*;

/// One generated guest.
#[derive(Debug, Clone)]
struct G {
    ram_2m: u64,
    vcpus: u32,
    cpu: u32,
    priority: u32,
    console: bool,
    storage: Option<bool>,
    can: bool,
    eth: Option<u32>,
    audio: Option<u32>,
    safety: bool,
}

fn guest() -> impl Strategy<Value = G> {
    (
        (2u64..64, 1u32..=2, 0u32..3, 1u32..99),
        (
            any::<bool>(),
            proptest::option::of(any::<bool>()),
            any::<bool>(),
        ),
        (
            proptest::option::of(0u32..100),
            proptest::option::of(1u32..=8),
            any::<bool>(),
        ),
    )
        .prop_map(
            |((ram_2m, vcpus, cpu, priority), (console, storage, can), (eth, audio, safety))| G {
                ram_2m,
                vcpus,
                cpu: cpu.min(4 - vcpus),
                priority,
                console,
                storage,
                can,
                eth,
                audio,
                safety,
            },
        )
}

const BOARDS: [&str; 4] = ["qemu_virt_aarch64", "imx8mp_evk", "imx8mm_evk", "host"];

/// The description text: every guest budgeted (budget < period), so the
/// safety scheduling rule holds by construction; every conflict avoided.
fn describe(board: &str, guests: &[G]) -> String {
    let mut s = format!("boards = [\"{board}\"]\n[per_board.imx8mm_evk]\nomit = [\"can\"]\n");
    for i in 0..guests.len() {
        let _ = write!(
            s,
            "[[partition]]\nname = \"p{i}\"\nstart = \"{}M\"\nsize = \"1M\"\n",
            i + 1
        );
    }
    for (i, g) in guests.iter().enumerate() {
        let _ = write!(
            s,
            "[[guest]]\nname = \"g{i}\"\nram = \"{}M\"\nvcpus = {}\ncpu = {}\npriority = {}\nbudget = 1000\nperiod = 2000\nsafety = {}\n",
            g.ram_2m * 2,
            g.vcpus,
            g.cpu,
            g.priority,
            g.safety
        );
        if g.console {
            let _ = write!(s, "console = {{ input = {} }}\n", i == 0);
        }
        if let Some(ro) = g.storage {
            let _ = write!(
                s,
                "storage = {{ partition = \"p{i}\", read_only = {ro} }}\n"
            );
        }
        if g.can {
            let id = 0x100 + 0x10 * i;
            let _ = write!(
                s,
                "[guest.can]\nrx_filters = [{{ id = {id}, mask = 0x7f0 }}]\ntx_whitelist = [{id}, {}]\nbudget = {{ frames = 5, bits = 1000, period_us = 1000 }}\n",
                id + 1
            );
        }
        if let Some(mbps) = g.eth {
            let _ = write!(
                s,
                "[guest.ethernet]\nmac = \"02:00:00:00:00:{:02x}\"\nvlan = {}\npcp = {}\nreserved_mbps = {}\n",
                i + 1,
                i + 1,
                i % 8,
                mbps
            );
        }
        if let Some(ch) = g.audio {
            let _ = write!(
                s,
                "[guest.audio]\npriority_class = \"media\"\nstreams = [{{ name = \"s{i}\", direction = \"playback\", channels = {ch}, rate = 48000 }}]\n"
            );
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn valid_descriptions_compose_into_clean_systems(
        board in 0usize..4,
        guests in proptest::collection::vec(guest(), 1..6),
    ) {
        let board = BOARDS[board];
        let src = describe(board, &guests);
        let out = bulkhead_compose::compose(&src, "p.toml", Path::new("."), None)
            .unwrap_or_else(|d| panic!("{src}\n{}", d.iter().map(|d| d.render("p.toml")).collect::<Vec<_>>().join("\n")));
        let again = bulkhead_compose::compose(&src, "p.toml", Path::new("."), None).unwrap();
        prop_assert_eq!(&out, &again);
        let o = &out[0];
        let text = String::from_utf8(o.files[0].bytes.clone()).unwrap();
        let opts = bulkhead_sdf::CheckOptions {
            board: bulkhead_boards::board(board),
            config: o.config(),
            ..bulkhead_sdf::CheckOptions::default()
        };
        let report = bulkhead_sdf::check_source(&text, "p.system", &opts);
        prop_assert!(report.is_valid(), "{}\n{}", src, report.render());
        let sd = report.system.unwrap();
        let size = |mr: &str| sd.region(mr).and_then(|r| r.size).unwrap();
        // No two maps of one address space overlap (checked here
        // independently of the checker).
        for pd in sd.all_pds() {
            let mut spaces = vec![(pd.name.clone(), pd.maps.clone())];
            if let Some(vm) = &pd.virtual_machine {
                spaces.push((vm.name.clone(), vm.maps.clone()));
            }
            for (name, maps) in spaces {
                let mut r: Vec<(u64, u64, String)> = maps.iter().map(|m| (m.vaddr, m.vaddr + size(&m.mr), m.mr.clone())).collect();
                r.sort();
                for w in r.windows(2) {
                    prop_assert!(w[0].1 <= w[1].0, "{name}: {} overlaps {}", w[0].2, w[1].2);
                }
            }
            let cfg = o.files.iter().find(|f| f.path == format!("{board}/{}_config.bin", pd.name)).unwrap();
            prop_assert!(bulkhead_config::ConfigRegion::parse(&cfg.bytes, &pd.name).is_ok());
        }
        // One VMM per guest, a driver and a virtualiser per class used.
        let classes = [
            guests.iter().any(|g| g.console),
            guests.iter().any(|g| g.storage.is_some()),
            guests.iter().any(|g| g.eth.is_some()),
            board != "imx8mm_evk" && guests.iter().any(|g| g.can),
            guests.iter().any(|g| g.audio.is_some()),
        ];
        let used = classes.iter().filter(|&&c| c).count();
        prop_assert_eq!(sd.all_pds().len(), guests.len() + 2 * used);
    }
}
