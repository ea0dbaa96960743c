//! Benchmark: parse and check a 63-PD system (Microkit's maximum) against a
//! board. Target: well under 50 ms per check.

// Bench setup: an invalid generated system is a bug in this file.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use std::fmt::Write;

use bulkhead_sdf::{check_source, CheckOptions};
use criterion::{criterion_group, criterion_main, Criterion};

/// 63 PDs: one passive server and 62 clients in a ring; each client has
/// four private regions, maps a shared region, claims an interrupt and
/// makes PPCs to the server.
fn system_63() -> String {
    let mut s = String::from("<?xml version=\"1.0\"?>\n<system>\n");
    s.push_str("    <memory_region name=\"shared\" size=\"0x200000\" page_size=\"0x200000\" />\n");
    for i in 0..62 {
        for r in 0..4 {
            writeln!(
                s,
                "    <memory_region name=\"pd{i}_r{r}\" size=\"0x4000\" />"
            )
            .unwrap();
        }
    }
    s.push_str("    <protection_domain name=\"server\" priority=\"200\" passive=\"true\">\n");
    s.push_str("        <program_image path=\"server.elf\" />\n");
    s.push_str("        <map mr=\"shared\" vaddr=\"0x20000000\" perms=\"r\" />\n");
    s.push_str("    </protection_domain>\n");
    for i in 0..62 {
        writeln!(
            s,
            "    <protection_domain name=\"pd{i}\" priority=\"{}\" budget=\"500\" period=\"1000\">",
            10 + i
        )
        .unwrap();
        writeln!(s, "        <program_image path=\"pd{i}.elf\" />").unwrap();
        for r in 0..4 {
            writeln!(
                s,
                "        <map mr=\"pd{i}_r{r}\" vaddr=\"{:#x}\" perms=\"rw\" setvar_vaddr=\"r{r}\" />",
                0x1000_0000 + r * 0x10000
            )
            .unwrap();
        }
        s.push_str("        <map mr=\"shared\" vaddr=\"0x20000000\" perms=\"r\" />\n");
        writeln!(
            s,
            "        <irq irq=\"{}\" id=\"60\" trigger=\"edge\" />",
            40 + i
        )
        .unwrap();
        s.push_str("    </protection_domain>\n");
    }
    for i in 0..62 {
        writeln!(
            s,
            "    <channel>\n        <end pd=\"pd{i}\" id=\"0\" pp=\"true\" />\n        <end pd=\"server\" id=\"{i}\" />\n    </channel>"
        )
        .unwrap();
        writeln!(
            s,
            "    <channel>\n        <end pd=\"pd{i}\" id=\"1\" />\n        <end pd=\"pd{}\" id=\"2\" />\n    </channel>",
            (i + 1) % 62
        )
        .unwrap();
    }
    s.push_str("</system>\n");
    s
}

fn bench(c: &mut Criterion) {
    let src = system_63();
    let opts = CheckOptions {
        board: bulkhead_boards::board("qemu_virt_aarch64"),
        ..CheckOptions::default()
    };
    let report = check_source(&src, "63.system", &opts);
    assert!(report.diagnostics.is_empty(), "{}", report.render());
    assert_eq!(report.system.as_ref().unwrap().all_pds().len(), 63);
    c.bench_function("check_63_pds", |b| {
        b.iter(|| check_source(std::hint::black_box(&src), "63.system", &opts))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
