//! `build/guest/VERSION`: `key=value` lines naming the Debian packages the
//! guest was built from.
//!
//! ```
//! use bulkhead_linux_tests::version::Version;
//! let v = Version::parse(
//!     "metapackage=linux-image-arm64 6.1.192-2\nkernel-package=linux-image-6.1.0-56-arm64 6.1.192-2\n\
//!      kernel-release=6.1.0-56-arm64\nbusybox-package=busybox-static 1:1.35.0-4\nimage-size=33619968\n\
//!      image-text-offset=0\nmodules=virtio_mmio virtio_blk\nmodules-after-shell=ext4\n",
//! ).unwrap();
//! assert_eq!(v.kernel_release(), "6.1.0-56-arm64");
//! ```

use std::collections::BTreeMap;

/// Keys every `VERSION` file has.
pub const REQUIRED: [&str; 8] = [
    "metapackage",
    "kernel-package",
    "kernel-release",
    "busybox-package",
    "image-size",
    "image-text-offset",
    "modules",
    "modules-after-shell",
];

/// A parsed `VERSION` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    fields: BTreeMap<String, String>,
    image_size: u64,
    image_text_offset: u64,
}

/// What is wrong with a `VERSION` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionError {
    /// Line (1-based) is neither a comment nor `key=value`.
    BadLine(usize),
    /// A key appears twice.
    Duplicate(String),
    /// A required key is missing.
    Missing(&'static str),
    /// A numeric key does not hold a decimal number.
    NotANumber(&'static str),
    /// A package key is not `name version`.
    NotAPackage(&'static str),
}

impl std::fmt::Display for VersionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadLine(n) => write!(f, "line {n} is not key=value"),
            Self::Duplicate(k) => write!(f, "key {k} appears twice"),
            Self::Missing(k) => write!(f, "no {k}="),
            Self::NotANumber(k) => write!(f, "{k} is not a decimal number"),
            Self::NotAPackage(k) => write!(f, "{k} is not 'package version'"),
        }
    }
}

impl std::error::Error for VersionError {}

impl Version {
    /// Parses `text`; every key in [`REQUIRED`] must be present once.
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let mut fields = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or(VersionError::BadLine(i + 1))?;
            if k.is_empty() {
                return Err(VersionError::BadLine(i + 1));
            }
            if fields.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(VersionError::Duplicate(k.to_owned()));
            }
        }
        for k in REQUIRED {
            if !fields.contains_key(k) {
                return Err(VersionError::Missing(k));
            }
        }
        let num = |k: &'static str| {
            fields[k]
                .parse::<u64>()
                .map_err(|_| VersionError::NotANumber(k))
        };
        let image_size = num("image-size")?;
        let image_text_offset = num("image-text-offset")?;
        for k in ["metapackage", "kernel-package", "busybox-package"] {
            let mut words = fields[k].split(' ');
            let ok = matches!((words.next(), words.next(), words.next()),
                (Some(n), Some(v), None) if !n.is_empty() && !v.is_empty());
            if !ok {
                return Err(VersionError::NotAPackage(k));
            }
        }
        Ok(Self {
            fields,
            image_size,
            image_text_offset,
        })
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// The kernel release (`uname -r` in the guest), e.g. `6.1.0-56-arm64`.
    pub fn kernel_release(&self) -> &str {
        &self.fields["kernel-release"]
    }

    /// `(package, version)` of the versioned kernel package.
    pub fn kernel_package(&self) -> (&str, &str) {
        self.package("kernel-package")
    }

    /// `(package, version)` of the metapackage the kernel was resolved through.
    pub fn metapackage(&self) -> (&str, &str) {
        self.package("metapackage")
    }

    /// `(package, version)` of busybox.
    pub fn busybox_package(&self) -> (&str, &str) {
        self.package("busybox-package")
    }

    /// Bytes the kernel occupies from its load address, BSS included.
    pub fn image_size(&self) -> u64 {
        self.image_size
    }

    /// The Image header's `text_offset`.
    pub fn image_text_offset(&self) -> u64 {
        self.image_text_offset
    }

    /// Modules loaded before the shell starts, in load order.
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.fields["modules"].split_whitespace()
    }

    /// Modules loaded in the background once the shell runs, in load order.
    pub fn modules_after_shell(&self) -> impl Iterator<Item = &str> {
        self.fields["modules-after-shell"].split_whitespace()
    }

    fn package(&self, key: &str) -> (&str, &str) {
        // parse() checked this key holds exactly "name version".
        self.fields[key].split_once(' ').unwrap_or(("", ""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# comment\nmetapackage=linux-image-arm64 6.1.192-2\n\
        kernel-package=linux-image-6.1.0-56-arm64 6.1.192-2\nkernel-release=6.1.0-56-arm64\n\
        busybox-package=busybox-static 1:1.35.0-4+deb12u1+b1\nvmlinuz-format=raw\n\
        image-text-offset=0\nimage-size=33619968\nmodules=virtio_mmio virtio_console\n\
        modules-after-shell=\n";

    #[test]
    fn reads_every_field() {
        let v = Version::parse(GOOD).unwrap();
        assert_eq!(v.metapackage(), ("linux-image-arm64", "6.1.192-2"));
        assert_eq!(
            v.kernel_package(),
            ("linux-image-6.1.0-56-arm64", "6.1.192-2")
        );
        assert_eq!(v.busybox_package().1, "1:1.35.0-4+deb12u1+b1");
        assert_eq!(v.image_size(), 33_619_968);
        assert_eq!(v.image_text_offset(), 0);
        assert_eq!(v.get("vmlinuz-format"), Some("raw"));
        assert_eq!(
            v.modules().collect::<Vec<_>>(),
            ["virtio_mmio", "virtio_console"]
        );
        assert_eq!(v.modules_after_shell().count(), 0);
    }

    #[test]
    fn rejects_what_is_wrong() {
        for k in REQUIRED {
            let text: String = GOOD
                .lines()
                .filter(|l| !l.starts_with(&format!("{k}=")))
                .map(|l| format!("{l}\n"))
                .collect();
            assert_eq!(Version::parse(&text), Err(VersionError::Missing(k)));
        }
        assert_eq!(
            Version::parse(&format!("{GOOD}junk\n")),
            Err(VersionError::BadLine(11))
        );
        assert_eq!(
            Version::parse(&format!("{GOOD}modules=x\n")),
            Err(VersionError::Duplicate("modules".into()))
        );
        assert_eq!(
            Version::parse(&GOOD.replace("image-size=33619968", "image-size=32M")),
            Err(VersionError::NotANumber("image-size"))
        );
        assert_eq!(
            Version::parse(&GOOD.replace("linux-image-arm64 6.1.192-2", "linux-image-arm64")),
            Err(VersionError::NotAPackage("metapackage"))
        );
    }
}
