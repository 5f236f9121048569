//! The driver-side error domain. Wire statuses are [`Status`]; NTSTATUS exists only in the
//! glue.

use core::fmt;

use crate::protocol::{Command, Status};

/// Why a balloon operation did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The host answered RESET: it has forgotten the session and every ballooned page.
    Reset {
        /// The command that was answered with RESET.
        command: Command,
    },
    /// The host answered BUSY: try again later.
    Busy {
        /// The command that was answered with BUSY.
        command: Command,
    },
    /// The host answered with a defined failure status.
    Host {
        /// The command that failed.
        command: Command,
        /// The status it returned.
        status: Status,
    },
    /// The host answered with a status the protocol does not define.
    UnknownStatus {
        /// The command that was answered.
        command: Command,
        /// The raw EAX value.
        raw: u32,
    },
    /// A command other than START was attempted with no session (before START, or after
    /// a RESET and before the next START).
    NotStarted {
        /// The command that was refused locally.
        command: Command,
    },
    /// The command needs a capability this session was not granted.
    NotGranted {
        /// The command that was refused locally.
        command: Command,
    },
    /// A value does not fit in the 32 bits the negotiated protocol allows.
    TooWide {
        /// The command that would have carried it.
        command: Command,
        /// The value that did not fit.
        value: u64,
    },
    /// The host's reply holds a value outside what the negotiated protocol allows.
    ReplyOutOfRange {
        /// The command that was answered.
        command: Command,
        /// The offending value.
        value: u64,
    },
    /// Batching was granted but this platform has no batch page.
    NoBatchPage,
    /// The platform could not take a memory snapshot: no inflation until it can.
    MemoryUnavailable,
}

impl Error {
    /// Whether this error means the host has reset the session.
    #[must_use]
    pub const fn is_reset(self) -> bool {
        matches!(self, Self::Reset { .. })
    }

    /// Whether this error means the host is temporarily busy.
    #[must_use]
    pub const fn is_busy(self) -> bool {
        matches!(self, Self::Busy { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Reset { command } => write!(f, "host reset the session (on {})", command.name()),
            Self::Busy { command } => write!(f, "host busy (on {})", command.name()),
            Self::Host { command, status } => {
                write!(
                    f,
                    "{} failed: {} ({:#x})",
                    command.name(),
                    status.name(),
                    status.raw()
                )
            }
            Self::UnknownStatus { command, raw } => {
                write!(f, "{} returned undefined status {raw:#x}", command.name())
            }
            Self::NotStarted { command } => {
                write!(
                    f,
                    "{} refused locally: no session (START first)",
                    command.name()
                )
            }
            Self::NotGranted { command } => {
                write!(
                    f,
                    "{} refused locally: capability not granted",
                    command.name()
                )
            }
            Self::TooWide { command, value } => write!(
                f,
                "{} refused locally: {value:#x} does not fit in 32 bits without the 64-bit capability",
                command.name()
            ),
            Self::ReplyOutOfRange { command, value } => {
                write!(f, "{} reply out of range: {value:#x}", command.name())
            }
            Self::NoBatchPage => f.write_str("batching granted but no batch page is available"),
            Self::MemoryUnavailable => f.write_str("guest memory state unavailable: holding"),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T = ()> = core::result::Result<T, Error>;
