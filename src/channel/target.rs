//! Where a handle's segment comes from, the one place a handle's options are
//! checked before anything is created or attached, and the work the two
//! handles' shared accessors do.

use super::*;
use crate::error::{Error, ForkedHandle, Role};
use crate::segment::fork::Scope;
use crate::segment::Segment;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The segment a handle attaches to.
pub(super) enum Target<'a> {
    /// Create the shared-memory name.
    Create(&'a str),
    /// Open the existing shared-memory name.
    Open(&'a str),
    /// Create the file.
    CreateFile(&'a Path),
    /// Open the existing file (recovered first after a restart).
    OpenFile(&'a Path),
    /// Reopen an anonymous ring's memfd.
    Anonymous(&'a AnonymousRing),
}

/// The segment of `target`, once `options` are known to be valid: bad
/// options create, open and recover nothing.
pub(super) fn segment_for(target: Target<'_>, options: &RingOptions) -> Result<Segment, Error> {
    let check = |name: &str| options.check_attach_options(name);
    match target {
        Target::Create(name) => {
            check(name)?;
            Segment::create(name, &options.shape(), options.unlink_on_drop)
        }
        Target::Open(name) => {
            check(name)?;
            Segment::open(name, &options.expect())
        }
        Target::CreateFile(path) => {
            check(&path.to_string_lossy())?;
            Segment::create_file(path, &options.shape())
        }
        Target::OpenFile(path) => {
            check(&path.to_string_lossy())?;
            let segment = Segment::open_file(path, &options.expect())?;
            backing::recover_if_restarted(&segment)?;
            Ok(segment)
        }
        Target::Anonymous(ring) => {
            check(ring.label())?;
            let fd = ring.segment().fd().as_raw_fd();
            Segment::open_memfd(fd, ring.label(), &options.expect(), Scope::Process)
        }
    }
}

/// The error of an operation on a handle inherited by a forked child.
#[cold]
#[inline(never)]
pub(super) fn forked(segment: &Segment, role: Role) -> ForkedHandle {
    ForkedHandle::new(segment.name(), role)
}

/// Starts writing back what is committed and the header (see
/// `Producer::flush_async`).
pub(super) fn flush_async(segment: &Segment) -> Result<(), Error> {
    let header = crate::ring::RingBacking::header(segment);
    let from = header.consumer.head.load(crate::sync::Ordering::Acquire);
    let to = header.producer.tail.load(crate::sync::Ordering::Acquire);
    segment.start_write_back(from, to)
}
