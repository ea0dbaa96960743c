//! `bulkhead check FILE`: validate a `.system` file.
//!
//! Human output goes to stderr in rustc's style (`file:line:col:
//! error[E012]: ...` plus a hint); `--json` prints a JSON array of the
//! diagnostics on stdout instead. Exit 0 when valid (warnings allowed), 1
//! when invalid, 2 on usage errors or an unreadable file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bulkhead_boards::{Board, Config, BOARDS};
use bulkhead_sdf::{check_source, CheckOptions, Diagnostic, Pos, Report, Severity};
use clap::Args;

use crate::EXIT_USAGE;

/// Arguments of `bulkhead check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The system description to check.
    pub file: PathBuf,
    /// Board to check against (RAM, device windows, interrupts, cores).
    /// Without it only Microkit's own rules apply.
    #[arg(long, value_parser = parse_board)]
    pub board: Option<&'static Board>,
    /// Kernel configuration: debug, release, benchmark or their smp- forms.
    #[arg(long, default_value = "debug", value_parser = parse_config)]
    pub config: Config,
    /// Print the diagnostics as a JSON array on stdout.
    #[arg(long)]
    pub json: bool,
    /// Require program images (and prefill files) to exist on the search path.
    #[arg(long)]
    pub require_images: bool,
    /// Directory to look up program images and prefill files in; repeatable,
    /// searched in order. Default: the .system file's directory.
    #[arg(long = "search-path", value_name = "DIR")]
    pub search_path: Vec<PathBuf>,
}

pub(crate) fn parse_board(s: &str) -> Result<&'static Board, String> {
    bulkhead_boards::board(s).ok_or_else(|| {
        let names: Vec<&str> = BOARDS.iter().map(|b| b.name).collect();
        format!("unknown board '{s}'; valid boards: {}", names.join(", "))
    })
}

fn parse_config(s: &str) -> Result<Config, String> {
    Config::parse(s).ok_or_else(|| {
        format!(
            "unknown config '{s}'; valid configs: {}",
            Config::NAMES.join(", ")
        )
    })
}

/// Run `bulkhead check`.
pub fn run(args: &CheckArgs) -> ExitCode {
    let shown = args.file.display().to_string();
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read '{shown}': {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let search_paths = if args.search_path.is_empty() {
        vec![default_search_dir(&args.file)]
    } else {
        args.search_path.clone()
    };
    let opts = CheckOptions {
        board: args.board,
        config: args.config,
        search_paths,
        require_images: args.require_images,
    };
    let report = match std::str::from_utf8(&bytes) {
        Ok(src) => check_source(src, &shown, &opts),
        Err(e) => not_utf8(&bytes, e.valid_up_to(), &shown),
    };
    // On the host board the host-binding file beside the description
    // (`x.host.toml`) is part of the system: check it too.
    let bindings = if args.board.is_some_and(|b| b.name == "host") {
        bulkhead_host::bindings::check_file(&args.file)
    } else {
        Vec::new()
    };
    let valid = report.is_valid() && bindings.is_empty();
    if args.json {
        let mut items = to_json_items(&report);
        items.extend(bindings.iter().map(|d| {
            serde_json::json!({
                "file": d.path.display().to_string(),
                "line": d.line,
                "col": d.col,
                "severity": "error",
                "code": "B001",
                "element": "host-binding",
                "attribute": null,
                "message": d.message,
                "hint": "fix the host-binding file (format: board-support/host/src/bindings.rs)",
            })
        }));
        println!("{}", serde_json::Value::Array(items));
    } else {
        eprint!("{}", report.render());
        for d in &bindings {
            eprintln!("{d}");
        }
        let (e, w) = (
            report.error_count() + bindings.len(),
            report.warning_count(),
        );
        if valid {
            eprintln!("{shown}: ok ({w} warning{})", plural(w));
        } else {
            eprintln!(
                "{shown}: invalid ({e} error{}, {w} warning{})",
                plural(e),
                plural(w)
            );
        }
    }
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn default_search_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A report for a file that is not UTF-8, pointing at the first bad byte.
fn not_utf8(bytes: &[u8], valid_up_to: usize, file: &str) -> Report {
    let good = bytes.get(..valid_up_to).unwrap_or_default();
    let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(good.get(line_start..).unwrap_or_default())
        .chars()
        .count()
        + 1;
    Report {
        file: file.to_string(),
        system: None,
        diagnostics: vec![Diagnostic {
            severity: Severity::Error,
            code: "E001",
            pos: Pos {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                col: u32::try_from(col).unwrap_or(u32::MAX),
            },
            element: "system".into(),
            attribute: None,
            message: format!("the file is not valid UTF-8 (byte {valid_up_to})"),
            hint: "save the file as UTF-8".into(),
        }],
    }
}

fn to_json_items(report: &Report) -> Vec<serde_json::Value> {
    report
        .diagnostics
        .iter()
        .map(|d| {
            serde_json::json!({
                "file": report.file,
                "line": d.pos.line,
                "col": d.pos.col,
                "severity": d.severity.as_str(),
                "code": d.code,
                "element": d.element,
                "attribute": d.attribute,
                "message": d.message,
                "hint": d.hint,
            })
        })
        .collect()
}
