//! Parser, model and checker for Microkit system description (`.system`) files.
//!
//! The model ([`model`]) is shared by every tool that reads a system: the
//! checker, `report`, `graph`, `prove` and the host board.
//!
//! Two passes: [`parse`] turns XML into a [`SystemDescription`] and reports
//! schema-level problems (elements, attributes, value syntax, per-value
//! ranges); [`check`] applies the rules that relate elements to each other
//! and to the chosen board and kernel config. [`check_source`] runs both.
//! Neither panics on any input.
//!
//! ```
//! use bulkhead_sdf::{check_source, CheckOptions};
//! let src = r#"<system>
//!   <protection_domain name="a"><program_image path="a.elf"/></protection_domain>
//! </system>"#;
//! let report = check_source(src, "a.system", &CheckOptions::default());
//! assert!(report.is_valid());
//! ```

pub mod check;
pub mod diag;
pub mod elf;
pub mod model;
pub mod parse;

use std::path::PathBuf;

pub use bulkhead_boards::{Board, Config, ConfigKind};
pub use check::check;
pub use diag::{Diagnostic, Rule, Severity, RULES};
pub use model::*;
pub use parse::{parse, parse_number};

/// What [`check`] needs besides the system.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The board; `None` applies only Microkit's own rules.
    pub board: Option<&'static Board>,
    /// The kernel configuration (default `debug`).
    pub config: Config,
    /// Where program images and prefill files are looked up, in order.
    pub search_paths: Vec<PathBuf>,
    /// Whether program images must exist on the search path.
    pub require_images: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            board: None,
            config: Config {
                kind: ConfigKind::Debug,
                smp: false,
            },
            search_paths: Vec::new(),
            require_images: false,
        }
    }
}

/// The result of checking one file.
#[derive(Debug, Clone)]
pub struct Report {
    /// The file name diagnostics are rendered with.
    pub file: String,
    /// The parsed system, when it parsed.
    pub system: Option<SystemDescription>,
    /// Every diagnostic, errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// No errors (warnings allowed).
    pub fn is_valid(&self) -> bool {
        !self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }

    /// Every diagnostic rendered rustc-style, one block per diagnostic.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&d.render(&self.file));
            out.push('\n');
        }
        out
    }
}

/// Parse and check `source`; diagnostics are attributed to `file_name`.
pub fn check_source(source: &str, file_name: &str, opts: &CheckOptions) -> Report {
    match parse(source) {
        Ok(sys) => {
            let diagnostics = check(&sys, opts);
            Report {
                file: file_name.to_string(),
                system: Some(sys),
                diagnostics,
            }
        }
        Err(diagnostics) => Report {
            file: file_name.to_string(),
            system: None,
            diagnostics,
        },
    }
}
