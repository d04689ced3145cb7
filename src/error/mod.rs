//! Errors: one enum for setup (create, open, validate), and small std-style
//! types for the hot path, shaped like `std::sync::mpsc`'s.
//!
//! Every message names the segment and what was wrong with it.
//!
//! An error that wraps another says its cause once, as the Rust API
//! guidelines ask, so that reporters that walk [`source`] do not print it
//! twice:
//!
//! * [`Error::Io`] adds context ("mmap failed on segment /x") and returns
//!   the OS error from [`source`], without repeating it in its message. Print
//!   the chain to see it.
//! * Variants that only carry another error ([`Error::Corrupted`], and the
//!   `Corrupted` and `TooLarge` variants of the hot-path errors) are
//!   transparent: their message is the inner error's, and they return the
//!   inner error's source (none).
//!
//! [`source`]: std::error::Error::source

use std::fmt;
use std::io;

/// A setup error: creating, opening or validating a segment.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The name is not a valid POSIX shared-memory name. No system call was
    /// made.
    InvalidName {
        /// The name as given (lossy if it was not UTF-8).
        name: String,
        /// What rule it broke.
        reason: &'static str,
    },
    /// The options cannot make a ring.
    InvalidOptions {
        /// The segment the options were for.
        segment: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// No segment has that name.
    NotFound {
        /// The segment.
        segment: String,
    },
    /// A segment (or other shared-memory object) of that name exists already;
    /// it was left untouched.
    AlreadyExists {
        /// The segment.
        segment: String,
    },
    /// The kernel refused access (mode bits), or the segment belongs to
    /// another user and [`RingOptions::allow_foreign_owner`] was not set.
    ///
    /// [`RingOptions::allow_foreign_owner`]: crate::RingOptions::allow_foreign_owner
    PermissionDenied {
        /// The segment.
        segment: String,
        /// Why.
        detail: String,
    },
    /// `/dev/shm` (or the file system) has no room for the segment.
    NoSpace {
        /// The segment.
        segment: String,
        /// Bytes that were asked for; 0 when the call that failed did not ask
        /// for a size (then the message names none).
        bytes: u64,
    },
    /// The huge page pool cannot supply a ring made with
    /// [`RingOptions::huge_pages`](crate::RingOptions::huge_pages) (at
    /// create; or, opening one, the pages of a sparse object): too few free
    /// pages that no one has reserved (`HugePages_Free` minus
    /// `HugePages_Rsvd`), or a hugetlb cgroup limit. An administrator
    /// reserves more with `sysctl vm.nr_hugepages=N`.
    NoHugePages {
        /// The segment.
        segment: String,
        /// Bytes that were asked for (header and data, in huge pages).
        bytes: u64,
    },
    /// The object has no shmring header (wrong magic).
    NotShmring {
        /// The segment.
        segment: String,
    },
    /// The header was written by another layout version.
    VersionMismatch {
        /// The segment.
        segment: String,
        /// The version found.
        found: u32,
        /// The version this build understands.
        expected: u32,
    },
    /// The segment is of another kind than was asked for.
    KindMismatch {
        /// The segment.
        segment: String,
        /// The kind found (`None` if the code is unknown).
        found: Option<crate::layout::Kind>,
        /// The kind asked for.
        expected: crate::layout::Kind,
    },
    /// The file's size does not match the header (truncated, or too small to
    /// hold a header at all).
    SizeMismatch {
        /// The segment.
        segment: String,
        /// What the header says (or the least a header needs).
        expected: u64,
        /// What `fstat` says.
        found: u64,
    },
    /// The identity fields do not match their checksum.
    ChecksumMismatch {
        /// The segment.
        segment: String,
    },
    /// The creator did not finish writing the header in time.
    NotReady {
        /// The segment.
        segment: String,
        /// How long we waited.
        waited: std::time::Duration,
    },
    /// The role is taken by a live process.
    AlreadyAttached {
        /// The segment.
        segment: String,
        /// The side that is taken.
        role: Role,
        /// The holder's pid as it recorded it (a hint: it may be in another
        /// PID namespace).
        pid: u32,
    },
    /// Every producer slot of an MPSC segment is held by a live process, or
    /// by a dead one whose last claim the live consumer has not passed yet
    /// (it skips such a claim when it reaches it; with no live consumer
    /// attached, [`Error::ProducerSlotBlocked`] is returned instead).
    TooManyProducers {
        /// The segment.
        segment: String,
        /// How many slots it has.
        max: u32,
    },
    /// No producer slot of an MPSC segment is free, and slot `slot` is held
    /// only by the unfinished claim of a producer that died, at `position`.
    /// Only the consumer resolves such a claim (it skips it when it reaches
    /// it), and no live consumer is attached: the slot stays blocked until
    /// one attaches and reads up to `position`. A producer cannot resolve it
    /// itself: records before `position` must be delivered first, and the
    /// claim line it would overwrite is the consumer's evidence of who owns
    /// the unwritten record.
    ProducerSlotBlocked {
        /// The segment.
        segment: String,
        /// The blocked slot (the first one, if several are).
        slot: u32,
        /// Where the dead producer's claim starts (read from shared memory:
        /// a hint).
        position: u64,
    },
    /// A descriptor handed over for a memfd segment is not a memfd sealed
    /// against shrinking, so whoever holds it could truncate it under our
    /// mapping (a `SIGBUS` at the next access).
    NotSealed {
        /// The segment.
        segment: String,
    },
    /// A descriptor handed over for a memfd segment is not a regular file
    /// (a FIFO, a directory, a socket, a device...), so not a memfd. It is
    /// refused from what `fstat` says of it, before it is reopened or read.
    NotMemfd {
        /// The segment.
        segment: String,
        /// What it is instead, e.g. "a FIFO".
        found: &'static str,
    },
    /// A value in the header breaks the ring's invariants. Transparent: the
    /// message is the [`Corrupted`]'s own.
    Corrupted(Corrupted),
    /// The handle was inherited across `fork` (from
    /// [`Producer::flush`](crate::Producer::flush) and the like in the
    /// child). Transparent: the message is the [`ForkedHandle`]'s own.
    ForkedHandle(ForkedHandle),
    /// Another system call failed. The OS error is the
    /// [`source`](std::error::Error::source), not repeated in the message.
    Io {
        /// The segment.
        segment: String,
        /// The call, e.g. `"mmap"`.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl Error {
    /// The segment the error is about: its name, or its file's path (for
    /// [`Error::InvalidName`], the name as given).
    ///
    /// ```
    /// let err = shmring::Consumer::open("/no-such-ring", &shmring::RingOptions::new()).unwrap_err();
    /// assert_eq!(err.segment(), "/no-such-ring");
    /// ```
    pub fn segment(&self) -> &str {
        match self {
            Error::InvalidName { name, .. } => name,
            Error::Corrupted(e) => e.segment(),
            Error::ForkedHandle(e) => e.segment(),
            Error::InvalidOptions { segment, .. }
            | Error::NotFound { segment }
            | Error::AlreadyExists { segment }
            | Error::PermissionDenied { segment, .. }
            | Error::NoSpace { segment, .. }
            | Error::NoHugePages { segment, .. }
            | Error::NotShmring { segment, .. }
            | Error::VersionMismatch { segment, .. }
            | Error::KindMismatch { segment, .. }
            | Error::SizeMismatch { segment, .. }
            | Error::ChecksumMismatch { segment, .. }
            | Error::NotReady { segment, .. }
            | Error::AlreadyAttached { segment, .. }
            | Error::TooManyProducers { segment, .. }
            | Error::ProducerSlotBlocked { segment, .. }
            | Error::NotSealed { segment, .. }
            | Error::NotMemfd { segment, .. }
            | Error::Io { segment, .. } => segment,
        }
    }

    /// Map an errno from a system call on `segment` to the matching variant.
    #[cfg_attr(shmring_loom, allow(dead_code))]
    pub(crate) fn from_os(segment: &str, op: &'static str, errno: rustix::io::Errno) -> Error {
        use rustix::io::Errno;
        let segment = segment.to_owned();
        match errno {
            Errno::NOENT => Error::NotFound { segment },
            Errno::EXIST => Error::AlreadyExists { segment },
            Errno::ACCESS | Errno::PERM => {
                Error::PermissionDenied { segment, detail: format!("{op}: {}", io::Error::from(errno)) }
            }
            Errno::NOSPC => Error::NoSpace { segment, bytes: 0 },
            _ => Error::Io { segment, op, source: errno.into() },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName { name, reason } => write!(f, "invalid segment name {name:?}: {reason}"),
            // Met when creating and when opening (the liveness interval).
            Error::InvalidOptions { segment, reason } => write!(f, "invalid options for segment {segment}: {reason}"),
            Error::NotFound { segment } => write!(f, "segment {segment} does not exist"),
            Error::AlreadyExists { segment } => write!(f, "segment {segment} already exists"),
            Error::PermissionDenied { segment, detail } => {
                write!(f, "permission denied on segment {segment}: {detail}")
            }
            Error::NoSpace { segment, bytes: 0 } => {
                write!(f, "no space left for segment {segment} (is /dev/shm, or the file's file system, full?)")
            }
            Error::NoSpace { segment, bytes } => write!(
                f,
                "no space left for segment {segment}: {bytes} bytes could not be reserved \
                 (is /dev/shm, or the file's file system, full?)"
            ),
            Error::NoHugePages { segment, bytes } => write!(
                f,
                "not enough free huge pages for segment {segment}: {bytes} bytes in {} pages of 2 MiB could not be \
                 reserved (available: HugePages_Free minus HugePages_Rsvd in /proc/meminfo, within any hugetlb \
                 cgroup limit; root reserves more with sysctl vm.nr_hugepages=N)",
                bytes.div_ceil(2 << 20)
            ),
            Error::NotShmring { segment } => write!(f, "{segment} is not a shmring segment (bad magic)"),
            Error::VersionMismatch { segment, found, expected } => {
                write!(f, "segment {segment} has layout version {found}, this build reads version {expected}")
            }
            Error::KindMismatch { segment, found: Some(found), expected } => {
                write!(f, "segment {segment} is an {found} ring, not {expected}")
            }
            Error::KindMismatch { segment, found: None, expected } => {
                write!(f, "segment {segment} has an unknown ring kind (expected {expected})")
            }
            // Only an object too small for any header is under HEADER_BYTES
            // (opening waits for a header before it reads one).
            Error::SizeMismatch { segment, expected, found } if *found < crate::layout::HEADER_BYTES => {
                write!(f, "segment {segment} is {found} bytes, too small to hold a shmring header ({expected} bytes)")
            }
            Error::SizeMismatch { segment, expected, found } => {
                write!(f, "segment {segment} is {found} bytes but should be {expected} (truncated or resized?)")
            }
            Error::ChecksumMismatch { segment } => {
                write!(f, "segment {segment} has a header whose checksum does not match (corrupted)")
            }
            Error::NotReady { segment, waited } => {
                write!(f, "segment {segment} was not initialised by its creator within {waited:?}")
            }
            Error::AlreadyAttached { segment, role, pid } => {
                write!(f, "segment {segment} already has a live {role} (pid {pid})")
            }
            Error::TooManyProducers { segment, max } => {
                write!(
                    f,
                    "segment {segment} has no free producer slot: all {max} are held by live producers \
                     (or by dead ones whose last record the consumer has not reached yet)"
                )
            }
            Error::ProducerSlotBlocked { segment, slot, position } => write!(
                f,
                "segment {segment} has no free producer slot: slot {slot} is held by a dead producer's unfinished \
                 claim at position {position}, which only the consumer resolves (it skips the claim when it reaches \
                 it), and no consumer is attached: attach one, then retry"
            ),
            Error::NotSealed { segment } => {
                write!(f, "{segment} is not a memfd sealed against shrinking (F_SEAL_SHRINK): refused")
            }
            Error::NotMemfd { segment, found } => {
                write!(f, "{segment} is {found}, not a memfd: refused without reopening it")
            }
            Error::Corrupted(c) => c.fmt(f),
            Error::ForkedHandle(e) => e.fmt(f),
            // The OS error is the source, not repeated here.
            Error::Io { segment, op, .. } => write!(f, "{op} failed on segment {segment}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            // Transparent: the message is the inner error's, so the source
            // is the inner error's source too.
            Error::Corrupted(c) => c.source(),
            Error::ForkedHandle(e) => e.source(),
            _ => None,
        }
    }
}

impl From<Corrupted> for Error {
    fn from(c: Corrupted) -> Self {
        Error::Corrupted(c)
    }
}

impl From<ForkedHandle> for Error {
    fn from(e: ForkedHandle) -> Self {
        Error::ForkedHandle(e)
    }
}

mod common;
mod hot;
mod stop;

pub use common::{Corrupted, ForkedHandle, Role};
pub use hot::*;
#[cfg(not(shmring_loom))]
pub(crate) use stop::RingStop;
#[cfg(shmring_loom)]
pub use stop::{RecvStop, SendStop};
#[cfg(not(shmring_loom))]
pub(crate) use stop::{RecvStop, SendStop};

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_error_says_its_segment() {
        let name: Arc<str> = Arc::from("/orders");
        assert_eq!(Error::Corrupted(Corrupted::new(&name, "x")).segment(), "/orders");
        assert_eq!(Error::ForkedHandle(ForkedHandle::new(&name, Role::Consumer)).segment(), "/orders");
        assert_eq!(Error::InvalidName { name: "bad/name".into(), reason: "r" }.segment(), "bad/name");
        for errno in [rustix::io::Errno::NOENT, rustix::io::Errno::NOSPC, rustix::io::Errno::IO] {
            assert_eq!(Error::from_os("/orders", "open", errno).segment(), "/orders");
        }
    }

    #[test]
    fn messages_name_the_segment() {
        let name: Arc<str> = Arc::from("/orders");
        let c = Corrupted::new(&name, "record at 64 has length 99");
        assert_eq!(c.to_string(), "segment /orders is corrupted: record at 64 has length 99");
        assert_eq!(TryRecvError::Corrupted(c.clone()).to_string(), c.to_string());
        let e = Error::from_os("/orders", "shm_open", rustix::io::Errno::NOENT);
        assert_eq!(e.to_string(), "segment /orders does not exist");
        let e = Error::KindMismatch {
            segment: "/q".into(),
            found: Some(crate::layout::Kind::Mpsc),
            expected: crate::layout::Kind::Spsc,
        };
        assert_eq!(e.to_string(), "segment /q is an MPSC ring, not SPSC");
        assert_eq!(SendTimeoutError::Timeout.to_string(), "timed out waiting for room in the ring");
    }

    #[test]
    fn messages_say_only_what_is_known() {
        // ENOSPC from a call that asked for no size: no "0 bytes".
        let e = Error::from_os("/orders", "shm_open", rustix::io::Errno::NOSPC);
        assert!(matches!(e, Error::NoSpace { bytes: 0, .. }), "{e:?}");
        let text = e.to_string();
        assert!(!text.contains("0 bytes") && text.contains("/orders") && text.contains("/dev/shm"), "{text}");
        let e = Error::NoSpace { segment: "/orders".into(), bytes: 1 << 20 };
        assert!(e.to_string().contains("1048576 bytes could not be reserved"), "{e}");
        // Too small for a header: not "should be 12288".
        let e = Error::SizeMismatch { segment: "/s".into(), expected: crate::layout::HEADER_BYTES, found: 17 };
        assert_eq!(e.to_string(), "segment /s is 17 bytes, too small to hold a shmring header (12288 bytes)");
    }

    #[test]
    fn each_cause_is_said_once() {
        use std::error::Error as _;
        let name: Arc<str> = Arc::from("/x");
        let c = Corrupted::new(&name, "bad");
        // Transparent wrappers: the inner message, no source.
        assert_eq!(SendError::Corrupted(c.clone()).to_string(), c.to_string());
        assert!(SendError::Corrupted(c.clone()).source().is_none());
        assert!(Error::Corrupted(c).source().is_none());
        assert!(SendError::Disconnected.source().is_none());
        assert!(SendError::TooLarge(TooLarge { len: 9, max: 8 }).source().is_none());
        // Context: the OS error is the source, and only the source.
        let io = Error::from_os("/x", "mmap", rustix::io::Errno::NODEV);
        let source = io.source().expect("the OS error").to_string();
        assert!(!io.to_string().contains(&source), "{io}");
        assert_eq!(io.to_string(), "mmap failed on segment /x");
    }
}
