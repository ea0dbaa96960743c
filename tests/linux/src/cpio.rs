//! Reader for the `newc` cpio format Linux unpacks an initramfs from
//! (Linux `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! ```
//! use bulkhead_linux_tests::cpio;
//! let archive = cpio::tests_support::archive(&[("init", 0o100755, b"#!/bin/sh\n")]);
//! let entries = cpio::parse(&archive).unwrap();
//! assert_eq!(entries[0].name, "init");
//! assert!(entries[0].is_executable_file());
//! ```

/// Header magic of `newc` (no checksum).
pub const MAGIC: &[u8; 6] = b"070701";
/// Header length: the magic and 13 eight-digit hex fields.
pub const HEADER_LEN: usize = 110;
/// Name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// File type bits of `mode`.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFDIR: u32 = 0o040_000;

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Path without a leading `./` or `/`.
    pub name: String,
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds since the epoch).
    pub mtime: u32,
    /// Contents (a symlink's target for a symlink).
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
    /// A regular file with the owner's execute bit.
    pub fn is_executable_file(&self) -> bool {
        self.is_file() && self.mode & 0o100 != 0
    }
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
    /// The target, if this is a symlink.
    pub fn symlink_target(&self) -> Option<&str> {
        (self.mode & S_IFMT == S_IFLNK)
            .then(|| std::str::from_utf8(self.data).ok())
            .flatten()
    }
}

/// Why bytes are not a `newc` archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpioError {
    /// The archive ends inside the member at this offset.
    Truncated(usize),
    /// No `070701` at this offset.
    BadMagic(usize),
    /// A header field at this offset is not 8 hex digits.
    BadField(usize),
    /// A name that is not UTF-8 or not NUL-terminated, at this offset.
    BadName(usize),
    /// No `TRAILER!!!` member.
    NoTrailer,
}

impl std::fmt::Display for CpioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated(o) => write!(f, "archive ends inside the member at {o}"),
            Self::BadMagic(o) => write!(f, "no newc magic at {o}"),
            Self::BadField(o) => write!(f, "header field at {o} is not 8 hex digits"),
            Self::BadName(o) => write!(f, "bad member name at {o}"),
            Self::NoTrailer => write!(f, "no {TRAILER} member"),
        }
    }
}

impl std::error::Error for CpioError {}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|n| n & !3)
}

/// Every member before the trailer, in archive order.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry<'_>>, CpioError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        let hdr = bytes
            .get(at..at + HEADER_LEN)
            .ok_or(CpioError::Truncated(at))?;
        if &hdr[..6] != MAGIC {
            return Err(CpioError::BadMagic(at));
        }
        let field = |i: usize| -> Result<u32, CpioError> {
            let o = 6 + 8 * i;
            std::str::from_utf8(&hdr[o..o + 8])
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .ok_or(CpioError::BadField(at + o))
        };
        let mode = field(1)?;
        let uid = field(2)?;
        let gid = field(3)?;
        let mtime = field(5)?;
        let filesize = field(6)? as usize;
        let namesize = field(11)? as usize;
        let name_at = at + HEADER_LEN;
        let raw = name_at
            .checked_add(namesize)
            .and_then(|end| bytes.get(name_at..end))
            .ok_or(CpioError::Truncated(at))?;
        let name = match raw.split_last() {
            Some((0, n)) => std::str::from_utf8(n).map_err(|_| CpioError::BadName(name_at))?,
            _ => return Err(CpioError::BadName(name_at)),
        };
        let data_at = align4(name_at + namesize).ok_or(CpioError::Truncated(at))?;
        let data = data_at
            .checked_add(filesize)
            .and_then(|end| bytes.get(data_at..end))
            .ok_or(CpioError::Truncated(at))?;
        if name == TRAILER {
            return Ok(out);
        }
        out.push(Entry {
            name: name
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_owned(),
            mode,
            uid,
            gid,
            mtime,
            data,
        });
        at = align4(data_at + filesize).ok_or(CpioError::Truncated(at))?;
        if at >= bytes.len() {
            return Err(CpioError::NoTrailer);
        }
    }
}

/// Builds small archives for examples and tests.
pub mod tests_support {
    use super::*;

    /// A `newc` archive of `(name, mode, data)` members and a trailer.
    pub fn archive(members: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |name: &str, mode: u32, data: &[u8]| {
            let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            let fields = [
                1,
                mode,
                0,
                0,
                1,
                0,
                size(data.len()),
                0,
                0,
                0,
                0,
                size(name.len() + 1),
                0,
            ];
            out.extend_from_slice(MAGIC);
            for f in fields {
                out.extend_from_slice(format!("{f:08x}").as_bytes());
            }
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.resize(out.len().next_multiple_of(4), 0);
            out.extend_from_slice(data);
            out.resize(out.len().next_multiple_of(4), 0);
        };
        for (n, m, d) in members {
            push(n, *m, d);
        }
        push(TRAILER, 0, &[]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::archive;
    use super::*;

    #[test]
    fn reads_members_of_every_kind() {
        let a = archive(&[
            ("./bin", 0o040_755, b""),
            ("./bin/busybox", 0o100_755, b"\x7fELF..."),
            ("./bin/sh", 0o120_777, b"busybox"),
            ("./etc/profile", 0o100_644, b"PS1='# '\n"),
        ]);
        let e = parse(&a).unwrap();
        assert_eq!(
            e.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["bin", "bin/busybox", "bin/sh", "etc/profile"]
        );
        assert!(e[0].is_dir());
        assert!(e[1].is_executable_file());
        assert_eq!(e[1].data, b"\x7fELF...");
        assert_eq!(e[2].symlink_target(), Some("busybox"));
        assert!(e[3].is_file() && !e[3].is_executable_file());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let a = archive(&[("init", 0o100_755, b"#!/bin/sh\necho hi\n")]);
        for n in 0..a.len() {
            assert!(parse(&a[..n]).is_err(), "prefix of {n} bytes accepted");
        }
        assert!(parse(&a).is_ok());
    }

    #[test]
    fn rejects_bad_headers() {
        let mut a = archive(&[("init", 0o100_755, b"x")]);
        a[0] = b'1';
        assert_eq!(parse(&a), Err(CpioError::BadMagic(0)));
        let mut a = archive(&[("init", 0o100_755, b"x")]);
        a[6 + 8] = b'g'; // mode
        assert_eq!(parse(&a), Err(CpioError::BadField(14)));
        let mut a = archive(&[("init", 0o100_755, b"x")]);
        a[HEADER_LEN + 4] = b'!'; // the name's NUL
        assert_eq!(parse(&a), Err(CpioError::BadName(HEADER_LEN)));
        // A file size far past the end.
        let mut a = archive(&[("init", 0o100_755, b"x")]);
        a[6 + 48..6 + 56].copy_from_slice(b"7fffffff");
        assert_eq!(parse(&a), Err(CpioError::Truncated(0)));
    }
}
