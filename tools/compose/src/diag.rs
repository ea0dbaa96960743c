//! Compose diagnostics: a position in the description, a message and a hint.
//!
//! ```
//! use bulkhead_compose::diag::{Diagnostic, LineIndex};
//! let idx = LineIndex::new("a = 1\nb = 2\n");
//! let d = Diagnostic::new(idx.pos(6), "bad b", "fix b");
//! assert_eq!(d.render("x.toml"), "x.toml:2:1: error: bad b\n  = hint: fix b");
//! ```

use std::fmt;

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub col: u32,
}

/// One error in a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl Diagnostic {
    /// A diagnostic at `pos`.
    pub fn new(pos: Pos, message: impl Into<String>, hint: impl Into<String>) -> Diagnostic {
        Diagnostic {
            pos,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// `file:line:col: error: message` and a hint line.
    pub fn render(&self, file: &str) -> String {
        format!(
            "{file}:{}:{}: error: {}\n  = hint: {}",
            self.pos.line, self.pos.col, self.message, self.hint
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.col, self.message)
    }
}

/// Byte offset → line/column for one source text.
#[derive(Debug, Clone)]
pub struct LineIndex<'s> {
    src: &'s str,
    starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    /// Indexes `src`.
    pub fn new(src: &'s str) -> LineIndex<'s> {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { src, starts }
    }

    /// Position of byte offset `off` (clamped to the text).
    pub fn pos(&self, off: usize) -> Pos {
        let off = off.min(self.src.len());
        let line = self.starts.partition_point(|&s| s <= off);
        let start = self.starts.get(line.wrapping_sub(1)).copied().unwrap_or(0);
        let col = self.src.get(start..off).map_or(0, |s| s.chars().count()) + 1;
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
        }
    }
}
