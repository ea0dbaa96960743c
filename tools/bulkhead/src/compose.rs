//! `bulkhead compose DESC -o DIR [--board B] [--check]`: write (or, with
//! `--check`, compare) the `.system` file, configuration regions, guest
//! device trees and host bindings composed from a description.
//!
//! ```text
//! bulkhead compose system/automotive/automotive.toml -o system/automotive
//! bulkhead compose system/automotive/automotive.toml -o system/automotive --check
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::EXIT_USAGE;

/// Arguments of `bulkhead compose`.
#[derive(Debug, Args)]
pub struct ComposeArgs {
    /// The description (TOML; format in tools/compose/README.md).
    pub desc: PathBuf,
    /// Output directory.
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// Compose for this board only (default: every board the description lists).
    #[arg(long)]
    pub board: Option<String>,
    /// Write nothing; exit 1 if any file in DIR differs from what compose
    /// would write (the staleness check CI runs).
    #[arg(long)]
    pub check: bool,
}

/// Runs `bulkhead compose`.
pub fn run(args: &ComposeArgs) -> ExitCode {
    let src = match std::fs::read_to_string(&args.desc) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bulkhead compose: cannot read {}: {e}", args.desc.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let name = args.desc.file_name().map_or_else(
        || args.desc.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let base = args.desc.parent().unwrap_or(Path::new("."));
    let outputs = match bulkhead_compose::compose(&src, &name, base, args.board.as_deref()) {
        Ok(o) => o,
        Err(diags) => {
            for d in &diags {
                eprintln!("{}", d.render(&args.desc.display().to_string()));
            }
            eprintln!(
                "bulkhead compose: {} error(s); nothing written",
                diags.len()
            );
            return ExitCode::from(1);
        }
    };
    let mut stale = Vec::new();
    for o in &outputs {
        for f in &o.files {
            let path = args.out.join(&f.path);
            if args.check {
                if std::fs::read(&path).ok().as_deref() != Some(&f.bytes[..]) {
                    stale.push(path);
                }
                continue;
            }
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, &f.bytes));
            if let Err(e) = written {
                eprintln!("bulkhead compose: cannot write {}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
        if !args.check {
            println!(
                "{}: {} file(s) in {}",
                o.board,
                o.files.len(),
                args.out.display()
            );
        }
    }
    if !stale.is_empty() {
        eprintln!("bulkhead compose --check: stale or missing generated files:");
        for p in &stale {
            eprintln!("  {}", p.display());
        }
        eprintln!(
            "regenerate with: bulkhead compose {} -o {}",
            args.desc.display(),
            args.out.display()
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
