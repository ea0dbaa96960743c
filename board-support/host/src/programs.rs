//! How a `program_image` becomes a host program.
//!
//! On the host board a PD runs as the host build of the same PD crate. The
//! lookup, in order:
//!
//! 1. the host-binding file's `[programs]` table (`"hello.elf" = "path"`,
//!    relative to the `.system` file's directory; a bare name that is not
//!    there is searched for as in 2);
//! 2. otherwise the image's file name without a trailing `.elf`
//!    (`hello.elf` → `hello`), searched in: `--search-path` directories, the
//!    binding file's `search_path`, the directory of the running executable
//!    (and its parent when that is a cargo `deps/` directory, so tests and
//!    `target/<profile>/bulkhead` both find `target/<profile>/<pd>`), then
//!    the `.system` file's directory.

use std::path::{Path, PathBuf};

use crate::bindings::Bindings;

/// A program that could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramError {
    /// The `program_image` path.
    pub image: String,
    /// The host file name looked for.
    pub wanted: String,
    /// Where it was looked for.
    pub searched: Vec<PathBuf>,
}

impl std::fmt::Display for ProgramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no host program for program_image {:?}: looked for {:?} in",
            self.image, self.wanted
        )?;
        for p in &self.searched {
            write!(f, " {}", p.display())?;
        }
        write!(
            f,
            " (build the PD crate for the host, or bind it in the .host.toml file's [programs])"
        )
    }
}

/// The search path after the explicit ones.
pub fn default_search_path(base: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            out.push(dir.to_path_buf());
            if dir.file_name().is_some_and(|n| n == "deps") {
                if let Some(up) = dir.parent() {
                    out.push(up.to_path_buf());
                }
            }
        }
    }
    out.push(base.to_path_buf());
    out
}

fn is_program(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds the host program for `image`.
pub fn resolve(
    image: &str,
    binds: &Bindings,
    base: &Path,
    search: &[PathBuf],
) -> Result<PathBuf, ProgramError> {
    if let Some(p) = binds.programs.get(image) {
        let bare = p.components().count() == 1;
        let p = base.join(p);
        if is_program(&p) {
            return Ok(p);
        }
        // A bare name (no directory) is also looked up like a PD program,
        // as a [[guest]] program is, so a binding need not know where
        // cargo put it.
        if bare {
            if let Some(name) = p.file_name() {
                if let Some(found) = search.iter().map(|d| d.join(name)).find(|c| is_program(c)) {
                    return Ok(found);
                }
            }
        }
        return Err(ProgramError {
            image: image.to_string(),
            wanted: p.display().to_string(),
            searched: if bare { search.to_vec() } else { vec![] },
        });
    }
    let file = Path::new(image)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let wanted = file.strip_suffix(".elf").unwrap_or(&file).to_string();
    for dir in search {
        let p = dir.join(&wanted);
        if !wanted.is_empty() && is_program(&p) {
            return Ok(p);
        }
    }
    Err(ProgramError {
        image: image.to_string(),
        wanted,
        searched: search.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_program_binding_is_searched_like_a_pd_program() {
        let dir = std::env::temp_dir().join(format!("bh-programs-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("temp dir");
        let exe = std::env::current_exe().expect("test executable");
        std::fs::copy(&exe, bin.join("idle")).expect("copy a program");
        let mut binds = Bindings::default();
        binds.programs.insert("eth_virt.elf".into(), "idle".into());
        let found =
            resolve("eth_virt.elf", &binds, &dir, std::slice::from_ref(&bin)).expect("found");
        assert_eq!(found, bin.join("idle"));
        // A path with a directory is relative to the .system file only.
        binds
            .programs
            .insert("eth_virt.elf".into(), "nowhere/idle".into());
        assert!(resolve("eth_virt.elf", &binds, &dir, &[bin]).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
