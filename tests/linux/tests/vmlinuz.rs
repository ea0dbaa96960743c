//! `scripts/guest-image.sh --vmlinuz-to-image` on every vmlinuz format a
//! Debian arm64 kernel package has shipped or may ship — the Image itself,
//! a gzip'd Image, an EFI zboot image — and on files that are none of them.
//! Synthetic inputs, so this needs no download: only bash, coreutils, gzip.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bulkhead_linux_tests::image::{ImageHeader, MAGIC};
use bulkhead_linux_tests::repo_root;

/// A small arm64 Image: a valid header and a recognisable body.
fn image() -> Vec<u8> {
    let mut img = vec![0u8; 64];
    img[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
    img[24] = 0b1010;
    img[56..60].copy_from_slice(&MAGIC);
    img.extend((0..256 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    img
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-c", "-n"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// An EFI zboot image (layout of Linux's zboot-header.S) around `payload`
/// compressed with `comp`.
fn zboot(comp: &str, payload: &[u8]) -> Vec<u8> {
    const OFF: usize = 0x200;
    let mut z = vec![0u8; OFF];
    z[0..4].copy_from_slice(b"MZ\0\0");
    z[4..8].copy_from_slice(b"zimg");
    z[8..12].copy_from_slice(&u32::try_from(OFF).unwrap().to_le_bytes());
    z[12..16].copy_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    z[24..24 + comp.len()].copy_from_slice(comp.as_bytes());
    // LINUX_PE_MAGIC where a plain Image has "ARM\x64".
    z[56..60].copy_from_slice(&0x8182_23cd_u32.to_le_bytes());
    z.extend_from_slice(payload);
    // The real decompressor follows the payload; garbage stands in for it.
    z.extend_from_slice(&[0xa5; 4096]);
    z
}

fn convert(dir: &Path, name: &str, input: &[u8]) -> (bool, String, PathBuf) {
    let inp = dir.join(format!("{name}.vmlinuz"));
    let out = dir.join(format!("{name}.Image"));
    std::fs::write(&inp, input).unwrap();
    let o = Command::new(repo_root().join("scripts/guest-image.sh"))
        .arg("--vmlinuz-to-image")
        .arg(&inp)
        .arg(&out)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text, out)
}

#[test]
fn every_vmlinuz_format_becomes_the_same_raw_image() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("vmlinuz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = image();
    let gz = gzip(&img);
    for (name, input, format) in [
        ("raw", img.clone(), "raw"),
        ("gzip", gz.clone(), "gzip"),
        ("zboot", zboot("gzip", &gz), "zboot-gzip"),
    ] {
        let (ok, text, out) = convert(&dir, name, &input);
        assert!(ok, "{name}: {text}");
        assert!(
            text.contains(&format!(": {format}, raw Image written")),
            "{name}: {text}"
        );
        let got = std::fs::read(&out).unwrap();
        assert!(got == img, "{name}: output differs from the Image");
        assert_eq!(ImageHeader::parse(&got).unwrap().image_size, 1 << 20);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn what_is_not_an_arm64_kernel_is_refused() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("vmlinuz-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gz = gzip(&image());
    for (name, input, why) in [
        ("garbage", vec![0x42; 4096], "is none of"),
        ("gzip-not-image", gzip(&[7u8; 4096]), "has no arm64 magic"),
        (
            "zboot-unknown",
            zboot("foo", &gz),
            "unknown compression 'foo'",
        ),
        (
            "zboot-short",
            zboot("gzip", &gz[..gz.len() / 2]),
            "cannot decompress the gzip payload",
        ),
        ("empty", Vec::new(), "is none of"),
    ] {
        let (ok, text, _) = convert(&dir, name, &input);
        assert!(!ok, "{name} accepted: {text}");
        assert!(text.contains(why), "{name}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
