//! The error values both the setup [`Error`](super::Error) and the hot-path
//! errors carry: a corruption found in shared memory, and a handle used in a
//! forked child (with the side it acts for).

use std::fmt;
use std::sync::Arc;

/// The shared memory broke the ring's invariants: a peer wrote garbage, or the
/// segment was damaged. Carries the segment name and what was found.
///
/// Once a [`Producer`](crate::Producer) or [`Consumer`](crate::Consumer) has
/// returned this, every later send, receive, read or reserve on that handle
/// returns the same error again, even if the damaged bytes are repaired:
/// the handle no longer trusts the segment. Other handles are not affected
/// until they meet the damage themselves. The segment should be inspected
/// (`shmring stat`) and recreated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupted {
    segment: Arc<str>,
    what: String,
}

impl Corrupted {
    pub(crate) fn new(segment: &Arc<str>, what: impl Into<String>) -> Self {
        Corrupted { segment: Arc::clone(segment), what: what.into() }
    }

    /// The segment's name.
    pub fn segment(&self) -> &str {
        &self.segment
    }

    /// What was wrong.
    pub fn what(&self) -> &str {
        &self.what
    }
}

impl fmt::Display for Corrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment {} is corrupted: {}", self.segment, self.what)
    }
}

impl std::error::Error for Corrupted {}

/// The side a handle takes in a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A [`Producer`](crate::Producer).
    Producer,
    /// The [`Consumer`](crate::Consumer).
    Consumer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        })
    }
}

/// A handle was used in a process forked from the one that attached it.
///
/// A handle acts only for the process that attached it: in a forked child
/// every operation on an inherited handle fails with this (its drop does
/// nothing to the ring). Attach afresh in the child (`Producer::open`,
/// [`AnonymousRing::producer`](crate::AnonymousRing::producer), ...). Carries
/// the segment name and the handle's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkedHandle {
    segment: Arc<str>,
    role: Role,
}

impl ForkedHandle {
    #[cfg_attr(shmring_loom, allow(dead_code))]
    pub(crate) fn new(segment: &Arc<str>, role: Role) -> Self {
        ForkedHandle { segment: Arc::clone(segment), role }
    }

    /// The segment's name.
    pub fn segment(&self) -> &str {
        &self.segment
    }

    /// The handle's side.
    pub fn role(&self) -> Role {
        self.role
    }
}

impl fmt::Display for ForkedHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this {} handle of segment {} was inherited across fork: it acts only for the process that \
             attached it; attach again in this process",
            self.role, self.segment
        )
    }
}

impl std::error::Error for ForkedHandle {}
