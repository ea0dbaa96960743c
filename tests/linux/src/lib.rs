//! The Debian Linux test guest that `scripts/guest-image.sh` builds: typed
//! readers for what it produces (`VERSION`, the arm64 `Image` header, the
//! initramfs cpio) and for what the guest prints (`BH-INFO`, `BH-DD`), the
//! guest-physical map of a composed guest device tree, and a QEMU console
//! harness.
//!
//! ```no_run
//! let imgs = bulkhead_linux_tests::build_guest_images().expect("guest images");
//! println!("kernel {}", imgs.version.kernel_release());
//! ```

pub mod cpio;
pub mod dt;
pub mod image;
pub mod qemu;
pub mod report;
pub mod version;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The guest images `scripts/guest-image.sh` wrote.
#[derive(Debug, Clone)]
pub struct GuestImages {
    /// `build/guest/Image`.
    pub image: PathBuf,
    /// `build/guest/initrd.cpio.gz`.
    pub initrd: PathBuf,
    /// `build/guest/VERSION`, parsed.
    pub version: version::Version,
    /// What the script printed (what it did, the kernel version).
    pub log: String,
}

/// Why the guest images could not be had.
#[derive(Debug)]
pub enum BuildError {
    /// The script could not be started.
    Spawn(std::io::Error),
    /// The script failed; its output says why.
    Script {
        /// Exit status.
        status: std::process::ExitStatus,
        /// Standard output and error.
        output: String,
    },
    /// An output could not be read.
    Read(PathBuf, std::io::Error),
    /// `VERSION` is malformed.
    Version(version::VersionError),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Spawn(e) => write!(f, "cannot run scripts/guest-image.sh: {e}"),
            Self::Script { status, output } => {
                write!(f, "scripts/guest-image.sh failed ({status}):\n{output}")
            }
            Self::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            Self::Version(e) => write!(f, "build/guest/VERSION: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Runs `scripts/guest-image.sh` (cached: after the first run it only checks
/// the package versions) and returns its outputs.
pub fn build_guest_images() -> Result<GuestImages, BuildError> {
    let root = repo_root();
    let out = Command::new(root.join("scripts/guest-image.sh"))
        .current_dir(&root)
        .env_remove("GUEST_OUT")
        .output()
        .map_err(BuildError::Spawn)?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(BuildError::Script {
            status: out.status,
            output: log,
        });
    }
    let dir = root.join("build/guest");
    let vpath = dir.join("VERSION");
    let text = std::fs::read_to_string(&vpath).map_err(|e| BuildError::Read(vpath, e))?;
    let version = version::Version::parse(&text).map_err(BuildError::Version)?;
    Ok(GuestImages {
        image: dir.join("Image"),
        initrd: dir.join("initrd.cpio.gz"),
        version,
        log,
    })
}
