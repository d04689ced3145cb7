//! Why a ring operation stopped, one type per side, before it is mapped to
//! the public error of the call that made it. "Not now" (full, empty, the
//! deadline passed) is not a stop: the ring returns `Ok(None)` or
//! `Ok(false)` for it, and only the calls that can report it (the `try_`
//! and `_timeout` forms) turn it into `Full`, `Empty` or `Timeout`.

use super::{
    Corrupted, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TooLarge, TryRecvError, TrySendError,
};

/// Why a send or a reservation stopped. Public only to the loom models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendStop {
    /// No room, and the consumer detached or died.
    Disconnected,
    /// The message is over the maximum.
    TooLarge(TooLarge),
    /// Shared memory broke an invariant.
    Corrupted(Corrupted),
}

/// Why a receive or a read stopped. Public only to the loom models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvStop {
    /// Drained, and every producer detached or died.
    Disconnected,
    /// Shared memory broke an invariant.
    Corrupted(Corrupted),
}

/// What a handle's poison needs of either side's stop.
#[cfg_attr(shmring_loom, allow(dead_code))] // the handles are not in loom builds
pub(crate) trait RingStop: From<Corrupted> {
    /// The corruption, if this stop is one.
    fn corruption(&self) -> Option<&Corrupted>;
}

impl From<Corrupted> for SendStop {
    fn from(c: Corrupted) -> Self {
        SendStop::Corrupted(c)
    }
}

impl From<Corrupted> for RecvStop {
    fn from(c: Corrupted) -> Self {
        RecvStop::Corrupted(c)
    }
}

impl RingStop for SendStop {
    fn corruption(&self) -> Option<&Corrupted> {
        match self {
            SendStop::Corrupted(c) => Some(c),
            _ => None,
        }
    }
}

impl RingStop for RecvStop {
    fn corruption(&self) -> Option<&Corrupted> {
        match self {
            RecvStop::Corrupted(c) => Some(c),
            RecvStop::Disconnected => None,
        }
    }
}

impl From<SendStop> for TrySendError {
    fn from(s: SendStop) -> Self {
        match s {
            SendStop::Disconnected => TrySendError::Disconnected,
            SendStop::TooLarge(e) => TrySendError::TooLarge(e),
            SendStop::Corrupted(c) => TrySendError::Corrupted(c),
        }
    }
}

impl From<SendStop> for SendTimeoutError {
    fn from(s: SendStop) -> Self {
        match s {
            SendStop::Disconnected => SendTimeoutError::Disconnected,
            SendStop::TooLarge(e) => SendTimeoutError::TooLarge(e),
            SendStop::Corrupted(c) => SendTimeoutError::Corrupted(c),
        }
    }
}

impl From<SendStop> for SendError {
    fn from(s: SendStop) -> Self {
        match s {
            SendStop::Disconnected => SendError::Disconnected,
            SendStop::TooLarge(e) => SendError::TooLarge(e),
            SendStop::Corrupted(c) => SendError::Corrupted(c),
        }
    }
}

impl From<RecvStop> for TryRecvError {
    fn from(s: RecvStop) -> Self {
        match s {
            RecvStop::Disconnected => TryRecvError::Disconnected,
            RecvStop::Corrupted(c) => TryRecvError::Corrupted(c),
        }
    }
}

impl From<RecvStop> for RecvTimeoutError {
    fn from(s: RecvStop) -> Self {
        match s {
            RecvStop::Disconnected => RecvTimeoutError::Disconnected,
            RecvStop::Corrupted(c) => RecvTimeoutError::Corrupted(c),
        }
    }
}

impl From<RecvStop> for RecvError {
    fn from(s: RecvStop) -> Self {
        match s {
            RecvStop::Disconnected => RecvError::Disconnected,
            RecvStop::Corrupted(c) => RecvError::Corrupted(c),
        }
    }
}
