//! Guest device trees read back by two independent readers: the `fdt`
//! crate and the device-tree compiler (`dtc -I dtb -O dts`, Debian's
//! device-tree-compiler, installed by scripts/setup.sh).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

/// A two-vCPU guest with an initrd, storage and Ethernet on `board`.
fn compose(board: &str, tag: &str) -> (Vec<u8>, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "bh-compose-dtb-{}-{board}-{tag}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("initrd.img"), vec![0u8; 1000]).unwrap();
    let src = format!(
        r#"boards = ["{board}"]
[[partition]]
name = "root"
start = 0
size = "64M"
[[guest]]
name = "linux"
ram = "256M"
vcpus = 2
cpu = 1
initrd = "initrd.img"
bootargs = "console=hvc0 root=/dev/vda"
storage = {{ partition = "root" }}
ethernet = {{ mac = "02:00:00:00:00:07" }}
"#
    );
    let out = bulkhead_compose::compose(&src, "d.toml", &dir, None).unwrap();
    let dtb = out[0]
        .files
        .iter()
        .find(|f| f.path.ends_with("linux.dtb"))
        .unwrap()
        .bytes
        .clone();
    (dtb, dir)
}

#[test]
fn fdt_crate_reads_back_memory_cpus_virtio_chosen_and_gic() {
    for board in ["qemu_virt_aarch64", "imx8mp_evk"] {
        let (dtb, dir) = compose(board, "fdt");
        let fdt = fdt::Fdt::new(&dtb).unwrap();
        let mem = fdt.memory().regions().next().unwrap();
        assert_eq!(
            (mem.starting_address as u64, mem.size),
            (0x4000_0000, Some(256 << 20))
        );
        assert_eq!(fdt.cpus().count(), 2);
        let chosen = fdt.chosen();
        assert_eq!(chosen.bootargs(), Some("console=hvc0 root=/dev/vda"));
        let start = fdt
            .find_node("/chosen")
            .unwrap()
            .property("linux,initrd-start")
            .unwrap()
            .as_usize()
            .unwrap();
        let end = fdt
            .find_node("/chosen")
            .unwrap()
            .property("linux,initrd-end")
            .unwrap()
            .as_usize()
            .unwrap();
        assert_eq!(end - start, 1000);
        assert_eq!(start, 0x4000_0000 + (128 << 20));
        // Storage (slot 1) and Ethernet (slot 2), nothing else.
        let virtio: Vec<_> = fdt.find_all_nodes("/virtio_mmio").collect();
        assert_eq!(virtio.len(), 2);
        let regs: Vec<usize> = virtio
            .iter()
            .map(|n| n.reg().unwrap().next().unwrap().starting_address as usize)
            .collect();
        assert_eq!(regs, [0x0a00_0200, 0x0a00_0400]);
        // <GIC_SPI, SPI 16 + slot, edge rising>, three big-endian cells.
        let irqs: Vec<&[u8]> = virtio
            .iter()
            .map(|n| n.property("interrupts").unwrap().value)
            .collect();
        assert_eq!(
            irqs,
            [
                &[0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 1][..],
                &[0, 0, 0, 0, 0, 0, 0, 18, 0, 0, 0, 1][..]
            ]
        );
        let gic = fdt
            .find_compatible(&["arm,gic-v3", "arm,cortex-a15-gic"])
            .unwrap();
        let want = if board == "imx8mp_evk" {
            "arm,gic-v3"
        } else {
            "arm,cortex-a15-gic"
        };
        assert_eq!(gic.compatible().unwrap().first(), want);
        assert_eq!(fdt.memory_reservations().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn dtc_decompiles_the_blob() {
    if Command::new("dtc").arg("--version").output().is_err() {
        eprintln!("SKIPPED dtc_decompiles_the_blob: `dtc` not found (apt-get install device-tree-compiler, or scripts/setup.sh)");
        return;
    }
    let (dtb, dir) = compose("qemu_virt_aarch64", "dtc");
    let path = dir.join("linux.dtb");
    std::fs::write(&path, &dtb).unwrap();
    let out = Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts"])
        .arg(&path)
        .output()
        .unwrap();
    let dts = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dtc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "dtc warned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "memory@40000000",
        "reg = <0x00 0x40000000 0x00 0x10000000>;",
        "cpu@1",
        "compatible = \"arm,psci-1.0\\0arm,psci-0.2\";",
        "method = \"smc\";",
        "virtio_mmio@a000200",
        "interrupts = <0x00 0x11 0x01>;",
        "bootargs = \"console=hvc0 root=/dev/vda\";",
        "interrupt-controller;",
        "/memreserve/",
    ] {
        assert!(dts.contains(want), "missing `{want}` in:\n{dts}");
    }
    // And back: dts → dtb → dts gives the same text (nothing lost).
    let dts_path = dir.join("linux.dts");
    std::fs::write(&dts_path, dts.as_bytes()).unwrap();
    let re = Command::new("dtc")
        .args(["-I", "dts", "-O", "dtb", "-o"])
        .arg(dir.join("re.dtb"))
        .arg(&dts_path)
        .output()
        .unwrap();
    assert!(
        re.status.success(),
        "{}",
        String::from_utf8_lossy(&re.stderr)
    );
    let round = Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts"])
        .arg(dir.join("re.dtb"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&round.stdout), dts);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_given_device_tree_is_used_byte_for_byte() {
    let dir = std::env::temp_dir().join(format!("bh-compose-dtb-{}-given", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut root = bulkhead_compose::fdt::Node::new("");
    root.prop_str("model", "hand-made");
    let given = root.to_dtb(&[], 0);
    std::fs::write(dir.join("mine.dtb"), &given).unwrap();
    let src = "boards = [\"imx8mp_evk\"]\n[[guest]]\nname = \"g\"\nram = \"64M\"\ndevice_tree = \"mine.dtb\"\n";
    let out = bulkhead_compose::compose(src, "d.toml", &dir, None).unwrap();
    let dtb = &out[0]
        .files
        .iter()
        .find(|f| f.path == "imx8mp_evk/g.dtb")
        .unwrap()
        .bytes;
    assert_eq!(dtb, &given);
    let cfg = &out[0]
        .files
        .iter()
        .find(|f| f.path == "imx8mp_evk/g_vmm_config.bin")
        .unwrap()
        .bytes;
    let region = bulkhead_config::ConfigRegion::parse(cfg, "g_vmm").unwrap();
    assert_eq!(
        region
            .section(bulkhead_compose::sections::VMM_DTB)
            .unwrap()
            .payload(),
        &given[..]
    );
    std::fs::remove_dir_all(dir).unwrap();
}
