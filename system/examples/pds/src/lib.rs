//! Constants shared by the example PDs of `system/examples/*.system`.
//!
//! Each binary in `src/bin/` is one PD; its file name is the
//! `program_image` name without `.elf` (`hello.elf` → `hello`), which is how
//! the host board finds it.
#![no_std]

/// Rounds `ping` and `pong` play.
pub const PINGPONG_ROUNDS: u64 = 1000;

/// Sequence value `ping` writes to tell `pong` the game is over.
pub const PINGPONG_DONE: u64 = u64::MAX;

/// How often `crasher` crashes before it runs through.
pub const CRASHES: u64 = 3;

/// The unmapped address `crasher` reads to fault.
pub const CRASH_ADDR: usize = 0xdead_0000;

/// Calls `client` makes to `server`.
pub const CALLS: u64 = 5;

/// PPC label for "square MR0".
pub const OP_SQUARE: u64 = 1;
