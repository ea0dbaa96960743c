//! The section layouts documented in src/sections.rs, read back field by
//! field with `bulkhead_config::FieldReader` from the automotive system's
//! configuration regions (so the documentation and the bytes agree).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use bulkhead_compose::sections as s;
use bulkhead_config::{ConfigRegion, FieldReader};

fn config(board: &str, pd: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system/automotive");
    let src = std::fs::read_to_string(dir.join("automotive.toml")).unwrap();
    let out = bulkhead_compose::compose(&src, "automotive.toml", &dir, Some(board)).unwrap();
    let want = format!("{board}/{pd}_config.bin");
    out[0]
        .files
        .iter()
        .find(|f| f.path == want)
        .unwrap()
        .bytes
        .clone()
}

#[test]
fn can_virt_policy_layout() {
    let bytes = config("imx8mp_evk", "can_virt");
    let cfg = ConfigRegion::parse(&bytes, "can_virt").unwrap();
    let hops = cfg
        .section(s::hops_id(bulkhead_compose::Class::Can))
        .unwrap();
    let mut r = FieldReader::new(hops.payload());
    assert_eq!(
        (r.u32().unwrap(), r.u32().unwrap()),
        (0, 2),
        "driver channel 0, two clients"
    );
    assert_eq!(r.u64().unwrap(), 0x6600_0000, "drv hop");
    assert_eq!(r.u64().unwrap(), 0, "CAN has no data regions");
    assert_eq!(
        (r.u32().unwrap(), r.u32().unwrap(), r.u64().unwrap()),
        (1, 0, 0x6680_0000)
    );
    assert_eq!(
        (r.u32().unwrap(), r.u32().unwrap(), r.u64().unwrap()),
        (2, 1, 0x6700_0000)
    );
    r.finish().unwrap();

    let pol = cfg.section(s::CAN_POLICY).unwrap();
    assert_eq!(pol.version, s::VERSION);
    let mut r = FieldReader::new(pol.payload());
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (2, 0));
    // cluster: channel 1, one filter, two TX ids, 100 frames / 20000 bits / 10 ms.
    assert_eq!(
        (r.u32().unwrap(), r.u16().unwrap(), r.u16().unwrap()),
        (1, 1, 2)
    );
    assert_eq!(
        (
            r.u32().unwrap(),
            r.u32().unwrap(),
            r.u32().unwrap(),
            r.u32().unwrap()
        ),
        (100, 20000, 10000, 0)
    );
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (0x100, 0x700));
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (0x300, 0x301));
    r.pad_to(8).unwrap();
    // infotainment: channel 2, one filter, one TX id.
    assert_eq!(
        (r.u32().unwrap(), r.u16().unwrap(), r.u16().unwrap()),
        (2, 1, 1)
    );
    assert_eq!(
        (
            r.u32().unwrap(),
            r.u32().unwrap(),
            r.u32().unwrap(),
            r.u32().unwrap()
        ),
        (20, 4000, 10000, 0)
    );
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (0x400, 0x700));
    assert_eq!(r.u32().unwrap(), 0x480);
    r.pad_to(8).unwrap();
    r.finish().unwrap();
}

#[test]
fn eth_blk_serial_snd_policy_layouts() {
    let bytes = config("qemu_virt_aarch64", "eth_virt");
    let cfg = ConfigRegion::parse(&bytes, "eth_virt").unwrap();
    let mut r = FieldReader::new(cfg.section(s::ETH_POLICY).unwrap().payload());
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (1000, 2));
    assert_eq!(
        (
            r.u32().unwrap(),
            r.u16().unwrap(),
            r.u8().unwrap(),
            r.u8().unwrap()
        ),
        (1, 10, 5, 0)
    );
    assert_eq!(r.bytes(6).unwrap(), &[2, 0, 0, 0, 0, 1]);
    assert_eq!(
        (r.u16().unwrap(), r.u32().unwrap(), r.u32().unwrap()),
        (0, 100, 0)
    );
    assert_eq!(r.remaining(), 24);

    let bytes = config("qemu_virt_aarch64", "blk_virt");
    let cfg = ConfigRegion::parse(&bytes, "blk_virt").unwrap();
    let mut r = FieldReader::new(cfg.section(s::BLK_POLICY).unwrap().payload());
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (2, 0));
    assert_eq!(
        (r.u32().unwrap(), r.u32().unwrap()),
        (1, 1),
        "cluster, read-only"
    );
    assert_eq!((r.u64().unwrap(), r.u64().unwrap()), (1 << 20, 256 << 20));
    assert_eq!(
        (r.u32().unwrap(), r.u32().unwrap(), r.u64().unwrap()),
        (200, 10000, 4 << 20)
    );
    assert_eq!(
        (r.u32().unwrap(), r.u32().unwrap()),
        (2, 0),
        "infotainment, writable"
    );

    let bytes = config("host", "serial_virt");
    let cfg = ConfigRegion::parse(&bytes, "serial_virt").unwrap();
    let mut r = FieldReader::new(cfg.section(s::SERIAL_POLICY).unwrap().payload());
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (2, 0));
    assert_eq!(
        (r.u32().unwrap(), r.u32().unwrap()),
        (1, 1),
        "cluster takes input"
    );
    assert_eq!(r.bytes(16).unwrap(), b"cluster\0\0\0\0\0\0\0\0\0");

    let bytes = config("host", "snd_virt");
    let cfg = ConfigRegion::parse(&bytes, "snd_virt").unwrap();
    let mut r = FieldReader::new(cfg.section(s::SND_POLICY).unwrap().payload());
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (2, 0));
    assert_eq!(
        (
            r.u32().unwrap(),
            r.u8().unwrap(),
            r.u8().unwrap(),
            r.u16().unwrap()
        ),
        (1, 0, 1, 0)
    );
    assert_eq!(r.bytes(16).unwrap(), b"chime\0\0\0\0\0\0\0\0\0\0\0");
    assert_eq!(
        (
            r.u8().unwrap(),
            r.u8().unwrap(),
            r.u16().unwrap(),
            r.u32().unwrap()
        ),
        (0, 1, 0, 48000)
    );
}

#[test]
fn driver_and_vmm_layouts() {
    let bytes = config("imx8mp_evk", "snd_driver");
    let cfg = ConfigRegion::parse(&bytes, "snd_driver").unwrap();
    let mut r = FieldReader::new(
        cfg.section(s::device_id(bulkhead_compose::Class::Snd))
            .unwrap()
            .payload(),
    );
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (0, 2), "sai3 + i2c3");
    assert_eq!(
        (r.u64().unwrap(), r.u64().unwrap()),
        (0x6800_0000, 0x10_0000)
    );
    assert_eq!((r.u64().unwrap(), r.u64().unwrap()), (0, 0), "no DMA");
    assert_eq!(r.bytes(16).unwrap(), b"sai3_regs\0\0\0\0\0\0\0");
    assert_eq!(
        (r.u64().unwrap(), r.u64().unwrap(), r.u64().unwrap()),
        (0x2000_0000, 0x30c3_0000, 0x1_0000)
    );
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (1, 1));
    assert_eq!(r.bytes(16).unwrap(), b"i2c3_regs\0\0\0\0\0\0\0");
    assert_eq!(
        (r.u64().unwrap(), r.u64().unwrap(), r.u64().unwrap()),
        (0x2010_0000, 0x30a4_0000, 0x1_0000)
    );
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (1, 2));
    r.finish().unwrap();

    let bytes = config("qemu_virt_aarch64", "cluster_vmm");
    let cfg = ConfigRegion::parse(&bytes, "cluster_vmm").unwrap();
    let mut r = FieldReader::new(cfg.section(s::VMM_GUEST).unwrap().payload());
    assert_eq!(
        (r.u64().unwrap(), r.u64().unwrap(), r.u64().unwrap()),
        (0x4000_0000, 128 << 20, 0x4000_0000)
    );
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (1, 0));
    assert_eq!(
        (r.u64().unwrap(), r.u64().unwrap()),
        (0x4020_0000, 0x4000_0000 + (126 << 20))
    );
    assert_eq!(
        (
            r.u64().unwrap(),
            r.u64().unwrap(),
            r.u32().unwrap(),
            r.u32().unwrap()
        ),
        (0, 0, 2, 0)
    );
    r.finish().unwrap();
    let mut r = FieldReader::new(cfg.section(s::VMM_VIRTIO).unwrap().payload());
    assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (5, 0));
    // Console first: virtio id 3, channel 1, window 0x0a00_0000, INTID 48.
    assert_eq!(
        (
            r.u32().unwrap(),
            r.u32().unwrap(),
            r.u64().unwrap(),
            r.u64().unwrap()
        ),
        (3, 1, 0x0a00_0000, 0x200)
    );
    assert_eq!(
        (r.u32().unwrap(), r.u32().unwrap(), r.u64().unwrap()),
        (48, 0, 0x6080_0000)
    );
    let dtb = cfg.section(s::VMM_DTB).unwrap().payload();
    assert!(fdt::Fdt::new(dtb).is_ok());
}

/// Every PD's `MAPS` section, decoded by the runtime's own decoder (what
/// the seL4 backend uses to find regions), lists exactly the PD's `<map>`
/// lines in the generated `.system` (the configuration's own map aside,
/// which instead carries the two setvars), with each region's size.
#[test]
fn every_pd_maps_section_matches_its_map_lines() {
    use bulkhead_runtime::maps::MapTable;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system/automotive");
    let src = std::fs::read_to_string(dir.join("automotive.toml")).unwrap();
    for board in ["qemu_virt_aarch64", "imx8mp_evk", "imx8mm_evk", "host"] {
        let out = bulkhead_compose::compose(&src, "automotive.toml", &dir, Some(board)).unwrap();
        let files = &out[0].files;
        let sys_text = files
            .iter()
            .find(|f| f.path == format!("{board}.system"))
            .map(|f| String::from_utf8(f.bytes.clone()).unwrap())
            .unwrap();
        let sys = bulkhead_sdf::parse(&sys_text).unwrap();
        let size_of = |mr: &str| {
            sys.memory_regions
                .iter()
                .find(|r| r.name == mr)
                .and_then(|r| r.size)
                .unwrap()
        };
        let mut checked = 0;
        for pd in &sys.protection_domains {
            let cfg_name = format!("{}_config", pd.name);
            let bytes = files
                .iter()
                .find(|f| f.path == format!("{board}/{cfg_name}.bin"))
                .unwrap()
                .bytes
                .clone();
            let cfg = ConfigRegion::parse(&bytes, &pd.name).unwrap();
            let sec = cfg.section(s::RUNTIME_MAPS).unwrap();
            assert!(sec.is_optional(), "PDs that do not know MAPS may ignore it");
            let table = MapTable::from_config(&cfg).unwrap();
            let want: Vec<_> = pd.maps.iter().filter(|m| m.mr != cfg_name).collect();
            assert_eq!(table.entries().len(), want.len(), "{board}/{}", pd.name);
            for (e, m) in table.entries().iter().zip(&want) {
                assert_eq!(e.name(), m.mr);
                assert_eq!(e.vaddr, m.vaddr, "{board}/{}: {}", pd.name, m.mr);
                assert_eq!(e.size, size_of(&m.mr), "{board}/{}: {}", pd.name, m.mr);
                assert_eq!(
                    (e.perms.read, e.perms.write, e.perms.execute, e.cached),
                    (m.perms.read, m.perms.write, m.perms.execute, m.cached)
                );
            }
            let own = pd.maps.iter().find(|m| m.mr == cfg_name).unwrap();
            assert_eq!(own.setvar_vaddr.as_deref(), Some("bulkhead_config_vaddr"));
            assert_eq!(own.setvar_size.as_deref(), Some("bulkhead_config_size"));
            checked += 1;
        }
        assert!(checked >= 6, "{board}: {checked} PDs");
    }
}
