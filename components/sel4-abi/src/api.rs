//! The immediate libmicrokit calls that need no invocation label:
//! `microkit_notify` and `microkit_ppcall`, with libmicrokit's checks of
//! the channel against the patched bitmasks (`microkit.h`), returned as
//! errors instead of printed. aarch64 bare metal only.

use crate::caps::{self, IdOutOfRange};
use crate::message::MessageInfo;
use crate::symbols::patched::{microkit_notifications, microkit_pps};
use crate::syscall;

/// Why a channel operation was refused before any system call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChannelError {
    /// Channel id above 61.
    OutOfRange(u64),
    /// The `.system` file gives this PD no such channel end (with `notify`
    /// resp. `pp` set).
    NotGranted(u64),
}

impl From<IdOutOfRange> for ChannelError {
    fn from(e: IdOutOfRange) -> Self {
        ChannelError::OutOfRange(e.0)
    }
}

fn granted(mask: u64, ch: u64) -> Result<(), ChannelError> {
    if ch >= caps::MAX_CHANNELS {
        Err(ChannelError::OutOfRange(ch))
    } else if mask & (1 << ch) == 0 {
        Err(ChannelError::NotGranted(ch))
    } else {
        Ok(())
    }
}

/// `microkit_notify(ch)`: signal the other end of channel `ch` now.
pub fn notify(ch: u64) -> Result<(), ChannelError> {
    granted(microkit_notifications.get(), ch)?;
    syscall::signal(caps::notification(ch)?);
    Ok(())
}

/// `microkit_ppcall(ch, info)`: protected procedure call on channel `ch`.
/// MR0..MR3 travel in registers (`mrs`); longer messages also need the
/// IPC buffer's `msg[4..]`. Returns the callee's reply tag and MR0..MR3.
pub fn ppcall(
    ch: u64,
    info: MessageInfo,
    mrs: [u64; 4],
) -> Result<(MessageInfo, [u64; 4]), ChannelError> {
    granted(microkit_pps.get(), ch)?;
    Ok(syscall::call(caps::endpoint(ch)?, info, mrs))
}
