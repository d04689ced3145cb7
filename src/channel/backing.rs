//! Where the ring algorithms meet the mapping: a [`Segment`] as the
//! [`RingBacking`] of a ring, and the file-ring work that needs both (flush,
//! recovery after a restart of the machine). The segment knows nothing of
//! the ring; the ring knows the segment only through the trait.

use crate::error::Error;
use crate::layout::Slot;
use crate::region::Region;
use crate::ring::{self, RingBacking};
use crate::segment::Segment;
use std::sync::Arc;

impl RingBacking for Segment {
    #[inline]
    fn header(&self) -> &crate::layout::RingHeader {
        &Segment::header(self).ring
    }
    #[inline]
    fn region(&self) -> &Region {
        Segment::region(self)
    }
    #[inline]
    fn name(&self) -> &Arc<str> {
        Segment::name(self)
    }
    #[inline]
    fn max_message(&self) -> u32 {
        self.identity().max_message
    }
    #[inline]
    fn max_producers(&self) -> u32 {
        self.identity().max_producers
    }
    fn is_alive(&self, slot: Slot) -> bool {
        self.is_locked(slot)
    }
    #[inline]
    fn persistent(&self) -> bool {
        Segment::persistent(self)
    }
    fn sync_header(&self) -> bool {
        self.write_back_header().is_ok()
    }
    fn sync_positions(&self, from: u64, to: u64) -> bool {
        self.write_back_positions(from, to).is_ok()
    }
}

/// A file segment just opened: if the machine restarted since it was last
/// created or recovered, keeps what was flushed and drops the rest (see
/// [`ring::persist`]). Serialised by a lock, so concurrent openers recover
/// once.
pub(super) fn recover_if_restarted(segment: &Segment) -> Result<(), Error> {
    if !segment.restarted() {
        return Ok(());
    }
    let _lock = segment.lock_recovery()?;
    // Another opener may have recovered while we waited for the lock. And
    // kernel locks do not survive a restart: a participant that holds one
    // attached after the last restart, so there is nothing to recover (and
    // recovering would zero records it may be writing).
    if !segment.restarted() {
        return Ok(());
    }
    if !segment.any_participant_alive() {
        ring::persist::recover_after_restart(segment)?;
        segment.write_back_positions(0, segment.identity().capacity)?;
    }
    segment.mark_booted()
}

/// Makes durable what is committed in `segment` (see `Producer::flush` and
/// [`ring::persist::flush`]).
pub(super) fn flush(segment: &Segment) -> Result<(), Error> {
    ring::persist::flush(
        segment,
        segment.kind(),
        |from, to| segment.write_back_positions(from, to),
        || segment.write_back_header(),
    )
}
