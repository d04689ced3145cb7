//! Where the ring algorithms meet the mapping: a [`Segment`] as the
//! [`RingBacking`] of a ring, and the file-ring work that needs both (flush,
//! recovery after a restart of the machine). The segment knows nothing of
//! the ring; the ring knows the segment only through the trait.

use crate::error::Error;
use crate::layout::Slot;
use crate::region::Region;
use crate::ring::{self, RingBacking};
use crate::segment::Segment;
use crate::sync::Ordering;
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

/// Makes durable what is committed in `segment` (see `Producer::flush`):
/// writes back the records from the durable tail (or `head`) on, then raises
/// the durable tail and writes the header back. MPSC: every record committed
/// before the call, including those after another producer's open claim
/// (see [`ring::durable`]).
pub(super) fn flush(segment: &Segment) -> Result<(), Error> {
    let header = RingBacking::header(segment);
    let persistence = &header.persistence;
    let claimed = header.producer.tail.load(Ordering::Acquire);
    // Before the write-back: a producer that commits below `claimed` from
    // now on writes its payload back itself.
    persistence.flush_pending.fetch_max(claimed, Ordering::SeqCst);
    crate::sync::fence(Ordering::SeqCst);
    // From the first claim an earlier flush went past while it was open (it
    // may be committed now), or else the durable tail; consumed records too,
    // back to the durable head: a recovery may keep them (the disk's `head`
    // may be older than the consumer's), so they must be whole on the disk.
    let unsettled = persistence.unsettled_from.load(Ordering::Acquire);
    let durable = persistence.durable_tail.load(Ordering::Acquire);
    let from = durable.min(unsettled).max(ring::durable::limit_word(segment).load(Ordering::Acquire));
    let (end, first_open) = ring::persist::flush_end(segment, from, claimed);
    segment.write_back_positions(from, end)?;
    // Only once the records are on the disk may the header say so. Either
    // of two racing flushes leaves a valid `unsettled_from`: each walk saw
    // every record before its first open claim committed.
    persistence.durable_tail.fetch_max(end, Ordering::Release);
    let settled_to = first_open.unwrap_or(end);
    if settled_to > unsettled {
        let _ = persistence.unsettled_from.compare_exchange(unsettled, settled_to, Ordering::AcqRel, Ordering::Relaxed);
    }
    segment.write_back_header()
}
