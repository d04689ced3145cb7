//! File-backed rings: reusing space only behind a consumer position that is
//! on the disk.
//!
//! After a crash of the machine, each page of the file holds what was last
//! written back, which may be older or newer than any other page: the kernel
//! writes dirty pages back in no particular order. Recovery (see
//! [`super::persist`]) keeps the records from the `head` it finds in the
//! header up to the durable tail. For those bytes to be intact, nothing may
//! have overwritten them since `flush` wrote them back, whichever `head` the
//! disk ends up with: the one of the last `msync` of the header or any later
//! one. So producers of a file ring reuse space only up to `durable_head` plus
//! the capacity, where `durable_head` is a consumer position that an `msync`
//! of the header had reached before it was raised; every `head` the disk can
//! hold is at or past it.
//!
//! The consumer raises `durable_head` (`release`): when it has consumed half
//! a lap past it, when an MPSC producer waits for it (`release_wanted`), and
//! in its `flush`. An SPSC producer that would otherwise wait raises it
//! itself (`release_by_producer`), so it never depends on the consumer's
//! next call; MPSC producers do (their release must zero space, below). An MPSC consumer of a file ring does not zero what it consumes
//! (the disk's `head` may be older, and recovery must find those records
//! whole): it zeroes the range it releases, after the header is on the disk
//! and before producers may claim it, and being the only one that zeroes, it
//! never polls a stale word of an earlier lap. For the same reason an MPSC
//! claim in a file ring leaves 8 bytes free (as SPSC's terminator does), so
//! the word at the claim position is always zero or newer.
//!
//! `flush` in an MPSC ring covers records committed after an open claim too:
//! it stores the claim position it covers in `flush_pending` (SeqCst) before
//! writing the records back, and a producer that commits a record starting
//! below that position writes its payload back before its commit word (a
//! SeqCst fence between its payload and its read of `flush_pending`). Either
//! the flush's write-back saw the payload, or the producer wrote it back
//! itself: a commit word on the disk never comes with a stale payload.

use super::RingBacking;
use crate::sync::{publish, AtomicU64, Ordering};

/// The word whose value plus the capacity bounds where producers may write:
/// the consumer's `head` in memory, `durable_head` in a file ring.
pub fn limit_word<B: RingBacking>(backing: &B) -> &AtomicU64 {
    let header = backing.header();
    if backing.persistent() {
        &header.persistence.durable_head
    } else {
        &header.consumer.head
    }
}

/// A producer of a file ring found it full below `limit` while the consumer
/// is past it: asks the consumer to release. The caller wakes the consumer.
pub(super) fn want_release<B: RingBacking>(backing: &B, limit: u64) -> bool {
    let header = backing.header();
    if header.consumer.head.load(Ordering::Relaxed) <= limit {
        return false;
    }
    header.persistence.release_wanted.store(1, Ordering::Relaxed);
    true
}

/// Whether the consumer at `head` should release now: half a lap past the
/// durable head, or a producer waits (and anything is consumed).
pub(super) fn release_due<B: RingBacking>(backing: &B, head: u64, capacity: u64) -> bool {
    let persistence = &backing.header().persistence;
    let durable = persistence.durable_head.load(Ordering::Relaxed);
    head > durable && (head - durable >= capacity / 2 || persistence.release_wanted.load(Ordering::Relaxed) != 0)
}

/// The consumer, at `head`, makes its position durable and lets producers
/// reuse the space before it: writes the header back (`msync`), then (MPSC:
/// `zero`) zeroes the range from the old durable head, then raises
/// `durable_head` (Release, `fetch_max`: an SPSC producer may raise it too,
/// see [`release_by_producer`]). Only the consumer calls this and only it
/// zeroes, so nothing else writes that range meanwhile. Returns `false` if
/// the write-back failed (nothing raised; a later call tries again).
pub fn release<B: RingBacking>(backing: &B, head: u64, zero: bool) -> bool {
    let persistence = &backing.header().persistence;
    persistence.release_wanted.store(0, Ordering::Relaxed);
    let durable = persistence.durable_head.load(Ordering::Relaxed);
    if head <= durable || head - durable > backing.region().len() as u64 {
        return head == durable;
    }
    if crate::sync::mutant("release_before_sync") {
        persistence.durable_head.store(head, publish());
    }
    if !backing.sync_header() {
        return false;
    }
    if zero && !crate::sync::mutant("no_release_zeroing") {
        backing.region().zero_positions(durable, head);
    }
    persistence.durable_head.fetch_max(head, publish());
    true
}

/// An SPSC producer of a file ring that would otherwise wait for the
/// consumer to release: makes the consumer's `head` durable itself (writes
/// the header back after reading it) and raises `durable_head` to it. SPSC
/// only: an MPSC release must zero, which only the consumer does. Returns
/// whether it raised anything.
pub(super) fn release_by_producer<B: RingBacking>(backing: &B, limit: u64) -> bool {
    let header = backing.header();
    let head = header.consumer.head.load(Ordering::Acquire);
    if head <= limit || head - limit > backing.region().len() as u64 || !backing.sync_header() {
        return false;
    }
    header.persistence.durable_head.fetch_max(head, publish());
    true
}

/// [`release`], then wakes producers waiting for room, for a caller without
/// the consumer's own waker (`flush` through a shared reference).
pub fn release_and_wake<B: RingBacking>(backing: &B, head: u64, zero: bool) -> bool {
    let released = release(backing, head, zero);
    let mut stats = super::Stats::default();
    super::Waker::default().wake_if_sleeping(&backing.header().producer_wake, &mut stats);
    released
}
