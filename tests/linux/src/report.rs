//! What the guest's programs (`guest/rootfs/bin/bh-*`) print, as typed
//! values. Lines are found anywhere in a console transcript: kernel messages
//! and echoed commands around them are skipped.
//!
//! ```
//! use bulkhead_linux_tests::report::{Info, Dd};
//! let t = "BH-INFO kernel=6.1.0-56-arm64 console=hvc0\r\n\
//!          BH-INFO virtio virtio1 id=0x0002 driver=virtio_blk\r\n\
//!          BH-INFO block vda sectors=524288\r\n\
//!          BH-DD write bytes=67108864 us=1580000 MiBps=40.5\r\n";
//! let info = Info::parse(t).unwrap();
//! assert_eq!(info.blocks, [("vda".to_string(), 524288)]);
//! assert_eq!(Dd::parse_all(t)[0].mib_per_s(), 67108864.0 / 1048576.0 / 1.58);
//! ```

/// A virtio device the guest found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioDevice {
    /// Its name on the virtio bus (`virtio0`).
    pub name: String,
    /// Virtio device ID (2 block, 3 console, …).
    pub id: u32,
    /// The driver bound to it, or `none`.
    pub driver: String,
}

/// The guest's `BH-INFO` lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Info {
    /// `uname -r`.
    pub kernel: String,
    /// The console the shell runs on.
    pub console: String,
    /// The device tree's `model`.
    pub model: String,
    /// Virtio devices, in the guest's order.
    pub virtio: Vec<VirtioDevice>,
    /// Block devices and their sizes in 512-byte sectors.
    pub blocks: Vec<(String, u64)>,
}

/// A malformed report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportError {
    /// The offending line.
    pub line: String,
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed guest report line: {:?}", self.line)
    }
}

impl std::error::Error for ReportError {}

/// `key=value` of `words`, if present.
fn field<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// The part of each line from `tag` on, for every line holding it.
fn tagged<'a>(text: &'a str, tag: &'a str) -> impl Iterator<Item = Vec<&'a str>> + 'a {
    text.lines().filter_map(move |l| {
        let at = l.find(tag)?;
        Some(l[at + tag.len()..].split_whitespace().collect())
    })
}

impl Info {
    /// Collects the `BH-INFO` lines of `text`; the kernel line must be there.
    pub fn parse(text: &str) -> Result<Self, ReportError> {
        let mut info = Self::default();
        let mut saw_kernel = false;
        for w in tagged(text, "BH-INFO ") {
            let bad = || ReportError { line: w.join(" ") };
            match w.first().copied() {
                Some("virtio") => {
                    let id = field(&w, "id")
                        .and_then(|s| s.strip_prefix("0x"))
                        .and_then(|s| u32::from_str_radix(s, 16).ok())
                        .ok_or_else(bad)?;
                    info.virtio.push(VirtioDevice {
                        name: w.get(1).ok_or_else(bad)?.to_string(),
                        id,
                        driver: field(&w, "driver").ok_or_else(bad)?.to_owned(),
                    });
                }
                Some("model") => info.model = w[1..].join(" "),
                Some("block") => {
                    let sectors = field(&w, "sectors")
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(bad)?;
                    info.blocks
                        .push((w.get(1).ok_or_else(bad)?.to_string(), sectors));
                }
                _ => {
                    info.kernel = field(&w, "kernel").ok_or_else(bad)?.to_owned();
                    info.console = field(&w, "console").ok_or_else(bad)?.to_owned();
                    saw_kernel = true;
                }
            }
        }
        if saw_kernel {
            Ok(info)
        } else {
            Err(ReportError {
                line: "(no BH-INFO kernel= line)".into(),
            })
        }
    }
}

/// One `BH-DD` measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dd {
    /// `write`, `read` or `rawread`.
    pub what: String,
    /// Bytes moved.
    pub bytes: u64,
    /// Microseconds it took (10 ms resolution: the guest reads /proc/uptime).
    pub us: u64,
}

impl Dd {
    /// Every well-formed `BH-DD` measurement in `text` (failure lines, which
    /// have no `bytes=`, are left out).
    pub fn parse_all(text: &str) -> Vec<Self> {
        tagged(text, "BH-DD ")
            .filter_map(|w| {
                Some(Self {
                    what: w.first()?.to_string(),
                    bytes: field(&w, "bytes")?.parse().ok()?,
                    us: field(&w, "us")?.parse().ok()?,
                })
            })
            .collect()
    }

    /// Throughput in MiB/s.
    pub fn mib_per_s(&self) -> f64 {
        // Precision loss is irrelevant at these magnitudes.
        #[allow(clippy::cast_precision_loss)]
        let (b, us) = (self.bytes as f64, self.us.max(1) as f64);
        b / 1_048_576.0 / (us / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_skips_noise_and_reads_devices() {
        let t = "[    1.4] virtio_blk virtio1: [vda] 524288 512-byte logical blocks\r\n\
                 guest# bh-info hvc0\r\n\
                 BH-INFO kernel=6.1.0-56-arm64 console=hvc0\r\n\
                 BH-INFO model Bulkhead guest cluster (qemu_virt_aarch64)\r\n\
                 BH-INFO virtio virtio0 id=0x0003 driver=virtio_console\r\n\
                 BH-INFO virtio virtio1 id=0x0002 driver=virtio_blk\r\n\
                 BH-INFO block vda sectors=524288\r\n";
        let i = Info::parse(t).unwrap();
        assert_eq!(i.kernel, "6.1.0-56-arm64");
        assert_eq!(i.console, "hvc0");
        assert_eq!(i.model, "Bulkhead guest cluster (qemu_virt_aarch64)");
        assert_eq!(
            i.virtio
                .iter()
                .map(|d| (d.id, d.driver.as_str()))
                .collect::<Vec<_>>(),
            [(3, "virtio_console"), (2, "virtio_blk")]
        );
        assert_eq!(i.blocks, [("vda".to_string(), 524_288)]);
    }

    #[test]
    fn info_errors() {
        assert!(Info::parse("nothing here").is_err());
        assert!(
            Info::parse("BH-INFO kernel=x console=y\nBH-INFO virtio v0 id=3 driver=d").is_err()
        );
        assert!(Info::parse("BH-INFO kernel=x console=y\nBH-INFO block vda sectors=lots").is_err());
        assert!(Info::parse("BH-INFO console=y").is_err());
    }

    #[test]
    fn dd_lines() {
        let t = "BH-DD write bytes=67108864 us=1580000 MiBps=40.5\r\n\
                 [ 7.8] bh-dd (123): drop_caches: 3\r\n\
                 BH-DD read FAIL dd if=/mnt/disk/bh-dd\r\n\
                 BH-DD rawread bytes=1048576 us=0 MiBps=0.0\r\n";
        let d = Dd::parse_all(t);
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].what.as_str(), d[0].bytes, d[0].us),
            ("write", 67_108_864, 1_580_000)
        );
        assert!((d[0].mib_per_s() - 40.506).abs() < 0.01);
        // us=0 (a run under the clock's resolution) does not divide by zero.
        assert!(d[1].mib_per_s().is_finite());
    }
}
