//! A QEMU process whose standard input and output are a guest console:
//! wait for marker lines with a deadline, type commands, keep the whole
//! transcript for the failure message. The process is killed when the
//! value is dropped, so a failing test never leaves a QEMU behind.
//!
//! ```no_run
//! use std::time::Duration;
//! use bulkhead_linux_tests::qemu::Console;
//! let mut cmd = std::process::Command::new("qemu-system-aarch64");
//! cmd.args(["-machine", "virt", "-chardev", "stdio,id=c,signal=off"]);
//! let mut c = Console::spawn(cmd).unwrap();
//! let up = c.wait_for("BULKHEAD-GUEST-READY", Duration::from_secs(60)).unwrap();
//! let out = c.run("uname -r", Duration::from_secs(10)).unwrap();
//! ```

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A guest console on a QEMU process.
pub struct Console {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Vec<u8>>,
    /// Everything the guest printed so far.
    transcript: Vec<u8>,
    /// Where the next wait starts looking.
    cursor: usize,
    started: Instant,
    commands: u32,
}

/// Why a wait ended without its marker.
#[derive(Debug)]
pub enum WaitError {
    /// The deadline passed.
    Timeout {
        /// What was awaited.
        marker: String,
        /// The end of the transcript.
        tail: String,
    },
    /// QEMU closed its output (exited).
    Exited {
        /// What was awaited.
        marker: String,
        /// The end of the transcript.
        tail: String,
    },
    /// Typing into QEMU failed.
    Io(std::io::Error),
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout { marker, tail } => {
                write!(
                    f,
                    "timed out waiting for {marker:?}; console ended:\n{tail}"
                )
            }
            Self::Exited { marker, tail } => {
                write!(f, "QEMU exited before {marker:?}; console ended:\n{tail}")
            }
            Self::Io(e) => write!(f, "cannot write to QEMU: {e}"),
        }
    }
}

impl std::error::Error for WaitError {}

/// How much of the transcript an error shows.
const TAIL: usize = 4000;

impl Console {
    /// Starts `cmd` with piped standard input and output (QEMU's console
    /// chardev must be `stdio`); standard error is merged into the
    /// transcript by the caller's choice of `-chardev`/`-serial`, and
    /// otherwise inherited.
    pub fn spawn(mut cmd: Command) -> std::io::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let started = Instant::now();
        let (Some(stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(std::io::Error::other("no pipes to QEMU"));
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            rx,
            transcript: Vec::new(),
            cursor: 0,
            started,
            commands: 0,
        })
    }

    /// Everything the guest printed so far.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.transcript).into_owned()
    }

    fn tail(&self) -> String {
        let t = &self.transcript[self.transcript.len().saturating_sub(TAIL)..];
        String::from_utf8_lossy(t).into_owned()
    }

    /// Waits until `marker` appears after the previous match; returns the
    /// time since QEMU started. The next wait looks after this match.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<Duration, WaitError> {
        let deadline = Instant::now() + timeout;
        let m = marker.as_bytes();
        if m.is_empty() {
            return Ok(self.started.elapsed());
        }
        loop {
            if let Some(at) = self.transcript[self.cursor..]
                .windows(m.len())
                .position(|w| w == m)
            {
                self.cursor += at + m.len();
                return Ok(self.started.elapsed());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.transcript.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(WaitError::Timeout {
                        marker: marker.to_owned(),
                        tail: self.tail(),
                    })
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(WaitError::Exited {
                        marker: marker.to_owned(),
                        tail: self.tail(),
                    })
                }
            }
        }
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Types `line` and a newline.
    pub fn send(&mut self, line: &str) -> Result<(), WaitError> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(WaitError::Io)
    }

    /// Runs `cmd` in the guest shell and returns what it printed (with the
    /// echoed command line around it). Completion is an end marker the
    /// shell computes, so the terminal's echo of the command never matches.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<String, WaitError> {
        self.commands += 1;
        let n = self.commands;
        let from = self.cursor;
        self.send(&format!("{cmd}; echo BH-END-$(({n}+0))"))?;
        self.wait_for(&format!("BH-END-{n}\r"), timeout)?;
        Ok(String::from_utf8_lossy(&self.transcript[from..self.cursor]).into_owned())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
