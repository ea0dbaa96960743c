//! Builds the guest with `scripts/guest-image.sh` (cached after the first
//! run, which downloads Debian's packages) and checks what it wrote: the
//! Image loads where the composed guests put it, the initramfs holds init,
//! busybox, the test programs and every module of `guest/modules.list` with
//! its dependencies ahead of it, all built for the recorded kernel, and a
//! second run changes nothing.

use bulkhead_linux_tests::{cpio, dt::GuestDt, image::ImageHeader, repo_root};

/// The `key=` field of a module's `.modinfo` (NUL-separated `key=value`).
fn modinfo<'a>(ko: &'a [u8], key: &str) -> Option<&'a str> {
    ko.split(|b| *b == 0)
        .filter_map(|f| std::str::from_utf8(f).ok())
        .find_map(|f| f.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

#[cfg_attr(
    not(linux_guest),
    ignore = "SKIPPED: BULKHEAD_SKIP_LINUX_GUEST set — the Debian guest is not built"
)]
#[test]
fn guest_images_are_what_the_guests_need() {
    let imgs = bulkhead_linux_tests::build_guest_images().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", imgs.log);
    let v = &imgs.version;
    let rel = v.kernel_release();
    assert_eq!(v.metapackage().0, "linux-image-arm64");
    assert_eq!(v.kernel_package().0, format!("linux-image-{rel}"));

    // The Image: raw arm64, header agreeing with VERSION, loadable at
    // RAM + 2 MiB of each composed qemu_virt_aarch64 guest with the
    // initrd at RAM + RAM/2 and the DTB at RAM end - 2 MiB (tools/compose).
    let image = std::fs::read(&imgs.image).unwrap();
    let h = ImageHeader::parse(&image).unwrap();
    assert_eq!(h.text_offset, v.image_text_offset());
    assert_eq!(h.image_size, v.image_size());
    let initrd = std::fs::read(&imgs.initrd).unwrap();
    for guest in ["cluster", "infotainment"] {
        let dtb = repo_root().join(format!("system/automotive/qemu_virt_aarch64/{guest}.dtb"));
        let g = GuestDt::parse(&std::fs::read(dtb).unwrap()).unwrap();
        let (ram, size) = g.ram;
        h.check_load(ram, size, ram + 0x20_0000)
            .unwrap_or_else(|e| panic!("{guest}: {e:?}"));
        let initrd_at = ram + size / 2;
        assert!(
            ram + 0x20_0000 + h.image_size <= initrd_at,
            "{guest}: kernel runs into the initrd"
        );
        let initrd_len = u64::try_from(initrd.len()).unwrap();
        assert!(
            initrd_at + initrd_len <= ram + size - 0x20_0000,
            "{guest}: initrd runs into the DTB"
        );
    }

    // The initramfs.
    let out = std::process::Command::new("gzip")
        .args(["-dc"])
        .arg(&imgs.initrd)
        .output()
        .unwrap();
    assert!(out.status.success(), "initrd.cpio.gz is not gzip");
    let entries = cpio::parse(&out.stdout).unwrap();
    let get = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("initramfs has no {name}"))
    };
    for e in &entries {
        assert_eq!(
            (e.uid, e.gid, e.mtime),
            (0, 0, 0),
            "{} not normalised",
            e.name
        );
        // (A symlink's own mode is always 0777 and never consulted.)
        if e.symlink_target().is_none() {
            assert_eq!(e.mode & 0o022, 0, "{} group/other writable", e.name);
        }
    }
    let init = get("init");
    assert!(init.is_executable_file() && init.data.starts_with(b"#!/bin/sh\n"));
    let bb = get("bin/busybox");
    // ELF, 64-bit, little-endian, e_machine 183 (AArch64).
    assert!(bb.is_executable_file() && bb.data.starts_with(b"\x7fELF\x02\x01"));
    assert_eq!(bb.data.get(18..20), Some(&[183u8, 0][..]));
    assert_eq!(get("bin/sh").symlink_target(), Some("busybox"));
    for p in ["bin/bh-info", "bin/bh-blk", "bin/bh-dd"] {
        assert!(get(p).is_executable_file(), "{p}");
    }
    assert_eq!(
        get("etc/bulkhead/kernel-release").data,
        format!("{rel}\n").as_bytes()
    );

    // Modules: the order init loads them in (before the shell, then after
    // it), each built for this kernel, each after its dependencies, and the
    // list's modules all present.
    let before = std::str::from_utf8(get("etc/bulkhead/modules.order").data).unwrap();
    let after = std::str::from_utf8(get("etc/bulkhead/modules-after-shell.order").data).unwrap();
    let mut loaded: Vec<String> = Vec::new();
    for path in before.lines().chain(after.lines()) {
        let prefix = format!("/lib/modules/{rel}/kernel/");
        assert!(path.starts_with(&prefix), "{path}");
        let ko = get(path.trim_start_matches('/'));
        let vermagic = modinfo(ko.data, "vermagic").unwrap_or("");
        assert!(
            vermagic.starts_with(&format!("{rel} ")),
            "{path}: vermagic {vermagic}"
        );
        for dep in modinfo(ko.data, "depends")
            .unwrap_or("")
            .split(',')
            .filter(|d| !d.is_empty())
        {
            assert!(
                loaded.iter().any(|l| l == &dep.replace('-', "_")),
                "{path} loads before its dependency {dep}"
            );
        }
        let name = path
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".ko")
            .replace('-', "_");
        loaded.push(name);
    }
    assert_eq!(
        loaded.first().map(String::as_str),
        Some("virtio_mmio"),
        "the transport first"
    );
    let wanted = std::fs::read_to_string(repo_root().join("guest/modules.list")).unwrap();
    for m in wanted
        .lines()
        .filter_map(|l| l.split('#').next())
        .flat_map(str::split_whitespace)
        .filter(|m| !m.starts_with('@'))
    {
        assert!(
            loaded.iter().any(|l| l == m),
            "{m} of guest/modules.list not loaded"
        );
    }
    assert_eq!(
        loaded,
        v.modules()
            .chain(v.modules_after_shell())
            .collect::<Vec<_>>(),
        "VERSION's modules= and modules-after-shell= are the load order"
    );
    // What the shell and bh-info need is there before the shell.
    for m in ["virtio_mmio", "virtio_console", "virtio_blk"] {
        assert!(
            v.modules().any(|l| l == m),
            "{m} not loaded before the shell"
        );
    }

    // Cached: a second run builds nothing and leaves the outputs alone.
    let again = bulkhead_linux_tests::build_guest_images().unwrap_or_else(|e| panic!("{e}"));
    assert!(again.log.contains("up to date"), "{}", again.log);
    assert_eq!(again.version, imgs.version);
    assert_eq!(std::fs::read(&imgs.initrd).unwrap(), initrd);
}
