//! The errors of the calls on the hot path (send, receive and their try /
//! timeout forms): one small enum per call, so that each says exactly what
//! that call can report.
//! A payload variant (`TooLarge`, `Corrupted`, `ForkedHandle`) prints its
//! payload's message.

use super::{Corrupted, ForkedHandle};
use std::fmt;

/// A message longer than the segment's maximum message size. Messages are
/// never split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The message's length.
    pub len: usize,
    /// The segment's maximum.
    pub max: usize,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "message of {} bytes is larger than the segment's maximum of {} bytes", self.len, self.max)
    }
}

impl std::error::Error for TooLarge {}

/// The next message is longer than the buffer given to
/// [`Consumer::recv_into`](crate::Consumer::recv_into) (or its `try_` and
/// `_timeout` forms). Nothing is consumed: the next receive finds the same
/// message, so a caller can retry with a buffer of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// The message's length.
    pub len: usize,
    /// The buffer's length.
    pub capacity: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the next message is {} bytes, longer than the buffer of {} bytes; it was left in the ring",
            self.len, self.capacity
        )
    }
}

impl std::error::Error for BufferTooSmall {}

/// Why [`Producer::try_send`](crate::Producer::try_send) or
/// [`Producer::try_reserve`](crate::Producer::try_reserve) did not send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrySendError {
    /// The ring has no room for the message now.
    Full,
    /// The ring has no room for the message, and the consumer has
    /// detached or died.
    Disconnected,
    /// See [`TooLarge`].
    TooLarge(TooLarge),
    /// See [`Corrupted`].
    Corrupted(Corrupted),
    /// See [`ForkedHandle`].
    ForkedHandle(ForkedHandle),
}

impl fmt::Display for TrySendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full => f.write_str("the ring is full"),
            TrySendError::Disconnected => f.write_str("the ring is full and the consumer is gone"),
            TrySendError::TooLarge(e) => e.fmt(f),
            TrySendError::Corrupted(e) => e.fmt(f),
            TrySendError::ForkedHandle(e) => e.fmt(f),
        }
    }
}

/// The payload variants say their message themselves and have no source.
impl std::error::Error for TrySendError {}

impl From<TooLarge> for TrySendError {
    fn from(e: TooLarge) -> Self {
        TrySendError::TooLarge(e)
    }
}

impl From<Corrupted> for TrySendError {
    fn from(e: Corrupted) -> Self {
        TrySendError::Corrupted(e)
    }
}

impl From<ForkedHandle> for TrySendError {
    fn from(e: ForkedHandle) -> Self {
        TrySendError::ForkedHandle(e)
    }
}

/// Why [`Producer::send`](crate::Producer::send) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The ring has no room for the message, and the consumer has
    /// detached or died.
    Disconnected,
    /// See [`TooLarge`].
    TooLarge(TooLarge),
    /// See [`Corrupted`].
    Corrupted(Corrupted),
    /// See [`ForkedHandle`].
    ForkedHandle(ForkedHandle),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected => f.write_str("the ring is full and the consumer is gone"),
            SendError::TooLarge(e) => e.fmt(f),
            SendError::Corrupted(e) => e.fmt(f),
            SendError::ForkedHandle(e) => e.fmt(f),
        }
    }
}

/// The payload variants say their message themselves and have no source.
impl std::error::Error for SendError {}

impl From<TooLarge> for SendError {
    fn from(e: TooLarge) -> Self {
        SendError::TooLarge(e)
    }
}

impl From<Corrupted> for SendError {
    fn from(e: Corrupted) -> Self {
        SendError::Corrupted(e)
    }
}

impl From<ForkedHandle> for SendError {
    fn from(e: ForkedHandle) -> Self {
        SendError::ForkedHandle(e)
    }
}

/// Why [`Producer::send_timeout`](crate::Producer::send_timeout) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendTimeoutError {
    /// The ring stayed full until the timeout.
    Timeout,
    /// The ring has no room for the message, and the consumer has
    /// detached or died.
    Disconnected,
    /// See [`TooLarge`].
    TooLarge(TooLarge),
    /// See [`Corrupted`].
    Corrupted(Corrupted),
    /// See [`ForkedHandle`].
    ForkedHandle(ForkedHandle),
}

impl fmt::Display for SendTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout => f.write_str("timed out waiting for room in the ring"),
            SendTimeoutError::Disconnected => f.write_str("the ring is full and the consumer is gone"),
            SendTimeoutError::TooLarge(e) => e.fmt(f),
            SendTimeoutError::Corrupted(e) => e.fmt(f),
            SendTimeoutError::ForkedHandle(e) => e.fmt(f),
        }
    }
}

/// The payload variants say their message themselves and have no source.
impl std::error::Error for SendTimeoutError {}

impl From<TooLarge> for SendTimeoutError {
    fn from(e: TooLarge) -> Self {
        SendTimeoutError::TooLarge(e)
    }
}

impl From<Corrupted> for SendTimeoutError {
    fn from(e: Corrupted) -> Self {
        SendTimeoutError::Corrupted(e)
    }
}

impl From<ForkedHandle> for SendTimeoutError {
    fn from(e: ForkedHandle) -> Self {
        SendTimeoutError::ForkedHandle(e)
    }
}

/// Why [`Consumer::try_recv`](crate::Consumer::try_recv) returned nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryRecvError {
    /// No message is waiting now.
    Empty,
    /// The ring is drained and no producer is attached any more.
    Disconnected,
    /// See [`BufferTooSmall`] (only from the `recv_into` forms).
    BufferTooSmall(BufferTooSmall),
    /// See [`Corrupted`].
    Corrupted(Corrupted),
    /// See [`ForkedHandle`].
    ForkedHandle(ForkedHandle),
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("the ring is empty"),
            TryRecvError::Disconnected => f.write_str("the ring is empty and no producer is attached any more"),
            TryRecvError::BufferTooSmall(e) => e.fmt(f),
            TryRecvError::Corrupted(e) => e.fmt(f),
            TryRecvError::ForkedHandle(e) => e.fmt(f),
        }
    }
}

/// The payload variants say their message themselves and have no source.
impl std::error::Error for TryRecvError {}

impl From<Corrupted> for TryRecvError {
    fn from(e: Corrupted) -> Self {
        TryRecvError::Corrupted(e)
    }
}

impl From<ForkedHandle> for TryRecvError {
    fn from(e: ForkedHandle) -> Self {
        TryRecvError::ForkedHandle(e)
    }
}

impl From<BufferTooSmall> for TryRecvError {
    fn from(e: BufferTooSmall) -> Self {
        TryRecvError::BufferTooSmall(e)
    }
}

/// Why [`Consumer::recv`](crate::Consumer::recv) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvError {
    /// The ring is drained and no producer is attached any more.
    Disconnected,
    /// See [`BufferTooSmall`] (only from the `recv_into` forms).
    BufferTooSmall(BufferTooSmall),
    /// See [`Corrupted`].
    Corrupted(Corrupted),
    /// See [`ForkedHandle`].
    ForkedHandle(ForkedHandle),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Disconnected => f.write_str("the ring is empty and no producer is attached any more"),
            RecvError::BufferTooSmall(e) => e.fmt(f),
            RecvError::Corrupted(e) => e.fmt(f),
            RecvError::ForkedHandle(e) => e.fmt(f),
        }
    }
}

/// The payload variants say their message themselves and have no source.
impl std::error::Error for RecvError {}

impl From<Corrupted> for RecvError {
    fn from(e: Corrupted) -> Self {
        RecvError::Corrupted(e)
    }
}

impl From<ForkedHandle> for RecvError {
    fn from(e: ForkedHandle) -> Self {
        RecvError::ForkedHandle(e)
    }
}

impl From<BufferTooSmall> for RecvError {
    fn from(e: BufferTooSmall) -> Self {
        RecvError::BufferTooSmall(e)
    }
}

/// Why [`Consumer::recv_timeout`](crate::Consumer::recv_timeout) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// No message arrived before the timeout.
    Timeout,
    /// The ring is drained and no producer is attached any more.
    Disconnected,
    /// See [`BufferTooSmall`] (only from the `recv_into` forms).
    BufferTooSmall(BufferTooSmall),
    /// See [`Corrupted`].
    Corrupted(Corrupted),
    /// See [`ForkedHandle`].
    ForkedHandle(ForkedHandle),
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out waiting for a message"),
            RecvTimeoutError::Disconnected => f.write_str("the ring is empty and no producer is attached any more"),
            RecvTimeoutError::BufferTooSmall(e) => e.fmt(f),
            RecvTimeoutError::Corrupted(e) => e.fmt(f),
            RecvTimeoutError::ForkedHandle(e) => e.fmt(f),
        }
    }
}

/// The payload variants say their message themselves and have no source.
impl std::error::Error for RecvTimeoutError {}

impl From<Corrupted> for RecvTimeoutError {
    fn from(e: Corrupted) -> Self {
        RecvTimeoutError::Corrupted(e)
    }
}

impl From<ForkedHandle> for RecvTimeoutError {
    fn from(e: ForkedHandle) -> Self {
        RecvTimeoutError::ForkedHandle(e)
    }
}

impl From<BufferTooSmall> for RecvTimeoutError {
    fn from(e: BufferTooSmall) -> Self {
        RecvTimeoutError::BufferTooSmall(e)
    }
}
