//! What a report says it tested: hashes of the description, policy,
//! host bindings and every PD program, and the host it ran on.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::scenario::Ctx;

/// One hashed input.
#[derive(Debug, Clone)]
pub struct Hashed {
    /// What it is (`system`, `policy`, `host bindings`, `program sep_cluster`).
    pub role: String,
    /// The file.
    pub path: PathBuf,
    /// Lower-case hex SHA-256, or why it could not be read.
    pub sha256: Result<String, String>,
}

/// The configuration and host of a suite run.
#[derive(Debug, Clone)]
pub struct Configuration {
    /// Hashed inputs, system first.
    pub files: Vec<Hashed>,
    /// `uname -r`-style kernel release and version.
    pub kernel: String,
    /// CPU model name.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// Whether SCHED_FIFO was granted to the PDs (with the refusal if not).
    pub sched_fifo: Result<(), String>,
    /// Which programs played the safety path.
    pub profile: crate::scenario::Profile,
    /// What the suite changed in the bindings for this host.
    pub notes: Vec<String>,
}

/// SHA-256 of a file, hex.
pub fn sha256_file(p: &Path) -> Result<String, String> {
    let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
    let d = Sha256::digest(&bytes);
    Ok(d.iter().map(|b| format!("{b:02x}")).collect())
}

fn hashed(role: impl Into<String>, path: &Path) -> Hashed {
    Hashed {
        role: role.into(),
        path: path.to_path_buf(),
        sha256: sha256_file(path),
    }
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl Configuration {
    /// Gathers the configuration after the items ran (so every program a
    /// run used is known).
    pub fn gather(ctx: &Ctx, policy: Option<&Path>) -> Configuration {
        let mut files = vec![hashed("system", &ctx.system)];
        if let Some(p) = policy {
            files.push(hashed("policy", p));
        }
        let binds = ctx.system.with_extension("host.toml");
        if binds.is_file() {
            files.push(hashed("host bindings", &binds));
        }
        for (name, path) in &ctx.programs_used {
            files.push(hashed(format!("program {name}"), path));
        }
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Configuration {
            files,
            kernel: format!(
                "{} {}",
                read_trim("/proc/sys/kernel/osrelease"),
                read_trim("/proc/sys/kernel/version")
            ),
            cpu,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            sched_fifo: match &ctx.fifo_refused {
                Some(why) => Err(why.clone()),
                None => Ok(()),
            },
            profile: ctx.profile,
            notes: ctx.notes.clone(),
        }
    }
}
